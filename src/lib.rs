//! postie: the account library behind `rsend` (an msmtp/sendmail drop-in) and `rfetch` (a
//! fetchmail drop-in).
//!
//! Layers depend strictly downward:
//!
//! ```text
//! cli ──► submit / fetch ──► deliver ──► session ──► net
//!   │            │                          │
//!   └──► config ──► account                 └──► proto (pure: bytes in, events/bytes out)
//! ```
//!
//! * [`proto`] is sans-I/O: no sockets, files, processes or clocks.
//! * [`net`] is the only code that touches sockets and TLS.
//! * [`session`] drives a [`proto`] state machine over a [`net::Connection`] (blocking I/O with
//!   timeouts on every read).
//! * [`deliver`] owns the local targets (Maildir, mbox, MDA, SMTP/LMTP to a local MTA).
//! * [`message`] is the one definition of RFC 5322 data (what a line is, where the header ends),
//!   pure like [`proto`], which uses it.
//! * [`submit`] and [`fetch`] are the two jobs; [`cli`] holds both command lines.
#![forbid(unsafe_code)]

pub mod account;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod error;
pub mod exit;
pub mod fetch;
pub mod hint;
pub mod log;
pub mod message;
pub mod net;
pub mod oauth;
pub mod process;
pub mod proto;
pub mod session;
pub mod submit;
#[cfg(test)]
mod test_support;

pub use error::{Error, ErrorKind, Result};
