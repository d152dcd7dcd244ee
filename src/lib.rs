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
//! * grad    `G = Xᵀ·R / B`, `g_b = colsum(R) / B`
//! * update  `W ← W − α·(G + λ·W)`, `b ← b − α·g_b`
//!
//! Each operation is one WGSL kernel in `shaders/` ([`gpu::Kernel`]) and one function of the same name in [`cpu`].
//! [`train::fit`] drives either through the [`train::Backend`] trait.

pub mod config;
pub mod cpu;
pub mod data;
pub mod error;
pub mod gpu;
pub mod model;
pub mod rng;
pub mod shadow;
pub mod train;
pub mod validate;

pub use config::TrainConfig;
pub use data::Dataset;
pub use error::{Error, Result};
pub use model::Model;
pub use train::{fit, Backend, EpochReport, Params};
