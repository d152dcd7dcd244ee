//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use softmax_wgpu::config::{Convergence, EarlyStopping, Schedule, ScheduleKind};
use softmax_wgpu::lbfgs::LbfgsOptions;
use softmax_wgpu::train::Optimizer;
use softmax_wgpu::{Error, TrainConfig};

/// Softmax (multinomial logistic) regression on any GPU through wgpu, checked against a CPU reference.
#[derive(Debug, Parser)]
#[command(name = "softmax-wgpu", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (with no data arguments: the embedded UCI digits).
    Train(Box<TrainArgs>),
    /// Predict classes (and probabilities) with a saved model.
    Predict(PredictArgs),
    /// List every adapter wgpu finds, with the limits that matter here.
    Devices(DevicesArgs),
    /// Check every kernel, the gradient, a training trajectory and determinism: GPU f32 against CPU f64.
    Validate(ValidateArgs),
    /// Time training epochs on the CPU path and on GPU adapters, with NumPy as a peer in the same run.
    Bench(BenchArgs),
    /// Score a saved model on labelled rows: accuracy, log-loss, top-k accuracy, per-class precision / recall / F1
    /// and their averages, the confusion matrix.
    Eval(EvalArgs),
    /// Write a seeded synthetic data set of any size: dense NPY features and labels, or sparse LIBSVM text.
    Gen(GenArgs),
}

/// What `gen` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenFormat {
    /// Dense float32 features (--out) and uint32 labels (--labels-out), Gaussian classes.
    Npy,
    /// Sparse text with --density non-zeros, class-specific features.
    Libsvm,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Rows, features and classes.
    #[arg(long, value_name = "N,D,K")]
    pub shape: String,
    /// The file to write (features for NPY).
    #[arg(long)]
    pub out: PathBuf,
    /// The labels file (NPY only).
    #[arg(long)]
    pub labels_out: Option<PathBuf>,
    /// What to write.
    #[arg(long, value_enum, default_value_t = GenFormat::Npy)]
    pub format: GenFormat,
    /// Fraction of non-zero features per row (LIBSVM only), in (0, 1].
    #[arg(long, default_value_t = 0.001)]
    pub density: f64,
    /// Seed: the same arguments write the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Which devices `bench` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchDevices {
    /// The CPU path and every adapter.
    All,
    /// The CPU path only.
    Cpu,
    /// GPU adapters only: --adapter, or with --all-adapters every one, else the best.
    Gpu,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which devices to time.
    #[arg(long, value_enum, default_value_t = BenchDevices::All)]
    pub device: BenchDevices,
    /// Only adapters of this backend.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// One adapter by index or name substring (implies --device gpu unless --device is given).
    #[arg(long, conflicts_with = "all_adapters")]
    pub adapter: Option<String>,
    /// Every adapter (the default with --device all).
    #[arg(long)]
    pub all_adapters: bool,
    /// A problem N,D,K (repeatable). Default: 60000,784,10 and 1000000,256,32.
    #[arg(long = "shape", value_name = "N,D,K")]
    pub shapes: Vec<String>,
    /// A batch size (repeatable; 0 means the whole data set). Default: 256, 4096 and full batch for 60000,784,10,
    /// 4096 for 1000000,256,32; 256 and full batch for shapes given with --shape.
    #[arg(long = "batch", value_name = "B")]
    pub batches: Vec<usize>,
    /// Timed epochs per case, after one warm-up epoch (1 to 100).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// A small set: 20000,784,10 at batch 256 and full batch.
    #[arg(long)]
    pub quick: bool,
    /// Peers timed in the same run on the identical data: numpy, torch, jax (dense steps), scipy (sparse steps), and
    /// sklearn: the default job (`train` with its defaults on 80 % of the rows, the rest held out) on every device
    /// against StandardScaler + LogisticRegression() (scripts in benches/peers/; a missing package is a skipped cell
    /// with the reason).
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// One JSON document with every figure instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the markdown table to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also draw the median epoch times as an SVG bar chart (log scale, one group per case, peers included).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Do not time the GPU kernels' workgroup widths on first use (the width derived from the adapter is used).
    #[arg(long)]
    pub no_autotune: bool,
    /// Gather each batch's rows into a copy before the kernels read them, as data of more than 4 chunks always is
    /// (and, in a CPU adapter's shape, of more than 32 classes), instead of reading them in place: to compare the
    /// paths (bitwise equal to the two-kernel held path; the one-pass path and the split gradient add the same terms
    /// in another order).
    #[arg(long)]
    pub gather: bool,
    /// How held rows are trained on (K ≤ 32): `on`, one pass of the fused kernel (forward, residual, metrics and
    /// gradient partials of row tiles, then their reduction); `off`, the two-kernel path; `auto` (default), one pass
    /// on GPUs and two kernels on software adapters, where the one-pass kernel's barriers are slow.
    #[arg(long, value_enum, default_value_t = OnePass::Auto)]
    pub one_pass: OnePass,
    /// The kernels' shape: `on`, as for a GPU (the one-pass kernel with a team of lanes per row; past 32
    /// classes the rows read in place, no gather, and the gradient split over them; one quad of rows or features to
    /// an invocation of the tiled products); `off`, as for a CPU adapter (two quads);
    /// `auto` (default), by adapter type. `on` shows on a software adapter the shape of the work a card would run.
    #[arg(long, value_enum, default_value_t = OnePass::Auto)]
    pub gpu_shape: OnePass,
    /// Lanes a row of the one-pass kernel in the GPU shape, for every batch (1, 2, 4, 8, 16 or 32; 16 and 32 in
    /// tiles of 32 and 16 rows; default: the adapter's widest — 32 where its subgroups hold 32 lanes in order, else
    /// 8 where its workgroups hold 512 invocations — narrowed to 16 and 8 for batches of more than 16,384 and
    /// 32,768 rows): to compare the widths on a card. Each adds the logits in its own order.
    #[arg(long, value_name = "N", value_parser = parse_lanes)]
    pub lanes: Option<u32>,
    /// Time sparse data instead: each shape's rows get about this many non-zeros (CSR, LIBSVM-shaped as `gen --format
    /// libsvm` writes them), trained by the sparse CPU trainer and the adapters' sparse kernels; the peer `scipy`
    /// runs the same step on a SciPy CSR matrix.
    #[arg(long, value_name = "NNZ")]
    pub sparse: Option<usize>,
}

/// A graphics API wgpu can use, parsed once for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    #[value(alias = "vk")]
    Vulkan,
    #[value(alias = "mtl")]
    Metal,
    #[value(alias = "d3d12")]
    Dx12,
    #[value(alias = "opengl", alias = "gles")]
    Gl,
    All,
}

impl BackendArg {
    /// The wgpu backends of an optional choice (all when none).
    pub fn backends(choice: Option<Self>) -> wgpu::Backends {
        match choice {
            Some(BackendArg::Vulkan) => wgpu::Backends::VULKAN,
            Some(BackendArg::Metal) => wgpu::Backends::METAL,
            Some(BackendArg::Dx12) => wgpu::Backends::DX12,
            Some(BackendArg::Gl) => wgpu::Backends::GL,
            Some(BackendArg::All) | None => wgpu::Backends::all(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Only adapters of this backend.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// One adapter by index or name substring (default: the best).
    #[arg(long, conflicts_with = "all_adapters")]
    pub adapter: Option<String>,
    /// Validate every adapter and print a cross-adapter summary.
    #[arg(long)]
    pub all_adapters: bool,
    /// One JSON document with every figure.
    #[arg(long)]
    pub json: bool,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Training steps in the trajectory check (at most 100,000).
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// The best GPU adapter; the CPU when there is none.
    Auto,
    /// A GPU adapter, or an error.
    Gpu,
    /// The CPU reference path.
    Cpu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    F32,
    F64,
}

#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// Where to train.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    pub device: DeviceKind,
    /// Restrict GPU adapters to one backend.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// GPU adapter by index (see `devices`) or by a substring of its name.
    #[arg(long)]
    pub adapter: Option<String>,
    /// Precision of the CPU path.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
}

/// On, off, or chosen by adapter (auto): whether held rows are trained on by one pass of the fused kernel
/// (`--one-pass`), or the kernels take their GPU shape (`--gpu-shape`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnePass {
    /// On GPUs, not on software adapters.
    Auto,
    /// Wherever the adapter runs the kernel.
    On,
    /// Never.
    Off,
}

impl OnePass {
    /// As [`softmax_wgpu::gpu::GpuOptions::one_pass`] takes it.
    pub fn option(self) -> Option<bool> {
        match self {
            OnePass::Auto => None,
            OnePass::On => Some(true),
            OnePass::Off => Some(false),
        }
    }
}

/// The update rules (see `softmax_wgpu::train::Optimizer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// Plain minibatch gradient descent.
    Sgd,
    /// Heavy-ball momentum (--momentum).
    Momentum,
    /// Nesterov momentum (--momentum).
    Nesterov,
    /// Adam (--beta1, --beta2, --eps).
    Adam,
    /// Adam with decoupled weight decay (--weight-decay).
    Adamw,
    /// Full-batch L-BFGS to convergence (--tol, --max-iter, --lbfgs-history); L2 only.
    Lbfgs,
}

/// The learning-rate schedules (see `softmax_wgpu::schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// --lr at every step.
    Constant,
    /// Multiplied by --lr-gamma every --lr-decay-steps steps.
    Step,
    /// The same decay, continuous.
    Exp,
    /// From --lr down to --lr-min over the run, along a half cosine.
    Cosine,
    /// --lr / (1 + s)^--power-t.
    Invscaling,
}

/// The data formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// From the file's first bytes and its extension.
    Auto,
    Csv,
    Npy,
    Libsvm,
    Idx,
}

/// How data files are read.
#[derive(Debug, Clone, Args)]
pub struct FormatArgs {
    /// The format of the data files.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// LIBSVM indices start at 0 (default: at 1).
    #[arg(long)]
    pub zero_based: bool,
    /// LIBSVM feature count (default: the largest index in the training file).
    #[arg(long, value_name = "D")]
    pub features: Option<usize>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Training data: CSV, LIBSVM, or NPY / IDX features (with --labels). The format is detected; see --format.
    #[arg(long, conflicts_with = "synthetic")]
    pub data: Option<PathBuf>,
    /// Class indices for NPY or IDX --data (an NPY or IDX file).
    #[arg(long, requires = "data")]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
    /// The label column of CSV files (0-based; negative counts from the end).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub label_column: isize,
    /// Number of classes for NPY labels (default: largest index + 1; at most 65,536).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Generate N rows of D features in K Gaussian classes instead of reading data.
    #[arg(long, value_name = "N,D,K")]
    pub synthetic: Option<String>,
    /// Held-out data (same format as --data); replaces --val-split.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// NPY class indices for an NPY --test.
    #[arg(long, requires = "test")]
    pub test_labels: Option<PathBuf>,
    /// Passes over the training data of a minibatch optimizer (at most 1,000,000; default 30).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Rows per step of a minibatch optimizer (default 64).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate of a minibatch optimizer (default 0.01).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// L2 penalty λ on the weights (not the biases): J = mean cross-entropy + λ/2·‖W‖², scikit-learn's C = 1/(λ·N).
    /// Default: 1/N (C = 1) for L-BFGS and the automatic choice, 0 for an explicit minibatch optimizer.
    #[arg(long, allow_negative_numbers = true)]
    pub l2: Option<f32>,
    /// L1 penalty on the weights (not the biases): weights become exactly zero. A minibatch optimizer applies it by
    /// a proximal step, --optimizer lbfgs by OWL-QN (to the L1 problem's optimum). With --l2 too: the elastic net.
    #[arg(long, default_value_t = TrainConfig::default().l1, allow_negative_numbers = true)]
    pub l1: f32,
    /// Seed of the shuffles, the held-out split and synthetic data.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Keep the data's order instead of shuffling every epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Keep the biases at 0 (scikit-learn's fit_intercept=False): L-BFGS only.
    #[arg(long)]
    pub no_intercept: bool,
    /// The optimizer. Default: chosen from the problem — full-batch L-BFGS to convergence when the training rows
    /// fit in memory, minibatch SGD with a convergence stop when they stream, and SGD as before whenever a
    /// minibatch flag (--epochs, --batch-size, --lr, --schedule, --l1, …) is given.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// μ of momentum and nesterov, in [0, 1).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    pub momentum: f32,
    /// β₁ of adam and adamw, in [0, 1).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    pub beta1: f32,
    /// β₂ of adam and adamw, in [0, 1).
    #[arg(long, default_value_t = 0.999, allow_negative_numbers = true)]
    pub beta2: f32,
    /// ε of adam and adamw.
    #[arg(long, default_value_t = 1e-8, allow_negative_numbers = true)]
    pub eps: f32,
    /// Decoupled weight decay of adamw (PyTorch's default 0.01).
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub weight_decay: f32,
    /// Convergence tolerance. L-BFGS: stop when the largest gradient component is at most this (scikit-learn's
    /// LogisticRegression `tol`, default 1e-4). Minibatch: stop when the training loss has not fallen by more than
    /// this for 5 epochs (SGDClassifier's rule; default 1e-3 for the automatic choice, none otherwise).
    #[arg(long, allow_negative_numbers = true)]
    pub tol: Option<f64>,
    /// Most L-BFGS iterations (scikit-learn's `max_iter`, default 100), or most epochs of the automatic minibatch
    /// choice (default 100); a run that reaches it says it did not converge.
    #[arg(long)]
    pub max_iter: Option<usize>,
    /// L-BFGS: correction pairs kept (SciPy's `maxcor`; default 10).
    #[arg(long, value_name = "PAIRS")]
    pub lbfgs_history: Option<usize>,
    /// The learning rate's schedule over the run's steps (default constant).
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Steps over which the rate rises linearly to --lr first (0: none).
    #[arg(long, value_name = "STEPS", default_value_t = 0)]
    pub warmup_steps: u64,
    /// N of the step and exp schedules: the rate is multiplied by --lr-gamma every N steps.
    #[arg(long, value_name = "STEPS", default_value_t = Schedule::default().decay_steps)]
    pub lr_decay_steps: u64,
    /// γ of the step and exp schedules, in (0, 1].
    #[arg(long, value_name = "GAMMA", default_value_t = Schedule::default().gamma, allow_negative_numbers = true)]
    pub lr_gamma: f64,
    /// p of the invscaling schedule: lr / (1 + s)^p.
    #[arg(long, value_name = "P", default_value_t = Schedule::default().power, allow_negative_numbers = true)]
    pub power_t: f64,
    /// The rate the cosine schedule ends at.
    #[arg(long, value_name = "LR", default_value_t = Schedule::default().min_lr, allow_negative_numbers = true)]
    pub lr_min: f64,
    /// Stop when the held-out loss has not improved for --patience epochs; keep the best epoch's weights.
    #[arg(long)]
    pub early_stopping: bool,
    /// Epochs without improvement before --early-stopping stops.
    #[arg(
        long,
        value_name = "EPOCHS",
        default_value_t = 5,
        requires = "early_stopping"
    )]
    pub patience: usize,
    /// The least decrease of the held-out loss that counts as an improvement.
    #[arg(
        long,
        value_name = "DELTA",
        default_value_t = 1e-4,
        requires = "early_stopping",
        allow_negative_numbers = true
    )]
    pub min_delta: f64,
    /// Fraction of rows held out for evaluation when no --test is given (0 to disable).
    #[arg(long, default_value_t = TrainConfig::default().val_split, allow_negative_numbers = true)]
    pub val_split: f64,
    /// Z-score the features with the training rows' statistics (stored in the model). The default with the
    /// automatic optimizer choice on dense data; give it to standardise under an explicit optimizer.
    #[arg(long, conflicts_with = "no_standardize")]
    pub standardize: bool,
    /// Weight each row's loss by its class: `balanced` (N / (K·n_c), scikit-learn's) or `NAME=W,NAME=W,…` (classes
    /// not named weigh 1), with any optimizer.
    #[arg(long, value_name = "balanced|NAME=W,…")]
    pub class_weight: Option<String>,
    /// A weight per row of --data (an NPY vector, or text with one number a line): each row's loss is scaled by it,
    /// J = (1/N)·Σ wᵢ·CEᵢ + penalty, as scikit-learn's `fit(sample_weight=…)`; held-out rows are not weighted.
    #[arg(long, value_name = "FILE")]
    pub sample_weight: Option<PathBuf>,
    /// Keep the features as they are under the automatic optimizer choice.
    #[arg(long)]
    pub no_standardize: bool,
    /// Save the model (safetensors) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Start from the weights of this model (warm start): same features and classes, and its standardisation.
    #[arg(long, value_name = "MODEL", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Write a checkpoint (weights, optimizer state, position) here every --checkpoint-every steps, atomically.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints.
    #[arg(
        long,
        value_name = "STEPS",
        default_value_t = 1000,
        requires = "checkpoint"
    )]
    pub checkpoint_every: u64,
    /// Continue the run that wrote this checkpoint (the same command line; --epochs may grow): the result is the
    /// uninterrupted run's, bit for bit, on the same device.
    #[arg(long, value_name = "PATH")]
    pub resume: Option<PathBuf>,
    /// Print one JSON object per epoch instead of a line.
    #[arg(long)]
    pub json: bool,
    /// Draw the loss and accuracy per epoch (training and held-out) as an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// No progress bar, no notes on stderr, and no epoch lines unless --json asks for them; errors still print.
    #[arg(long)]
    pub quiet: bool,
    /// Do not time the GPU kernels' workgroup widths on first use (the width derived from the adapter is used).
    #[arg(long)]
    pub no_autotune: bool,
    /// Largest chunk of the training data on the GPU, in MiB, 1 to 1,048,576 (default: the adapter's largest storage
    /// binding).
    #[arg(long, value_name = "MIB")]
    pub chunk_mib: Option<u64>,
    /// Host memory the training data may be held in, e.g. 2GiB or 1500M (default: half the memory available).
    /// Larger data is streamed from its file a chunk at a time, the next chunk read while the current one trains.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub memory_budget: Option<u64>,
    /// Device memory the training data may be held in, for GPUs with memory of their own (default: no limit but
    /// the device's); larger data is streamed.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub device_memory: Option<u64>,
    /// Replay every step on the CPU in f64 and compare the weights every N steps; stop if they drift apart.
    #[arg(long, value_name = "N")]
    pub check_every: Option<usize>,
    /// Largest relative drift ‖W_device − W_f64‖/‖W_f64‖ that --check-every accepts.
    #[arg(long, value_name = "REL", requires = "check_every", default_value_t = softmax_wgpu::shadow::ShadowOptions::DEFAULT_TOLERANCE, allow_negative_numbers = true)]
    pub check_tolerance: f64,
}

/// `--lanes`: 1, 2, 4, 8, 16 or 32.
fn parse_lanes(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n @ (1 | 2 | 4 | 8 | 16 | 32)) => Ok(n),
        _ => Err(format!("{s:?} is not 1, 2, 4, 8, 16 or 32")),
    }
}

/// A byte count: a number (decimals allowed) with an optional unit: B; K, M, G, T or KiB … TiB (powers of 1024); KB,
/// MB, GB, TB (powers of 1000). At least one byte, at most 2⁶⁴ − 1.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        u => {
            return Err(format!(
            "unknown unit {u:?} in {text:?} (use B, K/KiB, M/MiB, G/GiB, T/TiB, KB, MB, GB or TB)"
        ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count such as 2GiB or 1500M"))?;
    let bytes = (value * scale).round();
    if !(1.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("{text:?} is not between 1 byte and 16 EiB"));
    }
    Ok(bytes as u64)
}

/// Largest `--chunk-mib`: 1 TiB, beyond any adapter's binding limit.
pub const MAX_CHUNK_MIB: u64 = 1 << 20;

impl TrainArgs {
    /// `--chunk-mib` in bytes, checked.
    pub fn chunk_bytes(&self) -> Result<Option<u64>, Error> {
        match self.chunk_mib {
            None => Ok(None),
            Some(m) if (1..=MAX_CHUNK_MIB).contains(&m) => Ok(Some(m << 20)),
            Some(m) => Err(Error::param(
                "--chunk-mib",
                format!("in 1..={MAX_CHUNK_MIB}"),
                m,
            )),
        }
    }

    /// L-BFGS's settings: the flags given, scikit-learn's defaults for the others.
    pub fn lbfgs_options(&self) -> LbfgsOptions {
        let d = LbfgsOptions::default();
        LbfgsOptions {
            history: self.lbfgs_history.unwrap_or(d.history),
            max_iter: self.max_iter.unwrap_or(d.max_iter),
            tol: self.tol.unwrap_or(d.tol),
            ..d
        }
    }

    /// The first flag given that only a minibatch optimizer reads: with no --optimizer, it keeps the run on
    /// minibatch SGD as before the automatic choice existed.
    pub fn minibatch_flag(&self) -> Option<&'static str> {
        [
            ("--epochs", self.epochs.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--lr", self.lr.is_some()),
            ("--schedule", self.schedule.is_some()),
            ("--warmup-steps", self.warmup_steps > 0),
            ("--l1", self.l1 != 0.0),
            ("--early-stopping", self.early_stopping),
            ("--checkpoint", self.checkpoint.is_some()),
            ("--resume", self.resume.is_some()),
            ("--check-every", self.check_every.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given)
        .map(|(flag, _)| flag)
    }

    /// The automatic choice is made: no --optimizer and no minibatch flag.
    pub fn automatic(&self) -> bool {
        self.optimizer.is_none() && self.minibatch_flag().is_none()
    }

    /// Flags that only some optimizers read, given to another: an error naming the flag.
    pub fn check_optimizer_flags(&self) -> Result<(), Error> {
        let lbfgs = self.optimizer == Some(OptimizerArg::Lbfgs);
        let explicit_minibatch = self.optimizer.is_some() && !lbfgs;
        let only_lbfgs = [
            ("--max-iter", self.max_iter.is_some() && explicit_minibatch),
            ("--lbfgs-history", self.lbfgs_history.is_some() && !lbfgs),
        ];
        if let Some((flag, _)) = only_lbfgs.iter().find(|(_, given)| *given) {
            return Err(Error::param(
                *flag,
                "used with --optimizer lbfgs or the automatic choice (an explicit minibatch optimizer runs --epochs)",
                format!("--optimizer {:?}", self.optimizer.unwrap_or(OptimizerArg::Sgd)).to_lowercase(),
            ));
        }
        if let (true, Some(flag)) = (
            self.optimizer.is_none() && self.lbfgs_history.is_some(),
            self.minibatch_flag(),
        ) {
            return Err(Error::param(
                "--lbfgs-history",
                "used with --optimizer lbfgs",
                format!("minibatch flag {flag}"),
            ));
        }
        if let (true, Some(flag)) = (
            lbfgs,
            // --l1 chooses a minibatch run when no optimizer is named; L-BFGS runs it as OWL-QN.
            self.minibatch_flag()
                .filter(|&f| f != "--check-every" && f != "--l1"),
        ) {
            return Err(Error::param(
                flag,
                "used with a minibatch optimizer only (an L-BFGS run is full passes, its steps chosen by its line search)",
                "--optimizer lbfgs",
            ));
        }
        Ok(())
    }

    /// The run's settings as the flags give them. Under the automatic choice the optimizer is SGD until the CLI
    /// resolves it (it depends on whether the rows fit), and the default L2 penalty (1/N) is set once N is known.
    pub fn config(&self) -> TrainConfig {
        let d = TrainConfig::default();
        TrainConfig {
            epochs: self.epochs.unwrap_or(d.epochs),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            lr: self.lr.unwrap_or(d.lr),
            l2: self.l2.unwrap_or(d.l2),
            l1: self.l1,
            seed: self.seed,
            shuffle: !self.no_shuffle,
            val_split: if self.test.is_some() {
                0.0
            } else {
                self.val_split
            },
            standardize: self.standardize,
            // Read once, so that every decision of the run (held or streamed, the chunk size, what is printed)
            // sees one budget: the memory available changes as the run allocates.
            memory_budget: Some(
                self.memory_budget
                    .unwrap_or_else(softmax_wgpu::train::default_memory_budget),
            ),
            device_memory: self.device_memory,
            schedule: Schedule {
                kind: match self.schedule.unwrap_or(ScheduleArg::Constant) {
                    ScheduleArg::Constant => ScheduleKind::Constant,
                    ScheduleArg::Step => ScheduleKind::Step,
                    ScheduleArg::Exp => ScheduleKind::Exp,
                    ScheduleArg::Cosine => ScheduleKind::Cosine,
                    ScheduleArg::Invscaling => ScheduleKind::Invscaling,
                },
                warmup_steps: self.warmup_steps,
                decay_steps: self.lr_decay_steps,
                gamma: self.lr_gamma,
                power: self.power_t,
                min_lr: self.lr_min,
            },
            optimizer: match self.optimizer.unwrap_or(OptimizerArg::Sgd) {
                OptimizerArg::Sgd => Optimizer::Sgd,
                OptimizerArg::Momentum | OptimizerArg::Nesterov => Optimizer::Momentum {
                    momentum: self.momentum,
                    nesterov: self.optimizer == Some(OptimizerArg::Nesterov),
                },
                OptimizerArg::Lbfgs => Optimizer::Lbfgs(self.lbfgs_options()),
                OptimizerArg::Adam | OptimizerArg::Adamw => Optimizer::Adam {
                    beta1: self.beta1,
                    beta2: self.beta2,
                    eps: self.eps,
                    weight_decay: if self.optimizer == Some(OptimizerArg::Adamw) {
                        self.weight_decay
                    } else {
                        0.0
                    },
                },
            },
            early_stopping: self.early_stopping.then_some(EarlyStopping {
                patience: self.patience,
                min_delta: self.min_delta,
            }),
            // A tolerance given to an explicit minibatch optimizer: SGDClassifier's stopping rule.
            convergence: match (self.optimizer, self.tol) {
                (Some(o), Some(tol)) if o != OptimizerArg::Lbfgs => Some(Convergence {
                    tol,
                    ..Convergence::SGD_CLASSIFIER
                }),
                _ => None,
            },
            class_weights: None,
            sample_weight: self.sample_weight.as_ref().map(|p| p.display().to_string()),
            fit_intercept: !self.no_intercept,
            resume: None,
        }
    }
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model file written by `train --out`.
    #[arg(long)]
    pub model: PathBuf,
    /// Rows to predict: CSV (with or without a label column), LIBSVM, or NPY / IDX features.
    #[arg(long)]
    pub data: PathBuf,
    /// Class indices for NPY or IDX --data, to report accuracy.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
    /// The CSV label column when the file has one (default: the last column, when the file has one more column
    /// than the model has features).
    #[arg(long, allow_negative_numbers = true)]
    pub label_column: Option<isize>,
    /// Also write one probability column per class.
    #[arg(long)]
    pub proba: bool,
    /// Write the CSV here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model file written by `train --out`.
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled rows: CSV with a label column, LIBSVM, or NPY / IDX features with --labels.
    #[arg(long)]
    pub data: PathBuf,
    /// Class indices for NPY or IDX --data.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
    /// The CSV label column (default: the last).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub label_column: isize,
    /// k of the top-k accuracy (default: 5, or the model's class count when it has fewer).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// One JSON document instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Write the report here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Only adapters of this backend.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
