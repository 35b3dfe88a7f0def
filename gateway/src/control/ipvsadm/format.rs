//! ipvsadm's listings, byte for byte as ipvsadm 1.2x prints them.

use super::{ListOpts, Names, IPVS_VERSION};
use crate::control::proto::SvcKey;
use crate::view::{ConnInfo, ListView, RealView, SvcView, TimeoutsView};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// `print_largenum`: 9 columns, scaled to K/M/G/T unless `--exact`.
pub fn largenum(out: &mut String, i: u64, exact: bool) {
    let _ = if exact {
        let len = i.to_string().len();
        write!(out, "{:>w$}", i, w = if len <= 8 { 9 } else { len + 1 })
    } else if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

fn title(o: &ListOpts) -> String {
    let h = "Prot LocalAddress:Port";
    let tail = "  -> RemoteAddress:Port\n";
    if o.stats {
        format!(
            "{h:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{tail}",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        )
    } else if o.rate {
        format!(
            "{h:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{tail}",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        )
    } else if o.thresholds {
        format!(
            "{h:<33} {:<10} {:<10} {:<10} {}\n{tail}",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if o.persistent_conn {
        format!(
            "{h:<33} {:<9} {:<11} {:<10} {}\n{tail}",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
            .into()
    }
}

fn fwd_name(mode: &str) -> &'static str {
    match mode {
        "nat" => "Masq",
        "tun" => "Tunnel",
        "fullnat" => "FullNat",
        _ => "Route",
    }
}

fn fwd_switch(mode: &str) -> &'static str {
    match mode {
        "nat" => "-m",
        "tun" => "-i",
        "fullnat" => "-b",
        _ => "-g",
    }
}

fn truncated(mut s: String, n: usize) -> String {
    s.truncate(n);
    s
}

/// The service's name in listings (`TCP  addr:port`, cut at 33 bytes) or rules (`-t addr:port`).
fn svc_name(s: &SvcView, rule: bool, names: &Names, numeric: bool) -> String {
    let v = names.addrport(s.vip, s.port, &s.proto, numeric);
    if rule {
        format!("{} {v}", if s.proto == "udp" { "-u" } else { "-t" })
    } else {
        truncated(format!("{}  {v}", s.proto.to_ascii_uppercase()), 33)
    }
}

fn sorted_services<'a>(v: &'a ListView, o: &ListOpts) -> Vec<&'a SvcView> {
    let mut s: Vec<&SvcView> = v.services.iter().collect();
    if o.sort {
        s.sort_by_key(|x| (x.proto.clone(), x.vip, x.port));
    }
    s
}

fn sorted_reals<'a>(s: &'a SvcView, o: &ListOpts) -> Vec<&'a RealView> {
    let mut r: Vec<&RealView> = s.reals.iter().collect();
    if o.sort {
        r.sort_by_key(|x| (x.addr, x.port));
    }
    r
}

fn find_svc<'a>(v: &'a ListView, k: &SvcKey) -> Option<&'a SvcView> {
    v.services
        .iter()
        .find(|s| s.vip == k.vip && s.port == k.port && s.proto.eq_ignore_ascii_case(&k.proto))
}

/// `ipvsadm -L` and its variants. `Err` when `-t/-u` names no service.
pub fn format_list(v: &ListView, o: &ListOpts, names: &Names) -> Result<String, String> {
    let mut out = String::new();
    let services = match &o.svc {
        Some(k) => vec![find_svc(v, k).ok_or("No such service")?],
        None => {
            let _ = writeln!(
                out,
                "IP Virtual Server version {IPVS_VERSION} (size={})",
                v.size
            );
            sorted_services(v, o)
        }
    };
    out.push_str(&title(o));
    for s in services {
        service_entry(&mut out, s, o, names);
    }
    Ok(out)
}

/// A persistent service's mask when it groups clients, as ipvsadm prints it: an IPv4 service's
/// netmask unless all ones, an IPv6 service's prefix length unless 128.
fn persistence_mask(s: &SvcView) -> Option<String> {
    if s.vip.is_ipv6() {
        s.prefix6.filter(|&n| n != 128).map(|n| n.to_string())
    } else {
        s.netmask
            .filter(|m| *m != Ipv4Addr::BROADCAST)
            .map(|m| m.to_string())
    }
}

fn sched_flags(s: &SvcView) -> String {
    s.flags.join(",")
}

fn service_entry(out: &mut String, s: &SvcView, o: &ListOpts, names: &Names) {
    let name = svc_name(s, false, names, o.numeric);
    if o.stats {
        let _ = write!(out, "{name:<33}");
        for n in [
            s.stats.conns,
            s.stats.inpkts,
            s.stats.outpkts,
            s.stats.inbytes,
            s.stats.outbytes,
        ] {
            largenum(out, n, o.exact);
        }
    } else if o.rate {
        let _ = write!(out, "{name:<33}");
        for n in [
            s.rate.cps,
            s.rate.inpps,
            s.rate.outpps,
            s.rate.inbps,
            s.rate.outbps,
        ] {
            largenum(out, n, o.exact);
        }
    } else {
        let _ = write!(out, "{name} {}", s.scheduler);
        if !s.flags.is_empty() {
            let _ = write!(out, " ({})", sched_flags(s));
        }
        if let Some(p) = s.persistence_s {
            let _ = write!(out, " persistent {p}");
            if let Some(m) = persistence_mask(s) {
                let _ = write!(out, " mask {m}");
            }
        }
        // A flag after ipvsadm's own, as DPVS's ipvsadm lists its SYN proxy.
        match s.synproxy.as_str() {
            "on" => out.push_str(" synproxy"),
            "auto" => out.push_str(" synproxy auto"),
            _ => {}
        }
        // The per-client limit and its refusals, where ipvsadm shows persistence: one line per
        // service, as scripts that read the listing expect.
        if let Some(l) = &s.limit {
            let _ = write!(
                out,
                " limit {l} (refused {} rate, {} conns)",
                l.rate_refused, l.conns_refused
            );
        }
        // The access list in short (`gwctl acl` has every rule's count): its rules and the
        // connections it refused.
        if !s.acl.is_empty() {
            let rules = s.acl.len() - 1;
            let denied: u64 = s
                .acl
                .iter()
                .filter(|r| r.rule.starts_with("deny") || r.rule == "otherwise deny")
                .map(|r| r.hits)
                .sum();
            let _ = write!(out, " acl {rules} rules (denied {denied})");
        }
    }
    out.push('\n');
    for r in sorted_reals(s, o) {
        let d = truncated(names.addrport(r.addr, r.port, &s.proto, o.numeric), 28);
        let _ = if o.stats {
            let _ = write!(out, "  -> {d:<28}");
            for n in [
                r.stats.conns,
                r.stats.inpkts,
                r.stats.outpkts,
                r.stats.inbytes,
                r.stats.outbytes,
            ] {
                largenum(out, n, o.exact);
            }
            writeln!(out)
        } else if o.rate {
            let _ = write!(
                out,
                "  -> {d:<28} {:>8} {:>8} {:>8}",
                r.rate.cps, r.rate.inpps, r.rate.outpps
            );
            largenum(out, r.rate.inbps, o.exact);
            largenum(out, r.rate.outbps, o.exact);
            writeln!(out)
        } else if o.thresholds {
            writeln!(
                out,
                "  -> {d:<28} {:<10} {:<10} {:<10} {:<10}",
                r.upper, r.lower, r.active, r.inactive
            )
        } else if o.persistent_conn {
            writeln!(
                out,
                "  -> {d:<28} {:<9} {:<11} {:<10} {:<10}",
                r.weight, r.persist_conns, r.active, r.inactive
            )
        } else {
            writeln!(
                out,
                "  -> {d:<28} {:<7} {:<6} {:<10} {:<10}",
                fwd_name(&r.mode),
                r.weight,
                r.active,
                r.inactive
            )
        };
    }
}

/// `ipvsadm -S`: the rules that rebuild the table, local addresses (`-P`) right after their service.
pub fn format_rules(v: &ListView, o: &ListOpts, names: &Names) -> Result<String, String> {
    let services = match &o.svc {
        Some(k) => vec![find_svc(v, k).ok_or("No such service")?],
        None => sorted_services(v, o),
    };
    let mut out = String::new();
    for s in services {
        let name = svc_name(s, true, names, o.numeric);
        let _ = write!(out, "-A {name} -s {}", s.scheduler);
        if !s.flags.is_empty() {
            let _ = write!(out, " -b {}", sched_flags(s));
        }
        if let Some(p) = s.persistence_s {
            let _ = write!(out, " -p {p}");
            if let Some(m) = persistence_mask(s) {
                let _ = write!(out, " -M {m}");
            }
        }
        out.push('\n');
        for l in &s.lips {
            let _ = writeln!(out, "-P {name} -z {l}");
        }
        for r in sorted_reals(s, o) {
            let d = names.addrport(r.addr, r.port, &s.proto, o.numeric);
            let _ = write!(
                out,
                "-a {name} -r {d} {} -w {}",
                fwd_switch(&r.mode),
                r.weight
            );
            if r.upper != 0 {
                let _ = write!(out, " -x {}", r.upper);
            }
            if r.lower != 0 {
                let _ = write!(out, " -y {}", r.lower);
            }
            out.push('\n');
        }
    }
    Ok(out)
}

/// `ipvsadm -Lc`.
pub fn format_conns(conns: &[ConnInfo], numeric: bool, names: &Names) -> String {
    let mut out = format_conns_header();
    out.push_str(&format_conn_lines(conns, numeric, names));
    out
}

/// The two header lines of `ipvsadm -Lc`.
pub fn format_conns_header() -> String {
    format!(
        "IPVS connection entries\npro expire {:<11} {:<18} {:<18} destination\n",
        "state", "source", "virtual"
    )
}

/// One `ipvsadm -Lc` line per connection (a streamed listing prints them chunk by chunk).
pub fn format_conn_lines(conns: &[ConnInfo], numeric: bool, names: &Names) -> String {
    let mut out = String::new();
    for c in conns {
        let secs = c.expire_ms / 1000;
        let p = c.proto.to_ascii_lowercase();
        let src = names.addrport(c.client.0, c.client.1, &p, numeric);
        let vip = names.addrport(c.vip.0, c.vip.1, &p, numeric);
        let dst = c
            .dest
            .map_or_else(|| "-".into(), |d| names.addrport(d.0, d.1, &p, numeric));
        let _ = writeln!(
            out,
            "{:<3} {:02}:{:02}  {:<11} {src:<18} {vip:<18} {dst:<18}",
            c.proto,
            secs / 60,
            secs % 60,
            c.state
        );
    }
    out
}

/// `ipvsadm -L --daemon`: a line for the running sync daemon, as ipvsadm prints it (with the
/// gateway's peer and mode in place of IPVS's multicast interface), nothing when sync is off.
pub fn format_daemon(status: &serde_json::Value) -> String {
    match status["role"].as_str() {
        Some(role @ ("master" | "backup")) => format!(
            "{role} sync daemon (peer={}, syncid={}, mode={})\n",
            status["peer"].as_str().unwrap_or("-"),
            status["id"],
            status["mode"].as_str().unwrap_or("-")
        ),
        _ => String::new(),
    }
}

/// `ipvsadm -L --timeout`.
pub fn format_timeout(t: &TimeoutsView) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp, t.tcpfin, t.udp
    )
}

/// `ipvsadm -G` (DPVS): local addresses per service, with the connections each carries.
pub fn format_laddrs(
    v: &ListView,
    only: Option<&SvcKey>,
    conns: &[ConnInfo],
) -> Result<String, String> {
    let services: Vec<&SvcView> = match only {
        Some(k) => vec![find_svc(v, k).ok_or("No such service")?],
        None => v.services.iter().collect(),
    };
    let mut out = format!(
        "{:<20} {:<8} {:<20} {:<10} {:<10}\n",
        "VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS"
    );
    for s in services {
        let _ = writeln!(
            out,
            "{:<20} {:<8} ",
            std::net::SocketAddr::new(s.vip, s.port).to_string(),
            s.lips.len()
        );
        for (i, l) in s.lips.iter().enumerate() {
            let n = conns
                .iter()
                .filter(|c| c.vip == (s.vip, s.port) && c.local.is_some_and(|x| x.0 == *l))
                .count();
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<20} {:<10} {:<10}",
                "",
                "",
                l.to_string(),
                s.lip_conflicts.get(i).copied().unwrap_or(0),
                n
            );
        }
    }
    Ok(out)
}
