//! A 2D generalist (e.g. LiteMedSAM) applied slice by slice along one axis of the volume.
//!
//! Prompts come from the specialist's probability on the patch region; each prompted slice is
//! encoded once at its full, un-augmented size (cached), decoded with the box moved into full-slice
//! coordinates, and the mask comes back for the region's rows and columns only. [`MultiView`]
//! runs one [`SliceWise`] per axis and fuses their answers.

pub mod embedding_store;
pub mod litemedsam;
mod multiview;

use std::io::IsTerminal;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array2, Array3, ArrayView2, Axis};
use rayon::prelude::*;

use crate::generalists::cache::{CacheStats, EmbeddingCache, EmbeddingKey};
use crate::generalists::{
    Generalist, GeneralistError, GeneralistUsage, PseudoLabel, PseudoLabelRequest,
};
use crate::prompts::{PromptConfig, SlicePrompt, slice_prompts};
use embedding_store::{EmbeddingStore, Stored};
pub use multiview::{Fusion, MultiView, ViewAnswer, fuse};

/// The two operations a 2D promptable model offers.
pub trait SliceModel: Send + Sync {
    type Embedding: Send + Sync;
    /// Model and weights identity (weights checksum), part of every cache key.
    fn identity(&self) -> String;
    /// Encode one slice (any intensity range; the model normalises it itself).
    fn embed(&self, slice: ArrayView2<f32>) -> Result<Self::Embedding, GeneralistError>;
    /// The memory an embedding holds, for the in-memory cache's budget.
    fn embedding_bytes(embedding: &Self::Embedding) -> usize {
        std::mem::size_of_val(embedding)
    }
    /// An embedding as bytes, for the on-disk store.
    fn embedding_to_bytes(&self, embedding: &Self::Embedding) -> Vec<u8>;
    /// What [`SliceModel::embedding_to_bytes`] wrote; an error when the bytes do not fit.
    fn embedding_from_bytes(&self, bytes: &[u8]) -> Result<Self::Embedding, GeneralistError>;
    /// What an earlier layout (store format 1) held, when the model still reads it; `Ok(None)`
    /// has the slice encoded again.
    fn embedding_from_format1(
        &self,
        _bytes: &[u8],
    ) -> Result<Option<Self::Embedding>, GeneralistError> {
        Ok(None)
    }
    /// One binary mask per prompt, for prompts on the slice `embedding` encodes (of
    /// `slice_shape`), over the slice's `rows` x `cols` only: a model may skip work outside them.
    fn segment(
        &self,
        embedding: &Self::Embedding,
        slice_shape: (usize, usize),
        rows: Range<usize>,
        cols: Range<usize>,
        prompts: &[SlicePrompt],
    ) -> Result<Vec<Array2<bool>>, GeneralistError>;
    /// What [`SliceModel::segment`] thresholds at 0, as logits: the views of a [`MultiView`]
    /// average their probabilities. A model without logits answers ±∞ (probability 1 or 0).
    fn segment_logits(
        &self,
        embedding: &Self::Embedding,
        slice_shape: (usize, usize),
        rows: Range<usize>,
        cols: Range<usize>,
        prompts: &[SlicePrompt],
    ) -> Result<Vec<Array2<f32>>, GeneralistError> {
        let masks = self.segment(embedding, slice_shape, rows, cols, prompts)?;
        Ok(masks
            .into_iter()
            .map(|m| m.mapv(|v| if v { f32::INFINITY } else { f32::NEG_INFINITY }))
            .collect())
    }
}

/// One model shared by the views of a [`MultiView`].
impl<M: SliceModel> SliceModel for Arc<M> {
    type Embedding = M::Embedding;
    fn identity(&self) -> String {
        (**self).identity()
    }
    fn embed(&self, slice: ArrayView2<f32>) -> Result<Self::Embedding, GeneralistError> {
        (**self).embed(slice)
    }
    fn embedding_bytes(embedding: &Self::Embedding) -> usize {
        M::embedding_bytes(embedding)
    }
    fn embedding_from_format1(
        &self,
        bytes: &[u8],
    ) -> Result<Option<Self::Embedding>, GeneralistError> {
        (**self).embedding_from_format1(bytes)
    }
    fn embedding_to_bytes(&self, embedding: &Self::Embedding) -> Vec<u8> {
        (**self).embedding_to_bytes(embedding)
    }
    fn embedding_from_bytes(&self, bytes: &[u8]) -> Result<Self::Embedding, GeneralistError> {
        (**self).embedding_from_bytes(bytes)
    }
    fn segment(
        &self,
        embedding: &Self::Embedding,
        slice_shape: (usize, usize),
        rows: Range<usize>,
        cols: Range<usize>,
        prompts: &[SlicePrompt],
    ) -> Result<Vec<Array2<bool>>, GeneralistError> {
        (**self).segment(embedding, slice_shape, rows, cols, prompts)
    }
    fn segment_logits(
        &self,
        embedding: &Self::Embedding,
        slice_shape: (usize, usize),
        rows: Range<usize>,
        cols: Range<usize>,
        prompts: &[SlicePrompt],
    ) -> Result<Vec<Array2<f32>>, GeneralistError> {
        (**self).segment_logits(embedding, slice_shape, rows, cols, prompts)
    }
}

/// One view's answer on a request's region: the model's logits on the prompted slices
/// (−∞ elsewhere) and which voxels those are.
#[derive(Debug, Clone)]
pub struct SliceAnswer {
    pub logits: Array3<f32>,
    pub known: Array3<bool>,
    pub prompts: usize,
}

/// Slice-by-slice pseudo-labelling with an embedding cache.
pub struct SliceWise<M: SliceModel> {
    model: M,
    axis: usize,
    prompts: PromptConfig,
    cache: EmbeddingCache<M::Embedding>,
    store: Option<EmbeddingStore>,
    /// Encodes and store reads so far (memory hits are the cache's).
    usage: GeneralistUsage,
    /// Draw a bar while a request encodes many slices (only on a terminal).
    progress: bool,
}

/// Requests that fetch fewer slices than this finish too soon to be worth a bar.
const PROGRESS_MIN_SLICES: usize = 8;

/// A bar over the slices one request encodes (or reads from the store); hidden unless asked
/// for and stderr is a terminal, so logs piped to a file stay free of redraws.
fn encoding_bar(visible: bool, slices: usize, case_id: &str) -> indicatif::ProgressBar {
    if !visible || slices < PROGRESS_MIN_SLICES || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(slices as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} SAM embeddings of {prefix}: {pos}/{len} slices [{elapsed_precise} < {eta_precise}] {wide_bar}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(case_id.to_owned());
    bar
}

impl<M: SliceModel> SliceWise<M> {
    /// `axis`: the slicing axis of the volume; `cache_capacity`: embeddings kept in memory.
    pub fn new(model: M, axis: usize, prompts: PromptConfig, cache_capacity: usize) -> Self {
        assert!(axis < 3, "slicing axis must be 0, 1 or 2");
        SliceWise {
            model,
            axis,
            prompts,
            cache: EmbeddingCache::with_budget(cache_capacity, usize::MAX, M::embedding_bytes),
            store: None,
            usage: GeneralistUsage::default(),
            progress: false,
        }
    }

    /// Keep at most `bytes` of embeddings in memory (as [`SliceModel::embedding_bytes`] counts).
    pub fn with_memory_budget(mut self, bytes: usize) -> Self {
        self.cache = self.cache.with_max_bytes(bytes);
        self
    }

    /// Also keep embeddings in `store` on disk, across runs.
    pub fn with_store(mut self, store: EmbeddingStore) -> Self {
        self.store = Some(store);
        self
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Where the embeddings came from so far, and how many masks were decoded.
    pub fn usage(&self) -> GeneralistUsage {
        GeneralistUsage {
            from_memory: self.cache.stats().hits,
            ..self.usage
        }
    }

    pub fn model(&self) -> &M {
        &self.model
    }

    pub fn axis(&self) -> usize {
        self.axis
    }
}

/// The in-plane axes left after removing `axis`, in order (rows, columns).
fn in_plane_axes(axis: usize) -> (usize, usize) {
    match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    }
}

fn shift_prompt(prompt: &SlicePrompt, row_offset: usize, col_offset: usize) -> SlicePrompt {
    let (dx, dy) = (col_offset as f32, row_offset as f32);
    let mut shifted = prompt.clone();
    shifted.bbox = [
        prompt.bbox[0] + dx,
        prompt.bbox[1] + dy,
        prompt.bbox[2] + dx,
        prompt.bbox[3] + dy,
    ];
    for point in &mut shifted.points {
        point.x += dx;
        point.y += dy;
    }
    shifted
}

impl<M: SliceModel> SliceWise<M> {
    /// The model's logits on the request's region, slice by slice; `None` without a prompt.
    pub fn answer(
        &mut self,
        request: &PseudoLabelRequest<'_>,
    ) -> Result<Option<SliceAnswer>, GeneralistError> {
        let region_shape: Vec<usize> = request.region.iter().map(|r| r.len()).collect();
        if request.probability.shape() != region_shape.as_slice() {
            return Err(GeneralistError::Model(format!(
                "case {}: probability shape {:?} does not match the region {:?}",
                request.case_id,
                request.probability.shape(),
                region_shape
            )));
        }
        let prompts = slice_prompts(request.probability, self.axis, &self.prompts);
        if prompts.is_empty() {
            return Ok(None);
        }
        let (row_axis, col_axis) = in_plane_axes(self.axis);
        let (rows, cols) = (&request.region[row_axis], &request.region[col_axis]);
        let weights = self.model.identity();
        // Embeddings first (the cache is not shared), then the decoder runs on the slices in
        // parallel: one slice's decode keeps about one core busy.
        let keys: Vec<EmbeddingKey> = prompts
            .iter()
            .map(|prompt| EmbeddingKey {
                case_id: request.case_id.to_string(),
                axis: self.axis,
                slice: request.region[self.axis].start + prompt.slice,
                weights: weights.clone(),
            })
            .collect();
        let missing = keys.iter().filter(|k| !self.cache.contains(k)).count();
        let bar = encoding_bar(self.progress, missing, request.case_id);
        let mut embeddings = Vec::with_capacity(prompts.len());
        for key in keys {
            let image = request.image.index_axis(Axis(self.axis), key.slice);
            let (model, store, axis, bar) = (&self.model, &self.store, self.axis, &bar);
            let usage = &mut self.usage;
            embeddings.push(self.cache.get_or_compute(key, || {
                bar.inc(1);
                let started = Instant::now();
                let encode = |usage: &mut GeneralistUsage| {
                    let started = Instant::now();
                    let embedding = model.embed(image)?;
                    usage.encoded += 1;
                    usage.encode_time += started.elapsed();
                    Ok::<_, GeneralistError>(embedding)
                };
                let Some(store) = store else {
                    return encode(usage);
                };
                let path = store.path_for(&weights, axis, image);
                let upgraded = match store.load(&path)? {
                    Stored::Payload(bytes) => {
                        let embedding = model
                            .embedding_from_bytes(&bytes)
                            .map_err(|e| embedding_store::file_error(&path, e))?;
                        usage.from_store += 1;
                        usage.store_time += started.elapsed();
                        return Ok(embedding);
                    }
                    Stored::Format1(bytes) => model
                        .embedding_from_format1(&bytes)
                        .map_err(|e| embedding_store::file_error(&path, e))?,
                    Stored::Absent => None,
                };
                if let Some(embedding) = upgraded {
                    store.store(&path, &model.embedding_to_bytes(&embedding))?;
                    usage.from_store += 1;
                    usage.store_time += started.elapsed();
                    return Ok(embedding);
                }
                let embedding = encode(usage)?;
                store.store(&path, &model.embedding_to_bytes(&embedding))?;
                Ok(embedding)
            })?);
        }
        bar.finish_and_clear();
        self.usage.decoded += prompts.len() as u64;
        let model = &self.model;
        let slice_shape = request.image.index_axis(Axis(self.axis), 0).dim();
        let masks: Vec<Array2<f32>> = prompts
            .par_iter()
            .zip(embeddings.par_iter())
            .map(|(prompt, embedding)| {
                let shifted = shift_prompt(prompt, rows.start, cols.start);
                let mask = model
                    .segment_logits(
                        embedding,
                        slice_shape,
                        rows.clone(),
                        cols.clone(),
                        std::slice::from_ref(&shifted),
                    )?
                    .into_iter()
                    .next()
                    .ok_or_else(|| GeneralistError::Model("model returned no mask".into()))?;
                if mask.dim() != (rows.len(), cols.len()) {
                    return Err(GeneralistError::Model(format!(
                        "model returned a {:?} mask for a {:?} region",
                        mask.dim(),
                        (rows.len(), cols.len())
                    )));
                }
                Ok(mask)
            })
            .collect::<Result<_, _>>()?;
        let mut logits = Array3::from_elem(request.probability.raw_dim(), f32::NEG_INFINITY);
        let mut known = Array3::from_elem(request.probability.raw_dim(), false);
        for (prompt, region_mask) in prompts.iter().zip(&masks) {
            logits
                .index_axis_mut(Axis(self.axis), prompt.slice)
                .assign(region_mask);
            known
                .index_axis_mut(Axis(self.axis), prompt.slice)
                .fill(true);
        }
        Ok(Some(SliceAnswer {
            logits,
            known,
            prompts: prompts.len(),
        }))
    }
}

impl<M: SliceModel> Generalist for SliceWise<M> {
    fn identity(&self) -> String {
        format!("{} (slice-wise, axis {})", self.model.identity(), self.axis)
    }

    fn show_progress(&mut self, visible: bool) {
        self.progress = visible;
    }

    fn usage(&self) -> Option<GeneralistUsage> {
        Some(self.usage())
    }

    fn pseudo_label(
        &mut self,
        request: &PseudoLabelRequest<'_>,
    ) -> Result<Option<PseudoLabel>, GeneralistError> {
        Ok(self.answer(request)?.map(|answer| PseudoLabel {
            mask: answer.logits.mapv(|l| l > 0.0),
            known: answer.known,
            prompts: answer.prompts,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Encodes a slice as its sum; segments by filling the prompt's box.
    pub(super) struct BoxFiller {
        pub(super) embeds: AtomicUsize,
    }

    impl SliceModel for BoxFiller {
        type Embedding = f32;
        fn identity(&self) -> String {
            "box-filler".into()
        }
        fn embed(&self, slice: ArrayView2<f32>) -> Result<f32, GeneralistError> {
            self.embeds.fetch_add(1, Ordering::Relaxed);
            Ok(slice.sum())
        }
        fn embedding_to_bytes(&self, embedding: &f32) -> Vec<u8> {
            embedding.to_le_bytes().to_vec()
        }
        fn embedding_from_bytes(&self, bytes: &[u8]) -> Result<f32, GeneralistError> {
            let bytes: [u8; 4] = bytes
                .try_into()
                .map_err(|_| GeneralistError::Model("not 4 bytes".into()))?;
            Ok(f32::from_le_bytes(bytes))
        }
        /// Its "format 1" stored the value big-endian.
        fn embedding_from_format1(&self, bytes: &[u8]) -> Result<Option<f32>, GeneralistError> {
            let bytes: [u8; 4] = bytes
                .try_into()
                .map_err(|_| GeneralistError::Model("not 4 bytes".into()))?;
            Ok(Some(f32::from_be_bytes(bytes)))
        }
        fn segment(
            &self,
            _: &f32,
            _: (usize, usize),
            rows: Range<usize>,
            cols: Range<usize>,
            prompts: &[SlicePrompt],
        ) -> Result<Vec<Array2<bool>>, GeneralistError> {
            Ok(prompts
                .iter()
                .map(|p| {
                    Array2::from_shape_fn((rows.len(), cols.len()), |(r, c)| {
                        let (r, c) = (r + rows.start, c + cols.start);
                        (c as f32) >= p.bbox[0]
                            && (c as f32) <= p.bbox[2]
                            && (r as f32) >= p.bbox[1]
                            && (r as f32) <= p.bbox[3]
                    })
                })
                .collect())
        }
    }

    /// A box filler slicing along axis 2 with the default prompts.
    fn filler(cache_capacity: usize) -> SliceWise<BoxFiller> {
        let model = BoxFiller {
            embeds: AtomicUsize::new(0),
        };
        SliceWise::new(model, 2, PromptConfig::default(), cache_capacity)
    }

    #[test]
    fn boxes_map_back_onto_the_region_and_embeddings_are_cached() {
        let image = Array3::from_shape_fn((20, 20, 6), |(i, j, k)| (i + j + k) as f32);
        // region covers i 5..15, j 4..14, k 1..5; object occupies region-local i 2..5, j 3..7, k 1..3
        let region = [5..15, 4..14, 1..5];
        let object = |rows: Range<usize>| {
            Array3::from_shape_fn((10, 10, 4), move |(i, j, k)| {
                if rows.contains(&i) && (3..7).contains(&j) && (1..3).contains(&k) {
                    0.9
                } else {
                    0.1
                }
            })
        };
        let probability = object(2..5);
        let config = PromptConfig {
            box_margin: 1.0,
            ..Default::default()
        };
        let mut generalist = SliceWise::new(
            BoxFiller {
                embeds: AtomicUsize::new(0),
            },
            2,
            config,
            64,
        );
        let request = PseudoLabelRequest {
            case_id: "c1",
            image: image.view(),
            region: region.clone(),
            probability: probability.view(),
        };
        let label = generalist.pseudo_label(&request).unwrap().unwrap();
        assert_eq!(label.prompts, 2);
        let expected = Array3::from_shape_fn((10, 10, 4), |(i, j, k)| {
            (1..6).contains(&i) && (2..8).contains(&j) && (1..3).contains(&k)
        });
        assert_eq!(label.mask, expected);
        // only the two prompted slices carry an answer
        let answered = Array3::from_shape_fn((10, 10, 4), |(_, _, k)| (1..3).contains(&k));
        assert_eq!(label.known, answered);
        assert_eq!(generalist.model().embeds.load(Ordering::Relaxed), 2);

        // the same slices with other boxes (the object grew by a voxel): no new encoding
        let grown = object(2..6);
        let request = PseudoLabelRequest {
            probability: grown.view(),
            ..request
        };
        generalist.pseudo_label(&request).unwrap().unwrap();
        assert_eq!(generalist.model().embeds.load(Ordering::Relaxed), 2);
        assert_eq!(generalist.cache_stats().hits, 2);
    }

    #[test]
    fn a_store_on_disk_spares_later_runs_the_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let image = Array3::from_shape_fn((8, 8, 3), |(i, j, k)| (i * j + k) as f32);
        let probability =
            Array3::from_shape_fn(
                (8, 8, 3),
                |(i, j, _)| if i < 4 && j < 4 { 0.9 } else { 0.1f32 },
            );
        let request = PseudoLabelRequest {
            case_id: "c",
            image: image.view(),
            region: [0..8, 0..8, 0..3],
            probability: probability.view(),
        };
        let run = || {
            let mut generalist = SliceWise::new(
                BoxFiller {
                    embeds: AtomicUsize::new(0),
                },
                2,
                PromptConfig::default(),
                8,
            )
            .with_store(EmbeddingStore::new(dir.path()));
            let label = generalist.pseudo_label(&request).unwrap().unwrap();
            generalist.pseudo_label(&request).unwrap().unwrap();
            let usage = generalist.usage();
            assert_eq!(
                (usage.decoded, usage.from_memory),
                (6, 3),
                "the second request finds the embeddings in memory"
            );
            assert_eq!(
                usage.encoded,
                generalist.model().embeds.load(Ordering::Relaxed) as u64
            );
            (label.mask, usage.encoded, usage.from_store)
        };
        let (first, encoded, from_store) = run();
        assert_eq!(
            (encoded, from_store),
            (3, 0),
            "a fresh store encodes every prompted slice"
        );
        let (second, encoded, from_store) = run();
        assert_eq!(
            (encoded, from_store),
            (0, 3),
            "a second run reads them back"
        );
        assert_eq!(first, second);

        // a file of the old format is read through the model and rewritten in the current one
        let store = EmbeddingStore::new(dir.path());
        let path = store.path_for("box-filler", 2, image.index_axis(Axis(2), 1));
        std::fs::write(&path, b"semisam-embedding-1\n\x3f\x80\x00\x00").unwrap();
        let (again, encoded, from_store) = run();
        assert_eq!((encoded, from_store, &again), (0, 3, &first));
        assert_eq!(
            store.load(&path).unwrap(),
            Stored::Payload(1.0f32.to_le_bytes().to_vec())
        );
        std::fs::write(&path, b"semisam-embedding-1\n\x3f\x80").unwrap();
        let mut generalist = filler(8).with_store(store.clone());
        assert_eq!(
            generalist.pseudo_label(&request).unwrap_err().to_string(),
            format!("embedding store file {}: not 4 bytes", path.display())
        );

        // a payload the model cannot read is an error naming the file, not a silent re-encode
        store.store(&path, b"abc").unwrap();
        let mut generalist = filler(8).with_store(store.clone());
        let error = generalist.pseudo_label(&request).unwrap_err().to_string();
        assert_eq!(
            error,
            format!("embedding store file {}: not 4 bytes", path.display())
        );
    }

    #[test]
    fn the_memory_budget_bounds_the_cache_and_the_bar_stays_off_the_log() {
        let image = Array3::from_shape_fn((8, 8, 12), |(i, j, k)| (i + j * k) as f32);
        let probability = Array3::from_elem((8, 8, 12), 0.9f32);
        let request = PseudoLabelRequest {
            case_id: "c",
            image: image.view(),
            region: [0..8, 0..8, 0..12],
            probability: probability.view(),
        };
        // 5 f32 embeddings fit in 20 bytes: each request of 12 slices evicts 7 of them
        let mut generalist = filler(100).with_memory_budget(20);
        generalist.show_progress(true);
        let bar = encoding_bar(true, 12, "c");
        assert_eq!(bar.is_hidden(), !std::io::stderr().is_terminal());
        assert!(encoding_bar(false, 12, "c").is_hidden());
        assert!(encoding_bar(true, PROGRESS_MIN_SLICES - 1, "c").is_hidden());
        let first = generalist.pseudo_label(&request).unwrap().unwrap();
        assert_eq!(generalist.cache.len(), 5);
        assert_eq!(generalist.cache.bytes(), 20);
        let second = generalist.pseudo_label(&request).unwrap().unwrap();
        assert_eq!(first.mask, second.mask);
        // a scan longer than the cache misses throughout (least-recently-used eviction's worst
        // case): 12 + 12 encodings, 7 + 12 evictions
        assert_eq!(generalist.model().embeds.load(Ordering::Relaxed), 24);
        assert_eq!(generalist.cache_stats().evictions, 19);
    }

    #[test]
    fn no_confident_foreground_gives_no_pseudo_label() {
        let image = Array3::<f32>::zeros((8, 8, 8));
        let probability = Array3::from_elem((8, 8, 8), 0.2f32);
        let mut generalist = SliceWise::new(
            BoxFiller {
                embeds: AtomicUsize::new(0),
            },
            2,
            PromptConfig::default(),
            8,
        );
        let request = PseudoLabelRequest {
            case_id: "c",
            image: image.view(),
            region: [0..8, 0..8, 0..8],
            probability: probability.view(),
        };
        assert!(generalist.pseudo_label(&request).unwrap().is_none());
        assert_eq!(generalist.model().embeds.load(Ordering::Relaxed), 0);
    }
}
