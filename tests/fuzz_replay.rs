//! A fixed replay of mutated files through every reader: each must answer with a result or an
//! error naming the file, never panic, and never ask for more than 1 GiB in one allocation
//! (the bounded allocator below makes such a request abort this test binary).

use std::path::Path;

use semisam::fuzzing::{self, BoundedAllocator, SeedSet, Target};

#[global_allocator]
static ALLOCATOR: BoundedAllocator = BoundedAllocator::new(1 << 30);

/// Mutated inputs per reader; the slow readers (model loads) get fewer.
const INPUTS: usize = 300;
const INPUTS_SLOW: usize = 60;

fn target(name: &str, work: &Path) -> Target {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    fuzzing::targets(repo, work, SeedSet::Replay)
        .unwrap()
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

fn replay(name: &str, inputs: usize) {
    let work = tempfile::tempdir().unwrap();
    let target = target(name, work.path());
    for (i, seed) in target.seeds.iter().enumerate() {
        let outcome = fuzzing::execute(&target, seed).unwrap();
        assert_eq!(
            outcome,
            fuzzing::Outcome::Accepted,
            "{name}: seed {i} must read"
        );
    }
    let tally = fuzzing::replay(&target, inputs, 0x5eed).unwrap();
    let panics: Vec<&String> = tally.panics.iter().map(|(m, _)| m).collect();
    assert!(
        panics.is_empty(),
        "{name}: {} panics: {panics:#?}",
        panics.len()
    );
    assert_eq!(tally.executions, inputs as u64);
    assert!(
        tally.rejected > 0,
        "{name}: no mutated input was rejected; the target does not read what it writes"
    );
    assert!(
        tally.unnamed_errors.is_empty(),
        "{name}: errors that do not name the file: {:#?}",
        tally.unnamed_errors
    );
}

#[test]
fn npy_reader_survives_mutations() {
    replay("npy", INPUTS);
}

#[test]
fn nifti_reader_survives_mutations() {
    replay("nifti", INPUTS);
}

#[test]
fn gzip_nifti_reader_survives_mutations() {
    replay("nifti-gz", INPUTS);
}

#[test]
fn h5_reader_survives_mutations() {
    replay("h5", INPUTS);
}

#[test]
fn png_reader_survives_mutations() {
    replay("png", INPUTS);
}

#[test]
fn png_volume_reader_survives_mutations() {
    replay("png-volume", INPUTS);
}

#[test]
fn dataset_json_reader_survives_mutations() {
    replay("dataset-json", INPUTS);
}

#[test]
fn splits_reader_survives_mutations() {
    replay("splits", INPUTS);
}

#[test]
fn run_config_reader_survives_mutations() {
    replay("run-config", INPUTS);
}

#[test]
fn checkpoint_reader_survives_mutations() {
    replay("checkpoint", INPUTS_SLOW);
}

#[test]
fn checkpoint_reader_survives_mutations_behind_a_valid_checksum() {
    replay("checkpoint-rehashed", INPUTS_SLOW);
}

#[test]
fn pth_readers_survive_mutations() {
    replay("pth", INPUTS_SLOW);
}
