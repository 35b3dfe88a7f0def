//! Per-client limits (`[[service]] client_limit`, `forward::limit`) in the DPDK-free datapath:
//! SYNs over the rate or the open-connection limit are refused with their drop reason and leave no
//! state, those under it pass; a closed connection makes room again, counted exactly once on every
//! way a connection goes; a limit changed at run time counts the connections already open; the
//! `rst` action answers a refused SYN with a RST the client accepts (etherparse is the oracle).

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use gateway::datapath::Datapath;
use gateway::forward::ServiceTable;
use gateway::packet::Verdict;
use gateway::packet::{PacketBuf, RxMeta, VecBuf};
use gateway::stats::{Drop, DropReason};
use gateway::testkit::*;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The testkit's lab config with `limit` as the TCP service's `client_limit` and `extra` after it.
fn config(limit: &str, extra: &str) -> String {
    LAB_CONFIG.replacen(
        "scheduler = \"wrr\"",
        &format!("scheduler = \"wrr\"\nclient_limit = {limit}"),
        1,
    ) + extra
}

fn datapath(limit: &str, extra: &str) -> Datapath<VecBuf> {
    datapath_from(&config(limit, extra), 0, 1, 1 << 12)
}

/// A client segment from `src`:`sport` to VIP:80 with sequence number `seq` and `flags` (S, A,
/// R; an ACK acknowledges the server's SYN, 5000).
fn client_seg(src: Ipv4Addr, sport: u16, seq: u32, flags: &str) -> VecBuf {
    let mut b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv4(src.octets(), VIP.octets(), 64)
        .tcp(sport, 80, seq, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(5001),
            'R' => b.rst(),
            _ => panic!("flag {f}"),
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    VecBuf::from_frame(&v)
}

/// Real server `rs`'s segment to `lip`:`lport` (seq 5000, acknowledging the client's 1000).
fn server_seg(rs: Ipv4Addr, lip: Ipv4Addr, lport: u16, flags: &str) -> VecBuf {
    let mac = if rs == RS1 { RS1_MAC } else { RS2_MAC };
    let mut b = PacketBuilder::ethernet2(mac.0, SERVER_PORT_MAC.0)
        .ipv4(rs.octets(), lip.octets(), 64)
        .tcp(80, lport, 5000, 64240)
        .ack(1001);
    if flags.contains('S') {
        b = b.syn();
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    VecBuf::from_frame(&v)
}

fn from_server() -> RxMeta {
    RxMeta {
        port: 1,
        ..Default::default()
    }
}

/// The real server's SYN-ACK to the SYN the gateway `sent` it.
fn server_synack(dp: &mut Datapath<VecBuf>, sent: &[u8]) {
    let ip = |o: usize| Ipv4Addr::from(<[u8; 4]>::try_from(&sent[o..o + 4]).unwrap());
    let (lip, rs, lport) = (ip(26), ip(30), u16::from_be_bytes([sent[34], sent[35]]));
    let synack = server_seg(rs, lip, lport, "SA");
    assert!(outcome(dp, synack, from_server()).is_ok());
}

/// What became of a SYN (seq 1000): forwarded to a real server, or dropped for a reason.
fn syn(dp: &mut Datapath<VecBuf>, src: Ipv4Addr, sport: u16) -> Result<(), Drop> {
    outcome(dp, client_seg(src, sport, 1000, "S"), RxMeta::default()).map(|_| ())
}

/// Processes `pkt`: the frame sent (on either port), or the drop reason.
fn outcome(dp: &mut Datapath<VecBuf>, pkt: VecBuf, meta: RxMeta) -> Result<Vec<u8>, Drop> {
    let v = dp.process(pkt, &meta);
    let r = match &v {
        Verdict::Tx(_, b) => Ok(b.data().to_vec()),
        Verdict::Drop(DropReason::Dp(d), _) => Err(*d),
        v => panic!("unexpected verdict {v:?}"),
    };
    dp.settle(v);
    r
}

/// The TCP service's refusals `[rate, max_conns]`.
fn refused(dp: &Datapath<VecBuf>) -> [u64; 2] {
    let mut it = dp.fwd.limit_entries().filter(|(k, _)| k.0 == 6);
    it.next().map_or([0; 2], |(_, r)| r)
}

fn drops(dp: &Datapath<VecBuf>, d: Drop) -> u64 {
    dp.l3.stats.drops[d as usize]
}

#[test]
fn syns_over_the_rate_are_dropped_and_leave_no_state() {
    // 5 new connections per second, burst 5: five at once, then one every 200 ms.
    let mut dp = datapath("{ rate = 5 }", "");
    dp.tick(1000);
    for port in 40000..40005 {
        assert_eq!(syn(&mut dp, CLIENT_IP, port), Ok(()), "within the burst");
    }
    for port in 40005..40010 {
        assert_eq!(syn(&mut dp, CLIENT_IP, port), Err(Drop::LimitRate));
    }
    assert_eq!(dp.fwd.table().len(), 5, "no state for a refused SYN");
    assert_eq!(drops(&dp, Drop::LimitRate), 5);
    assert_eq!(refused(&dp), [5, 0]);
    // Another client has its own bucket.
    let other = Ipv4Addr::new(10, 10, 0, 3);
    dp.l3.learn_from_peer(other, CLIENT_MAC, 0);
    assert_eq!(syn(&mut dp, other, 40000), Ok(()));
    // One more every 200 ms; a retransmitted SYN of a connection that exists takes no token.
    dp.tick(1190);
    assert_eq!(syn(&mut dp, CLIENT_IP, 40010), Err(Drop::LimitRate));
    assert_eq!(syn(&mut dp, CLIENT_IP, 40000), Ok(()), "retransmission");
    dp.tick(1200);
    assert_eq!(syn(&mut dp, CLIENT_IP, 40011), Ok(()));
    assert_eq!(syn(&mut dp, CLIENT_IP, 40012), Err(Drop::LimitRate));
    // Over ten seconds of a SYN every 10 ms, the rate lets through 5/s.
    let mut passed = 0;
    for (i, now) in (1210..11210).step_by(10).enumerate() {
        dp.tick(now);
        // The real servers answer ARP (their entries would fail over ten silent seconds).
        dp.l3.learn_from_peer(RS1, RS1_MAC, 1);
        dp.l3.learn_from_peer(RS2, RS2_MAC, 1);
        passed += usize::from(syn(&mut dp, CLIENT_IP, 41000 + i as u16).is_ok());
    }
    assert_eq!(passed, 50);
    // The UDP service has no limit.
    assert_eq!(dp.fwd.limit_entries().count(), 1);
}

#[test]
fn the_open_connection_limit_refuses_the_next_and_admits_again_once_one_goes() {
    // Every state times out in 2 s.
    let timeouts = "\n[conn.timeouts]\nestablished = 2\nsyn_recv = 2\nclose = 2\ntime_wait = 2\n";
    let mut dp = datapath("{ max_conns = 2, prefix = 24 }", timeouts);
    dp.tick(1000);
    let neighbour = Ipv4Addr::new(10, 10, 0, 7);
    dp.l3.learn_from_peer(neighbour, CLIENT_MAC, 0);
    assert_eq!(syn(&mut dp, CLIENT_IP, 40000), Ok(()));
    assert_eq!(
        syn(&mut dp, neighbour, 40001),
        Ok(()),
        "same /24, counted together"
    );
    assert_eq!(syn(&mut dp, CLIENT_IP, 40002), Err(Drop::LimitConns));
    assert_eq!(drops(&dp, Drop::LimitConns), 1);
    assert_eq!(refused(&dp), [0, 1]);
    assert_eq!(dp.fwd.table().len(), 2);

    // The server answers the client's first connection; the client gives it up and opens a new
    // one on the same port (another initial sequence number): the old entry is retired
    // (`reuse`, NewIsn) and the new connection takes its place, so the count stays at two.
    let first = client_seg(CLIENT_IP, 40000, 1000, "S");
    let sent = outcome(&mut dp, first, RxMeta::default()).unwrap();
    server_synack(&mut dp, &sent);
    let again = client_seg(CLIENT_IP, 40000, 7000, "S");
    assert!(outcome(&mut dp, again, RxMeta::default()).is_ok());
    assert_eq!(
        dp.fwd.stats.resched_new_isn, 1,
        "a new connection on the port"
    );
    assert_eq!(syn(&mut dp, CLIENT_IP, 40003), Err(Drop::LimitConns));

    // The limit raised at run time: the two open connections are counted, a third one passes.
    set_limit(&mut dp, "{ max_conns = 3, prefix = 24 }", timeouts);
    assert_eq!(syn(&mut dp, CLIENT_IP, 40004), Ok(()));
    assert_eq!(syn(&mut dp, CLIENT_IP, 40005), Err(Drop::LimitConns));

    // A connection that ends (CLOSE after the client's RST) stops counting at once, long
    // before its entry expires.
    assert_eq!(syn(&mut dp, CLIENT_IP, 40006), Err(Drop::LimitConns));
    let (_, established) = dp
        .fwd
        .table()
        .iter()
        .find(|(_, c)| c.client().sport == 40004)
        .unwrap();
    let reply = established.reply().unwrap();
    let synack = server_seg(reply.src_ip(), reply.dst_ip(), reply.dport, "SA");
    assert!(outcome(&mut dp, synack, from_server()).is_ok());
    for flags in ["A", "RA"] {
        let seg = client_seg(CLIENT_IP, 40004, 1001, flags);
        assert!(outcome(&mut dp, seg, RxMeta::default()).is_ok(), "{flags}");
    }
    let entries = dp.fwd.table().len();
    assert_eq!(syn(&mut dp, CLIENT_IP, 40006), Ok(()));
    assert_eq!(syn(&mut dp, CLIENT_IP, 40007), Err(Drop::LimitConns));
    assert_eq!(
        dp.fwd.table().len(),
        entries + 1,
        "the closed entry is still there"
    );
    // A new snapshot (the limit raised to 4) counts the open connections again, not that one.
    set_limit(&mut dp, "{ max_conns = 4, prefix = 24 }", timeouts);
    assert_eq!(syn(&mut dp, CLIENT_IP, 40008), Ok(()));
    assert_eq!(syn(&mut dp, CLIENT_IP, 40009), Err(Drop::LimitConns));
    // A SYN reusing the closed connection's port retires its entry (`reuse`) and is a new
    // connection, over the limit: the closed one is not counted down a second time.
    assert_eq!(syn(&mut dp, CLIENT_IP, 40004), Err(Drop::LimitConns));
    assert_eq!(dp.fwd.stats.resched_closed, 1);

    // The connections expire, the retired ones too: room for four again.
    dp.tick(4000);
    dp.tick(8000);
    assert_eq!(dp.fwd.table().len(), 0, "{:?}", dp.fwd.stats);
    for port in 40010..40014 {
        assert_eq!(syn(&mut dp, neighbour, port), Ok(()));
    }
    assert_eq!(syn(&mut dp, CLIENT_IP, 40014), Err(Drop::LimitConns));
}

/// Adopts a new snapshot, as a `gwctl limit` would make: the TCP service's limit set to `limit`.
fn set_limit(dp: &mut Datapath<VecBuf>, limit: &str, extra: &str) {
    let v = gateway::config::Config::parse(&config(limit, extra))
        .unwrap()
        .validate()
        .unwrap();
    let next = ServiceTable::new(2, v.services, Some(dp.fwd.services())).unwrap();
    dp.fwd.set_services(Arc::new(next)).unwrap();
}

#[test]
fn the_rst_action_answers_a_refused_syn_with_a_reset_the_client_accepts() {
    let mut dp = datapath("{ rate = 1, action = \"rst\" }", "");
    dp.tick(1000);
    assert_eq!(syn(&mut dp, CLIENT_IP, 40000), Ok(()));
    let mut frames = Vec::new();
    dp.l3
        .take_generated(|g| frames.push((g.port, g.bytes().to_vec())));
    assert!(frames.is_empty());
    assert_eq!(syn(&mut dp, CLIENT_IP, 40001), Err(Drop::LimitRate));
    dp.l3
        .take_generated(|g| frames.push((g.port, g.bytes().to_vec())));
    assert_eq!(frames.len(), 1, "one RST");
    let (port, f) = &frames[0];
    assert_eq!(*port, 0, "to the client's side");
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let h = ip.header();
    assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
    assert_eq!(
        (h.source(), h.destination()),
        (VIP.octets(), CLIENT_IP.octets())
    );
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not TCP")
    };
    assert_eq!((t.source_port(), t.destination_port()), (80, 40001));
    assert!(t.rst() && t.ack() && !t.syn());
    assert_eq!(
        t.acknowledgment_number(),
        1001,
        "the SYN's sequence number plus one"
    );
    assert_eq!(
        t.checksum(),
        t.calc_checksum_ipv4(h.source(), h.destination()).unwrap()
    );
    assert_eq!(dp.fwd.stats.rst_sent, 1);
    assert_eq!(dp.fwd.table().len(), 1);
}

/// A client this worker has not resolved (its neighbour entry may live on another worker) still
/// gets its RST: sent back to the MAC its SYN came from, on the port it came in on, the route's.
#[test]
fn the_rst_goes_back_to_the_syns_source_mac_when_the_client_is_not_resolved() {
    let mut dp = datapath("{ rate = 1, action = \"rst\" }", "");
    dp.tick(1000);
    let stranger = Ipv4Addr::new(10, 10, 0, 9);
    let stranger_mac = [2, 0, 0, 0, 0, 9];
    let syn_from = |sport: u16| {
        let mut f = client_seg(stranger, sport, 1000, "S");
        f.data_mut()[6..12].copy_from_slice(&stranger_mac);
        f
    };
    assert!(outcome(&mut dp, syn_from(40000), RxMeta::default()).is_ok());
    assert_eq!(
        outcome(&mut dp, syn_from(40001), RxMeta::default()),
        Err(Drop::LimitRate)
    );
    let mut frames = Vec::new();
    dp.l3
        .take_generated(|g| frames.push((g.port, g.bytes().to_vec())));
    assert_eq!(frames.len(), 1, "one RST, {:?}", dp.fwd.stats);
    let (port, f) = &frames[0];
    assert_eq!(*port, 0);
    assert_eq!(f[..6], stranger_mac, "to the SYN's source MAC");
    assert_eq!(f[6..12], CLIENT_PORT_MAC.0);
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not TCP")
    };
    assert_eq!((t.destination_port(), t.rst()), (40001, true));
    assert_eq!(dp.fwd.stats.rst_sent, 1);
    // A SYN that came in on another port than the route to its client leaves by: no RST, as
    // its source MAC is no neighbour on the route's port.
    let mut elsewhere = syn_from(40002);
    elsewhere.data_mut()[..6].copy_from_slice(&SERVER_PORT_MAC.0);
    assert_eq!(
        outcome(&mut dp, elsewhere, from_server()),
        Err(Drop::LimitRate)
    );
    dp.l3
        .take_generated(|g| frames.push((g.port, g.bytes().to_vec())));
    assert_eq!(frames.len(), 1, "no second RST");
    assert_eq!(dp.fwd.stats.rst_unsent, 1);
}

#[test]
fn bad_limits_are_refused_naming_the_key() {
    for (limit, key) in [
        ("{ rate = 0 }", "service[0].client_limit.rate"),
        (
            "{ max_conns = 5, action = \"reject\" }",
            "service[0].client_limit.action",
        ),
        (
            "{ rate = 5, prefix = 40 }",
            "service[0].client_limit.prefix",
        ),
        ("{ burst = 5 }", "service[0].client_limit.burst"),
    ] {
        // Parsing validates.
        let e = gateway::config::Config::parse(&config(limit, ""))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{limit}: {e}");
    }
    let e = gateway::config::Config::parse(&config("{ rates = 5 }", ""))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("rates"), "{e}");
}
