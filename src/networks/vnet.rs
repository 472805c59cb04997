//! V-Net as used by UA-MT and SemiSAM (yulequan/UA-MT `networks/vnet.py`): plain (non-residual)
//! conv stages, strided-conv down-sampling, transposed-conv up-sampling, additive skips.
//!
//! Field names follow the PyTorch module so that a state dict maps onto it by path.

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig3d};
use burn::tensor::Device;
use burn::tensor::Tensor;
use rand::RngCore;

use super::NetworkError;
use crate::ops::{Dropout3d, DropoutMode, batch_norm_relu, conv3x3x3, down_conv, up_conv};

/// Input sides must be divisible by this (four 2x down-samplings).
pub const VNET_SIDE_MULTIPLE: usize = 16;

/// Dropout3d probability after stages 5 and 9 (UA-MT).
const VNET_DROPOUT: f64 = 0.5;

/// conv 3x3x3 (pad 1, bias) → BatchNorm → ReLU.
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    conv: Conv3d,
    norm: BatchNorm,
}

impl ConvBnRelu {
    fn new(in_channels: usize, out_channels: usize, device: &Device) -> Self {
        Self {
            conv: Conv3dConfig::new([in_channels, out_channels], [3, 3, 3])
                .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
                .init(device),
            norm: BatchNormConfig::new(out_channels).init(device),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        batch_norm_relu(&self.norm, conv3x3x3(&self.conv, x))
    }
}

/// A stage of `n` ConvBnRelu layers, the first changing the channel count.
#[derive(Module, Debug)]
pub struct ConvStage {
    layers: Vec<ConvBnRelu>,
}

impl ConvStage {
    fn new(n: usize, in_channels: usize, out_channels: usize, device: &Device) -> Self {
        let layers = (0..n)
            .map(|i| {
                let cin = if i == 0 { in_channels } else { out_channels };
                ConvBnRelu::new(cin, out_channels, device)
            })
            .collect();
        Self { layers }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.layers.iter().fold(x, |x, layer| layer.forward(x))
    }
}

/// conv k=2 s=2 → BatchNorm → ReLU (halves every side).
#[derive(Module, Debug)]
pub struct DownConv {
    conv: Conv3d,
    norm: BatchNorm,
}

impl DownConv {
    fn new(in_channels: usize, out_channels: usize, device: &Device) -> Self {
        Self {
            conv: Conv3dConfig::new([in_channels, out_channels], [2, 2, 2])
                .with_stride([2, 2, 2])
                .init(device),
            norm: BatchNormConfig::new(out_channels).init(device),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        batch_norm_relu(&self.norm, down_conv(&self.conv, x))
    }
}

/// transposed conv k=2 s=2 → BatchNorm → ReLU (doubles every side).
#[derive(Module, Debug)]
pub struct UpConv {
    conv: ConvTranspose3d,
    norm: BatchNorm,
}

impl UpConv {
    fn new(in_channels: usize, out_channels: usize, device: &Device) -> Self {
        Self {
            conv: ConvTranspose3dConfig::new([in_channels, out_channels], [2, 2, 2])
                .with_stride([2, 2, 2])
                .init(device),
            norm: BatchNormConfig::new(out_channels).init(device),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        batch_norm_relu(&self.norm, up_conv(&self.conv, x))
    }
}

#[derive(Module, Debug)]
pub struct VNet {
    block_one: ConvStage,
    block_one_dw: DownConv,
    block_two: ConvStage,
    block_two_dw: DownConv,
    block_three: ConvStage,
    block_three_dw: DownConv,
    block_four: ConvStage,
    block_four_dw: DownConv,
    block_five: ConvStage,
    block_five_up: UpConv,
    block_six: ConvStage,
    block_six_up: UpConv,
    block_seven: ConvStage,
    block_seven_up: UpConv,
    block_eight: ConvStage,
    block_eight_up: UpConv,
    block_nine: ConvStage,
    out_conv: Conv3d,
    dropout: Option<Dropout3d>,
}

impl VNet {
    /// `base_filters` = 16 gives the published network.
    pub fn new(
        in_channels: usize,
        num_classes: usize,
        base_filters: usize,
        has_dropout: bool,
        device: &Device,
    ) -> Self {
        let f = base_filters;
        let dropout = has_dropout.then(|| {
            Dropout3d::new(VNET_DROPOUT, DropoutMode::Channel)
                .expect("the V-Net dropout constant is a valid probability")
        });
        Self {
            block_one: ConvStage::new(1, in_channels, f, device),
            block_one_dw: DownConv::new(f, 2 * f, device),
            block_two: ConvStage::new(2, 2 * f, 2 * f, device),
            block_two_dw: DownConv::new(2 * f, 4 * f, device),
            block_three: ConvStage::new(3, 4 * f, 4 * f, device),
            block_three_dw: DownConv::new(4 * f, 8 * f, device),
            block_four: ConvStage::new(3, 8 * f, 8 * f, device),
            block_four_dw: DownConv::new(8 * f, 16 * f, device),
            block_five: ConvStage::new(3, 16 * f, 16 * f, device),
            block_five_up: UpConv::new(16 * f, 8 * f, device),
            block_six: ConvStage::new(3, 8 * f, 8 * f, device),
            block_six_up: UpConv::new(8 * f, 4 * f, device),
            block_seven: ConvStage::new(3, 4 * f, 4 * f, device),
            block_seven_up: UpConv::new(4 * f, 2 * f, device),
            block_eight: ConvStage::new(2, 2 * f, 2 * f, device),
            block_eight_up: UpConv::new(2 * f, f, device),
            block_nine: ConvStage::new(1, f, f, device),
            out_conv: Conv3dConfig::new([f, num_classes], [1, 1, 1]).init(device),
            dropout,
        }
    }

    /// Logits `[N, classes, X, Y, Z]`. Dropout is active only when `rng` is given.
    pub fn forward(
        &self,
        x: Tensor<5>,
        mut rng: Option<&mut dyn RngCore>,
    ) -> Result<Tensor<5>, NetworkError> {
        super::check_input(&x, [VNET_SIDE_MULTIPLE; 3])?;
        let x1 = self.block_one.forward(x);
        let x2 = self
            .block_two
            .forward(self.block_one_dw.forward(x1.clone()));
        let x3 = self
            .block_three
            .forward(self.block_two_dw.forward(x2.clone()));
        let x4 = self
            .block_four
            .forward(self.block_three_dw.forward(x3.clone()));
        let mut x5 = self
            .block_five
            .forward(self.block_four_dw.forward(x4.clone()));
        if let Some(dropout) = &self.dropout {
            x5 = dropout.forward(x5, rng.as_deref_mut());
        }
        let x6 = self.block_six.forward(self.block_five_up.forward(x5) + x4);
        let x7 = self.block_seven.forward(self.block_six_up.forward(x6) + x3);
        let x8 = self
            .block_eight
            .forward(self.block_seven_up.forward(x7) + x2);
        let mut x9 = self
            .block_nine
            .forward(self.block_eight_up.forward(x8) + x1);
        if let Some(dropout) = &self.dropout {
            x9 = dropout.forward(x9, rng);
        }
        Ok(self.out_conv.forward(x9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn published_vnet_has_9_448_866_parameters() {
        let net = VNet::new(1, 2, 16, true, &Device::default());
        assert_eq!(super::super::learnable_parameter_count(&net), 9_448_866);
    }

    #[test]
    fn parameter_count_follows_the_width() {
        // Per level f·k: conv 3³ weights (27·cin·cout + cout), BN 2·cout; counted by hand for
        // f = 2, 1 input channel, 3 classes with the stage layout 1/2/3/3/3 down, 3/3/2/1 up.
        let f = 2usize;
        let conv3 = |cin: usize, cout: usize| 27 * cin * cout + cout + 2 * cout;
        let conv2 = |cin: usize, cout: usize| 8 * cin * cout + cout + 2 * cout;
        let stage =
            |n: usize, cin: usize, cout: usize| conv3(cin, cout) + (n - 1) * conv3(cout, cout);
        let expected = stage(1, 1, f)
            + conv2(f, 2 * f)
            + stage(2, 2 * f, 2 * f)
            + conv2(2 * f, 4 * f)
            + stage(3, 4 * f, 4 * f)
            + conv2(4 * f, 8 * f)
            + stage(3, 8 * f, 8 * f)
            + conv2(8 * f, 16 * f)
            + stage(3, 16 * f, 16 * f)
            + conv2(16 * f, 8 * f)
            + stage(3, 8 * f, 8 * f)
            + conv2(8 * f, 4 * f)
            + stage(3, 4 * f, 4 * f)
            + conv2(4 * f, 2 * f)
            + stage(2, 2 * f, 2 * f)
            + conv2(2 * f, f)
            + stage(1, f, f)
            + (f * 3 + 3);
        let net = VNet::new(1, 3, f, false, &Device::default());
        assert_eq!(super::super::learnable_parameter_count(&net), expected);
    }

    #[test]
    fn forward_keeps_the_spatial_shape_and_rejects_bad_sides() {
        let device = Device::default().autodiff();
        let net = VNet::new(1, 2, 2, true, &device);
        let x = Tensor::<5>::random([2, 1, 16, 32, 16], Distribution::Default, &device);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let y = net.forward(x.clone(), Some(&mut rng)).unwrap();
        assert_eq!(y.dims(), [2, 2, 16, 32, 16]);
        let eval = net.valid();
        let y_eval = eval.forward(x.clone().detach(), None).unwrap();
        assert_eq!(y_eval.dims(), [2, 2, 16, 32, 16]);
        let bad = Tensor::<5>::zeros([1, 1, 16, 24, 16], &device);
        let err = net.forward(bad, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "network input has shape [1, 1, 16, 24, 16]: expected [batch, 1, X, Y, Z] with X, Y, Z positive multiples of 16 x 16 x 16"
        );
    }
}
