//! Dataset layouts, detected from the folder's content:
//! - UA-MT h5: `train.list` / `test.list` next to case folders `<ID>/mri_norm2.h5`, either in
//!   the root or in one sub-folder of it (LA keeps them under `2018LA_Seg_Training Set/`);
//! - MSD: `dataset.json` with labels number → name and `training` / `test` file lists;
//! - nnU-Net v2: `dataset.json` with labels name → number, `file_ending` and `channel_names`;
//!   images `imagesTr/<ID>_0000<ending>`, labels `labelsTr/<ID><ending>`, test `imagesTs/`.
//!
//! Images without any label are unlabeled cases: a UA-MT h5 file without a `label` dataset, an
//! MSD / nnU-Net image in `imagesTr/` without a label file in `labelsTr/` (for MSD: a `training`
//! entry without `label`, or an image `dataset.json` does not list), every image of an optional
//! `imagesUnlabeled/` folder, and every image of a folder added with
//! [`Dataset::add_unlabeled_folder`] (`data.unlabeled_root`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::case_list::read_case_list;
use super::error::DataError;
use super::h5;
use super::image_folder::{FoundImage, nnunet_labels, scan_nnunet, scan_plain};
use super::validate::case_problems;
use super::volume::Volume;
use super::{read_image, read_label};

/// UA-MT's file name inside each case folder.
pub const UAMT_FILE: &str = "mri_norm2.h5";
pub const TRAIN_LIST: &str = "train.list";
pub const TEST_LIST: &str = "test.list";
pub const DATASET_JSON: &str = "dataset.json";
/// nnU-Net's suffix of the first (and, for semisam, only) input channel.
pub const CHANNEL_SUFFIX: &str = "_0000";
/// MSD / nnU-Net folder of images that have no label (named like `imagesTr/`'s images).
pub const UNLABELED_DIR: &str = "imagesUnlabeled";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// UA-MT h5; `cases_dir` is where the `<ID>/` folders are.
    UaMt {
        cases_dir: PathBuf,
    },
    Msd,
    NnUnetV2 {
        file_ending: String,
    },
}

impl Layout {
    pub fn name(&self) -> &'static str {
        match self {
            Layout::UaMt { .. } => "UA-MT h5",
            Layout::Msd => "MSD",
            Layout::NnUnetV2 { .. } => "nnU-Net v2",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub id: String,
    pub image: PathBuf,
    /// `None` for unlabeled images and test cases without a reference. For UA-MT it is the
    /// image's own h5 file.
    pub label: Option<PathBuf>,
}

/// A case's volumes, checked.
#[derive(Debug, Clone)]
pub struct LoadedCase {
    pub id: String,
    pub image: Volume<f32>,
    pub label: Option<Volume<u8>>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    /// Labeled training cases first (in list / `dataset.json` order), then unlabeled images, then
    /// test cases.
    pub cases: Vec<Case>,
    /// Declared label values and their names. UA-MT declares none; binary {0, 1} is assumed.
    pub labels: BTreeMap<u8, String>,
    /// IDs of the labeled training cases (UA-MT `train.list`, MSD `training`, nnU-Net
    /// `imagesTr`), in list order; images without a label are not among them.
    pub training_ids: Vec<String>,
    /// IDs of the images without any label (see the module documentation), in the order found.
    pub unlabeled_ids: Vec<String>,
    /// IDs of the test list (UA-MT `test.list`, MSD `test`, nnU-Net `imagesTs`).
    pub test_ids: Vec<String>,
}

impl Dataset {
    /// Detect the layout of `root` and list its cases. Only UA-MT h5 files are opened here, to
    /// see whether they hold a label; a missing or broken file is reported when the case is
    /// loaded.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref();
        require_folder(root)?;
        let json = root.join(DATASET_JSON);
        if json.is_file() {
            return open_json(root, &json);
        }
        if root.join(TRAIN_LIST).is_file() || root.join(TEST_LIST).is_file() {
            return open_uamt(root);
        }
        Err(DataError::invalid(
            root,
            format!(
                "unknown dataset layout: neither {DATASET_JSON} (MSD / nnU-Net) nor {TRAIN_LIST} / {TEST_LIST} (UA-MT h5) found"
            ),
        ))
    }

    pub fn label_values(&self) -> Vec<u8> {
        self.labels.keys().copied().collect()
    }

    pub fn case(&self, id: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.id == id)
    }

    /// Whether `id` is an image without any label (rather than a labeled case, which the paper
    /// protocol may use without its label).
    pub fn is_label_free(&self, id: &str) -> bool {
        self.unlabeled_ids.iter().any(|u| u == id)
    }

    /// Add every image of a plain folder (`<ID>.nii`, `.nii.gz`, `.h5`, `.npy`, `.png`, `<ID>/mri_norm2.h5`)
    /// as an unlabeled case, after the layout's own unlabeled images. A folder without images,
    /// or an ID the dataset already has, is an error naming the folder or file.
    pub fn add_unlabeled_folder(&mut self, dir: &Path) -> Result<(), DataError> {
        require_folder(dir)?;
        let found = scan_plain(dir)?;
        if found.is_empty() {
            return Err(DataError::invalid(
                dir,
                format!(
                    "no image found: expected <ID>.nii, <ID>.nii.gz, <ID>.h5, <ID>.npy, <ID>.png files or <ID>/{UAMT_FILE} folders"
                ),
            ));
        }
        if let Some((clash, existing)) = found
            .iter()
            .find_map(|f| self.case(&f.id).map(|case| (f, case)))
        {
            return Err(DataError::DuplicateCase {
                path: clash.path.clone(),
                id: clash.id.clone(),
                location: format!(
                    "the dataset {} already has it, for {}; every image needs its own ID, so rename one of them",
                    self.root.display(),
                    existing.image.display()
                ),
            });
        }
        let at = self.cases.len() - self.test_ids.len();
        self.unlabeled_ids
            .extend(found.iter().map(|f| f.id.clone()));
        self.cases
            .splice(at..at, found.into_iter().map(case_without_label));
        Ok(())
    }

    /// Read a case's image and label and check them (finite intensities, matching grids,
    /// declared label values); the first problem is returned as the error.
    pub fn load_case(&self, case: &Case) -> Result<LoadedCase, DataError> {
        let image = read_image(&case.image)?;
        let label = case.label.as_ref().map(read_label).transpose()?;
        if let Some(problem) = case_problems(&case.id, &image, label.as_ref(), &self.label_values())
            .into_iter()
            .next()
        {
            return Err(problem);
        }
        Ok(LoadedCase {
            id: case.id.clone(),
            image,
            label,
        })
    }
}

fn require_folder(path: &Path) -> Result<(), DataError> {
    if path.is_dir() {
        Ok(())
    } else if path.exists() {
        Err(DataError::invalid(path, "is not a folder"))
    } else {
        Err(DataError::Missing {
            path: path.to_path_buf(),
        })
    }
}

fn case_without_label(image: FoundImage) -> Case {
    Case {
        id: image.id,
        image: image.path,
        label: None,
    }
}

/// The images of an optional folder (none when it does not exist).
fn scan_optional(
    dir: &Path,
    scan: impl Fn(&Path) -> Result<Vec<FoundImage>, DataError>,
) -> Result<Vec<FoundImage>, DataError> {
    if dir.is_dir() {
        scan(dir)
    } else {
        Ok(Vec::new())
    }
}

/// A UA-MT h5 file that opens and holds no `label` dataset. A file that cannot be read counts as
/// labeled here, so that loading it reports the problem.
fn h5_without_label(file: &Path) -> bool {
    matches!(h5::has_dataset(file, h5::LABEL_KEY), Ok(false))
}

fn binary_labels() -> BTreeMap<u8, String> {
    BTreeMap::from([(0, "background".to_string()), (1, "foreground".to_string())])
}

fn open_uamt(root: &Path) -> Result<Dataset, DataError> {
    let read_optional = |name: &str| {
        let path = root.join(name);
        if path.is_file() {
            read_case_list(&path)
        } else {
            Ok(Vec::new())
        }
    };
    let training_ids = read_optional(TRAIN_LIST)?;
    let test_ids = read_optional(TEST_LIST)?;
    if let Some(id) = test_ids.iter().find(|id| training_ids.contains(id)) {
        return Err(DataError::CaseInTwoSplits {
            path: root.join(TEST_LIST),
            id: id.clone(),
            first: "train.list",
            second: "test.list",
        });
    }
    let all: Vec<&String> = training_ids.iter().chain(&test_ids).collect();
    let cases_dir = find_cases_dir(root, &all)?;
    let case = |id: &String| {
        let file = cases_dir.join(id).join(UAMT_FILE);
        let label = (!h5_without_label(&file)).then(|| file.clone());
        Case {
            id: id.clone(),
            image: file,
            label,
        }
    };
    let (labeled, unlabeled) = training_ids
        .iter()
        .map(case)
        .partition(|c| c.label.is_some());
    let test = test_ids.iter().map(case).collect();
    assemble(
        root,
        &root.join(TRAIN_LIST),
        Layout::UaMt { cases_dir },
        binary_labels(),
        [labeled, unlabeled, test],
    )
}

/// The root or the sub-folder of it holding the most listed case folders.
fn find_cases_dir(root: &Path, ids: &[&String]) -> Result<PathBuf, DataError> {
    let mut candidates = vec![root.to_path_buf()];
    let entries = std::fs::read_dir(root).map_err(|e| DataError::io(root, e))?;
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    candidates.extend(subdirs);
    let hits = |dir: &Path| {
        ids.iter()
            .filter(|id| dir.join(id.as_str()).join(UAMT_FILE).is_file())
            .count()
    };
    let best = candidates
        .into_iter()
        .map(|d| (hits(&d), d))
        // `max_by_key` keeps the last maximum; reversed, the root wins ties.
        .rev()
        .max_by_key(|(n, _)| *n);
    match best {
        Some((n, dir)) if n > 0 => Ok(dir),
        _ if ids.is_empty() => Err(DataError::invalid(
            root,
            format!("{TRAIN_LIST} and {TEST_LIST} list no case"),
        )),
        _ => Err(DataError::invalid(
            root,
            format!(
                "no case folder found: neither the folder nor a sub-folder holds <ID>/{UAMT_FILE} for a listed ID (e.g. {})",
                ids[0]
            ),
        )),
    }
}

pub(crate) fn read_json(path: &Path) -> Result<Value, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    // Editors on Windows save UTF-8 with a byte-order mark, which JSON parsers reject.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    serde_json::from_str(text).map_err(|e| DataError::Format {
        path: path.to_path_buf(),
        format: "JSON",
        reason: e.to_string(),
    })
}

/// "a list", "a string", ... for messages about a JSON value of the wrong kind.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn open_json(root: &Path, json_path: &Path) -> Result<Dataset, DataError> {
    let json = read_json(json_path)?;
    let labels = match json.get("labels") {
        Some(Value::Object(labels)) => labels,
        Some(other) => {
            return Err(DataError::invalid(
                json_path,
                format!(
                    "`labels` is {}, not an object of names and values (e.g. \
                     {{\"background\": 0, \"tumour\": 1}})",
                    json_kind(other)
                ),
            ));
        }
        None => return Err(DataError::invalid(json_path, "missing object `labels`")),
    };
    let nnunet = json.get("file_ending").is_some()
        || json.get("channel_names").is_some()
        || labels.values().any(|v| v.is_number() || v.is_array());
    if nnunet {
        open_nnunet(root, json_path, &json)
    } else {
        open_msd(root, json_path, &json)
    }
}

fn label_value(json_path: &Path, text: &str, v: Option<u64>) -> Result<u8, DataError> {
    v.filter(|v| *v <= 255).map(|v| v as u8).ok_or_else(|| {
        DataError::invalid(
            json_path,
            format!("label `{text}` is not an integer in 0..=255"),
        )
    })
}

fn msd_labels(
    json_path: &Path,
    labels: &serde_json::Map<String, Value>,
) -> Result<BTreeMap<u8, String>, DataError> {
    labels
        .iter()
        .map(|(number, name)| {
            let value = label_value(json_path, number, number.parse().ok())?;
            Ok((value, name.as_str().unwrap_or_default().to_string()))
        })
        .collect()
}

/// Strip the NIfTI extension from a file name.
fn case_id(file: &str) -> String {
    let ending = if file.ends_with(".nii.gz") {
        ".nii.gz"
    } else {
        ".nii"
    };
    file.strip_suffix(ending).unwrap_or(file).to_string()
}

/// A dataset from its labeled training cases, unlabeled images and test cases; `source` (the
/// list or `dataset.json`) is named when an ID occurs twice.
fn assemble(
    root: &Path,
    source: &Path,
    layout: Layout,
    labels: BTreeMap<u8, String>,
    [labeled, unlabeled, test]: [Vec<Case>; 3],
) -> Result<Dataset, DataError> {
    check_unique(
        source,
        [
            ("labeled training case", &labeled),
            ("unlabeled image", &unlabeled),
            ("test case", &test),
        ],
    )?;
    check_consecutive_labels(source, &labels)?;
    let ids = |cases: &[Case]| cases.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    let (training_ids, unlabeled_ids, test_ids) = (ids(&labeled), ids(&unlabeled), ids(&test));
    let cases: Vec<Case> = labeled.into_iter().chain(unlabeled).chain(test).collect();
    Ok(Dataset {
        root: root.to_path_buf(),
        layout,
        cases,
        labels,
        training_ids,
        unlabeled_ids,
        test_ids,
    })
}

fn open_msd(root: &Path, json_path: &Path, json: &Value) -> Result<Dataset, DataError> {
    let labels = msd_labels(
        json_path,
        json["labels"].as_object().expect("checked by caller"),
    )?;
    let resolve = |p: &str| root.join(p.trim_start_matches("./"));
    let (mut labeled, mut unlabeled) = (Vec::new(), Vec::new());
    let training = match json.get("training") {
        Some(Value::Array(entries)) => entries.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(other) => {
            return Err(DataError::invalid(
                json_path,
                format!(
                    "`training` is {}, not a list of {{\"image\": ..., \"label\": ...}} entries",
                    json_kind(other)
                ),
            ));
        }
    };
    for (index, entry) in training.iter().enumerate() {
        let (Some(image), label) = (
            entry.get("image").and_then(Value::as_str),
            entry.get("label").and_then(Value::as_str),
        ) else {
            return Err(DataError::invalid(
                json_path,
                format!("training entry {index} has no `image` path"),
            ));
        };
        let file = image.rsplit('/').next().unwrap_or(image);
        let case = Case {
            id: case_id(file),
            image: resolve(image),
            label: label.map(resolve),
        };
        if case.label.is_some() {
            labeled.push(case);
        } else {
            unlabeled.push(case);
        }
    }
    // Images that `dataset.json` does not list: labeled when `labelsTr/` has their file.
    let listed: std::collections::HashSet<PathBuf> = labeled
        .iter()
        .chain(&unlabeled)
        .map(|c| c.image.clone())
        .collect();
    for found in scan_optional(&root.join("imagesTr"), scan_plain)? {
        if listed.contains(&found.path) {
            continue;
        }
        let label = found
            .path
            .file_name()
            .map(|name| root.join("labelsTr").join(name))
            .filter(|path| path.is_file());
        match label {
            Some(label) => labeled.push(Case {
                id: found.id,
                image: found.path,
                label: Some(label),
            }),
            None => unlabeled.push(case_without_label(found)),
        }
    }
    unlabeled.extend(
        scan_optional(&root.join(UNLABELED_DIR), scan_plain)?
            .into_iter()
            .map(case_without_label),
    );
    let mut test = Vec::new();
    for entry in json
        .get("test")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let Some(image) = entry
            .as_str()
            .or_else(|| entry.get("image").and_then(Value::as_str))
        else {
            return Err(DataError::invalid(
                json_path,
                "a `test` entry is not a path",
            ));
        };
        let file = image.rsplit('/').next().unwrap_or(image);
        test.push(Case {
            id: case_id(file),
            image: resolve(image),
            label: None,
        });
    }
    assemble(
        root,
        json_path,
        Layout::Msd,
        labels,
        [labeled, unlabeled, test],
    )
}

/// Label values run 0, 1, 2, … without a gap, as nnU-Net requires: the network predicts one class
/// per value up to the largest, so a gap would add classes that no file holds, each scored Dice 1
/// (empty in prediction and reference) and inflating every mean. A missing 0 is background.
fn check_consecutive_labels(source: &Path, labels: &BTreeMap<u8, String>) -> Result<(), DataError> {
    let Some(&largest) = labels.keys().next_back() else {
        return Ok(());
    };
    let missing: Vec<u8> = (1..largest).filter(|v| !labels.contains_key(v)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let named = |value: u8| format!("`{}` is {value}", labels[&value]);
    let gaps = match missing.as_slice() {
        [one] => format!("{one} is"),
        [first, .., last] if missing.len() == usize::from(last - first) + 1 => {
            format!("{first} to {last} are")
        }
        _ => format!(
            "{} are",
            missing
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let hint = if labels.len() <= 2 && largest == 255 {
        " (a mask saved as 0/255: divide it by 255)"
    } else {
        ""
    };
    Err(DataError::invalid(
        source,
        format!(
            "label values must run 0, 1, 2, ... without gaps, as nnU-Net requires: {}, but {gaps} \
             not declared, so the network would have {} output classes that no file holds. \
             Renumber the label files and `labels` to 0 to {}{hint}",
            named(largest),
            missing.len(),
            labels.len() - usize::from(labels.contains_key(&0))
        ),
    ))
}

/// Every case ID once over the three roles; a clash names both images and their roles.
fn check_unique(source: &Path, roles: [(&str, &Vec<Case>); 3]) -> Result<(), DataError> {
    let mut seen = std::collections::HashMap::new();
    for (role, cases) in roles {
        for case in cases {
            if let Some((first_role, first_image)) =
                seen.insert(case.id.as_str(), (role, &case.image))
            {
                return Err(DataError::DuplicateCase {
                    path: source.to_path_buf(),
                    id: case.id.clone(),
                    location: format!(
                        "{first_role} {} and {role} {}; every image needs its own ID, so rename one of them",
                        first_image.display(),
                        case.image.display()
                    ),
                });
            }
        }
    }
    Ok(())
}

fn open_nnunet(root: &Path, json_path: &Path, json: &Value) -> Result<Dataset, DataError> {
    let mut labels = BTreeMap::new();
    for (name, value) in json["labels"].as_object().expect("checked by caller") {
        if value.is_array() {
            return Err(DataError::invalid(
                json_path,
                format!(
                    "label `{name}` is a region (list of values); semisam supports plain label values only"
                ),
            ));
        }
        let value = label_value(json_path, name, value.as_u64())?;
        if let Some(other) = labels.insert(value, name.clone()) {
            return Err(DataError::invalid(
                json_path,
                format!("labels `{other}` and `{name}` both have the value {value}"),
            ));
        }
    }
    let file_ending = json
        .get("file_ending")
        .and_then(Value::as_str)
        .unwrap_or(".nii.gz")
        .to_string();
    if let Some(channels) = json.get("channel_names").and_then(Value::as_object)
        && channels.len() != 1
    {
        return Err(DataError::invalid(
            json_path,
            format!(
                "{} input channels declared; semisam reads single-channel images",
                channels.len()
            ),
        ));
    }
    let scan = |folder: &str| scan_optional(&root.join(folder), |d| scan_nnunet(d, &file_ending));
    let images = scan("imagesTr")?;
    let unlabeled_images = scan(UNLABELED_DIR)?;
    // A label whose image is missing or misnamed would otherwise drop out of training unnoticed,
    // and its image (if misnamed) train as unlabeled. (A label beside an image of the unlabeled
    // folder is left unread, as that folder's images are.)
    let labels_dir = root.join("labelsTr");
    if labels_dir.is_dir() {
        for (id, path) in nnunet_labels(&labels_dir, &file_ending)? {
            if !images
                .iter()
                .chain(&unlabeled_images)
                .any(|image| image.id == id)
            {
                return Err(DataError::invalid(
                    path,
                    format!(
                        "a label without an image: expected imagesTr/{id}_0000{file_ending} \
                         (nnU-Net names an image <ID>_0000{file_ending} and its label \
                         <ID>{file_ending})"
                    ),
                ));
            }
        }
    }
    let (mut labeled, mut unlabeled) = (Vec::new(), Vec::new());
    for found in images {
        let label = root
            .join("labelsTr")
            .join(format!("{}{file_ending}", found.id));
        if label.is_file() {
            labeled.push(Case {
                id: found.id,
                image: found.path,
                label: Some(label),
            });
        } else {
            unlabeled.push(case_without_label(found));
        }
    }
    unlabeled.extend(unlabeled_images.into_iter().map(case_without_label));
    let test = scan("imagesTs")?
        .into_iter()
        .map(case_without_label)
        .collect();
    assemble(
        root,
        json_path,
        Layout::NnUnetV2 { file_ending },
        labels,
        [labeled, unlabeled, test],
    )
}
