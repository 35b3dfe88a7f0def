//! The established fast path (issue 16). Most frames a load balancer forwards are segments of
//! connections it already holds: plain IPv4 TCP (no IP options, not fragmented) sent to the
//! port's MAC. For these, [`Datapath::admit_plain_tcp`] does `ingress`'s L2 and L3 checks on one
//! fixed-size view of the three headers (`wire::parse_plain_tcp`) and verifies the checksums
//! the NIC did not: the IPv4 header's always, the TCP checksum unless the segment is a plain
//! ACK (`Forwarder::forwards_unverified` says why it need not be); the forwarder then checks
//! that the destination is a VIP or a LIP, looks the connection up and forwards the segment
//! (`Forwarder::forward_established`). What
//! the general path pays for its generality is not paid: the dispatch on EtherType, protocol and
//! address kind, and the parse results carried through its stages.
//!
//! IPv6 has its own admission (`admit_plain_tcp6`: a TCP segment with no extension header, on
//! one fixed-size view, `inet6::parse_plain_tcp6`, its checksum verified unless it is a plain
//! ACK, as IPv4's, `inet6::hot::forwards_unverified`); its forwarding is `inet6`'s, from where
//! `Inet6::process` goes after its parse, straight to the service's side for a connection held
//! here. The burst loop looks up the connections of IPv6 TCP frames in its lookup stage, as it
//! does IPv4's (`Burst6`; both lines of a two-line IPv6 entry prefetched), and takes each IPv6
//! frame whole, in its turn, in its last stage (perf/RESULTS.md, "The IPv6 fast path").
//!
//! A frame the admission refuses takes the general path from the start: the admission changed
//! nothing. A segment the forwarder hands back (no connection, a client's SYN, a NAT64 reply, an
//! address that is neither a VIP nor a LIP, a plain ACK the hot path did not take whose
//! checksum, verified then, fails) goes on in the general path where the fast path left it,
//! with its checks and its lookup done (its TCP checksum too), so that an ACK or SYN flood costs no more than it
//! did. Verdicts, bytes, counters and connection state are the general path's: a property test
//! (`tests`) holds the two to it.

use super::ingress::{ingress, NotIpv4};
use super::Datapath;
use super::BURST;
use crate::conn::{Candidate, Dir, HotDeadline, Prelookup};
use crate::forward::fullnat::{NotHot, PlainSeg};
use crate::inet6::Ipv6In;
use crate::packet::{tcp_checksum_good, tcp_checksum_verifies, CsumStatus, PacketBuf, RxMeta};
use crate::packet::{Ipv4In, Verdict};
use crate::wire::{self, TcpFlags};

#[cfg(test)]
mod tests;

impl<B: PacketBuf> Datapath<B> {
    /// The fast path's admission: `Some` for a plain TCP segment received (not handed over) on
    /// a port, sent to that port's MAC, with a good IPv4 header checksum and, unless it is a
    /// plain ACK (`l4_verified`), a good TCP checksum (each verified here unless the NIC
    /// reported it good), counted as received as `ingress` counts it. `None` changes nothing.
    /// Always inlined: called, it returned its 48-byte result through memory, and the burst loop
    /// read it back at once (datapath_cost natively 36.9 -> 32.9 ns a packet, perf/RESULTS.md).
    ///
    /// With the parse, the view of the frame's three headers it was made on: the burst loop
    /// reads a segment's lane from it (`PlainSeg::of_headers`), after the admission's tests,
    /// where the parse's fields were read before them and kept across (`perf/RESULTS.md`).
    #[inline(always)]
    pub(super) fn admit_plain_tcp<'p>(
        &mut self,
        pkt: &'p B,
        meta: &RxMeta,
    ) -> Option<(Ipv4In, &'p [u8; wire::PLAIN_TCP_LEN])> {
        // The fast path off (`Datapath::set_fast_path`), no port's MAC admits a frame
        // (`L3::fast_to_port_mac`).
        if meta.from_peer || meta.csum_bad() {
            return None;
        }
        let frame = pkt.data();
        // The cheapest refusals first: another EtherType (IPv6's frames try this admission
        // first), another MAC (broadcast, multicast, a frame flooded to us), neither parsed twice.
        // On the parse's view of the three headers, whose length is checked once: a frame
        // shorter than that is not admitted whatever its EtherType.
        let h: &[u8; wire::PLAIN_TCP_LEN] = frame.first_chunk()?;
        let eth: &[u8; 14] = h.first_chunk()?;
        if eth[12..] != [0x08, 0x00] {
            return None;
        }
        if !self.l3.fast_to_port_mac(meta.port, eth.first_chunk()?) {
            return None;
        }
        // Verified unless the NIC reported it good (`Unknown`: not `Bad`, refused above): so
        // tested, one byte of the word `csum_bad` read, where `!= Good` masked that word twice.
        let parsed = wire::parse_plain_tcp(frame, meta.ip_csum == CsumStatus::Unknown)?.ok()?;
        let ip = parsed.ip?;
        let v = Ipv4In {
            l3_off: parsed.l3_off,
            ip,
        };
        if meta.l4_csum != CsumStatus::Good
            && !v.ip.tcp_flags.is_plain_ack()
            && !tcp_checksum_verifies(frame, &v)
        {
            return None;
        }
        self.l3.stats.rx_packets += 1;
        self.l3.stats.rx_bytes += frame.len() as u64;
        Some((v, h))
    }

    /// The IPv6 fast path's admission: `Some` for a TCP segment in an IPv6 packet without
    /// extension headers (`inet6::parse_plain_tcp6`), received (not handed over) on a port and
    /// sent to its MAC, from a unicast address to a unicast one, its checksum good unless it is a
    /// plain ACK (verified here unless the NIC reported it good, `l4_verified6`), counted as
    /// `ingress` and `Inet6::process` count it. `None` changes nothing.
    #[inline]
    pub(super) fn admit_plain_tcp6(&mut self, pkt: &B, meta: &RxMeta) -> Option<Ipv6In> {
        if meta.from_peer || meta.l4_csum == CsumStatus::Bad {
            return None;
        }
        let frame = pkt.data();
        // The cheapest refusal first: the IPv4 frames the IPv4 admission refused.
        if !is_ipv6(frame) {
            return None;
        }
        if !self.l3.fast_to_port_mac(meta.port, frame.first_chunk()?) {
            return None;
        }
        let v = crate::inet6::parse_plain_tcp6(frame)?;
        // What `Inet6::process` refuses or punts before it reaches a service.
        if v.dst.is_multicast() || v.src.is_multicast() || v.src.is_unspecified() {
            return None;
        }
        // All but plain ACKs (`l4_verified6`).
        if meta.l4_csum != CsumStatus::Good && !is_plain_ack6(frame, &v) {
            let l4 = frame.get(v.l4_off..v.end)?;
            if wire::ipv6::l4_checksum(v.src, v.dst, v.proto, l4) != 0 {
                return None;
            }
        }
        self.l3.stats.rx_packets += 1;
        self.l3.stats.rx_bytes += frame.len() as u64;
        self.l3.stats.inet6.rx += 1;
        Some(v)
    }

    /// Forwards a segment `admit_plain_tcp6` admitted (`Inet6::forward_plain_tcp`), with what
    /// the burst's lookup found of its connection (`pre`).
    #[inline]
    pub(super) fn forward_plain_tcp6(
        &mut self,
        pkt: B,
        meta: &RxMeta,
        v: &Ipv6In,
        pre: Prelookup,
    ) -> Verdict<B> {
        let tuple = crate::inet6::plain_tcp6_tuple(pkt.data(), v);
        // `Unknown` for a plain ACK the admission did not verify: `Inet6::forward_plain_tcp`
        // verifies it if the hot path does not take it.
        let meta = RxMeta {
            ip_csum: CsumStatus::Good,
            l4_csum: if l4_verified6(meta.l4_csum, pkt.data(), v) {
                CsumStatus::Good
            } else {
                CsumStatus::Unknown
            },
            ..*meta
        };
        self.v6
            .forward_plain_tcp(&mut self.l3, &mut self.fwd, pkt, &meta, v, &tuple, pre)
    }

    /// Forwards a segment `admit_plain_tcp` admitted: on the fast path if its connection is
    /// here, else on in the general path (`finish`) with what the fast path found out (`pre`:
    /// the burst's lookup, if it did one).
    #[inline]
    pub(super) fn forward_plain_tcp(
        &mut self,
        pkt: B,
        meta: &RxMeta,
        v: &Ipv4In,
        pre: Prelookup,
    ) -> Verdict<B> {
        match self
            .fwd
            .forward_established(&mut self.l3, pkt, v, pre, meta.l4_csum)
        {
            Ok(verdict) => {
                self.l3.stats.fast_path += 1;
                verdict
            }
            Err((pkt, pre)) => {
                let meta = admitted(meta, pkt.data(), v);
                self.finish(pkt, &meta, v, pre)
            }
        }
    }

    /// `forward_plain_tcp` for the burst loop, for a segment its admission took (`seg`), writing
    /// the verdict into the burst's slot `out` (`Forwarder::forward_hot_into`): returned through
    /// the stack and copied, a verdict was read back before the stores that wrote it had
    /// reached the cache (perf/RESULTS.md). A segment whose candidate (`found`: the burst
    /// lookup's, with the table's count of tuples as the lookup left it) holds its tuple, from
    /// either side, tries the hot path; every other segment, and one the hot path refuses, goes
    /// on out of line (`forward_plain_cold`), from its own branch: one `Result` for all of them
    /// was built and matched again (`established-burst-net` +10). Always inlined, as the
    /// worker's burst loop inlines it (`perf/calls.sh`). The reply's candidate is tested first:
    /// tested after the client's, the compiler merged the two hot paths into one with the side
    /// a variable (the client's 432 -> 441). The two branches' last lines are alike and written
    /// out in each: shared through an always-inlined helper called with the side a constant,
    /// they cost the mixed bursts 6 (`mixed-burst-spread-net` 487 -> 493).
    /// `deadline`: ESTABLISHED's at the burst's clock, for the hot path's timers
    /// (`Table::hot_deadline`).
    #[inline(always)]
    pub(crate) fn forward_plain_tcp_into(
        &mut self,
        pkt: B,
        meta: &RxMeta,
        seg: &PlainSeg,
        found: (Candidate, u64),
        deadline: HotDeadline,
        out: &mut Option<Verdict<B>>,
    ) {
        if let Some(id) = found.0.reply() {
            if !self.fwd.holds_hot(id, Dir::Reply, seg) {
                return self.forward_plain_cold(pkt, meta, NotHot::Unheld, found, out);
            }
            match self
                .fwd
                .forward_hot_into(&mut self.l3, pkt, seg, id, Dir::Reply, deadline, out)
            {
                Ok(()) => self.l3.stats.fast_path += 1,
                Err(p) => {
                    self.forward_plain_cold(p, meta, NotHot::Refused(id, Dir::Reply), found, out)
                }
            }
            return;
        }
        let Some(id) = found.0.original() else {
            return self.forward_plain_cold(pkt, meta, NotHot::Unheld, found, out);
        };
        if !self.fwd.holds_hot(id, Dir::Original, seg) {
            return self.forward_plain_cold(pkt, meta, NotHot::Unheld, found, out);
        }
        match self
            .fwd
            .forward_hot_into(&mut self.l3, pkt, seg, id, Dir::Original, deadline, out)
        {
            Ok(()) => self.l3.stats.fast_path += 1,
            Err(p) => {
                self.forward_plain_cold(p, meta, NotHot::Refused(id, Dir::Original), found, out)
            }
        }
    }

    /// `forward_plain_tcp_into` for a segment the hot path did not take (`why`): parsed again
    /// (`PlainSeg::parse`), which the burst loop did not keep, then as `forward_plain_tcp`,
    /// with what the burst's lookup found (`found`).
    #[inline(never)]
    fn forward_plain_cold(
        &mut self,
        pkt: B,
        meta: &RxMeta,
        why: NotHot,
        found: (Candidate, u64),
        out: &mut Option<Verdict<B>>,
    ) {
        let Some(v) = PlainSeg::parse(pkt.data()) else {
            // Not reached: the frame is the one the admission took, unchanged since. The
            // general path from its start, as if the admission had refused it (but for its
            // receipt, which the admission counted and `ingress` counts again).
            debug_assert!(false, "a frame the admission took does not parse");
            *out = Some(match ingress(&mut self.l3, pkt, meta) {
                Ok((pkt, v)) => self.finish(pkt, meta, &v, Prelookup::NotDone),
                Err(NotIpv4::Done(verdict)) => verdict,
                Err(NotIpv4::Ipv6(pkt)) => self.v6.process(&mut self.l3, &mut self.fwd, pkt, meta),
            });
            return;
        };
        debug_assert_eq!(
            wire::parse_plain_tcp(pkt.data(), false),
            Some(Ok(wire::Parsed {
                ethertype: wire::EtherType::IPV4,
                l3_off: v.l3_off,
                ip: Some(v.ip)
            })),
            "not the admission's parse"
        );
        match self
            .fwd
            .forward_cold_into(&mut self.l3, pkt, &v, why, found, meta.l4_csum, out)
        {
            Ok(()) => self.l3.stats.fast_path += 1,
            Err((pkt, pre)) => {
                let meta = admitted(meta, pkt.data(), &v);
                *out = Some(self.finish(pkt, &meta, &v, pre));
            }
        }
    }
}

/// The IPv6 frames of a burst whose connections the lookup stage looks up: their tuples'
/// hashes, and what it found (`Table::prelookup_hashed`). Kept in the datapath, boxed, so that a
/// burst sets up none of it; a frame's place here is in the burst loop's mark of it.
pub(super) struct Burst6 {
    /// Their tuples' hashes (`Table::prehash`).
    pub(super) hashes: [u32; BURST],
    pub(super) found: [Candidate; BURST],
}

impl Default for Burst6 {
    fn default() -> Self {
        Burst6 {
            hashes: [0; BURST],
            found: [Candidate::NOT_DONE; BURST],
        }
    }
}

/// Whether the frame's EtherType is IPv6's (0x86DD).
#[inline(always)]
pub(super) fn is_ipv6(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x86, 0xdd][..])
}

/// `meta` of a segment `admit_plain_tcp` admitted, for the general path: its IPv4 header
/// verified, and its TCP checksum, verified now if the admission did not (a plain ACK the hot
/// path did not take: most often one on its way to the worker that holds its connection, which
/// trusts the verdict of the worker that hands it over). Always inlined: the general path's
/// verification costs 50 instructions more a handed-over segment (`perf/cost.sh handoff`).
#[inline(always)]
fn admitted(meta: &RxMeta, frame: &[u8], v: &Ipv4In) -> RxMeta {
    RxMeta {
        ip_csum: CsumStatus::Good,
        l4_csum: if tcp_checksum_good(meta.l4_csum, frame, v) {
            CsumStatus::Good
        } else {
            CsumStatus::Bad
        },
        ..*meta
    }
}

/// Whether `admit_plain_tcp6` verified the TCP checksum of a segment it admits, or the NIC
/// reported it good: all but plain ACKs, as for IPv4 (`l4_verified`).
#[inline(always)]
fn l4_verified6(l4_csum: CsumStatus, frame: &[u8], v: &Ipv6In) -> bool {
    l4_csum == CsumStatus::Good || !is_plain_ack6(frame, v)
}

/// Whether the TCP segment of an IPv6 frame `admit_plain_tcp6` admits is a plain ACK.
#[inline(always)]
fn is_plain_ack6(frame: &[u8], v: &Ipv6In) -> bool {
    frame
        .get(v.l4_off + 13)
        .is_some_and(|&f| TcpFlags(f).is_plain_ack())
}
