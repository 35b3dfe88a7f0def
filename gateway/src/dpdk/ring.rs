//! Single-producer/single-consumer mbuf rings between workers (`rte_ring`): the fallback path that hands
//! a packet to the worker owning its connection (DESIGN.md decision 6).

use super::{Error, Mbuf, Result, BURST};
use dpdk_sys::{rte_mbuf, rte_ring};
use std::ffi::{c_void, CString};
use std::ptr::NonNull;

pub struct MbufRing {
    raw: NonNull<rte_ring>,
}

// SAFETY: an SP/SC rte_ring is safe with one producer lcore and one consumer lcore; the worker layout
// guarantees that (one ring per ordered worker pair). Freed only on drop by the owner.
unsafe impl Send for MbufRing {}
// SAFETY: as above.
unsafe impl Sync for MbufRing {}

impl MbufRing {
    /// Creates a ring of `size` slots (a power of two; one slot stays empty).
    pub fn new(name: &str, size: u32) -> Result<MbufRing> {
        let cname = CString::new(name).map_err(|_| Error::new("ring name", 22))?;
        let flags = dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ;
        // SAFETY: valid C string; EAL initialised by the caller (rings are created after Eal::init).
        let raw = unsafe { dpdk_sys::rte_ring_create(cname.as_ptr(), size, -1, flags) };
        NonNull::new(raw)
            .map(|raw| MbufRing { raw })
            .ok_or_else(|| Error::from_rte_errno(format!("rte_ring_create({name})")))
    }

    /// Enqueues one mbuf; gives it back if the ring is full.
    #[inline]
    pub fn enqueue(&self, m: Mbuf) -> std::result::Result<(), Mbuf> {
        let p = m.into_raw() as *mut c_void;
        let objs = [p];
        // SAFETY: single producer per ring by construction; objs holds one valid pointer.
        let n = unsafe {
            dpdk_sys::gw_rte_ring_enqueue_burst(
                self.raw.as_ptr(),
                objs.as_ptr(),
                1,
                std::ptr::null_mut(),
            )
        };
        if n == 1 {
            Ok(())
        } else {
            Err(Mbuf::from_raw(p as *mut rte_mbuf).expect("non-null"))
        }
    }

    /// Dequeues up to BURST mbufs into `out`; the caller takes ownership of them.
    #[inline]
    pub(crate) fn dequeue_into(&self, out: &mut [*mut rte_mbuf; BURST]) -> usize {
        // SAFETY: single consumer per ring; out has BURST slots; every pointer in the ring is an owned
        // mbuf enqueued by `enqueue`.
        unsafe {
            dpdk_sys::gw_rte_ring_dequeue_burst(
                self.raw.as_ptr(),
                out.as_mut_ptr() as *mut *mut c_void,
                BURST as u32,
                std::ptr::null_mut(),
            ) as usize
        }
    }

    /// Entries waiting.
    pub fn count(&self) -> u32 {
        // SAFETY: reads the ring's head/tail; always safe on a live ring.
        unsafe { dpdk_sys::gw_rte_ring_count(self.raw.as_ptr()) }
    }
}

impl Drop for MbufRing {
    fn drop(&mut self) {
        let mut buf = [std::ptr::null_mut(); BURST];
        loop {
            let n = self.dequeue_into(&mut buf);
            if n == 0 {
                break;
            }
            for &p in &buf[..n] {
                drop(Mbuf::from_raw(p));
            }
        }
        // SAFETY: the ring is empty and no worker uses it any more (workers joined before drop).
        unsafe { dpdk_sys::rte_ring_free(self.raw.as_ptr()) }
    }
}
