//! Explicit data splits, saved into the run folder with their seed so that a run can be
//! reproduced and audited.

use std::collections::HashMap;
use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::error::DataError;
use super::folds::FoldSpec;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Splits {
    pub labeled: Vec<String>,
    pub unlabeled: Vec<String>,
    pub validation: Vec<String>,
    pub test: Vec<String>,
    pub seed: u64,
    /// The unlabeled cases that have no label at all (images without a label file); the other
    /// unlabeled cases are labeled cases used without their labels (paper protocol). Absent in
    /// files written before it existed.
    #[serde(default)]
    pub label_free: Vec<String>,
    /// The cross-validation fold the validation cases are (`data.folds`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<FoldSpec>,
}

impl Splits {
    /// The paper protocol: the first `n_labeled` IDs of the training list, in file order, are
    /// labeled; the rest of it is unlabeled; the test list is the test split; no validation.
    pub fn paper_protocol(
        list_path: &Path,
        training: &[String],
        test: &[String],
        n_labeled: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        if n_labeled > training.len() {
            return Err(DataError::invalid(
                list_path,
                format!(
                    "{n_labeled} labeled cases requested but the training list holds {}",
                    training.len()
                ),
            ));
        }
        let splits = Splits {
            labeled: training[..n_labeled].to_vec(),
            unlabeled: training[n_labeled..].to_vec(),
            validation: Vec::new(),
            test: test.to_vec(),
            seed,
            label_free: Vec::new(),
            cross_validation: None,
        };
        splits.check(list_path)?;
        Ok(splits)
    }

    /// A seeded random split of `ids` for datasets without a protocol list: `n_test` test,
    /// `n_validation` validation and `n_labeled` labeled cases; every other case is unlabeled.
    pub fn random(
        source: &Path,
        ids: &[String],
        n_labeled: usize,
        n_validation: usize,
        n_test: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        let needed = n_labeled + n_validation + n_test;
        if needed > ids.len() {
            return Err(DataError::invalid(
                source,
                format!(
                    "{needed} cases requested but only {} are available",
                    ids.len()
                ),
            ));
        }
        let mut shuffled = ids.to_vec();
        shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut rest = shuffled.into_iter();
        let mut take = |n: usize| rest.by_ref().take(n).collect::<Vec<_>>();
        let test = take(n_test);
        let validation = take(n_validation);
        let labeled = take(n_labeled);
        let unlabeled = take(usize::MAX);
        let splits = Splits {
            labeled,
            unlabeled,
            validation,
            test,
            seed,
            label_free: Vec::new(),
            cross_validation: None,
        };
        splits.check(source)?;
        Ok(splits)
    }

    fn named(&self) -> [(&'static str, &[String]); 4] {
        [
            ("labeled", &self.labeled),
            ("unlabeled", &self.unlabeled),
            ("validation", &self.validation),
            ("test", &self.test),
        ]
    }

    /// Every case appears at most once across all splits, the label-free cases are unlabeled
    /// ones and a fold is one of its folds. `path` names the source in errors.
    pub fn check(&self, path: &Path) -> Result<(), DataError> {
        if let Some(fold) = &self.cross_validation {
            fold.check()
                .map_err(|message| DataError::invalid(path, message))?;
        }
        if let Some(id) = self
            .label_free
            .iter()
            .find(|id| !self.unlabeled.contains(id))
        {
            return Err(DataError::invalid(
                path,
                format!("case {id} is listed as label-free but is not an unlabeled case"),
            ));
        }
        let mut seen: HashMap<&str, &'static str> = HashMap::new();
        for (split, ids) in self.named() {
            for id in ids {
                match seen.insert(id, split) {
                    Some(first) if first == split => {
                        return Err(DataError::DuplicateCase {
                            path: path.to_path_buf(),
                            id: id.clone(),
                            location: format!("twice in split `{split}`"),
                        });
                    }
                    Some(first) => {
                        return Err(DataError::CaseInTwoSplits {
                            path: path.to_path_buf(),
                            id: id.clone(),
                            first,
                            second: split,
                        });
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// Save as pretty JSON, atomically, after checking.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), DataError> {
        let path = path.as_ref();
        self.check(path)?;
        let mut json = serde_json::to_string_pretty(self).expect("splits serialise");
        json.push('\n');
        crate::io_util::write_atomic(path, json.as_bytes()).map_err(DataError::from)
    }

    /// Load and check; a splits file is what a run trains on, so it needs a labeled case.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let splits: Splits = serde_json::from_str(&text).map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            format: "splits JSON",
            reason: e.to_string(),
        })?;
        if splits.labeled.is_empty() {
            return Err(DataError::invalid(
                path,
                "the `labeled` list is empty: training needs at least one labeled case",
            ));
        }
        splits.check(path)?;
        Ok(splits)
    }
}
