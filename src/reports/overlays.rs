//! `overlays/`: for each evaluated case, the slices with the largest reference area and the
//! slice with the most wrong voxels, the reference above the prediction, one colour per class,
//! the case's Dice per class in the title; for each unlabeled training case whose SAM
//! pseudo-label the run kept, the same with the pseudo-label instead of a prediction.

use std::path::PathBuf;

use ndarray::ArrayView3;

use super::slices::{
    LabelRow, ShownSlice, SliceFigure, intensity_window, largest_slices, most_disagreeing_slice,
    render_figure,
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
    /// Prediction overlays: the case's Dice of each foreground class (class 1 first).
    pub dice: Vec<f64>,
}

impl Overlay {
    /// Mean of [`Overlay::dice`] (`NaN` without scores).
    pub fn mean_dice(&self) -> f64 {
        self.dice.iter().sum::<f64>() / self.dice.len() as f64
    }
}

/// The legend of a run's pictures: each foreground class with the dataset's name for it.
fn legend(contents: &RunContents) -> Vec<(u8, String)> {
    (1..contents.config.network.num_classes)
        .map(|c| {
            let name = contents.dataset.labels.get(&(c as u8));
            (
                c as u8,
                name.map_or_else(|| format!("class {c}"), |n| format!("{c} {n}")),
            )
        })
        .collect()
}

/// Dice of class `class` between two label maps of one shape (both empty: 1).
fn dice(a: ArrayView3<'_, u8>, b: ArrayView3<'_, u8>, class: u8) -> f64 {
    let (mut overlap, mut in_a, mut in_b) = (0, 0, 0);
    ndarray::Zip::from(a).and(b).for_each(|&x, &y| {
        let (x, y) = (x == class, y == class);
        overlap += usize::from(x && y);
        in_a += usize::from(x);
        in_b += usize::from(y);
    });
    crate::metrics::dice_from_counts(overlap, in_a, in_b)
}

/// The voxel size of a volume: its file's, else the configuration's `data.spacing`, else 1.
fn spacing_of(volume: &crate::data::Volume<f32>, contents: &RunContents) -> [f64; 3] {
    volume
        .geometry
        .spacing
        .or(contents.config.data.spacing)
        .unwrap_or([1.0; 3])
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
    let classes = legend(contents);
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
        let path = dir.join(format!("{id}.png"));
        if prediction.data.shape() != reference.data.shape() {
            return Err(ReportError::file(
                &prediction_path,
                format!(
                    "prediction has shape {:?} but the reference has {:?}",
                    prediction.data.shape(),
                    reference.data.shape()
                ),
            ));
        }
        let (pred, refer) = (prediction.data.view(), reference.data.view());
        let dice: Vec<f64> = classes.iter().map(|(c, _)| dice(pred, refer, *c)).collect();
        let scores: Vec<String> = classes
            .iter()
            .zip(&dice)
            .map(|((_, name), d)| format!("{name} {d:.3}"))
            .collect();
        let mut slices: Vec<ShownSlice> = largest_slices(refer, axis, SLICES_PER_CASE)
            .into_iter()
            .map(|index| ShownSlice { index, note: None })
            .collect();
        if let Some(worst) = most_disagreeing_slice(pred, refer, axis) {
            match slices.iter_mut().find(|s| s.index == worst) {
                Some(shown) => shown.note = Some("most errors"),
                None => slices.push(ShownSlice {
                    index: worst,
                    note: Some("most errors"),
                }),
            }
            slices.sort_by_key(|s| s.index);
        }
        let figure = SliceFigure {
            title: format!("{id}: final model, Dice {}", scores.join(", ")),
            image: loaded.image.data.view(),
            window: intensity_window(loaded.image.data.view()),
            axis,
            spacing: spacing_of(&loaded.image, contents),
            slices: slices.clone(),
            rows: vec![
                LabelRow {
                    name: "reference".into(),
                    labels: refer,
                },
                LabelRow {
                    name: "prediction".into(),
                    labels: pred,
                },
            ],
            classes: classes.clone(),
        };
        super::png::write_png(&render_figure(&figure, &path)?, &path)?;
        written.push(Overlay {
            case_id: id.clone(),
            kind: OverlayKind::Prediction,
            path,
            slices: slices.iter().map(|s| s.index).collect(),
            dice,
        });
    }

    for (entry, pseudo_label) in pseudo_labels::load(contents.run.root())? {
        let id = &entry.case_id;
        let loaded = load(contents, id)?;
        // Shown on the grid the label was made on: down-sampled by the run's factor, or
        // resampled to its target spacing (the grid of the saved label).
        let original_shape = loaded.image.data.shape().to_vec();
        let original_spacing = spacing_of(&loaded.image, contents);
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
        let mut rows = Vec::new();
        if let Some(reference) = &reference {
            rows.push(LabelRow {
                name: "reference (not used in training)".into(),
                labels: reference.view(),
            });
        }
        rows.push(LabelRow {
            name: "SAM pseudo-label".into(),
            labels: pseudo_label.view(),
        });
        // The training grid spans the same extent as the file's.
        let spacing: [f64; 3] = std::array::from_fn(|d| {
            original_spacing[d] * original_shape[d] as f64 / image.shape()[d] as f64
        });
        let figure = SliceFigure {
            title: format!(
                "{id}: unlabeled training case, SAM pseudo-label of iteration {}",
                entry.step + 1
            ),
            image: image.view(),
            window: intensity_window(image.view()),
            axis,
            spacing,
            slices: slices
                .iter()
                .map(|&index| ShownSlice { index, note: None })
                .collect(),
            rows,
            classes: classes.clone(),
        };
        let path = dir.join(format!("{id}_pseudo_label.png"));
        super::png::write_png(&render_figure(&figure, &path)?, &path)?;
        written.push(Overlay {
            case_id: id.clone(),
            kind: OverlayKind::PseudoLabel,
            path,
            slices,
            dice: Vec::new(),
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
