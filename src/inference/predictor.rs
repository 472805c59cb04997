//! The specialist network as a sliding-window predictor: ndarray windows in, softmax
//! probabilities out.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array5, ArrayView5};

use crate::networks::{NetworkError, Specialist};

/// Class probabilities `[n, C, X, Y, Z]` of `model` (in evaluation mode: no dropout, running
/// batch-norm statistics) for the windows `[n, 1, X, Y, Z]`.
pub fn specialist_probabilities(
    model: &Specialist,
    windows: ArrayView5<f32>,
    device: &Device,
) -> Result<Array5<f32>, NetworkError> {
    let input = array_to_tensor(windows, device);
    let probabilities = softmax(model.forward(input, None)?, 1);
    Ok(tensor_to_array(probabilities))
}

/// Copy an ndarray into a float tensor on `device`.
pub fn array_to_tensor(array: ArrayView5<f32>, device: &Device) -> Tensor<5> {
    let shape: [usize; 5] = std::array::from_fn(|d| array.shape()[d]);
    let values: Vec<f32> = array.as_standard_layout().iter().copied().collect();
    Tensor::<5>::from_data(TensorData::new(values, shape), device)
}

/// Copy a float tensor back into an ndarray.
pub fn tensor_to_array(tensor: Tensor<5>) -> Array5<f32> {
    let shape: [usize; 5] = tensor.dims();
    let values = tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32 just above");
    Array5::from_shape_vec(shape, values).expect("the tensor's own shape")
}
