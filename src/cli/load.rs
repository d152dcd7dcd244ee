//! Turning the data arguments into checked data sets.

use std::path::Path;

use anyhow::Result;
use ndarray::Array2;
use softmax_wgpu::data::{
    self, CsvRows, Dataset, Format, IdxRows, LibsvmOptions, LibsvmRows, NpyRows, Side, Split,
    Standardized, Standardizer,
};
use softmax_wgpu::error::Position;
use softmax_wgpu::train::Reducer;
use softmax_wgpu::{train, RowSource};
use softmax_wgpu::{Error, Model, TrainConfig};

use super::args::{FormatArg, FormatArgs, PredictArgs, TrainArgs};

pub struct Loaded {
    pub train: Dataset,
    pub held_out: Option<Dataset>,
    /// The training rows' sample weights (`--sample-weight`), after the split.
    pub train_weights: Option<Vec<f32>>,
}

/// The `--sample-weight` file's weights, one per row of `--data` (`rows` of them).
fn sample_weights(a: &TrainArgs, rows: u64) -> Result<Option<Vec<f32>>> {
    let Some(path) = &a.sample_weight else {
        return Ok(None);
    };
    let w = data::read_sample_weights(path)?;
    if w.len() as u64 != rows {
        return Err(Error::input(
            path,
            format!(
                "holds {} sample weights for the {rows} rows of {}",
                w.len(),
                a.data
                    .as_ref()
                    .map_or("the training data".to_string(), |p| p.display().to_string())
            ),
        )
        .into());
    }
    Ok(Some(w))
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
    let k = data::label_classes(x_path, y_path, &y, x.nrows(), classes)?;
    Ok(Dataset {
        x,
        y,
        classes: (0..k).map(|c| c.to_string()).collect(),
        source: x_path.display().to_string(),
    })
}

/// Opens a row-format file again (a held-out split reads it twice, independently).
pub type Opener = Box<dyn Fn() -> softmax_wgpu::Result<Box<dyn RowSource>>>;

/// A file in a row format (NPY, IDX, LIBSVM): how to open it, its class names, rows and features.
pub struct Rows {
    pub open: Opener,
    pub classes: Vec<String>,
    pub d: usize,
    pub sparse: bool,
}

/// The format of `path`: as given, or detected.
pub fn format_of(path: &Path, f: &FormatArgs) -> Result<Format> {
    Ok(match f.format {
        FormatArg::Auto => data::detect_format(path)?,
        FormatArg::Csv => Format::Csv,
        FormatArg::Npy => Format::Npy,
        FormatArg::Libsvm => Format::Libsvm,
        FormatArg::Idx => Format::Idx,
    })
}

/// Opens `path` when it is in a row format (None for CSV). `classes`: the class names when they are fixed already
/// (held-out data: the training classes); `k`: --classes for label files; `d`: the feature count when it is fixed.
///
/// Long on purpose: one arm per format, each opening its reader the same way.
#[allow(clippy::too_many_arguments)] // each says something the file alone does not
pub fn rows_of(
    path: &Path,
    labels: Option<&Path>,
    labels_flag: &str,
    f: &FormatArgs,
    classes: Option<&[String]>,
    k: Option<usize>,
    d: Option<usize>,
    csv_label: Option<isize>,
) -> Result<Option<Rows>> {
    let format = format_of(path, f)?;
    let need_labels = || {
        labels.map(Path::to_path_buf).ok_or_else(|| {
            Error::param(
                labels_flag,
                format!("given (required) with the {format} file {}", path.display()),
                "none",
            )
        })
    };
    let k = classes.map(<[String]>::len).or(k);
    let sparse = format == Format::Libsvm;
    let (open, names, features): (Opener, Vec<String>, usize) = match format {
        Format::Csv => {
            let Some(label) = csv_label else {
                return Ok(None);
            };
            let probe = CsvRows::open(path, label, classes)?;
            let names = probe.class_names().to_vec();
            let features = probe.features();
            let open: Opener =
                Box::new(move || Ok(Box::new(probe.try_clone()?) as Box<dyn RowSource>));
            (open, names, features)
        }
        Format::Npy | Format::Idx => {
            let y = need_labels()?;
            // Opened once (header and labels read and checked); each source after is a clone of it.
            let (open, classes_found, features): (Opener, usize, usize) = if format == Format::Npy {
                let probe = NpyRows::open(path, &y, k)?;
                let (kk, d) = (probe.classes(), probe.features());
                let open: Opener =
                    Box::new(move || Ok(Box::new(probe.try_clone()?) as Box<dyn RowSource>));
                (open, kk, d)
            } else {
                let probe = IdxRows::open(path, &y, k)?;
                let (kk, d) = (probe.classes(), probe.features());
                let open: Opener =
                    Box::new(move || Ok(Box::new(probe.try_clone()?) as Box<dyn RowSource>));
                (open, kk, d)
            };
            let names = match classes {
                Some(c) => c.to_vec(),
                None => (0..classes_found).map(|c| c.to_string()).collect(),
            };
            (open, names, features)
        }
        Format::Libsvm => {
            if labels.is_some() {
                return Err(Error::param(
                    labels_flag,
                    format!(
                        "not given: the LIBSVM file {} holds its labels",
                        path.display()
                    ),
                    labels.map(|l| l.display().to_string()).unwrap_or_default(),
                )
                .into());
            }
            let probe = LibsvmRows::open(
                path,
                &LibsvmOptions {
                    zero_based: f.zero_based,
                    features: d.or(f.features),
                    classes: classes.map(<[String]>::to_vec),
                },
            )?;
            let names = probe.class_names().to_vec();
            let features = probe.features();
            let open: Opener =
                Box::new(move || Ok(Box::new(probe.try_clone()?) as Box<dyn RowSource>));
            (open, names, features)
        }
    };
    if let Some(d) = d.filter(|&d| d != features) {
        return Err(Error::input(
            path,
            format!("has {features} features, the training data has {d}"),
        )
        .into());
    }
    Ok(Some(Rows {
        open,
        classes: names,
        d: features,
        sparse,
    }))
}

/// This process's shard of `source` when it is one of several ([`data::Shard`]), else the source.
pub fn shard(source: Box<dyn RowSource>, reducer: &dyn Reducer) -> Result<Box<dyn RowSource>> {
    if reducer.is_identity() {
        return Ok(source);
    }
    Ok(Box::new(data::Shard::new(
        source,
        reducer.rank(),
        reducer.size(),
    )?))
}

/// Training data streamed from its file rather than loaded: the sources, the class names and the statistics.
pub struct Streamed {
    /// The training rows' name (all processes' rows, where this process reads a shard of them).
    pub name: String,
    pub train: Box<dyn RowSource>,
    pub held_out: Option<Box<dyn RowSource>>,
    pub classes: Vec<String>,
    pub standardizer: Option<Standardizer>,
    /// The host memory budget the rows exceed.
    pub budget: u64,
}

/// Training data read through their file's reader (NPY, IDX, LIBSVM, and CSV that might not fit the budget): the
/// trainer holds or streams them as they fit; the --val-split held-out rows are chosen row by row and the
/// standardisation statistics come from one pass over the file. None for the embedded digits, --synthetic and CSV
/// that fits (loaded whole, with an exact split, as before).
///
/// Long on purpose: the held-out split of a stream, its standardisation and its sample weights set up in order.
pub fn streamed_training(
    a: &TrainArgs,
    cfg: &TrainConfig,
    fixed: Option<&Standardizer>,
    reducer: &mut dyn Reducer,
) -> Result<Option<Streamed>> {
    let (Some(path), None) = (&a.data, &a.synthetic) else {
        return Ok(None);
    };
    let budget = cfg
        .memory_budget
        .unwrap_or_else(train::default_memory_budget);
    if !reducer.is_identity() && format_of(path, &a.format)? == Format::Libsvm {
        return libsvm_parts(a, cfg, fixed, path, reducer, budget).map(Some);
    }
    // A CSV file is read whole (as before) when its rows surely fit: as f32 they take at most twice the text ("0,"
    // is two bytes a value); otherwise it is streamed.
    let csv_label = match format_of(path, &a.format)? {
        Format::Csv => {
            let len = std::fs::metadata(path)
                .map_err(|e| Error::io(path, e))?
                .len();
            if len.saturating_mul(2) <= budget {
                return Ok(None);
            }
            Some(a.label_column)
        }
        _ => None,
    };
    let Some(rows) = rows_of(
        path,
        a.labels.as_deref(),
        "--labels",
        &a.format,
        None,
        a.classes,
        None,
        csv_label,
    )?
    else {
        return Ok(None);
    };
    // Files in a row format always go through their reader: the trainer holds them (reading the file once, straight
    // into its own memory — host RAM for the CPU, device buffers for a GPU, never both) when they fit, and streams
    // them when not. Sparse rows are never made dense.
    // The training side carries the rows' sample weights, attached before the split so that it keeps its rows'.
    let weights: Option<std::sync::Arc<[f32]>> = match &a.sample_weight {
        Some(path) => Some(data::read_sample_weights(path)?.into()),
        None => None,
    };
    let open_train = || -> Result<Box<dyn RowSource>> {
        let source = (rows.open)()?;
        Ok(match (&weights, &a.sample_weight) {
            (Some(w), Some(path)) => Box::new(data::Weighted::new(source, w.clone(), path)?),
            _ => source,
        })
    };
    let (train, held_out): (Box<dyn RowSource>, Option<Box<dyn RowSource>>) = match &a.test {
        Some(_) => (open_train()?, test_source(a, &rows.classes, rows.d)?),
        None if cfg.val_split > 0.0 => (
            Box::new(Split::new(
                open_train()?,
                cfg.seed,
                cfg.val_split,
                Side::Train,
            )?),
            Some(Box::new(Split::new(
                (rows.open)()?,
                cfg.seed,
                cfg.val_split,
                Side::HeldOut,
            )?)),
        ),
        None => (open_train()?, None),
    };
    // One of several processes reads its shard of each side (every process decides the split alike, row by row),
    // and the statistics are those of all processes' training rows.
    let name = train.name().to_string();
    let train = shard(train, reducer)?;
    let held_out = held_out.map(|h| shard(h, reducer)).transpose()?;
    let sides = (train, held_out);
    streamed(name, sides, rows.classes, (cfg, fixed), reducer, budget).map(Some)
}

/// The training and held-out sides of a streamed data set, standardised when asked: with `fixed` statistics (a warm
/// start's), or with those of every process's training rows (one streaming pass; all processes' moments merged in
/// rank order when there are several).
fn streamed(
    name: String,
    (mut train, held_out): (Box<dyn RowSource>, Option<Box<dyn RowSource>>),
    classes: Vec<String>,
    (cfg, fixed): (&TrainConfig, Option<&Standardizer>),
    reducer: &mut dyn Reducer,
    budget: u64,
) -> Result<Streamed> {
    let standardizer = match fixed {
        Some(s) => Some(s.clone()),
        None if cfg.standardize && reducer.is_identity() => {
            Some(Standardizer::fit_source(train.as_mut())?)
        }
        None if cfg.standardize => Some(train::standardizer(train.as_mut(), reducer)?),
        None => None,
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
    Ok(Streamed {
        name,
        train,
        held_out,
        classes,
        standardizer,
        budget,
    })
}

/// [`streamed_training`] of a LIBSVM file by one of several processes: each reads its part of the file
/// ([`super::parts`]), and of `--test` when that is LIBSVM too; the `--val-split` rows are held out by their index in
/// the whole file, as one process would hold them out.
fn libsvm_parts(
    a: &TrainArgs,
    cfg: &TrainConfig,
    fixed: Option<&Standardizer>,
    path: &Path,
    reducer: &mut dyn Reducer,
    budget: u64,
) -> Result<Streamed> {
    if let Some(l) = &a.labels {
        return Err(Error::param(
            "--labels",
            format!(
                "not given: the LIBSVM file {} holds its labels",
                path.display()
            ),
            l.display(),
        )
        .into());
    }
    let options = LibsvmOptions {
        zero_based: a.format.zero_based,
        features: a.format.features,
        classes: None,
    };
    let part = super::parts::libsvm_part(path, &options, reducer)?;
    let (first, classes, d) = (
        part.first,
        part.rows.class_names().to_vec(),
        part.rows.features(),
    );
    // A second reader of the part for the held-out side; the part itself trains.
    let split = a.test.is_none() && cfg.val_split > 0.0;
    let held_side = split.then(|| part.rows.try_clone()).transpose()?;
    let mut train: Box<dyn RowSource> = match &a.sample_weight {
        Some(w) => {
            // The weights of this part's rows.
            let all = data::read_sample_weights(w)?;
            let n = part.rows.rows().unwrap_or(0) as usize;
            let mine: Vec<f32> = all
                .get(first as usize..first as usize + n)
                .map_or_else(|| all.clone(), <[f32]>::to_vec);
            Box::new(data::Weighted::new(part.rows, mine.into(), w)?)
        }
        None => Box::new(part.rows),
    };
    let mut held_out: Option<Box<dyn RowSource>> = None;
    match (&a.test, held_side) {
        (Some(test), _) if format_of(test, &a.format)? == Format::Libsvm => {
            let fixed_by_training = LibsvmOptions {
                zero_based: a.format.zero_based,
                features: Some(d),
                classes: Some(classes.clone()),
            };
            let t = super::parts::libsvm_part(test, &fixed_by_training, reducer)?;
            held_out = Some(Box::new(t.rows));
        }
        (Some(_), _) => {
            held_out = test_source(a, &classes, d)?
                .map(|h| shard(h, reducer))
                .transpose()?;
        }
        (None, Some(rows)) => {
            let (seed, f) = (cfg.seed, cfg.val_split);
            held_out = Some(Box::new(Split::starting_at(
                rows,
                seed,
                f,
                Side::HeldOut,
                first,
            )?));
            train = Box::new(Split::starting_at(train, seed, f, Side::Train, first)?);
        }
        (None, None) => {}
    }
    let name = path.display().to_string();
    streamed(
        name,
        (train, held_out),
        classes,
        (cfg, fixed),
        reducer,
        budget,
    )
}

/// The --test rows as a source (None when there is no --test): a row-format file opened as a source (held or
/// streamed by the trainer, as its size says), a CSV file read whole.
pub fn test_source(
    a: &TrainArgs,
    classes: &[String],
    d: usize,
) -> Result<Option<Box<dyn RowSource>>> {
    let Some(test) = &a.test else {
        return Ok(None);
    };
    if let Some(rows) = rows_of(
        test,
        a.test_labels.as_deref(),
        "--test-labels",
        &a.format,
        Some(classes),
        None,
        Some(d),
        Some(a.label_column),
    )? {
        return Ok(Some((rows.open)()?));
    }
    let t = csv_test(a, test, classes)?;
    if t.features() != d {
        return Err(Error::input(
            test,
            format!("has {} features, the training data has {d}", t.features()),
        )
        .into());
    }
    Ok(Some(Box::new(t.into_source()?)))
}

fn csv_test(a: &TrainArgs, test_path: &Path, classes: &[String]) -> Result<Dataset> {
    let t = data::read_csv(test_path, Some(a.label_column))?;
    let y = data::labels_to_classes(test_path, &t.labels, &t.lines, classes, "training")?;
    Ok(Dataset {
        x: t.x,
        y,
        classes: classes.to_vec(),
        source: test_path.display().to_string(),
    })
}

/// Every row of a row-format file, read into memory.
fn read_dataset(rows: Rows, path: &Path) -> Result<Dataset> {
    let mut source = (rows.open)()?;
    let held = data::HostRows::read(source.as_mut())?;
    let held = std::sync::Arc::try_unwrap(held).unwrap_or_else(|shared| (*shared).clone());
    let (x, y) = held.into_parts();
    Ok(Dataset {
        x,
        y,
        classes: rows.classes,
        source: path.display().to_string(),
    })
}

/// Loads --data/--synthetic/the digits, and --test or the --val-split held-out part.
///
/// Long on purpose: the steps of loading (format, labels, split, weights, standardisation) in the order they happen.
pub fn training_data(a: &TrainArgs, cfg: &TrainConfig) -> Result<Loaded> {
    let full = if let Some(spec) = &a.synthetic {
        let (n, d, k) = parse_synthetic(spec)?;
        data::synthetic(n, d, k, cfg.seed)?
    } else if let Some(path) = &a.data {
        if format_of(path, &a.format)? == Format::Npy {
            // Straight into one array: no copy beyond the data themselves.
            npy_dataset(path, a.labels.as_deref(), a.classes, "--labels")?
        } else if let Some(rows) = rows_of(
            path,
            a.labels.as_deref(),
            "--labels",
            &a.format,
            None,
            a.classes,
            None,
            None,
        )? {
            read_dataset(rows, path)?
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
    let weights = sample_weights(a, full.len() as u64)?;
    let Some(test_path) = &a.test else {
        let train_weights = match (
            weights,
            data::holdout_indices(full.len(), cfg.val_split, cfg.seed)?,
        ) {
            (Some(w), Some((train_idx, _))) => Some(train_idx.iter().map(|&i| w[i]).collect()),
            (w, _) => w,
        };
        let (train, held_out) = data::split_holdout(full, cfg.val_split, cfg.seed)?;
        return Ok(Loaded {
            train,
            held_out,
            train_weights,
        });
    };
    let test = match rows_of(
        test_path,
        a.test_labels.as_deref(),
        "--test-labels",
        &a.format,
        Some(&full.classes),
        None,
        Some(full.features()),
        None,
    )? {
        Some(rows) => read_dataset(rows, test_path)?,
        None => csv_test(a, test_path, &full.classes)?,
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
        train_weights: weights,
    })
}

/// The rows to predict: dense, or a sparse source read a chunk at a time (never made dense).
pub enum Rows2 {
    Dense(Array2<f32>),
    Sparse(Box<dyn RowSource>),
}

pub struct ToPredict {
    pub x: Rows2,
    /// The labels, when the rows are dense and come with them (a sparse source yields its own).
    pub y: Option<Vec<u32>>,
}

/// Loads the rows to predict, with their labels when the file has them.
///
/// Long on purpose: the steps of loading for predict and eval, in the order they happen.
pub fn prediction_data(a: &PredictArgs, model: &Model) -> Result<ToPredict> {
    let d = model.features();
    let path = &a.data;
    let format = format_of(path, &a.format)?;
    if matches!(format, Format::Libsvm | Format::Idx) {
        let rows = rows_of(
            path,
            a.labels.as_deref(),
            "--labels",
            &a.format,
            Some(&model.classes),
            None,
            Some(d),
            None,
        )?
        .ok_or_else(|| Error::Internal("a row format without rows".into()))?;
        if rows.sparse {
            return Ok(ToPredict {
                x: Rows2::Sparse((rows.open)()?),
                y: None,
            });
        }
        let ds = read_dataset(rows, path)?;
        return Ok(ToPredict {
            x: Rows2::Dense(ds.x),
            y: Some(ds.y),
        });
    }
    let (x, y) = if format == Format::Npy {
        let x = data::read_npy_features(path)?;
        let y = match &a.labels {
            Some(lp) => {
                let y = data::read_npy_labels(lp, Some(model.classes.len()))?;
                data::check_label_count(path, lp, y.len(), x.nrows())?;
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
    Ok(ToPredict {
        x: Rows2::Dense(x),
        y,
    })
}
