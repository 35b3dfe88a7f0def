//! IPv6 in the datapath: neighbour discovery, echo, DR and TUN services, bad input.

use super::*;
use crate::datapath::Datapath;
use crate::packet::{Event, Verdict};
use crate::packet::{PacketBuf, RxMeta, VecBuf};
use crate::service::{RsStats, ServiceConfig};
use crate::testkit::*;
use crate::wire::icmpv6::{self, Icmpv6Packet, Icmpv6Type};
use crate::wire::{EtherType, EthernetFrame, MacAddr};
use etherparse::{PacketBuilder, SlicedPacket};
use std::net::Ipv6Addr;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

const CLIENT6: &str = "2001:db8:10::2";
const VIP6: &str = "2001:db8:10::100";
const RS6_1: &str = "2001:db8:20::11";
const RS6_2: &str = "2001:db8:20::12";
const GW6_SERVER: &str = "2001:db8:20::1";

/// The lab's ports with IPv6 addresses too, a TCP service on an IPv6 VIP with two DR real servers
/// and a UDP one with a TUN real server.
fn config6() -> String {
    dual_stack(LAB_CONFIG) + IPV6_SERVICES
}

fn dp() -> Datapath<VecBuf> {
    datapath_from(&config6(), 0, 1, 1024)
}

fn meta(port: u16) -> RxMeta {
    RxMeta {
        port,
        ..Default::default()
    }
}

fn tcp6(sport: u16, syn: bool, payload: &[u8]) -> VecBuf {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .tcp(sport, 80, 1000, 64240);
    let b = if syn { b.syn() } else { b.ack(1) };
    b.write(&mut v, payload).unwrap();
    VecBuf::from_frame(&v)
}

fn udp6(sport: u16, payload: &[u8]) -> VecBuf {
    udp6_to(53, sport, payload)
}

/// A client's UDP datagram to VIP6:`dport`.
fn udp6_to(dport: u16, sport: u16, payload: &[u8]) -> VecBuf {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .unwrap();
    VecBuf::from_frame(&v)
}

/// A neighbour solicitation for `target` from `src` (with its link-layer address) to `dst`.
fn ns(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, hop_limit: u8) -> VecBuf {
    let mut buf = [0u8; 128];
    let n = icmpv6::write_neighbor_solicit(&mut buf[14..], src, dst, target, CLIENT_MAC).unwrap();
    buf[21] = hop_limit;
    let dst_mac = if dst.is_multicast() {
        icmpv6::multicast_mac(dst)
    } else {
        CLIENT_PORT_MAC
    };
    crate::wire::ethernet::write_header(&mut buf, dst_mac, CLIENT_MAC, EtherType::IPV6).unwrap();
    VecBuf::from_frame(&buf[..14 + n])
}

/// A solicited neighbour advertisement of `target` at `mac`, on the server side.
fn na(target: Ipv6Addr, mac: MacAddr) -> VecBuf {
    let mut buf = [0u8; 128];
    let flags = icmpv6::NA_SOLICITED | icmpv6::NA_OVERRIDE;
    let n =
        icmpv6::write_neighbor_advert(&mut buf[14..], target, a(GW6_SERVER), target, mac, flags)
            .unwrap();
    crate::wire::ethernet::write_header(&mut buf, SERVER_PORT_MAC, mac, EtherType::IPV6).unwrap();
    VecBuf::from_frame(&buf[..14 + n])
}

fn generated(dp: &mut Datapath<VecBuf>) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    dp.l3
        .take_generated(|g| out.push((g.port, g.bytes().to_vec())));
    out
}

fn released(dp: &mut Datapath<VecBuf>) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    dp.l3.take_released(|p, b| out.push((p, b.data().to_vec())));
    out
}

fn drop_name(v: &Verdict<VecBuf>) -> String {
    match v {
        Verdict::Drop(r, _) => format!("{r:?}"),
        other => format!("{other:?}"),
    }
}

/// The ICMPv6 message of an IPv6 frame, its checksum verified against etherparse's.
fn icmp_of(frame: &[u8]) -> (Ipv6Addr, Ipv6Addr, u8, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else {
        panic!("not ipv6")
    };
    let h = ip.header();
    let msg = ip.payload().payload.to_vec();
    let (src, dst) = (h.source_addr(), h.destination_addr());
    // etherparse computes the checksum over the same pseudo-header independently.
    let t = etherparse::Icmpv6Header::from_slice(&msg).unwrap().0;
    let fresh = t
        .icmp_type
        .calc_checksum(src.octets(), dst.octets(), &msg[t.header_len()..])
        .unwrap();
    assert_eq!(t.checksum, fresh, "ICMPv6 checksum");
    (src, dst, h.hop_limit(), msg)
}

#[test]
fn link_local_is_the_modified_eui64_of_the_mac() {
    // RFC 4291 appendix A: the universal/local bit flips, ff:fe goes in the middle.
    assert_eq!(
        link_local(MacAddr([0x02, 0, 0, 0, 0, 0x01])),
        a("fe80::ff:fe00:1")
    );
    assert_eq!(
        link_local(MacAddr([0x00, 0x1b, 0x21, 0x3a, 0x4c, 0x5d])),
        a("fe80::21b:21ff:fe3a:4c5d")
    );
    assert!(is_unicast_global(a("2001:db8::1")));
    for bad in ["::", "::1", "ff02::1", "fe80::1", "::ffff:10.0.0.1"] {
        assert!(!is_unicast_global(a(bad)), "{bad}");
    }
}

#[test]
fn a_solicitation_for_the_vip_is_answered_and_its_sender_learned() {
    let mut dp = dp();
    let vip = a(VIP6);
    let group = icmpv6::solicited_node(vip);
    let v = dp.process(ns(a(CLIENT6), group, vip, 255), &meta(0));
    let Verdict::Tx(0, out) = v else {
        panic!("{v:?}")
    };
    let frame = &out.data().to_vec();
    assert!(generated(&mut dp).is_empty());
    let eth = EthernetFrame::new_unchecked(&frame[..]);
    assert_eq!((eth.dst(), eth.src()), (CLIENT_MAC, CLIENT_PORT_MAC));
    let (src, dst, hops, msg) = icmp_of(frame);
    assert_eq!((src, dst, hops), (vip, a(CLIENT6), 255));
    let m = Icmpv6Packet::new_checked(&msg[..]).unwrap();
    assert_eq!(m.msg_type(), Icmpv6Type::NEIGHBOR_ADVERT);
    assert_eq!(m.nd_target(), vip);
    assert_eq!(msg[4], icmpv6::NA_SOLICITED | icmpv6::NA_OVERRIDE);
    assert_eq!(
        m.nd_link_addr(icmpv6::nd_option::TARGET_LINK_ADDR),
        Ok(Some(CLIENT_PORT_MAC))
    );
    // The sender's link-layer address option made an entry (STALE, RFC 4861 7.2.3).
    assert_eq!(dp.v6.neigh.mac(a(CLIENT6)), Some(CLIENT_MAC));
    assert_eq!(dp.l3.stats.inet6.ns_answered, 1);
}

#[test]
fn solicitations_are_answered_for_owned_addresses_only_and_validated() {
    let mut dp = dp();
    let c = a(CLIENT6);
    let ll = link_local(CLIENT_PORT_MAC);
    // The port's own addresses: its global one and its link-local one.
    for t in [a("2001:db8:10::1"), ll] {
        let v = dp.process(ns(c, icmpv6::solicited_node(t), t, 255), &meta(0));
        assert!(matches!(v, Verdict::Tx(0, _)), "{t}: {v:?}");
    }
    // The other port's address is not answered on this one; a stranger's is not answered.
    for t in [a("2001:db8:20::1"), a("2001:db8:10::77")] {
        let v = dp.process(ns(c, icmpv6::solicited_node(t), t, 255), &meta(0));
        assert!(matches!(v, Verdict::ToKernel(0, _)), "{t}: {v:?}");
    }
    // Without a twin, a neighbour's solicitation for another host is no drop: nothing to do.
    let mut bare: Datapath<VecBuf> = datapath_from(&without_twins(&config6()), 0, 1, 1024);
    let t = a("2001:db8:10::77");
    let v = bare.process(ns(c, icmpv6::solicited_node(t), t, 255), &meta(0));
    assert!(matches!(v, Verdict::Done(_)), "{v:?}");
    // Off-link (hop limit not 255) or a duplicate-address probe that names a link-layer address.
    let vip = a(VIP6);
    let bad = dp.process(ns(c, icmpv6::solicited_node(vip), vip, 64), &meta(0));
    assert_eq!(drop_name(&bad), "Dp(NdInvalid)");
    let dad = ns(Ipv6Addr::UNSPECIFIED, icmpv6::solicited_node(vip), vip, 255);
    assert_eq!(drop_name(&dp.process(dad, &meta(0))), "Dp(NdInvalid)");
    // A corrupted checksum.
    let mut f = ns(c, icmpv6::solicited_node(vip), vip, 255);
    f.data_mut()[14 + 40 + 2] ^= 0xff;
    assert_eq!(drop_name(&dp.process(f, &meta(0))), "Dp(NdInvalid)");
    assert!(generated(&mut dp).is_empty());
    assert_eq!(dp.l3.stats.inet6.ns_answered, 2);
}

#[test]
fn a_kernel_owned_ipv6_vip_not_held_is_neither_answered_nor_served() {
    // Every service is kernel-owned (one VIP has one owner); no kernel view: no twin holds any.
    let cfg = config_fullnat().replace("scheduler =", "owner = \"kernel\"\nscheduler =");
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 1024);
    let c = a(CLIENT6);
    for (port, t) in [(0, a(VIP6)), (1, a(LIP6))] {
        let v = dp.process(ns(c, icmpv6::solicited_node(t), t, 255), &meta(port));
        assert!(matches!(v, Verdict::ToKernel(_, _)), "{t}: {v:?}");
    }
    assert_eq!(dp.l3.stats.inet6.ns_answered, 0);
    assert_eq!(
        drop_name(&dp.process(tcp6_to(8080, 40000, true, b""), &meta(0))),
        "Dp(VipNotHeld)"
    );
    assert_eq!(dp.v6.conns.len(), 0);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(c.octets(), a(VIP6).octets(), 64)
        .icmpv6_echo_request(7, 1)
        .write(&mut v, b"ping")
        .unwrap();
    assert_eq!(
        drop_name(&dp.process(VecBuf::from_frame(&v), &meta(0))),
        "Dp(Ipv6NotForUs)"
    );
    // The same VIP owned by the config is answered.
    let mut dp: Datapath<VecBuf> = datapath_from(&config_fullnat(), 0, 1, 1024);
    let vip = a(VIP6);
    let v = dp.process(ns(c, icmpv6::solicited_node(vip), vip, 255), &meta(0));
    assert!(matches!(v, Verdict::Tx(0, _)), "{v:?}");
}

#[test]
fn a_dr_connection_resolves_its_real_server_and_keeps_it() {
    let mut dp = dp();
    let syn = tcp6(40000, true, b"");
    let sent = syn.data().to_vec();
    // The real server is unknown: the SYN waits and a solicitation goes to its group.
    assert!(matches!(dp.process(syn, &meta(0)), Verdict::Held));
    let g = generated(&mut dp);
    assert_eq!(g.len(), 1);
    let (port, frame) = &g[0];
    assert_eq!(*port, 1);
    let rs = a(RS6_1);
    let group = icmpv6::solicited_node(rs);
    assert_eq!(
        EthernetFrame::new_unchecked(&frame[..]).dst(),
        icmpv6::multicast_mac(group)
    );
    let (src, dst, hops, msg) = icmp_of(frame);
    assert_eq!((src, dst, hops), (a(GW6_SERVER), group, 255));
    let m = Icmpv6Packet::new_checked(&msg[..]).unwrap();
    assert_eq!(
        (m.msg_type(), m.nd_target()),
        (Icmpv6Type::NEIGHBOR_SOLICIT, rs)
    );
    // The answer releases the SYN: only its MACs changed. (It goes up to the twin as well: the
    // kernel may be resolving the same neighbour.)
    let v = dp.process(na(rs, RS1_MAC), &meta(1));
    assert!(matches!(v, Verdict::ToKernel(1, _)), "{v:?}");
    let r = released(&mut dp);
    assert_eq!(r.len(), 1);
    let (port, out) = &r[0];
    assert_eq!(*port, 1);
    let eth = EthernetFrame::new_unchecked(&out[..]);
    assert_eq!((eth.dst(), eth.src()), (RS1_MAC, SERVER_PORT_MAC));
    assert_eq!(out[12..], sent[12..], "the IPv6 packet is untouched");
    // Other workers hear of it: the answer may reach another worker than the question.
    let mut events = Vec::new();
    dp.l3.take_events(|e| events.push(e));
    assert!(events.contains(&Event::Learned6 {
        ip: rs,
        mac: RS1_MAC,
        port: 1
    }));
    // The connection's next packet goes straight to the same server.
    let ack = tcp6(40000, false, b"GET /");
    let sent = ack.data().to_vec();
    let Verdict::Tx(1, out) = dp.process(ack, &meta(0)) else {
        panic!("not sent")
    };
    assert_eq!(EthernetFrame::new_unchecked(out.data()).dst(), RS1_MAC);
    assert_eq!(out.data()[12..], sent[12..]);
    assert_eq!(dp.v6.conns.len(), 1);
    let svc = &dp.fwd.services().services[2].svc;
    let s: &RsStats = svc.stats(0).unwrap();
    assert_eq!((s.active(), s.inactive()), (1, 0));
    assert_eq!(dp.l3.stats.inet6.conns_created, 1);
    // The second connection goes to the other server (rr).
    assert!(matches!(
        dp.process(tcp6(40001, true, b""), &meta(0)),
        Verdict::Held
    ));
    let g = generated(&mut dp);
    let (_, _, _, msg) = icmp_of(&g[0].1);
    assert_eq!(
        Icmpv6Packet::new_checked(&msg[..]).unwrap().nd_target(),
        a(RS6_2)
    );
}

/// The destination and source MACs of a frame sent on `port`.
fn sent_macs(v: Verdict<VecBuf>, port: u16) -> (MacAddr, MacAddr) {
    match v {
        Verdict::Tx(p, out) if p == port => {
            let eth = EthernetFrame::new_unchecked(out.data());
            (eth.dst(), eth.src())
        }
        v => panic!("not sent on port {port}: {}", drop_name(&v)),
    }
}

/// The MACs of [`fullnat6_answered`]'s client's next plain ACK, sent to the real server.
fn client_ack(dp: &mut Datapath<VecBuf>) -> (MacAddr, MacAddr) {
    sent_macs(dp.process(tcp6_to(8080, 40000, false, b""), &meta(0)), 1)
}

/// The MAC a real server moves to in the tests of the caches of where packets go.
const MOVED_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x77]);

/// Gives port `port` a new MAC (a new topology), and returns it.
fn renew_port_mac(dp: &mut Datapath<VecBuf>, port: usize) -> MacAddr {
    let mut topo = (**dp.l3.topo()).clone();
    let mac = MacAddr([2, 0, 0, 0, 0, 0x66]);
    topo.ports[port].mac = mac;
    dp.l3.set_topology(std::sync::Arc::new(topo));
    mac
}

/// The cache of resolved neighbours (`nd::send_to`'s `Hop6`) follows the table: a real server that
/// changes its MAC (an advertisement overriding the entry) gets the connection's next packet at
/// the new one, and a port whose MAC changes (a new topology) sends from the new one.
#[test]
fn resolved_neighbours_follow_a_mac_change() {
    let mut dp = dp();
    let rs = a(RS6_1);
    dp.v6
        .neigh
        .learn(rs, RS1_MAC, 1, 0, true, true, |_, _, _| {});
    let send = |dp: &mut Datapath<VecBuf>| -> (MacAddr, MacAddr) {
        let Verdict::Tx(1, out) = dp.process(tcp6(40000, false, b"GET /"), &meta(0)) else {
            panic!("not sent")
        };
        let eth = EthernetFrame::new_unchecked(out.data());
        (eth.dst(), eth.src())
    };
    assert!(matches!(
        dp.process(tcp6(40000, true, b""), &meta(0)),
        Verdict::Tx(1, _)
    ));
    assert_eq!(send(&mut dp), (RS1_MAC, SERVER_PORT_MAC));
    assert_eq!(send(&mut dp), (RS1_MAC, SERVER_PORT_MAC), "served again");
    dp.v6
        .neigh
        .learn(rs, MOVED_MAC, 1, 0, true, true, |_, _, _| {});
    assert_eq!(send(&mut dp), (MOVED_MAC, SERVER_PORT_MAC));
    let new_port_mac = renew_port_mac(&mut dp, 1);
    assert_eq!(send(&mut dp), (MOVED_MAC, new_port_mac));
}

/// The established hot path's next hops (`nd::Hop6`) follow the neighbour table and the
/// topology: after the real server changes its MAC (an advertisement overriding its entry) the
/// client's next plain ACK goes to the new one, and after the client's port changes its MAC (a new
/// topology) the server's next ACK leaves from it. Each is sent twice before the change: the
/// second from the cache.
#[test]
fn hot_path_next_hops_follow_a_mac_change() {
    let (mut dp, lport) = fullnat6_answered();
    let ack = client_ack;
    let reply = |dp: &mut Datapath<VecBuf>| sent_macs(dp.process(from_rs(lport, ""), &meta(1)), 0);
    for _ in 0..2 {
        assert_eq!(ack(&mut dp), (RS1_MAC, SERVER_PORT_MAC));
        assert_eq!(reply(&mut dp), (CLIENT_MAC, CLIENT_PORT_MAC));
    }
    assert_eq!(fullnat6_state(&dp), crate::conn::State::Established);
    dp.v6
        .neigh
        .learn(a(RS6_1), MOVED_MAC, 1, 0, true, true, |_, _, _| {});
    assert_eq!(ack(&mut dp), (MOVED_MAC, SERVER_PORT_MAC));
    let new_port_mac = renew_port_mac(&mut dp, 0);
    assert_eq!(reply(&mut dp), (CLIENT_MAC, new_port_mac));
}

/// A real server that changed its MAC solicits the gateway's address from its new one (Linux
/// flushes its neighbours when its MAC changes, and sends no advertisement unless `ndisc_notify`
/// is set): the worker that receives the solicitation learns the MAC and tells the others
/// (`Event::Learned6`), as an ARP request does for IPv4, so that the worker forwarding the
/// server's connections sends to the new MAC from its next packet. Without the event, that
/// worker kept the old MAC until its own entry went stale and its probes of the old one failed.
/// (With RSS a server's solicitation and its connections' segments hash apart; in the af_packet
/// lab they reached the same worker in the runs timed, and an iperf3 over IPv6 lost only the
/// segments in flight when rs1 changed its MAC, 329 to 469, with this event or without.)
#[test]
fn a_solicitation_on_another_worker_moves_the_forwarding_ones_neighbour() {
    let (mut dp, _) = fullnat6_answered();
    let ack = |dp: &mut Datapath<VecBuf>| client_ack(dp).0;
    assert_eq!(ack(&mut dp), RS1_MAC);
    let mut other = datapath_from::<VecBuf>(&config_fullnat(), 1, 2, 1024);
    other.l3.take_events(|_| {});
    let (moved, rs, lip) = (MOVED_MAC, a(RS6_1), a(LIP6));
    let mut buf = [0u8; 128];
    let group = icmpv6::solicited_node(lip);
    let n = icmpv6::write_neighbor_solicit(&mut buf[14..], rs, group, lip, moved).unwrap();
    crate::wire::ethernet::write_header(
        &mut buf,
        icmpv6::multicast_mac(group),
        moved,
        EtherType::IPV6,
    )
    .unwrap();
    let v = other.process(VecBuf::from_frame(&buf[..14 + n]), &meta(1));
    assert!(
        matches!(v, Verdict::Tx(1, _)),
        "answered: {}",
        drop_name(&v)
    );
    let mut events = Vec::new();
    other.l3.take_events(|e| events.push(e));
    assert_eq!(
        events,
        [Event::Learned6 {
            ip: rs,
            mac: moved,
            port: 1
        }]
    );
    for e in events {
        if let Event::Learned6 { ip, mac, port } = e {
            dp.v6.learn_from_peer(&mut dp.l3, ip, mac, port);
        }
    }
    assert_eq!(ack(&mut dp), moved);
}

#[test]
fn a_tcp_packet_without_a_connection_opens_none_and_udp_goes_through_the_tunnel() {
    let mut dp = dp();
    dp.v6
        .neigh
        .learn(a(RS6_1), RS1_MAC, 1, 0, true, true, |_, _, _| {});
    let v = dp.process(tcp6(40000, false, b"x"), &meta(0));
    assert_eq!(drop_name(&v), "Dp(NoConn)");
    assert!(dp.v6.conns.is_empty());
    let dgram = udp6(5353, b"query");
    let inner = dgram.data()[14..].to_vec();
    let Verdict::Tx(1, out) = dp.process(dgram, &meta(0)) else {
        panic!("not sent")
    };
    let o = out.data();
    assert_eq!(EthernetFrame::new_unchecked(o).dst(), RS1_MAC);
    let outer = etherparse::Ipv6HeaderSlice::from_slice(&o[14..]).unwrap();
    assert_eq!(outer.source_addr(), a(GW6_SERVER));
    assert_eq!(outer.destination_addr(), a(RS6_1));
    assert_eq!(outer.next_header(), etherparse::IpNumber::IPV6);
    assert_eq!(usize::from(outer.payload_length()), inner.len());
    assert_eq!(
        o[14 + 40..],
        inner[..],
        "the client's packet inside, unchanged"
    );
}

#[test]
fn echo_to_the_vip_is_answered() {
    let mut dp = dp();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .icmpv6_echo_request(7, 1)
        .write(&mut v, b"ping")
        .unwrap();
    let Verdict::Tx(0, out) = dp.process(VecBuf::from_frame(&v), &meta(0)) else {
        panic!("not answered")
    };
    let eth = EthernetFrame::new_unchecked(out.data());
    assert_eq!((eth.dst(), eth.src()), (CLIENT_MAC, CLIENT_PORT_MAC));
    let (src, dst, _, msg) = icmp_of(out.data());
    assert_eq!((src, dst), (a(VIP6), a(CLIENT6)));
    assert_eq!(msg[0], Icmpv6Type::ECHO_REPLY.0);
    assert_eq!(&msg[8..], b"ping");
    assert_eq!(dp.l3.stats.inet6.echo_replies, 1);
}

#[test]
fn bad_ipv6_is_dropped_with_its_reason() {
    let mut dp = dp();
    // Nine destination-options headers: more than the walk allows.
    let mut f = tcp6(40000, true, b"").data().to_vec();
    let ext: Vec<u8> = (0..9)
        .flat_map(|i| [if i < 8 { 60 } else { 6 }, 0, 0, 0, 0, 0, 0, 0])
        .collect();
    f[20] = 60;
    let plen = u16::from_be_bytes([f[18], f[19]]) + ext.len() as u16;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    f.splice(54..54, ext);
    let v = dp.process(VecBuf::from_frame(&f), &meta(0));
    assert_eq!(drop_name(&v), "Dp(Ipv6BadExtensions)");
    // An ICMPv6 error in fragments: not followed (only TCP and UDP fragments are).
    let mut g = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut g, &tcp6(40000, true, b"").data()[14..])
        .unwrap();
    let g = fragments6(&g, 3, &[48]);
    let v = dp.process(VecBuf::from_frame(&g[0]), &meta(0));
    assert_eq!(drop_name(&v), "Dp(Ipv6Fragment)");
    // Truncated header, wrong version, payload past the frame.
    let t = tcp6(40000, true, b"").data()[..40].to_vec();
    assert_eq!(
        drop_name(&dp.process(VecBuf::from_frame(&t), &meta(0))),
        "Dp(Ipv6Malformed)"
    );
    let mut w = tcp6(40000, true, b"").data().to_vec();
    w[14] = 0x45;
    assert_eq!(
        drop_name(&dp.process(VecBuf::from_frame(&w), &meta(0))),
        "Dp(Ipv6Malformed)"
    );
    let mut l = tcp6(40000, true, b"").data().to_vec();
    l[18..20].copy_from_slice(&400u16.to_be_bytes());
    assert_eq!(
        drop_name(&dp.process(VecBuf::from_frame(&l), &meta(0))),
        "Dp(Ipv6Malformed)"
    );
    // A bad TCP checksum.
    let mut c = tcp6(40000, true, b"").data().to_vec();
    c[54 + 16] ^= 0xff;
    let v = dp.process(VecBuf::from_frame(&c), &meta(0));
    assert_eq!(drop_name(&v), "Dp(L4BadChecksum)");
    // Not ours.
    let mut n = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a("2001:db8:10::99").octets(), 64)
        .udp(1, 2)
        .write(&mut n, b"")
        .unwrap();
    let v = dp.process(VecBuf::from_frame(&n), &meta(0));
    assert_eq!(drop_name(&v), "Dp(Ipv6NotForUs)");
    assert!(dp.v6.conns.is_empty());
}

#[test]
fn a_removed_real_server_stops_its_connections_and_a_kept_one_follows_the_new_snapshot() {
    let mut dp = dp();
    dp.v6
        .neigh
        .learn(a(RS6_1), RS1_MAC, 1, 0, true, true, |_, _, _| {});
    dp.v6
        .neigh
        .learn(a(RS6_2), RS2_MAC, 1, 0, true, true, |_, _, _| {});
    assert!(matches!(
        dp.process(tcp6(40000, true, b""), &meta(0)),
        Verdict::Tx(1, _)
    ));
    assert!(matches!(
        dp.process(tcp6(40001, true, b""), &meta(0)),
        Verdict::Tx(1, _)
    ));
    // A snapshot where the service lists RS6_2 first and RS6_1 no more.
    reconfigure(&mut dp, |c| {
        if c.vip.is_ipv6() && c.vport == 80 {
            c.reals.retain(|r| r.addr == std::net::IpAddr::V6(a(RS6_2)));
            c.reals.insert(
                0,
                crate::service::RealServer::new(a("2001:db8:20::13"), 80, 1),
            );
            c.reals[0].fwd = crate::service::FwdMode::Dr;
        }
    });
    let v = dp.process(tcp6(40000, false, b"x"), &meta(0));
    assert_eq!(drop_name(&v), "Dp(NoRealServer)");
    let Verdict::Tx(1, out) = dp.process(tcp6(40001, false, b"x"), &meta(0)) else {
        panic!("the kept server's connection stopped")
    };
    assert_eq!(EthernetFrame::new_unchecked(out.data()).dst(), RS2_MAC);
}

/// RS6_1:80's segment to LIP6:`lport`: its SYN-ACK (`"SA"`), FIN (`"FA"`), or an ACK of 1002.
fn from_rs(lport: u16, flags: &str) -> VecBuf {
    let b = PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
        .ipv6(a(RS6_1).octets(), a(LIP6).octets(), 64)
        .tcp(80, lport, 5000, 65000);
    let b = match flags {
        "SA" => b.syn().ack(1001),
        "FA" => b.fin().ack(1001),
        _ => b.ack(1002),
    };
    let mut v = Vec::new();
    b.write(&mut v, b"").unwrap();
    VecBuf::from_frame(&v)
}

/// A new snapshot of `dp`'s services, each one's config passed through `edit` (its TOA and
/// local addresses kept).
fn reconfigure(dp: &mut Datapath<VecBuf>, edit: impl Fn(&mut ServiceConfig)) {
    let old = Arc::clone(dp.fwd.services());
    let specs: Vec<_> = old
        .services
        .iter()
        .map(|vs| {
            let mut c: ServiceConfig = vs.svc.config().clone();
            edit(&mut c);
            let opts = crate::forward::SvcOptions {
                toa: vs.toa,
                lips6: vs.lips6.clone(),
                ..Default::default()
            };
            (c, vs.lips.clone(), opts)
        })
        .collect();
    let new = crate::forward::ServiceTable::new(old.generation + 1, specs, Some(&old));
    let prepared = dp.fwd.prepare_services(Arc::new(new.unwrap())).unwrap();
    dp.commit_services(prepared);
}

/// A new snapshot of `dp`'s IPv6 services without RS6_1, with `expire_nodest_conn` `nodest`.
fn without_rs6_1(dp: &mut Datapath<VecBuf>, nodest: bool) {
    reconfigure(dp, |c| {
        if c.vip.is_ipv6() {
            c.reals.retain(|r| r.addr != std::net::IpAddr::V6(a(RS6_1)));
            c.expire_nodest_conn = nodest;
        }
    });
}

/// An established IPv6 FullNAT connection of a removed real server: its server's plain ACK
/// (the hot path's kind of packet) goes on to the client without `expire_nodest_conn`, and with
/// it ends the connection and is dropped, as IPv4's hot path leaves such a packet to the general
/// path.
#[test]
fn an_established_ipv6_connections_server_reply_follows_expire_nodest_conn() {
    for nodest in [false, true] {
        let (mut dp, _, lport, id) = fullnat6_established_after();
        without_rs6_1(&mut dp, nodest);
        let v = dp.process(from_rs(lport, "A"), &meta(1));
        if nodest {
            assert_eq!(drop_name(&v), "Dp(NoRealServer)");
            assert!(dp.v6.conns.get(id).is_none(), "the connection ended");
        } else {
            assert!(matches!(v, Verdict::Tx(0, _)), "{}", drop_name(&v));
        }
    }
}

/// A real server's plain ACK to a local address taken out of the pools leaves IPv6's hot path,
/// as IPv4's (`Forwarder::reaches_reply_side6`): the address's remembered slot is cleared with
/// the new snapshot, and the general path, to which the address is nothing now, does not send
/// the segment on to the client.
#[test]
fn an_ipv6_reply_to_a_removed_local_address_leaves_the_hot_path() {
    let (mut dp, _, lport, _) = fullnat6_established_after();
    for _ in 0..2 {
        let v = dp.process(from_rs(lport, "A"), &meta(1));
        assert!(matches!(v, Verdict::Tx(0, _)), "{}", drop_name(&v));
    }
    // The service keeps its VIP and real server, its local address is a new one.
    recommit(
        &mut dp,
        |_| true,
        |vs, o| {
            if vs.svc.config().vip.is_ipv6() {
                o.lips6 = vec![a("2001:db8:20::201")];
            }
        },
    );
    assert!(!dp.fwd.services().kind6(a(LIP6)).lip);
    let v = dp.process(from_rs(lport, "A"), &meta(1));
    assert!(
        !matches!(v, Verdict::Tx(0, _)),
        "a reply to the removed local address went on to the client"
    );
}

/// IPv6 FullNAT and NAT connections whose real server is removed from its service behave as
/// IPv4's (IPVS's `expire_nodest_conn`): without it, a connection goes on to the removed server
/// both ways; with it, the next packet of either side ends the connection, a TCP segment is
/// dropped and a client's UDP datagram scheduled afresh (`resched_udp_removed`). New connections go to the server left
/// either way.
#[test]
fn ipv6_connections_of_a_removed_server_follow_expire_nodest_conn() {
    let reals = |port: u16, mode: &str| {
        format!(
            "[[service.real]]\naddress = \"2001:db8:20::11\"\nport = {port}\nmode = \"{mode}\"\n\
             [[service.real]]\naddress = \"2001:db8:20::12\"\nport = {port}\nmode = \"{mode}\"\n"
        )
    };
    let service = |port: u16, proto: &str, reals: String| {
        format!(
            "[[service]]\nvip = \"2001:db8:10::100\"\nport = {port}\nprotocol = \"{proto}\"\n\
             scheduler = \"rr\"\nlocal_addresses = [\"2001:db8:20::200\"]\n{reals}"
        )
    };
    let cfg = format!(
        "{}\n{}\n{}\n{}",
        config6(),
        service(8080, "tcp", reals(80, "fullnat")),
        service(5353, "udp", reals(80, "fullnat")),
        service(8081, "tcp", reals(8080, "nat"))
    );
    let dst_mac = |v: &Verdict<VecBuf>| match v {
        Verdict::Tx(_, b) => EthernetFrame::new_unchecked(b.data()).dst(),
        other => panic!("not sent: {other:?}"),
    };
    for nodest in [false, true] {
        let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 1024);
        learn_rs1_and_client(&mut dp);
        dp.v6
            .neigh
            .learn(a(RS6_2), RS2_MAC, 1, 0, true, true, |_, _, _| {});
        // Round robin: both first connections go to RS6_1.
        let v = dp.process(tcp6_to(8080, 40000, true, b""), &meta(0));
        assert_eq!(dst_mac(&v), RS1_MAC);
        let Verdict::Tx(_, syn) = v else {
            unreachable!()
        };
        let lport = tcp_of(syn.data()).1;
        assert_eq!(
            dst_mac(&dp.process(udp6_to(5353, 6000, b"q"), &meta(0))),
            RS1_MAC
        );
        let nat = dp.process(tcp6_to(8081, 40002, true, b""), &meta(0));
        assert_eq!(dst_mac(&nat), RS1_MAC);
        // RS6_1 leaves every service.
        without_rs6_1(&mut dp, nodest);
        let t = crate::conn::Tuple6::new(a(CLIENT6), 40000, a(VIP6), 8080, 6);
        if nodest {
            // The server's side ends a connection too, as IPv4's: here the NAT one's answer.
            let answer = dp.process(VecBuf::from_frame(&nat_answer(40002)), &meta(1));
            assert_eq!(drop_name(&answer), "Dp(NoRealServer)");
        }
        let segment = dp.process(tcp6_to(8080, 40000, false, b"x"), &meta(0));
        let datagram = dp.process(udp6_to(5353, 6000, b"q"), &meta(0));
        let nat = dp.process(tcp6_to(8081, 40002, false, b"x"), &meta(0));
        if nodest {
            // Gone with the answer: a bare segment opens nothing.
            assert_eq!(drop_name(&nat), "Dp(NoConn)");
            assert_eq!(drop_name(&segment), "Dp(NoRealServer)");
            assert!(dp.v6.conns.lookup(&t).is_none(), "the connection ended");
            assert_eq!(dst_mac(&datagram), RS2_MAC, "scheduled afresh");
            assert_eq!(dp.fwd.stats.resched_udp_removed, 1);
        } else {
            assert_eq!(dst_mac(&segment), RS1_MAC, "on to the removed server");
            assert_eq!(dst_mac(&datagram), RS1_MAC);
            let answer = dp.process(VecBuf::from_frame(&syn_ack_to(lport)), &meta(1));
            assert!(
                matches!(answer, Verdict::Tx(0, _)),
                "{}",
                drop_name(&answer)
            );
            assert_eq!(dst_mac(&nat), RS1_MAC, "NAT too");
            let answer = dp.process(VecBuf::from_frame(&nat_answer(40002)), &meta(1));
            assert!(
                matches!(answer, Verdict::Tx(0, _)),
                "{}",
                drop_name(&answer)
            );
            assert_eq!(dp.fwd.stats.resched_udp_removed, 0);
        }
        let v = dp.process(tcp6_to(8080, 40001, true, b""), &meta(0));
        assert_eq!(dst_mac(&v), RS2_MAC);
        // Every connection of the removed server ends, counted once (`conns_expired`).
        dp.tick(dp.l3.now_ms + 1_000_000);
        assert!(dp.v6.conns.is_empty());
        assert_eq!(
            dp.l3.stats.inet6.conns_expired,
            dp.l3.stats.inet6.conns_created
        );
    }
}

#[test]
fn ipv6_connections_expire_and_release_their_server() {
    let mut dp = dp();
    dp.v6
        .neigh
        .learn(a(RS6_1), RS1_MAC, 1, 0, true, true, |_, _, _| {});
    assert!(matches!(
        dp.process(udp6(5353, b"q"), &meta(0)),
        Verdict::Tx(1, _)
    ));
    assert_eq!(dp.v6.conns.len(), 1);
    let svc = Arc::clone(&dp.fwd.services().services[3].svc);
    assert_eq!(svc.stats(0).unwrap().total(), 1);
    // UDP's timeout is 300 s (IPVS's default).
    dp.tick(301_000);
    assert!(dp.v6.conns.is_empty());
    assert_eq!(svc.stats(0).unwrap().total(), 0);
    assert_eq!(dp.l3.stats.inet6.conns_expired, 1);
}

use std::sync::Arc;

#[test]
fn a_syn_on_a_closed_entry_is_scheduled_afresh() {
    let mut dp = dp();
    dp.v6
        .neigh
        .learn(a(RS6_1), RS1_MAC, 1, 0, true, true, |_, _, _| {});
    dp.v6
        .neigh
        .learn(a(RS6_2), RS2_MAC, 1, 0, true, true, |_, _, _| {});
    let Verdict::Tx(1, out) = dp.process(tcp6(40000, true, b""), &meta(0)) else {
        panic!("not sent")
    };
    assert_eq!(EthernetFrame::new_unchecked(out.data()).dst(), RS1_MAC);
    // The client closed; its port comes back while the entry is in TIME_WAIT (conn_reuse_mode 1).
    let (id, _) = dp
        .v6
        .conns
        .lookup(&crate::conn::Tuple6::new(a(CLIENT6), 40000, a(VIP6), 80, 6))
        .unwrap();
    dp.v6.conns.refresh(
        id,
        crate::conn::State::TimeWait,
        60_000,
        crate::conn::Ticks(0),
    );
    let Verdict::Tx(1, out) = dp.process(tcp6(40000, true, b""), &meta(0)) else {
        panic!("not sent")
    };
    assert_eq!(
        EthernetFrame::new_unchecked(out.data()).dst(),
        RS2_MAC,
        "scheduled afresh (rr), not following the old entry"
    );
    assert_eq!(dp.v6.conns.len(), 1);
    assert_eq!(dp.l3.stats.inet6.conns_created, 2);
    // A retransmitted SYN of a live handshake follows its entry.
    let Verdict::Tx(1, out) = dp.process(tcp6(40000, true, b""), &meta(0)) else {
        panic!("not sent")
    };
    assert_eq!(EthernetFrame::new_unchecked(out.data()).dst(), RS2_MAC);
    assert_eq!(dp.l3.stats.inet6.conns_created, 2);
    // A SYN with another ISN before the client's ACK: the client gave that handshake up (DR:
    // the server's answer never passes here), so this is a new connection, scheduled afresh.
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .tcp(40000, 80, 777_000, 64240)
        .syn()
        .write(&mut v, b"")
        .unwrap();
    let Verdict::Tx(1, out) = dp.process(VecBuf::from_frame(&v), &meta(0)) else {
        panic!("not sent")
    };
    assert_eq!(EthernetFrame::new_unchecked(out.data()).dst(), RS1_MAC);
    assert_eq!(dp.l3.stats.inet6.conns_created, 3);
    assert_eq!(dp.v6.conns.len(), 1);
    let s = dp.fwd.stats;
    assert_eq!((s.resched_closed, s.resched_new_isn), (1, 1), "{s:?}");
}

/// The answer to one worker's solicitation reaches another (RSS, the kernel's fanout): that one
/// announces it and the asking worker's held packet leaves.
#[test]
fn an_advertisement_on_another_worker_releases_the_asking_one() {
    let mut asking = dp();
    let mut other = datapath_from::<VecBuf>(&config6(), 1, 2, 1024);
    assert!(matches!(
        asking.process(tcp6(40000, true, b""), &meta(0)),
        Verdict::Held
    ));
    assert_eq!(generated(&mut asking).len(), 1);
    let rs = a(RS6_1);
    other.process(na(rs, RS1_MAC), &meta(1));
    assert_eq!(
        other.v6.neigh.mac(rs),
        None,
        "no entry made where none was asked for"
    );
    let mut events = Vec::new();
    other.l3.take_events(|e| events.push(e));
    assert_eq!(events.len(), 1);
    let Event::Learned6 { ip, mac, port } = events[0] else {
        panic!("{events:?}")
    };
    asking.v6.learn_from_peer(&mut asking.l3, ip, mac, port);
    let r = released(&mut asking);
    assert_eq!(r.len(), 1);
    assert_eq!(EthernetFrame::new_unchecked(&r[0].1[..]).dst(), RS1_MAC);
}

/// RS6_1 (server port) and CLIENT6 (client port) as resolved neighbours, learnt at time 0.
fn learn_rs1_and_client(dp: &mut Datapath<VecBuf>) {
    dp.v6
        .neigh
        .learn(a(RS6_1), RS1_MAC, 1, 0, true, true, |_, _, _| {});
    dp.v6
        .neigh
        .learn(a(CLIENT6), CLIENT_MAC, 0, 0, true, true, |_, _, _| {});
}

const LIP6: &str = "2001:db8:20::200";

/// `config6` with a FullNAT TCP service on VIP6:8080 over RS6_1:80, with TOA, from `LIP6`.
fn config_fullnat() -> String {
    config6()
        + r#"
[[service]]
vip = "2001:db8:10::100"
port = 8080
protocol = "tcp"
scheduler = "rr"
local_addresses = ["2001:db8:20::200"]
[[service.real]]
address = "2001:db8:20::11"
port = 80
"#
}

fn tcp6_to(dport: u16, sport: u16, syn: bool, payload: &[u8]) -> VecBuf {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .tcp(sport, dport, 1000, 64240);
    let b = if syn {
        b.syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1440)])
            .unwrap()
    } else {
        b.ack(1)
    };
    b.write(&mut v, payload).unwrap();
    VecBuf::from_frame(&v)
}

/// (src, sport, dst, dport, TCP header) of an IPv6/TCP frame, its checksum verified by etherparse.
fn tcp_of(frame: &[u8]) -> (Ipv6Addr, u16, Ipv6Addr, u16, etherparse::TcpHeader) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else {
        panic!("not ipv6")
    };
    let (s, d) = (ip.header().source(), ip.header().destination());
    let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else {
        panic!("not tcp")
    };
    assert_eq!(
        t.checksum(),
        t.calc_checksum_ipv6(s, d).unwrap(),
        "TCP checksum"
    );
    assert_eq!(
        usize::from(ip.header().payload_length()),
        frame.len() - 54,
        "payload length"
    );
    (
        Ipv6Addr::from(s),
        t.source_port(),
        Ipv6Addr::from(d),
        t.destination_port(),
        t.to_header(),
    )
}

/// RS6_1's SYN-ACK to LIP6:lport.
fn syn_ack_to(lport: u16) -> Vec<u8> {
    let mut r = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
        .ipv6(a(RS6_1).octets(), a(LIP6).octets(), 64)
        .tcp(80, lport, 5000, 65000)
        .syn()
        .ack(1001)
        .write(&mut r, b"")
        .unwrap();
    r
}

/// A FullNAT datapath whose client [`CLIENT6`]:40000 has sent its SYN to [`VIP6`]:8080, and the
/// local port the SYN left from.
fn fullnat6_syn_sent() -> (Datapath<VecBuf>, u16) {
    let (dp, _, lport) = fullnat6_syn_out();
    (dp, lport)
}

/// [`fullnat6_syn_sent`] with the real server's SYN-ACK forwarded to the client.
fn fullnat6_answered() -> (Datapath<VecBuf>, u16) {
    let (mut dp, lport) = fullnat6_syn_sent();
    let v = dp.process(VecBuf::from_frame(&syn_ack_to(lport)), &meta(1));
    assert!(matches!(v, Verdict::Tx(0, _)), "{}", drop_name(&v));
    (dp, lport)
}

/// [`fullnat6_syn_sent`] with the SYN as it left toward the real server (LIP6:lport -> RS6_1:80).
fn fullnat6_syn_out() -> (Datapath<VecBuf>, Vec<u8>, u16) {
    let mut dp: Datapath<VecBuf> = datapath_from(&config_fullnat(), 0, 1, 1024);
    learn_rs1_and_client(&mut dp);
    let Verdict::Tx(1, out) = dp.process(tcp6_to(8080, 40000, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    let syn = out.data().to_vec();
    let lport = tcp_of(&syn).1;
    (dp, syn, lport)
}

/// The client's FIN (sequence 1001, acknowledging `ack`) from port `cport` to VIP6:8080.
fn client_fin6(cport: u16, ack: u32) -> VecBuf {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .tcp(cport, 8080, 1001, 64240)
        .fin()
        .ack(ack)
        .write(&mut v, b"")
        .unwrap();
    VecBuf::from_frame(&v)
}

/// RS6_1's port unreachable to LIP6 about `quoted`, a frame the gateway sent it.
fn unreachable_from_rs1(quoted: &[u8]) -> VecBuf {
    icmp6_error(
        (RS1_MAC, SERVER_PORT_MAC),
        a(RS6_1),
        a(LIP6),
        etherparse::Icmpv6Type::DestinationUnreachable(
            etherparse::icmpv6::DestUnreachableCode::Port,
        ),
        quoted,
    )
}

/// The state of [`fullnat6_syn_sent`]'s connection.
fn fullnat6_state(dp: &Datapath<VecBuf>) -> crate::conn::State {
    let t = crate::conn::Tuple6::new(a(CLIENT6), 40000, a(VIP6), 8080, 6);
    dp.v6
        .conns
        .get(dp.v6.conns.lookup(&t).unwrap().0)
        .unwrap()
        .state()
}

/// Commits a new snapshot of the services `keep` keeps, as they are (TOA and local addresses)
/// with what `tweak` changes in their options.
fn recommit(
    dp: &mut Datapath<VecBuf>,
    keep: impl Fn(&crate::forward::VirtualService) -> bool,
    tweak: impl Fn(&crate::forward::VirtualService, &mut crate::forward::SvcOptions),
) {
    let old = Arc::clone(dp.fwd.services());
    let specs: Vec<_> = old
        .services
        .iter()
        .filter(|vs| keep(vs))
        .map(|vs| {
            let mut opts = crate::forward::SvcOptions {
                toa: vs.toa,
                lips6: vs.lips6.clone(),
                ..Default::default()
            };
            tweak(vs, &mut opts);
            (vs.svc.config().clone(), vs.lips.clone(), opts)
        })
        .collect();
    let new = crate::forward::ServiceTable::new(old.generation + 1, specs, Some(&old)).unwrap();
    let prepared = dp.fwd.prepare_services(Arc::new(new)).unwrap();
    dp.commit_services(prepared);
}

/// A new snapshot that leaves an IPv6 FullNAT service and its local addresses as they were keeps
/// its pool, as IPv4's (`Forwarder::keeps_pool`): the next connection goes on from the port after
/// the last one's. A pool built afresh started over at the port the last connection took, which
/// its real server may still hold in TIME_WAIT (every `gwctl` or `ipvsadm` change, and every
/// health check's weight change, is a new snapshot).
#[test]
fn fullnat6_local_ports_go_on_across_a_snapshot_that_keeps_the_service() {
    let (mut dp, first) = fullnat6_syn_sent();
    // The connection ends (SYN_RECV's 60 s): its LIP:lport is free here, not on the server.
    dp.tick(61_000);
    dp.tick(62_000);
    assert!(dp.v6.conns.is_empty());
    recommit(&mut dp, |_| true, |_, _| {});
    let Verdict::Tx(1, out) = dp.process(tcp6_to(8080, 40001, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    let (lip, next, ..) = tcp_of(out.data());
    assert_eq!(lip, a(LIP6));
    assert_ne!(
        next, first,
        "the pool started over at the last connection's port"
    );
}

/// IPv6 FullNAT as IPv4's (`Forwarder::keeps_syn_recv`): a server's bare ACK to the
/// SYN (its TIME_WAIT on the LIP:lport) leaves the connection in SYN_RECV, where the client's RST
/// to it changes nothing, so that the client's SYN sent again reaches the same LIP:lport; once
/// established, a client's RST closes the connection as ever.
#[test]
fn fullnat6_keeps_a_handshake_a_servers_time_wait_answered_for_the_clients_retry() {
    let (mut dp, lport) = fullnat6_syn_sent();
    let segment =
        |src: (&str, u16), dst: (&str, u16), macs: (MacAddr, MacAddr), seq: u32, flags: &str| {
            let b = PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
                .ipv6(a(src.0).octets(), a(dst.0).octets(), 64)
                .tcp(src.1, dst.1, seq, 65000);
            let b = match flags {
                "A" => b.ack(777_777),
                "R" => b.rst(),
                _ => b.syn().ack(1001),
            };
            let mut v = Vec::new();
            b.write(&mut v, b"").unwrap();
            VecBuf::from_frame(&v)
        };
    let from_rs = |flags| {
        segment(
            (RS6_1, 80),
            (LIP6, lport),
            (RS1_MAC, SERVER_PORT_MAC),
            5000,
            flags,
        )
    };
    let from_client = |flags| {
        segment(
            (CLIENT6, 40000),
            (VIP6, 8080),
            (CLIENT_MAC, CLIENT_PORT_MAC),
            777_777,
            flags,
        )
    };
    assert!(matches!(
        dp.process(from_rs("A"), &meta(1)),
        Verdict::Tx(0, _)
    ));
    let Verdict::Tx(1, rst) = dp.process(from_client("R"), &meta(0)) else {
        panic!("the RST does not reach the server")
    };
    assert_eq!(tcp_of(rst.data()).1, lport);
    assert_eq!(fullnat6_state(&dp), crate::conn::State::SynRecv);
    assert_eq!(dp.fwd.stats.server_time_wait, 1);
    let Verdict::Tx(1, again) = dp.process(tcp6_to(8080, 40000, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    assert_eq!(tcp_of(again.data()).1, lport, "the same local port");
    assert_eq!(dp.l3.stats.inet6.conns_created, 1);
    assert!(matches!(
        dp.process(from_rs("SA"), &meta(1)),
        Verdict::Tx(0, _)
    ));
    assert!(matches!(
        dp.process(tcp6_to(8080, 40000, false, b""), &meta(0)),
        Verdict::Tx(1, _)
    ));
    assert_eq!(fullnat6_state(&dp), crate::conn::State::Established);
    assert!(matches!(
        dp.process(from_client("R"), &meta(0)),
        Verdict::Tx(1, _)
    ));
    assert_eq!(fullnat6_state(&dp), crate::conn::State::Close);
    assert_eq!(dp.fwd.stats.server_time_wait, 1);
}

/// IPv6 FullNAT as IPv4's (`datapath_input`'s
/// `a_servers_stale_answer_leaves_the_handshake_in_syn_recv`): a server's SYN-ACK, then its bare
/// ACK before the client's, answer an earlier handshake on the LIP:lport. The connection stays in
/// SYN_RECV (IPVS's table: ESTABLISHED, for 15 minutes) until the client's ACK.
#[test]
fn fullnat6_keeps_a_handshake_in_syn_recv_on_a_servers_stale_answer() {
    let (mut dp, lport) = fullnat6_syn_sent();
    for syn in [true, false] {
        let b = PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
            .ipv6(a(RS6_1).octets(), a(LIP6).octets(), 64)
            .tcp(80, lport, 5000, 65000);
        let b = match syn {
            true => b.syn().ack(5555),
            false => b.ack(5555),
        };
        let mut v = Vec::new();
        b.write(&mut v, b"").unwrap();
        assert!(matches!(
            dp.process(VecBuf::from_frame(&v), &meta(1)),
            Verdict::Tx(0, _)
        ));
    }
    assert_eq!(fullnat6_state(&dp), crate::conn::State::SynRecv);
    let s = &dp.fwd.stats;
    assert_eq!((s.server_stale_answer, s.server_time_wait), (1, 0));
    assert!(matches!(
        dp.process(tcp6_to(8080, 40000, false, b""), &meta(0)),
        Verdict::Tx(1, _)
    ));
    assert_eq!(fullnat6_state(&dp), crate::conn::State::Established);
}

/// IPv6 FullNAT out of local ports, as IPv4's (`datapath_input`'s
/// `a_worker_out_of_local_ports_takes_the_place_of_the_oldest_time_wait`): 1024 ports on one LIP
/// toward one server, a table of 4096, connections opened and closed (TIME_WAIT holds their
/// ports for 120 s): once the ports are all held, each new connection takes the place of the
/// oldest in TIME_WAIT, on its port, instead of being refused (`ports_exhausted`). Before, the
/// pool's cursor had moved past the freed port and every SYN was refused.
#[test]
fn fullnat6_out_of_local_ports_takes_the_place_of_the_oldest_time_wait() {
    let text = config_fullnat() + "\n[conn]\nport_range = [1024, 2047]\ncapacity6 = 4096\n";
    let mut dp: Datapath<VecBuf> = datapath_from(&text, 0, 1, 1024);
    learn_rs1_and_client(&mut dp);
    let mut lports = std::collections::HashSet::new();
    for cport in 10_000..11_600u16 {
        let Verdict::Tx(1, out) = dp.process(tcp6_to(8080, cport, true, b""), &meta(0)) else {
            panic!("SYN {cport} not sent: {:?}", dp.l3.stats.inet6)
        };
        let lport = tcp_of(out.data()).1;
        lports.insert(lport);
        for (pkt, port) in [
            (from_rs(lport, "SA"), 1),
            (tcp6_to(8080, cport, false, b""), 0),
            (from_rs(lport, "FA"), 1),
            (client_fin6(cport, 5002), 0),
            (from_rs(lport, "A"), 1),
        ] {
            let v = dp.process(pkt, &meta(port));
            assert!(matches!(v, Verdict::Tx(..)), "{cport}: {}", drop_name(&v));
        }
    }
    let counts = dp.l3.stats.inet6;
    // This worker's 1024 ports, each held by one connection in TIME_WAIT, then given way.
    assert_eq!(lports.len(), 1024);
    assert_eq!(dp.v6.conns.len(), 1024);
    assert_eq!(counts.conns_created, 1600);
    // One connection given way per connection taken past the ports: the freed port is taken.
    assert_eq!(counts.evicted_time_wait, 1600 - 1024, "{counts:?}");
    // They left the table: counted in `conns_expired` (read at the next tick), as IPv4's.
    dp.tick(dp.l3.now_ms + 1);
    assert_eq!(dp.l3.stats.inet6.conns_expired, 1600 - 1024);
}

#[test]
fn fullnat6_translates_both_ways_with_the_ipv6_toa() {
    let mut dp: Datapath<VecBuf> = datapath_from(&config_fullnat(), 0, 1, 1024);
    learn_rs1_and_client(&mut dp);
    let Verdict::Tx(1, out) = dp.process(tcp6_to(8080, 40000, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    let eth = EthernetFrame::new_unchecked(out.data());
    assert_eq!((eth.dst(), eth.src()), (RS1_MAC, SERVER_PORT_MAC));
    let (src, lport, dst, rport, th) = tcp_of(out.data());
    assert_eq!((src, dst, rport), (a(LIP6), a(RS6_1), 80));
    // The client's address and port in the IPv6 TOA (kind 254, length 20).
    let o = th.options.as_slice();
    let at = o.iter().position(|&b| b == 254).expect("TOA");
    assert_eq!(o[at + 1], 20);
    assert_eq!(u16::from_be_bytes([o[at + 2], o[at + 3]]), 40000);
    assert_eq!(
        Ipv6Addr::from(<[u8; 16]>::try_from(&o[at + 4..at + 20]).unwrap()),
        a(CLIENT6)
    );
    assert_eq!(dp.l3.stats.inet6.toa_added, 1);

    // The server's SYN-ACK to LIP:lport goes back to the client from the VIP.
    let r = syn_ack_to(lport);
    let Verdict::Tx(0, back) = dp.process(VecBuf::from_frame(&r), &meta(1)) else {
        panic!("reply not sent")
    };
    let eth = EthernetFrame::new_unchecked(back.data());
    assert_eq!((eth.dst(), eth.src()), (CLIENT_MAC, CLIENT_PORT_MAC));
    let (src, sport, dst, dport, _) = tcp_of(back.data());
    assert_eq!((src, sport, dst, dport), (a(VIP6), 8080, a(CLIENT6), 40000));
    let (id, _) = dp
        .v6
        .conns
        .lookup(&crate::conn::Tuple6::new(
            a(CLIENT6),
            40000,
            a(VIP6),
            8080,
            6,
        ))
        .unwrap();
    assert_eq!(
        dp.v6.conns.get(id).unwrap().state(),
        crate::conn::State::SynRecv
    );
    // The client's data: no TOA any more.
    let Verdict::Tx(1, data) = dp.process(tcp6_to(8080, 40000, false, b"GET /"), &meta(0)) else {
        panic!("data not sent")
    };
    let (_, l2, _, _, th) = tcp_of(data.data());
    assert_eq!(l2, lport);
    assert!(th.options.as_slice().is_empty());
    assert_eq!(dp.l3.stats.inet6.toa_added, 1);
    // A reply to a local port nobody uses: dropped.
    let mut stray = r.clone();
    stray[54 + 2..54 + 4].copy_from_slice(&(lport ^ 2).to_be_bytes());
    let v = dp.process(VecBuf::from_frame(&stray), &meta(1));
    assert!(matches!(v, Verdict::Drop(..)), "{v:?}");
    // `ipvsadm --stats` counts the connection and its packets (IP lengths as received, TOA
    // not included); the stray reply is not counted.
    let ip_len = |f: &[u8]| (f.len() - 14) as u64;
    let syn = tcp6_to(8080, 40000, true, b"");
    let data = tcp6_to(8080, 40000, false, b"GET /");
    let t = dp
        .fwd
        .traffic_entries()
        .find(|(k, _)| k.vip == std::net::IpAddr::V6(a(VIP6)) && k.vport == 8080)
        .map(|(_, t)| t)
        .expect("the service's counters");
    assert_eq!((t.conns, t.inpkts, t.outpkts), (1, 2, 1));
    assert_eq!(t.inbytes, ip_len(syn.data()) + ip_len(data.data()));
    assert_eq!(t.outbytes, ip_len(&r));
}

/// With two workers, a reply that reaches the worker not owning its local port is handed over.
#[test]
fn fullnat6_reply_on_the_other_worker_is_handed_to_the_owner() {
    let mut w0: Datapath<VecBuf> = datapath_from(&config_fullnat(), 0, 2, 1024);
    let mut w1: Datapath<VecBuf> = datapath_from(&config_fullnat(), 1, 2, 1024);
    w0.v6
        .neigh
        .learn(a(RS6_1), RS1_MAC, 1, 0, true, true, |_, _, _| {});
    let Verdict::Tx(1, out) = w0.process(tcp6_to(8080, 40000, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    let (_, lport, _, _, _) = tcp_of(out.data());
    assert_eq!(lport % 2, 0, "worker 0 uses the even ports");
    let r = syn_ack_to(lport);
    let v = w1.process(VecBuf::from_frame(&r), &meta(1));
    assert!(matches!(v, Verdict::ToWorker(0, _)), "{v:?}");
}

proptest::proptest! {
    /// The FullNAT rewrite out and back restores the bytes, and every step's checksum verifies
    /// (etherparse): TCP and UDP (whose IPv6 checksum is never 0), any addresses and ports, with
    /// or without a destination options header before the upper layer (`rewrite`'s two cases).
    #[test]
    fn fullnat6_rewrite_round_trips(
        c in proptest::array::uniform16(proptest::num::u8::ANY),
        l in proptest::array::uniform16(proptest::num::u8::ANY),
        r in proptest::array::uniform16(proptest::num::u8::ANY),
        ports in proptest::array::uniform4(proptest::num::u16::ANY),
        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        udp in proptest::bool::ANY,
        options in proptest::bool::ANY,
    ) {
        let (cip, lip, rip) = (Ipv6Addr::from(c), Ipv6Addr::from(l), Ipv6Addr::from(r));
        let vip = a(VIP6);
        let b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0).ipv6(c, vip.octets(), 64);
        let mut f = Vec::new();
        let proto = if udp {
            b.udp(ports[0], ports[1]).write(&mut f, &payload).unwrap();
            crate::wire::IpProtocol::UDP
        } else {
            b.tcp(ports[0], ports[1], 7, 1000).write(&mut f, &payload).unwrap();
            crate::wire::IpProtocol::TCP
        };
        // A destination options header (RFC 8200 4.6) of 8 bytes, a PadN option filling it, put
        // before the upper layer: the upper layer's checksum covers none of it.
        let mut l4_off = 54;
        if options {
            f.splice(54..54, [proto.0, 0, 1, 4, 0, 0, 0, 0]);
            f[20] = 60;
            let len = u16::from_be_bytes([f[18], f[19]]) + 8;
            f[18..20].copy_from_slice(&len.to_be_bytes());
            l4_off += 8;
        }
        let orig = f.clone();
        let verify = |f: &[u8]| {
            let p = SlicedPacket::from_ethernet(f).unwrap();
            let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else { panic!() };
            let (s, d) = (ip.header().source(), ip.header().destination());
            match p.transport {
                Some(etherparse::TransportSlice::Tcp(t)) => {
                    assert_eq!(t.checksum(), t.calc_checksum_ipv6(s, d).unwrap())
                }
                Some(etherparse::TransportSlice::Udp(u)) => {
                    let want = u.to_header().calc_checksum_ipv6_raw(s, d, u.payload()).unwrap();
                    assert_eq!(u.checksum(), want);
                    assert_ne!(u.checksum(), 0);
                }
                _ => panic!("no transport"),
            }
        };
        fullnat::rewrite(&mut f, l4_off, proto, (lip, ports[2]), (rip, ports[3]));
        verify(&f);
        fullnat::rewrite(&mut f, l4_off, proto, (cip, ports[0]), (vip, ports[1]));
        verify(&f);
        proptest::prop_assert_eq!(f, orig);
    }
}

/// An ICMPv6 error of `kind` (4-byte field `word`) from `src` to `dst`, quoting `quote` (an IPv6
/// frame's IP packet), sent by `macs`, encoded by etherparse.
fn icmp6_error(
    macs: (MacAddr, MacAddr),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    t: etherparse::Icmpv6Type,
    quote: &[u8],
) -> VecBuf {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv6(src.octets(), dst.octets(), 64)
        .icmpv6(t)
        .write(&mut v, &quote[14..])
        .unwrap();
    VecBuf::from_frame(&v)
}

/// A SYN on a reused client port whose FullNAT connection is in TIME_WAIT is a new connection on
/// a fresh LIP:lport (`reschedule`), and the old entry is parked on its LIP:lport for TIME_WAIT's
/// timeout (`service::retire`), as IPv4's (`forward::fullnat::PARKED`): its real server may hold
/// that tuple in TIME_WAIT, so no new connection may take it. The parked entry forwards nothing
/// (a late reply, an ICMPv6 error about it), is not listed, and counts neither for its server nor
/// for its local address, then or when it expires.
#[test]
fn fullnat6_a_replaced_connection_holds_its_local_port_for_time_wait() {
    let (mut dp, syn, lport, old) = fullnat6_established_after();
    // The connection closes: the client's FIN, the server's.
    let v = dp.process(client_fin6(40000, 5001), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    let mut fin = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
        .ipv6(a(RS6_1).octets(), a(LIP6).octets(), 64)
        .tcp(80, lport, 5001, 65000)
        .fin()
        .ack(1002)
        .write(&mut fin, b"")
        .unwrap();
    let v = dp.process(VecBuf::from_frame(&fin), &meta(1));
    assert!(matches!(v, Verdict::Tx(0, _)), "{}", drop_name(&v));
    let state = dp.v6.conns.get(old).unwrap().state();
    assert_eq!(state, crate::conn::State::TimeWait);
    let t = crate::conn::Tuple6::new(a(CLIENT6), 40000, a(VIP6), 8080, 6);
    // Its client's port comes back (conn_reuse_mode 1).
    let v = dp.process(tcp6_to(8080, 40000, true, b""), &meta(0));
    let Verdict::Tx(1, out) = v else {
        panic!("not sent: {}", drop_name(&v))
    };
    let lport2 = tcp_of(out.data()).1;
    assert_ne!(lport2, lport, "a fresh local port");
    assert_eq!(dp.fwd.stats.resched_closed, 1);
    assert_eq!(dp.v6.conns.len(), 2, "the old entry holds its LIP:lport");
    let c = *dp.v6.conns.get(old).unwrap();
    assert!(service::parked(&c), "{c:?}");
    assert_eq!(c.reply().unwrap().dport, lport);
    let (new, _) = dp.v6.conns.lookup(&t).unwrap();
    assert_ne!(new, old);
    // A backup never hears of it (no service nor server, `sync6::export`).
    let now = crate::conn::Ticks(dp.l3.now_ms);
    assert!(sync6::export(&dp.fwd, &dp.v6.conns, old, now).is_none());
    // The old tuple is held: a new connection's allocation passes it by.
    let held = crate::conn::Tuple6::new(a(RS6_1), 80, a(LIP6), lport, 6);
    assert_eq!(
        dp.v6.conns.lookup(&held),
        Some((old, crate::conn::Dir::Reply))
    );
    // Its server's late segment and an error about the old SYN are dropped.
    let late = dp.process(VecBuf::from_frame(&syn_ack_to(lport)), &meta(1));
    assert_eq!(drop_name(&late), "Dp(NoConn)");
    let unreach = unreachable_from_rs1(&syn);
    assert_eq!(drop_name(&dp.process(unreach, &meta(1))), "Dp(NoConn)");
    // Listed, counted: the new connection only.
    let filter = crate::control::proto::ConnFilter::default();
    let listed = crate::control::dump::worker_dump(0, &dp, &filter, 100, 0).conns;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].local.map(|l| l.1), Some(lport2));
    assert_eq!((in_use(&dp), rs_total(&dp)), (1, 1));
    // Both expire (TIME_WAIT's and SYN_RECV's timeouts): nothing is counted down twice, and
    // the parked entry's tuples name no (service, LIP) to count on.
    let keys = dp.v6.lip_conns.keys();
    dp.tick(dp.l3.now_ms + 200_000);
    dp.tick(dp.l3.now_ms + 1_000);
    assert!(dp.v6.conns.is_empty());
    assert_eq!((in_use(&dp), rs_total(&dp)), (0, 0));
    assert_eq!(dp.v6.lip_conns.keys(), keys);
}

/// The IPv6 local ports in use on `dp`, over every (service, LIP).
fn in_use(dp: &Datapath<VecBuf>) -> u32 {
    let usage = dp.v6.lip_conns.usage(dp.fwd.services());
    usage.iter().map(|u| u.1).sum()
}

/// The connections counted to the first real server of the service on port 8080.
fn rs_total(dp: &Datapath<VecBuf>) -> u32 {
    let vs = dp
        .fwd
        .services()
        .services
        .iter()
        .find(|vs| vs.svc.config().vport == 8080);
    vs.unwrap().svc.stats(0).unwrap().total()
}

/// ICMPv6 errors about a FullNAT connection reach the other side translated: a packet too big on
/// the client's path reaches the real server (path MTU discovery), a server-side unreachable
/// reaches the client.
#[test]
fn icmpv6_errors_about_fullnat6_connections_are_translated() {
    let (mut dp, syn, lport) = fullnat6_syn_out();
    let Verdict::Tx(0, synack) = dp.process(VecBuf::from_frame(&syn_ack_to(lport)), &meta(1))
    else {
        panic!("SYN-ACK not sent")
    };
    let synack = synack.data().to_vec();
    // A router on the client's path: the SYN-ACK (VIP:8080 -> CIP:40000) was too big.
    let router = a("2001:db8:10::fe");
    let ptb = icmp6_error(
        (CLIENT_MAC, CLIENT_PORT_MAC),
        router,
        a(VIP6),
        etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 },
        &synack,
    );
    let Verdict::Tx(1, out) = dp.process(ptb, &meta(0)) else {
        panic!("not passed to the server")
    };
    let (src, dst, _, msg) = icmp_of(out.data());
    assert_eq!((src, dst), (a(LIP6), a(RS6_1)));
    assert_eq!(msg[0], Icmpv6Type::PACKET_TOO_BIG.0);
    assert_eq!(&msg[4..8], &1280u32.to_be_bytes());
    // The quote is the server's own SYN-ACK again, its checksum right.
    let mut quoted = vec![0u8; 14];
    quoted.extend_from_slice(&msg[8..]);
    quoted[12..14].copy_from_slice(&[0x86, 0xdd]);
    let (s, sp, d, dp_, _) = tcp_of(&quoted);
    assert_eq!((s, sp, d, dp_), (a(RS6_1), 80, a(LIP6), lport));
    // The server side: an unreachable about the SYN (LIP:lport -> RIP:80) reaches the client
    // about its own SYN (CIP:40000 -> VIP:8080).
    let unreach = unreachable_from_rs1(&syn);
    let Verdict::Tx(0, out) = dp.process(unreach, &meta(1)) else {
        panic!("not passed to the client")
    };
    let (src, dst, _, msg) = icmp_of(out.data());
    assert_eq!((src, dst), (a(VIP6), a(CLIENT6)));
    let mut quoted = vec![0u8; 14];
    quoted.extend_from_slice(&msg[8..]);
    quoted[12..14].copy_from_slice(&[0x86, 0xdd]);
    let (s, sp, d, dp_, _) = tcp_of(&quoted);
    assert_eq!((s, sp, d, dp_), (a(CLIENT6), 40000, a(VIP6), 8080));
    assert_eq!(dp.l3.stats.inet6.icmp_translated, 2);
    // An error about no connection: dropped.
    let stray = icmp6_error(
        (CLIENT_MAC, CLIENT_PORT_MAC),
        router,
        a(VIP6),
        etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 },
        tcp6_to(8080, 40999, false, b"").data(),
    );
    assert_eq!(drop_name(&dp.process(stray, &meta(0))), "Dp(NoConn)");
}

#[test]
fn a_datagram_too_big_for_the_tunnel_gets_a_packet_too_big() {
    let mut dp = dp();
    learn_rs1_and_client(&mut dp);
    let big = udp6(5353, &[7u8; 1440]);
    assert_eq!(big.len(), 14 + 40 + 8 + 1440);
    let v = dp.process(big.clone(), &meta(0));
    assert_eq!(drop_name(&v), "Dp(Ipv6TooBig)");
    let g = generated(&mut dp);
    assert_eq!(g.len(), 1);
    let (port, frame) = &g[0];
    assert_eq!(*port, 0);
    assert_eq!(EthernetFrame::new_unchecked(&frame[..]).dst(), CLIENT_MAC);
    let (src, dst, _, msg) = icmp_of(frame);
    assert_eq!((src, dst), (a(VIP6), a(CLIENT6)));
    assert_eq!(msg[0], Icmpv6Type::PACKET_TOO_BIG.0);
    assert_eq!(
        &msg[4..8],
        &1460u32.to_be_bytes(),
        "1500 less the outer header"
    );
    assert_eq!(
        &msg[8..],
        &big.data()[14..14 + msg.len() - 8],
        "the start of the datagram"
    );
    assert_eq!(dp.l3.stats.inet6.too_big_sent, 1);
}

/// The IPv6 packet of `frame` cut into fragments at the payload offsets `cuts` (multiples of 8),
/// identification `ident` (RFC 8200 4.5).
fn fragments6(frame: &[u8], ident: u32, cuts: &[usize]) -> Vec<Vec<u8>> {
    let next = frame[20];
    let payload = &frame[54..];
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(payload.len());
    bounds
        .windows(2)
        .map(|w| {
            let (from, to) = (w[0], w[1]);
            let mut f = frame[..54].to_vec();
            f[20] = 44;
            f[18..20].copy_from_slice(&((to - from + 8) as u16).to_be_bytes());
            let more = u16::from(to < payload.len());
            f.extend_from_slice(&[next, 0]);
            f.extend_from_slice(&((from as u16) | more).to_be_bytes());
            f.extend_from_slice(&ident.to_be_bytes());
            f.extend_from_slice(&payload[from..to]);
            f
        })
        .collect()
}

/// `config_fullnat` with a UDP FullNAT service on VIP6:5353 to RS6_1:53.
fn config_fullnat_udp() -> String {
    config_fullnat()
        + r#"
[[service]]
vip = "2001:db8:10::100"
port = 5353
protocol = "udp"
scheduler = "rr"
local_addresses = ["2001:db8:20::200"]
[[service.real]]
address = "2001:db8:20::11"
port = 53
"#
}

/// IPv6 fragments follow their first fragment in any order: FullNAT both ways, and TUN.
#[test]
fn ipv6_fragments_follow_their_first_fragment() {
    let mut dp: Datapath<VecBuf> = datapath_from(&config_fullnat_udp(), 0, 1, 1024);
    learn_rs1_and_client(&mut dp);
    let mut whole = Vec::new();
    let data: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .udp(6000, 5353)
        .write(&mut whole, &data)
        .unwrap();
    let frags = fragments6(&whole, 0x1234, &[256, 512]);
    // The last one first: held until the first decides.
    assert!(matches!(
        dp.process(VecBuf::from_frame(&frags[2]), &meta(0)),
        Verdict::Held
    ));
    let Verdict::Tx(1, first) = dp.process(VecBuf::from_frame(&frags[0]), &meta(0)) else {
        panic!("first fragment not sent")
    };
    let held = dp.take_deferred();
    assert_eq!(held.len(), 1);
    let Verdict::Tx(1, last) = &held[0].verdict else {
        panic!("{:?}", held[0].verdict)
    };
    let Verdict::Tx(1, middle) = dp.process(VecBuf::from_frame(&frags[1]), &meta(0)) else {
        panic!("middle fragment not sent")
    };
    // Every fragment from LIP to RS, to the server's MAC, the data and fragment headers as sent.
    let lip = a(LIP6).octets();
    let outs = [first.data(), middle.data(), last.data()];
    for (out, inp) in outs.iter().zip(&frags) {
        assert_eq!(EthernetFrame::new_unchecked(&out[..]).dst(), RS1_MAC);
        assert_eq!(out[22..38], lip);
        assert_eq!(out[38..54], a(RS6_1).octets());
        assert_eq!(out[54..62], inp[54..62], "the fragment header");
        if inp[56..58] != [0, 1] {
            assert_eq!(out[62..], inp[62..], "a later fragment's data is untouched");
        }
    }
    // Reassembled, it is the datagram the server must get: LIP:lport -> RS:53, checksum right.
    let lport = u16::from_be_bytes([first.data()[62], first.data()[63]]);
    let last = last.data().to_vec();
    let mut payload = first.data()[62..].to_vec();
    payload.extend_from_slice(&middle.data()[62..]);
    payload.extend_from_slice(&last[62..]);
    let mut whole_out = first.data()[..54].to_vec();
    whole_out[20] = 17;
    whole_out[18..20].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    whole_out.extend_from_slice(&payload);
    let p = SlicedPacket::from_ethernet(&whole_out).unwrap();
    let Some(etherparse::TransportSlice::Udp(u)) = p.transport else {
        panic!("not udp")
    };
    assert_eq!((u.source_port(), u.destination_port()), (lport, 53));
    let want = u
        .to_header()
        .calc_checksum_ipv6_raw(lip, a(RS6_1).octets(), u.payload())
        .unwrap();
    assert_eq!(u.checksum(), want);
    assert_eq!(u.payload(), &data[..]);
    assert_eq!(dp.frags.stats.followed, 0, "IPv4's table saw nothing");
    assert_eq!(dp.v6.frags.stats.followed, 2);

    // The server's fragmented answer goes back to the client from the VIP.
    let mut answer = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
        .ipv6(a(RS6_1).octets(), lip, 64)
        .udp(53, lport)
        .write(&mut answer, &data)
        .unwrap();
    for (i, f) in fragments6(&answer, 77, &[304]).iter().enumerate() {
        let Verdict::Tx(0, out) = dp.process(VecBuf::from_frame(f), &meta(1)) else {
            panic!("answer fragment {i} not sent")
        };
        assert_eq!(out.data()[22..38], a(VIP6).octets());
        assert_eq!(out.data()[38..54], a(CLIENT6).octets());
    }
    // A later fragment whose first one never comes: dropped at the timeout.
    let stray = fragments6(&whole, 0x999, &[256]);
    assert!(matches!(
        dp.process(VecBuf::from_frame(&stray[1]), &meta(0)),
        Verdict::Held
    ));
    dp.tick(2_000);
    assert_eq!(
        dp.l3.stats.drops[crate::stats::Drop::FragTimeout as usize],
        1
    );
}

#[test]
fn ipv6_fragments_through_the_tunnel_carry_the_first_ones_outer_header() {
    let mut dp = dp();
    dp.v6
        .neigh
        .learn(a(RS6_1), RS1_MAC, 1, 0, true, true, |_, _, _| {});
    let mut whole = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .udp(6000, 53)
        .write(&mut whole, &[9u8; 300])
        .unwrap();
    let frags = fragments6(&whole, 5, &[160]);
    let outs: Vec<Vec<u8>> = frags
        .iter()
        .map(|f| match dp.process(VecBuf::from_frame(f), &meta(0)) {
            Verdict::Tx(1, b) => b.data().to_vec(),
            other => panic!("{other:?}"),
        })
        .collect();
    for (out, inp) in outs.iter().zip(&frags) {
        assert_eq!(out[20], 41, "IPv6 in IPv6");
        assert_eq!(out[22..38], a(GW6_SERVER).octets());
        assert_eq!(out[38..54], a(RS6_1).octets());
        assert_eq!(
            usize::from(u16::from_be_bytes([out[18], out[19]])),
            inp.len() - 14
        );
        assert_eq!(out[54..], inp[14..], "the fragment inside, unchanged");
    }
}

/// `config6` with a NAT TCP service on VIP6:8081 over RS6_1:8080.
fn config_nat6() -> String {
    config6()
        + r#"
[[service]]
vip = "2001:db8:10::100"
port = 8081
protocol = "tcp"
scheduler = "rr"
[[service.real]]
address = "2001:db8:20::11"
port = 8080
mode = "nat"
"#
}

/// RS6_1:8080's answer to CIP:`cport`, through the gateway (its default route).
fn nat_answer(cport: u16) -> Vec<u8> {
    let mut r = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
        .ipv6(a(RS6_1).octets(), a(CLIENT6).octets(), 64)
        .tcp(8080, cport, 5000, 65000)
        .syn()
        .ack(1001)
        .write(&mut r, b"")
        .unwrap();
    r
}

#[test]
fn nat6_maps_the_destination_and_gives_replies_the_vip_back() {
    let mut dp: Datapath<VecBuf> = datapath_from(&config_nat6(), 0, 1, 1024);
    learn_rs1_and_client(&mut dp);
    let Verdict::Tx(1, out) = dp.process(tcp6_to(8081, 40000, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    let (src, sport, dst, dport, th) = tcp_of(out.data());
    assert_eq!(
        (src, sport, dst, dport),
        (a(CLIENT6), 40000, a(RS6_1), 8080)
    );
    assert!(
        th.options.as_slice().iter().all(|&b| b != 254),
        "no TOA: the client is seen"
    );
    let Verdict::Tx(0, back) = dp.process(VecBuf::from_frame(&nat_answer(40000)), &meta(1)) else {
        panic!("reply not sent")
    };
    let eth = EthernetFrame::new_unchecked(back.data());
    assert_eq!((eth.dst(), eth.src()), (CLIENT_MAC, CLIENT_PORT_MAC));
    let (src, sport, dst, dport, _) = tcp_of(back.data());
    assert_eq!((src, sport, dst, dport), (a(VIP6), 8081, a(CLIENT6), 40000));
    // A packet from the server to a client it has no connection with: dropped.
    let v = dp.process(VecBuf::from_frame(&nat_answer(40001)), &meta(1));
    assert_eq!(drop_name(&v), "Dp(NoConn)");
}

/// With two workers, NAT connections live with the owner of the client's address and port: the
/// client's first packet and the server's replies that reach another worker are handed to it.
#[test]
fn nat6_connections_live_with_their_clients_owner() {
    let mut w: Vec<Datapath<VecBuf>> = (0..2)
        .map(|i| datapath_from(&config_nat6(), i, 2, 1024))
        .collect();
    let cport = (40000u16..)
        .find(|&p| crate::forward::owner::owner_of_client6(a(CLIENT6), p, 2) == 1)
        .unwrap();
    let v = w[0].process(tcp6_to(8081, cport, true, b""), &meta(0));
    let Verdict::ToWorker(1, syn) = v else {
        panic!("{v:?}")
    };
    w[1].v6
        .neigh
        .learn(a(RS6_1), RS1_MAC, 1, 0, true, true, |_, _, _| {});
    let peer = RxMeta {
        from_peer: true,
        ..meta(0)
    };
    assert!(matches!(w[1].process(syn, &peer), Verdict::Tx(1, _)));
    let v = w[0].process(VecBuf::from_frame(&nat_answer(cport)), &meta(1));
    assert!(matches!(v, Verdict::ToWorker(1, _)), "{v:?}");
}

/// `config6` with a NAT64 TCP service on VIP6:8082 over the IPv4 RS1:80 from 10.20.0.210, and a
/// UDP one on VIP6:5300 over RS1:53.
fn config_nat64() -> String {
    let mut c = config6();
    for (port, proto, rport) in [(8082, "tcp", 80), (5300, "udp", 53)] {
        c += &format!(
            "\n[[service]]\nvip = \"2001:db8:10::100\"\nport = {port}\nprotocol = \"{proto}\"\n\
             scheduler = \"rr\"\nlocal_addresses = [\"10.20.0.210\"]\n\
             [[service.real]]\naddress = \"10.20.0.11\"\nport = {rport}\n"
        );
    }
    c
}

/// (src, sport, dst, dport, TCP header) of an IPv4/TCP frame, checksums verified by etherparse.
fn tcp4_of(
    frame: &[u8],
) -> (
    std::net::Ipv4Addr,
    u16,
    std::net::Ipv4Addr,
    u16,
    etherparse::TcpHeader,
) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "IPv4 header checksum"
    );
    let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else {
        panic!("not tcp")
    };
    let th = t.to_header();
    assert_eq!(
        th.checksum,
        th.calc_checksum_ipv4(&h, t.payload()).unwrap(),
        "TCP checksum"
    );
    assert!(h.dont_fragment && h.identification == 0 && h.time_to_live == 64);
    (
        h.source.into(),
        th.source_port,
        h.destination.into(),
        th.destination_port,
        th,
    )
}

#[test]
fn nat64_translates_both_ways_with_the_ipv6_toa_and_a_clamped_mss() {
    let mut dp: Datapath<VecBuf> = datapath_from(&config_nat64(), 0, 1, 1024);
    dp.v6
        .neigh
        .learn(a(CLIENT6), CLIENT_MAC, 0, 0, true, true, |_, _, _| {});
    let Verdict::Tx(1, out) = dp.process(tcp6_to(8082, 40000, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    assert_eq!(EthernetFrame::new_unchecked(out.data()).dst(), RS1_MAC);
    let (src, lport, dst, rport, th) = tcp4_of(out.data());
    let lip = std::net::Ipv4Addr::new(10, 20, 0, 210);
    assert_eq!((src, dst, rport), (lip, RS1, 80));
    let o = th.options.as_slice();
    let at = o.iter().position(|&b| b == 254).expect("TOA");
    assert_eq!(o[at + 1], 20, "the IPv6 TOA in the IPv4 SYN");
    assert_eq!(&o[at + 4..at + 20], &a(CLIENT6).octets());
    // The server's SYN-ACK, MSS 1460: back in IPv6, its MSS within the IPv6 MTU.
    let mut r = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
        .ipv4(RS1.octets(), lip.octets(), 64)
        .tcp(80, lport, 5000, 65000)
        .syn()
        .ack(1001)
        .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
        .unwrap()
        .write(&mut r, b"")
        .unwrap();
    let Verdict::Tx(0, back) = dp.process(VecBuf::from_frame(&r), &meta(1)) else {
        panic!("reply not sent")
    };
    let eth = EthernetFrame::new_unchecked(back.data());
    assert_eq!((eth.dst(), eth.src()), (CLIENT_MAC, CLIENT_PORT_MAC));
    let (src, sport, dst, dport, th) = tcp_of(back.data());
    assert_eq!((src, sport, dst, dport), (a(VIP6), 8082, a(CLIENT6), 40000));
    assert_eq!(th.options.as_slice()[..4], [2, 4, 0x05, 0xa0], "MSS 1440");
    // UDP: an IPv4 answer without a checksum gets one in IPv6.
    let mut q = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .udp(7000, 5300)
        .write(&mut q, b"query")
        .unwrap();
    let Verdict::Tx(1, out) = dp.process(VecBuf::from_frame(&q), &meta(0)) else {
        panic!("datagram not sent")
    };
    let o = out.data();
    let lport = u16::from_be_bytes([o[34], o[35]]);
    let mut ans = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
        .ipv4(RS1.octets(), lip.octets(), 64)
        .udp(53, lport)
        .write(&mut ans, b"answer")
        .unwrap();
    ans[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    let Verdict::Tx(0, back) = dp.process(VecBuf::from_frame(&ans), &meta(1)) else {
        panic!("answer not sent")
    };
    let p = SlicedPacket::from_ethernet(back.data()).unwrap();
    let Some(etherparse::TransportSlice::Udp(u)) = p.transport else {
        panic!("not udp")
    };
    let want = u
        .to_header()
        .calc_checksum_ipv6_raw(a(VIP6).octets(), a(CLIENT6).octets(), u.payload())
        .unwrap();
    assert_eq!(
        (u.source_port(), u.destination_port(), u.checksum()),
        (5300, 7000, want)
    );
    assert_eq!(u.payload(), b"answer");
    // `ipvsadm --stats`: the TCP service counts its connection, the client's SYN (its IPv6
    // length) and the server's SYN-ACK (its IPv4 length).
    let t = dp
        .fwd
        .traffic_entries()
        .find(|(k, _)| k.vip == std::net::IpAddr::V6(a(VIP6)) && k.vport == 8082 && k.proto == 6)
        .map(|(_, t)| t)
        .expect("the TCP service's counters");
    let syn = tcp6_to(8082, 40000, true, b"");
    assert_eq!((t.conns, t.inpkts, t.outpkts), (1, 1, 1));
    assert_eq!(t.inbytes, (syn.data().len() - 14) as u64);
    assert_eq!(t.outbytes, (r.len() - 14) as u64);
}

#[test]
fn a_nat64_local_address_is_its_own_and_replies_reach_the_owner() {
    let shared = config_nat64().replace("\"10.20.0.210\"", "\"10.20.0.200\"");
    let e = match crate::config::Config::parse(&shared) {
        Err(e) => e.to_string(),
        Ok(c) => c.validate().unwrap_err().to_string(),
    };
    assert!(e.contains("NAT64 local address"), "{e}");
    let mut w: Vec<Datapath<VecBuf>> = (0..2)
        .map(|i| datapath_from(&config_nat64(), i, 2, 1024))
        .collect();
    // The real servers find the NAT64 local address by ARP.
    let mut arp = vec![0u8; 60];
    let lip4 = std::net::Ipv4Addr::new(10, 20, 0, 210);
    crate::wire::arp::write_request(&mut arp, RS1_MAC, RS1, lip4).unwrap();
    let v = w[0].process(VecBuf::from_frame(&arp), &meta(1));
    assert!(
        matches!(v, Verdict::Tx(1, _)),
        "ARP for the NAT64 LIP: {v:?}"
    );
    let Verdict::Tx(1, out) = w[0].process(tcp6_to(8082, 40000, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    let (lip, lport, _, _, _) = tcp4_of(out.data());
    assert_eq!(lport % 2, 0, "worker 0's ports");
    let mut r = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
        .ipv4(RS1.octets(), lip.octets(), 64)
        .tcp(80, lport, 5000, 65000)
        .syn()
        .ack(1001)
        .write(&mut r, b"")
        .unwrap();
    let v = w[1].process(VecBuf::from_frame(&r), &meta(1));
    assert!(matches!(v, Verdict::ToWorker(0, _)), "{v:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    /// NAT64 round trip: an IPv6 client's UDP datagram leaves as IPv4 (checksums right), the
    /// server's answer with the same payload comes back as exactly the IPv6 datagram a server at
    /// the VIP would have sent.
    #[test]
    fn nat64_round_trips(
        cport in 1024u16..,
        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        tos in proptest::num::u8::ANY,
    ) {
        let mut dp: Datapath<VecBuf> = datapath_from(&config_nat64(), 0, 1, 1024);
        dp.v6.neigh.learn(a(CLIENT6), CLIENT_MAC, 0, 0, true, true, |_, _, _| {});
        let mut q = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
            .udp(cport, 5300)
            .write(&mut q, &payload)
            .unwrap();
        q[14] = 0x60 | (tos >> 4);
        q[15] = (tos << 4) | (q[15] & 0x0f);
        let Verdict::Tx(1, out) = dp.process(VecBuf::from_frame(&q), &meta(0)) else {
            panic!("not sent")
        };
        let o = out.data().to_vec();
        let p = SlicedPacket::from_ethernet(&o).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!("not ipv4") };
        let h = ip.header().to_header();
        proptest::prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
        proptest::prop_assert_eq!((h.dscp.value() << 2) | h.ecn.value(), tos);
        let Some(etherparse::TransportSlice::Udp(u)) = &p.transport else { panic!("not udp") };
        let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
        proptest::prop_assert_eq!(u.checksum(), want);
        proptest::prop_assert_eq!(u.payload(), &payload[..]);
        // The server answers from where it was asked, with the same bytes and TOS.
        let mut ans = Vec::new();
        PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
            .ipv4(h.destination, h.source, 64)
            .udp(u.destination_port(), u.source_port())
            .write(&mut ans, &payload)
            .unwrap();
        ans[15] = tos;
        let c = etherparse::Ipv4Header::from_slice(&ans[14..]).unwrap().0.calc_header_checksum();
        ans[24..26].copy_from_slice(&c.to_be_bytes());
        let Verdict::Tx(0, back) = dp.process(VecBuf::from_frame(&ans), &meta(1)) else {
            panic!("answer not sent")
        };
        let mut expect = Vec::new();
        PacketBuilder::ethernet2(CLIENT_PORT_MAC.0, CLIENT_MAC.0)
            .ipv6(a(VIP6).octets(), a(CLIENT6).octets(), 64)
            .udp(5300, cport)
            .write(&mut expect, &payload)
            .unwrap();
        expect[14] = 0x60 | (tos >> 4);
        expect[15] = (tos << 4) | (expect[15] & 0x0f);
        proptest::prop_assert_eq!(back.data(), &expect[..]);
    }
}

/// ICMP errors about a NAT64 connection cross the families (RFC 7915 4.2, 5.2), the path MTU
/// adjusted by the 20 bytes of header difference.
#[test]
fn nat64_icmp_errors_cross_the_families() {
    let mut dp: Datapath<VecBuf> = datapath_from(&config_nat64(), 0, 1, 1024);
    dp.v6
        .neigh
        .learn(a(CLIENT6), CLIENT_MAC, 0, 0, true, true, |_, _, _| {});
    let Verdict::Tx(1, out) = dp.process(tcp6_to(8082, 40000, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    let syn4 = out.data().to_vec();
    let (lip, lport, _, _, _) = tcp4_of(&syn4);
    // A router on the IPv4 side: fragmentation needed, MTU 1400 (and 1000), about the SYN.
    for (mtu, want) in [(1400u16, 1420u32), (1000, 1280)] {
        let mut e = Vec::new();
        PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
            .ipv4([10, 20, 0, 254], lip.octets(), 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: mtu,
                },
            ))
            .write(&mut e, &syn4[14..14 + 28])
            .unwrap();
        let Verdict::Tx(0, back) = dp.process(VecBuf::from_frame(&e), &meta(1)) else {
            panic!("not passed to the client")
        };
        let (src, dst, _, msg) = icmp_of(back.data());
        assert_eq!((src, dst), (a(VIP6), a(CLIENT6)));
        assert_eq!(msg[0], Icmpv6Type::PACKET_TOO_BIG.0);
        assert_eq!(&msg[4..8], &want.to_be_bytes(), "MTU + 20, at least 1280");
        // The quote: the client's own SYN, CIP:40000 -> VIP:8082.
        let q = ipv6::Ipv6Packet::new_unchecked(&msg[8..48]);
        assert_eq!((q.src(), q.dst()), (a(CLIENT6), a(VIP6)));
        assert_eq!(&msg[48..52], &[0x9c, 0x40, 0x1f, 0x92]);
    }
    // The client's side: a packet too big about a translated reply (VIP:8082 -> CIP:40000).
    let mut r = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
        .ipv4(RS1.octets(), lip.octets(), 64)
        .tcp(80, lport, 5000, 65000)
        .syn()
        .ack(1001)
        .write(&mut r, b"")
        .unwrap();
    let Verdict::Tx(0, reply6) = dp.process(VecBuf::from_frame(&r), &meta(1)) else {
        panic!("reply not sent")
    };
    let ptb = icmp6_error(
        (CLIENT_MAC, CLIENT_PORT_MAC),
        a("2001:db8:10::fe"),
        a(VIP6),
        etherparse::Icmpv6Type::PacketTooBig { mtu: 1300 },
        reply6.data(),
    );
    let Verdict::Tx(1, out) = dp.process(ptb, &meta(0)) else {
        panic!("not passed to the server")
    };
    let p = SlicedPacket::from_ethernet(out.data()).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!((h.source, h.destination), (lip.octets(), RS1.octets()));
    let Some(etherparse::TransportSlice::Icmpv4(i)) = &p.transport else {
        panic!("not icmp")
    };
    assert_eq!(
        i.checksum(),
        i.icmp_type().calc_checksum(i.payload()),
        "ICMPv4 checksum"
    );
    assert_eq!((i.type_u8(), i.code_u8()), (3, 4), "fragmentation needed");
    assert_eq!(&i.bytes5to8()[2..4], &1280u16.to_be_bytes(), "MTU - 20");
    // The quote: the server's own SYN-ACK, RS1:80 -> LIP:lport, its IPv4 header right.
    let q = i.payload();
    let qh = etherparse::Ipv4Header::from_slice(q).unwrap().0;
    assert_eq!((qh.source, qh.destination), (RS1.octets(), lip.octets()));
    assert_eq!(qh.header_checksum, qh.calc_header_checksum());
    assert_eq!(&q[20..24], &[0, 80, (lport >> 8) as u8, lport as u8]);
    assert_eq!(dp.l3.stats.inet6.icmp_translated, 3);
}

/// An error about a DR or TUN server's own answer (from the VIP, not through the gateway) goes to
/// that server: by MAC for DR, in the tunnel for TUN.
#[test]
fn icmpv6_errors_about_dr_and_tun_answers_reach_their_server() {
    let mut dp = dp();
    dp.v6
        .neigh
        .learn(a(RS6_1), RS1_MAC, 1, 0, true, true, |_, _, _| {});
    assert!(matches!(
        dp.process(tcp6(40000, true, b""), &meta(0)),
        Verdict::Tx(1, _)
    ));
    assert!(matches!(
        dp.process(udp6(5353, b"q"), &meta(0)),
        Verdict::Tx(1, _)
    ));
    let router = a("2001:db8:10::fe");
    let answer = |tcp: bool| {
        let b = PacketBuilder::ethernet2(RS1_MAC.0, CLIENT_MAC.0).ipv6(
            a(VIP6).octets(),
            a(CLIENT6).octets(),
            64,
        );
        let mut v = Vec::new();
        if tcp {
            b.tcp(80, 40000, 5000, 65000)
                .ack(1)
                .write(&mut v, &[0u8; 1300])
                .unwrap();
        } else {
            b.udp(53, 5353).write(&mut v, &[0u8; 1300]).unwrap();
        }
        v.truncate(14 + 40 + 64);
        v
    };
    let ptb = |tcp: bool| {
        icmp6_error(
            (CLIENT_MAC, CLIENT_PORT_MAC),
            router,
            a(VIP6),
            etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 },
            &answer(tcp),
        )
    };
    let sent = ptb(true).data().to_vec();
    let Verdict::Tx(1, out) = dp.process(ptb(true), &meta(0)) else {
        panic!("DR: not passed to the server")
    };
    assert_eq!(EthernetFrame::new_unchecked(out.data()).dst(), RS1_MAC);
    assert_eq!(
        out.data()[12..],
        sent[12..],
        "DR: unchanged but for the MACs"
    );
    let sent = ptb(false).data().to_vec();
    let Verdict::Tx(1, out) = dp.process(ptb(false), &meta(0)) else {
        panic!("TUN: not passed to the server")
    };
    let o = out.data();
    assert_eq!(
        (o[20], &o[38..54]),
        (41, &a(RS6_1).octets()[..]),
        "in the tunnel"
    );
    assert_eq!(o[54..], sent[14..], "TUN: the error inside, unchanged");
    assert_eq!(dp.l3.stats.inet6.icmp_translated, 2);
}

/// NAT: errors cross too, the server's side learning of its own packet with the client kept.
#[test]
fn icmpv6_errors_about_nat6_connections_are_translated() {
    let mut dp: Datapath<VecBuf> = datapath_from(&config_nat6(), 0, 1, 1024);
    learn_rs1_and_client(&mut dp);
    let Verdict::Tx(1, syn) = dp.process(tcp6_to(8081, 40000, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    let syn = syn.data().to_vec();
    let Verdict::Tx(0, back) = dp.process(VecBuf::from_frame(&nat_answer(40000)), &meta(1)) else {
        panic!("reply not sent")
    };
    let router = a("2001:db8:10::fe");
    let ptb = icmp6_error(
        (CLIENT_MAC, CLIENT_PORT_MAC),
        router,
        a(VIP6),
        etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 },
        back.data(),
    );
    let Verdict::Tx(1, out) = dp.process(ptb, &meta(0)) else {
        panic!("not passed to the server")
    };
    let (src, dst, _, msg) = icmp_of(out.data());
    assert_eq!((src, dst), (router, a(RS6_1)), "the outer source kept");
    let mut quoted = vec![0u8; 14];
    quoted.extend_from_slice(&msg[8..]);
    quoted[12..14].copy_from_slice(&[0x86, 0xdd]);
    let (s, sp, d, dp_, _) = tcp_of(&quoted);
    assert_eq!((s, sp, d, dp_), (a(RS6_1), 8080, a(CLIENT6), 40000));
    // The server's side: RS1 tells the client (through the gateway) its SYN was unwelcome.
    let unreach = icmp6_error(
        (RS1_MAC, SERVER_PORT_MAC),
        a(RS6_1),
        a(CLIENT6),
        etherparse::Icmpv6Type::DestinationUnreachable(
            etherparse::icmpv6::DestUnreachableCode::Port,
        ),
        &syn,
    );
    let Verdict::Tx(0, out) = dp.process(unreach, &meta(1)) else {
        panic!("not passed to the client")
    };
    let (src, dst, _, msg) = icmp_of(out.data());
    assert_eq!((src, dst), (a(VIP6), a(CLIENT6)));
    let mut quoted = vec![0u8; 14];
    quoted.extend_from_slice(&msg[8..]);
    quoted[12..14].copy_from_slice(&[0x86, 0xdd]);
    let (s, sp, d, dp_, _) = tcp_of(&quoted);
    assert_eq!((s, sp, d, dp_), (a(CLIENT6), 40000, a(VIP6), 8081));
}

/// An IPv6 service's access list decides on IPv6 prefixes, counted per rule.
#[test]
fn an_ipv6_access_list_refuses_before_any_state() {
    let cfg = config6().replacen(
        "vip = \"2001:db8:10::100\"\nport = 80\nprotocol = \"tcp\"\nscheduler = \"rr\"",
        "vip = \"2001:db8:10::100\"\nport = 80\nprotocol = \"tcp\"\nscheduler = \"rr\"\nacl = [\"deny 2001:db8:10::2\", \"allow 2001:db8::/32\"]",
        1,
    );
    assert_ne!(cfg, config6());
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 1024);
    let v = dp.process(tcp6(40000, true, b""), &meta(0));
    assert_eq!(drop_name(&v), "Dp(AclDenied)");
    assert!(dp.v6.conns.is_empty());
    let hits: Vec<_> = dp.fwd.acl_entries().map(|(_, h)| h.to_vec()).collect();
    assert_eq!(hits, [vec![1, 0, 0]]);
}

/// An IPv6 service's `client_limit` counts its clients' open connections as IPv4's does: a SYN
/// over `max_conns` is dropped before any state exists, a connection closed by the client's RST
/// stops counting, and one that expires too; a client in another /64 has its own count.
#[test]
fn an_ipv6_client_limit_counts_open_connections_per_prefix() {
    let cfg = config_fullnat().replacen(
        "port = 8080\nprotocol = \"tcp\"\nscheduler = \"rr\"",
        "port = 8080\nprotocol = \"tcp\"\nscheduler = \"rr\"\nclient_limit = { max_conns = 2, prefix = 64 }",
        1,
    );
    assert_ne!(cfg, config_fullnat());
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 1024);
    learn_rs1_and_client(&mut dp);
    let si = dp.fwd.services().find6(a(VIP6), 8080, 6).unwrap() as usize;
    let client = std::net::IpAddr::V6(a(CLIENT6));
    let syn = |dp: &mut Datapath<VecBuf>, sport: u16| {
        dp.process(tcp6_to(8080, sport, true, b""), &meta(0))
    };
    let Verdict::Tx(1, out) = syn(&mut dp, 40000) else {
        panic!("SYN not sent")
    };
    let lport = tcp_of(out.data()).1;
    let v = syn(&mut dp, 40001);
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    assert_eq!(drop_name(&syn(&mut dp, 40002)), "Dp(LimitConns)");
    assert_eq!(dp.v6.conns.len(), 2, "no state for the refused one");
    assert_eq!(dp.fwd.limits_mut().open_conns(si, client), 2);
    // The first connection established, then reset by its client: CLOSE no longer counts.
    let v = dp.process(VecBuf::from_frame(&syn_ack_to(lport)), &meta(1));
    assert!(matches!(v, Verdict::Tx(0, _)), "{}", drop_name(&v));
    let v = dp.process(tcp6_to(8080, 40000, false, b""), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    assert_eq!(fullnat6_state(&dp), crate::conn::State::Established);
    let mut rst = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .tcp(40000, 8080, 1001, 0)
        .rst()
        .write(&mut rst, b"")
        .unwrap();
    let v = dp.process(VecBuf::from_frame(&rst), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    assert_eq!(fullnat6_state(&dp), crate::conn::State::Close);
    assert_eq!(dp.fwd.limits_mut().open_conns(si, client), 1);
    let v = syn(&mut dp, 40003);
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    assert_eq!(drop_name(&syn(&mut dp, 40004)), "Dp(LimitConns)");
    // All expire (SYN_RECV's 60 s, CLOSE's 10): nothing counted, a SYN admitted again.
    dp.tick(61_000);
    assert!(dp.v6.conns.is_empty());
    assert_eq!(dp.fwd.limits_mut().open_conns(si, client), 0);
    let v = syn(&mut dp, 40005);
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    let refused: Vec<_> = dp.fwd.limit_entries().map(|(_, r)| r.to_vec()).collect();
    assert_eq!(refused, [vec![0, 2]], "[rate, max_conns] refusals");
}

/// `action = "rst"`: a SYN an IPv6 client's limit refuses is answered from VIP:vport with a
/// RST+ACK of it, as IPv4's, and nothing else changes.
#[test]
fn an_ipv6_client_over_its_limit_gets_a_rst_with_action_rst() {
    let cfg = config_fullnat().replacen(
        "port = 8080\nprotocol = \"tcp\"\nscheduler = \"rr\"",
        "port = 8080\nprotocol = \"tcp\"\nscheduler = \"rr\"\nclient_limit = { max_conns = 1, action = \"rst\" }",
        1,
    );
    assert_ne!(cfg, config_fullnat());
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 1024);
    // The real server resolved, not the client: this worker answers to the MAC the SYN came
    // from (the client's neighbour entry may be another worker's).
    dp.v6
        .neigh
        .learn(a(RS6_1), RS1_MAC, 1, 0, true, true, |_, _, _| {});
    let v = dp.process(tcp6_to(8080, 40000, true, b""), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    let _ = generated(&mut dp);
    let v = dp.process(tcp6_to(8080, 40001, true, b""), &meta(0));
    assert_eq!(drop_name(&v), "Dp(LimitConns)");
    let g = generated(&mut dp);
    assert_eq!(g.len(), 1, "one RST");
    let (src, sport, dst, dport, t) = tcp_of(&g[0].1);
    assert_eq!(g[0].0, 0, "out of the client's port");
    assert_eq!(EthernetFrame::new_unchecked(&g[0].1[..]).dst(), CLIENT_MAC);
    assert_eq!((src, sport, dst, dport), (a(VIP6), 8080, a(CLIENT6), 40001));
    // tcp6_to's SYN has sequence number 1000.
    assert!(t.rst && t.ack && !t.syn, "{t:?}");
    assert_eq!((t.sequence_number, t.acknowledgment_number), (0, 1001));
    assert_eq!(dp.fwd.stats.rst_sent, 1);
    assert_eq!(dp.v6.conns.len(), 1);
}

/// A limit set at run time counts the IPv6 connections already open (the snapshot's recount).
#[test]
fn an_ipv6_limit_set_at_run_time_counts_the_open_connections() {
    let mut dp: Datapath<VecBuf> = datapath_from(&config_fullnat(), 0, 1, 1024);
    learn_rs1_and_client(&mut dp);
    for sport in [40000, 40001] {
        let v = dp.process(tcp6_to(8080, sport, true, b""), &meta(0));
        assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    }
    let limit = crate::forward::limit::ClientLimit::parse(
        &crate::forward::limit::LimitEntry {
            max_conns: Some(2),
            ..Default::default()
        },
        true,
    )
    .unwrap();
    recommit(
        &mut dp,
        |_| true,
        |vs, o| o.limit = (vs.svc.config().vport == 8080).then_some(limit),
    );
    let v = dp.process(tcp6_to(8080, 40002, true, b""), &meta(0));
    assert_eq!(drop_name(&v), "Dp(LimitConns)");
}

proptest::proptest! {
    /// `parse_plain_tcp6`, the fast path's parse, takes only frames `parse` takes, and gives
    /// what `parse` gives: a TCP segment in an IPv6 packet with its bytes changed at random
    /// (next header, version, payload length, ...), cut short or padded.
    #[test]
    fn the_plain_tcp_parse_is_the_general_one(
        changes in proptest::collection::vec((0usize..80, proptest::num::u8::ANY), 0..4),
        keep in 0usize..100,
        pad in 0usize..8,
    ) {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
            .tcp(40000, 80, 1, 1000)
            .ack(1)
            .write(&mut f, &[7; 6])
            .unwrap();
        for (at, byte) in changes {
            if let Some(b) = f.get_mut(at) {
                *b = byte;
            }
        }
        f.truncate(keep);
        f.extend(std::iter::repeat_n(0, pad));
        if let Some(plain) = parse_plain_tcp6(&f) {
            let general = parse(&f);
            proptest::prop_assert!(general.is_ok(), "{:?}", general.err());
            proptest::prop_assert_eq!(format!("{:?}", Some(plain)), format!("{:?}", general.ok()));
        }
    }
}

/// A SYN flood on an IPv6 service, as `half_open_connections_make_room_and_established_ones_stay`
/// on IPv4: past `[conn] max_half_open` (half the IPv6 table by default) each new SYN takes the
/// place of an older half-open connection, so every SYN gets in; established connections are
/// never taken and keep forwarding, and every connection taken leaves its real server's count.
#[test]
fn ipv6_half_open_connections_make_room_and_established_ones_stay() {
    let mut dp = dp();
    for (rs, mac) in [(RS6_1, RS1_MAC), (RS6_2, RS2_MAC)] {
        dp.v6
            .neigh
            .learn(a(rs), mac, 1, 0, true, true, |_, _, _| {});
    }
    let cap = dp.v6.conns.capacity();
    // Fewer than `conn::table::EVICT_SCAN`: the established ones queued first do not exhaust one
    // eviction's scan of the half-open queue.
    let established = cap / 8;
    for i in 0..established as u16 {
        for syn in [true, false] {
            let v = dp.process(tcp6(20_000 + i, syn, b""), &meta(0));
            assert!(matches!(v, Verdict::Tx(1, _)), "{v:?}");
        }
    }
    for i in 0..(3 * cap) as u16 {
        let v = dp.process(tcp6(30_000 + i, true, b""), &meta(0));
        assert!(matches!(v, Verdict::Tx(1, _)), "SYN {i}: {}", drop_name(&v));
    }
    dp.tick(1);
    let s = dp.l3.stats.inet6;
    assert_eq!(dp.v6.conns.half_open(), cap / 2, "the default bound");
    assert_eq!(
        (s.half_open, s.conns),
        ((cap / 2) as u64, (established + cap / 2) as u64)
    );
    assert_eq!(s.evicted_embryonic, (3 * cap - cap / 2) as u64);
    for i in 0..established as u16 {
        let v = dp.process(tcp6(20_000 + i, false, b"GET /"), &meta(0));
        assert!(matches!(v, Verdict::Tx(1, _)), "established {i}: {v:?}");
    }
    assert_eq!(dp.v6.conns.len(), established + cap / 2);
    let svc = &dp.fwd.services().services[2].svc;
    let counted: u32 = (0..2)
        .map(|r| svc.stats(r).unwrap())
        .map(|s| s.active() + s.inactive())
        .sum();
    assert_eq!(counted as usize, dp.v6.conns.len(), "the servers' counts");
}

/// A NAT64 connection taken to make room gives its IPv4 local port back to the pool, as one
/// that expires does: what the local address holds is what the IPv6 table holds.
#[test]
fn an_evicted_nat64_connection_gives_its_local_port_back() {
    let mut dp: Datapath<VecBuf> = datapath_from(&config_nat64(), 0, 1, 1024);
    dp.v6
        .neigh
        .learn(a(CLIENT6), CLIENT_MAC, 0, 0, true, true, |_, _, _| {});
    let cap = dp.v6.conns.capacity();
    for i in 0..(2 * cap) as u16 {
        let v = dp.process(tcp6_to(8082, 30_000 + i, true, b""), &meta(0));
        assert!(matches!(v, Verdict::Tx(1, _)), "SYN {i}: {}", drop_name(&v));
    }
    assert_eq!(dp.v6.conns.len(), cap / 2);
    let in_use: u32 = dp.fwd.lip_usage().map(|(_, n)| n).sum();
    assert_eq!(in_use as usize, dp.v6.conns.len());
}

/// Both real servers and the client, resolved.
fn learn_neighbours(dp: &mut Datapath<VecBuf>) {
    for (ip, mac, port) in [
        (RS6_1, RS1_MAC, 1),
        (RS6_2, RS2_MAC, 1),
        (CLIENT6, CLIENT_MAC, 0),
    ] {
        dp.v6
            .neigh
            .learn(a(ip), mac, port, 0, true, true, |_, _, _| {});
    }
}

/// Establishes IPv6 DR connections from client ports `ports` (a SYN, then the client's ACK).
fn establish_dr6(dp: &mut Datapath<VecBuf>, ports: std::ops::Range<u16>) {
    for port in ports {
        for syn in [true, false] {
            let v = dp.process(tcp6(port, syn, b""), &meta(0));
            assert!(matches!(v, Verdict::Tx(1, _)), "{port}: {}", drop_name(&v));
        }
    }
}

/// Below the bound on half-open connections, a SYN that finds the IPv6 table full takes the
/// place of the oldest half-open connection (Linux conntrack's early drop); with none to take,
/// it is refused, and a NAT64 one gives back the IPv4 local port it was given.
#[test]
fn a_full_ipv6_table_makes_room_by_taking_a_half_open_connection() {
    let mut dp: Datapath<VecBuf> = datapath_from(&config_nat64(), 0, 1, 1024);
    learn_neighbours(&mut dp);
    let cap = dp.v6.conns.capacity() as u16;
    for port in 30_000..30_100 {
        let v = dp.process(tcp6(port, true, b""), &meta(0));
        assert!(matches!(v, Verdict::Tx(1, _)), "{port}: {}", drop_name(&v));
    }
    establish_dr6(&mut dp, 20_000..20_000 + cap - 100);
    assert_eq!(dp.v6.conns.len(), usize::from(cap), "full");
    let v = dp.process(tcp6(40_000, true, b""), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    assert_eq!(dp.l3.stats.inet6.evicted_embryonic, 1);
    let tuple = |port| crate::conn::Tuple6::new(a(CLIENT6), port, a(VIP6), 80, 6);
    assert!(
        dp.v6.conns.lookup(&tuple(30_000)).is_none(),
        "the oldest taken"
    );
    assert!(dp.v6.conns.lookup(&tuple(30_001)).is_some());

    // A table of established connections only: a NAT64 SYN is refused and its port comes back.
    let mut dp: Datapath<VecBuf> = datapath_from(&config_nat64(), 0, 1, 1024);
    learn_neighbours(&mut dp);
    establish_dr6(&mut dp, 20_000..20_000 + cap);
    let v = dp.process(tcp6_to(8082, 40_000, true, b""), &meta(0));
    assert_eq!(drop_name(&v), "Dp(ConnTableFull)");
    assert_eq!(dp.fwd.lip_usage().map(|(_, n)| n).sum::<u32>(), 0);
}

/// A full IPv6 table takes a new connection in place of the one that entered TIME_WAIT first,
/// as the IPv4 table does (Linux's `tcp_max_tw_buckets`), before any half-open one.
#[test]
fn a_full_ipv6_table_takes_the_oldest_time_wait_connection_first() {
    let mut dp = dp();
    learn_neighbours(&mut dp);
    let cap = dp.v6.conns.capacity() as u16;
    let tuple = |port| crate::conn::Tuple6::new(a(CLIENT6), port, a(VIP6), 80, 6);
    establish_dr6(&mut dp, 20_000..20_000 + cap - 1);
    for port in [20_005, 20_003] {
        let (id, _) = dp.v6.conns.lookup(&tuple(port)).unwrap();
        let s = crate::conn::State::TimeWait;
        dp.v6.conns.refresh(id, s, 60_000, crate::conn::Ticks(0));
    }
    let v = dp.process(tcp6(30_000, true, b""), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    assert_eq!(dp.v6.conns.len(), usize::from(cap), "full, one half-open");
    for (port, took) in [(40_000, 20_005), (40_001, 20_003)] {
        let v = dp.process(tcp6(port, true, b""), &meta(0));
        assert!(matches!(v, Verdict::Tx(1, _)), "{port}: {}", drop_name(&v));
        assert!(dp.v6.conns.lookup(&tuple(took)).is_none(), "{took} taken");
    }
    let s = dp.l3.stats.inet6;
    assert_eq!((s.evicted_time_wait, s.evicted_embryonic), (2, 0));
    assert!(
        dp.v6.conns.lookup(&tuple(30_000)).is_some(),
        "the half-open one stays"
    );
    // None left in TIME_WAIT: a half-open one gives way.
    let v = dp.process(tcp6(40_002, true, b""), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    assert_eq!(dp.l3.stats.inet6.evicted_embryonic, 1);
    assert_eq!(dp.v6.conns.len(), usize::from(cap));
}

/// Two workers of `cfg` with their neighbours resolved, a client port whose connection worker 1
/// owns (`forward::owner`), and the metadata of a frame one worker hands the other.
fn two_workers(cfg: &str) -> (Vec<Datapath<VecBuf>>, u16, RxMeta) {
    let mut w: Vec<Datapath<VecBuf>> = (0..2).map(|i| datapath_from(cfg, i, 2, 1024)).collect();
    for dp in &mut w {
        learn_neighbours(dp);
    }
    let cport = (40000u16..)
        .find(|&p| crate::forward::owner::owner_of_client6(a(CLIENT6), p, 2) == 1)
        .unwrap();
    let peer = RxMeta {
        from_peer: true,
        ..meta(0)
    };
    (w, cport, peer)
}

/// Every packet of an IPv6 client reaches its connection's owner, as IPv4's do
/// (`forward::owner`): a SYN that arrives elsewhere is scheduled on the owner, and a later
/// segment that arrives elsewhere (af_packet's fanout rolls a busy socket's packets over to
/// another) is handed to it, not dropped for want of a connection. FullNAT and DR.
#[test]
fn ipv6_client_packets_reach_their_connections_owner() {
    for (cfg, dport) in [(config_fullnat(), 8080), (config6(), 80)] {
        let (mut w, cport, peer) = two_workers(&cfg);
        let v = w[0].process(tcp6_to(dport, cport, true, b""), &meta(0));
        let Verdict::ToWorker(1, syn) = v else {
            panic!("{dport}: SYN {v:?}")
        };
        let v = w[1].process(syn, &peer);
        assert!(matches!(v, Verdict::Tx(1, _)), "{dport}: {v:?}");
        let v = w[0].process(tcp6_to(dport, cport, false, b"data"), &meta(0));
        let Verdict::ToWorker(1, seg) = v else {
            panic!("{dport}: segment {v:?}")
        };
        let v = w[1].process(seg, &peer);
        assert!(matches!(v, Verdict::Tx(1, _)), "{dport}: {v:?}");
        assert_eq!(w[0].fwd.stats.handoff_client, 2, "{dport}");
        assert_eq!(
            (w[0].v6.conns.len(), w[1].v6.conns.len()),
            (0, 1),
            "{dport}"
        );
    }
}

/// An ICMPv6 error from the client's path about a connection another worker owns (the router's
/// error hashes by its own address, not the client's tuple) is handed to the owner of the
/// client tuple it quotes, as IPv4's are, and reaches the real server from there.
#[test]
fn a_client_side_icmpv6_error_reaches_the_owner_of_its_connection() {
    let (mut w, cport, peer) = two_workers(&config_fullnat());
    let Verdict::ToWorker(1, syn) = w[0].process(tcp6_to(8080, cport, true, b""), &meta(0)) else {
        panic!("SYN not handed over")
    };
    let Verdict::Tx(1, syn) = w[1].process(syn, &peer) else {
        panic!("SYN not sent")
    };
    let (_, lport, _, _, _) = tcp_of(syn.data());
    let v = w[1].process(VecBuf::from_frame(&syn_ack_to(lport)), &meta(1));
    let Verdict::Tx(0, synack) = v else {
        panic!("SYN-ACK not sent: {v:?}")
    };
    let ptb = icmp6_error(
        (CLIENT_MAC, CLIENT_PORT_MAC),
        a("2001:db8:10::fe"),
        a(VIP6),
        etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 },
        synack.data(),
    );
    let v = w[0].process(ptb, &meta(0));
    let Verdict::ToWorker(1, ptb) = v else {
        panic!("not handed over: {}", drop_name(&v))
    };
    let v = w[1].process(ptb, &peer);
    let Verdict::Tx(1, out) = v else {
        panic!("not passed to the server: {v:?}")
    };
    let (src, dst, _, msg) = icmp_of(out.data());
    assert_eq!(
        (src, dst, msg[0]),
        (a(LIP6), a(RS6_1), Icmpv6Type::PACKET_TOO_BIG.0)
    );
    assert_eq!(w[0].fwd.stats.handoff_client, 2);
}

/// A full IPv6 table takes a new connection in place of the oldest UDP flow no server answered,
/// as the IPv4 one does (`ipv6_evicted_udp`): here NAT64 flows, whose IPv4 local ports go back
/// to their pool with them.
#[test]
fn a_full_ipv6_table_takes_the_place_of_an_unanswered_udp_flow() {
    let mut dp: Datapath<VecBuf> = datapath_from(&config_nat64(), 0, 1, 1024);
    learn_neighbours(&mut dp);
    let cap = dp.v6.conns.capacity() as u16;
    for sport in 20_000..20_000 + cap {
        let v = dp.process(udp6_to(5300, sport, b"q"), &meta(0));
        assert!(matches!(v, Verdict::Tx(1, _)), "{sport}: {}", drop_name(&v));
    }
    assert_eq!(dp.v6.conns.len(), usize::from(cap), "full");
    let v = dp.process(tcp6(30_000, true, b""), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    let s = dp.l3.stats.inet6;
    assert_eq!(
        (s.evicted_udp, s.evicted_time_wait, s.evicted_embryonic),
        (1, 0, 0)
    );
    let tuple = |sport| crate::conn::Tuple6::new(a(CLIENT6), sport, a(VIP6), 5300, 17);
    assert!(
        dp.v6.conns.lookup(&tuple(20_000)).is_none(),
        "the oldest went"
    );
    assert!(dp.v6.conns.lookup(&tuple(20_001)).is_some());
    let in_use: u32 = dp.fwd.lip_usage().map(|(_, n)| n).sum();
    assert_eq!(
        in_use as usize,
        dp.v6.conns.len() - 1,
        "all but the DR one hold a local port"
    );
}

/// IPv6 TUN (and DR) UDP flows never show their answers: a flow is in use from its client's
/// second datagram. A full table takes a new connection in place of the oldest one-datagram
/// flow (a spoofed flood's), and the flow in use stays.
#[test]
fn a_full_ipv6_table_takes_the_place_of_a_one_datagram_tun_flow() {
    let mut dp = dp();
    learn_neighbours(&mut dp);
    let cap = dp.v6.conns.capacity() as u16;
    let send = |dp: &mut Datapath<VecBuf>, sport: u16| {
        let v = dp.process(udp6(sport, b"q"), &meta(0));
        assert!(matches!(v, Verdict::Tx(1, _)), "{sport}: {}", drop_name(&v));
    };
    send(&mut dp, 20_000);
    send(&mut dp, 20_000);
    for sport in 20_001..20_000 + cap {
        send(&mut dp, sport);
    }
    assert_eq!(dp.v6.conns.len(), usize::from(cap), "full");
    let v = dp.process(tcp6(30_000, true, b""), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    assert_eq!(dp.l3.stats.inet6.evicted_udp, 1);
    let tuple = |sport| crate::conn::Tuple6::new(a(CLIENT6), sport, a(VIP6), 53, 17);
    assert!(dp.v6.conns.lookup(&tuple(20_000)).is_some(), "in use");
    assert!(dp.v6.conns.lookup(&tuple(20_001)).is_none(), "the oldest");
    assert!(dp.v6.conns.lookup(&tuple(20_002)).is_some());
}

/// `ipvsadm -Q` of an IPv6 local address under a connection, as the control plane applies it
/// (`control::retire`): the next snapshot lists it as retiring, not in the pool. New connections
/// leave from the other address; the old one's replies still come back through it; the worker
/// counts the connections on each address (what the control plane waits on), and the retiring
/// one's count ends with its last connection.
#[test]
fn a_retiring_ipv6_local_address_serves_its_connections_and_takes_no_new_one() {
    let lip2 = "2001:db8:20::201";
    let text = config_fullnat().replacen(
        "local_addresses = [\"2001:db8:20::200\"]",
        "local_addresses = [\"2001:db8:20::200\", \"2001:db8:20::201\"]",
        1,
    );
    let mut dp: Datapath<VecBuf> = datapath_from(&text, 0, 1, 1024);
    learn_rs1_and_client(&mut dp);
    let Verdict::Tx(1, out) = dp.process(tcp6_to(8080, 40000, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    let (lip, lport, ..) = tcp_of(out.data());
    assert_eq!(lip, a(LIP6), "the first address first");
    let usage = |dp: &Datapath<VecBuf>| {
        let mut u: Vec<_> = dp
            .v6
            .lip_conns
            .usage(dp.fwd.services())
            .into_iter()
            .filter(|(k, _)| k.vport == 8080)
            .map(|(k, n)| (k.lip, n))
            .collect();
        u.sort();
        u
    };
    // Each of the service's addresses, 0 for one without connections (as IPv4's pools).
    assert_eq!(usage(&dp), vec![(a(LIP6).into(), 1), (a(lip2).into(), 0)]);
    let key = dp
        .v6
        .lip_conns
        .usage(dp.fwd.services())
        .into_iter()
        .find(|(_, n)| *n == 1)
        .unwrap()
        .0;
    assert_eq!(
        (key.proto, key.vip, key.vport),
        (6, a(VIP6).into(), 8080),
        "keyed by its service"
    );

    // The snapshot after `ipvsadm -Q -t [VIP6]:8080 -z LIP6`.
    let old = Arc::clone(dp.fwd.services());
    let specs: Vec<_> = old
        .services
        .iter()
        .map(|vs| {
            let mut opts = crate::forward::SvcOptions {
                toa: vs.toa,
                lips6: vs.lips6.clone(),
                ..Default::default()
            };
            if vs.svc.config().vport == 8080 {
                opts.lips6 = vec![a(lip2)];
                opts.retiring_lips6 = vec![a(LIP6)];
            }
            (vs.svc.config().clone(), vs.lips.clone(), opts)
        })
        .collect();
    let new = crate::forward::ServiceTable::new(old.generation + 1, specs, Some(&old)).unwrap();
    assert!(
        new.kind6(a(LIP6)).lip,
        "neighbour solicitations still answered"
    );
    let prepared = dp.fwd.prepare_services(Arc::new(new)).unwrap();
    dp.commit_services(prepared);

    let Verdict::Tx(0, back) = dp.process(VecBuf::from_frame(&syn_ack_to(lport)), &meta(1)) else {
        panic!("the retiring address's reply was not forwarded")
    };
    assert_eq!(tcp_of(back.data()).2, a(CLIENT6));
    for cport in 40001..40009 {
        let Verdict::Tx(1, out) = dp.process(tcp6_to(8080, cport, true, b""), &meta(0)) else {
            panic!("SYN {cport} not sent")
        };
        assert_eq!(
            tcp_of(out.data()).0,
            a(lip2),
            "a new connection on the retiring address"
        );
    }
    assert_eq!(usage(&dp), vec![(a(LIP6).into(), 1), (a(lip2).into(), 8)]);
    // SYN_RECV's 60 s pass for the first (the others too): nothing is counted any more.
    dp.tick(61_000);
    assert!(dp.v6.conns.is_empty());
    assert_eq!(usage(&dp), vec![(a(LIP6).into(), 0), (a(lip2).into(), 0)]);
    // A service deleted under its connections: their counts still published, under its key.
    let Verdict::Tx(1, _) = dp.process(tcp6_to(8080, 40100, true, b""), &meta(0)) else {
        panic!("SYN not sent")
    };
    recommit(&mut dp, |vs| vs.svc.config().vport != 8080, |_, _| {});
    assert_eq!(usage(&dp), vec![(a(lip2).into(), 1)]);
}

/// `config6` with a FullNAT TCP service on VIP6:8080 over RS6_1:80 and RS6_2:80 (rr) from
/// `LIP6`, `syn_retry` as given; the datapath with its neighbours learned.
fn retry6_datapath(retry: bool) -> Datapath<VecBuf> {
    retry6_datapath_with(retry, "")
}

/// [`retry6_datapath`] with `extra` keys in the service.
fn retry6_datapath_with(retry: bool, extra: &str) -> Datapath<VecBuf> {
    let cfg = config6()
        + &format!(
            r#"
[[service]]
vip = "2001:db8:10::100"
port = 8080
protocol = "tcp"
scheduler = "rr"
syn_retry = {retry}
{extra}
local_addresses = ["2001:db8:20::200"]
[[service.real]]
address = "2001:db8:20::11"
port = 80
[[service.real]]
address = "2001:db8:20::12"
port = 80
"#
        );
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 1024);
    learn_rs1_and_client(&mut dp);
    dp.v6
        .neigh
        .learn(a(RS6_2), RS2_MAC, 1, 0, true, true, |_, _, _| {});
    dp
}

/// Client 40000's SYN (ISN 1000) to VIP6:8080 through `dp`: the real server and the local port
/// it went to.
fn syn6_out(dp: &mut Datapath<VecBuf>) -> (Ipv6Addr, u16) {
    syn6_from(dp, 40000)
}

/// [`syn6_out`] from client port `sport`.
fn syn6_from(dp: &mut Datapath<VecBuf>, sport: u16) -> (Ipv6Addr, u16) {
    match dp.process(tcp6_to(8080, sport, true, b""), &meta(0)) {
        Verdict::Tx(1, out) => {
            let (lip, lport, rs, _, _) = tcp_of(out.data());
            assert_eq!(lip, a(LIP6));
            (rs, lport)
        }
        v => panic!("SYN not forwarded: {}", drop_name(&v)),
    }
}

/// Real server `rs`'s answer to the SYN it got from LIP6:`lport`: a SYN-ACK, or a RST.
fn answer6(rs: Ipv6Addr, lport: u16, refuse: bool) -> VecBuf {
    let mac = if rs == a(RS6_1) { RS1_MAC } else { RS2_MAC };
    let b = PacketBuilder::ethernet2(mac.0, SERVER_PORT_MAC.0)
        .ipv6(rs.octets(), a(LIP6).octets(), 64)
        .tcp(80, lport, 5000, 65000);
    let mut v = Vec::new();
    match refuse {
        true => b.rst().ack(1001).write(&mut v, b"").unwrap(),
        false => b.syn().ack(1001).write(&mut v, b"").unwrap(),
    }
    VecBuf::from_frame(&v)
}

/// Real server `rs`'s bare ACK to a SYN from LIP6:`lport` (its answer from TIME_WAIT).
fn bare_ack6(rs: Ipv6Addr, lport: u16) -> VecBuf {
    let mac = if rs == a(RS6_1) { RS1_MAC } else { RS2_MAC };
    let mut ack = Vec::new();
    PacketBuilder::ethernet2(mac.0, SERVER_PORT_MAC.0)
        .ipv6(rs.octets(), a(LIP6).octets(), 64)
        .tcp(80, lport, 7000, 65000)
        .ack(55)
        .write(&mut ack, b"")
        .unwrap();
    VecBuf::from_frame(&ack)
}

/// Real server `rs`'s passive counters in the service on port 8080, on this worker.
fn traffic6_of(dp: &Datapath<VecBuf>, rs: Ipv6Addr) -> crate::forward::Traffic {
    dp.fwd
        .traffic_entries()
        .find(|(k, _)| k.vport == 8080 && k.rip == std::net::IpAddr::V6(rs))
        .unwrap()
        .1
}

/// IPv6 passive detection and `syn_retry`, as IPv4's: a server's RST to the client's SYN is a
/// refusal, held back from the client when the connection is retried; the client's
/// retransmission goes to the other server, once; the second refusal reaches the client.
#[test]
fn an_ipv6_syn_refused_by_its_server_is_retried_once_on_another() {
    let mut dp = retry6_datapath(true);
    let (first, lport) = syn6_out(&mut dp);
    let v = dp.process(answer6(first, lport, true), &meta(1));
    assert_eq!(drop_name(&v), "Dp(RstHeldForRetry)");
    assert_eq!(traffic6_of(&dp, first).syn_refused, 1);
    let (second, lport2) = syn6_out(&mut dp);
    assert_ne!(second, first, "never the server that refused");
    assert_eq!(dp.fwd.stats.syn_retried, 1);
    // The failed connection is parked on its LIP:lport (`service::retire`), as IPv4's: its
    // server's late answer finds no connection.
    assert_eq!(dp.v6.conns.len(), 2, "the failed connection replaced");
    assert_eq!(
        dp.v6
            .conns
            .iter()
            .filter(|(_, c)| service::parked(c))
            .count(),
        1
    );
    let late = dp.process(answer6(first, lport, false), &meta(1));
    assert_eq!(drop_name(&late), "Dp(NoConn)");
    // Parked, the failed handshake no longer counts as half-open: only the retried one does.
    assert_eq!(dp.v6.conns.half_open(), 1);
    // What the failed connection held is given back: its server's count, its local address's.
    assert_eq!(rs_totals(&dp), [0, 1]);
    let in_use: u32 = dp
        .v6
        .lip_conns
        .usage(dp.fwd.services())
        .iter()
        .map(|u| u.1)
        .sum();
    assert_eq!(in_use, 1);
    // Once only: the second server leaves the retried SYN unanswered, and the client's
    // retransmission stays with it; its refusal then reaches the client.
    dp.l3.now_ms += 1_000;
    assert_eq!(syn6_out(&mut dp).0, second, "not retried a second time");
    assert_eq!(traffic6_of(&dp, second).syn_unanswered, 1);
    assert_eq!(dp.fwd.stats.syn_retried, 1);
    let v = dp.process(answer6(second, lport2, true), &meta(1));
    assert!(matches!(v, Verdict::Tx(0, _)), "{}", drop_name(&v));
    assert_eq!(
        traffic6_of(&dp, second).syn_refused,
        0,
        "counted once, as unanswered"
    );
    // A refusal held whose client never comes back: counted once, not again as it expires.
    let mut dp = retry6_datapath(true);
    let (first, lport) = syn6_out(&mut dp);
    dp.process(answer6(first, lport, true), &meta(1));
    dp.tick(120_000);
    assert_eq!(dp.v6.conns.len(), 0);
    let t = traffic6_of(&dp, first);
    assert_eq!((t.syn_refused, t.syn_unanswered), (1, 0));
    assert_eq!(rs_totals(&dp), [0, 0]);
}

/// The connections of the service on port 8080 on each of its two real servers.
fn rs_totals(dp: &Datapath<VecBuf>) -> [u32; 2] {
    let vs = dp
        .fwd
        .services()
        .services
        .iter()
        .find(|vs| vs.svc.config().vport == 8080)
        .unwrap();
    [0, 1].map(|i| vs.svc.stats(i).unwrap().total())
}

/// Without `syn_retry` a refusal reaches the client and is counted; an answer ends the
/// server's streak of failures.
#[test]
fn without_retry_an_ipv6_refusal_reaches_the_client_and_an_answer_ends_the_streak() {
    let mut dp = retry6_datapath(false);
    let (first, lport) = syn6_out(&mut dp);
    let v = dp.process(answer6(first, lport, true), &meta(1));
    assert!(matches!(v, Verdict::Tx(0, _)), "{}", drop_name(&v));
    let t = traffic6_of(&dp, first);
    assert_eq!((t.syn_refused, t.fail_streak, t.syn_answered), (1, 1, 0));
    // The client's next connections: round robin's turn of the other server, then the first
    // again, which answers.
    let (second, lport) = syn6_from(&mut dp, 40001);
    assert_ne!(second, first);
    // Its SYN-ACK sent twice (the first lost on the way to the client): one answer.
    dp.process(answer6(second, lport, false), &meta(1));
    dp.process(answer6(second, lport, false), &meta(1));
    let (third, lport) = syn6_from(&mut dp, 40002);
    assert_eq!(third, first);
    let v = dp.process(answer6(third, lport, false), &meta(1));
    assert!(matches!(v, Verdict::Tx(0, _)), "{}", drop_name(&v));
    let t = traffic6_of(&dp, first);
    assert_eq!((t.syn_refused, t.fail_streak, t.syn_answered), (1, 0, 1));
    assert_eq!(traffic6_of(&dp, second).syn_answered, 1);
    assert_eq!(dp.fwd.stats.syn_retried, 0);
}

/// A SYN its server leaves unanswered fails once the client retransmits it `syn_unanswered_ms`
/// (900) or more after the first, counted once; with `syn_retry` that retransmission goes to
/// the other server. A server answering from its TIME_WAIT (a bare ACK) is alive: the wait
/// starts again.
#[test]
fn an_unanswered_ipv6_syn_fails_once_the_client_retransmits_it_late_enough() {
    for retry in [false, true] {
        let mut dp = retry6_datapath(retry);
        dp.l3.now_ms = 10_000;
        let (first, lport) = syn6_out(&mut dp);
        dp.l3.now_ms = 10_500;
        assert_eq!(syn6_out(&mut dp), (first, lport), "an early retransmission");
        assert_eq!(traffic6_of(&dp, first).syn_unanswered, 0);
        dp.l3.now_ms = 11_000;
        let (rs, _) = syn6_out(&mut dp);
        let t = traffic6_of(&dp, first);
        assert_eq!((t.syn_unanswered, t.fail_streak), (1, 1), "retry {retry}");
        match retry {
            true => {
                assert_ne!(rs, first);
                assert_eq!(dp.fwd.stats.syn_retried, 1);
            }
            false => {
                assert_eq!(rs, first);
                dp.l3.now_ms = 13_000;
                syn6_out(&mut dp);
                assert_eq!(traffic6_of(&dp, first).syn_unanswered, 1, "counted once");
            }
        }
    }
    // The client gives up: the entry expires unanswered, a failure.
    let mut dp = retry6_datapath(false);
    let (first, _) = syn6_out(&mut dp);
    dp.tick(120_000);
    assert_eq!(dp.v6.conns.len(), 0);
    assert_eq!(traffic6_of(&dp, first).syn_unanswered, 1);
    let mut dp = retry6_datapath(true);
    dp.l3.now_ms = 10_000;
    let (first, lport) = syn6_out(&mut dp);
    dp.l3.now_ms = 10_800;
    dp.process(bare_ack6(first, lport), &meta(1));
    dp.l3.now_ms = 11_000;
    assert_eq!(
        syn6_out(&mut dp),
        (first, lport),
        "the server answered 200 ms ago"
    );
    assert_eq!(traffic6_of(&dp, first).syn_unanswered, 0);
}

/// `config_nat64` with `syn_retry` on the TCP service (port 8082) and a second IPv4 server.
fn nat64_retry_config() -> String {
    let cfg = config_nat64().replacen(
        "port = 8082\nprotocol = \"tcp\"\n",
        "port = 8082\nprotocol = \"tcp\"\nsyn_retry = true\n",
        1,
    );
    assert!(cfg.contains("syn_retry"));
    cfg.replacen(
        "address = \"10.20.0.11\"\nport = 80\n",
        "address = \"10.20.0.11\"\nport = 80\n[[service.real]]\naddress = \"10.20.0.12\"\nport = 80\n",
        1,
    )
}

/// NAT64's IPv4 servers as IPv6's: the first's RST to a client's SYN is a refusal, held back;
/// the client's retransmission goes to the other server, in IPv4.
#[test]
fn a_nat64_syn_refused_by_its_ipv4_server_is_retried_on_another() {
    let mut dp = nat64_datapath_with(&nat64_retry_config());
    let (lip, lport, first) = nat64_syn(&mut dp);
    let v = dp.process(nat64_answer(first, lip, lport, "R"), &meta(1));
    assert_eq!(drop_name(&v), "Dp(RstHeldForRetry)");
    let refused = |dp: &Datapath<VecBuf>, rs: std::net::Ipv4Addr| {
        dp.fwd
            .traffic_entries()
            .find(|(k, _)| k.vport == 8082 && k.rip == std::net::IpAddr::V4(rs))
            .unwrap()
            .1
            .syn_refused
    };
    assert_eq!(refused(&dp, first), 1);
    let Verdict::Tx(1, out) = dp.process(tcp6_to(8082, 40000, true, b""), &meta(0)) else {
        panic!("retransmission not sent")
    };
    let (_, _, second, _, _) = tcp4_of(out.data());
    assert_ne!(second, first);
    assert_eq!(dp.fwd.stats.syn_retried, 1);
    assert_eq!(refused(&dp, second), 0);
}

/// A retry is the client's first attempt, not a new connection: the client limit that admitted
/// it does not refuse it, as on IPv4.
#[test]
fn an_ipv6_retry_is_not_refused_by_the_limit_that_admitted_its_first_attempt() {
    let limit = "client_limit = { rate = 1, max_conns = 1, action = \"rst\" }";
    let mut dp = retry6_datapath_with(true, limit);
    dp.l3.now_ms = 10_000;
    let (first, lport) = syn6_out(&mut dp);
    let v = dp.process(answer6(first, lport, true), &meta(1));
    assert_eq!(drop_name(&v), "Dp(RstHeldForRetry)");
    let (second, _) = syn6_out(&mut dp);
    assert_ne!(second, first);
    assert_eq!((dp.fwd.stats.syn_retried, dp.fwd.stats.rst_sent), (1, 0));
    // The limit still holds for a new connection.
    let v = dp.process(tcp6_to(8080, 40001, true, b""), &meta(0));
    assert!(drop_name(&v).starts_with("Dp(Limit"), "{}", drop_name(&v));
}

/// The neighbour solicitations among `frames`: (port, Ethernet destination, target).
fn solicitations(frames: &[(u16, Vec<u8>)]) -> Vec<(u16, MacAddr, Ipv6Addr)> {
    frames
        .iter()
        .filter_map(|(port, f)| {
            let eth = EthernetFrame::new_checked(&f[..]).ok()?;
            let icmp = Icmpv6Packet::new_checked(f.get(14 + 40..)?).ok()?;
            if icmp.msg_type() != Icmpv6Type::NEIGHBOR_SOLICIT {
                return None;
            }
            let target: [u8; 16] = f.get(14 + 40 + 8..14 + 40 + 24)?.try_into().ok()?;
            Some((*port, eth.dst(), Ipv6Addr::from(target)))
        })
        .collect()
}

/// A client retransmitting a SYN its IPv6 server never answered makes the server's neighbour
/// suspect, as IPv4's (`nd::suspect`): one solicitation, to the MAC the entry has, and no other
/// while the entry is probed. None when the server was heard since the SYN went out (its bare
/// ACK from TIME_WAIT), nor once it answered.
#[test]
fn an_unanswered_ipv6_syn_sent_again_has_its_servers_neighbour_probed() {
    let mut dp = retry6_datapath(false);
    dp.l3.now_ms = 10_000;
    let (rs, lport) = syn6_out(&mut dp);
    assert_eq!(rs, a(RS6_1));
    generated(&mut dp);
    dp.l3.now_ms = 11_000;
    assert_eq!(syn6_out(&mut dp), (rs, lport));
    let probes = solicitations(&generated(&mut dp));
    assert_eq!(probes, vec![(1, RS1_MAC, rs)], "one unicast probe");
    assert_eq!(dp.l3.stats.inet6.neigh_suspected, 1);
    assert_eq!(dp.v6.neigh.state(rs), Some(crate::net::neigh::Nud::Probe));
    dp.l3.now_ms = 11_500;
    syn6_out(&mut dp);
    assert_eq!(solicitations(&generated(&mut dp)), vec![], "probed already");

    // The server heard from 100 ms after the SYN: the client's SYN sent again a second after
    // the first doubts nothing, whether the server answered (the SYN-ACK lost on its way),
    // refused with a RST held back for a retry, or sent a bare ACK from its TIME_WAIT.
    for (retry, heard) in [(false, "SA"), (true, "R"), (false, "A")] {
        let mut dp = retry6_datapath(retry);
        dp.l3.now_ms = 10_000;
        let (rs, lport) = syn6_out(&mut dp);
        dp.l3.now_ms = 10_100;
        let answer = match heard {
            "A" => bare_ack6(rs, lport),
            refusal => answer6(rs, lport, refusal == "R"),
        };
        dp.process(answer, &meta(1));
        generated(&mut dp);
        dp.l3.now_ms = 11_000;
        assert_eq!(syn6_out(&mut dp).0 != rs, retry, "{heard}: retried");
        assert_eq!(solicitations(&generated(&mut dp)), vec![], "{heard}");
        assert_eq!(dp.l3.stats.inet6.neigh_suspected, 0, "{heard}");
    }
}

/// DR's answers bypass the gateway: a client's SYN sent again while its connection is in
/// SYN_RECV doubts the server's neighbour, once while it is probed, and not once the probe's
/// answer confirmed it after the SYN went out; the client's ACK doubts nothing.
#[test]
fn a_dr6_syn_sent_again_has_its_servers_neighbour_probed() {
    let mut dp = dp();
    learn_rs1_and_client(&mut dp);
    dp.v6
        .neigh
        .learn(a(RS6_2), RS2_MAC, 1, 0, true, true, |_, _, _| {});
    dp.l3.now_ms = 10_000;
    let out = |v: Verdict<VecBuf>| match v {
        Verdict::Tx(1, b) => EthernetFrame::new_checked(b.data().to_vec()).unwrap().dst(),
        v => panic!("not sent: {}", drop_name(&v)),
    };
    let mac = out(dp.process(tcp6(80, true, b""), &meta(0)));
    let rs = if mac == RS1_MAC { a(RS6_1) } else { a(RS6_2) };
    generated(&mut dp);
    dp.l3.now_ms = 11_000;
    out(dp.process(tcp6(80, true, b""), &meta(0)));
    assert_eq!(solicitations(&generated(&mut dp)), vec![(1, mac, rs)]);
    // The server answers the probe: confirmed after the SYN went out.
    dp.l3.now_ms = 11_010;
    dp.process(na(rs, mac), &meta(1));
    dp.l3.now_ms = 12_000;
    out(dp.process(tcp6(80, true, b""), &meta(0)));
    assert_eq!(solicitations(&generated(&mut dp)), vec![]);
    out(dp.process(tcp6(80, false, b""), &meta(0)));
    dp.l3.now_ms = 13_000;
    out(dp.process(tcp6(80, false, b""), &meta(0)));
    assert_eq!(dp.l3.stats.inet6.neigh_suspected, 1);
}

/// `config_nat64`'s datapath with the client's neighbour learned.
fn nat64_datapath() -> Datapath<VecBuf> {
    nat64_datapath_with(&config_nat64())
}

/// [`nat64_datapath`] of configuration `cfg`.
fn nat64_datapath_with(cfg: &str) -> Datapath<VecBuf> {
    let mut dp: Datapath<VecBuf> = datapath_from(cfg, 0, 1, 1024);
    dp.v6
        .neigh
        .learn(a(CLIENT6), CLIENT_MAC, 0, 0, true, true, |_, _, _| {});
    dp
}

/// Client 40000's SYN (ISN 1000) to VIP6:8082 through `dp`: the local address and port it went
/// from, and its IPv4 real server.
fn nat64_syn(dp: &mut Datapath<VecBuf>) -> (std::net::Ipv4Addr, u16, std::net::Ipv4Addr) {
    nat64_syn_from(dp, 40000)
}

/// [`nat64_syn`] from client port `sport`.
fn nat64_syn_from(
    dp: &mut Datapath<VecBuf>,
    sport: u16,
) -> (std::net::Ipv4Addr, u16, std::net::Ipv4Addr) {
    let v = dp.process(tcp6_to(8082, sport, true, b""), &meta(0));
    let Verdict::Tx(1, out) = v else {
        panic!("SYN not sent: {}", drop_name(&v))
    };
    let (lip, lport, rs, _, _) = tcp4_of(out.data());
    (lip, lport, rs)
}

/// IPv4 real server `rs`'s answer to the SYN from `lip`:`lport` (`flags`): a SYN-ACK ("SA"), a
/// bare ACK ("A"), or a RST ("R").
fn nat64_answer(
    rs: std::net::Ipv4Addr,
    lip: std::net::Ipv4Addr,
    lport: u16,
    flags: &str,
) -> VecBuf {
    let b = PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
        .ipv4(rs.octets(), lip.octets(), 64)
        .tcp(80, lport, 5000, 65000);
    let b = match flags {
        "SA" => b.syn().ack(1001),
        "A" => b.ack(777),
        "R" => b.rst().ack(1001),
        f => panic!("flags {f}"),
    };
    let mut v = Vec::new();
    b.write(&mut v, b"").unwrap();
    VecBuf::from_frame(&v)
}

/// NAT64's real servers are IPv4: a client's SYN sent again unanswered doubts the IPv4
/// neighbour (an ARP probe to the MAC it has).
#[test]
fn an_unanswered_nat64_syn_sent_again_has_its_ipv4_servers_neighbour_probed() {
    let mut dp = nat64_datapath();
    dp.l3.now_ms = 10_000;
    nat64_syn(&mut dp);
    generated(&mut dp);
    dp.l3.now_ms = 11_000;
    nat64_syn(&mut dp);
    let probes: Vec<_> = generated(&mut dp)
        .into_iter()
        .map(|(port, f)| (port, f[..6].to_vec(), f[12..14].to_vec()))
        .collect();
    assert_eq!(probes, vec![(1, RS1_MAC.0.to_vec(), vec![0x08, 0x06])]);
    assert_eq!(dp.l3.neigh().counters.suspected, 1);

    // Heard from since the SYN (its bare ACK from TIME_WAIT): neither doubted nor failed.
    let mut dp = nat64_datapath();
    dp.l3.now_ms = 10_000;
    let (lip, lport, rs) = nat64_syn(&mut dp);
    dp.l3.now_ms = 10_200;
    dp.process(nat64_answer(rs, lip, lport, "A"), &meta(1));
    generated(&mut dp);
    dp.l3.now_ms = 11_000;
    nat64_syn(&mut dp);
    assert_eq!(generated(&mut dp), vec![]);
    assert_eq!(dp.l3.neigh().counters.suspected, 0);
    let unanswered = dp
        .fwd
        .traffic_entries()
        .find(|(k, _)| k.vport == 8082)
        .map(|(_, t)| t.syn_unanswered);
    assert_eq!(unanswered, Some(0));

    // Heard from since: the server's answer to another client's SYN confirms its neighbour, as
    // IPv4 FullNAT's traffic does.
    let mut dp = nat64_datapath();
    dp.l3.now_ms = 10_000;
    nat64_syn_from(&mut dp, 40001);
    dp.l3.now_ms = 10_100;
    let (lip, lport, rs) = nat64_syn(&mut dp);
    dp.l3.now_ms = 10_500;
    dp.process(nat64_answer(rs, lip, lport, "SA"), &meta(1));
    generated(&mut dp);
    dp.l3.now_ms = 11_000;
    nat64_syn_from(&mut dp, 40001);
    assert_eq!(generated(&mut dp), vec![]);
    assert_eq!(dp.l3.neigh().counters.suspected, 0);

    // Refused, the refusal held back for a retry: the server is there.
    let mut dp = nat64_datapath_with(&nat64_retry_config());
    dp.l3.now_ms = 10_000;
    let (lip, lport, first) = nat64_syn(&mut dp);
    dp.l3.now_ms = 10_100;
    let v = dp.process(nat64_answer(first, lip, lport, "R"), &meta(1));
    assert_eq!(drop_name(&v), "Dp(RstHeldForRetry)");
    generated(&mut dp);
    dp.l3.now_ms = 11_000;
    assert_ne!(nat64_syn(&mut dp).2, first, "retried");
    assert_eq!(generated(&mut dp), vec![]);
    assert_eq!(dp.l3.neigh().counters.suspected, 0);
}

/// NAT64 as FullNAT (`fullnat6_keeps_a_handshake_in_syn_recv_on_a_servers_stale_answer`): an
/// IPv4 server's bare ACK to the client's SYN leaves the connection in SYN_RECV (IPVS's table:
/// ESTABLISHED, for 15 minutes), counted `server_time_wait` before the server answered and
/// `server_stale_answer` after; the client's ACK establishes it.
#[test]
fn nat64_keeps_a_handshake_in_syn_recv_on_a_servers_bare_ack() {
    let mut dp = nat64_datapath();
    let (lip, lport, rs) = nat64_syn(&mut dp);
    let state = |dp: &Datapath<VecBuf>| {
        let t = crate::conn::Tuple6::new(a(CLIENT6), 40000, a(VIP6), 8082, 6);
        let id = dp.v6.conns.lookup(&t).unwrap().0;
        dp.v6.conns.get(id).unwrap().state()
    };
    let stats = |dp: &Datapath<VecBuf>| {
        let s = &dp.fwd.stats;
        (s.server_time_wait, s.server_stale_answer)
    };
    for (flags, counted) in [("A", (1, 0)), ("SA", (1, 0)), ("A", (1, 1))] {
        let v = dp.process(nat64_answer(rs, lip, lport, flags), &meta(1));
        assert!(matches!(v, Verdict::Tx(0, _)), "{}", drop_name(&v));
        assert_eq!(state(&dp), crate::conn::State::SynRecv);
        assert_eq!(stats(&dp), counted);
    }
    assert!(matches!(
        dp.process(tcp6_to(8082, 40000, false, b""), &meta(0)),
        Verdict::Tx(1, _)
    ));
    assert_eq!(state(&dp), crate::conn::State::Established);
}

// HA sync of IPv6 connections (`sync6`).

/// RS6_1's segment (an ACK, `payload`) to LIP6:lport.
fn rs6_segment(lport: u16, payload: &[u8]) -> VecBuf {
    let mut r = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
        .ipv6(a(RS6_1).octets(), a(LIP6).octets(), 64)
        .tcp(80, lport, 5001, 65000)
        .ack(1001)
        .write(&mut r, payload)
        .unwrap();
    VecBuf::from_frame(&r)
}

/// [`fullnat6_syn_sent`]'s connection through its handshake: the datapath, its local port and
/// the connection.
fn fullnat6_established() -> (Datapath<VecBuf>, u16, crate::conn::ConnId) {
    let (dp, _, lport, id) = fullnat6_established_after();
    (dp, lport, id)
}

/// [`fullnat6_established`] with the SYN that left toward the real server.
fn fullnat6_established_after() -> (Datapath<VecBuf>, Vec<u8>, u16, crate::conn::ConnId) {
    let (mut dp, syn, lport) = fullnat6_syn_out();
    let v = dp.process(VecBuf::from_frame(&syn_ack_to(lport)), &meta(1));
    assert!(matches!(v, Verdict::Tx(0, _)), "{v:?}");
    let v = dp.process(tcp6_to(8080, 40000, false, b""), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{v:?}");
    assert_eq!(fullnat6_state(&dp), crate::conn::State::Established);
    let t = crate::conn::Tuple6::new(a(CLIENT6), 40000, a(VIP6), 8080, 6);
    let id = dp.v6.conns.lookup(&t).unwrap().0;
    (dp, syn, lport, id)
}

/// A record for a client tuple the backup holds with another local port (the primary scheduled
/// the client's new connection afresh and parked the old one, `service::retire`) parks the
/// backup's old entry too: after a takeover its LIP:lport is not handed out while the old server
/// may hold it in TIME_WAIT. The parked entry is not listed and counts for neither its server nor
/// its local address, then or when it expires.
#[test]
fn a_backup_parks_the_ipv6_connection_a_record_replaces() {
    let (a_dp, _, lport, id) = fullnat6_established_after();
    let now = crate::conn::Ticks(a_dp.l3.now_ms);
    let old = sync6::export(&a_dp.fwd, &a_dp.v6.conns, id, now).unwrap();
    let mut b: Datapath<VecBuf> = datapath_from(&config_fullnat(), 0, 1, 1024);
    let now = crate::conn::Ticks(b.l3.now_ms);
    let first = b.v6.apply_record(&mut b.l3, &mut b.fwd, &old, now);
    assert_eq!(first, Ok(crate::forward::Applied::Installed));
    let lport2 = lport + 1;
    let new = crate::conn::record::ConnRecord {
        local: (old.local.0, lport2),
        state: crate::conn::State::SynRecv as u8,
        remaining_ms: 30_000,
        ..old
    };
    let second = b.v6.apply_record(&mut b.l3, &mut b.fwd, &new, now);
    assert_eq!(second, Ok(crate::forward::Applied::Replaced));
    assert_eq!(b.v6.conns.len(), 2, "the old entry holds its LIP:lport");
    let held = crate::conn::Tuple6::new(a(RS6_1), 80, a(LIP6), lport, 6);
    let (parked, dir) = b.v6.conns.lookup(&held).unwrap();
    assert_eq!(dir, crate::conn::Dir::Reply);
    assert!(service::parked(&b.v6.conns.get(parked).unwrap()));
    let filter = crate::control::proto::ConnFilter::default();
    let listed = crate::control::dump::worker_dump(0, &b, &filter, 100, 0).conns;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].local.map(|l| l.1), Some(lport2));
    assert_eq!((in_use(&b), rs_total(&b)), (1, 1));
    b.tick(b.l3.now_ms + 200_000);
    b.tick(b.l3.now_ms + 1_000);
    assert!(b.v6.conns.is_empty());
    assert_eq!((in_use(&b), rs_total(&b)), (0, 0));
    // Each ended once: the parked one when its timer ended it, not when it was parked.
    assert_eq!(b.l3.stats.inet6.conns_expired, 2);
    assert_eq!(b.fwd.sync_counters().refused(), 0);
}

#[test]
fn an_ipv6_fullnat_connection_installed_on_a_backup_is_forwarded_both_ways() {
    let (a_dp, lport, id) = fullnat6_established();
    let now = crate::conn::Ticks(a_dp.l3.now_ms);
    let rec = sync6::export(&a_dp.fwd, &a_dp.v6.conns, id, now).unwrap();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(
        (rec.client, rec.vip, rec.real, rec.local, rec.mode),
        (
            (ip(CLIENT6), 40000),
            (ip(VIP6), 8080),
            (ip(RS6_1), 80),
            (ip(LIP6), lport),
            crate::forward::mode::FULLNAT
        )
    );
    assert_eq!(rec.state, crate::conn::State::Established as u8);
    // Through the wire, as the backup receives it.
    let msg = crate::sync::wire::Sealer::new(b"0123456789abcdef", 1, 1).records(&[rec]);
    let Ok(crate::sync::wire::Message::Records { records, .. }) =
        crate::sync::wire::Opener::new(b"0123456789abcdef").open(&msg[0])
    else {
        panic!("not opened")
    };
    assert_eq!(records, [rec]);
    let mut b: Datapath<VecBuf> = datapath_from(&config_fullnat(), 0, 1, 1024);
    learn_rs1_and_client(&mut b);
    let now = crate::conn::Ticks(b.l3.now_ms);
    let applied = b.v6.apply_record(&mut b.l3, &mut b.fwd, &rec, now);
    assert_eq!(applied, Ok(crate::forward::Applied::Installed));
    let again = b.v6.apply_record(&mut b.l3, &mut b.fwd, &rec, now);
    assert_eq!(again, Ok(crate::forward::Applied::Refreshed));
    assert_eq!(b.v6.conns.len(), 1);
    assert_eq!(b.v6.conns.half_open(), 0, "past the handshake");
    // The server's data reaches the client from the VIP; the client's reaches the server from
    // the same local address and port.
    let Verdict::Tx(0, out) = b.process(rs6_segment(lport, b"hello"), &meta(1)) else {
        panic!("the server's segment not forwarded")
    };
    let (s, sp, d, dp_, _) = tcp_of(out.data());
    assert_eq!((s, sp, d, dp_), (a(VIP6), 8080, a(CLIENT6), 40000));
    let Verdict::Tx(1, out) = b.process(tcp6_to(8080, 40000, false, b"more"), &meta(0)) else {
        panic!("the client's segment not forwarded")
    };
    let (s, sp, d, dp_, _) = tcp_of(out.data());
    assert_eq!((s, sp, d, dp_), (a(LIP6), lport, a(RS6_1), 80));
    let c = b.fwd.sync_counters();
    assert_eq!((c.installed, c.refreshed, c.refused()), (1, 1, 0));
    // A record naming a real server the backup does not have is refused, counted.
    let stranger = crate::conn::record::ConnRecord {
        real: (ip("2001:db8:20::99"), 80),
        client: (ip(CLIENT6), 40001),
        ..rec
    };
    let refused = b.v6.apply_record(&mut b.l3, &mut b.fwd, &stranger, now);
    assert_eq!(refused, Err(crate::forward::InstallError::NoRealServer));
    assert_eq!(b.fwd.sync_counters().refused_no_real, 1);
}

#[test]
fn a_primary_logs_its_ipv6_connections_once_established_and_resyncs_them() {
    let (mut dp, lport) = fullnat6_syn_sent();
    let fwd = &mut dp.fwd;
    dp.v6
        .set_sync(fwd, Some(crate::forward::SyncLog::new(16, 1_000)));
    let now = |dp: &Datapath<VecBuf>| crate::conn::Ticks(dp.l3.now_ms);
    let drain = |dp: &mut Datapath<VecBuf>| {
        let mut out = Vec::new();
        let t = now(dp);
        dp.v6.drain_sync(&mut dp.fwd, t, &mut out);
        out
    };
    // The handshake is not sent: a flood's would fill the backup.
    dp.process(VecBuf::from_frame(&syn_ack_to(lport)), &meta(1));
    assert!(drain(&mut dp).is_empty());
    dp.process(tcp6_to(8080, 40000, false, b""), &meta(0));
    let logged = drain(&mut dp);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].local.1, lport);
    // Within the refresh period, another segment logs nothing; a period later it does.
    dp.process(tcp6_to(8080, 40000, false, b"x"), &meta(0));
    assert!(drain(&mut dp).is_empty());
    dp.tick(2_000);
    dp.process(tcp6_to(8080, 40000, false, b"y"), &meta(0));
    assert_eq!(drain(&mut dp).len(), 1);
    assert_eq!(dp.fwd.sync_counters().logged, 2);
    // A full resync's IPv6 share: the connection, whatever the log holds.
    let mut all = Vec::new();
    let mut from = Some(0);
    while let Some(f) = from {
        from = dp.v6.export_range(&dp.fwd, f, 256, now(&dp), &mut all);
    }
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].client, logged[0].client);
}

#[test]
fn a_nat64_connection_installed_on_a_backup_takes_its_ipv4_local_port() {
    let mut a_dp = nat64_datapath();
    let (lip, lport, rs) = nat64_syn(&mut a_dp);
    let v = a_dp.process(nat64_answer(rs, lip, lport, "SA"), &meta(1));
    assert!(matches!(v, Verdict::Tx(0, _)), "{v:?}");
    a_dp.process(tcp6_to(8082, 40000, false, b""), &meta(0));
    let t = crate::conn::Tuple6::new(a(CLIENT6), 40000, a(VIP6), 8082, 6);
    let id = a_dp.v6.conns.lookup(&t).unwrap().0;
    let now = crate::conn::Ticks(a_dp.l3.now_ms);
    let rec = sync6::export(&a_dp.fwd, &a_dp.v6.conns, id, now).unwrap();
    assert_eq!(rec.mode, crate::forward::mode::NAT64);
    assert_eq!((rec.real.0, rec.local), (rs.into(), (lip.into(), lport)));
    let mut b = nat64_datapath();
    let now = crate::conn::Ticks(b.l3.now_ms);
    let applied = b.v6.apply_record(&mut b.l3, &mut b.fwd, &rec, now);
    assert_eq!(applied, Ok(crate::forward::Applied::Installed));
    // The IPv4 server's segment reaches the IPv6 client from the VIP.
    b.l3.learn_from_peer(rs, RS1_MAC, 1);
    let v = b.process(nat64_answer(rs, lip, lport, "A"), &meta(1));
    let Verdict::Tx(0, out) = v else {
        panic!("not forwarded: {}", drop_name(&v))
    };
    let (s, sp, d, dp_, _) = tcp_of(out.data());
    assert_eq!((s, sp, d, dp_), (a(VIP6), 8082, a(CLIENT6), 40000));
    let si = b.fwd.services().find6(a(VIP6), 8082, 6).unwrap();
    assert_eq!(
        b.fwd.pool_mut(si).unwrap().stats().allocated,
        1,
        "its port taken"
    );
}

/// A full resync carries a primary's IPv6 connections (the IPv6 table's turn after the IPv4
/// one's), and the backup's workers pass each record to the worker that owns it there: a
/// FullNAT one to the owner of its local port, a DR one to the owner of its client tuple.
#[test]
fn a_full_resync_brings_ipv6_connections_to_their_owner_on_the_backup() {
    use crate::sync::worker_side::WorkerSync;
    use crate::sync::{Export, Primary};
    for (cfg, dport) in [(config_fullnat(), 8080), (config6(), 80)] {
        let (mut w, cport, _) = two_workers(&cfg);
        let v = w[1].process(tcp6_to(dport, cport, true, b""), &meta(0));
        let Verdict::Tx(1, out) = v else {
            panic!("{dport}: SYN {v:?}")
        };
        if dport == 8080 {
            let lport = tcp_of(out.data()).1;
            let v = w[1].process(VecBuf::from_frame(&syn_ack_to(lport)), &meta(1));
            assert!(matches!(v, Verdict::Tx(0, _)), "{v:?}");
        }
        let v = w[1].process(tcp6_to(dport, cport, false, b""), &meta(0));
        assert!(matches!(v, Verdict::Tx(1, _)), "{dport}: {v:?}");
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut ws = WorkerSync::default();
        let p = Primary {
            out: tx,
            refresh_ms: 1_000,
            log_capacity: 64,
        };
        ws.set_primary(&mut w[1], Some(p));
        ws.export_all(3);
        let now = crate::conn::Ticks(w[1].l3.now_ms);
        for _ in 0..200 {
            if !ws.resyncing() {
                break;
            }
            ws.housekeeping(&mut w[1], now);
        }
        assert!(!ws.resyncing(), "{dport}: the resync ends");
        let recs: Vec<_> = rx
            .try_iter()
            .flat_map(|e| match e {
                Export::Records(r) => r,
                Export::ResyncDone(_) => Vec::new(),
            })
            .collect();
        assert_eq!(recs.len(), 1, "{dport}: {recs:?}");
        assert!(recs[0].is_ipv6());
        let mut b: Vec<Datapath<VecBuf>> =
            (0..2).map(|i| datapath_from(&cfg, i, 2, 1024)).collect();
        let others = WorkerSync::install(&mut b[0], 0, recs, false, now, |_| 0);
        assert_eq!(others.len(), 1, "{dport}: worker 1's");
        let (owner, theirs) = others.into_iter().next().unwrap();
        assert_eq!(owner, 1);
        assert!(WorkerSync::install(&mut b[1], 1, theirs, true, now, |_| 0).is_empty());
        assert_eq!(
            (b[0].v6.conns.len(), b[1].v6.conns.len()),
            (0, 1),
            "{dport}"
        );
        assert_eq!(b[1].fwd.sync_counters().installed, 1);
    }
}

/// A NAT64 record whose IPv4 local port an entry of the backup still holds (a connection the
/// primary has let go of and given the port to another): that entry goes and the record is
/// installed, as IPv4 FullNAT's (`install_over_stale`).
#[test]
fn a_nat64_record_takes_its_local_port_from_a_stale_entry() {
    let mut a_dp = nat64_datapath();
    let (lip, lport, rs) = nat64_syn(&mut a_dp);
    a_dp.process(nat64_answer(rs, lip, lport, "SA"), &meta(1));
    a_dp.process(tcp6_to(8082, 40000, false, b""), &meta(0));
    let t = crate::conn::Tuple6::new(a(CLIENT6), 40000, a(VIP6), 8082, 6);
    let id = a_dp.v6.conns.lookup(&t).unwrap().0;
    let now = crate::conn::Ticks(a_dp.l3.now_ms);
    let rec = sync6::export(&a_dp.fwd, &a_dp.v6.conns, id, now).unwrap();
    let mut b = nat64_datapath();
    let now = crate::conn::Ticks(b.l3.now_ms);
    let first = b.v6.apply_record(&mut b.l3, &mut b.fwd, &rec, now);
    assert_eq!(first, Ok(crate::forward::Applied::Installed));
    // Another client's connection on the same local address and port.
    let other = crate::conn::record::ConnRecord {
        client: (a(CLIENT6).into(), 40001),
        ..rec
    };
    let second = b.v6.apply_record(&mut b.l3, &mut b.fwd, &other, now);
    assert_eq!(second, Ok(crate::forward::Applied::Replaced));
    assert_eq!(b.v6.conns.len(), 1);
    // The stale entry ended here: counted as IPv4's removals are.
    b.tick(b.l3.now_ms + 1);
    assert_eq!(b.l3.stats.inet6.conns_expired, 1);
    let t2 = crate::conn::Tuple6::new(a(CLIENT6), 40001, a(VIP6), 8082, 6);
    assert!(b.v6.conns.lookup(&t2).is_some() && b.v6.conns.lookup(&t).is_none());
    assert_eq!(b.fwd.sync_counters().refused(), 0);
}

/// `frame` through the burst loop alone (`Datapath::process_burst`, where the established hot
/// paths run), its verdict.
fn through_burst(dp: &mut Datapath<VecBuf>, frame: VecBuf, meta: RxMeta) -> Verdict<VecBuf> {
    let mut out = [None];
    dp.process_burst(&mut [Some(frame)], &[meta], &mut out);
    out[0].take().expect("no verdict")
}

/// A busy real server's neighbour, and the client's, are confirmed by their connection's
/// packets (RFC 4861 7.3.1: a sign of forward progress), as IPv4's are (`L3::confirm_neighbour`),
/// on the hot path (one by one or in a burst) and on the general path (a primary's, which logs
/// every packet for its backup) alike: two minutes of a segment each way a second, four
/// reachable times, solicit neither. A neighbour whose connection falls silent for longer than
/// its reachable time is probed when it is next used, as before.
#[test]
fn busy_ipv6_neighbours_are_confirmed_by_their_traffic_not_probed() {
    for way in ["one by one", "burst", "logged"] {
        let (mut dp, lport) = fullnat6_answered();
        if way == "logged" {
            let fwd = &mut dp.fwd;
            dp.v6
                .set_sync(fwd, Some(crate::forward::SyncLog::new(16, 1_000)));
        }
        let send = |dp: &mut Datapath<VecBuf>, frame: VecBuf, port: u16| match way {
            "burst" => through_burst(dp, frame, meta(port)),
            _ => dp.process(frame, &meta(port)),
        };
        // The handshake's end: the client's ACK makes the connection ESTABLISHED.
        let v = send(&mut dp, tcp6_to(8080, 40000, false, b""), 0);
        assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
        generated(&mut dp);
        let confirmed = dp.v6.neigh.counters.confirmed;
        for s in 1..=120u64 {
            dp.tick(s * 1000);
            let v = send(&mut dp, tcp6_to(8080, 40000, false, b"x"), 0);
            assert!(
                matches!(v, Verdict::Tx(1, _)),
                "{way}, {s} s: {}",
                drop_name(&v)
            );
            let v = send(&mut dp, from_rs(lport, "A"), 1);
            assert!(
                matches!(v, Verdict::Tx(0, _)),
                "{way}, {s} s: {}",
                drop_name(&v)
            );
            assert_eq!(
                solicitations(&generated(&mut dp)),
                vec![],
                "{way}, {s} s: a busy neighbour probed"
            );
        }
        assert!(
            dp.v6.neigh.counters.confirmed > confirmed,
            "{way}: nothing confirmed"
        );
        // Silent for two minutes: the server's entry went STALE; its next use probes it.
        dp.tick(240_000);
        send(&mut dp, tcp6_to(8080, 40000, false, b"x"), 0);
        dp.tick(250_000);
        assert!(
            solicitations(&generated(&mut dp)).contains(&(1, RS1_MAC, a(RS6_1))),
            "{way}: a silent neighbour not probed"
        );
    }
}

/// A TCP segment other than a SYN that starts an IPv6 DR connection (`sloppy_tcp`, on by default
/// for `mh`: a flow another gateway started, after an ECMP change) is counted in
/// `sloppy_created`, as IPv4's; a SYN's connection is not, and without the option the segment
/// starts nothing.
#[test]
fn an_ipv6_connection_a_mid_flow_segment_starts_is_counted_as_sloppy() {
    let mh = config6().replacen(
        "port = 80\nprotocol = \"tcp\"\nscheduler = \"rr\"",
        "port = 80\nprotocol = \"tcp\"\nscheduler = \"mh\"",
        1,
    );
    assert_ne!(mh, config6(), "the IPv6 TCP service's scheduler");
    let mut b = with_neighbours(datapath_from(&mh, 0, 1, 1024));
    let v = b.process(tcp6(40000, true, b""), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    assert_eq!(b.fwd.stats.sloppy_created, 0, "a SYN's connection");
    let v = b.process(tcp6(40001, false, b"GET /"), &meta(0));
    assert!(matches!(v, Verdict::Tx(1, _)), "{}", drop_name(&v));
    assert_eq!(b.fwd.stats.sloppy_created, 1, "a mid-flow segment's");
    assert_eq!(b.l3.stats.inet6.conns_created, 2);
    // Its next segment follows the connection: nothing new.
    b.process(tcp6(40001, false, b"x"), &meta(0));
    assert_eq!(b.fwd.stats.sloppy_created, 1);
    // A RST, or a SYN-ACK (which only a server sends), starts nothing, as on IPv4.
    for (sport, flags) in [(40002, "R"), (40003, "SA")] {
        let v = b.process(tcp6_flags(sport, flags), &meta(0));
        assert_eq!(drop_name(&v), "Dp(NoConn)", "{flags}");
    }
    assert_eq!(b.fwd.stats.sloppy_created, 1);
    assert_eq!(b.l3.stats.inet6.conns_created, 2);
    // `rr` leaves `sloppy_tcp` off: the segment starts nothing.
    let mut rr = with_neighbours(dp());
    let v = rr.process(tcp6(40001, false, b"GET /"), &meta(0));
    assert_eq!(drop_name(&v), "Dp(NoConn)");
    assert_eq!(rr.fwd.stats.sloppy_created, 0);
}

/// A client's TCP segment from `sport` to VIP6:80 with `flags`: a RST (`"R"`) or a SYN-ACK
/// (`"SA"`).
fn tcp6_flags(sport: u16, flags: &str) -> VecBuf {
    let b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(a(CLIENT6).octets(), a(VIP6).octets(), 64)
        .tcp(sport, 80, 1000, 64240);
    let b = match flags {
        "R" => b.rst(),
        "SA" => b.syn().ack(1),
        _ => panic!("flags {flags}"),
    };
    let mut v = Vec::new();
    b.write(&mut v, b"").unwrap();
    VecBuf::from_frame(&v)
}

/// `dp` with both real servers and the client resolved.
fn with_neighbours(mut dp: Datapath<VecBuf>) -> Datapath<VecBuf> {
    learn_rs1_and_client(&mut dp);
    dp.v6
        .neigh
        .learn(a(RS6_2), RS2_MAC, 1, 0, true, true, |_, _, _| {});
    dp
}

/// IPv6's next-hop cache by destination as IPv4's (`L3::note_next_hop`): a real server's entry
/// stays while packets go to more clients behind a router than the cache has slots, and the
/// clients take the slots no server holds.
#[test]
fn packets_to_many_ipv6_clients_leave_the_servers_next_hops_cached() {
    let cfg = format!(
        "{}\n[[route]]\nprefix = \"2001:db8:11::/48\"\nvia = \"2001:db8:10::2\"\nport = \"client\"\n",
        dual_stack(LAB_CONFIG)
    );
    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 1024);
    let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let (rs, router) = (ip("2001:db8:20::11"), ip("2001:db8:10::2"));
    dp.v6
        .neigh
        .learn(rs, RS1_MAC, 1, 0, true, true, |_, _, _| {});
    dp.v6
        .neigh
        .learn(router, CLIENT_MAC, 0, 0, true, true, |_, _, _| {});
    let send = |dp: &mut Datapath<VecBuf>, to: Ipv6Addr| {
        let route = *dp.l3.topo().routes6.lookup(to).expect("a route");
        let pkt = VecBuf::from_frame(&[0u8; 60]);
        match nd::send_toward(&mut dp.v6, &mut dp.l3, pkt, &route, to) {
            Verdict::Tx(port, _) => port,
            _ => panic!("{to} not sent"),
        }
    };
    assert_eq!(send(&mut dp, rs), 1);
    let clients: Vec<Ipv6Addr> = (1..=1000u128)
        .map(|k| Ipv6Addr::from(u128::from(ip("2001:db8:11::")) + k))
        .collect();
    for &c in &clients {
        assert_eq!(send(&mut dp, c), 0);
    }
    assert!(
        nd::cached_hop(&dp.v6, &dp.l3, rs).is_some(),
        "the server's entry"
    );
    let cached = clients
        .iter()
        .filter(|&&c| nd::cached_hop(&dp.v6, &dp.l3, c).is_some())
        .count();
    assert!(cached >= 200, "clients in the cache: {cached}");
}
