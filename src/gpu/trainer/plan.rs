//! The ops a backend call queues and the kernels each op records.

use crate::gpu::kernels::{Dims, Kernel, StepUniform};
use crate::train::Held;

use super::GpuBackend;

#[derive(Debug, Clone, Copy)]
pub(super) enum Rows {
    Held(usize),
    Host,
    /// The sparse batch in the sparse buffers, touching this many columns.
    Sparse {
        touched: u32,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    Accumulate {
        rows: Rows,
        uniform: StepUniform,
    },
    Forward {
        rows: Rows,
        uniform: StepUniform,
    },
    Update {
        uniform: StepUniform,
    },
    /// The update over the columns a sparse step touched (`uniform.d` of them, listed in the union buffer).
    SparseUpdate {
        uniform: StepUniform,
    },
    /// A momentum or Adam step, with the optimizer's state buffers.
    Optimize {
        uniform: StepUniform,
        adam: bool,
    },
}

impl GpuBackend<'_> {
    /// Dispatches one training step on rows of `set` records: its accumulate (gathers and kernels) and its update.
    pub fn dispatches_per_step(&self, set: Held) -> usize {
        let accumulate = Op::Accumulate {
            rows: Rows::Held(set.id()),
            uniform: StepUniform::default(),
        };
        self.dispatches_of(&accumulate)
            + self.dispatches_of(&Op::Update {
                uniform: StepUniform::default(),
            })
    }

    /// Dispatches one op records: its gathers (one per chunk) and kernels.
    pub(super) fn dispatches_of(&self, op: &Op) -> usize {
        match op {
            Op::Accumulate { rows, .. } | Op::Forward { rows, .. } => {
                if let Rows::Held(h) = rows {
                    if self.held[*h].in_place.is_some() {
                        // forward_held (+ grad_held) + metrics.
                        return if matches!(op, Op::Accumulate { .. }) {
                            3
                        } else {
                            2
                        };
                    }
                }
                let gathers = match rows {
                    Rows::Held(h) => self.held[*h].chunks.len(),
                    Rows::Host | Rows::Sparse { .. } => 0,
                };
                gathers
                    + if matches!(op, Op::Accumulate { .. }) {
                        5
                    } else {
                        3
                    }
            }
            Op::Update { .. } | Op::SparseUpdate { .. } | Op::Optimize { .. } => 1,
        }
    }

    pub(super) fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        at: u32,
        op: &Op,
        timestamps: Option<&wgpu::QuerySet>,
        log: &mut Vec<&'static str>,
    ) {
        let ctx = self.ctx;
        let sb = &self.steps.bind_group;
        let (d, k) = (self.shape.d as u32, self.shape.k as u32);
        let bg = &self.batch;
        // Each dispatch, then (when profiling) a timestamp closing its interval.
        let mut stamp = |pass: &mut wgpu::ComputePass<'_>, name: &'static str| {
            if let Some(set) = timestamps {
                log.push(name);
                pass.write_timestamp(set, log.len() as u32);
            }
        };
        let dispatch = |pass: &mut wgpu::ComputePass<'_>,
                        stamp: &mut dyn FnMut(&mut wgpu::ComputePass<'_>, &'static str),
                        kernel: Kernel,
                        group: &wgpu::BindGroup,
                        dims: Dims| {
            match self.tuned.iter().find(|t| t.kernel == kernel) {
                Some(t) => kernel.record_with(
                    ctx,
                    (&t.pipeline, &t.constants),
                    pass,
                    (sb, at),
                    group,
                    dims,
                ),
                None => kernel.record(ctx, pass, sb, at, group, dims),
            }
            stamp(pass, kernel.name());
        };
        match *op {
            Op::Accumulate { rows, uniform } | Op::Forward { rows, uniform } => {
                let dims = Dims {
                    rows: uniform.rows,
                    d,
                    k,
                };
                let train = matches!(op, Op::Accumulate { .. });
                if let Rows::Held(h) = rows {
                    if let Some(p) = &self.held[h].in_place {
                        let g = p.groups.as_ref().expect("bound when held or resized");
                        // The held kernels run at the width tuned for the kernel they stand in for (the same
                        // invocation tiles), built for the set's chunk count.
                        let slots = f64::from(self.held[h].chunks.len() as u32);
                        let mut held =
                            |pass: &mut wgpu::ComputePass<'_>,
                             kernel: Kernel,
                             like: Kernel,
                             group: &wgpu::BindGroup| {
                                let wg = self
                                    .tuned
                                    .iter()
                                    .find(|t| t.kernel == like)
                                    .and_then(|t| t.constants.iter().find(|c| c.0 == "WG"))
                                    .map_or(64.0, |c| c.1);
                                let constants = [
                                    ("WG", wg),
                                    ("SLOTS", slots),
                                    ("KT", crate::gpu::kernels::class_tile(self.shape.k)),
                                ];
                                let pipeline =
                                    ctx.kernels.pipeline_with(&ctx.device, kernel, &constants);
                                kernel.record_with(
                                    ctx,
                                    (&pipeline, &constants),
                                    pass,
                                    (sb, at),
                                    group,
                                    dims,
                                );
                                stamp(pass, kernel.name());
                            };
                        held(pass, Kernel::ForwardHeld, Kernel::Forward, &g.forward);
                        if train {
                            held(pass, Kernel::GradHeld, Kernel::Grad, &g.grad);
                        }
                        dispatch(pass, &mut stamp, Kernel::Metrics, &bg.metrics, dims);
                        return;
                    }
                    for c in &self.held[h].chunks {
                        let group = c.gather.as_ref().expect("bound when held or resized");
                        dispatch(pass, &mut stamp, Kernel::Gather, group, dims);
                    }
                }
                if let Rows::Sparse { .. } = rows {
                    // For sparse kernels step.d is the batch's touched columns.
                    let dims = Dims {
                        rows: uniform.rows,
                        d: uniform.d,
                        k,
                    };
                    let sb = self
                        .sparse_buffers
                        .as_ref()
                        .expect("staged before it was queued");
                    dispatch(pass, &mut stamp, Kernel::SparseLogits, &sb.logits, dims);
                    dispatch(pass, &mut stamp, Kernel::Softmax, &bg.softmax, dims);
                    if train {
                        dispatch(pass, &mut stamp, Kernel::Residual, &bg.residual, dims);
                        dispatch(pass, &mut stamp, Kernel::SparseGrad, &sb.grad, dims);
                    }
                    dispatch(pass, &mut stamp, Kernel::Metrics, &bg.metrics, dims);
                    return;
                }
                if self.fused() {
                    // Logits, softmax, loss and residual in one pass.
                    dispatch(pass, &mut stamp, Kernel::Forward, &bg.forward, dims);
                } else {
                    dispatch(pass, &mut stamp, Kernel::Logits, &bg.logits, dims);
                    dispatch(pass, &mut stamp, Kernel::Softmax, &bg.softmax, dims);
                    if train {
                        dispatch(pass, &mut stamp, Kernel::Residual, &bg.residual, dims);
                    }
                }
                if train {
                    dispatch(pass, &mut stamp, Kernel::Grad, &bg.grad, dims);
                }
                dispatch(pass, &mut stamp, Kernel::Metrics, &bg.metrics, dims);
            }
            Op::Update { uniform } => {
                let dims = Dims {
                    rows: uniform.rows,
                    d,
                    k,
                };
                dispatch(pass, &mut stamp, Kernel::Update, &self.model.update, dims);
            }
            Op::Optimize { uniform, adam } => {
                let dims = Dims {
                    rows: uniform.rows,
                    d,
                    k,
                };
                let (_, group) = self
                    .opt_slots
                    .as_ref()
                    .expect("made before the op was queued");
                let kernel = if adam {
                    Kernel::UpdateAdam
                } else {
                    Kernel::UpdateMomentum
                };
                dispatch(pass, &mut stamp, kernel, group, dims);
            }
            Op::SparseUpdate { uniform } => {
                let dims = Dims {
                    rows: uniform.rows,
                    d: uniform.d,
                    k,
                };
                let group = self
                    .sparse_update
                    .as_ref()
                    .map(|(_, g)| g)
                    .expect("made with a sparse backend");
                dispatch(pass, &mut stamp, Kernel::SparseUpdate, group, dims);
            }
        }
    }
}
