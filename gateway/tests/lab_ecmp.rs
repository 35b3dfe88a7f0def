//! End to end: several active gateways behind a router running BIRD with ECMP (scripts/lab-ecmp.sh,
//! issue 13). Each gateway announces the VIP over BGP (its own BIRD, through its kernel twin) while
//! it serves it; `mh` makes every gateway pick the same real server for a flow, and DR flows that
//! move to another gateway carry on there (`sloppy_tcp`).

mod common;

use common::{gateway_bin, repo_root, unique_name, wrk_totals};
use std::io::{BufRead, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const VIP: &str = "10.99.0.100";
/// The IPv6 VIP of a dual-stack lab (`LAB_IPV6=1`).
const VIP6: &str = "2001:db8:99::100";

/// An ECMP lab of `n` gateways, removed on drop.
struct Ecmp {
    name: String,
    n: usize,
}

impl Ecmp {
    fn up(tag: &str, n: usize) -> Ecmp {
        Ecmp::up_with(tag, n, false)
    }

    /// A lab with `ipv6`: dual stack, VIP6 announced beside VIP (lab-ecmp.sh's `LAB_IPV6=1`).
    fn up_with(tag: &str, n: usize, ipv6: bool) -> Ecmp {
        let lab = Ecmp {
            name: unique_name(tag),
            n,
        };
        let dual = if ipv6 { "1" } else { "0" };
        let out = lab.script_with(&["up", &lab.name, &n.to_string()], &[("LAB_IPV6", dual)]);
        assert!(
            out.status.success(),
            "lab-ecmp.sh up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn script(&self, args: &[&str]) -> Output {
        self.script_with(args, &[])
    }

    fn script_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(repo_root().join("scripts/lab-ecmp.sh"))
            .args(args)
            .env("GATEWAY_BIN", gateway_bin())
            .envs(env.iter().copied())
            .output()
            .expect("run lab-ecmp.sh")
    }

    fn exec(&self, node: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-{node}", self.name)])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    fn sh(&self, node: &str, script: &str) -> String {
        let o = self.exec(node, &["sh", "-c", script]);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    fn log(&self, k: usize) -> String {
        std::fs::read_to_string(format!("/run/gwlab/{}/gw{k}/gateway.log", self.name))
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        (1..=self.n)
            .map(|k| format!("--- gateway {k} ---\n{}", self.log(k)))
            .collect()
    }

    /// gwctl against gateway `k`; stdout, or a panic with stderr.
    fn gwctl(&self, k: usize, args: &[&str]) -> String {
        let bin = std::path::Path::new(&gateway_bin()).with_file_name("gwctl");
        let sock = format!("/run/gateway/{}-gw{k}.sock", self.name);
        let o = Command::new(bin)
            .args(["-s", &sock])
            .args(args)
            .output()
            .expect("gwctl");
        assert!(
            o.status.success(),
            "gwctl {args:?} on gateway {k}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Gateway `k`'s counter `name`, summed over its workers (which publish five times a
    /// second: the figure is read after that).
    fn counter(&self, k: usize, name: &str) -> u64 {
        std::thread::sleep(Duration::from_millis(450));
        let v: serde_json::Value =
            serde_json::from_str(&self.gwctl(k, &["--json", "stats"])).unwrap();
        v["total"]["counters"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name}"))
    }

    /// Connections gateway `k` created.
    fn created(&self, k: usize) -> u64 {
        self.counter(k, "conns_created")
    }

    /// The next hops of the router's route to the VIP.
    fn paths(&self) -> Vec<String> {
        self.paths_to(VIP)
    }

    /// The next hops of the router's route to `vip`, of either family.
    fn paths_to(&self, vip: &str) -> Vec<String> {
        let family = if vip.contains(':') { "-6" } else { "-4" };
        let out = self.exec("rtr", &["ip", family, "route", "show", vip]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect()
    }

    /// Waits (at most `limit`) until the router has `n` paths to the VIP; how long it took.
    fn wait_paths(&self, n: usize, limit: Duration) -> Option<Duration> {
        self.wait_paths_to(VIP, n, limit)
    }

    /// Waits (at most `limit`) until the router has `n` paths to `vip`; how long it took.
    fn wait_paths_to(&self, vip: &str, n: usize, limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if self.paths_to(vip).len() == n {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn gateway_pid(&self, k: usize) -> i32 {
        std::fs::read_to_string(format!("/run/gwlab/{}/gw{k}/gateway.pid", self.name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Ecmp {
    fn drop(&mut self) {
        let _ = self.script(&["down", &self.name]);
    }
}

#[test]
fn flows_spread_over_the_gateways_and_a_vip_without_servers_is_withdrawn() {
    let lab = Ecmp::up("ecsp", 2);
    let mut paths = lab.paths();
    paths.sort();
    assert_eq!(
        paths,
        ["10.10.0.11", "10.10.0.12"],
        "both gateways announce the VIP"
    );
    // Short connections (new client ports each) through FullNAT.
    let out = lab.sh(
        "cli",
        &format!("timeout 30 wrk -t2 -c20 -d3s -H 'Connection: close' http://{VIP}/"),
    );
    let (requests, errors) = wrk_totals(&out);
    assert_eq!(errors, 0, "{out}");
    let created: Vec<u64> = (1..=2).map(|k| lab.created(k)).collect();
    let total: u64 = created.iter().sum();
    assert!(total >= requests, "{created:?} for {requests} requests");
    for (k, c) in created.iter().enumerate() {
        assert!(
            *c * 2 * 3 > total,
            "gateway {} created {c} of {total} connections: less than a third of its fair share",
            k + 1
        );
    }
    // Every real server of gateway 2 at weight 0: it withdraws the VIP; then back.
    let weights = |w: &str| {
        for port in ["80", "8080"] {
            for rs in ["10.20.0.11", "10.20.0.12"] {
                let target = format!("{VIP}:{port}");
                let real = if port == "80" {
                    rs.to_string()
                } else {
                    format!("{rs}:8080")
                };
                lab.gwctl(2, &["ipvsadm", "-e", "-t", &target, "-r", &real, "-w", w]);
            }
        }
    };
    weights("0");
    assert!(
        lab.wait_paths(1, Duration::from_secs(10)).is_some(),
        "gateway 2 still announced with no server up: {:?}\n{}",
        lab.paths(),
        lab.gwctl(2, &["announce"])
    );
    assert_eq!(lab.paths(), ["10.10.0.11"]);
    assert!(lab
        .gwctl(2, &["announce"])
        .contains("withheld: no real server up"));
    weights("1");
    assert!(
        lab.wait_paths(2, Duration::from_secs(10)).is_some(),
        "not announced again: {}",
        lab.gwctl(2, &["announce"])
    );
}

/// IPv6 beside IPv4 (`LAB_IPV6=1`): each gateway keeps VIP6's /128 blackhole route in the IPv6
/// half of its announce table, BIRD announces it over an IPv6 session, and the router spreads
/// IPv6 flows over both; a drain of VIP6 withdraws it alone.
#[test]
fn an_ipv6_vip_is_announced_spread_and_drained_beside_the_ipv4_one() {
    let lab = Ecmp::up_with("ecv6", 2, true);
    let mut paths = lab.paths_to(VIP6);
    paths.sort();
    assert_eq!(
        paths,
        ["2001:db8:10::11", "2001:db8:10::12"],
        "both gateways announce VIP6"
    );
    assert_eq!(lab.paths().len(), 2, "and VIP");
    let route = |k: usize| lab.sh(&format!("gw{k}"), "ip -6 route show table 100 proto 250");
    assert!(
        route(1).contains(&format!("blackhole {VIP6}")),
        "{}",
        route(1)
    );
    let created6 = |k: usize| lab.counter(k, "ipv6_conns_created");
    // Short connections from new client ports: every one answered, both gateways take a share.
    let curls = |n: usize| {
        lab.sh(
            "cli",
            &format!(
                "for i in $(seq 1 {n}); do curl -s --max-time 3 -o /dev/null \
                 -w '%{{http_code}}\n' 'http://[{VIP6}]/'; done"
            ),
        )
    };
    let before = [created6(1), created6(2)];
    let out = curls(40);
    assert_eq!(out.lines().filter(|l| *l == "200").count(), 40, "{out}");
    let took = [created6(1) - before[0], created6(2) - before[1]];
    assert!(
        took.iter().all(|&c| c > 0) && took.iter().sum::<u64>() >= 40,
        "IPv6 connections by gateway: {took:?}"
    );
    // Drain VIP6 on gateway 1: the router keeps gateway 2's IPv6 path and both IPv4 ones.
    let shown = lab.gwctl(1, &["drain", VIP6, "--timeout", "5"]);
    assert!(
        shown.contains(&format!("{VIP6} withheld: draining")),
        "{shown}"
    );
    assert!(
        lab.wait_paths_to(VIP6, 1, Duration::from_secs(10))
            .is_some(),
        "the router kept gateway 1 for VIP6: {:?}",
        lab.paths_to(VIP6)
    );
    assert_eq!(lab.paths_to(VIP6), ["2001:db8:10::12"]);
    assert!(!route(1).contains(VIP6), "{}", route(1));
    assert_eq!(lab.paths().len(), 2, "VIP's paths stay: {:?}", lab.paths());
    let before = created6(1);
    let out = curls(20);
    assert_eq!(out.lines().filter(|l| *l == "200").count(), 20, "{out}");
    assert_eq!(
        created6(1),
        before,
        "gateway 1 took IPv6 flows while withdrawn"
    );
    lab.gwctl(1, &["undrain", VIP6]);
    assert!(
        lab.wait_paths_to(VIP6, 2, Duration::from_secs(10))
            .is_some(),
        "VIP6 not announced again: {}",
        lab.gwctl(1, &["announce"])
    );
}

#[test]
fn a_drain_under_load_withdraws_without_a_failed_request() {
    let lab = Ecmp::up("ecdr", 2);
    // Established connections, checked across the drain (wrk does not count a connection that
    // stalls as an error).
    let mut established = Clients::open(&lab, 16, VIP);
    let first = established.round();
    assert!(!first.contains("FAIL"), "{first}");
    // Two loads on the DR service: short connections and keep-alive ones, 8 s each.
    let spawn = |extra: &str| {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-cli", lab.name), "sh", "-c"])
            .arg(format!(
                "timeout 40 wrk -t1 -c10 -d8s {extra} http://{VIP}:8080/ 2>&1"
            ))
            .stdout(Stdio::piped())
            .spawn()
            .expect("wrk")
    };
    let short = spawn("-H 'Connection: close'");
    let keep = spawn("");
    std::thread::sleep(Duration::from_secs(2));
    let before = lab.created(1);
    let t = Instant::now();
    let shown = lab.gwctl(1, &["drain", "--timeout", "4"]);
    assert!(shown.contains("withheld: draining"), "{shown}");
    let withdrawn = lab
        .wait_paths(1, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the router kept gateway 1: {:?}", lab.paths()));
    assert_eq!(lab.paths(), ["10.10.0.12"]);
    eprintln!("drain: the router withdrew gateway 1 after {withdrawn:?}");
    for (what, child) in [("short", short), ("keep-alive", keep)] {
        let out = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
        let (requests, errors) = wrk_totals(&out);
        eprintln!("drain, {what} connections:\n{out}");
        assert!(requests > 100, "{what}: {out}");
        assert_eq!(
            errors,
            0,
            "{what} requests failed across the drain:\n{out}\n{}",
            lab.logs()
        );
    }
    assert!(before > 0, "gateway 1 served before the drain");
    for i in 0..3 {
        assert_eq!(
            established.round(),
            first,
            "round {i} after the drain\n{}",
            lab.logs()
        );
    }
    eprintln!(
        "drain: gateway 2 took {} flows over mid-connection (sloppy_created)",
        lab.counter(2, "sloppy_created")
    );
    // The drain ends (connections gone or at its 4 s deadline), and the VIP stays withdrawn.
    let deadline = t + Duration::from_secs(10);
    loop {
        let shown = lab.gwctl(1, &["announce"]);
        if shown.contains("drain every VIP: drained") {
            break;
        }
        assert!(Instant::now() < deadline, "the drain never ended: {shown}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(lab.paths(), ["10.10.0.12"]);
    // Undrained, it is announced again and serves.
    lab.gwctl(1, &["undrain"]);
    assert!(lab.wait_paths(2, Duration::from_secs(10)).is_some());
    let n = lab.created(1);
    let out = lab.sh(
        "cli",
        &format!("timeout 30 wrk -t1 -c10 -d2s -H 'Connection: close' http://{VIP}:8080/"),
    );
    assert_eq!(wrk_totals(&out).1, 0, "{out}");
    assert!(lab.created(1) > n, "gateway 1 takes connections again");
}

#[test]
fn a_killed_gateway_is_withdrawn_and_new_connections_succeed() {
    let lab = Ecmp::up("eckl", 2);
    let pid = lab.gateway_pid(1);
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    // BFD (100 ms x 3) says it first; BGP's hold time (3 s) is the fallback.
    let took = lab
        .wait_paths(1, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the router kept the killed gateway: {:?}", lab.paths()));
    eprintln!("kill: the router withdrew gateway 1 after {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(lab.paths(), ["10.10.0.12"]);
    let out = lab.sh(
        "cli",
        &format!("for i in $(seq 1 30); do curl -sf --max-time 3 http://{VIP}/ || echo FAIL; done"),
    );
    assert!(!out.contains("FAIL"), "{out}\n{}", lab.logs());
    assert_eq!(out.lines().count(), 30, "{out}");
    // It comes back: the table's stale route is removed at start and announced again.
    let out = lab.script(&["gateway", &lab.name, "1", "start"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lab
        .log(1)
        .contains("left in table 100 by an earlier run, withdrawn"));
    assert!(
        lab.wait_paths(2, Duration::from_secs(20)).is_some(),
        "the restarted gateway is not announced: {:?}",
        lab.paths()
    );
    // A clean stop withdraws first, while it still forwards ([announce] withdraw_wait_ms).
    Command::new("kill")
        .args(["-TERM", &lab.gateway_pid(2).to_string()])
        .status()
        .unwrap();
    let took = lab
        .wait_paths(1, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the stopped gateway is still announced: {:?}", lab.paths()));
    eprintln!("SIGTERM: the router withdrew gateway 2 after {took:?}");
    assert_eq!(lab.paths(), ["10.10.0.11"]);
    assert!(
        lab.log(2).contains("every VIP withdrawn; forwarding"),
        "{}",
        lab.log(2)
    );
}

/// Keep-alive HTTP connections to a VIP's port 8080 from the client (argv: how many, the VIP),
/// each on its own port: a line on stdin makes one request on every connection; the answer is a
/// line of the bodies ("rs1 rs2 ..."), or "FAIL:<error>" for a connection that failed.
const KEEPALIVE_PY: &str = r#"
import http.client, sys
conns = [http.client.HTTPConnection(sys.argv[2], 8080, timeout=4) for _ in range(int(sys.argv[1]))]
def get(c):
    try:
        c.request("GET", "/")
        return c.getresponse().read().decode().strip()
    except Exception as e:
        return "FAIL:" + type(e).__name__
for _ in sys.stdin:
    print(" ".join(get(c) for c in conns), flush=True)
"#;

/// `KEEPALIVE_PY` running in the client's namespace.
struct Clients {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Clients {
    /// `n` connections to `vip`:8080.
    fn open(lab: &Ecmp, n: usize, vip: &str) -> Clients {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-cli", lab.name)])
            .args(["python3", "-c", KEEPALIVE_PY, &n.to_string(), vip])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Clients { child, lines }
    }

    /// One request on every connection: the bodies, or FAIL for the ones that failed.
    fn round(&mut self) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin).unwrap();
        stdin.flush().unwrap();
        self.lines.next().unwrap().unwrap()
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dr_flows_keep_their_real_server_when_their_gateway_leaves() {
    let lab = Ecmp::up("ecka", 2);
    dr_flows_keep_their_real_server(&lab, VIP, "conns_created");
}

/// IPv6 DR behind the same ECMP router (`LAB_IPV6=1`): the real servers hold VIP6 and answer
/// through the router, and gateway 2 takes gateway 1's IPv6 flows over mid-connection as it takes
/// IPv4's.
#[test]
fn ipv6_dr_flows_keep_their_real_server_when_their_gateway_leaves() {
    let lab = Ecmp::up_with("ecd6", 2, true);
    dr_flows_keep_their_real_server(&lab, VIP6, "ipv6_conns_created");
}

/// Sixteen keep-alive connections to `vip`:8080 (DR, `mh` with `mh-port`) spread over the two
/// gateways (`created`: the family's counter of connections created), each answered by one real
/// server every round; gateway 1 killed, its flows reach gateway 2 mid-connection, which forwards
/// each to the real server gateway 1 picked (`sloppy_tcp`), and every connection goes on.
fn dr_flows_keep_their_real_server(lab: &Ecmp, vip: &str, created: &str) {
    let mut clients = Clients::open(lab, 16, vip);
    let first = clients.round();
    assert!(!first.contains("FAIL"), "{first}");
    let served_by_1 = lab.counter(1, created);
    let served_by_2 = lab.counter(2, created);
    assert!(
        served_by_1 > 0 && served_by_2 > 0,
        "the 16 connections did not spread: {served_by_1} and {served_by_2}"
    );
    assert_eq!(clients.round(), first, "each connection keeps its server");
    Command::new("kill")
        .args(["-KILL", &lab.gateway_pid(1).to_string()])
        .status()
        .unwrap();
    assert!(lab.wait_paths_to(vip, 1, Duration::from_secs(5)).is_some());
    // Gateway 1's flows now reach gateway 2 mid-connection: it forwards each to the real server
    // that gateway 1 picked, and the connection goes on.
    let sloppy_before = lab.counter(2, "sloppy_created");
    for i in 0..3 {
        let now = clients.round();
        assert_eq!(now, first, "round {i} after gateway 1 left\n{}", lab.logs());
    }
    let sloppy = lab.counter(2, "sloppy_created");
    assert_eq!(
        sloppy - sloppy_before,
        served_by_1,
        "gateway 2 takes over each of gateway 1's flows with sloppy_tcp"
    );
}
