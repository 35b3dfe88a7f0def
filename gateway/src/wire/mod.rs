//! Zero-copy views of the headers the gateway reads and rewrites, and their checksums.
//!
//! In the style of smoltcp's `wire`: a `Packet<T: AsRef<[u8]>>` wraps a buffer without copying;
//! `new_checked` validates lengths (and whatever else makes the accessors meaningful) once, after
//! which no accessor panics; field offsets live in one `field` module per header. Setters exist on
//! `T: AsMut<[u8]>`. Nothing here knows DPDK, allocates, or logs.
//!
//! - [`ethernet`]: Ethernet II frames, [`MacAddr`], [`EtherType`].
//! - [`arp`]: Ethernet/IPv4 ARP (RFC 826), answering in place, writing requests.
//! - [`ip`]: what IPv4 and IPv6 share ([`IpProtocol`]).
//! - [`ipv4`]: IPv4 (RFC 791), writing fresh headers.
//! - [`ipv6`]: IPv6 (RFC 8200), extension headers, the IPv6 pseudo-header (not used by the datapath yet).
//! - [`tcp`]: TCP (RFC 9293), options, MSS clamping, TOA insertion (LVS FullNAT).
//! - [`udp`]: UDP (RFC 768).
//! - [`icmp`]: ICMPv4 (RFC 792), echo replies in place, writing errors.
//! - [`icmpv6`]: ICMPv6 (RFC 4443), neighbour solicitations read and advertisements written (RFC 4861).
//! - [`checksum`]: the Internet checksum (RFC 1071) and incremental updates (RFC 1624).
//! - [`packet`]: one-pass classification of a received frame for the datapath.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub(crate) mod field;
pub mod icmp;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod packet;
pub mod tcp;
pub mod udp;

pub use arp::{ArpOp, ArpPacket};
pub use ethernet::{EtherType, EthernetFrame, MacAddr};
pub use icmp::{EmbeddedTuple, IcmpPacket, IcmpType};
pub use ip::IpProtocol;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use packet::{
    parse_l3l4, parse_l3l4_with, parse_plain_tcp, plain_tcp_info, verify_ipv4_l4_checksum,
    verify_l4_checksum, DropReason, IpInfo, Parsed, PLAIN_TCP_LEN,
};
pub use tcp::{TcpFlags, TcpOption, TcpPacket, ToaError};
pub use udp::UdpPacket;

/// Why a header could not be viewed. Small on purpose: the datapath counts drops per reason (the
/// finer per-check reasons of a received frame are [`DropReason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header (or than a length field says).
    #[error("truncated packet")]
    Truncated,
    /// An IP version other than 4.
    #[error("bad IP version")]
    BadVersion,
    /// A header length field below the minimum or beyond the buffer.
    #[error("bad header length")]
    BadHeaderLen,
    /// A total/datagram length field inconsistent with the header or the buffer.
    #[error("bad total length")]
    BadTotalLen,
    /// A checksum that does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// A field combination the protocol forbids (e.g. a TCP option overrunning the header).
    #[error("malformed packet")]
    Malformed,
    /// Well-formed but not something this code handles (e.g. ARP for another hardware type).
    #[error("unsupported packet")]
    Unsupported,
}

/// `Result` with [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
