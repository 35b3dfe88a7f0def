//! `gwctl` without arguments: an interactive shell with history, completion (rustyline) and help.

use super::*;

/// Every command with its one-line help and its full help.
pub(crate) const COMMANDS: &[(&str, &str, &str)] = &[
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
    ("sync", "sync [ready | role auto|master|backup|off]   connection sync", "`sync ready` exits 0 when this box may take the VIPs without losing connections and 1 while it is a backup waiting for its peer's full resync (a backup that just started or met its peer again; it stops waiting when the peer's resync done arrives, or when no peer is heard for 3 s): keepalived's `track_script`, so that a restarted primary takes the VIP back only once it holds the connections. Without arguments: the sync role and how it is chosen (auto: master while a kernel-owned VIP is on a twin, as keepalived's MASTER puts it there), the peer, when it was last heard (the lag), whether its layout matches, and the counters: messages and records sent and received, refusals by reason (bad MAC, replay, layout), resyncs, and the workers' records logged, installed, refreshed, translated (a SYN-proxied connection's shifts) and refused. With `role`: how the role is chosen from now on (`ipvsadm --start-daemon` and `--stop-daemon` do the same). Needs [sync] in the config."),
    ("synproxy", "synproxy [-t VIP:PORT on|off|auto]   SYN proxy", "Without arguments: the services whose SYN proxy is on or auto, how many workers have auto mode on, and the counters summed over the workers (cookies sent, valid and invalid ACKs, connections opened, servers that answered, client packets and handshake data held). With a service: sets its proxy; `on` answers every SYN with a cookie and opens the real server's connection only when the client's ACK proves its address, `auto` does so while a worker holds [synproxy] auto_half_open half-open connections. TCP services with FullNAT or NAT real servers only, an IPv6 service (`-t [VIP6]:PORT`) with IPv6 ones (refused otherwise); `gwctl save` writes it ([[service]] synproxy)."),
    ("acl", "acl [-t|-u VIP:PORT (allow|deny PREFIX)...|none]   access lists", "Without arguments: each service's access list with the new connections each rule decided and the default (`otherwise allow` without an allow rule, else `otherwise deny`). With a service: replaces its list, e.g. acl -t 10.10.0.100:80 deny 10.10.0.66 allow 10.10.0.0/24; `none` removes it. The first rule whose prefix holds the client decides; refused connections are dropped before any state exists (drop reason acl_denied). Validated (a bad rule is refused, naming it) and applied like an ipvsadm command; `gwctl save` writes it ([[service]] acl)."),
    ("limit", "limit [-t|-u VIP:PORT (KEY VALUE)...|none]   per-client limits", "Without arguments: each service's per-client limit with the new connections it refused for the rate (rate_refused) and for open connections (conns_refused), summed over the workers. With a service: sets its limit, replacing it whole, e.g. limit -t 10.10.0.100:80 rate 50 burst 100 max_conns 10 prefix 24 action rst (or the same as a TOML inline table, '{ rate = 50, max_conns = 10 }'); `none` removes it. Keys: rate (new connections per second per client), burst (default rate), max_conns (open connections per client), prefix (clients counted by this prefix of their address, default 32; an IPv6 service's up to 128, default 128), action (drop, the default, or rst: a refused SYN is answered with a RST). Each worker enforces its share (1/n) of each limit: see client_limit in conf/README.md for the error this allows. Refused connections are dropped before any state exists (drop reasons limit_rate, limit_conns). Validated (a bad key is refused, naming it) and applied like an ipvsadm command; `gwctl save` writes it ([[service]] client_limit)."),
    ("sorry", "sorry -t|-u VIP:PORT ADDR:PORT|none   set a sorry server", "Sets the service's sorry server (keepalived's sorry_server): it takes new connections while every real server is held down by the health checks. `none` removes it."),
    ("twins", "twins                    kernel twins, punt counters, kernel-owned addresses", "Each port's kernel twin (interface, driver, ifindex), the VIPs and LIPs owned by the kernel with whether a twin holds them, and the punt counters summed over the workers."),
    ("neigh", "neigh                    neighbour (ARP) entries of every worker", "Each worker's neighbour table: address, port, MAC (or incomplete), age."),
    ("sysctl", "sysctl [NAME [VALUE]]    IPVS settings ipvsadm has no option for", "Shows or sets, for every worker at once: conn_reuse_mode (0..=3, IPVS's sysctl: what a client's\nSYN on a tuple the gateway still holds does; 1, the default, schedules it afresh from\nTIME_WAIT/CLOSE, 2 also from FIN_WAIT of DR/TUN connections, 0 follows the old connection).\nThe config key is [conn] conn_reuse_mode."),
    ("capture", "capture --port NAME [--count N] [--filter BPF] [--duration S] -w FILE   capture a port into a pcapng file", "Records what the port (its [[port]] name) receives, before the datapath rewrites it, and sends,\nafter, into FILE as pcapng (tcpdump -r and Wireshark read it; each frame is marked In or Out),\nwithout stopping traffic. --filter takes tcpdump's filter syntax (pcap-filter(7)); --count (default\n1000), --duration S or Ctrl-C ends it; --snaplen N keeps at most N bytes of each frame (262144).\nOne capture at a time. At the end it says how many frames were written and how many the workers\ncould not copy (their ring was full: the file then misses those)."),
    ("save", "save [FILE]              a TOML configuration with the running services", "Writes the daemon's configuration with its [[service]] sections replaced by the running ones;\nthe daemon can start from it. Without FILE, prints it."),
    ("raw", "raw JSON                 send one protocol request", "Sends a request object such as {\"op\":\"list\"} (the version is added) and prints the raw response."),
    ("help", "help [COMMAND]           this help", "Shows every command, or one in detail."),
];

pub(crate) fn help(cmd: Option<&str>) -> String {
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
pub(crate) fn words(line: &str) -> Vec<String> {
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

pub(crate) struct Helper;

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
pub(crate) fn shell(ctx: &Ctx) -> ExitCode {
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
