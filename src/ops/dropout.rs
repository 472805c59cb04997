//! Dropout driven by an explicit random generator.
//!
//! burn's `Dropout` draws from the backend's global generator and switches itself on only on
//! autodiff devices. Training here must be reproducible from the run's own RNG state (resume
//! is bit-identical), and the UA-MT teacher needs dropout while it tracks no gradient, so the
//! caller decides: a forward pass given a generator is stochastic, one given `None` is the
//! identity (evaluation).

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand::RngCore;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DropoutError {
    #[error("dropout probability must be in [0, 1), got {0}")]
    Probability(f64),
}

/// Which elements share one keep/drop decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DropoutMode {
    /// One decision per (item, channel): PyTorch `Dropout3d`, used by the V-Net.
    Channel,
    /// One decision per element: PyTorch `Dropout`, used by the SSL4MIS 3D U-Net.
    Element,
}

/// Dropout on `[N, C, X, Y, Z]` tensors; kept values are scaled by `1 / (1 - p)`.
#[derive(Module, Debug)]
pub struct Dropout3d {
    #[module(skip)]
    probability: f64,
    #[module(skip)]
    mode: DropoutMode,
}

impl Dropout3d {
    pub fn new(probability: f64, mode: DropoutMode) -> Result<Self, DropoutError> {
        if !(0.0..1.0).contains(&probability) {
            return Err(DropoutError::Probability(probability));
        }
        Ok(Self { probability, mode })
    }

    pub fn probability(&self) -> f64 {
        self.probability
    }

    pub fn mode(&self) -> DropoutMode {
        self.mode
    }

    /// Identity when `rng` is `None` or the probability is 0.
    pub fn forward<R: RngCore + ?Sized>(&self, input: Tensor<5>, rng: Option<&mut R>) -> Tensor<5> {
        let Some(rng) = rng else { return input };
        if self.probability == 0.0 {
            return input;
        }
        let [n, c, x, y, z] = input.dims();
        let mask_shape = match self.mode {
            DropoutMode::Channel => [n, c, 1, 1, 1],
            DropoutMode::Element => [n, c, x, y, z],
        };
        let keep = 1.0 - self.probability;
        let scale = (1.0 / keep) as f32;
        let count: usize = mask_shape.iter().product();
        let values: Vec<f32> = (0..count)
            .map(|_| if rng.gen_bool(keep) { scale } else { 0.0 })
            .collect();
        let mask = Tensor::<5>::from_data(TensorData::new(values, mask_shape), &input.device());
        input * mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn channel_dropout_zeroes_whole_channels_and_scales_the_rest() {
        let device = Device::default();
        let dropout = Dropout3d::new(0.5, DropoutMode::Channel).unwrap();
        let input = Tensor::<5>::ones([4, 8, 2, 3, 2], &device);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let out = dropout.forward(input, Some(&mut rng));
        let values = out.into_data().try_to_vec::<f32>().unwrap();
        let per_channel = 2 * 3 * 2;
        let mut dropped = 0;
        for channel in values.chunks(per_channel) {
            // Every voxel of a channel shares the decision: all 0 or all 1/(1-0.5) = 2.
            assert!(channel.iter().all(|&v| v == channel[0]), "{channel:?}");
            assert!(channel[0] == 0.0 || channel[0] == 2.0);
            dropped += usize::from(channel[0] == 0.0);
        }
        assert!(
            (6..=26).contains(&dropped),
            "{dropped} of 32 channels dropped"
        );
    }

    #[test]
    fn element_dropout_rate_and_scale() {
        let device = Device::default();
        let dropout = Dropout3d::new(0.3, DropoutMode::Element).unwrap();
        let input = Tensor::<5>::ones([1, 2, 20, 20, 25], &device);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let values = dropout
            .forward(input, Some(&mut rng))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let scale = 1.0 / 0.7f32;
        assert!(values.iter().all(|&v| v == 0.0 || (v - scale).abs() < 1e-6));
        let rate = values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64;
        assert!((rate - 0.3).abs() < 0.02, "drop rate {rate}");
    }

    #[test]
    fn evaluation_is_identity_and_bad_probability_is_an_error() {
        let device = Device::default();
        let dropout = Dropout3d::new(0.5, DropoutMode::Channel).unwrap();
        let input = Tensor::<5>::ones([1, 2, 1, 1, 1], &device);
        let out = dropout.forward::<ChaCha8Rng>(input, None);
        assert_eq!(out.into_data().try_to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
        assert_eq!(
            Dropout3d::new(1.0, DropoutMode::Element)
                .unwrap_err()
                .to_string(),
            "dropout probability must be in [0, 1), got 1"
        );
    }
}
