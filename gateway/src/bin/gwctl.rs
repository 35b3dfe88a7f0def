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
                let _ = writeln!(
                    out,
                    "{} {}:{} {}",
                    v.proto.to_uppercase(),
                    v.vip,
                    v.port,
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
                let _ = writeln!(out, "{} {}:{}  {lv}", s.proto.to_uppercase(), s.vip, s.port);
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
                            "twins": twins, "punt": n.punt, "kernel_owned": n.kernel_owned
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

/// `ip[:port]`.
/// `addr[:port]`: an IPv4 address, or an IPv6 one bare or in brackets (`[2001:db8::1]:80`).
fn ip_port(s: &str, what: &str) -> Result<(std::net::IpAddr, Option<u16>), Fail> {
    let bad = || Fail(format!("{what}: `{s}` is not an address[:port]"), 2);
    if let Ok(a) = s.parse::<std::net::IpAddr>() {
        return Ok((a, None));
    }
    let a = s.parse::<std::net::SocketAddr>().map_err(|_| bad())?;
    Ok((a.ip(), Some(a.port())))
}

fn conn_filter(args: &[String]) -> Result<ConnFilter, Fail> {
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

fn format_conns(c: &ConnsView) -> String {
    let ap = |x: Option<(std::net::IpAddr, u16)>| {
        x.map_or_else(
            || "-".into(),
            |(a, p)| std::net::SocketAddr::new(a, p).to_string(),
        )
    };
    let mut out = format!(
        "{:<4} {:<6} {:<12} {:<21} {:<21} {:<21} {:<21} {:>7}\n",
        "pro", "worker", "state", "client", "virtual", "local", "destination", "expire"
    );
    for x in &c.conns {
        let _ = writeln!(
            out,
            "{:<4} {:<6} {:<12} {:<21} {:<21} {:<21} {:<21} {:>6}s",
            x.proto,
            x.worker,
            x.state,
            ap(Some(x.client)),
            ap(Some(x.vip)),
            ap(x.local),
            ap(x.dest),
            x.expire_ms / 1000
        );
    }
    let _ = writeln!(out, "{} listed, {} in the tables", c.conns.len(), c.total);
    out
}

fn format_stats(s: &StatsView, drops_only: bool) -> String {
    let mut out = String::new();
    let mut names: Vec<&String> = s.total.drops.keys().collect();
    if !drops_only {
        for p in &s.ports {
            let _ = writeln!(out, "{p}");
        }
        let keys: Vec<&String> = s.total.counters.keys().collect();
        let _ = write!(out, "{:<20}", "counter");
        for i in 0..s.workers.len() {
            let _ = write!(out, " {:>14}", format!("worker{i}"));
        }
        let _ = writeln!(out, " {:>14}", "total");
        for k in keys {
            let _ = write!(out, "{k:<20}");
            for w in &s.workers {
                let _ = write!(out, " {:>14}", w.counters.get(k).copied().unwrap_or(0));
            }
            let _ = writeln!(out, " {:>14}", s.total.counters[k]);
        }
        let r = &s.rate;
        let _ = writeln!(
            out,
            "rate: CPS {} InPPS {} OutPPS {} InBPS {} OutBPS {}",
            r.cps, r.inpps, r.outpps, r.inbps, r.outbps
        );
    }
    names.sort();
    let _ = write!(out, "{:<24}", "drop reason");
    for i in 0..s.workers.len() {
        let _ = write!(out, " {:>12}", format!("worker{i}"));
    }
    let _ = writeln!(out, " {:>12}", "total");
    for k in names {
        let _ = write!(out, "{k:<24}");
        for w in &s.workers {
            let _ = write!(out, " {:>12}", w.drops.get(k).copied().unwrap_or(0));
        }
        let _ = writeln!(out, " {:>12}", s.total.drops[k]);
    }
    out
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
                    filter: ConnFilter::default(),
                },
            )?;
            Ok(pretty(&v))
        }
        Cmd::List(o) if o.conns => {
            // Streamed: the daemon hands the connections over a chunk at a time and each chunk is
            // printed as it comes, so a million of them list in bounded memory.
            let filter = ConnFilter {
                stream: true,
                limit: Some(gateway::control::server::MAX_CONN_LIMIT),
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

/// VPP's `show runtime` layout: per worker, each stage's calls, packets, cycles and their ratios.
fn format_runtime(v: &RuntimeView) -> String {
    let mut out = String::new();
    for w in &v.workers {
        let secs = w.busy_cycles as f64 / v.tsc_hz.max(1) as f64;
        let _ = writeln!(
            out,
            "worker {}: busy {} cycles ({secs:.3} s), {} packets, {} cycles/packet",
            w.worker,
            w.busy_cycles,
            w.busy_packets,
            w.busy_cycles.checked_div(w.busy_packets).unwrap_or(0)
        );
        let _ = writeln!(
            out,
            "  {:<10} {:>12} {:>14} {:>16} {:>10} {:>10} {:>7}",
            "stage", "calls", "packets", "cycles", "cyc/pkt", "pkts/call", "share"
        );
        for s in &w.stages {
            let per = |a: u64, b: u64| match b {
                0 => "-".to_string(),
                _ => format!("{:.1}", a as f64 / b as f64),
            };
            let share = match w.busy_cycles {
                0 => "-".to_string(),
                b => format!("{:.1}%", s.cycles as f64 * 100.0 / b as f64),
            };
            let _ = writeln!(
                out,
                "  {:<10} {:>12} {:>14} {:>16} {:>10} {:>10} {:>7}",
                s.stage,
                s.calls,
                s.packets,
                s.cycles,
                per(s.cycles, s.packets),
                per(s.packets, s.calls),
                share
            );
        }
    }
    out
}

fn announce_op(cmd: &str, rest: &[String]) -> Result<Op, Fail> {
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
            v if vip.is_none() && cmd != "announce" => match v.parse::<std::net::Ipv4Addr>() {
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

fn format_announce(v: &gateway::kernel::announce::AnnounceView) -> String {
    let mut out = String::new();
    match v.table {
        Some(t) => {
            let _ = writeln!(
                out,
                "announce table {t} (blackhole routes, proto {})",
                gateway::kernel::announce::ROUTE_PROTOCOL
            );
        }
        None => {
            let _ = writeln!(
                out,
                "announce: not configured ([announce] in the config); nothing is announced"
            );
        }
    }
    for a in &v.announced {
        let _ = writeln!(out, "  {a:<15} announced");
    }
    for (a, why) in &v.withheld {
        let _ = writeln!(out, "  {a:<15} withheld: {why}");
    }
    for d in &v.drains {
        let what = d.vip.map_or("every VIP".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "drain {what}: {} for {:.1} s, {} connections left, deadline in {:.1} s",
            d.state, d.for_s, d.conns, d.left_s
        );
    }
    if v.errors > 0 {
        let _ = writeln!(out, "route changes refused by the kernel: {}", v.errors);
    }
    out
}

/// `acl -t|-u VIP:PORT (allow|deny PREFIX)...|none`: a service's access list, replaced whole.
fn acl_change(rest: &[String]) -> Result<Change, Fail> {
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
fn limit_change(rest: &[String]) -> Result<Change, Fail> {
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
fn svc_and_words(
    rest: &[String],
    usage: impl Fn() -> Fail,
) -> Result<(gateway::control::proto::SvcKey, Vec<&str>), Fail> {
    let mut it = rest.iter().map(String::as_str);
    let svc = svc_arg(&mut it).ok_or_else(usage)??;
    Ok((svc, it.flat_map(str::split_whitespace).collect()))
}

/// `-t|-u VIP:PORT` from the front of `it`: None without `-t`/`-u`, an error for a bad address.
fn svc_arg<'a>(
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
fn check_change(cmd: &str, rest: &[String]) -> Result<Change, Fail> {
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

/// Every command with its one-line help and its full help.
const COMMANDS: &[(&str, &str, &str)] = &[
    ("ipvsadm", "ipvsadm ARGS...          ipvsadm's commands and formats", "Runs an ipvsadm command line: -A -E -D -C -R -S -a -e -d -L -Z -P -Q -G.\nSee `ipvsadm -h` (or `gwctl ipvsadm -h`) for the options.\nIn the shell, `ipvsadm -R < FILE` restores from a file and `ipvsadm -S > FILE` saves to one."),
    ("status", "status                   daemon version, generation, workers", "Shows the protocol version, the generation every worker runs, and counts."),
    ("services", "services                 services and real servers (ipvsadm -Ln)", "Same as `ipvsadm -Ln`."),
    ("conns", "conns [FILTERS]          connections of every worker", "Filters (all must match): --proto tcp|udp, --client IP[:PORT], --vip IP[:PORT],\n--rs IP[:PORT], --state STATE (ESTABLISHED, SYN_RECV, ...), --worker N, --limit N."),
    ("stats", "stats                    per-port, per-worker counters and drops", "Per-port counters of the NICs, each worker's counters, rates over the last second, and drops by reason."),
    ("drops", "drops                    drop counters by reason and worker", "Only the drop counters (non-zero ones), per worker and in total."),
    ("rate", "rate                     CPS, in/out PPS and BPS over the last second", "Gateway-wide rates computed from the workers' counters, sampled every second."),
    ("zero", "zero                     zero the counters shown (ipvsadm -Z)", "Counters shown by stats, drops and ipvsadm --stats start again from zero."),
    ("addrs", "addrs                    interface and service addresses", "Each port's MAC and addresses (with where each comes from: config, config_kernel, kernel), and the VIPs and LIPs the gateway answers for."),
    ("routes", "routes                   the routing table", "Connected, config and kernel routes, longest prefix first, each with where it comes from (config, config_kernel: written onto the twin at start, kernel: added there since)."),
    ("drain", "drain [VIP] [--timeout S]   withdraw from BGP, serve until connections end", "Withdraws the VIP (every VIP without one) from the routing daemon at once ([announce] in conf/README.md) and keeps serving it, new connections included, until its connections have ended or the timeout ([announce] drain_timeout_s by default) has passed; then the drain is done and the VIP takes no new connection. Shows the announce state."),
    ("undrain", "undrain [VIP]            announce again", "Ends the VIP's drain (every drain without one): the VIP takes new connections and is announced again when it has a real server up."),
    ("announce", "announce                 announced and withheld VIPs, drains", "The VIPs whose routes are in the announce table, the others with why (draining, no real server up, not held), and each drain: draining or drained, for how long, connections left, time to the deadline."),
    ("events", "events [--follow] [--count N] [--duration S]   what changed and why", "The event log, oldest first: configuration generations and what caused them (admin commands, reload, timeouts, kernel changes, drains), refused changes with the reason, health transitions, VIPs announced and withdrawn, start and stop. Each is also a log line (target gateway::events). --follow shows the last 10 (or --count) and then each new event as it happens, until --count new events or --duration seconds have been shown, or Ctrl-C. The daemon keeps the last 4096."),
    ("runtime", "runtime [clear]          cycles per stage and worker (VPP's show runtime)", "Each worker's busy cycles (rounds that handled packets, and housekeeping) split by stage of the poll round: rx (polling the ports), l2-l3 (header checks), lookup (connection table), forward (scheduling, rewriting, routing), tx (into the drivers), handoff (rings from other workers), twin (the kernel twins' queues), timers (expiry, neighbours, control). Calls are the stage's runs that had packets; the stages add up to the busy cycles. `runtime clear` starts them again from zero."),
    ("health", "health                   real servers' health checks", "Each checked real server: its service, the check's kind, up or down and for how long, checks run and failed, the client SYNs it refused (syn_rst) and left unanswered (syn_lost) as the workers counted them (passive detection), and the last result's reason (\"connection refused\", \"HTTP 503\", \"timeout\", or the passive verdict)."),
    ("check", "check -t|-u VIP:PORT [-r RIP[:PORT]] TABLE|none   set a health check", "Sets the health check of a service, or with -r a real server's override of it: the keys of [service.check] in conf/README.md as a TOML inline table, e.g. check -t 10.10.0.100:80 '{ kind = \"http\", path = \"/health\", interval_ms = 500 }'. `none` removes it. The change is validated (a bad key is refused, naming it) and applied like an ipvsadm command; `gwctl save` writes it."),
    ("sync", "sync [ready | role auto|master|backup|off]   connection sync", "`sync ready` exits 0 when this box may take the VIPs without losing connections and 1 while it is a backup waiting for its peer's full resync (a backup that just started or met its peer again; it stops waiting when the peer's resync done arrives, or when no peer is heard for 3 s): keepalived's `track_script`, so that a restarted primary takes the VIP back only once it holds the connections. Without arguments: the sync role and how it is chosen (auto: master while a kernel-owned VIP is on a twin, as keepalived's MASTER puts it there), the peer, when it was last heard (the lag), whether its layout matches, and the counters: messages and records sent and received, refusals by reason (bad MAC, replay, layout), resyncs, and the workers' records logged, installed, refreshed and refused. With `role`: how the role is chosen from now on (`ipvsadm --start-daemon` and `--stop-daemon` do the same). Needs [sync] in the config."),
    ("synproxy", "synproxy [-t VIP:PORT on|off|auto]   SYN proxy", "Without arguments: the services whose SYN proxy is on or auto, how many workers have auto mode on, and the counters summed over the workers (cookies sent, valid and invalid ACKs, connections opened, servers that answered, client packets and handshake data held). With a service: sets its proxy; `on` answers every SYN with a cookie and opens the real server's connection only when the client's ACK proves its address, `auto` does so while a worker holds [synproxy] auto_half_open half-open connections. TCP services with FullNAT or NAT real servers only (refused otherwise); `gwctl save` writes it ([[service]] synproxy)."),
    ("acl", "acl [-t|-u VIP:PORT (allow|deny PREFIX)...|none]   access lists", "Without arguments: each service's access list with the new connections each rule decided and the default (`otherwise allow` without an allow rule, else `otherwise deny`). With a service: replaces its list, e.g. acl -t 10.10.0.100:80 deny 10.10.0.66 allow 10.10.0.0/24; `none` removes it. The first rule whose prefix holds the client decides; refused connections are dropped before any state exists (drop reason acl_denied). Validated (a bad rule is refused, naming it) and applied like an ipvsadm command; `gwctl save` writes it ([[service]] acl)."),
    ("limit", "limit [-t|-u VIP:PORT (KEY VALUE)...|none]   per-client limits", "Without arguments: each service's per-client limit with the new connections it refused for the rate (rate_refused) and for open connections (conns_refused), summed over the workers. With a service: sets its limit, replacing it whole, e.g. limit -t 10.10.0.100:80 rate 50 burst 100 max_conns 10 prefix 24 action rst (or the same as a TOML inline table, '{ rate = 50, max_conns = 10 }'); `none` removes it. Keys: rate (new connections per second per client), burst (default rate), max_conns (open connections per client), prefix (clients counted by this prefix of their address, default 32), action (drop, the default, or rst: a refused SYN is answered with a RST). Each worker enforces its share (1/n) of each limit: see client_limit in conf/README.md for the error this allows. Refused connections are dropped before any state exists (drop reasons limit_rate, limit_conns). Validated (a bad key is refused, naming it) and applied like an ipvsadm command; `gwctl save` writes it ([[service]] client_limit)."),
    ("sorry", "sorry -t|-u VIP:PORT ADDR:PORT|none   set a sorry server", "Sets the service's sorry server (keepalived's sorry_server): it takes new connections while every real server is held down by the health checks. `none` removes it."),
    ("twins", "twins                    kernel twins, punt counters, kernel-owned addresses", "Each port's kernel twin (interface, driver, ifindex), the VIPs and LIPs owned by the kernel with whether a twin holds them, and the punt counters summed over the workers."),
    ("neigh", "neigh                    neighbour (ARP) entries of every worker", "Each worker's neighbour table: address, port, MAC (or incomplete), age."),
    ("sysctl", "sysctl [NAME [VALUE]]    IPVS settings ipvsadm has no option for", "Shows or sets, for every worker at once: conn_reuse_mode (0..=3, IPVS's sysctl: what a client's\nSYN on a tuple the gateway still holds does; 1, the default, schedules it afresh from\nTIME_WAIT/CLOSE, 2 also from FIN_WAIT of DR/TUN connections, 0 follows the old connection).\nThe config key is [conn] conn_reuse_mode."),
    ("capture", "capture --port NAME [--count N] [--filter BPF] [--duration S] -w FILE   capture a port into a pcapng file", "Records what the port (its [[port]] name) receives, before the datapath rewrites it, and sends,\nafter, into FILE as pcapng (tcpdump -r and Wireshark read it; each frame is marked In or Out),\nwithout stopping traffic. --filter takes tcpdump's filter syntax (pcap-filter(7)); --count (default\n1000), --duration S or Ctrl-C ends it; --snaplen N keeps at most N bytes of each frame (262144).\nOne capture at a time. At the end it says how many frames were written and how many the workers\ncould not copy (their ring was full: the file then misses those)."),
    ("save", "save [FILE]              a TOML configuration with the running services", "Writes the daemon's configuration with its [[service]] sections replaced by the running ones;\nthe daemon can start from it. Without FILE, prints it."),
    ("raw", "raw JSON                 send one protocol request", "Sends a request object such as {\"op\":\"list\"} (the version is added) and prints the raw response."),
    ("help", "help [COMMAND]           this help", "Shows every command, or one in detail."),
];

fn help(cmd: Option<&str>) -> String {
    match cmd.and_then(|c| COMMANDS.iter().find(|x| x.0 == c)) {
        Some((_, short, long)) => format!("{short}\n\n{long}\n"),
        None => {
            let mut out = String::from(
                "gwctl [--socket PATH] [--json] [COMMAND ARGS...]   (no command: interactive shell)\n\nCommands:\n",
            );
            for (_, short, _) in COMMANDS {
                let _ = writeln!(out, "  {short}");
            }
            out
        }
    }
}

/// Splits a shell line into words, with single and double quotes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct Helper;

impl rustyline::completion::Completer for Helper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let head = &line[..pos];
        let start = head.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &head[start..];
        let first = start == 0;
        let opts = [
            "-A",
            "-E",
            "-D",
            "-C",
            "-R",
            "-S",
            "-a",
            "-e",
            "-d",
            "-L",
            "-Z",
            "-P",
            "-Q",
            "-G",
            "-t",
            "-u",
            "-s",
            "-p",
            "-M",
            "-r",
            "-g",
            "-i",
            "-m",
            "-b",
            "-w",
            "-x",
            "-y",
            "-z",
            "-n",
            "-c",
            "--stats",
            "--rate",
            "--exact",
            "--timeout",
            "--sort",
            "--thresholds",
            "--persistent-conn",
            "--proto",
            "--client",
            "--vip",
            "--rs",
            "--state",
            "--worker",
            "--limit",
            "--port",
            "--count",
            "--filter",
            "--duration",
            "--snaplen",
            "rr",
            "wrr",
            "lc",
            "wlc",
            "lblc",
            "lblcr",
            "dh",
            "sh",
            "sed",
            "nq",
            "fo",
            "ovf",
            "mh",
        ];
        let cands: Vec<String> = if first {
            COMMANDS
                .iter()
                .map(|c| c.0)
                .chain(["quit", "exit"])
                .filter(|c| c.starts_with(word))
                .map(String::from)
                .collect()
        } else {
            opts.iter()
                .filter(|c| c.starts_with(word))
                .map(|c| c.to_string())
                .collect()
        };
        Ok((start, cands))
    }
}

impl rustyline::hint::Hinter for Helper {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Helper {}
impl rustyline::validate::Validator for Helper {}
impl rustyline::Helper for Helper {}

/// The interactive shell.
fn shell(ctx: &Ctx) -> ExitCode {
    let mut ed = match rustyline::Editor::<Helper, rustyline::history::DefaultHistory>::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("gwctl: cannot start the shell: {e}");
            return ExitCode::FAILURE;
        }
    };
    ed.set_helper(Some(Helper));
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".gwctl_history"));
    if let Some(h) = &history {
        let _ = ed.load_history(h);
    }
    println!(
        "gwctl shell on {}: `help` lists the commands, Tab completes, Ctrl-D quits.",
        ctx.socket.display()
    );
    // The shell's exit status: failure if any command failed (scripts piping commands in see it).
    let mut failed = false;
    loop {
        let line = match ed.readline("gwctl> ") {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(_) => break,
        };
        let mut w = words(&line);
        if w.is_empty() {
            continue;
        }
        let _ = ed.add_history_entry(line.as_str());
        if w[0] == "quit" || w[0] == "exit" {
            break;
        }
        // `< FILE` feeds ipvsadm -R; `> FILE` writes the output to a file.
        let mut stdin = None;
        let mut stdout = None;
        while w.len() >= 2 && (w[w.len() - 2] == "<" || w[w.len() - 2] == ">") {
            let file = w.pop().unwrap_or_default();
            let op = w.pop().unwrap_or_default();
            if op == "<" {
                match std::fs::read_to_string(&file) {
                    Ok(s) => stdin = Some(s),
                    Err(e) => {
                        eprintln!("cannot read {file}: {e}");
                        failed = true;
                        continue;
                    }
                }
            } else {
                stdout = Some(file);
            }
        }
        let r = if w[0].starts_with('-') {
            ipvsadm_cmd(ctx, &w, stdin)
        } else {
            run(ctx, &w, stdin)
        };
        match (r, stdout) {
            (Ok(out), Some(f)) => {
                if let Err(e) = std::fs::write(&f, out) {
                    eprintln!("cannot write {f}: {e}");
                    failed = true;
                }
            }
            (Ok(out), None) => {
                if emit(&out).is_err() {
                    failed = true;
                }
            }
            (Err(Fail(msg, _)), _) => {
                failed = true;
                eprintln!("error: {msg}");
            }
        }
    }
    if let Some(h) = &history {
        let _ = ed.save_history(h);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// How `gwctl addrs` and `routes` name an origin.
fn origin_name(o: gateway::view::Origin) -> &'static str {
    use gateway::view::Origin;
    match o {
        Origin::Config => "config",
        Origin::ConfigKernel => "config_kernel",
        Origin::Kernel => "kernel",
    }
}

/// `gwctl sync`: the sync thread's status and the workers' counters (`Op::Sync`).
fn format_sync(v: &serde_json::Value) -> String {
    let s = &v["status"];
    let mut out = String::new();
    let text = |k: &str| match &s[k] {
        serde_json::Value::String(x) => x.clone(),
        serde_json::Value::Null => "-".into(),
        x => x.to_string(),
    };
    let _ = writeln!(
        out,
        "role {} (mode {}, kernel-owned VIP held: {})",
        text("role"),
        text("mode"),
        text("vips_held")
    );
    let _ = writeln!(
        out,
        "local {}  peer {}  id {}",
        text("local"),
        text("peer"),
        text("id")
    );
    let _ = writeln!(
        out,
        "peer id {}, last heard {} ms ago, layout {}",
        text("peer_id"),
        text("last_from_peer_ms"),
        text("peer_layout")
    );
    let skip = [
        "mode",
        "role",
        "vips_held",
        "local",
        "peer",
        "id",
        "peer_id",
        "last_from_peer_ms",
        "peer_layout",
    ];
    if let Some(m) = s.as_object() {
        for (k, x) in m.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
            let _ = writeln!(out, "  {k:<28} {x:>12}");
        }
    }
    if let Some(m) = v["workers"].as_object() {
        let _ = writeln!(out, "workers:");
        for (k, x) in m {
            let _ = writeln!(out, "  {:<28} {x:>12}", k.trim_start_matches("sync_"));
        }
    }
    out
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
