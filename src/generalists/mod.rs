//! Frozen promptable generalists (SAM variants) that turn the specialist's prediction into
//! pseudo-labels.
//!
//! Two levels:
//! - a model port exposes `embed` (image → embedding, the costly part, prompt-independent) and
//!   `decode` (embedding + prompts → mask logits);
//! - the training loop only sees [`Generalist`]: "here is an unlabeled case, the region a patch
//!   covers and the specialist's probability there; give me a pseudo-label". Slice-wise 2D models
//!   get that from [`slicewise::SliceWise`], which also owns the embedding cache.

pub mod cache;
pub mod clicks3d;
pub mod factory;
pub mod litemedsam;
pub mod param_loader;
pub mod sammed3d;
mod shared_layers;
pub mod slicewise;
pub mod weights_cache;

use ndarray::{Array3, ArrayView3};
use std::ops::Range;
use std::time::Duration;

/// Errors of generalist models: loading weights, running them.
#[derive(Debug, thiserror::Error)]
pub enum GeneralistError {
    #[error("{0}")]
    Model(String),
}

/// What a generalist's answers cost so far, for the run's log: a slow run shows whether it was
/// encoding, reading the store or decoding.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GeneralistUsage {
    /// Embeddings computed by the model's encoder.
    pub encoded: u64,
    pub encode_time: Duration,
    /// Embeddings read back from the on-disk store.
    pub from_store: u64,
    pub store_time: Duration,
    /// Embeddings found in memory.
    pub from_memory: u64,
    /// Masks the decoder computed.
    pub decoded: u64,
}

impl std::ops::Add for GeneralistUsage {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        GeneralistUsage {
            encoded: self.encoded + other.encoded,
            encode_time: self.encode_time + other.encode_time,
            from_store: self.from_store + other.from_store,
            store_time: self.store_time + other.store_time,
            from_memory: self.from_memory + other.from_memory,
            decoded: self.decoded + other.decoded,
        }
    }
}

impl std::fmt::Display for GeneralistUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let minutes = |d: Duration| d.as_secs_f64() / 60.0;
        write!(
            f,
            "embeddings {} encoded ({:.1} min), {} read from the store ({:.1} min), {} from memory",
            self.encoded,
            minutes(self.encode_time),
            self.from_store,
            minutes(self.store_time),
            self.from_memory,
        )?;
        if self.decoded > 0 {
            write!(f, "; masks {} decoded", self.decoded)?;
        }
        Ok(())
    }
}

/// What the training loop asks of a generalist for one unlabeled item.
#[derive(Debug, Clone)]
pub struct PseudoLabelRequest<'a> {
    /// Case identifier (part of every cache key).
    pub case_id: &'a str,
    /// The whole un-augmented, normalised image of the case, indexed `[i, j, k]`.
    pub image: ArrayView3<'a, f32>,
    /// The part of `image` the training patch covers (after undoing its augmentation).
    pub region: [Range<usize>; 3],
    /// The specialist's foreground probability on `region` (same shape as the region).
    pub probability: ArrayView3<'a, f32>,
}

/// A pseudo-label on the request's region.
#[derive(Debug, Clone)]
pub struct PseudoLabel {
    /// Foreground mask, shaped like the request's region.
    pub mask: Array3<bool>,
    /// The voxels the generalist actually answered for (prompted slices, the cube a 3D model
    /// saw); elsewhere `mask` is false for want of an answer, not because the generalist said
    /// "background".
    pub known: Array3<bool>,
    /// How many prompts (slices or clicks) the generalist was run with.
    pub prompts: usize,
}

/// A frozen generalist as the training loop uses it. `Ok(None)` means the specialist had no
/// confident foreground on the region, so the item gets no SAM term.
pub trait Generalist: Send {
    /// A short identifier of the model and its weights (logs, cache keys).
    fn identity(&self) -> String;
    /// Whether the generalist may draw progress of long one-time work (e.g. encoding a case's
    /// slices on a fresh store) on the terminal; off unless called.
    fn show_progress(&mut self, _visible: bool) {}
    /// What its answers cost so far; `None` for a generalist that does not count.
    fn usage(&self) -> Option<GeneralistUsage> {
        None
    }
    fn pseudo_label(
        &mut self,
        request: &PseudoLabelRequest<'_>,
    ) -> Result<Option<PseudoLabel>, GeneralistError>;
}
