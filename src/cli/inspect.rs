//! `semisam inspect DATASET`: list every case with its shape, spacing, label values and
//! intensity range, and every problem found. Exits non-zero when any problem was found.

use std::path::PathBuf;

use anyhow::{Context, bail};
use semisam::data::Dataset;
use semisam::data::inspect::{check_training_cases, inspect_dataset};

use super::parse_triple;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Dataset folder (UA-MT h5 with train.list/test.list, MSD or nnU-Net v2 with dataset.json).
    pub dataset: PathBuf,
    /// A plain folder of images without labels (a run's `data.unlabeled_root`), checked as
    /// unlabeled cases of the dataset.
    #[arg(long)]
    pub unlabeled_root: Option<PathBuf>,
    /// Cases read in parallel (default: one per core). Each LA case needs about 150 MB.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Training patch (x,y,z): warn about images smaller than it.
    #[arg(long, value_parser = parse_triple::<usize>)]
    pub patch: Option<[usize; 3]>,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let mut dataset = Dataset::open(&args.dataset).context("cannot open the dataset")?;
    if let Some(dir) = &args.unlabeled_root {
        dataset
            .add_unlabeled_folder(dir)
            .context("cannot add the unlabeled folder")?;
    }
    let labels: Vec<String> = dataset
        .labels
        .iter()
        .map(|(v, name)| format!("{v}: {name}"))
        .collect();
    println!(
        "{} ({} layout): {} cases ({} labeled, {} unlabeled, {} test); declared labels {{{}}}",
        dataset.root.display(),
        dataset.layout.name(),
        dataset.cases.len(),
        dataset.training_ids.len(),
        dataset.unlabeled_ids.len(),
        dataset.test_ids.len(),
        labels.join(", ")
    );
    let dataset_problem = check_training_cases(&dataset).err();
    if let Some(problem) = &dataset_problem {
        println!("PROBLEM: {problem}");
    }
    let reports = inspect_dataset(&dataset, args.jobs, args.patch)?;
    for report in &reports {
        println!("{report}");
    }
    let problems = reports.iter().map(|r| r.problems.len()).sum::<usize>()
        + usize::from(dataset_problem.is_some());
    let bad_cases = reports.iter().filter(|r| !r.problems.is_empty()).count();
    let warnings: usize = reports.iter().map(|r| r.warnings.len()).sum();
    println!(
        "summary: {} cases, {} with problems, {} problem(s), {} warning(s)",
        reports.len(),
        bad_cases,
        problems,
        warnings
    );
    if let Some(problem) = dataset_problem {
        bail!("{problem}");
    }
    if problems > 0 {
        bail!("{problems} problem(s) found in {bad_cases} case(s)");
    }
    Ok(())
}
