//! The library's one error type. Each variant carries what the user needs to fix the problem: the file and the
//! position in it, the flag and its allowed range, the adapter and its limit, what was expected and what was found.
//! The binary prints it as one line and exits with [`Error::exit_code`]: 2 for what the user gave (a parameter, a
//! file, a device that cannot hold the problem), 1 for device and internal faults.

use std::fmt;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in a file a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Position {
    /// A 1-based text line.
    Line(u64),
    /// A 1-based text line and column (a CSV cell).
    Cell {
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
    },
    /// A 0-based element of a 1-D array (NumPy's index).
    Index(u64),
    /// A 0-based element of a 2-D array (NumPy's index).
    Index2(u64, u64),
    /// A 0-based row of a data set and a 0-based column, when the rows came from no file.
    Row {
        /// 0-based row.
        row: u64,
        /// 0-based column, when the problem is one value.
        column: Option<u64>,
    },
    /// A byte offset into a binary file.
    Byte(u64),
    /// A named part of a structured file (a tensor, a metadata key, a header field).
    Key(String),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(l) => write!(f, "line {l}"),
            Position::Cell { line, column } => write!(f, "line {line}, column {column}"),
            Position::Index(i) => write!(f, "index {i}"),
            Position::Index2(i, j) => write!(f, "index [{i}, {j}]"),
            Position::Row { row, column: None } => write!(f, "row {row}"),
            Position::Row {
                row,
                column: Some(c),
            } => write!(f, "row {row}, column {c}"),
            Position::Byte(b) => write!(f, "byte {b}"),
            Position::Key(k) => write!(f, "{k}"),
        }
    }
}

/// Everything that can go wrong in softmax-wgpu.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A training or command parameter outside its allowed range.
    #[error("{flag}: must be {allowed} (got {found})")]
    Param {
        /// The parameter, as the user spells it (e.g. `--batch-size`).
        flag: String,
        /// What is allowed ("at least 1", "in [0, 1)", "one of vulkan, metal, dx12, gl").
        allowed: String,
        /// What was given.
        found: String,
    },

    /// A data or model file that cannot be used: malformed, inconsistent, or holding values that cannot be trained on.
    #[error("{}: {}{problem}", path.display(), position.as_ref().map(|p| format!("{p}: ")).unwrap_or_default())]
    Input {
        /// The file (or a name such as `<training rows>` for data that came from no file).
        path: PathBuf,
        /// Where in it.
        position: Option<Position>,
        /// What is wrong.
        problem: String,
    },

    /// Two things that must agree in size do not (X and y, a model and its data, a backend and its data).
    #[error("{what}: expected {expected}, found {found}")]
    Shape {
        /// What disagrees.
        what: String,
        /// The size that was required.
        expected: String,
        /// The size that was given.
        found: String,
    },

    /// A file that cannot be read or written.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error (shown in the message, so not chained as a source).
        err: std::io::Error,
    },

    /// No adapter matches the request.
    #[error("no GPU adapter: wgpu found none on backends {backends}")]
    NoAdapter {
        /// The backends that were searched.
        backends: String,
    },

    /// The problem does not fit what the device (or the host) can hold.
    #[error("{what} needs {}, above {device}'s limit of {}{}", bytes(*.needed), bytes(*.limit), hint.as_ref().map(|h| format!(": {h}")).unwrap_or_default())]
    Limits {
        /// The device ("llvmpipe (Vulkan)", "this machine").
        device: String,
        /// What was to be allocated.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes allowed.
        limit: u64,
        /// What to do about it.
        hint: Option<String>,
    },

    /// Training diverged (weights or loss overflowed): a learning rate too large for the data.
    #[error("--lr: training diverged by step {step} ({what}): lower the learning rate or use --standardize")]
    Diverged {
        /// Steps taken when it was seen.
        step: u64,
        /// What overflowed.
        what: String,
    },

    /// The GPU refused or failed an operation.
    #[error("GPU error on {device} while {op}: {message}")]
    Gpu {
        /// The adapter.
        device: String,
        /// What was being done.
        op: String,
        /// wgpu's message.
        message: String,
    },

    /// During `train --check-every`, the device's weights drifted from the CPU f64 reference beyond the tolerance.
    #[error(
        "{device} drifted from the CPU f64 reference: after step {step} ‖ΔW‖/‖W‖ = {drift:.3e}, over the tolerance {tolerance:.1e}; {}",
        drift_diagnosis(*.cpu_f32_drift, *.tolerance)
    )]
    Drift {
        /// The device that drifted.
        device: String,
        /// Steps taken when it was measured.
        step: usize,
        /// The measured relative difference.
        drift: f64,
        /// The allowed one.
        tolerance: f64,
        /// The drift of the CPU's own f32 path on the same steps.
        cpu_f32_drift: f64,
    },

    /// Another process of a data-parallel run failed: every process stops, naming the one that failed and why.
    #[error("process {rank} of {size} failed: {problem}")]
    Peer {
        /// The failing process's rank.
        rank: usize,
        /// The run's processes.
        size: usize,
        /// Its error.
        problem: String,
        /// Whether its error was the user's input (exit code 2) rather than a fault.
        input: bool,
    },

    /// A fault of this program (a broken invariant): never the user's input.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Bytes as the largest fitting binary unit, one decimal.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Says whether a drift is the device's fault or what f32 arithmetic does to this run anyway, from how far the CPU's
/// own f32 path drifted on the same steps.
fn drift_diagnosis(cpu_f32: f64, tolerance: f64) -> String {
    if cpu_f32 > tolerance {
        // Above ~1e-4, f32 rounding (≈ 6e-8 per operation) must have been amplified: an unstable learning rate.
        let why = if cpu_f32 > 1e-4 {
            "the training dynamics amplify f32 rounding (try a lower --lr or --standardize)"
        } else {
            "the tolerance is below what f32 reaches here (raise --check-tolerance)"
        };
        format!(
            "the CPU's own f32 path drifts {cpu_f32:.3e} on the same steps, so this is not a device fault: {why}"
        )
    } else {
        format!(
            "the CPU's own f32 path stays within {cpu_f32:.3e} on the same steps, so the device computes differently \
             (run `softmax-wgpu validate` on it)"
        )
    }
}

impl Error {
    /// Builds an [`Error::Param`].
    pub fn param(
        flag: impl Into<String>,
        allowed: impl Into<String>,
        found: impl fmt::Display,
    ) -> Self {
        Error::Param {
            flag: flag.into(),
            allowed: allowed.into(),
            found: found.to_string(),
        }
    }

    /// Builds an [`Error::Input`] with no position.
    pub fn input(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            position: None,
            problem: problem.into(),
        }
    }

    /// Builds an [`Error::Input`] at a position.
    pub fn input_at(path: impl Into<PathBuf>, at: Position, problem: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            position: Some(at),
            problem: problem.into(),
        }
    }

    /// Builds an [`Error::Shape`].
    pub fn shape(
        what: impl Into<String>,
        expected: impl fmt::Display,
        found: impl fmt::Display,
    ) -> Self {
        Error::Shape {
            what: what.into(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }

    /// Builds an [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err: source,
        }
    }

    /// Builds an [`Error::Gpu`].
    pub fn gpu(
        device: impl Into<String>,
        op: impl Into<String>,
        message: impl fmt::Display,
    ) -> Self {
        Error::Gpu {
            device: device.into(),
            op: op.into(),
            message: message.to_string(),
        }
    }

    /// True for errors caused by what the user gave (a parameter, a file, a problem too large for the device): the
    /// command line exits with 2 on these.
    pub fn is_input(&self) -> bool {
        match self {
            Error::Param { .. }
            | Error::Input { .. }
            | Error::Shape { .. }
            | Error::NoAdapter { .. }
            | Error::Limits { .. }
            | Error::Diverged { .. } => true,
            Error::Peer { input, .. } => *input,
            // What the user can see to and fix about a file they named: where it is, who may write it, whether
            // there is room for it, whether it holds what it should. What is left (a device's I/O error, an
            // interrupted call) is the machine's.
            Error::Io { err, .. } => matches!(
                err.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::ReadOnlyFilesystem
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::InvalidFilename
                    | std::io::ErrorKind::AlreadyExists
                    | std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
                    | std::io::ErrorKind::FileTooLarge
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::InvalidInput
            ),
            Error::Gpu { .. } | Error::Drift { .. } | Error::Internal(_) => false,
        }
    }

    /// The command line's exit code for this error: 2 for the user's input, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        if self.is_input() {
            2
        } else {
            1
        }
    }
}

/// `a × b × …` in u64, or an [`Error::Limits`] naming `what` when it overflows.
pub fn checked_product(what: &str, factors: &[u64]) -> Result<u64> {
    factors
        .iter()
        .try_fold(1u64, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| Error::Limits {
            device: "this machine".into(),
            what: what.to_string(),
            needed: u64::MAX,
            limit: u64::MAX,
            hint: Some(format!(
                "{} overflows 64 bits",
                factors
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" × ")
            )),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_kind_of_fault_exits_with_the_same_code() {
        // Permission denied and a read-only file system are the same kind of fault to a user (the first exited 2,
        // the second 1): every fault of a file the user named exits 2, the machine's own exit 1. README's table.
        use std::io::ErrorKind as K;
        for (kind, code) in [
            (K::PermissionDenied, 2),
            (K::ReadOnlyFilesystem, 2),
            (K::NotFound, 2),
            (K::IsADirectory, 2),
            (K::NotADirectory, 2),
            (K::InvalidFilename, 2),
            (K::AlreadyExists, 2),
            (K::StorageFull, 2),
            (K::QuotaExceeded, 2),
            (K::FileTooLarge, 2),
            (K::UnexpectedEof, 2),
            (K::InvalidData, 2),
            (K::InvalidInput, 2),
            (K::Interrupted, 1),
            (K::Other, 1),
            (K::BrokenPipe, 1),
        ] {
            let e = Error::io("out.st", std::io::Error::from(kind));
            assert_eq!(e.exit_code(), code, "{kind:?}");
        }
        for (e, code) in [
            (Error::param("--lr", "positive", -1), 2),
            (Error::input("x.npy", "bad"), 2),
            (Error::shape("w", 1, 2), 2),
            (
                Error::NoAdapter {
                    backends: "vulkan".into(),
                },
                2,
            ),
            (Error::gpu("dev", "map", "lost"), 1),
            (Error::Internal("bug".into()), 1),
        ] {
            assert_eq!(e.exit_code(), code, "{e}");
        }
    }

    #[test]
    fn messages_carry_expected_and_found() {
        let e = Error::param("--epochs", "in 1..=1000000", 0);
        assert_eq!(e.to_string(), "--epochs: must be in 1..=1000000 (got 0)");
        assert_eq!(e.exit_code(), 2);
        let e = Error::input_at("x.csv", Position::Cell { line: 5, column: 3 }, "bad");
        assert_eq!(e.to_string(), "x.csv: line 5, column 3: bad");
        let e = Error::Limits {
            device: "llvmpipe".into(),
            what: "a batch of 60000 rows".into(),
            needed: 188_160_000,
            limit: 128 << 20,
            hint: Some("use --batch-size 42799 or less".into()),
        };
        assert_eq!(
            e.to_string(),
            "a batch of 60000 rows needs 179.4 MiB, above llvmpipe's limit of 128.0 MiB: use --batch-size 42799 or less"
        );
        assert_eq!(Error::Internal("x".into()).exit_code(), 1);
        assert_eq!(Error::gpu("dev", "mapping", "lost").exit_code(), 1);
    }

    #[test]
    fn checked_product_refuses_overflow() {
        assert_eq!(checked_product("x", &[3, 4, 5]).unwrap(), 60);
        let e = checked_product("X", &[u64::MAX / 2, 3]).unwrap_err();
        assert!(e.to_string().contains("overflows 64 bits"), "{e}");
        assert!(e.is_input());
    }
}
