//! How much each voxel of a window counts when overlapping windows are averaged.
//!
//! A network sees less context near a window's border, so its predictions there are worse;
//! nnU-Net therefore weights each window by a Gaussian centred on it (σ = 1/8 of the window per
//! axis). The map here is the same Gaussian with two deliberate differences: it is centred at
//! `(n - 1) / 2` rather than `n / 2`, so it is symmetric under mirroring (mirror test-time
//! augmentation then commutes with the weighting), and it is floored at [`GAUSSIAN_FLOOR`] so a
//! voxel that only border regions cover still gets a well-defined, finite average.

use std::str::FromStr;

use ndarray::Array3;
use serde::{Deserialize, Serialize};

/// Smallest weight of the Gaussian map (its maximum is 1).
pub const GAUSSIAN_FLOOR: f32 = 1e-6;

/// σ of the Gaussian as a fraction of the window side (nnU-Net's `sigma_scale`).
pub const GAUSSIAN_SIGMA_SCALE: f64 = 1.0 / 8.0;

/// Importance weighting of overlapping sliding windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowWeighting {
    /// nnU-Net's Gaussian: window centres count most.
    Gaussian,
    /// Every voxel of every window counts the same (UA-MT's `test_single_case`); the default,
    /// as it scored higher than the Gaussian on the Hippocampus demo data (README, Prediction).
    #[default]
    Uniform,
}

impl WindowWeighting {
    /// The weight of each voxel of a window of `shape`.
    pub fn map(self, shape: [usize; 3]) -> Array3<f32> {
        match self {
            WindowWeighting::Uniform => Array3::ones(shape),
            WindowWeighting::Gaussian => gaussian_map(shape),
        }
    }
}

impl FromStr for WindowWeighting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "gaussian" => Ok(WindowWeighting::Gaussian),
            "uniform" => Ok(WindowWeighting::Uniform),
            other => Err(format!(
                "unknown window weighting {other:?}: expected \"gaussian\" or \"uniform\""
            )),
        }
    }
}

/// Separable Gaussian with σ = side / 8 per axis, maximum 1, floored at [`GAUSSIAN_FLOOR`].
pub fn gaussian_map(shape: [usize; 3]) -> Array3<f32> {
    let [gx, gy, gz] = shape.map(gaussian_profile);
    let peak = gx.iter().cloned().fold(0.0, f64::max)
        * gy.iter().cloned().fold(0.0, f64::max)
        * gz.iter().cloned().fold(0.0, f64::max);
    Array3::from_shape_fn(shape, |(i, j, k)| {
        ((gx[i] * gy[j] * gz[k] / peak) as f32).max(GAUSSIAN_FLOOR)
    })
}

/// `exp(-(i - c)² / 2σ²)` for `i` in `0..side`, `c = (side - 1) / 2`, `σ = side / 8`.
fn gaussian_profile(side: usize) -> Vec<f64> {
    let centre = (side as f64 - 1.0) / 2.0;
    let sigma = (side as f64 * GAUSSIAN_SIGMA_SCALE).max(f64::MIN_POSITIVE);
    (0..side)
        .map(|i| (-(i as f64 - centre).powi(2) / (2.0 * sigma * sigma)).exp())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_has_the_window_shape_a_unit_peak_and_mirror_symmetry() {
        let shape = [16, 24, 9];
        let map = gaussian_map(shape);
        assert_eq!(map.shape(), &shape);
        let max = map.iter().cloned().fold(f32::MIN, f32::max);
        assert!((max - 1.0).abs() < 1e-6, "peak {max}");
        // Even sides have their peak on the two central voxels, odd sides on the middle one.
        assert!((map[[7, 11, 4]] - 1.0).abs() < 1e-3);
        assert_eq!(map[[7, 11, 4]], map[[8, 12, 4]]);
        for ((i, j, k), &w) in map.indexed_iter() {
            assert_eq!(w, map[[15 - i, j, k]], "x mirror at {i} {j} {k}");
            assert_eq!(w, map[[i, 23 - j, k]], "y mirror at {i} {j} {k}");
            assert_eq!(w, map[[i, j, 8 - k]], "z mirror at {i} {j} {k}");
            assert!((GAUSSIAN_FLOOR..=1.0).contains(&w));
        }
    }

    #[test]
    fn gaussian_profile_has_sigma_an_eighth_of_the_side() {
        // Side 17: centre 8, σ = 17/8; one σ from the centre the weight is exp(-1/2).
        let map = gaussian_map([17, 1, 1]);
        let at = |d: f64| (-(d * d) / (2.0 * (17.0f64 / 8.0).powi(2))).exp() as f32;
        assert!((map[[8, 0, 0]] - 1.0).abs() < 1e-7);
        for d in 1..=8usize {
            assert!(
                (map[[8 + d, 0, 0]] - at(d as f64)).abs() < 1e-6,
                "distance {d}"
            );
        }
        // The border sits about 3.8σ out (weight 8e-4, above the floor) and the sum is the
        // discrete Gaussian's: about σ·√(2π) voxels.
        let sum: f32 = map.iter().sum();
        assert!(
            (sum - (17.0 / 8.0) * (2.0 * std::f32::consts::PI).sqrt()).abs() < 0.01,
            "{sum}"
        );
        // A small cube's corners (about 1e-8) are lifted to the floor.
        let cube = gaussian_map([8, 8, 8]);
        assert_eq!(cube[[0, 0, 0]], GAUSSIAN_FLOOR);
    }

    #[test]
    fn uniform_weights_are_ones_and_names_parse() {
        assert!(
            WindowWeighting::Uniform
                .map([2, 3, 4])
                .iter()
                .all(|&w| w == 1.0)
        );
        assert_eq!("uniform".parse(), Ok(WindowWeighting::Uniform));
        assert_eq!("gaussian".parse(), Ok(WindowWeighting::Gaussian));
        assert_eq!(
            "box".parse::<WindowWeighting>().unwrap_err(),
            "unknown window weighting \"box\": expected \"gaussian\" or \"uniform\""
        );
        assert_eq!(WindowWeighting::default(), WindowWeighting::Uniform);
    }
}
