//! Dataset layouts, detected from the folder's content:
//! - UA-MT h5: `train.list` / `test.list` next to case folders `<ID>/mri_norm2.h5`, either in
//!   the root or in one sub-folder of it (LA keeps them under `2018LA_Seg_Training Set/`);
//! - MSD: `dataset.json` with labels number → name and `training` / `test` file lists;
//! - nnU-Net v2: `dataset.json` with labels name → number, `file_ending` and `channel_names`;
//!   images `imagesTr/<ID>_0000<ending>`, labels `labelsTr/<ID><ending>`, test `imagesTs/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::case_list::read_case_list;
use super::error::DataError;
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
    /// `None` for test cases without a reference. For UA-MT it is the image's own h5 file.
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
    /// Training cases first (in list / `dataset.json` order), then test cases.
    pub cases: Vec<Case>,
    /// Declared label values and their names. UA-MT declares none; binary {0, 1} is assumed.
    pub labels: BTreeMap<u8, String>,
    /// IDs of the training list (UA-MT `train.list`, MSD `training`, nnU-Net `imagesTr`).
    pub training_ids: Vec<String>,
    /// IDs of the test list (UA-MT `test.list`, MSD `test`, nnU-Net `imagesTs`).
    pub test_ids: Vec<String>,
}

impl Dataset {
    /// Detect the layout of `root` and list its cases. Case files are not opened here; a missing
    /// or broken file is reported when the case is loaded.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(if root.exists() {
                DataError::invalid(root, "is not a folder")
            } else {
                DataError::Missing {
                    path: root.to_path_buf(),
                }
            });
        }
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
    let cases = all
        .iter()
        .map(|id| {
            let file = cases_dir.join(id).join(UAMT_FILE);
            Case {
                id: id.to_string(),
                image: file.clone(),
                label: Some(file),
            }
        })
        .collect();
    Ok(Dataset {
        root: root.to_path_buf(),
        layout: Layout::UaMt { cases_dir },
        cases,
        labels: binary_labels(),
        training_ids,
        test_ids,
    })
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
    serde_json::from_str(&text).map_err(|e| DataError::Format {
        path: path.to_path_buf(),
        format: "JSON",
        reason: e.to_string(),
    })
}

fn open_json(root: &Path, json_path: &Path) -> Result<Dataset, DataError> {
    let json = read_json(json_path)?;
    let Some(labels) = json.get("labels").and_then(Value::as_object) else {
        return Err(DataError::invalid(json_path, "missing object `labels`"));
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

/// Strip the NIfTI extension (and a nnU-Net channel suffix when asked) from a file name.
fn case_id(file: &str, ending: &str) -> String {
    file.strip_suffix(ending).unwrap_or(file).to_string()
}

fn open_msd(root: &Path, json_path: &Path, json: &Value) -> Result<Dataset, DataError> {
    let labels = msd_labels(
        json_path,
        json["labels"].as_object().expect("checked by caller"),
    )?;
    let ending = |p: &str| {
        if p.ends_with(".nii.gz") {
            ".nii.gz"
        } else {
            ".nii"
        }
    };
    let resolve = |p: &str| root.join(p.trim_start_matches("./"));
    let mut cases = Vec::new();
    let mut training_ids = Vec::new();
    let training = json
        .get("training")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
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
        let id = case_id(file, ending(file));
        training_ids.push(id.clone());
        cases.push(Case {
            id,
            image: resolve(image),
            label: label.map(resolve),
        });
    }
    let mut test_ids = Vec::new();
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
        let id = case_id(file, ending(file));
        test_ids.push(id.clone());
        cases.push(Case {
            id,
            image: resolve(image),
            label: None,
        });
    }
    check_unique(json_path, &cases)?;
    Ok(Dataset {
        root: root.to_path_buf(),
        layout: Layout::Msd,
        cases,
        labels,
        training_ids,
        test_ids,
    })
}

fn check_unique(source: &Path, cases: &[Case]) -> Result<(), DataError> {
    let mut seen = std::collections::HashSet::new();
    for case in cases {
        if !seen.insert(case.id.as_str()) {
            return Err(DataError::DuplicateCase {
                path: source.to_path_buf(),
                id: case.id.clone(),
                location: "listed twice".into(),
            });
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
        labels.insert(label_value(json_path, name, value.as_u64())?, name.clone());
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
    let list = |folder: &str| -> Result<Vec<String>, DataError> {
        let dir = root.join(folder);
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let suffix = format!("{CHANNEL_SUFFIX}{file_ending}");
        let mut ids: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| DataError::io(&dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(&suffix))
                    .map(str::to_string)
            })
            .filter(|id| !id.starts_with('.'))
            .collect();
        ids.sort();
        Ok(ids)
    };
    let training_ids = list("imagesTr")?;
    let test_ids = list("imagesTs")?;
    let image = |folder: &str, id: &str| {
        root.join(folder)
            .join(format!("{id}{CHANNEL_SUFFIX}{file_ending}"))
    };
    let mut cases: Vec<Case> = training_ids
        .iter()
        .map(|id| Case {
            id: id.clone(),
            image: image("imagesTr", id),
            label: Some(root.join("labelsTr").join(format!("{id}{file_ending}"))),
        })
        .collect();
    cases.extend(test_ids.iter().map(|id| Case {
        id: id.clone(),
        image: image("imagesTs", id),
        label: None,
    }));
    check_unique(json_path, &cases)?;
    Ok(Dataset {
        root: root.to_path_buf(),
        layout: Layout::NnUnetV2 { file_ending },
        cases,
        labels,
        training_ids,
        test_ids,
    })
}
