//! Hash functions of the hashing schedulers.
//!
//! `sh` and `dh` reproduce the kernel's functions bit for bit, so a table built here maps a client the
//! way IPVS would with the same server list. Maglev and the per-service key hash use a seeded 64-bit
//! mixer: the seed is fixed by default (as IPVS's `ip_vs_mh.c` fixes its siphash keys) so that two
//! gateways with the same configuration build the same table — the property Maglev relies on when
//! routers spread one flow's packets over several balancers (NSDI'16, §3.4).

/// `GOLDEN_RATIO_32` of include/linux/hash.h.
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// Linux `hash_32(val, bits)`: multiplicative hashing, keeping the top `bits` bits (1..=32).
pub(crate) fn hash_32(val: u32, bits: u32) -> u32 {
    debug_assert!((1..=32).contains(&bits));
    ((u64::from(val.wrapping_mul(GOLDEN_RATIO_32))) >> (32 - bits)) as u32
}

/// `ip_vs_dh_hashkey`: Knuth's multiplicative constant; only the low bits are used, so a 32-bit
/// wrapping product equals the kernel's `unsigned long` one.
pub(crate) fn dh_hash(addr: u32, mask: u32) -> u32 {
    addr.wrapping_mul(2_654_435_761) & mask
}

/// splitmix64's finalizer: a bijective mixer with full avalanche.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A seeded hash of one 64-bit value; different seeds give independent functions.
pub(crate) fn keyed(seed: u64, v: u64) -> u64 {
    mix64(v ^ mix64(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_32_matches_kernel_definition() {
        // hash_32(1, 8) = (0x61C88647 >> 24)
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(2, 32), 0xC391_0C8E);
    }

    #[test]
    fn dh_hash_is_low_bits_of_knuth_product() {
        let a = 0x0a00_0001u32;
        assert_eq!(
            dh_hash(a, 0xff),
            ((u64::from(a) * 2_654_435_761) & 0xff) as u32
        );
    }

    #[test]
    fn keyed_depends_on_seed() {
        assert_ne!(keyed(1, 42), keyed(2, 42));
        assert_eq!(keyed(1, 42), keyed(1, 42));
    }
}
