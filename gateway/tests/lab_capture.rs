//! End-to-end: `gwctl capture` on a running gateway in the lab, while curl goes through the FullNAT
//! VIP. The files are read back by tcpdump (every frame passes the filter) and by pcap-file (both
//! directions are marked; on the server port the gateway sends from its LIPs); bad requests are
//! refused by gwctl or the daemon with a message, and leave nothing running.

mod common;
use common::*;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 100);
const LIPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 20, 0, 200), Ipv4Addr::new(10, 20, 0, 201)];
const RIPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 20, 0, 11), Ipv4Addr::new(10, 20, 0, 12)];

fn gwctl_cmd(lab: &Lab, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gwctl"));
    c.args(["--socket", &format!("/run/gateway/{}.sock", lab.name)])
        .args(args);
    c
}

fn gwctl(lab: &Lab, args: &[&str]) -> Output {
    gwctl_cmd(lab, args).output().unwrap()
}

/// A capture running in the background; killed if the test fails before it ends.
struct Bg(Option<Child>);

impl Bg {
    fn start(lab: &Lab, args: &[&str], file: &Path) -> Bg {
        let child = gwctl_cmd(lab, &["capture"])
            .args(args)
            .arg("-w")
            .arg(file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut bg = Bg(Some(child));
        // gwctl writes the file's header once the daemon says the capture runs.
        let t = Instant::now();
        while std::fs::metadata(file).map_or(0, |m| m.len()) == 0 {
            if let Ok(Some(_)) = bg.0.as_mut().unwrap().try_wait() {
                let o = bg.wait();
                panic!(
                    "capture {args:?} ended before starting: {}\n{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "capture {args:?} did not start\n{}",
                lab.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        bg
    }

    fn running(&mut self) -> bool {
        matches!(self.0.as_mut().unwrap().try_wait(), Ok(None))
    }

    fn signal(&self, sig: &str) {
        let pid = self.0.as_ref().unwrap().id().to_string();
        Command::new("kill").args([sig, &pid]).status().unwrap();
    }

    /// Waits (at most 20 s, then kills it) for gwctl to exit.
    fn wait(&mut self) -> Output {
        let mut child = self.0.take().unwrap();
        let t = Instant::now();
        while matches!(child.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Each Enhanced Packet Block's `epb_flags` direction bits (pcapng 4.3.1: 1 in, 2 out) and bytes.
fn read_pcapng(file: &Path) -> Vec<(u32, Vec<u8>)> {
    let bytes = std::fs::read(file).unwrap();
    let mut r = PcapNgReader::new(&bytes[..]).expect("a pcapng file");
    let mut out = Vec::new();
    while let Some(b) = r.next_block() {
        if let Block::EnhancedPacket(e) = b.expect("a valid block") {
            let flags = e
                .options
                .iter()
                .find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) => Some(*f),
                    _ => None,
                })
                .expect("epb_flags on every frame");
            out.push((flags & 3, e.data.to_vec()));
        }
    }
    out
}

/// (source, destination, source port, destination port) of a TCP/IPv4 Ethernet frame.
fn tcp4(f: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    assert_eq!(&f[12..14], &[8, 0], "IPv4: {f:02x?}");
    assert_eq!(f[23], 6, "TCP: {f:02x?}");
    let ip = |o: usize| Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
    let l4 = 14 + usize::from(f[14] & 15) * 4;
    let port = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
    (ip(26), ip(30), port(l4), port(l4 + 2))
}

/// `tcpdump -r FILE -nn [FILTER]`: its packet lines.
fn tcpdump(file: &Path, filter: &[&str]) -> Vec<String> {
    let o = Command::new("tcpdump")
        .arg("-r")
        .arg(file)
        .arg("-nn")
        .args(filter)
        .output()
        .expect("tcpdump (scripts/setup.sh installs it)");
    assert!(
        o.status.success(),
        "tcpdump -r {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Runs curls through the VIP (each must succeed) until the capture ends, at most `max`.
fn curl_until_done(lab: &Lab, bg: &mut Bg, max: usize) -> usize {
    let mut n = 0;
    while bg.running() && n < max {
        lab.sh(
            "cli",
            &["curl", "-sf", "--max-time", "5", "http://10.10.0.100/"],
        );
        n += 1;
    }
    n
}

fn refused(o: &Output, what: &str, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains(needle),
        "{what}: expected a failure mentioning {needle:?}, got {:?}: {err}",
        o.status
    );
}

#[test]
fn capture_records_both_directions_through_fullnat_and_refuses_bad_requests() {
    let lab = Lab::up("cap", &Lab::default_config(""));
    let dir: PathBuf = lab.run_dir.clone();
    let file = |n: &str| dir.join(n);

    // Bad requests: each refused with a message, nothing left behind, nothing started.
    let bad = file("bad.pcapng");
    let bad_s = bad.to_str().unwrap();
    let o = gwctl(
        &lab,
        &[
            "capture",
            "--port",
            "client",
            "--filter",
            "tcp port 80 and (",
            "-w",
            bad_s,
        ],
    );
    refused(&o, "bad filter", "syntax error");
    assert!(!bad.exists(), "a refused capture leaves no file");
    let o = gwctl(&lab, &["capture", "--port", "nope", "-w", bad_s]);
    refused(&o, "unknown port", "unknown port \"nope\"");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("client") && err.contains("server"),
        "names the ports: {err}"
    );
    assert!(!bad.exists());
    let o = gwctl(&lab, &["capture", "--port", "client", "-w", "/proc/x/y"]);
    refused(&o, "unwritable file", "cannot write /proc/x/y");
    let o = gwctl(&lab, &["capture", "-w", bad_s]);
    assert_eq!(o.status.code(), Some(2), "no --port is a usage error");
    assert!(!bad.exists());

    // The client port: rx (client -> VIP, before rewriting) and tx (VIP -> client, after).
    let cli = file("client.pcapng");
    let mut bg = Bg::start(
        &lab,
        &[
            "--port",
            "client",
            "--count",
            "100",
            "--filter",
            "tcp port 80",
        ],
        &cli,
    );
    // One capture at a time.
    let second = file("second.pcapng");
    let o = gwctl(
        &lab,
        &[
            "capture",
            "--port",
            "server",
            "-w",
            second.to_str().unwrap(),
        ],
    );
    refused(&o, "a second capture", "already running");
    assert!(!second.exists());
    // Frames the filter rejects: pings to the port's address.
    lab.sh(
        "cli",
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.10.0.1"],
    );
    let curls = curl_until_done(&lab, &mut bg, 60);
    let o = bg.wait();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "capture: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("100 frames written"),
        "after {curls} curls: {out}"
    );
    assert!(out.contains("; 0 not copied"), "{out}");
    if std::env::var_os("CAPTURE_SHOW").is_some() {
        eprintln!("{out}{}", tcpdump(&cli, &[]).join("\n"));
    }

    assert_eq!(tcpdump(&cli, &[]).len(), 100);
    assert_eq!(
        tcpdump(&cli, &["not (tcp port 80)"]),
        Vec::<String>::new(),
        "every frame passes the filter"
    );
    let filtered: u64 = out
        .split("; ")
        .find_map(|p| p.strip_suffix(" filtered out\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        filtered >= 6,
        "the pings and their replies were filtered out: {out}"
    );
    let frames = read_pcapng(&cli);
    assert_eq!(frames.len(), 100);
    let (ins, outs): (Vec<_>, Vec<_>) = frames.iter().partition(|(d, _)| *d == 1);
    assert!(!ins.is_empty() && !outs.is_empty(), "both directions");
    assert!(outs.iter().all(|(d, _)| *d == 2));
    for (_, f) in &ins {
        let (_, dst, _, dport) = tcp4(f);
        assert_eq!(
            (dst, dport),
            (VIP, 80),
            "received from the client, to the VIP"
        );
    }
    for (_, f) in &outs {
        let (src, _, sport, _) = tcp4(f);
        assert_eq!((src, sport), (VIP, 80), "sent to the client, from the VIP");
    }

    // The server port, ended by Ctrl-C: the gateway sends from its LIPs to the real servers
    // (after rewriting) and receives their replies to the LIPs.
    let srv = file("server.pcapng");
    let mut bg = Bg::start(
        &lab,
        &[
            "--port",
            "server",
            "--count",
            "100000",
            "--filter",
            "tcp port 80",
        ],
        &srv,
    );
    let body = lab.curls(4);
    assert!(
        !body.contains("FAIL"),
        "traffic flows during a capture: {body}"
    );
    std::thread::sleep(Duration::from_millis(300));
    bg.signal("-INT");
    let o = bg.wait();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "capture ended by Ctrl-C: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let frames = read_pcapng(&srv);
    if std::env::var_os("CAPTURE_SHOW").is_some() {
        eprintln!("{out}{}", tcpdump(&srv, &[]).join("\n"));
    }
    assert!(
        out.contains(&format!("{} frames written", frames.len())),
        "{out}"
    );
    assert!(
        frames.len() >= 4 * 6,
        "four connections' worth: {}",
        frames.len()
    );
    assert_eq!(tcpdump(&srv, &[]).len(), frames.len());
    assert!(tcpdump(&srv, &["not (tcp port 80)"]).is_empty());
    let mut directions = [0; 3];
    for (d, f) in &frames {
        directions[*d as usize] += 1;
        let (src, dst, sport, dport) = tcp4(f);
        if *d == 2 {
            assert!(
                LIPS.contains(&src) && RIPS.contains(&dst) && dport == 80,
                "tx toward a real server comes from a LIP: {src}:{sport} -> {dst}:{dport}"
            );
        } else {
            assert!(
                RIPS.contains(&src) && LIPS.contains(&dst) && sport == 80,
                "rx from a real server goes to a LIP: {src}:{sport} -> {dst}:{dport}"
            );
        }
    }
    assert!(directions[1] > 0 && directions[2] > 0, "{directions:?}");

    // Ctrl-C freed the slot: another capture starts at once, and --duration ends it.
    let all = file("all.pcapng");
    let t = Instant::now();
    let o = gwctl(
        &lab,
        &[
            "capture",
            "--port",
            "client",
            "--duration",
            "1",
            "-w",
            all.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&o.stdout).contains("frames written"));
    tcpdump(&all, &[]);
}
