//! `semisam evaluate --pred DIR --ref DIR`: per-case and summary metrics of a folder of
//! predictions against a folder of references, matched by case identifier.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use semisam::data::read_label;
use semisam::metrics::{
    EvaluationOptions, Hd95Convention, SpacingSource, case_id_from_path, evaluate_pair,
    write_evaluation_report,
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
    /// Folder of reference label maps, the same case identifiers as the predictions.
    #[arg(long = "ref")]
    pub reference: PathBuf,
    /// Output folder for per_case.csv, summary.json and summary.md.
    #[arg(long, default_value = "evaluation")]
    pub out: PathBuf,
    /// Label values to evaluate (default: every non-zero value found in the references).
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<u8>,
    #[arg(long, value_enum, default_value_t = Convention::Medpy)]
    pub hd95: Convention,
    /// Report distances in voxels even when the files store a spacing.
    #[arg(long, conflicts_with = "spacing")]
    pub voxels: bool,
    /// Spacing in mm (x,y,z) for every case, e.g. 0.625,0.625,0.625 for LA h5 files.
    #[arg(long, value_delimiter = ',', num_args = 3)]
    pub spacing: Vec<f64>,
}

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

pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let predictions = label_files(&args.pred)?;
    let references = label_files(&args.reference)?;
    if predictions.is_empty() {
        bail!(
            "{}: no prediction files (.nii, .nii.gz, .h5, .npy)",
            args.pred.display()
        );
    }
    let missing: Vec<_> = predictions
        .keys()
        .filter(|id| !references.contains_key(*id))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: no reference for predicted case(s) {missing:?}",
            args.reference.display()
        );
    }
    let spacing = match (args.voxels, args.spacing.as_slice()) {
        (true, _) => SpacingSource::Voxels,
        (false, [x, y, z]) => SpacingSource::Override([*x, *y, *z]),
        _ => SpacingSource::Files,
    };
    let hd95 = match args.hd95 {
        Convention::Medpy => Hd95Convention::Medpy,
        Convention::Monai => Hd95Convention::Monai,
    };
    let options = EvaluationOptions { hd95, spacing };
    let mut cases = Vec::new();
    for (id, prediction_path) in &predictions {
        let prediction = read_label(prediction_path)?;
        let reference = read_label(&references[id])?;
        let classes = if args.classes.is_empty() {
            let mut found: Vec<u8> = reference.data.iter().copied().filter(|&v| v > 0).collect();
            found.sort_unstable();
            found.dedup();
            found
        } else {
            args.classes.clone()
        };
        let mut metrics = evaluate_pair(&prediction, &reference, &classes, options)?;
        metrics.case_id = id.clone();
        cases.push(metrics);
    }
    let paths = write_evaluation_report(&args.out, &cases, &options)?;
    print!("{}", std::fs::read_to_string(&paths.summary_markdown)?);
    eprintln!("per-case metrics: {}", paths.per_case_csv.display());
    eprintln!(
        "summary: {} and {}",
        paths.summary_json.display(),
        paths.summary_markdown.display()
    );
    Ok(())
}
