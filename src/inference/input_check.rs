//! Inputs a model was not trained for are refused before any prediction: another modality (as
//! the `dataset.json` next to the images declares it) or more than one channel (nnU-Net's
//! `_0001` channel files).

use std::path::Path;

use super::pipeline::{InferenceError, PredictionJob};
use crate::data::dataset::{CHANNEL_SUFFIX, DATASET_JSON};
use crate::data::modality::declared_modality;

/// The `dataset.json` that describes the images in `input`: in the folder itself or its parent
/// (`imagesTs/` sits in the dataset root).
fn describing_dataset(input: &Path) -> Option<std::path::PathBuf> {
    let folder = if input.is_dir() {
        input
    } else {
        input.parent()?
    };
    [Some(folder), folder.parent()]
        .into_iter()
        .flatten()
        .find(|f| f.join(DATASET_JSON).is_file())
        .map(Path::to_path_buf)
}

/// Refuse inputs of another modality or channel count than the model's (`channels` input
/// channels, trained on `trained_modality` images when known).
pub fn check_inputs(
    input: &Path,
    jobs: &[PredictionJob],
    channels: usize,
    trained_modality: Option<&str>,
) -> Result<(), InferenceError> {
    for job in jobs {
        let name = job
            .input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.split('.').next().unwrap_or_default();
        let channel = stem.rsplit_once('_').map(|(_, c)| c);
        if let Some(c) = channel
            && c.len() == CHANNEL_SUFFIX.len() - 1
            && c.chars().all(|d| d.is_ascii_digit())
            && c != &CHANNEL_SUFFIX[1..]
        {
            return Err(InferenceError::Output {
                path: job.input.clone(),
                message: format!(
                    "channel {c} of a multi-channel case, but the model was trained on {channels} channel(s)"
                ),
            });
        }
    }
    let Some(root) = describing_dataset(input) else {
        return Ok(());
    };
    let (modality, declared_channels) = declared_modality(&root)?;
    let json = root.join(DATASET_JSON);
    if declared_channels != channels {
        return Err(InferenceError::Output {
            path: json,
            message: format!(
                "declares {declared_channels} channels but the model was trained on {channels}"
            ),
        });
    }
    if let (Some(found), Some(trained)) = (&modality, trained_modality)
        && !found.trim().eq_ignore_ascii_case(trained.trim())
    {
        return Err(InferenceError::Output {
            path: json,
            message: format!(
                "declares modality {found:?} but the model was trained on {trained:?} images"
            ),
        });
    }
    Ok(())
}
