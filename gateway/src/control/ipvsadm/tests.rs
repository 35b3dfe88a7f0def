use super::*;
use crate::control::proto::{RealOpts, SvcOpts};
use crate::view::{ConnInfo, Counters, ListView, Rates, RealView, SvcView, TimeoutsView};
use std::net::{IpAddr, Ipv4Addr};

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn p(s: &str) -> Result<Cmd, ParseError> {
    parse(&args(s), &names())
}

fn names() -> Names {
    Names::from_files(
        "http\t\t80/tcp\t\twww\t# WorldWideWeb HTTP\ndomain 53/udp\n",
        "10.20.0.11 rs1 rs1.lab\n",
    )
}

fn key(port: u16) -> SvcKey {
    SvcKey {
        proto: "tcp".into(),
        vip: Ipv4Addr::new(192, 16, 1, 16).into(),
        port,
    }
}

#[test]
fn seed_commands_parse() {
    assert_eq!(
        p("-A -t 192.16.1.16:80 -s rr").unwrap(),
        Cmd::Apply(Change::AddService {
            svc: key(80),
            opts: SvcOpts {
                scheduler: Some("rr".into()),
                ..Default::default()
            }
        })
    );
    assert!(matches!(
        p("-E -t 192.16.1.16:80 -s wlc").unwrap(),
        Cmd::Apply(Change::EditService { .. })
    ));
    assert_eq!(p("-C").unwrap(), Cmd::Apply(Change::Clear));
    assert_eq!(
        p("-a -t 192.16.1.16:80 -r 192.16.1.11 -g -w 1").unwrap(),
        Cmd::Apply(Change::AddReal {
            svc: key(80),
            real: RealOpts {
                addr: Ipv4Addr::new(192, 16, 1, 11).into(),
                port: None,
                weight: 1,
                mode: "dr".into(),
                upper: 0,
                lower: 0
            }
        })
    );
    assert_eq!(
        p("-d -t 192.16.1.16:80 -r 192.16.0.11").unwrap(),
        Cmd::Apply(Change::DelReal {
            svc: key(80),
            addr: Ipv4Addr::new(192, 16, 0, 11).into(),
            port: None
        })
    );
    match p("-e -t 192.16.1.16:80 -r 192.16.0.11:80 -m -w 2").unwrap() {
        Cmd::Apply(Change::EditReal { real, .. }) => assert_eq!(
            (real.mode.as_str(), real.weight, real.port),
            ("nat", 2, Some(80))
        ),
        c => panic!("{c:?}"),
    }
    let l = |s: &str| match p(s).unwrap() {
        Cmd::List(o) => o,
        c => panic!("{c:?}"),
    };
    let o = l("-Lcn");
    assert!(o.conns && o.numeric);
    assert!(l("-L --rate").rate);
    assert!(l("-L --sort").sort);
    assert!(l("-L --stats").stats);
    assert!(l("-L --timeout").timeout);
    assert!(l("-l -n --stats --exact").exact);
    assert!(matches!(
        p("-Sn").unwrap(),
        Cmd::Save(ListOpts { numeric: true, .. })
    ));
    assert_eq!(p("-R").unwrap(), Cmd::Restore);
    assert_eq!(p("-Z").unwrap(), Cmd::Zero);
}

#[test]
fn options_in_all_spellings() {
    match p("-A -t 10.0.0.1:http -s sh -b sh-fallback,sh-port -p -M 255.255.255.0").unwrap() {
        Cmd::Apply(Change::AddService { svc, opts }) => {
            assert_eq!(svc.port, 80);
            assert_eq!(opts.flags, vec!["sh-fallback", "sh-port"]);
            assert_eq!(opts.persistence_s, Some(300));
            assert_eq!(opts.netmask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        }
        c => panic!("{c:?}"),
    }
    match p("--add-service --udp-service 10.0.0.1:53 --scheduler=rr --persistent 60").unwrap() {
        Cmd::Apply(Change::AddService { svc, opts }) => {
            assert_eq!(
                (svc.proto.as_str(), svc.port, opts.persistence_s),
                ("udp", 53, Some(60))
            );
        }
        c => panic!("{c:?}"),
    }
    match p("-a -t 10.0.0.1:80 -r rs1:8080 -b -w 3 -x 100 -y 50").unwrap() {
        Cmd::Apply(Change::AddReal { real, .. }) => {
            assert_eq!(real.addr, Ipv4Addr::new(10, 20, 0, 11));
            assert_eq!(
                (
                    real.port,
                    real.mode.as_str(),
                    real.weight,
                    real.upper,
                    real.lower
                ),
                (Some(8080), "fullnat", 3, 100, 50)
            );
        }
        c => panic!("{c:?}"),
    }
    assert_eq!(
        p("-P -t 10.0.0.1:80 -z 10.20.0.200 -F server").unwrap(),
        Cmd::Apply(Change::AddLaddr {
            svc: SvcKey {
                vip: Ipv4Addr::new(10, 0, 0, 1).into(),
                ..key(80)
            },
            addr: Ipv4Addr::new(10, 20, 0, 200).into()
        })
    );
    assert_eq!(p("-G").unwrap(), Cmd::Laddrs(None));
    assert_eq!(
        p("--set 900 120 300").unwrap(),
        Cmd::SetTimeouts(900, 120, 300)
    );
}

#[test]
fn sync_daemon_commands_map_onto_the_sync_role() {
    assert_eq!(
        p("--start-daemon master --mcast-interface eth0 --syncid 5").unwrap(),
        Cmd::StartDaemon("master".into())
    );
    assert_eq!(
        p("--stop-daemon=backup").unwrap(),
        Cmd::StopDaemon("backup".into())
    );
    assert!(matches!(p("-L --daemon").unwrap(), Cmd::List(o) if o.daemon));
    let e = p("--start-daemon primary").unwrap_err().0;
    assert!(e.contains("master or backup"), "{e}");
    assert!(p("--start-daemon").is_err());
    let st =
        serde_json::json!({"role": "backup", "peer": "10.20.0.1:8848", "id": 7, "mode": "auto"});
    assert_eq!(
        format_daemon(&st),
        "backup sync daemon (peer=10.20.0.1:8848, syncid=7, mode=auto)\n"
    );
    assert_eq!(format_daemon(&serde_json::json!({"role": "off"})), "");
}

#[test]
fn bad_input_is_named() {
    let e = |s: &str| p(s).unwrap_err().0;
    assert!(e("-A -t 10.0.0.300:80").starts_with("illegal virtual server address[:port] specified"));
    assert!(
        e("-A -t 10.0.0.1:99999").starts_with("illegal virtual server address[:port] specified")
    );
    assert!(e("-A -t 10.0.0.1").starts_with("illegal virtual server address[:port] specified"));
    assert!(e("-A -t 10.0.0.1:0 -p 60").starts_with("port 0 (a persistent service of every port)"));
    assert!(e("-a -t 10.0.0.1:80 -r 10.0.0.2:0")
        .starts_with("illegal real server address[:port] specified"));
    assert!(e("-a -t 10.0.0.1:80 -r 10.0.0.2 -w 70000").starts_with("illegal weight specified"));
    assert!(e("-a -t 10.0.0.1:80 -r 10.0.0.2 -w x").starts_with("illegal weight specified"));
    assert!(e("-A -t 10.0.0.1:80 -p 0").starts_with("illegal timeout for persistent service"));
    assert!(e("-A -a -t 10.0.0.1:80").contains("multiple commands"));
    assert!(e("-A").contains("-t or -u"));
    assert!(e("-a -t 10.0.0.1:80").contains("-r"));
    assert!(e("-X").contains("unknown option: -X"));
    assert!(e("--bogus").contains("--bogus"));
    assert!(e("-A -t 10.0.0.1:80 -s").contains("requires an argument"));
    assert_eq!(p("").unwrap(), Cmd::List(ListOpts::default()));
    assert!(matches!(
        p("-n").unwrap(),
        Cmd::List(ListOpts { numeric: true, .. })
    ));
    assert!(e("-t 10.0.0.1:80 -x 3 -y").contains("requires an argument"));
}

#[test]
fn restore_lines_name_their_line() {
    let input = "# comment\n-A -t 10.0.0.1:80 -s rr\n\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 1\n";
    let v = parse_restore(input, &names()).unwrap();
    assert_eq!(v.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 4]);
    let e = parse_restore("-A -t 10.0.0.1:80\n-L\n", &names()).unwrap_err();
    assert!(e.0.starts_with("line 2:"), "{e}");
    let e = parse_restore("-A -t bad:80\n", &names()).unwrap_err();
    assert!(e.0.starts_with("line 1: illegal virtual server"), "{e}");
}

#[test]
fn largenum_matches_ipvsadm() {
    let f = |i: u64, exact: bool| {
        let mut s = String::new();
        largenum(&mut s, i, exact);
        s
    };
    assert_eq!(f(0, false), "        0");
    assert_eq!(f(99_999_999, false), " 99999999");
    assert_eq!(f(100_000_000, false), "  100000K");
    assert_eq!(f(1_000_000_000, false), "    1000M");
    assert_eq!(f(100_000_000_000, false), "     100G");
    assert_eq!(f(100_000_000_000_000, false), "     100T");
    assert_eq!(f(123_456_789_012, true), " 123456789012");
    assert_eq!(f(12, true), "       12");
}

fn view() -> ListView {
    let real = |last: u8, mode: &str, w: u32, a: u32, i: u32| RealView {
        addr: Ipv4Addr::new(10, 20, 0, last).into(),
        port: 80,
        weight: w,
        mode: mode.into(),
        active: a,
        inactive: i,
        ..Default::default()
    };
    ListView {
        generation: 3,
        size: 4096,
        services: vec![
            SvcView {
                proto: "tcp".into(),
                vip: Ipv4Addr::new(10, 10, 0, 100).into(),
                port: 80,
                scheduler: "wrr".into(),
                lips: vec![Ipv4Addr::new(10, 20, 0, 200).into()],
                reals: vec![real(12, "fullnat", 2, 3, 4), real(11, "fullnat", 1, 10, 0)],
                stats: Counters {
                    conns: 5,
                    inpkts: 123_456_789,
                    outpkts: 7,
                    inbytes: 8,
                    outbytes: 9,
                },
                rate: Rates {
                    cps: 1,
                    inpps: 2,
                    outpps: 3,
                    inbps: 4,
                    outbps: 5,
                },
                ..Default::default()
            },
            SvcView {
                proto: "udp".into(),
                vip: Ipv4Addr::new(10, 10, 0, 53).into(),
                port: 53,
                scheduler: "sh".into(),
                flags: vec!["sh-port".into()],
                persistence_s: Some(300),
                netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                reals: vec![real(11, "nat", 1, 0, 1)],
                ..Default::default()
            },
        ],
    }
}

#[test]
fn persistent_conn_shows_each_servers_templates() {
    let mut v = view();
    v.services[1].reals[0].persist_conns = 17;
    let o = ListOpts {
        numeric: true,
        persistent_conn: true,
        ..Default::default()
    };
    let out = format_list(&v, &o, &names()).unwrap();
    let line = out
        .lines()
        .find(|l| l.contains("10.20.0.11:80") && out.contains("UDP"));
    assert!(line.is_some());
    let udp_real = out.lines().last().unwrap();
    assert_eq!(
        udp_real.split_whitespace().collect::<Vec<_>>(),
        ["->", "10.20.0.11:80", "1", "17", "0", "1"],
        "{out}"
    );
}

#[test]
fn list_formats_are_ipvsadms() {
    let o = ListOpts {
        numeric: true,
        ..Default::default()
    };
    let out = format_list(&view(), &o, &names()).unwrap();
    assert_eq!(
        out,
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  10.10.0.100:80 wrr\n\
         \x20 -> 10.20.0.12:80                FullNat 2      3          4         \n\
         \x20 -> 10.20.0.11:80                FullNat 1      10         0         \n\
         UDP  10.10.0.53:53 sh (sh-port) persistent 300 mask 255.255.255.0\n\
         \x20 -> 10.20.0.11:80                Masq    1      0          1         \n"
    );
    // Names from the files without -n; --sort orders services and servers.
    let o = ListOpts {
        sort: true,
        ..Default::default()
    };
    let out = format_list(&view(), &o, &names()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[3], "TCP  10.10.0.100:http wrr");
    assert_eq!(
        lines[4],
        "  -> rs1:http                     FullNat 1      10         0         "
    );
    assert_eq!(
        lines[6],
        "UDP  10.10.0.53:domain sh (sh-port) persistent 300 mask 255.255.255.0"
    );
    let o = ListOpts {
        numeric: true,
        stats: true,
        ..Default::default()
    };
    let out = format_list(&view(), &o, &names()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[1],
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
    );
    assert_eq!(lines[2], "  -> RemoteAddress:Port");
    assert_eq!(
        lines[3],
        "TCP  10.10.0.100:80                      5  123456K        7        8        9"
    );
    let o = ListOpts {
        numeric: true,
        rate: true,
        ..Default::default()
    };
    let out = format_list(&view(), &o, &names()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[1],
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS"
    );
    assert_eq!(
        lines[3],
        "TCP  10.10.0.100:80                      1        2        3        4        5"
    );
    assert_eq!(
        lines[4],
        "  -> 10.20.0.12:80                       0        0        0        0        0"
    );
    let o = ListOpts {
        numeric: true,
        thresholds: true,
        ..Default::default()
    };
    let out = format_list(&view(), &o, &names()).unwrap();
    assert_eq!(
        out.lines().nth(1).unwrap(),
        "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn"
    );
    let o = ListOpts {
        numeric: true,
        svc: Some(SvcKey {
            proto: "udp".into(),
            vip: Ipv4Addr::new(10, 10, 0, 53).into(),
            port: 53,
        }),
        ..Default::default()
    };
    let out = format_list(&view(), &o, &names()).unwrap();
    assert!(
        out.starts_with("Prot LocalAddress:Port Scheduler Flags\n"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 4);
    let o = ListOpts {
        svc: Some(key(81)),
        ..Default::default()
    };
    assert_eq!(
        format_list(&view(), &o, &names()).unwrap_err(),
        "No such service"
    );
}

/// IPv6 as ipvsadm takes and prints it: in brackets, with or without a port; a bare IPv6
/// address is refused (its colons would be read as the port's).
#[test]
fn ipv6_services_in_brackets_everywhere() {
    let vip: IpAddr = "2001:db8:10::100".parse().unwrap();
    let rip: IpAddr = "2001:db8:20::11".parse().unwrap();
    match p("-A -t [2001:db8:10::100]:http -s rr").unwrap() {
        Cmd::Apply(Change::AddService { svc, .. }) => {
            assert_eq!((svc.vip, svc.port), (vip, 80));
            assert_eq!(svc.to_string(), "TCP [2001:db8:10::100]:80");
        }
        other => panic!("{other:?}"),
    }
    match p("-a -t [2001:db8:10::100]:80 -r [2001:db8:20::11] -g -w 2").unwrap() {
        Cmd::Apply(Change::AddReal { real, .. }) => {
            assert_eq!((real.addr, real.port, real.weight), (rip, None, 2));
        }
        other => panic!("{other:?}"),
    }
    match p("-d -t [2001:db8:10::100]:80 -r [2001:db8:20::11]:8080").unwrap() {
        Cmd::Apply(Change::DelReal { addr, port, .. }) => {
            assert_eq!((addr, port), (rip, Some(8080)));
        }
        other => panic!("{other:?}"),
    }
    let e = |s: &str| p(s).unwrap_err().0;
    assert!(e("-A -t 2001:db8::1:80").starts_with("illegal virtual server address"));
    assert!(e("-A -t [2001:db8::1]80").starts_with("illegal virtual server address"));
    assert!(e("-A -t [10.0.0.1]:80").starts_with("illegal virtual server address"));
    // Listed and saved bracketed; the saved rules restore the same service.
    let mut v = view();
    v.services.truncate(1);
    v.services[0].vip = vip;
    v.services[0].lips.clear();
    for r in &mut v.services[0].reals {
        r.mode = "dr".into();
    }
    v.services[0].reals[0].addr = rip;
    v.services[0].reals.truncate(1);
    let o = ListOpts {
        numeric: true,
        ..Default::default()
    };
    let rules = format_rules(&v, &o, &names()).unwrap();
    assert_eq!(
        rules,
        "-A -t [2001:db8:10::100]:80 -s wrr\n\
         -a -t [2001:db8:10::100]:80 -r [2001:db8:20::11]:80 -g -w 2\n"
    );
    let list = format_list(&v, &o, &names()).unwrap();
    assert!(list.contains("TCP  [2001:db8:10::100]:80 wrr"), "{list}");
    assert!(list.contains("  -> [2001:db8:20::11]:80"), "{list}");
    let changes = parse_restore(&rules, &names()).unwrap();
    let mut m = crate::control::model::Model::default();
    m.apply_all(&changes.into_iter().map(|c| c.1).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(m.services[0].vip, "2001:db8:10::100");
    assert_eq!(m.services[0].reals[0].address, "2001:db8:20::11");
    let c = ConnInfo {
        worker: 0,
        proto: "TCP".into(),
        client: ("2001:db8:10::2".parse::<IpAddr>().unwrap(), 40000),
        vip: (vip, 80),
        local: None,
        dest: Some((rip, 80)),
        state: "ESTABLISHED".into(),
        expire_ms: 899_500,
        template: false,
    };
    let out = format_conn_lines(std::slice::from_ref(&c), true, &names());
    assert!(
        out.contains("[2001:db8:10::2]:40000 [2001:db8:10::100]:80 [2001:db8:20::11]:80"),
        "{out}"
    );
}

#[test]
fn rules_rebuild_what_they_describe() {
    let o = ListOpts {
        numeric: true,
        ..Default::default()
    };
    let rules = format_rules(&view(), &o, &names()).unwrap();
    assert_eq!(
        rules,
        "-A -t 10.10.0.100:80 -s wrr\n\
         -P -t 10.10.0.100:80 -z 10.20.0.200\n\
         -a -t 10.10.0.100:80 -r 10.20.0.12:80 -b -w 2\n\
         -a -t 10.10.0.100:80 -r 10.20.0.11:80 -b -w 1\n\
         -A -u 10.10.0.53:53 -s sh -b sh-port -p 300 -M 255.255.255.0\n\
         -a -u 10.10.0.53:53 -r 10.20.0.11:80 -m -w 1\n"
    );
    let changes = parse_restore(&rules, &names()).unwrap();
    let mut m = crate::control::model::Model::default();
    m.apply_all(&changes.into_iter().map(|c| c.1).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(m.services.len(), 2);
    assert_eq!(m.services[0].local_addresses, vec!["10.20.0.200"]);
    assert_eq!(m.services[1].scheduler_flags, vec!["sh-port"]);
    assert_eq!(
        m.services[1].persistence_netmask.as_deref(),
        Some("255.255.255.0")
    );
    assert_eq!(m.services[1].reals[0].mode, "nat");
}

/// An IPv6 service's `-M` is a prefix length, as ipvsadm takes it: listed as `mask 64`, saved as
/// `-M 64`, restored to the same; an IPv4 netmask for it, or a prefix length for an IPv4 service,
/// is refused with ipvsadm's words.
#[test]
fn an_ipv6_services_netmask_is_a_prefix_length() {
    match p("-A -t [2001:db8:10::100]:80 -s rr -p 120 -M 64").unwrap() {
        Cmd::Apply(Change::AddService { opts, .. }) => {
            assert_eq!((opts.netmask, opts.prefix6), (None, Some(64)));
        }
        c => panic!("{c:?}"),
    }
    for (cmd, err) in [
        (
            "-A -t [2001:db8:10::100]:80 -p -M 255.255.255.0",
            "illegal ipv6 netmask specified: 255.255.255.0",
        ),
        (
            "-A -t [2001:db8:10::100]:80 -p -M 0",
            "illegal ipv6 netmask specified: 0",
        ),
        (
            "-A -t [2001:db8:10::100]:80 -p -M 129",
            "illegal ipv6 netmask specified: 129",
        ),
        (
            "-A -t 10.10.0.100:80 -p -M 24",
            "illegal virtual server persistent mask specified: 24",
        ),
    ] {
        assert_eq!(p(cmd).unwrap_err().0, err, "{cmd}");
    }
    let rules = "-A -t [2001:db8:10::100]:80 -s rr -p 120 -M 64\n\
                 -A -t [2001:db8:10::101]:80 -s rr -p 120\n";
    let changes = parse_restore(rules, &names()).unwrap();
    let mut m = crate::control::model::Model::default();
    m.apply_all(&changes.into_iter().map(|c| c.1).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(m.services[0].persistence_netmask.as_deref(), Some("64"));
    assert_eq!(
        m.services[1].persistence_netmask, None,
        "128 is the default"
    );
    let v = view_of(&m);
    let numeric = ListOpts {
        numeric: true,
        ..Default::default()
    };
    assert_eq!(format_rules(&v, &numeric, &names()).unwrap(), rules);
    let listed = format_list(&v, &numeric, &names()).unwrap();
    assert!(
        listed.contains("TCP  [2001:db8:10::100]:80 rr persistent 120 mask 64\n"),
        "{listed}"
    );
    assert!(
        listed.contains("TCP  [2001:db8:10::101]:80 rr persistent 120\n"),
        "{listed}"
    );
}

#[test]
fn connection_and_other_listings() {
    let c = ConnInfo::lab_example(899_500);
    let out = format_conns(std::slice::from_ref(&c), true, &names());
    assert_eq!(
        out,
        "IPVS connection entries\n\
         pro expire state       source             virtual            destination\n\
         TCP 14:59  ESTABLISHED 10.10.0.2:40000    10.10.0.100:80     10.20.0.11:80     \n"
    );
    let t = TimeoutsView {
        tcp: 900,
        tcpfin: 120,
        udp: 300,
        ..Default::default()
    };
    assert_eq!(
        format_timeout(&t),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    let mut v = view();
    v.services[0].lip_conflicts = vec![42];
    let g = format_laddrs(&v, None, &[c]).unwrap();
    let lines: Vec<&str> = g.lines().collect();
    assert_eq!(
        lines[0],
        "VIP:VPORT            TOTAL    SNAT_IP              CONFLICTS  CONNS     "
    );
    assert_eq!(lines[1], "10.10.0.100:80       1        ");
    assert_eq!(
        lines[2],
        "                              10.20.0.200          42         1         "
    );
    // An IPv6 VIP in brackets, as everywhere else.
    v.services[0].vip = "2001:db8:10::100".parse().unwrap();
    let g = format_laddrs(&v, None, &[]).unwrap();
    assert_eq!(g.lines().nth(1), Some("[2001:db8:10::100]:80 1        "));
}

/// The listing view of a model (what the daemon would answer after applying it).
fn view_of(m: &crate::control::model::Model) -> ListView {
    let services = m
        .services
        .iter()
        .map(|e| SvcView {
            proto: e.protocol.clone(),
            vip: e.vip.parse().unwrap(),
            port: e.port,
            scheduler: e.scheduler.clone(),
            flags: e.scheduler_flags.clone(),
            persistence_s: e.persistence_s,
            netmask: e
                .persistence_netmask
                .as_ref()
                .filter(|_| !e.vip.contains(':'))
                .map(|n| n.parse().unwrap()),
            prefix6: e
                .persistence_netmask
                .as_ref()
                .filter(|_| e.vip.contains(':'))
                .map(|n| n.parse().unwrap()),
            lips: e
                .local_addresses
                .iter()
                .map(|a| a.parse().unwrap())
                .collect(),
            reals: e
                .reals
                .iter()
                .map(|r| RealView {
                    addr: r.address.parse().unwrap(),
                    port: r.port.unwrap_or(e.port),
                    weight: r.weight,
                    mode: r.mode.clone(),
                    upper: r.upper,
                    lower: r.lower,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    ListView {
        services,
        ..Default::default()
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn real() -> impl Strategy<Value = RealView> {
        (
            1u8..=8,
            1u16..=3,
            0u32..=65535,
            0usize..4,
            0u32..=3,
            0u32..=3,
        )
            .prop_map(|(a, p, w, m, u, l)| RealView {
                addr: Ipv4Addr::new(10, 20, 0, a).into(),
                port: 8000 + p,
                weight: w,
                mode: ["fullnat", "nat", "dr", "tun"][m].into(),
                upper: u * 10,
                lower: l,
                ..Default::default()
            })
    }

    fn service() -> impl Strategy<Value = SvcView> {
        (
            any::<bool>(),
            1u8..=5,
            1u16..=4,
            0usize..13,
            (any::<bool>(), any::<bool>()),
            proptest::option::of(1u32..100_000),
            proptest::option::of(8u8..=31),
            proptest::collection::btree_set(200u8..=203, 0..3),
            proptest::collection::vec(real(), 0..5),
        )
            .prop_map(|(udp, v, port, s, (fb, hp), p, mask, lips, mut reals)| {
                let sched = crate::service::SchedKind::ALL[s];
                let pre = if sched == crate::service::SchedKind::Mh {
                    "mh"
                } else {
                    "sh"
                };
                let mut flags = Vec::new();
                if fb {
                    flags.push(format!("{pre}-fallback"));
                }
                if hp {
                    flags.push(format!("{pre}-port"));
                }
                reals.dedup_by_key(|r| (r.addr, r.port));
                let mut seen = std::collections::HashSet::new();
                reals.retain(|r| seen.insert((r.addr, r.port)));
                SvcView {
                    proto: if udp { "udp" } else { "tcp" }.into(),
                    vip: Ipv4Addr::new(10, 10, 0, v).into(),
                    port,
                    scheduler: sched.name().into(),
                    flags,
                    persistence_s: p.or(mask.map(|_| 300)),
                    netmask: mask.map(|m| Ipv4Addr::from(u32::MAX << (32 - m))),
                    lips: lips
                        .into_iter()
                        .map(|l| Ipv4Addr::new(10, 20, 0, l).into())
                        .collect(),
                    reals,
                    ..Default::default()
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// `-S` output fed to `-R` rebuilds a table whose `-S` output is the same, byte for byte.
        #[test]
        fn save_then_restore_is_identity(mut services in proptest::collection::vec(service(), 0..6)) {
            let mut seen = std::collections::HashSet::new();
            services.retain(|s| seen.insert((s.proto.clone(), s.vip, s.port)));
            let v = ListView { services, ..Default::default() };
            let o = ListOpts { numeric: true, ..Default::default() };
            let rules = format_rules(&v, &o, &Names::default()).unwrap();
            let changes: Vec<Change> = parse_restore(&rules, &Names::default()).unwrap().into_iter().map(|c| c.1).collect();
            let mut m = crate::control::model::Model::default();
            m.apply_all(&changes).unwrap();
            prop_assert_eq!(format_rules(&view_of(&m), &o, &Names::default()).unwrap(), rules);
        }
    }
}
