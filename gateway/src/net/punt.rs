//! The exception path's policy (DESIGN.md decision 13; VPP linux-cp's punt): which frames the
//! datapath hands up to its port's kernel twin, and how fast.
//!
//! Up go the frames the datapath does not consume and a host would: anything to an interface
//! address other than an ICMP echo request (ssh, BGP, health-check replies, sync; fragments too,
//! the kernel reassembles), IPv4 multicast and broadcast (VRRP is protocol 112 to 224.0.0.18),
//! ethertypes other than IPv4 and ARP (IPv6, LLDP, ...), and a copy of every ARP frame (the
//! datapath still answers for its own addresses; the copy keeps the kernel's neighbour table
//! right). Traffic to a VIP or a LIP never goes up, matched or not: the kernel would answer it with
//! RSTs and kill connections. Without a twin on the port, what would go up is dropped with the
//! reason it always had.
//!
//! Each worker punts at most `kernel.punt_rate` frames a second *per reason* (so a flood toward an
//! interface address cannot spend the budget of ARP or VRRP, and a keepalived pair stays up under
//! a SYN flood to the box; a token bucket `punt_burst`
//! deep, refilled on the worker's millisecond clock, which its housekeeping advances every 5 ms:
//! the ceiling is therefore also `punt_burst` per 5 ms), so a flood toward the box's own
//! addresses can starve neither the datapath nor the kernel; beyond, frames are dropped as
//! `punt_limited`.

use crate::stats::Drop;

/// Why a frame goes up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Punt {
    /// To an interface address, not an echo request the datapath answers.
    Local,
    /// IPv4 multicast or broadcast.
    Multicast,
    /// Neither IPv4 nor ARP.
    EtherType,
    /// A copy of an ARP frame.
    ArpCopy,
}

/// Where an IPv4 packet's destination lies, as far as punting is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// A VIP or LIP of some service (held or not).
    Virtual,
    /// An address of one of the gateway's interfaces (config or kernel).
    Iface,
    /// 224.0.0.0/4, 255.255.255.255 or a directed broadcast of a port subnet.
    MulticastOrBroadcast,
    /// Anything else.
    Other,
}

/// What becomes of an IPv4 packet that no connection or service took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    /// ICMP to an address the datapath answers for (echo replied, anything else dropped).
    Answer,
    /// Up to the twin, for this reason.
    Up(Punt),
    /// Dropped for this reason.
    Drop(Drop),
}

/// The decision for an IPv4 packet left over by the forwarding engine. `is_echo` says it is an
/// unfragmented ICMP echo request; `answered` that the destination is one the datapath answers
/// ARP and ping for (a held VIP or LIP, or an interface address); `twin` that the port has one.
pub fn decide_ipv4(dest: Dest, is_icmp: bool, is_echo: bool, answered: bool, twin: bool) -> Local {
    match dest {
        // A VIP or LIP: pings answered while held; never the kernel's.
        Dest::Virtual if answered && is_icmp => Local::Answer,
        Dest::Virtual if answered => Local::Drop(Drop::ProtoUnsupported),
        Dest::Virtual => Local::Drop(Drop::IpNotForUs),
        Dest::Iface if is_echo => Local::Answer,
        Dest::Iface if twin => Local::Up(Punt::Local),
        Dest::Iface if is_icmp => Local::Answer,
        Dest::Iface => Local::Drop(Drop::ProtoUnsupported),
        Dest::MulticastOrBroadcast if twin => Local::Up(Punt::Multicast),
        Dest::MulticastOrBroadcast | Dest::Other => Local::Drop(Drop::IpNotForUs),
    }
}

/// Whether a frame the kernel sends on a twin is its answer to an ARP request the datapath has
/// already answered: a unicast ARP reply from an address the datapath answers for (`answered`).
/// Every ARP frame received is copied up (so the kernel's neighbour table follows the wire), and
/// the kernel answers requests for its addresses too; passed on, the requester would get two
/// replies. A broadcast reply is a gratuitous ARP (keepalived's takeover announcement): it goes.
pub fn is_redundant_arp_reply(frame: &[u8], answered: impl Fn(std::net::Ipv4Addr) -> bool) -> bool {
    use crate::wire::{ethernet, ArpOp, ArpPacket, EtherType, EthernetFrame};
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != EtherType::ARP || eth.dst().is_broadcast() {
        return false;
    }
    match ArpPacket::new_checked(&frame[ethernet::HEADER_LEN..]) {
        Ok(a) => a.is_ethernet_ipv4() && a.op() == ArpOp::REPLY && answered(a.spa()),
        Err(_) => false,
    }
}

pub use crate::counters::PuntCounters;

impl PuntCounters {
    /// Frames sent up, all reasons.
    pub fn punted(&self) -> u64 {
        self.local + self.multicast + self.ethertype + self.arp_copy
    }

    /// What the admin socket, the stats file and `/metrics` report: the frames sent up, then
    /// each counter.
    pub fn reported(&self) -> impl Iterator<Item = (&'static str, u64)> {
        std::iter::once(("punted", self.punted())).chain(self.named())
    }
}

/// A worker's punt budget: a token bucket on its millisecond clock.
#[derive(Clone, Debug)]
pub struct PuntLimiter {
    /// Tokens per second, bucket depth.
    rate: u32,
    burst: u32,
    /// Tokens in thousandths, so a rate below 1000/s still refills every millisecond.
    milli_tokens: u64,
    last_ms: u64,
}

impl PuntLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        PuntLimiter {
            rate,
            burst,
            milli_tokens: u64::from(burst) * 1000,
            last_ms: 0,
        }
    }

    /// Takes one token at `now_ms` if there is one.
    #[inline]
    pub fn allow(&mut self, now_ms: u64) -> bool {
        if self.rate == 0 {
            return false;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms);
        if elapsed > 0 {
            self.last_ms = now_ms;
            let cap = u64::from(self.burst.max(1)) * 1000;
            let refill = elapsed.saturating_mul(u64::from(self.rate));
            self.milli_tokens = self.milli_tokens.saturating_add(refill).min(cap);
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// Frames a second each worker may punt by default (`[kernel] punt_rate`): what ARP, BGP, VRRP,
/// health-check answers and an operator's ssh need, far below what would busy the kernel.
pub const DEFAULT_RATE: u32 = 20_000;
/// The default token bucket's depth (`[kernel] punt_burst`).
pub const DEFAULT_BURST: u32 = 512;

impl Default for PuntLimiter {
    fn default() -> Self {
        PuntLimiter::new(DEFAULT_RATE, DEFAULT_BURST)
    }
}

/// A worker's punt budgets, one per reason.
#[derive(Clone, Debug, Default)]
pub struct PuntBudget([PuntLimiter; 4]);

impl PuntBudget {
    /// `rate` frames a second and `burst` at once, for each reason.
    pub fn new(rate: u32, burst: u32) -> Self {
        PuntBudget(std::array::from_fn(|_| PuntLimiter::new(rate, burst)))
    }

    /// Takes a token of `why`'s bucket at `now_ms` if there is one.
    #[inline]
    pub fn allow(&mut self, why: Punt, now_ms: u64) -> bool {
        self.0[why as usize].allow(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_unicast_arp_replies_for_answered_addresses_are_redundant() {
        use crate::wire::{arp, MacAddr};
        use std::net::Ipv4Addr;
        let (ours, peer) = (Ipv4Addr::new(10, 10, 0, 1), Ipv4Addr::new(10, 10, 0, 2));
        let (our_mac, peer_mac) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let answered = |ip: Ipv4Addr| ip == ours;
        // The peer's broadcast request for our address, and the kernel's reply to it.
        let mut f = [0u8; 60];
        let n = arp::write_request_to(&mut f, MacAddr::BROADCAST, peer_mac, peer, ours).unwrap();
        assert!(!is_redundant_arp_reply(&f[..n], answered), "a request");
        let mut reply = f;
        arp::make_reply_in_place(&mut reply[..n], our_mac).unwrap();
        assert!(is_redundant_arp_reply(&reply[..n], answered));
        assert!(
            !is_redundant_arp_reply(&reply[..n], |_| false),
            "an address the datapath does not answer for"
        );
        // A gratuitous reply (broadcast) announces a takeover: never held back.
        let mut garp = reply;
        garp[..6].copy_from_slice(&[0xff; 6]);
        assert!(!is_redundant_arp_reply(&garp[..n], answered));
        // Not ARP, or cut short: passed on.
        let mut ip = reply;
        ip[12..14].copy_from_slice(&[0x08, 0x00]);
        assert!(!is_redundant_arp_reply(&ip[..n], answered));
        assert!(!is_redundant_arp_reply(&reply[..20], answered));
    }

    /// Every kind of leftover IPv4 packet, with and without a twin on the port.
    #[test]
    fn the_punt_table() {
        use Dest::*;
        let cases = [
            // (dest, icmp, echo, answered, twin) -> decision
            ((Virtual, true, true, true, true), Local::Answer),
            (
                (Virtual, false, false, true, true),
                Local::Drop(Drop::ProtoUnsupported),
            ),
            // An unheld (kernel-owned) VIP: nothing, not even to the kernel that lacks it.
            (
                (Virtual, true, true, false, true),
                Local::Drop(Drop::IpNotForUs),
            ),
            (
                (Virtual, false, false, false, true),
                Local::Drop(Drop::IpNotForUs),
            ),
            ((Iface, true, true, true, true), Local::Answer),
            ((Iface, true, true, true, false), Local::Answer),
            // TCP/UDP (ssh, BGP), ICMP other than echo requests (replies to the kernel's pings).
            ((Iface, false, false, true, true), Local::Up(Punt::Local)),
            ((Iface, true, false, true, true), Local::Up(Punt::Local)),
            (
                (Iface, false, false, true, false),
                Local::Drop(Drop::ProtoUnsupported),
            ),
            ((Iface, true, false, true, false), Local::Answer),
            (
                (MulticastOrBroadcast, false, false, false, true),
                Local::Up(Punt::Multicast),
            ),
            (
                (MulticastOrBroadcast, false, false, false, false),
                Local::Drop(Drop::IpNotForUs),
            ),
            (
                (Other, false, false, false, true),
                Local::Drop(Drop::IpNotForUs),
            ),
            (
                (Other, true, true, false, true),
                Local::Drop(Drop::IpNotForUs),
            ),
        ];
        for ((d, icmp, echo, answered, twin), want) in cases {
            assert_eq!(
                decide_ipv4(d, icmp, echo, answered, twin),
                want,
                "{d:?} icmp={icmp} echo={echo} answered={answered} twin={twin}"
            );
        }
    }

    #[test]
    fn the_limiter_allows_the_burst_then_the_rate() {
        let mut l = PuntLimiter::new(1000, 10);
        let burst = (0..100).filter(|_| l.allow(0)).count();
        assert_eq!(burst, 10);
        // 1000/s is one per millisecond.
        assert!(l.allow(1));
        assert!(!l.allow(1));
        // After a long pause, never more than the burst.
        assert_eq!((0..100).filter(|_| l.allow(10_000)).count(), 10);
        // Slow rates refill in thousandths: 10/s is one token per 100 ms.
        let mut slow = PuntLimiter::new(10, 1);
        assert!(slow.allow(0));
        assert!(!slow.allow(50));
        assert!(slow.allow(100));
        let mut off = PuntLimiter::new(0, 10);
        assert!(!off.allow(0));
        // Reasons have budgets of their own: a flood to an interface address leaves VRRP's.
        let mut b = PuntBudget::new(1000, 2);
        assert!(b.allow(Punt::Local, 0) && b.allow(Punt::Local, 0));
        assert!(!b.allow(Punt::Local, 0));
        assert!(b.allow(Punt::Multicast, 0) && b.allow(Punt::ArpCopy, 0));
        // Huge rates and pauses do not overflow.
        let mut big = PuntLimiter::new(u32::MAX, 5);
        assert!(big.allow(u64::MAX / 2));
    }
}
