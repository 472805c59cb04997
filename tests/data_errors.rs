//! Bad input gives a clear error naming the file and the problem, never a panic. One test per
//! kind of problem; the bad files are made in temporary folders.

use std::fs;
use std::path::{Path, PathBuf};

use ndarray::Array3;
use semisam::data::{
    Dataset, Geometry, SourceFormat, Splits, Volume, h5, read_image, read_label, write_image,
    write_label,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

/// Assert that `err` names `file` and says `problem`.
fn assert_names(err: impl std::fmt::Display, file: &str, problem: &str) {
    let text = err.to_string();
    assert!(text.contains(file), "error does not name `{file}`: {text}");
    assert!(
        text.contains(problem),
        "error does not say `{problem}`: {text}"
    );
}

fn volume<T>(data: Array3<T>, spacing: [f64; 3]) -> Volume<T> {
    let mut affine = [[0.0; 4]; 4];
    for d in 0..3 {
        affine[d][d] = spacing[d];
    }
    affine[3][3] = 1.0;
    Volume {
        data,
        geometry: Geometry {
            spacing: Some(spacing),
            affine,
            nifti_header: None,
        },
        source: SourceFormat::Nifti,
        path: PathBuf::from("memory"),
    }
}

/// A one-case MSD dataset (labels 0, 1, 2) with the given image and label.
fn msd_case(dir: &Path, image: &Volume<f32>, label: &Volume<u8>) -> Dataset {
    write_image(image, dir.join("imagesTr/case_1.nii.gz")).unwrap();
    write_label(label, dir.join("labelsTr/case_1.nii.gz")).unwrap();
    fs::write(
        dir.join("dataset.json"),
        r#"{"labels": {"0": "background", "1": "a", "2": "b"},
            "training": [{"image": "./imagesTr/case_1.nii.gz", "label": "./labelsTr/case_1.nii.gz"}]}"#,
    )
    .unwrap();
    Dataset::open(dir).unwrap()
}

fn load_error(dataset: &Dataset) -> String {
    dataset
        .load_case(&dataset.cases[0])
        .unwrap_err()
        .to_string()
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_image(dir.path().join("absent.nii.gz")).unwrap_err();
    assert_names(err, "absent.nii.gz", "file not found");
}

#[test]
fn truncated_h5_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(fixtures().join("uamt/Training Set/CASE_B/mri_norm2.h5")).unwrap();
    let path = dir.path().join("cut.h5");
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_names(
        read_image(&path).unwrap_err(),
        "cut.h5",
        "the file is truncated",
    );
}

#[test]
fn truncated_gzip_nifti_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(fixtures().join("msd/imagesTr/hippocampus_003.nii.gz")).unwrap();
    let path = dir.path().join("cut.nii.gz");
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_names(
        read_image(&path).unwrap_err(),
        "cut.nii.gz",
        "the file is truncated: the gzip stream ends early",
    );
}

#[test]
fn truncated_uncompressed_nifti_voxel_data() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(fixtures().join("nifti/qform_only_float64.nii")).unwrap();
    let path = dir.path().join("short.nii");
    // Header (352 bytes) intact, 5x4x3 float64 voxels = 480 bytes declared, 100 kept.
    fs::write(&path, &bytes[..452]).unwrap();
    assert_names(
        read_image(&path).unwrap_err(),
        "short.nii",
        "voxel data holds 100 bytes, the header declares 480",
    );
}

#[test]
fn not_h5_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.h5");
    fs::write(&path, "this is a text file, not HDF5\n").unwrap();
    assert_names(
        read_label(&path).unwrap_err(),
        "case.h5",
        "not a valid HDF5 file",
    );
}

#[test]
fn not_nifti_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scan.nii");
    fs::write(&path, vec![7u8; 600]).unwrap();
    assert_names(
        read_image(&path).unwrap_err(),
        "scan.nii",
        "not a valid NIfTI-1 file",
    );
}

#[test]
fn missing_dataset_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image_only.h5");
    h5::write_case(&path, Some(&Array3::zeros([2, 2, 2])), None).unwrap();
    assert_names(
        read_label(&path).unwrap_err(),
        "image_only.h5",
        "missing dataset `label` (found: image)",
    );
}

#[test]
fn image_label_shape_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let image = volume(Array3::zeros([4, 4, 4]), [1.0; 3]);
    let label = volume(Array3::zeros([4, 4, 3]), [1.0; 3]);
    let dataset = msd_case(dir.path(), &image, &label);
    let err = load_error(&dataset);
    assert_names(&err, "imagesTr/case_1.nii.gz", "has shape 4x4x4 but label");
    assert_names(&err, "labelsTr/case_1.nii.gz", "has shape 4x4x3");
}

#[test]
fn image_label_geometry_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let image = volume(Array3::zeros([4, 4, 4]), [1.0, 1.0, 2.5]);
    let label = volume(Array3::zeros([4, 4, 4]), [1.0, 1.0, 3.0]);
    let dataset = msd_case(dir.path(), &image, &label);
    let err = load_error(&dataset);
    assert_names(
        &err,
        "case case_1: image",
        "have different geometry: spacing [1.0, 1.0, 2.5] vs [1.0, 1.0, 3.0]",
    );
    assert_names(&err, "labelsTr/case_1.nii.gz", "different geometry");
}

#[test]
fn label_values_outside_the_declared_set() {
    let dir = tempfile::tempdir().unwrap();
    let image = volume(Array3::zeros([3, 3, 3]), [1.0; 3]);
    let mut labels = Array3::zeros([3, 3, 3]);
    labels[[0, 0, 0]] = 2;
    labels[[1, 1, 1]] = 5;
    labels[[2, 2, 2]] = 3;
    let dataset = msd_case(dir.path(), &image, &volume(labels, [1.0; 3]));
    assert_names(
        load_error(&dataset),
        "labelsTr/case_1.nii.gz",
        "label values {3, 5} are outside the declared set {0, 1, 2}",
    );
}

#[test]
fn fractional_label_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("soft_label.nii.gz");
    let mut values = Array3::zeros([3, 3, 3]);
    values[[1, 2, 0]] = 0.5f32;
    write_image(&volume(values, [1.0; 3]), &path).unwrap();
    assert_names(
        read_label(&path).unwrap_err(),
        "soft_label.nii.gz",
        "label values must be integers in 0..=255, but 1 voxel(s) are not (first: 0.5",
    );
}

#[test]
fn nan_and_infinite_voxels() {
    let dir = tempfile::tempdir().unwrap();
    let mut values = Array3::zeros([3, 3, 3]);
    values[[0, 1, 2]] = f32::NAN;
    values[[2, 0, 0]] = f32::NEG_INFINITY;
    let dataset = msd_case(
        dir.path(),
        &volume(values, [1.0; 3]),
        &volume(Array3::zeros([3, 3, 3]), [1.0; 3]),
    );
    assert_names(
        load_error(&dataset),
        "imagesTr/case_1.nii.gz",
        "2 voxel(s) are NaN or infinite (first at index [0, 1, 2])",
    );
}

#[test]
fn empty_volume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.npy");
    write_label(&volume(Array3::zeros([0, 4, 4]), [1.0; 3]), &path).unwrap();
    assert_names(
        read_label(&path).unwrap_err(),
        "empty.npy",
        "empty volume (shape 0x4x4)",
    );
}

#[test]
fn duplicate_case_id_in_a_case_list() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("train.list"), "A1\nB2\nA1\n").unwrap();
    assert_names(
        Dataset::open(dir.path()).unwrap_err(),
        "train.list",
        "duplicate case ID `A1` (lines 1 and 3)",
    );
}

#[test]
fn case_in_two_splits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("splits.json");
    fs::write(&path, r#"{"labeled": ["a", "b"], "unlabeled": ["c"], "validation": [], "test": ["b"], "seed": 1}"#).unwrap();
    assert_names(
        Splits::load(&path).unwrap_err(),
        "splits.json",
        "case `b` is in two splits (labeled and test)",
    );
}

#[test]
fn case_in_both_train_and_test_lists() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("train.list"), "A1\nB2\n").unwrap();
    fs::write(dir.path().join("test.list"), "C3\nB2\n").unwrap();
    assert_names(
        Dataset::open(dir.path()).unwrap_err(),
        "test.list",
        "case `B2` is in two splits (train.list and test.list)",
    );
}

#[test]
fn unsupported_file_extension() {
    assert_names(
        read_image("scan.mha").unwrap_err(),
        "scan.mha",
        "unsupported file extension",
    );
}

#[test]
fn folder_with_no_known_layout() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert_names(
        err,
        &dir.path().display().to_string(),
        "unknown dataset layout",
    );
}

#[test]
fn malformed_dataset_json() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("dataset.json"), "{\"labels\": {\"0\": ").unwrap();
    assert_names(
        Dataset::open(dir.path()).unwrap_err(),
        "dataset.json",
        "not a valid JSON file",
    );
}
