//! Whole training runs through the seam: GPU against CPU, loss going down, the digits default, chunked data, and
//! the seam's own promises — the combine point, the full-batch objective, weights in and out, host batches, and
//! labels out of range refused on every path. Each property is written once and run on every backend.

mod common;

use common::*;
use softmax_wgpu::cpu::{CpuBackend, FastCpu, SparseCpu, BLOCK, LANES};
use softmax_wgpu::data::{self, Dataset, InMemory, Standardizer};
use softmax_wgpu::gpu::{GpuBackend, GpuContext, GpuOptions};
use softmax_wgpu::train::{objective, Batch, Local, Optimizer, Update};
use softmax_wgpu::validate::relative_distance;
use softmax_wgpu::{fit, Backend, EpochReport, Error, Params, RowSource, Shape, TrainConfig};

/// A standardised synthetic problem of n × d in k classes, with a held-out fifth.
fn problem(n: usize, d: usize, k: usize) -> (Dataset, Dataset) {
    let full = data::synthetic(n, d, k, 3).unwrap();
    let (mut train, held) = data::split_holdout(full.clone(), 0.2, 3).unwrap();
    let mut held = held.unwrap();
    let s = Standardizer::fit(train.x.view());
    s.apply(&mut train.x);
    s.apply(&mut held.x);
    (train, held)
}

fn source(d: &Dataset) -> InMemory {
    d.clone().into_source().unwrap()
}

fn shape(d: &Dataset) -> Shape {
    Shape {
        d: d.features(),
        k: d.classes.len(),
    }
}

/// Trains `backend` on `train` (and `held`) with `cfg`.
fn train_on(
    backend: &mut dyn Backend,
    train: &Dataset,
    held: Option<&Dataset>,
    cfg: &TrainConfig,
) -> Vec<EpochReport> {
    let mut t = source(train);
    let mut h = held.map(source);
    fit(
        backend,
        &mut t,
        h.as_mut().map(|h| h as &mut dyn RowSource),
        cfg,
        &mut [],
    )
    .unwrap()
}

fn gpu<'a>(ctx: &'a GpuContext, shape: Shape) -> GpuBackend<'a> {
    GpuBackend::new(ctx, shape, &GpuOptions::default()).unwrap()
}

fn rel_diff(a: &ndarray::Array2<f32>, b: &ndarray::Array2<f32>) -> f64 {
    relative_distance(a.iter().copied(), b.iter().map(|&v| f64::from(v)))
}

#[test]
fn gpu_and_cpu_weights_agree_after_many_steps() {
    let (train, _) = problem(1300, 20, 5);
    // 1040 rows, batch 16: 65 steps per epoch, with a partial last batch; two epochs = 130 steps.
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 16,
        lr: 0.1,
        l2: 1e-3,
        ..TrainConfig::default()
    };
    let mut cpu = CpuBackend::<f64>::new(shape(&train));
    train_on(&mut cpu, &train, None, &cfg);
    let want = cpu.params().unwrap();
    on_every_gpu(|ctx| {
        let mut g = gpu(ctx, shape(&train));
        train_on(&mut g, &train, None, &cfg);
        let got = g.params().unwrap();
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
fn the_fast_cpu_path_agrees_with_the_f64_reference_and_is_deterministic_across_thread_counts() {
    let (train, _) = problem(6000, 40, 7);
    // 4,800 rows: batches of 2,200 span 18 blocks of 128 (every lane busy, two twice, the last block partial), and
    // the last batch of 400 rows 4 blocks.
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 2200,
        lr: 0.5,
        l2: 1e-4,
        ..TrainConfig::default()
    };
    assert!(2200usize.div_ceil(BLOCK) > LANES);
    let mut reference = CpuBackend::<f64>::new(shape(&train));
    train_on(&mut reference, &train, None, &cfg);
    let want = reference.params().unwrap();
    let run = |threads: usize, cfg: &TrainConfig| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut fast = FastCpu::new(shape(&train)).unwrap();
            let reports = train_on(&mut fast, &train, None, cfg);
            (fast.params().unwrap(), reports.last().unwrap().train_loss)
        })
    };
    let (one, loss1) = run(1, &cfg);
    let (three, loss3) = run(3, &cfg);
    // Lanes are fixed by the batch size and added in lane order: the thread count changes nothing.
    assert_eq!(one, three);
    assert_eq!(loss1, loss3);
    // Unshuffled, a block's rows are read where they lie instead of copied together: the same sums in the same order
    // as over the copy, for any thread count.
    let ordered = TrainConfig {
        shuffle: false,
        ..cfg.clone()
    };
    let (one_ordered, _) = run(1, &ordered);
    assert_eq!(one_ordered, run(2, &ordered).0);
    // The same rows in the same order, copied (every other row of `train`) or read in place (those rows held
    // consecutively): bitwise the same gradient and sums.
    let evens: Vec<usize> = (0..train.len()).step_by(2).collect();
    let gradient = |data: &Dataset, idx: &[u32]| {
        let mut fast = FastCpu::new(shape(data)).unwrap();
        let set = fast.hold(&mut source(data)).unwrap();
        fast.set_params(&want).unwrap();
        fast.accumulate(&Batch::held(set, idx).unwrap()).unwrap();
        (fast.take_gradient().unwrap(), fast.take_sums().unwrap())
    };
    let strided: Vec<u32> = evens.iter().map(|&i| i as u32).collect();
    let in_place: Vec<u32> = (0..evens.len() as u32).collect();
    let (g_copied, s_copied) = gradient(&train, &strided);
    let (g_in_place, s_in_place) = gradient(&train.select(&evens), &in_place);
    assert!(evens.len() > BLOCK * 3);
    assert_eq!(g_copied.w, g_in_place.w);
    assert_eq!(g_copied.b, g_in_place.b);
    assert_eq!(format!("{s_copied:?}"), format!("{s_in_place:?}"));
    // f32 sums of up to 1100 terms per step against f64, over 9 contracting steps: the same bound as the GPU's.
    let d = rel_diff(&one.w, &want.w);
    assert!(d < 1e-4, "‖W_fast − W_f64‖/‖W_f64‖ = {d:e}");
}

fn loss_decreases_on_every_backend(on: Backends) {
    let (train, held) = problem(2000, 30, 4);
    let cfg = TrainConfig {
        epochs: 5,
        batch_size: 32,
        lr: 0.05,
        ..TrainConfig::default()
    };
    on.each(|name, make| {
        let mut b = make(shape(&train));
        let reports = train_on(b.as_mut(), &train, Some(&held), &cfg);
        let (first, last) = (reports.first().unwrap(), reports.last().unwrap());
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
    });
}
per_backend!(loss_decreases_on_every_backend);

fn digits_default_reaches_95_percent_held_out(on: Backends) {
    let cfg = TrainConfig::default();
    let full = data::digits().unwrap();
    assert_eq!(
        (full.len(), full.features(), full.classes.len()),
        (1797, 64, 10)
    );
    let (train, held) = data::split_holdout(full.clone(), cfg.val_split, cfg.seed).unwrap();
    let held = held.unwrap();
    on.each(|name, make| {
        let mut b = make(shape(&train));
        let r = train_on(b.as_mut(), &train, Some(&held), &cfg);
        let acc = r.last().unwrap().val_accuracy.unwrap();
        assert!(acc >= 0.95, "{name}: held-out accuracy {acc}");
    });
}
per_backend!(digits_default_reaches_95_percent_held_out);

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
                ..GpuOptions::default()
            };
            let mut g = GpuBackend::new(ctx, shape(&train), &opts).unwrap();
            let reports = train_on(&mut g, &train, Some(&held), &cfg);
            (
                g.train_chunks(),
                reports.last().unwrap().val_loss,
                g.params().unwrap(),
            )
        };
        let (one, loss1, p1) = run(None);
        // 17 features × 4 bytes × 97 rows per chunk: 25 chunks, the last one partial; rows of one batch come
        // from many chunks, gathered. The gather is a copy: with the same kernels after it the result is bitwise
        // the same; where one chunk is read in place by the one-pass kernel, its sums are added in another order.
        let (many, loss2, p2) = run(Some(17 * 4 * 97));
        assert_eq!((one, many), (1, 25));
        if GpuBackend::one_pass(ctx, shape(&train), &GpuOptions::default()) {
            assert_same_run("1 chunk in place, 25 gathered", &p1, &p2);
            let (l1, l2) = (loss1.unwrap(), loss2.unwrap());
            assert!((l1 - l2).abs() <= 1e-5 * l1.abs().max(1.0), "{l1} {l2}");
        } else {
            assert_eq!(p1, p2);
            assert_eq!(loss1, loss2);
        }
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
        epochs: 2,
        batch_size: 256,
        lr: 0.05,
        val_split: 0.0,
        ..TrainConfig::default()
    };
    for ctx in &gpus {
        let mut g = gpu(ctx, shape(&full));
        let reports = train_on(&mut g, &full, None, &cfg);
        let needed =
            (60_000u64 * 784 * 4).div_ceil(ctx.limits.max_storage_buffer_binding_size) as usize;
        assert!(g.train_chunks() >= needed, "{} chunks", g.train_chunks());
        let (first, second) = (&reports[0], &reports[1]);
        assert!(
            first.train_loss.is_finite() && second.train_loss < first.train_loss,
            "{first:?} → {second:?}"
        );
        assert!(
            second.train_accuracy > 0.5,
            "learnable blobs: accuracy {}",
            second.train_accuracy
        );
    }
}

fn the_full_batch_objective_matches_the_f64_reference_and_its_finite_differences(on: Backends) {
    let (train, _) = problem(300, 6, 4);
    let s = shape(&train);
    let mut g = softmax_wgpu::rng::SplitMix64::new(5);
    let params = Params {
        w: ndarray::Array2::from_shape_simple_fn((s.d, s.k), || (g.next_f64() - 0.5) as f32),
        b: ndarray::Array1::from_shape_simple_fn(s.k, || (g.next_f64() - 0.5) as f32),
    };
    let l2 = 0.01f32;
    let mut reference = CpuBackend::<f64>::new(s);
    let (j_ref, g_ref) =
        objective(&mut reference, &mut source(&train), &params, l2, &mut Local).unwrap();
    // Central differences of the f64 objective along W[0, 0] and b[1] agree with its gradient to ~h².
    let h = 1e-3f32;
    let mut fd = |change: &dyn Fn(&mut Params, f32)| {
        let (mut p, mut m) = (params.clone(), params.clone());
        change(&mut p, h);
        change(&mut m, -h);
        let (jp, _) = objective(&mut reference, &mut source(&train), &p, l2, &mut Local).unwrap();
        let (jm, _) = objective(&mut reference, &mut source(&train), &m, l2, &mut Local).unwrap();
        // The step actually taken, in f32.
        (jp - jm) / f64::from((params.w[[0, 0]] + h) - (params.w[[0, 0]] - h))
    };
    let d_w00 = fd(&|p: &mut Params, e| p.w[[0, 0]] += e);
    assert!(
        (d_w00 - g_ref.w[[0, 0]]).abs() < 1e-5,
        "{d_w00} vs {}",
        g_ref.w[[0, 0]]
    );
    assert_eq!(g_ref.rows, 240);
    on.each(|name, make| {
        let mut b = make(s);
        let (j, grad) =
            objective(b.as_mut(), &mut source(&train), &params, l2, &mut Local).unwrap();
        // The mean of 240 losses and a gradient of 240-term sums in f32: well within 1e-5 relative
        // (≈ 240·u ≈ 1.4e-5 in the worst case, √240·u ≈ 1e-6 typically).
        assert!(
            (j - j_ref).abs() <= 1e-5 * j_ref,
            "{name}: J {j} vs {j_ref}"
        );
        let dw = relative_distance(grad.w.iter().map(|&v| v as f32), g_ref.w.iter().copied());
        assert!(dw < 1e-5, "{name}: ∇W off by {dw:e}");
        assert_eq!(
            b.params().unwrap(),
            params,
            "{name}: weights left at the point evaluated"
        );
    });
}
per_backend!(the_full_batch_objective_matches_the_f64_reference_and_its_finite_differences);

#[test]
fn weights_and_optimizer_state_go_in_and_out_on_every_backend() {
    for optimizer in OPTIMIZERS {
        weights_and_state_resume(optimizer);
    }
}

/// Every update rule, with non-default hyper-parameters.
const OPTIMIZERS: [Optimizer; 5] = [
    Optimizer::Sgd,
    Optimizer::Momentum {
        momentum: 0.8,
        nesterov: false,
    },
    Optimizer::Momentum {
        momentum: 0.85,
        nesterov: true,
    },
    Optimizer::Adam {
        beta1: 0.85,
        beta2: 0.99,
        eps: 1e-7,
        weight_decay: 0.0,
    },
    Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.995,
        eps: 1e-8,
        weight_decay: 0.05,
    },
];

fn weights_and_state_resume(optimizer: Optimizer) {
    let (train, _) = problem(200, 5, 3);
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 40,
        lr: 0.1,
        optimizer,
        ..TrainConfig::default()
    };
    on_every_backend(|name, make| {
        let mut a = make(shape(&train));
        train_on(a.as_mut(), &train, None, &cfg);
        let (p, state) = (a.params().unwrap(), a.optimizer_state().unwrap());
        assert_eq!(state.steps, 4, "{name}: 160 rows in batches of 40");
        assert_eq!(
            state.tensors.len(),
            optimizer.slots().len(),
            "{name} {optimizer:?}"
        );
        // A second backend given the same weights and state continues exactly where the first is.
        let mut b = make(shape(&train));
        b.set_params(&p).unwrap();
        b.set_optimizer_state(&state).unwrap();
        train_on(a.as_mut(), &train, None, &cfg);
        train_on(b.as_mut(), &train, None, &cfg);
        let (pa, pb) = (a.params().unwrap(), b.params().unwrap());
        if name == "cpu f64" {
            // Params and state are f32 (the model file's precision): the f64 path restarts from its weights and
            // state rounded to f32, u = 6e-8 relative; four more steps keep the difference near that level (Adam's
            // division by √v̂ can amplify it a little).
            let d = rel_diff(&pa.w, &pb.w);
            assert!(d < 1e-5, "{name} {optimizer:?}: {d:e}");
        } else {
            assert_eq!(pa, pb, "{name} {optimizer:?}: resumed bitwise");
        }
        let wrong = Params::zeros(Shape { d: 6, k: 3 });
        assert!(
            matches!(b.set_params(&wrong), Err(Error::Shape { .. })),
            "{name}"
        );
    });
}

fn host_batches_give_the_same_step_as_held_batches(on: Backends) {
    let (train, _) = problem(150, 8, 3);
    let update = Update {
        optimizer: Optimizer::Sgd,
        lr: 0.2,
        l2: 0.0,
        l1: 0.0,
    };
    on.each(|name, make| {
        let mut held = make(shape(&train));
        let set = held.hold(&mut source(&train)).unwrap();
        let rows: Vec<u32> = (10..60).collect();
        held.accumulate(&Batch::held(set, &rows).unwrap()).unwrap();
        held.update(&update).unwrap();
        let mut host = make(shape(&train));
        let x = train.x.slice(ndarray::s![10..60, ..]);
        let chunk = data::Chunk::new("rows", x, &train.y[10..60], 3, 10).unwrap();
        host.accumulate(&Batch::host(chunk).unwrap()).unwrap();
        host.update(&update).unwrap();
        // The same rows and arithmetic; a GPU's held rows may be summed by the one-pass kernel, in another order.
        assert_same_run(name, &held.params().unwrap(), &host.params().unwrap());
        let (a, b) = (held.take_sums().unwrap(), host.take_sums().unwrap());
        assert_eq!((a.rows, a.correct), (b.rows, b.correct), "{name}");
        assert!(
            (a.loss - b.loss).abs() <= 1e-5 * a.loss.abs(),
            "{name}: {a:?} {b:?}"
        );
        // A row index past the held set is refused before it reaches the device.
        assert!(Batch::held(set, &[0, set.len() as u32]).is_err());
    });
}
per_backend!(host_batches_give_the_same_step_as_held_batches);

fn labels_out_of_range_are_refused_on_every_path(on: Backends) {
    let x = ndarray::Array2::<f32>::zeros((4, 2));
    let e = InMemory::from_arrays("rows", x.clone(), vec![0, 1, 3, 0], 3).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rows: row 2: label 3 is not below the 3 classes"
    );
    let e = data::Chunk::new("chunk", x.view(), &[0, 1, 2, 9], 3, 100).unwrap_err();
    assert!(e.to_string().contains("row 103: label 9"), "{e}");
    // A source of the wrong shape is refused by every backend before anything is held.
    let mut wrong = InMemory::from_arrays("rows", x, vec![0, 1, 1, 0], 2).unwrap();
    on.each(|name, make| {
        let mut b = make(Shape { d: 2, k: 3 });
        let e = b.hold(&mut wrong).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{name}: {e}");
    });
}
per_backend!(labels_out_of_range_are_refused_on_every_path);

#[test]
fn a_batch_larger_than_one_binding_is_accumulated_in_pieces() {
    on_every_gpu(|ctx| {
        // 4096 features: one row is 16 KiB, so a batch fills a 128 MiB binding at 8,188 rows (R keeps a 64 KiB window
        // past its rows). One more hundred rows must still work (full-batch gradient descent on a large data set), as
        // pieces whose sums add up.
        let s = Shape { d: 4096, k: 2 };
        let mut g = gpu(ctx, s);
        let n = g.max_batch() + 100;
        let x = uniform(n, s.d, -1.0, 1.0, 8);
        let y = labels(n, s.k, 9);
        let chunk = data::Chunk::new("rows", x.view(), &y, 2, 0).unwrap();
        g.accumulate(&Batch::host(chunk.clone()).unwrap()).unwrap();
        let got = g.take_gradient().unwrap();
        assert_eq!(got.rows, n as u64);
        let mut cpu = CpuBackend::<f64>::new(s);
        cpu.accumulate(&Batch::host(chunk).unwrap()).unwrap();
        let want = cpu.take_gradient().unwrap();
        // Sums of n products of |x| ≤ 1 and |r| ≤ 1 in f32, in any order: within 2·(n + 2)·u·n of the exact sum.
        let tol = 2.0 * (n as f64 + 2.0) * U * n as f64;
        let worst = got
            .w
            .iter()
            .zip(want.w.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst <= tol, "worst {worst:e} over {tol:e}");
        assert_eq!(g.take_sums().unwrap().rows, n);
    });
}

#[test]
fn autotune_picks_a_candidate_caches_it_and_changes_no_result() {
    let cache = tempfile::tempdir().unwrap();
    // Only this test turns autotune on, so the variable reaches no other test's tuning.
    std::env::set_var("SOFTMAX_WGPU_CACHE_DIR", cache.path());
    let (train, _) = problem(600, 12, 3);
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 64,
        lr: 0.1,
        ..TrainConfig::default()
    };
    on_every_gpu(|ctx| {
        let tuned_options = GpuOptions {
            autotune: true,
            ..GpuOptions::default()
        };
        let mut plain = gpu(ctx, shape(&train));
        train_on(&mut plain, &train, None, &cfg);
        let mut tuned = GpuBackend::new(ctx, shape(&train), &tuned_options).unwrap();
        train_on(&mut tuned, &train, None, &cfg);
        // A width changes the grid, never an invocation's order of additions.
        assert_eq!(tuned.params().unwrap(), plain.params().unwrap());
        let candidates = softmax_wgpu::gpu::tune::candidates(ctx);
        let chosen = tuned.tuning();
        assert_eq!(chosen.len(), 2);
        assert!(
            chosen.iter().all(|(_, w)| candidates.contains(w)),
            "{chosen:?} of {candidates:?}"
        );
        // The training rows are read in place: the held kernels were timed, under their own key.
        assert!(tuned.trains_in_place());
        assert!(tuned.tuning_for(64).is_some());
        let key = softmax_wgpu::gpu::tune::key(ctx, 12, 3, 64, true);
        let kernels = softmax_wgpu::gpu::tune::tuned_kernels(3);
        let cached = softmax_wgpu::gpu::tune::cached(&key, kernels).expect("the choice is cached");
        assert_eq!(cached.len(), 2);
        // A second backend takes the cached widths.
        let mut again = GpuBackend::new(ctx, shape(&train), &tuned_options).unwrap();
        train_on(&mut again, &train, None, &cfg);
        assert_eq!(again.tuning(), chosen);
    });
    assert!(cache.path().join("tuning.json").exists() || gpus().is_empty());
}

/// A sparse source and the same rows dense.
fn sparse_problem(n: usize, d: usize, k: usize) -> (softmax_wgpu::data::SparseInMemory, InMemory) {
    use softmax_wgpu::data::{SparseChunk, SparseInMemory, SparseRows};
    let data = softmax_wgpu::data::synthetic(n, d, k, 11).unwrap();
    let mut x = data.x.clone();
    // Keep about a fifth of the values (and every row's largest, so that no row is empty).
    x.indexed_iter_mut().for_each(|((i, j), v)| {
        if (i * 7 + j * 13) % 5 != 0 {
            *v = 0.0;
        }
    });
    let chunk = SparseChunk::from_dense(x.view(), &data.y, 0);
    let sparse = SparseInMemory::new(std::sync::Arc::new(
        SparseRows::from_chunk("sparse", &chunk, k).unwrap(),
    ));
    let dense = InMemory::from_arrays("dense", x, data.y, k).unwrap();
    (sparse, dense)
}

#[test]
fn sparse_training_matches_the_dense_reference_on_every_backend() {
    // Without a penalty the GPU updates only the columns a step touched; with one, every weight.
    for l2 in [0.0, 1e-3] {
        sparse_training_matches(l2);
    }
}

fn sparse_training_matches(l2: f32) {
    let (mut sparse, mut dense) = sparse_problem(900, 40, 5);
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 32,
        lr: 0.2,
        l2,
        val_split: 0.0,
        ..TrainConfig::default()
    };
    let shape = Shape { d: 40, k: 5 };
    let mut reference = CpuBackend::<f64>::new(shape);
    fit(&mut reference, &mut dense, None, &cfg, &mut []).unwrap();
    let want = reference.params().unwrap();
    let contexts = gpus();
    let mut backends: Vec<(String, Box<dyn Backend + '_>)> = vec![
        ("cpu f32".into(), Box::new(CpuBackend::<f32>::new(shape))),
        ("cpu f64".into(), Box::new(CpuBackend::<f64>::new(shape))),
        (
            "sparse cpu".into(),
            Box::new(SparseCpu::new(shape).unwrap()),
        ),
    ];
    for ctx in &contexts {
        let options = GpuOptions {
            sparse: true,
            ..GpuOptions::default()
        };
        backends.push((
            ctx.describe(),
            Box::new(GpuBackend::new(ctx, shape, &options).unwrap()),
        ));
    }
    for (name, mut b) in backends {
        let reports = fit(b.as_mut(), &mut sparse, None, &cfg, &mut []).unwrap();
        let got = b.params().unwrap();
        // The same steps on the same rows; f32 sums in another order (per column instead of per row): ≈ 1e-7 per
        // step over 58 steps of a contracting problem, as for the dense trainers (see above).
        let d = rel_diff(&got.w, &want.w);
        assert!(d < 1e-4, "{name}, l2 {l2}: ‖W − W_dense_f64‖/‖W‖ = {d:e}");
        assert!(reports[1].train_accuracy > 0.5, "{name}: {reports:?}");
    }
}

#[test]
fn sparse_steps_that_touch_few_columns_update_exactly_those() {
    use softmax_wgpu::data::{SparseChunk, SparseInMemory, SparseRows};
    // 400 rows of 3 non-zeros among 500 columns, batches of 8: a step touches at most 24 columns, so the GPU's
    // touched-columns update (l2 = 0) is most of what is tested. The dense f64 reference updates every column.
    let (n, d, k) = (400usize, 500usize, 4usize);
    let mut chunk = SparseChunk {
        offsets: vec![0],
        indices: Vec::new(),
        values: Vec::new(),
        y: Vec::new(),
        d,
        first_row: 0,
    };
    for i in 0..n {
        let class = i % k;
        let mut cols = [class * 7, 100 + (i * 13) % 400, 50 + (i * 31) % 40];
        cols.sort_unstable();
        for (t, c) in cols.iter().enumerate() {
            if t == 0 || *c != cols[t - 1] {
                chunk.indices.push(*c as u32);
                chunk.values.push(0.5 + (i % 5) as f32 * 0.25);
            }
        }
        chunk.offsets.push(chunk.indices.len() as u64);
        chunk.y.push(class as u32);
    }
    let rows = std::sync::Arc::new(SparseRows::from_chunk("few", &chunk, k).unwrap());
    let all: Vec<u32> = (0..n as u32).collect();
    let dense_x = rows.batch(&all).to_dense();
    let mut dense = InMemory::from_arrays("dense", dense_x, chunk.y.clone(), k).unwrap();
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 8,
        lr: 0.3,
        val_split: 0.0,
        ..TrainConfig::default()
    };
    let shape = Shape { d, k };
    let mut reference = CpuBackend::<f64>::new(shape);
    fit(&mut reference, &mut dense, None, &cfg, &mut []).unwrap();
    let want = reference.params().unwrap();
    // The sparse CPU trainer updates only the touched features too (with l2 = 0 its scale stays 1).
    let mut fast = SparseCpu::new(shape).unwrap();
    fit(
        &mut fast,
        &mut SparseInMemory::new(rows.clone()),
        None,
        &cfg,
        &mut [],
    )
    .unwrap();
    let got = fast.params().unwrap();
    let dw = rel_diff(&got.w, &want.w);
    assert!(dw < 1e-4, "sparse cpu: ‖W − W_f64‖/‖W‖ = {dw:e}");
    assert!(got.w.row(30).iter().all(|&v| v == 0.0));
    on_every_gpu(|ctx| {
        let options = GpuOptions {
            sparse: true,
            ..GpuOptions::default()
        };
        let mut g = GpuBackend::new(ctx, shape, &options).unwrap();
        let mut source = SparseInMemory::new(rows.clone());
        fit(&mut g, &mut source, None, &cfg, &mut []).unwrap();
        let got = g.params().unwrap();
        // 150 steps of f32 sums in another order than the f64 reference: ≈ 1e-7 relative each.
        let dw = rel_diff(&got.w, &want.w);
        assert!(dw < 1e-4, "‖W − W_f64‖/‖W‖ = {dw:e}");
        // Columns no row touches (22 to 49) never move from 0.
        assert!(got.w.row(30).iter().all(|&v| v == 0.0));
    });
}

fn every_schedule_trains_the_same_on_every_backend(on: Backends) {
    use softmax_wgpu::config::{Schedule, ScheduleKind};
    let (train, held) = problem(600, 12, 4);
    for kind in [
        ScheduleKind::Step,
        ScheduleKind::Exp,
        ScheduleKind::Cosine,
        ScheduleKind::Invscaling,
    ] {
        let cfg = TrainConfig {
            epochs: 3,
            batch_size: 32,
            lr: 0.3,
            schedule: Schedule {
                kind,
                warmup_steps: 7,
                decay_steps: 10,
                gamma: 0.7,
                power: 0.5,
                min_lr: 0.01,
            },
            ..TrainConfig::default()
        };
        let mut reference = CpuBackend::<f64>::new(shape(&train));
        let want_reports = train_on(&mut reference, &train, Some(&held), &cfg);
        let want = reference.params().unwrap();
        // The rate of the last step is the schedule's at step 45 of 45 (15 steps an epoch).
        let last = cfg.schedule.lr(cfg.lr, 45, 45);
        assert_eq!(want_reports[2].lr, f64::from(last), "{kind:?}");
        on.each(|name, make| {
            let mut b = make(shape(&train));
            let reports = train_on(b.as_mut(), &train, Some(&held), &cfg);
            assert_eq!(reports[2].lr, want_reports[2].lr, "{name} {kind:?}");
            // As for the constant rate (see above): 45 steps, each ≈ 1e-7 relative apart.
            let d = rel_diff(&b.params().unwrap().w, &want.w);
            assert!(d < 1e-4, "{name} {kind:?}: {d:e}");
        });
    }
}
per_backend!(every_schedule_trains_the_same_on_every_backend);

fn early_stopping_keeps_the_best_epoch_s_weights(on: Backends) {
    use softmax_wgpu::config::EarlyStopping;
    let (train, held) = problem(500, 10, 3);
    // A rate too large for this problem: the held-out loss falls, then rises.
    let cfg = TrainConfig {
        epochs: 40,
        batch_size: 16,
        lr: 3.0,
        early_stopping: Some(EarlyStopping {
            patience: 2,
            min_delta: 0.0,
        }),
        ..TrainConfig::default()
    };
    on.each(|name, make| {
        let mut b = make(shape(&train));
        let reports = train_on(b.as_mut(), &train, Some(&held), &cfg);
        let best = reports.iter().find(|r| r.best).expect("a best epoch");
        let min = reports
            .iter()
            .map(|r| r.val_loss.unwrap())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(best.val_loss.unwrap(), min, "{name}");
        assert!(reports.len() < 40, "{name}: stopped early");
        assert_eq!(reports.len(), best.epoch + 2, "{name}: patience 2");
        // The weights are those of a run that ends at the best epoch.
        let mut again = make(shape(&train));
        let plain = TrainConfig {
            epochs: best.epoch,
            early_stopping: None,
            ..cfg.clone()
        };
        train_on(again.as_mut(), &train, Some(&held), &plain);
        assert_eq!(b.params().unwrap(), again.params().unwrap(), "{name}");
    });
    // No held-out rows: nothing to stop on.
    let mut b = CpuBackend::<f32>::new(shape(&train));
    let mut t = source(&train);
    let e = fit(&mut b, &mut t, None, &cfg, &mut []).unwrap_err();
    assert!(e.to_string().contains("--early-stopping"), "{e}");
}
per_backend!(early_stopping_keeps_the_best_epoch_s_weights);

fn l1_and_elastic_net_train_the_same_on_every_backend_with_exact_zeros(on: Backends) {
    let (train, held) = problem(600, 30, 4);
    for (l1, l2) in [(0.05f32, 0.0f32), (0.05, 0.01)] {
        let cfg = TrainConfig {
            epochs: 3,
            batch_size: 32,
            lr: 0.2,
            l1,
            l2,
            ..TrainConfig::default()
        };
        let mut reference = CpuBackend::<f64>::new(shape(&train));
        let want_reports = train_on(&mut reference, &train, Some(&held), &cfg);
        let want = reference.params().unwrap();
        let zeros = want.w.iter().filter(|&&v| v == 0.0).count();
        assert!(
            zeros > 10,
            "l1 {l1}: the penalty zeroes weights ({zeros} of {})",
            want.w.len()
        );
        // The objective reported includes λ₁‖W‖₁ (and λ/2‖W‖²).
        let l1_norm: f64 = want.w.iter().map(|&v| f64::from(v).abs()).sum();
        assert!(want_reports[2].train_loss > f64::from(l1) * l1_norm);
        on.each(|name, make| {
            let mut b = make(shape(&train));
            train_on(b.as_mut(), &train, Some(&held), &cfg);
            let got = b.params().unwrap();
            let d = rel_diff(&got.w, &want.w);
            assert!(d < 1e-4, "{name} l1 {l1} l2 {l2}: {d:e}");
            // The same weights are exactly zero, but for those the f32 paths leave within a rounding of the
            // shrink's threshold.
            let agree = got
                .w
                .iter()
                .zip(want.w.iter())
                .filter(|(g, w)| (**g == 0.0) == (**w == 0.0))
                .count();
            assert!(
                agree + 2 >= got.w.len(),
                "{name}: {agree} of {} agree on zero",
                got.w.len()
            );
        });
    }
}
per_backend!(l1_and_elastic_net_train_the_same_on_every_backend_with_exact_zeros);

fn every_optimizer_trains_the_same_on_every_backend(on: Backends) {
    let (train, held) = problem(600, 12, 4);
    for optimizer in OPTIMIZERS {
        for (l2, l1) in [(0.0f32, 0.0f32), (1e-3, 1e-3)] {
            let cfg = TrainConfig {
                epochs: 2,
                batch_size: 32,
                lr: if matches!(optimizer, Optimizer::Adam { .. }) {
                    0.01
                } else {
                    0.05
                },
                l2,
                l1,
                optimizer,
                ..TrainConfig::default()
            };
            let mut reference = CpuBackend::<f64>::new(shape(&train));
            let want_reports = train_on(&mut reference, &train, Some(&held), &cfg);
            let want = reference.params().unwrap();
            assert!(
                want_reports[1].train_loss < want_reports[0].train_loss * 1.5,
                "{optimizer:?}"
            );
            on.each(|name, make| {
                let mut b = make(shape(&train));
                train_on(b.as_mut(), &train, Some(&held), &cfg);
                // 30 steps; each differs from the f64 step by rounding (≈ 1e-7 relative), which Adam's
                // normalisation can scale up where a second moment is small: 1e-4 is far below any wrong formula.
                let d = rel_diff(&b.params().unwrap().w, &want.w);
                assert!(d < 1e-4, "{name} {optimizer:?} l2 {l2} l1 {l1}: {d:e}");
            });
        }
    }
}
per_backend!(every_optimizer_trains_the_same_on_every_backend);

fn a_run_resumed_from_its_last_checkpoint_ends_where_the_whole_run_ends(on: Backends) {
    use softmax_wgpu::checkpoint::{run_identity, Checkpoint, Checkpointer};
    let (train, held) = problem(300, 8, 3);
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        lr: 0.05,
        optimizer: Optimizer::Momentum {
            momentum: 0.9,
            nesterov: true,
        },
        ..TrainConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.json");
    let id = run_identity(
        &cfg,
        "problem",
        Some(240),
        shape(&train),
        softmax_wgpu::train::Residency::Held,
    );
    on.each(|name, make| {
        // 15 steps an epoch, 45 in all; a checkpoint every 7 steps: the last at step 42, mid-epoch 3.
        let mut whole = make(shape(&train));
        let mut saver = Checkpointer::new(&ck, 7, id.clone(), None).unwrap();
        let mut t = source(&train);
        let mut h = source(&held);
        fit(
            whole.as_mut(),
            &mut t,
            Some(&mut h),
            &cfg,
            &mut [&mut saver],
        )
        .unwrap();
        assert_eq!(saver.written(), 6, "{name}");
        let c = Checkpoint::load(&ck).unwrap();
        assert_eq!(
            (c.at.epoch, c.at.batches_done, c.at.steps),
            (3, 12, 42),
            "{name}"
        );
        c.check_run(&ck, &id).unwrap();
        let mut resumed = make(shape(&train));
        c.restore(resumed.as_mut()).unwrap();
        let cont = TrainConfig {
            resume: Some(c.at),
            ..cfg.clone()
        };
        fit(resumed.as_mut(), &mut t, Some(&mut h), &cont, &mut []).unwrap();
        let (a, b) = (whole.params().unwrap(), resumed.params().unwrap());
        if name == "cpu f64" {
            // Checkpoints are f32: the f64 path resumes from its weights rounded (see the resume test above).
            assert!(rel_diff(&a.w, &b.w) < 1e-5, "{name}");
        } else {
            assert_eq!(a, b, "{name}: resumed bit for bit");
        }
    });
}
per_backend!(a_run_resumed_from_its_last_checkpoint_ends_where_the_whole_run_ends);

/// Every version of a checkpoint file, as an observer placed after the [`Checkpointer`] sees it.
struct Snapshots {
    path: std::path::PathBuf,
    taken: Vec<Vec<u8>>,
}

impl Snapshots {
    fn look(&mut self) {
        if let Ok(bytes) = std::fs::read(&self.path) {
            if self.taken.last() != Some(&bytes) {
                self.taken.push(bytes);
            }
        }
    }
}

impl softmax_wgpu::train::Observer for Snapshots {
    fn on_step(
        &mut self,
        _: &softmax_wgpu::train::StepEvent<'_>,
        _: &mut dyn Backend,
    ) -> softmax_wgpu::Result<()> {
        self.look();
        Ok(())
    }

    fn on_epoch(&mut self, _: &mut EpochReport, _: &mut dyn Backend) -> softmax_wgpu::Result<()> {
        self.look();
        Ok(())
    }
}

/// Resumes `cfg`'s run (15 steps an epoch) from every `stride`-th checkpoint it writes every 6 steps — mid-epoch
/// positions, and every second epoch's end (step 30, 60 …), written once the epoch's report has run the stopping
/// rules — and checks that each resumed run ends where the whole run ends: the same epochs, training and held-out
/// losses, verdicts and weights, bit for bit but on the f64 path. `case` checks the whole run is the case meant.
fn resumed_from_every_checkpoint(
    on: Backends,
    cfg: &TrainConfig,
    stride: usize,
    case: impl Fn(&str, &[EpochReport]),
) {
    use softmax_wgpu::checkpoint::{run_identity, Checkpoint, Checkpointer};
    let (train, held) = problem(300, 8, 3);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.json");
    let copy = dir.path().join("copy.json");
    let id = run_identity(
        cfg,
        "problem",
        Some(240),
        shape(&train),
        softmax_wgpu::train::Residency::Held,
    );
    on.each(|name, make| {
        let _ = std::fs::remove_file(&ck); // the previous backend's
        let mut whole = make(shape(&train));
        let mut saver = Checkpointer::new(&ck, 6, id.clone(), None).unwrap();
        let mut snaps = Snapshots {
            path: ck.clone(),
            taken: Vec::new(),
        };
        let (mut t, mut h) = (source(&train), source(&held));
        let want = fit(
            whole.as_mut(),
            &mut t,
            Some(&mut h),
            cfg,
            &mut [&mut saver, &mut snaps],
        )
        .unwrap();
        case(name, &want);
        let want_w = whole.params().unwrap();
        let mut boundaries = 0;
        for bytes in snaps.taken.iter().step_by(stride) {
            std::fs::write(&copy, bytes).unwrap();
            let c = Checkpoint::load(&copy).unwrap();
            boundaries += usize::from(c.at.batches_done == 15);
            let mut resumed = make(shape(&train));
            c.restore(resumed.as_mut()).unwrap();
            let cont = TrainConfig {
                resume: Some(c.at.clone()),
                ..cfg.clone()
            };
            let got = fit(resumed.as_mut(), &mut t, Some(&mut h), &cont, &mut []).unwrap();
            let at = (c.at.epoch, c.at.batches_done);
            let resumed_from = |r: &&EpochReport| r.epoch > at.0 || (r.epoch == at.0 && at.1 < 15);
            // (The f64 path resumes from rounded weights: its losses agree to rounding, not to the bit.)
            let exact = name != "cpu f64";
            let view = |r: &EpochReport| {
                let bits = |v: f64| Some(v.to_bits()).filter(|_| exact);
                let losses = (bits(r.train_loss), r.val_loss.and_then(bits));
                (r.epoch, losses, r.best, r.converged)
            };
            assert_eq!(
                got.iter().map(view).collect::<Vec<_>>(),
                want.iter()
                    .filter(resumed_from)
                    .map(view)
                    .collect::<Vec<_>>(),
                "{name}: resumed at {at:?}"
            );
            let got_w = resumed.params().unwrap();
            if name == "cpu f64" {
                // Checkpoints are f32: the f64 path resumes from its weights rounded, so its later steps differ by
                // rounding; the epochs and the stop above must still agree, and the weights closely.
                assert!(
                    rel_diff(&got_w.w, &want_w.w) < 1e-5,
                    "{name}: resumed at {at:?}"
                );
            } else {
                assert_eq!(got_w, want_w, "{name}: resumed at {at:?}, bit for bit");
            }
        }
        assert!(
            boundaries >= 1,
            "{name}: checkpoints at an epoch's end were tested"
        );
    });
}

fn an_early_stopping_run_resumed_from_any_checkpoint_stops_where_the_whole_run_stops(on: Backends) {
    use softmax_wgpu::config::{Convergence, EarlyStopping};
    let cfg = TrainConfig {
        epochs: 60,
        batch_size: 16,
        lr: 0.5,
        early_stopping: Some(EarlyStopping {
            patience: 3,
            min_delta: 1e-3,
        }),
        // The convergence rule rides along: its state must come back too (it does not fire first here).
        convergence: Some(Convergence {
            tol: 1e-9,
            patience: 50,
        }),
        ..TrainConfig::default()
    };
    resumed_from_every_checkpoint(on, &cfg, 1, |name, want| {
        // The case worth testing: the run stopped early, and the weights it keeps are not its last epoch's.
        let last = want.last().unwrap().epoch;
        let best = want.iter().find(|r| r.best).unwrap().epoch;
        assert!(
            last < 60 && best == last - 3,
            "{name}: best {best}, last {last}"
        );
    });
}
per_backend!(an_early_stopping_run_resumed_from_any_checkpoint_stops_where_the_whole_run_stops);

fn a_converging_run_resumed_from_any_checkpoint_converges_where_the_whole_run_does(on: Backends) {
    // The convergence rule reads the training loss of each epoch: a checkpoint carries the loss sums of the epoch
    // in progress, so a resumed epoch reports the uninterrupted run's loss and the rule stops at the same epoch.
    let cfg = TrainConfig {
        epochs: 200,
        batch_size: 16,
        lr: 0.05,
        convergence: Some(softmax_wgpu::config::Convergence {
            tol: 1e-3,
            patience: 3,
        }),
        ..TrainConfig::default()
    };
    resumed_from_every_checkpoint(on, &cfg, 3, |name, want| {
        let last = want.last().unwrap();
        assert!(
            last.converged && last.epoch < 200 && last.epoch > 4,
            "{name}: stopped at {}",
            last.epoch
        );
    });
}
per_backend!(a_converging_run_resumed_from_any_checkpoint_converges_where_the_whole_run_does);

fn a_minibatch_run_stops_by_scikit_learns_convergence_rule(on: Backends) {
    let (train, _) = problem(600, 8, 3);
    let s = shape(&train);
    let tol = 1e-3;
    let cfg = TrainConfig {
        epochs: 200,
        batch_size: 32,
        lr: 0.05,
        val_split: 0.0,
        convergence: Some(softmax_wgpu::config::Convergence { tol, patience: 5 }),
        ..TrainConfig::default()
    };
    on.each(|name, make| {
        let reports = train_on(make(s).as_mut(), &train, None, &cfg);
        let last = reports.last().unwrap();
        // Stopped well before the cap, by the rule, on the first epoch where it holds.
        assert!(last.converged, "{name}: ran {} epochs", reports.len());
        assert!(reports.len() < 200, "{name}");
        assert_eq!(reports.iter().filter(|r| r.converged).count(), 1);
        // The rule itself, replayed: each of the last 5 epochs is above the best before it minus tol, the epoch
        // before them is not.
        let mut best = f64::INFINITY;
        let no_progress: Vec<bool> = reports
            .iter()
            .map(|r| {
                let stalled = r.train_loss > best - tol;
                best = best.min(r.train_loss);
                stalled
            })
            .collect();
        let n = no_progress.len();
        assert!(no_progress[n - 5..].iter().all(|&x| x), "{name}");
        assert!(n == 5 || !no_progress[n - 6], "{name}: {no_progress:?}");
    });
    // Without the rule the same run takes every epoch.
    let capped = TrainConfig {
        epochs: 12,
        convergence: None,
        ..cfg
    };
    assert_eq!(
        train_on(&mut CpuBackend::<f64>::new(s), &train, None, &capped).len(),
        12
    );
}
per_backend!(a_minibatch_run_stops_by_scikit_learns_convergence_rule);

fn class_weights_train_alike_on_every_backend_and_weights_of_one_change_nothing(on: Backends) {
    // K = 5 takes the GPU's fused forward kernel, K = 20 its logits kernel and the softmax writing the residual.
    for k in [5usize, 20] {
        let (train, _) = problem(800, 12, k);
        let s = shape(&train);
        let weights: Vec<f32> = (0..k).map(|c| 0.5 + 0.25 * c as f32).collect();
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 32,
            lr: 0.05,
            l2: 1e-3,
            val_split: 0.0,
            class_weights: Some(weights.clone()),
            ..TrainConfig::default()
        };
        let mut reference = CpuBackend::<f64>::new(s);
        let want = train_on(&mut reference, &train, None, &cfg);
        let want_p = reference.params().unwrap();
        let plain = TrainConfig {
            class_weights: None,
            ..cfg.clone()
        };
        let ones = TrainConfig {
            class_weights: Some(vec![1.0; k]),
            ..cfg.clone()
        };
        on.each(|name, make| {
            let mut b = make(s);
            let got = train_on(b.as_mut(), &train, None, &cfg);
            // As in gpu_and_cpu_weights_agree_after_many_steps: 40 steps whose f32 gradients differ from f64 by
            // ~(B + D)·u, weights ≤ 5.25 scaling rows, not errors; 1e-4 is far above that and far below what a
            // weight applied to the wrong row or left out does (the weighted and plain runs differ by ~1e-1).
            let d = rel_diff(&b.params().unwrap().w, &want_p.w);
            assert!(d < 1e-4, "{name} K={k}: ‖ΔW‖/‖W‖ = {d:e}");
            // The reported loss is the weighted mean.
            let dl = (got[1].train_loss - want[1].train_loss).abs() / want[1].train_loss;
            assert!(dl < 1e-5, "{name} K={k}: loss {dl:e}");
            let mut p = make(s);
            train_on(p.as_mut(), &train, None, &plain);
            let mut o = make(s);
            train_on(o.as_mut(), &train, None, &ones);
            assert_eq!(
                p.params().unwrap(),
                o.params().unwrap(),
                "{name} K={k}: weights of one differ from none"
            );
            let apart = rel_diff(&p.params().unwrap().w, &want_p.w);
            assert!(
                apart > 1e-2,
                "{name} K={k}: weighting changed little: {apart:e}"
            );
        });
    }
}
per_backend!(class_weights_train_alike_on_every_backend_and_weights_of_one_change_nothing);

fn sample_weights_train_alike_on_every_backend_and_weights_of_one_change_nothing(on: Backends) {
    use softmax_wgpu::data::Weighted;
    use std::sync::Arc;
    // K = 5: the GPU's fused forward kernel; K = 20: its logits kernel and the softmax writing the residual. Class
    // weights too, so that the product of the two is exercised.
    for k in [5usize, 20] {
        let (train, _) = problem(800, 12, k);
        let s = shape(&train);
        let n = train.len();
        let w: Arc<[f32]> = (0..n)
            .map(|i| {
                if i % 11 == 0 {
                    0.0
                } else {
                    0.25 + (i % 7) as f32 * 0.5
                }
            })
            .collect();
        let ones: Arc<[f32]> = vec![1.0f32; n].into();
        let path = std::path::Path::new("weights");
        let run = |b: &mut dyn Backend, weights: Option<&Arc<[f32]>>, cfg: &TrainConfig| {
            let mut t: Box<dyn RowSource> = match weights {
                Some(w) => Box::new(Weighted::new(source(&train), w.clone(), path).unwrap()),
                None => Box::new(source(&train)),
            };
            fit(b, &mut t, None, cfg, &mut []).unwrap()
        };
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 32,
            lr: 0.05,
            l2: 1e-3,
            val_split: 0.0,
            class_weights: Some((0..k).map(|c| 1.0 + 0.1 * c as f32).collect()),
            ..TrainConfig::default()
        };
        let mut reference = CpuBackend::<f64>::new(s);
        let want = run(&mut reference, Some(&w), &cfg);
        let want_p = reference.params().unwrap();
        on.each(|name, make| {
            let mut b = make(s);
            let got = run(b.as_mut(), Some(&w), &cfg);
            // The bound of the class-weight test: 40 steps of f32 gradients, weights ≤ 3.25·1.95 scale rows.
            let d = rel_diff(&b.params().unwrap().w, &want_p.w);
            assert!(d < 1e-4, "{name} K={k}: ‖ΔW‖/‖W‖ = {d:e}");
            let dl = (got[1].train_loss - want[1].train_loss).abs() / want[1].train_loss;
            assert!(dl < 1e-5, "{name} K={k}: loss {dl:e}");
            let mut p = make(s);
            run(p.as_mut(), None, &cfg);
            let mut o = make(s);
            run(o.as_mut(), Some(&ones), &cfg);
            assert_eq!(
                p.params().unwrap(),
                o.params().unwrap(),
                "{name} K={k}: weights of one differ from none"
            );
            let apart = rel_diff(&p.params().unwrap().w, &want_p.w);
            assert!(
                apart > 1e-2,
                "{name} K={k}: weighting changed little: {apart:e}"
            );
        });
    }
}
per_backend!(sample_weights_train_alike_on_every_backend_and_weights_of_one_change_nothing);

#[test]
fn rows_read_in_place_train_bitwise_like_gathered_rows_for_any_chunking() {
    // Class and sample weights and shuffled batches that draw from every chunk: the held kernels must find each row
    // in its chunk slot, its label in the set's labels and its weight in the ring.
    // 1920 training rows.
    let (train, held) = problem(2400, 17, 6);
    let weights: std::sync::Arc<[f32]> =
        (0..train.y.len()).map(|i| [0.5, 1.0, 2.0][i % 3]).collect();
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 96,
        lr: 0.05,
        shuffle: true,
        ..TrainConfig::default()
    };
    on_every_gpu(|ctx| {
        let run = |chunk: Option<u64>, gather: bool, one_pass: Option<bool>| {
            let opts = GpuOptions {
                max_chunk_bytes: chunk,
                gather,
                one_pass,
                ..GpuOptions::default()
            };
            let mut g = GpuBackend::new(ctx, shape(&train), &opts).unwrap();
            g.set_class_weights(Some(&[1.0, 2.0, 0.5, 1.0, 1.5, 1.0]))
                .unwrap();
            let path = std::path::Path::new("weights");
            let mut t = data::Weighted::new(source(&train), weights.clone(), path).unwrap();
            let mut h = source(&held);
            let reports = fit(&mut g, &mut t, Some(&mut h), &cfg, &mut []).unwrap();
            let last = reports.last().unwrap();
            (
                g.train_chunks(),
                g.trains_in_place(),
                (last.train_loss, last.val_loss, last.val_accuracy),
                g.params().unwrap(),
            )
        };
        let (chunks, in_place, metrics, params) = run(None, true, None);
        assert_eq!((chunks, in_place), (1, false));
        // 17 features × 4 bytes × rows per chunk: 1 to 4 chunks are read in place (one slot chosen per row), 5 are
        // gathered. The two-kernel held path computes the gathered path's sums in the same order: bitwise equal.
        // The one-pass kernel adds them by tiles and segments, the same for any chunking: bitwise equal among its
        // chunkings, and the same run as the gathered one up to the order of addition.
        // Each held path as the adapter chooses it, then the one-pass kernel wherever the adapter can run it.
        for one_pass in [None, Some(true)] {
            let fused = GpuBackend::one_pass(
                ctx,
                shape(&train),
                &GpuOptions {
                    one_pass,
                    ..GpuOptions::default()
                },
            );
            if one_pass.is_some() && !fused {
                continue;
            }
            let mut in_place_run = None;
            for (rows, want_chunks, want_in_place) in [
                (None, 1, true),
                (Some(1000), 2, true),
                (Some(700), 3, true),
                (Some(500), 4, true),
                (Some(400), 5, false),
            ] {
                let got = run(rows.map(|r| 17 * 4 * r), false, one_pass);
                assert_eq!((got.0, got.1), (want_chunks, want_in_place), "{rows:?}");
                if fused && want_in_place {
                    assert_same_run(&format!("{rows:?}"), &got.3, &params);
                    let first = in_place_run.get_or_insert_with(|| (got.2, got.3.clone()));
                    assert_eq!((got.2, &got.3), (first.0, &first.1), "{rows:?}");
                } else {
                    assert_eq!(got.2, metrics, "{rows:?}");
                    assert_eq!(got.3, params, "{rows:?}");
                }
            }
        }
    });
}

#[test]
fn rows_read_in_place_train_bitwise_like_gathered_rows_past_16_classes() {
    // K = 30 (two class tiles, the last partial), class and sample weights, shuffled batches over three chunks:
    // logits_held must find each row and its label where it is held; softmax and grad_held then see what
    // the gathered path's kernels see.
    let (train, _) = problem(1200, 9, 30);
    let weights: std::sync::Arc<[f32]> =
        (0..train.y.len()).map(|i| [0.5, 1.0, 2.0][i % 3]).collect();
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 100,
        lr: 0.05,
        shuffle: true,
        ..TrainConfig::default()
    };
    let class_weights: Vec<f32> = (0..30).map(|c| 0.5 + (c % 4) as f32 * 0.5).collect();
    on_every_gpu(|ctx| {
        let run = |gather: bool| {
            let opts = GpuOptions {
                max_chunk_bytes: Some(9 * 4 * 400),
                gather,
                one_pass: Some(false),
                ..GpuOptions::default()
            };
            let mut g = GpuBackend::new(ctx, shape(&train), &opts).unwrap();
            g.set_class_weights(Some(&class_weights)).unwrap();
            let path = std::path::Path::new("weights");
            let mut t = data::Weighted::new(source(&train), weights.clone(), path).unwrap();
            let reports = fit(&mut g, &mut t, None, &cfg, &mut []).unwrap();
            let last = reports.last().unwrap();
            (
                g.train_chunks(),
                g.trains_in_place(),
                last.train_loss,
                g.params().unwrap(),
            )
        };
        let (chunks, in_place, loss, params) = run(false);
        assert_eq!((chunks, in_place), (3, true));
        let gathered = run(true);
        assert_eq!((gathered.0, gathered.1), (3, false));
        assert_eq!((loss, &params), (gathered.2, &gathered.3));
    });
}

#[test]
fn the_gpu_shape_trains_like_the_cpu_adapters_shape_on_every_adapter() {
    // What a card runs, trained here on whatever adapter there is: the one-pass kernel's GPU shape (8 lanes a row
    // where the adapter's workgroups hold 512 invocations, each lane a share of the row's features, their logits
    // added over the lanes) adds the logits in another order than its CPU-adapter shape (one invocation a row,
    // feature by feature), so the run is the same up to the order of addition; at K = 40 the GPU shape reads the
    // rows in place and splits the gradient over them (the CPU adapters' shape gathers them and walks every row),
    // adding by segments, the same up to the order of addition again. Batches of 1,500 rows grow the batch buffers past their first 1,024 (the split gradient's bind
    // groups are rebuilt with them) and make 6 segments of 256-row units.
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 1500,
        lr: 0.1,
        shuffle: true,
        ..TrainConfig::default()
    };
    on_every_gpu(|ctx| {
        for (k, one_pass) in [(10, Some(true)), (40, None)] {
            let (train, test) = problem(4000, 12, k);
            let run = |gpu_shape: bool| {
                let opts = GpuOptions {
                    one_pass,
                    gpu_shape: Some(gpu_shape),
                    ..GpuOptions::default()
                };
                if one_pass.is_some() && !GpuBackend::one_pass(ctx, shape(&train), &opts) {
                    return None;
                }
                let mut g = GpuBackend::new(ctx, shape(&train), &opts).unwrap();
                let mut t = source(&train);
                // Held-out rows too: their loss is the one-pass kernel's forward pass alone (TRAIN = 0).
                let mut v = source(&test);
                let reports = fit(&mut g, &mut t, Some(&mut v), &cfg, &mut []).unwrap();
                let last = reports.last().unwrap();
                Some((
                    (g.splits_gradient(), g.trains_in_place()),
                    (last.train_loss, last.val_loss.unwrap()),
                    g.params().unwrap(),
                ))
            };
            let (Some(gpu), Some(cpu)) = (run(true), run(false)) else {
                continue;
            };
            assert!(
                gpu.0 .0 && !cpu.0 .0,
                "K={k}: the GPU shape splits the gradient"
            );
            assert!(gpu.0 .1, "K={k}: the GPU shape reads the rows in place");
            assert_eq!(
                cpu.0 .1,
                k <= 32,
                "K={k}: the CPU adapters' shape gathers past 32 classes"
            );
            let what = if one_pass.is_some() {
                "one pass"
            } else {
                "split gradient"
            };
            assert_same_run(&format!("K={k} {what}"), &gpu.2, &cpu.2);
            // The losses of weights that differ by rounding (at most 1e-4 of their scale, above) differ by as little.
            for (name, a, b) in [
                ("train", gpu.1 .0, cpu.1 .0),
                ("held-out", gpu.1 .1, cpu.1 .1),
            ] {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "K={k} {what}: {name} loss {a} vs {b}"
                );
            }
        }
    });
}

#[test]
fn the_one_pass_kernels_lanes_can_be_chosen_and_train_the_same_up_to_rounding() {
    // `bench --lanes`: the GPU shape with 2 or 32 lanes a row instead of the adapter's widest adds the logits in
    // another order, so the run is the same up to the order of addition; a width no workgroup holds is refused with
    // the flag's name.
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 700,
        lr: 0.1,
        shuffle: true,
        ..TrainConfig::default()
    };
    on_every_gpu(|ctx| {
        let (train, _) = problem(2000, 12, 10);
        let run = |lanes: Option<u32>| {
            let opts = GpuOptions {
                one_pass: Some(true),
                gpu_shape: Some(true),
                lanes,
                ..GpuOptions::default()
            };
            if !GpuBackend::one_pass(ctx, shape(&train), &opts) {
                return None;
            }
            let mut g = GpuBackend::new(ctx, shape(&train), &opts).unwrap();
            let mut t = source(&train);
            fit(&mut g, &mut t, None, &cfg, &mut []).unwrap();
            Some(g.params().unwrap())
        };
        let (Some(widest), Some(two), Some(wide)) = (run(None), run(Some(2)), run(Some(32))) else {
            return;
        };
        assert_same_run("2 lanes against the widest", &two, &widest);
        // 32 lanes a row in tiles of 16 rows (through workgroup memory where subgroups do not hold them).
        assert_same_run("32 lanes against the widest", &wide, &widest);
        let too_wide = GpuOptions {
            one_pass: Some(true),
            gpu_shape: Some(true),
            lanes: Some(64),
            ..GpuOptions::default()
        };
        let err = GpuBackend::new(ctx, shape(&train), &too_wide).unwrap_err();
        assert!(err.to_string().contains("--lanes"), "{err}");
    });
}

/// What `bench` prints as dispatches and passes over the rows per step comes from the op plan the recorder reads;
/// here it is compared with the dispatches actually recorded, counted by the timestamps written between them.
#[test]
fn the_dispatches_a_step_is_said_to_take_are_the_dispatches_it_records() {
    on_every_gpu(|ctx| {
        let dense = |n, d, k| {
            let data = data::synthetic(n, d, k, 5).unwrap();
            let s = Shape { d, k };
            (s, Box::new(source(&data)) as Box<dyn RowSource>)
        };
        let gathered = GpuOptions {
            gather: true,
            ..GpuOptions::default()
        };
        // 600 rows × 40 features in chunks of at most 4 KiB: 25 rows a chunk, 24 chunks, more than the held
        // kernels bind, so they are gathered.
        let chunked = GpuOptions {
            max_chunk_bytes: Some(4096),
            ..GpuOptions::default()
        };
        let one_pass = GpuOptions {
            one_pass: Some(true),
            ..GpuOptions::default()
        };
        let (sparse, _) = sparse_problem(300, 30, 4);
        // What, how, which rows, dispatches and passes over the rows a step.
        type Case = (
            &'static str,
            GpuOptions,
            (Shape, Box<dyn RowSource>),
            usize,
            usize,
        );
        let cases: Vec<Case> = vec![
            // forward_held, grad_held, metrics; update.
            (
                "K ≤ 16 in place",
                GpuOptions::default(),
                dense(300, 20, 10),
                4,
                2,
            ),
            // gather, forward, grad, metrics; update (the example: 5, not 7).
            (
                "K ≤ 16 gathered",
                gathered.clone(),
                dense(300, 20, 10),
                5,
                3,
            ),
            // logits_held, softmax (writing the residual), grad_held, metrics; update: no gather.
            ("K > 16", GpuOptions::default(), dense(300, 20, 20), 5, 2),
            // gather, logits, softmax, grad, metrics; update.
            (
                "K > 16 gathered",
                gathered.clone(),
                dense(300, 20, 20),
                6,
                3,
            ),
            // K = 32 in place; past it gathered again on CPU adapters (each class tile reads the rows)...
            ("K = 32", GpuOptions::default(), dense(300, 20, 32), 5, 2),
            ("K = 40", GpuOptions::default(), dense(300, 20, 40), 6, 3),
            // ...and in the GPU shape read in place: logits_held, softmax, grad_held split, reduce, metrics; update
            // (the split's reduce is counted below).
            (
                "K = 40 GPU shape",
                GpuOptions {
                    gpu_shape: Some(true),
                    ..GpuOptions::default()
                },
                dense(300, 20, 40),
                5,
                2,
            ),
            // fused_held, reduce; update: one pass over the rows, at K ≤ 16 and up to 32.
            (
                "K ≤ 16 one pass",
                one_pass.clone(),
                dense(300, 20, 10),
                3,
                1,
            ),
            (
                "K = 32 one pass",
                one_pass.clone(),
                dense(300, 20, 32),
                3,
                1,
            ),
            // 24 gathers, forward, grad, metrics; update.
            ("24 chunks", chunked, dense(600, 40, 3), 28, 3),
            // sparse_logits, softmax (writing the residual), sparse_grad, metrics; sparse_update.
            (
                "sparse",
                GpuOptions {
                    sparse: true,
                    ..GpuOptions::default()
                },
                (
                    Shape { d: 30, k: 4 },
                    Box::new(sparse) as Box<dyn RowSource>,
                ),
                5,
                2,
            ),
        ];
        for (what, options, (shape, mut rows), dispatches, passes) in cases {
            // Held rows read in place by one pass where the adapter runs the one-pass kernel: fused_held and
            // reduce; update.
            if what.ends_with("one pass") && !GpuBackend::one_pass(ctx, shape, &options) {
                continue;
            }
            let mut b = GpuBackend::new(ctx, shape, &options).unwrap();
            let (dispatches, passes) = match what {
                "K ≤ 16 in place" | "K > 16" | "K = 32"
                    if GpuBackend::one_pass(ctx, shape, &options) =>
                {
                    (3, 1)
                }
                // On a GPU past 32 classes the rows are read in place too.
                "K = 40" if b.splits_gradient() => (5, 2),
                _ => (dispatches, passes),
            };
            // On a GPU the gradient is split over rows: grad (or grad_held), then reduce.
            let dispatches =
                dispatches + usize::from(b.splits_gradient() && passes >= 2 && what != "sparse");
            let set = b.hold(rows.as_mut()).unwrap();
            if !b.enable_profiling() {
                eprintln!(
                    "skipped: {} writes no timestamps inside passes",
                    ctx.describe()
                );
                return;
            }
            assert_eq!(b.dispatches_per_step(set), dispatches, "{what}");
            assert_eq!(b.row_passes_per_step(set), passes, "{what}");
            let order = set.order(1, 1, true);
            let steps = order.chunks(64).count();
            for slice in order.chunks(64) {
                b.accumulate(&Batch::held(set, slice).unwrap()).unwrap();
                b.update(&Update {
                    optimizer: Optimizer::Sgd,
                    lr: 0.1,
                    l2: 0.0,
                    l1: 0.0,
                })
                .unwrap();
            }
            let recorded: u64 = b.take_profile().unwrap().iter().map(|k| k.dispatches).sum();
            assert_eq!(recorded, (steps * dispatches) as u64, "{what}: recorded");
        }
    });
}

#[test]
fn the_sparse_cpu_trainer_agrees_with_the_f64_reference_for_every_optimizer_and_any_thread_count() {
    use softmax_wgpu::lbfgs::LbfgsOptions;
    // 4,800 rows of about 8 non-zeros among 40 features: a full batch has 38,400 non-zeros, enough for 16 gradient
    // lanes with dense partials; a batch of 32 has about 256, one lane straight into G with the touched features
    // listed.
    let (sparse, dense) = sparse_problem(4800, 40, 5);
    let shape = Shape { d: 40, k: 5 };
    let base = TrainConfig {
        epochs: 2,
        batch_size: 32,
        lr: 0.2,
        l2: 1e-3,
        val_split: 0.0,
        ..TrainConfig::default()
    };
    let configs = [
        ("sgd, lazy decay", base.clone()),
        (
            "sgd, full batch",
            TrainConfig {
                epochs: 6,
                batch_size: 4800,
                lr: 1.0,
                ..base.clone()
            },
        ),
        (
            "sgd, class weights",
            TrainConfig {
                class_weights: Some(vec![1.0, 2.5, 0.5, 1.0, 3.0]),
                ..base.clone()
            },
        ),
        (
            "momentum and l1",
            TrainConfig {
                l1: 1e-3,
                optimizer: Optimizer::Momentum {
                    momentum: 0.9,
                    nesterov: true,
                },
                lr: 0.05,
                ..base.clone()
            },
        ),
        (
            "adam",
            TrainConfig {
                optimizer: Optimizer::Adam {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.0,
                },
                lr: 0.01,
                ..base.clone()
            },
        ),
        (
            "l-bfgs",
            TrainConfig {
                optimizer: Optimizer::Lbfgs(LbfgsOptions {
                    max_iter: 30,
                    tol: 0.0,
                    ..LbfgsOptions::default()
                }),
                ..base.clone()
            },
        ),
    ];
    for (name, cfg) in configs {
        let mut reference = CpuBackend::<f64>::new(shape);
        let want_reports = fit(&mut reference, &mut dense.clone(), None, &cfg, &mut []).unwrap();
        let want = reference.params().unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut fast = SparseCpu::new(shape).unwrap();
                let reports = fit(&mut fast, &mut sparse.clone(), None, &cfg, &mut []).unwrap();
                (fast.params().unwrap(), reports)
            })
        };
        let (one, reports) = run(1);
        let (three, reports3) = run(3);
        assert_eq!(one, three, "{name}: 1 and 3 threads");
        let figures = |r: &[EpochReport]| -> Vec<(f64, f64, String)> {
            r.iter()
                .map(|e| (e.train_loss, e.train_accuracy, format!("{:?}", e.lbfgs)))
                .collect()
        };
        assert_eq!(
            figures(&reports),
            figures(&reports3),
            "{name}: 1 and 3 threads"
        );
        // f32 sums in another order than the f64 reference (and, for plain SGD, the decay kept apart in a scale
        // factor): ≈ 1e-7 relative a step, over at most 300 steps (or 30 L-BFGS iterations) of a contracting
        // problem, as for the dense trainers above.
        let d = rel_diff(&one.w, &want.w);
        assert!(d < 1e-4, "{name}: ‖W − W_f64‖/‖W‖ = {d:e}");
        let (got_loss, want_loss) = (
            reports.last().unwrap().train_loss,
            want_reports.last().unwrap().train_loss,
        );
        assert!(
            (got_loss - want_loss).abs() < 1e-5 * want_loss.abs().max(1.0),
            "{name}: loss {got_loss} vs {want_loss}"
        );
    }
}
