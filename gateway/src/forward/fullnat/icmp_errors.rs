//! ICMP errors about IPv4 connections (RFC 792, RFC 1812 4.3.2.3), translated for the other side
//! as IPVS does (`ip_vs_in_icmp`, `ip_vs_out_icmp`): the error quotes a packet the gateway sent,
//! whose reverse is the tuple the connection table knows. The quote's addresses and ports (and a
//! UDP checksum inside its 8 bytes) are rewritten for the side the error goes to, a SYN-proxied
//! connection's sequence number shifted back (`synproxy::unshift_quote`), and the ICMP checksum
//! computed again. IPv6's are `inet6::icmp`'s.

use super::{mode, synproxy, Forwarder, Via};
use crate::conn::{Dir, Tuple};
use crate::forward::dr;
use crate::net::L3;
use crate::packet::{Ipv4In, PacketBuf, RxMeta, Verdict};
use crate::stats::Drop;
use crate::wire::{icmp, ipv4, IcmpPacket, IpProtocol, Ipv4Packet};
use std::net::Ipv4Addr;

/// What an ICMP error quotes: the offending datagram's protocol, addresses and ports.
struct Quote {
    hl: usize,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
}

fn parse_quote(q: &[u8]) -> Option<Quote> {
    if q.len() < ipv4::HEADER_LEN || q[0] >> 4 != 4 {
        return None;
    }
    let hl = usize::from(q[0] & 0x0F) * 4;
    if hl < ipv4::HEADER_LEN || q.len() < hl + 8 {
        return None;
    }
    let ip = Ipv4Packet::new_unchecked(q);
    Some(Quote {
        hl,
        proto: ip.protocol().0,
        src: ip.src(),
        dst: ip.dst(),
        sport: u16::from_be_bytes([q[hl], q[hl + 1]]),
        dport: u16::from_be_bytes([q[hl + 2], q[hl + 3]]),
    })
}

impl Forwarder {
    /// ICMP errors about a tracked connection are translated for the other side: an error from the
    /// server side (quoting LIP:lport -> RIP:rport, or CIP:cport -> RIP:rport with NAT) goes to the
    /// client as if about VIP:vport, and one from the client side (quoting VIP:vport -> CIP:cport)
    /// goes to the real server (with NAT its outer source stays; with DR and TUN the error is passed
    /// on unchanged, by MAC or in IPIP, as IPVS does). Echo requests come back as `Err` (local
    /// delivery answers pings).
    // Out of line whatever the codegen units decide (ICMP errors only): inlined, it
    // bloated the SYN path's code (perf/RESULTS.md, "New connections a second
    // fell with a module split").
    #[inline(never)]
    pub(super) fn icmp_error<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        mut pkt: B,
        meta: &RxMeta,
        v: &Ipv4In,
        via: Via,
    ) -> Result<Verdict<B>, B> {
        let ip = &v.ip;
        if ip.is_fragment {
            return Ok(Verdict::Drop(Drop::IpFragment.into(), pkt));
        }
        let l3_off = v.l3_off;
        let l4_off = ip.l4_off;
        let end = l3_off + ip.total_len as usize;
        let q = {
            let msg = IcmpPacket::new_unchecked(&pkt.data()[l4_off..end]);
            if !msg.is_error() {
                return Err(pkt);
            }
            if !msg.verify_checksum() {
                return Ok(Verdict::Drop(Drop::L4BadChecksum.into(), pkt));
            }
            match msg.embedded().and_then(parse_quote) {
                Some(q) => q,
                None => return Ok(Verdict::Drop(Drop::IcmpUnhandled.into(), pkt)),
            }
        };
        if q.proto != IpProtocol::TCP.0 && q.proto != IpProtocol::UDP.0 {
            return Ok(Verdict::Drop(Drop::IcmpUnhandled.into(), pkt));
        }
        // The quoted packet went the other way: its reverse is the tuple the table knows.
        let tuple = Tuple::new(q.dst, q.dport, q.src, q.sport, q.proto);
        let (id, dir) = match (self.table.lookup(&tuple), via) {
            (Some(x), _) => x,
            (None, Via::Lip) => return Ok(self.not_mine(pkt, meta, q.sport)),
            // Quoting CIP:cport -> RIP:rport.
            (None, Via::NatReply) => return Ok(self.nat_not_mine(pkt, meta, q.src, q.sport)),
            // Quoting VIP:vport -> CIP:cport.
            (None, Via::Vip) => {
                let owner = self.services.find(q.src, q.sport, q.proto).and_then(|si| {
                    self.client_owner_elsewhere(meta, si, q.src, q.sport, q.proto, q.dst, q.dport)
                });
                return Ok(match owner {
                    Some(w) => self.hand_to(w, pkt, true),
                    None => Verdict::Drop(Drop::NoConn.into(), pkt),
                });
            }
        };
        let Some(c) = self.table.get(id) else {
            return Ok(Verdict::Drop(Drop::NoConn.into(), pkt));
        };
        let (client, conn_mode, svc, rip) = (c.client(), c.mode(), c.svc, Ipv4Addr::from(c.user));
        // A proxied connection's quoted segment goes back into the other side's sequence space,
        // once the server has answered (`synproxy::unshift_quote`).
        let adj = self.proxied_adj(id);
        if conn_mode == mode::DR || conn_mode == mode::TUN {
            pkt.set_len(end);
            self.stats.icmp_translated += 1;
            return Ok(if conn_mode == mode::DR {
                dr::forward(l3, pkt, rip)
            } else {
                self.tun_out(l3, pkt, l3_off, svc, &client, rip)
            });
        }
        let Some(reply) = c.reply() else {
            return Ok(Verdict::Drop(Drop::NoConn.into(), pkt));
        };
        // (new quoted src, new quoted dst, new outer src, new outer dst)
        let (qs, qd, os, od) = match dir {
            // From the server side, quoting LIP:lport -> RIP:rport: tell the client about
            // CIP:cport -> VIP:vport, from the VIP.
            Dir::Reply => (
                (client.src_ip(), client.sport),
                (client.dst_ip(), client.dport),
                client.dst_ip(),
                client.src_ip(),
            ),
            // From the client side, quoting VIP:vport -> CIP:cport: tell the server about
            // RIP:rport -> LIP:lport, from the LIP (NAT: about RIP:rport -> CIP:cport, from whoever
            // sent the error).
            Dir::Original => (
                (reply.src_ip(), reply.sport),
                (reply.dst_ip(), reply.dport),
                if conn_mode == mode::NAT {
                    ip.src
                } else {
                    reply.dst_ip()
                },
                reply.src_ip(),
            ),
        };
        pkt.set_len(end);
        let frame = pkt.data_mut();
        {
            let quote = &mut frame[l4_off + icmp::HEADER_LEN..end];
            let (hl, proto) = (q.hl, q.proto);
            {
                let mut qip = Ipv4Packet::new_unchecked(&mut quote[..]);
                qip.set_src_incremental(qs.0);
                qip.set_dst_incremental(qd.0);
            }
            if proto == IpProtocol::UDP.0 {
                // The UDP checksum is inside the 8 quoted bytes: keep it consistent.
                let mut c = u16::from_be_bytes([quote[hl + 6], quote[hl + 7]]);
                if c != 0 {
                    use crate::wire::checksum::{update16_udp, update32_udp};
                    c = update32_udp(c, u32::from(q.src), u32::from(qs.0));
                    c = update32_udp(c, u32::from(q.dst), u32::from(qd.0));
                    c = update16_udp(c, q.sport, qs.1);
                    c = update16_udp(c, q.dport, qd.1);
                    quote[hl + 6..hl + 8].copy_from_slice(&c.to_be_bytes());
                }
            }
            quote[hl..hl + 2].copy_from_slice(&qs.1.to_be_bytes());
            quote[hl + 2..hl + 4].copy_from_slice(&qd.1.to_be_bytes());
            if let (Some(adj), true) = (adj, proto == IpProtocol::TCP.0) {
                synproxy::unshift_quote(&mut quote[hl..], &adj, dir == Dir::Original);
            }
        }
        IcmpPacket::new_unchecked(&mut frame[l4_off..end]).fill_checksum();
        {
            let mut outer = Ipv4Packet::new_unchecked(&mut frame[l3_off..end]);
            outer.set_src_incremental(os);
            outer.set_dst_incremental(od);
        }
        self.stats.icmp_translated += 1;
        Ok(l3.route_out(pkt, od))
    }
}
