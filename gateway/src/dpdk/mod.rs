//! The safe layer over DPDK: EAL, mbuf pools, mbufs, ports, rings and lcore launch; and over
//! libpcap's BPF filters (`bpf`), the other C library the workers call.
//!
//! This module and the `dpdk-sys` crate are the only places with `unsafe` in the project (capsule's
//! rule): everything above works on safe types. Each `unsafe` block says why it is sound.

pub mod bpf;
mod eal;
mod mbuf;
mod mempool;
mod port;
mod ring;

pub use eal::{launch_on_lcore, lcore_id, tsc, tsc_hz, wait_lcore, Eal};
pub use mbuf::{Mbuf, RxBatch, TxBuffer, BURST};
pub use mempool::Mempool;
pub use port::{probe_vdev, LinkState, Port, PortConfig, PortInfo, PortStats, RssConfig};
pub use ring::MbufRing;

use std::ffi::CStr;

/// A failed DPDK call: which call, and the errno it reported (negative returns or `rte_errno`).
#[derive(Debug, thiserror::Error)]
#[error("{op}: {msg} (errno {errno})")]
pub struct Error {
    pub op: String,
    pub errno: i32,
    pub msg: String,
}

impl Error {
    /// Builds the error from an errno value (positive), with DPDK's own text for it.
    pub(crate) fn new(op: impl Into<String>, errno: i32) -> Self {
        // SAFETY: rte_strerror returns a pointer to a static or per-lcore NUL-terminated buffer that
        // stays valid until the next call on this thread; we copy it out at once.
        let msg = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(errno)) }
            .to_string_lossy()
            .into_owned();
        Error {
            op: op.into(),
            errno,
            msg,
        }
    }

    /// Builds the error from the calling thread's `rte_errno`.
    pub(crate) fn from_rte_errno(op: impl Into<String>) -> Self {
        // SAFETY: reading the per-thread rte_errno through the shim has no preconditions.
        let errno = unsafe { dpdk_sys::gw_rte_errno() };
        Self::new(op, errno)
    }

    /// Maps a DPDK return code (negative errno on failure) to a Result.
    pub(crate) fn check(op: &str, ret: i32) -> std::result::Result<i32, Error> {
        if ret < 0 {
            Err(Self::new(op, -ret))
        } else {
            Ok(ret)
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Size of a transparent huge page on x86-64.
const HUGE_PAGE: usize = 2 << 20;

/// `crate::bigmem`'s advice: asks the kernel to back the whole 2 MiB pages inside `[start,
/// start + len)` with transparent huge pages (madvise(2) `MADV_HUGEPAGE`), as glibc's
/// `glibc.malloc.hugetlb=1` tunable does. The partial pages at the ends stay small. A refusal
/// (THP disabled, an old kernel) changes nothing and is not an error: the table works either way.
pub fn advise_hugepages(start: *const u8, len: usize) {
    let first = (start as usize).next_multiple_of(HUGE_PAGE);
    let end = (start as usize).saturating_add(len) & !(HUGE_PAGE - 1);
    if end <= first {
        return;
    }
    // SAFETY: madvise only advises how pages are backed; MADV_HUGEPAGE changes no contents. The
    // range lies inside the allocation the caller just made and owns (`bigmem::filled`), page
    // aligned, and no reference into it is read or written by this call.
    let _ = unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
}

/// Hints the CPU to bring the cache line at `p` into all cache levels (`prefetcht0`), as
/// `rte_prefetch0` does. For the datapath's batched lookups, which stay free of DPDK by taking this
/// as a plain function.
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and never reads memory architecturally,
    // whatever the address (Intel SDM, PREFETCHh).
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
