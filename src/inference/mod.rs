//! Sliding-window inference and post-processing.

pub mod input_check;
pub mod pipeline;
pub mod postprocess;
pub mod predictor;
pub mod sliding_window;

pub use pipeline::ModelInput;
pub use sliding_window::{SlidingWindow, WindowPrediction};
