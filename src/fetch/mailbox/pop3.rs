//! POP3 as the fetch loop sees it: a session's fresh messages in batches kept within the
//! session's deletion allowance and the poll's `fetchlimit`, streamed by pipelined RETR; settling
//! records the seen state and sends DELE (committed by the session's QUIT).

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::fetch::delivery::{BATCH, Delivery, Progress};
use crate::fetch::mailbox::Mailbox;
use crate::fetch::pipe::Feeder;
use crate::fetch::state::AccountKey;
use crate::session::pop3::{MessageSink, Pop3Session};

/// What a POP3 poll carries from one session to the next: with `expunge N` each session ends
/// after N deletions (QUIT commits them, fetchmail's guard against losing a long session's
/// deletions to a dropped connection) and the poll reconnects for the rest; a session that
/// flushes messages delivered before (an interrupted run's backlog) ends after that too.
pub(in crate::fetch) struct Pop3Round {
    pub(in crate::fetch) first: bool,
    /// `fetchlimit` left for this poll (counts messages tried, as fetchmail's does).
    pub(in crate::fetch) fetch_budget: Option<u64>,
    /// Deletions allowed in one session (`expunge N`, N > 0).
    pub(in crate::fetch) deletions: Option<usize>,
    /// UIDs whose delivery failed in an earlier session of this poll: not retried until the
    /// next poll.
    pub(in crate::fetch) failed: HashSet<String>,
    /// A session of this poll already ended after flushing messages delivered before: once per
    /// poll, so a server that accepts DELE and QUIT but keeps the messages cannot make the poll
    /// reconnect forever.
    pub(in crate::fetch) backlog_committed: bool,
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

/// A POP3 session's messages as the fetch loop sees them: batches of the fresh messages, kept
/// within the session's deletion allowance (`expunge N`) and the poll's `fetchlimit`; settling
/// marks failures as not to be retried in this poll, commits the seen state and sends the
/// deletions (DELE, committed by the session's QUIT).
pub(in crate::fetch) struct Pop3Mailbox<'a> {
    pub(in crate::fetch) session: &'a mut Pop3Session,
    pub(in crate::fetch) fresh: &'a [u32],
    /// The first fresh message not yet given out.
    pub(in crate::fetch) next: usize,
    pub(in crate::fetch) keep: bool,
    /// Deletions allowed in this session.
    pub(in crate::fetch) allowed: usize,
    /// Deletions sent in this session.
    pub(in crate::fetch) deleted: usize,
    /// Messages are left for another session.
    pub(in crate::fetch) more: bool,
    pub(in crate::fetch) round: &'a mut Pop3Round,
    pub(in crate::fetch) uids: &'a HashMap<u32, String>,
    pub(in crate::fetch) sizes: &'a HashMap<u32, u64>,
    pub(in crate::fetch) d: &'a Delivery<'a>,
    pub(in crate::fetch) key: &'a AccountKey,
    pub(in crate::fetch) account: &'a str,
}

impl Mailbox for Pop3Mailbox<'_> {
    type Key = (u32, String);

    fn next_batch(&mut self, publishing: usize) -> Option<Vec<u32>> {
        if self.next >= self.fresh.len() {
            return None;
        }
        // With `expunge N` a batch never takes the session past N deletions (the batch in
        // flight counts as deleted already).
        let room = if self.keep {
            BATCH
        } else {
            self.allowed
                .saturating_sub(self.deleted + publishing)
                .min(BATCH)
        };
        if room == 0 {
            self.more = true;
            return None;
        }
        let batch = &self.fresh[self.next..self.fresh.len().min(self.next + room)];
        self.next += batch.len();
        if let Some(budget) = self.round.fetch_budget.as_mut() {
            *budget = budget.saturating_sub(batch.len() as u64);
        }
        Some(batch.to_vec())
    }

    fn fetch(&mut self, batch: &[u32], feeder: &Feeder<Self::Key>) -> Result<()> {
        let mut sink = PopSink {
            feeder,
            uids: self.uids,
            sizes: self.sizes,
            progress: &self.d.progress,
        };
        for r in self.session.retr_pipelined(batch, &mut sink)? {
            log::warn!(
                "{}: server refused message {}: {}",
                self.account,
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
            st.pop3_record(self.key, done.iter().map(|(_, u)| u.as_str()))?;
            Ok(())
        })?;
        if !delete || self.keep {
            return Ok(());
        }
        let nums: Vec<u32> = done.iter().map(|(n, _)| *n).collect();
        self.session.dele_many_deferred(&nums)?;
        self.deleted += nums.len();
        Ok(())
    }

    fn connection_lost(&self) -> String {
        format!("{}: connection lost while fetching", self.account)
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
    use std::collections::HashSet;

    use super::Pop3Round;

    fn round(deletions: Option<usize>) -> Pop3Round {
        Pop3Round {
            first: true,
            fetch_budget: None,
            deletions,
            failed: HashSet::new(),
            backlog_committed: false,
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
