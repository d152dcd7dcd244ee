//! The values every layer shares: the model's shape, its parameters, the element types the CPU paths compute in,
//! and the weights a batch's rows carry into the loss.

use ndarray::{Array1, Array2, LinalgScalar, ScalarOperand};
use num_traits::{Float, FromPrimitive};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The size of the model: `d` features, `k` classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Features.
    pub d: usize,
    /// Classes.
    pub k: usize,
}

/// Fitted parameters in the layout the kernels use: `w` is [d, k], `b` is [k].
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Weights, [d, k].
    pub w: Array2<f32>,
    /// Biases, [k].
    pub b: Array1<f32>,
}

impl Params {
    /// Zero weights of a shape.
    pub fn zeros(shape: Shape) -> Self {
        Params {
            w: Array2::zeros((shape.d, shape.k)),
            b: Array1::zeros(shape.k),
        }
    }

    /// ‖W‖², accumulated in f64.
    pub fn w_norm_sq(&self) -> f64 {
        self.w.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
    }

    /// Checks that these are weights of `shape`.
    pub fn check(&self, shape: Shape) -> Result<()> {
        if self.w.dim() != (shape.d, shape.k) || self.b.len() != shape.k {
            return Err(Error::shape(
                "parameters W [d, k] and b [k]",
                format!("W {:?}, b [{}]", (shape.d, shape.k), shape.k),
                format!("W {:?}, b [{}]", self.w.dim(), self.b.len()),
            ));
        }
        Ok(())
    }
}

/// A floating-point type the reference path computes in.
pub trait Real:
    Float + FromPrimitive + LinalgScalar + ScalarOperand + std::fmt::Debug + Send + Sync + 'static
{
}
impl Real for f32 {}
impl Real for f64 {}

/// The weights of a batch's rows: by class (`cw`, one per class) and by row (`sw`, sample weights, one per row), either
/// or both or neither.
#[derive(Debug, Clone, Copy, Default)]
pub struct Weights<'a, T> {
    /// One per class.
    pub class: Option<&'a [T]>,
    /// One per row of the batch.
    pub row: Option<&'a [T]>,
}

impl<'a, T: Real> Weights<'a, T> {
    /// No weights: every row weighs 1.
    pub fn none() -> Self {
        Weights {
            class: None,
            row: None,
        }
    }

    /// The weight of row `i` of class `label`, as the kernels compute it: w_class[label] · w_row[i] (a missing factor
    /// is 1, exactly); None when there are no weights at all.
    pub fn of(&self, i: usize, label: usize) -> Option<T> {
        match (self.class, self.row) {
            (None, None) => None,
            (c, r) => Some(c.map_or(T::one(), |c| c[label]) * r.map_or(T::one(), |r| r[i])),
        }
    }
}

/// Checks class weights for a model of `shape`: one positive, finite weight per class.
pub fn check_class_weights(shape: Shape, weights: &[f32]) -> Result<()> {
    if weights.len() != shape.k {
        return Err(Error::shape(
            "class weights",
            format!("{} (one per class)", shape.k),
            weights.len(),
        ));
    }
    if let Some((c, w)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| !(w.is_finite() && **w > 0.0))
    {
        return Err(Error::param(
            "--class-weight",
            "positive, finite weights",
            format!("{w} for class {c}"),
        ));
    }
    Ok(())
}

/// Sums over rows of cross-entropy and of correct predictions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sums {
    /// Σ −log S_y.
    pub loss: f64,
    /// Σ [argmax z = y].
    pub correct: f64,
    /// Rows summed.
    pub rows: usize,
}

impl Sums {
    /// Adds one batch.
    pub fn add(&mut self, loss: f64, correct: f64, rows: usize) {
        self.loss += loss;
        self.correct += correct;
        self.rows += rows;
    }

    /// Mean cross-entropy.
    pub fn mean_loss(&self) -> f64 {
        self.loss / self.rows.max(1) as f64
    }

    /// Fraction correct.
    pub fn accuracy(&self) -> f64 {
        self.correct / self.rows.max(1) as f64
    }
}
