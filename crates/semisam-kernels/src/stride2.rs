//! The V-Net's 2x2x2 stride-2 convolution (down-sampling) and transposed convolution
//! (up-sampling), forward and gradients, as one rearrangement plus one GEMM each.
//!
//! With kernel = stride = 2 every fine voxel belongs to exactly one coarse cell, so moving each
//! cell's 8 voxels into the channel axis ("space to depth") turns both layers into plain matrix
//! products, with no overlap and no copies of shifted views.

use rayon::prelude::*;

/// Sizes of one call: `items` volumes of `channels` channels on the fine grid (even sides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FineGrid {
    pub items: usize,
    pub channels: usize,
    pub depth: usize,
    pub height: usize,
    pub width: usize,
}

impl FineGrid {
    /// Fine voxels per channel.
    pub fn voxels(&self) -> usize {
        self.depth * self.height * self.width
    }

    /// Coarse cells per channel.
    pub fn cells(&self) -> usize {
        self.voxels() / 8
    }

    fn check(&self, len: usize) {
        assert!(
            self.depth.is_multiple_of(2)
                && self.height.is_multiple_of(2)
                && self.width.is_multiple_of(2),
            "stride 2: odd side in {self:?}"
        );
        assert_eq!(
            len,
            self.items * self.channels * self.voxels(),
            "stride 2: size"
        );
    }
}

/// `[items][channels][fine]` → `[items][channels * 8][cells]`, the 8 taps (kd, kh, kw) of a
/// channel next to each other, as PyTorch orders a 2x2x2 kernel.
pub fn space_to_depth(fine: &[f32], grid: FineGrid) -> Vec<f32> {
    grid.check(fine.len());
    let (cells, voxels) = (grid.cells(), grid.voxels());
    let (h2, w2) = (grid.height / 2, grid.width / 2);
    let mut depth = vec![0.0f32; fine.len()];
    depth
        .par_chunks_mut(cells)
        .enumerate()
        .for_each(|(row, out)| {
            let (plane, tap) = (row / 8, row % 8);
            let (a, b, c) = (tap / 4, (tap / 2) % 2, tap % 2);
            let source = &fine[plane * voxels..][..voxels];
            for (line, out) in out.chunks_mut(w2).enumerate() {
                let (z, y) = (line / h2, line % h2);
                let start = ((2 * z + a) * grid.height + 2 * y + b) * grid.width + c;
                for (x, value) in out.iter_mut().enumerate() {
                    *value = source[start + 2 * x];
                }
            }
        });
    depth
}

/// The inverse of [`space_to_depth`], plus `bias[channel]` where given.
pub fn depth_to_space(depth: &[f32], grid: FineGrid, bias: Option<&[f32]>) -> Vec<f32> {
    grid.check(depth.len());
    if let Some(bias) = bias {
        assert_eq!(bias.len(), grid.channels, "depth_to_space: bias size");
    }
    let (cells, voxels) = (grid.cells(), grid.voxels());
    let (h2, w2) = (grid.height / 2, grid.width / 2);
    let mut fine = vec![0.0f32; depth.len()];
    fine.par_chunks_mut(voxels)
        .enumerate()
        .for_each(|(plane, out)| {
            let offset = bias.map_or(0.0, |bias| bias[plane % grid.channels]);
            for tap in 0..8 {
                let (a, b, c) = (tap / 4, (tap / 2) % 2, tap % 2);
                let source = &depth[(plane * 8 + tap) * cells..][..cells];
                for (line, source) in source.chunks(w2).enumerate() {
                    let (z, y) = (line / h2, line % h2);
                    let start = ((2 * z + a) * grid.height + 2 * y + b) * grid.width + c;
                    for (x, &value) in source.iter().enumerate() {
                        out[start + 2 * x] = value + offset;
                    }
                }
            }
        });
    fine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_to_depth_puts_each_cells_taps_in_pytorch_order_and_inverts() {
        let grid = FineGrid {
            items: 2,
            channels: 3,
            depth: 4,
            height: 2,
            width: 6,
        };
        let fine: Vec<f32> = (0..grid.items * grid.channels * grid.voxels())
            .map(|v| v as f32)
            .collect();
        let depth = space_to_depth(&fine, grid);
        let cells = grid.cells(); // 2 x 1 x 3
        // Item 1, channel 2, tap (1, 0, 1), cell (1, 0, 2): fine voxel (3, 0, 5).
        let (item, channel, tap, cell) = (1, 2, 5, 5);
        let plane = item * grid.channels + channel;
        // Fine voxel (3, 0, 5) of that plane: depth 3, row 0, column 5.
        let fine_index = (plane * grid.depth + 3) * grid.height * grid.width + 5;
        assert_eq!(depth[(plane * 8 + tap) * cells + cell], fine[fine_index]);
        assert_eq!(depth_to_space(&depth, grid, None), fine);
        let biased = depth_to_space(&depth, grid, Some(&[0.0, 0.0, 100.0]));
        assert_eq!(biased[fine_index], fine[fine_index] + 100.0);
    }
}
