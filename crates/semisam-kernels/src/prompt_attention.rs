//! The image side of SAM's two-way attention between a handful of prompt tokens and the 4096
//! tokens of an image embedding (LiteMedSAM's mask decoder).
//!
//! With the projections folded into the token side, both directions are two GEMMs that stream the
//! image rows once and a softmax in between. The softmax rows are what a generic tensor library
//! handles badly here: 4096 pixels x 8 heads rows of as few as 7 scores when the image attends to
//! the tokens. Here each band of pixels goes through its scores, softmax and output on one
//! thread while its rows are still in cache, and the output lands on the residual it is added to.

use crate::math::softmax_in_place;
use crate::matmul::{Matrix, matmul, matmul_serial};
use crate::path::KernelPath;
use rayon::prelude::*;

/// Pixels per task of [`image_to_tokens_add`]: enough rows for an efficient GEMM, few enough that
/// a band's scores stay in L1/L2 and 4096 pixels still make 32 tasks.
const PIXELS_PER_TASK: usize = 128;

/// In-place softmax of each `group`-long run of `scores`, after adding `bias` (one value per
/// column, repeated for every row).
#[inline(always)]
fn softmax_groups(scores: &mut [f32], bias: &[f32], group: usize) {
    for row in scores.chunks_exact_mut(bias.len()) {
        for (s, &b) in row.iter_mut().zip(bias) {
            *s += b;
        }
        for run in row.chunks_exact_mut(group) {
            softmax_in_place(run);
        }
    }
}

/// Prompt tokens attend to the image: `softmax(queries · keysᵀ) · values`, with the softmax over
/// each query row's `pixels` scores. `queries`: rows of `dim` (one per token and head, scale
/// already folded in); `keys`: `pixels` rows of `dim`; `values`: `pixels` rows of `value_dim`.
/// Returns one row of `value_dim` per query row.
pub fn tokens_to_image(
    path: KernelPath,
    queries: &[f32],
    keys: &[f32],
    values: &[f32],
    dim: usize,
    value_dim: usize,
) -> Vec<f32> {
    path.assert_available();
    assert!(dim > 0 && value_dim > 0, "tokens_to_image: empty rows");
    assert_eq!(queries.len() % dim, 0, "tokens_to_image: query size");
    assert_eq!(keys.len() % dim, 0, "tokens_to_image: key size");
    let (rows, pixels) = (queries.len() / dim, keys.len() / dim);
    assert_eq!(
        values.len(),
        pixels * value_dim,
        "tokens_to_image: value size"
    );
    let mut scores = vec![0.0f32; rows * pixels];
    matmul(
        &mut scores,
        Matrix::row_major(queries, rows, dim),
        Matrix::row_major(keys, pixels, dim).transposed(),
        false,
    );
    scores.par_chunks_mut(pixels).for_each(|row| {
        path.run(
            #[inline(always)]
            || {
                softmax_in_place(row);
            },
        )
    });
    let mut out = vec![0.0f32; rows * value_dim];
    matmul(
        &mut out,
        Matrix::row_major(&scores, rows, pixels),
        Matrix::row_major(values, pixels, value_dim),
        false,
    );
    out
}

/// What the image attends to: per pixel, `heads` softmaxes over `group` tokens each.
#[derive(Clone, Copy, Debug)]
pub struct TokenSide<'a> {
    /// `dim` x (heads·group): each pixel's scores are `pixel · query_keys + score_bias`.
    pub query_keys: &'a [f32],
    /// heads·group values.
    pub score_bias: &'a [f32],
    /// Tokens per softmax.
    pub group: usize,
    /// (heads·group) x `out_dim`: the tokens' values already projected to the output.
    pub value_out: &'a [f32],
    /// `out_dim` values added to every output row.
    pub out_bias: &'a [f32],
}

/// The image attends to the tokens and the result is added to `residual`: for every pixel row
/// `p` of `image` (rows of `dim`), `residual[p] += softmax_groups(image[p] · query_keys +
/// score_bias) · value_out + out_bias`, `residual` having rows of `out_bias.len()`.
pub fn image_to_tokens_add(
    path: KernelPath,
    image: &[f32],
    dim: usize,
    tokens: TokenSide<'_>,
    residual: &mut [f32],
) {
    path.assert_available();
    let TokenSide {
        query_keys,
        score_bias,
        group,
        value_out,
        out_bias,
    } = tokens;
    let (columns, out_dim) = (score_bias.len(), out_bias.len());
    assert!(
        dim > 0 && group > 0 && out_dim > 0 && columns % group == 0,
        "image_to_tokens_add: sizes"
    );
    assert_eq!(image.len() % dim, 0, "image_to_tokens_add: image size");
    let pixels = image.len() / dim;
    assert_eq!(
        query_keys.len(),
        dim * columns,
        "image_to_tokens_add: query keys"
    );
    assert_eq!(
        value_out.len(),
        columns * out_dim,
        "image_to_tokens_add: values"
    );
    assert_eq!(
        residual.len(),
        pixels * out_dim,
        "image_to_tokens_add: residual"
    );
    residual
        .par_chunks_mut(PIXELS_PER_TASK * out_dim)
        .zip(image.par_chunks(PIXELS_PER_TASK * dim))
        .for_each(|(residual, image)| {
            let rows = image.len() / dim;
            let mut scores = vec![0.0f32; rows * columns];
            matmul_serial(
                &mut scores,
                Matrix::row_major(image, rows, dim),
                Matrix::row_major(query_keys, dim, columns),
                false,
            );
            path.run(
                #[inline(always)]
                || {
                    softmax_groups(&mut scores, score_bias, group);
                    for row in residual.chunks_exact_mut(out_dim) {
                        for (r, &b) in row.iter_mut().zip(out_bias) {
                            *r += b;
                        }
                    }
                },
            );
            matmul_serial(
                residual,
                Matrix::row_major(&scores, rows, columns),
                Matrix::row_major(value_out, columns, out_dim),
                true,
            );
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{softmax_weighted_sum as attend, test_values as pseudo_random};

    fn dot(a: &[f32], b: impl Iterator<Item = f32>) -> f64 {
        a.iter().zip(b).map(|(&a, b)| a as f64 * b as f64).sum()
    }

    fn assert_close(got: &[f32], expected: &[f64], tolerance: f64, what: &str) {
        assert_eq!(got.len(), expected.len(), "{what}: length");
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!((*g as f64 - e).abs() < tolerance, "{what}[{i}]: {g} vs {e}");
        }
    }

    #[test]
    fn tokens_to_image_matches_a_direct_evaluation() {
        let (rows, pixels, dim, value_dim) = (6, 300, 12, 5);
        // Scaled up so that the softmax is far from uniform.
        let queries: Vec<f32> = pseudo_random(rows * dim, 1)
            .iter()
            .map(|v| 3.0 * v)
            .collect();
        let keys = pseudo_random(pixels * dim, 2);
        let values = pseudo_random(pixels * value_dim, 3);
        let value_rows: Vec<&[f32]> = values.chunks_exact(value_dim).collect();
        let expected: Vec<f64> = queries
            .chunks_exact(dim)
            .flat_map(|q| {
                let scores: Vec<f64> = keys
                    .chunks_exact(dim)
                    .map(|k| dot(q, k.iter().copied()))
                    .collect();
                attend(&scores, &value_rows)
            })
            .collect();
        for path in KernelPath::available() {
            let out = tokens_to_image(path, &queries, &keys, &values, dim, value_dim);
            assert_close(&out, &expected, 1e-5, &format!("{path:?}"));
        }
    }

    #[test]
    fn image_to_tokens_add_matches_a_direct_evaluation() {
        // 300 pixels: two full bands and a partial one; 3 heads of 7 tokens.
        let (pixels, dim, heads, group, out_dim) = (300, 10, 3, 7, 9);
        let columns = heads * group;
        let image: Vec<f32> = pseudo_random(pixels * dim, 4)
            .iter()
            .map(|v| 2.0 * v)
            .collect();
        let query_keys = pseudo_random(dim * columns, 5);
        let score_bias = pseudo_random(columns, 6);
        let value_out = pseudo_random(columns * out_dim, 7);
        let out_bias = pseudo_random(out_dim, 8);
        let residual = pseudo_random(pixels * out_dim, 9);
        let mut expected = Vec::new();
        for (p, pixel) in image.chunks_exact(dim).enumerate() {
            let mut row: Vec<f64> = (0..out_dim)
                .map(|c| residual[p * out_dim + c] as f64 + out_bias[c] as f64)
                .collect();
            for head in 0..heads {
                let token_columns = head * group..(head + 1) * group;
                let scores: Vec<f64> = token_columns
                    .clone()
                    .map(|j| {
                        let column = (0..dim).map(|d| query_keys[d * columns + j]);
                        dot(pixel, column) + score_bias[j] as f64
                    })
                    .collect();
                let values: Vec<&[f32]> = token_columns
                    .map(|j| &value_out[j * out_dim..][..out_dim])
                    .collect();
                for (r, v) in row.iter_mut().zip(attend(&scores, &values)) {
                    *r += v;
                }
            }
            expected.extend(row);
        }
        let tokens = TokenSide {
            query_keys: &query_keys,
            score_bias: &score_bias,
            group,
            value_out: &value_out,
            out_bias: &out_bias,
        };
        for path in KernelPath::available() {
            let mut out = residual.clone();
            image_to_tokens_add(path, &image, dim, tokens, &mut out);
            assert_close(&out, &expected, 1e-5, &format!("{path:?}"));
        }
    }
}
