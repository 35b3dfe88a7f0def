//! A new connection on a reused client port: whether a client's SYN that finds an entry of its tuple
//! follows that entry or is scheduled afresh, as IPVS decides in `ip_vs_in` (net/netfilter/ipvs/
//! ip_vs_core.c) under the sysctls of Documentation/networking/ipvs-sysctl.rst.
//!
//! A client that opens connections quickly reuses its source ports while the gateway still holds the
//! previous connection of that tuple (TIME_WAIT lasts 120 s here). Following the old entry would send
//! the new connection to the old real server through the old LIP:lport without asking the scheduler
//! and without counting it: a weight-0 drain, a removed server and a scheduler change would all be
//! bypassed by exactly the clients that make the most connections.
//!
//! The rules, in IPVS's order:
//! 1. the entry's real server was removed: scheduled afresh when `expire_nodest_conn` is on (IPVS) or
//!    `conn_reuse_mode` is not 0. IPVS without `expire_nodest_conn` drops such a SYN until the entry
//!    times out (up to 15 minutes for ESTABLISHED), which only makes the client retry; a new
//!    connection can never be served by a server that is gone, so the gateway schedules it.
//! 2. `expire_nodest_conn` on and the real server quiesced (weight 0): scheduled afresh.
//! 3. `conn_reuse_mode` bit 1 (value 1, the default): the entry is in TIME_WAIT or CLOSE.
//! 4. `conn_reuse_mode` bit 2 (value 2): the entry is in FIN_WAIT and the gateway sees only the
//!    client's side (DR, TUN: IPVS's `IP_VS_CONN_F_NOOUTPUT`), where FIN_WAIT is the last state it
//!    can see.
//! 5. `conn_reuse_mode` bit 1, beyond IPVS: the entry's handshake never completed (SYN_RECV and
//!    the other states before ESTABLISHED) and began with another initial sequence number than
//!    this SYN's: not a retransmission but a new connection. The ISN the handshake began with is
//!    the one the server acknowledged for IPv4 FullNAT and NAT (unknown until it answers), the
//!    first SYN's for DR and TUN (whose answers bypass the gateway) and for IPv6. A client that
//!    gave up a connection during its handshake (wrk stopping, a connect timeout, a server that
//!    never answered) leaves such an entry for 60 s, refreshed by each SYN of its port, which its
//!    next connection on that port would otherwise follow; IPVS keeps SYN_RECV on the client's
//!    RST too.
//!
//! A persistent service's connections are rescheduled by the same rules; the persistence template
//! then decides the server (`expire_quiescent_template` decides for a quiesced one), which is what
//! IPVS's controlled connections amount to. Non-SYN packets never reschedule, except that a UDP
//! datagram of a removed server's connection with `expire_nodest_conn` starts a new connection (IPVS
//! expires the entry and schedules the datagram); UDP to a quiesced server stays on it, as in IPVS.

use crate::conn::State;

/// IPVS's default `conn_reuse_mode`.
pub const DEFAULT_CONN_REUSE_MODE: u8 = 1;

/// The real server an entry points at, as the current snapshot has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// In the service, with this weight (0: quiesced).
    Weight(u32),
    /// No longer in the service (or the service is gone).
    Removed,
}

/// Why a SYN on a reused tuple was scheduled afresh (one counter each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resched {
    /// The entry was in TIME_WAIT or CLOSE (`conn_reuse_mode` bit 1).
    Closed,
    /// The entry was in FIN_WAIT on a client-side-only connection (`conn_reuse_mode` bit 2).
    FinWait,
    /// The entry's real server has weight 0 (`expire_nodest_conn`).
    Quiesced,
    /// The entry's real server was removed.
    Removed,
    /// The entry's handshake never completed and this SYN is not its retransmission.
    NewIsn,
}

/// What a client's SYN (without ACK) that found an entry in `state` does: `Some(why)` expires the
/// entry and schedules the SYN as a new connection, `None` follows the entry. `input_only`: the
/// gateway sees only the client's side (DR, TUN); `other_isn`: the entry's handshake began with
/// an initial sequence number other than this SYN's (rule 5).
pub fn on_syn(
    conn_reuse_mode: u8,
    expire_nodest_conn: bool,
    state: State,
    input_only: bool,
    dest: Dest,
    other_isn: bool,
) -> Option<Resched> {
    match dest {
        Dest::Removed if expire_nodest_conn || conn_reuse_mode != 0 => {
            return Some(Resched::Removed)
        }
        Dest::Weight(0) if expire_nodest_conn => return Some(Resched::Quiesced),
        _ => {}
    }
    if conn_reuse_mode & 1 != 0 && matches!(state, State::TimeWait | State::Close) {
        return Some(Resched::Closed);
    }
    if conn_reuse_mode & 2 != 0 && input_only && state == State::FinWait {
        return Some(Resched::FinWait);
    }
    let handshake = matches!(
        state,
        State::None | State::SynSent | State::SynRecv | State::SynAck
    );
    if conn_reuse_mode & 1 != 0 && handshake && other_isn {
        return Some(Resched::NewIsn);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every TCP state (`Udp` is not one).
    const STATES: [State; 11] = {
        let mut s = [State::None; 11];
        let mut i = 0;
        while i < 11 {
            s[i] = State::ALL[i];
            i += 1;
        }
        s
    };

    /// The model, written from ipvs-sysctl.rst and not from the code above: "bit 1: enable
    /// rescheduling of new connections when it is safe. That is, whenever expire_nodest_conn and for
    /// TCP sockets, when the connection is in TIME_WAIT state" (mainline also CLOSE); "bit 2: it is
    /// bit 1 plus, for TCP connections, when connections are in FIN_WAIT state, as this is the last
    /// state seen by load balancer in Direct Routing mode"; expire_nodest_conn: "expire the
    /// connection immediately when a packet arrives and its destination server is not available";
    /// plus the gateway's one difference: a removed server never gets a new connection while
    /// reuse handling is on.
    fn model(mode: u8, nodest: bool, st: State, input_only: bool, dest: Dest, isn: bool) -> bool {
        let closed = st == State::TimeWait || st == State::Close;
        let before_established = matches!(
            st,
            State::None | State::SynSent | State::SynRecv | State::SynAck
        );
        let removed = dest == Dest::Removed;
        let quiesced = dest == Dest::Weight(0);
        (nodest && (removed || quiesced))
            || (mode != 0 && removed)
            || (mode & 1 != 0 && closed)
            || (mode & 2 != 0 && input_only && st == State::FinWait)
            || (mode & 1 != 0 && isn && before_established)
    }

    #[test]
    fn every_state_flag_and_server_condition_matches_the_model() {
        for mode in 0..=3u8 {
            for nodest in [false, true] {
                for st in STATES {
                    for input_only in [false, true] {
                        for dest in [
                            Dest::Weight(0),
                            Dest::Weight(1),
                            Dest::Weight(100),
                            Dest::Removed,
                        ] {
                            for isn in [false, true] {
                                let got = on_syn(mode, nodest, st, input_only, dest, isn);
                                let want = model(mode, nodest, st, input_only, dest, isn);
                                assert_eq!(
                                    got.is_some(),
                                    want,
                                    "mode {mode} nodest {nodest} {st:?} {input_only} {dest:?} {isn}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn reasons_name_the_rule_that_fired() {
        assert_eq!(
            on_syn(1, false, State::TimeWait, false, Dest::Weight(1), false),
            Some(Resched::Closed)
        );
        assert_eq!(
            on_syn(2, false, State::FinWait, true, Dest::Weight(1), false),
            Some(Resched::FinWait)
        );
        // Bit 2 alone does not cover TIME_WAIT; FIN_WAIT with both directions seen is not final.
        assert_eq!(
            on_syn(2, false, State::TimeWait, false, Dest::Weight(1), false),
            None
        );
        assert_eq!(
            on_syn(3, false, State::FinWait, false, Dest::Weight(1), false),
            None
        );
        assert_eq!(
            on_syn(0, true, State::Established, false, Dest::Weight(0), false),
            Some(Resched::Quiesced)
        );
        assert_eq!(
            on_syn(1, false, State::Established, false, Dest::Removed, false),
            Some(Resched::Removed)
        );
        // With reuse handling off and no expire_nodest_conn, the old entry is followed.
        assert_eq!(
            on_syn(0, false, State::TimeWait, false, Dest::Removed, false),
            None
        );
        // A SYN_RECV entry the server answered for another ISN: a new connection; for this one,
        // a retransmission.
        assert_eq!(
            on_syn(1, false, State::SynRecv, false, Dest::Weight(0), true),
            Some(Resched::NewIsn)
        );
        assert_eq!(
            on_syn(1, false, State::Established, false, Dest::Weight(1), true),
            None
        );
        // A quiesced server keeps its established clients by default (IPVS).
        assert_eq!(
            on_syn(1, false, State::Established, false, Dest::Weight(0), false),
            None
        );
    }
}
