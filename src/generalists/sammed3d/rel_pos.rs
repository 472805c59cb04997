//! The decomposed relative-position bias exactly as SAM-Med3D computes (and was trained
//! with) — not the MViTv2 formula it was derived from.
//!
//! For a cubic block of side S, query (a,b,c), key (d,e,f) and the unscaled query Q of one
//! head, the reference's broadcasting adds
//!   Q[a,b,c]·Td[a−f+S−1] + Q[a,b,d]·Th[b−f+S−1] + Q[a,b,e]·Tw[e−f+S−1]
//! (its `rel_h`/`rel_w` terms land the query's w index on the key's d/h axes and the key
//! index on the key's w axis). The checkpoint's tables only make sense with this formula.

use crate::generalists::param_loader::ParamLoader;
use burn::tensor::{Int, Tensor, TensorData};

#[derive(Debug, Clone)]
pub(crate) struct RelPosTables {
    /// `R[i, :, j] = T[i − j + S − 1]`, i.e. (S, head_dim, S): ready to right-multiply queries.
    d: Tensor<3>,
    h: Tensor<3>,
    w: Tensor<3>,
}

impl RelPosTables {
    pub fn load(params: &mut ParamLoader, prefix: &str, size: usize, head_dim: usize) -> Self {
        let rows = 2 * size - 1;
        let mut expand = |axis: &str| {
            let table = params.tensor(&format!("{prefix}.rel_pos_{axis}"), [rows, head_dim]);
            expand_table(table, size)
        };
        let d = expand("d");
        let h = expand("h");
        let w = expand("w");
        Self { d, h, w }
    }

    /// The additive bias `[BH, S³, S³]` for queries `[BH, S³, head_dim]` (unscaled, tokens in
    /// (d, h, w) row-major order).
    pub fn bias(&self, q: Tensor<3>, s: usize) -> Tensor<3> {
        let [bh, n, hd] = q.dims();
        let q = q.reshape([bh, s, s, s, hd]);
        let table = |t: &Tensor<3>| t.clone().unsqueeze::<4>().expand([bh, s, hd, s]);
        // by_d[a,b,c,f] = Q[a,b,c]·Td[a−f+S−1]
        let by_d = q.clone().reshape([bh, s, s * s, hd]).matmul(table(&self.d));
        // by_h[a,b,x,f] = Q[a,b,x]·Th[b−f+S−1], computed with b outermost.
        let by_h = q
            .clone()
            .permute([0, 2, 1, 3, 4])
            .reshape([bh, s, s * s, hd])
            .matmul(table(&self.h))
            .reshape([bh, s, s, s, s])
            .permute([0, 2, 1, 3, 4]);
        // by_w[a,b,x,f] = Q[a,b,x]·Tw[x−f+S−1], computed with x outermost.
        let by_w = q
            .permute([0, 3, 1, 2, 4])
            .reshape([bh, s, s * s, hd])
            .matmul(table(&self.w))
            .reshape([bh, s, s, s, s])
            .permute([0, 2, 3, 1, 4]);
        let bias = by_d.reshape([bh, s, s, s, 1, 1, s])
            + by_h.reshape([bh, s, s, 1, s, 1, s])
            + by_w.reshape([bh, s, s, 1, 1, s, s]);
        bias.reshape([bh, n, n])
    }
}

impl RelPosTables {
    /// The three bias terms for the real queries `[BH, G, G, G, hd]` of a G³ grid padded to
    /// one window of side S, given the queries at every (a, b, x < S) position `q_ext`
    /// `[BH, G, G, S, hd]` (padded ones being b_q):
    /// A `[BH, G, G, G, S]` over (a, b, c; f), B and C `[BH, G, G, S, S]` over (a, b, x; f).
    pub fn terms_for_padded_grid(
        &self,
        q: Tensor<5>,
        q_ext: Tensor<5>,
        g: usize,
        s: usize,
    ) -> (Tensor<5>, Tensor<5>, Tensor<5>) {
        let [bh, _, _, _, hd] = q.dims();
        let rows = |t: &Tensor<3>, n: usize| {
            t.clone()
                .slice_dim(0, 0..n)
                .unsqueeze::<4>()
                .expand([bh, n, hd, s])
        };
        let by_d = q
            .reshape([bh, g, g * g, hd])
            .matmul(rows(&self.d, g))
            .reshape([bh, g, g, g, s]);
        let by_h = q_ext
            .clone()
            .permute([0, 2, 1, 3, 4])
            .reshape([bh, g, g * s, hd])
            .matmul(rows(&self.h, g))
            .reshape([bh, g, g, s, s])
            .permute([0, 2, 1, 3, 4]);
        let by_w = q_ext
            .permute([0, 3, 1, 2, 4])
            .reshape([bh, s, g * g, hd])
            .matmul(rows(&self.w, s))
            .reshape([bh, s, g, g, s])
            .permute([0, 2, 3, 1, 4]);
        (by_d, by_h, by_w)
    }
}

/// `[2S−1, hd]` → `[S, hd, S]` with `out[i, :, j] = table[i − j + S − 1]`.
fn expand_table(table: Tensor<2>, size: usize) -> Tensor<3> {
    let hd = table.dims()[1];
    let index: Vec<i64> = (0..size)
        .flat_map(|i| (0..size).map(move |j| (i + size - 1 - j) as i64))
        .collect();
    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [size * size]), &table.device());
    table
        .select(0, index)
        .reshape([size, size, hd])
        .swap_dims(1, 2)
}
