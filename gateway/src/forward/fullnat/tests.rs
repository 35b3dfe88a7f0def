use super::*;
use crate::config::Config;
use crate::datapath::Datapath;
use crate::packet::VecBuf;
use crate::testkit::*;
use crate::wire::MacAddr;
use etherparse::PacketBuilder;

fn client_tcp(sport: u16, syn: bool) -> VecBuf {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
        .tcp(sport, 80, 1000, 64240);
    if syn { b.syn() } else { b.ack(1) }
        .write(&mut v, &[])
        .unwrap();
    VecBuf::from_frame(&v)
}

fn snapshot(dp: &Datapath<VecBuf>, reals: &str, nodest: bool) -> Arc<ServiceTable> {
    let text = LAB_CONFIG
        .replacen("[[service.real]]\naddress = \"10.20.0.11\"\n[[service.real]]\naddress = \"10.20.0.12\"\n", reals, 1)
        .replacen("scheduler = \"wrr\"", &format!("scheduler = \"wrr\"\nexpire_nodest_conn = {nodest}"), 1);
    let v = Config::parse(&text).unwrap().validate().unwrap();
    Arc::new(ServiceTable::new(2, v.services, Some(dp.fwd.services())).unwrap())
}

fn tx(v: Verdict<VecBuf>) -> bool {
    matches!(v, Verdict::Tx(..))
}

#[test]
fn removed_real_server_drops_its_connections_only_with_expire_nodest_conn() {
    let meta = RxMeta {
        port: 0,
        ..Default::default()
    };
    for nodest in [false, true] {
        let mut dp: Datapath<VecBuf> = lab_datapath();
        assert!(tx(dp.process(client_tcp(40000, true), &meta)));
        assert_eq!(dp.fwd.table().len(), 1);
        // rs1 got the first connection (wrr); the new snapshot keeps only rs2.
        let s = snapshot(&dp, "[[service.real]]\naddress = \"10.20.0.12\"\n", nodest);
        dp.fwd.set_services(s).unwrap();
        let c = dp.fwd.table().iter().next().unwrap().1;
        assert_eq!(c.rs, NO_DEST);
        let v = dp.process(client_tcp(40000, false), &meta);
        if nodest {
            assert!(matches!(v, Verdict::Drop(..)), "dropped at its next packet");
            assert_eq!(dp.fwd.table().len(), 0, "and the connection is gone");
        } else {
            assert!(
                tx(v),
                "without expire_nodest_conn the connection keeps forwarding"
            );
            assert_eq!(dp.fwd.table().len(), 1);
        }
        // New connections go to the remaining server either way.
        assert!(tx(dp.process(client_tcp(40001, true), &meta)));
    }
}

/// `Prelookup::Hit` is only a candidate (`Table::prelookup_hashed` names the first entry whose
/// hash bits match): `find` trusts it only if the entry holds the tuple, else looks it up.
#[test]
fn a_candidate_that_is_not_the_tuples_entry_is_looked_up_afresh() {
    let dp = lab_with_two_conns();
    let ids: Vec<(ConnId, Tuple)> = dp
        .fwd
        .table()
        .iter()
        .map(|(id, c)| (id, c.client()))
        .collect();
    let [(a, ta), (b, tb)] = ids[..] else {
        panic!("two connections")
    };
    let absent = Tuple::new(CLIENT_IP, 40002, VIP, 80, 6);
    let found = |t: &Tuple, id, dir| dp.fwd.find(t, Prelookup::Hit(id, dir));
    // The wrong entry, or the right one from the wrong side: the tuple's own entry.
    for (id, dir) in [(a, Dir::Original), (a, Dir::Reply), (b, Dir::Reply)] {
        assert_eq!(found(&tb, id, dir), Some((b, Dir::Original)));
        assert_eq!(found(&absent, id, dir), None);
    }
    assert_eq!(found(&ta, a, Dir::Original), Some((a, Dir::Original)));
}

/// Each connection's id, client tuple and reply tuple.
type Conns = Vec<(ConnId, Tuple, Tuple)>;

/// Two established connections of the bench's service (`testkit::flows`), the clients' ACK
/// frames, and the connections.
fn two_connections() -> (Datapath<VecBuf>, Vec<VecBuf>, Conns) {
    let (dp, acks, tmpl) = crate::testkit::flows::established(2, 1 << 10);
    let conns: Conns = dp
        .fwd
        .table()
        .iter()
        .map(|(id, c)| (id, c.client(), c.reply().unwrap()))
        .collect();
    assert_eq!(conns.len(), 2);
    let frames = acks
        .iter()
        .map(|a| {
            let mut buf = VecBuf::from_frame(&tmpl);
            a.write(&mut buf, &tmpl);
            buf
        })
        .collect();
    (dp, frames, conns)
}

/// What the burst loop's last stage does for `buf` with the burst's candidate `pre`
/// (`Datapath::forward_plain_tcp_into`): the verdict of the fast path's forwarding, or `Err`
/// when it handed the packet to the general path (which counted nothing as `fast_path`).
fn through_candidate(
    dp: &mut Datapath<VecBuf>,
    buf: VecBuf,
    pre: Prelookup,
) -> Result<Option<Verdict<VecBuf>>, ()> {
    let seg = super::PlainSeg::of(&super::PlainSeg::parse(buf.data()).unwrap());
    let meta = RxMeta {
        l4_csum: CsumStatus::Good,
        ..RxMeta::default()
    };
    let mut out = None;
    let indexed = dp.fwd.table().indexed();
    let before = dp.l3.stats.fast_path;
    let deadline = dp.fwd.table().hot_deadline(Ticks(dp.l3.now_ms));
    dp.forward_plain_tcp_into(buf, &meta, &seg, (pre.into(), indexed), deadline, &mut out);
    if dp.l3.stats.fast_path == before {
        return Err(());
    }
    Ok(out)
}

/// The addresses and ports a frame left with.
fn endpoints(b: &VecBuf) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let t = crate::wire::parse_l3l4(b.data()).unwrap().ip.unwrap();
    (t.src, t.src_port, t.dst, t.dst_port)
}

/// The burst's candidate from the client's side goes straight to the hot path only if its
/// entry holds the packet's tuple: another connection's entry as the candidate (hash bits
/// alike) leaves the packet to the full lookup, which forwards it on its own connection.
#[test]
fn a_candidate_from_the_client_side_is_checked_before_the_hot_path() {
    let (mut dp, frames, conns) = two_connections();
    for (flow, buf) in frames.into_iter().enumerate() {
        let own = conns
            .iter()
            .position(|c| c.1 == endpoints_tuple(&buf))
            .unwrap();
        let candidate = Prelookup::Hit(conns[1 - own].0, Dir::Original);
        let Ok(Some(Verdict::Tx(1, b))) = through_candidate(&mut dp, buf, candidate) else {
            panic!("flow {flow} not forwarded");
        };
        let reply = conns[own].2;
        assert_eq!(
            endpoints(&b),
            (reply.dst_ip(), reply.dport, reply.src_ip(), reply.sport),
            "flow {flow} left on its own connection"
        );
    }
}

/// A frame's TCP tuple, as the table keys it.
fn endpoints_tuple(b: &VecBuf) -> Tuple {
    let (src, sport, dst, dport) = endpoints(b);
    Tuple::new(src, sport, dst, dport, 6)
}

/// A real server's segment: the candidate goes straight to the hot path only if its entry
/// holds the tuple from the server's side, and only while the destination is still a local
/// address; a reply to one removed from the pools is handed back, as `established` hands it
/// back (`handle_with` decides).
#[test]
fn a_candidate_from_the_server_side_is_checked_before_the_hot_path() {
    let (mut dp, _, conns) = two_connections();
    let server_ack = |r: &Tuple| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
            .ipv4(r.src_ip().octets(), r.dst_ip().octets(), 64)
            .tcp(r.sport, r.dport, 5000, 64240)
            .ack(1001)
            .write(&mut f, &[])
            .unwrap();
        VecBuf::from_frame(&f)
    };
    for own in 0..2 {
        let (_, client, reply) = conns[own];
        let candidate = Prelookup::Hit(conns[1 - own].0, Dir::Reply);
        let Ok(Some(Verdict::Tx(0, b))) = through_candidate(&mut dp, server_ack(&reply), candidate)
        else {
            panic!("reply {own} not forwarded");
        };
        assert_eq!(
            endpoints(&b),
            (client.dst_ip(), client.dport, client.src_ip(), client.sport),
            "reply {own} left on its own connection"
        );
    }
    // The service keeps its VIP and real servers, its local addresses are all new.
    let lips: Vec<String> = (200..216).map(|i| format!("\"10.20.0.{i}\"")).collect();
    let text = crate::testkit::flows::bench_config().replace(&lips.join(", "), "\"10.20.0.250\"");
    let v = Config::parse(&text).unwrap().validate().unwrap();
    let old = dp.fwd.services().clone();
    let new = ServiceTable::new(old.generation + 1, v.services, Some(&old)).unwrap();
    let prepared = dp.fwd.prepare_services(Arc::new(new)).unwrap();
    dp.commit_services(prepared);
    for (id, _, reply) in &conns {
        let pre = Prelookup::Hit(*id, Dir::Reply);
        assert!(
            through_candidate(&mut dp, server_ack(reply), pre).is_err(),
            "a reply to a removed local address is handed back"
        );
    }
}

/// The lab's datapath with two connections opened by SYNs from client ports 40000 and 40001 (wrr
/// 1:1: one on each real server).
fn lab_with_two_conns() -> Datapath<VecBuf> {
    let mut dp: Datapath<VecBuf> = lab_datapath();
    for port in [40000, 40001] {
        assert!(tx(dp.process(client_tcp(port, true), &RxMeta::default())));
    }
    dp
}

/// A removed real server's traffic stays its service's, a removed service's the totals'
/// (`TrafficKey::retired`): nothing the worker publishes ever falls.
#[test]
fn a_removed_real_server_or_service_keeps_its_traffic_in_the_retired_counters() {
    let mut dp = lab_with_two_conns();
    let conns = |dp: &Datapath<VecBuf>, k: TrafficKey| {
        dp.fwd
            .traffic_entries()
            .find(|(x, _)| *x == k)
            .map_or(0, |(_, t)| t.conns)
    };
    let total = |dp: &Datapath<VecBuf>| dp.fwd.traffic_entries().map(|(_, t)| t.conns).sum();
    let vip = std::net::IpAddr::V4(Ipv4Addr::new(10, 10, 0, 100));
    let retired = TrafficKey::retired(6, vip, 80);
    assert_eq!((total(&dp), conns(&dp, retired)), (2, 0));
    // wrr 1:1 gave rs1 one of the two; it leaves the service.
    let s = snapshot(&dp, "[[service.real]]\naddress = \"10.20.0.12\"\n", false);
    dp.fwd.set_services(s).unwrap();
    assert_eq!(traffic_of(&dp, RS2).conns, 1);
    assert_eq!((total(&dp), conns(&dp, retired)), (2, 1));
    assert!(
        retired.is_retired()
            && !dp
                .fwd
                .traffic_entries()
                .any(|(k, _)| k.rip == RS1 && k.proto == 6)
    );
    // The TCP service goes: its traffic, rs2's and the retired, moves to the totals'.
    let text = LAB_CONFIG.replacen(
        "port = 80\nprotocol = \"tcp\"",
        "port = 81\nprotocol = \"tcp\"",
        1,
    );
    let v = Config::parse(&text).unwrap().validate().unwrap();
    let s = Arc::new(ServiceTable::new(2, v.services, Some(dp.fwd.services())).unwrap());
    dp.fwd.set_services(s).unwrap();
    assert_eq!(conns(&dp, TrafficKey::REMOVED_SERVICES), 2);
    assert_eq!((total(&dp), conns(&dp, retired)), (2, 0));
    // -Z (zero_traffic) zeroes the retired counters too.
    dp.fwd.zero_traffic();
    assert_eq!(total(&dp), 0);
}

/// A service the change leaves alone keeps its servers' traffic where a new one moves it to
/// another index: its counters move as one block with it (`remap_traffic`'s shared path).
#[test]
fn a_service_moved_by_a_change_keeps_its_traffic() {
    let mut dp = lab_with_two_conns();
    let before = (traffic_of(&dp, RS1), traffic_of(&dp, RS2));
    assert_eq!((before.0.conns, before.1.conns), (1, 1));
    let first = "[[service]]\nvip = \"10.10.0.100\"\nport = 80\nprotocol = \"tcp\"";
    let added = "[[service]]\nvip = \"10.10.0.101\"\nport = 81\nprotocol = \"tcp\"\n\
                 local_addresses = [\"10.20.0.202\"]\n[[service.real]]\naddress = \"10.20.0.13\"\n\n";
    let text = LAB_CONFIG.replacen(first, &format!("{added}{first}"), 1);
    let v = Config::parse(&text).unwrap().validate().unwrap();
    let old = dp.fwd.services().clone();
    let new = Arc::new(ServiceTable::new(2, v.services, Some(&old)).unwrap());
    assert!(
        Arc::ptr_eq(&old.services[0].svc, &new.services[1].svc),
        "the TCP service is shared, one place further"
    );
    dp.fwd.set_services(new).unwrap();
    assert_eq!((traffic_of(&dp, RS1), traffic_of(&dp, RS2)), before);
    // The table was handed the change, not walked (`conn::rebind`): the connections it carries
    // still count on their servers, each following the change as its packet comes.
    assert!(dp.fwd.table().rebinding());
    assert_eq!((dp.fwd.stats.rebinds, dp.fwd.stats.rebinds_hurried), (1, 0));
    assert!(tx(dp.process(client_tcp(40000, false), &RxMeta::default())));
    let after = traffic_of(&dp, RS1).inpkts + traffic_of(&dp, RS2).inpkts;
    assert_eq!(after, before.0.inpkts + before.1.inpkts + 1);
    // The worker's walk ends it, a slice a round; then as before.
    let mut rounds = 0;
    while dp.rebind_step(false) {
        rounds += 1;
        assert!(rounds <= dp.fwd.table().capacity(), "the walk does not end");
    }
    assert!(!dp.fwd.table().rebinding());
    assert_eq!(rounds, dp.fwd.table().capacity().div_ceil(1024));
    assert!(tx(dp.process(client_tcp(40001, false), &RxMeta::default())));
    let walked = traffic_of(&dp, RS1).inpkts + traffic_of(&dp, RS2).inpkts;
    assert_eq!(walked, after + 1);
    // Two changes before the walk ends, neither undoing the other: two services put before the
    // rest (the TCP service from 1 to 3), then one of them removed (to 2). Both followed, in
    // order, no walk hurried: with either map alone, or both in the other order, its connections
    // would count on another service, or on none.
    let svc = |last: u8, lip: u8| {
        format!(
            "[[service]]\nvip = \"10.10.0.{last}\"\nport = 82\nprotocol = \"tcp\"\n\
             local_addresses = [\"10.20.0.{lip}\"]\n[[service.real]]\naddress = \"10.20.0.13\"\n\n"
        )
    };
    let (s102, s103) = (svc(102, 203), svc(103, 204));
    let change = |dp: &mut Datapath<VecBuf>, gen: u64, text: &str| {
        let v = Config::parse(text).unwrap().validate().unwrap();
        let s = ServiceTable::new(gen, v.services, Some(dp.fwd.services())).unwrap();
        dp.fwd.set_services(Arc::new(s)).unwrap();
    };
    change(
        &mut dp,
        3,
        &LAB_CONFIG.replacen(first, &format!("{s102}{s103}{added}{first}"), 1),
    );
    change(
        &mut dp,
        4,
        &LAB_CONFIG.replacen(first, &format!("{s102}{added}{first}"), 1),
    );
    assert!(dp.fwd.table().rebinding());
    assert_eq!((dp.fwd.stats.rebinds, dp.fwd.stats.rebinds_hurried), (3, 0));
    let tcp = dp.fwd.services().services[2].svc.config();
    assert_eq!(
        (tcp.vip, tcp.vport),
        (VIP.into(), 80),
        "the TCP service at 2"
    );
    assert!(tx(dp.process(client_tcp(40000, false), &RxMeta::default())));
    let last = traffic_of(&dp, RS1).inpkts + traffic_of(&dp, RS2).inpkts;
    assert_eq!(last, walked + 1);
    // A worker whose receive burst came back full walks a sixteenth as far a round
    // (`REBIND_SLICE_BUSY`), so that the packets waiting are not kept waiting by the walk.
    let mut busy_rounds = 0;
    while dp.rebind_step(true) {
        busy_rounds += 1;
        assert!(
            busy_rounds <= dp.fwd.table().capacity(),
            "the walk does not end"
        );
    }
    assert_eq!(
        busy_rounds,
        dp.fwd
            .table()
            .capacity()
            .div_ceil(crate::datapath::REBIND_SLICE_BUSY as usize)
    );
    const { assert!(crate::datapath::REBIND_SLICE_BUSY < crate::datapath::REBIND_SLICE_IDLE) };
}

/// An access list's counts stay with its service through a change that moves it, and start
/// again from zero when its list changes.
#[test]
fn access_list_hits_follow_their_service_until_the_list_changes() {
    let tcp = "port = 80\nprotocol = \"tcp\"\nscheduler = \"wrr\"";
    let with_acl = |acl: &str| LAB_CONFIG.replacen(tcp, &format!("{tcp}\nacl = [{acl}]"), 1);
    let text = with_acl("\"allow 10.10.0.0/24\"");
    assert_ne!(text, LAB_CONFIG);
    let mut dp: Datapath<VecBuf> = datapath_from(&text, 0, 1, 1024);
    assert!(tx(dp.process(client_tcp(40000, true), &RxMeta::default())));
    let hits = |dp: &Datapath<VecBuf>| -> Vec<Vec<u64>> {
        dp.fwd.acl_entries().map(|(_, h)| h.to_vec()).collect()
    };
    assert_eq!(hits(&dp), [vec![1, 0]]);
    let change = |dp: &mut Datapath<VecBuf>, text: &str| {
        let v = Config::parse(text).unwrap().validate().unwrap();
        let old = dp.fwd.services().clone();
        let new = ServiceTable::new(old.generation + 1, v.services, Some(&old)).unwrap();
        dp.fwd.set_services(Arc::new(new)).unwrap();
    };
    // A service before it: the list's service moves one place on, its counts with it.
    let first = "[[service]]\nvip = \"10.10.0.100\"\nport = 80\nprotocol = \"tcp\"";
    let added = "[[service]]\nvip = \"10.10.0.101\"\nport = 81\nprotocol = \"tcp\"\n\
                 local_addresses = [\"10.20.0.202\"]\n[[service.real]]\naddress = \"10.20.0.13\"\n\n";
    let moved = text.replacen(first, &format!("{added}{first}"), 1);
    change(&mut dp, &moved);
    assert_eq!(hits(&dp), [vec![1, 0]]);
    let relisted = moved.replacen("\"allow 10.10.0.0/24\"", "\"allow 10.10.0.0/16\"", 1);
    change(&mut dp, &relisted);
    assert_eq!(hits(&dp), [vec![0, 0]], "a changed list counts from zero");
}

/// The worker lists its traffic in key order without sorting it at each publishing
/// (`traffic_order`, sorted once a snapshot): whatever the snapshot's order of the real servers,
/// and each key holds its own server's counts.
#[test]
fn traffic_is_listed_in_key_order_whatever_the_snapshots_order() {
    let meta = RxMeta::default();
    let mut dp: Datapath<VecBuf> = lab_datapath();
    assert!(tx(dp.process(client_tcp(40000, true), &meta)));
    assert_eq!(
        (traffic_of(&dp, RS1).conns, traffic_of(&dp, RS2).conns),
        (1, 0)
    );
    let s = snapshot(
        &dp,
        "[[service.real]]\naddress = \"10.20.0.12\"\n[[service.real]]\naddress = \"10.20.0.11\"\n",
        false,
    );
    dp.fwd.set_services(s).unwrap();
    let keys: Vec<TrafficKey> = dp.fwd.traffic_entries().map(|(k, _)| k).collect();
    assert!(
        keys.len() >= 2 && keys.windows(2).all(|w| w[0] < w[1]),
        "{keys:?}"
    );
    assert_eq!(
        (traffic_of(&dp, RS1).conns, traffic_of(&dp, RS2).conns),
        (1, 0)
    );
    // wrr, rs2 first now: the next connection is rs2's, counted on rs2's key.
    assert!(tx(dp.process(client_tcp(40001, true), &meta)));
    assert_eq!(
        (traffic_of(&dp, RS1).conns, traffic_of(&dp, RS2).conns),
        (1, 1)
    );
}

#[test]
fn reordered_real_servers_keep_their_connections_mapped_by_identity() {
    let meta = RxMeta {
        port: 0,
        ..Default::default()
    };
    let mut dp: Datapath<VecBuf> = lab_datapath();
    assert!(tx(dp.process(client_tcp(40000, true), &meta)));
    let before = dp.fwd.table().iter().next().unwrap().1.rs;
    let s = snapshot(
        &dp,
        "[[service.real]]\naddress = \"10.20.0.12\"\n[[service.real]]\naddress = \"10.20.0.11\"\n",
        false,
    );
    dp.fwd.set_services(s).unwrap();
    let after = dp.fwd.table().iter().next().unwrap().1.rs;
    assert_eq!((before, after), (0, 1), "rs1 moved from index 0 to 1");
    assert!(tx(dp.process(client_tcp(40000, false), &meta)));
}

/// The lab datapath with `syn_retry` on its TCP service (or not).
fn retry_datapath(retry: bool) -> Datapath<VecBuf> {
    let text = LAB_CONFIG.replacen(
        "scheduler = \"wrr\"",
        &format!("scheduler = \"wrr\"\nsyn_retry = {retry}"),
        1,
    );
    datapath_from(&text, 0, 1, 1 << 16)
}

/// A client SYN through `dp`: the real server and local port it went to.
fn syn_out(dp: &mut Datapath<VecBuf>, sport: u16) -> (Ipv4Addr, Ipv4Addr, u16) {
    let meta = RxMeta::default();
    match dp.process(client_tcp(sport, true), &meta) {
        Verdict::Tx(1, b) => {
            let d = b.data();
            let ip = |o: usize| Ipv4Addr::from(<[u8; 4]>::try_from(&d[o..o + 4]).unwrap());
            (ip(30), ip(26), u16::from_be_bytes([d[34], d[35]]))
        }
        v => panic!("SYN not forwarded: {v:?}"),
    }
}

/// The real server `rs`'s answer to the SYN it got from `lip:lport`: a SYN-ACK or a RST.
fn server_answer(rs: Ipv4Addr, lip: Ipv4Addr, lport: u16, refuse: bool) -> VecBuf {
    let mac = if rs == RS1 { RS1_MAC } else { RS2_MAC };
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(mac.0, SERVER_PORT_MAC.0)
        .ipv4(rs.octets(), lip.octets(), 64)
        .tcp(80, lport, 5000, 64240);
    if refuse {
        b.rst().ack(1001)
    } else {
        b.syn().ack(1001)
    }
    .write(&mut v, &[])
    .unwrap();
    VecBuf::from_frame(&v)
}

fn traffic_of(dp: &Datapath<VecBuf>, rs: Ipv4Addr) -> Traffic {
    dp.fwd
        .traffic_entries()
        .find(|(k, _)| k.rip == rs && k.proto == 6)
        .unwrap()
        .1
}

fn from_server() -> RxMeta {
    RxMeta {
        port: 1,
        ..Default::default()
    }
}

#[test]
fn a_refused_syn_is_retried_once_on_another_server() {
    let mut dp = retry_datapath(true);
    let (first, lip, lport) = syn_out(&mut dp, 40000);
    let v = dp.process(server_answer(first, lip, lport, true), &from_server());
    assert!(
        matches!(
            v,
            Verdict::Drop(crate::stats::DropReason::Dp(Drop::RstHeldForRetry), _)
        ),
        "the refusal is not passed to the client: {v:?}"
    );
    // The client's retransmission goes to the other server, as a new connection.
    let (second, lip2, lport2) = syn_out(&mut dp, 40000);
    assert_ne!(second, first, "never the server that refused");
    assert_eq!(dp.fwd.stats.syn_retried, 1);
    assert_eq!(traffic_of(&dp, first).syn_refused, 1);
    // Once only: the second server's refusal reaches the client.
    let v = dp.process(server_answer(second, lip2, lport2, true), &from_server());
    assert!(matches!(v, Verdict::Tx(0, _)), "{v:?}");
    assert_eq!(traffic_of(&dp, second).syn_refused, 1);
    syn_out(&mut dp, 40000);
    assert_eq!(dp.fwd.stats.syn_retried, 1, "not retried a second time");
}

/// A refusal held back for a retry shows its server there: the client's SYN that it brings does
/// not make the server's neighbour suspect (no ARP probe, `unanswered_server`).
#[test]
fn a_held_refusal_confirms_its_servers_neighbour() {
    let mut dp = retry_datapath(true);
    dp.l3.now_ms = 10_000;
    let (first, lip, lport) = syn_out(&mut dp, 40000);
    dp.l3.now_ms = 10_100;
    dp.process(server_answer(first, lip, lport, true), &from_server());
    dp.l3.take_generated(|_| {});
    dp.l3.now_ms = 11_000;
    syn_out(&mut dp, 40000);
    let mut arp = 0;
    dp.l3
        .take_generated(|g| arp += usize::from(g.bytes()[12..14] == [0x08, 0x06]));
    assert_eq!(dp.fwd.stats.syn_retried, 1);
    assert_eq!((arp, dp.l3.neigh().counters.suspected), (0, 0));
}

/// A retry is the client's first attempt, not a new connection: a client limit that admitted
/// it does not refuse it (refused, the client would see the very RST the retry held back).
#[test]
fn a_retry_is_not_refused_by_the_limit_that_admitted_its_first_attempt() {
    let text = LAB_CONFIG.replacen(
        "scheduler = \"wrr\"",
        "scheduler = \"wrr\"\nsyn_retry = true\nclient_limit = { rate = 1, max_conns = 1, action = \"rst\" }",
        1,
    );
    let mut dp: Datapath<VecBuf> = datapath_from(&text, 0, 1, 1 << 16);
    dp.l3.now_ms = 10_000;
    let (first, lip, lport) = syn_out(&mut dp, 40000);
    let v = dp.process(server_answer(first, lip, lport, true), &from_server());
    assert!(matches!(v, Verdict::Drop(..)), "{v:?}");
    let (second, _, _) = syn_out(&mut dp, 40000);
    assert_ne!(second, first);
    assert_eq!(dp.fwd.stats.syn_retried, 1);
    assert_eq!(dp.fwd.stats.rst_sent, 0);
    // The limit still holds for a new connection: one open, none over the rate.
    let v = dp.process(client_tcp(40001, true), &RxMeta::default());
    assert!(matches!(v, Verdict::Drop(..)), "{v:?}");
}

#[test]
fn without_retry_a_refusal_reaches_the_client_and_is_counted_until_an_answer() {
    let mut dp = retry_datapath(false);
    // wrr over two servers at weight 1: connections alternate; refuse the first two on rs1.
    let mut refused = 0;
    for sport in 40000..40004 {
        let (rs, lip, lport) = syn_out(&mut dp, sport);
        let refuse = rs == RS1;
        let v = dp.process(server_answer(rs, lip, lport, refuse), &from_server());
        assert!(matches!(v, Verdict::Tx(0, _)), "{v:?}");
        refused += usize::from(refuse);
    }
    assert_eq!(refused, 2);
    let t = traffic_of(&dp, RS1);
    assert_eq!((t.syn_refused, t.fail_streak, t.syn_answered), (2, 2, 0));
    assert_eq!(traffic_of(&dp, RS2).syn_answered, 2);
    assert_eq!(dp.fwd.stats.syn_retried, 0);
    // rs1 answers the next one: its streak ends.
    let (rs, lip, lport) = syn_out(&mut dp, 40010);
    assert_eq!(rs, RS1);
    dp.process(server_answer(rs, lip, lport, false), &from_server());
    let t = traffic_of(&dp, RS1);
    assert_eq!((t.syn_refused, t.fail_streak, t.syn_answered), (2, 0, 1));
}

#[test]
fn an_unanswered_syn_fails_once_the_client_retransmits_it_late_enough() {
    for retry in [false, true] {
        let mut dp = retry_datapath(retry);
        dp.l3.now_ms = 10_000;
        let (first, _, _) = syn_out(&mut dp, 40000);
        // An early retransmission (below `syn_unanswered_ms`, 900): nothing failed yet.
        dp.l3.now_ms = 10_500;
        assert_eq!(syn_out(&mut dp, 40000).0, first);
        assert_eq!(traffic_of(&dp, first).syn_unanswered, 0);
        // Linux's first retransmission, 1 s after the SYN.
        dp.l3.now_ms = 11_000;
        let (rs, _, _) = syn_out(&mut dp, 40000);
        let t = traffic_of(&dp, first);
        assert_eq!((t.syn_unanswered, t.fail_streak), (1, 1));
        if retry {
            assert_ne!(rs, first);
            assert_eq!(dp.fwd.stats.syn_retried, 1);
        } else {
            assert_eq!(rs, first);
            // Counted once per connection.
            dp.l3.now_ms = 13_000;
            syn_out(&mut dp, 40000);
            assert_eq!(traffic_of(&dp, first).syn_unanswered, 1);
        }
    }
}

#[test]
fn a_syn_left_unanswered_until_it_expires_is_a_failure() {
    let mut dp = retry_datapath(false);
    let (first, _, _) = syn_out(&mut dp, 40000);
    dp.tick(1000 * 120);
    assert_eq!(dp.fwd.table().len(), 0);
    assert_eq!(traffic_of(&dp, first).syn_unanswered, 1);
}

#[test]
fn a_refusal_no_other_server_could_take_reaches_the_client_at_once() {
    // rs2 at weight 0: a retry would find nobody.
    let text = LAB_CONFIG
        .replacen(
            "scheduler = \"wrr\"",
            "scheduler = \"wrr\"\nsyn_retry = true",
            1,
        )
        .replacen(
            "address = \"10.20.0.12\"",
            "address = \"10.20.0.12\"\nweight = 0",
            1,
        );
    let mut dp = datapath_from(&text, 0, 1, 1 << 16);
    let (rs, lip, lport) = syn_out(&mut dp, 40000);
    assert_eq!(rs, RS1);
    let v = dp.process(server_answer(rs, lip, lport, true), &from_server());
    assert!(matches!(v, Verdict::Tx(0, _)), "{v:?}");
    assert_eq!(traffic_of(&dp, RS1).syn_refused, 1, "still counted");
}

/// The lab datapath with its TCP service's real servers in DR.
fn dr_datapath() -> Datapath<VecBuf> {
    let fullnat =
        "[[service.real]]\naddress = \"10.20.0.11\"\n[[service.real]]\naddress = \"10.20.0.12\"\n";
    let dr = "[[service.real]]\naddress = \"10.20.0.11\"\nmode = \"dr\"\n[[service.real]]\naddress = \"10.20.0.12\"\nmode = \"dr\"\n";
    // The TCP service is the first.
    datapath_from(&LAB_CONFIG.replacen(fullnat, dr, 1), 0, 1, 1 << 16)
}

/// The ARP probes `dp` has sent since last asked: (port, destination MAC, target).
fn arp_probes(dp: &mut Datapath<VecBuf>) -> Vec<(u16, MacAddr, Ipv4Addr)> {
    let mut probes = Vec::new();
    dp.l3.take_generated(|g| {
        let f = g.bytes();
        if !g.to_twin && f[12..14] == [0x08, 0x06] {
            let a = crate::wire::ArpPacket::new_checked(&f[14..]).unwrap();
            probes.push((g.port, MacAddr(f[..6].try_into().unwrap()), a.tpa()));
        }
    });
    probes
}

/// DR's answers bypass the gateway, so only the answers to its probes confirm a DR server's
/// neighbour. A client's SYN sent again in SYN_RECV doubts it (a unicast probe), but not when
/// it was confirmed less than a SYN's least retransmission time (1 s) before: with many
/// clients waiting on a busy server, every retransmission probed it, each right after the
/// last probe's answer.
#[test]
fn a_dr_syn_sent_again_probes_its_server_at_most_once_a_retransmission_time() {
    let mut dp = dr_datapath();
    dp.l3.now_ms = 10_000;
    let server_mac = |v: Verdict<VecBuf>| match v {
        Verdict::Tx(1, b) => MacAddr(b.data()[..6].try_into().unwrap()),
        v => panic!("not sent to a server: {v:?}"),
    };
    let mac = server_mac(dp.process(client_tcp(40000, true), &RxMeta::default()));
    let rs = if mac == RS1_MAC { RS1 } else { RS2 };
    // The next connection goes to the other server (round robin), the one after to `rs`.
    assert_ne!(
        server_mac(dp.process(client_tcp(40001, true), &RxMeta::default())),
        mac
    );
    assert_eq!(arp_probes(&mut dp), vec![]);
    dp.l3.now_ms = 11_000;
    server_mac(dp.process(client_tcp(40000, true), &RxMeta::default()));
    assert_eq!(arp_probes(&mut dp), vec![(1, mac, rs)], "doubted");
    // The server answers the probe.
    dp.l3.now_ms = 11_010;
    let mut reply = [0u8; 60];
    crate::wire::arp::write_request_to(&mut reply, SERVER_PORT_MAC, mac, rs, GW_SERVER_IP).unwrap();
    {
        let mut a = crate::wire::ArpPacket::new_unchecked(&mut reply[14..]);
        a.set_op(crate::wire::ArpOp::REPLY);
        a.set_tha(SERVER_PORT_MAC);
    }
    dp.process(VecBuf::from_frame(&reply), &from_server());
    // Another client's SYN sent again within the second: confirmed since it was first sent.
    dp.l3.now_ms = 11_500;
    let to_rs = |v| assert_eq!(server_mac(v), mac);
    to_rs(dp.process(client_tcp(40002, true), &RxMeta::default()));
    dp.l3.now_ms = 12_000;
    to_rs(dp.process(client_tcp(40000, true), &RxMeta::default()));
    to_rs(dp.process(client_tcp(40002, true), &RxMeta::default()));
    assert_eq!(arp_probes(&mut dp), vec![], "confirmed after both SYNs");
    assert_eq!(dp.l3.neigh().counters.suspected, 1);
    // Silent again for longer than that: doubted again.
    dp.l3.now_ms = 14_000;
    server_mac(dp.process(client_tcp(40000, true), &RxMeta::default()));
    assert_eq!(arp_probes(&mut dp), vec![(1, mac, rs)]);
    assert_eq!(dp.l3.neigh().counters.suspected, 2);
}

/// An established connection whose server's answers never passed here (`user2` 0: an entry a
/// peer's sync or a restore made before the server's first reply; here, a client's ACK that
/// establishes it unanswered) keeps its client's last ACK all the same, on the hot path and on
/// the general path: the RST sent to the client when the connection expires carries it as its
/// sequence number, in the client's window, not the entry's creation time.
#[test]
fn an_established_connection_unanswered_here_resets_its_client_in_its_window() {
    let client_ack = |ack: u32| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
            .tcp(40000, 80, 1001, 64240)
            .ack(ack)
            .write(&mut v, &[])
            .unwrap();
        VecBuf::from_frame(&v)
    };
    for fast in [true, false] {
        let (first, last) = (0x1234_5678, 0x1234_9999);
        let mut dp = retry_datapath(false);
        dp.set_fast_path(fast);
        dp.l3.now_ms = 50_000;
        syn_out(&mut dp, 40000);
        // The first establishes the connection (the general path), the last takes the hot
        // path in a burst, or with the fast path off the general path again.
        assert!(tx(dp.process(client_ack(first), &RxMeta::default())));
        let hot = dp.l3.stats.fast_path;
        let mut out = [None];
        dp.process_burst(
            &mut [Some(client_ack(last))],
            &[RxMeta::default()],
            &mut out,
        );
        assert!(matches!(out[0], Some(Verdict::Tx(1, _))), "{:?}", out[0]);
        assert_eq!(dp.l3.stats.fast_path, hot + u64::from(fast), "the hot path");
        dp.l3.take_generated(|_| {});
        dp.tick(50_000 + 1000 * 3600);
        assert_eq!(dp.fwd.table().len(), 0, "expired");
        let mut seqs = Vec::new();
        dp.l3.take_generated(|g| {
            let p = etherparse::SlicedPacket::from_ethernet(g.bytes()).unwrap();
            if let (
                Some(etherparse::NetSlice::Ipv4(ip)),
                Some(etherparse::TransportSlice::Tcp(t)),
            ) = (&p.net, &p.transport)
            {
                if ip.header().destination_addr() == CLIENT_IP && t.rst() {
                    seqs.push((t.destination_port(), t.sequence_number()));
                }
            }
        });
        assert_eq!(seqs, [(40000, last)], "fast path {fast}");
    }
}
