//! Seeded, learnable Gaussian class blobs of any size.

use ndarray::Array2;

use super::{Chunk, Dataset, RowSource, MAX_CLASSES};
use crate::error::{checked_product, Error, Result};
use crate::memory;
use crate::rng::SplitMix64;

/// `n` rows of `d` features in `k` classes: class c's centre is drawn from N(0, s²·I) with s = 3/√(2d), so two centres
/// are ≈ 3 noise standard deviations apart whatever d is; rows are centre + N(0, I); labels cycle 0, 1, …, k−1 so every
/// class is present. Classes are named "0".."k−1".
pub fn synthetic(n: usize, d: usize, k: usize, seed: u64) -> Result<Dataset> {
    if n == 0 || d == 0 || !(2..=MAX_CLASSES).contains(&k) {
        return Err(Error::param(
            "--synthetic",
            format!("N ≥ 1, D ≥ 1 and K in 2..={MAX_CLASSES}"),
            format!("{n},{d},{k}"),
        ));
    }
    let x_bytes = checked_product(
        &format!("--synthetic {n},{d},{k}"),
        &[n as u64, d as u64, 4],
    )?;
    let centre_bytes = checked_product("the class centres", &[k as u64, d as u64, 8])?;
    memory::check(
        &format!("--synthetic {n},{d},{k}"),
        x_bytes.saturating_add(centre_bytes),
    )?;
    let mut rows = SyntheticRows::new(n, d, k, seed)?;
    let what = format!("--synthetic {n},{d},{k}");
    let mut x = Vec::new();
    let mut y = Vec::new();
    let full = |_| crate::memory::allocation_failed(&what, x_bytes, None);
    x.try_reserve_exact(n * d).map_err(full)?;
    y.try_reserve_exact(n).map_err(full)?;
    while let Some(c) = rows.next_chunk(1 << 16)? {
        x.extend(c.x().iter());
        y.extend_from_slice(c.y());
    }
    Ok(Dataset {
        x: Array2::from_shape_vec((n, d), x).expect("n·d values"),
        y,
        classes: (0..k).map(|c| c.to_string()).collect(),
        source: format!("synthetic {n}×{d}, {k} classes, seed {seed}"),
    })
}

/// The rows of [`synthetic`] generated a chunk at a time, in order, for data sets of any size (what `gen` writes):
/// the same values as [`synthetic`] with the same arguments.
#[derive(Debug, Clone)]
pub struct SyntheticRows {
    name: String,
    n: usize,
    d: usize,
    k: usize,
    seed: u64,
    centres: Vec<f64>,
    g: SplitMix64,
    pos: usize,
}

impl SyntheticRows {
    /// `n` rows of `d` features in `k` classes (see [`synthetic`]).
    pub fn new(n: usize, d: usize, k: usize, seed: u64) -> Result<Self> {
        if n == 0 || d == 0 || !(2..=MAX_CLASSES).contains(&k) {
            return Err(Error::param(
                "--shape",
                format!("N ≥ 1, D ≥ 1 and K in 2..={MAX_CLASSES}"),
                format!("{n},{d},{k}"),
            ));
        }
        let centre_bytes = checked_product("the class centres", &[k as u64, d as u64, 8])?;
        memory::check("the class centres", centre_bytes)?;
        let mut rows = SyntheticRows {
            name: format!("synthetic {n}×{d}, {k} classes, seed {seed}"),
            n,
            d,
            k,
            seed,
            centres: Vec::new(),
            g: SplitMix64::derive(seed, 0xB10B),
            pos: 0,
        };
        rows.rewind()?;
        Ok(rows)
    }
}

impl RowSource for SyntheticRows {
    fn name(&self) -> &str {
        &self.name
    }

    fn features(&self) -> usize {
        self.d
    }

    fn classes(&self) -> usize {
        self.k
    }

    fn rows(&self) -> Option<u64> {
        Some(self.n as u64)
    }

    fn rewind(&mut self) -> Result<()> {
        self.g = SplitMix64::derive(self.seed, 0xB10B);
        let scale = 3.0 / (2.0 * self.d as f64).sqrt();
        let g = &mut self.g;
        self.centres = (0..self.k * self.d).map(|_| g.normal() * scale).collect();
        self.pos = 0;
        Ok(())
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk<'_>>> {
        if self.pos >= self.n {
            return Ok(None);
        }
        let (d, k) = (self.d, self.k);
        let m = max_rows.max(1).min(self.n - self.pos);
        let y: Vec<u32> = (self.pos..self.pos + m).map(|i| (i % k) as u32).collect();
        let mut x = Vec::with_capacity(m * d);
        for &c in &y {
            let centre = &self.centres[c as usize * d..(c as usize + 1) * d];
            x.extend(centre.iter().map(|&m| (m + self.g.normal()) as f32));
        }
        let first = self.pos as u64;
        self.pos += m;
        let x = Array2::from_shape_vec((m, d), x).expect("m·d values");
        Ok(Some(Chunk::owned(&self.name, x, y, k, first)?))
    }
}

/// Seeded sparse rows a linear model can learn, for `gen --format libsvm`: row i is of class i mod k; each of its
/// about `nnz` non-zeros (uniformly between nnz/2 and 3·nnz/2, at least 1) is, with probability 1/2, one of its
/// class's own features (those j with j mod k = class) and otherwise any feature; values are uniform in [0.5, 1.5).
#[derive(Debug, Clone)]
pub struct SparseSynthetic {
    n: u64,
    d: usize,
    k: usize,
    nnz: usize,
    seed: u64,
    g: SplitMix64,
    pos: u64,
}

impl SparseSynthetic {
    /// `n` rows of `d` features in `k` classes with about `nnz` non-zeros a row.
    pub fn new(n: u64, d: usize, k: usize, nnz: usize, seed: u64) -> Result<Self> {
        if n == 0 || d == 0 || !(2..=MAX_CLASSES).contains(&k) || k > d || d > u32::MAX as usize {
            return Err(Error::param(
                "--shape",
                format!("N ≥ 1, K in 2..={MAX_CLASSES}, K ≤ D < 2³²"),
                format!("{n},{d},{k}"),
            ));
        }
        if !(1..=d).contains(&nnz) {
            return Err(Error::param(
                "--density",
                format!("a fraction giving 1 to {d} non-zeros a row"),
                format!("{nnz} non-zeros a row"),
            ));
        }
        Ok(SparseSynthetic {
            n,
            d,
            k,
            nnz,
            seed,
            g: SplitMix64::derive(seed, 0x5BA5),
            pos: 0,
        })
    }

    /// Rows still to come.
    pub fn remaining(&self) -> u64 {
        self.n - self.pos
    }

    /// The next at most `max_rows` rows.
    pub fn next_sparse(&mut self, max_rows: usize) -> Option<super::SparseChunk> {
        if self.pos >= self.n {
            return None;
        }
        let m = (max_rows.max(1) as u64).min(self.n - self.pos) as usize;
        let (d, k) = (self.d as u64, self.k as u64);
        let mut chunk = super::SparseChunk {
            offsets: vec![0],
            indices: Vec::new(),
            values: Vec::new(),
            y: Vec::with_capacity(m),
            d: self.d,
            first_row: self.pos,
        };
        let mut cols: Vec<u32> = Vec::new();
        for i in 0..m as u64 {
            let class = (self.pos + i) % k;
            let lo = (self.nnz / 2).max(1) as u64;
            let hi = (self.nnz as u64 * 3 / 2).clamp(lo, d);
            let count = lo + self.g.below(hi - lo + 1);
            cols.clear();
            let own = (d - class).div_ceil(k);
            for _ in 0..count {
                let j = if self.g.next_u64() & 1 == 0 {
                    class + k * self.g.below(own)
                } else {
                    self.g.below(d)
                };
                cols.push(j as u32);
            }
            cols.sort_unstable();
            cols.dedup();
            for &j in &cols {
                chunk.indices.push(j);
                chunk.values.push((0.5 + self.g.next_f64()) as f32);
            }
            chunk.offsets.push(chunk.indices.len() as u64);
            chunk.y.push(class as u32);
        }
        self.pos += m as u64;
        Some(chunk)
    }

    /// Starts again from the first row.
    pub fn rewind(&mut self) {
        self.g = SplitMix64::derive(self.seed, 0x5BA5);
        self.pos = 0;
    }
}
