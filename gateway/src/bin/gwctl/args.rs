//! `gwctl`'s arguments turned into requests: connection filters, services, access-list, limit,
//! check and announcement changes.

use super::*;

/// `ip[:port]`.
/// `addr[:port]`: an IPv4 address, or an IPv6 one bare or in brackets (`[2001:db8::1]:80`).
pub(crate) fn ip_port(s: &str, what: &str) -> Result<(std::net::IpAddr, Option<u16>), Fail> {
    let bad = || Fail(format!("{what}: `{s}` is not an address[:port]"), 2);
    if let Ok(a) = s.parse::<std::net::IpAddr>() {
        return Ok((a, None));
    }
    let a = s.parse::<std::net::SocketAddr>().map_err(|_| bad())?;
    Ok((a.ip(), Some(a.port())))
}

pub(crate) fn conn_filter(args: &[String]) -> Result<ConnFilter, Fail> {
    let mut f = ConnFilter::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| Fail(format!("{a} needs a value"), 2))?;
        match a.as_str() {
            "--proto" => f.proto = Some(v.clone()),
            "--client" => {
                (f.client, f.client_port) = ip_port(v, "--client").map(|(a, p)| (Some(a), p))?
            }
            "--vip" => (f.vip, f.vport) = ip_port(v, "--vip").map(|(a, p)| (Some(a), p))?,
            "--rs" => (f.rs, f.rs_port) = ip_port(v, "--rs").map(|(a, p)| (Some(a), p))?,
            "--state" => f.state = Some(v.clone()),
            "--worker" => {
                f.worker = Some(
                    v.parse()
                        .map_err(|_| Fail(format!("--worker: `{v}` is not a number"), 2))?,
                )
            }
            "--limit" => {
                f.limit = Some(
                    v.parse()
                        .map_err(|_| Fail(format!("--limit: `{v}` is not a number"), 2))?,
                )
            }
            _ => {
                return Err(Fail(
                    format!("conns: unknown filter {a}; see `gwctl help conns`"),
                    2,
                ))
            }
        }
    }
    Ok(f)
}

pub(crate) fn announce_op(cmd: &str, rest: &[String]) -> Result<Op, Fail> {
    let usage = || {
        fail::<Op>(match cmd {
            "drain" => "usage: drain [VIP] [--timeout SECONDS]",
            "undrain" => "usage: undrain [VIP]",
            _ => "usage: announce",
        })
    };
    let mut vip = None;
    let mut timeout_s = None;
    let mut args = rest.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--timeout" if cmd == "drain" => {
                let t = args.next().and_then(|t| t.parse::<u32>().ok());
                if t.is_none() {
                    return fail("drain: --timeout takes a number of seconds");
                }
                timeout_s = t;
            }
            v if vip.is_none() && cmd != "announce" => match v.parse::<std::net::IpAddr>() {
                Ok(ip) => vip = Some(ip),
                Err(_) => return fail(format!("{cmd}: {v:?} is not a VIP")),
            },
            _ => return usage(),
        }
    }
    Ok(match cmd {
        "drain" => Op::Drain { vip, timeout_s },
        "undrain" => Op::Undrain { vip },
        _ => Op::Announce,
    })
}

/// `acl -t|-u VIP:PORT (allow|deny PREFIX)...|none`: a service's access list, replaced whole.
pub(crate) fn acl_change(rest: &[String]) -> Result<Change, Fail> {
    let usage = || {
        Fail(
            "usage: acl -t|-u VIP:PORT (allow|deny PREFIX)...|none".into(),
            2,
        )
    };
    // The words after the service: rules start at each allow or deny.
    let (svc, words) = svc_and_words(rest, usage)?;
    let rules = match words.as_slice() {
        [] => return Err(usage()),
        ["none"] => Vec::new(),
        _ => {
            let mut rules: Vec<String> = Vec::new();
            for w in words {
                match (w, rules.last_mut()) {
                    ("allow" | "deny", _) | (_, None) => rules.push(w.to_string()),
                    (_, Some(r)) => {
                        r.push(' ');
                        r.push_str(w);
                    }
                }
            }
            rules
        }
    };
    Ok(Change::SetAcl { svc, rules })
}

/// `limit -t|-u VIP:PORT (KEY VALUE)...|TABLE|none`: a service's per-client limit, replaced whole;
/// the keys of `client_limit` as words (`rate 50 max_conns 10`) or as a TOML inline table.
pub(crate) fn limit_change(rest: &[String]) -> Result<Change, Fail> {
    let usage = || {
        Fail(
            "usage: limit -t|-u VIP:PORT [rate N] [burst N] [max_conns N] [prefix LEN] [action drop|rst] | '{ rate = N, ... }' | none".into(),
            2,
        )
    };
    let (svc, words) = svc_and_words(rest, usage)?;
    let table = match words.as_slice() {
        [] => return Err(usage()),
        ["none"] => return Ok(Change::SetLimit { svc, limit: None }),
        [w, ..] if w.starts_with('{') => words.join(" "),
        _ if words.len() % 2 == 1 => return Err(usage()),
        _ => {
            let pairs: Vec<String> = words
                .chunks(2)
                .map(|kv| match kv[1].parse::<u64>() {
                    Ok(_) => format!("{} = {}", kv[0], kv[1]),
                    Err(_) => format!("{} = {:?}", kv[0], kv[1]),
                })
                .collect();
            format!("{{ {} }}", pairs.join(", "))
        }
    };
    /// The limit as a TOML inline table, the config file's syntax.
    #[derive(serde::Deserialize)]
    struct Wrap {
        client_limit: gateway::forward::limit::LimitEntry,
    }
    let w: Wrap = toml::from_str(&format!("client_limit = {table}"))
        .or_else(|e| fail(format!("client_limit: {}", e.message())))?;
    Ok(Change::SetLimit {
        svc,
        limit: Some(w.client_limit),
    })
}

/// `-t|-u VIP:PORT` and the words after it (a quoted argument split at its spaces); `usage`
/// without a service.
pub(crate) fn svc_and_words(
    rest: &[String],
    usage: impl Fn() -> Fail,
) -> Result<(gateway::control::proto::SvcKey, Vec<&str>), Fail> {
    let mut it = rest.iter().map(String::as_str);
    let svc = svc_arg(&mut it).ok_or_else(usage)??;
    Ok((svc, it.flat_map(str::split_whitespace).collect()))
}

/// `-t|-u VIP:PORT` from the front of `it`: None without `-t`/`-u`, an error for a bad address.
pub(crate) fn svc_arg<'a>(
    it: &mut impl Iterator<Item = &'a str>,
) -> Option<Result<gateway::control::proto::SvcKey, Fail>> {
    let proto = match it.next()? {
        "-t" => "tcp",
        "-u" => "udp",
        _ => return None,
    };
    let Some(vs) = it.next() else {
        return Some(fail("-t|-u needs VIP:PORT"));
    };
    Some(match vs.parse::<std::net::SocketAddr>() {
        Ok(a) => Ok(gateway::control::proto::SvcKey {
            proto: proto.into(),
            vip: a.ip(),
            port: a.port(),
        }),
        Err(_) => fail(format!("{vs:?} is not VIP:PORT")),
    })
}

/// `check -t|-u VIP:PORT [-r RIP[:PORT]] TABLE|none` and `sorry -t|-u VIP:PORT ADDR:PORT|none`.
pub(crate) fn check_change(cmd: &str, rest: &[String]) -> Result<Change, Fail> {
    let usage = || {
        Fail(
            match cmd {
                "check" => {
                    "usage: check -t|-u VIP:PORT [-r RIP[:PORT]] '{ kind = \"tcp\", ... }'|none"
                }
                _ => "usage: sorry -t|-u VIP:PORT ADDR:PORT|none",
            }
            .into(),
            2,
        )
    };
    let mut it = rest.iter().map(String::as_str);
    let svc = svc_arg(&mut it).ok_or_else(usage)??;
    let mut real = None;
    let mut value = None;
    while let Some(a) = it.next() {
        if a == "-r" && cmd == "check" {
            let r = it.next().ok_or_else(usage)?;
            let (addr, port) = match r.split_once(':') {
                Some((a, p)) => (a, Some(p)),
                None => (r, None),
            };
            let addr: Ipv4Addr = addr
                .parse()
                .or_else(|_| fail(format!("{r:?} is not RIP[:PORT]")))?;
            let port = match port {
                Some(p) => Some(
                    p.parse::<u16>()
                        .or_else(|_| fail(format!("{r:?} is not RIP[:PORT]")))?,
                ),
                None => None,
            };
            real = Some((addr, port));
        } else if value.is_none() {
            value = Some(a);
        } else {
            return Err(usage());
        }
    }
    let value = value.ok_or_else(usage)?;
    if cmd == "sorry" {
        let server = (value != "none").then(|| value.to_string());
        return Ok(Change::SetSorryServer { svc, server });
    }
    let check = if value == "none" {
        None
    } else {
        /// The check as a TOML inline table, the config file's syntax.
        #[derive(serde::Deserialize)]
        struct Wrap {
            check: gateway::health::check::CheckEntry,
        }
        let w: Wrap = toml::from_str(&format!("check = {value}"))
            .or_else(|e| fail(format!("check: {}", e.message())))?;
        Some(Box::new(w.check))
    };
    Ok(Change::SetCheck { svc, real, check })
}
