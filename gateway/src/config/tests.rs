use super::*;

/// The lab's config, dual-stack: IPv6 on both ports and an IPv6 DR service (`extra` keys in it,
/// `real` its real server's lines), plus `tail`.
fn dual(extra: &str, real: &str, tail: &str) -> String {
    crate::testkit::dual_stack(crate::testkit::LAB_CONFIG)
        + &format!(
            "\n[[service]]\nvip = \"2001:db8:10::100\"\nport = 80\n{extra}\n[[service.real]]\n{real}\n{tail}"
        )
}

#[test]
fn ipv6_config_is_checked_key_by_key() {
    let dr = "address = \"2001:db8:20::11\"\nmode = \"dr\"";
    let fullnat = "address = \"2001:db8:20::11\"";
    let v = Config::parse(&dual("", dr, ""))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(v.port_addrs6[1][0].to_string(), "2001:db8:20::1/64");
    assert_eq!(v.services.len(), 3);
    let lip = |a: &str| format!("local_addresses = [\"{a}\"]");
    let v = Config::parse(&dual(&lip("2001:db8:20::200"), fullnat, ""))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(
        v.services[2].2.lips6,
        ["2001:db8:20::200".parse::<Ipv6Addr>().unwrap()]
    );
    let route = |via: &str| {
        format!("\n[[route]]\nprefix = \"2001:db8:40::/48\"\nvia = \"{via}\"\nport = \"server\"\n")
    };
    let v = Config::parse(&dual("", dr, &route("2001:db8:20::254")))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(v.routes6.len(), 1);
    assert!(Config::parse(&dual("", dr, &route("fe80::1")))
        .unwrap()
        .validate()
        .is_ok());
    let nat = "address = \"2001:db8:20::11\"\nmode = \"nat\"";
    assert!(Config::parse(&dual("", nat, ""))
        .unwrap()
        .validate()
        .is_ok());
    // The SYN proxy, for FullNAT to IPv6 real servers.
    let proxied = format!("synproxy = \"on\"\n{}", lip("2001:db8:20::200"));
    assert!(Config::parse(&dual(&proxied, fullnat, ""))
        .unwrap()
        .validate()
        .is_ok());
    assert!(Config::parse(&dual(&proxied, nat, ""))
        .unwrap()
        .validate()
        .is_ok());
    let v4_real = "address = \"10.20.0.11\"\nmode = \"dr\"";
    let nat64 = dual(&lip("10.20.0.210"), "address = \"10.20.0.11\"", "");
    assert!(Config::parse(&nat64).unwrap().validate().is_ok(), "NAT64");
    // An IPv6 service's persistence netmask is a prefix length, as `ipvsadm -M 64` gives it.
    let per_64 = Config::parse(&dual("persistence_netmask = \"64\"", dr, ""))
        .unwrap()
        .validate()
        .unwrap();
    let p = per_64.services[2].0.persistence.unwrap();
    assert_eq!((p.prefix6, p.netmask), (64, std::net::Ipv4Addr::BROADCAST));
    let cases = [
        (
            dual("", v4_real, ""),
            "service[2].real[0].mode",
            "(NAT64) forwards by fullnat",
        ),
        (
            dual(&lip("10.20.0.200"), "address = \"10.20.0.11\"", ""),
            "service[2].local_addresses",
            "NAT64 local address",
        ),
        (
            dual("", fullnat, ""),
            "service[2].local_addresses",
            "at least one",
        ),
        (
            dual(&lip("10.20.0.210"), fullnat, ""),
            "service[2].local_addresses",
            "of its family (IPv6)",
        ),
        (
            dual(&lip("2001:db8:99::200"), fullnat, ""),
            "local_addresses[0]",
            "IPv6 prefix",
        ),
        (
            dual(&lip("2001:db8:20::1"), fullnat, ""),
            "local_addresses[0]",
            "interface",
        ),
        (
            dual("acl = [\"allow 2001:db8::1/64\"]", dr, ""),
            "service[2].acl",
            "host bits",
        ),
        (
            dual("synproxy = \"on\"", dr, ""),
            "service[2].synproxy",
            "is dr: the SYN proxy needs FullNAT or NAT",
        ),
        (
            dual(
                &format!("synproxy = \"on\"\n{}", lip("10.20.0.210")),
                "address = \"10.20.0.11\"",
                "",
            ),
            "service[2].synproxy",
            "is IPv4 (NAT64)",
        ),
        (
            dual("persistence_netmask = \"255.0.0.0\"", dr, ""),
            "persistence_netmask",
            "IPv6",
        ),
        (
            dual("persistence_netmask = \"129\"", dr, ""),
            "persistence_netmask",
            "not a prefix length (1 to 128)",
        ),
        (
            dual("", dr, "").replace("vip = \"2001:db8:10::100\"", "vip = \"fe80::100\""),
            "service[2].vip",
            "global unicast",
        ),
        (
            dual("", dr, "").replace("\"2001:db8:20::1/64\"", "\"2001:db8:10::1/64\""),
            "addresses[1]",
            "assigned twice",
        ),
        (
            dual("", dr, &route("2001:db8:99::1")),
            "route[0].via",
            "neither link-local",
        ),
        (
            dual(
                "",
                dr,
                &route("2001:db8:20::254").replace("40::/48", "40::1/48"),
            ),
            "route[0].prefix",
            "host bits",
        ),
    ];
    for (text, key, why) in cases {
        let e = match Config::parse(&text) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        assert!(e.contains(key) && e.contains(why), "{key}: {e}");
    }
}

#[test]
fn one_vip_has_one_owner_and_kernel_ownership_needs_a_twin() {
    let text = crate::testkit::LAB_CONFIG.replacen(
        "scheduler = \"rr\"",
        "scheduler = \"rr\"\nowner = \"kernel\"",
        1,
    );
    assert_ne!(text, crate::testkit::LAB_CONFIG);
    let refused = |t: &str| match Config::parse(t) {
        Err(e) => e.to_string(),
        Ok(c) => c.validate().unwrap_err().to_string(),
    };
    let e = refused(&text);
    assert!(
        e.contains("service[1].owner") && e.contains("both owners"),
        "{e}"
    );
    let all = crate::testkit::LAB_CONFIG.replace("scheduler =", "owner = \"kernel\"\nscheduler =");
    let v = Config::parse(&all).unwrap().validate().unwrap();
    assert_eq!(v.kernel_owned, [Ipv4Addr::new(10, 10, 0, 100)]);
    let none = crate::testkit::without_twins(&all);
    let e = refused(&none);
    assert!(e.contains("needs a port with a twin"), "{e}");
}

#[test]
fn announce_keys_are_checked() {
    let refused = |extra: &str, key: &str| {
        let text = format!("{}{extra}", crate::testkit::LAB_CONFIG);
        let e = match Config::parse(&text) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        assert!(e.contains(key), "{extra}: {e}");
    };
    for t in [0, 253, 254, 255] {
        refused(&format!("\n[announce]\ntable = {t}\n"), "announce.table");
    }
    refused("\n[announce]\n", "table");
    refused(
        "\n[announce]\ntable = 100\ndrain_timeout_s = 0\n",
        "announce.drain_timeout_s",
    );
    refused(
        "\n[announce]\ntable = 100\nwithdraw_wait_ms = 10001\n",
        "announce.withdraw_wait_ms",
    );
    refused("\n[announce]\ntable = 100\nlearn = true\n", "learn");
    let ok = format!("{}\n[announce]\ntable = 100\n", crate::testkit::LAB_CONFIG);
    let c = Config::parse(&ok).unwrap();
    assert!(c.validate().is_ok());
    let a = c.announce.unwrap();
    assert_eq!(
        (a.table, a.drain_timeout_s, a.withdraw_wait_ms),
        (100, 30, 500)
    );
}

#[test]
fn metrics_listen_must_be_an_address_and_port() {
    for bad in ["9101", "localhost:9101", "127.0.0.1", "1.2.3.4:99999"] {
        let text = format!(
            "{}\n[metrics]\nlisten = \"{bad}\"\n",
            crate::testkit::LAB_CONFIG
        );
        let e = match Config::parse(&text) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        assert!(
            e.contains("metrics.listen") && e.contains(bad),
            "{bad}: {e}"
        );
    }
    let text = format!("{}\n[metrics]\nport = 1\n", crate::testkit::LAB_CONFIG);
    assert!(Config::parse(&text).is_err());
    let text = format!(
        "{}\n[metrics]\nlisten = \"[::1]:9101\"\n",
        crate::testkit::LAB_CONFIG
    );
    let c = Config::parse(&text).unwrap();
    assert!(c.validate().is_ok());
    assert_eq!(c.metrics.unwrap().addr().unwrap().port(), 9101);
}

#[test]
fn max_half_open_is_bounded_by_the_capacity_and_defaults_to_half() {
    let with = |extra: &str| {
        let text = format!("{}\n[conn]\n{extra}\n", crate::testkit::LAB_CONFIG);
        Config::parse(&text).and_then(|c| c.validate().map(|_| c))
    };
    for bad in ["max_half_open = 0", "max_half_open = 2000000"] {
        let e = with(bad).unwrap_err().to_string();
        assert!(e.contains("conn.max_half_open"), "{bad}: {e}");
    }
    let c = with("max_half_open = 100").unwrap();
    assert_eq!(c.conn.half_open_limit(c.conn.capacity), 100);
    let c = with("").unwrap();
    assert_eq!(c.conn.half_open_limit(c.conn.capacity), c.conn.capacity / 2);
    assert_eq!(c.conn.half_open_limit(1), 1);
}

#[test]
fn sync_settings_are_checked_and_name_the_key_at_fault() {
    let key = "00112233445566778899aabbccddeeff";
    let with = |section: &str| {
        let text = format!("{}\n[sync]\n{section}\n", crate::testkit::LAB_CONFIG);
        Config::parse(&text).and_then(|c| {
            c.validate()?;
            c.sync.as_ref().unwrap().settings(&c.ports)
        })
    };
    let s = with(&format!(
        "port = \"server\"\npeer = \"10.20.0.2\"\nkey = \"{key}\""
    ))
    .unwrap();
    assert_eq!(
        (s.mode, s.local, s.udp_port, s.refresh_ms, s.key.len()),
        (
            crate::sync::RoleMode::Auto,
            "10.20.0.1".parse().unwrap(),
            8848,
            10_000,
            16
        )
    );
    assert_eq!(s.id, u32::from_be_bytes([10, 20, 0, 1]));
    let refused = |section: String, what: &str| {
        let e = with(&section).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains(what), "{section}: {e}");
    };
    let base =
        |extra: &str| format!("port = \"server\"\npeer = \"10.20.0.2\"\nkey = \"{key}\"\n{extra}");
    refused(base("role = \"primary\""), "sync.role");
    refused(base("address = \"10.20.0.9\""), "sync.address");
    refused(base("refresh_s = 0"), "sync.refresh_s");
    refused(base("max_msgs_per_s = 0"), "sync.max_msgs_per_s");
    refused(
        "port = \"server\"\npeer = \"10.20.0.2\"\nkey = \"00ff\"".to_string(),
        "sync.key",
    );
    refused(
        format!("port = \"server\"\npeer = \"10.20.0.1\"\nkey = \"{key}\""),
        "sync.peer",
    );
    refused(
        format!("port = \"nowhere\"\npeer = \"10.20.0.2\"\nkey = \"{key}\""),
        "sync.port",
    );
    let none = format!(
        "{}\n[sync]\n{}\n",
        crate::testkit::without_twins(crate::testkit::LAB_CONFIG),
        base("")
    );
    let e = Config::parse(&none).and_then(|c| c.validate()).map(|_| ());
    assert!(e.unwrap_err().to_string().contains("no kernel twin"));
}

#[test]
fn synproxy_settings_are_checked_and_refused_where_it_cannot_work() {
    let with = |svc_extra: &str, section: &str| {
        let text = format!(
            "{}\n[synproxy]\n{section}\n",
            crate::testkit::LAB_CONFIG.replacen(
                "scheduler = \"wrr\"",
                &format!("scheduler = \"wrr\"\n{svc_extra}"),
                1
            )
        );
        Config::parse(&text).and_then(|c| c.validate())
    };
    let v = with("synproxy = \"auto\"", "").unwrap();
    assert_eq!(
        v.services[0].2.synproxy,
        crate::forward::synproxy::Mode::Auto
    );
    let refused = |svc: &str, section: &str, key: &str| {
        let e = with(svc, section).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains(key), "{svc} / {section}: {e}");
    };
    refused("synproxy = \"maybe\"", "", "service[0].synproxy");
    let dr = crate::testkit::LAB_CONFIG
        .replacen(
            "scheduler = \"wrr\"",
            "scheduler = \"wrr\"\nsynproxy = \"on\"",
            1,
        )
        .replacen(
            "address = \"10.20.0.12\"\n",
            "address = \"10.20.0.12\"\nmode = \"dr\"\n",
            1,
        );
    let e = Config::parse(&dr)
        .and_then(|c| c.validate())
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("FullNAT or NAT"), "{e}");
    refused("", "wscale = 15", "synproxy.wscale");
    refused("", "mss = 100", "synproxy.mss");
    refused("", "auto_half_open = 0", "synproxy.auto_half_open");
    refused("", "key = \"00ff\"", "synproxy.key");
    let udp = crate::testkit::LAB_CONFIG.replacen(
        "scheduler = \"rr\"",
        "scheduler = \"rr\"\nsynproxy = \"on\"",
        1,
    );
    let e = Config::parse(&udp)
        .and_then(|c| c.validate())
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("TCP"), "{e}");
    let key = "0123456789abcdef".repeat(4);
    assert!(with("", &format!("key = \"{key}\"")).is_ok());
}

#[test]
fn sloppy_tcp_defaults_to_on_for_mh_only() {
    let opts = |sched: &str, extra: &str| {
        let text = crate::testkit::LAB_CONFIG.replacen(
            "scheduler = \"wrr\"",
            &format!("scheduler = \"{sched}\"\n{extra}"),
            1,
        );
        Config::parse(&text).unwrap().validate().unwrap().services[0]
            .2
            .clone()
    };
    assert!(opts("mh", "").sloppy_tcp);
    assert!(!opts("wrr", "").sloppy_tcp);
    assert!(!opts("mh", "sloppy_tcp = false").sloppy_tcp);
    assert!(opts("rr", "sloppy_tcp = true").sloppy_tcp);
}

#[test]
fn held_packets_and_frames_must_fit_the_pool() {
    let refused = |extra: &str, key: &str| {
        let text = format!("{}{extra}", crate::testkit::LAB_CONFIG);
        let e = match Config::parse(&text) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        assert!(e.contains(key), "{extra}: {e}");
    };
    refused(
        "\n[mempool]\nmbufs = 2047\n[neighbour]\nmax_held = 1024\n",
        "neighbour.max_held",
    );
    refused(
        "\n[mempool]\nmbufs = 2047\n[fragments]\nmax_held = 1024\n",
        "fragments.max_held",
    );
    refused(
        "\n[fragments]\nmax_datagrams = 0\n",
        "fragments.max_datagrams",
    );
    refused("\n[fragments]\ntimeout_ms = 5\n", "fragments.timeout_ms");
    let jumbo = crate::testkit::LAB_CONFIG.replacen(
        "addresses = [\"10.10.0.1/24\"]",
        "addresses = [\"10.10.0.1/24\"]\nmtu = 9000",
        1,
    );
    let e = Config::parse(&jumbo)
        .and_then(|c| c.validate().map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("port[0].mtu") && e.contains("data_room"), "{e}");
    let roomy = jumbo.clone() + "\n[mempool]\ndata_room = 9216\n";
    assert!(Config::parse(&roomy).unwrap().validate().is_ok());
}

/// What the rings leave of the pool at start must cover what the workers may hold: each of 2
/// workers holds up to 256 packets for neighbours and 256 fragments per family (IPv4, IPv6),
/// 512 parked by the SYN proxy, a burst of 32 received and a transmit buffer of 128 waiting on
/// each of its 2 ports and 2 kernel twins; and 3 lcore caches of 32.
#[test]
fn the_pool_left_after_the_rings_must_cover_the_traffic() {
    let text = format!(
        "{}\n[mempool]\nmbufs = 2048\ncache = 32\n",
        crate::testkit::LAB_CONFIG.replacen("[workers]\ncount = 1", "[workers]\ncount = 2", 1)
    );
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.workers.count, 2);
    let need = 2 * (2 * (256 + 256) + 512 + 32 + 128 * 4) + 3 * 32;
    assert_eq!(c.mbufs_for_traffic(), need);
    assert!(c.check_mbufs_left(need as u32).is_ok());
    // Two tap twins of 2 queues took 512 mbufs a queue: nothing left.
    let e = c.check_mbufs_left(0).unwrap_err().to_string();
    assert!(
        e.contains("mempool.mbufs")
            && e.contains("took 2048")
            && e.contains("leaving 0")
            && e.contains(&format!("at least {}", 2048 + need)),
        "{e}"
    );
    assert!(c.check_mbufs_left(need as u32 - 1).is_err());
}

#[test]
fn expire_quiescent_template_reaches_the_persistence_of_its_service() {
    for on in [false, true] {
        let text = crate::testkit::LAB_CONFIG.replacen(
            "scheduler = \"wrr\"",
            &format!("scheduler = \"wrr\"\npersistence_s = 60\nexpire_quiescent_template = {on}"),
            1,
        );
        let v = Config::parse(&text).unwrap().validate().unwrap();
        let p = v.services[0].0.persistence.expect("persistent");
        assert_eq!(p.expire_quiescent, on);
    }
    let bad = crate::testkit::LAB_CONFIG.to_string() + "\n[conn]\nconn_reuse_mode = 4\n";
    let e = match Config::parse(&bad) {
        Err(e) => e.to_string(),
        Ok(c) => c.validate().unwrap_err().to_string(),
    };
    assert!(e.contains("conn.conn_reuse_mode"), "{e}");
}

const GOOD: &str = r#"
[eal]
file_prefix = "t1"
no_huge = true
memory_mb = 256

[workers]
count = 2
cpus = [0, 1]
idle_sleep_us = 100

[[port]]
name = "client"
device = "net_af_packet0,iface=lb-c,qpairs=2"
addresses = ["10.10.0.1/24"]

[[port]]
name = "server"
device = "0000:03:00.0"
addresses = ["10.20.0.1/24", "10.20.0.200/24"]

[[route]]
prefix = "0.0.0.0/0"
via = "10.10.0.254"
port = "client"
"#;

fn err_of(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn good_config_parses_and_builds_eal_args() {
    let c = Config::parse(GOOD).unwrap();
    let v = c.validate().unwrap();
    assert_eq!(v.port_addrs[1].len(), 2);
    assert_eq!(v.routes[0].2, 0);
    let args = c.eal_args().join(" ");
    assert!(args.contains("--lcores 0@0,1@0,2@1"), "{args}");
    assert!(args.contains("--vdev net_af_packet0,iface=lb-c,qpairs=2"));
    assert!(args.contains("-a 0000:03:00.0"));
    assert!(!args.contains("--no-pci"));
    assert!(args.contains("--no-huge --no-shconf"));
    assert!(args.contains("--file-prefix t1"));
}

#[test]
fn unknown_key_is_named() {
    let e = err_of(&GOOD.replace("idle_sleep_us", "idle_sleeep_us"));
    assert!(e.contains("idle_sleeep_us"), "{e}");
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        (
            GOOD.replace("10.10.0.1/24", "10.10.0.1/33"),
            "port[0].addresses[0]",
        ),
        (
            GOOD.replace("10.10.0.1/24", "10.10.0.300/24"),
            "port[0].addresses[0]",
        ),
        (GOOD.replace("count = 2", "count = 0"), "workers.count"),
        (GOOD.replace("cpus = [0, 1]", "cpus = [0]"), "workers.cpus"),
        (
            GOOD.replace("via = \"10.10.0.254\"", "via = \"10.99.0.254\""),
            "route[0].via",
        ),
        (
            GOOD.replace("port = \"client\"", "port = \"nope\""),
            "route[0].port",
        ),
        (GOOD.replace("0.0.0.0/0", "10.0.0.1/8"), "route[0].prefix"),
        (GOOD.replace("0000:03:00.0", "eth0"), "port[1].device"),
        (
            GOOD.replace("name = \"server\"", "name = \"client\""),
            "port[1].name",
        ),
        (
            GOOD.replace("10.20.0.200/24", "10.10.0.1/24"),
            "port[1].addresses[1]",
        ),
        (
            GOOD.replace("file_prefix = \"t1\"", "file_prefix = \"a/b\""),
            "eal.file_prefix",
        ),
    ];
    for (text, key) in cases {
        let e = err_of(&text);
        assert!(e.starts_with(key), "expected error naming {key}, got: {e}");
    }
}

#[test]
fn wrong_type_is_refused() {
    let e = err_of(&GOOD.replace("count = 2", "count = \"two\""));
    assert!(e.contains("count"), "{e}");
}

#[test]
fn pci_addresses_are_recognised() {
    assert!(is_pci_addr("0000:03:00.0"));
    assert!(is_pci_addr("03:00.1"));
    assert!(!is_pci_addr("net_ring0"));
    assert!(!is_pci_addr("0000:03:00"));
}
