//! `semisam evaluate --pred DIR --ref DIR`: per-case and summary metrics of a folder of
//! predictions against a folder of references, matched by case identifier.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use ndarray::Array3;
use semisam::data::labels::values_present;
use semisam::data::{Volume, read_label};
use semisam::metrics::{
    EvaluationOptions, Hd95Convention, SpacingSource, case_id_from_path, evaluate_pair,
    spacings_agree, write_evaluation_report,
};

#[derive(Clone, Copy, ValueEnum)]
pub enum Convention {
    /// 95th percentile of the pooled distances of both directions (medpy `hd95`).
    Medpy,
    /// Larger of the two directed 95th percentiles (MONAI).
    Monai,
}

#[derive(Args)]
pub struct EvaluateArgs {
    /// Folder of predicted label maps (NIfTI, h5 with a `label` dataset, or npy).
    #[arg(long)]
    pub pred: PathBuf,
    /// Folder of reference label maps, the same case identifiers as the predictions. Every
    /// reference case is scored.
    #[arg(long = "ref")]
    pub reference: PathBuf,
    /// Output folder for per_case.csv, summary.json and summary.md.
    #[arg(long, default_value = "evaluation")]
    pub out: PathBuf,
    /// Label values to evaluate (default: every non-zero value found in any reference). Each
    /// class is scored on every case under the empty-mask policy.
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<u8>,
    /// Score a reference case without a prediction file as an empty prediction (default: an
    /// error naming the cases).
    #[arg(long)]
    pub missing_as_empty: bool,
    #[arg(long, value_enum, default_value_t = Convention::Medpy)]
    pub hd95: Convention,
    /// Report distances in voxels even when the files store a spacing.
    #[arg(long, conflicts_with = "spacing")]
    pub voxels: bool,
    /// Spacing in mm (x,y,z) for every case, e.g. 0.625,0.625,0.625 for LA h5 files (three
    /// separate values work too).
    #[arg(long, value_delimiter = ',', num_args = 1..=3)]
    pub spacing: Vec<f64>,
}

/// More distinct values than a label map of any dataset here holds.
const MANY_LABEL_VALUES: usize = 32;

/// Label files of a folder by case identifier (UA-MT h5 cases may be `<ID>/mri_norm2.h5`).
fn label_files(dir: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list the folder", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("{}: cannot list the folder", dir.display()))?
            .path();
        let (id, file) = if path.is_dir() {
            let h5 = path.join("mri_norm2.h5");
            if !h5.is_file() {
                continue;
            }
            (
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                h5,
            )
        } else if semisam::data::format_of(&path).is_ok() {
            (case_id_from_path(&path), path)
        } else {
            continue;
        };
        if let Some(previous) = files.insert(id.clone(), file.clone()) {
            bail!(
                "case {id} appears twice: {} and {}",
                previous.display(),
                file.display()
            );
        }
    }
    Ok(files)
}

/// The label values present in `volumes`, background excluded.
fn foreground_values<'a>(volumes: impl Iterator<Item = &'a Volume<u8>>) -> BTreeSet<u8> {
    volumes
        .flat_map(|volume| values_present(&volume.data))
        .filter(|&v| v > 0)
        .collect()
}

/// A prediction with no foreground on the reference's grid, for a case without a prediction.
fn empty_prediction(reference: &Volume<u8>) -> Volume<u8> {
    Volume {
        data: Array3::zeros(reference.data.raw_dim()),
        geometry: reference.geometry.clone(),
        source: reference.source,
        path: PathBuf::new(),
    }
}

fn spacing_source(args: &EvaluateArgs) -> anyhow::Result<SpacingSource> {
    Ok(match (args.voxels, args.spacing.as_slice()) {
        (true, _) => SpacingSource::Voxels,
        (false, []) => SpacingSource::Files,
        (false, &[x, y, z]) => SpacingSource::Override([x, y, z]),
        (false, other) => bail!(
            "--spacing needs three values x,y,z (e.g. 0.625,0.625,0.625), got {}",
            other.len()
        ),
    })
}

/// Refuses an output folder that is the predictions' or the references' own: the report's
/// `summary.json` would replace `predict`'s, and its files would mix with the cases.
fn check_output_folder(args: &EvaluateArgs) -> anyhow::Result<()> {
    let Ok(out) = std::fs::canonicalize(&args.out) else {
        return Ok(());
    };
    for (flag, folder) in [("--pred", &args.pred), ("--ref", &args.reference)] {
        if std::fs::canonicalize(folder).is_ok_and(|folder| folder == out) {
            bail!(
                "--out {} is the {flag} folder {}: the report's summary.json, summary.md and per_case.csv would be written among (and over) its files; choose another --out",
                args.out.display(),
                folder.display()
            );
        }
    }
    Ok(())
}

/// `--spacing` wins over the files' own spacings, which is what it is for with files that store
/// none (UA-MT h5, npy); where a file stores another, the distances change unit and scale without
/// a trace in the numbers, so say so.
fn warn_about_replaced_spacings<'a>(
    given: [f64; 3],
    references: impl Iterator<Item = &'a Volume<u8>>,
) {
    let differing: Vec<(&Path, [f64; 3])> = references
        .filter_map(|reference| Some((reference.path.as_path(), reference.geometry.spacing?)))
        .filter(|(_, stored)| !spacings_agree(*stored, given))
        .collect();
    if let Some((first, stored)) = differing.first() {
        let triple = |v: [f64; 3]| format!("{} x {} x {}", v[0], v[1], v[2]);
        tracing::warn!(
            "--spacing {} mm replaces the spacing stored in {} reference file(s), e.g. {} mm in {}: distances are computed with the given spacing",
            triple(given),
            differing.len(),
            triple(stored.map(|v| (v * 1e4).round() / 1e4)),
            first.display()
        );
    }
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let spacing = spacing_source(&args)?;
    check_output_folder(&args)?;
    let predictions = label_files(&args.pred)?;
    let references = label_files(&args.reference)?;
    if references.is_empty() {
        bail!(
            "{}: no reference files ({})",
            args.reference.display(),
            semisam::data::volume_extensions_text()
        );
    }
    let unmatched: Vec<_> = predictions
        .keys()
        .filter(|id| !references.contains_key(*id))
        .collect();
    if !unmatched.is_empty() {
        bail!(
            "{}: no reference for predicted case(s) {unmatched:?}",
            args.reference.display()
        );
    }
    let missing: Vec<&String> = references
        .keys()
        .filter(|id| !predictions.contains_key(*id))
        .collect();
    if !missing.is_empty() {
        if !args.missing_as_empty {
            bail!(
                "{}: no prediction for reference case(s) {missing:?}; predict them, or pass --missing-as-empty to score them as empty predictions",
                args.pred.display()
            );
        }
        tracing::warn!(
            "no prediction for {} reference case(s), scored as empty predictions: {missing:?}",
            missing.len()
        );
    }
    let hd95 = match args.hd95 {
        Convention::Medpy => Hd95Convention::Medpy,
        Convention::Monai => Hd95Convention::Monai,
    };
    let options = EvaluationOptions { hd95, spacing };
    let mut pairs = Vec::with_capacity(references.len());
    for (id, reference_path) in &references {
        let reference = read_label(reference_path)?;
        let prediction = match predictions.get(id) {
            Some(path) => read_label(path)?,
            None => empty_prediction(&reference),
        };
        pairs.push((id, prediction, reference));
    }
    if let SpacingSource::Override(given) = spacing {
        warn_about_replaced_spacings(given, pairs.iter().map(|(_, _, reference)| reference));
    }
    let classes: Vec<u8> = if args.classes.is_empty() {
        let found = foreground_values(pairs.iter().map(|(_, _, reference)| reference));
        if found.is_empty() {
            bail!(
                "{}: no reference holds a foreground label; name the classes to score with --classes",
                args.reference.display()
            );
        }
        found.into_iter().collect()
    } else {
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = args.classes.iter().find(|&&class| !seen.insert(class)) {
            bail!("--classes names class {twice} twice: name each class once");
        }
        args.classes.clone()
    };
    let unscored: Vec<u8> = foreground_values(pairs.iter().map(|(_, prediction, _)| prediction))
        .into_iter()
        .filter(|v| !classes.contains(v))
        .collect();
    if !unscored.is_empty() {
        let shown: Vec<u8> = unscored.iter().copied().take(8).collect();
        let more = if unscored.len() > shown.len() {
            format!(" and {} more", unscored.len() - shown.len())
        } else {
            String::new()
        };
        tracing::warn!(
            "predictions hold label value(s) {shown:?}{more} that are not scored (classes {classes:?}); name them with --classes to score them"
        );
        // A label map has a few values; dozens mean an image was given as a prediction.
        if let Some((id, values)) = pairs
            .iter()
            .map(|(id, prediction, _)| (id, values_present(&prediction.data).len()))
            .max_by_key(|&(_, values)| values)
            .filter(|&(_, values)| values > MANY_LABEL_VALUES)
        {
            tracing::warn!(
                "the prediction of case {id} holds {values} distinct values: is it an image rather than a label map?"
            );
        }
    }
    let mut cases = Vec::with_capacity(pairs.len());
    for (id, prediction, reference) in &pairs {
        let mut metrics = evaluate_pair(prediction, reference, &classes, options)?;
        metrics.case_id = (*id).clone();
        cases.push(metrics);
    }
    let paths = write_evaluation_report(&args.out, &cases, &options)?;
    print!("{}", std::fs::read_to_string(&paths.summary_markdown)?);
    tracing::info!("per-case metrics: {}", paths.per_case_csv.display());
    tracing::info!(
        "summary: {} and {}",
        paths.summary_json.display(),
        paths.summary_markdown.display()
    );
    Ok(())
}
