//! Bad inputs to the SAM-Med3D library API are errors that say what is wrong.

mod sammed3d_support;

use burn::tensor::{Device, Tensor};
use sammed3d_support::*;
use semisam::generalists::sammed3d::{PointLabel, PointPrompt};

#[test]
fn wrong_volume_shape_is_an_error() {
    let volume = Tensor::<5>::zeros([1, 1, 64, 64, 32], &Device::default());
    let err = tiny_model().embed(volume).unwrap_err().to_string();
    assert!(
        err.contains("[1, 1, 64, 64, 32]") && err.contains("[1, 1, 64, 64, 64]"),
        "{err}"
    );
}

#[test]
fn clicks_outside_the_volume_and_wrong_mask_shapes_are_errors() {
    let model = tiny_model();
    let outside = PointPrompt {
        coord: [10.0, 64.0, 3.0],
        label: PointLabel::Positive,
    };
    let err = model
        .encode_prompts(&[outside], None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[10.0, 64.0, 3.0]") && err.contains("outside"),
        "{err}"
    );
    let mask = Tensor::<5>::zeros([1, 1, 16, 16, 16], &Device::default());
    let err = model
        .encode_prompts(&[], Some(mask))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[1, 1, 16, 16, 16]") && err.contains("[1, 1, 32, 32, 32]"),
        "{err}"
    );
}

#[test]
fn an_all_zero_mask_prompt_is_not_the_absent_mask() {
    // SemiSAM's click 0 passes zeros; `None` takes the learnt no-mask embedding instead.
    let model = tiny_model();
    let zeros = Tensor::<5>::zeros([1, 1, 32, 32, 32], &Device::default());
    let with_zeros = values(model.encode_prompts(&[], Some(zeros)).unwrap().dense);
    let without = values(model.encode_prompts(&[], None).unwrap().dense);
    let diff = with_zeros
        .iter()
        .zip(&without)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        diff > 0.1,
        "zero mask and no mask embed alike (max diff {diff})"
    );
}
