//! IMAP as the fetch loop sees it: a folder's fresh UIDs in batches, streamed by UID FETCH;
//! settling records the seen state and flags (`keep`) or deletes the confirmed messages, the
//! EXPUNGEs paced by `expunge N`.

use crate::error::Result;
use crate::fetch::delivery::{Delivery, Progress};
use crate::fetch::mailbox::Mailbox;
use crate::fetch::pipe::Feeder;
use crate::fetch::state::AccountKey;
use crate::session::imap::{FetchSink, FetchedMeta, ImapSession};

/// An IMAP folder's messages as the fetch loop sees them: the fresh UIDs in batches of
/// [`BATCH`](crate::fetch::poll::BATCH); settling commits the seen state and flags (`keep`) or deletes the confirmed
/// messages, the deletions paced by the [`Expunger`].
pub(in crate::fetch) struct ImapMailbox<'a> {
    pub(in crate::fetch) session: &'a mut ImapSession,
    pub(in crate::fetch) batches: std::slice::Chunks<'a, u32>,
    pub(in crate::fetch) expunger: Expunger,
    pub(in crate::fetch) keep: bool,
    pub(in crate::fetch) d: &'a Delivery<'a>,
    pub(in crate::fetch) key: &'a AccountKey,
    pub(in crate::fetch) folder: &'a str,
    pub(in crate::fetch) validity: u32,
    pub(in crate::fetch) account: &'a str,
}

impl Mailbox for ImapMailbox<'_> {
    type Key = u32;

    fn next_batch(&mut self, _publishing: usize) -> Option<Vec<u32>> {
        self.batches.next().map(<[u32]>::to_vec)
    }

    fn fetch(&mut self, batch: &[u32], feeder: &Feeder<u32>) -> Result<()> {
        let mut sink = ImapSink {
            feeder,
            progress: &self.d.progress,
        };
        self.session.fetch_bodies(batch, &mut sink).map(|_| ())
    }

    fn settle(&mut self, _batch: &[u32], done: Vec<u32>, delete: bool) -> Result<()> {
        self.d.commit(|st| {
            st.imap_record(self.key, self.folder, self.validity, done.iter().copied());
            Ok(())
        })?;
        if !delete || done.is_empty() {
            Ok(())
        } else if self.keep {
            self.session.store_flags(&done, &["\\Seen"])
        } else {
            self.expunger.delete(self.session, &done)
        }
    }

    fn connection_lost(&self) -> String {
        format!(
            "{}: connection lost while fetching from {}",
            self.account, self.folder
        )
    }
}

pub(in crate::fetch) struct ImapSink<'a> {
    pub(in crate::fetch) feeder: &'a Feeder<u32>,
    pub(in crate::fetch) progress: &'a Progress,
}

impl FetchSink for ImapSink<'_> {
    fn start(&mut self, meta: &FetchedMeta) -> Result<()> {
        self.feeder.start(meta.uid, meta.size)
    }
    fn data(&mut self, chunk: &[u8]) -> Result<()> {
        self.feeder.data(chunk)
    }
    fn end(&mut self, _meta: &FetchedMeta, _octets: u64) -> Result<()> {
        self.progress.fetched();
        self.feeder.end()
    }
}

/// IMAP deletions (`\Seen \Deleted`, then EXPUNGE) paced by fetchmail's `expunge N`: EXPUNGE
/// after every N deletions, 0 only when the folder is done; rfetch's default (`None`) is one
/// EXPUNGE per call, i.e. per batch, deferred (see [`ImapSession::expunge_deferred`]).
pub(in crate::fetch) struct Expunger {
    pub(in crate::fetch) every: Option<u64>,
    /// Marked \Deleted, not yet expunged.
    pub(in crate::fetch) pending: Vec<u32>,
}

impl Expunger {
    pub(in crate::fetch) fn delete(&mut self, s: &mut ImapSession, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let every = match self.every {
            None => {
                // The EXPUNGE goes out with the next batch's UID FETCH (UID commands on other
                // messages do not depend on it); the session reads its completion on the way.
                s.store_flags(uids, &["\\Seen", "\\Deleted"])?;
                return s.expunge_deferred(uids);
            }
            Some(0) => {
                s.store_flags(uids, &["\\Seen", "\\Deleted"])?;
                self.pending.extend_from_slice(uids);
                return Ok(());
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let mut rest = uids;
        while !rest.is_empty() {
            let room = every.saturating_sub(self.pending.len()).max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            s.store_flags(now, &["\\Seen", "\\Deleted"])?;
            self.pending.extend_from_slice(now);
            if self.pending.len() >= every {
                self.finish(s)?;
            }
            rest = later;
        }
        Ok(())
    }

    /// EXPUNGE whatever is marked and pending.
    pub(in crate::fetch) fn finish(&mut self, s: &mut ImapSession) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let uids = std::mem::take(&mut self.pending);
        s.expunge(&uids)
    }
}
