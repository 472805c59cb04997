//! An exact shortcut for attention over a token grid zero-padded to one larger window (the
//! 8³ grid padded to 14³ in `vit_b_ori`'s window blocks).
//!
//! The reference attends over all S³ tokens of the padded window, padding included. After
//! norm1 a padded token is exactly zero, so its query, key and value are the qkv biases
//! b_q, b_k, b_v, the same for every padded token. For a real query (a,b,c) and a padded key
//! (d,e,f) the logit is therefore
//!   scale·q·b_k + A[f] + B[d,f] + C[e,f]
//! with A[f] = Q[a,b,c]·Td[a−f+S−1], B[d,f] = Q[a,b,d]·Th[b−f+S−1] and
//! C[e,f] = Q[a,b,e]·Tw[e−f+S−1] (see `rel_pos`; Q at a padded position is b_q). Summed over
//! the padded keys, the softmax numerator gets M·b_v and the denominator M, where
//!   M = exp(scale·q·b_k) · Σ_f e^{A[f]} · P[f],
//!   P[f] = Σ_{(d,e) with d≥G or e≥G or f≥G} e^{B[d,f]} e^{C[e,f]}
//!        = ΣB_all·ΣC_pad + ΣB_pad·ΣC_real + [f≥G]·ΣB_real·ΣC_real.
//! So the padded keys act as one extra key with logit ln M and value b_v, next to the G³ real
//! keys, and padded queries are never needed except through b_q inside B and C. The sums
//! are taken after subtracting per-f maxima, so nothing overflows and nothing cancels.

use super::rel_pos::RelPosTables;
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};

/// The per-head qkv biases, `[heads, head_dim]` each.
pub(crate) struct QkvBias {
    pub q: Tensor<2>,
    pub k: Tensor<2>,
    pub v: Tensor<2>,
}

/// Attention output `[B·heads, G³, hd]` of the real tokens of a grid padded to one window of
/// side `s`, given the real tokens' q, k, v `[B·heads, G³, hd]` (q unscaled).
pub(crate) fn padded_window_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    bias: &QkvBias,
    tables: &RelPosTables,
    g: usize,
    s: usize,
) -> Tensor<3> {
    let [bh, n, hd] = q.dims();
    let heads = bias.q.dims()[0];
    let batch = bh / heads;
    let per_row = |t: &Tensor<2>| {
        t.clone()
            .unsqueeze::<3>()
            .repeat_dim(0, batch)
            .reshape([bh, 1, hd])
    };
    let (b_q, b_k, b_v) = (per_row(&bias.q), per_row(&bias.k), per_row(&bias.v));
    let scale = (hd as f64).powf(-0.5);

    // Queries at every position (a, b, x) with x < S along w; padded ones are b_q.
    let q_grid = q.clone().reshape([bh, g, g, g, hd]);
    let q_ext = Tensor::cat(
        vec![
            q_grid.clone(),
            b_q.clone()
                .reshape([bh, 1, 1, 1, hd])
                .expand([bh, g, g, s - g, hd]),
        ],
        3,
    );
    let (by_d, by_h, by_w) = tables.terms_for_padded_grid(q_grid, q_ext, g, s);
    // by_d: [BH, G, G, G, S] = A over (a,b,c; f); by_h, by_w: [BH, G, G, S, S] over (a,b,x; f).

    // Real keys: the ordinary logits plus the bias restricted to d, e, f < G.
    let real_bias = by_d
        .clone()
        .slice_dim(4, 0..g)
        .reshape([bh, g, g, g, 1, 1, g])
        + by_h
            .clone()
            .slice([0..bh, 0..g, 0..g, 0..g, 0..g])
            .reshape([bh, g, g, 1, g, 1, g])
        + by_w
            .clone()
            .slice([0..bh, 0..g, 0..g, 0..g, 0..g])
            .reshape([bh, g, g, 1, 1, g, g]);
    let real_logits = (q.clone() * scale).matmul(k.swap_dims(1, 2)) + real_bias.reshape([bh, n, n]);

    // Padded keys: ln M per real query.
    let log_p = log_pad_pair_mass(by_h, by_w, g, s); // [BH, G, G, 1, S] over (a, b; f)
    let a_plus = by_d + log_p; // [BH, G, G, G, S]
    let max = a_plus.clone().max_dim(4);
    let log_sum = (a_plus - max.clone()).exp().sum_dim(4).log() + max; // [BH, G, G, G, 1]
    let key_term = (q * scale).matmul(b_k.swap_dims(1, 2)); // [BH, G³, 1]
    let log_mass = key_term + log_sum.reshape([bh, n, 1]);

    let weights = softmax(Tensor::cat(vec![real_logits, log_mass], 2), 2);
    let real = weights.clone().slice_dim(2, 0..n);
    let pad = weights.slice_dim(2, n..n + 1);
    real.matmul(v) + pad * b_v
}

/// ln P[f] for every real (a, b): `[BH, G, G, 1, S]`, from B and C over (a, b, x; f).
fn log_pad_pair_mass(by_h: Tensor<5>, by_w: Tensor<5>, g: usize, s: usize) -> Tensor<5> {
    // Scaled sums over x < G (real), x ≥ G (padded) and all x, per (a, b, f).
    let sums = |t: Tensor<5>| {
        let max = t.clone().max_dim(3); // [BH, G, G, 1, S]
        let e = (t - max.clone()).exp();
        let real = e.clone().slice_dim(3, 0..g).sum_dim(3);
        let pad = e.slice_dim(3, g..s).sum_dim(3);
        (max, real, pad)
    };
    let (max_b, real_b, pad_b) = sums(by_h);
    let (max_c, real_c, pad_c) = sums(by_w);
    let all_b = real_b.clone() + pad_b.clone();
    let beyond: Vec<f32> = (0..s).map(|f| if f >= g { 1.0 } else { 0.0 }).collect();
    let beyond = Tensor::<5>::from_data(TensorData::new(beyond, [1, 1, 1, 1, s]), &max_b.device());
    let p = all_b * pad_c + pad_b * real_c.clone() + real_b * real_c * beyond;
    p.clamp_min(f32::MIN_POSITIVE).log() + max_b + max_c
}
