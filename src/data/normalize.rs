//! Per-case intensity normalisation. Intensities differ wildly between cases and scanners
//! (Hippocampus ranges from 0..120 to about 1.7e6), so each case is normalised on its own.

use ndarray::Array3;

#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Normalization {
    /// Subtract the case mean, divide by its (population) standard deviation.
    #[default]
    ZScore,
    /// Clip to the case's `lower`/`upper` percentiles (0..=100, numpy's linear interpolation),
    /// then z-score.
    PercentileClip { lower: f64, upper: f64 },
    /// Clip to fixed bounds, then subtract `mean` and divide by `std`: dataset-wide statistics,
    /// for calibrated intensities such as CT (`semisam plan` takes them from the labeled
    /// foreground).
    ClipZScore {
        lower: f64,
        upper: f64,
        mean: f64,
        std: f64,
    },
    /// Leave intensities as stored (UA-MT h5 images are z-scored already).
    Identity,
}

#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error(
        "percentile clipping needs 0 <= lower < upper <= 100, got lower {lower} and upper {upper}"
    )]
    BadPercentiles { lower: f64, upper: f64 },
    #[error(
        "clip_z_score needs lower < upper, a finite mean and a positive std, got lower {lower}, \
         upper {upper}, mean {mean}, std {std}"
    )]
    BadClipZScore {
        lower: f64,
        upper: f64,
        mean: f64,
        std: f64,
    },
}

/// The `p`-th percentile (0..=100) with linear interpolation between order statistics.
pub fn percentile(values: &mut [f32], p: f64) -> f64 {
    let n = values.len();
    let rank = p / 100.0 * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let frac = rank - lo as f64;
    let (_, lo_value, above) = values.select_nth_unstable_by(lo, f32::total_cmp);
    let lo_value = *lo_value as f64;
    if frac == 0.0 || above.is_empty() {
        return lo_value;
    }
    let hi_value = above.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    lo_value + frac * (hi_value - lo_value)
}

fn z_score(data: &mut Array3<f32>) {
    let n = data.len() as f64;
    let mean = data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    // A constant volume has no spread to divide by: centre it only.
    let scale = if std > 0.0 { 1.0 / std } else { 1.0 };
    data.mapv_inplace(|v| ((v as f64 - mean) * scale) as f32);
}

impl Normalization {
    /// The parameters make sense: percentiles in order within 0..=100, clip bounds in order and
    /// a finite mean and positive std.
    pub fn check(&self) -> Result<(), NormalizeError> {
        match *self {
            Normalization::PercentileClip { lower, upper }
                if !(0.0 <= lower && lower < upper && upper <= 100.0) =>
            {
                Err(NormalizeError::BadPercentiles { lower, upper })
            }
            Normalization::ClipZScore {
                lower,
                upper,
                mean,
                std,
            } if !(lower < upper && mean.is_finite() && std > 0.0 && std.is_finite()) => {
                Err(NormalizeError::BadClipZScore {
                    lower,
                    upper,
                    mean,
                    std,
                })
            }
            _ => Ok(()),
        }
    }
}

/// Normalise one case in place. An empty array is left unchanged.
pub fn normalize(data: &mut Array3<f32>, method: Normalization) -> Result<(), NormalizeError> {
    method.check()?;
    if data.is_empty() {
        return Ok(());
    }
    match method {
        Normalization::Identity => {}
        Normalization::ZScore => z_score(data),
        Normalization::PercentileClip { lower, upper } => {
            let mut values: Vec<f32> = data.iter().copied().collect();
            let lo = percentile(&mut values, lower) as f32;
            let hi = percentile(&mut values, upper) as f32;
            data.mapv_inplace(|v| v.clamp(lo, hi));
            z_score(data);
        }
        Normalization::ClipZScore {
            lower,
            upper,
            mean,
            std,
        } => {
            data.mapv_inplace(|v| ((f64::from(v).clamp(lower, upper) - mean) / std) as f32);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    fn array(values: &[f32]) -> Array3<f32> {
        Array3::from_shape_vec([1, 1, values.len()], values.to_vec()).unwrap()
    }

    #[test]
    fn z_score_matches_hand_computation() {
        // mean 2.5, population std sqrt(1.25)
        let mut a = array(&[1.0, 2.0, 3.0, 4.0]);
        normalize(&mut a, Normalization::ZScore).unwrap();
        let s = 1.25f64.sqrt();
        for (got, x) in a.iter().zip([1.0, 2.0, 3.0, 4.0]) {
            assert_abs_diff_eq!(*got as f64, (x - 2.5) / s, epsilon = 1e-6);
        }
    }

    #[test]
    fn constant_volume_is_centred_not_divided_by_zero() {
        let mut a = array(&[7.0; 5]);
        normalize(&mut a, Normalization::ZScore).unwrap();
        assert!(a.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn percentiles_match_numpy_linear_interpolation() {
        // numpy.percentile([0, 10, 20, ..., 100] shuffled, 25) = 25.0; at 2.5 -> 2.5
        let mut v: Vec<f32> = [
            30.0, 0.0, 100.0, 50.0, 10.0, 90.0, 20.0, 70.0, 40.0, 80.0, 60.0,
        ]
        .to_vec();
        assert_abs_diff_eq!(percentile(&mut v, 25.0), 25.0, epsilon = 1e-9);
        assert_abs_diff_eq!(percentile(&mut v, 2.5), 2.5, epsilon = 1e-9);
        assert_abs_diff_eq!(percentile(&mut v, 100.0), 100.0, epsilon = 1e-9);
        assert_abs_diff_eq!(percentile(&mut v, 0.0), 0.0, epsilon = 1e-9);
    }

    #[test]
    fn percentile_clip_bounds_outliers_before_z_score() {
        // 0..=99 plus one outlier 1e6; clipping at the 1st/99th percentiles caps it.
        let mut values: Vec<f32> = (0..100).map(|v| v as f32).collect();
        values.push(1.0e6);
        let mut a = array(&values);
        normalize(
            &mut a,
            Normalization::PercentileClip {
                lower: 1.0,
                upper: 99.0,
            },
        )
        .unwrap();
        let mut sorted = values.clone();
        let lo = percentile(&mut sorted, 1.0) as f32;
        let hi = percentile(&mut sorted, 99.0) as f32;
        assert_abs_diff_eq!(lo, 1.0, epsilon = 1e-6);
        assert_abs_diff_eq!(hi, 99.0, epsilon = 1e-6);
        let mut expected = array(&values.iter().map(|v| v.clamp(lo, hi)).collect::<Vec<_>>());
        normalize(&mut expected, Normalization::ZScore).unwrap();
        for (g, e) in a.iter().zip(expected.iter()) {
            assert_abs_diff_eq!(*g, *e, epsilon = 1e-6);
        }
        let max = a.iter().copied().fold(f32::MIN, f32::max);
        assert!(max < 2.0, "outlier not clipped: max z = {max}");
    }

    #[test]
    fn bad_percentiles_are_rejected() {
        let mut a = array(&[1.0, 2.0]);
        let err = normalize(
            &mut a,
            Normalization::PercentileClip {
                lower: 90.0,
                upper: 10.0,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("lower 90 and upper 10"), "{err}");
    }

    #[test]
    fn clip_z_score_uses_the_given_statistics() {
        let mut a = array(&[-1000.0, 40.0, 60.0, 3000.0]);
        let method = Normalization::ClipZScore {
            lower: 0.0,
            upper: 100.0,
            mean: 50.0,
            std: 10.0,
        };
        normalize(&mut a, method).unwrap();
        assert_eq!(
            a.iter().copied().collect::<Vec<_>>(),
            [-5.0, -1.0, 1.0, 5.0]
        );
        let err = normalize(
            &mut a,
            Normalization::ClipZScore {
                lower: 0.0,
                upper: 100.0,
                mean: 0.0,
                std: 0.0,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("positive std"), "{err}");
    }
}
