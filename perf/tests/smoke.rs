//! Smoke run of the benchmark: `perf/bench --quick --no-ref` with this build's `gateway` and `pktgen`
//! (the gateway on memif, pktgen playing clients and real servers, tiny rates, about a second per
//! run). Checks that packets flow through FullNAT both ways and that the JSON results are well formed;
//! it asserts nothing about speed. Needs root and the hugepages scripts/setup.sh reserves.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin_dir() -> PathBuf {
    let pktgen = PathBuf::from(env!("CARGO_BIN_EXE_pktgen"));
    let dir = pktgen
        .parent()
        .expect("pktgen has a directory")
        .to_path_buf();
    if !dir.join("gateway").exists() {
        // `cargo test -p perf` alone does not build the other package's binaries.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "gateway", "--bin", "gateway"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the gateway binary failed");
    }
    dir
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[test]
fn bench_quick_run_moves_packets_and_writes_json() {
    let out = std::env::temp_dir().join(format!("perf-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench");
    let run = Command::new("/usr/bin/python3")
        .arg(&bench)
        .args(["--quick", "--no-ref", "--timeout", "60", "--out"])
        .arg(&out)
        .arg("--bin-dir")
        .arg(bin_dir())
        .output()
        .expect("perf/bench starts");
    let stderr = String::from_utf8_lossy(&run.stderr);
    let gw_log = std::fs::read_to_string(out.join("gateway.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "perf/bench failed:\n{stderr}\ngateway.log:\n{gw_log}"
    );

    let all = json(&out.join("bench.json"));
    for key in [
        "machine",
        "gateway_sweep",
        "latency",
        "gateway_cps",
        "summary",
    ] {
        assert!(all.get(key).is_some(), "bench.json lacks {key}");
    }
    // One pktgen result: every flow's handshake went through FullNAT and back, data echoed.
    assert!(
        out.join("gateway-est-1000.json").exists(),
        "pktgen's own JSON is kept"
    );
    let r = &all["gateway_sweep"]["1000"];
    assert_eq!(r["error"], serde_json::Value::Null, "{r}");
    assert_eq!(
        r["open"]["established"], 1000,
        "every handshake completes: {}",
        r["open"]
    );
    let d = &r["data"];
    let (tx, rx) = (
        d["tx_packets"].as_u64().unwrap(),
        d["rx_packets"].as_u64().unwrap(),
    );
    assert!(
        tx > 1000 && rx > tx / 2,
        "data flows both ways: tx {tx} rx {rx}"
    );
    assert!(
        r["reflector"]["tx"].as_u64().unwrap() >= rx,
        "every echo was reflected"
    );
    let lat = &d["latency"];
    assert_eq!(
        lat["samples"].as_u64(),
        Some(rx),
        "one latency sample per echo"
    );
    let (p50, p99, max) = (
        lat["p50_ns"].as_u64().unwrap(),
        lat["p99_ns"].as_u64().unwrap(),
        lat["max_ns"].as_u64().unwrap(),
    );
    assert!(
        0 < p50 && p50 <= p99 && p99 <= max,
        "latency quantiles are ordered: {lat}"
    );
    // The gateway saw it: connections created, busy cycles counted.
    let gw = &r["gateway"]["end"];
    assert!(
        gw["created"].as_u64().unwrap() >= 1000,
        "gateway created the connections: {gw}"
    );
    assert!(
        gw["cpp"].as_u64().unwrap() > 0,
        "gateway reports cycles per packet: {gw}"
    );
    let s = &all["summary"];
    assert!(s["established_64B"]["gateway_mpps"].as_f64().unwrap() > 0.0);
    assert!(s["new_connections"]["established"].as_u64().unwrap() == 1000);
    let _ = std::fs::remove_dir_all(&out);
}
