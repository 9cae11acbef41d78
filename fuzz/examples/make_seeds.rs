//! Writes the seed inputs of every fuzz target into `fuzz/corpus/TARGET/seed-NN`, to start
//! a fuzzing run from the inputs of the tests: `cargo run -p pd-fuzz --example make_seeds`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, _) in pd_fuzz::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        let seeds = pd_fuzz::seeds::seeds(target);
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes)?;
        }
        eprintln!("{target}: {} seeds in {}", seeds.len(), dir.display());
    }
    Ok(())
}
