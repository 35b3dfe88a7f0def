//! Packet-mbuf pools (`rte_pktmbuf_pool_create`).

use super::{Error, Result};
use dpdk_sys::rte_mempool;
use std::ffi::CString;
use std::ptr::NonNull;

/// An mbuf pool. Freed when dropped; every mbuf must have been returned by then (ports stopped).
pub struct Mempool {
    raw: NonNull<rte_mempool>,
}

// SAFETY: an rte_mempool is designed for concurrent use from many lcores (per-lcore caches plus a
// lock-free ring); the pointer is only freed on drop, by the single owner.
unsafe impl Send for Mempool {}
// SAFETY: as above: all operations through &Mempool are thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `n` mbufs with a per-lcore cache of `cache` and `data_room` bytes each
    /// (headroom included), on NUMA `socket` (-1 for any).
    pub fn new(name: &str, n: u32, cache: u32, data_room: u16, socket: i32) -> Result<Mempool> {
        let cname = CString::new(name).map_err(|_| Error::new("mempool name", 22))?;
        // SAFETY: cname is a valid C string; EAL must be initialised, which the caller guarantees by
        // holding an Eal (pools are created after Eal::init in the daemon).
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket)
        };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| Error::from_rte_errno(format!("rte_pktmbuf_pool_create({name}, n={n})")))
    }

    pub(crate) fn as_ptr(&self) -> *mut rte_mempool {
        self.raw.as_ptr()
    }

    /// Mbufs free in the pool (including those sitting in lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive for &self.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs currently handed out.
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is alive for &self.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// Allocates one mbuf, or None when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<super::Mbuf> {
        // SAFETY: the pool is alive; a returned mbuf is exclusively ours.
        let m = unsafe { dpdk_sys::gw_rte_pktmbuf_alloc(self.raw.as_ptr()) };
        super::Mbuf::from_raw(m)
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: we own the pool; the daemon stops ports and drops every mbuf before pools.
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}
