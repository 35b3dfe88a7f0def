//! End-to-end: per-service and per-real-server traffic counters (`ipvsadm --stats`, `--rate`, `-Z`)
//! from a running gateway in the lab, after real traffic.

mod common;
use common::*;
use std::process::Command;

/// The numbers of the line starting with `prefix` (after the address column).
fn row(out: &str, prefix: &str) -> Vec<u64> {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {out}"));
    line.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// `ipvsadm -Z`, then the service's counters read zero.
fn zero_and_check(lab: &Lab) {
    lab.ipvsadm(&["-Z"]);
    let out = lab.ipvsadm(&["-Ln", "--stats", "--exact"]);
    assert_eq!(
        row(&out, "TCP  10.10.0.100:80"),
        vec![0, 0, 0, 0, 0],
        "{out}"
    );
}

#[test]
fn stats_count_connections_packets_and_bytes_per_service_and_real_server() {
    let lab = Lab::up("st", &Lab::default_config(""));
    for _ in 0..10 {
        lab.sh(
            "cli",
            &["curl", "-sf", "--max-time", "5", "http://10.10.0.100/"],
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(400));
    let out = lab.ipvsadm(&["-Ln", "--stats", "--exact"]);
    let svc = row(&out, "TCP  10.10.0.100:80");
    let (rs1, rs2) = (row(&out, "-> 10.20.0.11:80"), row(&out, "-> 10.20.0.12:80"));
    // Conns InPkts OutPkts InBytes OutBytes
    assert_eq!(svc[0], 10, "{out}");
    assert_eq!((rs1[0], rs2[0]), (5, 5), "wrr 1:1: {out}");
    // A curl is at least SYN, ACK, request, FIN in and SYN-ACK, response, FIN out.
    assert!(svc[1] >= 40 && svc[2] >= 30, "{out}");
    assert!(svc[4] > svc[3], "responses are bigger than requests: {out}");
    for i in 0..5 {
        assert_eq!(
            svc[i],
            rs1[i] + rs2[i],
            "service = sum of its servers: {out}"
        );
    }

    // -Z zeroes them; new traffic counts from zero.
    zero_and_check(&lab);
    lab.sh(
        "cli",
        &["curl", "-sf", "--max-time", "5", "http://10.10.0.100/"],
    );
    std::thread::sleep(std::time::Duration::from_millis(400));
    let out = lab.ipvsadm(&["-Ln", "--stats", "--exact"]);
    assert_eq!(row(&out, "TCP  10.10.0.100:80")[0], 1, "{out}");

    // Rates while wrk runs: connections and packets per second are non-zero.
    let wrk = lab.spawn_wrk(1, 4, 4);
    std::thread::sleep(std::time::Duration::from_millis(2600));
    let out = lab.ipvsadm(&["-Ln", "--rate"]);
    let r = row(&out, "TCP  10.10.0.100:80");
    assert!(
        r[0] > 0 && r[1] > 0 && r[2] > 0,
        "CPS, InPPS, OutPPS while loaded: {out}"
    );
    let _ = wrk.wait_with_output();

    // A real server removed: its traffic stays its service's, as IPVS keeps a service's
    // counters (they fell by rs2's share, which a Prometheus counter reads as a reset); -Z
    // zeroes it with the rest.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let before = row(
        &lab.ipvsadm(&["-Ln", "--stats", "--exact"]),
        "TCP  10.10.0.100:80",
    );
    assert!(before[0] > 10, "{before:?}");
    lab.ipvsadm(&["-d", "-t", "10.10.0.100:80", "-r", "10.20.0.12:80"]);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let out = lab.ipvsadm(&["-Ln", "--stats", "--exact"]);
    assert!(!out.contains("10.20.0.12"), "{out}");
    assert_eq!(row(&out, "TCP  10.10.0.100:80"), before, "{out}");
    assert!(row(&out, "-> 10.20.0.11:80")[0] < before[0], "{out}");
    zero_and_check(&lab);
}

#[test]
fn set_changes_the_timeouts_on_every_worker() {
    let lab = Lab::up("so", &Lab::default_config(""));
    assert_eq!(
        lab.ipvsadm(&["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    lab.ipvsadm(&["--set", "60", "0", "20"]);
    assert_eq!(
        lab.ipvsadm(&["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 60 120 20\n"
    );
    // The connection listing shows an established connection expiring within the new timeout.
    let mut child = Command::new("ip")
        .args(["netns", "exec", &format!("{}-cli", lab.name), "python3", "-c",
               "import socket,time\ns=socket.create_connection(('10.10.0.100',80))\ns.send(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\ns.recv(1000)\ntime.sleep(3)"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let conns = lab.ipvsadm(&["-Lnc"]);
    let line = conns
        .lines()
        .find(|l| l.contains("ESTABLISHED"))
        .unwrap_or_else(|| panic!("{conns}"));
    // "TCP 00:59  ESTABLISHED ..." : minutes:seconds left.
    let left = line.split_whitespace().nth(1).unwrap();
    let (m, s) = left.split_once(':').unwrap();
    let secs: u32 = m.parse::<u32>().unwrap() * 60 + s.parse::<u32>().unwrap();
    assert!((50..=60).contains(&secs), "{line}");
    let _ = child.wait();
    // A bad value is refused by the daemon (sent through the protocol, past gwctl's own parser)
    // and changes nothing.
    let o = Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .args([
            "--socket",
            &format!("/run/gateway/{}.sock", lab.name),
            "raw",
            r#"{"op":"set_timeouts","tcp":9999999,"tcpfin":0,"udp":30}"#,
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("over the limit") && out.contains("\"ok\":false"),
        "{out}"
    );
    assert_eq!(
        lab.ipvsadm(&["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 60 120 20\n"
    );
}
