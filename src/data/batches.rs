//! Two-stream training batches: `labeled_bs` labeled items followed by unlabeled ones.
//!
//! The unlabeled stream is built from [`UnlabeledCase`], a type with no label field: labels of
//! unlabeled cases cannot reach a batch because they are never loaded (the loader reads only the
//! image of an unlabeled case). Everything random comes from one ChaCha RNG whose full state,
//! together with the epoch orders, is a serialisable [`SamplerState`], so a resumed run draws the
//! same batches as an uninterrupted one.

use ndarray::{Array3, Array4, Array5, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::augment::{AugmentOptions, ItemTransform};

/// A normalised training image with its label map.
#[derive(Debug, Clone)]
pub struct LabeledCase {
    pub id: String,
    pub image: Array3<f32>,
    pub label: Array3<u8>,
}

/// A normalised training image whose label is not used (and not loaded).
#[derive(Debug, Clone)]
pub struct UnlabeledCase {
    pub id: String,
    pub image: Array3<f32>,
}

/// The cases a sampler draws from.
#[derive(Debug, Clone, Default)]
pub struct TrainingPool {
    pub labeled: Vec<LabeledCase>,
    pub unlabeled: Vec<UnlabeledCase>,
}

/// Batch composition and augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    pub batch_size: usize,
    pub labeled_bs: usize,
    pub patch: [usize; 3],
    pub augment: AugmentOptions,
}

/// Where a batch item came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemProvenance {
    pub case_id: String,
    pub labeled: bool,
    pub transform: ItemTransform,
}

/// One training batch, items in order: labeled first.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[batch_size, 1, X, Y, Z]`.
    pub images: Array5<f32>,
    /// `[labeled_bs, X, Y, Z]`, the labels of the first `labeled_bs` items.
    pub labels: Array4<u8>,
    pub items: Vec<ItemProvenance>,
    pub labeled_bs: usize,
}

/// Errors of batch construction (a configuration problem, found before training starts).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("labeled_bs ({labeled_bs}) must be at least 1 and at most batch_size ({batch_size})")]
    LabeledShare {
        labeled_bs: usize,
        batch_size: usize,
    },
    #[error("the batch holds {0} unlabeled item(s) but no unlabeled case was given")]
    NoUnlabeled(usize),
    #[error("no labeled case was given")]
    NoLabeled,
    #[error("patch side {0:?} must be positive")]
    EmptyPatch([usize; 3]),
    #[error("case {id}: image shape {image:?} differs from label shape {label:?}")]
    ShapeMismatch {
        id: String,
        image: [usize; 3],
        label: [usize; 3],
    },
}

/// A shuffled pass over `0..n`, reshuffled when exhausted (UA-MT's TwoStreamBatchSampler
/// iterates both streams this way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochOrder {
    order: Vec<usize>,
    next: usize,
}

impl EpochOrder {
    fn new(n: usize) -> Self {
        // `next == len` forces a shuffle before the first draw.
        EpochOrder {
            order: (0..n).collect(),
            next: n,
        }
    }

    fn draw(&mut self, rng: &mut ChaCha8Rng) -> usize {
        if self.next >= self.order.len() {
            self.order.shuffle(rng);
            self.next = 0;
        }
        let i = self.order[self.next];
        self.next += 1;
        i
    }
}

/// The complete ChaCha8 state: seed, stream and position in the key stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: [u8; 32],
    pub stream: u64,
    /// Word position, as a decimal string (JSON has no 128-bit integers).
    pub word_pos: String,
}

impl RngState {
    pub fn capture(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    pub fn restore(&self) -> Result<ChaCha8Rng, String> {
        let pos: u128 = self
            .word_pos
            .parse()
            .map_err(|_| format!("invalid RNG word position {:?}", self.word_pos))?;
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }
}

/// Everything needed to continue drawing the same batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub rng: RngState,
    pub labeled_order: EpochOrder,
    pub unlabeled_order: EpochOrder,
}

/// Draws two-stream batches deterministically from a seed.
#[derive(Debug, Clone)]
pub struct BatchSampler {
    options: BatchOptions,
    rng: ChaCha8Rng,
    labeled_order: EpochOrder,
    unlabeled_order: EpochOrder,
}

impl BatchSampler {
    /// Check the options against the pool and start from `seed`.
    pub fn new(options: BatchOptions, pool: &TrainingPool, seed: u64) -> Result<Self, BatchError> {
        validate(&options, pool)?;
        Ok(BatchSampler {
            options,
            rng: ChaCha8Rng::seed_from_u64(seed),
            labeled_order: EpochOrder::new(pool.labeled.len()),
            unlabeled_order: EpochOrder::new(pool.unlabeled.len()),
        })
    }

    /// Continue from a saved state (the pool must be the one the state was saved with).
    pub fn restore(
        options: BatchOptions,
        pool: &TrainingPool,
        state: &SamplerState,
    ) -> Result<Self, String> {
        validate(&options, pool).map_err(|e| e.to_string())?;
        let fits = |o: &EpochOrder, n: usize| {
            o.order.len() == n && o.order.iter().all(|&i| i < n) && o.next <= n
        };
        if !fits(&state.labeled_order, pool.labeled.len())
            || !fits(&state.unlabeled_order, pool.unlabeled.len())
        {
            return Err(format!(
                "the saved sampler state does not match the training cases ({} labeled, {} unlabeled)",
                pool.labeled.len(),
                pool.unlabeled.len()
            ));
        }
        Ok(BatchSampler {
            options,
            rng: state.rng.restore()?,
            labeled_order: state.labeled_order.clone(),
            unlabeled_order: state.unlabeled_order.clone(),
        })
    }

    pub fn state(&self) -> SamplerState {
        SamplerState {
            rng: RngState::capture(&self.rng),
            labeled_order: self.labeled_order.clone(),
            unlabeled_order: self.unlabeled_order.clone(),
        }
    }

    pub fn options(&self) -> &BatchOptions {
        &self.options
    }

    /// Draw the next batch.
    pub fn next_batch(&mut self, pool: &TrainingPool) -> Batch {
        let BatchOptions {
            batch_size,
            labeled_bs,
            patch,
            augment,
        } = self.options;
        let [px, py, pz] = patch;
        let mut images = Array5::<f32>::zeros([batch_size, 1, px, py, pz]);
        let mut labels = Array4::<u8>::zeros([labeled_bs, px, py, pz]);
        let mut items = Vec::with_capacity(batch_size);
        for b in 0..batch_size {
            let (id, image, label) = if b < labeled_bs {
                let case = &pool.labeled[self.labeled_order.draw(&mut self.rng)];
                (&case.id, &case.image, Some(&case.label))
            } else {
                let case = &pool.unlabeled[self.unlabeled_order.draw(&mut self.rng)];
                (&case.id, &case.image, None)
            };
            let source_shape = shape3(image);
            let transform = ItemTransform::random(source_shape, patch, augment, &mut self.rng);
            images
                .index_axis_mut(Axis(0), b)
                .index_axis_mut(Axis(0), 0)
                .assign(&transform.apply(image.view()));
            if let Some(label) = label {
                labels
                    .index_axis_mut(Axis(0), b)
                    .assign(&transform.apply(label.view()));
            }
            items.push(ItemProvenance {
                case_id: id.clone(),
                labeled: label.is_some(),
                transform,
            });
        }
        Batch {
            images,
            labels,
            items,
            labeled_bs,
        }
    }
}

fn shape3<T>(a: &Array3<T>) -> [usize; 3] {
    let s = a.shape();
    [s[0], s[1], s[2]]
}

fn validate(options: &BatchOptions, pool: &TrainingPool) -> Result<(), BatchError> {
    let BatchOptions {
        batch_size,
        labeled_bs,
        patch,
        ..
    } = *options;
    if labeled_bs == 0 || labeled_bs > batch_size {
        return Err(BatchError::LabeledShare {
            labeled_bs,
            batch_size,
        });
    }
    if patch.contains(&0) {
        return Err(BatchError::EmptyPatch(patch));
    }
    if pool.labeled.is_empty() {
        return Err(BatchError::NoLabeled);
    }
    if batch_size > labeled_bs && pool.unlabeled.is_empty() {
        return Err(BatchError::NoUnlabeled(batch_size - labeled_bs));
    }
    for case in &pool.labeled {
        let (image, label) = (shape3(&case.image), shape3(&case.label));
        if image != label {
            return Err(BatchError::ShapeMismatch {
                id: case.id.clone(),
                image,
                label,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases whose voxels encode (case number, position) so a batch item can be traced back.
    fn pool() -> TrainingPool {
        let image = |c: usize| {
            Array3::from_shape_fn([6, 6, 4], move |(i, j, k)| {
                (c * 1000 + i * 100 + j * 10 + k) as f32 + 1.0
            })
        };
        TrainingPool {
            labeled: (0..2)
                .map(|c| LabeledCase {
                    id: format!("L{c}"),
                    image: image(c),
                    label: image(c).mapv(|v| (v as u32 % 7) as u8 + 1),
                })
                .collect(),
            unlabeled: (2..5)
                .map(|c| UnlabeledCase {
                    id: format!("U{c}"),
                    image: image(c),
                })
                .collect(),
        }
    }

    fn options() -> BatchOptions {
        BatchOptions {
            batch_size: 4,
            labeled_bs: 1,
            patch: [4, 4, 6],
            augment: AugmentOptions::default(),
        }
    }

    #[test]
    fn batch_layout_and_content_follow_provenance() {
        let pool = pool();
        let mut sampler = BatchSampler::new(options(), &pool, 1337).unwrap();
        let batch = sampler.next_batch(&pool);
        assert_eq!(batch.images.shape(), &[4, 1, 4, 4, 6]);
        assert_eq!(batch.labels.shape(), &[1, 4, 4, 6]);
        assert!(batch.items[0].labeled && batch.items[1..].iter().all(|i| !i.labeled));
        for (b, item) in batch.items.iter().enumerate() {
            let source = if item.labeled {
                &pool
                    .labeled
                    .iter()
                    .find(|c| c.id == item.case_id)
                    .unwrap()
                    .image
            } else {
                &pool
                    .unlabeled
                    .iter()
                    .find(|c| c.id == item.case_id)
                    .unwrap()
                    .image
            };
            let patch = batch
                .images
                .index_axis(Axis(0), b)
                .index_axis(Axis(0), 0)
                .to_owned();
            assert_eq!(patch, item.transform.apply(source.view()));
            // z (4 voxels) is shorter than the patch (6): padded zeros must appear.
            assert!(patch.iter().any(|&v| v == 0.0));
        }
        let label_source = &pool
            .labeled
            .iter()
            .find(|c| c.id == batch.items[0].case_id)
            .unwrap()
            .label;
        assert_eq!(
            batch.labels.index_axis(Axis(0), 0),
            batch.items[0].transform.apply(label_source.view())
        );
    }

    #[test]
    fn each_stream_visits_every_case_once_per_epoch() {
        let pool = pool();
        let mut sampler = BatchSampler::new(options(), &pool, 7).unwrap();
        let mut unlabeled = Vec::new();
        for _ in 0..2 {
            let batch = sampler.next_batch(&pool);
            unlabeled.extend(batch.items[1..].iter().map(|i| i.case_id.clone()));
        }
        // 6 draws over 3 cases = 2 full epochs.
        for epoch in unlabeled.chunks(3) {
            let mut ids = epoch.to_vec();
            ids.sort();
            assert_eq!(ids, ["U2", "U3", "U4"]);
        }
    }

    #[test]
    fn restored_sampler_continues_identically() {
        let pool = pool();
        let mut a = BatchSampler::new(options(), &pool, 42).unwrap();
        for _ in 0..3 {
            a.next_batch(&pool);
        }
        let json = serde_json::to_string(&a.state()).unwrap();
        let mut b =
            BatchSampler::restore(options(), &pool, &serde_json::from_str(&json).unwrap()).unwrap();
        for _ in 0..5 {
            let (x, y) = (a.next_batch(&pool), b.next_batch(&pool));
            assert_eq!(x.items, y.items);
            assert_eq!(x.images, y.images);
        }
    }

    #[test]
    fn invalid_compositions_are_rejected() {
        let pool = pool();
        let bad = BatchOptions {
            labeled_bs: 5,
            ..options()
        };
        assert_eq!(
            BatchSampler::new(bad, &pool, 0).unwrap_err(),
            BatchError::LabeledShare {
                labeled_bs: 5,
                batch_size: 4
            }
        );
        let no_unlabeled = TrainingPool {
            labeled: pool.labeled.clone(),
            unlabeled: vec![],
        };
        let err = BatchSampler::new(options(), &no_unlabeled, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the batch holds 3 unlabeled item(s) but no unlabeled case was given"
        );
        let mut mismatched = pool.clone();
        mismatched.labeled[1].label = Array3::zeros([6, 6, 3]);
        let err = BatchSampler::new(options(), &mismatched, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "case L1: image shape [6, 6, 4] differs from label shape [6, 6, 3]"
        );
    }
}
