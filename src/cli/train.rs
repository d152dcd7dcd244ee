//! `softmax-wgpu train`: load and check the data, open the device, train through the seam with observers for the
//! progress bar, the epoch lines (or JSON) and the optional `--check-every` shadow, then save the model.

use std::process::ExitCode;

use anyhow::Result;
use softmax_wgpu::config::Convergence;
use softmax_wgpu::data::Standardizer;
use softmax_wgpu::error::bytes;
use softmax_wgpu::lbfgs::Stop;
use softmax_wgpu::shadow::{Shadow, ShadowOptions, ShadowSummary};
use softmax_wgpu::train::{
    fit_with, held_row_bytes, residency, EpochReport, Layout, Method, Observer, OnEpoch, Optimizer,
    Reducer, Request, Residency, Why,
};
use softmax_wgpu::{Error, Model, RowSource, Shape, TrainConfig};

use super::args::{OptimizerArg, TrainArgs};
use super::common::{check_outputs, progress_bar, Device};
use super::group::Group;
use super::load;

/// Runs the command: resolve the settings, load the data and open the device, set the run up (warm start, class
/// weights, the automatic choice, resume, checkpoints), train with the observers, report how it ended, save.
///
/// One of several processes (`mpirun`, feature `mpi`), it trains on its shard of the rows with the others; process 0
/// alone prints and writes the outputs, after every process has finished training.
pub fn run(mut a: TrainArgs, group: &mut Group) -> Result<ExitCode> {
    if group.size() > 1 {
        shared_run(&mut a, group)?;
    }
    let resolved = resolve(&a)?;
    let data = prepare(
        &a,
        &resolved.cfg,
        resolved.init.as_ref().and_then(|m| m.standardizer.as_ref()),
        group.reducer(),
    )?;
    let device = Device::open(&a.device, a.quiet)?;
    let mut run = set_up(&a, resolved, data, &device, group.reducer())?;
    let (reports, checked) = train_observed(&a, &mut run, group.reducer())?;
    // Every process trained to the end before the model is written.
    group.agree_and_close()?;
    for line in softmax_wgpu::gpu::tune::take_warnings() {
        if !a.quiet {
            eprintln!("warning: {line}");
        }
    }
    report_end(&a, &run.cfg, &reports);
    if let Some(s) = checked.as_ref().filter(|_| !a.quiet) {
        print_check_summary(s);
    }
    save(&a, run, &reports, checked)?;
    Ok(ExitCode::SUCCESS)
}

/// Checks what a run of several processes supports and leaves printing and the outputs to process 0.
fn shared_run(a: &mut TrainArgs, group: &Group) -> Result<()> {
    let size = group.size();
    if a.check_every.is_some() {
        return Err(Error::param(
            "--check-every",
            "left out under mpirun (the f64 shadow replays one process's steps)",
            format!("given to a run of {size} processes"),
        )
        .into());
    }
    if !group.is_root() {
        a.quiet = true;
        a.json = false;
        a.out = None;
        a.plot = None;
        // Process 0 writes the checkpoints (at epochs' ends: see `set_up`); every process resumes from them.
        a.checkpoint = None;
    }
    Ok(())
}

/// A run set up: its settings resolved against the data and the device, the data, the backend, and its observers'
/// parts.
struct Run<'d> {
    cfg: TrainConfig,
    data: Prepared,
    shape: Shape,
    backend: Box<dyn softmax_wgpu::Backend + 'd>,
    check: Option<ShadowOptions>,
    checkpointer: Option<softmax_wgpu::checkpoint::Checkpointer>,
}

/// Opens the backend and sets the run up: the warm start, the class weights, the automatic choice, resume and
/// checkpoints; says what it will do.
///
/// Long on purpose: the run's set-up steps in the order they must happen (the choice needs the class weights, resume
/// needs the choice, checkpoints need resume).
fn set_up<'d>(
    a: &TrainArgs,
    r: Resolved,
    mut data: Prepared,
    device: &'d Device,
    reducer: &mut dyn Reducer,
) -> Result<Run<'d>> {
    let Resolved {
        mut cfg,
        automatic,
        check,
        chunk_bytes,
        init,
    } = r;
    let say = |line: String| {
        if !a.quiet {
            eprintln!("{line}");
        }
    };
    let shape = Shape {
        d: data.train.features(),
        k: data.classes.len(),
    };
    let mut backend = device.backend(shape, chunk_bytes, !a.no_autotune, data.train.is_sparse())?;
    if let (Some(m), Some(path)) = (&init, &a.init) {
        warm_start(backend.as_mut(), m, path, shape, &data.classes)?;
    }
    if let Some(spec) = &a.class_weight {
        let w =
            softmax_wgpu::train::class_weights(spec, &data.classes, data.train.as_mut(), reducer)?;
        say(class_weights_line(&data.classes, &w));
        cfg.class_weights = Some(w);
    }
    if automatic || a.optimizer == Some(OptimizerArg::Lbfgs) {
        say(choose(
            a,
            &mut cfg,
            backend.as_ref(),
            data.train.as_ref(),
            reducer,
        )?);
        cfg.check()?;
    }
    // The whole data set's rows, so that every process names the same run (and a checkpoint of P processes can be
    // resumed by any other number: it holds no process's own sums).
    let rows = match data.train.rows() {
        Some(r) if !reducer.is_identity() => Some(Layout::of(reducer, r)?.total),
        r => r,
    };
    let run_id = softmax_wgpu::checkpoint::run_identity(
        &cfg,
        &data.data_name,
        rows,
        shape,
        residency(backend.as_ref(), data.train.as_ref(), &cfg),
    );
    if let Some(path) = &a.resume {
        let c = softmax_wgpu::checkpoint::Checkpoint::load(path)?;
        c.check_run(path, &run_id)?;
        c.restore(backend.as_mut())?;
        cfg.resume = Some(c.at.clone());
        say(format!(
            "resuming from {}: epoch {}, after step {} ({} of the epoch's)",
            path.display(),
            c.at.epoch,
            c.at.steps,
            c.at.batches_done
        ));
    }
    let checkpointer = a
        .checkpoint
        .as_deref()
        .map(|p| {
            softmax_wgpu::checkpoint::Checkpointer::new(
                p,
                a.checkpoint_every,
                run_id.clone(),
                cfg.resume.as_ref(),
            )
            // Mid-epoch, a process's loss sums so far are its own rows' only: a run of several processes writes its
            // checkpoints at epochs' ends.
            .map(|c| {
                if reducer.is_identity() {
                    c
                } else {
                    c.at_epoch_ends()
                }
            })
        })
        .transpose()?;
    say(data_line(backend.as_ref(), &data, shape));
    if let (Some(budget), Residency::Streamed { .. }) = (
        a.memory_budget,
        residency(backend.as_ref(), data.train.as_ref(), &cfg),
    ) {
        let least = softmax_wgpu::train::smallest_memory_budget(data.train.as_ref(), &cfg);
        if budget < least {
            return Err(Error::param(
                "--memory-budget",
                format!(
                    "at least {} to stream these rows: chunks of {} rows in flight (smaller chunks leave the \
                     trainer waiting on reads)",
                    bytes(least),
                    softmax_wgpu::train::MIN_CHUNK_ROWS.min(cfg.batch_size.max(1) as u64)
                ),
                bytes(budget),
            )
            .into());
        }
    }
    if let Some(line) = streaming_line(
        backend.as_ref(),
        data.train.as_ref(),
        &cfg,
        data.stream_budget,
    ) {
        say(line);
    }
    if let Some(c) = &check {
        say(format!(
            "checking: every step replayed on the CPU in f64, weights compared every {} steps (tolerance {:.1e})",
            c.every, c.tolerance
        ));
    }
    Ok(Run {
        cfg,
        data,
        shape,
        backend,
        check,
        checkpointer,
    })
}

/// The device and the data: rows, features, classes.
fn data_line(backend: &dyn softmax_wgpu::Backend, data: &Prepared, shape: Shape) -> String {
    format!(
        "device: {} · data: {} · {} training rows{} × {} features, {} classes",
        backend.device(),
        data.data_name,
        data.train.rows().unwrap_or(0),
        data.held_out.as_ref().map_or(String::new(), |h| format!(
            " / {} held-out",
            h.rows().unwrap_or(0)
        )),
        shape.d,
        shape.k
    )
}

/// The classes' weights, the first dozen of them.
fn class_weights_line(classes: &[String], w: &[f32]) -> String {
    format!(
        "class weights: {}",
        classes
            .iter()
            .zip(w)
            .take(12)
            .map(|(c, w)| format!("{c} {w:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
            + if classes.len() > 12 { ", …" } else { "" }
    )
}

/// Trains with the observers — the progress bar, the `--check-every` shadow, the checkpoints, the epoch lines (or
/// JSON) — and returns the epochs' reports and the shadow's summary.
fn train_observed(
    a: &TrainArgs,
    run: &mut Run<'_>,
    reducer: &mut dyn Reducer,
) -> Result<(Vec<EpochReport>, Option<ShadowSummary>)> {
    let (quiet, json) = (a.quiet, a.json);
    let cfg = &run.cfg;
    let mut shadow = run.check.map(|c| Shadow::new(run.shape, c)).transpose()?;
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        match cfg.optimizer {
            Optimizer::Lbfgs(o) => progress_bar(o.max_iter as u64, "iterations"),
            _ => progress_bar(
                run.data
                    .train
                    .rows()
                    .unwrap_or(0)
                    .saturating_mul(cfg.epochs as u64),
                "rows",
            ),
        }
    };
    let mut rows = Progress {
        bar: &bar,
        epochs: cfg.epochs,
    };
    let mut print = OnEpoch(|r: &EpochReport| {
        if json || !quiet {
            bar.suspend(|| print_epoch(r, json))?;
        }
        Ok(())
    });
    let mut observers: Vec<&mut dyn Observer> = vec![&mut rows];
    if let Some(s) = shadow.as_mut() {
        observers.push(s);
    }
    if let Some(c) = run.checkpointer.as_mut() {
        observers.push(c);
    }
    observers.push(&mut print);
    let result = fit_with(
        run.backend.as_mut(),
        run.data.train.as_mut(),
        run.data
            .held_out
            .as_mut()
            .map(|h| h.as_mut() as &mut dyn RowSource),
        cfg,
        reducer,
        &mut observers,
    );
    drop(observers);
    bar.finish_and_clear();
    let reports = match result {
        Err(e @ Error::Drift { .. }) => {
            let stopped = match &a.out {
                Some(out) => format!("training stopped, {} not written", out.display()),
                None => "training stopped".to_string(),
            };
            return Err(anyhow::Error::from(e).context(stopped));
        }
        r => r?,
    };
    Ok((reports, shadow.as_ref().map(Shadow::summary)))
}

/// Writes the `--plot` and the `--out` model.
fn save(
    a: &TrainArgs,
    mut run: Run<'_>,
    reports: &[EpochReport],
    checked: Option<ShadowSummary>,
) -> Result<()> {
    let say = |line: String| {
        if !a.quiet {
            eprintln!("{line}");
        }
    };
    let device = run.backend.device();
    // The model first: a plot that cannot be written never costs the model.
    if let Some(out) = &a.out {
        let params = run.backend.params()?;
        let zero_weights = params.w.iter().filter(|&&v| v == 0.0).count();
        let model = Model {
            params,
            classes: run.data.classes,
            standardizer: run.data.standardizer,
            settings: settings(
                &run.cfg,
                &run.data.data_name,
                &device,
                reports.last(),
                checked,
                zero_weights,
            ),
        };
        model.save(out)?;
        say(format!("saved {}", out.display()));
    }
    if let Some(plot) = &a.plot {
        let title = format!("softmax-wgpu train · {} · {device}", run.data.data_name);
        let points: Vec<softmax_wgpu::plot::Point> = reports.iter().map(Into::into).collect();
        softmax_wgpu::atomic::write_atomically(
            plot,
            softmax_wgpu::plot::curves(&points, &title).as_bytes(),
        )?;
        say(format!("drew {}", plot.display()));
    }
    Ok(())
}

/// The settings as the flags give them, checked, before any data is read.
struct Resolved {
    cfg: TrainConfig,
    /// No optimizer or minibatch flag: the method is chosen once the rows and the device are known.
    automatic: bool,
    check: Option<ShadowOptions>,
    chunk_bytes: Option<u64>,
    /// The `--init` model.
    init: Option<Model>,
}

/// Checks the flags and the output paths (before a long run, not after it), reads the `--init` model and decides
/// whether features are standardised.
fn resolve(a: &TrainArgs) -> Result<Resolved> {
    a.check_optimizer_flags()?;
    let mut cfg = a.config();
    let automatic = a.automatic();
    cfg.check()?;
    let check = a
        .check_every
        .map(|every| ShadowOptions {
            every,
            tolerance: a.check_tolerance,
        })
        .map(|c| c.check().map(|()| c))
        .transpose()?;
    let chunk_bytes = a.chunk_bytes()?;
    if let (Some(budget), Some(h)) = (a.memory_budget, softmax_wgpu::memory::headroom()) {
        // Refused before anything is read: allocations past the process's limit abort rather than fail.
        if budget > h.bytes {
            return Err(Error::param(
                "--memory-budget",
                format!("at most the {} that {} leaves", bytes(h.bytes), h.bound),
                bytes(budget),
            )
            .into());
        }
    }
    check_outputs(
        &[
            ("--out", a.out.as_deref()),
            ("--checkpoint", a.checkpoint.as_deref()),
            ("--plot", a.plot.as_deref()),
        ],
        &[
            ("--data", a.data.as_deref()),
            ("--labels", a.labels.as_deref()),
            ("--test", a.test.as_deref()),
            ("--test-labels", a.test_labels.as_deref()),
            ("--sample-weight", a.sample_weight.as_deref()),
            ("--init", a.init.as_deref()),
            ("--resume", a.resume.as_deref()),
        ],
        &[("--checkpoint", "--resume")],
    )?;
    // A warm start: its model's weights, and its standardisation (the weights are in its units).
    let init = a.init.as_deref().map(Model::load).transpose()?;
    if automatic && !a.standardize {
        // The automatic choice standardises dense features (as scikit-learn users do with a StandardScaler), unless
        // told not to, a warm start's model says otherwise, or the rows are sparse (centring would densify them).
        cfg.standardize = match &init {
            Some(m) => m.standardizer.is_some(),
            None => !a.no_standardize && !sparse_input(a)?,
        };
    }
    if let (Some(m), Some(path)) = (&init, &a.init) {
        match (m.standardizer.is_some(), cfg.standardize) {
            (true, false) => {
                return Err(Error::param(
                    "--standardize",
                    format!(
                        "given: the --init model {} standardises its features",
                        path.display()
                    ),
                    "none",
                )
                .into())
            }
            (false, true) => {
                return Err(Error::param(
                    "--standardize",
                    format!(
                        "not given: the --init model {} was trained on raw features",
                        path.display()
                    ),
                    "given",
                )
                .into())
            }
            _ => {}
        }
    }
    Ok(Resolved {
        cfg,
        automatic,
        check,
        chunk_bytes,
        init,
    })
}

/// Starts from the `--init` model's weights, once its features and classes are the data's.
fn warm_start(
    backend: &mut dyn softmax_wgpu::Backend,
    m: &Model,
    path: &std::path::Path,
    shape: Shape,
    classes: &[String],
) -> Result<()> {
    if m.features() != shape.d {
        return Err(Error::input(
            path,
            format!("has {} features, the data have {}", m.features(), shape.d),
        )
        .into());
    }
    if m.classes != classes {
        let show = |c: &[String]| c.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
        return Err(Error::input(
            path,
            format!(
                "has the classes [{}], the data have [{}]",
                show(&m.classes),
                show(classes)
            ),
        )
        .into());
    }
    backend.set_params(&m.params)?;
    Ok(())
}

/// The line saying how rows that do not fit are streamed, when they are.
fn streaming_line(
    backend: &dyn softmax_wgpu::Backend,
    train: &dyn RowSource,
    cfg: &TrainConfig,
    stream_budget: Option<u64>,
) -> Option<String> {
    let Residency::Streamed { chunk_rows } = residency(backend, train, cfg) else {
        return None;
    };
    let train_rows = train.rows().unwrap_or(0);
    let held = train
        .held_bytes()
        .unwrap_or(train_rows * held_row_bytes(train.features()));
    let row = held.div_ceil(train_rows.max(1));
    Some(format!(
        "streaming: the rows would take {} held, over {}; read {chunk_rows} rows ({}) at a time, the next chunk \
         while the current one trains, shuffled {}",
        bytes(held),
        stream_budget.map_or("the device's memory".to_string(), |b| format!(
            "the memory budget of {}",
            bytes(b)
        )),
        bytes(chunk_rows as u64 * row),
        if cfg.shuffle {
            "by chunk and within each chunk"
        } else {
            "not at all"
        }
    ))
}

/// How the run ended: converged or not (the convergence rule, L-BFGS's stop), and early stopping's kept epoch.
fn report_end(a: &TrainArgs, cfg: &TrainConfig, reports: &[EpochReport]) {
    let quiet = a.quiet;
    let say = |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    if let (Some(c), Some(last)) = (cfg.convergence, reports.last()) {
        if last.converged {
            say(format!(
                "converged: the training loss fell by less than --tol {:.0e} for {} epochs (epoch {})",
                c.tol, c.patience, last.epoch
            ));
        } else if !quiet && reports.len() == cfg.epochs {
            eprintln!(
                "warning: did not converge in {} epochs: the training loss still fell by more than --tol {:.0e} \
                 within the last {} epochs; raise the cap (--epochs, or --max-iter for the automatic choice)",
                cfg.epochs, c.tol, c.patience
            );
        }
    }
    let reduced: Vec<(f64, f64)> = reports
        .iter()
        .filter_map(|r| r.reduce_seconds.map(|t| (t, r.seconds)))
        .collect();
    if !reduced.is_empty() {
        let (t, all) = reduced
            .iter()
            .fold((0.0, 0.0), |(t, all), (r, s)| (t + r, all + s));
        say(format!(
            "processes: {:.3} s of {:.3} s in reductions ({:.1} %, waiting for the slowest process included), the rest \
             computing",
            t,
            all,
            100.0 * t / all.max(1e-12)
        ));
    }
    if let Some(it) = reports.last().and_then(|r| r.lbfgs) {
        let line = lbfgs_outcome(&it, cfg);
        if it.stop.is_some_and(Stop::converged) {
            say(line);
        } else if !quiet {
            eprintln!("warning: {line}");
        }
    }
    if cfg.early_stopping.is_some() {
        if let Some(best) = reports.iter().find(|r| r.best) {
            say(format!(
                "early stopping: the best held-out loss, {:.4}, came at epoch {} of the {} epochs run; {} that epoch's weights",
                best.val_loss.unwrap_or(f64::NAN),
                best.epoch,
                reports.len(),
                if a.out.is_some() { "the model holds" } else { "training ended with" }
            ));
        }
    }
}

/// The progress bar's observer: rows done, and the epoch and step in its message.
struct Progress<'b> {
    bar: &'b indicatif::ProgressBar,
    epochs: usize,
}

impl Observer for Progress<'_> {
    fn on_step(
        &mut self,
        event: &softmax_wgpu::train::StepEvent<'_>,
        _backend: &mut dyn softmax_wgpu::Backend,
    ) -> softmax_wgpu::Result<()> {
        self.bar.inc(event.rows as u64);
        if event.step % 16 == 1 {
            self.bar.set_message(format!(
                "epoch {}/{} · step {}",
                event.epoch, self.epochs, event.step
            ));
        }
        Ok(())
    }

    fn on_epoch(
        &mut self,
        report: &mut EpochReport,
        _backend: &mut dyn softmax_wgpu::Backend,
    ) -> softmax_wgpu::Result<()> {
        if let Some(it) = report.lbfgs {
            self.bar.inc(1);
            self.bar.set_message(format!(
                "iteration {} · ‖∇J‖∞ {:.1e}",
                it.iteration, it.grad_inf
            ));
        }
        Ok(())
    }
}

/// Whether the training file holds sparse rows (LIBSVM), which are never standardised.
fn sparse_input(a: &TrainArgs) -> Result<bool> {
    Ok(match &a.data {
        Some(path) => load::format_of(path, &a.format)? == softmax_wgpu::data::Format::Libsvm,
        None => false,
    })
}

/// Resolves the automatic choice (and the default penalty of L-BFGS) now that the rows and the device are known
/// ([`softmax_wgpu::train::choose`], the library's policy), and says in one line what was chosen and why.
fn choose(
    a: &TrainArgs,
    cfg: &mut TrainConfig,
    backend: &dyn softmax_wgpu::Backend,
    train: &dyn RowSource,
    reducer: &mut dyn Reducer,
) -> Result<String> {
    let request = Request {
        automatic: a.optimizer.is_none(),
        lbfgs: a.lbfgs_options(),
        max_epochs: a.max_iter,
        tol: a.tol,
        l2_given: a.l2.is_some(),
    };
    let choice = softmax_wgpu::train::choose(&request, cfg, backend, train, reducer)?;
    let mut line = String::from("optimizer: ");
    match choice.method {
        Method::StreamedSgd => {
            let c = cfg.convergence.unwrap_or(Convergence::SGD_CLASSIFIER);
            line += &format!(
                "minibatch SGD (automatic: the training rows stream from their file, so no full-batch method), \
                 lr {}, batch {}, until the training loss falls by less than --tol {:.0e} for {} epochs, at most \
                 --max-iter {} epochs",
                cfg.lr, cfg.batch_size, c.tol, c.patience, cfg.epochs
            );
        }
        Method::Lbfgs(why) => {
            let n = choice.rows;
            let why = match why {
                Why::Asked => "--optimizer lbfgs".to_string(),
                Why::FitsInMemory => format!("automatic: the {n} training rows fit in memory"),
                Why::FitsOnDevice => format!("automatic: the {n} training rows fit on the device"),
            };
            line += &format!(
                "full-batch L-BFGS ({why}) to ‖∇J‖∞ ≤ --tol {:.0e}, at most --max-iter {} iterations",
                request.lbfgs.tol, request.lbfgs.max_iter
            );
        }
    }
    if let Some(l2) = choice.l2 {
        let m = softmax_wgpu::train::default_l2_numerator(backend.shape().k);
        line += &format!(
            "; L2 λ = {m}/N = {l2:.3e} (scikit-learn's C = 1{}; --l2 sets another, --l2 0 none)",
            if m == 2.0 { " for two classes" } else { "" }
        );
    }
    if request.automatic {
        line += match (cfg.standardize, train.is_sparse()) {
            (true, _) => "; standardised features",
            (false, true) => "; features as they are (sparse rows are never centred)",
            (false, false) => "; features as they are",
        };
        line += ". --optimizer or a minibatch flag (--epochs, --lr, …) chooses otherwise";
    }
    Ok(line)
}

/// How an L-BFGS run ended, in scikit-learn's terms where they apply.
fn lbfgs_outcome(it: &softmax_wgpu::lbfgs::Iteration, cfg: &TrainConfig) -> String {
    let Optimizer::Lbfgs(o) = cfg.optimizer else {
        return String::new();
    };
    let done = format!(
        "{} iterations, {} evaluations of the objective",
        it.iteration, it.evaluations
    );
    match it.stop {
        Some(Stop::Gradient) => format!(
            "L-BFGS converged in {done}: ‖∇J‖∞ = {:.2e} ≤ --tol {:.1e}",
            it.grad_inf, o.tol
        ),
        Some(Stop::Objective) => format!(
            "L-BFGS converged in {done}: the objective changed by {:.1e} (relative) in the last iteration, below \
             {:.1e}; ‖∇J‖∞ = {:.2e}",
            it.change, o.ftol, it.grad_inf
        ),
        Some(Stop::LineSearch) => format!(
            "L-BFGS stopped after {done}: no step lowered the objective any further (its f32 evaluation cannot \
             tell smaller changes apart); ‖∇J‖∞ = {:.2e}, above --tol {:.1e}",
            it.grad_inf, o.tol
        ),
        Some(Stop::MaxIter) | None => format!(
            "L-BFGS did not converge in {done}: ‖∇J‖∞ = {:.2e} > --tol {:.1e}; raise --max-iter, or scale the \
             features (--standardize)",
            it.grad_inf, o.tol
        ),
    }
}

/// The checked, standardised data as sources, and what the model records about them.
struct Prepared {
    train: Box<dyn RowSource>,
    held_out: Option<Box<dyn RowSource>>,
    classes: Vec<String>,
    data_name: String,
    standardizer: Option<Standardizer>,
    /// The memory budget the data exceeded, when they are streamed from their file.
    stream_budget: Option<u64>,
}

/// The training (and held-out) rows of this process: all of them, or its shard when it is one of several.
fn prepare(
    a: &TrainArgs,
    cfg: &TrainConfig,
    fixed: Option<&Standardizer>,
    reducer: &mut dyn Reducer,
) -> Result<Prepared> {
    if let Some(s) = load::streamed_training(a, cfg, fixed, reducer)? {
        return Ok(Prepared {
            data_name: s.name,
            train: s.train,
            held_out: s.held_out,
            classes: s.classes,
            standardizer: s.standardizer,
            stream_budget: Some(s.budget),
        });
    }
    let mut loaded = load::training_data(a, cfg)?;
    let (classes, data_name) = (loaded.train.classes.clone(), loaded.train.source.clone());
    let standardizer = match fixed {
        Some(s) => Some(s.clone()),
        None => cfg
            .standardize
            .then(|| Standardizer::fit(loaded.train.x.view())),
    };
    if let Some(s) = &standardizer {
        s.apply(&mut loaded.train.x);
        if let Some(h) = &mut loaded.held_out {
            s.apply(&mut h.x);
        }
    }
    let train_source = loaded.train.into_source()?;
    let train: Box<dyn RowSource> = match (loaded.train_weights, &a.sample_weight) {
        (Some(w), Some(path)) => Box::new(softmax_wgpu::data::Weighted::new(
            train_source,
            w.into(),
            path,
        )?),
        _ => Box::new(train_source),
    };
    // Every process loaded, split and standardised all the rows alike; each keeps its shard.
    let held_out = loaded
        .held_out
        .map(|h| h.into_source().map(|s| Box::new(s) as Box<dyn RowSource>))
        .transpose()?;
    Ok(Prepared {
        classes,
        data_name,
        train: load::shard(train, reducer)?,
        held_out: held_out.map(|h| load::shard(h, reducer)).transpose()?,
        standardizer,
        stream_budget: None,
    })
}

/// One epoch as a line, or as one JSON object (the report's own serde form).
fn print_epoch(r: &EpochReport, json: bool) -> softmax_wgpu::Result<()> {
    if json {
        let line = serde_json::to_string(r)
            .map_err(|e| Error::Internal(format!("epoch report as JSON: {e}")))?;
        outln!("{line}");
        return Ok(());
    }
    let held = match (r.val_loss, r.val_accuracy) {
        (Some(l), Some(a)) => format!("val_loss {l:.4}  val_acc {:6.2}%", 100.0 * a),
        _ => "val_loss    -    val_acc      -".to_string(),
    };
    let drift = r
        .drift
        .map_or(String::new(), |d| format!("  drift {d:.1e}"))
        + &r.reduce_seconds
            .map_or(String::new(), |t| format!("  reduce {t:.3}s"));
    if let Some(it) = r.lbfgs {
        outln!(
            "iter {:4}  objective {:.6}  |grad| {:.2e}  step {:.2e}  {held}  {:>10.0} samples/s  {:6.2}s{drift}  [{}]",
            r.epoch, r.train_loss, it.grad_inf, it.step, r.samples_per_sec, r.seconds, r.device
        );
        return Ok(());
    }
    outln!(
        "epoch {:3}  train_loss {:.4}  {held}  {:>10.0} samples/s  {:6.2}s{drift}  [{}]",
        r.epoch,
        r.train_loss,
        r.samples_per_sec,
        r.seconds,
        r.device
    );
    Ok(())
}

fn print_check_summary(s: &ShadowSummary) {
    if let Some(worst) = s.worst {
        eprintln!(
            "checked against the CPU f64 reference: {} comparisons over {} steps, largest drift {:.2e} after step {} \
             (the CPU's f32 path: {:.2e}), tolerance {:.1e}",
            s.checks, s.steps, worst.drift, worst.step, worst.cpu_f32_drift, s.options.tolerance
        );
    }
}

/// What the model file records about the run that made it.
fn settings(
    cfg: &TrainConfig,
    data: &str,
    device: &str,
    last: Option<&EpochReport>,
    check: Option<ShadowSummary>,
    zero_weights: usize,
) -> serde_json::Value {
    serde_json::json!({
        "zero_weights": zero_weights,
        "config": cfg,
        "data": data,
        "device": device,
        "final": last,
        "check": check,
    })
}
