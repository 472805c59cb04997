//! LiteMedSAM (TinyViT image encoder + SAM prompt encoder and mask decoder, 256x256 input),
//! ported to burn with the upstream checkpoint's parameter names.
//!
//! The encoder ([`LiteMedSam::embed`]) is the costly part and does not depend on the prompt:
//! compute one [`Embedding`] per image or slice and decode as many prompts against it as needed
//! ([`LiteMedSam::decode`], [`LiteMedSam::decode_batch`]).

mod checkpoint;
mod gelu;
mod layers;
mod mask_decoder;
mod preprocess;
mod prompt_encoder;
mod tiny_vit;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

pub use mask_decoder::DecoderObserver;
pub use preprocess::{
    ImageGeometry, LogitWindow, PreparedImage, gray_to_rgb, postprocess_mask,
    postprocess_mask_region, prepare_image, resize_area, upsample_logits_region,
};
pub use tiny_vit::StageObserver;

use checkpoint::Checkpoint;
use mask_decoder::MaskDecoder;
use prompt_encoder::PromptEncoder;
use tiny_vit::TinyVit;

/// Side of the square model input.
pub const INPUT_SIZE: usize = 256;
/// Side of the square image embedding grid.
pub const EMBED_GRID: usize = 64;
/// Channels of the image embedding and of every prompt token.
pub const EMBED_DIM: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum LiteMedSamError {
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("invalid prompt: {0}")]
    Prompt(String),
}

/// A point prompt in model-input pixels (256-space); `positive` = foreground.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointPrompt {
    pub x: f32,
    pub y: f32,
    pub positive: bool,
}

/// The prompts for one mask, in model-input pixels (256-space): an optional box
/// `[x0, y0, x1, y1]` and any number of points. Use [`ImageGeometry::scale_box`] /
/// [`ImageGeometry::scale_point`] to map from original image coordinates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prompts {
    pub bbox: Option<[f32; 4]>,
    pub points: Vec<PointPrompt>,
}

impl Prompts {
    pub fn from_box(bbox: [f32; 4]) -> Self {
        Self {
            bbox: Some(bbox),
            points: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), LiteMedSamError> {
        if self.bbox.is_none() && self.points.is_empty() {
            return Err(LiteMedSamError::Prompt(
                "needs a box or at least one point".into(),
            ));
        }
        let coords = self
            .bbox
            .iter()
            .flatten()
            .copied()
            .chain(self.points.iter().flat_map(|p| [p.x, p.y]));
        if let Some(bad) = coords.into_iter().find(|v| !v.is_finite()) {
            return Err(LiteMedSamError::Prompt(format!(
                "coordinate {bad} is not finite"
            )));
        }
        Ok(())
    }

    /// Number of sparse tokens the prompt encoder produces (prompts batch together only when
    /// this matches).
    fn token_count(&self) -> usize {
        let padding = usize::from(self.bbox.is_none() && !self.points.is_empty());
        self.points.len() + padding + 2 * usize::from(self.bbox.is_some())
    }
}

/// The image encoder's output for one image: (256, 64, 64). Cloning is cheap (shared storage).
#[derive(Clone, Debug)]
pub struct Embedding {
    pub features: Tensor<3>,
}

impl Embedding {
    /// Channel-first values, (256, 64, 64) row-major.
    pub fn to_vec(&self) -> Vec<f32> {
        self.features
            .to_data()
            .try_into_vec::<f32>()
            .expect("f32 embedding")
    }

    /// [`Embedding::to_vec`] rounded to IEEE half precision: half the memory, for embeddings
    /// that are kept (the features lie within a few units of zero, where f16 keeps about three
    /// significant digits; the decoder's masks barely notice).
    pub fn to_half(&self) -> Vec<half::f16> {
        self.to_vec().into_iter().map(half::f16::from_f32).collect()
    }
}

impl LiteMedSam {
    /// An embedding from its [`Embedding::to_vec`] values on the model's device; `None` unless
    /// there are 256 · 64 · 64 of them.
    pub fn embedding_from_values(&self, values: Vec<f32>) -> Option<Embedding> {
        const SHAPE: [usize; 3] = [256, 64, 64];
        (values.len() == SHAPE.iter().product::<usize>()).then(|| Embedding {
            features: Tensor::from_data(burn::tensor::TensorData::new(values, SHAPE), &self.device),
        })
    }

    /// An embedding from its [`Embedding::to_half`] values; `None` unless there are
    /// 256 · 64 · 64 of them.
    pub fn embedding_from_half(&self, values: &[half::f16]) -> Option<Embedding> {
        self.embedding_from_values(values.iter().map(|v| v.to_f32()).collect())
    }
}

/// The decoder's single-mask output (`multimask_output=False`, i.e. mask token 0).
#[derive(Clone, Debug, PartialEq)]
pub struct MaskLogits {
    /// Low-resolution logits in model-input space, row-major over `window` (the whole grid:
    /// (256, 256)).
    pub values: Vec<f32>,
    /// The part of the 256x256 grid that was decoded.
    pub window: LogitWindow,
    /// Predicted IoU of the mask.
    pub iou: f32,
}

/// The frozen LiteMedSAM model.
#[derive(Clone, Debug)]
pub struct LiteMedSam {
    image_encoder: TinyVit,
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    /// `get_dense_pe()` as 4096 rows of 256 (one per embedding pixel).
    image_pe: Vec<f32>,
    /// The dense prompt embedding without a mask input (`no_mask_embed`), 256 values.
    no_mask: Vec<f32>,
    device: Device,
}

impl LiteMedSam {
    /// Load the upstream `lite_medsam.pth` (flat state_dict). Every tensor must be present with
    /// its expected shape and nothing else may be in the file; errors name the key.
    pub fn load(path: &Path, device: &Device) -> Result<Self, LiteMedSamError> {
        let mut ckpt = Checkpoint::open(path, device)?;
        let image_encoder = TinyVit::load(&mut ckpt, "image_encoder")?;
        let prompt_encoder = PromptEncoder::load(&mut ckpt, "prompt_encoder")?;
        let mask_decoder = MaskDecoder::load(&mut ckpt, "mask_decoder")?;
        let image_pe = prompt_encoder.dense_positional_tokens();
        let no_mask = prompt_encoder.no_mask.clone();
        ckpt.finish()?;
        Ok(Self {
            image_encoder,
            prompt_encoder,
            mask_decoder,
            image_pe,
            no_mask,
            device: device.clone(),
        })
    }

    /// `get_dense_pe()`: the positional encoding of the embedding grid, (256, 64, 64)
    /// channel-first.
    pub fn dense_positional_encoding(&self) -> Vec<f32> {
        layers::transposed(&self.image_pe, EMBED_GRID * EMBED_GRID, EMBED_DIM)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn input_tensor(&self, image: &PreparedImage) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(image.pixels.clone(), [1, 3, INPUT_SIZE, INPUT_SIZE]),
            &self.device,
        )
    }

    /// Run the image encoder on a preprocessed image.
    pub fn embed(&self, image: &PreparedImage) -> Embedding {
        self.embed_traced(image, None)
    }

    /// [`embed`](Self::embed), reporting every encoder stage (NCHW) to `observer`.
    pub fn embed_traced(
        &self,
        image: &PreparedImage,
        observer: Option<StageObserver<'_>>,
    ) -> Embedding {
        let features = self
            .image_encoder
            .forward(self.input_tensor(image), observer);
        Embedding {
            features: features.reshape([EMBED_DIM, EMBED_GRID, EMBED_GRID]),
        }
    }

    /// Run the image encoder on several images as one batch; embeddings in input order.
    pub fn embed_batch(&self, images: &[PreparedImage]) -> Vec<Embedding> {
        if images.is_empty() {
            return Vec::new();
        }
        let pixels: Vec<f32> = images
            .iter()
            .flat_map(|image| image.pixels.iter().copied())
            .collect();
        let input = Tensor::from_data(
            TensorData::new(pixels, [images.len(), 3, INPUT_SIZE, INPUT_SIZE]),
            &self.device,
        );
        let features = self.image_encoder.forward(input, None);
        (0..images.len())
            .map(|i| Embedding {
                features: features
                    .clone()
                    .narrow(0, i, 1)
                    .reshape([EMBED_DIM, EMBED_GRID, EMBED_GRID]),
            })
            .collect()
    }

    /// The sparse prompt embeddings, (tokens, 256) row-major.
    pub fn sparse_embeddings(&self, prompts: &Prompts) -> Result<Vec<f32>, LiteMedSamError> {
        prompts.validate()?;
        Ok(self.prompt_encoder.sparse_embeddings(prompts))
    }

    /// Decode one prompt set against an embedding.
    pub fn decode(
        &self,
        embedding: &Embedding,
        prompts: &Prompts,
    ) -> Result<MaskLogits, LiteMedSamError> {
        self.decode_traced(embedding, prompts, None)
    }

    /// [`decode`](Self::decode), reporting decoder intermediates to `observer`.
    pub fn decode_traced(
        &self,
        embedding: &Embedding,
        prompts: &Prompts,
        observer: Option<DecoderObserver<'_>>,
    ) -> Result<MaskLogits, LiteMedSamError> {
        let mut out = self.decode_group(
            embedding,
            std::slice::from_ref(prompts),
            &LogitWindow::full(),
            observer,
        )?;
        Ok(out.remove(0))
    }

    /// Decode many prompt sets against one embedding, each over `window` of the logit grid.
    /// Prompt sets with the same number of tokens (e.g. all box-only) run as one batch through
    /// the decoder; results keep the input order.
    pub fn decode_batch(
        &self,
        embedding: &Embedding,
        prompts: &[Prompts],
        window: &LogitWindow,
    ) -> Result<Vec<MaskLogits>, LiteMedSamError> {
        let mut results: Vec<Option<MaskLogits>> = vec![None; prompts.len()];
        let mut counts: Vec<usize> = prompts.iter().map(Prompts::token_count).collect();
        counts.sort_unstable();
        counts.dedup();
        for count in counts {
            let members: Vec<usize> = (0..prompts.len())
                .filter(|&i| prompts[i].token_count() == count)
                .collect();
            let group: Vec<Prompts> = members.iter().map(|&i| prompts[i].clone()).collect();
            for (i, logits) in members
                .into_iter()
                .zip(self.decode_group(embedding, &group, window, None)?)
            {
                results[i] = Some(logits);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every prompt decoded"))
            .collect())
    }

    /// The embedding as 64·64 rows of 256 with the dense (no-mask) prompt embedding added: the
    /// image tokens the decoder attends to. Transposed a block of pixels per task, so that each
    /// task's writes stay in cache while it reads its 256 channel planes.
    fn image_tokens(&self, embedding: &Embedding) -> Vec<f32> {
        const PIXELS_PER_TASK: usize = 64;
        let planes = embedding.to_vec();
        let pixels = EMBED_GRID * EMBED_GRID;
        let mut rows = vec![0.0f32; planes.len()];
        rows.par_chunks_mut(PIXELS_PER_TASK * EMBED_DIM)
            .enumerate()
            .for_each(|(task, rows)| {
                let first = task * PIXELS_PER_TASK;
                for (c, &dense) in self.no_mask.iter().enumerate() {
                    let plane = &planes[c * pixels + first..][..rows.len() / EMBED_DIM];
                    for (p, &v) in plane.iter().enumerate() {
                        rows[p * EMBED_DIM + c] = v + dense;
                    }
                }
            });
        rows
    }

    fn decode_group(
        &self,
        embedding: &Embedding,
        prompts: &[Prompts],
        window: &LogitWindow,
        observer: Option<DecoderObserver<'_>>,
    ) -> Result<Vec<MaskLogits>, LiteMedSamError> {
        if window.cell_rows.end > EMBED_GRID
            || window.cell_cols.end > EMBED_GRID
            || window.cell_rows.is_empty()
            || window.cell_cols.is_empty()
        {
            return Err(LiteMedSamError::Input(format!(
                "logit window {window:?} is empty or outside the {EMBED_GRID}x{EMBED_GRID} grid"
            )));
        }
        let tokens = prompts[0].token_count();
        let mut sparse = Vec::with_capacity(prompts.len() * tokens * EMBED_DIM);
        for p in prompts {
            sparse.extend(self.sparse_embeddings(p)?);
        }
        let sparse = Tensor::from_data(
            TensorData::new(sparse, [prompts.len(), tokens, EMBED_DIM]),
            &self.device,
        );
        let out = self.mask_decoder.forward(
            sparse,
            self.image_tokens(embedding),
            &self.image_pe,
            1,
            window,
            observer,
        );
        let size = window.height() * window.width();
        let masks = out.masks;
        debug_assert_eq!(masks.len(), prompts.len() * size);
        let iou = out
            .iou
            .narrow(1, 0, 1)
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 iou");
        Ok(masks
            .chunks_exact(size)
            .zip(iou)
            .map(|(values, iou)| MaskLogits {
                values: values.to_vec(),
                window: window.clone(),
                iou,
            })
            .collect())
    }
}
