//! Supervised losses on labeled items: voxel-wise cross-entropy and the V-Net Dice.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use super::{LossError, check_same_shape};

/// Smoothing constant of the V-Net Dice (UA-MT `losses.dice_loss`).
pub const DICE_SMOOTH: f64 = 1e-5;

/// Mean over voxels of `-log softmax(logits)[label]`.
///
/// `labels` `[N, X, Y, Z]` must hold class indices in `0..C` (the data pipeline validates
/// them against the dataset's declared labels).
pub fn cross_entropy(logits: Tensor<5>, labels: Tensor<4, Int>) -> Result<Tensor<1>, LossError> {
    let [n, _, x, y, z] = logits.dims();
    check_same_shape(
        "cross_entropy",
        ("logits [N, _, X, Y, Z]", &[n, x, y, z]),
        ("labels", &labels.dims()),
    )?;
    let log_probs = log_softmax(logits, 1);
    let picked = log_probs.gather(1, labels.unsqueeze_dim::<5>(1));
    Ok(picked.mean().neg())
}

/// `1 - (2 Σ p g + s) / (Σ p² + Σ g² + s)` over every element, with s = 1e-5 (V-Net Dice with
/// squared denominator). `probability` and `target` have the same shape.
pub fn soft_dice_loss<const D: usize>(
    probability: Tensor<D>,
    target: Tensor<D>,
) -> Result<Tensor<1>, LossError> {
    check_same_shape(
        "soft_dice_loss",
        ("probability", &probability.dims()),
        ("target", &target.dims()),
    )?;
    let intersection = (probability.clone() * target.clone()).sum();
    let denominator = probability.square().sum() + target.square().sum();
    let ratio =
        intersection.mul_scalar(2.0).add_scalar(DICE_SMOOTH) / denominator.add_scalar(DICE_SMOOTH);
    Ok(ratio.neg().add_scalar(1.0))
}

/// Dice on the foreground: for 2 classes the V-Net Dice of channel 1 against `label == 1`,
/// summed over the whole labeled sub-batch; for more classes the mean of that Dice over the
/// foreground classes 1..C.
pub fn dice_loss_foreground(
    probabilities: Tensor<5>,
    labels: Tensor<4, Int>,
) -> Result<Tensor<1>, LossError> {
    let [n, classes, x, y, z] = probabilities.dims();
    if classes < 2 {
        return Err(LossError::TooFewClasses {
            loss: "dice_loss_foreground",
            min: 2,
            got: classes,
        });
    }
    check_same_shape(
        "dice_loss_foreground",
        ("probabilities [N, _, X, Y, Z]", &[n, x, y, z]),
        ("labels", &labels.dims()),
    )?;
    let mut total: Option<Tensor<1>> = None;
    for class in 1..classes {
        let probability = probabilities
            .clone()
            .narrow(1, class, 1)
            .reshape([n, x, y, z]);
        let target = labels.clone().equal_elem(class as i64).float();
        let dice = soft_dice_loss(probability, target)?;
        total = Some(match total {
            Some(sum) => sum + dice,
            None => dice,
        });
    }
    let total = total.expect("classes >= 2 gives at least one foreground class");
    Ok(total.div_scalar((classes - 1) as f64))
}
