//! `semisam plan` on the embedded Hippocampus subset and on a copy resampled to 1 x 1 x 2.5 mm,
//! and a model planned and trained at 1 mm predicting the 2.5 mm copy on its own grid.

use std::path::{Path, PathBuf};

mod cli_support;

use cli_support::{fails, semisam, succeeds as ok};
use ndarray::Array3;
use semisam::data::resample::{resample_image, resample_label};
use semisam::data::{
    Geometry, SourceFormat, Volume, read_image, read_label, write_image, write_label,
};
use semisam::metrics::dice_from_counts;
use semisam::training::RunConfig;

const DEMO: &str = "demo/hippocampus";
/// A label-free image of the demo.
const UNLABELED: &str = "hippocampus_007";
const COARSE: [f64; 3] = [1.0, 1.0, 2.5];
/// Labeled demo cases used by the end-to-end test: four train, the fifth validates.
const CASES: [&str; 5] = [
    "hippocampus_001",
    "hippocampus_003",
    "hippocampus_004",
    "hippocampus_006",
    "hippocampus_015",
];

fn image_path(root: &Path, id: &str) -> PathBuf {
    root.join("imagesTr").join(format!("{id}.nii.gz"))
}

fn label_path(root: &Path, id: &str) -> PathBuf {
    root.join("labelsTr").join(format!("{id}.nii.gz"))
}

/// An MSD dataset of the demo's cases `ids`: the files themselves, or (with a spacing) their
/// resampled copies plus one resampled label-free image.
fn write_dataset(root: &Path, ids: &[&str], spacing: Option<[f64; 3]>) {
    std::fs::create_dir_all(root.join("imagesTr")).unwrap();
    std::fs::create_dir_all(root.join("labelsTr")).unwrap();
    let demo = Path::new(DEMO);
    for id in ids {
        let image = read_image(image_path(demo, id)).unwrap();
        let label = read_label(label_path(demo, id)).unwrap();
        match spacing {
            None => {
                std::fs::copy(image_path(demo, id), image_path(root, id)).unwrap();
                std::fs::copy(label_path(demo, id), label_path(root, id)).unwrap();
            }
            Some(target) => {
                let from = image.geometry.spacing.unwrap();
                let geometry = coarse_geometry(&image.geometry, from, target);
                let image = Volume {
                    data: resample_image(image.data.view(), from, target),
                    geometry: geometry.clone(),
                    source: SourceFormat::Nifti,
                    path: image_path(root, id),
                };
                let label = Volume {
                    data: resample_label(label.data.view(), from, target),
                    geometry,
                    source: SourceFormat::Nifti,
                    path: label_path(root, id),
                };
                write_image(&image, image_path(root, id)).unwrap();
                write_label(&label, label_path(root, id)).unwrap();
            }
        }
    }
    if let Some(target) = spacing {
        // One label-free image, as a user's unannotated scan, so that the plan prompts SAM.
        let unlabeled = root.join("imagesUnlabeled");
        std::fs::create_dir_all(&unlabeled).unwrap();
        let image = read_image(
            demo.join("imagesUnlabeled")
                .join(format!("{UNLABELED}.nii.gz")),
        )
        .unwrap();
        let from = image.geometry.spacing.unwrap();
        let path = unlabeled.join(format!("{UNLABELED}.nii.gz"));
        let image = Volume {
            data: resample_image(image.data.view(), from, target),
            geometry: coarse_geometry(&image.geometry, from, target),
            source: SourceFormat::Nifti,
            path: path.clone(),
        };
        write_image(&image, path).unwrap();
    }
    write_dataset_json(root, ids, "Hippocampus copy", "nii.gz");
}

/// The MSD `dataset.json` of labeled cases `ids` stored as `imagesTr/<id>.<extension>` and
/// `labelsTr/<id>.<extension>`.
fn write_dataset_json(root: &Path, ids: &[&str], name: &str, extension: &str) {
    let training: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({
                "image": format!("./imagesTr/{id}.{extension}"),
                "label": format!("./labelsTr/{id}.{extension}"),
            })
        })
        .collect();
    let json = serde_json::json!({
        "name": name,
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
        "numTraining": ids.len(),
        "training": training,
        "test": [],
    });
    std::fs::write(
        root.join("dataset.json"),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
}

/// The affine of the same field of view sampled at `target`: each axis's direction column is
/// scaled, and the origin moves so that the outer faces stay where they were.
fn coarse_geometry(geometry: &Geometry, from: [f64; 3], target: [f64; 3]) -> Geometry {
    let mut affine = geometry.affine;
    for d in 0..3 {
        let scale = target[d] / from[d];
        for row in affine.iter_mut().take(3) {
            let column = row[d];
            row[d] = column * scale;
            // Voxel 0's centre sits half a new voxel inside the old outer face.
            row[3] += column * (scale - 1.0) / 2.0;
        }
    }
    Geometry {
        spacing: Some(target),
        affine,
        nifti_header: None,
    }
}

fn plan(dataset: &Path, out: &Path) -> (RunConfig, String) {
    ok(&[
        "plan",
        dataset.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(out).unwrap();
    let config = RunConfig::from_toml_str(&text, &[], "plan").unwrap();
    // Comments are wrapped: one line per reason reads better in assertions.
    (config, text.replace("\n# ", " "))
}

#[test]
fn plans_of_the_demo_subset_and_of_a_coarser_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (fine, text) = plan(Path::new(DEMO), &dir.path().join("fine/plan.toml"));
    assert_eq!(fine.data.target_spacing, Some([1.0, 1.0, 1.0]));
    assert_eq!(fine.data.modality.as_deref(), Some("MRI"));
    assert_eq!(fine.training.patch, [32, 48, 32]);
    assert_eq!(fine.network.num_classes, 3);
    assert_eq!(sam_axis(&fine), Some(2));
    assert!(!fine.training.augment.rot90 && !fine.training.augment.flip);
    assert!(
        text.contains("the median voxel spacing of the 9 training images (mm)"),
        "{text}"
    );
    let fingerprint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("fine/fingerprint.json")).unwrap())
            .unwrap();
    assert_eq!(fingerprint["modality"], "MRI");
    assert_eq!(fingerprint["class_volumes"].as_array().unwrap().len(), 2);
    assert!(fingerprint["foreground_intensity"]["std"].as_f64().unwrap() > 0.0);

    let coarse_root = dir.path().join("coarse");
    write_dataset(&coarse_root, &CASES, Some(COARSE));
    let (coarse, text) = plan(&coarse_root, &dir.path().join("coarse/plan.toml"));
    // 2.5 mm is less than 3x 1 mm: the median spacing, and slices across the coarse z axis.
    assert_eq!(coarse.data.target_spacing, Some(COARSE));
    assert_eq!(coarse.training.patch[..2], [32, 48]);
    // 35 slices of 1 mm are 14 of 2.5 mm: pooled 3 times, a patch of 8 instead of 16 padded.
    assert_eq!(coarse.training.patch[2], 8);
    assert_eq!(coarse.network.poolings, [4, 4, 3]);
    assert!(
        text.contains(
            "axis 2 (14 voxels) shorter than 16 voxels: pooled only as often as it halves"
        ),
        "{text}"
    );
    assert_eq!(sam_axis(&coarse), Some(2));
    assert!(
        text.contains("slices across axis 2, the coarsest (2.5 mm)"),
        "{text}"
    );
}

#[test]
fn one_field_of_view_stored_at_two_resolutions_gets_the_patch_of_its_resampled_shapes() {
    // Three demo cases at 1 mm, two more and the label-free image at 0.5 mm: target 0.75 mm, on
    // which every image covers about the same number of voxels. The median of the stored shapes
    // (half of them twice the size) scaled by the median spacing would overstate it.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mixed");
    write_dataset(&root, &CASES[..3], None);
    write_dataset(&root, &CASES[3..], Some([0.5; 3]));
    write_dataset_json(&root, &CASES, "Hippocampus at two resolutions", "nii.gz");
    let (config, text) = plan(&root, &dir.path().join("plan.toml"));
    assert_eq!(config.data.target_spacing, Some([0.75; 3]));

    let images = CASES.iter().map(|id| image_path(&root, id)).chain([root
        .join("imagesUnlabeled")
        .join(format!("{UNLABELED}.nii.gz"))]);
    let resampled: Vec<[f64; 3]> = images
        .map(|path| {
            let image = read_image(path).unwrap();
            let spacing = image.geometry.spacing.unwrap();
            let shape = image.data.shape().to_vec();
            std::array::from_fn(|d| shape[d] as f64 * spacing[d] / 0.75)
        })
        .collect();
    let median: [f64; 3] = std::array::from_fn(|d| {
        let mut sides: Vec<f64> = resampled.iter().map(|s| s[d]).collect();
        sides.sort_by(f64::total_cmp);
        (sides[2] + sides[3]) / 2.0
    });
    let stated = format!(
        "the median resampled shape {} x {} x {} rounded down to multiples of 16",
        median[0].round(),
        median[1].round(),
        median[2].round()
    );
    assert!(text.contains(&stated), "expected '{stated}' in {text}");
    let patch: Vec<usize> = median.iter().map(|s| (*s as usize / 16) * 16).collect();
    assert_eq!(config.training.patch.to_vec(), patch);
}

/// An MSD dataset of 2D NIfTI images (`dim[0] = 2`), as cardiac MRI slices are stored: the
/// axial slice of each demo case in `ids` that holds the most foreground, plus the middle slice
/// of a label-free image, all declared 1.5 mm in-plane (finer than their nominal 1 mm third
/// spacing is coarse).
fn write_slice_dataset(root: &Path, ids: &[&str]) {
    std::fs::create_dir_all(root.join("imagesTr")).unwrap();
    std::fs::create_dir_all(root.join("labelsTr")).unwrap();
    std::fs::create_dir_all(root.join("imagesUnlabeled")).unwrap();
    let demo = Path::new(DEMO);
    let as_2d = |path: &Path| {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[40..42].copy_from_slice(&2u16.to_le_bytes());
        std::fs::write(path, bytes).unwrap();
    };
    let in_plane = |mut geometry: Geometry| {
        let spacing = [1.5, 1.5, 1.0];
        geometry.spacing = Some(spacing);
        geometry.nifti_header = None;
        for (d, s) in spacing.into_iter().enumerate() {
            for row in geometry.affine.iter_mut().take(3) {
                row[d] = if row[d] == 0.0 {
                    0.0
                } else {
                    row[d].signum() * s
                };
            }
        }
        geometry
    };
    let unlabeled = read_image(
        demo.join("imagesUnlabeled")
            .join(format!("{UNLABELED}.nii.gz")),
    )
    .unwrap();
    let middle = unlabeled.shape()[2] / 2;
    let path = root
        .join("imagesUnlabeled")
        .join(format!("{UNLABELED}.nii"));
    let volume = Volume {
        data: unlabeled
            .data
            .slice(ndarray::s![.., .., middle..middle + 1])
            .to_owned(),
        geometry: in_plane(unlabeled.geometry.clone()),
        source: SourceFormat::Nifti,
        path: path.clone(),
    };
    write_image(&volume, &path).unwrap();
    as_2d(&path);
    for id in ids {
        let (mut image, label, slice) = richest_slice(id);
        image.geometry = in_plane(image.geometry);
        let image_file = root.join("imagesTr").join(format!("{id}.nii"));
        let label_file = root.join("labelsTr").join(format!("{id}.nii"));
        let one_slice = |data: Array3<f32>, path: &Path| Volume {
            data,
            geometry: image.geometry.clone(),
            source: SourceFormat::Nifti,
            path: path.to_owned(),
        };
        let pixels = image.data.slice(ndarray::s![.., .., slice..slice + 1]);
        write_image(&one_slice(pixels.to_owned(), &image_file), &image_file).unwrap();
        let classes = label.data.slice(ndarray::s![.., .., slice..slice + 1]);
        let label_volume = Volume {
            data: classes.to_owned(),
            geometry: image.geometry.clone(),
            source: SourceFormat::Nifti,
            path: label_file.clone(),
        };
        write_label(&label_volume, &label_file).unwrap();
        as_2d(&image_file);
        as_2d(&label_file);
    }
    write_dataset_json(root, ids, "Hippocampus slices", "nii");
}

/// A demo case's image and label with the index of its axial slice that holds the most
/// foreground.
fn richest_slice(id: &str) -> (Volume<f32>, Volume<u8>, usize) {
    let demo = Path::new(DEMO);
    let image = read_image(image_path(demo, id)).unwrap();
    let label = read_label(label_path(demo, id)).unwrap();
    let slice = (0..label.shape()[2])
        .max_by_key(|&z| {
            label
                .data
                .index_axis(ndarray::Axis(2), z)
                .iter()
                .filter(|&&c| c > 0)
                .count()
        })
        .unwrap();
    (image, label, slice)
}

/// Train a small supervised model on the dataset at `root` for 150 iterations (`runs/<name>`)
/// and predict every image of its `imagesTr/` into `out`.
fn train_briefly_and_predict(root: &Path, runs: &Path, name: &str, out: &Path) {
    ok(&[
        "train",
        "--dataset",
        root.to_str().unwrap(),
        "--framework",
        "supervised",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        name,
        "--no-progress",
        "--set",
        "training.iterations=150",
        "--set",
        "network.base_filters=8",
    ]);
    let checkpoint = runs.join(name).join("checkpoints/final.ckpt");
    ok(&[
        "predict",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--input",
        root.join("imagesTr").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--no-progress",
    ]);
}

/// One-slice images plan a U-Net that never pools their thin axis, so the patch is one slice
/// deep instead of 16 padded ones; it trains, and predicts 2D label maps.
#[test]
fn one_slice_images_train_on_one_slice_patches() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("slices");
    write_slice_dataset(&root, &CASES);
    assert_eq!(
        read_image(root.join("imagesTr/hippocampus_001.nii"))
            .unwrap()
            .shape()[2],
        1
    );
    let (config, text) = plan(&root, &dir.path().join("plan/plan.toml"));
    assert_eq!(config.network.poolings, [4, 4, 0]);
    assert_eq!(config.training.patch[2], 1);
    assert!(config.training.patch[..2].iter().all(|p| p % 16 == 0));
    assert_eq!(config.inference.stride.map(|s| s[2]), Some(1));
    assert_eq!(config.data.target_spacing, Some([1.5, 1.5, 1.0]));
    assert_eq!(sam_axis(&config), Some(2));
    assert!(
        text.contains("slices across axis 2, the thinnest (1 voxels)"),
        "{text}"
    );
    assert!(
        text.contains(
            "axis 2 (1 voxels) shorter than 16 voxels: pooled only as often as it halves"
        ),
        "{text}"
    );

    let runs = dir.path().join("runs");
    // Cut along x, each slice of a one-slice image is a strip one voxel wide: refused, no output.
    let err = fails(&[
        "train",
        "--dataset",
        root.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        "strips",
        "--set",
        "sam.axis=0",
    ]);
    assert!(
        err.contains("LiteMedSAM's slicing axis 0 (sam.axis) cuts case hippocampus_007")
            && err.contains("into strips one voxel wide along axis 2: slice across axis 2 instead"),
        "{err}"
    );
    assert!(!runs.join("strips").exists());
    let out = dir.path().join("out");
    train_briefly_and_predict(&root, &runs, "slices", &out);
    for id in CASES {
        let path = out.join(format!("{id}.nii"));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            u16::from_le_bytes([bytes[40], bytes[41]]),
            2,
            "{id}: dim[0]"
        );
        let prediction = read_label(&path).unwrap();
        let reference = read_label(root.join("labelsTr").join(format!("{id}.nii"))).unwrap();
        assert_eq!(prediction.shape(), reference.shape());
    }
    let mean = mean_dice(&out, &root, &CASES, "nii");
    assert!(mean > 0.7, "mean Dice {mean} on the training slices");
}

/// An nnU-Net v2 dataset of PNG slices (`"file_ending": ".png"`), as slices exported from a
/// viewer are: each labeled demo case's richest axial slice as a 16-bit grey image with an 8-bit
/// label map, and one image in `imagesTr/` without a label.
fn write_png_dataset(root: &Path, ids: &[&str]) {
    std::fs::create_dir_all(root.join("imagesTr")).unwrap();
    std::fs::create_dir_all(root.join("labelsTr")).unwrap();
    let sixteen_bit = |pixels: ndarray::ArrayView2<f32>, path: &Path| {
        let (lo, hi) = pixels
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let (rows, cols) = pixels.dim();
        image::ImageBuffer::from_fn(cols as u32, rows as u32, |x, y| {
            let v = pixels[[y as usize, x as usize]];
            image::Luma([((v - lo) / (hi - lo) * 65535.0).round() as u16])
        })
        .save(path)
        .unwrap();
    };
    for id in ids {
        let (image, label, slice) = richest_slice(id);
        sixteen_bit(
            image.data.index_axis(ndarray::Axis(2), slice),
            &root.join("imagesTr").join(format!("{id}_0000.png")),
        );
        let classes = label.data.index_axis(ndarray::Axis(2), slice);
        let (rows, cols) = classes.dim();
        image::GrayImage::from_fn(cols as u32, rows as u32, |x, y| {
            image::Luma([classes[[y as usize, x as usize]]])
        })
        .save(root.join("labelsTr").join(format!("{id}.png")))
        .unwrap();
    }
    let unlabeled = read_image(
        Path::new(DEMO)
            .join("imagesUnlabeled")
            .join(format!("{UNLABELED}.nii.gz")),
    )
    .unwrap();
    sixteen_bit(
        unlabeled
            .data
            .index_axis(ndarray::Axis(2), unlabeled.shape()[2] / 2),
        &root.join("imagesTr").join(format!("{UNLABELED}_0000.png")),
    );
    let json = serde_json::json!({
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "Anterior": 1, "Posterior": 2},
        "numTraining": ids.len(),
        "file_ending": ".png",
    });
    std::fs::write(
        root.join("dataset.json"),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
}

/// PNG slices store no pixel size: they are planned in pixels (and the plan says so), train on
/// one-slice patches, and predictions come back as PNG label maps that `evaluate` scores.
#[test]
fn png_slices_are_planned_in_pixels_and_predicted_as_pngs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("png");
    write_png_dataset(&root, &CASES);
    let inspected = semisam(&["inspect", root.to_str().unwrap()]);
    assert!(inspected.status.success());
    let listing = String::from_utf8_lossy(&inspected.stdout);
    assert!(
        listing.contains("nnU-Net v2 layout): 6 cases (5 labeled, 1 unlabeled, 0 test)"),
        "{listing}"
    );
    let (config, text) = plan(&root, &dir.path().join("plan/plan.toml"));
    assert_eq!(config.data.spacing, Some([1.0; 3]));
    assert!(
        text.contains("PNG stores no pixel size: planned in pixels"),
        "{text}"
    );
    assert_eq!(config.network.poolings, [4, 4, 0]);
    assert_eq!(config.training.patch[2], 1);
    assert_eq!(sam_axis(&config), Some(2));

    let runs = dir.path().join("runs");
    let out = dir.path().join("out");
    train_briefly_and_predict(&root, &runs, "png", &out);
    let written = image::open(out.join("hippocampus_001.png")).unwrap();
    let reference = read_label(root.join("labelsTr/hippocampus_001.png")).unwrap();
    assert_eq!(written.color(), image::ColorType::L8);
    assert_eq!(
        [written.height() as usize, written.width() as usize, 1],
        reference.shape()
    );
    // The label-free image is predicted too; `evaluate` scores only cases with a reference.
    std::fs::remove_file(out.join(format!("{UNLABELED}.png"))).unwrap();
    let mean = mean_dice(&out, &root, &CASES, "png");
    assert!(mean > 0.7, "mean Dice {mean} on the training slices");

    let scores = dir.path().join("scores");
    ok(&[
        "evaluate",
        "--pred",
        out.to_str().unwrap(),
        "--ref",
        root.join("labelsTr").to_str().unwrap(),
        "--out",
        scores.to_str().unwrap(),
        "--voxels",
    ]);
    let table = std::fs::read_to_string(scores.join("per_case.csv")).unwrap();
    assert_eq!(table.lines().count(), 1 + 2 * CASES.len(), "{table}");
}

/// A budget below the smallest batch would plan a patch that cannot be trained; nothing is
/// written.
#[test]
fn a_memory_budget_too_small_for_any_patch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan.toml");
    let err = fails(&[
        "plan",
        DEMO,
        "--memory-gib",
        "0.0001",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        err.contains("a memory budget of 0.000 GiB is too small to train: the smallest batch"),
        "{err}"
    );
    assert!(!out.exists());
}

fn as_str(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn dice(prediction: &Array3<u8>, reference: &Array3<u8>, class: u8) -> f64 {
    let (mut overlap, mut a, mut b) = (0, 0, 0);
    for (&p, &r) in prediction.iter().zip(reference) {
        overlap += usize::from(p == class && r == class);
        a += usize::from(p == class);
        b += usize::from(r == class);
    }
    dice_from_counts(overlap, a, b)
}

/// Mean foreground Dice of the predictions in `predictions` against the labels of `root`, both
/// stored as `<id>.<extension>`.
fn mean_dice(predictions: &Path, root: &Path, ids: &[&str], extension: &str) -> f64 {
    let mut sum = 0.0;
    for id in ids {
        let file = format!("{id}.{extension}");
        let prediction = read_label(predictions.join(&file)).unwrap();
        let reference = read_label(root.join("labelsTr").join(&file)).unwrap();
        sum += (dice(&prediction.data, &reference.data, 1)
            + dice(&prediction.data, &reference.data, 2))
            / 2.0;
    }
    sum / ids.len() as f64
}

#[test]
fn a_model_planned_at_1_mm_predicts_a_2_5_mm_copy_on_its_own_grid() {
    let dir = tempfile::tempdir().unwrap();
    let fine_root = dir.path().join("fine");
    let coarse_root = dir.path().join("coarse");
    write_dataset(&fine_root, &CASES, None);
    write_dataset(&coarse_root, &CASES, Some(COARSE));
    let runs = dir.path().join("runs");
    ok(&[
        "train",
        "--dataset",
        fine_root.to_str().unwrap(),
        "--time-budget",
        "20s",
        "--framework",
        "supervised",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        "fine",
        "--no-progress",
        "--set",
        "training.iterations=60",
        "--set",
        "network.base_filters=4",
    ]);
    let run = runs.join("fine");
    assert!(run.join("plan.toml").is_file() && run.join("fingerprint.json").is_file());
    let checkpoint = run.join("checkpoints/final.ckpt");
    for (root, name) in [(&fine_root, "fine_out"), (&coarse_root, "coarse_out")] {
        ok(&[
            "predict",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--input",
            root.join("imagesTr").to_str().unwrap(),
            "--output",
            dir.path().join(name).to_str().unwrap(),
            "--no-progress",
        ]);
    }
    for id in CASES {
        let input = read_image(image_path(&coarse_root, id)).unwrap();
        let prediction =
            read_label(dir.path().join("coarse_out").join(format!("{id}.nii.gz"))).unwrap();
        assert_eq!(prediction.shape(), input.shape(), "{id}");
        assert_eq!(prediction.geometry.affine, input.geometry.affine, "{id}");
        assert_eq!(prediction.geometry.spacing, Some(COARSE), "{id}");
    }
    let fine = mean_dice(&dir.path().join("fine_out"), &fine_root, &CASES, "nii.gz");
    let coarse = mean_dice(
        &dir.path().join("coarse_out"),
        &coarse_root,
        &CASES,
        "nii.gz",
    );
    assert!(
        fine > 0.4,
        "the 1 mm model learned too little to compare: Dice {fine}"
    );
    assert!(
        (fine - coarse).abs() < 0.1,
        "Dice {fine} on the 1 mm cases against {coarse} on their 2.5 mm copies"
    );

    // The same 2.5 mm image as .npy stores no spacing: refused unless --spacing gives it, and
    // then predicted exactly as its NIfTI twin.
    let npy_dir = dir.path().join("npy");
    std::fs::create_dir_all(&npy_dir).unwrap();
    let id = CASES[0];
    let npy = npy_dir.join(format!("{id}.npy"));
    semisam::data::npy::write(
        &read_image(image_path(&coarse_root, id)).unwrap().data,
        &npy,
    )
    .unwrap();
    let npy_out = dir.path().join("npy_out");
    let predict_npy = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = ["predict", "--no-progress", "--checkpoint"]
            .map(String::from)
            .to_vec();
        args.push(checkpoint.display().to_string());
        args.extend(["--input".into(), npy.display().to_string()]);
        args.extend(["--output".into(), npy_out.display().to_string()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let err = fails(&as_str(&predict_npy(&[])));
    assert!(
        err.contains(&format!(
            "{}: the file stores no voxel spacing",
            npy.display()
        )) && err.contains("--spacing for predict"),
        "{err}"
    );
    ok(&as_str(&predict_npy(&["--spacing", "1,1,2.5"])));
    let from_npy = read_label(npy_out.join(format!("{id}.npy"))).unwrap();
    let from_nifti =
        read_label(dir.path().join("coarse_out").join(format!("{id}.nii.gz"))).unwrap();
    assert_eq!(from_npy.data, from_nifti.data);
}

#[test]
fn predict_refuses_another_modality() {
    let dir = tempfile::tempdir().unwrap();
    let fine_root = dir.path().join("fine");
    write_dataset(&fine_root, &CASES[..2], None);
    let runs = dir.path().join("runs");
    ok(&[
        "train",
        "--dataset",
        fine_root.to_str().unwrap(),
        "--framework",
        "supervised",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        "tiny",
        "--no-progress",
        "--set",
        "training.iterations=1",
        "--set",
        "network.base_filters=2",
    ]);
    let ct_root = dir.path().join("ct");
    write_dataset(&ct_root, &CASES[..1], None);
    let json = std::fs::read_to_string(ct_root.join("dataset.json"))
        .unwrap()
        .replace("\"MRI\"", "\"CT\"");
    std::fs::write(ct_root.join("dataset.json"), json).unwrap();
    let out = semisam(&[
        "predict",
        "--checkpoint",
        runs.join("tiny/checkpoints/final.ckpt").to_str().unwrap(),
        "--input",
        ct_root.join("imagesTr").to_str().unwrap(),
        "--output",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "dataset.json: declares modality \"CT\" but the model was trained on \"MRI\" images"
        ),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists());
}

/// The LiteMedSAM slicing axis of a run configuration.
fn sam_axis(config: &RunConfig) -> Option<usize> {
    config.sam.as_ref()?.generalist.slicing_axis()
}
