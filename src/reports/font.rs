//! The font every picture's text is drawn with, embedded in the binary so that no system font is
//! needed at run time: DejaVu Sans (Bitstream Vera licence, `assets/fonts/DejaVuSans-LICENSE.txt`).

use std::sync::OnceLock;

use plotters::style::FontStyle;

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family name the pictures ask plotters for.
pub const FAMILY: &str = "sans-serif";

/// Register the embedded font with plotters (once per process). `false` if it could not be
/// parsed, which would mean a damaged build.
pub fn register() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_font_parses() {
        assert!(super::register());
    }
}
