//! The GPU path: adapters and devices ([`context`]), the kernels and their pipelines ([`kernels`]), buffers
//! ([`buffers`]), single-kernel runs for testing and validation ([`ops`]) and the trainer ([`GpuBackend`]).

pub mod buffers;
pub mod context;
pub mod kernels;
pub mod ops;
mod trainer;
pub mod tune;

pub use context::{adapters, select_adapter, try_open, AdapterSummary, GpuContext};
pub use kernels::Kernel;
pub use trainer::{DispatchShape, GpuBackend, GpuOptions, KernelTime};
