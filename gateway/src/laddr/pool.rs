//! One worker's local address pool: picks (LIP, lport) for new FullNAT connections.
//!
//! Built once per worker from the shared [`PortLayout`]; all memory is allocated at creation, the
//! allocation path only reads tables and bumps counters. A (LIP, lport) pair may serve several real
//! servers at once, because the reply tuple (RIP, rport, LIP, lport) stays unique; whether a candidate
//! tuple is taken is asked of the caller's connection table through the `in_use` closure.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::error::{ConfigError, PortsExhausted};
use super::layout::PortLayout;
use super::toeplitz::field;
use super::tuple::ReplyTuple;

/// Default number of candidate tuples tried per LIP before moving to the next LIP.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 64;

/// `(a + b) % n` for `a, b < n`, without a division (the allocation path has several per attempt).
#[inline]
fn wrap_add(a: usize, b: usize, n: usize) -> usize {
    let s = a + b;
    if s >= n {
        s - n
    } else {
        s
    }
}

/// `(a + 1) % n` for `a < n`.
#[inline]
fn wrap_inc(a: usize, n: usize) -> usize {
    wrap_add(a, 1, n)
}

/// Candidates tried in one bucket before moving on to the next entry's bucket.
const CHUNK: usize = 8;

/// Per-worker allocation counters (plain integers: only the owning worker writes them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaddrStats {
    /// Successful allocations.
    pub allocated: u64,
    /// Successful frees.
    pub freed: u64,
    /// Allocations that failed with [`PortsExhausted`].
    pub exhausted: u64,
    /// Candidate tuples offered to `in_use` (one per attempt, successful or not).
    pub attempts: u64,
}

#[derive(Debug, Clone)]
struct Lip {
    addr: Ipv4Addr,
    /// `H(0, lip, 0, 0)`: the LIP's share of the reply tuple hash (0 without RSS).
    hash: u32,
    /// Candidate ports of this LIP found taken (DPVS's per-LIP "conflicts", `ipvsadm -G`).
    conflicts: u64,
}

/// A worker's (LIP, lport) allocator.
#[derive(Debug)]
pub struct LaddrPool {
    layout: Arc<PortLayout>,
    worker: usize,
    /// The LIPs new connections take (`lips[..active]`), then the retiring ones: removed from the
    /// service (`ipvsadm -Q`) while connections of this worker still used them. Those keep their
    /// counts until their connections end, and are never handed out again.
    lips: Vec<Lip>,
    /// Live connections of this worker on each LIP of `lips`, apart from them: a SYN's search for
    /// the least used reads these alone, four to a vector (`least_used_lip`).
    conns: Vec<u32>,
    /// Where `least_used_lip` looks first for a LIP as little used as the least: after the one it
    /// chose last, so that equally used LIPs take new connections in turn.
    next_lip: usize,
    active: usize,
    /// Next offset to try inside each bucket of this worker's ports (`PortLayout::share`): a round-robin so that consecutive connections toward
    /// the same server take different ports and a freed port is reused last.
    cursor: Vec<u32>,
    /// RETA entries this worker polls; walked from a rotating start to spread load over its queues.
    entries: Vec<u16>,
    next_entry: usize,
    mask: u32,
    max_attempts: u32,
    stats: LaddrStats,
}

impl LaddrPool {
    /// The pool of `worker` over the addresses `lips`, trying at most `max_attempts` candidates per
    /// LIP on each allocation.
    pub fn new(
        layout: Arc<PortLayout>,
        worker: usize,
        lips: &[Ipv4Addr],
        max_attempts: u32,
    ) -> Result<Self, ConfigError> {
        if worker >= layout.n_workers() {
            return Err(ConfigError::NoSuchWorker {
                worker,
                n_workers: layout.n_workers(),
            });
        }
        if lips.is_empty() {
            return Err(ConfigError::NoLocalAddress);
        }
        if let Some(dup) = lips
            .iter()
            .enumerate()
            .find(|(i, a)| lips[..*i].contains(a))
        {
            return Err(ConfigError::DuplicateLocalAddress(*dup.1));
        }
        let active = lips.len();
        let lips = lips
            .iter()
            .map(|&addr| Lip {
                addr,
                hash: layout
                    .toeplitz()
                    .map_or(0, |t| t.hash_ip(field::DST_IP, addr)),
                conflicts: 0,
            })
            .collect();

        let n_buckets = layout.n_buckets();
        Ok(LaddrPool {
            entries: layout.worker_entries(worker).to_vec(),
            mask: layout.mask(),
            cursor: vec![0; n_buckets],
            layout,
            worker,
            lips,
            conns: vec![0; active],
            next_lip: 0,
            active,
            next_entry: 0,
            max_attempts,
            stats: LaddrStats::default(),
        })
    }

    /// The same pool with `retiring` LIPs after its own (those it already has are skipped): they
    /// take no new connection, but count and free those they have (see [`carry_counts`]).
    ///
    /// [`carry_counts`]: Self::carry_counts
    pub fn with_retiring(mut self, retiring: &[Ipv4Addr]) -> Self {
        for &addr in retiring {
            if self.lips.iter().any(|l| l.addr == addr) {
                continue;
            }
            let hash = self
                .layout
                .toeplitz()
                .map_or(0, |t| t.hash_ip(field::DST_IP, addr));
            self.lips.push(Lip {
                addr,
                hash,
                conflicts: 0,
            });
            self.conns.push(0);
        }
        self
    }

    /// Takes over the live-connection counts and conflicts of `old`'s LIPs that this pool has
    /// too: a pool rebuilt because its service's LIPs changed (`ipvsadm -P`/`-Q`) goes on from the
    /// connections its worker holds, so that a retiring LIP is let go only when they end.
    pub fn carry_counts(&mut self, old: &LaddrPool) {
        for (l, conns) in self.lips.iter_mut().zip(&mut self.conns) {
            if let Some(o) = old.lips.iter().position(|o| o.addr == l.addr) {
                *conns = old.conns[o];
                l.conflicts = old.lips[o].conflicts;
            }
        }
    }

    /// Picks a local address and port for a new connection toward `rip:rport` and returns the
    /// connection's reply tuple. The LIP with the fewest live connections is tried first; on each
    /// LIP at most `max_attempts` candidates are offered to `in_use`, which must say whether the
    /// connection table already holds that reply tuple.
    ///
    /// With RSS steering the returned tuple's hash lands on a queue this worker polls; in both modes
    /// `layout.owner_of(lport)` is this worker.
    // Out of line whatever the codegen units decide: every SYN calls it, but inlined into
    // `new_conn` it cost 12% of new connections a second (perf/RESULTS.md, "New connections a
    // second fell with a module split").
    #[inline(never)]
    pub fn allocate(
        &mut self,
        rip: Ipv4Addr,
        rport: u16,
        mut in_use: impl FnMut(&ReplyTuple) -> bool,
    ) -> Result<ReplyTuple, PortsExhausted> {
        // H(rip, 0, rport, 0): the only hashing done per allocation.
        let remote = self.layout.toeplitz().map_or(0, |t| {
            t.hash_ip(field::SRC_IP, rip) ^ t.hash_port(field::SRC_PORT, rport)
        });
        let n_entries = self.entries.len();
        let first_entry = self.next_entry;
        self.next_entry = wrap_inc(self.next_entry, n_entries);
        let n_lips = self.active;
        let first_lip = self.least_used_lip();

        let mut li = first_lip;
        for _ in 0..n_lips {
            if let Some(reply) = self.try_lip(li, rip, rport, remote, first_entry, &mut in_use) {
                return Ok(reply);
            }
            li = wrap_inc(li, n_lips);
        }
        self.stats.exhausted += 1;
        Err(PortsExhausted)
    }

    /// Searches LIP `li` for a free reply tuple toward `rip:rport`, within `max_attempts`
    /// candidates. The worker's entries are visited in rounds of [`CHUNK`] candidates per bucket, so
    /// that one bucket crowded with long-lived connections does not eat the whole budget while the
    /// buckets of other entries have free ports; with an unlimited budget every candidate is visited.
    ///
    /// A bucket's cursor moves past every candidate tried, taken or not: the next search goes on
    /// from there. Moved only past the one handed out, a run of `max_attempts` ports held by
    /// long-lived connections stopped every search of that LIP once the cursor came round to it,
    /// with the rest of its ports free (`ports_exhausted`; `a_run_of_long_lived_ports_...`).
    fn try_lip(
        &mut self,
        li: usize,
        rip: Ipv4Addr,
        rport: u16,
        remote: u32,
        first_entry: usize,
        in_use: &mut impl FnMut(&ReplyTuple) -> bool,
    ) -> Option<ReplyTuple> {
        let lip = self.lips[li].addr;
        let b = (remote ^ self.lips[li].hash) & self.mask;
        let n_entries = self.entries.len();
        let mut budget = self.max_attempts;
        let share = self.layout.share(self.worker);
        let mut round = 0;
        while round < share.max_bucket_len {
            for j in 0..n_entries {
                let e = u32::from(self.entries[wrap_add(first_entry, j, n_entries)]);
                // Reply entry = b ^ bucket(lport), so entry e needs a port from bucket b ^ e.
                let bucket = (b ^ e) as usize;
                let lo = share.start[bucket] as usize;
                let len = share.start[bucket + 1] as usize - lo;
                // This round's candidates in the bucket: the next ones from its cursor.
                for _ in round..len.min(round + CHUNK) {
                    if budget == 0 {
                        return None;
                    }
                    budget -= 1;
                    self.stats.attempts += 1;
                    let offset = self.cursor[bucket] as usize;
                    self.cursor[bucket] = wrap_inc(offset, len) as u32;
                    let reply = ReplyTuple {
                        src_ip: rip,
                        dst_ip: lip,
                        src_port: rport,
                        dst_port: share.ports[lo + offset],
                    };
                    if !in_use(&reply) {
                        self.conns[li] = self.conns[li].saturating_add(1);
                        self.stats.allocated += 1;
                        return Some(reply);
                    }
                    self.lips[li].conflicts += 1;
                }
            }
            round += CHUNK;
        }
        None
    }

    /// `lip:lport`, just freed (a connection evicted to make room, `forward::fullnat`'s
    /// `make_room`), for a new connection toward `rip:rport`, if it is this pool's and this
    /// worker's for that tuple ([`take`](Self::take)'s checks, and with RSS steering a reply hash
    /// that lands on this worker's queues: another real server's tuple may hash elsewhere) and
    /// `in_use` says the tuple is free. The search from the cursor would come to it last.
    // Out of line whatever the codegen units decide (only when out of ports): inlined, it
    // bloated the SYN path's code (perf/RESULTS.md, "New connections a second
    // fell with a module split").
    #[inline(never)]
    pub fn take_freed(
        &mut self,
        lip: Ipv4Addr,
        lport: u16,
        rip: Ipv4Addr,
        rport: u16,
        in_use: impl FnOnce(&ReplyTuple) -> bool,
    ) -> Option<ReplyTuple> {
        let reply = ReplyTuple {
            src_ip: rip,
            dst_ip: lip,
            src_port: rport,
            dst_port: lport,
        };
        let elsewhere = self
            .layout
            .rss_worker(&reply)
            .is_some_and(|w| w != self.worker);
        let active = self.lips[..self.active].iter().any(|l| l.addr == lip);
        (active && !elsewhere && !in_use(&reply) && self.take(lip, lport)).then_some(reply)
    }

    /// (LIP, candidate ports found taken) for each LIP of the pool.
    pub fn conflicts(&self) -> impl Iterator<Item = (Ipv4Addr, u64)> + '_ {
        self.lips.iter().map(|l| (l.addr, l.conflicts))
    }

    /// Index of a LIP with the fewest live connections (the most free ports): the first from
    /// `next_lip` on, so that equally used LIPs take new connections in turn. The least count
    /// over the counts' own array, which the compiler vectorises, then the search from where the
    /// last one was found, which with counts as even as this choice keeps them ends at once. One
    /// scan of the LIPs for both took about 6 instructions a LIP (`syn-net` 2,666 -> 2,659 with
    /// the harness's 16 LIPs; `perf/bench` configures 32; perf/RESULTS.md).
    fn least_used_lip(&mut self) -> usize {
        let conns = &self.conns[..self.active];
        // A fold over values, not `min` over references, whose address it tracks: that one the
        // compiler does not vectorise.
        let least = conns.iter().fold(u32::MAX, |m, &c| m.min(c));
        let start = self.next_lip.min(conns.len());
        let found = conns[start..]
            .iter()
            .position(|&c| c == least)
            .map(|i| start + i)
            .or_else(|| conns[..start].iter().position(|&c| c == least))
            .unwrap_or(0);
        self.next_lip = found + 1;
        found
    }

    /// Counts (LIP, lport) as used by a connection installed from elsewhere (HA sync): the
    /// connection table, which `allocate`'s `in_use` consults, then holds the port. False,
    /// changing nothing, if the LIP is not in this pool or the port is not this worker's.
    pub fn take(&mut self, lip: Ipv4Addr, lport: u16) -> bool {
        if !self.layout.contains(lport) || self.layout.owner_of(lport) != self.worker {
            return false;
        }
        match self.lips.iter().position(|l| l.addr == lip) {
            Some(i) => {
                self.conns[i] = self.conns[i].saturating_add(1);
                self.stats.allocated += 1;
                true
            }
            None => false,
        }
    }

    /// Releases a connection's (LIP, lport). Returns false, changing nothing, if the LIP is not in
    /// this pool, the port is not this worker's, or the LIP has no live connection.
    pub fn free(&mut self, lip: Ipv4Addr, lport: u16) -> bool {
        if !self.layout.contains(lport) || self.layout.owner_of(lport) != self.worker {
            return false;
        }
        match self.lips.iter().position(|l| l.addr == lip) {
            Some(i) if self.conns[i] > 0 => {
                self.conns[i] -= 1;
                self.stats.freed += 1;
                true
            }
            _ => false,
        }
    }

    /// The worker this pool belongs to.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The shared layout.
    pub fn layout(&self) -> &Arc<PortLayout> {
        &self.layout
    }

    /// Counters.
    pub fn stats(&self) -> &LaddrStats {
        &self.stats
    }

    /// Number of ports in this worker's share (per LIP and per real server).
    pub fn share_size(&self) -> usize {
        self.layout.share(self.worker).ports.len()
    }

    /// Live connections per LIP, in configuration order, the retiring ones last.
    pub fn lip_usage(&self) -> impl Iterator<Item = (Ipv4Addr, u32)> + '_ {
        self.lips.iter().zip(&self.conns).map(|(l, &c)| (l.addr, c))
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::{RssConfig, Steering, DEFAULT_PORTS};
    use super::super::reta::{QueueMap, Reta};
    use super::super::toeplitz::{ipv4_l4_input, toeplitz_hash, DEFAULT_RSS_KEY};
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn rss_layout(
        key: &[u8],
        reta: Vec<u16>,
        workers: u16,
        ports: std::ops::RangeInclusive<u16>,
    ) -> Arc<PortLayout> {
        Arc::new(try_rss_layout(key, reta, workers, ports).unwrap())
    }

    fn try_rss_layout(
        key: &[u8],
        reta: Vec<u16>,
        workers: u16,
        ports: std::ops::RangeInclusive<u16>,
    ) -> Result<PortLayout, ConfigError> {
        let steering = Steering::Rss(RssConfig {
            key: key.to_vec(),
            reta: Reta::new(reta).unwrap(),
            queues: QueueMap::identity(workers),
        });
        PortLayout::new(usize::from(workers), ports, steering)
    }

    /// The worker the NIC delivers `reply` to, computed with the bitwise reference hash.
    fn nic_worker(key: &[u8], reta: &[u16], reply: &ReplyTuple) -> usize {
        let input = ipv4_l4_input(reply.src_ip, reply.dst_ip, reply.src_port, reply.dst_port);
        let h = toeplitz_hash(key, &input);
        usize::from(reta[h as usize % reta.len()])
    }

    const RIP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 7);
    const LIPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every allocated port steers the reply to the allocating worker, which also owns it by
        /// port; and the port lies in the range. A key and RETA the layout refuses are refused as
        /// unsteerable, and nothing is allocated with them: a random key meets that now and then
        /// (CI drew one at 83eb631, kept in `proptest-regressions/laddr/pool.txt`).
        #[test]
        fn rss_allocation_steers_to_owner(
            key in any::<[u8; 40]>(),
            size in prop::sample::select(vec![64usize, 128, 512]),
            workers in 1u16..=4,
            reta_seed in prop::collection::vec(any::<u16>(), 512),
            rips in prop::collection::vec((any::<u32>(), any::<u16>()), 8),
            lips in prop::collection::hash_set(any::<u32>(), 1..4),
        ) {
            // A random RETA in which every queue appears at least once.
            let reta: Vec<u16> = (0..size)
                .map(|i| if i < usize::from(workers) { i as u16 } else { reta_seed[i] % workers })
                .collect();
            let layout = match try_rss_layout(&key, reta.clone(), workers, DEFAULT_PORTS) {
                Ok(layout) => Arc::new(layout),
                Err(e) => {
                    prop_assert!(matches!(e, ConfigError::Unsteerable { .. }), "{:?}", e);
                    return Ok(());
                }
            };
            let lips: Vec<Ipv4Addr> = lips.into_iter().map(Ipv4Addr::from).collect();
            for w in 0..usize::from(workers) {
                let mut pool = LaddrPool::new(layout.clone(), w, &lips, DEFAULT_MAX_ATTEMPTS).unwrap();
                for &(rip, rport) in &rips {
                    let reply = pool.allocate(Ipv4Addr::from(rip), rport, |_| false).unwrap();
                    prop_assert_eq!(nic_worker(&key, &reta, &reply), w);
                    prop_assert_eq!(layout.rss_worker(&reply), Some(w));
                    prop_assert_eq!(layout.owner_of(reply.dst_port), w);
                    prop_assert!(layout.contains(reply.dst_port));
                    prop_assert!(lips.contains(&reply.dst_ip));
                    prop_assert_eq!((reply.src_ip, reply.src_port), (Ipv4Addr::from(rip), rport));
                }
            }
        }
    }

    /// All (LIP, lport) toward one (RIP, rport) that the allocator may hand out for `worker`, by
    /// brute force with the reference hash.
    fn eligible(
        key: &[u8],
        reta: &[u16],
        layout: &PortLayout,
        worker: usize,
        rport: u16,
    ) -> HashSet<ReplyTuple> {
        let mut set = HashSet::new();
        for &lip in &LIPS {
            for p in layout.port_range() {
                let reply = ReplyTuple {
                    src_ip: RIP,
                    dst_ip: lip,
                    src_port: rport,
                    dst_port: p,
                };
                if layout.owner_of(p) == worker && nic_worker(key, reta, &reply) == worker {
                    set.insert(reply);
                }
            }
        }
        set
    }

    #[test]
    fn unique_until_freed_then_exhausted_then_recovered() {
        let reta = Reta::round_robin(128, 2).unwrap().entries().to_vec();
        let ports = 20000..=23999;
        let layout = rss_layout(&DEFAULT_RSS_KEY, reta.clone(), 2, ports);
        let worker = 1;
        let expected = eligible(&DEFAULT_RSS_KEY, &reta, &layout, worker, 443);
        // Budget large enough to visit every candidate, so exhaustion is exact.
        let mut pool = LaddrPool::new(layout.clone(), worker, &LIPS, 1 << 16).unwrap();

        let mut table: HashSet<ReplyTuple> = HashSet::new();
        while let Ok(t) = pool.allocate(RIP, 443, |t| table.contains(t)) {
            assert!(table.insert(t), "handed out twice: {t:?}");
        }
        assert_eq!(table, expected);
        assert_eq!(pool.stats().allocated, expected.len() as u64);
        assert_eq!(pool.stats().exhausted, 1);
        // Every candidate found taken is a conflict of its LIP.
        let s = pool.stats();
        let conflicts: u64 = pool.conflicts().map(|(_, n)| n).sum();
        assert_eq!(conflicts, s.attempts - s.allocated);
        assert!(pool.conflicts().all(|(_, n)| n > 0));
        // Usage counts per LIP match what was handed out on each.
        for (lip, n) in pool.lip_usage() {
            assert_eq!(
                n as usize,
                expected.iter().filter(|t| t.dst_ip == lip).count()
            );
        }

        // A different real server port still gets ports: reuse of (LIP, lport) is allowed.
        let other = pool.allocate(RIP, 444, |t| table.contains(t)).unwrap();
        assert!(pool.free(other.dst_ip, other.dst_port));

        // Free every third tuple; exactly those come back, once each.
        let freed: HashSet<ReplyTuple> = table.iter().copied().step_by(3).collect();
        for t in &freed {
            assert!(pool.free(t.dst_ip, t.dst_port));
            table.remove(t);
        }
        let mut again = HashSet::new();
        while let Ok(t) = pool.allocate(RIP, 443, |t| table.contains(t)) {
            assert!(table.insert(t));
            assert!(again.insert(t));
        }
        assert_eq!(again, freed);
        assert_eq!(pool.stats().exhausted, 2);
        assert_eq!(pool.stats().freed, freed.len() as u64 + 1);
    }

    #[test]
    fn bounded_attempts_report_exhaustion() {
        let layout = Arc::new(PortLayout::new(2, 5000..=5099, Steering::Partition).unwrap());
        let mut pool = LaddrPool::new(layout, 0, &LIPS[..1], 10).unwrap();
        // Everything taken: exactly `max_attempts` candidates are tried, then the error.
        let mut asked = 0;
        assert_eq!(
            pool.allocate(RIP, 80, |_| {
                asked += 1;
                true
            }),
            Err(PortsExhausted)
        );
        assert_eq!(asked, 10);
        assert_eq!(
            *pool.stats(),
            LaddrStats {
                allocated: 0,
                freed: 0,
                exhausted: 1,
                attempts: 10
            }
        );
        // The next search goes on past the candidates found taken (this worker's ports are the
        // even ones): one free there is found at once.
        let t = pool.allocate(RIP, 80, |t| t.dst_port != 5024).unwrap();
        assert_eq!(t.dst_port, 5024);
        // One free behind the cursor is found when the searches come round to it: 50 ports, up
        // to 10 candidates a search.
        let free = |t: &ReplyTuple| t.dst_port != 5010;
        let found = (0..5).find_map(|_| pool.allocate(RIP, 80, free).ok());
        assert_eq!(found.map(|t| t.dst_port), Some(5010));
    }

    /// Connections that stay open, opened one after another, hold a run of consecutive ports.
    /// When the cursor comes round to the run, a search steps past it and the ports after it serve:
    /// before, the cursor moved only past a port handed out, and with a run longer than the
    /// budget every later search of that LIP failed (4100 of 5000 here), its other ports free.
    #[test]
    fn a_run_of_long_lived_ports_does_not_stop_the_allocator() {
        let layout = Arc::new(PortLayout::new(1, 10000..=10999, Steering::Partition).unwrap());
        let mut pool = LaddrPool::new(layout, 0, &LIPS[..1], DEFAULT_MAX_ATTEMPTS).unwrap();
        let mut open: HashSet<u16> = HashSet::new();
        for _ in 0..100 {
            let t = pool
                .allocate(RIP, 80, |t| open.contains(&t.dst_port))
                .unwrap();
            open.insert(t.dst_port);
        }
        // Short connections, each closed before the next: the cursor laps the ring five times.
        let mut failed = 0;
        for _ in 0..5000 {
            match pool.allocate(RIP, 80, |t| open.contains(&t.dst_port)) {
                Ok(t) => assert!(pool.free(t.dst_ip, t.dst_port)),
                Err(PortsExhausted) => failed += 1,
            }
        }
        // The run (100) is longer than the budget (64): the search that meets it fails once a lap.
        assert!(
            failed <= 5,
            "{failed} of 5000 failed, 900 of 1000 ports free"
        );
        assert!(open.iter().all(|p| (10000..10100).contains(p)));
    }

    /// A port freed by an eviction is taken for a new connection when it is this worker's, and
    /// refused when it is not (another worker's share, a port outside the range, an unknown LIP,
    /// a tuple still in use).
    #[test]
    fn take_freed_hands_out_a_freed_port_of_this_worker() {
        let layout = Arc::new(PortLayout::new(2, 5000..=5099, Steering::Partition).unwrap());
        let mut pool = LaddrPool::new(layout, 0, &LIPS[..1], 10).unwrap();
        let usage = |pool: &LaddrPool| pool.lip_usage().next().unwrap().1;
        assert_eq!(usage(&pool), 0);
        let t = pool.take_freed(LIPS[0], 5042, RIP, 80, |_| false).unwrap();
        assert_eq!(usage(&pool), 1, "counted as handed out");
        assert_eq!(
            (t.dst_ip, t.dst_port, t.src_ip, t.src_port),
            (LIPS[0], 5042, RIP, 80)
        );
        assert_eq!(pool.stats().allocated, 1);
        assert!(
            pool.take_freed(LIPS[0], 5043, RIP, 80, |_| false).is_none(),
            "worker 1's"
        );
        assert!(
            pool.take_freed(LIPS[0], 6000, RIP, 80, |_| false).is_none(),
            "outside"
        );
        assert!(
            pool.take_freed(LIPS[1], 5042, RIP, 80, |_| false).is_none(),
            "not a LIP of it"
        );
        assert!(
            pool.take_freed(LIPS[0], 5044, RIP, 80, |_| true).is_none(),
            "in use"
        );
        assert_eq!(usage(&pool), 1, "nothing refused is counted");
        assert!(pool.free(LIPS[0], 5042));
        assert_eq!(usage(&pool), 0);
        // With RSS, only a port whose reply the NIC delivers to this worker.
        let reta = Reta::round_robin(128, 2).unwrap().entries().to_vec();
        let layout = rss_layout(&DEFAULT_RSS_KEY, reta.clone(), 2, 20000..=23999);
        let mut pool = LaddrPool::new(layout, 1, &LIPS, DEFAULT_MAX_ATTEMPTS).unwrap();
        let mut taken = 0;
        for lport in 20000..=23999u16 {
            let reply = ReplyTuple {
                src_ip: RIP,
                dst_ip: LIPS[1],
                src_port: 443,
                dst_port: lport,
            };
            let could = lport % 2 == 1 && nic_worker(&DEFAULT_RSS_KEY, &reta, &reply) == 1;
            let got = pool.take_freed(LIPS[1], lport, RIP, 443, |_| false);
            assert_eq!(got, could.then_some(reply), "port {lport}");
            taken += usize::from(could);
        }
        assert!(taken > 500, "{taken}");
    }

    #[test]
    fn crowded_bucket_does_not_exhaust_the_budget() {
        let reta = Reta::round_robin(128, 2).unwrap().entries().to_vec();
        let layout = rss_layout(&DEFAULT_RSS_KEY, reta, 2, DEFAULT_PORTS);
        let new_pool =
            || LaddrPool::new(layout.clone(), 0, &LIPS[..1], DEFAULT_MAX_ATTEMPTS).unwrap();
        let first = new_pool().allocate(RIP, 80, |_| false).unwrap();
        let crowded = layout.bucket_of(first.dst_port);
        // About 250 ports share that bucket, far more than the budget of 64: all of them in use
        // must not stop the allocator from moving on to the next entry's bucket.
        let mut pool = new_pool();
        let t = pool
            .allocate(RIP, 80, |t| layout.bucket_of(t.dst_port) == crowded)
            .unwrap();
        assert_ne!(layout.bucket_of(t.dst_port), crowded);
        assert_eq!(pool.stats().attempts, CHUNK as u64 + 1);
        assert_eq!(layout.rss_worker(&t), Some(0));
    }

    #[test]
    fn partition_mode_uses_own_ports_only() {
        let layout = Arc::new(PortLayout::new(3, 6000..=6299, Steering::Partition).unwrap());
        for w in 0..3 {
            let mut pool = LaddrPool::new(layout.clone(), w, &LIPS, DEFAULT_MAX_ATTEMPTS).unwrap();
            assert_eq!(pool.share_size(), 100);
            let mut table = HashSet::new();
            while let Ok(t) = pool.allocate(RIP, 80, |t| table.contains(t)) {
                assert_eq!(layout.owner_of(t.dst_port), w);
                assert_eq!(usize::from(t.dst_port) % 3, w);
                assert!(table.insert(t));
            }
            // Two LIPs x 100 ports, all reachable within the budget since allocation runs in order.
            assert_eq!(table.len(), 200);
        }
    }

    #[test]
    fn free_checks_ownership() {
        let layout = Arc::new(PortLayout::new(2, DEFAULT_PORTS, Steering::Partition).unwrap());
        let mut pool = LaddrPool::new(layout, 0, &LIPS, DEFAULT_MAX_ATTEMPTS).unwrap();
        let t = pool.allocate(RIP, 80, |_| false).unwrap();
        assert!(
            !pool.free(Ipv4Addr::new(1, 2, 3, 4), t.dst_port),
            "unknown LIP"
        );
        assert!(!pool.free(t.dst_ip, t.dst_port + 1), "other worker's port");
        assert!(!pool.free(t.dst_ip, 80), "outside the range");
        assert!(pool.free(t.dst_ip, t.dst_port));
        assert!(!pool.free(t.dst_ip, t.dst_port), "no live connection left");
        assert_eq!(pool.stats().freed, 1);
    }

    #[test]
    fn least_used_lip_is_preferred() {
        let layout = Arc::new(PortLayout::new(1, DEFAULT_PORTS, Steering::Partition).unwrap());
        let mut pool = LaddrPool::new(layout, 0, &LIPS, DEFAULT_MAX_ATTEMPTS).unwrap();
        let a = pool.allocate(RIP, 80, |_| false).unwrap();
        let b = pool.allocate(RIP, 80, |_| false).unwrap();
        assert_ne!(a.dst_ip, b.dst_ip);
        assert!(pool.free(a.dst_ip, a.dst_port));
        let c = pool.allocate(RIP, 80, |_| false).unwrap();
        assert_eq!(c.dst_ip, a.dst_ip);
    }

    /// Equally used LIPs take new connections in turn, from the one after the LIP chosen last:
    /// a LIP freed and taken again does not send the next connection back to the first LIP.
    #[test]
    fn equally_used_lips_take_new_connections_in_turn() {
        let layout = Arc::new(PortLayout::new(1, DEFAULT_PORTS, Steering::Partition).unwrap());
        let lips: Vec<Ipv4Addr> = (1..=4).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let mut pool = LaddrPool::new(layout, 0, &lips, DEFAULT_MAX_ATTEMPTS).unwrap();
        let mut lip_of_next = || pool.allocate(RIP, 80, |_| false).unwrap();
        let first: Vec<ReplyTuple> = (0..4).map(|_| lip_of_next()).collect();
        assert_eq!(
            first.iter().map(|t| t.dst_ip).collect::<Vec<_>>(),
            lips,
            "each LIP once, in order"
        );
        assert!(pool.free(first[2].dst_ip, first[2].dst_port));
        // The least used alone: the third.
        assert_eq!(pool.allocate(RIP, 80, |_| false).unwrap().dst_ip, lips[2]);
        // All equal again: the fourth, after the one chosen last, then the first.
        assert_eq!(pool.allocate(RIP, 80, |_| false).unwrap().dst_ip, lips[3]);
        assert_eq!(pool.allocate(RIP, 80, |_| false).unwrap().dst_ip, lips[0]);
        assert_eq!(
            pool.lip_usage().map(|(_, n)| n).collect::<Vec<_>>(),
            [2, 1, 1, 2]
        );
    }

    /// `ipvsadm -Q` of a LIP that connections use: the rebuilt pool hands it out no more, but
    /// counts its connections (carried from the old pool) down to zero as they end.
    #[test]
    fn a_retiring_lip_takes_no_new_connection_and_counts_its_old_ones_down() {
        let layout = Arc::new(PortLayout::new(1, DEFAULT_PORTS, Steering::Partition).unwrap());
        let mut old = LaddrPool::new(layout.clone(), 0, &LIPS, DEFAULT_MAX_ATTEMPTS).unwrap();
        let held: Vec<ReplyTuple> = (0..6)
            .map(|_| old.allocate(RIP, 80, |_| false).unwrap())
            .filter(|t| t.dst_ip == LIPS[0])
            .collect();
        assert_eq!(held.len(), 3, "least used first: the LIPs alternate");
        let mut pool = LaddrPool::new(layout, 0, &LIPS[1..], DEFAULT_MAX_ATTEMPTS)
            .unwrap()
            .with_retiring(&LIPS[..1]);
        pool.carry_counts(&old);
        let usage = |p: &LaddrPool| p.lip_usage().collect::<Vec<_>>();
        assert_eq!(usage(&pool), vec![(LIPS[1], 3), (LIPS[0], 3)]);
        for _ in 0..10 {
            let t = pool.allocate(RIP, 80, |_| false).unwrap();
            assert_eq!(t.dst_ip, LIPS[1], "a retiring LIP was handed out");
        }
        let t = &held[0];
        assert!(pool.free(t.dst_ip, t.dst_port));
        assert!(
            pool.take_freed(t.dst_ip, t.dst_port, RIP, 80, |_| false)
                .is_none(),
            "a port of a retiring LIP was reused"
        );
        for t in &held[1..] {
            assert!(pool.free(t.dst_ip, t.dst_port));
        }
        assert_eq!(usage(&pool), vec![(LIPS[1], 13), (LIPS[0], 0)]);
    }

    #[test]
    fn bad_pools_are_refused() {
        let layout = Arc::new(PortLayout::new(2, DEFAULT_PORTS, Steering::Partition).unwrap());
        assert_eq!(
            LaddrPool::new(layout.clone(), 0, &[], 8).unwrap_err(),
            ConfigError::NoLocalAddress
        );
        assert_eq!(
            LaddrPool::new(layout.clone(), 2, &LIPS, 8).unwrap_err(),
            ConfigError::NoSuchWorker {
                worker: 2,
                n_workers: 2
            }
        );
        assert_eq!(
            LaddrPool::new(layout, 0, &[LIPS[0], LIPS[1], LIPS[0]], 8).unwrap_err(),
            ConfigError::DuplicateLocalAddress(LIPS[0])
        );
    }
}
