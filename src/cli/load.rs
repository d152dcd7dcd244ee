//! Turning the data arguments into checked data sets.

use std::path::Path;

use anyhow::Result;
use ndarray::Array2;
use softmax_wgpu::data::{self, Dataset, NpyRows, Side, Split, Standardized, Standardizer};
use softmax_wgpu::error::Position;
use softmax_wgpu::{train, RowSource};
use softmax_wgpu::{Error, Model, TrainConfig};

use super::args::{PredictArgs, TrainArgs};

pub struct Loaded {
    pub train: Dataset,
    pub held_out: Option<Dataset>,
}

fn is_npy(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

fn parse_synthetic(spec: &str) -> Result<(usize, usize, usize)> {
    let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
    let nums: Option<Vec<usize>> = parts.iter().map(|p| p.parse().ok()).collect();
    match nums.as_deref() {
        Some(&[n, d, k]) => Ok((n, d, k)),
        _ => Err(Error::param(
            "--synthetic",
            "N,D,K: three positive integers",
            format!("{spec:?}"),
        )
        .into()),
    }
}

fn npy_dataset(
    x_path: &Path,
    y_path: Option<&Path>,
    classes: Option<usize>,
    flag: &str,
) -> Result<Dataset> {
    let y_path = y_path.ok_or_else(|| {
        Error::param(
            flag,
            format!("given (required) with the NPY file {}", x_path.display()),
            "none",
        )
    })?;
    let x = data::read_npy_features(x_path)?;
    let y = data::read_npy_labels(y_path, classes)?;
    if y.len() != x.nrows() {
        return Err(Error::input(
            y_path,
            format!(
                "has {} labels but {} has {} rows",
                y.len(),
                x_path.display(),
                x.nrows()
            ),
        )
        .into());
    }
    let k = classes.unwrap_or_else(|| y.iter().max().map_or(0, |&m| m as usize + 1));
    if k < 2 {
        return Err(Error::input(y_path, format!("needs at least 2 classes, found {k}")).into());
    }
    Ok(Dataset {
        x,
        y,
        classes: (0..k).map(|c| c.to_string()).collect(),
        source: x_path.display().to_string(),
    })
}

/// Training data streamed from its file rather than loaded: the sources, the class names and the statistics.
pub struct Streamed {
    pub train: Box<dyn RowSource>,
    pub held_out: Option<Box<dyn RowSource>>,
    pub classes: Vec<String>,
    pub standardizer: Option<Standardizer>,
    /// The host memory budget the rows exceed.
    pub budget: u64,
}

/// The NPY --data when its rows, held as f32, would not fit the host memory budget: streamed a chunk at a time,
/// with the --val-split held-out rows chosen row by row, --test streamed too, and the standardisation statistics
/// from one streaming pass. None when the data fit (they are then loaded as before).
pub fn streamed_training(a: &TrainArgs, cfg: &TrainConfig) -> Result<Option<Streamed>> {
    let (Some(path), None) = (&a.data, &a.synthetic) else {
        return Ok(None);
    };
    if !is_npy(path) {
        return Ok(None);
    }
    let labels = a.labels.as_deref().ok_or_else(|| {
        Error::param(
            "--labels",
            format!("given (required) with the NPY file {}", path.display()),
            "none",
        )
    })?;
    let open = || NpyRows::open(path, labels, a.classes);
    let probe = open()?;
    let bytes = probe
        .rows()
        .unwrap_or(0)
        .saturating_mul(train::held_row_bytes(probe.features()));
    let budget = cfg
        .memory_budget
        .unwrap_or_else(train::default_memory_budget);
    if bytes <= budget {
        return Ok(None);
    }
    let k = probe.classes();
    let d = probe.features();
    let (mut train, held_out): (Box<dyn RowSource>, Option<Box<dyn RowSource>>) = match &a.test {
        Some(test) => {
            let tl = a.test_labels.as_deref().ok_or_else(|| {
                Error::param(
                    "--test-labels",
                    format!("given (required) with the NPY file {}", test.display()),
                    "none",
                )
            })?;
            let t = NpyRows::open(test, tl, Some(k))?;
            if t.features() != d {
                return Err(Error::input(
                    test,
                    format!("has {} features, the training data has {d}", t.features()),
                )
                .into());
            }
            (Box::new(probe), Some(Box::new(t)))
        }
        None if cfg.val_split > 0.0 => (
            Box::new(Split::new(probe, cfg.seed, cfg.val_split, Side::Train)?),
            Some(Box::new(Split::new(
                open()?,
                cfg.seed,
                cfg.val_split,
                Side::HeldOut,
            )?)),
        ),
        None => (Box::new(probe), None),
    };
    let standardizer = if cfg.standardize {
        Some(Standardizer::fit_source(train.as_mut())?)
    } else {
        None
    };
    if let Some(s) = &standardizer {
        train = Box::new(Standardized::new(train, s.clone())?);
    }
    let held_out = match (held_out, &standardizer) {
        (Some(h), Some(s)) => {
            Some(Box::new(Standardized::new(h, s.clone())?) as Box<dyn RowSource>)
        }
        (h, _) => h,
    };
    Ok(Some(Streamed {
        train,
        held_out,
        classes: (0..k).map(|c| c.to_string()).collect(),
        standardizer,
        budget,
    }))
}

/// Loads --data/--synthetic/the digits, and --test or the --val-split held-out part.
pub fn training_data(a: &TrainArgs, cfg: &TrainConfig) -> Result<Loaded> {
    let full = if let Some(spec) = &a.synthetic {
        let (n, d, k) = parse_synthetic(spec)?;
        data::synthetic(n, d, k, cfg.seed)?
    } else if let Some(path) = &a.data {
        if is_npy(path) {
            npy_dataset(path, a.labels.as_deref(), a.classes, "--labels")?
        } else {
            let t = data::read_csv(path, Some(a.label_column))?;
            let (classes, y) = data::encode_labels(path, &t.labels)?;
            if classes.len() < 2 {
                return Err(Error::input(
                    path,
                    format!("needs at least 2 classes, found {}", classes.len()),
                )
                .into());
            }
            Dataset {
                x: t.x,
                y,
                classes,
                source: path.display().to_string(),
            }
        }
    } else {
        data::digits()?
    };
    let Some(test_path) = &a.test else {
        let (train, held_out) = data::split_holdout(&full, cfg.val_split, cfg.seed)?;
        return Ok(Loaded { train, held_out });
    };
    let test = if is_npy(test_path) {
        let mut t = npy_dataset(
            test_path,
            a.test_labels.as_deref(),
            Some(full.classes.len()),
            "--test-labels",
        )?;
        t.classes = full.classes.clone();
        t
    } else {
        let t = data::read_csv(test_path, Some(a.label_column))?;
        let y = data::labels_to_classes(test_path, &t.labels, &t.lines, &full.classes, "training")?;
        Dataset {
            x: t.x,
            y,
            classes: full.classes.clone(),
            source: test_path.display().to_string(),
        }
    };
    if test.features() != full.features() {
        return Err(Error::input(
            test_path,
            format!(
                "has {} features, the training data has {}",
                test.features(),
                full.features()
            ),
        )
        .into());
    }
    Ok(Loaded {
        train: full,
        held_out: Some(test),
    })
}

pub struct ToPredict {
    pub x: Array2<f32>,
    pub y: Option<Vec<u32>>,
}

/// Loads the rows to predict, with their labels when the file has them.
pub fn prediction_data(a: &PredictArgs, model: &Model) -> Result<ToPredict> {
    let d = model.features();
    let path = &a.data;
    let (x, y) = if is_npy(path) {
        let x = data::read_npy_features(path)?;
        let y = match &a.labels {
            Some(lp) => {
                let y = data::read_npy_labels(lp, Some(model.classes.len()))?;
                if y.len() != x.nrows() {
                    return Err(Error::input(
                        lp,
                        format!(
                            "has {} labels but {} has {} rows",
                            y.len(),
                            path.display(),
                            x.nrows()
                        ),
                    )
                    .into());
                }
                Some(y)
            }
            None => None,
        };
        (x, y)
    } else {
        let label = match a.label_column {
            Some(c) => Some(c),
            None => {
                let cols = data::csv_columns(path)?;
                if cols == d {
                    None
                } else if cols == d + 1 {
                    Some(-1)
                } else {
                    return Err(Error::input_at(
                        path,
                        Position::Line(1),
                        format!("{cols} columns: the model expects {d} features (or {} with a label column)", d + 1),
                    )
                    .into());
                }
            }
        };
        let t = data::read_csv(path, label)?;
        let y = match label {
            Some(_) => Some(data::labels_to_classes(
                path,
                &t.labels,
                &t.lines,
                &model.classes,
                "model's",
            )?),
            None => None,
        };
        (t.x, y)
    };
    if x.ncols() != d {
        return Err(Error::input(
            path,
            format!("has {} features, the model expects {d}", x.ncols()),
        )
        .into());
    }
    Ok(ToPredict { x, y })
}
