//! Replays the fuzz corpora: every kept corpus input (`fuzz/corpus/TARGET/`), every input
//! that once made a target fail (`fuzz/regressions/TARGET/`) and the seeds built from the
//! tests go through the same target functions the fuzzer drives, so a change that breaks
//! a property on any of them fails `cargo test`, without a fuzzer in CI.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: pd_fuzz::Target, dir: &Path) -> usize {
    let inputs = files(dir);
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} fails (input {:?})",
            path.display(),
            String::from_utf8_lossy(&data)
        );
    }
    inputs.len()
}

#[test]
fn every_corpus_and_regression_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (target, run) in pd_fuzz::TARGETS {
        let corpus = replay(target, *run, &root.join("corpus").join(target));
        assert!(
            corpus > 0,
            "{target}: the corpus directory is empty or missing"
        );
        replay(target, *run, &root.join("regressions").join(target));
    }
}

#[test]
fn every_seed_passes_its_target() {
    for (target, run) in pd_fuzz::TARGETS {
        let seeds = pd_fuzz::seeds::seeds(target);
        assert!(!seeds.is_empty(), "{target} has no seeds");
        for (name, data) in seeds {
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: seed {name} fails");
        }
    }
}
