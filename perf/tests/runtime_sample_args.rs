//! `perf/runtime-sample` refuses what it cannot use before it samples anything: a count that is
//! not a positive number, or no gwctl to ask, named, with exit status 2 (a bad count ended in a
//! Python traceback before).

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String, Vec<u8>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/runtime-sample");
    let out = Command::new(script)
        .args(args)
        .output()
        .expect("runtime-sample starts");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, out.stdout)
}

#[test]
fn a_count_that_is_not_a_positive_number_is_named_with_the_usage() {
    for (args, named) in [
        (&[][..], "SECONDS"),
        (&["x"], "'x'"),
        (&["-3"], "SECONDS"),
        (&["--each", "0.5"], "INTERVAL and SECONDS"),
        (&["--each", "half", "10"], "'half'"),
        (&["--each", "0", "10"], "INTERVAL and SECONDS"),
    ] {
        let (code, stderr, stdout) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(
            stderr.contains("perf/runtime-sample --each INTERVAL SECONDS"),
            "{args:?}: the usage, {stderr}"
        );
        assert!(stdout.is_empty(), "{args:?}: nothing sampled");
    }
}

#[test]
fn a_gwctl_that_is_not_there_is_named() {
    for args in [
        &["1", "/nonexistent/gwctl"][..],
        &["--each", "1", "1", "/nonexistent/gwctl"],
    ] {
        let (code, stderr, stdout) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no gwctl at /nonexistent/gwctl"),
            "{args:?}: {stderr}"
        );
        assert!(stdout.is_empty(), "{args:?}: nothing sampled");
    }
}
