//! How much host memory this process may still take, and allocations that end in an error rather than an abort when
//! it is not there.
//!
//! The machine's available memory is one bound; a process may have tighter ones, which an allocation meets first:
//! `ulimit -v` (RLIMIT_AS, the address space) and `ulimit -d` (RLIMIT_DATA) less what the process already maps, and
//! the memory limit of its control group (cgroup v2's `memory.max`, v1's `memory.limit_in_bytes`, on the process's
//! group and every group above it) less what the group already uses. [`headroom`] is the smallest of these and says
//! which one it is. Everything here reads Linux's text files under /proc and /sys; elsewhere no bound is known.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// What bounds the memory this process can still take: the bytes left and where the bound comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headroom {
    /// Bytes that can still be allocated under this bound.
    pub bytes: u64,
    /// The bound, as a user would name it: "available memory", "ulimit -v", "ulimit -d", "the cgroup's memory limit".
    pub bound: &'static str,
}

/// The tightest bound on what this process can still allocate, or None where none can be read.
pub fn headroom() -> Option<Headroom> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let meminfo = read(Path::new("/proc/meminfo"));
    let limits = read(Path::new("/proc/self/limits"));
    let status = read(Path::new("/proc/self/status"));
    let cgroup = read(Path::new("/proc/self/cgroup"));
    let mut bounds = Vec::new();
    if let Some(b) = meminfo.as_deref().and_then(mem_available) {
        bounds.push(Headroom {
            bytes: b,
            bound: "available memory",
        });
    }
    if let (Some(l), Some(s)) = (&limits, &status) {
        let threads = std::thread::available_parallelism().map_or(1, usize::from) as u64;
        let scratch = if SCRATCH_MAPPED.load(std::sync::atomic::Ordering::Relaxed) {
            0
        } else {
            product_scratch(&read)
        };
        bounds.extend(rlimit_headroom(l, s, threads, scratch));
    }
    if let Some(c) = &cgroup {
        if let Some(b) = cgroup_headroom(c, &read) {
            bounds.push(Headroom {
                bytes: b,
                bound: "the cgroup's memory limit",
            });
        }
    }
    tightest(bounds)
}

/// Set once the CPU path has mapped its products' scratch on every thread that multiplies ([`scratch_mapped`]): from
/// then on it is in the process's own use (VmData, VmSize) and is not kept aside again.
static SCRATCH_MAPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes that the products' scratch is mapped (the CPU trainer maps it on every thread that multiplies when it is
/// made, before a memory budget is measured, so that no later allocation of it meets a process limit mid-run).
pub fn scratch_mapped() {
    SCRATCH_MAPPED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The bytes each worker thread's first matrix product maps on this machine (see [`headroom`]'s limits), or 0.
pub fn product_scratch_bytes() -> u64 {
    product_scratch(&|p: &Path| std::fs::read_to_string(p).ok())
}

/// Bytes this process can still allocate (the tightest [`headroom`]), or None where no bound can be read.
pub fn available() -> Option<u64> {
    headroom().map(|h| h.bytes)
}

/// Refuses to allocate `needed` bytes for `what` when the tightest bound does not leave them, before anything is
/// allocated (an allocation that fails aborts the process instead of reporting an error).
pub fn check(what: &str, needed: u64) -> Result<()> {
    check_with(what, needed, None)
}

/// [`check`], its error ending with `help`: what to do about it (the flag that helps where one does).
pub fn check_with(what: &str, needed: u64, help: Option<&str>) -> Result<()> {
    match headroom() {
        Some(h) if needed > h.bytes => Err(too_much(what, needed, &h, help)),
        _ => Ok(()),
    }
}

/// A zeroed vector of `len` values for `what`, checked against [`headroom`] first and allocated fallibly, so that
/// memory that is not there ends in an [`Error::Limits`] naming `what` rather than an abort.
pub fn zeroed<T: Clone + Default>(what: &str, len: usize, help: Option<&str>) -> Result<Vec<T>> {
    let needed = (len as u64).saturating_mul(std::mem::size_of::<T>() as u64);
    check_with(what, needed, help)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| allocation_failed(what, needed, help))?;
    v.resize(len, T::default());
    Ok(v)
}

/// The error for an allocation of `needed` bytes for `what` that the allocator refused although [`check`] passed
/// (memory taken meanwhile, or overcommit turned off): the bound then is what [`headroom`] reads now.
pub fn allocation_failed(what: &str, needed: u64, help: Option<&str>) -> Error {
    let h = headroom().unwrap_or(Headroom {
        bytes: 0,
        bound: "the allocator",
    });
    too_much(what, needed, &h, help)
}

/// The error for `what` needing `needed` bytes beyond the bound `h`, ending with `help` when given.
pub fn too_much(what: &str, needed: u64, h: &Headroom, help: Option<&str>) -> Error {
    let (device, by) = match h.bound {
        "available memory" | "the allocator" => ("this machine", None),
        "the cgroup's memory limit" => ("this process", Some("its cgroup's memory limit")),
        other => ("this process", Some(other)),
    };
    let hint = match (by, help) {
        (Some(by), Some(help)) => Some(format!("set by {by}; {help}")),
        (Some(by), None) => Some(format!("set by {by}")),
        (None, help) => help.map(str::to_string),
    };
    Error::Limits {
        device: device.into(),
        what: what.to_string(),
        needed,
        limit: h.bytes,
        hint,
    }
}

fn tightest(bounds: Vec<Headroom>) -> Option<Headroom> {
    bounds.into_iter().min_by_key(|h| h.bytes)
}

/// MemAvailable of /proc/meminfo, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Address space each thread's malloc arena reserves (glibc's 64 MiB heap, mapped inaccessible until used): counted
/// by `ulimit -v` though it holds nothing, so that the rows can use only what the arenas leave.
const ARENA_BYTES: u64 = 64 << 20;

/// The headroom under `ulimit -v` and `ulimit -d`: each soft limit of /proc/self/limits less what /proc/self/status
/// says the process already has (VmSize, VmData), and under `ulimit -v` less the arenas of the threads a run has
/// yet to start: `threads` workers and a reader beside the main thread, of which status's `Threads:` already runs
/// (a 500 MB limit left the rows 250 MB less than VmSize said at the start, and allocations aborted).
///
/// `scratch` is what each worker thread's first matrix product maps for its packing buffers ([`product_scratch`]),
/// kept aside from both limits: under `ulimit -d` the CPU path's first product would otherwise abort.
fn rlimit_headroom(limits: &str, status: &str, threads: u64, scratch: u64) -> Vec<Headroom> {
    let soft = |name: &str| -> Option<u64> {
        let rest = limits.lines().find_map(|l| l.strip_prefix(name))?;
        rest.split_whitespace().next()?.parse().ok()
    };
    let used = |key: &str| -> Option<u64> {
        let rest = status.lines().find_map(|l| l.strip_prefix(key))?;
        let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
        kib.checked_mul(1024)
    };
    let running = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(1);
    let arenas = (threads + 2)
        .saturating_sub(running)
        .saturating_mul(ARENA_BYTES);
    // The workers', and the main thread's (seen mapping one too).
    let scratch = (threads + 1).saturating_mul(scratch);
    [
        (
            "Max address space",
            "VmSize:",
            "ulimit -v",
            arenas.saturating_add(scratch),
        ),
        ("Max data size", "VmData:", "ulimit -d", scratch),
    ]
    .into_iter()
    .filter_map(|(limit, key, bound, reserved)| {
        let limit = soft(limit)?;
        Some(Headroom {
            bytes: limit
                .saturating_sub(used(key).unwrap_or(0))
                .saturating_sub(reserved),
            bound,
        })
    })
    .collect()
}

/// The bytes a thread's first matrix product maps for good (the CPU path's products are faer's, whose x86 kernels
/// keep two buffers the size of the machine's last-level cache per thread, as that library counts it: the L3's share
/// of one core times the cores), or 0 where the cache cannot be read. Mapped, mostly never touched: it counts
/// against `ulimit -d` and `ulimit -v`, hardly against resident memory.
fn product_scratch(read: &dyn Fn(&Path) -> Option<String>) -> u64 {
    if !cfg!(target_arch = "x86_64") {
        return 0;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as u64;
    (0..8)
        .map(|i| PathBuf::from(format!("/sys/devices/system/cpu/cpu0/cache/index{i}")))
        .find(|dir| read(&dir.join("level")).is_some_and(|l| l.trim() == "3"))
        .and_then(|dir| {
            let size = read(&dir.join("size"))?;
            let size = size.trim();
            let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit())?);
            let bytes = digits.parse::<u64>().ok()?
                * match unit {
                    "K" => 1 << 10,
                    "M" => 1 << 20,
                    "G" => 1 << 30,
                    _ => 1,
                };
            let shared: u64 = read(&dir.join("shared_cpu_list"))?
                .trim()
                .split(',')
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => {
                        b.parse::<u64>().unwrap_or(0) + 1 - a.parse::<u64>().unwrap_or(0)
                    }
                    None => 1,
                })
                .sum();
            Some(2 * bytes / shared.max(1) * cores)
        })
        .unwrap_or(0)
}

/// The smallest headroom of the process's memory control group and the groups above it: cgroup v2's `memory.max`
/// less `memory.current` (mounted at /sys/fs/cgroup, or /sys/fs/cgroup/unified beside v1), cgroup v1's
/// `memory.limit_in_bytes` less `memory.usage_in_bytes` (at /sys/fs/cgroup/memory). `cgroup` is /proc/self/cgroup;
/// `read` reads a file. A group without a limit ("max", or v1's near-2⁶³ sentinel) bounds nothing.
fn cgroup_headroom(cgroup: &str, read: &dyn Fn(&Path) -> Option<String>) -> Option<u64> {
    let number = |p: PathBuf| -> Option<u64> { read(&p)?.trim().parse().ok() };
    let mut best: Option<u64> = None;
    let mut consider = |dir: &Path, limit: &str, usage: &str| {
        if let Some(max) = number(dir.join(limit)) {
            // v1 writes "no limit" as the largest page-aligned i64.
            if max < 1 << 62 {
                let left = max.saturating_sub(number(dir.join(usage)).unwrap_or(0));
                best = Some(best.map_or(left, |b| b.min(left)));
            }
        }
    };
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        let (mounts, limit, usage): (&[&str], _, _) = if controllers.is_empty() {
            (
                &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"],
                "memory.max",
                "memory.current",
            )
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                &["/sys/fs/cgroup/memory"],
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        } else {
            continue;
        };
        for mount in mounts {
            // The group and each one above it, up to the mount's root (a namespaced mount shows only that).
            let mut dir = Path::new(mount).join(rel);
            loop {
                consider(&dir, limit, usage);
                if dir == Path::new(mount) || !dir.pop() {
                    break;
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
        Max cpu time              unlimited            unlimited            seconds   \n\
        Max data size             unlimited            unlimited            bytes     \n\
        Max address space         524288000            524288000            bytes     \n";
    const STATUS: &str =
        "Name:\tsoftmax-wgpu\nVmPeak:\t  120000 kB\nVmSize:\t  102400 kB\nVmData:\t   20480 kB\nThreads:\t1\n";

    #[test]
    fn ulimit_v_leaves_its_limit_less_the_address_space_already_mapped_and_the_arenas() {
        let h = rlimit_headroom(LIMITS, STATUS, 2, 0);
        assert_eq!(
            h,
            vec![Headroom {
                bytes: 524_288_000 - 102_400 * 1024 - 3 * ARENA_BYTES,
                bound: "ulimit -v"
            }]
        );
        // Once the threads run, their arenas are in VmSize already.
        let running = STATUS.replace("Threads:\t1", "Threads:\t4");
        assert_ne!(running, STATUS);
        assert_eq!(
            rlimit_headroom(LIMITS, &running, 2, 0)[0].bytes,
            524_288_000 - 102_400 * 1024
        );
        // Both limits set: each against its own use, the tighter one wins.
        let both = LIMITS.replace(
            "Max data size             unlimited",
            "Max data size             40000000 ",
        );
        let h = tightest(rlimit_headroom(&both, STATUS, 2, 0)).unwrap();
        assert_eq!(
            (h.bytes, h.bound),
            (40_000_000 - 20_480 * 1024, "ulimit -d")
        );
        // Each worker's product scratch is kept aside from both limits.
        let h = rlimit_headroom(&both, STATUS, 2, 4 << 20);
        assert_eq!(
            h[0].bytes,
            524_288_000 - 102_400 * 1024 - 3 * ARENA_BYTES - (12 << 20)
        );
        assert_eq!(h[1].bytes, 40_000_000 - 20_480 * 1024 - (12 << 20));
        // Unlimited everywhere bounds nothing.
        let none = LIMITS.replace(
            "524288000            524288000",
            "unlimited            unlimited",
        );
        assert!(rlimit_headroom(&none, STATUS, 2, 0).is_empty());
    }

    #[test]
    fn the_product_scratch_is_two_last_level_caches_as_the_product_library_counts_them() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as u64;
        let dir = "/sys/devices/system/cpu/cpu0/cache";
        let cache = |shared: &'static str| {
            files(&[
                (&format!("{dir}/index2/level"), "2\n"),
                (&format!("{dir}/index3/level"), "3\n"),
                (&format!("{dir}/index3/size"), "32768K\n"),
                (&format!("{dir}/index3/shared_cpu_list"), shared),
            ])
        };
        let expected = if cfg!(target_arch = "x86_64") { 1 } else { 0 };
        // 32 MiB shared by 8 CPUs (0-3 and 8-11): 4 MiB a core, times the cores, twice.
        assert_eq!(
            product_scratch(&cache("0-3,8-11\n")),
            expected * 2 * (4 << 20) * cores
        );
        assert_eq!(
            product_scratch(&cache("0\n")),
            expected * 2 * (32 << 20) * cores
        );
        assert_eq!(product_scratch(&files(&[])), 0);
    }

    #[test]
    fn mem_available_is_read_in_kib() {
        let text =
            "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   2000000 kB\n";
        assert_eq!(mem_available(text), Some(2_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let map: HashMap<PathBuf, String> = entries
            .iter()
            .map(|(p, v)| (PathBuf::from(p), v.to_string()))
            .collect();
        move |p: &Path| map.get(p).cloned()
    }

    #[test]
    fn a_cgroup_v2_limit_counts_on_the_group_and_every_group_above_it() {
        let read = files(&[
            ("/sys/fs/cgroup/user.slice/memory.max", "1000000000\n"),
            ("/sys/fs/cgroup/user.slice/memory.current", "900000000\n"),
            ("/sys/fs/cgroup/user.slice/job/memory.max", "max\n"),
            ("/sys/fs/cgroup/user.slice/job/memory.current", "5\n"),
        ]);
        assert_eq!(
            cgroup_headroom("0::/user.slice/job\n", &read),
            Some(100_000_000)
        );
        // The group's own limit, tighter than its parent's.
        let read = files(&[
            ("/sys/fs/cgroup/a/memory.max", "500000000\n"),
            ("/sys/fs/cgroup/a/memory.current", "100000000\n"),
        ]);
        assert_eq!(cgroup_headroom("0::/a\n", &read), Some(400_000_000));
        // No limit anywhere.
        assert_eq!(cgroup_headroom("0::/a\n", &files(&[])), None);
    }

    #[test]
    fn a_cgroup_v1_limit_is_read_from_the_memory_controller_and_its_sentinel_means_none() {
        let cgroup = "9:name=systemd:/\n4:memory:/jobs/42\n0::/\n";
        let read = files(&[
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/jobs/42/memory.limit_in_bytes",
                "3000000000\n",
            ),
            (
                "/sys/fs/cgroup/memory/jobs/42/memory.usage_in_bytes",
                "1000000000\n",
            ),
        ]);
        assert_eq!(cgroup_headroom(cgroup, &read), Some(2_000_000_000));
        let read = files(&[(
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        )]);
        assert_eq!(cgroup_headroom(cgroup, &read), None);
    }

    #[test]
    fn an_allocation_beyond_every_bound_is_an_error_naming_it_not_an_abort() {
        let e = zeroed::<f32>("the test's rows", usize::MAX / 8, Some("use --flag")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let line = e.to_string();
        assert!(line.starts_with("the test's rows needs"), "{line}");
        assert!(line.ends_with(": use --flag"), "{line}");
        let h = Headroom {
            bytes: 1 << 20,
            bound: "ulimit -v",
        };
        assert_eq!(
            too_much("rows", 2 << 20, &h, Some("stream them")).to_string(),
            "rows needs 2.0 MiB, above this process's limit of 1.0 MiB: set by ulimit -v; stream them"
        );
        assert_eq!(zeroed::<u32>("a few", 3, None).unwrap(), vec![0, 0, 0]);
    }
}
