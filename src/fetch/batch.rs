//! The fetch loop, written once for POP3 and IMAP: batches are fetched into the delivery pipe,
//! staged, made durable (a Maildir batch on its own thread while the next one streams) and only
//! then settled on the server (seen state committed, confirmed messages deleted or flagged).
//! What differs between the protocols sits behind [`Mailbox`] (`fetch::mailbox`).
//!
//! Ordering rules this loop keeps, whatever the mailbox:
//! - a batch is settled only after the target confirmed it: nothing unconfirmed is settled,
//!   and a message the target failed is never among the settled ones;
//! - the previous (in-flight) batch is settled before anything of the next one;
//! - a batch fetched over a connection that failed is settled without deletions (`delete`
//!   false), and so is the in-flight batch when the next fetch failed; the failure then ends
//!   the loop;
//! - a stop request ends the loop after the in-flight batch is settled.

use std::sync::atomic::Ordering;

use crate::deliver::Maildir;
use crate::error::{Error, ErrorKind, Result};

use super::delivery::{Delivery, PollReport, StagedBatch};
use super::journal::StateKey;
use super::mailbox::Mailbox;
use super::pipe::{self, PipeOptions, Target};

/// How the loop hands messages to the target and names them, besides the mailbox.
pub(super) struct Handling<'a, K> {
    /// The delivery pipe's options (Received header, multidrop, limit, bounce reports).
    pub opts: &'a PipeOptions<'a>,
    /// Where a direct target's confirmations are recorded the moment they happen.
    pub ledger: &'a dyn pipe::Ledger<K>,
    /// "3 of 10": the message as the log lines name it.
    pub label: &'a (dyn Fn(&K) -> String + Sync),
    /// The message's seen-state key (the Maildir batch journal records it).
    pub state_key: &'a dyn Fn(&K) -> StateKey,
}

/// Fetches, delivers and settles the mailbox's batches until it has no more, a stop is
/// requested, or the connection fails (that failure is returned, after the settling it allows).
pub(super) fn deliver_batches<M: Mailbox>(
    mailbox: &mut M,
    d: &Delivery<'_>,
    target: &mut Target,
    handling: &Handling<'_, M::Key>,
    report: &mut PollReport,
    account: &str,
) -> Result<()> {
    let Handling {
        opts,
        ledger,
        label,
        state_key,
    } = *handling;
    std::thread::scope(|scope| -> Result<()> {
        // The previous Maildir batch, made durable on its own thread while this one streams in.
        let mut in_flight: Option<Publishing<'_, M::Key>> = None;
        loop {
            let batch = if d.ctx.stop.load(Ordering::Relaxed) {
                log::info!("{account}: stopping on request");
                None
            } else {
                mailbox.next_batch(in_flight.as_ref().map_or(0, |p| p.batch.len()))
            };
            let fetched = batch.as_ref().map(|batch| {
                pipe::run_batch(target, opts, ledger, |feeder| mailbox.fetch(batch, feeder))
            });
            // The previous batch is settled before anything of this one: its deletions go out
            // first, and only once it is durable (and not over a connection that failed while
            // fetching this batch).
            let link_ok = !matches!(fetched, Some((_, Err(_))));
            if let Some(publishing) = in_flight.take() {
                let (done, prev) = publishing.finish(report);
                mailbox.settle(&prev, done, link_ok)?;
            }
            let (Some(batch), Some((items, fetched))) = (batch, fetched) else {
                break;
            };
            let staged = d.stage(target, items, label, state_key, report);
            match (&mut *target, fetched) {
                (Target::Maildir(m), Ok(())) => {
                    in_flight = Some(Publishing::start(scope, d, m, staged, label, batch));
                }
                (target, fetched) => {
                    let done = match target {
                        Target::Maildir(m) => d.publish(m, staged, label, report),
                        Target::Direct { .. } => staged.done,
                    };
                    mailbox.settle(&batch, done, fetched.is_ok())?;
                    fetched.map_err(|e| e.context(mailbox.connection_lost()))?;
                }
            }
        }
        Ok(())
    })
}

/// A Maildir batch being made durable (synced, journaled, renamed, recorded as seen) on its own
/// thread while the session fetches the next batch: the server streams on instead of idling
/// while the file system commits. Nothing of the batch is deleted on the server before
/// [`Publishing::finish`] returned it as confirmed, so the contract is the same as publishing
/// in line; only the order of work changes.
struct Publishing<'scope, K> {
    handle: std::thread::ScopedJoinHandle<'scope, (Vec<K>, PollReport)>,
    /// The batch's message numbers or UIDs, confirmed or not.
    batch: Vec<u32>,
}

impl<'scope, K: Send + 'scope> Publishing<'scope, K> {
    /// Starts publishing `staged` through a second handle on the same Maildir.
    fn start<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        d: &'scope Delivery<'_>,
        maildir: &Maildir,
        staged: StagedBatch<K>,
        label: &'scope (dyn Fn(&K) -> String + Sync),
        batch: Vec<u32>,
    ) -> Self {
        let mut publisher = maildir.clone();
        let handle = scope.spawn(move || {
            let mut part = PollReport::default();
            let done = d.publish(&mut publisher, staged, label, &mut part);
            (done, part)
        });
        Publishing { handle, batch }
    }

    /// Waits for the batch; returns its confirmed messages and the whole batch, and adds its
    /// outcome to `report`.
    fn finish(self, report: &mut PollReport) -> (Vec<K>, Vec<u32>) {
        let done = match self.handle.join() {
            Ok((done, part)) => {
                report.delivered += part.delivered;
                if let Some(e) = part.error {
                    report.fail(e);
                }
                done
            }
            Err(_) => {
                // Nothing of the batch is confirmed: it stays on the server.
                report.fail(Error::new(
                    ErrorKind::Internal,
                    format!(
                        "the thread publishing {} messages stopped unexpectedly; they stay on the server",
                        self.batch.len()
                    ),
                ));
                Vec::new()
            }
        };
        (done, self.batch)
    }
}

#[cfg(test)]
mod tests {
    //! The loop against an in-memory mailbox and a target that fails on demand: the ordering
    //! rules of the delivery contract, checked without a server.
    use std::io::Read;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::account::Env;
    use crate::deliver::{Deliver, DeliverError, MessageInfo, Receipt};
    use crate::fetch::delivery::PollContext;
    use crate::fetch::pipe::Feeder;
    use crate::fetch::spec::PollSpec;
    use crate::fetch::state::{AccountKey, SeenStore};

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Event {
        /// The mailbox streamed the whole message into the pipe.
        Fetched(u32),
        /// The direct target confirmed the message.
        Confirmed(u32),
        /// The ledger recorded the direct target's confirmation in the seen state.
        Recorded(u32),
        /// The loop settled these messages; `delete` says whether they may leave the server.
        Settled { done: Vec<u32>, delete: bool },
    }

    type Log = Mutex<Vec<Event>>;

    fn push(log: &Log, e: Event) {
        log.lock().unwrap().push(e);
    }

    fn account() -> AccountKey {
        AccountKey::imap("mail.example", "bob")
    }

    fn state_key(uid: &u32) -> StateKey {
        StateKey::Imap {
            account: account(),
            folder: "INBOX".into(),
            uidvalidity: 1,
            uid: *uid,
        }
    }

    fn label(uid: &u32) -> String {
        uid.to_string()
    }

    fn message(uid: u32) -> Vec<u8> {
        format!("Subject: {uid}\r\n\r\nbody of {uid}\r\n").into_bytes()
    }

    /// The uid in a delivered message's Subject line (a Received header may come first).
    fn uid_of(text: &str) -> Option<u32> {
        text.lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .and_then(|n| n.trim().parse().ok())
    }

    /// A server's folder held in memory. `cut_at`: the connection drops while that message
    /// streams. `stop_after`: the stop flag is raised once that many batches were fetched.
    struct Memory<'a> {
        uids: Vec<u32>,
        per_batch: usize,
        next: usize,
        cut_at: Option<u32>,
        stop_after: Option<(usize, &'a AtomicBool)>,
        batches: usize,
        log: &'a Log,
        state: &'a Mutex<SeenStore>,
        /// The Maildir whose `new/` must hold every settled message.
        maildir: Option<PathBuf>,
        settled: usize,
    }

    impl Mailbox for Memory<'_> {
        type Key = u32;

        fn next_batch(&mut self, _publishing: usize) -> Option<Vec<u32>> {
            let end = self.uids.len().min(self.next + self.per_batch);
            let batch = self.uids[self.next..end].to_vec();
            self.next = end;
            (!batch.is_empty()).then_some(batch)
        }

        fn fetch(&mut self, batch: &[u32], feeder: &Feeder<u32>) -> Result<()> {
            self.batches += 1;
            if let Some((n, stop)) = self.stop_after
                && n == self.batches
            {
                stop.store(true, Ordering::Relaxed);
            }
            for &uid in batch {
                let body = message(uid);
                feeder.start(uid, Some(body.len() as u64))?;
                if self.cut_at == Some(uid) {
                    feeder.data(&body[..5])?;
                    return Err(Error::new(ErrorKind::NetworkIo, "connection reset"));
                }
                feeder.data(&body)?;
                feeder.end()?;
                push(self.log, Event::Fetched(uid));
            }
            Ok(())
        }

        fn settle(&mut self, _batch: &[u32], done: Vec<u32>, delete: bool) -> Result<()> {
            // Whatever is settled is recorded as seen and, for a Maildir, durable in new/.
            let st = self.state.lock().unwrap();
            for uid in &done {
                assert!(
                    st.imap_is_seen(&account(), "INBOX", 1, *uid),
                    "message {uid} settled before it was recorded as seen"
                );
            }
            self.settled += done.len();
            if let Some(md) = &self.maildir {
                let durable = std::fs::read_dir(md.join("new")).unwrap().count();
                assert_eq!(durable, self.settled, "settled messages not all in new/");
            }
            push(self.log, Event::Settled { done, delete });
            Ok(())
        }

        fn connection_lost(&self) -> String {
            "connection lost while fetching".into()
        }
    }

    /// A direct target (an MDA, say) that fails the messages `fails` picks.
    struct Picky {
        fails: fn(u32) -> bool,
        log: std::sync::Arc<Log>,
    }

    impl Deliver for Picky {
        fn deliver(
            &mut self,
            msg: &mut dyn Read,
            _info: &MessageInfo,
        ) -> std::result::Result<Receipt, DeliverError> {
            let mut text = String::new();
            msg.read_to_string(&mut text)
                .map_err(|e| DeliverError::transient(e.to_string()))?;
            let Some(uid) = uid_of(&text) else {
                return Err(DeliverError::transient("a truncated message"));
            };
            if (self.fails)(uid) {
                return Err(DeliverError::transient("disk full"));
            }
            push(&self.log, Event::Confirmed(uid));
            Ok(Receipt {
                location: "picky".into(),
                path: None,
                bytes: text.len() as u64,
            })
        }
    }

    /// Records a direct target's confirmations in the seen state, as the poll's ledger does.
    struct Recording<'a> {
        state: &'a Mutex<SeenStore>,
        log: &'a Log,
    }

    impl pipe::Ledger<u32> for Recording<'_> {
        fn delivered(&self, uid: &u32) {
            state_key(uid)
                .delivered(&mut self.state.lock().unwrap())
                .unwrap();
            push(self.log, Event::Recorded(*uid));
        }
        fn served(&self, _: &u32, _: &[String]) {}
        fn served_before(&self, _: &u32) -> Vec<String> {
            Vec::new()
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("postie-batch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn spec() -> PollSpec {
        let rc = crate::config::fetchmailrc::parse_fetchmailrc(
            "poll mail.example proto imap user bob password b\n",
            Path::new("/rc"),
        )
        .unwrap();
        crate::fetch::spec::from_fetchmailrc(&rc, &env())
            .unwrap()
            .remove(0)
    }

    fn env() -> Env {
        Env {
            user: Some("bob".into()),
            ..Env::default()
        }
    }

    /// How a run is set up: the folder, the batch size, the target and the faults.
    struct Run<'a> {
        name: &'a str,
        uids: Vec<u32>,
        per_batch: usize,
        /// `None`: a Maildir target.
        fails: Option<fn(u32) -> bool>,
        cut_at: Option<u32>,
        stop_after: Option<usize>,
    }

    /// Runs the loop; returns its result, the events in order and the report.
    fn run(r: Run<'_>) -> (Result<()>, Vec<Event>, PollReport) {
        let dir = tempdir(r.name);
        let mut store = SeenStore::open(dir.join("state")).unwrap();
        let _ = store.imap_select(&account(), "INBOX", 1);
        let state = Mutex::new(store);
        let stop = AtomicBool::new(false);
        let env = env();
        let spec = spec();
        let ctx = PollContext {
            env: &env,
            state: &state,
            check_only: false,
            stop: &stop,
            allow_plaintext: false,
        };
        let d = Delivery::new(&spec, &ctx, None);
        let log = std::sync::Arc::new(Log::default());
        let maildir = dir.join("Maildir");
        let mut target = match r.fails {
            Some(fails) => Target::Direct {
                deliver: Box::new(Picky {
                    fails,
                    log: log.clone(),
                }),
                description: "picky".into(),
            },
            None => Target::Maildir(crate::deliver::Maildir::open(&maildir).unwrap()),
        };
        let mut mailbox = Memory {
            uids: r.uids,
            per_batch: r.per_batch,
            next: 0,
            cut_at: r.cut_at,
            stop_after: r.stop_after.map(|n| (n, &stop)),
            batches: 0,
            log: &log,
            state: &state,
            maildir: r.fails.is_none().then_some(maildir),
            settled: 0,
        };
        let header = |_: Option<&super::super::multidrop::Sorted>| String::new();
        let opts = d.pipe_options(&header, None);
        let ledger = Recording {
            state: &state,
            log: &log,
        };
        let mut report = PollReport::default();
        let result = deliver_batches(
            &mut mailbox,
            &d,
            &mut target,
            &Handling {
                opts: &opts,
                ledger: &ledger,
                label: &label,
                state_key: &state_key,
            },
            &mut report,
            "account test",
        );
        drop(target);
        let _ = std::fs::remove_dir_all(&dir);
        let events = log.lock().unwrap().clone();
        (result, events, report)
    }

    fn settled(events: &[Event]) -> Vec<(Vec<u32>, bool)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Settled { done, delete } => Some((done.clone(), *delete)),
                _ => None,
            })
            .collect()
    }

    fn position(events: &[Event], e: &Event) -> usize {
        events.iter().position(|x| x == e).unwrap()
    }

    /// Every settled message was confirmed and recorded before the settling.
    fn confirmed_before_settled(events: &[Event]) {
        for (i, e) in events.iter().enumerate() {
            if let Event::Settled { done, .. } = e {
                for uid in done {
                    assert!(position(events, &Event::Confirmed(*uid)) < i, "{events:?}");
                    assert!(position(events, &Event::Recorded(*uid)) < i, "{events:?}");
                }
            }
        }
    }

    #[test]
    fn a_message_the_target_fails_is_never_settled_and_the_others_are() {
        let (result, events, report) = run(Run {
            name: "fail-one",
            uids: (1..=7).collect(),
            per_batch: 3,
            fails: Some(|uid| uid == 5),
            cut_at: None,
            stop_after: None,
        });
        result.unwrap();
        assert_eq!(
            settled(&events),
            [(vec![1, 2, 3], true), (vec![4, 6], true), (vec![7], true)]
        );
        confirmed_before_settled(&events);
        assert_eq!(report.delivered, 6);
        let err = report.error.expect("the failure is reported").chain();
        assert!(err.contains("message 5 not delivered"), "{err}");
    }

    #[test]
    fn once_the_target_fails_from_message_k_on_nothing_from_k_on_is_settled() {
        let (result, events, report) = run(Run {
            name: "fail-from",
            uids: (1..=8).collect(),
            per_batch: 3,
            fails: Some(|uid| uid >= 5),
            cut_at: None,
            stop_after: None,
        });
        result.unwrap();
        let all: Vec<u32> = settled(&events).into_iter().flat_map(|(d, _)| d).collect();
        assert_eq!(all, [1, 2, 3, 4]);
        confirmed_before_settled(&events);
        assert_eq!(report.delivered, 4);
    }

    #[test]
    fn a_connection_cut_deletes_nothing_of_its_batch_and_fetches_no_more() {
        let (result, events, _) = run(Run {
            name: "cut",
            uids: (1..=9).collect(),
            per_batch: 3,
            fails: Some(|_| false),
            cut_at: Some(5),
            stop_after: None,
        });
        let err = result.unwrap_err().chain();
        assert!(err.contains("connection lost while fetching"), "{err}");
        // Message 4 was confirmed and is recorded as seen, but not deleted over a broken link;
        // the cut message 5 was never confirmed; nothing after the cut was fetched.
        assert_eq!(settled(&events), [(vec![1, 2, 3], true), (vec![4], false)]);
        confirmed_before_settled(&events);
        assert!(!events.contains(&Event::Confirmed(5)), "{events:?}");
        assert!(!events.contains(&Event::Fetched(6)), "{events:?}");
    }

    #[test]
    fn maildir_batches_are_settled_in_order_once_durable() {
        let (result, events, report) = run(Run {
            name: "maildir",
            uids: (1..=7).collect(),
            per_batch: 3,
            fails: None,
            cut_at: None,
            stop_after: None,
        });
        result.unwrap();
        // Memory::settle checked that each settled message was in new/ and seen.
        assert_eq!(
            settled(&events),
            [
                (vec![1, 2, 3], true),
                (vec![4, 5, 6], true),
                (vec![7], true)
            ]
        );
        // The first batch is made durable while the second streams, and settled before it.
        let first = Event::Settled {
            done: vec![1, 2, 3],
            delete: true,
        };
        assert!(position(&events, &Event::Fetched(4)) < position(&events, &first));
        assert_eq!(report.delivered, 7);
        assert!(report.error.is_none());
    }

    #[test]
    fn a_cut_while_a_maildir_batch_publishes_keeps_that_batch_on_the_server() {
        let (result, events, report) = run(Run {
            name: "maildir-cut",
            uids: (1..=9).collect(),
            per_batch: 3,
            fails: None,
            cut_at: Some(5),
            stop_after: None,
        });
        assert!(result.is_err());
        // Batch 1 is durable and seen but its deletion would go over the broken connection;
        // of batch 2 only message 4 was whole.
        assert_eq!(settled(&events), [(vec![1, 2, 3], false), (vec![4], false)]);
        assert_eq!(report.delivered, 4);
    }

    #[test]
    fn a_stop_request_settles_the_batch_in_flight_and_fetches_no_more() {
        for fails in [None, Some((|_| false) as fn(u32) -> bool)] {
            let (result, events, _) = run(Run {
                name: "stop",
                uids: (1..=9).collect(),
                per_batch: 3,
                fails,
                cut_at: None,
                stop_after: Some(1),
            });
            result.unwrap();
            assert_eq!(settled(&events), [(vec![1, 2, 3], true)], "{fails:?}");
            assert!(!events.contains(&Event::Fetched(4)), "{events:?}");
        }
    }

    #[test]
    fn a_kill_at_any_point_delivers_again_at_most_the_message_in_flight() {
        // A direct target's confirmation is recorded as seen before the target takes the next
        // message: a kill between any two events leaves at most one message confirmed but not
        // recorded (fetched again by the next poll), never two.
        let (result, events, _) = run(Run {
            name: "crash-points",
            uids: (1..=10).collect(),
            per_batch: 4,
            fails: Some(|uid| uid == 3),
            cut_at: None,
            stop_after: None,
        });
        result.unwrap();
        let mut unrecorded: Vec<u32> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            match e {
                Event::Confirmed(uid) => unrecorded.push(*uid),
                Event::Recorded(uid) => unrecorded.retain(|u| u != uid),
                _ => {}
            }
            assert!(
                unrecorded.len() <= 1,
                "a kill after event {i} would deliver {unrecorded:?} again: {events:?}"
            );
        }
        assert!(unrecorded.is_empty(), "{events:?}");
        let confirmed = events
            .iter()
            .filter(|e| matches!(e, Event::Confirmed(_)))
            .count();
        assert_eq!(confirmed, 9);
    }

    #[test]
    fn the_failed_messages_of_a_batch_never_reach_settle() {
        // Every message fails: each batch settles with nothing done.
        let (result, events, report) = run(Run {
            name: "fail-all",
            uids: (1..=4).collect(),
            per_batch: 2,
            fails: Some(|_| true),
            cut_at: None,
            stop_after: None,
        });
        result.unwrap();
        assert_eq!(settled(&events), [(vec![], true), (vec![], true)]);
        assert_eq!(report.delivered, 0);
    }
}
