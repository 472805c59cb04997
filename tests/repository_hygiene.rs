//! The repository speaks of the project, not of the history of its making: no references to
//! past rounds of work, to issue numbers, to "re-run after ..." narratives or to a specification
//! file the repository does not hold (the method is described in `docs/method.md`).
//!
//! Walks the text files of the repository's own folders and names every offending line. This
//! file is left out of the walk: it has to spell the patterns it looks for, and the unit tests
//! below check each pattern on samples.

use std::fs;
use std::path::{Path, PathBuf};

/// Files and folders (relative to the crate root) whose text files are checked.
const ROOTS: &[&str] = &[
    "README.md",
    "Cargo.toml",
    ".ci",
    "bench",
    "benches",
    "configs",
    "crates",
    "docs",
    "scripts",
    "src",
    "tests",
];

/// Build outputs, caches and run folders: not part of the repository.
const SKIPPED_DIRS: &[&str] = &["target", "runs", "__pycache__", ".git"];

const TEXT_EXTENSIONS: &[&str] = &["rs", "md", "toml", "py", "sh", "txt", "yml", "yaml"];

const THIS_FILE: &str = "tests/repository_hygiene.rs";

/// Why `line` of a file with extension `extension` speaks of history, or `None`.
fn finding(line: &str, extension: &str) -> Option<&'static str> {
    let lower = line.to_lowercase();
    if has_word(line, "SPEC") {
        return Some(
            "cites a specification file the repository does not hold (cite docs/method.md)",
        );
    }
    if words_followed_by_number(&lower, &["session", "sessions"], false)
        || [
            "this", "next", "last", "previous", "earlier", "same", "that",
        ]
        .iter()
        .any(|w| lower.contains(&format!("{w} session")))
    {
        return Some("refers to a round of work");
    }
    if words_followed_by_number(&lower, &["issue", "issues"], true) || has_hash_number(line) {
        return Some("refers to an issue number");
    }
    if lower.contains("re-run after") || lower.contains("rerun after") {
        return Some("tells the history of a result instead of the result");
    }
    if extension == "md" && line.starts_with('#') && has_iso_date(line) {
        return Some("dates a section of work");
    }
    None
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Start indices of `word` in `text` where it stands as a whole word.
fn word_positions<'a>(text: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.match_indices(word)
        .map(|(at, _)| at)
        .filter(move |&at| {
            let before = text[..at].chars().next_back();
            let after = text[at + word.len()..].chars().next();
            !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
        })
}

fn has_word(text: &str, word: &str) -> bool {
    word_positions(text, word).next().is_some()
}

/// One of `words`, then spaces, optionally `#` (when `hash` is allowed), then a digit.
fn words_followed_by_number(lower: &str, words: &[&str], hash: bool) -> bool {
    words.iter().any(|word| {
        word_positions(lower, word).any(|at| {
            let rest = &lower[at + word.len()..];
            let trimmed = rest.trim_start();
            if trimmed.len() == rest.len() {
                return false;
            }
            let trimmed = if hash {
                trimmed.strip_prefix('#').unwrap_or(trimmed)
            } else {
                trimmed
            };
            trimmed.starts_with(|c: char| c.is_ascii_digit())
        })
    })
}

/// `#12` as an issue or pull-request reference: after the start of the line, a space or an
/// opening bracket, 1 to 5 digits without a leading zero, then no further letter or digit.
/// `owner/repo#12` (another project's tracker), `#[derive]` and quoted hex colours ("#1f77b4")
/// do not count.
fn has_hash_number(line: &str) -> bool {
    line.match_indices('#').any(|(at, _)| {
        let before = line[..at].chars().next_back();
        if before.is_some_and(|c| !(c.is_whitespace() || c == '(' || c == '[')) {
            return false;
        }
        let rest = &line[at + 1..];
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        let after = rest[digits..].chars().next();
        (1..=5).contains(&digits) && !rest.starts_with('0') && !after.is_some_and(is_word_char)
    })
}

/// A date written as YYYY-MM-DD.
fn has_iso_date(line: &str) -> bool {
    let bytes = line.as_bytes();
    bytes.windows(10).any(|w| {
        let digit = |i: usize| w[i].is_ascii_digit();
        (0..4).all(digit)
            && w[4] == b'-'
            && digit(5)
            && digit(6)
            && w[7] == b'-'
            && digit(8)
            && digit(9)
    })
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) {
    let Ok(metadata) = fs::metadata(path) else {
        return;
    };
    if metadata.is_file() {
        files.push(path.to_owned());
        return;
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(path)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if entry.is_dir() && SKIPPED_DIRS.contains(&name) {
            continue;
        }
        collect_files(&entry, files);
    }
}

/// Extension of a checked text file ("" for scripts without one), `None` for other files.
fn text_extension(path: &Path) -> Option<&str> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(extension) if TEXT_EXTENSIONS.contains(&extension) => Some(extension),
        Some(_) => None,
        None => Some(""),
    }
}

/// The repository's checked text files (this one left out): path relative to the crate root,
/// extension and text.
fn text_files() -> Vec<(PathBuf, String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for name in ROOTS {
        collect_files(&root.join(name), &mut files);
    }
    let mut texts = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(root).expect("under the root");
        if relative == Path::new(THIS_FILE) {
            continue;
        }
        let Some(extension) = text_extension(path) else {
            continue;
        };
        // Binary fixtures and weights are not text.
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        texts.push((relative.to_owned(), extension.to_owned(), text));
    }
    texts
}

#[test]
fn no_history_issue_numbers_or_missing_spec_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let texts = text_files();
    let checked = texts.len();
    let mut findings = Vec::new();
    for (relative, extension, text) in &texts {
        for (index, line) in text.lines().enumerate() {
            if let Some(why) = finding(line, extension) {
                findings.push(format!(
                    "{}:{}: {why}: {}",
                    relative.display(),
                    index + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} text files found under {}: is the walk looking in the right place?",
        root.display()
    );
    assert!(
        findings.is_empty(),
        "{} line(s) speak of the project's history instead of the project:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

/// Paths under `docs/` that `text` cites (`docs/` then path characters, ending in a file
/// extension).
fn cited_docs(text: &str) -> Vec<&str> {
    text.match_indices("docs/")
        .filter(|&(at, _)| !text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .filter_map(|(at, _)| {
            let rest = &text[at..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || "_-./".contains(c)))
                .unwrap_or(rest.len());
            let cited = rest[..end].trim_end_matches('.');
            let name = cited.rsplit('/').next().unwrap_or("");
            name.contains('.').then_some(cited)
        })
        .collect()
}

#[test]
fn every_cited_document_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    for (relative, _, text) in text_files() {
        for (index, line) in text.lines().enumerate() {
            for cited in cited_docs(line) {
                if !root.join(cited).is_file() {
                    missing.push(format!("{}:{}: {cited}", relative.display(), index + 1));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} citation(s) of a document the repository does not hold:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn cited_documents_are_read_from_text() {
    assert_eq!(
        cited_docs("(docs/results.md, Cost); see docs/figures/seeds.png."),
        ["docs/results.md", "docs/figures/seeds.png"]
    );
    assert_eq!(
        cited_docs("`docs/method.md` §5.1 and the docs/ folder"),
        ["docs/method.md"]
    );
    assert!(cited_docs("rustdocs/x.md and mydocs/y.md").is_empty());
}

#[test]
fn history_patterns_are_found() {
    let bad = [
        ("UA-MT scales it by 0.5 ({SPEC} §4).", "rs"),
        ("the empty-mask policy (SPEC section 7)", "py"),
        ("# mean and std matched, 0.62 ({session} 6).", "toml"),
        ("(docs/experiments.md, {session}s 8-9)", "toml"),
        ("this {session}'s results are in the notebook", "md"),
        ("left for the next session", "md"),
        ("The experiment of {issue}s #4 and #5", "sh"),
        ("{Issue} 21 quotes the held-out numbers", "md"),
        ("see #17 for the discussion", "md"),
        ("(fixed in #203)", "rs"),
        ("Re-run after unprompted slices were left out: 606 s", "md"),
        ("## Results (2026-11-27, afternoon)", "md"),
    ];
    for (sample, extension) in bad {
        // The samples name the patterns through placeholders, so that this file does not carry
        // the very text it looks for.
        let line = sample
            .replace("{SPEC}", "SPEC")
            .replace("{session}", "session")
            .replace("{issue}", "issue")
            .replace("{Issue}", "Issue");
        let line = line.as_str();
        assert!(finding(line, extension).is_some(), "not flagged: {line:?}");
    }
}

#[test]
fn legitimate_text_is_not_flagged() {
    let good = [
        ("#[derive(Debug, Clone)]", "rs"),
        ("#![allow(clippy::too_many_arguments)]", "rs"),
        ("    ax.plot(x, y, color=\"#1f77b4\")", "py"),
        (
            "//! 3D max pooling, which burn 0.22 lacks (tracel-ai/burn#4213).",
            "rs",
        ),
        (
            "out.extend_from_slice(&h.session_error.to_le_bytes());",
            "rs",
        ),
        (
            "ANY GENERAL, SPECIAL, INDIRECT, OR CONSEQUENTIAL DAMAGES",
            "txt",
        ),
        ("# 600 iterations: LR x0.1 every 250", "toml"),
        ("## 7. Inference and metrics", "md"),
        ("/// UTC time as `2026-11-27T12:00:00Z` (`iso`)", "rs"),
        ("the empty-mask policy (docs/method.md §7)", "rs"),
        ("a known issue of burn's gather", "rs"),
        ("#0 is the background class", "md"),
        ("item #3a of the list", "md"),
    ];
    for (line, extension) in good {
        assert_eq!(finding(line, extension), None, "flagged: {line:?}");
    }
}
