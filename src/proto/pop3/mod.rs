//! (being written) pop3
