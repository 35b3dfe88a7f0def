//! Per-worker connection tracking for the datapath (DESIGN.md decisions 5 and 7).
//!
//! - [`tuple`](mod@tuple): the 5-tuple as a packet arrives, and the per-boot keyed hash over it.
//! - [`index`]: open-addressing index from a tuple's hash to (entry, direction).
//! - [`timer`]: hashed timing wheel with intrusive links and lazy re-arming.
//! - [`state`]: IPVS TCP/UDP states, transitions and timeouts.
//! - [`table`]: the table itself, one per worker, fixed size, no allocation after creation.
//! - [`rebind`]: entries follow a configuration change's new indices lazily, the table walked in
//!   slices between bursts.
//! - [`record`]: a connection as another box learns it (HA sync), by identity, not by index.
//! - [`parked`]: client packets held for a connection until it can take them (the SYN proxy's).
//!
//! A FullNAT connection is found from both of its tuples: the client's (CIP:cport -> VIP:vport)
//! and the real server's reply (RIP:rport -> LIP:lport). DR and TUN connections have only the
//! first and use IPVS's INPUT-ONLY state rows.

pub mod index;
pub mod parked;
pub mod rebind;
pub mod record;
pub mod state;
pub mod table;
pub mod timer;
pub mod tuple;

pub use rebind::{Rebind, NO_INDEX};
pub use state::{tcp_flags, Activity, State, StateChange, Timeouts};
pub use table::{
    Candidate, Conn, Conn6, ConnFlags, ConnId, ConnOf, ConnTable, ConnTable6, Counters,
    ExpireReason, HotDeadline, InsertError, Prelookup, Table, BATCH, MAX_CAPACITY,
};
pub use timer::Ticks;
pub use tuple::{ConnKey, Dir, HashKey, Tuple, Tuple6, PROTO_TCP, PROTO_UDP};
