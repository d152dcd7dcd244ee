//! `softmax-wgpu bench`: training epochs timed on the CPU path and on GPU adapters, on seeded synthetic data, with
//! peers (NumPy) timing the identical step on the identical data in the same run; a markdown table or one JSON
//! document.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;
use softmax_wgpu::bench::{ceilings, cpu_ceilings, run_epoch, time_epochs, Case, Ceilings, Timing};
use softmax_wgpu::cpu::{FastCpu, SparseCpu};
use softmax_wgpu::data::{self, write_npy_features, write_npy_labels};
use softmax_wgpu::error::bytes;
use softmax_wgpu::gpu::{self, AdapterSummary, GpuBackend, GpuContext, GpuOptions, KernelTime};
use softmax_wgpu::{Backend, Error, RowSource, Shape};

use super::args::{BackendArg, BenchArgs, BenchDevices};
use super::bench_job::{self, JobFiles, JobRow};
use super::common::{check_outputs, write_output};

/// The peers, by name, and their scripts, embedded so that an installed binary carries them.
const PEERS: [(&str, &str); 4] = [
    ("numpy", include_str!("../../benches/peers/numpy_step.py")),
    ("scipy", include_str!("../../benches/peers/scipy_step.py")),
    ("torch", include_str!("../../benches/peers/torch_step.py")),
    ("jax", include_str!("../../benches/peers/jax_step.py")),
];

/// The peer that times the default job (`bench_job`), not a step.
const SKLEARN: &str = "sklearn";

fn script_name(peer: &str) -> String {
    format!("{peer}_step.py")
}

/// One row of the report.
#[derive(Debug, Serialize)]
struct Row {
    device: String,
    case: Case,
    /// Reads of X per step: the CPU path reads each block once; the GPU reads the rows in the forward and the
    /// backward kernels, and first reads them once more to gather a copy where it cannot read them in place.
    x_reads_per_step: u32,
    /// Kernel dispatches per step, where the device has them.
    dispatches_per_step: Option<usize>,
    /// The shape of a step's work on a GPU, from the plan the recording reads: per dispatch the kernel, its
    /// invocations, the longest serial loop of one invocation, whether it reads X; and the bytes of X a step reads
    /// from device memory.
    work: Option<Vec<softmax_wgpu::gpu::DispatchShape>>,
    x_bytes_per_step: Option<u64>,
    timing: Option<Timing>,
    /// Why there is no timing (the device refused the case).
    refused: Option<String>,
    /// GPU time per kernel over one more epoch, from timestamp queries written between dispatches, where the
    /// adapter has them.
    kernels: Option<Vec<KernelTime>>,
    /// GFLOP/s as a fraction of the adapter's FMA ceiling, and X GB/s of its streaming-read ceiling.
    of_fma_ceiling: Option<f64>,
    of_read_ceiling: Option<f64>,
    /// The workgroup width of each tuned kernel after the run (autotuned unless --no-autotune).
    tuning: Vec<(String, u32)>,
    peers: Vec<PeerResult>,
}

#[derive(Debug, Clone, Serialize)]
struct PeerResult {
    peer: String,
    timing: Option<Timing>,
    skipped: Option<String>,
    /// Our median epoch ÷ the peer's (below 1: we are faster).
    ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    adapters: &'a [AdapterSummary],
    /// Per adapter, in the same order.
    ceilings: &'a [Option<Ceilings>],
    /// The CPU path's, when it was timed.
    cpu_ceilings: Option<Ceilings>,
    cpu_threads: usize,
    epochs: usize,
    rows: &'a [Row],
    /// `--peers sklearn`: the default job against scikit-learn's, per shape and device.
    default_job: &'a [JobRow],
}

/// Runs the command.
pub fn run(a: BenchArgs) -> Result<ExitCode> {
    if !(1..=100).contains(&a.epochs) {
        return Err(Error::param("--epochs", "in 1..=100", a.epochs).into());
    }
    check_outputs(
        &[("--out", a.out.as_deref()), ("--plot", a.plot.as_deref())],
        &[],
        &[],
    )?;
    for p in &a.peers {
        if p != SKLEARN && !PEERS.iter().any(|(name, _)| name == p) {
            return Err(
                Error::param("--peers", "a list of: numpy, scipy, torch, jax, sklearn", p).into(),
            );
        }
    }
    let plan = plan(&a)?;
    let contexts = open_adapters(&a)?;
    let adapters: Vec<AdapterSummary> = contexts
        .iter()
        .enumerate()
        .map(|(i, c)| AdapterSummary::of(i, &c.adapter))
        .collect();
    let with_cpu = a.device != BenchDevices::Gpu && a.adapter.is_none();
    let limits: Vec<Option<Ceilings>> = contexts
        .iter()
        .map(|c| {
            eprintln!("measuring the ceilings of {} …", c.describe());
            ceilings(c)
                .map_err(|e| eprintln!("ceilings of {}: {e}", c.describe()))
                .ok()
        })
        .collect();
    let cpu = with_cpu.then(|| {
        eprintln!("measuring the ceilings of the CPU …");
        cpu_ceilings()
    });
    let mut rows = Vec::new();
    let mut jobs = Vec::new();
    for (shape, batches) in &plan {
        let (timed, job) = bench_shape(&a, *shape, batches, with_cpu, &contexts)?;
        rows.extend(timed);
        jobs.extend(job);
    }
    for r in &mut rows {
        let at = contexts.iter().position(|c| c.describe() == r.device);
        // A row that is no adapter's is the CPU path's, dense or sparse.
        let limit = match at {
            Some(i) => limits[i],
            None => cpu,
        };
        if let (Some(c), Some(t)) = (limit, &r.timing) {
            r.of_fma_ceiling = Some(t.gflops / c.fma_gflops);
            r.of_read_ceiling = Some(t.x_gb_per_sec / c.read_gb_per_sec);
        }
    }
    let mut table = markdown(&rows, a.epochs);
    table.push_str(&bench_job::markdown(&jobs));
    if let Some(c) = &cpu {
        table.push_str(&format!(
            "\nCeilings of the CPU path ({} threads): streaming read (a parallel sum of 256 MiB) {:.1} GB/s, FMA (faer's product of two \
             1,024 × 1,024 matrices) {:.1} GFLOP/s.\n",
            rayon::current_num_threads(),
            c.read_gb_per_sec,
            c.fma_gflops
        ));
    }
    for (c, l) in contexts.iter().zip(&limits) {
        if let Some(l) = l {
            table.push_str(&format!(
                "\nCeilings of {} (two small kernels): streaming read {:.1} GB/s, FMA {:.1} GFLOP/s.\n",
                c.describe(),
                l.read_gb_per_sec,
                l.fma_gflops
            ));
        }
    }
    if a.json {
        let report = Report {
            adapters: &adapters,
            ceilings: &limits,
            cpu_ceilings: cpu,
            cpu_threads: rayon::current_num_threads(),
            epochs: a.epochs,
            rows: &rows,
            default_job: &jobs,
        };
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{table}");
    }
    if let Some(out) = &a.out {
        write_output(Some(out), &table)?;
    }
    if let Some(plot) = &a.plot {
        write_output(Some(plot), &svg(&rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Escapes text for SVG.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The median epoch times as horizontal bars on a log scale, grouped by case, each device and peer a bar with its
/// time written beside it. Plain SVG with generic font families: it renders anywhere, no fonts are embedded.
///
/// Long on purpose: one drawing, axis by axis and series by series.
fn svg(rows: &[Row]) -> String {
    let mut bars: Vec<(String, String, f64)> = Vec::new(); // (case, label, ms)
    for r in rows {
        let case = format!(
            "{} × {} × {}, batch {}",
            r.case.n,
            r.case.d,
            r.case.k,
            if r.case.batch >= r.case.n {
                "full".to_string()
            } else {
                r.case.batch.to_string()
            }
        );
        if let Some(t) = &r.timing {
            bars.push((case.clone(), r.device.clone(), t.median * 1e3));
        }
        for p in &r.peers {
            if let Some(t) = &p.timing {
                let label = p.peer.clone();
                if !bars.iter().any(|(c, l, _)| *c == case && *l == label) {
                    bars.push((case.clone(), label, t.median * 1e3));
                }
            }
        }
    }
    // One group per case, in the order cases first appear, devices and peers within it in row order.
    let mut cases: Vec<String> = Vec::new();
    for (c, _, _) in &bars {
        if !cases.contains(c) {
            cases.push(c.clone());
        }
    }
    bars.sort_by_key(|(c, _, _)| cases.iter().position(|x| x == c));
    let (bar_h, gap, left, width) = (18.0, 26.0, 330.0, 900.0);
    let plot_w = width - left - 120.0;
    let (lo, hi) = bars.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), b| {
        (lo.min(b.2), hi.max(b.2))
    });
    let (lo, hi) = (
        lo.max(1e-3).log10().floor(),
        hi.max(1e-3)
            .log10()
            .ceil()
            .max(lo.max(1e-3).log10().floor() + 1.0),
    );
    let x_of = |ms: f64| left + plot_w * (ms.max(1e-3).log10() - lo) / (hi - lo);
    let mut y = 40.0;
    let mut body = String::new();
    let mut last_case = String::new();
    for (case, label, ms) in &bars {
        if *case != last_case {
            y += gap - bar_h;
            body.push_str(&format!(
                "<text x=\"10\" y=\"{:.0}\" font-weight=\"bold\">{}</text>\n",
                y + 12.0,
                xml(case)
            ));
            y += bar_h;
            last_case = case.clone();
        }
        let colour = if label.starts_with("cpu") {
            "#4c78a8"
        } else if label.contains('(') {
            "#f58518"
        } else {
            "#54a24b"
        };
        body.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\n<rect x=\"{left}\" y=\"{:.0}\" width=\"{:.1}\" height=\"{:.0}\" fill=\"{colour}\"/>\n<text x=\"{:.1}\" y=\"{:.0}\">{:.1} ms</text>\n",
            left - 6.0,
            y + 13.0,
            xml(label),
            y,
            (x_of(*ms) - left).max(1.0),
            bar_h - 4.0,
            x_of(*ms) + 4.0,
            y + 13.0,
            ms
        ));
        y += bar_h;
    }
    let mut axis = String::new();
    let mut e = lo;
    while e <= hi + 1e-9 {
        let x = x_of(10f64.powf(e));
        axis.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"30\" x2=\"{x:.1}\" y2=\"{:.0}\" stroke=\"#ddd\"/>\n<text x=\"{x:.1}\" y=\"24\" text-anchor=\"middle\">{} ms</text>\n",
            y + 4.0,
            10f64.powf(e)
        ));
        e += 1.0;
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"14\" font-size=\"14\">Median epoch time (log scale), softmax-wgpu bench</text>\n{axis}{body}</svg>\n",
        y + 20.0
    )
}

/// A shape N, D, K and the batch sizes to time on it (0: the whole data set).
type Planned = ((usize, usize, usize), Vec<usize>);

/// The shapes and, for each, the batch sizes to time.
fn plan(a: &BenchArgs) -> Result<Vec<Planned>> {
    let full = 0;
    if a.shapes.is_empty() {
        if a.quick {
            return Ok(vec![((20_000, 784, 10), batches(a, &[256, full]))]);
        }
        return Ok(vec![
            ((60_000, 784, 10), batches(a, &[256, 4096, full])),
            ((1_000_000, 256, 32), batches(a, &[4096])),
        ]);
    }
    a.shapes
        .iter()
        .map(|s| Ok((parse_shape(s)?, batches(a, &[256, full]))))
        .collect()
}

fn batches(a: &BenchArgs, default: &[usize]) -> Vec<usize> {
    if a.batches.is_empty() {
        default.to_vec()
    } else {
        a.batches.clone()
    }
}

fn parse_shape(spec: &str) -> Result<(usize, usize, usize)> {
    let nums: Option<Vec<usize>> = spec.split(',').map(|p| p.trim().parse().ok()).collect();
    match nums.as_deref() {
        Some(&[n, d, k]) if n > 0 && d > 0 && k >= 2 => Ok((n, d, k)),
        _ => Err(Error::param(
            "--shape",
            "N,D,K with N, D ≥ 1 and K ≥ 2",
            format!("{spec:?}"),
        )
        .into()),
    }
}

fn open_adapters(a: &BenchArgs) -> Result<Vec<GpuContext>> {
    let backends = BackendArg::backends(a.backend);
    if a.device == BenchDevices::Cpu {
        return Ok(Vec::new());
    }
    if a.adapter.is_some() || (a.device == BenchDevices::Gpu && !a.all_adapters) {
        return Ok(vec![GpuContext::select(backends, a.adapter.as_deref())?]);
    }
    let mut out = Vec::new();
    for adapter in gpu::adapters(backends) {
        match GpuContext::new(adapter) {
            Ok(c) => out.push(c),
            Err(e) => eprintln!("skipped an adapter: {e}"),
        }
    }
    Ok(out)
}

/// Every device and batch on one shape, and the peers on the same data; with `--peers sklearn`, the default job on
/// every device and scikit-learn's.
///
/// Long on purpose: the timing of one shape on every device, in the order the table prints it.
fn bench_shape(
    a: &BenchArgs,
    (n, d, k): (usize, usize, usize),
    batches: &[usize],
    with_cpu: bool,
    contexts: &[GpuContext],
) -> Result<(Vec<Row>, Vec<JobRow>)> {
    let dir = peer_dir()?;
    let peer_dir = dir.path();
    let with_sklearn = a.peers.iter().any(|p| p == SKLEARN);
    let step_peers = a.peers.iter().any(|p| p != SKLEARN);
    let mut job_files = None;
    let (mut source, nnz): (Box<dyn RowSource>, Option<u64>) = match a.sparse {
        None => {
            eprintln!(
                "{n} × {d} × {k}: X is {} in memory{}",
                bytes(n as u64 * d as u64 * 4),
                if !step_peers {
                    ""
                } else {
                    ", written once more as NPY for the peers"
                }
            );
            let dataset = data::synthetic(n, d, k, a.seed)?;
            if with_sklearn {
                job_files = Some(JobFiles::dense(peer_dir, dataset.x.view(), &dataset.y)?);
            }
            if step_peers {
                write_npy_features(&peer_dir.join("x.npy"), dataset.x.view())?;
                write_npy_labels(&peer_dir.join("y.npy"), &dataset.y)?;
            }
            (Box::new(dataset.into_source()?), None)
        }
        Some(per_row) => {
            let mut gen = data::SparseSynthetic::new(n as u64, d, k, per_row, a.seed)?;
            let chunk = gen
                .next_sparse(n)
                .ok_or_else(|| Error::Internal("no synthetic rows".into()))?;
            let nnz = chunk.indices.len() as u64;
            if with_sklearn {
                job_files = Some(JobFiles::sparse(peer_dir, &chunk)?);
            }
            eprintln!(
                "{n} × {d} × {k}, sparse: {nnz} non-zeros ({} as CSR){}",
                bytes(nnz * 8 + n as u64 * 12),
                if !step_peers {
                    ""
                } else {
                    ", written once more as NPY for the peers"
                }
            );
            if step_peers {
                let offsets: Vec<u32> = chunk.offsets.iter().map(|&o| o as u32).collect();
                write_npy_labels(&peer_dir.join("xp.npy"), &offsets)?;
                write_npy_labels(&peer_dir.join("xi.npy"), &chunk.indices)?;
                let values =
                    ndarray::ArrayView2::from_shape((chunk.values.len(), 1), &chunk.values[..])
                        .map_err(|e| Error::Internal(e.to_string()))?;
                write_npy_features(&peer_dir.join("xv.npy"), values)?;
                write_npy_labels(&peer_dir.join("xd.npy"), &[d as u32])?;
                write_npy_labels(&peer_dir.join("y.npy"), &chunk.y)?;
            }
            let rows = data::SparseRows::from_chunk("synthetic", &chunk, k)?;
            (
                Box::new(data::SparseInMemory::new(std::sync::Arc::new(rows))),
                Some(nnz),
            )
        }
    };
    if step_peers {
        for (name, script) in PEERS {
            let path = peer_dir.join(script_name(name));
            std::fs::write(&path, script).map_err(|e| Error::io(&path, e))?;
        }
    }
    let cases: Vec<Case> = batches
        .iter()
        .map(|&b| Case {
            n,
            d,
            k,
            batch: if b == 0 { n } else { b.min(n) },
            nnz,
        })
        .collect();
    let peers: Vec<Vec<PeerResult>> = cases.iter().map(|c| run_peers(a, c, peer_dir)).collect();
    let mut rows = Vec::new();
    let shape = Shape { d, k };
    if with_cpu {
        let mut cpu: Box<dyn Backend> = match nnz {
            None => Box::new(FastCpu::new(shape)?),
            Some(_) => Box::new(SparseCpu::new(shape)?),
        };
        rows.extend(bench_device(cpu.as_mut(), source.as_mut(), &cases, &peers, a.epochs, 1)?.0);
    }
    for ctx in contexts {
        let options = GpuOptions {
            autotune: !a.no_autotune,
            gather: a.gather,
            one_pass: a.one_pass.option(),
            gpu_shape: a.gpu_shape.option(),
            lanes: a.lanes,
            sparse: nnz.is_some(),
            ..GpuOptions::default()
        };
        let made = GpuBackend::new(ctx, shape, &options);
        match made {
            Ok(mut g) => {
                let (mut timed, set) =
                    bench_device(&mut g, source.as_mut(), &cases, &peers, a.epochs, 3)?;
                let profiling = g.enable_profiling();
                for row in timed.iter_mut().filter(|r| r.timing.is_some()) {
                    // Another epoch of the row's case: timed per kernel where the adapter can, and it puts the
                    // case's tuned widths back in place to be reported.
                    run_epoch(&mut g, set, row.case.batch)?;
                    if profiling {
                        row.kernels = Some(g.take_profile()?);
                    }
                    row.tuning = g.tuning_for(row.case.batch).unwrap_or_else(|| g.tuning());
                }
                // The plan's figures describe the dense kernels; sparse steps have none of their own yet.
                for row in timed.iter_mut().filter(|_| nnz.is_none()) {
                    row.x_reads_per_step = g.row_passes_per_step(set) as u32;
                    let rows = row.case.batch.min(row.case.n);
                    let work = g.step_shape(set, rows);
                    // A kernel read through windows is one dispatch per window.
                    let windows: usize = work.iter().map(|w| w.windows as usize - 1).sum();
                    row.dispatches_per_step = Some(g.dispatches_per_step(set) + windows);
                    // The gathers of all chunks read the batch once between them.
                    let passes = u64::from(row.x_reads_per_step);
                    row.x_bytes_per_step = Some(passes * rows as u64 * row.case.d as u64 * 4);
                    row.work = Some(work);
                }
                rows.extend(timed);
            }
            Err(e) => rows.extend(cases.iter().zip(&peers).map(|(c, p)| Row {
                device: ctx.describe(),
                case: *c,
                x_reads_per_step: 3,
                dispatches_per_step: None,
                work: None,
                x_bytes_per_step: None,
                timing: None,
                refused: Some(e.to_string()),
                kernels: None,
                of_fma_ceiling: None,
                of_read_ceiling: None,
                tuning: Vec::new(),
                peers: p.clone(),
            })),
        }
    }
    let mut jobs = Vec::new();
    if let Some(files) = &job_files {
        let sklearn = bench_job::run_sklearn(peer_dir, files);
        let data = (n, d, k, nnz);
        if with_cpu {
            eprintln!("timing the default job on the CPU path …");
            let ours = bench_job::run_ours(files, &["--device".into(), "cpu".into()]);
            jobs.push(bench_job::row("cpu".into(), data, ours, &sklearn));
        }
        for ctx in contexts {
            eprintln!("timing the default job on {} …", ctx.describe());
            let device = [
                "--device".into(),
                "gpu".into(),
                "--backend".into(),
                format!("{:?}", ctx.info.backend).to_lowercase(),
                "--adapter".into(),
                ctx.info.name.clone(),
            ];
            let ours = bench_job::run_ours(files, &device);
            jobs.push(bench_job::row(ctx.describe(), data, ours, &sklearn));
        }
    }
    // The peers' directory goes with `dir`.
    drop(dir);
    Ok((rows, jobs))
}

fn bench_device(
    backend: &mut dyn Backend,
    source: &mut dyn RowSource,
    cases: &[Case],
    peers: &[Vec<PeerResult>],
    epochs: usize,
    x_reads_per_step: u32,
) -> Result<(Vec<Row>, softmax_wgpu::train::Held)> {
    let device = backend.device();
    eprintln!("timing {device} …");
    source.rewind()?;
    let set = backend.hold(source)?;
    let mut rows = Vec::new();
    for (case, peer) in cases.iter().zip(peers) {
        let (timing, refused) = match time_epochs(backend, set, case.batch, epochs) {
            Ok(s) => (Some(Timing::of(case, s)?), None),
            Err(e @ Error::Limits { .. }) => (None, Some(e.to_string())),
            Err(e) => return Err(e.into()),
        };
        let peers = peer
            .iter()
            .map(|p| PeerResult {
                ratio: match (&timing, &p.timing) {
                    (Some(t), Some(pt)) => Some(t.median / pt.median),
                    _ => None,
                },
                ..p.clone()
            })
            .collect();
        rows.push(Row {
            device: device.clone(),
            case: *case,
            x_reads_per_step,
            dispatches_per_step: None,
            work: None,
            x_bytes_per_step: None,
            timing,
            refused,
            kernels: None,
            of_fma_ceiling: None,
            of_read_ceiling: None,
            tuning: Vec::new(),
            peers,
        });
    }
    Ok((rows, set))
}

/// Times every requested peer on one case; a missing interpreter or package is a skip with its reason.
fn run_peers(a: &BenchArgs, case: &Case, dir: &Path) -> Vec<PeerResult> {
    a.peers
        .iter()
        .filter(|p| *p != SKLEARN)
        .map(|peer| {
            let skipped = |why: String| PeerResult {
                peer: peer.clone(),
                timing: None,
                skipped: Some(why),
                ratio: None,
            };
            // The dense peers time dense cases, SciPy's CSR step sparse ones.
            match (peer.as_str(), case.nnz) {
                ("scipy", None) => {
                    return skipped("times sparse cases (bench --sparse NNZ)".into())
                }
                (p, Some(_)) if p != "scipy" => {
                    return skipped("times dense cases; --sparse cases have the scipy peer".into())
                }
                _ => {}
            }
            eprintln!("timing {peer} (batch {}) …", case.batch);
            let out = std::process::Command::new("python3")
                .arg(dir.join(script_name(peer)))
                .arg(dir.join("x.npy"))
                .arg(dir.join("y.npy"))
                .arg(case.batch.to_string())
                .arg((a.epochs + 1).to_string())
                .output();
            let out = match out {
                Ok(o) if o.status.success() => o,
                Ok(o) => {
                    let err = String::from_utf8_lossy(&o.stderr);
                    let last = err.lines().last().unwrap_or("failed").to_string();
                    return skipped(last);
                }
                Err(e) => return skipped(format!("python3: {e}")),
            };
            let parsed: Option<Vec<f64>> = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| {
                    v["epoch_seconds"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|s| s.as_f64()).collect())
                });
            match parsed {
                // The first epoch is the peer's warm-up too.
                Some(s) if s.len() > 1 => match Timing::of(case, s[1..].to_vec()) {
                    Ok(t) => PeerResult {
                        peer: peer.clone(),
                        timing: Some(t),
                        skipped: None,
                        ratio: None,
                    },
                    Err(e) => skipped(e.to_string()),
                },
                _ => skipped("the peer printed no timings".into()),
            }
        })
        .collect()
}

/// A private directory for the peers' scripts and data: a name nobody can predict, created exclusively, readable by
/// its owner only, and removed with everything in it when dropped. (A predictable name in the shared temporary
/// directory let another local user plant scripts that `bench --peers` then ran.)
fn peer_dir() -> Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("softmax-wgpu-bench-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    builder
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e).into())
}

/// The report as a markdown table, one row per device × shape × batch.
///
/// Long on purpose: one table and its notes, row by row.
fn markdown(rows: &[Row], epochs: usize) -> String {
    let mut peers: Vec<&str> = Vec::new();
    for r in rows {
        for p in &r.peers {
            if !peers.contains(&p.peer.as_str()) {
                peers.push(&p.peer);
            }
        }
    }
    let mut s = format!(
        "\n| device | N × D × K | batch | steps | epoch ms (median / best of {epochs}) | samples/s | GFLOP/s (of FMA ceiling) | X GB/s (of read ceiling) | X reads / step | dispatches / step |"
    );
    for p in &peers {
        s.push_str(&format!(" {p} ms | ours ÷ {p} |"));
    }
    s.push('\n');
    s.push_str(&"|---".repeat(10 + 2 * peers.len()));
    s.push_str("|\n");
    for r in rows {
        let c = &r.case;
        let batch = if c.batch >= c.n {
            format!("{} (full)", c.batch)
        } else {
            c.batch.to_string()
        };
        // " (12.3 %)": a figure's fraction of the adapter's ceiling, where one was measured.
        let of = |f: Option<f64>| f.map_or(String::new(), |f| format!(" ({:.1} %)", 100.0 * f));
        let figures = match (&r.timing, &r.refused) {
            (Some(t), _) => format!(
                "{:.1} / {:.1} | {:.0} | {:.2}{} | {:.2}{}",
                t.median * 1e3,
                t.best * 1e3,
                t.samples_per_sec,
                t.gflops,
                of(r.of_fma_ceiling),
                t.x_gb_per_sec,
                of(r.of_read_ceiling),
            ),
            (None, Some(why)) => format!("refused: {why} | | | "),
            (None, None) => " | | | ".into(),
        };
        s.push_str(&format!(
            "| {} | {} × {} × {} | {batch} | {} | {figures} | {} | {} |",
            r.device,
            c.n,
            c.d,
            c.k,
            c.steps(),
            r.x_reads_per_step,
            r.dispatches_per_step.map_or("–".into(), |d| d.to_string())
        ));
        for name in &peers {
            match r.peers.iter().find(|p| p.peer == *name) {
                Some(p) => match (&p.timing, &p.skipped) {
                    (Some(t), _) => s.push_str(&format!(
                        " {:.1} | {} |",
                        t.median * 1e3,
                        p.ratio.map_or("–".into(), |x| format!("{x:.2}"))
                    )),
                    (None, Some(why)) => s.push_str(&format!(" skipped: {why} | – |")),
                    _ => s.push_str(" – | – |"),
                },
                None => s.push_str(" – | – |"),
            }
        }
        s.push('\n');
    }
    let shaped: Vec<&Row> = rows.iter().filter(|r| r.work.is_some()).collect();
    if !shaped.is_empty() {
        s.push_str(
            "\nShape of a step's work (from the plan the recording reads): per dispatch, invocations × the longest \
             loop one invocation runs in sequence; \"X\" marks a read of the rows:\n\n",
        );
        for r in shaped {
            let parts: Vec<String> = r
                .work
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|w| {
                    format!(
                        "{}{} {} × {}{}{}",
                        w.kernel,
                        if w.windows > 1 {
                            format!(" ({} windows)", w.windows)
                        } else {
                            String::new()
                        },
                        w.invocations,
                        w.serial,
                        if w.reads_rows { " X" } else { "" },
                        w.team
                            .as_deref()
                            .map(|t| format!(" ({t})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            s.push_str(&format!(
                "- {}, {} × {} × {}, batch {}: {} — X read per step {}\n",
                r.device,
                r.case.n,
                r.case.d,
                r.case.k,
                r.case.batch,
                parts.join(", "),
                r.x_bytes_per_step
                    .map_or("–".into(), softmax_wgpu::error::bytes)
            ));
        }
    }
    let profiled: Vec<&Row> = rows.iter().filter(|r| r.kernels.is_some()).collect();
    if !profiled.is_empty() {
        s.push_str(
            "\nGPU time per kernel over one epoch (timestamp queries between dispatches):\n\n",
        );
        for r in profiled {
            let kernels = r.kernels.as_deref().unwrap_or_default();
            let total: f64 = kernels.iter().map(|k| k.seconds).sum();
            let parts: Vec<String> = kernels
                .iter()
                .map(|k| {
                    format!(
                        "{} {:.1} ms ({:.0} %)",
                        k.kernel,
                        k.seconds * 1e3,
                        100.0 * k.seconds / total.max(1e-12)
                    )
                })
                .collect();
            let widths: Vec<String> = r.tuning.iter().map(|(k, w)| format!("{k} {w}")).collect();
            s.push_str(&format!(
                "- {}, {} × {} × {}, batch {}: {:.1} ms in kernels — {} (workgroup widths: {})\n",
                r.device,
                r.case.n,
                r.case.d,
                r.case.k,
                r.case.batch,
                total * 1e3,
                parts.join(", "),
                widths.join(", ")
            ));
        }
    }
    s
}
