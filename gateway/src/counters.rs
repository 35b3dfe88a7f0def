//! Every per-worker counter set, declared once (VPP's `counters ... { }` blocks, DESIGN.md
//! decision 11): `counters!` makes each one's struct, its `add` (one worker's counts into a
//! total, every field, so none is forgotten) and its `named` list, the one that `gwctl stats`,
//! the stats file and `/metrics` report, in declaration order.
//!
//! The sets live here rather than in the modules that count them so that `stats::WorkerStats`,
//! which holds them all, sits below every one of those modules: they count into it, and it
//! imports none of them. Each module re-exports its own set (`forward::FwdStats`, ...).
//!
//! The syntax, for each set: doc comments, `pub struct Name, named "prefix" { field, ... }`. A
//! field is reported as the prefix followed by its name, or under the name given after `=>`.

macro_rules! counters {
    (@name $prefix:literal, $field:ident, $name:literal) => {
        $name
    };
    (@name $prefix:literal, $field:ident) => {
        concat!($prefix, stringify!($field))
    };
    (
        $(#[$meta:meta])*
        pub struct $set:ident, named $prefix:literal {
            $( $(#[$fmeta:meta])* $field:ident $(=> $name:literal)?, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $set {
            $( $(#[$fmeta])* pub $field: u64, )*
        }

        impl $set {
            /// The fields' own names, in declaration order (the stats file's lines).
            pub const FIELDS: [&'static str; [$(stringify!($field)),*].len()] =
                [$(stringify!($field)),*];

            /// Adds `o`'s counts to these.
            pub fn add(&mut self, o: &$set) {
                $( self.$field += o.$field; )*
            }

            /// Each counter with the name it is reported under, in declaration order.
            pub fn named(&self) -> [(&'static str, u64); Self::FIELDS.len()] {
                [$( (counters!(@name $prefix, $field $(, $name)?), self.$field), )*]
            }
        }
    };
}

counters! {
    /// Traffic of one real server of one service on one worker (`ipvsadm --stats`): plain counters,
    /// updated per packet by their worker only.
    pub struct Traffic, named "" {
        conns,
        inpkts,
        outpkts,
        inbytes,
        outbytes,
        /// Passive health detection (TCP, FullNAT and NAT): client SYNs the real server answered with
        /// a SYN-ACK, refused with a RST, or left unanswered (`[conn] syn_unanswered_ms`).
        syn_answered,
        syn_refused,
        syn_unanswered,
        /// Refused or unanswered SYNs since the last answered one: the health checker marks the server
        /// down when the workers' streaks reach its check's `passive_fall`.
        fail_streak,
    }
}

counters! {
    /// FullNAT counters of one worker (drops are counted in `WorkerStats` by reason).
    pub struct FwdStats, named "" {
        conns,
        created => "conns_created",
        expired => "conns_expired",
        table_full => "conn_table_full",
        ports_exhausted,
        toa_added,
        toa_skipped,
        icmp_translated,
        rst_sent,
        rst_unsent,
        /// TUN: packets too big to wrap (dropped), and fragmentation-needed errors sent for them.
        tun_too_big,
        frag_needed,
        /// Packets handed to the connection's owner (`owner`): client-direction packets (to a VIP)
        /// that missed this worker's table, and replies (to a LIP, or NAT replies) it does not own.
        handoff_client,
        handoff_reply,
        /// Client SYNs on a reused tuple scheduled afresh (`reuse`), per reason.
        resched_closed,
        resched_fin_wait,
        resched_quiesced,
        resched_removed,
        resched_new_isn,
        /// UDP datagrams of a removed server's connection scheduled afresh (`expire_nodest_conn`).
        resched_udp_removed,
        /// Client SYNs sent to another real server after theirs failed (`syn_retry`), and those that
        /// found no other server to take them (sent where the scheduler sends them).
        syn_retried,
        syn_retry_no_other,
        /// Connections a TCP packet other than a SYN started (`sloppy_tcp`, DR and TUN).
        sloppy_created,
        /// Half-open connections now (a level, set when the counters are published), and those
        /// removed to make room for a new connection (table full or `max_half_open` reached).
        half_open,
        evicted_embryonic,
        /// New connections admitted without being counted against their client's limit: the
        /// limit table had no room (`limit`, it fails open).
        limit_untracked,
        /// TIME_WAIT connections, and UDP flows their servers never answered, removed to make room
        /// in a full table (`Table::evict_closed`).
        evicted_time_wait,
        evicted_udp,
        /// Real servers' bare ACKs to a FullNAT or NAT64 SYN: a TIME_WAIT of theirs on the
        /// LIP:lport (`Forwarder::keeps_syn_recv`, `inet6::service::server_state`).
        server_time_wait,
        /// Real servers' segments without SYN to a FullNAT or NAT64 connection they had answered
        /// with a SYN-ACK, before its client's ACK: answers about an earlier connection on the
        /// same LIP:lport, which no longer make it ESTABLISHED (`Forwarder::keeps_syn_recv`).
        server_stale_answer,
        /// Configuration changes whose moved or removed services or real servers the connection
        /// tables (IPv4's and IPv6's, each counted) began to follow, walked a slice a poll round
        /// (`conn::rebind`), and those that found 15 changes' walk still going and finished it at
        /// once, the worker forwarding nothing meanwhile.
        rebinds => "conn_rebinds",
        rebinds_hurried => "conn_rebinds_hurried",
    }
}

counters! {
    /// Counters of one worker's proxy (`gwctl stats`, /metrics).
    pub struct SynProxyStats, named "synproxy_" {
        /// SYN-ACKs with a cookie sent for a client's SYN.
        cookies_sent,
        /// ACKs that proved a cookie, and ACKs to a proxied service that did not.
        cookies_valid,
        cookies_invalid,
        /// Connections opened to a real server after a valid cookie, and those the server answered.
        conns,
        server_answered,
        /// Client packets held while their server had not answered yet, and handshake-ACK data held.
        held,
        data_held,
        /// SYNs sent again after the server answered one with an unacceptable ACK (a TIME_WAIT of
        /// an earlier connection on the LIP:lport), each after a RST that ends it.
        syn_resent,
        /// 1 while auto mode is on (a level, set when the counters are published).
        auto_active,
    }
}

counters! {
    /// One worker's sync counters, both roles (`gwctl sync`, `/metrics`).
    pub struct SyncCounters, named "sync_" {
        /// Primary: connections logged for the backup, and those the log had no room for (caught
        /// up by the next refresh).
        logged,
        log_overflow,
        /// Primary: records handed to the sender (logged ones and full resyncs), and those the
        /// sender's queue had no room for.
        exported,
        export_dropped,
        /// Backup: records applied, by outcome.
        installed,
        refreshed,
        replaced,
        /// Backup: SYN-proxied connections' shifts applied (translation records).
        translated,
        /// Backup: records refused, by reason (`InstallError`).
        refused_no_service,
        refused_no_real,
        refused_mode,
        refused_not_this_worker,
        refused_table,
        refused_template,
        refused_no_conn,
        refused_not_proxied,
        /// Backup: records passed to the worker that owns them.
        handed_over,
    }
}

counters! {
    pub struct NeighCounters, named "neigh_" {
        /// Packets dropped because the worker already held `max_held` packets for unresolved entries.
        held_full,
        /// MACs learned or changed.
        learned,
        /// Broadcast ARP requests (resolution).
        requests,
        /// Unicast ARP requests to the cached MAC (probes).
        probes,
        /// Packets dropped because the per-neighbour queue was full.
        pending_full,
        /// Packets dropped because resolution failed.
        unresolved,
        /// Packets dropped because the table was full.
        table_full,
        aged_out,
        /// Transitions into each state.
        to_reachable,
        to_stale,
        to_delay,
        to_probe,
        to_failed,
        /// Entries made suspect by the datapath (an unanswered SYN retransmitted).
        suspected,
        /// Confirmations by the datapath (at most one per neighbour per confirmation interval).
        confirmed,
    }
}

counters! {
    /// Per-worker punt counters.
    pub struct PuntCounters, named "" {
        /// Frames sent up, by reason.
        local => "punt_local",
        multicast => "punt_multicast",
        ethertype => "punt_ethertype",
        arp_copy => "punt_arp_copy",
        /// Frames that would have gone up but the worker's punt budget was spent (also a drop reason).
        limited => "punt_limited",
        /// Frames the kernel sent on a twin, put on the wire.
        from_kernel,
        /// The kernel's ARP replies not put on the wire: the datapath had answered (`is_redundant_arp_reply`).
        arp_reply_suppressed => "kernel_arp_reply_suppressed",
    }
}

counters! {
    /// Fragment-table counters, per worker.
    pub struct FragCounters, named "frag_" {
        /// First fragments decided (their decision recorded).
        first,
        /// Later fragments sent, handed on or punted as their first fragment was.
        followed,
        /// Fragments that arrived before their first one and were held for it.
        held,
        /// Fragments handed to their datagram's home worker.
        steered,
        /// Datagrams whose every byte was seen (their entry removed at once).
        completed,
        /// Entries removed at their timeout before the datagram was complete.
        timed_out,
    }
}

counters! {
    /// IPv6 counters, per worker (the IPv4 ones are the rest of `WorkerStats`).
    pub struct Inet6Counters, named "ipv6_" {
        /// IPv6 frames received.
        rx,
        /// IPv6 packets of services sent toward their real servers.
        forwarded,
        /// Neighbour solicitations answered, and sent.
        ns_answered,
        ns_sent,
        /// Neighbour advertisements that resolved or updated an entry.
        na_learned,
        echo_replies,
        /// Neighbours made suspect and probed at once (a client's SYN to an IPv6 real server
        /// retransmitted unanswered), as the IPv4 `neigh` line's `suspected`.
        neigh_suspected,
        /// ICMPv6 errors about FullNAT connections passed on to the other side (`icmp`), and packet
        /// too big messages sent for TUN.
        icmp_translated,
        too_big_sent,
        /// IPv6 TOA options put on FullNAT SYNs, and SYNs without room for one.
        toa_added,
        toa_skipped,
        /// IPv6 connections created and expired (the IPv6 table's counters).
        conns_created,
        conns_expired,
        /// Live IPv6 connections (a level, summed over workers).
        conns,
        /// Half-open IPv6 TCP connections (a level), and those removed to make room for a new one
        /// (`[conn] max_half_open` reached or the table full).
        half_open,
        evicted_embryonic,
        /// Connections in TIME_WAIT, and UDP flows their servers never answered, removed to make
        /// room in a full table.
        evicted_time_wait,
        evicted_udp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gwctl stats`, the stats file and `/metrics` key counters by their reported names: two
    /// counters under one name would hide one of them.
    #[test]
    fn every_reported_name_is_unique() {
        let mut names: Vec<&str> = Vec::new();
        names.extend(FwdStats::default().named().map(|(n, _)| n));
        names.extend(NeighCounters::default().named().map(|(n, _)| n));
        names.extend(crate::stats::neigh6_names());
        names.extend(PuntCounters::default().reported().map(|(n, _)| n));
        names.extend(FragCounters::default().named().map(|(n, _)| n));
        names.extend(Inet6Counters::default().named().map(|(n, _)| n));
        names.extend(SynProxyStats::default().named().map(|(n, _)| n));
        names.extend(SyncCounters::default().named().map(|(n, _)| n));
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            names.len(),
            "a name reported twice in {names:?}"
        );
    }

    /// `add` adds every field, and `named` reports each under its name.
    #[test]
    fn add_sums_every_field_and_named_reports_it() {
        let one = FwdStats {
            conns: 1,
            created: 2,
            rebinds_hurried: 3,
            ..Default::default()
        };
        let mut total = one;
        total.add(&one);
        let named = total.named();
        assert_eq!(named.len(), FwdStats::FIELDS.len());
        assert_eq!(named[0], ("conns", 2));
        assert_eq!(named[1], ("conns_created", 4));
        assert_eq!(named[named.len() - 1], ("conn_rebinds_hurried", 6));
        assert_eq!(FwdStats::FIELDS[1], "created");
        let sync = SyncCounters {
            handed_over: 5,
            ..Default::default()
        };
        assert!(sync.named().contains(&("sync_handed_over", 5)));
    }
}
