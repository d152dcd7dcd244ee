//! Class weights from a specification, as `--class-weight` and the Python package's `class_weight` give them.

use crate::data::RowSource;
use crate::error::{Error, Result};

use super::Reducer;

/// The weight of each class from `--class-weight`: `balanced` gives N / (K·n_c) from the training rows' labels (one
/// pass over them), as scikit-learn's `class_weight="balanced"`; `NAME=W,…` sets the named classes (others weigh 1).
pub fn class_weights(
    spec: &str,
    classes: &[String],
    train: &mut dyn RowSource,
    reducer: &mut dyn Reducer,
) -> Result<Vec<f32>> {
    let k = classes.len();
    if spec.trim() == "balanced" {
        let mut counts = vec![0u64; k];
        train.rewind()?;
        if train.is_sparse() {
            while let Some(c) = train.next_sparse(1 << 16)? {
                c.y.iter().for_each(|&y| counts[y as usize] += 1);
            }
        } else {
            while let Some(c) = train.next_chunk(1 << 16)? {
                c.y().iter().for_each(|&y| counts[y as usize] += 1);
            }
        }
        train.rewind()?;
        // Every process's rows: counts are exact in f64 up to 2^53.
        let mut all: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
        reducer.allreduce(&mut all)?;
        let counts: Vec<u64> = all.iter().map(|&c| c as u64).collect();
        let n: u64 = counts.iter().sum();
        if let Some(c) = counts.iter().position(|&n| n == 0) {
            return Err(Error::param(
                "--class-weight balanced",
                "every class among the training rows",
                format!("no training row of class {:?}", classes[c]),
            ));
        }
        return Ok(counts
            .iter()
            .map(|&nc| (n as f64 / (k as f64 * nc as f64)) as f32)
            .collect());
    }
    let mut w = vec![1.0f32; k];
    for pair in spec.split(',') {
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            Error::param(
                "--class-weight",
                "balanced, or NAME=W pairs separated by commas",
                pair,
            )
        })?;
        let c = classes
            .iter()
            .position(|c| c == name.trim())
            .ok_or_else(|| {
                Error::param(
                    "--class-weight",
                    format!(
                        "a class of the data ({})",
                        classes
                            .iter()
                            .take(8)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    name.trim(),
                )
            })?;
        let v: f32 = value
            .trim()
            .parse()
            .map_err(|_| Error::param("--class-weight", "a number after NAME=", value.trim()))?;
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::param(
                "--class-weight",
                "a positive, finite weight",
                format!("{v} for class {name}"),
            ));
        }
        w[c] = v;
    }
    Ok(w)
}
