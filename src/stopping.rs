//! The rules that end a minibatch run before its last epoch, as values: their settings ([`EarlyStopping`],
//! [`Convergence`]) and where they stand after some epochs ([`StopState`]). The state is what a checkpoint saves and
//! `--resume` restores, so that a resumed run stops where the uninterrupted one stops; the loop feeds each epoch's
//! losses to [`StopState::observe`], which is the only place the rules are written.

use serde::{Deserialize, Serialize};

/// Stop when the held-out loss has not improved by more than `min_delta` for `patience` epochs; the weights of the
/// best epoch are the ones the backend ends with (and the model saved).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// The least decrease of the held-out loss that counts as an improvement.
    pub min_delta: f64,
}

/// Stop a minibatch run by convergence, as scikit-learn's SGDClassifier does (`tol`, `n_iter_no_change`): when the
/// epoch's training loss has not fallen below the best so far minus `tol` for `patience` epochs in a row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Convergence {
    /// The least decrease of the training loss that counts as progress.
    pub tol: f64,
    /// Epochs without progress before stopping (SGDClassifier's `n_iter_no_change`, 5).
    pub patience: usize,
}

impl Convergence {
    /// SGDClassifier's defaults: tol 1e-3, 5 epochs.
    pub const SGD_CLASSIFIER: Convergence = Convergence {
        tol: 1e-3,
        patience: 5,
    };
}

/// Where both rules stand after the epochs seen so far. Losses are kept as they were compared (f64), and written
/// to checkpoints as JSON numbers that read back to the same bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StopState {
    /// Early stopping: the best held-out loss so far and its epoch (1-based).
    pub best: Option<(f64, usize)>,
    /// Early stopping: epochs since the best.
    pub since_best: usize,
    /// Convergence: the lowest training loss so far (None before the first epoch).
    pub best_train: Option<f64>,
    /// Convergence: epochs in a row without progress.
    pub no_progress: usize,
}

/// What the rules make of one epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// This epoch has the best held-out loss so far: its weights are the ones to keep.
    pub improved: bool,
    /// The training loss met the convergence rule: the run ends here.
    pub converged: bool,
    /// The held-out loss has not improved for `patience` epochs: the run ends here.
    pub stop_early: bool,
}

impl StopState {
    /// Feeds epoch `epoch`'s training loss and (with held-out rows) held-out loss to the rules that are set.
    pub fn observe(
        &mut self,
        rules: (Option<EarlyStopping>, Option<Convergence>),
        epoch: usize,
        train_loss: f64,
        val_loss: Option<f64>,
    ) -> Verdict {
        let (early, convergence) = rules;
        let mut verdict = Verdict::default();
        // SGDClassifier's rule: no epoch below the best loss − tol for `patience` epochs in a row.
        if let Some(c) = convergence {
            let best = self.best_train.unwrap_or(f64::INFINITY);
            if train_loss > best - c.tol {
                self.no_progress += 1;
            } else {
                self.no_progress = 0;
            }
            self.best_train = Some(best.min(train_loss));
            verdict.converged = self.no_progress >= c.patience;
        }
        // Early stopping is not consulted in an epoch that converged: the run ends there either way.
        if let (Some(stop), Some(loss), false) = (early, val_loss, verdict.converged) {
            verdict.improved = self.best.is_none_or(|(b, _)| loss < b - stop.min_delta);
            if verdict.improved {
                self.best = Some((loss, epoch));
                self.since_best = 0;
            } else {
                self.since_best += 1;
                verdict.stop_early = self.since_best >= stop.patience;
            }
        }
        verdict
    }

    /// Whether the rules had ended the run by the epochs seen: a run resumed from a checkpoint written as it stopped
    /// takes no further epoch.
    pub fn stopped(&self, rules: (Option<EarlyStopping>, Option<Convergence>)) -> bool {
        let (early, convergence) = rules;
        convergence.is_some_and(|c| self.no_progress >= c.patience)
            || early.is_some_and(|e| self.best.is_some() && self.since_best >= e.patience)
    }

    /// The epoch whose weights early stopping keeps, once there is one.
    pub fn best_epoch(&self) -> Option<usize> {
        self.best.map(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EARLY: EarlyStopping = EarlyStopping {
        patience: 2,
        min_delta: 0.1,
    };

    #[test]
    fn early_stopping_keeps_the_best_epoch_and_stops_after_patience_epochs() {
        let mut s = StopState::default();
        let rules = (Some(EARLY), None);
        assert!(s.observe(rules, 1, 9.0, Some(1.0)).improved);
        // 0.95 is not below 1.0 − 0.1: no improvement.
        let v = s.observe(rules, 2, 9.0, Some(0.95));
        assert!(!v.improved && !v.stop_early);
        assert!(s.observe(rules, 3, 9.0, Some(0.5)).improved);
        assert!(!s.observe(rules, 4, 9.0, Some(0.45)).stop_early);
        assert!(s.observe(rules, 5, 9.0, Some(0.45)).stop_early);
        assert_eq!(s.best_epoch(), Some(3));
    }

    #[test]
    fn convergence_counts_epochs_without_progress_and_resets_on_progress() {
        let mut s = StopState::default();
        let rules = (
            None,
            Some(Convergence {
                tol: 0.1,
                patience: 2,
            }),
        );
        assert!(!s.observe(rules, 1, 1.0, None).converged);
        assert!(!s.observe(rules, 2, 0.95, None).converged);
        assert!(!s.observe(rules, 3, 0.5, None).converged);
        assert_eq!(s.no_progress, 0);
        assert!(!s.observe(rules, 4, 0.45, None).converged);
        assert!(s.observe(rules, 5, 0.6, None).converged);
    }

    #[test]
    fn a_state_read_back_from_json_is_the_same_to_the_bit() {
        let s = StopState {
            best: Some((0.1 + 0.2, 7)),
            since_best: 3,
            best_train: Some(1.0 / 3.0),
            no_progress: 1,
        };
        let back: StopState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.best.unwrap().0.to_bits(), s.best.unwrap().0.to_bits());
    }
}
