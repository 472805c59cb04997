//! Training loop, configuration, checkpoints.

pub mod checkpoint;
pub mod config;
pub mod log;
pub mod run_dir;
