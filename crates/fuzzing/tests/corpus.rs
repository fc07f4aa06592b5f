//! Replays the committed fuzz inputs — the seed corpus `fuzz/corpus/<target>/` and the crashes
//! found and fixed, `fuzz/regressions/<target>/` — through the same functions the fuzz targets
//! call, so `cargo test` checks every invariant on every input that was ever interesting.

use std::path::Path;

#[test]
fn committed_inputs_keep_their_invariants() {
    // As under cargo-fuzz: a panic in any task (e.g. one spawned by the server) is a failure.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut replayed = 0;
    for (target, run) in fuzzing::TARGETS {
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else { continue };
            let mut files: Vec<_> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            files.sort();
            for file in files {
                let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                eprintln!("{target}: {}", file.display());
                run(&data);
                replayed += 1;
            }
        }
        assert!(fuzz.join("corpus").join(target).is_dir(), "no seed corpus for {target}");
    }
    assert!(replayed >= 4 * 3, "only {replayed} inputs replayed");
}
