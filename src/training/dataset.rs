//! From a dataset on disk to the in-memory cases of a run: splits, reading, normalisation and
//! resampling onto the run's grid.
//!
//! Unlabeled cases are read with [`read_image`] alone: their label files are never opened, so a
//! label that happens to exist for them cannot leak into training. The one exception is asked for
//! by name: `sam.prompt_source = "ground_truth_oracle"`, an analysis of the pseudo-labels' upper
//! bound, reads them for the SAM prompts.

use std::path::Path;

use ndarray::Array3;

use super::config::{Protocol, RunConfig};
use super::trainer::TrainingData;
use super::validation::EvalCase;
use crate::data::batches::{LabeledCase, TrainingPool, UnlabeledCase};
use crate::data::validate::check_finite;
use crate::data::{Case, DataError, Dataset, Splits, read_image, try_map_in_order};

/// The run's dataset: `data.root` (or `root`, when the dataset has moved) plus the images of
/// `data.unlabeled_root`.
pub fn open_dataset(config: &RunConfig, root: Option<&Path>) -> Result<Dataset, DataError> {
    let mut dataset = Dataset::open(root.unwrap_or(config.data.root.as_path()))?;
    if let Some(dir) = &config.data.unlabeled_root {
        dataset.add_unlabeled_folder(dir)?;
    }
    Ok(dataset)
}

/// The run's splits: the explicit `data.splits_file`, or `data.protocol` on the dataset (see
/// [`Protocol`]), with the test list as test split. `label_free` names the unlabeled cases that
/// have no label at all. The cases are checked before any is read: labeled and validation cases
/// have a label, and a batch with unlabeled items has unlabeled cases to draw them from.
pub fn make_splits(config: &RunConfig, dataset: &Dataset) -> Result<Splits, DataError> {
    let (mut splits, source) = match &config.data.splits_file {
        Some(path) => (Splits::load(path)?, path.clone()),
        None => {
            let splits = match config.data.protocol {
                Protocol::All => all_protocol(config, dataset)?,
                Protocol::Paper => paper_protocol(config, dataset)?,
            };
            (splits, dataset.root.clone())
        }
    };
    for (id, needs_label) in splits
        .labeled
        .iter()
        .chain(&splits.validation)
        .map(|id| (id, true))
        .chain(
            splits
                .unlabeled
                .iter()
                .chain(&splits.test)
                .map(|id| (id, false)),
        )
    {
        let Some(case) = dataset.case(id) else {
            return Err(DataError::invalid(
                &source,
                format!("case {id} is not in the dataset {}", dataset.root.display()),
            ));
        };
        if needs_label && case.label.is_none() {
            return Err(DataError::invalid(
                &source,
                format!(
                    "case {id} is labeled or validation but has no label ({})",
                    case.image.display()
                ),
            ));
        }
    }
    let unlabeled_items = config.training.batch_size - config.training.labeled_bs;
    if unlabeled_items > 0 && splits.unlabeled.is_empty() {
        return Err(DataError::invalid(
            &source,
            format!(
                "the batch holds {unlabeled_items} unlabeled item(s) but there is no unlabeled case: \
                 add images without labels (MSD / nnU-Net: imagesTr/ without a label file, or \
                 imagesUnlabeled/; UA-MT: h5 files without `label`; or data.unlabeled_root), or \
                 use data.protocol = \"paper\" to use labeled cases without their labels"
            ),
        ));
    }
    splits.label_free = splits
        .unlabeled
        .iter()
        .filter(|id| dataset.is_label_free(id))
        .cloned()
        .collect();
    splits.check(&source)?;
    Ok(splits)
}

/// The validation cases, and the other labeled cases in the order labeled cases are taken: the
/// last `data.validation` labeled cases and the ones before them in list order, or with
/// `data.folds` fold `data.fold` and the other folds (see [`crate::data::folds`]).
fn labeled_and_validation(
    config: &RunConfig,
    dataset: &Dataset,
) -> Result<(Vec<String>, Vec<String>), DataError> {
    let ids = &dataset.training_ids;
    let n_labeled = config.data.labeled.unwrap_or(0).max(1);
    if let Some(spec) = config.data.fold_spec() {
        let cases = spec.cases(ids, &dataset.root)?;
        if n_labeled > cases.training.len() {
            return Err(DataError::invalid(
                &dataset.root,
                format!(
                    "data.labeled = {n_labeled} but fold {} of {} leaves {} labeled case(s) outside the validation fold",
                    spec.fold,
                    spec.folds,
                    cases.training.len()
                ),
            ));
        }
        return Ok((cases.training, cases.validation));
    }
    let n_validation = config.data.validation;
    if n_labeled + n_validation > ids.len() {
        return Err(DataError::invalid(
            &dataset.root,
            format!(
                "{n_labeled} labeled + {n_validation} validation cases requested but the training list holds {} with a label",
                ids.len()
            ),
        ));
    }
    let (training, validation) = ids.split_at(ids.len() - n_validation);
    Ok((training.to_vec(), validation.to_vec()))
}

/// The first `data.unlabeled` of `candidates` (all when unset).
fn first_unlabeled(
    config: &RunConfig,
    dataset: &Dataset,
    candidates: Vec<String>,
) -> Result<Vec<String>, DataError> {
    let n = config.data.unlabeled.unwrap_or(candidates.len());
    if n > candidates.len() {
        return Err(DataError::invalid(
            &dataset.root,
            format!(
                "{n} unlabeled cases requested but only {} remain",
                candidates.len()
            ),
        ));
    }
    Ok(candidates[..n].to_vec())
}

/// Every labeled case (at most `data.labeled`, the first in [`labeled_and_validation`]'s order)
/// is labeled; the images without a label are unlabeled.
fn all_protocol(config: &RunConfig, dataset: &Dataset) -> Result<Splits, DataError> {
    let (training, validation) = labeled_and_validation(config, dataset)?;
    let n_labeled = config.data.labeled.unwrap_or(training.len());
    Ok(Splits {
        labeled: training[..n_labeled].to_vec(),
        unlabeled: first_unlabeled(config, dataset, dataset.unlabeled_ids.clone())?,
        validation,
        test: dataset.test_ids.clone(),
        seed: config.training.seed,
        label_free: Vec::new(),
        cross_validation: config.data.fold_spec(),
    })
}

/// The first `data.labeled` cases of the training list (with folds: of the other folds, in
/// [`labeled_and_validation`]'s order) are labeled; the other labeled cases outside validation,
/// then the images without a label, are unlabeled.
fn paper_protocol(config: &RunConfig, dataset: &Dataset) -> Result<Splits, DataError> {
    let (training, validation) = labeled_and_validation(config, dataset)?;
    let (labeled, hidden) = training.split_at(config.data.labeled.unwrap_or(0));
    let candidates = hidden
        .iter()
        .chain(&dataset.unlabeled_ids)
        .cloned()
        .collect();
    Ok(Splits {
        labeled: labeled.to_vec(),
        unlabeled: first_unlabeled(config, dataset, candidates)?,
        validation,
        test: dataset.test_ids.clone(),
        seed: config.training.seed,
        label_free: Vec::new(),
        cross_validation: config.data.fold_spec(),
    })
}

/// Read every case of the splits (in parallel) and prepare it.
pub fn load_training_data(
    config: &RunConfig,
    dataset: &Dataset,
    splits: &Splits,
) -> Result<TrainingData, DataError> {
    let labeled = load_labeled(config, dataset, &splits.labeled, "labeled")?
        .into_iter()
        .map(|(id, image, label)| LabeledCase { id, image, label })
        .collect();
    let (unlabeled, oracle_labels) = if config.uses_ground_truth_oracle() {
        let role = "unlabeled with sam.prompt_source = \"ground_truth_oracle\"";
        load_labeled(config, dataset, &splits.unlabeled, role)?
            .into_iter()
            .map(|(id, image, label)| {
                (
                    UnlabeledCase {
                        id: id.clone(),
                        image,
                    },
                    (id, label),
                )
            })
            .unzip()
    } else {
        (
            load_unlabeled(config, dataset, &splits.unlabeled)?,
            Vec::new(),
        )
    };
    let validation = load_labeled(config, dataset, &splits.validation, "validation")?
        .into_iter()
        .map(|(id, image, label)| EvalCase { id, image, label })
        .collect();
    Ok(TrainingData {
        pool: TrainingPool { labeled, unlabeled },
        validation,
        oracle_labels,
    })
}

/// The images of unlabeled cases; their label files are not opened.
fn load_unlabeled(
    config: &RunConfig,
    dataset: &Dataset,
    ids: &[String],
) -> Result<Vec<UnlabeledCase>, DataError> {
    try_map_in_order(ids, |id| {
        let case = find(dataset, id)?;
        let volume = read_image(&case.image)?;
        check_finite(&volume)?;
        Ok(UnlabeledCase {
            id: id.clone(),
            image: config.preparation().image(&volume)?,
        })
    })
}

type Prepared = (String, Array3<f32>, Array3<u8>);

fn load_labeled(
    config: &RunConfig,
    dataset: &Dataset,
    ids: &[String],
    role: &str,
) -> Result<Vec<Prepared>, DataError> {
    try_map_in_order(ids, |id| {
        let case = find(dataset, id)?;
        let loaded = dataset.load_case(case)?;
        let label = loaded.label.ok_or_else(|| {
            let missing = match case.image.extension() {
                Some(ext) if ext == "h5" => "missing dataset `label` in its h5 file",
                _ => "no label file",
            };
            DataError::invalid(
                &case.image,
                format!("case {id} is used as {role} but has no label: {missing}"),
            )
        })?;
        if let Some(&bad) = label
            .data
            .iter()
            .find(|&&v| usize::from(v) >= config.network.num_classes)
        {
            return Err(DataError::invalid(
                &label.path,
                format!(
                    "label value {bad} but network.num_classes is {}",
                    config.network.num_classes
                ),
            ));
        }
        let preparation = config.preparation();
        let image = preparation.image(&loaded.image)?;
        Ok((id.clone(), image, preparation.label(&label)?))
    })
}

fn find<'a>(dataset: &'a Dataset, id: &str) -> Result<&'a Case, DataError> {
    dataset.case(id).ok_or_else(|| {
        DataError::invalid(&dataset.root, format!("case {id} is not in the dataset"))
    })
}
