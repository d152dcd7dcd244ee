//! Checkpoints of a training run and exact resume. A [`Checkpointer`] observer writes, every N steps, the weights, the
//! optimizer's state, and where the run is (epoch, steps done in it, steps in all) to a file — atomically: a
//! temporary file beside it, fsync, rename — so a run killed at any moment leaves the last complete checkpoint.
//! Shuffles and schedules are functions of (seed, epoch) and of the step count; the stopping rules' state
//! ([`crate::stopping::StopState`]) and early stopping's best weights go in beside the position, so `fit` given the
//! checkpoint's [`Resume`] point takes exactly the steps the uninterrupted run would have taken and stops where it
//! stops. A checkpoint due at an epoch's last step is written after that epoch's report, with the rules' verdict on
//! it; one written mid-epoch holds the epoch's loss sums so far, which the resumed epoch starts from, so its reported
//! training loss (and a `--tol` decision on it) is the uninterrupted run's.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::config::Resume;
use crate::config::TrainConfig;
use crate::error::{Error, Position, Result};
use crate::params::Params;
use crate::params::Sums;
use crate::stopping::StopState;
use crate::train::{Backend, EpochReport, Observer, OptimizerState, Shape, StepEvent};

/// Everything a checkpoint file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The format's version.
    pub version: u32,
    /// What the run was (its settings and data, which a resumed run must share), as the JSON text it was written
    /// as, compared as text: numbers parsed back from JSON need not print the same.
    pub run: String,
    /// Where it was.
    pub at: Resume,
    /// The model's shape.
    pub shape: Shape,
    /// W, [d, k] row-major, and b.
    pub w: Vec<f32>,
    /// See `w`.
    pub b: Vec<f32>,
    /// The optimizer's state.
    pub optimizer: OptimizerState,
    /// CRC-32 of each tensor's little-endian f32 bytes, by name (`w`, `b`, `optimizer.<slot>`, `best.w`, `best.b`):
    /// a weight altered or damaged on disk is refused on resume rather than trained on. Version 1 files have none.
    #[serde(default)]
    pub checksums: std::collections::BTreeMap<String, u32>,
}

/// The format this build writes; it reads this one and version 1 (the same, without checksums).
pub const VERSION: u32 = 2;

/// The CRC-32 of `values` as little-endian f32 bytes.
fn crc(values: &[f32]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for v in values {
        h.update(&v.to_le_bytes());
    }
    h.finalize()
}

impl Checkpoint {
    /// Reads and checks a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let c: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| {
            Error::input_at(
                path,
                Position::Line(e.line() as u64),
                format!("not a softmax-wgpu checkpoint (or a damaged one): {e}"),
            )
        })?;
        if c.version != VERSION && c.version != 1 {
            return Err(Error::input(
                path,
                format!(
                    "checkpoint version {}, this build reads 1 to {VERSION}",
                    c.version
                ),
            ));
        }
        if c.version >= 2 {
            for (name, values) in c.tensors() {
                match c.checksums.get(&name) {
                    Some(&sum) if sum == crc(values) => {}
                    Some(_) => {
                        return Err(Error::input(
                            path,
                            format!(
                                "damaged: the tensor {name} does not match its checksum (the file was altered \
                                 or damaged since it was written)"
                            ),
                        ))
                    }
                    None => {
                        return Err(Error::input(
                            path,
                            format!("damaged: the tensor {name} has no checksum"),
                        ))
                    }
                }
            }
        }
        let (d, k) = (c.shape.d, c.shape.k);
        if c.w.len() != d * k || c.b.len() != k || c.at.epoch == 0 {
            return Err(Error::input(
                path,
                format!(
                    "damaged: {} weights and {} biases for {d} features × {k} classes, epoch {}",
                    c.w.len(),
                    c.b.len(),
                    c.at.epoch
                ),
            ));
        }
        c.optimizer
            .check(c.shape)
            .map_err(|e| Error::input(path, format!("damaged optimizer state: {e}")))?;
        if let Some((name, _)) = c
            .tensors()
            .find(|(_, values)| values.iter().any(|v| !v.is_finite()))
        {
            return Err(Error::input(
                path,
                format!("damaged: a value of the tensor {name} is not finite"),
            ));
        }
        Ok(c)
    }

    /// Every tensor the checkpoint holds, by the name its checksum is recorded under.
    fn tensors(&self) -> impl Iterator<Item = (String, &[f32])> {
        let best = self.at.best.iter().flat_map(|(w, b)| {
            [
                ("best.w".to_string(), w.as_slice()),
                ("best.b".to_string(), b.as_slice()),
            ]
        });
        [
            ("w".to_string(), self.w.as_slice()),
            ("b".to_string(), self.b.as_slice()),
        ]
        .into_iter()
        .chain(
            self.optimizer
                .tensors
                .iter()
                .map(|(name, _, values)| (format!("optimizer.{name}"), values.as_slice())),
        )
        .chain(best)
    }

    /// Records the checksum of every tensor.
    fn seal(&mut self) {
        self.checksums = self
            .tensors()
            .map(|(name, values)| (name, crc(values)))
            .collect();
    }

    /// Refuses a checkpoint of another run, naming the first setting or data fact that differs.
    pub fn check_run(&self, path: &Path, run: &str) -> Result<()> {
        if self.run == run {
            return Ok(());
        }
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_default();
        let (mine, theirs) = (parse(&self.run), parse(run));
        let flat = |v: &serde_json::Value| -> Vec<(String, String)> {
            let mut out = Vec::new();
            if let Some(o) = v.as_object() {
                for (k, v) in o {
                    match v.as_object() {
                        Some(inner) => out.extend(
                            inner
                                .iter()
                                .map(|(k2, v2)| (format!("{k}.{k2}"), v2.to_string())),
                        ),
                        None => out.push((k.clone(), v.to_string())),
                    }
                }
            }
            out
        };
        let (a, b) = (flat(&mine), flat(&theirs));
        let differs = b.iter().find(|(k, v)| {
            a.iter()
                .find(|(k2, _)| k2 == k)
                .is_none_or(|(_, v2)| v2 != v)
        });
        Err(Error::input(
            path,
            match differs {
                Some((k, v)) => format!(
                    "was written by another run: {k} is {} there, {v} here",
                    a.iter()
                        .find(|(k2, _)| k2 == k)
                        .map_or("missing", |(_, v2)| v2.as_str())
                ),
                None => "was written by another run (its settings differ)".to_string(),
            },
        ))
    }

    /// The weights.
    pub fn params(&self) -> Result<Params> {
        Ok(Params {
            w: ndarray::Array2::from_shape_vec((self.shape.d, self.shape.k), self.w.clone())
                .map_err(|e| Error::Internal(format!("checkpoint weights: {e}")))?,
            b: ndarray::Array1::from(self.b.clone()),
        })
    }

    /// Puts the checkpoint's weights and optimizer state into `backend`.
    pub fn restore(&self, backend: &mut dyn Backend) -> Result<()> {
        backend.set_params(&self.params()?)?;
        backend.set_optimizer_state(&self.optimizer)
    }
}

/// What identifies a run for its checkpoints: every setting but the number of epochs (a resumed run may train
/// longer), and the data's name, size and shape. `rows` is the whole data set's: in a run of several processes, the
/// rows of all shards ([`crate::train::Layout::total`]), so that every process names the same run. The memory
/// budgets are not part of it but what they decide is (`residency`: held, or streamed in chunks of so many rows,
/// which orders the rows): a default budget read from the memory available differs from one run to the next
/// without changing the run, while a budget that changes the chunks changes the trajectory.
pub fn run_identity(
    cfg: &TrainConfig,
    data: &str,
    rows: Option<u64>,
    shape: Shape,
    residency: crate::train::Residency,
) -> String {
    let mut settings = serde_json::to_value(cfg).unwrap_or_default();
    if let Some(o) = settings.as_object_mut() {
        o.remove("epochs");
        o.remove("memory_budget");
        o.remove("device_memory");
    }
    serde_json::json!({
        "residency": residency,
        "settings": settings,
        "data": data,
        "rows": rows,
        "features": shape.d,
        "classes": shape.k,
    })
    .to_string()
}

/// Writes a checkpoint every `every` steps. A checkpoint that falls on an epoch's last step is written once the
/// epoch's report is in, so that it holds the stopping rules' verdict on that epoch: the resumed run starts with the
/// next epoch and stops where the uninterrupted run stops.
#[derive(Debug)]
pub struct Checkpointer {
    path: PathBuf,
    every: u64,
    run: String,
    written: usize,
    /// The stopping rules after the last whole epoch.
    stopping: StopState,
    /// Early stopping's best weights so far (W row-major, b).
    best: Option<(Vec<f32>, Vec<f32>)>,
    /// A checkpoint due at an epoch's last step: where, once the epoch's report is in.
    pending: Option<Resume>,
    /// Write only at epochs' ends: a checkpoint due mid-epoch waits for its epoch's last step.
    epoch_ends: bool,
    /// With `epoch_ends`: a checkpoint fell due in the epoch in progress.
    deferred: bool,
}

impl Checkpointer {
    /// Checkpoints of the run `run` to `path` every `every` steps; `start` is where the run starts (a resumed run's
    /// point), whose stopping rules and best weights carry on.
    pub fn new(path: &Path, every: u64, run: String, start: Option<&Resume>) -> Result<Self> {
        if every == 0 {
            return Err(Error::param("--checkpoint-every", "at least 1 step", 0));
        }
        Ok(Checkpointer {
            path: path.to_path_buf(),
            every,
            run,
            written: 0,
            stopping: start.map(|r| r.stopping).unwrap_or_default(),
            best: start.and_then(|r| r.best.clone()),
            pending: None,
            epoch_ends: false,
            deferred: false,
        })
    }

    /// Checkpoints only at epochs' ends: one due mid-epoch is written at the end of its epoch instead. What a process
    /// of a run of several writes: mid-epoch, its loss sums so far are its own rows' only, while at an epoch's end
    /// there are none to keep, and the weights and optimizer state are every process's.
    pub fn at_epoch_ends(mut self) -> Self {
        self.epoch_ends = true;
        self
    }

    /// Checkpoints written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    fn write(&mut self, backend: &mut dyn Backend, at: Resume) -> Result<()> {
        let params = backend.params()?;
        let mut c = Checkpoint {
            version: VERSION,
            run: self.run.clone(),
            at,
            shape: backend.shape(),
            w: params.w.iter().copied().collect(),
            b: params.b.to_vec(),
            optimizer: backend.optimizer_state()?,
            checksums: Default::default(),
        };
        c.seal();
        let bytes = serde_json::to_vec(&c)
            .map_err(|e| Error::Internal(format!("checkpoint as JSON: {e}")))?;
        crate::atomic::write_atomically(&self.path, &bytes)?;
        self.written += 1;
        Ok(())
    }
}

impl Observer for Checkpointer {
    fn on_step(&mut self, event: &StepEvent<'_>, backend: &mut dyn Backend) -> Result<()> {
        let due = event.step.is_multiple_of(self.every);
        if self.epoch_ends && !event.last_in_epoch {
            // Due mid-epoch: the epoch's last step writes.
            self.deferred |= due;
            return Ok(());
        }
        if due || std::mem::take(&mut self.deferred) {
            let mut at = Resume {
                epoch: event.epoch,
                batches_done: event.in_epoch,
                steps: event.step,
                stopping: self.stopping,
                sums: Sums::default(),
                best: self.best.clone(),
            };
            if event.last_in_epoch {
                self.pending = Some(at);
            } else {
                // The epoch's loss sums so far, read and put back as they were.
                at.sums = backend.take_sums()?;
                backend.set_sums(at.sums)?;
                self.write(backend, at)?;
            }
        }
        Ok(())
    }

    fn on_epoch(&mut self, report: &mut EpochReport, backend: &mut dyn Backend) -> Result<()> {
        self.stopping = report.stopping;
        if report.stopping.best_epoch() == Some(report.epoch) {
            let p = backend.params()?;
            self.best = Some((p.w.iter().copied().collect(), p.b.to_vec()));
        }
        if let Some(at) = self.pending.take() {
            let at = Resume {
                stopping: self.stopping,
                best: self.best.clone(),
                ..at
            };
            self.write(backend, at)?;
        }
        Ok(())
    }
}
