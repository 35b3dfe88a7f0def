use super::*;
use crate::testkit::datapath_from;
use crate::testkit::flows::{self, bench_config};
use std::collections::HashSet;

/// The records queued for the sync thread, and the resync generations whose end followed them
/// (each checked to come after every record of its resync: nothing may follow it).
fn drain(rx: &crossbeam_channel::Receiver<Export>) -> (Vec<ConnRecord>, Vec<u32>) {
    let (mut recs, mut ends) = (Vec::new(), Vec::new());
    for e in rx.try_iter() {
        match e {
            Export::Records(r) => {
                assert!(ends.is_empty(), "records after a resync's end");
                recs.extend(r);
            }
            Export::ResyncDone(g) => ends.push(g),
        }
    }
    (recs, ends)
}

fn primary(out: Sender<Export>) -> Primary {
    Primary {
        out,
        refresh_ms: 1000,
        log_capacity: 1024,
    }
}

#[test]
fn a_primary_sends_what_it_logs_and_everything_on_a_resync() {
    let (mut a, acks, ack) = flows::established(300, 4096);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut ws = WorkerSync::default();
    ws.set_primary(&mut a, Some(primary(tx)));
    // A refresh period later, ten connections carry a packet: logged, sent at the next round.
    a.tick(1_500);
    let mut buf = crate::packet::VecBuf::from_frame(&ack);
    for f in &acks[..10] {
        buf = flows::send(&mut a, buf, f, &ack);
    }
    ws.housekeeping(&mut a, Ticks(5));
    let (logged, ends) = drain(&rx);
    assert_eq!((logged.len(), ends.len()), (10, 0));
    let clients: HashSet<_> = logged.iter().map(|r| r.client).collect();
    let want: HashSet<_> = (0..10)
        .map(|i| {
            let (a, p) = flows::client(i);
            (a.into(), p)
        })
        .collect();
    assert_eq!(clients, want);
    // A full resync: every connection, once, over as many rounds as the table needs, then its
    // end marker.
    ws.export_all(7);
    let mut rounds = 0;
    while ws.resyncing() {
        ws.housekeeping(&mut a, Ticks(10));
        rounds += 1;
        assert!(rounds < 100);
    }
    let (all, ends) = drain(&rx);
    assert_eq!(ends, [7]);
    let clients: HashSet<_> = all.iter().map(|r| r.client).collect();
    assert_eq!((all.len(), clients.len()), (300, 300));
    let c = a.fwd.sync_counters();
    assert_eq!((c.logged, c.exported, c.export_dropped), (10, 310, 0));
}

#[test]
fn a_full_queue_costs_the_log_batch_and_holds_the_resync() {
    let (mut a, acks, ack) = flows::established(20, 4096);
    let (tx, rx) = crossbeam_channel::bounded(1);
    tx.send(Export::Records(Vec::new())).unwrap(); // the queue is full
    let mut ws = WorkerSync::default();
    ws.set_primary(&mut a, Some(primary(tx)));
    a.tick(1_500);
    let mut buf = crate::packet::VecBuf::from_frame(&ack);
    for f in &acks[..5] {
        buf = flows::send(&mut a, buf, f, &ack);
    }
    ws.export_all(1);
    ws.housekeeping(&mut a, Ticks(5));
    assert!(ws.resyncing(), "the resync waits for room");
    assert_eq!(a.fwd.sync_counters().export_dropped, 5);
    rx.recv().unwrap(); // room again
    ws.housekeeping(&mut a, Ticks(10));
    let (got, ends) = drain(&rx);
    assert_eq!(got.len(), 20, "the whole table after all");
    // The end marker found the queue full again: it waits for room too, and follows.
    assert!(ends.is_empty() && ws.resyncing());
    ws.housekeeping(&mut a, Ticks(15));
    assert_eq!(drain(&rx), (Vec::new(), vec![1]));
    assert!(!ws.resyncing());
    // Stopping ends the resync and the log.
    ws.export_all(2);
    ws.set_primary(&mut a, None);
    assert!(!ws.resyncing() && a.fwd.sync_log().is_none());
}

#[test]
fn a_backup_installs_each_record_into_the_worker_that_owns_it() {
    // The primary (one worker here) and a backup of two workers: each connection must land on the
    // worker its replies reach, the owner of its local port.
    let (mut a, _, _) = flows::established(200, 4096);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut ws = WorkerSync::default();
    ws.set_primary(&mut a, Some(primary(tx)));
    ws.export_all(1);
    while ws.resyncing() {
        ws.housekeeping(&mut a, Ticks(5));
    }
    let (recs, _) = drain(&rx);
    assert_eq!(recs.len(), 200);
    let cfg = bench_config();
    let mut b: Vec<_> = (0..2)
        .map(|w| datapath_from::<crate::packet::VecBuf>(&cfg, w, 2, 4096))
        .collect();
    let others = WorkerSync::install(&mut b[0], 0, recs.clone(), false, Ticks(0), |_| 0);
    assert_eq!(others.len(), 1);
    let (w, theirs) = others.into_iter().next().unwrap();
    assert_eq!(w, 1);
    assert!(WorkerSync::install(&mut b[1], 1, theirs, true, Ticks(0), |_| 0).is_empty());
    for (i, dp) in b.iter().enumerate() {
        let n = dp.fwd.table().len();
        let owned = recs
            .iter()
            .filter(|r| usize::from(r.local.1) % 2 == i)
            .count();
        assert_eq!(n, owned, "worker {i}");
        for (_, c) in dp.fwd.table().iter() {
            let lport = c.reply().unwrap().dport;
            assert_eq!(usize::from(lport) % 2, i);
        }
    }
    let c0 = b[0].fwd.sync_counters();
    assert_eq!(c0.handed_over as usize, b[1].fwd.table().len());
    // Sent again (a refresh), the same records change nothing but their timers.
    WorkerSync::install(&mut b[0], 0, recs, false, Ticks(0), |_| 0);
    assert_eq!(
        b[0].fwd.sync_counters().refreshed as usize,
        b[0].fwd.table().len()
    );
}
