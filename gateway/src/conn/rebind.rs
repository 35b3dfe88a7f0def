//! Connections follow a configuration change without stopping the worker (issue 16).
//!
//! An entry names its service and real server by their indices in its worker's snapshot
//! (`ConnOf::svc`, `ConnOf::rs`, opaque to this module). A change that removes or moves a service
//! or a real server moves those indices, and every entry of a moved one must be rewritten. One
//! walk of the whole slab at the commit stopped the worker for as long as the walk took: 30 to 40
//! ms at 10M connections, 4 ms at 1M (perf/RESULTS.md, "A change's stall on each worker"), every
//! packet arriving meanwhile waiting and the receive ring overflowing. IPVS and DPVS have no such
//! walk: their connections point at the destination itself.
//!
//! Here a table takes the change's map ([`Rebind`]) at once (`Table::begin_rebind`, O(1)). An
//! entry is rewritten, in place, when it is settled (`get_mut` and what is built on it: `remove`,
//! `get_current`, `settle`, the expiry callback) or when the walk reaches it, a slice of the slab
//! per call of `Table::rebind_step`, which the worker makes once a poll round, whichever comes
//! first; meanwhile `get` and `iter_range` hand out a copy that has followed the change, the slab
//! left as it is. So no reader ever sees an entry's old indices, and the worker forwards between
//! slices.
//!
//! An entry knows which changes it has followed by a count, modulo 16, in the top four bits of
//! its state byte, compared with the table's: a change increments the table's (every live entry
//! is then behind it), an entry created since is given the current count, and the walk leaves no
//! live entry behind before the changes are forgotten. Each map is applied to an entry exactly
//! once, in order: applying one twice would move an index that had already moved. Changes that
//! come before the walk of the ones before them ended are kept, up to 15, an entry behind several
//! following each in turn, and the walk starts again from the first slot; a change that finds 15
//! pending finishes their walk first (counted, `conn_rebinds_hurried`): the stall that once came
//! with every change then comes at most once in 15 changes in quick succession.

/// An index that names nothing: the service or real server is gone (the datapath's `NO_DEST`).
pub const NO_INDEX: u16 = u16::MAX;

/// How a configuration change moves entries' indices: by old service index, the service's new
/// index ([`NO_INDEX`] if it went) and, unless its real servers kept their places, each old real
/// server's new index ([`NO_INDEX`] for one that went).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rebind {
    map: Vec<(u16, Option<Vec<u16>>)>,
}

impl Rebind {
    pub fn new(map: Vec<(u16, Option<Vec<u16>>)>) -> Rebind {
        Rebind { map }
    }

    /// Whether every index stays where it is: then no entry changes and no table is walked.
    pub fn is_identity(&self) -> bool {
        self.map.iter().enumerate().all(|(i, (ns, reals))| {
            usize::from(*ns) == i
                && reals
                    .as_ref()
                    .is_none_or(|r| r.iter().enumerate().all(|(j, &x)| usize::from(x) == j))
        })
    }

    /// The new indices of an entry with service `svc` and real server `rs`: [`NO_INDEX`] for
    /// what went, and for an index the old snapshot did not have (an entry already without its
    /// service or server stays without).
    #[inline]
    pub fn apply(&self, svc: u16, rs: u16) -> (u16, u16) {
        match self.map.get(usize::from(svc)) {
            Some((ns, None)) => (*ns, rs),
            Some((ns, Some(reals))) => {
                (*ns, reals.get(usize::from(rs)).copied().unwrap_or(NO_INDEX))
            }
            None => (NO_INDEX, NO_INDEX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_moves_services_and_servers_and_names_what_went() {
        // Service 0 moves to 1 with its servers; service 1 stays and loses its first server;
        // service 2 goes.
        let r = Rebind::new(vec![
            (1, None),
            (1, Some(vec![NO_INDEX, 0, 1])),
            (NO_INDEX, Some(vec![NO_INDEX; 2])),
        ]);
        assert!(!r.is_identity());
        assert_eq!(r.apply(0, 4), (1, 4));
        assert_eq!(r.apply(1, 0), (1, NO_INDEX));
        assert_eq!(r.apply(1, 2), (1, 1));
        assert_eq!(
            r.apply(1, 3),
            (1, NO_INDEX),
            "an index the service did not have"
        );
        assert_eq!(r.apply(2, 1), (NO_INDEX, NO_INDEX));
        assert_eq!(r.apply(NO_INDEX, NO_INDEX), (NO_INDEX, NO_INDEX));
        assert_eq!(r.apply(7, 0), (NO_INDEX, NO_INDEX));
        assert!(Rebind::new(vec![(0, None), (1, Some(vec![0, 1]))]).is_identity());
        assert!(!Rebind::new(vec![(0, Some(vec![1, 0]))]).is_identity());
    }
}
