//! The networks' 3x3x3 convolutions (stride 1, padding 1) on the flex backend through the direct
//! kernels of `semisam-kernels`, with a hand-written backward for autodiff.
//!
//! burn-flex computes a convolution as im2col + GEMM and its weight gradient as a convolution
//! whose kernel is the whole output gradient; both copy 27 shifted views of their input, which
//! made a V-Net step 3.5x slower than PyTorch's. Any other backend, layer shape or CPU goes
//! through burn's own `Conv3d::forward`, so results never depend on which path ran beyond float
//! rounding (the parity tests bound it).

use burn::nn::conv::Conv3d;
use burn::tensor::Tensor;

/// `conv.forward(x)`, through the direct kernels where they apply.
pub fn conv3x3x3(conv: &Conv3d, x: Tensor<5>) -> Tensor<5> {
    #[cfg(feature = "flex")]
    if direct::applies(conv, &x) {
        let bias = conv.bias.as_ref().map(|bias| bias.val());
        if let Some(y) = direct::forward(x.clone(), conv.weight.val(), bias) {
            return y;
        }
    }
    conv.forward(x)
}

#[cfg(feature = "flex")]
mod direct {
    use burn::nn::PaddingConfig3d;
    use burn::nn::conv::Conv3d;
    use burn::tensor::{DType, Tensor};
    use burn_flex::FlexTensor;
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
            && kernels::supported()
    }

    /// The convolution; `None` when the tensors are not all flex tensors of one kind.
    pub(super) fn forward(
        x: Tensor<5>,
        weight: Tensor<5>,
        bias: Option<Tensor<1>>,
    ) -> Option<Tensor<5>> {
        direct_layer::run(Conv3x3x3, x, weight, bias)
    }

    #[derive(Debug, Clone)]
    struct Conv3x3x3;

    impl DirectLayer for Conv3x3x3 {
        fn forward(&self, x: &FlexTensor, weight: &FlexTensor, bias: Option<&[f32]>) -> FlexTensor {
            let layer = Layer::of(x, weight);
            let out_rows = kernels::padded_channels(layer.out_channels);
            let grid = kernels::correlate(
                &layer.grid,
                &layer.pad_input(x),
                layer.items,
                layer.in_channels,
                &kernels::forward_weights(&values(weight), layer.out_channels, layer.in_channels),
                out_rows,
            );
            let y = layer
                .grid
                .extract(&grid, layer.items, out_rows, layer.out_channels, bias);
            layer.volume(y, layer.out_channels)
        }

        fn input_gradient(
            &self,
            x: &FlexTensor,
            weight: &FlexTensor,
            output_gradient: &[f32],
        ) -> FlexTensor {
            let layer = Layer::of(x, weight);
            let out_rows = kernels::padded_channels(layer.out_channels);
            let in_rows = kernels::padded_channels(layer.in_channels);
            let grid = kernels::correlate(
                &layer.grid,
                &layer.pad_gradient(output_gradient),
                layer.items,
                out_rows,
                &kernels::input_gradient_weights(
                    &values(weight),
                    layer.out_channels,
                    layer.in_channels,
                    out_rows,
                ),
                in_rows,
            );
            let dx = layer
                .grid
                .extract(&grid, layer.items, in_rows, layer.in_channels, None);
            layer.volume(dx, layer.in_channels)
        }

        fn weight_gradient(
            &self,
            x: &FlexTensor,
            weight: &FlexTensor,
            output_gradient: &[f32],
        ) -> FlexTensor {
            let layer = Layer::of(x, weight);
            let dw = kernels::weight_gradient(
                &layer.grid,
                &layer.pad_input(x),
                layer.in_channels,
                &layer.pad_gradient(output_gradient),
                kernels::padded_channels(layer.out_channels),
                layer.out_channels,
                layer.items,
            );
            flex_tensor(dw, &[layer.out_channels, layer.in_channels, 3, 3, 3])
        }
    }

    /// Sizes of one convolution call.
    struct Layer {
        items: usize,
        in_channels: usize,
        out_channels: usize,
        grid: PaddedGrid,
    }

    impl Layer {
        fn of(x: &FlexTensor, weight: &FlexTensor) -> Self {
            let (xs, ws) = (dims(x), dims(weight));
            Self {
                items: xs[0],
                in_channels: xs[1],
                out_channels: ws[0],
                grid: PaddedGrid::new(xs[2], xs[3], xs[4]),
            }
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
    use burn::nn::PaddingConfig3d;
    use burn::nn::conv::Conv3dConfig;
    use burn::tensor::{Device, Distribution};

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

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

    /// Forward and every gradient (input, weight, bias) against burn's own convolution, for
    /// channel counts on and off the kernels' blocks of 4 and uneven sides.
    #[test]
    fn matches_burn_conv3d_forward_and_gradients() {
        if !semisam_kernels::conv3x3x3::supported() {
            eprintln!("skipped: the direct kernels need AVX-512F; burn's path ran instead");
            return;
        }
        let device = Device::default().autodiff();
        for (items, cin, cout, sides, bias) in [
            (2, 1, 8, [6, 7, 5], true),
            (3, 6, 5, [4, 9, 6], true),
            (1, 16, 16, [8, 8, 6], true),
            (2, 4, 3, [5, 4, 6], false),
        ] {
            let conv = layer_with_bias(cin, cout, bias, &device);
            let shape = [items, cin, sides[0], sides[1], sides[2]];
            let x = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let weight_of_output = Tensor::<5>::random(
                [items, cout, sides[0], sides[1], sides[2]],
                Distribution::Normal(0.0, 1.0),
                &device,
            );

            let bias = conv.bias.as_ref().map(|bias| bias.val());
            assert!(
                direct::forward(x.clone(), conv.weight.val(), bias).is_some(),
                "the direct kernels did not run"
            );
            let x_direct = x.clone().detach().require_grad();
            let direct = conv3x3x3(&conv, x_direct.clone());
            let x_burn = x.clone().detach().require_grad();
            let reference = conv.forward(x_burn.clone());
            let forward_error = max_abs_diff(direct.clone().detach(), reference.clone().detach());
            assert!(
                forward_error < 1e-5,
                "{shape:?} -> {cout}: forward differs by {forward_error}"
            );

            let direct_grads = (direct * weight_of_output.clone()).sum().backward();
            let burn_grads = (reference * weight_of_output).sum().backward();
            let pairs = [
                (
                    x_direct.grad(&direct_grads).unwrap(),
                    x_burn.grad(&burn_grads).unwrap(),
                ),
                (
                    conv.weight.val().grad(&direct_grads).unwrap(),
                    conv.weight.val().grad(&burn_grads).unwrap(),
                ),
            ];
            for (what, (a, b)) in ["input", "weight"].iter().zip(pairs) {
                let scale: f32 = b.clone().abs().max().into_scalar();
                let scale = scale.max(1.0);
                let error = max_abs_diff(a, b) / scale;
                assert!(
                    error < 1e-5,
                    "{shape:?} -> {cout}: {what} gradient differs by {error} (relative)"
                );
            }
            if let Some(bias) = &conv.bias {
                let bias = bias.val();
                let (a, b) = (
                    bias.grad(&direct_grads).unwrap(),
                    bias.grad(&burn_grads).unwrap(),
                );
                let scale: f32 = b.clone().abs().max().into_scalar();
                let error = max_abs_diff(a, b) / scale.max(1.0);
                assert!(error < 1e-5, "bias gradient differs by {error} (relative)");
            }
        }
    }

    #[test]
    fn matches_burn_conv3d_without_autodiff() {
        let device = Device::default();
        let conv = layer(3, 4, &device);
        let x = Tensor::<5>::random([2, 3, 5, 6, 7], Distribution::Normal(0.0, 1.0), &device);
        if semisam_kernels::conv3x3x3::supported() {
            let bias = conv.bias.as_ref().map(|bias| bias.val());
            assert!(direct::forward(x.clone(), conv.weight.val(), bias).is_some());
        }
        let error = max_abs_diff(conv3x3x3(&conv, x.clone()), conv.forward(x));
        assert!(error < 1e-5, "forward differs by {error}");
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
