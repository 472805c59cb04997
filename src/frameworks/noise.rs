//! The Mean Teacher's input perturbation, drawn from the run's own generator so that a
//! resumed run reproduces it.

use burn::tensor::{Tensor, TensorData};
use rand::{Rng, RngCore};

/// Standard deviation and clamp bound of the teacher input noise: clamp(N(0, 0.1²), ±0.2).
pub const TEACHER_NOISE_STD: f64 = 0.1;
pub const TEACHER_NOISE_CLAMP: f64 = 0.2;

/// `images + clamp(N(0, std²), -bound, bound)`, element-wise.
pub fn add_clamped_gaussian_noise(
    images: Tensor<5>,
    std: f64,
    bound: f64,
    rng: &mut dyn RngCore,
) -> Tensor<5> {
    let shape = images.dims();
    let count: usize = shape.iter().product();
    let noise = clamped_gaussian(count, std, bound, rng);
    let device = images.device();
    images + Tensor::<5>::from_data(TensorData::new(noise, shape), &device)
}

/// Box–Muller pairs (two normals per two uniforms).
fn clamped_gaussian(count: usize, std: f64, bound: f64, rng: &mut dyn RngCore) -> Vec<f32> {
    let mut values = Vec::with_capacity(count + 1);
    while values.len() < count {
        // 1 - u keeps the logarithm's argument in (0, 1].
        let u1: f64 = 1.0 - rng.r#gen::<f64>();
        let u2: f64 = rng.r#gen::<f64>();
        let radius = (-2.0 * u1.ln()).sqrt() * std;
        let angle = std::f64::consts::TAU * u2;
        values.push((radius * angle.cos()).clamp(-bound, bound) as f32);
        values.push((radius * angle.sin()).clamp(-bound, bound) as f32);
    }
    values.truncate(count);
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn noise_is_clamped_centred_and_has_the_clamped_normal_spread() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let values = clamped_gaussian(200_001, 0.1, 0.2, &mut rng);
        assert_eq!(values.len(), 200_001);
        assert!(values.iter().all(|v| v.abs() <= 0.2));
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        // Z ~ N(0,1) clamped at ±2: E[Z²; |Z|<2] = P(|Z|<2) - 4·φ(2), plus 4·P(|Z|>2) from
        // the clamped tails; scaled by σ² = 0.01.
        let truncated_part = 0.01 * (0.9545 - 2.0 * 2.0 * 0.05399);
        let tails = 2.0 * 0.04 * 0.02275;
        let expected = truncated_part + tails;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!(
            (var - expected).abs() < 2e-4,
            "var {var} expected {expected}"
        );
        // Exactly the clamp bound appears for the ~4.6% of draws beyond 2σ.
        let clamped = values.iter().filter(|v| v.abs() == 0.2).count() as f64 / n;
        assert!(
            (clamped - 0.0455).abs() < 0.003,
            "clamped fraction {clamped}"
        );
    }
}
