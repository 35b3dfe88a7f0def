//! EAL initialisation and lcore launch.
//!
//! EAL runs once per process (`rte_eal_init` may not be called twice), so `Eal` is created once by the
//! daemon; dropping it calls `rte_eal_cleanup`. Workers must be EAL lcores launched with
//! `rte_eal_remote_launch`: a plain `std::thread` has no lcore id and silently loses the per-lcore
//! mempool cache (DESIGN.md decision 3).

use super::{Error, Result};
use std::ffi::{c_void, CString};
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// The value of `--file-prefix` in EAL's arguments, if given.
fn file_prefix(args: &[String]) -> Option<&str> {
    args.iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--file-prefix") {
            Some("") => args.get(i + 1).map(String::as_str),
            Some(v) => v.strip_prefix('='),
            None => None,
        })
}

/// Proof that EAL is initialised; cleans it up when dropped.
pub struct Eal {
    // argv strings must outlive EAL, which may keep pointers into them.
    _argv: Vec<CString>,
}

impl Eal {
    /// Initialises EAL with `args` (`argv[0]` included). Fails if EAL already ran in this process.
    pub fn init(args: &[String]) -> Result<Eal> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(Error::new(
                "rte_eal_init (second call in one process)",
                libc_ealready(),
            ));
        }
        let argv: Vec<CString> = args
            .iter()
            .map(|a| {
                CString::new(a.as_str()).map_err(|_| Error::new(format!("EAL argument {a:?}"), 22))
            })
            .collect::<Result<_>>()?;
        let mut ptrs: Vec<*mut c_char> = argv.iter().map(|s| s.as_ptr() as *mut c_char).collect();
        ptrs.push(std::ptr::null_mut());
        // SAFETY: ptrs is a NULL-terminated argv of valid C strings kept alive in `argv` for the life of
        // the Eal value; rte_eal_init may permute the pointer array, which we own.
        let ret = unsafe { dpdk_sys::rte_eal_init(argv.len() as c_int, ptrs.as_mut_ptr()) };
        if ret < 0 {
            EAL_STARTED.store(false, Ordering::SeqCst);
            let mut e = Error::from_rte_errno("rte_eal_init");
            if e.errno == 0 {
                // Several of EAL's failures set no rte_errno (DPDK 22.11's "Cannot init config",
                // when another primary process holds the lock of this file prefix, among them):
                // "Success" would be the message.
                e.msg = format!(
                    "failed without an errno; EAL logged why above (\"Cannot create lock\": \
                     another process runs with file prefix {:?})",
                    file_prefix(args).unwrap_or("rte")
                );
            }
            return Err(e);
        }
        Ok(Eal { _argv: argv })
    }

    /// Worker lcore ids EAL knows, in order, excluding the main lcore.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: EAL is initialised (we hold Eal); rte_get_next_lcore only reads the lcore config.
        let mut i = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while i < dpdk_sys::RTE_MAX_LCORE {
            out.push(i);
            // SAFETY: as above.
            i = unsafe { dpdk_sys::rte_get_next_lcore(i, 1, 0) };
        }
        out
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: called once, after every lcore has been waited for and every port/pool released by
        // the owners (the daemon drops them before Eal).
        unsafe { dpdk_sys::rte_eal_cleanup() };
    }
}

fn libc_ealready() -> i32 {
    114 // EALREADY
}

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

extern "C" fn lcore_trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: arg is the Box<Job> leaked by launch_on_lcore, handed to exactly this one call.
    let job: Box<Job> = unsafe { Box::from_raw(arg as *mut Job) };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or(-1)
}

/// Runs `f` on EAL worker lcore `lcore` (`rte_eal_remote_launch`). Its return value comes back from
/// `wait_lcore`. A panic in `f` is caught and reported as -1 (unwinding into C is undefined).
pub fn launch_on_lcore<F>(_eal: &Eal, lcore: u32, f: F) -> Result<()>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    let job: Box<Job> = Box::new(Box::new(f));
    let arg = Box::into_raw(job) as *mut c_void;
    // SAFETY: the trampoline takes ownership of arg exactly once; if launch fails we take it back.
    let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(lcore_trampoline), arg, lcore) };
    if ret < 0 {
        // SAFETY: the launch failed, so the trampoline never ran and never will: reclaim the job.
        drop(unsafe { Box::from_raw(arg as *mut Job) });
        return Err(Error::new(
            format!("rte_eal_remote_launch(lcore {lcore})"),
            -ret,
        ));
    }
    Ok(())
}

/// Waits for the job on `lcore` to finish and returns its value.
pub fn wait_lcore(_eal: &Eal, lcore: u32) -> i32 {
    // SAFETY: called from the main lcore with EAL initialised.
    unsafe { dpdk_sys::rte_eal_wait_lcore(lcore) }
}

/// The calling thread's lcore id (`u32::MAX` for non-EAL threads).
#[inline]
pub fn lcore_id() -> u32 {
    // SAFETY: reads a per-thread variable; no preconditions.
    unsafe { dpdk_sys::gw_rte_lcore_id() }
}

/// The time-stamp counter.
#[inline(always)]
pub fn tsc() -> u64 {
    // `rte_rdtsc` is a plain `rdtsc` (DPDK's rte_cycles.h on x86-64): inline here rather than a
    // call into the C shim, four times a burst.
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rdtsc has no preconditions; it reads the time-stamp counter and nothing else.
    return unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: rdtsc has no preconditions.
    unsafe {
        dpdk_sys::gw_rte_rdtsc()
    }
}

/// TSC ticks per second, as EAL measured it.
pub fn tsc_hz(_eal: &Eal) -> u64 {
    // SAFETY: EAL is initialised.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_file_prefix_is_found_in_either_form() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let f = |a: &[&str]| super::file_prefix(&args(a)).map(str::to_string);
        assert_eq!(
            f(&["gw", "--file-prefix", "ex", "-l", "0"]),
            Some("ex".into())
        );
        assert_eq!(f(&["gw", "--file-prefix=gw1"]), Some("gw1".into()));
        assert_eq!(f(&["gw", "--no-huge"]), None);
        assert_eq!(f(&["gw", "--file-prefix"]), None);
    }
}
