//! One plan per op: the kernels an op records, in order, with the bind group, pipeline width and grid of each. Recording
//! a queued op ([`GpuBackend::record`]), counting a step's dispatches and passes over its rows (`bench`), and timing
//! the kernels autotune chooses widths for all read [`GpuBackend::plan`], so what is counted and tuned is what runs.

use crate::gpu::kernels::{class_tile, Dims, Kernel, StepUniform, Tuned};
use crate::train::Held;

use super::GpuBackend;

/// Where an op's rows are.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rows {
    /// Rows of held set `0`, by the perm entries staged for the op.
    Held(usize),
    /// Host rows, copied into the batch buffer.
    Host,
    /// The sparse batch in the sparse buffers, touching this many columns.
    Sparse { touched: u32 },
}

/// One dispatch of a step as `bench` reports it ([`GpuBackend::step_shape`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DispatchShape {
    /// The kernel.
    pub kernel: &'static str,
    /// Invocations the dispatch launches.
    pub invocations: u64,
    /// The longest chain of rows or features one invocation walks in sequence ([`Kernel::serial_steps`]).
    pub serial: u64,
    /// Whether it reads the batch's rows (X, or their gathered copy).
    pub reads_rows: bool,
    /// Dispatches it is recorded as: 1, or on a device that reads the tiles' shared operand through uniform
    /// windows, one per window ([`Kernel::windows`]), each walking `serial` features or rows.
    pub windows: u32,
    /// How the one-pass kernel shares a row's features ([`crate::gpu::kernels::Team`], from its `TEAM` and
    /// `SUBGROUPS`); none for the other kernels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

/// What a backend call queues.
#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    /// The forward pass and the gradient sums of a batch (or piece of one).
    Accumulate { rows: Rows, uniform: StepUniform },
    /// The forward pass only (loss and hits), for evaluation.
    Forward { rows: Rows, uniform: StepUniform },
    /// Plain SGD over every weight.
    Update { uniform: StepUniform },
    /// The update over the columns a sparse step touched (`uniform.d` of them, listed in the union buffer).
    SparseUpdate { uniform: StepUniform },
    /// A momentum or Adam step, with the optimizer's state buffers.
    Optimize { uniform: StepUniform, adam: bool },
}

impl Op {
    /// The op with its uniform set for a batch of `rows` rows of `shape` (the dispatches' sizes follow from it).
    fn with_rows(self, rows: u32, shape: crate::params::Shape) -> Op {
        let set = |u: StepUniform| StepUniform {
            rows,
            d: shape.d as u32,
            k: shape.k as u32,
            ..u
        };
        match self {
            Op::Accumulate { rows: r, uniform } => Op::Accumulate {
                rows: r,
                uniform: set(uniform),
            },
            Op::Forward { rows: r, uniform } => Op::Forward {
                rows: r,
                uniform: set(uniform),
            },
            Op::Update { uniform } => Op::Update {
                uniform: set(uniform),
            },
            Op::SparseUpdate { uniform } => Op::SparseUpdate {
                uniform: set(uniform),
            },
            Op::Optimize { uniform, adam } => Op::Optimize {
                uniform: set(uniform),
                adam,
            },
        }
    }

    /// The op's step uniform.
    pub(super) fn uniform(&self) -> StepUniform {
        match *self {
            Op::Accumulate { uniform, .. }
            | Op::Forward { uniform, .. }
            | Op::Update { uniform }
            | Op::SparseUpdate { uniform }
            | Op::Optimize { uniform, .. } => uniform,
        }
    }
}

/// The bind group a planned dispatch binds, resolved when it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Group {
    /// The batch buffers' group of this kernel (forward, logits, softmax, grad, metrics).
    Batch(Kernel),
    /// A training step's softmax, which writes the residual R where the gradient kernels read it.
    SoftmaxTrain,
    /// The gather group of chunk `chunk` of held set `set`.
    Gather {
        set: usize,
        chunk: usize,
    },
    /// The in-place groups of held set `set`: forward_held's (or logits_held's), grad_held's, fused_held's.
    HeldForward(usize),
    HeldGrad(usize),
    HeldFused(usize),
    /// The reduction of the fused kernel's (or the split gradient's) partials.
    Reduce,
    /// The gradient over the batch buffers split over rows, into the partials.
    GradSplit,
    /// The sparse batch's groups.
    SparseLogits,
    SparseGrad,
    /// The weights' plain update, the optimizer's update (with its state), the sparse update.
    Model,
    Optimizer,
    SparseUpdate,
}

/// How a planned dispatch's pipeline is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Width {
    /// At the width tuned for its kernel, or the kernel's own.
    Tuned,
    /// A held kernel: at the width tuned for the kernel it stands in for (the same invocation tiles), built for a set
    /// of `slots` chunks; `split`: the gradient split over rows into the partials, with the segments
    /// ([`crate::gpu::kernels::split_grad_constants`]).
    Held {
        like: Kernel,
        slots: u32,
        split: bool,
    },
    /// The one-pass kernels: their constants follow from the shape, the held set's `slots` and whether the op
    /// trains ([`crate::gpu::kernels::fused_constants`]); not tuned.
    Fused { slots: u32, train: bool },
    /// The gradient split over rows and its reduction: the gradient at its tuned width, with the segments
    /// ([`crate::gpu::kernels::split_grad_constants`]).
    Split,
    /// A training step's softmax: at its tuned width (or its own), built with `TRAIN` = 1, so that it writes the
    /// residual R in place of S (softmax.wgsl).
    Train,
}

/// One dispatch of an op's plan.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dispatch {
    pub(super) kernel: Kernel,
    pub(super) group: Group,
    pub(super) width: Width,
    pub(super) dims: Dims,
}

impl Dispatch {
    /// The kernel whose tuned width this dispatch runs at: its own, or for a held kernel the one it stands in for.
    pub(super) fn tuned_as(&self) -> Kernel {
        match self.width {
            Width::Tuned | Width::Fused { .. } | Width::Split | Width::Train => self.kernel,
            Width::Held { like, .. } => like,
        }
    }

    /// Whether the kernel reads the batch's rows (X, or the batch's gathered copy of them).
    fn reads_rows(&self) -> bool {
        matches!(
            self.kernel,
            Kernel::Gather
                | Kernel::Logits
                | Kernel::Forward
                | Kernel::Grad
                | Kernel::ForwardHeld
                | Kernel::LogitsHeld
                | Kernel::GradHeld
                | Kernel::FusedHeld
                | Kernel::SparseLogits
                | Kernel::SparseGrad
        )
    }
}

impl GpuBackend<'_> {
    /// The kernels `op` records, in order.
    ///
    /// Long on purpose: every op's kernels in one match, the one list recording, counting and tuning read.
    pub(super) fn plan(&self, op: &Op) -> Vec<Dispatch> {
        let (d, k) = (self.shape.d as u32, self.shape.k as u32);
        let uniform = op.uniform();
        let dims = Dims {
            rows: uniform.rows,
            d,
            k,
        };
        let tuned = |kernel: Kernel, group: Group, dims: Dims| Dispatch {
            kernel,
            group,
            width: Width::Tuned,
            dims,
        };
        let (rows, train) = match *op {
            Op::Accumulate { rows, .. } => (rows, true),
            Op::Forward { rows, .. } => (rows, false),
            Op::Update { .. } => return vec![tuned(Kernel::Update, Group::Model, dims)],
            Op::Optimize { adam, .. } => {
                let kernel = if adam {
                    Kernel::UpdateAdam
                } else {
                    Kernel::UpdateMomentum
                };
                return vec![tuned(kernel, Group::Optimizer, dims)];
            }
            Op::SparseUpdate { uniform } => {
                let dims = Dims {
                    d: uniform.d,
                    ..dims
                };
                return vec![tuned(Kernel::SparseUpdate, Group::SparseUpdate, dims)];
            }
        };
        // The softmax over the batch's logits: in a training step writing the residual R instead of S.
        let softmax = |train: bool, dims: Dims| Dispatch {
            kernel: Kernel::Softmax,
            group: if train {
                Group::SoftmaxTrain
            } else {
                Group::Batch(Kernel::Softmax)
            },
            width: if train { Width::Train } else { Width::Tuned },
            dims,
        };
        // The reduction of the one-pass kernel's (width Fused) or the split gradient's (Split) partials, in segment
        // order.
        let reduce = |width: Width| Dispatch {
            kernel: Kernel::Reduce,
            group: Group::Reduce,
            width,
            dims,
        };
        let mut plan = Vec::with_capacity(6);
        match rows {
            Rows::Held(h) if self.held[h].in_place.is_some() && self.one_pass => {
                // One pass over the rows: the fused kernel's partials, then their reduction (which also sums the
                // loss and hits: no metrics kernel).
                let slots = self.held[h].chunks.len() as u32;
                let width = Width::Fused { slots, train };
                plan.push(Dispatch {
                    kernel: Kernel::FusedHeld,
                    group: Group::HeldFused(h),
                    width,
                    dims,
                });
                plan.push(reduce(width));
                return plan;
            }
            Rows::Held(h) if self.held[h].in_place.is_some() => {
                // Rows read where they are held: no gather copy.
                let slots = self.held[h].chunks.len() as u32;
                let held = |kernel, like, group| Dispatch {
                    kernel,
                    group,
                    width: Width::Held {
                        like,
                        slots,
                        split: false,
                    },
                    dims,
                };
                if self.fused() {
                    plan.push(held(
                        Kernel::ForwardHeld,
                        Kernel::Forward,
                        Group::HeldForward(h),
                    ));
                } else {
                    // K > 16: the logits (and the batch's labels) from the rows in place, then the softmax (and
                    // in training the residual, in the same kernel) over the batch buffers.
                    plan.push(held(
                        Kernel::LogitsHeld,
                        Kernel::Logits,
                        Group::HeldForward(h),
                    ));
                    plan.push(softmax(train, dims));
                }
                if train && self.split_grad {
                    // GPUs: split over the rows into per-segment partials, then their reduction in segment order.
                    plan.push(Dispatch {
                        kernel: Kernel::GradHeld,
                        group: Group::HeldGrad(h),
                        width: Width::Held {
                            like: Kernel::Grad,
                            slots,
                            split: true,
                        },
                        dims,
                    });
                    plan.push(reduce(Width::Split));
                } else if train {
                    plan.push(held(Kernel::GradHeld, Kernel::Grad, Group::HeldGrad(h)));
                }
            }
            Rows::Sparse { .. } => {
                // For sparse kernels step.d is the batch's touched columns.
                let dims = Dims {
                    d: uniform.d,
                    ..dims
                };
                plan.push(tuned(Kernel::SparseLogits, Group::SparseLogits, dims));
                plan.push(softmax(train, dims));
                if train {
                    plan.push(tuned(Kernel::SparseGrad, Group::SparseGrad, dims));
                }
            }
            Rows::Held(_) | Rows::Host => {
                if let Rows::Held(set) = rows {
                    for chunk in 0..self.held[set].chunks.len() {
                        plan.push(tuned(Kernel::Gather, Group::Gather { set, chunk }, dims));
                    }
                }
                if self.fused() {
                    // Logits, softmax, loss and residual in one pass.
                    plan.push(tuned(Kernel::Forward, Group::Batch(Kernel::Forward), dims));
                } else {
                    plan.push(tuned(Kernel::Logits, Group::Batch(Kernel::Logits), dims));
                    plan.push(softmax(train, dims));
                }
                if train && self.split_grad {
                    // Split over the rows into per-segment partials, then their reduction in segment order.
                    plan.push(Dispatch {
                        kernel: Kernel::Grad,
                        group: Group::GradSplit,
                        width: Width::Split,
                        dims,
                    });
                    plan.push(reduce(Width::Split));
                } else if train {
                    plan.push(tuned(Kernel::Grad, Group::Batch(Kernel::Grad), dims));
                }
            }
        }
        plan.push(tuned(Kernel::Metrics, Group::Batch(Kernel::Metrics), dims));
        plan
    }

    /// The ops one plain SGD step on rows of `set` queues: its accumulate and its update (a sparse backend's
    /// update covers the touched columns; a penalty or another optimizer adds a dense update before it).
    fn step_ops(&self, set: Held) -> [Op; 2] {
        let uniform = StepUniform::default();
        if self.sparse {
            [
                Op::Accumulate {
                    rows: Rows::Sparse { touched: 0 },
                    uniform,
                },
                Op::SparseUpdate { uniform },
            ]
        } else {
            [
                Op::Accumulate {
                    rows: Rows::Held(set.id()),
                    uniform,
                },
                Op::Update { uniform },
            ]
        }
    }

    /// Dispatches one plain SGD step on rows of `set` records: its accumulate (gathers and kernels) and its update.
    pub fn dispatches_per_step(&self, set: Held) -> usize {
        self.step_ops(set)
            .iter()
            .map(|op| self.plan(op).len())
            .sum()
    }

    /// Passes one training step on rows of `set` makes over its rows: each kernel that reads them (X, or their
    /// gathered copy), the gathers of all chunks counting as one.
    pub fn row_passes_per_step(&self, set: Held) -> usize {
        let plan: Vec<Dispatch> = self
            .step_ops(set)
            .iter()
            .flat_map(|op| self.plan(op))
            .collect();
        let gathers = plan.iter().any(|p| p.kernel == Kernel::Gather);
        usize::from(gathers)
            + plan
                .iter()
                .filter(|p| p.reads_rows() && p.kernel != Kernel::Gather)
                .count()
    }

    /// The bind group of a planned dispatch.
    fn group(&self, group: Group) -> &wgpu::BindGroup {
        let bg = &self.batch;
        let held = |set: usize| {
            self.held[set]
                .in_place
                .as_ref()
                .and_then(|p| p.groups.as_ref())
                .expect("bound when held or resized")
        };
        let sparse = || {
            self.sparse_buffers
                .as_ref()
                .expect("staged before it was queued")
        };
        match group {
            Group::Batch(Kernel::Forward) => &bg.forward,
            Group::Batch(Kernel::Logits) => &bg.logits,
            Group::Batch(Kernel::Softmax) => &bg.softmax,
            Group::SoftmaxTrain => &bg.softmax_train,
            Group::Batch(Kernel::Grad) => &bg.grad,
            Group::Batch(_) => &bg.metrics,
            Group::Gather { set, chunk } => self.held[set].chunks[chunk]
                .gather
                .as_ref()
                .expect("bound when held or resized"),
            Group::HeldForward(set) => &held(set).forward,
            Group::HeldGrad(set) => &held(set).grad,
            Group::HeldFused(set) => held(set)
                .fused
                .as_ref()
                .expect("bound when the backend runs the fused kernel"),
            Group::GradSplit => self
                .batch
                .grad_split
                .as_ref()
                .expect("made with the batch buffers when the gradient is split"),
            Group::Reduce => {
                &self
                    .fused_step
                    .as_ref()
                    .expect("made with the backend")
                    .reduce
            }
            Group::SparseLogits => &sparse().logits,
            Group::SparseGrad => &sparse().grad,
            Group::Model => &self.model.update,
            Group::Optimizer => {
                &self
                    .opt_slots
                    .as_ref()
                    .expect("made before the op was queued")
                    .1
            }
            Group::SparseUpdate => {
                &self
                    .sparse_update
                    .as_ref()
                    .expect("made with a sparse backend")
                    .1
            }
        }
    }

    /// The one-pass kernel's team for a batch of `rows` rows: the one [`GpuOptions::lanes`] asked for, else the
    /// device's widest narrowed for a large batch ([`crate::gpu::kernels::Team::for_rows`]).
    ///
    /// [`GpuOptions::lanes`]: super::GpuOptions::lanes
    fn team_for(&self, rows: u32) -> crate::gpu::kernels::Team {
        if self.team_asked {
            return self.team;
        }
        let most =
            crate::gpu::kernels::fused_max_segments(self.shape.d as u32, self.shape.k as u32);
        self.team.for_rows(rows, most)
    }

    /// The segments of a gradient split over rows, or of the reduction of its partials.
    fn split_constants(&self, kernel: Kernel) -> Vec<(&'static str, f64)> {
        crate::gpu::kernels::split_grad_constants(
            kernel,
            crate::gpu::kernels::fused_max_segments(self.shape.d as u32, self.shape.k as u32),
            self.team,
        )
    }

    /// Records one planned dispatch at step-uniform offset `at`, at the width tuned for it.
    pub(super) fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>, at: u32, p: &Dispatch) {
        let tuned = self.tuned.iter().find(|t| t.kernel == p.tuned_as());
        self.dispatch_with(pass, at, p, tuned);
    }

    /// The override constants a planned dispatch's pipeline is built with at the width of `tuned` (or the
    /// kernel's own): what recording builds and what the shape of the work is computed from.
    fn constants_of(&self, p: &Dispatch, tuned: Option<&Tuned>) -> Vec<(&'static str, f64)> {
        match p.width {
            Width::Tuned => tuned.map_or_else(Vec::new, |t| t.constants.clone()),
            Width::Train => {
                let mut c = tuned.map_or_else(Vec::new, |t| t.constants.clone());
                c.push(("TRAIN", 1.0));
                c
            }
            Width::Fused { slots, train } => crate::gpu::kernels::fused_constants(
                p.kernel,
                self.shape.d as u32,
                self.shape.k as u32,
                slots,
                train,
                self.team_for(p.dims.rows),
            ),
            Width::Split => {
                let mut c = match p.kernel {
                    Kernel::Reduce => Vec::new(),
                    _ => tuned.map_or_else(Vec::new, |t| t.constants.clone()),
                };
                c.extend(self.split_constants(p.kernel));
                c
            }
            Width::Held { slots, split, .. } => {
                let wg = tuned
                    .and_then(|t| t.constants.iter().find(|c| c.0 == "WG"))
                    .map_or(64.0, |c| c.1);
                let mut c = vec![
                    ("WG", wg),
                    ("SLOTS", f64::from(slots)),
                    ("KT", class_tile(self.shape.k)),
                ];
                c.extend(crate::gpu::kernels::tile_constants(p.kernel, self.quads()));
                let staged = match p.kernel {
                    Kernel::LogitsHeld => {
                        crate::gpu::kernels::logits_staged_constants(self.shape.k as u32)
                    }
                    Kernel::GradHeld if split => crate::gpu::kernels::grad_staged_constants(),
                    _ => Vec::new(),
                };
                if self.gpu_shape && !staged.is_empty() {
                    // Staged (coalesced reads of X), at the workgroup size that shape takes.
                    c.retain(|(name, _)| staged.iter().all(|(s, _)| s != name));
                    c.extend(staged);
                }
                if split {
                    c.extend(self.split_constants(p.kernel));
                }
                c
            }
        }
    }

    /// The shape of the work of one training step on `rows` rows of `set` (a piece of at most
    /// [`crate::Backend::max_batch`] rows): per dispatch of its plan, the kernel, its invocations, the longest
    /// serial loop of one invocation and whether it reads the rows — what `bench` reports.
    pub fn step_shape(&self, set: Held, rows: usize) -> Vec<DispatchShape> {
        let rows = rows.min(self.max_batch).max(1) as u32;
        self.step_ops(set)
            .iter()
            .flat_map(|op| {
                let op = op.with_rows(rows, self.shape);
                self.plan(&op)
            })
            .map(|p| {
                let tuned = self.tuned.iter().find(|t| t.kernel == p.tuned_as());
                let constants = self.constants_of(&p, tuned);
                let (x, y) = p.kernel.workgroups_with(self.ctx, p.dims, &constants);
                let windows = p.kernel.windows(self.ctx, p.dims, &constants);
                let serial = p.kernel.serial_steps(p.dims, &constants);
                DispatchShape {
                    kernel: p.kernel.name(),
                    invocations: u64::from(x) * u64::from(y) * p.kernel.workgroup_size(&constants),
                    serial: windows.map_or(serial, |(span, _)| serial.min(u64::from(span))),
                    reads_rows: p.reads_rows(),
                    windows: windows.map_or(1, |(_, count)| count),
                    team: (p.kernel == Kernel::FusedHeld).then(|| {
                        let constant = |name| p.kernel.constant(&constants, name).unwrap_or(0);
                        crate::gpu::kernels::Team {
                            lanes: constant("TEAM").max(1) as u32,
                            subgroups: constant("SUBGROUPS") != 0,
                        }
                        .to_string()
                    }),
                }
            })
            .collect()
    }

    /// Records one planned dispatch at the width of `tuned` (a candidate, when autotune times it), or the kernel's
    /// own without one.
    pub(super) fn dispatch_with(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        at: u32,
        p: &Dispatch,
        tuned: Option<&Tuned>,
    ) {
        let ctx = self.ctx;
        let group = self.group(p.group);
        match p.width {
            Width::Tuned => match tuned {
                Some(t) => p.kernel.record_with(
                    ctx,
                    (&t.pipeline, &t.constants),
                    pass,
                    (&self.steps.bind_group, at),
                    group,
                    p.dims,
                ),
                None => p
                    .kernel
                    .record(ctx, pass, &self.steps.bind_group, at, group, p.dims),
            },
            Width::Fused { .. } | Width::Held { .. } | Width::Split | Width::Train => {
                let constants = self.constants_of(p, tuned);
                p.kernel.record_built(
                    ctx,
                    &constants,
                    pass,
                    (&self.steps.bind_group, at),
                    group,
                    p.dims,
                );
            }
        }
    }

    /// Records the plan of `op` at step-uniform offset `at`, each dispatch followed (when profiling) by a timestamp
    /// closing its interval, logged under its kernel's name.
    pub(super) fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        at: u32,
        op: &Op,
        timestamps: Option<&wgpu::QuerySet>,
        log: &mut Vec<&'static str>,
    ) {
        for p in self.plan(op) {
            self.dispatch(pass, at, &p);
            if let Some(set) = timestamps {
                log.push(p.kernel.name());
                pass.write_timestamp(set, log.len() as u32);
            }
        }
    }
}
