//! Classification metrics of predicted probabilities against true classes: accuracy, log-loss, top-k accuracy, the
//! confusion matrix, and per-class precision, recall and F1 with their macro and support-weighted averages — the
//! definitions of scikit-learn's `classification_report` (a class never predicted has precision 0, one never present
//! recall 0).

use ndarray::ArrayView2;
use serde::Serialize;

use crate::error::{Error, Result};

/// Probabilities below this count as this in the log-loss, so that one confident mistake gives a large, finite loss.
/// scikit-learn (1.9) clips at the probabilities' machine epsilon instead (1.19e-7 for f32 input, 2.2e-16 for f64):
/// the figures differ only for rows whose true class got a probability below that.
pub const LOG_LOSS_FLOOR: f64 = 1e-15;

/// Precision, recall, F1 and support of one class, or their average.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// Of the rows predicted as the class, the share that are.
    pub precision: f64,
    /// Of the rows of the class, the share predicted as it.
    pub recall: f64,
    /// The harmonic mean of the two (0 when both are).
    pub f1: f64,
    /// Rows of the class (for an average: all rows).
    pub support: u64,
}

/// One class's scores, by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    /// The class name.
    pub class: String,
    /// Its scores.
    #[serde(flatten)]
    pub scores: Scores,
}

/// Everything `eval` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Rows evaluated.
    pub rows: u64,
    /// Share of rows whose most probable class is theirs (first on ties).
    pub accuracy: f64,
    /// Mean −ln p(true class), probabilities floored at [`LOG_LOSS_FLOOR`].
    pub log_loss: f64,
    /// k of the top-k accuracy.
    pub top_k: usize,
    /// Share of rows whose class is among the k most probable.
    pub top_k_accuracy: f64,
    /// Per class, in class order.
    pub per_class: Vec<ClassScores>,
    /// The unweighted mean over classes.
    pub macro_avg: Scores,
    /// The mean weighted by each class's support.
    pub weighted_avg: Scores,
    /// `confusion[t][p]`: rows of true class t predicted as p.
    pub confusion: Vec<Vec<u64>>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// The report of probabilities `proba` [rows, k] for the true classes `y`, with class names `classes`.
///
/// Long on purpose: one pass over the predictions fills every figure `eval` prints.
pub fn report(
    proba: ArrayView2<f32>,
    y: &[u32],
    classes: &[String],
    top_k: usize,
) -> Result<Report> {
    let (n, k) = proba.dim();
    if y.len() != n || classes.len() != k || n == 0 {
        return Err(Error::shape(
            "evaluation",
            format!(
                "{n} labels and {k} class names for {n} rows × {k} probabilities, at least one row"
            ),
            format!("{} labels, {} class names", y.len(), classes.len()),
        ));
    }
    if let Some(i) = y.iter().position(|&c| c as usize >= k) {
        return Err(Error::shape(
            format!("label of row {i}"),
            format!("below {k}"),
            y[i],
        ));
    }
    if top_k == 0 {
        return Err(Error::param("--top-k", "at least 1", 0));
    }
    let mut confusion = vec![vec![0u64; k]; k];
    let (mut hits, mut in_top, mut loss) = (0u64, 0u64, 0.0f64);
    for (row, &t) in proba.outer_iter().zip(y) {
        let t = t as usize;
        let mut best = 0;
        for c in 1..k {
            if row[c] > row[best] {
                best = c;
            }
        }
        confusion[t][best] += 1;
        hits += u64::from(best == t);
        // The true class is in the top k when fewer than k classes are more probable (ties counted in its favour).
        let above = row.iter().filter(|&&p| p > row[t]).count();
        in_top += u64::from(above < top_k);
        loss -= f64::from(row[t]).max(LOG_LOSS_FLOOR).ln();
    }
    let n64 = n as u64;
    let per_class: Vec<ClassScores> = (0..k)
        .map(|c| {
            let tp = confusion[c][c];
            let predicted: u64 = (0..k).map(|t| confusion[t][c]).sum();
            let support: u64 = confusion[c].iter().sum();
            let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
            ClassScores {
                class: classes[c].clone(),
                scores: Scores {
                    precision,
                    recall,
                    f1: f1(precision, recall),
                    support,
                },
            }
        })
        .collect();
    let average = |weight: &dyn Fn(&Scores) -> f64| {
        let total: f64 = per_class.iter().map(|c| weight(&c.scores)).sum();
        let mean = |f: &dyn Fn(&Scores) -> f64| {
            if total == 0.0 {
                0.0
            } else {
                per_class
                    .iter()
                    .map(|c| weight(&c.scores) * f(&c.scores))
                    .sum::<f64>()
                    / total
            }
        };
        Scores {
            precision: mean(&|s| s.precision),
            recall: mean(&|s| s.recall),
            f1: mean(&|s| s.f1),
            support: n64,
        }
    };
    Ok(Report {
        rows: n64,
        accuracy: ratio(hits, n64),
        log_loss: loss / n as f64,
        top_k,
        top_k_accuracy: ratio(in_top, n64),
        macro_avg: average(&|_| 1.0),
        weighted_avg: average(&|s| s.support as f64),
        per_class,
        confusion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    #[test]
    fn the_report_of_a_small_case_is_what_scikit_learn_gives() {
        // y_true = [0, 0, 1, 2, 2, 2], predicted argmax = [0, 1, 1, 2, 0, 2]. scikit-learn 1.9 on these
        // probabilities (classification_report, log_loss, top_k_accuracy_score with k = 2): class 0 P 0.5 R 0.5;
        // class 1 P 0.5 R 1.0 F1 0.6667; class 2 P 1.0 R 0.6667 F1 0.8; accuracy 0.6667; macro P 0.6667 R 0.7222
        // F1 0.6556; weighted P 0.75 R 0.6667 F1 0.6778; log-loss 0.650676; top-2 accuracy 1.0.
        let p = arr2(&[
            [0.7f32, 0.2, 0.1],
            [0.3, 0.6, 0.1],
            [0.2, 0.5, 0.3],
            [0.1, 0.1, 0.8],
            [0.5, 0.1, 0.4],
            [0.2, 0.2, 0.6],
        ]);
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let r = report(p.view(), &[0, 0, 1, 2, 2, 2], &names, 2).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-4;
        assert!(close(r.accuracy, 4.0 / 6.0));
        let s: Vec<(f64, f64, f64)> = r
            .per_class
            .iter()
            .map(|c| (c.scores.precision, c.scores.recall, c.scores.f1))
            .collect();
        assert!(close(s[0].0, 0.5) && close(s[0].1, 0.5) && close(s[0].2, 0.5));
        assert!(close(s[1].0, 0.5) && close(s[1].1, 1.0) && close(s[1].2, 0.6667));
        assert!(close(s[2].0, 1.0) && close(s[2].1, 0.6667) && close(s[2].2, 0.8));
        assert!(close(r.macro_avg.precision, 0.6667) && close(r.macro_avg.recall, 0.7222));
        assert!(close(r.macro_avg.f1, 0.6556));
        assert!(close(r.weighted_avg.precision, 0.75) && close(r.weighted_avg.recall, 0.6667));
        assert!(close(r.weighted_avg.f1, 0.6778));
        assert_eq!(r.confusion, [[1, 1, 0], [0, 1, 0], [1, 0, 2]]);
        // log-loss: the mean of −ln [0.7, 0.3, 0.5, 0.8, 0.4, 0.6].
        assert!(close(r.log_loss, 0.650_676), "{}", r.log_loss);
        // Top 2: row 1's class 0 (0.3) is second; row 4's class 2 (0.4) is second: all six.
        assert_eq!(r.top_k_accuracy, 1.0);
        let r1 = report(p.view(), &[0, 0, 1, 2, 2, 2], &names, 1).unwrap();
        assert_eq!(r1.top_k_accuracy, r1.accuracy);
    }

    #[test]
    fn undefined_scores_are_zero_and_bad_shapes_are_refused() {
        let p = arr2(&[[0.9f32, 0.1, 0.0], [0.8, 0.2, 0.0]]);
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let r = report(p.view(), &[0, 1], &names, 1).unwrap();
        // Class b is never predicted (precision 0), class c never present (recall 0) and never predicted.
        assert_eq!(r.per_class[1].scores.precision, 0.0);
        assert_eq!(r.per_class[2].scores.support, 0);
        assert_eq!(r.per_class[2].scores.f1, 0.0);
        // A probability of 0 for the true class costs −ln 1e-15, not infinity.
        let r = report(p.view(), &[2, 2], &names, 1).unwrap();
        assert!((r.log_loss - 34.538_776).abs() < 1e-5);
        assert!(report(p.view(), &[0], &names, 1).is_err());
        assert!(report(p.view(), &[0, 3], &names, 1).is_err());
        assert!(report(p.view(), &[0, 1], &names, 0).is_err());
    }
}
