//! Order statistics and summaries matching NumPy's defaults, so that results agree with medpy
//! and MONAI (which call `numpy.percentile` / `torch.quantile`, both linear interpolation).

/// The `percent`-th percentile of `values` with NumPy's default ("linear") method: the value at
/// fractional rank `(n − 1)·percent/100` of the sorted values, interpolated between neighbours.
/// Reorders `values` (linear-time selection instead of a full sort). `None` if `values` is empty.
pub fn percentile(values: &mut [f64], percent: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = (values.len() - 1) as f64 * (percent / 100.0);
    let below = (rank.floor() as usize).min(values.len() - 1);
    let fraction = rank - below as f64;
    let (_, &mut lower, above) = values.select_nth_unstable_by(below, f64::total_cmp);
    let upper = above
        .iter()
        .copied()
        .min_by(f64::total_cmp)
        .unwrap_or(lower);
    Some(lerp(lower, upper, fraction))
}

/// NumPy's `_lerp`: interpolate from the nearer end so that `t = 1` gives `b` exactly.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let difference = b - a;
    if t >= 0.5 {
        b - difference * (1.0 - t)
    } else {
        a + difference * t
    }
}

/// Arithmetic mean; `None` if empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Population standard deviation (NumPy's default `ddof = 0`); `None` if empty.
pub fn population_std(values: &[f64]) -> Option<f64> {
    let mean = mean(values)?;
    Some((values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        // numpy.percentile([1, 2, 3, 4, 10], 95) = 4 + 0.8 * 6 = 8.8
        let mut values = vec![10.0, 1.0, 4.0, 3.0, 2.0];
        assert!((percentile(&mut values, 95.0).unwrap() - 8.8).abs() < 1e-12);
        assert_eq!(percentile(&mut [7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&mut [3.0, 1.0], 100.0), Some(3.0));
        assert_eq!(percentile(&mut [3.0, 1.0], 0.0), Some(1.0));
        assert_eq!(percentile(&mut [], 95.0), None);
    }

    #[test]
    fn std_is_population_std() {
        assert_eq!(population_std(&[1.0, 3.0]), Some(1.0));
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(mean(&[]), None);
    }
}
