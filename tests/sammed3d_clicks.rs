//! The SAM-Med3D click loop on the tiny fixture model: one click reproduces the PyTorch mask,
//! clicks come from the specialist's probability only, and embeddings are cached.

mod sammed3d_support;

use burn::tensor::Device;
use ndarray::{Array3, ArrayView3};
use sammed3d_support::*;
use semisam::generalists::clicks3d::{ClickLoopConfig, FirstMaskPrompt, SamMed3dClicks};
use semisam::generalists::sammed3d::SamMed3d;
use semisam::generalists::{Generalist, PseudoLabelRequest};
use semisam::ops::trilinear::trilinear_interpolate;
use semisam::prompts::confident_object;

fn generalist(config: ClickLoopConfig) -> SamMed3dClicks {
    let device = Device::default();
    let model =
        SamMed3d::load(&fixture_path("tiny_sammed3d.pth"), &tiny_config(), &device).unwrap();
    SamMed3dClicks::new(model, "tiny", config, 4, &device).unwrap()
}

fn full_region(shape: &[usize]) -> [std::ops::Range<usize>; 3] {
    [0..shape[0], 0..shape[1], 0..shape[2]]
}

/// The fixture click (d, h, w) of input 1, cases a and d.
const CLICK: [usize; 3] = [28, 36, 30];

/// The student's object for the fixture cases: a ball of radius 8 around [`CLICK`] with one voxel
/// wide lines through it along every axis, so that its bounding box is the whole 64³ volume (the
/// cube is the volume itself, start 0) and its deepest voxel is the ball's centre.
fn probability_around_the_fixture_click() -> Array3<f32> {
    let c = CLICK;
    Array3::from_shape_fn((64, 64, 64), |(i, j, k)| {
        let d2 = (i as i64 - c[0] as i64).pow(2)
            + (j as i64 - c[1] as i64).pow(2)
            + (k as i64 - c[2] as i64).pow(2);
        let on_line = [(j, k, 1, 2), (i, k, 0, 2), (i, j, 0, 1)]
            .iter()
            .any(|&(a, b, x, y)| a == c[x] && b == c[y]);
        if d2 <= 64 || on_line { 0.9f32 } else { 0.1 }
    })
}

/// One click on fixture input 1 with `config`; checks the crop and the click.
fn one_fixture_click(config: ClickLoopConfig) -> Array3<bool> {
    let probability = probability_around_the_fixture_click();
    let image = read_npy("input1_ellipsoid/volume.npy")
        .into_shape_with_order((64, 64, 64))
        .unwrap();
    let mut sam = generalist(ClickLoopConfig {
        clicks: 1,
        ..config
    });
    let request = PseudoLabelRequest {
        case_id: "input1",
        image: image.view(),
        region: full_region(image.shape()),
        probability: probability.view(),
    };
    let outcome = sam.run(&request).unwrap().unwrap();
    assert_eq!(outcome.crop.start, [0, 0, 0]);
    assert_eq!(outcome.clicks.len(), 1);
    assert_eq!(outcome.clicks[0].index, CLICK);
    assert!(outcome.clicks[0].positive);
    outcome.mask
}

/// `mask` must be `reference > 0` wherever the reference logit is farther than `band` from 0.
fn assert_mask_is_positive_logits(mask: &Array3<bool>, reference: ArrayView3<f32>, band: f32) {
    assert_eq!(mask.shape(), reference.shape());
    let (mut borderline, mut wrong) = (0, 0);
    for (&mine, &logit) in mask.iter().zip(reference.iter()) {
        if logit.abs() <= band {
            borderline += 1;
        } else if mine != (logit > 0.0) {
            wrong += 1;
        }
    }
    assert_eq!(wrong, 0, "{borderline} borderline voxels");
    let foreground = mask.iter().filter(|&&m| m).count();
    assert!(foreground > 1000, "{foreground} foreground voxels");
}

#[test]
fn one_click_at_the_object_centre_reproduces_the_pytorch_mask() {
    // One click with an all-zero mask prompt is fixture case a.
    let mask = one_fixture_click(ClickLoopConfig::default());
    let rel = "input1_ellipsoid/a_one_pos_zero_mask/masks_upsampled.npy";
    let reference = read_npy(rel).into_shape_with_order((64, 64, 64)).unwrap();
    assert_mask_is_positive_logits(&mask, reference.view(), tolerance(rel, "atol"));
}

#[test]
fn first_mask_prompt_none_is_the_no_mask_path() {
    // One click without a mask prompt is fixture case d, whose upsampled logits the fixtures
    // leave out: upsample its low-resolution logits (atol 5e-5) the same way; the band allows
    // for the low-resolution tolerance plus the upsampling's rounding.
    let mask = one_fixture_click(ClickLoopConfig {
        first_mask_prompt: FirstMaskPrompt::None,
        ..Default::default()
    });
    let low_res = tensor::<5>("input1_ellipsoid/d_one_pos_no_mask/low_res_masks.npy");
    let upsampled = trilinear_interpolate(low_res, [64, 64, 64], false).unwrap();
    let reference = Array3::from_shape_vec((64, 64, 64), values(upsampled)).unwrap();
    assert_mask_is_positive_logits(&mask, reference.view(), 1e-4);
    // and it is not case a's mask: "no mask" differs from an all-zero mask
    assert_ne!(mask, one_fixture_click(ClickLoopConfig::default()));
}

/// A volume with a bright ball at `centre` (what a ground truth would mark).
fn image_with_ball(centre: [f32; 3]) -> Array3<f32> {
    Array3::from_shape_fn((40, 36, 32), |(i, j, k)| {
        let d2 = (i as f32 - centre[0]).powi(2)
            + (j as f32 - centre[1]).powi(2)
            + (k as f32 - centre[2]).powi(2);
        if d2 < 36.0 { 2.0 } else { -0.5 }
    })
}

#[test]
fn clicks_come_from_the_probability_never_from_the_image_object() {
    // The student believes in a box [20, 31) x [14, 25) x [10, 19) (region coordinates) while
    // the image's bright ball sits elsewhere; the request has no label at all.
    let region = [4..36, 2..34, 3..31];
    let probability = Array3::from_shape_fn((32, 32, 28), |(i, j, k)| {
        if (20..31).contains(&i) && (14..25).contains(&j) && (10..19).contains(&k) {
            0.8f32
        } else {
            0.05
        }
    });
    let mut sam = generalist(ClickLoopConfig::default());
    let mut outcomes = Vec::new();
    for centre in [[8.0, 8.0, 8.0], [30.0, 25.0, 20.0]] {
        let image = image_with_ball(centre);
        let request = PseudoLabelRequest {
            case_id: "case",
            image: image.view(),
            region: region.clone(),
            probability: probability.view(),
        };
        outcomes.push(sam.run(&request).unwrap().unwrap());
    }
    // Box in image coordinates: [24, 35) x [16, 27) x [13, 22), centre (29.5, 21.5, 17.5):
    // start = ⌊centre − 32⌋ = (−3, −11, −15) whatever the image holds.
    for outcome in &outcomes {
        assert_eq!(outcome.crop.start, [-3, -11, -15]);
        // the box is 11 x 11 x 9: its deepest voxels are 5 from the outside (limited by k = 14),
        // the first in raster order is region (24, 18, 14) = image (28, 20, 17) = cube
        // (31, 31, 32)
        assert_eq!(outcome.clicks[0].index, [31, 31, 32]);
        assert!(outcome.clicks[0].positive);
        assert_eq!(outcome.mask.shape(), probability.shape());
    }
    // Every corrective click agrees with the student's object: positive inside, negative outside.
    let object = confident_object(probability.view(), 0.5).unwrap();
    for outcome in &outcomes {
        let (target, known) = outcome.crop.carry_in(object.view(), &region);
        assert!(
            outcome.clicks.len() > 1,
            "the tiny random model never matches the box at once"
        );
        for click in &outcome.clicks[1..] {
            assert!(known[click.index], "{click:?} outside the region");
            assert_eq!(target[click.index], click.positive, "{click:?}");
        }
    }
}

#[test]
fn no_confident_foreground_gives_no_label_and_no_embedding() {
    let image = image_with_ball([20.0, 18.0, 16.0]);
    let probability = Array3::from_elem((40, 36, 32), 0.45f32);
    let mut sam = generalist(ClickLoopConfig::default());
    let request = PseudoLabelRequest {
        case_id: "case",
        image: image.view(),
        region: full_region(image.shape()),
        probability: probability.view(),
    };
    assert!(sam.pseudo_label(&request).unwrap().is_none());
    assert_eq!(sam.cache_stats().misses, 0);
}

#[test]
fn embeddings_are_cached_per_case_and_cube() {
    let image = image_with_ball([20.0, 18.0, 16.0]);
    let probability = image.mapv(|v| if v > 0.0 { 0.9f32 } else { 0.1 });
    let mut sam = generalist(ClickLoopConfig {
        clicks: 2,
        ..Default::default()
    });
    let mut run = |case_id: &str| {
        let request = PseudoLabelRequest {
            case_id,
            image: image.view(),
            region: full_region(image.shape()),
            probability: probability.view(),
        };
        sam.pseudo_label(&request).unwrap().unwrap()
    };
    let first = run("a");
    let again = run("a");
    let other = run("b");
    assert_eq!(first.mask, again.mask);
    assert_eq!(first.mask, other.mask);
    assert!(first.prompts >= 1 && first.prompts <= 2);
    let stats = sam.cache_stats();
    assert_eq!((stats.hits, stats.misses), (1, 2));
}

#[test]
fn a_probability_that_does_not_fit_the_region_is_an_error() {
    let image = image_with_ball([20.0, 18.0, 16.0]);
    let probability = Array3::from_elem((4, 4, 4), 0.9f32);
    let mut sam = generalist(ClickLoopConfig::default());
    let request = PseudoLabelRequest {
        case_id: "odd",
        image: image.view(),
        region: [0..4, 0..4, 0..5],
        probability: probability.view(),
    };
    let err = sam.pseudo_label(&request).unwrap_err().to_string();
    assert!(
        err.contains("case odd") && err.contains("does not match the region"),
        "{err}"
    );
}
