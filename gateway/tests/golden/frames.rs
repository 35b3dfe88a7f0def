//! The golden tests' little world and its frames, built with etherparse so that every expectation
//! reads as "this packet, from here to there, with these fields".
//!
//! One-armed topology: the gateway has ONE port carrying both subnets (10.10.0.1/24 toward clients,
//! 10.20.0.1/24 toward real servers), so the order of the input pcap is the order of processing.

use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, Ipv4HeaderSlice, PacketBuilder, TcpHeader};

pub type Mac = [u8; 6];
pub type Ip = [u8; 4];
/// An endpoint: address and port.
pub type Ep = (Ip, u16);
/// A frame with a label saying what it is (for messages).
pub type Labelled = (String, Vec<u8>);

/// The MAC DPDK's pcap driver gives its first port: 02:70:63:61:70 ("pcap") and the interface
/// index (drivers/net/pcap/pcap_ethdev.c). The tests check it on the gateway's ARP replies.
pub const PORT_MAC: Mac = [0x02, 0x70, 0x63, 0x61, 0x70, 0x00];
pub const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0, 0x10];
pub const RS1_MAC: Mac = [0x02, 0, 0, 0, 0, 0x11];
pub const RS2_MAC: Mac = [0x02, 0, 0, 0, 0, 0x12];

pub const CIP: Ip = [10, 10, 0, 2];
pub const GW_CLIENT_IP: Ip = [10, 10, 0, 1];
pub const GW_SERVER_IP: Ip = [10, 20, 0, 1];
pub const VIP: Ip = [10, 10, 0, 100];
pub const RS1: Ip = [10, 20, 0, 11];
pub const RS2: Ip = [10, 20, 0, 12];
pub const LIP: Ip = [10, 20, 0, 200];

/// With one worker and no RSS (the pcap driver has none) local ports are handed out in order from
/// the start of `conn.port_range`; the tests assert this on the first forwarded packet.
pub const FIRST_LPORT: u16 = 1024;
pub const TTL: u8 = 64;

/// TCP flag bits (RFC 9293 section 3.1).
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// The gateway's config for one run: one pcap port, one worker, a TCP and a UDP FullNAT service on
/// VIP:80 over RS1 and RS2 (round robin, so the first connection goes to RS1, the second to RS2),
/// one LIP so that the local address is known in advance.
pub fn config(prefix: &str, rx: &str, tx: &str) -> String {
    format!(
        r#"
[eal]
file_prefix = "{prefix}"
no_huge = true
memory_mb = 256
log_level = "notice"

[workers]
count = 1
idle_sleep_us = 200

[mempool]
mbufs = 2047
cache = 32

[[port]]
name = "lb"
device = "net_pcap0,rx_pcap={rx},tx_pcap={tx}"
# The golden runs compare the wire only, in parallel in one namespace: no kernel twin.
twin = "none"
addresses = ["10.10.0.1/24", "10.20.0.1/24"]
rx_desc = 256
tx_desc = 256

[conn]
capacity = 4096
port_range = [1024, 65535]

[[service]]
vip = "10.10.0.100"
port = 80
protocol = "tcp"
scheduler = "rr"
local_addresses = ["10.20.0.200"]
toa = true
[[service.real]]
address = "10.20.0.11"
[[service.real]]
address = "10.20.0.12"

[[service]]
vip = "10.10.0.100"
port = 80
protocol = "udp"
scheduler = "rr"
local_addresses = ["10.20.0.200"]
[[service.real]]
address = "10.20.0.11"
[[service.real]]
address = "10.20.0.12"
"#
    )
}

/// Who puts a frame on the wire: Ethernet source and destination.
#[derive(Clone, Copy, Debug)]
pub struct Hop {
    pub src: Mac,
    pub dst: Mac,
}

pub const FROM_CLIENT: Hop = Hop {
    src: CLIENT_MAC,
    dst: PORT_MAC,
};
pub const FROM_RS1: Hop = Hop {
    src: RS1_MAC,
    dst: PORT_MAC,
};
pub const FROM_RS2: Hop = Hop {
    src: RS2_MAC,
    dst: PORT_MAC,
};
pub const TO_CLIENT: Hop = Hop {
    src: PORT_MAC,
    dst: CLIENT_MAC,
};
pub const TO_RS1: Hop = Hop {
    src: PORT_MAC,
    dst: RS1_MAC,
};
pub const TO_RS2: Hop = Hop {
    src: PORT_MAC,
    dst: RS2_MAC,
};

/// An ARP request (RFC 826) broadcast by `sha`/`spa` asking for `tpa`.
pub fn arp_request(sha: Mac, spa: Ip, tpa: Ip) -> Vec<u8> {
    arp(1, [0xff; 6], sha, sha, spa, [0; 6], tpa)
}

/// The reply the gateway owes to `arp_request(sha, spa, tpa)`: from its port, to the asker.
pub fn arp_reply_to(sha: Mac, spa: Ip, tpa: Ip) -> Vec<u8> {
    arp(2, sha, PORT_MAC, PORT_MAC, tpa, sha, spa)
}

fn arp(op: u16, eth_dst: Mac, eth_src: Mac, sha: Mac, spa: Ip, tha: Mac, tpa: Ip) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    // htype Ethernet, ptype IPv4, hlen 6, plen 4
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f
}

/// The ARP exchange every scenario starts with, so the gateway learns the client's and both real
/// servers' MACs: (requests in, replies expected out).
pub fn arp_preamble() -> (Vec<Vec<u8>>, Vec<Labelled>) {
    let asks = [
        (CLIENT_MAC, CIP, GW_CLIENT_IP, "client"),
        (RS1_MAC, RS1, GW_SERVER_IP, "rs1"),
        (RS2_MAC, RS2, GW_SERVER_IP, "rs2"),
    ];
    let ins = asks
        .iter()
        .map(|&(m, ip, gw, _)| arp_request(m, ip, gw))
        .collect();
    let outs = asks
        .iter()
        .map(|&(m, ip, gw, who)| (format!("ARP reply to {who}"), arp_reply_to(m, ip, gw)))
        .collect();
    (ins, outs)
}

/// A TCP segment's contents.
#[derive(Clone, Debug)]
pub struct Seg {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    /// Raw TCP options (a multiple of 4 bytes).
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Seg {
    pub fn new(flags: u8, seq: u32, ack: u32) -> Seg {
        Seg {
            flags,
            seq,
            ack,
            window: 64240,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }
    pub fn options(mut self, o: &[u8]) -> Seg {
        self.options = o.to_vec();
        self
    }
    pub fn payload(mut self, p: &[u8]) -> Seg {
        self.payload = p.to_vec();
        self
    }
}

/// MSS option (RFC 9293 section 3.2, kind 2 length 4).
pub fn mss(v: u16) -> [u8; 4] {
    let b = v.to_be_bytes();
    [2, 4, b[0], b[1]]
}

/// TOA option as LVS FullNAT / DPVS write it: kind 254, length 8, client port, client IPv4 address.
pub fn toa(client: Ep) -> [u8; 8] {
    let p = client.1.to_be_bytes();
    [
        254,
        8,
        p[0],
        p[1],
        client.0[0],
        client.0[1],
        client.0[2],
        client.0[3],
    ]
}

/// An Ethernet/IPv4/TCP frame with correct checksums, IP identification 0.
pub fn tcp(hop: Hop, src: Ep, dst: Ep, s: &Seg) -> Vec<u8> {
    let mut h = TcpHeader::new(src.1, dst.1, s.seq, s.window);
    h.fin = s.flags & FIN != 0;
    h.syn = s.flags & SYN != 0;
    h.rst = s.flags & RST != 0;
    h.psh = s.flags & PSH != 0;
    h.ack = s.flags & ACK != 0;
    h.acknowledgment_number = s.ack;
    h.set_options_raw(&s.options).expect("TCP options fit");
    let mut v = Vec::new();
    PacketBuilder::ethernet2(hop.src, hop.dst)
        .ipv4(src.0, dst.0, TTL)
        .tcp_header(h)
        .write(&mut v, &s.payload)
        .expect("build TCP frame");
    v
}

/// An Ethernet/IPv4/UDP frame with correct checksums.
pub fn udp(hop: Hop, src: Ep, dst: Ep, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(hop.src, hop.dst)
        .ipv4(src.0, dst.0, TTL)
        .udp(src.1, dst.1)
        .write(&mut v, payload)
        .expect("build UDP frame");
    v
}

/// The same UDP frame sent without checksum (RFC 768: checksum 0 = none).
pub fn udp_no_csum(hop: Hop, src: Ep, dst: Ep, payload: &[u8]) -> Vec<u8> {
    let mut v = udp(hop, src, dst, payload);
    v[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    v
}

/// ICMP destination unreachable, fragmentation needed (type 3 code 4, RFC 1191) with `mtu`, quoting
/// the IP header and first 8 payload bytes of `offending` (an Ethernet frame).
pub fn icmp_frag_needed(hop: Hop, src: Ip, dst: Ip, mtu: u16, offending: &[u8]) -> Vec<u8> {
    let quote = &offending[14..14 + 20 + 8];
    let t = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu: mtu,
    });
    let mut v = Vec::new();
    PacketBuilder::ethernet2(hop.src, hop.dst)
        .ipv4(src, dst, TTL)
        .icmpv4(t)
        .write(&mut v, quote)
        .expect("build ICMP frame");
    v
}

/// `frame` (Ethernet, IPv4 without options, unfragmented) as the fragments a sender would cut it
/// into (RFC 791 3.2): its IP payload split at the byte offsets `cuts` (multiples of 8), each
/// piece under a copy of the header with identification `ident`, the offset and MF set, the
/// total length and the header checksum fixed.
pub fn fragments(frame: &[u8], ident: u16, cuts: &[usize]) -> Vec<Vec<u8>> {
    let total = u16::from_be_bytes([frame[16], frame[17]]) as usize;
    let payload = &frame[34..14 + total];
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(payload.len());
    bounds
        .windows(2)
        .map(|w| {
            assert_eq!(w[0] % 8, 0, "fragment offsets are multiples of 8");
            let mut f = frame[..34].to_vec();
            f.extend_from_slice(&payload[w[0]..w[1]]);
            let more = w[1] < payload.len();
            edit_ip(&mut f, |ip| {
                ip[2..4].copy_from_slice(&((20 + w[1] - w[0]) as u16).to_be_bytes());
                ip[4..6].copy_from_slice(&ident.to_be_bytes());
                let field = (u16::from(more) << 13) | (w[0] / 8) as u16;
                ip[6..8].copy_from_slice(&field.to_be_bytes());
            });
            f
        })
        .collect()
}

/// `frame` padded with zeros to the 60-byte Ethernet minimum (without FCS), as a NIC delivers it.
pub fn padded(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < 60 {
        frame.resize(60, 0);
    }
    frame
}

/// Rewrites the IPv4 header of `frame` (at offset 14) with `edit`, then recomputes its checksum.
pub fn edit_ip(frame: &mut [u8], edit: impl FnOnce(&mut [u8])) {
    edit(&mut frame[14..34]);
    fix_ip_checksum(&mut frame[14..]);
}

/// Recomputes the IPv4 header checksum of the packet at `ip[0..]` (etherparse's computation).
pub fn fix_ip_checksum(ip: &mut [u8]) {
    let h = Ipv4HeaderSlice::from_slice(ip)
        .expect("IPv4 header")
        .to_header();
    let c = h.calc_header_checksum();
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}
