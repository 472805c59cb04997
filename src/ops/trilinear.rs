//! Trilinear interpolation of a `[N, C, D, H, W]` tensor to a given spatial size, matching
//! PyTorch's `F.interpolate(x, size=(d, h, w), mode="trilinear", align_corners=...)`.
//!
//! The interpolation is separable, so it is applied as three 1-D passes (D, then H, then W),
//! each a weighted sum of two `select`s along one axis. Everything is expressed with burn
//! tensor ops, so gradients flow back to the input under autodiff.

use burn::tensor::{Int, Tensor, TensorData};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrilinearError {
    #[error("trilinear interpolation: input spatial size {input:?} has a zero extent")]
    EmptyInput { input: [usize; 3] },
    #[error("trilinear interpolation: output size {output:?} has a zero extent")]
    EmptyOutput { output: [usize; 3] },
}

/// For one axis: the two source indices and the weight of the upper one, for every output index.
#[derive(Debug, Clone, PartialEq)]
struct AxisPlan {
    lower: Vec<i64>,
    upper: Vec<i64>,
    upper_weight: Vec<f32>,
}

/// PyTorch's source-index rule (`area_pixel_compute_source_index` followed by
/// `compute_indices_weights_linear`), computed in f32 as PyTorch does for float tensors so the
/// weights agree bit for bit.
fn axis_plan(in_len: usize, out_len: usize, align_corners: bool) -> AxisPlan {
    let scale: f32 = if align_corners {
        if out_len > 1 {
            (in_len as f32 - 1.0) / (out_len as f32 - 1.0)
        } else {
            0.0
        }
    } else {
        in_len as f32 / out_len as f32
    };
    let mut plan = AxisPlan {
        lower: Vec::with_capacity(out_len),
        upper: Vec::with_capacity(out_len),
        upper_weight: Vec::with_capacity(out_len),
    };
    for dst in 0..out_len {
        let src = if align_corners {
            scale * dst as f32
        } else {
            (scale * (dst as f32 + 0.5) - 0.5).max(0.0)
        };
        let lower = (src as usize).min(in_len - 1);
        let upper = (lower + 1).min(in_len - 1);
        plan.lower.push(lower as i64);
        plan.upper.push(upper as i64);
        plan.upper_weight.push((src - lower as f32).clamp(0.0, 1.0));
    }
    plan
}

/// Interpolates along tensor axis `axis` (2, 3 or 4) to `out_len` samples.
fn interpolate_axis(x: Tensor<5>, axis: usize, out_len: usize, align_corners: bool) -> Tensor<5> {
    let in_len = x.dims()[axis];
    if in_len == out_len {
        // Both conventions map every index onto itself with weight zero on the neighbour.
        return x;
    }
    let device = x.device();
    let plan = axis_plan(in_len, out_len, align_corners);
    let lower = Tensor::<1, Int>::from_data(TensorData::new(plan.lower, [out_len]), &device);
    let upper = Tensor::<1, Int>::from_data(TensorData::new(plan.upper, [out_len]), &device);
    let lower_weight: Vec<f32> = plan.upper_weight.iter().map(|w| 1.0 - w).collect();
    let mut weight_shape = [1usize; 5];
    weight_shape[axis] = out_len;
    let upper_weight =
        Tensor::<5>::from_data(TensorData::new(plan.upper_weight, weight_shape), &device);
    let lower_weight = Tensor::<5>::from_data(TensorData::new(lower_weight, weight_shape), &device);
    x.clone().select(axis, lower) * lower_weight + x.select(axis, upper) * upper_weight
}

/// Resizes the spatial axes of `x` (`[N, C, D, H, W]`) to `size` with trilinear interpolation,
/// as `F.interpolate(x, size=size, mode="trilinear", align_corners=align_corners)`.
pub fn trilinear_interpolate(
    x: Tensor<5>,
    size: [usize; 3],
    align_corners: bool,
) -> Result<Tensor<5>, TrilinearError> {
    let [_, _, d, h, w] = x.dims();
    if d == 0 || h == 0 || w == 0 {
        return Err(TrilinearError::EmptyInput { input: [d, h, w] });
    }
    if size.contains(&0) {
        return Err(TrilinearError::EmptyOutput { output: size });
    }
    let x = interpolate_axis(x, 2, size[0], align_corners);
    let x = interpolate_axis(x, 3, size[1], align_corners);
    Ok(interpolate_axis(x, 4, size[2], align_corners))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use ndarray::ArrayD;
    use ndarray_npy::ReadNpyExt;
    use std::path::PathBuf;

    fn fixture(name: &str) -> ArrayD<f32> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sammed3d/interp")
            .join(name);
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        ArrayD::<f32>::read_npy(file).unwrap_or_else(|e| panic!("{path:?}: {e}"))
    }

    fn to_tensor(a: &ArrayD<f32>, device: &Device) -> Tensor<5> {
        let shape: [usize; 5] = a.shape().try_into().expect("5-D fixture");
        let values: Vec<f32> = a.iter().copied().collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn values(t: Tensor<5>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn line(values: &[f32], device: &Device) -> Tensor<5> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [1, 1, 1, 1, values.len()]),
            device,
        )
    }

    #[test]
    fn upsampling_by_four_matches_pytorch() {
        let device = Device::default();
        let input = to_tensor(&fixture("trilinear_in_8.npy"), &device);
        let expected = fixture("trilinear_up4_out_32.npy");
        let out = trilinear_interpolate(input, [32, 32, 32], false).unwrap();
        assert_eq!(out.dims(), [1, 1, 32, 32, 32]);
        let diff = max_abs_diff(&values(out), expected.as_slice().unwrap());
        assert!(diff <= 1e-5, "max abs diff {diff} > 1e-5");
    }

    #[test]
    fn non_integer_scales_match_pytorch() {
        let device = Device::default();
        let input = to_tensor(&fixture("trilinear_in_5x7x6.npy"), &device);
        let expected = fixture("trilinear_out_13x16x11.npy");
        let out = trilinear_interpolate(input, [13, 16, 11], false).unwrap();
        assert_eq!(out.dims(), [1, 1, 13, 16, 11]);
        let diff = max_abs_diff(&values(out), expected.as_slice().unwrap());
        assert!(diff <= 2e-5, "max abs diff {diff} > 2e-5");
    }

    #[test]
    fn half_pixel_rule_by_hand() {
        // 2 -> 4, align_corners=false: src = (dst+0.5)/2 - 0.5 = -0.25 (clamped to 0), 0.25,
        // 0.75, 1.25 (upper index clamped to 1).
        let device = Device::default();
        let out = trilinear_interpolate(line(&[1.0, 3.0], &device), [1, 1, 4], false).unwrap();
        assert_eq!(values(out), vec![1.0, 1.5, 2.5, 3.0]);
        // 4 -> 2: src = (dst+0.5)*2 - 0.5 = 0.5, 2.5.
        let out =
            trilinear_interpolate(line(&[0.0, 2.0, 4.0, 8.0], &device), [1, 1, 2], false).unwrap();
        assert_eq!(values(out), vec![1.0, 6.0]);
    }

    #[test]
    fn align_corners_rule_by_hand() {
        // 3 -> 5, align_corners=true: src = dst * 2/4 = 0, 0.5, 1, 1.5, 2.
        let device = Device::default();
        let out = trilinear_interpolate(line(&[0.0, 4.0, 2.0], &device), [1, 1, 5], true).unwrap();
        assert_eq!(values(out), vec![0.0, 2.0, 4.0, 3.0, 2.0]);
        // A single output sample takes the first input sample.
        let out = trilinear_interpolate(line(&[5.0, 7.0], &device), [1, 1, 1], true).unwrap();
        assert_eq!(values(out), vec![5.0]);
    }

    #[test]
    fn axes_are_interpolated_independently() {
        // 2x2x2 -> 3x3x3 with align_corners=true: the centre is the mean of the 8 corners and
        // the corners are kept.
        let device = Device::default();
        let corners: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let x = Tensor::<5>::from_data(TensorData::new(corners, [1, 1, 2, 2, 2]), &device);
        let out = values(trilinear_interpolate(x, [3, 3, 3], true).unwrap());
        let at = |d: usize, h: usize, w: usize| out[d * 9 + h * 3 + w];
        assert_eq!(at(1, 1, 1), 3.5);
        assert_eq!(at(0, 0, 0), 0.0);
        assert_eq!(at(2, 2, 2), 7.0);
        assert_eq!(at(2, 0, 0), 4.0);
        assert_eq!(at(0, 2, 1), 2.5);
    }

    #[test]
    fn batch_and_channels_are_kept_apart() {
        let device = Device::default();
        let data = vec![1.0, 3.0, 10.0, 30.0, -1.0, -3.0, 0.0, 2.0];
        let x = Tensor::<5>::from_data(TensorData::new(data, [2, 2, 1, 1, 2]), &device);
        let out = trilinear_interpolate(x, [1, 1, 4], false).unwrap();
        assert_eq!(out.dims(), [2, 2, 1, 1, 4]);
        assert_eq!(
            values(out),
            vec![
                1.0, 1.5, 2.5, 3.0, 10.0, 15.0, 25.0, 30.0, -1.0, -1.5, -2.5, -3.0, 0.0, 0.5, 1.5,
                2.0
            ]
        );
    }

    #[test]
    fn gradient_flows_to_the_input() {
        // out = [x0, 0.75 x0 + 0.25 x1, 0.25 x0 + 0.75 x1, x1]; loss = sum(out * [1, 2, 3, 4])
        // so d loss / dx0 = 1 + 1.5 + 0.75 = 3.25 and d loss / dx1 = 0.5 + 2.25 + 4 = 6.75.
        let device = Device::default().autodiff();
        let x = line(&[1.0, 3.0], &device).require_grad();
        let out = trilinear_interpolate(x.clone(), [1, 1, 4], false).unwrap();
        let loss = (out * line(&[1.0, 2.0, 3.0, 4.0], &device)).sum();
        let grads = loss.backward();
        let grad = x.grad(&grads).expect("input gradient");
        assert_eq!(
            grad.into_data().try_to_vec::<f32>().unwrap(),
            vec![3.25, 6.75]
        );
    }

    #[test]
    fn empty_sizes_are_errors() {
        let device = Device::default();
        let x = Tensor::<5>::zeros([1, 1, 2, 2, 2], &device);
        assert_eq!(
            trilinear_interpolate(x, [4, 0, 4], false).unwrap_err(),
            TrilinearError::EmptyOutput { output: [4, 0, 4] }
        );
        let x = Tensor::<5>::zeros([1, 1, 2, 0, 2], &device);
        assert_eq!(
            trilinear_interpolate(x, [4, 4, 4], false).unwrap_err(),
            TrilinearError::EmptyInput { input: [2, 0, 2] }
        );
    }
}
