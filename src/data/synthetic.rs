//! Seeded, learnable Gaussian class blobs of any size.

use ndarray::Array2;

use super::{check_host_memory, Dataset, MAX_CLASSES};
use crate::error::{checked_product, Error, Result};
use crate::rng::SplitMix64;

/// `n` rows of `d` features in `k` classes: class c's centre is drawn from N(0, s²·I) with s = 3/√(2d), so two centres
/// are ≈ 3 noise standard deviations apart whatever d is; rows are centre + N(0, I); labels cycle 0, 1, …, k−1 so every
/// class is present. Classes are named "0".."k−1".
pub fn synthetic(n: usize, d: usize, k: usize, seed: u64) -> Result<Dataset> {
    if n == 0 || d == 0 || !(2..=MAX_CLASSES).contains(&k) {
        return Err(Error::param(
            "--synthetic",
            format!("N ≥ 1, D ≥ 1 and K in 2..={MAX_CLASSES}"),
            format!("{n},{d},{k}"),
        ));
    }
    let x_bytes = checked_product(
        &format!("--synthetic {n},{d},{k}"),
        &[n as u64, d as u64, 4],
    )?;
    let centre_bytes = checked_product("the class centres", &[k as u64, d as u64, 8])?;
    check_host_memory(
        &format!("--synthetic {n},{d},{k}"),
        x_bytes.saturating_add(centre_bytes),
    )?;
    let mut g = SplitMix64::derive(seed, 0xB10B);
    let scale = 3.0 / (2.0 * d as f64).sqrt();
    let centres: Vec<f64> = (0..k * d).map(|_| g.normal() * scale).collect();
    let y: Vec<u32> = (0..n).map(|i| (i % k) as u32).collect();
    let mut x = Vec::with_capacity(n * d);
    for &c in &y {
        let centre = &centres[c as usize * d..(c as usize + 1) * d];
        x.extend(centre.iter().map(|&m| (m + g.normal()) as f32));
    }
    Ok(Dataset {
        x: Array2::from_shape_vec((n, d), x).expect("n·d values"),
        y,
        classes: (0..k).map(|c| c.to_string()).collect(),
        source: format!("synthetic {n}×{d}, {k} classes, seed {seed}"),
    })
}
