//! Where a source's rows live during a run: held by the backend when they fit its memory budget, streamed from
//! their file a chunk at a time when not.

use serde::Serialize;

use crate::config::TrainConfig;
use crate::data::{held_row_bytes, RowSource};

use super::Backend;

/// How [`super::fit`] keeps a source's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Residency {
    /// Held by the backend: copied once into its memory (a CPU backend shares rows already in RAM).
    Held,
    /// Read from the source every epoch, `chunk_rows` rows at a time; a reader thread reads the next chunk while the
    /// backend trains on the current one, which it holds only while it trains on it.
    Streamed {
        /// Rows per chunk.
        chunk_rows: usize,
    },
}

/// Most bytes of X one streamed chunk holds: large enough that a chunk is many batches and its read is a few long
/// sequential reads, small enough that the chunks in flight stay a small part of any memory budget.
pub const MAX_CHUNK_BYTES: u64 = 64 << 20;

/// Chunks a streamed epoch has in memory at once, at most: one the trainer holds (and, on a software adapter, its
/// device copy), one waiting in the channel and one the reader is filling. The budget is divided by this and by
/// two again for the reader's decode buffer.
const CHUNKS_IN_FLIGHT: u64 = 4;

/// The host memory budget when none is given: half the memory available when training starts (4 GiB where that
/// cannot be read).
pub fn default_memory_budget() -> u64 {
    crate::memory::available().map_or(4 << 30, |a| a / 2)
}

/// Rows a streamed chunk holds at least, when the batch is larger: below this a chunk's fixed costs (a read, a
/// hand-over between threads, a device upload) dominate — a budget of 1 byte (one row a chunk) ran 45× slower.
pub const MIN_CHUNK_ROWS: u64 = 64;

/// The smallest host memory budget that streams `source` under `cfg` without starving the trainer: room for the
/// chunks in flight, each of one batch or [`MIN_CHUNK_ROWS`] rows (whichever is smaller, and no more than the
/// source has). A budget below it is refused by the command line, with this figure.
pub fn smallest_memory_budget(source: &dyn RowSource, cfg: &TrainConfig) -> u64 {
    let row = row_bytes(source);
    let rows = (cfg.batch_size.max(1) as u64)
        .min(MIN_CHUNK_ROWS)
        .min(source.rows().unwrap_or(u64::MAX).max(1));
    CHUNKS_IN_FLIGHT * 2 * rows * row
}

/// Bytes a row of `source` takes held: its share of the source's, or a dense row's.
fn row_bytes(source: &dyn RowSource) -> u64 {
    match (source.held_bytes(), source.rows()) {
        (Some(b), Some(n)) if n > 0 => b.div_ceil(n).max(1),
        _ => held_row_bytes(source.features()),
    }
}

/// Whether `source` is held or streamed on `backend` under the budgets of `cfg`. Rows already in RAM (an
/// [`crate::data::InMemory`] source) are held, as they always were; a source whose rows, held, would take more than
/// the memory they would be held in (`cfg.memory_budget` of host memory for the CPU backends and software
/// adapters, `cfg.device_memory` of the device's own when it has some) is streamed, and so is a source that does
/// not know its length before it is read.
pub fn residency(backend: &dyn Backend, source: &dyn RowSource, cfg: &TrainConfig) -> Residency {
    let host = cfg.memory_budget.unwrap_or_else(default_memory_budget);
    let limit = if backend.holds_in_host_memory() {
        host.min(cfg.device_memory.unwrap_or(u64::MAX))
    } else {
        cfg.device_memory.unwrap_or(u64::MAX)
    };
    let held = source.held_bytes();
    let fits = held.is_some_and(|bytes| bytes <= limit);
    if source.shared().is_some() || source.shared_sparse().is_some() || fits {
        return Residency::Held;
    }
    let row = row_bytes(source);
    let per_chunk = (host / CHUNKS_IN_FLIGHT / 2).clamp(row, MAX_CHUNK_BYTES.max(row));
    let mut chunk_rows = (per_chunk / row).max(1) as usize;
    // Chunks of whole batches, so that batches do not straddle chunks (a straddling batch is two parts of one step).
    let batch = cfg.batch_size.max(1);
    if batch < chunk_rows {
        chunk_rows -= chunk_rows % batch;
    }
    Residency::Streamed { chunk_rows }
}
