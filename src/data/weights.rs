//! Sample weights (`--sample-weight`): a weight per training row, read from an NPY vector or a text file of one number
//! a line, attached to a source by [`Weighted`]. The trainer reads them through [`RowSource::sample_weights`] and
//! hands each batch its rows' weights ([`crate::train::Batch::with_weights`]); sources built on others keep them
//! aligned (a [`super::Split`] keeps the weights of its side's rows).

use std::path::Path;
use std::sync::Arc;

use super::{Chunk, RowSource, SparseChunk};
use crate::error::{Error, Position, Result};

/// A weight as read: finite and ≥ 0, as f32.
fn check_weight(path: &Path, at: Position, v: f64) -> Result<f32> {
    if v.is_finite() && v >= 0.0 && v <= f64::from(f32::MAX) {
        Ok(v as f32)
    } else {
        Err(Error::input_at(
            path,
            at,
            format!("sample weight {v} is not a finite number ≥ 0"),
        ))
    }
}

/// Reads sample weights: an NPY 1-D array (float or integer), or text with one number a line (a CSV column; a first
/// line that is not a number is taken as its header; blank lines are skipped).
pub fn read_sample_weights(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let weights = if bytes.starts_with(b"\x93NUMPY") {
        let values = super::npy::parse_npy_weights(path, &bytes)?;
        let mut out = Vec::with_capacity(values.len());
        for (e, v) in values.into_iter().enumerate() {
            out.push(check_weight(path, Position::Index(e as u64), v)?);
        }
        out
    } else {
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::input(path, "sample weights: neither NPY nor UTF-8 text"))?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let cell = line.trim().trim_end_matches(',').trim();
            if cell.is_empty() {
                continue;
            }
            match cell.parse::<f64>() {
                Ok(v) => out.push(check_weight(path, Position::Line(i as u64 + 1), v)?),
                Err(_) if i == 0 => {} // a header
                Err(_) => {
                    return Err(Error::input_at(
                        path,
                        Position::Line(i as u64 + 1),
                        format!(
                            "cannot parse {} as a sample weight (one number a line)",
                            super::shown(cell)
                        ),
                    ))
                }
            }
        }
        out
    };
    if weights.is_empty() {
        return Err(Error::input(path, "no sample weights"));
    }
    if weights.iter().all(|&w| w == 0.0) {
        return Err(Error::input(path, "every sample weight is 0"));
    }
    Ok(weights)
}

/// A source whose rows carry sample weights: the inner source's rows, unchanged, and a weight per row.
#[derive(Debug)]
pub struct Weighted<S> {
    inner: S,
    weights: Arc<[f32]>,
}

impl<S: RowSource> Weighted<S> {
    /// `inner` with a weight per row; `what` names the weights in errors (their file). The count must equal the
    /// source's rows, and the source must know them.
    pub fn new(inner: S, weights: Arc<[f32]>, what: &Path) -> Result<Self> {
        match inner.rows() {
            Some(n) if n == weights.len() as u64 => Ok(Weighted { inner, weights }),
            Some(n) => Err(Error::input(
                what,
                format!(
                    "holds {} sample weights for the {n} rows of {}",
                    weights.len(),
                    inner.name()
                ),
            )),
            None => Err(Error::input(
                what,
                format!("{} does not know its row count", inner.name()),
            )),
        }
    }
}

impl<S: RowSource> RowSource for Weighted<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn features(&self) -> usize {
        self.inner.features()
    }

    fn classes(&self) -> usize {
        self.inner.classes()
    }

    fn rows(&self) -> Option<u64> {
        self.inner.rows()
    }

    fn rewind(&mut self) -> Result<()> {
        self.inner.rewind()
    }

    fn seek(&mut self, row: u64) -> Result<bool> {
        self.inner.seek(row)
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk<'_>>> {
        self.inner.next_chunk(max_rows)
    }

    fn shared(&self) -> Option<Arc<super::HostRows>> {
        self.inner.shared()
    }

    fn fill(&mut self, x: &mut [f32], y: &mut [u32]) -> Result<bool> {
        self.inner.fill(x, y)
    }

    fn is_sparse(&self) -> bool {
        self.inner.is_sparse()
    }

    fn next_sparse(&mut self, max_rows: usize) -> Result<Option<SparseChunk>> {
        self.inner.next_sparse(max_rows)
    }

    fn shared_sparse(&self) -> Option<Arc<super::SparseRows>> {
        self.inner.shared_sparse()
    }

    fn held_bytes(&self) -> Option<u64> {
        self.inner.held_bytes()
    }

    fn sample_weights(&self) -> Option<Arc<[f32]>> {
        Some(self.weights.clone())
    }
}
