//! Training curves as a self-contained SVG (`train --plot`): the training and held-out loss, and the training and
//! held-out accuracy, per epoch, in two panels. Plain SVG 1.1 — lines, rectangles and text in the viewer's
//! sans-serif — that any browser or vector editor opens; nothing is rasterised here, so no font is needed.

use std::fmt::Write as _;

/// What the plot draws of one epoch (`train::EpochReport` converts into it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// The epoch, 1-based.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_accuracy: f64,
    /// Held-out loss, when there are held-out rows.
    pub val_loss: Option<f64>,
    /// Held-out accuracy, when there are held-out rows.
    pub val_accuracy: Option<f64>,
    /// The epoch whose weights early stopping kept.
    pub best: bool,
}

const WIDTH: f64 = 720.0;
const PANEL_HEIGHT: f64 = 240.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 140.0;
const TOP: f64 = 40.0;
const GAP: f64 = 50.0;

/// One series of a panel: its name, colour and a value per epoch (None where there is none).
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    values: Vec<Option<f64>>,
}

/// The lowest and highest finite value of the series, widened a little (and made non-empty).
fn range(series: &[Series<'_>]) -> (f64, f64) {
    let values = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .copied()
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

fn panel(out: &mut String, title: &str, top: f64, epochs: usize, series: &[Series<'_>]) {
    let (lo, hi) = range(series);
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |e: usize| {
        if epochs <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * (e - 1) as f64 / (epochs - 1) as f64
        }
    };
    let y = |v: f64| top + PANEL_HEIGHT * (1.0 - (v - lo) / (hi - lo));
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"13\">{title}</text>",
        top - 8.0
    );
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{plot_w}\" height=\"{PANEL_HEIGHT}\" fill=\"none\" stroke=\"#999\"/>"
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y(v) + 4.0,
            tick(v),
            yy = y(v)
        );
    }
    let step = epochs.div_ceil(10).max(1);
    for e in (1..=epochs).filter(|e| (e - 1) % step == 0 || *e == epochs) {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{e}</text>",
            x(e),
            top + PANEL_HEIGHT + 16.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(e, v)| v.filter(|v| v.is_finite()).map(|v| (e + 1, v)))
            .map(|(e, v)| format!("{:.1},{:.1}", x(e), y(v)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<polyline data-series=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            s.name,
            s.colour,
            points.join(" ")
        );
        let ly = top + 14.0 + 18.0 * i as f64;
        let lx = WIDTH - RIGHT + 12.0;
        let _ = writeln!(
            out,
            "<line x1=\"{lx}\" x2=\"{:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 18.0,
            s.colour,
            lx + 24.0,
            ly + 4.0,
            s.name
        );
    }
}

/// A tick label with as few digits as tell the ticks apart.
fn tick(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-3) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// The curves of a run's epochs as an SVG document.
pub fn curves(reports: &[Point], title: &str) -> String {
    let epochs = reports.len();
    let height = TOP + 2.0 * PANEL_HEIGHT + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(
        out,
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"10\" y=\"16\" font-size=\"14\">{}</text>",
        escape(title)
    );
    let loss = [
        Series {
            name: "train loss",
            colour: "#1f77b4",
            values: reports.iter().map(|r| Some(r.train_loss)).collect(),
        },
        Series {
            name: "held-out loss",
            colour: "#d62728",
            values: reports.iter().map(|r| r.val_loss).collect(),
        },
    ];
    panel(&mut out, "loss per epoch", TOP + 10.0, epochs, &loss);
    let accuracy = [
        Series {
            name: "train accuracy",
            colour: "#1f77b4",
            values: reports.iter().map(|r| Some(r.train_accuracy)).collect(),
        },
        Series {
            name: "held-out accuracy",
            colour: "#d62728",
            values: reports.iter().map(|r| r.val_accuracy).collect(),
        },
    ];
    panel(
        &mut out,
        "accuracy per epoch",
        TOP + 10.0 + PANEL_HEIGHT + GAP,
        epochs,
        &accuracy,
    );
    if let Some(best) = reports.iter().find(|r| r.best) {
        let _ = writeln!(
            out,
            "<text x=\"{LEFT}\" y=\"{:.1}\">best held-out loss at epoch {} (the weights kept)</text>",
            height - 8.0,
            best.epoch
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(epoch: usize, loss: f64, val: Option<f64>) -> Point {
        Point {
            epoch,
            train_loss: loss,
            train_accuracy: 1.0 - loss / 3.0,
            val_loss: val,
            val_accuracy: val.map(|v| 1.0 - v / 3.0),
            best: epoch == 2,
        }
    }

    #[test]
    fn every_series_has_a_point_per_epoch_inside_its_panel() {
        let reports: Vec<Point> = (1..=12)
            .map(|e| report(e, 2.0 / e as f64, Some(2.2 / e as f64)))
            .collect();
        let svg = curves(&reports, "a <run> & more");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;run&gt; &amp; more"));
        let lines: Vec<&str> = svg.lines().filter(|l| l.starts_with("<polyline")).collect();
        assert_eq!(lines.len(), 4);
        for l in lines {
            let points = l
                .split("points=\"")
                .nth(1)
                .unwrap()
                .trim_end_matches("\"/>");
            let xy: Vec<(f64, f64)> = points
                .split(' ')
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            assert_eq!(xy.len(), 12);
            assert!(
                xy.windows(2).all(|w| w[1].0 > w[0].0),
                "epochs left to right"
            );
            assert!(xy
                .iter()
                .all(|&(x, y)| (LEFT..=WIDTH - RIGHT).contains(&x) && y > 0.0));
        }
        assert!(svg.contains("best held-out loss at epoch 2"));
    }

    #[test]
    fn a_run_without_held_out_rows_or_with_one_epoch_still_draws() {
        let svg = curves(&[report(1, 0.5, None)], "one");
        assert_eq!(
            svg.lines().filter(|l| l.starts_with("<polyline")).count(),
            2
        );
        let nan = curves(&[report(1, f64::NAN, None), report(2, 0.3, None)], "nan");
        assert!(!nan.contains("NaN"));
    }
}
