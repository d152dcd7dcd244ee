//! What every run does first, minibatch or full-batch: shape checks, class weights, residency and holding, the
//! sample-weight check, and telling the observers the run starts.

use std::sync::Arc;

use crate::config::TrainConfig;
use crate::data::RowSource;
use crate::error::{Error, Result};

use super::{residency, Backend, Batch, Held, Observer, Residency, Start};

/// How a run holds its rows, once [`begin`] has set it up.
pub(super) struct Begun {
    pub(super) train_residency: Residency,
    pub(super) train_set: Option<Held>,
    pub(super) held_residency: Option<Residency>,
    pub(super) held_set: Option<Held>,
    pub(super) sample_weights: Option<Arc<[f32]>>,
}

/// What every run does first, minibatch or full-batch: checks the sources' shapes, sets the class weights, decides
/// each source's residency and holds what is held, checks the sample weights against the training rows, and tells
/// the observers the run starts.
pub(super) fn begin<'t, 'h>(
    backend: &mut dyn Backend,
    train: &mut (dyn RowSource + 't),
    mut held_out: Option<&mut (dyn RowSource + 'h)>,
    cfg: &TrainConfig,
    observers: &mut [&mut dyn Observer],
) -> Result<Begun> {
    let shape = backend.shape();
    shape.check_source(train)?;
    if let Some(h) = held_out.as_deref() {
        shape.check_source(h)?;
    }
    backend.set_class_weights(cfg.class_weights.as_deref())?;
    let sample_weights = train.sample_weights();
    let train_residency = residency(backend, train, cfg);
    let train_set = match train_residency {
        Residency::Held => Some(backend.hold(train)?),
        Residency::Streamed { .. } => None,
    };
    check_sample_weights(sample_weights.as_deref(), train_set, train)?;
    let held_residency = held_out.as_deref().map(|h| residency(backend, h, cfg));
    let held_set = match (&mut held_out, held_residency) {
        (Some(h), Some(Residency::Held)) => Some(backend.hold(&mut **h)?),
        _ => None,
    };
    let mut start = Start {
        train: &mut *train,
        residency: train_residency,
    };
    for o in observers.iter_mut() {
        o.on_start(&mut start, cfg, backend)?;
    }
    Ok(Begun {
        train_residency,
        train_set,
        held_residency,
        held_set,
        sample_weights,
    })
}

/// `batch` with the sample weights of its rows — `rows` of the part of the source that starts at row `first` — when
/// the source has weights (`bw` holds them).
pub(super) fn weighted<'b>(
    batch: Batch<'b>,
    weights: Option<&[f32]>,
    first: u64,
    rows: &[u32],
    bw: &'b mut Vec<f32>,
) -> Result<Batch<'b>> {
    let Some(w) = weights else {
        return Ok(batch);
    };
    bw.clear();
    bw.extend(rows.iter().map(|&r| w[first as usize + r as usize]));
    batch.with_weights(bw)
}

/// Sample weights, when the source has them, are one per row of it.
fn check_sample_weights(
    weights: Option<&[f32]>,
    set: Option<Held>,
    source: &dyn RowSource,
) -> Result<()> {
    let Some(w) = weights else {
        return Ok(());
    };
    let rows = set.map(|s| s.len() as u64).or(source.rows());
    if rows != Some(w.len() as u64) {
        return Err(Error::shape(
            format!("sample weights of {}", source.name()),
            format!("one per row ({rows:?} rows)"),
            w.len(),
        ));
    }
    Ok(())
}
