//! CSV: numeric features, an optional label column (integers or strings), an optional header line.

use std::path::Path;

use ndarray::Array2;

use super::read_file;
use crate::error::{Error, Position, Result};

/// A parsed CSV file.
#[derive(Debug, Clone)]
pub struct CsvTable {
    /// [rows, features].
    pub x: Array2<f32>,
    /// The label cell of each row (empty when there is no label column).
    pub labels: Vec<String>,
    /// The 1-based line of each row, for error messages.
    pub lines: Vec<u64>,
    /// The line of the header, when the first record was one. (Its cells are not kept: a header as wide as a
    /// 200 MB line took 32 bytes a cell as strings, 16× the line.)
    pub header: Option<u64>,
}

/// Reads `path`. `label_column` is a 0-based index (negative counts from the end: −1 is the last column), or None
/// when every column is a feature.
pub fn read_csv(path: &Path, label_column: Option<isize>) -> Result<CsvTable> {
    let bytes = read_file(path)?;
    parse_csv(path, &bytes, label_column)
}

/// Number of cells in the first record of `path` (to tell a file with a label column from one without).
pub fn csv_columns(path: &Path) -> Result<usize> {
    let bytes = read_file(path)?;
    let mut reader = reader(&bytes);
    match reader.records().next() {
        Some(Ok(r)) => Ok(r.len()),
        Some(Err(e)) => Err(csv_error(path, &e)),
        None => Err(Error::input(path, "file is empty")),
    }
}

fn reader(bytes: &[u8]) -> ::csv::Reader<&[u8]> {
    ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(bytes)
}

fn csv_error(path: &Path, e: &::csv::Error) -> Error {
    match e.position() {
        Some(p) => Error::input_at(path, Position::Line(p.line()), e.to_string()),
        None => Error::input(path, e.to_string()),
    }
}

fn number(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok()
}

/// What the first record of a file fixes: its width, the label column, and whether the record is a header (every
/// feature cell not a number).
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    width: usize,
    label: Option<usize>,
}

impl Layout {
    /// The layout from the first record (at `line`), and whether that record is a header.
    fn of(
        path: &Path,
        record: &::csv::StringRecord,
        line: u64,
        label_column: Option<isize>,
    ) -> Result<(Layout, bool)> {
        let w = record.len();
        let l = match label_column {
            None => None,
            Some(c) => {
                let i = if c < 0 { w as isize + c } else { c };
                if i < 0 || i as usize >= w {
                    return Err(Error::param(
                        "--label-column",
                        format!(
                            "in -{w}..={} for the {w} columns of {}",
                            w - 1,
                            path.display()
                        ),
                        c,
                    ));
                }
                Some(i as usize)
            }
        };
        if l.is_some() && w < 2 {
            return Err(Error::input_at(
                path,
                Position::Line(line),
                "a label column and at least one feature are needed",
            ));
        }
        let header = record
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != l)
            .all(|(_, c)| number(c).is_none());
        Ok((Layout { width: w, label: l }, header))
    }

    /// Features per row.
    fn features(&self) -> usize {
        if self.label.is_some() {
            self.width - 1
        } else {
            self.width
        }
    }

    /// Checks a data record's width.
    fn check(&self, path: &Path, record: &::csv::StringRecord, line: u64) -> Result<()> {
        if record.len() != self.width {
            return Err(Error::input_at(
                path,
                Position::Line(line),
                format!("expected {} columns, found {}", self.width, record.len()),
            ));
        }
        Ok(())
    }
}

/// Records parsed together on all cores: read in order by the csv reader (which owns quoting and line numbers), then
/// checked and converted in parallel, then used in order, so every error is the one a record-by-record read meets first.
const PARSE_RECORDS: usize = 4096;

/// Each record's features and label (checked against `layout`), or its first error; records are (record, line).
fn parse_records(
    path: &Path,
    layout: &Layout,
    records: &[(::csv::StringRecord, u64)],
) -> Vec<Result<(Vec<f32>, String)>> {
    use rayon::prelude::*;
    records
        .par_iter()
        .with_min_len(64)
        .map(|(record, line)| {
            layout.check(path, record, *line)?;
            let mut values = Vec::with_capacity(layout.features());
            let mut labels = Vec::with_capacity(1);
            push_row(path, record, *line, layout.label, &mut values, &mut labels)?;
            Ok((values, labels.pop().unwrap_or_default()))
        })
        .collect()
}

fn is_blank(record: &::csv::StringRecord) -> bool {
    record.len() == 1 && record[0].is_empty()
}

/// [`read_csv`] on the file's bytes (`path` names it in errors).
pub fn parse_csv(path: &Path, bytes: &[u8], label_column: Option<isize>) -> Result<CsvTable> {
    let mut reader = reader(bytes);
    let mut layout: Option<Layout> = None;
    let mut header = None;
    let mut values: Vec<f32> = Vec::new();
    let mut labels = Vec::new();
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, &e))?;
        let line = record.position().map_or(0, |p| p.line());
        if is_blank(&record) {
            continue;
        }
        let l = match &layout {
            Some(l) => l,
            None => {
                // The first record fixes the width and may be a header.
                let (l, is_header) = Layout::of(path, &record, line, label_column)?;
                let l = layout.insert(l);
                if is_header {
                    header = Some(line);
                    continue;
                }
                l
            }
        };
        l.check(path, &record, line)?;
        push_row(path, &record, line, l.label, &mut values, &mut labels)?;
        lines.push(line);
    }
    let Some(l) = layout else {
        return Err(Error::input(path, "file is empty"));
    };
    if lines.is_empty() {
        return Err(Error::input(path, "no data rows (only a header)"));
    }
    let x = Array2::from_shape_vec((lines.len(), l.features()), values)
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    Ok(CsvTable {
        x,
        labels,
        lines,
        header,
    })
}

/// Data rows between entries of a [`CsvRows`] seek index.
const BLOCK: u64 = 1024;

/// A CSV file read a chunk of rows at a time. Opening it reads it once, checking every record as [`read_csv`]
/// does (the same errors, at the same lines), collecting the labels and noting where every 1,024th row starts;
/// each later pass parses one chunk at a time.
#[derive(Debug)]
pub struct CsvRows {
    path: std::path::PathBuf,
    name: String,
    reader: ::csv::Reader<std::io::BufReader<std::fs::File>>,
    layout: Layout,
    classes: Vec<String>,
    class_index: std::collections::HashMap<String, u32>,
    rows: u64,
    index: Vec<::csv::Position>,
    pos: u64,
    record: ::csv::StringRecord,
}

fn file_reader(path: &Path) -> Result<::csv::Reader<std::io::BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(std::io::BufReader::with_capacity(1 << 20, file)))
}

impl CsvRows {
    /// Opens and checks `path`. `classes`: the class names when they are fixed already (a held-out file); else the
    /// labels found, sorted as [`super::encode_labels`] sorts them.
    pub fn open(path: &Path, label_column: isize, classes: Option<&[String]>) -> Result<Self> {
        let mut reader = file_reader(path)?;
        let mut record = ::csv::StringRecord::new();
        let mut layout: Option<Layout> = None;
        let mut labels = super::LabelSet::new(classes);
        let mut index = Vec::new();
        let mut rows = 0u64;
        let mut pending: Vec<(::csv::StringRecord, u64)> = Vec::with_capacity(PARSE_RECORDS);
        let mut starts: Vec<::csv::Position> = Vec::with_capacity(PARSE_RECORDS);
        // Checks the pending records in parallel, then takes their labels and positions in order.
        let mut flush = |pending: &mut Vec<(::csv::StringRecord, u64)>,
                         starts: &mut Vec<::csv::Position>,
                         layout: &Layout|
         -> Result<()> {
            let parsed = parse_records(path, layout, pending);
            for ((parsed, (_, line)), start) in
                parsed.into_iter().zip(pending.iter()).zip(starts.drain(..))
            {
                let (_, label) = parsed?;
                labels.see(path, *line, &label)?;
                if rows.is_multiple_of(BLOCK) {
                    index.push(start);
                }
                rows += 1;
            }
            pending.clear();
            Ok(())
        };
        loop {
            let start = reader.position().clone();
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    // The records before it come first.
                    if let Some(l) = &layout {
                        flush(&mut pending, &mut starts, l)?;
                    }
                    return Err(csv_error(path, &e));
                }
            }
            let line = record.position().map_or(0, |p| p.line());
            if is_blank(&record) {
                continue;
            }
            let l = match &layout {
                Some(l) => l,
                None => {
                    let (l, is_header) = Layout::of(path, &record, line, Some(label_column))?;
                    let l = layout.insert(l);
                    if is_header {
                        continue;
                    }
                    l
                }
            };
            pending.push((record.clone(), line));
            starts.push(start);
            if pending.len() == PARSE_RECORDS {
                flush(&mut pending, &mut starts, l)?;
            }
        }
        if let Some(l) = &layout {
            flush(&mut pending, &mut starts, l)?;
        }
        let Some(layout) = layout else {
            return Err(Error::input(path, "file is empty"));
        };
        if rows == 0 {
            return Err(Error::input(path, "no data rows (only a header)"));
        }
        let (classes, class_index) = labels.finish(path)?;
        let mut s = CsvRows {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            reader,
            layout,
            classes,
            class_index,
            rows,
            index,
            pos: 0,
            record,
        };
        super::RowSource::rewind(&mut s)?;
        Ok(s)
    }

    /// A second reader of the same file, at its first row, without a second check of it.
    pub fn try_clone(&self) -> Result<Self> {
        let mut s = CsvRows {
            path: self.path.clone(),
            name: self.name.clone(),
            reader: file_reader(&self.path)?,
            layout: self.layout.clone(),
            classes: self.classes.clone(),
            class_index: self.class_index.clone(),
            rows: self.rows,
            index: self.index.clone(),
            pos: 0,
            record: ::csv::StringRecord::new(),
        };
        super::RowSource::rewind(&mut s)?;
        Ok(s)
    }

    /// The class names, in index order.
    pub fn class_names(&self) -> &[String] {
        &self.classes
    }

    /// The next data record (blank lines skipped), or an error when the file ended early.
    fn next_record(&mut self) -> Result<u64> {
        loop {
            let more = self
                .reader
                .read_record(&mut self.record)
                .map_err(|e| csv_error(&self.path, &e))?;
            let line = self.record.position().map_or(0, |p| p.line());
            if !more {
                return Err(Error::input_at(
                    &self.path,
                    Position::Line(line),
                    format!(
                        "the file ends at row {} of the {} it had when it was opened (it changed while being read)",
                        self.pos, self.rows
                    ),
                ));
            }
            if !is_blank(&self.record) {
                return Ok(line);
            }
        }
    }
}

impl super::RowSource for CsvRows {
    fn name(&self) -> &str {
        &self.name
    }

    fn features(&self) -> usize {
        self.layout.features()
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
        let Some(at) = self.index.get(block).cloned() else {
            self.pos = self.rows;
            return Ok(true);
        };
        self.reader
            .seek(at)
            .map_err(|e| csv_error(&self.path, &e))?;
        self.pos = block as u64 * BLOCK;
        while self.pos < row {
            self.next_record()?;
            self.pos += 1;
        }
        Ok(true)
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<super::Chunk<'_>>> {
        if self.pos >= self.rows {
            return Ok(None);
        }
        let m = (max_rows.max(1) as u64).min(self.rows - self.pos) as usize;
        let d = self.layout.features();
        let mut values = Vec::with_capacity(m * d);
        let mut y = Vec::with_capacity(m);
        let first = self.pos;
        let mut pending: Vec<(::csv::StringRecord, u64)> = Vec::with_capacity(PARSE_RECORDS.min(m));
        while y.len() < m {
            pending.clear();
            let want = PARSE_RECORDS.min(m - y.len());
            let read = loop {
                if pending.len() == want {
                    break Ok(());
                }
                match self.next_record() {
                    Ok(line) => pending.push((self.record.clone(), line)),
                    Err(e) => break Err(e),
                }
            };
            for (parsed, (_, line)) in parse_records(&self.path, &self.layout, &pending)
                .into_iter()
                .zip(&pending)
            {
                let (row, label) = parsed?;
                values.extend_from_slice(&row);
                let class = *self.class_index.get(super::label_key(&label).as_ref()).ok_or_else(|| {
                    Error::input_at(
                        &self.path,
                        Position::Line(*line),
                        format!("label {} was not in the file when it was opened (it changed while being read)", super::shown(&label)),
                    )
                })?;
                y.push(class);
                self.pos += 1;
            }
            // A record that could not be read comes after the ones before it.
            read?;
        }
        let x = Array2::from_shape_vec((m, d), values)
            .map_err(|e| Error::Internal(format!("{}: {e}", self.name)))?;
        Ok(Some(super::Chunk::owned(
            &self.name,
            x,
            y,
            self.classes.len(),
            first,
        )?))
    }
}

fn push_row(
    path: &Path,
    record: &::csv::StringRecord,
    line: u64,
    label: Option<usize>,
    values: &mut Vec<f32>,
    labels: &mut Vec<String>,
) -> Result<()> {
    for (i, cell) in record.iter().enumerate() {
        if Some(i) == label {
            if cell.is_empty() {
                return Err(Error::input_at(
                    path,
                    Position::Cell {
                        line,
                        column: i as u64 + 1,
                    },
                    "empty label",
                ));
            }
            labels.push(cell.to_string());
            continue;
        }
        let at = || Position::Cell {
            line,
            column: i as u64 + 1,
        };
        let v = number(cell).ok_or_else(|| {
            Error::input_at(
                path,
                at(),
                format!("cannot parse {} as a number", super::shown(cell)),
            )
        })?;
        if v.is_nan() {
            return Err(Error::input_at(path, at(), "feature is NaN"));
        }
        let f = v as f32;
        if !f.is_finite() {
            return Err(Error::input_at(
                path,
                at(),
                format!("feature {cell} is infinite or outside the f32 range"),
            ));
        }
        values.push(f);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, label: Option<isize>) -> Result<CsvTable> {
        parse_csv(Path::new("t.csv"), text.as_bytes(), label)
    }

    fn message(text: &str) -> String {
        parse(text, Some(-1)).unwrap_err().to_string()
    }

    #[test]
    fn records_parsed_together_report_the_first_problem_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        // Line 3 has a bad number; line 6 is not UTF-8, which the reader meets while line 3 is still unparsed.
        let mut bytes = b"a,b,y\n1,2,0\n3,x,1\n4,5,0\n6,7,1\n".to_vec();
        bytes.extend_from_slice(b"8,\xff,0\n");
        std::fs::write(&path, &bytes).unwrap();
        let e = CsvRows::open(&path, -1, None).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("\"x\""), "{e}");
        // Many records: the one bad cell is found at its line, whichever worker parsed it.
        let mut text = String::from("f1,f2,y\n");
        for i in 0..20_000 {
            if i == 12_345 {
                text.push_str("1,nope,0\n");
            } else {
                text.push_str(&format!("{i},{},{}\n", i * 2, i % 3));
            }
        }
        std::fs::write(&path, text).unwrap();
        let e = CsvRows::open(&path, -1, None).unwrap_err().to_string();
        assert!(e.contains("line 12347"), "{e}");
    }

    #[test]
    fn header_is_detected_and_labels_kept() {
        let t = parse("a,b,label\n1,2,cat\n3,4.5,dog\n", Some(-1)).unwrap();
        assert_eq!(t.x.dim(), (2, 2));
        assert_eq!(t.labels, ["cat", "dog"]);
        assert_eq!(t.lines, [2, 3]);
        assert_eq!(t.x[[1, 1]], 4.5);
        assert!(t.header.is_some());
    }

    #[test]
    fn label_column_may_be_first() {
        let t = parse("7,1,2\n8,3,4\n", Some(0)).unwrap();
        assert_eq!(t.labels, ["7", "8"]);
        assert_eq!(t.x.row(1).to_vec(), [3.0, 4.0]);
    }

    #[test]
    fn bad_rows_are_named_by_line_and_column() {
        assert_eq!(
            message("1,2,0\n3,0\n"),
            "t.csv: line 2: expected 3 columns, found 2"
        );
        assert_eq!(
            message("1,2,0\n3,x,1\n"),
            "t.csv: line 2, column 2: cannot parse \"x\" as a number"
        );
        assert_eq!(
            message("1,2,0\n3,NaN,1\n"),
            "t.csv: line 2, column 2: feature is NaN"
        );
        assert!(message("1,2,0\ninf,1,1\n")
            .starts_with("t.csv: line 2, column 1: feature inf is infinite"));
        assert!(message("1,1e39,0\n").contains("outside the f32 range"));
        assert_eq!(message(""), "t.csv: file is empty");
        assert_eq!(message("a,b,c\n"), "t.csv: no data rows (only a header)");
    }
}
