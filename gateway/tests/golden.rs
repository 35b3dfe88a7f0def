//! Golden tests (DESIGN.md testing ladder, step 2): the real `gateway` binary on DPDK's pcap driver,
//! pcap in -> pcap out, every output frame compared field by field with the frame a correct FullNAT
//! load balancer must send.
//!
//! Each scenario starts with ARP requests from the client and both real servers (the gateway learns a
//! neighbour when it is the ARP target, and answers: those replies are checked too), then plays one
//! conversation. Expected frames are built with etherparse from the same few facts as the input, so
//! each expectation reads as the packet it describes. Needs root (EAL); runs in parallel, each run
//! with its own EAL prefix and temp directory.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-golden nice -n 10 cargo test -p gateway --test golden`

#[path = "golden/decode.rs"]
mod decode;
#[path = "golden/frames.rs"]
mod frames;
#[path = "golden/harness.rs"]
mod harness;

use decode::{assert_frames, field};
use etherparse::PacketBuilder;
use frames::*;

/// The input of one scenario and the output it must produce, in order.
struct Script {
    input: Vec<Vec<u8>>,
    expected: Vec<Labelled>,
}

impl Script {
    /// Starts with the ARP preamble (and its three replies).
    fn new() -> Script {
        let (input, expected) = arp_preamble();
        Script { input, expected }
    }

    /// A frame that must come out as `out`.
    fn pass(&mut self, label: &str, input: Vec<u8>, out: Vec<u8>) {
        self.input.push(input);
        self.expected.push((label.to_string(), out));
    }

    /// A frame that must produce nothing.
    fn swallow(&mut self, input: Vec<u8>) {
        self.input.push(input);
    }

    /// The index in the output of the frame labelled `label`.
    fn out_index(&self, label: &str) -> usize {
        self.expected
            .iter()
            .position(|(l, _)| l == label)
            .expect("label")
    }

    fn run(&self, tag: &str) -> harness::Outcome {
        let out = harness::run(tag, &self.input, self.expected.len());
        assert_frames(tag, &self.expected, &out.frames);
        out
    }
}

/// One client connection through the VIP as both ends see it: the client talks to VIP:80, the real
/// server to LIP:lport.
#[derive(Clone, Copy)]
struct Conn {
    cport: u16,
    lport: u16,
    rs: Ip,
    from_rs: Hop,
    to_rs: Hop,
}

impl Conn {
    /// The first connection: round robin picks RS1 and the local port is the first of the range.
    fn first(cport: u16) -> Conn {
        Conn {
            cport,
            lport: FIRST_LPORT,
            rs: RS1,
            from_rs: FROM_RS1,
            to_rs: TO_RS1,
        }
    }
    /// The second connection: RS2, the next local port.
    fn second(cport: u16) -> Conn {
        Conn {
            cport,
            lport: FIRST_LPORT + 1,
            rs: RS2,
            from_rs: FROM_RS2,
            to_rs: TO_RS2,
        }
    }
    fn client(&self) -> Ep {
        (CIP, self.cport)
    }
    fn local(&self) -> Ep {
        (LIP, self.lport)
    }
    fn real(&self) -> Ep {
        (self.rs, 80)
    }

    /// Client -> VIP:80 in, LIP:lport -> RIP:80 out with `out` as the segment.
    fn c2s_as(&self, s: &mut Script, label: &str, seg: &Seg, out: &Seg) {
        let i = tcp(FROM_CLIENT, self.client(), (VIP, 80), seg);
        let o = tcp(self.to_rs, self.local(), self.real(), out);
        s.pass(label, i, o);
    }

    /// Client -> server, the segment unchanged apart from addresses and ports.
    fn c2s(&self, s: &mut Script, label: &str, seg: &Seg) {
        self.c2s_as(s, label, seg, seg);
    }

    /// Server RIP:80 -> LIP:lport in, VIP:80 -> client out, the segment unchanged.
    fn s2c(&self, s: &mut Script, label: &str, seg: &Seg) {
        let i = tcp(self.from_rs, self.real(), self.local(), seg);
        let o = tcp(TO_CLIENT, (VIP, 80), self.client(), seg);
        s.pass(label, i, o);
    }

    /// The three-way handshake; the SYN carries MSS 1460 and leaves with TOA and MSS 1452.
    fn handshake(&self, s: &mut Script, isn_c: u32, isn_s: u32) {
        let syn = Seg::new(SYN, isn_c, 0).options(&mss(1460));
        let mut out_opts = toa(self.client()).to_vec();
        out_opts.extend_from_slice(&mss(1460 - 8));
        let syn_out = Seg::new(SYN, isn_c, 0).options(&out_opts);
        self.c2s_as(s, &format!("SYN {}", self.cport), &syn, &syn_out);
        let synack = Seg::new(SYN | ACK, isn_s, isn_c + 1).options(&mss(1400));
        self.s2c(s, &format!("SYN-ACK {}", self.cport), &synack);
        // The client's first ACK carries TOA too (for toa modules that read it there).
        self.c2s_as(
            s,
            &format!("ACK {}", self.cport),
            &Seg::new(ACK, isn_c + 1, isn_s + 1),
            &Seg::new(ACK, isn_c + 1, isn_s + 1).options(&toa(self.client())),
        );
    }
}

#[test]
fn arp_replies_come_from_the_pcap_port() {
    let s = Script::new();
    let out = s.run("arp");
    for (i, f) in out.frames.iter().enumerate() {
        assert_eq!(
            field(f, "eth.src"),
            "02:70:63:61:70:00",
            "ARP reply {i}: the pcap port's MAC"
        );
        assert_eq!(field(f, "arp.op"), "2", "ARP reply {i}");
    }
    assert_eq!(out.worker("arp_replies"), 3, "{}", out.stats);
    assert!(
        out.log.contains("driver=net_pcap mac=02:70:63:61:70:00"),
        "port MAC as the daemon logs it: {}",
        out.log
    );
}

#[test]
fn tcp_handshake_is_translated_with_toa() {
    let mut s = Script::new();
    let c = Conn::first(40000);
    c.handshake(&mut s, 1000, 5000);
    let out = s.run("hs");

    // The points of this scenario, spelled out (assert_frames already compared every field).
    let syn = &out.frames[s.out_index("SYN 40000")];
    assert_eq!(
        (field(syn, "ip.src"), field(syn, "tcp.sport")),
        ("10.20.0.200".into(), FIRST_LPORT.to_string()),
        "first connection takes the first LIP and the first local port"
    );
    assert_eq!(
        field(syn, "ip.dst"),
        "10.20.0.11",
        "round robin starts with RS1"
    );
    assert_eq!(
        field(syn, "tcp.options"),
        "[toa 40000 10.10.0.2, mss 1452]",
        "TOA first, MSS lowered by 8"
    );
    assert_eq!(field(syn, "ip.ttl"), "64", "FullNAT does not decrement TTL");
    assert_eq!(field(syn, "eth.dst"), "02:00:00:00:00:11", "to RS1's MAC");
    assert_eq!(
        field(syn, "eth.src"),
        "02:70:63:61:70:00",
        "from the port's MAC"
    );
    for label in ["SYN 40000", "SYN-ACK 40000", "ACK 40000"] {
        let f = &out.frames[s.out_index(label)];
        assert_eq!(field(f, "ip.checksum_ok"), "true", "{label}: IP checksum");
        assert_eq!(field(f, "tcp.checksum_ok"), "true", "{label}: TCP checksum");
    }
    let synack = &out.frames[s.out_index("SYN-ACK 40000")];
    assert_eq!(
        (field(synack, "ip.src"), field(synack, "tcp.sport")),
        ("10.10.0.100".into(), "80".into())
    );
    assert_eq!(
        field(synack, "eth.dst"),
        "02:00:00:00:00:10",
        "to the client's MAC"
    );
    let ack = &out.frames[s.out_index("ACK 40000")];
    assert_eq!(
        field(ack, "tcp.options"),
        "[toa 40000 10.10.0.2]",
        "TOA on the first ACK too"
    );
    assert!(
        out.drop_lines().is_empty(),
        "no drops: {:?}",
        out.drop_lines()
    );
    assert_eq!(field_stat(&out.stats, "toa_added"), 2, "{}", out.stats);
}

/// `key N` on the `conn 0:` line.
fn field_stat(stats: &str, key: &str) -> u64 {
    let line = stats
        .lines()
        .find(|l| l.starts_with("conn 0:"))
        .unwrap_or("");
    let mut w = line.split_whitespace();
    while let Some(x) = w.next() {
        if x == key {
            return w.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    0
}

#[test]
fn data_flows_both_ways_unchanged() {
    let mut s = Script::new();
    let c = Conn::first(40001);
    c.handshake(&mut s, 7_000_000, 3_000_000_000);
    let request = b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n";
    c.c2s(
        &mut s,
        "request",
        &Seg::new(PSH | ACK, 7_000_001, 3_000_000_001).payload(request),
    );
    let body: Vec<u8> = (0..1200u32).map(|i| (i * 7 % 251) as u8).collect();
    c.s2c(
        &mut s,
        "response",
        &Seg::new(PSH | ACK, 3_000_000_001, 7_000_001 + request.len() as u32).payload(&body),
    );
    // A bare ACK is 54 bytes; on a real wire it arrives padded to the 60-byte minimum. The padding
    // must not leak into the forwarded packet (nor into its checksums).
    let last_ack = Seg::new(ACK, 7_000_001 + request.len() as u32, 3_000_000_001 + 1200);
    let ack_in = tcp(FROM_CLIENT, c.client(), (VIP, 80), &last_ack);
    assert_eq!(ack_in.len(), 54);
    s.pass(
        "padded ACK",
        padded(ack_in),
        tcp(TO_RS1, c.local(), c.real(), &last_ack),
    );
    let out = s.run("data");
    assert_eq!(
        field(&out.frames[s.out_index("padded ACK")], "frame.len"),
        "54",
        "padding trimmed"
    );
    let resp = &out.frames[s.out_index("response")];
    assert_eq!(field(resp, "tcp.payload.len"), "1200");
    assert_eq!(
        field(resp, "tcp.seq"),
        "3000000001",
        "sequence numbers are not rewritten"
    );
    assert_eq!(
        field(&out.frames[s.out_index("request")], "ip.total_len"),
        (20 + 20 + request.len()).to_string()
    );
}

#[test]
fn fin_exchange_and_client_rst_go_through() {
    let mut s = Script::new();
    // Connection A closes with FIN both ways.
    let a = Conn::first(40010);
    a.handshake(&mut s, 100, 900);
    a.c2s(&mut s, "client FIN", &Seg::new(FIN | ACK, 101, 901));
    a.s2c(&mut s, "server ACK of FIN", &Seg::new(ACK, 901, 102));
    a.s2c(&mut s, "server FIN", &Seg::new(FIN | ACK, 901, 102));
    a.c2s(&mut s, "client last ACK", &Seg::new(ACK, 102, 902));
    // Connection B (second: RS2, next local port) is reset by the client.
    let b = Conn::second(40011);
    b.handshake(&mut s, 5000, 8000);
    b.c2s(&mut s, "client RST", &Seg::new(RST | ACK, 5001, 8001));
    let out = s.run("fin");
    let rst = &out.frames[s.out_index("client RST")];
    assert_eq!(field(rst, "tcp.flags"), "ACK|RST");
    assert_eq!(
        (field(rst, "ip.dst"), field(rst, "tcp.sport")),
        ("10.20.0.12".into(), (FIRST_LPORT + 1).to_string())
    );
    assert!(
        out.drop_lines().is_empty(),
        "no drops: {:?}",
        out.drop_lines()
    );
}

#[test]
fn udp_is_translated_and_a_zero_checksum_stays_zero() {
    let mut s = Script::new();
    let (client, local, real) = ((CIP, 53000), (LIP, FIRST_LPORT), (RS1, 80));
    s.pass(
        "query",
        udp(FROM_CLIENT, client, (VIP, 80), b"ping?"),
        udp(TO_RS1, local, real, b"ping?"),
    );
    s.pass(
        "answer",
        udp(FROM_RS1, real, local, b"pong!"),
        udp(TO_CLIENT, (VIP, 80), client, b"pong!"),
    );
    s.pass(
        "no-checksum query",
        udp_no_csum(FROM_CLIENT, client, (VIP, 80), b"no sum"),
        udp_no_csum(TO_RS1, local, real, b"no sum"),
    );
    s.pass(
        "no-checksum answer",
        udp_no_csum(FROM_RS1, real, local, b"none back"),
        udp_no_csum(TO_CLIENT, (VIP, 80), client, b"none back"),
    );
    let out = s.run("udp");
    assert_eq!(
        field(&out.frames[s.out_index("query")], "udp.checksum_ok"),
        "true"
    );
    assert_eq!(
        field(&out.frames[s.out_index("answer")], "udp.checksum_ok"),
        "true"
    );
    for label in ["no-checksum query", "no-checksum answer"] {
        assert_eq!(
            field(&out.frames[s.out_index(label)], "udp.checksum"),
            "0x0000",
            "{label}: RFC 768, 0 = none"
        );
    }
}

/// The payload of the fragmented datagrams below: 1200 bytes, cut into IP fragments of 504, 504
/// and 200 bytes (the UDP header in the first).
fn big_payload() -> Vec<u8> {
    (0..1200u32).map(|i| (i * 7 + 3) as u8).collect()
}
const CUTS: [usize; 2] = [504, 1008];

/// Issue 17: the fragments of a UDP datagram follow their first one, both ways, the later ones
/// arriving before it included. What leaves is exactly the fragments of the translated datagram:
/// the first one's UDP checksum covers the whole datagram with the new addresses and ports.
#[test]
fn udp_fragments_follow_their_first_both_ways() {
    let mut s = Script::new();
    let (client, local, real) = ((CIP, 53002), (LIP, FIRST_LPORT), (RS1, 80));
    let payload = big_payload();
    let query = fragments(
        &udp(FROM_CLIENT, client, (VIP, 80), &payload),
        0x4242,
        &CUTS,
    );
    let sent = fragments(&udp(TO_RS1, local, real, &payload), 0x4242, &CUTS);
    // The two later fragments first: held until the first one decides.
    s.swallow(query[1].clone());
    s.swallow(query[2].clone());
    s.pass("query 0", query[0].clone(), sent[0].clone());
    let answer = fragments(&udp(FROM_RS1, real, local, &payload), 0x0777, &CUTS);
    let back = fragments(&udp(TO_CLIENT, (VIP, 80), client, &payload), 0x0777, &CUTS);
    for i in 0..3 {
        s.pass(&format!("answer {i}"), answer[i].clone(), back[i].clone());
    }
    // Released fragments leave after the burst that released them (`Datapath::take_deferred`);
    // the pcap driver hands the whole input over in one burst.
    s.expected.push(("query 1".into(), sent[1].clone()));
    s.expected.push(("query 2".into(), sent[2].clone()));
    let out = s.run("frag");
    assert!(out.drop_lines().is_empty(), "{:?}", out.drop_lines());
    let frag = |k: &str| {
        let line = out
            .stats
            .lines()
            .find(|l| l.starts_with("frag 0:"))
            .unwrap();
        let mut it = line.split_whitespace();
        it.find(|w| *w == k)
            .and_then(|_| it.next()?.parse::<u64>().ok())
    };
    assert_eq!(frag("first"), Some(2), "{}", out.stats);
    assert_eq!(frag("held"), Some(2));
    assert_eq!(frag("followed"), Some(4));
    assert_eq!(frag("completed"), Some(2));
}

#[test]
fn icmp_frag_needed_from_the_server_side_reaches_the_client() {
    let mut s = Script::new();
    let c = Conn::first(40020);
    c.handshake(&mut s, 42, 4242);
    // The real server's side complains about the SYN the gateway sent it (LIP:lport -> RIP:80).
    let sent_syn = s.expected[s.out_index("SYN 40020")].1.clone();
    let icmp_in = icmp_frag_needed(FROM_RS1, RS1, LIP, 1400, &sent_syn);
    // The client must hear it from the VIP, about its own CIP:cport -> VIP:80. The quoted header is
    // the forwarded one with addresses and ports translated back (its length still counts the TOA
    // bytes: the gateway translates, it does not reconstruct the client's original packet).
    let mut quoted = sent_syn.clone();
    edit_ip(&mut quoted, |ip| {
        ip[12..16].copy_from_slice(&CIP);
        ip[16..20].copy_from_slice(&VIP);
    });
    quoted[34..36].copy_from_slice(&c.cport.to_be_bytes());
    quoted[36..38].copy_from_slice(&80u16.to_be_bytes());
    let icmp_out = icmp_frag_needed(TO_CLIENT, VIP, CIP, 1400, &quoted);
    s.pass("ICMP frag needed", icmp_in, icmp_out);
    let out = s.run("icmp");
    let f = &out.frames[s.out_index("ICMP frag needed")];
    assert_eq!(
        (field(f, "icmp.type"), field(f, "icmp.code")),
        ("3".into(), "4".into())
    );
    assert_eq!(field(f, "icmp.rest"), "00000578", "MTU 1400 preserved");
    assert_eq!(field(f, "icmp.checksum_ok"), "true");
    assert_eq!(field(f, "icmp.quote.ip.checksum_ok"), "true");
    assert_eq!(
        (field(f, "icmp.quote.ip.src"), field(f, "icmp.quote.sport")),
        ("10.10.0.2".into(), "40020".into())
    );
    assert_eq!(
        (field(f, "icmp.quote.ip.dst"), field(f, "icmp.quote.dport")),
        ("10.10.0.100".into(), "80".into())
    );
    assert_eq!(
        field_stat(&out.stats, "icmp_translated"),
        1,
        "{}",
        out.stats
    );
}

#[test]
fn malformed_frames_are_dropped_with_reasons_and_a_valid_syn_still_passes() {
    let mut s = Script::new();
    let good_syn = |cport: u16| {
        tcp(
            FROM_CLIENT,
            (CIP, cport),
            (VIP, 80),
            &Seg::new(SYN, 1, 0).options(&mss(1460)),
        )
    };

    // Truncated: not even an Ethernet header; an IPv4 header cut short; a TCP header cut short
    // (IP total length consistent with the frame, but only 10 bytes of TCP).
    s.swallow(good_syn(41000)[..10].to_vec());
    s.swallow(good_syn(41001)[..14 + 12].to_vec());
    let mut short_tcp = good_syn(41002)[..14 + 20 + 10].to_vec();
    edit_ip(&mut short_tcp, |ip| {
        ip[2..4].copy_from_slice(&30u16.to_be_bytes())
    });
    s.swallow(short_tcp);
    // Bad IPv4 header checksum.
    let mut bad_ip = good_syn(41003);
    bad_ip[14 + 10] ^= 0x5a;
    s.swallow(bad_ip);
    // Bad TCP checksum.
    let mut bad_tcp = good_syn(41004);
    bad_tcp[14 + 20 + 16] ^= 0x5a;
    s.swallow(bad_tcp);
    // SYN+FIN (never valid, RFC 9293 / a classic scan).
    s.swallow(tcp(
        FROM_CLIENT,
        (CIP, 41005),
        (VIP, 80),
        &Seg::new(SYN | FIN, 1, 0),
    ));
    // A TCP fragment at offset 8, over the first fragment's TCP header (RFC 1858 3.2).
    let mut frag = good_syn(41006);
    edit_ip(&mut frag, |ip| ip[7] = 1);
    s.swallow(frag);
    // IP options (a router alert, RFC 2113) on a SYN to the VIP.
    let mut opts = tcp(FROM_CLIENT, (CIP, 41009), (VIP, 80), &Seg::new(SYN, 1, 0));
    opts.splice(34..34, [0x94, 4, 0, 0]);
    edit_ip(&mut opts, |ip| {
        ip[0] = 0x46;
        let len = u16::from_be_bytes([ip[2], ip[3]]) + 4;
        ip[2..4].copy_from_slice(&len.to_be_bytes());
    });
    s.swallow(opts);
    // A non-SYN for no connection.
    s.swallow(tcp(
        FROM_CLIENT,
        (CIP, 41007),
        (VIP, 80),
        &Seg::new(ACK, 1, 1),
    ));
    // And then a valid SYN still goes through, as the first connection.
    let c = Conn::first(41008);
    let mut out_opts = toa(c.client()).to_vec();
    out_opts.extend_from_slice(&mss(1452));
    c.c2s_as(
        &mut s,
        "valid SYN",
        &Seg::new(SYN, 1, 0).options(&mss(1460)),
        &Seg::new(SYN, 1, 0).options(&out_opts),
    );

    let out = s.run("bad");
    let expected_drops = [
        ("eth_truncated", 1),
        ("ipv4_truncated", 1),
        ("tcp_truncated", 1),
        ("ipv4_bad_checksum", 1),
        ("l4_bad_checksum", 1),
        ("tcp_bad_flags", 1),
        ("tcp_tiny_fragment", 1),
        ("ip_options", 1),
        ("no_conn", 1),
    ];
    for (name, n) in expected_drops {
        assert_eq!(
            out.drops(name),
            n,
            "drop {name}: all drops {:?}",
            out.drop_lines()
        );
    }
    assert_eq!(
        out.drop_lines().len(),
        expected_drops.len(),
        "no other drops: {:?}",
        out.drop_lines()
    );
    assert_eq!(out.worker("rx"), s.input.len() as u64, "{}", out.stats);
    assert_eq!(out.worker("tx"), s.expected.len() as u64, "{}", out.stats);
}

#[test]
fn retransmitted_syn_reuses_its_connection_and_a_forged_toa_is_overwritten() {
    let mut s = Script::new();
    let c = Conn::first(40030);
    let syn = Seg::new(SYN, 77, 0).options(&mss(1460));
    let mut out_opts = toa(c.client()).to_vec();
    out_opts.extend_from_slice(&mss(1452));
    let syn_out = Seg::new(SYN, 77, 0).options(&out_opts);
    c.c2s_as(&mut s, "SYN", &syn, &syn_out);
    // The client retransmits its SYN: same connection, same local port, TOA again.
    c.c2s_as(&mut s, "SYN again", &syn, &syn_out);
    // Another client forges a TOA claiming to be 1.2.3.4:9999: the real server must see the truth.
    let d = Conn::second(40031);
    let mut forged = toa(([1, 2, 3, 4], 9999)).to_vec();
    forged.extend_from_slice(&mss(1460));
    let mut honest = toa(d.client()).to_vec();
    honest.extend_from_slice(&mss(1460));
    let forged_syn = Seg::new(SYN, 500, 0).options(&forged);
    d.c2s_as(
        &mut s,
        "forged-TOA SYN",
        &forged_syn,
        &Seg::new(SYN, 500, 0).options(&honest),
    );
    // The retransmitted SYN was never answered, but rs1's MAC was heard in the same millisecond
    // as the first SYN (its ARP request, in the preamble: the pcap driver replays the whole input
    // at once), so the gateway does not doubt it and sends no probe (`NeighTable::suspect`). A
    // real retransmission comes a second later: `datapath_input`'s
    // `a_servers_refusal_from_time_wait_does_not_make_its_neighbour_suspect` checks the probe
    // then, and `lab_neigh` a real server whose MAC changed.
    let out = s.run("resyn");
    let f = &out.frames[s.out_index("forged-TOA SYN")];
    assert_eq!(
        field(f, "tcp.options"),
        "[toa 40031 10.10.0.2, mss 1460]",
        "forged TOA replaced"
    );
    assert_eq!(field_stat(&out.stats, "created"), 2, "{}", out.stats);
}

/// A payload that makes the UDP datagram `make(payload)` carry checksum 0xFFFF: its one's-complement
/// sum is zero, the case where a checksum computed (or updated) as 0 must be sent as 0xFFFF, since
/// 0 means "no checksum" (RFC 768).
fn payload_for_ffff(make: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    (0..=u16::MAX)
        .map(|x| {
            let mut p = b"edge".to_vec();
            p.extend_from_slice(&x.to_be_bytes());
            p
        })
        .find(|p| field(&make(p), "udp.checksum") == "0xffff")
        .expect("some payload sums to zero")
}

#[test]
fn udp_checksum_that_becomes_zero_is_sent_as_ffff() {
    let mut s = Script::new();
    let (client, local, real) = ((CIP, 53001), (LIP, FIRST_LPORT), (RS1, 80));
    let p = payload_for_ffff(|p| udp(TO_RS1, local, real, p));
    let i = udp(FROM_CLIENT, client, (VIP, 80), &p);
    assert_ne!(
        field(&i, "udp.checksum"),
        "0xffff",
        "the input is ordinary; the rewrite makes the sum zero"
    );
    s.pass("query summing to zero", i, udp(TO_RS1, local, real, &p));
    let q = payload_for_ffff(|p| udp(TO_CLIENT, (VIP, 80), client, p));
    s.pass(
        "answer summing to zero",
        udp(FROM_RS1, real, local, &q),
        udp(TO_CLIENT, (VIP, 80), client, &q),
    );
    let out = s.run("ffff");
    for label in ["query summing to zero", "answer summing to zero"] {
        assert_eq!(
            field(&out.frames[s.out_index(label)], "udp.checksum"),
            "0xffff",
            "{label}"
        );
    }
}

#[test]
fn icmp_error_from_the_client_side_reaches_the_real_server() {
    let mut s = Script::new();
    let c = Conn::first(40040);
    c.handshake(&mut s, 10, 20);
    // The client's side complains about the SYN-ACK it got (VIP:80 -> CIP:cport); the real server
    // must hear it from the LIP, about its own RIP:80 -> LIP:lport.
    let got_synack = s.expected[s.out_index("SYN-ACK 40040")].1.clone();
    let icmp_in = icmp_frag_needed(FROM_CLIENT, CIP, VIP, 1300, &got_synack);
    let sent_synack = tcp(
        c.from_rs,
        c.real(),
        c.local(),
        &Seg::new(SYN | ACK, 20, 11).options(&mss(1400)),
    );
    let icmp_out = icmp_frag_needed(c.to_rs, LIP, RS1, 1300, &sent_synack);
    s.pass("client-side ICMP", icmp_in, icmp_out);
    let out = s.run("icmpc");
    assert_eq!(
        field(
            &out.frames[s.out_index("client-side ICMP")],
            "icmp.checksum_ok"
        ),
        "true"
    );
}

#[test]
fn pings_to_the_vip_and_the_interface_are_answered() {
    let mut s = Script::new();
    let echo = |hop: Hop, src: Ip, dst: Ip, reply: bool| {
        let b = PacketBuilder::ethernet2(hop.src, hop.dst).ipv4(src, dst, TTL);
        let b = if reply {
            b.icmpv4_echo_reply(7, 1)
        } else {
            b.icmpv4_echo_request(7, 1)
        };
        let mut v = Vec::new();
        b.write(&mut v, b"abcdefgh").expect("echo");
        v
    };
    for (label, ip) in [
        ("echo reply from VIP", VIP),
        ("echo reply from 10.10.0.1", GW_CLIENT_IP),
    ] {
        s.pass(
            label,
            echo(FROM_CLIENT, CIP, ip, false),
            echo(TO_CLIENT, ip, CIP, true),
        );
    }
    let out = s.run("ping");
    assert_eq!(out.worker("echo_replies"), 2, "{}", out.stats);
}
