//! Local addresses for FullNAT: which (LIP, lport) a new connection uses, so that the real server's
//! reply (RIP:rport -> LIP:lport) reaches the worker owning the connection (DESIGN.md, decision 6).
//!
//! - [`toeplitz`]: the RSS hash NICs compute, bitwise reference and table-driven fast form.
//! - [`reta`]: the redirection table and the queue -> worker map.
//! - [`layout`]: the shared split of the port space between workers, `owner_of(lport)`.
//! - [`pool`]: one worker's allocator.
//!
//! Typical use: the control plane builds one [`PortLayout`] from the server-side port's RSS key and
//! RETA and shares it (`Arc`); each worker builds its [`LaddrPool`] over the LIPs and calls
//! `allocate(rip, rport, |t| table_has(t))` for a new connection and `free(lip, lport)` when it
//! expires. A worker receiving a reply whose `owner_of(lport)` is another worker hands it over: this
//! covers packets the NIC hashes without ports (IP fragments, ICMP errors), drivers without RSS, and
//! RETA changes made behind our back.
//!
//! No DPDK here: the RSS key and RETA are read from the port by the `dpdk` module and passed in.

pub mod error;
pub mod layout;
pub mod pool;
pub mod reta;
pub mod toeplitz;
pub mod tuple;

pub use error::{ConfigError, PortsExhausted};
pub use layout::{PortLayout, RssConfig, Steering, DEFAULT_PORTS};
pub use pool::{LaddrPool, LaddrStats, DEFAULT_MAX_ATTEMPTS};
pub use reta::{QueueMap, Reta, RetaError};
pub use toeplitz::{toeplitz_hash, Toeplitz, DEFAULT_RSS_KEY};
pub use tuple::ReplyTuple;
