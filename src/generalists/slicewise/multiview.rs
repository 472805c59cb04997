//! A 2D generalist run slice by slice along several axes, its answers fused per voxel.
//!
//! One slice-wise view sees the object only in its own planes: a box per axial slice cannot tell
//! where the object ends between slices, a sagittal one can. The views are independent guesses of
//! the same mask, so where they agree the pseudo-label is more likely right, and where they do not
//! the term is better left without one: such voxels are left out of `known`.

use std::sync::Arc;
use std::time::Instant;

use ndarray::Array3;
use serde::{Deserialize, Serialize};

use super::embedding_store::EmbeddingStore;
use super::{SliceAnswer, SliceModel, SliceWise};
use crate::generalists::{
    Generalist, GeneralistError, GeneralistUsage, PseudoLabel, PseudoLabelRequest,
};
use crate::prompts::PromptConfig;

/// How the views' answers become one pseudo-label, over the views that answered a voxel (those
/// with a prompt on its slice).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    /// Mean foreground probability: foreground above ½, left out within `band` of ½ (0: only
    /// an exact tie is left out).
    Mean { band: f32 },
    /// Majority: foreground where more than half say so, left out where they tie.
    Vote,
}

impl Fusion {
    /// A short name for tables and logs.
    pub fn name(&self) -> String {
        match self {
            Fusion::Mean { band } => format!("mean±{band}"),
            Fusion::Vote => "vote".into(),
        }
    }
}

fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

/// The fused mask and the voxels it is known on, from the views that made prompts (all answers
/// shaped alike). A voxel no view answered is neither foreground nor known.
pub fn fuse(answers: &[&SliceAnswer], fusion: Fusion) -> (Array3<bool>, Array3<bool>) {
    let Some(first) = answers.first() else {
        return (
            Array3::from_elem((0, 0, 0), false),
            Array3::from_elem((0, 0, 0), false),
        );
    };
    let mut mask = Array3::from_elem(first.known.raw_dim(), false);
    let mut known = mask.clone();
    for ((index, m), k) in mask.indexed_iter_mut().zip(known.iter_mut()) {
        let (mut answered, mut probability, mut votes) = (0usize, 0f32, 0usize);
        for answer in answers.iter().filter(|a| a.known[index]) {
            let logit = answer.logits[index];
            answered += 1;
            probability += sigmoid(logit);
            votes += usize::from(logit > 0.0);
        }
        if answered == 0 {
            continue;
        }
        (*m, *k) = match fusion {
            Fusion::Mean { band } => {
                let mean = probability / answered as f32;
                (mean > 0.5, (mean - 0.5).abs() > band)
            }
            Fusion::Vote => (2 * votes > answered, 2 * votes != answered),
        };
    }
    (mask, known)
}

/// One view's answer to a request, with the time it took (encoding included).
#[derive(Debug, Clone)]
pub struct ViewAnswer {
    pub axis: usize,
    /// `None` when the view made no prompt.
    pub answer: Option<SliceAnswer>,
    pub seconds: f64,
}

/// One [`SliceWise`] per axis over one shared model, fused by [`fuse`].
pub struct MultiView<M: SliceModel> {
    views: Vec<SliceWise<Arc<M>>>,
    fusion: Fusion,
}

impl<M: SliceModel> MultiView<M> {
    /// `axes`: distinct slicing axes (each below 3); `cache_capacity`: embeddings kept in memory
    /// by all views together.
    pub fn new(
        model: M,
        axes: &[usize],
        prompts: PromptConfig,
        cache_capacity: usize,
        fusion: Fusion,
    ) -> Self {
        assert!(!axes.is_empty(), "a multi-view generalist needs an axis");
        let model = Arc::new(model);
        let per_view = (cache_capacity / axes.len()).max(1);
        let views = axes
            .iter()
            .map(|&axis| SliceWise::new(Arc::clone(&model), axis, prompts.clone(), per_view))
            .collect();
        MultiView { views, fusion }
    }

    /// Keep at most `bytes` of embeddings in memory over all the views, split evenly.
    pub fn with_memory_budget(mut self, bytes: usize) -> Self {
        let per_view = bytes / self.views.len();
        self.views = self
            .views
            .into_iter()
            .map(|view| view.with_memory_budget(per_view))
            .collect();
        self
    }

    /// Also keep every view's embeddings in `store` (its keys include the axis).
    pub fn with_store(mut self, store: EmbeddingStore) -> Self {
        self.views = self
            .views
            .into_iter()
            .map(|view| view.with_store(store.clone()))
            .collect();
        self
    }

    pub fn fusion(&self) -> Fusion {
        self.fusion
    }

    pub fn views(&self) -> &[SliceWise<Arc<M>>] {
        &self.views
    }

    /// Every view's answer to `request`, in the order of the axes.
    pub fn view_answers(
        &mut self,
        request: &PseudoLabelRequest<'_>,
    ) -> Result<Vec<ViewAnswer>, GeneralistError> {
        self.views
            .iter_mut()
            .map(|view| {
                let started = Instant::now();
                let answer = view.answer(request)?;
                Ok(ViewAnswer {
                    axis: view.axis(),
                    answer,
                    seconds: started.elapsed().as_secs_f64(),
                })
            })
            .collect()
    }
}

impl<M: SliceModel> Generalist for MultiView<M> {
    fn identity(&self) -> String {
        let axes: Vec<usize> = self.views.iter().map(SliceWise::axis).collect();
        let model = self.views[0].model().identity();
        format!(
            "{model} (slice-wise, axes {axes:?}, {} fusion)",
            self.fusion.name()
        )
    }

    fn show_progress(&mut self, visible: bool) {
        for view in &mut self.views {
            view.show_progress(visible);
        }
    }

    fn usage(&self) -> Option<GeneralistUsage> {
        Some(
            self.views
                .iter()
                .map(SliceWise::usage)
                .fold(GeneralistUsage::default(), |a, b| a + b),
        )
    }

    fn pseudo_label(
        &mut self,
        request: &PseudoLabelRequest<'_>,
    ) -> Result<Option<PseudoLabel>, GeneralistError> {
        let answers = self.view_answers(request)?;
        let answered: Vec<&SliceAnswer> =
            answers.iter().filter_map(|v| v.answer.as_ref()).collect();
        if answered.is_empty() {
            return Ok(None);
        }
        let (mask, known) = fuse(&answered, self.fusion);
        Ok(Some(PseudoLabel {
            mask,
            known,
            prompts: answered.iter().map(|a| a.prompts).sum(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::BoxFiller;
    use super::*;
    use ndarray::Array1;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A view's answer along one row of voxels: logits where `Some`, unprompted where `None`.
    fn row(logits: &[Option<f32>]) -> SliceAnswer {
        let known = Array1::from_iter(logits.iter().map(Option::is_some));
        let values = Array1::from_iter(logits.iter().map(|l| l.unwrap_or(f32::NEG_INFINITY)));
        let shape = (1, 1, logits.len());
        SliceAnswer {
            logits: values.into_shape_with_order(shape).unwrap(),
            known: known.into_shape_with_order(shape).unwrap(),
            prompts: 1,
        }
    }

    fn flat(a: &Array3<bool>) -> Vec<bool> {
        a.iter().copied().collect()
    }

    #[test]
    fn fusion_rules_on_three_views() {
        let (fg, bg, weak) = (Some(f32::INFINITY), Some(f32::NEG_INFINITY), Some(0.4));
        // voxels: all agree fg | 2 of 3 fg | 1 of 3 fg | one view, fg | two views tie | none |
        // two confident fg and a weak fg | one fg and two weak
        let a = row(&[fg, fg, fg, fg, fg, None, fg, fg]);
        let b = row(&[fg, fg, bg, None, bg, None, fg, weak]);
        let c = row(&[fg, bg, bg, None, None, None, weak, weak]);
        let views = [&a, &b, &c];

        let (mask, known) = fuse(&views, Fusion::Vote);
        assert_eq!(
            flat(&mask),
            [true, true, false, true, false, false, true, true]
        );
        assert_eq!(
            flat(&known),
            [true, true, true, true, false, false, true, true]
        );

        // the mean of two certain views and sigmoid(0.4) = 0.599 is 0.866; of one certain and
        // two weak ones 0.733
        let (mask, known) = fuse(&views, Fusion::Mean { band: 0.25 });
        assert_eq!(
            flat(&mask),
            [true, true, false, true, false, false, true, true]
        );
        assert_eq!(
            flat(&known),
            [true, false, false, true, false, false, true, false]
        );
        // band 0: only exact ties are left out
        let (_, known) = fuse(&views, Fusion::Mean { band: 0.0 });
        assert_eq!(
            flat(&known),
            [true, true, true, true, false, false, true, true]
        );
    }

    #[test]
    fn views_of_an_l_shaped_object_are_fused() {
        // An L in the (i, j) plane, two slices thick along k: along k each slice's box is the
        // whole 4x4 square, along i and j each slice's box is the L's own part of it.
        let shape = (5, 5, 3);
        let in_l = |i: usize, j: usize, k: usize| k < 2 && ((i < 4 && j == 0) || (i == 0 && j < 4));
        let in_square = |i: usize, j: usize, k: usize| k < 2 && i < 4 && j < 4;
        let probability =
            Array3::from_shape_fn(shape, |(i, j, k)| if in_l(i, j, k) { 0.9 } else { 0.1f32 });
        let image = Array3::from_shape_fn(shape, |(i, j, k)| (i * 7 + j * 3 + k) as f32);
        let request = PseudoLabelRequest {
            case_id: "l",
            image: image.view(),
            region: [0..5, 0..5, 0..3],
            probability: probability.view(),
        };
        let prompts = PromptConfig {
            box_margin: 0.0,
            ..Default::default()
        };
        let build = |fusion| {
            let model = BoxFiller {
                embeds: AtomicUsize::new(0),
            };
            MultiView::new(model, &[0, 1, 2], prompts.clone(), 64, fusion)
        };

        let mut vote = build(Fusion::Vote);
        let answers = vote.view_answers(&request).unwrap();
        let axes: Vec<usize> = answers.iter().map(|v| v.axis).collect();
        assert_eq!(axes, [0, 1, 2]);
        let masks: Vec<Array3<bool>> = answers
            .iter()
            .map(|v| v.answer.as_ref().unwrap().logits.mapv(|l| l > 0.0))
            .collect();
        assert_eq!(
            masks[0],
            Array3::from_shape_fn(shape, |(i, j, k)| in_l(i, j, k))
        );
        assert_eq!(masks[1], masks[0]);
        assert_eq!(
            masks[2],
            Array3::from_shape_fn(shape, |(i, j, k)| in_square(i, j, k))
        );
        let prompted: Vec<usize> = answers
            .iter()
            .map(|v| v.answer.as_ref().unwrap().prompts)
            .collect();
        assert_eq!(prompted, [4, 4, 2]);
        // one model, each slice encoded once per axis
        assert_eq!(vote.views()[0].model().embeds.load(Ordering::Relaxed), 10);

        // Nobody answers (4, 4, 2): i = 4, j = 4 and k = 2 hold no part of the object.
        let answered = Array3::from_shape_fn(shape, |index| index != (4, 4, 2));
        let label = vote.pseudo_label(&request).unwrap().unwrap();
        assert_eq!(label.prompts, 10);
        assert_eq!(label.mask, masks[0], "two of three views say L");
        assert_eq!(label.known, answered);

        // The mean (1/3) of the square's voxels outside the L lies within 0.25 of ½.
        let label = build(Fusion::Mean { band: 0.25 })
            .pseudo_label(&request)
            .unwrap()
            .unwrap();
        assert_eq!(label.mask, masks[0]);
        let disputed =
            Array3::from_shape_fn(shape, |(i, j, k)| in_square(i, j, k) && !in_l(i, j, k));
        assert_eq!(label.known, &answered & &disputed.mapv(|d| !d));
        assert_eq!(disputed.iter().filter(|&&d| d).count(), 18);
    }

    #[test]
    fn no_confident_foreground_gives_no_fused_label() {
        let image = Array3::<f32>::zeros((6, 6, 6));
        let probability = Array3::from_elem((6, 6, 6), 0.2f32);
        let model = BoxFiller {
            embeds: AtomicUsize::new(0),
        };
        let mut generalist =
            MultiView::new(model, &[0, 2], PromptConfig::default(), 8, Fusion::Vote);
        let request = PseudoLabelRequest {
            case_id: "c",
            image: image.view(),
            region: [0..6, 0..6, 0..6],
            probability: probability.view(),
        };
        assert!(generalist.pseudo_label(&request).unwrap().is_none());
        assert!(generalist.identity().contains("axes [0, 2], vote fusion"));
    }
}
