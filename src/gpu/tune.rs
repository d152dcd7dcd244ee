//! Autotuning of the kernels' workgroup width on the adapter and shape at hand, cached on disk.
//!
//! The candidates come from the adapter: its smallest subgroup size times 1, 2, 4 and 8, within 8..=256 and the
//! adapter's invocations per workgroup. Each candidate pipeline of the logits and gradient kernels is timed on the
//! real batch shape (a few dispatches in one submission, the best of two, wall time around a device sync), and the
//! fastest is kept. The choice is stored in `tuning.json` in the cache directory (`$SOFTMAX_WGPU_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/softmax-wgpu`, else `~/.cache/softmax-wgpu`), keyed by adapter, backend, driver and shape class
//! (d, k and batch rows rounded up to powers of two), so each adapter is tuned once per kind of problem. A width
//! never changes a result: every invocation sums in the same order whatever its workgroup.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::context::GpuContext;
use super::kernels::{Kernel, Tuned};
use crate::error::Result;

/// The kernels whose width is tuned for `k` classes: the fused forward pass and the gradient for K ≤ 16 (what a step
/// runs then), the logits and the gradient above.
pub fn tuned_kernels(k: usize) -> &'static [Kernel] {
    if k <= 16 {
        &[Kernel::Forward, Kernel::Grad]
    } else {
        &[Kernel::Logits, Kernel::Grad]
    }
}

/// Workgroup widths worth timing on this adapter.
pub fn candidates(ctx: &GpuContext) -> Vec<u32> {
    let sub = ctx.info.subgroup_min_size.max(1);
    let max = ctx
        .limits
        .max_compute_invocations_per_workgroup
        .min(ctx.limits.max_compute_workgroup_size_x)
        .min(256);
    let mut out: Vec<u32> = [1, 2, 4, 8]
        .iter()
        .map(|m| (sub * m).clamp(8, 256))
        .filter(|&w| w <= max)
        .collect();
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        out.push(max.max(1));
    }
    out
}

/// The cache key of an adapter and a shape class, and of the kernels timed: the held kernels reading rows in place
/// (`in_place`), or the kernels over the batch buffers.
pub fn key(ctx: &GpuContext, d: usize, k: usize, rows: usize, in_place: bool) -> String {
    let i = &ctx.info;
    format!(
        "{} | {:?} | {} {} | d{} k{} b{}{}",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        d.next_power_of_two(),
        k.next_power_of_two(),
        rows.next_power_of_two(),
        if in_place { " | in place" } else { "" }
    )
}

/// Where the cache lives, if anywhere.
pub fn cache_file() -> Option<PathBuf> {
    let dir = std::env::var_os("SOFTMAX_WGPU_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("softmax-wgpu"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("softmax-wgpu"))
        })?;
    Some(dir.join("tuning.json"))
}

/// Chosen widths per kernel name, per key.
type Cache = BTreeMap<String, BTreeMap<String, u32>>;

/// What was wrong with the cache, said once per process: each line for [`take_warnings`].
static WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn warn(line: String) {
    let mut w = WARNINGS.lock().unwrap_or_else(|e| e.into_inner());
    if !w.contains(&line) {
        w.push(line);
    }
}

/// The warnings about the tuning cache since the last call (a damaged file, an entry with a width no pipeline
/// can take), for the command line to print: the entries were ignored and their kernels timed again.
pub fn take_warnings() -> Vec<String> {
    std::mem::take(&mut *WARNINGS.lock().unwrap_or_else(|e| e.into_inner()))
}

fn load() -> Cache {
    let Some(path) = cache_file() else {
        return Cache::default();
    };
    let Ok(bytes) = std::fs::read(&path) else {
        return Cache::default();
    };
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        warn(format!(
            "{}: not a tuning cache ({e}); ignored, and rewritten as kernels are timed",
            path.display()
        ));
        Cache::default()
    })
}

/// The cached widths for `key`, when each of `kernels` has one that a pipeline can take (1 to 1,024; a damaged
/// cache with a width of 0 used to divide by zero): otherwise None, and the kernels are timed again (with a
/// warning when the entry was there but bad).
pub fn cached(key: &str, kernels: &[Kernel]) -> Option<BTreeMap<String, u32>> {
    pick(load(), key, kernels).unwrap_or_else(|bad| {
        let file = cache_file().map_or_else(String::new, |p| format!("{}: ", p.display()));
        warn(format!("{file}{bad}; timed again"));
        None
    })
}

/// The entry for `key` when it is usable, None when there is none, an error line when it is there but unusable.
fn pick(
    mut cache: Cache,
    key: &str,
    kernels: &[Kernel],
) -> std::result::Result<Option<BTreeMap<String, u32>>, String> {
    let Some(m) = cache.remove(key) else {
        return Ok(None);
    };
    for k in kernels {
        match m.get(k.name()) {
            Some(w) if (1..=1024).contains(w) => {}
            Some(w) => {
                return Err(format!(
                    "the entry {key:?} gives {} a width of {w}, outside 1..=1024",
                    k.name()
                ))
            }
            None => return Err(format!("the entry {key:?} has no width for {}", k.name())),
        }
    }
    Ok(Some(m))
}

/// Records the widths for `key` (best effort: a cache that cannot be written only costs a retune next time).
pub fn store(key: &str, widths: &BTreeMap<String, u32>) {
    let Some(path) = cache_file() else {
        return;
    };
    let mut cache = load();
    cache.insert(key.to_string(), widths.clone());
    if let (Some(dir), Ok(bytes)) = (path.parent(), serde_json::to_vec_pretty(&cache)) {
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = crate::atomic::write_atomically(&path, &bytes);
        }
    }
}

/// Picks the fastest of `candidates` (for `classes` classes and tiles of `quads`) by `time(tuned) → seconds`.
pub fn fastest(
    ctx: &GpuContext,
    kernel: Kernel,
    (classes, quads): (usize, u32),
    candidates: &[u32],
    mut time: impl FnMut(&Tuned) -> Result<f64>,
) -> Result<u32> {
    let mut best = (f64::INFINITY, candidates[0]);
    for &wg in candidates {
        let t = Tuned::new(ctx, kernel, wg, classes, quads);
        let seconds = time(&t)?.min(time(&t)?);
        if seconds < best.0 {
            best = (seconds, wg);
        }
    }
    Ok(best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_width_a_pipeline_cannot_take_is_timed_again() {
        let kernels = [Kernel::Forward, Kernel::Grad];
        let entry = |f: u32, g: u32| -> Cache {
            let widths = BTreeMap::from([("forward".to_string(), f), ("grad".to_string(), g)]);
            BTreeMap::from([("k".to_string(), widths)])
        };
        assert!(pick(entry(32, 64), "k", &kernels).unwrap().is_some());
        assert_eq!(
            pick(entry(0, 64), "k", &kernels).unwrap_err(),
            "the entry \"k\" gives forward a width of 0, outside 1..=1024"
        );
        assert!(pick(entry(32, 4096), "k", &kernels).is_err());
        assert!(pick(entry(32, 64), "other", &kernels).unwrap().is_none());
    }
}
