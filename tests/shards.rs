//! A data-parallel run of P processes, simulated by P threads over P shards of one data set stepping in lockstep
//! through a [`ThreadGroup`], equals one process over all the rows: with shards of unequal sizes and an empty one,
//! for SGD (shuffled or not), Adam, L-BFGS and early stopping, on every backend. A failing shard ends every process
//! with its error instead of leaving the others waiting.
mod common;

use common::*;
use ndarray::s;
use softmax_wgpu::config::EarlyStopping;
use softmax_wgpu::cpu::{CpuBackend, FastCpu};
use softmax_wgpu::data::{self, Dataset, HostRows, InMemory, Standardizer};
use softmax_wgpu::gpu::{GpuBackend, GpuOptions};
use softmax_wgpu::lbfgs::LbfgsOptions;
use softmax_wgpu::train::{
    choose, fit, fit_with, Choice, Local, Method, Optimizer, Reducer, Request, ThreadGroup, Why,
};
use softmax_wgpu::{Backend, EpochReport, Error, Params, RowSource, Shape, TrainConfig};

fn problem() -> (Dataset, Dataset) {
    let full = data::synthetic(300, 8, 3, 3).unwrap();
    let (mut train, held) = data::split_holdout(full, 0.2, 3).unwrap();
    let mut held = held.unwrap();
    let s = Standardizer::fit(train.x.view());
    s.apply(&mut train.x);
    s.apply(&mut held.x);
    (train, held)
}

const SHAPE: Shape = Shape { d: 8, k: 3 };

/// Contiguous shards of `d` between `cuts` (0 and the row count at the ends), in rank order.
fn shards(d: &Dataset, cuts: &[usize]) -> Vec<InMemory> {
    cuts.windows(2)
        .map(|c| {
            if c[0] == c[1] {
                let empty = HostRows::empty("no rows", SHAPE.d, SHAPE.k);
                return InMemory::new(std::sync::Arc::new(empty));
            }
            let x = d.x.slice(s![c[0]..c[1], ..]).to_owned();
            let y = d.y[c[0]..c[1]].to_vec();
            InMemory::from_arrays(format!("rows {}..{}", c[0], c[1]), x, y, SHAPE.k).unwrap()
        })
        .collect()
}

type Outcome = softmax_wgpu::Result<(Params, Vec<EpochReport>)>;

/// An outcome with the automatic choice the process made.
type Chosen = softmax_wgpu::Result<(Params, Vec<EpochReport>, Option<Choice>)>;

/// Makes a backend that can move to a thread (and borrows what lives `'c`, a GPU context).
type Make<'c> = dyn Fn() -> Box<dyn Backend + Send + 'c> + Sync + 'c;

/// Trains one backend per shard, each on its own thread with its rank's reducer; every rank's outcome.
fn run_processes(
    make: &Make<'_>,
    train: Vec<InMemory>,
    held: Vec<InMemory>,
    cfg: &TrainConfig,
) -> Vec<Outcome> {
    run_chosen(make, train, held, cfg, None)
        .into_iter()
        .map(|r| r.map(|(w, reports, _)| (w, reports)))
        .collect()
}

/// [`run_processes`], each process first resolving `request` (the automatic choice) into its settings.
fn run_chosen(
    make: &Make<'_>,
    train: Vec<InMemory>,
    held: Vec<InMemory>,
    cfg: &TrainConfig,
    request: Option<&Request>,
) -> Vec<Chosen> {
    let reducers = ThreadGroup::new(train.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = reducers
            .into_iter()
            .zip(train.into_iter().zip(held))
            .map(|(mut reducer, (mut t, mut h))| {
                let mut backend = make();
                scope.spawn(move || {
                    let mut cfg = cfg.clone();
                    let choice = match request {
                        Some(r) => Some(choose(r, &mut cfg, backend.as_ref(), &t, &mut reducer)?),
                        None => None,
                    };
                    let reports = fit_with(
                        backend.as_mut(),
                        &mut t,
                        Some(&mut h),
                        &cfg,
                        &mut reducer,
                        &mut [],
                    )?;
                    Ok((backend.params()?, reports, choice))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn rel_diff(a: &Params, b: &Params) -> f64 {
    let num: f64 =
        a.w.iter()
            .zip(&b.w)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum();
    let den: f64 = b.w.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den).sqrt()
}

/// The backends of one kind (every kind with [`Backends::All`]), as makers of backends that can move to a thread.
fn every_backend(on: Backends, mut body: impl for<'c> FnMut(&str, &Make<'c>)) {
    let kind = |k: Backends| on == Backends::All || on == k;
    if kind(Backends::CpuF32) {
        body("cpu f32", &|| Box::new(CpuBackend::<f32>::new(SHAPE)));
    }
    if kind(Backends::CpuF64) {
        body("cpu f64", &|| Box::new(CpuBackend::<f64>::new(SHAPE)));
    }
    if kind(Backends::FastCpu) {
        body("fast cpu", &|| Box::new(FastCpu::new(SHAPE).unwrap()));
    }
    if kind(Backends::Gpu) {
        for ctx in gpus() {
            let name = ctx.describe();
            body(&name, &|| {
                Box::new(GpuBackend::new(&ctx, SHAPE, &GpuOptions::default()).unwrap())
            });
        }
    }
}

/// Each case against one process over all the rows, for P = 3 (shards of 0, 100 and 140 training rows; 25, 0 and
/// 35 held-out rows) and P = 2 (77 and 163; 60 and 0).
fn equals_one_process(on: Backends, what: &str, cfg: &TrainConfig, tolerance: f64) {
    let (train, held) = problem();
    assert_eq!((train.len(), held.len()), (240, 60));
    every_backend(on, |name, make| {
        let mut one = make();
        let want = fit(
            one.as_mut(),
            &mut train.clone().into_source().unwrap(),
            Some(&mut held.clone().into_source().unwrap()),
            cfg,
            &mut [],
        )
        .unwrap();
        let want_w = one.params().unwrap();
        for (train_cuts, held_cuts) in [
            (&[0, 0, 100, 240][..], &[0, 25, 25, 60][..]),
            (&[0, 77, 240][..], &[0, 60, 60][..]),
        ] {
            let p = train_cuts.len() - 1;
            let got = run_processes(
                make,
                shards(&train, train_cuts),
                shards(&held, held_cuts),
                cfg,
            );
            let got: Vec<(Params, Vec<EpochReport>)> = got
                .into_iter()
                .map(|r| r.unwrap_or_else(|e| panic!("{what} {name} P={p}: {e}")))
                .collect();
            // Every process ends with the same weights, to the bit: the sums are added in rank order everywhere.
            for (rank, (w, _)) in got.iter().enumerate() {
                assert_eq!(w, &got[0].0, "{what} {name} P={p}: rank {rank}");
            }
            // The same epochs (L-BFGS: iterations), the same best epoch.
            let epochs = |r: &[EpochReport]| -> Vec<(usize, bool)> {
                r.iter().map(|e| (e.epoch, e.best)).collect()
            };
            assert_eq!(epochs(&got[0].1), epochs(&want), "{what} {name} P={p}");
            let d = rel_diff(&got[0].0, &want_w);
            assert!(d <= tolerance, "{what} {name} P={p}: ‖ΔW‖/‖W‖ = {d:e}");
        }
    });
}

// Tolerances: a process's gradient sums are its rows' sums (in f32 on the f32 paths), added across processes in
// f64 and rounded back to f32, where one process adds all rows in one f32 sum: each step's gradient differs by a
// few units of f32 rounding (≈ 1e-7 relative). Over the ~45 steps below that stays near 1e-6; 1e-5 leaves room
// and is far below the effect of a wrong batch, a missed step or a shard counted twice (≥ 1e-2). Adam divides by
// √v, which magnifies rounding where a second moment is small: 1e-4, as the Adam tests of tests/training.rs.

fn sgd_on_unequal_shards_equals_one_process(on: Backends) {
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        lr: 0.1,
        val_split: 0.0,
        ..TrainConfig::default()
    };
    equals_one_process(on, "sgd", &cfg, 1e-5);
    let ordered = TrainConfig {
        shuffle: false,
        ..cfg
    };
    equals_one_process(on, "sgd --no-shuffle", &ordered, 1e-5);
}
per_backend!(sgd_on_unequal_shards_equals_one_process);

fn adam_on_unequal_shards_equals_one_process(on: Backends) {
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        lr: 0.01,
        l2: 1e-3,
        optimizer: Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        ..TrainConfig::default()
    };
    equals_one_process(on, "adam", &cfg, 1e-4);
}
per_backend!(adam_on_unequal_shards_equals_one_process);

fn lbfgs_on_unequal_shards_takes_the_same_iterations_to_the_same_optimum(on: Backends) {
    // Every evaluation is one reduction: J and ∇J are the same bits on every process, so the iterates are too; they
    // differ from one process's by the rounding of the sums, which L-BFGS does not amplify near a strongly convex
    // optimum (λ = 1/N).
    let cfg = TrainConfig {
        l2: 1.0 / 240.0,
        optimizer: Optimizer::Lbfgs(LbfgsOptions::default()),
        ..TrainConfig::default()
    };
    equals_one_process(on, "lbfgs", &cfg, 1e-5);
}
per_backend!(lbfgs_on_unequal_shards_takes_the_same_iterations_to_the_same_optimum);

fn early_stopping_on_unequal_shards_stops_where_one_process_stops(on: Backends) {
    // The held-out losses are reduced over the held-out shards: every process takes the same decision, and keeps
    // the same best epoch's weights. The run stops after a few epochs of a larger rate (see the resume test).
    let cfg = TrainConfig {
        epochs: 60,
        batch_size: 16,
        lr: 0.5,
        early_stopping: Some(EarlyStopping {
            patience: 3,
            min_delta: 1e-3,
        }),
        ..TrainConfig::default()
    };
    equals_one_process(on, "early stopping", &cfg, 1e-5);
}
per_backend!(early_stopping_on_unequal_shards_stops_where_one_process_stops);

fn a_failing_shard_stops_every_process_with_its_error(on: Backends) {
    let (train, held) = problem();
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 16,
        ..TrainConfig::default()
    };
    every_backend(on, |name, make| {
        // Rank 1's shard has a feature too few: it fails as it starts, while the others wait for its row count.
        let mut t = shards(&train, &[0, 100, 170, 240]);
        let bad = train.x.slice(s![100..170, ..7]).to_owned();
        t[1] = InMemory::from_arrays("bad shard", bad, train.y[100..170].to_vec(), 3).unwrap();
        let outcomes = run_processes(make, t, shards(&held, &[0, 20, 40, 60]), &cfg);
        for (rank, o) in outcomes.iter().enumerate() {
            let e = o
                .as_ref()
                .err()
                .unwrap_or_else(|| panic!("{name}: rank {rank} ended well"));
            let message = e.to_string();
            assert!(
                message.contains("bad shard"),
                "{name} rank {rank}: {message}"
            );
            if rank == 1 {
                assert!(!matches!(e, Error::Peer { .. }), "{name}: its own error");
            } else {
                assert!(
                    matches!(
                        e,
                        Error::Peer {
                            rank: 1,
                            size: 3,
                            ..
                        }
                    ),
                    "{name} rank {rank}: {message}"
                );
            }
            // A shape mismatch is the user's input: exit code 2 on every process.
            assert_eq!(e.exit_code(), 2, "{name} rank {rank}");
        }
    });
}
per_backend!(a_failing_shard_stops_every_process_with_its_error);

#[test]
fn one_process_through_a_group_of_one_is_the_plain_run() {
    // A group of one is the identity: bitwise the plain run.
    let (train, held) = problem();
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 32,
        lr: 0.1,
        ..TrainConfig::default()
    };
    let mut plain = CpuBackend::<f32>::new(SHAPE);
    fit(
        &mut plain,
        &mut train.clone().into_source().unwrap(),
        Some(&mut held.clone().into_source().unwrap()),
        &cfg,
        &mut [],
    )
    .unwrap();
    let mut group = ThreadGroup::new(1);
    assert!(group[0].is_identity());
    let mut alone = CpuBackend::<f32>::new(SHAPE);
    fit_with(
        &mut alone,
        &mut train.into_source().unwrap(),
        Some(&mut held.into_source().unwrap()),
        &cfg,
        &mut group[0],
        &mut [],
    )
    .unwrap();
    assert_eq!(alone.params().unwrap(), plain.params().unwrap());
}

#[test]
fn the_automatic_choice_is_made_on_all_rows_alike_on_every_process() {
    let (train, held) = problem();
    let request = Request {
        automatic: true,
        lbfgs: LbfgsOptions::default(),
        max_epochs: None,
        tol: None,
        l2_given: false,
    };
    // Held rows: L-BFGS with λ = 1/N over all 240 rows (not a shard's), and the run equals one process's.
    let mut cfg = TrainConfig::default();
    let mut one = CpuBackend::<f32>::new(SHAPE);
    let mut all = train.clone().into_source().unwrap();
    let want = choose(&request, &mut cfg, &one, &all, &mut Local).unwrap();
    assert_eq!(want.method, Method::Lbfgs(Why::FitsInMemory));
    assert_eq!(want.l2, Some((1.0f64 / 240.0) as f32));
    let reports = fit(&mut one, &mut all, None, &cfg, &mut []).unwrap();
    let make: &Make<'_> = &|| Box::new(CpuBackend::<f32>::new(SHAPE));
    let got = run_chosen(
        make,
        shards(&train, &[0, 0, 100, 240]),
        shards(&held, &[0, 25, 25, 60]),
        &TrainConfig::default(),
        Some(&request),
    );
    for (rank, r) in got.iter().enumerate() {
        let (w, r_reports, choice) = r.as_ref().unwrap();
        assert_eq!(choice.as_ref(), Some(&want), "rank {rank}");
        assert_eq!(
            r_reports.len(),
            reports.len(),
            "rank {rank}: L-BFGS iterations"
        );
        let d = rel_diff(w, &one.params().unwrap());
        assert!(d <= 1e-5, "rank {rank}: {d:e} (the L-BFGS tolerance above)");
    }
    // Rows that stream on some process: minibatch SGD with the convergence rule on every process, for all rows.
    let tight = TrainConfig {
        memory_budget: Some(4096),
        ..TrainConfig::default()
    };
    let reducers = ThreadGroup::new(3);
    let choices: Vec<(Choice, TrainConfig)> = std::thread::scope(|scope| {
        let handles: Vec<_> = reducers
            .into_iter()
            .zip(shards(&train, &[0, 0, 100, 240]))
            .map(|(mut reducer, source)| {
                let tight = &tight;
                scope.spawn(move || {
                    let mut cfg = tight.clone();
                    let backend = CpuBackend::<f32>::new(SHAPE);
                    // An in-memory source is always held: offer its rows as a file's reader would.
                    let c = choose(
                        &request,
                        &mut cfg,
                        &backend,
                        &Unshared(source),
                        &mut reducer,
                    )
                    .unwrap();
                    (c, cfg)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, (c, cfg)) in choices.iter().enumerate() {
        assert_eq!(c.method, Method::StreamedSgd, "rank {rank}");
        assert_eq!(
            (c.rows, c.l2),
            (240, Some((1.0f64 / 240.0) as f32)),
            "rank {rank}"
        );
        assert!(
            cfg.convergence.is_some() && cfg.optimizer == Optimizer::Sgd,
            "rank {rank}"
        );
    }
}

/// Rows in memory offered as a reader offers a file's: not shared, so a memory budget decides whether they are held.
struct Unshared(InMemory);

impl RowSource for Unshared {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn features(&self) -> usize {
        self.0.features()
    }
    fn classes(&self) -> usize {
        self.0.classes()
    }
    fn rows(&self) -> Option<u64> {
        self.0.rows()
    }
    fn rewind(&mut self) -> softmax_wgpu::Result<()> {
        self.0.rewind()
    }
    fn next_chunk(
        &mut self,
        max_rows: usize,
    ) -> softmax_wgpu::Result<Option<softmax_wgpu::data::Chunk<'_>>> {
        self.0.next_chunk(max_rows)
    }
}

#[test]
fn the_standardisation_statistics_of_shards_are_the_whole_sets() {
    // Raw (unstandardised) rows with means and spreads far from 0 and 1, in shards of 0, 100 and 200 rows.
    let raw = data::synthetic(300, 8, 3, 9).unwrap();
    let x = raw.x.mapv(|v| 1000.0 + 25.0 * v);
    let all = InMemory::from_arrays("all", x.clone(), raw.y.clone(), 3).unwrap();
    let want = Standardizer::fit(x.view());
    let parts: Vec<InMemory> = [(0, 0), (0, 100), (100, 300)]
        .iter()
        .map(|&(a, b)| {
            if a == b {
                return InMemory::new(std::sync::Arc::new(HostRows::empty("none", 8, 3)));
            }
            let xs = x.slice(s![a..b, ..]).to_owned();
            InMemory::from_arrays("part", xs, raw.y[a..b].to_vec(), 3).unwrap()
        })
        .collect();
    let reducers = ThreadGroup::new(3);
    let got: Vec<Standardizer> = std::thread::scope(|scope| {
        let handles: Vec<_> = reducers
            .into_iter()
            .zip(parts)
            .map(|(mut r, mut part)| {
                scope.spawn(move || softmax_wgpu::train::standardizer(&mut part, &mut r).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, g) in got.iter().enumerate() {
        assert_eq!(g, &got[0], "rank {rank}: the same bits everywhere");
        // f64 moments merged in another order, rounded to f32: within an f32 unit of the one-pass figures.
        for (a, b) in g
            .mean
            .iter()
            .zip(&want.mean)
            .chain(g.std.iter().zip(&want.std))
        {
            assert!(
                (a - b).abs() <= b.abs() * 2.0 * f32::EPSILON,
                "rank {rank}: {a} vs {b}"
            );
        }
    }
    // One part is the one-process statistics, bit for bit.
    let mut one = all;
    let single =
        Standardizer::merge([Standardizer::moments(&mut one).unwrap().as_slice()], 8).unwrap();
    assert_eq!(single, Standardizer::fit_source(&mut one).unwrap());
    assert_eq!(single, want);
}

/// Sparse rows (a fifth of the values kept) in contiguous shards, empty ones included.
fn sparse_shards(d: &Dataset, cuts: &[usize]) -> Vec<softmax_wgpu::data::SparseInMemory> {
    use softmax_wgpu::data::{SparseChunk, SparseInMemory, SparseRows};
    let mut x = d.x.clone();
    x.indexed_iter_mut().for_each(|((i, j), v)| {
        if (i * 7 + j * 13) % 5 != 0 {
            *v = 0.0;
        }
    });
    cuts.windows(2)
        .map(|c| {
            let part = x.slice(s![c[0]..c[1], ..]);
            let chunk = SparseChunk::from_dense(part, &d.y[c[0]..c[1]], c[0] as u64);
            let rows = SparseRows::from_chunk("sparse shard", &chunk, SHAPE.k).unwrap();
            SparseInMemory::new(std::sync::Arc::new(rows))
        })
        .collect()
}

#[test]
fn sparse_sgd_on_unequal_shards_equals_one_process() {
    // The sparse paths: the reference on CSR rows, and the GPU's sparse kernels, whose update covers the columns a
    // step touched; after a combine every column may hold a sum, so the update must cover all (set_gradient marks
    // them). Tolerance as for dense SGD.
    let (train, _) = problem();
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        lr: 0.1,
        val_split: 0.0,
        ..TrainConfig::default()
    };
    let sparse = GpuOptions {
        sparse: true,
        ..GpuOptions::default()
    };
    let contexts = gpus();
    let mut makers: Vec<(String, Box<Make<'_>>)> = vec![(
        "cpu f32".into(),
        Box::new(|| Box::new(CpuBackend::<f32>::new(SHAPE)) as Box<dyn Backend + Send>),
    )];
    for ctx in &contexts {
        let sparse = sparse.clone();
        makers.push((
            ctx.describe(),
            Box::new(move || {
                Box::new(GpuBackend::new(ctx, SHAPE, &sparse).unwrap()) as Box<dyn Backend + Send>
            }),
        ));
    }
    for (name, make) in &makers {
        let mut one = make();
        let mut all = sparse_shards(&train, &[0, 240]).remove(0);
        fit(one.as_mut(), &mut all, None, &cfg, &mut []).unwrap();
        let want = one.params().unwrap();
        let shards = sparse_shards(&train, &[0, 0, 100, 240]);
        let reducers = ThreadGroup::new(shards.len());
        let got: Vec<Params> = std::thread::scope(|scope| {
            let handles: Vec<_> = reducers
                .into_iter()
                .zip(shards)
                .map(|(mut reducer, mut shard)| {
                    let mut backend = make();
                    let cfg = &cfg;
                    scope.spawn(move || {
                        fit_with(
                            backend.as_mut(),
                            &mut shard,
                            None,
                            cfg,
                            &mut reducer,
                            &mut [],
                        )
                        .unwrap();
                        backend.params().unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (rank, w) in got.iter().enumerate() {
            assert_eq!(w, &got[0], "{name}: rank {rank}");
        }
        let d = rel_diff(&got[0], &want);
        assert!(d <= 1e-5, "{name}: ‖ΔW‖/‖W‖ = {d:e}");
    }
}
