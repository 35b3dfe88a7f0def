//! Deterministic cost of the DPDK-free datapath (issue 16): `datapath_cost SCENARIO N` does a
//! setup, then N operations of one kind; `perf/cost.sh` runs it under Valgrind's callgrind at two
//! values of N, so that the difference divided by the difference of N is one operation's cost in
//! instructions (and simulated cache misses), whatever the setup cost.
//!
//! Scenarios:
//! - `established-1k`, `established-1m`: a client's ACK on an established FullNAT connection
//!   picked at random among 1K or 1M (the frame rewritten from a template, as the criterion bench
//!   does: `benches/datapath.rs`);
//! - `established-burst-1k`, `established-burst-1m`: the same ACKs as a worker receives them, in
//!   bursts of 32 through `process_burst_timed` (the batched, prefetching lookup and the
//!   established fast path's verdict slots); `ack-frames-burst` (`-1m`) only writes and moves
//!   those bursts' frames, to subtract (`established-burst-net`, `established-burst-net-1m`);
//! - `syn`: a SYN that opens a new connection, its frame built from the template (two checksums);
//! - `frames`: only building those SYN frames, to subtract from `syn`;
//! - `syn-rss`, `syn6-rss`: `syn` and `syn6` with the local port chosen for RSS steering (DPDK's
//!   default key, a 128-entry RETA), as on a PCI NIC, where the replies' queue decides the port;
//! - `ack-frames`: only picking and writing the frames of `established-1k`, to subtract from it
//!   (`established-net`: the datapath's own instructions per established packet);
//!   `ack-frames-1m` the same for `established-1m`, whose random pick of a flow among 1M misses
//!   the cache too (`established-net-1m`: the datapath's own cache misses at 1M connections);
//! - `handshake`: a whole connection as a client and a real server open it (issue 16's connection
//!   rate): the client's SYN with Linux's options (MSS, SACK permitted, timestamps, window scale),
//!   the server's SYN-ACK with the same, the client's ACK with timestamps; TOA inserted on the SYN
//!   and on the ACK, as the bench's service has it. `handshake-frames` only builds those frames,
//!   to subtract (`handshake-net`: the datapath's own instructions per connection opened);
//! - `lifecycle`: `handshake`, then the rest of a short connection as wrk with `Connection:
//!   close` makes one against nginx: the client's request (100 bytes), the server's answer (200
//!   bytes) and FIN, the client's ACK and FIN, the server's last ACK: nine packets, the
//!   connection left in the table as the last ACK leaves it (its expiry is `expire`'s);
//!   `lifecycle-frames` only builds those frames, to subtract (`lifecycle-net`);
//!   `lifecycle-burst` the same through the burst pipeline, as a worker meets short connections:
//!   32 connections at a time, each of their nine packets a burst (the 32 SYNs, then the 32
//!   SYN-ACKs, ...), and `lifecycle-frames-burst` only builds and copies those frames
//!   (`lifecycle-burst-net`);
//! - `ts-plain`, `ts-proxied`: one connection with timestamps, without and with the SYN proxy
//!   (issue 21); an operation is two packets, a client ACK and a server data segment, so that
//!   `ts-proxied` minus `ts-plain` is the proxy's translation both ways;
//! - `reply-1k`, `reply-1m`: the real server's ACK on one of 1K or 1M established connections,
//!   picked at random (to LIP:lport, translated back to the client); `reply-burst-1k` the same
//!   as a worker receives them, in bursts of 32 (half of what the wire's flows carry: the bench's
//!   reflector answers every client segment), and `reply-frames-burst` only copies and moves its
//!   frames (to subtract: `reply-burst-net`); `reply-burst-spread` the same with each client at
//!   an address of its own (1K destinations for the replies, as behind a router to the Internet);
//! - `mixed-burst-spread`: both ways of 1K connections to 64 real servers from clients at 1K
//!   addresses behind a router, in bursts of 32 alternating a client's ACK and a server's ACK:
//!   the replies' destinations and the servers share the next-hop cache, as in a farm;
//!   `mixed-frames-burst-spread` only writes and moves its frames (to subtract:
//!   `mixed-burst-spread-net`); `mixed6-burst-spread` and `mixed6-frames-burst-spread` the same
//!   for IPv6 (`ipv6_run`'s service with 64 real servers, its 1K clients at as many addresses);
//! - `handoff`: a client ACK that reaches the worker not owning its connection (one of 1K, two
//!   workers): that worker's miss and hand-over verdict, then the owner forwarding it;
//! - `expire`: a connection that opened (a SYN) and expired unanswered by the timer; `perf/cost.sh`
//!   subtracts `syn` for the expiry alone;
//! - `established-2w`: `established-1k` with two workers of one gateway sharing the service (500
//!   connections each), every packet reaching its owner as the NIC's RSS would deliver it: what
//!   two workers cost each other in instructions (shared service counters, scheduler state);
//! - `established-1k-offload`: `established-1k` with the NIC having verified the IP and L4
//!   checksums (`RTE_MBUF_F_RX_*_CKSUM_GOOD`), as on a PCI NIC;
//! - `established6-1k`, `reply6-1k`, `dr6-1k` (issue 17): an IPv6 client's ACK on one of 1K
//!   established IPv6 FullNAT connections, the real server's ACK back, and a client's ACK on one of
//!   1K IPv6 DR connections; each frame copied whole into the buffer (about as many instructions
//!   as the IPv4 template rewrite), clients behind a router as in the IPv4 scenarios;
//! - `established6-burst-1k`: `established6-1k` as a worker receives it, in bursts of 32
//!   through `process_burst_timed`; `ack6-frames-burst` only copies and moves its frames (to
//!   subtract: `established6-burst-net`).

use gateway::datapath::Datapath;

use gateway::packet::Verdict;
use gateway::packet::{PacketBuf, RxMeta, VecBuf};
use gateway::testkit::flows::*;
use gateway::testkit::*;
use gateway::wire::TcpPacket;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    match args.get(1).map(String::as_str) {
        Some("established-1k") => established_run(1_000, 1 << 12, n),
        Some("established-1m") => established_run(1_000_000, 2 << 20, n),
        Some("established-burst-1k") => established_burst_run(1_000, 1 << 12, n, true),
        Some("established-burst-1m") => established_burst_run(1_000_000, 2 << 20, n, true),
        Some("ack-frames-burst") => established_burst_run(1_000, 1 << 12, n, false),
        Some("ack-frames-burst-1m") => established_burst_run(1_000_000, 2 << 20, n, false),
        Some(s @ ("ack-frames" | "ack-frames-1m")) => {
            // Only what `established-1k` (`-1m`) does around the datapath: pick a flow, write its
            // frame.
            let (conns, cap) = if s == "ack-frames" {
                (1_000, 1 << 12)
            } else {
                (1_000_000, 2 << 20)
            };
            let (_, acks, ack) = established(conns, cap);
            let order = random_order(conns, 1 << 16);
            let mut buf = VecBuf::from_frame(&ack);
            for k in 0..n {
                acks[order[k & 0xFFFF] as usize].write(&mut buf, &ack);
                buf = std::hint::black_box(buf);
            }
        }
        Some(s @ ("syn" | "syn-rss" | "frames")) => {
            let syn = template(0x02);
            // `syn-rss`: the local port is chosen so that RSS brings the replies to this worker,
            // as on a NIC with RSS (`laddr::layout`).
            let steering = if s == "syn-rss" {
                rss_steering(1)
            } else {
                gateway::laddr::Steering::Partition
            };
            let mut dp: Datapath<VecBuf> =
                datapath_steered(&bench_config(), 0, 1, 2 << 20, 1024, steering);
            let mut buf = VecBuf::from_frame(&syn);
            for i in 0..n as u32 {
                let f = std::hint::black_box(Flow::new(&syn, i));
                if s != "frames" {
                    buf = send(&mut dp, buf, &f, &syn);
                }
            }
        }
        Some("reply-1k") => reply_run(1_000, 1 << 12, n),
        Some("reply-1m") => reply_run(1_000_000, 2 << 20, n),
        Some("reply-burst-1k") => reply_burst_run(1_000, 1 << 12, n, true, client),
        Some("reply-burst-spread") => reply_burst_run(1_000, 1 << 12, n, true, client_spread),
        Some("reply-frames-burst") => reply_burst_run(1_000, 1 << 12, n, false, client),
        Some("handoff") => handoff_run(n),
        Some(s @ ("mixed-burst-spread" | "mixed-frames-burst-spread")) => {
            mixed_burst_run(n, s == "mixed-burst-spread")
        }
        Some("established-2w") => two_workers_run(n),
        Some("established-1k-offload") => {
            let (mut dp, acks, ack) = established(1_000, 1 << 12);
            let order = random_order(1_000, 1 << 16);
            let verified = RxMeta {
                ip_csum: gateway::packet::CsumStatus::Good,
                l4_csum: gateway::packet::CsumStatus::Good,
                ..META
            };
            let mut buf = VecBuf::from_frame(&ack);
            for k in 0..n {
                acks[order[k & 0xFFFF] as usize].write(&mut buf, &ack);
                buf = sent(dp.process(buf, &verified));
            }
        }
        Some("expire") => expire_run(n),
        Some(
            s @ ("established6-1k"
            | "reply6-1k"
            | "dr6-1k"
            | "established6-burst-1k"
            | "ack6-frames-burst"
            | "mixed6-burst-spread"
            | "mixed6-frames-burst-spread"),
        ) => ipv6_run(s, n),
        Some(s @ ("handshake" | "handshake-frames")) => handshake_run(s == "handshake", false, n),
        Some(s @ ("lifecycle" | "lifecycle-frames")) => handshake_run(s == "lifecycle", true, n),
        Some(s @ ("lifecycle-burst" | "lifecycle-frames-burst")) => {
            lifecycle_bursts(s == "lifecycle-burst", n)
        }
        Some(s @ ("syn6" | "syn6-rss" | "syn6-frames")) => syn6_run(s, n),
        Some("ts-plain") => timestamps_run(false, n as u64),
        Some("ts-proxied") => timestamps_run(true, n as u64),
        _ => {
            eprintln!(
                "usage: datapath_cost established-1k|established-1m|established-burst-1k|established-burst-1m|\
                 ack-frames|ack-frames-1m|ack-frames-burst|ack-frames-burst-1m|reply-1k|reply-1m|reply-burst-1k|\
                 reply-frames-burst|reply-burst-spread|syn|syn-rss|frames|syn6|syn6-rss|syn6-frames|\
                 handoff|expire|established-2w|handshake|handshake-frames|lifecycle|lifecycle-frames|lifecycle-burst|lifecycle-frames-burst|established-1k-offload|ts-plain|ts-proxied|\
                 established6-1k|reply6-1k|dr6-1k|established6-burst-1k|ack6-frames-burst N"
            );
            std::process::exit(2);
        }
    }
}

/// 1K IPv6 connections (FullNAT to VIP6:8080, or DR to VIP6:80) from clients behind the
/// client-side router, then `n` packets: client ACKs, or (`reply6-1k`) the servers' ACKs.
fn ipv6_run(scenario: &str, n: usize) {
    use etherparse::PacketBuilder;
    use std::net::Ipv6Addr;
    let lips: Vec<String> = (0x200..0x210)
        .map(|i| format!("\"2001:db8:20::{i:x}\""))
        .collect();
    // `mixed6-*`: [`MIXED_SERVERS`] real servers, 2001:db8:20::11 up, as `mixed-burst-spread`.
    let mixed = scenario.starts_with("mixed6");
    let servers = if mixed { MIXED_SERVERS } else { 2 };
    let server_mac = |k: u8| match (mixed, k) {
        (false, 0) => RS1_MAC,
        (false, _) => RS2_MAC,
        (true, k) => gateway::wire::MacAddr([0x02, 0, 0, 0, 0x20, k]),
    };
    let reals: String = (0..servers)
        .map(|k| {
            format!(
                "[[service.real]]\naddress = \"2001:db8:20::{:x}\"\nport = 80\n",
                0x11 + k
            )
        })
        .collect();
    let cfg = format!(
        "{}{IPV6_SERVICES}\n[[route]]\nprefix = \"2001:db8:11::/48\"\nvia = \"2001:db8:10::2\"\nport = \"client\"\n\n\
         [[service]]\nvip = \"2001:db8:10::100\"\nport = 8080\nprotocol = \"tcp\"\nscheduler = \"wrr\"\n\
         local_addresses = [{}]\n{reals}",
        dual_stack(&bench_config()),
        lips.join(", ")
    );
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 1 << 12);
    let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let mut neighbours: Vec<(Ipv6Addr, gateway::wire::MacAddr, u16)> = (0..servers)
        .map(|k| {
            (
                ip(&format!("2001:db8:20::{:x}", 0x11 + k)),
                server_mac(k),
                1,
            )
        })
        .collect();
    neighbours.push((ip("2001:db8:10::2"), CLIENT_MAC, 0));
    for (a, mac, port) in neighbours {
        dp.v6.neigh.learn(a, mac, port, 0, true, true, |_, _, _| {});
    }
    let vport = if scenario == "dr6-1k" { 80 } else { 8080 };
    let vip = ip("2001:db8:10::100");
    let client = |i: u32| Ipv6Addr::from(u128::from(ip("2001:db8:11::")) + u128::from(i) + 1);
    let tcp = |src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), macs: ([u8; 6], [u8; 6]), syn: bool| {
        let b = PacketBuilder::ethernet2(macs.0, macs.1)
            .ipv6(src.0.octets(), dst.0.octets(), 64)
            .tcp(src.1, dst.1, 1000, 900);
        let b = if syn { b.syn() } else { b.ack(5001) };
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    };
    let to_vip = (CLIENT_MAC.0, CLIENT_PORT_MAC.0);
    let mut frames = Vec::new();
    // `mixed6-*`: the clients' ACKs, and in `frames` the servers'.
    let mut client_frames = Vec::new();
    for i in 0..1000u32 {
        let c = (client(i), 40000 + (i % 20000) as u16);
        let out = sent(dp.process(
            VecBuf::from_frame(&tcp(c, (vip, vport), to_vip, true)),
            &META,
        ));
        // The client's ACK at once: the connection is established, not one of 1000 half-open
        // ones, past the IPv6 table's bound on those (`[conn] max_half_open`, half its 1024).
        sent(dp.process(
            VecBuf::from_frame(&tcp(c, (vip, vport), to_vip, false)),
            &META,
        ));
        let o = out.data();
        if mixed {
            client_frames.push(tcp(c, (vip, vport), to_vip, false));
        }
        frames.push(if scenario == "reply6-1k" || mixed {
            // The server answers the SYN it got: from RIP:80 to LIP:lport.
            let (lip, rip): ([u8; 16], [u8; 16]) =
                (o[22..38].try_into().unwrap(), o[38..54].try_into().unwrap());
            let lport = u16::from_be_bytes([o[54], o[55]]);
            let mac = server_mac(o[53] - 0x11);
            let macs = (mac.0, SERVER_PORT_MAC.0);
            tcp(
                (Ipv6Addr::from(rip), 80),
                (Ipv6Addr::from(lip), lport),
                macs,
                false,
            )
        } else {
            tcp(c, (vip, vport), to_vip, false)
        });
    }
    let meta = if scenario == "reply6-1k" {
        RxMeta { port: 1, ..META }
    } else {
        META
    };
    let order = random_order(1000, 1 << 16);
    if mixed {
        let forward = scenario == "mixed6-burst-spread";
        mixed_bursts(&mut dp, n, &client_frames[0], forward, |buf, k, client| {
            let c = order[k & 0xFFFF] as usize;
            copy_frame(
                buf,
                if client {
                    &client_frames[c]
                } else {
                    &frames[c]
                },
            );
        });
        return;
    }
    if let s @ ("established6-burst-1k" | "ack6-frames-burst") = scenario {
        let forward = s == "established6-burst-1k";
        bursts(&mut dp, meta, 1, n, &frames[0], forward, |buf, k| {
            copy_frame(buf, &frames[order[k & 0xFFFF] as usize]);
        });
        return;
    }
    let mut buf = VecBuf::from_frame(&frames[0]);
    for k in 0..n {
        let f = &frames[order[k & 0xFFFF] as usize];
        copy_frame(&mut buf, f);
        buf = sent(dp.process(buf, &meta));
    }
}

/// New IPv6 FullNAT connections: a SYN from a new client each (`syn` for IPv6), to the
/// service of [`ipv6_run`] (16 local addresses, two real servers). Each frame is the template
/// with the source address's last two words moved by the same amount in opposite directions,
/// which leaves the TCP checksum (a one's-complement sum, RFC 1071) valid. `syn6-frames` only
/// writes the frames (to subtract: `syn6-net`); `syn6-rss` steers by RSS. Up to 28,672 clients.
fn syn6_run(scenario: &str, n: usize) {
    use etherparse::PacketBuilder;
    use std::net::Ipv6Addr;
    let lips: Vec<String> = (0x200..0x210)
        .map(|i| format!("\"2001:db8:20::{i:x}\""))
        .collect();
    let cfg = format!(
        "{}\n[[service]]\nvip = \"2001:db8:10::100\"\nport = 8080\nprotocol = \"tcp\"\n\
         scheduler = \"wrr\"\nlocal_addresses = [{}]\n[[service.real]]\n\
         address = \"2001:db8:20::11\"\nport = 80\n[[service.real]]\naddress = \"2001:db8:20::12\"\n\
         port = 80\n",
        dual_stack(&bench_config()),
        lips.join(", ")
    );
    // Room for every SYN as a half-open connection (half the IPv6 table), none evicted.
    // `syn6-rss`: local ports chosen for RSS, as `syn-rss`.
    let steering = if scenario == "syn6-rss" {
        rss_steering(1)
    } else {
        gateway::laddr::Steering::Partition
    };
    let mut dp: Datapath<VecBuf> = datapath_steered(&cfg, 0, 1, 1 << 12, 1 << 14, steering);
    let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    for (a, mac, port) in [
        ("2001:db8:20::11", RS1_MAC, 1),
        ("2001:db8:20::12", RS2_MAC, 1),
    ] {
        dp.v6
            .neigh
            .learn(ip(a), mac, port, 0, true, true, |_, _, _| {});
    }
    let mut syn = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(
            ip("2001:db8:11::8000:8000").octets(),
            ip("2001:db8:10::100").octets(),
            64,
        )
        .tcp(40000, 8080, 1000, 900)
        .syn()
        .write(&mut syn, &[])
        .unwrap();
    let mut buf = VecBuf::from_frame(&syn);
    for i in 0..n {
        copy_frame(&mut buf, &syn);
        // Source address words 6 and 7 (frame bytes 34..38): 0x8000 + d and 0x8000 - d.
        let d = (i % 0x7000) as u16;
        let f = buf.data_mut();
        f[34..36].copy_from_slice(&(0x8000 + d).to_be_bytes());
        f[36..38].copy_from_slice(&(0x8000 - d).to_be_bytes());
        buf = std::hint::black_box(buf);
        if scenario != "syn6-frames" {
            buf = sent(dp.process(buf, &META));
        }
    }
}

/// Puts frame `f` in `buf`, whatever it held.
#[inline(always)]
fn copy_frame(buf: &mut VecBuf, f: &[u8]) {
    buf.set_len(f.len());
    buf.data_mut().copy_from_slice(f);
}

/// `established-1k` (`-1m`) as a worker receives it: bursts of [`BURST`] ACKs of random flows
/// through `process_burst_timed` (its batched lookup, prefetching as a worker does), `n` packets
/// in all. Without `forward`, only the frames are written and moved (`ack-frames-burst`, to
/// subtract: `established-burst-net`).
fn established_burst_run(conns: u32, cap: u32, n: usize, forward: bool) {
    let (mut dp, acks, ack) = established(conns, cap);
    let order = random_order(conns, 1 << 16);
    bursts(&mut dp, META, 1, n, &ack, forward, |buf, k| {
        acks[order[k & 0xFFFF] as usize].write(buf, &ack)
    });
}

/// `n` frames through `process_burst_timed` in bursts of [`BURST`] (its batched lookup,
/// prefetching as a worker does), each written by `write(buffer, k)` for the `k`th frame into a
/// buffer the last burst sent on port `to` (`first` to start with). Without `forward`, only the
/// frames are written and moved.
fn bursts(
    dp: &mut Datapath<VecBuf>,
    meta: RxMeta,
    to: u16,
    n: usize,
    first: &[u8],
    forward: bool,
    mut write: impl FnMut(&mut VecBuf, usize),
) {
    use gateway::datapath::BURST;
    let mut pkts: Vec<Option<VecBuf>> = (0..BURST)
        .map(|_| Some(VecBuf::from_frame(first)))
        .collect();
    let metas = [meta; BURST];
    let mut out: Vec<Option<Verdict<VecBuf>>> = (0..BURST).map(|_| None).collect();
    let mut k = 0;
    for _ in 0..n / BURST {
        for p in pkts.iter_mut() {
            let mut buf = p.take().unwrap_or_else(|| VecBuf::from_frame(first));
            write(&mut buf, k);
            k += 1;
            *p = Some(buf);
        }
        if !forward {
            pkts = std::hint::black_box(pkts);
            continue;
        }
        dp.process_burst_timed(&mut pkts, &metas, &mut out, || 0, gateway::dpdk::prefetch);
        for (p, o) in pkts.iter_mut().zip(out.iter_mut()) {
            match o.take() {
                Some(Verdict::Tx(port, b)) if port == to => *p = Some(b),
                _ => panic!("not forwarded to port {to}"),
            }
        }
    }
}

fn established_run(conns: u32, cap: u32, n: usize) {
    let (mut dp, acks, ack) = established(conns, cap);
    let order = random_order(conns, 1 << 16);
    let mut buf = VecBuf::from_frame(&ack);
    for k in 0..n {
        buf = send(&mut dp, buf, &acks[order[k & 0xFFFF] as usize], &ack);
    }
}

/// `conns` established connections and the real server's ACK on each, picked at random.
fn reply_run(conns: u32, cap: u32, n: usize) {
    let (mut dp, _, _) = established(conns, cap);
    let frames = reply_frames(&dp, conns, &|rs| if rs == RS1 { RS1_MAC } else { RS2_MAC });
    let from_server = RxMeta { port: 1, ..META };
    let order = random_order(conns, 1 << 16);
    let mut buf = VecBuf::from_frame(&frames[0]);
    for k in 0..n {
        let f = &frames[order[k & 0xFFFF] as usize];
        copy_frame(&mut buf, f);
        buf = sent(dp.process(buf, &from_server));
    }
}

/// `reply-1k` as a worker receives it: bursts of [`BURST`] real servers' ACKs of random
/// connections through `process_burst_timed`, as `established-burst-1k` sends the clients'
/// (the wire's flows go both ways: `perf/bench`'s reflector answers every segment). Without
/// `forward`, only the frames are written and moved (`reply-frames-burst`, to subtract).
/// Connection `i`'s client is at `client(i)` (`client_spread` for `reply-burst-spread`: 1K
/// destinations for the replies, as behind a router to the Internet).
fn reply_burst_run(
    conns: u32,
    cap: u32,
    n: usize,
    forward: bool,
    client: impl Fn(u32) -> (std::net::Ipv4Addr, u16),
) {
    let (mut dp, _, _) = established_with(conns, cap, client);
    let frames = reply_frames(&dp, conns, &|rs| if rs == RS1 { RS1_MAC } else { RS2_MAC });
    let from_server = RxMeta { port: 1, ..META };
    let order = random_order(conns, 1 << 16);
    bursts(&mut dp, from_server, 0, n, &frames[0], forward, |buf, k| {
        copy_frame(buf, &frames[order[k & 0xFFFF] as usize]);
    });
}

/// Real servers of `mixed-burst-spread`'s service: enough that a reply between two packets to
/// one of them is the rule, as in a farm.
const MIXED_SERVERS: u8 = 64;

/// `mixed-burst-spread`: 1K connections to [`MIXED_SERVERS`] real servers from clients each at an
/// address of its own behind the client-side router (`client_spread`), then bursts of 32
/// alternating a client's ACK and a real server's ACK, each of a random connection: both ways of
/// a farm's flows as a worker receives them, where the replies' destinations (the clients) and
/// the client segments' (the servers) share the next-hop cache. Without `forward`, only the
/// frames are written and moved (`mixed-frames-burst-spread`, to subtract).
fn mixed_burst_run(n: usize, forward: bool) {
    use gateway::wire::MacAddr;
    use std::net::Ipv4Addr;
    const CONNS: u32 = 1_000;
    let server = |k: u8| {
        (
            Ipv4Addr::new(10, 20, 0, 11 + k),
            MacAddr([0x02, 0, 0, 0, 0x20, k]),
        )
    };
    let two =
        "[[service.real]]\naddress = \"10.20.0.11\"\n[[service.real]]\naddress = \"10.20.0.12\"\n";
    let servers: String = (0..MIXED_SERVERS)
        .map(|k| format!("[[service.real]]\naddress = \"{}\"\n", server(k).0))
        .collect();
    let cfg = bench_config();
    assert!(cfg.contains(two), "bench_config's two real servers");
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg.replace(two, &servers), 0, 1, 1 << 12);
    for k in 0..MIXED_SERVERS {
        let (ip, mac) = server(k);
        dp.l3.learn_from_peer(ip, mac, 1);
    }
    let (syn, ack) = (template(SYN), template(ACK));
    let acks: Vec<Flow> = (0..CONNS)
        .map(|i| Flow::of(&ack, client_spread(i)))
        .collect();
    let mut buf = VecBuf::from_frame(&syn);
    for (i, a) in acks.iter().enumerate() {
        buf = send(&mut dp, buf, &Flow::of(&syn, client_spread(i as u32)), &syn);
        buf = send(&mut dp, buf, a, &ack);
    }
    let replies = reply_frames(&dp, CONNS, &|rs| server(rs.octets()[3] - 11).1);
    let order = random_order(CONNS, 1 << 16);
    mixed_bursts(&mut dp, n, &ack, forward, |buf, k, client| {
        let c = order[k & 0xFFFF] as usize;
        if client {
            acks[c].write(buf, &ack);
        } else {
            copy_frame(buf, &replies[c]);
        }
    });
}

/// Bursts of [`BURST`] alternating a client's segment (received on port 0, sent on port 1) and
/// a real server's (received on port 1, sent on port 0), `n` packets in all, each written by
/// `write(buf, k, client)`, the `k`th of the run; without `forward`, only written and moved.
fn mixed_bursts(
    dp: &mut Datapath<VecBuf>,
    n: usize,
    first: &[u8],
    forward: bool,
    mut write: impl FnMut(&mut VecBuf, usize, bool),
) {
    use gateway::datapath::BURST;
    let from_server = RxMeta { port: 1, ..META };
    let metas: [RxMeta; BURST] =
        std::array::from_fn(|j| if j % 2 == 0 { META } else { from_server });
    let mut pkts: Vec<Option<VecBuf>> = (0..BURST)
        .map(|_| Some(VecBuf::from_frame(first)))
        .collect();
    let mut out: Vec<Option<Verdict<VecBuf>>> = (0..BURST).map(|_| None).collect();
    let mut k = 0;
    for _ in 0..n / BURST {
        for (j, p) in pkts.iter_mut().enumerate() {
            let mut buf = p.take().unwrap_or_else(|| VecBuf::from_frame(first));
            write(&mut buf, k, j % 2 == 0);
            k += 1;
            *p = Some(buf);
        }
        if !forward {
            pkts = std::hint::black_box(pkts);
            continue;
        }
        dp.process_burst_timed(&mut pkts, &metas, &mut out, || 0, gateway::dpdk::prefetch);
        for (j, (p, o)) in pkts.iter_mut().zip(out.iter_mut()).enumerate() {
            // A client's segment leaves toward its server (port 1), a reply toward its client.
            let to = if j % 2 == 0 { 1 } else { 0 };
            match o.take() {
                Some(Verdict::Tx(port, b)) if port == to => *p = Some(b),
                _ => panic!("slot {j} not forwarded to port {to}"),
            }
        }
    }
}

/// The real server's ACK, with timestamps, on each of `dp`'s `conns` connections, from the MAC
/// `mac` gives its address.
fn reply_frames(
    dp: &Datapath<VecBuf>,
    conns: u32,
    mac: &dyn Fn(std::net::Ipv4Addr) -> gateway::wire::MacAddr,
) -> Vec<Vec<u8>> {
    let frames: Vec<Vec<u8>> = dp
        .fwd
        .table()
        .iter()
        .filter_map(|(_, c)| c.reply())
        .map(|r| {
            let (src, dst) = (r.src_ip().octets(), r.dst_ip().octets());
            tcp_frame(
                (mac(r.src_ip()).0, SERVER_PORT_MAC.0),
                (src, r.sport),
                (dst, r.dport),
                ACK,
                5001,
                1001,
                &timestamps(900, 100),
                &[],
            )
        })
        .collect();
    assert_eq!(frames.len(), conns as usize);
    frames
}

/// Two workers sharing 1K connections; each operation is a client ACK sent to the worker that
/// does not own its connection, handed over, and forwarded by the owner.
fn handoff_run(n: usize) {
    let cfg = bench_config();
    let mut w: Vec<Datapath<VecBuf>> = (0..2).map(|i| datapath_from(&cfg, i, 2, 1 << 12)).collect();
    let peer = RxMeta {
        from_peer: true,
        ..META
    };
    let (syn, ack) = (template(SYN), template(ACK));
    // Sent to worker 0: forwarded there, or handed to worker 1 and forwarded by it. Which one.
    let through = |w: &mut Vec<Datapath<VecBuf>>, tmpl: &[u8], i: u32| -> usize {
        let mut b = VecBuf::from_frame(tmpl);
        Flow::new(tmpl, i).write(&mut b, tmpl);
        match w[0].process(b, &META) {
            Verdict::Tx(..) => 0,
            Verdict::ToWorker(1, b) => {
                sent(w[1].process(b, &peer));
                1
            }
            other => panic!("{other:?}"),
        }
    };
    let mut theirs = Vec::new();
    for i in 0..1000 {
        through(&mut w, &syn, i);
        if through(&mut w, &ack, i) == 1 {
            theirs.push(Flow::new(&ack, i));
        }
    }
    let mut buf = VecBuf::from_frame(&ack);
    for k in 0..n {
        theirs[k % theirs.len()].write(&mut buf, &ack);
        buf = match w[0].process(buf, &META) {
            Verdict::ToWorker(1, b) => sent(w[1].process(b, &peer)),
            other => panic!("not handed over: {other:?}"),
        };
    }
}

/// Two workers, 1K connections between them, each packet processed by the worker that owns it.
fn two_workers_run(n: usize) {
    let cfg = bench_config();
    let mut w: Vec<Datapath<VecBuf>> = (0..2).map(|i| datapath_from(&cfg, i, 2, 1 << 12)).collect();
    let (syn, ack) = (template(SYN), template(ACK));
    // Which worker owns flow i: the one worker 0 hands its SYN to, or worker 0 itself.
    let mut owned = Vec::new();
    for i in 0..1000u32 {
        let mut b = VecBuf::from_frame(&syn);
        Flow::new(&syn, i).write(&mut b, &syn);
        let owner = match w[0].process(b, &META) {
            Verdict::Tx(..) => 0,
            Verdict::ToWorker(1, b) => {
                sent(w[1].process(
                    b,
                    &RxMeta {
                        from_peer: true,
                        ..META
                    },
                ));
                1
            }
            other => panic!("{other:?}"),
        };
        let a = Flow::new(&ack, i);
        let mut b = VecBuf::from_frame(&ack);
        a.write(&mut b, &ack);
        sent(w[owner].process(b, &META));
        owned.push((owner, a));
    }
    let order = random_order(1000, 1 << 16);
    let mut buf = VecBuf::from_frame(&ack);
    for k in 0..n {
        let (owner, f) = &owned[order[k & 0xFFFF] as usize];
        f.write(&mut buf, &ack);
        buf = sent(w[*owner].process(buf, &META));
    }
}

/// `n` SYNs that open connections, then the timer expiring every one of them unanswered.
fn expire_run(n: usize) {
    let syn = template(SYN);
    let mut dp: Datapath<VecBuf> = datapath_from(&bench_config(), 0, 1, 2 << 20);
    let mut buf = VecBuf::from_frame(&syn);
    for i in 0..n as u32 {
        buf = send(&mut dp, buf, &Flow::new(&syn, i), &syn);
    }
    // Past every handshake timeout, a millisecond at a time once due, until the table is empty.
    let mut now = 200_000;
    while !dp.fwd.table().is_empty() {
        dp.tick(now);
        now += 1;
        assert!(now < 10_000_000, "not expired");
    }
}

/// `n` connections opened (SYN, SYN-ACK, ACK: see the module docs), each from a new client port;
/// with `through` false, only their frames are built (the SYN-ACK to a fixed LIP:lport). With
/// `lifecycle`, each then carries a request and its answer and closes as an HTTP/1.1 exchange
/// with `Connection: close` does (wrk against nginx): the client's request, the server's answer
/// and its FIN, the client's ACK and FIN, the server's last ACK.
fn handshake_run(through: bool, lifecycle: bool, n: usize) {
    let mut dp: Datapath<VecBuf> = datapath_from(&bench_config(), 0, 1, 2 << 20);
    let from_server = RxMeta { port: 1, ..META };
    let cm = (CLIENT_MAC.0, CLIENT_PORT_MAC.0);
    let vip = (VIP.octets(), 80);
    let syn_opts = linux_syn_options;
    // One buffer reused, as the other scenarios do: a fresh one would cost more than the datapath.
    let mut buf = VecBuf::from_frame(&[0; 60]);
    let mut through_dp = |buf: VecBuf, f: &[u8], meta: &RxMeta| {
        let mut buf = buf;
        copy_frame(&mut buf, f);
        sent(dp.process(buf, meta))
    };
    for i in 0..n as u32 {
        let (ip, port) = client(i);
        let cli = (ip.octets(), port);
        let syn = tcp_frame(cm, cli, vip, SYN, 1000, 0, &syn_opts(100, 0), &[]);
        let (lip, lport, rs) = if through {
            buf = through_dp(buf, &syn, &META);
            let d = buf.data();
            let rs = [d[30], d[31], d[32], d[33]];
            let lport = u16::from_be_bytes([d[34], d[35]]);
            ([d[26], d[27], d[28], d[29]], lport, rs)
        } else {
            (LIP1.octets(), 1024, RS1.octets())
        };
        let mac = if rs == RS1.octets() { RS1_MAC } else { RS2_MAC };
        let sm = (mac.0, SERVER_PORT_MAC.0);
        let synack = tcp_frame(
            sm,
            (rs, 80),
            (lip, lport),
            SYN | ACK,
            5000,
            1001,
            &syn_opts(900, 100),
            &[],
        );
        let ack = tcp_frame(cm, cli, vip, ACK, 1001, 5001, &timestamps(101, 900), &[]);
        if through {
            buf = through_dp(buf, &synack, &from_server);
            buf = through_dp(buf, &ack, &META);
        } else {
            std::hint::black_box((syn, synack, ack));
        }
        if !lifecycle {
            continue;
        }
        let (srv, local) = ((rs, 80), (lip, lport));
        let from_c = |flags, seq, ack, ts: [u8; 12], payload: &[u8]| {
            (true, tcp_frame(cm, cli, vip, flags, seq, ack, &ts, payload))
        };
        let from_s = |flags, seq, ack, ts: [u8; 12], payload: &[u8]| {
            (
                false,
                tcp_frame(sm, srv, local, flags, seq, ack, &ts, payload),
            )
        };
        let rest = [
            // The request, 100 bytes; the answer, 200 bytes, and the server's FIN (nginx closes
            // first); the client's ACK of both, then its FIN; the server's last ACK.
            from_c(PSH | ACK, 1001, 5001, timestamps(102, 900), &[b'G'; 100]),
            from_s(PSH | ACK, 5001, 1101, timestamps(901, 102), &[b'H'; 200]),
            from_s(FIN | ACK, 5201, 1101, timestamps(901, 102), &[]),
            from_c(ACK, 1101, 5202, timestamps(103, 901), &[]),
            from_c(FIN | ACK, 1101, 5202, timestamps(103, 901), &[]),
            from_s(ACK, 5202, 1102, timestamps(902, 103), &[]),
        ];
        for (from_client, f) in rest {
            if through {
                buf = through_dp(buf, &f, if from_client { &META } else { &from_server });
            } else {
                std::hint::black_box(f);
            }
        }
    }
}

/// Linux's SYN options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
fn linux_syn_options(tsval: u32, tsecr: u32) -> [u8; 20] {
    let mut o = [
        2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    o[8..12].copy_from_slice(&tsval.to_be_bytes());
    o[12..16].copy_from_slice(&tsecr.to_be_bytes());
    o
}

/// `lifecycle` as a worker meets it under short connections: the connections in groups of
/// [`BURST`](gateway::datapath::BURST), each of their nine packets one burst through
/// `process_burst_timed` (the group's SYNs, then their SYN-ACKs, and so on), `n` connections
/// rounded down to whole groups. With `through` false, only the frames are built and copied in
/// (the SYN-ACKs to a fixed LIP:lport).
fn lifecycle_bursts(through: bool, n: usize) {
    use gateway::datapath::BURST;
    let mut dp: Datapath<VecBuf> = datapath_from(&bench_config(), 0, 1, 2 << 20);
    let (cm, vip) = ((CLIENT_MAC.0, CLIENT_PORT_MAC.0), (VIP.octets(), 80));
    let mut pkts: Vec<Option<VecBuf>> = (0..BURST)
        .map(|_| Some(VecBuf::from_frame(&[0; 60])))
        .collect();
    let mut out: Vec<Option<Verdict<VecBuf>>> = (0..BURST).map(|_| None).collect();
    // One burst of `frames`, all from the client (to the servers' port 1) or all from the
    // servers (to the client's port 0), each to be forwarded.
    let mut burst = |pkts: &mut Vec<Option<VecBuf>>, frames: &[Vec<u8>], from_client: bool| {
        for (p, f) in pkts.iter_mut().zip(frames) {
            copy_frame(p.as_mut().expect("a buffer in every slot"), f);
        }
        if !through {
            return;
        }
        let meta = RxMeta {
            port: u16::from(!from_client),
            ..META
        };
        let to = u16::from(from_client);
        dp.process_burst_timed(
            pkts,
            &[meta; BURST],
            &mut out,
            || 0,
            gateway::dpdk::prefetch,
        );
        for (j, (p, o)) in pkts.iter_mut().zip(out.iter_mut()).enumerate() {
            match o.take() {
                Some(Verdict::Tx(port, b)) if port == to => *p = Some(b),
                other => panic!("slot {j} not forwarded to port {to}: {other:?}"),
            }
        }
    };
    for g in 0..(n / BURST) as u32 {
        let clients: Vec<([u8; 4], u16)> = (0..BURST as u32)
            .map(|j| {
                let (ip, port) = client(g * BURST as u32 + j);
                (ip.octets(), port)
            })
            .collect();
        let syns: Vec<Vec<u8>> = clients
            .iter()
            .map(|&cli| tcp_frame(cm, cli, vip, SYN, 1000, 0, &linux_syn_options(100, 0), &[]))
            .collect();
        burst(&mut pkts, &syns, true);
        // Each connection's LIP:lport and real server, from its SYN as forwarded.
        let servers: Vec<_> = pkts
            .iter()
            .map(|p| {
                let d = p.as_ref().expect("a buffer in every slot").data();
                match through {
                    true => (
                        [d[26], d[27], d[28], d[29]],
                        u16::from_be_bytes([d[34], d[35]]),
                        [d[30], d[31], d[32], d[33]],
                    ),
                    false => (LIP1.octets(), 1024, RS1.octets()),
                }
            })
            .collect();
        let from_c = |flags, seq, ack, ts: &[u8], payload: &[u8]| -> Vec<Vec<u8>> {
            clients
                .iter()
                .map(|&cli| tcp_frame(cm, cli, vip, flags, seq, ack, ts, payload))
                .collect()
        };
        let from_s = |flags, seq, ack, ts: &[u8], payload: &[u8]| -> Vec<Vec<u8>> {
            servers
                .iter()
                .map(|&(lip, lport, rs)| {
                    let mac = if rs == RS1.octets() { RS1_MAC } else { RS2_MAC };
                    let sm = (mac.0, SERVER_PORT_MAC.0);
                    tcp_frame(sm, (rs, 80), (lip, lport), flags, seq, ack, ts, payload)
                })
                .collect()
        };
        let rest = [
            (
                false,
                from_s(SYN | ACK, 5000, 1001, &linux_syn_options(900, 100), &[]),
            ),
            (true, from_c(ACK, 1001, 5001, &timestamps(101, 900), &[])),
            (
                true,
                from_c(PSH | ACK, 1001, 5001, &timestamps(102, 900), &[b'G'; 100]),
            ),
            (
                false,
                from_s(PSH | ACK, 5001, 1101, &timestamps(901, 102), &[b'H'; 200]),
            ),
            (
                false,
                from_s(FIN | ACK, 5201, 1101, &timestamps(901, 102), &[]),
            ),
            (true, from_c(ACK, 1101, 5202, &timestamps(103, 901), &[])),
            (
                true,
                from_c(FIN | ACK, 1101, 5202, &timestamps(103, 901), &[]),
            ),
            (false, from_s(ACK, 5202, 1102, &timestamps(902, 103), &[])),
        ];
        for (from_client, frames) in &rest {
            burst(&mut pkts, frames, *from_client);
        }
        pkts = std::hint::black_box(pkts);
    }
}

/// One connection (proxied or not) carrying `n` client ACKs and `n` server data segments, all
/// with timestamps, one buffer per direction reused.
fn timestamps_run(proxied: bool, n: u64) {
    let mode = if proxied { "on" } else { "off" };
    let conf = LAB_CONFIG.replacen(
        "scheduler = \"wrr\"",
        &format!("scheduler = \"wrr\"\nsynproxy = \"{mode}\""),
        1,
    );
    let mut dp: Datapath<VecBuf> = datapath_from(&conf, 0, 1, 1 << 16);
    dp.tick(5_000);
    let from_client = RxMeta::default();
    let from_server = RxMeta {
        port: 1,
        ..Default::default()
    };
    let (cm, sm) = (
        (CLIENT_MAC.0, CLIENT_PORT_MAC.0),
        (RS1_MAC.0, SERVER_PORT_MAC.0),
    );
    let (cli, vip) = ((CLIENT_IP.octets(), 40000), (VIP.octets(), 80));
    let syn = tcp_frame(cm, cli, vip, SYN, 1000, 0, &timestamps(100, 0), &[]);
    let out = sent(dp.process(VecBuf::from_frame(&syn), &from_client));
    let our_isn = TcpPacket::new_unchecked(&out.data()[34..]).seq();
    // Proxied: `out` was our SYN-ACK and the ACK makes the SYN to the server; plain: `out` is it.
    let (syn_out, c_ack) = if proxied {
        let ack = tcp_frame(
            cm,
            cli,
            vip,
            ACK,
            1001,
            our_isn + 1,
            &timestamps(101, 0),
            &[],
        );
        (
            sent(dp.process(VecBuf::from_frame(&ack), &from_client)),
            our_isn + 1,
        )
    } else {
        (out, 5001)
    };
    let lport = TcpPacket::new_unchecked(&syn_out.data()[34..]).src_port();
    let lip = [
        syn_out.data()[26],
        syn_out.data()[27],
        syn_out.data()[28],
        syn_out.data()[29],
    ];
    let srv = (RS1.octets(), 80);
    let synack = tcp_frame(
        sm,
        srv,
        (lip, lport),
        SYN | ACK,
        5000,
        1001,
        &timestamps(900, 101),
        &[],
    );
    sent(dp.process(VecBuf::from_frame(&synack), &from_server));
    if !proxied {
        let ack = tcp_frame(cm, cli, vip, ACK, 1001, 5001, &timestamps(101, 900), &[]);
        sent(dp.process(VecBuf::from_frame(&ack), &from_client));
    }
    let c2s = tcp_frame(cm, cli, vip, ACK, 1001, c_ack, &timestamps(102, 900), &[]);
    let s2c = tcp_frame(
        sm,
        srv,
        (lip, lport),
        ACK,
        5001,
        1001,
        &timestamps(901, 102),
        b"hello",
    );
    let (mut a, mut b) = (VecBuf::from_frame(&c2s), VecBuf::from_frame(&s2c));
    for _ in 0..n {
        a.set_len(c2s.len());
        a.data_mut().copy_from_slice(&c2s);
        a = sent(dp.process(a, &from_client));
        b.set_len(s2c.len());
        b.data_mut().copy_from_slice(&s2c);
        b = sent(dp.process(b, &from_server));
    }
}

/// The timestamps option as Linux sends it after the handshake: NOP, NOP, TS.
fn timestamps(tsval: u32, tsecr: u32) -> [u8; 12] {
    let mut o = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
    o[4..8].copy_from_slice(&tsval.to_be_bytes());
    o[8..12].copy_from_slice(&tsecr.to_be_bytes());
    o
}

/// A TCP frame with `options` (a multiple of 4 bytes), checksums filled.
#[allow(clippy::too_many_arguments)]
fn tcp_frame(
    macs: ([u8; 6], [u8; 6]),
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    flags: u8,
    seq: u32,
    ack: u32,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let hl = 20 + options.len();
    let mut v = vec![0u8; 14 + 20 + hl + payload.len()];
    v[0..6].copy_from_slice(&macs.1);
    v[6..12].copy_from_slice(&macs.0);
    v[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = gateway::wire::Ipv4Repr {
        src: src.0.into(),
        dst: dst.0.into(),
        protocol: gateway::wire::IpProtocol::TCP,
        payload_len: (hl + payload.len()) as u16,
        ttl: 64,
        ident: 0,
        dont_frag: true,
        dscp_ecn: 0,
    };
    ip.emit(&mut v[14..]).unwrap();
    let seg = &mut v[34..];
    seg[hl..].copy_from_slice(payload);
    seg[20..hl].copy_from_slice(options);
    let mut t = TcpPacket::new_unchecked(seg);
    t.set_src_port(src.1);
    t.set_dst_port(dst.1);
    t.set_seq(seq);
    t.set_ack_number(ack);
    t.set_data_offset((hl / 4) as u8);
    t.set_flags(gateway::wire::TcpFlags(flags));
    t.set_window(1000);
    t.fill_checksum(src.0.into(), dst.0.into());
    v
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

fn sent(v: Verdict<VecBuf>) -> VecBuf {
    match v {
        Verdict::Tx(_, b) => b,
        other => panic!("expected a frame out, got {other:?}"),
    }
}
