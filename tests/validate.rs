//! `validate` passes on every adapter, and a deliberately wrong kernel result makes it fail with that kernel named.

mod common;

use common::on_every_gpu;
use softmax_wgpu::gpu::Kernel;
use softmax_wgpu::validate::{check_kernels, validate_adapter, Fault};

#[test]
fn validate_passes_on_every_adapter() {
    on_every_gpu(|ctx| {
        let r = validate_adapter(ctx, 1, 200, None, &mut |_| {}).unwrap();
        if let Some(k) = r.kernels.iter().find(|k| !k.cmp.pass) {
            panic!(
                "{}: {} {} {} failed: {:?}",
                r.adapter, k.kernel, k.output, k.case, k.cmp
            );
        }
        assert!(
            r.trajectory.deterministic,
            "{}: not bitwise deterministic",
            r.adapter
        );
        assert_eq!(r.trajectory.relative_diff.len(), 200);
        assert!(r.pass, "{:?}", r.trajectory);
    });
}

#[test]
fn a_perturbed_kernel_result_fails_and_is_named() {
    on_every_gpu(|ctx| {
        for kernel in [
            Kernel::Logits,
            Kernel::Softmax,
            Kernel::Grad,
            Kernel::Update,
            Kernel::Gather,
            Kernel::Forward,
            Kernel::SparseLogits,
            Kernel::SparseGrad,
            Kernel::SparseUpdate,
            Kernel::UpdateMomentum,
            Kernel::UpdateAdam,
            Kernel::ForwardHeld,
            Kernel::GradHeld,
            Kernel::FusedHeld,
            Kernel::Reduce,
            Kernel::LogitsHeld,
        ] {
            let one_pass = [Kernel::FusedHeld, Kernel::Reduce].contains(&kernel);
            let shape = softmax_wgpu::Shape { d: 1, k: 2 };
            if one_pass && !softmax_wgpu::gpu::GpuBackend::runs_fused(ctx, shape) {
                continue;
            }
            // 1e-3 relative is thousands of ULP: far beyond every bound, yet small enough to be a plausible bug.
            let checks = check_kernels(
                ctx,
                1,
                Some(Fault {
                    kernel,
                    relative: 1e-3,
                }),
            )
            .unwrap();
            let failed: Vec<&str> = checks
                .iter()
                .filter(|c| !c.cmp.pass)
                .map(|c| c.kernel.as_str())
                .collect();
            assert!(
                !failed.is_empty(),
                "a corrupted {} went unnoticed",
                kernel.name()
            );
            assert!(
                failed.iter().all(|&k| k == kernel.name()),
                "corrupting {} failed {failed:?}",
                kernel.name()
            );
        }
    });
}

#[test]
fn validate_command_exits_zero_with_json() {
    if common::gpus().is_empty() {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"))
        .args(["validate", "--json", "--steps", "50"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pass"], true);
    let a = &v["adapters"][0];
    for key in [
        "max_abs",
        "max_rel",
        "ulp_p50",
        "ulp_p99",
        "ulp_max",
        "worst_vs_tolerance",
        "pass",
    ] {
        assert!(a["kernels"][0].get(key).is_some(), "kernel figure {key}");
    }
    assert_eq!(
        a["trajectory"]["relative_diff"].as_array().unwrap().len(),
        50
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"))
        .args(["validate", "--steps", "0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    // A mistyped step count is refused before any work, not run for days.
    let huge = std::process::Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"))
        .args(["validate", "--steps", "1000000000000000"])
        .output()
        .unwrap();
    assert_eq!(huge.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&huge.stderr).contains("--steps: must be in 1..=100000"));
}
