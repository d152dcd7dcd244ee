//! The library's one error type. Each variant carries what the user needs to fix the problem: the file, the position
//! in it, what was expected and what was found. The binary prints it as one line and maps [`Error::is_input`] to exit
//! code 2.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in softmax-wgpu.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A training or command parameter outside its allowed range.
    #[error("{field}: {problem}")]
    Param {
        /// The parameter, as the user spells it (e.g. `--batch-size`).
        field: String,
        /// What is wrong and what is allowed.
        problem: String,
    },

    /// A data or model file that cannot be used: malformed, inconsistent, or holding values that cannot be trained on.
    #[error("{}: {location}{problem}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// Where in it, already formatted with a trailing `": "` (e.g. `"line 5, column 3: "`), or empty.
        location: String,
        /// What is wrong.
        problem: String,
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
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    /// The GPU refused or failed an operation.
    #[error("GPU error: {0}")]
    Gpu(String),

    /// The problem does not fit the adapter's limits.
    #[error("does not fit the adapter: {0}")]
    Limits(String),

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
    pub fn param(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Param {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// Builds an [`Error::Input`] with no position.
    pub fn input(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            location: String::new(),
            problem: problem.into(),
        }
    }

    /// Builds an [`Error::Input`] at a position (`"line 7"`, `"row 3, column 2"` …).
    pub fn input_at(
        path: impl Into<PathBuf>,
        location: impl AsRef<str>,
        problem: impl Into<String>,
    ) -> Self {
        Error::Input {
            path: path.into(),
            location: format!("{}: ", location.as_ref()),
            problem: problem.into(),
        }
    }

    /// Builds an [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err: source,
        }
    }

    /// True for errors caused by what the user gave (a parameter, a file): the command line exits with 2 on these.
    pub fn is_input(&self) -> bool {
        match self {
            Error::Param { .. } | Error::Input { .. } | Error::NoAdapter(_) | Error::Limits(_) => {
                true
            }
            Error::Io { err, .. } => matches!(
                err.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::IsADirectory
            ),
            Error::Gpu(_) | Error::Drift { .. } => false,
        }
    }
}
