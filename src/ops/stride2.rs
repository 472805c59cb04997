//! The V-Net's 2x2x2 stride-2 convolution (down) and transposed convolution (up) on the flex
//! backend as space-to-depth + GEMM (`semisam_kernels::stride2`), with hand-written gradients.
//!
//! burn-flex runs the down convolution through im2col (11x PyTorch's forward time at the LA
//! profile's first level) and differentiates the transposed one through generic convolutions
//! (6x PyTorch's backward). Other shapes, backends and dtypes take burn's own layers.

#[cfg(feature = "flex")]
use burn::nn::PaddingConfig3d;
use burn::nn::conv::{Conv3d, ConvTranspose3d};
#[cfg(feature = "flex")]
use burn::tensor::DType;
use burn::tensor::Tensor;

/// `conv.forward(x)` for a down-sampling convolution, directly where it applies.
pub fn down_conv(conv: &Conv3d, x: Tensor<5>) -> Tensor<5> {
    #[cfg(feature = "flex")]
    if matches!(
        conv.padding,
        PaddingConfig3d::Valid | PaddingConfig3d::Explicit(0, 0, 0)
    ) && conv.kernel_size == [2, 2, 2]
        && conv.stride == [2, 2, 2]
        && conv.dilation == [1, 1, 1]
        && conv.groups == 1
        && even_sides(&x)
        && let Some(y) = direct::run(
            direct::Down,
            x.clone(),
            conv.weight.val(),
            conv.bias.as_ref().map(|bias| bias.val()),
        )
    {
        return y;
    }
    conv.forward(x)
}

/// `conv.forward(x)` for an up-sampling transposed convolution, directly where it applies.
pub fn up_conv(conv: &ConvTranspose3d, x: Tensor<5>) -> Tensor<5> {
    #[cfg(feature = "flex")]
    if conv.kernel_size == [2, 2, 2]
        && conv.stride == [2, 2, 2]
        && conv.dilation == [1, 1, 1]
        && conv.groups == 1
        && conv.padding == [0, 0, 0]
        && conv.padding_out == [0, 0, 0]
        && x.dtype() == DType::F32
        && let Some(y) = direct::run(
            direct::Up,
            x.clone(),
            conv.weight.val(),
            conv.bias.as_ref().map(|bias| bias.val()),
        )
    {
        return y;
    }
    conv.forward(x)
}

#[cfg(feature = "flex")]
fn even_sides(x: &Tensor<5>) -> bool {
    let [_, _, d, h, w] = x.dims();
    x.dtype() == DType::F32 && d.is_multiple_of(2) && h.is_multiple_of(2) && w.is_multiple_of(2)
}

#[cfg(feature = "flex")]
mod direct {
    use std::borrow::Cow;

    use burn_flex::FlexTensor;
    use semisam_kernels::matmul::{Matrix, matmul};
    use semisam_kernels::stride2::{FineGrid, depth_to_space, space_to_depth};

    use crate::ops::direct_layer::DirectLayer;
    pub(super) use crate::ops::direct_layer::run;
    use crate::ops::flex_primitives::{dims, flex_tensor, values};

    /// Down-sampling: `x` is fine `[n][c][fine]`, the weight `[out][c][2][2][2]`.
    #[derive(Debug, Clone)]
    pub(super) struct Down;

    /// Up-sampling: `x` is coarse `[n][c][coarse]`, the weight `[c][out][2][2][2]`.
    #[derive(Debug, Clone)]
    pub(super) struct Up;

    /// The fine grid of a tensor `[n][c][d][h][w]`, or of its up-sampled version with `channels`.
    fn fine(shape: &[usize], channels: usize, scale: usize) -> FineGrid {
        FineGrid {
            items: shape[0],
            channels,
            depth: shape[2] * scale,
            height: shape[3] * scale,
            width: shape[4] * scale,
        }
    }

    /// `[items][rows][cells]` with `rows` rows, each filled with `bias[row]` or zero.
    fn filled(items: usize, rows: usize, cells: usize, bias: Option<&[f32]>) -> Vec<f32> {
        match bias {
            Some(bias) => (0..items)
                .flat_map(|_| bias.iter().flat_map(|&b| std::iter::repeat_n(b, cells)))
                .collect(),
            None => vec![0.0; items * rows * cells],
        }
    }

    impl DirectLayer for Down {
        fn forward(&self, x: &FlexTensor, weight: &FlexTensor, bias: Option<&[f32]>) -> FlexTensor {
            let shape = dims(x);
            let out = dims(weight)[0];
            let grid = fine(&shape, shape[1], 1);
            let (k, cells) = (8 * grid.channels, grid.cells());
            let depth = space_to_depth(&values(x), grid);
            let weight = values(weight);
            let mut y = filled(grid.items, out, cells, bias);
            for (y, depth) in y.chunks_mut(out * cells).zip(depth.chunks(k * cells)) {
                matmul(
                    y,
                    Matrix::row_major(&weight, out, k),
                    Matrix::row_major(depth, k, cells),
                    bias.is_some(),
                );
            }
            flex_tensor(
                y,
                &[grid.items, out, shape[2] / 2, shape[3] / 2, shape[4] / 2],
            )
        }

        fn input_gradient(&self, x: &FlexTensor, weight: &FlexTensor, dy: &[f32]) -> FlexTensor {
            let shape = dims(x);
            let out = dims(weight)[0];
            let grid = fine(&shape, shape[1], 1);
            let (k, cells) = (8 * grid.channels, grid.cells());
            let weight = values(weight);
            let mut depth = vec![0.0; grid.items * k * cells];
            for (depth, dy) in depth.chunks_mut(k * cells).zip(dy.chunks(out * cells)) {
                matmul(
                    depth,
                    Matrix::row_major(&weight, out, k).transposed(),
                    Matrix::row_major(dy, out, cells),
                    false,
                );
            }
            flex_tensor(depth_to_space(&depth, grid, None), &shape)
        }

        fn weight_gradient(&self, x: &FlexTensor, weight: &FlexTensor, dy: &[f32]) -> FlexTensor {
            let shape = dims(x);
            let weight_shape = dims(weight);
            let out = weight_shape[0];
            let grid = fine(&shape, shape[1], 1);
            let (k, cells) = (8 * grid.channels, grid.cells());
            let depth = space_to_depth(&values(x), grid);
            let mut dw = vec![0.0; out * k];
            for (item, (depth, dy)) in depth
                .chunks(k * cells)
                .zip(dy.chunks(out * cells))
                .enumerate()
            {
                matmul(
                    &mut dw,
                    Matrix::row_major(dy, out, cells),
                    Matrix::row_major(depth, k, cells).transposed(),
                    item > 0,
                );
            }
            flex_tensor(dw, &weight_shape)
        }
    }

    impl DirectLayer for Up {
        fn forward(&self, x: &FlexTensor, weight: &FlexTensor, bias: Option<&[f32]>) -> FlexTensor {
            let shape = dims(x);
            let (channels, out) = (shape[1], dims(weight)[1]);
            let grid = fine(&shape, out, 2);
            let (k, cells) = (8 * out, grid.cells());
            let (x, weight) = (values(x), values(weight));
            let mut depth = vec![0.0; grid.items * k * cells];
            for (depth, x) in depth.chunks_mut(k * cells).zip(x.chunks(channels * cells)) {
                matmul(
                    depth,
                    Matrix::row_major(&weight, channels, k).transposed(),
                    Matrix::row_major(x, channels, cells),
                    false,
                );
            }
            let y = depth_to_space(&depth, grid, bias);
            flex_tensor(y, &[grid.items, out, grid.depth, grid.height, grid.width])
        }

        /// The output gradient in space-to-depth layout.
        fn prepare_gradient<'a>(
            &self,
            x: &FlexTensor,
            weight: &FlexTensor,
            dy: &'a [f32],
        ) -> Cow<'a, [f32]> {
            let grid = fine(&dims(x), dims(weight)[1], 2);
            Cow::Owned(space_to_depth(dy, grid))
        }

        fn input_gradient(&self, x: &FlexTensor, weight: &FlexTensor, depth: &[f32]) -> FlexTensor {
            let shape = dims(x);
            let (channels, out) = (shape[1], dims(weight)[1]);
            let grid = fine(&shape, out, 2);
            let (k, cells) = (8 * out, grid.cells());
            let weight = values(weight);
            let mut dx = vec![0.0; grid.items * channels * cells];
            for (dx, depth) in dx.chunks_mut(channels * cells).zip(depth.chunks(k * cells)) {
                matmul(
                    dx,
                    Matrix::row_major(&weight, channels, k),
                    Matrix::row_major(depth, k, cells),
                    false,
                );
            }
            flex_tensor(dx, &shape)
        }

        fn weight_gradient(
            &self,
            x: &FlexTensor,
            weight: &FlexTensor,
            depth: &[f32],
        ) -> FlexTensor {
            let shape = dims(x);
            let weight_shape = dims(weight);
            let (channels, out) = (shape[1], weight_shape[1]);
            let grid = fine(&shape, out, 2);
            let (k, cells) = (8 * out, grid.cells());
            let x = values(x);
            let mut dw = vec![0.0; channels * k];
            for (item, (x, depth)) in x
                .chunks(channels * cells)
                .zip(depth.chunks(k * cells))
                .enumerate()
            {
                matmul(
                    &mut dw,
                    Matrix::row_major(x, channels, cells),
                    Matrix::row_major(depth, k, cells).transposed(),
                    item > 0,
                );
            }
            flex_tensor(dw, &weight_shape)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::layer_parity::{check_against_burn, max_abs_diff, relative};
    use burn::nn::conv::{Conv3dConfig, ConvTranspose3dConfig};
    use burn::tensor::{Device, Distribution};

    #[test]
    fn down_conv_matches_burn() {
        let device = Device::default().autodiff();
        let conv = Conv3dConfig::new([3, 5], [2, 2, 2])
            .with_stride([2, 2, 2])
            .init(&device);
        let x = Tensor::<5>::random([2, 3, 6, 4, 8], Distribution::Normal(0.0, 1.0), &device);
        #[cfg(feature = "flex")]
        assert!(
            direct::run(direct::Down, x.clone(), conv.weight.val(), None).is_some(),
            "the direct path did not run"
        );
        check_against_burn(
            "down",
            x,
            &[("weight", conv.weight.val())],
            conv.bias.as_ref().map(|bias| bias.val()),
            |x| down_conv(&conv, x),
            |x| conv.forward(x),
        );
    }

    #[test]
    fn up_conv_matches_burn() {
        let device = Device::default().autodiff();
        let conv = ConvTranspose3dConfig::new([6, 3], [2, 2, 2])
            .with_stride([2, 2, 2])
            .init(&device);
        let x = Tensor::<5>::random([3, 6, 2, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        #[cfg(feature = "flex")]
        assert!(
            direct::run(direct::Up, x.clone(), conv.weight.val(), None).is_some(),
            "the direct path did not run"
        );
        check_against_burn(
            "up",
            x,
            &[("weight", conv.weight.val())],
            conv.bias.as_ref().map(|bias| bias.val()),
            |x| up_conv(&conv, x),
            |x| conv.forward(x),
        );
    }

    #[test]
    fn odd_sides_and_plain_tensors_fall_back_or_match() {
        let device = Device::default();
        let conv = Conv3dConfig::new([2, 2], [2, 2, 2])
            .with_stride([2, 2, 2])
            .init(&device);
        let odd = Tensor::<5>::random([1, 2, 5, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(
            max_abs_diff(down_conv(&conv, odd.clone()), conv.forward(odd)),
            0.0
        );
        let even = Tensor::<5>::random([1, 2, 4, 4, 6], Distribution::Normal(0.0, 1.0), &device);
        assert!(relative(down_conv(&conv, even.clone()), conv.forward(even)) < 1e-5);
    }
}
