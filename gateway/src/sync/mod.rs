//! Connection sync for a primary/backup pair (issue 12, DESIGN.md decision 15; ROOMS.md `sync/`).
//!
//! - [`wire`]: the messages, their versioning, HMAC authentication and replay protection
//!   (`sync/PROTOCOL.md` for operators).
//! - [`link`]: the sync thread: a UDP socket on a kernel twin's address (so its datagrams reach
//!   the wire through the twin, like any daemon's), the role, hellos and full resyncs. It talks
//!   to the workers only through [`ToWorkers`], which the daemon delivers as worker messages, so
//!   this room imports neither the workers nor the kernel mirror.
//!
//! The workers' side is in `forward::fullnat::install`: a primary's workers log connections as
//! IPVS's sync daemon does and hand their records to the sync thread; a backup's workers install
//! each record into the worker that would own it.
//!
//! **Roles follow VRRP.** With `role = "auto"` a box is the master while one of its
//! `owner = "kernel"` VIPs is on a twin (keepalived's MASTER put it there) and the backup
//! otherwise, so no notify script is needed; `master`, `backup` and `off` fix the role
//! (`ipvsadm --start-daemon`, `gwctl sync role`).

pub mod link;
pub mod wire;
pub mod worker_side;

use crate::conn::record::ConnRecord;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

pub use link::{Handle, Status};

/// Which way connections flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Neither sends nor installs.
    #[default]
    Off,
    /// Sends its connections (and answers resync requests).
    Master,
    /// Installs what the master sends (and asks for everything when it starts).
    Backup,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Off => "off",
            Role::Master => "master",
            Role::Backup => "backup",
        })
    }
}

/// How the role is chosen (`[sync] role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleMode {
    /// Master while a kernel-owned VIP is on a twin, backup otherwise.
    Auto,
    Fixed(Role),
}

impl std::str::FromStr for RoleMode {
    type Err = String;
    fn from_str(s: &str) -> Result<RoleMode, String> {
        match s {
            "auto" => Ok(RoleMode::Auto),
            "master" => Ok(RoleMode::Fixed(Role::Master)),
            "backup" => Ok(RoleMode::Fixed(Role::Backup)),
            "off" => Ok(RoleMode::Fixed(Role::Off)),
            _ => Err(format!("{s:?} is not auto, master, backup or off")),
        }
    }
}

impl std::fmt::Display for RoleMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoleMode::Auto => f.write_str("auto"),
            RoleMode::Fixed(r) => r.fmt(f),
        }
    }
}

impl RoleMode {
    /// The role this mode gives while `vips_held` says whether a kernel-owned VIP is on a twin.
    pub fn role(self, vips_held: bool) -> Role {
        match self {
            RoleMode::Auto if vips_held => Role::Master,
            RoleMode::Auto => Role::Backup,
            RoleMode::Fixed(r) => r,
        }
    }
}

/// The validated `[sync]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub mode: RoleMode,
    /// The address the socket sends from: an address of the sync port's twin.
    pub local: Ipv4Addr,
    /// The peer's address, or a multicast group (joined on `local`'s interface).
    pub peer: Ipv4Addr,
    pub udp_port: u16,
    pub key: Vec<u8>,
    /// This box's sender id (default: `local` as a number).
    pub id: u32,
    /// A connection carrying packets is sent again at least this often (IPVS
    /// `sync_refresh_period`), so the backup's timers stay close.
    pub refresh_ms: u64,
    /// Connections each worker logs between two drains (5 ms); beyond, counted and caught up by
    /// the next refresh.
    pub log_capacity: usize,
    /// Messages per second the sender sends at most (a full resync is paced by it).
    pub max_msgs_per_s: u32,
}

/// A shared key written as hex digits: 32 to 128 of them (16 to 64 bytes).
pub fn parse_key(s: &str) -> Result<Vec<u8>, String> {
    let ok = s.len().is_multiple_of(2)
        && (32..=128).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err("must be 32 to 128 hex digits (16 to 64 bytes)".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// What a primary's worker hands the sync thread, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Export {
    /// Connections to send.
    Records(Vec<ConnRecord>),
    /// This worker has handed over every connection of the full resync `generation`
    /// ([`ToWorkers::ExportAll`]): its records are all ahead of this in the queue.
    ResyncDone(u32),
}

/// What a worker is to start logging for the backup.
#[derive(Clone, Debug)]
pub struct Primary {
    /// Where the worker's records go (the sync thread); a full queue costs the batch, counted.
    pub out: crossbeam_channel::Sender<Export>,
    pub refresh_ms: u64,
    pub log_capacity: usize,
}

/// What the sync thread asks of the workers; the daemon delivers it as worker messages.
#[derive(Clone, Debug)]
pub enum ToWorkers {
    /// Every worker: log connections for the backup (Some), or stop (None).
    Primary(Option<Primary>),
    /// Every worker: send every connection, then [`Export::ResyncDone`] with this generation (a
    /// backup asked for a full resync).
    ExportAll(u32),
    /// Records to install; the worker that gets them passes each to its owner.
    Install(Vec<ConnRecord>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_vips_in_auto_mode_only() {
        let auto: RoleMode = "auto".parse().unwrap();
        assert_eq!(
            (auto.role(true), auto.role(false)),
            (Role::Master, Role::Backup)
        );
        let m: RoleMode = "master".parse().unwrap();
        assert_eq!(m.role(false), Role::Master);
        let off: RoleMode = "off".parse().unwrap();
        assert_eq!(off.role(true), Role::Off);
        assert!("primary".parse::<RoleMode>().is_err());
        for s in ["auto", "master", "backup", "off"] {
            assert_eq!(s.parse::<RoleMode>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn keys_are_hex_of_16_to_64_bytes() {
        assert_eq!(parse_key(&"ab".repeat(16)).unwrap(), vec![0xab; 16]);
        assert!(parse_key(&"ab".repeat(15)).is_err(), "too short");
        assert!(parse_key(&"ab".repeat(65)).is_err(), "too long");
        assert!(parse_key(&format!("{}a", "ab".repeat(16))).is_err(), "odd");
        assert!(parse_key(&"zz".repeat(16)).is_err(), "not hex");
    }
}
