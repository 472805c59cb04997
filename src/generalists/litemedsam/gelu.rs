//! GELU on tensors and plain values, over the kernels' vectorised exact-form GELU. The
//! backend's GELU calls a scalar libm `erff` per element, which was ~10% of the encoder's time
//! (130 M evaluations per image, mostly in the 256x256 stage).

use burn::tensor::{Tensor, TensorData};
use semisam_kernels::path::selected as kernel_path;

/// Element-wise exact-form GELU.
pub(crate) fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let dims = x.dims();
    let mut values = x
        .into_data()
        .try_into_vec::<f32>()
        .expect("GELU runs on f32 tensors");
    gelu_in_place(&mut values);
    Tensor::from_data(TensorData::new(values, dims), &device)
}

/// Element-wise exact-form GELU on plain values.
pub(crate) fn gelu_in_place(values: &mut [f32]) {
    semisam_kernels::math::gelu_in_place(kernel_path(), values);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_gelu_equals_the_kernel_on_values() {
        let values: Vec<f32> = (0..70_001).map(|i| (i as f32 - 35_000.0) * 3e-4).collect();
        let device = burn::tensor::Device::default();
        let x = Tensor::<1>::from_data(TensorData::new(values.clone(), [values.len()]), &device);
        let y = gelu(x).into_data().try_into_vec::<f32>().unwrap();
        let mut expected = values;
        gelu_in_place(&mut expected);
        assert_eq!(y, expected);
        let mut one = [1.0f32];
        gelu_in_place(&mut one);
        assert!((one[0] - 0.841_344_7).abs() < 1e-6, "gelu(1) = {}", one[0]);
    }
}
