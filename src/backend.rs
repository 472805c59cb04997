//! Run-time backend selection. burn 0.22 picks the backend through `Device`; the pure-Rust
//! `flex` CPU backend is the default, others are behind cargo features.

pub use burn::tensor::Device;

/// The default device: flex (multi-threaded CPU) unless another backend feature is chosen.
pub fn default_device() -> Device {
    Device::default()
}
