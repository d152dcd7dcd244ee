//! The default run matches scikit-learn's defaults on small real tables: `train --data train.csv --test test.csv`
//! with no tuning flag against `make_pipeline(StandardScaler(), LogisticRegression())`, on the same stratified
//! 75/25 splits (written with scikit-learn's accuracies by tests/data/sklearn_defaults.py), within 1 accuracy point,
//! on the CPU path and on every adapter.

mod common;

use std::path::Path;
use std::process::Command;

struct Problem {
    name: String,
    file: String,
    train: Vec<usize>,
    test: Vec<usize>,
    accuracy: f64,
}

fn problems() -> Vec<Problem> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("tests/data/defaults_reference.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Problem {
            name: p["name"].as_str().unwrap().into(),
            file: p["file"].as_str().unwrap().into(),
            train: serde_json::from_value(p["train"].clone()).unwrap(),
            test: serde_json::from_value(p["test"].clone()).unwrap(),
            accuracy: p["accuracy"].as_f64().unwrap(),
        })
        .collect()
}

/// The table's header line (if any) and data lines.
fn lines(file: &str) -> (Option<String>, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let bytes = std::fs::read(&path).unwrap();
    let text = if file.ends_with(".gz") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut s)
            .unwrap();
        s
    } else {
        String::from_utf8(bytes).unwrap()
    };
    let mut all: Vec<String> = text.lines().map(str::to_string).collect();
    // The bundled tables start with a header of names; the digits have none.
    let header = all
        .first()
        .filter(|l| {
            l.split(',')
                .next()
                .is_some_and(|c| c.parse::<f64>().is_err())
        })
        .cloned();
    if header.is_some() {
        all.remove(0);
    }
    (header, all)
}

fn write_rows(dir: &Path, name: &str, header: &Option<String>, rows: &[String], which: &[usize]) {
    let mut out = String::new();
    if let Some(h) = header {
        out += h;
        out.push('\n');
    }
    for &i in which {
        out += &rows[i];
        out.push('\n');
    }
    std::fs::write(dir.join(name), out).unwrap();
}

#[test]
fn the_default_run_matches_scikit_learns_defaults_on_small_real_tables() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut devices: Vec<Vec<String>> = vec![vec!["--device".into(), "cpu".into()]];
    for i in 0..common::gpus().len() {
        devices.push(vec![
            "--device".into(),
            "gpu".into(),
            "--adapter".into(),
            i.to_string(),
        ]);
    }
    for p in problems() {
        let (header, rows) = lines(&p.file);
        write_rows(dir.path(), "train.csv", &header, &rows, &p.train);
        write_rows(dir.path(), "test.csv", &header, &rows, &p.test);
        for device in &devices {
            let out = Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"))
                .current_dir(dir.path())
                .args([
                    "train",
                    "--data",
                    "train.csv",
                    "--test",
                    "test.csv",
                    "--json",
                ])
                .args(device)
                .env("SOFTMAX_WGPU_CACHE_DIR", &cache)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{} {device:?}: {stderr}", p.name);
            // The run says which method it chose and why, and that it converged.
            assert!(
                stderr.contains("optimizer: full-batch L-BFGS (automatic")
                    && stderr.contains("L-BFGS converged"),
                "{} {device:?}: {stderr}",
                p.name
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let last: serde_json::Value =
                serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
            let acc = last["val_accuracy"].as_f64().unwrap();
            // Within 1 accuracy point. The test sets are 38 to 450 rows, so on the smaller ones this means the same
            // predictions: both sides minimise the same objective on the same standardised rows to the same
            // tolerance (measured: equal accuracy on all four, on the CPU path and lavapipe).
            assert!(
                (acc - p.accuracy).abs() <= 0.01,
                "{} {device:?}: accuracy {acc} vs scikit-learn {}",
                p.name,
                p.accuracy
            );
            eprintln!(
                "{} {device:?}: {acc:.4} (scikit-learn {:.4}) in {} iterations",
                p.name, p.accuracy, last["epoch"]
            );
        }
    }
}
