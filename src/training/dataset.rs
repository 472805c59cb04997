//! From a dataset on disk to the in-memory cases of a run: splits, reading, normalisation and
//! down-sampling.
//!
//! Unlabeled cases are read with [`read_image`] alone: their label files are never opened, so a
//! label that happens to exist for them cannot leak into training. The one exception is asked for
//! by name: `sam.prompt_source = "ground_truth_oracle"`, an analysis of the pseudo-labels' upper
//! bound, reads them for the SAM prompts.

use ndarray::Array3;
use rayon::prelude::*;

use super::config::RunConfig;
use super::trainer::TrainingData;
use super::validation::EvalCase;
use crate::data::batches::{LabeledCase, TrainingPool, UnlabeledCase};
use crate::data::validate::check_finite;
use crate::data::{Case, DataError, Dataset, Splits, read_image};

/// The run's splits: the explicit `data.splits_file`, or the paper protocol on the training list
/// (the first `labeled` IDs labeled, the last `validation` IDs for validation, the IDs between
/// them unlabeled — at most `unlabeled` of them), with the test list as test split.
pub fn make_splits(config: &RunConfig, dataset: &Dataset) -> Result<Splits, DataError> {
    let seed = config.training.seed;
    if let Some(path) = &config.data.splits_file {
        let splits = Splits::load(path)?;
        for id in splits
            .labeled
            .iter()
            .chain(&splits.unlabeled)
            .chain(&splits.validation)
            .chain(&splits.test)
        {
            if dataset.case(id).is_none() {
                return Err(DataError::invalid(
                    path,
                    format!("case {id} is not in the dataset {}", dataset.root.display()),
                ));
            }
        }
        return Ok(splits);
    }
    let ids = &dataset.training_ids;
    let (n_labeled, n_validation) = (config.data.labeled, config.data.validation);
    if n_labeled + n_validation > ids.len() {
        return Err(DataError::invalid(
            &dataset.root,
            format!(
                "{n_labeled} labeled + {n_validation} validation cases requested but the training list holds {}",
                ids.len()
            ),
        ));
    }
    let middle = &ids[n_labeled..ids.len() - n_validation];
    let n_unlabeled = config.data.unlabeled.unwrap_or(middle.len());
    if n_unlabeled > middle.len() {
        return Err(DataError::invalid(
            &dataset.root,
            format!(
                "{n_unlabeled} unlabeled cases requested but only {} remain",
                middle.len()
            ),
        ));
    }
    let splits = Splits {
        labeled: ids[..n_labeled].to_vec(),
        unlabeled: middle[..n_unlabeled].to_vec(),
        validation: ids[ids.len() - n_validation..].to_vec(),
        test: dataset.test_ids.clone(),
        seed,
    };
    splits.check(&dataset.root)?;
    Ok(splits)
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
    ids.par_iter()
        .map(|id| {
            let case = find(dataset, id)?;
            let volume = read_image(&case.image)?;
            check_finite(&volume)?;
            Ok(UnlabeledCase {
                id: id.clone(),
                image: config.preparation().image(volume.data, &case.image)?,
            })
        })
        .collect()
}

type Prepared = (String, Array3<f32>, Array3<u8>);

fn load_labeled(
    config: &RunConfig,
    dataset: &Dataset,
    ids: &[String],
    role: &str,
) -> Result<Vec<Prepared>, DataError> {
    ids.par_iter()
        .map(|id| {
            let case = find(dataset, id)?;
            let loaded = dataset.load_case(case)?;
            let label = loaded.label.ok_or_else(|| {
                DataError::invalid(
                    &case.image,
                    format!("case {id} is used as {role} but has no label file"),
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
            let image = config.preparation().image(loaded.image.data, &case.image)?;
            Ok((id.clone(), image, config.preparation().label(&label.data)))
        })
        .collect()
}

fn find<'a>(dataset: &'a Dataset, id: &str) -> Result<&'a Case, DataError> {
    dataset.case(id).ok_or_else(|| {
        DataError::invalid(&dataset.root, format!("case {id} is not in the dataset"))
    })
}
