//! Where the processes of a data-parallel run meet. A [`Reducer`] sums (gradient sums, loss and hit sums, row
//! counts, evaluation sums) in a fixed order, broadcasts rank 0's values (a decision, a seed, statistics), and
//! carries a failure to every process, so that one process's error ends the run everywhere instead of leaving the
//! others waiting. [`Local`] is the one-process identity; [`ThreadGroup`] runs P processes as threads of one (P
//! backends over P shards in lockstep: tests, and several devices in one process); `distributed.rs` (feature `mpi`)
//! is MPI's.

use std::sync::{Arc, Condvar, Mutex};

use crate::data::{RowSource, Standardizer};
use crate::error::{Error, Result};

use super::Sums;

/// The collectives of a data-parallel run. Every process calls the same collectives in the same order.
pub trait Reducer {
    /// This process's index, from 0.
    fn rank(&self) -> usize {
        0
    }

    /// The run's processes.
    fn size(&self) -> usize {
        1
    }

    /// True when combining changes nothing (one process): backends then leave their sums where they are.
    fn is_identity(&self) -> bool {
        self.size() == 1
    }

    /// Replaces every value by its sum over all processes, added in rank order (rank 0's + rank 1's + …), so that
    /// every process gets the same bits whatever carries them.
    fn allreduce(&mut self, values: &mut [f64]) -> Result<()>;

    /// Replaces `values` on every process by rank 0's.
    fn broadcast(&mut self, values: &mut [f64]) -> Result<()>;

    /// Tells the other processes that this one failed with `error`: their collective in progress, and any later one,
    /// ends in [`Error::Peer`] naming this rank and the cause.
    fn fail(&mut self, error: &Error);

    /// Ok when every process got this far; [`Error::Peer`] when one failed.
    fn agree(&mut self) -> Result<()> {
        self.allreduce(&mut [])
    }

    /// Seconds this process has spent in collectives so far (waiting for the others included): what a run of
    /// several processes reports as its reduction time. 0 where nothing is exchanged.
    fn seconds(&self) -> f64 {
        0.0
    }

    /// The first process that failed, once this one learned of a failure (its own, told with [`Reducer::fail`], or
    /// another's).
    fn first_failed(&self) -> Option<usize> {
        None
    }
}

/// One process: nothing to combine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Reducer for Local {
    fn allreduce(&mut self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn broadcast(&mut self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn fail(&mut self, _error: &Error) {}
}

/// Loss and hit sums added over all processes.
pub fn reduce_sums(reducer: &mut dyn Reducer, sums: Sums) -> Result<Sums> {
    if reducer.is_identity() {
        return Ok(sums);
    }
    let mut v = [sums.loss, sums.correct, sums.rows as f64];
    reducer.allreduce(&mut v)?;
    Ok(Sums {
        loss: v[0],
        correct: v[1],
        rows: v[2] as usize,
    })
}

/// The held-out sums of all processes: those that have held-out rows add theirs, and every process takes part.
pub fn reduce_held_out(reducer: &mut dyn Reducer, held: Option<Sums>) -> Result<Option<Sums>> {
    if reducer.is_identity() {
        return Ok(held);
    }
    let s = held.unwrap_or_default();
    let mut v = [
        f64::from(u8::from(held.is_some())),
        s.loss,
        s.correct,
        s.rows as f64,
    ];
    reducer.allreduce(&mut v)?;
    Ok((v[0] > 0.0).then_some(Sums {
        loss: v[1],
        correct: v[2],
        rows: v[3] as usize,
    }))
}

/// The standardisation statistics of all processes' rows, from each process's shard `source`: every process's
/// column moments gathered (each in its own slots of one vector, the others zero, so the sum is a gather) and merged
/// in rank order, the same bits on every process.
pub fn standardizer(source: &mut dyn RowSource, reducer: &mut dyn Reducer) -> Result<Standardizer> {
    let mine = Standardizer::moments(source)?;
    let len = mine.len();
    let mut all = vec![0.0; len * reducer.size()];
    all[reducer.rank() * len..][..len].copy_from_slice(&mine);
    reducer.allreduce(&mut all)?;
    Standardizer::merge(all.chunks(len), source.features())
}

/// Where this process's rows sit among all processes' rows, taken in rank order: its first row and the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The global index of this process's first row.
    pub first: u64,
    /// This process's rows.
    pub rows: u64,
    /// All processes' rows.
    pub total: u64,
}

impl Layout {
    /// The layout of `rows` rows on this process, from every process's count.
    pub fn of(reducer: &mut dyn Reducer, rows: u64) -> Result<Self> {
        let mut counts = vec![0.0; reducer.size()];
        counts[reducer.rank()] = rows as f64;
        reducer.allreduce(&mut counts)?;
        let first = counts[..reducer.rank()].iter().sum::<f64>() as u64;
        let total = counts.iter().sum::<f64>() as u64;
        Ok(Layout { first, rows, total })
    }

    /// The rows of a global batch that are this process's, as its local indices.
    pub fn local(&self, global: &[u32], out: &mut Vec<u32>) {
        out.clear();
        let (lo, hi) = (self.first, self.first + self.rows);
        out.extend(
            global
                .iter()
                .filter(|&&r| (lo..hi).contains(&u64::from(r)))
                .map(|&r| (u64::from(r) - lo) as u32),
        );
    }
}

/// P processes as threads of one: [`ThreadGroup::new`] hands out one [`Threaded`] reducer per rank, to be moved
/// into its thread. Each collective waits for every rank, then every rank computes the result from all ranks'
/// contributions in rank order.
#[derive(Debug)]
pub struct ThreadGroup;

impl ThreadGroup {
    /// The reducers of a group of `size` processes, rank order.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(size: usize) -> Vec<Threaded> {
        let shared = Arc::new(Shared {
            round: Mutex::new(Round {
                generation: 0,
                slots: vec![None; size],
                arrived: 0,
                all: Arc::new(Vec::new()),
                failed: None,
            }),
            wake: Condvar::new(),
        });
        (0..size)
            .map(|rank| Threaded {
                rank,
                size,
                shared: shared.clone(),
            })
            .collect()
    }
}

#[derive(Debug)]
struct Shared {
    round: Mutex<Round>,
    wake: Condvar,
}

#[derive(Debug)]
struct Round {
    generation: u64,
    slots: Vec<Option<Vec<f64>>>,
    arrived: usize,
    /// Every rank's contribution to the last completed round.
    all: Arc<Vec<Vec<f64>>>,
    /// The first rank that failed, its message, and whether the failure was the user's input.
    failed: Option<(usize, String, bool)>,
}

/// One rank of a [`ThreadGroup`].
#[derive(Debug)]
pub struct Threaded {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

impl Threaded {
    fn peer(&self, failed: &(usize, String, bool)) -> Error {
        Error::Peer {
            rank: failed.0,
            size: self.size,
            problem: failed.1.clone(),
            input: failed.2,
        }
    }

    /// Every rank's `mine`, in rank order, once every rank has given its own.
    fn exchange(&self, mine: Vec<f64>) -> Result<Arc<Vec<Vec<f64>>>> {
        let mut round = self
            .shared
            .round
            .lock()
            .map_err(|_| Error::Internal("a thread of the group panicked".into()))?;
        if let Some(f) = &round.failed {
            return Err(self.peer(f));
        }
        let generation = round.generation;
        round.slots[self.rank] = Some(mine);
        round.arrived += 1;
        if round.arrived == self.size {
            let all: Vec<Vec<f64>> = round
                .slots
                .iter_mut()
                .map(|s| s.take().unwrap_or_default())
                .collect();
            round.all = Arc::new(all);
            round.arrived = 0;
            round.generation += 1;
            self.shared.wake.notify_all();
            return Ok(round.all.clone());
        }
        loop {
            round = self
                .shared
                .wake
                .wait(round)
                .map_err(|_| Error::Internal("a thread of the group panicked".into()))?;
            if round.generation != generation {
                return Ok(round.all.clone());
            }
            if let Some(f) = &round.failed {
                return Err(self.peer(f));
            }
        }
    }

    fn mark_failed(&self, message: String, input: bool) {
        if let Ok(mut round) = self.shared.round.lock() {
            if round.failed.is_none() {
                round.failed = Some((self.rank, message, input));
            }
            self.shared.wake.notify_all();
        }
    }
}

impl Reducer for Threaded {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn allreduce(&mut self, values: &mut [f64]) -> Result<()> {
        let all = self.exchange(values.to_vec())?;
        for (i, v) in values.iter_mut().enumerate() {
            // Rank order, starting from rank 0's value: the same additions on every rank.
            *v = all.iter().skip(1).fold(all[0][i], |sum, c| sum + c[i]);
        }
        Ok(())
    }

    fn broadcast(&mut self, values: &mut [f64]) -> Result<()> {
        let all = self.exchange(values.to_vec())?;
        values.copy_from_slice(&all[0]);
        Ok(())
    }

    fn fail(&mut self, error: &Error) {
        self.mark_failed(error.to_string(), error.is_input());
    }

    fn first_failed(&self) -> Option<usize> {
        let round = self.shared.round.lock().ok()?;
        round.failed.as_ref().map(|f| f.0)
    }
}

impl Drop for Threaded {
    /// A rank that leaves while the others may still wait for it (a panic) fails the group.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.mark_failed("its thread panicked".into(), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_sums_in_rank_order_and_broadcasts_rank_zeros_values() {
        let reducers = ThreadGroup::new(3);
        let results: Vec<(Vec<f64>, Vec<f64>, Layout)> = std::thread::scope(|s| {
            let handles: Vec<_> = reducers
                .into_iter()
                .map(|mut r| {
                    s.spawn(move || {
                        let rank = r.rank() as f64;
                        // 1e16 + 1 + 1 ≠ 1e16 + (1 + 1): rank order decides, and every rank gets the same bits.
                        let mut sum = vec![[1e16, 1.0, 1.0][r.rank()], rank];
                        r.allreduce(&mut sum).unwrap();
                        let mut b = vec![rank + 10.0];
                        r.broadcast(&mut b).unwrap();
                        let rows = [0, 5, 3][r.rank()];
                        let layout = Layout::of(&mut r, rows).unwrap();
                        (sum, b, layout)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (sum, b, _) in &results {
            assert_eq!(sum, &vec![(1e16 + 1.0) + 1.0, 3.0]);
            assert_eq!(b, &vec![10.0]);
        }
        let layouts: Vec<(u64, u64, u64)> = results
            .iter()
            .map(|r| (r.2.first, r.2.rows, r.2.total))
            .collect();
        assert_eq!(layouts, vec![(0, 0, 8), (0, 5, 8), (5, 3, 8)]);
        let mut local = Vec::new();
        results[2].2.local(&[7, 0, 5, 4, 6], &mut local);
        assert_eq!(local, vec![2, 0, 1]);
    }

    #[test]
    fn a_failing_rank_ends_every_ranks_wait_with_its_cause() {
        let reducers = ThreadGroup::new(3);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = reducers
                .into_iter()
                .map(|mut r| {
                    s.spawn(move || {
                        if r.rank() == 1 {
                            let e = Error::Internal("row 7 is bad".into());
                            r.fail(&e);
                            return Err(e);
                        }
                        r.agree()?;
                        r.agree()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (rank, r) in results.iter().enumerate() {
            let message = r.as_ref().unwrap_err().to_string();
            assert!(message.contains("row 7 is bad"), "rank {rank}: {message}");
            if rank != 1 {
                assert!(message.contains("process 1 of 3"), "rank {rank}: {message}");
            }
        }
    }
}
