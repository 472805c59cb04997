//! NIfTI reading and writing checked against what nibabel reports for the same files
//! (tests/fixtures/data/nifti/nibabel.json, made by scripts/make_data_fixtures.py).
//!
//! With `SEMISAM_NIFTI_CHECK_DIR=<dir>` the written files and a manifest are kept in `<dir>`, so
//! that `scripts/check_nifti_with_nibabel.py <dir>` can verify them with nibabel itself.

use std::path::{Path, PathBuf};

use semisam::data::nifti_file::output_header;
use semisam::data::{
    Geometry, SourceFormat, Volume, read_image, read_label, write_image, write_label,
};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

fn nibabel_report() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("nifti/nibabel.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

/// Fixture path for a nibabel.json key (synthetic files live in nifti/, MSD ones are keyed by
/// their path under the fixture root).
fn fixture_path(key: &str) -> PathBuf {
    if key.contains('/') {
        fixtures().join(key)
    } else {
        fixtures().join("nifti").join(key)
    }
}

fn is_label(key: &str) -> bool {
    key.contains("label")
}

fn matrix(v: &Value) -> [[f64; 4]; 4] {
    let mut m = [[0.0; 4]; 4];
    for (r, row) in v.as_array().unwrap().iter().enumerate() {
        for (c, x) in row.as_array().unwrap().iter().enumerate() {
            m[r][c] = x.as_f64().unwrap();
        }
    }
    m
}

fn assert_affine_eq(got: &[[f64; 4]; 4], expected: &[[f64; 4]; 4], what: &str) {
    for r in 0..4 {
        for c in 0..4 {
            // The header stores float32; nibabel and we both widen the same float32 values.
            assert!(
                (got[r][c] - expected[r][c]).abs() < 1e-6,
                "{what}: affine[{r}][{c}] {} vs nibabel {}",
                got[r][c],
                expected[r][c]
            );
        }
    }
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Compare a volume's values (as f64) with nibabel's full data or samples, sum, min and max.
fn assert_data_matches(values: &ndarray::Array3<f64>, entry: &Value, what: &str) {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    if let Some(all) = entry.get("data_c_order") {
        let expected = f64s(all);
        assert_eq!(values.len(), expected.len(), "{what}");
        for (n, (g, e)) in values.iter().zip(&expected).enumerate() {
            assert!(close(*g, *e), "{what}: flat index {n}: {g} vs nibabel {e}");
        }
    }
    if let Some(samples) = entry.get("samples") {
        for s in samples.as_array().unwrap() {
            let s = f64s(s);
            let (i, j, k) = (s[0] as usize, s[1] as usize, s[2] as usize);
            assert!(
                close(values[[i, j, k]], s[3]),
                "{what}: voxel ({i},{j},{k}) {} vs nibabel {}",
                values[[i, j, k]],
                s[3]
            );
        }
    }
    let sum: f64 = values.iter().sum();
    assert!(
        (sum - entry["sum"].as_f64().unwrap()).abs() <= 1e-4 * sum.abs().max(1.0),
        "{what}: sum {sum} vs nibabel {}",
        entry["sum"]
    );
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(
        close(min, entry["min"].as_f64().unwrap()) && close(max, entry["max"].as_f64().unwrap()),
        "{what}: range {min}..{max}"
    );
}

fn assert_geometry_matches(geometry: &Geometry, shape: [usize; 3], entry: &Value, what: &str) {
    let expected_shape: Vec<usize> = entry["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(shape.to_vec(), expected_shape, "{what}: shape");
    assert_affine_eq(&geometry.affine, &matrix(&entry["affine"]), what);
    let zooms = f64s(&entry["zooms"]);
    let spacing = geometry.spacing.expect("NIfTI stores a spacing");
    for d in 0..3 {
        assert!(
            (spacing[d] - zooms[d]).abs() < 1e-9,
            "{what}: spacing {spacing:?} vs nibabel zooms {zooms:?}"
        );
    }
    let header = geometry.nifti_header.as_ref().expect("header kept");
    assert_eq!(
        header.qform_code as i64,
        entry["qform_code"].as_i64().unwrap(),
        "{what}: qform_code"
    );
    assert_eq!(
        header.sform_code as i64,
        entry["sform_code"].as_i64().unwrap(),
        "{what}: sform_code"
    );
}

#[test]
fn reading_agrees_with_nibabel_on_every_fixture() {
    let report = nibabel_report();
    assert_eq!(
        report.len(),
        8,
        "fixture set changed: {:?}",
        report.keys().collect::<Vec<_>>()
    );
    for (key, entry) in &report {
        let path = fixture_path(key);
        let image = read_image(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(image.source, SourceFormat::Nifti);
        assert_geometry_matches(&image.geometry, image.shape(), entry, key);
        assert_data_matches(&image.data.mapv(|v| v as f64), entry, key);
        if is_label(key) {
            let label = read_label(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_geometry_matches(&label.geometry, label.shape(), entry, key);
            assert_data_matches(&label.data.mapv(|v| v as f64), entry, key);
        }
    }
}

#[test]
fn qform_only_file_uses_the_quaternion_affine_and_sform_wins_when_set() {
    let report = nibabel_report();
    // qform_only_float64.nii has sform_code 0: our affine must be the quaternion one.
    let qform_only = read_image(fixture_path("qform_only_float64.nii")).unwrap();
    assert_affine_eq(
        &qform_only.geometry.affine,
        &matrix(&report["qform_only_float64.nii"]["qform"]),
        "qform",
    );
    // aniso_int16 has different qform (code 1) and sform (code 2): sform is the one used.
    let aniso = &report["aniso_int16.nii.gz"];
    assert_ne!(aniso["qform"], aniso["sform"]);
    let image = read_image(fixture_path("aniso_int16.nii.gz")).unwrap();
    assert_affine_eq(&image.geometry.affine, &matrix(&aniso["sform"]), "sform");
}

#[test]
fn scaling_slope_and_intercept_are_applied() {
    // scaled_uint8 stores i + j + k with scl_slope 2 and scl_inter -1.
    let image = read_image(fixture_path("scaled_uint8.nii.gz")).unwrap();
    for ((i, j, k), v) in image.data.indexed_iter() {
        assert_eq!(*v, 2.0 * (i + j + k) as f32 - 1.0);
    }
}

/// Where written files go: the check folder when asked for, else a temporary one.
fn output_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("SEMISAM_NIFTI_CHECK_DIR") {
        Some(dir) => {
            std::fs::create_dir_all(&dir).unwrap();
            (PathBuf::from(dir), None)
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            (tmp.path().to_path_buf(), Some(tmp))
        }
    }
}

#[test]
fn written_files_keep_header_geometry_and_data() {
    let report = nibabel_report();
    let (out, _keep) = output_dir();
    let mut manifest = Vec::new();
    for (key, entry) in &report {
        let source = fixture_path(key);
        let stem = key
            .replace('/', "_")
            .replace(".nii.gz", "")
            .replace(".nii", "");
        let image = read_image(&source).unwrap();
        let written = out.join(format!("{stem}.image.nii.gz"));
        write_image(&image, &written).unwrap();
        let back = read_image(&written).unwrap();
        assert_geometry_matches(
            &back.geometry,
            back.shape(),
            entry,
            &format!("{key} written as image"),
        );
        assert_data_matches(
            &back.data.mapv(|v| v as f64),
            entry,
            &format!("{key} written as image"),
        );
        let (old, new) = (
            image.geometry.nifti_header.as_ref().unwrap(),
            back.geometry.nifti_header.as_ref().unwrap(),
        );
        assert_eq!(
            (
                old.pixdim,
                old.quatern_b,
                old.quatern_c,
                old.quatern_d,
                old.quatern_x,
                old.quatern_y,
                old.quatern_z
            ),
            (
                new.pixdim,
                new.quatern_b,
                new.quatern_c,
                new.quatern_d,
                new.quatern_x,
                new.quatern_y,
                new.quatern_z
            ),
            "{key}: pixdim / quaternion"
        );
        assert_eq!(
            (old.srow_x, old.srow_y, old.srow_z, old.xyzt_units),
            (new.srow_x, new.srow_y, new.srow_z, new.xyzt_units)
        );
        assert_eq!(new.datatype, 16, "{key}: images are written as float32");
        manifest.push(json!({"written": written.file_name().unwrap().to_str(), "source": key, "kind": "image"}));
        if is_label(key) {
            let label = read_label(&source).unwrap();
            let written = out.join(format!("{stem}.label.nii.gz"));
            write_label(&label, &written).unwrap();
            let back = read_label(&written).unwrap();
            assert_eq!(back.data, label.data, "{key}: label data");
            assert_geometry_matches(
                &back.geometry,
                back.shape(),
                entry,
                &format!("{key} written as label"),
            );
            assert_eq!(
                back.geometry.nifti_header.as_ref().unwrap().datatype,
                2,
                "{key}: labels are written as uint8"
            );
            manifest.push(json!({"written": written.file_name().unwrap().to_str(), "source": key, "kind": "label"}));
        }
    }
    manifest.push(write_synthetic_anisotropic(&out));
    let text = serde_json::to_string_pretty(&json!({ "files": manifest })).unwrap();
    std::fs::write(out.join("manifest.json"), text).unwrap();
}

/// A volume made in memory (no source header) with anisotropic spacing and an oblique affine:
/// written with sform code 2 from its geometry, qform code 0.
fn write_synthetic_anisotropic(out: &Path) -> Value {
    let (c, s) = (0.8f64, 0.6f64);
    let spacing = [0.7, 0.7, 2.5];
    let affine = [
        [c * spacing[0], -s * spacing[1], 0.0, -12.5],
        [s * spacing[0], c * spacing[1], 0.0, 30.0],
        [0.0, 0.0, spacing[2], -7.25],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let data =
        ndarray::Array3::from_shape_fn([4, 3, 2], |(i, j, k)| (i * 100 + j * 10 + k) as f32 * 0.5);
    let volume = Volume {
        data: data.clone(),
        geometry: Geometry {
            spacing: Some(spacing),
            affine,
            nifti_header: None,
        },
        source: SourceFormat::Npy,
        path: PathBuf::from("synthetic"),
    };
    let header = output_header(&volume);
    assert_eq!(
        (header.sform_code, header.qform_code, header.xyzt_units),
        (2, 0, 2)
    );
    let written = out.join("synthetic_anisotropic.image.nii.gz");
    write_image(&volume, &written).unwrap();
    let back = read_image(&written).unwrap();
    assert_eq!(back.data, data);
    assert_eq!(
        back.geometry.spacing,
        Some([0.699999988079071, 0.699999988079071, 2.5])
    );
    assert_affine_eq(
        &back.geometry.affine,
        &affine.map(|row| row.map(|v| v as f32 as f64)),
        "synthetic",
    );
    json!({
        "written": "synthetic_anisotropic.image.nii.gz",
        "kind": "image",
        "expected": {
            "affine": affine,
            "qform_code": 0,
            "sform_code": 2,
            "zooms": spacing,
            "data_c_order": data.iter().map(|v| *v as f64).collect::<Vec<_>>(),
        }
    })
}
