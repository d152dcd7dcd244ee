//! `softmax-wgpu eval`: a saved model scored on labelled rows (`softmax_wgpu::metrics`), as tables or one JSON
//! document.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use softmax_wgpu::metrics::{self, Report};
use softmax_wgpu::{Error, Model};

use super::args::{EvalArgs, PredictArgs};
use super::common::{check_outputs, write_output};
use super::predict::probabilities;

/// Largest class count whose confusion matrix is printed as a table (it is always in --json).
const MAX_PRINTED_CLASSES: usize = 30;

/// Runs the command.
pub fn run(a: EvalArgs) -> Result<ExitCode> {
    check_outputs(
        &[("--out", a.out.as_deref())],
        &[
            ("--model", Some(a.model.as_path())),
            ("--data", Some(a.data.as_path())),
            ("--labels", a.labels.as_deref()),
        ],
        &[],
    )?;
    let model = Model::load(&a.model)?;
    // Top-5 by default, as far as the model's classes go (a model of 3 classes would otherwise fail by default).
    let top_k = a.top_k.unwrap_or(5.min(model.classes.len()));
    if top_k == 0 || top_k > model.classes.len() {
        return Err(Error::param(
            "--top-k",
            format!("in 1..={} (the model's classes)", model.classes.len()),
            top_k,
        )
        .into());
    }
    let rows = PredictArgs {
        model: a.model.clone(),
        data: a.data.clone(),
        labels: a.labels.clone(),
        format: a.format.clone(),
        label_column: Some(a.label_column),
        proba: false,
        out: None,
    };
    let (proba, y) = probabilities(&rows, &model)?;
    let y = y.ok_or_else(|| {
        Error::param(
            "--labels",
            format!(
                "given: eval needs the classes of the rows of {}",
                a.data.display()
            ),
            "none",
        )
    })?;
    let report = metrics::report(proba.view(), &y, &model.classes, top_k)?;
    let zero = model.params.w.iter().filter(|&&v| v == 0.0).count();
    let total = model.params.w.len();
    let text = if a.json {
        let mut value = serde_json::to_value(&report)
            .map_err(|e| Error::Internal(format!("report as JSON: {e}")))?;
        value["zero_weights"] = zero.into();
        value["weights"] = total.into();
        let mut s = serde_json::to_string_pretty(&value)
            .map_err(|e| Error::Internal(format!("report as JSON: {e}")))?;
        s.push('\n');
        s
    } else {
        let mut s = tables(&report, &a);
        let _ = writeln!(
            s,
            "\nmodel sparsity: {zero} of {total} weights are zero ({:.1} %)",
            100.0 * zero as f64 / total.max(1) as f64
        );
        s
    };
    write_output(a.out.as_deref(), &text)?;
    Ok(ExitCode::SUCCESS)
}

/// The report as text: the headline figures, the per-class table with its averages, the confusion matrix.
fn tables(r: &Report, a: &EvalArgs) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "model {} · data {} · {} rows · {} classes",
        a.model.display(),
        a.data.display(),
        r.rows,
        r.per_class.len()
    );
    let _ = writeln!(
        s,
        "accuracy {:.4}   log-loss {:.4}   top-{} accuracy {:.4}\n",
        r.accuracy, r.log_loss, r.top_k, r.top_k_accuracy
    );
    let width = r
        .per_class
        .iter()
        .map(|c| c.class.chars().count())
        .max()
        .unwrap_or(0)
        .max(12);
    let _ = writeln!(s, "{:<width$}  precision  recall     f1  support", "class");
    for c in &r.per_class {
        let x = &c.scores;
        let _ = writeln!(
            s,
            "{:<width$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
            c.class, x.precision, x.recall, x.f1, x.support
        );
    }
    for (name, x) in [
        ("macro avg", &r.macro_avg),
        ("weighted avg", &r.weighted_avg),
    ] {
        let _ = writeln!(
            s,
            "{:<width$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
            name, x.precision, x.recall, x.f1, x.support
        );
    }
    let k = r.per_class.len();
    if k > MAX_PRINTED_CLASSES {
        let _ = writeln!(s, "\nconfusion matrix: {k} × {k}, in --json");
        return s;
    }
    let _ = writeln!(
        s,
        "\nconfusion matrix (rows: true class, columns: predicted)"
    );
    let cell = r
        .confusion
        .iter()
        .flatten()
        .map(|v| v.to_string().len())
        .max()
        .unwrap_or(1)
        .max(
            r.per_class
                .iter()
                .map(|c| c.class.chars().count())
                .max()
                .unwrap_or(1),
        );
    let _ = write!(s, "{:<width$}", "");
    for c in &r.per_class {
        let _ = write!(s, " {:>cell$}", c.class);
    }
    s.push('\n');
    for (c, row) in r.per_class.iter().zip(&r.confusion) {
        let _ = write!(s, "{:<width$}", c.class);
        for v in row {
            let _ = write!(s, " {v:>cell$}");
        }
        s.push('\n');
    }
    s
}
