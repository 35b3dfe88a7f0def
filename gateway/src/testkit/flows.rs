//! Many flows through one datapath, cheaply (benchmarks and deterministic instruction counts): a
//! config with 16 LIPs (room for millions of FullNAT connections), client frames made from one
//! template with precomputed per-flow fields, and a reproducible random flow order.

use super::{datapath_from, CLIENT_MAC, CLIENT_PORT_MAC, VIP};
use crate::datapath::Datapath;
use crate::packet::Verdict;
use crate::packet::{PacketBuf, RxMeta, VecBuf};
use crate::wire::{Ipv4Packet, TcpPacket};
use std::net::Ipv4Addr;

/// The lab's service with 16 LIPs: FullNAT needs a distinct (LIP, lport) per connection and real
/// server, and 2 LIPs x 64K ports x 2 servers would not hold 1M connections.
pub fn bench_config() -> String {
    let lips: Vec<String> = (200..216).map(|i| format!("\"10.20.0.{i}\"")).collect();
    // The lab config's workers and ports, then a route and a service of its own.
    let ports = &super::LAB_CONFIG[..super::LAB_CONFIG.find("[[service]]").expect("a service")];
    format!(
        r#"{ports}
# The clients (11.0.0.0/8) are reached through the client-side router.
[[route]]
prefix = "11.0.0.0/8"
via = "10.10.0.2"
port = "client"

[[service]]
vip = "10.10.0.100"
port = 80
protocol = "tcp"
scheduler = "wrr"
local_addresses = [{}]
[[service.real]]
address = "10.20.0.11"
[[service.real]]
address = "10.20.0.12"
"#,
        lips.join(", ")
    )
}

// Offsets in the template (Ethernet 14 + IPv4 20 + TCP 20, no options).
pub const IP_CSUM: usize = 24;
pub const IP_SRC: usize = 26;
pub const TCP: usize = 34;
pub const TCP_SPORT: usize = TCP;
pub const TCP_CSUM: usize = TCP + 16;

/// Connection `i`'s client: 50000 ports per address from 11.0.0.0 up.
pub fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0x0B00_0000 + i / 50_000),
        1024 + (i % 50_000) as u16,
    )
}

/// Connection `i`'s client when each has an address of its own, 11.0.0.0 + `i`, port 1024: clients
/// from as many addresses as connections, as behind a router to the Internet.
pub fn client_spread(i: u32) -> (Ipv4Addr, u16) {
    (Ipv4Addr::from(0x0B00_0000 + i), 1024)
}

/// A client segment to VIP:80 with `flags` (6 = SYN, 0x10 = ACK) from client 0.
pub fn template(flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; 54];
    f[0..6].copy_from_slice(&CLIENT_PORT_MAC.0);
    f[6..12].copy_from_slice(&CLIENT_MAC.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&40u16.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[30..34].copy_from_slice(&VIP.octets());
    f[TCP + 2..TCP + 4].copy_from_slice(&80u16.to_be_bytes());
    f[TCP + 4..TCP + 8].copy_from_slice(&1000u32.to_be_bytes());
    if flags & 0x10 != 0 {
        f[TCP + 8..TCP + 12].copy_from_slice(&5001u32.to_be_bytes());
    }
    f[TCP + 12] = 5 << 4;
    f[TCP + 13] = flags;
    f[TCP + 14..TCP + 16].copy_from_slice(&64240u16.to_be_bytes());
    f
}

/// The per-flow fields of a template: client address and port, and the two checksums for them.
#[derive(Clone, Copy)]
pub struct Flow {
    src: [u8; 4],
    sport: [u8; 2],
    ip_csum: [u8; 2],
    tcp_csum: [u8; 2],
}

impl Flow {
    pub fn new(tmpl: &[u8], i: u32) -> Flow {
        Flow::of(tmpl, client(i))
    }

    /// The flow of client `(ip, port)`.
    pub fn of(tmpl: &[u8], (ip, port): (Ipv4Addr, u16)) -> Flow {
        let mut f = tmpl.to_vec();
        f[IP_SRC..IP_SRC + 4].copy_from_slice(&ip.octets());
        f[TCP_SPORT..TCP_SPORT + 2].copy_from_slice(&port.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut f[14..34]).fill_checksum();
        TcpPacket::new_unchecked(&mut f[TCP..]).fill_checksum(ip, VIP);
        Flow {
            src: ip.octets(),
            sport: port.to_be_bytes(),
            ip_csum: [f[IP_CSUM], f[IP_CSUM + 1]],
            tcp_csum: [f[TCP_CSUM], f[TCP_CSUM + 1]],
        }
    }

    /// Restores the template in `buf` (the datapath rewrote the last frame) with this flow's fields.
    #[inline]
    pub fn write(&self, buf: &mut VecBuf, tmpl: &[u8]) {
        buf.set_len(tmpl.len());
        let d = buf.data_mut();
        d.copy_from_slice(tmpl);
        d[IP_SRC..IP_SRC + 4].copy_from_slice(&self.src);
        d[TCP_SPORT..TCP_SPORT + 2].copy_from_slice(&self.sport);
        d[IP_CSUM..IP_CSUM + 2].copy_from_slice(&self.ip_csum);
        d[TCP_CSUM..TCP_CSUM + 2].copy_from_slice(&self.tcp_csum);
    }
}

pub const META: RxMeta = RxMeta {
    port: 0,
    queue: 0,
    rss_hash: None,
    ip_csum: crate::packet::CsumStatus::Unknown,
    l4_csum: crate::packet::CsumStatus::Unknown,
    from_peer: false,
};

/// Sends `flow`'s frame through `dp` in `buf`; the buffer comes back for the next packet.
#[inline]
pub fn send(dp: &mut Datapath<VecBuf>, buf: VecBuf, flow: &Flow, tmpl: &[u8]) -> VecBuf {
    let mut buf = buf;
    flow.write(&mut buf, tmpl);
    match dp.process(buf, &META) {
        Verdict::Tx(1, b) => b,
        _ => panic!("not forwarded to the server side"),
    }
}

/// xorshift64*: reproducible random flow order without another dependency.
pub fn random_order(n: u32, len: usize) -> Vec<u32> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32 % n
        })
        .collect()
}

/// A datapath holding `n` established FullNAT connections (clients [`client`]`(0..n)`), table
/// capacity `cap`, and the ACK flows of those connections.
pub fn established(n: u32, cap: u32) -> (Datapath<VecBuf>, Vec<Flow>, Vec<u8>) {
    established_with(n, cap, client)
}

/// [`established`] with connection `i`'s client at `client(i)`.
pub fn established_with(
    n: u32,
    cap: u32,
    client: impl Fn(u32) -> (Ipv4Addr, u16),
) -> (Datapath<VecBuf>, Vec<Flow>, Vec<u8>) {
    let syn = template(0x02);
    let ack = template(0x10);
    let mut dp: Datapath<VecBuf> = datapath_from(&bench_config(), 0, 1, cap);
    let mut buf = VecBuf::from_frame(&syn);
    let acks: Vec<Flow> = (0..n).map(|i| Flow::of(&ack, client(i))).collect();
    for (i, a) in acks.iter().enumerate() {
        buf = send(&mut dp, buf, &Flow::of(&syn, client(i as u32)), &syn);
        buf = send(&mut dp, buf, a, &ack);
    }
    (dp, acks, ack)
}
