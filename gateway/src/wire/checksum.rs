//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The checksum is the one's-complement of the one's-complement sum of the data taken as big-endian
//! 16-bit words (an odd trailing byte is padded with a zero byte). Because 2^16 ≡ 1 (mod 0xFFFF), a
//! sum of wider words folds to the same 16-bit value, so [`sum`] adds 32-bit words into a 64-bit
//! accumulator (no carry handling in the loop, which the compiler can unroll) and [`fold`] folds at
//! the end.
//!
//! The FullNAT fast path never recomputes a checksum: it rewrites addresses and ports and patches the
//! checksums with [`update16`] / [`update32`] (RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`), which unlike
//! eqn. 2 never produces the "negative zero" 0xFFFF where a full recomputation gives 0x0000.

use std::net::Ipv4Addr;

use super::ip::IpProtocol;

/// The 16-bit field at `r` of `b` as its bytes lie in memory (a native-order `u16`): what the
/// checksum arithmetic can work on without a byte swap, since a one's-complement sum of
/// byte-swapped words is the byte-swapped sum (RFC 1071 2(B)). Write results back with
/// `to_ne_bytes`.
#[inline]
pub fn ne16(b: &[u8], r: core::ops::Range<usize>) -> u16 {
    let mut w = [0; 2];
    w.copy_from_slice(&b[r]);
    u16::from_ne_bytes(w)
}

/// [`ne16`] for a 32-bit field (an IPv4 address, two adjacent ports).
#[inline]
pub fn ne32(b: &[u8], r: core::ops::Range<usize>) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[r]);
    u32::from_ne_bytes(w)
}

/// Unfolded one's-complement sum of `data` as big-endian 16-bit words (odd length: the last byte is
/// the high half of a word whose low half is zero). Combine several with `+` (the total stays far
/// below `u64::MAX` for any packet) and [`fold`] at the end.
#[inline]
pub fn sum(data: &[u8]) -> u64 {
    u64::from(fold(sum_ne(data)).to_be())
}

/// The sum in native byte order. RFC 1071 2(B): the one's-complement sum is byte-order independent,
/// so summing native words and swapping the folded result equals summing big-endian words, and the
/// loop needs no byte swap per word (which baseline x86-64 SIMD cannot do), so it vectorizes.
#[inline]
fn sum_ne(data: &[u8]) -> u64 {
    // The common input starts with a 20-byte header (IPv4, TCP): five words summed unrolled, no
    // vector loop to set up and reduce for so few bytes.
    if let Some((head, rest)) = data.split_first_chunk::<20>() {
        let word = |i: usize| {
            u64::from(u32::from_ne_bytes([
                head[i],
                head[i + 1],
                head[i + 2],
                head[i + 3],
            ]))
        };
        let acc = word(0) + word(4) + word(8) + word(12) + word(16);
        return if rest.is_empty() {
            acc
        } else {
            acc + sum_words(rest)
        };
    }
    sum_words(data)
}

/// [`sum_ne`] by a loop of 32-bit words, which the compiler vectorizes.
#[inline]
fn sum_words(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut rest = words.remainder();
    if let [a, b, tail @ ..] = rest {
        acc += u64::from(u16::from_ne_bytes([*a, *b]));
        rest = tail;
    }
    if let [last] = rest {
        acc += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    acc
}

/// Whether `data`, its checksum field included, verifies: it sums to 0xFFFF. That value reads the
/// same in both byte orders, so the native sum needs no swap (RFC 1071 2(B)).
#[inline]
pub fn verifies(data: &[u8]) -> bool {
    fold(sum_ne(data)) == 0xFFFF
}

/// Whether a 20-byte header (IPv4's without options), its checksum field included, verifies:
/// `verifies` for exactly 20 bytes, as two 64-bit words and a 32-bit one added with end-around
/// carry (RFC 1071 2(C): the one's-complement sum of 64-bit words folds to that of 16-bit
/// ones, 2^64 - 1 being a multiple of 2^16 - 1), where the 32-bit words' sum took 22
/// instructions, vector ones among them (perf/RESULTS.md, "What bounds macswap's rate; ..., the
/// header's checksum in 64-bit words").
#[inline(always)]
pub fn verifies_20(h: &[u8; 20]) -> bool {
    let (a, rest) = h.split_first_chunk::<8>().expect("20 bytes");
    let (b, c) = rest.split_first_chunk::<8>().expect("12 bytes");
    let c = u64::from(u32::from_ne_bytes(*c.first_chunk::<4>().expect("4 bytes")));
    let s = add3_end_around(u64::from_ne_bytes(*a), u64::from_ne_bytes(*b), c);
    // `fold(s) == 0xFFFF`, each step's sum left in the high half, where the carry out of the
    // low half has already been added (as Linux's `csum_fold`): the high half of `s` plus `s`
    // rotated by 32 is the halves' sum with end-around carry, which cannot carry out of the
    // high half (at most 2^32 - 2 + 1); the same at 16 bits. The last step's high half is the
    // folded sum, 0xFFFF exactly when the whole is at least 0xFFFF << 16: no shift down
    // (`established-burst-net` 392 -> 388).
    let s32 = (s.wrapping_add(s.rotate_right(32)) >> 32) as u32;
    s32.wrapping_add(s32.rotate_right(16)) >= 0xFFFF_0000
}

/// `a + b + c` with end-around carry, `c` below 2^32: on x86-64 an add and two adds with carry
/// (`_addcarry_u64`), where the portable sums' second carry was compared out of the result again
/// (`established-burst-net` 330 -> 328).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn add3_end_around(a: u64, b: u64, c: u64) -> u64 {
    use core::arch::x86_64::_addcarry_u64;
    let (mut s, mut t, mut u) = (0, 0, 0);
    let k = _addcarry_u64(0, c, a, &mut s);
    let k = _addcarry_u64(k, s, b, &mut t);
    // A carry out of the second add leaves `t` at most 2^64 - 2 (with a carry into it, `s` is
    // below 2^32; without, `t` is at most 2 (2^64 - 1) - 2^64): this one cannot carry.
    _addcarry_u64(k, t, 0, &mut u);
    u
}

/// `add3_end_around` elsewhere.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn add3_end_around(a: u64, b: u64, c: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    // c + carry < 2^33: no overflow; a carry out of the second add leaves s below c + 1.
    let (s, carry2) = s.overflowing_add(c + u64::from(carry));
    s + u64::from(carry2)
}

/// Folds an unfolded sum to 16 bits with end-around carry. A non-zero sum folds to 1..=0xFFFF.
/// Two fixed steps, no loop (RFC 1071 2(C): 2^32 and 2^16 are both 1 modulo 0xFFFF), each an add
/// whose carry is added back (an `add` and an `adc` on x86-64): the halves of `acc` sum to at most
/// 2^33 - 2, so with a carry out the low 32 bits are at most 2^32 - 2 and adding the carry back
/// cannot carry again; the same holds for the 16-bit step.
#[inline]
pub fn fold(acc: u64) -> u16 {
    let (s, carry) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let s = s + u32::from(carry);
    let (s, carry) = (s as u16).overflowing_add((s >> 16) as u16);
    s + u16::from(carry)
}

/// The Internet checksum of `data`: `!fold(sum(data))`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// The sum of `data` with the 16-bit field at even offset `field` taken as zero: what the checksum of
/// a header is computed over, whatever the field currently holds. `field + 2` must be within `data`.
#[inline]
pub fn sum_skipping(data: &[u8], field: usize) -> u64 {
    debug_assert!(field & 1 == 0, "checksum field must be word aligned");
    sum(data.get(..field).unwrap_or(&[])) + sum(data.get(field + 2..).unwrap_or(&[]))
}

/// Checksum of an IPv4 header (RFC 791 3.1), ignoring what the checksum field holds.
#[inline]
pub fn ipv4_header(header: &[u8]) -> u16 {
    !fold(sum_skipping(header, 10))
}

/// Unfolded sum of the IPv4 pseudo-header of RFC 793 3.1 / RFC 768: source, destination, zero,
/// protocol, and the L4 length (header plus data).
#[inline]
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, l4_len: u16) -> u64 {
    u64::from(u32::from(src))
        + u64::from(u32::from(dst))
        + u64::from(protocol.0)
        + u64::from(l4_len)
}

/// Offset of the checksum field inside an L4 header, for the protocols whose checksum this module
/// knows how to compute.
#[inline]
pub fn l4_checksum_field(protocol: IpProtocol) -> Option<usize> {
    match protocol {
        IpProtocol::TCP => Some(16),
        IpProtocol::UDP => Some(6),
        IpProtocol::ICMP => Some(2),
        _ => None,
    }
}

/// The checksum a TCP, UDP or ICMP segment `l4` carried by an IPv4 packet from `src` to `dst` must
/// hold, ignoring what its checksum field currently holds. ICMP has no pseudo-header (RFC 792).
/// For UDP a computed 0 is returned as 0xFFFF (RFC 768: 0 means "no checksum"). Returns `None` for
/// other protocols or a segment too short to hold its checksum field.
pub fn l4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, l4: &[u8]) -> Option<u16> {
    let field = l4_checksum_field(protocol)?;
    if l4.len() < field + 2 || l4.len() > usize::from(u16::MAX) {
        return None;
    }
    let mut acc = sum_skipping(l4, field);
    if protocol != IpProtocol::ICMP {
        acc += pseudo_header(src, dst, protocol, l4.len() as u16);
    }
    let c = !fold(acc);
    Some(if protocol == IpProtocol::UDP && c == 0 {
        0xFFFF
    } else {
        c
    })
}

/// Whether `l4` (checksum field included) verifies: its sum, plus the pseudo-header for TCP/UDP,
/// folds to 0xFFFF. The caller handles UDP's "checksum 0 = none" before calling. Always
/// inlined: the fast path's admission verifies every segment the NIC did not, and the worker's
/// burst loop called it.
#[inline(always)]
pub fn l4_verifies(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, l4: &[u8]) -> bool {
    let Ok(len) = u16::try_from(l4.len()) else {
        return false;
    };
    // Summed in native byte order, the pseudo-header too: one fold, no swap (see `verifies`).
    let mut acc = sum_ne(l4);
    if protocol != IpProtocol::ICMP {
        acc += u64::from(u32::from_ne_bytes(src.octets()))
            + u64::from(u32::from_ne_bytes(dst.octets()))
            + u64::from(u16::from_ne_bytes([0, protocol.0]))
            + u64::from(u16::from_ne_bytes(len.to_be_bytes()));
    }
    fold(acc) == 0xFFFF
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit word of the covered data changed from `old` to
/// `new`. Also valid with `old`/`new` being folded sums of a changed word-aligned region.
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!hc) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// [`update16`] for a changed 32-bit value, e.g. an IPv4 address in the header or pseudo-header.
#[inline]
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!hc)
        + u64::from(!(old >> 16) & 0xFFFF)
        + u64::from(!old & 0xFFFF)
        + u64::from(new >> 16)
        + u64::from(new & 0xFFFF);
    !fold(acc)
}

/// [`update16`] for an IPv4 UDP checksum: 0 means "no checksum" and is left alone (RFC 768), and a
/// result of 0 is sent as 0xFFFF.
#[inline]
pub fn update16_udp(hc: u16, old: u16, new: u16) -> u16 {
    if hc == 0 {
        return 0;
    }
    udp_nonzero(update16(hc, old, new))
}

/// [`update32`] for an IPv4 UDP checksum (see [`update16_udp`]).
#[inline]
pub fn update32_udp(hc: u16, old: u32, new: u32) -> u16 {
    if hc == 0 {
        return 0;
    }
    udp_nonzero(update32(hc, old, new))
}

/// The ports `(src, dst)` as the 32-bit word they make in a TCP or UDP header, read in memory
/// order (as [`ne32`] reads it), as everything in a [`Delta`] is.
#[inline(always)]
pub fn ports_ne(src: u16, dst: u16) -> u32 {
    // One byte swap of both, where the bytes put together one by one took ten instructions.
    u32::from_ne_bytes((u32::from(src) << 16 | u32::from(dst)).to_be_bytes())
}

/// Several changes to the data one checksum covers, applied with a single fold: a FullNAT rewrite
/// changes two addresses and two ports, i.e. six words for the L4 checksum. Same result as chaining
/// [`update16`] / [`update32`] (RFC 1624 eqn. 3 summed over all changed words).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    #[inline]
    pub fn new() -> Self {
        Delta(0)
    }

    /// A 16-bit word changed from `old` to `new`.
    #[inline]
    pub fn word(mut self, old: u16, new: u16) -> Self {
        self.0 += u64::from(!old) + u64::from(new);
        self
    }

    /// A 32-bit value (e.g. an IPv4 address) changed from `old` to `new`. Added whole, not as two
    /// words: `hi * 2^16 + lo` is `hi + lo` modulo 0xFFFF, and the 32-bit complement `!old` is
    /// `!hi + !lo` (both are `-(hi + lo)`), so [`fold`] makes of it what of the two words.
    #[inline]
    pub fn dword(mut self, old: u32, new: u32) -> Self {
        self.0 += u64::from(!old) + u64::from(new);
        self
    }

    /// An IPv6 address (eight words) changed from `old` to `new`.
    #[inline]
    pub fn addr6(mut self, old: std::net::Ipv6Addr, new: std::net::Ipv6Addr) -> Self {
        for (o, n) in old.segments().into_iter().zip(new.segments()) {
            self = self.word(o, n);
        }
        self
    }

    /// An IPv6 address changed from `old` to `new`, its bytes taken as four 32-bit words in memory
    /// order: for a delta whose every value is in memory order, as [`ne32`] reads them (half the
    /// additions of [`addr6`](Self::addr6), and no byte swaps).
    ///
    /// The four words are read at constant offsets, with no iterator: an adapter's `zip` left to
    /// the inliner was once compiled out of line, a call and a loop for each address, two a
    /// packet (`established6-burst-net` 787 -> 1025 at 29cc390, when an unrelated field grew
    /// `Forwarder`).
    #[inline]
    pub fn addr6_ne(self, old: [u8; 16], new: [u8; 16]) -> Self {
        let word =
            |a: &[u8; 16], i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
        self.dword(word(&old, 0), word(&new, 0))
            .dword(word(&old, 4), word(&new, 4))
            .dword(word(&old, 8), word(&new, 8))
            .dword(word(&old, 12), word(&new, 12))
    }

    /// The change folded to 16 bits, to keep (`Folded`).
    #[inline]
    pub fn folded(self) -> Folded {
        Folded(fold(self.0))
    }

    /// [`folded`](Self::folded) of the same change with its words taken in host order rather
    /// than as they lie in memory (each `u32` an address or two ports as numbers): the sum of
    /// byte-swapped words is the byte-swapped sum (RFC 1071 2(B)), so one swap of the folded
    /// 16 bits stands for a swap of each word. A swap maps 1..=0xFFFF onto itself, `fold`'s
    /// representation, so the result is `folded`'s bit for bit.
    #[inline]
    pub fn folded_from_host_order(self) -> Folded {
        Folded(u16::from_ne_bytes(fold(self.0).to_be_bytes()))
    }

    /// The checksum `hc` updated by every change.
    #[inline]
    pub fn apply(self, hc: u16) -> u16 {
        !fold(u64::from(!hc) + self.0)
    }

    /// [`apply`](Self::apply) for an IPv6 UDP checksum, which is never 0 (RFC 8200 8.1): a result
    /// of 0 becomes 0xFFFF.
    #[inline]
    pub fn apply_udp6(self, hc: u16) -> u16 {
        udp_nonzero(self.apply(hc))
    }

    /// [`apply`](Self::apply) for an IPv4 UDP checksum: 0 ("none") stays 0, a result of 0 becomes
    /// 0xFFFF.
    #[inline]
    pub fn apply_udp(self, hc: u16) -> u16 {
        if hc == 0 {
            0
        } else {
            udp_nonzero(self.apply(hc))
        }
    }
}

/// A [`Delta`] folded to 16 bits ([`Delta::folded`]), to be kept and applied later: 2 bytes
/// where the delta is 8, applied with one 16-bit add where the delta's fold takes two
/// (`Folded::apply`). A connection entry keeps the folded deltas of its rewrite, which its
/// established packets then apply without reading the fields they replace (`conn::ConnKey`'s
/// `rewrite_deltas`, perf/RESULTS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Folded(u16);

impl Folded {
    /// The checksum `hc` updated by the change folded: bit for bit [`Delta::apply`] of the
    /// delta this was folded from. `fold` gives a non-zero sum's one representative in
    /// 1..=0xFFFF, and `!hc + self` (end-around carry) is zero only when both are, as is
    /// `!hc + delta`; so the two sums fold to the same 16 bits.
    #[inline(always)]
    pub fn apply(self, hc: u16) -> u16 {
        let (s, carry) = (!hc).overflowing_add(self.0);
        !(s + u16::from(carry))
    }

    /// A folded delta kept as its 16 bits (`bits`).
    #[inline(always)]
    pub const fn from_bits(bits: u16) -> Folded {
        Folded(bits)
    }

    /// The 16 bits to keep (`from_bits`).
    #[inline(always)]
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The change back: what the [`Delta`] of the same words taken the other way round (each
    /// `new` to its `old`) folds to. That sum is the negation of this one, `!d`, in the
    /// representation `fold` gives, 1..=0xFFFF: 0xFFFF ("minus zero", a change that sums to
    /// nothing, such as two addresses swapped) stays 0xFFFF, as does 0 (every word changed from
    /// all ones to all zeros). Exact but when every word changes from all zeros to all ones,
    /// whose sum back is 0: no connection's addresses do.
    #[inline(always)]
    pub fn reversed(self) -> Folded {
        Folded(if self.0 == 0xFFFF { 0xFFFF } else { !self.0 })
    }
}

/// A change to a checksum known in advance, applied with a few instructions: a connection's
/// folded delta ([`Folded`]) or the change back ([`Back`]).
pub trait ChecksumChange: Copy {
    /// The checksum `hc` updated by this change.
    fn apply(self, hc: u16) -> u16;
}

impl ChecksumChange for Folded {
    #[inline(always)]
    fn apply(self, hc: u16) -> u16 {
        Folded::apply(self, hc)
    }
}

/// [`Folded::reversed`] of a delta, applied without building it (`Folded::back`): bit for bit
/// `d.reversed().apply(hc)`, in an add and a remainder by a constant (which the compiler makes a
/// multiply and shifts), where the reversal and `apply` took a compare, a conditional move and
/// complements (a reply on the FullNAT hot path 362 -> 354 instructions, perf/RESULTS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Back(Folded);

impl Folded {
    /// The change back, to apply (`Back`).
    #[inline(always)]
    pub fn back(self) -> Back {
        Back(self)
    }
}

impl ChecksumChange for Back {
    /// `(hc + d) mod 0xFFFF`. With `t = hc + d` (at most 0x1FFFE): for `d` other than 0xFFFF,
    /// `reversed` is `!d = 0xFFFF - d`, and `!hc + !d = 0x1FFFE - t`; when `t < 0xFFFF` that
    /// carries, the end-around carry leaves `0xFFFF - t`, and its complement is `t`; else it
    /// does not, and the complement is `t - 0xFFFF`. For `d` = 0xFFFF (kept as is by
    /// `reversed`), `!hc + 0xFFFF` carries unless `hc` is 0xFFFF, giving `hc`, and gives 0
    /// when `hc` is 0xFFFF: `t mod 0xFFFF` in both cases.
    #[inline(always)]
    fn apply(self, hc: u16) -> u16 {
        ((u32::from(hc) + u32::from(self.0 .0)) % 0xFFFF) as u16
    }
}

#[inline]
fn udp_nonzero(c: u16) -> u16 {
    if c == 0 {
        0xFFFF
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: RFC 1071's word-by-word algorithm.
    fn naive(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(w);
            acc = (acc & 0xFFFF) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 4.1 (the example bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0x12])), 0x1200);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(
            fold(sum(&[0x12, 0x34, 0x56, 0x78, 0x9a])),
            fold(0x1234 + 0x5678 + 0x9a00)
        );
    }

    #[test]
    fn empty_and_zero() {
        assert_eq!(checksum(&[]), 0xFFFF);
        assert_eq!(checksum(&[0, 0, 0]), 0xFFFF);
        assert_eq!(fold(0x1_FFFE), 0xFFFF);
    }

    #[test]
    fn known_ipv4_header() {
        // A classic example header (Wikipedia "IPv4 header checksum"): checksum 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header(&h), 0xb861);
        assert_eq!(fold(sum(&h)), 0xFFFF);
        assert!(verifies(&h));
    }

    #[test]
    fn udp_zero_maps_to_ffff() {
        assert_eq!(update16_udp(0, 1, 2), 0, "no checksum stays no checksum");
        // hc = 0xFFFF carries a computed 0; an unchanged word keeps it 0xFFFF, not 0.
        assert_eq!(update16_udp(0xFFFF, 7, 7), 0xFFFF);
        assert_eq!(update32_udp(0xFFFF, 7, 7), 0xFFFF);
    }

    /// A FullNAT rewrite's words, `old` to `new`, as a connection's deltas are made of: two
    /// addresses and the ports' word.
    fn words_delta(old: [u32; 3], new: [u32; 3]) -> Delta {
        old.iter()
            .zip(&new)
            .fold(Delta::new(), |d, (&o, &n)| d.dword(o, n))
    }

    /// The corners of `Folded`: a change that sums to nothing (two addresses swapped) folds to
    /// 0xFFFF, whose reversal stays 0xFFFF (`!0xFFFF`, 0, would turn a checksum of 0xFFFF into
    /// 0xFFFF where the delta makes 0); a checksum of 0 and of 0xFFFF on either side.
    #[test]
    fn folded_deltas_apply_as_their_deltas_at_the_corners() {
        let (a, b, p) = (0x0a00_0001, 0xc0a8_0102, 0x5000_1f90);
        let swapped = words_delta([a, b, p], [b, a, p]);
        assert_eq!(swapped.folded(), Folded(0xFFFF));
        let back = words_delta([b, a, p], [a, b, p]);
        for hc in [0, 1, 0x1234, 0xFFFE, 0xFFFF] {
            assert_eq!(swapped.folded().apply(hc), swapped.apply(hc), "hc {hc:#x}");
            assert_eq!(
                swapped.folded().reversed().apply(hc),
                back.apply(hc),
                "hc {hc:#x}"
            );
        }
        // Every word from all ones to all zeros: a sum of 0, whose reversal folds to 0xFFFF.
        let ones = words_delta([u32::MAX; 3], [0; 3]);
        let zeros = words_delta([0; 3], [u32::MAX; 3]);
        assert_eq!(ones.folded(), Folded(0));
        for hc in [0, 0x1234, 0xFFFF] {
            assert_eq!(ones.folded().apply(hc), ones.apply(hc));
            assert_eq!(ones.folded().reversed().apply(hc), zeros.apply(hc));
        }
    }

    /// `Folded::back` applies as `reversed` then `apply`, bit for bit: every delta against
    /// checksums across the range (every 251st, and the corners), and every checksum against
    /// the deltas' corners.
    #[test]
    fn a_change_back_applies_as_the_reversed_delta() {
        let corners = [0u16, 1, 2, 0x7FFF, 0x8000, 0xFFFD, 0xFFFE, 0xFFFF];
        let hcs = (0..=u16::MAX).step_by(251).chain(corners);
        for hc in hcs {
            for d in 0..=u16::MAX {
                let d = Folded(d);
                assert_eq!(
                    d.back().apply(hc),
                    d.reversed().apply(hc),
                    "delta {:#x}, checksum {hc:#x}",
                    d.0
                );
            }
        }
        for d in corners.map(Folded) {
            for hc in 0..=u16::MAX {
                assert_eq!(d.back().apply(hc), d.reversed().apply(hc));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn sum_matches_rfc1071(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(checksum(&data), naive(&data));
        }

        /// A folded delta, and its reversal, update a checksum bit for bit as the deltas they
        /// stand for: the connection's kept deltas against the rewrite's own (`Folded`). Half
        /// the cases with two addresses swapped (a change that sums to nothing), a few with a
        /// checksum of 0xFFFF.
        #[test]
        fn folded_deltas_apply_as_their_deltas(
            old in any::<[u32; 3]>(),
            mut new in any::<[u32; 3]>(),
            swap in any::<bool>(),
            hc in prop_oneof![any::<u16>(), Just(0xFFFF), Just(0)],
        ) {
            if swap {
                new = [old[1], old[0], old[2]];
            }
            let there = words_delta(old, new);
            let back = words_delta(new, old);
            prop_assert_eq!(there.folded().apply(hc), there.apply(hc));
            prop_assert_eq!(there.folded().reversed().apply(hc), back.apply(hc));
            prop_assert_eq!(there.folded().reversed(), back.folded());
        }

        /// `verifies_20` says what RFC 1071's algorithm says of 20 bytes: half the cases with a
        /// correct checksum in bytes 10..12 (IPv4's), some with words that carry out of 64 bits.
        #[test]
        fn verifies_20_matches_rfc1071(
            mut h in any::<[u8; 20]>(),
            fix in any::<bool>(),
            ones in any::<bool>(),
        ) {
            if ones {
                h[..16].fill(0xff);
            }
            if fix {
                h[10..12].copy_from_slice(&[0, 0]);
                let c = naive(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            prop_assert_eq!(verifies_20(&h), naive(&h) == 0);
            prop_assert_eq!(verifies_20(&h), verifies(&h));
            if fix {
                prop_assert!(verifies_20(&h));
            }
        }

        /// `verifies` and `l4_verifies` (native-order sums, the pseudo-header too) say what RFC
        /// 1071's algorithm says: the data (after the pseudo-header) checksums to 0. Half the
        /// cases have a correct checksum put in their first word.
        #[test]
        fn verifies_matches_rfc1071(
            mut data in proptest::collection::vec(any::<u8>(), 2..300),
            src in any::<u32>(), dst in any::<u32>(),
            proto in prop_oneof![Just(IpProtocol::TCP), Just(IpProtocol::UDP), Just(IpProtocol::ICMP)],
            fix in any::<bool>(),
        ) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let pseudo = |d: &[u8]| {
                let mut p = Vec::new();
                if proto != IpProtocol::ICMP {
                    p.extend_from_slice(&src.octets());
                    p.extend_from_slice(&dst.octets());
                    p.extend_from_slice(&[0, proto.0]);
                    p.extend_from_slice(&(d.len() as u16).to_be_bytes());
                }
                p.extend_from_slice(d);
                p
            };
            if fix {
                data[..2].copy_from_slice(&[0, 0]);
                let c = naive(&pseudo(&data));
                data[..2].copy_from_slice(&c.to_be_bytes());
            }
            prop_assert_eq!(verifies(&data), naive(&data) == 0);
            prop_assert_eq!(l4_verifies(src, dst, proto, &data), naive(&pseudo(&data)) == 0);
            if fix {
                prop_assert!(l4_verifies(src, dst, proto, &data));
            }
        }

        /// The two-step fold equals folding until the sum fits 16 bits, for any u64 (and the
        /// extremes around each step's bound).
        #[test]
        fn fold_matches_the_carry_loop(acc in prop_oneof![
            any::<u64>(),
            Just(u64::MAX),
            Just(0x1_0000u64),
            Just(0xFFFF_FFFFu64),
            Just(0x1_FFFF_FFFEu64),
            Just(0xFFFF_FFFF_0000_0001u64),
            Just(0x0001_0000_FFFF_FFFFu64),
            0u64..0x3_0000,
        ]) {
            let mut r = acc;
            while r > 0xFFFF {
                r = (r & 0xFFFF) + (r >> 16);
            }
            prop_assert_eq!(fold(acc), r as u16);
        }

        #[test]
        fn update16_matches_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 2..64),
            idx in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            // Non-zero data: a one's-complement sum is then never the +0 that eqn. 3 cannot yield.
            data[0] |= 1;
            let words = data.len() / 2;
            let i = idx.index(words) * 2;
            if i == 0 { return Ok(()); }
            let hc = checksum(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update16(hc, old, new), checksum(&data));
        }

        /// A combined FullNAT-style delta (two addresses, two ports) equals chained updates and a
        /// full recomputation.
        #[test]
        fn delta_matches_chained_and_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 14..64),
            a in any::<u32>(), b in any::<u32>(), p in any::<u16>(), q in any::<u16>(),
        ) {
            data[0] |= 1;
            let hc = checksum(&data);
            let rd32 = |d: &[u8], i: usize| u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
            let rd16 = |d: &[u8], i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
            let (oa, ob, op, oq) = (rd32(&data, 2), rd32(&data, 6), rd16(&data, 10), rd16(&data, 12));
            let delta = Delta::new().dword(oa, a).dword(ob, b).word(op, p).word(oq, q);
            let chained = update16(update16(update32(update32(hc, oa, a), ob, b), op, p), oq, q);
            data[2..6].copy_from_slice(&a.to_be_bytes());
            data[6..10].copy_from_slice(&b.to_be_bytes());
            data[10..12].copy_from_slice(&p.to_be_bytes());
            data[12..14].copy_from_slice(&q.to_be_bytes());
            prop_assert_eq!(delta.apply(hc), checksum(&data));
            prop_assert_eq!(chained, checksum(&data));
            // A UDP sender puts a computed 0 on the wire as 0xFFFF (RFC 768); 0 means "none".
            let on_wire = if hc == 0 { 0xFFFF } else { hc };
            let u = delta.apply_udp(on_wire);
            prop_assert_eq!(u, if checksum(&data) == 0 { 0xFFFF } else { checksum(&data) });
            prop_assert_eq!(delta.apply_udp(0), 0);
        }

        /// An IPv6 address's delta from its words at constant offsets equals the four
        /// memory-order words' deltas added one by one, and, applied to a checksum read in
        /// memory order, gives the memory-order bytes of what the address's eight big-endian
        /// words give the checksum in network order (RFC 1071 2(B): the sum does not depend on
        /// the byte order), whatever the checksum.
        #[test]
        fn addr6_ne_matches_its_four_words_and_network_order(
            old in any::<[u8; 16]>(), new in any::<[u8; 16]>(), hc in any::<u16>(),
        ) {
            let word = |a: &[u8]| u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
            let by_words = old
                .chunks_exact(4)
                .zip(new.chunks_exact(4))
                .fold(Delta::new(), |d, (o, n)| d.dword(word(o), word(n)));
            let ne = Delta::new().addr6_ne(old, new);
            prop_assert_eq!(ne.apply(hc), by_words.apply(hc));
            let in_memory = u16::from_ne_bytes(hc.to_be_bytes());
            let be = Delta::new().addr6(old.into(), new.into()).apply(hc);
            prop_assert_eq!(ne.apply(in_memory), u16::from_ne_bytes(be.to_be_bytes()));
        }

        #[test]
        fn update32_matches_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 8..64),
            new in any::<u32>(),
        ) {
            data[0] |= 1;
            let hc = checksum(&data);
            let old = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
            data[4..8].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update32(hc, old, new), checksum(&data));
        }
    }
}
