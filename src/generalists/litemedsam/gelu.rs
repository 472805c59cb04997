//! GELU over the kernels' vectorised exact-form GELU, on the selected kernel path. The
//! backend's GELU calls a scalar libm `erff` per element, which was ~10% of the encoder's time
//! (130 M evaluations per image, mostly in the 256x256 stage).

use semisam_kernels::path::selected as kernel_path;

/// Element-wise exact-form GELU on plain values.
pub(crate) fn gelu_in_place(values: &mut [f32]) {
    semisam_kernels::math::gelu_in_place(kernel_path(), values);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_known_values() {
        // x · Φ(x): Φ(1) = 0.841 344 7, Φ(−2) = 0.022 750 1, Φ(0) = ½.
        let mut values = [1.0f32, -2.0, 0.0, 0.5];
        gelu_in_place(&mut values);
        let expected = [0.841_344_7f32, -0.045_500_26, 0.0, 0.345_731_2];
        for (v, e) in values.iter().zip(expected) {
            assert!((v - e).abs() < 1e-6, "{values:?} vs {expected:?}");
        }
    }
}
