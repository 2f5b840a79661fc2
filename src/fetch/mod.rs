//! rfetch's job: mailboxes (POP3, IMAP), per-message seen state, the poll loop and the daemon.

pub mod batch;
pub mod bounce;
pub mod daemon;
pub mod delivery;
pub mod hooks;
pub mod instance;
pub mod journal;
pub mod lock;
pub mod mailbox;
pub mod multidrop;
pub mod pipe;
pub mod poll;
pub mod spec;
pub mod state;
