//! Smoke run of the benchmark: `perf/bench --quick --no-ref` with this build's `gateway` and `pktgen`
//! (the gateway on memif, pktgen playing clients and real servers, tiny rates, about a second per
//! run). Checks that packets flow through FullNAT both ways and that the JSON results are well formed;
//! it asserts nothing about speed. Needs root and the hugepages scripts/setup.sh reserves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One bench at a time: each busy-polls both CPUs of the machine.
static ONE_BENCH: Mutex<()> = Mutex::new(());

/// Runs `perf/bench --quick --no-ref` with `args` into a fresh directory; returns the directory.
fn quick_bench(name: &str, args: &[&str]) -> PathBuf {
    let out = std::env::temp_dir().join(format!("perf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench");
    let run = Command::new("/usr/bin/python3")
        .arg(&bench)
        .args(["--quick", "--no-ref", "--timeout", "60", "--out"])
        .arg(&out)
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(args)
        .output()
        .expect("perf/bench starts");
    let stderr = String::from_utf8_lossy(&run.stderr);
    let gw_log = std::fs::read_to_string(out.join("gateway.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "perf/bench failed:\n{stderr}\ngateway.log:\n{gw_log}"
    );
    out
}

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
    let _one = ONE_BENCH.lock().unwrap_or_else(|e| e.into_inner());
    let out = quick_bench("smoke", &[]);

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
    // And by stage (the stats file's `runtime` lines), what perf/ab compares builds on.
    let stages = &gw["stages"];
    for st in ["rx", "l2-l3", "lookup", "forward", "tx"] {
        let (cycles, packets) = (stages[st][0].as_u64(), stages[st][1].as_u64());
        assert!(
            cycles > Some(0) && packets > Some(0),
            "stage {st} counted: {stages}"
        );
    }
    let s = &all["summary"];
    assert!(s["established_64B"]["gateway_mpps"].as_f64().unwrap() > 0.0);
    assert!(s["new_connections"]["established"].as_u64().unwrap() == 1000);
    // Every gateway stopped while pktgen still held both memif links (`pktgen --linger`), and
    // stopped cleanly: a DUT that pktgen left while it polled could crash in DPDK's memif
    // (perf/RESULTS.md, "A DUT that crashed when pktgen left"). Its last port lines say so.
    let log = std::fs::read_to_string(out.join("gateway.log")).expect("gateway.log");
    let started = log.matches("gateway ready").count();
    assert!(started >= 1, "the run's gateway started:\n{log}");
    assert_eq!(
        log.matches("gateway stopped").count(),
        started,
        "every gateway stopped cleanly:\n{log}"
    );
    assert_eq!(
        log.matches("(net_memif): link up").count(),
        2 * started,
        "each gateway's two ports were still connected when it stopped:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// `perf/bench --ipv6 1`: the same FullNAT run with IPv6 clients and real servers beside the IPv4
/// one. Every IPv6 handshake goes through the gateway's IPv6 table (with the IPv6 TOA) and data
/// is echoed, in frames 20 bytes longer; the gateway learnt pktgen's addresses from its
/// solicitations and dropped nothing.
#[test]
fn bench_quick_ipv6_run_goes_through_the_ipv6_table() {
    let _one = ONE_BENCH.lock().unwrap_or_else(|e| e.into_inner());
    let out = quick_bench("smoke6", &["--ipv6", "1"]);
    let all = json(&out.join("ipv6.json"));
    for (fam, version, frame) in [("v4", 4, 60), ("v6", 6, 80)] {
        let r = &all["runs"][format!("est_{fam}")][0];
        assert_eq!(r["ip_version"], version, "{r}");
        assert_eq!(r["frame_size"], frame, "{r}");
        assert_eq!(
            r["established"], 1000,
            "every {fam} handshake completes: {r}"
        );
        assert!(
            r["rx_packets"].as_u64().unwrap() > 1000,
            "{fam} data echoed: {r}"
        );
        assert_eq!(
            r["drop_lines"],
            serde_json::json!([]),
            "{fam}: no drops: {r}"
        );
    }
    let v4 = &all["runs"]["est_v4"][0]["ipv6_counters"];
    assert_eq!(
        v4["conns_created"], 0,
        "IPv4 clients stay out of the IPv6 table: {v4}"
    );
    let v6 = &all["runs"]["est_v6"][0]["ipv6_counters"];
    assert_eq!(v6["conns_created"], 1000, "{v6}");
    assert_eq!(
        v6["toa_added"], 1000,
        "every IPv6 SYN carries the IPv6 TOA: {v6}"
    );
    assert!(
        v6["forwarded"].as_u64().unwrap() > 2 * 1000,
        "IPv6 packets forwarded both ways: {v6}"
    );
    assert!(v6["ns_answered"].as_u64().unwrap() > 0, "{v6}");
    assert!(all["v6_over_v4"]["est"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(&out);
}

/// `perf/bench --latency 1`: the gateway flat out, then paced at 50% and 90% of its flat-out
/// send rate; each paced run is offered that fraction, receives, and has its percentiles in order.
/// The round also measures the stalls of the DUT's CPU (`stalls`).
#[test]
fn bench_quick_latency_run_paces_at_fractions_of_the_flat_out_rate() {
    let _one = ONE_BENCH.lock().unwrap_or_else(|e| e.into_inner());
    let out = quick_bench("smokelat", &["--latency", "1"]);
    let all = json(&out.join("latency.json"));
    let max = all["runs"]["gateway_max"][0]["tx_pps"].as_f64().unwrap();
    assert!(max > 0.0, "{all}");
    for frac in [0.5, 0.9] {
        let r = &all["runs"][format!("gateway_{frac}")][0];
        let offered = r["rate_pps"].as_f64().unwrap();
        assert!(
            (offered - (frac * max).max(1000.0)).abs() <= 1.0,
            "offered {offered} at {frac} of {max}: {r}"
        );
        assert!(r["rx_pps"].as_f64().unwrap() > 0.0, "{r}");
        let p = |k: &str| r[k].as_f64().unwrap();
        assert!(
            0.0 < p("p50_us") && p("p50_us") <= p("p99_us") && p("p99_us") <= p("p999_us"),
            "{r}"
        );
    }
    assert_eq!(
        all["runs"]["macswap_0.9"],
        serde_json::json!([]),
        "--no-ref runs no testpmd"
    );
    // The stall probe ran on the DUT's CPU for its second (`stalls`).
    let probe = &all["runs"]["cpu1_stalls"][0];
    assert!(probe["seconds"].as_f64().unwrap() >= 1.0, "{probe}");
    assert_eq!(
        probe["gaps_log2_us"].as_array().unwrap().len(),
        24,
        "{probe}"
    );
    let stalled = probe["stalled_fraction"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&stalled), "{probe}");
    let _ = std::fs::remove_dir_all(&out);
}
