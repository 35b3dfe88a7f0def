//! gateway: a DPDK-based L4 load balancer in the LVS/DPVS family.
//!
//! The datapath core (`wire`, `net`, `conn`, `service`, `laddr`, `forward`, `datapath`) knows nothing of
//! DPDK: it works on `PacketBuf` frames and returns verdicts, so it is tested and benchmarked with plain
//! `cargo test`. Only the `dpdk` module touches FFI; `worker` joins the two.

pub mod bigmem;
pub mod capture;
pub mod config;
pub mod conn;
pub mod control;
pub mod counters;
pub mod daemon;
pub mod datapath;
pub mod dpdk;
pub mod events;
pub mod forward;
pub mod frag;
pub mod health;
pub mod inet6;
pub mod kernel;
pub mod laddr;
pub mod metrics;
pub mod net;
pub mod packet;
pub mod service;
pub mod stats;
pub mod sync;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod view;
pub mod wire;
pub mod worker;
