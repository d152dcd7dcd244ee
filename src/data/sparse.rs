//! Sparse rows: held in host memory as CSR ([`SparseRows`]), and cut into batches in the two layouts the sparse
//! kernels read ([`SparseBatch`]): CSR for the logits Z = X·W + b, and its transpose over all columns for the
//! gradient G = Xᵀ·R, so that every gradient element is one ordered sum (no atomics, bitwise reproducible).

use std::sync::Arc;

use super::{RowSource, SparseChunk, MAX_CLASSES};
use crate::error::{Error, Position, Result};

impl SparseChunk {
    /// Checks the chunk: offsets of rows + 1 entries, from 0, non-decreasing, ending at the non-zero count; column
    /// indices ascending within each row and below `d`; values finite; labels below `k`. Positions in errors are the
    /// source's rows.
    pub fn check(&self, name: &str, k: usize) -> Result<()> {
        Csr {
            offsets: &self.offsets,
            indices: &self.indices,
            values: &self.values,
            y: &self.y,
            d: self.d,
            first_row: self.first_row,
        }
        .check(name, k)
    }

    /// The non-zeros of dense rows.
    pub fn from_dense(x: ndarray::ArrayView2<f32>, y: &[u32], first_row: u64) -> Self {
        let mut c = SparseChunk {
            offsets: vec![0],
            indices: Vec::new(),
            values: Vec::new(),
            y: y.to_vec(),
            d: x.ncols(),
            first_row,
        };
        for row in x.outer_iter() {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    c.indices.push(j as u32);
                    c.values.push(v);
                }
            }
            c.offsets.push(c.indices.len() as u64);
        }
        c
    }
}

/// Appends chunk `c`'s rows to `all` (whose offsets continue from its last).
fn append(all: &mut SparseChunk, c: &SparseChunk) {
    let base = *all.offsets.last().expect("starts with 0");
    all.offsets.extend(c.offsets[1..].iter().map(|o| base + o));
    all.indices.extend_from_slice(&c.indices);
    all.values.extend_from_slice(&c.values);
    all.y.extend_from_slice(&c.y);
}

/// CSR arrays to be checked: a chunk's, or arrays lent to [`SparseRows::lent`].
struct Csr<'a> {
    offsets: &'a [u64],
    indices: &'a [u32],
    values: &'a [f32],
    y: &'a [u32],
    d: usize,
    first_row: u64,
}

impl Csr<'_> {
    /// [`SparseChunk::check`]'s checks.
    fn check(&self, name: &str, k: usize) -> Result<()> {
        let at = |i: usize| Position::Row {
            row: self.first_row + i as u64,
            column: None,
        };
        let nnz = self.indices.len() as u64;
        if self.offsets.len() != self.y.len() + 1
            || self.offsets.first() != Some(&0)
            || self.offsets.last() != Some(&nnz)
            || self.values.len() != self.indices.len()
        {
            return Err(Error::Internal(format!(
                "{name}: a sparse chunk of {} rows with {} offsets, {} indices and {} values",
                self.y.len(),
                self.offsets.len(),
                self.indices.len(),
                self.values.len()
            )));
        }
        if !(2..=MAX_CLASSES).contains(&k) {
            return Err(Error::param("classes", format!("in 2..={MAX_CLASSES}"), k));
        }
        for (i, w) in self.offsets.windows(2).enumerate() {
            if w[1] < w[0] || w[1] > nnz {
                return Err(Error::Internal(format!(
                    "{name}: row offsets decrease at row {i} or pass the {nnz} non-zeros"
                )));
            }
            let (lo, hi) = (w[0] as usize, w[1] as usize);
            let row = &self.indices[lo..hi];
            if let Some(p) = row.windows(2).position(|p| p[1] <= p[0]) {
                return Err(Error::input_at(
                    name,
                    at(i),
                    format!(
                        "column {} does not ascend after column {}",
                        row[p + 1],
                        row[p]
                    ),
                ));
            }
            if let Some(&c) = row.last().filter(|&&c| c as usize >= self.d) {
                return Err(Error::input_at(
                    name,
                    at(i),
                    format!("column {c} is not below the {} features", self.d),
                ));
            }
            if let Some(e) = self.values[lo..hi].iter().position(|v| !v.is_finite()) {
                return Err(Error::input_at(
                    name,
                    Position::Row {
                        row: self.first_row + i as u64,
                        column: Some(u64::from(row[e])),
                    },
                    "value is not finite",
                ));
            }
            if self.y[i] as usize >= k {
                return Err(Error::input_at(
                    name,
                    at(i),
                    format!("label {} is not below the {k} classes", self.y[i]),
                ));
            }
        }
        Ok(())
    }
}

/// Column indices or values of sparse rows: their own, or lent by someone else and read where they are (a SciPy
/// matrix's arrays, which the Python package trains on in place).
#[derive(Clone)]
enum Slab<T: 'static> {
    Owned(Vec<T>),
    Lent(Arc<dyn AsRef<[T]> + Send + Sync>),
}

impl<T> std::ops::Deref for Slab<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Slab::Owned(v) => v,
            Slab::Lent(a) => (**a).as_ref(),
        }
    }
}

impl<T: PartialEq> PartialEq for Slab<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T> std::fmt::Debug for Slab<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slab")
            .field("len", &self.len())
            .field("lent", &matches!(self, Slab::Lent(_)))
            .finish()
    }
}

/// Column indices held by someone else and lent to [`SparseRows::lent`]: they stay where they are and unchanged
/// while the rows live.
pub type SharedIndices = Arc<dyn AsRef<[u32]> + Send + Sync>;

/// Sparse rows held in host memory (CSR, offsets u64: more than 2³¹ non-zeros are fine), checked when made.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseRows {
    name: String,
    d: usize,
    k: usize,
    offsets: Vec<u64>,
    indices: Slab<u32>,
    values: Slab<f32>,
    y: Vec<u32>,
}

impl SparseRows {
    /// Every row of `source`, read sparse ([`RowSource::next_sparse`]).
    pub fn read(source: &mut dyn RowSource) -> Result<Arc<SparseRows>> {
        if let Some(rows) = source.shared_sparse() {
            return Ok(rows);
        }
        source.rewind()?;
        let (d, k) = (source.features(), source.classes());
        let name = source.name().to_string();
        let mut all = SparseChunk {
            offsets: vec![0],
            indices: Vec::new(),
            values: Vec::new(),
            y: Vec::new(),
            d,
            first_row: 0,
        };
        while let Some(c) = source.next_sparse(1 << 16)? {
            c.check(&name, k)?;
            if c.d != d {
                return Err(Error::Internal(format!(
                    "{name}: a chunk {} wide from a source of {d} features",
                    c.d
                )));
            }
            append(&mut all, &c);
        }
        if all.y.is_empty() {
            return Err(Error::input(&name, "no rows"));
        }
        Ok(Arc::new(SparseRows::owned(name, k, all)))
    }

    /// The rows of a chunk, checked.
    pub fn from_chunk(name: &str, chunk: &SparseChunk, k: usize) -> Result<Self> {
        chunk.check(name, k)?;
        Ok(SparseRows::owned(name.to_string(), k, chunk.clone()))
    }

    /// Checks and takes CSR rows whose column indices and values are lent ([`SharedIndices`],
    /// [`super::SharedValues`]), read where they are, never copied: row i's entries are
    /// `indices[offsets[i]..offsets[i + 1]]`, ascending and below `d`, with their `values`; `y` their classes.
    pub fn lent(
        name: impl Into<String>,
        d: usize,
        k: usize,
        offsets: Vec<u64>,
        indices: SharedIndices,
        values: super::SharedValues,
        y: Vec<u32>,
    ) -> Result<Self> {
        let name = name.into();
        Csr {
            offsets: &offsets,
            indices: (*indices).as_ref(),
            values: (*values).as_ref(),
            y: &y,
            d,
            first_row: 0,
        }
        .check(&name, k)?;
        if y.is_empty() {
            return Err(Error::input(&name, "no rows"));
        }
        Ok(SparseRows {
            name,
            d,
            k,
            offsets,
            indices: Slab::Lent(indices),
            values: Slab::Lent(values),
            y,
        })
    }

    /// Rows of a checked chunk, taken as they are.
    fn owned(name: String, k: usize, c: SparseChunk) -> Self {
        SparseRows {
            name,
            d: c.d,
            k,
            offsets: c.offsets,
            indices: Slab::Owned(c.indices),
            values: Slab::Owned(c.values),
            y: c.y,
        }
    }

    /// True when the column indices and values are lent ([`SparseRows::lent`]), not a copy.
    pub fn is_lent(&self) -> bool {
        matches!(self.values, Slab::Lent(_))
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Never true: empty sets are refused.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Features.
    pub fn features(&self) -> usize {
        self.d
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        self.k
    }

    /// Non-zeros.
    pub fn nnz(&self) -> u64 {
        self.indices.len() as u64
    }

    /// Class indices.
    pub fn y(&self) -> &[u32] {
        &self.y
    }

    /// Row `r`'s columns (ascending) and values.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (lo, hi) = (self.offsets[r] as usize, self.offsets[r + 1] as usize);
        (&self.indices[lo..hi], &self.values[lo..hi])
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.nnz() * 8 + self.len() as u64 * 12
    }

    /// The rows `rows` (indices into these rows), in that order, as a batch.
    pub fn batch(&self, rows: &[u32]) -> SparseBatch {
        let nnz: usize = rows
            .iter()
            .map(|&r| (self.offsets[r as usize + 1] - self.offsets[r as usize]) as usize)
            .sum();
        let mut b = SparseBatch {
            d: self.d,
            offsets: Vec::with_capacity(rows.len() + 1),
            indices: Vec::with_capacity(nnz),
            values: Vec::with_capacity(nnz),
            col_ptr: Vec::new(),
            col_rows: Vec::new(),
            col_vals: Vec::new(),
            cols: Vec::new(),
            y: rows.iter().map(|&r| self.y[r as usize]).collect(),
        };
        b.offsets.push(0);
        for &r in rows {
            let (lo, hi) = (
                self.offsets[r as usize] as usize,
                self.offsets[r as usize + 1] as usize,
            );
            b.indices.extend_from_slice(&self.indices[lo..hi]);
            b.values.extend_from_slice(&self.values[lo..hi]);
            b.offsets.push(b.indices.len() as u32);
        }
        b.transpose();
        b
    }
}

/// One batch of sparse rows, in both layouts the kernels read: CSR in batch order (`offsets`, `indices`, `values`;
/// u32 offsets: a batch is one device buffer), and the transpose over all `d` columns (`col_ptr`, d + 1 of them;
/// `col_rows`, the batch row of each entry, ascending within a column; `col_vals`), built by a counting sort.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseBatch {
    /// Columns.
    pub d: usize,
    /// Row starts, rows + 1.
    pub offsets: Vec<u32>,
    /// Column of each entry, row by row.
    pub indices: Vec<u32>,
    /// Value of each entry, row by row.
    pub values: Vec<f32>,
    /// Column starts into `col_rows` / `col_vals`, d + 1.
    pub col_ptr: Vec<u32>,
    /// Batch row of each entry, column by column, ascending within a column.
    pub col_rows: Vec<u32>,
    /// Value of each entry, column by column.
    pub col_vals: Vec<f32>,
    /// The columns some row of the batch has an entry in, ascending (the only columns of G the batch changes).
    pub cols: Vec<u32>,
    /// Class index of each row.
    pub y: Vec<u32>,
}

impl SparseBatch {
    /// Rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Fills the column layout from the row layout.
    fn transpose(&mut self) {
        let mut count = vec![0u32; self.d + 1];
        for &c in &self.indices {
            count[c as usize + 1] += 1;
        }
        for j in 0..self.d {
            count[j + 1] += count[j];
        }
        self.col_ptr = count.clone();
        self.cols = (0..self.d as u32)
            .filter(|&j| count[j as usize + 1] > count[j as usize])
            .collect();
        let mut next = count;
        self.col_rows = vec![0; self.indices.len()];
        self.col_vals = vec![0.0; self.indices.len()];
        for (i, w) in self.offsets.windows(2).enumerate() {
            for e in w[0] as usize..w[1] as usize {
                let c = self.indices[e] as usize;
                let at = next[c] as usize;
                next[c] += 1;
                self.col_rows[at] = i as u32;
                self.col_vals[at] = self.values[e];
            }
        }
    }

    /// The start of each touched column's entries, and the end of the last: `cols.len() + 1` offsets into
    /// `col_rows` / `col_vals` (the transpose without its empty columns, what the GPU gets).
    pub fn touched_ptr(&self) -> Vec<u32> {
        let mut ptr: Vec<u32> = self
            .cols
            .iter()
            .map(|&j| self.col_ptr[j as usize])
            .collect();
        ptr.push(self.col_vals.len() as u32);
        ptr
    }

    /// The rows as a dense [rows, d] array (tests, and the dense paths' view of the same rows).
    pub fn to_dense(&self) -> ndarray::Array2<f32> {
        dense(self.d, &self.offsets, &self.indices, &self.values)
    }
}

/// CSR rows (`offsets` of either width) as a dense [rows, d] array.
pub(crate) fn dense<O: Copy + TryInto<usize>>(
    d: usize,
    offsets: &[O],
    indices: &[u32],
    values: &[f32],
) -> ndarray::Array2<f32> {
    let at = |o: O| o.try_into().unwrap_or(usize::MAX);
    let mut x = ndarray::Array2::zeros((offsets.len().saturating_sub(1), d));
    for (i, w) in offsets.windows(2).enumerate() {
        for e in at(w[0])..at(w[1]) {
            x[[i, indices[e] as usize]] = values[e];
        }
    }
    x
}

/// A [`RowSource`] over sparse rows in memory (what streaming holds each chunk of a sparse file as).
#[derive(Debug, Clone)]
pub struct SparseInMemory {
    rows: Arc<SparseRows>,
    pos: usize,
}

impl SparseInMemory {
    /// A source over `rows`.
    pub fn new(rows: Arc<SparseRows>) -> Self {
        SparseInMemory { rows, pos: 0 }
    }
}

impl RowSource for SparseInMemory {
    fn name(&self) -> &str {
        self.rows.name()
    }

    fn features(&self) -> usize {
        self.rows.d
    }

    fn classes(&self) -> usize {
        self.rows.k
    }

    fn rows(&self) -> Option<u64> {
        Some(self.rows.len() as u64)
    }

    fn rewind(&mut self) -> Result<()> {
        self.pos = 0;
        Ok(())
    }

    fn seek(&mut self, row: u64) -> Result<bool> {
        self.pos = usize::try_from(row).unwrap_or(usize::MAX);
        Ok(true)
    }

    fn is_sparse(&self) -> bool {
        true
    }

    fn held_bytes(&self) -> Option<u64> {
        Some(self.rows.bytes())
    }

    fn next_sparse(&mut self, max_rows: usize) -> Result<Option<SparseChunk>> {
        let n = self.rows.len();
        if self.pos >= n {
            return Ok(None);
        }
        let end = (self.pos + max_rows.max(1)).min(n);
        let (lo, hi) = (
            self.rows.offsets[self.pos] as usize,
            self.rows.offsets[end] as usize,
        );
        let chunk = SparseChunk {
            offsets: self.rows.offsets[self.pos..=end]
                .iter()
                .map(|o| o - lo as u64)
                .collect(),
            indices: self.rows.indices[lo..hi].to_vec(),
            values: self.rows.values[lo..hi].to_vec(),
            y: self.rows.y[self.pos..end].to_vec(),
            d: self.rows.d,
            first_row: self.pos as u64,
        };
        self.pos = end;
        Ok(Some(chunk))
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<super::Chunk<'_>>> {
        let k = self.rows.k;
        let name = self.rows.name.clone();
        match self.next_sparse(max_rows)? {
            Some(s) => Ok(Some(super::Chunk::owned(
                &name,
                s.to_dense(),
                s.y,
                k,
                s.first_row,
            )?)),
            None => Ok(None),
        }
    }

    fn shared_sparse(&self) -> Option<Arc<SparseRows>> {
        Some(self.rows.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lent CSR arrays are read where they are — every row points into the lender's memory — equal the same rows
    /// owned, and are checked as a chunk is, with an error (never a panic) for offsets that pass the non-zeros.
    #[test]
    fn lent_csr_arrays_are_read_in_place_and_checked() {
        let chunk = SparseChunk {
            offsets: vec![0, 2, 2, 5],
            indices: vec![0, 3, 1, 2, 3],
            values: vec![1.0, -2.0, 0.5, 4.0, 8.0],
            y: vec![0, 1, 2],
            d: 4,
            first_row: 0,
        };
        let indices: SharedIndices = Arc::new(chunk.indices.clone());
        let values: super::super::SharedValues = Arc::new(chunk.values.clone());
        let lend = |offsets: Vec<u64>, indices: Vec<u32>, values: Vec<f32>| {
            SparseRows::lent(
                "t",
                4,
                3,
                offsets,
                Arc::new(indices),
                Arc::new(values),
                chunk.y.clone(),
            )
        };
        let rows = SparseRows::lent(
            "t",
            4,
            3,
            chunk.offsets.clone(),
            indices.clone(),
            values.clone(),
            chunk.y.clone(),
        )
        .unwrap();
        assert!(rows.is_lent());
        assert_eq!(rows.row(2).0.as_ptr(), (*indices).as_ref()[2..].as_ptr());
        assert_eq!(rows.row(2).1.as_ptr(), (*values).as_ref()[2..].as_ptr());
        let owned = SparseRows::from_chunk("t", &chunk, 3).unwrap();
        assert!(!owned.is_lent());
        assert_eq!(rows, owned);
        assert_eq!(rows.batch(&[2, 0]), owned.batch(&[2, 0]));
        let e = lend(
            chunk.offsets.clone(),
            vec![0, 3, 2, 1, 3],
            chunk.values.clone(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t: row 2: column 1 does not ascend after column 2"
        );
        let e = lend(
            chunk.offsets.clone(),
            vec![0, 3, 1, 2, 4],
            chunk.values.clone(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("column 4 is not below the 4 features"),
            "{e}"
        );
        let e = lend(
            vec![0, 9, 2, 5],
            chunk.indices.clone(),
            chunk.values.clone(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("pass the 5 non-zeros"), "{e}");
        let e = lend(chunk.offsets.clone(), chunk.indices.clone(), vec![1.0; 4]).unwrap_err();
        assert!(e.to_string().contains("4 values"), "{e}");
    }
}
