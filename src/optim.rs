//! Optimizer values: which rule updates the weights ([`Optimizer`]), one step's request ([`Update`]), the state a
//! rule keeps beside the weights ([`OptimizerState`]), and the hyper-parameters every backend's step is built from
//! ([`StepParams`]). The arithmetic lives with each backend (the CPU mirrors in `cpu`, the kernels in `gpu`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::params::Shape;

/// The names of the state slots an optimizer keeps, by their count: none (SGD, L-BFGS), the velocity (momentum),
/// the first and second moments (Adam). The one list [`Optimizer::slots`], [`OptimizerState::check`] and [`state_of`]
/// read.
const SLOTS: [&[&str]; 3] = [&[], &["velocity"], &["m", "v"]];

/// The optimizer applied by [`crate::train::Backend::update`]. New optimizers (momentum, Adam …) are new variants carrying their
/// hyper-parameters; their state is kept by the backend beside the weights ([`OptimizerState`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Optimizer {
    /// Plain gradient descent: W ← W − α·(G/B + λ·W), b ← b − α·g_b/B.
    #[default]
    Sgd,
    /// Heavy-ball momentum (PyTorch's): v ← μ·v + g, then W ← W − α·v, or with Nesterov W ← W − α·(g + μ·v),
    /// where g = G/B + λ·W (b: g_b/B).
    Momentum {
        /// μ, in [0, 1).
        momentum: f32,
        /// Nesterov's look-ahead.
        nesterov: bool,
    },
    /// Adam (Kingma & Ba) with bias correction; `weight_decay` > 0 makes it AdamW (decay decoupled from the
    /// moments: W ← W − α·(m̂/(√v̂ + ε) + wd·W)), while `--l2` adds λ·W to the gradient as for the others.
    Adam {
        /// β₁, in [0, 1).
        beta1: f32,
        /// β₂, in [0, 1).
        beta2: f32,
        /// ε, positive.
        eps: f32,
        /// Decoupled weight decay (AdamW), ≥ 0.
        weight_decay: f32,
    },
    /// Full-batch L-BFGS on J = mean cross-entropy + λ/2·‖W‖² (see [`crate::lbfgs`] for its stopping rules): each
    /// iteration is one line search of full passes over the training rows. Not a per-step rule: [`crate::train::fit`]
    /// runs it instead of minibatch steps, and a backend's [`crate::train::Backend::update`] refuses it.
    Lbfgs(crate::lbfgs::LbfgsOptions),
}

impl Optimizer {
    /// The state this optimizer keeps per parameter (each a tensor over W and b): none, the velocity, or the two
    /// moments.
    pub fn slots(&self) -> &'static [&'static str] {
        match self {
            Optimizer::Sgd | Optimizer::Lbfgs(_) => SLOTS[0],
            Optimizer::Momentum { .. } => SLOTS[1],
            Optimizer::Adam { .. } => SLOTS[2],
        }
    }

    /// Checks the hyper-parameters; the error names the flag.
    pub fn check(&self) -> Result<()> {
        let unit = |flag: &str, v: f32| {
            if v.is_finite() && (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::param(flag, "in [0, 1)", v))
            }
        };
        match *self {
            Optimizer::Sgd => Ok(()),
            Optimizer::Lbfgs(o) => o.check(),
            Optimizer::Momentum { momentum, .. } => unit("--momentum", momentum),
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                unit("--beta1", beta1)?;
                unit("--beta2", beta2)?;
                if !(eps.is_finite() && eps > 0.0) {
                    return Err(Error::param("--eps", "a positive, finite number", eps));
                }
                if !(weight_decay.is_finite() && weight_decay >= 0.0) {
                    return Err(Error::param(
                        "--weight-decay",
                        "a finite number ≥ 0",
                        weight_decay,
                    ));
                }
                Ok(())
            }
        }
    }

    /// Adam's bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ for update `t` (1-based), computed once on the host so every
    /// backend uses the same values; (1, 1) for the others.
    pub fn corrections(&self, t: u64) -> (f32, f32) {
        match *self {
            Optimizer::Adam { beta1, beta2, .. } => {
                let t = i32::try_from(t).unwrap_or(i32::MAX);
                (
                    (1.0 - f64::from(beta1).powi(t)) as f32,
                    (1.0 - f64::from(beta2).powi(t)) as f32,
                )
            }
            _ => (1.0, 1.0),
        }
    }
}

/// One update: the optimizer, this step's learning rate (a schedule may change it every step) and the L2 penalty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    /// Which optimizer.
    pub optimizer: Optimizer,
    /// Step size α for this step.
    pub lr: f32,
    /// L2 penalty λ on W (never on b).
    pub l2: f32,
    /// L1 penalty λ₁ on W (never on b), applied as a proximal step after the gradient step:
    /// w ← sign(w)·max(|w| − α·λ₁, 0), so that weights become exactly zero.
    pub l1: f32,
}

/// What an optimizer keeps between steps, beside the weights: a step count and named tensors (none for SGD;
/// velocities for momentum; first and second moments for Adam). What checkpoints save and resume restores.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Updates applied.
    pub steps: u64,
    /// Named state tensors, each with its shape.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl OptimizerState {
    /// Checks a state for a model of `shape`: each tensor named after an optimizer slot (`velocity`, `m`, `v`),
    /// flat over W then b (d·k + k values), the slots of one optimizer.
    pub fn check(&self, shape: Shape) -> Result<()> {
        let n = shape.d * shape.k + shape.k;
        let names: Vec<&str> = self
            .tensors
            .iter()
            .map(|(name, _, _)| name.as_str())
            .collect();
        if !SLOTS.contains(&names.as_slice()) {
            return Err(Error::shape(
                "optimizer state tensors",
                "none, [velocity] or [m, v]",
                format!("{names:?}"),
            ));
        }
        for (name, dims, values) in &self.tensors {
            if dims.as_slice() != [n] || values.len() != n {
                return Err(Error::shape(
                    format!("optimizer state {name}"),
                    format!("[{n}] (W then b)"),
                    format!("{dims:?} with {} values", values.len()),
                ));
            }
        }
        Ok(())
    }

    /// The tensor of slot `name`, when the state has it.
    pub fn slot(&self, name: &str) -> Option<&[f32]> {
        self.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| v.as_slice())
    }
}

/// An optimizer state from a step count and its slots (none, the velocity, or the two moments), flat over W then b.
pub fn state_of(steps: u64, slots: &[Vec<f32>]) -> OptimizerState {
    let names = SLOTS[slots.len().min(2)];
    OptimizerState {
        steps,
        tensors: names
            .iter()
            .zip(slots)
            .map(|(name, s)| (name.to_string(), vec![s.len()], s.clone()))
            .collect(),
    }
}

/// The hyper-parameters of one optimizer step, in the precision of the path that takes it.
#[derive(Debug, Clone, Copy)]
pub struct StepParams<T> {
    /// α.
    pub lr: T,
    /// λ (added to W's gradient).
    pub l2: T,
    /// λ₁ (the proximal shrink after the step).
    pub l1: T,
    /// Rows the gradient sums cover.
    pub rows: T,
    /// μ (momentum) or β₁ (Adam).
    pub beta1: T,
    /// β₂ (Adam).
    pub beta2: T,
    /// ε (Adam).
    pub eps: T,
    /// Decoupled weight decay (AdamW).
    pub weight_decay: T,
    /// Adam's bias corrections 1 − β₁ᵗ, 1 − β₂ᵗ.
    pub c1: T,
    /// See `c1`.
    pub c2: T,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl StepParams<f32> {
    /// The parameters of the step `u` asks for, over `rows` rows, as update number `t` (1-based, for Adam's bias
    /// corrections), and whether it is Adam's; None for plain SGD, which keeps no state. What every backend's
    /// momentum and Adam steps are built from.
    /// An L-BFGS `u` is refused: it is not a per-step rule (`fit` runs it by full passes).
    pub fn of(u: &Update, rows: f32, t: u64) -> Result<Option<(Self, bool)>> {
        let (c1, c2) = u.optimizer.corrections(t);
        let mut p = StepParams {
            lr: u.lr,
            l2: u.l2,
            l1: u.l1,
            rows,
            beta1: 0.0,
            beta2: 0.0,
            eps: 1.0,
            weight_decay: 0.0,
            c1,
            c2,
            nesterov: false,
        };
        let adam = match u.optimizer {
            Optimizer::Sgd => return Ok(None),
            Optimizer::Lbfgs(_) => {
                return Err(Error::Internal(
                    "L-BFGS is not a per-step update: train::fit runs it by full passes".into(),
                ))
            }
            Optimizer::Momentum { momentum, nesterov } => {
                p.beta1 = momentum;
                p.nesterov = nesterov;
                false
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                p.beta1 = beta1;
                p.beta2 = beta2;
                p.eps = eps;
                p.weight_decay = weight_decay;
                true
            }
        };
        Ok(Some((p, adam)))
    }

    /// The same parameters in another precision.
    pub fn map<U>(&self, f: impl Fn(f32) -> U) -> StepParams<U> {
        StepParams {
            lr: f(self.lr),
            l2: f(self.l2),
            l1: f(self.l1),
            rows: f(self.rows),
            beta1: f(self.beta1),
            beta2: f(self.beta2),
            eps: f(self.eps),
            weight_decay: f(self.weight_decay),
            c1: f(self.c1),
            c2: f(self.c2),
            nesterov: self.nesterov,
        }
    }

    /// The same parameters in f64, for the reference path.
    pub fn to_f64(&self) -> StepParams<f64> {
        self.map(f64::from)
    }
}

/// Makes `slots` the `wanted` state slots of `n` values each: zeros on an optimizer's first step; an error when a
/// state of another optimizer is there.
pub(crate) fn ensure_slots<T: Clone>(
    slots: &mut Vec<Vec<T>>,
    wanted: usize,
    n: usize,
    zero: T,
) -> Result<()> {
    if slots.len() != wanted {
        if !slots.is_empty() {
            return Err(Error::Internal(format!(
                "optimizer state of {} slots given to an optimizer with {wanted}",
                slots.len()
            )));
        }
        *slots = vec![vec![zero; n]; wanted];
    }
    Ok(())
}
