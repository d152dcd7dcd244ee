//! `softmax-wgpu validate`: every kernel, the gradient, a training trajectory and determinism, GPU f32 against CPU
//! f64, on one adapter or all of them.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;
use softmax_wgpu::gpu::{self, GpuContext};
use softmax_wgpu::validate::{validate_adapter, AdapterReport, MAX_STEPS};
use softmax_wgpu::Error;

use super::args::{BackendArg, ValidateArgs};
use super::common::{progress_bar, yes};

/// Runs the command.
pub fn run(a: ValidateArgs) -> Result<ExitCode> {
    if !(1..=MAX_STEPS).contains(&a.steps) {
        return Err(Error::param("--steps", format!("in 1..={MAX_STEPS}"), a.steps).into());
    }
    let backends = BackendArg::backends(a.backend);
    let (contexts, unopened): (Vec<GpuContext>, Vec<String>) = if a.all_adapters {
        let found = gpu::adapters(backends);
        if found.is_empty() {
            return Err(Error::NoAdapter {
                backends: format!("{backends:?}"),
            }
            .into());
        }
        // An adapter that cannot be opened (a driver that lists a device it cannot create, as NVIDIA's GL did on a
        // headless H200) is reported, and the others are still validated.
        let (contexts, mut unopened) = open_each(found, GpuContext::new);
        if contexts.is_empty() {
            // Nothing was validated: the best adapter's reason is the error.
            return Err(unopened.swap_remove(0).into());
        }
        let unopened: Vec<String> = unopened.iter().map(ToString::to_string).collect();
        for e in &unopened {
            eprintln!("could not open an adapter: {e}");
        }
        (contexts, unopened)
    } else {
        (
            vec![GpuContext::select(backends, a.adapter.as_deref())?],
            Vec::new(),
        )
    };
    let mut reports = Vec::new();
    for ctx in &contexts {
        eprintln!("validating {} …", ctx.describe());
        let bar = progress_bar(a.steps as u64, "trajectory steps");
        let report = validate_adapter(ctx, a.seed, a.steps, None, &mut |s| {
            bar.set_position(s as u64)
        });
        bar.finish_and_clear();
        reports.push(report?);
    }
    let pass = reports.iter().all(|r| r.pass);
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&ValidateJson {
                pass,
                adapters: &reports,
                unopened: &unopened,
            })?
        );
    } else {
        for r in &reports {
            print_report(r);
        }
        if reports.len() > 1 {
            print_summary(&reports);
        }
        for e in &unopened {
            outln!("\nnot validated (could not be opened): {e}");
        }
        let of = if unopened.is_empty() {
            String::new()
        } else {
            format!(
                " on {} of {} adapters",
                reports.len(),
                reports.len() + unopened.len()
            )
        };
        outln!(
            "\n{}{of}",
            if pass {
                "all checks passed"
            } else {
                "SOME CHECKS FAILED"
            }
        );
    }
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The `--json` document.
#[derive(Serialize)]
struct ValidateJson<'a> {
    pass: bool,
    adapters: &'a [AdapterReport],
    /// Why each adapter found but not validated could not be opened.
    unopened: &'a [String],
}

/// Opens each of `found`: what opened, and the reason for each that did not, in the order found.
fn open_each<A, C, E>(
    found: Vec<A>,
    mut open: impl FnMut(A) -> std::result::Result<C, E>,
) -> (Vec<C>, Vec<E>) {
    let mut opened = Vec::new();
    let mut failed = Vec::new();
    for a in found {
        match open(a) {
            Ok(c) => opened.push(c),
            Err(e) => failed.push(e),
        }
    }
    (opened, failed)
}

/// One line per adapter and kernel: the worst error against its tolerance.
fn print_summary(reports: &[AdapterReport]) {
    outln!("\nsummary (worst error / tolerance per adapter and kernel)");
    let mut kernels: Vec<&str> = Vec::new();
    for k in &reports[0].kernels {
        if !kernels.contains(&k.kernel.as_str()) {
            kernels.push(&k.kernel);
        }
    }
    for r in reports {
        for k in &kernels {
            let checks: Vec<_> = r.kernels.iter().filter(|c| c.kernel == *k).collect();
            let worst = checks
                .iter()
                .map(|c| c.cmp.worst_vs_tolerance)
                .fold(0.0, f64::max);
            let ulp = checks.iter().map(|c| c.cmp.ulp_max).max().unwrap_or(0);
            let ok = checks.iter().all(|c| c.cmp.pass);
            outln!(
                "  {:<48} {:<9} worst {:>9.3e}  max ulp {:>10}  {}",
                r.adapter,
                k,
                worst,
                ulp,
                verdict(ok)
            );
        }
        outln!(
            "  {:<48} {:<9} max rel diff {:.2e}, deterministic: {}  {}",
            r.adapter,
            "training",
            r.trajectory.max_relative_diff,
            yes(r.trajectory.deterministic),
            verdict(r.trajectory.pass)
        );
        outln!(
            "  {:<48} {:<9} max rel diff {:.2e}, objective gap {:.1e}  {}",
            r.adapter,
            "l-bfgs",
            r.lbfgs.relative_diff,
            r.lbfgs.objective_gap,
            verdict(r.lbfgs.pass)
        );
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "FAIL"
    }
}

fn print_report(r: &AdapterReport) {
    outln!("\n{}", r.adapter);
    outln!(
        "  {:<13} {:<6} {:<38} {:>10} {:>10} {:>6} {:>6} {:>10} {:>10}  result",
        "kernel",
        "output",
        "case",
        "max abs",
        "max rel",
        "ulp50",
        "ulp99",
        "ulp max",
        "err/tol"
    );
    for k in &r.kernels {
        let c = &k.cmp;
        outln!(
            "  {:<13} {:<6} {:<38} {:>10.3e} {:>10.3e} {:>6} {:>6} {:>10} {:>10.3e}  {}",
            k.kernel,
            k.output,
            k.case,
            c.max_abs,
            c.max_rel,
            c.ulp_p50,
            c.ulp_p99,
            c.ulp_max,
            c.worst_vs_tolerance,
            verdict(c.pass)
        );
    }
    for g in &r.gradient_checks {
        outln!(
            "  gradient check {:<30} relative error {:.3e} (≤ 1e-6)  {}",
            g.case,
            g.relative_error,
            verdict(g.pass)
        );
    }
    let t = &r.trajectory;
    outln!(
        "  trajectory {}: max ‖W_gpu − W_cpu‖/‖W_cpu‖ {:.3e} (≤ {:.0e}), final {:.3e}, objective gap {:.3e}, held-out argmax agreement {:.2}%  {}",
        t.case,
        t.max_relative_diff,
        t.tolerance,
        t.relative_diff.last().copied().unwrap_or(0.0),
        t.objective_gap,
        100.0 * t.prediction_agreement,
        verdict(t.pass)
    );
    outln!(
        "  determinism: the same run twice gives bitwise-identical weights: {}  {}",
        yes(t.deterministic),
        verdict(t.deterministic)
    );
    let l = &r.lbfgs;
    outln!(
        "  l-bfgs {}: {} iterations on the GPU, {} in f64; ‖W_gpu − W_cpu‖/‖W_cpu‖ {:.3e} (≤ {:.0e}), objective gap {:.1e} (≤ 1e-6)  {}",
        l.case,
        l.iterations.0,
        l.iterations.1,
        l.relative_diff,
        l.tolerance,
        l.objective_gap,
        verdict(l.pass)
    );
}

#[cfg(test)]
mod tests {
    use super::open_each;

    #[test]
    fn an_adapter_that_cannot_be_opened_is_reported_and_the_others_are_kept() {
        let (opened, failed) = open_each(vec![1, 2, 3], |n| {
            if n == 2 {
                Err(format!(
                    "GPU error on adapter {n} while opening a device: Parent device is lost"
                ))
            } else {
                Ok(n * 10)
            }
        });
        assert_eq!(opened, vec![10, 30]);
        assert_eq!(
            failed,
            vec![
                "GPU error on adapter 2 while opening a device: Parent device is lost".to_string()
            ]
        );
    }
}
