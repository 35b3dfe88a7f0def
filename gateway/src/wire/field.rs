//! Reading a header's fields out of a checked buffer: the byte ranges come from each header's
//! `mod field` (smoltcp's convention), the bytes are in network order. Every caller checked the
//! buffer's length first (`new_checked`), so the slicing here never fails.

use core::ops::Range;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The big-endian `u16` at `r` (two bytes).
#[inline]
pub(crate) fn be16(b: &[u8], r: Range<usize>) -> u16 {
    let s = &b[r];
    u16::from_be_bytes([s[0], s[1]])
}

/// The big-endian `u32` at `r` (four bytes).
#[inline]
pub(crate) fn be32(b: &[u8], r: Range<usize>) -> u32 {
    let s = &b[r];
    u32::from_be_bytes([s[0], s[1], s[2], s[3]])
}

/// The big-endian `u64` at `r` (eight bytes).
#[inline]
pub(crate) fn be64(b: &[u8], r: Range<usize>) -> u64 {
    let s = &b[r];
    u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
}

/// The IPv4 address at `r` (four bytes).
#[inline]
pub(crate) fn ipv4(b: &[u8], r: Range<usize>) -> Ipv4Addr {
    let s = &b[r];
    Ipv4Addr::new(s[0], s[1], s[2], s[3])
}

/// The IPv6 address at `r` (sixteen bytes).
#[inline]
pub(crate) fn ipv6(b: &[u8], r: Range<usize>) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[r]);
    Ipv6Addr::from(a)
}
