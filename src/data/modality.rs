//! The imaging modality and channel count a dataset declares in its `dataset.json` (MSD
//! `modality`, nnU-Net v2 `channel_names`), which a model records and checks inputs against.

use std::path::Path;

use super::dataset::{DATASET_JSON, read_json};
use super::error::DataError;

/// Modality of channel 0 and the channel count from `dataset.json` (MSD `modality`, nnU-Net v2
/// `channel_names`); a UA-MT dataset declares none (one channel).
pub fn declared_modality(root: &Path) -> Result<(Option<String>, usize), DataError> {
    let path = root.join(DATASET_JSON);
    if !path.is_file() {
        return Ok((None, 1));
    }
    let json = read_json(&path)?;
    let channels = json
        .get("modality")
        .or_else(|| json.get("channel_names"))
        .and_then(serde_json::Value::as_object);
    Ok(match channels {
        Some(map) => (
            map.get("0").and_then(|v| v.as_str()).map(str::to_owned),
            map.len().max(1),
        ),
        None => (None, 1),
    })
}
