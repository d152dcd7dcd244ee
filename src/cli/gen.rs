//! `softmax-wgpu gen`: seeded synthetic data sets of any size written to disk a chunk at a time, so that every large
//! run can be reproduced from its command line. Dense: the Gaussian classes of `train --synthetic` (the same values
//! for the same N, D, K and seed), as float32 NPY features and uint32 NPY labels. Sparse: LIBSVM text whose classes
//! have features of their own ([`softmax_wgpu::data::SparseSynthetic`]).

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use softmax_wgpu::atomic::AtomicFile;
use softmax_wgpu::data::{self, SparseSynthetic, SyntheticRows};
use softmax_wgpu::error::bytes;
use softmax_wgpu::Error;

use super::args::{GenArgs, GenFormat};
use super::common::{check_outputs, progress_bar};

/// Rows, features and classes from "N,D,K".
fn parse_shape(spec: &str) -> Result<(u64, usize, usize)> {
    let parts: Vec<Option<u64>> = spec.split(',').map(|p| p.trim().parse().ok()).collect();
    match parts.as_slice() {
        [Some(n), Some(d), Some(k)] if *n > 0 && *d > 0 && *k >= 2 => {
            Ok((*n, *d as usize, *k as usize))
        }
        _ => Err(Error::param(
            "--shape",
            "N,D,K: N ≥ 1 rows, D ≥ 1 features, K ≥ 2 classes",
            format!("{spec:?}"),
        )
        .into()),
    }
}

/// Runs the command.
pub fn run(a: GenArgs) -> Result<ExitCode> {
    let (n, d, k) = parse_shape(&a.shape)?;
    check_outputs(
        &[
            ("--out", Some(a.out.as_path())),
            ("--labels-out", a.labels_out.as_deref()),
        ],
        &[],
        &[],
    )?;
    let start = Instant::now();
    let bar = progress_bar(n, "rows");
    let written = match a.format {
        GenFormat::Npy => {
            let labels = a.labels_out.as_deref().ok_or_else(|| {
                Error::param("--labels-out", "given (required) with --format npy", "none")
            })?;
            let n = usize::try_from(n)
                .map_err(|_| Error::param("--shape", "N within this machine's address space", n))?;
            let mut rows = SyntheticRows::new(n, d, k, a.seed)?;
            data::write_npy_source(&a.out, labels, &mut rows, &mut |r| bar.set_position(r))?;
            let x_bytes = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
            format!("{} and {}", bytes(x_bytes), labels.display())
        }
        GenFormat::Libsvm => {
            if let Some(l) = &a.labels_out {
                return Err(Error::param(
                    "--labels-out",
                    "not given: LIBSVM text holds its labels",
                    l.display(),
                )
                .into());
            }
            if !(a.density.is_finite() && a.density > 0.0 && a.density <= 1.0) {
                return Err(Error::param("--density", "in (0, 1]", a.density).into());
            }
            let nnz = ((a.density * d as f64).round() as usize).clamp(1, d);
            let mut rows = SparseSynthetic::new(n, d, k, nnz, a.seed)?;
            let mut out = AtomicFile::create(&a.out)?;
            let mut done = 0u64;
            while let Some(chunk) = rows.next_sparse(16_384) {
                data::write_libsvm_rows(&mut out, &chunk, 0..chunk.y.len())
                    .map_err(|e| Error::io(&a.out, e))?;
                done += chunk.len() as u64;
                bar.set_position(done);
            }
            out.flush().map_err(|e| Error::io(&a.out, e))?;
            out.commit()?;
            let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
            format!(
                "{} of LIBSVM text, about {nnz} non-zeros a row",
                bytes(size)
            )
        }
    };
    bar.finish_and_clear();
    eprintln!(
        "wrote {} ({n} rows × {d} features, {k} classes, seed {}): {written} in {:.1}s",
        a.out.display(),
        a.seed,
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
