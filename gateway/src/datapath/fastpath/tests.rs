//! The fast path changes nothing but the cost: for any sequence of frames, a datapath with it
//! gives the verdicts, bytes, counters and connection table of one without it, one by one and
//! in bursts.

use crate::datapath::tests::outcome;
use crate::datapath::Datapath;
use crate::packet::Verdict;
use crate::packet::{CsumStatus, RxMeta, VecBuf};
use crate::testkit::*;
use etherparse::PacketBuilder;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The lab's FullNAT services, a NAT one, a DR one, a SYN-proxied FullNAT one and a NAT64 one
/// (IPv6 clients, an IPv4 real server answering to an IPv4 LIP of the IPv6 service, which the
/// forwarder hands back to the general path), an IPv6 FullNAT one and an IPv6 DR one
/// (`IPV6_SERVICES`): connections of every kind the fast path must take or leave.
fn config() -> String {
    format!(
        "{}{}{}",
        dual_stack(LAB_CONFIG),
        IPV6_SERVICES,
        r#"
[[service]]
vip = "10.10.0.100"
port = 8080
protocol = "tcp"
scheduler = "rr"
[[service.real]]
address = "10.20.0.11"
port = 80
mode = "nat"

[[service]]
vip = "10.10.0.101"
port = 80
protocol = "tcp"
scheduler = "rr"
[[service.real]]
address = "10.20.0.12"
mode = "dr"

[[service]]
vip = "10.10.0.100"
port = 443
protocol = "tcp"
scheduler = "rr"
synproxy = "on"
local_addresses = ["10.20.0.202"]
[[service.real]]
address = "10.20.0.12"
port = 443

[[service]]
vip = "2001:db8:10::100"
port = 8082
protocol = "tcp"
scheduler = "rr"
local_addresses = ["10.20.0.210"]
[[service.real]]
address = "10.20.0.11"
port = 80

[[service]]
vip = "2001:db8:10::100"
port = 8083
protocol = "tcp"
scheduler = "rr"
local_addresses = ["2001:db8:20::200", "2001:db8:20::201"]
[[service.real]]
address = "2001:db8:20::11"
port = 80
[[service.real]]
address = "2001:db8:20::12"
port = 80
"#
    )
}

/// The IPv6 real servers (`IPV6_SERVICES` and the FullNAT service above).
const RS1_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 0x11);
const RS2_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 0x12);

/// The NAT64 service's client (destination `DESTS.len()`, one past `DESTS`) and its VIP.
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 2);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x100);

/// Where a client's flow goes: the services above, a port with no service, the gateway itself;
/// the destinations after these are IPv6 ones (`DESTS6`, an IPv6 client).
const DESTS: [(Ipv4Addr, u16); 6] = [
    (VIP, 80),
    (VIP, 8080),
    (Ipv4Addr::new(10, 10, 0, 101), 80),
    (VIP, 443),
    (VIP, 81),
    (GW_CLIENT_IP, 22),
];

/// The IPv6 client's destinations: the NAT64 service, the IPv6 FullNAT service, the IPv6 DR
/// service, a port with no service, the gateway's own address.
const DESTS6: [(Ipv6Addr, u16); 5] = [
    (VIP6, 8082),
    (VIP6, 8083),
    (VIP6, 80),
    (VIP6, 81),
    (Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 1), 22),
];

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FLAGS: [u8; 9] = [
    SYN,
    ACK,
    ACK | 0x08,
    ACK | 0x01,
    0x04,
    ACK | 0x04,
    SYN | ACK,
    0,
    0x01,
];

/// What goes wrong with a frame, if anything.
#[derive(Clone, Copy, Debug)]
enum Flaw {
    None,
    IpChecksum,
    TcpChecksum,
    OtherMac,
    IpOptions,
    Fragment,
    Padding,
    TcpOptions,
    /// Cut short of the three headers.
    Truncated,
    /// A TCP data offset beyond the segment.
    BadDataOffset,
    /// To the broadcast MAC.
    Broadcast,
}

#[derive(Clone, Debug)]
struct Event {
    /// Instead of a frame: the services change (`reconfigure`), or (`tick`) time passes by
    /// that many seconds and the timers run.
    reconfigure: bool,
    tick: u8,
    /// Client flow: its index (client port) and destination.
    flow: u8,
    dest: u8,
    /// Sent by the real server the flow's connection reached (through the gateway), if known.
    from_server: bool,
    flags: u8,
    payload: u8,
    flaw: Flaw,
    /// The NIC's checksum report: 0 none, 1 both good, 2 L4 bad, 3 IP bad, 4 IP good, 5 L4
    /// good.
    nic: u8,
    from_peer: bool,
}

fn event() -> impl Strategy<Value = Event> {
    let flaw = prop_oneof![
        20 => Just(Flaw::None),
        1 => Just(Flaw::IpChecksum),
        1 => Just(Flaw::TcpChecksum),
        1 => Just(Flaw::OtherMac),
        1 => Just(Flaw::IpOptions),
        1 => Just(Flaw::Fragment),
        1 => Just(Flaw::Padding),
        1 => Just(Flaw::TcpOptions),
        1 => Just(Flaw::Truncated),
        1 => Just(Flaw::BadDataOffset),
        1 => Just(Flaw::Broadcast),
    ];
    (
        0u8..4,
        prop_oneof![4 => Just(0u8), 1 => 1u8..=5, 2 => 6u8..=7, 1 => 8u8..=10],
        any::<bool>(),
        // Mostly what opens and carries a connection: SYN, SYN-ACK, ACK.
        prop_oneof![2 => Just(0usize), 2 => Just(6), 6 => Just(1), 3 => 0usize..FLAGS.len()],
        prop_oneof![Just(0u8), Just(10), Just(200)],
        flaw,
        prop_oneof![12 => Just(0u8), 4 => Just(1), 1 => Just(2), 1 => Just(3), 1 => Just(4), 1 => Just(5)],
        prop_oneof![19 => Just(false), 1 => Just(true)],
        prop_oneof![15 => Just(false), 1 => Just(true)],
        prop_oneof![20 => Just(0u8), 1 => 1u8..200],
    )
        .prop_map(
            |(flow, dest, from_server, f, payload, flaw, nic, from_peer, reconfigure, tick)| Event {
                reconfigure,
                tick,
                flow,
                dest,
                from_server,
                flags: FLAGS[f],
                payload,
                flaw,
                nic,
                from_peer,
            },
        )
}

/// A TCP segment being built, with `flags` (SYN, ACK 5001, FIN, RST, PSH) set.
fn with_flags(
    b: etherparse::PacketBuilderStep<etherparse::TcpHeader>,
    flags: u8,
) -> etherparse::PacketBuilderStep<etherparse::TcpHeader> {
    let b = if flags & SYN != 0 { b.syn() } else { b };
    let b = if flags & ACK != 0 { b.ack(5001) } else { b };
    let b = if flags & 0x01 != 0 { b.fin() } else { b };
    let b = if flags & 0x04 != 0 { b.rst() } else { b };
    if flags & 0x08 != 0 {
        b.psh()
    } else {
        b
    }
}

/// An IPv6 TCP frame with `flags` from `src` to `dst`, between `macs`, flawed as `flaw` says
/// (IPv4's flaws in IPv6's terms: a bad version for a bad header checksum, an extension header
/// for options, a fragment header for a fragment).
fn frame6(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    flags: u8,
    payload: usize,
    flaw: Flaw,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv6(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1000, 64000);
    let b = with_flags(b, flags);
    let b = if let Flaw::TcpOptions = flaw {
        b.options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1400)])
            .unwrap()
    } else {
        b
    };
    let mut v = Vec::new();
    b.write(&mut v, &vec![0x5a; payload]).unwrap();
    // An 8-byte extension header in front of the TCP header: next header TCP, the rest `rest`.
    let extend = |v: &mut Vec<u8>, kind: u8, rest: [u8; 6]| {
        let mut h = vec![6, 0];
        h.extend_from_slice(&rest);
        v.splice(54..54, h);
        v[20] = kind;
        let len = u16::from_be_bytes([v[18], v[19]]) + 8;
        v[18..20].copy_from_slice(&len.to_be_bytes());
    };
    match flaw {
        Flaw::IpChecksum => v[14] = 0x40 | (v[14] & 0x0F),
        Flaw::TcpChecksum => v[70] ^= 0x01,
        Flaw::OtherMac => v[5] ^= 0x40,
        // Destination options, one PadN.
        Flaw::IpOptions => extend(&mut v, 60, [1, 4, 0, 0, 0, 0]),
        // A first fragment, more to come.
        Flaw::Fragment => extend(&mut v, 44, [0, 1, 0, 0, 0, 7]),
        Flaw::Padding => v.extend_from_slice(&[0; 6]),
        Flaw::Truncated => v.truncate(70),
        Flaw::BadDataOffset => v[66] = (v[66] & 0x0F) | 0xF0,
        Flaw::Broadcast => v[..6].copy_from_slice(&[0xFF; 6]),
        Flaw::None | Flaw::TcpOptions => {}
    }
    v
}

/// A TCP frame with `flags` from `src` to `dst`, between `macs`, flawed as `flaw` says.
fn frame(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
    payload: usize,
    flaw: Flaw,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1).ipv4(src.0.octets(), dst.0.octets(), 64);
    let b = b.tcp(src.1, dst.1, 1000, 64000);
    let b = with_flags(b, flags);
    let b = if let Flaw::TcpOptions = flaw {
        b.options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1400)])
            .unwrap()
    } else {
        b
    };
    let mut v = Vec::new();
    b.write(&mut v, &vec![0x5a; payload]).unwrap();
    match flaw {
        Flaw::IpChecksum => v[24] ^= 0x01,
        Flaw::TcpChecksum => v[50] ^= 0x01,
        Flaw::OtherMac => v[5] ^= 0x40,
        Flaw::Fragment => {
            // MF set: the checksum follows the flags word.
            v[20] |= 0x20;
            let c = u16::from_be_bytes([v[24], v[25]]).wrapping_sub(0x2000);
            v[24..26].copy_from_slice(&c.to_be_bytes());
            fix_ip_checksum(&mut v);
        }
        Flaw::IpOptions => {
            // A 4-byte NOP option: IHL 6, total length + 4.
            v.splice(34..34, [1, 1, 1, 0]);
            v[14] = 0x46;
            let total = u16::from_be_bytes([v[16], v[17]]) + 4;
            v[16..18].copy_from_slice(&total.to_be_bytes());
            fix_ip_checksum(&mut v);
        }
        Flaw::Padding => v.extend_from_slice(&[0; 6]),
        Flaw::Truncated => v.truncate(50),
        Flaw::BadDataOffset => v[46] = (v[46] & 0x0F) | 0xF0,
        Flaw::Broadcast => v[..6].copy_from_slice(&[0xFF; 6]),
        Flaw::None | Flaw::TcpOptions => {}
    }
    v
}

fn fix_ip_checksum(v: &mut [u8]) {
    crate::wire::Ipv4Packet::new_unchecked(&mut v[14..]).fill_checksum();
}

/// What a datapath holds that the fast path could change: every counter (the real servers'
/// active and inactive connections too), every connection, the frames it generated.
fn state(dp: &mut Datapath<VecBuf>) -> String {
    let mut stats = dp.l3.stats.clone();
    stats.fast_path = 0;
    let mut generated = Vec::new();
    dp.l3
        .take_generated(|g| generated.push(format!("{} {:02x?}", g.port, g.bytes())));
    // As a set: the timers go through the neighbour table in its hash order, which differs
    // from one datapath to another.
    generated.sort();
    let servers: Vec<String> = dp
        .fwd
        .services()
        .services
        .iter()
        .flat_map(|vs| (0..vs.svc.len()).filter_map(|i| vs.svc.stats(i)))
        .map(|s| format!("{}/{}", s.active(), s.inactive()))
        .collect();
    // The per-real-server traffic counters (`ipvsadm --stats`), which the fast path counts too.
    let traffic: Vec<String> = dp
        .fwd
        .traffic_entries()
        .map(|(k, t)| format!("{k:?} {t:?}"))
        .collect();
    let conns: Vec<String> = dp
        .fwd
        .table()
        .iter()
        .map(|(id, c)| format!("{id:?} {c:?}"))
        .chain(dp.v6.conns.iter().map(|(id, c)| format!("v6 {id:?} {c:?}")))
        .collect();
    format!(
        "{:?}\n{:?}\n{}\n{}\n{}\n{}",
        stats,
        dp.fwd.stats,
        traffic.join("\n"),
        conns.join("\n"),
        servers.join(" "),
        generated.join("\n")
    )
}

/// Switches the services between `config()` and a variant of it: the FullNAT services lose their
/// second LIP, the TCP one its second real server (whose connections lose their server), the NAT
/// service gets another real server (replies from the first are no longer NAT replies); the same
/// for the IPv6 FullNAT service's second LIP and real server.
fn reconfigure(dp: &mut Datapath<VecBuf>) {
    let old = dp.fwd.services().clone();
    let text = if old.generation % 2 == 1 {
        config()
            .replace(
                r#"local_addresses = ["10.20.0.200", "10.20.0.201"]"#,
                r#"local_addresses = ["10.20.0.200"]"#,
            )
            .replacen("[[service.real]]\naddress = \"10.20.0.12\"\n", "", 1)
            .replace(
                "address = \"10.20.0.11\"\nport = 80\nmode",
                "address = \"10.20.0.13\"\nport = 80\nmode",
            )
            .replace(
                r#"local_addresses = ["2001:db8:20::200", "2001:db8:20::201"]"#,
                r#"local_addresses = ["2001:db8:20::200"]"#,
            )
            .replacen(
                "[[service.real]]\naddress = \"2001:db8:20::12\"\nport = 80\n",
                "",
                1,
            )
    } else {
        config()
    };
    let v = crate::config::Config::parse(&text)
        .and_then(|c| c.validate())
        .expect("variant config");
    let new = crate::forward::ServiceTable::new(old.generation + 1, v.services, Some(&old))
        .expect("services");
    let prepared = dp
        .fwd
        .prepare_services(std::sync::Arc::new(new))
        .expect("prepared");
    dp.commit_services(prepared);
}

/// One step of a recorded run.
enum Step {
    Frame(Vec<u8>, RxMeta),
    Reconfigure,
    /// Time moves to this many ms and the timers run (`Datapath::tick`).
    Tick(u64),
}

/// Carries out a step that is not a frame.
fn control(dp: &mut Datapath<VecBuf>, step: &Step) {
    match step {
        Step::Reconfigure => reconfigure(dp),
        Step::Tick(now) => dp.tick(*now),
        Step::Frame(..) => {}
    }
}

/// Worker 0 of `workers` (with two, a client or a reply the other worker owns is handed to it).
fn datapath(fast: bool, workers: usize) -> Datapath<VecBuf> {
    let mut dp = datapath_from(&config(), 0, workers, 1 << 10);
    dp.set_fast_path(fast);
    // The IPv6 neighbours, so that packets to them leave at once.
    for (ip, mac, port) in [
        (CLIENT6, CLIENT_MAC, 0),
        (RS1_6, RS1_MAC, 1),
        (RS2_6, RS2_MAC, 1),
    ] {
        dp.v6
            .neigh
            .learn(ip, mac, port, 0, true, true, |_, _, _| {});
    }
    dp
}

/// Plays `events` through the general path, one frame at a time, and records each frame, its
/// meta and its outcome. A real server answers from where the gateway sent its flow's last
/// segment.
/// A frame's verdict and bytes (`datapath::tests::outcome`).
type Outcome = (String, Vec<u8>);

/// A real server's side of a flow: its MAC, its endpoint and the gateway's.
#[derive(Clone, Copy)]
enum ServerSide {
    V4([u8; 6], (Ipv4Addr, u16), (Ipv4Addr, u16)),
    V6([u8; 6], (Ipv6Addr, u16), (Ipv6Addr, u16)),
}

impl ServerSide {
    /// The side a client's segment `o` went out to, as the gateway sent it toward the server.
    fn of(o: &[u8]) -> ServerSide {
        let ip = |i: usize| Ipv4Addr::new(o[i], o[i + 1], o[i + 2], o[i + 3]);
        let ip6 = |i: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&o[i..i + 16]).unwrap());
        let port = |i: usize| u16::from_be_bytes([o[i], o[i + 1]]);
        let mac = [o[0], o[1], o[2], o[3], o[4], o[5]];
        if super::is_ipv6(o) {
            ServerSide::V6(mac, (ip6(38), port(56)), (ip6(22), port(54)))
        } else {
            ServerSide::V4(mac, (ip(30), port(36)), (ip(26), port(34)))
        }
    }

    /// The server's segment back to the gateway.
    fn frame(self, flags: u8, payload: usize, flaw: Flaw) -> Vec<u8> {
        match self {
            ServerSide::V4(mac, from, to) => {
                frame((mac, SERVER_PORT_MAC.0), from, to, flags, payload, flaw)
            }
            ServerSide::V6(mac, from, to) => {
                frame6((mac, SERVER_PORT_MAC.0), from, to, flags, payload, flaw)
            }
        }
    }
}

fn play(events: &[Event], workers: usize) -> (Vec<Step>, Vec<Outcome>, String) {
    let mut dp = datapath(false, workers);
    // Per flow: the endpoints of its connection on the server side, once the gateway sent one.
    let mut server_side: std::collections::HashMap<(u8, u8), ServerSide> = Default::default();
    let (mut frames, mut outs) = (Vec::new(), Vec::new());
    let mut now = 0u64;
    for e in events {
        if e.reconfigure || e.tick > 0 {
            let step = if e.reconfigure {
                Step::Reconfigure
            } else {
                now += u64::from(e.tick) * 1000;
                Step::Tick(now)
            };
            control(&mut dp, &step);
            frames.push(step);
            continue;
        }
        let key = (e.flow, e.dest);
        let side = server_side.get(&key).filter(|_| e.from_server);
        let payload = e.payload.into();
        let (f, port) = match side {
            Some(side) => (side.frame(e.flags, payload, e.flaw), 1),
            None if usize::from(e.dest) >= DESTS.len() => (
                frame6(
                    (CLIENT_MAC.0, CLIENT_PORT_MAC.0),
                    (CLIENT6, 40000 + u16::from(e.flow)),
                    DESTS6[usize::from(e.dest) - DESTS.len()],
                    e.flags,
                    payload,
                    e.flaw,
                ),
                0,
            ),
            None => (
                frame(
                    (CLIENT_MAC.0, CLIENT_PORT_MAC.0),
                    (CLIENT_IP, 40000 + u16::from(e.flow)),
                    DESTS[usize::from(e.dest)],
                    e.flags,
                    e.payload.into(),
                    e.flaw,
                ),
                0,
            ),
        };
        let (ip_csum, l4_csum) = match e.nic {
            1 => (CsumStatus::Good, CsumStatus::Good),
            2 => (CsumStatus::Unknown, CsumStatus::Bad),
            3 => (CsumStatus::Bad, CsumStatus::Unknown),
            4 => (CsumStatus::Good, CsumStatus::Unknown),
            5 => (CsumStatus::Unknown, CsumStatus::Good),
            _ => (CsumStatus::Unknown, CsumStatus::Unknown),
        };
        let meta = RxMeta {
            port,
            ip_csum,
            l4_csum,
            from_peer: e.from_peer,
            ..Default::default()
        };
        let out = outcome(dp.process(VecBuf::from_frame(&f), &meta));
        if port == 0 && out.0 == "tx1" && out.1.len() >= 58 {
            server_side.insert(key, ServerSide::of(&out.1));
        }
        frames.push(Step::Frame(f, meta));
        outs.push(out);
    }
    assert_eq!(
        dp.l3.stats.fast_path, 0,
        "the fast paths took a frame while off"
    );
    (frames, outs, state(&mut dp))
}

/// The fast path's outcomes and state for `events` are the general path's (`play`), one by one
/// and in bursts of `burst`.
fn fast_matches_general(events: &[Event], burst: usize, workers: usize) {
    let (frames, want, want_state) = play(events, workers);

    let mut single = datapath(true, workers);
    let mut got = Vec::new();
    for step in &frames {
        match step {
            Step::Frame(f, m) => got.push(outcome(single.process(VecBuf::from_frame(f), m))),
            step => control(&mut single, step),
        }
    }
    assert_eq!(&got, &want);
    assert_eq!(state(&mut single), want_state.clone());

    let mut bursts = datapath(true, workers);
    let mut got = Vec::new();
    // Bursts of frames between the other steps.
    let mut run: Vec<(&Vec<u8>, RxMeta)> = Vec::new();
    for step in frames.iter().chain([&Step::Tick(u64::MAX)]) {
        if let Step::Frame(f, m) = step {
            run.push((f, *m));
            continue;
        }
        for chunk in run.chunks(burst) {
            let mut pkts: Vec<Option<VecBuf>> = chunk
                .iter()
                .map(|(f, _)| Some(VecBuf::from_frame(f)))
                .collect();
            let metas: Vec<RxMeta> = chunk.iter().map(|(_, m)| *m).collect();
            let mut out: Vec<Option<Verdict<VecBuf>>> = (0..chunk.len()).map(|_| None).collect();
            bursts.process_burst(&mut pkts, &metas, &mut out);
            got.extend(
                out.into_iter()
                    .map(|v| outcome(v.expect("a verdict per frame"))),
            );
        }
        run.clear();
        if !matches!(step, Step::Tick(u64::MAX)) {
            control(&mut bursts, step);
        }
    }
    assert_eq!(&got, &want);
    assert_eq!(state(&mut bursts), want_state);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of frames: the fast path's outcomes and state are the general path's, one
    /// by one and in bursts of any size.
    #[test]
    fn the_fast_path_changes_nothing_but_the_cost(
        events in prop::collection::vec(event(), 1..100),
        burst in 1usize..=32,
        workers in 1usize..=2,
    ) {
        fast_matches_general(&events, burst, workers);
    }
}

/// Flow `flow` to the IPv6 FullNAT service (`DESTS6[1]`): (from the server, TCP flags) each.
fn ipv6_flow(flow: u8, steps: &[(bool, u8)]) -> impl Iterator<Item = Event> + '_ {
    steps.iter().map(move |&(from_server, flags)| Event {
        reconfigure: false,
        tick: 0,
        flow,
        dest: (DESTS.len() + 1) as u8,
        from_server,
        flags,
        payload: 10,
        flaw: Flaw::None,
        nic: 0,
        from_peer: false,
    })
}

/// The IPv6 hot path leaves what would not keep a connection as it was to the general path:
/// plain ACKs after a FIN (the state is FIN_WAIT, its timeout shorter than ESTABLISHED's), and
/// plain ACKs once the services changed under the connection: a reply to a local address no
/// longer configured, a client's segment whose real server was removed. It fails with any of
/// these checks taken out of `inet6::hot`.
#[test]
fn ipv6_plain_acks_the_hot_path_must_leave() {
    const OPEN: [(bool, u8); 3] = [(false, SYN), (true, SYN | ACK), (false, ACK)];
    const PLAIN: [(bool, u8); 3] = [(true, ACK), (false, ACK), (true, ACK)];
    let mut fin: Vec<Event> = ipv6_flow(0, &OPEN).collect();
    fin.extend(ipv6_flow(
        0,
        &[(false, ACK | 0x01), (true, ACK), (false, ACK)],
    ));
    // Round robin: flows 0 and 2 reach the first real server from the first local address,
    // flow 1 the second from the second, both of which the variant removes.
    let mut changed: Vec<Event> = (0..3).flat_map(|f| ipv6_flow(f, &OPEN)).collect();
    changed.extend((0..3).flat_map(|f| ipv6_flow(f, &PLAIN)));
    let switch = Event {
        reconfigure: true,
        ..changed[0].clone()
    };
    changed.insert(9, switch);
    changed.extend((0..3).flat_map(|f| ipv6_flow(f, &PLAIN)));
    for workers in 1..=2 {
        for burst in [1, 32] {
            fast_matches_general(&fin, burst, workers);
            fast_matches_general(&changed, burst, workers);
        }
    }
}

/// A FullNAT connection from the client's port 40000, opened by its SYN and the real server's
/// SYN-ACK: a segment `flags` with `payload` bytes and `flaw` from the client (`client`, the
/// SYN's flow), and one from the server, give their frames.
struct Opened {
    client: Box<dyn Fn(u8, usize, Flaw) -> Vec<u8>>,
    server: ServerSide,
}

impl Opened {
    fn client_segment(&self, flags: u8, payload: usize, flaw: Flaw) -> Vec<u8> {
        (self.client)(flags, payload, flaw)
    }

    fn server_segment(&self, flags: u8, payload: usize, flaw: Flaw) -> Vec<u8> {
        self.server.frame(flags, payload, flaw)
    }
}

/// Opens the connection `from_client` builds the client's segments of.
fn open_with(
    dp: &mut Datapath<VecBuf>,
    from_client: Box<dyn Fn(u8, usize, Flaw) -> Vec<u8>>,
) -> Opened {
    let syn = from_client(SYN, 0, Flaw::None);
    let (port, out) = outcome(dp.process(VecBuf::from_frame(&syn), &RxMeta::default()));
    assert_eq!(port, "tx1");
    let server = ServerSide::of(&out);
    let answer = server.frame(SYN | ACK, 0, Flaw::None);
    assert_eq!(
        outcome(dp.process(VecBuf::from_frame(&answer), &SERVER)).0,
        "tx0"
    );
    Opened {
        client: from_client,
        server,
    }
}

/// `open_with` to VIP:80.
fn open(dp: &mut Datapath<VecBuf>) -> Opened {
    let to_client = (CLIENT_MAC.0, CLIENT_PORT_MAC.0);
    open_with(
        dp,
        Box::new(move |flags, payload, flaw| {
            frame(
                to_client,
                (CLIENT_IP, 40000),
                (VIP, 80),
                flags,
                payload,
                flaw,
            )
        }),
    )
}

/// `open_with` to the IPv6 VIP's port 8083.
fn open6(dp: &mut Datapath<VecBuf>) -> Opened {
    let to_vip = (CLIENT_MAC.0, CLIENT_PORT_MAC.0);
    open_with(
        dp,
        Box::new(move |flags, payload, flaw| {
            frame6(to_vip, (CLIENT6, 40000), (VIP6, 8083), flags, payload, flaw)
        }),
    )
}

/// What a real server's frame arrives with.
const SERVER: RxMeta = RxMeta {
    port: 1,
    ..crate::testkit::flows::META
};

/// The fast path is taken: established segments both ways leave through it, and a frame it
/// must not take (a SYN on a new connection) still opens one.
#[test]
fn established_segments_take_the_fast_path() {
    let mut dp = datapath(true, 1);
    let c = open(&mut dp);
    let before = dp.l3.stats.fast_path;
    let ack = c.client_segment(ACK, 10, Flaw::None);
    assert_eq!(
        outcome(dp.process(VecBuf::from_frame(&ack), &RxMeta::default())).0,
        "tx1"
    );
    let data = c.server_segment(ACK, 100, Flaw::None);
    assert_eq!(
        outcome(dp.process(VecBuf::from_frame(&data), &SERVER)).0,
        "tx0"
    );
    assert_eq!(dp.l3.stats.fast_path, before + 2);
}

/// A timeout shortened after a connection's timer was armed takes effect at its next plain
/// ACK, which the hot path takes: the timer, armed for a later deadline, moves in the wheel
/// (`ConnTable::refresh_established`), not only in the entry (`HotDeadline::refresh`).
#[test]
fn a_shortened_timeout_takes_effect_at_the_next_plain_ack() {
    let mut dp = datapath(true, 1);
    let c = open(&mut dp);
    let ack = c.client_segment(ACK, 0, Flaw::None);
    let sent = |dp: &mut Datapath<VecBuf>| {
        outcome(dp.process(VecBuf::from_frame(&ack), &RxMeta::default())).0
    };
    // The handshake's last ACK: ESTABLISHED, 15 minutes.
    assert_eq!(sent(&mut dp), "tx1");
    let timeouts = dp.fwd.table().timeouts();
    dp.fwd.set_timeouts(crate::conn::Timeouts {
        established: 10,
        ..timeouts
    });
    let before = dp.l3.stats.fast_path;
    assert_eq!(sent(&mut dp), "tx1");
    assert_eq!(dp.l3.stats.fast_path, before + 1, "the hot path took it");
    dp.tick(9_000);
    assert_eq!(dp.fwd.table().len(), 1, "not yet");
    dp.tick(12_000);
    assert_eq!(dp.fwd.table().len(), 0, "expired at the shortened timeout");
}

/// Whether the TCP checksum of an IPv4 or IPv6 frame out of the gateway verifies.
fn tcp_checksum_verifies(frame: &[u8]) -> bool {
    if super::is_ipv6(frame) {
        let ip6 = |i: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&frame[i..i + 16]).unwrap());
        let l4 = &frame[54..];
        return crate::wire::ipv6::l4_checksum(ip6(22), ip6(38), crate::wire::IpProtocol::TCP, l4)
            == 0;
    }
    let parsed = crate::wire::parse_l3l4(frame).expect("an IPv4 TCP frame");
    crate::wire::verify_ipv4_l4_checksum(frame, parsed.l3_off, &parsed.ip.unwrap())
}

/// A new snapshot of `dp`'s services in the reverse order, committed as a worker commits it: every
/// service's index moves, and both connection tables follow lazily.
fn reverse_services(dp: &mut Datapath<VecBuf>) {
    let old = Arc::clone(dp.fwd.services());
    let specs: Vec<_> = old
        .services
        .iter()
        .rev()
        .map(|vs| {
            let opts = crate::forward::SvcOptions {
                toa: vs.toa,
                lips6: vs.lips6.clone(),
                ..Default::default()
            };
            (vs.svc.config().clone(), vs.lips.clone(), opts)
        })
        .collect();
    let new = crate::forward::ServiceTable::new(old.generation + 1, specs, Some(&old)).unwrap();
    let prepared = dp.fwd.prepare_services(Arc::new(new)).unwrap();
    dp.commit_services(prepared);
}

/// A plain ACK of an established connection goes on whatever its TCP checksum, the error kept
/// for its receiver by the rewrite's incremental update (RFC 1624), on both paths and in both
/// families; a segment that could change the connection's state (the ACK that ends the
/// handshake, a FIN, an RST) is dropped with a bad checksum, and the connection stays as it was.
#[test]
fn bad_checksums_go_on_in_plain_acks_and_are_dropped_where_the_state_could_change() {
    const FIN: u8 = 0x01;
    const RST: u8 = 0x04;
    const PSH: u8 = 0x08;
    let client = RxMeta::default();
    let opens: [fn(&mut Datapath<VecBuf>) -> Opened; 2] = [open, open6];
    for (fast, open) in [false, true]
        .into_iter()
        .flat_map(|f| opens.map(|o| (f, o)))
    {
        let mut dp = datapath(fast, 1);
        let c = open(&mut dp);
        let table = |dp: &Datapath<VecBuf>| {
            format!(
                "{:?} {:?}",
                dp.fwd.table().iter().collect::<Vec<_>>(),
                dp.v6.conns.iter().collect::<Vec<_>>()
            )
        };
        // Dropped with the reason the worker counts (`l4_bad_checksum`).
        let bad = |dp: &mut Datapath<VecBuf>, f: Vec<u8>, meta: &RxMeta| {
            let (verdict, _) = outcome(dp.process(VecBuf::from_frame(&f), meta));
            assert_eq!(verdict, "drop Dp(L4BadChecksum)", "fast path {fast}");
        };
        // The client's ACK that ends the handshake establishes the connection: verified.
        let before = table(&dp);
        bad(
            &mut dp,
            c.client_segment(ACK, 0, Flaw::TcpChecksum),
            &client,
        );
        assert_eq!(table(&dp), before);
        for (f, meta, port) in [
            (c.client_segment(ACK, 10, Flaw::None), &client, "tx1"),
            (c.server_segment(ACK | PSH, 100, Flaw::None), &SERVER, "tx0"),
        ] {
            let (verdict, out) = outcome(dp.process(VecBuf::from_frame(&f), meta));
            assert_eq!(verdict, port);
            assert!(tcp_checksum_verifies(&out));
        }
        // Established: plain ACKs with a bad checksum go on, still bad, both ways; and so after a
        // change that moves every service, before any walk (`conn::rebind`: the entry is
        // settled before its indices are read, `get_settled` asserts it).
        for moved in [false, true] {
            if moved {
                reverse_services(&mut dp);
                assert!(dp.fwd.table().rebinding() || dp.v6.conns.rebinding());
            }
            for (f, meta, port) in [
                (
                    c.client_segment(ACK | PSH, 10, Flaw::TcpChecksum),
                    &client,
                    "tx1",
                ),
                (
                    c.server_segment(ACK, 100, Flaw::TcpChecksum),
                    &SERVER,
                    "tx0",
                ),
                (c.client_segment(ACK, 0, Flaw::TcpChecksum), &client, "tx1"),
            ] {
                let (verdict, out) = outcome(dp.process(VecBuf::from_frame(&f), meta));
                assert_eq!(verdict, port, "fast path {fast}, moved {moved}");
                assert!(!tcp_checksum_verifies(&out), "fast path {fast}");
            }
        }
        // A FIN or an RST with a bad checksum, either way, changes nothing.
        let before = table(&dp);
        bad(
            &mut dp,
            c.client_segment(ACK | FIN, 0, Flaw::TcpChecksum),
            &client,
        );
        bad(
            &mut dp,
            c.server_segment(ACK | FIN, 0, Flaw::TcpChecksum),
            &SERVER,
        );
        bad(
            &mut dp,
            c.client_segment(RST, 0, Flaw::TcpChecksum),
            &client,
        );
        bad(
            &mut dp,
            c.server_segment(ACK | RST, 0, Flaw::TcpChecksum),
            &SERVER,
        );
        assert_eq!(table(&dp), before);
    }
}

/// The IPv6 fast path is taken: established segments of an IPv6 FullNAT connection leave
/// through it both ways, one by one and in a burst; the SYN that opens it does not count.
#[test]
fn established_ipv6_segments_take_the_fast_path() {
    let mut dp = datapath(true, 1);
    let client = (CLIENT6, 40000);
    let vip = (VIP6, 8083);
    let to_vip = (CLIENT_MAC.0, CLIENT_PORT_MAC.0);
    let syn = frame6(to_vip, client, vip, SYN, 0, Flaw::None);
    let meta = RxMeta::default();
    let (port, o) = outcome(dp.process(VecBuf::from_frame(&syn), &meta));
    assert_eq!(port, "tx1");
    assert_eq!(dp.l3.stats.fast_path, 0, "a SYN opening a connection");
    let ip6 = |i: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&o[i..i + 16]).unwrap());
    let (lip, rip) = (ip6(22), ip6(38));
    let lport = u16::from_be_bytes([o[54], o[55]]);
    let mac = [o[0], o[1], o[2], o[3], o[4], o[5]];
    let from_rs = |flags, payload| {
        frame6(
            (mac, SERVER_PORT_MAC.0),
            (rip, 80),
            (lip, lport),
            flags,
            payload,
            Flaw::None,
        )
    };
    let server = RxMeta { port: 1, ..meta };
    let (port, back) = outcome(dp.process(VecBuf::from_frame(&from_rs(SYN | ACK, 0)), &server));
    assert_eq!(port, "tx0");
    assert_eq!(&back[22..38], &VIP6.octets(), "from the VIP");
    assert_eq!(dp.l3.stats.fast_path, 1, "the server's SYN-ACK");
    let ack = frame6(to_vip, client, vip, ACK, 10, Flaw::None);
    assert_eq!(
        outcome(dp.process(VecBuf::from_frame(&ack), &meta)).0,
        "tx1"
    );
    assert_eq!(dp.l3.stats.fast_path, 2);
    // A burst of both sides' segments, an IPv4 frame for no service between them.
    let frames = [
        (from_rs(ACK, 100), server),
        (
            frame(to_vip, (CLIENT_IP, 1), (VIP, 81), ACK, 0, Flaw::None),
            meta,
        ),
        (ack.clone(), meta),
    ];
    let mut pkts: Vec<Option<VecBuf>> = frames
        .iter()
        .map(|(f, _)| Some(VecBuf::from_frame(f)))
        .collect();
    let metas: Vec<RxMeta> = frames.iter().map(|(_, m)| *m).collect();
    let mut out: Vec<Option<Verdict<VecBuf>>> = (0..frames.len()).map(|_| None).collect();
    dp.process_burst(&mut pkts, &metas, &mut out);
    let ports: Vec<String> = out.into_iter().map(|v| outcome(v.unwrap()).0).collect();
    assert_eq!(ports[0], "tx0");
    assert_eq!(ports[2], "tx1");
    assert_eq!(dp.l3.stats.fast_path, 4);
}
