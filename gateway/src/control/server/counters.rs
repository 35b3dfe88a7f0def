//! The admin server's counters: the workers' published figures summed, the base of the last
//! `ipvsadm -Z` subtracted, and per-second rates from the last two one-second samples
//! (`gwctl stats`, `ipvsadm -L --stats/--rate`, `gwctl runtime`).

use super::*;

/// Counters at the last `ipvsadm -Z`, and the last two one-second samples for rates.
#[derive(Default)]
pub(super) struct Counts {
    base: Vec<WorkerView>,
    prev: Option<(Instant, WorkerView)>,
    cur: Option<(Instant, WorkerView)>,
    /// The same for the traffic per (service, real server).
    traffic_base: TrafficMap,
    traffic_prev: Option<(Instant, TrafficMap)>,
    traffic_cur: Option<(Instant, TrafficMap)>,
    /// Stage figures at the last `runtime clear`.
    runtime_base: Vec<WorkerRuntime>,
}

/// Traffic per (service, real server) summed over the workers, in key order: each worker
/// publishes its list sorted, so the sum is a merge of sorted lists, where a hash map of 200,000
/// insertions a second (two workers with 10,000 services of 10 real servers) kept an idle
/// daemon's control thread busy (perf/RESULTS.md, "Counters read without the traffic lists").
#[derive(Default)]
pub(super) struct TrafficMap(Vec<(crate::forward::TrafficKey, crate::forward::Traffic)>);

impl TrafficMap {
    fn get(&self, key: &crate::forward::TrafficKey) -> Option<&crate::forward::Traffic> {
        let i = self.0.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        Some(&self.0[i].1)
    }

    fn iter(&self) -> impl Iterator<Item = &(crate::forward::TrafficKey, crate::forward::Traffic)> {
        self.0.iter()
    }

    /// Adds a worker's list, sorted by key (a key twice in it is summed too).
    fn add_sorted(&mut self, list: &[(crate::forward::TrafficKey, crate::forward::Traffic)]) {
        let mine = std::mem::take(&mut self.0);
        let mut out: Vec<(crate::forward::TrafficKey, crate::forward::Traffic)> =
            Vec::with_capacity(mine.len().max(list.len()));
        let (mut a, mut b) = (mine.into_iter().peekable(), list.iter().copied().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 <= y.0 => a.next(),
                (_, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => break,
            };
            let Some((k, t)) = next else { break };
            match out.last_mut() {
                Some((last, sum)) if *last == k => sum.add(&t),
                _ => out.push((k, t)),
            }
        }
        self.0 = out;
    }
}

fn counters_of(t: &crate::forward::Traffic) -> Counters {
    Counters {
        conns: t.conns,
        inpkts: t.inpkts,
        outpkts: t.outpkts,
        inbytes: t.inbytes,
        outbytes: t.outbytes,
    }
}

fn sub_counters(a: &Counters, b: &Counters) -> Counters {
    Counters {
        conns: a.conns.saturating_sub(b.conns),
        inpkts: a.inpkts.saturating_sub(b.inpkts),
        outpkts: a.outpkts.saturating_sub(b.outpkts),
        inbytes: a.inbytes.saturating_sub(b.inbytes),
        outbytes: a.outbytes.saturating_sub(b.outbytes),
    }
}

fn add_counters(a: &mut Counters, b: &Counters) {
    a.conns += b.conns;
    a.inpkts += b.inpkts;
    a.outpkts += b.outpkts;
    a.inbytes += b.inbytes;
    a.outbytes += b.outbytes;
}

pub(super) fn add_rates(a: &mut Rates, b: &Rates) {
    a.cps += b.cps;
    a.inpps += b.inpps;
    a.outpps += b.outpps;
    a.inbps += b.inbps;
    a.outbps += b.outbps;
}

impl Server<'_> {
    pub(super) fn sample(&self) {
        let (_, total) = self.worker_views();
        let traffic = self.traffic_totals();
        if let Ok(mut c) = self.counts.lock() {
            c.prev = c.cur.take();
            c.cur = Some((Instant::now(), total));
            c.traffic_prev = c.traffic_cur.take();
            c.traffic_cur = Some((Instant::now(), traffic));
        }
    }

    /// Traffic per (service, real server), summed over the workers.
    pub(super) fn traffic_totals(&self) -> TrafficMap {
        let mut m = TrafficMap::default();
        for p in self.ctx.published {
            if let Ok(s) = p.lock() {
                m.add_sorted(&s.traffic);
            }
        }
        m
    }

    /// Each service's counters (since the last `-Z` if `since_zero`), by (protocol, VIP, port):
    /// every key of the service the workers publish, its present real servers', the removed
    /// ones' (`TrafficKey::retired`, which IPVS keeps in the service's counters) and those of a
    /// server just removed that a worker still holds under its own key, so that the sum never
    /// falls. One pass over the totals and the base for all services.
    pub(super) fn services_traffic(
        &self,
        totals: &TrafficMap,
        since_zero: bool,
    ) -> std::collections::HashMap<(u8, std::net::IpAddr, u16), Counters> {
        let mut by_service = std::collections::HashMap::new();
        for (k, t) in totals.iter() {
            let c: &mut Counters = by_service.entry((k.proto, k.vip, k.vport)).or_default();
            add_counters(c, &counters_of(t));
        }
        if let (true, Ok(c)) = (since_zero, self.counts.lock()) {
            for (k, t) in c.traffic_base.iter() {
                if let Some(s) = by_service.get_mut(&(k.proto, k.vip, k.vport)) {
                    *s = sub_counters(s, &counters_of(t));
                }
            }
        }
        by_service
    }

    /// Counters since the last `-Z` and the current per-second rates of one (service, real server).
    pub(super) fn traffic_of(
        &self,
        totals: &TrafficMap,
        key: &crate::forward::TrafficKey,
        since_zero: bool,
    ) -> (Counters, Rates) {
        let now = totals.get(key).map(counters_of).unwrap_or_default();
        let Ok(c) = self.counts.lock() else {
            return (now, Rates::default());
        };
        let base = match since_zero {
            true => c.traffic_base.get(key).map(counters_of).unwrap_or_default(),
            false => Counters::default(),
        };
        let rate = match (&c.traffic_prev, &c.traffic_cur) {
            (Some((t0, a)), Some((t1, b))) => {
                let dt = t1.duration_since(*t0).as_secs_f64().max(0.001);
                let a = a.get(key).map(counters_of).unwrap_or_default();
                let b = b.get(key).map(counters_of).unwrap_or_default();
                let d = sub_counters(&b, &a);
                let r = |x: u64| (x as f64 / dt).round() as u64;
                Rates {
                    cps: r(d.conns),
                    inpps: r(d.inpkts),
                    outpps: r(d.outpkts),
                    inbps: r(d.inbytes),
                    outbps: r(d.outbytes),
                }
            }
            _ => Rates::default(),
        };
        (sub_counters(&now, &base), rate)
    }

    /// Per-worker views and their total, straight from the published counters.
    fn worker_views(&self) -> (Vec<WorkerView>, WorkerView) {
        let mut total = WorkerStats::default();
        let per: Vec<WorkerView> = self
            .ctx
            .published
            .iter()
            .map(|p| {
                let s = p.lock().map(|mut s| s.without_lists()).unwrap_or_default();
                total.add(&s);
                worker_view(&s)
            })
            .collect();
        (per, worker_view(&total))
    }

    fn rate(&self) -> Rates {
        let Ok(c) = self.counts.lock() else {
            return Rates::default();
        };
        let (Some((t0, a)), Some((t1, b))) = (&c.prev, &c.cur) else {
            return Rates::default();
        };
        let dt = t1.duration_since(*t0).as_secs_f64().max(0.001);
        let d = |k: &str| {
            let x = b
                .counters
                .get(k)
                .copied()
                .unwrap_or(0)
                .saturating_sub(a.counters.get(k).copied().unwrap_or(0));
            (x as f64 / dt).round() as u64
        };
        Rates {
            cps: d("conns_created"),
            inpps: d("rx_packets"),
            outpps: d("tx_packets"),
            inbps: d("rx_bytes"),
            outbps: d("tx_bytes"),
        }
    }

    pub(super) fn stats(&self) -> Result<serde_json::Value, String> {
        let (mut per, mut total) = self.worker_views();
        if let Ok(c) = self.counts.lock() {
            for (i, w) in per.iter_mut().enumerate() {
                if let Some(b) = c.base.get(i) {
                    subtract(w, b);
                }
            }
            if !c.base.is_empty() {
                let mut bt = WorkerView::default();
                for b in &c.base {
                    for (k, v) in &b.counters {
                        *bt.counters.entry(k.clone()).or_default() += v;
                    }
                    for (k, v) in &b.drops {
                        *bt.drops.entry(k.clone()).or_default() += v;
                    }
                }
                subtract(&mut total, &bt);
            }
        }
        let report = self
            .ctx
            .report
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let ports = report
            .lines()
            .filter(|l| l.starts_with("port "))
            .map(String::from)
            .collect();
        Ok(to_json(&StatsView {
            workers: per,
            total,
            ports,
            rate: self.rate(),
        }))
    }

    /// Each worker's stage figures since the last clear; `clear` makes now the base.
    pub(super) fn runtime(&self, clear: bool) -> RuntimeView {
        let tsc_hz = self.control().map(|c| c.tsc_hz()).unwrap_or(0);
        let now: Vec<WorkerRuntime> = self
            .ctx
            .published
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let s = p.lock().map(|mut s| s.without_lists()).unwrap_or_default();
                runtime_of(i as u16, &s)
            })
            .collect();
        let Ok(mut c) = self.counts.lock() else {
            return RuntimeView::default();
        };
        let workers = if clear {
            c.runtime_base = now;
            c.runtime_base.iter().map(|w| since(w, w)).collect()
        } else {
            now.iter()
                .map(|w| match c.runtime_base.get(w.worker as usize) {
                    Some(b) => since(w, b),
                    None => w.clone(),
                })
                .collect()
        };
        RuntimeView { tsc_hz, workers }
    }

    pub(super) fn zero(&self) -> Result<serde_json::Value, String> {
        let (per, _) = self.worker_views();
        let traffic = self.traffic_totals();
        let mut c = self.counts.lock().map_err(|_| "counters poisoned")?;
        c.base = per;
        c.traffic_base = traffic;
        drop(c);
        Ok(serde_json::json!({}))
    }
}

/// `w` less `base`: the counters since the last `ipvsadm -Z`, the levels as they are.
fn subtract(w: &mut WorkerView, base: &WorkerView) {
    for (k, v) in w.counters.iter_mut() {
        if WorkerStats::LEVELS.contains(&k.as_str()) {
            continue;
        }
        *v = v.saturating_sub(base.counters.get(k).copied().unwrap_or(0));
    }
    for (k, v) in w.drops.iter_mut() {
        *v = v.saturating_sub(base.drops.get(k).copied().unwrap_or(0));
    }
    w.drops.retain(|_, v| *v > 0);
}

/// A worker's stage figures.
fn runtime_of(worker: u16, s: &WorkerStats) -> WorkerRuntime {
    WorkerRuntime {
        worker,
        busy_cycles: s.busy_cycles,
        busy_packets: s.busy_packets,
        stages: crate::stats::Stage::ALL
            .iter()
            .zip(&s.runtime)
            .map(|(st, c)| StageRow {
                stage: st.name().to_string(),
                calls: c.calls,
                packets: c.packets,
                cycles: c.cycles,
            })
            .collect(),
    }
}

/// `now` less `base`.
fn since(now: &WorkerRuntime, base: &WorkerRuntime) -> WorkerRuntime {
    WorkerRuntime {
        worker: now.worker,
        busy_cycles: now.busy_cycles.saturating_sub(base.busy_cycles),
        busy_packets: now.busy_packets.saturating_sub(base.busy_packets),
        stages: now
            .stages
            .iter()
            .zip(&base.stages)
            .map(|(a, b)| StageRow {
                stage: a.stage.clone(),
                calls: a.calls.saturating_sub(b.calls),
                packets: a.packets.saturating_sub(b.packets),
                cycles: a.cycles.saturating_sub(b.cycles),
            })
            .collect(),
    }
}

/// A worker's counters by name.
pub fn worker_view(s: &WorkerStats) -> WorkerView {
    WorkerView {
        counters: s.named().map(|(k, v)| (k.to_string(), v)).collect(),
        drops: s
            .drop_list()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(counters: &[(&str, u64)], drops: &[(&str, u64)]) -> WorkerView {
        let map = |kv: &[(&str, u64)]| kv.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        WorkerView {
            counters: map(counters),
            drops: map(drops),
        }
    }

    /// After `ipvsadm -Z` the totals count from zero, but the connections a worker holds are
    /// still held: 130,000 UDP entries read 10 after a zero, before levels were kept.
    #[test]
    fn zeroing_keeps_the_levels() {
        let base = view(
            &[("conns", 130_000), ("half_open", 40), ("rx_packets", 900)],
            &[("no_conn", 7)],
        );
        let mut now = view(
            &[("conns", 130_010), ("half_open", 3), ("rx_packets", 1_000)],
            &[("no_conn", 9), ("no_route", 1)],
        );
        subtract(&mut now, &base);
        assert_eq!(
            now,
            view(
                &[("conns", 130_010), ("half_open", 3), ("rx_packets", 100)],
                &[("no_conn", 2), ("no_route", 1)],
            )
        );
    }

    /// The workers' sorted lists merge into one sorted sum: keys of one worker only kept, keys of
    /// both summed, a key twice in one list summed, every key found.
    #[test]
    fn traffic_lists_merge_into_one_sorted_sum() {
        let key = |rs: u8| crate::forward::TrafficKey {
            proto: 6,
            vip: std::net::Ipv4Addr::new(10, 0, 0, 1).into(),
            vport: 80,
            rip: std::net::Ipv4Addr::new(10, 1, 0, rs).into(),
            rport: 80,
        };
        let t = |conns: u64| crate::forward::Traffic {
            conns,
            ..Default::default()
        };
        let mut m = TrafficMap::default();
        m.add_sorted(&[(key(1), t(1)), (key(3), t(3)), (key(5), t(5))]);
        m.add_sorted(&[
            (key(2), t(20)),
            (key(3), t(30)),
            (key(3), t(300)),
            (key(9), t(90)),
        ]);
        let got: Vec<(u8, u64)> = m
            .iter()
            .map(|(k, t)| {
                (
                    k.rip
                        .to_string()
                        .rsplit('.')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap(),
                    t.conns,
                )
            })
            .collect();
        assert_eq!(got, vec![(1, 1), (2, 20), (3, 333), (5, 5), (9, 90)]);
        assert_eq!(m.get(&key(3)).map(|t| t.conns), Some(333));
        assert_eq!(m.get(&key(9)).map(|t| t.conns), Some(90));
        assert!(m.get(&key(4)).is_none());
    }
}
