//! Channel-last token kernels of a windowed vision transformer (LiteMedSAM's TinyViT): layer
//! normalisation over rows, and window attention that reads its windows straight out of the
//! image-ordered `q|k|v` rows.
//!
//! Token-wise layers do not care in which order tokens come, so a block can run its norms and
//! linear layers on the image-ordered map and only the attention needs the windows. Partitioning
//! the map into windows, padding it to a multiple of the window and undoing both were three
//! full copies per block, and the padded tokens went through every linear layer. Here a padded
//! position (zeros before the norm) reads one precomputed `q|k|v` row instead.

use crate::math::{lane_sum, softmax_in_place};
use crate::matmul::{Matrix, matmul_serial};
use crate::path::KernelPath;
use rayon::prelude::*;

/// `nn.LayerNorm` over each row of `dim` values (biased variance, as PyTorch):
/// `(x − mean) / √(var + eps) · gamma + beta`.
pub fn layer_norm_rows(
    path: KernelPath,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Vec<f32> {
    path.assert_available();
    let dim = gamma.len();
    assert!(
        dim > 0 && beta.len() == dim,
        "layer_norm_rows: parameter sizes"
    );
    assert_eq!(x.len() % dim, 0, "layer_norm_rows: input size");
    const ROWS_PER_TASK: usize = 64;
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(dim * ROWS_PER_TASK)
        .zip(x.par_chunks(dim * ROWS_PER_TASK))
        .for_each(|(y, x)| {
            path.run(
                #[inline(always)]
                || {
                    for (y, x) in y.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
                        let mean = lane_sum(x, |v| v) / dim as f32;
                        let variance = lane_sum(x, |v| (v - mean) * (v - mean)) / dim as f32;
                        let inv_std = 1.0 / (variance + eps).sqrt();
                        for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                            *y = (x - mean) * inv_std * g + b;
                        }
                    }
                },
            )
        });
    y
}

/// A depthwise 3x3 convolution with padding 1 on `batch` channel-last maps of `height` x
/// `width` x C, C = `bias.len()`; `weight` is tap-major (3, 3, C) so that each tap's weights are
/// contiguous over the channels, like the input. Returns the output and its height and width.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv3x3(
    path: KernelPath,
    input: &[f32],
    batch: usize,
    height: usize,
    width: usize,
    weight: &[f32],
    bias: &[f32],
    stride: usize,
) -> (Vec<f32>, usize, usize) {
    path.assert_available();
    let c = bias.len();
    assert!(stride > 0, "depthwise_conv3x3: stride 0");
    assert_eq!(weight.len(), 9 * c, "depthwise_conv3x3: weight size");
    assert_eq!(
        input.len(),
        batch * height * width * c,
        "depthwise_conv3x3: input size"
    );
    let (out_h, out_w) = (height.div_ceil(stride), width.div_ceil(stride));
    let mut output = vec![0.0f32; batch * out_h * out_w * c];
    if output.is_empty() {
        return (output, out_h, out_w);
    }
    output
        .par_chunks_mut(out_w * c)
        .enumerate()
        .for_each(|(line, out_row)| {
            let (image, oy) = (line / out_h, line % out_h);
            path.run(
                #[inline(always)]
                || {
                    depthwise_row(
                        input,
                        image,
                        oy,
                        (height, width),
                        weight,
                        bias,
                        stride,
                        out_row,
                    )
                },
            )
        });
    (output, out_h, out_w)
}

/// Output row `oy` of image `image` for [`depthwise_conv3x3`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn depthwise_row(
    input: &[f32],
    image: usize,
    oy: usize,
    (height, width): (usize, usize),
    weight: &[f32],
    bias: &[f32],
    stride: usize,
    out_row: &mut [f32],
) {
    let c = bias.len();
    for (ox, out) in out_row.chunks_exact_mut(c).enumerate() {
        out.copy_from_slice(bias);
        for ky in 0..3 {
            // Input row oy·stride + ky − 1, skipped where it falls in the padding.
            let Some(sy) = (oy * stride + ky).checked_sub(1).filter(|&sy| sy < height) else {
                continue;
            };
            for kx in 0..3 {
                let Some(sx) = (ox * stride + kx).checked_sub(1).filter(|&sx| sx < width) else {
                    continue;
                };
                let src = &input[((image * height + sy) * width + sx) * c..][..c];
                let tap = &weight[(ky * 3 + kx) * c..][..c];
                for ((o, &v), &k) in out.iter_mut().zip(src).zip(tap) {
                    *o += v * k;
                }
            }
        }
    }
}

/// The map the attention runs on: `batch` images of `height` x `width` tokens, cut into
/// `window` x `window` windows from the top left; the last row and column of windows reach past
/// the map when its sides are not multiples of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub window: usize,
}

/// The heads: `heads` of `key_dim` channels each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    pub heads: usize,
    pub key_dim: usize,
}

/// Softmax attention inside each window, head by head: `softmax(q·kᵀ/√key_dim + bias)·v`.
///
/// - `qkv`: one row per token in image order (batch, row, column), `heads · 3 · key_dim` values:
///   for each head its query, key and value in turn (TinyViT's `qkv` layer).
/// - `padding_qkv`: the row that stands for every position past the map (keys and values only;
///   no output is computed there).
/// - `bias`: (heads, window², window²), added to the scaled scores.
///
/// Returns one row per token in image order: `heads · key_dim` values, head-major.
pub fn window_attention(
    path: KernelPath,
    qkv: &[f32],
    padding_qkv: &[f32],
    bias: &[f32],
    windows: Windows,
    heads: Heads,
) -> Vec<f32> {
    path.assert_available();
    let Windows {
        batch,
        height,
        width,
        window,
    } = windows;
    let Heads { heads, key_dim } = heads;
    let tokens = window * window;
    let row_len = 3 * heads * key_dim;
    let out_len = heads * key_dim;
    assert!(
        window > 0 && key_dim > 0,
        "window_attention: empty window or head"
    );
    assert_eq!(
        qkv.len(),
        batch * height * width * row_len,
        "window_attention: qkv size"
    );
    assert_eq!(
        padding_qkv.len(),
        row_len,
        "window_attention: padding row size"
    );
    assert_eq!(
        bias.len(),
        heads * tokens * tokens,
        "window_attention: bias size"
    );
    let scale = 1.0 / (key_dim as f32).sqrt();
    let columns = width.div_ceil(window);
    let mut out = vec![0.0f32; batch * height * width * out_len];
    if out.is_empty() {
        return out;
    }
    // One task per band of `window` image rows: its output rows are contiguous.
    let band_len = window * width * out_len;
    let image_len = height * width * out_len;
    out.par_chunks_mut(image_len)
        .enumerate()
        .flat_map(|(image, out)| {
            out.par_chunks_mut(band_len)
                .enumerate()
                .map(move |(band, out)| (image, band, out))
        })
        .for_each(|(image, band, out)| {
            let mut scratch = Scratch::new(tokens, key_dim);
            let band_start = (image * height + band * window) * width;
            for column in 0..columns {
                // The token index of each window position inside the map, in window order.
                let positions: Vec<Option<usize>> = (0..tokens)
                    .map(|j| {
                        let (y, x) = (band * window + j / window, column * window + j % window);
                        (y < height && x < width).then(|| (image * height + y) * width + x)
                    })
                    .collect();
                for head in 0..heads {
                    let head_qkv = head * 3 * key_dim;
                    scratch.gather(&positions, |position| match position {
                        Some(token) => &qkv[token * row_len + head_qkv..][..3 * key_dim],
                        None => &padding_qkv[head_qkv..][..3 * key_dim],
                    });
                    let head_bias = &bias[head * tokens * tokens..][..tokens * tokens];
                    scratch.attend(path, head_bias, scale);
                    for (&token, attended) in scratch
                        .query_tokens
                        .iter()
                        .zip(scratch.attended.chunks_exact(key_dim))
                    {
                        let local = token - band_start;
                        out[local * out_len + head * key_dim..][..key_dim]
                            .copy_from_slice(attended);
                    }
                }
            }
        });
    out
}

/// Each row `r` of `scores`: `softmax(row · scale + bias[rows[r]])`, `bias` having `n` columns.
#[inline(always)]
fn softmax_rows(scores: &mut [f32], bias: &[f32], rows: &[usize], n: usize, scale: f32) {
    for (row, &index) in scores.chunks_exact_mut(n).zip(rows) {
        for (s, &b) in row.iter_mut().zip(&bias[index * n..][..n]) {
            *s = *s * scale + b;
        }
        softmax_in_place(row);
    }
}

/// One window and head at a time: its queries (inside the map only), keys and values gathered
/// into dense matrices, and the two products.
struct Scratch {
    tokens: usize,
    key_dim: usize,
    /// The map token and the window position of each gathered query.
    query_tokens: Vec<usize>,
    query_indices: Vec<usize>,
    queries: Vec<f32>,
    keys: Vec<f32>,
    values: Vec<f32>,
    scores: Vec<f32>,
    attended: Vec<f32>,
}

impl Scratch {
    fn new(tokens: usize, key_dim: usize) -> Self {
        Self {
            tokens,
            key_dim,
            query_tokens: Vec::with_capacity(tokens),
            query_indices: Vec::with_capacity(tokens),
            queries: Vec::with_capacity(tokens * key_dim),
            keys: vec![0.0; tokens * key_dim],
            values: vec![0.0; tokens * key_dim],
            scores: vec![0.0; tokens * tokens],
            attended: vec![0.0; tokens * key_dim],
        }
    }

    /// `row(position)` is a position's q|k|v (3 · key_dim values).
    fn gather<'a>(
        &mut self,
        positions: &[Option<usize>],
        row: impl Fn(Option<usize>) -> &'a [f32],
    ) {
        let d = self.key_dim;
        self.query_tokens.clear();
        self.query_indices.clear();
        self.queries.clear();
        for (j, &position) in positions.iter().enumerate() {
            let qkv = row(position);
            if let Some(token) = position {
                self.query_tokens.push(token);
                self.query_indices.push(j);
                self.queries.extend_from_slice(&qkv[..d]);
            }
            self.keys[j * d..][..d].copy_from_slice(&qkv[d..2 * d]);
            self.values[j * d..][..d].copy_from_slice(&qkv[2 * d..]);
        }
    }

    /// `attended = softmax(queries · keysᵀ · scale + bias) · values` for the gathered queries.
    fn attend(&mut self, path: KernelPath, bias: &[f32], scale: f32) {
        let (n, d, queries) = (self.tokens, self.key_dim, self.query_tokens.len());
        let scores = &mut self.scores[..queries * n];
        matmul_serial(
            scores,
            Matrix::row_major(&self.queries, queries, d),
            Matrix::row_major(&self.keys, n, d).transposed(),
            false,
        );
        path.run(
            #[inline(always)]
            || softmax_rows(scores, bias, &self.query_indices, n, scale),
        );
        let attended = &mut self.attended[..queries * d];
        matmul_serial(
            attended,
            Matrix::row_major(scores, queries, n),
            Matrix::row_major(&self.values, n, d),
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{softmax_weighted_sum, test_values as pseudo_random};

    /// Attention of one query over explicit key/value lists, in f64.
    fn attend(query: &[f32], keys: &[&[f32]], values: &[&[f32]], bias: &[f32]) -> Vec<f64> {
        let scale = 1.0 / (query.len() as f64).sqrt();
        let scores: Vec<f64> = keys
            .iter()
            .zip(bias)
            .map(|(k, &b)| {
                let dot: f64 = query
                    .iter()
                    .zip(*k)
                    .map(|(&q, &k)| q as f64 * k as f64)
                    .sum();
                dot * scale + b as f64
            })
            .collect();
        softmax_weighted_sum(&scores, values)
    }

    #[test]
    fn window_attention_matches_a_direct_evaluation_with_padding() {
        // 2 images of 5 x 7 tokens, windows of 3: the last window row and column are padded.
        let windows = Windows {
            batch: 2,
            height: 5,
            width: 7,
            window: 3,
        };
        let heads = Heads {
            heads: 2,
            key_dim: 4,
        };
        let row_len = 3 * heads.heads * heads.key_dim;
        let qkv = pseudo_random(2 * 5 * 7 * row_len, 1);
        let padding = pseudo_random(row_len, 2);
        let bias = pseudo_random(heads.heads * 81, 3);
        for path in KernelPath::available() {
            let out = window_attention(path, &qkv, &padding, &bias, windows, heads);
            assert_eq!(out.len(), 2 * 5 * 7 * heads.heads * heads.key_dim);
            for image in 0..2 {
                for y in 0..5 {
                    for x in 0..7 {
                        let token = (image * 5 + y) * 7 + x;
                        let (wy, wx) = (y / 3 * 3, x / 3 * 3);
                        let i = (y - wy) * 3 + (x - wx);
                        for head in 0..heads.heads {
                            let slot = |position: Option<usize>, offset: usize| -> &[f32] {
                                let start = head * 12 + offset;
                                match position {
                                    Some(r) => &qkv[r * row_len + start..][..4],
                                    None => &padding[start..start + 4],
                                }
                            };
                            let positions: Vec<Option<usize>> = (0..9)
                                .map(|j| {
                                    let (py, px) = (wy + j / 3, wx + j % 3);
                                    (py < 5 && px < 7).then_some((image * 5 + py) * 7 + px)
                                })
                                .collect();
                            let keys: Vec<&[f32]> = positions.iter().map(|&r| slot(r, 4)).collect();
                            let values: Vec<&[f32]> =
                                positions.iter().map(|&r| slot(r, 8)).collect();
                            let query = &qkv[token * row_len + head * 12..][..4];
                            let expected =
                                attend(query, &keys, &values, &bias[(head * 9 + i) * 9..][..9]);
                            let got = &out[token * 8 + head * 4..][..4];
                            for (g, e) in got.iter().zip(&expected) {
                                assert!(
                                    (*g as f64 - e).abs() < 1e-5,
                                    "{path:?}: token {token} head {head}: {g} vs {e}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn layer_norm_rows_matches_the_definition() {
        let dim = 20;
        let x = pseudo_random(3 * dim, 4);
        let gamma = pseudo_random(dim, 5);
        let beta = pseudo_random(dim, 6);
        for path in KernelPath::available() {
            let y = layer_norm_rows(path, &x, &gamma, &beta, 1e-5);
            for (row, y) in x.chunks(dim).zip(y.chunks(dim)) {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
                for t in 0..dim {
                    let expected = (row[t] as f64 - mean) / (var + 1e-5).sqrt() * gamma[t] as f64
                        + beta[t] as f64;
                    assert!(
                        (y[t] as f64 - expected).abs() < 1e-5,
                        "{path:?}: {} vs {expected}",
                        y[t]
                    );
                }
            }
        }
        // A zero row normalises to beta (what a zero-padded token becomes).
        let zeros = layer_norm_rows(KernelPath::Generic, &vec![0.0; dim], &gamma, &beta, 1e-5);
        assert_eq!(zeros, beta);
    }

    #[test]
    fn depthwise_conv3x3_matches_a_direct_sum_at_both_strides() {
        let (batch, height, width, c) = (2, 5, 6, 3);
        let input = pseudo_random(batch * height * width * c, 7);
        let weight = pseudo_random(9 * c, 8);
        let bias = pseudo_random(c, 9);
        for stride in [1, 2] {
            for path in KernelPath::available() {
                let (out, oh, ow) =
                    depthwise_conv3x3(path, &input, batch, height, width, &weight, &bias, stride);
                assert_eq!(
                    (oh, ow),
                    ((height - 1) / stride + 1, (width - 1) / stride + 1)
                );
                for image in 0..batch {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            for ch in 0..c {
                                let mut expected = bias[ch] as f64;
                                for ky in 0..3 {
                                    for kx in 0..3 {
                                        let (sy, sx) = (
                                            (oy * stride + ky) as isize - 1,
                                            (ox * stride + kx) as isize - 1,
                                        );
                                        if sy < 0
                                            || sx < 0
                                            || sy >= height as isize
                                            || sx >= width as isize
                                        {
                                            continue;
                                        }
                                        let at = ((image * height + sy as usize) * width
                                            + sx as usize)
                                            * c
                                            + ch;
                                        expected += input[at] as f64
                                            * weight[(ky * 3 + kx) * c + ch] as f64;
                                    }
                                }
                                let got = out[((image * oh + oy) * ow + ox) * c + ch] as f64;
                                assert!(
                                    (got - expected).abs() < 1e-5,
                                    "{path:?} stride {stride}: {got} vs {expected}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
