//! Streamed epochs: a reader thread reads the source's chunks (in a seeded order where it can seek) into a channel
//! of one while the trainer holds each chunk, steps over its rows in a seeded order and releases it.

use std::sync::Arc;
use std::time::Instant;

use crate::config::TrainConfig;
use crate::data::{Chunk, HostRows, InMemory, RowSource, SparseChunk, SparseInMemory, SparseRows};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

use super::{weighted, Backend, Batch, Held, Observer, Stepper, StreamReport};

/// The next at most `rows` rows of `source` as a part a backend can hold: sparse rows stay sparse.
fn next_part(source: &mut dyn RowSource, rows: usize) -> Result<Option<Part>> {
    Ok(if source.is_sparse() {
        source.next_sparse(rows)?.map(Part::Sparse)
    } else {
        source
            .next_chunk(rows)?
            .map(|c| Part::Dense(c.into_owned()))
    })
}

/// Reads `source` from its start `chunk_rows` rows at a time; the backend holds each chunk only while `f` runs on it
/// (given the held set and the chunk's first row in the source), then releases it.
pub(super) fn for_each_held_chunk(
    backend: &mut dyn Backend,
    source: &mut dyn RowSource,
    chunk_rows: usize,
    mut f: impl FnMut(&mut dyn Backend, Held, u64) -> Result<()>,
) -> Result<()> {
    source.rewind()?;
    let name = source.name().to_string();
    let k = source.classes();
    while let Some(part) = next_part(source, chunk_rows)? {
        let first = part.first_row();
        let mut held_rows = part.into_source(&name, k)?;
        let set = backend.hold(held_rows.as_mut())?;
        f(backend, set, first)?;
        backend.release(set)?;
    }
    Ok(())
}

/// The chunks of one streamed epoch, as (first row, rows): in order, or in a seeded order of chunks.
fn chunk_plan(rows: u64, chunk_rows: usize, seed: u64, epoch: usize) -> Vec<(u64, usize)> {
    let c = chunk_rows.max(1) as u64;
    let mut plan: Vec<(u64, usize)> = (0..rows.div_ceil(c))
        .map(|i| (i * c, (rows - i * c).min(c) as usize))
        .collect();
    SplitMix64::derive(seed, 0xC4A4_0000 + epoch as u64).shuffle(&mut plan);
    plan
}

/// A chunk a reader thread hands to the trainer: dense rows, or sparse ones from a sparse source.
enum Part {
    Dense(Chunk<'static>),
    Sparse(SparseChunk),
}

impl Part {
    fn len(&self) -> usize {
        match self {
            Part::Dense(c) => c.len(),
            Part::Sparse(c) => c.len(),
        }
    }

    fn first_row(&self) -> u64 {
        match self {
            Part::Dense(c) => c.first_row(),
            Part::Sparse(c) => c.first_row,
        }
    }

    /// The rows as a source a backend can hold.
    fn into_source(self, name: &str, k: usize) -> Result<Box<dyn RowSource>> {
        Ok(match self {
            Part::Dense(c) => Box::new(InMemory::new(Arc::new(HostRows::from_chunk(name, c, k)))),
            Part::Sparse(c) => Box::new(SparseInMemory::new(Arc::new(SparseRows::from_chunk(
                name, &c, k,
            )?))),
        })
    }
}

/// Reads one epoch's chunks into `tx`: in the source's order, or (shuffling a source that can seek) in a seeded
/// order of chunks. Stops at the first error (sent on) or when the trainer hangs up. Returns its busy seconds.
fn read_epoch(
    source: &mut dyn RowSource,
    (chunk_rows, mut skip): (usize, u64),
    cfg: &TrainConfig,
    epoch: usize,
    tx: std::sync::mpsc::SyncSender<Result<(Part, usize)>>,
) -> (f64, bool) {
    // Rows of the epoch still to pass over: whole chunks are dropped, and the first chunk kept carries the rest.
    let mut within = |n: usize| -> Option<usize> {
        if skip >= n as u64 {
            skip -= n as u64;
            None
        } else {
            Some(std::mem::take(&mut skip) as usize)
        }
    };
    let mut busy = 0.0;
    let mut read = |source: &mut dyn RowSource, rows: usize| -> Option<Result<Part>> {
        let t = Instant::now();
        let chunk = next_part(source, rows);
        busy += t.elapsed().as_secs_f64();
        chunk.transpose()
    };
    let rows = source.rows();
    let seekable = cfg.shuffle && rows.is_some() && matches!(source.seek(0), Ok(true));
    if seekable {
        for (first, n) in chunk_plan(rows.unwrap_or(0), chunk_rows, cfg.seed, epoch) {
            let Some(skip_here) = within(n) else {
                continue;
            };
            let chunk = match source.seek(first) {
                Ok(_) => read(source, n),
                Err(e) => Some(Err(e)),
            }
            .map(|c| c.map(|part| (part, skip_here)));
            let stop = !matches!(chunk, Some(Ok(_)));
            if let Some(c) = chunk {
                if tx.send(c).is_err() {
                    break;
                }
            }
            if stop {
                break;
            }
        }
    } else if let Err(e) = source.rewind() {
        let _ = tx.send(Err(e));
    } else {
        while let Some(chunk) = read(source, chunk_rows) {
            let stop = chunk.is_err();
            let chunk = match chunk {
                Ok(part) => match within(part.len()) {
                    Some(skip_here) => Ok((part, skip_here)),
                    None => continue,
                },
                Err(e) => Err(e),
            };
            if tx.send(chunk).is_err() || stop {
                break;
            }
        }
    }
    (busy, seekable)
}

/// The rows `rows` of a held chunk as host rows, for observers that replay them (dense; sparse rows made dense,
/// a batch at a time).
fn rows_for_observers<'x>(held: &dyn RowSource, first: u64, rows: &[u32]) -> Result<Chunk<'x>> {
    if let Some(dense) = held.shared() {
        return Ok(dense.chunk(first, rows));
    }
    let sparse = held
        .shared_sparse()
        .ok_or_else(|| Error::Internal("a held chunk neither dense nor sparse".into()))?;
    let b = sparse.batch(rows);
    Chunk::owned(
        sparse.name(),
        b.to_dense(),
        b.y.clone(),
        sparse.classes(),
        first,
    )
}

/// One epoch over a streamed source: a reader thread fills the next chunk while the backend trains on the current
/// one, held only while it is trained on; rows are shuffled within each chunk (and chunks among themselves, see
/// [`read_epoch`]).
/// One streamed epoch; `skip_rows` rows at its start (a resumed run's steps already taken) are passed over: the
/// chunks they fill are not read where the source can seek, and the rest are skipped in the chunk's seeded order.
///
/// Long on purpose: the reader thread and the trainer share one scope, and their channel's protocol reads in one place.
pub(super) fn stream_epoch(
    backend: &mut dyn Backend,
    source: &mut dyn RowSource,
    cfg: &TrainConfig,
    (chunk_rows, skip_rows, sample_weights): (usize, u64, Option<&[f32]>),
    stepper: &mut Stepper<'_>,
    observers: &mut [&mut dyn Observer],
    wants_rows: bool,
) -> Result<StreamReport> {
    let name = source.name().to_string();
    let k = source.classes();
    let epoch = stepper.epoch;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(Part, usize)>>(1);
        let reader =
            scope.spawn(move || read_epoch(source, (chunk_rows, skip_rows), cfg, epoch, tx));
        let mut waited = 0.0;
        let mut chunks = 0usize;
        let mut rows = 0u64;
        let mut train = || -> Result<()> {
            loop {
                let t = Instant::now();
                let Ok(chunk) = rx.recv() else {
                    return Ok(());
                };
                waited += t.elapsed().as_secs_f64();
                let (chunk, skip) = chunk?;
                chunks += 1;
                rows += chunk.len() as u64;
                let first = chunk.first_row();
                let mut held_rows = chunk.into_source(&name, k)?;
                let set = backend.hold(held_rows.as_mut())?;
                let mut order = set.order(0, 0, false);
                if cfg.shuffle {
                    SplitMix64::derive(
                        cfg.seed ^ first.rotate_left(17),
                        0x5EED_0000 + epoch as u64,
                    )
                    .shuffle(&mut order);
                }
                let mut at = skip.min(order.len());
                let mut bw = Vec::new();
                while at < order.len() {
                    let take = stepper.room().min(order.len() - at);
                    let rows_of = &order[at..at + take];
                    let part = weighted(
                        Batch::held(set, rows_of)?,
                        sample_weights,
                        first,
                        rows_of,
                        &mut bw,
                    )?;
                    if wants_rows {
                        let seen = rows_for_observers(held_rows.as_ref(), first, rows_of)?;
                        let seen = match part.weights() {
                            Some(w) => Batch::host(seen)?.with_weights(w)?,
                            None => Batch::host(seen)?,
                        };
                        stepper.part(backend, observers, &part, &seen)?;
                    } else {
                        stepper.part(backend, observers, &part, &part)?;
                    }
                    at += take;
                }
                backend.release(set)?;
            }
        };
        let trained = train();
        drop(rx);
        let (read_seconds, shuffled) = reader
            .join()
            .map_err(|_| Error::Internal(format!("the reader thread of {name} panicked")))?;
        trained?;
        let overlap = if read_seconds > 0.0 {
            (1.0 - waited / read_seconds).clamp(0.0, 1.0)
        } else {
            1.0
        };
        Ok(StreamReport {
            chunks,
            rows,
            read_seconds,
            waited_seconds: waited,
            overlap,
            chunk_order_shuffled: shuffled,
        })
    })
}
