//! SAM's prompt encoder (`prompt_encoder.*`) for box and point prompts, plus the dense
//! positional encoding of the 64x64 embedding grid. Prompts are tiny, so the sparse embeddings
//! are computed on plain `f32` slices.

use std::f32::consts::PI;

use super::checkpoint::Checkpoint;
use super::{EMBED_DIM, EMBED_GRID, INPUT_SIZE, LiteMedSamError, PointPrompt, Prompts};

const PE_FEATURES: usize = EMBED_DIM / 2;

#[derive(Clone, Debug)]
pub(crate) struct PromptEncoder {
    /// Random Fourier features, (2, 128) row-major.
    gaussian: Vec<f32>,
    /// [negative point, positive point, box top-left, box bottom-right], each 256.
    point_embeddings: [Vec<f32>; 4],
    not_a_point: Vec<f32>,
    pub no_mask: Vec<f32>,
}

impl PromptEncoder {
    pub fn load(ckpt: &mut Checkpoint, prefix: &str) -> Result<Self, LiteMedSamError> {
        let gaussian = ckpt.take_values(
            &format!("{prefix}.pe_layer.positional_encoding_gaussian_matrix"),
            &[2, PE_FEATURES],
        );
        let mut take_row =
            |name: &str| ckpt.take_values(&format!("{prefix}.{name}.weight"), &[1, EMBED_DIM]);
        let point_embeddings = [
            take_row("point_embeddings.0"),
            take_row("point_embeddings.1"),
            take_row("point_embeddings.2"),
            take_row("point_embeddings.3"),
        ];
        let not_a_point = take_row("not_a_point_embed");
        let no_mask = take_row("no_mask_embed");
        discard_mask_downscaling(ckpt, &format!("{prefix}.mask_downscaling"))?;
        Ok(Self {
            gaussian,
            point_embeddings,
            not_a_point,
            no_mask,
        })
    }

    /// Fourier encoding of a point in [0,1]² (x, y): `[sin(2π(2c−1)G), cos(2π(2c−1)G)]`.
    fn positional_encoding(&self, x: f32, y: f32) -> Vec<f32> {
        let (cx, cy) = (2.0 * x - 1.0, 2.0 * y - 1.0);
        let projected: Vec<f32> = (0..PE_FEATURES)
            .map(|f| 2.0 * PI * (cx * self.gaussian[f] + cy * self.gaussian[PE_FEATURES + f]))
            .collect();
        projected
            .iter()
            .map(|p| p.sin())
            .chain(projected.iter().map(|p| p.cos()))
            .collect()
    }

    /// Encoding of a pixel-coordinate point of the 256x256 model input (SAM adds the +0.5
    /// pixel-centre shift itself).
    fn encode_input_point(&self, x: f32, y: f32) -> Vec<f32> {
        self.positional_encoding((x + 0.5) / INPUT_SIZE as f32, (y + 0.5) / INPUT_SIZE as f32)
    }

    /// Sparse prompt tokens, row-major (tokens, 256): points first (with SAM's padding point
    /// when there is no box), then the two box corners.
    pub fn sparse_embeddings(&self, prompts: &Prompts) -> Vec<f32> {
        let mut tokens = Vec::new();
        for &PointPrompt { x, y, positive } in &prompts.points {
            let mut pe = self.encode_input_point(x, y);
            add(&mut pe, &self.point_embeddings[usize::from(positive)]);
            tokens.extend(pe);
        }
        if !prompts.points.is_empty() && prompts.bbox.is_none() {
            tokens.extend(&self.not_a_point);
        }
        if let Some([x0, y0, x1, y1]) = prompts.bbox {
            for (corner, (x, y)) in [(x0, y0), (x1, y1)].into_iter().enumerate() {
                let mut pe = self.encode_input_point(x, y);
                add(&mut pe, &self.point_embeddings[2 + corner]);
                tokens.extend(pe);
            }
        }
        tokens
    }

    /// `get_dense_pe()` as channel-last tokens (64·64, 256), row-major over the grid.
    pub fn dense_positional_tokens(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(EMBED_GRID * EMBED_GRID * EMBED_DIM);
        for i in 0..EMBED_GRID {
            for j in 0..EMBED_GRID {
                let x = (j as f32 + 0.5) / EMBED_GRID as f32;
                let y = (i as f32 + 0.5) / EMBED_GRID as f32;
                out.extend(self.positional_encoding(x, y));
            }
        }
        out
    }
}

fn add(acc: &mut [f32], other: &[f32]) {
    acc.iter_mut().zip(other).for_each(|(a, b)| *a += b);
}

/// `mask_downscaling` only serves mask prompts, which LiteMedSAM inference never uses; its
/// tensors are still part of a valid checkpoint, so they are checked and dropped.
fn discard_mask_downscaling(ckpt: &mut Checkpoint, prefix: &str) -> Result<(), LiteMedSamError> {
    let shapes: [(&str, &[usize]); 10] = [
        ("0.weight", &[4, 1, 2, 2]),
        ("0.bias", &[4]),
        ("1.weight", &[4]),
        ("1.bias", &[4]),
        ("3.weight", &[16, 4, 2, 2]),
        ("3.bias", &[16]),
        ("4.weight", &[16]),
        ("4.bias", &[16]),
        ("6.weight", &[EMBED_DIM, 16, 1, 1]),
        ("6.bias", &[EMBED_DIM]),
    ];
    for (name, shape) in shapes {
        ckpt.take_values(&format!("{prefix}.{name}"), shape);
    }
    Ok(())
}
