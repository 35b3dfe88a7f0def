use super::*;
use crate::datapath::Datapath;
use crate::packet::Verdict;
use crate::packet::{PacketBuf, RxMeta, VecBuf};
use crate::testkit::*;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

fn tcp(
    macs: (crate::wire::MacAddr, crate::wire::MacAddr),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    syn: bool,
    seq: u32,
    ack: Option<u32>,
) -> VecBuf {
    let mut b = PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, seq, 1000);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut v = Vec::new();
    b.write(&mut v, b"x").unwrap();
    VecBuf::from_frame(&v)
}

fn sent(v: Verdict<VecBuf>) -> Vec<u8> {
    match v {
        Verdict::Tx(_, b) => b.data().to_vec(),
        other => panic!("expected a frame out, got {other:?}"),
    }
}

/// (source, destination) of an IPv4 TCP or UDP frame.
fn endpoints(f: &[u8]) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    let (sport, dport) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        _ => panic!("neither TCP nor UDP"),
    };
    (
        (ip.header().source_addr(), sport),
        (ip.header().destination_addr(), dport),
    )
}

/// Received on the client-side port (`testkit::flows::META`).
const CLIENT: RxMeta = crate::testkit::flows::META;

/// Received on the server-side port.
const SERVER: RxMeta = RxMeta { port: 1, ..CLIENT };

/// The Ethernet addresses of a frame from the lab's real server `rip` to the gateway.
fn from_rs(rip: Ipv4Addr) -> (crate::wire::MacAddr, crate::wire::MacAddr) {
    let mac = if rip == RS1 { RS1_MAC } else { RS2_MAC };
    (mac, SERVER_PORT_MAC)
}

/// Real server `real`'s TCP segment to `local` (its side of a FullNAT connection).
fn server_tcp(
    real: (Ipv4Addr, u16),
    local: (Ipv4Addr, u16),
    syn: bool,
    seq: u32,
    ack: u32,
) -> VecBuf {
    tcp(from_rs(real.0), real, local, syn, seq, Some(ack))
}

/// A UDP datagram of one byte from `src` to `dst`, between the Ethernet addresses `macs`.
fn udp_datagram(
    macs: (crate::wire::MacAddr, crate::wire::MacAddr),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) -> VecBuf {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1)
        .write(&mut v, b"q")
        .unwrap();
    VecBuf::from_frame(&v)
}

/// An established FullNAT connection on `dp`: its LIP:lport and real server.
fn established(dp: &mut Datapath<VecBuf>) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let c = (CLIENT_IP, 40000);
    let out = sent(dp.process(
        tcp(
            (CLIENT_MAC, CLIENT_PORT_MAC),
            c,
            (VIP, 80),
            true,
            1000,
            None,
        ),
        &CLIENT,
    ));
    let (local, real) = endpoints(&out);
    sent(dp.process(server_tcp(real, local, true, 5000, 1001), &SERVER));
    sent(dp.process(
        tcp(
            (CLIENT_MAC, CLIENT_PORT_MAC),
            c,
            (VIP, 80),
            false,
            1001,
            Some(5001),
        ),
        &CLIENT,
    ));
    (local, real)
}

#[test]
fn a_connection_installed_elsewhere_equals_the_original_and_forwards() {
    let mut a: Datapath<VecBuf> = lab_datapath();
    a.tick(1_000);
    let (local, real) = established(&mut a);
    let (id, orig) = a.fwd.table().iter().next().map(|(i, c)| (i, *c)).unwrap();
    assert_eq!(orig.state(), State::Established);
    let rec = a.fwd.export(id, Ticks(1_000)).unwrap();
    assert_eq!(
        (rec.v4().unwrap().local, rec.v4().unwrap().real, rec.mode),
        (local, real, mode::FULLNAT)
    );

    // A fresh box, its clock elsewhere: same tuples, state, server, local port; the timer within
    // a tick of the time left.
    let mut b: Datapath<VecBuf> = lab_datapath();
    b.tick(50_000);
    let nid = b.fwd.install(&rec, Ticks(50_000)).unwrap();
    let c = *b.fwd.table().get(nid).unwrap();
    assert_eq!(
        (c.client(), c.reply(), c.state()),
        (orig.client(), orig.reply(), orig.state())
    );
    let rs = &b.fwd.services().services[c.svc as usize].svc.reals()[c.rs as usize];
    assert_eq!((rs.v4(), rs.port), real);
    let left = c.deadline().0 - 50_000;
    assert!(
        left.abs_diff(u64::from(rec.remaining_ms)) <= 10,
        "{left} vs {}",
        rec.remaining_ms
    );
    assert_eq!(
        b.fwd.table().half_open(),
        0,
        "past the handshake: not half-open"
    );
    assert_eq!(
        b.fwd.export(nid, Ticks(50_000)).map(|r| r.local),
        Some((local.0.into(), local.1))
    );

    // Its real server's next segment reaches the client as from the VIP.
    let out = sent(b.process(server_tcp(real, local, false, 5001, 1002), &SERVER));
    assert_eq!(endpoints(&out), ((VIP, 80), (CLIENT_IP, 40000)));
    // And a new connection does not take its local port.
    let out = sent(b.process(
        tcp(
            (CLIENT_MAC, CLIENT_PORT_MAC),
            (CLIENT_IP, 40001),
            (VIP, 80),
            true,
            7,
            None,
        ),
        &CLIENT,
    ));
    let (l2, r2) = endpoints(&out);
    assert!(l2 != local || r2 != real, "local port reused");
}

#[test]
fn records_this_box_cannot_serve_are_refused_and_change_nothing() {
    let mut a: Datapath<VecBuf> = lab_datapath();
    a.tick(1_000);
    established(&mut a);
    let id = a.fwd.table().iter().next().unwrap().0;
    let rec = a.fwd.export(id, Ticks(1_000)).unwrap();
    let mut b: Datapath<VecBuf> = lab_datapath();
    let cases = [
        (
            ConnRecord {
                vip: (VIP.into(), 81),
                ..rec
            },
            InstallError::NoService,
        ),
        (
            ConnRecord {
                real: (RS1.into(), 8080),
                ..rec
            },
            InstallError::NoRealServer,
        ),
        (
            ConnRecord {
                mode: mode::DR,
                ..rec
            },
            InstallError::ModeMismatch,
        ),
        (
            ConnRecord {
                local: (Ipv4Addr::new(10, 20, 0, 99).into(), rec.local.1),
                ..rec
            },
            InstallError::NotThisWorker,
        ),
        (
            ConnRecord {
                local: (rec.local.0, 80),
                ..rec
            },
            InstallError::NotThisWorker,
        ),
        (
            ConnRecord {
                kind: RecordKind::Template,
                ..rec
            },
            InstallError::Template,
        ),
    ];
    for (r, want) in cases {
        assert_eq!(b.fwd.install(&r, Ticks(0)), Err(want), "{r:?}");
    }
    assert_eq!(b.fwd.table().len(), 0);
    let in_use = |b: &Datapath<VecBuf>| -> u32 {
        b.fwd
            .lip_usage()
            .filter(|(k, _)| k.lip == rec.local.0)
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(in_use(&b), 0);
    // Installed, its local port counts as used; installed twice, the second is a duplicate and
    // gives its count back.
    b.fwd.install(&rec, Ticks(0)).unwrap();
    assert_eq!(in_use(&b), 1);
    assert_eq!(
        b.fwd.install(&rec, Ticks(0)),
        Err(InstallError::Table(InsertError::Duplicate))
    );
    assert_eq!((b.fwd.table().len(), in_use(&b)), (1, 1));
}

#[test]
fn the_sync_log_takes_established_connections_their_changes_and_refreshes() {
    let mut a: Datapath<VecBuf> = lab_datapath();
    a.tick(1_000);
    a.fwd.set_sync(Some(SyncLog::new(2, 1_000)));
    let (local, real) = established(&mut a);
    let mut out = Vec::new();
    a.fwd.drain_sync(Ticks(1_000), &mut out);
    assert_eq!(
        out.len(),
        1,
        "logged once it is established, not during the handshake"
    );
    assert_eq!(
        (out[0].local, out[0].state),
        ((local.0.into(), local.1), State::Established as u8)
    );
    // Another packet in the same period: nothing new to say.
    let c = (CLIENT_IP, 40000);
    let ack = |seq| {
        tcp(
            (CLIENT_MAC, CLIENT_PORT_MAC),
            c,
            (VIP, 80),
            false,
            seq,
            Some(5001),
        )
    };
    sent(a.process(ack(1002), &CLIENT));
    out.clear();
    a.fwd.drain_sync(Ticks(1_000), &mut out);
    assert!(out.is_empty());
    // The next period: refreshed, with the time left as it now is.
    a.tick(2_500);
    sent(a.process(ack(1003), &CLIENT));
    a.fwd.drain_sync(Ticks(2_500), &mut out);
    assert_eq!(out.len(), 1);
    // A state change (the server's FIN) is logged at once.
    let (rmac, _) = from_rs(real.0);
    let mut fin = Vec::new();
    PacketBuilder::ethernet2(rmac.0, SERVER_PORT_MAC.0)
        .ipv4(real.0.octets(), local.0.octets(), 64)
        .tcp(real.1, local.1, 5002, 1000)
        .ack(1004)
        .fin()
        .write(&mut fin, &[])
        .unwrap();
    sent(a.process(VecBuf::from_frame(&fin), &SERVER));
    out.clear();
    a.fwd.drain_sync(Ticks(2_500), &mut out);
    assert_eq!(out.len(), 1);
    assert_ne!(out[0].state, State::Established as u8);
    // Installed on the backup, what was drained is the connection as it stands.
    let mut b: Datapath<VecBuf> = lab_datapath();
    let id = b.fwd.install(&out[0], Ticks(0)).unwrap();
    assert_eq!(b.fwd.table().get(id).unwrap().state() as u8, out[0].state);
}

#[test]
fn the_sync_log_is_bounded_and_counts_what_it_could_not_take() {
    let mut a: Datapath<VecBuf> = lab_datapath();
    a.tick(1_000);
    a.fwd.set_sync(Some(SyncLog::new(1, 60_000)));
    established(&mut a);
    // A second connection while the log is full.
    let c = (CLIENT_IP, 40001);
    let out = sent(a.process(
        tcp((CLIENT_MAC, CLIENT_PORT_MAC), c, (VIP, 80), true, 1, None),
        &CLIENT,
    ));
    let (local, real) = endpoints(&out);
    sent(a.process(server_tcp(real, local, true, 9, 2), &SERVER));
    sent(a.process(
        tcp(
            (CLIENT_MAC, CLIENT_PORT_MAC),
            c,
            (VIP, 80),
            false,
            2,
            Some(10),
        ),
        &CLIENT,
    ));
    let log = a.fwd.sync_log().unwrap();
    assert_eq!((log.len(), log.logged, log.overflow), (1, 1, 1));
    let mut got = Vec::new();
    a.fwd.drain_sync(Ticks(1_000), &mut got);
    assert_eq!(got.len(), 1);
    // Without a log, nothing is noted.
    a.fwd.set_sync(None);
    a.fwd.drain_sync(Ticks(1_000), &mut got);
    assert_eq!(got.len(), 1);
}

#[test]
fn a_persistence_template_follows_its_connection_to_the_backup() {
    let cfg = LAB_CONFIG.replacen(
        "scheduler = \"wrr\"",
        "scheduler = \"wrr\"\npersistence_s = 300",
        1,
    );
    let fresh = || -> Datapath<VecBuf> {
        let mut d = datapath_from(&cfg, 0, 1, 1 << 16);
        d.tick(1_000);
        d
    };
    let syn = |dp: &mut Datapath<VecBuf>, ip: Ipv4Addr, port: u16| {
        endpoints(&sent(dp.process(
            tcp(
                (CLIENT_MAC, CLIENT_PORT_MAC),
                (ip, port),
                (VIP, 80),
                true,
                7,
                None,
            ),
            &CLIENT,
        )))
        .1
    };
    // On the primary another client takes the first server, so ours gets the second.
    let mut a = fresh();
    let other = syn(&mut a, Ipv4Addr::new(10, 10, 0, 3), 5000);
    let ours = syn(&mut a, CLIENT_IP, 40000);
    assert_ne!(other, ours);
    let id = a
        .fwd
        .table()
        .iter()
        .find(|(_, c)| c.client().src_ip() == CLIENT_IP)
        .unwrap()
        .0;
    let t = a.fwd.export_template(id, Ticks(1_000)).expect("a template");
    assert_eq!(
        (t.kind, t.client, t.real),
        (
            RecordKind::Template,
            (CLIENT_IP.into(), 0),
            (ours.0.into(), ours.1)
        )
    );
    assert!(t.remaining_ms > 299_000 && t.remaining_ms <= 300_000);
    // A fresh backup would send our client's next connection to the first server; with the
    // template, to the one the primary chose.
    assert_eq!(syn(&mut fresh(), CLIENT_IP, 40001), other);
    let mut b = fresh();
    assert_eq!(b.fwd.apply_record(&t, Ticks(1_000)), Ok(Applied::Installed));
    assert_eq!(syn(&mut b, CLIENT_IP, 40001), ours);
    // A template for a service that is not persistent here is refused and counted.
    let mut c: Datapath<VecBuf> = lab_datapath();
    assert_eq!(
        c.fwd.apply_record(&t, Ticks(0)),
        Err(InstallError::Template)
    );
    assert_eq!(c.fwd.sync_counters().refused_template, 1);
}

#[test]
fn a_stale_entry_holding_the_local_port_gives_way_to_the_primarys_connection() {
    let mut a: Datapath<VecBuf> = lab_datapath();
    a.tick(1_000);
    established(&mut a);
    let id = a.fwd.table().iter().next().unwrap().0;
    let old = a.fwd.export(id, Ticks(1_000)).unwrap();
    // The backup still has `old`; on the primary it ended and another client's connection got the
    // same real server and local port.
    let mut b: Datapath<VecBuf> = lab_datapath();
    b.fwd.apply_record(&old, Ticks(0)).unwrap();
    let new = ConnRecord {
        client: (Ipv4Addr::new(10, 10, 0, 3).into(), 5555),
        ..old
    };
    assert_eq!(b.fwd.apply_record(&new, Ticks(0)), Ok(Applied::Replaced));
    let clients: Vec<_> = b
        .fwd
        .table()
        .iter()
        .map(|(_, c)| c.client().sport)
        .collect();
    assert_eq!(clients, [5555]);
    // Its local port is counted once.
    let in_use: u32 = b
        .fwd
        .lip_usage()
        .filter(|(k, _)| k.lip == old.local.0)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(in_use, 1);
}

/// A record for a client tuple the backup holds with another local port (the primary scheduled
/// the client's new connection afresh and parked the old one, `Forwarder::retire`) parks the
/// backup's old entry too, on its LIP:lport: after a takeover that port is not handed out while
/// the old server may hold it in TIME_WAIT. The parked entry is not listed, forwards nothing and
/// counts for neither its server nor its local address, then or when it expires.
#[test]
fn a_backup_parks_the_connection_a_record_replaces() {
    let mut a: Datapath<VecBuf> = lab_datapath();
    a.tick(1_000);
    let (local, real) = established(&mut a);
    let id = a.fwd.table().iter().next().unwrap().0;
    let old = a.fwd.export(id, Ticks(1_000)).unwrap();
    let mut b: Datapath<VecBuf> = lab_datapath();
    b.tick(1_000);
    assert_eq!(
        b.fwd.apply_record(&old, Ticks(1_000)),
        Ok(Applied::Installed)
    );
    let new = ConnRecord {
        local: (old.local.0, old.local.1 + 1),
        state: State::SynRecv as u8,
        remaining_ms: 30_000,
        ..old
    };
    assert_eq!(
        b.fwd.apply_record(&new, Ticks(1_000)),
        Ok(Applied::Replaced)
    );
    assert_eq!(b.fwd.table().len(), 2, "the old entry holds its LIP:lport");
    let held = Tuple::new(real.0, real.1, local.0, local.1, 6);
    let (parked, dir) = b.fwd.table().lookup(&held).unwrap();
    assert_eq!(dir, crate::conn::Dir::Reply);
    let c = b.fwd.table().get(parked).unwrap();
    assert!(c.flags().contains(super::super::PARKED), "{c:?}");
    assert!(b.fwd.export(parked, Ticks(1_000)).is_none());
    let filter = crate::control::proto::ConnFilter::default();
    let listed = crate::control::dump::worker_dump(0, &b, &filter, 100, 0).conns;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].local.map(|l| l.1), Some(local.1 + 1));
    // The server's late segment on the old tuple is dropped.
    let late = b.process(server_tcp(real, local, false, 5001, 1001), &SERVER);
    assert!(matches!(late, Verdict::Drop(..)), "{late:?}");
    let counts = |dp: &Datapath<VecBuf>| {
        let in_use: u32 = dp.fwd.lip_usage().map(|(_, n)| n).sum();
        let total: u32 = dp.fwd.services().services[0]
            .svc
            .reals()
            .iter()
            .enumerate()
            .map(|(i, _)| dp.fwd.services().services[0].svc.stats(i).unwrap().total())
            .sum();
        (in_use, total)
    };
    assert_eq!(counts(&b), (1, 1));
    b.tick(200_000);
    b.tick(201_000);
    assert_eq!(b.fwd.table().len(), 0);
    assert_eq!(counts(&b), (0, 0));
    // Each ended once: the parked one when its timer ended it, not when it was parked.
    assert_eq!(b.fwd.stats.expired, 2);
    assert_eq!(b.fwd.sync_counters().refused(), 0);
}

#[test]
fn nat_and_dr_connections_installed_elsewhere_forward_their_next_packet() {
    for (mode_key, want_mode) in [("nat", mode::NAT), ("dr", mode::DR)] {
        let cfg = LAB_CONFIG.replacen(
            "address = \"10.20.0.11\"\n",
            &format!("address = \"10.20.0.11\"\nmode = \"{mode_key}\"\n"),
            1,
        );
        let cfg = cfg.replacen(
            "address = \"10.20.0.12\"\n",
            &format!("address = \"10.20.0.12\"\nmode = \"{mode_key}\"\n"),
            1,
        );
        let fresh = || -> Datapath<VecBuf> { datapath_from(&cfg, 0, 1, 1 << 16) };
        let client = |syn: bool| {
            tcp(
                (CLIENT_MAC, CLIENT_PORT_MAC),
                (CLIENT_IP, 40000),
                (VIP, 80),
                syn,
                if syn { 7 } else { 8 },
                (!syn).then_some(1),
            )
        };
        let mut a = fresh();
        let first = sent(a.process(client(true), &CLIENT));
        let (id, _) = a.fwd.table().iter().next().unwrap();
        let rec = a.fwd.export(id, Ticks(0)).unwrap();
        assert_eq!(rec.mode, want_mode, "{mode_key}");
        // Without the record, the next segment finds nothing on another box.
        let mut b = fresh();
        assert!(
            matches!(b.process(client(false), &CLIENT), Verdict::Drop(..)),
            "{mode_key}"
        );
        let mut b = fresh();
        assert_eq!(b.fwd.apply_record(&rec, Ticks(0)), Ok(Applied::Installed));
        let next = sent(b.process(client(false), &CLIENT));
        // The same real server, by address (NAT) or by MAC with the VIP kept (DR).
        assert_eq!(endpoints(&next).1, endpoints(&first).1, "{mode_key}");
        assert_eq!(next[..6], first[..6], "{mode_key}: same server MAC");
    }
}

/// A backup whose table is full of closed connections makes room for the primary's new one as
/// the primary does for its own (`Room::Table`): the oldest in TIME_WAIT goes, its local port
/// with it. Without it, every record after the table filled was refused (`refused_table`), and
/// those connections were lost at a takeover.
#[test]
fn a_backup_full_of_closed_connections_makes_room_for_a_new_one() {
    let mut a: Datapath<VecBuf> = lab_datapath();
    a.tick(1_000);
    established(&mut a);
    let (id, _) = a.fwd.table().iter().next().unwrap();
    let rec = a.fwd.export(id, Ticks(1_000)).unwrap();
    let mut b: Datapath<VecBuf> = datapath_from(LAB_CONFIG, 0, 1, 64);
    b.tick(1_000);
    let cap = b.fwd.table().capacity() as u16;
    let record = |i: u16, state: State| ConnRecord {
        client: (rec.client.0, 20_000 + i),
        local: (rec.local.0, 30_000 + i),
        state: state as u8,
        ..rec
    };
    for i in 0..cap {
        let r = record(i, State::TimeWait);
        assert_eq!(b.fwd.apply_record(&r, Ticks(1_000)), Ok(Applied::Installed));
    }
    assert_eq!(b.fwd.table().len(), usize::from(cap), "full");
    let r = record(cap, State::Established);
    assert_eq!(b.fwd.apply_record(&r, Ticks(1_000)), Ok(Applied::Installed));
    assert_eq!(b.fwd.stats.evicted_time_wait, 1);
    let a4 = rec.v4().unwrap();
    let client = |i: u16| Tuple::new(a4.client.0, 20_000 + i, a4.vip.0, a4.vip.1, 6);
    assert!(
        b.fwd.table().lookup(&client(0)).is_none(),
        "the oldest went"
    );
    assert!(b.fwd.table().lookup(&client(cap)).is_some());
    let in_use: u32 = b.fwd.lip_usage().map(|(_, n)| n).sum();
    assert_eq!(
        in_use as usize,
        b.fwd.table().len(),
        "its local port went with it"
    );
}

/// A handshake installed from elsewhere waits for its server from its installation, as from a
/// SYN: the client's SYN sent again a second later, the server silent since, makes the server's
/// neighbour suspect (a unicast probe). Installed with `user` 0, it had waited since the epoch
/// as far as `unanswered_server` could tell, and every neighbour looked confirmed since.
#[test]
fn an_installed_handshake_waits_for_its_server_from_its_installation() {
    let mut a: Datapath<VecBuf> = lab_datapath();
    a.tick(1_000);
    established(&mut a);
    let (id, _) = a.fwd.table().iter().next().unwrap();
    let rec = a.fwd.export(id, Ticks(1_000)).unwrap();
    let a4 = rec.v4().unwrap();
    let mut b: Datapath<VecBuf> = lab_datapath();
    // The server's neighbour confirmed at 49 s (reachable for 15 s at least), then the
    // handshake installed at 50 s.
    let mac = if a4.real.0 == RS1 { RS1_MAC } else { RS2_MAC };
    b.tick(49_000);
    b.l3.learn_from_peer(a4.real.0, mac, 1);
    b.tick(50_000);
    let r = ConnRecord {
        state: State::SynRecv as u8,
        ..rec
    };
    assert_eq!(
        b.fwd.apply_record(&r, Ticks(50_000)),
        Ok(Applied::Installed)
    );
    b.tick(51_000);
    let syn = tcp(
        (CLIENT_MAC, CLIENT_PORT_MAC),
        a4.client,
        a4.vip,
        true,
        1000,
        None,
    );
    sent(b.process(syn, &RxMeta::default()));
    let mut probes = Vec::new();
    b.l3.take_generated(|g| probes.push(g.bytes()[..6].to_vec()));
    assert_eq!(probes, vec![mac.0.to_vec()], "one unicast probe");
    assert_eq!(b.l3.neigh().counters.suspected, 1);
}

/// A UDP flow is logged for the backup once its server has answered, not before: a spoofed UDP
/// flood's flows, which the primary's full table may take (`evicted_udp`), never fill the
/// backup's, where they would count as answered.
#[test]
fn the_sync_log_takes_a_udp_flow_once_it_is_answered() {
    let udp = udp_datagram;
    let mut a: Datapath<VecBuf> = lab_datapath();
    a.tick(1_000);
    a.fwd.set_sync(Some(SyncLog::new(2, 1_000)));
    let out = sent(a.process(
        udp((CLIENT_MAC, CLIENT_PORT_MAC), (CLIENT_IP, 40000), (VIP, 80)),
        &CLIENT,
    ));
    let (local, real) = endpoints(&out);
    let mut log = Vec::new();
    a.fwd.drain_sync(Ticks(1_000), &mut log);
    assert!(log.is_empty(), "not answered yet: {log:?}");
    sent(a.process(udp(from_rs(real.0), real, local), &SERVER));
    a.fwd.drain_sync(Ticks(1_000), &mut log);
    assert_eq!(log.len(), 1, "answered");
    assert_eq!(
        (log[0].local, log[0].proto),
        ((local.0.into(), local.1), 17)
    );
}

/// A DR UDP flow, whose answers bypass the gateway, goes to the backup from its client's second
/// datagram, in the first refresh period too (its refresh epoch has not moved then); a full
/// resync does not send a flow of one datagram, as a spoofed flood's.
#[test]
fn a_dr_udp_flow_is_synced_from_its_second_datagram_and_a_one_datagram_flow_never() {
    let cfg = lab_config_udp_dr();
    let mut a: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 1 << 12);
    a.tick(500);
    a.fwd.set_sync(Some(SyncLog::new(16, 1_000)));
    let query = |cport| udp_datagram((CLIENT_MAC, CLIENT_PORT_MAC), (CLIENT_IP, cport), (VIP, 80));
    let mut log = Vec::new();
    sent(a.process(query(40_000), &CLIENT));
    a.fwd.drain_sync(Ticks(500), &mut log);
    assert!(log.is_empty(), "one datagram: {log:?}");
    sent(a.process(query(40_000), &CLIENT));
    a.fwd.drain_sync(Ticks(500), &mut log);
    assert_eq!(log.len(), 1, "its second");
    assert_eq!(
        (log[0].client, log[0].mode),
        ((CLIENT_IP.into(), 40_000), crate::forward::mode::DR)
    );
    // Beside it, a flow of one datagram: a full resync sends the first only.
    sent(a.process(query(40_001), &CLIENT));
    let (mut all, mut from) = (Vec::new(), Some(0));
    while let Some(f) = from {
        from = a.fwd.export_range(f, 1 << 12, Ticks(600), &mut all);
    }
    let clients: Vec<_> = all.iter().map(|r| r.client).collect();
    assert_eq!(clients, vec![(CLIENT_IP.into(), 40_000)]);
}
