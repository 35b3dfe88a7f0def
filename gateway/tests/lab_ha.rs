//! End to end: a primary/backup pair (scripts/lab-ha.sh, issue 12). keepalived (Debian's,
//! unmodified) floats the VIP and the shared LIPs between the gateways' twins; the gateways sync
//! their connections, so established FullNAT connections carry on through a failover, a failback
//! and a keepalived stop, under wrk with keep-alive. A sync message without the key changes
//! nothing. Dual stack, an IPv6 VIP floats with the IPv4 one and its FullNAT connections carry
//! on as well.

mod common;

use common::{gateway_bin, repo_root, unique_name};
use std::process::{Command, Output};

/// An HA lab, removed on drop.
struct Ha {
    name: String,
}

impl Ha {
    fn up(tag: &str, workers: usize) -> Ha {
        Ha::up_with(tag, workers, "")
    }

    /// `extra`: `nopreempt`, or nothing.
    fn up_with(tag: &str, workers: usize, extra: &str) -> Ha {
        Ha::up_env(tag, workers, extra, &[])
    }

    /// Dual stack (`LAB_IPV6=1`): an IPv6 VIP and service besides the IPv4 ones.
    fn up_dual_stack(tag: &str, workers: usize) -> Ha {
        Ha::up_env(tag, workers, "", &[("LAB_IPV6", "1")])
    }

    fn up_env(tag: &str, workers: usize, extra: &str, env: &[(&str, &str)]) -> Ha {
        let lab = Ha {
            name: unique_name(tag),
        };
        let out = Command::new(repo_root().join("scripts/lab-ha.sh"))
            .args(["up", &lab.name, &workers.to_string(), extra])
            .env("GATEWAY_BIN", gateway_bin())
            .envs(env.iter().copied())
            .output()
            .expect("run lab-ha.sh");
        assert!(
            out.status.success(),
            "lab-ha.sh up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new(repo_root().join("scripts/lab-ha.sh"))
            .args(args)
            .env("GATEWAY_BIN", gateway_bin())
            .output()
            .expect("run lab-ha.sh")
    }

    fn logs(&self) -> String {
        (1..=2)
            .map(|k| {
                let dir = format!("/run/gwlab/{}/gw{k}", self.name);
                format!(
                    "--- gateway {k} ---\n{}\n--- keepalived {k} ---\n{}",
                    std::fs::read_to_string(format!("{dir}/gateway.log")).unwrap_or_default(),
                    std::fs::read_to_string(format!("{dir}/keepalived.log"))
                        .unwrap_or_default()
                        .lines()
                        .rev()
                        .take(30)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
            .collect()
    }

    /// gwctl against gateway `k`: (success, stdout + stderr).
    fn gwctl(&self, k: usize, args: &[&str]) -> (bool, String) {
        let bin = std::path::Path::new(&gateway_bin()).with_file_name("gwctl");
        let sock = format!("/run/gateway/{}-gw{k}.sock", self.name);
        let o = Command::new(bin)
            .args(["-s", &sock])
            .args(args)
            .output()
            .expect("gwctl");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    }

    /// Gateway `k`'s sync answer (`gwctl --json sync`).
    fn sync(&self, k: usize) -> serde_json::Value {
        let (ok, out) = self.gwctl(k, &["--json", "sync"]);
        assert!(ok, "gwctl sync on gateway {k}: {out}");
        serde_json::from_str(&out).unwrap()
    }

    /// Runs `failover EVENT`: (longest ping gap in ms, established before, carried on, new), with
    /// the script's output for messages.
    fn failover(&self, event: &str) -> ((u64, u64, u64, u64), String) {
        self.failover_to(event, "")
    }

    /// `failover EVENT` with wrk and ping through the IPv6 VIP (`family` "ipv6") or the IPv4 one
    /// ("").
    fn failover_to(&self, event: &str, family: &str) -> ((u64, u64, u64, u64), String) {
        let out = self.script(&["failover", &self.name, event, family]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "failover {event}: {text}");
        let nums = |prefix: &str| -> Vec<u64> {
            let line = text
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line: {text}"));
            line.split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .map(|w| w.parse().unwrap())
                .collect()
        };
        let gap = nums("takeover:")[0];
        let c = nums("connections:");
        ((gap, c[0], c[1], c[2]), text)
    }

    /// nft in gateway `k`'s namespace, `stdin` its input.
    fn nft(&self, k: usize, args: &[&str], stdin: &str) {
        self.nft_in(&format!("gw{k}"), args, stdin)
    }

    /// nft in the lab's namespace `node` (`gw1`, `cli`, ...), `stdin` its input.
    fn nft_in(&self, node: &str, args: &[&str], stdin: &str) {
        use std::io::Write;
        let mut c = Command::new("ip")
            .args(["netns", "exec", &format!("{}-{node}", self.name), "nft"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nft (scripts/setup.sh installs nftables)");
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn holder(&self) -> String {
        let o = self.script(&["holder", &self.name]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        let _ = self.script(&["down", &self.name]);
    }
}

/// A sync message of one connection record, sealed with `key` (sync/PROTOCOL.md), sent from real
/// server 1 to gateway 2's sync port.
fn forge(lab: &Ha, key_hex: &str, seq: u64) {
    let py = format!(
        r#"
import hmac, hashlib, socket, struct
key = bytes.fromhex("{key_hex}")
ip = lambda s: socket.inet_aton(s)
rec = bytes([1, 6, 0, 1]) + ip("10.10.0.2") + struct.pack(">HH", 5555, 80) + ip("10.10.0.100") \
    + ip("10.20.0.11") + ip("10.20.0.201") + struct.pack(">HHI", 80, 2000, 900000)
head = b"GWSY" + bytes([1, 0]) + struct.pack(">HIQ", 1, 0x0a14000b, {seq})
msg = head + rec
msg += hmac.new(key, msg, hashlib.sha256).digest()[:16]
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(msg, ("10.20.0.2", 8848))
"#
    );
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}-rs1", lab.name),
            "python3",
            "-c",
            &py,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn counter(v: &serde_json::Value, k: &str) -> u64 {
    v["status"][k]
        .as_u64()
        .or_else(|| v["workers"][k].as_u64())
        .unwrap_or_else(|| panic!("no {k} in {v}"))
}

#[test]
fn established_connections_survive_failover_failback_and_a_keepalived_stop() {
    let lab = Ha::up("ha", 2);
    assert_eq!(lab.holder(), "1", "{}", lab.logs());
    let (s1, s2) = (lab.sync(1), lab.sync(2));
    assert_eq!(s1["status"]["role"], "master", "{s1}");
    assert_eq!(s2["status"]["role"], "backup", "{s2}");
    assert_eq!(s2["status"]["peer_layout"], "same", "{s2}");

    // A host on the segment without the key: refused for its MAC, nothing installed. The same
    // message sealed with the key gets past the MAC (then waits for a hello it never sent): the
    // key alone made the difference.
    let before = lab.sync(2);
    forge(&lab, &"ab".repeat(32), 1);
    let key = "67617465776179206861206c6162206b657920666f722074657374696e6721";
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mid = lab.sync(2);
    assert_eq!(
        counter(&mid, "refused_bad_mac"),
        counter(&before, "refused_bad_mac") + 1,
        "{mid}"
    );
    assert_eq!(
        counter(&mid, "sync_installed"),
        counter(&before, "sync_installed")
    );
    forge(&lab, key, 2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = lab.sync(2);
    assert_eq!(
        counter(&after, "refused_layout"),
        counter(&mid, "refused_layout") + 1,
        "{after}"
    );
    assert_eq!(
        counter(&after, "sync_installed"),
        counter(&before, "sync_installed")
    );

    // SIGKILL of the primary's gateway mid-run: the backup takes the VIP and the LIPs within a
    // second, and every established connection carries on (no new ones: none broke).
    let ((gap, est, kept, new), text) = lab.failover("kill");
    eprintln!("kill: gap {gap} ms, {kept} of {est} carried on, {new} new");
    assert_eq!(lab.holder(), "2", "{text}\n{}", lab.logs());
    assert!(gap < 1000, "takeover took {gap} ms: {text}");
    assert_eq!((est, kept, new), (20, 20, 0), "{text}\n{}", lab.logs());
    let s2 = lab.sync(2);
    assert_eq!(s2["status"]["role"], "master", "{s2}");
    assert!(counter(&s2, "sync_installed") >= 20, "{s2}");
    // New connections go to the new master.
    for _ in 0..5 {
        let o = Command::new("ip")
            .args(["netns", "exec", &format!("{}-cli", lab.name)])
            .args(["curl", "-s", "--max-time", "3", "http://10.10.0.100/"])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&o.stdout);
        assert!(
            body.starts_with("rs"),
            "a new connection after the takeover: {body:?}"
        );
    }

    // The gate: a restarted primary is not ready until its peer's resync done has come, and its
    // keepalived (track_script `gwctl sync ready`) stays in FAULT though it preempts. Its kernel
    // drops every resync done here (the only sync message of 44 bytes: UDP length 52).
    let drop_done = "table ip gwlab_drop_done {\n  chain input {\n    type filter hook input priority 0;\n    udp dport 8848 udp length 52 drop\n  }\n}\n";
    lab.nft(1, &["-f", "-"], drop_done);
    let out = lab.script(&["gateway", &lab.name, "1", "start"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(lab.holder(), "2", "took the VIP unresynced\n{}", lab.logs());
    let (ok, out) = lab.gwctl(1, &["sync", "ready"]);
    assert!(
        !ok && out.contains("not ready: waiting for the peer's full resync"),
        "{out}"
    );
    let s1 = lab.sync(1);
    assert_eq!(s1["status"]["role"], "backup", "{s1}");
    assert_eq!(counter(&s1, "resync_done_received"), 0, "{s1}");
    assert!(
        counter(&s1, "sync_installed") >= 20,
        "the records came: {s1}"
    );
    let out = lab.script(&["gateway", &lab.name, "1", "kill"]);
    assert!(out.status.success());
    lab.nft(1, &["delete", "table", "ip", "gwlab_drop_done"], "");

    // Failback: the primary's gateway starts again, resyncs in full as the backup, then its
    // keepalived (priority 150, preempt) takes the VIP back; the connections carry on both ways.
    let ((gap, est, kept, new), text) = lab.failover("failback");
    eprintln!("failback: gap {gap} ms, {kept} of {est} carried on, {new} new");
    assert_eq!(lab.holder(), "1", "{text}\n{}", lab.logs());
    assert_eq!((est, kept, new), (20, 20, 0), "{text}\n{}", lab.logs());
    let s1 = lab.sync(1);
    assert!(counter(&s1, "resync_requests_sent") >= 1, "{s1}");
    assert!(counter(&s1, "resync_done_received") >= 1, "{s1}");
    assert!(counter(&s1, "sync_installed") >= 20, "{s1}");
    assert_eq!(s1["status"]["role"], "master", "{s1}");

    // The primary's keepalived stopped while its gateway runs (VRRP priority 0): the same.
    let ((gap, est, kept, new), text) = lab.failover("keepalived-stop");
    eprintln!("keepalived-stop: gap {gap} ms, {kept} of {est} carried on, {new} new");
    assert_eq!(lab.holder(), "2", "{text}\n{}", lab.logs());
    assert!(gap < 1000, "takeover took {gap} ms: {text}");
    assert_eq!((est, kept, new), (20, 20, 0), "{text}\n{}", lab.logs());
    assert_eq!(lab.sync(1)["status"]["role"], "backup");

    // ipvsadm's sync-daemon commands: the listing, stopping a daemon that does not run (refused),
    // stopping and starting the one that does.
    let (ok, out) = lab.gwctl(1, &["ipvsadm", "-L", "--daemon"]);
    assert!(
        ok && out.starts_with("backup sync daemon (peer=10.20.0.2:8848"),
        "{out}"
    );
    let (ok, out) = lab.gwctl(1, &["ipvsadm", "--stop-daemon", "master"]);
    assert!(!ok && out.contains("no master sync daemon"), "{out}");
    let (ok, out) = lab.gwctl(1, &["ipvsadm", "--stop-daemon", "backup"]);
    assert!(ok, "{out}");
    assert_eq!(lab.sync(1)["status"]["role"], "off");
    assert_eq!(lab.gwctl(1, &["ipvsadm", "-L", "--daemon"]).1, "");
    let (ok, out) = lab.gwctl(1, &["ipvsadm", "--start-daemon", "backup"]);
    assert!(ok, "{out}");
    let s1 = lab.sync(1);
    assert_eq!(
        (s1["status"]["role"].as_str(), s1["status"]["mode"].as_str()),
        (Some("backup"), Some("backup"))
    );
}

#[test]
fn with_nopreempt_a_restarted_primary_stays_the_backup_and_connections_carry_on() {
    let lab = Ha::up_with("hn", 2, "nopreempt");
    assert_eq!(lab.holder(), "1", "{}", lab.logs());
    let ((_, est, kept, new), text) = lab.failover("kill");
    assert_eq!(lab.holder(), "2", "{text}\n{}", lab.logs());
    assert_eq!((est, kept, new), (20, 20, 0), "{text}\n{}", lab.logs());
    // The primary's gateway starts again: its keepalived does not take the VIP back, and the
    // gateway becomes the backup, holding gateway 2's connections after a full resync.
    let ((_, est, kept, new), text) = lab.failover("failback");
    assert_eq!(lab.holder(), "2", "nopreempt: {text}\n{}", lab.logs());
    assert_eq!((est, kept, new), (20, 20, 0), "{text}\n{}", lab.logs());
    let s1 = lab.sync(1);
    assert_eq!(s1["status"]["role"], "backup", "{s1}");
    assert!(counter(&s1, "sync_installed") >= 20, "{s1}");
}

/// The SYN proxy on both boxes (`gwctl synproxy ... on`, as an operator configures the pair
/// alike): wrk's keep-alive connections are proxied, each synced with its sequence translation
/// after its record (`sync_translated` on the backup), and they carry on through a takeover, the
/// new master shifting their segments as the old one did. Without the translation the backup
/// forwarded them unshifted (or, before translation records, did not have them at all).
#[test]
fn proxied_connections_survive_failover() {
    let lab = Ha::up("hp", 2);
    proxied_connections_carry_on(&lab, "10.10.0.100:80", "");
    let (_, proxy) = lab.gwctl(2, &["synproxy"]);
    assert!(proxy.contains("TCP 10.10.0.100:80 on"), "{proxy}");
}

/// With the SYN proxy on for `svc` on both boxes of `lab`, wrk's connections through the VIP of
/// `family` ("" for IPv4, "ipv6") are proxied, synced with their translations (`sync_translated`
/// on the new master), and all 20 carry on through gateway 1's death.
fn proxied_connections_carry_on(lab: &Ha, svc: &str, family: &str) {
    assert_eq!(lab.holder(), "1", "{}", lab.logs());
    for k in [1, 2] {
        let (ok, out) = lab.gwctl(k, &["synproxy", "-t", svc, "on"]);
        assert!(ok, "{out}");
    }
    let ((_, est, kept, new), text) = lab.failover_to("kill", family);
    let s2 = lab.sync(2);
    assert_eq!(lab.holder(), "2", "{text}\n{}", lab.logs());
    assert_eq!(
        (est, kept, new),
        (20, 20, 0),
        "{text}\n{s2}\n{}",
        lab.logs()
    );
    assert!(counter(&s2, "sync_translated") >= 20, "{s2}");
}

/// `proxied_connections_survive_failover` over the IPv6 VIP: wrk's keep-alive connections to
/// `[2001:db8:10::100]:80` are proxied, synced with their IPv6 translation records (`sync6`),
/// and carry on through a takeover.
#[test]
fn ipv6_proxied_connections_survive_failover() {
    let lab = Ha::up_dual_stack("hq", 2);
    proxied_connections_carry_on(&lab, "[2001:db8:10::100]:80", "ipv6");
}

/// The pair shares its SYN cookie key (`[synproxy] key`, as conf/README.md asks and lab-ha.sh
/// configures): a client whose handshake straddles a takeover proves to the new master the
/// cookie the old one sent it. The client's handshake ACK and request are held back in its own
/// namespace (nft) while gateway 1 is killed and gateway 2 takes over; its kernel's
/// retransmission of the request then opens the connection on gateway 2 and is answered. With a
/// key of its own, gateway 2 drops it (`synproxy_bad_cookie`) and curl times out.
#[test]
fn a_handshake_straddling_a_takeover_proves_its_cookie_to_the_new_master() {
    let lab = Ha::up("hk", 1);
    assert_eq!(lab.holder(), "1", "{}", lab.logs());
    for k in [1, 2] {
        let (ok, out) = lab.gwctl(k, &["synproxy", "-t", "10.10.0.100:80", "on"]);
        assert!(ok, "{out}");
    }
    let cli = format!("{}-cli", lab.name);
    // Everything but the SYN toward port 80 stays in the client's namespace.
    lab.nft_in(
        "cli",
        &["-f", "-"],
        "table inet hold { chain out { type filter hook output priority 0; \
         tcp dport 80 tcp flags & syn == 0 drop; }; }",
    );
    let curl = Command::new("ip")
        .args(["netns", "exec", &cli, "curl", "-sS", "--max-time", "45"])
        .arg("http://10.10.0.100/")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    // Gateway `k`'s SYN proxy counters (`gwctl --json synproxy`).
    let proxy = |k: usize| -> serde_json::Value {
        let (ok, out) = lab.gwctl(k, &["--json", "synproxy"]);
        assert!(ok, "{out}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["counters"].clone()
    };
    let sent = |k: usize| proxy(k)["synproxy_cookies_sent"].as_u64().unwrap_or(0);
    let t0 = std::time::Instant::now();
    while sent(1) == 0 && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(sent(1) >= 1, "gateway 1 answered the SYN with a cookie");
    let out = lab.script(&["gateway", &lab.name, "1", "kill"]);
    assert!(out.status.success(), "{out:?}");
    let t0 = std::time::Instant::now();
    while lab.holder() != "2" && t0.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(lab.holder(), "2", "{}", lab.logs());
    lab.nft_in("cli", &["delete", "table", "inet", "hold"], "");
    let o = curl.wait_with_output().unwrap();
    // The counters are published a moment later than the connection opens.
    let t0 = std::time::Instant::now();
    let mut counters = proxy(2);
    while counters["synproxy_cookies_valid"].as_u64().unwrap_or(0) == 0
        && t0.elapsed().as_secs() < 5
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
        counters = proxy(2);
    }
    let body = String::from_utf8_lossy(&o.stdout);
    assert!(
        body.starts_with("rs"),
        "{body}{}\n{counters}",
        String::from_utf8_lossy(&o.stderr)
    );
    let count = |k: &str| counters[k].as_u64().unwrap_or(0);
    assert!(
        count("synproxy_cookies_valid") >= 1 && count("synproxy_cookies_sent") == 0,
        "gateway 2 took the cookie it never sent: {counters}"
    );
}

/// Gateway `k`'s kernel-owned VIPs, each with whether a twin holds it (`gwctl --json twins`).
fn kernel_owned(lab: &Ha, k: usize) -> Vec<(String, bool)> {
    let (ok, out) = lab.gwctl(k, &["--json", "twins"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["kernel_owned"]
        .as_array()
        .unwrap_or_else(|| panic!("no kernel_owned: {v}"))
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_bool().unwrap()))
        .collect()
}

/// An IPv6 VIP (owner "kernel") floated by keepalived with the IPv4 one: served only where a
/// twin holds it, its FullNAT connections synced (IPv6 records) and carried on through a
/// takeover and a failback under wrk, as IPv4's.
#[test]
fn ipv6_connections_survive_failover_and_failback() {
    let lab = Ha::up_dual_stack("h6", 2);
    assert_eq!(lab.holder(), "1", "{}", lab.logs());
    let vip6 = "2001:db8:10::100".to_string();
    assert!(kernel_owned(&lab, 1).contains(&(vip6.clone(), true)));
    assert!(
        kernel_owned(&lab, 2).contains(&(vip6.clone(), false)),
        "the backup does not serve it"
    );
    let curl6 = |lab: &Ha| {
        let o = Command::new("ip")
            .args(["netns", "exec", &format!("{}-cli", lab.name)])
            .args([
                "curl",
                "-sS",
                "--max-time",
                "3",
                "http://[2001:db8:10::100]/",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    };
    let first = curl6(&lab);
    if !first.starts_with("rs") {
        let sh = |ns: &str, cmd: &str| {
            let o = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &format!("{}-{ns}", lab.name),
                    "sh",
                    "-c",
                    cmd,
                ])
                .output()
                .unwrap();
            format!("== {ns}: {cmd}\n{}", String::from_utf8_lossy(&o.stdout))
        };
        let diag = [
            sh("cli", "ip -6 neigh; ip -6 addr"),
            sh("rs1", "ip -6 neigh; ss -tan"),
            sh("rs2", "ip -6 neigh; ss -tan"),
            lab.gwctl(1, &["stats"]).1,
            lab.gwctl(2, &["stats"]).1,
            lab.gwctl(1, &["neigh"]).1,
            curl6(&lab),
        ]
        .join("\n");
        panic!("{first}\n{diag}\n{}", lab.logs());
    }

    let ((gap, est, kept, new), text) = lab.failover_to("kill", "ipv6");
    eprintln!("ipv6 kill: gap {gap} ms, {kept} of {est} carried on, {new} new");
    assert_eq!(lab.holder(), "2", "{text}\n{}", lab.logs());
    assert!(gap < 1000, "takeover took {gap} ms: {text}");
    assert_eq!((est, kept, new), (20, 20, 0), "{text}\n{}", lab.logs());
    assert!(kernel_owned(&lab, 2).contains(&(vip6.clone(), true)));
    assert!(counter(&lab.sync(2), "sync_installed") >= 20);
    for _ in 0..3 {
        let body = curl6(&lab);
        assert!(
            body.starts_with("rs"),
            "a new connection after the takeover: {body:?}"
        );
    }

    // Failback: gateway 1 resyncs in full (the IPv6 table's share too), then takes the VIPs back.
    let ((_, est, kept, new), text) = lab.failover_to("failback", "ipv6");
    eprintln!("ipv6 failback: {kept} of {est} carried on, {new} new");
    assert_eq!(lab.holder(), "1", "{text}\n{}", lab.logs());
    assert_eq!((est, kept, new), (20, 20, 0), "{text}\n{}", lab.logs());
}
