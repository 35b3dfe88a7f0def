//! End-to-end: the gateway binary in the netns lab on DPDK's af_packet driver (issue: foundation).

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn arp_resolves_and_ping_answers_on_both_sides_with_two_workers() {
    let lab = Lab::up("fa", &Lab::default_config(""));
    assert!(lab.log().contains("workers=2"), "{}", lab.log());

    let out = lab.sh(
        "cli",
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.10.0.1"],
    );
    assert!(out.contains("3 received"), "{out}");
    // ARP resolved the gateway's address to the MAC of its DPDK port (the veth end it drives).
    let gw_mac = lab
        .sh("lb", &["cat", "/sys/class/net/lbc/address"])
        .trim()
        .to_string();
    let neigh = lab.sh("cli", &["ip", "neigh", "show", "10.10.0.1"]);
    assert!(
        neigh.contains(&gw_mac),
        "client neighbour entry {neigh:?} lacks {gw_mac}"
    );

    // The server side answers too (second port).
    let out = lab.sh(
        "rs1",
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.20.0.1"],
    );
    assert!(out.contains("2 received"), "{out}");

    // Addresses the gateway does not own get no answer and are counted, not crashed on.
    let o = lab.exec("cli", &["ping", "-c", "1", "-W", "1", "10.10.0.77"]);
    assert!(!o.status.success());

    let stats = lab.stats();
    assert_eq!(
        stats.lines().filter(|l| l.starts_with("worker ")).count(),
        2,
        "{stats}"
    );
    assert!(lab.worker_counter(&stats, "echo_replies") >= 5, "{stats}");
    assert!(lab.worker_counter(&stats, "arp_replies") >= 2, "{stats}");
}

#[test]
fn sigterm_stops_cleanly_and_leaves_nothing() {
    let mut lab = Lab::up("fs", &Lab::default_config(""));
    lab.sh("cli", &["ping", "-c", "1", "-W", "2", "10.10.0.1"]);
    let pid = lab.pid().unwrap();
    assert!(
        lab.terminate_gateway(Duration::from_secs(10)),
        "gateway ignored SIGTERM"
    );
    let log = lab.log();
    assert!(log.contains("gateway stopped"), "{log}");
    assert!(
        log.contains("mempool in_use 0"),
        "every mbuf returned to the pool: {log}"
    );
    // No process, no hugepage file, no EAL runtime directory of this instance.
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .is_empty()
    );
    let huge: Vec<_> = std::fs::read_dir("/dev/hugepages")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !huge.iter().any(|f| f.starts_with(&lab.name)),
        "hugepage files left: {huge:?}"
    );
    assert!(!std::path::Path::new(&format!("/var/run/dpdk/{}", lab.name)).exists());
    // The kernel twins went with the clean stop.
    for twin in ["client", "server"] {
        let o = lab.exec("lb", &["ip", "link", "show", twin]);
        assert!(!o.status.success(), "twin {twin} left after SIGTERM");
    }
    let name = lab.name.clone();
    lab.down();
    let ns = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !ns.lines().any(|l| l.starts_with(&format!("{name}-"))),
        "namespaces left: {ns}"
    );
}

#[test]
fn bad_config_is_refused_naming_the_key_and_touching_nothing() {
    let base = std::fs::read_to_string(repo_root().join("conf/lab.toml")).unwrap();
    let prefix = unique_name("fb");
    let cases = [
        (
            base.replace("idle_sleep_us", "idle_sleeeep_us"),
            "idle_sleeeep_us",
        ),
        (
            base.replace("10.10.0.1/24", "10.10.0.1/40"),
            "port[0].addresses[0]",
        ),
        (base.replace("count = 2", "count = 0"), "workers.count"),
        (
            base.replace("device = \"net_af_packet1", "device = \"xx_af_packet1"),
            "port[1].device",
        ),
    ];
    for (text, key) in cases {
        let path = std::env::temp_dir().join(format!("{prefix}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(gateway_bin())
            .args(["--config", path.to_str().unwrap(), "--file-prefix", &prefix])
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(out.status.code(), Some(2), "bad config must exit 2");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "error {err:?} does not name {key}");
        assert!(
            !std::path::Path::new(&format!("/var/run/dpdk/{prefix}")).exists(),
            "EAL must not have started"
        );
    }
    // A missing file is refused too.
    let out = Command::new(gateway_bin())
        .args(["--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}
