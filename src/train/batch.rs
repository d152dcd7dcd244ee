//! What a step is given: rows of a held set by index ([`Held`], [`Batch::held`]) or host rows ([`Batch::host`]),
//! with their sample weights, and the seeded order of an epoch's rows.

use crate::data::Chunk;
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// Rows a backend holds in its own memory after [`super::Backend::hold`], addressed 0..len.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    id: usize,
    rows: usize,
}

impl Held {
    /// A handle; made by backends in [`super::Backend::hold`].
    pub fn new(id: usize, rows: usize) -> Self {
        Held { id, rows }
    }

    /// The backend's own number for the set.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no rows are held.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The order of one pass over the held rows: theirs, or a permutation seeded by (seed, epoch).
    pub fn order(&self, seed: u64, epoch: usize, shuffle: bool) -> Vec<u32> {
        epoch_order(self.rows, seed, epoch, shuffle)
    }
}

/// What one [`super::Backend::accumulate`] or [`super::Backend::forward`] call works on.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    rows: BatchRows<'a>,
    /// A weight per row (sample weights), in the batch's order; None: every row weighs 1.
    weights: Option<&'a [f32]>,
}

/// The rows of a [`Batch`].
#[derive(Debug, Clone)]
pub enum BatchRows<'a> {
    /// Rows of a held set, by index, in this order.
    Held {
        /// The set.
        set: Held,
        /// Indices into it, each below its length.
        rows: &'a [u32],
    },
    /// Rows given by the host (a streaming source's chunk, or part of one).
    Host(Chunk<'a>),
}

impl<'a> Batch<'a> {
    /// Rows `rows` of a held set: at least one, each below the set's length.
    pub fn held(set: Held, rows: &'a [u32]) -> Result<Self> {
        if rows.is_empty() {
            return Err(Error::param("batch", "at least 1 row", 0));
        }
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= set.rows) {
            return Err(Error::shape(
                "batch row index",
                format!("below {}", set.rows),
                bad,
            ));
        }
        Ok(Batch {
            rows: BatchRows::Held { set, rows },
            weights: None,
        })
    }

    /// Host rows (already checked: a [`Chunk`] cannot hold bad rows).
    pub fn host(chunk: Chunk<'a>) -> Result<Self> {
        if chunk.is_empty() {
            return Err(Error::param("batch", "at least 1 row", 0));
        }
        Ok(Batch {
            rows: BatchRows::Host(chunk),
            weights: None,
        })
    }

    /// Rows `start..end` of the batch (not empty), as a batch: a part of a checked batch needs no new check.
    pub fn slice(&self, start: usize, end: usize) -> Batch<'_> {
        debug_assert!(
            start < end && end <= self.len(),
            "{start}..{end} of {}",
            self.len()
        );
        Batch {
            rows: match &self.rows {
                BatchRows::Held { set, rows } => BatchRows::Held {
                    set: *set,
                    rows: &rows[start..end],
                },
                BatchRows::Host(chunk) => BatchRows::Host(chunk.slice(start, end)),
            },
            weights: self.weights.map(|w| &w[start..end]),
        }
    }

    /// The batch with a weight for each row (sample weights): each row's loss and residual are scaled by it, so
    /// that J = (1/N)·Σ wᵢ·CEᵢ (+ penalty). Weights are finite and ≥ 0, one per row.
    pub fn with_weights(self, weights: &'a [f32]) -> Result<Self> {
        if weights.len() != self.len() {
            return Err(Error::shape(
                "batch weights",
                format!("{} (one per row)", self.len()),
                weights.len(),
            ));
        }
        if let Some((i, w)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
        {
            return Err(Error::param(
                "--sample-weight",
                "finite weights ≥ 0",
                format!("{w} for row {i} of a batch"),
            ));
        }
        Ok(Batch {
            rows: self.rows,
            weights: Some(weights),
        })
    }

    /// The rows' weights, when the batch has them.
    pub fn weights(&self) -> Option<&'a [f32]> {
        self.weights
    }

    /// The rows.
    pub fn rows(&self) -> &BatchRows<'a> {
        &self.rows
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        match &self.rows {
            BatchRows::Held { rows, .. } => rows.len(),
            BatchRows::Host(c) => c.len(),
        }
    }

    /// Never true: empty batches are refused.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The row order of one epoch: the data's order, or a permutation seeded by (seed, epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    if shuffle {
        SplitMix64::derive(seed, 0x5EED_0000 + epoch as u64).shuffle(&mut order);
    }
    order
}
