//! IPv6 (issue 17), one room entered from `datapath::ingress` for every IPv6 frame (EtherType
//! 0x86DD), and from the IPv4 datapath for the IPv4 replies of NAT64 connections: the header and
//! its extension headers checked (RFC 8200), neighbour discovery for the gateway's own addresses
//! (RFC 4861), echo for them (RFC 4443), and IPv6 virtual services in every mode.
//!
//! - [`nd`]: neighbour solicitations answered for owned addresses (the ports' IPv6 addresses, their
//!   link-local ones, the IPv6 VIPs and LIPs), advertisements learned (and announced to the other
//!   workers), solicitations sent to resolve a next hop. The neighbour table is the IPv4 one
//!   (`net::neigh`, Linux's NUD states) keyed by IPv6 address: RFC 4861 7.3 has the same states.
//! - `net::route6`: the IPv6 routes (connected prefixes of the ports, static `[[route]]`s).
//! - [`service`]: the connections of IPv6 services (FullNAT, NAT, DR, TUN), in a table of their own
//!   ([`ConnTable6`]: the same implementation as the IPv4 table over a 38-byte tuple, two cache
//!   lines per entry, so the IPv4 entry stays one). Scheduling is the IPv4 services' (`service`),
//!   one scheduler state per service per worker; reused client ports as IPv4's (`forward::reuse`).
//! - [`fullnat`]: the FullNAT rewrite and the IPv6 local-address pools; the IPv6 TOA.
//! - [`nat64`]: IPv6 clients, IPv4 real servers (RFC 7915, ICMP errors too), connections in the
//!   IPv6 table.
//! - [`icmp`]: ICMPv6 errors about FullNAT connections passed on translated, about DR and TUN
//!   servers' answers passed to the server; Packet Too Big for TUN.
//! - [`frag6`]: the later fragments of a datagram follow its first one.
//!
//! Which worker: the packets of one IPv6 flow stay on the worker RSS (or the kernel's fanout) gives
//! them; a FullNAT reply is steered to its connection's worker by the local port RSS-aware choice
//! (`fullnat::Pool6`), else handed to the owner of its local port, as a NAT64 one is (the IPv4
//! pool's), a NAT one to the owner of its client's address and port (`forward::owner`), as for
//! IPv4.
//!
//! The kernel twins carry the ports' IPv6 addresses and routes, written from the config
//! (`kernel::twin::reconcile`), so the kernel's daemons and the health checker's probes
//! (`health`) speak IPv6 through them.
//!
//! Established TCP segments without extension headers take the fast path's admission
//! (`datapath::fastpath`: one fixed-size parse, [`parse_plain_tcp6`]) and go straight to their
//! service's side ([`Inet6::forward_plain_tcp`]), their connections looked up in the burst
//! pipeline's lookup stage; a plain ACK on an established FullNAT connection takes `hot`, which
//! leaves the connection's state as it is (as IPv4's `forward::fullnat::hot`).
//!
//! A kernel-owned IPv6 VIP (`owner = "kernel"`, floated by keepalived) and its LIPs are answered
//! and opened connections to only while a twin holds the VIP (`Topology::silent6`, built from
//! the kernel mirror's IPv6 addresses).
//!
//! - [`sync6`]: the IPv6 table's connections logged for a backup, exported and installed (HA
//!   sync, as `forward::fullnat`'s `install` for IPv4's).
//!
//! - `proxied`: the SYN proxy for IPv6 FullNAT and NAT services, as IPv4's (`forward::synproxy`).
//!
//! What is not here yet: NAT64 fragments (dropped); the SYN proxy with NAT64 real servers
//! (refused by the config, not ignored). Client limits count IPv6 clients by
//! prefix (`forward::limit`); passive health detection and `syn_retry` work as for IPv4
//! (`retry`).

mod common;
pub mod frag6;
pub mod fullnat;
mod hot;
pub mod icmp;
pub mod nat64;
pub mod nd;
mod proxied;
mod retry;
pub mod service;
pub mod sync6;

use crate::conn::{tcp_flags, ConnTable6, HashKey, Prelookup, Ticks, Timeouts};
use crate::forward::Forwarder;
use crate::net::{punt, L3};
use crate::net::{NeighConfig, NeighTable};
use crate::packet::Verdict;
use crate::packet::{CsumStatus, PacketBuf, RxMeta};
use crate::stats::Drop;
use crate::wire::icmpv6::{self, Icmpv6Type};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::{ethernet, IpProtocol};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::net::route6::Routes6;
pub use crate::net::topology::link_local;

/// Whether `a` is a global unicast address: what a VIP, a real server or a port address must be
/// (not unspecified, loopback, multicast, link-local or IPv4-mapped).
pub fn is_unicast_global(a: Ipv6Addr) -> bool {
    let s = a.segments();
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || s[0] & 0xffc0 == 0xfe80
        || a.to_ipv4_mapped().is_some())
}

pub use crate::counters::Inet6Counters;

/// Timer-wheel entries one `tick` may expire (as the IPv4 table's budget).
const EXPIRE_BUDGET: usize = 4096;

/// One worker's IPv6 state.
pub struct Inet6<B> {
    pub neigh: NeighTable<B, Ipv6Addr>,
    pub conns: ConnTable6,
    /// Where the later fragments of forwarded datagrams find their first one's decision
    /// (`frag6`); held fragments keep the port they arrived on.
    pub frags: crate::frag::FragTable<(B, u16), frag6::FragKey6, frag6::Decision6>,
    /// Verdicts on held fragments, reached when their first one came (`Datapath::take_deferred`).
    pub deferred: Vec<crate::packet::Deferred<B>>,
    /// While a first fragment is processed: the head of the frame `nd::send_to` held, with its
    /// neighbour (the later fragments queue behind it).
    pub(crate) last_queued: Option<(Ipv6Addr, u16, Vec<u8>)>,
    record_queued: bool,
    /// Local addresses and ports of the IPv6 FullNAT services, by service index, for the
    /// snapshot of `pools_generation` (rebuilt on the first new connection of a new snapshot,
    /// each kept from the old one for the same service and local addresses).
    pools: Vec<Option<fullnat::Pool6>>,
    /// Which service (VIP, port, protocol) each of `pools` is.
    pool_services: Vec<(IpAddr, u16, u8)>,
    pools_generation: Option<u64>,
    /// FullNAT connections per (service, LIP): the pools keep no state, so the count is kept here.
    pub lip_conns: fullnat::LipConns,
    /// The neighbours `nd::send_to` resolved last (`nd::Hop6`).
    pub(crate) resolved: Box<[nd::Hop6; nd::RESOLVED_SLOTS]>,
    /// Where the established hot path sent the last packet to each destination (`nd::Hop6`).
    pub(crate) hops: Box<[nd::Hop6; nd::HOP_SLOTS]>,
    /// The sending MACs that confirmed their IPv6 neighbour lately (`nd::confirm`). Boxed, as
    /// `resolved` and `hops`: a pointer in the datapath, not 1 KiB, since IPv4's first stage moves
    /// with the datapath's layout (perf/RESULTS.md, "A reply's local address remembered by its
    /// low bits").
    pub(crate) confirm_cache: Box<crate::net::l3::ConfirmCache>,
    /// A primary's log of the connections its backup is to hear of (`sync6`).
    pub(crate) sync_log: Option<crate::forward::SyncLog<crate::conn::Tuple6>>,
}

/// An IPv6 packet as `process` found it: the header fields the rest needs.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6In {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// The upper layer's protocol and offset in the frame; its end is `end`.
    pub proto: IpProtocol,
    pub l4_off: usize,
    pub end: usize,
    /// The fragment header, for a fragment.
    pub frag: Option<ipv6::Fragment>,
}

impl Ipv6In {
    /// A placeholder, for arrays of them.
    pub const NONE: Ipv6In = Ipv6In {
        src: Ipv6Addr::UNSPECIFIED,
        dst: Ipv6Addr::UNSPECIFIED,
        hop_limit: 0,
        proto: IpProtocol(0),
        l4_off: 0,
        end: 0,
        frag: None,
    };

    pub fn is_fragment(&self) -> bool {
        self.frag.is_some()
    }
}

impl<B: PacketBuf> Inet6<B> {
    /// IPv6 state for a worker: a neighbour table with the IPv4 one's settings and a connection
    /// table of `capacity` entries.
    pub fn new(neigh: NeighConfig, capacity: u32, timeouts: Timeouts) -> Self {
        Inet6 {
            neigh: NeighTable::new(neigh),
            conns: ConnTable6::with_key(capacity, timeouts, HashKey::random(), Ticks(0)),
            pools: Vec::new(),
            pool_services: Vec::new(),
            pools_generation: None,
            lip_conns: Default::default(),
            frags: crate::frag::FragTable::new(Default::default()),
            deferred: Vec::new(),
            last_queued: None,
            record_queued: false,
            resolved: Box::new([nd::Hop6::default(); nd::RESOLVED_SLOTS]),
            hops: Box::new([nd::Hop6::default(); nd::HOP_SLOTS]),
            confirm_cache: Box::default(),
            sync_log: None,
        }
    }

    /// A TCP or UDP fragment to a VIP (`to_vip`) or a LIP (`frag6`).
    fn fragment(
        &mut self,
        l3: &mut L3<B>,
        fwd: &mut Forwarder,
        pkt: B,
        meta: &RxMeta,
        v: &Ipv6In,
        to_vip: bool,
    ) -> Verdict<B> {
        let Some(f) = v.frag else {
            return Verdict::Drop(Drop::Ipv6Fragment.into(), pkt);
        };
        let key = frag6::FragKey6 {
            src: v.src,
            dst: v.dst,
            ident: f.ident,
        };
        let piece = crate::frag::Piece {
            offset: f.offset,
            len: (v.end - v.l4_off) as u16,
            more: f.more,
        };
        let payload_len = (v.end - ethernet::HEADER_LEN - ipv6::HEADER_LEN) as u16;
        let now = l3.now_ms;
        if f.offset != 0 {
            return match self.frags.follow(key, piece, (pkt, meta.port), now) {
                crate::frag::Follow::Decided(d, (pkt, _)) => {
                    self.frags.stats.followed += 1;
                    self.carry(l3, fwd, d, pkt)
                }
                crate::frag::Follow::Held => Verdict::Held,
                crate::frag::Follow::Refused(r, (pkt, _)) => Verdict::Drop(r.into(), pkt),
            };
        }
        self.record_queued = true;
        self.last_queued = None;
        let pre = Prelookup::NotDone;
        let verdict = if to_vip {
            service::to_service(self, l3, fwd, pkt, meta, v, pre)
        } else {
            service::from_server(self, l3, fwd, pkt, meta, v, pre)
        };
        self.record_queued = false;
        let queued = self.last_queued.take();
        let d = frag6::decision_of(&verdict, &key, payload_len, queued.as_ref());
        match self.frags.first(key, piece, d, now) {
            Ok(held) => {
                for (p, port) in held {
                    self.frags.stats.followed += 1;
                    let verdict = self.carry(l3, fwd, d, p);
                    self.deferred
                        .push(crate::packet::Deferred { verdict, port });
                }
            }
            Err(r) => l3.stats.drop(r.into()),
        }
        verdict
    }

    /// A later fragment leaves as its first one did.
    fn carry(
        &mut self,
        l3: &mut L3<B>,
        fwd: &Forwarder,
        d: frag6::Decision6,
        mut pkt: B,
    ) -> Verdict<B> {
        match d {
            frag6::Decision6::Send(rw) => match rw.apply(&mut pkt, fwd.mtu()) {
                Err(r) => Verdict::Drop(r.into(), pkt),
                Ok(()) => match rw.link {
                    frag6::Link6::Sent { port, .. } => Verdict::Tx(port, pkt),
                    frag6::Link6::Queued { target, port } => {
                        nd::send_to(self, l3, pkt, target, port)
                    }
                },
            },
            frag6::Decision6::Worker(w) => Verdict::ToWorker(w, pkt),
            frag6::Decision6::Drop => Verdict::Drop(Drop::FragFirstDropped.into(), pkt),
        }
    }

    /// Whether `nd::send_to` should keep the head of a frame it holds (a first fragment's).
    pub(crate) fn records_queued(&self) -> bool {
        self.record_queued
    }

    /// A free local address and port of service `si` of `services` on `worker`, as the reply
    /// tuple from `rip:rport`: None when the service has no IPv6 local addresses or they are out
    /// of ports. The pools follow the snapshot (a pool holds no state a connection needs: a port
    /// is free when the table has no reply tuple with it).
    // Inlined into its one caller, `service::new_conn`: left to the inliner, it was called out of
    // line once `new_conn` grew (`syn6-net` +28).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn allocate(
        &mut self,
        si: u32,
        services: &crate::forward::ServiceTable,
        layout: &std::sync::Arc<crate::laddr::PortLayout>,
        worker: usize,
        rip: Ipv6Addr,
        rport: u16,
        proto: u8,
    ) -> Option<crate::conn::Tuple6> {
        self.build_pools(services, layout, worker);
        let pool = self.pools.get_mut(si as usize)?.as_mut()?;
        pool.allocate(rip, rport, proto, &self.conns)
    }

    /// The services' IPv6 local-address pools on `worker`, rebuilt if `services` is another
    /// snapshot than the one they were built for.
    #[inline]
    fn build_pools(
        &mut self,
        services: &crate::forward::ServiceTable,
        layout: &std::sync::Arc<crate::laddr::PortLayout>,
        worker: usize,
    ) {
        if self.pools_generation != Some(services.generation) {
            self.rebuild_pools(services, layout, worker);
        }
    }

    /// `build_pools` for another snapshot: once a generation, at its first new connection (out
    /// of line: inlined, it moved the code of the IPv6 path it sits in, `perf/cost.sh`'s
    /// `established6-burst-net` 21 instructions longer).
    #[cold]
    #[inline(never)]
    fn rebuild_pools(
        &mut self,
        services: &crate::forward::ServiceTable,
        layout: &std::sync::Arc<crate::laddr::PortLayout>,
        worker: usize,
    ) {
        // A pool whose service and local addresses stay goes on where it was, as IPv4's
        // (`Forwarder::keeps_pool`): rebuilt, its cursors would start over at the ports the last
        // connections took, which the real servers still hold in TIME_WAIT.
        let mut old: hashbrown::HashMap<(IpAddr, u16, u8), fullnat::Pool6> = self
            .pool_services
            .drain(..)
            .zip(self.pools.drain(..))
            .filter_map(|(k, p)| Some((k, p?)))
            .collect();
        for vs in &services.services {
            let c = vs.svc.config();
            let key = (c.vip, c.vport, c.proto.number());
            let pool = (!vs.lips6.is_empty()).then(|| match old.remove(&key) {
                Some(p) if p.lips().eq(vs.lips6.iter().copied()) => p,
                _ => fullnat::Pool6::new(&vs.lips6, layout, worker),
            });
            self.pools.push(pool);
            self.pool_services.push(key);
        }
        self.pools_generation = Some(services.generation);
    }

    /// Whether service `si` has an IPv6 FullNAT pool (as `allocate` last built them): local
    /// addresses of its family, and ports of this worker's.
    pub fn has_pool(&self, si: u32) -> bool {
        self.pools
            .get(si as usize)
            .is_some_and(|p| p.as_ref().is_some_and(fullnat::Pool6::has_ports))
    }

    /// [`fullnat::Pool6::take_freed`] of service `si`'s pool (as `allocate` last built it).
    pub fn take_freed(
        &self,
        si: u32,
        (lip, lport): (Ipv6Addr, u16),
        rip: Ipv6Addr,
        rport: u16,
        proto: u8,
    ) -> Option<crate::conn::Tuple6> {
        let pool = self.pools.get(si as usize)?.as_ref()?;
        pool.take_freed(lip, lport, rip, rport, proto, &self.conns)
    }

    /// Processes one IPv6 frame (its Ethernet destination already checked by `ingress`).
    ///
    /// Never inlined into `Datapath::process`: inlined, the IPv6 path's size decided how the
    /// compiler laid out the IPv4 fast path around it (the IPv4 established packet took 18
    /// instructions more after a change to IPv6 code alone); a call costs the IPv6 packet less
    /// than that.
    #[inline(never)]
    pub fn process(
        &mut self,
        l3: &mut L3<B>,
        fwd: &mut Forwarder,
        pkt: B,
        meta: &RxMeta,
    ) -> Verdict<B> {
        // A frame handed over by another worker was counted there.
        if !meta.from_peer {
            l3.stats.inet6.rx += 1;
        }
        let v = match parse(pkt.data()) {
            Ok(v) => v,
            Err(r) => return Verdict::Drop(r.into(), pkt),
        };
        self.dispatch(l3, fwd, pkt, meta, &v, Prelookup::NotDone)
    }

    /// A segment the established fast path admitted (`Datapath::admit_plain_tcp6`: counted, its
    /// header parsed by `parse_plain_tcp6`, its checksum verified unless `meta` says `Unknown`: a
    /// plain ACK), of connection tuple `tuple`
    /// (`plain_tcp6_tuple`): what `process` does with it after its parse, its connection found
    /// with what the burst's lookup found (`pre`). A segment of a connection held here goes
    /// straight to its service's side (`dispatch`'s other checks are the admission's), a plain
    /// ACK on an established FullNAT connection through `hot::forward_hot`, and is counted
    /// `fast_path` when it leaves.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn forward_plain_tcp(
        &mut self,
        l3: &mut L3<B>,
        fwd: &mut Forwarder,
        pkt: B,
        meta: &RxMeta,
        v: &Ipv6In,
        tuple: &crate::conn::Tuple6,
        pre: Prelookup,
    ) -> Verdict<B> {
        let found = self.conns.resolve(tuple, pre);
        let flags = pkt.data().get(v.l4_off + 13).copied().unwrap_or(0);
        let client_syn = flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        let pre = Prelookup::from(found);
        let Some((id, dir)) = found.filter(|_| !client_syn) else {
            return self.dispatch(l3, fwd, pkt, meta, v, pre);
        };
        let mut pkt = match hot::forward_hot(self, l3, fwd, pkt, v, id, dir, flags) {
            Ok(verdict) => {
                if matches!(verdict, Verdict::Tx(..)) {
                    l3.stats.fast_path += 1;
                }
                return verdict;
            }
            Err(pkt) => pkt,
        };
        // A plain ACK the admission did not verify (`meta`'s `Unknown`) is verified before the
        // service's side, which takes the admission's checks as done; the general path drops it
        // if it fails.
        let checked;
        let meta = if meta.l4_csum == CsumStatus::Unknown {
            let l4 = pkt.data().get(v.l4_off..v.end).unwrap_or_default();
            let good = crate::wire::ipv6::l4_checksum(v.src, v.dst, v.proto, l4) == 0;
            checked = RxMeta {
                l4_csum: if good {
                    CsumStatus::Good
                } else {
                    CsumStatus::Bad
                },
                ..*meta
            };
            if !good {
                return self.dispatch(l3, fwd, pkt, &checked, v, pre);
            }
            &checked
        } else {
            meta
        };
        // Ethernet padding is not data.
        pkt.truncate(v.end);
        // `l4_of`'s checks were the admission's.
        let seg = common::Segment {
            sport: tuple.sport,
            dport: tuple.dport,
            flags,
            pre,
        };
        let kind = fwd.services().kind6(v.dst);
        let verdict = if kind.vip {
            service::to_service_segment(self, l3, fwd, pkt, meta, v, seg)
        } else if kind.lip {
            let owner = service::ReplyOwner::LocalPort;
            service::reply_segment(self, l3, fwd, pkt, meta, v, owner, seg)
        } else {
            return self.dispatch(l3, fwd, pkt, meta, v, pre);
        };
        if matches!(verdict, Verdict::Tx(..)) {
            l3.stats.fast_path += 1;
        }
        verdict
    }

    /// `process` after the parse; `pre` is what an earlier lookup found of a TCP or UDP
    /// packet's connection.
    fn dispatch(
        &mut self,
        l3: &mut L3<B>,
        fwd: &mut Forwarder,
        mut pkt: B,
        meta: &RxMeta,
        v: &Ipv6In,
        pre: Prelookup,
    ) -> Verdict<B> {
        let v = *v;
        // Ethernet padding is not data.
        pkt.truncate(v.end);
        if v.proto == IpProtocol::ICMPV6 && !v.is_fragment() {
            match pkt.data().get(v.l4_off).copied().map(Icmpv6Type) {
                Some(Icmpv6Type::NEIGHBOR_SOLICIT) => {
                    return nd::solicitation(self, l3, fwd.services(), pkt, meta, &v)
                }
                Some(Icmpv6Type::NEIGHBOR_ADVERT) => {
                    return nd::advertisement(self, l3, pkt, meta, &v)
                }
                _ => {}
            }
        }
        if v.dst.is_multicast() {
            // MLD, router advertisements and solicitations, ...: the kernel's.
            return l3.punt(meta.port, pkt, punt::Punt::Multicast, Drop::Ipv6NotForUs);
        }
        if v.src.is_multicast() || v.src.is_unspecified() && v.proto != IpProtocol::ICMPV6 {
            return Verdict::Drop(Drop::Ipv6Malformed.into(), pkt);
        }
        let kind = fwd.services().kind6(v.dst);
        let (is_vip, is_lip) = (kind.vip, kind.lip);
        let icmp_error = v.proto == IpProtocol::ICMPV6
            && pkt.data().get(v.l4_off).is_some_and(|&t| icmp::is_error(t));
        if icmp_error && (is_vip || is_lip) {
            return icmp::error(self, l3, fwd, pkt, meta, &v, is_vip);
        }
        if matches!(v.proto, IpProtocol::TCP | IpProtocol::UDP)
            && v.is_fragment()
            && (is_vip || is_lip)
        {
            return self.fragment(l3, fwd, pkt, meta, &v, is_vip);
        }
        if matches!(v.proto, IpProtocol::TCP | IpProtocol::UDP) {
            if is_vip {
                return service::to_service(self, l3, fwd, pkt, meta, &v, pre);
            }
            if is_lip {
                return service::from_server(self, l3, fwd, pkt, meta, &v, pre);
            }
        }
        let local =
            (is_vip || is_lip) && !l3.topo().silent6.contains(&v.dst) || l3.topo().owns6(v.dst);
        if !local {
            let nat_real = !v.is_fragment() && fwd.services().is_nat_real6(v.src);
            if nat_real && matches!(v.proto, IpProtocol::TCP | IpProtocol::UDP) {
                return service::nat_reply(self, l3, fwd, pkt, meta, &v, pre);
            }
            if nat_real && icmp_error {
                return icmp::error(self, l3, fwd, pkt, meta, &v, false);
            }
            return Verdict::Drop(Drop::Ipv6NotForUs.into(), pkt);
        }
        let echo = v.proto == IpProtocol::ICMPV6
            && !v.is_fragment()
            && pkt.data().get(v.l4_off) == Some(&Icmpv6Type::ECHO_REQUEST.0);
        if echo {
            return echo_reply(l3, pkt, meta, &v);
        }
        if is_vip || is_lip {
            return Verdict::Drop(Drop::ProtoUnsupported.into(), pkt);
        }
        l3.punt(meta.port, pkt, punt::Punt::Local, Drop::ProtoUnsupported)
    }

    /// Periodic work: neighbour timers (solicitations, aging) and connection expiry.
    pub fn tick(&mut self, l3: &mut L3<B>, fwd: &mut Forwarder, now_ms: u64) {
        nd::tick(self, l3, now_ms);
        // Open connections that end count down their clients' limits (`forward::limit`), after
        // the pass that borrows the services.
        let limited = fwd.limits_mut().counts_conns();
        let services = fwd.services();
        let stats = &mut l3.stats.inet6;
        // NAT64 connections give their IPv4 local port back to the service's pool.
        let mut freed: Vec<(u16, Ipv4Addr, u16)> = Vec::new();
        let mut ended: Vec<(u16, std::net::IpAddr)> = Vec::new();
        // (service, real server) of SYNs their servers never answered (`retry`).
        let mut failed: Vec<(u16, u16)> = Vec::new();
        let lip_conns = &mut self.lip_conns;
        self.conns.expire(Ticks(now_ms), EXPIRE_BUDGET, |_, c, _| {
            if retry::expires_unanswered(c) {
                failed.push((c.svc, c.rs));
            }
            service::release(services, c);
            lip_conns.ended(c);
            if let Some((lip, lport)) = service::nat64_local_port(c.mode(), c.reply()) {
                freed.push((c.svc, lip, lport));
            }
            if limited && crate::forward::fullnat::counted_open(c) {
                ended.push((c.svc, c.client().src_ip().into()));
            }
        });
        for (si, lip, lport) in freed {
            if let Some(pool) = fwd.pool_mut(u32::from(si)) {
                pool.free(lip, lport);
            }
        }
        for (si, client) in ended {
            fwd.limits_mut().gone(si, client);
        }
        for (si, rs) in failed {
            fwd.count_syn_failed(si, rs, false);
        }
        // Every connection that left the table, by its timer or removed before it (evicted to
        // make room, replaced by a sync record, its tuple scheduled afresh without parking), as
        // IPv4's `conns_expired` counts them; a parked entry counts once, when its timer ends it.
        let table = self.conns.counters();
        stats.conns_expired = table.expired + table.removed;
        stats.conns = self.conns.len() as u64;
        stats.half_open = self.conns.half_open() as u64;
        let dropped = self.frags.expire(now_ms);
        l3.stats.drops[Drop::FragTimeout as usize] += dropped as u64;
    }

    /// Learns a neighbour another worker heard advertised (`datapath::Event::Learned6`).
    pub fn learn_from_peer(
        &mut self,
        l3: &mut L3<B>,
        ip: Ipv6Addr,
        mac: ethernet::MacAddr,
        port: u16,
    ) {
        nd::learn(self, l3, ip, mac, port, false, true);
    }

    /// A neighbour the kernel has on a twin (`kernel::mirror`), taken as IPv4's kernel
    /// neighbours are (`L3::learn_from_kernel`): created if new, not a reply.
    pub fn learn_from_kernel(
        &mut self,
        l3: &mut L3<B>,
        ip: Ipv6Addr,
        mac: ethernet::MacAddr,
        port: u16,
    ) {
        nd::learn(self, l3, ip, mac, port, true, false);
    }
}

/// Checks the IPv6 header and walks the extension headers of the frame's packet.
pub fn parse(frame: &[u8]) -> Result<Ipv6In, Drop> {
    let l3_off = ethernet::HEADER_LEN;
    let ip = Ipv6Packet::new_checked(frame.get(l3_off..).ok_or(Drop::Ipv6Malformed)?)
        .map_err(|_| Drop::Ipv6Malformed)?;
    let upper = ipv6::walk(ip.next_header(), ip.payload()).map_err(|_| Drop::Ipv6BadExtensions)?;
    Ok(Ipv6In {
        src: ip.src(),
        dst: ip.dst(),
        hop_limit: ip.hop_limit(),
        proto: upper.proto,
        l4_off: l3_off + ipv6::HEADER_LEN + upper.offset,
        end: l3_off + ipv6::HEADER_LEN + usize::from(ip.payload_len()),
        frag: upper.fragment,
    })
}

/// Bytes of an Ethernet header, an IPv6 header and a TCP header without options.
const PLAIN_TCP6_LEN: usize =
    ethernet::HEADER_LEN + ipv6::HEADER_LEN + crate::wire::tcp::HEADER_LEN;

/// [`parse`] of the established fast path's frames (`datapath::fastpath`), on one fixed-size
/// view: an IPv6 packet whose next header is TCP (no extension header) with at least a TCP
/// header's 20 bytes of payload and a data offset within it, all within the frame. `None` for
/// any other frame, which `parse`
/// then takes; for these both give the same `Ipv6In` (a property test holds them to it).
#[inline(always)]
pub fn parse_plain_tcp6(frame: &[u8]) -> Option<Ipv6In> {
    const IP_AT: usize = ethernet::HEADER_LEN;
    const TCP_AT: usize = IP_AT + ipv6::HEADER_LEN;
    let h: &[u8; PLAIN_TCP6_LEN] = frame.first_chunk()?;
    let ip = Ipv6Packet::new_unchecked(&h[IP_AT..TCP_AT]);
    let end = TCP_AT + usize::from(ip.payload_len());
    if ethernet::EthernetFrame::new_unchecked(&h[..]).ethertype() != ethernet::EtherType::IPV6
        || h[IP_AT] >> 4 != 6
        || ip.next_header() != IpProtocol::TCP
        || end < PLAIN_TCP6_LEN
        || end > frame.len()
        // A data offset below 5 words or past the segment: the general path drops it
        // (`tcp_bad_data_offset`), as IPv4's parser does.
        || h[TCP_AT + 12] < 0x50
        || TCP_AT + usize::from(h[TCP_AT + 12] >> 4) * 4 > end
    {
        return None;
    }
    Some(Ipv6In {
        src: ip.src(),
        dst: ip.dst(),
        hop_limit: ip.hop_limit(),
        proto: IpProtocol::TCP,
        l4_off: TCP_AT,
        end,
        frag: None,
    })
}

/// The connection tuple of a frame `parse_plain_tcp6` took (`v`): its addresses and TCP ports.
#[inline(always)]
pub fn plain_tcp6_tuple(frame: &[u8], v: &Ipv6In) -> crate::conn::Tuple6 {
    let p = frame
        .get(v.l4_off..)
        .and_then(<[u8]>::first_chunk::<4>)
        .unwrap_or(&[0; 4]);
    crate::conn::Tuple6::new(
        v.src,
        u16::from_be_bytes([p[0], p[1]]),
        v.dst,
        u16::from_be_bytes([p[2], p[3]]),
        crate::conn::PROTO_TCP,
    )
}

/// Answers an echo request to one of the gateway's addresses, in place.
fn echo_reply<B: PacketBuf>(l3: &mut L3<B>, mut pkt: B, meta: &RxMeta, v: &Ipv6In) -> Verdict<B> {
    if v.src.is_unspecified() {
        return Verdict::Drop(Drop::Ipv6Malformed.into(), pkt);
    }
    let icmp = &pkt.data()[v.l4_off..v.end];
    if !icmpv6::Icmpv6Packet::new_unchecked(icmp).verify_checksum(v.src, v.dst) {
        return Verdict::Drop(Drop::L4BadChecksum.into(), pkt);
    }
    let l3_off = ethernet::HEADER_LEN;
    if icmpv6::echo_reply_in_place(&mut pkt.data_mut()[l3_off..], v.l4_off - l3_off).is_err() {
        return Verdict::Drop(Drop::IcmpUnhandled.into(), pkt);
    }
    // Back where it came from: to the sender's MAC, from ours.
    let mut eth = ethernet::EthernetFrame::new_unchecked(pkt.data_mut());
    let (src, dst) = (eth.dst(), eth.src());
    let port_mac = l3
        .topo()
        .ports
        .get(meta.port as usize)
        .map_or(src, |p| p.mac);
    eth.set_dst(dst);
    eth.set_src(port_mac);
    l3.stats.inet6.echo_replies += 1;
    Verdict::Tx(meta.port, pkt)
}

#[cfg(test)]
mod tests;
