//! Client packets held for a connection until it can take them: the SYN proxy's, whose real
//! server has not answered yet (`forward::synproxy`). Generic over the packet buffer, so the
//! worker's L3 state (`net::l3::L3`), generic too, keeps it for the forwarding engine.

use super::{Tuple, Tuple6};

/// A proxied connection's client tuple, of either family: what its held packets and data are
/// kept for (connection ids alone would not do: the IPv4 and IPv6 tables give the same ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTuple {
    V4(Tuple),
    V6(Tuple6),
}

impl From<Tuple> for ClientTuple {
    fn from(t: Tuple) -> ClientTuple {
        ClientTuple::V4(t)
    }
}

impl From<Tuple6> for ClientTuple {
    fn from(t: Tuple6) -> ClientTuple {
        ClientTuple::V6(t)
    }
}

/// Client packets of proxied connections whose real server has not answered yet, released when
/// it does (kept by the worker's L3 state, which is generic over the packet buffer). Bounded per
/// worker and per connection; a packet held longer than [`HOLD_MS`] is dropped (the client
/// retransmits it).
pub struct Parked<B> {
    held: Vec<(u32, ClientTuple, u64, B)>,
}

/// Packets held per worker, per connection, and for how long.
pub const PARKED_MAX: usize = 512;
pub const PARKED_PER_CONN: usize = 16;
pub const HOLD_MS: u64 = 3000;

impl<B> Default for Parked<B> {
    fn default() -> Self {
        Parked {
            held: Vec::with_capacity(PARKED_MAX),
        }
    }
}

impl<B> Parked<B> {
    /// Holds `pkt` of connection `id` (client tuple `client`) until `deadline`; gives it back if
    /// the worker or the connection holds its share already.
    pub fn park(&mut self, id: u32, client: ClientTuple, deadline: u64, pkt: B) -> Result<(), B> {
        let mine = self.held.iter().filter(|h| h.0 == id).count();
        if self.held.len() >= PARKED_MAX || mine >= PARKED_PER_CONN {
            return Err(pkt);
        }
        self.held.push((id, client, deadline, pkt));
        Ok(())
    }

    /// The oldest packet held for connection `id` of `client`.
    pub fn take(&mut self, id: u32, client: &ClientTuple) -> Option<B> {
        let i = self.held.iter().position(|h| h.0 == id && h.1 == *client)?;
        Some(self.held.remove(i).3)
    }

    /// Drops what was held past its deadline; how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.held.len();
        self.held.retain(|h| h.2 > now_ms);
        before - self.held.len()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}
