//! The `ipvsadm` front-end: its command line (getopt-style clusters such as `-Lnc`, long options,
//! `-p [timeout]`) turned into protocol changes and queries, and its listings formatted byte for byte
//! as ipvsadm 1.2x prints them (`print_title`, `print_service_entry`, `print_largenum`, `list_conn`
//! of ipvsadm.c), plus DPVS's FullNAT additions: `-b` (fullnat) for real servers, `-P/-Q/-G` with
//! `-z LIP [-F ifname]` for local addresses.
//!
//! `-b` means `--sched-flags FLAGS` after `-A`/`-E` (as in LVS) and `--fullnat` elsewhere (as in
//! DPVS). Without `-g/-m/-i/-b` a real server is `-g`, as in ipvsadm.

use super::proto::{Change, RealOpts, SvcKey, SvcOpts};
use super::view::{ConnInfo, ListView, RealView, SvcView, TimeoutsView};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// The version line's numbers: the IPVS version ipvsadm users know.
pub const IPVS_VERSION: &str = "1.2.1";

/// A parse error: ipvsadm exits 2 on these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn perr<T>(m: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(m.into()))
}

/// Listing options (`-L`/`-l`, `-S`, `-G`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOpts {
    pub numeric: bool,
    pub conns: bool,
    pub stats: bool,
    pub rate: bool,
    pub exact: bool,
    pub timeout: bool,
    pub sort: bool,
    pub thresholds: bool,
    pub persistent_conn: bool,
    /// `--daemon`: the sync daemon's state.
    pub daemon: bool,
    pub svc: Option<SvcKey>,
}

/// One ipvsadm command line, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    Apply(Change),
    List(ListOpts),
    Save(ListOpts),
    Restore,
    Zero,
    /// `--set tcp tcpfin udp`.
    SetTimeouts(u32, u32, u32),
    /// `-G`: local addresses.
    Laddrs(Option<SvcKey>),
    /// `--start-daemon master|backup`: the connection-sync role (`[sync]` has the peer and key).
    StartDaemon(String),
    /// `--stop-daemon master|backup`: sync off, if that is the role.
    StopDaemon(String),
    Help,
    Version,
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
    netmask: Option<Ipv4Addr>,
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
                .filter(|(_, p)| p.is_some_and(|p| p != 0))
                .ok_or_else(|| {
                    ParseError(format!(
                        "illegal virtual server address[:port] specified: {v}"
                    ))
                })?;
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
        'M' => {
            o.netmask = Some(v.parse().map_err(|_| {
                ParseError(format!(
                    "illegal virtual server persistent mask specified: {v}"
                ))
            })?)
        }
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

fn build(o: Opts) -> Result<Cmd, ParseError> {
    // As ipvsadm: without a command (`ipvsadm`, `ipvsadm -n`) the table is listed.
    let cmd = o.cmd.unwrap_or(Command::List);
    let need_svc = || {
        o.svc
            .clone()
            .ok_or_else(|| ParseError("a service (-t or -u) is required".into()))
    };
    let opts = || SvcOpts {
        scheduler: o.sched.clone(),
        flags: o.flags.clone(),
        persistence_s: o.persist,
        netmask: o.netmask,
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

/// Host and service names, as getservbyport/gethostbyaddr would give them from the files (no DNS).
#[derive(Clone, Debug, Default)]
pub struct Names {
    services: HashMap<(u16, String), String>,
    ports: HashMap<(String, String), u16>,
    hosts: HashMap<IpAddr, String>,
    addrs: HashMap<String, IpAddr>,
}

impl Names {
    /// From /etc/services and /etc/hosts (missing files give no names).
    pub fn system() -> Names {
        let s = std::fs::read_to_string("/etc/services").unwrap_or_default();
        let h = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        Names::from_files(&s, &h)
    }

    pub fn from_files(services: &str, hosts: &str) -> Names {
        let mut n = Names::default();
        for l in services.lines().map(|l| l.split('#').next().unwrap_or("")) {
            let mut w = l.split_whitespace();
            let (Some(name), Some(pp)) = (w.next(), w.next()) else {
                continue;
            };
            let Some((port, proto)) = pp.split_once('/') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            n.services
                .entry((port, proto.into()))
                .or_insert_with(|| name.into());
            for alias in std::iter::once(name).chain(w) {
                n.ports.entry((alias.into(), proto.into())).or_insert(port);
            }
        }
        for l in hosts.lines().map(|l| l.split('#').next().unwrap_or("")) {
            let mut w = l.split_whitespace();
            let Some(Ok(ip)) = w.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            let mut first = true;
            for name in w {
                if first {
                    n.hosts.entry(ip).or_insert_with(|| name.into());
                    first = false;
                }
                n.addrs.entry(name.into()).or_insert(ip);
            }
        }
        n
    }

    fn service_port(&self, name: &str, proto: &str) -> Option<u16> {
        self.ports
            .get(&(name.to_string(), proto.to_string()))
            .copied()
    }

    fn host_addr(&self, name: &str) -> Option<IpAddr> {
        self.addrs.get(name).copied()
    }

    /// `addrport_to_anyname`: numeric with `-n`, else names where the files have them.
    /// An IPv6 address is bracketed, `[2001:db8::1]:80`, as ipvsadm prints it.
    pub fn addrport(&self, ip: IpAddr, port: u16, proto: &str, numeric: bool) -> String {
        if numeric {
            return std::net::SocketAddr::new(ip, port).to_string();
        }
        let h = self
            .hosts
            .get(&ip)
            .cloned()
            .unwrap_or_else(|| ip.to_string());
        let p = self
            .services
            .get(&(port, proto.to_ascii_lowercase()))
            .cloned()
            .unwrap_or_else(|| port.to_string());
        match ip {
            IpAddr::V6(_) if !self.hosts.contains_key(&ip) => format!("[{h}]:{p}"),
            _ => format!("{h}:{p}"),
        }
    }
}

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
            if let Some(m) = s.netmask.filter(|m| *m != Ipv4Addr::BROADCAST) {
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
            if let Some(m) = s.netmask.filter(|m| *m != Ipv4Addr::BROADCAST) {
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
            format!("{}:{}", s.vip, s.port),
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

/// ipvsadm's usage text (what `-h` prints).
pub const USAGE: &str = "\
ipvsadm (gateway) - the gateway's IPVS-compatible administration
Usage:
  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  ipvsadm -D virtual-service
  ipvsadm -C
  ipvsadm -R
  ipvsadm -S [-n]
  ipvsadm -a|e virtual-service -r server-address [options]
  ipvsadm -d virtual-service -r server-address
  ipvsadm -L|l [virtual-service] [options]
  ipvsadm -Z [virtual-service]
  ipvsadm -P|Q virtual-service -z local-address [-F ifname]
  ipvsadm -G [virtual-service]
  ipvsadm --start-daemon master|backup
  ipvsadm --stop-daemon master|backup
  ipvsadm -L --daemon
  ipvsadm -h

Commands:
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin (all or nothing)
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --add-laddr       -P        add a local address (FullNAT) to a service
  --del-laddr       -Q        delete a local address from a service
  --get-laddr       -G        list local addresses
  --start-daemon              connection sync as master or backup ([sync] in the config has the
                              peer and key; --mcast-interface, --syncid, --sync-maxlen,
                              --mcast-group, --mcast-port and --mcast-ttl are accepted and unused)
  --stop-daemon               connection sync off
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address

Options:
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh, the default is wlc
  --persistent   -p [timeout]         persistent service (default timeout 300)
  --netmask      -M netmask           persistent granularity mask
  --sched-flags  -b flags             scheduler flags (after -A/-E): sh-fallback, sh-port, mh-fallback, mh-port
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --fullnat      -b                   full NAT (after -a/-e)
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --laddr        -z local-address     local address (FullNAT)
  --ifname       -F ifname            port of the local address (accepted, not needed)
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --sort                              sorting output of service/server entries
  --daemon                            output of the sync daemon's state
  --numeric      -n                   numeric output of addresses and ports
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::view::{Counters, Rates};

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
        let st = serde_json::json!({"role": "backup", "peer": "10.20.0.1:8848", "id": 7, "mode": "auto"});
        assert_eq!(
            format_daemon(&st),
            "backup sync daemon (peer=10.20.0.1:8848, syncid=7, mode=auto)\n"
        );
        assert_eq!(format_daemon(&serde_json::json!({"role": "off"})), "");
    }

    #[test]
    fn bad_input_is_named() {
        let e = |s: &str| p(s).unwrap_err().0;
        assert!(
            e("-A -t 10.0.0.300:80").starts_with("illegal virtual server address[:port] specified")
        );
        assert!(e("-A -t 10.0.0.1:99999")
            .starts_with("illegal virtual server address[:port] specified"));
        assert!(e("-A -t 10.0.0.1").starts_with("illegal virtual server address[:port] specified"));
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
        let input =
            "# comment\n-A -t 10.0.0.1:80 -s rr\n\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 1\n";
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

    #[test]
    fn connection_and_other_listings() {
        let c = ConnInfo {
            worker: 0,
            proto: "TCP".into(),
            client: (Ipv4Addr::new(10, 10, 0, 2).into(), 40000),
            vip: (Ipv4Addr::new(10, 10, 0, 100).into(), 80),
            local: Some((Ipv4Addr::new(10, 20, 0, 200).into(), 5000)),
            dest: Some((Ipv4Addr::new(10, 20, 0, 11).into(), 80)),
            state: "ESTABLISHED".into(),
            expire_ms: 899_500,
        };
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
                netmask: e.persistence_netmask.as_ref().map(|n| n.parse().unwrap()),
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
}
