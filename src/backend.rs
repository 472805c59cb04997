//! Run-time backend selection. burn 0.22 picks the backend through `Device`; the pure-Rust
//! `flex` CPU backend is the default, others are behind cargo features.

pub use burn::tensor::Device;

/// The default device: flex (multi-threaded CPU) unless another backend feature is chosen.
pub fn default_device() -> Device {
    Device::default()
}

/// The burn backend this build computes with.
pub fn name() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "wgpu") {
        "wgpu"
    } else if cfg!(feature = "tch") {
        "tch"
    } else {
        "flex"
    }
}

/// The vector instruction sets this CPU has among those the kernels and burn's matmuls use.
pub fn cpu_features() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        let detected = [
            ("sse4.2", std::arch::is_x86_feature_detected!("sse4.2")),
            ("avx", std::arch::is_x86_feature_detected!("avx")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
        ];
        detected
            .into_iter()
            .filter_map(|(name, has)| has.then_some(name))
            .collect()
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            vec!["neon"]
        } else {
            vec![]
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        vec![]
    }
}
