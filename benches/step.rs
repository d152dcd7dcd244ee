//! Criterion benchmarks, device-prefixed, shape and seed in the id:
//!
//! * `epoch/*`: one training epoch through the seam (a held set, accumulate → update per batch) on the CPU reference,
//!   the fast CPU trainer and every GPU adapter; each iteration ends with the epoch's sums read back, so the clock
//!   stops only after the device has finished;
//! * `kernel/*`: each kernel on one batch — the CPU mirrors, and the GPU kernels through `gpu::ops`, whose time
//!   includes uploading the inputs and reading the output back (ids end in `_with_transfers`; `softmax-wgpu bench`
//!   gives the kernels' own GPU time from timestamp queries).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use softmax_wgpu::cpu::{self, CpuBackend, FastCpu};
use softmax_wgpu::gpu::{adapters, GpuBackend, GpuContext, GpuOptions};
use softmax_wgpu::train::{Batch, Held, Optimizer, Update};
use softmax_wgpu::{Backend, Shape};

fn epoch(backend: &mut dyn Backend, set: Held, order: &[u32], batch: usize) {
    let update = Update {
        optimizer: Optimizer::Sgd,
        lr: 0.01,
        l2: 0.0,
        l1: 0.0,
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
    group.bench_function(BenchmarkId::new("cpu_f32_reference", &id), |b| {
        b.iter(|| epoch(&mut cpu, set, &order, batch))
    });
    let mut fast = FastCpu::new(shape).expect("fits");
    let set = fast.hold(&mut source).expect("hold");
    group.bench_function(BenchmarkId::new("cpu_f32_fast", &id), |b| {
        b.iter(|| epoch(&mut fast, set, &order, batch))
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

fn kernels(c: &mut Criterion) {
    let (rows, d, k) = (256, 784, 10);
    let data = softmax_wgpu::data::synthetic(rows, d, k, 1).expect("valid shape");
    let x = data.x;
    let w = ndarray::Array2::<f32>::from_shape_fn((d, k), |(i, j)| ((i + j) % 7) as f32 * 0.01);
    let bias = ndarray::Array1::<f32>::zeros(k);
    let y = data.y;
    let z = cpu::logits(x.view(), w.view(), bias.view());
    let (s, _) = cpu::softmax(z.view(), &y, cpu::Weights::none());
    let r = cpu::residual(s.view(), &y, cpu::Weights::none());
    let id = format!("b{rows}_d{d}_k{k}_seed1");
    let mut group = c.benchmark_group("kernel");
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("cpu_logits", &id), |b| {
        b.iter(|| cpu::logits(x.view(), w.view(), bias.view()))
    });
    group.bench_function(BenchmarkId::new("cpu_softmax", &id), |b| {
        b.iter(|| cpu::softmax(z.view(), &y, cpu::Weights::none()))
    });
    group.bench_function(BenchmarkId::new("cpu_grad", &id), |b| {
        b.iter(|| cpu::grad(x.view(), r.view()))
    });
    for adapter in adapters(wgpu::Backends::all()) {
        let Ok(ctx) = GpuContext::new(adapter) else {
            continue;
        };
        let dev = format!("gpu_{:?}", ctx.info.backend);
        use softmax_wgpu::gpu::ops;
        group.bench_function(
            BenchmarkId::new(format!("{dev}_logits_with_transfers"), &id),
            |b| b.iter(|| ops::logits(&ctx, x.view(), w.view(), bias.view()).expect("logits")),
        );
        group.bench_function(
            BenchmarkId::new(format!("{dev}_softmax_with_transfers"), &id),
            |b| {
                b.iter(|| {
                    ops::softmax(&ctx, z.view(), &y, softmax_wgpu::cpu::Weights::none())
                        .expect("softmax")
                })
            },
        );
        group.bench_function(
            BenchmarkId::new(format!("{dev}_grad_with_transfers"), &id),
            |b| b.iter(|| ops::grad(&ctx, x.view(), r.view()).expect("grad")),
        );
    }
    group.finish();
}

criterion_group!(benches, epochs, kernels);
criterion_main!(benches);
