//! Whole training runs: GPU against CPU, loss going down, the digits default, chunked data.

mod common;

use common::*;
use softmax_wgpu::cpu::CpuBackend;
use softmax_wgpu::data::{self, Standardizer};
use softmax_wgpu::gpu::{GpuBackend, GpuOptions};
use softmax_wgpu::train::epoch_order;
use softmax_wgpu::validate::relative_distance;
use softmax_wgpu::{fit, Backend, TrainConfig};

/// A standardised synthetic problem of n × d in k classes, with a held-out fifth.
fn problem(n: usize, d: usize, k: usize) -> (data::Dataset, data::Dataset) {
    let full = data::synthetic(n, d, k, 3).unwrap();
    let (mut train, held) = data::split_holdout(&full, 0.2, 3).unwrap();
    let mut held = held.unwrap();
    let s = Standardizer::fit(train.x.view());
    s.apply(&mut train.x);
    s.apply(&mut held.x);
    (train, held)
}

fn rel_diff(a: &ndarray::Array2<f32>, b: &ndarray::Array2<f32>) -> f64 {
    relative_distance(a.iter().copied(), b.iter().map(|&v| f64::from(v)))
}

#[test]
fn gpu_and_cpu_weights_agree_after_many_steps() {
    let (train, _) = problem(1300, 20, 5);
    let k = 5;
    // 1040 rows, batch 16: 65 steps per epoch, with a partial last batch; two epochs = 130 steps.
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 16,
        lr: 0.1,
        l2: 1e-3,
        ..TrainConfig::default()
    };
    let mut cpu = CpuBackend::<f64>::new(train.x.view(), &train.y, k, None);
    fit(&mut cpu, train.len(), &cfg, &mut |_| {}, &mut |_| {}).unwrap();
    let want = cpu.params().unwrap();
    on_every_gpu(|ctx| {
        let mut gpu = GpuBackend::new(
            ctx,
            train.x.view(),
            &train.y,
            k,
            None,
            cfg.batch_size,
            &GpuOptions::default(),
        )
        .unwrap();
        fit(&mut gpu, train.len(), &cfg, &mut |_| {}, &mut |_| {}).unwrap();
        let got = gpu.params().unwrap();
        // Each step's f32 gradient differs from the f64 one by about (B + D)·u relatively (≈ 2e-6 here); gradient
        // descent on this convex, well-conditioned problem contracts old errors, so they add up at most linearly:
        // 130 steps × 2e-6 ≈ 3e-4 in the worst case. Measured on lavapipe (Vulkan and GL): 1.7e-7. We allow 1e-4, which a
        // wrong step size, a missed row or a wrong 1/B would exceed by orders of magnitude.
        let d = rel_diff(&got.w, &want.w);
        assert!(d < 1e-4, "‖W_gpu − W_cpu‖/‖W_cpu‖ = {d:e}");
        let db = rel_diff(
            &got.b.clone().insert_axis(ndarray::Axis(0)),
            &want.b.clone().insert_axis(ndarray::Axis(0)),
        );
        assert!(db < 1e-4, "bias relative difference {db:e}");
    });
}

#[test]
fn loss_decreases_on_every_device() {
    let (train, held) = problem(2000, 30, 4);
    let cfg = TrainConfig {
        epochs: 5,
        batch_size: 32,
        lr: 0.05,
        ..TrainConfig::default()
    };
    let check = |name: String, reports: Vec<softmax_wgpu::EpochReport>| {
        let first = reports.first().unwrap();
        let last = reports.last().unwrap();
        assert!(
            last.train_loss < first.train_loss,
            "{name}: train loss {} → {}",
            first.train_loss,
            last.train_loss
        );
        assert!(
            first.train_loss < (4f64).ln(),
            "{name}: the first epoch's loss starts at ln 4 and must fall"
        );
        assert!(
            last.val_loss.unwrap() < first.val_loss.unwrap(),
            "{name}: held-out loss did not fall"
        );
    };
    let held_ref = Some((held.x.view(), held.y.as_slice()));
    let mut cpu = CpuBackend::<f32>::new(train.x.view(), &train.y, 4, held_ref);
    check(
        "cpu".into(),
        fit(&mut cpu, train.len(), &cfg, &mut |_| {}, &mut |_| {}).unwrap(),
    );
    on_every_gpu(|ctx| {
        let mut gpu = GpuBackend::new(
            ctx,
            train.x.view(),
            &train.y,
            4,
            held_ref,
            32,
            &GpuOptions::default(),
        )
        .unwrap();
        check(
            ctx.describe(),
            fit(&mut gpu, train.len(), &cfg, &mut |_| {}, &mut |_| {}).unwrap(),
        );
    });
}

#[test]
fn digits_default_reaches_95_percent_held_out() {
    let cfg = TrainConfig::default();
    let full = data::digits().unwrap();
    assert_eq!(
        (full.len(), full.features(), full.classes.len()),
        (1797, 64, 10)
    );
    let (train, held) = data::split_holdout(&full, cfg.val_split, cfg.seed).unwrap();
    let held = held.unwrap();
    let h = Some((held.x.view(), held.y.as_slice()));
    let mut cpu = CpuBackend::<f32>::new(train.x.view(), &train.y, 10, h);
    let acc = fit(&mut cpu, train.len(), &cfg, &mut |_| {}, &mut |_| {})
        .unwrap()
        .last()
        .unwrap()
        .val_accuracy
        .unwrap();
    assert!(acc >= 0.95, "cpu: held-out accuracy {acc}");
    on_every_gpu(|ctx| {
        let mut gpu = GpuBackend::new(
            ctx,
            train.x.view(),
            &train.y,
            10,
            h,
            cfg.batch_size,
            &GpuOptions::default(),
        )
        .unwrap();
        let r = fit(&mut gpu, train.len(), &cfg, &mut |_| {}, &mut |_| {}).unwrap();
        let acc = r.last().unwrap().val_accuracy.unwrap();
        assert!(acc >= 0.95, "{}: held-out accuracy {acc}", ctx.describe());
    });
}

#[test]
fn chunked_data_trains_exactly_like_resident_data() {
    let (train, held) = problem(3000, 17, 6);
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 100,
        lr: 0.05,
        ..TrainConfig::default()
    };
    on_every_gpu(|ctx| {
        let run = |chunk: Option<u64>| {
            let opts = GpuOptions {
                max_chunk_bytes: chunk,
            };
            let h = Some((held.x.view(), held.y.as_slice()));
            let mut gpu = GpuBackend::new(ctx, train.x.view(), &train.y, 6, h, 100, &opts).unwrap();
            let chunks = gpu.train_chunks();
            let reports = fit(&mut gpu, train.len(), &cfg, &mut |_| {}, &mut |_| {}).unwrap();
            (
                chunks,
                reports.last().unwrap().val_loss,
                gpu.params().unwrap(),
            )
        };
        let (one, loss1, p1) = run(None);
        // 17 features × 4 bytes × 97 rows per chunk: 25 chunks, the last one partial; rows of one batch come
        // from many chunks. The gather is a copy, so the result must be bitwise the same.
        let (many, loss2, p2) = run(Some(17 * 4 * 97));
        assert_eq!((one, many), (1, 25));
        assert_eq!(p1, p2);
        assert_eq!(loss1, loss2);
    });
}

#[test]
fn mnist_shaped_data_larger_than_one_binding_trains() {
    let gpus = gpus();
    if gpus.is_empty() {
        return;
    }
    // 60,000 × 784 f32 = 188 MB: more than lavapipe's 128 MiB storage binding, so X must be chunked.
    let full = data::synthetic(60_000, 784, 10, 11).unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 256,
        lr: 0.05,
        val_split: 0.0,
        ..TrainConfig::default()
    };
    for ctx in &gpus {
        let mut gpu = GpuBackend::new(
            ctx,
            full.x.view(),
            &full.y,
            10,
            None,
            256,
            &GpuOptions::default(),
        )
        .unwrap();
        let needed =
            (60_000u64 * 784 * 4).div_ceil(ctx.limits.max_storage_buffer_binding_size) as usize;
        assert!(
            gpu.train_chunks() >= needed,
            "{} chunks",
            gpu.train_chunks()
        );
        let order = epoch_order(full.len(), 1, 1, true);
        let bad = [0u32, 60_000];
        assert!(
            gpu.train_epoch(&bad, 256, cfg.lr, 0.0, &mut |_| {})
                .is_err(),
            "an index past the end is rejected"
        );
        let sums = gpu
            .train_epoch(&order, 256, cfg.lr, 0.0, &mut |_| {})
            .unwrap();
        let second = gpu
            .train_epoch(&order, 256, cfg.lr, 0.0, &mut |_| {})
            .unwrap();
        assert_eq!(sums.rows, 60_000);
        assert!(
            sums.mean_loss().is_finite() && second.mean_loss() < sums.mean_loss(),
            "{sums:?} → {second:?}"
        );
        assert!(
            second.accuracy() > 0.5,
            "learnable blobs: accuracy {}",
            second.accuracy()
        );
    }
}
