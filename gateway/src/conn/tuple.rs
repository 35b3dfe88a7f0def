//! The 5-tuple a packet carries as it arrives at the gateway, and the keyed hash over it.

use crate::wire::checksum::{ports_ne, Delta, Folded};
use core::hash::BuildHasher;
use std::net::{Ipv4Addr, Ipv6Addr};

/// IP protocol numbers (IANA) the table distinguishes.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// A packet's 5-tuple as it arrives (addresses and ports in host order). 16 bytes, its fields
/// in this order (`repr(C)`), which `words` reads in.
// `Hash` derived beside a hand-written `PartialEq`: the two agree, `eq` being the fields'
// equality, compared as words.
#[allow(clippy::derived_hash_with_manual_eq)]
#[derive(Clone, Copy, Debug, Default, Eq, Hash)]
#[repr(C)]
pub struct Tuple {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// Field by field, the addresses as one word and the ports as another, as they lie in memory:
/// three compares where the derived one made five (the hot paths' test of a candidate entry,
/// `Table::holds`: `established-burst-net` 430 -> 424, perf/RESULTS.md).
impl PartialEq for Tuple {
    #[inline(always)]
    fn eq(&self, other: &Tuple) -> bool {
        let addrs = |t: &Tuple| (u64::from(t.dst) << 32) | u64::from(t.src);
        let ports = |t: &Tuple| (u32::from(t.dport) << 16) | u32::from(t.sport);
        addrs(self) == addrs(other) && ports(self) == ports(other) && self.proto == other.proto
    }
}

impl Tuple {
    pub fn new(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, proto: u8) -> Tuple {
        Tuple {
            src: u32::from(src),
            dst: u32::from(dst),
            sport,
            dport,
            proto,
        }
    }

    pub fn src_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src)
    }

    pub fn dst_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst)
    }

    /// The tuple of a packet going the other way.
    pub fn reversed(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }

    /// The tuple as two words, the hash's input: each field where it lies in memory
    /// (little-endian), so that the compiler reads the addresses' word with one load, where it
    /// had combined two with shifts. The protocol's number xored with TCP's, a bijection: zero
    /// for a TCP tuple, whose second word is then its ports alone, where TCP's number in it took
    /// a 64-bit constant and an `or` (the fast path's, `established-burst-net` -2).
    #[inline(always)]
    fn words(&self) -> (u64, u64) {
        let a = (u64::from(self.dst) << 32) | u64::from(self.src);
        let b = (u64::from(self.proto ^ PROTO_TCP) << 32)
            | (u64::from(self.dport) << 16)
            | u64::from(self.sport);
        (a, b)
    }
}

/// What the connection table needs of a tuple: its protocol, a keyed hash, the empty value of a
/// free slot, and a word to read when warming a candidate entry's cache line. Implemented by the
/// IPv4 [`Tuple`] and the IPv6 [`Tuple6`]: one table implementation serves both families.
pub trait ConnKey: Copy + PartialEq + core::fmt::Debug {
    const EMPTY: Self;
    /// The tuple as a connection entry holds it (`ConnOf`).
    type Held: HeldKey<Self>;
    fn proto(&self) -> u8;
    fn hash(&self, key: &HashKey) -> u64;
    fn warm(&self) -> u32;
    /// The source and destination as addresses of either family (HA sync's records).
    fn ends(&self) -> ((std::net::IpAddr, u16), (std::net::IpAddr, u16));
    /// The checksum changes of the rewrite that makes a packet of this tuple (a client's) one
    /// of `reply` reversed (from the real server's side, the tuple its replies come back with):
    /// that of the addresses (the IPv4 header's checksum; 0 for IPv6, which has none) and that
    /// of the addresses and the ports (TCP's and UDP's, whose pseudo-header holds the
    /// addresses). Each folded from the `Delta` of the words as they lie in the packet, as
    /// `forward::rewrite` makes it; reversed (`Folded::reversed`), the changes of the rewrite
    /// back, `reply` to this reversed.
    fn rewrite_deltas(&self, reply: &Self) -> (Folded, Folded);
}

/// A tuple as a connection entry holds it: its fields, and in two bytes the tuple's padding
/// leaves, a word of the entry's (`aux`): the same 16 bytes as an IPv4 `Tuple` (40 for IPv6's
/// 38), where a word beside the tuple would not fit the entry's 64 (`ConnOf`).
pub trait HeldKey<K>: Copy + core::fmt::Debug {
    const EMPTY: Self;
    fn hold(key: K, aux: u16) -> Self;
    fn key(&self) -> K;
    /// Whether this holds `key`, compared as `key`'s `PartialEq` compares.
    fn holds(&self, key: &K) -> bool;
    fn aux(&self) -> u16;
}

/// The held form of a tuple type (`HeldKey`): its fields, in its order, then `aux` in the two
/// bytes its padding leaves. One definition for IPv4's and IPv6's.
macro_rules! held_tuple {
    ($held:ident, $key:ident, $addr:ty, $empty_addr:expr) => {
        #[doc = concat!("A `", stringify!($key), "` held in a connection entry (`HeldKey`).")]
        #[derive(Clone, Copy, Debug)]
        #[repr(C)]
        pub struct $held {
            src: $addr,
            dst: $addr,
            sport: u16,
            dport: u16,
            proto: u8,
            aux: u16,
        }

        impl HeldKey<$key> for $held {
            const EMPTY: $held = $held {
                src: $empty_addr,
                dst: $empty_addr,
                sport: 0,
                dport: 0,
                proto: 0,
                aux: 0,
            };
            #[inline(always)]
            fn hold(t: $key, aux: u16) -> $held {
                $held {
                    src: t.src,
                    dst: t.dst,
                    sport: t.sport,
                    dport: t.dport,
                    proto: t.proto,
                    aux,
                }
            }
            #[inline(always)]
            fn key(&self) -> $key {
                $key {
                    src: self.src,
                    dst: self.dst,
                    sport: self.sport,
                    dport: self.dport,
                    proto: self.proto,
                }
            }
            #[inline(always)]
            fn holds(&self, t: &$key) -> bool {
                self.key() == *t
            }
            #[inline(always)]
            fn aux(&self) -> u16 {
                self.aux
            }
        }
    };
}

held_tuple!(HeldTuple, Tuple, u32, 0);
held_tuple!(HeldTuple6, Tuple6, [u8; 16], [0; 16]);

const _: () = assert!(core::mem::size_of::<HeldTuple>() == core::mem::size_of::<Tuple>());
const _: () = assert!(core::mem::size_of::<HeldTuple6>() == 40);

impl ConnKey for Tuple {
    const EMPTY: Tuple = Tuple {
        src: 0,
        dst: 0,
        sport: 0,
        dport: 0,
        proto: 0,
    };
    type Held = HeldTuple;
    /// Summed in host order, as the tuple holds its fields, and swapped once folded
    /// (`Delta::folded_from_host_order`): eight byte swaps fewer a new connection.
    fn rewrite_deltas(&self, reply: &Tuple) -> (Folded, Folded) {
        let ports = |s: u16, d: u16| u32::from(s) << 16 | u32::from(d);
        let addrs = Delta::new()
            .dword(self.src, reply.dst)
            .dword(self.dst, reply.src);
        let all = addrs.dword(
            ports(self.sport, self.dport),
            ports(reply.dport, reply.sport),
        );
        (addrs.folded_from_host_order(), all.folded_from_host_order())
    }
    fn ends(&self) -> ((std::net::IpAddr, u16), (std::net::IpAddr, u16)) {
        (
            (self.src_ip().into(), self.sport),
            (self.dst_ip().into(), self.dport),
        )
    }
    #[inline]
    fn proto(&self) -> u8 {
        self.proto
    }
    #[inline]
    fn hash(&self, key: &HashKey) -> u64 {
        key.hash(self)
    }
    #[inline]
    fn warm(&self) -> u32 {
        self.src
    }
}

/// An IPv6 packet's 5-tuple as it arrives (ports in host order). Addresses are byte arrays so that
/// the tuple aligns to 2 and takes 38 bytes, not the 48 of two `u128`s; its fields in this order
/// (`repr(C)`), which `hash` reads its ports in.
// `Hash` derived beside a hand-written `PartialEq`, as `Tuple`'s.
#[allow(clippy::derived_hash_with_manual_eq)]
#[derive(Clone, Copy, Debug, Default, Eq, Hash)]
#[repr(C)]
pub struct Tuple6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// As `Tuple`'s: each address as one 128-bit word, the ports as one 32-bit word.
impl PartialEq for Tuple6 {
    #[inline(always)]
    fn eq(&self, other: &Tuple6) -> bool {
        let ports = |t: &Tuple6| (u32::from(t.dport) << 16) | u32::from(t.sport);
        u128::from_ne_bytes(self.src) == u128::from_ne_bytes(other.src)
            && u128::from_ne_bytes(self.dst) == u128::from_ne_bytes(other.dst)
            && ports(self) == ports(other)
            && self.proto == other.proto
    }
}

impl Tuple6 {
    pub fn new(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, proto: u8) -> Tuple6 {
        Tuple6 {
            src: src.octets(),
            dst: dst.octets(),
            sport,
            dport,
            proto,
        }
    }

    pub fn src_ip(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src)
    }

    pub fn dst_ip(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst)
    }

    /// The tuple of a packet going the other way.
    pub fn reversed(&self) -> Tuple6 {
        Tuple6 {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

impl ConnKey for Tuple6 {
    const EMPTY: Tuple6 = Tuple6 {
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        proto: 0,
    };
    type Held = HeldTuple6;
    fn rewrite_deltas(&self, reply: &Tuple6) -> (Folded, Folded) {
        let all = Delta::new()
            .addr6_ne(self.src, reply.dst)
            .addr6_ne(self.dst, reply.src)
            .dword(
                ports_ne(self.sport, self.dport),
                ports_ne(reply.dport, reply.sport),
            );
        (Folded::default(), all.folded())
    }
    fn ends(&self) -> ((std::net::IpAddr, u16), (std::net::IpAddr, u16)) {
        (
            (self.src_ip().into(), self.sport),
            (self.dst_ip().into(), self.dport),
        )
    }
    #[inline]
    fn proto(&self) -> u8 {
        self.proto
    }
    /// The IPv4 mixer over five words instead of two: each address half goes through a keyed
    /// multiply before the next is folded in, so every output bit still depends on every input bit.
    #[inline]
    fn hash(&self, key: &HashKey) -> u64 {
        let w = |b: &[u8; 16], i: usize| {
            u64::from_le_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        let k = &key.0;
        // In memory order (`repr(C)`), as `Tuple::words`.
        let ports =
            (u64::from(self.proto) << 32) | (u64::from(self.dport) << 16) | u64::from(self.sport);
        let x = fold_mul(w(&self.src, 0) ^ k[0], w(&self.src, 8) ^ k[1]);
        let y = fold_mul(w(&self.dst, 0) ^ k[2] ^ x, w(&self.dst, 8) ^ k[3]);
        let z = fold_mul(y ^ k[0], ports ^ k[1]);
        // The key's last word is odd (`HashKey::from_words`).
        fold_mul(z ^ k[2], k[3])
    }
    #[inline]
    fn warm(&self) -> u32 {
        u32::from(self.src[15])
    }
}

/// Which side a packet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the client (matches the entry's client tuple); IPVS "INPUT".
    Original = 0,
    /// From the real server (matches the reply tuple); IPVS "OUTPUT".
    Reply = 1,
}

/// A per-boot random key for the table's hash. Keyed so that remote peers, who choose the
/// tuples, cannot aim them at one bucket; never the NIC's RSS hash, whose key is well known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKey([u64; 4]);

impl HashKey {
    /// Fresh random key from std's per-process random seed.
    pub fn random() -> HashKey {
        let s = std::collections::hash_map::RandomState::new();
        Self::from_words([0u64, 1, 2, 3].map(|i| s.hash_one(i)))
    }

    /// A fixed key, for tests and reproducible benchmarks. Its last word is kept odd, as the
    /// second round multiplies by it (`hash`): made so here, once, rather than at every hash.
    pub fn from_words(k: [u64; 4]) -> HashKey {
        HashKey([k[0], k[1], k[2], k[3] | 1])
    }

    /// Two rounds of 64x64->128 folded multiply (the wyhash/ahash mixer): a few ns, and every
    /// output bit depends on every input bit after the second round.
    #[inline]
    pub fn hash(&self, t: &Tuple) -> u64 {
        let (a, b) = t.words();
        let x = fold_mul(a ^ self.0[0], b ^ self.0[1]);
        fold_mul(x ^ self.0[2], self.0[3])
    }
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.1:1234 -> 192.0.2.1:80, TCP.
    fn example() -> Tuple {
        Tuple::new(
            Ipv4Addr::new(10, 0, 0, 1),
            1234,
            Ipv4Addr::new(192, 0, 2, 1),
            80,
            PROTO_TCP,
        )
    }

    #[test]
    fn tuple_is_small_and_converts() {
        assert!(core::mem::size_of::<Tuple>() <= 16);
        let t = example();
        assert_eq!(t.src_ip(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(t.dst_ip(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(t.src, 0x0a00_0001);
        let r = t.reversed();
        assert_eq!((r.sport, r.dport, r.src_ip()), (80, 1234, t.dst_ip()));
        assert_eq!(r.reversed(), t);
    }

    /// Asserts each of `others` unequal to `t`, both ways round.
    fn unequal_to_all<T: PartialEq + core::fmt::Debug>(t: &T, others: impl IntoIterator<Item = T>) {
        for other in others {
            assert_ne!(*t, other, "{other:?}");
            assert_ne!(other, *t, "{other:?}");
        }
    }

    /// `eq` compares words; equal exactly when every field is, whichever bit of which field
    /// differs (the high bits of each word included). `Tuple6`'s the same, on both addresses'
    /// 128 bits.
    #[test]
    fn tuples_are_equal_exactly_when_every_field_is() {
        let t = example();
        assert_eq!(t, t.reversed().reversed());
        for bit in 0..32 {
            let mut others = [t; 5];
            others[0].src ^= 1 << bit;
            others[1].dst ^= 1 << bit;
            others[2].sport ^= 1 << (bit % 16);
            others[3].dport ^= 1 << (bit % 16);
            others[4].proto ^= 1 << (bit % 8);
            unequal_to_all(&t, others);
        }
        let t = Tuple6::new(
            "2001:db8::1".parse().unwrap(),
            1234,
            "2001:db8::80".parse().unwrap(),
            80,
            PROTO_TCP,
        );
        assert_eq!(t, Tuple6 { ..t });
        for bit in 0..128 {
            let flip = |a: &mut [u8; 16]| *a = (u128::from_ne_bytes(*a) ^ (1 << bit)).to_ne_bytes();
            let mut others = [t; 5];
            flip(&mut others[0].src);
            flip(&mut others[1].dst);
            others[2].sport ^= 1 << (bit % 16);
            others[3].dport ^= 1 << (bit % 16);
            others[4].proto ^= 1 << (bit % 8);
            unequal_to_all(&t, others);
        }
    }

    #[test]
    fn hash_depends_on_every_field_and_key() {
        let k = HashKey::from_words([1, 2, 3, 4]);
        let t = example();
        let h = k.hash(&t);
        let variants = [
            Tuple {
                src: t.src ^ 1,
                ..t
            },
            Tuple {
                dst: t.dst ^ 1,
                ..t
            },
            Tuple {
                sport: t.sport ^ 1,
                ..t
            },
            Tuple {
                dport: t.dport ^ 1,
                ..t
            },
            Tuple {
                proto: PROTO_UDP,
                ..t
            },
            t.reversed(),
        ];
        for v in variants {
            assert_ne!(k.hash(&v), h, "{v:?}");
        }
        assert_ne!(HashKey::from_words([5, 2, 3, 4]).hash(&t), h);
        assert_ne!(HashKey::random(), HashKey::random());
    }

    #[test]
    fn hash_spreads_sequential_ports() {
        // Sequential client ports (the common case) must fill buckets evenly: 4096 tuples into
        // 1024 buckets by the top bits, no bucket far above the mean of 4.
        let k = HashKey::random();
        let mut buckets = [0u32; 1024];
        for p in 0..4096u16 {
            let t = Tuple::new(
                Ipv4Addr::new(10, 0, 0, 1),
                p,
                Ipv4Addr::new(192, 0, 2, 1),
                80,
                PROTO_TCP,
            );
            buckets[(k.hash(&t) >> 54) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&c| c < 20),
            "{:?}",
            buckets.iter().max()
        );
    }
}
