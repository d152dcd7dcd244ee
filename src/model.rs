//! A fitted model: weights, class names and the standardisation it was trained with; prediction on the CPU;
//! saving and loading as safetensors. The file holds `weight` [K, D] and `bias` [K] in f32 — the layout of
//! PyTorch's `nn.Linear(D, K)`, so `load_state_dict(safetensors.torch.load_file(path))` works — and the rest as
//! string metadata.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2, ArrayView2};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::cpu;
use crate::data::{Standardizer, MAX_CLASSES};
use crate::error::{Error, Position, Result};
pub use crate::params::Params;
use crate::params::Shape;

/// Weights, biases, class names and standardisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The parameters in kernel layout (W is [d, k]).
    pub params: Params,
    /// Class names in index order.
    pub classes: Vec<String>,
    /// Applied to features before the linear map, when training used `--standardize`.
    pub standardizer: Option<Standardizer>,
    /// The training settings, as JSON, for the record.
    pub settings: serde_json::Value,
}

impl Model {
    /// Features expected.
    pub fn features(&self) -> usize {
        self.params.w.nrows()
    }

    /// The model's shape.
    pub fn shape(&self) -> Shape {
        Shape {
            d: self.params.w.nrows(),
            k: self.params.w.ncols(),
        }
    }

    /// Class probabilities, [n, k], computed with the CPU reference path in f32.
    pub fn predict_proba(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        if x.ncols() != self.features() {
            return Err(Error::shape(
                "features of the rows to predict",
                self.features(),
                x.ncols(),
            ));
        }
        let (n, k) = (x.nrows() as u64, self.shape().k as u64);
        let what = format!("probabilities of {n} rows × {k} classes");
        // Z, S and the standardised copy of X.
        let bytes = crate::error::checked_product(&what, &[n, k.max(x.ncols() as u64), 12])?;
        crate::memory::check(&what, bytes)?;
        let mut x = x.to_owned();
        if let Some(s) = &self.standardizer {
            s.apply(&mut x);
        }
        let z = cpu::logits(x.view(), self.params.w.view(), self.params.b.view());
        let zeros = vec![0u32; z.nrows()];
        Ok(cpu::softmax(z.view(), &zeros, cpu::Weights::none()).0)
    }

    /// Class probabilities of sparse rows (a model trained on sparse data has no standardisation).
    pub fn predict_proba_sparse(&self, x: &crate::data::SparseBatch) -> Result<Array2<f32>> {
        if x.d != self.features() {
            return Err(Error::shape(
                "features of the rows to predict",
                self.features(),
                x.d,
            ));
        }
        if self.standardizer.is_some() {
            return Err(Error::Internal(
                "a standardising model given sparse rows (standardisation would make them dense)"
                    .into(),
            ));
        }
        let z = cpu::sparse_logits(x, self.params.w.view(), self.params.b.view());
        let zeros = vec![0u32; z.nrows()];
        Ok(cpu::softmax(z.view(), &zeros, cpu::Weights::none()).0)
    }

    /// The index of the most probable class of each row (first on ties).
    pub fn predict(&self, x: ArrayView2<f32>) -> Result<Vec<u32>> {
        Ok(argmax_rows(self.predict_proba(x)?.view()))
    }

    /// The safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let (d, k) = self.params.w.dim();
        let weight: Vec<f32> = self.params.w.t().iter().copied().collect(); // [k, d], row-major
        let weight_bytes: &[u8] = bytemuck::cast_slice(&weight);
        let bias = self.params.b.to_vec();
        let bias_bytes: &[u8] = bytemuck::cast_slice(&bias);
        let err = |e: safetensors::SafeTensorError| {
            Error::Internal(format!("serialising the model: {e}"))
        };
        let tensors = vec![
            (
                "weight",
                TensorView::new(Dtype::F32, vec![k, d], weight_bytes).map_err(err)?,
            ),
            (
                "bias",
                TensorView::new(Dtype::F32, vec![k], bias_bytes).map_err(err)?,
            ),
        ];
        let json = |v: &dyn erased::Json| v.json();
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        meta.insert(
            "producer".to_string(),
            format!("softmax-wgpu {}", env!("CARGO_PKG_VERSION")),
        );
        meta.insert("features".to_string(), d.to_string());
        meta.insert("classes".to_string(), json(&self.classes));
        if let Some(s) = &self.standardizer {
            meta.insert("standardize_mean".to_string(), json(&s.mean));
            meta.insert("standardize_std".to_string(), json(&s.std));
        }
        meta.insert("settings".to_string(), self.settings.to_string());
        let bytes = safetensors::serialize(tensors, Some(meta)).map_err(err)?;
        Ok(with_sorted_header(bytes))
    }

    /// Writes the model to `path` atomically: a temporary file in the same directory, renamed over `path` only
    /// once complete, so an existing file is never left half-written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        crate::atomic::write_atomically(path, &bytes)
    }

    /// Reads a model written by [`Model::save`] (or any safetensors file with `weight` [K, D] and `bias` [K] in f32
    /// and a `classes` entry in its metadata).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, &bytes)
    }

    /// [`Model::load`] on the file's bytes (`path` names it in errors). Refuses fewer than 2 classes, no features,
    /// tensors of inconsistent shapes, non-finite values and inconsistent metadata.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad = |m: String| Error::input(path, m);
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a safetensors model: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors model: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let tensor = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("no tensor {name:?}")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor {name:?} is {:?}, expected F32",
                    t.dtype()
                )));
            }
            let values = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Ok((t.shape().to_vec(), values))
        };
        let (ws, w) = tensor("weight")?;
        let (bs, b) = tensor("bias")?;
        let [k, d] = ws[..] else {
            return Err(bad(format!("weight has shape {ws:?}, expected [K, D]")));
        };
        if !(2..=MAX_CLASSES).contains(&k) || d == 0 {
            return Err(bad(format!(
                "weight has shape [{k}, {d}]: a model needs 2 to {MAX_CLASSES} classes and at least 1 feature"
            )));
        }
        if bs != [k] {
            return Err(bad(format!("bias has shape {bs:?}, expected [{k}]")));
        }
        check_finite(path, "weight", &w, d)?;
        check_finite(path, "bias", &b, 1)?;
        if let Some(f) = meta.get("features") {
            if f.parse::<usize>().ok() != Some(d) {
                return Err(bad(format!(
                    "metadata \"features\" is {f:?} but weight has {d} columns"
                )));
            }
        }
        let w = Array2::from_shape_vec((k, d), w)
            .map_err(|e| Error::Internal(e.to_string()))?
            .reversed_axes()
            .as_standard_layout()
            .to_owned();
        let meta = Metadata { path, meta: &meta };
        let classes = meta.classes(k)?;
        let standardizer = meta.standardizer(d)?;
        let settings = meta
            .meta
            .get("settings")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(serde_json::Value::Null);
        Ok(Model {
            params: Params {
                w,
                b: Array1::from(b),
            },
            classes,
            standardizer,
            settings,
        })
    }
}

/// A tensor's values must all be finite; `cols` is its row length (1 for a vector).
fn check_finite(path: &Path, name: &str, values: &[f32], cols: usize) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => {
            let at = if cols == 1 {
                Position::Index(i as u64)
            } else {
                Position::Index2((i / cols) as u64, (i % cols) as u64)
            };
            Err(Error::input_at(
                path,
                Position::Key(format!("tensor {name:?}, {at}")),
                format!("{} is not finite", values[i]),
            ))
        }
    }
}

/// A model file's string metadata, read with its checks.
struct Metadata<'a> {
    path: &'a Path,
    meta: &'a HashMap<String, String>,
}

impl Metadata<'_> {
    fn bad(&self, m: impl Into<String>) -> Error {
        Error::input(self.path, m)
    }

    /// A JSON list under `key`, if present.
    fn list(&self, key: &str) -> Result<Option<Vec<serde_json::Value>>> {
        self.meta
            .get(key)
            .map(|s| {
                serde_json::from_str(s)
                    .map_err(|e| self.bad(format!("metadata {key:?} is not a JSON list: {e}")))
            })
            .transpose()
    }

    /// `k` distinct class names (0..k when the file names none).
    fn classes(&self, k: usize) -> Result<Vec<String>> {
        let classes: Vec<String> = match self.list("classes")? {
            Some(v) if v.len() != k => {
                return Err(self.bad(format!("{} class names for {k} classes", v.len())))
            }
            Some(v) => v
                .into_iter()
                .map(|c| {
                    c.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| c.to_string())
                })
                .collect(),
            None => (0..k).map(|c| c.to_string()).collect(),
        };
        let mut unique = classes.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != k {
            return Err(self.bad("metadata \"classes\" names a class twice"));
        }
        Ok(classes)
    }

    /// `d` finite numbers under `key`.
    fn floats(&self, key: &str, v: Vec<serde_json::Value>, d: usize) -> Result<Vec<f32>> {
        let out: Option<Vec<f32>> = v.iter().map(|x| x.as_f64().map(|f| f as f32)).collect();
        match out {
            Some(o) if o.len() == d && o.iter().all(|v| v.is_finite()) => Ok(o),
            _ => Err(self.bad(format!("metadata {key:?} must hold {d} finite numbers"))),
        }
    }

    /// The standardisation, when the file has both halves of it, each of `d` values, every std > 0.
    fn standardizer(&self, d: usize) -> Result<Option<Standardizer>> {
        match (
            self.list("standardize_mean")?,
            self.list("standardize_std")?,
        ) {
            (Some(m), Some(s)) => {
                let st = Standardizer {
                    mean: self.floats("standardize_mean", m, d)?,
                    std: self.floats("standardize_std", s, d)?,
                };
                if st.std.iter().any(|v| *v <= 0.0) {
                    return Err(self.bad("metadata \"standardize_std\" must be > 0 everywhere"));
                }
                Ok(Some(st))
            }
            (None, None) => Ok(None),
            _ => {
                Err(self
                    .bad("metadata has only one of \"standardize_mean\" and \"standardize_std\""))
            }
        }
    }
}

/// The index of the largest value of each row (first on ties).
pub fn argmax_rows(p: ArrayView2<f32>) -> Vec<u32> {
    p.outer_iter()
        .map(|row| {
            let mut best = 0;
            for (c, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = c;
                }
            }
            best as u32
        })
        .collect()
}

mod erased {
    /// Serialises a value to a JSON string (values here always serialise).
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

/// The same safetensors file with its JSON header's keys in sorted order. safetensors writes the `__metadata__`
/// map in `HashMap` order, which differs from save to save: one model saved twice gave different files, and two
/// runs' files differed in their layout rather than only where their contents differ (a run also records its
/// timings in `settings`). Keys and values are unchanged (so is every data offset); the header keeps its
/// length, padded with spaces as the format allows. Anything unexpected returns the bytes as they were.
fn with_sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    use serde_json::{Map, Value};
    fn sorted(map: Map<String, Value>) -> Map<String, Value> {
        let mut pairs: Vec<(String, Value)> = map.into_iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs
            .into_iter()
            .map(|(k, v)| match v {
                Value::Object(inner) => (k, Value::Object(sorted(inner))),
                v => (k, v),
            })
            .collect()
    }
    let Some(n) = bytes
        .get(..8)
        .and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok())
    else {
        return bytes;
    };
    let Some(Ok(Value::Object(header))) = bytes.get(8..8 + n).map(serde_json::from_slice) else {
        return bytes;
    };
    let Ok(mut json) = serde_json::to_vec(&Value::Object(sorted(header))) else {
        return bytes;
    };
    if json.len() > n {
        return bytes;
    }
    json.resize(n, b' ');
    let mut out = bytes;
    out[8..8 + n].copy_from_slice(&json);
    out
}

#[cfg(test)]
mod header_tests {
    use super::*;

    fn model() -> Model {
        Model {
            params: Params {
                w: ndarray::Array2::from_shape_fn((3, 2), |(i, j)| (i + j) as f32 * 0.1),
                b: ndarray::Array1::from(vec![0.5, -0.5]),
            },
            classes: vec!["cat".into(), "dog".into()],
            standardizer: Some(crate::data::Standardizer {
                mean: vec![0.0, 1.0, 2.0],
                std: vec![1.0, 2.0, 3.0],
            }),
            settings: serde_json::json!({"lr": 0.1, "epochs": 3}),
        }
    }

    #[test]
    fn the_same_model_saves_to_the_same_bytes_and_loads_back() {
        // Seven metadata keys: a HashMap's order repeats by chance about once in 5,040 maps, so eight saves in a
        // row agreeing without the sorted header would be a coincidence beyond measure.
        let m = model();
        let first = m.to_bytes().unwrap();
        for _ in 0..8 {
            assert_eq!(m.to_bytes().unwrap(), first);
        }
        let back = Model::from_bytes(Path::new("m.safetensors"), &first).unwrap();
        assert_eq!(back.params, m.params);
        assert_eq!(back.classes, m.classes);
        assert_eq!(back.settings, m.settings);
        let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&first[8..8 + n]).unwrap();
        let at = |key: &str| header.find(key).unwrap();
        assert!(at("\"classes\"") < at("\"features\"") && at("\"features\"") < at("\"format\""));
        assert!(
            at("\"producer\"") < at("\"settings\"")
                && at("\"settings\"") < at("\"standardize_mean\"")
        );
    }
}
