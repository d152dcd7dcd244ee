//! The command line as a user meets it: the main job, save → load → predict, and every kind of bad input ending in
//! exit code 2 with one line that names the file, the position and the problem, without touching existing output.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use softmax_wgpu::Model;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Autotuning caches its choices: the tests keep theirs in Cargo's scratch directory for tests (under target/), out
/// of the user's cache and out of the system's temporary directory.
fn tuning_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("tuning-cache")
}

fn run(args: &[&str]) -> Out {
    let cache = tuning_cache();
    output(
        Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"))
            .args(args)
            .env("SOFTMAX_WGPU_CACHE_DIR", cache),
    )
}

/// Runs `cmd` to the end and keeps its exit code and output.
fn output(cmd: &mut Command) -> Out {
    let o = cmd.output().expect("runs");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Exit code 2 and one stderr line starting with "error:", the last, containing every `parts`. Lines before it may
/// say what the run was doing: a value in a file is checked when the trainer reads it, after the device is named.
fn assert_input_error(out: &Out, parts: &[&str]) {
    assert_eq!(out.code, 2, "exit code; stderr: {}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    let errors = lines.iter().filter(|l| l.starts_with("error")).count();
    assert_eq!(errors, 1, "one error line expected, got: {}", out.stderr);
    let last = lines.last().copied().unwrap_or_default();
    assert!(last.starts_with("error: "), "{}", out.stderr);
    for p in parts {
        assert!(last.contains(p), "{:?} not in {:?}", p, last);
    }
    assert!(!out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"));
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64s(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

const GOOD_CSV: &str =
    "f1,f2,species\n1.0,2.0,cat\n2.0,1.0,dog\n1.5,2.5,cat\n2.5,0.5,dog\n0.5,2.0,cat\n3.0,1.0,dog\n";

#[test]
fn bad_csv_files_are_named_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "ragged.csv",
            "1,2,0\n3,4,1\n5,1\n",
            &["ragged.csv", "line 3", "expected 3 columns, found 2"],
        ),
        (
            "text.csv",
            "1,2,0\n3,abc,1\n",
            &["text.csv", "line 2, column 2", "cannot parse \"abc\""],
        ),
        (
            "nan.csv",
            "1,2,0\nnan,4,1\n",
            &["nan.csv", "line 2, column 1", "NaN"],
        ),
        (
            "inf.csv",
            "1,2,0\n3,4,1\n1,-inf,0\n",
            &["inf.csv", "line 3, column 2", "infinite"],
        ),
        ("empty.csv", "", &["empty.csv", "empty"]),
        ("header.csv", "a,b,c\n", &["header.csv", "no data rows"]),
    ];
    for (name, text, parts) in cases {
        let p = write(d, name, text.as_bytes());
        assert_input_error(
            &run(&["train", "--device", "cpu", "--data", p.to_str().unwrap()]),
            parts,
        );
    }
    let missing = d.join("missing.csv");
    assert_input_error(
        &run(&["train", "--data", missing.to_str().unwrap()]),
        &["missing.csv", "No such file"],
    );
}

#[test]
fn bad_npy_files_are_named_with_their_index() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let x = write(
        d,
        "x.npy",
        &softmax_wgpu::data::npy_bytes("<f4", &[3, 2], &f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
    );
    let xs = x.to_str().unwrap();
    let y_neg = write(
        d,
        "yneg.npy",
        &softmax_wgpu::data::npy_bytes("<i8", &[3], &i64s(&[0, -1, 1])),
    );
    assert_input_error(
        &run(&["train", "--data", xs, "--labels", y_neg.to_str().unwrap()]),
        &["yneg.npy", "index 1", "negative"],
    );
    let y_big = write(
        d,
        "ybig.npy",
        &softmax_wgpu::data::npy_bytes("<i8", &[3], &i64s(&[0, 1, 9])),
    );
    assert_input_error(
        &run(&[
            "train",
            "--data",
            xs,
            "--labels",
            y_big.to_str().unwrap(),
            "--classes",
            "3",
        ]),
        &["ybig.npy", "index 2", "not below the 3 classes"],
    );
    let y_huge = write(
        d,
        "yhuge.npy",
        &softmax_wgpu::data::npy_bytes("<i8", &[3], &i64s(&[0, 1, 1 << 40])),
    );
    assert_input_error(
        &run(&["train", "--data", xs, "--labels", y_huge.to_str().unwrap()]),
        &["yhuge.npy", "index 2", "too large"],
    );
    let y_short = write(
        d,
        "yshort.npy",
        &softmax_wgpu::data::npy_bytes("<i8", &[2], &i64s(&[0, 1])),
    );
    assert_input_error(
        &run(&["train", "--data", xs, "--labels", y_short.to_str().unwrap()]),
        &["yshort.npy", "2 labels", "3 rows"],
    );
    let y_ok = write(
        d,
        "y.npy",
        &softmax_wgpu::data::npy_bytes("<i8", &[3], &i64s(&[0, 1, 0])),
    );
    let ys = y_ok.to_str().unwrap();
    let x_int = write(
        d,
        "xint.npy",
        &softmax_wgpu::data::npy_bytes("<c8", &[3, 2], &[0u8; 48]),
    );
    assert_input_error(
        &run(&["train", "--data", x_int.to_str().unwrap(), "--labels", ys]),
        &["xint.npy", "complex", "<c8"],
    );
    let x_1d = write(
        d,
        "x1d.npy",
        &softmax_wgpu::data::npy_bytes("<f4", &[3], &f32s(&[1.0, 2.0, 3.0])),
    );
    assert_input_error(
        &run(&["train", "--data", x_1d.to_str().unwrap(), "--labels", ys]),
        &["x1d.npy", "2-D", "[3]"],
    );
    let x_nan = write(
        d,
        "xnan.npy",
        &softmax_wgpu::data::npy_bytes("<f4", &[3, 2], &f32s(&[1.0, 2.0, 3.0, f32::NAN, 5.0, 6.0])),
    );
    assert_input_error(
        &run(&["train", "--data", x_nan.to_str().unwrap(), "--labels", ys]),
        &["xnan.npy", "index [1, 1]", "NaN"],
    );
    let y_float = write(
        d,
        "yfloat.npy",
        &softmax_wgpu::data::npy_bytes("<f4", &[3], &f32s(&[0.0, 1.0, 0.0])),
    );
    assert_input_error(
        &run(&["train", "--data", xs, "--labels", y_float.to_str().unwrap()]),
        &["yfloat.npy", "integer"],
    );
    let empty = write(d, "empty.npy", b"");
    assert_input_error(
        &run(&["train", "--data", empty.to_str().unwrap(), "--labels", ys]),
        &["empty.npy", "empty"],
    );
    assert_input_error(&run(&["train", "--data", xs]), &["--labels", "required"]);
}

#[test]
fn impossible_parameters_are_refused() {
    let cases: [(&[&str], &str); 6] = [
        (&["--batch-size", "0"], "--batch-size"),
        (&["--lr", "-0.1"], "--lr"),
        (&["--lr", "nan"], "--lr"),
        (&["--val-split", "1"], "--val-split"),
        (&["--epochs", "0"], "--epochs"),
        (&["--synthetic", "10,0,3"], "--synthetic"),
    ];
    for (args, field) in cases {
        let mut all = vec!["train", "--device", "cpu"];
        all.extend_from_slice(args);
        assert_input_error(&run(&all), &[field]);
    }
}

#[test]
fn a_failed_run_never_clobbers_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = write(dir.path(), "model.safetensors", b"precious");
    let bad = write(dir.path(), "bad.csv", b"1,2,0\n3,x,1\n");
    let r = run(&[
        "train",
        "--data",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2);
    let r2 = run(&[
        "train",
        "--device",
        "cpu",
        "--lr",
        "-1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r2.code, 2);
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 2, "no temporary files are left behind");
}

#[test]
fn train_save_load_predict_round_trip_with_string_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = write(d, "pets.csv", GOOD_CSV.as_bytes());
    let model = d.join("pets.safetensors");
    let r = run(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "200",
        "--lr",
        "0.5",
        "--val-split",
        "0",
        "--standardize",
        "--out",
        model.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 200);
    for key in [
        "epoch",
        "train_loss",
        "val_loss",
        "val_accuracy",
        "samples_per_sec",
        "seconds",
        "device",
    ] {
        assert!(lines[0].get(key).is_some(), "JSON key {key}");
    }
    let loaded = Model::load(&model).unwrap();
    assert_eq!(loaded.classes, ["cat", "dog"]);
    assert!(loaded.standardizer.is_some());
    // The CLI's predictions are the loaded model's predictions, given back as the original labels.
    let p = run(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--proba",
    ]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let rows: Vec<&str> = p.stdout.lines().collect();
    assert_eq!(rows[0], "label,p_cat,p_dog");
    let labels: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r.split(',').next().unwrap())
        .collect();
    assert_eq!(labels, ["cat", "dog", "cat", "dog", "cat", "dog"]);
    assert!(p.stderr.contains("accuracy 1.0000"), "{}", p.stderr);
    // A label the model never saw is an error naming its line.
    let unseen = write(
        d,
        "unseen.csv",
        b"f1,f2,species\n1.0,2.0,cat\n2.0,1.0,bird\n",
    );
    assert_input_error(
        &run(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--data",
            unseen.to_str().unwrap(),
        ]),
        &[
            "unseen.csv",
            "line 3",
            "\"bird\"",
            "not one of the model's classes",
        ],
    );
    let wrong = write(d, "wrong.csv", b"1,2,3,4\n");
    assert_input_error(
        &run(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--data",
            wrong.to_str().unwrap(),
        ]),
        &["wrong.csv", "4 columns"],
    );
    let not_model = write(d, "not.safetensors", b"garbage");
    assert_input_error(
        &run(&[
            "predict",
            "--model",
            not_model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ]),
        &["not.safetensors"],
    );
    // A test file whose label is not among the training classes.
    let test = write(d, "test.csv", b"f1,f2,species\n1.0,2.0,cow\n");
    assert_input_error(
        &run(&[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--test",
            test.to_str().unwrap(),
        ]),
        &["test.csv", "line 2", "\"cow\""],
    );
}

#[test]
fn save_load_predict_gives_the_same_answers_on_digits() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("digits.safetensors");
    let r = run(&["train", "--epochs", "3", "--out", model.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("device:"),
        "the device is reported: {}",
        r.stderr
    );
    // --device auto never picks a software adapter: a hardware GPU, or the CPU path with a line saying why.
    let software_only = common::gpus()
        .iter()
        .all(|c| c.info.device_type == wgpu::DeviceType::Cpu);
    if software_only {
        assert!(r.stderr.contains("device: cpu"), "{}", r.stderr);
    }
    let digits = softmax_wgpu::data::digits().unwrap();
    let loaded = Model::load(&model).unwrap();
    let saved_again = dir.path().join("again.safetensors");
    loaded.save(&saved_again).unwrap();
    assert_eq!(Model::load(&saved_again).unwrap(), loaded);
    // Predicting through the CLI on a CSV of the digits gives the library's answers on the loaded model.
    let mut csv = String::new();
    for row in digits.x.outer_iter() {
        csv.push_str(
            &row.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        csv.push('\n');
    }
    let data = write(dir.path(), "digits.csv", csv.as_bytes());
    let p = run(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let cli: Vec<String> = p.stdout.lines().skip(1).map(str::to_string).collect();
    let lib: Vec<String> = loaded
        .predict(digits.x.view())
        .unwrap()
        .iter()
        .map(|&c| loaded.classes[c as usize].clone())
        .collect();
    assert_eq!(cli, lib);
    let acc = lib
        .iter()
        .zip(&digits.y)
        .filter(|(p, &y)| **p == digits.classes[y as usize])
        .count() as f64
        / 1797.0;
    assert!(acc > 0.9, "three epochs already fit the digits: {acc}");
}

#[test]
fn devices_lists_adapters() {
    let r = run(&["devices", "--json"]);
    assert_eq!(r.code, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let n = v.as_array().unwrap().len();
    assert_eq!(
        n,
        common::gpus().len(),
        "devices lists every adapter the tests use"
    );
    let r = run(&["devices", "--backend", "nonsense"]);
    assert_input_error(&r, &["--backend", "nonsense"]);
}

#[test]
fn check_every_reports_the_drift_and_a_failed_check_keeps_the_old_model() {
    // On a GPU adapter when there is one (software ones included), else on the CPU path.
    let device = if common::gpus().is_empty() {
        "cpu"
    } else {
        "gpu"
    };
    // Passing: the default tolerance, every epoch line carries the drift, the summary line is printed.
    let ok = run(&[
        "train",
        "--device",
        device,
        "--epochs",
        "2",
        "--check-every",
        "7",
    ]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.stdout.lines().count(), 2);
    assert!(
        ok.stdout.lines().all(|l| l.contains("drift ")),
        "{}",
        ok.stdout
    );
    assert!(
        ok.stderr.contains("checked against the CPU f64 reference"),
        "{}",
        ok.stderr
    );

    // Failing: a tolerance below f32 precision trips the first check. Exit 1 (a failed check, not bad input), one
    // error line that says what drifted, by how much, why, and that the model was not written.
    let dir = tempfile::tempdir().unwrap();
    let out = write(dir.path(), "model.safetensors", b"precious");
    let bad = run(&[
        "train",
        "--device",
        device,
        "--check-every",
        "3",
        "--check-tolerance",
        "1e-12",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    let errors: Vec<&str> = bad
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", bad.stderr);
    for part in [
        "not written",
        "drifted from the CPU f64 reference",
        "after step 3",
        "tolerance 1.0e-12",
        "raise --check-tolerance",
    ] {
        assert!(errors[0].contains(part), "{part:?} not in {:?}", errors[0]);
    }
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");

    assert_input_error(&run(&["train", "--check-every", "0"]), &["--check-every"]);
    assert_input_error(
        &run(&["train", "--check-every", "2", "--check-tolerance", "-1"]),
        &["--check-tolerance"],
    );
}

/// Bars the plot must have: one per timed row and per timed peer case.
fn rows_expected(json: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let timed = rows.iter().filter(|r| r["timing"].is_object()).count();
    let mut peer_cases: Vec<String> = Vec::new();
    for r in rows {
        if r["peers"][0]["timing"].is_object() {
            let key = r["case"].to_string();
            if !peer_cases.contains(&key) {
                peer_cases.push(key);
            }
        }
    }
    timed + peer_cases.len()
}

#[test]
fn bench_times_the_cpu_path_and_every_adapter_with_a_peer_or_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.md");
    let plot = dir.path().join("bench.svg");
    let r = run(&[
        "bench",
        "--shape",
        "3000,64,5",
        "--batch",
        "256",
        "--batch",
        "0",
        "--epochs",
        "1",
        "--peers",
        "numpy",
        "--json",
        "--out",
        report.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("cpu (f32"), "{svg}");
    assert_eq!(svg.matches("<rect x=").count(), rows_expected(&r.stdout));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    // The CPU path and each adapter, at two batch sizes.
    assert_eq!(rows.len(), 2 * (1 + common::gpus().len()));
    for row in rows {
        let t = &row["timing"];
        assert!(t["median"].as_f64().unwrap() > 0.0, "{row}");
        let expected = 4.0 * 3000.0 * 64.0 * 5.0 / t["median"].as_f64().unwrap() / 1e9;
        assert!((t["gflops"].as_f64().unwrap() - expected).abs() < 1e-6 * expected);
        // NumPy either timed the same case or says why it could not.
        let peer = &row["peers"][0];
        assert!(
            peer["timing"].is_object() || peer["skipped"].is_string(),
            "{peer}"
        );
        if peer["timing"].is_object() {
            assert!(peer["ratio"].as_f64().unwrap() > 0.0);
        }
    }
    assert_eq!(
        rows[1]["case"]["batch"], 3000,
        "batch 0 is the whole data set"
    );
    let table = std::fs::read_to_string(&report).unwrap();
    assert!(table.contains("| cpu (f32"), "{table}");
    assert!(table.contains("ours ÷ numpy"), "{table}");
    // A peer we do not have is refused, not ignored.
    let bad = run(&["bench", "--quick", "--peers", "numpy,matlab"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[test]
fn bench_times_sparse_data_on_the_sparse_trainers_with_scipy_as_the_peer() {
    let r = run(&[
        "bench",
        "--sparse",
        "12",
        "--shape",
        "2000,300,4",
        "--batch",
        "128",
        "--batch",
        "0",
        "--epochs",
        "1",
        "--peers",
        "scipy,numpy",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * (1 + common::gpus().len()));
    assert!(
        rows[0]["device"].as_str().unwrap().contains("sparse"),
        "{}",
        rows[0]
    );
    for row in rows {
        let nnz = row["case"]["nnz"].as_f64().unwrap();
        // About 12 non-zeros a row (6 to 18 drawn, fewer after repeats are merged).
        assert!((2000.0 * 4.0..=2000.0 * 18.0).contains(&nnz), "{row}");
        let t = &row["timing"];
        let expected = 4.0 * nnz * 4.0 / t["median"].as_f64().unwrap() / 1e9;
        assert!(
            (t["gflops"].as_f64().unwrap() - expected).abs() < 1e-6 * expected,
            "{row}"
        );
        // SciPy times the case or says why not; NumPy's dense step is not a peer of a sparse case.
        let (scipy, numpy) = (&row["peers"][0], &row["peers"][1]);
        assert!(
            scipy["timing"].is_object() || scipy["skipped"].is_string(),
            "{scipy}"
        );
        assert!(
            numpy["skipped"].as_str().unwrap().contains("dense"),
            "{numpy}"
        );
    }
}

#[test]
fn bench_times_the_default_job_on_every_device_beside_scikit_learn_or_says_why_not() {
    let (n, d, k) = (3000usize, 20usize, 3usize);
    let shape = format!("{n},{d},{k}");
    for sparse in [false, true] {
        let mut args = vec![
            "bench", "--shape", &shape, "--batch", "0", "--epochs", "1", "--peers", "sklearn",
            "--json",
        ];
        if sparse {
            args.extend(["--sparse", "8", "--device", "cpu"]);
        }
        let r = run(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        // scikit-learn is a job's peer, not a step's: no step row names it.
        for row in v["rows"].as_array().unwrap() {
            assert!(row["peers"].as_array().unwrap().is_empty(), "{row}");
        }
        let jobs = v["default_job"].as_array().unwrap();
        let devices = if sparse { 1 } else { 1 + common::gpus().len() };
        assert_eq!(jobs.len(), devices, "{jobs:?}");
        for job in jobs {
            assert_eq!(job["n_train"], 2400, "{job}");
            assert_eq!(job["n_test"], 600, "{job}");
            let ours = &job["ours"];
            assert!(ours["seconds"].as_f64().unwrap() > 0.0, "{job}");
            assert!(ours["iterations"].as_u64().unwrap() >= 1, "{job}");
            let acc = ours["held_out_accuracy"].as_f64().unwrap();
            assert!(acc > 1.0 / k as f64 && acc <= 1.0, "{job}");
            let theirs = &job["sklearn"];
            if theirs.is_null() {
                assert!(job["skipped"].is_string(), "{job}");
                continue;
            }
            // Both stop where ‖∇J‖∞ ≤ 1e-4, and J is λ-strongly convex (λ = 1/N), so each is within
            // ‖∇J‖₂²/(2λ) ≤ (D + 1)·K·1e-8·N/2 ≈ 7.6e-4 of the optimum: they agree to twice that.
            let bound = 2.0 * ((d + 1) * k) as f64 * 1e-8 * 2400.0 / 2.0;
            let (jo, js) = (
                ours["objective"].as_f64().unwrap(),
                theirs["objective"].as_f64().unwrap(),
            );
            assert!(
                (jo - js).abs() <= bound,
                "J {jo} vs scikit-learn's {js}: {job}"
            );
            assert!(job["ratio"].as_f64().unwrap() > 0.0, "{job}");
        }
    }
}

/// The last epoch's JSON object of a `train --json` run.
fn last_epoch(out: &Out) -> serde_json::Value {
    let line = out.stdout.lines().last().expect("an epoch line");
    serde_json::from_str(line).unwrap()
}

#[test]
fn gen_writes_what_train_synthetic_trains_on_and_big_files_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (x, y) = (format!("{d}/x.npy"), format!("{d}/y.npy"));
    let g = run(&[
        "gen",
        "--shape",
        "3000,16,4",
        "--out",
        &x,
        "--labels-out",
        &y,
        "--seed",
        "5",
    ]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    let common = ["--device", "cpu", "--epochs", "2", "--seed", "5", "--json"];
    // Without a held-out split (a file's is drawn per row, --synthetic's exactly): the same rows, the same steps.
    let whole = ["--val-split", "0"];
    let from_file = run(&[
        &["train", "--data", &x, "--labels", &y][..],
        &common,
        &whole,
    ]
    .concat());
    let synthetic = run(&[&["train", "--synthetic", "3000,16,4"][..], &common, &whole].concat());
    assert_eq!(from_file.code, 0, "{}", from_file.stderr);
    let (a, b) = (last_epoch(&from_file), last_epoch(&synthetic));
    assert_eq!(
        a["train_loss"], b["train_loss"],
        "gen's rows are --synthetic's"
    );
    assert!(a["stream"].is_null());
    let b = last_epoch(&run(&[
        &["train", "--data", &x, "--labels", &y][..],
        &common,
    ]
    .concat()));
    // Over a memory budget the same file streams: the run says so, reports its reading, and learns as well.
    let model = format!("{d}/m.safetensors");
    let streamed = run(&[
        &[
            "train",
            "--data",
            &x,
            "--labels",
            &y,
            "--memory-budget",
            "64KiB",
            "--standardize",
        ][..],
        &common,
        &["--out", &model],
    ]
    .concat());
    assert_eq!(streamed.code, 0, "{}", streamed.stderr);
    assert!(
        streamed.stderr.contains("streaming:"),
        "{}",
        streamed.stderr
    );
    let s = last_epoch(&streamed);
    assert!(s["stream"]["chunks"].as_u64().unwrap() > 10, "{s}");
    let (acc, want) = (
        s["val_accuracy"].as_f64().unwrap(),
        b["val_accuracy"].as_f64().unwrap(),
    );
    assert!(acc > want - 0.05, "streamed {acc} vs resident {want}");
    // The model standardises as it was trained: predicting the training file scores like the held-out rows.
    let p = run(&["predict", "--model", &model, "--data", &x, "--labels", &y]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let predicted: f64 = p.stderr.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        (predicted - acc).abs() < 0.05,
        "predict {predicted} vs held-out {acc}"
    );
}

#[test]
fn libsvm_and_idx_files_train_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let svm = format!("{d}/s.svm");
    let g = run(&[
        "gen",
        "--format",
        "libsvm",
        "--shape",
        "2000,300,3",
        "--density",
        "0.05",
        "--out",
        &svm,
    ]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    let model = format!("{d}/m.safetensors");
    let t = run(&[
        "train", "--device", "cpu", "--data", &svm, "--epochs", "5", "--lr", "0.5", "--json",
        "--out", &model,
    ]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    // Class features make this easy: 94–95 % of the held-out rows right after 5 epochs (a uniform guess: 33 %).
    assert!(
        last_epoch(&t)["val_accuracy"].as_f64().unwrap() > 0.9,
        "{}",
        t.stdout
    );
    let p = run(&["predict", "--model", &model, "--data", &svm]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert!(p.stderr.contains("accuracy 0.9"), "{}", p.stderr);
    assert_eq!(p.stdout.lines().count(), 2001);
    // IDX: MNIST's layout, 8 × 8 images.
    let n = 400;
    let mut images = vec![0u8, 0, 8, 3];
    for v in [n as u32, 8, 8] {
        images.extend(v.to_be_bytes());
    }
    let mut labels = vec![0u8, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    for i in 0..n {
        let class = (i % 2) as u8;
        labels.push(class);
        // Class 0 lights the top half, class 1 the bottom half, with a little texture.
        images.extend((0..64).map(|p| {
            if (p < 32) == (class == 0) {
                200 + (p as u8 % 50)
            } else {
                (i % 30) as u8
            }
        }));
    }
    let xi = write(dir.path(), "train-images-idx3-ubyte", &images);
    let yi = write(dir.path(), "train-labels-idx1-ubyte", &labels);
    let t = run(&[
        "train",
        "--device",
        "cpu",
        "--data",
        xi.to_str().unwrap(),
        "--labels",
        yi.to_str().unwrap(),
        "--epochs",
        "3",
        "--lr",
        "0.5",
        "--json",
    ]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(t.stderr.contains("64 features, 2 classes"), "{}", t.stderr);
    assert_eq!(
        last_epoch(&t)["val_accuracy"].as_f64().unwrap(),
        1.0,
        "{}",
        t.stdout
    );
}

#[test]
fn a_csv_file_over_the_budget_streams_and_learns_what_it_learns_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("f1,f2,f3,label\n");
    let ds = softmax_wgpu::data::synthetic(3000, 3, 3, 9).unwrap();
    for (row, &y) in ds.x.outer_iter().zip(&ds.y) {
        text.push_str(&format!("{},{},{},class{y}\n", row[0], row[1], row[2]));
    }
    let csv = write(dir.path(), "d.csv", text.as_bytes());
    let csv = csv.to_str().unwrap();
    let common = [
        "train", "--device", "cpu", "--data", csv, "--epochs", "3", "--lr", "0.1", "--json",
    ];
    let memory = run(&common);
    let streamed = run(&[&common[..], &["--memory-budget", "16KiB"]].concat());
    assert_eq!(streamed.code, 0, "{}", streamed.stderr);
    assert!(
        streamed.stderr.contains("streaming:"),
        "{}",
        streamed.stderr
    );
    let (m, s) = (last_epoch(&memory), last_epoch(&streamed));
    assert!(s["stream"]["chunks"].as_u64().unwrap() > 5);
    // Different held-out rows (a per-row hash instead of an exact shuffle) and a chunked shuffle: close, not equal.
    let (ma, sa) = (
        m["val_accuracy"].as_f64().unwrap(),
        s["val_accuracy"].as_f64().unwrap(),
    );
    assert!((ma - sa).abs() < 0.05, "in memory {ma}, streamed {sa}");
}

#[test]
fn eval_reports_what_predict_scores_as_tables_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let model = format!("{d}/m.safetensors");
    let t = run(&["train", "--device", "cpu", "--epochs", "5", "--out", &model]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&include_bytes!("../data/digits.csv.gz")[..]),
        &mut text,
    )
    .unwrap();
    let csv = write(dir.path(), "digits.csv", text.as_bytes());
    let csv = csv.to_str().unwrap();
    let p = run(&["predict", "--model", &model, "--data", csv]);
    let predicted: f64 = p.stderr.split_whitespace().nth(1).unwrap().parse().unwrap();
    let e = run(&[
        "eval", "--model", &model, "--data", csv, "--json", "--top-k", "3",
    ]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let r: serde_json::Value = serde_json::from_str(&e.stdout).unwrap();
    assert!(
        (r["accuracy"].as_f64().unwrap() - predicted).abs() < 1e-4,
        "{r}"
    );
    assert_eq!(r["rows"], 1797);
    assert_eq!(r["per_class"].as_array().unwrap().len(), 10);
    let confusion: u64 = r["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(confusion, 1797);
    let top3 = r["top_k_accuracy"].as_f64().unwrap();
    assert!(top3 >= r["accuracy"].as_f64().unwrap() && top3 <= 1.0);
    let tables = run(&["eval", "--model", &model, "--data", csv]);
    assert_eq!(tables.code, 0, "{}", tables.stderr);
    for part in [
        "accuracy",
        "log-loss",
        "top-5 accuracy",
        "macro avg",
        "weighted avg",
        "confusion matrix",
    ] {
        assert!(
            tables.stdout.contains(part),
            "{part} missing from:\n{}",
            tables.stdout
        );
    }
}

#[test]
fn plot_draws_the_run_and_quiet_says_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("curves.svg");
    let svg = svg.to_str().unwrap();
    let t = run(&[
        "train", "--device", "cpu", "--epochs", "4", "--plot", svg, "--quiet",
    ]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert_eq!(t.stderr, "", "--quiet");
    assert_eq!(t.stdout, "", "--quiet without --json prints no epoch lines");
    let text = std::fs::read_to_string(svg).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("<polyline"))
        .collect();
    assert_eq!(lines.len(), 4, "train and held-out loss and accuracy");
    for l in lines {
        assert_eq!(
            l.split("points=\"").nth(1).unwrap().split(' ').count(),
            4,
            "{l}"
        );
    }
    let json = run(&[
        "train", "--device", "cpu", "--epochs", "2", "--quiet", "--json",
    ]);
    assert_eq!((json.stdout.lines().count(), json.stderr.as_str()), (2, ""));
}

#[test]
fn a_warm_start_continues_the_run_it_starts_from() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (a, b, c) = (
        format!("{d}/a.st"),
        format!("{d}/b.st"),
        format!("{d}/c.st"),
    );
    let common = [
        "train",
        "--device",
        "cpu",
        "--no-shuffle",
        "--standardize",
        "--quiet",
    ];
    for (epochs, out, init) in [("3", &a, None), ("2", &b, Some(&a)), ("5", &c, None)] {
        let mut args = common.to_vec();
        args.extend(["--epochs", epochs, "--out", out]);
        if let Some(i) = init {
            args.extend(["--init", i]);
        }
        let r = run(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    // Plain SGD keeps no state and the rows come in the same order: 3 epochs then 2 are the 5, bit for bit.
    let (mb, mc) = (
        Model::load(Path::new(&b)).unwrap(),
        Model::load(Path::new(&c)).unwrap(),
    );
    assert_eq!(mb.params, mc.params);
    assert_eq!(mb.standardizer, mc.standardizer);
    // The model's standardisation is part of what it was trained on.
    let raw = run(&["train", "--device", "cpu", "--epochs", "1", "--init", &a]);
    assert_input_error(&raw, &["--standardize", "standardises its features"]);
}

#[test]
fn a_run_killed_at_any_moment_resumes_to_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (a, b, ck) = (
        format!("{d}/a.st"),
        format!("{d}/b.st"),
        format!("{d}/ck.json"),
    );
    let args = [
        "train",
        "--device",
        "cpu",
        "--synthetic",
        "20000,64,10",
        "--epochs",
        "300",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--optimizer",
        "adam",
        "--quiet",
    ];
    let whole = run(&[&args[..], &["--out", &a]].concat());
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    // The same run with checkpoints, killed (SIGKILL) as soon as its first checkpoint is on disk, then resumed.
    let cache = tuning_cache();
    let mut child = Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"))
        .args(args)
        .args([
            "--checkpoint",
            &ck,
            "--checkpoint-every",
            "997",
            "--out",
            &b,
        ])
        .env("SOFTMAX_WGPU_CACHE_DIR", &cache)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !Path::new(&ck).exists() {
        assert!(started.elapsed().as_secs() < 60, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!Path::new(&b).exists(), "killed before it finished");
    let resumed = run(&[
        &args[..],
        &[
            "--checkpoint",
            &ck,
            "--checkpoint-every",
            "997",
            "--out",
            &b,
            "--resume",
            &ck,
        ],
    ]
    .concat());
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let (ma, mb) = (
        Model::load(Path::new(&a)).unwrap(),
        Model::load(Path::new(&b)).unwrap(),
    );
    assert_eq!(ma.params, mb.params, "resumed bit for bit");
    // A checkpoint of another run, or a damaged one, is refused with its file named.
    let other = run(&[&args[..], &["--seed", "7", "--resume", &ck]].concat());
    assert_input_error(&other, &["ck.json", "another run", "seed"]);
    std::fs::write(&ck, br#"{"version": 1, "run": "#).unwrap();
    let damaged = run(&[&args[..], &["--resume", &ck]].concat());
    assert_input_error(&damaged, &["ck.json", "checkpoint"]);
}

#[test]
fn an_early_stopping_run_resumed_from_its_checkpoint_stops_and_saves_what_the_whole_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (a, b, c, ck) = (
        format!("{d}/a.st"),
        format!("{d}/b.st"),
        format!("{d}/c.st"),
        format!("{d}/ck.json"),
    );
    // 2,000 steps an epoch; this run keeps epoch 7's weights and stops after epoch 12 (patience 5).
    let args = [
        "train",
        "--device",
        "cpu",
        "--synthetic",
        "20000,64,10",
        "--early-stopping",
        "--optimizer",
        "sgd",
        "--lr",
        "0.3",
        "--batch-size",
        "8",
        "--epochs",
        "300",
        "--quiet",
    ];
    let epochs = |out: &Out| -> Vec<usize> {
        out.stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"]
                    .as_u64()
                    .unwrap() as usize
            })
            .collect()
    };
    let whole = run(&[&args[..], &["--out", &a, "--json"]].concat());
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    assert_eq!(
        epochs(&whole).last(),
        Some(&12),
        "the run this test is about"
    );
    // The same run with a checkpoint every 4,999 steps: its last is in epoch 10, after the best epoch. Resumed from
    // it, the run must know epoch 7 was the best (and keep its weights) and stop after epoch 12, not run on.
    let ckpt = [
        &args[..],
        &["--checkpoint", &ck, "--checkpoint-every", "4999"],
    ]
    .concat();
    let with = run(&[&ckpt[..], &["--out", &b]].concat());
    assert_eq!(with.code, 0, "{}", with.stderr);
    let resumed = run(&[&ckpt[..], &["--out", &c, "--json", "--resume", &ck]].concat());
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(epochs(&resumed), vec![10, 11, 12]);
    let load = |p: &str| Model::load(Path::new(p)).unwrap().params;
    assert_eq!(load(&a), load(&b), "checkpoints change nothing");
    assert_eq!(load(&a), load(&c), "resumed bit for bit");
    // A checkpoint every epoch's end (2,000 steps): the last is written as the run stops, and resumes to its end.
    let every_epoch = [
        &args[..],
        &["--checkpoint", &ck, "--checkpoint-every", "2000"],
    ]
    .concat();
    assert_eq!(run(&[&every_epoch[..], &["--out", &b]].concat()).code, 0);
    let at_end = run(&[&every_epoch[..], &["--out", &c, "--json", "--resume", &ck]].concat());
    assert_eq!(at_end.code, 0, "{}", at_end.stderr);
    assert!(epochs(&at_end).is_empty(), "{}", at_end.stdout);
    assert_eq!(load(&a), load(&c), "the best epoch's weights");
}

#[test]
fn lbfgs_says_how_it_stopped_in_scikit_learn_terms() {
    // Converged: the line names the rule and the tolerance; each iteration is a line with ‖∇J‖∞.
    let out = run(&[
        "train",
        "--device",
        "cpu",
        "--standardize",
        "--optimizer",
        "lbfgs",
        "--l2",
        "0.001",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out
        .stdout
        .lines()
        .any(|l| l.starts_with("iter ") && l.contains("|grad|")));
    assert!(
        out.stderr.contains("L-BFGS converged in") && out.stderr.contains("≤ --tol 1.0e-4"),
        "{}",
        out.stderr
    );
    // The cap: a warning, as scikit-learn's ConvergenceWarning, and still a model (exit 0).
    let out = run(&[
        "train",
        "--device",
        "cpu",
        "--optimizer",
        "lbfgs",
        "--max-iter",
        "3",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("warning: L-BFGS did not converge in 3 iterations"),
        "{}",
        out.stderr
    );
    let last = last_epoch(&out);
    assert_eq!(last["lbfgs"]["stop"], "max_iter");
    assert_eq!(last["epoch"], 3);
}

#[test]
fn the_automatic_choice_streams_with_a_convergence_stop_and_explicit_flags_keep_sgd() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    let gen = run(&[
        "gen",
        "--shape",
        "40000,8,3",
        "--out",
        x.to_str().unwrap(),
        "--labels-out",
        y.to_str().unwrap(),
    ]);
    assert_eq!(gen.code, 0, "{}", gen.stderr);
    // Over the memory budget: minibatch SGD with SGDClassifier's stop, said in one line.
    let out = run(&[
        "train",
        "--device",
        "cpu",
        "--data",
        x.to_str().unwrap(),
        "--labels",
        y.to_str().unwrap(),
        "--memory-budget",
        "256KiB",
        "--max-iter",
        "40",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("optimizer: minibatch SGD (automatic")
            && out.stderr.contains("standardised features"),
        "{}",
        out.stderr
    );
    let last = last_epoch(&out);
    assert!(last["stream"].is_object());
    assert_eq!(last["converged"], true, "{}", out.stderr);
    assert!(out
        .stderr
        .contains("converged: the training loss fell by less than --tol"));
    // A minibatch flag keeps today's run: SGD, no penalty, no standardisation, all its epochs.
    let out = run(&["train", "--device", "cpu", "--epochs", "3", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("optimizer:"), "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 3);
    assert!(last_epoch(&out)["lbfgs"].is_null());
}

#[test]
fn class_weights_are_computed_said_used_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    // 3 classes in proportions 6 : 3 : 1 (balanced weights 10/18, 10/9, 10/3).
    let mut csv = String::new();
    for i in 0..200 {
        let c = match i % 10 {
            0..=5 => "a",
            6..=8 => "b",
            _ => "c",
        };
        let v = (i % 7) as f32 * 0.1 + if c == "c" { 1.0 } else { 0.0 };
        csv += &format!("{v},{},{c}\n", (i % 5) as f32 * 0.2);
    }
    let data = write(dir.path(), "imb.csv", csv.as_bytes());
    let model = dir.path().join("m.safetensors");
    let out = run(&[
        "train",
        "--device",
        "cpu",
        "--data",
        data.to_str().unwrap(),
        "--val-split",
        "0",
        "--class-weight",
        "balanced",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("class weights: a 0.5556, b 1.1111, c 3.3333"),
        "{}",
        out.stderr
    );
    let m = Model::load(&model).unwrap();
    let stored = &m.settings["config"]["class_weights"];
    assert_eq!(stored.as_array().map(Vec::len), Some(3), "{stored}");
    // Named weights: the others weigh 1.
    let out = run(&[
        "train",
        "--device",
        "cpu",
        "--data",
        data.to_str().unwrap(),
        "--class-weight",
        "c=5",
        "--epochs",
        "1",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("class weights: a 1.0000, b 1.0000, c 5.0000"),
        "{}",
        out.stderr
    );
}

#[test]
fn sample_weights_follow_their_rows_through_the_split_in_memory_and_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    let gen = run(&[
        "gen",
        "--shape",
        "3000,6,3",
        "--out",
        x.to_str().unwrap(),
        "--labels-out",
        y.to_str().unwrap(),
    ]);
    assert_eq!(gen.code, 0, "{}", gen.stderr);
    // A header line, then one weight a line: every third row counts triple.
    let mut text = String::from("weight\n");
    for i in 0..3000 {
        text += if i % 3 == 0 { "3\n" } else { "1\n" };
    }
    let w = write(dir.path(), "w.csv", text.as_bytes());
    let args = |budget: &str| {
        vec![
            "train".to_string(),
            "--device".into(),
            "cpu".into(),
            "--data".into(),
            x.to_str().unwrap().into(),
            "--labels".into(),
            y.to_str().unwrap().into(),
            "--sample-weight".into(),
            w.to_str().unwrap().into(),
            "--optimizer".into(),
            "sgd".into(),
            "--epochs".into(),
            "2".into(),
            "--json".into(),
            "--memory-budget".into(),
            budget.into(),
        ]
    };
    let held = run(&args("1GiB").iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(held.code, 0, "{}", held.stderr);
    let streamed = run(&args("64KiB").iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(streamed.code, 0, "{}", streamed.stderr);
    let (h, s) = (last_epoch(&held), last_epoch(&streamed));
    assert!(h["stream"].is_null() && s["stream"].is_object());
    // Both learn the same data with the same weights (the streamed run shuffles by chunk, so not bit for bit).
    let (lh, ls) = (
        h["train_loss"].as_f64().unwrap(),
        s["train_loss"].as_f64().unwrap(),
    );
    assert!((lh - ls).abs() < 0.05 * lh, "{lh} vs {ls}");
    // The weights are in the run's settings.
    let model = dir.path().join("m.safetensors");
    let mut a = args("1GiB");
    a.extend(["--out".to_string(), model.to_str().unwrap().to_string()]);
    assert_eq!(
        run(&a.iter().map(String::as_str).collect::<Vec<_>>()).code,
        0
    );
    let m = Model::load(&model).unwrap();
    assert!(m.settings["config"]["sample_weight"]
        .as_str()
        .is_some_and(|p| p.ends_with("w.csv")));
}

#[test]
fn bench_runs_its_peers_from_a_private_directory_and_leaves_nothing() {
    // The peers' scripts used to go to $TMPDIR/softmax-wgpu-bench-<pid>, accepted if someone else had made it: a
    // planted numpy.py ran as the user. Plant that (every pid's name was as easy to guess): the planted
    // script must not run, and the run leaves nothing in $TMPDIR.
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("planted-script-ran");
    let planted = format!("open({:?}, 'w').write('x')\n", marker.to_str().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"))
        .args([
            "bench", "--peers", "numpy", "--shape", "500,8,3", "--device", "cpu", "--epochs", "1",
        ])
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let plant = tmp
        .path()
        .join(format!("softmax-wgpu-bench-{}", child.id()));
    let _ = std::fs::create_dir(&plant);
    // A module named numpy beside the script is what python imports first.
    let _ = std::fs::write(plant.join("numpy.py"), &planted);
    assert!(child.wait().unwrap().success());
    assert!(!marker.exists(), "a planted script ran");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| *n != *plant.file_name().unwrap())
        .collect();
    assert!(left.is_empty(), "left in $TMPDIR: {left:?}");
}

#[test]
fn outputs_write_through_links_and_devices_and_keep_their_mode() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let real = d.join("real.st");
    std::fs::write(&real, b"old").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = d.join("link.st");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let args = [
        "train",
        "--device",
        "cpu",
        "--optimizer",
        "sgd",
        "--epochs",
        "1",
        "--quiet",
    ];
    let out = run(&[&args[..], &["--out", link.to_str().unwrap()]].concat());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link stays a link"
    );
    Model::load(&real).unwrap();
    let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the output keeps its mode");
    // A device is written through, never replaced (as root the old writer replaced /dev/null with a file).
    let out = run(&[&args[..], &["--out", "/dev/null"]].concat());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // No temporary file is left beside the outputs.
    let mut names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["link.st", "real.st"]);
}

#[test]
fn an_output_that_is_an_input_or_another_output_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    // A model of the digits' 64 features, and the digits' first rows as CSV (64 features and a label).
    let model = d.join("m.st");
    let trained = run(&[
        "train",
        "--device",
        "cpu",
        "--optimizer",
        "sgd",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        &s(&model),
    ]);
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    let row: Vec<String> = (0..64)
        .map(|j| (j % 7).to_string())
        .chain(["3".to_string()])
        .collect();
    let csv = write(
        d,
        "x.csv",
        format!("{}\n{}\n", row.join(","), row.join(",")).as_bytes(),
    );
    let link = d.join("link.csv");
    std::os::unix::fs::symlink(&csv, &link).unwrap();
    let ck = d.join("ck.json");
    let (m, x, l, c) = (s(&model), s(&csv), s(&link), s(&ck));
    let dotted = format!("{}/./x.csv", s(d));
    let train = [
        "train",
        "--device",
        "cpu",
        "--optimizer",
        "sgd",
        "--epochs",
        "1",
        "--quiet",
    ];
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["predict", "--model", &m, "--data", &x, "--out", &x],
            "--out",
            "--data",
        ),
        (
            vec!["predict", "--model", &m, "--data", &x, "--out", &m],
            "--out",
            "--model",
        ),
        (
            vec!["eval", "--model", &m, "--data", &x, "--out", &m],
            "--out",
            "--model",
        ),
        (
            [&train[..], &["--data", &x, "--checkpoint", &x]].concat(),
            "--checkpoint",
            "--data",
        ),
        (
            [&train[..], &["--data", &x, "--out", &l]].concat(),
            "--out",
            "--data",
        ),
        (
            [&train[..], &["--data", &x, "--plot", &dotted]].concat(),
            "--plot",
            "--data",
        ),
        (
            [&train[..], &["--out", &c, "--checkpoint", &c]].concat(),
            "--checkpoint",
            "--out",
        ),
        (
            [&train[..], &["--init", &m, "--out", &m]].concat(),
            "--out",
            "--init",
        ),
    ];
    let before = (std::fs::read(&model).unwrap(), std::fs::read(&csv).unwrap());
    for (args, flag, other) in cases {
        let out = run(&args);
        assert_input_error(&out, &[flag, &format!("a file other than {other}")]);
        let after = (std::fs::read(&model).unwrap(), std::fs::read(&csv).unwrap());
        assert!(after == before, "{args:?} changed an input");
        assert!(!ck.exists(), "{args:?} wrote a checkpoint");
    }
    // Continuing a run from its own checkpoint is what --resume is for.
    let first = run(&[&train[..], &["--checkpoint", &c, "--checkpoint-every", "5"]].concat());
    assert_eq!(first.code, 0, "{}", first.stderr);
    let again = run(&[
        &train[..],
        &[
            "--checkpoint",
            &c,
            "--checkpoint-every",
            "5",
            "--resume",
            &c,
        ],
    ]
    .concat());
    assert_eq!(again.code, 0, "{}", again.stderr);
}

#[test]
fn a_closed_stdout_ends_printing_quietly_and_the_model_is_still_saved() {
    // `train … | head -1`: the reader leaves after one line; printing used to panic (exit 101) and lose the model.
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.st");
    let mut child = Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"))
        .args([
            "train",
            "--device",
            "cpu",
            "--optimizer",
            "sgd",
            "--epochs",
            "200",
            "--json",
        ])
        .args(["--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("\"epoch\":1"), "{first}");
    // The reader is gone: the remaining 199 epoch lines meet a closed pipe.
    let status = child.wait_with_output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    Model::load(&out).unwrap();
}

#[test]
fn sigint_and_sigterm_leave_no_temporary_files_and_exit_130_or_143() {
    // `gen` of a large array writes for a while through a temporary file; stopped in the middle, it used to leave a
    // hidden `.x.npy.tmp-<pid>` of hundreds of MB.
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let dir = tempfile::tempdir().unwrap();
        let x = dir.path().join("x.npy");
        let y = dir.path().join("y.npy");
        let child = Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"))
            .args([
                "gen",
                "--shape",
                "3000000,64,3",
                "--format",
                "npy",
                "--seed",
                "1",
            ])
            .args([
                "--out",
                x.to_str().unwrap(),
                "--labels-out",
                y.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the temporary file to appear (the write is under way), then stop the process.
        let started = std::time::Instant::now();
        while std::fs::read_dir(dir.path()).unwrap().next().is_none() {
            assert!(
                started.elapsed().as_secs() < 60,
                "no temporary file appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "SIG{signal}: {stderr}");
        assert!(
            stderr.contains(&format!("stopped by SIG{signal}")),
            "{stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "SIG{signal} left {left:?}");
    }
}

#[test]
fn an_unwritable_output_is_refused_before_training_starts() {
    // Run as another user (root can write anywhere): where `setpriv` and root are at hand, as on CI.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !(root && setpriv) {
        eprintln!("skipped: needs root and setpriv to run as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // The binary where the other user may run it.
    let bin = dir.path().join("softmax-wgpu");
    std::fs::copy(env!("CARGO_BIN_EXE_softmax-wgpu"), &bin).unwrap();
    let out = dir.path().join("m.st");
    let started = std::time::Instant::now();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args([
            "train",
            "--device",
            "cpu",
            "--synthetic",
            "200000,64,10",
            "--optimizer",
            "sgd",
        ])
        .args([
            "--epochs",
            "1000",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot write in") && stderr.contains("m.st"),
        "{stderr}"
    );
    // Refused at once: 1,000 epochs of 200,000 rows would take minutes.
    assert!(
        started.elapsed().as_secs() < 30,
        "not refused before training"
    );
    assert!(!out.exists());
}

#[test]
fn a_checkpoint_past_the_requested_end_or_without_its_optimizer_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.json");
    let c = ck.to_str().unwrap();
    let args = |epochs: &'static str| {
        vec![
            "train",
            "--device",
            "cpu",
            "--synthetic",
            "2000,8,3",
            "--optimizer",
            "adam",
            "--batch-size",
            "8",
            "--quiet",
            "--epochs",
            epochs,
        ]
    };
    let first = run(&[
        &args("5")[..],
        &["--checkpoint", c, "--checkpoint-every", "950"],
    ]
    .concat());
    assert_eq!(first.code, 0, "{}", first.stderr);
    // Its last checkpoint is in epoch 5: resuming it as a 3-epoch run would save 5 epochs' weights labelled 3.
    let past = run(&[&args("3")[..], &["--resume", c]].concat());
    assert_input_error(&past, &["--epochs", "at least the checkpoint's epoch, 5"]);
    // Adam's moments removed: the run would go on from zeros, another run than the one checkpointed.
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&ck).unwrap()).unwrap();
    json["optimizer"]["tensors"] = serde_json::json!([]);
    let stripped = dir.path().join("stripped.json");
    std::fs::write(&stripped, serde_json::to_vec(&json).unwrap()).unwrap();
    let out = run(&[&args("5")[..], &["--resume", stripped.to_str().unwrap()]].concat());
    assert_input_error(&out, &["--resume", "optimizer's state (m, v)"]);
    // A weight or a moment altered on disk: the tensor's checksum names it (an altered moment used to surface as a
    // diverged run blamed on --lr).
    let alter = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&ck).unwrap()).unwrap();
        edit(&mut json);
        let p = dir.path().join(name);
        std::fs::write(&p, serde_json::to_vec(&json).unwrap()).unwrap();
        run(&[&args("6")[..], &["--resume", p.to_str().unwrap()]].concat())
    };
    let w = alter("w.json", &|j| j["w"][3] = serde_json::json!(0.125));
    assert_input_error(&w, &["w.json", "tensor w", "checksum"]);
    let m = alter("m.json", &|j| {
        j["optimizer"]["tensors"][0][2][0] = serde_json::json!(2.5)
    });
    assert_input_error(&m, &["m.json", "tensor optimizer.m", "checksum"]);
    // A version-1 checkpoint (no checksums) still resumes.
    let v1 = alter("v1.json", &|j| {
        j["version"] = serde_json::json!(1);
        j.as_object_mut().unwrap().remove("checksums");
    });
    assert_eq!(v1.code, 0, "{}", v1.stderr);
}

#[test]
fn eval_defaults_to_the_top_k_a_model_has() {
    // --top-k defaulted to 5 and failed on every model of fewer classes.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m3.st");
    let m = model.to_str().unwrap();
    let trained = run(&[
        "train",
        "--device",
        "cpu",
        "--synthetic",
        "300,4,3",
        "--optimizer",
        "sgd",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        m,
    ]);
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    let csv = write(dir.path(), "x.csv", b"1,2,3,4,0\n0,1,0,1,2\n");
    let out = run(&["eval", "--model", m, "--data", csv.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("top-3 accuracy"), "{}", out.stdout);
}

#[test]
fn an_error_shows_a_long_cell_by_its_start_and_length() {
    // A 10 MB cell used to make a 10 MB error line.
    let dir = tempfile::tempdir().unwrap();
    let cell = "x".repeat(10 << 20);
    let csv = write(
        dir.path(),
        "big.csv",
        format!("1,2,0\n3,{cell},1\n").as_bytes(),
    );
    let out = run(&[
        "train",
        "--device",
        "cpu",
        "--data",
        csv.to_str().unwrap(),
        "--quiet",
    ]);
    assert_input_error(
        &out,
        &["big.csv", "line 2", "cannot parse", "(10485760 bytes)"],
    );
    assert!(
        out.stderr.len() < 400,
        "{} bytes of stderr",
        out.stderr.len()
    );
}

/// `cmd` with `args` run by `sh` under `ulimit -d KIB` (the process's data limit, which counts what a run allocates
/// and not the arenas it reserves, so that it tests the budget and not glibc's layout).
fn run_limited(kib: u64, args: &[&str]) -> Out {
    output(
        Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -d {kib} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_softmax-wgpu"))
            .args(args),
    )
}

#[test]
fn under_a_process_memory_limit_the_default_budget_streams_and_a_budget_beyond_it_is_an_error() {
    // 61 MiB of rows under a 58 MiB data limit: the default budget used to be half the machine's available memory,
    // so the rows were read whole and the allocation aborted (exit 134). Now it is half of what `ulimit -d` leaves.
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    let (x, y) = (x.to_str().unwrap(), y.to_str().unwrap());
    let gen = run(&[
        "gen",
        "--shape",
        "80000,200,3",
        "--out",
        x,
        "--labels-out",
        y,
    ]);
    assert_eq!(gen.code, 0, "{}", gen.stderr);
    let model = dir.path().join("m.safetensors");
    // The limit leaves the same room as before the CPU path's products kept their scratch (two last-level caches
    // per thread that multiplies — the workers and the main thread — mapped once) aside from it.
    let threads = std::thread::available_parallelism().map_or(1, usize::from) as u64;
    let limit = 60_000 + (threads + 1) * softmax_wgpu::memory::product_scratch_bytes() / 1024;
    let train = |extra: &[&str]| {
        run_limited(
            limit,
            &[
                &["train", "--device", "cpu", "--data", x, "--labels", y][..],
                &["--epochs", "1", "--out", model.to_str().unwrap()],
                extra,
            ]
            .concat(),
        )
    };
    let streamed = train(&[]);
    assert_eq!(streamed.code, 0, "{}", streamed.stderr);
    assert!(
        streamed.stderr.contains("streaming:"),
        "{}",
        streamed.stderr
    );
    assert!(model.exists());
    // A budget the limit does not leave: one line naming the limit and the flag, exit 2, no abort.
    std::fs::remove_file(&model).unwrap();
    let over = train(&["--memory-budget", "1GiB"]);
    assert_eq!(over.code, 2, "{}", over.stderr);
    assert_eq!(over.stderr.lines().count(), 1, "{}", over.stderr);
    assert!(
        over.stderr.starts_with("error: --memory-budget")
            && over.stderr.contains("that ulimit -d leaves"),
        "{}",
        over.stderr
    );
    assert!(!model.exists());
    // One too small to stream in chunks of a batch (or 64 rows): refused with the smallest that works, which runs.
    let tiny = train(&["--memory-budget", "1"]);
    assert_eq!(tiny.code, 2, "{}", tiny.stderr);
    let last = tiny.stderr.lines().last().unwrap();
    let least = last
        .split("at least ")
        .nth(1)
        .and_then(|r| r.split(" to stream").next())
        .unwrap_or_else(|| panic!("{last}"));
    assert!(last.starts_with("error: --memory-budget"), "{last}");
    let least = least.replace(" KiB", "KiB").replace(" MiB", "MiB");
    let enough = train(&["--memory-budget", &least]);
    assert_eq!(enough.code, 0, "{least}: {}", enough.stderr);
}

#[test]
fn a_damaged_tuning_cache_is_ignored_with_a_warning_and_rewritten() {
    // A width of 0 divided by zero; now each bad entry is named in one warning line and its kernels timed again.
    let cache = tempfile::tempdir().unwrap();
    let file = cache.path().join("tuning.json");
    let train = || {
        let mut o = Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"));
        o.args([
            "train",
            "--device",
            "gpu",
            "--synthetic",
            "200,8,3",
            "--optimizer",
            "sgd",
            "--epochs",
            "1",
            "--batch-size",
            "16",
        ])
        .env("SOFTMAX_WGPU_CACHE_DIR", cache.path());
        let o = output(&mut o);
        (Some(o.code), o.stderr)
    };
    let (code, stderr) = train();
    if code == Some(2)
        && stderr.contains("no GPU")
        && std::env::var("SOFTMAX_WGPU_REQUIRE_GPU").is_err()
    {
        println!("skipped: no GPU adapter");
        return;
    }
    assert_eq!(code, Some(0), "{stderr}");
    if !file.exists() {
        println!("skipped: no GPU adapter, nothing tuned");
        return;
    }
    assert!(!stderr.contains("warning:"), "{stderr}");
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let mut bad = good.clone();
    for widths in bad.as_object_mut().unwrap().values_mut() {
        for w in widths.as_object_mut().unwrap().values_mut() {
            *w = serde_json::json!(0);
        }
    }
    std::fs::write(&file, serde_json::to_vec(&bad).unwrap()).unwrap();
    let (code, stderr) = train();
    assert_eq!(code, Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("tuning.json") && warnings[0].contains("a width of 0"),
        "{stderr}"
    );
    // Timed again and rewritten: the next run reads it quietly.
    let (_, stderr) = train();
    assert!(!stderr.contains("warning:"), "{stderr}");
    std::fs::write(&file, b"{ not json").unwrap();
    let (code, stderr) = train();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("not a tuning cache"),
        "{stderr}"
    );
}

/// `--optimizer lbfgs --l1` runs OWL-QN (weights exactly 0, the run converged) and `--no-intercept` keeps the
/// biases at 0; the model file says so.
#[test]
fn lbfgs_takes_l1_and_no_intercept() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("l1.safetensors");
    let r = run(&[
        "train",
        "--device",
        "cpu",
        "--optimizer",
        "lbfgs",
        "--standardize",
        "--l1",
        "0.01",
        "--no-intercept",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("L-BFGS converged"), "{}", r.stderr);
    let m = Model::load(&model).unwrap();
    assert!(m.params.b.iter().all(|&b| b == 0.0), "{:?}", m.params.b);
    let zeros = m.params.w.iter().filter(|&&w| w == 0.0).count();
    // The digits' constant pixels are 0 with any penalty; L1 at 0.01 zeroes many more of the 640 weights.
    assert!(zeros > 200 && zeros < 640, "{zeros} weights are 0");
    assert_eq!(
        m.settings["config"]["fit_intercept"],
        serde_json::json!(false),
        "{}",
        m.settings
    );
}
