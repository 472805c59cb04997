//! Training-time spatial augmentation as an explicit, invertible transform.
//!
//! A training patch is made from a source volume in three steps:
//! 1. **crop** a window of the source (the window may reach outside the volume: zero padding),
//! 2. **rot90** the window `k` quarter turns in the x-y plane (axes 0 and 1, as `numpy.rot90`),
//! 3. **flip** along x and/or y.
//!
//! The window is taken with the *rotated* patch shape (`[py, px, pz]` for odd `k`), so a batch
//! of non-square patches always has one shape, and the distribution of patches equals "rotate the
//! volume, then crop" (as the UA-MT code does). Every step is a bijection on voxels, so
//! [`ItemTransform::invert`] maps anything computed on the patch (probabilities, pseudo-labels)
//! back onto the un-augmented source grid — the SAM term needs this to reuse slice embeddings
//! computed on the original volume.

use ndarray::{Array3, ArrayView3, ArrayViewMut3, Axis, s};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How one batch item was cut out of its source volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemTransform {
    /// Shape of the source volume the item was cut from.
    pub source_shape: [usize; 3],
    /// Position of the window's first voxel in source coordinates (negative or past the end where
    /// the window reaches into the zero padding).
    pub origin: [isize; 3],
    /// Number of quarter turns in the x-y plane (0..4), applied after cropping.
    pub rot90: u8,
    /// Flip along axis 0 then axis 1 (of the rotated patch), applied after the rotation.
    pub flip: [bool; 2],
    /// Shape of the patch after the transform.
    pub patch_shape: [usize; 3],
}

/// Which random augmentations are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentOptions {
    /// Random rot90 (k uniform in 0..4) in the x-y plane.
    pub rot90: bool,
    /// Random flip of one axis of the x-y plane (axis 0 or 1, uniformly), as UA-MT's RandomRotFlip.
    pub flip: bool,
}

impl Default for AugmentOptions {
    fn default() -> Self {
        AugmentOptions {
            rot90: true,
            flip: true,
        }
    }
}

impl ItemTransform {
    /// The identity-oriented transform that takes the window at `origin` with the patch's shape.
    pub fn crop_only(
        source_shape: [usize; 3],
        origin: [isize; 3],
        patch_shape: [usize; 3],
    ) -> Self {
        ItemTransform {
            source_shape,
            origin,
            rot90: 0,
            flip: [false, false],
            patch_shape,
        }
    }

    /// Draw a random transform: rotation and flip as `options` allow, then a uniformly random
    /// window position. A source axis shorter than the window is padded by
    /// `(window - size) / 2 + 3` zeros on each side before the position is drawn (UA-MT's
    /// RandomCrop), so small volumes still move inside the patch.
    pub fn random<R: Rng + ?Sized>(
        source_shape: [usize; 3],
        patch_shape: [usize; 3],
        options: AugmentOptions,
        rng: &mut R,
    ) -> Self {
        let rot90 = if options.rot90 {
            rng.gen_range(0..4u8)
        } else {
            0
        };
        let flip = if options.flip {
            let axis = rng.gen_range(0..2usize);
            [axis == 0, axis == 1]
        } else {
            [false, false]
        };
        let window = window_shape(patch_shape, rot90);
        let mut origin = [0isize; 3];
        for d in 0..3 {
            let size = source_shape[d] as isize;
            let w = window[d] as isize;
            let pad = if size < w { (w - size) / 2 + 3 } else { 0 };
            origin[d] = rng.gen_range(-pad..=size + pad - w);
        }
        ItemTransform {
            source_shape,
            origin,
            rot90,
            flip,
            patch_shape,
        }
    }

    /// Shape of the source window (the patch shape before rotation).
    pub fn window_shape(&self) -> [usize; 3] {
        window_shape(self.patch_shape, self.rot90)
    }

    /// Cut the patch out of `source` (zeros outside it) and orient it.
    ///
    /// # Panics
    /// If `source` does not have `source_shape` (a programming error: the transform was drawn for
    /// another volume).
    pub fn apply<T: Clone + Default>(&self, source: ArrayView3<T>) -> Array3<T> {
        assert_eq!(
            source.shape(),
            &self.source_shape[..],
            "transform applied to a volume of another shape"
        );
        let window = self.crop(source);
        let oriented = orient(window.view(), self.rot90, self.flip);
        debug_assert_eq!(oriented.shape(), &self.patch_shape[..]);
        oriented
    }

    /// Undo the orientation: a patch-shaped array becomes the source-oriented window (shape
    /// [`window_shape`](Self::window_shape)) whose voxel `[a, b, c]` lies at source position
    /// `origin + [a, b, c]`.
    pub fn invert<T: Clone>(&self, patch: ArrayView3<T>) -> Array3<T> {
        assert_eq!(
            patch.shape(),
            &self.patch_shape[..],
            "inverse applied to an array of another shape"
        );
        let mut view = patch;
        // Flips are their own inverse; undo them before the rotation they followed.
        for (axis, &flipped) in self.flip.iter().enumerate() {
            if flipped {
                view.invert_axis(Axis(axis));
            }
        }
        rotate_view(view, (4 - self.rot90 % 4) % 4)
            .as_standard_layout()
            .into_owned()
    }

    /// Undo the transform and write the part of the window that lies inside the volume into
    /// `target` (shape `source_shape`); voxels of the padding are dropped.
    pub fn paste_inverted<T: Clone>(&self, patch: ArrayView3<T>, mut target: ArrayViewMut3<T>) {
        assert_eq!(
            target.shape(),
            &self.source_shape[..],
            "paste target has another shape"
        );
        let window = self.invert(patch);
        let (src, dst) = self.overlap();
        target
            .slice_mut(s![dst[0].clone(), dst[1].clone(), dst[2].clone()])
            .assign(&window.slice(s![src[0].clone(), src[1].clone(), src[2].clone()]));
    }

    /// The source voxel that patch voxel `index` came from (it may lie in the padding).
    pub fn source_index(&self, index: [usize; 3]) -> [isize; 3] {
        let [p0, p1, _] = self.patch_shape;
        let mut i = index;
        if self.flip[0] {
            i[0] = p0 - 1 - i[0];
        }
        if self.flip[1] {
            i[1] = p1 - 1 - i[1];
        }
        // Undo k quarter turns one at a time: rot90 once maps window [a, b] to patch
        // [n1 - 1 - b, a] (numpy), so the window position of patch [u, v] is [v, n1 - 1 - u].
        let mut shape = [p0, p1];
        for _ in 0..self.rot90 % 4 {
            let (u, v) = (i[0], i[1]);
            // The window had shape [shape[1], shape[0]] before this turn; its axis-1 length is shape[0].
            i[0] = v;
            i[1] = shape[0] - 1 - u;
            shape = [shape[1], shape[0]];
        }
        [
            self.origin[0] + i[0] as isize,
            self.origin[1] + i[1] as isize,
            self.origin[2] + i[2] as isize,
        ]
    }

    /// Index ranges of the window (`.0`) and of the source (`.1`) where the two overlap.
    pub fn overlap(&self) -> ([std::ops::Range<usize>; 3], [std::ops::Range<usize>; 3]) {
        let window = self.window_shape();
        let mut src: [std::ops::Range<usize>; 3] = [0..0, 0..0, 0..0];
        let mut dst = src.clone();
        for d in 0..3 {
            let start = self.origin[d].max(0);
            let end = (self.origin[d] + window[d] as isize).min(self.source_shape[d] as isize);
            if start >= end {
                continue;
            }
            src[d] = (start - self.origin[d]) as usize..(end - self.origin[d]) as usize;
            dst[d] = start as usize..end as usize;
        }
        (src, dst)
    }

    fn crop<T: Clone + Default>(&self, source: ArrayView3<T>) -> Array3<T> {
        let window = self.window_shape();
        let mut out = Array3::<T>::default(window);
        let (src, dst) = self.overlap();
        out.slice_mut(s![src[0].clone(), src[1].clone(), src[2].clone()])
            .assign(&source.slice(s![dst[0].clone(), dst[1].clone(), dst[2].clone()]));
        out
    }
}

fn window_shape(patch_shape: [usize; 3], rot90: u8) -> [usize; 3] {
    if rot90 % 2 == 1 {
        [patch_shape[1], patch_shape[0], patch_shape[2]]
    } else {
        patch_shape
    }
}

/// `numpy.rot90(a, k, axes=(0, 1))` as a view.
fn rotate_view<T>(mut view: ArrayView3<'_, T>, k: u8) -> ArrayView3<'_, T> {
    for _ in 0..k % 4 {
        // One quarter turn: flip axis 1, then swap axes 0 and 1.
        view.invert_axis(Axis(1));
        view = view.permuted_axes([1, 0, 2]);
    }
    view
}

fn orient<T: Clone>(window: ArrayView3<T>, rot90: u8, flip: [bool; 2]) -> Array3<T> {
    let mut view = rotate_view(window, rot90);
    for (axis, &flipped) in flip.iter().enumerate() {
        if flipped {
            view.invert_axis(Axis(axis));
        }
    }
    view.as_standard_layout().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ramp(shape: [usize; 3]) -> Array3<i32> {
        Array3::from_shape_fn(shape, |(i, j, k)| (i * 10_000 + j * 100 + k) as i32 + 1)
    }

    #[test]
    fn rot90_once_matches_numpy_convention() {
        // numpy.rot90(m)[i, j] == m[j, n1 - 1 - i] for axes (0, 1).
        let m = ramp([2, 3, 1]);
        let t = ItemTransform {
            source_shape: [2, 3, 1],
            origin: [0, 0, 0],
            rot90: 1,
            flip: [false, false],
            patch_shape: [3, 2, 1],
        };
        let r = t.apply(m.view());
        assert_eq!(r.shape(), &[3, 2, 1]);
        for i in 0..3 {
            for j in 0..2 {
                assert_eq!(r[[i, j, 0]], m[[j, 2 - i, 0]]);
            }
        }
    }

    #[test]
    fn crop_outside_volume_is_zero_padded() {
        let m = ramp([3, 3, 2]);
        let t = ItemTransform::crop_only([3, 3, 2], [-1, 1, 0], [3, 3, 2]);
        let p = t.apply(m.view());
        assert_eq!(p[[0, 0, 0]], 0, "row -1 is padding");
        assert_eq!(p[[1, 0, 0]], m[[0, 1, 0]]);
        assert_eq!(p[[2, 1, 1]], m[[1, 2, 1]]);
        assert_eq!(p[[1, 2, 0]], 0, "column 3 is padding");
    }

    #[test]
    fn invert_recovers_window_for_every_orientation() {
        let source = ramp([7, 5, 4]);
        for rot90 in 0..4u8 {
            for flip in [[false, false], [true, false], [false, true], [true, true]] {
                let patch_shape = [4, 3, 2];
                let window = window_shape(patch_shape, rot90);
                let t = ItemTransform {
                    source_shape: [7, 5, 4],
                    origin: [1, 1, 1],
                    rot90,
                    flip,
                    patch_shape,
                };
                let patch = t.apply(source.view());
                assert_eq!(patch.shape(), &patch_shape[..]);
                let back = t.invert(patch.view());
                let expected = source.slice(s![1..1 + window[0], 1..1 + window[1], 1..3]);
                assert_eq!(back, expected, "rot90 {rot90} flip {flip:?}");
                // source_index agrees with apply voxel by voxel.
                for ((i, j, k), v) in patch.indexed_iter() {
                    let [a, b, c] = t.source_index([i, j, k]);
                    assert_eq!(
                        *v,
                        source[[a as usize, b as usize, c as usize]],
                        "rot90 {rot90} flip {flip:?} at {i},{j},{k}"
                    );
                }
            }
        }
    }

    #[test]
    fn paste_inverted_drops_padding_and_restores_source() {
        let source = ramp([4, 6, 3]);
        let t = ItemTransform {
            source_shape: [4, 6, 3],
            origin: [-2, 3, -1],
            rot90: 3,
            flip: [false, true],
            patch_shape: [5, 6, 4],
        };
        let patch = t.apply(source.view());
        let mut target = Array3::<i32>::zeros([4, 6, 3]);
        t.paste_inverted(patch.view(), target.view_mut());
        // The window covers source rows 0..4 (of -2..4), columns 3..6 (of 3..8), slices 0..3.
        for ((i, j, k), v) in target.indexed_iter() {
            let expected = if j >= 3 { source[[i, j, k]] } else { 0 };
            assert_eq!(*v, expected, "at {i},{j},{k}");
        }
    }

    #[test]
    fn random_transforms_stay_in_padded_range_and_are_reproducible() {
        let opts = AugmentOptions::default();
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..200)
                .map(|_| ItemTransform::random([10, 20, 6], [8, 8, 8], opts, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = draw(3);
        assert_eq!(a, draw(3));
        assert_ne!(a, draw(4));
        let mut seen_rot = [false; 4];
        for t in &a {
            seen_rot[t.rot90 as usize] = true;
            assert_eq!(
                t.flip.iter().filter(|&&f| f).count(),
                1,
                "exactly one flip as in UA-MT"
            );
            assert!((0..=2).contains(&t.origin[0]));
            assert!((0..=12).contains(&t.origin[1]));
            // z is shorter than the window: pad (8 - 6) / 2 + 3 = 4 on each side.
            assert!((-4..=2).contains(&t.origin[2]), "{t:?}");
        }
        assert_eq!(seen_rot, [true; 4]);
    }
}
