//! Learning-rate schedules: the step size of every step, computed on the host and handed to the backend with the
//! update (`train::Update::lr`), so every backend and the `--check-every` shadow follow the same rates.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the learning rate changes with the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// α at every step.
    #[default]
    Constant,
    /// α·γ^⌊s / N⌋: multiplied by γ every N steps.
    Step,
    /// α·γ^(s / N): the same decay, continuous.
    Exp,
    /// α_min + (α − α_min)·(1 + cos(π·s / (S − 1)))/2 over the S steps after warm-up: α_min at the last step.
    Cosine,
    /// α / (1 + s)^p, scikit-learn's `invscaling` (with s counted from 0).
    Invscaling,
}

/// A schedule: its kind, its parameters and an optional linear warm-up. `s` in the formulas counts the steps after
/// the warm-up from 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The shape of the decay.
    pub kind: ScheduleKind,
    /// Steps over which the rate rises linearly from α/W to α (0: none).
    pub warmup_steps: u64,
    /// N of `step` and `exp`.
    pub decay_steps: u64,
    /// γ of `step` and `exp`.
    pub gamma: f64,
    /// p of `invscaling`.
    pub power: f64,
    /// α_min of `cosine`.
    pub min_lr: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            kind: ScheduleKind::Constant,
            warmup_steps: 0,
            decay_steps: 1000,
            gamma: 0.5,
            power: 0.25,
            min_lr: 0.0,
        }
    }
}

impl Schedule {
    /// Checks every parameter; the error names its flag.
    pub fn check(&self, lr: f32) -> Result<()> {
        if self.decay_steps == 0 {
            return Err(Error::param("--lr-decay-steps", "at least 1", 0));
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(Error::param("--lr-gamma", "in (0, 1]", self.gamma));
        }
        if !(self.power.is_finite() && self.power >= 0.0) {
            return Err(Error::param("--power-t", "a finite number ≥ 0", self.power));
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= f64::from(lr)) {
            return Err(Error::param(
                "--lr-min",
                format!("in [0, --lr = {lr}]"),
                self.min_lr,
            ));
        }
        Ok(())
    }

    /// The rate of step `t` (1-based) of a run of `total` steps with base rate `lr`.
    pub fn lr(&self, lr: f32, t: u64, total: u64) -> f32 {
        let base = f64::from(lr);
        let t = t.max(1);
        if t <= self.warmup_steps {
            return (base * t as f64 / self.warmup_steps as f64) as f32;
        }
        let s = (t - 1 - self.warmup_steps) as f64;
        let n = self.decay_steps as f64;
        let rate = match self.kind {
            ScheduleKind::Constant => base,
            ScheduleKind::Step => base * self.gamma.powf((s / n).floor()),
            ScheduleKind::Exp => base * self.gamma.powf(s / n),
            ScheduleKind::Cosine => {
                // The last step of the run reaches α_min.
                let span = (total.saturating_sub(self.warmup_steps).max(2) - 1) as f64;
                let progress = (s / span).min(1.0);
                self.min_lr
                    + (base - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            ScheduleKind::Invscaling => base / (1.0 + s).powf(self.power),
        };
        rate as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(kind: ScheduleKind) -> Schedule {
        Schedule {
            kind,
            decay_steps: 10,
            gamma: 0.5,
            ..Schedule::default()
        }
    }

    #[test]
    fn each_schedule_gives_its_formula() {
        let total = 101;
        assert_eq!(with(ScheduleKind::Constant).lr(0.1, 57, total), 0.1);
        let step = with(ScheduleKind::Step);
        assert_eq!(step.lr(0.8, 1, total), 0.8);
        assert_eq!(step.lr(0.8, 10, total), 0.8);
        assert_eq!(step.lr(0.8, 11, total), 0.4);
        assert_eq!(step.lr(0.8, 31, total), 0.1);
        let exp = with(ScheduleKind::Exp);
        assert!((exp.lr(0.8, 6, total) - 0.8 * 0.5f32.powf(0.5)).abs() < 1e-7);
        let cos = with(ScheduleKind::Cosine);
        assert_eq!(cos.lr(0.8, 1, total), 0.8);
        assert!((cos.lr(0.8, 51, total) - 0.4).abs() < 1e-6);
        assert!(cos.lr(0.8, 101, total) < 1e-6);
        let inv = Schedule {
            kind: ScheduleKind::Invscaling,
            power: 0.5,
            ..Schedule::default()
        };
        assert_eq!(inv.lr(1.0, 1, total), 1.0);
        assert!((inv.lr(1.0, 4, total) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn warmup_rises_linearly_then_the_schedule_starts_from_its_first_step() {
        let s = Schedule {
            warmup_steps: 4,
            ..with(ScheduleKind::Step)
        };
        let rates: Vec<f32> = (1..=6).map(|t| s.lr(0.8, t, 100)).collect();
        assert_eq!(rates, [0.2, 0.4, 0.6, 0.8, 0.8, 0.8]);
        assert_eq!(s.lr(0.8, 15, 100), 0.4);
    }

    #[test]
    fn bad_parameters_name_their_flag() {
        let flag = |s: Schedule| match s.check(0.1) {
            Err(Error::Param { flag, .. }) => flag,
            other => panic!("{other:?}"),
        };
        let d = Schedule::default;
        assert_eq!(
            flag(Schedule {
                decay_steps: 0,
                ..d()
            }),
            "--lr-decay-steps"
        );
        assert_eq!(flag(Schedule { gamma: 0.0, ..d() }), "--lr-gamma");
        assert_eq!(
            flag(Schedule {
                gamma: f64::NAN,
                ..d()
            }),
            "--lr-gamma"
        );
        assert_eq!(flag(Schedule { power: -1.0, ..d() }), "--power-t");
        assert_eq!(flag(Schedule { min_lr: 0.5, ..d() }), "--lr-min");
        d().check(0.1).unwrap();
    }
}
