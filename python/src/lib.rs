//! The native part of the `softmax_wgpu` Python package: the library's trainer behind a few functions that take and
//! give NumPy arrays. The estimator (`softmax_wgpu.SoftmaxRegression`) is Python, over these; no second trainer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use softmax_wgpu::config::Resume;
use softmax_wgpu::cpu::{FastCpu, SparseCpu};
use softmax_wgpu::data::{HostRows, SparseInMemory, SparseRows};
use softmax_wgpu::gpu::{self, GpuBackend, GpuContext, GpuOptions};
use softmax_wgpu::lbfgs::LbfgsOptions;
use softmax_wgpu::stopping::Convergence;
use softmax_wgpu::train::{
    EpochReport, Local, Observer, Optimizer, OptimizerState, StepEvent, Sums,
};
use softmax_wgpu::{Backend, Error, InMemory, Params, RowSource, Shape, TrainConfig};

/// A library error as the Python exception a scikit-learn user expects: bad input and parameters are `ValueError`,
/// with the message the command line gives; anything else is `RuntimeError`.
fn to_py(e: Error) -> PyErr {
    if e.is_input() {
        PyValueError::new_err(e.to_string())
    } else {
        PyRuntimeError::new_err(e.to_string())
    }
}

/// The devices opened so far, by the `device` string that chose them: opened once and kept for the life of the
/// process, so that later fits (a grid search, a `partial_fit` loop) neither open the device again nor compile its
/// kernels again (the pipelines are cached in the context). One is dropped after a fit fails on it with a device
/// error, so that the next fit opens it afresh.
static CONTEXTS: std::sync::OnceLock<
    std::sync::Mutex<std::collections::HashMap<String, &'static GpuContext>>,
> = std::sync::OnceLock::new();

fn contexts(
) -> std::sync::MutexGuard<'static, std::collections::HashMap<String, &'static GpuContext>> {
    CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A context for `device`: "gpu" (the best adapter, software ones included), or an adapter's index or name.
fn context(device: &str) -> Result<&'static GpuContext, Error> {
    if let Some(&ctx) = contexts().get(device) {
        // What an earlier fit left in the error log is not this fit's.
        let _ = ctx.take_error();
        return Ok(ctx);
    }
    let want = (device != "gpu").then_some(device);
    // Opened outside the lock: opening a device takes a while, and another thread may want another one.
    let ctx: &'static GpuContext = Box::leak(Box::new(GpuContext::select(wgpu_backends(), want)?));
    Ok(*contexts().entry(device.to_string()).or_insert(ctx))
}

/// Forgets the context of `device` after `e`, when `e` is a device error (a lost device, an out-of-memory, …).
fn forget_on_device_error(device: &str, e: &Error) {
    if matches!(e, Error::Gpu { .. }) {
        contexts().remove(device);
    }
}

fn wgpu_backends() -> wgpu::Backends {
    wgpu::Backends::all()
}

/// True when a hardware adapter is there: "auto" trains on it, as the command line's `--device auto` does;
/// software adapters (lavapipe) are slower than the CPU path on the same cores. Asked once a process.
fn hardware_adapter() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        gpu::adapters(wgpu_backends())
            .iter()
            .any(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
    })
}

/// An optimizer's state as it crosses to Python and back: the updates applied and the named tensors.
type State = (u64, Vec<(String, Vec<usize>, Vec<f32>)>);

/// The settings of a fit, as the estimator passes them: a dict with these keys.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Settings {
    /// Classes.
    k: usize,
    /// The penalties as scikit-learn's `LogisticRegression` weighs them, (1 − l1_ratio)/C and l1_ratio/C: over N
    /// rows (counted where the rows are), λ₂ = m·`l2_c`/N with m = 2 for two classes (scikit-learn's one vector is
    /// the softmax's w₁ − w₀, see `default_l2_numerator`) and 1 otherwise, and λ₁ = `l1_c`/N (‖w₁ − w₀‖₁ =
    /// ‖w₀‖₁ + ‖w₁‖₁ at w₁ = −w₀).
    l2_c: f64,
    l1_c: f64,
    fit_intercept: bool,
    /// "lbfgs", "sgd", "momentum", "nesterov", "adam" or "adamw".
    solver: String,
    /// L-BFGS: ‖∇J‖∞ (or ‖◇J‖∞ with L1) at which it stops. Minibatch: the decrease of the training loss that
    /// counts as progress (SGDClassifier's rule, 5 epochs without).
    tol: f64,
    /// Most L-BFGS iterations, or epochs.
    max_iter: usize,
    batch_size: usize,
    learning_rate: f32,
    seed: u64,
    device: String,
    /// A weight per class, in index order (`fit_file` takes a `--class-weight` specification beside the settings).
    class_weight: Option<Vec<f32>>,
    /// Print a line an iteration (or epoch) to stderr.
    verbose: bool,
    /// Start from these weights (W [k, d] row-major, b): `warm_start`.
    init: Option<(Vec<f32>, Vec<f32>)>,
    /// `partial_fit`: the epochs run before and the optimizer's state after them; one more epoch is run.
    resume: Option<(usize, State)>,
}

impl Settings {
    /// The run's configuration for N = `rows` training rows.
    fn config(&self, rows: u64) -> Result<TrainConfig, Error> {
        let n = rows.max(1) as f64;
        let optimizer = match self.solver.as_str() {
            "lbfgs" => Optimizer::Lbfgs(LbfgsOptions {
                tol: self.tol,
                max_iter: self.max_iter,
                ..LbfgsOptions::default()
            }),
            "sgd" => Optimizer::Sgd,
            "momentum" | "nesterov" => Optimizer::Momentum {
                momentum: 0.9,
                nesterov: self.solver == "nesterov",
            },
            "adam" | "adamw" => Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                // PyTorch's AdamW default.
                weight_decay: if self.solver == "adamw" { 0.01 } else { 0.0 },
            },
            other => {
                return Err(Error::param(
                    "solver",
                    "auto, lbfgs, sgd, momentum, nesterov, adam or adamw",
                    other,
                ))
            }
        };
        let minibatch = !matches!(optimizer, Optimizer::Lbfgs(_));
        let mut cfg = TrainConfig {
            optimizer,
            l2: (self.l2_c * softmax_wgpu::train::default_l2_numerator(self.k) / n) as f32,
            l1: (self.l1_c / n) as f32,
            fit_intercept: self.fit_intercept,
            val_split: 0.0,
            standardize: false,
            class_weights: self.class_weight.clone(),
            seed: self.seed,
            batch_size: self.batch_size,
            lr: self.learning_rate,
            ..TrainConfig::default()
        };
        if minibatch {
            match &self.resume {
                None => {
                    cfg.epochs = self.max_iter;
                    cfg.convergence = Some(Convergence {
                        tol: self.tol,
                        ..Convergence::SGD_CLASSIFIER
                    });
                }
                Some((epochs, (steps, _))) => {
                    // One epoch after those run: shuffled by its own number, the schedule continued.
                    cfg.epochs = epochs + 1;
                    cfg.resume = (*epochs > 0).then(|| Resume {
                        epoch: *epochs,
                        batches_done: usize::MAX,
                        steps: *steps,
                        stopping: Default::default(),
                        sums: Sums::default(),
                        best: None,
                    });
                }
            }
        } else if self.resume.is_some() {
            return Err(Error::param(
                "solver",
                "a minibatch solver for partial_fit (sgd, momentum, nesterov, adam, adamw)",
                "lbfgs",
            ));
        }
        cfg.check()?;
        Ok(cfg)
    }
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
                    "epoch {:3}  objective {:.6}  lr {:.2e}  [{}]",
                    r.epoch, r.train_loss, r.lr, r.device
                ),
            }
        }
        self.check()
    }
}

/// What a fit gives back.
struct Fitted {
    params: Params,
    /// L-BFGS iterations, or epochs run.
    iterations: usize,
    /// J at the end (with its penalties).
    objective: f64,
    device: String,
    /// A minibatch solver's state at the end.
    state: Option<State>,
    /// The run stopped by a convergence rule (not by its iteration or epoch cap).
    converged: bool,
    /// The features were read in place.
    lent: bool,
}

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

/// Trains on `source` (dense or sparse rows of `shape`) on the settings' device; a signal that ended it is
/// returned as the Python error it raised.
fn train(
    source: Box<dyn RowSource>,
    shape: Shape,
    settings: &Settings,
    sample_weight: Option<(Vec<f32>, &Path)>,
    class_weight: Option<(&str, &[String])>,
) -> Result<Fitted, Stopped> {
    let mut source: Box<dyn RowSource> = match sample_weight {
        Some((w, from)) => Box::new(softmax_wgpu::data::Weighted::new(source, w.into(), from)?),
        None => source,
    };
    let rows = source.rows().unwrap_or(1);
    let mut cfg = settings.config(rows)?;
    if let Some((spec, names)) = class_weight {
        cfg.class_weights = Some(softmax_wgpu::train::class_weights(
            spec,
            names,
            source.as_mut(),
            &mut Local,
        )?);
    }
    let (gpu, device) = match settings.device.as_str() {
        "cpu" => (None, "cpu"),
        "auto" if !hardware_adapter() => (None, "cpu"),
        "auto" => (Some(context("gpu")?), "gpu"),
        other => (Some(context(other)?), other),
    };
    let fitted = train_on(gpu, source, shape, settings, &cfg);
    if let Err(Stopped::Failed(e)) = &fitted {
        forget_on_device_error(device, e);
    }
    fitted
}

/// [`train`] on `gpu`'s device (None: the CPU path).
fn train_on(
    gpu: Option<&'static GpuContext>,
    mut source: Box<dyn RowSource>,
    shape: Shape,
    settings: &Settings,
    cfg: &TrainConfig,
) -> Result<Fitted, Stopped> {
    let sparse = source.is_sparse();
    let lent = source.shared().is_some_and(|rows| rows.is_lent())
        || source.shared_sparse().is_some_and(|rows| rows.is_lent());
    let mut backend: Box<dyn Backend> = match (gpu, sparse) {
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
    if let Some((w, b)) = &settings.init {
        let w = ndarray::Array2::from_shape_vec((shape.k, shape.d), w.clone())
            .map_err(|e| Error::Internal(format!("warm start: {e}")))?;
        backend.set_params(&Params {
            w: w.t().to_owned(),
            b: ndarray::Array1::from(b.clone()),
        })?;
    }
    if let Some((_, (steps, tensors))) = &settings.resume {
        let state = OptimizerState {
            steps: *steps,
            tensors: tensors.clone(),
        };
        state.check(shape)?;
        backend.set_optimizer_state(&state)?;
    }
    let mut watch = Watch {
        verbose: settings.verbose,
        interrupted: None,
    };
    let reports = softmax_wgpu::fit(
        backend.as_mut(),
        source.as_mut(),
        None,
        cfg,
        &mut [&mut watch],
    );
    if let Some(e) = watch.interrupted {
        return Err(Stopped::Signal(e));
    }
    let reports = reports?;
    let last = reports.last();
    let iterations = match last.and_then(|r| r.lbfgs) {
        Some(it) => it.iteration,
        None => reports.len(),
    };
    let objective = last.map_or(f64::NAN, |r| r.train_loss);
    let converged = last.is_some_and(|r| r.converged);
    let state = match cfg.optimizer {
        Optimizer::Lbfgs(_) => None,
        _ => {
            let s = backend.optimizer_state()?;
            Some((s.steps, s.tensors))
        }
    };
    Ok(Fitted {
        params: backend.params()?,
        iterations,
        objective,
        device: backend.device(),
        state,
        converged,
        lent,
    })
}

/// The fit's results as a dict: `coef` (W as [k, features]) and `intercept` as NumPy arrays, `n_iter`,
/// `objective`, `device`, `lent` (whether X was read in place), `state` (a minibatch solver's) and `converged`.
fn returned(py: Python<'_>, fitted: Result<Fitted, Stopped>) -> PyResult<Bound<'_, PyDict>> {
    let f = fitted.map_err(|s| match s {
        Stopped::Failed(e) => to_py(e),
        Stopped::Signal(e) => e,
    })?;
    let out = PyDict::new(py);
    out.set_item(
        "coef",
        PyArray2::from_owned_array(py, f.params.w.t().to_owned()),
    )?;
    out.set_item("intercept", PyArray1::from_owned_array(py, f.params.b))?;
    out.set_item("n_iter", f.iterations)?;
    out.set_item("objective", f.objective)?;
    out.set_item("device", f.device)?;
    out.set_item("lent", f.lent)?;
    out.set_item("state", f.state)?;
    out.set_item("converged", f.converged)?;
    Ok(out)
}

/// A NumPy array's values lent to the trainer: read where they are, never copied.
struct Lent<T> {
    /// Keeps the array (and so its memory) alive.
    _owner: Py<PyAny>,
    values: *const T,
    len: usize,
}

// SAFETY: `values` points at `len` values of a C-contiguous NumPy array that `_owner` keeps alive; NumPy does not
// move or free an array's memory while a reference to it is held (`resize` refuses one that is referenced). The
// values are only read. Writing to the array from another Python thread during the fit races with the trainer's
// reads, as it does for every NumPy extension that reads an array with the GIL released; the estimator documents it.
#[allow(unsafe_code)]
unsafe impl<T: Sync> Send for Lent<T> {}
#[allow(unsafe_code)]
unsafe impl<T: Sync> Sync for Lent<T> {}

impl<T> Lent<T> {
    /// `values`, the memory of the C-contiguous array `owner`.
    fn of(owner: &Bound<'_, PyAny>, values: &[T]) -> Self {
        Lent {
            _owner: owner.clone().unbind(),
            values: values.as_ptr(),
            len: values.len(),
        }
    }
}

impl<T> AsRef<[T]> for Lent<T> {
    fn as_ref(&self) -> &[T] {
        // SAFETY: see the `Send` implementation: valid, aligned, initialised and alive for as long as `self`.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.values, self.len)
        }
    }
}

/// The values of the contiguous 1-D array `a`, lent (the estimator passes a SciPy matrix's own arrays, or
/// contiguous copies); a non-contiguous one is refused, as before they were lent.
fn lend<T: numpy::Element + Sync>(a: &Bound<'_, PyArray1<T>>) -> PyResult<Arc<Lent<T>>> {
    let view = a.readonly();
    Ok(Arc::new(Lent::of(a.as_any(), view.as_slice()?)))
}

/// The rows of `x`: lent when it is C-contiguous (what the estimator passes for float32 input), else copied.
fn dense_rows(
    x: &Bound<'_, PyArray2<f32>>,
    y: Vec<u32>,
    k: usize,
) -> PyResult<Result<HostRows, Error>> {
    let d = x.shape()[1];
    if x.is_c_contiguous() {
        let view = x.readonly();
        let lent = Lent::of(x.as_any(), view.as_slice()?);
        Ok(HostRows::lent("X", Arc::new(lent), d, y, k))
    } else {
        Ok(HostRows::new("X", x.readonly().as_array().to_owned(), y, k))
    }
}

fn weights(w: Option<PyReadonlyArray1<'_, f32>>) -> PyResult<Option<Vec<f32>>> {
    Ok(w.map(|w| w.as_slice().map(<[f32]>::to_vec)).transpose()?)
}

/// Trains on `x` (rows × features, f32; read in place when C-contiguous) and `y` (class indices below `k`) by the
/// settings' solver; J = (1/N)·Σ wᵢ·CEᵢ + λ₂/2·‖W‖² + λ₁·‖W‖₁. The GIL is released while it trains.
#[pyfunction]
#[pyo3(signature = (x, y, settings, sample_weight=None))]
fn fit_dense<'py>(
    py: Python<'py>,
    x: Bound<'py, PyArray2<f32>>,
    y: PyReadonlyArray1<'py, u32>,
    settings: Settings,
    sample_weight: Option<PyReadonlyArray1<'py, f32>>,
) -> PyResult<Bound<'py, PyDict>> {
    let shape = Shape {
        d: x.shape()[1],
        k: settings.k,
    };
    let rows = dense_rows(&x, y.as_slice()?.to_vec(), settings.k)?;
    let sample_weight = weights(sample_weight)?;
    let fitted = py.detach(move || {
        let source = InMemory::new(Arc::new(rows?));
        let sample_weight = sample_weight.map(|w| (w, Path::new("sample_weight")));
        train(Box::new(source), shape, &settings, sample_weight, None)
    });
    returned(py, fitted)
}

/// [`fit_dense`] of sparse rows given as CSR (`indptr`, `indices` ascending within each row, `data`) with
/// `features` columns: trained on the sparse path (the CPU's sparse trainer, or the adapters' sparse kernels).
/// `indices` and `data` (contiguous) are read in place: a SciPy matrix's own arrays are not copied.
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, features, y, settings, sample_weight=None))]
#[allow(clippy::too_many_arguments)] // CSR's three arrays and its width, then fit_dense's arguments
fn fit_csr<'py>(
    py: Python<'py>,
    indptr: PyReadonlyArray1<'py, u64>,
    indices: Bound<'py, PyArray1<u32>>,
    data: Bound<'py, PyArray1<f32>>,
    features: usize,
    y: PyReadonlyArray1<'py, u32>,
    settings: Settings,
    sample_weight: Option<PyReadonlyArray1<'py, f32>>,
) -> PyResult<Bound<'py, PyDict>> {
    let rows = SparseRows::lent(
        "X",
        features,
        settings.k,
        indptr.as_array().to_vec(),
        lend(&indices)?,
        lend(&data)?,
        y.as_slice()?.to_vec(),
    );
    let sample_weight = weights(sample_weight)?;
    let fitted = py.detach(move || {
        let shape = Shape {
            d: features,
            k: settings.k,
        };
        train(
            Box::new(SparseInMemory::new(Arc::new(rows?))),
            shape,
            &settings,
            sample_weight.map(|w| (w, Path::new("sample_weight"))),
            None,
        )
    });
    returned(py, fitted)
}

/// Opens a training file with the library's streaming reader for its format: NPY or IDX with a labels file, LIBSVM,
/// or CSV with a label column (`label_column`, negative from the end). The class names come with it.
fn open_file(
    path: &Path,
    labels: Option<&Path>,
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
/// the file every evaluation where not; λ over the file's N rows. `sample_weight` is a file of one weight a row
/// (NPY, or text), `class_weight` a `--class-weight` specification (`balanced`, or `NAME=W,…`); `init` (with the
/// class names it was fitted on) is used when the file has the same classes and features. Returns [`fit_dense`]'s
/// results with `classes`, the file's class names.
#[pyfunction]
#[pyo3(signature = (path, labels, label_column, zero_based, settings, sample_weight=None, class_weight=None, init_classes=None))]
#[allow(clippy::too_many_arguments)] // where the file is and how to read it, then the fit's settings
fn fit_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    labels: Option<PathBuf>,
    label_column: isize,
    zero_based: Option<bool>,
    mut settings: Settings,
    sample_weight: Option<PathBuf>,
    class_weight: Option<String>,
    init_classes: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut names = Vec::new();
    let fitted = py.detach(|| {
        let (source, classes) = open_file(&path, labels.as_deref(), label_column, zero_based)
            .map_err(Stopped::Failed)?;
        names = classes;
        let shape = Shape {
            d: source.features(),
            k: source.classes(),
        };
        settings.k = shape.k;
        let same = init_classes.as_deref() == Some(names.as_slice())
            && settings
                .init
                .as_ref()
                .is_some_and(|(w, _)| w.len() == shape.k * shape.d);
        if !same {
            settings.init = None;
        }
        let weights = match sample_weight.as_deref() {
            Some(from) => Some((softmax_wgpu::data::read_sample_weights(from)?, from)),
            None => None,
        };
        let class_weight = class_weight.as_deref().map(|spec| (spec, names.as_slice()));
        train(source, shape, &settings, weights, class_weight)
    });
    let out = returned(py, fitted)?;
    out.set_item("classes", names)?;
    Ok(out)
}

/// Writes a model file as the command line writes it (safetensors: `weight` [k, features], `bias` [k], the class
/// names and `settings` as metadata), whole or not at all.
#[pyfunction]
fn save_model(
    path: PathBuf,
    weight: PyReadonlyArray2<'_, f32>,
    bias: PyReadonlyArray1<'_, f32>,
    classes: Vec<String>,
    settings: &str,
) -> PyResult<()> {
    let settings: serde_json::Value =
        serde_json::from_str(settings).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let model = softmax_wgpu::Model {
        params: Params {
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
    path: PathBuf,
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

/// Runs `validate` on one adapter ("gpu": the best; or an index or name) and returns its report as the command
/// line's `validate --json` writes it (a JSON text: `pass` and `adapters`, a list of one). The GIL is released.
#[pyfunction]
#[pyo3(signature = (device, seed, steps))]
fn validate(py: Python<'_>, device: &str, seed: u64, steps: usize) -> PyResult<String> {
    let device = device.to_string();
    let report = py
        .detach(move || {
            let ctx = context(&device)?;
            softmax_wgpu::validate::validate_adapter(ctx, seed, steps, None, &mut |_| {})
        })
        .map_err(to_py)?;
    let doc = serde_json::json!({ "pass": report.pass, "adapters": [report] });
    Ok(doc.to_string())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fit_dense, m)?)?;
    m.add_function(wrap_pyfunction!(fit_csr, m)?)?;
    m.add_function(wrap_pyfunction!(fit_file, m)?)?;
    m.add_function(wrap_pyfunction!(adapters, m)?)?;
    m.add_function(wrap_pyfunction!(save_model, m)?)?;
    m.add_function(wrap_pyfunction!(load_model, m)?)?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    Ok(())
}
