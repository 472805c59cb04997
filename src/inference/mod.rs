//! Sliding-window inference and post-processing.
