//! Shared helpers of the SAM-Med3D tests: fixture reading, tolerances and comparison.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use semisam::generalists::sammed3d::{ModelConfig, PointLabel, PointPrompt, SamMed3d};
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sammed3d")
        .join(rel)
}

pub fn read_npy(rel: &str) -> ArrayD<f32> {
    let path = fixture_path(rel);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    ArrayD::<f32>::read_npy(file).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

pub fn tensor<const D: usize>(rel: &str) -> Tensor<D> {
    let array = read_npy(rel);
    let shape: [usize; D] = array
        .shape()
        .try_into()
        .unwrap_or_else(|_| panic!("{rel}: shape {:?} is not {D}-D", array.shape()));
    let values: Vec<f32> = array.iter().copied().collect();
    Tensor::from_data(TensorData::new(values, shape), &Device::default())
}

/// `kind` is "atol", "atol_given_saved_inputs" or "atol_block_alone".
pub fn tolerance(rel: &str, kind: &str) -> f32 {
    static TABLE: OnceLock<serde_json::Value> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let text = std::fs::read_to_string(fixture_path("tolerances.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    });
    table["files"][rel][kind]
        .as_f64()
        .unwrap_or_else(|| panic!("no {kind} for {rel} in tolerances.json")) as f32
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Asserts `max |actual − fixture| <= atol` and equal shapes; returns the difference.
pub fn assert_close<const D: usize>(what: &str, actual: Tensor<D>, rel: &str, atol: f32) -> f32 {
    let expected = read_npy(rel);
    assert_eq!(
        actual.dims().as_slice(),
        expected.shape(),
        "{what}: shape differs from {rel}"
    );
    let actual = values(actual);
    let diff = actual
        .iter()
        .zip(expected.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        actual.iter().all(|v| v.is_finite()),
        "{what}: non-finite output"
    );
    assert!(
        diff <= atol,
        "{what}: max abs diff {diff:e} > atol {atol:e} ({rel})"
    );
    diff
}

pub fn tiny_config() -> ModelConfig {
    ModelConfig::from_json_file(&fixture_path("model_config_tiny.json")).unwrap()
}

pub fn tiny_model() -> &'static SamMed3d {
    static MODEL: OnceLock<SamMed3d> = OnceLock::new();
    MODEL.get_or_init(|| {
        SamMed3d::load(
            &fixture_path("tiny_sammed3d.pth"),
            &tiny_config(),
            &Device::default(),
        )
        .unwrap()
    })
}

/// The clicks of a fixture case (`point_coords` (1, N, 3) and `point_labels` (1, N)); none
/// when the case has no `point_coords` (the reference's `points=None`).
pub fn points(case: &str) -> Vec<PointPrompt> {
    if !fixture_path(&format!("{case}/point_coords.npy")).exists() {
        return Vec::new();
    }
    let coords = read_npy(&format!("{case}/point_coords.npy"));
    let labels = read_npy(&format!("{case}/point_labels.npy"));
    let n = labels.len();
    let coords: Vec<f32> = coords.iter().copied().collect();
    labels
        .iter()
        .enumerate()
        .map(|(i, &label)| PointPrompt {
            coord: [coords[3 * i], coords[3 * i + 1], coords[3 * i + 2]],
            label: if label == 1.0 {
                PointLabel::Positive
            } else {
                PointLabel::Negative
            },
        })
        .take(n)
        .collect()
}
