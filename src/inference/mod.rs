//! Sliding-window inference and post-processing.

pub mod ensemble;
pub mod input_check;
pub mod mirror;
pub mod pipeline;
pub mod postprocess;
pub mod predictor;
pub mod probabilities;
pub mod sliding_window;
pub mod window_weights;

pub use pipeline::ModelInput;
pub use sliding_window::{SlidingWindow, WindowPrediction, check_stride};
