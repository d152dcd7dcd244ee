//! `softmax-wgpu devices`: every adapter wgpu finds, with the limits that matter here.

use std::process::ExitCode;

use anyhow::Result;
use softmax_wgpu::error::bytes;
use softmax_wgpu::gpu::{self, AdapterSummary};

use super::args::{BackendArg, DevicesArgs};
use super::common::yes;

/// Runs the command.
pub fn run(a: DevicesArgs) -> Result<ExitCode> {
    let found: Vec<AdapterSummary> = gpu::adapters(BackendArg::backends(a.backend))
        .iter()
        .enumerate()
        .map(|(i, ad)| AdapterSummary {
            // Listed is not usable: open each as the trainers would, and say why one cannot be.
            open_error: gpu::try_open(ad).err().map(|e| e.to_string()),
            ..AdapterSummary::of(i, ad)
        })
        .collect();
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        outln!("no GPU adapter found; `train` will use the CPU (--device cpu)");
    }
    for s in &found {
        outln!(
            "[{}] {} — {} ({}), driver: {}",
            s.index,
            s.name,
            s.backend,
            s.device_type,
            s.driver
        );
        outln!(
            "    max storage binding {} · max buffer {} · workgroup ≤ {:?}, {} invocations · {} workgroups/dim",
            bytes(s.max_storage_buffer_binding_size),
            bytes(s.max_buffer_size),
            s.max_workgroup_size,
            s.max_invocations_per_workgroup,
            s.max_workgroups_per_dimension
        );
        outln!(
            "    subgroups: {} (sizes {}–{}) · timestamp queries: {} · shader f64: {}",
            yes(s.subgroups),
            s.subgroup_sizes[0],
            s.subgroup_sizes[1],
            yes(s.timestamp_queries),
            yes(s.shader_f64)
        );
        if let Some(e) = &s.open_error {
            outln!("    cannot be opened: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
