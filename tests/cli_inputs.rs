//! Inputs as a user gives them to the `semisam` binary: real 8-bit PNGs and npy files to
//! `sam2d`, boxes outside the image, non-finite pixels, datasets without training cases, all-zero
//! images and patches larger than the images (`inspect` and `train`).

mod cli_support;

use std::path::Path;

use cli_support::{demo_ids, demo_subset, fails, semisam, succeeds, text, tiny_config, train_args};
use ndarray::Array2;
use ndarray_npy::write_npy;

/// A 72x60 grey image with a bright, textured ellipse on a darker gradient: values spread over
/// 0..=230, so that a decoder mistaking 8 bits for 16 would saturate most of them.
fn grey_image() -> Array2<u8> {
    Array2::from_shape_fn((60, 72), |(y, x)| {
        let (dx, dy) = ((x as f64 - 38.0) / 16.0, (y as f64 - 28.0) / 11.0);
        if dx * dx + dy * dy < 1.0 {
            (180 + (x * 7 + y * 3) % 50) as u8
        } else {
            (20 + x / 2 + y / 3) as u8
        }
    })
}

fn write_png(path: &Path, image: &Array2<u8>) {
    let (h, w) = image.dim();
    image::GrayImage::from_raw(w as u32, h as u32, image.iter().copied().collect())
        .unwrap()
        .save(path)
        .unwrap();
}

fn weights_available() -> bool {
    semisam::generalists::weights_cache::locate(&semisam::generalists::weights_cache::LITEMEDSAM)
        .is_ok()
}

#[test]
fn an_8_bit_png_gives_the_mask_of_the_same_pixels_as_npy() {
    assert!(
        weights_available(),
        "this test runs LiteMedSAM and needs its weights: run `semisam weights fetch` (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let image = grey_image();
    let (png, npy) = (dir.path().join("slice.png"), dir.path().join("slice.npy"));
    write_png(&png, &image);
    write_npy(&npy, &image).unwrap();
    let mask = |input: &Path, out: &str| {
        let out = dir.path().join(out);
        succeeds(&[
            "sam2d",
            "--image",
            text(input),
            "--box",
            "20,15,56,41",
            "--out",
            text(&out),
        ]);
        image::open(&out).unwrap().to_luma8()
    };
    let from_png = mask(&png, "png_mask.png");
    let from_npy = mask(&npy, "npy_mask.png");
    assert_eq!(from_png.dimensions(), (72, 60));
    let foreground = from_npy.pixels().filter(|p| p.0[0] > 0).count();
    assert!(
        foreground > 100,
        "the ellipse was not segmented: {foreground} pixels"
    );
    assert!(
        from_png == from_npy,
        "the PNG and the npy of the same pixels differ"
    );
}

#[test]
fn sam2d_refuses_a_box_outside_the_image_and_non_finite_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("slice.png");
    write_png(&png, &grey_image());
    let out = dir.path().join("mask.png");
    // `sam2d --image IMAGE [--slice K] --box BOX --out OUT` fails saying `IMAGE: problem`.
    let refused = |image: &Path, slice: Option<&str>, bbox: &str, out: &Path, problem: &str| {
        let mut args = vec!["sam2d", "--image", text(image)];
        if let Some(slice) = slice {
            args.extend(["--slice", slice]);
        }
        args.extend(["--box", bbox, "--out", text(out)]);
        let err = fails(&args);
        let expected = format!("{}: {problem}", image.display());
        assert!(err.contains(&expected), "{expected}: {err}");
    };
    refused(
        &png,
        None,
        "100,10,120,30",
        &out,
        "box 100,10,120,30 lies outside the 72x60 image",
    );
    refused(
        &png,
        Some("2"),
        "20,15,56,41",
        &out,
        "--slice 2 picks a slice of a volume, but this is a 2-D image: leave --slice out",
    );
    let mut pixels = grey_image().mapv(f32::from);
    pixels[[10, 12]] = f32::INFINITY;
    let npy = dir.path().join("inf.npy");
    write_npy(&npy, &pixels).unwrap();
    refused(
        &npy,
        None,
        "20,15,56,41",
        &out,
        "1 pixel(s) are NaN or infinite",
    );
    assert!(!out.exists());
    // The mask is PNG bytes whatever the name says, so any other name is refused up front.
    let jpg = dir.path().join("mask.jpg");
    let args = [
        "sam2d",
        "--image",
        text(&png),
        "--box",
        "20,15,56,41",
        "--out",
        text(&jpg),
    ];
    let err = fails(&args);
    assert!(
        err.contains(&format!(
            "{}: the mask is written as a PNG; name the output file .png",
            jpg.display()
        )),
        "{err}"
    );
    assert!(!jpg.exists());
}

#[test]
fn inspect_refuses_a_dataset_without_training_cases() {
    let dir = tempfile::tempdir().unwrap();
    let json =
        serde_json::json!({"name": "x", "labels": {"0": "background", "1": "a"}, "test": []});
    std::fs::write(dir.path().join("dataset.json"), json.to_string()).unwrap();
    let out = semisam(&["inspect", text(dir.path())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}: has no `training` list (or an empty one): the dataset has no training case",
            dir.path().join("dataset.json").display()
        )),
        "{err}"
    );
}

#[test]
fn all_zero_images_and_patches_larger_than_the_image_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("data");
    demo_subset(&dataset, 3, |index, image| {
        if index == 2 {
            image.data.fill(0.0);
        }
    });
    let ids = demo_ids(3);
    let out = semisam(&["inspect", text(&dataset), "--patch", "16,64,16"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let zero_warning = "WARNING: every voxel of the image is 0";
    assert_eq!(stdout.matches(zero_warning).count(), 1, "{stdout}");
    assert!(
        stdout.contains("is smaller than the training patch (16x64x16) along axis 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("summary: 3 cases, 0 with problems, 0 problem(s)"),
        "{stdout}"
    );

    // train: the all-zero case is the validation case (the last one), the patch is too tall.
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, tiny_config(&dataset, 1, 1, "")).unwrap();
    let runs = dir.path().join("runs");
    let err = succeeds(&train_args(
        &config,
        &runs,
        "warned",
        &["--set", "training.patch=[16,64,16]"],
    ));
    assert!(
        err.contains(&format!(
            "warning: case {}: every voxel of the image has the same value",
            ids[2]
        )),
        "{err}"
    );
    for id in &ids {
        assert!(
            err.contains(&format!("warning: case {id}: the image (")),
            "{id}: {err}"
        );
    }
}

#[test]
fn a_missing_file_is_named_once_with_the_system_reason() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("absent.ckpt");
    let config = dir.path().join("absent.toml");
    let stderr = fails(&[
        "predict",
        "--checkpoint",
        text(&checkpoint),
        "--input",
        text(dir.path()),
        "--output",
        text(&dir.path().join("out")),
    ]);
    let train = fails(&["train", "--config", text(&config)]);
    for (stderr, path) in [(stderr, &checkpoint), (train, &config)] {
        assert!(stderr.contains(text(path)), "{stderr}");
        assert_eq!(
            stderr.matches("os error 2").count(),
            1,
            "the cause is repeated:\n{stderr}"
        );
    }
}

/// A relative data.root is read from the current folder; when it is not there, the error says
/// so, since users expect it beside the configuration file. No run folder is created.
#[test]
fn a_missing_relative_data_root_names_the_current_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        tiny_config(Path::new("no_such_folder/data"), 1, 0, ""),
    )
    .unwrap();
    let runs = dir.path().join("runs");
    let err = fails(&train_args(&config, &runs, "r", &[]));
    assert!(
        err.contains(&format!(
            "(data.root no_such_folder/data is read from the current folder {}, not from the configuration's)",
            std::env::current_dir().unwrap().display()
        )),
        "{err}"
    );
    assert!(!runs.exists());
}
