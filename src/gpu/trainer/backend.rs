//! The [`Backend`] seam over the pieces of this folder.

use ndarray::{Array1, Array2};

use crate::data::RowSource;
use crate::error::{Error, Result};
use crate::gpu::buffers::read;
use crate::optim::{Optimizer, OptimizerState, Update};
use crate::params::{Params, Shape};
use crate::train::{Backend, Batch, Gradient, Held, Sums};

use super::{u32_of, Buffer2, GpuBackend, Op, Resident, Rows};

impl Backend for GpuBackend<'_> {
    fn device(&self) -> String {
        self.ctx.describe()
    }

    fn shape(&self) -> Shape {
        self.shape
    }

    /// The most rows one dispatch handles; larger batches are accepted and accumulated in pieces of this size.
    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn hold(&mut self, source: &mut dyn RowSource) -> Result<Held> {
        self.shape.check_source(source)?;
        if source.is_sparse() != self.sparse {
            return Err(self.wrong_kind(source.name()));
        }
        if self.sparse {
            self.hold_sparse(source)
        } else {
            self.hold_dense(source)
        }
    }

    fn release(&mut self, set: Held) -> Result<()> {
        self.resident(set)?;
        // Queued ops name the set by its slot: submit them first. The buffers live on until the submissions that
        // use them are done (wgpu counts references), and flush keeps at most two submissions in flight, so a
        // stream of chunks never has more than a few on the device.
        self.flush()?;
        self.held[set.id()] = Resident {
            rows: 0,
            chunks: Vec::new(),
            in_place: None,
            sparse: None,
            live: false,
        };
        Ok(())
    }

    fn holds_in_host_memory(&self) -> bool {
        // Sparse rows stay in host memory; a software adapter's device memory is host memory.
        self.sparse || self.ctx.info.device_type == wgpu::DeviceType::Cpu
    }

    fn accumulate(&mut self, batch: &Batch<'_>) -> Result<()> {
        // Sparse steps run none of the tuned kernels: nothing to time.
        if self.autotune && self.g_rows == 0 && !self.sparse {
            let on = self.tune_rows(batch);
            self.autotune_for(batch.len().min(self.max_batch), on)?;
        }
        for piece in self.pieces(batch)? {
            let (rows, offset) = self.stage(&piece, true)?;
            let slot = self.take_slot(piece.len());
            let flags = u32::from(self.g_rows > 0);
            let mut uniform =
                self.stage_weights(&piece, self.uniform(piece.len(), offset, slot, flags));
            if let Rows::Sparse { touched } = rows {
                uniform.d = touched;
            }
            self.ops.push(Op::Accumulate { rows, uniform });
            self.g_rows += piece.len() as u64;
        }
        Ok(())
    }

    fn forward(&mut self, batch: &Batch<'_>) -> Result<()> {
        for piece in self.pieces(batch)? {
            let (rows, offset) = self.stage(&piece, true)?;
            let slot = self.take_slot(piece.len());
            let mut uniform =
                self.stage_weights(&piece, self.uniform(piece.len(), offset, slot, 0));
            if let Rows::Sparse { touched } = rows {
                uniform.d = touched;
            }
            self.ops.push(Op::Forward { rows, uniform });
        }
        Ok(())
    }

    fn update(&mut self, u: &Update) -> Result<()> {
        if self.g_rows == 0 {
            return Err(Error::Internal(
                "update without accumulated gradient sums".into(),
            ));
        }
        let rows = u32_of(self.g_rows as usize, "rows in one update")?;
        self.reserve(0, false)?;
        let mut uniform = self.uniform(rows as usize, 0, 0, 0);
        uniform.lr = u.lr;
        uniform.l2 = u.l2;
        uniform.l1 = u.l1;
        let dense = match crate::optim::StepParams::of(u, rows as f32, self.optimizer.steps + 1)? {
            None => Op::Update { uniform },
            Some((p, adam)) => {
                self.ensure_slots(u.optimizer.slots().len(), None)?;
                Op::Optimize {
                    uniform: uniform.with_optimizer(&p),
                    adam,
                }
            }
        };
        if let Some((list, _)) = &self.sparse_update {
            // G and g_b hold zeros outside the touched columns. Without a penalty nothing else moves: update those
            // columns only. With one (L2 or L1) every weight shrinks: the dense update, then zero the consumed sums. No queued
            // op reads the list: the step's batches flushed the previous update before they were uploaded.
            let touched = std::mem::take(&mut self.touched);
            for &j in &touched {
                self.touched_mark[j as usize] = false;
            }
            if !touched.is_empty() {
                self.ctx
                    .queue
                    .write_buffer(list, 0, bytemuck::cast_slice(&touched));
            }
            let mut sparse = uniform;
            sparse.d = u32_of(touched.len(), "touched columns")?;
            if u.l2 > 0.0 || u.l1 > 0.0 || u.optimizer != Optimizer::Sgd {
                self.ops.push(dense);
                sparse.flags = 2;
                self.reserve(0, false)?;
            }
            self.ops.push(Op::SparseUpdate { uniform: sparse });
        } else {
            self.ops.push(dense);
        }
        self.g_rows = 0;
        self.optimizer.steps += 1;
        Ok(())
    }

    fn take_gradient(&mut self) -> Result<Gradient> {
        let (d, k) = (self.shape.d, self.shape.k);
        let rows = std::mem::take(&mut self.g_rows);
        if rows == 0 {
            return Ok(Gradient::zeros(self.shape));
        }
        let (w, b) = self.read_matrix(Buffer2::Gradient)?;
        if self.sparse {
            // The sparse gradient adds to zeros: leave them.
            self.write_matrix(Buffer2::Gradient, &vec![0.0; d * k], &vec![0.0; k])?;
            for j in std::mem::take(&mut self.touched) {
                self.touched_mark[j as usize] = false;
            }
        }
        Ok(Gradient {
            w: Array2::from_shape_vec((d, k), w.into_iter().map(f64::from).collect())
                .map_err(|e| Error::Internal(e.to_string()))?,
            b: b.into_iter().map(f64::from).collect(),
            rows,
        })
    }

    fn set_gradient(&mut self, g: &Gradient) -> Result<()> {
        g.check(self.shape)?;
        let w: Vec<f32> = g.w.iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = g.b.iter().map(|&v| v as f32).collect();
        self.write_matrix(Buffer2::Gradient, &w, &b)?;
        self.g_rows = g.rows;
        if self.sparse {
            // Any column may hold a sum now.
            self.touched = (0..self.shape.d as u32).collect();
            self.touched_mark.iter_mut().for_each(|m| *m = true);
        }
        Ok(())
    }

    fn take_sums(&mut self) -> Result<Sums> {
        self.drain_sums()?;
        Ok(std::mem::take(&mut self.host_sums))
    }

    fn set_sums(&mut self, sums: Sums) -> Result<()> {
        // The slots still on the device belong to the sums being replaced.
        self.drain_sums()?;
        self.host_sums = sums;
        Ok(())
    }

    fn params(&mut self) -> Result<Params> {
        let (d, k) = (self.shape.d, self.shape.k);
        let (w, b) = self.read_matrix(Buffer2::Weights)?;
        Ok(Params {
            w: Array2::from_shape_vec((d, k), w).map_err(|e| Error::Internal(e.to_string()))?,
            b: Array1::from(b),
        })
    }

    fn set_params(&mut self, p: &Params) -> Result<()> {
        p.check(self.shape)?;
        let w: Vec<f32> = p.w.iter().copied().collect();
        self.write_matrix(Buffer2::Weights, &w, &p.b.to_vec())
    }

    fn set_class_weights(&mut self, weights: Option<&[f32]>) -> Result<()> {
        let ones = vec![1.0f32; self.shape.k];
        let w = match weights {
            Some(w) => {
                crate::train::check_class_weights(self.shape, w)?;
                w
            }
            None => &ones,
        };
        // Queued ops must run with the weights they were queued under.
        self.flush()?;
        self.ctx
            .queue
            .write_buffer(&self.model.cw, 0, bytemuck::cast_slice(w));
        Ok(())
    }

    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        self.flush()?;
        let n = self.shape.d * self.shape.k + self.shape.k;
        let slots = match &self.opt_slots {
            Some((buffers, _)) => buffers
                .iter()
                .map(|b| read::<f32>(self.ctx, b, 0, n))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok(crate::train::state_of(self.optimizer.steps, &slots))
    }

    fn set_optimizer_state(&mut self, s: &OptimizerState) -> Result<()> {
        s.check(self.shape)?;
        self.flush()?;
        self.optimizer.steps = s.steps;
        self.opt_slots = None;
        if !s.tensors.is_empty() {
            let values: Vec<&[f32]> = s.tensors.iter().map(|(_, _, v)| v.as_slice()).collect();
            self.ensure_slots(values.len(), Some(&values))?;
        }
        Ok(())
    }
}
