//! `perf/cost.sh` counts instructions of `examples/datapath_cost.rs` under Valgrind, and reads a
//! scenario that panics as zero instructions (the difference of two equal totals). Every scenario
//! the harness lists runs here for a few operations and must finish: its setup still builds what
//! it measures. The 1M-connection scenarios are left out (minutes in a debug build).

use std::path::PathBuf;
use std::process::Command;

/// The example, built by `cargo test` beside this test's binary (`target/<profile>/examples`).
fn harness() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join("datapath_cost")
}

#[test]
fn every_scenario_of_the_cost_harness_runs() {
    let bin = harness();
    assert!(bin.exists(), "{} not built", bin.display());
    let usage = Command::new(&bin).output().unwrap();
    let text = String::from_utf8_lossy(&usage.stderr).into_owned()
        + &String::from_utf8_lossy(&usage.stdout);
    let list = text
        .split_whitespace()
        .find(|w| w.contains("established-1k|"))
        .unwrap_or_else(|| panic!("no scenario list in the usage: {text}"));
    let scenarios: Vec<&str> = list.split('|').filter(|s| !s.ends_with("-1m")).collect();
    assert!(scenarios.len() >= 20, "{scenarios:?}");
    for s in scenarios {
        let o = Command::new(&bin).args([s, "64"]).output().unwrap();
        assert!(
            o.status.success(),
            "datapath_cost {s} 64: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
