//! The fetch loop, written once for POP3 and IMAP: batches are fetched into the delivery pipe,
//! staged, made durable (a Maildir batch on its own thread while the next one streams) and only
//! then settled on the server (seen state committed, confirmed messages deleted or flagged).
//! What differs between the protocols sits behind [`Mailbox`].
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

use super::journal::StateKey;
use super::pipe::{self, Feeder, PipeOptions, Target};
use super::poll::{Delivery, PollReport, StagedBatch};

/// One mailbox of one session, as the fetch loop drives it. The message ids of a batch are the
/// protocol's (POP3 message numbers, IMAP UIDs); `Key` is what the delivery pipe and the seen
/// state know a message by.
pub(super) trait Mailbox {
    type Key: Send;

    /// The ids of the next batch to fetch, or `None` when there is nothing more for this
    /// session. `publishing` messages of an earlier batch are being made durable and are not
    /// settled yet (they count against a session's deletion allowance).
    fn next_batch(&mut self, publishing: usize) -> Option<Vec<u32>>;

    /// Streams the batch's messages into `feeder`, one `start`/`data`/`end` per message.
    fn fetch(&mut self, batch: &[u32], feeder: &Feeder<Self::Key>) -> Result<()>;

    /// Records `done` (the batch's confirmed messages) as seen, durably, and, when `delete`
    /// (the connection is still good), deletes or flags them on the server as the account says.
    fn settle(&mut self, batch: &[u32], done: Vec<Self::Key>, delete: bool) -> Result<()>;

    /// The context of a connection lost while fetching.
    fn connection_lost(&self) -> String;
}

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
