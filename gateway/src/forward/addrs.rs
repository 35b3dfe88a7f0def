//! The service addresses a packet's destination is classified against: every VIP and LIP, with
//! what each is (issue 16: every packet to the gateway asks this once). One table for IPv4's,
//! one for IPv6's.
//!
//! A small open-addressing table built once per service snapshot and only read afterwards:
//! Fibonacci hashing of the address (Knuth, TAOCP vol. 3, 6.4: multiply by 2^32/φ, keep the top
//! bits, so consecutive addresses, the usual LIP range, land on different slots), linear probing,
//! at most a quarter full. A lookup is a multiply, a shift and usually one compare, where a
//! `hashbrown` map with a general hasher took about 40 instructions a packet (for IPv4 until
//! ae599d7, for IPv6 until now). An IPv6 address is folded to 32 bits before the multiply.

use std::net::{Ipv4Addr, Ipv6Addr};

/// An address the table can hold: its bits as stored (`Raw`), and those folded to 32 bits for
/// the multiplicative hash.
pub trait Address: Copy {
    type Raw: Copy + Eq + Default + std::fmt::Debug;
    fn raw(self) -> Self::Raw;
    fn from_raw(raw: Self::Raw) -> Self;
    fn fold(raw: Self::Raw) -> u32;
}

impl Address for Ipv4Addr {
    type Raw = u32;
    #[inline]
    fn raw(self) -> u32 {
        u32::from(self)
    }
    fn from_raw(raw: u32) -> Self {
        Ipv4Addr::from(raw)
    }
    #[inline]
    fn fold(raw: u32) -> u32 {
        raw
    }
}

impl Address for Ipv6Addr {
    type Raw = u128;
    #[inline]
    fn raw(self) -> u128 {
        u128::from(self)
    }
    fn from_raw(raw: u128) -> Self {
        Ipv6Addr::from(raw)
    }
    /// Every bit counts: a service's local addresses usually differ in the last ones only.
    #[inline]
    fn fold(raw: u128) -> u32 {
        let x = (raw as u64) ^ ((raw >> 64) as u64);
        (x as u32) ^ ((x >> 32) as u32)
    }
}

/// What a service address is. An address may be several at once (a VIP that is also a LIP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrKind {
    /// The VIP of an IPv4 service.
    pub vip: bool,
    /// A local address of a service (IPv4 or IPv6).
    pub lip: bool,
    /// A local address of an IPv6 service (NAT64): IPv4 replies to it are translated back.
    pub lip64: bool,
}

impl AddrKind {
    const VIP: u8 = 1;
    const LIP: u8 = 2;
    const LIP64: u8 = 4;

    /// A VIP or a local address of the IPv4 services, not a NAT64 one: where an IPv4 segment
    /// reaches its FullNAT connection (the IPv4 replies of NAT64 connections are the IPv6
    /// table's).
    #[inline(always)]
    pub fn reaches_ipv4_conns(self) -> bool {
        (self.vip || self.lip) && !self.lip64
    }

    fn from_bits(b: u8) -> AddrKind {
        AddrKind {
            vip: b & Self::VIP != 0,
            lip: b & Self::LIP != 0,
            lip64: b & Self::LIP64 != 0,
        }
    }

    fn bits(self) -> u8 {
        let bit = |set: bool, b: u8| if set { b } else { 0 };
        bit(self.vip, Self::VIP) | bit(self.lip, Self::LIP) | bit(self.lip64, Self::LIP64)
    }
}

/// One slot: an address and its kind bits; no bits set marks an empty slot, so that any address
/// (0.0.0.0 included) can be a key.
#[derive(Clone, Copy, Debug, Default)]
struct Slot<R> {
    addr: R,
    bits: u8,
}

/// Every service address of one family with its [`AddrKind`].
#[derive(Debug)]
pub struct AddrTable<A: Address = Ipv4Addr> {
    slots: Box<[Slot<A::Raw>]>,
    /// 32 minus log2 of the slot count: the hash's top bits index the table.
    shift: u32,
    len: usize,
}

impl<A: Address> Default for AddrTable<A> {
    fn default() -> Self {
        AddrTable::new(std::iter::empty())
    }
}

/// 2^32 / φ, odd (Knuth's multiplicative hashing constant).
const FIBONACCI: u32 = 0x9E37_79B9;

/// The smallest table: a few slots cost nothing, and a lookup in an empty table still probes one.
const MIN_SLOTS_LOG2: u32 = 4;

impl<A: Address> AddrTable<A> {
    /// A table of `entries`; an address given more than once has the union of its kinds.
    pub fn new(entries: impl IntoIterator<Item = (A, AddrKind)>) -> AddrTable<A> {
        let entries: Vec<(A, AddrKind)> = entries.into_iter().collect();
        // At most a quarter full (the union of duplicates only makes it emptier).
        let log2 = (entries.len() * 4)
            .next_power_of_two()
            .trailing_zeros()
            .max(MIN_SLOTS_LOG2);
        let mut t = AddrTable {
            slots: vec![Slot::default(); 1 << log2].into_boxed_slice(),
            shift: 32 - log2,
            len: 0,
        };
        for (addr, kind) in entries {
            t.add(addr.raw(), kind.bits());
        }
        t
    }

    fn add(&mut self, addr: A::Raw, bits: u8) {
        if bits == 0 {
            return;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(addr);
        loop {
            let s = &mut self.slots[i];
            if s.bits == 0 {
                *s = Slot { addr, bits };
                self.len += 1;
                return;
            }
            if s.addr == addr {
                s.bits |= bits;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn home(&self, addr: A::Raw) -> usize {
        (A::fold(addr).wrapping_mul(FIBONACCI) >> self.shift) as usize
    }

    /// What `ip` is; the default (nothing) for an address that is no service's.
    #[inline]
    pub fn kind(&self, ip: A) -> AddrKind {
        let addr = ip.raw();
        let mask = self.slots.len() - 1;
        let mut i = self.home(addr);
        // Ends: the table is at most a quarter full, so an empty slot comes.
        loop {
            let s = self.slots[i & mask];
            if s.bits == 0 {
                return AddrKind::default();
            }
            if s.addr == addr {
                return AddrKind::from_bits(s.bits);
            }
            i += 1;
        }
    }

    /// Every address in the table (in no particular order).
    pub fn addresses(&self) -> impl Iterator<Item = A> + '_ {
        self.slots
            .iter()
            .filter(|s| s.bits != 0)
            .map(|s| A::from_raw(s.addr))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn kind(vip: bool, lip: bool, lip64: bool) -> AddrKind {
        AddrKind { vip, lip, lip64 }
    }

    #[test]
    fn empty_table_knows_nothing() {
        let t = AddrTable::default();
        assert!(t.is_empty());
        assert_eq!(t.kind(Ipv4Addr::UNSPECIFIED), AddrKind::default());
        assert_eq!(t.kind(Ipv4Addr::new(10, 0, 0, 1)), AddrKind::default());
        assert_eq!(t.addresses().count(), 0);
    }

    #[test]
    fn kinds_of_one_address_merge() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let t = AddrTable::new([
            (a, kind(true, false, false)),
            (a, kind(false, true, false)),
            (Ipv4Addr::UNSPECIFIED, kind(false, true, true)),
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!(t.kind(a), kind(true, true, false));
        assert_eq!(t.kind(Ipv4Addr::UNSPECIFIED), kind(false, true, true));
        assert_eq!(t.kind(Ipv4Addr::new(10, 0, 0, 2)), AddrKind::default());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Against a map: every address added answers with the union of its kinds, every other
        /// (near ones included: consecutive addresses are the common LIP range) with nothing.
        #[test]
        fn matches_a_map(
            base in any::<u32>(),
            entries in proptest::collection::vec((0u32..300, 1u8..8), 0..200),
            probes in proptest::collection::vec(0u32..400, 0..50),
        ) {
            check(|off| Ipv4Addr::from(base.wrapping_add(off)), &entries, &probes)?;
        }

        /// The same for IPv6 addresses, near ones differing in their last bits or in their
        /// prefix.
        #[test]
        fn matches_a_map_in_ipv6(
            base in any::<u128>(),
            high in any::<bool>(),
            entries in proptest::collection::vec((0u32..300, 1u8..8), 0..200),
            probes in proptest::collection::vec(0u32..400, 0..50),
        ) {
            let at = |off: u32| {
                let off = u128::from(off);
                Ipv6Addr::from(base.wrapping_add(if high { off << 64 } else { off }))
            };
            check(at, &entries, &probes)?;
        }
    }

    /// `matches_a_map` for addresses `addr(offset)`.
    fn check<A>(
        addr: impl Fn(u32) -> A,
        entries: &[(u32, u8)],
        probes: &[u32],
    ) -> Result<(), TestCaseError>
    where
        A: Address + Ord + std::hash::Hash + std::fmt::Debug,
    {
        let entries: Vec<(A, AddrKind)> = entries
            .iter()
            .map(|&(off, b)| (addr(off), AddrKind::from_bits(b)))
            .collect();
        let mut model: HashMap<A, u8> = HashMap::new();
        for &(a, k) in &entries {
            *model.entry(a).or_default() |= k.bits();
        }
        let t = AddrTable::new(entries);
        prop_assert_eq!(t.len(), model.len());
        prop_assert!(t.slots.len() >= 4 * t.len());
        for &off in probes {
            let a = addr(off);
            let want = model
                .get(&a)
                .map_or_else(AddrKind::default, |&b| AddrKind::from_bits(b));
            prop_assert_eq!(t.kind(a), want);
        }
        let mut listed: Vec<A> = t.addresses().collect();
        listed.sort();
        let mut keys: Vec<A> = model.keys().copied().collect();
        keys.sort();
        prop_assert_eq!(listed, keys);
        Ok(())
    }
}
