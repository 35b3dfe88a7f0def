use super::*;
use crate::view::{Counters, RealView};
use std::collections::HashMap;

/// The value of one sample line `name{labels} value` (labels as written), from the text alone.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

fn real(addr: [u8; 4], weight: u32, active: u32, conns: u64, inbytes: u64) -> RealView {
    RealView {
        addr: addr.into(),
        port: 80,
        weight,
        mode: "fullnat".into(),
        upper: 0,
        lower: 0,
        active,
        inactive: 1,
        persist_conns: 0,
        stats: Counters {
            conns,
            inpkts: conns * 3,
            outpkts: conns * 2,
            inbytes,
            outbytes: inbytes * 10,
        },
        rate: Default::default(),
    }
}

fn snapshot() -> Snapshot {
    let svc = SvcView {
        proto: "tcp".into(),
        vip: [10, 10, 0, 100].into(),
        port: 80,
        scheduler: "wrr".into(),
        flags: vec![],
        persistence_s: None,
        netmask: None,
        prefix6: None,
        lips: vec![],
        lip_conflicts: vec![],
        toa: false,
        acl: vec![
            crate::view::AclRuleView {
                rule: "deny 10.10.0.66/32".into(),
                hits: 4,
            },
            crate::view::AclRuleView {
                rule: "otherwise allow".into(),
                hits: 9,
            },
        ],
        synproxy: "on".into(),
        limit: Some(crate::view::LimitView {
            rate: 50,
            burst: 50,
            max_conns: 0,
            prefix: 32,
            action: "drop".into(),
            rate_refused: 12,
            conns_refused: 0,
        }),
        reals: vec![
            real([10, 20, 0, 2], 3, 5, 100, 1000),
            real([10, 20, 0, 3], 0, 0, 7, 70),
        ],
        stats: Counters::default(),
        rate: Default::default(),
    };
    let mut w0 = WorkerStats {
        rx_packets: 11,
        ..Default::default()
    };
    w0.drops[crate::stats::Drop::NoRoute as usize] = 4;
    w0.fwd.conns = 9;
    w0.lip_usage = vec![(
        crate::forward::LipKey {
            proto: 6,
            vip: [10, 10, 0, 100].into(),
            vport: 80,
            lip: [10, 20, 0, 1].into(),
        },
        9,
    )];
    // What the workers count, which the IPVS-wide totals sum: the real servers' (rs2's split
    // between the workers), a real server removed from the service, a removed service.
    let key = |rip: [u8; 4]| crate::forward::TrafficKey {
        proto: 6,
        vip: [10, 10, 0, 100].into(),
        vport: 80,
        rip: rip.into(),
        rport: 80,
    };
    let traffic = |conns: u64, inbytes: u64| crate::forward::Traffic {
        conns,
        inpkts: conns * 3,
        outpkts: conns * 2,
        inbytes,
        outbytes: inbytes * 10,
        ..Default::default()
    };
    w0.traffic = vec![
        (key([10, 20, 0, 2]), traffic(60, 600)),
        (key([10, 20, 0, 3]), traffic(7, 70)),
    ];
    let w1 = WorkerStats {
        rx_packets: 22,
        traffic: vec![
            (key([10, 20, 0, 2]), traffic(40, 400)),
            (
                crate::forward::TrafficKey::retired(6, [10, 10, 0, 100].into(), 80),
                traffic(5, 50),
            ),
            (crate::forward::TrafficKey::REMOVED_SERVICES, traffic(3, 30)),
        ],
        ..Default::default()
    };
    Snapshot {
        services: vec![svc],
        workers: vec![w0, w1],
        conn_capacity: 1024,
        ports: vec![PortSample {
            name: "client".into(),
            driver: "net_af_packet".into(),
            up: true,
            rx_packets: 5,
            ..Default::default()
        }],
        health: vec![HealthSample {
            proto: 6,
            vip: [10, 10, 0, 100].into(),
            vport: 80,
            rs: [10, 20, 0, 3].into(),
            rs_port: 80,
            up: false,
            checks: 12,
            failures: 3,
        }],
        mbufs: Some((100, 900)),
        generation: 7,
        sync: Some(crate::sync::Status {
            role: crate::sync::Role::Backup,
            last_from_peer_ms: Some(250),
            received_records: 44,
            refused_bad_mac: 2,
            lost_msgs: 3,
            ..Default::default()
        }),
    }
}

#[test]
fn the_sync_role_lag_and_refusals_are_shown() {
    let text = render(&snapshot());
    let s = samples(&text);
    let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
    assert_eq!(get("gateway_sync_role{role=\"backup\"}"), 1.0);
    assert_eq!(get("gateway_sync_role{role=\"master\"}"), 0.0);
    assert_eq!(get("gateway_sync_peer_last_heard_milliseconds"), 250.0);
    assert_eq!(get("gateway_sync_received_records_total"), 44.0);
    assert_eq!(get("gateway_sync_refused_total{reason=\"bad_mac\"}"), 2.0);
    assert_eq!(get("gateway_sync_lost_messages_total"), 3.0);
    let mut none = snapshot();
    none.sync = None;
    assert!(!render(&none).contains("gateway_sync_role"));
}

const RS2: &str = "local_address=\"10.10.0.100\",local_port=\"80\",remote_address=\"10.20.0.2\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"";

#[test]
fn node_exporter_names_and_labels_carry_each_real_server() {
    let text = render(&snapshot());
    let s = samples(&text);
    let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
    assert_eq!(get(&format!("node_ipvs_backend_weight{{{RS2}}}")), 3.0);
    assert_eq!(
        get(&format!("node_ipvs_backend_connections_active{{{RS2}}}")),
        5.0
    );
    assert_eq!(
        get(&format!("node_ipvs_backend_connections_inactive{{{RS2}}}")),
        1.0
    );
    assert_eq!(
        get(&format!("gateway_backend_connections_total{{{RS2}}}")),
        100.0
    );
    assert_eq!(
        get(&format!("gateway_backend_outgoing_bytes_total{{{RS2}}}")),
        10000.0
    );
    // The IPVS-wide totals are the sums of what the workers count: the real servers', a removed
    // real server's, a removed service's.
    assert_eq!(get("node_ipvs_connections_total"), 115.0);
    assert_eq!(get("node_ipvs_incoming_bytes_total"), 1150.0);
    assert_eq!(get("node_ipvs_incoming_packets_total"), 345.0);
    assert!(text.contains("# TYPE node_ipvs_connections_total counter"));
    assert!(text.contains("# TYPE node_ipvs_backend_weight gauge"));
}

#[test]
fn workers_ports_health_and_tables_are_labelled() {
    let text = render(&snapshot());
    let s = samples(&text);
    let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
    assert_eq!(get("gateway_rx_packets_total{worker=\"0\"}"), 11.0);
    assert_eq!(get("gateway_rx_packets_total{worker=\"1\"}"), 22.0);
    assert_eq!(
        get("gateway_drops_total{worker=\"0\",reason=\"no_route\"}"),
        4.0
    );
    assert_eq!(get("gateway_connection_table_entries{worker=\"0\"}"), 9.0);
    assert_eq!(
        get("gateway_connection_table_capacity{worker=\"1\"}"),
        1024.0
    );
    assert_eq!(
        get("gateway_lip_ports_in_use{worker=\"0\",local_address=\"10.10.0.100\",local_port=\"80\",proto=\"TCP\",lip=\"10.20.0.1\"}"),
        9.0
    );
    assert_eq!(
        get("gateway_port_rx_packets_total{port=\"client\",driver=\"net_af_packet\"}"),
        5.0
    );
    assert_eq!(
        get("gateway_port_up{port=\"client\",driver=\"net_af_packet\"}"),
        1.0
    );
    let rs3 = "local_address=\"10.10.0.100\",local_port=\"80\",remote_address=\"10.20.0.3\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"";
    assert_eq!(get(&format!("gateway_backend_health_up{{{rs3}}}")), 0.0);
    assert_eq!(
        get(&format!(
            "gateway_backend_health_check_failures_total{{{rs3}}}"
        )),
        3.0
    );
    assert_eq!(get("gateway_mbufs_in_use"), 100.0);
    assert_eq!(
        get("gateway_acl_hits_total{local_address=\"10.10.0.100\",local_port=\"80\",proto=\"TCP\",rule=\"deny 10.10.0.66/32\"}"),
        4.0
    );
    assert_eq!(
        get("gateway_limit_refused_total{local_address=\"10.10.0.100\",local_port=\"80\",proto=\"TCP\",reason=\"rate\"}"),
        12.0
    );
    assert_eq!(get("gateway_config_generation"), 7.0);
    // A level is a gauge, not a counter; no sample is a total of the worker's drops.
    assert!(!text.contains("gateway_conns_total"), "{text}");
    assert!(
        !text.contains("gateway_drops_total{worker=\"0\"}"),
        "{text}"
    );
}

#[test]
fn every_family_is_declared_once_and_names_are_valid() {
    let text = render(&snapshot());
    let mut types = std::collections::HashSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(types.insert(name.to_string()), "{name} declared twice");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{name}"
            );
        }
    }
    assert!(types.len() > 40, "{}", types.len());
}
