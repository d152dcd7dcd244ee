//! What the commands share: opening the device, building its backend, checking output paths, progress bars and
//! writing text output.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use softmax_wgpu::cpu::{CpuBackend, FastCpu, SparseCpu};
use softmax_wgpu::gpu::{self, GpuBackend, GpuContext, GpuOptions};
use softmax_wgpu::{Backend, Error, Shape};

use super::args::{BackendArg, DeviceArgs, DeviceKind, Precision};

/// Where a command computes.
pub enum Device {
    Cpu(Precision),
    Gpu(Box<GpuContext>),
}

impl Device {
    /// The device `--device`, `--backend` and `--adapter` ask for.
    pub fn open(a: &DeviceArgs, quiet: bool) -> Result<Device> {
        let backends = BackendArg::backends(a.backend);
        match a.device {
            DeviceKind::Cpu => Ok(Device::Cpu(a.precision)),
            DeviceKind::Gpu if a.adapter.is_none() => {
                // Any adapter, best first (this process's share first under mpirun): the first that opens.
                let found = gpu::adapters(backends);
                if found.is_empty() {
                    return Err(Error::NoAdapter {
                        backends: format!("{backends:?}"),
                    }
                    .into());
                }
                let candidates = Self::local_share(backends).into_iter().chain(found);
                let (opened, mut failed) = first_opened(candidates, GpuContext::new);
                match opened {
                    Some(ctx) => {
                        if !quiet {
                            for e in &failed {
                                eprintln!("could not open a GPU adapter, passed over: {e}");
                            }
                        }
                        Ok(Device::Gpu(Box::new(ctx)))
                    }
                    // None opened: the best one's reason is the error.
                    None => Err(failed.swap_remove(0).into()),
                }
            }
            DeviceKind::Gpu => Ok(Device::Gpu(Box::new(GpuContext::select(
                backends,
                a.adapter.as_deref(),
            )?))),
            // An adapter named with --adapter is used whatever it is.
            DeviceKind::Auto if a.adapter.is_some() => Ok(Device::Gpu(Box::new(
                GpuContext::select(backends, a.adapter.as_deref())?,
            ))),
            DeviceKind::Auto => Self::auto(backends, a.precision, quiet),
        }
    }

    /// The hardware adapter of this process when it is one of several on the machine (`mpirun`) and the machine has
    /// several of the best kind (the first adapter's type and backend): the one at its machine-local rank, modulo
    /// their number, so that processes spread over the GPUs instead of sharing the first. None otherwise.
    fn local_share(backends: wgpu::Backends) -> Option<wgpu::Adapter> {
        let local = super::group::local_rank()?;
        let found = gpu::adapters(backends);
        let first = found.first()?.get_info();
        if first.device_type == wgpu::DeviceType::Cpu {
            return None;
        }
        let mut same: Vec<wgpu::Adapter> = found
            .into_iter()
            .filter(|a| {
                let info = a.get_info();
                info.device_type == first.device_type && info.backend == first.backend
            })
            .collect();
        let n = same.len();
        Some(same.swap_remove(local % n))
    }

    /// The best hardware adapter (discrete, integrated, virtual: `adapters` sorts them so). A software adapter
    /// (device type Cpu: lavapipe, llvmpipe, WARP) runs the kernels on the same cores as the CPU path, only slower,
    /// so with nothing else the CPU path trains, and one line says so.
    fn auto(backends: wgpu::Backends, precision: Precision, quiet: bool) -> Result<Device> {
        let found = gpu::adapters(backends);
        let software: Vec<String> = found
            .iter()
            .filter(|a| a.get_info().device_type == wgpu::DeviceType::Cpu)
            .map(|a| {
                let info = a.get_info();
                format!("{} on {:?}", info.name, info.backend)
            })
            .collect();
        // The hardware adapters, best first (this process's share first under mpirun); the first that opens is
        // used. One that is listed but cannot be opened is passed over with a line saying why.
        let hardware: Vec<wgpu::Adapter> = Self::local_share(backends)
            .into_iter()
            .chain(
                found
                    .into_iter()
                    .filter(|a| a.get_info().device_type != wgpu::DeviceType::Cpu),
            )
            .collect();
        let tried = hardware.len();
        let (opened, failed) = first_opened(hardware, GpuContext::new);
        if !quiet {
            for e in &failed {
                eprintln!("could not open a GPU adapter, passed over: {e}");
            }
        }
        match opened {
            Some(ctx) => Ok(Device::Gpu(Box::new(ctx))),
            None if tried > 0 => {
                if !quiet {
                    eprintln!("no GPU adapter could be opened; training on the CPU path");
                }
                Ok(Device::Cpu(precision))
            }
            None if software.is_empty() => {
                if !quiet {
                    eprintln!("no GPU adapter found; training on the CPU path");
                }
                Ok(Device::Cpu(precision))
            }
            None if quiet => Ok(Device::Cpu(precision)),
            None => {
                eprintln!(
                    "only software GPU adapters found ({}), which run on these same cores more slowly than the \
                     CPU path: training on the CPU path (--device gpu to use them anyway)",
                    software.join(", ")
                );
                Ok(Device::Cpu(precision))
            }
        }
    }

    /// A zero model of `shape` on this device, for sparse rows (LIBSVM) when `sparse`.
    pub fn backend(
        &self,
        shape: Shape,
        chunk_bytes: Option<u64>,
        autotune: bool,
        sparse: bool,
    ) -> Result<Box<dyn Backend + '_>> {
        Ok(match self {
            // Sparse rows: O(non-zeros · k) a step, on all cores, with a lazily applied L2 decay.
            Device::Cpu(Precision::F32) if sparse => Box::new(SparseCpu::new(shape)?),
            Device::Cpu(Precision::F32) => Box::new(FastCpu::new(shape)?),
            Device::Cpu(Precision::F64) => Box::new(CpuBackend::<f64>::try_new(shape)?),
            Device::Gpu(ctx) => Box::new(GpuBackend::new(
                ctx,
                shape,
                &GpuOptions {
                    max_chunk_bytes: chunk_bytes,
                    autotune,
                    sparse,
                    ..GpuOptions::default()
                },
            )?),
        })
    }
}

/// Refuses an output path whose directory does not exist or that is a directory, before any work is done.
fn check_out_path(path: &Path, flag: &str) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::param(
            flag,
            "a file in an existing directory",
            format!("{} (no directory {})", path.display(), parent.display()),
        )
        .into());
    }
    if path.is_dir() {
        return Err(Error::param(flag, "a file, not a directory", path.display()).into());
    }
    // Writable, before any work is done (a long run used to find out at its end): a temporary file can be made
    // beside the output (or its link's target), and an existing regular file opened for writing. A device or FIFO
    // is written through and not probed (opening a FIFO would wait for a reader).
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let existing = std::fs::metadata(&target).ok();
    if existing.as_ref().is_some_and(|m| !m.is_file()) {
        return Ok(());
    }
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(".softmax-wgpu-probe.")
        .tempfile_in(dir)
        .map_err(|e| {
            let why = format!("cannot write in {}: {}", dir.display(), e.kind());
            Error::io(path, std::io::Error::new(e.kind(), why))
        })?;
    if existing.is_some() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// What a path names, to tell whether two paths are one file: the file itself (device and inode, through links)
/// when it exists, else its absolute path in its directory's real location.
fn identity(path: &Path) -> Option<(Option<(u64, u64)>, PathBuf)> {
    #[cfg(unix)]
    if let Ok(m) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        return Some((Some((m.dev(), m.ino())), PathBuf::new()));
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(parent).ok()?;
    Some((None, dir.join(path.file_name()?)))
}

/// Checks a command's outputs before any work is done: each one's path ([`check_out_path`]: an existing directory,
/// not a directory itself, writable), and that none is one of the inputs or another output (by the file they name,
/// through links and other spellings of the path): an output never replaces an input. `allowed` lists the pairs of
/// flags that may name one file (`--checkpoint` and `--resume`, which continues the run that wrote it).
pub fn check_outputs(
    outputs: &[(&str, Option<&Path>)],
    inputs: &[(&str, Option<&Path>)],
    allowed: &[(&str, &str)],
) -> Result<()> {
    for (flag, path) in outputs {
        if let Some(path) = path {
            check_out_path(path, flag)?;
        }
    }
    let named = |list: &[(&str, Option<&Path>)]| -> Vec<(String, PathBuf)> {
        list.iter()
            .filter_map(|(f, p)| p.map(|p| (f.to_string(), p.to_path_buf())))
            .collect()
    };
    let (outs, ins) = (named(outputs), named(inputs));
    for (i, (flag, path)) in outs.iter().enumerate() {
        let Some(id) = identity(path) else { continue };
        let others = outs[..i].iter().chain(&ins);
        for (other, other_path) in others {
            let ok = allowed
                .iter()
                .any(|&(a, b)| (a == flag && b == other) || (b == flag && a == other));
            if !ok && identity(other_path).as_ref() == Some(&id) {
                return Err(Error::param(
                    flag,
                    format!("a file other than {other} (an output never replaces an input or another output)"),
                    path.display(),
                )
                .into());
            }
        }
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal (hidden otherwise), counting `unit`, with a message before it.
pub fn progress_bar(total: u64, unit: &str) -> indicatif::ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{msg}} {{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Writes `text` to `out` atomically, or to standard output (a closed pipe is not an error).
pub fn write_output(out: Option<&Path>, text: &str) -> Result<()> {
    match out {
        Some(path) => softmax_wgpu::atomic::write_atomically(path, text.as_bytes())?,
        None => {
            if STDOUT_CLOSED.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout
                .write_all(text.as_bytes())
                .and_then(|_| stdout.flush())
            {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(Error::io("<stdout>", e).into());
                }
                STDOUT_CLOSED.store(true, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// "yes" or "no".
pub fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Set once stdout turned out closed: nothing more is printed to it.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Prints `text` to stdout (what [`outln!`] and [`out!`] call). A closed stdout (a reader that left, `… | head -1`)
/// ends the printing quietly: the command goes on and writes its files. Other failures to print are ignored too, as
/// printing is never what a command is for when it also writes files; commands whose output is stdout use
/// [`write_output`], which reports them.
pub fn print_out(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }
}

/// The first of `candidates` that `open` opens, and why each tried before it could not be opened.
pub fn first_opened<A, C, E>(
    candidates: impl IntoIterator<Item = A>,
    mut open: impl FnMut(A) -> std::result::Result<C, E>,
) -> (Option<C>, Vec<E>) {
    let mut failed = Vec::new();
    for a in candidates {
        match open(a) {
            Ok(c) => return (Some(c), failed),
            Err(e) => failed.push(e),
        }
    }
    (None, failed)
}

#[cfg(test)]
mod opening_tests {
    use super::first_opened;

    #[test]
    fn the_first_adapter_that_opens_is_used_and_those_before_it_are_reported() {
        let mut tried = Vec::new();
        let (opened, failed) = first_opened([1, 2, 3, 4], |n| {
            tried.push(n);
            if n < 3 {
                Err(format!("adapter {n}: Parent device is lost"))
            } else {
                Ok(n * 10)
            }
        });
        assert_eq!(opened, Some(30));
        assert_eq!(
            failed,
            [
                "adapter 1: Parent device is lost",
                "adapter 2: Parent device is lost"
            ]
        );
        // Nothing past the first that opens is opened.
        assert_eq!(tried, [1, 2, 3]);
        let (none, all) = first_opened([1, 2], |n| Err::<u8, _>(format!("adapter {n}")));
        assert_eq!((none, all.len()), (None, 2));
    }
}
