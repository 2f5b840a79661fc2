//! POP3 as the fetch sequence sees it: a session's listing (UIDL, LIST) sorted against the seen
//! state, the early deletions (DELE), batches kept within the session's deletion allowance,
//! streamed by pipelined RETR; settling records the seen state and sends DELE, and finishing
//! QUITs, which commits the deletions.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::Result;
use crate::fetch::delivery::{BATCH, Delivery, Progress};
use crate::fetch::journal::StateKey;
use crate::fetch::mailbox::{Listing, Mailbox};
use crate::fetch::pipe::Feeder;
use crate::fetch::state::AccountKey;
use crate::session::pop3::{MessageSink, Pop3Session};

/// How long the last session of a POP3 poll waits for the server's answer to QUIT, which comes
/// only once the server has deleted the messages (half of a 1000-message poll's time with
/// Dovecot). Not at all: see [`Pop3Session::quit_within`].
const QUIT_WAIT: Duration = Duration::ZERO;

/// What a POP3 poll carries from one session to the next: with `expunge N` each session ends
/// after N deletions (QUIT commits them, fetchmail's guard against losing a long session's
/// deletions to a dropped connection) and the poll reconnects for the rest; a session that
/// flushes messages delivered before (an interrupted run's backlog) ends after that too.
#[derive(Debug, Default)]
pub(in crate::fetch) struct Pop3Round {
    /// Sessions of this poll so far.
    pub(in crate::fetch) sessions: usize,
    /// Deletions allowed in one session (`expunge N`, N > 0).
    pub(in crate::fetch) deletions: Option<usize>,
    /// UIDs whose delivery failed in an earlier session of this poll: not retried until the
    /// next poll.
    pub(in crate::fetch) failed: HashSet<String>,
    /// A session of this poll already ended after flushing messages delivered before: once per
    /// poll, so a server that accepts DELE and QUIT but keeps the messages cannot make the poll
    /// reconnect forever.
    pub(in crate::fetch) backlog_committed: bool,
    /// The last session left messages for another one.
    pub(in crate::fetch) more: bool,
    /// Deletions the last session sent (committed by its QUIT).
    pub(in crate::fetch) deleted: usize,
}

impl Pop3Round {
    /// Cuts this session's work down to what it may do: `early` (deletions before any fetch:
    /// the backlog of messages delivered before, and with `limitflush` the oversized ones) and
    /// `fresh` (the messages to fetch). Returns whether messages are left for another session.
    pub(in crate::fetch) fn plan(&mut self, early: &mut Vec<u32>, fresh: &mut Vec<u32>) -> bool {
        let allowed = self.deletions.unwrap_or(usize::MAX);
        if early.len() > allowed {
            // The rest of them first, in the next session; nothing is fetched in this one (with
            // `keep` it would be "delivered before" there and flushed too early).
            early.truncate(allowed);
            fresh.clear();
            return true;
        }
        if !early.is_empty() && !fresh.is_empty() && !self.backlog_committed {
            // POP3 deletes only at QUIT, so a session cut before it (a kill, a lost connection)
            // leaves every message it delivered on the server, and the next session would
            // re-delete them together with its own: each interrupted session adds to that
            // backlog. Committed here on its own (DELE, QUIT, a new session for the new mail),
            // the work an interrupted run did is never done twice and never holds back the next
            // message.
            fresh.clear();
            self.backlog_committed = true;
            return true;
        }
        false
    }
}

/// A POP3 session's messages as the fetch sequence sees them; the session ends (QUIT) with
/// [`Mailbox::finish`]. What it leaves for another session and what it deleted is in `round`.
pub(in crate::fetch) struct Pop3Mailbox<'a> {
    session: Pop3Session,
    round: &'a mut Pop3Round,
    d: &'a Delivery<'a>,
    key: AccountKey,
    keep: bool,
    /// The listing: each message number's UID and size.
    uids: HashMap<u32, String>,
    sizes: HashMap<u32, u64>,
}

impl<'a> Pop3Mailbox<'a> {
    /// A new session of `round`, logged in as `key`.
    pub(in crate::fetch) fn new(
        session: Pop3Session,
        round: &'a mut Pop3Round,
        d: &'a Delivery<'a>,
        key: AccountKey,
    ) -> Self {
        round.sessions += 1;
        round.more = false;
        round.deleted = 0;
        Pop3Mailbox {
            session,
            round,
            keep: d.spec.fetch.keep(),
            d,
            key,
            uids: HashMap::new(),
            sizes: HashMap::new(),
        }
    }
}

impl Mailbox for Pop3Mailbox<'_> {
    type Key = (u32, String);

    fn list(&mut self, fetchall: bool) -> Result<Listing> {
        let uidl = self.session.uidl_all()?;
        self.sizes = self.session.list_all()?.into_iter().collect();
        let on_server: HashSet<&str> = uidl.iter().map(|(_, u)| u.as_str()).collect();
        let mut listing = Listing {
            total: uidl.len(),
            octets: Some(self.sizes.values().sum()),
            counted_before: self.round.sessions > 1,
            ..Listing::default()
        };
        {
            let mut st = self.d.state()?;
            st.pop3_retain(&self.key, |u| on_server.contains(u));
            for (n, uid) in &uidl {
                if !fetchall && st.pop3_is_seen(&self.key, uid) {
                    listing.old.push(*n);
                } else if !self.round.failed.contains(uid) {
                    listing.fresh.push(*n);
                }
            }
        }
        self.uids = uidl.into_iter().collect();
        Ok(listing)
    }

    fn sizes(&mut self, ids: &[u32]) -> Result<HashMap<u32, u64>> {
        Ok(ids
            .iter()
            .filter_map(|n| Some((*n, *self.sizes.get(n)?)))
            .collect())
    }

    fn plan(&mut self, early: &mut Vec<u32>, fresh: &mut Vec<u32>) {
        self.round.more = self.round.plan(early, fresh);
    }

    fn flush(&mut self, early: &[u32]) -> Result<()> {
        if !early.is_empty() {
            self.session.dele_many(early)?;
        }
        self.round.deleted += early.len();
        Ok(())
    }

    fn batch_room(&mut self, publishing: usize) -> usize {
        if self.keep {
            return BATCH;
        }
        // With `expunge N` a batch never takes the session past N deletions (the batch in
        // flight counts as deleted already).
        let allowed = self.round.deletions.unwrap_or(usize::MAX);
        let room = allowed
            .saturating_sub(self.round.deleted + publishing)
            .min(BATCH);
        if room == 0 {
            self.round.more = true;
        }
        room
    }

    fn fetch(&mut self, batch: &[u32], _next: &[u32], feeder: &Feeder<Self::Key>) -> Result<()> {
        let mut sink = PopSink {
            feeder,
            uids: &self.uids,
            sizes: &self.sizes,
            progress: &self.d.progress,
        };
        for r in self.session.retr_pipelined(batch, &mut sink)? {
            log::warn!(
                "{}: server refused message {}: {}",
                self.d.account,
                r.msgno,
                r.error.chain()
            );
        }
        Ok(())
    }

    fn settle(&mut self, batch: &[u32], done: Vec<Self::Key>, delete: bool) -> Result<()> {
        for n in batch {
            if !done.iter().any(|(d, _)| d == n)
                && let Some(uid) = self.uids.get(n)
            {
                self.round.failed.insert(uid.clone());
            }
        }
        self.d.commit(|st| {
            st.pop3_record(&self.key, done.iter().map(|(_, u)| u.as_str()))?;
            Ok(())
        })?;
        if !delete || self.keep {
            return Ok(());
        }
        let nums: Vec<u32> = done.iter().map(|(n, _)| *n).collect();
        self.session.dele_many_deferred(&nums)?;
        self.round.deleted += nums.len();
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let account = &self.d.account;
        // Every DELE went out after its message's seen state was durable, so a QUIT the server
        // never acts on costs nothing: the next poll deletes those messages without fetching
        // them. The reply is awaited when this poll goes on with another session (which would
        // find the messages still being deleted), without the seen state (`fetchall`), and
        // where the run wants it (PollSpec::quit_unanswered: a daemon, a shared server).
        // A stop request leaves nothing for another session.
        let more = self.round.more && !self.d.ctx.stop.load(Ordering::Relaxed);
        let spec = self.d.spec;
        let quit_wait =
            (spec.quit_unanswered && !more && !spec.fetch.fetchall()).then_some(QUIT_WAIT);
        self.session
            .quit_within(quit_wait)
            .map(|_| ())
            .map_err(|e| {
                e.context(format!(
                    "{account}: QUIT failed; deletions may not have happened"
                ))
            })
    }

    fn id(key: &Self::Key) -> u32 {
        key.0
    }

    fn state_key(&self) -> impl Fn(&Self::Key) -> StateKey + Send + Sync + 'static {
        let account = self.key.clone();
        move |k| StateKey::Pop3 {
            account: account.clone(),
            uid: k.1.clone(),
        }
    }

    fn fetch_failed(&self) -> String {
        format!("{}: connection lost while fetching", self.d.account)
    }
}

pub(in crate::fetch) struct PopSink<'a> {
    pub(in crate::fetch) feeder: &'a Feeder<(u32, String)>,
    pub(in crate::fetch) uids: &'a HashMap<u32, String>,
    pub(in crate::fetch) sizes: &'a HashMap<u32, u64>,
    pub(in crate::fetch) progress: &'a Progress,
}

impl MessageSink for PopSink<'_> {
    fn start(&mut self, msgno: u32) -> Result<()> {
        let uid = self.uids.get(&msgno).cloned().unwrap_or_default();
        let size = self.sizes.get(&msgno).copied();
        self.feeder.start((msgno, uid), size)
    }
    fn data(&mut self, chunk: &[u8]) -> Result<()> {
        self.feeder.data(chunk)
    }
    fn end(&mut self, _msgno: u32, _octets: u64) -> Result<()> {
        self.progress.fetched();
        self.feeder.end()
    }
}

#[cfg(test)]
mod tests {
    use super::Pop3Round;

    fn round(deletions: Option<usize>) -> Pop3Round {
        Pop3Round {
            deletions,
            ..Pop3Round::default()
        }
    }

    #[test]
    fn the_backlog_is_committed_in_a_session_of_its_own_before_new_mail() {
        let mut r = round(None);
        let (mut early, mut fresh) = (vec![1, 2], vec![3, 4]);
        assert!(
            r.plan(&mut early, &mut fresh),
            "new mail waits for the next session"
        );
        assert_eq!((early, fresh), (vec![1, 2], vec![]));
        // The next session (the server kept the backlog): once per poll, so it fetches now.
        let (mut early, mut fresh) = (vec![1, 2], vec![3, 4]);
        assert!(!r.plan(&mut early, &mut fresh));
        assert_eq!((early, fresh), (vec![1, 2], vec![3, 4]));
    }

    #[test]
    fn without_a_backlog_or_new_mail_the_session_does_both_at_once() {
        let mut r = round(None);
        let (mut early, mut fresh) = (vec![], vec![3, 4]);
        assert!(!r.plan(&mut early, &mut fresh));
        assert_eq!(fresh, [3, 4]);
        let (mut early, mut fresh) = (vec![1], vec![]);
        assert!(!r.plan(&mut early, &mut fresh));
        assert_eq!(early, [1]);
        assert!(!r.backlog_committed);
    }

    #[test]
    fn a_backlog_over_the_deletion_allowance_is_spread_over_sessions_fetching_nothing() {
        let mut r = round(Some(2));
        let (mut early, mut fresh) = (vec![1, 2, 3], vec![4]);
        assert!(r.plan(&mut early, &mut fresh));
        assert_eq!((early, fresh), (vec![1, 2], vec![]));
    }
}
