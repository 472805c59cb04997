//! Robustness harness for the file readers: mutated copies of valid files are fed to every
//! reader, which must answer with an error or a result, never a panic, an abort or an
//! allocation beyond a bound. `cargo bench --bench fuzz_readers` runs timed campaigns;
//! `tests/fuzz_replay.rs` replays a fixed set of mutations on every test run.
//!
//! `cargo fuzz` needs a nightly toolchain; this harness runs on stable. Its guidance is the
//! readers' answers: an input whose error is of a kind not seen before joins the corpus, so
//! mutations build on inputs that got further into a parser.

pub mod alloc_bound;
pub mod mutate;
pub mod targets;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::time::Instant;

pub use alloc_bound::BoundedAllocator;
pub use mutate::Mutator;
pub use targets::{SeedSet, Target, targets};

/// Inputs kept for mutation, at most (the seeds plus inputs with new kinds of errors).
const MAX_CORPUS: usize = 512;
/// Errors without the file's name kept for the report.
const MAX_UNNAMED_KEPT: usize = 20;
/// Characters of an error message that define its kind.
const KIND_CHARS: usize = 160;

/// How a reader answered one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// A clear error: the expected answer to a damaged file.
    Rejected(String),
    /// The reader panicked (message and location).
    Panicked(String),
}

thread_local! {
    static INSIDE_TARGET: RefCell<bool> = const { RefCell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside a target are recorded quietly; every other panic is reported as usual.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if INSIDE_TARGET.with(|inside| *inside.borrow()) {
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(format!("{message}{location}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Feed `input` to `target`, catching a panic.
pub fn execute(target: &Target, input: &[u8]) -> std::io::Result<Outcome> {
    install_panic_hook();
    INSIDE_TARGET.with(|inside| *inside.borrow_mut() = true);
    let result = catch_unwind(AssertUnwindSafe(|| target.read(input)));
    INSIDE_TARGET.with(|inside| *inside.borrow_mut() = false);
    match result {
        Ok(Ok(Ok(()))) => Ok(Outcome::Accepted),
        Ok(Ok(Err(message))) => Ok(Outcome::Rejected(message)),
        Ok(Err(io)) => Err(io),
        Err(_) => Ok(Outcome::Panicked(
            LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .unwrap_or_default(),
        )),
    }
}

/// What a run found.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub executions: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Distinct kinds of error message (numbers and the input's path left out).
    pub error_kinds: BTreeSet<String>,
    /// Each panic's message with the input that caused it.
    pub panics: Vec<(String, Vec<u8>)>,
    /// Errors that do not name the input's file (the first few).
    pub unnamed_errors: Vec<String>,
}

impl Tally {
    /// Count one outcome; true when it was an error of a new kind.
    fn record(&mut self, target: &Target, input: &[u8], outcome: Outcome) -> bool {
        self.executions += 1;
        match outcome {
            Outcome::Accepted => {
                self.accepted += 1;
                false
            }
            Outcome::Rejected(message) => {
                self.rejected += 1;
                if !names_a_file(target, &message) && self.unnamed_errors.len() < MAX_UNNAMED_KEPT {
                    self.unnamed_errors.push(message.clone());
                }
                self.error_kinds.insert(error_kind(target, &message))
            }
            Outcome::Panicked(message) => {
                self.panics.push((message, input.to_vec()));
                true
            }
        }
    }
}

/// Whether `message` names the input, or a file next to it that the input refers to (a case
/// file a `dataset.json` lists).
fn names_a_file(target: &Target, message: &str) -> bool {
    let input = &target.input_path;
    let file_name = input.file_name().unwrap_or_default().to_string_lossy();
    let folder = input.parent().unwrap_or(input).display().to_string();
    message.contains(file_name.as_ref()) || message.contains(&folder)
}

/// An error message with the input's path and every number removed.
fn error_kind(target: &Target, message: &str) -> String {
    let path = target.input_path.display().to_string();
    let folder = target
        .input_path
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    message
        .replace(&path, "")
        .replace(&folder, "")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(KIND_CHARS)
        .collect()
}

/// `count` mutations of the seeds, the same on every run for a given `seed`.
pub fn replay(target: &Target, count: usize, seed: u64) -> std::io::Result<Tally> {
    let mut mutator = Mutator::new(seed);
    let mut tally = Tally::default();
    for i in 0..count {
        let input = mutator.mutate(&target.seeds[i % target.seeds.len()]);
        let outcome = execute(target, &input)?;
        tally.record(target, &input, outcome);
    }
    Ok(tally)
}

/// Mutate until `deadline`, growing the corpus with inputs that gave new kinds of errors.
/// `progress` sees the tally after every input (to report or save a crashing input).
pub fn campaign(
    target: &Target,
    seed: u64,
    deadline: Instant,
    mut progress: impl FnMut(&Tally),
) -> std::io::Result<Tally> {
    let mut mutator = Mutator::new(seed);
    let mut corpus = target.seeds.clone();
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let parent = mutator.pick(corpus.len());
        let input = mutator.mutate(&corpus[parent]);
        let outcome = execute(target, &input)?;
        if tally.record(target, &input, outcome) && corpus.len() < MAX_CORPUS {
            corpus.push(input);
        }
        progress(&tally);
    }
    Ok(tally)
}
