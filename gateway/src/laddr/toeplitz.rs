//! The Toeplitz hash that NICs use for RSS (receive side scaling).
//!
//! Specification: Microsoft, "RSS Hashing Functions" and "Verifying the RSS Hash Calculation"
//! (learn.microsoft.com/windows-hardware/drivers/network). For every bit of the input, taken from the
//! most significant bit of the first byte onwards, the hash XORs in the 32 key bits that start at that
//! bit's position when the bit is set. The input for IPv4 is source address, destination address
//! (8 bytes, "IPv4 only"), then source port, destination port (12 bytes, "IPv4 with TCP"; NICs use the
//! same layout for UDP), everything in network byte order.
//!
//! The hash is linear over XOR: `H(a ^ b) == H(a) ^ H(b)`. So the hash of a 12-byte input is the XOR of
//! the hashes of each byte standing alone at its position, which [`Toeplitz`] precomputes into 12
//! tables of 256 entries: 12 lookups per hash instead of 96 key shifts. The same linearity lets the
//! port allocator split a reply tuple's hash into a part it knows (addresses, remote port) and a part it
//! chooses (local port).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Length of the IPv4 + L4 ports input, the longest input this module hashes.
pub const INPUT_LEN: usize = 12;

/// The shortest key that covers [`INPUT_LEN`]: bit `i` of the input reads key bits `i..i + 32`.
pub const MIN_KEY_LEN: usize = INPUT_LEN + 4;

/// The 40-byte key of Microsoft's verification examples, also Intel's and DPDK's default RSS key
/// (`rss_intel_key` in DPDK's drivers and testpmd).
pub const DEFAULT_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Byte offsets of the fields inside the 12-byte IPv4 + ports input.
pub mod field {
    /// Source IPv4 address.
    pub const SRC_IP: usize = 0;
    /// Destination IPv4 address.
    pub const DST_IP: usize = 4;
    /// Source L4 port.
    pub const SRC_PORT: usize = 8;
    /// Destination L4 port.
    pub const DST_PORT: usize = 10;
}

/// The 8-byte "IPv4 only" input: source address, destination address.
pub fn ipv4_input(src: Ipv4Addr, dst: Ipv4Addr) -> [u8; 8] {
    let mut input = [0u8; 8];
    input[..4].copy_from_slice(&src.octets());
    input[4..].copy_from_slice(&dst.octets());
    input
}

/// The 12-byte "IPv4 with TCP/UDP" input: source address, destination address, source port,
/// destination port.
pub fn ipv4_l4_input(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> [u8; INPUT_LEN] {
    let mut input = [0u8; INPUT_LEN];
    input[..8].copy_from_slice(&ipv4_input(src, dst));
    input[8..10].copy_from_slice(&sport.to_be_bytes());
    input[10..].copy_from_slice(&dport.to_be_bytes());
    input
}

/// Byte offsets in the 36-byte IPv6 input ([`ipv6_l4_input`]).
pub mod field6 {
    /// Source IPv6 address.
    pub const SRC_IP: usize = 0;
    /// Destination IPv6 address.
    pub const DST_IP: usize = 16;
    /// Source L4 port.
    pub const SRC_PORT: usize = 32;
    /// Destination L4 port.
    pub const DST_PORT: usize = 34;
}

/// Length of the "IPv6 with TCP/UDP" input (issue 17): source address, destination address (32
/// bytes, "IPv6 only"), source port, destination port. A 40-byte key covers it exactly.
pub const IPV6_L4_INPUT_LEN: usize = 36;

/// The 32-byte "IPv6 only" input: source address, destination address.
pub fn ipv6_input(src: Ipv6Addr, dst: Ipv6Addr) -> [u8; 32] {
    let mut input = [0u8; 32];
    input[..16].copy_from_slice(&src.octets());
    input[16..].copy_from_slice(&dst.octets());
    input
}

/// The 36-byte "IPv6 with TCP/UDP" input (the RSS specification's `NdisHashFunctionToeplitz` over
/// IPv6 without extension-header addresses): source and destination addresses, source and
/// destination ports. Hashed with [`toeplitz_hash`], or [`Toeplitz6`]'s tables ([`Toeplitz`]'s
/// cover IPv4 inputs only).
pub fn ipv6_l4_input(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
) -> [u8; IPV6_L4_INPUT_LEN] {
    let mut input = [0u8; IPV6_L4_INPUT_LEN];
    input[..32].copy_from_slice(&ipv6_input(src, dst));
    input[32..34].copy_from_slice(&sport.to_be_bytes());
    input[34..].copy_from_slice(&dport.to_be_bytes());
    input
}

/// The 32 key bits starting at bit `bit` (bit 0 is the most significant bit of `key[0]`). Bits past
/// the end of the key read as zero, which keeps the function total; a NIC needs
/// `key.len() >= input.len() + 4`, so with such keys no padding is ever read.
fn key_window(key: &[u8], bit: usize) -> u32 {
    let byte = bit / 8;
    let mut wide = 0u64;
    for i in 0..5 {
        wide = (wide << 8) | u64::from(key.get(byte + i).copied().unwrap_or(0));
    }
    // `wide` holds 40 bits starting at the byte containing `bit`; drop the `bit % 8` leading bits.
    (wide >> (8 - bit % 8)) as u32
}

/// The Toeplitz hash computed bit by bit, exactly as Microsoft's pseudo-code describes it. This is
/// the reference the table-driven [`Toeplitz`] is checked against; it is not used on the fast path.
pub fn toeplitz_hash(key: &[u8], input: &[u8]) -> u32 {
    let mut result = 0u32;
    for (i, byte) in input.iter().enumerate() {
        for b in 0..8 {
            if byte & (0x80 >> b) != 0 {
                result ^= key_window(key, i * 8 + b);
            }
        }
    }
    result
}

/// The key given to [`Toeplitz::new`] is shorter than [`MIN_KEY_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("RSS key of {0} bytes is too short: IPv4 with ports needs at least 16")]
pub struct KeyTooShort(pub usize);

/// Table-driven Toeplitz hash for inputs of up to [`INPUT_LEN`] bytes: `table[pos][v]` is the hash of
/// an input that is zero except for byte `pos`, which holds `v`.
#[derive(Clone)]
pub struct Toeplitz {
    table: Box<[[u32; 256]; INPUT_LEN]>,
}

impl Toeplitz {
    /// Builds the tables for `key` (40 bytes for most NICs, 52 for some; at least 16).
    pub fn new(key: &[u8]) -> Result<Self, KeyTooShort> {
        if key.len() < MIN_KEY_LEN {
            return Err(KeyTooShort(key.len()));
        }
        Ok(Toeplitz { table: rows(key) })
    }

    /// Hash of `bytes` placed at byte offset `offset` of an otherwise zero input. Bytes that would
    /// fall past [`INPUT_LEN`] are ignored.
    #[inline]
    pub fn hash_at(&self, offset: usize, bytes: &[u8]) -> u32 {
        self.table
            .iter()
            .skip(offset)
            .zip(bytes)
            .fold(0, |acc, (row, &v)| acc ^ row[usize::from(v)])
    }

    /// Hash of a whole input (up to [`INPUT_LEN`] bytes), equal to `toeplitz_hash(key, input)`.
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        self.hash_at(0, input)
    }

    /// Hash of the "IPv4 only" input.
    #[inline]
    pub fn hash_ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        self.hash(&ipv4_input(src, dst))
    }

    /// Hash of a full 12-byte input: a fixed-length loop the compiler unrolls into 12 loads.
    #[inline]
    pub fn hash_full(&self, input: &[u8; INPUT_LEN]) -> u32 {
        let mut h = 0;
        for (row, &v) in self.table.iter().zip(input) {
            h ^= row[usize::from(v)];
        }
        h
    }

    /// Hash of the "IPv4 with TCP/UDP" input.
    #[inline]
    pub fn hash_ipv4_l4(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
        self.hash_full(&ipv4_l4_input(src, dst, sport, dport))
    }

    /// Hash contribution of an IPv4 address at `offset` ([`field::SRC_IP`] or [`field::DST_IP`]).
    #[inline]
    pub fn hash_ip(&self, offset: usize, ip: Ipv4Addr) -> u32 {
        self.hash_at(offset, &ip.octets())
    }

    /// Hash contribution of a port at `offset` ([`field::SRC_PORT`] or [`field::DST_PORT`]).
    #[inline]
    pub fn hash_port(&self, offset: usize, port: u16) -> u32 {
        self.hash_at(offset, &port.to_be_bytes())
    }
}

/// `table[pos][v]`, the hash of an input that is zero except for byte `pos`, which holds `v`, for
/// the `N` bytes of an input.
fn rows<const N: usize>(key: &[u8]) -> Box<[[u32; 256]; N]> {
    let mut table = Box::new([[0u32; 256]; N]);
    for (pos, row) in table.iter_mut().enumerate() {
        // Hashes of the eight single-bit values at this position; every other value is an XOR
        // of these by linearity.
        let bits: [u32; 8] = std::array::from_fn(|b| key_window(key, pos * 8 + b));
        for (v, slot) in row.iter_mut().enumerate() {
            *slot = bits
                .iter()
                .enumerate()
                .filter(|(b, _)| v & (0x80 >> b) != 0)
                .fold(0, |acc, (_, h)| acc ^ h);
        }
    }
    table
}

/// The shortest key that covers [`IPV6_L4_INPUT_LEN`]: 40 bytes, the common NIC key's length.
pub const MIN_KEY_LEN6: usize = IPV6_L4_INPUT_LEN + 4;

/// [`Toeplitz`] for the 36-byte IPv6 inputs: 36 tables of 256 entries (36 KiB), so that an IPv6
/// tuple's hash is 36 lookups where [`toeplitz_hash`] takes 288 key windows.
#[derive(Clone)]
pub struct Toeplitz6 {
    table: Box<[[u32; 256]; IPV6_L4_INPUT_LEN]>,
}

impl Toeplitz6 {
    /// Builds the tables for `key`, at least [`MIN_KEY_LEN6`] bytes.
    pub fn new(key: &[u8]) -> Result<Self, KeyTooShort> {
        if key.len() < MIN_KEY_LEN6 {
            return Err(KeyTooShort(key.len()));
        }
        Ok(Toeplitz6 { table: rows(key) })
    }

    /// The tables for any key: bits past its end read as zero, as in [`toeplitz_hash`]. For a
    /// port layout whose key ([`MIN_KEY_LEN`] at least) is too short for IPv6 inputs: a NIC would
    /// refuse it for IPv6 RSS, and what the pools choose with it then only has to be consistent.
    pub(crate) fn padded(key: &[u8]) -> Self {
        Toeplitz6 { table: rows(key) }
    }

    /// Hash of `bytes` placed at byte offset `offset` of an otherwise zero input (a field's part
    /// of a tuple's hash: the hash is linear). Bytes past [`IPV6_L4_INPUT_LEN`] are ignored.
    #[inline]
    pub fn hash_at(&self, offset: usize, bytes: &[u8]) -> u32 {
        self.table
            .iter()
            .skip(offset)
            .zip(bytes)
            .fold(0, |acc, (row, &v)| acc ^ row[usize::from(v)])
    }

    /// Hash of `input` (up to [`IPV6_L4_INPUT_LEN`] bytes), equal to `toeplitz_hash(key, input)`.
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        self.hash_at(0, input)
    }

    /// Hash of the "IPv6 only" input.
    #[inline]
    pub fn hash_ipv6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
        self.hash(&ipv6_input(src, dst))
    }

    /// Hash of the "IPv6 with TCP/UDP" input.
    #[inline]
    pub fn hash_ipv6_l4(&self, src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> u32 {
        self.hash(&ipv6_l4_input(src, dst, sport, dport))
    }
}

impl std::fmt::Debug for Toeplitz6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz6").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Microsoft, "Verifying the RSS Hash Calculation", IPv4 table: destination, source, hash of the
    /// IPv4-only input, hash of the IPv4-with-TCP input (key: [`DEFAULT_RSS_KEY`]).
    type Endpoint = (u8, u8, u8, u8, u16);
    const MS_IPV4: [(Endpoint, Endpoint, u32, u32); 5] = [
        (
            (161, 142, 100, 80, 1766),
            (66, 9, 149, 187, 2794),
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            (65, 69, 140, 83, 4739),
            (199, 92, 111, 2, 14230),
            0xd718262a,
            0xc626b0ea,
        ),
        (
            (12, 22, 207, 184, 38024),
            (24, 19, 198, 95, 12898),
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            (209, 142, 163, 6, 2217),
            (38, 27, 205, 30, 48228),
            0x82989176,
            0xafc7327f,
        ),
        (
            (202, 188, 127, 2, 1303),
            (153, 39, 163, 191, 44251),
            0x5d1809c5,
            0x10e828a2,
        ),
    ];

    fn vectors() -> impl Iterator<Item = (Ipv4Addr, u16, Ipv4Addr, u16, u32, u32)> {
        MS_IPV4
            .iter()
            .map(|&((d0, d1, d2, d3, dp), (s0, s1, s2, s3, sp), ip, tcp)| {
                let dst = Ipv4Addr::new(d0, d1, d2, d3);
                let src = Ipv4Addr::new(s0, s1, s2, s3);
                (src, sp, dst, dp, ip, tcp)
            })
    }

    #[test]
    fn microsoft_vectors_bitwise() {
        for (src, sp, dst, dp, ip_only, with_ports) in vectors() {
            let key = &DEFAULT_RSS_KEY;
            assert_eq!(
                toeplitz_hash(key, &ipv4_input(src, dst)),
                ip_only,
                "{src} -> {dst}"
            );
            let input = ipv4_l4_input(src, dst, sp, dp);
            assert_eq!(
                toeplitz_hash(key, &input),
                with_ports,
                "{src}:{sp} -> {dst}:{dp}"
            );
        }
    }

    /// Microsoft, "Verifying the RSS Hash Calculation", IPv6 table: destination, source, hash of
    /// the IPv6-only input, hash of the IPv6-with-TCP input (key: [`DEFAULT_RSS_KEY`]).
    #[test]
    fn microsoft_ipv6_vectors() {
        let v: [(&str, u16, &str, u16, u32, u32); 3] = [
            (
                "3ffe:2501:200:3::1",
                1766,
                "3ffe:2501:200:1fff::7",
                2794,
                0x2cc18cd5,
                0x40207d3d,
            ),
            (
                "ff02::1",
                4739,
                "3ffe:501:8::260:97ff:fe40:efab",
                14230,
                0x0f0c461c,
                0xdde51bbf,
            ),
            (
                "fe80::200:f8ff:fe21:67cf",
                38024,
                "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
                44251,
                0x4b61e985,
                0x02d1feef,
            ),
        ];
        for (dst, dp, src, sp, ip_only, with_ports) in v {
            let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            let key = &DEFAULT_RSS_KEY;
            assert_eq!(
                toeplitz_hash(key, &ipv6_input(s, d)),
                ip_only,
                "{src} -> {dst}"
            );
            let input = ipv6_l4_input(s, d, sp, dp);
            assert_eq!(
                toeplitz_hash(key, &input),
                with_ports,
                "{src}.{sp} -> {dst}.{dp}"
            );
            let t = Toeplitz6::new(key).unwrap();
            assert_eq!(t.hash_ipv6(s, d), ip_only, "tables: {src} -> {dst}");
            assert_eq!(
                t.hash_ipv6_l4(s, d, sp, dp),
                with_ports,
                "tables: {src}.{sp}"
            );
        }
        assert!(Toeplitz6::new(&DEFAULT_RSS_KEY[..39]).is_err());
    }

    #[test]
    fn microsoft_vectors_tables() {
        let t = Toeplitz::new(&DEFAULT_RSS_KEY).unwrap();
        for (src, sp, dst, dp, ip_only, with_ports) in vectors() {
            assert_eq!(t.hash_ipv4(src, dst), ip_only);
            assert_eq!(t.hash_ipv4_l4(src, dst, sp, dp), with_ports);
        }
    }

    #[test]
    fn key_window_reads_across_bytes() {
        let key = [0x80, 0x00, 0x00, 0x01, 0xff];
        assert_eq!(key_window(&key, 0), 0x8000_0001);
        assert_eq!(key_window(&key, 1), 0x0000_0003);
        assert_eq!(key_window(&key, 7), 0x0000_00ff);
        // Past the end of the key reads zeros.
        assert_eq!(key_window(&key, 32), 0xff00_0000);
        assert_eq!(key_window(&key, 40), 0);
    }

    #[test]
    fn short_key_is_rejected() {
        assert_eq!(Toeplitz::new(&[0u8; 15]).unwrap_err(), KeyTooShort(15));
        assert!(Toeplitz::new(&[0u8; 16]).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn tables_equal_bitwise(key in prop::collection::vec(any::<u8>(), 16..=52),
                                input in any::<[u8; INPUT_LEN]>()) {
            let t = Toeplitz::new(&key).unwrap();
            prop_assert_eq!(t.hash(&input), toeplitz_hash(&key, &input));
            prop_assert_eq!(t.hash_full(&input), toeplitz_hash(&key, &input));
            prop_assert_eq!(t.hash(&input[..8]), toeplitz_hash(&key, &input[..8]));
        }

        #[test]
        fn ipv6_tables_equal_bitwise(key in prop::collection::vec(any::<u8>(), 40..=52),
                                     input in any::<[u8; IPV6_L4_INPUT_LEN]>()) {
            let t = Toeplitz6::new(&key).unwrap();
            prop_assert_eq!(t.hash(&input), toeplitz_hash(&key, &input));
            prop_assert_eq!(t.hash(&input[..32]), toeplitz_hash(&key, &input[..32]));
        }

        /// A field's part at its offset, as the IPv6 pools compose a reply's hash, is the hash
        /// of the input holding that field alone; and the tables of a key too short for IPv6
        /// read its missing bits as zero, as the reference does.
        #[test]
        fn ipv6_field_parts_and_short_keys(key in prop::collection::vec(any::<u8>(), 16..=52),
                                           input in any::<[u8; IPV6_L4_INPUT_LEN]>(),
                                           at in 0..IPV6_L4_INPUT_LEN, len in 1usize..=16) {
            let t = Toeplitz6::padded(&key);
            prop_assert_eq!(t.hash(&input), toeplitz_hash(&key, &input));
            let len = len.min(IPV6_L4_INPUT_LEN - at);
            let mut alone = [0u8; IPV6_L4_INPUT_LEN];
            alone[at..at + len].copy_from_slice(&input[at..at + len]);
            prop_assert_eq!(t.hash_at(at, &input[at..at + len]), toeplitz_hash(&key, &alone));
        }

        #[test]
        fn hash_is_linear(key in any::<[u8; 40]>(), a in any::<[u8; INPUT_LEN]>(),
                          b in any::<[u8; INPUT_LEN]>()) {
            let x: Vec<u8> = a.iter().zip(&b).map(|(p, q)| p ^ q).collect();
            prop_assert_eq!(toeplitz_hash(&key, &x),
                            toeplitz_hash(&key, &a) ^ toeplitz_hash(&key, &b));
        }

        #[test]
        fn field_parts_compose(key in any::<[u8; 40]>(), s in any::<u32>(), d in any::<u32>(),
                               sp in any::<u16>(), dp in any::<u16>()) {
            let t = Toeplitz::new(&key).unwrap();
            let (s, d) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
            let parts = t.hash_ip(field::SRC_IP, s) ^ t.hash_ip(field::DST_IP, d)
                ^ t.hash_port(field::SRC_PORT, sp) ^ t.hash_port(field::DST_PORT, dp);
            prop_assert_eq!(parts, t.hash_ipv4_l4(s, d, sp, dp));
        }
    }
}
