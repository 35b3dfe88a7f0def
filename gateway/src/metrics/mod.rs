//! Prometheus metrics (`[metrics] listen`): what the gateway counts, in the Prometheus text format
//! (version 0.0.4), served on `/metrics` by a small HTTP server on a control thread ([`http`]).
//!
//! The room's interface is narrow: the admin server builds a [`Snapshot`] from what it already
//! reads for `gwctl` and `ipvsadm` (published worker counters, the running services, port counters,
//! health states), and [`render`] turns it into text with the official `prometheus-client` crate.
//! Workers never see a scrape: it reads the copies they publish every 100 ms.
//!
//! Names follow Prometheus conventions (`_total` counters, base units). Where node_exporter's IPVS
//! collector (`collector/ipvs_linux.go`) has a metric with the same meaning, it has the same name
//! and labels, so dashboards built for LVS work unchanged: `node_ipvs_connections_total`,
//! `node_ipvs_{incoming,outgoing}_{packets,bytes}_total`, `node_ipvs_backend_connections_active`,
//! `node_ipvs_backend_connections_inactive` and `node_ipvs_backend_weight`, labelled
//! `local_address`, `local_port`, `remote_address`, `remote_port`, `proto`, `local_mark`. Counters
//! count from the daemon's start: `ipvsadm -Z` zeroes what gwctl shows, not these, since a
//! Prometheus counter only goes up.

pub mod http;

use crate::stats::WorkerStats;
use crate::view::SvcView;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One DPDK port's counters (`rte_eth_stats`) and link state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSample {
    pub name: String,
    pub driver: String,
    pub up: bool,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
}

/// A real server's health as the checker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSample {
    pub proto: u8,
    pub vip: std::net::IpAddr,
    pub vport: u16,
    pub rs: std::net::IpAddr,
    pub rs_port: u16,
    pub up: bool,
    pub checks: u64,
    pub failures: u64,
}

/// Everything one scrape shows.
#[derive(Default)]
pub struct Snapshot {
    /// The running services with their counters since the daemon's start (not since `-Z`).
    pub services: Vec<SvcView>,
    /// Each worker's published counters.
    pub workers: Vec<WorkerStats>,
    /// Connection-table capacity of one worker (`conn.capacity`).
    pub conn_capacity: u64,
    pub ports: Vec<PortSample>,
    pub health: Vec<HealthSample>,
    /// Mempool mbufs in use and available.
    pub mbufs: Option<(u64, u64)>,
    /// Configuration generation running.
    pub generation: u64,
    /// The connection-sync thread's status (`[sync]`; none without).
    pub sync: Option<crate::sync::Status>,
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The labels node_exporter's IPVS collector puts on a backend.
fn backend_labels(svc: &SvcView, rs: &crate::view::RealView) -> Labels {
    labels(&[
        ("local_address", svc.vip.to_string()),
        ("local_port", svc.port.to_string()),
        ("remote_address", rs.addr.to_string()),
        ("remote_port", rs.port.to_string()),
        ("proto", svc.proto.to_uppercase()),
        ("local_mark", String::new()),
    ])
}

fn service_labels(svc: &SvcView) -> Labels {
    labels(&[
        ("local_address", svc.vip.to_string()),
        ("local_port", svc.port.to_string()),
        ("proto", svc.proto.to_uppercase()),
    ])
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "TCP".into(),
        17 => "UDP".into(),
        n => n.to_string(),
    }
}

/// A metric family registered under `name`, filled by the caller.
struct Families<'r> {
    reg: &'r mut Registry,
}

impl Families<'_> {
    fn counter(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let f = Family::<Labels, Counter>::default();
        self.reg.register(name, help, f.clone());
        f
    }

    fn gauge(&mut self, name: &str, help: &str) -> Family<Labels, Gauge> {
        let f = Family::<Labels, Gauge>::default();
        self.reg.register(name, help, f.clone());
        f
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The scrape's text in the Prometheus text format.
pub fn render(s: &Snapshot) -> String {
    let mut reg = Registry::default();
    let mut f = Families { reg: &mut reg };
    let none: Labels = Vec::new();

    // node_exporter's IPVS totals: the sum over every service, present or removed.
    let totals = [
        (
            "node_ipvs_connections",
            "The total number of connections made",
        ),
        (
            "node_ipvs_incoming_packets",
            "The total number of incoming packets",
        ),
        (
            "node_ipvs_outgoing_packets",
            "The total number of outgoing packets",
        ),
        (
            "node_ipvs_incoming_bytes",
            "The total amount of incoming data",
        ),
        (
            "node_ipvs_outgoing_bytes",
            "The total amount of outgoing data",
        ),
    ];
    let totals: Vec<_> = totals.iter().map(|(n, h)| f.counter(n, h)).collect();
    let active = f.gauge(
        "node_ipvs_backend_connections_active",
        "The current active connections by local and remote address",
    );
    let inactive = f.gauge(
        "node_ipvs_backend_connections_inactive",
        "The current inactive connections by local and remote address",
    );
    let weight = f.gauge(
        "node_ipvs_backend_weight",
        "The current backend weight by local and remote address",
    );
    let per_real = [
        (
            "gateway_backend_connections",
            "Connections scheduled to a real server",
        ),
        (
            "gateway_backend_incoming_packets",
            "Packets from clients to a real server",
        ),
        (
            "gateway_backend_outgoing_packets",
            "Packets from a real server to clients",
        ),
        (
            "gateway_backend_incoming_bytes",
            "Bytes from clients to a real server",
        ),
        (
            "gateway_backend_outgoing_bytes",
            "Bytes from a real server to clients",
        ),
    ];
    let per_real: Vec<_> = per_real.iter().map(|(n, h)| f.counter(n, h)).collect();
    let persistent = f.gauge(
        "gateway_backend_persistent_connections",
        "Persistence templates pointing at a real server",
    );
    let per_svc = [
        (
            "gateway_service_connections",
            "Connections a virtual service scheduled",
        ),
        (
            "gateway_service_incoming_packets",
            "Packets from clients to a virtual service",
        ),
        (
            "gateway_service_outgoing_packets",
            "Packets from real servers to a service's clients",
        ),
        (
            "gateway_service_incoming_bytes",
            "Bytes from clients to a virtual service",
        ),
        (
            "gateway_service_outgoing_bytes",
            "Bytes from real servers to a service's clients",
        ),
    ];
    let per_svc: Vec<_> = per_svc.iter().map(|(n, h)| f.counter(n, h)).collect();
    let acl_hits = f.counter(
        "gateway_acl_hits",
        "New connections a service's access-list rule decided (rule \"otherwise ...\": the default)",
    );
    let limit_refused = f.counter(
        "gateway_limit_refused",
        "New connections a service's per-client limit refused (reason \"rate\": new connections per second, \"max_conns\": open connections)",
    );
    let svc_info = f.gauge(
        "gateway_service_info",
        "A virtual service (always 1), labelled with its scheduler",
    );
    let mut sum = [0u64; 5];
    for svc in &s.services {
        let c = &svc.stats;
        let values = [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes];
        let sl = service_labels(svc);
        for (fam, v) in per_svc.iter().zip(values) {
            fam.get_or_create(&sl).inc_by(v);
        }
        for r in &svc.acl {
            let mut l = sl.clone();
            l.push(("rule".into(), r.rule.clone()));
            acl_hits.get_or_create(&l).inc_by(r.hits);
        }
        if let Some(lv) = &svc.limit {
            for (reason, n) in [("rate", lv.rate_refused), ("max_conns", lv.conns_refused)] {
                let mut l = sl.clone();
                l.push(("reason".into(), reason.into()));
                limit_refused.get_or_create(&l).inc_by(n);
            }
        }
        let mut info = sl.clone();
        info.push(("scheduler".into(), svc.scheduler.clone()));
        svc_info.get_or_create(&info).set(1);
        for rs in &svc.reals {
            let bl = backend_labels(svc, rs);
            active.get_or_create(&bl).set(i64::from(rs.active));
            inactive.get_or_create(&bl).set(i64::from(rs.inactive));
            weight.get_or_create(&bl).set(i64::from(rs.weight));
            persistent
                .get_or_create(&bl)
                .set(i64::from(rs.persist_conns));
            let c = &rs.stats;
            let values = [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes];
            for (fam, v) in per_real.iter().zip(values) {
                fam.get_or_create(&bl).inc_by(v);
            }
        }
    }
    // Everything the workers count, removed servers and services included (IPVS's totals keep
    // them): a sum that never falls.
    for (_, t) in s.workers.iter().flat_map(|w| &w.traffic) {
        for (i, v) in [t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes]
            .into_iter()
            .enumerate()
        {
            sum[i] += v;
        }
    }
    for (fam, v) in totals.iter().zip(sum) {
        fam.get_or_create(&none).inc_by(v);
    }

    // Health checks.
    let health_up = f.gauge(
        "gateway_backend_health_up",
        "1 while the health checks hold a real server up, 0 while they hold it down",
    );
    let health_checks = f.counter("gateway_backend_health_checks", "Health checks run");
    let health_failures = f.counter(
        "gateway_backend_health_check_failures",
        "Health checks that failed",
    );
    for h in &s.health {
        let l = labels(&[
            ("local_address", h.vip.to_string()),
            ("local_port", h.vport.to_string()),
            ("remote_address", h.rs.to_string()),
            ("remote_port", h.rs_port.to_string()),
            ("proto", proto_name(h.proto)),
            ("local_mark", String::new()),
        ]);
        health_up.get_or_create(&l).set(i64::from(h.up));
        health_checks.get_or_create(&l).inc_by(h.checks);
        health_failures.get_or_create(&l).inc_by(h.failures);
    }

    // Per worker: every counter by name, drops by reason, table occupancy, local ports per LIP.
    let mut by_name: std::collections::BTreeMap<String, Family<Labels, Counter>> =
        Default::default();
    let drops = f.counter(
        "gateway_drops",
        "Packets dropped, by worker and reason (gwctl stats names the reasons)",
    );
    let table = f.gauge(
        "gateway_connection_table_entries",
        "Connections in a worker's table",
    );
    let capacity = f.gauge(
        "gateway_connection_table_capacity",
        "Entries a worker's connection table holds",
    );
    let auto_active = f.gauge(
        "gateway_synproxy_auto_active",
        "1 while a worker's SYN proxy auto mode is on (half-open connections passed [synproxy] auto_half_open)",
    );
    let lip_use = f.gauge(
        "gateway_lip_ports_in_use",
        "Local ports a FullNAT service uses on a local address (LIP), by worker",
    );
    let lip_conflicts = f.counter(
        "gateway_lip_port_conflicts",
        "Local ports skipped because a connection already used them, by service and LIP",
    );
    let stage_cycles = f.counter(
        "gateway_stage_cycles",
        "Busy TSC cycles of a worker by stage of the poll round (gwctl runtime)",
    );
    let stage_packets = f.counter("gateway_stage_packets", "Packets through a stage");
    let stage_calls = f.counter("gateway_stage_calls", "Runs of a stage that had packets");
    for (i, w) in s.workers.iter().enumerate() {
        let wl = labels(&[("worker", i.to_string())]);
        // Busy cycles and the packets they handled: their rates' ratio is cycles per packet.
        let busy = [
            ("busy_cycles", w.busy_cycles),
            ("busy_packets", w.busy_packets),
        ];
        for (name, v) in w.named().chain(busy) {
            if name == "drops" || WorkerStats::LEVELS.contains(&name) {
                continue;
            }
            let fam = by_name
                .entry(name.to_string())
                .or_insert_with(|| f.counter(&format!("gateway_{name}"), &counter_help(name)));
            fam.get_or_create(&wl).inc_by(v);
        }
        // Every reason, zero included, so that a rate exists before the first drop.
        for (reason, v) in w.drop_counts() {
            let mut l = wl.clone();
            l.push(("reason".into(), reason.to_string()));
            drops.get_or_create(&l).inc_by(v);
        }
        table.get_or_create(&wl).set(gauge_value(w.fwd.conns));
        capacity
            .get_or_create(&wl)
            .set(gauge_value(s.conn_capacity));
        auto_active
            .get_or_create(&wl)
            .set(gauge_value(w.synproxy.auto_active));
        for (stage, c) in crate::stats::Stage::ALL.iter().zip(&w.runtime) {
            let mut l = wl.clone();
            l.push(("stage".into(), stage.name().to_string()));
            stage_cycles.get_or_create(&l).inc_by(c.cycles);
            stage_packets.get_or_create(&l).inc_by(c.packets);
            stage_calls.get_or_create(&l).inc_by(c.calls);
        }
        for (k, n) in &w.lip_usage {
            let mut l = wl.clone();
            l.extend(lip_labels(k));
            lip_use.get_or_create(&l).set(i64::from(*n));
        }
        for (k, n) in &w.lip_conflicts {
            let mut l = wl.clone();
            l.extend(lip_labels(k));
            lip_conflicts.get_or_create(&l).inc_by(*n);
        }
    }

    // Ports.
    let port_up = f.gauge("gateway_port_up", "1 while a port's link is up");
    let port_counters = [
        (
            "gateway_port_rx_packets",
            "Packets a port received (rte_eth_stats ipackets)",
        ),
        ("gateway_port_rx_bytes", "Bytes a port received"),
        ("gateway_port_tx_packets", "Packets a port sent"),
        ("gateway_port_tx_bytes", "Bytes a port sent"),
        (
            "gateway_port_rx_missed",
            "Packets the NIC dropped for want of rx descriptors (imissed)",
        ),
        (
            "gateway_port_rx_errors",
            "Erroneous received packets (ierrors)",
        ),
        ("gateway_port_tx_errors", "Failed transmissions (oerrors)"),
        (
            "gateway_port_rx_nombuf",
            "Receive failures for want of an mbuf (rx_nombuf)",
        ),
    ];
    let port_counters: Vec<_> = port_counters.iter().map(|(n, h)| f.counter(n, h)).collect();
    for p in &s.ports {
        let l = labels(&[("port", p.name.clone()), ("driver", p.driver.clone())]);
        port_up.get_or_create(&l).set(i64::from(p.up));
        let values = [
            p.rx_packets,
            p.rx_bytes,
            p.tx_packets,
            p.tx_bytes,
            p.rx_missed,
            p.rx_errors,
            p.tx_errors,
            p.rx_nombuf,
        ];
        for (fam, v) in port_counters.iter().zip(values) {
            fam.get_or_create(&l).inc_by(v);
        }
    }
    if let Some((in_use, avail)) = s.mbufs {
        let g = f.gauge("gateway_mbufs_in_use", "Mbufs of the packet pool in use");
        g.get_or_create(&none).set(gauge_value(in_use));
        let g = f.gauge("gateway_mbufs_available", "Mbufs of the packet pool free");
        g.get_or_create(&none).set(gauge_value(avail));
    }
    let g = f.gauge(
        "gateway_config_generation",
        "The configuration generation the workers run",
    );
    g.get_or_create(&none).set(gauge_value(s.generation));
    if let Some(st) = &s.sync {
        sync_metrics(&mut f, st);
    }

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &reg);
    out
}

/// The sync thread's role, lag and traffic (the workers' `sync_*` counters come with theirs).
fn sync_metrics(f: &mut Families, st: &crate::sync::Status) {
    let none: Labels = Vec::new();
    let role = f.gauge(
        "gateway_sync_role",
        "1 for the connection-sync role this box has now (master, backup or off)",
    );
    for r in ["master", "backup", "off"] {
        role.get_or_create(&labels(&[("role", r.into())]))
            .set(i64::from(st.role.to_string() == r));
    }
    if let Some(ms) = st.last_from_peer_ms {
        f.gauge(
            "gateway_sync_peer_last_heard_milliseconds",
            "Milliseconds since the sync peer was last heard from (the backup's lag)",
        )
        .get_or_create(&none)
        .set(gauge_value(ms));
    }
    f.gauge(
        "gateway_sync_ready",
        "1 when this box may take the VIPs without losing connections; 0 while a backup waits \
         for its peer's full resync",
    )
    .get_or_create(&none)
    .set(i64::from(st.ready));
    f.gauge(
        "gateway_sync_pending_records",
        "Records waiting to be sent to the peer (paced by [sync] max_msgs_per_s)",
    )
    .get_or_create(&none)
    .set(gauge_value(st.pending));
    let totals = [
        (
            "gateway_sync_sent_messages",
            "Sync messages sent",
            st.sent_msgs,
        ),
        (
            "gateway_sync_sent_records",
            "Connection records sent",
            st.sent_records,
        ),
        ("gateway_sync_sent_bytes", "Sync bytes sent", st.sent_bytes),
        (
            "gateway_sync_send_errors",
            "Sync messages the socket refused",
            st.send_errors,
        ),
        (
            "gateway_sync_received_messages",
            "Sync messages accepted",
            st.received_msgs,
        ),
        (
            "gateway_sync_received_records",
            "Connection records received",
            st.received_records,
        ),
        (
            "gateway_sync_resyncs",
            "Full resyncs sent to the peer",
            st.resyncs_started,
        ),
        (
            "gateway_sync_resyncs_received",
            "Full resyncs from the peer that ended (resync done received)",
            st.resync_done_received,
        ),
        (
            "gateway_sync_lost_messages",
            "Messages from the peer that never arrived (gaps in its sequence numbers)",
            st.lost_msgs,
        ),
        (
            "gateway_sync_install_dropped",
            "Record batches the workers had no room for",
            st.install_dropped,
        ),
        (
            "gateway_sync_ignored_records",
            "Records received while not the backup",
            st.ignored_not_backup,
        ),
    ];
    for (name, help, v) in totals {
        f.counter(name, help).get_or_create(&none).inc_by(v);
    }
    let refused = f.counter(
        "gateway_sync_refused",
        "Sync messages (records for layout) refused, by reason",
    );
    for (reason, v) in [
        ("truncated", st.refused_truncated),
        ("bad_mac", st.refused_bad_mac),
        ("bad_version", st.refused_bad_version),
        ("replay", st.refused_replay),
        ("bad_length", st.refused_bad_length),
        ("bad_record", st.refused_bad_record),
        ("layout", st.refused_layout),
    ] {
        refused
            .get_or_create(&labels(&[("reason", reason.into())]))
            .inc_by(v);
    }
}

fn lip_labels(k: &crate::forward::LipKey) -> Labels {
    labels(&[
        ("local_address", k.vip.to_string()),
        ("local_port", k.vport.to_string()),
        ("proto", proto_name(k.proto)),
        ("lip", k.lip.to_string()),
    ])
}

fn counter_help(name: &str) -> String {
    format!("The worker counter {name} (gwctl stats)")
}

#[cfg(test)]
mod tests;
