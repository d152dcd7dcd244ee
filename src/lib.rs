//! # softmax-wgpu
//!
//! Softmax (multinomial logistic) regression trained on any GPU through [`wgpu`], with every kernel mirrored by
//! an [`ndarray`] reference implementation on the CPU.
//!
//! One training step on a batch of B rows (X: [B, D], class indices y):
//!
//! * logits  `Z = X·W + b`
//! * softmax `S_i = exp(z_i − max z) / Σ_j exp(z_j − max z)`, loss `−log S_y = logsumexp(z) − z_y`
//! * residual `R = S − onehot(y)` (= ∂L/∂Z)
//! * grad    the gradient sums `G = Xᵀ·R`, `g_b = colsum(R)` (left on the device, combinable across processes)
//! * update  `W ← W − α·(G/B + λ·W)`, `b ← b − α·g_b/B`
//!
//! Each operation is one WGSL kernel in `shaders/` ([`gpu::Kernel`]) and one function of the same name in [`cpu`].
//! [`train::fit`] drives either through the [`train::Backend`] trait, the one seam every trainer implements; data
//! reaches it through a [`data::RowSource`]. docs/ARCHITECTURE.md draws the whole design.

pub mod atomic;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod data;
pub mod error;
pub mod gpu;
pub mod lbfgs;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod numerics;
pub mod optim;
pub mod params;
pub mod plot;
pub mod rng;
pub mod schedule;
pub mod shadow;
pub mod stopping;
pub mod train;
pub mod validate;

pub use config::TrainConfig;
pub use data::{Dataset, InMemory, RowSource};
pub use error::{Error, Result};
pub use model::{Model, Params};
pub use train::{fit, Backend, EpochReport, Shape};
