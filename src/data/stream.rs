//! Sources built on other sources, for data too large to load: a seeded held-out split decided row by row
//! ([`Split`]), standardisation applied chunk by chunk ([`Standardized`]), with the statistics from one streaming
//! pass ([`Standardizer::fit_source`]), and one process's contiguous share of the rows ([`Shard`]).

use super::{Chunk, RowSource, SparseChunk, Standardizer};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// Rows of the inner source per entry of a [`Split`]'s seek index.
const BLOCK: u64 = 1024;

/// Which side of a [`Split`] a source yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The rows kept for training.
    Train,
    /// The held-out rows.
    HeldOut,
}

/// True when row `row` is held out: a seeded hash of the row index below `fraction`. Decided per row, so that both
/// sides of a split can be streamed independently and agree; the held-out share is `fraction` up to sampling noise
/// (±√(n·f·(1−f)) rows), where the in-memory split holds out exactly round(n·f).
pub fn held_out(seed: u64, fraction: f64, row: u64) -> bool {
    let h = SplitMix64::derive(seed ^ 0x5B17_0000_0000, row).next_u64();
    ((h >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < fraction
}

/// One side of a seeded held-out split of a source, streamed: each chunk is the kept rows of the inner source's
/// next rows. Seekable when the inner source is (an index of kept rows every 1,024 inner rows, 8 KiB per 1M rows).
#[derive(Debug)]
pub struct Split<S> {
    inner: S,
    name: String,
    seed: u64,
    fraction: f64,
    side: Side,
    /// The inner source's first row among all rows of the data set (a process's part of a file read by several):
    /// rows are held out by their index in the whole set.
    first: u64,
    rows: u64,
    /// Kept rows before each block of BLOCK inner rows.
    index: Vec<u64>,
    /// Kept rows to drop before the next chunk (after a seek into the middle of a block).
    skip: u64,
    /// The kept row the next chunk starts at.
    pos: u64,
    /// The rest of the last inner chunk read, and the next of its rows to look at.
    pending: Option<(Chunk<'static>, usize)>,
    /// The same for sparse reading.
    pending_sparse: Option<(SparseChunk, usize)>,
}

impl<S: RowSource> Split<S> {
    /// The `side` of the split of `inner` that holds out `fraction` of its rows, seeded by `seed`. The inner source
    /// must know its length.
    pub fn new(inner: S, seed: u64, fraction: f64, side: Side) -> Result<Self> {
        let split = Self::starting_at(inner, seed, fraction, side, 0)?;
        if split.rows == 0 {
            return Err(Error::param(
                "--val-split",
                format!(
                    "a fraction that leaves rows on both sides of the {}",
                    split.inner.rows().unwrap_or(0)
                ),
                fraction,
            ));
        }
        Ok(split)
    }

    /// [`Split::new`] of a source whose first row is row `first` of the whole data set, so that every row is held
    /// out or kept as in the split of the whole set: one process's part of a file that several read (which may
    /// keep no rows).
    pub fn starting_at(inner: S, seed: u64, fraction: f64, side: Side, first: u64) -> Result<Self> {
        if !(fraction.is_finite() && fraction > 0.0 && fraction < 1.0) {
            return Err(Error::param("--val-split", "in (0, 1)", fraction));
        }
        let n = inner.rows().ok_or_else(|| {
            Error::Internal(format!(
                "{}: a split needs the source's length",
                inner.name()
            ))
        })?;
        let mut index = Vec::with_capacity(n.div_ceil(BLOCK) as usize);
        let mut kept = 0u64;
        for row in 0..n {
            if row.is_multiple_of(BLOCK) {
                index.push(kept);
            }
            if held_out(seed, fraction, first + row) == (side == Side::HeldOut) {
                kept += 1;
            }
        }
        let what = match side {
            Side::Train => "training rows",
            Side::HeldOut => "held-out rows",
        };
        Ok(Split {
            name: format!("{} ({what})", inner.name()),
            inner,
            seed,
            fraction,
            side,
            first,
            rows: kept,
            index,
            skip: 0,
            pos: 0,
            pending: None,
            pending_sparse: None,
        })
    }
}

impl<S: RowSource> Split<S> {
    /// Inner rows to read for `want` more kept rows (and the ones still to skip).
    fn ask(&self, want: usize) -> usize {
        let expect = match self.side {
            Side::Train => 1.0 - self.fraction,
            Side::HeldOut => self.fraction,
        };
        let need = want as u64 + self.skip;
        // No more than the rows wanted (and skipped) at a time, whatever the fraction: the chunk a caller asks for
        // is what its memory budget allows, and the held-out side asking for 1/fraction of it (5× at 20 %) overran
        // that budget (and aborted under `ulimit -v`).
        ((need as f64 / expect).ceil() as u64 + 64)
            .min(need + 64)
            .min(1 << 20) as usize
    }
}

impl<S: RowSource> RowSource for Split<S> {
    fn is_sparse(&self) -> bool {
        self.inner.is_sparse()
    }

    /// The weights of this side's rows, in order: the inner source's, kept where the row is.
    fn sample_weights(&self) -> Option<std::sync::Arc<[f32]>> {
        let all = self.inner.sample_weights()?;
        let want = self.side == Side::HeldOut;
        Some(
            all.iter()
                .enumerate()
                .filter(|&(row, _)| {
                    held_out(self.seed, self.fraction, self.first + row as u64) == want
                })
                .map(|(_, &w)| w)
                .collect(),
        )
    }

    fn held_bytes(&self) -> Option<u64> {
        let share = self.rows as f64 / self.inner.rows()?.max(1) as f64;
        Some((self.inner.held_bytes()? as f64 * share).ceil() as u64)
    }

    fn next_sparse(&mut self, max_rows: usize) -> Result<Option<SparseChunk>> {
        let want = max_rows.max(1);
        let (seed, fraction, side, first_all) = (self.seed, self.fraction, self.side, self.first);
        let mut out = SparseChunk {
            offsets: vec![0],
            indices: Vec::new(),
            values: Vec::new(),
            y: Vec::new(),
            d: self.inner.features(),
            first_row: self.pos,
        };
        while out.y.len() < want && self.pos + (out.y.len() as u64) < self.rows {
            if self
                .pending_sparse
                .as_ref()
                .is_none_or(|(c, next)| *next >= c.len())
            {
                let ask = self.ask(want - out.y.len());
                let Some(chunk) = self.inner.next_sparse(ask)? else {
                    break;
                };
                self.pending_sparse = Some((chunk, 0));
            }
            let (chunk, next) = self.pending_sparse.as_mut().expect("filled above");
            while *next < chunk.len() && out.y.len() < want {
                let i = *next;
                *next += 1;
                if held_out(seed, fraction, first_all + chunk.first_row + i as u64)
                    != (side == Side::HeldOut)
                {
                    continue;
                }
                if self.skip > 0 {
                    self.skip -= 1;
                    continue;
                }
                let (lo, hi) = (chunk.offsets[i] as usize, chunk.offsets[i + 1] as usize);
                out.indices.extend_from_slice(&chunk.indices[lo..hi]);
                out.values.extend_from_slice(&chunk.values[lo..hi]);
                out.offsets.push(out.indices.len() as u64);
                out.y.push(chunk.y[i]);
            }
        }
        if out.y.is_empty() {
            return Ok(None);
        }
        self.pos += out.y.len() as u64;
        Ok(Some(out))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn features(&self) -> usize {
        self.inner.features()
    }

    fn classes(&self) -> usize {
        self.inner.classes()
    }

    fn rows(&self) -> Option<u64> {
        Some(self.rows)
    }

    fn rewind(&mut self) -> Result<()> {
        self.skip = 0;
        self.pos = 0;
        self.pending = None;
        self.pending_sparse = None;
        self.inner.rewind()
    }

    fn seek(&mut self, row: u64) -> Result<bool> {
        let block = self.index.partition_point(|&k| k <= row).saturating_sub(1);
        if !self.inner.seek(block as u64 * BLOCK)? {
            return Ok(false);
        }
        self.skip = row - self.index.get(block).copied().unwrap_or(0);
        self.pos = row;
        self.pending = None;
        self.pending_sparse = None;
        Ok(true)
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk<'_>>> {
        let want = max_rows.max(1);
        let d = self.features();
        let (seed, fraction, side, first_all) = (self.seed, self.fraction, self.side, self.first);
        let mut x: Vec<f32> = Vec::new();
        let mut y: Vec<u32> = Vec::new();
        while y.len() < want && self.pos + (y.len() as u64) < self.rows {
            let exhausted = self
                .pending
                .as_ref()
                .is_none_or(|(c, next)| *next >= c.len());
            if exhausted {
                let ask = self.ask(want - y.len());
                let Some(chunk) = self.inner.next_chunk(ask)? else {
                    break;
                };
                self.pending = Some((chunk.into_owned(), 0));
            }
            let (chunk, next) = self.pending.as_mut().expect("filled above");
            let first = chunk.first_row();
            while *next < chunk.len() && y.len() < want {
                let i = *next;
                *next += 1;
                if held_out(seed, fraction, first_all + first + i as u64) != (side == Side::HeldOut)
                {
                    continue;
                }
                if self.skip > 0 {
                    self.skip -= 1;
                    continue;
                }
                x.extend(chunk.x().row(i).iter());
                y.push(chunk.y()[i]);
            }
        }
        if y.is_empty() {
            return Ok(None);
        }
        let first_row = self.pos;
        self.pos += y.len() as u64;
        let m = y.len();
        let x = ndarray::Array2::from_shape_vec((m, d), x)
            .map_err(|e| Error::Internal(format!("{}: {e}", self.name)))?;
        // Rows of checked chunks.
        Ok(Some(Chunk::from_checked(x, y, first_row)))
    }
}

/// The rows of process `rank` of `size` among `rows` rows: contiguous ranges in rank order whose sizes differ by at
/// most one (the first ranks get the smaller), `(first, end)`.
pub fn shard_range(rows: u64, rank: usize, size: usize) -> (u64, u64) {
    let cut = |r: usize| (u128::from(rows) * r as u128 / size.max(1) as u128) as u64;
    (cut(rank), cut(rank + 1))
}

/// One process's shard of a source that several processes read: its rows `first..end` ([`shard_range`]), numbered
/// from 0, read by seeking the inner source (or, where it cannot seek, by reading past the rows before). The inner
/// source's messages keep the file's own positions. Concatenated in rank order the shards are the source.
#[derive(Debug)]
pub struct Shard<S> {
    inner: S,
    name: String,
    first: u64,
    end: u64,
    /// The next row, counted from `first`.
    pos: u64,
}

impl<S: RowSource> Shard<S> {
    /// Process `rank` of `size`'s share of `inner`, which must know its length.
    pub fn new(inner: S, rank: usize, size: usize) -> Result<Self> {
        let n = inner.rows().ok_or_else(|| {
            Error::Internal(format!(
                "{}: a shard needs the source's length",
                inner.name()
            ))
        })?;
        let (first, end) = shard_range(n, rank, size);
        let mut shard = Shard {
            name: format!(
                "{} (rows {first}..{end} of {n}, process {rank} of {size})",
                inner.name()
            ),
            inner,
            first,
            end,
            pos: 0,
        };
        shard.rewind()?;
        Ok(shard)
    }

    fn left(&self) -> u64 {
        self.end - self.first - self.pos
    }
}

impl<S: RowSource> RowSource for Shard<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn features(&self) -> usize {
        self.inner.features()
    }

    fn classes(&self) -> usize {
        self.inner.classes()
    }

    fn rows(&self) -> Option<u64> {
        Some(self.end - self.first)
    }

    fn rewind(&mut self) -> Result<()> {
        self.pos = 0;
        if self.inner.seek(self.first)? {
            return Ok(());
        }
        self.inner.rewind()?;
        let mut skip = self.first;
        while skip > 0 {
            let ask = skip.min(1 << 16) as usize;
            let got = if self.inner.is_sparse() {
                self.inner.next_sparse(ask)?.map(|c| c.len())
            } else {
                self.inner.next_chunk(ask)?.map(|c| c.len())
            };
            match got {
                Some(m) => skip -= m as u64,
                None => break,
            }
        }
        Ok(())
    }

    fn seek(&mut self, row: u64) -> Result<bool> {
        if row > self.end - self.first || !self.inner.seek(self.first + row)? {
            return Ok(false);
        }
        self.pos = row;
        Ok(true)
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk<'_>>> {
        let want = (max_rows.max(1) as u64).min(self.left()) as usize;
        if want == 0 {
            return Ok(None);
        }
        let at = self.pos;
        let Some(chunk) = self.inner.next_chunk(want)? else {
            return Ok(None);
        };
        self.pos += chunk.len() as u64;
        Ok(Some(chunk.starting_at(at)))
    }

    fn fill(&mut self, x: &mut [f32], y: &mut [u32]) -> Result<bool> {
        if y.len() as u64 > self.left() || !self.inner.fill(x, y)? {
            return Ok(false);
        }
        self.pos += y.len() as u64;
        Ok(true)
    }

    fn is_sparse(&self) -> bool {
        self.inner.is_sparse()
    }

    fn next_sparse(&mut self, max_rows: usize) -> Result<Option<SparseChunk>> {
        let want = (max_rows.max(1) as u64).min(self.left()) as usize;
        if want == 0 {
            return Ok(None);
        }
        let Some(mut chunk) = self.inner.next_sparse(want)? else {
            return Ok(None);
        };
        chunk.first_row = self.pos;
        self.pos += chunk.len() as u64;
        Ok(Some(chunk))
    }

    fn held_bytes(&self) -> Option<u64> {
        let share = (self.end - self.first) as f64 / self.inner.rows()?.max(1) as f64;
        Some((self.inner.held_bytes()? as f64 * share).ceil() as u64)
    }

    fn sample_weights(&self) -> Option<std::sync::Arc<[f32]>> {
        let all = self.inner.sample_weights()?;
        Some(all[self.first as usize..self.end as usize].into())
    }
}

/// A source whose features are standardised chunk by chunk with fixed statistics.
#[derive(Debug)]
pub struct Standardized<S> {
    inner: S,
    stats: Standardizer,
}

impl<S: RowSource> Standardized<S> {
    /// `inner` standardised with `stats` (one mean and deviation per feature).
    pub fn new(inner: S, stats: Standardizer) -> Result<Self> {
        if inner.is_sparse() {
            return Err(Error::param(
                "--standardize",
                format!(
                    "not given with sparse data ({}): centring would make every row dense",
                    inner.name()
                ),
                "given",
            ));
        }
        if stats.mean.len() != inner.features() {
            return Err(Error::shape(
                "standardizer",
                format!("{} features", inner.features()),
                stats.mean.len(),
            ));
        }
        Ok(Standardized { inner, stats })
    }
}

impl<S: RowSource> RowSource for Standardized<S> {
    fn sample_weights(&self) -> Option<std::sync::Arc<[f32]>> {
        self.inner.sample_weights()
    }

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
        let k = self.inner.classes();
        let name = self.inner.name().to_string();
        let Some(chunk) = self.inner.next_chunk(max_rows)? else {
            return Ok(None);
        };
        let first = chunk.first_row();
        let mut x = chunk.x().to_owned();
        let y = chunk.y().to_vec();
        self.stats.apply(&mut x);
        Ok(Some(Chunk::owned(&name, x, y, k, first)?))
    }
}

impl<S: RowSource + ?Sized> RowSource for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn features(&self) -> usize {
        (**self).features()
    }

    fn classes(&self) -> usize {
        (**self).classes()
    }

    fn rows(&self) -> Option<u64> {
        (**self).rows()
    }

    fn rewind(&mut self) -> Result<()> {
        (**self).rewind()
    }

    fn seek(&mut self, row: u64) -> Result<bool> {
        (**self).seek(row)
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk<'_>>> {
        (**self).next_chunk(max_rows)
    }

    fn shared(&self) -> Option<std::sync::Arc<super::HostRows>> {
        (**self).shared()
    }

    fn is_sparse(&self) -> bool {
        (**self).is_sparse()
    }

    fn next_sparse(&mut self, max_rows: usize) -> Result<Option<super::SparseChunk>> {
        (**self).next_sparse(max_rows)
    }

    fn shared_sparse(&self) -> Option<std::sync::Arc<super::SparseRows>> {
        (**self).shared_sparse()
    }

    fn held_bytes(&self) -> Option<u64> {
        (**self).held_bytes()
    }

    fn sample_weights(&self) -> Option<std::sync::Arc<[f32]>> {
        (**self).sample_weights()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{HostRows, InMemory};
    use ndarray::Array2;

    fn source(n: usize) -> InMemory {
        let x = Array2::from_shape_fn((n, 3), |(i, j)| (i * 3 + j) as f32 * 0.5 - 7.0);
        let y: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        InMemory::from_arrays("m", x, y, 3).unwrap()
    }

    fn rows_of(s: &mut dyn RowSource, chunk: usize) -> Vec<f32> {
        s.rewind().unwrap();
        let mut out = Vec::new();
        while let Some(c) = s.next_chunk(chunk).unwrap() {
            assert!(c.len() <= chunk);
            out.extend(c.x().column(0).iter().copied());
        }
        out
    }

    #[test]
    fn the_two_sides_of_a_split_partition_the_rows_whatever_the_chunking() {
        let n = 10_000;
        let mut train = Split::new(source(n), 9, 0.25, Side::Train).unwrap();
        let mut held = Split::new(source(n), 9, 0.25, Side::HeldOut).unwrap();
        let (a, b) = (rows_of(&mut train, 1), rows_of(&mut held, 777));
        assert_eq!(a.len() as u64, train.rows().unwrap());
        assert_eq!(a.len() + b.len(), n);
        // About a quarter held out: 2,500 ± 4.3 standard deviations (σ = √(n·f·(1−f)) ≈ 43).
        assert!((b.len() as i64 - 2500).abs() < 190, "{}", b.len());
        let mut all: Vec<f32> = a.iter().chain(&b).copied().collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, rows_of(&mut source(n), 4096));
        for chunk in [3, 4096, 5000, 20_000] {
            assert_eq!(rows_of(&mut train, chunk), a, "chunks of {chunk}");
        }
        // Seeking to any kept row starts there, in and across the index's blocks.
        for at in [0u64, 1, 4095, 4096, 5000, a.len() as u64 - 1] {
            assert!(train.seek(at).unwrap());
            let c = train.next_chunk(10).unwrap().unwrap();
            assert_eq!(c.first_row(), at);
            let want: Vec<f32> = a[at as usize..(at as usize + 10).min(a.len())].to_vec();
            assert_eq!(c.x().column(0).to_vec(), want, "seek to {at}");
        }
        assert!(Split::new(source(10), 9, 1.0, Side::Train).is_err());
    }

    #[test]
    fn streamed_statistics_equal_in_memory_ones_and_standardize_chunks() {
        let n = 10_000;
        let mut s = source(n);
        let rows: std::sync::Arc<HostRows> = s.rows_ref().clone();
        let fitted = Standardizer::fit(rows.x());
        assert_eq!(Standardizer::fit_source(&mut s).unwrap(), fitted);
        // Welford's merge against the two-pass formula in f64: the same to f32 rounding.
        let x = rows.x().mapv(f64::from);
        let mean = x.mean_axis(ndarray::Axis(0)).unwrap();
        let std = x.std_axis(ndarray::Axis(0), 0.0);
        for j in 0..3 {
            assert!((f64::from(fitted.mean[j]) - mean[j]).abs() <= 1e-6 * mean[j].abs().max(1.0));
            assert!((f64::from(fitted.std[j]) - std[j]).abs() <= 1e-6 * std[j]);
        }
        let mut z = Standardized::new(s, fitted.clone()).unwrap();
        let mut want = rows.x().to_owned();
        fitted.apply(&mut want);
        assert_eq!(rows_of(&mut z, 333), want.column(0).to_vec());
    }

    /// A source that can only be read in order.
    struct InOrder(InMemory);

    impl RowSource for InOrder {
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
        fn rewind(&mut self) -> Result<()> {
            self.0.rewind()
        }
        fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk<'_>>> {
            self.0.next_chunk(max_rows)
        }
    }

    #[test]
    fn shards_in_rank_order_are_the_source_whatever_the_chunking_and_seeking() {
        let n = 1001;
        let whole = rows_of(&mut source(n), 4096);
        for size in [1, 2, 3, 7] {
            let mut joined = Vec::new();
            let mut joined_in_order = Vec::new();
            for rank in 0..size {
                let mut shard = Shard::new(source(n), rank, size).unwrap();
                let (first, end) = shard_range(n as u64, rank, size);
                assert_eq!(shard.rows(), Some(end - first));
                // Sizes differ by at most one.
                assert!((end - first).abs_diff(n as u64 / size as u64) <= 1);
                let rows = rows_of(&mut shard, 100);
                assert_eq!(rows_of(&mut shard, 7), rows, "chunking");
                // Chunks are numbered from the shard's first row.
                shard.rewind().unwrap();
                assert_eq!(shard.next_chunk(5).unwrap().unwrap().first_row(), 0);
                if rows.len() > 10 {
                    assert!(shard.seek(10).unwrap());
                    let c = shard.next_chunk(3).unwrap().unwrap();
                    assert_eq!((c.first_row(), c.x()[[0, 0]]), (10, rows[10]));
                }
                joined.extend(rows);
                let mut in_order = Shard::new(InOrder(source(n)), rank, size).unwrap();
                joined_in_order.extend(rows_of(&mut in_order, 64));
            }
            assert_eq!(joined, whole, "{size} shards");
            assert_eq!(
                joined_in_order, whole,
                "{size} shards of a source read in order"
            );
        }
    }
}
