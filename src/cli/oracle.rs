//! `semisam sam-oracle`: the quality of the pseudo-labels. By default the generalist is prompted
//! from the GROUND TRUTH (boxes of each class's largest component, slice by slice): the upper
//! bound. With `--checkpoint` it is prompted as in training, from a trained model's prediction on
//! the whole case (the run's preprocessing and `[sam]` prompts), and the model's own Dice is
//! printed beside the pseudo-label's. Both are scored against the ground truth: analysis only.
//!
//! A slice-wise generalist is scored per slicing axis and, with several axes, for their fusions
//! too: one row per (case, class, view).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::module::Module;
use clap::Args;
use ndarray::{Array3, Axis};

use semisam::data::downsample::{downsample_image, downsample_label};
use semisam::data::{Dataset, Normalization, normalize};
use semisam::frameworks::sam_assist::SamConfig;
use semisam::generalists::factory::{GeneralistConfig, LiteMedSamConfig};
use semisam::generalists::slicewise::litemedsam::LiteMedSamSlices;
use semisam::generalists::slicewise::{Fusion, MultiView, fuse};
use semisam::generalists::{Generalist, PseudoLabelRequest};
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
    /// Slicing axes, each scored on its own and, with several, fused (default: 2, or with
    /// --checkpoint its run's).
    #[arg(long, visible_alias = "axis", value_delimiter = ',')]
    pub axes: Vec<usize>,
    /// The band of the mean fusion: voxels whose mean lies within this of ½ are left out
    /// (default: 0.25, or with --checkpoint its run's).
    #[arg(long)]
    pub fusion_band: Option<f32>,
    /// Box margin in voxels.
    #[arg(long, default_value_t = 1.0)]
    pub margin: f32,
    /// Positive points per slice inside the ground truth's slice, besides the box (ignored with
    /// --checkpoint: `--set sam.prompts.positive_points=N`).
    #[arg(long, default_value_t = 0)]
    pub positive_points: usize,
    /// Keep the slice embeddings in this folder, so that reruns skip encoding (with
    /// --checkpoint: `--set sam.embedding_dir=DIR`).
    #[arg(long)]
    pub embedding_dir: Option<PathBuf>,
    /// Down-sample the volumes by this factor first, as a run with `data.downsample` does
    /// (block mean for images, majority for labels; ignored with --checkpoint).
    #[arg(long, default_value_t = 1)]
    pub downsample: usize,
    /// Prompt from this checkpoint's prediction instead of the ground truth (its run's
    /// normalisation, down-sampling and `[sam]` prompt settings; --margin is ignored).
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
                // The oracle prompts SAM whatever the run was: a plain run's checkpoint takes
                // SAM's settings as a SemiSAM run's does.
                let mut set = args.set.clone();
                if run.sam.is_none() && set.iter().any(|item| item.trim().starts_with("sam.")) {
                    set.insert(0, "sam.generalist=litemedsam".to_owned());
                }
                run = RunConfig::from_toml_str(&run.to_toml(), &set, &origin)?;
            }
            Ok((run, model))
        })
        .transpose()?;
    let mut config = match specialist.as_ref().and_then(|(run, _)| run.sam.clone()) {
        Some(sam) => sam,
        None => SamConfig {
            generalist: GeneralistConfig::LiteMedSam(LiteMedSamConfig {
                embedding_dir: args.embedding_dir.clone(),
                ..LiteMedSamConfig::default()
            }),
            ..SamConfig::default()
        },
    };
    if specialist.is_none() {
        config.prompts.box_margin = args.margin;
        config.prompts.positive_points = args.positive_points;
    }
    if let GeneralistConfig::LiteMedSam(litemedsam) = &mut config.generalist {
        if !args.axes.is_empty() {
            litemedsam.axes = args.axes.clone();
        }
        if let Some(band) = args.fusion_band {
            litemedsam.fusion = Fusion::Mean { band };
        }
    } else if !args.axes.is_empty() || args.fusion_band.is_some() {
        anyhow::bail!(
            "--axes and --fusion-band apply to a slice-wise generalist (LiteMedSAM) only"
        );
    }
    let mut generalist = Views::build(&config)?;
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
        "case\tclass\tdice\tslices\tseconds\tmodel_dice\tdice_answered\tmodel_dice_answered\tcoverage\tview"
    );
    let mut all = Summary::default();
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
            for view in generalist.answer(&request)? {
                let (mask, known, prompts) = view.label.unwrap_or_else(|| {
                    let nothing = Array3::from_elem(truth.raw_dim(), false);
                    (nothing.clone(), nothing, 0)
                });
                let everywhere = Array3::from_elem(truth.raw_dim(), true);
                let score = dice_where(&mask, &truth, &everywhere);
                let answered = dice_where(&mask, &truth, &known);
                let model_answered = predicted.as_ref().map_or("-".into(), |p| {
                    format!("{:.4}", dice_where(p, &truth, &known))
                });
                let covered = ndarray::Zip::from(&truth)
                    .and(&known)
                    .fold(0usize, |n, &t, &k| n + usize::from(t && k));
                let object = truth.iter().filter(|&&t| t).count();
                let coverage = covered as f64 / object.max(1) as f64;
                all.add(&view.name, [score, answered, coverage]);
                println!(
                    "{}\t{class}\t{score:.4}\t{prompts}\t{:.1}\t{model_dice}\t{answered:.4}\t{model_answered}\t{coverage:.3}\t{}",
                    case.id, view.seconds, view.name
                );
            }
        }
    }
    let source = if specialist.is_some() {
        "model"
    } else {
        "ground-truth"
    };
    for (view, sums, count) in &all.views {
        let [dice, answered, coverage] = sums.map(|sum| sum / (*count).max(1) as f64);
        println!(
            "mean Dice of {source}-prompted pseudo-labels ({view}): {dice:.4}, {answered:.4} where \
             answered, coverage {coverage:.3}, over {count} (case, class) pairs"
        );
    }
    Ok(())
}

/// One view's pseudo-label (mask, known voxels, prompts) and the seconds it took.
struct ViewLabel {
    name: String,
    label: Option<(Array3<bool>, Array3<bool>, usize)>,
    seconds: f64,
}

/// The generalist as the oracle scores it: a slice-wise one by axis and fused, another as is.
enum Views {
    SliceWise(MultiView<LiteMedSamSlices>),
    Other(Box<dyn Generalist>),
}

impl Views {
    fn build(config: &SamConfig) -> anyhow::Result<Self> {
        let device = semisam::backend::default_device();
        Ok(match &config.generalist {
            GeneralistConfig::LiteMedSam(litemedsam) => {
                Views::SliceWise(litemedsam.build_views(&config.prompts, &device)?)
            }
            other => Views::Other(other.build(&config.prompts, &device)?),
        })
    }

    /// Each axis's pseudo-label, then (with several axes) their fusion by the plain mean, by the
    /// configured fusion and by vote.
    fn answer(&mut self, request: &PseudoLabelRequest<'_>) -> anyhow::Result<Vec<ViewLabel>> {
        let views = match self {
            Views::Other(generalist) => {
                let started = Instant::now();
                let label = generalist.pseudo_label(request)?;
                return Ok(vec![ViewLabel {
                    name: "generalist".into(),
                    label: label.map(|l| (l.mask, l.known, l.prompts)),
                    seconds: started.elapsed().as_secs_f64(),
                }]);
            }
            Views::SliceWise(views) => views,
        };
        let answers = views.view_answers(request)?;
        let mut labels: Vec<ViewLabel> = answers
            .iter()
            .map(|view| ViewLabel {
                name: format!("axis {}", view.axis),
                label: view
                    .answer
                    .as_ref()
                    .map(|a| (a.logits.mapv(|l| l > 0.0), a.known.clone(), a.prompts)),
                seconds: view.seconds,
            })
            .collect();
        if answers.len() > 1 {
            let answered: Vec<_> = answers.iter().filter_map(|v| v.answer.as_ref()).collect();
            let prompts = answered.iter().map(|a| a.prompts).sum();
            let mut fusions = vec![Fusion::Mean { band: 0.0 }, views.fusion(), Fusion::Vote];
            fusions.dedup();
            for fusion in fusions {
                let started = Instant::now();
                let label = (!answered.is_empty()).then(|| {
                    let (mask, known) = fuse(&answered, fusion);
                    (mask, known, prompts)
                });
                labels.push(ViewLabel {
                    name: fusion.name(),
                    label,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
        Ok(labels)
    }
}

/// Sums of Dice, Dice where answered and coverage by view, in the order views first appear.
#[derive(Default)]
struct Summary {
    views: Vec<(String, [f64; 3], usize)>,
}

impl Summary {
    fn add(&mut self, view: &str, values: [f64; 3]) {
        let at = match self.views.iter().position(|(name, ..)| name == view) {
            Some(at) => at,
            None => {
                self.views.push((view.to_owned(), [0.0; 3], 0));
                self.views.len() - 1
            }
        };
        let (_, sums, count) = &mut self.views[at];
        for (sum, value) in sums.iter_mut().zip(values) {
            *sum += value;
        }
        *count += 1;
    }
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
