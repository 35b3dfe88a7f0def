//! IPv6 fragments of forwarded TCP and UDP datagrams follow their first fragment (issue 17, item
//! 4), as IPv4 ones do (`crate::frag`, whose table this uses): the first fragment (offset 0, the
//! only one with ports) is forwarded as a whole packet would be and what became of it recorded per
//! datagram, keyed by (source, destination, identification) as a receiver reassembles by (RFC 8200
//! 4.5); the later ones get the same addresses, next hop and encapsulation. No checksum changes
//! for them: IPv6 has no header checksum, and the upper-layer checksum is in the first fragment.
//!
//! All fragments of a datagram reach one worker: a NIC hashes IPv6 fragments by their addresses
//! only (the later ones carry no ports), and so does the kernel's fanout for af_packet. A first
//! fragment that reaches another worker than its connection's owner (a FullNAT reply, by its
//! local port; a client's datagram, by its client tuple: `forward::owner`) is handed to the
//! owner, and the later ones follow it there, after it (the hand-over ring keeps their order).
//! Out-of-order fragments wait for their first one within `[fragments] max_held`, as IPv4's.

use crate::packet::Verdict;
use crate::stats::Drop;
use crate::wire::{ethernet, ipv6, IpProtocol};
use std::net::Ipv6Addr;

const L3: usize = ethernet::HEADER_LEN;

/// What identifies an IPv6 datagram's fragments (RFC 8200 4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub ident: u32,
}

/// Where the first fragment went on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link6 {
    /// Sent on this port with these destination and source MACs.
    Sent { port: u16, macs: [u8; 12] },
    /// Held for neighbour `target` on `port`: the others queue behind it (`nd::send_to`).
    Queued { target: Ipv6Addr, port: u16 },
}

/// How the first fragment left: the others leave the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite6 {
    pub link: Link6,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The outer header of IPv6 in IPv6 (TUN), copied with its length fixed.
    pub outer: Option<[u8; ipv6::HEADER_LEN]>,
}

/// What became of a datagram's first fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision6 {
    Send(Rewrite6),
    /// Handed to this worker (the connection's), which decides the rest.
    Worker(u16),
    /// Dropped: the others are dropped (`frag_first_dropped`).
    Drop,
}

impl Rewrite6 {
    /// How the first fragment of `key`, `payload_len` bytes of IPv6 payload as received, left:
    /// `head` is the start of the frame that left (its Ethernet header, the outer IPv6 header for
    /// TUN, the inner header and its fragment header). None when that is not the same fragment
    /// with its addresses rewritten.
    pub fn learn(link: Link6, key: &FragKey6, payload_len: u16, head: &[u8]) -> Option<Rewrite6> {
        let after = ipv6::Ipv6Packet::new_unchecked(head.get(L3..L3 + ipv6::HEADER_LEN)?);
        let (inner_at, outer) = if after.next_header() == IpProtocol::IPV6 {
            let mut o = [0u8; ipv6::HEADER_LEN];
            o.copy_from_slice(&head[L3..L3 + ipv6::HEADER_LEN]);
            (L3 + ipv6::HEADER_LEN, Some(o))
        } else {
            (L3, None)
        };
        let inner = head.get(inner_at..)?;
        let ip = ipv6::Ipv6Packet::new_unchecked(inner.get(..ipv6::HEADER_LEN)?);
        let upper = ipv6::walk(ip.next_header(), &inner[ipv6::HEADER_LEN..]).ok()?;
        let same = ip.payload_len() == payload_len
            && upper
                .fragment
                .is_some_and(|f| f.ident == key.ident && f.offset == 0 && f.more);
        same.then_some(Rewrite6 {
            link,
            src: ip.src(),
            dst: ip.dst(),
            outer,
        })
    }

    /// Rewrites a later fragment (IPv6 at `L3`, checked) as the first one was; with
    /// `Link6::Sent`, ready to send. Fails when the encapsulated fragment would exceed `mtu` or
    /// there is no headroom for the outer header.
    pub fn apply<B: crate::packet::PacketBuf>(&self, pkt: &mut B, mtu: u16) -> Result<(), Drop> {
        let total = {
            let mut ip = ipv6::Ipv6Packet::new_unchecked(&mut pkt.data_mut()[L3..]);
            ip.set_src(self.src);
            ip.set_dst(self.dst);
            ipv6::HEADER_LEN + usize::from(ip.payload_len())
        };
        pkt.set_len(L3 + total);
        if let Some(outer) = &self.outer {
            if total + ipv6::HEADER_LEN > usize::from(mtu) || !pkt.prepend(ipv6::HEADER_LEN) {
                return Err(Drop::Ipv6TooBig);
            }
            let frame = pkt.data_mut();
            frame.copy_within(ipv6::HEADER_LEN..ipv6::HEADER_LEN + L3, 0);
            frame[L3..L3 + ipv6::HEADER_LEN].copy_from_slice(outer);
            let mut o = ipv6::Ipv6Packet::new_unchecked(&mut frame[L3..]);
            o.set_payload_len(total as u16);
        }
        if let Link6::Sent { macs, .. } = &self.link {
            pkt.data_mut()[..12].copy_from_slice(macs);
        }
        Ok(())
    }
}

/// The decision a first fragment's verdict makes for the rest (`queued`: the head of the frame
/// `nd::send_to` held for neighbour (target, port), when the verdict is `Held`).
pub fn decision_of<B: crate::packet::PacketBuf>(
    verdict: &Verdict<B>,
    key: &FragKey6,
    payload_len: u16,
    queued: Option<&(Ipv6Addr, u16, Vec<u8>)>,
) -> Decision6 {
    let learned = match verdict {
        Verdict::Tx(port, b) => {
            let mut macs = [0u8; 12];
            macs.copy_from_slice(&b.data()[..12]);
            let link = Link6::Sent { port: *port, macs };
            Rewrite6::learn(link, key, payload_len, b.data())
        }
        Verdict::Held => queued.and_then(|(target, port, head)| {
            let link = Link6::Queued {
                target: *target,
                port: *port,
            };
            Rewrite6::learn(link, key, payload_len, head)
        }),
        Verdict::ToWorker(w, _) => return Decision6::Worker(*w),
        _ => None,
    };
    learned.map_or(Decision6::Drop, Decision6::Send)
}
