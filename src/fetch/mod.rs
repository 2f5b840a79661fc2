//! rfetch's job: mailboxes (POP3, IMAP), per-message seen state, the poll loop and the daemon.

pub mod state;
