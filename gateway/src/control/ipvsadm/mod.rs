//! The `ipvsadm` front-end: its command line (getopt-style clusters such as `-Lnc`, long options,
//! `-p [timeout]`) turned into protocol changes and queries, and its listings formatted byte for byte
//! as ipvsadm 1.2x prints them (`print_title`, `print_service_entry`, `print_largenum`, `list_conn`
//! of ipvsadm.c), plus DPVS's FullNAT additions: `-b` (fullnat) for real servers, `-P/-Q/-G` with
//! `-z LIP [-F ifname]` for local addresses.
//!
//! `-b` means `--sched-flags FLAGS` after `-A`/`-E` (as in LVS) and `--fullnat` elsewhere (as in
//! DPVS). Without `-g/-m/-i/-b` a real server is `-g`, as in ipvsadm.
//!
//! - [`parse`](parse()): a command line into a [`Cmd`]; [`parse_restore`]: `ipvsadm -R`'s input.
//! - `names`: host and service names from /etc/hosts and /etc/services ([`Names`]).
//! - `format`: the listings (`-L` and its options, `-S`, `-Lc`, `--timeout`, `--daemon`, `-G`).

mod format;
mod names;
mod parse;
#[cfg(test)]
mod tests;

pub use format::{
    format_conn_lines, format_conns, format_conns_header, format_daemon, format_laddrs,
    format_list, format_rules, format_timeout, largenum,
};
pub use names::Names;
pub use parse::{parse, parse_restore};

use super::proto::{Change, SvcKey};

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
