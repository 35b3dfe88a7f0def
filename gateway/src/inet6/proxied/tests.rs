//! The IPv6 SYN proxy in a worker's datapath, packet by packet: a FullNAT service on an IPv6
//! VIP with `synproxy`, the client and the real server played with etherparse.

use crate::conn::record::RecordKind;
use crate::datapath::Datapath;
use crate::packet::{PacketBuf, RxMeta, VecBuf, Verdict};
use crate::stats::{Drop, DropReason};
use crate::testkit::*;
use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement as Opt, TransportSlice};
use std::net::Ipv6Addr;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

const CLIENT6: &str = "2001:db8:10::2";
const VIP6: &str = "2001:db8:10::100";
const RS6: &str = "2001:db8:20::11";
const LIP6: &str = "2001:db8:20::200";
const CPORT: u16 = 40000;
const CISN: u32 = 1000;
const SISN: u32 = 50_000;
const CTS: u32 = 7777;
const STS: u32 = 90_000;

/// The lab's ports dual-stack, a FullNAT service on VIP6:8080 to RS6:80 from LIP6 proxied in
/// `mode`; both neighbours known.
fn proxied(mode: &str) -> Datapath<VecBuf> {
    proxied_with(mode, "")
}

/// [`proxied`] with `keys` more in the service.
fn proxied_with(mode: &str, keys: &str) -> Datapath<VecBuf> {
    proxied_to(mode, keys, "")
}

/// [`proxied_with`], its real server's lines `real` more (`mode = "nat"`).
fn proxied_to(mode: &str, keys: &str, real: &str) -> Datapath<VecBuf> {
    let conf = dual_stack(LAB_CONFIG)
        + &format!(
            r#"
[[service]]
vip = "{VIP6}"
port = 8080
protocol = "tcp"
scheduler = "rr"
synproxy = "{mode}"
{keys}
local_addresses = ["{LIP6}"]
[[service.real]]
address = "{RS6}"
port = 80
{real}
"#
        );
    let mut dp: Datapath<VecBuf> = datapath_from(&conf, 0, 1, 1024);
    dp.tick(5_000);
    let mut learn = |ip, mac, port| {
        dp.v6
            .neigh
            .learn(a(ip), mac, port, 5_000, true, true, |_, _, _| {})
    };
    learn(RS6, RS1_MAC, 1);
    learn(CLIENT6, CLIENT_MAC, 0);
    dp
}

/// A TCP segment over IPv6; `flags` in tcpdump letters (S A F R P; the ACK number is set with A
/// only).
#[allow(clippy::too_many_arguments)]
fn segment(
    from_client: bool,
    ports: (u16, u16),
    flags: &str,
    seq: u32,
    ack: u32,
    opts: &[Opt],
    data: &[u8],
) -> VecBuf {
    let (src, dst) = match from_client {
        true => (CLIENT6, VIP6),
        false => (RS6, LIP6),
    };
    segment_between(from_client, (src, dst), ports, flags, seq, ack, opts, data)
}

/// [`segment`] between addresses `src` and `dst`, from the client's side or the server's.
#[allow(clippy::too_many_arguments)]
fn segment_between(
    from_client: bool,
    (src, dst): (&str, &str),
    ports: (u16, u16),
    flags: &str,
    seq: u32,
    ack: u32,
    opts: &[Opt],
    data: &[u8],
) -> VecBuf {
    let macs = match from_client {
        true => (CLIENT_MAC, CLIENT_PORT_MAC),
        false => (RS1_MAC, SERVER_PORT_MAC),
    };
    let mut v = Vec::new();
    let mut b = PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv6(a(src).octets(), a(dst).octets(), 64)
        .tcp(ports.0, ports.1, seq, 500);
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
    if flags.contains('P') {
        b = b.psh();
    }
    b.options(opts).unwrap().write(&mut v, data).unwrap();
    VecBuf::from_frame(&v)
}

fn client(flags: &str, seq: u32, ack: u32, opts: &[Opt], data: &[u8]) -> VecBuf {
    segment(true, (CPORT, 8080), flags, seq, ack, opts, data)
}

/// The real server's segment to LIP6:`lport` (always an ACK).
fn server(flags: &str, lport: u16, seq: u32, ack: u32, opts: &[Opt], data: &[u8]) -> VecBuf {
    let flags = format!("A{flags}");
    segment(false, (80, lport), &flags, seq, ack, opts, data)
}

/// What came out, decoded, its TCP checksum checked.
#[derive(Debug)]
struct Out {
    port: u16,
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    seq: u32,
    ack: u32,
    flags: String,
    opts: Vec<Opt>,
    toa: bool,
    payload: Vec<u8>,
}

fn decode(port: u16, frame: &[u8]) -> Out {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not IPv6")
    };
    let (s, d) = (ip.header().source(), ip.header().destination());
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not TCP")
    };
    assert_eq!(
        t.calc_checksum_ipv6(s, d).unwrap(),
        t.checksum(),
        "TCP checksum"
    );
    assert_eq!(
        usize::from(ip.header().payload_length()),
        frame.len() - 54,
        "payload length"
    );
    let (flags, opts, toa) = crate::forward::synproxy::tests::flags_and_options(t);
    Out {
        port,
        src: (Ipv6Addr::from(s), t.source_port()),
        dst: (Ipv6Addr::from(d), t.destination_port()),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        flags,
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

fn generated(dp: &mut Datapath<VecBuf>) -> Vec<Out> {
    let mut out = Vec::new();
    dp.l3
        .take_generated(|g| out.push(decode(g.port, g.bytes())));
    out
}

fn meta(port: u16) -> RxMeta {
    RxMeta {
        port,
        ..Default::default()
    }
}

fn ts_of(o: &Out) -> Option<(u32, u32)> {
    o.opts.iter().find_map(|x| match x {
        Opt::Timestamp(a, b) => Some((*a, *b)),
        _ => None,
    })
}

fn mss_of(o: &Out) -> Option<u16> {
    o.opts.iter().find_map(|x| match x {
        Opt::MaximumSegmentSize(m) => Some(*m),
        _ => None,
    })
}

const SYN_OPTS: [Opt; 5] = [
    Opt::MaximumSegmentSize(1440),
    Opt::SelectiveAcknowledgementPermitted,
    Opt::Timestamp(CTS, 0),
    Opt::Noop,
    Opt::WindowScale(7),
];

/// SYN -> cookie SYN-ACK -> ACK: (our ISN, our TSval, the SYN the real server got).
fn handshake(dp: &mut Datapath<VecBuf>) -> (u32, u32, Out) {
    let synack = sent(dp.process(client("S", CISN, 0, &SYN_OPTS, &[]), &meta(0)));
    assert_eq!(synack.port, 0);
    assert_eq!(
        (synack.src, synack.dst),
        ((a(VIP6), 8080), (a(CLIENT6), CPORT))
    );
    assert_eq!((synack.flags.as_str(), synack.ack), ("SA", CISN + 1));
    // The ports' MTU (1500) less IPv6's and TCP's headers.
    assert_eq!(mss_of(&synack), Some(1440));
    let (our_ts, echo) = ts_of(&synack).expect("timestamps answered");
    assert_eq!(echo, CTS);
    assert!(synack.opts.contains(&Opt::WindowScale(7)));
    assert!(synack
        .opts
        .contains(&Opt::SelectiveAcknowledgementPermitted));
    assert_eq!(dp.v6.conns.len(), 0, "a SYN leaves no state");
    assert_eq!(dp.fwd.synproxy.stats.cookies_sent, 1);
    let cookie = synack.seq;
    let ack = client(
        "A",
        CISN + 1,
        cookie.wrapping_add(1),
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(CTS + 1, our_ts)],
        &[],
    );
    let syn = sent(dp.process(ack, &meta(0)));
    assert_eq!(dp.v6.conns.len(), 1);
    assert_eq!(dp.fwd.synproxy.stats.cookies_valid, 1);
    (cookie, our_ts, syn)
}

#[test]
fn a_proxied_ipv6_connection_from_syn_to_data_both_ways() {
    let mut dp = proxied("on");
    let (cookie, our_ts, syn) = handshake(&mut dp);
    // The server gets the client's SYN as the client sent it (through the cookie), from the
    // LIP, with the IPv6 TOA.
    assert_eq!((syn.port, syn.dst, syn.src.0), (1, (a(RS6), 80), a(LIP6)));
    let lport = syn.src.1;
    assert_eq!((syn.flags.as_str(), syn.seq), ("S", CISN));
    assert!(syn.toa, "TOA in the SYN");
    // The cookie's MSS (1440, in IPv6's table), less what TOA takes.
    assert!(
        matches!(mss_of(&syn), Some(m) if (1400..=1440).contains(&m)),
        "{syn:?}"
    );
    assert!(syn.opts.contains(&Opt::WindowScale(7)));
    assert!(syn.opts.contains(&Opt::SelectiveAcknowledgementPermitted));
    assert_eq!(ts_of(&syn), Some((CTS + 1, 0)));

    // The client's request before the server answered: held.
    let req = client(
        "AP",
        CISN + 1,
        cookie.wrapping_add(1),
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(CTS + 2, our_ts)],
        b"GET /",
    );
    assert!(matches!(dp.process(req, &meta(0)), Verdict::Held));

    // The server's SYN-ACK completes its handshake and releases the request, both
    // acknowledging the server's ISN.
    let synack = server(
        "S",
        lport,
        SISN,
        CISN + 1,
        &[
            Opt::MaximumSegmentSize(1440),
            Opt::SelectiveAcknowledgementPermitted,
            Opt::Timestamp(STS, CTS + 1),
            Opt::Noop,
            Opt::WindowScale(9),
        ],
        &[],
    );
    let ack = sent(dp.process(synack, &meta(1)));
    assert_eq!(
        (ack.port, ack.src, ack.dst),
        (1, (a(LIP6), lport), (a(RS6), 80))
    );
    assert_eq!(
        (ack.flags.as_str(), ack.seq, ack.ack),
        ("A", CISN + 1, SISN + 1)
    );
    assert_eq!(ts_of(&ack), Some((CTS + 1, STS)));
    let rel = released(&mut dp);
    assert_eq!(rel.len(), 1);
    assert_eq!((rel[0].seq, rel[0].ack), (CISN + 1, SISN + 1));
    assert_eq!(rel[0].payload, b"GET /");
    assert_eq!(ts_of(&rel[0]), Some((CTS + 2, STS)));
    assert_eq!(dp.fwd.synproxy.stats.server_answered, 1);

    // The server's reply reaches the client in the client's sequence space, its timestamp in
    // ours.
    let reply = server(
        "P",
        lport,
        SISN + 1,
        CISN + 6,
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(STS + 5, CTS + 2)],
        b"HTTP/1.1 200 OK",
    );
    let r = sent(dp.process(reply, &meta(1)));
    assert_eq!(
        (r.port, r.src, r.dst),
        (0, (a(VIP6), 8080), (a(CLIENT6), CPORT))
    );
    assert_eq!((r.seq, r.ack), (cookie.wrapping_add(1), CISN + 6));
    assert_eq!(ts_of(&r), Some((our_ts + 5, CTS + 2)));
    assert_eq!(r.payload, b"HTTP/1.1 200 OK");

    // Established: the client's plain ACK is still shifted for the server (the established hot
    // path leaves proxied connections to the general one).
    let t = crate::conn::Tuple6::new(a(CLIENT6), CPORT, a(VIP6), 8080, 6);
    let (id, _) = dp.v6.conns.lookup(&t).unwrap();
    let c = dp.v6.conns.get(id).unwrap();
    assert_eq!(c.state(), crate::conn::State::Established);
    let plain = client(
        "A",
        CISN + 6,
        cookie.wrapping_add(16),
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(CTS + 3, our_ts + 5)],
        &[],
    );
    let out = sent(dp.process(plain, &meta(0)));
    assert_eq!((out.seq, out.ack), (CISN + 6, SISN + 16));
    assert_eq!(ts_of(&out), Some((CTS + 3, STS + 5)));

    // Synced to a backup with its shifts, a translation record after its own: there, its
    // segments are shifted both ways as here.
    let now = crate::conn::Ticks(5_000);
    let mut recs = Vec::new();
    dp.v6.export_range(&dp.fwd, 0, 1024, now, &mut recs);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(
        matches!(recs[1].kind, RecordKind::Translation(_)),
        "{recs:?}"
    );
    let mut b = proxied("on");
    for r in &recs {
        let applied = b.v6.apply_record(&mut b.l3, &mut b.fwd, r, now);
        assert!(applied.is_ok(), "{r:?}: {applied:?}");
    }
    assert_eq!(b.fwd.sync_counters().translated, 1);
    let plain = client(
        "A",
        CISN + 6,
        cookie.wrapping_add(16),
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(CTS + 4, our_ts + 5)],
        &[],
    );
    let out = sent(b.process(plain, &meta(0)));
    assert_eq!((out.seq, out.ack), (CISN + 6, SISN + 16));
    assert_eq!(ts_of(&out), Some((CTS + 4, STS + 5)));
    let more = server(
        "P",
        lport,
        SISN + 16,
        CISN + 6,
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(STS + 6, CTS + 4)],
        b"more",
    );
    let r = sent(b.process(more, &meta(1)));
    assert_eq!(
        (r.dst, r.seq, r.ack),
        ((a(CLIENT6), CPORT), cookie.wrapping_add(16), CISN + 6)
    );
    assert_eq!(ts_of(&r), Some((our_ts + 6, CTS + 4)));
}

#[test]
fn an_ack_without_a_cookie_is_dropped_and_opens_nothing() {
    let mut dp = proxied("on");
    let v = dp.process(client("A", CISN + 1, 12345, &[], &[]), &meta(0));
    assert!(
        matches!(v, Verdict::Drop(DropReason::Dp(Drop::SynProxyBadCookie), _)),
        "{v:?}"
    );
    assert_eq!(dp.v6.conns.len(), 0);
    assert_eq!(dp.fwd.synproxy.stats.cookies_invalid, 1);
}

/// Without timestamps the SYN-ACK offers neither window scaling nor SACK (the cookie could not
/// carry them), and the connection works without them.
#[test]
fn a_client_without_timestamps_is_proxied_without_scaling_or_sack() {
    let mut dp = proxied("on");
    let opts = [Opt::MaximumSegmentSize(1220)];
    let synack = sent(dp.process(client("S", CISN, 0, &opts, &[]), &meta(0)));
    assert_eq!(ts_of(&synack), None);
    assert!(!synack.opts.iter().any(|o| matches!(
        o,
        Opt::WindowScale(_) | Opt::SelectiveAcknowledgementPermitted
    )));
    let ack = client("A", CISN + 1, synack.seq.wrapping_add(1), &[], &[]);
    let syn = sent(dp.process(ack, &meta(0)));
    assert_eq!((syn.flags.as_str(), syn.seq), ("S", CISN));
    assert!(matches!(mss_of(&syn), Some(m) if m <= 1220), "{syn:?}");
    let out = sent(dp.process(server("S", syn.src.1, SISN, CISN + 1, &[], &[]), &meta(1)));
    assert_eq!((out.flags.as_str(), out.ack), ("A", SISN + 1));
}

/// The server refuses: its RST reaches the client in the sequence space the client was given.
#[test]
fn a_servers_refusal_reaches_the_client_in_its_sequence_space() {
    let mut dp = proxied("on");
    let (cookie, _, syn) = handshake(&mut dp);
    let rst = server("R", syn.src.1, 0, CISN + 1, &[], &[]);
    let out = sent(dp.process(rst, &meta(1)));
    assert_eq!(out.port, 0);
    assert!(out.flags.contains('R'), "{out:?}");
    assert_eq!(out.seq, cookie.wrapping_add(1));
}

/// The server answers the proxy's SYN from a TIME_WAIT of an earlier connection on the same
/// LIP:lport (an ACK of something else): a RST that ends it, then the SYN again, with TOA.
#[test]
fn a_servers_time_wait_answer_has_the_syn_sent_again_after_a_rst() {
    let mut dp = proxied("on");
    let (_, _, syn) = handshake(&mut dp);
    let lport = syn.src.1;
    let v = dp.process(server("", lport, 777, 999_999, &[], &[]), &meta(1));
    assert!(matches!(v, Verdict::Done(_)), "{v:?}");
    let g = generated(&mut dp);
    assert_eq!(g.len(), 2, "{g:?}");
    assert_eq!((g[0].flags.as_str(), g[0].seq), ("R", 999_999));
    assert_eq!((g[0].src, g[0].dst), ((a(LIP6), lport), (a(RS6), 80)));
    assert_eq!((g[1].flags.as_str(), g[1].seq), ("S", CISN));
    assert_eq!((g[1].src, g[1].dst), ((a(LIP6), lport), (a(RS6), 80)));
    assert!(g[1].toa);
    assert_eq!(dp.fwd.synproxy.stats.syn_resent, 1);
    // The server's SYN-ACK to it then completes the handshake.
    let ack = sent(dp.process(server("S", lport, SISN, CISN + 1, &[], &[]), &meta(1)));
    assert_eq!((ack.flags.as_str(), ack.ack), ("A", SISN + 1));
}

/// Auto mode answers with cookies only while the worker holds `auto_half_open` half-open
/// IPv6 connections or more.
#[test]
fn auto_mode_turns_on_with_the_half_open_ipv6_connections() {
    let mut dp = proxied("auto");
    dp.fwd.synproxy.cfg.auto_half_open = 3;
    for port in 0..3 {
        let syn = segment(true, (41000 + port, 8080), "S", CISN, 0, &[], &[]);
        let out = sent(dp.process(syn, &meta(0)));
        assert_eq!((out.port, out.flags.as_str()), (1, "S"), "scheduled");
    }
    let out = sent(dp.process(client("S", CISN, 0, &SYN_OPTS, &[]), &meta(0)));
    assert_eq!((out.port, out.flags.as_str()), (0, "SA"), "a cookie");
    assert_eq!(dp.v6.conns.len(), 3);
}

/// Data on the client's handshake ACK waits for the server, then goes with the ACK that
/// completes the server's handshake.
#[test]
fn data_on_the_handshake_ack_goes_with_the_servers_completion() {
    let mut dp = proxied("on");
    let synack = sent(dp.process(client("S", CISN, 0, &[], &[]), &meta(0)));
    let cookie = synack.seq;
    let ack = client("AP", CISN + 1, cookie.wrapping_add(1), &[], b"GET /");
    let syn = sent(dp.process(ack, &meta(0)));
    assert_eq!((syn.flags.as_str(), syn.payload.len()), ("S", 0));
    assert_eq!(dp.fwd.synproxy.stats.data_held, 1);
    let out = sent(dp.process(server("S", syn.src.1, SISN, CISN + 1, &[], &[]), &meta(1)));
    assert_eq!(
        (out.flags.as_str(), out.seq, out.ack),
        ("AP", CISN + 1, SISN + 1)
    );
    assert_eq!(out.payload, b"GET /");
}

/// A client limit with `action = "rst"` refuses a client whose ACK proved its cookie with a RST
/// it accepts: the sequence number it acknowledged.
#[test]
fn a_proxied_client_over_its_limit_is_reset_in_its_sequence_space() {
    let limit = "client_limit = { max_conns = 1, action = \"rst\" }";
    let mut dp = proxied_with("on", limit);
    handshake(&mut dp);
    let synack = sent(dp.process(
        segment(true, (CPORT + 1, 8080), "S", CISN, 0, &[], &[]),
        &meta(0),
    ));
    let cookie = synack.seq;
    let ack = segment(
        true,
        (CPORT + 1, 8080),
        "A",
        CISN + 1,
        cookie.wrapping_add(1),
        &[],
        &[],
    );
    let v = dp.process(ack, &meta(0));
    assert!(
        matches!(
            v,
            Verdict::Drop(DropReason::Dp(Drop::LimitConns | Drop::LimitRate), _)
        ),
        "{v:?}"
    );
    let g = generated(&mut dp);
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(
        (g[0].flags.as_str(), g[0].seq),
        ("R", cookie.wrapping_add(1))
    );
    assert_eq!(g[0].dst, (a(CLIENT6), CPORT + 1));
    assert_eq!(dp.v6.conns.len(), 1);
}

/// An IPv6 TCP segment with its data offset set to `words` (checksum fixed after).
fn with_data_offset(pkt: VecBuf, words: u8) -> VecBuf {
    let mut f = pkt.data().to_vec();
    f[54 + 12] = (words << 4) | (f[54 + 12] & 0x0F);
    f[54 + 16..54 + 18].fill(0);
    let src: [u8; 16] = f[22..38].try_into().unwrap();
    let dst: [u8; 16] = f[38..54].try_into().unwrap();
    let sum = crate::wire::ipv6::l4_checksum(
        src.into(),
        dst.into(),
        crate::wire::IpProtocol::TCP,
        &f[54..],
    );
    f[54 + 16..54 + 18].copy_from_slice(&sum.to_be_bytes());
    VecBuf::from_frame(&f)
}

/// A TCP data offset below 5 words or past the segment is dropped with its reason, as IPv4's,
/// before anything reads options by it (the proxy's cookie, timestamps and translation did,
/// and sliced out of bounds).
#[test]
fn a_bad_data_offset_is_dropped_before_the_proxy_reads_options() {
    let mut dp = proxied("on");
    for words in [0, 4, 15] {
        for (flags, ack) in [("S", 0), ("A", 1)] {
            let v = dp.process(
                with_data_offset(client(flags, CISN, ack, &[], &[]), words),
                &meta(0),
            );
            assert!(
                matches!(
                    v,
                    Verdict::Drop(
                        DropReason::Wire(crate::wire::packet::DropReason::TcpBadDataOffset),
                        _
                    )
                ),
                "{words} {flags}: {v:?}"
            );
        }
    }
    let (cookie, _, syn) = handshake(&mut dp);
    sent(dp.process(server("S", syn.src.1, SISN, CISN + 1, &[], &[]), &meta(1)));
    let bad = with_data_offset(client("A", CISN + 1, cookie.wrapping_add(1), &[], &[]), 15);
    assert!(matches!(dp.process(bad, &meta(0)), Verdict::Drop(..)));
    let bad = with_data_offset(server("", syn.src.1, SISN + 1, CISN + 1, &[], &[]), 15);
    assert!(matches!(dp.process(bad, &meta(1)), Verdict::Drop(..)));
}

/// A client's SYN on its answered proxied connection goes to the server with TOA (the SYN grows
/// by it) and shifted like its other segments: the translation covers the grown segment (it
/// sliced the segment as parsed before TOA, and read past it).
#[test]
fn a_syn_on_an_answered_proxied_connection_is_forwarded_with_toa_and_shifted() {
    let mut dp = proxied("on");
    let (_, our_ts, syn) = handshake(&mut dp);
    let synack = server(
        "S",
        syn.src.1,
        SISN,
        CISN + 1,
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(STS, CTS + 1)],
        &[],
    );
    sent(dp.process(synack, &meta(1)));
    // The same ISN again, echoing our timestamp: a late duplicate of the client's first SYN.
    let again = client(
        "S",
        CISN,
        0,
        &[Opt::Noop, Opt::Noop, Opt::Timestamp(CTS + 50, our_ts + 3)],
        &[],
    );
    let out = sent(dp.process(again, &meta(0)));
    assert_eq!((out.port, out.flags.as_str(), out.seq), (1, "S", CISN));
    assert!(out.toa);
    assert_eq!(ts_of(&out), Some((CTS + 50, STS + 3)), "the echo shifted");
}

/// What a connection's client sent before its server answered stays with that connection: the
/// client gives up and connects again from the same port (another ISN). A NAT66 entry goes, and
/// the new proxied connection, given the same id and tuple at once (IPv6 ids are reused),
/// completes its server's handshake without the old data; a FullNAT entry is parked on its
/// LIP:lport (`service::retire`) and the new connection takes another id.
#[test]
fn held_data_of_a_connection_given_up_does_not_reach_the_next_one() {
    for nat in [true, false] {
        let mut dp = match nat {
            true => proxied_to("on", "", "mode = \"nat\""),
            false => proxied("on"),
        };
        let t = crate::conn::Tuple6::new(a(CLIENT6), CPORT, a(VIP6), 8080, 6);
        let synack = sent(dp.process(client("S", CISN, 0, &[], &[]), &meta(0)));
        let ack = client("AP", CISN + 1, synack.seq.wrapping_add(1), &[], b"OLD");
        sent(dp.process(ack, &meta(0)));
        let (id, _) = dp.v6.conns.lookup(&t).unwrap();
        let early = client("AP", CISN + 4, synack.seq.wrapping_add(1), &[], b"OLDER");
        assert!(matches!(dp.process(early, &meta(0)), Verdict::Held));
        let isn = CISN + 100_000;
        let synack = sent(dp.process(client("S", isn, 0, &[], &[]), &meta(0)));
        assert_eq!((synack.port, synack.flags.as_str()), (0, "SA"), "a cookie");
        assert!(dp.v6.conns.lookup(&t).is_none(), "the old entry let go");
        let parked = dp
            .v6
            .conns
            .get(id)
            .is_some_and(|c| crate::inet6::service::parked(&c));
        assert_eq!((dp.v6.conns.len(), parked), (usize::from(!nat), !nat));
        let ack = client("A", isn + 1, synack.seq.wrapping_add(1), &[], &[]);
        let syn = sent(dp.process(ack, &meta(0)));
        let same_id = dp.v6.conns.lookup(&t).unwrap().0 == id;
        assert_eq!(same_id, nat, "the same id for NAT66 only");
        let answer = match nat {
            true => segment_between(
                false,
                (RS6, CLIENT6),
                (80, CPORT),
                "AS",
                SISN,
                isn + 1,
                &[],
                &[],
            ),
            false => server("S", syn.src.1, SISN, isn + 1, &[], &[]),
        };
        let out = sent(dp.process(answer, &meta(1)));
        assert_eq!((out.flags.as_str(), out.payload.len()), ("A", 0), "{out:?}");
        assert_eq!(released(&mut dp).len(), 0);
    }
}

/// NAT66 behind the proxy: the server sees the client's own address (no TOA), answers it
/// through the gateway, and both sides' segments are shifted as FullNAT's are.
#[test]
fn a_proxied_nat66_connection_keeps_the_clients_address_and_is_shifted_both_ways() {
    let mut dp = proxied_to("on", "", "mode = \"nat\"");
    let (cookie, our_ts, syn) = handshake(&mut dp);
    assert_eq!((syn.src, syn.dst), ((a(CLIENT6), CPORT), (a(RS6), 80)));
    assert_eq!((syn.flags.as_str(), syn.seq, syn.toa), ("S", CISN, false));
    let to_client = |flags: &str, seq, ack, opts: &[Opt], data: &[u8]| {
        let flags = format!("A{flags}");
        segment_between(
            false,
            (RS6, CLIENT6),
            (80, CPORT),
            &flags,
            seq,
            ack,
            opts,
            data,
        )
    };
    let ts = |val, echo| [Opt::Noop, Opt::Noop, Opt::Timestamp(val, echo)];
    let ack = sent(dp.process(
        to_client("S", SISN, CISN + 1, &ts(STS, CTS + 1), &[]),
        &meta(1),
    ));
    assert_eq!((ack.src, ack.dst), ((a(CLIENT6), CPORT), (a(RS6), 80)));
    assert_eq!(
        (ack.flags.as_str(), ack.seq, ack.ack),
        ("A", CISN + 1, SISN + 1)
    );
    let r = sent(dp.process(
        to_client("P", SISN + 1, CISN + 1, &ts(STS + 5, CTS + 1), b"hello"),
        &meta(1),
    ));
    assert_eq!(
        (r.port, r.src, r.dst),
        (0, (a(VIP6), 8080), (a(CLIENT6), CPORT))
    );
    assert_eq!((r.seq, r.ack), (cookie.wrapping_add(1), CISN + 1));
    assert_eq!(ts_of(&r), Some((our_ts + 5, CTS + 1)));
    let plain = client(
        "A",
        CISN + 1,
        cookie.wrapping_add(6),
        &ts(CTS + 2, our_ts + 5),
        &[],
    );
    let out = sent(dp.process(plain, &meta(0)));
    assert_eq!(
        (out.dst, out.seq, out.ack),
        ((a(RS6), 80), CISN + 1, SISN + 6)
    );
    assert_eq!(ts_of(&out), Some((CTS + 2, STS + 5)));
}

/// An ICMPv6 packet too big (RFC 4443 3.2) from `src` to `dst`, from the client's side or the
/// server's, quoting an IPv6 TCP segment `quoted` (src -> dst, seq, ack) as far as the error's
/// 1280 bytes allow.
fn too_big(
    from_client: bool,
    (src, dst): (&str, &str),
    quoted: ((&str, u16), (&str, u16), u32, u32),
) -> VecBuf {
    let ((qs, qsp), (qd, qdp), seq, ack) = quoted;
    let mut q = Vec::new();
    PacketBuilder::ipv6(a(qs).octets(), a(qd).octets(), 64)
        .tcp(qsp, qdp, seq, 500)
        .ack(ack)
        .write(&mut q, &[0; 1400])
        .unwrap();
    let macs = match from_client {
        true => (CLIENT_MAC, CLIENT_PORT_MAC),
        false => (RS1_MAC, SERVER_PORT_MAC),
    };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv6(a(src).octets(), a(dst).octets(), 64)
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut v, &q[..1280 - 48])
        .unwrap();
    VecBuf::from_frame(&v)
}

/// The translated error that came out: (port, outer source, outer destination, the quoted
/// ports, sequence and acknowledgement numbers), its ICMPv6 checksum checked.
fn too_big_out(v: Verdict<VecBuf>) -> (u16, Ipv6Addr, Ipv6Addr, [u16; 2], u32, u32) {
    let Verdict::Tx(port, b) = v else {
        panic!("expected the error forwarded, got {v:?}")
    };
    let f = b.data();
    let ip = crate::wire::ipv6::Ipv6Packet::new_unchecked(&f[14..]);
    let (src, dst) = (ip.src(), ip.dst());
    let icmp = &f[54..];
    assert!(
        crate::wire::icmpv6::Icmpv6Packet::new_unchecked(icmp).verify_checksum(src, dst),
        "ICMPv6 checksum"
    );
    let t = &icmp[8 + 40..];
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let ports = [
        u16::from_be_bytes([t[0], t[1]]),
        u16::from_be_bytes([t[2], t[3]]),
    ];
    (port, src, dst, ports, be(&t[4..8]), be(&t[8..12]))
}

/// Path MTU discovery through the proxy (RFC 8201): an error about a segment the proxy shifted
/// quotes it in the shifted space, and Linux ignores an error whose quoted sequence number is
/// outside its window (`tcp_v6_err`). Translated, the quote goes back into the receiver's
/// space: the server hears of its own sequence number, the client of its own acknowledgement.
#[test]
fn a_packet_too_big_about_a_proxied_segment_quotes_it_in_the_receivers_sequence_space() {
    let mut dp = proxied("on");
    let (cookie, _, syn) = handshake(&mut dp);
    let lport = syn.src.1;
    sent(dp.process(server("S", lport, SISN, CISN + 1, &[], &[]), &meta(1)));
    let c0 = cookie.wrapping_add(1);

    let quoted = (
        (VIP6, 8080),
        (CLIENT6, CPORT),
        c0.wrapping_add(100),
        CISN + 1,
    );
    let err = too_big(true, (CLIENT6, VIP6), quoted);
    let (port, src, dst, ports, seq, ack) = too_big_out(dp.process(err, &meta(0)));
    assert_eq!((port, src, dst, ports), (1, a(LIP6), a(RS6), [80, lport]));
    assert_eq!((seq, ack), (SISN + 101, CISN + 1));

    let quoted = ((LIP6, lport), (RS6, 80), CISN + 1, SISN + 41);
    let err = too_big(false, (RS6, LIP6), quoted);
    let (port, src, dst, ports, seq, ack) = too_big_out(dp.process(err, &meta(1)));
    assert_eq!(
        (port, src, dst, ports),
        (0, a(VIP6), a(CLIENT6), [CPORT, 8080])
    );
    assert_eq!((seq, ack), (CISN + 1, c0.wrapping_add(40)));
}
