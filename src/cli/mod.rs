//! Arguments → validated configuration → commands.

mod args;
mod load;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use softmax_wgpu::cpu::CpuBackend;
use softmax_wgpu::data::Standardizer;
use softmax_wgpu::gpu::{self, AdapterSummary, GpuBackend, GpuContext, GpuOptions};
use softmax_wgpu::model::write_atomically;
use softmax_wgpu::shadow::{ShadowOptions, Shadowed};
use softmax_wgpu::{fit, Backend, EpochReport, Error, Model};

use args::{
    Cli, Command, DeviceArgs, DeviceKind, DevicesArgs, Precision, PredictArgs, TrainArgs,
    ValidateArgs,
};

/// Runs the command line.
pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Train(a) => train(a),
        Command::Predict(a) => predict(a),
        Command::Devices(a) => devices(a),
        Command::Validate(a) => validate(a),
    }
}

enum Device {
    Cpu(Precision),
    Gpu(Box<GpuContext>),
}

fn open_device(a: &DeviceArgs) -> Result<Device> {
    let backends = match &a.backend {
        Some(b) => gpu::parse_backend(b)?,
        None => wgpu::Backends::all(),
    };
    match a.device {
        DeviceKind::Cpu => Ok(Device::Cpu(a.precision)),
        DeviceKind::Gpu => Ok(Device::Gpu(Box::new(GpuContext::select(
            backends,
            a.adapter.as_deref(),
        )?))),
        DeviceKind::Auto => match gpu::select_adapter(backends, a.adapter.as_deref()) {
            Ok(adapter) => Ok(Device::Gpu(Box::new(GpuContext::new(adapter)?))),
            Err(Error::NoAdapter(why)) => {
                eprintln!("no GPU adapter found ({why}); training on the CPU");
                Ok(Device::Cpu(a.precision))
            }
            Err(e) => Err(e.into()),
        },
    }
}

fn check_out_path(path: &std::path::Path, flag: &str) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        return Err(Error::param(
            flag,
            format!("directory {} does not exist", parent.display()),
        )
        .into());
    }
    if path.is_dir() {
        return Err(Error::param(flag, format!("{} is a directory", path.display())).into());
    }
    Ok(())
}

/// The trainer: the device's backend, or the same wrapped in a CPU f64 shadow (`--check-every`).
enum Runner<'a> {
    Plain(Box<dyn Backend + 'a>),
    Checked(Box<Shadowed<'a>>),
}

impl Runner<'_> {
    fn backend(&mut self) -> &mut dyn Backend {
        match self {
            Runner::Plain(b) => b.as_mut(),
            Runner::Checked(s) => s.as_mut(),
        }
    }
}

fn fmt_line(r: &EpochReport) -> String {
    let held = match (r.val_loss, r.val_accuracy) {
        (Some(l), Some(a)) => format!("val_loss {l:.4}  val_acc {:6.2}%", 100.0 * a),
        _ => "val_loss    -    val_acc      -".to_string(),
    };
    let drift = r
        .drift
        .map_or(String::new(), |d| format!("  drift {d:.1e}"));
    format!(
        "epoch {:3}  train_loss {:.4}  {held}  {:>10.0} samples/s  {:6.2}s{drift}  [{}]",
        r.epoch, r.train_loss, r.samples_per_sec, r.seconds, r.device
    )
}

fn train(a: TrainArgs) -> Result<ExitCode> {
    let cfg = a.config();
    cfg.check()?;
    let check = a.check_every.map(|every| ShadowOptions {
        every,
        tolerance: a.check_tolerance,
    });
    if let Some(c) = &check {
        c.check()?;
    }
    if let Some(out) = &a.out {
        check_out_path(out, "--out")?;
    }
    let mut loaded = load::training_data(&a, &cfg)?;
    let standardizer = cfg
        .standardize
        .then(|| Standardizer::fit(loaded.train.x.view()));
    if let Some(s) = &standardizer {
        s.apply(&mut loaded.train.x);
        if let Some(h) = &mut loaded.held_out {
            s.apply(&mut h.x);
        }
    }
    let (train, held_out) = (&loaded.train, loaded.held_out.as_ref());
    let k = train.classes.len();
    let device = open_device(&a.device)?;
    let held = held_out.map(|h| (h.x.view(), h.y.as_slice()));
    let backend: Box<dyn Backend + '_> = match &device {
        Device::Cpu(Precision::F32) => {
            Box::new(CpuBackend::<f32>::new(train.x.view(), &train.y, k, held))
        }
        Device::Cpu(Precision::F64) => {
            Box::new(CpuBackend::<f64>::new(train.x.view(), &train.y, k, held))
        }
        Device::Gpu(ctx) => {
            let options = GpuOptions {
                max_chunk_bytes: a.chunk_mib.map(|m| m * 1024 * 1024),
            };
            Box::new(GpuBackend::new(
                ctx,
                train.x.view(),
                &train.y,
                k,
                held,
                cfg.batch_size,
                &options,
            )?)
        }
    };
    let mut runner = match check {
        Some(options) => Runner::Checked(Box::new(Shadowed::new(
            backend,
            train.x.view(),
            &train.y,
            options,
        )?)),
        None => Runner::Plain(backend),
    };
    let backend = runner.backend();
    eprintln!(
        "device: {} · data: {} · {} training rows{} × {} features, {} classes",
        backend.device(),
        train.source,
        train.len(),
        held_out.map_or(String::new(), |h| format!(" / {} held-out", h.len())),
        train.features(),
        k
    );
    if let Some(c) = &check {
        eprintln!(
            "checking: every step replayed on the CPU in f64, weights compared every {} steps (tolerance {:.1e})",
            c.every, c.tolerance
        );
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some((train.len() * cfg.epochs) as u64),
        if std::io::stderr().is_terminal() {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let json = a.json;
    let reports = fit(
        backend,
        train.len(),
        &cfg,
        &mut |rows| bar.inc(rows as u64),
        &mut |r| {
            bar.suspend(|| {
                if json {
                    let v = serde_json::json!({
                        "epoch": r.epoch,
                        "train_loss": r.train_loss,
                        "train_accuracy": r.train_accuracy,
                        "val_loss": r.val_loss,
                        "val_accuracy": r.val_accuracy,
                        "samples_per_sec": r.samples_per_sec,
                        "seconds": r.seconds,
                        "drift": r.drift,
                        "device": r.device,
                    });
                    println!("{v}");
                } else {
                    println!("{}", fmt_line(r));
                }
            })
        },
    );
    bar.finish_and_clear();
    let reports = match reports {
        Err(e @ Error::Drift { .. }) => {
            let stopped = match &a.out {
                Some(out) => format!("training stopped, {} not written", out.display()),
                None => "training stopped".to_string(),
            };
            return Err(anyhow::Error::from(e).context(stopped));
        }
        r => r?,
    };
    let last = reports.last().expect("at least one epoch");
    if !last.train_loss.is_finite() {
        return Err(Error::param(
            "--lr",
            format!(
                "training diverged (loss {}): lower the learning rate",
                last.train_loss
            ),
        )
        .into());
    }
    let checked = match &mut runner {
        Runner::Checked(shadow) => {
            let s = shadow.finish()?;
            let worst = s.worst.expect("finish compares at least once");
            eprintln!(
                "checked against the CPU f64 reference: {} comparisons over {} steps, largest drift {:.2e} after step {} \
                 (the CPU's f32 path: {:.2e}), tolerance {:.1e}",
                s.checks, s.steps, worst.drift, worst.step, worst.cpu_f32_drift, s.options.tolerance
            );
            Some(s)
        }
        Runner::Plain(_) => None,
    };
    let backend = runner.backend();
    if let Some(out) = &a.out {
        let params = backend.params()?;
        let settings = serde_json::json!({
            "config": cfg,
            "data": train.source,
            "device": backend.device(),
            "final": last,
            "check": checked,
        });
        let model = Model {
            params,
            classes: train.classes.clone(),
            standardizer,
            settings,
        };
        model.save(out)?;
        eprintln!("saved {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn predict(a: PredictArgs) -> Result<ExitCode> {
    if let Some(out) = &a.out {
        check_out_path(out, "--out")?;
    }
    let model = Model::load(&a.model)?;
    let data = load::prediction_data(&a, &model)?;
    let proba = model.predict_proba(data.x.view())?;
    let predicted = softmax_wgpu::model::argmax_rows(proba.view());
    let mut text = String::new();
    text.push_str("label");
    if a.proba {
        for c in &model.classes {
            text.push_str(&format!(",p_{c}"));
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
    if let Some(y) = &data.y {
        let hits = y.iter().zip(&predicted).filter(|(a, b)| a == b).count();
        eprintln!(
            "accuracy {:.4} ({hits} of {} rows)",
            hits as f64 / y.len().max(1) as f64,
            y.len()
        );
    }
    match &a.out {
        Some(out) => write_atomically(out, text.as_bytes())?,
        None => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout
                .write_all(text.as_bytes())
                .and_then(|_| stdout.flush())
            {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(Error::io("<stdout>", e).into());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn devices(a: DevicesArgs) -> Result<ExitCode> {
    let backends = match &a.backend {
        Some(b) => gpu::parse_backend(b)?,
        None => wgpu::Backends::all(),
    };
    let found: Vec<AdapterSummary> = gpu::adapters(backends)
        .iter()
        .enumerate()
        .map(|(i, ad)| AdapterSummary::of(i, ad))
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        println!("no GPU adapter found; `train` will use the CPU (--device cpu)");
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for s in &found {
        println!(
            "[{}] {} — {} ({}), driver: {}",
            s.index, s.name, s.backend, s.device_type, s.driver
        );
        println!(
            "    max storage binding {:.0} MiB · max buffer {:.0} MiB · workgroup ≤ {:?}, {} invocations · {} workgroups/dim",
            mib(s.max_storage_buffer_binding_size),
            mib(s.max_buffer_size),
            s.max_workgroup_size,
            s.max_invocations_per_workgroup,
            s.max_workgroups_per_dimension
        );
        println!(
            "    subgroups: {} (sizes {}–{}) · timestamp queries: {} · shader f64: {}",
            yes(s.subgroups),
            s.subgroup_sizes[0],
            s.subgroup_sizes[1],
            yes(s.timestamp_queries),
            yes(s.shader_f64)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn validate(a: ValidateArgs) -> Result<ExitCode> {
    use softmax_wgpu::validate::validate_adapter;
    if a.steps == 0 {
        return Err(Error::param("--steps", "must be at least 1 (got 0)").into());
    }
    let backends = match &a.backend {
        Some(b) => gpu::parse_backend(b)?,
        None => wgpu::Backends::all(),
    };
    let contexts: Vec<GpuContext> = if a.all_adapters {
        let found = gpu::adapters(backends);
        if found.is_empty() {
            return Err(Error::NoAdapter("wgpu found none".into()).into());
        }
        found
            .into_iter()
            .map(GpuContext::new)
            .collect::<softmax_wgpu::Result<_>>()?
    } else {
        vec![GpuContext::select(backends, a.adapter.as_deref())?]
    };
    let mut reports = Vec::new();
    for ctx in &contexts {
        eprintln!("validating {} …", ctx.describe());
        reports.push(validate_adapter(ctx, a.seed, a.steps, None)?);
    }
    let pass = reports.iter().all(|r| r.pass);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "pass": pass, "adapters": reports })
            )?
        );
    } else {
        for r in &reports {
            print_report(r);
        }
        if reports.len() > 1 {
            println!("\nsummary (worst error / tolerance per adapter and kernel)");
            let mut kernels: Vec<&str> = Vec::new();
            for k in &reports[0].kernels {
                if !kernels.contains(&k.kernel.as_str()) {
                    kernels.push(&k.kernel);
                }
            }
            for r in &reports {
                for k in &kernels {
                    let checks: Vec<_> = r.kernels.iter().filter(|c| c.kernel == *k).collect();
                    let worst = checks
                        .iter()
                        .map(|c| c.cmp.worst_vs_tolerance)
                        .fold(0.0, f64::max);
                    let ulp = checks.iter().map(|c| c.cmp.ulp_max).max().unwrap_or(0);
                    let ok = checks.iter().all(|c| c.cmp.pass);
                    println!(
                        "  {:<48} {:<9} worst {:>9.3e}  max ulp {:>10}  {}",
                        r.adapter,
                        k,
                        worst,
                        ulp,
                        verdict(ok)
                    );
                }
                println!(
                    "  {:<48} {:<9} max rel diff {:.2e}, deterministic: {}  {}",
                    r.adapter,
                    "training",
                    r.trajectory.max_relative_diff,
                    yes(r.trajectory.deterministic),
                    verdict(r.trajectory.pass)
                );
            }
        }
        println!(
            "\n{}",
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

fn verdict(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "FAIL"
    }
}

fn print_report(r: &softmax_wgpu::validate::AdapterReport) {
    println!("\n{}", r.adapter);
    println!(
        "  {:<9} {:<6} {:<34} {:>10} {:>10} {:>6} {:>6} {:>10} {:>10}  result",
        "kernel", "output", "case", "max abs", "max rel", "ulp50", "ulp99", "ulp max", "err/tol"
    );
    for k in &r.kernels {
        let c = &k.cmp;
        println!(
            "  {:<9} {:<6} {:<34} {:>10.3e} {:>10.3e} {:>6} {:>6} {:>10} {:>10.3e}  {}",
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
        println!(
            "  gradient check {:<30} relative error {:.3e} (≤ 1e-6)  {}",
            g.case,
            g.relative_error,
            verdict(g.pass)
        );
    }
    let t = &r.trajectory;
    println!(
        "  trajectory {}: max ‖W_gpu − W_cpu‖/‖W_cpu‖ {:.3e} (≤ {:.0e}), final {:.3e}, objective gap {:.3e}, held-out argmax agreement {:.2}%  {}",
        t.case,
        t.max_relative_diff,
        t.tolerance,
        t.relative_diff.last().copied().unwrap_or(0.0),
        t.objective_gap,
        100.0 * t.prediction_agreement,
        verdict(t.pass)
    );
    println!(
        "  determinism: the same run twice gives bitwise-identical weights: {}  {}",
        yes(t.deterministic),
        verdict(t.deterministic)
    );
}
