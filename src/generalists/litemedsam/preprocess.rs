//! Pre- and post-processing exactly as upstream LiteMedSAM inference
//! (`CVPR24_LiteMedSAM_infer.py`): longest side to 256 with OpenCV's INTER_AREA, min-max
//! normalisation, zero padding bottom/right, box scaling by truncation, and the final mask from
//! the cropped low-res logits resized bilinearly back to the original size.

use std::ops::Range;

use ndarray::{Array2, Array3, ArrayView2, ArrayView3};

use super::{EMBED_GRID, INPUT_SIZE, LiteMedSamError, MaskLogits};

/// Original and resized (unpadded) size of an image, (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageGeometry {
    pub original_hw: [usize; 2],
    pub resized_hw: [usize; 2],
}

impl ImageGeometry {
    /// Upstream's resize target: `scale = 256/max(H,W)`, `new = int(old·scale + 0.5)`.
    pub fn for_original(height: usize, width: usize) -> Self {
        let scale = INPUT_SIZE as f64 / height.max(width) as f64;
        let resized = |n: usize| ((n as f64 * scale + 0.5) as usize).clamp(1, INPUT_SIZE);
        Self {
            original_hw: [height, width],
            resized_hw: [resized(height), resized(width)],
        }
    }

    /// A box `[x0, y0, x1, y1]` in original pixels → model input space, truncated toward zero
    /// as upstream does (`int(box · 256/max(H,W))`).
    pub fn scale_box(&self, bbox: [f64; 4]) -> [f32; 4] {
        let scale = INPUT_SIZE as f64 / self.original_hw[0].max(self.original_hw[1]) as f64;
        bbox.map(|v| (v * scale).trunc() as f32)
    }

    /// A point (x, y) in original pixels → model input space. Upstream has no point path; this
    /// follows SAM's `ResizeLongestSide.apply_coords` (scaled, not truncated).
    pub fn scale_point(&self, x: f64, y: f64) -> (f32, f32) {
        let [h, w] = self.original_hw;
        let [nh, nw] = self.resized_hw;
        (
            (x * nw as f64 / w as f64) as f32,
            (y * nh as f64 / h as f64) as f32,
        )
    }
}

/// A preprocessed image: the (3, 256, 256) model input and its geometry.
#[derive(Clone, Debug)]
pub struct PreparedImage {
    /// Channel-first (3, 256, 256) values in [0, 1], zero-padded bottom/right.
    pub pixels: Vec<f32>,
    pub geometry: ImageGeometry,
}

/// Preprocess an (H, W, 3) uint8 image as upstream LiteMedSAM does.
pub fn prepare_image(image: ArrayView3<u8>) -> Result<PreparedImage, LiteMedSamError> {
    let (h, w, c) = image.dim();
    if c != 3 || h == 0 || w == 0 {
        return Err(LiteMedSamError::Input(format!(
            "expected an (H, W, 3) image with H, W > 0, got ({h}, {w}, {c})"
        )));
    }
    let geometry = ImageGeometry::for_original(h, w);
    let resized = resize_area(image, geometry.resized_hw);
    Ok(PreparedImage {
        pixels: normalize_and_pad(&resized),
        geometry,
    })
}

/// Replicate a single-channel slice to the (H, W, 3) layout upstream uses for 3-D data.
pub fn gray_to_rgb(slice: ArrayView2<u8>) -> Array3<u8> {
    let (h, w) = slice.dim();
    Array3::from_shape_fn((h, w, 3), |(i, j, _)| slice[[i, j]])
}

/// Min-max normalise over the whole resized image (all channels, in f64, then f32) and pad
/// to 256x256 with zeros, channel-first.
fn normalize_and_pad(resized: &Array3<u8>) -> Vec<f32> {
    let (nh, nw, _) = resized.dim();
    let min = *resized.iter().min().expect("non-empty") as f64;
    let max = *resized.iter().max().expect("non-empty") as f64;
    let range = (max - min).max(1e-8);
    let mut pixels = vec![0.0f32; 3 * INPUT_SIZE * INPUT_SIZE];
    for ((i, j, ch), &v) in resized.indexed_iter() {
        pixels[(ch * INPUT_SIZE + i) * INPUT_SIZE + j] = ((v as f64 - min) / range) as f32;
    }
    debug_assert!(nh <= INPUT_SIZE && nw <= INPUT_SIZE);
    pixels
}

/// OpenCV `cv2.resize(..., interpolation=INTER_AREA)` on an (H, W, C) uint8 image.
///
/// Shrinking is a fractional box filter (OpenCV's area table) rounded half up, which matches
/// OpenCV on the fixtures (0 of 147,456 pixels differ). Enlarging follows OpenCV's INTER_AREA
/// upscale rule (bilinear with area-derived weights, 11-bit fixed point): exact for integer
/// factors (pixel replication); for other factors it may differ by one grey level.
pub fn resize_area(image: ArrayView3<u8>, target_hw: [usize; 2]) -> Array3<u8> {
    let (h, w, c) = image.dim();
    let [nh, nw] = target_hw;
    if (nh, nw) == (h, w) {
        return image.to_owned();
    }
    let (scale_y, scale_x) = (h as f64 / nh as f64, w as f64 / nw as f64);
    if scale_y >= 1.0 && scale_x >= 1.0 {
        let rows = area_table(h, nh, scale_y);
        let cols = area_table(w, nw, scale_x);
        Array3::from_shape_fn((nh, nw, c), |(y, x, ch)| {
            let mut sum = 0.0f64;
            for &(sy, wy) in &rows[y] {
                for &(sx, wx) in &cols[x] {
                    sum += wy * wx * image[[sy, sx, ch]] as f64;
                }
            }
            (sum + 0.5).floor().clamp(0.0, 255.0) as u8
        })
    } else {
        let rows = upscale_taps(h, nh);
        let cols = upscale_taps(w, nw);
        Array3::from_shape_fn((nh, nw, c), |(y, x, ch)| {
            let (sy, [b0, b1]) = rows[y];
            let (sx, [a0, a1]) = cols[x];
            let sy1 = (sy + 1).min(h - 1);
            let sx1 = (sx + 1).min(w - 1);
            let horizontal =
                |row: usize| image[[row, sx, ch]] as i32 * a0 + image[[row, sx1, ch]] as i32 * a1;
            // OpenCV's vectorised vertical pass: drop 4 bits, 16-bit high multiply, round by 2.
            let top = ((horizontal(sy) >> 4) * b0) >> 16;
            let bottom = ((horizontal(sy1) >> 4) * b1) >> 16;
            ((top + bottom + 2) >> 2).clamp(0, 255) as u8
        })
    }
}

/// For each output index, the (source index, weight) pairs of OpenCV's area table.
fn area_table(src: usize, dst: usize, scale: f64) -> Vec<Vec<(usize, f64)>> {
    (0..dst)
        .map(|d| {
            let f1 = d as f64 * scale;
            let f2 = f1 + scale;
            let cell = scale.min(src as f64 - f1);
            let s2 = (f2.floor() as usize).min(src - 1);
            let s1 = (f1.ceil() as usize).min(s2);
            let mut taps = Vec::new();
            if s1 as f64 - f1 > 1e-3 {
                taps.push((s1 - 1, (s1 as f64 - f1) / cell));
            }
            for s in s1..s2 {
                taps.push((s, 1.0 / cell));
            }
            if f2 - s2 as f64 > 1e-3 {
                taps.push((s2, (f2 - s2 as f64).min(1.0).min(cell) / cell));
            }
            taps
        })
        .collect()
}

/// OpenCV's INTER_AREA enlarge taps: source index and the two 11-bit fixed-point weights.
fn upscale_taps(src: usize, dst: usize) -> Vec<(usize, [i32; 2])> {
    const COEF_SCALE: f64 = 2048.0;
    let scale = src as f64 / dst as f64;
    let inv_scale = dst as f64 / src as f64;
    (0..dst)
        .map(|d| {
            let mut s = (d as f64 * scale).floor() as isize;
            let f = (d + 1) as f64 - (s + 1) as f64 * inv_scale;
            let mut f = if f <= 0.0 { 0.0 } else { f - f.floor() };
            if s < 0 {
                s = 0;
                f = 0.0;
            }
            if s as usize >= src - 1 {
                s = src as isize - 1;
                f = 0.0;
            }
            let round = |v: f64| v.round_ties_even() as i32;
            (
                s as usize,
                [round((1.0 - f) * COEF_SCALE), round(f * COEF_SCALE)],
            )
        })
        .collect()
}

/// A rectangle of the 256x256 low-res logit grid in whole 4x4 cells, one cell per token of the
/// 64x64 image embedding. Upscaling acts per token, so a decoder asked for a window upscales
/// only the tokens under it: a training patch covers a few percent of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogitWindow {
    pub cell_rows: Range<usize>,
    pub cell_cols: Range<usize>,
}

impl LogitWindow {
    /// The whole 256x256 grid.
    pub fn full() -> Self {
        Self {
            cell_rows: 0..EMBED_GRID,
            cell_cols: 0..EMBED_GRID,
        }
    }

    /// The smallest window holding every low-res logit that the bilinear resize reads for the
    /// output pixels `rows` x `cols` (original pixels; empty ranges give an empty window).
    pub fn covering(geometry: &ImageGeometry, rows: Range<usize>, cols: Range<usize>) -> Self {
        let [h, w] = geometry.original_hw;
        let [nh, nw] = geometry.resized_hw;
        let cells = |range: Range<usize>, src: usize, dst: usize| {
            let range = range.start.min(dst)..range.end.min(dst);
            if range.is_empty() {
                return 0..0;
            }
            let taps = bilinear_taps(src, dst);
            let first = taps[range.start].0;
            let last = taps[range.end - 1].1;
            first / CELL..last / CELL + 1
        };
        Self {
            cell_rows: cells(rows, nh, h),
            cell_cols: cells(cols, nw, w),
        }
    }

    /// Logit rows (and columns) of the window: 4 per cell.
    pub fn height(&self) -> usize {
        CELL * self.cell_rows.len()
    }

    pub fn width(&self) -> usize {
        CELL * self.cell_cols.len()
    }

    fn contains(&self, other: &LogitWindow) -> bool {
        let within = |outer: &Range<usize>, inner: &Range<usize>| {
            inner.is_empty() || (outer.start <= inner.start && inner.end <= outer.end)
        };
        within(&self.cell_rows, &other.cell_rows) && within(&self.cell_cols, &other.cell_cols)
    }
}

/// Low-res logits per side of one embedding token.
const CELL: usize = INPUT_SIZE / EMBED_GRID;

/// The final binary mask at the original size: crop the 256x256 logits to the resized extent,
/// resize bilinearly (PyTorch `align_corners=False`) and threshold `sigmoid > 0.5` (logit > 0).
pub fn postprocess_mask(
    logits: &MaskLogits,
    geometry: &ImageGeometry,
) -> Result<Array2<u8>, LiteMedSamError> {
    let [h, w] = geometry.original_hw;
    postprocess_mask_region(logits, geometry, 0..h, 0..w)
}

/// [`postprocess_mask`] for the output pixels `rows` x `cols` only; `logits` must cover them
/// (decode with [`LogitWindow::covering`] the same ranges).
pub fn postprocess_mask_region(
    logits: &MaskLogits,
    geometry: &ImageGeometry,
    rows: Range<usize>,
    cols: Range<usize>,
) -> Result<Array2<u8>, LiteMedSamError> {
    let upsampled = upsample_logits_region(logits, geometry, rows, cols)?;
    Ok(upsampled.mapv(|v| u8::from(v > 0.0)))
}

/// The cropped logits resized to the original size (before thresholding), for the output pixels
/// `rows` x `cols` only.
pub fn upsample_logits_region(
    logits: &MaskLogits,
    geometry: &ImageGeometry,
    rows: Range<usize>,
    cols: Range<usize>,
) -> Result<Array2<f32>, LiteMedSamError> {
    let [h, w] = geometry.original_hw;
    if rows.end > h || cols.end > w {
        return Err(LiteMedSamError::Input(format!(
            "output region {rows:?} x {cols:?} outside the {h}x{w} image"
        )));
    }
    let needed = LogitWindow::covering(geometry, rows.clone(), cols.clone());
    if !logits.window.contains(&needed) {
        return Err(LiteMedSamError::Input(format!(
            "logits of window {:?} do not cover the output region {rows:?} x {cols:?} (needs {needed:?})",
            logits.window
        )));
    }
    let [nh, nw] = geometry.resized_hw;
    let row_taps = bilinear_taps(nh, h);
    let col_taps = bilinear_taps(nw, w);
    let (top, left, stride) = (
        CELL * logits.window.cell_rows.start,
        CELL * logits.window.cell_cols.start,
        logits.window.width(),
    );
    let at = |y: usize, x: usize| logits.values[(y - top) * stride + x - left];
    Ok(Array2::from_shape_fn((rows.len(), cols.len()), |(r, c)| {
        let (y0, y1, ly0, ly1) = row_taps[rows.start + r];
        let (x0, x1, lx0, lx1) = col_taps[cols.start + c];
        (lx0 * at(y0, x0) + lx1 * at(y0, x1)) * ly0 + (lx0 * at(y1, x0) + lx1 * at(y1, x1)) * ly1
    }))
}

/// PyTorch's `upsample_bilinear2d` source indices and weights (f32, `align_corners=False`).
fn bilinear_taps(src: usize, dst: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|d| {
            let real = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (real.floor() as usize).min(src - 1);
            let i1 = i0 + usize::from(i0 < src - 1);
            let l1 = (real - i0 as f32).clamp(0.0, 1.0);
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_upstream_rounding() {
        let g = ImageGeometry::for_original(240, 320);
        assert_eq!(g.resized_hw, [192, 256]);
        let g = ImageGeometry::for_original(128, 128);
        assert_eq!(g.resized_hw, [256, 256]);
        // 100·(256/300) = 85.33 → 85.
        assert_eq!(ImageGeometry::for_original(300, 100).resized_hw, [256, 85]);
    }

    #[test]
    fn box_scaling_truncates() {
        let g = ImageGeometry::for_original(240, 320);
        assert_eq!(
            g.scale_box([160.0, 55.0, 205.0, 130.0]),
            [128.0, 44.0, 164.0, 104.0]
        );
        let g = ImageGeometry::for_original(128, 128);
        assert_eq!(
            g.scale_box([45.0, 39.0, 73.0, 64.0]),
            [90.0, 78.0, 146.0, 128.0]
        );
    }

    #[test]
    fn integer_upscale_replicates_pixels() {
        let image = Array3::from_shape_fn((3, 2, 1), |(i, j, _)| (10 * i + j) as u8);
        let out = resize_area(image.view(), [6, 4]);
        for ((i, j, _), &v) in out.indexed_iter() {
            assert_eq!(v, image[[i / 2, j / 2, 0]], "at ({i},{j})");
        }
    }

    #[test]
    fn halving_averages_blocks_rounding_half_up() {
        // Blocks average to 1.5, 2.0, 2.25 and 0.75 → 2, 2, 2, 1.
        let values = [[1u8, 2, 2, 2], [1, 2, 2, 2], [2, 2, 0, 1], [3, 2, 1, 1]];
        let image = Array3::from_shape_fn((4, 4, 1), |(i, j, _)| values[i][j]);
        let out = resize_area(image.view(), [2, 2]);
        assert_eq!(out.iter().copied().collect::<Vec<_>>(), vec![2, 2, 2, 1]);
    }

    #[test]
    fn fractional_shrink_weights_sum_to_one() {
        for (src, dst) in [(320usize, 256usize), (240, 192), (511, 256), (1000, 256)] {
            for taps in area_table(src, dst, src as f64 / dst as f64) {
                let total: f64 = taps.iter().map(|t| t.1).sum();
                assert!((total - 1.0).abs() < 1e-9, "{src}->{dst}: {total}");
            }
        }
    }

    #[test]
    fn bilinear_identity_and_midpoints() {
        let taps = bilinear_taps(4, 4);
        assert!(
            taps.iter()
                .enumerate()
                .all(|(d, &(i0, _, l0, l1))| i0 == d && l0 == 1.0 && l1 == 0.0)
        );
        // 2 → 4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the last pixel).
        let taps = bilinear_taps(2, 4);
        assert_eq!(taps[0], (0, 1, 1.0, 0.0));
        assert_eq!(taps[1], (0, 1, 0.75, 0.25));
        assert_eq!(taps[2], (0, 1, 0.25, 0.75));
        assert_eq!(taps[3], (1, 1, 0.75, 0.25));
    }

    #[test]
    fn normalisation_is_min_max_over_all_channels_and_pads_with_zero() {
        let image = Array3::from_shape_fn((2, 2, 3), |(i, j, c)| (50 + 10 * (i * 2 + j) + c) as u8);
        let prepared = prepare_image(image.view()).unwrap();
        assert_eq!(prepared.geometry.resized_hw, [256, 256]);
        let px = &prepared.pixels;
        assert_eq!(px[0], 0.0); // min (50) at channel 0, pixel (0,0)
        let last = (2 * INPUT_SIZE + 255) * INPUT_SIZE + 255;
        assert_eq!(px[last], 1.0); // max (82) at channel 2, pixel (1,1) replicated
        let wide = Array3::from_elem((10, 20, 3), 7u8);
        let prepared = prepare_image(wide.view()).unwrap();
        assert_eq!(prepared.geometry.resized_hw, [128, 256]);
        assert!(
            prepared.pixels.iter().all(|&v| v == 0.0),
            "constant image normalises to 0"
        );
    }

    #[test]
    fn wrong_channel_count_is_an_error() {
        let image = Array3::<u8>::zeros((4, 4, 1));
        let err = prepare_image(image.view()).unwrap_err();
        assert!(err.to_string().contains("(4, 4, 1)"), "{err}");
    }
}
