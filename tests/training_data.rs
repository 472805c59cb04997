//! From a dataset folder to training cases: splits, and the rule that labels of unlabeled cases
//! are never read.

use std::path::{Path, PathBuf};

use semisam::data::{Dataset, read_image, read_label};
use semisam::training::RunConfig;
use semisam::training::dataset::{load_training_data, make_splits};

const FIXTURE: &str = "tests/fixtures/data/msd";

fn config(root: &Path, overrides: &[&str]) -> RunConfig {
    let text = format!(
        r#"
[data]
root = "{}"
protocol = "paper"
labeled = 1

[network]
architecture = "v_net"
in_channels = 1
num_classes = 3
base_filters = 2
dropout = false

[framework]
kind = "mean_teacher"

[training]
iterations = 1
batch_size = 2
labeled_bs = 1
patch = [16, 16, 16]
lr = 0.01
"#,
        root.display()
    );
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    RunConfig::from_toml_str(&text, &overrides, "test.toml").unwrap()
}

/// A copy of the two-case MSD fixture that the test may damage.
fn copy_fixture(dir: &Path) -> PathBuf {
    let root = dir.join("msd");
    for sub in ["imagesTr", "labelsTr"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
        for entry in std::fs::read_dir(Path::new(FIXTURE).join(sub)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, root.join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(
        Path::new(FIXTURE).join("dataset.json"),
        root.join("dataset.json"),
    )
    .unwrap();
    root
}

#[test]
fn unlabeled_labels_are_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_fixture(dir.path());
    // The second case is unlabeled: its label file is replaced by garbage.
    std::fs::write(
        root.join("labelsTr/hippocampus_003.nii.gz"),
        b"not a NIfTI file",
    )
    .unwrap();
    let config = config(&root, &[]);
    let dataset = Dataset::open(&root).unwrap();
    let splits = make_splits(&config, &dataset).unwrap();
    assert_eq!(splits.labeled, ["hippocampus_001"]);
    assert_eq!(splits.unlabeled, ["hippocampus_003"]);
    let data = load_training_data(&config, &dataset, &splits).unwrap();
    assert_eq!(data.pool.unlabeled.len(), 1);

    // z-score normalised per case: mean 0, standard deviation 1.
    let image = &data.pool.unlabeled[0].image;
    let n = image.len() as f64;
    let mean = image.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = image
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
        "mean {mean} var {var}"
    );
    assert_eq!(
        image.shape(),
        read_image(root.join("imagesTr/hippocampus_003.nii.gz"))
            .unwrap()
            .data
            .shape()
    );

    // The same damage on the labeled case is reported, naming the file.
    std::fs::write(
        root.join("labelsTr/hippocampus_001.nii.gz"),
        b"not a NIfTI file",
    )
    .unwrap();
    let err = load_training_data(&config, &dataset, &splits)
        .unwrap_err()
        .to_string();
    assert!(err.contains("labelsTr/hippocampus_001.nii.gz"), "{err}");
}

#[test]
fn downsampling_halves_the_grid_and_keeps_label_values() {
    let root = Path::new(FIXTURE);
    let config = config(root, &["data.downsample=2"]);
    let dataset = Dataset::open(root).unwrap();
    let splits = make_splits(&config, &dataset).unwrap();
    let data = load_training_data(&config, &dataset, &splits).unwrap();
    let full = read_label(root.join("labelsTr/hippocampus_001.nii.gz"))
        .unwrap()
        .data;
    let case = &data.pool.labeled[0];
    let expected: Vec<usize> = full.shape().iter().map(|s| s.div_ceil(2)).collect();
    assert_eq!(case.label.shape(), &expected[..]);
    assert_eq!(case.image.shape(), &expected[..]);
    for class in 1..3u8 {
        let before = full.iter().filter(|&&v| v == class).count() as f64;
        let after = case.label.iter().filter(|&&v| v == class).count() as f64 * 8.0;
        // Thin structures lose some voxels to the vote, but no class vanishes or grows wildly.
        assert!(
            after > 0.3 * before && after < 1.7 * before,
            "class {class}: {before} voxels → {after} / 8"
        );
    }
}

#[test]
fn split_requests_beyond_the_list_are_refused() {
    let root = Path::new(FIXTURE);
    let dataset = Dataset::open(root).unwrap();
    let err = make_splits(&config(root, &["data.validation=2"]), &dataset)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "1 labeled + 2 validation cases requested but the training list holds 2 with a label"
        ),
        "{err}"
    );
    let err = make_splits(&config(root, &["data.unlabeled=3"]), &dataset)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("3 unlabeled cases requested but only 1 remain"),
        "{err}"
    );
}
