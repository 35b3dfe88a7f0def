//! Replays the corpora of the parser fuzz targets (fuzz/fuzz_targets/{admin,ipvsadm,config}.rs) on
//! stable, with the targets' own checks (fuzz/src/parsers.rs): every seed and every input the
//! fuzzer kept or found crashing must pass. The fuzzer itself needs nightly and cargo-fuzz
//! (fuzz/README.md); this runs in the ordinary test suite.

include!("../../fuzz/src/parsers.rs");

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn replay(target: &str, check: fn(&[u8]), at_least: usize) {
    let inputs = corpus(target);
    assert!(
        inputs.len() >= at_least,
        "{target}: {} inputs",
        inputs.len()
    );
    let mut failed = Vec::new();
    for (name, data) in &inputs {
        if std::panic::catch_unwind(|| check(data)).is_err() {
            failed.push(name.clone());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: inputs that break a check: {failed:?}"
    );
}

#[test]
fn admin_request_corpus_replays() {
    replay("admin", check_request, 10);
}

#[test]
fn ipvsadm_corpus_replays() {
    replay("ipvsadm", check_ipvsadm, 8);
}

#[test]
fn config_corpus_replays() {
    replay("config", check_config, 5);
}
