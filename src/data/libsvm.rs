//! LIBSVM / svmlight text: one row per line, `label idx:value idx:value … [# comment]`, indices ascending, 1-based
//! unless the file is zero-based, an optional `qid:N` after the label (ignored). Read a chunk of rows at a time: a
//! first pass when the file is opened checks every line (naming the line and entry of the first problem), counts
//! rows and non-zeros, collects the labels and the largest index, and notes where every 256th row starts so that
//! chunks can be read in any order. Rows come out sparse ([`SparseChunk`], CSR) or, through [`RowSource`], as dense
//! rows of one chunk.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::{Chunk, RowSource};
use crate::error::{Error, Position, Result};

/// Rows between entries of the seek index (16 bytes each: 640 KB for 10M rows); a seek reads at most this many lines.
const BLOCK: u64 = 256;

/// How to read a LIBSVM file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LibsvmOptions {
    /// Indices start at 0 (default: at 1, LIBSVM's convention).
    pub zero_based: bool,
    /// The feature count; every index must be below it. Default: the largest index in the file + 1.
    pub features: Option<usize>,
    /// The classes, in index order, when they are fixed already (held-out data, prediction): a label outside them is
    /// an error. Default: the labels found in the file, sorted (numerically when they are numbers).
    pub classes: Option<Vec<String>>,
}

/// Rows in compressed sparse row form: row i's entries are `indices[offsets[i]..offsets[i + 1]]` with their
/// `values`, indices strictly ascending and below `d`. Offsets are u64 so that a file may hold more than 2³¹
/// non-zeros; a chunk's offsets start at 0.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseChunk {
    /// Row starts into `indices` / `values`, rows + 1 of them.
    pub offsets: Vec<u64>,
    /// Column of each non-zero.
    pub indices: Vec<u32>,
    /// Value of each non-zero (finite).
    pub values: Vec<f32>,
    /// Class index of each row.
    pub y: Vec<u32>,
    /// Columns.
    pub d: usize,
    /// The first row's position in its source.
    pub first_row: u64,
}

impl SparseChunk {
    /// Rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The rows as a dense [rows, d] array.
    pub fn to_dense(&self) -> Array2<f32> {
        super::sparse::dense(self.d, &self.offsets, &self.indices, &self.values)
    }
}

/// One line's label and entries, or None for a line with neither (a blank or comment-only line is an error: a row
/// without a label).
struct Line<'t> {
    label: &'t str,
    entries: Vec<(u64, f32)>,
}

/// A comment line, `# …` (as SVM-light allows and scikit-learn's `dump_svmlight_file(comment=…)` writes at the top):
/// not a row. A blank line stays an error ("the line is empty").
fn is_comment(text: &str) -> bool {
    text.trim_start().starts_with('#')
}

/// Parses one line. `line_no` is 1-based.
///
/// Long on purpose: one line of the format, token by token, each malformed case with its own message.
fn parse_line<'t>(path: &Path, text: &'t str, line_no: u64, zero_based: bool) -> Result<Line<'t>> {
    let at = Position::Line(line_no);
    let text = text.split('#').next().unwrap_or("");
    let mut tokens = text.split_ascii_whitespace();
    let label = tokens
        .next()
        .ok_or_else(|| Error::input_at(path, at.clone(), "no label: the line is empty"))?;
    if label.contains(':') {
        return Err(Error::input_at(
            path,
            at,
            format!(
                "no label: the line starts with the entry {}",
                super::shown(label)
            ),
        ));
    }
    if !label.parse::<f64>().is_ok_and(f64::is_finite) {
        return Err(Error::input_at(
            path,
            at,
            format!("label {} is not a number", super::shown(label)),
        ));
    }
    let mut entries = Vec::new();
    let mut previous: Option<u64> = None;
    for (t, token) in tokens.enumerate() {
        let entry = t + 1;
        let Some((idx, value)) = token.split_once(':') else {
            return Err(Error::input_at(
                path,
                at,
                format!("entry {entry} {} is not index:value", super::shown(token)),
            ));
        };
        if idx == "qid" {
            if t == 0 {
                continue;
            }
            return Err(Error::input_at(
                path,
                at,
                format!("entry {entry}: qid must come right after the label"),
            ));
        }
        let i: u64 = idx.parse().map_err(|_| {
            Error::input_at(
                path,
                at.clone(),
                format!(
                    "entry {entry} {}: index {} is not a non-negative integer",
                    super::shown(token),
                    super::shown(idx)
                ),
            )
        })?;
        let v: f32 = value.parse().map_err(|_| {
            Error::input_at(
                path,
                at.clone(),
                format!(
                    "entry {entry} {}: value {} is not a number",
                    super::shown(token),
                    super::shown(value)
                ),
            )
        })?;
        if !v.is_finite() {
            return Err(Error::input_at(
                path,
                at,
                format!(
                    "entry {entry} {}: value is not finite (or outside the f32 range)",
                    super::shown(token)
                ),
            ));
        }
        if !zero_based && i == 0 {
            return Err(Error::input_at(
                path,
                at,
                format!(
                    "entry {entry} {}: index 0 in a 1-based file (read it with --zero-based)",
                    super::shown(token)
                ),
            ));
        }
        let column = if zero_based { i } else { i - 1 };
        if let Some(p) = previous {
            if i <= p {
                let what = if i == p { "repeats" } else { "is below" };
                return Err(Error::input_at(
                    path,
                    at,
                    format!(
                        "entry {entry} {}: index {i} {what} the previous index {p} (indices must be ascending)", super::shown(token)
                    ),
                ));
            }
        }
        previous = Some(i);
        entries.push((column, v));
    }
    Ok(Line { label, entries })
}

/// Reads one line into `buf` (without the newline); false at the end of the file. Non-UTF-8 text is an error.
fn read_line<R: BufRead>(
    path: &Path,
    r: &mut R,
    raw: &mut Vec<u8>,
    line_no: u64,
) -> Result<Option<usize>> {
    raw.clear();
    let n = r.read_until(b'\n', raw).map_err(|e| Error::io(path, e))?;
    if n == 0 {
        return Ok(None);
    }
    while raw.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        raw.pop();
    }
    if std::str::from_utf8(raw).is_err() {
        return Err(Error::input_at(
            path,
            Position::Line(line_no),
            "not text (invalid UTF-8)",
        ));
    }
    Ok(Some(n))
}

/// Rows parsed together on all cores: lines are read in order (UTF-8 checked, line numbers counted), then parsed in
/// parallel, then used in order, so every error is the one a line-by-line reader would meet first.
const PARSE_ROWS: usize = 1 << 14;

/// Lines read ahead for [`parse_ahead`]: their text, and per line its span in it, its line number, its length in the
/// file (with the newline) and whether it is a comment.
#[derive(Debug, Default)]
struct Ahead {
    text: String,
    lines: Vec<AheadLine>,
}

#[derive(Debug, Clone, Copy)]
struct AheadLine {
    start: usize,
    end: usize,
    line_no: u64,
    bytes: u64,
    comment: bool,
}

/// Reads lines after line `line_no` until `rows` rows (lines that are not comments) or the end of the file. A line
/// that cannot be read ends the batch, and its error is returned for after the lines before it (which the caller
/// parses first: one of them may hold the first problem).
fn read_ahead<R: BufRead>(
    path: &Path,
    r: &mut R,
    raw: &mut Vec<u8>,
    mut line_no: u64,
    rows: usize,
    out: &mut Ahead,
) -> Option<Error> {
    out.text.clear();
    out.lines.clear();
    let mut got = 0;
    while got < rows {
        let n = match read_line(path, r, raw, line_no + 1) {
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(e) => return Some(e),
        };
        line_no += 1;
        let text = std::str::from_utf8(raw).expect("checked");
        let comment = is_comment(text);
        let start = out.text.len();
        out.text.push_str(text);
        out.lines.push(AheadLine {
            start,
            end: out.text.len(),
            line_no,
            bytes: n as u64,
            comment,
        });
        got += usize::from(!comment);
    }
    None
}

/// Every line of `ahead` parsed, on rayon's pool (None for comments).
fn parse_ahead<'t>(
    path: &Path,
    ahead: &'t Ahead,
    zero_based: bool,
) -> Vec<Option<Result<Line<'t>>>> {
    use rayon::prelude::*;
    ahead
        .lines
        .par_iter()
        .with_min_len(256)
        .map(|l| {
            (!l.comment)
                .then(|| parse_line(path, &ahead.text[l.start..l.end], l.line_no, zero_based))
        })
        .collect()
}

/// A LIBSVM file read a chunk of rows at a time.
#[derive(Debug)]
pub struct LibsvmRows {
    path: PathBuf,
    name: String,
    reader: BufReader<std::fs::File>,
    zero_based: bool,
    d: usize,
    classes: Vec<String>,
    class_index: std::collections::HashMap<String, u32>,
    rows: u64,
    nnz: u64,
    /// (byte offset, line number) of rows 0, BLOCK, 2·BLOCK, …
    index: Vec<(u64, u64)>,
    /// The next row, its line and its byte offset.
    pos: u64,
    line: u64,
    offset: u64,
    raw: Vec<u8>,
    /// Lines read ahead and parsed together (kept to reuse their buffers).
    ahead: Ahead,
}

/// What a pass over (part of) a LIBSVM file found.
#[derive(Debug)]
struct Scan {
    rows: u64,
    nnz: u64,
    largest: Option<u64>,
    /// Each label key's first written form (no known classes), in no order.
    labels: Vec<String>,
    /// (byte offset, line number) of rows 0, BLOCK, 2·BLOCK, … of the part.
    index: Vec<(u64, u64)>,
}

/// Checks every line of the bytes `reader` gives (which start at byte `offset` of the file, after line `line_base`):
/// the rows, non-zeros, labels, largest index and the seek index.
fn scan<R: BufRead>(
    path: &Path,
    mut reader: R,
    options: &LibsvmOptions,
    (mut offset, mut line_no): (u64, u64),
) -> Result<Scan> {
    let mut raw = Vec::new();
    let mut labels = super::LabelSet::new(options.classes.as_deref());
    let (mut rows, mut nnz) = (0u64, 0u64);
    let mut index = Vec::new();
    let mut largest: Option<u64> = None;
    let mut ahead = Ahead::default();
    loop {
        let unread = read_ahead(path, &mut reader, &mut raw, line_no, PARSE_ROWS, &mut ahead);
        if ahead.lines.is_empty() {
            match unread {
                Some(e) => return Err(e),
                None => break,
            }
        }
        let parsed = parse_ahead(path, &ahead, options.zero_based);
        for (l, parsed) in ahead.lines.iter().zip(parsed) {
            line_no = l.line_no;
            let n = l.bytes;
            let Some(line) = parsed else {
                offset += n;
                continue;
            };
            let line = line?;
            if let Some(d) = options.features {
                if let Some(&(c, _)) = line.entries.iter().find(|(c, _)| *c >= d as u64) {
                    let shown = if options.zero_based { c } else { c + 1 };
                    return Err(Error::input_at(
                        path,
                        Position::Line(line_no),
                        format!("index {shown} is out of range for --features {d}"),
                    ));
                }
            }
            if let Some(&(c, _)) = line.entries.last() {
                largest = Some(largest.map_or(c, |l| l.max(c)));
            }
            labels.see(path, line_no, line.label)?;
            if rows.is_multiple_of(BLOCK) {
                index.push((offset, line_no - 1));
            }
            rows += 1;
            nnz += line.entries.len() as u64;
            offset += n;
        }
        if let Some(e) = unread {
            return Err(e);
        }
    }
    Ok(Scan {
        rows,
        nnz,
        largest,
        labels: labels.first_written(),
        index,
    })
}

/// The feature count: `--features`, or the largest index + 1.
fn feature_count(options: &LibsvmOptions, largest: Option<u64>) -> Result<usize> {
    let d = match options.features {
        Some(d) => d,
        None => largest.map_or(1, |l| l as usize + 1),
    };
    if d == 0 {
        return Err(Error::param("--features", "at least 1", 0));
    }
    Ok(d)
}

/// One process's part of a LIBSVM file that several read together, checked: the lines that start in its byte range
/// ([`LibsvmRows::part_bounds`]), with what the others need to agree on the classes and the feature count before
/// it is read ([`LibsvmPart::finish`]). No process reads another's lines.
#[derive(Debug)]
pub struct LibsvmPart {
    path: PathBuf,
    start: u64,
    scan: Scan,
}

impl LibsvmPart {
    /// Rows in the part.
    pub fn rows(&self) -> u64 {
        self.scan.rows
    }

    /// The largest index in the part (as stored: 0-based), if any entry.
    pub fn largest(&self) -> Option<u64> {
        self.scan.largest
    }

    /// The part's labels, each class once, as first written in it.
    pub fn labels(&self) -> &[String] {
        &self.scan.labels
    }

    /// The part as a source of its rows, with the classes (the labels of every part in part order, or the fixed
    /// ones) and the largest index of all parts. Errors when the part has no rows.
    pub fn finish(
        self,
        options: &LibsvmOptions,
        all_labels: &[String],
        largest: Option<u64>,
    ) -> Result<LibsvmRows> {
        let path = &self.path;
        let mut labels = super::LabelSet::new(options.classes.as_deref());
        for l in all_labels {
            labels.see(path, 0, l)?;
        }
        let (classes, class_index) = labels.finish(path)?;
        let d = feature_count(options, largest)?;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut s = LibsvmRows {
            path: path.clone(),
            name: path.display().to_string(),
            reader: BufReader::with_capacity(1 << 20, file),
            zero_based: options.zero_based,
            d,
            classes,
            class_index,
            rows: self.scan.rows,
            nnz: self.scan.nnz,
            index: self.scan.index,
            pos: 0,
            line: 0,
            offset: self.start,
            raw: Vec::new(),
            ahead: Ahead::default(),
        };
        s.rewind()?;
        Ok(s)
    }
}

impl LibsvmRows {
    /// Opens and checks `path` (one pass over the file).
    pub fn open(path: &Path, options: &LibsvmOptions) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = BufReader::with_capacity(1 << 20, file);
        let found = scan(path, reader, options, (0, 0))?;
        if found.rows == 0 {
            return Err(Error::input(path, "no rows: the file is empty"));
        }
        let part = LibsvmPart {
            path: path.to_path_buf(),
            start: 0,
            scan: found,
        };
        let (labels, largest) = (part.scan.labels.clone(), part.scan.largest);
        part.finish(options, &labels, largest)
    }

    /// The bytes of part `rank` of `size` of the file: from the first line that starts at or after rank·len/size
    /// to the first that starts at or after (rank + 1)·len/size (the file's end for the last).
    pub fn part_bounds(path: &Path, rank: usize, size: usize) -> Result<(u64, u64)> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut line_start = |at: u64| -> Result<u64> {
            if at == 0 || at >= len {
                return Ok(at.min(len));
            }
            // The line holding byte at − 1 ends somewhere at or after it.
            file.seek(SeekFrom::Start(at - 1))
                .map_err(|e| Error::io(path, e))?;
            let mut r = BufReader::new(&mut file);
            let mut skipped = Vec::new();
            let n = r
                .read_until(b'\n', &mut skipped)
                .map_err(|e| Error::io(path, e))?;
            Ok(at - 1 + n as u64)
        };
        let cut = |r: usize| (u128::from(len) * r as u128 / size.max(1) as u128) as u64;
        Ok((line_start(cut(rank))?, line_start(cut(rank + 1))?))
    }

    /// Lines (newlines, and a last line without one) in the bytes `start..end`.
    pub fn count_lines(path: &Path, (start, end): (u64, u64)) -> Result<u64> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        file.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io(path, e))?;
        let mut r = BufReader::with_capacity(1 << 20, file.take(end - start));
        let (mut lines, mut last) = (0u64, b'\n');
        loop {
            let buf = r.fill_buf().map_err(|e| Error::io(path, e))?;
            if buf.is_empty() {
                break;
            }
            lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
            last = buf[buf.len() - 1];
            let n = buf.len();
            r.consume(n);
        }
        Ok(lines + u64::from(last != b'\n'))
    }

    /// Checks the lines of the bytes `start..end` (from [`LibsvmRows::part_bounds`]), which follow `line_base` lines:
    /// one process's part of a file read by several.
    pub fn scan_part(
        path: &Path,
        options: &LibsvmOptions,
        (start, end): (u64, u64),
        line_base: u64,
    ) -> Result<LibsvmPart> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        file.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io(path, e))?;
        let reader = BufReader::with_capacity(1 << 20, file.take(end - start));
        Ok(LibsvmPart {
            path: path.to_path_buf(),
            start,
            scan: scan(path, reader, options, (start, line_base))?,
        })
    }

    /// A second reader of the same file, at its first row, without a second pass over it.
    pub fn try_clone(&self) -> Result<Self> {
        let file = std::fs::File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let mut s = LibsvmRows {
            path: self.path.clone(),
            name: self.name.clone(),
            reader: BufReader::with_capacity(1 << 20, file),
            zero_based: self.zero_based,
            d: self.d,
            classes: self.classes.clone(),
            class_index: self.class_index.clone(),
            rows: self.rows,
            nnz: self.nnz,
            index: self.index.clone(),
            pos: 0,
            line: 0,
            offset: 0,
            raw: Vec::new(),
            ahead: Ahead::default(),
        };
        s.rewind()?;
        Ok(s)
    }

    /// The class names, in index order.
    pub fn class_names(&self) -> &[String] {
        &self.classes
    }

    /// Non-zeros in the file.
    pub fn nnz(&self) -> u64 {
        self.nnz
    }

    /// The next at most `max_rows` rows, sparse; None at the end.
    pub fn next_sparse(&mut self, max_rows: usize) -> Result<Option<SparseChunk>> {
        if self.pos >= self.rows {
            return Ok(None);
        }
        let m = (max_rows.max(1) as u64).min(self.rows - self.pos) as usize;
        let mut chunk = SparseChunk {
            offsets: Vec::with_capacity(m + 1),
            indices: Vec::new(),
            values: Vec::new(),
            y: Vec::with_capacity(m),
            d: self.d,
            first_row: self.pos,
        };
        chunk.offsets.push(0);
        let mut ahead = std::mem::take(&mut self.ahead);
        while chunk.y.len() < m {
            let want = (m - chunk.y.len()).min(PARSE_ROWS);
            let unread = read_ahead(
                &self.path,
                &mut self.reader,
                &mut self.raw,
                self.line,
                want,
                &mut ahead,
            );
            let parsed = parse_ahead(&self.path, &ahead, self.zero_based);
            for (l, parsed) in ahead.lines.iter().zip(parsed) {
                self.line = l.line_no;
                self.offset += l.bytes;
                let Some(line) = parsed else {
                    continue;
                };
                let line = line?;
                let changed = |what: &str| {
                    Error::input_at(
                        &self.path,
                        Position::Line(self.line),
                        format!("{what} (the file changed since it was opened)"),
                    )
                };
                let class = *self
                    .class_index
                    .get(super::label_key(line.label).as_ref())
                    .ok_or_else(|| {
                        changed(&format!(
                            "label {} was not in the file",
                            super::shown(line.label)
                        ))
                    })?;
                for (c, v) in line.entries {
                    if c >= self.d as u64 {
                        return Err(changed(&format!(
                            "index {c} is beyond the {} features",
                            self.d
                        )));
                    }
                    chunk.indices.push(c as u32);
                    chunk.values.push(v);
                }
                chunk.offsets.push(chunk.indices.len() as u64);
                chunk.y.push(class);
                self.pos += 1;
            }
            if let Some(e) = unread {
                return Err(e);
            }
            if ahead.lines.iter().filter(|l| !l.comment).count() < want {
                return Err(Error::input_at(
                    &self.path,
                    Position::Byte(self.offset),
                    format!(
                        "the file ends at row {} of the {} it had when it was opened (it changed while being read)",
                        self.pos, self.rows
                    ),
                ));
            }
        }
        self.ahead = ahead;
        Ok(Some(chunk))
    }
}

impl RowSource for LibsvmRows {
    fn name(&self) -> &str {
        &self.name
    }

    fn features(&self) -> usize {
        self.d
    }

    fn classes(&self) -> usize {
        self.classes.len()
    }

    fn rows(&self) -> Option<u64> {
        Some(self.rows)
    }

    fn rewind(&mut self) -> Result<()> {
        self.seek(0).map(|_| ())
    }

    fn seek(&mut self, row: u64) -> Result<bool> {
        let block = (row / BLOCK) as usize;
        let Some(&(offset, line)) = self.index.get(block) else {
            self.pos = self.rows;
            return Ok(true);
        };
        self.reader
            .seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(&self.path, e))?;
        self.pos = block as u64 * BLOCK;
        self.line = line;
        self.offset = offset;
        // Step over the rows before `row` in its block.
        while self.pos < row {
            let n = read_line(&self.path, &mut self.reader, &mut self.raw, self.line + 1)?
                .ok_or_else(|| {
                    Error::input_at(
                        &self.path,
                        Position::Byte(self.offset),
                        "the file ends early (it changed while being read)",
                    )
                })?;
            self.line += 1;
            self.offset += n as u64;
            // A comment line is not a row.
            if !is_comment(std::str::from_utf8(&self.raw).expect("checked")) {
                self.pos += 1;
            }
        }
        Ok(true)
    }

    fn is_sparse(&self) -> bool {
        true
    }

    fn held_bytes(&self) -> Option<u64> {
        Some(self.nnz * 8 + self.rows * 12)
    }

    fn next_sparse(&mut self, max_rows: usize) -> Result<Option<SparseChunk>> {
        LibsvmRows::next_sparse(self, max_rows)
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk<'_>>> {
        let Some(s) = LibsvmRows::next_sparse(self, max_rows)? else {
            return Ok(None);
        };
        let k = self.classes.len();
        Ok(Some(Chunk::owned(
            &self.name,
            s.to_dense(),
            s.y,
            k,
            s.first_row,
        )?))
    }
}

/// True when `bytes` (the start of a file) look like LIBSVM text: the first line that is not a comment (`# …`, as
/// `dump_svmlight_file(comment=…)` writes at the top) is a number followed by index:value entries.
pub fn looks_like_libsvm(bytes: &[u8]) -> bool {
    let first = bytes
        .split(|&b| b == b'\n')
        .find(|l| !std::str::from_utf8(l).is_ok_and(is_comment))
        .unwrap_or(&[]);
    let Ok(text) = std::str::from_utf8(first) else {
        return false;
    };
    let mut t = text
        .split('#')
        .next()
        .unwrap_or("")
        .split_ascii_whitespace();
    let label_ok = t.next().is_some_and(|l| l.parse::<f64>().is_ok());
    let rest: Vec<&str> = t.collect();
    label_ok && !rest.is_empty() && rest.iter().all(|e| e.contains(':'))
}

/// Writes the chunk's `rows` as LIBSVM text (1-based indices, labels by class index), `label idx:value …` with
/// values in the shortest form that reads back to the same f32.
pub fn write_libsvm_rows<W: std::io::Write>(
    out: &mut W,
    chunk: &SparseChunk,
    rows: std::ops::Range<usize>,
) -> std::io::Result<()> {
    let mut line = String::new();
    for i in rows {
        use std::fmt::Write;
        line.clear();
        let _ = write!(line, "{}", chunk.y[i]);
        for e in chunk.offsets[i] as usize..chunk.offsets[i + 1] as usize {
            let _ = write!(line, " {}:{}", chunk.indices[e] + 1, chunk.values[e]);
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// Reads the first bytes of a file (for format detection).
pub(crate) fn head(path: &Path, n: usize) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parsed_together_report_the_first_problem_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.svm");
        // Line 2 has a bad value; line 4 is not UTF-8, which is read while line 2 is still unparsed.
        let mut bytes = b"0 1:1.5\n1 2:x\n0 3:2\n".to_vec();
        bytes.extend_from_slice(b"1 1:\xff\n");
        std::fs::write(&path, &bytes).unwrap();
        let e = LibsvmRows::open(&path, &LibsvmOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("value"), "{e}");
        // Many lines: the one bad entry is found at its line, whichever worker parsed it; the rows come back in
        // file order, chunk after chunk.
        let mut text = String::from("# a comment first\n");
        for i in 0..40_000u32 {
            text.push_str(&format!("{} {}:{}\n", i % 3, i % 7 + 1, i));
        }
        std::fs::write(&path, &text).unwrap();
        let mut rows = LibsvmRows::open(&path, &LibsvmOptions::default()).unwrap();
        let mut seen = 0u32;
        while let Some(c) = rows.next_sparse(7_000).unwrap() {
            for (r, &v) in c.values.iter().enumerate() {
                assert_eq!(v, (seen + r as u32) as f32);
            }
            seen += c.values.len() as u32;
        }
        assert_eq!(seen, 40_000);
        // Row 30,002 (line 30,004, after the comment) is "2 1:30002".
        let at = text.find("\n2 1:30002\n").unwrap() + 1;
        text.replace_range(at..at + 9, "2 1:3x002");
        std::fs::write(&path, &text).unwrap();
        let e = LibsvmRows::open(&path, &LibsvmOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 30004"), "{e}");
    }

    #[test]
    fn a_seek_steps_over_comment_lines_inside_a_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svm");
        // Row i has the value i; a comment line after every 10th row.
        let mut text = String::new();
        for i in 0..1000u32 {
            text.push_str(&format!("{} 1:{i}\n", i % 2));
            if i % 10 == 9 {
                text.push_str("# between rows\n");
            }
        }
        std::fs::write(&path, &text).unwrap();
        let mut rows = LibsvmRows::open(&path, &LibsvmOptions::default()).unwrap();
        assert_eq!(rows.rows(), Some(1000));
        for row in [0u64, 9, 10, 255, 256, 300, 511, 700, 999] {
            assert!(rows.seek(row).unwrap());
            let c = rows.next_sparse(1).unwrap().unwrap();
            assert_eq!(
                (c.first_row, c.values[0]),
                (row, row as f32),
                "seek to row {row}"
            );
        }
    }

    #[test]
    fn parts_read_by_several_processes_are_the_file_and_name_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svm");
        let mut text = String::from("# written by a test\n");
        for i in 0..1000u32 {
            if i == 500 {
                text.push_str("# a comment among the rows\n");
            }
            // Class 7 only in the last rows, the widest index in the first.
            let label = if i >= 990 { 7 } else { i % 3 };
            let wide = if i == 3 { " 900:1" } else { "" };
            text.push_str(&format!("{label} {}:{}.5{wide}\n", i % 50 + 1, i));
        }
        std::fs::write(&path, &text).unwrap();
        let options = LibsvmOptions::default();
        let mut whole = LibsvmRows::open(&path, &options).unwrap();
        let want = whole.next_sparse(5000).unwrap().unwrap();
        for size in [1, 2, 3, 7] {
            let mut parts = Vec::new();
            let (mut base, mut end) = (0, 0);
            for rank in 0..size {
                let bounds = LibsvmRows::part_bounds(&path, rank, size).unwrap();
                assert_eq!(bounds.0, end, "parts follow each other");
                end = bounds.1;
                let part = LibsvmRows::scan_part(&path, &options, bounds, base).unwrap();
                base += LibsvmRows::count_lines(&path, bounds).unwrap();
                parts.push(part);
            }
            assert_eq!(end, text.len() as u64);
            assert_eq!(base, 1002, "every line counted once");
            let labels: Vec<String> = parts.iter().flat_map(|p| p.labels().to_vec()).collect();
            let largest = parts.iter().filter_map(LibsvmPart::largest).max();
            let mut got: Vec<SparseChunk> = Vec::new();
            for part in parts {
                let mut rows = part.finish(&options, &labels, largest).unwrap();
                assert_eq!(
                    (rows.features(), rows.class_names()),
                    (whole.features(), whole.class_names())
                );
                while let Some(c) = rows.next_sparse(77).unwrap() {
                    got.push(c);
                }
            }
            let y: Vec<u32> = got.iter().flat_map(|c| c.y.clone()).collect();
            let indices: Vec<u32> = got.iter().flat_map(|c| c.indices.clone()).collect();
            let values: Vec<f32> = got.iter().flat_map(|c| c.values.clone()).collect();
            assert_eq!(
                (y, indices, values),
                (want.y.clone(), want.indices.clone(), want.values.clone()),
                "{size} parts"
            );
        }
        // A bad line is named by its line in the file, whichever part holds it.
        std::fs::write(&path, text.replace("7 41:990.5", "7 41:x")).unwrap();
        let bounds = LibsvmRows::part_bounds(&path, 2, 3).unwrap();
        let base = LibsvmRows::count_lines(&path, (0, bounds.0)).unwrap();
        let e = LibsvmRows::scan_part(&path, &options, bounds, base)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 993"), "{e}");
    }
}
