//! Frozen promptable generalists (LiteMedSAM, SAM-Med3D) behind one trait.
