//! `bench --peers sklearn`: the default job — `train` with no flags but the data, as a user first runs it — timed
//! from start to exit against scikit-learn's `LogisticRegression()` (after a `StandardScaler` on dense data, as our
//! default standardises it) on the same training and held-out files, with the objective each reaches and its held-out
//! accuracy.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use softmax_wgpu::data::{write_libsvm_rows, write_npy_features, write_npy_labels, SparseChunk};
use softmax_wgpu::Error;

/// The script, embedded so that an installed binary carries it.
const SCRIPT: &str = include_str!("../../benches/peers/sklearn_fit.py");

/// The files of one job: the first 80 % of the rows train, the rest are held out (the synthetic rows are drawn
/// independently, so the split is a random one).
pub(super) enum JobFiles {
    /// X and y of the training rows, then of the held-out rows (NPY).
    Dense([PathBuf; 4]),
    /// The training rows and the held-out rows (LIBSVM), and D.
    Sparse(PathBuf, PathBuf, usize),
}

/// Rows held out of `n`.
fn held_out(n: usize) -> usize {
    n / 5
}

fn text(p: &Path) -> String {
    p.display().to_string()
}

impl JobFiles {
    /// Writes dense rows (X row-major, y class indices) as four NPY files in `dir`.
    pub(super) fn dense(dir: &Path, x: ndarray::ArrayView2<f32>, y: &[u32]) -> Result<Self> {
        let cut = y.len() - held_out(y.len());
        let paths = ["job_x_train", "job_y_train", "job_x_test", "job_y_test"]
            .map(|name| dir.join(format!("{name}.npy")));
        write_npy_features(&paths[0], x.slice(ndarray::s![..cut, ..]))?;
        write_npy_labels(&paths[1], &y[..cut])?;
        write_npy_features(&paths[2], x.slice(ndarray::s![cut.., ..]))?;
        write_npy_labels(&paths[3], &y[cut..])?;
        Ok(JobFiles::Dense(paths))
    }

    /// Writes sparse rows as two LIBSVM files in `dir`.
    pub(super) fn sparse(dir: &Path, chunk: &SparseChunk) -> Result<Self> {
        let n = chunk.y.len();
        let cut = n - held_out(n);
        let (train, test) = (dir.join("job_train.svm"), dir.join("job_test.svm"));
        for (path, rows) in [(&train, 0..cut), (&test, cut..n)] {
            let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
            let mut out = std::io::BufWriter::new(file);
            write_libsvm_rows(&mut out, chunk, rows).map_err(|e| Error::io(path, e))?;
            std::io::Write::flush(&mut out).map_err(|e| Error::io(path, e))?;
        }
        Ok(JobFiles::Sparse(train, test, chunk.d))
    }

    /// `train`'s data arguments.
    fn train_args(&self) -> Vec<String> {
        match self {
            JobFiles::Dense(paths) => ["--data", "--labels", "--test", "--test-labels"]
                .iter()
                .zip(paths)
                .flat_map(|(flag, p)| [flag.to_string(), text(p)])
                .collect(),
            JobFiles::Sparse(train, test, d) => vec![
                "--data".into(),
                text(train),
                "--test".into(),
                text(test),
                "--features".into(),
                d.to_string(),
            ],
        }
    }

    /// The script's arguments.
    fn script_args(&self) -> Vec<String> {
        match self {
            JobFiles::Dense(paths) => std::iter::once("dense".to_string())
                .chain(paths.iter().map(|p| text(p)))
                .collect(),
            JobFiles::Sparse(train, test, d) => {
                vec!["sparse".into(), text(train), text(test), d.to_string()]
            }
        }
    }
}

/// What one side of a job reached.
#[derive(Debug, Clone, Serialize)]
pub(super) struct JobResult {
    /// Wall seconds: ours from the process's start to its exit (reading, kernels, every iteration's held-out pass);
    /// scikit-learn's from before loading to after scoring the held-out rows (the interpreter's start and imports
    /// not counted).
    pub seconds: f64,
    /// L-BFGS iterations (epochs, where the automatic choice was a minibatch optimizer).
    pub iterations: u64,
    /// J = mean cross-entropy + λ/2·‖W‖² on the training rows, λ = 1/N (2/N for two classes): the objective both
    /// minimise.
    pub objective: f64,
    pub held_out_accuracy: f64,
}

/// One device's default job and scikit-learn's on the same files.
#[derive(Debug, Serialize)]
pub(super) struct JobRow {
    pub device: String,
    pub n_train: usize,
    pub n_test: usize,
    pub d: usize,
    pub k: usize,
    pub nnz: Option<u64>,
    pub ours: Option<JobResult>,
    /// Why ours has no result (its last error line).
    pub failed: Option<String>,
    pub sklearn: Option<JobResult>,
    pub skipped: Option<String>,
    /// Our wall time ÷ scikit-learn's (below 1: we are faster).
    pub ratio: Option<f64>,
}

/// Runs scikit-learn's side once; a missing interpreter or package is a skip with its reason.
pub(super) fn run_sklearn(dir: &Path, files: &JobFiles) -> Result<JobResult, String> {
    let script = dir.join("sklearn_fit.py");
    std::fs::write(&script, SCRIPT).map_err(|e| Error::io(&script, e).to_string())?;
    eprintln!("timing scikit-learn's LogisticRegression() …");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(files.script_args())
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("failed").to_string());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| "the peer printed no result".to_string())?;
    let f = |key: &str| {
        v[key]
            .as_f64()
            .ok_or_else(|| format!("the peer printed no {key}"))
    };
    Ok(JobResult {
        seconds: f("seconds")?,
        iterations: f("iterations")? as u64,
        objective: f("objective")?,
        held_out_accuracy: f("held_out_accuracy")?,
    })
}

/// Runs our default job once on a device (`device` are `train`'s flags choosing it), in a process of its own, as
/// a user would.
pub(super) fn run_ours(files: &JobFiles, device: &[String]) -> Result<JobResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("our own executable: {e}"))?;
    let start = Instant::now();
    let out = std::process::Command::new(exe)
        .arg("train")
        .args(files.train_args())
        .args(device)
        .args(["--json", "--quiet"])
        .output()
        .map_err(|e| format!("train: {e}"))?;
    let seconds = start.elapsed().as_secs_f64();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("failed").to_string());
    }
    // The last epoch's line holds the final figures.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("epoch").is_some())
        .ok_or_else(|| "train printed no epoch".to_string())?;
    let lbfgs = last.get("lbfgs").filter(|l| !l.is_null());
    let objective = match lbfgs {
        Some(l) => l["value"].as_f64(),
        None => last["train_loss"].as_f64(),
    };
    let iterations = match lbfgs {
        Some(l) => l["iteration"].as_u64(),
        None => last["epoch"].as_u64(),
    };
    Ok(JobResult {
        seconds,
        iterations: iterations.ok_or("train printed no iteration")?,
        objective: objective.ok_or("train printed no objective")?,
        held_out_accuracy: last["val_accuracy"]
            .as_f64()
            .ok_or("train printed no held-out accuracy")?,
    })
}

/// Fills in a job row of one device.
pub(super) fn row(
    device: String,
    (n, d, k, nnz): (usize, usize, usize, Option<u64>),
    ours: Result<JobResult, String>,
    sklearn: &Result<JobResult, String>,
) -> JobRow {
    let ratio = match (&ours, sklearn) {
        (Ok(o), Ok(s)) => Some(o.seconds / s.seconds),
        _ => None,
    };
    JobRow {
        device,
        n_train: n - held_out(n),
        n_test: held_out(n),
        d,
        k,
        nnz,
        failed: ours.as_ref().err().cloned(),
        ours: ours.ok(),
        skipped: sklearn.as_ref().err().cloned(),
        sklearn: sklearn.as_ref().ok().cloned(),
        ratio,
    }
}

/// The jobs as a markdown table.
pub(super) fn markdown(rows: &[JobRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\nThe default job (`train` with its defaults, start to exit) against scikit-learn's `LogisticRegression()` \
         (load, StandardScaler on dense data, fit, held-out score) on the same files; J = mean cross-entropy + λ/2·‖W‖² \
         on the training rows, λ = 1/N:\n\n\
         | device | train / held-out rows × D × K | ours s | iterations | J | held-out % | scikit-learn s | iterations | J | held-out % | ours ÷ scikit-learn |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let cells = |ok: &Option<JobResult>, why: &Option<String>| match (ok, why) {
        (Some(j), _) => format!(
            "{:.2} | {} | {:.6} | {:.2}",
            j.seconds,
            j.iterations,
            j.objective,
            100.0 * j.held_out_accuracy
        ),
        (None, Some(why)) => format!("{why} | | | "),
        (None, None) => " | | | ".into(),
    };
    for r in rows {
        let data = match r.nnz {
            Some(nnz) => format!(
                "{} / {} × {} × {} (sparse, {nnz} non-zeros)",
                r.n_train, r.n_test, r.d, r.k
            ),
            None => format!("{} / {} × {} × {}", r.n_train, r.n_test, r.d, r.k),
        };
        s.push_str(&format!(
            "| {} | {data} | {} | {} | {} |\n",
            r.device,
            cells(&r.ours, &r.failed),
            cells(&r.sklearn, &r.skipped),
            r.ratio.map_or("–".into(), |x| format!("{x:.2}"))
        ));
    }
    s
}
