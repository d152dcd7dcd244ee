//! Epoch throughput, CPU reference against every GPU adapter, on a synthetic MNIST-like shape, through the training
//! seam (a held set, one accumulate → update per batch). Names are device-prefixed and carry the shape; every
//! iteration ends with the epoch's sums read back, so the clock stops only after the device has finished.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use softmax_wgpu::cpu::CpuBackend;
use softmax_wgpu::gpu::{adapters, GpuBackend, GpuContext, GpuOptions};
use softmax_wgpu::train::{Batch, Held, Optimizer, Update};
use softmax_wgpu::{Backend, Shape};

fn epoch(backend: &mut dyn Backend, set: Held, order: &[u32], batch: usize) {
    let update = Update {
        optimizer: Optimizer::Sgd,
        lr: 0.01,
        l2: 0.0,
    };
    for rows in order.chunks(batch) {
        backend
            .accumulate(&Batch::held(set, rows).expect("valid rows"))
            .expect("accumulate");
        backend.update(&update).expect("update");
    }
    backend.take_sums().expect("epoch sums");
}

fn epochs(c: &mut Criterion) {
    let (n, d, k, batch) = (8192, 784, 10, 256);
    let data = softmax_wgpu::data::synthetic(n, d, k, 1).expect("valid shape");
    let mut source = data.into_source().expect("valid data");
    let shape = Shape { d, k };
    let id = format!("n{n}_d{d}_k{k}_b{batch}_seed1");
    let mut group = c.benchmark_group("epoch");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    let mut cpu = CpuBackend::<f32>::new(shape);
    let set = cpu.hold(&mut source).expect("hold");
    let order = set.order(1, 1, true);
    group.bench_function(BenchmarkId::new("cpu_f32", &id), |b| {
        b.iter(|| epoch(&mut cpu, set, &order, batch))
    });
    for adapter in adapters(wgpu::Backends::all()) {
        let Ok(ctx) = GpuContext::new(adapter) else {
            continue;
        };
        let name = format!(
            "gpu_{:?}_{}",
            ctx.info.backend,
            ctx.info.name.replace(' ', "_")
        );
        let mut gpu = GpuBackend::new(&ctx, shape, &GpuOptions::default()).expect("device");
        let set = gpu.hold(&mut source).expect("upload");
        group.bench_function(BenchmarkId::new(name, &id), |b| {
            b.iter(|| epoch(&mut gpu, set, &order, batch))
        });
    }
    group.finish();
}

criterion_group!(benches, epochs);
criterion_main!(benches);
