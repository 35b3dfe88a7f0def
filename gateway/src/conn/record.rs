//! A connection as another box learns it (issue 12, HA sync): everything a backup needs to install
//! it into the worker that would own it, by identity rather than by this box's table indices
//! (the service is its VIP:vport/protocol, the real server its address and port). Plain data,
//! DPDK-free; `sync::wire` puts it on the wire.

use std::net::Ipv4Addr;

/// What kind of entry a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A connection.
    Conn,
    /// A persistence template (client -> real server), IPVS's `IP_VS_CONN_F_TEMPLATE`.
    Template,
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
    pub client: (Ipv4Addr, u16),
    pub vip: (Ipv4Addr, u16),
    /// The real server (RIP:rport).
    pub real: (Ipv4Addr, u16),
    /// FullNAT: the local address and port the real server sees (LIP:lport); zero otherwise.
    pub local: (Ipv4Addr, u16),
    /// Milliseconds left before the entry expires when it was sent.
    pub remaining_ms: u32,
}
