//! Dataset layouts, case lists, splits and the inspect report, on the committed fixtures and
//! on layouts assembled in temporary folders.

use std::fs;
use std::path::{Path, PathBuf};

use semisam::data::folds::FoldSpec;
use semisam::data::inspect::{check_training_cases, inspect_dataset};
use semisam::data::{Dataset, Layout, Splits, read_case_list, write_case_list};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn uamt_layout_finds_cases_in_a_sub_folder_and_keeps_list_order() {
    let root = fixtures().join("uamt");
    let dataset = Dataset::open(&root).unwrap();
    assert_eq!(
        dataset.layout,
        Layout::UaMt {
            cases_dir: root.join("Training Set")
        }
    );
    assert_eq!(dataset.training_ids, ids(&["CASE_B", "CASE_A"]));
    assert_eq!(dataset.test_ids, ids(&["CASE_T"]));
    let case_ids: Vec<&str> = dataset.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(case_ids, ["CASE_B", "CASE_A", "CASE_T"]);
    let case = dataset.case("CASE_A").unwrap();
    assert_eq!(case.image, root.join("Training Set/CASE_A/mri_norm2.h5"));
    assert_eq!(
        case.label.as_ref(),
        Some(&case.image),
        "UA-MT keeps the label in the image's file"
    );
    assert_eq!(dataset.label_values(), vec![0, 1]);
    let loaded = dataset.load_case(case).unwrap();
    assert_eq!(loaded.image.shape(), [6, 5, 4]);
    assert_eq!(
        loaded.label.unwrap().data.sum(),
        1,
        "only voxel (0,0,0) is labelled in CASE_A"
    );
}

#[test]
fn uamt_layout_also_accepts_case_folders_in_the_root() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("uamt/Training Set"), dir.path());
    fs::write(dir.path().join("train.list"), "CASE_A\nCASE_T\n").unwrap();
    let dataset = Dataset::open(dir.path()).unwrap();
    assert_eq!(
        dataset.layout,
        Layout::UaMt {
            cases_dir: dir.path().to_path_buf()
        }
    );
    assert_eq!(dataset.training_ids, ids(&["CASE_A", "CASE_T"]));
    assert!(dataset.test_ids.is_empty());
}

#[test]
fn paper_protocol_takes_the_first_n_training_ids_as_labeled() {
    let root = fixtures().join("uamt");
    let dataset = Dataset::open(&root).unwrap();
    let splits = Splits::paper_protocol(
        &root.join("train.list"),
        &dataset.training_ids,
        &dataset.test_ids,
        1,
        1337,
    )
    .unwrap();
    assert_eq!(splits.labeled, ids(&["CASE_B"]));
    assert_eq!(splits.unlabeled, ids(&["CASE_A"]));
    assert_eq!(splits.test, ids(&["CASE_T"]));
    assert!(splits.validation.is_empty());
    assert_eq!(splits.seed, 1337);
    let err = Splits::paper_protocol(&root.join("train.list"), &dataset.training_ids, &[], 3, 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.list")
            && err.contains("3 labeled cases requested")
            && err.contains("holds 2"),
        "{err}"
    );
}

#[test]
fn msd_layout_reads_number_to_name_labels_and_training_entries() {
    let root = fixtures().join("msd");
    let dataset = Dataset::open(&root).unwrap();
    assert_eq!(dataset.layout, Layout::Msd);
    assert_eq!(
        dataset.labels.get(&2).map(String::as_str),
        Some("Posterior")
    );
    assert_eq!(dataset.label_values(), vec![0, 1, 2]);
    assert_eq!(
        dataset.training_ids,
        ids(&["hippocampus_001", "hippocampus_003"])
    );
    let case = dataset.case("hippocampus_003").unwrap();
    assert_eq!(case.image, root.join("imagesTr/hippocampus_003.nii.gz"));
    assert_eq!(
        case.label,
        Some(root.join("labelsTr/hippocampus_003.nii.gz"))
    );
    // hippocampus_003 stores its label as float32 holding 0/1/2.
    let loaded = dataset.load_case(case).unwrap();
    assert_eq!(
        semisam::data::labels::values_present(&loaded.label.unwrap().data),
        vec![0, 1, 2]
    );
}

/// An nnU-Net v2 folder built from the MSD fixture's cases.
fn nnunet_dataset(dir: &Path, dataset_json: &str) {
    let msd = fixtures().join("msd");
    for folder in ["imagesTr", "labelsTr", "imagesTs"] {
        fs::create_dir_all(dir.join(folder)).unwrap();
    }
    for (n, case) in ["001", "003"].iter().enumerate() {
        let id = format!("hippocampus_{case}");
        fs::copy(
            msd.join(format!("imagesTr/{id}.nii.gz")),
            dir.join(format!("imagesTr/hip_{n}_0000.nii.gz")),
        )
        .unwrap();
        fs::copy(
            msd.join(format!("labelsTr/{id}.nii.gz")),
            dir.join(format!("labelsTr/hip_{n}.nii.gz")),
        )
        .unwrap();
    }
    fs::copy(
        msd.join("imagesTr/hippocampus_001.nii.gz"),
        dir.join("imagesTs/hip_9_0000.nii.gz"),
    )
    .unwrap();
    fs::write(dir.join("dataset.json"), dataset_json).unwrap();
}

#[test]
fn nnunet_v2_layout_reads_name_to_number_labels_and_channel_suffix() {
    let dir = tempfile::tempdir().unwrap();
    nnunet_dataset(
        dir.path(),
        r#"{"channel_names": {"0": "MRI"}, "labels": {"background": 0, "Anterior": 1, "Posterior": 2},
            "numTraining": 2, "file_ending": ".nii.gz"}"#,
    );
    let dataset = Dataset::open(dir.path()).unwrap();
    assert_eq!(
        dataset.layout,
        Layout::NnUnetV2 {
            file_ending: ".nii.gz".into()
        }
    );
    assert_eq!(dataset.labels.get(&1).map(String::as_str), Some("Anterior"));
    assert_eq!(dataset.training_ids, ids(&["hip_0", "hip_1"]));
    assert_eq!(dataset.test_ids, ids(&["hip_9"]));
    let train = dataset.case("hip_1").unwrap();
    assert_eq!(train.image, dir.path().join("imagesTr/hip_1_0000.nii.gz"));
    assert_eq!(train.label, Some(dir.path().join("labelsTr/hip_1.nii.gz")));
    assert_eq!(dataset.case("hip_9").unwrap().label, None);
    assert!(dataset.load_case(train).is_ok());
}

#[test]
fn nnunet_region_labels_and_multi_channel_inputs_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    nnunet_dataset(
        dir.path(),
        r#"{"channel_names": {"0": "MRI"}, "labels": {"background": 0, "whole": [1, 2]}, "file_ending": ".nii.gz"}"#,
    );
    let err = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("dataset.json") && err.contains("label `whole` is a region"),
        "{err}"
    );
    nnunet_dataset(
        dir.path(),
        r#"{"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0}, "file_ending": ".nii.gz"}"#,
    );
    let err = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("dataset.json") && err.contains("2 input channels"),
        "{err}"
    );
}

#[test]
fn dataset_json_mistakes_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let json = r#"{"channel_names": {"0": "MRI"}, "labels": {"background": 0, "hip": 1}, "file_ending": ".nii.gz"}"#;

    // A byte-order mark, as some editors save UTF-8, is not a JSON error.
    nnunet_dataset(dir.path(), &format!("\u{feff}{json}"));
    assert_eq!(
        Dataset::open(dir.path()).unwrap().training_ids,
        ids(&["hip_0", "hip_1"])
    );

    nnunet_dataset(
        dir.path(),
        r#"{"channel_names": {"0": "MRI"}, "labels": ["background", "hip"], "file_ending": ".nii.gz"}"#,
    );
    let err = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("dataset.json: `labels` is a list, not an object of names and values"),
        "{err}"
    );

    nnunet_dataset(
        dir.path(),
        r#"{"channel_names": {"0": "MRI"}, "labels": {"background": 0, "fg": 1, "fg2": 1}, "file_ending": ".nii.gz"}"#,
    );
    let err = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("dataset.json: labels `fg` and `fg2` both have the value 1"),
        "{err}"
    );

    // Label values with a gap: a 0/255 mask declared as such, and 0, 1, 4. The network would
    // predict the missing values as classes no file holds, each scored Dice 1 in every mean.
    nnunet_dataset(
        dir.path(),
        r#"{"channel_names": {"0": "MRI"}, "labels": {"background": 0, "lesion": 255}, "file_ending": ".nii.gz"}"#,
    );
    let err = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(
            "dataset.json: label values must run 0, 1, 2, ... without gaps, as nnU-Net requires: \
             `lesion` is 255, but 1 to 254 are not declared, so the network would have 254 output \
             classes that no file holds. Renumber the label files and `labels` to 0 to 1 (a mask \
             saved as 0/255: divide it by 255)"
        ),
        "{err}"
    );
    nnunet_dataset(
        dir.path(),
        r#"{"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 4}, "file_ending": ".nii.gz"}"#,
    );
    let err = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("`b` is 4, but 2 to 3 are not declared")
            && err.contains("2 output classes")
            && err.contains("to 0 to 2"),
        "{err}"
    );

    // An MSD `training` that is not a list of entries.
    let msd = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("msd"), msd.path());
    let text = fs::read_to_string(msd.path().join("dataset.json")).unwrap();
    let start = text.find("\"training\"").unwrap();
    let end = text.find("\"test\"").unwrap();
    let edited = format!(
        "{}\"training\": {{\"a\": 1}},\n {}",
        &text[..start],
        &text[end..]
    );
    fs::write(msd.path().join("dataset.json"), edited).unwrap();
    let err = Dataset::open(msd.path()).unwrap_err().to_string();
    assert!(
        err.contains("dataset.json: `training` is an object, not a list of"),
        "{err}"
    );

    // A label whose image is misnamed (`hip0`, not `hip_0`): the label would drop out unnoticed.
    nnunet_dataset(dir.path(), json);
    fs::rename(
        dir.path().join("imagesTr/hip_0_0000.nii.gz"),
        dir.path().join("imagesTr/hip0_0000.nii.gz"),
    )
    .unwrap();
    let err = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(
            "labelsTr/hip_0.nii.gz: a label without an image: expected imagesTr/hip_0_0000.nii.gz"
        ),
        "{err}"
    );
    fs::remove_file(dir.path().join("imagesTr/hip0_0000.nii.gz")).unwrap();

    // Images without their labels.
    nnunet_dataset(dir.path(), json);
    fs::remove_dir_all(dir.path().join("labelsTr")).unwrap();
    let dataset = Dataset::open(dir.path()).unwrap();
    let err = check_training_cases(&dataset).unwrap_err().to_string();
    assert!(
        err.contains(
            "imagesTr: none of its 2 image(s) has a label (labelsTr/<ID>.nii.gz, e.g. \
             labelsTr/hip_0.nii.gz): the dataset has no training case"
        ),
        "{err}"
    );

    // A file_ending that the files do not have.
    let other = tempfile::tempdir().unwrap();
    nnunet_dataset(other.path(), &json.replace(".nii.gz", ".nii"));
    let dataset = Dataset::open(other.path()).unwrap();
    let err = check_training_cases(&dataset).unwrap_err().to_string();
    assert!(
        err.contains(
            "imagesTr: holds no <ID>_0000.nii image (dataset.json's file_ending) but 2 file(s) \
             with another ending, e.g. hip_0_0000.nii.gz"
        ),
        "{err}"
    );
}

#[test]
fn case_lists_and_splits_round_trip_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("labeled.list");
    write_case_list(&list, &ids(&["z", "a", "m"])).unwrap();
    assert_eq!(read_case_list(&list).unwrap(), ids(&["z", "a", "m"]));

    let splits = Splits {
        labeled: ids(&["a"]),
        unlabeled: ids(&["b", "c"]),
        validation: ids(&["d"]),
        test: ids(&["e"]),
        seed: 7,
        label_free: ids(&["c"]),
        cross_validation: None,
    };
    let path = dir.path().join("run/splits.json");
    splits.save(&path).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["seed"], 7);
    assert_eq!(json["unlabeled"], serde_json::json!(["b", "c"]));
    assert!(json.get("cross_validation").is_none(), "{json}");
    assert_eq!(Splits::load(&path).unwrap(), splits);

    // A fold run's splits keep their fold; a fold outside its folds is refused on load.
    let fold = Splits {
        cross_validation: Some(FoldSpec {
            fold: 1,
            folds: 5,
            seed: 12345,
        }),
        ..splits
    };
    fold.save(&path).unwrap();
    assert_eq!(Splits::load(&path).unwrap(), fold);
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("\"fold\": 1", "\"fold\": 5");
    fs::write(&path, text).unwrap();
    let err = Splits::load(&path).unwrap_err().to_string();
    assert!(
        err.ends_with("data.fold = 5 but data.folds = 5: folds are numbered 0 to 4"),
        "{err}"
    );
}

#[test]
fn random_splits_are_disjoint_sized_and_reproducible_from_the_seed() {
    let all: Vec<String> = (0..20).map(|i| format!("case_{i:02}")).collect();
    let source = Path::new("dataset.json");
    let a = Splits::random(source, &all, 4, 3, 5, 42).unwrap();
    assert_eq!(
        (
            a.labeled.len(),
            a.validation.len(),
            a.test.len(),
            a.unlabeled.len()
        ),
        (4, 3, 5, 8)
    );
    let mut union: Vec<String> = [&a.labeled, &a.unlabeled, &a.validation, &a.test]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    union.sort();
    assert_eq!(union, all);
    assert_eq!(Splits::random(source, &all, 4, 3, 5, 42).unwrap(), a);
    assert_ne!(Splits::random(source, &all, 4, 3, 5, 43).unwrap(), a);
    let err = Splits::random(source, &all, 10, 6, 5, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("21 cases requested but only 20"), "{err}");
}

#[test]
fn inspect_reports_shape_labels_intensity_and_notes() {
    let dataset = Dataset::open(fixtures().join("uamt")).unwrap();
    let reports = inspect_dataset(&dataset, Some(2), None).unwrap();
    assert_eq!(
        reports.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["CASE_B", "CASE_A", "CASE_T"]
    );
    let b = &reports[0];
    assert_eq!(b.shape, Some([7, 6, 5]));
    assert_eq!(b.spacing, None);
    assert_eq!(b.label_values, Some(vec![0, 1]));
    // mean of 100x + 10y + z + 0.5 over 7x6x5 = 100*3 + 10*2.5 + 2 + 0.5
    let stats = b.intensity.unwrap();
    assert_eq!((stats.min, stats.max), (0.5, 654.5));
    assert!((stats.mean - 327.5).abs() < 1e-9, "{}", stats.mean);
    assert!(reports.iter().all(|r| r.problems.is_empty()));
    let text = b.to_string();
    assert!(text.starts_with("CASE_B  shape 7x6x5  spacing none stored  labels {0, 1}  intensity min 0.5000 max 654.5000 mean 327.5000"), "{text}");
}

#[test]
fn inspect_continues_past_a_broken_case_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("uamt"), dir.path());
    let broken = dir.path().join("Training Set/CASE_A/mri_norm2.h5");
    let bytes = fs::read(&broken).unwrap();
    fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    fs::remove_file(dir.path().join("Training Set/CASE_T/mri_norm2.h5")).unwrap();
    let dataset = Dataset::open(dir.path()).unwrap();
    let reports = inspect_dataset(&dataset, None, None).unwrap();
    assert!(reports[0].problems.is_empty());
    assert_eq!(
        reports[1].problems.len(),
        1,
        "one file, one problem: {:?}",
        reports[1].problems
    );
    let text = reports[1].to_string();
    assert!(
        text.contains("PROBLEM: ") && text.contains("CASE_A/mri_norm2.h5: the file is truncated"),
        "{text}"
    );
    let missing = reports[2].problems[0].to_string();
    assert!(
        missing.contains("CASE_T/mri_norm2.h5: file not found"),
        "{missing}"
    );
    assert!(
        reports[2].to_string().starts_with("CASE_T  (unreadable)"),
        "{}",
        reports[2]
    );
}

#[test]
fn inspect_notes_a_label_without_foreground_without_calling_it_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let image = ndarray::Array3::from_elem([3, 3, 3], 1.0f32);
    let label = ndarray::Array3::zeros([3, 3, 3]);
    semisam::data::h5::write_case(
        &dir.path().join("EMPTY/mri_norm2.h5"),
        Some(&image),
        Some(&label),
    )
    .unwrap();
    fs::write(dir.path().join("test.list"), "EMPTY\n").unwrap();
    let dataset = Dataset::open(dir.path()).unwrap();
    let report = &inspect_dataset(&dataset, None, None).unwrap()[0];
    assert!(report.problems.is_empty());
    assert_eq!(
        report.notes,
        vec!["label has no foreground voxel".to_string()]
    );
    assert_eq!(report.label_values, Some(vec![0]));
}
