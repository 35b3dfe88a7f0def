//! The admin server's request handlers: each protocol operation (`proto::Op`) against the
//! control plane (`commit::Control`) and the workers' published state.

use super::counters::add_rates;
use super::*;

impl Server<'_> {
    /// `Op::Sync`: the sync thread's status (after setting its mode, if asked) and the workers'
    /// sync counters summed.
    pub(super) fn sync(&self, role: Option<&str>) -> Result<serde_json::Value, String> {
        let status = {
            let c = self.control()?;
            let h = c.sync.as_ref().ok_or(
                "connection sync is not configured: add a [sync] section (peer, key) to the \
                 config and restart",
            )?;
            match role {
                Some(r) => h.set_mode_wait(r.parse()?),
                None => h.status(),
            }
        };
        let mut workers = crate::counters::SyncCounters::default();
        for p in self.ctx.published {
            if let Ok(s) = p.lock() {
                workers.add(&s.sync);
            }
        }
        let named: serde_json::Map<String, serde_json::Value> = workers
            .named()
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        Ok(serde_json::json!({ "status": status, "workers": named }))
    }

    pub(super) fn status(&self) -> Result<serde_json::Value, String> {
        let g = self.current()?;
        Ok(to_json(&StatusView {
            version: env!("CARGO_PKG_VERSION").into(),
            protocol: proto::VERSION,
            generation: g.id,
            workers: self.workers.len(),
            services: g.services.services.len(),
            reals: g.services.services.iter().map(|s| s.svc.len()).sum(),
        }))
    }

    /// The services with their real servers and counters (`ipvsadm -L`), written straight from
    /// the view (`proto::write_ok_line`).
    pub(super) fn list_to(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        match self.list_view(true) {
            Ok(view) => proto::write_ok_line(w, &view),
            Err(e) => proto::write_line(w, &Response::err(e)),
        }
    }

    /// The services with their real servers and counters: since the last `-Z` (`since_zero`) or
    /// since the start (Prometheus counters only go up).
    fn list_view(&self, since_zero: bool) -> Result<ListView, String> {
        let (g, now) = {
            let ctl = self.control()?;
            (ctl.current().clone(), ctl.now_ms())
        };
        let totals = self.traffic_totals();
        let svc_traffic = self.services_traffic(&totals, since_zero);
        let mut conflicts = std::collections::HashMap::new();
        for p in self.ctx.published {
            if let Ok(s) = p.lock() {
                for (k, n) in &s.lip_conflicts {
                    *conflicts.entry(*k).or_insert(0u64) += n;
                }
            }
        }
        let mut acl_hits = crate::stats::SvcCounts::new();
        let mut limit_refused = crate::stats::SvcCounts::new();
        for p in self.ctx.published {
            if let Ok(s) = p.lock() {
                crate::stats::merge_svc_counts(&mut acl_hits, &s.acl_hits);
                crate::stats::merge_svc_counts(&mut limit_refused, &s.limit_refused);
            }
        }
        let model = Model::from_table(&g.services);
        let services = g
            .services
            .services
            .iter()
            .zip(model.services)
            .map(|(vs, e)| {
                let persist = vs
                    .svc
                    .persist_table()
                    .map(|t| t.count_by_rs(now))
                    .unwrap_or_default();
                let reals = e
                    .reals
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let st = vs.svc.stats(i);
                        let (stats, rate) = vs
                            .svc
                            .reals()
                            .get(i)
                            .map(|rs| {
                                let c = vs.svc.config();
                                let proto = c.proto.number();
                                let key = crate::forward::TrafficKey {
                                    proto,
                                    vip: c.vip,
                                    vport: c.vport,
                                    rip: rs.addr,
                                    rport: rs.port,
                                };
                                self.traffic_of(&totals, &key, since_zero)
                            })
                            .unwrap_or_default();
                        RealView {
                            stats,
                            rate,
                            addr: r
                                .address
                                .parse()
                                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
                            port: r.port.unwrap_or(e.port),
                            weight: r.weight,
                            mode: r.mode.clone(),
                            upper: r.upper,
                            lower: r.lower,
                            active: st.map_or(0, |s| s.active()),
                            inactive: st.map_or(0, |s| s.inactive()),
                            persist_conns: vs
                                .svc
                                .key(i)
                                .and_then(|k| persist.get(&k).copied())
                                .unwrap_or(0),
                        }
                    })
                    .collect::<Vec<RealView>>();
                let mut rate = Rates::default();
                for r in &reals {
                    add_rates(&mut rate, &r.rate);
                }
                let c = vs.svc.config();
                let stats = svc_traffic
                    .get(&(c.proto.number(), c.vip, c.vport))
                    .copied()
                    .unwrap_or_default();
                SvcView {
                    stats,
                    rate,
                    proto: e.protocol.clone(),
                    vip: vs.svc.config().vip,
                    port: e.port,
                    scheduler: e.scheduler.clone(),
                    flags: e.scheduler_flags.clone(),
                    persistence_s: e.persistence_s,
                    netmask: vs.svc.config().persistence.map(|p| p.netmask),
                    prefix6: vs.svc.config().persistence.map(|p| p.prefix6),
                    lip_conflicts: {
                        let c = vs.svc.config();
                        vs.lips
                            .iter()
                            .map(|&lip| {
                                let k = crate::forward::LipKey {
                                    proto: c.proto.number(),
                                    vip: c.vip,
                                    vport: c.vport,
                                    lip: lip.into(),
                                };
                                conflicts.get(&k).copied().unwrap_or(0)
                            })
                            .collect()
                    },
                    lips: vs
                        .lips
                        .iter()
                        .map(|&a| std::net::IpAddr::from(a))
                        .chain(vs.lips6.iter().map(|&a| std::net::IpAddr::from(a)))
                        .collect(),
                    toa: vs.toa,
                    acl: acl_view(vs, &acl_hits),
                    synproxy: vs.synproxy.to_string(),
                    limit: vs.limit.map(|l| {
                        let r = svc_counts(vs, &limit_refused);
                        let n = |i: usize| r.and_then(|r| r.get(i)).copied().unwrap_or(0);
                        LimitView::new(&l, [n(0), n(1)])
                    }),
                    reals,
                }
            })
            .collect();
        Ok(ListView {
            generation: g.id,
            size: self.ctx.cfg.conn.capacity as u64 * self.workers.len() as u64,
            services,
        })
    }

    /// One Prometheus scrape (`metrics`).
    pub(super) fn metrics_text(&self) -> String {
        let list = self.list_view(false).unwrap_or_default();
        let health = self
            .control()
            .ok()
            .map(|c| c.health_status.clone())
            .and_then(|h| h.lock().ok().map(|h| h.clone()))
            .unwrap_or_default();
        let (ports, mbufs) = (self.ctx.port_samples)();
        let snap = crate::metrics::Snapshot {
            generation: list.generation,
            services: list.services,
            workers: self
                .ctx
                .published
                .iter()
                .map(|p| p.lock().map(|s| s.clone()).unwrap_or_default())
                .collect(),
            conn_capacity: u64::from(self.ctx.cfg.conn.capacity),
            ports,
            health: health
                .iter()
                .map(|h| crate::metrics::HealthSample {
                    proto: h.key.proto,
                    vip: h.key.vip,
                    vport: h.key.vport,
                    rs: h.key.rs,
                    rs_port: h.key.rs_port,
                    up: h.up,
                    checks: h.checks,
                    failures: h.failures,
                })
                .collect(),
            mbufs,
            sync: self
                .control()
                .ok()
                .and_then(|c| c.sync.as_ref().map(|h| h.status())),
        };
        crate::metrics::render(&snap)
    }

    /// Applies a batch as one generation; answered when every worker runs it. Holding the control
    /// mutex from reading the current generation to installing the next one makes concurrent
    /// clients' changes serial: none is lost or half-applied.
    pub(super) fn apply(&self, changes: &[Change]) -> Response {
        let mut ctl = match self.control() {
            Ok(c) => c,
            Err(e) => return Response::err(e),
        };
        let g = ctl.current().clone();
        let n = changes.len();
        let refused = |ctl: &Control, e: &str| {
            let m = format!("admin change of {n} commands refused: {e}");
            ctl.events.record(Kind::Refused, m);
        };
        // From the configured services, not the running ones (whose weights health overlays).
        let mut model = ctl.configured().clone();
        if let Err((i, e)) = model.apply_all(changes) {
            refused(&ctl, &format!("command {}: {e}", i + 1));
            let mut r = Response::err(e);
            r.at = Some(i);
            return r;
        }
        // The kernel-owned services' VIPs and LIPs, which keepalived puts on a twin of the box
        // that holds them: not interface conflicts (`topology::admin_port_addrs`).
        let held: hashbrown::HashSet<std::net::IpAddr> = model
            .services
            .iter()
            .filter(|s| s.owner == "kernel")
            .flat_map(|s| std::iter::once(&s.vip).chain(&s.local_addresses))
            .filter_map(|a| a.parse().ok())
            .collect();
        let (port_addrs, port_addrs6) =
            crate::control::topology::admin_port_addrs(&g.topo.ports, ctl.provenance(), &held);
        let v = match ctl.validate_model(&model, &port_addrs, &port_addrs6) {
            Ok(v) => v,
            Err(e) => {
                let e = model.name_error(&e.to_string());
                refused(&ctl, &e);
                return Response::err(e);
            }
        };
        match ctl.apply_model(model, v) {
            Ok(id) => {
                let m = format!("generation {id} running on every worker ({n} admin commands)");
                ctl.events.record(Kind::Config, m);
                Response::ok(serde_json::json!({ "generation": id }))
            }
            Err(e) => {
                refused(&ctl, &e);
                Response::err(e)
            }
        }
    }

    /// Asks every worker for its connections and neighbours; waits for all of them.
    fn dump(&self, filter: &ConnFilter, limit: usize) -> Result<Vec<WorkerDump>, String> {
        let mut conns = Vec::new();
        let mut firsts = self.dump_each(filter, limit, &mut |mut c| {
            conns.append(&mut c);
            Ok(())
        })?;
        if let Some(first) = firsts.first_mut() {
            first.conns = conns;
        }
        Ok(firsts)
    }

    /// Asks each worker in turn for its connections passing `filter`, one chunk per message (a
    /// worker scans at most `dump::SCAN_SLOTS` slots for one, so a listing never stalls it),
    /// handing each chunk to `sink` as it arrives; `limit` connections in all. Returns each worker's
    /// first answer (its neighbours and table size) without connections.
    fn dump_each(
        &self,
        filter: &ConnFilter,
        limit: usize,
        sink: &mut dyn FnMut(Vec<ConnInfo>) -> Result<(), String>,
    ) -> Result<Vec<WorkerDump>, String> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut firsts = Vec::new();
        let mut sent = 0;
        for (w, inbox) in self.workers.iter().enumerate() {
            let mut from = 0;
            loop {
                // The chunk's own bound: `limit` stays the listing's.
                let (filter, chunk, reply) =
                    (filter.clone(), (limit - sent).min(DUMP_CHUNK), tx.clone());
                let msg = Msg::Inspect(Box::new(move |worker, dp| {
                    let d = crate::control::dump::worker_dump(worker, dp, &filter, chunk, from);
                    let _ = reply.send(d);
                }));
                inbox
                    .send_timeout(msg, DUMP_TIMEOUT)
                    .map_err(|_| format!("worker {w} did not take the dump request"))?;
                let mut d = rx
                    .recv_timeout(DUMP_TIMEOUT)
                    .map_err(|_| format!("worker {w} did not answer the dump request"))?;
                let conns = std::mem::take(&mut d.conns);
                sent += conns.len();
                if !conns.is_empty() {
                    sink(conns)?;
                }
                let next = d.next;
                if from == 0 {
                    firsts.push(d);
                }
                match next {
                    Some(n) if sent < limit => from = n,
                    _ => break,
                }
            }
        }
        if filter.templates && sent < limit {
            let (g, now) = {
                let ctl = self.control()?;
                (ctl.current().clone(), ctl.now_ms())
            };
            crate::control::dump::templates(
                &g.services,
                filter,
                limit - sent,
                DUMP_CHUNK,
                now,
                sink,
            )?;
        }
        Ok(firsts)
    }

    pub(super) fn conns(&self, f: &ConnFilter) -> Result<serde_json::Value, String> {
        let limit = f.limit.unwrap_or(DEFAULT_CONN_LIMIT).min(MAX_CONN_LIMIT);
        let dumps = self.dump(f, limit)?;
        let total = dumps.iter().map(|d| d.total).sum();
        let templates = self.templates_live(f)?;
        let conns: Vec<ConnInfo> = dumps.into_iter().flat_map(|d| d.conns).collect();
        Ok(to_json(&ConnsView {
            total,
            templates,
            conns,
        }))
    }

    /// The live persistence templates of every service when `f` lists them (as the listing, none
    /// with a worker filter; the address and port filters aside), else 0.
    fn templates_live(&self, f: &ConnFilter) -> Result<u64, String> {
        if !f.templates || f.worker.is_some() {
            return Ok(0);
        }
        // The snapshot cloned and the control lock let go before a pass over the tables.
        let (g, now) = {
            let ctl = self.control()?;
            (ctl.current().clone(), ctl.now_ms())
        };
        Ok(g.services
            .services
            .iter()
            .filter_map(|vs| vs.svc.persist_table())
            .map(|t| t.live(now) as u64)
            .sum())
    }

    /// `conns` with `stream`: one line per chunk as the workers hand them over (`"more": true`),
    /// then one with the total. Memory stays at a chunk, whatever the table holds.
    pub(super) fn conns_stream(&self, f: &ConnFilter, w: &mut UnixStream) -> std::io::Result<()> {
        let limit = f.limit.unwrap_or(DEFAULT_CONN_LIMIT).min(MAX_CONN_LIMIT);
        let mut io_err = None;
        let r = self.dump_each(f, limit, &mut |conns| {
            let mut line = Response::ok(to_json(&ConnsView {
                conns,
                ..Default::default()
            }));
            line.more = Some(true);
            proto::write_line(w, &line).map_err(|e| {
                let msg = e.to_string();
                io_err = Some(e);
                msg
            })
        });
        if let Some(e) = io_err {
            return Err(e);
        }
        let last = match r {
            Ok(d) => {
                let total = d.iter().map(|d| d.total).sum();
                let templates = self.templates_live(f).unwrap_or(0);
                let mut l = Response::ok(to_json(&ConnsView {
                    total,
                    templates,
                    conns: Vec::new(),
                }));
                l.more = Some(false);
                l
            }
            Err(e) => Response::err(e),
        };
        proto::write_line(w, &last)
    }

    /// `capture`: checks the port and the filter, starts the capture (one at a time) and streams
    /// it (`capture::stream`). A refusal is one error line and changes nothing. An error is
    /// returned only when the client cannot be written to.
    pub(super) fn capture(&self, op: Op, w: &mut UnixStream) -> std::io::Result<()> {
        let Op::Capture {
            port,
            filter,
            count,
            snaplen,
            duration_s,
        } = op
        else {
            return Ok(());
        };
        let started = (|| {
            let names: Vec<String> = self
                .current()?
                .topo
                .ports
                .iter()
                .map(|p| p.name.clone())
                .collect();
            let index = names
                .iter()
                .position(|n| *n == port)
                .ok_or_else(|| format!("unknown port {port:?} (ports: {})", names.join(", ")))?;
            let snaplen = snaplen.unwrap_or(crate::capture::DEFAULT_SNAPLEN);
            if snaplen == 0 {
                return Err("snaplen must be at least 1".to_string());
            }
            let filter = match filter.as_deref().map(str::trim) {
                Some(f) if !f.is_empty() => Some(crate::dpdk::bpf::Filter::compile(f, snaplen)?),
                _ => None,
            };
            self.ctx.capture.start(index as u16, &port, filter, snaplen)
        })();
        let running = match started {
            Ok(r) => r,
            Err(e) => return proto::write_line(w, &Response::err(e)),
        };
        tracing::info!(
            "capture on port {port} started ({})",
            running.session.filter_expr().unwrap_or("no filter")
        );
        // The client sends nothing once it has asked: the socket turning readable means it
        // spoke or closed its side (Ctrl-C), and either ends the capture.
        use std::os::fd::AsRawFd;
        let fd = w.as_raw_fd();
        let mut client = mio::Poll::new().and_then(|p| {
            p.registry().register(
                &mut mio::unix::SourceFd(&fd),
                mio::Token(0),
                mio::Interest::READABLE,
            )?;
            Ok((p, mio::Events::with_capacity(2)))
        })?;
        let mut left = false;
        let r = crate::capture::stream::serve(
            running,
            count.unwrap_or(crate::capture::DEFAULT_COUNT),
            duration_s.map(|s| Duration::from_secs(s.into())),
            || {
                if !left {
                    let (poll, events) = &mut client;
                    left = poll.poll(events, Some(Duration::ZERO)).is_err() || !events.is_empty();
                }
                left || self.stop.load(Ordering::Relaxed)
            },
            |line, more| {
                let mut r = proto::Response::ok(serde_json::to_value(line).unwrap_or_default());
                r.more = Some(more);
                proto::write_line(w, &r)
            },
        );
        tracing::info!("capture on port {port} ended");
        r
    }

    pub(super) fn set_timeouts(
        &self,
        tcp: u32,
        tcpfin: u32,
        udp: u32,
    ) -> Result<serde_json::Value, String> {
        // IPVS refuses timeouts it cannot hold in jiffies (`ip_vs_set_timeout`: INT_MAX / HZ with
        // HZ = 1000).
        const MAX_TIMEOUT_S: u32 = i32::MAX as u32 / 1000;
        if let Some(v) = [tcp, tcpfin, udp].into_iter().find(|&v| v > MAX_TIMEOUT_S) {
            return Err(format!(
                "timeout {v} s is over the limit of {MAX_TIMEOUT_S} s; nothing changed"
            ));
        }
        let mut ctl = self.control()?;
        let mut t = ctl.current().timeouts;
        for (v, field) in [
            (tcp, &mut t.established),
            (tcpfin, &mut t.fin_wait),
            (udp, &mut t.udp),
        ] {
            if v > 0 {
                *field = v;
            }
        }
        let generation = ctl.apply_timeouts(t)?;
        let m = format!(
            "timeouts tcp {} s, tcpfin {} s, udp {} s: generation {generation} running on every worker",
            t.established, t.fin_wait, t.udp
        );
        ctl.events.record(Kind::Config, m);
        Ok(serde_json::json!({ "generation": generation }))
    }

    /// The settings `Op::Sysctl` reads and writes, by IPVS's sysctl name.
    pub(super) fn sysctl(
        &self,
        name: Option<&str>,
        value: Option<u32>,
    ) -> Result<serde_json::Value, String> {
        const NAMES: [&str; 1] = ["conn_reuse_mode"];
        let mode = self
            .current()
            .map(|g| g.conn_reuse_mode)
            .unwrap_or(self.ctx.cfg.conn.conn_reuse_mode);
        match (name, value) {
            (None, _) => Ok(serde_json::json!({ "conn_reuse_mode": mode })),
            (Some(n), _) if !NAMES.contains(&n) => Err(format!(
                "unknown setting {n:?} (known: {})",
                NAMES.join(", ")
            )),
            (Some(_), None) => Ok(serde_json::json!({ "conn_reuse_mode": mode })),
            (Some(_), Some(v)) => {
                let v = u8::try_from(v)
                    .ok()
                    .filter(|v| *v <= 3)
                    .ok_or_else(|| format!("conn_reuse_mode {v} is not 0..=3"))?;
                let mut ctl = self.control()?;
                let generation = ctl.apply_conn_reuse_mode(v)?;
                let m =
                    format!("conn_reuse_mode {v}: generation {generation} running on every worker");
                ctl.events.record(Kind::Config, m);
                Ok(serde_json::json!({ "generation": generation, "conn_reuse_mode": v }))
            }
        }
    }

    pub(super) fn timeouts(&self) -> TimeoutsView {
        let current = self
            .current()
            .map(|g| g.timeouts)
            .unwrap_or(self.ctx.cfg.conn.timeouts);
        let t = &current;
        let all = serde_json::to_value(t)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        TimeoutsView {
            tcp: t.established,
            tcpfin: t.fin_wait,
            udp: t.udp,
            all,
        }
    }

    /// The configuration file the daemon started from, with its services replaced by the running ones.
    pub(super) fn save(&self) -> Result<serde_json::Value, String> {
        // The configured services: their owners, checks and configured weights.
        let model = self.control()?.configured().clone();
        let path = self
            .ctx
            .config_path
            .ok_or("the daemon was started without a configuration file")?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let entries: Vec<crate::config::ServiceEntry> =
            model.services.iter().map(|s| (**s).clone()).collect();
        let toml = crate::control::save::config_with_services(&text, &entries)?;
        Ok(serde_json::json!({ "toml": toml }))
    }

    pub(super) fn net(&self) -> Result<serde_json::Value, String> {
        let (g, prov, twins, (groups, listen6_errors)) = {
            let c = self.control()?;
            let t = c.twins.clone();
            (
                c.current().clone(),
                c.provenance().clone(),
                t,
                c.listening6(),
            )
        };
        let twin_name = |ifindex: u32| {
            twins
                .iter()
                .find(|t| t.3 == ifindex)
                .map_or_else(|| ifindex.to_string(), |t| t.1.clone())
        };
        let listening6 = groups.iter().map(|&(i, g)| (twin_name(i), g)).collect();
        let topo = &g.topo;
        let origin_of_addr = |port: usize, a: &crate::net::Ipv4Cidr| {
            prov.addrs
                .iter()
                .find(|x| x.0 as usize == port && x.1 == *a)
                .map_or(Origin::Config, |x| x.2)
        };
        let ports = topo
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| PortView {
                name: p.name.clone(),
                mac: p.mac.to_string(),
                addrs: p
                    .addrs
                    .iter()
                    .map(|a| a.to_string())
                    .chain(p.addrs6.iter().map(|a| a.to_string()))
                    .collect(),
                origins: p
                    .addrs
                    .iter()
                    .map(|a| origin_of_addr(i, a))
                    .chain(p.addrs6.iter().map(|a| {
                        prov.addrs6
                            .iter()
                            .find(|x| x.0 as usize == i && x.1 == *a)
                            .map_or(Origin::Config, |x| x.2)
                    }))
                    .collect(),
                twin: twins.iter().find(|t| t.0 as usize == i).map(|t| TwinView {
                    name: t.1.clone(),
                    driver: t.2.to_string(),
                    ifindex: t.3,
                }),
            })
            .collect();
        let port_name = |i: u16| {
            topo.ports
                .get(i as usize)
                .map_or_else(|| i.to_string(), |p| p.name.clone())
        };
        let mut routes: Vec<RouteView> = topo
            .routes
            .iter()
            .map(|(c, hop)| RouteView {
                prefix: c.to_string(),
                via: hop.via.map(Into::into),
                port: port_name(hop.port),
                origin: prov.routes.iter().find(|r| r.0 == c).map(|r| r.1),
            })
            .collect();
        // IPv6: connected prefixes of the ports' addresses (no origin), and the others.
        routes.extend(topo.routes6.iter().map(|r| RouteView {
            prefix: r.prefix.to_string(),
            via: r.via.map(Into::into),
            port: port_name(r.port),
            origin: prov.routes6.iter().find(|x| x.0 == r.prefix).map(|x| x.1),
        }));
        routes.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        let mut neigh: Vec<NeighInfo> = self
            .dump(&ConnFilter::default(), 0)?
            .into_iter()
            .flat_map(|d| d.neigh)
            .collect();
        neigh.sort_by_key(|n| (n.ip, n.worker));
        let mut service_addrs: Vec<std::net::IpAddr> = g
            .services
            .addresses()
            .map(Into::into)
            .chain(g.services.addresses6().map(Into::into))
            .collect();
        service_addrs.sort();
        let mut total = crate::counters::PuntCounters::default();
        for p in self.ctx.published.iter() {
            if let Ok(s) = p.lock() {
                total.add(&s.punt);
            }
        }
        Ok(to_json(&NetView {
            ports,
            routes,
            neigh,
            service_addrs,
            kernel_owned: prov.kernel_owned.clone(),
            punt: total.reported().map(|(k, v)| (k.to_string(), v)).collect(),
            listening6,
            listen6_errors,
        }))
    }
}

/// A service's access list with the connections each rule decided (`hits`: summed over the
/// workers, by service), then the default.
fn acl_view(
    vs: &crate::forward::VirtualService,
    hits: &crate::stats::SvcCounts,
) -> Vec<AclRuleView> {
    if vs.acl.is_empty() {
        return Vec::new();
    }
    let h = svc_counts(vs, hits);
    let n = |i: usize| h.and_then(|h| h.get(i)).copied().unwrap_or(0);
    let otherwise = match vs.acl.iter().any(|r| r.allow) {
        true => "otherwise deny",
        false => "otherwise allow",
    };
    vs.acl
        .iter()
        .map(|r| r.to_string())
        .chain(std::iter::once(otherwise.to_string()))
        .enumerate()
        .map(|(i, rule)| AclRuleView { rule, hits: n(i) })
        .collect()
}

/// Service `vs`'s counts in `counts` (summed over the workers), if any.
fn svc_counts<'a>(
    vs: &crate::forward::VirtualService,
    counts: &'a crate::stats::SvcCounts,
) -> Option<&'a [u64]> {
    let c = vs.svc.config();
    let key = (c.proto.number(), c.vip, c.vport);
    let i = counts.binary_search_by(|(k, _)| k.cmp(&key)).ok()?;
    Some(&counts[i].1)
}
