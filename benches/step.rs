//! Epoch throughput, CPU reference against every GPU adapter, on a synthetic MNIST-like shape.
//! Names are device-prefixed and carry the shape; every GPU iteration ends with the epoch's sums read back, so the
//! clock stops only after the device has finished.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use softmax_wgpu::cpu::CpuBackend;
use softmax_wgpu::gpu::{adapters, GpuBackend, GpuContext, GpuOptions};
use softmax_wgpu::train::{epoch_order, Backend};

fn epochs(c: &mut Criterion) {
    let (n, d, k, batch) = (8192, 784, 10, 256);
    let data = softmax_wgpu::data::synthetic(n, d, k, 1).expect("valid shape");
    let order = epoch_order(n, 1, 1, true);
    let id = format!("n{n}_d{d}_k{k}_b{batch}_seed1");
    let mut group = c.benchmark_group("epoch");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    let mut cpu = CpuBackend::<f32>::new(data.x.view(), &data.y, k, None);
    group.bench_function(BenchmarkId::new("cpu_f32", &id), |b| {
        b.iter(|| {
            cpu.train_epoch(&order, batch, 0.01, 0.0, &mut |_| {})
                .expect("cpu epoch")
        })
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
        let mut gpu = GpuBackend::new(
            &ctx,
            data.x.view(),
            &data.y,
            k,
            None,
            batch,
            &GpuOptions::default(),
        )
        .expect("upload");
        group.bench_function(BenchmarkId::new(name, &id), |b| {
            b.iter(|| {
                gpu.train_epoch(&order, batch, 0.01, 0.0, &mut |_| {})
                    .expect("gpu epoch")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, epochs);
criterion_main!(benches);
