//! `memlat` refuses an argument that is not a number before it allocates anything: the argument
//! named, the usage printed, exit status 2 (it panicked with a backtrace before).

use std::process::Command;

#[test]
fn an_argument_that_is_not_a_number_is_named_with_the_usage() {
    for args in [
        &["x"][..],
        &["64", "two"],
        &["burst", "1e6"],
        &["remap", "10", "-1"],
    ] {
        let run = Command::new(env!("CARGO_BIN_EXE_memlat"))
            .args(args)
            .output()
            .expect("memlat starts");
        let stderr = String::from_utf8_lossy(&run.stderr);
        let bad = args.last().unwrap();
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("\"{bad}\" is not a number")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("usage: memlat"), "{args:?}: {stderr}");
        assert!(run.stdout.is_empty(), "{args:?}: nothing measured");
    }
}
