//! The client side's flow space: flow `i` is client address `base + i / PORTS_PER_IP`, client port
//! `FIRST_PORT + i % PORTS_PER_IP`, so 10 million flows need no table, and a reply's tuple maps back
//! to its flow index with two subtractions. The order flows are visited in is a fixed-stride walk
//! (a full cycle over `0..count`), so consecutive packets hit unrelated connection-table slots as
//! real traffic does, without a random-number generator on the fast path.

use std::net::Ipv4Addr;

/// Client ports used per client address (1024..=60999).
pub const PORTS_PER_IP: u32 = 60_000;
pub const FIRST_PORT: u16 = 1024;

/// `count` flows from client addresses starting at `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSpace {
    pub base: Ipv4Addr,
    pub count: u32,
}

impl FlowSpace {
    /// Client address and port of flow `i` (`i < count`).
    #[inline]
    pub fn tuple(&self, i: u32) -> (Ipv4Addr, u16) {
        let ip = u32::from(self.base).wrapping_add(i / PORTS_PER_IP);
        (Ipv4Addr::from(ip), FIRST_PORT + (i % PORTS_PER_IP) as u16)
    }

    /// The flow a client address and port belong to, if any.
    #[inline]
    pub fn index(&self, ip: Ipv4Addr, port: u16) -> Option<u32> {
        let hi = u32::from(ip).wrapping_sub(u32::from(self.base));
        let lo = u32::from(port.checked_sub(FIRST_PORT)?);
        if lo >= PORTS_PER_IP {
            return None;
        }
        let i = u64::from(hi) * u64::from(PORTS_PER_IP) + u64::from(lo);
        (i < u64::from(self.count)).then_some(i as u32)
    }
}

/// Visits `0..count` in a full cycle of stride `s` (coprime with `count`), starting at 0.
#[derive(Debug, Clone)]
pub struct StrideWalk {
    count: u32,
    stride: u32,
    cur: u32,
}

impl StrideWalk {
    pub fn new(count: u32) -> Self {
        let count = count.max(1);
        // About the golden ratio of the range, made coprime with it so the walk is a full cycle.
        let mut stride = (((u64::from(count) * 0x9E37_79B9) >> 32) as u32) | 1;
        while gcd(stride, count) != 1 {
            stride += 2;
        }
        StrideWalk {
            count,
            stride: stride % count.max(2),
            cur: 0,
        }
    }

    /// The next flow index.
    #[inline]
    pub fn next_index(&mut self) -> u32 {
        let i = self.cur;
        let n = self.cur as u64 + self.stride as u64;
        self.cur = if n >= self.count as u64 {
            (n - self.count as u64) as u32
        } else {
            n as u32
        };
        i
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A bitset over flow indices (which flows have completed their handshake): 1.25 MB for 10 M flows.
#[derive(Debug, Clone)]
pub struct FlowSet {
    bits: Vec<u64>,
    count: u32,
    set: u32,
}

impl FlowSet {
    pub fn new(count: u32) -> Self {
        FlowSet {
            bits: vec![0; (count as usize).div_ceil(64)],
            count,
            set: 0,
        }
    }

    /// Marks flow `i`; true if it was not marked before.
    #[inline]
    pub fn insert(&mut self, i: u32) -> bool {
        if i >= self.count {
            return false;
        }
        let Some(w) = self.bits.get_mut(i as usize / 64) else {
            return false;
        };
        let b = 1u64 << (i % 64);
        let new = *w & b == 0;
        *w |= b;
        self.set += new as u32;
        new
    }

    #[inline]
    pub fn contains(&self, i: u32) -> bool {
        self.bits
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn len(&self) -> u32 {
        self.set
    }

    pub fn is_empty(&self) -> bool {
        self.set == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tuple_and_index_are_inverse_across_address_boundaries() {
        let fs = FlowSpace {
            base: Ipv4Addr::new(198, 18, 0, 0),
            count: 200_000,
        };
        for i in [0, 1, PORTS_PER_IP - 1, PORTS_PER_IP, 199_999] {
            let (ip, port) = fs.tuple(i);
            assert_eq!(fs.index(ip, port), Some(i));
        }
        assert_eq!(
            fs.tuple(PORTS_PER_IP),
            (Ipv4Addr::new(198, 18, 0, 1), FIRST_PORT)
        );
        assert_eq!(fs.index(Ipv4Addr::new(198, 18, 0, 0), FIRST_PORT - 1), None);
        assert_eq!(
            fs.index(Ipv4Addr::new(198, 18, 0, 3), FIRST_PORT + 20_000),
            None,
            "past count"
        );
        assert_eq!(
            fs.index(Ipv4Addr::new(10, 0, 0, 1), FIRST_PORT),
            None,
            "below base"
        );
    }

    #[test]
    fn stride_walk_is_a_full_cycle() {
        for count in [1u32, 2, 3, 64, 1000, 4096, 99_991] {
            let mut w = StrideWalk::new(count);
            let mut seen = FlowSet::new(count);
            for _ in 0..count {
                assert!(
                    seen.insert(w.next_index()),
                    "count {count}: an index came twice"
                );
            }
            assert_eq!(seen.len(), count);
            assert_eq!(w.next_index(), 0, "the cycle restarts at 0");
        }
    }

    #[test]
    fn flowset_counts_distinct_marks() {
        let mut s = FlowSet::new(130);
        assert!(s.insert(129));
        assert!(!s.insert(129));
        assert!(s.contains(129) && !s.contains(128));
        assert!(!s.insert(130), "out of range is ignored");
        assert_eq!(s.len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn index_inverts_tuple(count in 1u32..20_000_000, i in any::<u32>()) {
            let fs = FlowSpace { base: Ipv4Addr::new(198, 18, 0, 0), count };
            let i = i % count;
            let (ip, port) = fs.tuple(i);
            prop_assert_eq!(fs.index(ip, port), Some(i));
        }
    }
}
