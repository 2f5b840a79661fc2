//! (being written) pop3 session
