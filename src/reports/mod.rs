//! Run reports: tables, curves, overlays.
