//! Virtual services, real servers and schedulers: every IPVS algorithm (`rr wrr lc wlc lblc lblcr dh
//! sh sed nq fo ovf`) plus Maglev (`mh`), with weights, thresholds, quiescing and persistence.
//!
//! Life cycle: the control plane validates a [`ServiceConfig`] into a [`Service`] — passing the
//! previous snapshot so shared state carries over — and sends `Arc<Service>` to the workers. Each
//! worker keeps a [`SchedState`] per service (`SchedState::new`, then `sync` on every new snapshot)
//! and calls [`SchedState::pick`] once per **new** connection; the packets of existing connections
//! never come here. The connection then reports its life to its server's [`RsStats`]
//! (`on_conn_new`, `on_active`, `on_inactive`, `on_conn_gone`).
//!
//! Sharing across workers, in one place:
//! - connection counts: aggregate per real server, atomics touched per connection event (`counts.rs`);
//! - rr/wrr position: one shared counter, `fetch_add` per new connection (`wrr.rs`, `sched.rs`);
//! - persistence: a sharded, mutex-per-shard table locked per new connection (`persist.rs`);
//! - lblc/lblcr: per-worker tables (`lblc.rs`);
//! - sh/dh/mh tables and the wrr sequence: immutable, in the `Arc<Service>`.

mod config;
mod counts;
mod error;
mod hash;
mod hashing;
mod key;
mod lblc;
mod least;
mod maglev;
mod persist;
mod real;
mod sched;
mod sched_kind;
mod snapshot;
mod wrr;

pub use config::{
    Persistence, Proto, ServiceConfig, DEFAULT_HASH_SEED, DEFAULT_MH_TABLE_SIZE,
    DEFAULT_PERSIST_TIMEOUT_S,
};
pub use counts::{ConnCounts, CountsVec, RsStats};
pub use error::ServiceError;
pub use key::{addr_word, LipKey, Millis, RsKey, SvcId, TrafficKey};
pub use lblc::{LblcTable, LblcrTable};
pub use maglev::MaglevTable;
pub use persist::{PersistKey, PersistTable, Template, DEFAULT_PERSIST_MAX};
pub use real::{FwdMode, RealServer, MAX_WEIGHT};
pub use sched::{elsewhere_possible, ClientKey, SchedState};
pub use sched_kind::{SchedFlags, SchedKind};
pub use snapshot::{Service, MAX_REALS};
pub use wrr::WrrSeq;

#[cfg(test)]
mod tests;
