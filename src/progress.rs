//! The terminal's progress bars. Every bar of the process is drawn by one `MultiProgress`, so
//! that a log line can be printed above the bars ([`suspend`]) without tearing them or losing
//! their ETA. Bars are hidden when stderr is not a terminal.

use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

fn terminal() -> &'static MultiProgress {
    static TERMINAL: OnceLock<MultiProgress> = OnceLock::new();
    TERMINAL.get_or_init(MultiProgress::new)
}

/// A bar of `len` steps drawn with `template` (indicatif's syntax), or a hidden one.
pub fn bar(visible: bool, len: u64, template: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    terminal().add(ProgressBar::new(len).with_style(style))
}

/// Run `print` (which writes to the terminal) with the bars cleared, then draw them again below
/// what it printed.
pub fn suspend<R>(print: impl FnOnce() -> R) -> R {
    terminal().suspend(print)
}
