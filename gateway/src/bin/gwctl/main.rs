//! `gwctl`: the gateway's admin client. With arguments it runs one command and exits (non-zero on
//! error, with a message naming the problem); without, an interactive shell with history, completion
//! and help. Called through a link named `ipvsadm` (or as `gwctl ipvsadm ...`) it speaks ipvsadm.
//!
//! The socket: `--socket PATH`, else `$GATEWAY_SOCKET`, else /run/gateway/gateway.sock.

use gateway::control::client::{self, ClientError};
use gateway::control::ipvsadm::{self, Cmd, Names};
use gateway::control::proto::{Change, ConnFilter, Op, Response};
use gateway::view::*;
use std::fmt::Write as _;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod args;
mod format;
mod shell;

use args::*;
use format::*;
use shell::*;

/// How long to wait for the daemon (an apply waits for every worker, at most 5 s each step).
const TIMEOUT: Duration = Duration::from_secs(30);

struct Ctx {
    socket: PathBuf,
    json: bool,
}

/// A failed command: the message and the exit code (2 for usage errors, as ipvsadm).
struct Fail(String, u8);

fn fail<T>(msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail(msg.into(), 1))
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        Fail(e.to_string(), 1)
    }
}

/// Sends a request; a daemon error becomes a failure.
fn call(ctx: &Ctx, op: Op) -> Result<serde_json::Value, Fail> {
    let r: Response = client::request(&ctx.socket, op, TIMEOUT)?;
    if r.ok {
        Ok(r.data.unwrap_or(serde_json::Value::Null))
    } else {
        fail(
            r.error
                .unwrap_or_else(|| "the daemon refused the request".into()),
        )
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, Fail> {
    serde_json::from_value(v).map_err(|e| Fail(format!("bad response from the daemon: {e}"), 1))
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let prog = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let mut ctx = Ctx {
        socket: client::default_socket(),
        json: false,
    };
    let mut args = &argv[1.min(argv.len())..];
    let as_ipvsadm = prog.starts_with("ipvsadm");
    if !as_ipvsadm {
        while let Some(a) = args.first() {
            match a.as_str() {
                "--json" | "-j" => ctx.json = true,
                "--help" | "-h" => return report(Ok(help(None))),
                "--socket" | "-s" => match args.get(1) {
                    Some(p) => {
                        ctx.socket = PathBuf::from(p);
                        args = &args[1..];
                    }
                    None => return report(Err(Fail("--socket needs a path".into(), 2))),
                },
                _ => break,
            }
            args = &args[1..];
        }
        if args.is_empty() {
            return shell(&ctx);
        }
    }
    let result = if as_ipvsadm {
        ipvsadm_cmd(&ctx, args, None)
    } else {
        run(&ctx, args, None)
    };
    report(result)
}

/// Writes `out` to standard output. A reader that went away (`ipvsadm -Lnc | head`) ends the
/// output quietly, as ipvsadm does: `print!` would panic on the broken pipe (Rust ignores SIGPIPE).
fn emit(out: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match o.write_all(out.as_bytes()).and_then(|_| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

fn report(r: Result<String, Fail>) -> ExitCode {
    match r {
        Ok(out) => match emit(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot write the output: {e}");
                ExitCode::FAILURE
            }
        },
        Err(Fail(msg, code)) => {
            eprintln!("{msg}");
            ExitCode::from(code)
        }
    }
}

/// One gwctl command. `stdin` replaces standard input (the shell's `< FILE`).
fn run(ctx: &Ctx, args: &[String], stdin: Option<String>) -> Result<String, Fail> {
    let (cmd, rest) = args
        .split_first()
        .ok_or_else(|| Fail("no command; try `gwctl help`".into(), 2))?;
    let json = |v: serde_json::Value| Ok(pretty(&v));
    match cmd.as_str() {
        "ipvsadm" => ipvsadm_cmd(ctx, rest, stdin),
        "help" => Ok(help(rest.first().map(String::as_str))),
        "status" => {
            let v = call(ctx, Op::Status)?;
            if ctx.json {
                return json(v);
            }
            let s: StatusView = typed(v)?;
            Ok(format!(
                "gateway {} (protocol {}): generation {} on {} workers, {} services, {} real servers\n",
                s.version, s.protocol, s.generation, s.workers, s.services, s.reals
            ))
        }
        "services" | "list" => ipvsadm_cmd(ctx, &["-Ln".to_string()], None),
        "conns" | "connections" => {
            let f = conn_filter(rest)?;
            let v = call(ctx, Op::Conns { filter: f })?;
            if ctx.json {
                return json(v);
            }
            let c: ConnsView = typed(v)?;
            Ok(format_conns(&c))
        }
        "stats" => {
            let v = call(ctx, Op::Stats)?;
            if ctx.json {
                return json(v);
            }
            Ok(format_stats(&typed(v)?, false))
        }
        "drops" => {
            let v = call(ctx, Op::Stats)?;
            if ctx.json {
                return json(v);
            }
            Ok(format_stats(&typed(v)?, true))
        }
        "rate" => {
            let v = call(ctx, Op::Stats)?;
            let s: StatsView = typed(v)?;
            if ctx.json {
                return json(serde_json::to_value(s.rate).unwrap_or_default());
            }
            let r = s.rate;
            Ok(format!(
                "CPS {}  InPPS {}  OutPPS {}  InBPS {}  OutBPS {}\n",
                r.cps, r.inpps, r.outpps, r.inbps, r.outbps
            ))
        }
        "zero" => call(ctx, Op::Zero).map(|_| String::new()),
        "sysctl" => {
            let name = rest.first().map(|s| s.to_string());
            let value = match rest.get(1) {
                Some(v) => Some(
                    v.parse::<u32>()
                        .or_else(|_| fail(format!("sysctl: {v:?} is not a number")))?,
                ),
                None => None,
            };
            if rest.len() > 2 {
                return fail("usage: sysctl [NAME [VALUE]]");
            }
            let v = call(ctx, Op::Sysctl { name, value })?;
            if ctx.json {
                return json(v);
            }
            let mut out = String::new();
            if let Some(o) = v.as_object() {
                for (k, x) in o.iter().filter(|(k, _)| *k != "generation") {
                    let _ = writeln!(out, "{k} = {x}");
                }
            }
            Ok(out)
        }
        "acl" if rest.is_empty() => {
            let v = call(ctx, Op::List)?;
            let l: ListView = typed(v)?;
            if ctx.json {
                let acls: Vec<_> = l
                    .services
                    .iter()
                    .filter(|s| !s.acl.is_empty())
                    .map(|s| serde_json::json!({"proto": s.proto, "vip": s.vip, "port": s.port, "acl": s.acl}))
                    .collect();
                return json(serde_json::Value::Array(acls));
            }
            let mut out = String::new();
            for s in l.services.iter().filter(|s| !s.acl.is_empty()) {
                let _ = writeln!(out, "{} {}:{}", s.proto.to_uppercase(), s.vip, s.port);
                for r in &s.acl {
                    let _ = writeln!(out, "  {:<32} {:>12}", r.rule, r.hits);
                }
            }
            Ok(out)
        }
        "acl" => {
            let change = acl_change(rest)?;
            call(
                ctx,
                Op::Apply {
                    changes: vec![change],
                },
            )
            .map(|_| String::new())
        }
        "sync" if rest.len() == 1 && rest[0] == "ready" => {
            // keepalived's track_script: exit 0 when this box may take the VIPs.
            let v = call(ctx, Op::Sync { role: None })?;
            let s = &v["status"];
            let why = s["resync"].as_str().unwrap_or("unknown").to_string();
            match s["ready"].as_bool() {
                Some(true) => Ok(format!("ready: {why}\n")),
                _ => Err(Fail(format!("not ready: {why}"), 1)),
            }
        }
        "sync" => {
            let role = match rest {
                [] => None,
                [r, v] if r == "role" => Some(v.clone()),
                _ => {
                    return Err(Fail(
                        "usage: sync [ready | role auto|master|backup|off]".into(),
                        2,
                    ))
                }
            };
            let v = call(ctx, Op::Sync { role })?;
            if ctx.json {
                return Ok(pretty(&v));
            }
            Ok(format_sync(&v))
        }
        "synproxy" if rest.is_empty() => {
            let l: ListView = typed(call(ctx, Op::List)?)?;
            let s: StatsView = typed(call(ctx, Op::Stats)?)?;
            let proxied: Vec<_> = l.services.iter().filter(|s| s.synproxy != "off").collect();
            let counters: Vec<(String, u64)> = s
                .total
                .counters
                .iter()
                .filter(|(k, _)| k.starts_with("synproxy_"))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let auto_on = s
                .workers
                .iter()
                .filter(|w| {
                    w.counters
                        .get("synproxy_auto_active")
                        .is_some_and(|v| *v > 0)
                })
                .count();
            if ctx.json {
                return json(serde_json::json!({
                    "services": proxied
                        .iter()
                        .map(|s| serde_json::json!({"proto": s.proto, "vip": s.vip, "port": s.port, "synproxy": s.synproxy}))
                        .collect::<Vec<_>>(),
                    "auto_active_workers": auto_on,
                    "counters": counters.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                }));
            }
            let mut out = String::new();
            for v in &proxied {
                // An IPv6 VIP in brackets, as ipvsadm writes it (`[2001:db8::1]:80`).
                let _ = writeln!(
                    out,
                    "{} {} {}",
                    v.proto.to_uppercase(),
                    std::net::SocketAddr::new(v.vip, v.port),
                    v.synproxy
                );
            }
            if proxied.iter().any(|v| v.synproxy == "auto") {
                let _ = writeln!(
                    out,
                    "auto mode on in {auto_on} of {} workers",
                    s.workers.len()
                );
            }
            for (k, v) in counters.iter().filter(|(k, _)| k != "synproxy_auto_active") {
                let _ = writeln!(out, "  {:<28} {v:>12}", k.trim_start_matches("synproxy_"));
            }
            Ok(out)
        }
        "synproxy" => {
            let usage = || Fail("usage: synproxy -t VIP:PORT on|off|auto".into(), 2);
            let mut it = rest.iter().map(String::as_str);
            let svc = svc_arg(&mut it).ok_or_else(usage)??;
            let mode = match (it.next(), it.next()) {
                (Some(m @ ("on" | "off" | "auto")), None) => m.to_string(),
                _ => return Err(usage()),
            };
            call(
                ctx,
                Op::Apply {
                    changes: vec![Change::SetSynProxy { svc, mode }],
                },
            )
            .map(|_| String::new())
        }
        "limit" if rest.is_empty() => {
            let v = call(ctx, Op::List)?;
            let l: ListView = typed(v)?;
            let limited = l
                .services
                .iter()
                .filter_map(|s| Some((s, s.limit.as_ref()?)));
            if ctx.json {
                let rows: Vec<_> = limited
                    .map(|(s, lv)| serde_json::json!({"proto": s.proto, "vip": s.vip, "port": s.port, "limit": lv}))
                    .collect();
                return json(serde_json::Value::Array(rows));
            }
            let mut out = String::new();
            for (s, lv) in limited {
                // An IPv6 VIP in brackets, as ipvsadm writes it.
                let vs = std::net::SocketAddr::new(s.vip, s.port);
                let _ = writeln!(out, "{} {vs}  {lv}", s.proto.to_uppercase());
                let _ = writeln!(out, "  {:<32} {:>12}", "rate_refused", lv.rate_refused);
                let _ = writeln!(out, "  {:<32} {:>12}", "conns_refused", lv.conns_refused);
            }
            Ok(out)
        }
        "limit" => {
            let change = limit_change(rest)?;
            call(
                ctx,
                Op::Apply {
                    changes: vec![change],
                },
            )
            .map(|_| String::new())
        }
        "check" | "sorry" => {
            let change = check_change(cmd, rest)?;
            call(
                ctx,
                Op::Apply {
                    changes: vec![change],
                },
            )
            .map(|_| String::new())
        }
        "events" => events_cmd(ctx, rest),
        "runtime" => {
            let clear = match rest {
                [] => false,
                [c] if c == "clear" => true,
                _ => return Err(Fail("usage: runtime [clear]".into(), 2)),
            };
            let v = call(ctx, Op::Runtime { clear })?;
            if ctx.json || clear {
                return if clear { Ok(String::new()) } else { json(v) };
            }
            Ok(format_runtime(&typed(v)?))
        }
        "drain" | "undrain" | "announce" => {
            let op = announce_op(cmd, rest)?;
            let v = call(ctx, op)?;
            if ctx.json {
                return json(v);
            }
            Ok(format_announce(&typed(v)?))
        }
        "health" => {
            let v = call(ctx, Op::Health)?;
            if ctx.json {
                return json(v);
            }
            let list: Vec<gateway::health::runner::Status> = typed(v)?;
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{:<26} {:<21} {:<5} {:<5} {:>9} {:>8} {:>8} {:>8} {:>8}  last",
                "service",
                "real server",
                "check",
                "state",
                "for_s",
                "checks",
                "failed",
                "syn_rst",
                "syn_lost"
            );
            for s in &list {
                let k = s.key;
                let proto = if k.proto == 17 { "UDP" } else { "TCP" };
                let _ = writeln!(
                    out,
                    "{:<26} {:<21} {:<5} {:<5} {:>9.1} {:>8} {:>8} {:>8} {:>8}  {}",
                    // `[2001:db8::1]:80` for IPv6, as ipvsadm writes it.
                    format!("{proto} {}", std::net::SocketAddr::new(k.vip, k.vport)),
                    std::net::SocketAddr::new(k.rs, k.rs_port).to_string(),
                    s.kind,
                    if s.up { "up" } else { "down" },
                    s.for_ms as f64 / 1000.0,
                    s.checks,
                    s.failures,
                    s.syn_refused,
                    s.syn_unanswered,
                    s.last
                );
            }
            Ok(out)
        }
        "addrs" | "addresses" | "routes" | "neigh" | "neighbours" | "neighbors" | "twins" => {
            let v = call(ctx, Op::Net)?;
            let n: NetView = typed(v)?;
            let mut out = String::new();
            match cmd.as_str() {
                "addrs" | "addresses" => {
                    if ctx.json {
                        return json(
                            serde_json::json!({ "ports": n.ports, "service_addrs": n.service_addrs }),
                        );
                    }
                    for p in &n.ports {
                        let addrs: Vec<String> = p
                            .addrs
                            .iter()
                            .zip(p.origins.iter().map(Some).chain(std::iter::repeat(None)))
                            .map(|(a, o)| match o {
                                Some(o) => format!("{a} ({})", origin_name(*o)),
                                None => a.clone(),
                            })
                            .collect();
                        let _ = writeln!(out, "{:<10} {}  {}", p.name, p.mac, addrs.join(" "));
                    }
                    let s: Vec<String> = n.service_addrs.iter().map(|a| a.to_string()).collect();
                    let _ = writeln!(out, "{:<10} {}", "services", s.join(" "));
                }
                "routes" => {
                    if ctx.json {
                        return json(serde_json::to_value(&n.routes).unwrap_or_default());
                    }
                    for r in &n.routes {
                        let from = r.origin.map(origin_name).unwrap_or("connected");
                        match r.via {
                            Some(v) => writeln!(out, "{} via {v} port {} {from}", r.prefix, r.port),
                            None => writeln!(out, "{} port {} {from}", r.prefix, r.port),
                        }
                        .unwrap_or_default();
                    }
                }
                "twins" => {
                    if ctx.json {
                        let twins: Vec<_> = n
                            .ports
                            .iter()
                            .map(|p| serde_json::json!({ "port": p.name, "twin": p.twin }))
                            .collect();
                        return json(serde_json::json!({
                            "twins": twins, "punt": n.punt, "kernel_owned": n.kernel_owned,
                            "listening6": n.listening6, "listen6_errors": n.listen6_errors
                        }));
                    }
                    let _ = writeln!(
                        out,
                        "{:<10} {:<16} {:<12} {:>7}",
                        "port", "twin", "driver", "ifindex"
                    );
                    for p in &n.ports {
                        match &p.twin {
                            Some(t) => writeln!(
                                out,
                                "{:<10} {:<16} {:<12} {:>7}",
                                p.name, t.name, t.driver, t.ifindex
                            ),
                            None => writeln!(
                                out,
                                "{:<10} {:<16} {:<12} {:>7}",
                                p.name, "-", "none", "-"
                            ),
                        }
                        .unwrap_or_default();
                    }
                    for (a, held) in &n.kernel_owned {
                        let state = if *held { "held" } else { "not held" };
                        let _ = writeln!(out, "kernel-owned {a} {state}");
                    }
                    for (twin, group) in &n.listening6 {
                        let _ = writeln!(out, "listening {group} on {twin}");
                    }
                    if n.listen6_errors > 0 {
                        let _ = writeln!(out, "listen6_errors {}", n.listen6_errors);
                    }
                    for (k, v) in &n.punt {
                        let _ = writeln!(out, "{k} {v}");
                    }
                }
                _ => {
                    if ctx.json {
                        return json(serde_json::to_value(&n.neigh).unwrap_or_default());
                    }
                    let _ = writeln!(
                        out,
                        "{:<16} {:<10} {:<18} {:<10} {:>8} {:>6}",
                        "address", "port", "mac", "state", "age_ms", "worker"
                    );
                    for e in &n.neigh {
                        let mac = e.mac.clone().unwrap_or_else(|| "-".into());
                        let _ = writeln!(
                            out,
                            "{:<16} {:<10} {:<18} {:<10} {:>8} {:>6}",
                            e.ip.to_string(),
                            e.port,
                            mac,
                            e.state,
                            e.age_ms,
                            e.worker
                        );
                    }
                }
            }
            Ok(out)
        }
        "capture" => capture(ctx, rest),
        "save" => {
            let v = with_progress("saving the running services", || call(ctx, Op::Save))?;
            let toml = v
                .get("toml")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string();
            match rest.first() {
                Some(path) => {
                    std::fs::write(path, &toml)
                        .map_err(|e| Fail(format!("cannot write {path}: {e}"), 1))?;
                    Ok(String::new())
                }
                None => Ok(toml),
            }
        }
        "raw" => {
            let line = rest.join(" ");
            let req: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| Fail(format!("raw: not JSON: {e}"), 2))?;
            let op: Op = serde_json::from_value(req)
                .map_err(|e| Fail(format!("raw: not a request: {e}"), 2))?;
            let r = client::request(&ctx.socket, op, TIMEOUT)?;
            Ok(serde_json::to_string(&r).unwrap_or_default() + "\n")
        }
        other => Err(Fail(
            format!("unknown command `{other}`; try `gwctl help`"),
            2,
        )),
    }
}

/// `capture --port NAME [--count N] [--filter BPF] [--duration S] [--snaplen N] -w FILE`: streams
/// the daemon's capture into a pcapng file until the count, the duration or Ctrl-C.
fn capture(ctx: &Ctx, rest: &[String]) -> Result<String, Fail> {
    use gateway::capture::{pcapng, stream::Line};
    use std::sync::atomic::{AtomicBool, Ordering};
    let usage = || {
        Fail(
            "usage: capture --port NAME [--count N] [--filter BPF] [--duration S] [--snaplen N] -w FILE"
                .into(),
            2,
        )
    };
    let (mut port, mut file, mut filter) = (None, None, None);
    let (mut count, mut duration_s, mut snaplen) = (None, None, None);
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(usage);
        let num = |v: String| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Fail(format!("{a}: {v:?} is not a positive number"), 2))
        };
        match a.as_str() {
            "--port" | "-i" => port = Some(val()?),
            "-w" | "--write" => file = Some(val()?),
            "--filter" | "-f" => filter = Some(val()?),
            "--count" | "-c" => count = Some(num(val()?)?),
            "--duration" => duration_s = Some(num(val()?)?.min(u32::MAX.into()) as u32),
            "--snaplen" | "-s" => snaplen = Some(num(val()?)?.min(u32::MAX.into()) as u32),
            _ => return Err(usage()),
        }
    }
    let (Some(port), Some(file)) = (port, file) else {
        return Err(usage());
    };
    let count = count.unwrap_or(gateway::capture::DEFAULT_COUNT);
    // The file first: an unwritable one is refused before anything starts in the daemon. Opened
    // without truncating, so a capture the daemon refuses leaves an existing file as it was.
    let existed = std::path::Path::new(&file).exists();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&file)
        .map_err(|e| Fail(format!("cannot write {file}: {e}"), 1))?;
    let discard = |msg: String| {
        if !existed {
            let _ = std::fs::remove_file(&file);
        }
        Fail(msg, 1)
    };
    let op = Op::Capture {
        port: port.clone(),
        filter: filter.clone(),
        count: Some(count),
        snaplen,
        duration_s,
    };
    let mut stream =
        client::Stream::open(&ctx.socket, op, TIMEOUT).map_err(|e| discard(e.to_string()))?;
    let first = stream.next_response().map_err(|e| discard(e.to_string()))?;
    if !first.ok {
        return Err(discard(
            first.error.unwrap_or_else(|| "capture refused".into()),
        ));
    }
    let line = |r: Response| -> Result<Line, Fail> { typed(r.data.unwrap_or_default()) };
    let started = line(first)?.started.unwrap_or_default();
    f.set_len(0)
        .map_err(|e| Fail(format!("cannot write {file}: {e}"), 1))?;
    let io = |e: std::io::Error| Fail(format!("cannot write {file}: {e}"), 1);
    let mut w = pcapng::Writer::new(
        std::io::BufWriter::new(f),
        concat!("gwctl (gateway ", env!("CARGO_PKG_VERSION"), ")"),
        &started.port,
        &format!(
            "gateway port {} (rx before rewriting, tx after)",
            started.port
        ),
        started.snaplen,
    )
    .and_then(|mut w| w.flush().map(|_| w))
    .map_err(io)?;
    eprintln!(
        "capturing on port {}{}: up to {count} frames into {file}; Ctrl-C stops",
        started.port,
        started
            .filter
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default()
    );
    // Ctrl-C (or SIGTERM) ends the capture: the loop looks between lines, and the daemon sends one
    // at least every `stream::HEARTBEAT`. A second one, with the flag already set, terminates
    // gwctl at once (signal-hook's conditional default), should the daemon not answer.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let sigs: Vec<_> = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]
        .into_iter()
        .flat_map(|s| {
            [
                signal_hook::flag::register_conditional_default(s, stop.clone()).ok(),
                signal_hook::flag::register(s, stop.clone()).ok(),
            ]
        })
        .flatten()
        .collect();
    let mut counts = gateway::capture::Counts::default();
    let result = (|| {
        let mut finished = false;
        // Until the daemon's last line: it ends the capture itself at `count` frames or the
        // duration, and its last line carries the final counters.
        loop {
            if !finished && stop.load(Ordering::Relaxed) {
                // Ask the daemon to stop; it answers with a last line (final counters) at once.
                finished = true;
                if stream.finish().is_err() {
                    break;
                }
            }
            let r = match stream.next_response() {
                Ok(r) => r,
                Err(_) if finished => break,
                Err(e) => return Err(Fail(e.to_string(), 1)),
            };
            if !r.ok {
                return fail(r.error.unwrap_or_else(|| "capture failed".into()));
            }
            let last = r.more != Some(true);
            let l = line(r)?;
            counts = l.counts;
            for fr in &l.frames {
                let rec = fr
                    .to_record()
                    .map_err(|e| Fail(format!("bad frame from the daemon: {e}"), 1))?;
                w.packet(rec.dir, rec.ts_ns, rec.orig_len, &rec.data)
                    .map_err(io)?;
            }
            if last {
                break;
            }
        }
        Ok(())
    })();
    for id in sigs {
        signal_hook::low_level::unregister(id);
    }
    drop(stream);
    let written = w.packets();
    w.flush().map_err(io)?;
    result?;
    if ctx.json {
        return Ok(pretty(&serde_json::json!({
            "file": file, "written": written, "captured": counts.captured,
            "dropped": counts.dropped, "filtered_out": counts.filtered_out,
        })));
    }
    Ok(format!(
        "{written} frames written to {file}; {} not copied by the workers (capture ring full); {} filtered out\n",
        counts.dropped, counts.filtered_out
    ))
}

/// An ipvsadm command line.
fn ipvsadm_cmd(ctx: &Ctx, args: &[String], stdin: Option<String>) -> Result<String, Fail> {
    let names = Names::system();
    let cmd = ipvsadm::parse(args, &names).map_err(|e| Fail(e.0, 2))?;
    let apply = |changes: Vec<Change>| call(ctx, Op::Apply { changes });
    let done = |v: serde_json::Value| {
        if ctx.json {
            Ok(pretty(&v))
        } else {
            Ok(String::new())
        }
    };
    match cmd {
        Cmd::Apply(c) => done(apply(vec![c])?),
        Cmd::Restore => {
            let input = match stdin {
                Some(s) => s,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .map_err(|e| Fail(format!("reading standard input: {e}"), 1))?;
                    s
                }
            };
            let lines = ipvsadm::parse_restore(&input, &names).map_err(|e| Fail(e.0, 2))?;
            let at: Vec<usize> = lines.iter().map(|l| l.0).collect();
            // A restore is one generation however large; building Maglev tables is what takes
            // long (a few ms per `mh` service), so the wait grows with the file.
            let timeout = TIMEOUT + Duration::from_millis(10) * lines.len() as u32;
            let label = format!("restoring {} rules as one generation", lines.len());
            let changes = lines.into_iter().map(|l| l.1).collect();
            let r = with_progress(&label, || {
                client::request(&ctx.socket, Op::Apply { changes }, timeout)
            })?;
            if r.ok {
                return done(r.data.unwrap_or_default());
            }
            let msg = r.error.unwrap_or_default();
            match r.at.and_then(|i| at.get(i)) {
                Some(line) => fail(format!("line {line}: {msg} (nothing restored)")),
                None => fail(format!("{msg} (nothing restored)")),
            }
        }
        Cmd::List(o) if o.daemon => {
            let v = call(ctx, Op::Sync { role: None })?;
            Ok(ipvsadm::format_daemon(&v["status"]))
        }
        Cmd::List(o) if o.timeout => {
            let v = call(ctx, Op::Timeouts)?;
            if ctx.json {
                return Ok(pretty(&v));
            }
            Ok(ipvsadm::format_timeout(&typed(v)?))
        }
        Cmd::List(o) if o.conns && ctx.json => {
            let v = call(
                ctx,
                Op::Conns {
                    filter: ConnFilter {
                        templates: true,
                        ..Default::default()
                    },
                },
            )?;
            Ok(pretty(&v))
        }
        Cmd::List(o) if o.conns => {
            // Streamed: the daemon hands the connections over a chunk at a time and each chunk is
            // printed as it comes, so a million of them list in bounded memory. The persistence
            // templates follow, as IPVS lists its templates among the connections.
            let filter = ConnFilter {
                stream: true,
                limit: Some(gateway::control::server::MAX_CONN_LIMIT),
                templates: true,
                ..Default::default()
            };
            let mut out = std::io::stdout().lock();
            let mut print = |s: String| {
                std::io::Write::write_all(&mut out, s.as_bytes())
                    .map_err(gateway::control::client::ClientError::Io)
            };
            print(ipvsadm::format_conns_header())?;
            let last = client::request_stream(&ctx.socket, Op::Conns { filter }, TIMEOUT, |r| {
                let c: ConnsView = serde_json::from_value(r.data.unwrap_or_default())
                    .map_err(|e| gateway::control::client::ClientError::Protocol(e.to_string()))?;
                print(ipvsadm::format_conn_lines(&c.conns, o.numeric, &names))
            })?;
            if !last.ok {
                return fail(last.error.unwrap_or_default());
            }
            Ok(String::new())
        }
        Cmd::List(o) => {
            let v = call(ctx, Op::List)?;
            if ctx.json {
                return Ok(pretty(&v));
            }
            ipvsadm::format_list(&typed(v)?, &o, &names).map_err(|e| Fail(e, 1))
        }
        Cmd::Save(o) => {
            let v = call(ctx, Op::List)?;
            ipvsadm::format_rules(&typed(v)?, &o, &names).map_err(|e| Fail(e, 1))
        }
        Cmd::Laddrs(k) => {
            let l: ListView = typed(call(ctx, Op::List)?)?;
            let c: ConnsView = typed(call(
                ctx,
                Op::Conns {
                    filter: ConnFilter::default(),
                },
            )?)?;
            ipvsadm::format_laddrs(&l, k.as_ref(), &c.conns).map_err(|e| Fail(e, 1))
        }
        Cmd::Zero => done(call(ctx, Op::Zero)?),
        Cmd::SetTimeouts(tcp, tcpfin, udp) => {
            done(call(ctx, Op::SetTimeouts { tcp, tcpfin, udp })?)
        }
        Cmd::StartDaemon(role) => {
            call(ctx, Op::Sync { role: Some(role) })?;
            Ok(String::new())
        }
        Cmd::StopDaemon(role) => {
            // As ipvsadm: stopping a daemon that does not run is an error.
            let v = call(ctx, Op::Sync { role: None })?;
            if v["status"]["role"].as_str() != Some(role.as_str()) {
                return fail(format!("no {role} sync daemon runs"));
            }
            call(
                ctx,
                Op::Sync {
                    role: Some("off".into()),
                },
            )?;
            Ok(String::new())
        }
        Cmd::Help => Ok(ipvsadm::USAGE.to_string()),
        Cmd::Version => Ok(format!(
            "ipvsadm v1.31 (gateway {}, IPVS-compatible)\n",
            env!("CARGO_PKG_VERSION")
        )),
    }
}

/// `drain [VIP] [--timeout S]`, `undrain [VIP]`, `announce`.
/// Runs `work`; on a terminal, if it takes longer than a second, shows on standard error what runs
/// and for how long, once a second, then how it ended (a restore of many rules is one generation,
/// which takes seconds to build and install on every worker).
fn with_progress<T, E>(label: &str, work: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return work();
    }
    let started = std::time::Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let shown = std::sync::atomic::AtomicBool::new(false);
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            let mut next = Duration::from_secs(1);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if started.elapsed() >= next {
                    eprint!("\r{label} ... {} s", next.as_secs());
                    shown.store(true, std::sync::atomic::Ordering::Relaxed);
                    next += Duration::from_secs(1);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let r = work();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    });
    if shown.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "\r{label} ... {} in {:.1} s",
            if r.is_ok() { "done" } else { "failed" },
            started.elapsed().as_secs_f64()
        );
    }
    r
}

/// `events [--follow] [--count N] [--duration S]`: the event log, and with --follow each new event
/// as it is recorded (until --count events or --duration seconds, else until interrupted).
fn events_cmd(ctx: &Ctx, rest: &[String]) -> Result<String, Fail> {
    let usage = || {
        Fail(
            "usage: events [--follow] [--count N] [--duration S]".into(),
            2,
        )
    };
    let (mut follow, mut count, mut duration) = (false, None::<usize>, None::<u64>);
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--follow" | "-f" => follow = true,
            "--count" | "-n" => {
                count = Some(it.next().and_then(|v| v.parse().ok()).ok_or_else(usage)?)
            }
            "--duration" => {
                duration = Some(it.next().and_then(|v| v.parse().ok()).ok_or_else(usage)?)
            }
            _ => return Err(usage()),
        }
    }
    let line = |e: &gateway::events::Event| match ctx.json {
        true => serde_json::to_string(e).unwrap_or_default() + "\n",
        false => format!(
            "{} {:>6} {:<8} {}\n",
            gateway::events::rfc3339(e.unix_ms),
            e.seq,
            e.kind.name(),
            e.message
        ),
    };
    let v: gateway::events::EventsView = typed(call(
        ctx,
        Op::Events {
            after: None,
            wait_ms: 0,
        },
    )?)?;
    if !follow {
        let skip = v.events.len().saturating_sub(count.unwrap_or(usize::MAX));
        return Ok(v.events[skip..].iter().map(line).collect());
    }
    // Following: what is held first (the last --count of it), then each new event at once.
    let until = duration.map(|s| std::time::Instant::now() + Duration::from_secs(s));
    let mut shown = 0usize;
    let mut last = v.last;
    let mut out = std::io::stdout();
    use std::io::Write as _;
    let mut print = |e: &gateway::events::Event, shown: &mut usize| {
        let _ = out.write_all(line(e).as_bytes());
        let _ = out.flush();
        *shown += 1;
    };
    let held = v.events.len().saturating_sub(count.unwrap_or(10));
    for e in &v.events[held..] {
        print(e, &mut shown);
    }
    shown = 0;
    loop {
        if count.is_some_and(|c| shown >= c)
            || until.is_some_and(|u| std::time::Instant::now() >= u)
        {
            return Ok(String::new());
        }
        let v: gateway::events::EventsView = typed(call(
            ctx,
            Op::Events {
                after: Some(last),
                wait_ms: 1000,
            },
        )?)?;
        if v.lost > 0 {
            eprintln!(
                "({} events lost: the log holds the last {})",
                v.lost,
                gateway::events::CAPACITY
            );
        }
        for e in &v.events {
            print(e, &mut shown);
            if count.is_some_and(|c| shown >= c) {
                break;
            }
        }
        last = v.last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_and_filters() {
        assert_eq!(
            words(" -A  -t 'a b' \"\" x"),
            vec!["-A", "-t", "a b", "", "x"]
        );
        let f = conn_filter(&[
            "--rs".into(),
            "10.0.0.1:80".into(),
            "--state".into(),
            "SYN_RECV".into(),
        ])
        .ok()
        .unwrap();
        assert_eq!(
            (f.rs, f.rs_port, f.state.as_deref()),
            (
                Some(Ipv4Addr::new(10, 0, 0, 1).into()),
                Some(80),
                Some("SYN_RECV")
            )
        );
        assert!(conn_filter(&["--rs".into(), "nope".into()]).is_err());
        assert!(conn_filter(&["--bogus".into(), "1".into()]).is_err());
        assert!(help(Some("conns")).contains("--state"));
        assert!(COMMANDS.iter().all(|c| help(None).contains(c.1)));
    }
}
