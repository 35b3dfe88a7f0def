//! Owned mbufs and the burst containers used by the poll loop.
//!
//! Only single-segment mbufs are handled as frames: the ports are configured without scatter, so a
//! frame always fits one segment (`data_room` >= MTU + headroom); `Mbuf::is_chained` lets the worker drop
//! anything else with a counter.

use crate::packet::{CsumStatus, RxMeta};
use dpdk_sys::rte_mbuf;
use std::ptr::NonNull;

/// Packets per receive burst: the datapath's burst (`datapath::BURST`), so that one receive
/// fills one `process_burst` exactly; a transmit buffer sends `TX_BURST` at once.
pub use crate::datapath::{BURST, TX_BURST};

/// An mbuf we own. Freed (back to its pool) when dropped.
pub struct Mbuf {
    raw: NonNull<rte_mbuf>,
}

// SAFETY: an mbuf is owned by exactly one Mbuf value; handing it to another lcore (through a ring)
// moves that ownership, as DPDK intends.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf (None for NULL).
    #[inline]
    pub(crate) fn from_raw(raw: *mut rte_mbuf) -> Option<Mbuf> {
        NonNull::new(raw).map(|raw| Mbuf { raw })
    }

    /// Gives up ownership (to a tx queue or a ring).
    #[inline]
    pub(crate) fn into_raw(self) -> *mut rte_mbuf {
        let p = self.raw.as_ptr();
        std::mem::forget(self);
        p
    }

    #[inline]
    fn m(&self) -> &rte_mbuf {
        // SAFETY: we own a live mbuf; shared access for &self.
        unsafe { self.raw.as_ref() }
    }

    #[inline]
    fn m_mut(&mut self) -> &mut rte_mbuf {
        // SAFETY: we own a live mbuf exclusively; &mut self gives exclusive access.
        unsafe { self.raw.as_mut() }
    }

    /// Frame length (this segment).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.m().data_len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if the packet spans several segments (not handled by the datapath).
    #[inline]
    pub fn is_chained(&self) -> bool {
        self.m().nb_segs != 1
    }

    /// Receiving port.
    #[inline]
    pub fn port(&self) -> u16 {
        self.m().port
    }

    /// Offload flags (`RTE_MBUF_F_*`).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.m().ol_flags
    }

    /// The NIC's RSS hash, when the driver set one.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        if self.m().ol_flags & dpdk_sys::RTE_MBUF_F_RX_RSS_HASH != 0 {
            // SAFETY: reading a u32 out of the hash union; RX_RSS_HASH says the rss member is valid.
            Some(unsafe { self.m().__bindgen_anon_2.hash.rss })
        } else {
            None
        }
    }

    /// What the datapath is told of this frame received on `port`'s `queue` (or handed over by
    /// another worker, `from_peer`): the NIC's RSS hash and its checksum verdicts
    /// (`RTE_MBUF_F_RX_IP_CKSUM_*`, `RTE_MBUF_F_RX_L4_CKSUM_*`: GOOD, BAD, else unknown).
    #[inline]
    pub fn rx_meta(&self, port: u16, queue: u16, from_peer: bool) -> RxMeta {
        let f = self.ol_flags();
        let ip = match f & dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_MASK {
            x if x == dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD => CsumStatus::Good,
            x if x == dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_BAD => CsumStatus::Bad,
            _ => CsumStatus::Unknown,
        };
        let l4 = match f & dpdk_sys::RTE_MBUF_F_RX_L4_CKSUM_MASK {
            x if x == dpdk_sys::RTE_MBUF_F_RX_L4_CKSUM_GOOD => CsumStatus::Good,
            x if x == dpdk_sys::RTE_MBUF_F_RX_L4_CKSUM_BAD => CsumStatus::Bad,
            _ => CsumStatus::Unknown,
        };
        RxMeta {
            port,
            queue,
            rss_hash: self.rss_hash(),
            ip_csum: ip,
            l4_csum: l4,
            from_peer,
        }
    }

    /// Bytes free before the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.m().data_off as usize
    }

    /// Bytes free after the frame in this segment.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.m();
        m.buf_len as usize - m.data_off as usize - m.data_len as usize
    }

    /// The frame. This and the accessors below are always inlined: they are a few loads, and
    /// the compiler had called `data_mut` out of line from the burst loop.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's buffer (DPDK invariant),
        // and we own the mbuf.
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    /// The frame, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        &mut self.room_mut()[..len]
    }

    /// The frame followed by the segment's tailroom, writable (for in-place growth).
    #[inline(always)]
    pub fn room_mut(&mut self) -> &mut [u8] {
        let m = self.m();
        let off = m.data_off as usize;
        let room = m.buf_len as usize - off;
        let base = m.buf_addr as *mut u8;
        // SAFETY: buf_addr + data_off .. buf_addr + buf_len is this mbuf's buffer, exclusively ours.
        unsafe { std::slice::from_raw_parts_mut(base.add(off), room) }
    }

    /// Sets the frame length within the segment; false (and no change) if it exceeds the room.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        let m = self.m();
        if len > m.buf_len as usize - m.data_off as usize {
            return false;
        }
        let m = self.m_mut();
        m.data_len = len as u16;
        m.pkt_len = len as u32;
        true
    }

    /// Shortens the frame to `len` bytes; a frame no longer than that is left as it is.
    #[inline(always)]
    pub fn truncate(&mut self, len: usize) {
        if len < usize::from(self.m().data_len) {
            let m = self.m_mut();
            m.data_len = len as u16;
            m.pkt_len = len as u32;
        }
    }

    /// Opens `n` bytes before the frame (for encapsulation); false if the headroom is too small.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> bool {
        if n > self.headroom() {
            return false;
        }
        let m = self.m_mut();
        m.data_off -= n as u16;
        m.data_len += n as u16;
        m.pkt_len += n as u32;
        true
    }

    /// Removes `n` bytes from the front of the frame (decapsulation); false if the frame is shorter.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        let m = self.m_mut();
        m.data_off += n as u16;
        m.data_len -= n as u16;
        m.pkt_len -= n as u32;
        true
    }

    /// Copies `frame` into a fresh mbuf from `pool` (for packets the datapath generated).
    pub fn from_bytes(pool: &super::Mempool, frame: &[u8]) -> Option<Mbuf> {
        let mut m = pool.alloc()?;
        if !m.set_len(frame.len()) {
            return None;
        }
        m.data_mut().copy_from_slice(frame);
        Some(m)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it goes back to its pool exactly once.
        unsafe { dpdk_sys::gw_rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}

/// Up to `BURST` mbufs received by one `rte_eth_rx_burst`. Owns them until taken.
pub struct RxBatch {
    pkts: [*mut rte_mbuf; BURST],
    len: usize,
    next: usize,
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch {
            pkts: [std::ptr::null_mut(); BURST],
            len: 0,
            next: 0,
        }
    }
}

impl RxBatch {
    /// Receives a burst from (port, queue), replacing the (empty) batch. Returns the count.
    #[inline]
    pub fn rx(&mut self, port: u16, queue: u16) -> usize {
        debug_assert_eq!(self.next, self.len, "previous batch not drained");
        // SAFETY: pkts has room for BURST pointers; the driver fills at most BURST and hands us
        // ownership of each one. The port/queue are started (the worker runs only between start/stop).
        let n = unsafe {
            dpdk_sys::gw_rte_eth_rx_burst(port, queue, self.pkts.as_mut_ptr(), BURST as u16)
        };
        self.len = n as usize;
        self.next = 0;
        self.len
    }

    /// Fills the batch from a ring instead (packets handed over by another worker).
    #[inline]
    pub fn rx_ring(&mut self, ring: &super::MbufRing) -> usize {
        debug_assert_eq!(self.next, self.len, "previous batch not drained");
        self.len = ring.dequeue_into(&mut self.pkts);
        self.next = 0;
        self.len
    }

    /// Prefetches the frame data of packet `i` of the batch (VPP/ixy style: touch ahead).
    #[inline]
    pub fn prefetch(&self, i: usize) {
        if i < self.len {
            // SAFETY: pkts[i] is a live mbuf we own; reading buf_addr/data_off is a plain load.
            let m = unsafe { &*self.pkts[i] };
            // An inline `prefetcht0`, not DPDK's `rte_prefetch0` through a C call per packet.
            super::prefetch((m.buf_addr as *const u8).wrapping_add(usize::from(m.data_off)));
        }
    }
}

impl Iterator for RxBatch {
    type Item = Mbuf;
    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next >= self.len {
            return None;
        }
        let p = self.pkts[self.next];
        self.next += 1;
        Mbuf::from_raw(p)
    }
}

impl Drop for RxBatch {
    fn drop(&mut self) {
        for m in self.by_ref() {
            drop(m);
        }
    }
}

/// Buffered transmit for one (port, queue): packets collect until `TX_BURST`, then go in one
/// `rte_eth_tx_burst`; `flush` sends the rest at the end of each poll round.
pub struct TxBuffer {
    port: u16,
    queue: u16,
    pkts: [*mut rte_mbuf; TX_BURST],
    len: usize,
    /// Packets the driver refused (queue full) and we freed.
    pub dropped: u64,
    pub sent: u64,
}

// SAFETY: the buffered pointers are owned mbufs; the buffer moves with its worker.
unsafe impl Send for TxBuffer {}

impl TxBuffer {
    pub fn new(port: u16, queue: u16) -> Self {
        TxBuffer {
            port,
            queue,
            pkts: [std::ptr::null_mut(); TX_BURST],
            len: 0,
            dropped: 0,
            sent: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, m: Mbuf) {
        self.pkts[self.len] = m.into_raw();
        self.len += 1;
        if self.len == TX_BURST {
            self.flush();
        }
    }

    #[inline]
    pub fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: pkts[..len] are owned mbufs; the driver takes ownership of the first `sent`.
        let sent = unsafe {
            dpdk_sys::gw_rte_eth_tx_burst(
                self.port,
                self.queue,
                self.pkts.as_mut_ptr(),
                self.len as u16,
            )
        } as usize;
        for &p in &self.pkts[sent..self.len] {
            drop(Mbuf::from_raw(p));
        }
        self.sent += sent as u64;
        self.dropped += (self.len - sent) as u64;
        self.len = 0;
    }
}

impl Drop for TxBuffer {
    fn drop(&mut self) {
        for &p in &self.pkts[..self.len] {
            drop(Mbuf::from_raw(p));
        }
        self.len = 0;
    }
}

impl crate::packet::PacketBuf for Mbuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline(always)]
    fn room_mut(&mut self) -> &mut [u8] {
        Mbuf::room_mut(self)
    }
    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        Mbuf::set_len(self, len)
    }
    #[inline(always)]
    fn truncate(&mut self, len: usize) {
        Mbuf::truncate(self, len)
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        Mbuf::prepend(self, n)
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        Mbuf::adj(self, n)
    }
}
