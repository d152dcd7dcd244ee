//! Per-kernel GPU time from timestamp queries written between dispatches.

use crate::error::Result;
use crate::gpu::buffers::read;

use super::GpuBackend;

/// Per-kernel GPU time from timestamps written between dispatches (`TIMESTAMP_QUERY_INSIDE_PASSES`).
#[derive(Debug)]
pub(super) struct Profiler {
    pub(super) set: wgpu::QuerySet,
    pub(super) resolve: wgpu::Buffer,
    pub(super) capacity: u32,
    /// Nanoseconds and dispatches per kernel (or pass of one) since the last take.
    pub(super) totals: Vec<(&'static str, f64, u64)>,
}

/// Time one kernel took over the dispatches profiled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelTime {
    /// The kernel's name.
    pub kernel: String,
    /// Its dispatches.
    pub dispatches: u64,
    /// Their summed GPU time, seconds.
    pub seconds: f64,
}

impl GpuBackend<'_> {
    /// Starts timing every dispatch with timestamps (slower: each submission is then waited for and read back).
    /// Returns false, and changes nothing, when the device cannot write timestamps inside a compute pass.
    pub fn enable_profiling(&mut self) -> bool {
        let needed =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if !self.ctx.features.contains(needed) {
            return false;
        }
        let capacity = wgpu::QUERY_SET_MAX_QUERIES;
        self.profiler = Some(Profiler {
            set: self.ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: capacity,
            }),
            resolve: self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: u64::from(capacity) * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            capacity,
            totals: Vec::new(),
        });
        true
    }

    /// The GPU time of each kernel since profiling was enabled or last taken, slowest first.
    pub fn take_profile(&mut self) -> Result<Vec<KernelTime>> {
        self.flush()?;
        let Some(p) = self.profiler.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out: Vec<KernelTime> = std::mem::take(&mut p.totals)
            .into_iter()
            .map(|(k, ns, n)| KernelTime {
                kernel: k.to_string(),
                dispatches: n,
                seconds: ns * 1e-9,
            })
            .collect();
        out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Ok(out)
    }

    /// Adds the time between consecutive timestamps of the last submission to the kernel that ran between them.
    pub(super) fn account(&mut self, log: &[&'static str]) -> Result<()> {
        let Some(p) = self.profiler.as_mut() else {
            return Ok(());
        };
        let ticks = read::<u64>(self.ctx, &p.resolve, 0, log.len() + 1)?;
        let period = f64::from(self.ctx.queue.get_timestamp_period());
        for (kernel, pair) in log.iter().zip(ticks.windows(2)) {
            let ns = pair[1].saturating_sub(pair[0]) as f64 * period;
            match p.totals.iter_mut().find(|(k, _, _)| k == kernel) {
                Some(t) => {
                    t.1 += ns;
                    t.2 += 1;
                }
                None => p.totals.push((*kernel, ns, 1)),
            }
        }
        Ok(())
    }
}
