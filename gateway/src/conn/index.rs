//! Open-addressing index from a tuple's hash to `(slot id, direction)`.
//!
//! Hand-written instead of `hashbrown::HashTable` because hashbrown's deletions leave tombstones
//! and a table full of them rehashes, possibly into a new allocation, in the middle of packet
//! processing. Here: linear probing with backward-shift deletion (Knuth, TAOCP vol. 3, 6.4,
//! Algorithm R), so there are no tombstones, the load never exceeds what it was sized for, and
//! nothing is ever allocated after creation.
//!
//! A slot is one `u32`: the value `id << 1 | dir` in its upper bits (as many as the table's
//! values need) and a tag of the tuple's hash, its low bits, in the `tag_bits` below (7 at 10M
//! connections, none at the largest capacity). Sixteen slots share a cache line. The tag rejects
//! most wrong candidates before the caller compares full tuples; the tuple comparison rejects
//! what it lets through. The home slot comes from the hash's upper bits by a multiply (Lemire's
//! "fast alternative to the modulo reduction", 2016), so the index has exactly the slots its load
//! needs instead of the next power of two.
//!
//! Four bytes a slot, and no rounding up, because at 10M connections the index was the lookup's
//! cost: every packet reads one random line of it, and this machine reads random lines of 512 MiB
//! at about 36 cycles each against 25 for 128 MiB (perf/RESULTS.md, "A smaller connection
//! index"). The price is paid on deletion: a slot does not hold its home, so the backward shift
//! asks the caller for the hash of each value it moves (the table hashes that entry's tuple
//! again).

/// An empty slot. Never an occupied one: values are sized so that none is all ones
/// ([`Index::with_max_items`]).
const EMPTY: u32 = u32::MAX;

/// Largest load the index is sized for: probes stay short (~2.5 slots per hit, ~8.5 per miss
/// under uniform hashing, i.e. one or two cache lines).
pub const MAX_LOAD_NUM: usize = 3;
pub const MAX_LOAD_DEN: usize = 4;

pub struct Index {
    slots: Vec<u32>,
    /// Low bits of a slot that hold its tag; the value takes the rest.
    tag_bits: u32,
    /// `tag_bits` ones.
    tag_mask: u32,
}

impl Index {
    /// An index that holds `max_items` values, each below `values` (at most 2^31), at a load of
    /// at most 3/4.
    pub fn with_max_items(max_items: usize, values: u32) -> Index {
        assert!(values <= 1 << 31, "values need at most 31 bits");
        // More slots than items, so a probe always ends at an empty slot.
        let n = (max_items * MAX_LOAD_DEN)
            .div_ceil(MAX_LOAD_NUM)
            .max(max_items + 1);
        assert!(n <= u32::MAX as usize, "index above 2^32 slots");
        // The bits `values` itself needs, one more than its predecessor may: the largest value
        // then has a zero bit, and no slot is all ones (`EMPTY`) whatever its tag.
        let tag_bits = values.max(1).leading_zeros();
        Index {
            slots: crate::bigmem::filled(n, EMPTY),
            tag_bits,
            tag_mask: ((1u64 << tag_bits) - 1) as u32,
        }
    }

    pub fn buckets(&self) -> usize {
        self.slots.len()
    }

    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * core::mem::size_of::<u32>()
    }

    /// The home slot of `h32`: its upper bits scaled to the slot count.
    #[inline]
    fn home(&self, h32: u32) -> usize {
        ((u64::from(h32) * self.slots.len() as u64) >> 32) as usize
    }

    #[inline]
    fn next(&self, pos: usize) -> usize {
        if pos + 1 == self.slots.len() {
            0
        } else {
            pos + 1
        }
    }

    /// The slot for `value` under `h32`: the value above, the hash's low bits (the home took
    /// its upper ones) as the tag below.
    #[inline]
    fn slot_of(&self, h32: u32, value: u32) -> u32 {
        (value << self.tag_bits) | (h32 & self.tag_mask)
    }

    /// The first slot a lookup of `h32` reads; the batch lookup loads it early so that the
    /// misses of a burst overlap.
    #[inline]
    pub fn first_slot_addr(&self, h32: u32) -> *const u8 {
        self.slots.as_ptr().wrapping_add(self.home(h32)) as *const u8
    }

    /// The home slot's content for `h32` (loading it brings its cache line in).
    #[inline]
    pub fn first_slot(&self, h32: u32) -> u32 {
        self.slots[self.home(h32)]
    }

    /// The value of the first slot for `h32` whose tag matches and whose value satisfies `eq`.
    #[inline]
    pub fn find(&self, h32: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut pos = self.home(h32);
        loop {
            let s = self.slots[pos];
            if s == EMPTY {
                return None;
            }
            if (s ^ h32) & self.tag_mask == 0 && eq(s >> self.tag_bits) {
                return Some(s >> self.tag_bits);
            }
            pos = self.next(pos);
        }
    }

    /// Adds `value` under `h32`. The caller keeps the item count within the sized maximum, so an
    /// empty slot always exists.
    pub fn insert(&mut self, h32: u32, value: u32) {
        debug_assert!(u64::from(value) < 1u64 << (32 - self.tag_bits));
        let mut pos = self.home(h32);
        while self.slots[pos] != EMPTY {
            pos = self.next(pos);
        }
        self.slots[pos] = self.slot_of(h32, value);
    }

    /// Removes the slot holding exactly (`h32`, `value`); false if absent. `hash_of(v)` must
    /// give the hash each other value present was inserted under: the backward shift needs the
    /// home of every slot it considers moving, and a slot does not keep it.
    pub fn remove(&mut self, h32: u32, value: u32, mut hash_of: impl FnMut(u32) -> u32) -> bool {
        let want = self.slot_of(h32, value);
        let mut i = self.home(h32);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return false;
            }
            if s == want {
                break;
            }
            i = self.next(i);
        }
        // Backward shift: pull later members of the run into the hole unless their home lies
        // cyclically in (hole, their position].
        self.slots[i] = EMPTY;
        let mut j = i;
        loop {
            j = self.next(j);
            let s = self.slots[j];
            if s == EMPTY {
                return true;
            }
            let k = self.home(hash_of(s >> self.tag_bits));
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

    /// The smallest hash whose home is `pos`.
    fn homing_at(ix: &Index, pos: usize) -> u32 {
        ((pos as u64) << 32).div_ceil(ix.buckets() as u64) as u32
    }

    #[test]
    fn sized_for_three_quarters_exactly() {
        for n in [0usize, 1, 3, 100, 1 << 20, (3 << 20) + 3] {
            let ix = Index::with_max_items(n, (2 * n).max(1) as u32);
            assert!(ix.buckets() * 3 >= n * 4, "{n}");
            assert!(ix.buckets() > n);
            // No rounding up to a power of two: (3 << 20) + 3 items take 4M + 4 slots, not 8M.
            assert!(
                ix.buckets() * 3 < n * 4 + 3 || n < 3,
                "{n}: {}",
                ix.buckets()
            );
        }
        assert_eq!(
            Index::with_max_items(3 << 20, 1 << 21).memory_bytes(),
            16 << 20
        );
    }

    /// The tag takes what the values leave: 7 bits at perf/bench's 10M connections (13M
    /// capacity, 26M values), none at the largest capacity.
    #[test]
    fn values_take_the_bits_they_need_and_the_tag_the_rest() {
        assert_eq!(Index::with_max_items(8, 26_000_000).tag_bits, 7);
        assert_eq!(Index::with_max_items(8, (1 << 25) - 1).tag_bits, 7);
        assert_eq!(Index::with_max_items(8, 1 << 25).tag_bits, 6);
        assert_eq!(Index::with_max_items(8, 1 << 31).tag_bits, 0);
        assert_eq!(Index::with_max_items(8, 1).tag_bits, 31);
    }

    #[test]
    fn collisions_and_wraparound() {
        let mut ix = Index::with_max_items(5, 64); // 7 slots
        assert_eq!(ix.buckets(), 7);
        let last = homing_at(&ix, 6);
        // All home at slot 6, the last: the run wraps to 0, 1, 2. Hashes differ in their low
        // bits (the tag), and two share a tag.
        for v in 0..4 {
            ix.insert(last + v % 3, v);
        }
        let zero = homing_at(&ix, 0);
        ix.insert(zero, 10); // home 0, pushed behind the wrapped run
        assert_eq!(ix.slots[3] >> ix.tag_bits, 10);
        let hash_of = |v: u32| if v == 10 { zero } else { last + v % 3 };
        assert!(ix.remove(last + 1, 1, hash_of));
        for v in [0, 2, 3] {
            assert_eq!(ix.find(last + v % 3, |x| x == v), Some(v));
        }
        assert_eq!(ix.find(last + 1, |x| x == 1), None);
        // The shift moved 10 back into its home behind the shortened run.
        assert_eq!(ix.slots[2] >> ix.tag_bits, 10);
        assert_eq!(ix.find(zero, |x| x == 10), Some(10));
        assert!(!ix.remove(last + 1, 1, hash_of));
    }

    /// A wrong tag stops nothing but the comparison: the value under another hash that shares
    /// the home is not offered to `eq`, and one with the same tag is.
    #[test]
    fn the_tag_filters_candidates_before_eq() {
        let mut ix = Index::with_max_items(5, 64);
        let h = homing_at(&ix, 2);
        ix.insert(h, 1);
        ix.insert(h + 1, 2);
        let mut offered = Vec::new();
        assert_eq!(
            ix.find(h + 1, |v| {
                offered.push(v);
                v == 2
            }),
            Some(2)
        );
        assert_eq!(offered, [2]);
        assert_eq!(ix.find(h, |_| true), Some(1));
    }

    /// The largest value under a tag of all ones would be all ones, an empty slot, had the
    /// values only the bits their largest needs: they have one more.
    #[test]
    fn the_largest_value_under_a_tag_of_all_ones_is_not_an_empty_slot() {
        let mut ix = Index::with_max_items(9, 16);
        for h in [u32::MAX, u32::MAX - 1] {
            assert_eq!(ix.find(h, |_| true), None);
        }
        ix.insert(u32::MAX, 15);
        assert_ne!(ix.slots.iter().filter(|&&s| s != EMPTY).count(), 0);
        assert_eq!(ix.find(u32::MAX, |x| x == 15), Some(15));
        assert!(ix.remove(u32::MAX, 15, |_| u32::MAX));
        assert_eq!(ix.find(u32::MAX, |_| true), None);
        assert!(ix.slots.iter().all(|&s| s == EMPTY));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random inserts/removes with few distinct hashes (many collisions) against a map.
        #[test]
        fn matches_model(ops in proptest::collection::vec((any::<bool>(), 0u32..12, 0u32..40), 1..300)) {
            let mut ix = Index::with_max_items(40, 40);
            let mut model: HashMap<u32, u32> = HashMap::new(); // value -> hash
            for (ins, h, v) in ops {
                let h = h.wrapping_mul(0x9e37_79b9) | 0xf000_0000; // spread some, keep collisions
                if ins {
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(v) {
                        ix.insert(h, v);
                        e.insert(h);
                    }
                } else if let Some(hh) = model.remove(&v) {
                    prop_assert!(ix.remove(hh, v, |x| model[&x]));
                }
                for (&v, &h) in &model {
                    prop_assert_eq!(ix.find(h, |x| x == v), Some(v));
                }
                prop_assert_eq!(ix.slots.iter().filter(|&&s| s != EMPTY).count(), model.len());
            }
        }
    }
}
