//! (being written) imap
