//! Open-addressing index from a tuple's hash to `(slot id, direction)`.
//!
//! Hand-written instead of `hashbrown::HashTable` because hashbrown's deletions leave tombstones
//! and a table full of them rehashes, possibly into a new allocation, in the middle of packet
//! processing. Here: linear probing with backward-shift deletion (Knuth, TAOCP vol. 3, 6.4,
//! Algorithm R), so there are no tombstones, the load never exceeds what it was sized for, and
//! nothing is ever allocated after creation.
//!
//! A slot is one `u64`: the upper 32 bits of the tuple's hash (which also give the home bucket)
//! and a 32-bit value `id << 1 | dir`. Eight slots share a cache line, so a probe rarely costs
//! more than one miss; the hash bits reject almost every wrong candidate before the caller
//! compares full tuples.

/// An empty slot. Never a valid entry, because values stay below `u32::MAX` (ids < 2^31).
const EMPTY: u64 = u64::MAX;

/// Largest load the index is sized for: probes stay short (~2.5 slots per hit, ~8.5 per miss
/// under uniform hashing, i.e. one or two cache lines).
pub const MAX_LOAD_NUM: usize = 3;
pub const MAX_LOAD_DEN: usize = 4;

pub struct Index {
    slots: Vec<u64>,
    mask: usize,
}

impl Index {
    /// An index that holds `max_items` entries at a load of at most 3/4.
    pub fn with_max_items(max_items: usize) -> Index {
        // More buckets than items, so a probe always ends at an empty slot.
        let buckets = (max_items * MAX_LOAD_DEN)
            .div_ceil(MAX_LOAD_NUM)
            .max(max_items + 1)
            .next_power_of_two();
        Index {
            slots: crate::bigmem::filled(buckets, EMPTY),
            mask: buckets - 1,
        }
    }

    pub fn buckets(&self) -> usize {
        self.slots.len()
    }

    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * core::mem::size_of::<u64>()
    }

    #[inline]
    fn home(&self, h32: u32) -> usize {
        h32 as usize & self.mask
    }

    /// The first slot a lookup of `h32` reads; the batch lookup loads it early so that the
    /// misses of a burst overlap.
    #[inline]
    pub fn first_slot_addr(&self, h32: u32) -> *const u8 {
        self.slots.as_ptr().wrapping_add(self.home(h32)) as *const u8
    }

    /// The home slot's value for `h32` (loading it brings its cache line in).
    #[inline]
    pub fn first_slot(&self, h32: u32) -> u64 {
        self.slots[self.home(h32)]
    }

    /// The value of the first slot for `h32` whose value satisfies `eq`.
    #[inline]
    pub fn find(&self, h32: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut pos = self.home(h32);
        loop {
            let s = self.slots[pos];
            if s == EMPTY {
                return None;
            }
            if (s >> 32) as u32 == h32 && eq(s as u32) {
                return Some(s as u32);
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Adds `value` under `h32`. The caller keeps the item count within the sized maximum, so an
    /// empty slot always exists.
    pub fn insert(&mut self, h32: u32, value: u32) {
        debug_assert!(value != u32::MAX);
        let mut pos = self.home(h32);
        while self.slots[pos] != EMPTY {
            pos = (pos + 1) & self.mask;
        }
        self.slots[pos] = (u64::from(h32) << 32) | u64::from(value);
    }

    /// Removes the slot holding exactly (`h32`, `value`); false if absent.
    pub fn remove(&mut self, h32: u32, value: u32) -> bool {
        let want = (u64::from(h32) << 32) | u64::from(value);
        let mut i = self.home(h32);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return false;
            }
            if s == want {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Backward shift: pull later members of the run into the hole unless their home lies
        // cyclically in (hole, their position].
        self.slots[i] = EMPTY;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s == EMPTY {
                return true;
            }
            let k = self.home((s >> 32) as u32);
            let stays = if i <= j {
                i < k && k <= j
            } else {
                i < k || k <= j
            };
            if !stays {
                self.slots[i] = s;
                self.slots[j] = EMPTY;
                i = j;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn sized_for_three_quarters() {
        for n in [0usize, 1, 3, 100, 1 << 20] {
            let ix = Index::with_max_items(n);
            assert!(ix.buckets() * 3 >= n * 4, "{n}");
            assert!(ix.buckets() > n);
        }
    }

    #[test]
    fn collisions_and_wraparound() {
        let mut ix = Index::with_max_items(5); // 8 buckets
        assert_eq!(ix.buckets(), 8);
        // All home at bucket 7: the run wraps to 0, 1, 2.
        for v in 0..4 {
            ix.insert(7, v);
        }
        ix.insert(0, 10); // home 0, pushed behind the wrapped run
        ix.remove(7, 1);
        for v in [0, 2, 3] {
            assert_eq!(ix.find(7, |x| x == v), Some(v));
        }
        assert_eq!(ix.find(7, |x| x == 1), None);
        assert_eq!(ix.find(0, |x| x == 10), Some(10));
        assert!(!ix.remove(7, 1));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random inserts/removes with few distinct hashes (many collisions) against a map.
        #[test]
        fn matches_model(ops in proptest::collection::vec((any::<bool>(), 0u32..12, 0u32..40), 1..300)) {
            let mut ix = Index::with_max_items(40);
            let mut model: HashMap<u32, u32> = HashMap::new(); // value -> hash
            for (ins, h, v) in ops {
                let h = h.wrapping_mul(0x9e37_79b9) | 0xf000_0000; // spread some, keep collisions
                if ins {
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(v) {
                        ix.insert(h, v);
                        e.insert(h);
                    }
                } else if let Some(hh) = model.remove(&v) {
                    prop_assert!(ix.remove(hh, v));
                }
                for (&v, &h) in &model {
                    prop_assert_eq!(ix.find(h, |x| x == v), Some(v));
                }
                prop_assert_eq!(ix.slots.iter().filter(|&&s| s != EMPTY).count(), model.len());
            }
        }
    }
}
