//! A LIBSVM file read by the processes of a run under `mpirun`: each checks and reads only the lines that start in
//! its share of the file's bytes, so that no process parses the whole file. The line numbers of its messages, the
//! classes (every part's labels, in part order), the feature count and its rows' places in the whole data set come
//! from reductions.

use std::path::Path;

use anyhow::Result;
use softmax_wgpu::data::{LibsvmOptions, LibsvmRows};
use softmax_wgpu::train::{Layout, Reducer};
use softmax_wgpu::{Error, RowSource};

/// This process's part of a file: its rows, and the first one's index among all parts' rows.
pub struct Part {
    pub rows: LibsvmRows,
    pub first: u64,
}

/// Every process's strings, in rank order (UTF-8 bytes carried as f64 values, which hold a byte exactly).
fn gather_strings(reducer: &mut dyn Reducer, mine: &[String]) -> Result<Vec<String>> {
    let text = mine.join("\n");
    let (rank, size) = (reducer.rank(), reducer.size());
    let mut lens = vec![0.0; size];
    lens[rank] = text.len() as f64;
    reducer.allreduce(&mut lens)?;
    let lens: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
    let at: usize = lens[..rank].iter().sum();
    let mut bytes = vec![0.0; lens.iter().sum()];
    for (b, &c) in bytes[at..].iter_mut().zip(text.as_bytes()) {
        *b = f64::from(c);
    }
    reducer.allreduce(&mut bytes)?;
    let bytes: Vec<u8> = bytes.iter().map(|&b| b as u8).collect();
    let mut out = Vec::new();
    let mut start = 0;
    for len in lens {
        let part = std::str::from_utf8(&bytes[start..start + len])
            .map_err(|e| Error::Internal(format!("labels exchanged between processes: {e}")))?;
        out.extend(part.split('\n').filter(|s| !s.is_empty()).map(String::from));
        start += len;
    }
    Ok(out)
}

/// This process's part of the LIBSVM file `path`, read as `options` say (the classes and the feature count fixed
/// there, for held-out data, or agreed on by all parts).
pub fn libsvm_part(
    path: &Path,
    options: &LibsvmOptions,
    reducer: &mut dyn Reducer,
) -> Result<Part> {
    let (rank, size) = (reducer.rank(), reducer.size());
    let bounds = LibsvmRows::part_bounds(path, rank, size)?;
    // Lines before the part: its messages name the file's own line numbers.
    let lines = LibsvmRows::count_lines(path, bounds)?;
    let mut counts = vec![0.0; size];
    counts[rank] = lines as f64;
    reducer.allreduce(&mut counts)?;
    let line_base = counts[..rank].iter().sum::<f64>() as u64;
    let part = LibsvmRows::scan_part(path, options, bounds, line_base)?;
    let layout = Layout::of(reducer, part.rows())?;
    if layout.total == 0 {
        return Err(Error::input(path, "no rows: the file is empty").into());
    }
    // The largest index of all parts (−1: none), gathered and taken on every process alike.
    let mut largest = vec![0.0; size];
    largest[rank] = part.largest().map_or(-1.0, |l| l as f64);
    reducer.allreduce(&mut largest)?;
    let largest = largest
        .iter()
        .filter(|&&l| l >= 0.0)
        .map(|&l| l as u64)
        .max();
    let labels = gather_strings(reducer, part.labels())?;
    let rows = part.finish(options, &labels, largest)?;
    debug_assert_eq!(rows.rows(), Some(layout.rows));
    Ok(Part {
        rows,
        first: layout.first,
    })
}
