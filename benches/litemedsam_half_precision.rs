//! What keeping LiteMedSAM slice embeddings in half precision (the slice cache and store) does
//! to the masks: on a dataset's labeled cases, each slice the reference label crosses is encoded
//! once, prompted with the label's box, and decoded from the f32 embedding and from the same
//! embedding rounded to f16. Prints the differing mask pixels and the Dice between the two masks
//! per case and overall. Needs the real weights (`semisam weights fetch`). Usage:
//!   cargo bench --bench litemedsam_half_precision -- DATASET [CASES] [AXIS]

use std::time::Instant;

use ndarray::Axis;
use semisam::data::dataset::Dataset;
use semisam::generalists::litemedsam::{Embedding, LiteMedSam, Prompts, postprocess_mask};
use semisam::generalists::slicewise::litemedsam::prepare_slice;
use semisam::generalists::weights_cache::{self, LITEMEDSAM};
use semisam::prompts::{PromptConfig, slice_prompts};

#[derive(Default)]
struct Tally {
    slices: usize,
    pixels: usize,
    differing: usize,
    both: usize,
    sizes: usize,
    worst_slice_dice: f64,
}

impl Tally {
    fn add(&mut self, full: &ndarray::Array2<u8>, half: &ndarray::Array2<u8>) {
        let differing = full.iter().zip(half).filter(|(a, b)| a != b).count();
        let both = full
            .iter()
            .zip(half)
            .filter(|(a, b)| **a == 1 && **b == 1)
            .count();
        let sizes = full.iter().chain(half).filter(|v| **v == 1).count();
        let dice = if sizes == 0 {
            1.0
        } else {
            2.0 * both as f64 / sizes as f64
        };
        if self.slices == 0 || dice < self.worst_slice_dice {
            self.worst_slice_dice = dice;
        }
        self.slices += 1;
        self.pixels += full.len();
        self.differing += differing;
        self.both += both;
        self.sizes += sizes;
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name}\t{}\t{}\t{:.2e}\t{:.5}\t{:.5}",
            self.slices,
            self.differing,
            self.differing as f64 / self.pixels.max(1) as f64,
            2.0 * self.both as f64 / self.sizes.max(1) as f64,
            self.worst_slice_dice
        )
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let root = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("usage: DATASET [CASES] [AXIS]"))?;
    let limit: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(2);
    let axis: usize = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(2);
    let model = LiteMedSam::load(
        &weights_cache::locate(&LITEMEDSAM)?,
        &semisam::backend::default_device(),
    )?;
    let dataset = Dataset::open(root)?;
    let config = PromptConfig::default();
    let mut total = Tally::default();
    println!("case\tslices\tdiffering_pixels\tfraction\tdice\tworst_slice_dice");
    let started = Instant::now();
    for case in dataset
        .cases
        .iter()
        .filter(|c| c.label.is_some())
        .take(limit)
    {
        let loaded = dataset.load_case(case)?;
        let label = loaded.label.expect("labeled case").data;
        let probability = label.mapv(|v| f32::from(u8::from(v > 0)));
        let mut tally = Tally::default();
        for prompt in slice_prompts(probability.view(), axis, &config) {
            let slice = loaded.image.data.index_axis(Axis(axis), prompt.slice);
            let prepared = prepare_slice(slice)?;
            let geometry = prepared.geometry;
            let full = model.embed(&prepared);
            let half = model
                .embedding_from_half(&full.to_half())
                .expect("a whole embedding");
            let prompts = Prompts::from_box(geometry.scale_box(prompt.bbox.map(f64::from)));
            let mask = |e: &Embedding| -> anyhow::Result<_> {
                Ok(postprocess_mask(&model.decode(e, &prompts)?, &geometry)?)
            };
            let (full, half) = (mask(&full)?, mask(&half)?);
            tally.add(&full, &half);
            total.add(&full, &half);
        }
        println!("{}", tally.line(&case.id));
    }
    println!("{}", total.line("all"));
    eprintln!("{:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
