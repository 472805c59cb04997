//! The convolutions SAM-Med3D adds to the layers both ports share, holding plain tensors
//! loaded by key.

use crate::generalists::param_loader::ParamLoader;
use burn::tensor::Tensor;
use burn::tensor::module::{conv_transpose3d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

/// `nn.Conv3d` with a cubic kernel, weight (out, in, k, k, k).
#[derive(Debug, Clone)]
pub(crate) struct Conv3d {
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
}

pub(crate) struct ConvShape {
    pub d_in: usize,
    pub d_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub bias: bool,
}

impl Conv3d {
    pub fn load(params: &mut ParamLoader, prefix: &str, shape: ConvShape) -> Self {
        let k = shape.kernel;
        Self {
            weight: params.tensor(
                &format!("{prefix}.weight"),
                [shape.d_out, shape.d_in, k, k, k],
            ),
            bias: shape
                .bias
                .then(|| params.tensor(&format!("{prefix}.bias"), [shape.d_out])),
            stride: shape.stride,
            padding: shape.padding,
        }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let options = ConvOptions::new([self.stride; 3], [self.padding; 3], [1; 3], 1);
        conv3d(x, self.weight.clone(), self.bias.clone(), options)
    }
}

/// `nn.ConvTranspose3d(kernel 2, stride 2)`, weight (in, out, 2, 2, 2).
#[derive(Debug, Clone)]
pub(crate) struct ConvTranspose3d {
    weight: Tensor<5>,
    bias: Tensor<1>,
}

impl ConvTranspose3d {
    pub fn load(params: &mut ParamLoader, prefix: &str, d_in: usize, d_out: usize) -> Self {
        Self {
            weight: params.tensor(&format!("{prefix}.weight"), [d_in, d_out, 2, 2, 2]),
            bias: params.tensor(&format!("{prefix}.bias"), [d_out]),
        }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let options = ConvTransposeOptions::new([2; 3], [0; 3], [0; 3], [1; 3], 1);
        conv_transpose3d(x, self.weight.clone(), Some(self.bias.clone()), options)
    }
}
