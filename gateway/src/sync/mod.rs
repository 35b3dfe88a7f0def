//! Connection sync for a primary/backup pair (issue 12, DESIGN.md decision 15; ROOMS.md `sync/`).
//!
//! - [`wire`]: the messages, their versioning, HMAC authentication and replay protection
//!   (`sync/PROTOCOL.md` for operators).
//!
//! Only the wire format exists so far: nothing sends or receives messages yet, and workers do not
//! export or install connections.

pub mod wire;
