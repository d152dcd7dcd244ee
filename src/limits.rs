//! Bounds on a run's counts that several layers check against: the settings, L-BFGS's iteration cap and the
//! backends' batch sizes read them from here.

/// Most epochs a run may ask for: a million passes is already years of work on any data worth training on, and the
/// bound keeps a mistyped count from being taken literally.
pub const MAX_EPOCHS: usize = 1_000_000;

/// Largest batch in rows: row indices and counts travel to the GPU as u32.
pub const MAX_BATCH: usize = u32::MAX as usize;
