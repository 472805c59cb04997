//! The run configuration of the training tests: a tiny V-Net Mean Teacher run on 16³ patches,
//! whose keys each test changes where it needs to.

#![allow(dead_code)]

use semisam::training::RunConfig;

/// A run configuration as TOML sections, in order; values are TOML literals.
#[derive(Debug, Clone)]
pub struct RunToml {
    sections: Vec<(String, Vec<(String, String)>)>,
    /// Sections written verbatim after the others (e.g. `[sam]` with comments).
    raw: String,
}

/// A tiny run: 3 iterations of Mean Teacher, batches of 1 labeled and 2 unlabeled items, and a
/// validation (stride 8) at the end.
pub fn tiny_run() -> RunToml {
    let section = |name: &str, keys: &[(&str, &str)]| {
        let keys = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (name.to_string(), keys)
    };
    RunToml {
        sections: vec![
            section(
                "data",
                &[
                    ("root", "\"unused\""),
                    ("protocol", "\"paper\""),
                    ("labeled", "2"),
                ],
            ),
            section(
                "network",
                &[
                    ("architecture", "\"v_net\""),
                    ("in_channels", "1"),
                    ("num_classes", "2"),
                    ("base_filters", "2"),
                    ("dropout", "true"),
                ],
            ),
            section("framework", &[("kind", "\"mean_teacher\"")]),
            section(
                "training",
                &[
                    ("iterations", "3"),
                    ("batch_size", "3"),
                    ("labeled_bs", "1"),
                    ("patch", "[16, 16, 16]"),
                    ("lr", "0.05"),
                    ("checkpoint_every", "3"),
                    ("seed", "5"),
                ],
            ),
            section("validation", &[("every", "3"), ("stride", "[8, 8, 8]")]),
        ],
        raw: String::new(),
    }
}

/// A path as a TOML string (a literal string: kept verbatim).
pub fn toml_path(path: &std::path::Path) -> String {
    format!("'{}'", path.display())
}

impl RunToml {
    /// Set `key` of `[section]` to the TOML literal `value` (the section is added if missing).
    pub fn set(mut self, section: &str, key: &str, value: impl ToString) -> Self {
        let value = value.to_string();
        let index = match self.sections.iter().position(|(name, _)| name == section) {
            Some(index) => index,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let keys = &mut self.sections[index].1;
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => keys.push((key.to_string(), value)),
        }
        self
    }

    /// Append sections written as TOML text.
    pub fn with_sections(mut self, text: &str) -> Self {
        self.raw.push_str(text);
        self.raw.push('\n');
        self
    }

    pub fn text(&self) -> String {
        let mut text = String::new();
        for (name, keys) in &self.sections {
            text.push_str(&format!("[{name}]\n"));
            for (key, value) in keys {
                text.push_str(&format!("{key} = {value}\n"));
            }
            text.push('\n');
        }
        text.push_str(&self.raw);
        text
    }

    /// The parsed configuration with `--set` style overrides, or the error message.
    pub fn parse_with(&self, overrides: &[&str]) -> Result<RunConfig, String> {
        let overrides: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
        RunConfig::from_toml_str(&self.text(), &overrides, "test.toml").map_err(|e| e.to_string())
    }

    pub fn parse(&self) -> Result<RunConfig, String> {
        self.parse_with(&[])
    }

    /// The parsed configuration; panics with the error otherwise.
    pub fn build(&self) -> RunConfig {
        self.parse()
            .unwrap_or_else(|e| panic!("{e}\n{}", self.text()))
    }
}
