//! The native part of the `softmax_wgpu` Python package: the library's trainer behind a few functions that take and
//! give NumPy arrays. The estimator (`softmax_wgpu.SoftmaxRegression`) is Python, over these; no second trainer.

use numpy::{PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use softmax_wgpu::cpu::{FastCpu, SparseCpu};
use softmax_wgpu::data::{SparseChunk, SparseInMemory, SparseRows};
use softmax_wgpu::gpu::{self, GpuBackend, GpuContext, GpuOptions};
use softmax_wgpu::lbfgs::LbfgsOptions;
use softmax_wgpu::train::{EpochReport, Observer, Optimizer, StepEvent};
use softmax_wgpu::{Backend, Error, InMemory, RowSource, Shape, TrainConfig};

/// A library error as the Python exception a scikit-learn user expects: bad input and parameters are `ValueError`,
/// with the message the command line gives; anything else is `RuntimeError`.
fn to_py(e: Error) -> PyErr {
    if e.is_input() {
        PyValueError::new_err(e.to_string())
    } else {
        PyRuntimeError::new_err(e.to_string())
    }
}

/// A context for `device`: "gpu" (the best adapter, software ones included), or an adapter's index or name.
fn context(device: &str) -> Result<GpuContext, Error> {
    let want = (device != "gpu").then_some(device);
    GpuContext::select(wgpu_backends(), want)
}

fn wgpu_backends() -> wgpu::Backends {
    wgpu::Backends::all()
}

/// True when a hardware adapter is there: "auto" trains on it, as the command line's `--device auto` does;
/// software adapters (lavapipe) are slower than the CPU path on the same cores.
fn hardware_adapter() -> bool {
    gpu::adapters(wgpu_backends())
        .iter()
        .any(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
}

/// The settings of an L-BFGS fit, as the estimator passes them.
struct Fit {
    k: usize,
    l2: f32,
    tol: f64,
    max_iter: usize,
    device: String,
    sample_weight: Option<Vec<f32>>,
    class_weight: Option<Vec<f32>>,
    /// Print a line an iteration to stderr.
    verbose: bool,
    /// Start from these weights (W [k, d] row-major, b): `warm_start`.
    init: Option<(Vec<f32>, Vec<f32>)>,
}

/// Sees every iteration from outside the trainer: prints it when verbose, and ends the fit at a pending signal
/// (Ctrl-C: Python's `KeyboardInterrupt`), which it keeps to be raised once the trainer has stopped.
struct Watch {
    verbose: bool,
    interrupted: Option<PyErr>,
}

impl Watch {
    fn check(&mut self) -> softmax_wgpu::Result<()> {
        if let Err(e) = Python::attach(|py| py.check_signals()) {
            self.interrupted = Some(e);
            return Err(Error::Internal("interrupted by a signal".into()));
        }
        Ok(())
    }
}

impl Observer for Watch {
    fn on_step(
        &mut self,
        _event: &StepEvent<'_>,
        _backend: &mut dyn Backend,
    ) -> softmax_wgpu::Result<()> {
        self.check()
    }

    fn on_epoch(
        &mut self,
        r: &mut EpochReport,
        _backend: &mut dyn Backend,
    ) -> softmax_wgpu::Result<()> {
        if self.verbose {
            match r.lbfgs {
                Some(it) => eprintln!(
                    "iter {:4}  objective {:.6}  |grad| {:.2e}  step {:.2e}  [{}]",
                    r.epoch, r.train_loss, it.grad_inf, it.step, r.device
                ),
                None => eprintln!(
                    "epoch {:3}  train_loss {:.6}  [{}]",
                    r.epoch, r.train_loss, r.device
                ),
            }
        }
        self.check()
    }
}

/// What a fit gives back: W [d, k] and b, the iterations, J and the device's name.
type Fitted = (softmax_wgpu::Params, usize, f64, String);

/// Why a fit gave nothing back.
enum Stopped {
    Failed(Error),
    /// A signal's Python error (`KeyboardInterrupt`).
    Signal(PyErr),
}

impl From<Error> for Stopped {
    fn from(e: Error) -> Self {
        Stopped::Failed(e)
    }
}

/// Trains on `source` (dense or sparse rows of `shape`) by full-batch L-BFGS on the fit's device; a signal that
/// ended it is returned as the Python error it raised.
fn train(source: Box<dyn RowSource>, shape: Shape, fit: Fit) -> Result<Fitted, Stopped> {
    let sparse = source.is_sparse();
    let mut source: Box<dyn RowSource> = match fit.sample_weight {
        Some(w) => Box::new(softmax_wgpu::data::Weighted::new(
            source,
            w.into(),
            std::path::Path::new("sample_weight"),
        )?),
        None => source,
    };
    let cfg = TrainConfig {
        optimizer: Optimizer::Lbfgs(LbfgsOptions {
            tol: fit.tol,
            max_iter: fit.max_iter,
            ..LbfgsOptions::default()
        }),
        l2: fit.l2,
        val_split: 0.0,
        standardize: false,
        class_weights: fit.class_weight,
        ..TrainConfig::default()
    };
    let gpu = match fit.device.as_str() {
        "cpu" => None,
        "auto" if !hardware_adapter() => None,
        "auto" => Some(context("gpu")?),
        other => Some(context(other)?),
    };
    let mut backend: Box<dyn Backend + '_> = match (&gpu, sparse) {
        (None, false) => Box::new(FastCpu::new(shape)?),
        // Sparse rows: O(non-zeros · k) a step, on all cores.
        (None, true) => Box::new(SparseCpu::new(shape)?),
        (Some(ctx), _) => Box::new(GpuBackend::new(
            ctx,
            shape,
            &GpuOptions {
                sparse,
                ..GpuOptions::default()
            },
        )?),
    };
    if let Some((w, b)) = fit.init {
        let w = ndarray::Array2::from_shape_vec((shape.k, shape.d), w)
            .map_err(|e| Error::Internal(format!("warm start: {e}")))?;
        backend.set_params(&softmax_wgpu::Params {
            w: w.t().to_owned(),
            b: ndarray::Array1::from(b),
        })?;
    }
    let mut watch = Watch {
        verbose: fit.verbose,
        interrupted: None,
    };
    let reports = softmax_wgpu::fit(
        backend.as_mut(),
        source.as_mut(),
        None,
        &cfg,
        &mut [&mut watch],
    );
    if let Some(e) = watch.interrupted {
        return Err(Stopped::Signal(e));
    }
    let reports = reports?;
    let last = reports.last();
    let iterations = last.and_then(|r| r.lbfgs).map_or(0, |it| it.iteration);
    let objective = last.map_or(f64::NAN, |r| r.train_loss);
    Ok((backend.params()?, iterations, objective, backend.device()))
}

/// The fit's results as NumPy arrays: W as [k, features], b, the iterations, J and the device's name.
type Returned<'py> = (
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray1<f32>>,
    usize,
    f64,
    String,
);

fn returned(py: Python<'_>, fitted: Result<Fitted, Stopped>) -> PyResult<Returned<'_>> {
    let (params, iterations, objective, device) = fitted.map_err(|s| match s {
        Stopped::Failed(e) => to_py(e),
        Stopped::Signal(e) => e,
    })?;
    let coef = PyArray2::from_owned_array(py, params.w.t().to_owned());
    let intercept = PyArray1::from_owned_array(py, params.b);
    Ok((coef, intercept, iterations, objective, device))
}

/// Trains the softmax regression of `x` (rows × features, f32, C order) and `y` (class indices below `k`) by
/// full-batch L-BFGS to ‖∇J‖∞ ≤ `tol` in at most `max_iter` iterations, J = (1/N)·Σ wᵢ·CEᵢ + l2/2·‖W‖², on
/// `device` ("auto", "cpu", "gpu", or an adapter's index or name). Returns W as [k, features], b, the iterations,
/// J, and the device's name. The GIL is released while it trains.
#[pyfunction]
#[pyo3(signature = (x, y, k, l2, tol, max_iter, device, sample_weight=None, class_weight=None, verbose=false, init=None))]
#[allow(clippy::too_many_arguments)] // the estimator's settings, each its own
fn fit_lbfgs<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    y: PyReadonlyArray1<'py, u32>,
    k: usize,
    l2: f32,
    tol: f64,
    max_iter: usize,
    device: &str,
    sample_weight: Option<PyReadonlyArray1<'py, f32>>,
    class_weight: Option<Vec<f32>>,
    verbose: bool,
    init: Option<(Vec<f32>, Vec<f32>)>,
) -> PyResult<Returned<'py>> {
    let x = x.as_array().to_owned();
    let y = y.as_slice()?.to_vec();
    let fit = Fit {
        k,
        l2,
        tol,
        max_iter,
        device: device.to_string(),
        sample_weight: sample_weight
            .map(|w| w.as_slice().map(<[f32]>::to_vec))
            .transpose()?,
        class_weight,
        verbose,
        init,
    };
    let fitted = py.detach(move || {
        let shape = Shape { d: x.ncols(), k };
        let source = InMemory::from_arrays("X", x, y, fit.k).map_err(Stopped::Failed)?;
        train(Box::new(source), shape, fit)
    });
    returned(py, fitted)
}

/// [`fit_lbfgs`] of sparse rows given as CSR (`indptr`, `indices` ascending within each row, `data`) with
/// `features` columns: trained on the sparse path (the CPU's sparse trainer, or the adapters' sparse kernels).
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, features, y, k, l2, tol, max_iter, device, sample_weight=None, class_weight=None, verbose=false, init=None))]
#[allow(clippy::too_many_arguments)] // the estimator's settings, each its own
fn fit_lbfgs_csr<'py>(
    py: Python<'py>,
    indptr: PyReadonlyArray1<'py, u64>,
    indices: PyReadonlyArray1<'py, u32>,
    data: PyReadonlyArray1<'py, f32>,
    features: usize,
    y: PyReadonlyArray1<'py, u32>,
    k: usize,
    l2: f32,
    tol: f64,
    max_iter: usize,
    device: &str,
    sample_weight: Option<PyReadonlyArray1<'py, f32>>,
    class_weight: Option<Vec<f32>>,
    verbose: bool,
    init: Option<(Vec<f32>, Vec<f32>)>,
) -> PyResult<Returned<'py>> {
    let chunk = SparseChunk {
        offsets: indptr.as_slice()?.to_vec(),
        indices: indices.as_slice()?.to_vec(),
        values: data.as_slice()?.to_vec(),
        y: y.as_slice()?.to_vec(),
        d: features,
        first_row: 0,
    };
    let fit = Fit {
        k,
        l2,
        tol,
        max_iter,
        device: device.to_string(),
        sample_weight: sample_weight
            .map(|w| w.as_slice().map(<[f32]>::to_vec))
            .transpose()?,
        class_weight,
        verbose,
        init,
    };
    let fitted = py.detach(move || {
        let rows = SparseRows::from_chunk("X", &chunk, fit.k).map_err(Stopped::Failed)?;
        let shape = Shape { d: features, k };
        train(
            Box::new(SparseInMemory::new(std::sync::Arc::new(rows))),
            shape,
            fit,
        )
    });
    returned(py, fitted)
}

/// Opens a training file with the library's streaming reader for its format: NPY or IDX with a labels file, LIBSVM,
/// or CSV with a label column (`label_column`, negative from the end). The class names come with it.
fn open_file(
    path: &std::path::Path,
    labels: Option<&std::path::Path>,
    label_column: isize,
    zero_based: Option<bool>,
) -> Result<(Box<dyn RowSource>, Vec<String>), Error> {
    use softmax_wgpu::data::{self, Format};
    let need = || {
        labels.ok_or_else(|| {
            Error::param(
                "labels",
                format!("a labels file for {}", path.display()),
                "none",
            )
        })
    };
    let numbered = |k: usize| (0..k).map(|c| c.to_string()).collect::<Vec<_>>();
    Ok(match data::detect_format(path)? {
        Format::Npy => {
            let s = data::NpyRows::open(path, need()?, None)?;
            let names = numbered(s.classes());
            (Box::new(s), names)
        }
        Format::Idx => {
            let s = data::IdxRows::open(path, need()?, None)?;
            let names = numbered(s.classes());
            (Box::new(s), names)
        }
        Format::Libsvm => {
            let open = |zero_based| {
                data::LibsvmRows::open(
                    path,
                    &data::LibsvmOptions {
                        zero_based,
                        ..data::LibsvmOptions::default()
                    },
                )
            };
            let s = match zero_based {
                Some(z) => open(z)?,
                // scikit-learn's "auto" (its dump_svmlight_file writes 0-based indices): 1-based unless an index
                // is 0.
                None => match open(false) {
                    Err(e) if e.to_string().contains("index 0 in a 1-based file") => open(true)?,
                    r => r?,
                },
            };
            let names = s.class_names().to_vec();
            (Box::new(s), names)
        }
        Format::Csv => {
            let s = data::CsvRows::open(path, label_column, None)?;
            let names = s.class_names().to_vec();
            (Box::new(s), names)
        }
    })
}

/// Trains on a file (see [`open_file`]) read by its streaming reader: held where it fits the memory, streamed from
/// the file every evaluation where not. λ = m/(C·N) with N the file's rows (m = 2 for two classes, else 1), as the
/// estimator's `fit`. Returns [`fit_lbfgs`]'s results and the class names.
#[pyfunction]
#[pyo3(signature = (path, labels, label_column, zero_based, c, penalty, tol, max_iter, device, verbose=false))]
#[allow(clippy::too_many_arguments)] // the estimator's settings, each its own
fn fit_file<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    labels: Option<std::path::PathBuf>,
    label_column: isize,
    zero_based: Option<bool>,
    c: f64,
    penalty: bool,
    tol: f64,
    max_iter: usize,
    device: &str,
    verbose: bool,
) -> PyResult<(Returned<'py>, Vec<String>)> {
    let device = device.to_string();
    let mut names = Vec::new();
    let fitted = py.detach(|| {
        let (source, classes) = open_file(&path, labels.as_deref(), label_column, zero_based)
            .map_err(Stopped::Failed)?;
        names = classes;
        let shape = Shape {
            d: source.features(),
            k: source.classes(),
        };
        let n = source.rows().unwrap_or(1).max(1) as f64;
        let m = softmax_wgpu::train::default_l2_numerator(shape.k);
        let fit = Fit {
            k: shape.k,
            l2: if penalty { (m / (c * n)) as f32 } else { 0.0 },
            tol,
            max_iter,
            device,
            sample_weight: None,
            class_weight: None,
            verbose,
            init: None,
        };
        train(source, shape, fit)
    });
    Ok((returned(py, fitted)?, names))
}

/// Writes a model file as the command line writes it (safetensors: `weight` [k, features], `bias` [k], the class
/// names and `settings` as metadata), whole or not at all.
#[pyfunction]
fn save_model(
    path: std::path::PathBuf,
    weight: PyReadonlyArray2<'_, f32>,
    bias: PyReadonlyArray1<'_, f32>,
    classes: Vec<String>,
    settings: &str,
) -> PyResult<()> {
    let settings: serde_json::Value =
        serde_json::from_str(settings).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let model = softmax_wgpu::Model {
        params: softmax_wgpu::Params {
            w: weight.as_array().t().to_owned(),
            b: bias.as_array().to_owned(),
        },
        classes,
        standardizer: None,
        settings,
    };
    model.save(&path).map_err(to_py)
}

/// Reads a model file (the command line's or `save_model`'s): W as [k, features], b, the class names, and the
/// standardisation's mean and scale when the model has them.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn load_model(
    py: Python<'_>,
    path: std::path::PathBuf,
) -> PyResult<(
    Bound<'_, PyArray2<f32>>,
    Bound<'_, PyArray1<f32>>,
    Vec<String>,
    Option<(Vec<f32>, Vec<f32>)>,
)> {
    let model = softmax_wgpu::Model::load(&path).map_err(to_py)?;
    let standardizer = model.standardizer.map(|s| (s.mean, s.std));
    Ok((
        PyArray2::from_owned_array(py, model.params.w.t().to_owned()),
        PyArray1::from_owned_array(py, model.params.b),
        model.classes,
        standardizer,
    ))
}

/// The adapters wgpu finds, as (index, name, backend, device type) tuples.
#[pyfunction]
fn adapters() -> Vec<(usize, String, String, String)> {
    gpu::adapters(wgpu_backends())
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let info = a.get_info();
            (
                i,
                info.name.clone(),
                format!("{:?}", info.backend),
                format!("{:?}", info.device_type),
            )
        })
        .collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fit_lbfgs, m)?)?;
    m.add_function(wrap_pyfunction!(fit_lbfgs_csr, m)?)?;
    m.add_function(wrap_pyfunction!(fit_file, m)?)?;
    m.add_function(wrap_pyfunction!(adapters, m)?)?;
    m.add_function(wrap_pyfunction!(save_model, m)?)?;
    m.add_function(wrap_pyfunction!(load_model, m)?)?;
    Ok(())
}
