//! Limited-memory BFGS on the host (Nocedal & Wright, *Numerical Optimization*, 2nd ed., algorithms 7.4, 3.5 and
//! 3.6): the two-loop recursion gives the direction, a line search satisfying the strong Wolfe conditions gives the
//! step. The objective and its gradient come from a closure, which for training is one full pass over the data on
//! the device ([`crate::train::objective`]); everything here is O(history · parameters) vector work in f64.
//!
//! Stopping rules, the ones scikit-learn asks of SciPy's L-BFGS-B for `LogisticRegression(solver="lbfgs")`, so that
//! "the same tolerance" means the same thing:
//! - **gradient**: ‖∇J‖∞ ≤ `tol` (SciPy's `gtol`, scikit-learn's `tol`, default 1e-4);
//! - **objective**: (J_k − J_{k+1}) / max(|J_k|, |J_{k+1}|, 1) ≤ `ftol` (scikit-learn passes 64·ε of f64);
//! - **iterations**: `max_iter` iterations without either (scikit-learn's `max_iter`, default 100): not converged,
//!   as scikit-learn's ConvergenceWarning says;
//! - **line search**: no step along the direction decreases J, even after a restart along −∇J. This happens when J
//!   is evaluated in f32 and the iterate is as close to the optimum as f32 can tell; reported as such.
//!
//! With an L1 term ([`L1`], J = f + λ₁·‖x‖₁ over some of the coordinates) the objective is not smooth where a
//! coordinate is 0, and [`minimize_l1`] runs OWL-QN (Andrew & Gao, *Scalable training of L1-regularized log-linear
//! models*, ICML 2007) instead: the pseudo-gradient ◇J stands for ∇J (in the stopping rule, too: ‖◇J‖∞ ≤ `tol`),
//! the direction is kept in the orthant it points into, and a backtracking line search projects each trial point
//! back onto the orthant of the current one (a coordinate that would cross 0 stops at 0). The correction pairs are
//! built from the smooth part's gradients, as there.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The settings of an L-BFGS run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LbfgsOptions {
    /// Correction pairs kept (SciPy's `maxcor`, default 10).
    pub history: usize,
    /// Most iterations (each one line search of one or more objective evaluations).
    pub max_iter: usize,
    /// Stop when ‖∇J‖∞ ≤ tol.
    pub tol: f64,
    /// Stop when the relative decrease of J in an iteration is ≤ ftol.
    pub ftol: f64,
    /// Most objective evaluations in one line search (scikit-learn passes SciPy `maxls = 50`).
    pub max_evals_per_search: usize,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions {
            history: 10,
            max_iter: 100,
            tol: 1e-4,
            ftol: 64.0 * f64::EPSILON,
            max_evals_per_search: 50,
        }
    }
}

impl LbfgsOptions {
    /// Checks the settings; the error names the flag.
    pub fn check(&self) -> Result<()> {
        if !(1..=1000).contains(&self.history) {
            return Err(Error::param("--lbfgs-history", "in 1..=1000", self.history));
        }
        if !(1..=crate::limits::MAX_EPOCHS).contains(&self.max_iter) {
            return Err(Error::param(
                "--max-iter",
                format!("in 1..={}", crate::limits::MAX_EPOCHS),
                self.max_iter,
            ));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(Error::param("--tol", "a finite number ≥ 0", self.tol));
        }
        if !(self.ftol.is_finite() && self.ftol >= 0.0) || self.max_evals_per_search == 0 {
            return Err(Error::Internal(format!(
                "L-BFGS line search settings {self:?}"
            )));
        }
        Ok(())
    }
}

/// Why an L-BFGS run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// ‖∇J‖∞ ≤ tol: converged.
    Gradient,
    /// The relative decrease of J was ≤ ftol: converged.
    Objective,
    /// No step decreased J (the precision of J is reached): stopped, not necessarily converged to `tol`.
    LineSearch,
    /// `max_iter` iterations: not converged.
    MaxIter,
}

impl Stop {
    /// Whether the rule that stopped the run is a convergence criterion.
    pub fn converged(self) -> bool {
        matches!(self, Stop::Gradient | Stop::Objective)
    }
}

/// One iteration as it ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Iteration {
    /// 1-based iteration number.
    pub iteration: usize,
    /// J at the new iterate.
    pub value: f64,
    /// ‖∇J‖∞ at the new iterate.
    pub grad_inf: f64,
    /// (J_old − J_new) / max(|J_old|, |J_new|, 1).
    pub change: f64,
    /// The step length α taken along the direction.
    pub step: f64,
    /// Objective evaluations in all so far (the first one, at the start, included).
    pub evaluations: usize,
    /// Set on the last iteration: why the run stopped.
    pub stop: Option<Stop>,
}

/// What a run ended with.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The last iterate.
    pub x: Vec<f64>,
    /// J there.
    pub value: f64,
    /// ‖∇J‖∞ there.
    pub grad_inf: f64,
    /// Iterations taken.
    pub iterations: usize,
    /// Objective evaluations.
    pub evaluations: usize,
    /// Why it stopped.
    pub stop: Stop,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn inf_norm(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// The objective the line search sees: f and f′ along a direction, at the point the evaluator really used (it may
/// round the point, e.g. to the f32 weights a device holds).
struct Probe {
    alpha: f64,
    x: Vec<f64>,
    f: f64,
    g: Vec<f64>,
    df: f64,
}

/// What L-BFGS minimises: J and ∇J at a point, and what to do after each iteration.
pub trait Problem {
    /// J and ∇J at `x`. The evaluator may round `x` in place to the point it really evaluates (e.g. the f32
    /// weights a device holds); the iterates are then those rounded points.
    fn eval(&mut self, x: &mut [f64]) -> Result<(f64, Vec<f64>)>;

    /// Sees each iteration as it ends and the new iterate; an error ends the run with that error.
    fn on_iteration(&mut self, _it: &Iteration, _x: &[f64]) -> Result<()> {
        Ok(())
    }
}

impl<F: FnMut(&mut [f64]) -> Result<(f64, Vec<f64>)>> Problem for F {
    fn eval(&mut self, x: &mut [f64]) -> Result<(f64, Vec<f64>)> {
        self(x)
    }
}

/// An L1 term `weight`·Σ|xᵢ| over the first `len` coordinates, added to what the [`Problem`] evaluates (the smooth
/// part). For training, the weights W come first in the flat vector and the biases, not penalised, after them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct L1 {
    /// λ₁ ≥ 0; 0 is no L1 term (plain L-BFGS).
    pub weight: f64,
    /// The coordinates it covers: `x[..len]`.
    pub len: usize,
}

impl L1 {
    fn active(&self) -> bool {
        self.weight > 0.0 && self.len > 0
    }

    /// The objective at `x` whose smooth part is `f`.
    fn total(&self, f: f64, x: &[f64]) -> f64 {
        if self.active() {
            f + self.weight * x[..self.len].iter().map(|v| v.abs()).sum::<f64>()
        } else {
            f
        }
    }

    /// The pseudo-gradient at `x` of the objective whose smooth gradient is `g`: the one-sided derivative that
    /// descends where x is 0 (0 when neither side descends), ∇f + λ₁·sign(x) elsewhere. It is ∇J wherever J is
    /// smooth, and 0 exactly at a minimiser.
    fn pseudo_gradient(&self, x: &[f64], g: &[f64]) -> Vec<f64> {
        let mut pg = g.to_vec();
        if !self.active() {
            return pg;
        }
        let l = self.weight;
        for ((p, &x), &g) in pg.iter_mut().zip(x).zip(g).take(self.len) {
            *p = if x > 0.0 {
                g + l
            } else if x < 0.0 {
                g - l
            } else if g + l < 0.0 {
                g + l
            } else if g - l > 0.0 {
                g - l
            } else {
                0.0
            };
        }
        pg
    }

    /// Keeps the direction `d` in the orthant it should descend into: a penalised coordinate whose step does not
    /// go against the pseudo-gradient `pg` is not moved.
    fn constrain(&self, d: &mut [f64], pg: &[f64]) {
        if self.active() {
            d.iter_mut()
                .zip(pg)
                .take(self.len)
                .filter(|(d, &p)| **d * p >= 0.0)
                .for_each(|(d, _)| *d = 0.0);
        }
    }
}

/// Minimises `problem` from `x0`.
pub fn minimize(problem: &mut dyn Problem, x0: Vec<f64>, opts: &LbfgsOptions) -> Result<Outcome> {
    minimize_l1(problem, x0, opts, L1::default())
}

/// Minimises `problem` plus the L1 term `l1` from `x0`: [`minimize`] when `l1` has no weight, OWL-QN when it has
/// (see the module's documentation). The values and gradient norms reported are those of the whole objective.
///
/// Long on purpose: the two-loop recursion and the stopping rules of Nocedal & Wright's algorithm 7.5 read top to
/// bottom as in the book, with OWL-QN's three changes marked where they are made.
pub fn minimize_l1(
    problem: &mut dyn Problem,
    x0: Vec<f64>,
    opts: &LbfgsOptions,
    l1: L1,
) -> Result<Outcome> {
    opts.check()?;
    if !(l1.weight.is_finite() && l1.weight >= 0.0) || l1.len > x0.len() {
        return Err(Error::Internal(format!("L1 term {l1:?}")));
    }
    let mut x = x0;
    let (f, mut g) = problem.eval(&mut x)?;
    check_finite(f, &g, 0)?;
    let mut f = l1.total(f, &x);
    // OWL-QN: the pseudo-gradient stands for the gradient (it is the gradient without an L1 term).
    let mut pg = l1.pseudo_gradient(&x, &g);
    let mut evaluations = 1;
    // Correction pairs, oldest first: (s, y, 1 / yᵀs).
    let mut pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> =
        std::collections::VecDeque::new();
    let mut iteration = 0;
    let stop = loop {
        if inf_norm(&pg) <= opts.tol {
            break Stop::Gradient;
        }
        if iteration >= opts.max_iter {
            break Stop::MaxIter;
        }
        let mut d = direction(&pg, &pairs);
        // OWL-QN: no coordinate moves against its pseudo-gradient.
        l1.constrain(&mut d, &pg);
        let mut slope = dot(&pg, &d);
        if slope.is_nan() || slope >= 0.0 {
            // Not a descent direction (curvature information gone stale): steepest descent, history dropped.
            pairs.clear();
            d = pg.iter().map(|v| -v).collect();
            slope = dot(&pg, &d);
        }
        // The first step of a run (or after a restart) has no curvature to scale it: a step of unit length along
        // −∇J, as SciPy takes; afterwards the direction is scaled and α = 1 is tried first.
        let alpha0 = if pairs.is_empty() {
            (1.0 / dot(&d, &d).sqrt()).min(1.0)
        } else {
            1.0
        };
        let search_along = |problem: &mut dyn Problem, d: &[f64], slope: f64, alpha0: f64| {
            if l1.active() {
                // OWL-QN: trial points projected onto the current orthant.
                projected_search(problem, &x, f, &pg, d, alpha0, opts, l1)
            } else {
                line_search(problem, &x, f, slope, d, alpha0, opts)
            }
        };
        let mut search = search_along(problem, &d, slope, alpha0)?;
        evaluations += search.evaluations;
        if search.probe.is_none() && !pairs.is_empty() {
            // Retry once along −∇J without history.
            pairs.clear();
            d = pg.iter().map(|v| -v).collect();
            slope = dot(&pg, &d);
            let alpha0 = (1.0 / dot(&d, &d).sqrt()).min(1.0);
            search = search_along(problem, &d, slope, alpha0)?;
            evaluations += search.evaluations;
        }
        let Some(p) = search.probe else {
            break Stop::LineSearch;
        };
        iteration += 1;
        let s: Vec<f64> = p.x.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = p.g.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        // Keep the pair only with positive curvature (guaranteed by the Wolfe conditions in exact arithmetic).
        if sy > f64::EPSILON * dot(&y, &y) {
            if pairs.len() == opts.history {
                pairs.pop_front();
            }
            pairs.push_back((s, y, 1.0 / sy));
        }
        let f_new = l1.total(p.f, &p.x);
        let change = (f - f_new) / f.abs().max(f_new.abs()).max(1.0);
        pg = l1.pseudo_gradient(&p.x, &p.g);
        x = p.x;
        f = f_new;
        g = p.g;
        let stop = if inf_norm(&pg) <= opts.tol {
            Some(Stop::Gradient)
        } else if (0.0..=opts.ftol).contains(&change) {
            Some(Stop::Objective)
        } else if iteration >= opts.max_iter {
            Some(Stop::MaxIter)
        } else {
            None
        };
        problem.on_iteration(
            &Iteration {
                iteration,
                value: f,
                grad_inf: inf_norm(&pg),
                change,
                step: p.alpha,
                evaluations,
                stop,
            },
            &x,
        )?;
        if let Some(stop) = stop {
            break stop;
        }
    };
    Ok(Outcome {
        grad_inf: inf_norm(&pg),
        x,
        value: f,
        iterations: iteration,
        evaluations,
        stop,
    })
}

fn check_finite(f: f64, g: &[f64], iteration: usize) -> Result<()> {
    if f.is_finite() && g.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::Diverged {
            step: iteration as u64,
            what: format!("L-BFGS objective {f} (or its gradient) is not finite"),
        })
    }
}

/// The two-loop recursion: −H·g for the inverse-Hessian approximation H built from the pairs, scaled by
/// sᵀy / yᵀy of the newest pair.
fn direction(g: &[f64], pairs: &std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)>) -> Vec<f64> {
    let mut q = g.to_vec();
    let mut alphas = vec![0.0; pairs.len()];
    for (i, (s, y, rho)) in pairs.iter().enumerate().rev() {
        let a = rho * dot(s, &q);
        alphas[i] = a;
        q.iter_mut().zip(y).for_each(|(q, y)| *q -= a * y);
    }
    if let Some((s, y, _)) = pairs.back() {
        let gamma = dot(s, y) / dot(y, y);
        q.iter_mut().for_each(|v| *v *= gamma);
    }
    for (i, (s, y, rho)) in pairs.iter().enumerate() {
        let b = rho * dot(y, &q);
        let a = alphas[i];
        q.iter_mut().zip(s).for_each(|(q, s)| *q += s * (a - b));
    }
    q.iter_mut().for_each(|v| *v = -*v);
    q
}

struct Search {
    /// The accepted point: one satisfying the strong Wolfe conditions or, when the evaluations ran out, the lowest
    /// one with sufficient decrease; None when no evaluated point decreased J.
    probe: Option<Probe>,
    evaluations: usize,
}

/// Sufficient decrease (Armijo) and curvature constants: the usual quasi-Newton choice (Nocedal & Wright, 3.1).
const C1: f64 = 1e-4;
const C2: f64 = 0.9;
/// δ and ε of the approximate Wolfe conditions (Hager & Zhang's defaults).
const DELTA: f64 = 0.1;
const NOISE: f64 = 1e-6;

/// A step length satisfying the strong Wolfe conditions along `d` from `x` (f = `f0`, slope φ′(0) = `slope` < 0):
/// Nocedal & Wright's algorithm 3.5 (bracketing, the step doubled until a bracket is found) and 3.6 (zoom, by cubic
/// interpolation safeguarded by bisection).
///
/// Long on purpose: Nocedal & Wright's algorithms 3.5 and 3.6 (bracketing and zoom) kept as one piece, as written
/// there.
fn line_search(
    problem: &mut dyn Problem,
    x: &[f64],
    f0: f64,
    slope: f64,
    d: &[f64],
    alpha0: f64,
    opts: &LbfgsOptions,
) -> Result<Search> {
    let mut evaluations = 0;
    let mut best: Option<Probe> = None;
    let mut probe = |alpha: f64, evaluations: &mut usize| -> Result<Option<Probe>> {
        let mut p: Vec<f64> = x.iter().zip(d).map(|(x, d)| x + alpha * d).collect();
        let (f, g) = problem.eval(&mut p)?;
        *evaluations += 1;
        if p.iter().zip(x).all(|(a, b)| a == b) {
            // The step rounds to the current point: nothing smaller can move it either.
            return Ok(None);
        }
        Ok(Some(Probe {
            alpha,
            df: dot(&g, d),
            x: p,
            f,
            g,
        }))
    };
    // Hager & Zhang's approximate Wolfe conditions (SIAM J. Optim. 16, 2005): where J changes by less than its
    // evaluation can resolve (ε·|J|), sufficient decrease is judged by the slope instead, φ′(α) ≤ (2δ − 1)·φ′(0).
    // Evaluated in f32, J stops resolving progress long before ∇J does; without this the search stalls there.
    let noise = NOISE * f0.abs();
    let armijo = |p: &Probe| {
        p.f.is_finite()
            && (p.f <= f0 + C1 * p.alpha * slope
                || ((p.f - f0).abs() <= noise && p.df <= (2.0 * DELTA - 1.0) * slope))
    };
    let wolfe = |p: &Probe| armijo(p) && p.df.abs() <= -C2 * slope;
    // "Higher than" beyond what J resolves; within it, the slope decides.
    let higher = |f: f64, than: f64| f > than + noise;
    let keep = |p: &Probe, best: &mut Option<Probe>| {
        if armijo(p) && best.as_ref().is_none_or(|b| p.f < b.f) {
            *best = Some(Probe {
                alpha: p.alpha,
                x: p.x.clone(),
                f: p.f,
                g: p.g.clone(),
                df: p.df,
            });
        }
    };
    // Bracketing: (alpha, f, df) of the previous trial, starting at α = 0.
    let (mut a_prev, mut f_prev, mut df_prev) = (0.0, f0, slope);
    let mut alpha = alpha0;
    let bracket = loop {
        if evaluations >= opts.max_evals_per_search {
            return Ok(Search {
                probe: best,
                evaluations,
            });
        }
        let Some(p) = probe(alpha, &mut evaluations)? else {
            return Ok(Search {
                probe: best,
                evaluations,
            });
        };
        keep(&p, &mut best);
        if !p.f.is_finite() || !armijo(&p) || (evaluations > 1 && higher(p.f, f_prev)) {
            break (a_prev, f_prev, df_prev, p.alpha, p.f, p.df);
        }
        if wolfe(&p) {
            return Ok(Search {
                probe: Some(p),
                evaluations,
            });
        }
        if p.df >= 0.0 {
            break (p.alpha, p.f, p.df, a_prev, f_prev, df_prev);
        }
        (a_prev, f_prev, df_prev) = (p.alpha, p.f, p.df);
        alpha *= 2.0;
    };
    // Zoom: `lo` is the end with the lower J (satisfying sufficient decrease), `hi` the other.
    let (mut a_lo, mut f_lo, mut df_lo, mut a_hi, mut f_hi, mut df_hi) = bracket;
    while evaluations < opts.max_evals_per_search {
        let alpha = interpolate(a_lo, f_lo, df_lo, a_hi, f_hi, df_hi);
        let Some(p) = probe(alpha, &mut evaluations)? else {
            break;
        };
        keep(&p, &mut best);
        if !p.f.is_finite() || !armijo(&p) || higher(p.f, f_lo) {
            (a_hi, f_hi, df_hi) = (p.alpha, p.f, p.df);
        } else {
            if wolfe(&p) {
                return Ok(Search {
                    probe: Some(p),
                    evaluations,
                });
            }
            if p.df * (a_hi - a_lo) >= 0.0 {
                (a_hi, f_hi, df_hi) = (a_lo, f_lo, df_lo);
            }
            (a_lo, f_lo, df_lo) = (p.alpha, p.f, p.df);
        }
        if (a_hi - a_lo).abs() <= 1e-16 * a_lo.abs().max(1e-300) {
            break;
        }
    }
    Ok(Search {
        probe: best,
        evaluations,
    })
}

/// OWL-QN's line search: backtracking from `alpha0`, halving, along `d` from `x` (whole objective `f0`,
/// pseudo-gradient `pg`), each trial point projected onto the orthant of `x` (for a coordinate at 0, the orthant
/// −`pg` points into): a penalised coordinate that would change sign is set to 0. Accepts the first point with
/// sufficient decrease, J(p) ≤ J(x) + c₁·◇J·(p − x), or with the approximate condition where J is flat to its
/// precision; none when no trial within the evaluations gives one.
#[allow(clippy::too_many_arguments)] // the search's inputs, as the smooth one's and the L1 term
fn projected_search(
    problem: &mut dyn Problem,
    x: &[f64],
    f0: f64,
    pg: &[f64],
    d: &[f64],
    alpha0: f64,
    opts: &LbfgsOptions,
    l1: L1,
) -> Result<Search> {
    let orthant: Vec<f64> = x[..l1.len]
        .iter()
        .zip(pg)
        .map(|(&x, &p)| if x != 0.0 { x.signum() } else { -p.signum() })
        .collect();
    let noise = NOISE * f0.abs();
    let mut alpha = alpha0;
    let mut evaluations = 0;
    while evaluations < opts.max_evals_per_search {
        let mut p: Vec<f64> = x.iter().zip(d).map(|(x, d)| x + alpha * d).collect();
        p.iter_mut()
            .zip(&orthant)
            .filter(|(p, &o)| **p * o <= 0.0)
            .for_each(|(p, _)| *p = 0.0);
        let (f, g) = problem.eval(&mut p)?;
        evaluations += 1;
        if p.iter().zip(x).all(|(a, b)| a == b) {
            // The step rounds to the current point: nothing smaller can move it either.
            break;
        }
        let moved: f64 = p.iter().zip(x).zip(pg).map(|((p, x), g)| (p - x) * g).sum();
        let total = l1.total(f, &p);
        // As in the smooth search, where J changes by less than its evaluation resolves, the slope at the trial
        // point decides (Hager & Zhang's approximate condition, along the projected path p − x).
        let flat = || {
            let at: f64 = l1
                .pseudo_gradient(&p, &g)
                .iter()
                .zip(p.iter().zip(x))
                .map(|(g, (p, x))| g * (p - x))
                .sum();
            (total - f0).abs() <= noise && at <= (2.0 * DELTA - 1.0) * moved
        };
        if total.is_finite() && (total <= f0 + C1 * moved || flat()) {
            return Ok(Search {
                probe: Some(Probe {
                    alpha,
                    df: moved / alpha,
                    x: p,
                    f,
                    g,
                }),
                evaluations,
            });
        }
        alpha *= 0.5;
    }
    Ok(Search {
        probe: None,
        evaluations,
    })
}

/// The minimiser of the cubic through (a, fa, da) and (b, fb, db), kept inside the middle 80 % of [a, b]; the
/// midpoint when the cubic has none there or a value is not finite.
fn interpolate(a: f64, fa: f64, da: f64, b: f64, fb: f64, db: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let margin = 0.1 * (hi - lo);
    let mid = 0.5 * (a + b);
    if !(fa.is_finite() && fb.is_finite() && da.is_finite() && db.is_finite()) {
        return mid;
    }
    let d1 = da + db - 3.0 * (fa - fb) / (a - b);
    let disc = d1 * d1 - da * db;
    if disc < 0.0 {
        return mid;
    }
    let d2 = (b - a).signum() * disc.sqrt();
    let t = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2);
    if t.is_finite() && t >= lo + margin && t <= hi - margin {
        t
    } else {
        mid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rosenbrock's function in n dimensions, minimum 0 at (1, …, 1).
    fn rosenbrock(x: &mut [f64]) -> Result<(f64, Vec<f64>)> {
        let n = x.len();
        let mut f = 0.0;
        let mut g = vec![0.0; n];
        for i in 0..n - 1 {
            let a = x[i + 1] - x[i] * x[i];
            let b = 1.0 - x[i];
            f += 100.0 * a * a + b * b;
            g[i] += -400.0 * x[i] * a - 2.0 * b;
            g[i + 1] += 200.0 * a;
        }
        Ok((f, g))
    }

    /// Rosenbrock's function, counting the iterations it is told of.
    struct Counting {
        iterations: usize,
        last: Option<Stop>,
    }

    impl Problem for Counting {
        fn eval(&mut self, x: &mut [f64]) -> Result<(f64, Vec<f64>)> {
            rosenbrock(x)
        }

        fn on_iteration(&mut self, it: &Iteration, _x: &[f64]) -> Result<()> {
            self.iterations += 1;
            assert_eq!(it.iteration, self.iterations);
            self.last = it.stop;
            Ok(())
        }
    }

    #[test]
    fn minimises_rosenbrock_to_the_tolerance() {
        let opts = LbfgsOptions {
            tol: 1e-8,
            max_iter: 1000,
            ftol: 0.0,
            ..LbfgsOptions::default()
        };
        let mut counted = Counting {
            iterations: 0,
            last: None,
        };
        let out = minimize(&mut counted, vec![-1.2, 1.0, -1.2, 1.0], &opts).unwrap();
        let seen = counted.iterations;
        assert_eq!(out.stop, Stop::Gradient);
        assert!(out.grad_inf <= 1e-8);
        for v in &out.x {
            assert!((v - 1.0).abs() < 1e-6, "{:?}", out.x);
        }
        // L-BFGS solves the 4-D Rosenbrock in a few dozen iterations; hundreds would mean a broken direction or
        // line search.
        assert!(out.iterations < 100, "{} iterations", out.iterations);
        assert_eq!(seen, out.iterations);
    }

    #[test]
    fn a_quadratic_is_solved_in_about_as_many_iterations_as_dimensions() {
        // J = ½ xᵀ A x − bᵀ x with A = diag(1..=8): exact line searches would take 8 iterations, L-BFGS with 10
        // pairs and Wolfe steps a few more.
        let mut f = |x: &mut [f64]| -> Result<(f64, Vec<f64>)> {
            let g: Vec<f64> = x
                .iter()
                .enumerate()
                .map(|(i, v)| (i + 1) as f64 * v - 1.0)
                .collect();
            let v = x
                .iter()
                .enumerate()
                .map(|(i, v)| 0.5 * (i + 1) as f64 * v * v - v)
                .sum();
            Ok((v, g))
        };
        let opts = LbfgsOptions {
            tol: 1e-7,
            ftol: 0.0,
            ..LbfgsOptions::default()
        };
        let out = minimize(&mut f, vec![0.0; 8], &opts).unwrap();
        assert_eq!(out.stop, Stop::Gradient);
        assert!(out.iterations <= 20, "{} iterations", out.iterations);
        for (i, v) in out.x.iter().enumerate() {
            // |x − x*| ≤ |g| / smallest eigenvalue (1).
            assert!((v - 1.0 / (i + 1) as f64).abs() <= 1e-7);
        }
    }

    #[test]
    fn the_iteration_cap_is_reported_as_not_converged() {
        let opts = LbfgsOptions {
            tol: 1e-12,
            max_iter: 3,
            ..LbfgsOptions::default()
        };
        let mut counted = Counting {
            iterations: 0,
            last: None,
        };
        let out = minimize(&mut counted, vec![-1.2, 1.0], &opts).unwrap();
        let last = counted.last;
        assert_eq!(out.stop, Stop::MaxIter);
        assert!(!out.stop.converged());
        assert_eq!(out.iterations, 3);
        assert_eq!(last, Some(Stop::MaxIter));
    }

    #[test]
    fn an_objective_rounded_to_f32_stops_at_its_precision() {
        // Evaluated at f32-rounded points, the quadratic stops by its gradient or because no step can be told
        // apart; either way near the optimum and in few iterations.
        let mut f = |x: &mut [f64]| -> Result<(f64, Vec<f64>)> {
            x.iter_mut().for_each(|v| *v = f64::from(*v as f32));
            let g: Vec<f64> = x.iter().map(|v| 3.0 * (v - 0.3)).collect();
            Ok((x.iter().map(|v| 1.5 * (v - 0.3) * (v - 0.3)).sum(), g))
        };
        let opts = LbfgsOptions {
            tol: 0.0,
            ..LbfgsOptions::default()
        };
        let out = minimize(&mut f, vec![5.0; 3], &opts).unwrap();
        assert_ne!(out.stop, Stop::MaxIter);
        for v in &out.x {
            assert!((v - 0.3).abs() < 1e-6, "{:?}", out.x);
        }
    }

    #[test]
    fn a_non_finite_start_is_divergence_and_bad_settings_are_refused() {
        let mut nan = |_: &mut [f64]| -> Result<(f64, Vec<f64>)> { Ok((f64::NAN, vec![0.0])) };
        assert!(matches!(
            minimize(&mut nan, vec![0.0], &LbfgsOptions::default()),
            Err(Error::Diverged { .. })
        ));
        for (opts, flag) in [
            (
                LbfgsOptions {
                    max_iter: 0,
                    ..LbfgsOptions::default()
                },
                "--max-iter",
            ),
            (
                LbfgsOptions {
                    tol: -1.0,
                    ..LbfgsOptions::default()
                },
                "--tol",
            ),
            (
                LbfgsOptions {
                    history: 0,
                    ..LbfgsOptions::default()
                },
                "--lbfgs-history",
            ),
        ] {
            match opts.check() {
                Err(Error::Param { flag: f, .. }) => assert_eq!(f, flag),
                other => panic!("{other:?}"),
            }
        }
    }

    /// A coupled quadratic plus an L1 term over all but the last coordinate, whose minimiser is known in closed
    /// form per coordinate once decoupled: f(x) = ½·Σ aᵢ·(xᵢ − cᵢ)² has the lasso solution
    /// xᵢ = sign(cᵢ)·max(|cᵢ| − λ/aᵢ, 0), exactly 0 where |cᵢ| ≤ λ/aᵢ. The last coordinate is not penalised (a bias).
    #[test]
    fn owlqn_finds_the_lasso_solution_with_exact_zeros() {
        let a = [1.0, 2.0, 0.5, 4.0, 1.5, 3.0];
        let c = [2.0, -0.3, 0.1, -1.5, 0.0, 0.2];
        let lambda = 0.5;
        let mut quad = |x: &mut [f64]| -> Result<(f64, Vec<f64>)> {
            let f = x
                .iter()
                .zip(&a)
                .zip(&c)
                .map(|((x, a), c)| 0.5 * a * (x - c).powi(2))
                .sum();
            let g = x
                .iter()
                .zip(&a)
                .zip(&c)
                .map(|((x, a), c)| a * (x - c))
                .collect();
            Ok((f, g))
        };
        let l1 = L1 {
            weight: lambda,
            len: 5,
        };
        let opts = LbfgsOptions {
            tol: 1e-10,
            ..LbfgsOptions::default()
        };
        let out = minimize_l1(&mut quad, vec![0.3; 6], &opts, l1).unwrap();
        assert!(out.stop.converged(), "{out:?}");
        for i in 0..6 {
            let want = if i < 5 {
                c[i].signum() * (c[i].abs() - lambda / a[i]).max(0.0)
            } else {
                c[i]
            };
            if want == 0.0 {
                // A coordinate whose minimiser is 0 reaches it exactly: the projection stops it there.
                assert_eq!(out.x[i], 0.0, "coordinate {i}: {out:?}");
            } else {
                // The objective rule (relative decrease ≤ 64ε) may stop first: an error δ in a coordinate moves f
                // by a·δ²/2, so it stops within δ ≈ √(2·64ε/a) ≈ 2e-7.
                assert!(
                    (out.x[i] - want).abs() < 1e-6,
                    "coordinate {i}: {} vs {want}",
                    out.x[i]
                );
            }
        }
        // The reported value is the whole objective.
        let mut x = out.x.clone();
        let (f, _) = quad(&mut x).unwrap();
        let whole = f + lambda * out.x[..5].iter().map(|v| v.abs()).sum::<f64>();
        assert_eq!(out.value, whole);
        // Without a weight it is plain L-BFGS, bit for bit.
        let plain = minimize(&mut quad, vec![0.3; 6], &opts).unwrap();
        let zero = minimize_l1(
            &mut quad,
            vec![0.3; 6],
            &opts,
            L1 {
                weight: 0.0,
                len: 5,
            },
        )
        .unwrap();
        assert_eq!(plain, zero);
        assert!(plain.x.iter().zip(&c).all(|(x, c)| (x - c).abs() < 1e-6));
    }

    /// L1-penalised logistic regression on a small separable-ish problem: OWL-QN's optimum satisfies the
    /// subgradient optimality conditions (|∂f/∂xᵢ| ≤ λ where xᵢ = 0, ∂f/∂xᵢ = −λ·sign(xᵢ) elsewhere) to the
    /// tolerance, and some weights are exactly 0.
    #[test]
    fn owlqn_meets_the_l1_optimality_conditions_of_a_logistic_regression() {
        // 40 rows, 6 features (two of them noise) and a bias as the last coordinate.
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        let rows: Vec<([f64; 6], f64)> = (0..40)
            .map(|_| {
                let x = [next(), next(), next(), next(), next(), next()];
                let z = 2.0 * x[0] - 1.5 * x[1] + 0.5 * x[2] + 0.3 * next();
                (x, if z > 0.0 { 1.0 } else { 0.0 })
            })
            .collect();
        let mut logistic = |w: &mut [f64]| -> Result<(f64, Vec<f64>)> {
            let mut f = 0.0;
            let mut g = vec![0.0; 7];
            for (x, y) in &rows {
                let z: f64 = x.iter().zip(&w[..6]).map(|(x, w)| x * w).sum::<f64>() + w[6];
                let p = 1.0 / (1.0 + (-z).exp());
                f += (1.0 + z.exp()).ln() - y * z;
                for j in 0..6 {
                    g[j] += (p - y) * x[j] / 40.0;
                }
                g[6] += (p - y) / 40.0;
            }
            Ok((f / 40.0, g))
        };
        let lambda = 0.05;
        let opts = LbfgsOptions {
            tol: 1e-9,
            ..LbfgsOptions::default()
        };
        let out = minimize_l1(
            &mut logistic,
            vec![0.0; 7],
            &opts,
            L1 {
                weight: lambda,
                len: 6,
            },
        )
        .unwrap();
        assert!(out.stop.converged(), "{out:?}");
        let mut x = out.x.clone();
        let (_, g) = logistic(&mut x).unwrap();
        for j in 0..6 {
            if out.x[j] == 0.0 {
                assert!(g[j].abs() <= lambda + 1e-9, "{j}: {g:?}");
            } else {
                assert!(
                    (g[j] + lambda * out.x[j].signum()).abs() <= 1e-8,
                    "{j}: {g:?}"
                );
            }
        }
        assert!(g[6].abs() <= 1e-8);
        assert!(out.x[..6].contains(&0.0), "no weight is 0: {:?}", out.x);
        assert!(out.x[0] > 0.0 && out.x[1] < 0.0, "{:?}", out.x);
    }
}
