//! The per-core poll loop: the DPDK side of a worker (DESIGN.md decisions 3-6, 12).
//!
//! Each worker is an EAL lcore. It polls rx queue `id` of every port (up to
//! `datapath::RX_BURSTS_A_ROUND` bursts a port while they come back full) and the rings other
//! workers hand packets over on, runs each burst through its `Datapath`, and transmits through
//! buffered tx queues (queue `id` of every port, up to `datapath::TX_BURST` frames a call).
//! Every few milliseconds it runs timers, reads its control inbox and publishes its counters.
//! Nothing is shared on the packet path.

use crate::datapath::{Datapath, RX_BURSTS_A_ROUND};
use crate::dpdk::{self, Mbuf, MbufRing, Mempool, RxBatch, TxBuffer, BURST};
use crate::packet::{Event, RxMeta, Verdict};
use crate::stats::{Drop, Laps, Stage, WorkerStats};
use crossbeam_channel::{Receiver, Sender};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Messages to a worker from the control plane or from peers.
pub enum Msg {
    /// A neighbour learned by another worker.
    Neigh(Event),
    /// A neighbour the kernel has on a twin (`kernel::Update::Neigh`): taken as a gratuitous ARP,
    /// or an IPv6 neighbour's unsolicited advertisement.
    KernelNeigh {
        ip: std::net::IpAddr,
        mac: crate::wire::MacAddr,
        port: u16,
    },
    /// A new configuration generation, first phase: prepare it (everything that can fail) and
    /// acknowledge whether it can run (DESIGN.md decision 8).
    Prepare(Arc<Generation>),
    /// Second phase: run the prepared generation `id`, then acknowledge.
    Commit(u64),
    /// Another worker refused generation `id` (or timed out): drop what was prepared.
    Abort(u64),
    /// HA sync (`sync::ToWorkers`): log connections for the backup (Some), or stop (None).
    SyncPrimary(Option<crate::sync::Primary>),
    /// HA sync: send every connection (a backup asked for a full resync).
    SyncExportAll(u32),
    /// HA sync: records to install; `forwarded`: a peer worker passed them on as their owner.
    SyncInstall {
        records: Vec<crate::conn::record::ConnRecord>,
        forwarded: bool,
    },
    /// A look at this worker's state from its housekeeping (never mid-burst): the admin socket
    /// reads a chunk of its connections and its neighbours this way (`control::dump`). The
    /// closure gets the worker's index and its datapath, and answers on a channel of its own.
    Inspect(Inspect),
}

/// What `Msg::Inspect` runs on a worker.
pub type Inspect = Box<dyn FnOnce(u16, &Datapath<Mbuf>) + Send>;

/// One generation of the runtime configuration, immutable and shared by every worker.
pub struct Generation {
    pub id: u64,
    pub topo: Arc<crate::net::Topology>,
    pub services: Arc<crate::forward::ServiceTable>,
    /// Connection timeouts (`ipvsadm --set`).
    pub timeouts: crate::conn::Timeouts,
    /// IPVS `conn_reuse_mode` (`forward::reuse`).
    pub conn_reuse_mode: u8,
}

/// Which phase of a generation change an `Ack` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Prepare,
    Commit,
}

/// A worker's answer to a `Msg::Prepare` (can it run the generation, or why not) or a
/// `Msg::Commit` (it runs it now).
#[derive(Debug, Clone)]
pub struct Ack {
    pub worker: u16,
    pub generation: u64,
    pub phase: Phase,
    pub result: Result<(), String>,
}

/// Everything a worker needs; moved onto its lcore.
pub struct Worker {
    pub id: u16,
    /// DPDK port id of each datapath port index.
    pub port_ids: Vec<u16>,
    /// DPDK port id of each port's kernel twin, if it has one (`kernel`). The worker services
    /// queue `id` of each twin as of each port: frames punted go out on it, and what the kernel
    /// sends on it is put on the port's tx queue unchanged.
    pub twin_ids: Vec<Option<u16>>,
    /// The other way: datapath port index by DPDK port id (built in `run`), for frames handed over
    /// by peers, which carry the DPDK id of the port they arrived on.
    pub port_index: Vec<Option<u16>>,
    pub pool: Arc<Mempool>,
    /// Rings from each other worker to this one.
    pub rings_in: Vec<Arc<MbufRing>>,
    /// Ring to each worker (None for self).
    pub rings_out: Vec<Option<Arc<MbufRing>>>,
    pub inbox: Receiver<Msg>,
    pub peers: Vec<Sender<Msg>>,
    /// Where configuration acknowledgements go (the control plane).
    pub acks: Sender<Ack>,
    pub stop: Arc<AtomicBool>,
    pub published: Arc<Mutex<WorkerStats>>,
    pub idle_sleep_us: u32,
    pub tsc_hz: u64,
    /// TSC at the daemon's start: every worker and the control plane count milliseconds from it, so
    /// times they share (persistence templates) compare.
    pub epoch_tsc: u64,
    pub datapath: Datapath<Mbuf>,
    /// A generation prepared (first phase) and waiting for its commit.
    pub prepared: Option<(Arc<Generation>, crate::forward::fullnat::PreparedServices)>,
    /// This worker's side of `gwctl capture` (`capture::Tap`).
    pub tap: crate::capture::Tap,
    /// This worker's side of HA sync (`sync::worker_side`).
    pub sync: crate::sync::worker_side::WorkerSync,
}

/// Rounds between timer/inbox/publish checks are bounded by time, checked every this many rounds.
const HOUSEKEEPING_EVERY_MS: u64 = 5;
const PUBLISH_EVERY_MS: u64 = 100;
/// A twin's rx queue is polled every round while it delivers, else every this many microseconds:
/// an empty poll of a tap queue is a read() system call, too dear for every round.
const TWIN_POLL_US: u64 = 200;

impl Worker {
    /// Runs until `stop` is set. Returns 0.
    pub fn run(mut self) -> i32 {
        let queue = self.id;
        let top = self.port_ids.iter().copied().max().map_or(0, usize::from);
        self.port_index = vec![None; top + 1];
        for (i, &p) in self.port_ids.iter().enumerate() {
            self.port_index[usize::from(p)] = Some(i as u16);
        }
        let mut txq: Vec<TxBuffer> = self
            .port_ids
            .iter()
            .map(|&p| TxBuffer::new(p, queue))
            .collect();
        let mut twin_txq: Vec<Option<TxBuffer>> = self
            .twin_ids
            .iter()
            .map(|t| t.map(|id| TxBuffer::new(id, queue)))
            .collect();
        let any_twin = twin_txq.iter().any(Option::is_some);
        let twin_every = (self.tsc_hz / 1_000_000).max(1) * TWIN_POLL_US;
        let mut twin_last = 0u64;
        let mut twin_busy = false;
        let mut twin_dropped_seen = 0u64;
        let mut batch = RxBatch::default();
        let ms_div = (self.tsc_hz / 1000).max(1);
        let start = self.epoch_tsc;
        let mut last_house = 0u64;
        let mut last_publish = 0u64;
        // Publications since the per-key lists were last published (`stats::lists_due`).
        let mut without_lists = usize::MAX;
        let mut tx_dropped_seen = 0u64;
        // Each stage of a round is timed from the end of the one before (`gwctl runtime`).
        let mut laps = Laps::default();
        while !self.stop.load(Ordering::Relaxed) {
            let t0 = dpdk::tsc();
            laps.start(t0);
            let mut work = 0usize;
            // A receive burst came back full: more packets wait.
            let mut full = false;
            self.tap.poll();
            for pi in 0..self.port_ids.len() {
                let port = self.port_ids[pi];
                for _ in 0..RX_BURSTS_A_ROUND {
                    let n = batch.rx(port, queue);
                    laps.lap(Stage::Rx, dpdk::tsc(), n);
                    if n == 0 {
                        break;
                    }
                    work += n;
                    let src = (Stage::Rx, Some(pi as u16));
                    self.run_burst(&mut batch, src, &mut txq, &mut twin_txq, &mut laps);
                    if n < BURST {
                        break;
                    }
                    full = true;
                }
            }
            for r in 0..self.rings_in.len() {
                let n = batch.rx_ring(&self.rings_in[r]);
                laps.lap(Stage::Handoff, dpdk::tsc(), n);
                if n == 0 {
                    continue;
                }
                work += n;
                self.datapath.l3.stats.handoff_in += n as u64;
                let src = (Stage::Handoff, None);
                self.run_burst(&mut batch, src, &mut txq, &mut twin_txq, &mut laps);
            }
            if any_twin && (twin_busy || t0.wrapping_sub(twin_last) >= twin_every) {
                twin_last = t0;
                twin_busy = false;
                let mut frames = 0;
                for (pi, twin) in self.twin_ids.iter().enumerate() {
                    let Some(tid) = *twin else { continue };
                    let n = batch.rx(tid, queue);
                    if n == 0 {
                        continue;
                    }
                    twin_busy = true;
                    frames += n;
                    work += n;
                    // Frames the kernel sends leave on the port unchanged (`linux-cp-xc`), but
                    // its answers to ARP requests the datapath answered (the mbuf is freed).
                    for m in batch.by_ref() {
                        if !self.datapath.l3.from_kernel(m.data()) {
                            continue;
                        }
                        self.tap.tx(pi, m.data());
                        txq[pi].push(m);
                    }
                }
                laps.lap(Stage::Twin, dpdk::tsc(), frames);
            }
            for d in self.datapath.take_deferred() {
                self.dispatch(d.verdict, &mut txq, &mut twin_txq);
            }
            let (l3, tap) = (&mut self.datapath.l3, &mut self.tap);
            l3.take_released(|port, m| {
                if let Some(t) = txq.get_mut(port as usize) {
                    tap.tx(port as usize, m.data());
                    t.push(m);
                }
            });
            let pool = &self.pool;
            let mut no_mbuf = 0;
            l3.take_generated(|g| match Mbuf::from_bytes(pool, g.bytes()) {
                Some(m) if g.to_twin => {
                    if let Some(t) = twin_txq.get_mut(g.port as usize).and_then(Option::as_mut) {
                        t.push(m);
                    }
                }
                Some(m) => {
                    tap.tx(g.port as usize, m.data());
                    txq[g.port as usize].push(m)
                }
                None => no_mbuf += 1,
            });
            l3.stats.drops[Drop::MbufExhausted as usize] += no_mbuf;
            for t in txq.iter_mut() {
                t.flush();
            }
            for t in twin_txq.iter_mut().flatten() {
                t.flush();
            }
            let t1 = dpdk::tsc();
            laps.lap(Stage::Tx, t1, 0);
            let now_ms = (t1 - start) / ms_div;
            let housekeeping = now_ms - last_house >= HOUSEKEEPING_EVERY_MS;
            if housekeeping {
                last_house = now_ms;
                self.housekeeping(now_ms);
                let dropped: u64 = txq.iter().map(|t| t.dropped).sum();
                self.datapath.l3.stats.drops[Drop::TxFull as usize] += dropped - tx_dropped_seen;
                tx_dropped_seen = dropped;
                let dropped: u64 = twin_txq.iter().flatten().map(|t| t.dropped).sum();
                self.datapath.l3.stats.drops[Drop::TwinTxFull as usize] +=
                    dropped - twin_dropped_seen;
                twin_dropped_seen = dropped;
                // Published only if no reader (the control plane, the health checker) holds the
                // counters just now: a worker never waits on a lock; it tries again next round.
                if now_ms - last_publish >= PUBLISH_EVERY_MS {
                    let entries = self.datapath.l3.stats.list_entries();
                    let lists = crate::stats::lists_due(without_lists, entries);
                    if self.publish(false, lists) {
                        last_publish = now_ms;
                        without_lists = if lists { 0 } else { without_lists + 1 };
                    }
                }
            } else if !self.inbox.is_empty() {
                // A control message waits (a generation to prepare or commit): answer it now, not
                // at the next housekeeping, so a change is acknowledged in microseconds. The check
                // is two atomic loads of the channel's ends per round.
                self.read_inbox();
            }
            // A configuration change's walk of the connection tables, a slice a round.
            let walking = self.datapath.rebind_step(full);
            if work > 0 || housekeeping || walking {
                laps.lap(Stage::Timers, dpdk::tsc(), 0);
                let s = &mut self.datapath.l3.stats;
                s.busy_cycles += laps.elapsed();
                s.busy_packets += work as u64;
                laps.commit(&mut s.runtime);
            }
            if work == 0 && !walking && self.idle_sleep_us > 0 {
                std::thread::sleep(Duration::from_micros(self.idle_sleep_us as u64));
            }
        }
        self.publish(true, true);
        0
    }

    /// Runs a received burst through the datapath and carries out the verdicts. `port` is the
    /// datapath port index for frames from a NIC queue, None for frames handed over by a peer (their
    /// receiving port is read from the mbuf).
    #[inline]
    fn run_burst(
        &mut self,
        batch: &mut RxBatch,
        (src, port): (Stage, Option<u16>),
        txq: &mut [TxBuffer],
        twin_txq: &mut [Option<TxBuffer>],
        laps: &mut Laps,
    ) {
        let queue = self.id;
        // Both arrays are emptied below up to `n` and never filled beyond: dropped whole, they
        // took a call a burst that tested all 32 lanes, charged to the next poll's rx stage
        // (0.55% of the worker's samples; perf/RESULTS.md, "What bounds macswap's rate; a
        // round's own work, ...").
        let mut pkts = ManuallyDrop::new(<[Option<Mbuf>; BURST]>::default());
        let mut metas = [RxMeta::NONE; BURST];
        let mut n = 0;
        for i in 0..BURST {
            batch.prefetch(i);
        }
        for m in batch.by_ref() {
            if m.is_chained() {
                self.datapath.count_drop(Drop::Chained.into());
                continue;
            }
            let meta = match port {
                Some(p) => m.rx_meta(p, queue, false),
                None => match self
                    .port_index
                    .get(usize::from(m.port()))
                    .copied()
                    .flatten()
                {
                    Some(p) => m.rx_meta(p, queue, true),
                    // Never guess: a frame whose port is not ours is dropped and counted.
                    None => {
                        self.datapath.count_drop(Drop::PeerUnknownPort.into());
                        continue;
                    }
                },
            };
            metas[n] = meta;
            pkts[n] = Some(m);
            n += 1;
        }
        if let Some(p) = port {
            // Received from the NIC: captured as it arrived, before the datapath rewrites it.
            self.tap.rx(p, pkts[..n].iter().flatten().map(Mbuf::data));
        }
        let mut out = ManuallyDrop::new(<[Option<Verdict<Mbuf>>; BURST]>::default());
        laps.lap(src, dpdk::tsc(), 0);
        let [l3, lookup, forward] = self.datapath.process_burst_timed(
            &mut pkts[..n],
            &metas[..n],
            &mut out[..n],
            dpdk::tsc,
            dpdk::prefetch,
        );
        laps.lap(Stage::L2L3, l3, n);
        laps.lap(Stage::Lookup, lookup, n);
        laps.lap(Stage::Forward, forward, n);
        for v in out.iter_mut().take(n) {
            match v.take() {
                // The common verdict here, in the loop: through `dispatch`, called once a packet
                // (too large to inline), it took a sixteenth of the worker's samples.
                Some(Verdict::Tx(port, m)) => {
                    self.datapath.count_tx(&m);
                    self.transmit(port, m, txq);
                }
                Some(v) => self.dispatch(v, txq, twin_txq),
                None => {}
            }
        }
        // A frame the datapath left in its lane (none does: each takes its frame) goes back to
        // its pool all the same.
        pkts[..n].iter_mut().for_each(|p| drop(p.take()));
        laps.lap(Stage::Tx, dpdk::tsc(), n);
    }

    /// Queues a counted frame for port `port`, captured on its way out.
    #[inline(always)]
    fn transmit(&mut self, port: u16, m: Mbuf, txq: &mut [TxBuffer]) {
        self.tap.tx(usize::from(port), m.data());
        txq[usize::from(port)].push(m)
    }

    #[inline]
    fn dispatch(
        &mut self,
        verdict: Verdict<Mbuf>,
        txq: &mut [TxBuffer],
        twin_txq: &mut [Option<TxBuffer>],
    ) {
        match self.datapath.settle(verdict) {
            Some(Verdict::Tx(port, m)) => self.transmit(port, m, txq),
            Some(Verdict::ToKernel(port, m)) => {
                match twin_txq.get_mut(port as usize).and_then(Option::as_mut) {
                    Some(t) => t.push(m),
                    None => self.datapath.count_drop(Drop::TwinTxFull.into()),
                }
            }
            Some(Verdict::ToWorker(w, m)) => {
                match self.rings_out.get(w as usize).and_then(|r| r.as_ref()) {
                    Some(ring) => {
                        let enqueued = ring.enqueue(m).is_ok();
                        self.datapath.handed_over(enqueued);
                    }
                    None => self.datapath.count_drop(Drop::NotOwner.into()),
                }
            }
            _ => {}
        }
    }

    fn housekeeping(&mut self, now_ms: u64) {
        self.read_inbox();
        self.datapath.tick(now_ms);
        self.sync
            .housekeeping(&mut self.datapath, crate::conn::Ticks(now_ms));
        let peers = &self.peers;
        let me = self.id as usize;
        self.datapath.l3.take_events(|e| {
            for (i, p) in peers.iter().enumerate() {
                if i != me {
                    let _ = p.try_send(Msg::Neigh(e));
                }
            }
        });
    }

    /// Carries out every message waiting in the inbox.
    fn read_inbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                Msg::Neigh(Event::Learned { ip, mac, port }) => {
                    self.datapath.l3.learn_from_peer(ip, mac, port)
                }
                Msg::Neigh(Event::Learned6 { ip, mac, port }) => {
                    let dp = &mut self.datapath;
                    dp.v6.learn_from_peer(&mut dp.l3, ip, mac, port)
                }
                Msg::KernelNeigh { ip, mac, port } => match ip {
                    std::net::IpAddr::V4(ip) => self.datapath.l3.learn_from_kernel(ip, mac, port),
                    std::net::IpAddr::V6(ip) => {
                        let dp = &mut self.datapath;
                        dp.v6.learn_from_kernel(&mut dp.l3, ip, mac, port)
                    }
                },
                Msg::Prepare(g) => {
                    let result = match self.datapath.fwd.prepare_services(g.services.clone()) {
                        Ok(p) => {
                            self.prepared = Some((g.clone(), p));
                            Ok(())
                        }
                        Err(e) => {
                            self.prepared = None;
                            Err(e)
                        }
                    };
                    let _ = self.acks.send(Ack {
                        worker: self.id,
                        generation: g.id,
                        phase: crate::worker::Phase::Prepare,
                        result,
                    });
                }
                Msg::Commit(id) => {
                    let result = match self.prepared.take() {
                        Some((g, p)) if g.id == id => {
                            self.datapath.commit_services(p);
                            self.datapath.l3.set_topology(g.topo.clone());
                            self.datapath.fwd.set_timeouts(g.timeouts);
                            self.datapath.v6.conns.set_timeouts(g.timeouts);
                            self.datapath.fwd.set_conn_reuse_mode(g.conn_reuse_mode);
                            Ok(())
                        }
                        _ => Err(format!("generation {id} was not prepared")),
                    };
                    let _ = self.acks.send(Ack {
                        worker: self.id,
                        generation: id,
                        phase: crate::worker::Phase::Commit,
                        result,
                    });
                }
                Msg::Abort(id) => {
                    if self.prepared.as_ref().is_some_and(|(g, _)| g.id == id) {
                        self.prepared = None;
                    }
                }
                Msg::SyncPrimary(p) => self.sync.set_primary(&mut self.datapath, p),
                Msg::SyncExportAll(generation) => self.sync.export_all(generation),
                Msg::SyncInstall { records, forwarded } => self.sync_install(records, forwarded),
                Msg::Inspect(look) => look(self.id, &self.datapath),
            }
        }
    }

    /// Installs the records this worker owns and passes the others to their owners.
    fn sync_install(&mut self, records: Vec<crate::conn::record::ConnRecord>, forwarded: bool) {
        let now = crate::conn::Ticks(self.datapath.l3.now_ms);
        let topo = self.datapath.l3.topo().clone();
        // A client's packets arrive on the port its address is reached by.
        let client_port = |r: &crate::conn::record::ConnRecord| match r.client.0 {
            std::net::IpAddr::V4(a) => topo.routes.lookup(a).map_or(0, |h| h.port),
            std::net::IpAddr::V6(a) => topo.routes6.lookup(a).map_or(0, |h| h.port),
        };
        let me = usize::from(self.id);
        let others = crate::sync::worker_side::WorkerSync::install(
            &mut self.datapath,
            me,
            records,
            forwarded,
            now,
            client_port,
        );
        for (w, records) in others {
            if let Some(p) = self.peers.get(w) {
                let _ = p.try_send(Msg::SyncInstall {
                    records,
                    forwarded: true,
                });
            }
        }
    }

    /// Copies the counters where the control plane reads them; `wait`: even if a reader holds
    /// them (at exit); `lists`: the per-key lists too, gathered afresh (else the published ones
    /// stay). Whether they were published.
    fn publish(&mut self, wait: bool, lists: bool) -> bool {
        let dp = &mut self.datapath;
        dp.fwd.stats.conns = dp.fwd.table().len() as u64;
        dp.fwd.stats.half_open = dp.fwd.table().half_open() as u64;
        dp.l3.stats.fwd = dp.fwd.stats;
        dp.l3.stats.neigh = dp.l3.neigh().counters;
        dp.l3.stats.neigh6 = dp.v6.neigh.counters;
        // Both families' fragment tables, in one set of counters.
        dp.l3.stats.frag = dp.frags.stats;
        dp.l3.stats.frag.add(&dp.v6.frags.stats);
        dp.l3.stats.synproxy = dp.fwd.synproxy_counters(dp.l3.now_ms);
        dp.l3.stats.sync = dp.fwd.sync_counters();
        let conflicts = &mut dp.l3.stats.lip_conflicts;
        conflicts.clear();
        conflicts.extend(dp.fwd.lip_conflicts());
        conflicts.sort_unstable_by_key(|a| a.0);
        if lists {
            let traffic = &mut dp.l3.stats.traffic;
            traffic.clear();
            traffic.extend(dp.fwd.traffic_entries());
            // Two runs, each in key order (the snapshot's servers, then the removed ones'): the
            // stable sort merges them in one pass.
            traffic.sort_by_key(|a| a.0);
            let acl = &mut dp.l3.stats.acl_hits;
            acl.clear();
            acl.extend(dp.fwd.acl_entries().map(|(k, h)| (k, h.to_vec())));
            acl.sort_unstable_by_key(|a| a.0);
            let limit = &mut dp.l3.stats.limit_refused;
            limit.clear();
            limit.extend(dp.fwd.limit_entries().map(|(k, r)| (k, r.to_vec())));
            limit.sort_unstable_by_key(|a| a.0);
        }
        let usage = &mut dp.l3.stats.lip_usage;
        usage.clear();
        usage.extend(dp.fwd.lip_usage());
        usage.extend(dp.v6.lip_conns.usage(dp.fwd.services()));
        usage.sort_unstable_by_key(|a| a.0);
        let guard = if wait {
            self.published.lock().ok()
        } else {
            self.published.try_lock().ok()
        };
        match guard {
            Some(mut p) if lists => {
                p.clone_from(&dp.l3.stats);
                true
            }
            Some(mut p) => {
                p.clone_counters_from(&mut dp.l3.stats);
                true
            }
            None => false,
        }
    }
}
