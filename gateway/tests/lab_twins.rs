//! End-to-end: kernel twins (issue 10). The gateway's ports have tap twins named `client` and
//! `server` in its namespace; the kernel there is where the box's own services run.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ping(lab: &Lab, node: &str, ip: &str) -> bool {
    lab.exec(node, &["ping", "-c", "1", "-W", "1", ip])
        .status
        .success()
}

/// A `key value` counter of the `punt N:` lines of the stats, summed over workers.
fn punt_counter(stats: &str, key: &str) -> u64 {
    Lab::counter_of(stats, "punt ", key)
}

fn curl_vip(lab: &Lab) -> Option<String> {
    let o = lab.exec("cli", &["curl", "-s", "-m", "2", "http://10.10.0.100/"]);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Runs `cmd` in `node` in the background (killed when the guard goes).
struct Bg(std::process::Child);

impl Bg {
    fn start(lab: &Lab, node: &str, cmd: &[&str]) -> Bg {
        let c = Command::new("ip")
            .args(["netns", "exec", &format!("{}-{node}", lab.name)])
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        Bg(c)
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_kernel_serves_tcp_and_udp_on_the_interface_address_and_addresses_follow_the_kernel() {
    let lab = Lab::up("tk", &Lab::default_config(""));
    // The twins exist in the gateway's namespace with the ports' MACs and the config's addresses.
    for (twin, af, addr) in [
        ("client", "lbc", "10.10.0.1/24"),
        ("server", "lbs", "10.20.0.1/24"),
    ] {
        let link = lab.sh("lb", &["ip", "-o", "addr", "show", "dev", twin]);
        assert!(link.contains(addr), "{twin}: {link}");
        let mac = lab.sh("lb", &["cat", &format!("/sys/class/net/{af}/address")]);
        let twin_mac = lab.sh("lb", &["cat", &format!("/sys/class/net/{twin}/address")]);
        assert_eq!(mac.trim(), twin_mac.trim(), "{twin} has its port's MAC");
    }
    // ping is answered by the datapath, once (the kernel does not answer on lbc).
    let out = lab.sh(
        "cli",
        &["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.10.0.1"],
    );
    assert!(
        out.contains("3 received") && !out.contains("duplicates"),
        "{out}"
    );

    // TCP to the interface address reaches a listener in the gateway's namespace.
    let _tcp = Bg::start(
        &lab,
        "lb",
        &[
            "socat",
            "TCP-LISTEN:2222,reuseaddr,fork",
            "SYSTEM:echo hello-from-the-kernel",
        ],
    );
    let _udp = Bg::start(
        &lab,
        "lb",
        &[
            "socat",
            "UDP-RECVFROM:5353,fork",
            "SYSTEM:echo udp-from-the-kernel",
        ],
    );
    // Both listen before the client sends (a fixed wait lost the race on a loaded CI machine: the
    // datagram came before socat had bound and the kernel refused it).
    for (proto, port) in [("-ltn", "2222"), ("-lun", "5353")] {
        let t = std::time::Instant::now();
        while lab
            .sh("lb", &["ss", "-H", proto, &format!("sport = :{port}")])
            .trim()
            .is_empty()
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nothing listens on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let out = lab.sh("cli", &["socat", "-T", "2", "-", "TCP:10.10.0.1:2222"]);
    assert_eq!(out.trim(), "hello-from-the-kernel");
    let o = Command::new("sh")
        .args([
            "-c",
            &format!(
                "echo hi | ip netns exec {}-cli socat -T 2 - UDP:10.10.0.1:5353",
                lab.name
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "udp-from-the-kernel"
    );

    // An address added to the twin is answered within 100 ms (+ a ping's own time) ...
    assert!(!ping(&lab, "cli", "10.10.0.150"));
    lab.sh(
        "lb",
        &["ip", "addr", "add", "10.10.0.150/32", "dev", "client"],
    );
    let t = Instant::now();
    while !ping(&lab, "cli", "10.10.0.150") {
        assert!(t.elapsed() < Duration::from_secs(3), "{}", lab.log());
    }
    // ... and no longer within 1 s of its removal.
    lab.sh(
        "lb",
        &["ip", "addr", "del", "10.10.0.150/32", "dev", "client"],
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(!ping(&lab, "cli", "10.10.0.150"), "{}", lab.log());

    // The kernel's own address and route changes are what gwctl shows, with their origin.
    let gwctl = env!("CARGO_BIN_EXE_gwctl");
    let sock = format!("/run/gateway/{}.sock", lab.name);
    let addrs = lab.sh("lb", &[gwctl, "-s", &sock, "addrs"]);
    assert!(addrs.contains("10.10.0.1/24 (config_kernel)"), "{addrs}");
    // A kernel neighbour on a twin seeds the datapath's table.
    lab.sh(
        "lb",
        &[
            "ip",
            "neigh",
            "replace",
            "10.20.0.77",
            "lladdr",
            "02:00:00:00:00:77",
            "dev",
            "server",
            "nud",
            "permanent",
        ],
    );
    let t = Instant::now();
    loop {
        let neigh = lab.sh("lb", &[gwctl, "-s", &sock, "neigh"]);
        let seeded = neigh
            .lines()
            .filter(|l| l.starts_with("10.20.0.77 ") && l.contains("02:00:00:00:00:77"))
            .count();
        if seeded == 2 {
            break; // on both workers
        }
        assert!(t.elapsed() < Duration::from_secs(2), "not seeded: {neigh}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let twins = lab.sh("lb", &[gwctl, "-s", &sock, "twins"]);
    assert!(twins.contains("client") && twins.contains("tap"), "{twins}");
    // ARP for the interface address: one reply per request, though the kernel sees (and answers)
    // a copy of every request; it still learns the requester from the copy.
    let _ = lab.exec("lb", &["ip", "neigh", "flush", "dev", "client"]);
    let arping = lab.sh(
        "cli",
        &["arping", "-c", "3", "-w", "5", "-I", "eth0", "10.10.0.1"],
    );
    assert!(arping.contains("Received 3 response(s)"), "{arping}");
    let neigh = lab.sh("lb", &["ip", "neigh", "show", "dev", "client"]);
    assert!(
        neigh.contains("10.10.0.2 "),
        "the kernel learned the client: {neigh}"
    );
    let stats = lab.stats();
    assert!(
        punt_counter(&stats, "kernel_arp_reply_suppressed") >= 1,
        "{stats}"
    );
    assert!(punt_counter(&stats, "punt_local") >= 2, "{stats}");
    assert!(punt_counter(&stats, "punt_arp_copy") >= 1, "{stats}");
    assert!(punt_counter(&stats, "from_kernel") >= 2, "{stats}");
}

#[test]
fn a_kernel_route_reaches_a_real_server_behind_a_router() {
    let lab = Lab::up("tr", &Lab::default_config(""));
    // rs3 on 10.30.0.0/24, reachable only through the router 10.20.0.254.
    let root = repo_root();
    let lab_sh = root.join("scripts/lab.sh");
    let ok = Command::new(&lab_sh)
        .args(["router", &lab.name])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let rs3 = format!("{}-rs3", lab.name);
    let rtr = format!("{}-rtr", lab.name);
    for cmd in [
        format!("ip netns add {rs3}"),
        format!("ip link add eth0 netns {rs3} type veth peer name eth2 netns {rtr}"),
        format!("ip -n {rtr} addr add 10.30.0.254/24 dev eth2"),
        format!("ip -n {rtr} link set eth2 up"),
        format!("ip -n {rs3} link set lo up"),
        format!("ip -n {rs3} addr add 10.30.0.13/24 dev eth0"),
        format!("ip -n {rs3} link set eth0 up"),
        format!("ip -n {rs3} route add default via 10.30.0.254"),
    ] {
        let st = Command::new("sh").args(["-c", &cmd]).status().unwrap();
        assert!(st.success(), "{cmd}");
    }
    let www = lab.run_dir.join("rs3");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "rs3\n").unwrap();
    let _web = Bg::start(
        &lab,
        "rs3",
        &[
            "python3",
            "-m",
            "http.server",
            "80",
            "--directory",
            www.to_str().unwrap(),
        ],
    );
    let gwctl = env!("CARGO_BIN_EXE_gwctl");
    let sock = format!("/run/gateway/{}.sock", lab.name);
    let vip = "10.10.0.120:80";
    let ipvsadm = |args: &[&str]| {
        let mut cmd = vec![gwctl, "-s", sock.as_str(), "ipvsadm"];
        cmd.extend_from_slice(args);
        lab.sh("lb", &cmd);
    };
    ipvsadm(&["-A", "-t", vip, "-s", "rr"]);
    ipvsadm(&["-P", "-t", vip, "-z", "10.20.0.210"]);
    ipvsadm(&["-a", "-t", vip, "-r", "10.30.0.13:80", "-b"]);
    let curl = || {
        let o = lab.exec("cli", &["curl", "-s", "-m", "2", "http://10.10.0.120/"]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(curl(), "", "no route to 10.30.0.0/24 yet");
    let before = Lab::drop_counter(&lab.stats(), "no_route");
    assert!(before > 0, "{}", lab.stats());
    // The route is the kernel's: added on the server twin, it is the datapath's.
    lab.sh(
        "lb",
        &[
            "ip",
            "route",
            "add",
            "10.30.0.0/24",
            "via",
            "10.20.0.254",
            "dev",
            "server",
        ],
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(curl(), "rs3", "{}", lab.log());
    let routes = lab.sh("lb", &[gwctl, "-s", &sock, "routes"]);
    assert!(
        routes.contains("10.30.0.0/24 via 10.20.0.254 port server kernel"),
        "{routes}"
    );
}

#[test]
fn a_kernel_owned_vip_is_served_only_while_the_kernel_holds_it() {
    let base = Lab::default_config("");
    let config = base.replacen("toa = true", "toa = true\nowner = \"kernel\"", 1);
    assert_ne!(config, base);
    let lab = Lab::up("to", &config);
    // Not held: no ARP answer, no ping, no service.
    assert_eq!(
        curl_vip(&lab),
        None,
        "served before the kernel holds the VIP"
    );
    assert!(!ping(&lab, "cli", "10.10.0.100"));
    // Held: the VIP on the twin (what a VRRP daemon does); its LIPs follow it.
    lab.sh(
        "lb",
        &["ip", "addr", "add", "10.10.0.100/32", "dev", "client"],
    );
    let t = Instant::now();
    let page = loop {
        if let Some(p) = curl_vip(&lab) {
            break p;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "{}", lab.log());
    };
    assert!(page == "rs1" || page == "rs2", "{page}");
    assert!(ping(&lab, "cli", "10.10.0.100"));
    // Traffic to the VIP never goes to the kernel, even with the VIP on the twin: a port with
    // no service is dropped by the datapath, not answered with a kernel RST.
    let o = lab.exec(
        "cli",
        &["curl", "-s", "-m", "1", "http://10.10.0.100:8081/"],
    );
    assert_eq!(o.status.code(), Some(28), "a timeout, not a refusal: {o:?}");
    // An established connection keeps working once the VIP is gone; new ones are refused.
    let mut ka = KeepAlive::open(&lab);
    lab.sh(
        "lb",
        &["ip", "addr", "del", "10.10.0.100/32", "dev", "client"],
    );
    std::thread::sleep(Duration::from_millis(500));
    // The client still has the VIP's MAC: its SYN arrives and is refused by the datapath.
    assert_eq!(
        curl_vip(&lab),
        None,
        "served after the kernel dropped the VIP"
    );
    let stats = lab.stats();
    assert!(Lab::drop_counter(&stats, "vip_not_held") > 0, "{stats}");
    assert!(!ka.get().is_empty(), "the established connection goes on");
}

#[test]
fn a_syn_flood_to_the_interface_address_is_rate_limited_while_the_vip_serves() {
    let config = Lab::default_config("[kernel]\npunt_rate = 1000\npunt_burst = 100\n");
    let lab = Lab::up("tf", &config);
    assert!(curl_vip(&lab).is_some());
    // 20000 SYNs at ~10 kpps toward 10.10.0.1:2222 from random sources: bounded in count.
    let flood = Command::new("ip")
        .args(["netns", "exec", &format!("{}-cli", lab.name)])
        .args([
            "timeout", "20", "hping3", "-q", "-S", "-p", "2222", "-i", "u100", "-c", "20000",
        ])
        .args(["--rand-source", "10.10.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut flood = Bg(flood);
    let mut ok = 0;
    for _ in 0..20 {
        if curl_vip(&lab).is_some() {
            ok += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = flood.0.wait();
    let stats = lab.stats();
    assert_eq!(ok, 20, "curl through the VIP during the flood\n{stats}");
    let limited = Lab::drop_counter(&stats, "punt_limited");
    let punted = punt_counter(&stats, "punt_local");
    assert!(limited > 1000, "punt_limited {limited}\n{stats}");
    // Two workers at 1000/s each, plus their bursts, over the flood's few seconds.
    assert!(punted < 2 * (1000 * 20 + 100), "punted {punted}\n{stats}");
}

#[test]
fn no_twin_is_left_after_sigterm_and_a_restart_after_sigkill_cleans_up() {
    let lab = Lab::up("tz", &Lab::default_config(""));
    let pid = lab.pid().unwrap();
    // SIGKILL: the tap queues close with the process, and the kernel removes the twins.
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    while lab
        .exec("lb", &["ip", "link", "show", "client"])
        .status
        .success()
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "twin left after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Another program's tap of the port's name is not ours to remove: the start is refused.
    lab.sh(
        "lb",
        &["ip", "tuntap", "add", "dev", "client", "mode", "tap"],
    );
    let o = Command::new("ip")
        .args(["netns", "exec", &format!("{}-lb", lab.name), &gateway_bin()])
        .arg("--config")
        .arg(lab.run_dir.join("gateway.toml"))
        .args(["--file-prefix", &format!("{}q", lab.name)])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a gateway twin"), "{err}");
    // A stale twin (a tun with the twins' alias that nobody holds, what a crash of a persistent
    // twin would leave) is removed.
    lab.sh(
        "lb",
        &["ip", "link", "set", "client", "alias", "gateway-twin"],
    );
    let log = lab.run_dir.join("restart.log");
    let child = Command::new("ip")
        .args(["netns", "exec", &format!("{}-lb", lab.name), &gateway_bin()])
        .arg("--config")
        .arg(lab.run_dir.join("gateway.toml"))
        .args(["--file-prefix", &format!("{}r", lab.name)])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut gw = Bg(child);
    let t = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("gateway ready") {
            break text;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no restart: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.contains("removing a stale twin"), "{text}");
    assert_eq!(
        curl_vip(&lab).as_deref().map(|p| p == "rs1" || p == "rs2"),
        Some(true)
    );
    // SIGTERM: the twins go with a clean stop.
    Command::new("kill")
        .args(["-TERM", &gw.0.id().to_string()])
        .status()
        .unwrap();
    let _ = gw.0.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("gateway stopped"), "{text}");
    for twin in ["client", "server"] {
        assert!(
            !lab.exec("lb", &["ip", "link", "show", twin])
                .status
                .success(),
            "{twin} left after SIGTERM"
        );
    }
}

/// The twins' tap queues fill their receive rings from the pool when they start (512 mbufs a
/// queue: 2 twins of 2 queues take 2048). A pool they empty used to start and forward nothing,
/// with no counter saying why (af_packet, short of mbufs, leaves frames in its ring): refused at
/// start instead, with the size that would do; the lab's own pool comes up and serves, and a
/// second gateway on its file prefix is refused with a message that says so.
#[test]
fn a_pool_the_twins_rings_would_empty_is_refused_at_start() {
    let config = Lab::default_config("").replacen("mbufs = 8191", "mbufs = 2048", 1);
    assert!(config.contains("mbufs = 2048"));
    let out = Lab::up_refused("tp", &config);
    assert!(
        out.contains("mempool.mbufs: 2048 is too few")
            && out.contains("took 2048 at start, leaving 0 for traffic")
            && out.contains("make it at least"),
        "{out}"
    );
    let lab = Lab::up("tq", &Lab::default_config(""));
    assert!(lab.curl_ok());
    // A second gateway on the running one's file prefix: EAL refuses it without an errno, and
    // the error says what EAL's own lines mean instead of "Success".
    let o = Command::new(gateway_bin())
        .args([
            "--config",
            lab.run_dir.join("gateway.toml").to_str().unwrap(),
        ])
        .args(["--file-prefix", &lab.name])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!(
            "another process runs with file prefix \"{}\"",
            lab.name
        )) && !err.contains("Success"),
        "{err}"
    );
    assert!(lab.curl_ok(), "the running gateway serves on");
}
