//! What the fetch sequence ([`crate::fetch::batch`]) needs of a protocol: the [`Mailbox`] trait,
//! the [`Listing`] it starts from, and its POP3 and IMAP implementations.

pub mod imap;
pub mod pop3;

use std::collections::HashMap;

use crate::error::Result;
use crate::fetch::journal::StateKey;
use crate::fetch::pipe::Feeder;

/// One mailbox of one session (a POP3 session, an IMAP folder), as the fetch sequence drives
/// it: list, flush, fetch and settle batches, finish. The message ids are the protocol's (POP3
/// message numbers, IMAP UIDs); `Key` is what the delivery pipe and the seen state know a
/// message by.
pub trait Mailbox {
    type Key: Send + Sync;

    /// Lists the mailbox and sorts its messages against the seen state (forgetting what the
    /// server no longer has): seen before (`old`) or to fetch (`fresh`, all of them with
    /// `fetchall`).
    fn list(&mut self, fetchall: bool) -> Result<Listing>;

    /// The sizes of `ids` the server announces (asked only when a size limit is set, before any
    /// body is fetched).
    fn sizes(&mut self, ids: &[u32]) -> Result<HashMap<u32, u64>>;

    /// Cuts this session's work down to what it may do before it must end: `early` (deletions
    /// before any fetch) and `fresh` (messages to fetch). Only POP3, which deletes at QUIT,
    /// cuts anything (see `Pop3Round::plan`).
    fn plan(&mut self, _early: &mut Vec<u32>, _fresh: &mut Vec<u32>) {}

    /// Deletes `early` (messages delivered before, and with `limitflush` the oversized ones) on
    /// the server, before anything is fetched.
    fn flush(&mut self, early: &[u32]) -> Result<()>;

    /// How many messages the next batch may take, 0 when this session may fetch no more.
    /// `publishing` messages of an earlier batch are being made durable and are not settled
    /// yet (they count against a session's deletion allowance).
    fn batch_room(&mut self, publishing: usize) -> usize;

    /// Streams the batch's messages into `feeder`, one `start`/`data`/`end` per message.
    /// `next` is the batch the following call will most likely ask for (empty after the last):
    /// a protocol may ask the server for it now, so the server streams on while this batch is
    /// settled.
    fn fetch(&mut self, batch: &[u32], next: &[u32], feeder: &Feeder<Self::Key>) -> Result<()>;

    /// Records `done` (the batch's confirmed messages) as seen, durably, and, when `delete`
    /// (the connection is still good), deletes or flags them on the server as the account says.
    fn settle(&mut self, batch: &[u32], done: Vec<Self::Key>, delete: bool) -> Result<()>;

    /// Ends the mailbox's work on the server once every batch is settled: POP3 QUITs (which
    /// commits its deletions), IMAP expunges what is pending and reads the replies of the
    /// deferred deletions.
    fn finish(self) -> Result<()>;

    /// The message id a key stands for.
    fn id(key: &Self::Key) -> u32;

    /// The seen-state key of a message (what the Maildir batch journal and the ledger record).
    fn state_key(&self) -> impl Fn(&Self::Key) -> StateKey + Send + Sync + 'static;

    /// The context of a fetch that failed: a connection lost, or (the session still usable) a
    /// command the server refused, such as a deferred deletion read while the batch streamed.
    fn fetch_failed(&self) -> String;
}

/// What [`Mailbox::list`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Messages on the server.
    pub total: usize,
    /// Their octets, when the listing says (POP3 LIST).
    pub octets: Option<u64>,
    /// Seen before, in server order.
    pub old: Vec<u32>,
    /// To fetch, in server order.
    pub fresh: Vec<u32>,
    /// Each id's place in the listing (1-based), where it is not the id itself (IMAP UIDs).
    pub position: Option<HashMap<u32, usize>>,
    /// The IMAP folder, for the log lines.
    pub folder: Option<String>,
    /// An earlier session of this poll listed (and counted as waiting) the same messages.
    pub counted_before: bool,
}

impl Listing {
    /// The message as the log lines name it: "3 of 10".
    pub fn label(&self, id: u32) -> String {
        let n = match &self.position {
            Some(p) => p.get(&id).copied().unwrap_or(0),
            None => id as usize,
        };
        format!("{n} of {}", self.total)
    }

    /// " folder INBOX" for an IMAP folder, "" for POP3.
    pub fn in_folder(&self) -> String {
        self.folder
            .as_ref()
            .map_or_else(String::new, |f| format!(" folder {f}"))
    }
}
