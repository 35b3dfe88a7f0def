//! What a worker reports when the admin socket asks for its connections and neighbours. Runs on the
//! worker, from its housekeeping (never per packet), when a `Msg::Inspect` arrives; the listing is
//! filtered here and bounded by the request's limit.

use super::proto::ConnFilter;
use crate::conn::{Conn, Conn6};
use crate::datapath::Datapath;
use crate::forward::ServiceTable;
use crate::view::{ConnInfo, NeighInfo, WorkerDump};

fn conn_info(worker: u16, c: &Conn, services: &ServiceTable, now_ms: u64) -> ConnInfo {
    let client = c.client();
    let reply = c.reply();
    // With a reply tuple the real server is its source; the local address is its destination when
    // that is not the client itself (FullNAT rewrites the source, NAT does not).
    let dest = reply
        .map(|r| (r.src_ip().into(), r.sport))
        .or_else(|| real_of(c.svc, c.rs, services));
    let local = reply
        .map(|r| (r.dst_ip().into(), r.dport))
        .filter(|l| *l != (client.src_ip().into(), client.sport));
    ConnInfo {
        worker,
        proto: proto_name(c.proto()),
        client: (client.src_ip().into(), client.sport),
        vip: (client.dst_ip().into(), client.dport),
        local,
        dest,
        state: c.state().name().into(),
        expire_ms: c.deadline().0.saturating_sub(now_ms),
        template: false,
    }
}

/// An IPv6 connection (`inet6`): FullNAT's reply tuple names its real server and local address
/// as IPv4's does, NAT64's in IPv4-mapped addresses (RFC 4291 2.5.5.2), shown as IPv4; NAT's
/// names the real server; DR and TUN have none.
fn conn6_info(worker: u16, c: &Conn6, services: &ServiceTable, now_ms: u64) -> ConnInfo {
    let client = c.client();
    let addr = |a: std::net::Ipv6Addr| -> std::net::IpAddr {
        a.to_ipv4_mapped().map_or(a.into(), Into::into)
    };
    let reply = c.reply();
    ConnInfo {
        worker,
        proto: proto_name(c.proto()),
        client: (client.src_ip().into(), client.sport),
        vip: (client.dst_ip().into(), client.dport),
        // NAT's replies go to the client itself.
        local: reply
            .map(|r| (addr(r.dst_ip()), r.dport))
            .filter(|l| *l != (client.src_ip().into(), client.sport)),
        dest: reply
            .map(|r| (addr(r.src_ip()), r.sport))
            .or_else(|| real_of(c.svc, c.rs, services)),
        state: c.state().name().into(),
        expire_ms: c.deadline().0.saturating_sub(now_ms),
        template: false,
    }
}

fn real_of(svc: u16, rs: u16, services: &ServiceTable) -> Option<(std::net::IpAddr, u16)> {
    let vs = services.services.get(svc as usize)?;
    let k = vs.svc.key(rs as usize)?;
    Some((k.addr, k.port))
}

fn proto_name(p: u8) -> String {
    if p == crate::conn::PROTO_TCP {
        "TCP"
    } else {
        "UDP"
    }
    .into()
}

/// Table slots a worker scans for one chunk: what one `Msg::Inspect` may cost it (well under a
/// millisecond), whatever the table's size and however narrow the filter.
pub const SCAN_SLOTS: u32 = 65_536;

/// A chunk of a worker's connections that pass `filter` (at most `limit`, filtered here so that a
/// narrow question does not ship the whole table), scanning at most [`SCAN_SLOTS`] table slots
/// from slot `from`; `next` says where the following chunk starts. The IPv6 table's slots follow
/// the IPv4 table's. The first chunk (`from` 0) carries the worker's neighbours too.
pub fn worker_dump<B>(
    worker: u16,
    dp: &Datapath<B>,
    filter: &ConnFilter,
    limit: usize,
    from: u32,
) -> WorkerDump {
    let now = dp.l3.now_ms;
    let table = dp.fwd.table();
    let table6 = &dp.v6.conns;
    let services = dp.fwd.services();
    let ports = &dp.l3.topo().ports;
    let cap4 = table.capacity() as u32;
    let capacity = cap4.saturating_add(table6.capacity() as u32);
    let end = from.saturating_add(SCAN_SLOTS).min(capacity);
    let mut conns = Vec::new();
    // The slots scanned are bounded, free ones included: the table's tail is mostly free.
    let mut next = (end < capacity).then_some(end);
    // Parked entries only hold a local port for the rest of TIME_WAIT (`forward::fullnat`).
    let v4 = table
        .iter_range(from, end.min(cap4))
        .filter(|(_, c)| !c.flags().contains(crate::forward::fullnat::PARKED))
        .map(|(id, c)| (id.index(), conn_info(worker, &c, services, now)));
    let v6 = table6
        .iter_range(from.saturating_sub(cap4), end.saturating_sub(cap4))
        .filter(|(_, c)| !crate::inet6::service::parked(c))
        .map(|(id, c)| (cap4 + id.index(), conn6_info(worker, &c, services, now)));
    for (slot, info) in v4.chain(v6) {
        if !conn_matches(&info, filter) {
            continue;
        }
        if conns.len() == limit {
            next = Some(slot);
            break;
        }
        conns.push(info);
    }
    let name = |port: u16| {
        ports
            .get(port as usize)
            .map_or_else(|| port.to_string(), |p| p.name.clone())
    };
    WorkerDump {
        worker,
        total: (table.len() + table6.len()) as u64,
        conns,
        next,
        neigh: if from > 0 {
            Vec::new()
        } else {
            let v4 = dp
                .l3
                .neigh()
                .entries(now)
                .map(|(ip, port, mac, state, age)| {
                    (std::net::IpAddr::V4(ip), port, mac, state, age)
                });
            let v6 = dp.v6.neigh.entries(now).map(|(ip, port, mac, state, age)| {
                (std::net::IpAddr::V6(ip), port, mac, state, age)
            });
            v4.chain(v6)
                .map(|(ip, port, mac, state, age)| NeighInfo {
                    worker,
                    ip,
                    port: name(port),
                    mac: mac.map(|m| m.to_string()),
                    state: state.name().to_string(),
                    age_ms: age,
                })
                .collect()
        },
    }
}

/// The persistence templates of the services that pass `filter` (at most `limit`), handed to
/// `sink` in chunks of at most `chunk`, as `ipvsadm -Lc` shows IPVS's: state NONE, the client's
/// masked address (an IPv6 one cut to the service's prefix length) with port 0, the service's
/// address and port, the real server, the time left. Read on the admin thread from the shared
/// tables (`service::persist`), one shard lock at a time, so a full table (a million templates)
/// lists in bounded memory as the connections do. Returns how many were listed.
pub fn templates(
    services: &ServiceTable,
    filter: &ConnFilter,
    limit: usize,
    chunk: usize,
    now_ms: u64,
    sink: &mut dyn FnMut(Vec<ConnInfo>) -> Result<(), String>,
) -> Result<usize, String> {
    let (mut listed, mut out) = (0, Vec::new());
    if filter.worker.is_some() {
        return Ok(0);
    }
    'services: for vs in &services.services {
        let c = vs.svc.config();
        let Some(table) = vs.svc.persist_table() else {
            continue;
        };
        for shard in table.live_by_shard(now_ms) {
            for (client, t) in shard {
                // A service's clients are of its VIP's family (NAT64's too: IPv6 clients).
                let client: std::net::IpAddr = match c.vip {
                    std::net::IpAddr::V4(_) => std::net::Ipv4Addr::from(client as u32).into(),
                    std::net::IpAddr::V6(_) => std::net::Ipv6Addr::from(client).into(),
                };
                let info = ConnInfo {
                    worker: 0,
                    proto: proto_name(c.proto.number()),
                    client: (client, 0),
                    vip: (c.vip, c.vport),
                    local: None,
                    dest: Some((t.rs.addr, t.rs.port)),
                    state: "NONE".into(),
                    expire_ms: t.expires.saturating_sub(now_ms),
                    template: true,
                };
                if !conn_matches(&info, filter) {
                    continue;
                }
                if listed == limit {
                    break 'services;
                }
                listed += 1;
                out.push(info);
                if out.len() == chunk {
                    sink(std::mem::take(&mut out))?;
                }
            }
        }
    }
    if !out.is_empty() {
        sink(out)?;
    }
    Ok(listed)
}

/// Whether a connection passes every filter given.
pub fn conn_matches(c: &ConnInfo, f: &ConnFilter) -> bool {
    let opt = |want: Option<std::net::IpAddr>, have: Option<std::net::IpAddr>| {
        want.is_none() || want == have
    };
    let optp = |want: Option<u16>, have: Option<u16>| want.is_none() || want == have;
    f.proto
        .as_ref()
        .is_none_or(|p| p.eq_ignore_ascii_case(&c.proto))
        && opt(f.client, Some(c.client.0))
        && optp(f.client_port, Some(c.client.1))
        && opt(f.vip, Some(c.vip.0))
        && optp(f.vport, Some(c.vip.1))
        && opt(f.rs, c.dest.map(|d| d.0))
        && optp(f.rs_port, c.dest.map(|d| d.1))
        && f.state
            .as_ref()
            .is_none_or(|s| s.eq_ignore_ascii_case(&c.state))
        && f.worker.is_none_or(|w| w == c.worker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn filters_select_connections() {
        let c = ConnInfo {
            worker: 1,
            ..ConnInfo::lab_example(1000)
        };
        assert!(conn_matches(&c, &ConnFilter::default()));
        let f = ConnFilter {
            proto: Some("tcp".into()),
            state: Some("established".into()),
            rs: Some(Ipv4Addr::new(10, 20, 0, 11).into()),
            ..Default::default()
        };
        assert!(conn_matches(&c, &f));
        assert!(!conn_matches(
            &c,
            &ConnFilter {
                rs: Some(Ipv4Addr::new(10, 20, 0, 12).into()),
                ..Default::default()
            }
        ));
        assert!(!conn_matches(
            &c,
            &ConnFilter {
                worker: Some(0),
                ..Default::default()
            }
        ));
        assert!(!conn_matches(
            &c,
            &ConnFilter {
                client_port: Some(1),
                ..Default::default()
            }
        ));
    }

    /// The lab's service made persistent (60 s, netmask /24), with three templates: two live on
    /// rs1 and rs2, one expired.
    fn persistent_lab() -> ServiceTable {
        let text = crate::testkit::LAB_CONFIG.replacen(
            "scheduler = \"wrr\"",
            "scheduler = \"wrr\"\npersistence_s = 60\npersistence_netmask = \"255.255.255.0\"",
            1,
        );
        let v = crate::config::Config::parse(&text)
            .unwrap()
            .validate()
            .unwrap();
        let services = ServiceTable::new(1, v.services, None).unwrap();
        let svc = &services.services[0].svc;
        let table = svc.persist_table().unwrap();
        let (rs1, rs2) = (svc.key(0).unwrap(), svc.key(1).unwrap());
        let client = |a: [u8; 4]| u128::from(u32::from(Ipv4Addr::from(a)));
        table.resolve(
            client([10, 10, 0, 0]),
            1_000,
            60_000,
            |_| None,
            || Some((0, rs1)),
        );
        table.resolve(
            client([10, 10, 7, 0]),
            1_000,
            30_000,
            |_| None,
            || Some((1, rs2)),
        );
        table.resolve(
            client([10, 10, 9, 0]),
            1_000,
            1_000,
            |_| None,
            || Some((1, rs2)),
        );
        services
    }

    #[test]
    fn templates_list_as_ipvsadm_shows_them() {
        let services = persistent_lab();
        let list = |f: &ConnFilter, limit: usize| {
            let mut got = Vec::new();
            let n = templates(&services, f, limit, 1, 11_000, &mut |mut c| {
                assert_eq!(c.len(), 1, "chunks of 1");
                got.append(&mut c);
                Ok(())
            })
            .unwrap();
            assert_eq!(n, got.len());
            // Each shard in client order; the test's clients, whatever their shards, sorted.
            got.sort_by_key(|c| c.client);
            got
        };
        let all = list(&ConnFilter::default(), 100);
        let vip = (Ipv4Addr::new(10, 10, 0, 100).into(), 80);
        assert_eq!(
            all,
            vec![
                ConnInfo {
                    worker: 0,
                    proto: "TCP".into(),
                    client: (Ipv4Addr::new(10, 10, 0, 0).into(), 0),
                    vip,
                    local: None,
                    dest: Some((Ipv4Addr::new(10, 20, 0, 11).into(), 80)),
                    state: "NONE".into(),
                    expire_ms: 50_000,
                    template: true,
                },
                ConnInfo {
                    client: (Ipv4Addr::new(10, 10, 7, 0).into(), 0),
                    dest: Some((Ipv4Addr::new(10, 20, 0, 12).into(), 80)),
                    expire_ms: 20_000,
                    ..all[0].clone()
                },
            ],
            "the expired one (10.10.9.0) is not listed"
        );
        let rs2 = ConnFilter {
            rs: Some(Ipv4Addr::new(10, 20, 0, 12).into()),
            state: Some("none".into()),
            ..Default::default()
        };
        assert_eq!(list(&rs2, 100), all[1..]);
        assert_eq!(list(&ConnFilter::default(), 1).len(), 1);
        let worker = ConnFilter {
            worker: Some(0),
            ..Default::default()
        };
        assert!(list(&worker, 100).is_empty());
        let established = ConnFilter {
            state: Some("ESTABLISHED".into()),
            ..Default::default()
        };
        assert!(list(&established, 100).is_empty());
    }
}
