//! SAM-Med3D as a [`Generalist`]: the SemiSAM click loop driven by the specialist's prediction.
//!
//! For one request: the confident object (largest component of `p > threshold`) is found on the
//! region, a model-sized cube of the case image is cut around it ([`CubeCrop`]), embedded once
//! (cached per case, cube position and weights), and clicked `clicks` times. The first click
//! goes to the object's centre; each further click to the centre of the largest region where the
//! current SAM mask and the confident object disagree (positive on a miss, negative on a false
//! positive), with the previous low-resolution logits fed back as the mask prompt. The last mask
//! is pasted back onto the region; region voxels outside the cube are background.
//!
//! The request carries no label: the loop only ever sees the specialist's probability.

pub mod crop;

use ndarray::Array3;
use serde::{Deserialize, Serialize};

use crate::generalists::cache::{CacheStats, EmbeddingCache, EmbeddingKey};
use crate::generalists::sammed3d::{Embedding, PointLabel, PointPrompt, SamMed3d, SamMed3dError};
use crate::generalists::{
    Generalist, GeneralistError, GeneralistUsage, PseudoLabel, PseudoLabelRequest,
};
use crate::morphology::bounding_box;
use crate::prompts::{Point3, confident_object, correction_click, region_centre};
use burn::tensor::{Device, Tensor, TensorData};
use crop::{CropNormalization, CubeCrop, normalize_crop};

impl From<SamMed3dError> for GeneralistError {
    fn from(error: SamMed3dError) -> Self {
        GeneralistError::Model(format!("SAM-Med3D: {error}"))
    }
}

/// The mask prompt of the first click.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FirstMaskPrompt {
    /// An all-zero low-resolution mask, as SemiSAM and SAM-Med3D's training and inference do.
    #[default]
    Zeros,
    /// No mask (the learnt "no mask" embedding, which SAM-Med3D's training never updates).
    None,
}

/// How the click loop runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickLoopConfig {
    /// Decoder passes, one click each (SemiSAM uses 10; 5 by default here).
    pub clicks: usize,
    /// The confident object is the largest component of `p > threshold`.
    pub threshold: f32,
    pub first_mask_prompt: FirstMaskPrompt,
    /// Give the decoder every click so far (SAM-Med3D inference) instead of only the newest one
    /// (SemiSAM).
    pub keep_all_clicks: bool,
    /// Foreground is `logit > logit_threshold` (0 = probability 0.5; SemiSAM's code uses 0.5).
    pub logit_threshold: f32,
    /// Image voxels per crop voxel (1 = the image grid, as SemiSAM; SAM-Med3D was trained at
    /// 1.5 mm, i.e. 1.5 / spacing).
    pub crop_voxel_size: f64,
    pub normalization: CropNormalization,
}

impl Default for ClickLoopConfig {
    fn default() -> Self {
        ClickLoopConfig {
            clicks: 5,
            threshold: 0.5,
            first_mask_prompt: FirstMaskPrompt::Zeros,
            keep_all_clicks: false,
            logit_threshold: 0.0,
            crop_voxel_size: 1.0,
            normalization: CropNormalization::None,
        }
    }
}

/// What one click loop did.
#[derive(Debug, Clone)]
pub struct ClickOutcome {
    /// Pseudo-label on the request's region.
    pub mask: Array3<bool>,
    /// The clicks in cube coordinates, in order (fewer than configured when SAM and the
    /// confident object came to agree everywhere).
    pub clicks: Vec<Point3>,
    pub crop: CubeCrop,
}

/// SAM-Med3D with its click loop and embedding cache.
pub struct SamMed3dClicks {
    model: SamMed3d,
    weights_id: String,
    config: ClickLoopConfig,
    device: Device,
    cache: EmbeddingCache<Embedding>,
}

fn model_input_error(message: String) -> GeneralistError {
    GeneralistError::Model(format!("SAM-Med3D: {message}"))
}

impl SamMed3dClicks {
    /// `weights_id` identifies the checkpoint (cached embeddings never outlive their weights);
    /// `cache_capacity`: cube embeddings kept in memory (0.8 MB each for `vit_b_ori`).
    pub fn new(
        model: SamMed3d,
        weights_id: impl Into<String>,
        config: ClickLoopConfig,
        cache_capacity: usize,
        device: &Device,
    ) -> Result<Self, GeneralistError> {
        if config.clicks == 0 {
            return Err(model_input_error("clicks must be at least 1".into()));
        }
        if !(config.crop_voxel_size.is_finite() && config.crop_voxel_size > 0.0) {
            return Err(model_input_error(format!(
                "crop_voxel_size must be positive, got {}",
                config.crop_voxel_size
            )));
        }
        Ok(SamMed3dClicks {
            model,
            weights_id: weights_id.into(),
            config,
            device: device.clone(),
            cache: EmbeddingCache::new(cache_capacity),
        })
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    pub fn config(&self) -> &ClickLoopConfig {
        &self.config
    }

    fn check_request(&self, request: &PseudoLabelRequest<'_>) -> Result<(), GeneralistError> {
        let region: Vec<usize> = request.region.iter().map(|r| r.len()).collect();
        if request.probability.shape() != region.as_slice() {
            return Err(model_input_error(format!(
                "case {}: probability shape {:?} does not match the region {:?}",
                request.case_id,
                request.probability.shape(),
                region
            )));
        }
        let image = request.image.shape();
        if let Some(a) = (0..3).find(|&a| request.region[a].end > image[a]) {
            return Err(model_input_error(format!(
                "case {}: region {:?} reaches beyond the image {:?} along axis {a}",
                request.case_id, request.region, image
            )));
        }
        Ok(())
    }

    /// Runs the click loop; `None` when the specialist has no confident foreground.
    pub fn run(
        &mut self,
        request: &PseudoLabelRequest<'_>,
    ) -> Result<Option<ClickOutcome>, GeneralistError> {
        self.check_request(request)?;
        let Some(object) = confident_object(request.probability, self.config.threshold) else {
            return Ok(None);
        };
        let boxed = bounding_box(object.view()).expect("a confident object is not empty");
        let offset = request.region.clone().map(|r| r.start);
        let image_box =
            std::array::from_fn(|a| boxed[a].start + offset[a]..boxed[a].end + offset[a]);
        let side = self.model.config().img_size;
        let crop = CubeCrop::around(&image_box, side, self.config.crop_voxel_size);
        let (target, known) = crop.carry_in(object.view(), &request.region);

        let key = EmbeddingKey {
            case_id: format!(
                "{}@{},{},{}",
                request.case_id, crop.start[0], crop.start[1], crop.start[2]
            ),
            // a 3D cube has no slicing axis; 3 keeps these keys apart from slice keys
            axis: 3,
            slice: 0,
            weights: self.weights_id.clone(),
        };
        let (model, config, device) = (&self.model, &self.config, &self.device);
        let embedding = self.cache.get_or_compute(key, || {
            let mut cube = crop.extract(request.image);
            normalize_crop(&mut cube, config.normalization)
                .map_err(|m| model_input_error(format!("case {}: {m}", request.case_id)))?;
            Ok::<_, GeneralistError>(model.embed(cube_tensor(cube, device))?)
        })?;

        let centre = region_centre(object.view(), [1.0; 3]).expect("non-empty object");
        let first = crop
            .crop_index(std::array::from_fn(|a| centre[a] + offset[a]))
            .ok_or_else(|| {
                model_input_error(format!(
                    "case {}: the object's centre lies outside the cube",
                    request.case_id
                ))
            })?;
        let mut clicks = vec![Point3 {
            index: first,
            positive: true,
        }];
        let m = self.model.config().mask_size();
        let mut mask_prompt = match self.config.first_mask_prompt {
            FirstMaskPrompt::Zeros => Some(Tensor::<5>::zeros([1, 1, m, m, m], &self.device)),
            FirstMaskPrompt::None => None,
        };
        let logits = loop {
            let given = if self.config.keep_all_clicks {
                &clicks[..]
            } else {
                &clicks[clicks.len() - 1..]
            };
            let points: Vec<PointPrompt> = given.iter().map(point_prompt).collect();
            let decoded = self.model.decode(&embedding, &points, mask_prompt)?;
            mask_prompt = Some(decoded.low_res_logits);
            let logits = logits_array(decoded.logits)?;
            if clicks.len() == self.config.clicks {
                break logits;
            }
            let current = logits.mapv(|v| v > self.config.logit_threshold);
            match correction_click(current.view(), target.view(), known.view(), [1.0; 3]) {
                Some(click) => clicks.push(click),
                None => break logits,
            }
        };
        let mask = crop.paste(logits.view(), &request.region, self.config.logit_threshold);
        Ok(Some(ClickOutcome { mask, clicks, crop }))
    }
}

fn cube_tensor(cube: Array3<f32>, device: &Device) -> Tensor<5> {
    let side = cube.shape()[0];
    let values: Vec<f32> = cube.into_iter().collect();
    Tensor::from_data(TensorData::new(values, [1, 1, side, side, side]), device)
}

fn point_prompt(click: &Point3) -> PointPrompt {
    PointPrompt {
        coord: click.index.map(|c| c as f32),
        label: if click.positive {
            PointLabel::Positive
        } else {
            PointLabel::Negative
        },
    }
}

fn logits_array(logits: Tensor<5>) -> Result<Array3<f32>, GeneralistError> {
    let [_, _, d, h, w] = logits.dims();
    let values = logits
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| model_input_error(format!("reading mask logits: {e:?}")))?;
    Array3::from_shape_vec((d, h, w), values)
        .map_err(|e| model_input_error(format!("mask logits: {e}")))
}

impl Generalist for SamMed3dClicks {
    fn identity(&self) -> String {
        format!(
            "SAM-Med3D {} ({} clicks)",
            self.weights_id, self.config.clicks
        )
    }

    fn usage(&self) -> Option<GeneralistUsage> {
        let stats = self.cache.stats();
        Some(GeneralistUsage {
            encoded: stats.misses,
            encode_time: stats.compute_time,
            from_memory: stats.hits,
            ..GeneralistUsage::default()
        })
    }

    fn pseudo_label(
        &mut self,
        request: &PseudoLabelRequest<'_>,
    ) -> Result<Option<PseudoLabel>, GeneralistError> {
        Ok(self.run(request)?.map(|outcome| PseudoLabel {
            prompts: outcome.clicks.len(),
            known: outcome.crop.covers(&request.region),
            mask: outcome.mask,
        }))
    }
}
