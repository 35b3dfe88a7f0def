//! ipvsadm's command line: getopt-style clusters, long options, optional values (`-p [timeout]`),
//! turned into a [`Cmd`]; and `ipvsadm -R`'s input, a command line a line.

use super::{Cmd, ListOpts, Names, ParseError};
use crate::control::proto::{Change, RealOpts, SvcKey, SvcOpts};
use std::net::{IpAddr, Ipv4Addr};

fn perr<T>(m: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(m.into()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    AddSvc,
    EditSvc,
    DelSvc,
    Clear,
    Restore,
    Save,
    AddReal,
    EditReal,
    DelReal,
    List,
    Zero,
    Set,
    StartDaemon,
    StopDaemon,
    AddLaddr,
    DelLaddr,
    GetLaddr,
    Help,
    Version,
}

fn command_of(c: char) -> Option<Command> {
    Some(match c {
        'A' => Command::AddSvc,
        'E' => Command::EditSvc,
        'D' => Command::DelSvc,
        'C' => Command::Clear,
        'R' => Command::Restore,
        'S' => Command::Save,
        'a' => Command::AddReal,
        'e' => Command::EditReal,
        'd' => Command::DelReal,
        'L' | 'l' => Command::List,
        'Z' => Command::Zero,
        'P' => Command::AddLaddr,
        'Q' => Command::DelLaddr,
        'G' => Command::GetLaddr,
        'h' => Command::Help,
        'v' => Command::Version,
        _ => return None,
    })
}

/// Long options and the short letter they stand for ('\0' for long-only ones, named by themselves).
const LONG: &[(&str, char)] = &[
    ("add-service", 'A'),
    ("edit-service", 'E'),
    ("delete-service", 'D'),
    ("clear", 'C'),
    ("restore", 'R'),
    ("save", 'S'),
    ("add-server", 'a'),
    ("edit-server", 'e'),
    ("delete-server", 'd'),
    ("list", 'L'),
    ("zero", 'Z'),
    ("add-laddr", 'P'),
    ("del-laddr", 'Q'),
    ("get-laddr", 'G'),
    ("help", 'h'),
    ("version", 'v'),
    ("tcp-service", 't'),
    ("udp-service", 'u'),
    ("scheduler", 's'),
    ("persistent", 'p'),
    ("netmask", 'M'),
    ("real-server", 'r'),
    ("gatewaying", 'g'),
    ("ipip", 'i'),
    ("masquerading", 'm'),
    ("fullnat", 'b'),
    ("weight", 'w'),
    ("u-threshold", 'x'),
    ("l-threshold", 'y'),
    ("numeric", 'n'),
    ("connection", 'c'),
    ("laddr", 'z'),
    ("ifname", 'F'),
];

/// Options whose value is required.
fn takes_arg(c: char) -> bool {
    matches!(
        c,
        't' | 'u' | 's' | 'M' | 'r' | 'w' | 'x' | 'y' | 'z' | 'F' | 'f'
    )
}

#[derive(Default)]
struct Opts {
    cmd: Option<Command>,
    svc: Option<SvcKey>,
    sched: Option<String>,
    flags: Vec<String>,
    persist: Option<u32>,
    /// `-M` as given: an IPv4 netmask or an IPv6 prefix length, told apart once the service's
    /// family is known (`persistence_mask`).
    netmask: Option<String>,
    real: Option<(IpAddr, Option<u16>)>,
    mode: Option<&'static str>,
    weight: Option<u32>,
    upper: Option<u32>,
    lower: Option<u32>,
    laddr: Option<IpAddr>,
    list: ListOpts,
    set: Vec<u32>,
    daemon_role: Option<String>,
}

/// Parses ipvsadm's arguments (without the program name).
pub fn parse(args: &[String], names: &Names) -> Result<Cmd, ParseError> {
    let mut o = Opts::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            match name {
                "stats" => o.list.stats = true,
                "rate" => o.list.rate = true,
                "exact" => o.list.exact = true,
                "timeout" => o.list.timeout = true,
                "sort" => o.list.sort = true,
                "thresholds" => o.list.thresholds = true,
                "persistent-conn" => o.list.persistent_conn = true,
                "nosort" => o.list.sort = false,
                "daemon" => o.list.daemon = true,
                "start-daemon" | "stop-daemon" => {
                    let c = if name == "start-daemon" {
                        Command::StartDaemon
                    } else {
                        Command::StopDaemon
                    };
                    set_cmd(&mut o, c)?;
                    let v = value(inline, args, &mut i, &format!("--{name}"))?;
                    if v != "master" && v != "backup" {
                        return perr(format!("--{name} takes master or backup, not {v}"));
                    }
                    o.daemon_role = Some(v);
                }
                // IPVS's own sync transport; the gateway's is `[sync]` in its config.
                "mcast-interface" | "syncid" | "sync-maxlen" | "mcast-group" | "mcast-port"
                | "mcast-ttl" => {
                    value(inline, args, &mut i, &format!("--{name}"))?;
                }
                "set" => {
                    set_cmd(&mut o, Command::Set)?;
                    for _ in 0..3 {
                        let v = args.get(i).ok_or_else(|| {
                            ParseError("--set needs three timeouts: tcp tcpfin udp".into())
                        })?;
                        i += 1;
                        o.set.push(
                            v.parse().map_err(|_| {
                                ParseError(format!("illegal timeout specified: {v}"))
                            })?,
                        );
                    }
                }
                "sched-flags" => {
                    let v = value(inline, args, &mut i, "--sched-flags")?;
                    o.flags
                        .extend(v.split(',').filter(|f| !f.is_empty()).map(String::from));
                }
                _ => {
                    let Some(&(_, c)) = LONG.iter().find(|(n, _)| *n == name) else {
                        return perr(format!("unknown option: --{name}"));
                    };
                    let val = if takes_arg(c) {
                        Some(value(inline, args, &mut i, &format!("--{name}"))?)
                    } else if c == 'p' {
                        inline.or_else(|| optional(args, &mut i))
                    } else {
                        None
                    };
                    apply_opt(&mut o, c, val, names)?;
                }
            }
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let rest: String = chars[j..].iter().collect();
                let sched_flags =
                    c == 'b' && matches!(o.cmd, Some(Command::AddSvc | Command::EditSvc));
                let val = if takes_arg(c)
                    || (sched_flags && (!rest.is_empty() || next_is_value(args, i)))
                {
                    j = chars.len();
                    if !rest.is_empty() {
                        Some(rest)
                    } else {
                        Some(value(None, args, &mut i, &format!("-{c}"))?)
                    }
                } else if c == 'p' {
                    j = chars.len();
                    if rest.is_empty() {
                        optional(args, &mut i)
                    } else {
                        Some(rest)
                    }
                } else {
                    None
                };
                if sched_flags && val.is_some() {
                    o.flags.extend(
                        val.unwrap_or_default()
                            .split(',')
                            .filter(|f| !f.is_empty())
                            .map(String::from),
                    );
                    continue;
                }
                apply_opt(&mut o, c, val, names)?;
            }
        } else {
            return perr(format!("unexpected argument: {a}"));
        }
    }
    build(o)
}

fn next_is_value(args: &[String], i: usize) -> bool {
    args.get(i).is_some_and(|a| !a.starts_with('-'))
}

fn value(
    inline: Option<String>,
    args: &[String],
    i: &mut usize,
    opt: &str,
) -> Result<String, ParseError> {
    if let Some(v) = inline {
        return Ok(v);
    }
    let v = args
        .get(*i)
        .ok_or_else(|| ParseError(format!("option {opt} requires an argument")))?;
    *i += 1;
    Ok(v.clone())
}

fn optional(args: &[String], i: &mut usize) -> Option<String> {
    if next_is_value(args, *i) {
        *i += 1;
        Some(args[*i - 1].clone())
    } else {
        None
    }
}

fn set_cmd(o: &mut Opts, c: Command) -> Result<(), ParseError> {
    match o.cmd {
        Some(prev) if prev != c => perr("multiple commands specified"),
        _ => {
            o.cmd = Some(c);
            Ok(())
        }
    }
}

fn num<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, ParseError> {
    v.parse()
        .map_err(|_| ParseError(format!("illegal {what} specified: {v}")))
}

fn apply_opt(o: &mut Opts, c: char, val: Option<String>, names: &Names) -> Result<(), ParseError> {
    let v = val.unwrap_or_default();
    if let Some(cmd) = command_of(c) {
        return set_cmd(o, cmd);
    }
    match c {
        't' | 'u' => {
            let proto = if c == 't' { "tcp" } else { "udp" };
            let (vip, port) = parse_addr_port(&v, proto, names)
                .filter(|(_, p)| p.is_some())
                .ok_or_else(|| {
                    ParseError(format!(
                        "illegal virtual server address[:port] specified: {v}"
                    ))
                })?;
            // IPVS takes port 0 for a persistent service of every port of the VIP (ipvsadm:
            // "Zero port specified for non-persistent service" without -p); not built here.
            if port == Some(0) {
                return perr(format!(
                    "port 0 (a persistent service of every port) is not supported: {v}; \
                     add a service for each port"
                ));
            }
            o.svc = Some(SvcKey {
                proto: proto.into(),
                vip,
                port: port.unwrap_or(0),
            });
        }
        'f' => return perr("firewall-mark services are not supported"),
        's' => o.sched = Some(v),
        'p' => {
            o.persist = Some(match v.as_str() {
                "" => crate::service::DEFAULT_PERSIST_TIMEOUT_S,
                _ => match v.parse::<u32>() {
                    Ok(t) if t > 0 => t,
                    _ => return perr(format!("illegal timeout for persistent service: {v}")),
                },
            })
        }
        'M' => o.netmask = Some(v),
        'r' => {
            let proto = o
                .svc
                .as_ref()
                .map_or("tcp", |s| s.proto.as_str())
                .to_string();
            let r = parse_addr_port(&v, &proto, names)
                .filter(|(_, p)| *p != Some(0))
                .ok_or_else(|| {
                    ParseError(format!("illegal real server address[:port] specified: {v}"))
                })?;
            o.real = Some(r);
        }
        'g' => o.mode = Some("dr"),
        'i' => o.mode = Some("tun"),
        'm' => o.mode = Some("nat"),
        'b' => o.mode = Some("fullnat"),
        'w' => {
            o.weight = Some(num::<u32>(&v, "weight").and_then(|w| {
                if w > 65535 {
                    perr(format!("illegal weight specified: {v}"))
                } else {
                    Ok(w)
                }
            })?)
        }
        'x' => o.upper = Some(num(&v, "u_threshold")?),
        'y' => o.lower = Some(num(&v, "l_threshold")?),
        'n' => o.list.numeric = true,
        'c' => o.list.conns = true,
        'z' => {
            // An IPv6 local address bare or in brackets.
            let bare = v.strip_prefix('[').and_then(|x| x.strip_suffix(']'));
            o.laddr = Some(
                bare.unwrap_or(&v)
                    .parse()
                    .map_err(|_| ParseError(format!("illegal local address specified: {v}")))?,
            )
        }
        'F' => {}
        '6' => return perr("IPv6 is not supported"),
        _ => return perr(format!("unknown option: -{c}")),
    }
    Ok(())
}

/// `addr[:port]` with names from /etc/hosts and /etc/services; an IPv6 address in brackets,
/// `[2001:db8::1]:80` or `[2001:db8::1]`, as ipvsadm's `parse_service` takes it.
fn parse_addr_port(s: &str, proto: &str, names: &Names) -> Option<(IpAddr, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (a, after) = rest.split_once(']')?;
        let p = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        let addr = IpAddr::V6(a.parse().ok()?);
        let port = match p {
            None => None,
            Some(p) => Some(p.parse().ok().or_else(|| names.service_port(p, proto))?),
        };
        return Some((addr, port));
    }
    let (a, p) = match s.rsplit_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    // An IPv4 address or a name: a bare IPv6 address (colons, no brackets) is refused, as
    // ipvsadm refuses it.
    let addr = a
        .parse::<Ipv4Addr>()
        .ok()
        .map(IpAddr::V4)
        .or_else(|| names.host_addr(a))?;
    let port = match p {
        None => None,
        Some(p) => Some(p.parse().ok().or_else(|| names.service_port(p, proto))?),
    };
    Some((addr, port))
}

/// `-M`'s value for the service's family, as ipvsadm reads it: an IPv4 service's is a netmask
/// (`255.255.255.0`), an IPv6 service's a prefix length from 1 to 128 (`64`).
fn persistence_mask(
    svc: Option<&SvcKey>,
    mask: Option<&str>,
) -> Result<(Option<Ipv4Addr>, Option<u8>), ParseError> {
    let Some(v) = mask else {
        return Ok((None, None));
    };
    if svc.is_some_and(|s| s.vip.is_ipv6()) {
        match v.parse::<u8>() {
            Ok(n @ 1..=128) => Ok((None, Some(n))),
            _ => perr(format!("illegal ipv6 netmask specified: {v}")),
        }
    } else {
        match v.parse() {
            Ok(m) => Ok((Some(m), None)),
            Err(_) => perr(format!(
                "illegal virtual server persistent mask specified: {v}"
            )),
        }
    }
}

fn build(o: Opts) -> Result<Cmd, ParseError> {
    // As ipvsadm: without a command (`ipvsadm`, `ipvsadm -n`) the table is listed.
    let cmd = o.cmd.unwrap_or(Command::List);
    let need_svc = || {
        o.svc
            .clone()
            .ok_or_else(|| ParseError("a service (-t or -u) is required".into()))
    };
    let (netmask, prefix6) = persistence_mask(o.svc.as_ref(), o.netmask.as_deref())?;
    let opts = || SvcOpts {
        scheduler: o.sched.clone(),
        flags: o.flags.clone(),
        persistence_s: o.persist,
        netmask,
        prefix6,
    };
    let real = || -> Result<RealOpts, ParseError> {
        let (addr, port) = o
            .real
            .ok_or_else(|| ParseError("a real server (-r) is required".into()))?;
        Ok(RealOpts {
            addr,
            port,
            weight: o.weight.unwrap_or(1),
            mode: o.mode.unwrap_or("dr").into(),
            upper: o.upper.unwrap_or(0),
            lower: o.lower.unwrap_or(0),
        })
    };
    Ok(match cmd {
        Command::AddSvc => Cmd::Apply(Change::AddService {
            svc: need_svc()?,
            opts: opts(),
        }),
        Command::EditSvc => Cmd::Apply(Change::EditService {
            svc: need_svc()?,
            opts: opts(),
        }),
        Command::DelSvc => Cmd::Apply(Change::DelService { svc: need_svc()? }),
        Command::Clear => Cmd::Apply(Change::Clear),
        Command::AddReal => Cmd::Apply(Change::AddReal {
            svc: need_svc()?,
            real: real()?,
        }),
        Command::EditReal => Cmd::Apply(Change::EditReal {
            svc: need_svc()?,
            real: real()?,
        }),
        Command::DelReal => {
            let (addr, port) = o
                .real
                .ok_or_else(|| ParseError("a real server (-r) is required".into()))?;
            Cmd::Apply(Change::DelReal {
                svc: need_svc()?,
                addr,
                port,
            })
        }
        Command::AddLaddr | Command::DelLaddr => {
            let addr = o
                .laddr
                .ok_or_else(|| ParseError("a local address (-z) is required".into()))?;
            let svc = need_svc()?;
            Cmd::Apply(if cmd == Command::AddLaddr {
                Change::AddLaddr { svc, addr }
            } else {
                Change::DelLaddr { svc, addr }
            })
        }
        Command::GetLaddr => Cmd::Laddrs(o.svc.clone()),
        Command::List => Cmd::List(ListOpts {
            svc: o.svc.clone(),
            ..o.list
        }),
        Command::Save => Cmd::Save(ListOpts {
            svc: o.svc.clone(),
            ..o.list
        }),
        Command::Restore => Cmd::Restore,
        Command::Zero => Cmd::Zero,
        Command::Set => Cmd::SetTimeouts(o.set[0], o.set[1], o.set[2]),
        Command::StartDaemon => Cmd::StartDaemon(o.daemon_role.clone().unwrap_or_default()),
        Command::StopDaemon => Cmd::StopDaemon(o.daemon_role.clone().unwrap_or_default()),
        Command::Help => Cmd::Help,
        Command::Version => Cmd::Version,
    })
}

/// Splits `ipvsadm -R` input into changes, one line at a time; errors name the line.
pub fn parse_restore(input: &str, names: &Names) -> Result<Vec<(usize, Change)>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        let words = match words.first().map(String::as_str) {
            None => continue,
            Some(w) if w.starts_with('#') => continue,
            Some("ipvsadm") => &words[1..],
            Some(_) => &words[..],
        };
        match parse(words, names) {
            Ok(Cmd::Apply(c)) => out.push((n + 1, c)),
            Ok(_) => {
                return perr(format!(
                    "line {}: only -A -E -D -C -a -e -d -P -Q may be restored: {line}",
                    n + 1
                ))
            }
            Err(e) => return perr(format!("line {}: {e}", n + 1)),
        }
    }
    Ok(out)
}
