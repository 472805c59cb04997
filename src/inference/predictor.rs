//! The specialist network as a sliding-window predictor: ndarray windows in, softmax
//! probabilities out; a whole prepared case predicted window by window.

use burn::tensor::Device;
use burn::tensor::activation::softmax;
use ndarray::{Array3, Array5, ArrayView5};

use super::sliding_window::{SlidingWindow, SlidingWindowError, WindowPrediction};
use crate::networks::arrays::{array_to_tensor, tensor_to_array};
use crate::networks::{NetworkError, Specialist};

/// Predict one case with a model in evaluation mode.
pub fn predict_case(
    model: &Specialist,
    image: &Array3<f32>,
    classes: usize,
    window: SlidingWindow,
    device: &Device,
    progress: impl FnMut(usize, usize),
) -> Result<WindowPrediction, NetworkError> {
    window
        .predict(
            image.view(),
            classes,
            |w| specialist_probabilities(model, w, device),
            progress,
        )
        .map_err(|e| match e {
            SlidingWindowError::Predictor(e) => e,
            other => NetworkError::Config(other.to_string()),
        })
}

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
