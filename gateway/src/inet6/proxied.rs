//! The SYN proxy for IPv6 services (`[[service]] synproxy`), as IPv4's
//! (`forward::fullnat::proxied`, `forward::synproxy`): a client's SYN is answered with a SYN
//! cookie (RFC 4987 3.6) over the IPv6 tuple and keeps no state; its ACK that proves the cookie
//! opens the connection and becomes the SYN to the real server; the server's SYN-ACK completes
//! the server's handshake with the client's ACK, and from then on the server's sequence numbers
//! and timestamps are shifted into the space the client was given (`synproxy::to_client`,
//! `to_server`: TCP only, the same for both families).
//!
//! Built for FullNAT and NAT to IPv6 real servers (the config refuses NAT64, DR and TUN). The cookie carries
//! an index into Linux's IPv6 MSS values (`synproxy::MSS_TABLE6`). The per-connection state is
//! the proxy's `conns6` (by IPv6 connection id); the client's packets held until the server
//! answers and the data of its handshake ACK share IPv4's bounded stores, keyed by the client
//! tuple of either family. A proxied connection reaches a backup once its server has answered,
//! its record followed by its translation (`sync6::export`), as IPv4's; the established hot path
//! leaves it to the general one (`hot`).

use super::common::generate6;
use super::service::{forward_client, ClientSegment};
use super::{Inet6, Ipv6In};
use crate::conn::{tcp_flags, ConnFlags, ConnId, ConnTable6, Dir, Tuple6, PROTO_TCP};
use crate::forward::fullnat::RETRIED;
use crate::forward::synproxy::{self, ClientSyn, Mode, Proxied, Segment, SeqAdj};
use crate::forward::Forwarder;
use crate::net::L3;
use crate::packet::{PacketBuf, Verdict};
use crate::stats::Drop;
use crate::wire::{ethernet, ipv6, tcp, TcpFlags, TcpPacket};
use std::net::{IpAddr, Ipv6Addr};

/// Entry flag of a proxied IPv6 connection (IPv4's entries mark theirs in `ext`, which an IPv6
/// entry uses for its sync period and `retry::ANSWERED`).
pub(super) const PROXIED6: ConnFlags = ConnFlags::USER_A;

/// The IPv6 header and the frame's Ethernet header before it.
const L3_OFF: usize = ethernet::HEADER_LEN;

/// Whether connection `id` is proxied: only if an IPv6 service ever used the proxy (one
/// branch on every other gateway's path).
#[inline]
pub(super) fn is_proxied(conns: &ConnTable6, fwd: &Forwarder, id: ConnId) -> bool {
    fwd.synproxy.is_ready6() && conns.get(id).is_some_and(|c| c.flags().contains(PROXIED6))
}

/// What the proxy does with a client's TCP segment that found no connection.
pub(super) enum Gate {
    /// Nothing: scheduled as usual (no proxy on the service, auto mode off, a fragment, or
    /// neither a SYN nor an ACK).
    Pass,
    /// A SYN to answer with a cookie.
    Answer,
    /// Dropped for this reason.
    Refuse(Drop),
    /// An ACK that proves a cookie: a connection is opened with what the client's SYN offered.
    Open(ClientSyn),
}

/// Decides [`Gate`] for a segment with TCP `flags` of `tuple` (CIP:cport -> VIP:vport).
pub(super) fn gate<B: PacketBuf>(
    v6: &Inet6<B>,
    l3: &L3<B>,
    fwd: &mut Forwarder,
    pkt: &B,
    v: &Ipv6In,
    tuple: &Tuple6,
    flags: u8,
) -> Gate {
    // (The caller checked `synproxy.is_ready6()`.)
    if v.is_fragment() {
        return Gate::Pass;
    }
    let services = fwd.services();
    let Some(si) = services.find6(tuple.dst_ip(), tuple.dport, tuple.proto) else {
        return Gate::Pass;
    };
    let mode = services.services[si as usize].synproxy;
    let f = |bit| flags & bit != 0;
    let syn = f(tcp_flags::SYN) && !f(tcp_flags::ACK);
    let ack = f(tcp_flags::ACK) && !f(tcp_flags::SYN) && !f(tcp_flags::RST);
    if mode == Mode::Off || !(syn || ack) {
        return Gate::Pass;
    }
    // Who may connect: decided before any answer, as IPv4's.
    if !fwd.acl_allows(si, IpAddr::V6(tuple.src_ip())) {
        return Gate::Refuse(Drop::AclDenied);
    }
    if ack {
        return match check_cookie(fwd, pkt, v, tuple, l3.now_ms) {
            Some(syn) => Gate::Open(syn),
            None => Gate::Refuse(Drop::SynProxyBadCookie),
        };
    }
    match fwd.synproxy.answers(mode, v6.conns.half_open(), l3.now_ms) {
        true => Gate::Answer,
        false => Gate::Pass,
    }
}

/// What the client's SYN offered, if its ACK proves our cookie.
fn check_cookie<B: PacketBuf>(
    fwd: &mut Forwarder,
    pkt: &B,
    v: &Ipv6In,
    tuple: &Tuple6,
    now_ms: u64,
) -> Option<ClientSyn> {
    let seg = pkt.data().get(v.l4_off..v.end)?;
    let t = TcpPacket::new_unchecked(seg);
    let sp = &mut fwd.synproxy;
    let ts = synproxy::timestamps(seg);
    let syn = synproxy::validate(&sp.key, tuple, t.seq(), t.ack_number(), ts, now_ms / 1000);
    match syn.is_some() {
        true => sp.stats.cookies_valid += 1,
        false => sp.stats.cookies_invalid += 1,
    }
    syn
}

/// Answers a client's SYN with a SYN-ACK carrying a cookie, written over the SYN; nothing is
/// kept.
pub(super) fn answer_syn<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    mut pkt: B,
    v: &Ipv6In,
    tuple: &Tuple6,
) -> Verdict<B> {
    let Some(seg) = pkt.data().get(v.l4_off..v.end) else {
        return Verdict::Drop(Drop::Ipv6Malformed.into(), pkt);
    };
    let seq = TcpPacket::new_unchecked(seg).seq();
    let opts = synproxy::SynOptions::parse(seg);
    // Never more than the ports' MTU leaves after the IPv6 and TCP headers.
    let mss = fwd.mtu().saturating_sub(60);
    let sp = &mut fwd.synproxy;
    let index = opts.mss_index_in(&synproxy::MSS_TABLE6);
    let cookie = sp.key.make(tuple, seq, l3.now_ms / 1000, index);
    // Without timestamps the client's window scale and SACK-permitted cannot be remembered, so
    // neither is offered (as Linux's syncookies).
    let ts = opts.tsval.map(|tsval| {
        (
            synproxy::encode_ts(l3.now_ms, opts.wscale, opts.sack),
            tsval,
        )
    });
    let answer = Segment::<Ipv6Addr> {
        src: (v.dst, tuple.dport),
        dst: (v.src, tuple.sport),
        seq: cookie,
        ack: seq.wrapping_add(1),
        flags: TcpFlags::SYN | TcpFlags::ACK,
        window: u16::MAX,
        mss: Some(sp.cfg.mss.map_or(mss, |m| m.min(mss))),
        wscale: ts.and(opts.wscale).map(|_| sp.cfg.wscale),
        sack_permitted: ts.is_some() && opts.sack,
        ts,
    };
    let Some(len) = pkt
        .room_mut()
        .get_mut(L3_OFF..)
        .and_then(|room| answer.write6(room, 0))
    else {
        return Verdict::Drop(Drop::NoRoom.into(), pkt);
    };
    pkt.set_len(L3_OFF + len);
    sp.stats.cookies_sent += 1;
    // Sent, not forwarded (`inet6.forwarded` counts what a connection carries).
    let Some(route) = l3.topo().routes6.lookup(v.src).copied() else {
        return Verdict::Drop(Drop::NoRoute.into(), pkt);
    };
    super::nd::send_to(v6, l3, pkt, route.l2_target(v.src), route.port)
}

/// A client's ACK proved its cookie and connection `id` was made for it: the ACK becomes the
/// client's SYN as the real server is to see it (the options the cookie carried), forwarded like
/// any client's SYN (TOA, rewrite, route). Data the ACK carried waits for the server.
pub(super) fn open<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    mut pkt: B,
    v: &Ipv6In,
    id: ConnId,
    syn: ClientSyn,
) -> Verdict<B> {
    let Some(seg) = pkt.data().get(v.l4_off..v.end) else {
        return Verdict::Drop(Drop::Ipv6Malformed.into(), pkt);
    };
    let t = TcpPacket::new_unchecked(seg);
    let (sport, dport, ack, window) = (t.src_port(), t.dst_port(), t.ack_number(), t.window());
    let client = Tuple6::new(v.src, sport, v.dst, dport, PROTO_TCP);
    let sp = &mut fwd.synproxy;
    // What an earlier connection of this id and tuple left held (its server refused, or its
    // client reused the port before the server answered): IPv6 ids are reused at once, unlike
    // IPv4's, and none of it belongs to this connection.
    sp.unstash(id.index(), &client.into(), &mut []);
    while let Some(old) = l3.parked.take(id.index(), &client.into()) {
        l3.settle_later(Verdict::Drop(Drop::SynProxyHeldExpired.into(), old));
    }
    let data = seg.get(t.header_len()..).unwrap_or_default();
    if !data.is_empty() {
        if sp.stash(id.index(), client.into(), l3.now_ms, data) {
            sp.stats.data_held += 1;
        } else {
            // The client retransmits it once the server's answer is acknowledged to it.
            l3.stats.drop(Drop::SynProxyHeldFull.into());
        }
    }
    let p = Proxied::opened(&syn, ack, window, sp.cfg.wscale);
    let Some(slot) = sp.get6_mut(id.index()) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    *slot = p;
    sp.stats.conns += 1;
    if let Some(c) = v6.conns.get_mut(id) {
        // The client never sends us this SYN again: nothing to retry it on (`syn_retry`).
        c.set_flags(PROXIED6 | RETRIED);
    }
    let request = p.syn((v.src, sport), (v.dst, dport));
    let Some(rebuilt) = rewrite_as(&mut pkt, &request, 0) else {
        return Verdict::Drop(Drop::NoRoom.into(), pkt);
    };
    let seg = ClientSegment {
        sport,
        flags: tcp_flags::SYN,
        isn1: syn.isn.wrapping_add(1),
        created: true,
        retry_of: None,
    };
    forward_client(v6, l3, fwd, pkt, &rebuilt, id, seg)
}

/// Writes `seg` (with `payload` bytes already after its TCP header) over the IPv6 packet of
/// `pkt` and parses it again; None if the buffer has no room for it.
fn rewrite_as<B: PacketBuf>(
    pkt: &mut B,
    seg: &Segment<Ipv6Addr>,
    payload: usize,
) -> Option<Ipv6In> {
    let len = seg.write6(pkt.room_mut().get_mut(L3_OFF..)?, payload)?;
    pkt.set_len(L3_OFF + len);
    super::parse(pkt.data()).ok()
}

/// A client whose ACK proved its cookie, refused by its service's client limit: with
/// `action = "rst"`, a RST in the sequence space it was given (RFC 9293 3.10.7.4: the sequence
/// number it acknowledged), as IPv4's `Forwarder::over_limit` answers a proxied client. `came`:
/// the port and MAC the ACK came from.
pub(super) fn limit_rst<B: PacketBuf>(
    v6: &Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    pkt: &B,
    v: &Ipv6In,
    tuple: &Tuple6,
    came: (u16, crate::wire::MacAddr),
) {
    let services = fwd.services();
    let Some(si) = services.find6(tuple.dst_ip(), tuple.dport, tuple.proto) else {
        return;
    };
    if !fwd.limits_mut().limit(si as usize).is_some_and(|l| l.rst) {
        return;
    }
    let Some(seg) = pkt.data().get(v.l4_off..v.end) else {
        return;
    };
    let rst = Segment::<Ipv6Addr> {
        src: (tuple.dst_ip(), tuple.dport),
        dst: (tuple.src_ip(), tuple.sport),
        seq: TcpPacket::new_unchecked(seg).ack_number(),
        ack: 0,
        flags: TcpFlags::RST,
        window: 0,
        mss: None,
        wscale: None,
        sack_permitted: false,
        ts: None,
    };
    match generate6(v6, l3, tuple.src_ip(), Some(came), |b| rst.write6(b, 0)) {
        true => fwd.stats.rst_sent += 1,
        false => fwd.stats.rst_unsent += 1,
    }
}

/// A client's segment (not a SYN) of proxied connection `id`: held while its server has not
/// answered the proxy's SYN. `Err(pkt)`: forward it (the server has answered).
pub(super) fn hold<B: PacketBuf>(
    v6: &Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    pkt: B,
    id: ConnId,
) -> Result<Verdict<B>, B> {
    let pending = fwd.synproxy.get6(id.index()).is_some_and(|p| p.pending);
    let Some(client) = v6.conns.get(id).map(|c| c.client()).filter(|_| pending) else {
        return Err(pkt);
    };
    let deadline = l3.now_ms + synproxy::HOLD_MS;
    Ok(
        match l3.parked.park(id.index(), client.into(), deadline, pkt) {
            Ok(()) => {
                fwd.synproxy.stats.held += 1;
                Verdict::Held
            }
            Err(pkt) => Verdict::Drop(Drop::SynProxyHeldFull.into(), pkt),
        },
    )
}

/// The real server's segment with TCP `flags` to proxied connection `id` before it answered
/// the proxy's SYN: its SYN-ACK sets the translation up and completes its handshake with the
/// client's ACK (then the client's held segments follow); its RST goes to the client; an ACK
/// of something else (its TIME_WAIT of an earlier connection) has the SYN sent again.
/// `Err(pkt)`: forward it as usual (the server has answered, or a RST).
pub(super) fn server_pending<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    mut pkt: B,
    v: &Ipv6In,
    id: ConnId,
    flags: u8,
) -> Result<Verdict<B>, B> {
    let Some(mut p) = fwd.synproxy.get6(id.index()).copied().filter(|p| p.pending) else {
        return Err(pkt);
    };
    let Some(client) = v6.conns.get(id).map(|c| c.client()) else {
        return Ok(Verdict::Drop(Drop::NoConn.into(), pkt));
    };
    let Some(seg) = pkt.data().get(v.l4_off..v.end) else {
        return Ok(Verdict::Drop(Drop::Ipv6Malformed.into(), pkt));
    };
    let t = TcpPacket::new_unchecked(seg);
    let (seq, ack) = (t.seq(), t.ack_number());
    let (server_ts, server_ws) = (synproxy::timestamps(seg), synproxy::window_scale(seg));
    let f = |bit| flags & bit != 0;
    if f(tcp_flags::RST) {
        p.refused(seq);
        set(fwd, id, p);
        return Err(pkt);
    }
    let answered = ack == p.client_isn.wrapping_add(1);
    if !(f(tcp_flags::SYN) && f(tcp_flags::ACK) && answered) {
        if f(tcp_flags::ACK) && !f(tcp_flags::SYN) && !answered && p.resent < synproxy::SYN_RESENDS
        {
            return Ok(resend_syn(v6, l3, fwd, pkt, v, id, p, ack));
        }
        return Ok(Verdict::Drop(Drop::NoConn.into(), pkt));
    }
    // The SYN-ACK becomes the client's ACK as the server expects it, with the data of the
    // client's handshake ACK if it had any; forwarded like any client segment, it completes the
    // server's handshake.
    let (cip, vip) = (client.src_ip(), client.dst_ip());
    let mut completion = p.answered(
        seq,
        server_ts,
        server_ws,
        (cip, client.sport),
        (vip, client.dport),
    );
    set(fwd, id, p);
    fwd.synproxy.stats.server_answered += 1;
    // The server answered: passive health, and the handshake is no longer the server's to fail
    // (`retry::ANSWERED`).
    super::retry::server_segment(&mut v6.conns, fwd, id, flags);
    let at = L3_OFF + ipv6::HEADER_LEN + completion.header_len();
    let n = match pkt.room_mut().get_mut(at..) {
        Some(room) => fwd.synproxy.unstash(id.index(), &client.into(), room),
        None => 0,
    };
    if n > 0 {
        completion.flags = TcpFlags::ACK | TcpFlags::PSH;
    }
    let Some(rebuilt) = rewrite_as(&mut pkt, &completion, n) else {
        return Ok(Verdict::Drop(Drop::NoRoom.into(), pkt));
    };
    // Not from the client's neighbour: nothing to confirm.
    crate::wire::EthernetFrame::new_unchecked(pkt.data_mut()).set_src(crate::wire::MacAddr([0; 6]));
    let seg = |flags| ClientSegment {
        sport: client.sport,
        flags,
        isn1: 0,
        created: false,
        retry_of: None,
    };
    let verdict = forward_client(v6, l3, fwd, pkt, &rebuilt, id, seg(completion.flags.0));
    // Then what the client sent meanwhile, in order.
    while let Some(held) = l3.parked.take(id.index(), &client.into()) {
        let v = match super::parse(held.data()) {
            Ok(v) => {
                let flags = held.data().get(v.l4_off + 13).copied().unwrap_or(0);
                forward_client(v6, l3, fwd, held, &v, id, seg(flags))
            }
            Err(r) => Verdict::Drop(r.into(), held),
        };
        l3.settle_later(v);
    }
    Ok(verdict)
}

fn set(fwd: &mut Forwarder, id: ConnId, p: Proxied) {
    if let Some(s) = fwd.synproxy.get6_mut(id.index()) {
        *s = p;
    }
}

/// The server answered the proxy's SYN with an ACK of something else: RFC 9293 3.10.7.3
/// (SYN-SENT) answers it with <SEQ=SEG.ACK><CTL=RST>, as the client's own TCP would; it is the
/// answer of a TIME_WAIT the server keeps of an earlier connection on the same LIP:lport, which
/// the RST ends, and the SYN sent again right after it then finds the listener (IPv4's
/// `Forwarder::resend_syn`).
#[allow(clippy::too_many_arguments)]
fn resend_syn<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    pkt: B,
    v: &Ipv6In,
    id: ConnId,
    mut p: Proxied,
    ack: u32,
) -> Verdict<B> {
    let Some(c) = v6.conns.get(id) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    let client = c.client();
    // TOA as the first SYN had it: FullNAT's (NAT's keeps the client's address).
    let toa = c.mode() == crate::forward::mode::FULLNAT
        && fwd
            .services()
            .services
            .get(usize::from(c.svc))
            .is_some_and(|vs| vs.toa);
    // Both or neither, in this order: the RST ends the TIME_WAIT before the SYN reaches it.
    if l3.generate_room() < 2 {
        return Verdict::Drop(Drop::GenOverflow.into(), pkt);
    }
    let Some(seg) = pkt.data().get(v.l4_off..v.end) else {
        return Verdict::Drop(Drop::Ipv6Malformed.into(), pkt);
    };
    let t = TcpPacket::new_unchecked(seg);
    let (local, server) = ((v.dst, t.dst_port()), (v.src, t.src_port()));
    let rst = Segment::<Ipv6Addr> {
        src: local,
        dst: server,
        seq: ack,
        ack: 0,
        flags: TcpFlags::RST,
        window: 0,
        mss: None,
        wscale: None,
        sack_permitted: false,
        ts: None,
    };
    let syn = p.syn(local, server);
    let write_syn = |b: &mut [u8]| {
        let n = syn.write6(b, 0)?;
        match toa {
            true => tcp::insert_toa6(b, n, 0, ipv6::HEADER_LEN, client.sport, client.src_ip()).ok(),
            false => Some(n),
        }
    };
    if generate6(v6, l3, server.0, None, |b| rst.write6(b, 0))
        && generate6(v6, l3, server.0, None, write_syn)
    {
        p.resent += 1;
        set(fwd, id, p);
        fwd.synproxy.stats.syn_resent += 1;
        if toa {
            l3.stats.inet6.toa_added += 1;
        }
    }
    Verdict::Done(pkt)
}

/// Shifts a segment of proxied connection `id` from `dir`, rewritten for the other side, into
/// that side's sequence space, once the server has answered.
pub(super) fn translate<B: PacketBuf>(
    fwd: &Forwarder,
    pkt: &mut B,
    v: &Ipv6In,
    id: ConnId,
    dir: Dir,
) {
    let Some(adj) = fwd.synproxy.get6(id.index()).filter(|p| !p.pending) else {
        return;
    };
    let adj = adj.adj;
    // Where the packet ends now: TOA may have grown a SYN since `v` was parsed.
    let Some(len) = pkt.data().get(L3_OFF + 4..L3_OFF + 6) else {
        return;
    };
    let end = L3_OFF + ipv6::HEADER_LEN + usize::from(u16::from_be_bytes([len[0], len[1]]));
    if let Some(seg) = pkt.data_mut().get_mut(v.l4_off..end) {
        match dir {
            Dir::Original => synproxy::to_server(seg, &adj),
            Dir::Reply => synproxy::to_client(seg, &adj),
        }
    }
}

/// The shifts of proxied connection `id` once its server has answered (None for any other
/// connection): an ICMPv6 error quoting one of its segments is shifted back with them
/// (`synproxy::unshift_quote`, `icmp::error`).
pub(super) fn answered_adj(conns: &ConnTable6, fwd: &Forwarder, id: ConnId) -> Option<SeqAdj> {
    if !is_proxied(conns, fwd, id) {
        return None;
    }
    let p = fwd.synproxy.get6(id.index()).filter(|p| !p.pending)?;
    Some(p.adj)
}

#[cfg(test)]
mod tests;
