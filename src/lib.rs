//! semisam: semi-supervised 3D medical image segmentation assisted by a frozen promptable
//! segmentation foundation model (SAM).
//!
//! The module tree follows the pipeline:
//! data → networks → prompts → generalists → frameworks/losses → training → inference →
//! metrics → reports. `planning` (dataset fingerprint → run configuration) writes what training
//! reads and measures its steps, so it sits above them. The `semisam` binary (src/main.rs,
//! src/cli) is the user's edge; `fuzzing` sits beside it, feeding damaged files to every reader.

pub mod backend;
pub mod data;
pub mod error;
pub mod frameworks;
pub mod fuzzing;
pub mod generalists;
pub mod inference;
pub mod io_util;
pub mod losses;
pub mod metrics;
pub mod morphology;
pub mod networks;
pub mod ops;
pub mod planning;
pub mod progress;
pub mod prompts;
pub mod reports;
pub mod training;

pub use error::{Error, Result};
