//! Finding the images of a folder: the unlabeled pools (`imagesUnlabeled/`, `data.unlabeled_root`)
//! and the image folders of the MSD and nnU-Net v2 layouts. Files are listed, not opened.

use std::path::{Path, PathBuf};

use super::dataset::UAMT_FILE;
use super::error::DataError;

/// One image found in a folder, with the case ID its name gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundImage {
    pub id: String,
    pub path: PathBuf,
}

/// A file name without its image extension, or `None` when it is not an image.
fn plain_id(name: &str) -> Option<&str> {
    super::split_volume_extension(name).map(|(id, _)| id)
}

/// Entries of `dir` sorted by name, hidden ones (`.name`, e.g. macOS `._` files) left out.
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(DataError::invalid(
                entry.path(),
                "file name is not valid UTF-8",
            ));
        };
        if !name.starts_with('.') {
            entries.push((name, entry.path()));
        }
    }
    entries.sort();
    Ok(entries)
}

fn check_unique_ids(dir: &Path, found: &[FoundImage]) -> Result<(), DataError> {
    let mut seen: std::collections::HashMap<&str, &Path> = std::collections::HashMap::new();
    for image in found {
        if let Some(first) = seen.insert(&image.id, &image.path) {
            return Err(DataError::DuplicateCase {
                path: dir.to_path_buf(),
                id: image.id.clone(),
                location: format!("{} and {}", first.display(), image.path.display()),
            });
        }
    }
    Ok(())
}

/// The images of a plain folder: `<ID>.nii`, `<ID>.nii.gz`, `<ID>.h5`, `<ID>.npy` files and
/// UA-MT case folders `<ID>/mri_norm2.h5`, sorted by ID. Other files (case lists, notes) and
/// sub-folders without `mri_norm2.h5` are not images and are skipped.
pub fn scan_plain(dir: &Path) -> Result<Vec<FoundImage>, DataError> {
    let mut found = Vec::new();
    for (name, path) in sorted_entries(dir)? {
        if path.is_dir() {
            let file = path.join(UAMT_FILE);
            if file.is_file() {
                found.push(FoundImage {
                    id: name,
                    path: file,
                });
            }
        } else if let Some(id) = plain_id(&name) {
            found.push(FoundImage {
                id: id.to_string(),
                path,
            });
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    check_unique_ids(dir, &found)?;
    Ok(found)
}

/// The label files of an nnU-Net v2 `labelsTr/` folder (`<ID><file_ending>`): ID and path.
pub fn nnunet_labels(dir: &Path, file_ending: &str) -> Result<Vec<(String, PathBuf)>, DataError> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter_map(|(name, path)| {
            name.strip_suffix(file_ending)
                .map(|id| (id.to_string(), path))
        })
        .collect())
}

/// The images of a nnU-Net v2 image folder: `<ID>_0000<file_ending>`, sorted by ID. Another
/// channel's file (`<ID>_0001<file_ending>`) is an error: semisam reads single-channel images.
pub fn scan_nnunet(dir: &Path, file_ending: &str) -> Result<Vec<FoundImage>, DataError> {
    let mut found = Vec::new();
    for (name, path) in sorted_entries(dir)? {
        let Some(stem) = name.strip_suffix(file_ending) else {
            continue;
        };
        let Some((id, channel)) = stem
            .rsplit_once('_')
            .filter(|(_, c)| c.len() == 4 && c.bytes().all(|b| b.is_ascii_digit()))
        else {
            return Err(DataError::invalid(
                &path,
                format!("image name lacks the channel suffix: expected <ID>_0000{file_ending}"),
            ));
        };
        if channel != "0000" {
            return Err(DataError::invalid(
                &path,
                format!(
                    "input channel {channel}: semisam reads single-channel images (<ID>_0000{file_ending} only)"
                ),
            ));
        }
        found.push(FoundImage {
            id: id.to_string(),
            path,
        });
    }
    check_unique_ids(dir, &found)?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_strip_the_image_extension_only() {
        assert_eq!(plain_id("case_1.nii.gz"), Some("case_1"));
        assert_eq!(plain_id("Case.NII"), Some("Case"));
        assert_eq!(plain_id("scan.h5"), Some("scan"));
        assert_eq!(plain_id("a.b.npy"), Some("a.b"));
        assert_eq!(plain_id("unlabeled.list"), None);
        assert_eq!(plain_id(".nii.gz"), None);
    }
}
