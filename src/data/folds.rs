//! Cross-validation folds over a dataset's labeled cases.
//!
//! The labeled cases are shuffled with their own seed (not the training seed, so that a seed
//! study trains every seed on the same folds) and cut into folds whose sizes differ by at most
//! one. Fold K validates. The other folds, starting with fold K + 1 and wrapping around, give the
//! order in which the run takes its labeled cases: with few labeled cases the choice of case
//! moves the result more than most method changes, so the labeled cases rotate with the fold
//! instead of staying the first of the list, and a mean over the folds does not hinge on one
//! case. A case of fold K is never among them.

use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::error::DataError;

/// nnU-Net's split seed; the default of `data.fold_seed`.
pub const DEFAULT_FOLD_SEED: u64 = 12345;

/// Fold `fold` (0-based) of `folds`, shuffled with `seed`; saved with the splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldSpec {
    pub fold: usize,
    pub folds: usize,
    pub seed: u64,
}

/// The cases of one fold's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldCases {
    /// Fold `fold`, in the order of the case list.
    pub validation: Vec<String>,
    /// The other folds' cases, fold `fold + 1` first and wrapping around, each fold in shuffled
    /// order: the order in which labeled cases are taken.
    pub training: Vec<String>,
}

/// `ids` shuffled with `seed` and cut, in order, into `folds` runs: the first `len % folds` hold
/// one case more than the others. `folds` must be between 1 and `ids.len()`.
pub fn partition(ids: &[String], folds: usize, seed: u64) -> Vec<Vec<String>> {
    assert!(
        (1..=ids.len()).contains(&folds),
        "{folds} folds of {} cases",
        ids.len()
    );
    let mut shuffled = ids.to_vec();
    shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let (base, longer) = (ids.len() / folds, ids.len() % folds);
    let mut rest = shuffled.into_iter();
    (0..folds)
        .map(|k| rest.by_ref().take(base + usize::from(k < longer)).collect())
        .collect()
}

impl FoldSpec {
    /// The checks that need no dataset: at least two folds, and a fold among them.
    pub fn check(&self) -> Result<(), String> {
        if self.folds < 2 {
            return Err(format!(
                "data.folds = {}: a cross-validation needs at least 2 folds",
                self.folds
            ));
        }
        if self.fold >= self.folds {
            return Err(format!(
                "data.fold = {} but data.folds = {}: folds are numbered 0 to {}",
                self.fold,
                self.folds,
                self.folds - 1
            ));
        }
        Ok(())
    }

    /// The validation fold of `ids` (the labeled cases, in list order) and the other cases in
    /// the order labeled cases are taken; `source` names the dataset in errors.
    pub fn cases(&self, ids: &[String], source: &Path) -> Result<FoldCases, DataError> {
        self.check()
            .map_err(|message| DataError::invalid(source, message))?;
        if self.folds > ids.len() {
            return Err(DataError::invalid(
                source,
                format!(
                    "data.folds = {} but the dataset has {} labeled case(s): every fold needs one",
                    self.folds,
                    ids.len()
                ),
            ));
        }
        let mut folds = partition(ids, self.folds, self.seed);
        let validating = std::mem::take(&mut folds[self.fold]);
        let validation = ids
            .iter()
            .filter(|id| validating.contains(id))
            .cloned()
            .collect();
        folds.rotate_left((self.fold + 1) % self.folds);
        Ok(FoldCases {
            validation,
            training: folds.into_iter().flatten().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("case{i:02}")).collect()
    }

    #[test]
    fn folds_are_disjoint_near_equal_and_cover_every_case_once() {
        for (n, k) in [(20, 5), (20, 4), (5, 3), (7, 7), (23, 5), (2, 2)] {
            let all = ids(n);
            let folds = partition(&all, k, DEFAULT_FOLD_SEED);
            assert_eq!(folds.len(), k);
            let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{n} cases in {k} folds: {sizes:?}");
            let mut seen: Vec<&String> = folds.iter().flatten().collect();
            assert_eq!(seen.len(), n, "{sizes:?}");
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), n, "a case is in two folds");
            assert_eq!(seen.into_iter().cloned().collect::<Vec<_>>(), all);
        }
        let sizes: Vec<usize> = partition(&ids(23), 5, 1).iter().map(Vec::len).collect();
        assert_eq!(sizes, [5, 5, 5, 4, 4]);
    }

    #[test]
    fn folds_are_stable_under_their_seed_and_change_with_another() {
        let all = ids(20);
        let folds = partition(&all, 5, DEFAULT_FOLD_SEED);
        assert_eq!(partition(&all, 5, DEFAULT_FOLD_SEED), folds);
        assert_ne!(partition(&all, 5, 7), folds);
        // Shuffled: the folds are not the list cut in order.
        assert_ne!(folds[0], all[..4]);
    }

    #[test]
    fn a_fold_run_validates_on_its_fold_and_takes_labeled_cases_from_the_next_folds() {
        let all = ids(10);
        let folds = partition(&all, 3, 9);
        let mut validations = BTreeSet::new();
        for fold in 0..3 {
            let spec = FoldSpec {
                fold,
                folds: 3,
                seed: 9,
            };
            let cases = spec.cases(&all, Path::new("data")).unwrap();
            let mut expected_validation = folds[fold].clone();
            expected_validation.sort();
            assert_eq!(cases.validation, expected_validation, "fold {fold}");
            let next = folds[(fold + 1) % 3].clone();
            let after = folds[(fold + 2) % 3].clone();
            assert_eq!(cases.training, [next, after].concat(), "fold {fold}");
            assert!(
                cases
                    .training
                    .iter()
                    .all(|id| !cases.validation.contains(id))
            );
            assert_eq!(cases.training.len() + cases.validation.len(), 10);
            validations.extend(cases.validation);
        }
        assert_eq!(validations.len(), 10, "every case validates once");
    }

    #[test]
    fn impossible_folds_are_errors_naming_the_keys() {
        let spec = |fold, folds| FoldSpec {
            fold,
            folds,
            seed: 1,
        };
        let err = |fold, folds, n| {
            spec(fold, folds)
                .cases(&ids(n), Path::new("LA"))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(5, 5, 20),
            "LA: data.fold = 5 but data.folds = 5: folds are numbered 0 to 4"
        );
        assert_eq!(
            err(0, 1, 20),
            "LA: data.folds = 1: a cross-validation needs at least 2 folds"
        );
        assert_eq!(
            err(0, 6, 5),
            "LA: data.folds = 6 but the dataset has 5 labeled case(s): every fold needs one"
        );
        assert!(spec(4, 5).check().is_ok());
    }
}
