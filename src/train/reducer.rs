//! Where the sums of several processes meet: a [`Reducer`] adds them up between `accumulate` and `update`. [`Local`]
//! is the one-process identity.

use crate::error::Result;

/// Adds sums across the processes of a data-parallel run. [`Local`] is the one-process identity.
pub trait Reducer {
    /// True when combining changes nothing (one process): backends then leave their sums where they are.
    fn is_identity(&self) -> bool;
    /// Replaces every value by its sum over all processes, added in an order that is the same on every process.
    fn allreduce(&mut self, values: &mut [f64]) -> Result<()>;
}

/// One process: nothing to combine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Reducer for Local {
    fn is_identity(&self) -> bool {
        true
    }

    fn allreduce(&mut self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
}
