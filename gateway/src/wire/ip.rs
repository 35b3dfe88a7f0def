//! What IPv4 and IPv6 share: the protocol number of what they carry, which the checksums'
//! pseudo-headers hold too.

/// The IPv4 Protocol field, IPv6's Next Header (IANA "Assigned Internet Protocol Numbers"). A
/// newtype so unknown values pass through.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// IP in IP (RFC 2003): what TUN mode wraps packets in.
    pub const IPIP: IpProtocol = IpProtocol(4);
    pub const TCP: IpProtocol = IpProtocol(6);
    pub const UDP: IpProtocol = IpProtocol(17);
}
