//! Loss functions (CE, Dice, consistency). All take `[N, C, X, Y, Z]` tensors and return a
//! scalar `Tensor<1>` of one element; shapes are checked and mismatches are errors.

pub mod consistency;
pub mod supervised;

pub use consistency::{masked_squared_error, squared_error_mean, weighted_dice_cross_entropy};
pub use supervised::{cross_entropy, dice_loss_foreground, soft_dice_loss};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LossError {
    #[error("{loss}: shape mismatch, {left_name} is {left:?} but {right_name} is {right:?}")]
    ShapeMismatch {
        loss: &'static str,
        left_name: &'static str,
        left: Vec<usize>,
        right_name: &'static str,
        right: Vec<usize>,
    },
    #[error("{loss}: needs at least {min} classes, got {got}")]
    TooFewClasses {
        loss: &'static str,
        min: usize,
        got: usize,
    },
}

pub(crate) fn check_same_shape(
    loss: &'static str,
    (left_name, left): (&'static str, &[usize]),
    (right_name, right): (&'static str, &[usize]),
) -> Result<(), LossError> {
    if left != right {
        return Err(LossError::ShapeMismatch {
            loss,
            left_name,
            left: left.to_vec(),
            right_name,
            right: right.to_vec(),
        });
    }
    Ok(())
}
