//! Direct 3x3x3 convolution (stride 1, padding 1) on the padded grid, forward and both gradients.
//!
//! On the padded grid every output point is a sum of 27 shifted input rows, so one kernel,
//! [`correlate`], vectorised along the row, computes the forward pass and, with the weights
//! flipped and transposed, the input gradient. The weight gradient is a dot product of an output
//! gradient row with a shifted input row, per tap ([`weight_gradient`]). Neither copies the 27
//! shifted views that im2col builds, which is where burn's own layers spend their time.
//!
//! The register tiles exist for each [`KernelPath`]: AVX-512F (5 x 16 points per output row),
//! AVX2 with FMA (3 x 8) and portable Rust (8 points, vectorised by the compiler). Every path
//! sums a point's products in the same order, input row by input row and tap by tap, and adds
//! the weight gradient's per-job partial sums in job order, so each path's results are
//! deterministic; AVX-512 and AVX2 fuse each multiply-add and agree bit for bit, the generic
//! path rounds the product first.

use crate::grid::PaddedGrid;
use crate::path::KernelPath;
use rayon::prelude::*;

/// Output channels computed together by one tile; output rows are padded to a multiple of it.
pub const OUT_BLOCK: usize = 4;
/// Points one parallel job covers: enough work to amortise scheduling, small enough that the rows
/// it touches stay in L2; a multiple of every path's widest tile (80, 24 and 8 points), so that
/// no tile crosses into another job's points.
const CHUNK: usize = 1200;
const TAPS: usize = 27;

/// The register shape of one path: `lanes` f32 per register, up to `vectors` registers of
/// consecutive points per output row, input rows per weight-gradient tile.
#[derive(Clone, Copy)]
struct Tiling {
    lanes: usize,
    vectors: usize,
    in_block: usize,
}

impl Tiling {
    fn of(path: KernelPath) -> Self {
        match path {
            // 4 x 5 accumulators fit the 32 registers with room for the loaded inputs; 4 x 4
            // weight-gradient sums leave room for 4 inputs and one gradient.
            KernelPath::Avx512 => Self {
                lanes: 16,
                vectors: 5,
                in_block: 4,
            },
            // 16 registers: 4 x 3 accumulators, 3 inputs and one broadcast weight.
            KernelPath::Avx2 => Self {
                lanes: 8,
                vectors: 3,
                in_block: 3,
            },
            // Small enough for 16 SSE registers, the x86-64 baseline the generic code is built
            // for.
            KernelPath::Generic => Self {
                lanes: generic::LANES,
                vectors: 1,
                in_block: generic::IN_BLOCK,
            },
        }
    }
}

const _: () = assert!(
    CHUNK.is_multiple_of(80) && CHUNK.is_multiple_of(24) && CHUNK.is_multiple_of(generic::LANES)
);
const _: () = assert!(80 <= crate::grid::ROW_SLACK);

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
/// `out_rows` = [`padded_channels`] of `channels`) on `path`: the result holds, for the first
/// `channels` output rows of every item in the contiguous layout, `sum_i sum_t
/// weights[o][i][t] * input[i][p + tap_t] + bias[o]` at every interior point `p`. Panics if the
/// CPU lacks `path`.
///
/// Each job correlates its points into a block of scratch rows that stays in cache and copies
/// their interior out, so no grid-sized output is ever allocated or read again.
#[allow(clippy::too_many_arguments)]
pub fn correlate(
    path: KernelPath,
    grid: &PaddedGrid,
    input: &[f32],
    items: usize,
    in_rows: usize,
    weights: &[f32],
    channels: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    path.assert_available();
    let out_rows = padded_channels(channels);
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
    if let Some(bias) = bias {
        assert_eq!(bias.len(), channels, "correlate: bias size");
    }
    let taps = grid.taps();
    let tiling = Tiling::of(path);
    let chunks = grid.span().div_ceil(CHUNK);
    let voxels = grid.voxels();
    let mut output = vec![0.0f32; items * channels * voxels];
    let output_ptr = SharedMut(output.as_mut_ptr());
    (0..items * chunks).into_par_iter().for_each(|job| {
        let (item, chunk) = (job / chunks, job % chunks);
        let start = grid.first() + chunk * CHUNK;
        let end = start + (grid.span() - chunk * CHUNK).min(CHUNK);
        let item_input = &input[item * in_rows * row_len..][..in_rows * row_len];
        let mut scratch = vec![0.0f32; out_rows * SCRATCH_ROW];
        let mut point = start;
        while point < end {
            // Full tiles, then the narrowest tile that covers the rest: on the small grids of
            // the deep layers a full tile would mostly compute points past the span.
            let vectors = (end - point).div_ceil(tiling.lanes).min(tiling.vectors);
            for block in (0..out_rows).step_by(OUT_BLOCK) {
                let tile = CorrelateTile {
                    // Pointer arithmetic from the item's slice: the taps reach before the point.
                    // SAFETY: `point` lies inside the item's rows.
                    input: unsafe { item_input.as_ptr().add(point) },
                    in_rows,
                    row_len,
                    weights: weights[block * in_rows * TAPS..].as_ptr(),
                    weights_per_out: in_rows * TAPS,
                    taps: &taps,
                    out_stride: SCRATCH_ROW,
                };
                let output = scratch[block * SCRATCH_ROW + point - start..].as_mut_ptr();
                // SAFETY: the CPU runs `path` (asserted above); the input is read within
                // `first` of the span and the row slack; the tile writes at most `CHUNK` plus
                // one register of points past the job's first point, inside its scratch rows.
                unsafe { tile.run(path, vectors, output) };
            }
            point += vectors * tiling.lanes;
        }
        for channel in 0..channels {
            let offset = bias.map_or(0.0, |bias| bias[channel]);
            let scratch = &scratch[channel * SCRATCH_ROW..][..SCRATCH_ROW];
            let volume = (item * channels + channel) * voxels;
            for (point, voxel, len) in grid.interior_runs(start, end) {
                let values = &scratch[point - start..][..len];
                // SAFETY: jobs cover disjoint point ranges, so their interior voxels (and the
                // writes here) are disjoint; `voxel + len` is at most `voxels`.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(output_ptr.get().add(volume + voxel), len)
                };
                for (out, &value) in out.iter_mut().zip(values) {
                    *out = value + offset;
                }
            }
        }
    });
    output
}

/// Points of one scratch row: a job's points plus the widest register a tile may overrun by.
const SCRATCH_ROW: usize = CHUNK + 16;

/// The operands of one forward tile: `OUT_BLOCK` output rows x `vectors` registers of points,
/// accumulated over every input row and tap, so that each input vector loaded feeds `OUT_BLOCK`
/// multiply-adds.
struct CorrelateTile<'a> {
    /// The tile's first point in the item's first input row.
    input: *const f32,
    in_rows: usize,
    row_len: usize,
    /// The block's first output row of weights `[in][27]`.
    weights: *const f32,
    weights_per_out: usize,
    taps: &'a [isize; TAPS],
    /// Points between consecutive output rows.
    out_stride: usize,
}

impl CorrelateTile<'_> {
    /// Writes the tile at `output` (the block's first output row, at the tile's first point;
    /// rows `out_stride` apart).
    ///
    /// # Safety
    /// The CPU runs `path`; every tap of every point read and every point written lies inside
    /// its buffer; `vectors` is at most the path's width.
    unsafe fn run(&self, path: KernelPath, vectors: usize, output: *mut f32) {
        unsafe {
            match path {
                #[cfg(target_arch = "x86_64")]
                KernelPath::Avx512 => match vectors {
                    5 => avx512::correlate_tile::<5>(self, output),
                    4 => avx512::correlate_tile::<4>(self, output),
                    3 => avx512::correlate_tile::<3>(self, output),
                    2 => avx512::correlate_tile::<2>(self, output),
                    _ => avx512::correlate_tile::<1>(self, output),
                },
                #[cfg(target_arch = "x86_64")]
                KernelPath::Avx2 => match vectors {
                    3 => avx2::correlate_tile::<3>(self, output),
                    2 => avx2::correlate_tile::<2>(self, output),
                    _ => avx2::correlate_tile::<1>(self, output),
                },
                _ => generic::correlate_tile(self, output),
            }
        }
    }
}

/// The weight gradient `[out][in][27]`, `sum_p output_gradient[o][p] * input[i][p + tap_t]`
/// over every item and interior point, on `path`. `input` has `in_rows` grid rows per item,
/// `output_gradient` `out_rows` (a multiple of [`OUT_BLOCK`]), zero outside the interior; the
/// result has `out_channels <= out_rows` rows. Panics if the CPU lacks `path`.
#[allow(clippy::too_many_arguments)]
pub fn weight_gradient(
    path: KernelPath,
    grid: &PaddedGrid,
    input: &[f32],
    in_rows: usize,
    output_gradient: &[f32],
    out_rows: usize,
    out_channels: usize,
    items: usize,
) -> Vec<f32> {
    path.assert_available();
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
    let chunks = grid.span().div_ceil(CHUNK);
    let size = out_rows * in_rows * TAPS;
    let sums = WeightSums {
        path,
        grid,
        input,
        in_rows,
        output_gradient,
        out_rows,
        lanes: Tiling::of(path).lanes,
        in_block: Tiling::of(path).in_block,
    };
    let mut total = vec![0.0f32; size];
    if chunks == 1 {
        // A small grid (the deep layers): one job per block of output rows, each summing every
        // item in its registers and owning its rows of the result.
        total
            .par_chunks_mut(OUT_BLOCK * in_rows * TAPS)
            .enumerate()
            .for_each(|(block, rows)| sums.add(rows, block * OUT_BLOCK, 0..items, 0));
    } else {
        // One partial sum per item and chunk, added in job order: the result must not depend
        // on how rayon split the work, or a resumed training would not reproduce an
        // uninterrupted one.
        let partials: Vec<Vec<f32>> = (0..items * chunks)
            .into_par_iter()
            .map(|job| {
                let mut partial = vec![0.0f32; size];
                let (item, chunk) = (job / chunks, job % chunks);
                for block in (0..out_rows).step_by(OUT_BLOCK) {
                    let rows = &mut partial[block * in_rows * TAPS..][..OUT_BLOCK * in_rows * TAPS];
                    sums.add(rows, block, item..item + 1, chunk);
                }
                partial
            })
            .collect();
        for partial in &partials {
            total.iter_mut().zip(partial).for_each(|(t, p)| *t += p);
        }
    }
    total.truncate(out_channels * in_rows * TAPS);
    total
}

/// The operands of [`weight_gradient`] and the shape of its path's tiles.
struct WeightSums<'a> {
    path: KernelPath,
    grid: &'a PaddedGrid,
    input: &'a [f32],
    in_rows: usize,
    output_gradient: &'a [f32],
    out_rows: usize,
    lanes: usize,
    in_block: usize,
}

impl WeightSums<'_> {
    /// Adds to `sums` (`[OUT_BLOCK][in_rows][27]`) the contributions of the points of `chunk`,
    /// for output rows `block..block + OUT_BLOCK` and the items of `items`.
    fn add(&self, sums: &mut [f32], block: usize, items: std::ops::Range<usize>, chunk: usize) {
        let (grid, in_rows) = (self.grid, self.in_rows);
        let row_len = grid.row_len();
        let start = grid.first() + chunk * CHUNK;
        // Whole registers: the points past the span have a zero gradient.
        let len = (grid.span() - chunk * CHUNK)
            .min(CHUNK)
            .next_multiple_of(self.lanes);
        let input = &self.input[items.start * in_rows * row_len..];
        let gradient = &self.output_gradient[(items.start * self.out_rows + block) * row_len..];
        for (t, &tap) in grid.taps().iter().enumerate() {
            let mut i = 0;
            while i < in_rows {
                let rows = (in_rows - i).min(self.in_block);
                let tile = WeightTile {
                    gradient: gradient[start..].as_ptr(),
                    // SAFETY: `start >= first >= |tap|`, so the point lies inside the item's
                    // rows.
                    input: unsafe { input.as_ptr().add(i * row_len + start).offset(tap) },
                    row_len,
                    len,
                    items: items.len(),
                    input_item_stride: in_rows * row_len,
                    gradient_item_stride: self.out_rows * row_len,
                };
                // SAFETY: the CPU runs the path (asserted by `weight_gradient`); reads stay
                // inside the items' rows because `start + len + first` is below the row length.
                let block_sums = unsafe { tile.run(self.path, rows) };
                for (oo, block_sums) in block_sums.iter().enumerate() {
                    for (ii, sum) in block_sums.iter().take(rows).enumerate() {
                        sums[(oo * in_rows + i + ii) * TAPS + t] += sum;
                    }
                }
                i += rows;
            }
        }
    }
}

/// The widest input block of any path's weight-gradient tile.
const MAX_IN_BLOCK: usize = 4;

/// The operands of one weight-gradient tile: dot products of `OUT_BLOCK` gradient rows with up
/// to `MAX_IN_BLOCK` shifted input rows over `len` points (a multiple of the path's lanes) of
/// `items` items, added item by item.
struct WeightTile {
    gradient: *const f32,
    input: *const f32,
    row_len: usize,
    len: usize,
    items: usize,
    input_item_stride: usize,
    gradient_item_stride: usize,
}

impl WeightTile {
    /// `sums[o][i]` for the first `rows` input rows.
    ///
    /// # Safety
    /// The CPU runs `path`; `rows` rows of `len` points from both pointers lie inside their
    /// buffers; `rows` is at most the path's input block.
    unsafe fn run(&self, path: KernelPath, rows: usize) -> [[f32; MAX_IN_BLOCK]; OUT_BLOCK] {
        unsafe {
            match path {
                #[cfg(target_arch = "x86_64")]
                KernelPath::Avx512 => match rows {
                    4 => avx512::weight_tile::<4>(self),
                    3 => avx512::weight_tile::<3>(self),
                    2 => avx512::weight_tile::<2>(self),
                    _ => avx512::weight_tile::<1>(self),
                },
                #[cfg(target_arch = "x86_64")]
                KernelPath::Avx2 => match rows {
                    3 => avx2::weight_tile::<3>(self),
                    2 => avx2::weight_tile::<2>(self),
                    _ => avx2::weight_tile::<1>(self),
                },
                _ => match rows {
                    2 => generic::weight_tile::<2>(self),
                    _ => generic::weight_tile::<1>(self),
                },
            }
        }
    }
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

/// Generates a path's two register tiles from its intrinsics; the tiles differ only in
/// register width.
#[cfg(target_arch = "x86_64")]
macro_rules! register_tiles {
    ($features:literal, $lanes:literal, $vector:ty, $zero:ident, $load:ident, $store:ident,
     $broadcast:ident, $fmadd:ident, $sum:path) => {
        use super::{CorrelateTile, MAX_IN_BLOCK, OUT_BLOCK, WeightTile};
        use std::arch::x86_64::*;

        const LANES: usize = $lanes;

        #[inline]
        #[target_feature(enable = $features)]
        pub(super) unsafe fn correlate_tile<const V: usize>(
            tile: &CorrelateTile,
            output: *mut f32,
        ) {
            unsafe {
                let mut acc: [[$vector; V]; OUT_BLOCK] = [[$zero(); V]; OUT_BLOCK];
                for i in 0..tile.in_rows {
                    let row = tile.input.add(i * tile.row_len);
                    let row_weights = tile.weights.add(i * super::TAPS);
                    for (t, &tap) in tile.taps.iter().enumerate() {
                        let source = row.offset(tap);
                        let mut x: [$vector; V] = [$zero(); V];
                        for (v, x) in x.iter_mut().enumerate() {
                            *x = $load(source.add(v * LANES));
                        }
                        for (o, acc) in acc.iter_mut().enumerate() {
                            let w = $broadcast(*row_weights.add(o * tile.weights_per_out + t));
                            for (acc, x) in acc.iter_mut().zip(&x) {
                                *acc = $fmadd(w, *x, *acc);
                            }
                        }
                    }
                }
                for (o, acc) in acc.iter().enumerate() {
                    for (v, acc) in acc.iter().enumerate() {
                        $store(output.add(o * tile.out_stride + v * LANES), *acc);
                    }
                }
            }
        }

        #[inline]
        #[target_feature(enable = $features)]
        pub(super) unsafe fn weight_tile<const ROWS: usize>(
            tile: &WeightTile,
        ) -> [[f32; MAX_IN_BLOCK]; OUT_BLOCK] {
            unsafe {
                let mut acc: [[$vector; ROWS]; OUT_BLOCK] = [[$zero(); ROWS]; OUT_BLOCK];
                for item in 0..tile.items {
                    let input = tile.input.add(item * tile.input_item_stride);
                    let gradient = tile.gradient.add(item * tile.gradient_item_stride);
                    let mut point = 0;
                    while point < tile.len {
                        let mut x: [$vector; ROWS] = [$zero(); ROWS];
                        for (i, x) in x.iter_mut().enumerate() {
                            *x = $load(input.add(i * tile.row_len + point));
                        }
                        for (o, acc) in acc.iter_mut().enumerate() {
                            let g = $load(gradient.add(o * tile.row_len + point));
                            for (acc, x) in acc.iter_mut().zip(&x) {
                                *acc = $fmadd(g, *x, *acc);
                            }
                        }
                        point += LANES;
                    }
                }
                let mut sums = [[0.0; MAX_IN_BLOCK]; OUT_BLOCK];
                for (sums, acc) in sums.iter_mut().zip(&acc) {
                    for (sum, acc) in sums.iter_mut().zip(acc) {
                        *sum = $sum(*acc);
                    }
                }
                sums
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    register_tiles!(
        "avx512f",
        16,
        __m512,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_reduce_add_ps
    );
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    register_tiles!(
        "avx2,fma",
        8,
        __m256,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        horizontal_sum
    );

    /// The sum of the 8 lanes, in a fixed order.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(v: __m256) -> f32 {
        let halves = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs)))
    }
}

/// Plain Rust over fixed-size arrays, which the compiler turns into the build target's vectors
/// (SSE2 on x86-64, NEON on aarch64).
mod generic {
    use super::{CorrelateTile, MAX_IN_BLOCK, OUT_BLOCK, TAPS, WeightTile};

    pub(super) const LANES: usize = 8;
    pub(super) const IN_BLOCK: usize = 2;

    /// # Safety
    /// As [`CorrelateTile::run`]; `LANES` points of every tap lie inside the input.
    pub(super) unsafe fn correlate_tile(tile: &CorrelateTile, output: *mut f32) {
        let mut acc = [[0.0f32; LANES]; OUT_BLOCK];
        for i in 0..tile.in_rows {
            // SAFETY: the caller guarantees every tap's points lie inside the input.
            let row = unsafe { tile.input.add(i * tile.row_len) };
            for (t, &tap) in tile.taps.iter().enumerate() {
                // SAFETY: as above, for the tap's points and the block's weights.
                let x: &[f32; LANES] = unsafe { &*row.offset(tap).cast() };
                for (o, acc) in acc.iter_mut().enumerate() {
                    let w = unsafe { *tile.weights.add(o * tile.weights_per_out + i * TAPS + t) };
                    for (acc, x) in acc.iter_mut().zip(x) {
                        *acc += w * x;
                    }
                }
            }
        }
        for (o, acc) in acc.iter().enumerate() {
            // SAFETY: the caller guarantees the tile's points lie inside the output.
            unsafe {
                std::ptr::copy_nonoverlapping(acc.as_ptr(), output.add(o * tile.out_stride), LANES)
            };
        }
    }

    /// # Safety
    /// As [`WeightTile::run`].
    pub(super) unsafe fn weight_tile<const ROWS: usize>(
        tile: &WeightTile,
    ) -> [[f32; MAX_IN_BLOCK]; OUT_BLOCK] {
        let mut acc = [[[0.0f32; LANES]; ROWS]; OUT_BLOCK];
        for item in 0..tile.items {
            // SAFETY: the caller guarantees `ROWS` input rows and `OUT_BLOCK` gradient rows of
            // `len` points of every item lie inside their buffers.
            let (input, gradient) = unsafe {
                let input = tile.input.add(item * tile.input_item_stride);
                let gradient = tile.gradient.add(item * tile.gradient_item_stride);
                (
                    std::array::from_fn::<_, ROWS, _>(|i| {
                        std::slice::from_raw_parts(input.add(i * tile.row_len), tile.len)
                    }),
                    std::array::from_fn::<_, OUT_BLOCK, _>(|o| {
                        std::slice::from_raw_parts(gradient.add(o * tile.row_len), tile.len)
                    }),
                )
            };
            for point in (0..tile.len).step_by(LANES) {
                for (acc, gradient) in acc.iter_mut().zip(&gradient) {
                    let g = &gradient[point..point + LANES];
                    for (acc, input) in acc.iter_mut().zip(&input) {
                        let x = &input[point..point + LANES];
                        for ((acc, &g), &x) in acc.iter_mut().zip(g).zip(x) {
                            *acc += g * x;
                        }
                    }
                }
            }
        }
        let mut sums = [[0.0; MAX_IN_BLOCK]; OUT_BLOCK];
        for (sums, acc) in sums.iter_mut().zip(&acc) {
            for (sum, acc) in sums.iter_mut().zip(acc) {
                *sum = acc.iter().sum();
            }
        }
        sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values as values;

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

    /// Sizes whose span covers two jobs and ends in a partial tile on every path.
    const SIDES: (usize, usize, usize) = (6, 13, 17);

    #[test]
    fn forward_matches_the_definition_on_every_path() {
        let (items, cin, cout, dims) = (2, 3, 5, SIDES);
        let grid = PaddedGrid::new(dims.0, dims.1, dims.2);
        assert!(grid.span() > CHUNK);
        let x = values(items * cin * grid.voxels(), 1);
        let w = values(cout * cin * 27, 2);
        let want = reference_conv(&x, &w, items, cin, cout, dims);
        let bias = [0.5, -1.0, 2.0, 0.0, 3.0];
        for path in KernelPath::available() {
            let got = correlate(
                path,
                &grid,
                &grid.pad(&x, items, cin, cin),
                items,
                cin,
                &forward_weights(&w, cout, cin),
                cout,
                Some(&bias),
            );
            assert_eq!(got.len(), want.len());
            for (index, (g, w)) in got.iter().zip(&want).enumerate() {
                let b = bias[index / grid.voxels() % cout];
                assert!(
                    (g - b - w).abs() < 1e-4,
                    "{}: {g} vs {w} + {b}",
                    path.name()
                );
            }
        }
    }

    /// Both gradients are adjoints of the forward map: <conv(x), g> = <x, dX(g)> = <w, dW(x, g)>.
    /// On a grid of one job per item (the weight gradient sums the items in registers) and one
    /// of several.
    #[test]
    fn gradients_are_the_adjoints_of_the_forward_pass_on_every_path() {
        adjoints_hold((3, 6, 9), (3, 6, 5));
        adjoints_hold((2, 6, 9), SIDES);
    }

    fn adjoints_hold((items, cin, cout): (usize, usize, usize), dims: (usize, usize, usize)) {
        let grid = PaddedGrid::new(dims.0, dims.1, dims.2);
        let x = values(items * cin * grid.voxels(), 3);
        let w = values(cout * cin * 27, 4);
        let g = values(items * cout * grid.voxels(), 5);
        let y = reference_conv(&x, &w, items, cin, cout, dims);
        let forward: f64 = y.iter().zip(&g).map(|(a, b)| *a as f64 * *b as f64).sum();

        let out_rows = padded_channels(cout);
        let padded_gradient = grid.pad(&g, items, cout, out_rows);
        for path in KernelPath::available() {
            let dx = correlate(
                path,
                &grid,
                &padded_gradient,
                items,
                out_rows,
                &input_gradient_weights(&w, cout, cin, out_rows),
                cin,
                None,
            );
            let through_input: f64 = dx.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();

            let dw = weight_gradient(
                path,
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
            let name = path.name();
            assert!(
                (forward - through_input).abs() < 1e-3 * forward.abs().max(1.0),
                "{name}: {forward} vs {through_input}"
            );
            assert!(
                (forward - through_weights).abs() < 1e-3 * forward.abs().max(1.0),
                "{name}: {forward} vs {through_weights}"
            );
        }
    }

    /// The weight gradient over several jobs is the same bits on every run of a path, and the
    /// two fused-multiply-add paths compute the same forward bits.
    #[test]
    fn results_are_reproducible_and_the_fma_paths_agree() {
        let (items, cin, cout, dims) = (2, 5, 6, SIDES);
        let grid = PaddedGrid::new(dims.0, dims.1, dims.2);
        let x = grid.pad(&values(items * cin * grid.voxels(), 6), items, cin, cin);
        let rows = padded_channels(cout);
        let g = grid.pad(&values(items * cout * grid.voxels(), 7), items, cout, rows);
        let w = forward_weights(&values(cout * cin * 27, 8), cout, cin);
        let run = |path| {
            let dw = weight_gradient(path, &grid, &x, cin, &g, rows, cout, items);
            (dw, correlate(path, &grid, &x, items, cin, &w, cout, None))
        };
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let mut forwards = Vec::new();
        for path in KernelPath::available() {
            let (first, y) = run(path);
            for _ in 0..3 {
                assert_eq!(bits(&run(path).0), bits(&first), "{}", path.name());
            }
            forwards.push((path, bits(&y)));
        }
        let fused: Vec<_> = forwards
            .iter()
            .filter(|(path, _)| *path != KernelPath::Generic)
            .collect();
        if let [(_, a), (_, b)] = fused.as_slice() {
            assert_eq!(a, b, "AVX-512 and AVX2 forward bits");
        }
    }
}
