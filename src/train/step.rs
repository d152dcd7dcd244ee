//! One step assembled from parts: a step's rows may arrive in several parts (a batch that straddles two streamed
//! chunks); each part is accumulated, and the step is combined, scheduled and applied when its rows are in.

use crate::config::TrainConfig;
use crate::error::Result;
use crate::optim::Update;
use crate::schedule::Schedule;

use super::{Backend, Batch, Observer, Reducer, StepEvent};

/// A step being assembled from parts: accumulated part by part, then combined and applied at the scheduled rate.
pub(super) struct Stepper<'r> {
    pub(super) batch: usize,
    pub(super) in_batch: usize,
    pub(super) step: u64,
    pub(super) epoch: usize,
    /// Steps of the current epoch taken (a resumed epoch starts with those its checkpoint had taken).
    pub(super) in_epoch: usize,
    /// Steps in an epoch, when the training rows are counted.
    pub(super) epoch_steps: Option<usize>,
    pub(super) update: Update,
    pub(super) base_lr: f32,
    pub(super) schedule: Schedule,
    pub(super) total_steps: u64,
    pub(super) reducer: &'r mut dyn Reducer,
}

impl<'r> Stepper<'r> {
    /// The steps of a run under `cfg` over `rows` training rows (when counted), combined by `reducer`.
    pub(super) fn new(cfg: &TrainConfig, rows: Option<u64>, reducer: &'r mut dyn Reducer) -> Self {
        // A batch larger than the data set is the whole data set (full-batch gradient descent).
        let batch = rows.map_or(cfg.batch_size, |n| {
            cfg.batch_size.min(usize::try_from(n).unwrap_or(usize::MAX))
        });
        let batch = batch.max(1);
        let epoch_steps =
            rows.map(|n| usize::try_from(n.div_ceil(batch as u64)).unwrap_or(usize::MAX));
        // Steps in the run, for schedules that span it: the full batches and the partial one of each epoch.
        let total_steps = rows.map_or(u64::MAX, |n| {
            n.div_ceil(batch as u64).saturating_mul(cfg.epochs as u64)
        });
        Stepper {
            batch,
            in_batch: 0,
            step: 0,
            epoch: 0,
            in_epoch: 0,
            epoch_steps,
            update: Update {
                optimizer: cfg.optimizer,
                lr: cfg.lr,
                l2: cfg.l2,
                l1: cfg.l1,
            },
            base_lr: cfg.lr,
            schedule: cfg.schedule,
            total_steps,
            reducer,
        }
    }

    /// Starts epoch `epoch`, of which `done` steps were taken before (by the run a checkpoint resumes).
    pub(super) fn start_epoch(&mut self, epoch: usize, done: usize) {
        self.epoch = epoch;
        self.in_epoch = done;
    }

    /// Rows the current step still takes.
    pub(super) fn room(&self) -> usize {
        self.batch - self.in_batch
    }

    /// Accumulates one part of the current step; `seen` is what observers are shown of it.
    pub(super) fn part(
        &mut self,
        backend: &mut dyn Backend,
        observers: &mut [&mut dyn Observer],
        part: &Batch<'_>,
        seen: &Batch<'_>,
    ) -> Result<()> {
        backend.accumulate(part)?;
        for o in observers.iter_mut() {
            o.on_batch(seen, backend)?;
        }
        self.in_batch += part.len();
        if self.in_batch >= self.batch {
            self.finish(backend, observers)?;
        }
        Ok(())
    }

    /// One part of the current step in a run of several processes: `rows` of the step's rows, of which `local` are
    /// this process's (None: none of them, and it contributes empty sums to the step's combine).
    pub(super) fn shard_part(
        &mut self,
        backend: &mut dyn Backend,
        observers: &mut [&mut dyn Observer],
        local: Option<&Batch<'_>>,
        rows: usize,
    ) -> Result<()> {
        if let Some(part) = local {
            backend.accumulate(part)?;
            for o in observers.iter_mut() {
                o.on_batch(part, backend)?;
            }
        }
        self.in_batch += rows;
        if self.in_batch >= self.batch {
            self.finish(backend, observers)?;
        }
        Ok(())
    }

    /// Combines and applies what the current step accumulated (nothing when it is empty).
    pub(super) fn finish(
        &mut self,
        backend: &mut dyn Backend,
        observers: &mut [&mut dyn Observer],
    ) -> Result<()> {
        if self.in_batch == 0 {
            return Ok(());
        }
        backend.combine(self.reducer)?;
        self.update.lr = self
            .schedule
            .lr(self.base_lr, self.step + 1, self.total_steps);
        backend.update(&self.update)?;
        self.step += 1;
        self.in_epoch += 1;
        let event = StepEvent {
            step: self.step,
            epoch: self.epoch,
            in_epoch: self.in_epoch,
            last_in_epoch: self.epoch_steps == Some(self.in_epoch),
            rows: self.in_batch,
            update: &self.update,
        };
        self.in_batch = 0;
        for o in observers.iter_mut() {
            o.on_step(&event, backend)?;
        }
        Ok(())
    }
}
