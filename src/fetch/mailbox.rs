//! What the fetch loop ([`crate::fetch::batch`]) needs of a protocol: the [`Mailbox`] trait and
//! its POP3 and IMAP implementations.

pub mod imap;
pub mod pop3;

use crate::error::Result;
use crate::fetch::pipe::Feeder;

/// One mailbox of one session, as the fetch loop drives it. The message ids of a batch are the
/// protocol's (POP3 message numbers, IMAP UIDs); `Key` is what the delivery pipe and the seen
/// state know a message by.
pub trait Mailbox {
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
