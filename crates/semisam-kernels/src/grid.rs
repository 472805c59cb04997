//! The padded-grid layout: a volume with one voxel of zero padding on every side, flattened so
//! that each tap of a 3x3x3 kernel is one constant offset along the row. A convolution then
//! becomes a sum of shifted rows, which vectorises along the row whatever the volume's shape.

use rayon::prelude::*;

/// Points past the end of each row, so that a kernel tile that overruns the last interior point
/// reads and writes inside the row. Must be at least the widest tile.
pub const ROW_SLACK: usize = 128;

/// The interior size (depth, height, width) of a volume laid out on its padded grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaddedGrid {
    pub depth: usize,
    pub height: usize,
    pub width: usize,
}

impl PaddedGrid {
    pub fn new(depth: usize, height: usize, width: usize) -> Self {
        Self {
            depth,
            height,
            width,
        }
    }

    fn padded_width(&self) -> usize {
        self.width + 2
    }

    fn plane(&self) -> usize {
        (self.height + 2) * self.padded_width()
    }

    /// Points of the padded grid.
    pub fn points(&self) -> usize {
        (self.depth + 2) * self.plane()
    }

    /// Interior voxels.
    pub fn voxels(&self) -> usize {
        self.depth * self.height * self.width
    }

    /// Index of the first interior point; also the largest tap offset, so that every tap of an
    /// interior point stays inside the grid.
    pub fn first(&self) -> usize {
        self.plane() + self.padded_width() + 1
    }

    /// Length of the run of points, from `first`, that holds every interior point.
    pub fn span(&self) -> usize {
        self.points() - 2 * self.first()
    }

    /// Stored length of one row (one channel of one item).
    pub fn row_len(&self) -> usize {
        self.points() + ROW_SLACK
    }

    fn interior(&self, d: usize, h: usize) -> usize {
        (d + 1) * self.plane() + (h + 1) * self.padded_width() + 1
    }

    /// Offsets of the 27 taps, in PyTorch's weight order (kd, kh, kw), relative to the centre.
    pub fn taps(&self) -> [isize; 27] {
        let plane = self.plane() as isize;
        let row = self.padded_width() as isize;
        std::array::from_fn(|t| {
            let (kd, kh, kw) = (t / 9, (t / 3) % 3, t % 3);
            (kd as isize - 1) * plane + (kh as isize - 1) * row + (kw as isize - 1)
        })
    }

    /// The interior points among grid points `start..end`, as runs along a line: (first grid
    /// point, its voxel index in the contiguous layout, length).
    pub fn interior_runs(
        &self,
        start: usize,
        end: usize,
    ) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let padded_width = self.padded_width();
        let lines = start / padded_width..end.div_ceil(padded_width);
        lines.filter_map(move |line| {
            let (d, h) = (line / (self.height + 2), line % (self.height + 2));
            if d == 0 || d > self.depth || h == 0 || h > self.height {
                return None;
            }
            let line_start = line * padded_width + 1;
            let (low, high) = (line_start.max(start), (line_start + self.width).min(end));
            let voxel = ((d - 1) * self.height + h - 1) * self.width + low - line_start;
            (low < high).then_some((low, voxel, high - low))
        })
    }

    /// Lays `items` x `rows` volumes (contiguous, `voxels()` each) out on the grid with
    /// `grid_rows` rows per item; rows past `rows` and every padding point are zero.
    pub fn pad(&self, volumes: &[f32], items: usize, rows: usize, grid_rows: usize) -> Vec<f32> {
        assert_eq!(
            volumes.len(),
            items * rows * self.voxels(),
            "pad: volume size"
        );
        assert!(grid_rows >= rows, "pad: fewer grid rows than volumes");
        let row_len = self.row_len();
        let mut grid = vec![0.0f32; items * grid_rows * row_len];
        let (width, height) = (self.width, self.height);
        grid.par_chunks_mut(row_len)
            .enumerate()
            .filter(|(index, _)| index % grid_rows < rows)
            .for_each(|(index, row)| {
                let volume_index = index / grid_rows * rows + index % grid_rows;
                let volume = &volumes[volume_index * self.voxels()..][..self.voxels()];
                for (line_index, line) in volume.chunks(width).enumerate() {
                    let start = self.interior(line_index / height, line_index % height);
                    row[start..start + width].copy_from_slice(line);
                }
            });
        grid
    }
}

/// Per-channel sums of `items` x `channels` contiguous volumes (the gradient of a per-channel
/// bias), accumulated in f64.
pub fn channel_sums(volumes: &[f32], items: usize, channels: usize) -> Vec<f32> {
    let voxels = volumes.len() / (items * channels);
    let rows: Vec<f64> = volumes
        .par_chunks(voxels)
        .map(|row| {
            row.chunks(1024)
                .map(|block| block.iter().sum::<f32>() as f64)
                .sum()
        })
        .collect();
    (0..channels)
        .map(|channel| rows.iter().skip(channel).step_by(channels).sum::<f64>() as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_reach_the_neighbours_and_first_is_the_largest_tap() {
        let grid = PaddedGrid::new(2, 3, 4);
        // padded 4 x 5 x 6: plane 30, row 6.
        let taps = grid.taps();
        assert_eq!(taps[0], -30 - 6 - 1);
        assert_eq!(taps[13], 0);
        assert_eq!(taps[26], 37);
        assert_eq!(grid.first(), 37);
        assert_eq!(grid.points(), 120);
        assert_eq!(grid.span(), 120 - 74);
    }

    #[test]
    fn pad_places_each_voxel_at_its_interior_point_and_pads_with_zeros() {
        let grid = PaddedGrid::new(2, 3, 4);
        let volumes: Vec<f32> = (0..2 * 24).map(|v| v as f32 + 1.0).collect();
        let padded = grid.pad(&volumes, 1, 2, 3);
        assert_eq!(padded.len(), 3 * grid.row_len());
        // Voxel (d=1, h=2, w=3) of volume 1 sits at interior point (2, 3, 4) of row 1.
        assert_eq!(
            padded[grid.row_len() + 2 * 30 + 3 * 6 + 4],
            volumes[24 + 12 + 8 + 3]
        );
        let total: f32 = padded.iter().sum();
        assert_eq!(total, volumes.iter().sum::<f32>());
        assert!(padded[2 * grid.row_len()..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn interior_runs_visit_every_voxel_once_from_its_grid_point() {
        let grid = PaddedGrid::new(3, 4, 5);
        let volume: Vec<f32> = (0..grid.voxels()).map(|v| v as f32).collect();
        let padded = grid.pad(&volume, 1, 1, 1);
        let mut seen = vec![0; grid.voxels()];
        // Ranges that start and end inside lines, padding and planes.
        let cuts = [0, 9, grid.first(), 50, 51, 97, 130, grid.points()];
        for range in cuts.windows(2) {
            for (point, voxel, len) in grid.interior_runs(range[0], range[1]) {
                assert!(point >= range[0] && point + len <= range[1]);
                for k in 0..len {
                    assert_eq!(padded[point + k], volume[voxel + k]);
                    seen[voxel + k] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&count| count == 1), "{seen:?}");
    }

    #[test]
    fn channel_sums_add_every_item_of_a_channel() {
        // 2 items x 2 channels x 3 voxels.
        let volumes = [
            1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 4.0, 5.0, 6.0, 40.0, 50.0, 60.0,
        ];
        assert_eq!(channel_sums(&volumes, 2, 2), vec![21.0, 210.0]);
    }
}
