//! The gateway daemon: `gateway --config FILE`.

use clap::Parser;
use gateway::config::Config;
use gateway::daemon::Signals;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Parser)]
#[command(version, about = "DPDK-based L4 load balancer (FullNAT, NAT, DR, TUN)")]
struct Args {
    /// The TOML configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Override `eal.file_prefix` (several instances on one machine).
    #[arg(long)]
    file_prefix: Option<String>,
    /// Override `control.stats_file`.
    #[arg(long)]
    stats_file: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GATEWAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cfg = match Config::from_file(&args.config).and_then(|mut c| {
        if let Some(p) = &args.file_prefix {
            c.eal.file_prefix = p.clone();
            c.validate()?;
        }
        if let Some(f) = &args.stats_file {
            c.control.stats_file = Some(f.clone());
        }
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: error: config {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("gateway: config {} is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    let signals = Signals {
        term: Arc::new(AtomicBool::new(false)),
        usr1: Arc::new(AtomicBool::new(false)),
        hup: Arc::new(AtomicBool::new(false)),
        config_path: Some(args.config.clone()),
    };
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    for (sig, flag) in [
        (SIGINT, &signals.term),
        (SIGTERM, &signals.term),
        (SIGUSR1, &signals.usr1),
        (SIGHUP, &signals.hup),
    ] {
        if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
            eprintln!("gateway: error: cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    let run = match gateway::daemon::start(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gateway: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(workers = cfg.workers.count, ports = ?run.port_names, "gateway ready");
    gateway::daemon::control_loop(&run, &cfg, &signals);
    tracing::info!("stopping");
    let report = run.shutdown();
    for line in report.lines() {
        tracing::info!("{line}");
    }
    tracing::info!("gateway stopped");
    ExitCode::SUCCESS
}
