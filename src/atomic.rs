//! Files written whole or not at all: a temporary file beside the destination, synced and renamed over it, so a
//! run killed at any moment leaves either the old file or the new one. Models, checkpoints, generated data and the
//! autotune cache are written through it.
//!
//! What sits at the destination decides how it is written, and nothing the user has is replaced by something else:
//! - nothing, or a regular file: a temporary file with a name nobody can predict, created exclusively (`O_EXCL`:
//!   a link planted at its name is never followed) in the destination's directory, then renamed over it; an
//!   existing file keeps its permissions;
//! - a symbolic link: written, the same way, at the file the link points to (the link stays a link);
//! - a device, a FIFO or a socket (`--out /dev/null`): written through, never replaced by a regular file;
//! - a directory: refused, as the user's input (exit code 2).
//!
//! The temporary files in flight are listed, so that a process told to stop (SIGINT, SIGTERM: the command line's
//! handler) removes them with [`remove_temporaries`] before it exits, leaving no debris; once that has run, no new
//! one is made.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// The temporary files being written; None once [`remove_temporaries`] has run (the process is stopping).
static LIVE: Mutex<Option<Vec<PathBuf>>> = Mutex::new(Some(Vec::new()));

/// Removes every temporary file being written, and refuses new ones from now on: what a process stopped by a signal
/// does before it exits. Returns how many it removed.
pub fn remove_temporaries() -> usize {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let paths = live.take().unwrap_or_default();
    paths
        .iter()
        .filter(|p| std::fs::remove_file(p).is_ok())
        .count()
}

/// Makes a temporary file with `make` and lists it as live, under the list's lock, so that a signal's
/// [`remove_temporaries`] sees it or it is never made (made first and listed after, a file made in between was left
/// behind by a process that exited meanwhile). An error when the process is stopping.
fn enlisted(
    path: &Path,
    make: impl FnOnce() -> Result<tempfile::NamedTempFile>,
) -> Result<tempfile::NamedTempFile> {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(v) = live.as_mut() else {
        let stopping =
            std::io::Error::new(std::io::ErrorKind::Interrupted, "the process is stopping");
        return Err(Error::io(path, stopping));
    };
    let tmp = make()?;
    v.push(tmp.path().to_path_buf());
    Ok(tmp)
}

/// Takes a temporary file off the list (committed, or dropped).
fn delist(path: &Path) {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = live.as_mut() {
        v.retain(|p| p != path);
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename (see the module's rules).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.commit()
}

/// Where the bytes go until [`AtomicFile::commit`].
#[derive(Debug)]
enum Sink {
    /// A temporary file beside the destination, renamed over it on commit (and removed if dropped before).
    Temporary(BufWriter<tempfile::NamedTempFile>),
    /// The destination itself, a special file written through.
    Through(BufWriter<File>),
}

/// A file written under a temporary name beside its destination and renamed over it only when [`AtomicFile::commit`]
/// is called: a write that fails or is abandoned (dropped) leaves whatever was at the destination as it was.
#[derive(Debug)]
pub struct AtomicFile {
    /// The path the user named, for messages.
    path: PathBuf,
    /// Where the file lands: the path, or the file its link points to.
    target: PathBuf,
    /// The permissions of the regular file being replaced, which the new one keeps.
    keep: Option<std::fs::Permissions>,
    sink: Option<Sink>,
}

impl AtomicFile {
    /// Starts writing `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let target = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?
            }
            _ => path.to_path_buf(),
        };
        let existing = match std::fs::metadata(&target) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(path, e)),
        };
        let sink = match &existing {
            Some(m) if m.is_dir() => {
                return Err(Error::input(path, "is a directory, not a file to write"));
            }
            Some(m) if !m.is_file() => {
                // A device, FIFO or socket: written through, never replaced.
                let f = OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(|e| Error::io(path, e))?;
                Sink::Through(BufWriter::with_capacity(1 << 20, f))
            }
            _ => {
                let dir = match target.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let name = target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "out".into());
                let prefix = format!(".{name}.");
                let mut builder = tempfile::Builder::new();
                builder.prefix(&prefix).suffix(".tmp");
                // A new file is made as `File::create` makes one (0666 less the umask); the temporary name is
                // private until the rename all the same, since nobody can predict it.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    builder.permissions(std::fs::Permissions::from_mode(0o666));
                }
                let tmp = enlisted(path, || {
                    builder.tempfile_in(&dir).map_err(|e| Error::io(path, e))
                })?;
                Sink::Temporary(BufWriter::with_capacity(1 << 20, tmp))
            }
        };
        Ok(AtomicFile {
            path: path.to_path_buf(),
            target,
            keep: existing.filter(|m| m.is_file()).map(|m| m.permissions()),
            sink: Some(sink),
        })
    }

    /// Flushes, syncs and renames the file to its destination (a special file: flushes what was written through).
    pub fn commit(mut self) -> Result<()> {
        let path = self.path.clone();
        match self.sink.take().expect("a file until committed") {
            Sink::Through(w) => {
                w.into_inner()
                    .map_err(|e| Error::io(&path, e.into_error()))?;
                Ok(())
            }
            Sink::Temporary(w) => {
                let tmp_path = w.get_ref().path().to_path_buf();
                let landed = land(&path, &self.target, self.keep.take(), w);
                delist(&tmp_path);
                landed
            }
        }
    }
}

/// Syncs a temporary file, gives it the kept permissions and renames it to `target` (on failure it is dropped,
/// and so removed, with the error).
fn land(
    path: &Path,
    target: &Path,
    keep: Option<std::fs::Permissions>,
    w: BufWriter<tempfile::NamedTempFile>,
) -> Result<()> {
    let tmp = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    if let Some(p) = keep {
        tmp.as_file()
            .set_permissions(p)
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.persist(target).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

impl Drop for AtomicFile {
    /// An abandoned file: its temporary is removed (by tempfile) and taken off the list.
    fn drop(&mut self) {
        if let Some(Sink::Temporary(w)) = &self.sink {
            delist(w.get_ref().path());
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.sink.as_mut().expect("a file until committed") {
            Sink::Temporary(w) => w.write(buf),
            Sink::Through(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.sink.as_mut().expect("a file until committed") {
            Sink::Temporary(w) => w.flush(),
            Sink::Through(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_file_appears_whole_and_nothing_else_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m.st");
        write_atomically(&out, b"new").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(entries(dir.path()), vec!["m.st"]);
    }

    #[test]
    fn an_abandoned_write_leaves_the_old_file_and_no_debris() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m.st");
        std::fs::write(&out, b"old").unwrap();
        let mut f = AtomicFile::create(&out).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        assert_eq!(entries(dir.path()), vec!["m.st"]);
    }

    #[test]
    fn the_temporary_name_cannot_be_planted() {
        // The old writer used `.m.st.tmp-<pid>`: a link planted there redirected the write. Now every such name is a
        // trap that is never touched, and the output still appears.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m.st");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"victim").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            &victim,
            dir.path().join(format!(".m.st.tmp-{}", std::process::id())),
        )
        .unwrap();
        write_atomically(&out, b"model").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim");
        assert_eq!(std::fs::read(&out).unwrap(), b"model");
        assert!(!std::fs::symlink_metadata(&out)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[cfg(unix)]
    #[test]
    fn a_link_is_written_through_and_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.st");
        let link = dir.path().join("link.st");
        std::fs::write(&target, b"old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomically(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m.st");
        std::fs::write(&out, b"old").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&out, b"new").unwrap();
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_written_through_and_stays_a_device() {
        use std::os::unix::fs::FileTypeExt;
        // /dev/null takes anything; as root the old writer replaced it with a regular file.
        write_atomically(Path::new("/dev/null"), b"discarded").unwrap();
        let kind = std::fs::metadata("/dev/null").unwrap().file_type();
        assert!(kind.is_char_device());
    }

    #[test]
    fn concurrent_writers_and_a_reader_only_ever_see_one_whole_file() {
        // Eight writers replace one file with contents of random sizes (a length, then that many copies of the
        // writer's byte) while a reader reads it in a loop: every read must be one writer's whole file, and nothing
        // but the file is left. Links planted at old-style temporary names must stay untouched.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m.st");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"victim").unwrap();
        #[cfg(unix)]
        for pid in [std::process::id(), 1, 2] {
            std::os::unix::fs::symlink(&victim, dir.path().join(format!(".m.st.tmp-{pid}")))
                .unwrap();
        }
        write_atomically(&out, &[0, 0, 0, 0]).unwrap();
        let whole = |bytes: &[u8]| -> bool {
            let Some((len, body)) = bytes.split_first_chunk::<4>() else {
                return false;
            };
            body.len() == u32::from_le_bytes(*len) as usize && body.windows(2).all(|w| w[0] == w[1])
        };
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let bytes = std::fs::read(&out).unwrap();
                    assert!(whole(&bytes), "a torn file of {} bytes", bytes.len());
                    reads += 1;
                }
                reads
            });
            let writers: Vec<_> = (0..8u8)
                .map(|w| {
                    let out = &out;
                    s.spawn(move || {
                        let mut g = crate::rng::SplitMix64::new(u64::from(w));
                        for _ in 0..25 {
                            let len = (g.next_u64() % (256 << 10)) as usize;
                            let mut bytes = (len as u32).to_le_bytes().to_vec();
                            bytes.resize(4 + len, w);
                            write_atomically(out, &bytes).unwrap();
                        }
                    })
                })
                .collect();
            writers.into_iter().for_each(|w| w.join().unwrap());
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        assert!(whole(&std::fs::read(&out).unwrap()));
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim");
        let mut left = entries(dir.path());
        left.retain(|n| !n.starts_with(".m.st.tmp-"));
        assert_eq!(left, vec!["m.st", "victim"]);
    }

    #[test]
    fn a_directory_is_refused_as_input() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_atomically(dir.path(), b"x").unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains("directory"), "{e}");
    }
}
