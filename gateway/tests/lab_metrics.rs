//! End-to-end: the Prometheus endpoint (`[metrics] listen`) of a gateway in the lab, scraped with
//! curl while wrk runs and parsed by an independent parser (Python's `prometheus_client`, Debian's
//! python3-prometheus-client); its per-real-server counters equal what `ipvsadm -Ln --stats`
//! shows, and every metric the Grafana dashboard queries is in the scrape.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LISTEN: &str = "127.0.0.1:9101";

/// Parses the text with prometheus_client's parser: every sample as (name, labels, value).
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value, fam.type])
print(json.dumps(out))
"#;

type Sample = (String, BTreeMap<String, String>, f64, String);

fn parse(text: &str) -> Vec<Sample> {
    let mut p = Command::new("/usr/bin/python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = p.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "prometheus_client refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn scrape(lab: &Lab) -> String {
    let o = lab.exec(
        "lb",
        &[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "5",
            &format!("http://{LISTEN}/metrics"),
        ],
    );
    assert!(
        o.status.success(),
        "scrape: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// (real server address:port) -> [conns, inpkts, outpkts, inbytes, outbytes] of service `svc`.
fn ipvsadm_reals(out: &str, svc: &str) -> BTreeMap<String, Vec<u64>> {
    let mut m = BTreeMap::new();
    let mut in_svc = false;
    for l in out.lines() {
        let t = l.trim_start();
        if t.starts_with("TCP") || t.starts_with("UDP") {
            in_svc = t.split_whitespace().nth(1) == Some(svc);
        } else if in_svc && t.starts_with("->") {
            let mut w = t.split_whitespace().skip(1);
            let addr = w.next().unwrap().to_string();
            m.insert(addr, w.filter_map(|x| x.parse().ok()).collect());
        }
    }
    m
}

/// The same from the scrape's gateway_backend_*_total samples.
fn scraped_reals(samples: &[Sample], vip: &str, vport: &str) -> BTreeMap<String, Vec<u64>> {
    let names = [
        "gateway_backend_connections_total",
        "gateway_backend_incoming_packets_total",
        "gateway_backend_outgoing_packets_total",
        "gateway_backend_incoming_bytes_total",
        "gateway_backend_outgoing_bytes_total",
    ];
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (name, labels, v, _) in samples {
        let Some(i) = names.iter().position(|n| n == name) else {
            continue;
        };
        if labels["local_address"] != vip || labels["local_port"] != vport {
            continue;
        }
        let k = format!("{}:{}", labels["remote_address"], labels["remote_port"]);
        m.entry(k).or_insert_with(|| vec![0; 5])[i] = *v as u64;
    }
    m
}

#[test]
fn metrics_scraped_under_load_parse_and_match_ipvsadm() {
    // With a TCP health check, so the health metrics have samples too.
    let config = Lab::default_config(&format!("[metrics]\nlisten = \"{LISTEN}\"\n")).replacen(
        "toa = true",
        "toa = true\ncheck = { kind = \"tcp\", interval_ms = 200 }",
        1,
    );
    let lab = Lab::up("mx", &config);
    // Scrapes while wrk opens and closes connections (client ports reused).
    let wrk = lab.spawn_wrk(2, 8, 3);
    let t = Instant::now();
    let mut during = Vec::new();
    while t.elapsed() < Duration::from_millis(2500) {
        during.push(scrape(&lab));
        std::thread::sleep(Duration::from_millis(300));
    }
    let wrk = wrk.wait_with_output().unwrap();
    let (requests, _) = wrk_totals(&String::from_utf8_lossy(&wrk.stdout));
    assert!(requests > 50, "wrk made {requests} requests");
    assert!(during.len() >= 3);
    // Every scrape under load parses, and the connections counter only goes up, and did.
    let created: Vec<f64> = during
        .iter()
        .map(|text| {
            parse(text)
                .iter()
                .find(|s| s.0 == "node_ipvs_connections_total")
                .expect("node_ipvs_connections_total")
                .2
        })
        .collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "{created:?}");
    assert!(
        created.last() > created.first(),
        "counted during the run: {created:?}"
    );

    // The runtime figures: each worker's stages add up to its busy cycles (within 5%), and the
    // packet stages saw wrk's packets.
    let rt = lab.gwctl(&["--json", "runtime"]);
    let rt: serde_json::Value = serde_json::from_str(&rt).unwrap();
    let workers = rt["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{rt}");
    for w in workers {
        let busy = w["busy_cycles"].as_u64().unwrap();
        let stages = w["stages"].as_array().unwrap();
        let sum: u64 = stages.iter().map(|s| s["cycles"].as_u64().unwrap()).sum();
        assert!(busy > 0, "{w}");
        let off = (sum as f64 - busy as f64).abs() / busy as f64;
        assert!(off <= 0.05, "stages {sum} vs busy {busy}: {w}");
        let stage = |n: &str| stages.iter().find(|s| s["stage"] == n).unwrap().clone();
        for n in ["rx", "l2-l3", "lookup", "forward", "tx"] {
            assert!(stage(n)["packets"].as_u64().unwrap() > 0, "{n}: {w}");
            assert!(stage(n)["cycles"].as_u64().unwrap() > 0, "{n}: {w}");
        }
        assert!(stage("timers")["calls"].as_u64().unwrap() > 0, "{w}");
    }
    let table = lab.gwctl(&["runtime"]);
    assert!(
        table.contains("cyc/pkt") && table.contains("forward"),
        "{table}"
    );
    lab.gwctl(&["runtime", "clear"]);
    let rt: serde_json::Value = serde_json::from_str(&lab.gwctl(&["--json", "runtime"])).unwrap();
    // Cleared: only the health checks' few packets since, against wrk's thousands before.
    for (w, before) in rt["workers"].as_array().unwrap().iter().zip(workers) {
        let (now, then) = (
            w["busy_packets"].as_u64().unwrap(),
            before["busy_packets"].as_u64().unwrap(),
        );
        assert!(
            now * 10 < then,
            "{now} packets since the clear, {then} before"
        );
    }

    // Quiet now: the scrape's per-real-server counters equal ipvsadm's (the workers publish every
    // 100 ms; a stray retransmission is waited out by comparing again).
    let mut last = String::new();
    let mut matched = false;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        let stats = lab.ipvsadm(&["-Ln", "--stats", "--exact"]);
        let samples = parse(&scrape(&lab));
        let want = ipvsadm_reals(&stats, "10.10.0.100:80");
        let got = scraped_reals(&samples, "10.10.0.100", "80");
        assert_eq!(want.len(), 2, "{stats}");
        if want == got {
            let conns: u64 = got.values().map(|v| v[0]).sum();
            assert!(
                conns >= requests,
                "{conns} connections for {requests} requests"
            );
            let total = samples
                .iter()
                .find(|s| s.0 == "node_ipvs_connections_total")
                .unwrap()
                .2 as u64;
            assert_eq!(total, conns, "the IPVS total is the sum over real servers");
            matched = true;
            break;
        }
        last = format!("ipvsadm {want:?}\nscrape  {got:?}\n{stats}");
    }
    assert!(matched, "per-real-server counters differ:\n{last}");

    // Types and labels as node_exporter's IPVS collector has them.
    let samples = parse(&scrape(&lab));
    let kind = |n: &str| {
        samples
            .iter()
            .find(|s| s.0 == n)
            .map(|s| s.3.clone())
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(kind("node_ipvs_connections_total"), "counter");
    assert_eq!(kind("node_ipvs_backend_weight"), "gauge");
    let w = samples
        .iter()
        .find(|s| s.0 == "node_ipvs_backend_weight")
        .unwrap();
    let keys: BTreeSet<&str> = w.1.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "local_address",
        "local_port",
        "remote_address",
        "remote_port",
        "proto",
        "local_mark",
    ]
    .into();
    assert_eq!(keys, want);
    assert!(samples
        .iter()
        .any(|s| s.0 == "gateway_rx_packets_total" && s.1["worker"] == "1" && s.2 > 0.0));
    assert!(samples
        .iter()
        .any(|s| s.0 == "gateway_port_rx_packets_total" && s.2 > 0.0));
    assert!(samples
        .iter()
        .any(|s| s.0 == "gateway_stage_cycles_total" && s.1["stage"] == "forward" && s.2 > 0.0));
    let up: Vec<f64> = samples
        .iter()
        .filter(|s| s.0 == "gateway_backend_health_up")
        .map(|s| s.2)
        .collect();
    assert_eq!(up, vec![1.0, 1.0], "both real servers checked and up");

    // Every gateway_ or node_ipvs_ metric the dashboard queries is in the scrape.
    let names: BTreeSet<String> = samples.iter().map(|s| s.0.clone()).collect();
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("conf/grafana/gateway-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    for e in &exprs {
        for name in metric_names(e) {
            assert!(names.contains(&name), "the dashboard queries {name} ({e})");
        }
    }

    // Anything but GET /metrics and / is refused; the endpoint still serves afterwards.
    let o = lab.sh(
        "lb",
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            &format!("http://{LISTEN}/metrics"),
        ],
    );
    assert_eq!(o.trim(), "405");
    assert!(scrape(&lab).contains("node_ipvs_connections_total"));
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The identifiers in a PromQL expression that name our metrics (or node_exporter's IPVS ones).
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("gateway_") || w.starts_with("node_ipvs_"))
        .map(String::from)
        .collect()
}

/// The event log: a follower sees an admin change the moment it runs; a refused change is an
/// event with its reason; the log shows the start, and each event is a log line too.
#[test]
fn events_say_what_changed_and_what_was_refused() {
    let lab = Lab::up("ev", &Lab::default_config(""));
    let follower = Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .args(["--socket", &format!("/run/gateway/{}.sock", lab.name)])
        .args(["events", "--follow", "--count", "2", "--duration", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    lab.ipvsadm(&[
        "-e",
        "-t",
        "10.10.0.100:80",
        "-r",
        "10.20.0.11:80",
        "-w",
        "3",
    ]);
    // Refused: a real server of a service that does not exist.
    let o = Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .arg("ipvsadm")
        .args(["-a", "-t", "10.10.0.99:80", "-r", "10.20.0.11:80"])
        .env("GATEWAY_SOCKET", format!("/run/gateway/{}.sock", lab.name))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let out = follower.wait_with_output().unwrap();
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    // The held events first (the start), then the two new ones.
    let start = lines
        .iter()
        .position(|l| l.contains(" daemon "))
        .expect("start event");
    let new = &lines[start + 1..];
    assert_eq!(new.len(), 2, "{text}");
    assert!(
        new[0].contains(" config ")
            && new[0].contains("running on every worker (1 admin commands)"),
        "{text}"
    );
    assert!(
        new[1].contains(" refused ") && new[1].contains("10.10.0.99"),
        "{text}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the follower ended {took:?} after the change"
    );
    // Times are RFC 3339 UTC; sequence numbers go up.
    let seq = |l: &str| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
    assert!(seq(new[0]) < seq(new[1]));
    assert!(
        new[0].ends_with(')') && new[0].as_bytes()[23] == b'Z',
        "{}",
        new[0]
    );
    // Without --follow: the whole log; --json: one object per line.
    let all = lab.gwctl(&["--json", "events"]);
    let kinds: Vec<String> = all
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("\"daemon\""),
        "{all}"
    );
    assert!(kinds.contains(&"\"refused\"".to_string()), "{all}");
    // The same events are structured log lines.
    let log = lab.log();
    assert!(
        log.contains("gateway::events") && log.contains("kind=\"refused\""),
        "{log}"
    );
}
