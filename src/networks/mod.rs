//! Specialist segmentation networks (V-Net, 3D U-Net).
//!
//! Every network maps `[N, in_channels, X, Y, Z]` images to `[N, classes, X, Y, Z]` logits.
//! Stochastic layers (dropout) take the run's random generator explicitly: `Some(rng)` is a
//! training forward pass, `None` an evaluation one. Batch normalisation follows burn's rule
//! (batch statistics on an autodiff device with training enabled, running statistics after
//! `Module::valid()`).

pub mod arrays;
pub mod unet3d;
pub mod vnet;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use rand::RngCore;
use serde::{Deserialize, Serialize};

pub use unet3d::UNet3d;
pub use vnet::VNet;

/// Levels below the first in both networks: four 2x down-samplings.
pub const LEVELS: usize = 4;

/// The side multiple each axis of an input needs for `poolings` 2x poolings along it.
pub fn side_multiples(poolings: [usize; 3]) -> [usize; 3] {
    poolings.map(|p| 1 << p.min(LEVELS))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error(
        "network input has shape {shape:?}: expected [batch, {channels}, X, Y, Z] with X, Y, Z positive multiples of {} x {} x {}", multiples[0], multiples[1], multiples[2]
    )]
    InputShape {
        shape: [usize; 5],
        channels: usize,
        multiples: [usize; 3],
    },
    #[error("invalid network configuration: {0}")]
    Config(String),
}

/// Which specialist architecture to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// UA-MT / SemiSAM V-Net (BatchNorm, additive skips, Dropout3d 0.5).
    VNet,
    /// SSL4MIS `unet_3D` (InstanceNorm, max-pool, trilinear up + concatenation, dropout 0.3).
    #[serde(rename = "unet3d")]
    UNet3d,
}

impl Architecture {
    /// The name configurations use.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::VNet => "v_net",
            Architecture::UNet3d => "unet3d",
        }
    }
}

/// Everything needed to build a specialist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub architecture: Architecture,
    pub in_channels: usize,
    pub num_classes: usize,
    /// Filters of the first level (16 in the papers); deeper levels are multiples of it.
    pub base_filters: usize,
    pub dropout: bool,
    /// 2x poolings along each axis, coarsest level last (U-Net only). Four everywhere is the
    /// papers' network; an axis with fewer keeps its resolution below that level, so that thin
    /// data (one-slice images: `[4, 4, 0]`) needs no patch padded to 16 along it, as nnU-Net's
    /// per-axis pooling plans it.
    #[serde(default = "NetworkConfig::default_poolings")]
    pub poolings: [usize; 3],
}

impl NetworkConfig {
    /// The papers' networks: four 2x down-samplings along every axis.
    pub const fn default_poolings() -> [usize; 3] {
        [LEVELS; 3]
    }

    /// Every spatial side of an input must be a positive multiple of these.
    pub fn side_multiples(&self) -> [usize; 3] {
        side_multiples(self.poolings)
    }

    /// The configuration's own contradictions, before anything is built.
    pub fn validate(&self) -> Result<(), NetworkError> {
        if self.in_channels == 0 || self.base_filters == 0 || self.num_classes < 2 {
            return Err(NetworkError::Config(format!(
                "in_channels ({}) and base_filters ({}) must be positive and num_classes ({}) at least 2",
                self.in_channels, self.base_filters, self.num_classes
            )));
        }
        if self.poolings.iter().any(|&p| p > LEVELS) {
            return Err(NetworkError::Config(format!(
                "poolings {:?}: the networks have {LEVELS} levels, so at most {LEVELS} per axis",
                self.poolings
            )));
        }
        if self.architecture == Architecture::VNet && self.poolings != Self::default_poolings() {
            return Err(NetworkError::Config(format!(
                "poolings {:?}: the V-Net down-samples every axis {LEVELS} times (its strided convolutions are 2x2x2); use architecture = \"unet3d\" for fewer poolings along an axis",
                self.poolings
            )));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> Result<Specialist, NetworkError> {
        self.validate()?;
        Ok(match self.architecture {
            Architecture::VNet => Specialist::VNet(VNet::new(
                self.in_channels,
                self.num_classes,
                self.base_filters,
                self.dropout,
                device,
            )),
            Architecture::UNet3d => Specialist::UNet3d(
                UNet3d::new(
                    self.in_channels,
                    self.num_classes,
                    self.base_filters,
                    self.dropout,
                    device,
                )
                .with_poolings(self.poolings),
            ),
        })
    }
}

impl NetworkConfig {
    /// Like [`NetworkConfig::init`], with the weights drawn from burn's generator seeded with
    /// `seed` and materialised at once (burn initialises parameters lazily, so a later first
    /// access would otherwise draw from whatever state the generator has by then). The seed is
    /// global to the backend: do not create other random tensors concurrently.
    pub fn init_seeded(&self, device: &Device, seed: u64) -> Result<Specialist, NetworkError> {
        device.seed(seed);
        let network = self.init(device)?;
        network.visit(&mut Materialise);
        Ok(network)
    }
}

struct Materialise;

impl ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// A specialist network of any supported architecture (one concrete type for the training
/// loop, checkpoints and the frameworks).
// Boxing the variants would need burn's Module derive to see through Box; a model exists once
// or twice per run, so the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Specialist {
    VNet(VNet),
    UNet3d(UNet3d),
}

impl Specialist {
    /// Logits `[N, classes, X, Y, Z]`; dropout is active only when `rng` is given.
    pub fn forward(
        &self,
        images: Tensor<5>,
        rng: Option<&mut dyn RngCore>,
    ) -> Result<Tensor<5>, NetworkError> {
        match self {
            Specialist::VNet(net) => net.forward(images, rng),
            Specialist::UNet3d(net) => net.forward(images, rng),
        }
    }

    /// Every spatial side of the input must be a positive multiple of these.
    pub fn side_multiples(&self) -> [usize; 3] {
        match self {
            Specialist::VNet(_) => [vnet::VNET_SIDE_MULTIPLE; 3],
            Specialist::UNet3d(net) => net.side_multiples(),
        }
    }
}

/// Learnable parameters, as PyTorch counts them: burn's `num_params` also counts the
/// batch-norm running statistics (`running_mean`, `running_var`), which are buffers.
pub fn learnable_parameter_count<M: Module>(module: &M) -> usize {
    let mut counter = LearnableCounter::default();
    module.visit(&mut counter);
    counter.count
}

#[derive(Default)]
struct LearnableCounter {
    path: Vec<String>,
    count: usize,
}

impl ModuleVisitor for LearnableCounter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !is_buffer_path(&self.path) {
            self.count += param.lazy_shape().num_elements();
        }
    }
}

/// Whether a tensor at this module path is a buffer (batch-norm running statistics), not a
/// learnable parameter.
pub fn is_buffer_path(path: &[String]) -> bool {
    matches!(
        path.last().map(String::as_str),
        Some("running_mean" | "running_var")
    )
}

fn check_input(x: &Tensor<5>, multiples: [usize; 3]) -> Result<(), NetworkError> {
    let shape = x.dims();
    if shape[0] == 0
        || shape[2..]
            .iter()
            .zip(multiples)
            .any(|(&side, multiple)| side == 0 || side % multiple != 0)
    {
        return Err(NetworkError::InputShape {
            shape,
            channels: shape[1],
            multiples,
        });
    }
    Ok(())
}
