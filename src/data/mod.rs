//! Data sets: loaders (CSV, NPY, the embedded digits, a synthetic generator), label handling, the held-out split
//! and standardisation. Every loader checks what it reads and names the file and position of the first problem.

mod csv;
mod idx;
mod libsvm;
mod npy;
mod source;
mod sparse;
mod stream;
mod synthetic;
mod weights;

pub use self::csv::{csv_columns, parse_csv, read_csv, CsvRows, CsvTable};
pub use self::idx::{is_gzip, looks_like_idx, read_idx_labels, IdxRows};
pub use self::libsvm::{
    looks_like_libsvm, write_libsvm_rows, LibsvmOptions, LibsvmPart, LibsvmRows, SparseChunk,
};
pub use self::npy::{
    npy_bytes, parse_npy_features, parse_npy_labels, read_npy_features, read_npy_labels,
    write_npy_features, write_npy_labels, write_npy_source, NpyRows,
};
pub use self::source::{
    check_rows, held_row_bytes, Chunk, HostRows, InMemory, RowSource, SharedValues, MAX_CLASSES,
};
pub use self::sparse::{SharedIndices, SparseBatch, SparseInMemory, SparseRows};
pub use self::stream::{held_out, shard_range, Shard, Side, Split, Standardized};
pub use self::synthetic::{synthetic, SparseSynthetic, SyntheticRows};
pub use self::weights::{read_sample_weights, Weighted};

use std::io::Read;
use std::path::Path;

use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Position, Result};
use crate::rng::SplitMix64;

/// A data file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated text with a label column.
    Csv,
    /// NumPy's array format (features; labels in a second file).
    Npy,
    /// LIBSVM / svmlight sparse text.
    Libsvm,
    /// MNIST's IDX (features; labels in a second file), plain or gzipped.
    Idx,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Csv => "CSV",
            Format::Npy => "NPY",
            Format::Libsvm => "LIBSVM",
            Format::Idx => "IDX",
        })
    }
}

/// The format of `path`, from its first bytes (the NPY, IDX and gzip magics, LIBSVM's `label idx:value` lines) and
/// then its extension (.npy, .csv, .svm / .libsvm / .svmlight, -idxN-ubyte); CSV when nothing else fits.
pub fn detect_format(path: &Path) -> Result<Format> {
    let head = libsvm::head(path, 4096)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if head.starts_with(b"\x93NUMPY") || ext == "npy" {
        return Ok(Format::Npy);
    }
    if looks_like_idx(&head) || name.contains("idx") && (is_gzip(&head) || name.contains("ubyte")) {
        return Ok(Format::Idx);
    }
    if is_gzip(&head) {
        return Err(Error::input(
            path,
            "is gzipped: only IDX files are read compressed (decompress it, or pass --format idx)",
        ));
    }
    if matches!(ext.as_str(), "svm" | "libsvm" | "svmlight") || looks_like_libsvm(&head) {
        return Ok(Format::Libsvm);
    }
    Ok(Format::Csv)
}

/// The classes of a text file whose rows carry their labels (CSV, LIBSVM), gathered in the pass that checks it:
/// each label must be one of the `known` classes (a held-out file's), or else is collected (at most
/// [`MAX_CLASSES`]), and at the end the classes are numbered in [`sort_labels`] order.
#[derive(Debug)]
pub(crate) struct LabelSet<'a> {
    known: Option<&'a [String]>,
    /// Each class seen, by its [`label_key`], with the label as first written.
    seen: std::collections::HashMap<String, String>,
}

impl<'a> LabelSet<'a> {
    pub(crate) fn new(known: Option<&'a [String]>) -> Self {
        LabelSet {
            known,
            seen: std::collections::HashMap::new(),
        }
    }

    /// Takes the label of the row at `line`.
    pub(crate) fn see(&mut self, path: &Path, line: u64, label: &str) -> Result<()> {
        match self.known {
            Some(known) => {
                let key = label_key(label);
                if !known.iter().any(|k| label_key(k) == key) {
                    labels_to_classes(path, &[label.to_string()], &[line], known, "training")?;
                }
            }
            None => {
                let key = label_key(label);
                if !self.seen.contains_key(key.as_ref()) {
                    if self.seen.len() == MAX_CLASSES {
                        return Err(Error::input_at(
                            path,
                            Position::Line(line),
                            format!("more than {MAX_CLASSES} distinct labels"),
                        ));
                    }
                    self.seen.insert(key.into_owned(), label.to_string());
                }
            }
        }
        Ok(())
    }

    /// Each class seen, as first written (none when the classes are known), in no order.
    pub(crate) fn first_written(&self) -> Vec<String> {
        self.seen.values().cloned().collect()
    }

    /// The classes in index order and each one's index by its [`label_key`]; at least 2.
    pub(crate) fn finish(
        self,
        path: &Path,
    ) -> Result<(Vec<String>, std::collections::HashMap<String, u32>)> {
        let classes = match self.known {
            Some(k) => k.to_vec(),
            None => {
                let mut c: Vec<String> = self.seen.into_values().collect();
                sort_labels(&mut c);
                c
            }
        };
        if classes.len() < 2 {
            return Err(Error::input(
                path,
                format!("needs at least 2 classes, found {}", classes.len()),
            ));
        }
        let index = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (label_key(c).into_owned(), i as u32))
            .collect();
        Ok((classes, index))
    }
}

/// Refuses a labels file `y_path` whose `labels` are not one per row of the `rows` rows of `x_path`.
pub fn check_label_count(x_path: &Path, y_path: &Path, labels: usize, rows: usize) -> Result<()> {
    if labels != rows {
        return Err(Error::input(
            y_path,
            format!(
                "has {labels} labels but {} has {rows} rows",
                x_path.display()
            ),
        ));
    }
    Ok(())
}

/// The class count of the class indices `y` (from `y_path`) of the `rows` rows of `x_path`: `classes` when given,
/// else the largest index + 1; at least 2. What every reader of separate features and labels files checks.
pub fn label_classes(
    x_path: &Path,
    y_path: &Path,
    y: &[u32],
    rows: usize,
    classes: Option<usize>,
) -> Result<usize> {
    check_label_count(x_path, y_path, y.len(), rows)?;
    let k = classes.unwrap_or_else(|| y.iter().max().map_or(0, |&m| m as usize + 1));
    if k < 2 {
        return Err(Error::input(
            y_path,
            format!("needs at least 2 classes, found {k}"),
        ));
    }
    Ok(k)
}

/// Features, class indices and class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// [n, d] features.
    pub x: Array2<f32>,
    /// [n] class indices into `classes`.
    pub y: Vec<u32>,
    /// Class names in index order.
    pub classes: Vec<String>,
    /// Where the data came from (a file name, "digits", "synthetic …").
    pub source: String,
}

impl Dataset {
    /// Rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Features per row.
    pub fn features(&self) -> usize {
        self.x.ncols()
    }

    /// The data as a checked [`RowSource`] (moves the rows; no copy).
    pub fn into_source(self) -> Result<InMemory> {
        let k = self.classes.len();
        InMemory::from_arrays(self.source, self.x, self.y, k)
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        Dataset {
            x: self.x.select(Axis(0), idx),
            y: idx.iter().map(|&i| self.y[i]).collect(),
            classes: self.classes.clone(),
            source: self.source.clone(),
        }
    }
}

/// The order classes are numbered in: numerically when every label is a number, otherwise as strings.
pub fn sort_labels(labels: &mut [String]) {
    let numeric: Option<Vec<f64>> = labels
        .iter()
        .map(|l| l.trim().parse::<f64>().ok())
        .collect();
    match numeric {
        Some(_) => labels.sort_by(|a, b| {
            let (x, y) = (
                a.trim().parse::<f64>().unwrap_or(0.0),
                b.trim().parse::<f64>().unwrap_or(0.0),
            );
            x.total_cmp(&y).then_with(|| a.cmp(b))
        }),
        None => labels.sort(),
    }
}

/// A piece of the user's file as an error message shows it: quoted, and when long (a 10 MB cell gave a 10 MB line)
/// its first 80 characters and its length, so that an error stays one short line.
pub fn shown(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

/// What a label is compared by: a label that is a number is that number (`+1`, `1`, `1.0` and `1e0` are one class,
/// as SVM-light and LIBSVM define the label as a number), in its shortest form; any other label is its text.
pub fn label_key(label: &str) -> std::borrow::Cow<'_, str> {
    match label.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => std::borrow::Cow::Owned(format!("{}", v + 0.0)),
        _ => std::borrow::Cow::Borrowed(label),
    }
}

/// The classes present in `labels` (each named as first written; labels that are the same number are one class),
/// sorted (see [`sort_labels`]), and each label's index.
pub fn encode_labels(path: &Path, labels: &[String]) -> Result<(Vec<String>, Vec<u32>)> {
    let mut first: std::collections::HashMap<std::borrow::Cow<'_, str>, &str> =
        std::collections::HashMap::new();
    for l in labels {
        first.entry(label_key(l)).or_insert(l.as_str());
    }
    let mut classes: Vec<String> = first.into_values().map(str::to_string).collect();
    sort_labels(&mut classes);
    if classes.len() > MAX_CLASSES {
        return Err(Error::input(
            path,
            format!(
                "{} distinct labels; at most {MAX_CLASSES} classes are supported",
                classes.len()
            ),
        ));
    }
    let index: std::collections::HashMap<std::borrow::Cow<'_, str>, u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (label_key(c), i as u32))
        .collect();
    Ok((
        classes.clone(),
        labels.iter().map(|l| index[&label_key(l)]).collect(),
    ))
}

/// Maps labels to the indices of known `classes`; a label outside them is an error naming its line.
pub fn labels_to_classes(
    path: &Path,
    labels: &[String],
    lines: &[u64],
    classes: &[String],
    what: &str,
) -> Result<Vec<u32>> {
    let index: std::collections::HashMap<std::borrow::Cow<'_, str>, u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (label_key(c), i as u32))
        .collect();
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            index.get(&label_key(l)).copied().ok_or_else(|| {
                let shown: Vec<&str> = classes.iter().take(12).map(String::as_str).collect();
                let more = if classes.len() > 12 { ", …" } else { "" };
                Error::input_at(
                    path,
                    Position::Line(lines.get(i).copied().unwrap_or(i as u64 + 1)),
                    format!(
                        "label {} is not one of the {what} classes [{}{more}]",
                        self::shown(l),
                        shown.join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// The embedded UCI digits (1,797 × 64, classes "0".."9").
pub fn digits() -> Result<Dataset> {
    static GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::input("<embedded digits.csv.gz>", e.to_string()))?;
    let table = parse_csv(Path::new("<embedded digits>"), text.as_bytes(), Some(-1))?;
    let (classes, y) = encode_labels(Path::new("<embedded digits>"), &table.labels)?;
    Ok(Dataset {
        x: table.x,
        y,
        classes,
        source: "digits (embedded, UCI optdigits)".into(),
    })
}

/// The rows [`split_holdout`] keeps for training and holds out, each ascending; None when `fraction` is 0.
pub fn holdout_indices(
    n: usize,
    fraction: f64,
    seed: u64,
) -> Result<Option<(Vec<usize>, Vec<usize>)>> {
    if fraction <= 0.0 {
        return Ok(None);
    }
    let n_val = ((n as f64) * fraction).round().max(1.0) as usize;
    if n_val >= n {
        return Err(Error::param(
            "--val-split",
            format!("a fraction that leaves training rows among the {n}"),
            fraction,
        ));
    }
    let mut idx: Vec<usize> = (0..n).collect();
    SplitMix64::derive(seed, 0x5B17).shuffle(&mut idx);
    let mut val_idx = idx[..n_val].to_vec();
    let mut train_idx = idx[n_val..].to_vec();
    val_idx.sort_unstable();
    train_idx.sort_unstable();
    Ok(Some((train_idx, val_idx)))
}

/// Splits off a seeded random `fraction` of the rows as a held-out set; the training rows keep their order. Takes
/// the data set: the held-out rows are copied out and the training rows moved up in place, so the split costs the
/// held-out rows' memory and no more.
pub fn split_holdout(ds: Dataset, fraction: f64, seed: u64) -> Result<(Dataset, Option<Dataset>)> {
    let Some((train_idx, val_idx)) = holdout_indices(ds.len(), fraction, seed)? else {
        return Ok((ds, None));
    };
    let held = ds.select(&val_idx);
    let Dataset {
        x,
        y,
        classes,
        source,
    } = ds;
    let d = x.ncols();
    let x = if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    };
    let (mut values, _) = x.into_raw_vec_and_offset();
    // Each kept row moves to a position at or before its own: in ascending order nothing is overwritten early.
    for (to, &from) in train_idx.iter().enumerate() {
        if to != from {
            values.copy_within(from * d..(from + 1) * d, to * d);
        }
    }
    values.truncate(train_idx.len() * d);
    values.shrink_to_fit();
    let train = Dataset {
        x: Array2::from_shape_vec((train_idx.len(), d), values)
            .map_err(|e| Error::Internal(format!("split: {e}")))?,
        y: train_idx.iter().map(|&i| y[i]).collect(),
        classes,
        source,
    };
    Ok((train, Some(held)))
}

/// Per-feature mean and standard deviation of the training rows; applied as (x − mean) / std.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Feature means.
    pub mean: Vec<f32>,
    /// Feature standard deviations (1 where a feature is constant).
    pub std: Vec<f32>,
}

/// Rows per block of the standardisation statistics: each block's column means and squared deviations are
/// computed in f64 and merged into the running ones (Chan et al.'s pairwise update), so that one streaming pass gives
/// the statistics an in-memory pass gives, bit for bit, whatever the chunking of the source.
const STATS_BLOCK: usize = 4096;

/// Column means and sums of squared deviations, merged block by block.
#[derive(Debug, Clone)]
struct Moments {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    fn new(d: usize) -> Self {
        Moments {
            n: 0.0,
            mean: vec![0.0; d],
            m2: vec![0.0; d],
        }
    }

    /// Merges one block of rows.
    fn add(&mut self, x: ArrayView2<f32>) {
        let nb = x.nrows() as f64;
        if nb == 0.0 {
            return;
        }
        let d = self.mean.len();
        let mut mean = vec![0f64; d];
        for row in x.outer_iter() {
            for (m, &v) in mean.iter_mut().zip(row.iter()) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= nb);
        let mut m2 = vec![0f64; d];
        for row in x.outer_iter() {
            for ((s, &v), m) in m2.iter_mut().zip(row.iter()).zip(&mean) {
                let e = f64::from(v) - m;
                *s += e * e;
            }
        }
        let n = self.n + nb;
        for j in 0..d {
            let delta = mean[j] - self.mean[j];
            self.mean[j] += delta * nb / n;
            self.m2[j] += m2[j] + delta * delta * self.n * nb / n;
        }
        self.n = n;
    }

    /// Merges another part's moments (Chan et al.'s pairwise update, as [`Moments::add`] merges a block); into no
    /// rows, the part as it is.
    fn merge(&mut self, part: &Moments) {
        if self.n == 0.0 {
            self.clone_from(part);
            return;
        }
        if part.n == 0.0 {
            return;
        }
        let n = self.n + part.n;
        for j in 0..self.mean.len() {
            let delta = part.mean[j] - self.mean[j];
            self.mean[j] += delta * part.n / n;
            self.m2[j] += part.m2[j] + delta * delta * self.n * part.n / n;
        }
        self.n = n;
    }

    /// The count, the means and the sums of squared deviations, in one vector.
    fn to_flat(&self) -> Vec<f64> {
        std::iter::once(self.n)
            .chain(self.mean.iter().copied())
            .chain(self.m2.iter().copied())
            .collect()
    }

    fn from_flat(flat: &[f64], d: usize) -> Result<Self> {
        if flat.len() != 1 + 2 * d {
            return Err(Error::shape("column moments", 1 + 2 * d, flat.len()));
        }
        Ok(Moments {
            n: flat[0],
            mean: flat[1..=d].to_vec(),
            m2: flat[1 + d..].to_vec(),
        })
    }

    fn finish(&self) -> Standardizer {
        let n = self.n.max(1.0);
        Standardizer {
            mean: self.mean.iter().map(|&m| m as f32).collect(),
            std: self
                .m2
                .iter()
                .map(|&s| {
                    let v = s / n;
                    if v > 0.0 {
                        v.sqrt() as f32
                    } else {
                        1.0
                    }
                })
                .collect(),
        }
    }
}

impl Standardizer {
    /// Statistics of `x`'s columns, accumulated in f64 a block of rows at a time (no copy of `x`).
    pub fn fit(x: ArrayView2<f32>) -> Self {
        let mut m = Moments::new(x.ncols());
        for block in x.axis_chunks_iter(Axis(0), STATS_BLOCK) {
            m.add(block);
        }
        m.finish()
    }

    /// The statistics of every row of `source`, in one streaming pass: equal to [`Standardizer::fit`] on the same
    /// rows held in memory.
    pub fn fit_source(source: &mut dyn RowSource) -> Result<Self> {
        let mut m = Moments::new(source.features());
        source.rewind()?;
        while let Some(chunk) = source.next_chunk(STATS_BLOCK)? {
            // Sources give the rows asked for but at their end, so the blocks are those of `fit`.
            m.add(chunk.x());
        }
        Ok(m.finish())
    }

    /// The column moments of every row of `source` (the count, the means, the sums of squared deviations) in one
    /// vector of 1 + 2·features values: what processes holding shards of one data set exchange, to standardise with
    /// the whole set's statistics ([`Standardizer::merge`]).
    pub fn moments(source: &mut dyn RowSource) -> Result<Vec<f64>> {
        let mut m = Moments::new(source.features());
        source.rewind()?;
        while let Some(chunk) = source.next_chunk(STATS_BLOCK)? {
            m.add(chunk.x());
        }
        Ok(m.to_flat())
    }

    /// The statistics of the rows of several parts of `d` features, from each part's [`Standardizer::moments`],
    /// merged in the parts' order: [`Standardizer::fit_source`] over all their rows but for the order of additions,
    /// and equal to it, bit for bit, for one part.
    pub fn merge<'m>(parts: impl IntoIterator<Item = &'m [f64]>, d: usize) -> Result<Self> {
        let mut all = Moments::new(d);
        for part in parts {
            all.merge(&Moments::from_flat(part, d)?);
        }
        Ok(all.finish())
    }

    /// Standardises `x` in place.
    pub fn apply(&self, x: &mut Array2<f32>) {
        for mut row in x.outer_iter_mut() {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
    }
}

/// Reads a file whole, with the path in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
