//! `semisam sam-oracle`: the quality of the pseudo-labels. By default the generalist is prompted
//! from the GROUND TRUTH (boxes of each class's largest component, slice by slice): the upper
//! bound. With `--checkpoint` it is prompted as in training, from a trained model's prediction on
//! the whole case (the run's preprocessing and `[sam]` prompts), and the model's own Dice is
//! printed beside the pseudo-label's. Both are scored against the ground truth: analysis only.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::module::Module;
use clap::Args;
use ndarray::{Array3, Axis};

use semisam::data::downsample::{downsample_image, downsample_label};
use semisam::data::{Dataset, Normalization, normalize};
use semisam::frameworks::sam_assist::SamConfig;
use semisam::generalists::PseudoLabelRequest;
use semisam::generalists::factory::{GeneralistConfig, LiteMedSamConfig};
use semisam::inference::predictor::predict_case;
use semisam::metrics::{Hd95Convention, dice_from_counts, evaluate_masks};
use semisam::training::validation::model_device;
use semisam::training::{RunConfig, load_checkpoint_model};

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
    /// Down-sample the volumes by this factor first, as a run with `data.downsample` does
    /// (block mean for images, majority for labels; ignored with --checkpoint).
    #[arg(long, default_value_t = 1)]
    pub downsample: usize,
    /// Prompt from this checkpoint's prediction instead of the ground truth (its run's
    /// normalisation, down-sampling and `[sam]` prompt settings; --axis and --margin are ignored).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// With --checkpoint: override its run's configuration for the pseudo-labels, e.g.
    /// `--set sam.prompts.box_margin=8` (repeatable), to compare prompt settings on one model.
    #[arg(
        long = "set",
        value_name = "SECTION.KEY=VALUE",
        requires = "checkpoint"
    )]
    pub set: Vec<String>,
}

pub fn run(args: OracleArgs) -> anyhow::Result<()> {
    let dataset = Dataset::open(&args.dataset)?;
    let specialist = args
        .checkpoint
        .as_ref()
        .map(|path| -> anyhow::Result<_> {
            let (mut run, model) = load_checkpoint_model(path)?;
            if !args.set.is_empty() {
                let origin = format!("the configuration of {}", path.display());
                run = RunConfig::from_toml_str(&run.to_toml(), &args.set, &origin)?;
            }
            Ok((run, model))
        })
        .transpose()?;
    let mut config = match specialist.as_ref().and_then(|(run, _)| run.sam.clone()) {
        Some(sam) => sam,
        None => SamConfig {
            generalist: GeneralistConfig::LiteMedSam(LiteMedSamConfig {
                axis: args.axis,
                ..LiteMedSamConfig::default()
            }),
            ..SamConfig::default()
        },
    };
    if specialist.is_none() {
        config.prompts.box_margin = args.margin;
    }
    let mut generalist = config
        .generalist
        .build(&config.prompts, &semisam::backend::default_device())?;
    let chosen: Vec<_> = dataset
        .cases
        .iter()
        .filter(|c| c.label.is_some() && (args.cases.is_empty() || args.cases.contains(&c.id)))
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    // `_answered`: on the voxels the generalist answered (prompted slices), which is all the
    // SAM term supervises with `outside_prompts = "ignore"`; `coverage`: the share of the
    // object that lies there.
    println!(
        "case\tclass\tdice\tslices\tseconds\tmodel_dice\tdice_answered\tmodel_dice_answered\tcoverage"
    );
    let mut all = Vec::new();
    for case in chosen {
        let loaded = dataset.load_case(case)?;
        let label_volume = loaded.label.context("labeled case without label")?;
        let mut image = loaded.image.data.clone();
        let mut label = label_volume.data.clone();
        let prediction = match &specialist {
            Some((run, model)) => {
                image = run.preparation().image(&loaded.image)?;
                label = run.preparation().label(&label_volume)?;
                let window = run.validation_window();
                let device = model_device(model);
                let model = model.valid();
                Some(predict_case(
                    &model,
                    &image,
                    run.network.num_classes,
                    window,
                    &device,
                    |_, _| {},
                )?)
            }
            None => {
                normalize(&mut image, Normalization::ZScore)
                    .with_context(|| format!("normalising {}", case.id))?;
                image = downsample_image(&image, args.downsample.max(1));
                label = downsample_label(&label, args.downsample.max(1));
                None
            }
        };
        let classes = label.iter().copied().max().unwrap_or(0);
        for class in 1..=classes {
            let truth = label.mapv(|v| v == class);
            let probability = match &prediction {
                Some(p) => p
                    .probabilities
                    .index_axis(Axis(0), usize::from(class))
                    .to_owned(),
                None => truth.mapv(|t| if t { 1.0f32 } else { 0.0 }),
            };
            let predicted = prediction.as_ref().map(|p| p.labels.mapv(|v| v == class));
            let model_dice = match &predicted {
                Some(predicted) => {
                    let dice = evaluate_masks(
                        predicted.view(),
                        truth.view(),
                        [1.0; 3],
                        Hd95Convention::Medpy,
                    )?
                    .dice;
                    format!("{dice:.4}")
                }
                None => "-".into(),
            };
            let shape = image.shape().to_vec();
            let request = PseudoLabelRequest {
                case_id: &case.id,
                image: image.view(),
                region: [0..shape[0], 0..shape[1], 0..shape[2]],
                probability: probability.view(),
            };
            let started = Instant::now();
            let label = generalist.pseudo_label(&request)?;
            let (mask, known, prompts) = match label {
                Some(l) => (l.mask, l.known, l.prompts),
                None => {
                    let nothing = Array3::from_elem(truth.raw_dim(), false);
                    (nothing.clone(), nothing, 0)
                }
            };
            let score =
                evaluate_masks(mask.view(), truth.view(), [1.0; 3], Hd95Convention::Medpy)?.dice;
            all.push(score);
            let answered = dice_where(&mask, &truth, &known);
            let model_answered = predicted.as_ref().map_or("-".into(), |p| {
                format!("{:.4}", dice_where(p, &truth, &known))
            });
            let covered = ndarray::Zip::from(&truth)
                .and(&known)
                .fold(0usize, |n, &t, &k| n + usize::from(t && k));
            let object = truth.iter().filter(|&&t| t).count();
            println!(
                "{}\t{class}\t{score:.4}\t{prompts}\t{:.1}\t{model_dice}\t{answered:.4}\t{model_answered}\t{:.3}",
                case.id,
                started.elapsed().as_secs_f64(),
                covered as f64 / object.max(1) as f64
            );
        }
    }
    let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
    println!(
        "mean Dice of {}-prompted pseudo-labels: {mean:.4} over {} (case, class) pairs",
        if specialist.is_some() {
            "model"
        } else {
            "ground-truth"
        },
        all.len()
    );
    Ok(())
}

/// Dice of `mask` against `truth` over the voxels where `within` holds (1 when both are empty
/// there).
fn dice_where(mask: &Array3<bool>, truth: &Array3<bool>, within: &Array3<bool>) -> f64 {
    let (mut both, mut masked, mut true_voxels) = (0usize, 0usize, 0usize);
    ndarray::Zip::from(mask)
        .and(truth)
        .and(within)
        .for_each(|&m, &t, &w| {
            if w {
                both += usize::from(m && t);
                masked += usize::from(m);
                true_voxels += usize::from(t);
            }
        });
    dice_from_counts(both, masked, true_voxels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_where_counts_only_the_chosen_voxels() {
        let mask = Array3::from_shape_vec((1, 1, 4), vec![true, true, false, true]).unwrap();
        let truth = Array3::from_shape_vec((1, 1, 4), vec![true, false, true, true]).unwrap();
        // over voxels 0, 1, 2: overlap 1, sizes 2 + 2 → 0.5
        let first_three = Array3::from_shape_vec((1, 1, 4), vec![true, true, true, false]).unwrap();
        assert_eq!(dice_where(&mask, &truth, &first_three), 0.5);
        // over voxels 0 and 3 they agree
        let agree = Array3::from_shape_vec((1, 1, 4), vec![true, false, false, true]).unwrap();
        assert_eq!(dice_where(&mask, &truth, &agree), 1.0);
        // nothing chosen: both empty there
        let none = Array3::from_elem((1, 1, 4), false);
        assert_eq!(dice_where(&mask, &truth, &none), 1.0);
    }
}
