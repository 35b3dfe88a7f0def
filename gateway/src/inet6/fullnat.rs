//! FullNAT for IPv6 services (`ipvsadm -b` on an IPv6 service), as for IPv4 (`forward::fullnat`):
//! CIP:cport -> VIP:vport becomes LIP:lport -> RIP:rport toward the real server, and its replies
//! RIP:rport -> LIP:lport become VIP:vport -> CIP:cport toward the client. The connection is found
//! from both tuples in the IPv6 table.
//!
//! - Local ports: worker `w` of `n` uses the ports `lport % n == w` of the configured range (the
//!   IPv4 rule, `laddr::layout`), so whichever worker a reply reaches knows its owner and hands it
//!   over. Steering replies to their owner by RSS (the Toeplitz hash of the IPv6 reply tuple) is not
//!   done yet: on a NIC with RSS a reply reaches its owner directly or by one hand-over.
//! - The client's address reaches the real server in the IPv6 TOA on the SYN (kind 254, length 20,
//!   port then address: DPVS's `tcpopt_ip6_addr`, read by the toa module's IPv6 support). The MSS
//!   is left alone: the option travels on the SYN only.
//! - Checksums: IPv6 has no header checksum; the TCP or UDP one takes the address and port changes
//!   incrementally (RFC 1624), the pseudo-header included (RFC 8200 8.1).

use crate::conn::{ConnTable6, Tuple6};
use crate::laddr::PortLayout;
use crate::wire::checksum::Delta;
use crate::wire::{ethernet, ipv6, IpProtocol};
use std::net::Ipv6Addr;

/// Candidates a new connection tries per local address before the next one (as IPv4's
/// `laddr::DEFAULT_MAX_ATTEMPTS`).
const MAX_ATTEMPTS: usize = 64;

/// One worker's local addresses and ports for one IPv6 service.
#[derive(Debug)]
pub struct Pool6 {
    lips: Vec<Ipv6Addr>,
    /// This worker's share of the port range.
    ports: Vec<u16>,
    /// Where the next search starts: consecutive connections take different ports, and a freed
    /// one is reused last.
    cursor: usize,
    next_lip: usize,
}

impl Pool6 {
    pub fn new(lips: &[Ipv6Addr], layout: &PortLayout, worker: usize) -> Pool6 {
        Pool6 {
            lips: lips.to_vec(),
            ports: layout.worker_ports(worker).collect(),
            cursor: 0,
            next_lip: 0,
        }
    }

    pub fn lips(&self) -> &[Ipv6Addr] {
        &self.lips
    }

    /// A reply tuple RIP:rport -> LIP:lport for a new connection that the table does not hold,
    /// or None when every local address is out of candidates (`ports_exhausted`).
    pub fn allocate(
        &mut self,
        rip: Ipv6Addr,
        rport: u16,
        proto: u8,
        table: &ConnTable6,
    ) -> Option<Tuple6> {
        if self.ports.is_empty() {
            return None;
        }
        let first = self.next_lip;
        self.next_lip = (self.next_lip + 1) % self.lips.len().max(1);
        for l in 0..self.lips.len() {
            let lip = self.lips[(first + l) % self.lips.len()];
            for _ in 0..MAX_ATTEMPTS.min(self.ports.len()) {
                let lport = self.ports[self.cursor];
                self.cursor = (self.cursor + 1) % self.ports.len();
                let reply = Tuple6::new(rip, rport, lip, lport, proto);
                if table.lookup(&reply).is_none() {
                    return Some(reply);
                }
            }
        }
        None
    }
}

/// Rewrites the frame's IPv6 TCP or UDP packet (its upper-layer header at `l4_off`) to `src` ->
/// `dst`: addresses in the IPv6 header, ports and checksum in the upper layer.
pub fn rewrite(
    frame: &mut [u8],
    l4_off: usize,
    proto: IpProtocol,
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
) {
    let l3 = ethernet::HEADER_LEN;
    let (old_src, old_dst) = {
        let ip = ipv6::Ipv6Packet::new_unchecked(&frame[l3..]);
        (ip.src(), ip.dst())
    };
    {
        let mut ip = ipv6::Ipv6Packet::new_unchecked(&mut frame[l3..]);
        ip.set_src(src.0);
        ip.set_dst(dst.0);
    }
    let l4 = &mut frame[l4_off..];
    let port = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let delta = Delta::new()
        .addr6(old_src, src.0)
        .addr6(old_dst, dst.0)
        .word(port(l4, 0), src.1)
        .word(port(l4, 2), dst.1);
    l4[0..2].copy_from_slice(&src.1.to_be_bytes());
    l4[2..4].copy_from_slice(&dst.1.to_be_bytes());
    let (at, udp) = if proto == IpProtocol::TCP {
        (16, false)
    } else {
        (6, true)
    };
    let old = port(l4, at);
    let new = if udp {
        delta.apply_udp6(old)
    } else {
        delta.apply(old)
    };
    l4[at..at + 2].copy_from_slice(&new.to_be_bytes());
}
