//! The training seam: one [`Backend`] interface that every trainer implements, and the loop ([`fit`]) and the
//! full-batch objective ([`objective`]) written once over it. docs/ARCHITECTURE.md draws the whole picture.
//!
//! A step is three calls, so that something can stand between the gradient and the update:
//!
//! ```text
//!   accumulate(batch)   forward pass + gradient *sums* Σ xᵀ(s − y), Σ (s − y) and loss / hit sums, left on the device
//!   combine(reducer)    the point where sums from several processes are added (identity today; an allreduce later)
//!   update(step)        the optimizer turns the (combined) sums into new weights; its state lives with the backend
//! ```
//!
//! Data reaches a backend only through a [`crate::data::RowSource`] of checked row chunks: the backend either copies the whole
//! source into its own memory once ([`Backend::hold`], resident data) and is then given batches as row indices into
//! it, or is handed each batch as host rows ([`Batch::host`]). Streamed data and [`objective`] hold one chunk at a
//! time and release it ([`Backend::release`]). Nothing
//! above the source indexes the data itself; the shuffle is a permutation of a held set's own rows ([`Held::order`]).
//!
//! Progress, the JSON log and the `--check-every` shadow are [`Observer`]s: they see every step and every epoch from
//! outside the interface, and get the backend to read weights from when they need them.
//!
//! Minibatch optimizers are steps of that loop (`minibatch.rs`, `step.rs`, `stream.rs`); full-batch L-BFGS
//! ([`Optimizer::Lbfgs`], `full_batch.rs`) drives
//! the same three calls over every row for each evaluation of the objective, and keeps its own state on the host.
//!
//! Implementors: [`crate::cpu::CpuBackend`] (f32 and f64), [`crate::cpu::FastCpu`], [`crate::gpu::GpuBackend`]
//! (dense and sparse). With the feature `mpi`, `distributed.rs` is the [`Reducer`] of processes under `mpirun`.
//!
//! The files, one concern each: `seam.rs` (the [`Backend`] trait and its sums), `reducer.rs`, `batch.rs` (held sets,
//! batches, epoch orders), `observe.rs` (observers, events, reports), `residency.rs` (held or streamed),
//! `begin.rs` (what every run does first), `minibatch.rs` (the loop), `step.rs` (a step from parts), `stream.rs`
//! (streamed epochs), `evaluate.rs`, `objective.rs` and `full_batch.rs` (the objective and L-BFGS).

mod batch;
mod begin;
mod choice;
mod class_weight;
#[cfg(feature = "mpi")]
mod distributed;
mod evaluate;
mod full_batch;
mod minibatch;
mod objective;
mod observe;
mod reducer;
mod residency;
mod seam;
mod step;
mod stream;

pub use crate::data::held_row_bytes;
pub use crate::optim::{state_of, Optimizer, OptimizerState, Update};
pub use crate::params::{check_class_weights, Params, Shape, Sums};
pub use batch::{epoch_order, Batch, BatchRows, Held};
use begin::{begin, weighted, Begun};
pub use choice::{choose, default_l2_numerator, Choice, Method, Request, Why, AUTO_MAX_EPOCHS};
pub use class_weight::class_weights;
#[cfg(feature = "mpi")]
pub use distributed::Mpi;
pub use evaluate::{evaluate, evaluate_streamed};
pub use minibatch::{fit, fit_with};
pub use objective::{objective, objective_held};
pub use observe::{EpochReport, Observer, OnEpoch, OnRows, Start, StepEvent, StreamReport};
pub use reducer::{
    reduce_held_out, reduce_sums, standardizer, Layout, Local, Reducer, ThreadGroup, Threaded,
};
pub use residency::{
    default_memory_budget, residency, smallest_memory_budget, Residency, MAX_CHUNK_BYTES,
    MIN_CHUNK_ROWS,
};
pub use seam::{Backend, Gradient};
use step::Stepper;
use stream::{for_each_held_chunk, stream_epoch};
