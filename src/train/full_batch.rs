//! Full-batch training: the objective over every training row, evaluated by the backend in a fixed order, and
//! L-BFGS over it ([`crate::lbfgs`] does the host-side algebra; each evaluation is one pass over the rows on the
//! device).

use std::time::Instant;

use super::{
    evaluate, evaluate_streamed, Backend, Batch, EpochReport, Gradient, Held, Observer, Params,
    Reducer, Residency, Shape, Sums,
};
use crate::config::TrainConfig;
use crate::data::RowSource;
use crate::error::Result;
use crate::lbfgs::{Iteration, LbfgsOptions, Problem, L1};

/// The training rows as a full pass reads them: held by the backend, or read from their source a chunk at a time.
pub(super) enum Rows<'a> {
    Held(Held),
    Streamed {
        source: &'a mut dyn RowSource,
        chunk_rows: usize,
    },
}

/// Accumulates the gradient and loss sums of every row at the backend's current weights, in the rows' order, each
/// row weighted by its sample weight when there are some.
fn accumulate_all(
    backend: &mut dyn Backend,
    rows: &mut Rows<'_>,
    weights: Option<&[f32]>,
) -> Result<()> {
    let piece = backend.max_batch().max(1);
    let mut bw = Vec::new();
    match rows {
        Rows::Held(set) => {
            let order = set.order(0, 0, false);
            for slice in order.chunks(piece) {
                let b = super::weighted(Batch::held(*set, slice)?, weights, 0, slice, &mut bw)?;
                backend.accumulate(&b)?;
            }
        }
        Rows::Streamed { source, chunk_rows } => {
            super::for_each_held_chunk(
                backend,
                &mut **source,
                *chunk_rows,
                |backend, set, first| {
                    let order = set.order(0, 0, false);
                    for slice in order.chunks(piece) {
                        let b = super::weighted(
                            Batch::held(set, slice)?,
                            weights,
                            first,
                            slice,
                            &mut bw,
                        )?;
                        backend.accumulate(&b)?;
                    }
                    Ok(())
                },
            )?;
        }
    }
    Ok(())
}

/// J = mean cross-entropy + λ/2·‖W‖², ∇J, and the loss / accuracy sums, at `params` over every row.
pub(super) fn objective_at(
    backend: &mut dyn Backend,
    rows: &mut Rows<'_>,
    params: &Params,
    (l2, weights): (f32, Option<&[f32]>),
    reducer: &mut dyn Reducer,
) -> Result<(f64, Gradient, Sums)> {
    backend.set_params(params)?;
    // Discard whatever an earlier caller left accumulated.
    backend.take_gradient()?;
    backend.take_sums()?;
    accumulate_all(backend, rows, weights)?;
    backend.combine(reducer)?;
    let mut sums = backend.take_sums()?;
    if !reducer.is_identity() {
        let mut v = [sums.loss, sums.correct, sums.rows as f64];
        reducer.allreduce(&mut v)?;
        sums = Sums {
            loss: v[0],
            correct: v[1],
            rows: v[2] as usize,
        };
    }
    let sum = backend.take_gradient()?;
    let n = sum.rows.max(1) as f64;
    let lambda = f64::from(l2);
    let w = params.w.mapv(f64::from);
    let value = sums.loss / n + 0.5 * lambda * w.iter().map(|v| v * v).sum::<f64>();
    Ok((
        value,
        Gradient {
            w: sum.w / n + w * lambda,
            b: sum.b / n,
            rows: sum.rows,
        },
        sums,
    ))
}

/// Weights and biases flat, W (row-major [d, k]) then b, in f64: the vector L-BFGS works on.
fn flat(p: &Params) -> Vec<f64> {
    p.w.iter()
        .chain(p.b.iter())
        .map(|&v| f64::from(v))
        .collect()
}

/// The weights of a flat vector, rounded to f32 (the point a backend really evaluates).
fn params_of(shape: Shape, x: &[f64]) -> Params {
    let n = shape.d * shape.k;
    let mut p = Params::zeros(shape);
    p.w.iter_mut()
        .zip(&x[..n])
        .for_each(|(w, &v)| *w = v as f32);
    p.b.iter_mut()
        .zip(&x[n..])
        .for_each(|(b, &v)| *b = v as f32);
    p
}

/// One L-BFGS run over a backend: evaluations are full passes, iterations become epoch reports.
struct Run<'a, 'o> {
    backend: &'a mut dyn Backend,
    rows: Rows<'a>,
    held: Option<Held>,
    held_stream: Option<(&'a mut dyn RowSource, usize)>,
    shape: Shape,
    l2: f32,
    /// Fit the biases (false: their gradient is 0, so they stay where they start, at 0).
    fit_intercept: bool,
    /// Sample weights of the training rows, when they have some.
    weights: Option<std::sync::Arc<[f32]>>,
    reducer: &'a mut dyn Reducer,
    observers: &'a mut [&'o mut dyn Observer],
    device: String,
    /// The points evaluated since the last iteration, with their sums (the accepted one is among them).
    seen: Vec<(Vec<f64>, Sums)>,
    rows_read: u64,
    started: Instant,
    /// The reducer's seconds when the iteration started.
    reduced_before: f64,
    reports: Vec<EpochReport>,
}

impl Problem for Run<'_, '_> {
    fn eval(&mut self, x: &mut [f64]) -> Result<(f64, Vec<f64>)> {
        let params = params_of(self.shape, x);
        x.iter_mut()
            .zip(params.w.iter().chain(params.b.iter()))
            .for_each(|(x, &p)| *x = f64::from(p));
        let (value, gradient, sums) = objective_at(
            self.backend,
            &mut self.rows,
            &params,
            (self.l2, self.weights.as_deref()),
            self.reducer,
        )?;
        self.rows_read += sums.rows as u64;
        self.seen.push((x.to_vec(), sums));
        // ∇J flat over W then b, as the iterate is (without `to_flat`'s trailing row count).
        let fit_b = if self.fit_intercept { 1.0 } else { 0.0 };
        let g = gradient
            .w
            .iter()
            .copied()
            .chain(gradient.b.iter().map(|&v| v * fit_b))
            .collect();
        Ok((value, g))
    }

    fn on_iteration(&mut self, it: &Iteration, x: &[f64]) -> Result<()> {
        let sums = self
            .seen
            .iter()
            .rev()
            .find(|(p, _)| p == x)
            .map(|(_, s)| *s)
            .unwrap_or_default();
        self.seen.clear();
        // The accepted point need not be the last one evaluated.
        self.backend.set_params(&params_of(self.shape, x))?;
        let train_seconds = self.started.elapsed().as_secs_f64();
        let batch = self.backend.max_batch();
        let held = match (self.held, self.held_stream.as_mut()) {
            (Some(set), _) => Some(evaluate(self.backend, set, batch)?),
            (None, Some((source, chunk_rows))) => Some(evaluate_streamed(
                self.backend,
                &mut **source,
                *chunk_rows,
                batch,
            )?),
            _ => None,
        };
        let held = super::reduce_held_out(self.reducer, held)?;
        let mut report = EpochReport {
            epoch: it.iteration,
            train_loss: it.value,
            train_accuracy: sums.accuracy(),
            val_loss: held.map(|s| s.mean_loss()),
            val_accuracy: held.map(|s| s.accuracy()),
            samples_per_sec: self.rows_read as f64 / train_seconds.max(1e-9),
            seconds: self.started.elapsed().as_secs_f64(),
            drift: None,
            device: self.device.clone(),
            stream: None,
            reduce_seconds: (!self.reducer.is_identity())
                .then(|| self.reducer.seconds() - self.reduced_before),
            lr: it.step,
            best: false,
            converged: it.stop.is_some_and(crate::lbfgs::Stop::converged),
            lbfgs: Some(*it),
            stopping: crate::stopping::StopState::default(),
        };
        for o in self.observers.iter_mut() {
            o.on_epoch(&mut report, self.backend)?;
        }
        self.reports.push(report);
        self.rows_read = 0;
        self.started = Instant::now();
        self.reduced_before = self.reducer.seconds();
        Ok(())
    }
}

/// [`super::fit_with`] for [`super::Optimizer::Lbfgs`]: L-BFGS from the backend's current weights on the training
/// rows (held, or streamed a chunk at a time for every evaluation), one report per iteration with the held-out
/// figures, the backend ending at the last iterate. A run that starts at a point already within the tolerance
/// reports iteration 0.
pub(super) fn fit_lbfgs<'a>(
    backend: &'a mut dyn Backend,
    train: &'a mut dyn RowSource,
    mut held_out: Option<&'a mut dyn RowSource>,
    cfg: &TrainConfig,
    opts: &LbfgsOptions,
    reducer: &'a mut dyn Reducer,
    observers: &'a mut [&mut dyn Observer],
) -> Result<Vec<EpochReport>> {
    let shape = backend.shape();
    let super::Begun {
        train_residency,
        train_set,
        held_residency,
        held_set: held,
        sample_weights: weights,
    } = super::begin(backend, train, held_out.as_deref_mut(), cfg, observers)?;
    let mut start = backend.params()?;
    if !cfg.fit_intercept {
        start.b.fill(0.0);
    }
    let x0 = flat(&start);
    let rows = match (train_set, train_residency) {
        (Some(set), _) => Rows::Held(set),
        (None, Residency::Streamed { chunk_rows }) => Rows::Streamed {
            source: train,
            chunk_rows,
        },
        (None, Residency::Held) => unreachable!("a held source has a set"),
    };
    let held_stream = match (held_out, held_residency) {
        (Some(h), Some(Residency::Streamed { chunk_rows })) => Some((h, chunk_rows)),
        _ => None,
    };
    let device = backend.device();
    let mut run = Run {
        backend,
        rows,
        held,
        held_stream,
        shape,
        l2: cfg.l2,
        fit_intercept: cfg.fit_intercept,
        weights,
        reduced_before: reducer.seconds(),
        reducer,
        observers,
        device,
        seen: Vec::new(),
        rows_read: 0,
        started: Instant::now(),
        reports: Vec::new(),
    };
    let l1 = L1 {
        weight: f64::from(cfg.l1),
        len: shape.d * shape.k,
    };
    let outcome = crate::lbfgs::minimize_l1(&mut run, x0, opts, l1)?;
    if run.reports.is_empty() {
        // Already within the tolerance at the start (or no step could be taken): report the starting point.
        let it = Iteration {
            iteration: 0,
            value: outcome.value,
            grad_inf: outcome.grad_inf,
            change: 0.0,
            step: 0.0,
            evaluations: outcome.evaluations,
            stop: Some(outcome.stop),
        };
        run.on_iteration(&it, &outcome.x)?;
    }
    if let Some(last) = run.reports.last_mut().and_then(|r| r.lbfgs.as_mut()) {
        // A line search that found no decrease ends the run after the last iteration was reported.
        last.stop = Some(outcome.stop);
        last.evaluations = outcome.evaluations;
    }
    run.backend.set_params(&params_of(shape, &outcome.x))?;
    for o in run.observers.iter_mut() {
        o.on_finish(run.backend)?;
    }
    Ok(run.reports)
}
