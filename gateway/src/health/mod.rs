//! Real-server health checks (DESIGN.md decision 17; the seeds' "nanny"; keepalived's checkers):
//! active probes on the control plane through the kernel's stack (ordinary sockets, which reach
//! the wire through the kernel twins), never on a worker lcore.
//!
//! - [`check`]: what a check is (tcp, http, udp, exec) and its knobs, with keepalived's names.
//! - [`state`]: rise/fall and jitter, pure.
//!
//! Work in progress (issue 11): the probe event loop, the weight overlay through the acknowledged
//! generation, passive detection and connection-level retry are not built yet; nothing here runs.

pub mod check;
pub mod state;
