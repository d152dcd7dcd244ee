//! The [`Reducer`] of processes launched by `mpirun` (feature `mpi`, over the system's MPI through rsmpi).
//!
//! Every collective is two gathers: first each rank's status (ok, or failed and why), then — when all are ok — each
//! rank's values, which every rank adds in rank order itself (an allgather, not `MPI_Allreduce`, whose order of
//! additions MPI leaves open): every rank gets the same bits, and two runs with the same P the same results. The
//! volume is P times an allreduce's, which is nothing beside a step at the P of one machine or a few (a step sends
//! D·K + K + a few values).
//!
//! A rank that fails ([`Reducer::fail`]) takes part in one more status gather with its message instead of values:
//! the others, waiting in whatever collective they reached next (every collective starts with the same gather),
//! return [`Error::Peer`] naming the first failed rank and its cause, and the whole job ends within the time of one
//! step. A rank killed outright is mpirun's to notice: it ends the job.

use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::*;

use crate::error::{Error, Result};

use super::Reducer;

/// Bytes of a failure's message carried to the other ranks (longer ones are cut, on a character boundary).
const MESSAGE: usize = 480;

/// The collectives of the processes of `MPI_COMM_WORLD`.
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// The failure this rank saw, its own or another's: no collective is entered after it.
    failed: Option<Failure>,
    /// Seconds spent in collectives.
    seconds: f64,
}

/// A failed rank, its message, and whether the cause was the user's input.
#[derive(Debug, Clone)]
struct Failure {
    rank: usize,
    problem: String,
    input: bool,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Mpi {
    /// The reducer of the world communicator of an initialised MPI.
    pub fn new(world: SimpleCommunicator) -> Self {
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Mpi {
            world,
            rank,
            size,
            failed: None,
            seconds: 0.0,
        }
    }

    /// Gathers every rank's status: (0 ok, 1 failed as a fault, 2 failed on input), and the failed ranks' messages.
    fn statuses(&mut self, mine: Option<(&str, bool)>) -> Result<()> {
        let start = std::time::Instant::now();
        let result = self.exchange_statuses(mine);
        self.seconds += start.elapsed().as_secs_f64();
        result
    }

    fn exchange_statuses(&mut self, mine: Option<(&str, bool)>) -> Result<()> {
        if let Some(f) = &self.failed {
            return Err(peer(f, self.size));
        }
        let status = match mine {
            None => 0u8,
            Some((_, false)) => 1,
            Some((_, true)) => 2,
        };
        let mut all = vec![0u8; self.size];
        self.world.all_gather_into(&status, &mut all[..]);
        let Some(first) = all.iter().position(|&s| s != 0) else {
            return Ok(());
        };
        let mut text = [0u8; MESSAGE];
        if let Some((message, _)) = mine {
            let mut end = message.len().min(MESSAGE);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].copy_from_slice(&message.as_bytes()[..end]);
        }
        let mut texts = vec![0u8; MESSAGE * self.size];
        self.world.all_gather_into(&text[..], &mut texts[..]);
        let problem = &texts[first * MESSAGE..][..MESSAGE];
        let len = problem.iter().position(|&b| b == 0).unwrap_or(MESSAGE);
        let failure = Failure {
            rank: first,
            problem: String::from_utf8_lossy(&problem[..len]).into_owned(),
            input: all[first] == 2,
        };
        let e = peer(&failure, self.size);
        self.failed = Some(failure);
        Err(e)
    }

    /// Every rank's `values`, rank after rank.
    fn gather(&mut self, values: &[f64]) -> Result<Vec<f64>> {
        self.statuses(None)?;
        let start = std::time::Instant::now();
        let mut all = vec![0f64; values.len() * self.size];
        if !values.is_empty() {
            self.world.all_gather_into(values, &mut all[..]);
        }
        self.seconds += start.elapsed().as_secs_f64();
        Ok(all)
    }
}

fn peer(f: &Failure, size: usize) -> Error {
    Error::Peer {
        rank: f.rank,
        size,
        problem: f.problem.clone(),
        input: f.input,
    }
}

impl Reducer for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn allreduce(&mut self, values: &mut [f64]) -> Result<()> {
        let n = values.len();
        let all = self.gather(values)?;
        for (i, v) in values.iter_mut().enumerate() {
            // Rank order, from rank 0's value: the same additions on every rank.
            *v = (1..self.size).fold(all[i], |sum, r| sum + all[r * n + i]);
        }
        Ok(())
    }

    fn broadcast(&mut self, values: &mut [f64]) -> Result<()> {
        self.statuses(None)?;
        let start = std::time::Instant::now();
        if !values.is_empty() {
            self.world.process_at_rank(0).broadcast_into(values);
        }
        self.seconds += start.elapsed().as_secs_f64();
        Ok(())
    }

    fn first_failed(&self) -> Option<usize> {
        self.failed.as_ref().map(|f| f.rank)
    }

    fn seconds(&self) -> f64 {
        self.seconds
    }

    fn fail(&mut self, error: &Error) {
        if self.failed.is_some() {
            return;
        }
        // Always an error now: this rank's, or a lower rank's that failed at the same time.
        let _ = self.statuses(Some((&error.to_string(), error.is_input())));
    }
}
