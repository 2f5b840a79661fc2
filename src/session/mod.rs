//! Blocking drivers that run a [`crate::proto`] state machine over a [`crate::net::Connection`]:
//! every read has a timeout and every buffer a size bound.

pub mod imap;
pub mod pop3;
pub mod smtp;
