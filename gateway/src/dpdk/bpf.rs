//! BPF filters for live captures, compiled and run by libpcap: tcpdump's filter language
//! (pcap-filter(7)) on Ethernet frames.
//!
//! A filter is compiled once on the control plane against a "dead" handle (`pcap_open_dead` with
//! `DLT_EN10MB`: no device is opened, the handle only says which link type the program reads) and
//! run by the workers with `pcap_offline_filter`, libpcap's BPF interpreter.

use dpdk_sys::pcap;
use std::ffi::{CStr, CString};
use std::sync::Mutex;

/// A compiled BPF program for Ethernet frames. Read-only once compiled, so shared by every worker.
pub struct Filter {
    prog: pcap::bpf_program,
    expr: String,
}

// SAFETY: the program (`bf_insns`, owned by this value and freed in Drop) is never written after
// `pcap_compile` returns; `pcap_offline_filter` only reads it and keeps the BPF machine's scratch
// memory on its own stack (libpcap's bpf_filter.c), so any number of threads may run it at once
// and it may move between threads.
unsafe impl Send for Filter {}
// SAFETY: see Send: shared use is read-only.
unsafe impl Sync for Filter {}

/// pcap_compile(3PCAP): thread-safe from libpcap 1.8 on; earlier ones need mutual exclusion. Compiling
/// is rare (once per capture), so it is serialised whatever the libpcap.
static COMPILE: Mutex<()> = Mutex::new(());

impl Filter {
    /// Compiles `expr` (pcap-filter(7) syntax) for Ethernet frames of at most `snaplen` bytes.
    /// The error is libpcap's own message (e.g. "syntax error").
    pub fn compile(expr: &str, snaplen: u32) -> Result<Filter, String> {
        let c_expr =
            CString::new(expr).map_err(|_| "the filter contains a NUL byte".to_string())?;
        let snaplen = i32::try_from(snaplen.max(1)).unwrap_or(i32::MAX);
        let _guard = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: pcap_open_dead takes plain integers and returns a new handle or NULL.
        let dead = unsafe { pcap::pcap_open_dead(pcap::DLT_EN10MB as i32, snaplen) };
        if dead.is_null() {
            return Err("libpcap: pcap_open_dead failed (out of memory)".into());
        }
        let mut prog = pcap::bpf_program::default();
        // SAFETY: `dead` is a live handle, `prog` a writable bpf_program, `c_expr` NUL-terminated
        // and alive for the call. optimize = 1 as tcpdump does; the netmask is unknown
        // (PCAP_NETMASK_UNKNOWN), which only matters for `ip broadcast`.
        let rc = unsafe {
            pcap::pcap_compile(
                dead,
                &mut prog,
                c_expr.as_ptr(),
                1,
                pcap::PCAP_NETMASK_UNKNOWN,
            )
        };
        let result = if rc != 0 {
            // SAFETY: pcap_geterr returns the handle's NUL-terminated error buffer, valid until the
            // handle is closed below; it is copied out first.
            let msg = unsafe { CStr::from_ptr(pcap::pcap_geterr(dead)) }
                .to_string_lossy()
                .into_owned();
            Err(format!("bad filter {expr:?}: {msg}"))
        } else {
            Ok(Filter {
                prog,
                expr: expr.to_string(),
            })
        };
        // SAFETY: the program does not refer to the handle (pcap_compile copies the instructions
        // into memory of its own, freed by pcap_freecode), so the handle may go now.
        unsafe { pcap::pcap_close(dead) };
        result
    }

    /// The expression the filter was compiled from.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// Whether `frame` (an Ethernet frame, whole) passes the filter.
    #[inline]
    pub fn matches(&self, frame: &[u8]) -> bool {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        // The BPF interpreter reads only the header's caplen and len (no timestamp).
        let hdr = pcap::pcap_pkthdr {
            caplen: len,
            len,
            ..Default::default()
        };
        // SAFETY: `prog` is a program pcap_compile produced and nobody frees it while `self` lives;
        // the interpreter reads at most `caplen` bytes of `frame` (it bounds-checks every load
        // against caplen and fails the match instead of reading beyond).
        unsafe { pcap::pcap_offline_filter(&self.prog, &hdr, frame.as_ptr()) != 0 }
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        // SAFETY: the program came from pcap_compile and is freed exactly once.
        unsafe { pcap::pcap_freecode(&mut self.prog) }
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter").field("expr", &self.expr).finish()
    }
}
