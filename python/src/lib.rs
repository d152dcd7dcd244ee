//! The native part of the `softmax_wgpu` Python package: the library's trainer behind a few functions that take and
//! give NumPy arrays. The estimator (`softmax_wgpu.SoftmaxRegression`) is Python, over these; no second trainer.

use numpy::{PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use softmax_wgpu::cpu::FastCpu;
use softmax_wgpu::gpu::{self, GpuBackend, GpuContext, GpuOptions};
use softmax_wgpu::lbfgs::LbfgsOptions;
use softmax_wgpu::train::Optimizer;
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

/// Trains the softmax regression of `x` (rows × features, f32, C order) and `y` (class indices below `k`) by
/// full-batch L-BFGS to ‖∇J‖∞ ≤ `tol` in at most `max_iter` iterations, J = (1/N)·Σ wᵢ·CEᵢ + l2/2·‖W‖², on
/// `device` ("auto", "cpu", "gpu", or an adapter's index or name). Returns W as [k, features], b, the iterations,
/// J, and the device's name. The GIL is released while it trains.
#[pyfunction]
#[pyo3(signature = (x, y, k, l2, tol, max_iter, device, sample_weight=None, class_weight=None))]
#[allow(clippy::too_many_arguments)] // the estimator's settings, each its own
#[allow(clippy::type_complexity)]
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
) -> PyResult<(
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray1<f32>>,
    usize,
    f64,
    String,
)> {
    let x = x.as_array().to_owned();
    let y = y.as_slice()?.to_vec();
    let weights = sample_weight
        .map(|w| w.as_slice().map(|s| s.to_vec()))
        .transpose()?;
    let device = device.to_string();
    let trained = py.detach(move || -> Result<_, Error> {
        let shape = Shape { d: x.ncols(), k };
        let source = InMemory::from_arrays("the training rows", x, y, k)?;
        let mut source: Box<dyn RowSource> = match weights {
            Some(w) => Box::new(softmax_wgpu::data::Weighted::new(
                source,
                w.into(),
                std::path::Path::new("sample_weight"),
            )?),
            None => Box::new(source),
        };
        let cfg = TrainConfig {
            optimizer: Optimizer::Lbfgs(LbfgsOptions {
                tol,
                max_iter,
                ..LbfgsOptions::default()
            }),
            l2,
            val_split: 0.0,
            standardize: false,
            class_weights: class_weight,
            ..TrainConfig::default()
        };
        let gpu = match device.as_str() {
            "cpu" => None,
            "auto" if !hardware_adapter() => None,
            "auto" => Some(context("gpu")?),
            other => Some(context(other)?),
        };
        let mut backend: Box<dyn Backend + '_> = match &gpu {
            None => Box::new(FastCpu::new(shape)?),
            Some(ctx) => Box::new(GpuBackend::new(ctx, shape, &GpuOptions::default())?),
        };
        let reports = softmax_wgpu::fit(backend.as_mut(), source.as_mut(), None, &cfg, &mut [])?;
        let last = reports.last();
        let iterations = last.and_then(|r| r.lbfgs).map_or(0, |it| it.iteration);
        let objective = last.map_or(f64::NAN, |r| r.train_loss);
        let params = backend.params()?;
        Ok((params, iterations, objective, backend.device()))
    });
    let (params, iterations, objective, device) = trained.map_err(to_py)?;
    let coef = PyArray2::from_owned_array(py, params.w.t().to_owned());
    let intercept = PyArray1::from_owned_array(py, params.b);
    Ok((coef, intercept, iterations, objective, device))
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
    m.add_function(wrap_pyfunction!(adapters, m)?)?;
    m.add_function(wrap_pyfunction!(save_model, m)?)?;
    m.add_function(wrap_pyfunction!(load_model, m)?)?;
    Ok(())
}
