//! `perf/runtime-sample` refuses what it cannot use before it samples anything: a count that is
//! not a finite positive number, an argument too many, a bad `WINDOW`, or no gwctl to ask, each
//! named with the usage and exit status 2 (a bad count ended in a Python traceback before, a
//! missing gwctl in a silent loop). With no gateway answering it says so and exits 1. Its
//! per-interval split is checked on two samples worked out by hand.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/runtime-sample");

/// Runs the script to its end, within 30 s (an argument it took would have it sample for as long
/// as asked): its exit status, standard error and standard output.
fn run(args: &[&str], window: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(SCRIPT);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(w) = window {
        cmd.env("WINDOW", w);
    }
    let mut child = cmd.spawn().expect("runtime-sample starts");
    let start = Instant::now();
    while child.try_wait().expect("waits").is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?}: still sampling after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("its output");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stderr), text(&out.stdout))
}

/// Runs the script and expects it to end with exit status `code`, saying `why` on standard error
/// and nothing on standard output; returns its standard error.
fn refused(args: &[&str], window: Option<&str>, code: i32, why: &str) -> String {
    let (status, stderr, stdout) = run(args, window);
    assert_eq!(status, Some(code), "{args:?}: {stderr}");
    assert!(stderr.contains(why), "{args:?}: {stderr}");
    assert!(stdout.is_empty(), "{args:?}: nothing sampled, {stdout}");
    stderr
}

#[test]
fn a_bad_argument_is_named_with_the_usage() {
    for (args, window, why) in [
        (
            &[][..],
            None,
            "the following arguments are required: SECONDS",
        ),
        (
            &["x"],
            None,
            "argument SECONDS: 'x' is not a positive number",
        ),
        (
            &["-3"],
            None,
            "argument SECONDS: '-3' is not a positive number",
        ),
        (
            &["inf"],
            None,
            "argument SECONDS: 'inf' is not a positive number",
        ),
        (
            &["--each", "0.5"],
            None,
            "the following arguments are required: SECONDS",
        ),
        (
            &["--each", "half", "10"],
            None,
            "argument --each: 'half' is not a positive number",
        ),
        (
            &["--each", "0", "10"],
            None,
            "argument --each: '0' is not a positive number",
        ),
        (
            &["1", "gwctl", "extra"],
            None,
            "unrecognized arguments: extra",
        ),
        (
            &["1"],
            Some("six"),
            "WINDOW: 'six' is not a positive number",
        ),
    ] {
        let stderr = refused(
            args,
            window,
            2,
            &format!("perf/runtime-sample: error: {why}"),
        );
        assert!(
            stderr.contains("usage: perf/runtime-sample [-h] [--each INTERVAL] SECONDS [GWCTL]"),
            "{args:?}: the usage, {stderr}"
        );
    }
}

#[test]
fn a_gwctl_that_is_not_there_is_named_before_any_sampling() {
    // An hour asked: refused at once, not after the hour (`run` gives up after 30 s).
    for args in [
        &["3600", "/nonexistent/gwctl"][..],
        &["--each", "1", "3600", "/nonexistent/gwctl"],
        &["3600", "/tmp"],
    ] {
        let named = args.last().unwrap();
        refused(args, None, 2, &format!("error: no gwctl at {named}"));
    }
}

#[test]
fn no_gateway_answering_is_said_with_exit_1() {
    // `true` answers nothing a sample can be read from, whatever sockets exist.
    for args in [&["0.5", "true"][..], &["--each", "0.2", "0.5", "true"]] {
        refused(args, None, 1, "no benched gateway answered in 0.5 s");
    }
}

#[test]
fn help_is_the_usage_on_stdout() {
    let (code, stderr, stdout) = run(&["--help"], None);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("--each INTERVAL SECONDS [GWCTL]"),
        "{stdout}"
    );
}

#[test]
fn an_intervals_split_is_its_cycles_over_its_packets() {
    // Ten packets between the samples: 2,000 busy cycles, rx 400, forward 1,000; the stages in
    // `gwctl runtime`'s order, whatever the samples' order.
    let probe = r#"
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.SourceFileLoader("runtime_sample", sys.argv[1])
m = importlib.util.module_from_spec(importlib.util.spec_from_loader("runtime_sample", loader))
loader.exec_module(m)
a = {"busy": 1000, "packets": 10, "stages": {"forward": 100, "rx": 300}}
b = {"busy": 3000, "packets": 20, "stages": {"forward": 1100, "rx": 700}}
print(m.split(a, b))
"#;
    let out = Command::new("python3")
        .args(["-c", probe, SCRIPT])
        .output()
        .expect("python3 starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "200.0 cycles/packet: rx 40.0 forward 100.0"
    );
}
