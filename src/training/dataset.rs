//! From a dataset on disk to the in-memory cases of a run: splits, reading, normalisation and
//! resampling onto the run's grid.
//!
//! Unlabeled cases are read with [`read_image`] alone: their label files are never opened, so a
//! label that happens to exist for them cannot leak into training. The one exception is asked for
//! by name: `sam.prompt_source = "ground_truth_oracle"`, an analysis of the pseudo-labels' upper
//! bound, reads them for the SAM prompts.

use std::path::Path;

use ndarray::Array3;
use rayon::prelude::*;

use super::config::RunConfig;
use super::resample::{downsample_image, downsample_label};
use super::trainer::TrainingData;
use super::validation::EvalCase;
use crate::data::batches::{LabeledCase, TrainingPool, UnlabeledCase};
use crate::data::validate::check_finite;
use crate::data::resample::{resample_image, resample_label};
use crate::data::{Case, DataError, Dataset, Geometry, Splits, Volume, normalize, read_image};

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

/// The voxel spacing a volume is resampled from: its file's, else `data.spacing`; `None` when the
/// run does not resample.
fn source_spacing(
    geometry: &Geometry,
    config: &RunConfig,
    path: &Path,
) -> Result<Option<([f64; 3], [f64; 3])>, DataError> {
    let Some(target) = config.data.target_spacing else {
        return Ok(None);
    };
    let spacing = geometry.spacing.or(config.data.spacing).ok_or_else(|| {
        DataError::invalid(
            path,
            "the file stores no voxel spacing and data.spacing is not set, so it cannot be resampled to data.target_spacing",
        )
    })?;
    Ok(Some((spacing, target)))
}

/// Normalise an image and bring it onto the run's grid (resampled to `data.target_spacing`, or
/// down-sampled by `data.downsample`); training and inference share this so that a model always
/// sees inputs prepared the same way.
pub fn prepare_image(image: &Volume<f32>, config: &RunConfig) -> Result<Array3<f32>, DataError> {
    let mut data = image.data.clone();
    normalize(&mut data, config.data.normalization)
        .map_err(|e| DataError::invalid(&image.path, e.to_string()))?;
    Ok(
        match source_spacing(&image.geometry, config, &image.path)? {
            Some((spacing, target)) => resample_image(data.view(), spacing, target),
            None => downsample_image(&data, config.data.downsample),
        },
    )
}

/// A label map on the run's grid (see [`prepare_image`]).
pub fn prepare_label(label: &Volume<u8>, config: &RunConfig) -> Result<Array3<u8>, DataError> {
    Ok(
        match source_spacing(&label.geometry, config, &label.path)? {
            Some((spacing, target)) => resample_label(label.data.view(), spacing, target),
            None => downsample_label(&label.data, config.data.downsample),
        },
    )
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
                image: prepare_image(&volume, config)?,
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
            let image = prepare_image(&loaded.image, config)?;
            let label = prepare_label(&label, config)?;
            Ok((id.clone(), image, label))
        })
        .collect()
}

fn find<'a>(dataset: &'a Dataset, id: &str) -> Result<&'a Case, DataError> {
    dataset.case(id).ok_or_else(|| {
        DataError::invalid(&dataset.root, format!("case {id} is not in the dataset"))
    })
}
