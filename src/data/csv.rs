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
    /// The header, when the first line was one.
    pub header: Option<Vec<String>>,
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

/// [`read_csv`] on the file's bytes (`path` names it in errors).
pub fn parse_csv(path: &Path, bytes: &[u8], label_column: Option<isize>) -> Result<CsvTable> {
    let mut reader = reader(bytes);
    let mut width: Option<usize> = None;
    let mut label: Option<usize> = None;
    let mut header = None;
    let mut values: Vec<f32> = Vec::new();
    let mut labels = Vec::new();
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, &e))?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        let Some(w) = width else {
            // The first record fixes the width and may be a header.
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
            width = Some(w);
            label = l;
            let features: Vec<&str> = record
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != l)
                .map(|(_, c)| c)
                .collect();
            if features.iter().all(|c| number(c).is_none()) {
                header = Some(record.iter().map(str::to_string).collect());
                continue;
            }
            push_row(path, &record, line, l, &mut values, &mut labels)?;
            lines.push(line);
            continue;
        };
        if record.len() != w {
            return Err(Error::input_at(
                path,
                Position::Line(line),
                format!("expected {w} columns, found {}", record.len()),
            ));
        }
        push_row(path, &record, line, label, &mut values, &mut labels)?;
        lines.push(line);
    }
    let Some(w) = width else {
        return Err(Error::input(path, "file is empty"));
    };
    if lines.is_empty() {
        return Err(Error::input(path, "no data rows (only a header)"));
    }
    let d = if label.is_some() { w - 1 } else { w };
    let x = Array2::from_shape_vec((lines.len(), d), values)
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    Ok(CsvTable {
        x,
        labels,
        lines,
        header,
    })
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
            Error::input_at(path, at(), format!("cannot parse {cell:?} as a number"))
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
