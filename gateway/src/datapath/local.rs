//! What reaches one of the gateway's own addresses outside any connection.

use crate::net::L3;
use crate::packet::{l4_checksum_ok, Ipv4In, PacketBuf, RxMeta, Verdict};
use crate::stats::Drop;
use crate::wire::{icmp, IpProtocol};

/// Packets addressed to one of the gateway's own addresses with no connection: answer pings, drop the
/// rest with a reason.
pub fn local_delivery<B: PacketBuf>(
    l3: &mut L3<B>,
    mut pkt: B,
    meta: &RxMeta,
    v: &Ipv4In,
) -> Verdict<B> {
    if v.ip.is_fragment {
        return Verdict::Drop(Drop::IpFragment.into(), pkt);
    }
    if v.ip.protocol != IpProtocol::ICMP {
        return Verdict::Drop(Drop::ProtoUnsupported.into(), pkt);
    }
    if !l4_checksum_ok(&pkt, meta, v) {
        return Verdict::Drop(Drop::L4BadChecksum.into(), pkt);
    }
    // Trim Ethernet padding so the reply carries exactly the IP packet.
    let end = v.l3_off + v.ip.total_len as usize;
    pkt.truncate(end);
    match icmp::echo_reply_in_place(pkt.data_mut(), v.l3_off) {
        Ok(()) => {
            l3.stats.icmp_echo_replies += 1;
            Verdict::Tx(meta.port, pkt)
        }
        Err(_) => Verdict::Drop(Drop::IcmpUnhandled.into(), pkt),
    }
}
