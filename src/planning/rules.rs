//! The planner's rules: each turns the fingerprint into one choice and says why.

use crate::data::Normalization;
use crate::networks::{Architecture, LEVELS};

use super::fingerprint::{Fingerprint, median};

/// A planned value and where it came from (written as the comment above it).
#[derive(Debug, Clone, PartialEq)]
pub struct Choice<T> {
    pub value: T,
    pub why: String,
}

impl<T> Choice<T> {
    pub fn new(value: T, why: impl Into<String>) -> Self {
        Choice {
            value,
            why: why.into(),
        }
    }
}

/// An axis is anisotropic (nnU-Net's rule) when its spacing exceeds 3x the finest of the others.
const ANISOTROPY_RATIO: f64 = 3.0;

/// The side of a patch axis pooled at every level is a multiple of this (four 2x down-samplings
/// in both networks).
pub const PATCH_SIDE_MULTIPLE: usize = 1 << LEVELS;

/// LiteMedSAM slices across an axis shorter than this (voxels, median on the target grid), so
/// that each slice is a whole image and never a strip a few voxels wide.
const THIN_SIDE: usize = PATCH_SIDE_MULTIPLE / 2;

/// Floats kept per patch voxel and unit of network width for one training item (student
/// activations for the backward pass plus the teacher's forward): both networks hold about a
/// dozen full-resolution feature maps of the base width, and their coarser levels add less than
/// half again; gradients and the optimizer are small beside them.
const ACTIVATION_FLOATS_PER_VOXEL_AND_WIDTH: f64 = 24.0;

fn format_triple(v: [f64; 3]) -> String {
    format!("{} x {} x {}", trim(v[0]), trim(v[1]), trim(v[2]))
}

fn trim(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// nnU-Net's target spacing: the median spacing per axis, except that an anisotropic axis (its
/// median spacing more than 3x the others' and its median size less than a third of theirs)
/// takes the 10th percentile of its spacings, never finer than the other axes' coarsest.
pub fn target_spacing(fingerprint: &Fingerprint) -> Choice<[f64; 3]> {
    let mut target = fingerprint.median_spacing;
    let worst = (0..3)
        .max_by(|&a, &b| target[a].total_cmp(&target[b]))
        .expect("three axes");
    let others: Vec<usize> = (0..3).filter(|&d| d != worst).collect();
    let finest_other = others
        .iter()
        .map(|&d| target[d])
        .fold(f64::INFINITY, f64::min);
    let coarsest_other = others.iter().map(|&d| target[d]).fold(0.0, f64::max);
    let smallest_other_size = others
        .iter()
        .map(|&d| fingerprint.median_shape[d])
        .fold(f64::INFINITY, f64::min);
    let anisotropic = target[worst] > ANISOTROPY_RATIO * finest_other
        && fingerprint.median_shape[worst] * ANISOTROPY_RATIO < smallest_other_size;
    if anisotropic {
        let mut spacings: Vec<f32> = fingerprint
            .spacings(worst)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let p10 = crate::data::normalize::percentile(&mut spacings, 10.0);
        target[worst] = p10.max(coarsest_other);
        return Choice::new(
            target,
            format!(
                "median spacing {} mm, but axis {worst} is anisotropic (more than {ANISOTROPY_RATIO}x the others, a third of their size): it takes the 10th percentile of its spacings, not finer than the other axes (nnU-Net's rule)",
                format_triple(fingerprint.median_spacing)
            ),
        );
    }
    Choice::new(
        target,
        format!(
            "the median voxel spacing of the {} training images (mm)",
            fingerprint.cases.len()
        ),
    )
}

/// CT intensities are calibrated: clip to the labeled foreground's 0.5 / 99.5 percentiles and
/// z-score with the foreground's statistics. Other modalities are not: per-case z-score.
pub fn normalization(fingerprint: &Fingerprint) -> Choice<Normalization> {
    match (fingerprint.is_ct(), fingerprint.foreground_intensity) {
        (true, Some(stats)) => Choice::new(
            Normalization::ClipZScore {
                lower: stats.percentile_00_5,
                upper: stats.percentile_99_5,
                mean: stats.mean,
                std: stats.std.max(f64::EPSILON),
            },
            format!(
                "CT: clip to the labeled foreground's 0.5 / 99.5 percentiles ({} / {}), then z-score with its mean {} and standard deviation {} ({} voxels sampled)",
                trim(stats.percentile_00_5),
                trim(stats.percentile_99_5),
                trim(stats.mean),
                trim(stats.std),
                stats.samples
            ),
        ),
        (true, None) => Choice::new(
            Normalization::ZScore,
            "CT, but no labeled foreground to take statistics from: per-case z-score",
        ),
        (false, _) => Choice::new(
            Normalization::ZScore,
            format!(
                "modality {}: intensities are not calibrated between scans, so each case is z-scored on its own",
                fingerprint.modality.as_deref().unwrap_or("not declared")
            ),
        ),
    }
}

/// The median image shape on the target grid: each image's shape resampled to `target`, then the
/// median per axis (nnU-Net's order). Scaling the median stored shape by the median spacing instead
/// is wrong wherever the shapes follow the spacings, e.g. one field of view stored at 1 mm and 0.5 mm.
pub fn median_resampled_shape(fingerprint: &Fingerprint, target: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|d| {
        median(
            fingerprint
                .cases
                .iter()
                .map(|case| case.shape[d] as f64 * case.spacing[d] / target[d])
                .collect(),
        )
    })
}

/// Estimated training memory (bytes) of a batch of patches.
pub fn training_bytes(patch: [usize; 3], batch: usize, width: usize) -> f64 {
    let voxels = patch.iter().product::<usize>() as f64;
    voxels * batch as f64 * width as f64 * ACTIVATION_FLOATS_PER_VOXEL_AND_WIDTH * 4.0
}

/// 2x poolings per axis: four (the papers' networks) along an axis whose median resampled side
/// is at least 16 voxels, and along a shorter one only as often as that side halves, so that its
/// patch is the largest multiple of 2^poolings within the side rather than 16 with padding:
/// one-slice images train on one-slice patches, ten thick cardiac slices on patches 8 deep (nnU-Net
/// plans short axes with fewer poolings the same way).
pub fn poolings(median_shape: [f64; 3]) -> Choice<[usize; 3]> {
    let value = median_shape.map(|side| {
        let side = (side.floor() as usize).max(1);
        if side >= PATCH_SIDE_MULTIPLE {
            LEVELS
        } else {
            side.ilog2() as usize
        }
    });
    let thin: Vec<String> = (0..3)
        .filter(|&d| value[d] < LEVELS)
        .map(|d| format!("axis {d} ({} voxels)", trim(median_shape[d].round())))
        .collect();
    let why = if thin.is_empty() {
        format!("no axis is shorter than {PATCH_SIDE_MULTIPLE} voxels: {LEVELS} poolings each")
    } else {
        format!(
            "{} shorter than {PATCH_SIDE_MULTIPLE} voxels: pooled only as often as it halves, so its patch is not padded to {PATCH_SIDE_MULTIPLE}",
            thin.join(" and ")
        )
    };
    Choice::new(value, why)
}

/// The patch: the largest multiples of the axis's side multiple within the median resampled
/// shape (at least one multiple), then its longest side shortened by its multiple until a batch
/// fits the memory budget.
pub fn patch(
    median_shape: [f64; 3],
    multiples: [usize; 3],
    batch: usize,
    width: usize,
    memory_budget: f64,
) -> Choice<[usize; 3]> {
    let mut patch: [usize; 3] = std::array::from_fn(|d| {
        let sides = (median_shape[d] / multiples[d] as f64).floor() as usize;
        sides.max(1) * multiples[d]
    });
    let mut shrunk = false;
    while training_bytes(patch, batch, width) > memory_budget {
        let longest = (0..3).max_by_key(|&d| patch[d]).expect("three axes");
        if patch[longest] == multiples[longest] {
            break;
        }
        patch[longest] -= multiples[longest];
        shrunk = true;
    }
    let unit = if multiples.iter().all(|&m| m == multiples[0]) {
        multiples[0].to_string()
    } else {
        format!("{} x {} x {}", multiples[0], multiples[1], multiples[2])
    };
    let rounded = format!(
        "the median resampled shape {} rounded down to multiples of {unit}",
        format_triple(median_shape.map(|v| v.round()))
    );
    let why = if shrunk {
        format!(
            "{rounded}, longest sides shortened until a batch of {batch} at width {width} fits the memory budget of {:.1} GiB",
            memory_budget / GIB
        )
    } else {
        format!(
            "{rounded}; a batch of {batch} at width {width} needs about {:.2} GiB (budget {:.1} GiB)",
            training_bytes(patch, batch, width) / GIB,
            memory_budget / GIB
        )
    };
    Choice::new(patch, why)
}

pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// LiteMedSAM sees 2D slices: cut them across the thinnest axis when it is under 8 voxels (2D
/// images stored one slice per file, or a few thick slices), so that each slice is a whole image
/// and never a strip a few voxels wide; otherwise across the coarsest axis, so that each slice
/// is a full-resolution plane; with equal spacings, across the last axis (z by convention).
pub fn sam_axis(target: [f64; 3], median_shape: [f64; 3]) -> Choice<usize> {
    let thinnest = (0..3)
        .rev()
        .min_by(|&a, &b| median_shape[a].total_cmp(&median_shape[b]))
        .expect("three axes");
    if median_shape[thinnest] < THIN_SIDE as f64 {
        return Choice::new(
            thinnest,
            format!(
                "slices across axis {thinnest}, the thinnest ({} voxels): each slice is a whole image",
                trim(median_shape[thinnest].round())
            ),
        );
    }
    let coarsest = target.iter().copied().fold(0.0, f64::max);
    let axis = (0..3)
        .rev()
        .find(|&d| target[d] >= coarsest * (1.0 - 1e-6))
        .expect("three axes");
    let isotropic = target.iter().all(|&s| s >= coarsest * (1.0 - 1e-6));
    Choice::new(
        axis,
        if isotropic {
            "isotropic target spacing: slices across the last array axis".to_owned()
        } else {
            format!(
                "slices across axis {axis}, the coarsest ({} mm), so each slice is a full-resolution plane",
                trim(target[axis])
            )
        },
    )
}

/// The architecture: the 3D U-Net. The V-Net's channel dropout (p = 0.5 on the few channels
/// before its classifier) made its classes trade places on multi-class data at small widths.
pub fn architecture() -> Choice<Architecture> {
    Choice::new(
        Architecture::UNet3d,
        "3D U-Net: its dropout drops voxels, not channels; the V-Net's channel dropout made anterior and posterior hippocampus trade places at width 8 (docs/hippocampus.md)",
    )
}

/// Random rot90 / flip in the x-y plane: only for binary labels. Several foreground classes may
/// differ by position alone (anterior / posterior hippocampus, left / right organs): a rotated
/// or mirrored patch shows one class where the other belongs.
pub fn augmentation(fingerprint: &Fingerprint) -> Choice<(bool, bool)> {
    let foreground = fingerprint.labels.keys().filter(|&&v| v > 0).count();
    if foreground <= 1 {
        Choice::new(
            (true, true),
            "one foreground class: rot90 and flip in the x-y plane (UA-MT's) cannot confuse it",
        )
    } else {
        Choice::new(
            (false, false),
            format!(
                "{foreground} foreground classes may differ by position alone (e.g. anterior / posterior): rot90 and flip would swap them, so they are off"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::networks::side_multiples;
    use crate::planning::fingerprint::CaseFingerprint;
    use std::collections::BTreeMap;

    fn fingerprint(spacings: &[[f64; 3]], shape: [usize; 3], modality: &str) -> Fingerprint {
        let cases: Vec<CaseFingerprint> = spacings
            .iter()
            .enumerate()
            .map(|(n, &spacing)| CaseFingerprint {
                id: format!("c{n}"),
                labeled: true,
                shape,
                spacing,
                foreground_slices: None,
            })
            .collect();
        let median = |d: usize| {
            let mut v: Vec<f64> = spacings.iter().map(|s| s[d]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Fingerprint {
            dataset: "d".into(),
            layout: "MSD".into(),
            modality: Some(modality.into()),
            channels: 1,
            labels: BTreeMap::from([(0, "bg".into()), (1, "a".into()), (2, "b".into())]),
            cases,
            median_spacing: [median(0), median(1), median(2)],
            median_shape: shape.map(|s| s as f64),
            foreground_intensity: None,
            class_volumes: Vec::new(),
        }
    }

    #[test]
    fn isotropic_data_keeps_the_median_spacing_and_slices_along_z() {
        let fp = fingerprint(&[[1.0; 3], [1.0; 3], [1.2, 1.0, 1.0]], [36, 50, 35], "MRI");
        let spacing = target_spacing(&fp);
        assert_eq!(spacing.value, [1.0, 1.0, 1.0]);
        assert_eq!(sam_axis(spacing.value, [64.0; 3]).value, 2);
        assert_eq!(normalization(&fp).value, Normalization::ZScore);
        assert_eq!(augmentation(&fp).value, (false, false));
    }

    #[test]
    fn anisotropic_axis_takes_the_tenth_percentile() {
        let spacings: Vec<[f64; 3]> = (0..10).map(|n| [0.8, 0.8, 4.0 + n as f64 * 0.2]).collect();
        let fp = fingerprint(&spacings, [512, 512, 40], "CT");
        let spacing = target_spacing(&fp);
        // Median z spacing 5.0, 10th percentile 4.18.
        assert!(
            (spacing.value[2] - 4.18).abs() < 1e-6,
            "{:?}",
            spacing.value
        );
        assert_eq!(&spacing.value[..2], &[0.8, 0.8]);
        assert!(spacing.why.contains("anisotropic"), "{}", spacing.why);
        assert_eq!(sam_axis(spacing.value, [64.0; 3]).value, 2);
        // Moderately coarse z (2.5 mm against 1 mm) is not anisotropic by the rule.
        let fp = fingerprint(&[[1.0, 1.0, 2.5]], [35, 50, 14], "MRI");
        assert_eq!(target_spacing(&fp).value, [1.0, 1.0, 2.5]);
        assert_eq!(sam_axis([2.5, 1.0, 1.0], [20.0, 50.0, 50.0]).value, 0);
        // One-slice images finer in-plane than their nominal third spacing: across the slice,
        // never along a strip of it.
        let slices = sam_axis([1.5, 1.5, 1.0], [200.0, 180.0, 1.0]);
        assert_eq!(slices.value, 2);
        assert!(
            slices.why.contains("the thinnest (1 voxels)"),
            "{}",
            slices.why
        );
    }

    #[test]
    fn patches_round_to_the_network_and_shrink_to_the_budget() {
        let full = [16; 3];
        let p = patch([35.0, 50.0, 36.0], full, 4, 8, 4.0 * GIB);
        assert_eq!(p.value, [32, 48, 32]);
        let big = patch([150.0, 200.0, 90.0], full, 4, 16, 2.0 * GIB);
        assert!(
            training_bytes(big.value, 4, 16) <= 2.0 * GIB,
            "{:?}",
            big.value
        );
        assert!(big.value.iter().all(|s| s % 16 == 0));
        assert!(big.why.contains("shortened"), "{}", big.why);
        assert_eq!(patch([3.0, 5.0, 7.0], full, 1, 8, GIB).value, [16, 16, 16]);
    }

    #[test]
    fn thin_axes_are_pooled_only_as_often_as_they_halve() {
        let slices = poolings([214.0, 180.0, 1.0]);
        assert_eq!(slices.value, [4, 4, 0]);
        assert!(slices.why.contains("axis 2 (1 voxels)"), "{}", slices.why);
        let multiples = side_multiples(slices.value);
        assert_eq!(multiples, [16, 16, 1]);
        let p = patch([214.0, 180.0, 1.0], multiples, 2, 16, 4.0 * GIB);
        assert_eq!(p.value, [208, 176, 1]);
        assert!(p.why.contains("multiples of 16 x 16 x 1"), "{}", p.why);
        // A few slices: pooled while the side halves (6 → 2 poolings, patch 4).
        assert_eq!(poolings([64.0, 64.0, 6.0]).value, [4, 4, 2]);
        assert_eq!(
            patch([64.0, 64.0, 6.0], [16, 16, 4], 2, 8, GIB).value,
            [64, 64, 4]
        );
        // Ten thick slices: 3 poolings and a patch of 8, not 16 with 6 padded; from 16 voxels
        // on, the papers' four poolings.
        assert_eq!(poolings([64.0, 64.0, 10.0]).value, [4, 4, 3]);
        assert_eq!(
            patch([64.0, 64.0, 10.0], [16, 16, 8], 2, 8, GIB).value,
            [64, 64, 8]
        );
        assert_eq!(poolings([64.0, 64.0, 15.9]).value, [4, 4, 3]);
        assert_eq!(poolings([64.0, 64.0, 16.0]).value, [4, 4, 4]);
        let hippocampus = poolings([36.0, 50.0, 35.0]);
        assert_eq!(hippocampus.value, [4, 4, 4]);
        assert!(
            hippocampus.why.contains("4 poolings each"),
            "{}",
            hippocampus.why
        );
    }
}
