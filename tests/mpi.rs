//! `mpirun -np P softmax-wgpu train …` (feature `mpi`): P processes, each on its shard of the rows, give the single
//! process's model; a process that fails ends the whole job with one line naming it. Each run is its own `mpirun`,
//! with a deadline, so that a hang fails the test instead of stalling the suite. Without the feature, or without
//! `mpirun` on the machine, the tests say they were skipped (`SOFTMAX_WGPU_REQUIRE_MPI=1`, as in CI, makes that a
//! failure).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use softmax_wgpu::Model;

const BIN: &str = env!("CARGO_BIN_EXE_softmax-wgpu");

/// A job that has not ended by then has hung.
const DEADLINE: Duration = Duration::from_secs(120);

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    seconds: f64,
}

/// True when MPI runs can be tested here; otherwise says why not (or fails, where MPI is required).
fn available() -> bool {
    let required = std::env::var("SOFTMAX_WGPU_REQUIRE_MPI").is_ok_and(|v| v == "1");
    let why = if !cfg!(feature = "mpi") {
        Some("built without --features mpi")
    } else if Command::new("mpirun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        Some("no mpirun on this machine (Debian: openmpi-bin)")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if required => panic!("SOFTMAX_WGPU_REQUIRE_MPI=1 but {why}"),
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// Runs `cmd` to its end or the deadline (then kills it and fails).
fn finish(mut cmd: Command) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let start = Instant::now();
    let mut child = cmd
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("starts");
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hung: killed after {DEADLINE:?}; stderr so far: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code,
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// `mpirun -np p softmax-wgpu args…` (root allowed, cores oversubscribed: this machine may have fewer than p).
fn mpirun(p: usize, args: &[&str]) -> Out {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(p.to_string())
        .arg(BIN)
        .args(args)
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    finish(cmd)
}

/// The same command as one process without MPI.
fn alone(args: &[&str]) -> Out {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    finish(cmd)
}

/// A 1,001-row data set (shards of 500/501 and 333/334/334 rows) written as NPY.
fn data(dir: &Path) -> (PathBuf, PathBuf) {
    let (x, y) = (dir.join("x.npy"), dir.join("y.npy"));
    let g = alone(&[
        "gen",
        "--shape",
        "1001,12,3",
        "--out",
        x.to_str().unwrap(),
        "--labels-out",
        y.to_str().unwrap(),
    ]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    (x, y)
}

fn rel_diff(a: &Model, b: &Model) -> f64 {
    let (pa, pb) = (&a.params, &b.params);
    let num: f64 =
        pa.w.iter()
            .zip(pb.w.iter())
            .chain(pa.b.iter().zip(pb.b.iter()))
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum();
    let den: f64 =
        pa.w.iter()
            .chain(pa.b.iter())
            .map(|x| f64::from(*x).powi(2))
            .sum();
    (num / den.max(1e-30)).sqrt()
}

/// A non-zero exit (`code` when given) with one error line, holding every one of `parts`.
fn one_error(r: &Out, code: Option<i32>, parts: &[&str]) {
    assert_ne!(r.code, 0, "{}", r.stderr);
    if let Some(c) = code {
        assert_eq!(r.code, c, "{}", r.stderr);
    }
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    for part in parts {
        assert!(errors[0].contains(part), "{part:?} not in {:?}", errors[0]);
    }
}

/// The last epoch's JSON line.
fn last_epoch(out: &Out) -> serde_json::Value {
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("an epoch line");
    serde_json::from_str(line).unwrap()
}

/// Trains with `flags` alone and as P = 1, 2, 3 processes; the models agree within `tolerance` (‖ΔW‖/‖W‖), the
/// epochs (L-BFGS: iterations) are the same, and two runs with the same P give the same bits.
fn equals_one_process(what: &str, flags: &[&str], tolerance: f64) {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data(dir.path());
    // A weight per row, for flags that name "@weights".
    let weights = dir.path().join("w.txt");
    let text: String = (0..1001)
        .map(|i| format!("{}\n", 0.5 + (i % 4) as f64 * 0.25))
        .collect();
    std::fs::write(&weights, text).unwrap();
    let model = |name: &str| dir.path().join(name);
    let args = |out: &Path| -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            "--device",
            "cpu",
            "--data",
            x.to_str().unwrap(),
            "--labels",
            y.to_str().unwrap(),
            "--json",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(flags.iter().map(|s| {
            if *s == "@weights" {
                weights.display().to_string()
            } else {
                s.to_string()
            }
        }));
        a
    };
    let one = model("one.safetensors");
    let a = args(&one);
    let single = alone(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(single.code, 0, "{what} alone: {}", single.stderr);
    let want = Model::load(&one).unwrap();
    let epochs = last_epoch(&single)["epoch"].clone();
    assert!(last_epoch(&single)["reduce_seconds"].is_null());
    for p in [1, 2, 3] {
        let mut runs = Vec::new();
        for attempt in 0..(if p == 2 { 2 } else { 1 }) {
            let out = model(&format!("p{p}-{attempt}.safetensors"));
            let a = args(&out);
            let r = mpirun(p, &a.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(r.code, 0, "{what} P={p}: {}", r.stderr);
            // One process prints: one JSON line an epoch, as alone.
            assert_eq!(
                r.stdout.lines().filter(|l| l.starts_with('{')).count(),
                single.stdout.lines().filter(|l| l.starts_with('{')).count(),
                "{what} P={p}: {}",
                r.stdout
            );
            assert_eq!(last_epoch(&r)["epoch"], epochs, "{what} P={p}");
            // Each epoch says how long the processes spent in their reductions.
            let reduce = &last_epoch(&r)["reduce_seconds"];
            assert_eq!(reduce.is_null(), p == 1, "{what} P={p}: {reduce}");
            runs.push(Model::load(&out).unwrap());
        }
        let d = rel_diff(&runs[0], &want);
        assert!(d <= tolerance, "{what} P={p}: ‖ΔW‖/‖W‖ = {d:e}");
        if let [a, b] = &runs[..] {
            assert_eq!(a.params.w, b.params.w, "{what}: two runs of P=2 differ");
            assert_eq!(a.params.b, b.params.b, "{what}: two runs of P=2 differ");
        }
    }
}

// Tolerances as tests/shards.rs's (P processes as threads of one, the same code below the reducer): each process's
// gradient sums are its rows' f32 sums, added across processes in f64 and rounded back, where one process adds all
// rows in one sum: a step's gradient differs by a few units of f32 rounding (≈ 1e-7 relative), near 1e-6 after the
// ~48 steps below; 1e-5 is far below a wrong batch, a missed step or a shard counted twice (≥ 1e-2). Adam divides
// by √v, which magnifies rounding where a second moment is small: 1e-4.

#[test]
fn sgd_over_mpi_equals_one_process() {
    let flags = [
        "--optimizer",
        "sgd",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--lr",
        "0.1",
    ];
    equals_one_process("sgd", &flags, 1e-5);
    let mut ordered = flags.to_vec();
    ordered.push("--no-shuffle");
    equals_one_process("sgd --no-shuffle", &ordered, 1e-5);
}

#[test]
fn adam_over_mpi_equals_one_process() {
    let flags = [
        "--optimizer",
        "adam",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--lr",
        "0.01",
        "--l2",
        "1e-3",
    ];
    equals_one_process("adam", &flags, 1e-4);
}

#[test]
fn the_default_job_over_mpi_takes_the_same_lbfgs_iterations_to_the_same_optimum() {
    // The automatic choice (L-BFGS), the held-out split, the standardisation statistics and λ = 1/N are the whole
    // data set's on every process: every evaluation is one reduction, and L-BFGS does not amplify the rounding of
    // the sums near a strongly convex optimum.
    equals_one_process("default", &[], 1e-5);
    equals_one_process("class weights", &["--class-weight", "balanced"], 1e-5);
    equals_one_process("sample weights", &["--sample-weight", "@weights"], 1e-5);
}

#[test]
fn a_failing_process_ends_the_job_with_one_line_naming_it() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data(dir.path());
    // A NaN in row 900: in the last process's shard.
    let mut bytes = std::fs::read(&x).unwrap();
    let header = bytes.len() - 1001 * 12 * 4;
    let at = header + (900 * 12 + 5) * 4;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let bad = dir.path().join("bad.npy");
    std::fs::write(&bad, &bytes).unwrap();
    let out = dir.path().join("m.safetensors");
    let r = mpirun(
        3,
        &[
            "train",
            "--device",
            "cpu",
            "--data",
            bad.to_str().unwrap(),
            "--labels",
            y.to_str().unwrap(),
            "--optimizer",
            "sgd",
            "--epochs",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    one_error(&r, None, &["process 2 of 3", "bad.npy", "NaN"]);
    assert!(!out.exists(), "no model from a failed job");
    assert!(r.seconds < 60.0, "{} s", r.seconds);

    // A bad line of a LIBSVM file, which each process checks only in its own part: named by its line in the file.
    let svm = dir.path().join("bad.svm");
    let mut text = String::new();
    for i in 0..3000 {
        let value = if i == 2899 {
            "x".to_string()
        } else {
            format!("{}.5", i % 7)
        };
        text.push_str(&format!("{} {}:{value}\n", i % 3, i % 40 + 1));
    }
    std::fs::write(&svm, text).unwrap();
    let r = mpirun(
        3,
        &["train", "--device", "cpu", "--data", svm.to_str().unwrap()],
    );
    one_error(&r, Some(2), &["process 2 of 3", "bad.svm", "line 2900"]);

    // Every process fails alike (a missing file): still one line.
    let missing = dir.path().join("missing.npy");
    let r = mpirun(
        2,
        &[
            "train",
            "--data",
            missing.to_str().unwrap(),
            "--labels",
            y.to_str().unwrap(),
        ],
    );
    one_error(&r, Some(2), &["missing.npy"]);

    // What a run of several processes does not do is refused, by name.
    let r = mpirun(
        2,
        &[
            "train",
            "--data",
            x.to_str().unwrap(),
            "--labels",
            y.to_str().unwrap(),
            "--optimizer",
            "sgd",
            "--check-every",
            "5",
        ],
    );
    one_error(&r, Some(2), &["--check-every"]);
}

/// The processes whose parent is `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": the name may hold spaces, so count from its closing bracket.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out.sort_unstable();
    out
}

#[test]
fn a_killed_process_ends_the_job_within_seconds_and_no_model_is_written() {
    if !available() || !Path::new("/proc/self/stat").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data(dir.path());
    let out = dir.path().join("m.safetensors");
    // A run far longer than the test: it only ends by the kill.
    let mut job = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-np", "2", BIN])
        .args([
            "train",
            "--device",
            "cpu",
            "--data",
            x.to_str().unwrap(),
            "--labels",
            y.to_str().unwrap(),
            "--optimizer",
            "sgd",
            "--epochs",
            "1000000",
            "--batch-size",
            "16",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both processes started and training.
    let start = Instant::now();
    let ranks = loop {
        let c = children(job.id());
        if c.len() == 2 {
            break c;
        }
        assert!(start.elapsed() < DEADLINE, "the processes did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_secs(2));
    assert!(job.try_wait().unwrap().is_none(), "the job ended by itself");
    // The shell's own kill: no procps needed.
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -9 {}", ranks[1])])
        .status()
        .unwrap();
    assert!(killed.success());
    let at = Instant::now();
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        if at.elapsed() > Duration::from_secs(30) {
            let _ = job.kill();
            panic!("the job outlived its killed process by 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(at.elapsed() < Duration::from_secs(10), "{:?}", at.elapsed());
    assert!(!out.exists(), "no model from a killed job");
    // No temporary left beside it either.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !["x.npy", "y.npy"].contains(&n.to_string_lossy().as_ref()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn every_source_trains_over_mpi_as_one_process() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let svm = dir.path().join("s.svm");
    let g = alone(&[
        "gen",
        "--shape",
        "3000,500,3",
        "--format",
        "libsvm",
        "--density",
        "0.02",
        "--out",
        svm.to_str().unwrap(),
    ]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/data/iris.csv");
    // Sparse rows (the sparse trainer), rows made in memory, the embedded digits, and a CSV file read whole.
    let cases: [&[&str]; 4] = [
        &["--data", svm.to_str().unwrap()],
        &["--synthetic", "5000,20,3"],
        &[],
        &["--data", csv],
    ];
    for case in cases {
        let mut args = vec!["train", "--device", "cpu", "--json", "--quiet"];
        args.extend_from_slice(case);
        let one = alone(&args);
        assert_eq!(one.code, 0, "{case:?}: {}", one.stderr);
        let three = mpirun(3, &args);
        assert_eq!(three.code, 0, "{case:?}: {}", three.stderr);
        let (a, b) = (last_epoch(&one), last_epoch(&three));
        // The same L-BFGS iterations to the same optimum (the default job's tolerance, as above).
        assert_eq!(a["epoch"], b["epoch"], "{case:?}");
        let (ja, jb) = (
            a["train_loss"].as_f64().unwrap(),
            b["train_loss"].as_f64().unwrap(),
        );
        assert!((ja - jb).abs() <= 1e-5 * ja, "{case:?}: J {ja} vs {jb}");
        // Weights within rounding can still flip a held-out row sitting on a class boundary: one of 600 at most.
        let (va, vb) = (
            a["val_accuracy"].as_f64().unwrap(),
            b["val_accuracy"].as_f64().unwrap(),
        );
        assert!(
            (va - vb).abs() <= 1.0 / 600.0 + 1e-12,
            "{case:?}: {va} vs {vb}"
        );
    }
}

#[test]
fn a_checkpoint_of_several_processes_resumes_on_any_number_of_them() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data(dir.path());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let train = |p: usize, epochs: &str, extra: &[&str], out: &str| {
        let mut args = vec![
            "train",
            "--device",
            "cpu",
            "--data",
            x.to_str().unwrap(),
            "--labels",
            y.to_str().unwrap(),
            "--optimizer",
            "momentum",
            "--batch-size",
            "64",
            "--lr",
            "0.05",
            "--epochs",
            epochs,
            "--quiet",
            "--json",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        let r = if p == 0 {
            alone(&args)
        } else {
            mpirun(p, &args)
        };
        assert_eq!(r.code, 0, "P={p} {extra:?}: {}", r.stderr);
        // The epochs it ran: a resumed run starts after the checkpoint's.
        let first = r.stdout.lines().find(|l| l.starts_with('{')).unwrap();
        let first: serde_json::Value = serde_json::from_str(first).unwrap();
        let resumed = extra.contains(&"--resume");
        assert_eq!(
            first["epoch"],
            if resumed { 3 } else { 1 },
            "P={p} {extra:?}"
        );
        Model::load(Path::new(out)).unwrap()
    };
    let whole = train(2, "4", &[], &path("whole.safetensors"));
    // Due every 5 steps, written at the end of each epoch (16 steps): no process's own sums in it.
    let ckpt = path("c.ckpt");
    train(
        2,
        "2",
        &["--checkpoint", &ckpt, "--checkpoint-every", "5"],
        &path("half.safetensors"),
    );
    let resumed = train(2, "4", &["--resume", &ckpt], &path("resumed2.safetensors"));
    assert_eq!(
        resumed.params.w, whole.params.w,
        "resumed on the same P: bitwise"
    );
    assert_eq!(resumed.params.b, whole.params.b);
    // On three processes, and on one without MPI: the same run, but for the order of additions (tolerance as above).
    for p in [3, 0] {
        let other = train(
            p,
            "4",
            &["--resume", &ckpt],
            &path(&format!("resumed{p}.safetensors")),
        );
        let d = rel_diff(&other, &whole);
        assert!(d <= 1e-5, "resumed on P={p}: ‖ΔW‖/‖W‖ = {d:e}");
    }
}
