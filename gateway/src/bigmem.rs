//! The large per-worker tables (connections, their index, the half-open queue) are allocated here,
//! so that the daemon can have them backed by huge pages (issue 16): at a million connections and
//! more, every packet's lookup touches a random line of a table of hundreds of megabytes, and with
//! 4 KiB pages nearly every one is also a TLB miss.
//!
//! The core stays free of DPDK and of `unsafe`: it allocates with `Vec` as before and only hands
//! the fresh, not yet touched memory to an advice function the daemon registered
//! (`dpdk::advise_hugepages`: `madvise(MADV_HUGEPAGE)`, what glibc's `glibc.malloc.hugetlb=1`
//! tunable does for every large allocation). The first write then faults in transparent huge pages
//! (THP's `madvise` mode, Debian's default). Tests, benchmarks and the fuzzer register nothing.

use std::sync::OnceLock;

/// Advice on a fresh allocation: its start and length in bytes.
pub type Advice = fn(*const u8, usize);

static ADVICE: OnceLock<Advice> = OnceLock::new();

/// Registers the advice for every table allocated from now on (the first registration stays).
pub fn set_advice(advice: Advice) {
    let _ = ADVICE.set(advice);
}

/// A vector of `n` copies of `value`, advised before its first write.
pub fn filled<T: Clone>(n: usize, value: T) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    if let Some(advise) = ADVICE.get() {
        advise(v.as_ptr().cast::<u8>(), n * std::mem::size_of::<T>());
    }
    v.resize(n, value);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static SEEN: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

    fn record(start: *const u8, len: usize) {
        SEEN.lock().unwrap().push((start as usize, len));
    }

    /// The advice sees the whole allocation before it is filled (other tests of this binary may
    /// allocate tables meanwhile: the advice is process-wide, so this one only records).
    #[test]
    fn the_advice_sees_the_allocation_before_it_is_filled() {
        set_advice(record);
        let v = filled(1 << 16, 7u64);
        assert_eq!(v.len(), 1 << 16);
        assert!(v.iter().all(|&x| x == 7));
        let want = (v.as_ptr() as usize, (1 << 16) * 8);
        assert!(SEEN.lock().unwrap().contains(&want));
    }
}
