//! The proxy in a worker's datapath, packet by packet: the lab's FullNAT service with
//! `synproxy = "on"`, the client and real servers played with etherparse.

use crate::datapath::Datapath;

use crate::packet::Verdict;
use crate::packet::{PacketBuf, RxMeta, VecBuf};
use crate::stats::Drop;
use crate::testkit::*;
use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement as Opt, TransportSlice};

fn proxied(mode: &str, extra: &str) -> Datapath<VecBuf> {
    proxied_with(mode, "", extra)
}

/// The lab datapath, its TCP service proxied in `mode` with `svc_keys` more, and `extra` TOML.
fn proxied_with(mode: &str, svc_keys: &str, extra: &str) -> Datapath<VecBuf> {
    let conf = format!(
        "{extra}\n{}",
        LAB_CONFIG.replacen(
            "scheduler = \"wrr\"",
            &format!("scheduler = \"wrr\"\nsynproxy = \"{mode}\"\n{svc_keys}"),
            1
        )
    );
    let mut dp = datapath_from(&conf, 0, 1, 1 << 16);
    dp.tick(5_000);
    dp
}

const CPORT: u16 = 40000;
const CISN: u32 = 1000;
const SISN: u32 = 50_000;
const CTS: u32 = 7777;
const STS: u32 = 90_000;

fn client(flags: &str, seq: u32, ack: u32, opts: &[Opt], data: &[u8]) -> VecBuf {
    client_from(CPORT, flags, seq, ack, opts, data)
}

fn client_from(port: u16, flags: &str, seq: u32, ack: u32, opts: &[Opt], data: &[u8]) -> VecBuf {
    let macs = (CLIENT_MAC, CLIENT_PORT_MAC);
    segment(
        macs,
        (CLIENT_IP, port),
        (VIP, 80),
        flags,
        seq,
        ack,
        500,
        opts,
        data,
    )
}

fn server(flags: &str, lport: u16, seq: u32, ack: u32, opts: &[Opt], data: &[u8]) -> VecBuf {
    // A server's segment always acknowledges.
    let flags = format!("A{flags}");
    let macs = (RS1_MAC, SERVER_PORT_MAC);
    segment(
        macs,
        (RS1, 80),
        (LIP1, lport),
        &flags,
        seq,
        ack,
        100,
        opts,
        data,
    )
}

/// A TCP frame; `flags` in tcpdump letters (S A F R; the ACK number is set with A only).
#[allow(clippy::too_many_arguments)]
fn segment(
    macs: (crate::wire::MacAddr, crate::wire::MacAddr),
    src: (std::net::Ipv4Addr, u16),
    dst: (std::net::Ipv4Addr, u16),
    flags: &str,
    seq: u32,
    ack: u32,
    window: u16,
    opts: &[Opt],
    data: &[u8],
) -> VecBuf {
    let mut v = Vec::new();
    let mut b = PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, seq, window);
    if flags.contains('A') {
        b = b.ack(ack);
    }
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('R') {
        b = b.rst();
    }
    b.options(opts).unwrap().write(&mut v, data).unwrap();
    VecBuf::from_frame(&v)
}

/// What came out, decoded: (port, seq, ack, flags as "SAFRP", window, options, payload), with
/// both checksums checked.
#[derive(Debug)]
struct Out {
    port: u16,
    src: (std::net::Ipv4Addr, u16),
    dst: (std::net::Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: String,
    window: u16,
    opts: Vec<Opt>,
    toa: bool,
    payload: Vec<u8>,
}

fn decode(port: u16, frame: &[u8]) -> Out {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let h = ip.header();
    assert_eq!(
        etherparse::Ipv4Header::from_slice(h.slice())
            .unwrap()
            .0
            .calc_header_checksum(),
        h.header_checksum()
    );
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not TCP")
    };
    assert_eq!(
        t.calc_checksum_ipv4(h.source(), h.destination()).unwrap(),
        t.checksum(),
        "TCP checksum"
    );
    let (flags, opts, toa) = crate::forward::synproxy::tests::flags_and_options(t);
    Out {
        port,
        src: (h.source_addr(), t.source_port()),
        dst: (h.destination_addr(), t.destination_port()),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        flags,
        window: t.window_size(),
        opts,
        toa,
        payload: t.payload().to_vec(),
    }
}

fn sent(v: Verdict<VecBuf>) -> Out {
    match v {
        Verdict::Tx(port, b) => decode(port, b.data()),
        other => panic!("expected a frame out, got {other:?}"),
    }
}

fn released(dp: &mut Datapath<VecBuf>) -> Vec<Out> {
    let mut out = Vec::new();
    dp.l3
        .take_released(|port, b| out.push(decode(port, b.data())));
    out
}

/// Received on the client-side port (`testkit::flows::META`).
const FROM_CLIENT: RxMeta = crate::testkit::flows::META;

fn from_server() -> RxMeta {
    RxMeta {
        port: 1,
        ..FROM_CLIENT
    }
}

fn ts_of(o: &Out) -> Option<(u32, u32)> {
    o.opts.iter().find_map(|x| match x {
        Opt::Timestamp(a, b) => Some((*a, *b)),
        _ => None,
    })
}

const SYN_OPTS: [Opt; 5] = [
    Opt::MaximumSegmentSize(1460),
    Opt::SelectiveAcknowledgementPermitted,
    Opt::Timestamp(CTS, 0),
    Opt::Noop,
    Opt::WindowScale(7),
];

/// SYN -> cookie SYN-ACK -> ACK: the connection the proxy opens, with what it sent the real
/// server. Returns (our ISN, our TSval, the SYN to the server).
fn handshake(dp: &mut Datapath<VecBuf>, ack_data: &[u8]) -> (u32, u32, Out) {
    let synack = sent(dp.process(client("S", CISN, 0, &SYN_OPTS, &[]), &FROM_CLIENT));
    assert_eq!(synack.port, 0);
    assert_eq!((synack.src, synack.dst), ((VIP, 80), (CLIENT_IP, CPORT)));
    assert_eq!((synack.flags.as_str(), synack.ack), ("SA", CISN + 1));
    let (our_ts, echo) = ts_of(&synack).expect("timestamps answered");
    assert_eq!(echo, CTS);
    assert!(synack.opts.contains(&Opt::WindowScale(7)));
    assert!(synack
        .opts
        .contains(&Opt::SelectiveAcknowledgementPermitted));
    assert_eq!(dp.fwd.table().len(), 0, "a SYN leaves no state");
    let cookie = synack.seq;
    let ack = client(
        "A",
        CISN + 1,
        cookie.wrapping_add(1),
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(CTS + 1, our_ts)],
        ack_data,
    );
    let syn = sent(dp.process(ack, &FROM_CLIENT));
    assert_eq!(dp.fwd.table().len(), 1);
    (cookie, our_ts, syn)
}

#[test]
fn a_proxied_connection_from_syn_to_fin() {
    let mut dp = proxied("on", "");
    let (cookie, our_ts, syn) = handshake(&mut dp, &[]);
    // The server gets the client's SYN as the client sent it (through the cookie), with TOA.
    assert_eq!(syn.port, 1);
    assert_eq!(syn.dst, (RS1, 80));
    assert_eq!(syn.src.0, LIP1);
    let lport = syn.src.1;
    assert_eq!((syn.flags.as_str(), syn.seq), ("S", CISN));
    assert!(syn.toa, "TOA in the SYN");
    assert!(
        syn.opts.contains(&Opt::MaximumSegmentSize(1460 - 8)),
        "{:?}",
        syn.opts
    );
    assert!(syn.opts.contains(&Opt::WindowScale(7)));
    assert!(syn.opts.contains(&Opt::SelectiveAcknowledgementPermitted));
    assert_eq!(ts_of(&syn), Some((CTS + 1, 0)));

    // The client's request arrives before the server answered: held.
    let req = client(
        "AP",
        CISN + 1,
        cookie.wrapping_add(1),
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(CTS + 2, our_ts)],
        b"GET /",
    );
    assert!(matches!(dp.process(req, &FROM_CLIENT), Verdict::Held));

    // The server's SYN-ACK completes its handshake (TOA again on the first ACK) and releases the
    // request, both acknowledging the server's ISN.
    let synack = server(
        "SA",
        lport,
        SISN,
        CISN + 1,
        &[
            Opt::MaximumSegmentSize(1460),
            Opt::SelectiveAcknowledgementPermitted,
            Opt::Timestamp(STS, CTS + 1),
            Opt::Noop,
            Opt::WindowScale(9),
        ],
        &[],
    );
    let ack = sent(dp.process(synack, &from_server()));
    assert_eq!((ack.port, ack.src, ack.dst), (1, (LIP1, lport), (RS1, 80)));
    assert_eq!(
        (ack.flags.as_str(), ack.seq, ack.ack),
        ("A", CISN + 1, SISN + 1)
    );
    assert_eq!(ts_of(&ack), Some((CTS + 1, STS)));
    assert!(ack.toa, "TOA in the first ACK");
    let rel = released(&mut dp);
    assert_eq!(rel.len(), 1);
    assert_eq!((rel[0].seq, rel[0].ack), (CISN + 1, SISN + 1));
    assert_eq!(rel[0].payload, b"GET /");
    assert_eq!(ts_of(&rel[0]), Some((CTS + 2, STS)));

    // The server's reply reaches the client in the client's sequence space, its timestamp in
    // ours and its window rescaled from 2^9 to 2^7 units.
    let reply = server(
        "A",
        lport,
        SISN + 1,
        CISN + 6,
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(STS + 5, CTS + 2)],
        b"HTTP/1.1 200 OK",
    );
    let r = sent(dp.process(reply, &from_server()));
    assert_eq!((r.port, r.src, r.dst), (0, (VIP, 80), (CLIENT_IP, CPORT)));
    assert_eq!((r.seq, r.ack), (cookie.wrapping_add(1), CISN + 6));
    assert_eq!(ts_of(&r), Some((our_ts.wrapping_add(5), CTS + 2)));
    assert_eq!(r.window, 100 << 2);
    assert_eq!(r.payload, b"HTTP/1.1 200 OK");

    // The client acknowledges with a SACK block: both edges shifted back.
    let c0 = cookie.wrapping_add(1);
    let sack = client(
        "A",
        CISN + 6,
        c0.wrapping_add(15),
        &[
            Opt::Noop,
            Opt::Noop,
            Opt::SelectiveAcknowledgement((c0.wrapping_add(20), c0.wrapping_add(30)), [None; 3]),
        ],
        &[],
    );
    let s = sent(dp.process(sack, &FROM_CLIENT));
    assert_eq!(s.ack, SISN + 1 + 15);
    assert!(
        s.opts.contains(&Opt::SelectiveAcknowledgement(
            (SISN + 21, SISN + 31),
            [None; 3]
        )),
        "{:?}",
        s.opts
    );

    // FIN both ways.
    let fin = sent(dp.process(
        client("AF", CISN + 6, c0.wrapping_add(15), &[], &[]),
        &FROM_CLIENT,
    ));
    assert_eq!((fin.flags.as_str(), fin.ack), ("AF", SISN + 16));
    let fin = sent(dp.process(
        server("AF", lport, SISN + 16, CISN + 7, &[], &[]),
        &from_server(),
    ));
    assert_eq!((fin.flags.as_str(), fin.seq), ("AF", c0.wrapping_add(15)));
    let s = &dp.fwd.synproxy.stats;
    assert_eq!(
        (
            s.cookies_sent,
            s.cookies_valid,
            s.conns,
            s.server_answered,
            s.held
        ),
        (1, 1, 1, 1, 1)
    );
}

/// The server's SYN-ACK to the proxy's SYN from `lport`: the ACK that completes its handshake
/// carries the data the client sent on its handshake ACK (`handshake(dp, b"early")`).
fn server_answers_and_early_data_follows(dp: &mut Datapath<VecBuf>, lport: u16) {
    let synack = server(
        "S",
        lport,
        SISN,
        CISN + 1,
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(STS, CTS + 1)],
        &[],
    );
    let ack = sent(dp.process(synack, &from_server()));
    assert_eq!(
        (ack.flags.as_str(), ack.seq, ack.ack),
        ("AP", CISN + 1, SISN + 1)
    );
    assert_eq!(ack.payload, b"early");
}

#[test]
fn data_on_the_handshake_ack_reaches_the_server_with_its_handshake() {
    let mut dp = proxied("on", "");
    let (_, _, syn) = handshake(&mut dp, b"early");
    assert!(syn.payload.is_empty(), "the SYN carries no data");
    server_answers_and_early_data_follows(&mut dp, syn.src.1);
    assert_eq!(dp.fwd.synproxy.stats.data_held, 1);
}

#[test]
fn a_server_refusal_reaches_the_client_in_its_sequence_space() {
    let mut dp = proxied("on", "");
    let (cookie, _, syn) = handshake(&mut dp, &[]);
    let rst = sent(dp.process(
        server("RA", syn.src.1, 0, CISN + 1, &[], &[]),
        &from_server(),
    ));
    assert_eq!((rst.port, rst.dst), (0, (CLIENT_IP, CPORT)));
    assert_eq!(
        (rst.flags.as_str(), rst.seq, rst.ack),
        ("AR", cookie.wrapping_add(1), CISN + 1)
    );
}

/// The frames the datapath generated, decoded.
fn generated(dp: &mut Datapath<VecBuf>) -> Vec<Out> {
    let mut out = Vec::new();
    dp.l3
        .take_generated(|g| out.push(decode(g.port, g.bytes())));
    out
}

/// The server answers the proxy's SYN with an ACK of something else: its TIME_WAIT of an earlier
/// connection on the LIP:lport, which refused our SYN for its timestamps (PAWS; the client's
/// are not that connection's). The proxy ends it with a RST at that ACK (RFC 9293, SYN-SENT)
/// and sends its SYN again, which the server's SYN-ACK then answers: the handshake completes,
/// the held data with it. Before, the proxy dropped the ACK and waited for an answer that
/// never came, its client retransmitting into the hold (wrk: 50 requests a second).
#[test]
fn a_servers_time_wait_on_the_local_port_is_reset_and_the_syn_sent_again() {
    let mut dp = proxied("on", "");
    let (_, _, syn) = handshake(&mut dp, b"early");
    let challenge = |dp: &mut Datapath<VecBuf>| {
        let ack = server(
            "",
            syn.src.1,
            777,
            4242,
            &[Opt::Noop, Opt::Noop, Opt::Timestamp(STS, 5)],
            &[],
        );
        dp.process(ack, &from_server())
    };
    let v = challenge(&mut dp);
    assert!(matches!(v, Verdict::Done(_)), "{v:?}");
    let gen = generated(&mut dp);
    assert_eq!(gen.len(), 2, "{gen:?}");
    let (rst, again) = (&gen[0], &gen[1]);
    assert_eq!((rst.port, rst.src, rst.dst), (1, syn.src, syn.dst));
    assert_eq!((rst.flags.as_str(), rst.seq), ("R", 4242));
    assert_eq!((again.port, again.src, again.dst), (1, syn.src, syn.dst));
    assert_eq!(
        (again.flags.as_str(), again.seq, again.window),
        ("S", CISN, syn.window)
    );
    let mss = |o: &Out| {
        o.opts.iter().find_map(|x| match x {
            Opt::MaximumSegmentSize(m) => Some(*m),
            _ => None,
        })
    };
    // With TOA, as the first SYN (its MSS lowered by the option's length).
    assert!(syn.toa && again.toa, "{again:?} after {syn:?}");
    assert_eq!(mss(again), mss(&syn));
    assert_eq!(ts_of(again), ts_of(&syn));
    for o in [Opt::SelectiveAcknowledgementPermitted, Opt::WindowScale(7)] {
        assert_eq!(again.opts.contains(&o), syn.opts.contains(&o), "{o:?}");
    }
    assert_eq!(dp.fwd.synproxy.stats.syn_resent, 1);
    server_answers_and_early_data_follows(&mut dp, syn.src.1);

    // A server that keeps its TIME_WAIT whatever the RST (`tcp_rfc1337`): three times, then the
    // proxy stops answering it.
    let mut dp = proxied("on", "");
    let (_, _, syn) = handshake(&mut dp, &[]);
    let challenge = |dp: &mut Datapath<VecBuf>| {
        dp.process(server("", syn.src.1, 777, 4242, &[], &[]), &from_server())
    };
    for _ in 0..crate::forward::synproxy::SYN_RESENDS {
        assert!(matches!(challenge(&mut dp), Verdict::Done(_)));
        assert_eq!(generated(&mut dp).len(), 2);
    }
    let v = challenge(&mut dp);
    assert!(
        matches!(v, Verdict::Drop(r, _) if r == Drop::NoConn.into()),
        "{v:?}"
    );
    assert!(generated(&mut dp).is_empty());
    assert_eq!(dp.fwd.synproxy.stats.syn_resent, 3);
}

#[test]
fn an_ack_without_a_cookie_is_dropped_and_counted() {
    let mut dp = proxied("on", "");
    let v = dp.process(client("A", CISN + 1, 12345, &[], &[]), &FROM_CLIENT);
    assert!(
        matches!(v, Verdict::Drop(r, _) if r == Drop::SynProxyBadCookie.into()),
        "{v:?}"
    );
    assert_eq!(dp.fwd.table().len(), 0);
    assert_eq!(dp.fwd.synproxy.stats.cookies_invalid, 1);
}

#[test]
fn without_timestamps_neither_scaling_nor_sack_is_offered() {
    let mut dp = proxied("on", "");
    let syn = client(
        "S",
        CISN,
        0,
        &[
            Opt::MaximumSegmentSize(1400),
            Opt::Noop,
            Opt::WindowScale(7),
            Opt::SelectiveAcknowledgementPermitted,
        ],
        &[],
    );
    let synack = sent(dp.process(syn, &FROM_CLIENT));
    assert_eq!(synack.opts, [Opt::MaximumSegmentSize(1460)]);
    let to_server = sent(dp.process(
        client("A", CISN + 1, synack.seq.wrapping_add(1), &[], &[]),
        &FROM_CLIENT,
    ));
    // The cookie keeps the client's MSS to Linux's table (1300 <= 1400), less TOA's 8 bytes.
    assert_eq!(to_server.opts, [Opt::MaximumSegmentSize(1300 - 8)]);
}

#[test]
fn auto_mode_answers_with_cookies_only_past_the_half_open_threshold() {
    let mut dp = proxied("auto", "[synproxy]\nauto_half_open = 3\n");
    let syn = |port: u16| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
            .tcp(port, 80, 1, 500)
            .syn()
            .write(&mut v, &[])
            .unwrap();
        VecBuf::from_frame(&v)
    };
    for p in 0..3 {
        let o = sent(dp.process(syn(1000 + p), &FROM_CLIENT));
        assert_eq!(
            (o.port, o.flags.as_str()),
            (1, "S"),
            "below the threshold: to a real server"
        );
    }
    assert_eq!(dp.fwd.table().half_open(), 3);
    let o = sent(dp.process(syn(2000), &FROM_CLIENT));
    assert_eq!(
        (o.port, o.flags.as_str()),
        (0, "SA"),
        "at the threshold: a cookie"
    );
    assert_eq!(dp.fwd.table().len(), 3);
}

#[test]
fn per_client_limits_count_proven_clients_and_reset_in_their_window() {
    // One open connection per client: the second one's SYN still gets a cookie (nothing is
    // decided on an unproven address), its proving ACK is refused with a RST the client accepts.
    let limit = "client_limit = { max_conns = 1, action = \"rst\" }";
    let mut dp = proxied_with("on", limit, "");
    handshake(&mut dp, &[]);
    let port = CPORT + 1;
    let synack = sent(dp.process(client_from(port, "S", 7000, 0, &[], &[]), &FROM_CLIENT));
    assert_eq!(synack.flags, "SA", "a SYN is answered whatever the limit");
    let ack = client_from(port, "A", 7001, synack.seq.wrapping_add(1), &[], &[]);
    let v = dp.process(ack, &FROM_CLIENT);
    assert!(
        matches!(v, Verdict::Drop(r, _) if r == Drop::LimitConns.into()),
        "{v:?}"
    );
    let mut rst = Vec::new();
    dp.l3
        .take_generated(|g| rst.push(decode(g.port, g.bytes())));
    assert_eq!(rst.len(), 1);
    assert_eq!(
        (rst[0].flags.as_str(), rst[0].seq),
        ("R", synack.seq.wrapping_add(1))
    );
    assert_eq!(rst[0].dst, (CLIENT_IP, port));
    assert_eq!(dp.fwd.table().len(), 1, "only the first connection");
}

#[test]
fn a_proxied_connection_is_not_sent_to_a_backup() {
    // Its sequence translation is not synced: on the backup it would be forwarded untranslated.
    let mut dp = proxied("on", "");
    handshake(&mut dp, &[]);
    let (id, _) = dp.fwd.table().iter().next().unwrap();
    assert_eq!(dp.fwd.export(id, crate::conn::Ticks(0)), None);
}

/// An ICMP "fragmentation needed" from `src` to `dst` (RFC 1191), quoting the IPv4 packet
/// `quoted` (its header and its first `quote_len` bytes of TCP).
fn frag_needed(
    macs: (crate::wire::MacAddr, crate::wire::MacAddr),
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    quoted: &[u8],
    quote_len: usize,
) -> VecBuf {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1300 },
        ))
        .write(&mut v, &quoted[..20 + quote_len])
        .unwrap();
    VecBuf::from_frame(&v)
}

/// An IPv4 TCP packet as a host on the way would quote it.
fn ip_segment(
    src: (std::net::Ipv4Addr, u16),
    dst: (std::net::Ipv4Addr, u16),
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, seq, 500)
        .ack(ack)
        .write(&mut v, &[0; 1400])
        .unwrap();
    v
}

/// The translated error that came out: (port, outer source, outer destination, the quoted
/// ports, sequence and acknowledgement numbers), its ICMP checksum checked.
fn icmp_out(
    v: Verdict<VecBuf>,
) -> (
    u16,
    std::net::Ipv4Addr,
    std::net::Ipv4Addr,
    [u16; 2],
    u32,
    u32,
) {
    let Verdict::Tx(port, b) = v else {
        panic!("expected the error forwarded, got {v:?}")
    };
    let p = SlicedPacket::from_ethernet(b.data()).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP")
    };
    let whole = ip.payload().payload;
    let sum = crate::wire::checksum::fold(crate::wire::checksum::sum(whole));
    assert!(sum == 0xFFFF || sum == 0, "ICMP checksum");
    let q = icmp.payload();
    let hl = usize::from(q[0] & 0x0F) * 4;
    let t = &q[hl..];
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (
        port,
        ip.header().source_addr(),
        ip.header().destination_addr(),
        [
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        ],
        be(&t[4..8]),
        if t.len() >= 12 { be(&t[8..12]) } else { 0 },
    )
}

/// A proxied connection whose server has answered (a SYN-ACK without options): the datapath,
/// the local port, and the first sequence number the client was given.
fn answered() -> (Datapath<VecBuf>, u16, u32) {
    let mut dp = proxied("on", "");
    let (cookie, _, syn) = handshake(&mut dp, &[]);
    let lport = syn.src.1;
    sent(dp.process(
        server("SA", lport, SISN, CISN + 1, &[], &[]),
        &from_server(),
    ));
    (dp, lport, cookie.wrapping_add(1))
}

/// Path MTU discovery through the proxy (RFC 1191): an error about a segment the proxy shifted
/// quotes it in the shifted space, and Linux ignores an error whose quoted sequence number is
/// outside its window (`tcp_v4_err`). Translated for the other side, the quote goes back into
/// that side's space: the server hears of its own sequence number, the client of its own
/// acknowledgement.
#[test]
fn an_icmp_error_about_a_proxied_segment_quotes_it_in_the_receivers_sequence_space() {
    let (mut dp, lport, c0) = answered();

    // From the client's side, about the server's data as the client saw it (VIP -> client, in
    // the proxy's space), with the whole TCP header quoted: to the server, in its own space.
    let quoted = ip_segment(
        (VIP, 80),
        (CLIENT_IP, CPORT),
        c0.wrapping_add(100),
        CISN + 1,
    );
    let err = frag_needed((CLIENT_MAC, CLIENT_PORT_MAC), CLIENT_IP, VIP, &quoted, 20);
    let (port, src, dst, ports, seq, ack) = icmp_out(dp.process(err, &FROM_CLIENT));
    assert_eq!((port, src, dst, ports), (1, LIP1, RS1, [80, lport]));
    assert_eq!((seq, ack), (SISN + 101, CISN + 1));
    // RFC 792's 8 bytes only: the sequence number still shifted.
    let err = frag_needed((CLIENT_MAC, CLIENT_PORT_MAC), CLIENT_IP, VIP, &quoted, 8);
    let (_, _, _, _, seq, _) = icmp_out(dp.process(err, &FROM_CLIENT));
    assert_eq!(seq, SISN + 101);

    // From the server's side, about the client's segment as the server saw it: to the client,
    // its acknowledgement in the client's space again.
    let quoted = ip_segment((LIP1, lport), (RS1, 80), CISN + 1, SISN + 41);
    let err = frag_needed((RS1_MAC, SERVER_PORT_MAC), RS1, LIP1, &quoted, 20);
    let (port, src, dst, ports, seq, ack) = icmp_out(dp.process(err, &from_server()));
    assert_eq!((port, src, dst, ports), (0, VIP, CLIENT_IP, [CPORT, 80]));
    assert_eq!((seq, ack), (CISN + 1, c0.wrapping_add(40)));
}

/// HA sync of a proxied connection: its record, then a translation record with its shifts
/// (`RecordKind::Translation`); a backup that applies both shifts the connection's segments as
/// the primary does, and takes it as proxied (not on the hot path, which would not shift).
#[test]
fn a_synced_proxied_connection_is_shifted_on_the_backup() {
    let (mut dp, lport, c0) = answered();
    let now = crate::conn::Ticks(5_000);
    let mut recs = Vec::new();
    dp.fwd.export_range(0, 1 << 12, now, &mut recs);
    assert_eq!(recs.len(), 2, "{recs:?}");
    // The primary's shifts: its ISN over the server's, and the client's window scale for a
    // server that does not scale.
    let adj = crate::forward::synproxy::SeqAdj {
        seq: c0.wrapping_sub(SISN + 1),
        our_ws: 7,
        client_shift: 7,
        ..Default::default()
    };
    assert_eq!(
        recs[1].kind,
        crate::conn::record::RecordKind::Translation(adj)
    );
    // Through the wire and back, as the backup receives it.
    let mut sealer = crate::sync::wire::Sealer::new(b"key", 1, 1);
    let mut opener = crate::sync::wire::Opener::new(b"key");
    let msgs = sealer.records(&recs);
    let crate::sync::wire::Message::Records { records, .. } = opener.open(&msgs[0]).unwrap() else {
        panic!("not records")
    };
    assert_eq!(records, recs);

    let mut b = proxied("on", "");
    // A translation of another local port (an older connection of the client tuple, left when
    // its own record was refused) is not this connection's.
    let mut other = records[1];
    other.local.1 += 1;
    b.fwd.apply_record(&records[0], now).unwrap();
    assert_eq!(
        b.fwd.apply_record(&other, now),
        Err(crate::forward::InstallError::NoConn)
    );
    // Refreshed by a record alone, the connection is not taken as proxied: a later connection of
    // the same tuple to the same server may be one the proxy did not open.
    b.fwd.apply_record(&records[1], now).unwrap();
    b.fwd.apply_record(&records[0], now).unwrap();
    let plain = sent(b.process(
        server("", lport, SISN + 11, CISN + 1, &[], b"more"),
        &from_server(),
    ));
    assert_eq!(plain.seq, SISN + 11, "unshifted without its translation");
    for r in &records {
        let applied = b.fwd.apply_record(r, now);
        assert!(applied.is_ok(), "{r:?}: {applied:?}");
    }
    assert_eq!(b.fwd.sync_counters().translated, 2);
    assert_eq!(b.fwd.sync_counters().refused_no_conn, 1);
    // Plain ACKs both ways, the hot path's kind of segment: shifted.
    for _ in 0..2 {
        let ack = sent(b.process(
            client("A", CISN + 1, c0.wrapping_add(10), &[], &[]),
            &FROM_CLIENT,
        ));
        assert_eq!(
            (ack.dst, ack.seq, ack.ack),
            ((RS1, 80), CISN + 1, SISN + 11)
        );
        let data = sent(b.process(
            server("", lport, SISN + 11, CISN + 1, &[], b"more"),
            &from_server(),
        ));
        assert_eq!(
            (data.dst, data.seq, data.ack),
            ((CLIENT_IP, CPORT), c0.wrapping_add(10), CISN + 1)
        );
    }
}
