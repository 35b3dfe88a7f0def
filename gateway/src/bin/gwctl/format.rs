//! How `gwctl` prints what the daemon answers: connections, counters, the runtime by stage,
//! announcements, sync.

use super::*;

pub(crate) fn format_conns(c: &ConnsView) -> String {
    let ap = |x: Option<(std::net::IpAddr, u16)>| {
        x.map_or_else(
            || "-".into(),
            |(a, p)| std::net::SocketAddr::new(a, p).to_string(),
        )
    };
    let mut out = format!(
        "{:<4} {:<6} {:<12} {:<21} {:<21} {:<21} {:<21} {:>7}\n",
        "pro", "worker", "state", "client", "virtual", "local", "destination", "expire"
    );
    for x in &c.conns {
        let _ = writeln!(
            out,
            "{:<4} {:<6} {:<12} {:<21} {:<21} {:<21} {:<21} {:>6}s",
            x.proto,
            x.worker,
            x.state,
            ap(Some(x.client)),
            ap(Some(x.vip)),
            ap(x.local),
            ap(x.dest),
            x.expire_ms / 1000
        );
    }
    let _ = writeln!(out, "{} listed, {} in the tables", c.conns.len(), c.total);
    out
}

pub(crate) fn format_stats(s: &StatsView, drops_only: bool) -> String {
    let mut out = String::new();
    let mut names: Vec<&String> = s.total.drops.keys().collect();
    if !drops_only {
        for p in &s.ports {
            let _ = writeln!(out, "{p}");
        }
        let keys: Vec<&String> = s.total.counters.keys().collect();
        let _ = write!(out, "{:<20}", "counter");
        for i in 0..s.workers.len() {
            let _ = write!(out, " {:>14}", format!("worker{i}"));
        }
        let _ = writeln!(out, " {:>14}", "total");
        for k in keys {
            let _ = write!(out, "{k:<20}");
            for w in &s.workers {
                let _ = write!(out, " {:>14}", w.counters.get(k).copied().unwrap_or(0));
            }
            let _ = writeln!(out, " {:>14}", s.total.counters[k]);
        }
        let r = &s.rate;
        let _ = writeln!(
            out,
            "rate: CPS {} InPPS {} OutPPS {} InBPS {} OutBPS {}",
            r.cps, r.inpps, r.outpps, r.inbps, r.outbps
        );
    }
    names.sort();
    let _ = write!(out, "{:<24}", "drop reason");
    for i in 0..s.workers.len() {
        let _ = write!(out, " {:>12}", format!("worker{i}"));
    }
    let _ = writeln!(out, " {:>12}", "total");
    for k in names {
        let _ = write!(out, "{k:<24}");
        for w in &s.workers {
            let _ = write!(out, " {:>12}", w.drops.get(k).copied().unwrap_or(0));
        }
        let _ = writeln!(out, " {:>12}", s.total.drops[k]);
    }
    out
}

/// VPP's `show runtime` layout: per worker, each stage's calls, packets, cycles and their ratios.
pub(crate) fn format_runtime(v: &RuntimeView) -> String {
    let mut out = String::new();
    for w in &v.workers {
        let secs = w.busy_cycles as f64 / v.tsc_hz.max(1) as f64;
        let _ = writeln!(
            out,
            "worker {}: busy {} cycles ({secs:.3} s), {} packets, {} cycles/packet",
            w.worker,
            w.busy_cycles,
            w.busy_packets,
            w.busy_cycles.checked_div(w.busy_packets).unwrap_or(0)
        );
        let _ = writeln!(
            out,
            "  {:<10} {:>12} {:>14} {:>16} {:>10} {:>10} {:>7}",
            "stage", "calls", "packets", "cycles", "cyc/pkt", "pkts/call", "share"
        );
        for s in &w.stages {
            let per = |a: u64, b: u64| match b {
                0 => "-".to_string(),
                _ => format!("{:.1}", a as f64 / b as f64),
            };
            let share = match w.busy_cycles {
                0 => "-".to_string(),
                b => format!("{:.1}%", s.cycles as f64 * 100.0 / b as f64),
            };
            let _ = writeln!(
                out,
                "  {:<10} {:>12} {:>14} {:>16} {:>10} {:>10} {:>7}",
                s.stage,
                s.calls,
                s.packets,
                s.cycles,
                per(s.cycles, s.packets),
                per(s.packets, s.calls),
                share
            );
        }
    }
    out
}

pub(crate) fn format_announce(v: &gateway::kernel::announce::AnnounceView) -> String {
    let mut out = String::new();
    match v.table {
        Some(t) => {
            let _ = writeln!(
                out,
                "announce table {t} (blackhole routes, proto {})",
                gateway::kernel::announce::ROUTE_PROTOCOL
            );
        }
        None => {
            let _ = writeln!(
                out,
                "announce: not configured ([announce] in the config); nothing is announced"
            );
        }
    }
    // Aligned on the longest address (an IPv6 VIP is up to 39 characters).
    let width = v
        .announced
        .iter()
        .chain(v.withheld.iter().map(|(a, _)| a))
        .map(|a| a.to_string().len())
        .max()
        .unwrap_or(0)
        .max(15);
    for a in &v.announced {
        let _ = writeln!(out, "  {:<width$} announced", a.to_string());
    }
    for (a, why) in &v.withheld {
        let _ = writeln!(out, "  {:<width$} withheld: {why}", a.to_string());
    }
    for d in &v.drains {
        let what = d.vip.map_or("every VIP".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "drain {what}: {} for {:.1} s, {} connections left, deadline in {:.1} s",
            d.state, d.for_s, d.conns, d.left_s
        );
    }
    if v.errors > 0 {
        let _ = writeln!(out, "route changes refused by the kernel: {}", v.errors);
    }
    out
}

/// How `gwctl addrs` and `routes` name an origin.
pub(crate) fn origin_name(o: gateway::view::Origin) -> &'static str {
    use gateway::view::Origin;
    match o {
        Origin::Config => "config",
        Origin::ConfigKernel => "config_kernel",
        Origin::Kernel => "kernel",
    }
}

/// `gwctl sync`: the sync thread's status and the workers' counters (`Op::Sync`).
pub(crate) fn format_sync(v: &serde_json::Value) -> String {
    let s = &v["status"];
    let mut out = String::new();
    let text = |k: &str| match &s[k] {
        serde_json::Value::String(x) => x.clone(),
        serde_json::Value::Null => "-".into(),
        x => x.to_string(),
    };
    let _ = writeln!(
        out,
        "role {} (mode {}, kernel-owned VIP held: {})",
        text("role"),
        text("mode"),
        text("vips_held")
    );
    let _ = writeln!(
        out,
        "local {}  peer {}  id {}",
        text("local"),
        text("peer"),
        text("id")
    );
    let _ = writeln!(
        out,
        "peer id {}, last heard {} ms ago, layout {}",
        text("peer_id"),
        text("last_from_peer_ms"),
        text("peer_layout")
    );
    let skip = [
        "mode",
        "role",
        "vips_held",
        "local",
        "peer",
        "id",
        "peer_id",
        "last_from_peer_ms",
        "peer_layout",
    ];
    if let Some(m) = s.as_object() {
        for (k, x) in m.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
            let _ = writeln!(out, "  {k:<28} {x:>12}");
        }
    }
    if let Some(m) = v["workers"].as_object() {
        let _ = writeln!(out, "workers:");
        for (k, x) in m {
            let _ = writeln!(out, "  {:<28} {x:>12}", k.trim_start_matches("sync_"));
        }
    }
    out
}
