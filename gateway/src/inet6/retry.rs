//! Passive detection and `syn_retry` for IPv6 services, as IPv4's (`forward::fullnat`'s
//! `syn_failed` and `server_handshake`): a real server that refuses a client's SYN (a RST) or
//! leaves it unanswered for `[conn] syn_unanswered_ms` is counted against in its service's
//! per-server counters, which the health checker sums (`health`, `passive_fall`); with the
//! service's `syn_retry`, the client's next SYN goes to another real server, once, and the
//! refusing server's RST is held back from the client, whose retransmission brings it there.
//!
//! An IPv6 entry keeps in `user` when its client's wait for the server began (ms mod 2^32): its
//! creation, or a FullNAT or NAT64 server's last bare ACK to the SYN from its TIME_WAIT
//! (`service::server_state`); and in `ext` whether its server answered the client's SYN
//! ([`ANSWERED`], bit 0; `ext`'s other bits are the sync log's refresh period, as on IPv4).
//! IPv6 entries use neither for anything else.
//!
//! As IPv4's, a FullNAT connection to retry is parked on its LIP:lport for TIME_WAIT's
//! timeout (`service::retire`), as a reused client port's is (`service::reschedule`): a late
//! SYN-ACK of the server that failed is dropped (`no_conn`).

use crate::conn::{tcp_flags, ConnId, ConnOf, ConnTable6, State, Ticks, Tuple6};
use crate::forward::fullnat::{FAILED, NO_DEST};
use crate::forward::services::VirtualService;
use crate::forward::{mode, Forwarder};
use crate::service::{ClientKey, SchedState};
use std::net::IpAddr;

/// `ext` bit of an IPv6 entry: its server answered the client's SYN (a SYN-ACK).
pub(super) const ANSWERED: u8 = 1;

/// Whether `c` is a handshake its real server can still fail: a FullNAT, NAT or NAT64
/// connection (the others' answers bypass the gateway) whose client's SYN its server has not
/// answered.
fn unanswered(c: &ConnOf<Tuple6>) -> bool {
    c.proto() == crate::conn::PROTO_TCP
        && matches!(c.mode(), mode::FULLNAT | mode::NAT | mode::NAT64)
        && c.rs != NO_DEST
        && c.state() == State::SynRecv
        && c.ext() & ANSWERED == 0
}

/// The client of `c` sends its SYN again (the same ISN: a retransmission, `service::reschedule`
/// having found no new connection in it). Once `syn_unanswered_ms` has passed since the first,
/// or after the server refused it, the attempt has failed: counted once per connection. The
/// server to avoid if the connection is to be retried (`syn_retry`, and not a retry itself);
/// None otherwise.
pub(super) fn client_syn_again(
    fwd: &mut Forwarder,
    c: &mut ConnOf<Tuple6>,
    now: Ticks,
) -> Option<u16> {
    if !unanswered(c) {
        return None;
    }
    if !c.flags().contains(FAILED) {
        if (now.0 as u32).wrapping_sub(c.user) < fwd.syn_unanswered_ms() {
            return None;
        }
        c.set_flags(FAILED);
        fwd.count_syn_failed(c.svc, c.rs, false);
    }
    fwd.retries(c).then_some(c.rs)
}

/// The real server of `c` if its handshake is still unanswered, and since when (ms) it has
/// been waited for: the neighbour to doubt when the client retransmits its SYN
/// (`nd::suspect`), as IPv4's `Forwarder::unanswered_server`. DR's and TUN's answers bypass
/// the gateway: any of their connections in SYN_RECV is unanswered. Since its creation, which
/// an IPv6 entry keeps in `user` in every mode (IPv4's DR entries keep the server's address
/// there, and take the least time to a SYN's first retransmission as the bound instead).
pub(super) fn unanswered_server(
    fwd: &Forwarder,
    c: &ConnOf<Tuple6>,
    now: Ticks,
) -> Option<(IpAddr, u64)> {
    let bypassed = matches!(c.mode(), mode::DR | mode::TUN)
        && c.proto() == crate::conn::PROTO_TCP
        && c.state() == State::SynRecv;
    if !bypassed && !unanswered(c) {
        return None;
    }
    // `user`: the creation time, or the server's last bare ACK to the SYN, ms mod 2^32.
    let waited = (now.0 as u32).wrapping_sub(c.user);
    let since = now.0.saturating_sub(u64::from(waited));
    let vs = fwd.services().services.get(usize::from(c.svc))?;
    let rs = vs.svc.reals().get(usize::from(c.rs))?;
    Some((rs.addr, since))
}

/// A TCP segment from the real server of connection `id` with `flags`, before the connection's
/// state takes it (the FullNAT, NAT and NAT64 reply paths): a SYN answers the client's
/// ([`ANSWERED`], which `service::handshake_answered` reads too), a SYN-ACK to it ends the
/// server's streak of failures, a RST is a refusal. Whether to hold the RST back from the
/// client (the connection is to be retried), whose retransmitted SYN then goes to another
/// server.
pub(super) fn server_segment(
    conns: &mut ConnTable6,
    fwd: &mut Forwarder,
    id: ConnId,
    flags: u8,
) -> bool {
    let Some(c) = conns.get_mut(id) else {
        return false;
    };
    let waited = unanswered(c);
    if flags & tcp_flags::SYN != 0 {
        c.set_ext(c.ext() | ANSWERED);
    }
    if !waited {
        return false;
    }
    if flags & tcp_flags::RST != 0 {
        if c.flags().contains(FAILED) {
            return false;
        }
        c.set_flags(FAILED);
        fwd.count_syn_failed(c.svc, c.rs, true);
        return fwd.retries(c);
    }
    let syn_ack = tcp_flags::SYN | tcp_flags::ACK;
    if flags & syn_ack == syn_ack {
        fwd.count_syn_answered(c.svc, c.rs);
    }
    false
}

/// Whether `c`, expiring, is a client's SYN its server never answered (the client gave up): a
/// failed attempt not counted yet.
pub(super) fn expires_unanswered(c: &ConnOf<Tuple6>) -> bool {
    unanswered(c) && !c.flags().contains(FAILED)
}

/// The scheduler's pick for a retried connection, any real server of `vs` but `not`, whose
/// handshake with this client failed (`service::new_conn`); out of a new connection's way.
#[cold]
#[inline(never)]
pub(super) fn pick_other(
    state: &mut SchedState,
    vs: &VirtualService,
    key: ClientKey,
    now_ms: u64,
    not: u16,
) -> Option<usize> {
    state.pick_other(&vs.svc, &*vs.svc, key, now_ms, usize::from(not))
}

/// Counts a connection to retry that no other server could take (`syn_retry_no_other`): it
/// goes where the scheduler sends it.
#[cold]
pub(super) fn count_no_other(fwd: &mut Forwarder) {
    fwd.stats.syn_retry_no_other += 1;
}
