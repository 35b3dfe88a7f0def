//! gwctl as an operator's shell meets it, without a daemon: help, a reader that goes away (broken
//! pipe), and the interactive shell's exit status.

use std::io::Write;
use std::process::{Command, Stdio};

fn gwctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gwctl"))
}

#[test]
fn help_flags_print_help() {
    for flag in ["--help", "-h"] {
        let o = gwctl().arg(flag).output().unwrap();
        assert!(o.status.success(), "{flag}: {o:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("Commands:") && out.contains("sysctl"),
            "{flag}: {out}"
        );
    }
}

/// `ipvsadm -Lcn | head`: the reader is gone before gwctl writes. It must end quietly (no panic, no
/// backtrace), as ipvsadm does.
#[test]
fn a_reader_that_went_away_ends_the_output_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = gwctl()
        .arg("--help")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{o:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
}

/// Commands piped into the shell: its exit status says whether one failed.
#[test]
fn the_shell_exit_status_reflects_a_failed_command() {
    for (input, ok) in [("help\n", true), ("help\nstatus\nhelp\n", false)] {
        let mut c = gwctl()
            .args(["--socket", "/nonexistent/gateway.sock"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert_eq!(o.status.success(), ok, "{input:?}: {o:?}");
    }
}
