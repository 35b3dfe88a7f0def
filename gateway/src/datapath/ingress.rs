//! The L2/L3 stage every frame goes through first: counted, parsed, filtered by destination MAC,
//! ARP answered, IPv6 passed on to `inet6`, other EtherTypes punted, and IPv4 handed to the
//! forwarding stage with what it needs (`Ipv4In`).

use crate::net::{punt, L3};
use crate::packet::{CsumStatus, Ipv4In, PacketBuf, RxMeta, Verdict};
use crate::stats::Drop;
use crate::wire::{self, EtherType, EthernetFrame};

/// What `ingress` leaves to do with a frame that is not an IPv4 packet for the forwarding stage.
pub enum NotIpv4<B> {
    /// Finished: ARP handled, malformed dropped, punted, ...
    Done(Verdict<B>),
    /// An IPv6 frame for `inet6` (its destination MAC checked).
    Ipv6(B),
}

/// L2 and L3 checks shared by every path. Returns the parsed IPv4 packet, an IPv6 frame, or the
/// final verdict (ARP handled, malformed dropped, ...).
pub fn ingress<B: PacketBuf>(
    l3: &mut L3<B>,
    pkt: B,
    meta: &RxMeta,
) -> Result<(B, Ipv4In), NotIpv4<B>> {
    // A frame handed over by another worker was counted and verified there (once per frame).
    if !meta.from_peer {
        l3.stats.rx_packets += 1;
        l3.stats.rx_bytes += pkt.len() as u64;
    }
    let check_ip_csum = !meta.from_peer && meta.ip_csum != CsumStatus::Good;
    let parsed = match wire::parse_l3l4_with(pkt.data(), check_ip_csum) {
        Ok(p) => p,
        Err(r) => return Err(NotIpv4::Done(Verdict::Drop(r.into(), pkt))),
    };
    if !meta.from_peer && !to_us(l3, &pkt, meta.port, parsed.ethertype) {
        return Err(NotIpv4::Done(Verdict::Drop(Drop::L2NotForUs.into(), pkt)));
    }
    if parsed.ethertype == EtherType::ARP {
        return Err(NotIpv4::Done(l3.handle_arp(pkt, meta.port)));
    }
    if parsed.ethertype == EtherType::IPV6 {
        return Err(NotIpv4::Ipv6(pkt));
    }
    let Some(ip) = parsed.ip else {
        let why = punt::Punt::EtherType;
        return Err(NotIpv4::Done(l3.punt(
            meta.port,
            pkt,
            why,
            Drop::EtherTypeUnsupported,
        )));
    };
    if meta.ip_csum == CsumStatus::Bad {
        return Err(NotIpv4::Done(Verdict::Drop(
            Drop::IpBadChecksumHw.into(),
            pkt,
        )));
    }
    Ok((
        pkt,
        Ipv4In {
            l3_off: parsed.l3_off,
            ip,
        },
    ))
}

/// Whether a frame received on `port` is addressed to it: to the port's MAC (compared as one
/// word, `L3::to_port_mac`), broadcast, or multicast for a reader here. Multicast (VRRP, OSPF)
/// is for the twin, if there is one; IPv6 multicast (neighbour discovery) is for `inet6` first.
/// A port the topology does not have takes nothing.
#[inline(always)]
fn to_us<B: PacketBuf>(l3: &L3<B>, pkt: &B, port: u16, ethertype: EtherType) -> bool {
    // The parse took a whole Ethernet header.
    let Some(head) = pkt.data().first_chunk::<8>() else {
        return false;
    };
    if l3.to_port_mac(port, head) {
        return true;
    }
    if l3.topo().ports.get(usize::from(port)).is_none() {
        return false;
    }
    let dst = EthernetFrame::new_unchecked(pkt.data()).dst();
    dst.is_broadcast()
        || (dst.is_multicast() && (ethertype == EtherType::IPV6 || l3.has_twin(port)))
}
