//! The networks' 3x3x3 convolutions (stride 1, padding 1) on the flex backend through the direct
//! kernels of `semisam-kernels`, with a hand-written backward for autodiff.
//!
//! burn-flex computes a convolution as im2col + GEMM and its weight gradient as a convolution
//! whose kernel is the whole output gradient; both copy 27 shifted views of their input, which
//! made a V-Net step 3.5x slower than PyTorch's. The kernels run on every CPU, on the
//! instruction set `semisam_kernels::path::selected` picks. Any other backend or layer shape goes
//! through burn's own `Conv3d::forward`, so results never depend on which path ran beyond float
//! rounding (the parity tests bound it).

use burn::nn::PaddingConfig3d;
use burn::nn::conv::Conv3d;
use burn::tensor::Tensor;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use semisam_kernels::KernelPath;

/// `conv.forward(x)`, through the direct kernels where they apply.
pub fn conv3x3x3(conv: &Conv3d, x: Tensor<5>) -> Tensor<5> {
    conv3x3x3_on(semisam_kernels::path::selected(), conv, x)
}

/// [`conv3x3x3`] with the kernels on `path` (which the CPU must run).
pub(crate) fn conv3x3x3_on(path: KernelPath, conv: &Conv3d, x: Tensor<5>) -> Tensor<5> {
    if let Some(axis) = thin_axis(conv, &x) {
        return across_thin_axis(conv, x, axis);
    }
    #[cfg(feature = "flex")]
    if direct::applies(conv, &x) {
        let bias = conv.bias.as_ref().map(|bias| bias.val());
        if let Some(y) = direct::forward(path, x.clone(), conv.weight.val(), bias) {
            return y;
        }
    }
    #[cfg(not(feature = "flex"))]
    let _ = path;
    conv.forward(x)
}

/// A spatial axis one voxel thin, when `conv` is a 3x3x3 convolution with stride 1 and padding 1
/// (the last such axis).
fn thin_axis(conv: &Conv3d, x: &Tensor<5>) -> Option<usize> {
    let same_size = conv.kernel_size == [3, 3, 3]
        && conv.stride == [1, 1, 1]
        && conv.dilation == [1, 1, 1]
        && conv.groups == 1
        && conv.padding == PaddingConfig3d::Explicit(1, 1, 1);
    let dims = x.dims();
    same_size.then(|| (2..5).rev().find(|&a| dims[a] == 1))?
}

/// Along a one-voxel axis the kernel's outer planes meet only the zero padding, so the layer is
/// a 2D 3x3 convolution with the middle plane: a third of the work, and no padded 3-deep grid
/// (one-slice images, and the coarsest levels of small patches). The weight's outer planes get a
/// zero gradient, as they do from the 3D convolution.
fn across_thin_axis(conv: &Conv3d, x: Tensor<5>, axis: usize) -> Tensor<5> {
    let x = x.swap_dims(axis, 4);
    let [n, channels, rows, cols, _] = x.dims();
    let weight = conv.weight.val().swap_dims(axis, 4).narrow(4, 1, 1);
    let [out_channels, in_channels, kr, kc, _] = weight.dims();
    let plane = conv2d(
        x.reshape([n, channels, rows, cols]),
        weight.reshape([out_channels, in_channels, kr, kc]),
        conv.bias.as_ref().map(|bias| bias.val()),
        ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
    );
    plane
        .reshape([n, out_channels, rows, cols, 1])
        .swap_dims(axis, 4)
}

#[cfg(feature = "flex")]
mod direct {
    use std::borrow::Cow;

    use burn::nn::PaddingConfig3d;
    use burn::nn::conv::Conv3d;
    use burn::tensor::{DType, Tensor};
    use burn_flex::FlexTensor;
    use semisam_kernels::KernelPath;
    use semisam_kernels::conv3x3x3 as kernels;
    use semisam_kernels::grid::PaddedGrid;

    use crate::ops::direct_layer::{self, DirectLayer};
    use crate::ops::flex_primitives::{dims, flex_tensor, values};

    pub(super) fn applies(conv: &Conv3d, x: &Tensor<5>) -> bool {
        conv.kernel_size == [3, 3, 3]
            && conv.stride == [1, 1, 1]
            && conv.dilation == [1, 1, 1]
            && conv.groups == 1
            && conv.padding == PaddingConfig3d::Explicit(1, 1, 1)
            && x.dtype() == DType::F32
    }

    /// The convolution; `None` when the tensors are not all flex tensors of one kind.
    pub(super) fn forward(
        path: KernelPath,
        x: Tensor<5>,
        weight: Tensor<5>,
        bias: Option<Tensor<1>>,
    ) -> Option<Tensor<5>> {
        direct_layer::run(Conv3x3x3 { path }, x, weight, bias)
    }

    /// The layer on one kernel path; the backward step keeps the forward's path.
    #[derive(Debug, Clone)]
    struct Conv3x3x3 {
        path: KernelPath,
    }

    impl DirectLayer for Conv3x3x3 {
        fn forward(&self, x: &FlexTensor, weight: &FlexTensor, bias: Option<&[f32]>) -> FlexTensor {
            let layer = Layer::of(self.path, x, weight);
            let weights =
                kernels::forward_weights(&values(weight), layer.out_channels, layer.in_channels);
            let y = layer.correlate(
                &layer.pad_input(x),
                layer.in_channels,
                &weights,
                layer.out_channels,
                bias,
            );
            layer.volume(y, layer.out_channels)
        }

        /// The output gradient on the padded grid, in rows padded to the kernel's block.
        fn prepare_gradient<'a>(
            &self,
            x: &FlexTensor,
            weight: &FlexTensor,
            output_gradient: &'a [f32],
        ) -> Cow<'a, [f32]> {
            Cow::Owned(Layer::of(self.path, x, weight).pad_gradient(output_gradient))
        }

        /// The transposed convolution of the output gradient: the same kernel with the weights
        /// flipped and transposed.
        fn input_gradient(
            &self,
            x: &FlexTensor,
            weight: &FlexTensor,
            output_gradient: &[f32],
        ) -> FlexTensor {
            let layer = Layer::of(self.path, x, weight);
            let out_rows = kernels::padded_channels(layer.out_channels);
            let weights = kernels::input_gradient_weights(
                &values(weight),
                layer.out_channels,
                layer.in_channels,
                out_rows,
            );
            let dx = layer.correlate(output_gradient, out_rows, &weights, layer.in_channels, None);
            layer.volume(dx, layer.in_channels)
        }

        fn weight_gradient(
            &self,
            x: &FlexTensor,
            weight: &FlexTensor,
            output_gradient: &[f32],
        ) -> FlexTensor {
            let layer = Layer::of(self.path, x, weight);
            let dw = kernels::weight_gradient(
                self.path,
                &layer.grid,
                &layer.pad_input(x),
                layer.in_channels,
                output_gradient,
                kernels::padded_channels(layer.out_channels),
                layer.out_channels,
                layer.items,
            );
            flex_tensor(dw, &[layer.out_channels, layer.in_channels, 3, 3, 3])
        }
    }

    /// Sizes of one convolution call.
    struct Layer {
        path: KernelPath,
        items: usize,
        in_channels: usize,
        out_channels: usize,
        grid: PaddedGrid,
    }

    impl Layer {
        fn of(path: KernelPath, x: &FlexTensor, weight: &FlexTensor) -> Self {
            let (xs, ws) = (dims(x), dims(weight));
            Self {
                path,
                items: xs[0],
                in_channels: xs[1],
                out_channels: ws[0],
                grid: PaddedGrid::new(xs[2], xs[3], xs[4]),
            }
        }

        /// `kernels::correlate` of `input` (`in_rows` grid rows per item) into `channels` output
        /// channels, in the contiguous layout.
        fn correlate(
            &self,
            input: &[f32],
            in_rows: usize,
            weights: &[f32],
            channels: usize,
            bias: Option<&[f32]>,
        ) -> Vec<f32> {
            kernels::correlate(
                self.path, &self.grid, input, self.items, in_rows, weights, channels, bias,
            )
        }

        fn pad_input(&self, x: &FlexTensor) -> Vec<f32> {
            self.grid
                .pad(&values(x), self.items, self.in_channels, self.in_channels)
        }

        fn pad_gradient(&self, output_gradient: &[f32]) -> Vec<f32> {
            let rows = kernels::padded_channels(self.out_channels);
            self.grid
                .pad(output_gradient, self.items, self.out_channels, rows)
        }

        fn volume(&self, values: Vec<f32>, channels: usize) -> FlexTensor {
            let shape = [
                self.items,
                channels,
                self.grid.depth,
                self.grid.height,
                self.grid.width,
            ];
            flex_tensor(values, &shape)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::layer_parity::{check_against_burn, max_abs_diff};
    use burn::nn::PaddingConfig3d;
    use burn::nn::conv::Conv3dConfig;
    use burn::tensor::{Device, Distribution};

    fn layer(in_channels: usize, out_channels: usize, device: &Device) -> Conv3d {
        layer_with_bias(in_channels, out_channels, true, device)
    }

    fn layer_with_bias(
        in_channels: usize,
        out_channels: usize,
        bias: bool,
        device: &Device,
    ) -> Conv3d {
        Conv3dConfig::new([in_channels, out_channels], [3, 3, 3])
            .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
            .with_bias(bias)
            .init(device)
    }

    /// Forward and every gradient (input, weight, bias) against burn's own convolution on every
    /// kernel path this CPU runs, for channel counts on and off the kernels' blocks of 4, uneven
    /// sides and a grid whose span covers several parallel jobs.
    #[test]
    fn matches_burn_conv3d_forward_and_gradients_on_every_path() {
        let device = Device::default().autodiff();
        for (items, cin, cout, sides, bias) in [
            (2, 1, 8, [6, 7, 5], true),
            (3, 6, 5, [4, 9, 6], true),
            (1, 16, 16, [8, 8, 6], true),
            (2, 4, 3, [5, 4, 6], false),
            (1, 3, 4, [9, 12, 14], true),
        ] {
            let conv = layer_with_bias(cin, cout, bias, &device);
            let shape = [items, cin, sides[0], sides[1], sides[2]];
            let x = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let bias = conv.bias.as_ref().map(|bias| bias.val());
            for path in KernelPath::available() {
                assert!(
                    direct::forward(path, x.clone(), conv.weight.val(), bias.clone()).is_some(),
                    "the direct kernels did not run"
                );
                check_against_burn(
                    &format!("{}: {shape:?} -> {cout}", path.name()),
                    x.clone(),
                    &[("weight", conv.weight.val())],
                    bias.clone(),
                    |x| conv3x3x3_on(path, &conv, x),
                    |x| conv.forward(x),
                );
            }
        }
    }

    /// One-voxel axes (one-slice images, the coarsest level of a small patch) go through the 2D
    /// convolution with the kernel's middle plane: the same forward and gradients as burn's 3D
    /// convolution, along each axis.
    #[test]
    fn thin_axes_match_burn_conv3d_forward_and_gradients() {
        let device = Device::default().autodiff();
        for (cin, cout, sides, thin) in [
            (3, 4, [7, 6, 1], 4),
            (2, 5, [1, 6, 5], 2),
            (4, 3, [5, 1, 6], 3),
            (4, 4, [1, 1, 1], 4),
            (1, 8, [8, 12, 1], 4),
        ] {
            let conv = layer(cin, cout, &device);
            let shape = [2, cin, sides[0], sides[1], sides[2]];
            let x = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            assert_eq!(thin_axis(&conv, &x), Some(thin), "{shape:?}");
            check_against_burn(
                &format!("thin axis {thin}: {shape:?} -> {cout}"),
                x,
                &[("weight", conv.weight.val())],
                conv.bias.as_ref().map(|bias| bias.val()),
                |x| conv3x3x3(&conv, x),
                |x| conv.forward(x),
            );
        }
        let thick = Tensor::<5>::zeros([1, 3, 2, 2, 2], &device);
        assert_eq!(thin_axis(&layer(3, 4, &device), &thick), None);
    }

    #[test]
    fn matches_burn_conv3d_without_autodiff_on_every_path() {
        let device = Device::default();
        let conv = layer(3, 4, &device);
        let x = Tensor::<5>::random([2, 3, 5, 6, 7], Distribution::Normal(0.0, 1.0), &device);
        let bias = conv.bias.as_ref().map(|bias| bias.val());
        for path in KernelPath::available() {
            assert!(direct::forward(path, x.clone(), conv.weight.val(), bias.clone()).is_some());
            let error = max_abs_diff(
                conv3x3x3_on(path, &conv, x.clone()),
                conv.forward(x.clone()),
            );
            assert!(error < 1e-5, "{}: forward differs by {error}", path.name());
        }
    }

    #[test]
    fn other_layer_shapes_take_burns_path() {
        let device = Device::default();
        let conv = Conv3dConfig::new([2, 3], [2, 2, 2])
            .with_stride([2, 2, 2])
            .init(&device);
        let x = Tensor::<5>::random([1, 2, 4, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        let direct = conv3x3x3(&conv, x.clone());
        assert_eq!(direct.dims(), [1, 3, 2, 2, 2]);
        assert_eq!(max_abs_diff(direct, conv.forward(x)), 0.0);
    }
}
