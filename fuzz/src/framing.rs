// The framing of the datapath fuzz target and its runner, shared by
// `fuzz/fuzz_targets/datapath.rs` and `gateway/tests/fuzz_replay.rs` (both `include!` this file, so
// a corpus file means the same thing to libFuzzer and to `cargo test`).
//
// An input is a sequence of records, each
//
//     len: u16 (big endian) | ctl: u8 | frame: len bytes (cut short at the end of the input)
//
// with `ctl` bit 0 = receive port (0 client side, 1 server side), bit 1 = `from_peer`, bit 2 = the
// worker (of two) that receives it, bits 3..8 = time to move forward before the frame, in 250 ms
// steps (both workers tick). Frames a worker hands to the other (`Verdict::ToWorker`) are delivered
// at once with `from_peer`, as the ring would.
//
// A record whose frame starts with the sync protocol's magic ("GWSY", `gateway::sync::wire`) is a
// sync message from the HA peer instead, header and body as the fuzzer wrote them: the runner
// appends its MAC under the peer's key ([`FUZZ_SYNC_KEY`]), opens it as the sync thread does (one
// receiver per input, so replays are refused), and installs the records it carries as the
// receiving worker does (`WorkerSync::install`, the records it does not own passed to their owner).
// Frames that follow reach the connections it installed. The port and `from_peer` bits are unused.
//
// A record whose frame starts with "GWCF" ([`CHANGE_MAGIC`]) is a configuration change instead, as
// the control plane commits one: the byte after the magic picks the services ([`CHANGE_VARIANTS`]:
// the fuzz config, or it with a real server removed, one added, services removed or moved, a
// local address replaced or retiring) that both workers adopt (`prepare_services`,
// `commit_services`, the topology built from them), and the byte after that, if any, how many
// slots of each connection
// table the harness walks for the change after each group of records and each tick ([`WALKS`];
// 1024 until one says otherwise, 0 never, so that changes pile up). Connections follow a change
// lazily (`conn::rebind`): before and after each change, and at the end, every connection must
// name the service its client tuple was sent to and the real server its replies come from
// ([`check_bindings`]), and keep every binding the change could keep ([`check_kept`]).
//
// The runner checks what must hold whatever the input: no panic; one verdict per frame; every
// frame sent or generated parses as a valid frame with valid IPv4 and L4 checksums (but a plain ACK
// forwarded with the bad L4 checksum it came in with: `check_emitted`); a handed-over frame is
// never handed over again; the rx counters add up.

use gateway::datapath::Datapath;

use gateway::packet::Verdict;
use gateway::packet::{PacketBuf, RxMeta, VecBuf};
use gateway::wire::{parse_l3l4, verify_l4_checksum, EtherType};

/// Bytes before each frame: length (2) and control (1).
pub const RECORD_HEADER: usize = 3;
/// Time step of the control byte's upper bits.
pub const TICK_STEP_MS: u64 = 250;
/// Connections per worker: small, so that a short input can fill the table.
pub const FUZZ_CAPACITY: u32 = 64;
/// The HA peers' shared sync key.
pub const FUZZ_SYNC_KEY: &[u8] = b"fuzzed sync peer";

/// Whether a record's frame is a sync message (see the framing above).
pub fn is_sync(frame: &[u8]) -> bool {
    frame.starts_with(&gateway::sync::wire::MAGIC)
}

/// The first bytes of a configuration change record (see the framing above).
pub const CHANGE_MAGIC: &[u8; 4] = b"GWCF";

/// Whether a record's frame is a configuration change.
pub fn is_change(frame: &[u8]) -> bool {
    frame.starts_with(CHANGE_MAGIC)
}

/// Whether a record is a frame for the datapath (not a sync message nor a change).
fn is_frame(frame: &[u8]) -> bool {
    !is_sync(frame) && !is_change(frame)
}

/// One decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub port: u16,
    pub from_peer: bool,
    pub worker: usize,
    pub advance_ms: u64,
    pub frame: &'a [u8],
}

impl Record<'_> {
    /// Appends the record's encoding to `out` (the frame must fit in 64 KiB).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let len = u16::try_from(self.frame.len()).expect("frame under 64 KiB");
        let steps = self.advance_ms / TICK_STEP_MS;
        assert!(
            steps < 32 && steps * TICK_STEP_MS == self.advance_ms,
            "advance {}",
            self.advance_ms
        );
        let ctl = (self.port as u8 & 1)
            | (u8::from(self.from_peer) << 1)
            | ((self.worker as u8 & 1) << 2)
            | ((steps as u8) << 3);
        out.extend_from_slice(&len.to_be_bytes());
        out.push(ctl);
        out.extend_from_slice(self.frame);
    }
}

/// The records of an input, in order. A trailing piece shorter than a record header is ignored.
pub struct Records<'a>(pub &'a [u8]);

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let [hi, lo, ctl, rest @ ..] = self.0 else {
            self.0 = &[];
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        let (frame, tail) = rest.split_at(len);
        self.0 = tail;
        Some(Record {
            port: u16::from(ctl & 1),
            from_peer: ctl & 2 != 0,
            worker: usize::from((ctl >> 2) & 1),
            advance_ms: u64::from(ctl >> 3) * TICK_STEP_MS,
            frame,
        })
    }
}

/// The SYN-proxied service of the fuzzed datapaths.
pub const SYNPROXY_SERVICE: &str =
    "[[service]]\nvip = \"10.10.0.100\"\nport = 8081\nprotocol = \"tcp\"\n\
    scheduler = \"rr\"\nlocal_addresses = [\"10.20.0.200\"]\nsynproxy = \"on\"\n\
    [[service.real]]\naddress = \"10.20.0.11\"\nport = 80\n";

/// The SYN-proxied IPv6 FullNAT service of the fuzzed datapaths (`inet6::proxied`).
pub const SYNPROXY_SERVICE6: &str = "[[service]]\nvip = \"2001:db8:10::100\"\nport = 8081\n\
    protocol = \"tcp\"\nscheduler = \"rr\"\nlocal_addresses = [\"2001:db8:20::200\"]\n\
    synproxy = \"on\"\n[[service.real]]\naddress = \"2001:db8:20::11\"\nport = 80\n";

/// The cookie key of the fuzzed datapaths (fixed, so that seeds can answer cookies).
pub const FUZZ_COOKIE_KEY: [u64; 4] = [1, 2, 3, 4];

/// Local ports the fuzzed workers share: few, so that building a datapath per input is cheap (the
/// testkit's 64K ports make it the bulk of each run) and port exhaustion is reachable.
pub const FUZZ_PORTS: std::ops::RangeInclusive<u16> = 1024..=1279;

/// The fuzzed datapaths' config: the lab's (the testkit's), dual stack, with the SYN proxy on
/// two more services and short timeouts.
fn fuzz_config_text() -> String {
    use gateway::testkit::*;
    // The TCP service retries refused SYNs (`syn_retry`), so the fuzzer drives that path too.
    let lab = LAB_CONFIG.replacen(
        "scheduler = \"wrr\"",
        "scheduler = \"wrr\"\nsyn_retry = true",
        1,
    );
    // Dual stack: IPv6 on both ports, an IPv6 VIP in DR (TCP) and TUN (UDP) (`inet6`).
    let lab = dual_stack(&lab) + IPV6_SERVICES;
    // VIP:8081 runs the SYN proxy, and so does the IPv6 VIP's 8081; their seeds carry cookie
    // ACKs made with the testkit's fixed key, from which the fuzzer reaches the proxied paths
    // (held packets, translation).
    format!(
        "{lab}\n{SYNPROXY_SERVICE}\n{SYNPROXY_SERVICE6}\n[conn]\nsyn_unanswered_ms = 500\n[conn.timeouts]\nestablished = 3\nsyn_recv = 2\n\
         fin_wait = 2\ntime_wait = 2\nclose = 1\nclose_wait = 2\nlast_ack = 2\nsyn_sent = 2\n\
         synack = 2\nudp = 2\n"
    )
}

/// How many services a change record picks from ([`variant_text`]).
pub const CHANGE_VARIANTS: u8 = 10;

/// The text of the fuzz config's variant `k` (below [`CHANGE_VARIANTS`]), what a change record
/// commits: the config itself (0), or it changed as an operator changes a running balancer,
/// every VIP kept (so that the ports' addresses stay as they are); the last two change local
/// addresses (a new pool, a local address gone with its connections' replies, or kept retiring:
/// [`variant`] says so, as the control plane's `ipvsadm -Q` does).
pub fn variant_text(k: u8) -> String {
    let base = fuzz_config_text();
    // The TCP service's real servers, as `LAB_CONFIG` has them (its UDP service's follow).
    let tcp_reals =
        "[[service.real]]\naddress = \"10.20.0.11\"\n[[service.real]]\naddress = \"10.20.0.12\"\n";
    let tcp_head = "[[service]]\nvip = \"10.10.0.100\"\nport = 80\nprotocol = \"tcp\"\n";
    let udp_head = "[[service]]\nvip = \"10.10.0.100\"\nport = 80\nprotocol = \"udp\"\n";
    let edit = |from: &str, to: &str| {
        assert!(
            base.contains(from),
            "variant {k}: {from:?} not in the fuzz config"
        );
        base.replacen(from, to, 1)
    };
    // The text of the first service block that starts with `head` (up to the next block).
    let block = |head: &str| {
        let at = base.find(head).expect("a service of the fuzz config");
        let len = base[at + 1..]
            .find("\n[[service]]")
            .map_or(base.len() - at, |n| n + 2);
        base[at..at + len].to_string()
    };
    match k % CHANGE_VARIANTS {
        0 => base,
        // The TCP service's first real server removed.
        1 => edit(tcp_reals, "[[service.real]]\naddress = \"10.20.0.12\"\n"),
        // A new real server before the TCP service's second, its first removed, weights changed.
        2 => edit(
            tcp_reals,
            "[[service.real]]\naddress = \"10.20.0.13\"\nweight = 2\n\
             [[service.real]]\naddress = \"10.20.0.12\"\nweight = 3\n",
        ),
        // The UDP service removed.
        3 => edit(&block(udp_head), ""),
        // The two SYN-proxied services first: every other service two places further.
        4 => {
            let b = edit(SYNPROXY_SERVICE, "").replacen(SYNPROXY_SERVICE6, "", 1);
            format!("{SYNPROXY_SERVICE6}\n{SYNPROXY_SERVICE}\n{b}")
        }
        // The TCP service removed (its VIP and local addresses stay the UDP service's).
        5 => edit(&block(tcp_head), ""),
        // The IPv6 DR service's first real server removed.
        6 => edit(
            "[[service.real]]\naddress = \"2001:db8:20::11\"\nmode = \"dr\"\n",
            "",
        ),
        // The TCP service's second local address replaced by a new one (the UDP service keeps
        // both): its connections from 10.20.0.201 keep their entries, their replies now come to
        // an address of the UDP service only.
        8 => edit(
            "protocol = \"tcp\"\nscheduler = \"wrr\"\nsyn_retry = true\nlocal_addresses = [\"10.20.0.200\", \"10.20.0.201\"]",
            "protocol = \"tcp\"\nscheduler = \"wrr\"\nsyn_retry = true\nlocal_addresses = [\"10.20.0.200\", \"10.20.0.202\"]",
        ),
        // Both IPv4 services' second local address replaced by a new one, which `variant` keeps
        // retiring in both: no service has it in its pool, so only its retiring answers for it.
        RETIRING_VARIANT => {
            let from = "local_addresses = [\"10.20.0.200\", \"10.20.0.201\"]";
            let n = base.matches(from).count();
            assert_eq!(n, 2, "variant {k}: {from:?} in {n} services, not the two IPv4 ones");
            base.replace(
                from,
                &format!("local_addresses = [\"10.20.0.200\", \"{REPLACING_LIP}\"]"),
            )
        }
        // The TCP service's scheduler changed, and the UDP service moved before it.
        _ => {
            let udp = block(udp_head);
            edit(&udp, "")
                .replacen(tcp_head, &format!("{udp}{tcp_head}"), 1)
                .replacen("scheduler = \"wrr\"", "scheduler = \"lc\"", 1)
        }
    }
}

/// The change variant that keeps a local address retiring ([`variant`]).
pub const RETIRING_VARIANT: u8 = 9;

/// The local address [`RETIRING_VARIANT`] takes from both IPv4 services and keeps retiring.
pub const RETIRED_LIP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 20, 0, 201);

/// The local address [`RETIRING_VARIANT`] gives both IPv4 services in [`RETIRED_LIP`]'s place.
pub const REPLACING_LIP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 20, 0, 202);

/// Variant `k`'s config, parsed and validated once per process. Variant 9's services keep the
/// address its text takes from them retiring: answered, its connections' replies forwarded, no
/// new connection on it, as the control plane commits an `ipvsadm -Q` that takes an address in
/// use (`control::retire`), which config text cannot say.
pub fn variant(k: u8) -> &'static (gateway::config::Config, gateway::config::Validated) {
    static PARSED: std::sync::OnceLock<Vec<(gateway::config::Config, gateway::config::Validated)>> =
        std::sync::OnceLock::new();
    &PARSED.get_or_init(|| {
        (0..CHANGE_VARIANTS)
            .map(|k| {
                let text = variant_text(k);
                let cfg = gateway::config::Config::parse(&text)
                    .unwrap_or_else(|e| panic!("fuzz config variant {k}: {e}"));
                let mut v = cfg
                    .validate()
                    .unwrap_or_else(|e| panic!("fuzz config variant {k}: {e}"));
                if k == RETIRING_VARIANT {
                    // The services whose text took it: their pools have its replacement now.
                    let took = |lips: &Vec<std::net::Ipv4Addr>| lips.contains(&REPLACING_LIP);
                    for (.., opts) in v.services.iter_mut().filter(|(_, lips, _)| took(lips)) {
                        opts.retiring_lips = vec![RETIRED_LIP];
                    }
                }
                (cfg, v)
            })
            .collect()
    })[usize::from(k % CHANGE_VARIANTS)]
}

/// The fuzzed datapaths' topology inputs (the same for every variant: the ports do not change).
fn topo_inputs() -> gateway::control::topology::TopoInputs {
    use gateway::net::PortCtx;
    use gateway::testkit::*;
    let (cfg, v) = variant(0);
    let macs = [CLIENT_PORT_MAC, SERVER_PORT_MAC];
    let ports: Vec<PortCtx> = cfg
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| PortCtx {
            name: p.name.clone(),
            mac: macs[i],
            addrs: v.port_addrs[i].clone(),
            addrs6: v.port_addrs6[i].clone(),
            twin: p.twin != "none",
        })
        .collect();
    gateway::control::topology::TopoInputs {
        ports,
        routes: v.routes.clone(),
        routes6: v.routes6.clone(),
        kernel_owned: v.kernel_owned.iter().copied().collect(),
    }
}

/// The fuzzed datapaths: the lab's two workers (the testkit's config, MACs and neighbours) with
/// short timeouts (so expiry and its RSTs are reachable within an input), small tables and
/// [`FUZZ_PORTS`]. Built as `testkit::datapath_from` does, but over a smaller port range.
pub fn fuzz_datapaths() -> [Datapath<VecBuf>; 2] {
    use gateway::forward::{Forwarder, FwdConfig, ServiceTable};
    use gateway::laddr::{PortLayout, Steering};
    use gateway::testkit::*;
    use std::sync::Arc;

    // Parsed once per process: every input gets fresh datapaths from the same config.
    let (cfg, v) = variant(0);
    // One topology, service snapshot and layout shared by both workers, as the daemon does.
    let services = Arc::new(ServiceTable::new(1, v.services.clone(), None).expect("services"));
    let topo = Arc::new(gateway::control::topology::build(&topo_inputs(), None, &services).0);
    let layout = Arc::new(PortLayout::new(2, FUZZ_PORTS, Steering::Partition).expect("layout"));
    let fc = FwdConfig {
        capacity: FUZZ_CAPACITY,
        capacity6: 1024,
        timeouts: cfg.conn.timeouts,
        max_attempts: 64,
        syn_unanswered_ms: cfg.conn.syn_unanswered_ms,
        // Half the table, so the fuzzer reaches the bound and the eviction path.
        max_half_open: FUZZ_CAPACITY / 2,
        max_half_open6: 1024 / 2,
        synproxy: cfg.synproxy.settings().expect("fuzz config").0,
        cookie_key: gateway::forward::synproxy::CookieKey::from_words(FUZZ_COOKIE_KEY),
    };
    [0u16, 1].map(|w| {
        let fwd = Forwarder::new(w, services.clone(), layout.clone(), &fc).expect("forwarder");
        let mut dp = Datapath::new(w, topo.clone(), Default::default(), fwd);
        for (ip, mac, port) in [
            (CLIENT_IP, CLIENT_MAC, 0),
            (RS1, RS1_MAC, 1),
            (RS2, RS2_MAC, 1),
        ] {
            dp.l3.learn_from_peer(ip, mac, port);
        }
        dp
    })
}

/// What happened to the frames of one input (both workers together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Frames fed (sync messages apart).
    pub frames: u64,
    /// Verdicts by kind; handed-over frames count once more when the owner processes them.
    pub tx: u64,
    /// Frames sent up to a kernel twin (`net::punt`).
    pub punted: u64,
    pub handed_over: u64,
    pub done: u64,
    pub dropped: u64,
    pub held: u64,
    /// Verdicts on held fragments, reached when their first fragment came.
    pub deferred: u64,
    /// Frames the datapath generated (ARP requests, RSTs) and released after ARP.
    pub generated: u64,
    pub released: u64,
    /// Sync messages fed, and the records of those accepted, each applied (or refused) once.
    pub sync_messages: u64,
    pub synced: u64,
    /// Configuration changes committed.
    pub changes: u64,
}

/// Where an emitted frame comes from, for [`check_emitted`].
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    /// Taken from the gateway's own queue (`take_generated`: ARP, ICMP, RSTs at expiry): always
    /// valid.
    Generated,
    /// A record's verdict, checked against the record's frame where the runner knows it (a
    /// segment the gateway builds as the answer to a record, as the SYN proxy's, counts so too:
    /// its input was verified), else against none (released after ARP, or deferred).
    Forwarded(Option<&'a [u8]>),
}

/// Asserts that a frame the datapath emits is well formed: it parses (its IPv4 header checksum
/// included), and an IPv4 packet in it has a valid L4 checksum, unless it is a segment the
/// datapath forwards without verifying it: a plain ACK (ACK, none of SYN, FIN and RST) of an
/// established connection, whose checksum the rewrite updates (RFC 1624), keeping an error for
/// the receiving host to find, as IPVS does (perf/RESULTS.md, "Plain ACKs forwarded
/// unverified"). Such an error must have come in with the frame it was forwarded from, never be
/// made by the gateway: a frame it generated has none.
pub fn check_emitted(what: &str, frame: &[u8], origin: Origin) {
    let p = match parse_l3l4(frame) {
        Ok(p) => p,
        Err(e) => panic!("{what}: emitted a frame that does not parse ({e:?}): {frame:02x?}"),
    };
    if p.ethertype != EtherType::IPV4 {
        return;
    }
    let ip = p.ip.expect("IPv4 parsed");
    if ip.is_fragment || verify_l4_checksum(frame, &p) {
        return;
    }
    let plain_ack = ip.protocol == gateway::wire::IpProtocol::TCP && ip.tcp_flags.is_plain_ack();
    assert!(
        plain_ack && matches!(origin, Origin::Forwarded(_)),
        "{what}: bad L4 checksum: {frame:02x?}"
    );
    if let Origin::Forwarded(Some(input)) = origin {
        let broken_on_the_way = match parse_l3l4(input) {
            Ok(q) => {
                q.ip.is_none_or(|i| i.is_fragment || verify_l4_checksum(input, &q))
            }
            // The datapath forwarded a frame that does not parse.
            Err(_) => true,
        };
        assert!(
            !broken_on_the_way,
            "{what}: a plain ACK's L4 checksum broken on the way (it came in good): {frame:02x?} from {input:02x?}"
        );
    }
}

/// Whether a record is fed as handed over by a peer. A worker hands over only frames whose
/// checksums it verified (the owner trusts them and checks again nothing), so a record marked
/// `from_peer` whose frame would fail those checks could not have come from a peer: it is fed as
/// received from the wire instead.
fn as_peer(r: &Record) -> bool {
    r.from_peer
        && match parse_l3l4(r.frame) {
            Ok(p) => {
                p.ip.is_none_or(|ip| ip.is_fragment || verify_l4_checksum(r.frame, &p))
            }
            Err(_) => false,
        }
}

/// A verdict in a form two runs can compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Tx(u16, Vec<u8>),
    /// Up to the port's kernel twin.
    Kernel(u16, Vec<u8>),
    Handed(u16),
    Done,
    Drop(gateway::stats::DropReason),
    Held,
    /// A sync message: the records it carried, applied or refused (none if it was refused).
    Synced(u64),
    /// A configuration change: the variant committed.
    Changed(u8),
}

/// Everything one run of an input produced: counts, each record's verdicts (the hand-over's
/// second verdict follows the first), and the generated and released frames.
#[derive(Debug, Default)]
pub struct Run {
    pub outcome: Outcome,
    pub trace: Vec<Vec<Seen>>,
    pub emitted: Vec<Vec<u8>>,
    /// Each record's frame, as fed: what a frame sent for it was forwarded from.
    pub inputs: Vec<Vec<u8>>,
}

fn drain(dp: &mut Datapath<VecBuf>, run: &mut Run) {
    let (o, emitted) = (&mut run.outcome, &mut run.emitted);
    dp.l3.take_generated(|g| {
        check_emitted("generated", g.bytes(), Origin::Generated);
        o.generated += 1;
        emitted.push(g.bytes().to_vec());
    });
    dp.l3.take_released(|_, b| {
        check_emitted("released", b.data(), Origin::Forwarded(None));
        o.released += 1;
        emitted.push(b.data().to_vec());
    });
    dp.l3.take_events(|_| {});
}

/// Carries worker `w`'s verdict out with the worker's own accounting (`Datapath::settle`,
/// `Datapath::handed_over`); returns a frame to hand to another worker.
fn dispatch(
    dp: &mut Datapath<VecBuf>,
    w: usize,
    verdict: Verdict<VecBuf>,
    meta: &RxMeta,
    run: &mut Run,
    rec: usize,
) -> Option<(usize, Vec<u8>)> {
    let seen = match &verdict {
        Verdict::Done(_) => Some(Seen::Done),
        Verdict::Drop(r, _) => Some(Seen::Drop(*r)),
        Verdict::Held => Some(Seen::Held),
        _ => None,
    };
    let o = &mut run.outcome;
    let seen = match dp.settle(verdict) {
        Some(Verdict::Tx(port, b)) => {
            assert!(
                usize::from(port) < dp.l3.topo().ports.len(),
                "Tx on port {port}"
            );
            check_emitted(
                "sent",
                b.data(),
                Origin::Forwarded(run.inputs.get(rec).map(Vec::as_slice)),
            );
            o.tx += 1;
            Seen::Tx(port, b.data().to_vec())
        }
        Some(Verdict::ToKernel(port, b)) => {
            assert!(
                dp.l3
                    .topo()
                    .ports
                    .get(usize::from(port))
                    .is_some_and(|p| p.twin),
                "ToKernel({port}) on a port without a twin"
            );
            assert_eq!(
                port, meta.port,
                "a frame goes up to the twin of its own port"
            );
            o.punted += 1;
            Seen::Kernel(port, b.data().to_vec())
        }
        Some(Verdict::ToWorker(to, b)) => {
            // A fragment goes to its datagram's home, which may hand it on (`gateway::frag`).
            assert!(
                !meta.from_peer || is_fragment(b.data()),
                "a handed-over frame was handed over again"
            );
            assert!(
                usize::from(to) != w && usize::from(to) < 2,
                "ToWorker({to}) from worker {w}"
            );
            dp.handed_over(true);
            o.handed_over += 1;
            run.trace[rec].push(Seen::Handed(to));
            return Some((usize::from(to), b.data().to_vec()));
        }
        _ => {
            let seen = seen.expect("settle keeps only Tx, ToKernel and ToWorker");
            match seen {
                Seen::Done => o.done += 1,
                Seen::Drop(_) => o.dropped += 1,
                Seen::Held => o.held += 1,
                _ => {}
            }
            seen
        }
    };
    run.trace[rec].push(seen);
    None
}

/// Delivers a handed-over frame to its owner, as the ring would.
fn hand_over(
    dps: &mut [Datapath<VecBuf>; 2],
    to: usize,
    frame: &[u8],
    meta: &RxMeta,
    run: &mut Run,
    rec: usize,
) {
    let peer = RxMeta {
        from_peer: true,
        ..*meta
    };
    dps[to].l3.stats.handoff_in += 1;
    let v = dps[to].process(VecBuf::from_frame(frame), &peer);
    let again = dispatch(&mut dps[to], to, v, &peer, run, rec);
    drain(&mut dps[to], run);
    deferred(dps, to, run);
    if let Some((next, f)) = again {
        // Only a fragment, from its home to its connection's owner; never a third time.
        dps[next].l3.stats.handoff_in += 1;
        let v = dps[next].process(VecBuf::from_frame(&f), &peer);
        assert!(dispatch(&mut dps[next], next, v, &peer, run, rec).is_none());
        drain(&mut dps[next], run);
        deferred(dps, next, run);
    }
}

/// Whether `frame` is an IPv4 fragment.
fn is_fragment(frame: &[u8]) -> bool {
    parse_l3l4(frame)
        .ok()
        .and_then(|p| p.ip)
        .is_some_and(|ip| ip.is_fragment)
}

/// Carries out worker `w`'s deferred verdicts (held fragments their first one released, each
/// counted `held` when it came) as the worker does after a burst; they are traced together in
/// the last slot of the trace.
fn deferred(dps: &mut [Datapath<VecBuf>; 2], w: usize, run: &mut Run) {
    let slot = run.trace.len() - 1;
    for d in dps[w].take_deferred() {
        run.outcome.deferred += 1;
        let meta = RxMeta {
            port: d.port,
            ..Default::default()
        };
        if let Some((to, f)) = dispatch(&mut dps[w], w, d.verdict, &meta, run, slot) {
            hand_over(dps, to, &f, &meta, run, slot);
        }
    }
}

/// Delivers a sync message (`unsealed`, its MAC to add) to worker `w` as the backup's sync thread
/// and workers would (`sync::link`, `Worker::sync_install`); returns the records applied. Checks
/// that what the receiver decodes, sent again, decodes the same, and that every record is applied
/// or refused exactly once, by the worker that owns it.
fn sync_message(
    dps: &mut [Datapath<VecBuf>; 2],
    opener: &mut gateway::sync::wire::Opener,
    w: usize,
    unsealed: &[u8],
) -> u64 {
    use gateway::sync::wire::{Message, Opener, Sealer};
    use gateway::sync::worker_side::WorkerSync;
    let m = gateway::testkit::seal_sync(FUZZ_SYNC_KEY, unsealed);
    let Ok(Message::Records { records, .. }) = opener.open(&m) else {
        return 0;
    };
    let mut back = Vec::new();
    let mut again = Opener::new(FUZZ_SYNC_KEY);
    for m in Sealer::new(FUZZ_SYNC_KEY, 1, 1).records(&records) {
        match again.open(&m) {
            Ok(Message::Records { records, .. }) => back.extend(records),
            other => panic!("records sent again do not open: {other:?}"),
        }
    }
    assert_eq!(back, records, "records decoded, encoded and decoded again");
    let n = records.len() as u64;
    let applied = |dps: &[Datapath<VecBuf>; 2]| -> u64 {
        dps.iter().map(|d| d.fwd.sync_counters().applied()).sum()
    };
    let before = applied(dps);
    let now = gateway::conn::Ticks(dps[w].l3.now_ms);
    // Every client on the client side's port (port 0), where the sync thread asks the routes: a
    // fuzzed client address elsewhere gets its owner as if it came in there.
    let others = WorkerSync::install(&mut dps[w], w, records, false, now, |_| 0);
    for (to, recs) in others {
        assert!(to < 2 && to != w, "records passed from worker {w} to {to}");
        for r in &recs {
            assert_eq!(
                dps[to].fwd.record_owner(r, 0),
                to,
                "a record passed to a worker that does not own it: {r:?}"
            );
        }
        let back = WorkerSync::install(&mut dps[to], to, recs, true, now, |_| 0);
        assert!(back.is_empty(), "forwarded records passed on again");
    }
    assert_eq!(
        applied(dps) - before,
        n,
        "records applied or refused, each once"
    );
    n
}

/// Slots of each connection table walked per step for a pending change ([`walk_step`]), chosen
/// by a change record's second byte: from none (changes pile up to the table's bound, which
/// hurries the walk) to the worker's idle slice.
pub const WALKS: [u32; 8] = [0, 1, 2, 3, 8, 16, 64, 1024];

/// The harness's side of configuration changes: the generation of the last one, and how much of
/// each table a step walks.
#[derive(Clone, Copy, Debug)]
pub struct Changes {
    pub generation: u64,
    pub walk: u32,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            generation: 1,
            walk: *WALKS.last().unwrap(),
        }
    }
}

/// Applies change record `frame` (see the framing above) to both workers as the control plane's
/// commit does (one snapshot and topology for both, each worker preparing and committing it);
/// returns the variant committed. The bindings are checked before and after.
pub fn apply_change(dps: &mut [Datapath<VecBuf>; 2], changes: &mut Changes, frame: &[u8]) -> u8 {
    use gateway::forward::ServiceTable;
    use std::sync::Arc;
    let k = frame.get(CHANGE_MAGIC.len()).copied().unwrap_or(0) % CHANGE_VARIANTS;
    if let Some(&w) = frame.get(CHANGE_MAGIC.len() + 1) {
        changes.walk = WALKS[usize::from(w) % WALKS.len()];
    }
    for dp in dps.iter() {
        check_bindings(dp);
    }
    let (_, v) = variant(k);
    changes.generation += 1;
    let services = Arc::new(
        ServiceTable::new(
            changes.generation,
            v.services.clone(),
            Some(dps[0].fwd.services()),
        )
        .expect("a variant's services"),
    );
    let topo = Arc::new(gateway::control::topology::build(&topo_inputs(), None, &services).0);
    for dp in dps.iter_mut() {
        let before = bound(dp);
        let prepared = dp
            .fwd
            .prepare_services(services.clone())
            .expect("a variant's local-address pools");
        dp.commit_services(prepared);
        dp.l3.set_topology(topo.clone());
        check_bindings(dp);
        check_kept(&before, &bound(dp), &services);
    }
    k
}

/// A service by its key (VIP, port, protocol) and a real server by its (address, port).
type SvcKey = (std::net::IpAddr, u16, u8);
type RealKey = (std::net::IpAddr, u16);

/// A connection as a reader of its worker's tables sees it (`Table::iter`: the copy that has
/// followed every pending change), with the service and real server it names, by key.
#[derive(Debug)]
struct Bound {
    /// Its table (IPv6 or not) and slot.
    id: (bool, u32),
    /// Parked (a FullNAT entry that only holds its local port for TIME_WAIT).
    parked: bool,
    mode: u8,
    /// Where its client's packets were sent (the client tuple's destination).
    sent_to: SvcKey,
    /// Where its replies come from (the reply tuple's source), if tracked.
    replied_from: Option<RealKey>,
    /// The service and real server its indices name (None: no index).
    svc: Option<SvcKey>,
    real: Option<RealKey>,
}

/// Every connection of `dp`'s tables, IPv6's after IPv4's, by slot. An index that names no
/// service or real server of the snapshot fails: a connection names one or none (`NO_DEST`).
fn bound(dp: &Datapath<VecBuf>) -> Vec<Bound> {
    use gateway::conn::ConnKey;
    use gateway::forward::services::NO_DEST;
    use std::net::IpAddr;
    let services = dp.fwd.services();
    let keys = |id: (bool, u32), svc: u16, rs: u16| {
        if svc == NO_DEST {
            return (None, None);
        }
        let vs = services.services.get(usize::from(svc)).unwrap_or_else(|| {
            panic!(
                "connection {id:?}: service {svc} of {} (generation {})",
                services.services.len(),
                services.generation
            )
        });
        let c = vs.svc.config();
        let real = (rs != NO_DEST).then(|| {
            let k = vs
                .svc
                .key(usize::from(rs))
                .unwrap_or_else(|| panic!("connection {id:?}: real server {rs} of service {svc}"));
            (k.addr, k.port)
        });
        (Some((c.vip, c.vport, c.proto.number())), real)
    };
    let v4 = dp.fwd.table().iter().map(|(id, c)| {
        let (t, id) = (c.client(), (false, id.index()));
        let (svc, real) = keys(id, c.svc, c.rs);
        Bound {
            id,
            parked: c.flags().contains(gateway::forward::fullnat::PARKED),
            mode: c.mode(),
            sent_to: (t.dst_ip().into(), t.dport, t.proto()),
            replied_from: c.reply().map(|r| (r.src_ip().into(), r.sport)),
            svc,
            real,
        }
    });
    // NAT64's real servers are IPv4, their replies' source an IPv4-mapped address.
    let addr =
        |a: std::net::Ipv6Addr| -> IpAddr { a.to_ipv4_mapped().map_or(a.into(), Into::into) };
    let v6 = dp.v6.conns.iter().map(|(id, c)| {
        let (t, id) = (c.client(), (true, id.index()));
        let (svc, real) = keys(id, c.svc, c.rs);
        Bound {
            id,
            parked: gateway::inet6::service::parked(&c),
            mode: c.mode(),
            sent_to: (t.dst_ip().into(), t.dport, t.proto()),
            replied_from: c.reply().map(|r| (addr(r.src_ip()), r.sport)),
            svc,
            real,
        }
    });
    v4.chain(v6).collect()
}

/// Asserts that a change kept every connection's bindings that it could keep: the same service
/// and real server (in any mode, DR and TUN included, whose entries carry no reply to compare)
/// while the new snapshot (`services`) has them, none for what it removed, and none still for
/// what the connection had none of (a server re-added does not bind the connections it lost).
fn check_kept(before: &[Bound], after: &[Bound], services: &gateway::forward::ServiceTable) {
    assert_eq!(
        before.iter().map(|b| b.id).collect::<Vec<_>>(),
        after.iter().map(|a| a.id).collect::<Vec<_>>(),
        "a change added or removed connections"
    );
    let find = |key: SvcKey| {
        services.services.iter().find(|vs| {
            let c = vs.svc.config();
            (c.vip, c.vport, c.proto.number()) == key
        })
    };
    for (b, a) in before.iter().zip(after) {
        let kept = b.svc.and_then(find);
        assert_eq!(
            a.svc,
            kept.and(b.svc),
            "connection {:?}: service {:?} in generation {}",
            b.id,
            b.svc,
            services.generation
        );
        let real_kept = kept.zip(b.real).and_then(|(vs, real)| {
            vs.svc
                .reals()
                .iter()
                .any(|r| (r.key().addr, r.key().port) == real)
                .then_some(real)
        });
        assert_eq!(
            a.real, real_kept,
            "connection {:?}: real server {:?} of {:?} in generation {}",
            b.id, b.real, b.svc, services.generation
        );
    }
}

/// One step of each worker's walks of its tables for the pending changes (the worker's poll
/// round's `Datapath::rebind_step`, with the harness's slice, the same for both tables where the
/// worker gives IPv6's, of two-line entries, half).
pub fn walk_step(dps: &mut [Datapath<VecBuf>; 2], changes: &Changes) {
    for dp in dps.iter_mut() {
        dp.fwd.rebind_step(changes.walk);
        dp.v6.conns.rebind_step(changes.walk);
    }
}

/// Asserts that every connection of `dp`'s tables but the parked ones, as a reader sees it
/// ([`bound`]), names the service its client tuple was sent to (VIP, port and protocol), or none,
/// and, if its real server is named and its replies come back through the gateway (FullNAT,
/// NAT), the one they come from.
pub fn check_bindings(dp: &Datapath<VecBuf>) {
    use gateway::forward::mode;
    let generation = dp.fwd.services().generation;
    for b in bound(dp).iter().filter(|b| !b.parked) {
        if let Some(svc) = b.svc {
            assert_eq!(
                svc, b.sent_to,
                "{b:?}: the service (generation {generation})"
            );
        }
        if let (Some(real), Some(from), true) = (
            b.real,
            b.replied_from,
            b.mode == mode::FULLNAT || b.mode == mode::NAT,
        ) {
            assert_eq!(
                real, from,
                "{b:?}: the real server (generation {generation})"
            );
        }
    }
}

/// Runs an input through fresh datapaths, frame by frame (`process`) or, with `burst`, in bursts
/// of consecutive records for the same worker (`process_burst`, as the worker polls), and checks
/// the invariants.
pub fn run_records(data: &[u8], burst: bool) -> Run {
    let mut dps = fuzz_datapaths();
    let mut run = Run::default();
    let mut now = 0;
    let mut opener = gateway::sync::wire::Opener::new(FUZZ_SYNC_KEY);
    let mut changes = Changes::default();
    let records: Vec<Record> = Records(data).collect();
    // One slot per record, and one for the verdicts deferred past their frame's processing.
    run.trace = vec![Vec::new(); records.len() + 1];
    run.inputs = records.iter().map(|r| r.frame.to_vec()).collect();
    let mut i = 0;
    while i < records.len() {
        let r = records[i];
        if r.advance_ms > 0 {
            now += r.advance_ms;
            for dp in dps.iter_mut() {
                dp.tick(now);
                drain(dp, &mut run);
            }
            walk_step(&mut dps, &changes);
        }
        if is_change(r.frame) {
            let k = apply_change(&mut dps, &mut changes, r.frame);
            for dp in dps.iter_mut() {
                drain(dp, &mut run);
            }
            run.trace[i].push(Seen::Changed(k));
            run.outcome.changes += 1;
            i += 1;
            continue;
        }
        if is_sync(r.frame) {
            let n = sync_message(&mut dps, &mut opener, r.worker, r.frame);
            for dp in dps.iter_mut() {
                drain(dp, &mut run);
            }
            run.trace[i].push(Seen::Synced(n));
            run.outcome.sync_messages += 1;
            run.outcome.synced += n;
            i += 1;
            continue;
        }
        // The burst: this record and the following ones for the same worker with no time step,
        // up to an ARP frame. `process_burst` runs the L2/L3 stage (ARP included) for the whole
        // burst before forwarding any of it, so an ARP reply late in a burst resolves a neighbour
        // for packets before it that one-by-one processing would hold: a legitimate difference
        // the comparison leaves out.
        // The same groups are formed frame by frame, and frames handed to another worker are
        // delivered after the group in both ways, as the rings deliver them after the burst: a
        // handed-over SYN scheduled before or after the group's own SYNs may pick another server
        // (schedulers share state between workers), which would be a difference of the harness.
        let mut end = i + 1;
        {
            while end < records.len()
                && end - i < gateway::datapath::BURST
                && records[end].worker == r.worker
                && records[end].advance_ms == 0
                && records[end].frame.get(12..14) != Some(&[0x08, 0x06][..])
                && is_frame(records[end].frame)
            {
                end += 1;
            }
        }
        let w = r.worker;
        let metas: Vec<RxMeta> = records[i..end]
            .iter()
            .map(|r| RxMeta {
                port: r.port,
                from_peer: as_peer(r),
                ..Default::default()
            })
            .collect();
        let verdicts: Vec<Verdict<VecBuf>> = if burst {
            let mut pkts: Vec<Option<VecBuf>> = records[i..end]
                .iter()
                .map(|r| Some(VecBuf::from_frame(r.frame)))
                .collect();
            let mut out: Vec<Option<Verdict<VecBuf>>> = (i..end).map(|_| None).collect();
            dps[w].process_burst(&mut pkts, &metas, &mut out);
            out.into_iter()
                .map(|v| v.expect("a verdict for every frame of a burst"))
                .collect()
        } else {
            Vec::new()
        };
        let mut handoffs = Vec::new();
        if burst {
            for (k, v) in verdicts.into_iter().enumerate() {
                if let Some((to, f)) = dispatch(&mut dps[w], w, v, &metas[k], &mut run, i + k) {
                    handoffs.push((i + k, to, f, metas[k]));
                }
            }
            drain(&mut dps[w], &mut run);
            deferred(&mut dps, w, &mut run);
        } else {
            for (k, r) in records[i..end].iter().enumerate() {
                let v = dps[w].process(VecBuf::from_frame(r.frame), &metas[k]);
                if let Some((to, f)) = dispatch(&mut dps[w], w, v, &metas[k], &mut run, i + k) {
                    handoffs.push((i + k, to, f, metas[k]));
                }
                drain(&mut dps[w], &mut run);
            }
            deferred(&mut dps, w, &mut run);
        }
        for (rec, to, f, meta) in handoffs {
            hand_over(&mut dps, to, &f, &meta, &mut run, rec);
        }
        walk_step(&mut dps, &changes);
        run.outcome.frames += (end - i) as u64;
        i = end;
    }
    // Every frame fed and every hand-over got exactly one verdict; each frame is counted in `rx`
    // once, by the worker it arrived on (not again when handed over, nor when fed as a peer's).
    let o = run.outcome;
    let from_peers = records
        .iter()
        .filter(|r| is_frame(r.frame) && as_peer(r))
        .count() as u64;
    let rx: u64 = dps.iter().map(|d| d.l3.stats.rx_packets).sum();
    assert_eq!(rx, o.frames - from_peers, "rx counters: {o:?}");
    assert_eq!(
        o.tx + o.punted + o.handed_over + o.done + o.dropped + o.held,
        o.frames + o.handed_over + o.deferred,
        "verdicts: {o:?}"
    );
    let drops: u64 = dps.iter().map(|d| d.l3.stats.total_drops()).sum();
    assert!(
        drops >= o.dropped,
        "drop counters {drops} below the drops seen {o:?}"
    );
    let tx: u64 = dps.iter().map(|d| d.l3.stats.tx_packets).sum();
    assert_eq!(tx, o.tx);
    for dp in &dps {
        check_bindings(dp);
    }
    run
}

/// Runs an input frame by frame; returns what happened.
pub fn run_input(data: &[u8]) -> Outcome {
    run_records(data, false).outcome
}

/// The fuzz target's check: the input runs clean frame by frame and in bursts, and both ways give
/// the same verdicts and emit the same frames (batching the lookups must not change anything).
pub fn check_input(data: &[u8]) -> Outcome {
    let one = run_records(data, false);
    let burst = run_records(data, true);
    for (i, (a, b)) in one.trace.iter().zip(&burst.trace).enumerate() {
        assert_eq!(a, b, "record {i}: one by one vs burst");
    }
    let (mut a, mut b) = (one.emitted, burst.emitted);
    a.sort();
    b.sort();
    assert_eq!(a, b, "generated/released frames: one by one vs burst");
    one.outcome
}
