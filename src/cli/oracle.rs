//! `semisam sam-oracle`: the upper bound of the pseudo-labels. The generalist is prompted from the
//! GROUND TRUTH (boxes of each class's largest component, slice by slice) and its masks are
//! scored against that ground truth. Analysis only: training never does this.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use ndarray::Array3;

use semisam::data::{Dataset, Normalization, normalize};
use semisam::frameworks::sam_assist::SamConfig;
use semisam::generalists::PseudoLabelRequest;
use semisam::metrics::{Hd95Convention, evaluate_masks};

#[derive(Args)]
pub struct OracleArgs {
    /// Dataset folder (UA-MT h5 root, MSD or nnU-Net layout).
    pub dataset: PathBuf,
    /// Cases to score (all labeled cases when absent).
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// At most this many cases.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Slicing axis.
    #[arg(long, default_value_t = 2)]
    pub axis: usize,
    /// Box margin in voxels.
    #[arg(long, default_value_t = 1.0)]
    pub margin: f32,
}

pub fn run(args: OracleArgs) -> anyhow::Result<()> {
    let dataset = Dataset::open(&args.dataset)?;
    let mut config = SamConfig {
        axis: args.axis,
        ..SamConfig::default()
    };
    config.prompts.box_margin = args.margin;
    let mut generalist = config.build_generalist(&semisam::backend::default_device())?;
    let chosen: Vec<_> = dataset
        .cases
        .iter()
        .filter(|c| c.label.is_some() && (args.cases.is_empty() || args.cases.contains(&c.id)))
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    println!("case\tclass\tdice\tslices\tseconds");
    let mut all = Vec::new();
    for case in chosen {
        let loaded = dataset.load_case(case)?;
        let mut image = loaded.image.data;
        normalize(&mut image, Normalization::ZScore)
            .with_context(|| format!("normalising {}", case.id))?;
        let label = loaded.label.context("labeled case without label")?.data;
        let classes = label.iter().copied().max().unwrap_or(0);
        for class in 1..=classes {
            let truth = label.mapv(|v| v == class);
            let probability = truth.mapv(|t| if t { 1.0f32 } else { 0.0 });
            let shape = image.shape().to_vec();
            let request = PseudoLabelRequest {
                case_id: &case.id,
                image: image.view(),
                region: [0..shape[0], 0..shape[1], 0..shape[2]],
                probability: probability.view(),
            };
            let started = Instant::now();
            let label = generalist.pseudo_label(&request)?;
            let (mask, prompts) = match label {
                Some(l) => (l.mask, l.prompts),
                None => (Array3::from_elem(truth.raw_dim(), false), 0),
            };
            let score =
                evaluate_masks(mask.view(), truth.view(), [1.0; 3], Hd95Convention::Medpy)?.dice;
            all.push(score);
            println!(
                "{}\t{class}\t{score:.4}\t{prompts}\t{:.1}",
                case.id,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
    println!(
        "mean Dice of ground-truth-prompted pseudo-labels: {mean:.4} over {} (case, class) pairs",
        all.len()
    );
    Ok(())
}
