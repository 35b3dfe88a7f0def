//! End-to-end: a UDP service receiving fragmented datagrams (issue 17, item 4). Clients send
//! datagrams of up to 8000 bytes to VIP:7; the kernel fragments them at the 1500-byte MTU; the
//! gateway forwards each fragment FullNAT to a real server's UDP echo service, whose kernel
//! reassembles the datagram, echoes it (fragmented again), and the client reassembles the answer.
//!
//! The ports run on DPDK's pcap driver here, not af_packet: on af_packet the datagram reached the
//! gateway already reassembled by the kernel and cut to the frame (dropped as
//! `ipv4_bad_total_len`), as a fanout group with `PACKET_FANOUT_FLAG_DEFRAG` does. The pcap driver
//! has one queue, hence one worker; tests/fragments.rs covers fragments across 1 to 4 workers.

mod common;
use common::*;

/// conf/lab.toml's ports on the pcap driver with one worker, and a UDP echo service on VIP:7.
fn config() -> String {
    let base = Lab::config_with_services(
        r#"
[[service]]
vip = "10.10.0.100"
port = 7
protocol = "udp"
scheduler = "rr"
local_addresses = ["10.20.0.200", "10.20.0.201"]
[[service.real]]
address = "10.20.0.11"
[[service.real]]
address = "10.20.0.12"
"#,
    );
    let cfg = base
        .replace("count = 2\n", "count = 1\n")
        .replace("cpus = [0, 1]", "cpus = [1]")
        .replace(
            "net_af_packet0,iface=lbc,qpairs=2,framecnt=4096",
            "net_pcap0,iface=lbc",
        )
        .replace(
            "net_af_packet1,iface=lbs,qpairs=2,framecnt=4096",
            "net_pcap1,iface=lbs",
        );
    assert!(
        cfg.contains("net_pcap1") && cfg.contains("count = 1\n"),
        "{cfg}"
    );
    cfg
}

/// A UDP echo server on port 7 (`Lab::spawn` stops it after 20 s).
const ECHO: &str = "import socket,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
s.bind(('0.0.0.0',7)); s.settimeout(1)
end=time.time()+20
while time.time()<end:
    try: d,a=s.recvfrom(65535)
    except socket.timeout: continue
    s.sendto(d,a)
";

/// Sends 10 datagrams of each size from one socket, each answered before the next; prints how
/// many came back intact.
const CLIENT: &str = "import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)
ok=0
for n in (1400,3000,5000,8000):
    for k in range(10):
        d=bytes((i*31+k+n) % 251 for i in range(n))
        for attempt in range(3):
            s.sendto(d,('10.10.0.100',7))
            try:
                r,_=s.recvfrom(65535)
                if r==d: ok+=1
                break
            except socket.timeout: pass
print(ok)
";

#[test]
fn fragmented_udp_datagrams_cross_the_vip_both_ways() {
    let lab = Lab::up("fr", &config());
    let _echo: Vec<_> = ["rs1", "rs2"]
        .iter()
        .map(|rs| lab.spawn(rs, &["python3", "-c", ECHO]))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = lab.sh("cli", &["timeout", "60", "python3", "-c", CLIENT]);
    let stats = lab.stats();
    assert_eq!(out.trim(), "40", "every datagram echoed intact\n{stats}");
    let frag = |k: &str| Lab::counter_of(&stats, "frag ", k);
    // 30 fragmented datagrams each way (the 1400-byte ones are not fragmented), each answered
    // once; a retransmission would add more.
    assert!(frag("first") >= 60, "{stats}");
    assert_eq!(frag("completed"), frag("first"), "{stats}");
    for reason in [
        "frag_table_full",
        "frag_held_full",
        "frag_timeout",
        "frag_first_dropped",
        "ip_fragment",
    ] {
        assert_eq!(Lab::drop_counter(&stats, reason), 0, "{reason}\n{stats}");
    }
}

/// The same with IPv6 (`inet6::frag6`): the dual-stack lab (`scripts/lab.sh ipv6`), a UDP echo
/// service on the IPv6 VIP in FullNAT from IPv6 local addresses; the client's kernel fragments
/// its datagrams (RFC 8200 fragment headers), the real servers' kernels reassemble and answer in
/// fragments too.
#[test]
fn fragmented_ipv6_udp_datagrams_cross_the_vip_both_ways() {
    let services = r#"
[[service]]
vip = "2001:db8:10::100"
port = 7
protocol = "udp"
scheduler = "rr"
local_addresses = ["2001:db8:20::200", "2001:db8:20::201"]
[[service.real]]
address = "2001:db8:20::11"
[[service.real]]
address = "2001:db8:20::12"
"#;
    let cfg = gateway::testkit::dual_stack(&config()) + services;
    let lab = Lab::up("fr6", &cfg);
    lab_sh(&lab, &["ipv6"]);
    let echo6 = ECHO
        .replace("AF_INET,", "AF_INET6,")
        .replace("'0.0.0.0'", "'::'");
    let _echo: Vec<_> = ["rs1", "rs2"]
        .iter()
        .map(|rs| lab.spawn(rs, &["python3", "-c", &echo6]))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let client6 = CLIENT
        .replace("AF_INET,", "AF_INET6,")
        .replace("('10.10.0.100',7)", "('2001:db8:10::100',7)");
    let out = lab.sh("cli", &["timeout", "60", "python3", "-c", &client6]);
    let stats = lab.stats();
    assert_eq!(out.trim(), "40", "every datagram echoed intact\n{stats}");
    let frag = |k: &str| Lab::counter_of(&stats, "frag ", k);
    assert!(frag("first") >= 60, "{stats}");
    assert!(frag("followed") >= 60, "{stats}");
    for reason in [
        "frag_table_full",
        "frag_held_full",
        "frag_timeout",
        "frag_first_dropped",
        "ipv6_fragment",
    ] {
        assert_eq!(Lab::drop_counter(&stats, reason), 0, "{reason}\n{stats}");
    }
}
