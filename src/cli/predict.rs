//! `softmax-wgpu predict`: a saved model applied to rows (CSV or NPY), written as CSV with the original labels.

use std::process::ExitCode;

use anyhow::Result;
use softmax_wgpu::Model;

use super::args::PredictArgs;
use super::common::{check_outputs, write_output};
use super::load;

/// Runs the command.
pub fn run(a: PredictArgs) -> Result<ExitCode> {
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
    let (proba, y) = probabilities(&a, &model)?;
    let predicted = softmax_wgpu::model::argmax_rows(proba.view());
    let mut text = String::from("label");
    if a.proba {
        for c in &model.classes {
            text.push(',');
            text.push_str(&csv_cell(&format!("p_{c}")));
        }
    }
    text.push('\n');
    for (i, &c) in predicted.iter().enumerate() {
        text.push_str(&csv_cell(&model.classes[c as usize]));
        if a.proba {
            for p in proba.row(i) {
                text.push_str(&format!(",{p}"));
            }
        }
        text.push('\n');
    }
    if let Some(y) = &y {
        let hits = y.iter().zip(&predicted).filter(|(a, b)| a == b).count();
        eprintln!(
            "accuracy {:.4} ({hits} of {} rows)",
            hits as f64 / y.len().max(1) as f64,
            y.len()
        );
    }
    write_output(a.out.as_deref(), &text)?;
    Ok(ExitCode::SUCCESS)
}

/// A CSV cell, quoted when it must be.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The class probabilities of the rows `a` names, and their classes when known.
pub(super) fn probabilities(
    a: &PredictArgs,
    model: &Model,
) -> Result<(ndarray::Array2<f32>, Option<Vec<u32>>)> {
    let data = load::prediction_data(a, model)?;
    Ok(match data.x {
        load::Rows2::Dense(x) => (model.predict_proba(x.view())?, data.y),
        load::Rows2::Sparse(mut source) => {
            // A chunk at a time: the rows stay sparse; the probabilities are n × k.
            let mut parts = Vec::new();
            let mut y = Vec::new();
            source.rewind()?;
            while let Some(c) = source.next_sparse(1 << 14)? {
                let rows = softmax_wgpu::data::SparseRows::from_chunk(
                    source.name(),
                    &c,
                    model.classes.len(),
                )?;
                let all: Vec<u32> = (0..rows.len() as u32).collect();
                parts.push(model.predict_proba_sparse(&rows.batch(&all))?);
                y.extend_from_slice(&c.y);
            }
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            let proba = ndarray::concatenate(ndarray::Axis(0), &views)
                .map_err(|e| softmax_wgpu::Error::Internal(format!("probabilities: {e}")))?;
            (proba, Some(y))
        }
    })
}
