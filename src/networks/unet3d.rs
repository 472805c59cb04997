//! The SSL4MIS `unet_3D` (SemiSAM+'s specialist): two conv → InstanceNorm (no affine) → ReLU
//! per level, 2x max-pooling down, trilinear 2x up-sampling and concatenation with the skip
//! (skip first) on the way up, element-wise dropout 0.3 after the centre and the last up block.
//!
//! An axis may be pooled fewer than four times (`with_poolings`): below its last pooling the
//! levels keep its resolution, as nnU-Net plans thin axes, so a one-slice image trains on a
//! one-slice patch. The parameters do not change, so the checkpoint layout is the same.
//!
//! Field names follow the PyTorch module so that a state dict maps onto it by path (except
//! `final`, a Rust keyword, here `final_conv`).

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{Initializer, InstanceNorm, InstanceNormConfig, PaddingConfig3d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use rand::RngCore;

use super::NetworkError;
use crate::ops::trilinear::trilinear_interpolate;
use crate::ops::{Dropout3d, DropoutMode, conv3x3x3, max_pool3d};

/// Input sides must be divisible by this along an axis pooled at every level.
pub const UNET3D_SIDE_MULTIPLE: usize = 1 << super::LEVELS;

const UNET3D_DROPOUT: f64 = 0.3;

/// SSL4MIS initialises convolutions with Kaiming normal (fan in, gain √2).
fn kaiming_normal() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: false,
    }
}

/// conv 3x3x3 (pad 1) → InstanceNorm (affine = false) → ReLU.
#[derive(Module, Debug)]
pub struct ConvInRelu {
    conv: Conv3d,
    norm: InstanceNorm,
}

impl ConvInRelu {
    fn new(in_channels: usize, out_channels: usize, device: &Device) -> Self {
        Self {
            conv: Conv3dConfig::new([in_channels, out_channels], [3, 3, 3])
                .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
                .with_initializer(kaiming_normal())
                .init(device),
            norm: InstanceNormConfig::new(out_channels)
                .with_affine(false)
                .init(device),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        relu(self.norm.forward(conv3x3x3(&self.conv, x)))
    }
}

/// SSL4MIS `UnetConv3`: two ConvInRelu.
#[derive(Module, Debug)]
pub struct UnetConv3 {
    conv1: ConvInRelu,
    conv2: ConvInRelu,
}

impl UnetConv3 {
    fn new(in_channels: usize, out_channels: usize, device: &Device) -> Self {
        Self {
            conv1: ConvInRelu::new(in_channels, out_channels, device),
            conv2: ConvInRelu::new(out_channels, out_channels, device),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.conv2.forward(self.conv1.forward(x))
    }
}

/// SSL4MIS `UnetUp3_CT`: trilinear 2x up-sampling (align_corners = false), concatenation
/// `[skip, up]`, UnetConv3.
#[derive(Module, Debug)]
pub struct UnetUp3 {
    conv: UnetConv3,
}

impl UnetUp3 {
    fn new(in_channels: usize, out_channels: usize, device: &Device) -> Self {
        Self {
            conv: UnetConv3::new(in_channels + out_channels, out_channels, device),
        }
    }

    fn forward(&self, skip: Tensor<5>, below: Tensor<5>) -> Tensor<5> {
        let [_, _, x, y, z] = skip.dims();
        let up = trilinear_interpolate(below, [x, y, z], false)
            .expect("the skip tensor of a validated input has positive sides");
        self.conv.forward(Tensor::cat(vec![skip, up], 1))
    }
}

#[derive(Module, Debug)]
pub struct UNet3d {
    conv1: UnetConv3,
    conv2: UnetConv3,
    conv3: UnetConv3,
    conv4: UnetConv3,
    center: UnetConv3,
    up_concat4: UnetUp3,
    up_concat3: UnetUp3,
    up_concat2: UnetUp3,
    up_concat1: UnetUp3,
    /// PyTorch's `final` (a Rust keyword); a loader maps the key.
    final_conv: Conv3d,
    dropout: Option<Dropout3d>,
    /// 2x poolings per axis (the first levels pool, the deeper ones keep the side).
    poolings: [usize; 3],
}

impl UNet3d {
    /// `base_filters` = 16 gives SSL4MIS's filters 16/32/64/128/256.
    pub fn new(
        in_channels: usize,
        num_classes: usize,
        base_filters: usize,
        has_dropout: bool,
        device: &Device,
    ) -> Self {
        let f = base_filters;
        let dropout = has_dropout.then(|| {
            Dropout3d::new(UNET3D_DROPOUT, DropoutMode::Element)
                .expect("the U-Net dropout constant is a valid probability")
        });
        Self {
            conv1: UnetConv3::new(in_channels, f, device),
            conv2: UnetConv3::new(f, 2 * f, device),
            conv3: UnetConv3::new(2 * f, 4 * f, device),
            conv4: UnetConv3::new(4 * f, 8 * f, device),
            center: UnetConv3::new(8 * f, 16 * f, device),
            up_concat4: UnetUp3::new(16 * f, 8 * f, device),
            up_concat3: UnetUp3::new(8 * f, 4 * f, device),
            up_concat2: UnetUp3::new(4 * f, 2 * f, device),
            up_concat1: UnetUp3::new(2 * f, f, device),
            final_conv: Conv3dConfig::new([f, num_classes], [1, 1, 1])
                .with_initializer(kaiming_normal())
                .init(device),
            dropout,
            poolings: [super::LEVELS; 3],
        }
    }

    /// Pool axis `a` only at the first `poolings[a]` levels (at most four).
    pub fn with_poolings(mut self, poolings: [usize; 3]) -> Self {
        self.poolings = poolings.map(|p| p.min(super::LEVELS));
        self
    }

    /// Every spatial side of the input must be a positive multiple of these.
    pub fn side_multiples(&self) -> [usize; 3] {
        super::side_multiples(self.poolings)
    }

    /// The max-pooling window below `level` (0 = below the first).
    fn pool_kernel(&self, level: usize) -> [usize; 3] {
        self.poolings.map(|p| if level < p { 2 } else { 1 })
    }

    /// Logits `[N, classes, X, Y, Z]`. Dropout is active only when `rng` is given.
    pub fn forward(
        &self,
        x: Tensor<5>,
        mut rng: Option<&mut dyn RngCore>,
    ) -> Result<Tensor<5>, NetworkError> {
        super::check_input(&x, self.side_multiples())?;
        let pool = |t: Tensor<5>, level: usize| {
            max_pool3d(t, self.pool_kernel(level))
                .expect("sides divisible by the side multiples halve cleanly at every pooling")
        };
        let conv1 = self.conv1.forward(x);
        let conv2 = self.conv2.forward(pool(conv1.clone(), 0));
        let conv3 = self.conv3.forward(pool(conv2.clone(), 1));
        let conv4 = self.conv4.forward(pool(conv3.clone(), 2));
        let mut center = self.center.forward(pool(conv4.clone(), 3));
        if let Some(dropout) = &self.dropout {
            center = dropout.forward(center, rng.as_deref_mut());
        }
        let up4 = self.up_concat4.forward(conv4, center);
        let up3 = self.up_concat3.forward(conv3, up4);
        let up2 = self.up_concat2.forward(conv2, up3);
        let mut up1 = self.up_concat1.forward(conv1, up2);
        if let Some(dropout) = &self.dropout {
            up1 = dropout.forward(up1, rng);
        }
        Ok(self.final_conv.forward(up1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::networks::learnable_parameter_count;
    use burn::tensor::Distribution;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn ssl4mis_unet_3d_has_5_884_050_parameters() {
        let net = UNet3d::new(1, 2, 16, true, &Device::default());
        assert_eq!(learnable_parameter_count(&net), 5_884_050);
    }

    #[test]
    fn parameter_count_follows_the_width() {
        // Two 3³ convs per block (InstanceNorm without affine adds nothing); up blocks see
        // the skip's f channels plus the 2f up-sampled ones.
        let block = |cin: usize, cout: usize| 27 * cin * cout + cout + 27 * cout * cout + cout;
        let f = 3;
        let expected = block(2, f)
            + block(f, 2 * f)
            + block(2 * f, 4 * f)
            + block(4 * f, 8 * f)
            + block(8 * f, 16 * f)
            + block(24 * f, 8 * f)
            + block(12 * f, 4 * f)
            + block(6 * f, 2 * f)
            + block(3 * f, f)
            + (f * 4 + 4);
        let net = UNet3d::new(2, 4, f, false, &Device::default());
        assert_eq!(learnable_parameter_count(&net), expected);
    }

    #[test]
    fn forward_shapes_and_input_check() {
        let device = Device::default().autodiff();
        let net = UNet3d::new(1, 3, 2, true, &device);
        let x = Tensor::<5>::random([2, 1, 16, 32, 16], Distribution::Default, &device);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let y = net.forward(x.clone(), Some(&mut rng)).unwrap();
        assert_eq!(y.dims(), [2, 3, 16, 32, 16]);
        let grads = y.sum().backward();
        assert!(net.final_conv.weight.grad(&grads).is_some());
        let eval = net.valid().forward(x.detach(), None).unwrap();
        assert_eq!(eval.dims(), [2, 3, 16, 32, 16]);
        let err = net
            .forward(Tensor::<5>::zeros([1, 1, 8, 16, 16], &device), None)
            .unwrap_err();
        assert!(matches!(
            err,
            NetworkError::InputShape {
                multiples: [16, 16, 16],
                ..
            }
        ));
    }

    #[test]
    fn an_unpooled_axis_keeps_one_slice_through_every_level() {
        let device = Device::default().autodiff();
        let net = UNet3d::new(1, 3, 2, true, &device).with_poolings([4, 4, 0]);
        assert_eq!(net.side_multiples(), [16, 16, 1]);
        assert_eq!(net.pool_kernel(0), [2, 2, 1]);
        let x = Tensor::<5>::random([2, 1, 16, 32, 1], Distribution::Default, &device);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let y = net.forward(x.clone(), Some(&mut rng)).unwrap();
        assert_eq!(y.dims(), [2, 3, 16, 32, 1]);
        let grads = y.sum().backward();
        assert!(net.conv1.conv1.conv.weight.grad(&grads).is_some());
        // Any depth fits an axis that is never pooled; the pooled ones still need 16.
        let deeper = net.valid().forward(
            Tensor::<5>::random([1, 1, 16, 16, 3], Distribution::Default, &Device::default()),
            None,
        );
        assert_eq!(deeper.unwrap().dims(), [1, 3, 16, 16, 3]);
        let err = net
            .forward(Tensor::<5>::zeros([1, 1, 8, 16, 1], &device), None)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("X, Y, Z positive multiples of 16 x 16 x 1"),
            "{err}"
        );
        // Fewer poolings change no parameter: the checkpoint layout stays the papers'.
        assert_eq!(
            learnable_parameter_count(&net),
            learnable_parameter_count(&UNet3d::new(1, 3, 2, true, &device))
        );
    }
}
