//! Training loop, configuration, checkpoints.

pub mod config;
