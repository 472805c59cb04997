//! Softmax and log-softmax over the class axis of `[N, C, X, Y, Z]` tensors, written for
//! segmentation's few classes: a per-class loop of element-wise ops. burn-flex reduces a
//! non-last axis (the max inside its softmax) with a per-element index computation, which
//! showed up among the top costs of a V-Net training step.

use burn::tensor::Tensor;

/// `log softmax` over axis 1. The max shift is detached: it cancels exactly in the value and
/// in the gradient.
pub fn channel_log_softmax(logits: Tensor<5>) -> Tensor<5> {
    let classes = logits.dims()[1];
    let channel = |t: &Tensor<5>, c: usize| t.clone().narrow(1, c, 1);
    let max = (1..classes)
        .fold(channel(&logits, 0), |m, c| m.max_pair(channel(&logits, c)))
        .detach();
    let shifted = logits - max;
    let exp = shifted.clone().exp();
    let sum = (1..classes).fold(channel(&exp, 0), |s, c| s + channel(&exp, c));
    shifted - sum.log()
}

/// `softmax` over axis 1.
pub fn channel_softmax(logits: Tensor<5>) -> Tensor<5> {
    let classes = logits.dims()[1];
    let channel = |t: &Tensor<5>, c: usize| t.clone().narrow(1, c, 1);
    let max = (1..classes)
        .fold(channel(&logits, 0), |m, c| m.max_pair(channel(&logits, c)))
        .detach();
    let exp = (logits - max).exp();
    let sum = (1..classes).fold(channel(&exp, 0), |s, c| s + channel(&exp, c));
    exp / sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::{log_softmax, softmax};
    use burn::tensor::{Device, Distribution};

    fn max_abs_diff(a: Tensor<5>, b: Tensor<5>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn matches_burn_softmax_values_and_gradients() {
        let device = Device::default().autodiff();
        for classes in [2, 3] {
            let logits = Tensor::<5>::random(
                [2, classes, 3, 4, 5],
                Distribution::Normal(0.0, 5.0),
                &device,
            );
            assert!(
                max_abs_diff(channel_softmax(logits.clone()), softmax(logits.clone(), 1)) < 1e-6
            );
            assert!(
                max_abs_diff(
                    channel_log_softmax(logits.clone()),
                    log_softmax(logits.clone(), 1)
                ) < 1e-5
            );
            let weights =
                Tensor::<5>::random([2, classes, 3, 4, 5], Distribution::Default, &device);
            let ours = logits.clone().detach().require_grad();
            let reference = logits.detach().require_grad();
            let g_ours = (channel_log_softmax(ours.clone()) * weights.clone())
                .sum()
                .backward();
            let g_ref = (log_softmax(reference.clone(), 1) * weights)
                .sum()
                .backward();
            let diff = max_abs_diff(ours.grad(&g_ours).unwrap(), reference.grad(&g_ref).unwrap());
            assert!(diff < 1e-5, "gradient differs by {diff}");
        }
    }

    #[test]
    fn two_class_softmax_by_hand() {
        let device = Device::default();
        // logits (0, ln 3): probabilities (1/4, 3/4), log-probabilities (-ln 4, ln 3 - ln 4).
        let logits = Tensor::<5>::from_floats([[[[[0.0f32]]], [[[3f32.ln()]]]]], &device);
        let p = channel_softmax(logits.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(
            (p[0] - 0.25).abs() < 1e-6 && (p[1] - 0.75).abs() < 1e-6,
            "{p:?}"
        );
        let l = channel_log_softmax(logits)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(
            (l[0] + 4f32.ln()).abs() < 1e-6 && (l[1] - (0.75f32).ln()).abs() < 1e-6,
            "{l:?}"
        );
    }
}
