//! What a worker reports when the admin socket asks for its connections and neighbours. Runs on the
//! worker, from its housekeeping (never per packet), when a `Msg::Dump` arrives; the listing is
//! bounded by the request's limit.

use super::view::{ConnInfo, NeighInfo, WorkerDump};
use crate::conn::Conn;
use crate::datapath::Datapath;
use crate::forward::ServiceTable;

fn conn_info(worker: u16, c: &Conn, services: &ServiceTable, now_ms: u64) -> ConnInfo {
    let client = c.client();
    let reply = c.reply();
    // With a reply tuple the real server is its source; the local address is its destination when
    // that is not the client itself (FullNAT rewrites the source, NAT does not).
    let dest = reply.map(|r| (r.src_ip(), r.sport)).or_else(|| {
        let vs = services.services.get(c.svc as usize)?;
        let k = vs.svc.key(c.rs as usize)?;
        Some((k.addr, k.port))
    });
    let local = reply
        .map(|r| (r.dst_ip(), r.dport))
        .filter(|l| *l != (client.src_ip(), client.sport));
    ConnInfo {
        worker,
        proto: if c.proto() == crate::conn::PROTO_TCP {
            "TCP"
        } else {
            "UDP"
        }
        .into(),
        client: (client.src_ip(), client.sport),
        vip: (client.dst_ip(), client.dport),
        local,
        dest,
        state: c.state().name().into(),
        expire_ms: c.deadline().0.saturating_sub(now_ms),
    }
}

/// A worker's connections (at most `limit`) and neighbours.
pub fn worker_dump<B>(worker: u16, dp: &Datapath<B>, limit: usize) -> WorkerDump {
    let now = dp.l3.now_ms;
    let table = dp.fwd.table();
    let services = dp.fwd.services();
    let ports = &dp.l3.topo().ports;
    WorkerDump {
        worker,
        total: table.len() as u64,
        conns: table
            .iter()
            // Parked entries only hold a local port for the rest of TIME_WAIT (`forward::fullnat`).
            .filter(|(_, c)| !c.flags().contains(crate::forward::fullnat::PARKED))
            .take(limit)
            .map(|(_, c)| conn_info(worker, c, services, now))
            .collect(),
        neigh: dp
            .l3
            .neigh
            .entries(now)
            .map(|(ip, port, mac, state, age)| NeighInfo {
                worker,
                ip,
                port: ports
                    .get(port as usize)
                    .map_or_else(|| port.to_string(), |p| p.name.clone()),
                mac: mac.map(|m| m.to_string()),
                state: state.name().to_string(),
                age_ms: age,
            })
            .collect(),
    }
}
