//! Replays the datapath fuzz corpus (`fuzz/corpus/datapath/`) with plain `cargo test`, so CI checks
//! every seed and every crash reproducer without cargo-fuzz or a nightly toolchain. The framing
//! and the invariants are the fuzz target's own (`fuzz/src/framing.rs`, included below).
//!
//! The seed corpus is generated here: `GATEWAY_WRITE_CORPUS=1 cargo test -p gateway --test
//! fuzz_replay` rewrites the seed files; without it the test checks that the committed files are
//! exactly what the generator makes.

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use gateway::testkit::*;
use gateway::wire::{arp, Ipv4Packet, MacAddr};
use std::net::Ipv4Addr;
use std::path::PathBuf;

include!("../../fuzz/src/framing.rs");

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/datapath")
}

/// The harness's own allowance: a plain ACK with a bad L4 checksum may go out only forwarded from
/// a frame that had it, never built by the gateway nor broken on the way.
#[test]
fn a_bad_l4_checksum_is_allowed_only_on_a_plain_ack_that_came_in_with_it() {
    let good = tcp(C, (CLIENT_IP, 40000), (VIP, 80), "A", 1001, 5001, b"x");
    let mut bad = good.clone();
    bad[gateway::testkit::flows::TCP_CSUM] ^= 0x5a;
    let fails = |frame: &[u8], origin: Origin| {
        std::panic::catch_unwind(|| check_emitted("t", frame, origin)).is_err()
    };
    assert!(!fails(&good, Origin::Generated));
    assert!(!fails(&bad, Origin::Forwarded(Some(&bad))));
    assert!(!fails(&bad, Origin::Forwarded(None)));
    assert!(fails(&bad, Origin::Generated), "built by the gateway");
    assert!(
        fails(&bad, Origin::Forwarded(Some(&good))),
        "broken on the way"
    );
    assert!(
        fails(&bad, Origin::Forwarded(Some(b"not a frame"))),
        "from a frame that does not parse"
    );
    let mut fin = tcp(C, (CLIENT_IP, 40000), (VIP, 80), "AF", 1001, 5001, b"");
    fin[gateway::testkit::flows::TCP_CSUM] ^= 0x5a;
    assert!(
        fails(&fin, Origin::Forwarded(Some(&fin))),
        "not a plain ACK"
    );
}

#[test]
fn framing_round_trips() {
    let a = Record {
        port: 1,
        from_peer: true,
        worker: 1,
        advance_ms: 31 * TICK_STEP_MS,
        frame: b"abc",
    };
    let b = Record {
        port: 0,
        from_peer: false,
        worker: 0,
        advance_ms: 0,
        frame: b"",
    };
    let mut v = Vec::new();
    a.encode(&mut v);
    b.encode(&mut v);
    assert_eq!(v[..3], [0, 3, 0xFF]);
    assert_eq!(Records(&v).collect::<Vec<_>>(), vec![a, b]);
    // A length running past the input is cut short; a trailing piece under 3 bytes is ignored.
    let cut = [0xFF, 0xFF, 0x00, 1, 2];
    let r: Vec<_> = Records(&cut).collect();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].frame, &[1, 2]);
    assert_eq!(Records(&[0, 0]).count(), 0);
    assert_eq!(Records(&[]).count(), 0);
}

#[test]
fn every_corpus_file_replays_without_breaking_an_invariant() {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("fuzz/corpus/datapath exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "the seed corpus has {} files",
        files.len()
    );
    let mut frames = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let o = std::panic::catch_unwind(|| check_input(&data))
            .unwrap_or_else(|_| panic!("{} breaks the datapath", f.display()));
        assert_eq!(
            o.frames + o.sync_messages + o.changes,
            Records(&data).count() as u64,
            "{}",
            f.display()
        );
        frames += o.frames;
    }
    assert!(frames > 100, "only {frames} frames in the corpus");
}

/// Each configuration a change record can commit is the change its text says: the services, in
/// order, as (VIP:port/protocol, real servers, scheduler, local addresses), compared with the
/// fuzz config's.
#[test]
fn change_variants_are_the_changes_they_say() {
    use gateway::forward::ServiceTable;
    let services = |k: u8| -> Vec<String> {
        let t = ServiceTable::new(1, variant(k).1.services.clone(), None).unwrap();
        t.services
            .iter()
            .map(|vs| {
                let c = vs.svc.config();
                let reals: Vec<String> = vs
                    .svc
                    .reals()
                    .iter()
                    .map(|r| format!("{}/{}", r.key().addr, r.weight))
                    .collect();
                format!(
                    "{}:{}/{} {} {} {:?}",
                    c.vip,
                    c.vport,
                    c.proto,
                    reals.join(","),
                    c.sched,
                    vs.lips
                )
            })
            .collect()
    };
    let base = services(0);
    let (tcp, udp) = (base[0].clone(), base[1].clone());
    assert!(
        tcp.starts_with("10.10.0.100:80/tcp 10.20.0.11/1,10.20.0.12/1 "),
        "{tcp}"
    );
    assert!(udp.starts_with("10.10.0.100:80/udp "), "{udp}");
    let with = |k: u8, f: &dyn Fn(&mut Vec<String>)| {
        let mut want = base.clone();
        f(&mut want);
        assert_eq!(services(k), want, "variant {k}");
    };
    with(1, &|v| v[0] = tcp.replace("10.20.0.11/1,", ""));
    with(2, &|v| {
        v[0] = tcp.replace("10.20.0.11/1,10.20.0.12/1", "10.20.0.13/2,10.20.0.12/3")
    });
    with(3, &|v| {
        v.remove(1);
    });
    with(4, &|v| {
        let proxied: Vec<String> = v.iter().filter(|s| s.contains(":8081/")).cloned().collect();
        assert_eq!(proxied.len(), 2);
        v.retain(|s| !s.contains(":8081/"));
        v.insert(0, proxied[0].clone());
        v.insert(0, proxied[1].clone());
    });
    with(5, &|v| {
        v.remove(0);
    });
    with(6, &|v| {
        let dr = v
            .iter_mut()
            .find(|s| s.starts_with("2001:db8:10::100:80/tcp"))
            .unwrap();
        *dr = dr.replace("2001:db8:20::11/1,", "");
    });
    with(7, &|v| {
        v.swap(0, 1);
        v[1] = tcp.replace(" wrr", " lc");
    });
    with(8, &|v| v[0] = tcp.replace("10.20.0.201]", "10.20.0.202]"));
    with(RETIRING_VARIANT, &|v| {
        v[0] = tcp.replace("10.20.0.201]", "10.20.0.202]");
        v[1] = udp.replace("10.20.0.201]", "10.20.0.202]");
    });
    let retiring = |k: u8| -> Vec<Vec<Ipv4Addr>> {
        let t = ServiceTable::new(1, variant(k).1.services.clone(), None).unwrap();
        t.services
            .iter()
            .map(|vs| vs.retiring_lips.clone())
            .collect()
    };
    let r9 = retiring(RETIRING_VARIANT);
    assert_eq!(
        r9[..2],
        [vec![RETIRED_LIP], vec![RETIRED_LIP]],
        "variant 9 keeps it retiring"
    );
    assert!(
        r9[2..].iter().all(Vec::is_empty),
        "only the services that had it: {r9:?}"
    );
    assert!(
        retiring(8).iter().all(Vec::is_empty),
        "variant 8 lets it go"
    );
    assert!(
        udp.contains("10.20.0.201]"),
        "the UDP service keeps the address: {udp}"
    );
}

/// What a seed must do when replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A valid exchange: nothing dropped.
    NoDrop,
    /// Malformed or unwanted: every frame dropped, nothing sent.
    AllDropped,
    /// Some dropped, some not (e.g. a table filling up).
    SomeDropped,
    /// Not for the datapath: every frame sent up to the port's kernel twin, nothing else.
    AllPunted,
}

/// Builds a seed while simulating it on the same datapaths the runner uses, so that records can
/// answer what the datapath chose (the local port of a connection).
struct Script {
    dps: [gateway::datapath::Datapath<VecBuf>; 2],
    bytes: Vec<u8>,
    /// The runner's sync receiver, and the peer's next sequence number.
    opener: gateway::sync::wire::Opener,
    sync_seq: u64,
    changes: Changes,
}

impl Script {
    fn new() -> Script {
        Script {
            dps: fuzz_datapaths(),
            bytes: Vec::new(),
            opener: gateway::sync::wire::Opener::new(FUZZ_SYNC_KEY),
            sync_seq: 1,
            changes: Changes::default(),
        }
    }

    /// Adds a configuration change to variant `k` with walk choice `walk` (an index into
    /// `WALKS`), and applies it as the runner does (the script walks after each record, the
    /// runner after each group and tick: how far a walk has gone changes no verdict).
    fn change(&mut self, k: u8, walk: u8) {
        let mut frame = CHANGE_MAGIC.to_vec();
        frame.extend([k, walk]);
        Record {
            port: 0,
            from_peer: false,
            worker: 0,
            advance_ms: 0,
            frame: &frame,
        }
        .encode(&mut self.bytes);
        assert_eq!(apply_change(&mut self.dps, &mut self.changes, &frame), k);
    }

    /// Adds a sync message from the HA peer carrying `records` (one family's, few enough for
    /// one message), delivered to `worker`, and applies it as the runner does; returns the
    /// records applied.
    fn sync(&mut self, worker: usize, records: &[gateway::conn::record::ConnRecord]) -> u64 {
        let mut m = gateway::sync::wire::Sealer::new(FUZZ_SYNC_KEY, 9, self.sync_seq)
            .records(records)
            .remove(0);
        self.sync_seq += 1;
        // The runner adds the MAC.
        m.truncate(m.len() - gateway::sync::wire::MAC_LEN);
        Record {
            port: 0,
            from_peer: false,
            worker,
            advance_ms: 0,
            frame: &m,
        }
        .encode(&mut self.bytes);
        sync_message(&mut self.dps, &mut self.opener, worker, &m)
    }

    /// Adds a record and runs it; returns the frame sent if the datapath (after any hand-over)
    /// transmitted it.
    fn push(&mut self, worker: usize, port: u16, advance_ms: u64, frame: &[u8]) -> Option<Vec<u8>> {
        Record {
            port,
            from_peer: false,
            worker,
            advance_ms,
            frame,
        }
        .encode(&mut self.bytes);
        // Same order as `run_input`: tick, then process.
        if advance_ms > 0 {
            let now = self.dps[0].l3.now_ms + advance_ms;
            for dp in self.dps.iter_mut() {
                dp.tick(now);
                dp.l3.take_generated(|_| {});
            }
        }
        let meta = RxMeta {
            port,
            ..Default::default()
        };
        let peer = RxMeta {
            from_peer: true,
            ..meta
        };
        let mut out = self.dps[worker].process(VecBuf::from_frame(frame), &meta);
        // Twice at most: a fragment to its datagram's home, then to its connection's owner.
        for _ in 0..2 {
            if let Verdict::ToWorker(to, b) = out {
                out = self.dps[usize::from(to)].process(b, &peer);
            }
        }
        for dp in self.dps.iter_mut() {
            dp.l3.take_generated(|_| {});
            dp.take_deferred();
        }
        walk_step(&mut self.dps, &self.changes);
        match out {
            Verdict::Tx(_, b) => Some(b.data().to_vec()),
            _ => None,
        }
    }

    fn client(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        self.push(0, 0, 0, frame)
    }

    fn server(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        self.push(0, 1, 0, frame)
    }
}

/// A TCP segment; `flags` in tcpdump letters (S A F R P).
fn tcp(
    macs: (MacAddr, MacAddr),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: &str,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, seq, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(ack),
            'F' => b.fin(),
            'R' => b.rst(),
            'P' => b.psh(),
            _ => panic!("flag {f}"),
        };
    }
    if flags.contains('S') {
        b = b
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn udp(
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

fn ping(macs: (MacAddr, MacAddr), src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(0x1234, 1)
        .write(&mut v, b"abcdefgh")
        .unwrap();
    v
}

/// An ICMP destination-unreachable from `src` to `dst` quoting the start of `quoted` (an
/// Ethernet frame).
fn icmp_unreachable(
    macs: (MacAddr, MacAddr),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    quoted: &[u8],
) -> Vec<u8> {
    let q = &quoted[14..14 + 28];
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut v, q)
        .unwrap();
    v
}

fn arp_frame(
    op_reply: bool,
    sha: MacAddr,
    spa: Ipv4Addr,
    tha: MacAddr,
    tpa: Ipv4Addr,
    dst: MacAddr,
) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    arp::write_request(&mut f, sha, spa, tpa).unwrap();
    f[0..6].copy_from_slice(&dst.0);
    if op_reply {
        f[14 + 7] = 2;
        f[14 + 18..14 + 24].copy_from_slice(&tha.0);
    }
    f
}

const C: (MacAddr, MacAddr) = (CLIENT_MAC, CLIENT_PORT_MAC);
const CPORT: u16 = 40000;

fn refill_ip(f: &mut [u8]) {
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
}

/// The (LIP, RS, lport) a forwarded SYN went out with.
fn fullnat_of(out: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16) {
    let p = SlicedPacket::from_ethernet(out).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!()
        };
        return (
            ip.header().source().into(),
            ip.header().destination().into(),
            u.source_port(),
        );
    };
    (
        ip.header().source().into(),
        ip.header().destination().into(),
        t.source_port(),
    )
}

fn rs_macs(rs: Ipv4Addr) -> (MacAddr, MacAddr) {
    (if rs == RS1 { RS1_MAC } else { RS2_MAC }, SERVER_PORT_MAC)
}

/// SYN and SYN-ACK: returns (LIP, RS, lport).
fn handshake(s: &mut Script, cport: u16) -> (Ipv4Addr, Ipv4Addr, u16) {
    let out = s
        .client(&tcp(C, (CLIENT_IP, cport), (VIP, 80), "S", 1000, 0, b""))
        .expect("SYN forwarded");
    let (lip, rs, lport) = fullnat_of(&out);
    s.server(&tcp(
        rs_macs(rs),
        (rs, 80),
        (lip, lport),
        "SA",
        5000,
        1001,
        b"",
    ))
    .expect("SYN-ACK forwarded");
    (lip, rs, lport)
}

/// The sequence number of a TCP frame the datapath sent (the proxy's cookie in its SYN-ACK).
fn seq_of(out: &[u8]) -> u32 {
    match SlicedPacket::from_ethernet(out).unwrap().transport {
        Some(TransportSlice::Tcp(t)) => t.sequence_number(),
        _ => panic!("not TCP"),
    }
}

/// A whole SYN-proxied session on VIP:8081 (`SYNPROXY_SERVICE`): cookie handshake, a request held
/// until the server answers, data both ways translated, FIN both ways.
fn synproxy_session(s: &mut Script) {
    let cli = (CLIENT_IP, CPORT + 7);
    let vip = (VIP, 8081);
    let cookie = seq_of(
        &s.client(&tcp(C, cli, vip, "S", 1000, 0, b""))
            .expect("cookie SYN-ACK"),
    );
    let c0 = cookie.wrapping_add(1);
    let syn = s
        .client(&tcp(C, cli, vip, "A", 1001, c0, b""))
        .expect("SYN to the server");
    let (lip, rs, lport) = fullnat_of(&syn);
    let (r, srv) = (rs_macs(rs), (rs, 80));
    let get = b"GET / HTTP/1.0\r\n\r\n";
    assert_eq!(
        s.client(&tcp(C, cli, vip, "PA", 1001, c0, get)),
        None,
        "held"
    );
    s.server(&tcp(r, srv, (lip, lport), "SA", 5000, 1001, b""))
        .expect("ACK to the server");
    let g = get.len() as u32;
    let body = b"HTTP/1.0 200 OK\r\n\r\nhello";
    let n = body.len() as u32;
    s.server(&tcp(r, srv, (lip, lport), "PA", 5001, 1001 + g, body))
        .expect("reply");
    s.client(&tcp(C, cli, vip, "FA", 1001 + g, c0.wrapping_add(n), b""));
    s.server(&tcp(r, srv, (lip, lport), "FA", 5001 + n, 1002 + g, b""));
    s.client(&tcp(
        C,
        cli,
        vip,
        "A",
        1002 + g,
        c0.wrapping_add(n + 1),
        b"",
    ));
}

/// Client ports, from `from` on, whose connections worker 0 keeps (a SYN it schedules itself):
/// the runner delivers a hand-over after its record's group, after the server's answer in the
/// same group.
fn kept_cports(from: u16) -> impl Iterator<Item = u16> {
    (from..).filter(|&cport| {
        let syn = tcp(C, (CLIENT_IP, cport), (VIP, 80), "S", 1000, 0, b"");
        let v = fuzz_datapaths()[0].process(VecBuf::from_frame(&syn), &RxMeta::default());
        matches!(v, Verdict::Tx(..))
    })
}

/// A script's open connections to VIP:80: each one's client port and (LIP, RS, lport), and the
/// next data segment's sequence number.
struct Open {
    cports: Vec<u16>,
    conns: Vec<(Ipv4Addr, Ipv4Addr, u16)>,
    data: u32,
}

impl Open {
    /// Connections from `cports`, each opened with a handshake.
    fn handshakes(s: &mut Script, cports: &[u16]) -> Open {
        let conns = cports.iter().map(|&cport| handshake(s, cport)).collect();
        Open {
            cports: cports.to_vec(),
            conns,
            data: 1001,
        }
    }

    /// A byte from the client of each connection in `which` and the server's ACK of it: each
    /// leaves with its local address, real server and local port.
    fn both_ways(&mut self, s: &mut Script, which: &[usize], what: &str) {
        for &i in which {
            let (lip, rs, lport) = self.conns[i];
            let out = s
                .client(&tcp(
                    C,
                    (CLIENT_IP, self.cports[i]),
                    (VIP, 80),
                    "PA",
                    self.data,
                    5001,
                    b"x",
                ))
                .unwrap_or_else(|| panic!("{what}: the client's segment"));
            assert_eq!(fullnat_of(&out), (lip, rs, lport), "{what}");
            s.server(&tcp(
                rs_macs(rs),
                (rs, 80),
                (lip, lport),
                "A",
                5001,
                self.data + 1,
                b"",
            ))
            .unwrap_or_else(|| panic!("{what}: the server's ACK"));
        }
        self.data += 1;
    }
}

/// Two connections through changes that move, remove and add services and real servers
/// (`variant_text`), most made before the tables were walked for the earlier ones: each keeps
/// its local address, real server and local port; a new connection goes to a server the
/// snapshot has.
fn config_changes_under_traffic() -> Script {
    let mut s = Script::new();
    let mut kept = kept_cports(CPORT + 20);
    let cports = [kept.next().unwrap(), kept.next().unwrap()];
    let new_cport = kept.next().unwrap();
    let last_cport = kept.next().unwrap();
    let mut open = Open::handshakes(&mut s, &cports);
    let rs2 = open
        .conns
        .iter()
        .position(|c| c.1 == RS2)
        .expect("wrr gives each server one of two connections");
    // Every IPv4 service two places further, no walk: the entries follow as read.
    s.change(4, 0);
    open.both_ways(&mut s, &[0, 1], "after the services moved");
    // The first real server removed, a slot walked a step: the other's connection goes on, and
    // a new one goes to it.
    s.change(1, 1);
    open.both_ways(&mut s, &[rs2], "after rs1 was removed");
    let out = s
        .client(&tcp(
            C,
            (CLIENT_IP, new_cport),
            (VIP, 80),
            "S",
            1000,
            0,
            b"",
        ))
        .expect("a new connection's SYN");
    assert_eq!(fullnat_of(&out).1, RS2, "the only server left");
    // A new server put first, the UDP service moved before the TCP one, back again; walked whole.
    s.change(2, 0);
    s.change(7, 0);
    open.both_ways(
        &mut s,
        &[rs2],
        "after a server was added and the services moved",
    );
    s.change(0, 7);
    open.both_ways(&mut s, &[rs2], "back to the first config");
    // The TCP service's second local address replaced by a new one: its connections go on (the
    // address stays the UDP service's), and a new one leaves from one the service has now.
    s.change(8, 7);
    open.both_ways(&mut s, &[0, 1], "after a local address was replaced");
    let out = s
        .client(&tcp(
            C,
            (CLIENT_IP, last_cport),
            (VIP, 80),
            "S",
            1000,
            0,
            b"",
        ))
        .expect("a new connection's SYN");
    let lip = fullnat_of(&out).0;
    assert!(
        [Ipv4Addr::new(10, 20, 0, 200), Ipv4Addr::new(10, 20, 0, 202)].contains(&lip),
        "{lip}"
    );
    s
}

/// Connections through a change that keeps one of their local addresses retiring
/// ([`RETIRING_VARIANT`], as the control plane commits an `ipvsadm -Q` that takes an address in
/// use), followed lazily (no walk): each goes on both ways through its address, and new
/// connections leave from the others; with the address back (variant 0, the table walked whole),
/// the old connections go on still.
fn a_local_address_retires_under_traffic() -> Script {
    let mut s = Script::new();
    let mut kept = kept_cports(CPORT + 40);
    // The TCP service takes its two local addresses in turn: two connections hold both.
    let cports = [kept.next().unwrap(), kept.next().unwrap()];
    let mut open = Open::handshakes(&mut s, &cports);
    assert!(
        open.conns.iter().any(|c| c.0 == RETIRED_LIP),
        "no connection from {RETIRED_LIP}: {:?}",
        open.conns
    );
    s.change(RETIRING_VARIANT, 0);
    open.both_ways(&mut s, &[0, 1], "with the address retiring");
    for cport in kept.by_ref().take(3) {
        let out = s
            .client(&tcp(C, (CLIENT_IP, cport), (VIP, 80), "S", 1000, 0, b""))
            .expect("a new connection's SYN");
        let lip = fullnat_of(&out).0;
        assert_ne!(lip, RETIRED_LIP, "a new connection on the retiring address");
    }
    open.both_ways(&mut s, &[0, 1], "after new connections");
    s.change(0, 7);
    open.both_ways(&mut s, &[0, 1], "with the address back");
    s
}

fn seeds() -> Vec<(&'static str, Expect, Vec<u8>)> {
    let mut v: Vec<(&'static str, Expect, Vec<u8>)> = Vec::new();
    let mut add = |name, e, s: Script| v.push((name, e, s.bytes));

    add(
        "config_changes_under_traffic",
        Expect::NoDrop,
        config_changes_under_traffic(),
    );
    add(
        "a_local_address_retires_under_traffic",
        Expect::NoDrop,
        a_local_address_retires_under_traffic(),
    );

    let mut s = Script::new();
    synproxy_session(&mut s);
    add("synproxy_session", Expect::NoDrop, s);

    let mut s = Script::new();
    s.client(&tcp(C, (CLIENT_IP, CPORT), (VIP, 8081), "S", 1000, 0, b""));
    s.client(&tcp(
        C,
        (CLIENT_IP, CPORT),
        (VIP, 8081),
        "A",
        1001,
        12345,
        b"",
    ));
    add("synproxy_bad_cookie", Expect::SomeDropped, s);

    let mut s = Script::new();
    s.client(&tcp(C, (CLIENT_IP, CPORT), (VIP, 80), "S", 1000, 0, b""));
    add("tcp_syn", Expect::NoDrop, s);

    let mut s = Script::new();
    s.client(&tcp(
        C,
        (CLIENT_IP, CPORT),
        (VIP, 80),
        "S",
        1000,
        0,
        b"early data",
    ));
    add("tcp_syn_with_data", Expect::NoDrop, s);

    let mut s = Script::new();
    let (lip, rs, lport) = handshake(&mut s, CPORT);
    let srv = (rs, 80);
    let r = rs_macs(rs);
    s.client(&tcp(C, (CLIENT_IP, CPORT), (VIP, 80), "A", 1001, 5001, b""));
    s.client(&tcp(
        C,
        (CLIENT_IP, CPORT),
        (VIP, 80),
        "PA",
        1001,
        5001,
        b"GET / HTTP/1.0\r\n\r\n",
    ));
    s.server(&tcp(
        r,
        srv,
        (lip, lport),
        "PA",
        5001,
        1019,
        b"HTTP/1.0 200 OK\r\n\r\nhello",
    ));
    s.client(&tcp(
        C,
        (CLIENT_IP, CPORT),
        (VIP, 80),
        "FA",
        1019,
        5025,
        b"",
    ));
    s.server(&tcp(r, srv, (lip, lport), "A", 5025, 1020, b""));
    s.server(&tcp(r, srv, (lip, lport), "FA", 5025, 1020, b""));
    s.client(&tcp(C, (CLIENT_IP, CPORT), (VIP, 80), "A", 1020, 5026, b""));
    add("tcp_session", Expect::NoDrop, s);

    let mut s = Script::new();
    handshake(&mut s, CPORT);
    s.client(&tcp(C, (CLIENT_IP, CPORT), (VIP, 80), "R", 1001, 0, b""));
    add("tcp_rst_from_client", Expect::NoDrop, s);

    let mut s = Script::new();
    let (lip, rs, lport) = handshake(&mut s, CPORT);
    s.server(&tcp(
        rs_macs(rs),
        (rs, 80),
        (lip, lport),
        "RA",
        5001,
        1001,
        b"",
    ));
    add("tcp_rst_from_server", Expect::NoDrop, s);

    // Established, then idle past the timeout: both sides get an RST (generated frames).
    let mut s = Script::new();
    handshake(&mut s, CPORT);
    s.client(&tcp(C, (CLIENT_IP, CPORT), (VIP, 80), "A", 1001, 5001, b""));
    s.push(0, 0, 31 * TICK_STEP_MS, &ping(C, CLIENT_IP, VIP));
    s.client(&tcp(C, (CLIENT_IP, CPORT), (VIP, 80), "S", 2000, 0, b""));
    add("tcp_expire_and_reconnect", Expect::NoDrop, s);

    let mut s = Script::new();
    for _ in 0..3 {
        s.client(&tcp(C, (CLIENT_IP, CPORT), (VIP, 80), "S", 1000, 0, b""));
    }
    add("tcp_syn_retransmitted", Expect::NoDrop, s);

    // The reply reaches worker 1, which hands it to worker 0.
    let mut s = Script::new();
    let out = s
        .client(&tcp(C, (CLIENT_IP, CPORT), (VIP, 80), "S", 1000, 0, b""))
        .unwrap();
    let (lip, rs, lport) = fullnat_of(&out);
    s.push(
        1,
        1,
        0,
        &tcp(rs_macs(rs), (rs, 80), (lip, lport), "SA", 5000, 1001, b""),
    );
    s.push(
        1,
        0,
        0,
        &tcp(C, (CLIENT_IP, CPORT + 1), (VIP, 80), "S", 1000, 0, b""),
    );
    add("tcp_reply_on_other_worker", Expect::NoDrop, s);

    // More SYNs than the table holds: half-open connections past `max_half_open` (half the table
    // here) make room for new ones (the eviction path), so none is dropped.
    let mut s = Script::new();
    // Both workers: the SYNs spread over their owners.
    for i in 0..2 * FUZZ_CAPACITY as u16 + 8 {
        s.client(&tcp(
            C,
            (CLIENT_IP, 30000 + i),
            (VIP, 80),
            "S",
            1000,
            0,
            b"",
        ));
    }
    add("tcp_table_full", Expect::NoDrop, s);

    let mut s = Script::new();
    let out = s
        .client(&udp(C, (CLIENT_IP, 5353), (VIP, 80), b"question"))
        .unwrap();
    let (lip, rs, lport) = fullnat_of(&out);
    s.server(&udp(rs_macs(rs), (rs, 80), (lip, lport), b"answer"));
    s.client(&udp(C, (CLIENT_IP, 5353), (VIP, 80), b"again"));
    s.push(
        0,
        0,
        16 * TICK_STEP_MS,
        &udp(C, (CLIENT_IP, 5353), (VIP, 80), b"after expiry"),
    );
    add("udp_flow", Expect::NoDrop, s);

    let mut s = Script::new();
    s.client(&udp(C, (CLIENT_IP, 5353), (VIP, 80), b""));
    let mut f = udp(C, (CLIENT_IP, 5354), (VIP, 80), b"no checksum");
    f[40..42].copy_from_slice(&[0, 0]);
    s.client(&f);
    add("udp_empty_and_no_checksum", Expect::NoDrop, s);

    let mut s = Script::new();
    s.client(&ping(C, CLIENT_IP, VIP));
    s.client(&ping(C, CLIENT_IP, GW_CLIENT_IP));
    s.server(&ping((RS1_MAC, SERVER_PORT_MAC), RS1, GW_SERVER_IP));
    s.server(&ping((RS2_MAC, SERVER_PORT_MAC), RS2, LIP1));
    add("icmp_echo", Expect::NoDrop, s);

    // ICMP errors about a connection, from the server side and from the client side.
    let mut s = Script::new();
    let out = s
        .client(&tcp(C, (CLIENT_IP, CPORT), (VIP, 80), "S", 1000, 0, b""))
        .unwrap();
    let (lip, rs, _) = fullnat_of(&out);
    s.server(&icmp_unreachable(rs_macs(rs), rs, lip, &out));
    add("icmp_error_from_server", Expect::NoDrop, s);

    let mut s = Script::new();
    let out = s
        .client(&tcp(C, (CLIENT_IP, CPORT), (VIP, 80), "S", 1000, 0, b""))
        .unwrap();
    let (lip, rs, lport) = fullnat_of(&out);
    let back = s
        .server(&tcp(
            rs_macs(rs),
            (rs, 80),
            (lip, lport),
            "SA",
            5000,
            1001,
            b"",
        ))
        .unwrap();
    s.client(&icmp_unreachable(C, CLIENT_IP, VIP, &back));
    add("icmp_error_from_client", Expect::NoDrop, s);

    let mut s = Script::new();
    let out = s
        .client(&udp(C, (CLIENT_IP, 5353), (VIP, 80), b"question"))
        .unwrap();
    let (lip, rs, _) = fullnat_of(&out);
    s.server(&icmp_unreachable(rs_macs(rs), rs, lip, &out));
    add("icmp_error_udp", Expect::NoDrop, s);

    let b = MacAddr::BROADCAST;
    let mut s = Script::new();
    s.client(&arp_frame(
        false,
        CLIENT_MAC,
        CLIENT_IP,
        MacAddr::ZERO,
        VIP,
        b,
    ));
    s.client(&arp_frame(
        false,
        CLIENT_MAC,
        CLIENT_IP,
        MacAddr::ZERO,
        GW_CLIENT_IP,
        b,
    ));
    s.server(&arp_frame(false, RS1_MAC, RS1, MacAddr::ZERO, LIP2, b));
    s.server(&arp_frame(
        false,
        RS2_MAC,
        RS2,
        MacAddr::ZERO,
        Ipv4Addr::new(10, 20, 0, 77),
        b,
    ));
    add("arp_requests", Expect::NoDrop, s);

    let mut s = Script::new();
    let h = MacAddr([2, 0, 0, 0, 0, 0x55]);
    let hip = Ipv4Addr::new(10, 10, 0, 55);
    s.client(&arp_frame(
        true,
        h,
        hip,
        CLIENT_PORT_MAC,
        GW_CLIENT_IP,
        CLIENT_PORT_MAC,
    ));
    s.client(&arp_frame(false, h, hip, MacAddr::ZERO, hip, b)); // gratuitous
    add("arp_replies_and_gratuitous", Expect::NoDrop, s);

    // A client the gateway has no MAC for: the reply waits for ARP, then goes.
    let mut s = Script::new();
    let nip = Ipv4Addr::new(10, 10, 0, 66);
    let nmac = MacAddr([2, 0, 0, 0, 0, 0x66]);
    // A client port whose connection worker 0 owns: the worker that then learns the client's MAC
    // (this harness does not pass neighbours between workers as `worker.rs` does).
    let cport = (CPORT..)
        .find(|&p| gateway::forward::owner::owner_of_client(nip, p, 2) == 0)
        .unwrap();
    let out = s
        .client(&tcp(
            (nmac, CLIENT_PORT_MAC),
            (nip, cport),
            (VIP, 80),
            "S",
            1000,
            0,
            b"",
        ))
        .unwrap();
    let (lip, rs, lport) = fullnat_of(&out);
    s.server(&tcp(
        rs_macs(rs),
        (rs, 80),
        (lip, lport),
        "SA",
        5000,
        1001,
        b"",
    ));
    s.server(&tcp(
        rs_macs(rs),
        (rs, 80),
        (lip, lport),
        "SA",
        5000,
        1001,
        b"",
    ));
    s.client(&arp_frame(
        true,
        nmac,
        nip,
        CLIENT_PORT_MAC,
        GW_CLIENT_IP,
        CLIENT_PORT_MAC,
    ));
    s.push(
        0,
        0,
        4 * TICK_STEP_MS,
        &tcp(
            (nmac, CLIENT_PORT_MAC),
            (nip, cport),
            (VIP, 80),
            "A",
            1001,
            5001,
            b"",
        ),
    );
    add("arp_resolve_holds_then_releases", Expect::NoDrop, s);

    // Malformed and unwanted frames: one file per kind.
    let syn = tcp(C, (CLIENT_IP, CPORT), (VIP, 80), "S", 1000, 0, b"xyz");
    let udp_ok = udp(C, (CLIENT_IP, 5353), (VIP, 80), b"query");
    let mut bad = |name, frames: Vec<Vec<u8>>| {
        let mut s = Script::new();
        for f in &frames {
            assert!(s.client(f).is_none(), "{name} was sent");
        }
        v.push((name, Expect::AllDropped, s.bytes));
    };
    bad(
        "bad_truncated",
        [0, 1, 13, 14, 20, 33, 34, 40, 53, 59]
            .iter()
            .map(|&n| syn[..n].to_vec())
            .collect(),
    );
    bad(
        "bad_ihl",
        [0x40u8, 0x44, 0x4F]
            .iter()
            .map(|&b| {
                let mut f = syn.clone();
                f[14] = b;
                f
            })
            .collect(),
    );
    bad(
        "bad_version",
        vec![{
            let mut f = syn.clone();
            f[14] = 0x65;
            f
        }],
    );
    bad(
        "bad_total_len",
        [0u16, 19, 200]
            .iter()
            .map(|&l| {
                let mut f = syn.clone();
                f[16..18].copy_from_slice(&l.to_be_bytes());
                refill_ip(&mut f);
                f
            })
            .collect(),
    );
    bad(
        "bad_ip_checksum",
        vec![{
            let mut f = syn.clone();
            f[24] ^= 0xFF;
            f
        }],
    );
    bad(
        "ip_options",
        vec![{
            let mut f = syn.clone();
            f.splice(34..34, [1, 1, 1, 0]);
            f[14] = 0x46;
            let tl = (f.len() - 14) as u16;
            f[16..18].copy_from_slice(&tl.to_be_bytes());
            refill_ip(&mut f);
            f
        }],
    );
    // A first fragment, one at offset 8 (MF clear) and one at offset 128 (MF), of a SYN and of a
    // UDP datagram: the first fragments are forwarded and the others follow them
    // (`gateway::frag`), but the TCP one at offset 8, over the TCP header (RFC 1858), is dropped.
    let ip_fragments = {
        let mut s = Script::new();
        let mut sent = 0;
        for ff in [0x2000u16, 0x0001, 0x2010] {
            for b in [&syn, &udp_ok] {
                let mut f = b.clone();
                f[20..22].copy_from_slice(&ff.to_be_bytes());
                refill_ip(&mut f);
                sent += usize::from(s.client(&f).is_some());
            }
        }
        // Sent: both first fragments, the UDP one at 8 and the TCP one at 128. The UDP one at
        // 128 comes after its datagram was whole (the one at 8 has MF clear): held as a new one.
        assert_eq!(sent, 4);
        s.bytes
    };
    bad(
        "bad_tcp_checksum",
        vec![{
            let mut f = syn.clone();
            f[50] ^= 1;
            f
        }],
    );
    bad(
        "bad_udp_checksum",
        vec![{
            let mut f = udp_ok.clone();
            f[40] ^= 1;
            f
        }],
    );
    bad(
        "bad_tcp_data_offset",
        [0x00u8, 0x40, 0xF0]
            .iter()
            .map(|&d| {
                let mut f = syn.clone();
                f[46] = d;
                f
            })
            .collect(),
    );
    bad(
        "bad_tcp_flags",
        ["SF", "SR", "", "F", "FR"]
            .iter()
            .map(|fl| tcp(C, (CLIENT_IP, CPORT), (VIP, 80), fl, 1, 1, b""))
            .collect(),
    );
    bad(
        "bad_udp_length",
        [0u16, 7, 14]
            .iter()
            .map(|&l| {
                let mut f = udp_ok.clone();
                f[38..40].copy_from_slice(&l.to_be_bytes());
                f
            })
            .collect(),
    );
    bad(
        "nonsyn_without_connection",
        ["A", "PA", "FA", "R", "SA"]
            .iter()
            .map(|fl| tcp(C, (CLIENT_IP, CPORT), (VIP, 80), fl, 1, 1, b""))
            .collect(),
    );
    // VLAN, LLDP, a local experimental type: up to the twin (the fuzz config's ports have the
    // default twin).
    let unknown_ethertypes = {
        let mut s = Script::new();
        for t in [0x88B5u16, 0x8100, 0x88CC] {
            let mut f = syn.clone();
            f[12..14].copy_from_slice(&t.to_be_bytes());
            assert!(s.client(&f).is_none(), "ethertype {t:#06x} was sent");
        }
        s.bytes
    };
    bad(
        "other_mac",
        vec![{
            let mut f = syn.clone();
            f[5] = 0x99;
            f
        }],
    );
    bad(
        "no_service_or_not_for_us",
        vec![
            tcp(C, (CLIENT_IP, CPORT), (VIP, 81), "S", 1, 0, b""),
            tcp(
                C,
                (CLIENT_IP, CPORT),
                (Ipv4Addr::new(192, 0, 2, 1), 80),
                "S",
                1,
                0,
                b"",
            ),
            {
                let mut f = syn.clone();
                f[23] = 47;
                refill_ip(&mut f);
                f
            },
        ],
    );
    bad(
        "arp_malformed",
        vec![
            {
                let mut f = arp_frame(false, CLIENT_MAC, CLIENT_IP, MacAddr::ZERO, VIP, b);
                f[15] = 6;
                f
            },
            arp_frame(false, CLIENT_MAC, CLIENT_IP, MacAddr::ZERO, VIP, b)[..30].to_vec(),
        ],
    );

    // Pseudo-random bytes (a fixed LCG, so the file is reproducible), as received and from a peer.
    let mut x: u32 = 0x1234_5678;
    let mut rnd = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect()
    };
    let mut bytes = Vec::new();
    for i in 0..12u16 {
        let frame = rnd(usize::from(i) * 7);
        Record {
            port: i & 1,
            from_peer: i % 3 == 0,
            worker: usize::from(i % 2),
            advance_ms: 0,
            frame: &frame,
        }
        .encode(&mut bytes);
    }
    v.push(("random_records", Expect::SomeDropped, bytes));
    v.push(("raw_garbage", Expect::SomeDropped, rnd(300)));
    v.push(("empty", Expect::NoDrop, Vec::new()));
    v.push(("unknown_ethertypes", Expect::AllPunted, unknown_ethertypes));
    v.push(("ip_fragments", Expect::SomeDropped, ip_fragments));
    ipv6_seeds(&mut v);
    sync_seeds(&mut v);
    v
}

/// A connection the HA peer synced, as its record: TCP, established, with five minutes left.
fn synced_conn(
    mode: u8,
    client: (std::net::IpAddr, u16),
    vip: (std::net::IpAddr, u16),
    real: (std::net::IpAddr, u16),
    local: (std::net::IpAddr, u16),
) -> gateway::conn::record::ConnRecord {
    gateway::conn::record::ConnRecord {
        kind: gateway::conn::record::RecordKind::Conn,
        proto: 6,
        mode,
        state: gateway::conn::State::Established as u8,
        client,
        vip,
        real,
        local,
        remaining_ms: 300_000,
    }
}

/// A FullNAT connection the HA peer synced: the lab's client port `cport` to the VIP's `vport`,
/// through rs1 port 80 from LIP1 port `lport`.
fn synced_fullnat(cport: u16, vport: u16, lport: u16) -> gateway::conn::record::ConnRecord {
    synced_conn(
        gateway::forward::mode::FULLNAT,
        (CLIENT_IP.into(), cport),
        (VIP.into(), vport),
        (RS1.into(), 80),
        (LIP1.into(), lport),
    )
}

/// rs1's answer (sequence 5001, 3 bytes) to the client's 5-byte request (sequence 1001) on a
/// [`synced_fullnat`] connection from LIP1 port `lport`.
fn rs1_answer(lport: u16) -> Vec<u8> {
    tcp(
        rs_macs(RS1),
        (RS1, 80),
        (LIP1, lport),
        "AP",
        5001,
        1006,
        b"200",
    )
}

/// Seeds with sync messages (`FUZZ_SYNC_KEY`): connections a backup installs, then serves.
fn sync_seeds(v: &mut Vec<(&'static str, Expect, Vec<u8>)>) {
    use gateway::forward::mode;
    // A FullNAT connection synced to the worker that does not own its local port (1030 is
    // worker 0's, as is the client, whose segments worker 0 takes), which passes it on; the
    // client's request and the server's answer then go through on it, with no handshake here.
    let mut s = Script::new();
    let (cport, lport) = (40000, 1030);
    let rec = synced_fullnat(cport, 80, lport);
    assert_eq!(s.sync(1, &[rec]), 1);
    assert_eq!(s.dps[1].fwd.sync_counters().handed_over, 1, "passed on");
    let out = s
        .client(&tcp(
            C,
            (CLIENT_IP, cport),
            (VIP, 80),
            "AP",
            1001,
            5001,
            b"GET /",
        ))
        .expect("the synced connection forwards the client's segment");
    assert_eq!(fullnat_of(&out), (LIP1, RS1, lport));
    s.server(&rs1_answer(lport))
        .expect("and the server's answer");
    v.push(("sync_fullnat_then_traffic", Expect::NoDrop, s.bytes));
    // An IPv6 DR connection (the IPv6 layout), then the same message again: a replay, refused.
    let mut s = Script::new();
    let v6 = |a: &str| std::net::IpAddr::V6(a.parse().unwrap());
    let rec = synced_conn(
        mode::DR,
        (v6("2001:db8:10::2"), 40001),
        (v6("2001:db8:10::100"), 80),
        (v6("2001:db8:20::12"), 80),
        (v6("::"), 0),
    );
    assert_eq!(s.sync(1, &[rec]), 1);
    s.sync_seq -= 1;
    assert_eq!(s.sync(1, &[rec]), 0, "a replay");
    v.push(("sync_ipv6_dr_and_replay", Expect::NoDrop, s.bytes));
    // A SYN-proxied connection (VIP:8081) and its translation record, in one message as the
    // primary sends them: the server's sequence numbers go out shifted by the record's 1000.
    let mut s = Script::new();
    let (cport, lport) = (40002, 1032);
    let rec = synced_fullnat(cport, 8081, lport);
    let adj = gateway::conn::record::SeqAdj {
        seq: 1000,
        ..Default::default()
    };
    let tr = gateway::conn::record::ConnRecord::translation(&rec, adj);
    assert_eq!(s.sync(1, &[rec, tr]), 2);
    s.client(&tcp(
        C,
        (CLIENT_IP, cport),
        (VIP, 8081),
        "AP",
        1001,
        6001,
        b"GET /",
    ))
    .expect("the client's segment");
    let out = s.server(&rs1_answer(lport)).expect("the server's answer");
    assert_eq!(seq_of(&out), 6001, "shifted by the synced translation");
    v.push(("sync_synproxy_translation", Expect::NoDrop, s.bytes));
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// A neighbour solicitation (135) or advertisement (136) for `target` with a link-layer option.
fn nd6(macs: (MacAddr, MacAddr), src: &str, dst: &str, kind: u8, target: &str) -> Vec<u8> {
    let mut body = ip6(target).to_vec();
    body.extend_from_slice(&[if kind == 135 { 1 } else { 2 }, 1]);
    body.extend_from_slice(&macs.0 .0);
    let flags = if kind == 136 { 0x60 } else { 0 };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv6(ip6(src), ip6(dst), 255)
        .icmpv6(etherparse::Icmpv6Type::Unknown {
            type_u8: kind,
            code_u8: 0,
            bytes5to8: [flags, 0, 0, 0],
        })
        .write(&mut v, &body)
        .unwrap();
    v
}

fn tcp6(sport: u16, syn: bool, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(ip6("2001:db8:10::2"), ip6("2001:db8:10::100"), 64)
        .tcp(sport, 80, 1000, 64240);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// An IPv6 TCP segment between `src` and `dst` (address, port); `flags` in tcpdump letters.
fn tcp6_seg(
    macs: (MacAddr, MacAddr),
    src: (&str, u16),
    dst: (&str, u16),
    flags: &str,
    (seq, ack): (u32, u32),
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(macs.0 .0, macs.1 .0)
        .ipv6(ip6(src.0), ip6(dst.0), 64)
        .tcp(src.1, dst.1, seq, 64240);
    for (c, set) in [('S', 0), ('A', 1), ('F', 2), ('R', 3), ('P', 4)] {
        if flags.contains(c) {
            b = match set {
                0 => b.syn(),
                1 => b.ack(ack),
                2 => b.fin(),
                3 => b.rst(),
                _ => b.psh(),
            };
        }
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// A whole SYN-proxied IPv6 session on [VIP6]:8081 (`SYNPROXY_SERVICE6`): cookie handshake, a
/// request held until the server answers, data both ways translated, FIN both ways.
fn synproxy6_session(s: &mut Script) {
    let rs_side = (RS1_MAC, SERVER_PORT_MAC);
    // rs1 asks for the gateway (and so is learned).
    s.server(&nd6(
        rs_side,
        "2001:db8:20::11",
        "ff02::1:ff00:1",
        135,
        "2001:db8:20::1",
    ))
    .expect("the solicitation answered");
    // The client asks for the VIP (and so is learned).
    s.client(&nd6(
        C,
        "2001:db8:10::2",
        "ff02::1:ff00:100",
        135,
        "2001:db8:10::100",
    ))
    .expect("the solicitation for the VIP answered");
    // A client port worker 0 owns, the worker that learned both neighbours.
    let cport = (CPORT..)
        .find(|&p| {
            gateway::forward::owner::owner_of_client6(ip6("2001:db8:10::2").into(), p, 2) == 0
        })
        .unwrap();
    let (cli, vip) = (("2001:db8:10::2", cport), ("2001:db8:10::100", 8081));
    let cookie = seq_of(
        &s.client(&tcp6_seg(C, cli, vip, "S", (1000, 0), b""))
            .expect("cookie SYN-ACK"),
    );
    let c0 = cookie.wrapping_add(1);
    let syn = s
        .client(&tcp6_seg(C, cli, vip, "A", (1001, c0), b""))
        .expect("SYN to the server");
    let lport = match SlicedPacket::from_ethernet(&syn).unwrap().transport {
        Some(TransportSlice::Tcp(t)) => t.source_port(),
        _ => panic!("not TCP"),
    };
    let (srv, lip) = (("2001:db8:20::11", 80), ("2001:db8:20::200", lport));
    let get = b"GET / HTTP/1.0\r\n\r\n";
    assert_eq!(
        s.client(&tcp6_seg(C, cli, vip, "PA", (1001, c0), get)),
        None,
        "held"
    );
    s.server(&tcp6_seg(rs_side, srv, lip, "SA", (5000, 1001), b""))
        .expect("ACK to the server");
    let g = get.len() as u32;
    let body = b"HTTP/1.0 200 OK\r\n\r\nhello";
    let n = body.len() as u32;
    s.server(&tcp6_seg(rs_side, srv, lip, "PA", (5001, 1001 + g), body))
        .expect("reply");
    let fin = (1001 + g, c0.wrapping_add(n));
    s.client(&tcp6_seg(C, cli, vip, "FA", fin, b""))
        .expect("FIN");
    s.server(&tcp6_seg(
        rs_side,
        srv,
        lip,
        "FA",
        (5001 + n, 1002 + g),
        b"",
    ))
    .expect("the server's FIN");
    let last = (1002 + g, c0.wrapping_add(n + 1));
    s.client(&tcp6_seg(C, cli, vip, "A", last, b""))
        .expect("the last ACK");
}

/// IPv6 (`inet6`): neighbour discovery both ways, a DR connection, a TUN datagram, bad input.
fn ipv6_seeds(v: &mut Vec<(&'static str, Expect, Vec<u8>)>) {
    let mut s = Script::new();
    synproxy6_session(&mut s);
    v.push(("ipv6_synproxy_session", Expect::NoDrop, s.bytes));

    let rs_side = (RS1_MAC, SERVER_PORT_MAC);
    let mut s = Script::new();
    // The client asks for the VIP; rs1 asks for the gateway (and so is learned).
    let na = s.client(&nd6(
        C,
        "2001:db8:10::2",
        "ff02::1:ff00:100",
        135,
        "2001:db8:10::100",
    ));
    assert!(na.is_some(), "the solicitation for the VIP is answered");
    let na = s.server(&nd6(
        rs_side,
        "2001:db8:20::11",
        "ff02::1:ff00:1",
        135,
        "2001:db8:20::1",
    ));
    assert!(
        na.is_some(),
        "the solicitation for the port's address is answered"
    );
    assert!(s.client(&tcp6(CPORT, true, b"")).is_some(), "DR SYN to rs1");
    assert!(s.client(&tcp6(CPORT, false, b"GET /")).is_some());
    let mut dns = Vec::new();
    // A client port whose datagrams worker 0 owns, the worker that learned rs1 (`forward::owner`;
    // this harness does not pass neighbours between workers).
    let dns_port = (53000..)
        .find(|&p| {
            gateway::forward::owner::owner_of_client6(ip6("2001:db8:10::2").into(), p, 2) == 0
        })
        .unwrap();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(ip6("2001:db8:10::2"), ip6("2001:db8:10::100"), 64)
        .udp(dns_port, 53)
        .write(&mut dns, b"query")
        .unwrap();
    assert!(s.client(&dns).is_some(), "TUN datagram to rs1");
    v.push(("ipv6_dr_tun_session", Expect::NoDrop, s.bytes));

    // A TUN datagram in three fragments, the last first (`inet6::frag6`).
    let mut s = Script::new();
    s.server(&nd6(
        rs_side,
        "2001:db8:20::11",
        "ff02::1:ff00:1",
        135,
        "2001:db8:20::1",
    ));
    let mut whole = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
        .ipv6(ip6("2001:db8:10::2"), ip6("2001:db8:10::100"), 64)
        .udp(53001, 53)
        .write(&mut whole, &[5u8; 400])
        .unwrap();
    let payload = whole[54..].to_vec();
    let piece = |from: usize, to: usize| {
        let mut f = whole[..54].to_vec();
        f[20] = 44;
        f[18..20].copy_from_slice(&((to - from + 8) as u16).to_be_bytes());
        let more = u16::from(to < payload.len());
        f.extend_from_slice(&[17, 0]);
        f.extend_from_slice(&((from as u16) | more).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 42]);
        f.extend_from_slice(&payload[from..to]);
        f
    };
    assert!(
        s.client(&piece(200, payload.len())).is_none(),
        "held for its first"
    );
    assert!(s.client(&piece(0, 104)).is_some(), "the first");
    assert!(
        s.client(&piece(104, 200)).is_some(),
        "the middle one follows"
    );
    v.push(("ipv6_fragments", Expect::NoDrop, s.bytes));

    // The second connection goes to rs2, unknown: held until its advertisement.
    let mut s = Script::new();
    s.server(&nd6(
        rs_side,
        "2001:db8:20::11",
        "ff02::1:ff00:1",
        135,
        "2001:db8:20::1",
    ));
    s.client(&tcp6(CPORT, true, b""));
    assert!(
        s.client(&tcp6(CPORT + 1, true, b"")).is_none(),
        "held for rs2"
    );
    let rs2_side = (RS2_MAC, SERVER_PORT_MAC);
    s.server(&nd6(
        rs2_side,
        "2001:db8:20::12",
        "2001:db8:20::1",
        136,
        "2001:db8:20::12",
    ));
    v.push(("ipv6_resolve", Expect::NoDrop, s.bytes));

    // Bad IPv6: truncated, version 4, payload past the frame, an extension chain too long, a
    // fragment, a solicitation from off-link.
    let syn = tcp6(CPORT, true, b"");
    let mut s = Script::new();
    s.client(&syn[..40]);
    let mut f = syn.clone();
    f[14] = 0x45;
    s.client(&f);
    let mut f = syn.clone();
    f[18..20].copy_from_slice(&999u16.to_be_bytes());
    s.client(&f);
    for (next, ext) in [(60u8, 9usize), (44, 1)] {
        let mut f = syn.clone();
        f[20] = next;
        let chain: Vec<u8> = (0..ext)
            .flat_map(|i| {
                // (A TCP fragment would be followed: an ICMPv6 one is not.)
                let nh = match (i + 1 < ext, next) {
                    (true, _) => next,
                    (false, 44) => 58,
                    _ => 6,
                };
                [nh, 0, 0, 1, 0, 0, 0, 7]
            })
            .collect();
        let plen = u16::from_be_bytes([f[18], f[19]]) + chain.len() as u16;
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        f.splice(54..54, chain);
        s.client(&f);
    }
    let mut f = nd6(
        C,
        "2001:db8:10::2",
        "ff02::1:ff00:100",
        135,
        "2001:db8:10::100",
    );
    f[21] = 64;
    s.client(&f);
    v.push(("ipv6_malformed", Expect::AllDropped, s.bytes));
}

#[test]
fn seeds_behave_as_meant_and_are_committed() {
    let write = std::env::var_os("GATEWAY_WRITE_CORPUS").is_some();
    let dir = corpus_dir();
    let seeds = seeds();
    assert!(seeds.len() >= 30, "{} seeds", seeds.len());
    for (name, expect, bytes) in &seeds {
        let o = run_input(bytes);
        match expect {
            Expect::NoDrop => assert_eq!(o.dropped, 0, "{name}: {o:?}"),
            Expect::AllDropped => assert_eq!((o.dropped, o.tx), (o.frames, 0), "{name}: {o:?}"),
            Expect::SomeDropped => assert!(o.dropped > 0, "{name}: {o:?}"),
            Expect::AllPunted => assert_eq!(
                (o.punted, o.dropped, o.tx),
                (o.frames, 0, 0),
                "{name}: {o:?}"
            ),
        }
        let path = dir.join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, bytes).unwrap();
        } else {
            let committed = std::fs::read(&path).unwrap_or_else(|_| {
                panic!(
                    "{} missing: run with GATEWAY_WRITE_CORPUS=1",
                    path.display()
                )
            });
            assert!(
                committed == *bytes,
                "{} differs from the generator: run with GATEWAY_WRITE_CORPUS=1",
                path.display()
            );
        }
    }
    // Some seeds must reach the interesting paths.
    let by_name = |n: &str| run_input(&seeds.iter().find(|s| s.0 == n).unwrap().2);
    assert_eq!(by_name("tcp_session").tx, 9);
    // SYN-ACK, SYN, ACK, reply, FIN, FIN, ACK; the held request is released.
    let sp = by_name("synproxy_session");
    assert_eq!((sp.tx, sp.held, sp.released), (7, 1, 1), "{sp:?}");
    // The same for IPv6, after the two neighbour advertisements.
    let sp6 = by_name("ipv6_synproxy_session");
    assert_eq!((sp6.tx, sp6.held, sp6.released), (9, 1, 1), "{sp6:?}");
    assert!(
        by_name("tcp_expire_and_reconnect").generated >= 2,
        "expiry RSTs"
    );
    assert_eq!(by_name("tcp_reply_on_other_worker").handed_over, 1);
    assert!(by_name("arp_resolve_holds_then_releases").released >= 1);
    assert!(by_name("icmp_error_from_server").tx == 2);
    let sy = by_name("sync_fullnat_then_traffic");
    assert_eq!((sy.sync_messages, sy.synced, sy.tx), (1, 1, 2), "{sy:?}");
    let sy6 = by_name("sync_ipv6_dr_and_replay");
    assert_eq!((sy6.sync_messages, sy6.synced), (2, 1), "{sy6:?}");
    let tr = by_name("sync_synproxy_translation");
    assert_eq!((tr.synced, tr.tx), (2, 2), "{tr:?}");
}
