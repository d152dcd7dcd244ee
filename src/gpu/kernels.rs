//! The GPU kernels, declared once each: [`KernelSpec`] holds a kernel's WGSL source, its bindings, the override
//! constants it declares (workgroup and tile sizes, with their defaults) and the shape of its dispatch. Every shader
//! is compiled behind the shared preamble `shaders/common.wgsl` (the `Step` uniform at group 0 and helpers), and its
//! own buffers are bound at group 1 in the order of its CPU mirror. Pipelines are cached by kernel and constants:
//! the defaults are built when a device is opened, other constants (an autotuner's choice) on first use.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use bytemuck::{Pod, Zeroable};

/// The declarations every shader shares, prepended at load time.
pub const PREAMBLE: &str = include_str!("../../shaders/common.wgsl");

/// One compute kernel, one file in shaders/.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Copies a batch's rows out of one resident chunk.
    Gather,
    /// Z = X·W + b (X feature-major).
    Logits,
    /// Row-wise softmax and per-row loss / correctness; in a training step (`TRAIN` = 1) the residual
    /// R = (S − onehot(y))·w in place of S.
    Softmax,
    /// Gradient sums G = Xᵀ·R, g_b = colsum(R).
    Grad,
    /// W ← W − lr·(G/rows + l2·W), b ← b − lr·g_b/rows.
    Update,
    /// Sums a batch's per-row loss and correctness into a slot.
    Metrics,
    /// Logits, softmax, loss and residual fused, for K ≤ 16.
    Forward,
    /// Z = X·W + b for sparse rows (CSR).
    SparseLogits,
    /// Gradient sums G += Xᵀ·R, g_b += colsum(R) for sparse rows, over the columns they touch (their transpose).
    SparseGrad,
    /// The update over the columns a sparse step touched, zeroing the sums it consumed.
    SparseUpdate,
    /// A momentum (or Nesterov) step.
    UpdateMomentum,
    /// An Adam (or AdamW) step.
    UpdateAdam,
    /// `bench`: the adapter's streaming-read ceiling.
    CeilingRead,
    /// `bench`: the adapter's FMA ceiling.
    CeilingFma,
    /// [`Kernel::Forward`] over a held set's rows in place (no gather copy), for K ≤ 16 and up to
    /// [`HELD_SLOTS`] chunks.
    ForwardHeld,
    /// [`Kernel::Grad`] over a held set's rows in place.
    GradHeld,
    /// One pass over a held set's rows for K ≤ 32: forward pass, loss, hits, residual and per-segment gradient
    /// partials of row tiles, one workgroup per segment ([`fused_segments`]).
    FusedHeld,
    /// Adds [`Kernel::FusedHeld`]'s partials in segment order into the gradient sums and the batch's loss slot.
    Reduce,
    /// [`Kernel::Logits`] over a held set's rows in place (no gather copy), for 16 < K ≤
    /// [`LOGITS_HELD_MAX_CLASSES`] (in the GPU shape, any K > 16) and up to [`HELD_SLOTS`] chunks; also copies the
    /// batch's labels.
    LogitsHeld,
}

/// Rows of one tile of [`Kernel::FusedHeld`] (its `RT`) with up to 8 lanes a row; wider teams take fewer
/// ([`Team::tile_rows`]).
pub const FUSED_TILE_ROWS: u32 = 64;
/// Invocations of a [`Kernel::FusedHeld`] workgroup in the team shapes of 8 lanes and more (64 rows × 8 lanes,
/// 32 × 16, 16 × 32); teams of 16 and 32 lanes need it (and subgroups that hold them).
pub const FUSED_TEAM_WORKGROUP: u32 = 512;
/// Most classes [`Kernel::FusedHeld`] handles (8 groups of 4).
pub const FUSED_MAX_CLASSES: usize = 32;
/// Bytes all segments' gradient partials may take: the segments of a batch are as many as fit (at most 1,024), so a
/// model with many features gets fewer, longer segments rather than a partial buffer past a storage binding.
pub const FUSED_PARTIAL_BYTES: u64 = 64 << 20;
/// Workgroup memory [`Kernel::FusedHeld`] declares: 992 vec4 (the residuals or the lanes' exchange, beside the staged
/// W; see the shader's `sm`) and the locations of two tiles' 64 rows.
pub const FUSED_WORKGROUP_BYTES: u32 = 992 * 16 + 128 * 4;

/// Class groups of four ([`Kernel::FusedHeld`]'s `CG`): ⌈k / 4⌉, at least 1.
pub fn class_groups(k: u32) -> u32 {
    k.div_ceil(4).max(1)
}

/// Most segments a batch of `d` features and `k` classes is cut into (the kernels' `SEGS`): as many as
/// [`FUSED_PARTIAL_BYTES`] holds partials for, 1 to 1,024. 1,024 segments of 128 invocations make the 65,536 (and
/// more) invocations a large GPU needs in flight, and keep the reduction's loop over segments at most 1,024 long.
pub fn fused_max_segments(d: u32, k: u32) -> u32 {
    (FUSED_PARTIAL_BYTES / fused_partial_bytes(d, k)).clamp(1, 1024) as u32
}

/// Bytes of one segment's gradient partials: K × (d + 1) floats (the last of each class is its bias).
pub fn fused_partial_bytes(d: u32, k: u32) -> u64 {
    u64::from(k.max(1)) * (u64::from(d) + 1) * 4
}

/// Whether [`Kernel::FusedHeld`] runs in its GPU shape on an adapter of this type ([`Team::for_device`]: a team of
/// lanes per row splitting its features, each reading X coalesced where it is held). The same choice splits the
/// gradient over a gathered batch over its rows into per-segment partials and reduces them (GPUs: a walk over the
/// whole batch is a chain of dependent loads as long as the batch, in a few hundred invocations), where CPU adapters
/// walk it whole (the partials' writes and reduction would only add work there). CPU adapters (llvmpipe,
/// SwiftShader, WARP) take the other shape ([`Team::ONE`]): there a row read in place is already cached, each
/// barrier costs a switch of every 8-lane coroutine, and the lanes of a team would only add an exchange; one
/// invocation per row keeps the row's logits in its registers. The shapes add the gradient's products in the same
/// order; the logits' in an order that depends on the team (within numerics::tolerance::fused of each other, tested).
pub fn fused_gpu_shape(device_type: wgpu::DeviceType) -> bool {
    device_type != wgpu::DeviceType::Cpu
}

/// How [`Kernel::FusedHeld`] shares a row's features among invocations (its `TEAM` and `SUBGROUPS`, and the tile's
/// rows `RT` that follow from them): `lanes` adjacent invocations per row, lane p taking features p, p + lanes, …,
/// whose partial logits are added over the lanes by a butterfly (at step m = 1, 2, …, lanes / 2 each lane adds lane
/// p ^ m's sum to its own) through subgroup shuffles (`subgroups`) or through workgroup memory: the same additions in
/// the same order either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Team {
    /// Invocations per row: 1, 2, 4, 8, 16 or 32.
    pub lanes: u32,
    /// Whether the lanes exchange their sums through subgroup shuffles.
    pub subgroups: bool,
}

impl Team {
    /// One invocation per row, the row's logits feature by feature: the CPU adapters' shape.
    pub const ONE: Team = Team {
        lanes: 1,
        subgroups: false,
    };

    /// The widest GPU shape on a device with these limits: where a workgroup holds 512 invocations, 32 lanes a row
    /// (tiles of 16 rows) where `shuffles_in_order(32)` — the device has subgroup operations and
    /// [`super::GpuContext::shuffles_in_order`] found a team of that size within a subgroup, lanes in order
    /// (NVIDIA's warps, AMD's waves) —, else 16, else 8 lanes (64 rows; 4 or 2 where a workgroup holds 256 or 128,
    /// 1 below), exchanging through subgroup shuffles where they reach the team in order, else through workgroup
    /// memory. Teams past 8 lanes only with shuffles: their butterfly through workgroup memory would take 8 or 10
    /// barriers a class group and tile. A batch may run a narrower team ([`Team::for_rows`]).
    pub fn for_limits(limits: &wgpu::Limits, shuffles_in_order: impl Fn(u32) -> bool) -> Team {
        let fits = |lanes| {
            Team {
                lanes,
                subgroups: false,
            }
            .fits(limits)
        };
        if let Some(lanes) = [32, 16]
            .into_iter()
            .find(|&l| fits(l) && shuffles_in_order(l))
        {
            return Team {
                lanes,
                subgroups: true,
            };
        }
        let lanes = [8, 4, 2].into_iter().find(|&l| fits(l)).unwrap_or(1);
        Team {
            lanes,
            subgroups: lanes > 1 && shuffles_in_order(lanes),
        }
    }

    /// Rows of the one-pass kernel's tile with this team (its `RT`): 64, or 512 / lanes past 8 lanes, so that a
    /// workgroup stays at 512 invocations (32 rows of 16 lanes, 16 of 32).
    pub fn tile_rows(self) -> u32 {
        (FUSED_TEAM_WORKGROUP / self.lanes.max(1)).min(FUSED_TILE_ROWS)
    }

    /// Invocations of a one-pass workgroup with this team: a tile's rows × the lanes.
    pub fn workgroup(self) -> u32 {
        self.tile_rows() * self.lanes.max(1)
    }

    /// Most invocations a one-pass workgroup (one-dimensional) may have on a device with these limits.
    pub fn most_invocations(limits: &wgpu::Limits) -> u32 {
        limits
            .max_compute_invocations_per_workgroup
            .min(limits.max_compute_workgroup_size_x)
    }

    /// Whether a device with these limits holds this team's workgroup ([`Team::workgroup`]).
    pub fn fits(self, limits: &wgpu::Limits) -> bool {
        self.workgroup() <= Self::most_invocations(limits)
    }

    /// The team a batch of `rows` rows runs with when none was asked for: this one (the device's widest), narrowed
    /// to 16 and then 8 lanes while the batch would have more tiles than `segments`, the most workgroups it is cut
    /// into ([`fused_max_segments`]). A wide team's short tiles give a small batch more workgroups — at batch 256,
    /// 16 of 16 rows × 32 lanes where 8 lanes make 4 of 64 rows, on a card of 132 multiprocessors —, each with a
    /// quarter of the chain (25 features a lane at D = 784, 16 rows a gradient round); past the segments a workgroup
    /// would walk several short tiles, adding each tile's sums into its partial (a read and a write of the partial
    /// more per tile), where 64-row tiles walk the same rows in fewer tiles. At full batch on 60,000 rows: 8 lanes.
    pub fn for_rows(self, rows: u32, segments: u32) -> Team {
        let mut team = self;
        while team.lanes > 8 && rows.div_ceil(team.tile_rows()) > segments {
            team.lanes /= 2;
        }
        team
    }

    /// The team of the reduction that adds this team's partials (reduce.wgsl's `TEAM`): at most 8 lanes an
    /// element, its workgroups of 64 elements holding 512 invocations.
    pub fn for_reduce(self) -> Team {
        Team {
            lanes: self.lanes.min(8),
            ..self
        }
    }

    /// This team without subgroups: the exchange through workgroup memory (what devices without subgroup
    /// operations run; the same bits).
    pub fn without_subgroups(self) -> Team {
        Team {
            subgroups: false,
            ..self
        }
    }
}

impl std::fmt::Display for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = match self.tile_rows() {
            FUSED_TILE_ROWS => String::new(),
            rt => format!(" in tiles of {rt} rows"),
        };
        match (self.lanes, self.subgroups) {
            (1, _) => write!(f, "1 invocation a row"),
            (n, true) => write!(f, "{n} lanes a row{rows}, subgroup shuffles"),
            (n, false) => write!(f, "{n} lanes a row{rows}, workgroup memory"),
        }
    }
}

/// Segments (workgroups of [`Kernel::FusedHeld`]) of a batch of `rows` rows: its tiles of `team`'s rows
/// ([`Team::tile_rows`]) shared out, in order, `⌈tiles / SEGS⌉` to a segment. The shaders compute the same.
pub fn fused_segments(rows: u32, d: u32, k: u32, team: Team) -> u32 {
    segments(rows, team.tile_rows(), fused_max_segments(d, k))
}

/// Segments of a batch of `rows` rows cut into units of `unit` rows, at most `most` segments of consecutive units
/// (`⌈units / most⌉` to a segment): as fused_held.wgsl, grad_tile.wgsl (split) and reduce.wgsl count them.
pub fn segments(rows: u32, unit: u32, most: u32) -> u32 {
    let units = rows.div_ceil(unit);
    if units == 0 {
        return 0;
    }
    let per = units.div_ceil(most.max(1));
    units.div_ceil(per)
}

/// Items a workgroup of a [`Grid::Teams`] kernel takes (reduce.wgsl's `EW`): 64 teams.
pub const TEAM_ITEMS: u64 = 64;

/// Rows of the units [`Kernel::Grad`] split over rows cuts a batch into (grad_tile.wgsl's `UNIT`).
pub const GRAD_UNIT_ROWS: u32 = 256;

/// The override constants of [`Kernel::Grad`] split over rows and of the [`Kernel::Reduce`] that adds its
/// partials, for at most `most` segments (the trainer's: [`fused_max_segments`], as many as
/// [`FUSED_PARTIAL_BYTES`] holds), the reduction's lanes a `team` (the device's GPU shape, as the one-pass
/// kernel's).
pub fn split_grad_constants(kernel: Kernel, most: u32, team: Team) -> Vec<(&'static str, f64)> {
    let most = f64::from(most);
    match kernel {
        Kernel::Reduce => vec![
            ("SEGS", most),
            ("TRAIN", 1.0),
            ("UNIT", f64::from(GRAD_UNIT_ROWS)),
            ("METRICS", 0.0),
            ("TEAM", f64::from(team.for_reduce().lanes)),
            ("SUBGROUPS", if team.subgroups { 1.0 } else { 0.0 }),
        ],
        _ => vec![("SEGS", most)],
    }
}

/// The override constants of `kernel` ([`Kernel::FusedHeld`] or [`Kernel::Reduce`]) for `d` features, `k` classes,
/// a held set of `slots` chunks, training (or only evaluating), with `team` (the GPU shape's [`Team::for_limits`]
/// or [`Team::ONE`]): those of `CG`, `SEGS`, `SLOTS`, `TRAIN`, `TEAM` and `SUBGROUPS` it declares.
pub fn fused_constants(
    kernel: Kernel,
    d: u32,
    k: u32,
    slots: u32,
    train: bool,
    team: Team,
) -> Vec<(&'static str, f64)> {
    let lanes = match kernel {
        Kernel::Reduce => team.for_reduce(),
        _ => team,
    };
    [
        ("CG", f64::from(class_groups(k))),
        ("SEGS", f64::from(fused_max_segments(d, k))),
        ("SLOTS", f64::from(slots)),
        ("TRAIN", if train { 1.0 } else { 0.0 }),
        ("TEAM", f64::from(lanes.lanes)),
        ("SUBGROUPS", if team.subgroups { 1.0 } else { 0.0 }),
        // The tile's rows: the segments' unit, counted alike by the kernel and its reduction.
        ("RT", f64::from(team.tile_rows())),
        ("UNIT", f64::from(team.tile_rows())),
    ]
    .into_iter()
    .filter(|(name, _)| kernel.spec().constants.iter().any(|c| c.0 == *name))
    .collect()
}

/// Most classes [`Kernel::LogitsHeld`] reads held rows in place for (two class tiles) on CPU adapters; in the GPU
/// shape it reads them in place at any K, with the gradient split over them (no gather). Past it each class tile
/// reads the batch's rows again, and from a gathered copy (feature-major, contiguous) those reads cost less than from
/// where they are held: on lavapipe at 20,000 × 784 × 200, batch 1,024, logits_held and grad_held took 5–14 % longer
/// than logits and grad over the copy, more than the gather's 5 %; at 200,000 × 256 × 32, batch 4,096, dropping the
/// gather made the epoch about 1.2× faster.
pub const LOGITS_HELD_MAX_CLASSES: usize = 32;

/// Chunks of a held set that the held kernels ([`Kernel::ForwardHeld`], [`Kernel::GradHeld`]) bind at once; data of
/// more chunks is gathered.
pub const HELD_SLOTS: usize = 4;

/// How a kernel sees one of its group-1 buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
    /// `var<uniform>`.
    Uniform,
}

/// The sizes a dispatch covers: a batch of `rows` rows, `d` features, `k` classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Rows.
    pub rows: u32,
    /// Features.
    pub d: u32,
    /// Classes.
    pub k: u32,
}

/// The shape of a kernel's dispatch, in terms of its override constants.
#[derive(Debug, Clone, Copy)]
pub enum Grid {
    /// One invocation per item, `items(dims)` of them, in workgroups of the constant `WG` along x; folded into x
    /// and y when there are more workgroups than one dimension allows (the shader calls `flat_index`).
    Items(fn(Dims) -> u64),
    /// One workgroup per item, `groups(dims)` of them, folded the same way (the shader flattens `workgroup_id`).
    Groups(fn(Dims) -> u64),
    /// One workgroup per segment of the batch's tiles of `RT` rows, at most `SEGS` ([`segments`]), folded the same
    /// way.
    Segments,
    /// A team of `TEAM` invocations per item, `items(dims)` of them, [`TEAM_ITEMS`] items a workgroup, folded the
    /// same way.
    Teams(fn(Dims) -> u64),
    /// A 2-D grid: x covers the rows, 4 per invocation, in workgroups of `WG`; y the classes in tiles of 16.
    RowsByClassTiles,
    /// A 2-D grid: x covers the features, 4 per invocation, and one more invocation for the bias, in workgroups of
    /// `WG`; y the classes in tiles of 16.
    FeaturesByClassTiles,
    /// A 2-D grid: x covers `dims.d` in workgroups of `WG`, y covers `dims.rows` but at most 64 high (the shader's
    /// invocations loop over the rest): a copy needs few, long-lived invocations, and a software adapter pays for
    /// every workgroup it launches.
    Plane,
    /// One workgroup.
    Single,
}

/// Everything about one kernel, in one place.
#[derive(Debug)]
pub struct KernelSpec {
    /// The kernel.
    pub kernel: Kernel,
    /// The shader file's stem.
    pub name: &'static str,
    /// The WGSL source (without the preamble): the kernel's file, followed by the body it shares with the kernels
    /// that read X from elsewhere (`forward_tile.wgsl`, `grad_tile.wgsl`) where it has one.
    pub source: &'static str,
    /// Its group-1 buffers, in binding order.
    pub bindings: &'static [Access],
    /// The override constants it declares, with their defaults.
    pub constants: &'static [(&'static str, f64)],
    /// Its dispatch.
    pub grid: Grid,
}

use Access::{Read, ReadWrite, Uniform};

static SPECS: [KernelSpec; 19] = [
    KernelSpec {
        kernel: Kernel::Gather,
        name: "gather",
        source: include_str!("../../shaders/gather.wgsl"),
        bindings: &[Read, Read, Read, Uniform, ReadWrite, ReadWrite, ReadWrite],
        constants: &[("WG", 64.0)],
        grid: Grid::Plane,
    },
    KernelSpec {
        kernel: Kernel::Logits,
        name: "logits",
        source: concat!(
            include_str!("../../shaders/logits.wgsl"),
            include_str!("../../shaders/gathered_rows.wgsl"),
            include_str!("../../shaders/logits_tile.wgsl")
        ),
        bindings: &[Read, Read, Read, ReadWrite],
        constants: &[("WG", 64.0), ("KT", 16.0), ("TQ", 1.0)],
        grid: Grid::RowsByClassTiles,
    },
    KernelSpec {
        kernel: Kernel::Softmax,
        name: "softmax",
        source: include_str!("../../shaders/softmax.wgsl"),
        bindings: &[Read, Read, ReadWrite, ReadWrite, Read, Read],
        constants: &[("WG", 64.0), ("TRAIN", 0.0)],
        grid: Grid::Items(|s| u64::from(s.rows)),
    },
    KernelSpec {
        kernel: Kernel::Grad,
        name: "grad",
        source: concat!(
            include_str!("../../shaders/grad.wgsl"),
            include_str!("../../shaders/grad_tile.wgsl")
        ),
        bindings: &[Read, Read, ReadWrite, ReadWrite],
        constants: &[("WG", 64.0), ("KT", 16.0), ("SEGS", 0.0), ("TQ", 1.0)],
        grid: Grid::FeaturesByClassTiles,
    },
    KernelSpec {
        kernel: Kernel::Update,
        name: "update",
        source: include_str!("../../shaders/update.wgsl"),
        bindings: &[Read, Read, ReadWrite, ReadWrite],
        constants: &[("WG", 64.0)],
        grid: Grid::Items(|s| u64::from(s.d) * u64::from(s.k) + u64::from(s.k)),
    },
    KernelSpec {
        kernel: Kernel::Metrics,
        name: "metrics",
        source: include_str!("../../shaders/metrics.wgsl"),
        bindings: &[Read, ReadWrite],
        constants: &[],
        grid: Grid::Single,
    },
    KernelSpec {
        kernel: Kernel::Forward,
        name: "forward",
        source: concat!(
            include_str!("../../shaders/forward.wgsl"),
            include_str!("../../shaders/gathered_rows.wgsl"),
            include_str!("../../shaders/forward_tile.wgsl")
        ),
        bindings: &[Read, Read, Read, Read, ReadWrite, ReadWrite, Read, Read],
        constants: &[("WG", 64.0), ("KT", 16.0), ("TQ", 1.0)],
        grid: Grid::RowsByClassTiles,
    },
    KernelSpec {
        kernel: Kernel::SparseLogits,
        name: "sparse_logits",
        source: include_str!("../../shaders/sparse_logits.wgsl"),
        bindings: &[Read, Read, Read, Read, Read, ReadWrite],
        constants: &[("WG", 64.0)],
        grid: Grid::Items(|s| u64::from(s.rows) * u64::from(s.k)),
    },
    KernelSpec {
        kernel: Kernel::SparseGrad,
        name: "sparse_grad",
        source: include_str!("../../shaders/sparse_grad.wgsl"),
        bindings: &[Read, Read, Read, Read, Read, ReadWrite, ReadWrite],
        constants: &[("WG", 64.0)],
        grid: Grid::Items(|s| (u64::from(s.d) + 1) * u64::from(s.k)),
    },
    KernelSpec {
        kernel: Kernel::SparseUpdate,
        name: "sparse_update",
        source: include_str!("../../shaders/sparse_update.wgsl"),
        bindings: &[Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
        constants: &[("WG", 64.0)],
        grid: Grid::Items(|s| (u64::from(s.d) + 1) * u64::from(s.k)),
    },
    KernelSpec {
        kernel: Kernel::UpdateMomentum,
        name: "update_momentum",
        source: include_str!("../../shaders/update_momentum.wgsl"),
        bindings: &[Read, Read, ReadWrite, ReadWrite, ReadWrite],
        constants: &[("WG", 64.0)],
        grid: Grid::Items(|s| u64::from(s.d) * u64::from(s.k) + u64::from(s.k)),
    },
    KernelSpec {
        kernel: Kernel::UpdateAdam,
        name: "update_adam",
        source: include_str!("../../shaders/update_adam.wgsl"),
        bindings: &[Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
        constants: &[("WG", 64.0)],
        grid: Grid::Items(|s| u64::from(s.d) * u64::from(s.k) + u64::from(s.k)),
    },
    KernelSpec {
        kernel: Kernel::CeilingRead,
        name: "ceiling_read",
        source: include_str!("../../shaders/ceiling_read.wgsl"),
        bindings: &[Read, ReadWrite],
        constants: &[("WG", 64.0)],
        // A fixed number of workgroups (dims.k of them), each invocation looping over its share.
        grid: Grid::Groups(|s| u64::from(s.k)),
    },
    KernelSpec {
        kernel: Kernel::CeilingFma,
        name: "ceiling_fma",
        source: include_str!("../../shaders/ceiling_fma.wgsl"),
        bindings: &[ReadWrite],
        constants: &[("WG", 64.0)],
        grid: Grid::Groups(|s| u64::from(s.k)),
    },
    KernelSpec {
        kernel: Kernel::ForwardHeld,
        name: "forward_held",
        source: concat!(
            include_str!("../../shaders/forward_held.wgsl"),
            include_str!("../../shaders/held_rows.wgsl"),
            include_str!("../../shaders/forward_tile.wgsl")
        ),
        bindings: &[
            Read, Read, Read, Read, Read, Read, Uniform, Read, Read, ReadWrite, ReadWrite, Read,
            Read,
        ],
        constants: &[("WG", 64.0), ("SLOTS", 4.0), ("KT", 16.0), ("TQ", 1.0)],
        grid: Grid::RowsByClassTiles,
    },
    KernelSpec {
        kernel: Kernel::GradHeld,
        name: "grad_held",
        source: concat!(
            include_str!("../../shaders/grad_held.wgsl"),
            include_str!("../../shaders/grad_tile.wgsl")
        ),
        bindings: &[
            Read, Read, Read, Read, Read, Uniform, Read, ReadWrite, ReadWrite,
        ],
        constants: &[
            ("WG", 64.0),
            ("SLOTS", 4.0),
            ("KT", 16.0),
            ("SEGS", 0.0),
            ("TQ", 1.0),
            ("STAGE", 0.0),
        ],
        grid: Grid::FeaturesByClassTiles,
    },
    KernelSpec {
        kernel: Kernel::FusedHeld,
        name: "fused_held",
        source: concat!(
            include_str!("../../shaders/fused_held.wgsl"),
            include_str!("../../shaders/held_rows.wgsl")
        ),
        bindings: &[
            Read, Read, Read, Read, Read, Read, Uniform, Read, Read, Read, Read, ReadWrite,
            ReadWrite,
        ],
        constants: &[
            ("CG", 3.0),
            ("SEGS", 1024.0),
            ("SLOTS", 4.0),
            ("TRAIN", 1.0),
            ("TEAM", 1.0),
            ("SUBGROUPS", 0.0),
            ("RT", 64.0),
        ],
        grid: Grid::Segments,
    },
    KernelSpec {
        kernel: Kernel::Reduce,
        name: "reduce",
        source: include_str!("../../shaders/reduce.wgsl"),
        bindings: &[Read, Read, ReadWrite, ReadWrite, ReadWrite],
        constants: &[
            ("SEGS", 1024.0),
            ("TRAIN", 1.0),
            ("UNIT", 64.0),
            ("METRICS", 1.0),
            ("TEAM", 1.0),
            ("SUBGROUPS", 0.0),
        ],
        // Every partial element, and one more for the metrics.
        grid: Grid::Teams(|s| u64::from(s.k) * (u64::from(s.d) + 1) + 1),
    },
    KernelSpec {
        kernel: Kernel::LogitsHeld,
        name: "logits_held",
        source: concat!(
            include_str!("../../shaders/logits_held.wgsl"),
            include_str!("../../shaders/held_rows.wgsl"),
            include_str!("../../shaders/logits_tile.wgsl")
        ),
        bindings: &[
            Read, Read, Read, Read, Read, Read, Uniform, Read, Read, ReadWrite, ReadWrite,
        ],
        constants: &[
            ("WG", 64.0),
            ("SLOTS", 4.0),
            ("KT", 16.0),
            ("TQ", 1.0),
            ("STAGE", 0.0),
            ("CT", 3.0),
        ],
        grid: Grid::RowsByClassTiles,
    },
];

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 19] = [
        Kernel::Gather,
        Kernel::Logits,
        Kernel::Softmax,
        Kernel::Grad,
        Kernel::Update,
        Kernel::Metrics,
        Kernel::Forward,
        Kernel::SparseLogits,
        Kernel::SparseGrad,
        Kernel::SparseUpdate,
        Kernel::UpdateMomentum,
        Kernel::UpdateAdam,
        Kernel::CeilingRead,
        Kernel::CeilingFma,
        Kernel::ForwardHeld,
        Kernel::GradHeld,
        Kernel::FusedHeld,
        Kernel::Reduce,
        Kernel::LogitsHeld,
    ];

    /// The kernel's description.
    pub fn spec(self) -> &'static KernelSpec {
        &SPECS[self as usize]
    }

    /// The shader file's stem.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The WGSL source as compiled: the shared preamble, then the kernel's file.
    pub fn source(self) -> String {
        self.source_for(false, false)
    }

    /// The shader's source for a device with subgroup operations or without: the one-pass kernel's and the
    /// reduction's lanes exchange through team_subgroup.wgsl's shuffles or team_shared.wgsl's stand-in (the others
    /// are the same either way); and with windows (the register tiles read their shared operand through
    /// window_uniform.wgsl's bindings) or without (window_none.wgsl's stand-ins).
    pub fn source_for(self, subgroups: bool, windows: bool) -> String {
        let window = match (self.window_operand(), windows) {
            (Some(_), true) => include_str!("../../shaders/window_uniform.wgsl"),
            (Some(_), false) => include_str!("../../shaders/window_none.wgsl"),
            (None, _) => "",
        };
        // The tiles that walk W over the features or R over the rows spread it over a subgroup where the device can
        // (CPU adapters with subgroups: spread_subgroup.wgsl), else never (its stand-in).
        let class_tiles = self
            .window_operand()
            .is_some_and(|(_, walk)| walk.in_class_tiles());
        let spread = match (class_tiles, subgroups && windows) {
            (true, true) => include_str!("../../shaders/spread_subgroup.wgsl"),
            (true, false) => include_str!("../../shaders/spread_none.wgsl"),
            (false, _) => "",
        };
        let team = match (self, subgroups) {
            (Kernel::FusedHeld | Kernel::Reduce, true) => {
                include_str!("../../shaders/team_subgroup.wgsl")
            }
            (Kernel::FusedHeld | Kernel::Reduce, false) => {
                include_str!("../../shaders/team_shared.wgsl")
            }
            _ => "",
        };
        format!(
            "{PREAMBLE}\n// ---- {}.wgsl ----\n{}{team}{window}{spread}",
            self.name(),
            self.spec().source
        )
    }

    /// What this kernel reads through windows where the device has them ([`Kernels::windowed`]): the index among
    /// its bindings of the buffer every lane of a register tile reads alike (W in the logits and the fused forward
    /// pass, R in the gradient), and how its tiles walk that buffer ([`Walk`]).
    pub fn window_operand(self) -> Option<(usize, Walk)> {
        match self {
            Kernel::Logits => Some((1, Walk::Features)),
            Kernel::LogitsHeld => Some((7, Walk::Features)),
            Kernel::Forward => Some((1, Walk::AllFeatures)),
            Kernel::ForwardHeld => Some((7, Walk::AllFeatures)),
            Kernel::Grad => Some((1, Walk::Rows)),
            Kernel::GradHeld => Some((6, Walk::Rows)),
            _ => None,
        }
    }
}

/// How a register tile walks the operand its lanes read alike ([`Kernel::window_operand`]), which decides how that
/// walk is cut into windows and whether its tiles read that operand in quads of classes ([`Kernel::reads_quads`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// W over the features, in any number of windows, each tile's sums resumed through Z (the logits tile).
    Features,
    /// W over every feature in one window or none: the fused forward pass's softmax needs every feature's sum.
    AllFeatures,
    /// R over the batch's rows, in any number of windows, the sums carried between windows in a buffer of the
    /// kernel's own, which [`Kernels::bind`] takes after the kernel's bindings ([`window_sums_bytes`]) (the
    /// gradient tile).
    Rows,
}

impl Walk {
    /// Whether the walk's tiles read the operand 16 classes at a time (the logits' and the gradient's, whose tiles
    /// may read it in quads or spread it over a subgroup), not every class at once (the fused forward pass).
    pub fn in_class_tiles(self) -> bool {
        matches!(self, Walk::Features | Walk::Rows)
    }

    /// Whether the walk carries its sums between windows in a buffer of its own.
    pub fn carries_sums(self) -> bool {
        self == Walk::Rows
    }

    /// Most windows a dispatch may be cut into.
    fn most_windows(self) -> u32 {
        match self {
            Walk::AllFeatures => 1,
            Walk::Features | Walk::Rows => MAX_WINDOWS,
        }
    }
}

/// Bytes of one window (window_uniform.wgsl's `window_data`: 4,096 vec4, the most a uniform binding holds under
/// WebGPU's default limits). A buffer read through windows is made with [`WINDOW_BYTES`] more than its data, so the
/// last window's binding stays inside it (`buffers::storage_windowed`).
pub const WINDOW_BYTES: u64 = 65_536;

/// Fewest features or rows a window must walk to be worth its dispatch ([`Kernels::window_span`]): each window is
/// a dispatch of its own, and each tile reloads and stores its sums between windows. On lavapipe (Vulkan, `bench
/// --epochs 3`, alternating) windows of 1,632 and 512 rows made epochs 1.2× faster at 60,000 × 784 × 10 (full
/// batch) and 200,000 × 256 × 32 (batch 4,096), and windows of 80 features and rows made 20,000 × 784 × 200
/// (batch 1,024) 1.19× slower (ten and thirteen windows a product, each tile's 128 sums reloaded per 80 steps):
/// so only up to 64 classes.
pub const MIN_WINDOW_SPAN: u32 = 256;

/// Most windows one dispatch is cut into (entries of the window table).
pub const MAX_WINDOWS: u32 = 4096;

/// Bytes of the buffer a gradient kernel carries its sums in between windows, for `d` features and `k` classes:
/// K × (⌈d / 4⌉ + 1) quads (the bias's last).
pub fn window_sums_bytes(d: u32, k: u32) -> u64 {
    u64::from(k.max(1)) * (u64::from(d.div_ceil(4)) + 1) * 16
}

/// The per-step parameters every kernel reads at group 0. Mirrors `struct Step` in the shaders.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct StepUniform {
    /// Rows in this batch.
    pub rows: u32,
    /// Where the batch starts in the permutation buffer.
    pub perm_offset: u32,
    /// Features.
    pub d: u32,
    /// Classes.
    pub k: u32,
    /// Learning rate.
    pub lr: f32,
    /// L2 penalty on W.
    pub l2: f32,
    /// Slot of the metrics output.
    pub slot: u32,
    /// Bit 0: the gradient kernels add to the sums they hold; bit 1: the sparse update only zeroes; bit 2: Nesterov
    /// (momentum update); bit 3: the batch's rows carry weights at `sw_offset` ([`WEIGHTED_ROWS`]).
    pub flags: u32,
    /// L1 penalty on W (the proximal step's α·λ₁ is lr·l1).
    pub l1: f32,
    /// μ of momentum, β₁ of Adam.
    pub beta1: f32,
    /// β₂ of Adam.
    pub beta2: f32,
    /// ε of Adam.
    pub eps: f32,
    /// Adam's bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ.
    pub c1: f32,
    /// See `c1`.
    pub c2: f32,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f32,
    /// Where the batch's row weights start in the weights ring (with flags bit 3).
    pub sw_offset: u32,
}

/// Flags bit 3: the forward kernels scale each row by its sample weight.
pub const WEIGHTED_ROWS: u32 = 8;

impl StepUniform {
    /// These parameters with a momentum or Adam step's (`p`; Nesterov is flags bit 2). The rows and rates stay
    /// this uniform's.
    pub fn with_optimizer(self, p: &crate::optim::StepParams<f32>) -> Self {
        StepUniform {
            beta1: p.beta1,
            beta2: p.beta2,
            eps: p.eps,
            c1: p.c1,
            c2: p.c2,
            weight_decay: p.weight_decay,
            flags: if p.nesterov { 4 } else { 0 },
            ..self
        }
    }
}

/// Mirrors `struct Chunk` in gather.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct ChunkUniform {
    /// First data-set row held by the chunk.
    pub first_row: u32,
    /// Rows held by the chunk.
    pub rows: u32,
}

/// Mirrors `struct HeldSet` in common.wgsl: the layout of a held set for the held kernels.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct HeldUniform {
    /// Rows of every chunk but the last.
    pub chunk_rows: u32,
    /// Chunks.
    pub chunks: u32,
    /// Padding to 16 bytes.
    pub pad: [u32; 2],
}

impl HeldUniform {
    /// The layout of a held set of `chunks` chunks of `chunk_rows` rows (the last may hold fewer).
    pub fn new(chunk_rows: usize, chunks: usize) -> Self {
        HeldUniform {
            chunk_rows: chunk_rows as u32,
            chunks: chunks as u32,
            pad: [0; 2],
        }
    }
}

/// The buffers the held kernels bind as their [`HELD_SLOTS`] chunk slots: a held set's chunks (at least one, at
/// most that many), unused slots repeating the first.
pub fn held_slots<'b>(chunks: &[&'b wgpu::Buffer]) -> [&'b wgpu::Buffer; HELD_SLOTS] {
    std::array::from_fn(|i| chunks.get(i).copied().unwrap_or(chunks[0]))
}

/// Constants of one pipeline: (name, value) pairs, sorted by name, as a cache key (values by their bits).
type ConstantsKey = Vec<(&'static str, u64)>;

/// Layouts and pipelines of every kernel on one device; pipelines cached by kernel and override constants.
#[derive(Debug)]
pub struct Kernels {
    device: wgpu::Device,
    pub(crate) step_layout: wgpu::BindGroupLayout,
    /// Per kernel; `None` for a kernel whose storage bindings exceed the device's limit (its callers take another
    /// path: [`Kernels::available`]).
    layouts: Vec<Option<wgpu::BindGroupLayout>>,
    pipeline_layouts: Vec<Option<wgpu::PipelineLayout>>,
    /// Each kernel's module and default pipeline, compiled when first used: a run compiles only the kernels of its
    /// path (on lavapipe building all 20 took 125 ms of a 0.29 s run; a driver compiling for a card takes longer).
    modules: Vec<OnceLock<wgpu::ShaderModule>>,
    defaults: Vec<OnceLock<wgpu::ComputePipeline>>,
    cache: Mutex<HashMap<(Kernel, ConstantsKey), wgpu::ComputePipeline>>,
    /// The window table where the device reads windows ([`Kernels::windowed`]): entry w, at w × `align` bytes,
    /// holds w.
    windows: Option<(wgpu::Buffer, u32)>,
}

fn entry(binding: u32, ty: wgpu::BufferBindingType, dynamic: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: dynamic,
            min_binding_size: None,
        },
        count: None,
    }
}

fn build_pipeline(
    device: &wgpu::Device,
    kernel: Kernel,
    layout: &wgpu::PipelineLayout,
    module: &wgpu::ShaderModule,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(kernel.name()),
        layout: Some(layout),
        module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            // fused_held.wgsl, logits_held.wgsl and grad_held.wgsl write every element of their workgroup memory
            // before reading it (their comments say where); zeroing up to 16 KiB per workgroup would be a cost per
            // dispatch for nothing.
            zero_initialize_workgroup_memory: !matches!(
                kernel,
                Kernel::FusedHeld | Kernel::LogitsHeld | Kernel::GradHeld
            ),
        },
        cache: None,
    })
}

impl Kernels {
    /// Compiles every shader and builds its pipeline with the default constants; a kernel that binds more storage
    /// buffers than the device allows is left out ([`Kernels::available`]).
    pub fn new(device: &wgpu::Device, windows: bool) -> Self {
        let windows = windows.then(|| {
            let align = device.limits().min_uniform_buffer_offset_alignment.max(16);
            let mut table = vec![0u32; (MAX_WINDOWS * align / 4) as usize];
            for w in 0..MAX_WINDOWS {
                table[(w * align / 4) as usize] = w;
            }
            let buffer = wgpu::util::DeviceExt::create_buffer_init(
                device,
                &wgpu::util::BufferInitDescriptor {
                    label: Some("window table"),
                    contents: bytemuck::cast_slice(&table),
                    usage: wgpu::BufferUsages::UNIFORM,
                },
            );
            (buffer, align)
        });
        let step_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("step"),
            entries: &[entry(0, wgpu::BufferBindingType::Uniform, true)],
        });
        let storage_limit = device.limits().max_storage_buffers_per_shader_stage as usize;
        let (mut layouts, mut pipeline_layouts) = (Vec::new(), Vec::new());
        for kernel in Kernel::ALL {
            let spec = kernel.spec();
            let limits = device.limits();
            // The fused kernel's workgroup: at least one invocation per row of its 64-row tile (Team::ONE; the GPU
            // shape takes as many more as the device holds, Team::for_limits) and 16 KiB of workgroup memory
            // (WebGPU's defaults; a downlevel device may offer less and takes the other path).
            let workgroup_fits = kernel != Kernel::FusedHeld
                || (Team::ONE.fits(&limits)
                    && limits.max_compute_workgroup_storage_size >= FUSED_WORKGROUP_BYTES);
            // Where the device reads windows: the window's index and data (uniform, at dynamic offsets) and the
            // gradient's sums between windows, at bindings 20–22 (window_uniform.wgsl).
            let window = kernel.window_operand().filter(|_| windows.is_some());
            let sums = usize::from(window.is_some_and(|(_, walk)| walk.carries_sums()));
            let quads = usize::from(window.is_some());
            if !workgroup_fits
                || spec.bindings.iter().filter(|&&a| a != Uniform).count() + sums + quads
                    > storage_limit
            {
                layouts.push(None);
                pipeline_layouts.push(None);
                continue;
            }
            let mut entries: Vec<_> = spec
                .bindings
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let ty = match a {
                        Read => wgpu::BufferBindingType::Storage { read_only: true },
                        ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                        Uniform => wgpu::BufferBindingType::Uniform,
                    };
                    entry(i as u32, ty, false)
                })
                .collect();
            if window.is_some() {
                entries.push(entry(20, wgpu::BufferBindingType::Uniform, true));
                entries.push(entry(21, wgpu::BufferBindingType::Uniform, true));
                entries.push(entry(
                    23,
                    wgpu::BufferBindingType::Storage { read_only: true },
                    false,
                ));
                if sums == 1 {
                    entries.push(entry(
                        22,
                        wgpu::BufferBindingType::Storage { read_only: false },
                        false,
                    ));
                }
            }
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(spec.name),
                entries: &entries,
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(spec.name),
                bind_group_layouts: &[Some(&step_layout), Some(&layout)],
                immediate_size: 0,
            });
            layouts.push(Some(layout));
            pipeline_layouts.push(Some(pipeline_layout));
        }
        Kernels {
            device: device.clone(),
            step_layout,
            layouts,
            pipeline_layouts,
            modules: Kernel::ALL.iter().map(|_| OnceLock::new()).collect(),
            defaults: Kernel::ALL.iter().map(|_| OnceLock::new()).collect(),
            cache: Mutex::new(HashMap::new()),
            windows,
        }
    }

    /// The pipeline layout of `kernel` and its module, compiled on first use; panics for a kernel that is not
    /// [`Kernels::available`] (callers check).
    fn compiled(&self, kernel: Kernel) -> (&wgpu::PipelineLayout, &wgpu::ShaderModule) {
        let i = kernel as usize;
        let Some(layout) = &self.pipeline_layouts[i] else {
            panic!("{}", Self::unavailable(kernel));
        };
        let module = self.modules[i].get_or_init(|| {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.name()),
                    source: wgpu::ShaderSource::Wgsl(
                        kernel
                            .source_for(
                                self.device.features().contains(wgpu::Features::SUBGROUP),
                                self.windows.is_some(),
                            )
                            .into(),
                    ),
                })
        });
        (layout, module)
    }

    /// Whether `kernel` was built on this device (its storage bindings are within the device's limit).
    pub fn available(&self, kernel: Kernel) -> bool {
        self.layouts[kernel as usize].is_some()
    }

    fn unavailable(kernel: Kernel) -> String {
        format!(
            "{} binds more storage buffers than this device allows; callers check Kernels::available",
            kernel.name()
        )
    }

    /// The pipeline of `kernel` with its default constants.
    pub fn pipeline(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        self.defaults[kernel as usize].get_or_init(|| {
            let (layout, module) = self.compiled(kernel);
            build_pipeline(
                &self.device,
                kernel,
                layout,
                module,
                kernel.spec().constants,
            )
        })
    }

    /// The pipeline of `kernel` with `constants` overriding its defaults (built once, then cached).
    pub fn pipeline_with(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        constants: &[(&'static str, f64)],
    ) -> wgpu::ComputePipeline {
        let mut merged: Vec<(&'static str, f64)> = kernel.spec().constants.to_vec();
        for &(name, value) in constants {
            match merged.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value,
                None => merged.push((name, value)),
            }
        }
        merged.sort_by(|a, b| a.0.cmp(b.0));
        let key: ConstantsKey = merged.iter().map(|&(n, v)| (n, v.to_bits())).collect();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry((kernel, key))
            .or_insert_with(|| {
                let (layout, module) = self.compiled(kernel);
                build_pipeline(device, kernel, layout, module, &merged)
            })
            .clone()
    }

    /// Whether this device reads the operand of the register tiles through uniform windows (CPU adapters whose
    /// uniform bindings hold 64 KiB: window_uniform.wgsl says why).
    pub fn windowed(&self) -> bool {
        self.windows.is_some()
    }

    /// Features (logits) or rows (gradient) of one window for `k` classes: the most whose W or R rows fit
    /// [`WINDOW_BYTES`], a multiple of what keeps each window's offset on the device's alignment; none where that is
    /// fewer than [`MIN_WINDOW_SPAN`] (past 64 classes).
    pub fn window_span(&self, k: u32) -> Option<u32> {
        let q = self.window_quantum()?;
        let span = (WINDOW_BYTES as u32 / 4 / k.max(1)) / q * q;
        (span >= MIN_WINDOW_SPAN).then_some(span)
    }

    /// Rows of W or R a window's span is a multiple of (window_uniform.wgsl's `WQ`): the device's uniform offset
    /// alignment in floats, so that every window's offset (a multiple of WQ rows of 4K bytes) is aligned.
    fn window_quantum(&self) -> Option<u32> {
        self.windows.as_ref().map(|(_, align)| align / 4)
    }

    /// `constants` with the windows' (WIN = 1 and the device's `WQ`) where a dispatch of `kernel` over `dims` is cut
    /// into windows ([`Kernel::windows`]); SB = the subgroup size where its tile spreads its shared operand over a
    /// subgroup ([`Kernel::spreads`]), else V4 = 1 where it reads that operand in quads ([`Kernel::reads_quads`]).
    pub fn with_windows(
        &self,
        ctx: &super::GpuContext,
        kernel: Kernel,
        dims: Dims,
        constants: &[(&'static str, f64)],
    ) -> Vec<(&'static str, f64)> {
        let mut merged = constants.to_vec();
        if let (Some(_), Some(q)) = (kernel.windows(ctx, dims, constants), self.window_quantum()) {
            if !merged.iter().any(|c| c.0 == "WIN") {
                merged.push(("WIN", 1.0));
                merged.push(("WQ", f64::from(q)));
            }
        }
        if merged.iter().any(|c| c.0 == "SB" || c.0 == "V4") {
            return merged;
        }
        if let Some(lanes) = kernel.spreads(ctx, constants) {
            merged.push(("SB", f64::from(lanes)));
        } else if kernel.reads_quads(ctx, dims, constants) {
            merged.push(("V4", 1.0));
        }
        merged
    }

    /// Binds `buffers` (in the kernel's binding order; a gradient kernel's sums between windows after them,
    /// [`window_sums_bytes`], used where the device reads windows) for `kernel`.
    pub fn bind(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let bindings = kernel.spec().bindings.len();
        let sums = kernel
            .window_operand()
            .is_some_and(|(_, walk)| walk.carries_sums());
        debug_assert_eq!(
            buffers.len(),
            bindings + usize::from(sums),
            "{} binds {} buffers",
            kernel.name(),
            bindings + usize::from(sums)
        );
        let mut entries: Vec<_> = buffers[..bindings]
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        if let (Some((table, _)), Some((operand, _))) = (&self.windows, kernel.window_operand()) {
            let data = buffers[operand];
            assert!(
                data.usage().contains(wgpu::BufferUsages::UNIFORM) && data.size() >= WINDOW_BYTES,
                "{}'s binding {operand} is read through windows: make it with buffers::storage_windowed",
                kernel.name()
            );
            let window = |binding, buffer, size| wgpu::BindGroupEntry {
                binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: 0,
                    size: std::num::NonZeroU64::new(size),
                }),
            };
            entries.push(window(20, table, 16));
            entries.push(window(21, data, WINDOW_BYTES));
            entries.push(wgpu::BindGroupEntry {
                binding: 23,
                resource: data.as_entire_binding(),
            });
            if sums {
                entries.push(wgpu::BindGroupEntry {
                    binding: 22,
                    resource: buffers[bindings].as_entire_binding(),
                });
            }
        }
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name()),
            layout: self.layouts[kernel as usize]
                .as_ref()
                .unwrap_or_else(|| panic!("{}", Self::unavailable(kernel))),
            entries: &entries,
        })
    }
}

/// A pipeline built for constants other than a kernel's defaults, with those constants (its grid depends on them).
#[derive(Debug, Clone)]
pub struct Tuned {
    /// The kernel.
    pub kernel: Kernel,
    /// Its pipeline for `constants`.
    pub pipeline: wgpu::ComputePipeline,
    /// The constants it was built with.
    pub constants: Vec<(&'static str, f64)>,
}

impl Tuned {
    /// The workgroup width for a kernel whose invocations each own a tile of rows or features: two subgroups of the
    /// adapter's smallest subgroup size, between 16 and 64. Small batches then still spread over several
    /// workgroups — on a software adapter each workgroup runs on one core — while a GPU with 32-wide subgroups keeps
    /// 64. Read from the adapter, never fixed for one machine; an autotuner can replace it.
    pub fn width_for(ctx: &super::GpuContext) -> u32 {
        (2 * ctx.info.subgroup_min_size.max(1)).clamp(16, 64)
    }

    /// `kernel` with workgroup width `WG` = `wg`, for a kernel with class tiles `KT` = [`class_tile`] of `classes`,
    /// and for the tiled products `TQ` = `quads` ([`tile_quads`]; from the pipeline cache).
    pub fn new(
        ctx: &super::GpuContext,
        kernel: Kernel,
        wg: u32,
        classes: usize,
        quads: u32,
    ) -> Self {
        let mut constants = vec![("WG", f64::from(wg))];
        if kernel.spec().constants.iter().any(|c| c.0 == "KT") {
            constants.push(("KT", class_tile(classes)));
        }
        constants.extend(tile_constants(kernel, quads));
        Tuned {
            kernel,
            pipeline: ctx.kernels.pipeline_with(&ctx.device, kernel, &constants),
            constants,
        }
    }

    /// `kernel` with its workgroup width chosen for `ctx`'s adapter ([`Tuned::width_for`]).
    pub fn for_adapter(
        ctx: &super::GpuContext,
        kernel: Kernel,
        classes: usize,
        quads: u32,
    ) -> Self {
        Self::new(ctx, kernel, Self::width_for(ctx), classes, quads)
    }
}

/// The classes a tile of the class-tiled kernels computes (their constant `KT`): all of them up to 16, else tiles of
/// 16. With K = 10 a tile of 16 would spend 6 of its 16 FMAs per element on classes it then discards.
pub fn class_tile(classes: usize) -> f64 {
    classes.clamp(1, 16) as f64
}

/// Quads one invocation of the tiled products owns (their constant `TQ`): of rows in the logits' and the fused
/// forward pass's tiles (logits_tile.wgsl, forward_tile.wgsl), of features in the gradient's (grad_tile.wgsl), beside
/// the classes of a class tile; `gpu_shape`: the kernels' GPU shape ([`fused_gpu_shape`]) or CPU adapters'. CPU
/// adapters take 2: llvmpipe (Mesa 25.0) loads a storage element lane by lane, a branch and a bounds check each, so
/// the loads, not the FMAs, bound these kernels there, and a second quad that shares every weight (residual) loaded
/// for the first cuts the loads per FMA from 20/64 to 24/128. On lavapipe (`bench --epochs 3|4 --adapter 0`, TQ 1 and
/// 2 alternated three times on a noisy machine, best epochs) epochs got 1.12–1.36× faster at 200,000 × 256 × 32
/// (batch 4,096), 1.18–1.76× at 20,000 × 784 × 200 (batch 1,024), and at 60,000 × 784 × 10 1.0–1.29× (batch 256),
/// 1.42–2.0× (4,096) and 1.24–1.42× (full). GPUs keep 1: twice the invocations, 64 accumulators each, and a
/// weight loaded by every invocation of a warp is one cached broadcast there. Results are bitwise the same for
/// either (tested).
pub fn tile_quads(gpu_shape: bool) -> u32 {
    if gpu_shape {
        1
    } else {
        2
    }
}

/// Rows of a staged [`Kernel::LogitsHeld`] workgroup's tile (logits_held.wgsl's `RT`).
pub const LOGITS_STAGED_ROWS: u64 = 64;

/// The override constants of [`Kernel::LogitsHeld`] in its staged GPU shape for `k` classes: STAGE = 1, CT class
/// tiles of 16 to a workgroup (at most 3, fewer when K has fewer) and WG = 64 · CT invocations.
pub fn logits_staged_constants(k: u32) -> Vec<(&'static str, f64)> {
    let ct = k.div_ceil(16).clamp(1, 3);
    vec![
        ("STAGE", 1.0),
        ("CT", f64::from(ct)),
        ("WG", (LOGITS_STAGED_ROWS * u64::from(ct)) as f64),
    ]
}

/// The override constants that put [`Kernel::GradHeld`], split over rows, in its staged GPU shape: STAGE = 1 and its
/// workgroup of 64 (16 feature quads × 4 class tiles).
pub fn grad_staged_constants() -> Vec<(&'static str, f64)> {
    vec![("STAGE", 1.0), ("WG", 64.0)]
}

/// The tile sizes [`tile_quads`] may choose, each tested on every adapter.
pub const TILE_QUADS: [u32; 2] = [1, 2];

/// `TQ` = `quads` for a kernel that declares it (the tiled products), nothing for the others.
pub fn tile_constants(kernel: Kernel, quads: u32) -> Vec<(&'static str, f64)> {
    if kernel.spec().constants.iter().any(|c| c.0 == "TQ") {
        vec![("TQ", f64::from(quads))]
    } else {
        Vec::new()
    }
}

impl Kernel {
    /// Workgroup counts (x, y) of a dispatch over `dims`, from the kernel's grid and default constants; must agree
    /// with the indexing in the shader.
    pub fn workgroups(self, ctx: &super::GpuContext, dims: Dims) -> (u32, u32) {
        self.workgroups_with(ctx, dims, &[])
    }

    /// [`Kernel::workgroups`] for a pipeline built with `constants` overriding the defaults.
    pub fn workgroups_with(
        self,
        ctx: &super::GpuContext,
        dims: Dims,
        constants: &[(&'static str, f64)],
    ) -> (u32, u32) {
        let constant = |name: &str| self.constant(constants, name).unwrap_or(1);
        let fold = |groups: u64| ctx.fold(u32::try_from(groups).unwrap_or(u32::MAX));
        match self.spec().grid {
            Grid::Items(items) => fold(items(dims).div_ceil(constant("WG"))),
            Grid::Groups(groups) => fold(groups(dims)),
            Grid::Segments => fold(u64::from(segments(
                dims.rows,
                constant("RT") as u32,
                constant("SEGS") as u32,
            ))),
            Grid::Teams(items) => fold(items(dims).div_ceil(TEAM_ITEMS)),
            // logits_held.wgsl's staged shape: row tiles of 64 × groups of CT class tiles.
            Grid::RowsByClassTiles if self.constant(constants, "STAGE").unwrap_or(0) != 0 => (
                u64::from(dims.rows).div_ceil(LOGITS_STAGED_ROWS) as u32,
                u64::from(dims.k).div_ceil(16).div_ceil(constant("CT")) as u32,
            ),
            Grid::RowsByClassTiles => (
                u64::from(dims.rows)
                    .div_ceil(4 * constant("TQ"))
                    .div_ceil(constant("WG")) as u32,
                u64::from(dims.k).div_ceil(16) as u32,
            ),
            // grad_held.wgsl's staged shape: groups of 16 feature quads (the bias's after the last) × (segment,
            // group of 4 class tiles).
            Grid::FeaturesByClassTiles if self.constant(constants, "STAGE").unwrap_or(0) != 0 => {
                let segs = segments(dims.rows, GRAD_UNIT_ROWS, constant("SEGS") as u32).max(1);
                (
                    (u64::from(dims.d).div_ceil(4) + 1).div_ceil(16) as u32,
                    (u64::from(dims.k).div_ceil(16).div_ceil(4) * u64::from(segs)) as u32,
                )
            }
            Grid::FeaturesByClassTiles => {
                // Split over rows, y also counts the segments.
                let segs = match constant("SEGS") {
                    0 => 1,
                    most => segments(dims.rows, GRAD_UNIT_ROWS, most as u32).max(1),
                };
                (
                    (u64::from(dims.d).div_ceil(4) + 1)
                        .div_ceil(constant("TQ"))
                        .div_ceil(constant("WG")) as u32,
                    (u64::from(dims.k).div_ceil(16) * u64::from(segs)) as u32,
                )
            }
            Grid::Plane => (
                u64::from(dims.d).div_ceil(constant("WG")) as u32,
                dims.rows
                    .min(64)
                    .min(ctx.limits.max_compute_workgroups_per_dimension)
                    .max(1),
            ),
            Grid::Single => (1, 1),
        }
    }

    /// The value of the override constant `name` in a pipeline built with `constants`: theirs, else the kernel's
    /// default; None when the shader declares no such constant.
    pub fn constant(self, constants: &[(&'static str, f64)], name: &str) -> Option<u64> {
        constants
            .iter()
            .chain(self.spec().constants)
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v as u64)
    }

    /// Invocations in one workgroup of this kernel built with `constants`: its `WG`, or the fixed size its shader
    /// declares.
    pub fn workgroup_size(self, constants: &[(&'static str, f64)]) -> u64 {
        match self {
            Kernel::FusedHeld => {
                self.constant(constants, "RT").unwrap_or(64)
                    * self.constant(constants, "TEAM").unwrap_or(1)
            }
            Kernel::Metrics => 256,
            Kernel::Reduce => TEAM_ITEMS * self.constant(constants, "TEAM").unwrap_or(1),
            _ => self.constant(constants, "WG").unwrap_or(1),
        }
    }

    /// The longest chain of dependent iterations one invocation runs over `dims` — the rows or features it walks
    /// in sequence (what a GPU cannot spread over its cores, and waits on memory for): read from each shader's
    /// loops. Sparse kernels walk a row's non-zeros, bounded here by the features.
    pub fn serial_steps(self, dims: Dims, constants: &[(&'static str, f64)]) -> u64 {
        let (rows, d, k) = (u64::from(dims.rows), u64::from(dims.d), u64::from(dims.k));
        let constant = |name: &str| self.constant(constants, name);
        match self {
            // Each invocation copies its column of up to 64 workgroups' rows.
            Kernel::Gather => rows.div_ceil(rows.clamp(1, 64)),
            // A row's (or 4 rows') dot products over every feature.
            Kernel::Logits
            | Kernel::Forward
            | Kernel::ForwardHeld
            | Kernel::LogitsHeld
            | Kernel::SparseLogits => d,
            Kernel::Softmax => k,
            // Every row of the batch (or its segment's, split), for its 4 features.
            Kernel::Grad | Kernel::GradHeld => match constant("SEGS") {
                Some(most) if most > 0 => {
                    let unit = u64::from(GRAD_UNIT_ROWS);
                    rows.div_ceil(unit).div_ceil(most) * unit
                }
                _ => rows,
            },
            Kernel::SparseGrad => rows,
            Kernel::Metrics => rows.div_ceil(256),
            // Its lane's share of a row's features, then its segment's tiles' rows.
            Kernel::FusedHeld => {
                let rt = constant("RT").unwrap_or(64).max(1);
                let tiles = rows.div_ceil(rt);
                let per = tiles.div_ceil(u64::from(fused_max_segments(dims.d, dims.k)).max(1));
                let lanes = constant("TEAM").unwrap_or(1).max(1);
                d.div_ceil(lanes).max(per * rt)
            }
            // Its lane's share of the segments.
            Kernel::Reduce => u64::from(segments(
                dims.rows,
                constant("UNIT").unwrap_or(64) as u32,
                constant("SEGS").unwrap_or(1024) as u32,
            ))
            .div_ceil(constant("TEAM").unwrap_or(1).max(1)),
            Kernel::Update | Kernel::SparseUpdate | Kernel::UpdateMomentum | Kernel::UpdateAdam => {
                1
            }
            Kernel::CeilingRead | Kernel::CeilingFma => 0,
        }
    }

    /// Records one dispatch of this kernel into `pass`, with step parameters at `step_offset` of `steps`.
    pub fn record(
        self,
        ctx: &super::GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        steps: &wgpu::BindGroup,
        step_offset: u32,
        buffers: &wgpu::BindGroup,
        dims: Dims,
    ) {
        self.record_built(ctx, &[], pass, (steps, step_offset), buffers, dims);
    }

    /// [`Kernel::record`] with the kernel's pipeline for `constants` (its default for none), built with the
    /// windows' constants where the dispatch is cut into windows (so no pipeline without them is built for it).
    pub fn record_built(
        self,
        ctx: &super::GpuContext,
        constants: &[(&'static str, f64)],
        pass: &mut wgpu::ComputePass<'_>,
        at: (&wgpu::BindGroup, u32),
        buffers: &wgpu::BindGroup,
        dims: Dims,
    ) {
        let constants = ctx.kernels.with_windows(ctx, self, dims, constants);
        if constants.is_empty() {
            let pipeline = ctx.kernels.pipeline(self);
            self.record_with(ctx, (pipeline, &constants), pass, at, buffers, dims);
        } else {
            let pipeline = ctx.kernels.pipeline_with(&ctx.device, self, &constants);
            self.record_with(ctx, (&pipeline, &constants), pass, at, buffers, dims);
        }
    }

    /// [`Kernel::record`] with one of the kernel's pipelines built for other `constants` (from
    /// [`Kernels::pipeline_with`]), its grid sized for them.
    pub fn record_with(
        self,
        ctx: &super::GpuContext,
        (pipeline, constants): (&wgpu::ComputePipeline, &[(&'static str, f64)]),
        pass: &mut wgpu::ComputePass<'_>,
        (steps, step_offset): (&wgpu::BindGroup, u32),
        buffers: &wgpu::BindGroup,
        dims: Dims,
    ) {
        let (x, y) = self.workgroups_with(ctx, dims, constants);
        pass.set_bind_group(0, steps, &[step_offset]);
        let Some((_, align)) = ctx
            .kernels
            .windows
            .as_ref()
            .filter(|_| self.window_operand().is_some())
        else {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(1, buffers, &[]);
            pass.dispatch_workgroups(x, y, 1);
            return;
        };
        // A pipeline built without the windows' or the quads' constants (a tuned candidate) is rebuilt with them.
        let merged = ctx.kernels.with_windows(ctx, self, dims, constants);
        if merged.len() > constants.len() {
            pass.set_pipeline(&ctx.kernels.pipeline_with(&ctx.device, self, &merged));
        } else {
            pass.set_pipeline(pipeline);
        }
        match self.windows(ctx, dims, constants) {
            Some((span, count)) => {
                let stride = u64::from(span) * u64::from(dims.k) * 4;
                for w in 0..count {
                    let data = u32::try_from(u64::from(w) * stride).unwrap_or(u32::MAX);
                    pass.set_bind_group(1, buffers, &[w * align, data]);
                    pass.dispatch_workgroups(x, y, 1);
                }
            }
            None => {
                pass.set_bind_group(1, buffers, &[0, 0]);
                pass.dispatch_workgroups(x, y, 1);
            }
        }
    }

    /// Whether a dispatch of this kernel over `dims` reads its tile's 16 classes of W or R as four vec4 (V4 = 1,
    /// window_uniform.wgsl): the register tiles of the logits and the gradient (not the staged GPU shape), on devices
    /// that read windows (CPU adapters: [`Kernels::windowed`]), where K is a multiple of 4 so that every quad of
    /// classes starts on a vec4. On lavapipe a storage load is a loop over the lanes that fetches all of a lane's
    /// components in one pass: at 20,000 × 784 × 200 (batch 1,024, Vulkan, alternating) quads made the epoch
    /// 1.12–1.26× faster (logits and grad each about 1.2×; `bench --shape 20000,784,200 --batch 1024`).
    pub fn reads_quads(
        self,
        ctx: &super::GpuContext,
        dims: Dims,
        constants: &[(&'static str, f64)],
    ) -> bool {
        self.cpu_class_tile(ctx, constants) && dims.k.is_multiple_of(4)
    }

    /// Whether a dispatch of this kernel built with `constants` is a register tile of 16 classes (the logits' or the
    /// gradient's: [`Walk::in_class_tiles`], not the staged GPU shape) on a device that reads windows (CPU adapters:
    /// [`Kernels::windowed`]) — where the tile may read its operand in quads or spread it over a subgroup.
    fn cpu_class_tile(self, ctx: &super::GpuContext, constants: &[(&'static str, f64)]) -> bool {
        self.window_operand()
            .is_some_and(|(_, walk)| walk.in_class_tiles())
            && ctx.kernels.windowed()
            && self.constant(constants, "STAGE").unwrap_or(0) == 0
    }

    /// The subgroup size over which this kernel's tile spreads its shared operand (SB, spread_subgroup.wgsl): the
    /// register tiles of the logits and the gradient (not the staged GPU shape) on devices that read windows (CPU
    /// adapters: [`Kernels::windowed`]) and whose subgroups hold their lanes in index order
    /// ([`super::GpuContext::spread_lanes`]), in workgroups of whole subgroups. Each lane then loads 16 / SB of the
    /// tile's 16 classes instead of all 16. On lavapipe (Vulkan, `bench --epochs 3`, two runs alternating with the
    /// build before): at 20,000 × 784 × 200, batch 1,024, logits 1.33–1.41× and gradient 1.24–1.37× faster; at
    /// 200,000 × 256 × 32, batch 4,096, both 1.12–1.16×; at 60,000 × 784 × 10, batch 4,096, the gradient 1.1–1.25×.
    pub fn spreads(
        self,
        ctx: &super::GpuContext,
        constants: &[(&'static str, f64)],
    ) -> Option<u32> {
        if !self.cpu_class_tile(ctx, constants) {
            return None;
        }
        let lanes = ctx.spread_lanes()?;
        let width = self.constant(constants, "WG").unwrap_or(64);
        width.is_multiple_of(u64::from(lanes)).then_some(lanes)
    }

    /// The windows a dispatch of this kernel over `dims` is cut into where the device reads them
    /// ([`Kernels::windowed`]): (features or rows a window, windows) for the register tiles (not the staged GPU
    /// shape, not a gradient split over rows); none where the device reads none, the shape's span is empty or it
    /// would take more than [`MAX_WINDOWS`].
    pub fn windows(
        self,
        ctx: &super::GpuContext,
        dims: Dims,
        constants: &[(&'static str, f64)],
    ) -> Option<(u32, u32)> {
        let (_, walk) = self.window_operand()?;
        if self.constant(constants, "STAGE").unwrap_or(0) != 0
            || self.constant(constants, "SEGS").unwrap_or(0) != 0
        {
            return None;
        }
        let span = ctx.kernels.window_span(dims.k)?;
        let length = if walk == Walk::Rows {
            dims.rows
        } else {
            dims.d
        };
        let count = length.div_ceil(span).max(1);
        (count <= walk.most_windows()).then_some((span, count))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_one_pass_kernel_is_parallel_in_the_batch_at_the_issues_shape() {
        // 60,000 × 784 × 10 at full batch: at least 65,536 invocations read X, none walks more than 1,024 rows or
        // features in sequence; the two-kernel gradient walks every row in 208 invocations.
        let full = Dims {
            rows: 60_000,
            d: 784,
            k: 10,
        };
        let segments = fused_segments(full.rows, full.d, full.k, Team::ONE);
        assert_eq!(segments, 938);
        // In the GPU shape (8 lanes a row: a workgroup of 512), 480,256 invocations, each walking 98 features.
        let team = Team {
            lanes: 8,
            subgroups: true,
        };
        let gpu = fused_constants(Kernel::FusedHeld, 784, 10, 1, true, team);
        assert_eq!(Kernel::FusedHeld.workgroup_size(&gpu), 512);
        assert!(u64::from(segments) * Kernel::FusedHeld.workgroup_size(&gpu) >= 65_536);
        assert_eq!(Kernel::FusedHeld.serial_steps(full, &gpu), 98);
        // One invocation a row (CPU adapters) walks its 784 features.
        assert_eq!(Kernel::FusedHeld.serial_steps(full, &[]), 784);
        // The reduction: 8 lanes an element walk 118 of the 938 segments each; one an element all of them.
        let reduce = fused_constants(Kernel::Reduce, 784, 10, 1, true, team);
        assert_eq!(Kernel::Reduce.serial_steps(full, &reduce), 118);
        assert_eq!(Kernel::Reduce.workgroup_size(&reduce), 512);
        let one = fused_constants(Kernel::Reduce, 784, 10, 1, true, Team::ONE);
        assert_eq!(Kernel::Reduce.serial_steps(full, &one), 938);
        assert_eq!(Kernel::GradHeld.serial_steps(full, &[]), 60_000);
        // Split over rows, the gradient walks at most 256 rows (235 segments here); its reduction 235 segments.
        let most = fused_max_segments(784, 10);
        let split = split_grad_constants(Kernel::Grad, most, Team::ONE);
        assert_eq!(Kernel::Grad.serial_steps(full, &split), 256);
        let reduce = split_grad_constants(Kernel::Reduce, most, Team::ONE);
        assert_eq!(Kernel::Reduce.serial_steps(full, &reduce), 235);
        // Invocations grow with the batch: 4 segments at batch 256.
        assert_eq!(fused_segments(256, 784, 10, Team::ONE), 4);
        // Many features: fewer segments, the partials within their budget.
        let wide = fused_max_segments(100_000, 32);
        assert!(
            u64::from(wide) * fused_partial_bytes(100_000, 32) <= FUSED_PARTIAL_BYTES && wide >= 1
        );
        // The constants each kernel declares, and no other.
        let c = fused_constants(Kernel::Reduce, 784, 10, 3, true, team);
        assert!(c.iter().all(|(n, _)| *n != "SLOTS" && *n != "CG"));
        assert!(c.contains(&("TEAM", 8.0)) && c.contains(&("SUBGROUPS", 1.0)));
        let f = fused_constants(
            Kernel::FusedHeld,
            784,
            10,
            3,
            false,
            team.without_subgroups(),
        );
        assert_eq!(f.len(), 7);
        assert!(f.contains(&("SUBGROUPS", 0.0)) && f.contains(&("TEAM", 8.0)));
        assert!(f.contains(&("RT", 64.0)));
        // The CPU adapters' shape: one invocation a row.
        let cpu = fused_constants(Kernel::FusedHeld, 784, 10, 3, false, Team::ONE);
        assert_eq!(Kernel::FusedHeld.workgroup_size(&cpu), 64);
    }

    #[test]
    fn a_wide_team_gives_a_small_batch_more_and_shorter_workgroups_and_a_large_one_the_same() {
        // A device whose subgroups hold 32 lanes in order (an NVIDIA card): 32 lanes a row in tiles of 16 rows.
        let widest = Team {
            lanes: 32,
            subgroups: true,
        };
        assert_eq!((widest.tile_rows(), widest.workgroup()), (16, 512));
        let most = fused_max_segments(784, 10);
        let dims = |rows| Dims {
            rows,
            d: 784,
            k: 10,
        };
        let shape = |team: Team, rows| {
            let c = fused_constants(Kernel::FusedHeld, 784, 10, 1, true, team);
            let (x, y) = (
                u64::from(fused_segments(rows, 784, 10, team)),
                Kernel::FusedHeld.workgroup_size(&c),
            );
            (x * y, x, Kernel::FusedHeld.serial_steps(dims(rows), &c))
        };
        // Batch 256: 16 workgroups of 512, each lane 25 features, where 8 lanes make 4 walking 98.
        let small = widest.for_rows(256, most);
        assert_eq!(small, widest);
        assert_eq!(shape(small, 256), (8_192, 16, 25));
        let eight = Team {
            lanes: 8,
            subgroups: true,
        };
        assert_eq!(shape(eight, 256), (2_048, 4, 98));
        // Batch 4,096: 256 workgroups where 8 lanes make 64.
        assert_eq!(shape(widest.for_rows(4_096, most), 4_096).1, 256);
        // Past 16 rows a segment 16 lanes (tiles of 32), past 32 rows 8 lanes (64): a full batch of 60,000 rows
        // runs the shape it ran before, 938 one-tile segments.
        assert_eq!(widest.for_rows(16_384, most).lanes, 32);
        assert_eq!(widest.for_rows(16_385, most).lanes, 16);
        assert_eq!(widest.for_rows(32_769, most).lanes, 8);
        let full = widest.for_rows(60_000, most);
        assert_eq!(full, eight);
        assert_eq!(shape(full, 60_000), (480_256, 938, 98));
        // A team of 8 lanes or fewer is not narrowed; the reduction takes at most 8 lanes an element.
        assert_eq!(eight.for_rows(60_000, 1), eight);
        let r = fused_constants(Kernel::Reduce, 784, 10, 1, true, widest);
        assert!(r.contains(&("TEAM", 8.0)) && r.contains(&("UNIT", 16.0)));
        assert_eq!(Kernel::Reduce.workgroup_size(&r), 512);
        assert!(split_grad_constants(Kernel::Reduce, most, widest).contains(&("TEAM", 8.0)));
        assert_eq!(
            widest.to_string(),
            "32 lanes a row in tiles of 16 rows, subgroup shuffles"
        );
        assert_eq!(eight.to_string(), "8 lanes a row, subgroup shuffles");
    }

    #[test]
    fn a_gpu_shapes_team_is_as_wide_as_its_workgroups_allow() {
        let limits = |invocations: u32, x: u32| wgpu::Limits {
            max_compute_invocations_per_workgroup: invocations,
            max_compute_workgroup_size_x: x,
            ..wgpu::Limits::default()
        };
        let yes = |_| true;
        // Subgroups that hold 32 lanes in order (an H200's warps): 32; 16 (some of Intel's): 16; only 8
        // (lavapipe's) or none: 8 lanes, 512 invocations; WebGPU's default 256: 4; a downlevel 128: 2.
        assert_eq!(Team::for_limits(&limits(1024, 1024), yes).lanes, 32);
        assert_eq!(
            Team::for_limits(&limits(1024, 1024), |lanes| lanes <= 16),
            Team {
                lanes: 16,
                subgroups: true
            }
        );
        assert_eq!(
            Team::for_limits(&limits(1024, 1024), |lanes| lanes <= 8),
            Team {
                lanes: 8,
                subgroups: true
            }
        );
        assert_eq!(Team::for_limits(&limits(1024, 1024), |_| false).lanes, 8);
        assert_eq!(Team::for_limits(&limits(256, 256), yes).lanes, 4);
        assert_eq!(Team::for_limits(&limits(1024, 128), yes).lanes, 2);
        assert_eq!(Team::for_limits(&limits(64, 64), yes), Team::ONE);
        // Subgroups only where the shuffles were found in order, for the team's size.
        let t = Team::for_limits(&limits(1024, 1024), |lanes| lanes == 4);
        assert_eq!((t.lanes, t.subgroups), (8, false));
        assert!(Team::for_limits(&limits(256, 256), |lanes| lanes == 4).subgroups);
    }

    use super::*;

    #[test]
    fn every_kernel_is_described_once_and_in_order() {
        for (i, k) in Kernel::ALL.iter().enumerate() {
            assert_eq!(k.spec().kernel, *k);
            assert_eq!(*k as usize, i);
            assert!(k.source().contains("fn main("), "{}", k.name());
            // The shared declarations come from the preamble only.
            assert!(!k.spec().source.contains("struct Step"), "{}", k.name());
            for (name, _) in k.spec().constants {
                assert!(
                    k.spec().source.contains(&format!("override {name}")),
                    "{} declares {name}",
                    k.name()
                );
            }
        }
    }
}
