//! Which instruction set the kernels run on: AVX-512F, AVX2 + FMA, or portable Rust.
//!
//! The best path the CPU has is chosen at run time; `SEMISAM_KERNELS=avx512|avx2|generic`
//! forces one, so that every path can be tested and timed on one machine. The variable is read
//! once per process ([`selected`]). A forced path the CPU lacks, or an unknown name, is not
//! fatal there: the kernels warn once on stderr and take the best available path, because they
//! run deep inside a network's forward pass where no error can be returned. Callers that can
//! refuse (a benchmark, a command line) check [`requested`] first.

use std::sync::OnceLock;

/// The environment variable that forces a path.
pub const ENV_VAR: &str = "SEMISAM_KERNELS";

/// An instruction set the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// 512-bit registers (x86-64 with AVX-512F).
    Avx512,
    /// 256-bit registers with fused multiply-add (x86-64 with AVX2 and FMA).
    Avx2,
    /// Plain Rust, vectorised by the compiler for the build target; runs on every CPU.
    Generic,
}

/// Why the requested path cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelChoiceError {
    #[error("SEMISAM_KERNELS={value:?} is not a kernel path (expected avx512, avx2 or generic)")]
    Unknown { value: String },
    #[error("SEMISAM_KERNELS={} asks for a path this CPU lacks (available: {})", .path.name(), names(&KernelPath::available()))]
    Unavailable { path: KernelPath },
}

fn names(paths: &[KernelPath]) -> String {
    paths
        .iter()
        .map(|path| path.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl KernelPath {
    /// Every path, fastest first.
    pub const ALL: [KernelPath; 3] = [KernelPath::Avx512, KernelPath::Avx2, KernelPath::Generic];

    /// The name `SEMISAM_KERNELS` takes.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx2 => "avx2",
            KernelPath::Generic => "generic",
        }
    }

    /// The path named `name` (surrounding blanks and case ignored).
    pub fn parse(name: &str) -> Result<Self, KernelChoiceError> {
        let wanted = name.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|path| path.name() == wanted)
            .ok_or_else(|| KernelChoiceError::Unknown {
                value: name.to_string(),
            })
    }

    /// Whether this CPU runs the path.
    pub fn is_available(self) -> bool {
        match self {
            KernelPath::Generic => true,
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            KernelPath::Avx512 | KernelPath::Avx2 => false,
        }
    }

    /// The paths this CPU runs, fastest first (never empty: the generic path runs everywhere).
    pub fn available() -> Vec<KernelPath> {
        Self::ALL
            .into_iter()
            .filter(|path| path.is_available())
            .collect()
    }

    /// The fastest path this CPU runs.
    pub fn best() -> KernelPath {
        Self::available()[0]
    }

    /// Panics unless the CPU runs the path: the kernels' `unsafe` calls rely on it.
    pub(crate) fn assert_available(self) {
        assert!(
            self.is_available(),
            "the {} kernels need an instruction set this CPU lacks",
            self.name()
        );
    }
}

impl KernelPath {
    /// Runs `work` compiled for the path's instruction set, so that the plain loops inlined into
    /// it are vectorised for 512- or 256-bit registers rather than the build target's baseline.
    /// The caller has checked that the CPU runs the path ([`KernelPath::assert_available`]).
    #[inline(always)]
    pub(crate) fn run<R>(self, work: impl FnOnce() -> R) -> R {
        debug_assert!(self.is_available());
        match self {
            // SAFETY: the CPU runs the path (checked by the caller).
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => unsafe { with_avx512(work) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => unsafe { with_avx2(work) },
            _ => work(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn with_avx512<R>(work: impl FnOnce() -> R) -> R {
    work()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(work: impl FnOnce() -> R) -> R {
    work()
}

/// The path `value` (the variable's content, `None` when unset) asks for: `Ok(None)` when it
/// asks for none (unset or blank).
pub fn choose(value: Option<&str>) -> Result<Option<KernelPath>, KernelChoiceError> {
    let Some(value) = value.filter(|value| !value.trim().is_empty()) else {
        return Ok(None);
    };
    let path = KernelPath::parse(value)?;
    if path.is_available() {
        Ok(Some(path))
    } else {
        Err(KernelChoiceError::Unavailable { path })
    }
}

/// The path `SEMISAM_KERNELS` asks for now: `Ok(None)` when it is unset.
pub fn requested() -> Result<Option<KernelPath>, KernelChoiceError> {
    let value = std::env::var(ENV_VAR).ok();
    choose(value.as_deref())
}

/// The path the layers use in this process: `SEMISAM_KERNELS` read once, else the best the CPU
/// has. A request that cannot be honoured logs one warning (through `tracing`, so that it lands in
/// the caller's log with everything else) and falls back to the best path.
pub fn selected() -> KernelPath {
    static SELECTED: OnceLock<KernelPath> = OnceLock::new();
    *SELECTED.get_or_init(|| match requested() {
        Ok(path) => path.unwrap_or_else(KernelPath::best),
        Err(error) => {
            let best = KernelPath::best();
            tracing::warn!("{error}; using the {} kernels", best.name());
            best
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for path in KernelPath::ALL {
            assert_eq!(KernelPath::parse(path.name()), Ok(path));
        }
        assert_eq!(KernelPath::parse(" AVX2 "), Ok(KernelPath::Avx2));
        let error = KernelPath::parse("sse4").unwrap_err();
        assert_eq!(
            error.to_string(),
            "SEMISAM_KERNELS=\"sse4\" is not a kernel path (expected avx512, avx2 or generic)"
        );
    }

    #[test]
    fn unset_or_blank_asks_for_nothing_and_generic_is_always_granted() {
        assert_eq!(choose(None), Ok(None));
        assert_eq!(choose(Some("  ")), Ok(None));
        assert_eq!(choose(Some("generic")), Ok(Some(KernelPath::Generic)));
        assert!(KernelPath::available().contains(&KernelPath::Generic));
        assert_eq!(KernelPath::best(), KernelPath::available()[0]);
    }

    #[test]
    fn a_path_the_cpu_lacks_is_refused_with_the_available_ones() {
        for path in KernelPath::ALL {
            match choose(Some(path.name())) {
                Ok(granted) => assert_eq!(granted, Some(path)),
                Err(error) => {
                    assert!(!path.is_available());
                    let message = error.to_string();
                    assert!(message.contains("this CPU lacks"), "{message}");
                    assert!(message.contains("generic"), "{message}");
                }
            }
        }
    }
}
