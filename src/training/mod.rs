//! Training loop, configuration, checkpoints.

pub mod checkpoint;
pub mod config;
pub mod dataset;
pub mod evaluate;
pub mod log;
pub mod pseudo_labels;
pub mod run_dir;
pub mod trainer;
pub mod validation;

pub use config::RunConfig;
pub use trainer::{
    TrainOptions, TrainOutcome, TrainingData, TrainingError, TrainingSetup, ValidationHook,
    load_checkpoint_model, train, train_with,
};
