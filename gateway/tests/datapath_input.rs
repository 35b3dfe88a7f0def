//! Bad input and end-to-end properties of the DPDK-free datapath (`Datapath<VecBuf>` from the
//! testkit), driven the way `worker.rs` drives it: every verdict is carried out with the worker's
//! own accounting (`Datapath::settle`, `Datapath::handed_over`).
//!
//! - Every kind of malformed or unwanted frame is dropped with its own counter, and only that one.
//! - FullNAT round trips restore the client's tuples, keep payloads intact and leave valid
//!   checksums (etherparse is the oracle); random bytes never panic.
//! - Two workers: a reply that reaches the wrong worker is handed to the owner.
//! - Expiry: an idle ESTABLISHED connection is reset on both sides and its local port freed.

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use gateway::conn::{Tuple, PROTO_TCP};
use gateway::datapath::Datapath;
use gateway::packet::Verdict;
use gateway::packet::{PacketBuf, RxMeta, VecBuf};
use gateway::stats::{Drop, DropReason, WorkerStats};
use gateway::testkit::*;
use gateway::wire::{DropReason as Wire, Ipv4Packet, MacAddr};
use proptest::prelude::*;
use std::net::Ipv4Addr;

/// A router on the client side, so property tests can use client addresses from anywhere.
const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 254);
const ROUTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xFE]);
const OTHER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
const ETH: usize = 14;
const IP: usize = 20;

fn meta(port: u16) -> RxMeta {
    RxMeta {
        port,
        ..Default::default()
    }
}

/// The outcome of one frame, after dispatch.
#[derive(Debug)]
enum Out {
    Tx(u16, Vec<u8>),
    ToWorker(u16, Vec<u8>),
    ToKernel(u16, Vec<u8>),
    Done,
    Drop(DropReason),
    Held,
}

/// Processes `frame` and carries the verdict out with the worker's own accounting
/// (`Datapath::settle`, `Datapath::handed_over`), minus the queues and rings themselves.
fn run(dp: &mut Datapath<VecBuf>, frame: &[u8], meta: &RxMeta) -> Out {
    let v = dp.process(VecBuf::from_frame(frame), meta);
    let seen = match &v {
        Verdict::Drop(r, _) => Some(Out::Drop(*r)),
        Verdict::Done(_) => Some(Out::Done),
        Verdict::Held => Some(Out::Held),
        _ => None,
    };
    match dp.settle(v) {
        Some(Verdict::Tx(port, b)) => Out::Tx(port, b.data().to_vec()),
        Some(Verdict::ToWorker(w, b)) => {
            dp.handed_over(true);
            Out::ToWorker(w, b.data().to_vec())
        }
        Some(Verdict::ToKernel(p, b)) => Out::ToKernel(p, b.data().to_vec()),
        _ => seen.expect("settle keeps only Tx, ToWorker and ToKernel"),
    }
}

fn expect_tx(out: Out, port: u16) -> Vec<u8> {
    match out {
        Out::Tx(p, f) if p == port => f,
        other => panic!("expected Tx on port {port}, got {other:?}"),
    }
}

fn generated(dp: &mut Datapath<VecBuf>) -> Vec<(u16, Vec<u8>)> {
    let mut v = Vec::new();
    dp.l3
        .take_generated(|g| v.push((g.port, g.bytes().to_vec())));
    v
}

/// A TCP segment to build with etherparse. `flags` uses tcpdump's letters: S A F R P U.
#[derive(Clone)]
struct Seg {
    macs: (MacAddr, MacAddr),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: &'static str,
    seq: u32,
    ack: u32,
    payload: Vec<u8>,
}

impl Seg {
    fn from_client(cport: u16, flags: &'static str) -> Seg {
        Seg {
            macs: (CLIENT_MAC, CLIENT_PORT_MAC),
            src: (CLIENT_IP, cport),
            dst: (VIP, 80),
            flags,
            seq: 1000,
            ack: 0,
            payload: Vec::new(),
        }
    }

    fn frame(&self) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(self.macs.0 .0, self.macs.1 .0)
            .ipv4(self.src.0.octets(), self.dst.0.octets(), 64)
            .tcp(self.src.1, self.dst.1, self.seq, 64240);
        for f in self.flags.chars() {
            b = match f {
                'S' => b.syn(),
                'A' => b.ack(self.ack),
                'F' => b.fin(),
                'R' => b.rst(),
                'P' => b.psh(),
                'U' => b.urg(0),
                _ => panic!("flag {f}"),
            };
        }
        let mut v = Vec::new();
        b.write(&mut v, &self.payload).unwrap();
        v
    }
}

fn udp_frame(
    macs: (MacAddr, MacAddr),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// Recomputes the IPv4 header checksum after a test edited the header.
fn refill_ip(f: &mut [u8]) {
    Ipv4Packet::new_unchecked(&mut f[ETH..]).fill_checksum();
}

/// Checks a frame the datapath sent with etherparse: IPv4 header checksum and TCP/UDP checksum
/// valid; returns (src, dst, sport, dport, l4 payload).
fn check_sent(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses what we send");
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let h = ip.header();
    assert_eq!(
        h.header_checksum(),
        h.to_header().calc_header_checksum(),
        "IPv4 header checksum"
    );
    let (src, dst) = (h.source(), h.destination());
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(
                t.checksum(),
                t.calc_checksum_ipv4(src, dst).unwrap(),
                "TCP checksum"
            );
            (
                src.into(),
                dst.into(),
                t.source_port(),
                t.destination_port(),
                t.payload().to_vec(),
            )
        }
        Some(TransportSlice::Udp(u)) => {
            if u.checksum() != 0 {
                let want = u
                    .to_header()
                    .calc_checksum_ipv4_raw(src, dst, u.payload())
                    .unwrap();
                assert_eq!(u.checksum(), want, "UDP checksum");
            }
            (
                src.into(),
                dst.into(),
                u.source_port(),
                u.destination_port(),
                u.payload().to_vec(),
            )
        }
        _ => panic!("not TCP/UDP"),
    }
}

/// Asserts that processing `frame` dropped it with `want`: that counter moved by one, no other drop
/// counter moved, nothing was sent, generated, handed over or created.
fn assert_dropped(
    dp: &mut Datapath<VecBuf>,
    name: &str,
    frame: &[u8],
    port: u16,
    want: DropReason,
) {
    let before: WorkerStats = dp.l3.stats.clone();
    let conns = dp.fwd.table().len();
    let out = run(dp, frame, &meta(port));
    assert!(
        matches!(out, Out::Drop(r) if r == want),
        "{name}: expected drop {want:?}, got {out:?}"
    );
    let after = &dp.l3.stats;
    for r in Wire::ALL
        .iter()
        .map(|&w| DropReason::from(w))
        .chain(Drop::ALL.iter().map(|&d| d.into()))
    {
        let moved = after.dropped(r) - before.dropped(r);
        assert_eq!(
            moved,
            u64::from(r == want),
            "{name}: counter {r:?} moved by {moved}"
        );
    }
    assert_eq!(
        after.rx_packets,
        before.rx_packets + 1,
        "{name}: rx counted"
    );
    assert_eq!(after.tx_packets, before.tx_packets, "{name}: nothing sent");
    assert_eq!(
        after.handoff_out, before.handoff_out,
        "{name}: nothing handed over"
    );
    assert_eq!(dp.fwd.table().len(), conns, "{name}: no connection made");
    assert!(generated(dp).is_empty(), "{name}: nothing generated");
}

/// A valid client SYN with a payload, long enough that every truncation below 60 bytes cuts it.
fn long_syn() -> Vec<u8> {
    let mut s = Seg::from_client(40000, "S");
    s.payload = vec![0xAB; 30];
    s.frame()
}

#[test]
fn truncated_frames_are_dropped_by_length() {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let full = long_syn();
    assert!(full.len() > 60);
    for n in 0..60 {
        let want = match n {
            0..=13 => Wire::EthTruncated,
            14..=33 => Wire::Ipv4Truncated,
            _ => Wire::Ipv4BadTotalLen,
        };
        assert_dropped(
            &mut dp,
            &format!("truncated to {n}"),
            &full[..n],
            0,
            want.into(),
        );
    }
}

#[test]
fn malformed_ip_headers_have_their_own_counters() {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let good = Seg::from_client(40001, "S").frame();
    let l3 = ETH;

    for ihl in 0..5u8 {
        let mut f = good.clone();
        f[l3] = 0x40 | ihl;
        refill_ip(&mut f);
        assert_dropped(
            &mut dp,
            &format!("IHL {ihl}"),
            &f,
            0,
            Wire::Ipv4BadIhl.into(),
        );
    }
    // IHL 15 (60 bytes) in a 40-byte IP packet.
    let mut f = good.clone();
    f[l3] = 0x4F;
    assert_dropped(
        &mut dp,
        "IHL beyond the frame",
        &f,
        0,
        Wire::Ipv4BadIhl.into(),
    );

    let mut f = good.clone();
    f[l3] = 0x65;
    assert_dropped(&mut dp, "version 6", &f, 0, Wire::Ipv4BadVersion.into());

    for tl in [0u16, 19] {
        let mut f = good.clone();
        f[l3 + 2..l3 + 4].copy_from_slice(&tl.to_be_bytes());
        refill_ip(&mut f);
        assert_dropped(
            &mut dp,
            &format!("total length {tl}"),
            &f,
            0,
            Wire::Ipv4BadTotalLen.into(),
        );
    }
    let mut f = good.clone();
    let tl = (good.len() - ETH + 1) as u16;
    f[l3 + 2..l3 + 4].copy_from_slice(&tl.to_be_bytes());
    refill_ip(&mut f);
    assert_dropped(
        &mut dp,
        "total length beyond the frame",
        &f,
        0,
        Wire::Ipv4BadTotalLen.into(),
    );

    let mut f = good.clone();
    f[l3 + 10] ^= 0x01;
    assert_dropped(&mut dp, "IP checksum", &f, 0, Wire::Ipv4BadChecksum.into());
    let mut f = good.clone();
    f[l3 + 8] -= 1; // TTL changed, checksum not
    assert_dropped(
        &mut dp,
        "IP checksum (TTL edited)",
        &f,
        0,
        Wire::Ipv4BadChecksum.into(),
    );
}

/// An ICMP echo request from the client to the VIP.
fn ping_to_vip() -> Vec<u8> {
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut ping, b"ping")
        .unwrap();
    ping
}

#[test]
fn options_to_the_vip_are_dropped_and_fragments_follow_or_are_refused() {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let good = Seg::from_client(40002, "S").frame();

    // IHL 6 with NOP NOP NOP EOL; the TCP checksum does not cover the IP options.
    let mut f = good.clone();
    f.splice(ETH + IP..ETH + IP, [1, 1, 1, 0]);
    f[ETH] = 0x46;
    let tl = (f.len() - ETH) as u16;
    f[ETH + 2..ETH + 4].copy_from_slice(&tl.to_be_bytes());
    refill_ip(&mut f);
    assert_dropped(&mut dp, "IP options", &f, 0, Drop::IpOptions.into());

    // A first fragment (MF, offset 0) is forwarded, and a later one (offset 8 bytes) follows it
    // (`gateway::frag`, tests/fragments.rs) but for TCP, where it would overlap the TCP header
    // (RFC 1858 3.2).
    let udp = udp_frame(
        (CLIENT_MAC, CLIENT_PORT_MAC),
        (CLIENT_IP, 5000),
        (VIP, 80),
        b"fragmented datagram",
    );
    let with_frag = |base: &Vec<u8>, flags_frag: u16, ident: u16| {
        let mut f = base.clone();
        f[ETH + 4..ETH + 6].copy_from_slice(&ident.to_be_bytes());
        f[ETH + 6..ETH + 8].copy_from_slice(&flags_frag.to_be_bytes());
        refill_ip(&mut f);
        f
    };
    for base in [&good, &udp] {
        expect_tx(run(&mut dp, &with_frag(base, 0x2000, 1), &meta(0)), 1);
    }
    let tiny = with_frag(&good, 0x0001, 1);
    assert_dropped(&mut dp, "TCP at 8", &tiny, 0, Wire::TcpTinyFragment.into());
    expect_tx(run(&mut dp, &with_frag(&udp, 0x0001, 1), &meta(0)), 1);
    // A non-first fragment whose "TCP header" is garbage is a fragment, not a bad header: with no
    // first fragment yet, it waits for one.
    let mut f = with_frag(&good, 0x0003, 2);
    f[ETH + IP + 12] = 0x00;
    refill_ip(&mut f);
    assert!(matches!(run(&mut dp, &f, &meta(0)), Out::Held));
    // ICMP fragments are not followed.
    let mut ping = ping_to_vip();
    ping[ETH + 6..ETH + 8].copy_from_slice(&0x2000u16.to_be_bytes());
    refill_ip(&mut ping);
    assert_dropped(&mut dp, "ICMP fragment", &ping, 0, Drop::IpFragment.into());
}

#[test]
fn bad_l4_headers_and_checksums_are_dropped() {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let good = Seg::from_client(40003, "S").frame();
    let t = ETH + IP;

    let mut f = good.clone();
    f[t + 16] ^= 0x01;
    assert_dropped(&mut dp, "TCP checksum", &f, 0, Drop::L4BadChecksum.into());
    let mut s = Seg::from_client(40003, "PA");
    s.payload = b"data".to_vec();
    let mut f = s.frame();
    let last = f.len() - 1;
    f[last] ^= 0x20; // payload corrupted in flight
    assert_dropped(
        &mut dp,
        "TCP payload corrupted",
        &f,
        0,
        Drop::L4BadChecksum.into(),
    );

    let udp = udp_frame(
        (CLIENT_MAC, CLIENT_PORT_MAC),
        (CLIENT_IP, 5000),
        (VIP, 80),
        b"query",
    );
    let mut f = udp.clone();
    f[t + 6] ^= 0x01;
    assert!(f[t + 6..t + 8] != [0, 0], "still a checksum, not 'none'");
    assert_dropped(&mut dp, "UDP checksum", &f, 0, Drop::L4BadChecksum.into());

    for doff in [0x00u8, 0x40, 0xF0] {
        let mut f = good.clone();
        f[t + 12] = doff;
        assert_dropped(
            &mut dp,
            &format!("TCP data offset {doff:#x}"),
            &f,
            0,
            Wire::TcpBadDataOffset.into(),
        );
    }
    // TCP segment of 19 bytes.
    let mut f = good[..t + 19].to_vec();
    f[ETH + 2..ETH + 4].copy_from_slice(&39u16.to_be_bytes());
    refill_ip(&mut f);
    assert_dropped(&mut dp, "TCP truncated", &f, 0, Wire::TcpTruncated.into());

    for flags in ["SF", "SR", "", "F", "FR", "P", "FPU"] {
        let f = Seg::from_client(40004, flags).frame();
        assert_dropped(
            &mut dp,
            &format!("TCP flags {flags:?}"),
            &f,
            0,
            Wire::TcpBadFlags.into(),
        );
    }

    for len in [0u16, 7, 14] {
        // The datagram carries 5 bytes: length 13 is right, 14 runs past the IP payload.
        let mut f = udp.clone();
        f[t + 4..t + 6].copy_from_slice(&len.to_be_bytes());
        assert_dropped(
            &mut dp,
            &format!("UDP length {len}"),
            &f,
            0,
            Wire::UdpBadLength.into(),
        );
    }
    let mut f = udp[..t + 7].to_vec();
    f[ETH + 2..ETH + 4].copy_from_slice(&27u16.to_be_bytes());
    refill_ip(&mut f);
    assert_dropped(&mut dp, "UDP truncated", &f, 0, Wire::UdpTruncated.into());

    let mut f = udp[..t + 7].to_vec();
    f[ETH + 2..ETH + 4].copy_from_slice(&27u16.to_be_bytes());
    f[ETH + 9] = 1;
    refill_ip(&mut f);
    assert_dropped(&mut dp, "ICMP truncated", &f, 0, Wire::IcmpTruncated.into());

    let mut ping = ping_to_vip();
    ping[t + 2] ^= 0x01;
    assert_dropped(
        &mut dp,
        "ICMP echo checksum",
        &ping,
        0,
        Drop::L4BadChecksum.into(),
    );
}

#[test]
fn unwanted_frames_are_dropped() {
    // Without kernel twins: with them, other ethertypes and multicast go up instead (`punt`).
    let mut dp: Datapath<VecBuf> = datapath_from(&without_twins(LAB_CONFIG), 0, 1, 1 << 16);

    for flags in ["A", "PA", "FA", "R", "RA", "SA"] {
        let mut s = Seg::from_client(40005, flags);
        s.ack = 777;
        if flags.contains('P') {
            s.payload = b"GET / HTTP/1.0\r\n\r\n".to_vec();
        }
        assert_dropped(
            &mut dp,
            &format!("{flags} without connection"),
            &s.frame(),
            0,
            Drop::NoConn.into(),
        );
    }
    // A server's packet to a LIP port with no connection.
    let mut s = Seg::from_client(80, "SA");
    s.macs = (RS1_MAC, SERVER_PORT_MAC);
    s.src = (RS1, 80);
    s.dst = (LIP1, 5000);
    assert_dropped(
        &mut dp,
        "reply without connection",
        &s.frame(),
        1,
        Drop::NoConn.into(),
    );

    let mut s = Seg::from_client(40006, "S");
    s.dst.1 = 81;
    assert_dropped(
        &mut dp,
        "SYN to a VIP port without service",
        &s.frame(),
        0,
        Drop::NoService.into(),
    );
    let mut s = Seg::from_client(40006, "S");
    s.dst.0 = Ipv4Addr::new(192, 0, 2, 1);
    assert_dropped(
        &mut dp,
        "SYN to a foreign address",
        &s.frame(),
        0,
        Drop::IpNotForUs.into(),
    );

    let mut gre = Seg::from_client(40006, "S").frame();
    gre[ETH + 9] = 47;
    refill_ip(&mut gre);
    assert_dropped(
        &mut dp,
        "GRE to the VIP",
        &gre,
        0,
        Drop::ProtoUnsupported.into(),
    );

    for ethertype in [0x8100u16, 0x88CC, 0x0000] {
        let mut f = Seg::from_client(40006, "S").frame();
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        assert_dropped(
            &mut dp,
            &format!("ethertype {ethertype:#06x}"),
            &f,
            0,
            Drop::EtherTypeUnsupported.into(),
        );
    }
    // An IPv4 packet labelled IPv6 is IPv6 the datapath cannot read (`inet6`).
    let mut f = Seg::from_client(40006, "S").frame();
    f[12..14].copy_from_slice(&0x86DDu16.to_be_bytes());
    assert_dropped(&mut dp, "ipv4 as ipv6", &f, 0, Drop::Ipv6Malformed.into());

    // With a kernel twin (the default), the same frames go up to it unchanged, on their own port.
    let mut up: Datapath<VecBuf> = lab_datapath();
    for ethertype in [0x8100u16, 0x88CC] {
        let mut f = Seg::from_client(40006, "S").frame();
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        match run(&mut up, &f, &meta(0)) {
            Out::ToKernel(0, b) => assert_eq!(b, f, "{ethertype:#06x} changed on its way up"),
            other => panic!("ethertype {ethertype:#06x} with a twin: {other:?}"),
        }
    }

    let mut s = Seg::from_client(40007, "S");
    s.macs.1 = OTHER_MAC;
    assert_dropped(
        &mut dp,
        "frame to another MAC",
        &s.frame(),
        0,
        Drop::L2NotForUs.into(),
    );
    // The server port's MAC arriving on the client port is not for that port either.
    s.macs.1 = SERVER_PORT_MAC;
    assert_dropped(
        &mut dp,
        "frame to the other port's MAC",
        &s.frame(),
        0,
        Drop::L2NotForUs.into(),
    );

    // The NIC's verdicts are trusted.
    let f = Seg::from_client(40008, "S").frame();
    let bad_ip = RxMeta {
        ip_csum: gateway::packet::CsumStatus::Bad,
        ..meta(0)
    };
    let before = dp.l3.stats.dropped(Drop::IpBadChecksumHw.into());
    assert!(matches!(
        run(&mut dp, &f, &bad_ip),
        Out::Drop(DropReason::Dp(Drop::IpBadChecksumHw))
    ));
    assert_eq!(
        dp.l3.stats.dropped(Drop::IpBadChecksumHw.into()),
        before + 1
    );
    let bad_l4 = RxMeta {
        l4_csum: gateway::packet::CsumStatus::Bad,
        ..meta(0)
    };
    assert!(matches!(
        run(&mut dp, &f, &bad_l4),
        Out::Drop(DropReason::Dp(Drop::L4BadChecksum))
    ));
    assert_eq!(dp.fwd.table().len(), 0);

    // After all this the datapath still forwards a good SYN.
    expect_tx(run(&mut dp, &f, &meta(0)), 1);
    assert_eq!(dp.fwd.table().len(), 1);
}

/// The lab config plus a default route through a client-side router.
fn routed_config() -> String {
    format!("{LAB_CONFIG}\n[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"{ROUTER_IP}\"\nport = \"client\"\n")
}

fn routed_datapath(capacity: u32) -> Datapath<VecBuf> {
    let mut dp = datapath_from(&routed_config(), 0, 1, capacity);
    dp.l3.learn_from_peer(ROUTER_IP, ROUTER_MAC, 0);
    dp
}

fn rs_mac(rs: Ipv4Addr) -> MacAddr {
    if rs == RS1 {
        RS1_MAC
    } else {
        RS2_MAC
    }
}

/// Client addresses reached through the router: anything but 0/8, 10/8, 127/8 and class D/E.
fn client_ip() -> impl Strategy<Value = Ipv4Addr> {
    (1u8..224, any::<[u8; 3]>())
        .prop_filter("not local", |(a, _)| *a != 10 && *a != 127)
        .prop_map(|(a, r)| Ipv4Addr::new(a, r[0], r[1], r[2]))
}

/// One TCP exchange through FullNAT: SYN, SYN-ACK, then data each way. Checks the rewritten tuples,
/// the checksums and the payloads at every step.
fn tcp_round_trip(
    cip: Ipv4Addr,
    cport: u16,
    syn_data: &[u8],
    up: &[u8],
    down: &[u8],
) -> Result<(), TestCaseError> {
    let mut dp = routed_datapath(1024);
    let mut syn = Seg::from_client(cport, "S");
    syn.macs = (ROUTER_MAC, CLIENT_PORT_MAC);
    syn.src.0 = cip;
    syn.payload = syn_data.to_vec();
    let out = expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1);
    let (lip, rs, lport, rport, payload) = check_sent(&out);
    prop_assert!(lip == LIP1 || lip == LIP2);
    prop_assert!(rs == RS1 || rs == RS2);
    prop_assert_eq!(rport, 80);
    prop_assert_eq!(&out[0..6], &rs_mac(rs).0[..]);
    prop_assert_eq!(
        &payload[..],
        syn_data,
        "SYN payload moved intact past the TOA option"
    );
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!()
    };
    prop_assert_eq!((t.sequence_number(), t.syn(), t.ack()), (1000, true, false));
    let toa = t
        .options()
        .windows(8)
        .any(|w| w[..4] == [254, 8, (cport >> 8) as u8, cport as u8] && w[4..] == cip.octets());
    prop_assert!(toa, "TOA carries the client: {:?}", t.options());

    // The server answers to LIP:lport; the client sees VIP:80.
    let mut synack = Seg::from_client(80, "SA");
    synack.macs = (rs_mac(rs), SERVER_PORT_MAC);
    synack.src = (rs, 80);
    synack.dst = (lip, lport);
    synack.seq = 5000;
    synack.ack = 1001 + syn_data.len() as u32;
    let back = expect_tx(run(&mut dp, &synack.frame(), &meta(1)), 0);
    prop_assert_eq!(check_sent(&back), (VIP, cip, 80, cport, Vec::new()));
    prop_assert_eq!(&back[0..6], &ROUTER_MAC.0[..]);
    prop_assert_eq!(&back[6..12], &CLIENT_PORT_MAC.0[..]);

    let mut data = syn.clone();
    data.flags = "PA";
    data.seq = synack.ack;
    data.ack = 5001;
    data.payload = up.to_vec();
    let out = expect_tx(run(&mut dp, &data.frame(), &meta(0)), 1);
    prop_assert_eq!(check_sent(&out), (lip, rs, lport, 80, up.to_vec()));

    let mut reply = synack.clone();
    reply.flags = "PA";
    reply.seq = 5001;
    reply.ack = data.seq + up.len() as u32;
    reply.payload = down.to_vec();
    let back = expect_tx(run(&mut dp, &reply.frame(), &meta(1)), 0);
    prop_assert_eq!(check_sent(&back), (VIP, cip, 80, cport, down.to_vec()));
    prop_assert_eq!(dp.fwd.table().len(), 1);
    prop_assert_eq!(dp.l3.stats.total_drops(), 0);
    Ok(())
}

fn udp_round_trip(cip: Ipv4Addr, cport: u16, up: &[u8], down: &[u8]) -> Result<(), TestCaseError> {
    let mut dp = routed_datapath(1024);
    let f = udp_frame((ROUTER_MAC, CLIENT_PORT_MAC), (cip, cport), (VIP, 80), up);
    let out = expect_tx(run(&mut dp, &f, &meta(0)), 1);
    let (lip, rs, lport, rport, payload) = check_sent(&out);
    prop_assert!((lip == LIP1 || lip == LIP2) && (rs == RS1 || rs == RS2) && rport == 80);
    prop_assert_eq!(&payload[..], up);
    let r = udp_frame((rs_mac(rs), SERVER_PORT_MAC), (rs, 80), (lip, lport), down);
    let back = expect_tx(run(&mut dp, &r, &meta(1)), 0);
    prop_assert_eq!(check_sent(&back), (VIP, cip, 80, cport, down.to_vec()));
    // A second datagram reuses the connection.
    let out = expect_tx(run(&mut dp, &f, &meta(0)), 1);
    prop_assert_eq!(check_sent(&out), (lip, rs, lport, 80, up.to_vec()));
    prop_assert_eq!(dp.fwd.table().len(), 1);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn fullnat_tcp_restores_tuples_and_payloads(
        cip in client_ip(), cport in 1u16.., syn_data in proptest::collection::vec(any::<u8>(), 0..4),
        up in proptest::collection::vec(any::<u8>(), 0..600),
        down in proptest::collection::vec(any::<u8>(), 0..1400),
    ) {
        tcp_round_trip(cip, cport, &syn_data, &up, &down)?;
    }

    #[test]
    fn fullnat_udp_restores_tuples_and_payloads(
        cip in client_ip(), cport in 1u16..,
        up in proptest::collection::vec(any::<u8>(), 0..1400),
        down in proptest::collection::vec(any::<u8>(), 0..1400),
    ) {
        udp_round_trip(cip, cport, &up, &down)?;
    }
}

/// Frames the random-input properties start from: the valid kinds the datapath knows.
fn seeds() -> Vec<(u16, Vec<u8>)> {
    let mut syn = Seg::from_client(40100, "S");
    syn.payload = b"x".to_vec();
    let mut arp = vec![0u8; 60];
    gateway::wire::arp::write_request(&mut arp, CLIENT_MAC, CLIENT_IP, VIP).unwrap();
    let ping = ping_to_vip();
    vec![
        (0, syn.frame()),
        (0, Seg::from_client(40100, "PA").frame()),
        (
            0,
            udp_frame(
                (CLIENT_MAC, CLIENT_PORT_MAC),
                (CLIENT_IP, 5000),
                (VIP, 80),
                b"datagram",
            ),
        ),
        (0, arp),
        (0, ping),
        // IPv6 (`inet6`, with `IPV6_SERVICES`): a DR SYN, a TUN datagram, a solicitation for the
        // VIP.
        (0, ipv6_frame(true, b"x")),
        (0, ipv6_frame(false, b"datagram")),
        (0, {
            let vip6: std::net::Ipv6Addr = "2001:db8:10::100".parse().unwrap();
            let mut f = vec![0u8; 128];
            let n = gateway::wire::icmpv6::write_neighbor_solicit(
                &mut f[14..],
                "2001:db8:10::2".parse().unwrap(),
                gateway::wire::icmpv6::solicited_node(vip6),
                vip6,
                CLIENT_MAC,
            )
            .unwrap();
            f[..6].copy_from_slice(&CLIENT_PORT_MAC.0);
            f[6..12].copy_from_slice(&CLIENT_MAC.0);
            f[12..14].copy_from_slice(&[0x86, 0xdd]);
            f.truncate(14 + n);
            f
        }),
    ]
}

/// The IPv4 seeds come first: their header bytes, once mutated, get a fresh checksum.
const IPV4_SEEDS: usize = 5;

/// An IPv6 frame from the client to the IPv6 VIP: a TCP SYN to port 80, or a UDP datagram to 53.
fn ipv6_frame(tcp: bool, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0).ipv6(
        "2001:db8:10::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
        "2001:db8:10::100"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
        64,
    );
    let mut v = Vec::new();
    if tcp {
        b.tcp(40100, 80, 1, 64240)
            .syn()
            .write(&mut v, payload)
            .unwrap();
    } else {
        b.udp(5000, 53).write(&mut v, payload).unwrap();
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes on either port, as received or as handed over by a peer, never panic, and
    /// every frame ends in exactly one outcome.
    #[test]
    fn random_bytes_never_panic(
        frames in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..200), 0u16..2, any::<bool>()), 1..16),
    ) {
        let mut dp: Datapath<VecBuf> = datapath_from(LAB_CONFIG, 0, 1, 256);
        let mut received = 0;
        for (f, port, from_peer) in frames.iter() {
            let m = RxMeta { port: *port, from_peer: *from_peer, ..Default::default() };
            let _ = run(&mut dp, f, &m);
            // A frame handed over by a peer was counted by the worker that received it.
            received += u64::from(!*from_peer);
            prop_assert_eq!(dp.l3.stats.rx_packets, received);
        }
        dp.tick(1_000_000);
    }

    /// Valid frames with one byte changed and a random cut never panic.
    #[test]
    fn mutated_frames_never_panic(
        edits in proptest::collection::vec(
            (0usize..8, any::<usize>(), any::<u8>(), 0usize..200, any::<bool>()), 1..16),
    ) {
        let config = gateway::testkit::dual_stack(LAB_CONFIG) + gateway::testkit::IPV6_SERVICES;
        let mut dp: Datapath<VecBuf> = datapath_from(&config, 0, 1, 256);
        let seeds = seeds();
        let mut received = 0;
        for (which, idx, val, cut, from_peer) in edits.into_iter() {
            let (port, mut f) = seeds[which].clone();
            let i = idx % f.len();
            f[i] = val;
            let v4 = which < IPV4_SEEDS;
            if v4 && (ETH..ETH + IP).contains(&i) && i != ETH && i != ETH + 10 && i != ETH + 11 {
                refill_ip(&mut f);
            }
            f.truncate(cut.min(f.len()));
            let m = RxMeta { port, from_peer, ..Default::default() };
            let _ = run(&mut dp, &f, &m);
            received += u64::from(!from_peer);
            prop_assert_eq!(dp.l3.stats.rx_packets, received);
        }
    }
}

#[test]
fn a_reply_on_the_wrong_worker_goes_to_the_owner() {
    let mut w0: Datapath<VecBuf> = datapath_from(LAB_CONFIG, 0, 2, 4096);
    let mut w1: Datapath<VecBuf> = datapath_from(LAB_CONFIG, 1, 2, 4096);
    let mut checked = 0;
    // Client ports whose connections worker 0 owns (the others' SYNs are handed to worker 1 first:
    // `client_packets_on_any_worker_reach_the_owner`).
    let owned_by_0 = (41000u16..)
        .filter(|&p| gateway::forward::owner::owner_of_client(CLIENT_IP, p, 2) == 0)
        .take(16);
    for cport in owned_by_0 {
        let out = expect_tx(
            run(&mut w0, &Seg::from_client(cport, "S").frame(), &meta(0)),
            1,
        );
        let (lip, rs, lport, _, _) = check_sent(&out);
        let mut synack = Seg::from_client(80, "SA");
        synack.macs = (rs_mac(rs), SERVER_PORT_MAC);
        synack.src = (rs, 80);
        synack.dst = (lip, lport);
        synack.ack = 1001;
        let reply = synack.frame();

        let handed = match run(&mut w1, &reply, &meta(1)) {
            Out::ToWorker(0, f) => f,
            other => panic!("worker 1 must hand lport {lport} to worker 0, got {other:?}"),
        };
        assert_eq!(handed, reply, "handed over unchanged");
        assert_eq!(w1.fwd.table().len(), 0);

        let peer = RxMeta {
            from_peer: true,
            ..meta(1)
        };
        let back = expect_tx(run(&mut w0, &handed, &peer), 0);
        assert_eq!(check_sent(&back), (VIP, CLIENT_IP, 80, cport, Vec::new()));
        checked += 1;

        // A peer's packet that the owner does not know either is dropped, never bounced back.
        let mut stray = synack.clone();
        stray.dst.1 = lport ^ 1;
        match run(&mut w0, &stray.frame(), &peer) {
            Out::Drop(DropReason::Dp(Drop::NoConn)) => {}
            Out::Tx(..) => {} // lport ^ 1 may belong to another live connection of worker 0
            other => panic!("stray handed-over packet: {other:?}"),
        }
    }
    assert_eq!(checked, 16);
    assert_eq!(
        w0.l3.stats.steer_hits, 0,
        "from_peer replies are not counted as steering hits"
    );
    assert_eq!(w1.l3.stats.handoff_out, 16);
}

/// The reply segment of connection (lip, rs, lport) with `flags`.
fn from_server(lip: Ipv4Addr, rs: Ipv4Addr, lport: u16, flags: &'static str) -> Seg {
    let mut s = Seg::from_client(80, flags);
    s.macs = (rs_mac(rs), SERVER_PORT_MAC);
    s.src = (rs, 80);
    s.dst = (lip, lport);
    s.ack = 1001;
    s
}

/// Runs `frame` on worker `at` of `workers`; a packet handed over is run on its target as the
/// worker's ring would (from_peer). Returns the final outcome and whether it was handed over.
fn run_on(workers: &mut [Datapath<VecBuf>], at: usize, frame: &[u8], port: u16) -> (Out, bool) {
    match run(&mut workers[at], frame, &meta(port)) {
        Out::ToWorker(w, f) => {
            assert_ne!(usize::from(w), at, "never handed to itself");
            let peer = RxMeta {
                from_peer: true,
                ..meta(port)
            };
            let out = run(&mut workers[usize::from(w)], &f, &peer);
            assert!(
                !matches!(out, Out::ToWorker(..)),
                "a handed-over packet is never handed on"
            );
            (out, true)
        }
        other => (other, false),
    }
}

/// Issue 19: a client's packets may arrive on any worker (af_packet's fanout, a NIC hashing some
/// packets differently); each one reaches the worker that owns the connection, the SYN before the
/// connection exists included, for 2, 3 and 4 workers, TCP and UDP.
#[test]
fn client_packets_on_any_worker_reach_the_owner() {
    for n in 2..=4usize {
        let mut ws: Vec<Datapath<VecBuf>> = (0..n)
            .map(|w| datapath_from(LAB_CONFIG, w as u16, n, 4096))
            .collect();
        let mut handed = 0;
        for cport in 42000u16..42040 {
            let owner = gateway::forward::owner::owner_of_client(CLIENT_IP, cport, n);
            // The SYN arrives on the worker after the owner.
            let first = (owner + 1) % n;
            let (out, h) = run_on(&mut ws, first, &Seg::from_client(cport, "S").frame(), 0);
            handed += usize::from(h);
            let (lip, rs, lport, _, _) = check_sent(&expect_tx(out, 1));
            assert_eq!(lport as usize % n, owner, "the owner chose the local port");
            assert!(
                ws[owner]
                    .fwd
                    .table()
                    .iter()
                    .any(|(_, c)| c.client().sport == cport),
                "created on the owner"
            );
            let (out, _) = run_on(
                &mut ws,
                first,
                &from_server(lip, rs, lport, "SA").frame(),
                1,
            );
            expect_tx(out, 0);
            // Every later client packet on every worker in turn.
            for (i, flags) in ["A", "AP", "AP", "AP", "FA"].into_iter().enumerate() {
                let mut seg = Seg::from_client(cport, flags);
                seg.seq = 1001 + i as u32;
                seg.ack = 1;
                let (out, h) = run_on(&mut ws, i % n, &seg.frame(), 0);
                handed += usize::from(h);
                let (src, dst, sport, dport, _) = check_sent(&expect_tx(out, 1));
                assert_eq!((src, dst, sport, dport), (lip, rs, lport, 80));
            }
            assert_eq!(
                ws.iter().map(|w| w.fwd.table().len()).sum::<usize>(),
                usize::from(cport - 42000) + 1,
                "one connection per flow, on its owner"
            );
        }
        // UDP: the first datagram creates the connection on the owner wherever it arrives.
        for cport in 43000u16..43020 {
            let owner = gateway::forward::owner::owner_of_client(CLIENT_IP, cport, n);
            for k in 0..n {
                let f = udp_frame(
                    (CLIENT_MAC, CLIENT_PORT_MAC),
                    (CLIENT_IP, cport),
                    (VIP, 80),
                    b"q",
                );
                let (out, _) = run_on(&mut ws, (owner + 1 + k) % n, &f, 0);
                let (_, _, sport, _, _) = check_sent(&expect_tx(out, 1));
                assert_eq!(sport as usize % n, owner);
            }
        }
        let created: u64 = ws.iter().map(|w| w.fwd.stats.created).sum();
        assert_eq!(created, 60, "{n} workers: one connection per flow");
        let client_handoffs: u64 = ws.iter().map(|w| w.fwd.stats.handoff_client).sum();
        assert_eq!(client_handoffs as usize, handed + 20 * (n - 1));
        for w in &ws {
            assert_eq!(
                w.l3.stats.total_drops(),
                0,
                "{n} workers: {:?}",
                w.l3.stats.drop_list()
            );
        }
    }
}

/// Connection (lip, rs, lport) of client port `cport` on a 1-worker datapath, walked to the state
/// the server closing first leaves it in (TIME_WAIT).
fn open_and_close(dp: &mut Datapath<VecBuf>, cport: u16) -> (Ipv4Addr, Ipv4Addr, u16) {
    let c = open(dp, cport);
    close(dp, cport, c);
    c
}

/// A FullNAT connection from client port `cport` through its handshake: its (LIP, RS, lport).
fn open(dp: &mut Datapath<VecBuf>, cport: u16) -> (Ipv4Addr, Ipv4Addr, u16) {
    open_to(dp, 80, cport)
}

/// `open` to VIP:`vport`.
fn open_to(dp: &mut Datapath<VecBuf>, vport: u16, cport: u16) -> (Ipv4Addr, Ipv4Addr, u16) {
    let from_client = |flags| {
        let mut seg = Seg::from_client(cport, flags);
        seg.dst.1 = vport;
        seg
    };
    let out = expect_tx(run(dp, &from_client("S").frame(), &meta(0)), 1);
    let (lip, rs, lport, _, _) = check_sent(&out);
    expect_tx(
        run(dp, &from_server(lip, rs, lport, "SA").frame(), &meta(1)),
        0,
    );
    let mut ack = from_client("A");
    ack.ack = 1;
    expect_tx(run(dp, &ack.frame(), &meta(0)), 1);
    (lip, rs, lport)
}

/// Closes `open`'s connection, the server first, into TIME_WAIT.
fn close(dp: &mut Datapath<VecBuf>, cport: u16, c: (Ipv4Addr, Ipv4Addr, u16)) {
    close_to(dp, 80, cport, c)
}

/// `close` of `open_to`'s connection to VIP:`vport`.
fn close_to(
    dp: &mut Datapath<VecBuf>,
    vport: u16,
    cport: u16,
    (lip, rs, lport): (Ipv4Addr, Ipv4Addr, u16),
) {
    expect_tx(
        run(dp, &from_server(lip, rs, lport, "FA").frame(), &meta(1)),
        0,
    );
    let mut fin = Seg::from_client(cport, "FA");
    fin.dst.1 = vport;
    fin.ack = 2;
    expect_tx(run(dp, &fin.frame(), &meta(0)), 1);
    expect_tx(
        run(dp, &from_server(lip, rs, lport, "A").frame(), &meta(1)),
        0,
    );
}

/// The lab service with real server `quiesced` at weight 0 (and expire_nodest_conn `nodest`), as a
/// snapshot following the datapath's current one.
fn with_weight0(
    dp: &Datapath<VecBuf>,
    quiesced: Ipv4Addr,
    nodest: bool,
) -> std::sync::Arc<gateway::forward::ServiceTable> {
    let text = LAB_CONFIG
        .replacen(
            &format!("address = \"{quiesced}\"\n"),
            &format!("address = \"{quiesced}\"\nweight = 0\n"),
            1,
        )
        .replacen(
            "scheduler = \"wrr\"",
            &format!("scheduler = \"wrr\"\nexpire_nodest_conn = {nodest}"),
            1,
        );
    next_snapshot(dp, &text)
}

/// The services of config `text` as the snapshot following the datapath's current one (what the
/// control plane sends after a change), carrying its shared state over.
fn next_snapshot(
    dp: &Datapath<VecBuf>,
    text: &str,
) -> std::sync::Arc<gateway::forward::ServiceTable> {
    let v = gateway::config::Config::parse(text)
        .unwrap()
        .validate()
        .unwrap();
    std::sync::Arc::new(
        gateway::forward::ServiceTable::new(2, v.services, Some(dp.fwd.services())).unwrap(),
    )
}

/// Issue 18: a SYN on a client port the gateway still holds in TIME_WAIT is a new connection: it is
/// scheduled afresh (so a quiesced server gets none), counted, and gets a fresh local port;
/// with `conn_reuse_mode` 0 it follows the old entry, as IPVS.
#[test]
fn a_syn_on_a_reused_tuple_in_time_wait_is_scheduled_afresh() {
    for mode in [1u8, 0] {
        let mut dp: Datapath<VecBuf> = lab_datapath();
        dp.fwd.set_conn_reuse_mode(mode);
        let (lip, rs, lport) = open_and_close(&mut dp, 44000);
        let state = dp.fwd.table().iter().next().unwrap().1.state();
        assert_eq!(state, gateway::conn::State::TimeWait);
        let s = with_weight0(&dp, rs, false);
        dp.fwd.set_services(s).unwrap();
        let out = expect_tx(
            run(&mut dp, &Seg::from_client(44000, "S").frame(), &meta(0)),
            1,
        );
        let (lip2, rs2, lport2, _, _) = check_sent(&out);
        if mode == 1 {
            assert_ne!(rs2, rs, "the quiesced server gets no new connection");
            assert_ne!(
                (lip2, lport2),
                (lip, lport),
                "a fresh local address and port"
            );
            assert_eq!(dp.fwd.stats.created, 2, "counted as a new connection");
            assert_eq!(dp.fwd.stats.resched_closed, 1);
            // The old entry no longer answers to the client's tuple; it only holds its LIP:lport
            // toward the old server for the rest of TIME_WAIT (the server may still hold it).
            let parked = gateway::forward::fullnat::PARKED;
            let (old, new): (Vec<_>, Vec<_>) = dp
                .fwd
                .table()
                .iter()
                .map(|(_, c)| *c)
                .partition(|c| c.flags().contains(parked));
            assert_eq!((old.len(), new.len()), (1, 1));
            assert_eq!(new[0].state(), gateway::conn::State::SynRecv);
            assert_eq!(new[0].client().sport, 44000);
            let r = old[0].reply().unwrap();
            assert_eq!((r.src_ip(), r.dst_ip(), r.dport), (rs, lip, lport));
            // A late reply of the old connection is dropped, and the old tuple stays held.
            let late = from_server(lip, rs, lport, "A").frame();
            assert!(matches!(
                run(&mut dp, &late, &meta(1)),
                Out::Drop(DropReason::Dp(Drop::NoConn))
            ));
            assert_eq!(dp.fwd.table().len(), 2);
            // Both leave the table by their timers (TIME_WAIT's, SYN_RECV's), each counted
            // once in `conns_expired`: the parked one was not counted when it was parked.
            assert_eq!(dp.fwd.stats.expired, 0);
            dp.tick(1_000_000);
            dp.tick(1_001_000);
            assert_eq!(dp.fwd.table().len(), 0);
            assert_eq!(dp.fwd.stats.expired, 2);
        } else {
            assert_eq!(
                (lip2, rs2, lport2),
                (lip, rs, lport),
                "mode 0 follows the old entry"
            );
            assert_eq!(dp.fwd.stats.created, 1);
            assert_eq!(dp.fwd.stats.resched_closed, 0);
        }
    }
}

/// A SYN that finds a handshake the server answered: a retransmission (same ISN) follows the entry,
/// another ISN is a new connection (the client gave the first one up), scheduled afresh.
#[test]
fn a_syn_with_another_isn_on_an_unfinished_handshake_is_a_new_connection() {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let out = expect_tx(
        run(&mut dp, &Seg::from_client(46000, "S").frame(), &meta(0)),
        1,
    );
    let (lip, rs, lport, _, _) = check_sent(&out);
    // Before the server answers, a second SYN cannot be told from a retransmission: followed.
    let out = expect_tx(
        run(&mut dp, &Seg::from_client(46000, "S").frame(), &meta(0)),
        1,
    );
    assert_eq!(check_sent(&out).2, lport);
    expect_tx(
        run(
            &mut dp,
            &from_server(lip, rs, lport, "SA").frame(),
            &meta(1),
        ),
        0,
    );
    // The retransmission (seq 1000, acknowledged as 1001) follows the entry.
    let out = expect_tx(
        run(&mut dp, &Seg::from_client(46000, "S").frame(), &meta(0)),
        1,
    );
    assert_eq!((check_sent(&out).0, check_sent(&out).2), (lip, lport));
    assert_eq!(dp.fwd.stats.created, 1);
    // Another ISN: scheduled afresh, on a fresh local port.
    let mut syn = Seg::from_client(46000, "S");
    syn.seq = 777_000;
    let out = expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1);
    assert_ne!((check_sent(&out).0, check_sent(&out).2), (lip, lport));
    assert_eq!(dp.fwd.stats.created, 2);
    assert_eq!(dp.fwd.stats.resched_new_isn, 1);
}

/// A real server that answers a FullNAT SYN with a bare ACK holds the LIP:lport in TIME_WAIT
/// from an earlier connection (its PAWS refused the client's timestamps). The ACK reaches the
/// client, whose RST (at that ACK number) ends the server's TIME_WAIT, and whose SYN, sent again
/// at once, follows the connection to the same LIP:lport: the connection stays as it was.
/// Before, the RST closed it and the SYN was scheduled afresh on another local port, as likely
/// held in TIME_WAIT, where the client's next try came a second later.
#[test]
fn a_servers_time_wait_on_the_local_port_keeps_the_connection_for_the_clients_retry() {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let syn = Seg::from_client(46200, "S");
    let (lip, rs, lport, _, _) = check_sent(&expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1));
    let mut challenge = from_server(lip, rs, lport, "A");
    challenge.seq = 5555;
    challenge.ack = 777_777;
    let out = check_sent(&expect_tx(run(&mut dp, &challenge.frame(), &meta(1)), 0));
    assert_eq!((out.1, out.3), (CLIENT_IP, 46200));
    let mut rst = Seg::from_client(46200, "R");
    rst.seq = 777_777;
    let out = check_sent(&expect_tx(run(&mut dp, &rst.frame(), &meta(0)), 1));
    assert_eq!(
        (out.0, out.1, out.2),
        (lip, rs, lport),
        "the RST reaches the server"
    );
    let c = dp.fwd.table().iter().next().unwrap().1;
    assert_eq!(c.state(), gateway::conn::State::SynRecv);
    // The client's SYN again: the same LIP:lport, no new connection.
    let again = check_sent(&expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1));
    assert_eq!((again.0, again.1, again.2), (lip, rs, lport));
    let s = dp.fwd.stats;
    assert_eq!(
        (s.created, s.resched_closed, s.server_time_wait),
        (1, 0, 1),
        "{s:?}"
    );
    let synack = from_server(lip, rs, lport, "SA");
    expect_tx(run(&mut dp, &synack.frame(), &meta(1)), 0);
    let mut ack = Seg::from_client(46200, "A");
    ack.seq = 1001;
    ack.ack = 1;
    expect_tx(run(&mut dp, &ack.frame(), &meta(0)), 1);
    let c = dp.fwd.table().iter().next().unwrap().1;
    assert_eq!(c.state(), gateway::conn::State::Established);
    // Once the server has answered, a client's RST ends the connection as ever.
    let mut rst = Seg::from_client(46200, "R");
    rst.seq = 1001;
    expect_tx(run(&mut dp, &rst.frame(), &meta(0)), 1);
    let c = dp.fwd.table().iter().next().unwrap().1;
    assert_eq!(c.state(), gateway::conn::State::Close);
}

/// ARP requests among the frames the datapath generated: (port, Ethernet destination, target
/// address).
fn arp_requests(dp: &mut Datapath<VecBuf>) -> Vec<(u16, MacAddr, Ipv4Addr)> {
    generated(dp)
        .into_iter()
        .filter(|(_, f)| f.len() >= ETH + 28 && f[12..14] == [0x08, 0x06] && f[ETH + 7] == 1)
        .map(|(port, f)| {
            let dst = MacAddr([f[0], f[1], f[2], f[3], f[4], f[5]]);
            let target = Ipv4Addr::new(f[ETH + 24], f[ETH + 25], f[ETH + 26], f[ETH + 27]);
            (port, dst, target)
        })
        .collect()
}

/// The client's SYN again after its server refused the first from a TIME_WAIT (a bare ACK)
/// leaves the server's neighbour alone: the ACK came from its MAC. Before, each such SYN was
/// taken for a retransmission to a silent server and probed it: in the lab, at 20k connections
/// a second through two local addresses, 250 probes a second. A SYN its server left silent since
/// the last frame from that server's MAC still probes it (a MAC changed without a gratuitous ARP).
#[test]
fn a_servers_refusal_from_time_wait_does_not_make_its_neighbour_suspect() {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    dp.tick(1000);
    // Three connections at 1000: round robin gives the first and the third the same server.
    let conns: Vec<_> = (46300..46303)
        .map(|cport| {
            let syn = Seg::from_client(cport, "S");
            check_sent(&expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1))
        })
        .collect();
    let ((lip, rs, lport, ..), (_, silent, ..)) = (conns[0].clone(), conns[1].clone());
    let (lip3, rs3, lport3, ..) = conns[2].clone();
    assert_eq!(rs3, rs);
    assert_ne!(silent, rs);
    // At 1100 the first connection's SYN-ACK confirms the server's neighbour.
    dp.tick(1100);
    expect_tx(
        run(
            &mut dp,
            &from_server(lip, rs, lport, "SA").frame(),
            &meta(1),
        ),
        0,
    );
    // At 1200 the same server refuses the third's SYN with an ACK (within the datapath's
    // interval between confirmations of one MAC), the client resets and sends its SYN again.
    dp.tick(1200);
    let mut refusal = from_server(lip3, rs3, lport3, "A");
    refusal.ack = 777_777;
    expect_tx(run(&mut dp, &refusal.frame(), &meta(1)), 0);
    let mut rst = Seg::from_client(46302, "R");
    rst.seq = 777_777;
    expect_tx(run(&mut dp, &rst.frame(), &meta(0)), 1);
    // Taken for a refusal from TIME_WAIT: the handshake still waits for the server's SYN-ACK.
    assert_eq!(dp.fwd.stats.server_time_wait, 1);
    let third = Tuple::new(CLIENT_IP, 46302, VIP, 80, PROTO_TCP);
    let (id, _) = dp.fwd.table().lookup(&third).unwrap();
    let c = dp.fwd.table().get(id).unwrap();
    assert_eq!((c.state(), c.user2), (gateway::conn::State::SynRecv, 0));
    generated(&mut dp);
    dp.tick(1210);
    let again = check_sent(&expect_tx(
        run(&mut dp, &Seg::from_client(46302, "S").frame(), &meta(0)),
        1,
    ));
    assert_eq!((again.0, again.1, again.2), (lip3, rs3, lport3));
    assert_eq!(arp_requests(&mut dp), vec![], "no probe of {rs}");
    assert_eq!(dp.l3.neigh().counters.suspected, 0);
    // The second connection's server never answered: the client's retransmission probes it.
    dp.tick(2000);
    expect_tx(
        run(&mut dp, &Seg::from_client(46301, "S").frame(), &meta(0)),
        1,
    );
    // A unicast probe (NUD PROBE), to the MAC in use, on the server side.
    assert_eq!(arp_requests(&mut dp), vec![(1, rs_mac(silent), silent)]);
    assert_eq!(dp.l3.neigh().counters.suspected, 1);
}

/// A server's bare ACK to a FullNAT connection it has answered with a SYN-ACK, before the
/// client's ACK: both about an earlier handshake on the same LIP:lport that the gateway let go (a
/// half-open entry evicted under a SYN flood, its port given to the next SYN at once), as a lab
/// flood showed. IPVS's state table takes the connection to ESTABLISHED, which held it, its local
/// port and its server's active count for 15 minutes; it stays in SYN_RECV, and the client's ACK
/// still ends the handshake.
#[test]
fn a_servers_stale_answer_leaves_the_handshake_in_syn_recv() {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    dp.tick(1000);
    let (lip, rs, lport, ..) = check_sent(&expect_tx(
        run(&mut dp, &Seg::from_client(46400, "S").frame(), &meta(0)),
        1,
    ));
    let state = |dp: &Datapath<VecBuf>| {
        let t = Tuple::new(CLIENT_IP, 46400, VIP, 80, PROTO_TCP);
        let (id, _) = dp.fwd.table().lookup(&t).unwrap();
        dp.fwd.table().get(id).unwrap().state()
    };
    // The old handshake's SYN-ACK, sent again, then the server's ACK to this SYN, out of the old
    // handshake's window: both go on to the client.
    for flags in ["SA", "A"] {
        let mut seg = from_server(lip, rs, lport, flags);
        seg.ack = 5555;
        expect_tx(run(&mut dp, &seg.frame(), &meta(1)), 0);
    }
    assert_eq!(state(&dp), gateway::conn::State::SynRecv);
    let s = &dp.fwd.stats;
    assert_eq!((s.server_stale_answer, s.server_time_wait), (1, 0));
    // The client's ACK ends the handshake.
    let mut ack = Seg::from_client(46400, "A");
    ack.seq = 1001;
    expect_tx(run(&mut dp, &ack.frame(), &meta(0)), 1);
    assert_eq!(state(&dp), gateway::conn::State::Established);
}

/// The same on DR and TUN, where the gateway never sees the server's answer: a SYN whose ISN is
/// not the first SYN's finds a handshake its client gave up (a server that never answered, a
/// method changed under it) and is scheduled afresh; before this it followed the old entry for as
/// long as the client retried, each SYN refreshing it.
#[test]
fn dr_and_tun_take_a_syn_with_another_isn_before_the_clients_ack_as_a_new_connection() {
    for fwd in ["dr", "tun"] {
        let text = LAB_CONFIG
            .replacen(
                "address = \"10.20.0.11\"\n",
                &format!("address = \"10.20.0.11\"\nmode = \"{fwd}\"\n"),
                1,
            )
            .replacen(
                "address = \"10.20.0.12\"\n",
                &format!("address = \"10.20.0.12\"\nmode = \"{fwd}\"\n"),
                1,
            );
        let mut dp: Datapath<VecBuf> = datapath_from(&text, 0, 1, 4096);
        for _ in 0..2 {
            expect_tx(
                run(&mut dp, &Seg::from_client(46100, "S").frame(), &meta(0)),
                1,
            );
        }
        assert_eq!(dp.fwd.stats.created, 1, "{fwd}: a retransmission follows");
        let mut syn = Seg::from_client(46100, "S");
        syn.seq = 777_000;
        expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1);
        assert_eq!(dp.fwd.stats.resched_new_isn, 1, "{fwd}");
        assert_eq!(dp.fwd.stats.created, 2, "{fwd}");
        // Its retransmission follows the new entry; once the client has acknowledged the
        // server's SYN-ACK (ESTABLISHED), a SYN with yet another ISN is no longer this rule's.
        expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1);
        let mut ack = Seg::from_client(46100, "A");
        ack.seq = 777_001;
        ack.ack = 1;
        expect_tx(run(&mut dp, &ack.frame(), &meta(0)), 1);
        syn.seq = 888_000;
        expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1);
        let s = dp.fwd.stats;
        assert_eq!((s.created, s.resched_new_isn), (2, 1), "{fwd}: {s:?}");
        assert_eq!(dp.fwd.table().len(), 1, "{fwd}");
    }
}

/// Checksums are verified once: a frame the NIC flagged good (IPv4 header, TCP) and a frame handed
/// over by the worker that verified it are not verified again, and the handed-over one is not
/// counted twice in `rx`; a frame the NIC said nothing about is verified in software.
#[test]
fn checksums_are_verified_once_and_handed_over_frames_counted_once() {
    use gateway::packet::CsumStatus;
    let mut bad_ip = Seg::from_client(49000, "S").frame();
    bad_ip[ETH + 10] ^= 0xFF; // the IPv4 header checksum
    let mut bad_tcp = Seg::from_client(49001, "S").frame();
    bad_tcp[ETH + IP + 16] ^= 0xFF; // the TCP checksum
    for (frame, nic_good, dropped) in [
        (&bad_ip, None, Some(DropReason::Wire(Wire::Ipv4BadChecksum))),
        (&bad_tcp, None, Some(DropReason::Dp(Drop::L4BadChecksum))),
        (&bad_ip, Some(true), None),
        (&bad_tcp, Some(true), None),
    ] {
        let mut dp: Datapath<VecBuf> = lab_datapath();
        let (ip_csum, l4_csum) = match nic_good {
            Some(_) => (CsumStatus::Good, CsumStatus::Good),
            None => (CsumStatus::Unknown, CsumStatus::Unknown),
        };
        let m = RxMeta {
            ip_csum,
            l4_csum,
            ..meta(0)
        };
        match (run(&mut dp, frame, &m), dropped) {
            (Out::Drop(r), Some(want)) => assert_eq!(r, want),
            (Out::Tx(1, _), None) => {}
            (other, want) => panic!("{nic_good:?}: {other:?}, wanted drop {want:?}"),
        }
    }
    // Handed over: trusted (the peer verified it) and not counted again.
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let peer = RxMeta {
        from_peer: true,
        ..meta(0)
    };
    assert!(matches!(run(&mut dp, &bad_tcp, &peer), Out::Tx(1, _)));
    assert_eq!(dp.l3.stats.rx_packets, 0);
}

/// A client's SYN from client port `cport` and its server's SYN-ACK both go through.
fn handshake(dp: &mut Datapath<VecBuf>, cport: u16) {
    let out = expect_tx(run(dp, &Seg::from_client(cport, "S").frame(), &meta(0)), 1);
    let (lip, rs, lport, _, _) = check_sent(&out);
    expect_tx(
        run(dp, &from_server(lip, rs, lport, "SA").frame(), &meta(1)),
        0,
    );
}

/// A flood of replies toward clients whose MAC is unknown: what waits for ARP is bounded per worker
/// (`neigh_held_full` counts the rest), everything held is given up after the retries
/// (`neigh_unresolved`), the held count comes back to zero, and a known client is served
/// throughout.
#[test]
fn a_flood_toward_unresolved_neighbours_is_bounded_and_recovers() {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let mut held = 0;
    for round in 0..2u16 {
        for host in 10..210u8 {
            let cip = Ipv4Addr::new(10, 10, 0, host);
            let mut syn = Seg::from_client(50000 + round, "S");
            syn.src.0 = cip;
            syn.macs.0 = MacAddr([2, 0, 0, 0, 1, host]);
            let out = match run(&mut dp, &syn.frame(), &meta(0)) {
                Out::Tx(1, f) => f,
                Out::Drop(r) => panic!("SYN from {cip} dropped: {r:?}"),
                other => panic!("{other:?}"),
            };
            let (lip, rs, lport, _, _) = check_sent(&out);
            if let Out::Held = run(
                &mut dp,
                &from_server(lip, rs, lport, "SA").frame(),
                &meta(1),
            ) {
                held += 1;
            }
        }
    }
    let max = gateway::net::neigh::NeighConfig::default().max_held;
    assert_eq!(held, max, "held up to the bound");
    assert_eq!(dp.l3.neigh().held(), max);
    assert_eq!(
        dp.l3.stats.dropped(DropReason::Dp(Drop::NeighHeldFull)),
        400 - max as u64
    );
    // A known client is served meanwhile.
    handshake(&mut dp, 51000);
    // The retries run out: everything held is dropped and counted; the pool is whole again.
    for now in (0..=5000).step_by(10) {
        dp.tick(now);
    }
    assert_eq!(dp.l3.neigh().held(), 0);
    assert_eq!(
        dp.l3.stats.dropped(DropReason::Dp(Drop::NeighUnresolved)),
        max as u64
    );
    handshake(&mut dp, 51001);
}

/// A worker whose local ports are all held, most by connections in TIME_WAIT (`capacity` above
/// the ports: 1024 ports on each of 2 LIPs, 5000 entries), takes a new connection in place of the
/// oldest of them, as a full table does (`evicted_time_wait`), instead of refusing its SYN
/// (`ports_exhausted`), which cost the client a second and every new client the same until
/// TIME_WAIT's 120 s ran out.
#[test]
fn a_worker_out_of_local_ports_takes_the_place_of_the_oldest_time_wait() {
    let text = format!("{LAB_CONFIG}\n[conn]\nport_range = [1024, 2047]\n");
    let mut dp: Datapath<VecBuf> = datapath_from(&text, 0, 1, 5000);
    let mut cport = 10_000u16;
    // Connections opened and closed until one takes the place of the oldest: when the ports
    // run out, about 4096 tuples (2 LIPs, 2 servers), before the table's 5000 entries.
    while dp.fwd.stats.evicted_time_wait == 0 {
        assert!(cport < 15_000, "never out of ports");
        let c = open(&mut dp, cport);
        close(&mut dp, cport, c);
        cport += 1;
    }
    assert!(dp.fwd.table().len() < 4100, "{}", dp.fwd.table().len());
    // The oldest gave way, and maybe a few more, until a port the allocator tries was free.
    let s = dp.fwd.stats;
    assert_eq!(s.ports_exhausted, 0);
    assert!((1..=4).contains(&s.evicted_time_wait), "{s:?}");
    // And so on: 500 more, none refused, the table no fuller.
    for cport in cport..cport + 500 {
        let c = open(&mut dp, cport);
        close(&mut dp, cport, c);
    }
    assert_eq!(dp.fwd.stats.ports_exhausted, 0);
    assert!(dp.fwd.table().len() < 4100);
    // About one connection given way per connection taken: the allocator finds the freed port.
    assert!(dp.fwd.stats.evicted_time_wait <= 510, "{:?}", dp.fwd.stats);
}

/// One worker, 1024 local ports on one LIP (10.20.0.200) shared by two services: VIP:8080 to
/// 10.20.0.11:80 and VIP:80 to 10.20.0.12:80; a table of 4096; the clock at 1 s.
fn one_lip_two_servers() -> Datapath<VecBuf> {
    let services = LAB_CONFIG.find("[[service]]").unwrap();
    let text = format!(
        "{}[conn]\nport_range = [1024, 2047]\n\n\
         [[service]]\nvip = \"10.10.0.100\"\nport = 8080\nprotocol = \"tcp\"\nscheduler = \"rr\"\n\
         local_addresses = [\"10.20.0.200\"]\n[[service.real]]\naddress = \"10.20.0.11\"\nport = 80\n\n\
         [[service]]\nvip = \"10.10.0.100\"\nport = 80\nprotocol = \"tcp\"\nscheduler = \"rr\"\n\
         local_addresses = [\"10.20.0.200\"]\n[[service.real]]\naddress = \"10.20.0.12\"\n",
        &LAB_CONFIG[..services]
    );
    let mut dp: Datapath<VecBuf> = datapath_from(&text, 0, 1, 4096);
    dp.tick(1_000);
    dp
}

/// Out of ports toward one real server while the oldest connections in TIME_WAIT are another
/// server's: their ports, on the same LIP, free nothing for this one. They give way until one
/// of this server's does (connections in TIME_WAIT only, past the first four evictions), as when
/// one of two servers dies under short connections; before, the fifth was not tried and the SYN
/// was refused (`ports_exhausted`).
#[test]
fn out_of_ports_the_oldest_time_wait_of_another_server_gives_way_to_one_of_this_servers() {
    let mut dp = one_lip_two_servers();
    // The oldest in TIME_WAIT: 8 connections of VIP:8080, to 10.20.0.11.
    for cport in 30_000..30_008u16 {
        let c = open_to(&mut dp, 8080, cport);
        assert_eq!(c.1, Ipv4Addr::new(10, 20, 0, 11));
        close_to(&mut dp, 8080, cport, c);
    }
    // Every port of the LIP toward 10.20.0.12 held in TIME_WAIT by VIP:80's connections.
    for cport in 10_000..10_000 + 1024u16 {
        let c = open(&mut dp, cport);
        assert_eq!(c.1, Ipv4Addr::new(10, 20, 0, 12));
        close(&mut dp, cport, c);
    }
    assert_eq!(dp.fwd.table().len(), 8 + 1024);
    let out = expect_tx(
        run(&mut dp, &Seg::from_client(40_000, "S").frame(), &meta(0)),
        1,
    );
    let (lip, rs, _, _, _) = check_sent(&out);
    assert_eq!(
        (lip, rs),
        (Ipv4Addr::new(10, 20, 0, 200), Ipv4Addr::new(10, 20, 0, 12))
    );
    let s = dp.fwd.stats;
    assert_eq!((s.ports_exhausted, s.evicted_time_wait), (0, 9), "{s:?}");
}

/// Past the first four evictions a connection out of ports ends no handshake: with every port
/// toward its server held by established connections, it takes the place of connections in
/// TIME_WAIT only (another server's, which free nothing for it) and is then refused, the
/// half-open connections left alone.
#[test]
fn out_of_ports_past_four_evictions_no_handshake_is_ended() {
    let mut dp = one_lip_two_servers();
    // VIP:8080, to 10.20.0.11: 6 connections in TIME_WAIT, then 3 handshakes in progress.
    for cport in 30_000..30_006u16 {
        let c = open_to(&mut dp, 8080, cport);
        close_to(&mut dp, 8080, cport, c);
    }
    for cport in 31_000..31_003u16 {
        let mut syn = Seg::from_client(cport, "S");
        syn.dst.1 = 8080;
        expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1);
    }
    // Every port toward 10.20.0.12 held by VIP:80's established connections.
    for cport in 10_000..10_000 + 1024u16 {
        open(&mut dp, cport);
    }
    assert_eq!(dp.fwd.table().half_open(), 3);
    let out = run(&mut dp, &Seg::from_client(40_000, "S").frame(), &meta(0));
    assert!(matches!(out, Out::Drop(..)), "{out:?}");
    let s = dp.fwd.stats;
    assert_eq!(
        (s.ports_exhausted, s.evicted_time_wait, s.evicted_embryonic),
        (1, 6, 0),
        "{s:?}"
    );
    assert_eq!(dp.fwd.table().half_open(), 3);
}

/// Out of ports on a search window of long-lived connections, with free ports past it: the
/// connection evicted to make room is another service's (its port is of another LIP), so its port
/// cannot serve, and the search from the cursor, which the failed one moved past the window,
/// comes next and finds a free port. Before, evictions followed one another until the SYN was
/// refused (`ports_exhausted`), the free ports untried.
#[test]
fn a_freed_port_that_cannot_serve_is_followed_by_a_search() {
    let services = LAB_CONFIG.find("[[service]]").unwrap();
    let text = format!(
        "{}[conn]\nport_range = [1024, 2047]\n\n\
         [[service]]\nvip = \"10.10.0.100\"\nport = 80\nprotocol = \"tcp\"\nscheduler = \"rr\"\n\
         local_addresses = [\"10.20.0.200\"]\n[[service.real]]\naddress = \"10.20.0.11\"\n\n\
         [[service]]\nvip = \"10.10.0.100\"\nport = 8080\nprotocol = \"tcp\"\nscheduler = \"rr\"\n\
         local_addresses = [\"10.20.0.201\"]\n[[service.real]]\naddress = \"10.20.0.11\"\nport = 80\n",
        &LAB_CONFIG[..services]
    );
    let mut dp: Datapath<VecBuf> = datapath_from(&text, 0, 1, 4096);
    dp.tick(1_000);
    // The other service (VIP:8080, LIP .201): 4 connections in TIME_WAIT, the oldest.
    for cport in 30_000..30_004u16 {
        let c = open_to(&mut dp, 8080, cport);
        assert_eq!(c.0, Ipv4Addr::new(10, 20, 0, 201));
        close_to(&mut dp, 8080, cport, c);
    }
    // VIP:80 (LIP .200, 1024 ports): the first 64 ports held by connections that stay open,
    // the other 960 by connections reset, which then expire (CLOSE), leaving their ports free.
    for cport in 10_000..10_064u16 {
        open(&mut dp, cport);
    }
    for cport in 20_000..20_960u16 {
        open(&mut dp, cport);
        let mut rst = Seg::from_client(cport, "R");
        rst.seq = 1001;
        expect_tx(run(&mut dp, &rst.frame(), &meta(0)), 1);
    }
    dp.tick(30_000);
    assert_eq!(dp.fwd.table().len(), 4 + 64, "the reset ones expired");
    // The pool's cursor has come round to the 64 held ports, a whole search's candidates.
    let out = expect_tx(
        run(&mut dp, &Seg::from_client(40_000, "S").frame(), &meta(0)),
        1,
    );
    let (lip, _, lport, _, _) = check_sent(&out);
    assert_eq!(lip, Ipv4Addr::new(10, 20, 0, 200));
    assert!(
        lport >= 1024 + 64,
        "a free port past the held ones: {lport}"
    );
    let s = dp.fwd.stats;
    assert_eq!((s.ports_exhausted, s.evicted_time_wait), (0, 1), "{s:?}");
}

/// A burst of new connections toward one neighbour not resolved yet (a real server after a start
/// or a configuration change, a client) waits for its answer: 40 SYN-ACKs toward one unknown
/// client are all held, none dropped (`neigh_pending_full`). With 8 held a neighbour, 400 wrk
/// connections starting at once toward a real server a worker had not resolved lost SYNs, each a
/// second of its client's (Linux holds 101, `unres_qlen`).
#[test]
fn a_burst_toward_one_unresolved_neighbour_is_held_whole() {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let cip = Ipv4Addr::new(10, 10, 0, 77);
    let mut held = 0;
    for cport in 52000..52040 {
        let mut syn = Seg::from_client(cport, "S");
        syn.src.0 = cip;
        syn.macs.0 = MacAddr([2, 0, 0, 0, 1, 77]);
        let (lip, rs, lport, _, _) =
            check_sent(&expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1));
        let answer = from_server(lip, rs, lport, "SA").frame();
        held += u32::from(matches!(run(&mut dp, &answer, &meta(1)), Out::Held));
    }
    assert_eq!(held, 40);
    assert_eq!(dp.l3.neigh().held(), 40);
    assert_eq!(
        dp.l3.stats.dropped(DropReason::Dp(Drop::NeighPendingFull)),
        0
    );
}

/// DR (the gateway sees only the client's side): a SYN after the client's FIN finds FIN_WAIT, the
/// last state the gateway can see; `conn_reuse_mode` bit 2 reschedules it, bit 1 alone does not
/// (IPVS). The same on NAT, from TIME_WAIT.
#[test]
fn dr_and_nat_follow_the_same_reuse_rules() {
    for (mode, fwd) in [(1u8, "dr"), (3, "dr"), (1, "nat")] {
        let text = LAB_CONFIG.replacen(
            "address = \"10.20.0.11\"\n",
            &format!("address = \"10.20.0.11\"\nmode = \"{fwd}\"\n"),
            1,
        );
        let text = text.replacen(
            "address = \"10.20.0.12\"\n",
            &format!("address = \"10.20.0.12\"\nmode = \"{fwd}\"\n"),
            1,
        );
        let mut dp: Datapath<VecBuf> = datapath_from(&text, 0, 1, 4096);
        dp.fwd.set_conn_reuse_mode(mode);
        expect_tx(
            run(&mut dp, &Seg::from_client(47000, "S").frame(), &meta(0)),
            1,
        );
        if fwd == "nat" {
            // Replies come back through the gateway (CIP:cport as the server sees it).
            let c = dp.fwd.table().iter().next().unwrap().1.reply().unwrap();
            let mut r = Seg::from_client(80, "SA");
            r.macs = (rs_mac(c.src_ip()), SERVER_PORT_MAC);
            r.src = (c.src_ip(), 80);
            r.dst = (CLIENT_IP, 47000);
            expect_tx(run(&mut dp, &r.frame(), &meta(1)), 0);
            let mut ack = Seg::from_client(47000, "A");
            ack.ack = 1;
            expect_tx(run(&mut dp, &ack.frame(), &meta(0)), 1);
            r.flags = "FA";
            expect_tx(run(&mut dp, &r.frame(), &meta(1)), 0);
            let mut fin = Seg::from_client(47000, "FA");
            fin.ack = 2;
            expect_tx(run(&mut dp, &fin.frame(), &meta(0)), 1);
            r.flags = "A";
            expect_tx(run(&mut dp, &r.frame(), &meta(1)), 0);
        } else {
            let mut ack = Seg::from_client(47000, "A");
            ack.ack = 1;
            expect_tx(run(&mut dp, &ack.frame(), &meta(0)), 1);
            let mut fin = Seg::from_client(47000, "FA");
            fin.ack = 1;
            expect_tx(run(&mut dp, &fin.frame(), &meta(0)), 1);
        }
        let state = dp.fwd.table().iter().next().unwrap().1.state();
        let want = if fwd == "nat" {
            gateway::conn::State::TimeWait
        } else {
            gateway::conn::State::FinWait
        };
        assert_eq!(state, want, "{fwd}");
        expect_tx(
            run(&mut dp, &Seg::from_client(47000, "S").frame(), &meta(0)),
            1,
        );
        let s = dp.fwd.stats;
        let resched = s.resched_closed + s.resched_fin_wait;
        let expected = u64::from(fwd == "nat" || mode & 2 != 0);
        assert_eq!(resched, expected, "{fwd} mode {mode}: {s:?}");
        assert_eq!(s.created, 1 + expected, "{fwd} mode {mode}");
    }
}

/// UDP has no SYN: a datagram of a connection whose server was removed starts a new connection
/// when the service expires such connections (`expire_nodest_conn`, as IPVS), and follows the old
/// entry otherwise; a quiesced server keeps its UDP flows (IPVS).
#[test]
fn udp_to_a_removed_server_is_scheduled_afresh_with_expire_nodest_conn() {
    for nodest in [false, true] {
        let mut dp: Datapath<VecBuf> = lab_datapath();
        let f = udp_frame(
            (CLIENT_MAC, CLIENT_PORT_MAC),
            (CLIENT_IP, 48000),
            (VIP, 80),
            b"q",
        );
        let (_, rs, _, _, _) = check_sent(&expect_tx(run(&mut dp, &f, &meta(0)), 1));
        // The UDP service (the second) without `rs`; the TCP one unchanged.
        let udp_at = LAB_CONFIG.find("protocol = \"udp\"").unwrap();
        let (tcp_part, udp_part) = LAB_CONFIG.split_at(udp_at);
        let udp_part = udp_part
            .replacen(&format!("[[service.real]]\naddress = \"{rs}\"\n"), "", 1)
            .replacen(
                "scheduler = \"rr\"",
                &format!("scheduler = \"rr\"\nexpire_nodest_conn = {nodest}"),
                1,
            );
        let text = format!("{tcp_part}{udp_part}");
        let s = next_snapshot(&dp, &text);
        dp.fwd.set_services(s).unwrap();
        let (_, rs2, _, _, _) = check_sent(&expect_tx(run(&mut dp, &f, &meta(0)), 1));
        assert_eq!(rs2 != rs, nodest, "expire_nodest_conn {nodest}");
        assert_eq!(dp.fwd.stats.resched_udp_removed, u64::from(nodest));
        assert_eq!(dp.fwd.stats.created, 1 + u64::from(nodest));
    }
}

/// A SYN that finds an ESTABLISHED entry of a quiesced server follows it unless
/// `expire_nodest_conn` is on (IPVS); one whose server was removed is always scheduled afresh.
#[test]
fn a_reused_syn_toward_a_quiesced_or_removed_server() {
    for nodest in [false, true] {
        let mut dp: Datapath<VecBuf> = lab_datapath();
        let out = expect_tx(
            run(&mut dp, &Seg::from_client(45000, "S").frame(), &meta(0)),
            1,
        );
        let (_, rs, _, _, _) = check_sent(&out);
        let s = with_weight0(&dp, rs, nodest);
        dp.fwd.set_services(s).unwrap();
        let out = expect_tx(
            run(&mut dp, &Seg::from_client(45000, "S").frame(), &meta(0)),
            1,
        );
        let (_, rs2, _, _, _) = check_sent(&out);
        assert_eq!(rs2 != rs, nodest, "expire_nodest_conn {nodest}");
        assert_eq!(dp.fwd.stats.resched_quiesced, u64::from(nodest));
    }
    // Removed: the snapshot keeps only the other server.
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let out = expect_tx(
        run(&mut dp, &Seg::from_client(45001, "S").frame(), &meta(0)),
        1,
    );
    let (_, rs, _, _, _) = check_sent(&out);
    let text = LAB_CONFIG.replacen(&format!("[[service.real]]\naddress = \"{rs}\"\n"), "", 1);
    let s = next_snapshot(&dp, &text);
    dp.fwd.set_services(s).unwrap();
    let out = expect_tx(
        run(&mut dp, &Seg::from_client(45001, "S").frame(), &meta(0)),
        1,
    );
    let (_, rs2, _, _, _) = check_sent(&out);
    assert_ne!(rs2, rs);
    assert_eq!(dp.fwd.stats.resched_removed, 1);
}

const SHORT_TIMEOUTS: &str = "\n[conn.timeouts]\nestablished = 2\nsyn_sent = 2\nsyn_recv = 2\nfin_wait = 2\n\
    time_wait = 2\nclose = 2\nclose_wait = 2\nlast_ack = 2\nlisten = 2\nsynack = 2\nudp = 2\nnone = 2\n";

/// Ticks every 10 ms from `from` to `to` (inclusive), collecting generated frames.
fn tick_until(dp: &mut Datapath<VecBuf>, from: u64, to: u64) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut now = from;
    while now <= to {
        dp.tick(now);
        out.extend(generated(dp));
        now += 10;
    }
    out
}

#[test]
fn an_idle_established_connection_is_reset_on_both_sides_and_its_port_freed() {
    let cfg = format!("{LAB_CONFIG}{SHORT_TIMEOUTS}");
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 1024);
    dp.tick(1000);

    let syn = Seg::from_client(42000, "S");
    let out = expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1);
    let (lip, rs, lport, _, _) = check_sent(&out);
    let mut synack = Seg::from_client(80, "SA");
    synack.macs = (rs_mac(rs), SERVER_PORT_MAC);
    synack.src = (rs, 80);
    synack.dst = (lip, lport);
    synack.seq = 5000;
    synack.ack = 1001;
    expect_tx(run(&mut dp, &synack.frame(), &meta(1)), 0);
    let mut ack = Seg::from_client(42000, "A");
    ack.seq = 1001;
    ack.ack = 5001;
    expect_tx(run(&mut dp, &ack.frame(), &meta(0)), 1);
    let reply_tuple = Tuple::new(rs, 80, lip, lport, PROTO_TCP);
    let (id, _) = dp.fwd.table().lookup(&reply_tuple).expect("connection");
    assert_eq!(
        dp.fwd.table().get(id).unwrap().state(),
        gateway::conn::State::Established
    );

    // Idle for less than the timeout: nothing happens.
    assert!(tick_until(&mut dp, 1000, 2900).is_empty());
    assert_eq!(dp.fwd.table().len(), 1);
    // Past it (plus the wheel's granularity): two RSTs, connection gone.
    let rsts = tick_until(&mut dp, 2910, 3200);
    assert_eq!(dp.fwd.table().len(), 0, "expired");
    assert_eq!(dp.fwd.stats.expired, 1);
    assert_eq!(dp.fwd.stats.rst_sent, 2);
    assert_eq!(rsts.len(), 2, "one RST each way");

    let mut to_client = None;
    let mut to_server = None;
    for (port, f) in &rsts {
        let (src, dst, sport, dport, payload) = check_sent(f);
        assert!(payload.is_empty());
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!()
        };
        assert!(t.rst() && !t.syn() && !t.fin());
        if *port == 0 {
            assert_eq!(
                (src, dst, sport, dport),
                (VIP, CLIENT_IP, 80, 42000),
                "to the client, from the VIP"
            );
            assert_eq!(&f[0..6], &CLIENT_MAC.0);
            to_client = Some(t.sequence_number());
        } else {
            assert_eq!(*port, 1);
            assert_eq!(
                (src, dst, sport, dport),
                (lip, rs, lport, 80),
                "to the server, from the LIP"
            );
            assert_eq!(&f[0..6], &rs_mac(rs).0);
            to_server = Some(t.sequence_number());
        }
    }
    // In each receiver's window: the last ACK number its side sent.
    assert_eq!(to_client, Some(5001));
    assert_eq!(to_server, Some(1001));

    // The port is free: the server's old tuple matches nothing, and the client can connect again.
    assert!(dp.fwd.table().lookup(&reply_tuple).is_none());
    assert!(matches!(
        run(&mut dp, &synack.frame(), &meta(1)),
        Out::Drop(DropReason::Dp(Drop::NoConn))
    ));
    expect_tx(run(&mut dp, &syn.frame(), &meta(0)), 1);
    assert_eq!(dp.fwd.table().len(), 1);
}

/// A client's connection from `cport` through its handshake to ESTABLISHED (its ACK forwarded).
fn establish(dp: &mut Datapath<VecBuf>, cport: u16) {
    handshake(dp, cport);
    expect_tx(run(dp, &Seg::from_client(cport, "A").frame(), &meta(0)), 1);
}

#[test]
fn a_table_full_of_established_connections_refuses_until_they_expire() {
    let cfg = format!("{LAB_CONFIG}{SHORT_TIMEOUTS}");
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 64);
    let cap = dp.fwd.table().capacity();
    for round in 0..2u16 {
        let t0 = 1000 + u64::from(round) * 10_000;
        dp.tick(t0);
        let full = dp.l3.stats.dropped(Drop::ConnTableFull.into());
        for i in 0..cap as u16 {
            establish(&mut dp, 20_000 + round * 1000 + i);
        }
        assert_eq!(dp.fwd.table().len(), cap);
        assert_eq!(dp.fwd.table().half_open(), 0);
        // Nothing half-open to take the place of: refused.
        let f = Seg::from_client(30_000 + round, "S").frame();
        assert!(matches!(
            run(&mut dp, &f, &meta(0)),
            Out::Drop(DropReason::Dp(Drop::ConnTableFull))
        ));
        assert_eq!(dp.l3.stats.dropped(Drop::ConnTableFull.into()), full + 1);
        // They expire (established timeout 2 s here), and the table takes connections again.
        tick_until(&mut dp, t0 + 10, t0 + 2_500);
        assert_eq!(dp.fwd.table().len(), 0, "round {round}: all expired");
    }
    assert_eq!(dp.fwd.stats.created, 2 * cap as u64);
    assert_eq!(dp.fwd.stats.evicted_embryonic, 0);
}

/// A table full of connections in TIME_WAIT (clients that close and come back, as wrk with
/// `Connection: close` does) takes a new connection in place of the one that entered TIME_WAIT
/// first, as Linux destroys TIME_WAIT sockets past `tcp_max_tw_buckets`, instead of refusing
/// every SYN for TIME_WAIT's 120 s. Its local port goes back to the pool.
#[test]
fn a_table_full_of_time_wait_connections_takes_new_ones_in_place_of_the_oldest() {
    let mut dp: Datapath<VecBuf> = datapath_from(LAB_CONFIG, 0, 1, 64);
    let cap = dp.fwd.table().capacity();
    dp.tick(1000);
    // Opened in one order, closed in the other: the order they entered TIME_WAIT counts.
    let opened: Vec<_> = (0..cap as u16).map(|i| open(&mut dp, 20_000 + i)).collect();
    for (i, c) in opened.into_iter().enumerate().rev() {
        close(&mut dp, 20_000 + i as u16, c);
    }
    let t = dp.fwd.table();
    assert_eq!(t.len(), cap);
    assert!(t
        .iter()
        .all(|(_, c)| c.state() == gateway::conn::State::TimeWait));
    for k in 0..3u16 {
        expect_tx(
            run(
                &mut dp,
                &Seg::from_client(30_000 + k, "S").frame(),
                &meta(0),
            ),
            1,
        );
    }
    let t = dp.fwd.table();
    assert_eq!(t.len(), cap);
    assert_eq!(dp.fwd.stats.evicted_time_wait, 3);
    // They left the table: counted as every connection that does (`conns_expired`).
    assert_eq!(dp.fwd.stats.expired, 3);
    assert_eq!(dp.l3.stats.dropped(Drop::ConnTableFull.into()), 0);
    // The three that closed first (the last three opened) are the ones gone.
    let client = |cport: u16| Tuple::new(CLIENT_IP, cport, VIP, 80, PROTO_TCP);
    let last = 20_000 + cap as u16 - 1;
    for cport in last - 2..=last {
        assert!(t.lookup(&client(cport)).is_none(), "{cport} still held");
    }
    assert!(t.lookup(&client(last - 3)).is_some());
    assert!(t.lookup(&client(20_000)).is_some());
    let in_use: u32 = dp.fwd.lip_usage().map(|(_, n)| n).sum();
    assert_eq!(in_use as usize, t.len());
}

/// A UDP flood on a FullNAT UDP service (datagrams no server answers, as from spoofed sources)
/// fills the table for UDP's 300 s; the table, shared with every other service, then takes new
/// connections in place of the oldest unanswered flows (`evicted_udp`, conntrack's early drop of
/// flows not ASSURED) instead of refusing them all. A flow its server answered is never taken.
#[test]
fn a_table_full_of_unanswered_udp_flows_takes_new_connections() {
    let mut dp: Datapath<VecBuf> = datapath_from(LAB_CONFIG, 0, 1, 64);
    let cap = dp.fwd.table().capacity();
    dp.tick(1000);
    // The first flow is answered.
    let f = udp_frame(
        (CLIENT_MAC, CLIENT_PORT_MAC),
        (CLIENT_IP, 20_000),
        (VIP, 80),
        b"q",
    );
    let out = expect_tx(run(&mut dp, &f, &meta(0)), 1);
    let (lip, rs, lport, _, _) = check_sent(&out);
    let r = udp_frame((rs_mac(rs), SERVER_PORT_MAC), (rs, 80), (lip, lport), b"a");
    expect_tx(run(&mut dp, &r, &meta(1)), 0);
    for i in 1..cap as u16 {
        let f = udp_frame(
            (CLIENT_MAC, CLIENT_PORT_MAC),
            (CLIENT_IP, 20_000 + i),
            (VIP, 80),
            b"q",
        );
        expect_tx(run(&mut dp, &f, &meta(0)), 1);
    }
    assert_eq!(dp.fwd.table().len(), cap, "full");
    // A TCP client and a new UDP flow get in, each in place of the oldest unanswered flow.
    expect_tx(
        run(&mut dp, &Seg::from_client(30_000, "S").frame(), &meta(0)),
        1,
    );
    let f = udp_frame(
        (CLIENT_MAC, CLIENT_PORT_MAC),
        (CLIENT_IP, 30_001),
        (VIP, 80),
        b"q",
    );
    expect_tx(run(&mut dp, &f, &meta(0)), 1);
    assert_eq!(dp.fwd.stats.evicted_udp, 2);
    assert_eq!(dp.l3.stats.dropped(Drop::ConnTableFull.into()), 0);
    let t = dp.fwd.table();
    let udp = |cport: u16| Tuple::new(CLIENT_IP, cport, VIP, 80, 17);
    assert!(t.lookup(&udp(20_000)).is_some(), "the answered flow stays");
    for cport in [20_001, 20_002] {
        assert!(t.lookup(&udp(cport)).is_none(), "{cport} still held");
    }
    assert!(t.lookup(&udp(20_003)).is_some());
    let in_use: u32 = dp.fwd.lip_usage().map(|(_, n)| n).sum();
    assert_eq!(in_use as usize, t.len(), "their local ports went with them");
}

/// DR and TUN UDP flows never show their answers: a flow counts as in use from its client's
/// second datagram. A table full of one-datagram flows (a spoofed UDP flood at a DNS service in
/// DR, the classic LVS setup) takes new connections of every service in place of the oldest of
/// them, and the flow in use stays.
#[test]
fn a_table_full_of_one_datagram_dr_flows_takes_new_connections() {
    let cfg = lab_config_udp_dr();
    assert_eq!(cfg.matches("mode = \"dr\"").count(), 2, "{cfg}");
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 64);
    let cap = dp.fwd.table().capacity();
    dp.tick(1000);
    let query = |cport: u16| {
        udp_frame(
            (CLIENT_MAC, CLIENT_PORT_MAC),
            (CLIENT_IP, cport),
            (VIP, 80),
            b"q",
        )
    };
    // The first flow sends twice; every other flow once.
    run(&mut dp, &query(20_000), &meta(0));
    run(&mut dp, &query(20_000), &meta(0));
    for i in 1..cap as u16 {
        run(&mut dp, &query(20_000 + i), &meta(0));
    }
    assert_eq!(dp.fwd.table().len(), cap, "full");
    // A TCP client and a new DR flow get in, each in place of the oldest one-datagram flow.
    expect_tx(
        run(&mut dp, &Seg::from_client(30_000, "S").frame(), &meta(0)),
        1,
    );
    run(&mut dp, &query(30_001), &meta(0));
    assert_eq!(dp.fwd.stats.evicted_udp, 2);
    assert_eq!(dp.l3.stats.dropped(Drop::ConnTableFull.into()), 0);
    let t = dp.fwd.table();
    let udp = |cport: u16| Tuple::new(CLIENT_IP, cport, VIP, 80, 17);
    assert!(t.lookup(&udp(20_000)).is_some(), "the flow in use stays");
    for cport in [20_001, 20_002] {
        assert!(t.lookup(&udp(cport)).is_none(), "{cport} still held");
    }
    for cport in [20_003, 30_001] {
        assert!(t.lookup(&udp(cport)).is_some(), "{cport}");
    }
}

/// A SYN flood from spoofed sources: past `[conn] max_half_open` (half the table by default)
/// each new SYN takes the place of an older half-open connection, so every SYN, the legitimate
/// ones among them, gets in; established connections are never taken and keep forwarding.
#[test]
fn half_open_connections_make_room_and_established_ones_stay() {
    let cfg = format!("{LAB_CONFIG}{SHORT_TIMEOUTS}");
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 256);
    let cap = dp.fwd.table().capacity();
    dp.tick(1000);
    for i in 0..(cap / 4) as u16 {
        establish(&mut dp, 20_000 + i);
    }
    for i in 0..(3 * cap) as u16 {
        let f = Seg::from_client(30_000 + i, "S").frame();
        expect_tx(run(&mut dp, &f, &meta(0)), 1);
    }
    let t = dp.fwd.table();
    assert_eq!(t.half_open(), cap / 2, "the default bound");
    assert_eq!(t.len(), cap / 4 + cap / 2);
    assert_eq!(dp.fwd.stats.evicted_embryonic, (3 * cap - cap / 2) as u64);
    for i in 0..(cap / 4) as u16 {
        let f = Seg::from_client(20_000 + i, "PA").frame();
        expect_tx(run(&mut dp, &f, &meta(0)), 1);
    }
    assert_eq!(dp.l3.stats.dropped(Drop::ConnTableFull.into()), 0);
    assert_eq!(dp.l3.stats.dropped(Drop::HalfOpenLimit.into()), 0);
    // The evicted ones gave their local ports back: what the LIPs hold is what the table holds.
    let in_use: u32 = dp.fwd.lip_usage().map(|(_, n)| n).sum();
    assert_eq!(in_use as usize, dp.fwd.table().len());
}

/// TCP options a SYN may carry, as raw bytes; `ForgedToa` names another client.
#[derive(Clone, Debug)]
enum Opt {
    Mss(u16),
    WindowScale(u8),
    SackOk,
    Timestamp(u32, u32),
    Nop,
    ForgedToa,
}

impl Opt {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Opt::Mss(m) => vec![2, 4, (m >> 8) as u8, *m as u8],
            Opt::WindowScale(s) => vec![3, 3, *s],
            Opt::SackOk => vec![4, 2],
            Opt::Timestamp(a, b) => [&[8u8, 10][..], &a.to_be_bytes(), &b.to_be_bytes()].concat(),
            Opt::Nop => vec![1],
            Opt::ForgedToa => vec![254, 8, 0, 1, 6, 6, 6, 6],
        }
    }
}

fn opt() -> impl Strategy<Value = Opt> {
    prop_oneof![
        (1u16..).prop_map(Opt::Mss),
        (0u8..15).prop_map(Opt::WindowScale),
        Just(Opt::SackOk),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Opt::Timestamp(a, b)),
        Just(Opt::Nop),
        Just(Opt::ForgedToa),
    ]
}

/// The MSS option's value in TCP option bytes, if any.
fn mss_of(opts: &[u8]) -> Option<u16> {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return None,
            1 => i += 1,
            k => {
                let len = usize::from(*opts.get(i + 1)?);
                if k == 2 && len == 4 {
                    return Some(u16::from_be_bytes([opts[i + 2], opts[i + 3]]));
                }
                i += len.max(2);
            }
        }
    }
    None
}

/// The case proptest found: an MSS whose lowered value ends in byte 254, followed by a
/// timestamp option (kind 8), must not read as a second TOA; exactly one TOA is added.
#[test]
fn an_mss_ending_in_254_before_a_timestamp_is_not_a_toa() {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
        .tcp(43000, 80, 1000, 64240)
        .syn()
        .options(&[
            etherparse::TcpOptionElement::MaximumSegmentSize(51718),
            etherparse::TcpOptionElement::Timestamp(0, 0),
        ])
        .unwrap()
        .write(&mut f, &[])
        .unwrap();
    let mut dp: Datapath<VecBuf> = datapath_from(LAB_CONFIG, 0, 1, 256);
    let out = expect_tx(run(&mut dp, &f, &meta(0)), 1);
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!()
    };
    assert_eq!(dp.fwd.stats.toa_added, 1);
    assert_eq!(toa_options(t.options()).len(), 1, "{:?}", t.options());
}

/// The TOA options (kind 254, length 8) of a TCP option list, found by walking it (RFC 9293
/// §3.1): a byte search would also "find" one in an MSS value ending in 254 followed by a
/// timestamp option (kind 8).
fn toa_options(o: &[u8]) -> Vec<&[u8]> {
    let mut toas = Vec::new();
    let mut i = 0;
    while i < o.len() {
        match o[i] {
            0 => break,
            1 => i += 1,
            _ => {
                let len = o.get(i + 1).copied().unwrap_or(0) as usize;
                if len < 2 || i + len > o.len() {
                    break;
                }
                if o[i] == 254 && len == 8 {
                    toas.push(&o[i..i + 8]);
                }
                i += len;
            }
        }
    }
    toas
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Whatever options a SYN has, it is forwarded with valid checksums and its payload intact;
    /// the real server learns only the true client (every forged TOA is overwritten with it); TOA is
    /// added when the header has room and none was forged, and then MSS shrinks by its 8 bytes.
    #[test]
    fn syn_options_and_toa(opts in proptest::collection::vec(opt(), 0..8), payload in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut raw: Vec<u8> = Vec::new();
        let mut n_forged = 0;
        for o in &opts {
            let b = o.bytes();
            if raw.len() + b.len() <= 40 {
                raw.extend(b);
                n_forged += usize::from(matches!(o, Opt::ForgedToa));
            }
        }
        let forged = n_forged > 0;
        while !raw.len().is_multiple_of(4) {
            raw.push(0); // EOL padding
        }
        let mut f = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
            .tcp(43000, 80, 1000, 64240)
            .syn()
            .options_raw(&raw)
            .unwrap()
            .write(&mut f, &payload)
            .unwrap();
        let mut dp: Datapath<VecBuf> = datapath_from(LAB_CONFIG, 0, 1, 256);
        let out = expect_tx(run(&mut dp, &f, &meta(0)), 1);
        let (_, _, _, _, got) = check_sent(&out);
        prop_assert_eq!(&got, &payload);
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!() };
        let o = t.options();
        let toas = toa_options(o);
        let mut want = [254u8, 8, 0, 0, 0, 0, 0, 0];
        want[2..4].copy_from_slice(&43000u16.to_be_bytes());
        want[4..].copy_from_slice(&CLIENT_IP.octets());
        let added = !forged && raw.len() + 8 <= 40;
        if forged || added {
            prop_assert_eq!(toas.len(), n_forged.max(1), "TOAs: {:?}", o);
            for t in &toas {
                prop_assert_eq!(*t, &want[..]);
            }
        } else {
            prop_assert!(toas.is_empty());
            prop_assert_eq!(dp.fwd.stats.toa_skipped, 1);
        }
        prop_assert_eq!(out.len(), f.len() + if added { 8 } else { 0 });
        let before = mss_of(&raw);
        let after = mss_of(o);
        match (before, added) {
            (Some(m), true) => prop_assert_eq!(after, Some(m.saturating_sub(8))),
            _ => prop_assert_eq!(after, before),
        }
    }
}

#[test]
fn ethernet_padding_is_not_forwarded() {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let mut syn = Seg::from_client(44000, "S").frame();
    syn.resize(60, 0xEE); // padded to the Ethernet minimum with junk
    let out = expect_tx(run(&mut dp, &syn, &meta(0)), 1);
    let total = usize::from(u16::from_be_bytes([out[ETH + 2], out[ETH + 3]]));
    assert_eq!(out.len(), ETH + total, "frame ends with the IP packet");
    let (lip, rs, lport, _, payload) = check_sent(&out);
    assert!(payload.is_empty());

    let mut s = Seg::from_client(80, "SA");
    s.macs = (rs_mac(rs), SERVER_PORT_MAC);
    s.src = (rs, 80);
    s.dst = (lip, lport);
    s.ack = 1001;
    let mut f = s.frame();
    f.resize(64, 0xEE);
    let back = expect_tx(run(&mut dp, &f, &meta(1)), 0);
    assert_eq!(back.len(), 54);
    assert_eq!(check_sent(&back), (VIP, CLIENT_IP, 80, 44000, Vec::new()));
}

/// A client that puts two TOA options in its SYN must not get either to the real server (the Linux
/// toa module reads the first one it finds): every forged TOA is overwritten.
#[test]
fn two_forged_toas_are_all_overwritten() {
    let forged = [254u8, 8, 0, 1, 6, 6, 6, 6];
    let mut f = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
        .tcp(43000, 80, 1000, 64240)
        .syn()
        .options_raw(&[forged, forged].concat())
        .unwrap()
        .write(&mut f, &[])
        .unwrap();
    let mut dp: Datapath<VecBuf> = lab_datapath();
    let out = expect_tx(run(&mut dp, &f, &meta(0)), 1);
    check_sent(&out);
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!()
    };
    let spoofed = t
        .options()
        .windows(8)
        .any(|w| w[0] == 254 && w[1] == 8 && w[4..] == [6, 6, 6, 6]);
    assert!(
        !spoofed,
        "a forged client address reaches the server: {:?}",
        t.options()
    );
}
