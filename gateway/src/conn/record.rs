//! A connection as another box learns it (issue 12, HA sync): everything a backup needs to install
//! it into the worker that would own it, by identity rather than by this box's table indices
//! (the service is its VIP:vport/protocol, the real server its address and port). Plain data,
//! DPDK-free; `sync::wire` puts it on the wire.
//!
//! Either family: an IPv4 connection's four addresses are IPv4; an IPv6 one's client and VIP are
//! IPv6, its real server and local address IPv6, or IPv4 for NAT64 (`forward::mode::NAT64`).

use std::net::{IpAddr, Ipv4Addr};

/// What kind of entry a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A connection.
    Conn,
    /// A persistence template (client -> real server), IPVS's `IP_VS_CONN_F_TEMPLATE`.
    Template,
    /// The SYN proxy's sequence translation of the connection of the record's client tuple,
    /// sent after the connection's own record: without it a backup would forward the
    /// connection's segments untranslated.
    Translation(SeqAdj),
}

/// How one SYN-proxied connection's segments are shifted once its real server has answered
/// (`forward::synproxy`); a translation record ([`RecordKind::Translation`]) carries it to a
/// backup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeqAdj {
    /// Our ISN minus the server's: added to the server's sequence numbers, taken from the
    /// client's acknowledgements and SACK edges.
    pub seq: u32,
    /// Our TSval minus the server's, likewise for TSval and TSecr (0 without timestamps).
    pub ts: u32,
    /// The server's window scale and ours, when both sides scale (else equal: no rescaling).
    pub server_ws: u8,
    pub our_ws: u8,
    /// The client's window scale when the server does not scale (the client, which scales with
    /// us, then has its windows widened for the server); else 0.
    pub client_shift: u8,
}

/// One synced connection or persistence template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnRecord {
    pub kind: RecordKind,
    /// IP protocol (6, 17).
    pub proto: u8,
    /// Forwarding mode (`forward::mode`: FullNAT, NAT, DR, TUN).
    pub mode: u8,
    /// IPVS state (`conn::State` as a number).
    pub state: u8,
    /// The client's side as packets arrive: CIP:cport -> VIP:vport.
    pub client: (IpAddr, u16),
    pub vip: (IpAddr, u16),
    /// The real server (RIP:rport).
    pub real: (IpAddr, u16),
    /// FullNAT: the local address and port the real server sees (LIP:lport); the unspecified
    /// address of the client's family and 0 otherwise.
    pub local: (IpAddr, u16),
    /// Milliseconds left before the entry expires when it was sent.
    pub remaining_ms: u32,
}

impl ConnRecord {
    /// The record of connection `c` (either table's) toward real server `real`, from local
    /// address `local` (FullNAT, NAT64; the unspecified address and 0 otherwise), `now` giving
    /// its time left.
    pub fn of_conn<T: crate::conn::ConnKey>(
        c: &crate::conn::ConnOf<T>,
        real: (IpAddr, u16),
        local: (IpAddr, u16),
        now: crate::conn::Ticks,
    ) -> ConnRecord {
        let (client, vip) = c.client().ends();
        ConnRecord {
            kind: RecordKind::Conn,
            proto: c.proto(),
            mode: c.mode(),
            state: c.state() as u8,
            client,
            vip,
            real,
            local,
            remaining_ms: ms_left(c.deadline().0, now),
        }
    }
}

impl ConnRecord {
    /// The translation record of `conn`, a SYN-proxied connection's record: its client tuple,
    /// protocol, mode and local address and port (which name the worker that owns it on the
    /// backup, as for `conn`), with the shifts `adj`; no real server, state or time of its own.
    pub fn translation(conn: &ConnRecord, adj: SeqAdj) -> ConnRecord {
        let unspecified = match conn.client.0 {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        ConnRecord {
            kind: RecordKind::Translation(adj),
            state: 0,
            real: (unspecified, 0),
            remaining_ms: 0,
            ..*conn
        }
    }
}

/// Milliseconds from `now` to `deadline` (ms), as a record carries them: none once past, at most
/// `u32::MAX`.
pub fn ms_left(deadline: u64, now: crate::conn::Ticks) -> u32 {
    deadline.saturating_sub(now.0).min(u64::from(u32::MAX)) as u32
}

/// An IPv4 record's addresses ([`ConnRecord::v4`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addrs4 {
    pub client: (Ipv4Addr, u16),
    pub vip: (Ipv4Addr, u16),
    pub real: (Ipv4Addr, u16),
    pub local: (Ipv4Addr, u16),
}

impl ConnRecord {
    /// Whether this is an IPv6 connection's (or template's) record: its client is IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.client.0.is_ipv6()
    }

    /// The addresses of an IPv4 record: None if any of them is IPv6.
    pub fn v4(&self) -> Option<Addrs4> {
        let v4 = |(a, p): (IpAddr, u16)| match a {
            IpAddr::V4(a) => Some((a, p)),
            IpAddr::V6(_) => None,
        };
        Some(Addrs4 {
            client: v4(self.client)?,
            vip: v4(self.vip)?,
            real: v4(self.real)?,
            local: v4(self.local)?,
        })
    }
}
