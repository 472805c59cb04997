//! Training loop, configuration, checkpoints.
