//! Direct 3x3x3 convolution (stride 1, padding 1) on the padded grid, forward and both gradients.
//!
//! On the padded grid every output point is a sum of 27 shifted input rows, so one kernel,
//! [`correlate`], vectorised along the row, computes the forward pass and, with the weights
//! flipped and transposed, the input gradient. The weight gradient is a dot product of an output
//! gradient row with a shifted input row, per tap ([`weight_gradient`]). Neither copies the 27
//! shifted views that im2col builds, which is where the generic path spends its time.
//!
//! The kernels need AVX-512F; callers check [`supported`] and use another path where it is false.

use crate::grid::PaddedGrid;
use rayon::prelude::*;

/// Output channels computed together by one tile; output rows are padded to a multiple of it.
pub const OUT_BLOCK: usize = 4;
/// Input channels accumulated together by one weight-gradient tile.
const IN_BLOCK: usize = 4;
/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;
/// Registers of consecutive points per tile: 4 x 5 accumulators fit the 32 registers with room
/// for the loaded inputs.
const TILE_VECTORS: usize = 5;
const TILE: usize = LANES * TILE_VECTORS;
/// Points one parallel job covers: enough work to amortise scheduling, small enough that the rows
/// it touches stay in L2.
const CHUNK: usize = TILE * 16;
const TAPS: usize = 27;

const _: () = assert!(TILE <= crate::grid::ROW_SLACK);

/// Whether this CPU runs these kernels.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `channels` rounded up to a multiple of [`OUT_BLOCK`].
pub fn padded_channels(channels: usize) -> usize {
    channels.div_ceil(OUT_BLOCK) * OUT_BLOCK
}

/// PyTorch weights `[out][in][27]` as the forward kernel reads them: out rows padded with zeros
/// to [`padded_channels`].
pub fn forward_weights(weights: &[f32], out_channels: usize, in_channels: usize) -> Vec<f32> {
    assert_eq!(weights.len(), out_channels * in_channels * TAPS);
    let mut prepared = weights.to_vec();
    prepared.resize(padded_channels(out_channels) * in_channels * TAPS, 0.0);
    prepared
}

/// PyTorch weights `[out][in][27]` as the input-gradient kernel reads them: `[in][out][27]`
/// with the taps reversed (the transposed convolution), in rows padded to [`padded_channels`],
/// out columns padded to `out_columns`.
pub fn input_gradient_weights(
    weights: &[f32],
    out_channels: usize,
    in_channels: usize,
    out_columns: usize,
) -> Vec<f32> {
    assert_eq!(weights.len(), out_channels * in_channels * TAPS);
    let mut prepared = vec![0.0; padded_channels(in_channels) * out_columns * TAPS];
    for o in 0..out_channels {
        for i in 0..in_channels {
            for t in 0..TAPS {
                prepared[(i * out_columns + o) * TAPS + (TAPS - 1 - t)] =
                    weights[(o * in_channels + i) * TAPS + t];
            }
        }
    }
    prepared
}

/// Correlates `input` (`items` x `in_rows` grid rows) with `weights` (`[out_rows][in_rows][27]`,
/// `out_rows` a multiple of [`OUT_BLOCK`]): the result, `items` x `out_rows` grid rows, holds at
/// every interior point `sum_i sum_t weights[o][i][t] * input[i][p + tap_t]`; other points are
/// unspecified. Panics if [`supported`] is false.
pub fn correlate(
    grid: &PaddedGrid,
    input: &[f32],
    items: usize,
    in_rows: usize,
    weights: &[f32],
    out_rows: usize,
) -> Vec<f32> {
    assert!(supported(), "correlate needs AVX-512F");
    assert_eq!(out_rows % OUT_BLOCK, 0, "correlate: out rows not padded");
    let row_len = grid.row_len();
    assert_eq!(
        input.len(),
        items * in_rows * row_len,
        "correlate: input size"
    );
    assert_eq!(
        weights.len(),
        out_rows * in_rows * TAPS,
        "correlate: weights size"
    );
    let taps = grid.taps();
    let chunks = grid.span().div_ceil(CHUNK);
    let mut output = vec![0.0f32; items * out_rows * row_len];
    let output_ptr = SharedMut(output.as_mut_ptr());
    (0..items * chunks).into_par_iter().for_each(|job| {
        let (item, chunk) = (job / chunks, job % chunks);
        let start = grid.first() + chunk * CHUNK;
        let len = (grid.span() - chunk * CHUNK).min(CHUNK);
        let item_input = &input[item * in_rows * row_len..][..in_rows * row_len];
        // SAFETY: AVX-512F was checked above; jobs write disjoint point ranges of the output,
        // all inside its rows (a tile overruns the span by less than ROW_SLACK), and read the
        // input within `first` of the span.
        unsafe {
            let item_output = output_ptr.get().add(item * out_rows * row_len);
            #[cfg(target_arch = "x86_64")]
            avx512::correlate_chunk(
                item_input,
                in_rows,
                row_len,
                weights,
                out_rows,
                &taps,
                start,
                len,
                item_output,
            );
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (item_input, item_output, start, len, &taps);
        }
    });
    output
}

/// The weight gradient `[out][in][27]`, `sum_p output_gradient[o][p] * input[i][p + tap_t]`
/// over every item and interior point. `input` has `in_rows` grid rows per item,
/// `output_gradient` `out_rows` (a multiple of [`OUT_BLOCK`]), zero outside the interior; the
/// result has `out_channels <= out_rows` rows. Panics if [`supported`] is false.
pub fn weight_gradient(
    grid: &PaddedGrid,
    input: &[f32],
    in_rows: usize,
    output_gradient: &[f32],
    out_rows: usize,
    out_channels: usize,
    items: usize,
) -> Vec<f32> {
    assert!(supported(), "weight_gradient needs AVX-512F");
    assert_eq!(
        out_rows % OUT_BLOCK,
        0,
        "weight_gradient: out rows not padded"
    );
    let row_len = grid.row_len();
    assert_eq!(
        input.len(),
        items * in_rows * row_len,
        "weight_gradient: input size"
    );
    assert_eq!(
        output_gradient.len(),
        items * out_rows * row_len,
        "weight_gradient: gradient size"
    );
    let taps = grid.taps();
    let chunks = grid.span().div_ceil(CHUNK);
    let size = out_rows * in_rows * TAPS;
    // One partial sum per job, added in job order: the result must not depend on how rayon
    // split the work, or a resumed training would not reproduce an uninterrupted one.
    let partials: Vec<Vec<f32>> = (0..items * chunks)
        .into_par_iter()
        .map(|job| {
            let mut partial = vec![0.0f32; size];
            let (item, chunk) = (job / chunks, job % chunks);
            let start = grid.first() + chunk * CHUNK;
            // Whole registers: the points past the span have a zero gradient.
            let len = (grid.span() - chunk * CHUNK)
                .min(CHUNK)
                .next_multiple_of(LANES);
            // SAFETY: AVX-512F was checked above; reads stay inside the rows because
            // `start + len + first` is below the row length.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                avx512::weight_gradient_chunk(
                    &input[item * in_rows * row_len..][..in_rows * row_len],
                    in_rows,
                    &output_gradient[item * out_rows * row_len..][..out_rows * row_len],
                    out_rows,
                    row_len,
                    &taps,
                    start,
                    len,
                    &mut partial,
                );
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (item, start, len, &taps);
            partial
        })
        .collect();
    let mut total = vec![0.0f32; size];
    for partial in &partials {
        total.iter_mut().zip(partial).for_each(|(t, p)| *t += p);
    }
    total[..out_channels * in_rows * TAPS].to_vec()
}

/// A raw output pointer shared by jobs that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: only used where the jobs' writes are disjoint (see `correlate`).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
impl SharedMut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{IN_BLOCK, LANES, OUT_BLOCK, TAPS, TILE, TILE_VECTORS};
    use std::arch::x86_64::*;

    /// One chunk of points for every output row of one item.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn correlate_chunk(
        input: &[f32],
        in_rows: usize,
        row_len: usize,
        weights: &[f32],
        out_rows: usize,
        taps: &[isize; TAPS],
        start: usize,
        len: usize,
        output: *mut f32,
    ) {
        let mut point = start;
        while point < start + len {
            for block in (0..out_rows).step_by(OUT_BLOCK) {
                unsafe {
                    correlate_tile(
                        input.as_ptr().add(point),
                        in_rows,
                        row_len,
                        weights.as_ptr().add(block * in_rows * TAPS),
                        in_rows * TAPS,
                        taps,
                        output.add(block * row_len + point),
                    );
                }
            }
            point += TILE;
        }
    }

    /// `OUT_BLOCK` output rows x `TILE` points, accumulated in registers over every input row and
    /// tap: each input vector loaded feeds `OUT_BLOCK` multiply-adds.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn correlate_tile(
        input: *const f32,
        in_rows: usize,
        row_len: usize,
        weights: *const f32,
        weights_per_out: usize,
        taps: &[isize; TAPS],
        output: *mut f32,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); TILE_VECTORS]; OUT_BLOCK];
            for i in 0..in_rows {
                let row = input.add(i * row_len);
                let row_weights = weights.add(i * TAPS);
                for (t, &tap) in taps.iter().enumerate() {
                    let source = row.offset(tap);
                    let mut x = [_mm512_setzero_ps(); TILE_VECTORS];
                    for (v, x) in x.iter_mut().enumerate() {
                        *x = _mm512_loadu_ps(source.add(v * LANES));
                    }
                    for (o, acc) in acc.iter_mut().enumerate() {
                        let w = _mm512_set1_ps(*row_weights.add(o * weights_per_out + t));
                        for (acc, x) in acc.iter_mut().zip(&x) {
                            *acc = _mm512_fmadd_ps(w, *x, *acc);
                        }
                    }
                }
            }
            for (o, acc) in acc.iter().enumerate() {
                for (v, acc) in acc.iter().enumerate() {
                    _mm512_storeu_ps(output.add(o * row_len + v * LANES), *acc);
                }
            }
        }
    }

    /// Adds one chunk's contribution to every weight-gradient entry.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_gradient_chunk(
        input: &[f32],
        in_rows: usize,
        output_gradient: &[f32],
        out_rows: usize,
        row_len: usize,
        taps: &[isize; TAPS],
        start: usize,
        len: usize,
        partial: &mut [f32],
    ) {
        for (t, &tap) in taps.iter().enumerate() {
            for o in (0..out_rows).step_by(OUT_BLOCK) {
                let gradient = unsafe { output_gradient.as_ptr().add(o * row_len + start) };
                let mut i = 0;
                while i < in_rows {
                    let source = unsafe { input.as_ptr().add(i * row_len + start).offset(tap) };
                    let sums = &mut |rows: usize, sums: &[[f32; IN_BLOCK]; OUT_BLOCK]| {
                        for (oo, sums) in sums.iter().enumerate() {
                            for (ii, sum) in sums.iter().take(rows).enumerate() {
                                partial[((o + oo) * in_rows + i + ii) * TAPS + t] += sum;
                            }
                        }
                    };
                    let rows = (in_rows - i).min(IN_BLOCK);
                    let block = unsafe {
                        match rows {
                            4 => weight_tile::<4>(gradient, source, row_len, len),
                            3 => weight_tile::<3>(gradient, source, row_len, len),
                            2 => weight_tile::<2>(gradient, source, row_len, len),
                            _ => weight_tile::<1>(gradient, source, row_len, len),
                        }
                    };
                    sums(rows, &block);
                    i += rows;
                }
            }
        }
    }

    /// Dot products of `OUT_BLOCK` gradient rows with `ROWS` shifted input rows over `len`
    /// points (a multiple of `LANES`).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn weight_tile<const ROWS: usize>(
        gradient: *const f32,
        input: *const f32,
        row_len: usize,
        len: usize,
    ) -> [[f32; IN_BLOCK]; OUT_BLOCK] {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); ROWS]; OUT_BLOCK];
            let mut point = 0;
            while point < len {
                let mut x = [_mm512_setzero_ps(); ROWS];
                for (i, x) in x.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(input.add(i * row_len + point));
                }
                for (o, acc) in acc.iter_mut().enumerate() {
                    let g = _mm512_loadu_ps(gradient.add(o * row_len + point));
                    for (acc, x) in acc.iter_mut().zip(&x) {
                        *acc = _mm512_fmadd_ps(g, *x, *acc);
                    }
                }
                point += LANES;
            }
            let mut sums = [[0.0; IN_BLOCK]; OUT_BLOCK];
            for (sums, acc) in sums.iter_mut().zip(&acc) {
                for (sum, acc) in sums.iter_mut().zip(acc) {
                    *sum = _mm512_reduce_add_ps(*acc);
                }
            }
            sums
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition: zero padding 1, cross-correlation, PyTorch weight order.
    fn reference_conv(
        x: &[f32],
        w: &[f32],
        items: usize,
        cin: usize,
        cout: usize,
        (d, h, wd): (usize, usize, usize),
    ) -> Vec<f32> {
        let mut y = vec![0.0f32; items * cout * d * h * wd];
        for n in 0..items {
            for o in 0..cout {
                for z in 0..d {
                    for r in 0..h {
                        for c in 0..wd {
                            let mut s = 0.0f64;
                            for i in 0..cin {
                                for t in 0..27 {
                                    let (dz, dr, dc) = (t / 9, (t / 3) % 3, t % 3);
                                    let (zz, rr, cc) = (
                                        z as isize + dz as isize - 1,
                                        r as isize + dr as isize - 1,
                                        c as isize + dc as isize - 1,
                                    );
                                    if zz < 0
                                        || rr < 0
                                        || cc < 0
                                        || zz >= d as isize
                                        || rr >= h as isize
                                        || cc >= wd as isize
                                    {
                                        continue;
                                    }
                                    let xi = (((n * cin + i) * d + zz as usize) * h + rr as usize)
                                        * wd
                                        + cc as usize;
                                    s += x[xi] as f64 * w[(o * cin + i) * 27 + t] as f64;
                                }
                            }
                            y[(((n * cout + o) * d + z) * h + r) * wd + c] = s as f32;
                        }
                    }
                }
            }
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn forward_matches_the_definition() {
        if !supported() {
            eprintln!("skipped: no AVX-512F on this CPU");
            return;
        }
        let (items, cin, cout, dims) = (2, 3, 5, (4, 5, 7));
        let grid = PaddedGrid::new(dims.0, dims.1, dims.2);
        let x = values(items * cin * grid.voxels(), 1);
        let w = values(cout * cin * 27, 2);
        let rows = padded_channels(cout);
        let out = correlate(
            &grid,
            &grid.pad(&x, items, cin, cin),
            items,
            cin,
            &forward_weights(&w, cout, cin),
            rows,
        );
        let got = grid.extract(&out, items, rows, cout, None);
        let want = reference_conv(&x, &w, items, cin, cout, dims);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
    }

    /// Both gradients are adjoints of the forward map: <conv(x), g> = <x, dX(g)> = <w, dW(x, g)>.
    #[test]
    fn gradients_are_the_adjoints_of_the_forward_pass() {
        if !supported() {
            eprintln!("skipped: no AVX-512F on this CPU");
            return;
        }
        let (items, cin, cout, dims) = (3, 6, 9, (3, 6, 5));
        let grid = PaddedGrid::new(dims.0, dims.1, dims.2);
        let x = values(items * cin * grid.voxels(), 3);
        let w = values(cout * cin * 27, 4);
        let g = values(items * cout * grid.voxels(), 5);
        let y = reference_conv(&x, &w, items, cin, cout, dims);
        let forward: f64 = y.iter().zip(&g).map(|(a, b)| *a as f64 * *b as f64).sum();

        let out_rows = padded_channels(cout);
        let in_rows = padded_channels(cin);
        let padded_gradient = grid.pad(&g, items, cout, out_rows);
        let dx_grid = correlate(
            &grid,
            &padded_gradient,
            items,
            out_rows,
            &input_gradient_weights(&w, cout, cin, out_rows),
            in_rows,
        );
        let dx = grid.extract(&dx_grid, items, in_rows, cin, None);
        let through_input: f64 = dx.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();

        let dw = weight_gradient(
            &grid,
            &grid.pad(&x, items, cin, cin),
            cin,
            &padded_gradient,
            out_rows,
            cout,
            items,
        );
        assert_eq!(dw.len(), w.len());
        let through_weights: f64 = dw.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (forward - through_input).abs() < 1e-3 * forward.abs().max(1.0),
            "{forward} vs {through_input}"
        );
        assert!(
            (forward - through_weights).abs() < 1e-3 * forward.abs().max(1.0),
            "{forward} vs {through_weights}"
        );
    }
}
