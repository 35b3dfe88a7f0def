//! The reply tuple: what a real server's answer to a FullNAT connection carries, and what the NIC
//! hashes to pick the receive queue.

use std::net::Ipv4Addr;

use super::toeplitz::Toeplitz;

/// A reply packet's addresses and ports: RIP:rport -> LIP:lport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyTuple {
    /// Real server address (RIP).
    pub src_ip: Ipv4Addr,
    /// Local address of the gateway (LIP).
    pub dst_ip: Ipv4Addr,
    /// Real server port (rport).
    pub src_port: u16,
    /// Local port chosen by the allocator (lport).
    pub dst_port: u16,
}

impl ReplyTuple {
    /// The RSS hash the NIC computes for this tuple (IPv4 with TCP/UDP input).
    #[inline]
    pub fn rss_hash(&self, toeplitz: &Toeplitz) -> u32 {
        toeplitz.hash_ipv4_l4(self.src_ip, self.dst_ip, self.src_port, self.dst_port)
    }
}
