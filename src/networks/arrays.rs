//! Between the networks' tensors and the ndarray volumes around them: copies both ways, and the
//! class map of a network's probabilities.

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array3, Array5, ArrayView4, ArrayView5};

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

/// Index of the first maximum along the class axis of `[C, X, Y, Z]` probabilities.
pub fn argmax_classes(probabilities: ArrayView4<f32>) -> Array3<u8> {
    let shape = &probabilities.shape()[1..];
    Array3::from_shape_fn([shape[0], shape[1], shape[2]], |(i, j, k)| {
        let mut best = 0;
        for c in 1..probabilities.shape()[0] {
            if probabilities[[c, i, j, k]] > probabilities[[best, i, j, k]] {
                best = c;
            }
        }
        best as u8
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_the_first_class_and_arrays_round_trip() {
        let probabilities = ndarray::Array4::from_shape_vec(
            [3, 1, 1, 3],
            vec![0.2, 0.5, 0.4, 0.5, 0.5, 0.1, 0.3, 0.0, 0.5],
        )
        .unwrap();
        assert_eq!(
            argmax_classes(probabilities.view())
                .into_raw_vec_and_offset()
                .0,
            [1, 0, 2]
        );
        let array = Array5::from_shape_fn([1, 2, 1, 2, 3], |(_, c, _, j, k)| {
            (c * 100 + j * 10 + k) as f32
        });
        let tensor = array_to_tensor(array.view(), &Device::default());
        assert_eq!(tensor_to_array(tensor), array);
    }
}
