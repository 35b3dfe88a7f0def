//! What the DPDK-free datapath needs of a packet buffer, and what it says about each packet.
//!
//! The datapath works on any `PacketBuf`: an mbuf in production (`dpdk::Mbuf`), a `VecBuf` in tests,
//! benchmarks and fuzzing (DESIGN.md decision 4).

use crate::stats::DropReason;
use crate::wire::{self, MacAddr};
use std::net::Ipv4Addr;

/// A single-segment frame buffer with head- and tailroom.
pub trait PacketBuf {
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// The frame followed by its tailroom (for growing in place).
    fn room_mut(&mut self) -> &mut [u8];
    fn set_len(&mut self, len: usize) -> bool;
    /// Shortens the frame to `len` bytes (Ethernet padding dropped); a frame no longer than
    /// that is left as it is. Cheaper than `set_len`, which checks the room: a frame is only
    /// ever shortened within its buffer.
    fn truncate(&mut self, len: usize);
    /// Opens `n` bytes before the frame; false if the headroom is too small.
    fn prepend(&mut self, n: usize) -> bool;
    /// Strips `n` bytes from the front.
    fn adj(&mut self, n: usize) -> bool;

    #[inline]
    fn len(&self) -> usize {
        self.data().len()
    }
    #[inline]
    fn is_empty(&self) -> bool {
        self.data().is_empty()
    }
}

/// Checksum status the NIC reported on receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CsumStatus {
    /// Not checked: verify in software.
    #[default]
    Unknown = 0,
    Good = 1,
    /// The one value with bit 1 set (`RxMeta::csum_bad`).
    Bad = 2,
}

/// Per-packet receive metadata. Its fields in this order (`repr(C)`): the two checksums'
/// statuses side by side, which `csum_bad` reads as one word, the bytes in the eight bytes
/// before the RSS hash (16 bytes in all).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct RxMeta {
    pub port: u16,
    pub queue: u16,
    /// Handed over from another worker (its checks were already done there).
    pub from_peer: bool,
    pub ip_csum: CsumStatus,
    pub l4_csum: CsumStatus,
    /// The NIC's RSS hash, if it computed one.
    pub rss_hash: Option<u32>,
}

impl RxMeta {
    /// Whether the NIC reported either checksum bad: both statuses read as one little-endian
    /// word, tested for `Bad`'s bit in either byte, where each took a load, a compare and a
    /// branch (the fast path's admission, `established-burst-net` -2).
    #[inline(always)]
    pub fn csum_bad(&self) -> bool {
        const BAD_IN_EITHER: u16 = u16::from_le_bytes([CsumStatus::Bad as u8; 2]);
        let both = u16::from_le_bytes([self.ip_csum as u8, self.l4_csum as u8]);
        both & BAD_IN_EITHER != 0
    }

    /// `RxMeta::default()` as a constant, for a burst's array of them: built by `default()`, the
    /// value was written a field at a time and read back whole to fill the array, a read the
    /// store buffer could not forward, which waited for every store before it (12% of
    /// `run_burst`'s samples; perf/RESULTS.md, "Loads the store buffer could not forward, a
    /// reply's address probe").
    pub const NONE: RxMeta = RxMeta {
        port: 0,
        queue: 0,
        from_peer: false,
        ip_csum: CsumStatus::Unknown,
        l4_csum: CsumStatus::Unknown,
        rss_hash: None,
    };
}

/// A heap-backed `PacketBuf` for tests, benchmarks, fuzzing and the golden harness.
///
/// A pointer, as an mbuf is: the offsets live behind it with the bytes' address, one load away
/// (an mbuf's `data_off` and `data_len` share its first cache line with `buf_addr`), so that
/// moving a packet through a burst's arrays and verdicts costs what it costs with an mbuf, and
/// `perf/cost.sh`'s instruction counts are the worker's. The offsets are 32-bit, as an mbuf's
/// are 16-bit, so that their sum cannot overflow: the frame's slice then costs one bound check,
/// as `Mbuf::data_mut`'s does, where `usize` offsets cost three (an overflow, the start, the
/// end: about 20 instructions a forwarded packet over its four accesses, which the worker does
/// not pay).
#[derive(Clone, Debug)]
pub struct VecBuf(Box<VecBufInner>);

#[derive(Clone, Debug)]
struct VecBufInner {
    buf: Vec<u8>,
    off: u32,
    len: u32,
}

impl VecBufInner {
    #[inline(always)]
    fn off(&self) -> usize {
        self.off as usize
    }

    #[inline(always)]
    fn end(&self) -> usize {
        self.off as usize + self.len as usize
    }
}

impl VecBuf {
    pub const HEADROOM: usize = 128;
    pub const ROOM: usize = 2048;

    /// A buffer holding `frame`, with the default head- and tailroom (as an mbuf has).
    pub fn from_frame(frame: &[u8]) -> Self {
        let mut buf = vec![0u8; Self::HEADROOM + Self::ROOM.max(frame.len())];
        // Every offset and length then fits the fields' 32 bits.
        assert!(u32::try_from(buf.len()).is_ok(), "a frame of 4 GiB");
        buf[Self::HEADROOM..Self::HEADROOM + frame.len()].copy_from_slice(frame);
        VecBuf(Box::new(VecBufInner {
            buf,
            off: Self::HEADROOM as u32,
            len: frame.len() as u32,
        }))
    }
}

impl PacketBuf for VecBuf {
    // Always inlined, as `Mbuf`'s are, so that the harness (`datapath_cost`) inlines what the
    // worker does.
    #[inline(always)]
    fn data(&self) -> &[u8] {
        let b = &*self.0;
        &b.buf[b.off()..b.end()]
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        let b = &mut *self.0;
        let (off, end) = (b.off(), b.end());
        &mut b.buf[off..end]
    }
    #[inline]
    fn room_mut(&mut self) -> &mut [u8] {
        let b = &mut *self.0;
        let off = b.off();
        &mut b.buf[off..]
    }
    #[inline(always)]
    fn truncate(&mut self, len: usize) {
        let b = &mut *self.0;
        if len < b.len as usize {
            b.len = len as u32;
        }
    }
    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        let b = &mut *self.0;
        if len > b.buf.len() - b.off() {
            return false;
        }
        // Within the buffer, whose length `from_frame` kept below 2^32.
        b.len = len as u32;
        true
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        let b = &mut *self.0;
        if n > b.off() {
            return false;
        }
        // Below `off`, a `u32`.
        b.off -= n as u32;
        b.len += n as u32;
        true
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        let b = &mut *self.0;
        if n > b.len as usize {
            return false;
        }
        // At most `len`, a `u32`.
        b.off += n as u32;
        b.len -= n as u32;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The burst's array is filled from the constant where it was filled from `default()`.
    #[test]
    fn rx_meta_none_is_the_default() {
        assert_eq!(
            format!("{:?}", RxMeta::NONE),
            format!("{:?}", RxMeta::default())
        );
    }

    /// `csum_bad`'s one word: bad exactly when either status is.
    #[test]
    fn csum_bad_is_either_status_bad() {
        use CsumStatus::*;
        for ip_csum in [Unknown, Good, Bad] {
            for l4_csum in [Unknown, Good, Bad] {
                let meta = RxMeta {
                    ip_csum,
                    l4_csum,
                    from_peer: true,
                    rss_hash: Some(u32::MAX),
                    ..RxMeta::NONE
                };
                assert_eq!(
                    meta.csum_bad(),
                    ip_csum == Bad || l4_csum == Bad,
                    "{ip_csum:?} {l4_csum:?}"
                );
            }
        }
    }

    #[test]
    fn vecbuf_grows_into_tail_and_head_room() {
        let mut b = VecBuf::from_frame(&[1, 2, 3]);
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(b.prepend(2));
        assert_eq!(b.len(), 5);
        assert!(b.adj(2));
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(b.set_len(10));
        assert_eq!(b.len(), 10);
        assert!(!b.set_len(VecBuf::ROOM + 1));
        assert!(!b.prepend(VecBuf::HEADROOM + 1));
        assert!(!b.adj(11));
    }

    #[test]
    fn vecbuf_truncates_only_a_longer_frame() {
        let mut b = VecBuf::from_frame(&[1, 2, 3, 4, 5, 6]);
        b.truncate(4);
        assert_eq!(b.data(), &[1, 2, 3, 4]);
        b.truncate(5);
        assert_eq!(b.data(), &[1, 2, 3, 4], "not grown");
        b.truncate(4);
        assert_eq!(b.data(), &[1, 2, 3, 4]);
    }
}

/// Largest frame the datapath generates itself (ARP, RST, ICMP errors quote header + 8 bytes).
pub const GEN_FRAME_MAX: usize = 128;

/// What happens to a packet.
pub enum Verdict<B> {
    /// Send on this port (the frame is complete).
    Tx(u16, B),
    /// Hand to the worker that owns its connection.
    ToWorker(u16, B),
    /// Up to this port's kernel twin (`punt`).
    ToKernel(u16, B),
    /// Handled and finished with (e.g. an ARP reply we learned from): free without counting a drop.
    Done(B),
    /// Drop, counting the reason.
    Drop(DropReason, B),
    /// Kept by the datapath: waiting for ARP (it comes back through `L3::take_released`), or a
    /// fragment waiting for its first one (through `Datapath::take_deferred`).
    Held,
}

/// Writes `v` into a burst's verdict slot `out`, which is empty: `Datapath::process_burst_timed`
/// is given empty slots (its callers' contract; debug builds check it here) and writes each
/// once. Without the test of a verdict to drop from the slot, which the hot path paid for each
/// packet (3 instructions), or a call, when the compiler took that drop out of line (6: the
/// next-hop cache's slot by one multiply, `established-burst-net` +8). A verdict a caller left
/// in the slot is forgotten, its buffer not freed.
#[inline(always)]
pub fn fill_slot<B>(out: &mut Option<Verdict<B>>, v: Verdict<B>) {
    debug_assert!(out.is_none(), "a burst's verdict slot written twice");
    std::mem::forget(out.replace(v));
}

/// The verdict without its frame (for test failures and logs).
impl<B> std::fmt::Debug for Verdict<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Tx(p, _) => write!(f, "Tx(port {p})"),
            Verdict::ToWorker(w, _) => write!(f, "ToWorker({w})"),
            Verdict::ToKernel(p, _) => write!(f, "ToKernel(port {p})"),
            Verdict::Done(_) => write!(f, "Done"),
            Verdict::Drop(r, _) => write!(f, "Drop({r:?})"),
            Verdict::Held => write!(f, "Held"),
        }
    }
}

/// Something other workers must learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Learned {
        ip: Ipv4Addr,
        mac: MacAddr,
        port: u16,
    },
    /// An IPv6 neighbour advertised itself (`inet6::nd`).
    Learned6 {
        ip: std::net::Ipv6Addr,
        mac: MacAddr,
        port: u16,
    },
}

/// A frame the datapath generated (ARP request, RST, ICMP error).
#[derive(Clone)]
pub struct GenFrame {
    pub port: u16,
    /// To the port's kernel twin instead of the wire (an ARP copy).
    pub to_twin: bool,
    pub len: usize,
    pub buf: [u8; GEN_FRAME_MAX],
}

impl GenFrame {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A verdict reached outside its frame's processing, with the port the frame arrived on (a
/// worker's mbuf carries it; the tests need it to hand the frame over).
pub struct Deferred<B> {
    pub verdict: Verdict<B>,
    pub port: u16,
}

/// A packet the L2/L3 stage accepted as IPv4, with what the forwarding stage needs. Kept small: a
/// burst holds 32 of them.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4In {
    /// Offset of the IPv4 header in the frame.
    pub l3_off: usize,
    pub ip: wire::IpInfo,
}

/// Verifies the L4 checksum unless the NIC, or the worker that handed the frame over, already did.
pub fn l4_checksum_ok<B: PacketBuf>(pkt: &B, meta: &RxMeta, v: &Ipv4In) -> bool {
    if meta.from_peer {
        return true;
    }
    match meta.l4_csum {
        CsumStatus::Good => true,
        CsumStatus::Bad => false,
        CsumStatus::Unknown => wire::verify_ipv4_l4_checksum(pkt.data(), v.l3_off, &v.ip),
    }
}

/// Whether the TCP checksum of a segment `admit_plain_tcp` admits is good, given the NIC's
/// report `l4_csum`: verified there for all but plain ACKs, which the hot path forwards
/// whatever their checksum (`Forwarder::forwards_unverified`), and which the general path
/// verifies if they go there.
#[inline(always)]
fn l4_verified(l4_csum: CsumStatus, v: &Ipv4In) -> bool {
    l4_csum == CsumStatus::Good || !v.ip.tcp_flags.is_plain_ack()
}

/// Whether the TCP checksum of a segment `admit_plain_tcp` admits verifies (RFC 9293 3.1).
/// `parse_plain_tcp` checked that the segment, not fragmented, ends within the frame: what
/// `wire::verify_ipv4_l4_checksum` checks again for any packet.
#[inline(always)]
pub fn tcp_checksum_verifies(frame: &[u8], v: &Ipv4In) -> bool {
    frame
        .get(v.ip.l4_off..v.l3_off + usize::from(v.ip.total_len))
        .is_some_and(|l4| wire::checksum::l4_verifies(v.ip.src, v.ip.dst, v.ip.protocol, l4))
}

/// Whether the TCP checksum of a segment `admit_plain_tcp` admitted is good, given the NIC's
/// report `l4_csum`: known if the admission verified it (`l4_verified`), verified now if not.
#[inline(always)]
pub fn tcp_checksum_good(l4_csum: CsumStatus, frame: &[u8], v: &Ipv4In) -> bool {
    l4_verified(l4_csum, v) || tcp_checksum_verifies(frame, v)
}
