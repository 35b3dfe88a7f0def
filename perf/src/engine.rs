//! The generator lcore: one poll loop that plays the clients on one port and the real servers on the
//! other. Each round it (1) reflects what arrived on the server port, (2) handles what came back on
//! the client port (SYN-ACK -> ACK, echo -> latency), (3) generates new client frames as the rate
//! allows, (4) flushes. Phases: ARP (learn the gateway's MACs, let it learn ours), open (TCP
//! handshakes for every flow, with retries for the ones that did not complete), warm-up, measure,
//! drain. Every phase is bounded in time; counters go to [`Progress`] about once a millisecond.
//!
//! With [`GenConfig::v6`] the clients and the real servers speak IPv6 to an IPv6 VIP: the MACs are
//! still learnt by ARP (the gateway's ports have IPv4 addresses too), the gateway learns ours from
//! neighbour solicitations sent beside the ARP requests, and both sides answer its solicitations.

use crate::flows::{FlowSet, FlowSpace, StrideWalk};
use crate::frame::{self, ClientRx, Endpoints, Kind, Template, V6Endpoints};
use crate::latency::Latency;
use crate::reflect::{reflect, Reflect};
use crate::report::{DataResult, OpenResult, Progress, ReflectorResult, RunResult};
use crate::rss::QueueChooser;
use gateway::dpdk::{tsc, Mbuf, Mempool, RxBatch, TxBuffer, BURST};
use gateway::wire::{arp, EtherType, EthernetFrame, MacAddr};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Flat out: frames unanswered for this long are written off as lost (longer than any queueing
/// delay two 1024-slot rings can add at a fraction of a Mpps).
const WRITE_OFF: Duration = Duration::from_millis(20);

/// What the generator does.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub udp: bool,
    pub flows: FlowSpace,
    /// Frame size without FCS (60 = a 64-byte frame).
    pub size: usize,
    /// Client frames per second in the data phase; None = as fast as the wire takes them.
    pub rate_pps: Option<f64>,
    /// SYNs per second in the open phase; None = flat out.
    pub open_rate: Option<f64>,
    pub open_timeout: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub queues: u16,
    pub reta_size: usize,
    pub vip: Ipv4Addr,
    pub vport: u16,
    /// Our address on the client side (the clients' router) and the gateway's.
    pub client_ip: Ipv4Addr,
    pub gw_client_ip: Ipv4Addr,
    /// The gateway's address on the server side, and the real servers we answer for.
    pub gw_server_ip: Ipv4Addr,
    pub real_servers: Vec<Ipv4Addr>,
    /// Known gateway MACs (e.g. testpmd in its place): no ARP phase.
    pub gw_macs: Option<(MacAddr, MacAddr)>,
    /// Flat out: most client frames in flight (sent, not echoed) before generation pauses.
    pub window: u64,
    pub tsc_hz: u64,
    /// A SYN flood during the data phase: SYNs per second from random spoofed sources in
    /// `flood_base`/16 (their SYN-ACKs come back to us and are counted, never answered).
    pub syn_flood_pps: Option<f64>,
    pub flood_base: Ipv4Addr,
    /// IPv6 clients and real servers (one queue only: the generator plays the IPv4 RSS only).
    pub v6: Option<GenV6>,
}

/// The IPv6 side of a run: the VIP, the clients' /96 (a flow's 32-bit address fills the last 32
/// bits), our addresses and the gateway's on both sides, the real servers we answer for.
#[derive(Debug, Clone)]
pub struct GenV6 {
    pub vip: Ipv6Addr,
    pub client_prefix: Ipv6Addr,
    pub client_ip: Ipv6Addr,
    pub gw_client_ip: Ipv6Addr,
    pub gw_server_ip: Ipv6Addr,
    pub real_servers: Vec<Ipv6Addr>,
}

/// The ports and pool the lcore uses.
pub struct GenPorts {
    pub client: u16,
    pub server: u16,
    pub client_mac: MacAddr,
    pub server_mac: MacAddr,
    pub pool: Arc<Mempool>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Arp = 0,
    Open = 1,
    Warmup = 2,
    Measure = 3,
    Drain = 4,
}

/// Plain per-run counters (the lcore's own; published to `Progress`).
#[derive(Default)]
struct Counts {
    tx: u64,
    tx_dropped: u64,
    rx_echo: u64,
    syn_sent: u64,
    reflected: u64,
    refl_rx: u64,
    refl_consumed: u64,
    arp_server: u64,
    arp_client: u64,
    /// Spoofed SYNs sent, and SYN-ACKs that came back for them (while measuring).
    flood_sent: u64,
    flood_synacks: u64,
}

struct Gen<'a> {
    cfg: &'a GenConfig,
    ports: &'a GenPorts,
    chooser: QueueChooser,
    ctx: Vec<TxBuffer>,
    stx: Vec<TxBuffer>,
    batch: RxBatch,
    c: Counts,
    established: FlowSet,
    lat: Latency,
    hs_lat: Latency,
    gw_client_mac: Option<MacAddr>,
    gw_server_mac: Option<MacAddr>,
    first_pass_last: u64,
    first_pass: bool,
    measuring: bool,
    /// Echoes received in any phase, and frames written off as lost (flat-out window accounting).
    echo_total: u64,
    synack_total: u64,
    /// Send counter of the last data frame, and the newest one echoed back.
    seq_sent: u32,
    seq_echoed: u32,
    /// Highest flow index whose SYN-ACK came back in the first pass.
    newest_acked: u32,
}

/// Runs the whole generator on the calling lcore; `stop` ends it early (results so far).
pub fn run(cfg: &GenConfig, ports: &GenPorts, progress: &Progress, stop: &AtomicBool) -> RunResult {
    if cfg.v6.is_some() && cfg.queues > 1 {
        return RunResult {
            error: Some("IPv6 runs use one queue: the generator plays RSS for IPv4 only".into()),
            ..Default::default()
        };
    }
    let chooser = match QueueChooser::new(cfg.queues, cfg.reta_size) {
        Ok(c) => c,
        Err(e) => {
            return RunResult {
                error: Some(e),
                ..Default::default()
            }
        }
    };
    let mut g = Gen {
        cfg,
        ports,
        chooser,
        ctx: (0..cfg.queues)
            .map(|q| TxBuffer::new(ports.client, q))
            .collect(),
        stx: (0..cfg.queues)
            .map(|q| TxBuffer::new(ports.server, q))
            .collect(),
        batch: RxBatch::default(),
        c: Counts::default(),
        established: FlowSet::new(if cfg.udp { 0 } else { cfg.flows.count }),
        lat: Latency::new(),
        hs_lat: Latency::new(),
        gw_client_mac: cfg.gw_macs.map(|m| m.0),
        gw_server_mac: cfg.gw_macs.map(|m| m.1),
        first_pass_last: 0,
        first_pass: true,
        measuring: false,
        echo_total: 0,
        synack_total: 0,
        seq_sent: 0,
        seq_echoed: 0,
        newest_acked: 0,
    };
    let mut res = RunResult {
        mode: if cfg.udp { "udp" } else { "tcp" }.into(),
        flows: cfg.flows.count,
        ip_version: if cfg.v6.is_some() { 6 } else { 4 },
        queues: cfg.queues,
        rate_target_pps: cfg.rate_pps.unwrap_or(0.0),
        tsc_hz: cfg.tsc_hz,
        ..Default::default()
    };
    if let Err(e) = g.arp_phase(progress, stop) {
        res.error = Some(e);
    }
    if res.error.is_none() && !cfg.udp {
        res.open = Some(g.open_phase(progress, stop));
    }
    if res.error.is_none() {
        let (d, size) = g.data_phase(progress, stop);
        res.data = d;
        res.frame_size = size;
    }
    res.reflector = ReflectorResult {
        rx: g.c.refl_rx,
        tx: g.c.reflected,
        consumed: g.c.refl_consumed,
        arp_answered: g.c.arp_server,
    };
    res.client_arp_answered = g.c.arp_client;
    g.publish(progress, Phase::Drain);
    res
}

impl Gen<'_> {
    fn ticks(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * self.cfg.tsc_hz as f64) as u64
    }

    fn publish(&self, p: &Progress, phase: Phase) {
        let s = |a: &std::sync::atomic::AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        s(&p.phase, phase as u64);
        s(&p.tx, self.c.tx);
        s(&p.tx_dropped, self.c.tx_dropped);
        s(&p.rx_echo, self.c.rx_echo);
        s(&p.established, self.established.len() as u64);
        s(&p.reflected, self.c.reflected);
    }

    fn flush(&mut self) {
        for t in self.ctx.iter_mut().chain(self.stx.iter_mut()) {
            t.flush();
        }
    }

    /// Dropped by full tx queues so far (client side), counted into `c.tx_dropped`.
    fn client_tx_dropped(&self) -> u64 {
        self.ctx.iter().map(|t| t.dropped).sum()
    }

    /// One round of receiving on both ports. Returns frames received.
    #[inline]
    fn poll(&mut self) -> usize {
        let mut n = 0;
        for q in 0..self.cfg.queues {
            n += self.poll_server(q);
            n += self.poll_client(q);
        }
        n
    }

    #[inline]
    fn poll_server(&mut self, q: u16) -> usize {
        let n = self.batch.rx(self.ports.server, q);
        if n == 0 {
            return 0;
        }
        self.c.refl_rx += n as u64;
        let mut batch = std::mem::take(&mut self.batch);
        for mut m in batch.by_ref() {
            if is_arp(m.data()) {
                if answer_arp(&mut m, self.ports.server_mac, Some(self.cfg.gw_server_ip)) {
                    self.c.arp_server += 1;
                    self.stx[0].push(m);
                } else {
                    self.learn_server(m.data());
                }
                continue;
            }
            if let Some(v6) = &self.cfg.v6 {
                let gw = Some(v6.gw_server_ip);
                if let Some(len) = frame::answer_ns(m.data_mut(), self.ports.server_mac, gw) {
                    if m.set_len(len) {
                        self.c.arp_server += 1;
                        self.stx[0].push(m);
                    }
                    continue;
                }
            }
            match reflect(m.data_mut()) {
                Reflect::Tx(len) => {
                    if m.set_len(len) {
                        let q = self.reply_queue(m.data());
                        self.c.reflected += 1;
                        self.stx[q].push(m);
                    }
                }
                Reflect::Drop => self.c.refl_consumed += 1,
            }
        }
        self.batch = batch;
        n
    }

    fn learn_server(&mut self, f: &[u8]) {
        if let Some(p) = f.get(gateway::wire::ethernet::HEADER_LEN..) {
            if let ClientRx::ArpReply { sender, mac } = frame::classify_arp(p) {
                if sender == self.cfg.gw_server_ip {
                    self.gw_server_mac = Some(mac);
                }
            }
        }
    }

    /// The queue a NIC would deliver a reflected frame on (its tuple's Toeplitz hash).
    #[inline]
    fn reply_queue(&self, f: &[u8]) -> usize {
        if self.cfg.queues <= 1 {
            return 0;
        }
        match tuple_of(f) {
            Some((s, d, sp, dp)) => self.chooser.queue(s, d, sp, dp) as usize,
            None => 0,
        }
    }

    #[inline]
    fn poll_client(&mut self, q: u16) -> usize {
        let n = self.batch.rx(self.ports.client, q);
        if n == 0 {
            return 0;
        }
        let now = tsc();
        let mut batch = std::mem::take(&mut self.batch);
        for mut m in batch.by_ref() {
            match frame::classify_client(m.data()) {
                ClientRx::Echo { stamp, seq, .. } => {
                    self.echo_total += 1;
                    // Newest counter echoed (wrapping compare): everything older is answered or lost.
                    if (seq.wrapping_sub(self.seq_echoed) as i32) > 0 {
                        self.seq_echoed = seq;
                    }
                    if self.measuring {
                        self.c.rx_echo += 1;
                        self.lat.record(
                            (now & 0xFFFF_FFFF_FFFF).wrapping_sub(stamp) & 0xFFFF_FFFF_FFFF,
                        );
                    }
                }
                ClientRx::SynAck {
                    ip,
                    port,
                    isn_stamp,
                } => {
                    self.synack_total += 1;
                    let Some(i) = self.cfg.flows.index(ip, port) else {
                        // An answer to a spoofed SYN: a flood's source never completes it.
                        if self.measuring {
                            self.c.flood_synacks += 1;
                        }
                        continue;
                    };
                    if i >= self.newest_acked && self.first_pass {
                        self.newest_acked = i;
                    }
                    if self.established.insert(i) {
                        self.hs_lat
                            .record((now as u32).wrapping_sub(isn_stamp) as u64);
                        if self.first_pass {
                            self.first_pass_last = now;
                        }
                    }
                    if let Some(len) = frame::syn_ack_to_ack(m.data_mut()) {
                        if m.set_len(len) {
                            let qq = self.client_queue(ip, port);
                            self.ctx[qq].push(m);
                        }
                    }
                }
                ClientRx::ArpRequest { target }
                    if target != self.cfg.gw_client_ip
                        && answer_arp(&mut m, self.ports.client_mac, None) =>
                {
                    self.c.arp_client += 1;
                    self.ctx[0].push(m);
                }
                ClientRx::ArpReply { sender, mac } if sender == self.cfg.gw_client_ip => {
                    self.gw_client_mac = Some(mac);
                }
                ClientRx::NdSolicit { .. } => {
                    let gw = self.cfg.v6.as_ref().map(|v| v.gw_client_ip);
                    if let Some(len) = frame::answer_ns(m.data_mut(), self.ports.client_mac, gw) {
                        if m.set_len(len) {
                            self.c.arp_client += 1;
                            self.ctx[0].push(m);
                        }
                    }
                }
                _ => {}
            }
        }
        self.batch = batch;
        n
    }

    /// (Only IPv4 is spread: an IPv6 run has one queue, `run` refuses more.)
    #[inline]
    fn client_queue(&self, ip: Ipv4Addr, port: u16) -> usize {
        if self.cfg.queues <= 1 {
            return 0;
        }
        self.chooser.queue(ip, self.cfg.vip, port, self.cfg.vport) as usize
    }

    /// Learns the gateway's MACs by ARP (and so lets it learn ours and every real server's).
    fn arp_phase(&mut self, progress: &Progress, stop: &AtomicBool) -> Result<(), String> {
        let deadline = tsc() + self.ticks(Duration::from_secs(10));
        let every = self.ticks(Duration::from_millis(100));
        let mut next = 0;
        while self.gw_client_mac.is_none() || self.gw_server_mac.is_none() {
            let now = tsc();
            if now > deadline || stop.load(Ordering::Relaxed) {
                return Err(format!(
                    "no ARP reply from the gateway (client side {}, server side {})",
                    self.gw_client_mac.is_some(),
                    self.gw_server_mac.is_some()
                ));
            }
            if now >= next {
                next = now + every;
                self.send_arp(true, self.cfg.client_ip, self.cfg.gw_client_ip);
                for rs in self.cfg.real_servers.clone() {
                    self.send_arp(false, rs, self.cfg.gw_server_ip);
                }
                self.send_ns();
                self.publish(progress, Phase::Arp);
            }
            self.poll();
            self.flush();
        }
        self.send_ns();
        // Announce every real server once more and let the gateway settle its neighbour table.
        let settle = tsc() + self.ticks(Duration::from_millis(100));
        while tsc() < settle {
            self.poll();
            self.flush();
        }
        Ok(())
    }

    /// IPv6: solicits the gateway's addresses from our client-side address and from every real
    /// server, so that it learns them (RFC 4861 7.2.3) before the first packet.
    fn send_ns(&mut self) {
        let Some(v6) = self.cfg.v6.clone() else {
            return;
        };
        let client = std::iter::once((true, v6.client_ip, v6.gw_client_ip));
        let servers = v6
            .real_servers
            .iter()
            .map(|&rs| (false, rs, v6.gw_server_ip));
        for (client, src, target) in client.chain(servers) {
            self.send_control(client, |f, mac| frame::write_ns(f, mac, src, target));
        }
    }

    fn send_arp(&mut self, client: bool, src: Ipv4Addr, target: Ipv4Addr) {
        self.send_control(client, |f, mac| {
            arp::write_request(f, mac, src, target)
                .ok()
                .map(|_| gateway::wire::ethernet::MIN_FRAME_LEN)
        });
    }

    /// Sends a frame `write` builds (into 128 bytes, with our MAC on that side; it returns the
    /// frame's length) on the client or the server port's first queue.
    fn send_control(
        &mut self,
        client: bool,
        write: impl FnOnce(&mut [u8], MacAddr) -> Option<usize>,
    ) {
        let mac = if client {
            self.ports.client_mac
        } else {
            self.ports.server_mac
        };
        let Some(mut m) = self.ports.pool.alloc() else {
            return;
        };
        if !m.set_len(128) {
            return;
        }
        match write(m.data_mut(), mac) {
            Some(len) if m.set_len(len) => {
                if client {
                    self.ctx[0].push(m);
                } else {
                    self.stx[0].push(m);
                }
            }
            _ => {}
        }
    }

    fn endpoints(&self) -> Endpoints {
        Endpoints {
            src_mac: self.ports.client_mac,
            dst_mac: self.gw_client_mac.unwrap_or(MacAddr::BROADCAST),
            vip: self.cfg.vip,
            vport: self.cfg.vport,
            v6: self.cfg.v6.as_ref().map(|v| V6Endpoints {
                vip: v.vip,
                client_prefix: v.client_prefix,
            }),
        }
    }

    /// Opens every flow: SYNs (rate-limited or flat out), the ACKs follow from `poll_client`.
    fn open_phase(&mut self, progress: &Progress, stop: &AtomicBool) -> OpenResult {
        let tpl = Template::new(Kind::Syn, &self.endpoints(), 0);
        let count = self.cfg.flows.count;
        let start = tsc();
        let deadline = start + self.ticks(self.cfg.open_timeout);
        let gap = self
            .cfg
            .open_rate
            .map(|r| (self.cfg.tsc_hz as f64 / r.max(1.0)) as u64);
        let mut res = OpenResult {
            flows: count,
            ..Default::default()
        };
        let mut next_pub = 0;
        let settle = self.ticks(Duration::from_millis(300));
        let (mut lost, mut last_ack, mut written_off) = (0u64, (0u64, start), 0u32);
        let write_off = self.ticks(WRITE_OFF);
        'passes: for pass in 0..4 {
            res.passes = pass + 1;
            self.first_pass = pass == 0;
            let mut i = 0u32;
            let mut next_send = tsc();
            while i < count {
                let now = tsc();
                if now > deadline || stop.load(Ordering::Relaxed) {
                    break 'passes;
                }
                self.poll();
                let dropped_before = self.client_tx_dropped();
                // Flat out: at most `window` SYNs unanswered (written off after a millisecond).
                let mut budget = BURST;
                if gap.is_none() {
                    // First pass: SYNs go out in flow order, so the flows past the newest
                    // SYN-ACK are the ones in flight. Later passes: SYNs not yet answered.
                    let inflight = if pass == 0 {
                        u64::from(i.saturating_sub(self.newest_acked.max(written_off)))
                    } else {
                        let ok = self.c.syn_sent;
                        ok.saturating_sub(self.synack_total + lost)
                    };
                    if self.synack_total != last_ack.0 {
                        last_ack = (self.synack_total, now);
                    } else if now - last_ack.1 > write_off {
                        lost += inflight;
                        written_off = i;
                        last_ack.1 = now;
                    }
                    // Half the window: each SYN-ACK brings an ACK that shares the ring with SYNs.
                    budget = ((self.cfg.window / 2).saturating_sub(inflight) as usize).min(BURST);
                }
                let mut sent = 0;
                while sent < budget && i < count {
                    if let Some(g) = gap {
                        if now < next_send {
                            break;
                        }
                        next_send = next_send.max(now - 1000 * g) + g;
                    }
                    if !self.established.contains(i) {
                        let (ip, port) = self.cfg.flows.tuple(i);
                        if let Some(m) = build(&self.ports.pool, &tpl, ip, port, now, 0) {
                            let q = self.client_queue(ip, port);
                            self.ctx[q].push(m);
                            self.c.syn_sent += 1;
                            sent += 1;
                        }
                    }
                    i += 1;
                }
                self.flush();
                // SYNs the full wire refused are simply not answered: the next pass resends them.
                self.c.syn_sent = self
                    .c
                    .syn_sent
                    .saturating_sub(self.client_tx_dropped() - dropped_before);
                if now >= next_pub {
                    next_pub = now + self.cfg.tsc_hz / 1000;
                    self.publish(progress, Phase::Open);
                }
            }
            // Wait for the last SYN-ACKs of this pass.
            let end = tsc() + settle;
            while tsc() < end && self.established.len() < count {
                self.poll();
                self.flush();
            }
            if pass == 0 {
                let secs =
                    (self.first_pass_last.saturating_sub(start)) as f64 / self.cfg.tsc_hz as f64;
                res.seconds = secs;
                res.cps = if secs > 0.0 {
                    self.established.len() as f64 / secs
                } else {
                    0.0
                };
            }
            if self.established.len() >= count {
                break;
            }
        }
        if res.seconds == 0.0 {
            // The first pass never finished (open timeout): rate over what it did establish.
            let secs = (self.first_pass_last.saturating_sub(start)) as f64 / self.cfg.tsc_hz as f64;
            res.seconds = secs;
            res.cps = if secs > 0.0 {
                self.established.len() as f64 / secs
            } else {
                0.0
            };
        }
        self.first_pass = false;
        res.syn_sent = self.c.syn_sent;
        res.established = self.established.len();
        res.handshake_latency = self.hs_lat.summary(self.cfg.tsc_hz);
        self.publish(progress, Phase::Open);
        res
    }

    /// Data over the flows: warm-up (not counted), then measure, then drain.
    fn data_phase(&mut self, progress: &Progress, stop: &AtomicBool) -> (DataResult, usize) {
        let kind = if self.cfg.udp {
            Kind::Udp
        } else {
            Kind::TcpData
        };
        let tpl = Template::new(kind, &self.endpoints(), self.cfg.size);
        let mut walk = StrideWalk::new(self.cfg.flows.count);
        let hz = self.cfg.tsc_hz;
        let gap = self.cfg.rate_pps.map(|r| (hz as f64 / r.max(1.0)).max(1.0));
        let t0 = tsc();
        let measure_at = t0 + self.ticks(self.cfg.warmup);
        let end_at = measure_at + self.ticks(self.cfg.duration);
        let mut phase = Phase::Warmup;
        let mut next_pub = 0;
        // Fractional ticks for exact low rates.
        let mut next_send = t0 as f64;
        // Flat out is closed-loop: at most `window` frames in flight, so the generator never
        // wastes its core on frames the far side cannot take; frames unanswered for a millisecond
        // are written off as lost.
        let mut last_echo = (0u64, t0);
        let write_off = self.ticks(WRITE_OFF);
        let partial = !self.cfg.udp && self.established.len() < self.cfg.flows.count;
        let (mut tx0, mut drop0) = (0, 0);
        let mut start = t0;
        let syn_tpl = Template::new(Kind::Syn, &self.endpoints(), 0);
        let flood_gap = self.cfg.syn_flood_pps.map(|r| hz as f64 / r.max(1.0));
        let mut next_flood = t0 as f64;
        let mut rnd: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut flood0 = 0;
        loop {
            let now = tsc();
            if phase == Phase::Warmup && now >= measure_at {
                phase = Phase::Measure;
                self.measuring = true;
                self.lat.clear();
                (tx0, drop0, start) = (self.c.tx, self.client_tx_dropped(), now);
                self.c.rx_echo = 0;
                self.c.flood_synacks = 0;
                flood0 = self.c.flood_sent;
            }
            if let Some(g) = flood_gap {
                let due = ((now as f64 - next_flood) / g).floor();
                if due >= 1.0 {
                    let n = (due as usize).min(BURST);
                    next_flood = next_flood.max(now as f64 - hz as f64 / 1000.0) + n as f64 * g;
                    for _ in 0..n {
                        // xorshift64: a spoofed source address and port per SYN.
                        rnd ^= rnd << 13;
                        rnd ^= rnd >> 7;
                        rnd ^= rnd << 17;
                        let ip =
                            Ipv4Addr::from(u32::from(self.cfg.flood_base) | (rnd as u32 & 0xFFFF));
                        let port = 1024 + ((rnd >> 32) % 60000) as u16;
                        let Some(m) = build(&self.ports.pool, &syn_tpl, ip, port, now, 0) else {
                            break;
                        };
                        let q = self.client_queue(ip, port);
                        self.ctx[q].push(m);
                        self.c.flood_sent += 1;
                    }
                }
            }
            if now >= end_at || stop.load(Ordering::Relaxed) {
                break;
            }
            self.poll();
            let n;
            if let Some(g) = gap {
                let due = ((now as f64 - next_send) / g).floor();
                if due < 1.0 {
                    n = 0;
                } else {
                    // Never catch up more than a millisecond of backlog at once.
                    let due = due.min(hz as f64 / 1000.0 / g + 1.0);
                    n = (due as usize).min(BURST);
                    next_send = next_send.max(now as f64 - hz as f64 / 1000.0) + n as f64 * g;
                }
            } else {
                // In flight: frames sent after the newest one echoed (older unanswered ones are
                // lost, not in flight). Nothing echoed for a while: write everything off.
                let inflight = u64::from(self.seq_sent.wrapping_sub(self.seq_echoed));
                if self.echo_total != last_echo.0 {
                    last_echo = (self.echo_total, now);
                } else if now - last_echo.1 > write_off {
                    self.seq_echoed = self.seq_sent;
                    last_echo.1 = now;
                }
                n = (self.cfg.window.saturating_sub(inflight) as usize).min(BURST);
            }
            if n > 0 {
                for _ in 0..n {
                    let mut i = walk.next_index();
                    // Only established connections carry data (a few tries, then send anyway: the
                    // gateway counts it as a drop, which the loss ratio shows).
                    for _ in 0..4 {
                        if partial && !self.established.contains(i) {
                            i = walk.next_index();
                        }
                    }
                    let (ip, port) = self.cfg.flows.tuple(i);
                    self.seq_sent = self.seq_sent.wrapping_add(1);
                    let Some(m) = build(&self.ports.pool, &tpl, ip, port, now, self.seq_sent)
                    else {
                        break;
                    };
                    let q = self.client_queue(ip, port);
                    self.ctx[q].push(m);
                    self.c.tx += 1;
                }
                self.flush();
            } else {
                self.flush();
            }
            if now >= next_pub {
                next_pub = now + hz / 1000;
                self.c.tx_dropped = self.client_tx_dropped();
                self.publish(progress, phase);
            }
        }
        let stop_at = tsc();
        self.measuring = false;
        let secs = stop_at.saturating_sub(start) as f64 / hz as f64;
        let rx = self.c.rx_echo;
        let lat = self.lat.summary(hz);
        // Drain: late echoes are not counted, but the wire is left empty for the next run.
        self.measuring = false;
        let drain = tsc() + self.ticks(Duration::from_millis(100));
        while tsc() < drain {
            self.poll();
            self.flush();
        }
        self.c.tx_dropped = self.client_tx_dropped();
        let tx = self.c.tx - tx0;
        let dropped = self.c.tx_dropped - drop0;
        let sent = tx.saturating_sub(dropped);
        let flood_sent = self.c.flood_sent - flood0;
        let d = DataResult {
            flood_sent,
            flood_synacks: self.c.flood_synacks,
            flood_synack_pps: self.c.flood_synacks as f64 / secs.max(1e-9),
            seconds: secs,
            tx_packets: sent,
            tx_dropped: dropped,
            rx_packets: rx,
            tx_pps: sent as f64 / secs.max(1e-9),
            rx_pps: rx as f64 / secs.max(1e-9),
            dut_pps: 2.0 * rx as f64 / secs.max(1e-9),
            loss_ratio: if sent > 0 {
                1.0 - (rx as f64 / sent as f64).min(1.0)
            } else {
                0.0
            },
            latency: lat,
        };
        (d, tpl.len())
    }
}

/// A fresh mbuf holding the template's frame for `ip:port`, stamped `now`.
#[inline]
fn build(
    pool: &Mempool,
    tpl: &Template,
    ip: Ipv4Addr,
    port: u16,
    now: u64,
    seq: u32,
) -> Option<Mbuf> {
    let mut m = pool.alloc()?;
    if !m.set_len(tpl.len()) {
        return None;
    }
    tpl.write(m.data_mut(), ip, port, now, seq);
    Some(m)
}

fn is_arp(f: &[u8]) -> bool {
    EthernetFrame::new_checked(f).is_ok_and(|e| e.ethertype() == EtherType::ARP)
}

/// Answers an ARP request in place with `mac`, unless it asks for `not_for` (the gateway's own
/// address) or is gratuitous.
fn answer_arp(m: &mut Mbuf, mac: MacAddr, not_for: Option<Ipv4Addr>) -> bool {
    let Some(p) = m.data().get(gateway::wire::ethernet::HEADER_LEN..) else {
        return false;
    };
    match frame::classify_arp(p) {
        ClientRx::ArpRequest { target } if Some(target) != not_for => {
            arp::make_reply_in_place(m.data_mut(), mac).is_ok()
        }
        _ => false,
    }
}

/// Source, destination, ports of an IPv4 TCP/UDP frame without IP options.
fn tuple_of(f: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u16, u16)> {
    let ip = f.get(frame::L3 + 12..frame::L3 + 20)?;
    let p = f.get(frame::L4..frame::L4 + 4)?;
    Some((
        Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
        Ipv4Addr::new(ip[4], ip[5], ip[6], ip[7]),
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_of_reads_addresses_and_ports() {
        let ep = Endpoints {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            vip: Ipv4Addr::new(10, 10, 0, 100),
            vport: 80,
            v6: None,
        };
        let mut f = [0u8; 128];
        let n = Template::new(Kind::TcpData, &ep, 0).write(
            &mut f,
            Ipv4Addr::new(198, 18, 0, 7),
            1234,
            5,
            0,
        );
        assert_eq!(
            tuple_of(&f[..n]),
            Some((Ipv4Addr::new(198, 18, 0, 7), ep.vip, 1234, 80))
        );
        assert_eq!(tuple_of(&f[..20]), None);
    }
}
