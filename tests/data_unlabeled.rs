//! Images without labels are first-class input: in `imagesTr/` without a label file, in
//! `imagesUnlabeled/`, in a plain folder (`data.unlabeled_root`), as UA-MT h5 files without a
//! `label` dataset. They become the unlabeled cases of `protocol = "all"`, are added to the
//! paper protocol's, are validated like every other image, and no label is ever read for them.

use std::fs;
use std::path::{Path, PathBuf};

use ndarray::Array3;
use semisam::data::inspect::inspect_dataset;
use semisam::data::{Dataset, Geometry, SourceFormat, Splits, Volume, h5, read_image, write_image};
use semisam::training::dataset::{load_training_data, make_splits, open_dataset};
use semisam::training::run_dir::RunDir;
use semisam::training::{RunConfig, TrainOptions, TrainOutcome, train};

const SHAPE: [usize; 3] = [20, 18, 16];

/// A bright sphere (label 1) on a noisy background, different per case.
fn case(n: usize) -> (Array3<f32>, Array3<u8>) {
    let center = [9.0 + n as f32, 9.0, 8.0 - 0.5 * n as f32];
    let label = Array3::from_shape_fn(SHAPE, |(i, j, k)| {
        let d2 = (i as f32 - center[0]).powi(2)
            + (j as f32 - center[1]).powi(2)
            + (k as f32 - center[2]).powi(2);
        u8::from(d2 < 20.0)
    });
    let image = Array3::from_shape_fn(SHAPE, |(i, j, k)| {
        let noise = (((i * 31 + j * 17 + k * 7 + n * 13) % 23) as f32 / 23.0 - 0.5) * 0.4;
        f32::from(label[[i, j, k]]) * 2.0 - 1.0 + noise
    });
    (image, label)
}

fn volume<T>(data: Array3<T>) -> Volume<T> {
    let mut affine = [[0.0; 4]; 4];
    for (d, row) in affine.iter_mut().enumerate() {
        row[d] = 1.0;
    }
    Volume {
        data,
        geometry: Geometry {
            spacing: Some([1.0; 3]),
            affine,
            nifti_header: None,
        },
        source: SourceFormat::Nifti,
        path: PathBuf::from("memory"),
    }
}

fn write_nifti_image(path: &Path, n: usize) {
    write_image(&volume(case(n).0), path).unwrap();
}

fn write_nifti_label(path: &Path, n: usize) {
    semisam::data::write_label(&volume(case(n).1), path).unwrap();
}

fn ids(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

const NNUNET_JSON: &str = r#"{"labels": {"background": 0, "sphere": 1},
    "channel_names": {"0": "MRI"}, "file_ending": ".nii.gz", "numTraining": 5}"#;

/// nnU-Net v2: three labeled cases, `u1` in `imagesTr/` without a label file, `u2` in
/// `imagesUnlabeled/` with a garbage file where its label would be (it must never be read).
fn write_nnunet(root: &Path) {
    for (n, id) in ["a", "b", "c"].iter().enumerate() {
        write_nifti_image(&root.join(format!("imagesTr/{id}_0000.nii.gz")), n);
        write_nifti_label(&root.join(format!("labelsTr/{id}.nii.gz")), n);
    }
    write_nifti_image(&root.join("imagesTr/u1_0000.nii.gz"), 3);
    write_nifti_image(&root.join("imagesUnlabeled/u2_0000.nii.gz"), 4);
    fs::write(root.join("labelsTr/u2.nii.gz"), b"not a NIfTI file").unwrap();
    fs::write(root.join("dataset.json"), NNUNET_JSON).unwrap();
}

fn config(root: &Path, extra_data: &str, overrides: &[&str]) -> RunConfig {
    let text = format!(
        r#"
[data]
root = "{}"
{extra_data}

[network]
architecture = "v_net"
in_channels = 1
num_classes = 2
base_filters = 2
dropout = false

[framework]
kind = "mean_teacher"

[training]
iterations = 3
batch_size = 3
labeled_bs = 1
patch = [16, 16, 16]
lr = 0.05
checkpoint_every = 0
seed = 3

[validation]
every = 3
stride = [8, 8, 8]
"#,
        root.display()
    );
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    RunConfig::from_toml_str(&text, &overrides, "test.toml").unwrap()
}

#[test]
fn nifti_images_without_labels_train_as_the_unlabeled_cases_of_protocol_all() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nnunet");
    write_nnunet(&root);
    let config = config(&root, "validation = 1", &[]);
    let dataset = open_dataset(&config, None).unwrap();
    assert_eq!(dataset.training_ids, ids(&["a", "b", "c"]));
    assert_eq!(dataset.unlabeled_ids, ids(&["u1", "u2"]));
    assert!(
        ["u1", "u2"]
            .iter()
            .all(|id| dataset.case(id).unwrap().label.is_none())
    );

    let splits = make_splits(&config, &dataset).unwrap();
    assert_eq!(splits.labeled, ids(&["a", "b"]));
    assert_eq!(splits.validation, ids(&["c"]));
    assert_eq!(splits.unlabeled, ids(&["u1", "u2"]));
    assert_eq!(splits.label_free, ids(&["u1", "u2"]));
    let saved = dir.path().join("splits.json");
    splits.save(&saved).unwrap();
    assert_eq!(Splits::load(&saved).unwrap().label_free, ids(&["u1", "u2"]));

    // Loading succeeds although u2's label file is garbage: it is never opened.
    let data = load_training_data(&config, &dataset, &splits).unwrap();
    let unlabeled: Vec<&str> = data.pool.unlabeled.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(unlabeled, ["u1", "u2"]);
    let stored = read_image(root.join("imagesUnlabeled/u2_0000.nii.gz")).unwrap();
    assert_eq!(data.pool.unlabeled[1].image.shape(), stored.data.shape());
    let mean = data.pool.unlabeled[1].image.mean().unwrap();
    assert!(mean.abs() < 1e-5, "z-scored like every image: mean {mean}");

    let run = RunDir::create(dir.path(), "run", false).unwrap();
    let outcome = train(&config, &data, &run, &TrainOptions::default()).unwrap();
    assert!(
        matches!(outcome, TrainOutcome::Completed { steps: 3, .. }),
        "{outcome:?}"
    );
}

#[test]
fn protocol_all_takes_labeled_as_a_cap_and_asks_for_unlabeled_images_when_there_are_none() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nnunet");
    write_nnunet(&root);
    let dataset = Dataset::open(&root).unwrap();
    let capped = make_splits(&config(&root, "labeled = 1\nvalidation = 1", &[]), &dataset).unwrap();
    assert_eq!(capped.labeled, ids(&["a"]));
    assert_eq!(capped.unlabeled, ids(&["u1", "u2"]));
    let first = make_splits(&config(&root, "unlabeled = 1", &[]), &dataset).unwrap();
    assert_eq!(first.labeled, ids(&["a", "b", "c"]));
    assert_eq!(first.unlabeled, ids(&["u1"]));

    let err = make_splits(&config(&root, "labeled = 3\nvalidation = 1", &[]), &dataset)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "3 labeled + 1 validation cases requested but the training list holds 3 with a label"
        ),
        "{err}"
    );

    fs::remove_file(root.join("imagesTr/u1_0000.nii.gz")).unwrap();
    fs::remove_dir_all(root.join("imagesUnlabeled")).unwrap();
    // u2's stray label file now has no image at all, which `Dataset::open` refuses.
    fs::remove_file(root.join("labelsTr/u2.nii.gz")).unwrap();
    let dataset = Dataset::open(&root).unwrap();
    let err = make_splits(&config(&root, "", &[]), &dataset)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the batch holds 2 unlabeled item(s) but there is no unlabeled case")
            && err.contains("imagesUnlabeled/")
            && err.contains("data.unlabeled_root"),
        "{err}"
    );
    // The paper protocol uses labeled cases without their labels instead.
    let paper = make_splits(
        &config(
            &root,
            "protocol = \"paper\"\nlabeled = 1\nvalidation = 1",
            &[],
        ),
        &dataset,
    )
    .unwrap();
    assert_eq!(
        (paper.labeled, paper.unlabeled, paper.label_free),
        (ids(&["a"]), ids(&["b"]), vec![])
    );
}

#[test]
fn msd_training_entries_without_label_unlisted_images_and_images_unlabeled() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (n, id) in ["listed", "no_label_key", "unlisted", "unlisted_bare"]
        .iter()
        .enumerate()
    {
        write_nifti_image(&root.join(format!("imagesTr/{id}.nii.gz")), n);
    }
    write_nifti_label(&root.join("labelsTr/listed.nii.gz"), 0);
    write_nifti_label(&root.join("labelsTr/unlisted.nii.gz"), 2);
    write_nifti_image(&root.join("imagesUnlabeled/extra.nii.gz"), 4);
    fs::write(
        root.join("imagesUnlabeled/README.txt"),
        "notes, not an image",
    )
    .unwrap();
    fs::write(
        root.join("dataset.json"),
        r#"{"labels": {"0": "background", "1": "sphere"},
            "training": [{"image": "./imagesTr/listed.nii.gz", "label": "./labelsTr/listed.nii.gz"},
                         {"image": "./imagesTr/no_label_key.nii.gz"}]}"#,
    )
    .unwrap();
    let dataset = Dataset::open(root).unwrap();
    assert_eq!(dataset.training_ids, ids(&["listed", "unlisted"]));
    assert_eq!(
        dataset.unlabeled_ids,
        ids(&["no_label_key", "unlisted_bare", "extra"])
    );
    assert_eq!(
        dataset.case("unlisted").unwrap().label.as_deref(),
        Some(root.join("labelsTr/unlisted.nii.gz").as_path())
    );
    assert!(dataset.is_label_free("extra") && !dataset.is_label_free("listed"));

    // An unlabeled image with a labeled case's ID: both images and their roles are named.
    write_nifti_image(&root.join("imagesUnlabeled/listed.nii.gz"), 4);
    let err = Dataset::open(root).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "duplicate case ID `listed` (labeled training case {} and unlabeled image {}; every image needs its own ID",
            root.join("imagesTr/listed.nii.gz").display(),
            root.join("imagesUnlabeled/listed.nii.gz").display()
        )),
        "{err}"
    );
}

#[test]
fn nnunet_image_of_a_second_channel_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_nnunet(root);
    write_nifti_image(&root.join("imagesUnlabeled/u2_0001.nii.gz"), 4);
    let err = Dataset::open(root).unwrap_err().to_string();
    assert!(
        err.contains("imagesUnlabeled/u2_0001.nii.gz")
            && err.contains("input channel 0001: semisam reads single-channel images"),
        "{err}"
    );
}

/// UA-MT layout; `label_free` cases are written without the `label` dataset.
fn write_uamt(root: &Path, train: &[&str], label_free: &[&str]) {
    for (n, id) in train.iter().enumerate() {
        let (image, label) = case(n);
        let label = (!label_free.contains(id)).then_some(label);
        h5::write_case(
            &root.join(id).join("mri_norm2.h5"),
            Some(&image),
            label.as_ref(),
        )
        .unwrap();
    }
    fs::write(root.join("train.list"), train.join("\n") + "\n").unwrap();
}

#[test]
fn uamt_h5_without_label_is_unlabeled_and_the_paper_protocol_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("la");
    let train_list = ["a", "b", "c", "d", "e"];
    write_uamt(&root, &train_list, &["c"]);
    let dataset = Dataset::open(&root).unwrap();
    assert_eq!(dataset.training_ids, ids(&["a", "b", "d", "e"]));
    assert_eq!(dataset.unlabeled_ids, ids(&["c"]));

    let paper = "protocol = \"paper\"\nlabeled = 1\nvalidation = 1";
    let splits = make_splits(&config(&root, paper, &[]), &dataset).unwrap();
    assert_eq!(splits.labeled, ids(&["a"]));
    assert_eq!(splits.validation, ids(&["e"]));
    // The labeled cases between labeled and validation (their labels unused), then the images
    // without a label.
    assert_eq!(splits.unlabeled, ids(&["b", "d", "c"]));
    assert_eq!(splits.label_free, ids(&["c"]));
    let capped = make_splits(&config(&root, paper, &["data.unlabeled=2"]), &dataset).unwrap();
    assert_eq!(capped.unlabeled, ids(&["b", "d"]));
    assert!(capped.label_free.is_empty());

    // With every label present, the paper protocol is what it always was.
    let full = dir.path().join("full");
    write_uamt(&full, &train_list, &[]);
    let dataset = Dataset::open(&full).unwrap();
    assert!(dataset.unlabeled_ids.is_empty());
    let splits = make_splits(&config(&full, paper, &[]), &dataset).unwrap();
    assert_eq!(
        (splits.labeled, splits.unlabeled, splits.validation),
        (ids(&["a"]), ids(&["b", "c", "d"]), ids(&["e"]))
    );
    assert!(splits.label_free.is_empty());

    // Asking for the label of a label-free case says which dataset is missing.
    let with_c_labeled = dir.path().join("splits.json");
    Splits {
        labeled: ids(&["c"]),
        unlabeled: ids(&["b"]),
        validation: vec![],
        test: vec![],
        seed: 0,
        label_free: vec![],
        cross_validation: None,
    }
    .save(&with_c_labeled)
    .unwrap();
    let dataset = Dataset::open(&root).unwrap();
    let err = make_splits(
        &config(
            &root,
            &format!("splits_file = \"{}\"", with_c_labeled.display()),
            &[],
        ),
        &dataset,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("splits.json")
            && err.contains("case c is labeled or validation but has no label"),
        "{err}"
    );
}

/// A plain folder: NIfTI, npy, h5 without `label`, a UA-MT case folder, and files that are not
/// images (a case list, a hidden file).
fn write_plain_folder(dir: &Path) {
    write_nifti_image(&dir.join("n1.nii.gz"), 5);
    semisam::data::npy::write(&case(6).0, &dir.join("p1.npy")).unwrap();
    h5::write_case(&dir.join("h1.h5"), Some(&case(7).0), None).unwrap();
    h5::write_case(&dir.join("CASEX/mri_norm2.h5"), Some(&case(8).0), None).unwrap();
    fs::write(dir.join("unlabeled.list"), "CASEX\n").unwrap();
    fs::write(dir.join("._n1.nii.gz"), b"resource fork").unwrap();
    fs::create_dir_all(dir.join("empty_folder")).unwrap();
}

#[test]
fn unlabeled_root_adds_every_image_of_a_plain_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("la");
    write_uamt(&root, &["a", "b", "c"], &[]);
    let pool = dir.path().join("pool");
    write_plain_folder(&pool);
    let extra = format!(
        "protocol = \"paper\"\nlabeled = 1\nvalidation = 1\nunlabeled_root = \"{}\"",
        pool.display()
    );
    let config = config(&root, &extra, &[]);
    let dataset = open_dataset(&config, None).unwrap();
    let pool_ids = ids(&["CASEX", "h1", "n1", "p1"]);
    assert_eq!(dataset.unlabeled_ids, pool_ids);
    assert_eq!(
        dataset.case("CASEX").unwrap().image,
        pool.join("CASEX/mri_norm2.h5")
    );
    let splits = make_splits(&config, &dataset).unwrap();
    assert_eq!(splits.unlabeled, ids(&["b", "CASEX", "h1", "n1", "p1"]));
    assert_eq!(splits.label_free, pool_ids);
    let data = load_training_data(&config, &dataset, &splits).unwrap();
    assert_eq!(data.pool.unlabeled.len(), 5);
    assert!(data.pool.unlabeled.iter().all(|c| c.image.shape() == SHAPE));

    // An ID the dataset already has.
    h5::write_case(&pool.join("a.h5"), Some(&case(0).0), None).unwrap();
    let err = open_dataset(&config, None).unwrap_err().to_string();
    assert!(
        err.contains("pool/a.h5") && err.contains("duplicate case ID `a`"),
        "{err}"
    );
    // A folder without images, and a folder that is not there.
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let mut dataset = Dataset::open(&root).unwrap();
    let err = dataset
        .add_unlabeled_folder(&empty)
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty: no image found"), "{err}");
    let err = dataset
        .add_unlabeled_folder(&dir.path().join("nowhere"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nowhere: file not found"), "{err}");
}

#[test]
fn unlabeled_images_are_validated_like_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("la");
    write_uamt(&root, &["a", "b"], &[]);
    let pool = dir.path().join("pool");
    let (mut image, _) = case(1);
    image[[3, 4, 5]] = f32::NAN;
    write_image(&volume(image), pool.join("nan.nii.gz")).unwrap();
    semisam::data::npy::write(&Array3::<f32>::zeros([4, 4, 0]), &pool.join("empty.npy")).unwrap();
    fs::write(pool.join("broken.h5"), b"not HDF5").unwrap();
    let mut dataset = Dataset::open(&root).unwrap();
    dataset.add_unlabeled_folder(&pool).unwrap();
    assert_eq!(dataset.unlabeled_ids, ids(&["broken", "empty", "nan"]));

    let reports = inspect_dataset(&dataset, Some(1), None).unwrap();
    let problems = |id: &str| -> String {
        let report = reports.iter().find(|r| r.id == id).unwrap();
        report.problems.iter().map(|p| p.to_string()).collect()
    };
    assert!(problems("nan").contains("nan.nii.gz: 1 voxel(s) are NaN or infinite"));
    assert!(problems("empty").contains("empty.npy: empty volume"));
    assert!(problems("broken").contains("broken.h5: not a valid HDF5 file"));
    let labeled = reports.iter().find(|r| r.id == "a").unwrap();
    assert!(labeled.problems.is_empty() && labeled.notes.is_empty());
    let note = reports.iter().find(|r| r.id == "nan").unwrap();
    assert_eq!(note.notes, ["unlabeled: no label"]);

    let config = config(&root, "protocol = \"paper\"\nlabeled = 1", &[]);
    let splits = Splits {
        labeled: ids(&["a"]),
        unlabeled: ids(&["nan"]),
        validation: vec![],
        test: vec![],
        seed: 0,
        label_free: vec![],
        cross_validation: None,
    };
    let err = load_training_data(&config, &dataset, &splits)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("pool/nan.nii.gz: 1 voxel(s) are NaN"), "{err}");
}
