//! `semisam sam3d` end to end on the tiny fixture model (SemiSAM's first two clicks).

mod sammed3d_support;

use ndarray::{Array3, ArrayD, Ix3};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use sammed3d_support::*;
use std::path::Path;
use std::process::Command;

fn write_cube(path: &Path, array: ArrayD<f32>) {
    let cube: Array3<f32> = {
        let side = array.shape()[array.ndim() - 1];
        array
            .into_shape_with_order((side, side, side))
            .unwrap()
            .into_dimensionality::<Ix3>()
            .unwrap()
    };
    cube.write_npy(std::fs::File::create(path).unwrap())
        .unwrap();
}

fn read_cube(path: &Path) -> ArrayD<f32> {
    ArrayD::<f32>::read_npy(std::fs::File::open(path).unwrap()).unwrap()
}

fn sam3d(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_semisam"))
        .arg("sam3d")
        .args(args)
        .output()
        .unwrap()
}

fn max_diff(a: &ArrayD<f32>, fixture: &str) -> f32 {
    let expected = read_npy(fixture);
    let expected: Vec<f32> = expected.iter().copied().collect();
    assert_eq!(a.len(), expected.len());
    a.iter()
        .zip(&expected)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn two_clicks_with_feedback_reproduce_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    write_cube(
        dir.path().join("volume.npy").as_path(),
        read_npy("input1_ellipsoid/volume.npy"),
    );
    write_cube(
        dir.path().join("zeros.npy").as_path(),
        read_npy("input1_ellipsoid/a_one_pos_zero_mask/mask_input.npy"),
    );
    let weights = fixture_path("tiny_sammed3d.pth")
        .to_string_lossy()
        .into_owned();
    let config = fixture_path("model_config_tiny.json")
        .to_string_lossy()
        .into_owned();
    let common = ["--weights", &weights, "--model-config", &config, "--image"];

    let (volume, zeros, out_a, low_a) =
        (p("volume.npy"), p("zeros.npy"), p("a.npy"), p("a_low.npy"));
    let mut args: Vec<&str> = common.to_vec();
    args.extend([&volume, "--point", "28,36,30,1", "--mask-input", &zeros]);
    args.extend(["--out", &out_a, "--out-low-res", &low_a]);
    let output = sam3d(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let logits = read_cube(Path::new(&out_a));
    assert_eq!(logits.shape(), &[64, 64, 64]);
    let case_a = "input1_ellipsoid/a_one_pos_zero_mask/masks_upsampled.npy";
    assert!(max_diff(&logits, case_a) <= tolerance(case_a, "atol"));

    let out_b = p("b.npy");
    let mut args: Vec<&str> = common.to_vec();
    args.extend([&volume, "--point", "28,36,30,1", "--point", "50,12,45,0"]);
    args.extend(["--mask-input", &low_a, "--out", &out_b]);
    let output = sam3d(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let case_b = "input1_ellipsoid/b_pos_neg_prev_logits/masks_upsampled.npy";
    assert!(max_diff(&read_cube(Path::new(&out_b)), case_b) <= tolerance(case_b, "atol"));
}

#[test]
fn bad_arguments_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.npy");
    write_cube(&small, ArrayD::zeros(vec![16, 16, 16]));
    let weights = fixture_path("tiny_sammed3d.pth")
        .to_string_lossy()
        .into_owned();
    let config = fixture_path("model_config_tiny.json")
        .to_string_lossy()
        .into_owned();
    let out = dir.path().join("out.npy").to_string_lossy().into_owned();
    let small = small.to_string_lossy().into_owned();
    let base = [
        "--weights",
        &weights,
        "--model-config",
        &config,
        "--out",
        &out,
        "--image",
        &small,
    ];

    let mut args = base.to_vec();
    args.extend(["--point", "1,2,3,7"]);
    let stderr = String::from_utf8_lossy(&sam3d(&args).stderr).into_owned();
    assert!(stderr.contains("label '7' is neither 1 nor 0"), "{stderr}");

    let stderr = String::from_utf8_lossy(&sam3d(&base).stderr).into_owned();
    assert!(
        stderr.contains("small.npy") && stderr.contains("64x64x64"),
        "{stderr}"
    );
    assert!(!Path::new(&out).exists());
}
