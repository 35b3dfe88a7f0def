//! What the DPDK-free datapath needs of a packet buffer, and what it says about each packet.
//!
//! The datapath works on any `PacketBuf`: an mbuf in production (`dpdk::Mbuf`), a `VecBuf` in tests,
//! benchmarks and fuzzing (DESIGN.md decision 4).

/// A single-segment frame buffer with head- and tailroom.
pub trait PacketBuf {
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// The frame followed by its tailroom (for growing in place).
    fn room_mut(&mut self) -> &mut [u8];
    fn set_len(&mut self, len: usize) -> bool;
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
    Unknown,
    Good,
    Bad,
}

/// Per-packet receive metadata.
#[derive(Clone, Copy, Debug, Default)]
pub struct RxMeta {
    pub port: u16,
    pub queue: u16,
    /// The NIC's RSS hash, if it computed one.
    pub rss_hash: Option<u32>,
    pub ip_csum: CsumStatus,
    pub l4_csum: CsumStatus,
    /// Handed over from another worker (its checks were already done there).
    pub from_peer: bool,
}

/// A heap-backed `PacketBuf` for tests, benchmarks, fuzzing and the golden harness.
///
/// A pointer, as an mbuf is: the offsets live behind it with the bytes' address, one load away
/// (an mbuf's `data_off` and `data_len` share its first cache line with `buf_addr`), so that
/// moving a packet through a burst's arrays and verdicts costs what it costs with an mbuf, and
/// `perf/cost.sh`'s instruction counts are the worker's.
#[derive(Clone, Debug)]
pub struct VecBuf(Box<VecBufInner>);

#[derive(Clone, Debug)]
struct VecBufInner {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl VecBuf {
    pub const HEADROOM: usize = 128;
    pub const ROOM: usize = 2048;

    /// A buffer holding `frame`, with the default head- and tailroom (as an mbuf has).
    pub fn from_frame(frame: &[u8]) -> Self {
        let mut buf = vec![0u8; Self::HEADROOM + Self::ROOM.max(frame.len())];
        buf[Self::HEADROOM..Self::HEADROOM + frame.len()].copy_from_slice(frame);
        VecBuf(Box::new(VecBufInner {
            buf,
            off: Self::HEADROOM,
            len: frame.len(),
        }))
    }
}

impl PacketBuf for VecBuf {
    // Always inlined, as `Mbuf`'s are, so that the harness (`datapath_cost`) inlines what the
    // worker does.
    #[inline(always)]
    fn data(&self) -> &[u8] {
        let b = &*self.0;
        &b.buf[b.off..b.off + b.len]
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        let b = &mut *self.0;
        &mut b.buf[b.off..b.off + b.len]
    }
    #[inline]
    fn room_mut(&mut self) -> &mut [u8] {
        let b = &mut *self.0;
        &mut b.buf[b.off..]
    }
    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        let b = &mut *self.0;
        if b.off + len > b.buf.len() {
            return false;
        }
        b.len = len;
        true
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        let b = &mut *self.0;
        if n > b.off {
            return false;
        }
        b.off -= n;
        b.len += n;
        true
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        let b = &mut *self.0;
        if n > b.len {
            return false;
        }
        b.off += n;
        b.len -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
