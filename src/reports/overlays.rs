//! `overlays/`: for each evaluated case, the slices with the largest reference area with the
//! reference (green) and prediction (red) contours; for each unlabeled training case whose SAM
//! pseudo-label the run kept, the same with the pseudo-label (yellow) instead of a prediction.

use std::path::PathBuf;

use super::slices::{
    Contour, PREDICTION_COLOR, PSEUDO_LABEL_COLOR, REFERENCE_COLOR, SliceFigure, intensity_window,
    largest_slices, render_figure,
};
use super::{ReportError, RunContents, rescore};
use crate::data::downsample::{downsample_image, downsample_label};
use crate::data::read_label;
use crate::data::resample::{resample_image_to_shape, resample_label_to_shape};
use crate::training::pseudo_labels;

pub const OVERLAYS_DIR: &str = "overlays";
/// Slices shown per case.
pub const SLICES_PER_CASE: usize = 3;

/// What an overlay shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayKind {
    /// A held-out case: reference and the final model's prediction.
    Prediction,
    /// An unlabeled training case: (reference and) the last SAM pseudo-label.
    PseudoLabel,
}

/// One written overlay picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    pub case_id: String,
    pub kind: OverlayKind,
    pub path: PathBuf,
    pub slices: Vec<usize>,
}

/// The axis the pictures slice along: the generalist's when the run used SAM (its pseudo-labels
/// are made slice by slice along it), else the third array axis.
pub fn display_axis(contents: &RunContents) -> usize {
    contents
        .config
        .sam
        .as_ref()
        .and_then(|sam| sam.generalist.slicing_axis())
        .unwrap_or(2)
}

/// Write the overlays of the held-out cases `ids` that have a saved prediction and of every saved
/// pseudo-label.
pub fn write_overlays(contents: &RunContents, ids: &[String]) -> Result<Vec<Overlay>, ReportError> {
    let dir = contents.run.root().join(OVERLAYS_DIR);
    let axis = display_axis(contents);
    let mut written = Vec::new();
    for id in ids {
        let Some(prediction_path) = rescore::prediction_file(&contents.run, id) else {
            continue;
        };
        let loaded = load(contents, id)?;
        let prediction = read_label(&prediction_path)?;
        let reference = loaded.label.ok_or_else(|| {
            ReportError::file(
                &loaded.image.path,
                format!("case {id} has no reference label"),
            )
        })?;
        let slices = largest_slices(reference.data.view(), axis, SLICES_PER_CASE);
        let figure = SliceFigure {
            title: format!("{id}: final model on a held-out case"),
            image: loaded.image.data.view(),
            window: intensity_window(loaded.image.data.view()),
            axis,
            slices: slices.clone(),
            contours: vec![
                Contour {
                    name: "reference",
                    color: REFERENCE_COLOR,
                    labels: reference.data.view(),
                },
                Contour {
                    name: "prediction",
                    color: PREDICTION_COLOR,
                    labels: prediction.data.view(),
                },
            ],
        };
        let path = dir.join(format!("{id}.png"));
        super::png::write_png(&render_figure(&figure, &path)?, &path)?;
        written.push(Overlay {
            case_id: id.clone(),
            kind: OverlayKind::Prediction,
            path,
            slices,
        });
    }

    for (entry, pseudo_label) in pseudo_labels::load(contents.run.root())? {
        let id = &entry.case_id;
        let loaded = load(contents, id)?;
        // Shown on the grid the label was made on: down-sampled by the run's factor, or
        // resampled to its target spacing (the grid of the saved label).
        let mut image = downsample_image(&loaded.image.data, entry.downsample);
        let mut reference = loaded
            .label
            .map(|l| downsample_label(&l.data, entry.downsample));
        if image.shape() != pseudo_label.shape() {
            let grid = entry.grid;
            if pseudo_label.shape() != grid {
                return Err(ReportError::file(
                    &pseudo_labels::dir(contents.run.root()).join(&entry.file),
                    format!(
                        "pseudo-label shape {:?} does not match its recorded grid {grid:?}",
                        pseudo_label.shape()
                    ),
                ));
            }
            image = resample_image_to_shape(image.view(), grid);
            reference = reference.map(|r| resample_label_to_shape(r.view(), grid));
        }
        // The reference of an unlabeled case is read for this picture only, after training.
        let slices = largest_slices(
            reference.as_ref().unwrap_or(&pseudo_label).view(),
            axis,
            SLICES_PER_CASE,
        );
        let mut contours = Vec::new();
        if let Some(reference) = &reference {
            contours.push(Contour {
                name: "reference (not used in training)",
                color: REFERENCE_COLOR,
                labels: reference.view(),
            });
        }
        contours.push(Contour {
            name: "SAM pseudo-label",
            color: PSEUDO_LABEL_COLOR,
            labels: pseudo_label.view(),
        });
        let figure = SliceFigure {
            title: format!(
                "{id}: unlabeled training case, SAM pseudo-label of iteration {}",
                entry.step + 1
            ),
            image: image.view(),
            window: intensity_window(image.view()),
            axis,
            slices: slices.clone(),
            contours,
        };
        let path = dir.join(format!("{id}_pseudo_label.png"));
        super::png::write_png(&render_figure(&figure, &path)?, &path)?;
        written.push(Overlay {
            case_id: id.clone(),
            kind: OverlayKind::PseudoLabel,
            path,
            slices,
        });
    }
    Ok(written)
}

fn load(contents: &RunContents, id: &str) -> Result<crate::data::LoadedCase, ReportError> {
    let case = contents.dataset.case(id).ok_or_else(|| {
        ReportError::file(
            &contents.dataset.root,
            format!("case {id} of the run is not in the dataset"),
        )
    })?;
    Ok(contents.dataset.load_case(case)?)
}
