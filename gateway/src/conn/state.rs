//! Protocol states and their timeouts, as IPVS keeps them
//! (linux net/netfilter/ipvs/ip_vs_proto_tcp.c, ip_vs_proto_udp.c).
//!
//! TCP follows IPVS's `tcp_states` table (not the `secure_tcp` `tcp_states_dos` variant): the
//! INPUT and OUTPUT rows when the gateway sees both directions (FullNAT, NAT), the INPUT-ONLY rows
//! when it sees only the client side (DR, TUN). The tables are those of current mainline, where
//! an ACK in state NONE leads to ESTABLISHED (older kernels went to CLOSE), and "active" is
//! mainline's `tcp_state_active_table`: ESTABLISHED, SYN_SENT, SYN_RECV and SYNACK count as
//! active connections for the schedulers, everything else as inactive. UDP (and any non-TCP
//! protocol) has one state and is never active, as in IPVS where UDP connections never leave
//! the INACTIVE flag they are created with.

use serde::{Deserialize, Serialize};

/// Connection state; `Udp` stands for IPVS's UDP "NORMAL" and is used for every non-TCP protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    None = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait = 4,
    TimeWait = 5,
    Close = 6,
    CloseWait = 7,
    LastAck = 8,
    Listen = 9,
    SynAck = 10,
    Udp = 11,
}

/// Number of [`State`] values.
pub const STATES: usize = 12;

impl State {
    /// Every state, in order.
    pub const ALL: [State; STATES] = [
        State::None,
        State::Established,
        State::SynSent,
        State::SynRecv,
        State::FinWait,
        State::TimeWait,
        State::Close,
        State::CloseWait,
        State::LastAck,
        State::Listen,
        State::SynAck,
        State::Udp,
    ];

    /// From the stored byte; unknown values read as `Close` (never produced by this module).
    pub fn from_u8(v: u8) -> State {
        State::ALL.get(v as usize).copied().unwrap_or(State::Close)
    }

    /// The name `ipvsadm -lnc` prints.
    pub fn name(self) -> &'static str {
        match self {
            State::None => "NONE",
            State::Established => "ESTABLISHED",
            State::SynSent => "SYN_SENT",
            State::SynRecv => "SYN_RECV",
            State::FinWait => "FIN_WAIT",
            State::TimeWait => "TIME_WAIT",
            State::Close => "CLOSE",
            State::CloseWait => "CLOSE_WAIT",
            State::LastAck => "LAST_ACK",
            State::Listen => "LISTEN",
            State::SynAck => "SYNACK",
            State::Udp => "UDP",
        }
    }

    /// Whether IPVS counts a connection in this state in the real server's `activeconns`
    /// (mainline `tcp_state_active_table`); otherwise it is in `inactconns`.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Established | State::SynSent | State::SynRecv | State::SynAck
        )
    }
}

/// Which transition rows apply to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Client → gateway when replies are seen too (IPVS `TCP_DIR_INPUT`).
    Input = 0,
    /// Real server → gateway (IPVS `TCP_DIR_OUTPUT`).
    Output = 1,
    /// Client → gateway when replies bypass the gateway (IPVS `TCP_DIR_INPUT_ONLY`).
    InputOnly = 2,
}

/// TCP header flag bits (RFC 9293 §3.1), as in the 13th byte of the header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// IPVS `tcp_state_idx`: the event a packet stands for, RST > SYN > FIN > ACK; `None` when none
/// of them is set.
const fn event(flags: u8) -> Option<usize> {
    if flags & tcp_flags::RST != 0 {
        Some(3)
    } else if flags & tcp_flags::SYN != 0 {
        Some(0)
    } else if flags & tcp_flags::FIN != 0 {
        Some(1)
    } else if flags & tcp_flags::ACK != 0 {
        Some(2)
    } else {
        None
    }
}

/// No event (`event` is `None`).
const NO_EVENT: u8 = 4;

/// [`event`] by table, one load instead of a chain of tests on every packet: indexed by FIN, SYN
/// and RST (bits 0-2, where they are in the flags byte) and ACK (bit 4) moved to bit 3.
const EVENTS: [u8; 16] = {
    let mut t = [NO_EVENT; 16];
    let mut i = 0;
    while i < 16 {
        let flags = (i as u8 & 0x07) | ((i as u8 & 0x08) << 1);
        t[i] = match event(flags) {
            Some(ev) => ev as u8,
            None => NO_EVENT,
        };
        i += 1;
    }
    t
};

use State::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

/// `TCP_STATES[rows][event][current]`, columns in IPVS order
/// NONE, ES, SYN_SENT, SYN_RECV, FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, SYNACK.
#[rustfmt::skip]
const TCP_STATES: [[[State; 11]; 4]; 3] = [
    // INPUT
    [
        /*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /*fin*/ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUTPUT
    [
        /*syn*/ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        /*fin*/ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /*rst*/ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT-ONLY
    [
        /*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /*fin*/ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// IPVS `set_tcp_state`: the next TCP state. A packet with none of RST/SYN/FIN/ACK moves the
/// connection to CLOSE, as IPVS does (`new_state` starts as CLOSE there).
pub fn tcp_next(rows: Rows, tcp_flags: u8, current: State) -> State {
    let col = current as usize;
    let ev = EVENTS[usize::from((tcp_flags & 0x07) | ((tcp_flags & tcp_flags::ACK) >> 1))];
    match TCP_STATES[rows as usize].get(usize::from(ev)) {
        Some(row) if col < 11 => row[col],
        _ => State::Close,
    }
}

/// Idle timeouts per state, in seconds (IPVS defaults; `ipvsadm --set` changes the TCP
/// ESTABLISHED, TCP FIN_WAIT and UDP ones there, every one here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    pub none: u32,
    pub established: u32,
    pub syn_sent: u32,
    pub syn_recv: u32,
    pub fin_wait: u32,
    pub time_wait: u32,
    pub close: u32,
    pub close_wait: u32,
    pub last_ack: u32,
    pub listen: u32,
    pub synack: u32,
    pub udp: u32,
}

impl Default for Timeouts {
    /// `tcp_timeouts` of ip_vs_proto_tcp.c and `udp_timeouts` of ip_vs_proto_udp.c.
    fn default() -> Self {
        Timeouts {
            none: 2,
            established: 15 * 60,
            syn_sent: 2 * 60,
            syn_recv: 60,
            fin_wait: 2 * 60,
            time_wait: 2 * 60,
            close: 10,
            close_wait: 60,
            last_ack: 30,
            listen: 2 * 60,
            synack: 120,
            udp: 5 * 60,
        }
    }
}

impl Timeouts {
    /// The timeout of `state`, in seconds.
    pub fn secs(&self, state: State) -> u32 {
        match state {
            State::None => self.none,
            State::Established => self.established,
            State::SynSent => self.syn_sent,
            State::SynRecv => self.syn_recv,
            State::FinWait => self.fin_wait,
            State::TimeWait => self.time_wait,
            State::Close => self.close,
            State::CloseWait => self.close_wait,
            State::LastAck => self.last_ack,
            State::Listen => self.listen,
            State::SynAck => self.synack,
            State::Udp => self.udp,
        }
    }

    /// Milliseconds per state, indexed by `State as usize` (what the table keeps).
    pub fn to_ms(&self) -> [u64; STATES] {
        State::ALL.map(|s| u64::from(self.secs(s)) * 1000)
    }
}

/// Result of a packet's state update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub old: State,
    pub new: State,
}

/// How a state change moves a connection between the active and inactive counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    Unchanged,
    BecameActive,
    BecameInactive,
}

impl StateChange {
    pub fn changed(&self) -> bool {
        self.old != self.new
    }

    /// What the caller does to the real server's active/inactive counters.
    pub fn activity(&self) -> Activity {
        match (self.old.is_active(), self.new.is_active()) {
            (false, true) => Activity::BecameActive,
            (true, false) => Activity::BecameInactive,
            _ => Activity::Unchanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::*;

    /// The table `tcp_next` reads gives IPVS's event for every flags byte, whatever the other
    /// bits (PSH, URG, ECE, CWR) hold, and so the transition of the `TCP_STATES` row it names.
    #[test]
    fn event_table_matches_the_flag_tests() {
        for flags in 0..=u8::MAX {
            for rows in [Rows::Input, Rows::Output, Rows::InputOnly] {
                for s in State::ALL {
                    let want = match event(flags) {
                        Some(ev) if (s as usize) < 11 => TCP_STATES[rows as usize][ev][s as usize],
                        _ => State::Close,
                    };
                    assert_eq!(tcp_next(rows, flags, s), want, "flags {flags:#x} in {s:?}");
                }
            }
        }
    }

    /// What the FullNAT fast path's `forward_hot` and `ConnTable::refresh_established` rest on:
    /// an ACK without SYN, FIN or RST, whatever else it carries, keeps an ESTABLISHED connection
    /// ESTABLISHED in every row.
    #[test]
    fn a_plain_ack_keeps_established_in_every_row() {
        for flags in 0..=u8::MAX {
            let plain_ack = flags & ACK != 0 && flags & (SYN | FIN | RST) == 0;
            if !plain_ack {
                continue;
            }
            for rows in [Rows::Input, Rows::Output, Rows::InputOnly] {
                assert_eq!(
                    tcp_next(rows, flags, State::Established),
                    State::Established,
                    "flags {flags:#x} in {rows:?}"
                );
            }
        }
    }

    fn run(rows: &[(Rows, u8)]) -> Vec<State> {
        let mut s = State::None;
        rows.iter()
            .map(|&(r, f)| {
                s = tcp_next(r, f, s);
                s
            })
            .collect()
    }

    #[test]
    fn full_handshake_and_close_both_directions() {
        use Rows::*;
        let got = run(&[
            (Input, SYN),
            (Output, SYN | ACK),
            (Input, ACK),
            (Input, FIN | ACK),
            (Output, ACK),
            (Output, FIN | ACK),
            (Input, ACK),
        ]);
        assert_eq!(
            got,
            vec![
                State::SynRecv,
                State::SynRecv,
                State::Established,
                State::CloseWait,
                State::CloseWait,
                State::TimeWait,
                State::TimeWait,
            ]
        );
    }

    #[test]
    fn server_closes_first() {
        use Rows::*;
        let got = run(&[
            (Input, SYN),
            (Output, SYN | ACK),
            (Input, ACK),
            (Output, FIN | ACK),
            (Input, FIN | ACK),
        ]);
        assert_eq!(got[3], State::FinWait);
        assert_eq!(got[4], State::TimeWait);
    }

    #[test]
    fn input_only_handshake_and_close() {
        use Rows::*;
        let got = run(&[
            (InputOnly, SYN),
            (InputOnly, ACK),
            (InputOnly, FIN | ACK),
            (InputOnly, ACK),
        ]);
        assert_eq!(
            got,
            vec![
                State::SynRecv,
                State::Established,
                State::FinWait,
                State::FinWait
            ]
        );
    }

    #[test]
    fn rst_wins_and_closes() {
        let est = State::Established;
        for rows in [Rows::Input, Rows::Output, Rows::InputOnly] {
            assert_eq!(tcp_next(rows, RST | SYN | ACK, est), State::Close);
        }
        // RST while SYN_RECV from the client is ignored (IPVS keeps SYN_RECV), from the server it
        // closes.
        assert_eq!(tcp_next(Rows::Input, RST, State::SynRecv), State::SynRecv);
        assert_eq!(tcp_next(Rows::Output, RST, State::SynRecv), State::Close);
        // No flags at all: CLOSE, as IPVS.
        assert_eq!(tcp_next(Rows::Input, 0, est), State::Close);
        // Nothing but UDP falls off the table.
        assert_eq!(tcp_next(Rows::Input, ACK, State::Udp), State::Close);
    }

    #[test]
    fn activity_follows_ipvs_active_table() {
        let c = StateChange {
            old: State::None,
            new: State::SynRecv,
        };
        assert_eq!(c.activity(), Activity::BecameActive);
        let c = StateChange {
            old: State::Established,
            new: State::CloseWait,
        };
        assert_eq!(c.activity(), Activity::BecameInactive);
        let c = StateChange {
            old: State::SynRecv,
            new: State::Established,
        };
        assert_eq!(c.activity(), Activity::Unchanged);
        assert!(!State::Udp.is_active());
    }

    #[test]
    fn defaults_are_ipvs() {
        let t = Timeouts::default();
        assert_eq!(t.secs(State::Established), 900);
        assert_eq!(t.secs(State::SynRecv), 60);
        assert_eq!(t.secs(State::Close), 10);
        assert_eq!(t.secs(State::Udp), 300);
        assert_eq!(t.to_ms()[State::LastAck as usize], 30_000);
        for (i, s) in State::ALL.iter().enumerate() {
            assert_eq!(State::from_u8(i as u8), *s);
        }
        let parsed: Timeouts = toml::from_str("established = 60").unwrap();
        assert_eq!(parsed.established, 60);
        assert_eq!(parsed.udp, 300);
    }
}
