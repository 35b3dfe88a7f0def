//! The datapath's side of `crate::frag`: a TCP or UDP fragment to a virtual service meets the
//! others of its datagram on their home worker; the first one is forwarded as a whole packet is and
//! its fate recorded; the others follow it, or wait for it.

use super::Datapath;
use crate::conn::Prelookup;
use crate::frag::{self, Decision, Follow, FragKey, Link, Piece, Rewrite};
use crate::packet::{Deferred, Ipv4In, Verdict};
use crate::packet::{PacketBuf, RxMeta};
use crate::stats::Drop;

impl<B: PacketBuf> Datapath<B> {
    /// A fragment of a datagram the forwarding engine handles (`Forwarder::forwards`).
    // Out of line whatever the codegen units decide (fragments only): inlined, it
    // bloated the SYN path's code (perf/RESULTS.md, "New connections a second
    // fell with a module split").
    #[inline(never)]
    pub(super) fn fragment(&mut self, pkt: B, meta: &RxMeta, v: &Ipv4In) -> Verdict<B> {
        let ip = &pkt.data()[v.l3_off..];
        let (key, piece) = (FragKey::of(ip), Piece::of(ip));
        let home = frag::home_of(&key, self.fwd.n_workers());
        let at_home = home == usize::from(self.l3.worker);
        if !at_home && !meta.from_peer {
            self.frags.stats.steered += 1;
            return Verdict::ToWorker(home as u16, pkt);
        }
        // Here: the home (whatever the frame's way here), or the owner the home handed it to.
        let now = self.l3.now_ms;
        if piece.offset != 0 {
            return match self.frags.follow(key, piece, (pkt, meta.port), now) {
                Follow::Decided(d, (p, _)) => self.follow(d, p),
                Follow::Held => Verdict::Held,
                Follow::Refused(why, (p, _)) => Verdict::Drop(why.into(), p),
            };
        }
        // The home decides as the worker that received the frame would (it may hand the fragment
        // to the connection's owner); the owner decides for itself.
        let decide = RxMeta {
            from_peer: meta.from_peer && !at_home,
            ..*meta
        };
        self.l3.last_queued = None;
        let verdict = self.forward_or_deliver(pkt, &decide, v, Prelookup::NotDone);
        let learn = |link, head: &[u8]| {
            Rewrite::learn(link, &key, &v.ip, head).map_or(Decision::Drop, Decision::Send)
        };
        let decision = match &verdict {
            Verdict::ToWorker(w, _) => Decision::Worker(*w),
            Verdict::ToKernel(p, _) => Decision::Kernel(*p),
            Verdict::Tx(port, out) => {
                let mut macs = [0u8; 12];
                macs.copy_from_slice(&out.data()[..12]);
                learn(Link::Sent { port: *port, macs }, out.data())
            }
            // Waiting for ARP: the others wait behind it.
            Verdict::Held => match self.l3.last_queued.take() {
                Some(q) => learn(Link::Queued(q.dst), q.head()),
                None => Decision::Drop,
            },
            Verdict::Drop(..) | Verdict::Done(_) => Decision::Drop,
        };
        // A full table records nothing: the later fragments are refused as they come.
        if let Ok(held) = self.frags.first(key, piece, decision, now) {
            for (p, port) in held {
                let verdict = self.follow(decision, p);
                self.deferred.push(Deferred { verdict, port });
            }
        }
        verdict
    }

    /// A later fragment, sent where its first one went.
    fn follow(&mut self, d: Decision, mut pkt: B) -> Verdict<B> {
        let v = match d {
            Decision::Drop => return Verdict::Drop(Drop::FragFirstDropped.into(), pkt),
            Decision::Worker(w) => Verdict::ToWorker(w, pkt),
            Decision::Kernel(p) => Verdict::ToKernel(p, pkt),
            Decision::Send(rw) => {
                if let Err(why) = rw.apply(&mut pkt, self.fwd.mtu()) {
                    return Verdict::Drop(why.into(), pkt);
                }
                match rw.link {
                    Link::Sent { port, .. } => Verdict::Tx(port, pkt),
                    Link::Queued(dst) => self.l3.route_out(pkt, dst),
                }
            }
        };
        self.frags.stats.followed += 1;
        v
    }
}
