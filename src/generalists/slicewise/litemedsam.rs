//! LiteMedSAM as a [`SliceModel`]: a volume slice (any intensity range) becomes the model's
//! 8-bit RGB input by min-max scaling, as the upstream pre-processing expects of an image, and
//! each slice prompt becomes a box (plus points) in model-input space. Embeddings are kept in
//! half precision (2 MiB a slice instead of 4): they are rounded once, after the encoder, and
//! widened again for each decode.

use std::ops::Range;

use half::f16;
use ndarray::{Array2, ArrayView2};

use super::SliceModel;
use crate::generalists::GeneralistError;
use crate::generalists::litemedsam::{
    EMBED_DIM, EMBED_GRID, ImageGeometry, LiteMedSam, LiteMedSamError, LogitWindow, PointPrompt,
    PreparedImage, Prompts, gray_to_rgb, prepare_image, upsample_logits_region,
};
use crate::prompts::SlicePrompt;

impl From<LiteMedSamError> for GeneralistError {
    fn from(error: LiteMedSamError) -> Self {
        GeneralistError::Model(format!("LiteMedSAM: {error}"))
    }
}

/// LiteMedSAM with the identity of the weights it was loaded from.
pub struct LiteMedSamSlices {
    model: LiteMedSam,
    weights_id: String,
}

impl LiteMedSamSlices {
    /// `weights_id`: e.g. the checkpoint's SHA-256, so cached embeddings never outlive weights.
    pub fn new(model: LiteMedSam, weights_id: impl Into<String>) -> Self {
        LiteMedSamSlices {
            model,
            weights_id: weights_id.into(),
        }
    }
}

/// A slice's encoder features in half precision, (256, 64, 64) row-major, with the geometry of
/// the slice they encode.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceEmbedding {
    pub features: Vec<f16>,
    pub geometry: ImageGeometry,
}

const FEATURES: usize = EMBED_DIM * EMBED_GRID * EMBED_GRID;
/// The store payload's head: original and resized sides as 4 little-endian u64.
const HEAD_BYTES: usize = 32;

/// A store payload's geometry and feature bytes, checked against a feature width of
/// `value_bytes`.
fn split_payload(
    bytes: &[u8],
    value_bytes: usize,
) -> Result<(ImageGeometry, &[u8]), GeneralistError> {
    let wrong = || GeneralistError::Model("not a LiteMedSAM slice embedding".into());
    if bytes.len() != HEAD_BYTES + value_bytes * FEATURES {
        return Err(wrong());
    }
    let (head, values) = bytes.split_at(HEAD_BYTES);
    let side = |i: usize| -> Result<usize, GeneralistError> {
        let word: [u8; 8] = head[8 * i..8 * i + 8].try_into().map_err(|_| wrong())?;
        usize::try_from(u64::from_le_bytes(word)).map_err(|_| wrong())
    };
    let geometry = ImageGeometry {
        original_hw: [side(0)?, side(1)?],
        resized_hw: [side(2)?, side(3)?],
    };
    if geometry != ImageGeometry::for_original(geometry.original_hw[0], geometry.original_hw[1]) {
        return Err(wrong());
    }
    Ok((geometry, values))
}

/// Min-max scale a float slice to 0..=255 (a constant slice becomes all zeros).
fn to_u8(slice: ArrayView2<f32>) -> Array2<u8> {
    let (lo, hi) = slice
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    slice.mapv(|v| {
        if range > 0.0 {
            ((v - lo) / range * 255.0).round() as u8
        } else {
            0
        }
    })
}

/// The model input of a volume slice (any intensity range).
pub fn prepare_slice(slice: ArrayView2<f32>) -> Result<PreparedImage, GeneralistError> {
    let rgb = gray_to_rgb(to_u8(slice).view());
    Ok(prepare_image(rgb.view())?)
}

fn model_prompts(prompt: &SlicePrompt, geometry: &ImageGeometry) -> Prompts {
    let bbox = geometry.scale_box(prompt.bbox.map(f64::from));
    let points = prompt
        .points
        .iter()
        .map(|p| {
            let (x, y) = geometry.scale_point(f64::from(p.x), f64::from(p.y));
            PointPrompt {
                x,
                y,
                positive: p.positive,
            }
        })
        .collect();
    Prompts {
        bbox: Some(bbox),
        points,
    }
}

impl SliceModel for LiteMedSamSlices {
    type Embedding = SliceEmbedding;

    fn identity(&self) -> String {
        format!("litemedsam:{}", self.weights_id)
    }

    fn embed(&self, slice: ArrayView2<f32>) -> Result<SliceEmbedding, GeneralistError> {
        let prepared = prepare_slice(slice)?;
        Ok(SliceEmbedding {
            features: self.model.embed(&prepared).to_half(),
            geometry: prepared.geometry,
        })
    }

    fn embedding_bytes(embedding: &SliceEmbedding) -> usize {
        std::mem::size_of::<SliceEmbedding>() + std::mem::size_of_val(embedding.features.as_slice())
    }

    /// Original and resized sides (4 little-endian u64), then the (256, 64, 64) features as
    /// little-endian f16.
    fn embedding_to_bytes(&self, embedding: &SliceEmbedding) -> Vec<u8> {
        let geometry = &embedding.geometry;
        let sides = [geometry.original_hw, geometry.resized_hw];
        let mut bytes: Vec<u8> = Vec::with_capacity(HEAD_BYTES + 2 * FEATURES);
        bytes.extend(
            sides
                .iter()
                .flatten()
                .flat_map(|&side| (side as u64).to_le_bytes()),
        );
        bytes.extend(embedding.features.iter().flat_map(|v| v.to_le_bytes()));
        bytes
    }

    fn embedding_from_bytes(&self, bytes: &[u8]) -> Result<SliceEmbedding, GeneralistError> {
        let (geometry, values) = split_payload(bytes, 2)?;
        let features = values
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(SliceEmbedding { features, geometry })
    }

    /// Store format 1 held the features as little-endian f32 after the same head.
    fn embedding_from_format1(
        &self,
        bytes: &[u8],
    ) -> Result<Option<SliceEmbedding>, GeneralistError> {
        let (geometry, values) = split_payload(bytes, 4)?;
        let features = values
            .chunks_exact(4)
            .map(|c| f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        Ok(Some(SliceEmbedding { features, geometry }))
    }

    fn segment(
        &self,
        embedding: &SliceEmbedding,
        slice_shape: (usize, usize),
        rows: Range<usize>,
        cols: Range<usize>,
        prompts: &[SlicePrompt],
    ) -> Result<Vec<Array2<bool>>, GeneralistError> {
        let logits = self.segment_logits(embedding, slice_shape, rows, cols, prompts)?;
        Ok(logits.iter().map(|l| l.mapv(|v| v > 0.0)).collect())
    }

    fn segment_logits(
        &self,
        SliceEmbedding { features, geometry }: &SliceEmbedding,
        slice_shape: (usize, usize),
        rows: Range<usize>,
        cols: Range<usize>,
        prompts: &[SlicePrompt],
    ) -> Result<Vec<Array2<f32>>, GeneralistError> {
        if geometry.original_hw != [slice_shape.0, slice_shape.1] {
            return Err(GeneralistError::Model(format!(
                "LiteMedSAM: embedding of a {:?} slice used for a {slice_shape:?} slice",
                geometry.original_hw
            )));
        }
        let embedding = self
            .model
            .embedding_from_half(features)
            .ok_or_else(|| GeneralistError::Model("not a LiteMedSAM slice embedding".into()))?;
        let model_prompts: Vec<Prompts> =
            prompts.iter().map(|p| model_prompts(p, geometry)).collect();
        let window = LogitWindow::covering(geometry, rows.clone(), cols.clone());
        let logits = self
            .model
            .decode_batch(&embedding, &model_prompts, &window)?;
        logits
            .iter()
            .map(|l| {
                Ok(upsample_logits_region(
                    l,
                    geometry,
                    rows.clone(),
                    cols.clone(),
                )?)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn slices_are_min_max_scaled_to_bytes() {
        let slice = array![[-1.0f32, 0.0], [1.0, 3.0]];
        assert_eq!(to_u8(slice.view()), array![[0u8, 64], [128, 255]]);
        assert_eq!(to_u8(array![[2.0f32, 2.0]].view()), array![[0u8, 0]]);
    }

    #[test]
    fn boxes_scale_like_upstream() {
        let geometry = ImageGeometry::for_original(64, 32);
        let prompt = SlicePrompt {
            slice: 0,
            bbox: [1.0, 2.0, 10.0, 20.5],
            points: vec![],
            area: 1,
        };
        // scale 256 / 64 = 4, truncated toward zero
        assert_eq!(
            model_prompts(&prompt, &geometry).bbox,
            Some([4.0, 8.0, 40.0, 82.0])
        );
    }
}
