//! The minibatch loop: [`fit`] runs epochs of steps over held or streamed rows, evaluates each epoch, and applies
//! the stopping rules.

use std::time::Instant;

use crate::config::TrainConfig;
use crate::data::RowSource;
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::params::Params;
use crate::stopping::StopState;

use super::{
    begin, epoch_order, evaluate, evaluate_streamed, full_batch, reduce_held_out, reduce_sums,
    stream_epoch, weighted, Backend, Batch, Begun, EpochReport, Layout, Local, Observer, Reducer,
    Residency, Stepper, StreamReport, Sums,
};

/// Trains for `cfg.epochs` epochs: each epoch runs one step per `cfg.batch_size` rows of a seeded shuffle, reads the
/// epoch's loss sums, and evaluates the held-out rows. The training rows (and the held-out ones) are held by the
/// backend or streamed, as [`super::residency()`] decides: streamed rows are read a chunk at a time by a reader thread while
/// the backend trains on the previous chunk, and shuffled at chunk granularity (the order of chunks, where the
/// source can seek) and within each chunk. With shuffling off, streamed training takes the same steps over the same
/// rows as resident training. `observers` see every step and epoch, in order. Stops with [`Error::Diverged`] when the
/// loss overflows.
pub fn fit(
    backend: &mut dyn Backend,
    train: &mut dyn RowSource,
    held_out: Option<&mut dyn RowSource>,
    cfg: &TrainConfig,
    observers: &mut [&mut dyn Observer],
) -> Result<Vec<EpochReport>> {
    fit_with(backend, train, held_out, cfg, &mut Local, observers)
}

/// [`fit`] as one process of a data-parallel run whose collectives `reducer` carries. Each process passes its own
/// shard of the training rows (and of the held-out rows): contiguous row ranges in rank order, of any sizes, empty
/// ones included. The epoch plan is the whole data set's: every process draws the same global order of all rows
/// (seeded as one process would), each step's global batch is cut from it, and each process accumulates the rows of
/// it that it holds — none, some or all — before the sums are combined. Loss, accuracy and held-out sums are
/// reduced too, so every stopping decision is global, and the weights stay identical on every process: the run
/// equals one process over all the rows but for the order of additions. A process that fails tells the others
/// ([`Reducer::fail`]), which end with [`Error::Peer`]. Training shards are held (a process whose shard would be
/// streamed is refused); L-BFGS shards may stream. Side effects are the observers': pass them (progress,
/// checkpoints) on one process only, since every process sees the same reports. With [`Local`] this is [`fit`].
pub fn fit_with(
    backend: &mut dyn Backend,
    train: &mut dyn RowSource,
    held_out: Option<&mut dyn RowSource>,
    cfg: &TrainConfig,
    reducer: &mut dyn Reducer,
    observers: &mut [&mut dyn Observer],
) -> Result<Vec<EpochReport>> {
    let result = fit_process(backend, train, held_out, cfg, reducer, observers);
    if let Err(e) = &result {
        if !reducer.is_identity() && !matches!(e, Error::Peer { .. }) {
            reducer.fail(e);
        }
    }
    result
}

/// [`fit_with`] on this process, an error returned as it happened.
fn fit_process(
    backend: &mut dyn Backend,
    train: &mut dyn RowSource,
    mut held_out: Option<&mut dyn RowSource>,
    cfg: &TrainConfig,
    reducer: &mut dyn Reducer,
    observers: &mut [&mut dyn Observer],
) -> Result<Vec<EpochReport>> {
    cfg.check()?;
    if let Optimizer::Lbfgs(opts) = cfg.optimizer {
        // The held-out source's trait-object lifetime shortened to the others' (invariant behind `&mut`).
        let held_out = held_out.map(|h| h as &mut dyn RowSource);
        return full_batch::fit_lbfgs(backend, train, held_out, cfg, &opts, reducer, observers);
    }
    if cfg.early_stopping.is_some() && held_out.is_none() {
        return Err(Error::param(
            "--early-stopping",
            "a held-out set (--val-split above 0, or --test)",
            "none",
        ));
    }
    let device = backend.device();
    let begun = begin(backend, train, held_out.as_deref_mut(), cfg, observers)?;
    let wants_rows = observers.iter().any(|o| o.wants_rows());
    let local_rows = begun.train_set.map(|s| s.len() as u64).or(train.rows());
    let layout = shard_layout(reducer, &begun, local_rows)?;
    let rows_known = layout.map_or(local_rows, |l| Some(l.total));
    let mut stepper = Stepper::new(cfg, rows_known, reducer);
    let Start {
        first_epoch,
        mut skip,
        mut stop,
        mut best,
    } = start(cfg, rows_known, &mut stepper, backend)?;
    if let (Some(r), true) = (&cfg.resume, skip > 0) {
        // The resumed epoch's loss sums start where the checkpoint's left them.
        backend.set_sums(r.sums)?;
    }
    let mut reports = Vec::new();
    for epoch in first_epoch..=cfg.epochs {
        let start = Instant::now();
        let reduced_before = stepper.reducer.seconds();
        stepper.start_epoch(epoch, std::mem::take(&mut skip));
        let stream = match layout {
            Some(layout) => {
                run_shard_epoch(backend, cfg, &begun, layout, &mut stepper, observers)?;
                None
            }
            None => run_epoch(
                backend,
                &mut *train,
                cfg,
                &begun,
                &mut stepper,
                observers,
                wants_rows,
            )?,
        };
        let held = held_out.as_deref_mut();
        let mut report = epoch_report(backend, held, cfg, &begun, &mut stepper, (start, stream))?;
        if !stepper.reducer.is_identity() {
            report.reduce_seconds = Some(stepper.reducer.seconds() - reduced_before);
        }
        report.device.clone_from(&device);
        let rules = (cfg.early_stopping, cfg.convergence);
        let verdict = stop.observe(rules, epoch, report.train_loss, report.val_loss);
        if verdict.improved {
            best = Some(backend.params()?);
        }
        report.converged = verdict.converged;
        report.stopping = stop;
        for o in observers.iter_mut() {
            o.on_epoch(&mut report, backend)?;
        }
        reports.push(report);
        if verdict.converged || verdict.stop_early {
            break;
        }
    }
    for o in observers.iter_mut() {
        o.on_finish(backend)?;
    }
    keep_best(backend, &mut reports, &stop, best)?;
    Ok(reports)
}

/// The report of the epoch `stepper` has just run, started at `start`: the training loss and accuracy of its
/// forward passes (plus the penalty at its end), the held-out figures, all reduced over the processes; the training
/// loss checked for divergence. Its stopping fields are left to the caller.
fn epoch_report<'h>(
    backend: &mut dyn Backend,
    held_out: Option<&mut (dyn RowSource + 'h)>,
    cfg: &TrainConfig,
    begun: &Begun,
    stepper: &mut Stepper<'_>,
    (start, stream): (Instant, Option<StreamReport>),
) -> Result<EpochReport> {
    let sums = reduce_sums(stepper.reducer, backend.take_sums()?)?;
    let train_seconds = start.elapsed().as_secs_f64();
    let held = evaluate_held_out(backend, held_out, begun, stepper.batch)?;
    let held = reduce_held_out(stepper.reducer, held)?;
    let report = EpochReport {
        epoch: stepper.epoch,
        train_loss: sums.mean_loss() + penalty(backend, cfg)?,
        train_accuracy: sums.accuracy(),
        val_loss: held.map(|s| s.mean_loss()),
        val_accuracy: held.map(|s| s.accuracy()),
        samples_per_sec: sums.rows as f64 / train_seconds.max(1e-9),
        seconds: start.elapsed().as_secs_f64(),
        drift: None,
        device: String::new(),
        stream,
        reduce_seconds: None,
        lr: f64::from(stepper.update.lr),
        best: false,
        converged: false,
        lbfgs: None,
        stopping: StopState::default(),
    };
    if !report.train_loss.is_finite() {
        return Err(Error::Diverged {
            step: stepper.step,
            what: format!(
                "training loss {} in epoch {}",
                report.train_loss, stepper.epoch
            ),
        });
    }
    Ok(report)
}

/// Where a run starts: its first epoch, the steps of that epoch already taken, and the stopping rules' state with
/// early stopping's best weights — a fresh run's, or a resumed one's from its checkpoint.
struct Start {
    first_epoch: usize,
    skip: usize,
    stop: StopState,
    best: Option<Params>,
}

/// The starting point of a run under `cfg` (see [`Start`]); a resumed run's stepper continues its step count.
fn start(
    cfg: &TrainConfig,
    rows_known: Option<u64>,
    stepper: &mut Stepper<'_>,
    backend: &mut dyn Backend,
) -> Result<Start> {
    let shape = backend.shape();
    let Some(r) = &cfg.resume else {
        return Ok(Start {
            first_epoch: 1,
            skip: 0,
            stop: StopState::default(),
            best: None,
        });
    };
    if r.epoch > cfg.epochs {
        // Its weights are past the requested end: saving them as a run of fewer epochs would mislabel them.
        return Err(Error::param(
            "--epochs",
            format!(
                "at least the checkpoint's epoch, {} (it resumes a run, it cannot undo one)",
                r.epoch
            ),
            cfg.epochs,
        ));
    }
    let wanted = cfg.optimizer.slots();
    let state = backend.optimizer_state()?;
    if r.steps > 0 && state.tensors.len() != wanted.len() {
        // A momentum or Adam run's slots are part of where it was: starting them from zero is another run.
        return Err(Error::param(
            "--resume",
            format!(
                "a checkpoint holding the optimizer's state ({})",
                wanted.join(", ")
            ),
            format!("{} state tensors", state.tensors.len()),
        ));
    }
    // A streamed epoch's steps are consecutive batches over its seeded sequence of chunks, as a held epoch's are
    // over its seeded permutation: either way the steps taken are the first `batches_done` batches.
    let Some(rows) = rows_known else {
        return Err(Error::param(
            "--resume",
            "a run whose training rows are counted before they are read",
            "a source of unknown length",
        ));
    };
    let per_epoch = usize::try_from(rows)
        .unwrap_or(usize::MAX)
        .div_ceil(stepper.batch);
    let (first_epoch, skip) = if r.batches_done >= per_epoch {
        (r.epoch + 1, 0)
    } else {
        (r.epoch, r.batches_done)
    };
    stepper.step = r.steps;
    let best = match &r.best {
        Some((w, b)) => {
            let w = ndarray::Array2::from_shape_vec((shape.d, shape.k), w.clone())
                .map_err(|e| Error::shape("early stopping's best weights", "W [d, k]", e))?;
            let params = Params {
                w,
                b: ndarray::Array1::from(b.clone()),
            };
            params.check(shape)?;
            Some(params)
        }
        None => None,
    };
    // A checkpoint written as the rules ended the run resumes to its end: no further epoch.
    let done = r.stopping.stopped((cfg.early_stopping, cfg.convergence));
    Ok(Start {
        first_epoch: if done { cfg.epochs + 1 } else { first_epoch },
        skip,
        stop: r.stopping,
        best,
    })
}

/// The steps of one epoch over the training rows, held or streamed; a streamed epoch reports its reading.
fn run_epoch(
    backend: &mut dyn Backend,
    train: &mut dyn RowSource,
    cfg: &TrainConfig,
    begun: &Begun,
    stepper: &mut Stepper<'_>,
    observers: &mut [&mut dyn Observer],
    wants_rows: bool,
) -> Result<Option<StreamReport>> {
    let skip = stepper.in_epoch;
    let weights = begun.sample_weights.as_deref();
    let stream = match (begun.train_set, begun.train_residency) {
        (Some(set), _) => {
            let order = set.order(cfg.seed, stepper.epoch, cfg.shuffle);
            let mut bw = Vec::new();
            for slice in order.chunks(stepper.batch).skip(skip) {
                let b = weighted(Batch::held(set, slice)?, weights, 0, slice, &mut bw)?;
                stepper.part(backend, observers, &b, &b)?;
            }
            None
        }
        (None, Residency::Streamed { chunk_rows }) => {
            let skip_rows = (skip as u64).saturating_mul(stepper.batch as u64);
            Some(stream_epoch(
                backend,
                train,
                cfg,
                (chunk_rows, skip_rows, weights),
                stepper,
                observers,
                wants_rows,
            )?)
        }
        (None, Residency::Held) => unreachable!("a held source has a set"),
    };
    stepper.finish(backend, observers)?;
    Ok(stream)
}

/// Where this process's training rows sit among all processes' (None for one process). A shard must be held: a
/// streamed one is refused, here and so on every process.
fn shard_layout(
    reducer: &mut dyn Reducer,
    begun: &Begun,
    local_rows: Option<u64>,
) -> Result<Option<Layout>> {
    if reducer.is_identity() {
        return Ok(None);
    }
    if begun.train_set.is_none() {
        return Err(Error::param(
            "--memory-budget",
            "room to hold this process's shard of the training rows (a run of several processes does not stream \
             minibatch training yet)",
            "a shard that would be streamed",
        ));
    }
    Ok(Some(Layout::of(reducer, local_rows.unwrap_or(0))?))
}

/// The steps of one epoch of a process holding the shard `layout` of the training rows: the global order of all
/// rows cut into global batches, each accumulated as the rows of it this process holds (none, on some steps) and
/// combined with the other processes' at every step.
fn run_shard_epoch(
    backend: &mut dyn Backend,
    cfg: &TrainConfig,
    begun: &Begun,
    layout: Layout,
    stepper: &mut Stepper<'_>,
    observers: &mut [&mut dyn Observer],
) -> Result<()> {
    let set = begun.train_set.expect("a shard is held");
    let weights = begun.sample_weights.as_deref();
    let order = epoch_order(layout.total as usize, cfg.seed, stepper.epoch, cfg.shuffle);
    let (mut local, mut bw) = (Vec::new(), Vec::new());
    for slice in order.chunks(stepper.batch).skip(stepper.in_epoch) {
        layout.local(slice, &mut local);
        let part = if local.is_empty() {
            None
        } else {
            Some(weighted(
                Batch::held(set, &local)?,
                weights,
                0,
                &local,
                &mut bw,
            )?)
        };
        stepper.shard_part(backend, observers, part.as_ref(), slice.len())?;
    }
    stepper.finish(backend, observers)
}

/// The penalty at the backend's weights, λ/2·‖W‖² + λ₁·‖W‖₁, added to the epoch's mean loss (0 without one).
fn penalty(backend: &mut dyn Backend, cfg: &TrainConfig) -> Result<f64> {
    if cfg.l2 <= 0.0 && cfg.l1 <= 0.0 {
        return Ok(0.0);
    }
    let params = backend.params()?;
    Ok(0.5 * f64::from(cfg.l2) * params.w_norm_sq()
        + f64::from(cfg.l1) * params.w.iter().map(|&v| f64::from(v).abs()).sum::<f64>())
}

/// Loss and accuracy on the held-out rows at the backend's weights, when there are held-out rows.
fn evaluate_held_out<'h>(
    backend: &mut dyn Backend,
    held_out: Option<&mut (dyn RowSource + 'h)>,
    begun: &Begun,
    batch: usize,
) -> Result<Option<Sums>> {
    Ok(match (begun.held_set, begun.held_residency, held_out) {
        (Some(h), _, _) => Some(evaluate(backend, h, batch)?),
        (None, Some(Residency::Streamed { chunk_rows }), Some(source)) => {
            Some(evaluate_streamed(backend, source, chunk_rows, batch)?)
        }
        _ => None,
    })
}

/// After the last epoch: the backend ends with early stopping's best weights (observers saw the run as it ended),
/// and that epoch's report says so.
fn keep_best(
    backend: &mut dyn Backend,
    reports: &mut [EpochReport],
    stop: &StopState,
    best: Option<Params>,
) -> Result<()> {
    let (Some(epoch), Some(params)) = (stop.best_epoch(), best) else {
        return Ok(());
    };
    if reports.last().map(|r| r.epoch) != Some(epoch) {
        backend.set_params(&params)?;
    }
    if let Some(r) = reports.iter_mut().find(|r| r.epoch == epoch) {
        r.best = true;
    }
    Ok(())
}
