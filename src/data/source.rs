//! Data as a source of row chunks: the only way rows reach a trainer.
//!
//! A [`RowSource`] yields [`Chunk`]s of consecutive rows, each checked once, here, by [`check_rows`]: X and y of the
//! same length, every feature finite, every label below the class count. A backend either copies a whole source into
//! its own memory ([`crate::train::Backend::hold`]: resident data, what every backend does today) or is handed the
//! chunks batch by batch as host rows (a streaming reader's data, and the full-batch objective of
//! [`crate::train::objective`]). [`InMemory`] is the source for data already in RAM; it shares its rows through an
//! [`Arc`] so that a CPU backend (and the `--check-every` shadow) can hold them without a copy.

use std::sync::Arc;

use ndarray::{Array2, ArrayView2, CowArray, Ix2};

use crate::error::{Error, Position, Result};

/// Most classes a data set may have.
pub const MAX_CLASSES: usize = 65_536;

/// Checks a block of rows: as many labels as rows, every feature finite, every label below `k`. `first_row` is the
/// block's first row in its source, so positions in errors are the source's. Written once; every path into a trainer
/// goes through it.
pub fn check_rows(
    name: &str,
    x: ArrayView2<f32>,
    y: &[u32],
    k: usize,
    first_row: u64,
) -> Result<()> {
    if y.len() != x.nrows() {
        return Err(Error::shape(
            format!("{name}: labels"),
            format!("{} (one per row)", x.nrows()),
            y.len(),
        ));
    }
    if !(2..=MAX_CLASSES).contains(&k) {
        return Err(Error::param("classes", format!("in 2..={MAX_CLASSES}"), k));
    }
    if let Some(i) = y.iter().position(|&c| c as usize >= k) {
        return Err(Error::input_at(
            name,
            Position::Row {
                row: first_row + i as u64,
                column: None,
            },
            format!("label {} is not below the {k} classes", y[i]),
        ));
    }
    for (r, row) in x.outer_iter().enumerate() {
        if let Some(c) = row.iter().position(|v| !v.is_finite()) {
            let what = if row[c].is_nan() { "NaN" } else { "infinite" };
            return Err(Error::input_at(
                name,
                Position::Row {
                    row: first_row + r as u64,
                    column: Some(c as u64),
                },
                format!("feature is {what}"),
            ));
        }
    }
    Ok(())
}

/// Consecutive rows of a source with their class indices, checked by [`check_rows`] when made.
#[derive(Debug, Clone)]
pub struct Chunk<'a> {
    x: CowArray<'a, f32, Ix2>,
    y: std::borrow::Cow<'a, [u32]>,
    first_row: u64,
}

impl<'a> Chunk<'a> {
    /// Borrowed rows; `first_row` is where they start in their source.
    pub fn new(
        name: &str,
        x: ArrayView2<'a, f32>,
        y: &'a [u32],
        k: usize,
        first_row: u64,
    ) -> Result<Self> {
        check_rows(name, x, y, k, first_row)?;
        Ok(Chunk {
            x: CowArray::from(x),
            y: std::borrow::Cow::Borrowed(y),
            first_row,
        })
    }

    /// Owned rows (what a reader that decodes a file produces).
    pub fn owned(
        name: &str,
        x: Array2<f32>,
        y: Vec<u32>,
        k: usize,
        first_row: u64,
    ) -> Result<Self> {
        check_rows(name, x.view(), &y, k, first_row)?;
        Ok(Chunk {
            x: CowArray::from(x),
            y: std::borrow::Cow::Owned(y),
            first_row,
        })
    }

    /// Owned rows taken from rows that were checked already (a subset of checked chunks; values a reader checked
    /// as it decoded them, with labels checked against `k` when the file was opened): no second pass.
    pub(crate) fn from_checked(x: Array2<f32>, y: Vec<u32>, first_row: u64) -> Self {
        debug_assert_eq!(x.nrows(), y.len());
        Chunk {
            x: CowArray::from(x),
            y: std::borrow::Cow::Owned(y),
            first_row,
        }
    }

    /// The features, [rows, d].
    pub fn x(&self) -> ArrayView2<'_, f32> {
        self.x.view()
    }

    /// The class indices.
    pub fn y(&self) -> &[u32] {
        &self.y
    }

    /// Rows in the chunk.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when the chunk has no rows.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Where the chunk starts in its source.
    pub fn first_row(&self) -> u64 {
        self.first_row
    }

    /// The same rows, counted from `first_row` (a source over part of another numbers its own rows).
    pub(crate) fn starting_at(mut self, first_row: u64) -> Self {
        self.first_row = first_row;
        self
    }

    /// The chunk with rows it owns (a copy when it borrows them), free of the source it came from: what a reader
    /// thread hands to the trainer.
    pub fn into_owned(self) -> Chunk<'static> {
        Chunk {
            x: CowArray::from(self.x.into_owned()),
            y: std::borrow::Cow::Owned(self.y.into_owned()),
            first_row: self.first_row,
        }
    }

    /// The rows `start..end` of the chunk, as a chunk (already checked).
    pub fn slice(&self, start: usize, end: usize) -> Chunk<'_> {
        Chunk {
            x: CowArray::from(self.x.slice(ndarray::s![start..end, ..])),
            y: std::borrow::Cow::Borrowed(&self.y[start..end]),
            first_row: self.first_row + start as u64,
        }
    }
}

/// Where rows come from: [`InMemory`] for rows in RAM, and the streaming readers ([`super::NpyRows`], …) that read a
/// file a chunk at a time. `Send`, so that a reader thread can fill the next chunk while the trainer computes on the
/// current one (see [`crate::train::fit`]).
pub trait RowSource: Send {
    /// A name for messages: the file, or `<training rows>`.
    fn name(&self) -> &str;
    /// Features per row.
    fn features(&self) -> usize;
    /// Class count (labels are below it).
    fn classes(&self) -> usize;
    /// Rows in the source, when known before reading it.
    fn rows(&self) -> Option<u64>;
    /// Starts again from the first row.
    fn rewind(&mut self) -> Result<()>;
    /// The next at most `max_rows` rows (at least one), or None at the end.
    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk<'_>>>;
    /// Positions the source so that the next chunk starts at `row`; false (and no change) when the source can only
    /// be read in order. Streaming training shuffles the order of chunks only where the source can seek.
    fn seek(&mut self, _row: u64) -> Result<bool> {
        Ok(false)
    }
    /// All the rows as one shared host array, when the source already holds them in memory: a CPU backend then
    /// holds them without a copy.
    fn shared(&self) -> Option<Arc<HostRows>> {
        None
    }
    /// Reads the next `y.len()` rows straight into `x` (`y.len()` × features, row-major) and their labels into `y`,
    /// checked; false (and nothing read) when the source has no such path, or fewer rows are left. What lets a
    /// reader fill a held array without a copy.
    fn fill(&mut self, _x: &mut [f32], _y: &mut [u32]) -> Result<bool> {
        Ok(false)
    }
    /// True when the rows are sparse (LIBSVM): backends hold them as CSR, read through [`RowSource::next_sparse`].
    fn is_sparse(&self) -> bool {
        false
    }
    /// The next at most `max_rows` rows as CSR, or None at the end; by default the non-zeros of the next dense chunk.
    fn next_sparse(&mut self, max_rows: usize) -> Result<Option<super::SparseChunk>> {
        Ok(self
            .next_chunk(max_rows)?
            .map(|c| super::SparseChunk::from_dense(c.x(), c.y(), c.first_row())))
    }
    /// The rows as one shared sparse set, when the source already holds them so.
    fn shared_sparse(&self) -> Option<Arc<super::SparseRows>> {
        None
    }
    /// Bytes the rows take held in memory, when known: f32 features and a label a row, or for sparse rows 8 bytes a
    /// non-zero and 12 a row.
    fn held_bytes(&self) -> Option<u64> {
        self.rows()?.checked_mul(held_row_bytes(self.features()))
    }

    /// A weight per row (`--sample-weight`), in the source's row order, when its rows carry weights.
    fn sample_weights(&self) -> Option<Arc<[f32]>> {
        None
    }
}

/// Features held by someone else and lent to the rows without a copy: `n × d` values, row-major, that stay where
/// they are and unchanged while the rows live (a NumPy array the Python package trains on in place).
pub type SharedValues = Arc<dyn AsRef<[f32]> + Send + Sync>;

/// The features of held rows: an array of their own, or values lent to them.
#[derive(Clone)]
enum Features {
    Owned(Array2<f32>),
    Shared {
        values: SharedValues,
        rows: usize,
        cols: usize,
    },
}

impl Features {
    fn view(&self) -> ArrayView2<'_, f32> {
        match self {
            Features::Owned(x) => x.view(),
            Features::Shared { values, rows, cols } => {
                ArrayView2::from_shape((*rows, *cols), (**values).as_ref())
                    .expect("shared features were checked against their shape when lent")
            }
        }
    }
}

impl std::fmt::Debug for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = matches!(self, Features::Shared { .. });
        f.debug_struct("Features")
            .field("shape", &self.view().dim())
            .field("shared", &shared)
            .finish()
    }
}

impl PartialEq for Features {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

/// The checks of rows taken to be held, owned or lent: [`check_rows`], and at least one row and one feature.
fn check_held(name: &str, x: ArrayView2<f32>, y: &[u32], k: usize) -> Result<()> {
    check_rows(name, x, y, k, 0)?;
    if x.ncols() == 0 || x.nrows() == 0 {
        return Err(Error::input(name, format!("no data: shape {:?}", x.dim())));
    }
    Ok(())
}

/// Rows held in host memory: checked features, labels and class count.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRows {
    name: String,
    x: Features,
    y: Vec<u32>,
    k: usize,
}

impl HostRows {
    /// Checks and takes the rows.
    pub fn new(name: impl Into<String>, x: Array2<f32>, y: Vec<u32>, k: usize) -> Result<Self> {
        let name = name.into();
        check_held(&name, x.view(), &y, k)?;
        Ok(HostRows {
            name,
            x: Features::Owned(if x.is_standard_layout() {
                x
            } else {
                x.as_standard_layout().into_owned()
            }),
            y,
            k,
        })
    }

    /// Checks and takes rows whose features are lent ([`SharedValues`]): `values` holds `y.len()` rows of `d`
    /// features, row-major, read where they are, never copied.
    pub fn lent(
        name: impl Into<String>,
        values: SharedValues,
        d: usize,
        y: Vec<u32>,
        k: usize,
    ) -> Result<Self> {
        let name = name.into();
        let n = y.len();
        let len = (*values).as_ref().len();
        if n.checked_mul(d) != Some(len) {
            return Err(Error::shape(
                &name,
                format!("{n} rows × {d} features"),
                format!("{len} values"),
            ));
        }
        let x = ArrayView2::from_shape((n, d), (*values).as_ref())
            .map_err(|e| Error::Internal(format!("{name}: {e}")))?;
        check_held(&name, x, &y, k)?;
        Ok(HostRows {
            name,
            x: Features::Shared {
                values,
                rows: n,
                cols: d,
            },
            y,
            k,
        })
    }

    /// True when the features are lent ([`HostRows::lent`]), not a copy.
    pub fn is_lent(&self) -> bool {
        matches!(self.x, Features::Shared { .. })
    }

    /// No rows of `d` features and `k` classes: a process's shard that holds none of a data set's rows (a data set
    /// read from a file with no rows is refused by [`HostRows::new`]).
    pub fn empty(name: impl Into<String>, d: usize, k: usize) -> Self {
        HostRows {
            name: name.into(),
            x: Features::Owned(Array2::zeros((0, d))),
            y: Vec::new(),
            k,
        }
    }

    /// The rows of a chunk, which were checked when it was made (no second pass over them).
    pub fn from_chunk(name: &str, chunk: Chunk<'static>, k: usize) -> Self {
        let x = chunk.x.into_owned();
        let x = if x.is_standard_layout() {
            x
        } else {
            x.as_standard_layout().into_owned()
        };
        HostRows {
            name: name.to_string(),
            x: Features::Owned(x),
            y: chunk.y.into_owned(),
            k,
        }
    }

    /// The rows `rows` (indices into these rows, which start at row `first_row` of their source) as an owned chunk.
    pub fn chunk<'x>(&self, first_row: u64, rows: &[u32]) -> Chunk<'x> {
        let idx: Vec<usize> = rows.iter().map(|&i| i as usize).collect();
        Chunk {
            x: CowArray::from(self.x.view().select(ndarray::Axis(0), &idx)),
            y: std::borrow::Cow::Owned(idx.iter().map(|&i| self.y[i]).collect()),
            first_row,
        }
    }

    /// Reads a whole source into host memory.
    pub fn read(source: &mut dyn RowSource) -> Result<Arc<HostRows>> {
        if let Some(rows) = source.shared() {
            return Ok(rows);
        }
        source.rewind()?;
        let (d, k) = (source.features(), source.classes());
        let name = source.name().to_string();
        let mut x: Vec<f32> = Vec::new();
        let mut y: Vec<u32> = Vec::new();
        if let Some(n) = source.rows() {
            let values = n.saturating_mul(d as u64);
            // Straight into the array when the reader can: one copy, from the file.
            let (n, values) = (n as usize, values as usize);
            let help = Some("a --memory-budget below it streams the rows when training");
            let mut x = crate::memory::zeroed::<f32>(&format!("{name} as f32"), values, help)?;
            let mut y = crate::memory::zeroed::<u32>(&format!("the labels of {name}"), n, help)?;
            let piece = ((16usize << 20) / (4 * d.max(1))).max(1);
            let mut at = 0;
            while at < n {
                let m = piece.min(n - at);
                if !source.fill(&mut x[at * d..(at + m) * d], &mut y[at..at + m])? {
                    break;
                }
                at += m;
            }
            if at == n && n > 0 {
                let x = Array2::from_shape_vec((n, d), x)
                    .map_err(|e| Error::Internal(format!("{name}: {e}")))?;
                return Ok(Arc::new(HostRows {
                    name,
                    x: Features::Owned(x),
                    y,
                    k,
                }));
            }
            source.rewind()?;
        }
        if let Some(n) = source.rows() {
            x.reserve_exact((n as usize).saturating_mul(d));
            y.reserve_exact(n as usize);
        }
        // Chunks of about 8 MiB: large enough for long reads, small enough to reuse the allocator's memory.
        let rows = ((8usize << 20) / (4 * d.max(1))).max(1);
        while let Some(c) = source.next_chunk(rows)? {
            match c.x().as_slice() {
                Some(values) => x.extend_from_slice(values),
                None => x.extend(c.x().iter()),
            }
            y.extend_from_slice(c.y());
        }
        let n = y.len();
        if n == 0 {
            return Err(Error::input(&name, "no rows"));
        }
        let x = Array2::from_shape_vec((n, d), x)
            .map_err(|e| Error::Internal(format!("{name}: chunks of the wrong width: {e}")))?;
        // Every chunk was checked when it was made.
        Ok(Arc::new(HostRows {
            name,
            x: Features::Owned(x),
            y,
            k,
        }))
    }

    /// The features and labels, taken out (lent features copied).
    pub fn into_parts(self) -> (Array2<f32>, Vec<u32>) {
        match self.x {
            Features::Owned(x) => (x, self.y),
            shared => (shared.view().to_owned(), self.y),
        }
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Features, [n, d], standard layout.
    pub fn x(&self) -> ArrayView2<'_, f32> {
        self.x.view()
    }

    /// Class indices.
    pub fn y(&self) -> &[u32] {
        &self.y
    }

    /// Class count.
    pub fn classes(&self) -> usize {
        self.k
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Always false: empty data is refused at construction.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Features per row.
    pub fn features(&self) -> usize {
        self.x.view().ncols()
    }
}

/// A [`RowSource`] over rows in memory.
#[derive(Debug, Clone)]
pub struct InMemory {
    rows: Arc<HostRows>,
    pos: usize,
}

impl InMemory {
    /// A source over `rows`.
    pub fn new(rows: Arc<HostRows>) -> Self {
        InMemory { rows, pos: 0 }
    }

    /// Checks and wraps `x` and `y`.
    pub fn from_arrays(
        name: impl Into<String>,
        x: Array2<f32>,
        y: Vec<u32>,
        k: usize,
    ) -> Result<Self> {
        Ok(InMemory::new(Arc::new(HostRows::new(name, x, y, k)?)))
    }

    /// The rows.
    pub fn rows_ref(&self) -> &Arc<HostRows> {
        &self.rows
    }
}

impl RowSource for InMemory {
    fn name(&self) -> &str {
        self.rows.name()
    }

    fn features(&self) -> usize {
        self.rows.features()
    }

    fn classes(&self) -> usize {
        self.rows.classes()
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

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk<'_>>> {
        let n = self.rows.len();
        if self.pos >= n {
            return Ok(None);
        }
        let start = self.pos;
        let end = (start + max_rows.max(1)).min(n);
        self.pos = end;
        // Already checked when the rows were taken: no second pass over them.
        Ok(Some(Chunk {
            x: CowArray::from(self.rows.x().slice_move(ndarray::s![start..end, ..])),
            y: std::borrow::Cow::Borrowed(&self.rows.y[start..end]),
            first_row: start as u64,
        }))
    }

    fn shared(&self) -> Option<Arc<HostRows>> {
        Some(self.rows.clone())
    }
}

/// Bytes one row takes when held: its features as f32 and its label.
pub fn held_row_bytes(d: usize) -> u64 {
    d as u64 * 4 + 4
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lent features are read where they are — every chunk of the source points into the lender's memory — equal the
    /// same rows owned, and are checked as owned ones are.
    #[test]
    fn lent_features_are_read_in_place_and_checked() {
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let lent: SharedValues = Arc::new(values.clone());
        let start = (*lent).as_ref().as_ptr();
        let rows = HostRows::lent("t", lent.clone(), 3, vec![0, 1, 0, 1], 2).unwrap();
        assert!(rows.is_lent());
        assert_eq!(rows.x().as_ptr(), start);
        let owned = Array2::from_shape_vec((4, 3), values.clone()).unwrap();
        assert_eq!(
            rows,
            HostRows::new("t", owned, vec![0, 1, 0, 1], 2).unwrap()
        );
        let mut source = InMemory::new(Arc::new(rows));
        let c = source.next_chunk(2).unwrap().unwrap();
        assert_eq!(c.x().as_ptr(), start);
        let c = source.next_chunk(2).unwrap().unwrap();
        assert_eq!(c.x().as_ptr(), start.wrapping_add(6));
        let e = HostRows::lent("t", lent.clone(), 5, vec![0, 1, 0, 1], 2).unwrap_err();
        assert!(e.to_string().contains("12 values"), "{e}");
        let mut bad = values;
        bad[4] = f32::NAN;
        let e = HostRows::lent("t", Arc::new(bad), 3, vec![0, 1, 0, 1], 2).unwrap_err();
        assert!(e.to_string().contains("row 1"), "{e}");
        let e = HostRows::lent("t", lent, 3, vec![0, 1, 2, 1], 2).unwrap_err();
        assert!(e.to_string().contains("label 2"), "{e}");
    }

    #[test]
    fn labels_out_of_range_and_non_finite_features_are_refused_with_their_row() {
        let x = Array2::from_shape_vec((3, 2), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let e = check_rows("t", x.view(), &[0, 1, 3], 3, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t: row 12: label 3 is not below the 3 classes"
        );
        let mut bad = x.clone();
        bad[[1, 1]] = f32::INFINITY;
        let e = check_rows("t", bad.view(), &[0, 1, 2], 3, 0).unwrap_err();
        assert_eq!(e.to_string(), "t: row 1, column 1: feature is infinite");
        let e = check_rows("t", x.view(), &[0, 1], 3, 0).unwrap_err();
        assert!(
            e.to_string().contains("expected 3 (one per row), found 2"),
            "{e}"
        );
        assert!(
            check_rows("t", x.view(), &[0, 0, 0], 1, 0).is_err(),
            "k = 1"
        );
    }

    #[test]
    fn in_memory_yields_every_row_once_in_chunks_and_rewinds() {
        let x = Array2::from_shape_fn((10, 3), |(i, j)| (i * 3 + j) as f32);
        let y: Vec<u32> = (0..10).map(|i| i % 2).collect();
        let mut s = InMemory::from_arrays("m", x.clone(), y.clone(), 2).unwrap();
        for _ in 0..2 {
            let mut seen = Vec::new();
            let mut firsts = Vec::new();
            while let Some(c) = s.next_chunk(4).unwrap() {
                firsts.push(c.first_row());
                seen.extend(c.x().iter().copied());
            }
            assert_eq!(firsts, [0, 4, 8]);
            assert_eq!(seen, x.iter().copied().collect::<Vec<_>>());
            s.rewind().unwrap();
        }
        let read = HostRows::read(&mut s).unwrap();
        assert_eq!(read.y(), &y[..]);
    }
}
