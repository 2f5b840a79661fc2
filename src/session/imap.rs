//! (being written) imap session
