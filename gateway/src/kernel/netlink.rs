//! rtnetlink through `netlink-sys` and `netlink-packet-route` (no hand-written netlink parsing):
//! requests that reconcile the twins with the config at start (find or remove an interface, add
//! an address or a route), dumps, and the listener that turns the kernel's notifications about
//! the twins into [`KernelEvent`]s (VPP `lcp_nl.c`). Control plane only; calls block briefly.

use super::KernelEvent;
use crate::net::{Ipv4Cidr, Ipv6Cidr};
use crate::wire::MacAddr;
use hashbrown::HashMap;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Multicast groups of the listener (`enum rtnetlink_groups` in linux/rtnetlink.h).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_NEIGH: u32 = 3;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;

/// A route the gateway writes is marked `proto static` (RTPROT_STATIC), as `ip route add` does.
const ROUTE_PROTOCOL: RouteProtocol = RouteProtocol::Static;

/// The metric of the config's routes on the twins. A replace only ever matches a route of the same
/// prefix *and* metric: the host's own routes (a management default route, metric 0 or a DHCP
/// client's 100-600) are neither replaced nor outranked; the mirror takes the lowest metric among
/// the routes through twins, so an operator's `ip route add` (metric 0) wins over the config's.
pub const CONFIG_ROUTE_METRIC: u32 = 1000;

/// An interface as `link_by_name` finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// IFLA_INFO_KIND (`tun`, `veth`, ...); None for a plain device.
    pub kind: Option<String>,
    /// IFLA_CARRIER. A tun device has carrier only while a process has a queue of it open.
    pub carrier: Option<bool>,
    /// IFLA_IFALIAS (`ip link set … alias`): twins carry [`super::twin::ALIAS`].
    pub alias: Option<String>,
}

/// Whether `m` says a twin's link changed (flags, carrier, gone): routes the kernel flushes then
/// get no RTM_DELROUTE of their own, so the mirror dumps again.
pub fn is_twin_link_change(m: &RouteNetlinkMessage, twins: &HashMap<u32, u16>) -> bool {
    match m {
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
            twins.contains_key(&l.header.index)
        }
        _ => false,
    }
}

/// The port whose twin `m` says is gone (RTM_DELLINK of a twin's ifindex: someone ran `ip link
/// del` on it). The gateway does not create it again while it runs: the twin's addresses and
/// routes leave the gateway with it (the kernel is the source of truth), and the port's kernel
/// traffic has nowhere to go until a restart.
pub fn deleted_twin(m: &RouteNetlinkMessage, twins: &HashMap<u32, u16>) -> Option<u16> {
    match m {
        RouteNetlinkMessage::DelLink(l) => twins.get(&l.header.index).copied(),
        _ => None,
    }
}

/// A request socket.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

fn nl_error(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code.abs())
}

/// Splits a datagram into its messages. One this crate cannot decode (a new attribute layout,
/// another family's oddity) is skipped by its header's length, not allowed to end the rest.
fn messages(data: &[u8]) -> Vec<NetlinkMessage<RouteNetlinkMessage>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let Ok(buf) = NetlinkBuffer::new_checked(&data[off..]) else {
            break;
        };
        let len = buf.length() as usize;
        if len == 0 {
            break;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..]) {
            out.push(m);
        }
        // Messages are 4-byte aligned (NLMSG_ALIGN).
        off += len.div_ceil(4) * 4;
    }
    out
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// Sends `msg` with `flags` (REQUEST added) and collects what comes back until the dump's end
    /// or the acknowledgement; a negative acknowledgement is the error.
    fn call(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | flags;
        hdr.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full()?;
            for m in messages(&data) {
                if m.header.sequence_number != self.seq {
                    continue;
                }
                if m.header.flags & NLM_F_DUMP_INTR != 0 {
                    // The tables changed during the dump: it is inconsistent; the caller dumps
                    // again.
                    return Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "dump interrupted",
                    ));
                }
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(code) => Err(nl_error(code.get())),
                            None => Ok(out),
                        }
                    }
                    NetlinkPayload::InnerMessage(inner) => {
                        out.push(inner);
                        if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The interface called `name`, if it exists.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.call(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(v) => Ok(v.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link {
                    index: l.header.index,
                    kind: link_kind(&l),
                    alias: l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfAlias(s) => Some(s.clone()),
                        _ => None,
                    }),
                    carrier: l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::Carrier(c) => Some(*c != 0),
                        _ => None,
                    }),
                }),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(19) => Ok(None), // ENODEV
            Err(e) => Err(e),
        }
    }

    /// `ip link set INDEX alias ALIAS`.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfAlias(alias.to_string()));
        self.call(RouteNetlinkMessage::SetLink(m), NLM_F_ACK)
            .map(drop)
    }

    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.call(RouteNetlinkMessage::DelLink(m), NLM_F_ACK)
            .map(drop)
    }

    /// `ip addr replace CIDR dev INDEX`.
    pub fn add_address(&mut self, index: u32, cidr: Ipv4Cidr) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = cidr.len;
        m.header.index = index;
        m.attributes
            .push(AddressAttribute::Local(IpAddr::V4(cidr.addr)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(cidr.addr)));
        if cidr.len < 31 {
            let bcast = u32::from(cidr.addr) | !cidr.mask();
            m.attributes
                .push(AddressAttribute::Broadcast(Ipv4Addr::from(bcast)));
        }
        self.call(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// `ip -6 addr replace CIDR dev INDEX nodad`: the address is the gateway's own by
    /// configuration (the datapath answers neighbour discovery for it), so the kernel need not
    /// probe the link for a duplicate first (RFC 4862 5.4), which would hold the address
    /// tentative, unusable, for a second.
    pub fn add_address6(&mut self, index: u32, cidr: Ipv6Cidr) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.prefix_len = cidr.len;
        m.header.index = index;
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V6(cidr.addr)));
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        self.call(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// `ip route replace PREFIX [via VIA] dev INDEX proto static metric CONFIG_ROUTE_METRIC` in
    /// the main table.
    pub fn add_route(
        &mut self,
        index: u32,
        prefix: Ipv4Cidr,
        via: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let dst = (prefix.len > 0).then(|| RouteAddress::Inet(prefix.network()));
        let via = via.map(RouteAddress::Inet);
        self.new_route(index, AddressFamily::Inet, prefix.len, dst, via)
    }

    /// [`Netlink::add_route`] for IPv6 (`ip -6 route replace ...`).
    pub fn add_route6(
        &mut self,
        index: u32,
        prefix: Ipv6Cidr,
        via: Option<Ipv6Addr>,
    ) -> io::Result<()> {
        let dst = (prefix.len > 0).then(|| RouteAddress::Inet6(prefix.network()));
        let via = via.map(RouteAddress::Inet6);
        self.new_route(index, AddressFamily::Inet6, prefix.len, dst, via)
    }

    fn new_route(
        &mut self,
        index: u32,
        family: AddressFamily,
        len: u8,
        dst: Option<RouteAddress>,
        via: Option<RouteAddress>,
    ) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        m.header.destination_prefix_length = len;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = ROUTE_PROTOCOL;
        m.header.scope = if via.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        m.header.kind = RouteType::Unicast;
        if let Some(d) = dst {
            m.attributes.push(RouteAttribute::Destination(d));
        }
        if let Some(g) = via {
            m.attributes.push(RouteAttribute::Gateway(g));
        }
        m.attributes.push(RouteAttribute::Oif(index));
        m.attributes
            .push(RouteAttribute::Priority(CONFIG_ROUTE_METRIC));
        self.call(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// A `blackhole ADDR/32 table TABLE proto PROTOCOL` route (`kernel::announce`), `ADDR/128`
    /// for an IPv6 address, for a routing daemon to import; it forwards nothing (the table is no
    /// lookup's).
    fn blackhole(table: u32, protocol: u8, addr: IpAddr) -> RouteMessage {
        let mut m = RouteMessage::default();
        let (family, len, dst) = match addr {
            IpAddr::V4(a) => (AddressFamily::Inet, 32, RouteAddress::Inet(a)),
            IpAddr::V6(a) => (AddressFamily::Inet6, 128, RouteAddress::Inet6(a)),
        };
        m.header.address_family = family;
        m.header.destination_prefix_length = len;
        // The header's table is 8 bits: RT_TABLE_UNSPEC there and the whole id in RTA_TABLE.
        m.header.table = RouteHeader::RT_TABLE_UNSPEC;
        m.header.protocol = RouteProtocol::Other(protocol);
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::BlackHole;
        m.attributes.push(RouteAttribute::Destination(dst));
        m.attributes.push(RouteAttribute::Table(table));
        m
    }

    /// `ip route replace blackhole ADDR/32 table TABLE proto PROTOCOL` (`ADDR/128`, `ip -6`).
    pub fn add_blackhole(&mut self, table: u32, protocol: u8, addr: IpAddr) -> io::Result<()> {
        self.call(
            RouteNetlinkMessage::NewRoute(Self::blackhole(table, protocol, addr)),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// `ip route del blackhole ADDR/32 table TABLE proto PROTOCOL`; one already gone is fine.
    pub fn del_blackhole(&mut self, table: u32, protocol: u8, addr: IpAddr) -> io::Result<()> {
        match self.call(
            RouteNetlinkMessage::DelRoute(Self::blackhole(table, protocol, addr)),
            NLM_F_ACK,
        ) {
            Err(e) if e.raw_os_error() == Some(3) => Ok(()), // ESRCH: not there
            r => r.map(drop),
        }
    }

    /// The host destinations (/32 and /128) of table `table`'s routes of protocol `protocol`,
    /// of both families.
    pub fn routes_of(&mut self, table: u32, protocol: u8) -> io::Result<Vec<IpAddr>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut r = RouteMessage::default();
            r.header.address_family = family;
            let all = self.call(RouteNetlinkMessage::GetRoute(r), NLM_F_DUMP)?;
            out.extend(
                all.iter()
                    .filter_map(|m| match m {
                        RouteNetlinkMessage::NewRoute(r) => Some(r),
                        _ => None,
                    })
                    .filter(|r| {
                        let t = r
                            .attributes
                            .iter()
                            .find_map(|a| match a {
                                RouteAttribute::Table(t) => Some(*t),
                                _ => None,
                            })
                            .unwrap_or(u32::from(r.header.table));
                        t == table && r.header.protocol == RouteProtocol::Other(protocol)
                    })
                    .filter_map(|r| {
                        let len = r.header.destination_prefix_length;
                        r.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Destination(RouteAddress::Inet(a)) if len == 32 => {
                                Some(IpAddr::V4(*a))
                            }
                            RouteAttribute::Destination(RouteAddress::Inet6(a)) if len == 128 => {
                                Some(IpAddr::V6(*a))
                            }
                            _ => None,
                        })
                    }),
            );
        }
        Ok(out)
    }

    /// Everything the mirror follows, dumped now: addresses, routes and neighbours of both
    /// families.
    pub fn dump(&mut self) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut a = AddressMessage::default();
            a.header.family = family;
            out.extend(self.call(RouteNetlinkMessage::GetAddress(a), NLM_F_DUMP)?);
        }
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut r = RouteMessage::default();
            r.header.address_family = family;
            out.extend(self.call(RouteNetlinkMessage::GetRoute(r), NLM_F_DUMP)?);
        }
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut n = NeighbourMessage::default();
            n.header.family = family;
            out.extend(self.call(RouteNetlinkMessage::GetNeighbour(n), NLM_F_DUMP)?);
        }
        Ok(out)
    }
}

fn link_kind(l: &LinkMessage) -> Option<String> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(InfoKind::Tun) => Some("tun".to_string()),
            LinkInfo::Kind(k) => Some(format!("{k:?}").to_lowercase()),
            _ => None,
        }),
        _ => None,
    })
}

/// A socket subscribed to the kernel's address, route and neighbour notifications.
pub struct Listener {
    sock: Socket,
}

impl Listener {
    /// Subscribes (before the caller dumps, so nothing between the dump and the first
    /// notification is missed: the mirror applies both idempotently).
    pub fn open() -> io::Result<Listener> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        for g in [
            RTNLGRP_LINK,
            RTNLGRP_IPV4_IFADDR,
            RTNLGRP_IPV4_ROUTE,
            RTNLGRP_IPV6_IFADDR,
            RTNLGRP_IPV6_ROUTE,
            RTNLGRP_NEIGH,
        ] {
            sock.add_membership(g)?;
        }
        sock.set_non_blocking(true)?;
        Ok(Listener { sock })
    }

    /// Every notification queued now (none: an empty vector). `ENOBUFS` means some were lost:
    /// the caller dumps again.
    pub fn drain(&mut self) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        loop {
            match self.sock.recv_from_full() {
                Ok((data, _)) => {
                    for m in messages(&data) {
                        if let NetlinkPayload::InnerMessage(inner) = m.payload {
                            out.push(inner);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The event a message means for the twins (`twins`: ifindex -> port index); None for anything
/// about other interfaces, other tables, other families.
pub fn event_of(m: &RouteNetlinkMessage, twins: &HashMap<u32, u16>) -> Option<KernelEvent> {
    match m {
        RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a)
            if a.header.family == AddressFamily::Inet6 =>
        {
            let port = *twins.get(&a.header.index)?;
            // An IPv6 address is IFA_ADDRESS (IFA_LOCAL only on point-to-point links).
            let addr = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Local(IpAddr::V6(ip))
                | AddressAttribute::Address(IpAddr::V6(ip)) => Some(*ip),
                _ => None,
            })?;
            Some(KernelEvent::Addr6 {
                port,
                addr,
                len: a.header.prefix_len.min(128),
                add: matches!(m, RouteNetlinkMessage::NewAddress(_)),
            })
        }
        RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a) => {
            if a.header.family != AddressFamily::Inet {
                return None;
            }
            let port = *twins.get(&a.header.index)?;
            // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links.
            let local = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let addr = local.or_else(|| {
                a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })
            })?;
            Some(KernelEvent::Addr {
                port,
                cidr: Ipv4Cidr::new(addr, a.header.prefix_len)?,
                add: matches!(m, RouteNetlinkMessage::NewAddress(_)),
            })
        }
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            route_event(r, matches!(m, RouteNetlinkMessage::NewRoute(_)), twins)
        }
        RouteNetlinkMessage::NewNeighbour(n) | RouteNetlinkMessage::DelNeighbour(n) => {
            if !matches!(n.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
                return None;
            }
            let port = *twins.get(&n.header.ifindex)?;
            let ip = n.attributes.iter().find_map(|x| match x {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                    Some(IpAddr::V4(*ip))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                    Some(IpAddr::V6(*ip))
                }
                _ => None,
            })?;
            // Multicast and broadcast entries (NOARP, 01:00:5e:.., ff:ff:..) are not neighbours.
            let lladdr = n
                .attributes
                .iter()
                .find_map(|x| match x {
                    NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                        Some(MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]]))
                    }
                    _ => None,
                })
                .filter(MacAddr::is_unicast);
            let usable = matches!(
                n.header.state,
                NeighbourState::Reachable
                    | NeighbourState::Stale
                    | NeighbourState::Delay
                    | NeighbourState::Probe
                    | NeighbourState::Permanent
                    | NeighbourState::Noarp
            );
            let add = matches!(m, RouteNetlinkMessage::NewNeighbour(_)) && usable;
            Some(KernelEvent::Neigh {
                port,
                ip,
                mac: lladdr.filter(|_| add),
            })
        }
        _ => None,
    }
}

/// The event of a main-table unicast route of either family (RTM_NEWROUTE when `add`).
fn route_event(r: &RouteMessage, add: bool, twins: &HashMap<u32, u16>) -> Option<KernelEvent> {
    let h = &r.header;
    let v6 = match h.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    if h.kind != RouteType::Unicast {
        return None;
    }
    let table = r
        .attributes
        .iter()
        .find_map(|x| match x {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(h.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let ip = |a: &RouteAddress| match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    };
    let mut oif = None;
    let mut via = None;
    let mut dst = None;
    let mut metric = 0;
    for x in &r.attributes {
        match x {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(g) => via = ip(g),
            RouteAttribute::Destination(d) => dst = ip(d),
            RouteAttribute::Priority(p) => metric = *p,
            // ECMP (RTA_MULTIPATH): the first nexthop through a twin stands for the route.
            RouteAttribute::MultiPath(hops) if oif.is_none() => {
                if let Some(hop) = hops.iter().find(|h| twins.contains_key(&h.interface_index)) {
                    oif = Some(hop.interface_index);
                    via = hop.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => ip(g),
                        _ => None,
                    });
                }
            }
            _ => {}
        }
    }
    let len = h.destination_prefix_length;
    let port = twins.get(&oif?).copied();
    // A route of this prefix and metric that now leaves by another interface (`ip route
    // replace`): whatever the view had through a twin is gone.
    let elsewhere = port.is_none() && add;
    if v6 {
        let dst = match dst {
            Some(IpAddr::V6(d)) => d,
            _ => Ipv6Addr::UNSPECIFIED,
        };
        let prefix = Ipv6Cidr::new(dst, len)?;
        if elsewhere {
            return Some(KernelEvent::RouteElsewhere6 { prefix, metric });
        }
        let via = match via {
            Some(IpAddr::V6(g)) => Some(g),
            _ => None,
        };
        return port.map(|port| KernelEvent::Route6 {
            port,
            prefix,
            via,
            metric,
            add,
        });
    }
    let dst = match dst {
        Some(IpAddr::V4(d)) => d,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let prefix = Ipv4Cidr::new(dst, len)?;
    if elsewhere {
        return Some(KernelEvent::RouteElsewhere { prefix, metric });
    }
    let via = match via {
        Some(IpAddr::V4(g)) => Some(g),
        _ => None,
    };
    port.map(|port| KernelEvent::Route {
        port,
        prefix,
        via,
        metric,
        add,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a twin's RTM_DELLINK names its port: not its RTM_NEWLINK (a flag or carrier change),
    /// not another interface's deletion.
    #[test]
    fn a_twins_deletion_names_its_port() {
        let twins: HashMap<u32, u16> = [(4, 0), (5, 1)].into_iter().collect();
        let link = |index| {
            let mut l = LinkMessage::default();
            l.header.index = index;
            l
        };
        assert_eq!(
            deleted_twin(&RouteNetlinkMessage::DelLink(link(5)), &twins),
            Some(1)
        );
        assert_eq!(
            deleted_twin(&RouteNetlinkMessage::NewLink(link(5)), &twins),
            None
        );
        assert_eq!(
            deleted_twin(&RouteNetlinkMessage::DelLink(link(9)), &twins),
            None
        );
    }

    fn twins() -> HashMap<u32, u16> {
        HashMap::from([(7, 0), (8, 1)])
    }

    fn addr_msg(index: u32, ip: [u8; 4], len: u8) -> AddressMessage {
        let mut a = AddressMessage::default();
        a.header.family = AddressFamily::Inet;
        a.header.index = index;
        a.header.prefix_len = len;
        a.attributes
            .push(AddressAttribute::Local(IpAddr::V4(Ipv4Addr::from(ip))));
        a
    }

    #[test]
    fn addresses_on_twins_become_events_and_others_do_not() {
        let t = twins();
        let e = event_of(
            &RouteNetlinkMessage::NewAddress(addr_msg(7, [10, 10, 0, 150], 32)),
            &t,
        );
        assert_eq!(
            e,
            Some(KernelEvent::Addr {
                port: 0,
                cidr: "10.10.0.150/32".parse().unwrap(),
                add: true
            })
        );
        let e = event_of(
            &RouteNetlinkMessage::DelAddress(addr_msg(8, [10, 20, 0, 1], 24)),
            &t,
        );
        assert!(matches!(
            e,
            Some(KernelEvent::Addr {
                port: 1,
                add: false,
                ..
            })
        ));
        // lo (index 1) is not a twin.
        assert_eq!(
            event_of(
                &RouteNetlinkMessage::NewAddress(addr_msg(1, [127, 0, 0, 1], 8)),
                &t
            ),
            None
        );
    }

    #[test]
    fn ipv6_addresses_on_twins_become_events() {
        let t = twins();
        let vip: Ipv6Addr = "2001:db8:10::100".parse().unwrap();
        let msg = |index| {
            let mut a = AddressMessage::default();
            a.header.family = AddressFamily::Inet6;
            a.header.index = index;
            a.header.prefix_len = 64;
            a.attributes
                .push(AddressAttribute::Address(IpAddr::V6(vip)));
            a
        };
        assert_eq!(
            event_of(&RouteNetlinkMessage::NewAddress(msg(7)), &t),
            Some(KernelEvent::Addr6 {
                port: 0,
                addr: vip,
                len: 64,
                add: true
            })
        );
        assert_eq!(
            event_of(&RouteNetlinkMessage::DelAddress(msg(8)), &t),
            Some(KernelEvent::Addr6 {
                port: 1,
                addr: vip,
                len: 64,
                add: false
            })
        );
        assert_eq!(event_of(&RouteNetlinkMessage::NewAddress(msg(1)), &t), None);
    }

    fn route_msg(table: u8, kind: RouteType, oif: u32) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.table = table;
        r.header.kind = kind;
        r.header.destination_prefix_length = 24;
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::new(10, 30, 0, 0),
            )));
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                10, 20, 0, 254,
            ))));
        r.attributes.push(RouteAttribute::Oif(oif));
        r.attributes.push(RouteAttribute::Priority(5));
        r
    }

    #[test]
    fn ipv6_main_table_routes_through_a_twin_are_mirrored() {
        let t = twins();
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let msg = |table: u8, oif: u32| {
            let mut r = RouteMessage::default();
            r.header.address_family = AddressFamily::Inet6;
            r.header.table = table;
            r.header.kind = RouteType::Unicast;
            r.header.destination_prefix_length = 48;
            r.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet6(v6(
                    "2001:db8:40::",
                ))));
            r.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet6(v6(
                    "fe80::254",
                ))));
            r.attributes.push(RouteAttribute::Oif(oif));
            r.attributes.push(RouteAttribute::Priority(1024));
            r
        };
        let prefix = "2001:db8:40::/48".parse().unwrap();
        assert_eq!(
            event_of(&RouteNetlinkMessage::DelRoute(msg(254, 8)), &t),
            Some(KernelEvent::Route6 {
                port: 1,
                prefix,
                via: Some(v6("fe80::254")),
                metric: 1024,
                add: false
            })
        );
        assert_eq!(
            event_of(&RouteNetlinkMessage::NewRoute(msg(255, 8)), &t),
            None,
            "the local table"
        );
        assert_eq!(
            event_of(&RouteNetlinkMessage::NewRoute(msg(254, 2)), &t),
            Some(KernelEvent::RouteElsewhere6 {
                prefix,
                metric: 1024
            })
        );
    }

    #[test]
    fn only_main_table_unicast_routes_through_a_twin_are_mirrored() {
        let t = twins();
        let e = event_of(
            &RouteNetlinkMessage::NewRoute(route_msg(254, RouteType::Unicast, 8)),
            &t,
        );
        assert_eq!(
            e,
            Some(KernelEvent::Route {
                port: 1,
                prefix: "10.30.0.0/24".parse().unwrap(),
                via: Some(Ipv4Addr::new(10, 20, 0, 254)),
                metric: 5,
                add: true
            })
        );
        for (table, kind, oif) in [
            (255, RouteType::Unicast, 8), // the local table
            (254, RouteType::Local, 8),
        ] {
            assert_eq!(
                event_of(
                    &RouteNetlinkMessage::NewRoute(route_msg(table, kind, oif)),
                    &t
                ),
                None
            );
        }
        // Through another interface: the prefix no longer leaves by a twin (`ip route replace`).
        assert_eq!(
            event_of(
                &RouteNetlinkMessage::NewRoute(route_msg(254, RouteType::Unicast, 2)),
                &t
            ),
            Some(KernelEvent::RouteElsewhere {
                prefix: "10.30.0.0/24".parse().unwrap(),
                metric: 5
            })
        );
        assert_eq!(
            event_of(
                &RouteNetlinkMessage::DelRoute(route_msg(254, RouteType::Unicast, 2)),
                &t
            ),
            None
        );
    }

    /// A datagram with a message the crate cannot decode between two good ones: both good ones
    /// are read (the bad one is skipped by its length).
    #[test]
    fn an_undecodable_message_does_not_hide_the_next_ones() {
        let good = |seq| {
            let mut hdr = NetlinkHeader::default();
            hdr.sequence_number = seq;
            let mut p = NetlinkMessage::new(
                hdr,
                NetlinkPayload::from(RouteNetlinkMessage::NewAddress(addr_msg(
                    7,
                    [10, 0, 0, 1],
                    32,
                ))),
            );
            p.finalize();
            let mut b = vec![0; p.buffer_len()];
            p.serialize(&mut b);
            b
        };
        let mut data = good(1);
        // RTM_NEWADDR (20) with a truncated body: 16-byte header, 4 bytes of payload.
        let mut bad = vec![0u8; 20];
        bad[0..4].copy_from_slice(&20u32.to_ne_bytes());
        bad[4..6].copy_from_slice(&20u16.to_ne_bytes());
        data.extend_from_slice(&bad);
        data.extend_from_slice(&good(3));
        let seqs: Vec<u32> = messages(&data)
            .iter()
            .map(|m| m.header.sequence_number)
            .collect();
        assert_eq!(seqs, [1, 3]);
    }

    #[test]
    fn ipv6_neighbours_on_twins_become_events() {
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet6;
        n.header.ifindex = 8;
        n.header.state = NeighbourState::Permanent;
        let ip: Ipv6Addr = "2001:db8:20::99".parse().unwrap();
        n.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)));
        n.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![
            2, 0, 0, 0, 0, 0x99,
        ]));
        assert_eq!(
            event_of(&RouteNetlinkMessage::NewNeighbour(n.clone()), &twins()),
            Some(KernelEvent::Neigh {
                port: 1,
                ip: ip.into(),
                mac: Some(MacAddr([2, 0, 0, 0, 0, 0x99]))
            })
        );
        // A multicast entry (33:33:..) is no neighbour.
        n.attributes.pop();
        n.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![
            0x33, 0x33, 0, 0, 0, 1,
        ]));
        assert!(matches!(
            event_of(&RouteNetlinkMessage::NewNeighbour(n), &twins()),
            Some(KernelEvent::Neigh { mac: None, .. })
        ));
    }

    #[test]
    fn neighbours_in_usable_states_carry_their_mac() {
        let t = twins();
        let msg = |state| {
            let mut n = NeighbourMessage::default();
            n.header.family = AddressFamily::Inet;
            n.header.ifindex = 8;
            n.header.state = state;
            n.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                    Ipv4Addr::new(10, 20, 0, 11),
                )));
            n.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![
                2, 0, 0, 0, 0, 0x11,
            ]));
            n
        };
        let mac = Some(MacAddr([2, 0, 0, 0, 0, 0x11]));
        for (state, want) in [
            (NeighbourState::Reachable, mac),
            (NeighbourState::Permanent, mac),
            (NeighbourState::Failed, None),
            (NeighbourState::Incomplete, None),
        ] {
            match event_of(&RouteNetlinkMessage::NewNeighbour(msg(state)), &t) {
                Some(KernelEvent::Neigh { port: 1, mac, .. }) => assert_eq!(mac, want, "{state:?}"),
                other => panic!("{state:?}: {other:?}"),
            }
        }
        assert!(matches!(
            event_of(
                &RouteNetlinkMessage::DelNeighbour(msg(NeighbourState::Reachable)),
                &t
            ),
            Some(KernelEvent::Neigh { mac: None, .. })
        ));
    }
}
