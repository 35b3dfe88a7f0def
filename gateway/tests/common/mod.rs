//! Lab harness for end-to-end tests: each test builds its own uniquely named namespaces with
//! scripts/lab.sh, runs the real `gateway` binary in them, and removes everything on drop, even when
//! the test fails.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The gateway binary the labs run: this build's, or `GATEWAY_TEST_BIN` (e.g. a release build, to
/// take figures with the same tests).
pub fn gateway_bin() -> String {
    std::env::var("GATEWAY_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gateway").to_string())
}

/// A name no other test (or concurrent run) uses: short, because interface-free but still.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("{tag}{}x{n}", std::process::id() % 100000)
}

pub struct Lab {
    pub name: String,
    pub run_dir: PathBuf,
    up: bool,
}

/// The pause before an iperf3 client run that follows another on the same server: iperf3's
/// server closes and reopens its listening socket after each test, and a client's connection
/// queued on the closing one is reset ("unable to connect to server: Connection refused", from
/// the server, not the gateway; esnet/iperf pull request 2066). The pull request found 25 ms
/// enough; 300 ms covers a loaded 2-core machine.
pub const IPERF3_GAP: Duration = Duration::from_millis(300);

impl Lab {
    /// Brings a lab up with `config` (TOML text). Panics with the gateway's log if it fails.
    pub fn up(tag: &str, config: &str) -> Lab {
        let (mut lab, ok, text) = Lab::try_up(tag, config);
        if !ok {
            lab.down();
            panic!("lab.sh up failed:\n{text}");
        }
        lab
    }

    /// Tries to bring a lab up with `config`, which the gateway must refuse at start: returns what
    /// lab.sh printed (the gateway's error among it). The lab is removed either way.
    pub fn up_refused(tag: &str, config: &str) -> String {
        let (lab, ok, text) = Lab::try_up(tag, config);
        drop(lab);
        assert!(!ok, "the lab came up:\n{text}");
        text
    }

    /// `lab.sh up` with `config` under a fresh name: the lab (to remove), whether it came up,
    /// and what lab.sh printed.
    fn try_up(tag: &str, config: &str) -> (Lab, bool, String) {
        let name = unique_name(tag);
        std::fs::create_dir_all("/run/gwlab").unwrap();
        let cfg_path = PathBuf::from(format!("/run/gwlab/{name}.toml"));
        std::fs::write(&cfg_path, config).unwrap();
        let lab = Lab {
            name: name.clone(),
            run_dir: PathBuf::from(format!("/run/gwlab/{name}")),
            up: true,
        };
        let out = Command::new(repo_root().join("scripts/lab.sh"))
            .args(["up", &name, cfg_path.to_str().unwrap()])
            .env("GATEWAY_BIN", gateway_bin())
            .output()
            .expect("run lab.sh");
        let _ = std::fs::remove_file(&cfg_path);
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (lab, out.status.success(), text)
    }

    /// The default lab config (conf/lab.toml) with extra TOML appended.
    pub fn default_config(extra: &str) -> String {
        let base = std::fs::read_to_string(repo_root().join("conf/lab.toml")).unwrap();
        format!("{base}\n{extra}")
    }

    /// conf/lab.toml without its services, followed by `services` (TOML).
    pub fn config_with_services(services: &str) -> String {
        let base = std::fs::read_to_string(repo_root().join("conf/lab.toml")).unwrap();
        let cut = base
            .find("\n[[service]]")
            .expect("conf/lab.toml has a [[service]]");
        let head = &base[..cut];
        let head = head.rsplit_once("\n#").map(|(h, _)| h).unwrap_or(head);
        format!("{head}\n{services}")
    }

    /// Replaces the running gateway's config file and sends SIGHUP; waits until the log says the new
    /// generation runs on every worker (or panics with the log).
    pub fn reload(&self, config: &str, generation: u64) {
        std::fs::write(self.run_dir.join("gateway.toml"), config).unwrap();
        Command::new("kill")
            .args(["-HUP", &self.pid().unwrap().to_string()])
            .status()
            .unwrap();
        let want = format!("generation {generation} running on every worker");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            let log = self.log();
            if log.contains(&want) {
                return;
            }
            if log.contains("config reload refused") {
                panic!("reload refused:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("generation {generation} not acknowledged:\n{}", self.log());
    }

    /// Starts `args` in one of the lab's namespaces (its standard output piped), at most 20 s.
    pub fn spawn(&self, node: &str, args: &[&str]) -> std::process::Child {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{}-{node}", self.name),
                "timeout",
                "20",
            ])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Whether one curl from the client namespace to the VIP gets a 2xx within 3 s.
    pub fn curl_ok(&self) -> bool {
        let args = [
            "curl",
            "-sf",
            "-o",
            "/dev/null",
            "--max-time",
            "3",
            "http://10.10.0.100/",
        ];
        self.exec("cli", &args).status.success()
    }

    /// wrk from the client namespace to the VIP with `Connection: close` (client ports reused).
    pub fn spawn_wrk(&self, threads: u32, conns: u32, secs: u32) -> std::process::Child {
        let (t, c, d) = (
            format!("-t{threads}"),
            format!("-c{conns}"),
            format!("-d{secs}s"),
        );
        let args = [
            "wrk",
            &t,
            &c,
            &d,
            "--header",
            "Connection: close",
            "http://10.10.0.100/",
        ];
        self.spawn("cli", &args)
    }

    /// Starts (`run`) or stops real server `rs`'s nginx, as `scripts/lab.sh` configured it.
    pub fn nginx(&self, rs: &str, run: bool) {
        let dir = self.run_dir.join(rs);
        if run {
            let conf = dir.join("nginx.conf");
            self.sh(rs, &["nginx", "-c", conf.to_str().unwrap()]);
        } else {
            let pid = std::fs::read_to_string(dir.join("nginx.pid")).unwrap();
            let pid = pid.trim();
            Command::new("kill").arg(pid).status().unwrap();
            // SIGTERM only asks: until the master has exited its listening socket still completes
            // handshakes (then resets them), so "stopped" is when its process is gone. A health
            // test once counted a request started 4 ms after `kill` returned as one the server
            // refused after it had died.
            // A zombie (state Z in /proc/PID/stat, after the command name's ')') has exited.
            let running = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit(')').next().and_then(|r| r.trim().chars().next()) != Some('Z')
                })
            };
            let t = Instant::now();
            while running() && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(!running(), "nginx {pid} still running 5 s after SIGTERM");
        }
    }

    /// Real server `rs`'s line in `gwctl health`, `rs` written as before its `:PORT` there
    /// (`10.20.0.11`, `[2001:db8:20::11]`); empty if it has none.
    pub fn health_of(&self, rs: &str) -> String {
        self.gwctl(&["health"])
            .lines()
            .find(|l| l.contains(&format!(" {rs}:")))
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (at most `limit`) until `rs`'s health line contains `want`; returns how long it took.
    pub fn wait_health(&self, rs: &str, want: &str, limit: Duration) -> Duration {
        let t = Instant::now();
        loop {
            let line = self.health_of(rs);
            if line.contains(want) {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < limit,
                "{rs} not {want:?} after {limit:?}: {line}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most `limit`) until `ipvsadm -Ln` shows real server `endpoint` (`ADDR:PORT`, as
    /// ipvsadm writes it) at weight `weight`: the workers run the generation with it.
    pub fn wait_weight(&self, endpoint: &str, weight: &str, limit: Duration) {
        let t = Instant::now();
        loop {
            let list = self.gwctl(&["ipvsadm", "-Ln"]);
            let line = list
                .lines()
                .find(|l| l.contains(&format!("{endpoint} ")))
                .unwrap_or_default();
            if line.split_whitespace().nth(3) == Some(weight) {
                return;
            }
            assert!(
                t.elapsed() < limit,
                "{endpoint} not at weight {weight} after {limit:?}: {list}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `gwctl ARGS` against this lab's gateway; its standard output (panics on failure).
    pub fn gwctl(&self, args: &[&str]) -> String {
        self.admin(&[], args)
    }

    /// `ipvsadm ARGS` (gwctl's ipvsadm) against this lab's gateway; its standard output.
    pub fn ipvsadm(&self, args: &[&str]) -> String {
        self.admin(&["ipvsadm"], args)
    }

    /// hping3 from the client: SYNs to VIP:80 from random spoofed sources, flat out, for `secs`.
    pub fn spawn_syn_flood(&self, secs: u32) -> std::process::Child {
        self.spawn_syn_flood_every(secs, "--flood")
    }

    /// The same, one SYN every `interval` (hping3's `-i`: `u100` is every 100 us), or flat out
    /// (`--flood`).
    pub fn spawn_syn_flood_every(&self, secs: u32, interval: &str) -> std::process::Child {
        let secs = secs.to_string();
        let pace: &[&str] = match interval {
            "--flood" => &["--flood"],
            i => &["-i", i],
        };
        let mut args = vec!["timeout", &secs, "hping3", "-q", "-S", "-p", "80"];
        args.extend_from_slice(pace);
        args.extend_from_slice(&["--rand-source", "10.10.0.100"]);
        self.spawn("cli", &args)
    }

    /// An iperf3 server on `node`, port 5201, as a daemon (`down` kills it with the namespace's
    /// other processes).
    pub fn start_iperf3_server(&self, node: &str) {
        let pid = self.run_dir.join("iperf3.pid");
        let args = [
            "iperf3",
            "-s",
            "-D",
            "-p",
            "5201",
            "-I",
            pid.to_str().unwrap(),
        ];
        self.sh(node, &args);
        std::thread::sleep(Duration::from_millis(300));
    }

    /// `gwctl ARGS` whatever its outcome (for refusals).
    pub fn admin_output(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gwctl"))
            .env("GATEWAY_SOCKET", format!("/run/gateway/{}.sock", self.name))
            .args(args)
            .output()
            .unwrap()
    }

    fn admin(&self, first: &[&str], args: &[&str]) -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_gwctl"))
            .env("GATEWAY_SOCKET", format!("/run/gateway/{}.sock", self.name))
            .args(first)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "gwctl {first:?} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs a command in one of the lab's namespaces (cli, lb, sw, rs1, rs2).
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-{node}", self.name)])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// Like `exec`, asserting success; returns stdout.
    pub fn sh(&self, node: &str, args: &[&str]) -> String {
        let o = self.exec(node, args);
        assert!(
            o.status.success(),
            "{node}: {args:?} failed: {}\n{}\n--- gateway log ---\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("gateway.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.run_dir.join("gateway.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The counters the gateway last wrote (refreshed five times a second).
    pub fn stats(&self) -> String {
        std::thread::sleep(Duration::from_millis(450));
        std::fs::read_to_string(self.run_dir.join("stats.txt")).unwrap_or_default()
    }

    /// Sum of a `key value` counter over every `worker` line of the stats.
    pub fn worker_counter(&self, stats: &str, key: &str) -> u64 {
        stats
            .lines()
            .filter(|l| l.starts_with("worker "))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                while let Some(w) = it.next() {
                    if w == key {
                        return it.next()?.parse::<u64>().ok();
                    }
                }
                None
            })
            .sum()
    }

    /// Sum of a `key value` counter over every `conn` line (the connection engines) of the stats.
    pub fn conn_counter(stats: &str, key: &str) -> u64 {
        Self::counter_of(stats, "conn ", key)
    }

    /// Sum of a `key value` counter over every line of the stats starting with `prefix`
    /// (`conn `, `punt `, `neigh `).
    pub fn counter_of(stats: &str, prefix: &str, key: &str) -> u64 {
        stats
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                it.find(|w| *w == key)?;
                it.next()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// A `drop <reason> <n>` counter (0 if absent).
    pub fn drop_counter(stats: &str, reason: &str) -> u64 {
        stats
            .lines()
            .filter_map(|l| l.strip_prefix("drop "))
            .filter_map(|l| l.split_once(' '))
            .find(|(r, _)| *r == reason)
            .and_then(|(_, n)| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sends SIGTERM to the gateway and waits (up to `limit`) for it to exit. True if it exited.
    pub fn terminate_gateway(&self, limit: Duration) -> bool {
        let Some(pid) = self.pid() else { return false };
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let t = Instant::now();
        while t.elapsed() < limit {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn down(&mut self) {
        if self.up {
            self.up = false;
            let _ = Command::new(repo_root().join("scripts/lab.sh"))
                .args(["down", &self.name])
                .output();
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
        .unwrap_or(true)
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// A keep-alive HTTP client to VIP:80 in the client namespace (python3's http.client): one request
/// when opened, one more on the same TCP connection per `get`.
pub struct KeepAlive {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    /// The body of the first response (the page names the real server).
    pub first: String,
}

const KEEPALIVE_PY: &str = r#"
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=5)
def get():
    c.request("GET", "/")
    r = c.getresponse()
    print(r.read().decode().strip(), flush=True)
get()
for _ in sys.stdin:
    get()
"#;

impl KeepAlive {
    pub fn open(lab: &Lab) -> KeepAlive {
        KeepAlive::open_at(lab, "10.10.0.100")
    }

    /// A keep-alive connection to `vip`:80 (an IPv6 one written bare: `2001:db8:10::100`).
    pub fn open_at(lab: &Lab, vip: &str) -> KeepAlive {
        use std::io::BufRead;
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{}-cli", lab.name),
                "python3",
                "-c",
                KEEPALIVE_PY,
                vip,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        KeepAlive {
            child,
            lines,
            first,
        }
    }

    /// Opens connections (at most `tries`) until one is served by `server`.
    pub fn open_to(lab: &Lab, server: &str, tries: usize) -> Option<KeepAlive> {
        (0..tries)
            .map(|_| KeepAlive::open(lab))
            .find(|k| k.first == server)
    }

    /// Another request on the same connection; the response body.
    pub fn get(&mut self) -> String {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin).unwrap();
        stdin.flush().unwrap();
        self.lines.next().and_then(|l| l.ok()).unwrap_or_default()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lab {
    /// `n` sequential curls to the VIP from the client; one response body (or FAIL) per line.
    pub fn curls(&self, n: usize) -> String {
        let script = format!(
            "for i in $(seq 1 {n}); do curl -sf --max-time 5 http://10.10.0.100/ || echo FAIL; done"
        );
        self.sh("cli", &["sh", "-c", &script])
    }
}

/// wrk with `Connection: close` (every request a new connection, client ports reused) to `url`
/// from the client for `secs` seconds, 2 threads, 32 connections: (requests, errors, output).
pub fn wrk_close(lab: &Lab, url: &str, secs: u32) -> (u64, u64, String) {
    let d = format!("-d{secs}s");
    let out = lab.sh(
        "cli",
        &[
            "timeout",
            "30",
            "wrk",
            "-t2",
            "-c32",
            "--timeout",
            "3s",
            &d,
            "-H",
            "Connection: close",
            url,
        ],
    );
    let (requests, errors) = wrk_totals(&out);
    (requests, errors, out)
}

/// Requests and errors of a wrk run (its summary), panicking on an output it cannot read.
pub fn wrk_totals(out: &str) -> (u64, u64) {
    let requests = out
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .map(|(n, _)| n.trim().parse::<u64>().unwrap())
        .unwrap_or_else(|| panic!("no wrk summary in:\n{out}"));
    // "Socket errors: connect 0, read 0, write 0, timeout 0" and "Non-2xx or 3xx responses: N".
    let mut errors = 0;
    for l in out.lines() {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        if let Some(n) = l.strip_prefix("Non-2xx or 3xx responses:") {
            errors += n.trim().parse::<u64>().unwrap();
        }
    }
    (requests, errors)
}

/// `scripts/lab.sh <args>` for this lab (router, rs), asserting success.
pub fn lab_sh(lab: &Lab, args: &[&str]) {
    let mut a = vec![args[0], lab.name.as_str()];
    a.extend_from_slice(&args[1..]);
    let out = Command::new(repo_root().join("scripts/lab.sh"))
        .args(&a)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lab.sh {a:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// tcpdump in a namespace writing `file`; stopped (SIGINT) by `stop`.
pub fn capture(lab: &Lab, node: &str, dev: &str, file: &std::path::Path, filter: &str) -> Child {
    let mut c = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}-{node}", lab.name),
            "tcpdump",
            "-i",
            dev,
            "--immediate-mode",
            "-U",
            "-n",
            "-s",
            "0",
            "-w",
        ])
        .arg(file)
        .arg(filter)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // tcpdump says "listening on DEV" once its capture is open: from then on every packet reaches
    // the file. A fixed 800 ms was not always enough on a loaded machine (CI at 411df2d: a TUN
    // test's capture missed the frag-needed sent as its upload began, which the client had
    // acted on). The thread drains the rest (tcpdump's counts at exit).
    let stderr = c.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("tcpdump listening within 10 s");
    c
}

pub fn stop(mut c: Child) {
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .args(["-INT", &c.id().to_string()])
        .status()
        .unwrap();
    let _ = c.wait();
}

pub fn frames(file: &std::path::Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(file).expect("capture file");
    let mut r = pcap_file::pcap::PcapReader::new(&data[..]).expect("pcap header");
    let mut out = Vec::new();
    while let Some(Ok(p)) = r.next_packet() {
        out.push(p.data.into_owned());
    }
    out
}

/// A client in the lab that asks the VIP (`argv`: family 4 or 6, VIP, port) for a page over a
/// keep-alive connection, learns from its own captured frames the next sequence number it expects
/// of the server (as the gateway shifted it, with a SYN proxy), and sends the VIP the error a
/// router on its side would: IPv4 "fragmentation needed" with a next-hop MTU of 1300 (RFC 1191),
/// IPv6 "packet too big" with an MTU of 1280 (RFC 4443 3.2), quoting the server's next segment as
/// the client would receive it (its IP header and the first 8 bytes of TCP). The connection stays
/// open a second for the error to reach the server; prints the client's port.
pub const TOO_BIG_CLIENT: &str = r#"
import socket, struct, sys, time
v6, vip, port = sys.argv[1] == '6', sys.argv[2], int(sys.argv[3])
af = socket.AF_INET6 if v6 else socket.AF_INET
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD if v6 else 0x0800))
sniff.bind(('eth0', 0))
s = socket.socket(af, socket.SOCK_STREAM)
s.settimeout(5)
s.connect((vip, port))
cport = s.getsockname()[1]
s.sendall(b'GET / HTTP/1.1\r\nHost: lab\r\n\r\n')
data = b''
while b'\r\n\r\n' not in data:
    data += s.recv(65536)
head, body = data.split(b'\r\n\r\n', 1)
length = [int(l.split(b':')[1]) for l in head.split(b'\r\n') if l.lower().startswith(b'content-length:')][0]
while len(body) < length:
    body += s.recv(65536)
time.sleep(0.2)
sniff.setblocking(False)
vip_bytes = socket.inet_pton(af, vip)
nxt = None
while True:
    try:
        f = sniff.recv(65536)
    except BlockingIOError:
        break
    if v6:
        ip, l4 = f[14:54], f[54:]
        if ip[6] != 6 or ip[8:24] != vip_bytes:
            continue
        plen = struct.unpack('!H', ip[4:6])[0]
    else:
        hl = (f[14] & 15) * 4
        ip, l4 = f[14:14 + hl], f[14 + hl:]
        if ip[9] != 6 or ip[12:16] != vip_bytes:
            continue
        plen = struct.unpack('!H', ip[2:4])[0] - hl
    sport, dport, seq = struct.unpack('!HHI', l4[:8])
    if (sport, dport) != (port, cport):
        continue
    flags = l4[13]
    nxt = (seq + plen - (l4[12] >> 4) * 4 + (flags & 3 != 0)) & 0xFFFFFFFF
assert nxt is not None, 'no segment of the server captured'
mine = socket.inet_pton(af, s.getsockname()[0])
tcp8 = struct.pack('!HHI', port, cport, nxt)
if v6:
    quoted = struct.pack('!IHBB', 6 << 28, 1460, 6, 64) + vip_bytes + mine + tcp8
    msg = struct.pack('!BBHI', 2, 0, 0, 1280) + quoted
    e = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
else:
    def csum(b):
        b += b'\0' * (len(b) & 1)
        t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
        while t >> 16:
            t = (t & 0xFFFF) + (t >> 16)
        return ~t & 0xFFFF
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 1500, 0, 0x4000, 64, 6, 0, vip_bytes, mine)
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    msg = struct.pack('!BBHHH', 3, 4, 0, 0, 1300) + ip + tcp8
    msg = msg[:2] + struct.pack('!H', csum(msg)) + msg[4:]
    e = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
e.sendto(msg, (vip, 0))
time.sleep(1)
print(cport)
"#;

/// Whether a real server's kernel keeps a path MTU of `mtu` toward `dst` (`ip route get`: a
/// route exception learned from an ICMP error).
pub fn learned_mtu(lab: &Lab, node: &str, dst: &str, mtu: u32) -> bool {
    let out = lab.sh(node, &["ip", "route", "get", dst]);
    out.contains(&format!("mtu {mtu}"))
}

/// Runs [`TOO_BIG_CLIENT`] against `vip`:`port` of `family` ("4" or "6") and asserts that
/// exactly one real server's kernel learned the error's path MTU (`mtu`: 1300 for IPv4, 1280
/// for IPv6) toward one of the local addresses `lips`, and none before; on failure, each
/// server's count of errors its TCP ignored as out of window. Returns the gateway's stats.
pub fn assert_server_learns_the_clients_mtu(
    lab: &Lab,
    (family, vip, port): (&str, &str, &str),
    lips: &[&str],
    mtu: u32,
) -> String {
    let learned = || {
        let mut out = Vec::new();
        for rs in ["rs1", "rs2"] {
            for lip in lips {
                if learned_mtu(lab, rs, lip, mtu) {
                    out.push(format!("{rs} -> {lip}"));
                }
            }
        }
        out
    };
    assert!(learned().is_empty());
    let args = [
        "timeout",
        "30",
        "python3",
        "-c",
        TOO_BIG_CLIENT,
        family,
        vip,
        port,
    ];
    let out = lab.sh("cli", &args);
    let stats = lab.stats();
    let got = learned();
    let nstat = |rs| lab.sh(rs, &["nstat", "-az", "TcpExtOutOfWindowIcmps"]);
    assert_eq!(
        got.len(),
        1,
        "one server learned the client's path MTU: {got:?} (client port {})\n{}{}\n{stats}",
        out.trim(),
        nstat("rs1"),
        nstat("rs2")
    );
    stats
}
