//! Frozen promptable generalists (LiteMedSAM, SAM-Med3D) behind one trait.
pub mod sammed3d;
