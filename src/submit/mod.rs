//! rsend's job: envelope resolution, the header pass, and handing the message to the SMTP session;
//! and `-bs`, SMTP on stdin/stdout relaying each message through that same path.

pub mod aliases;
pub mod configure;
pub mod flush;
pub mod headers;
pub mod queue;
pub mod request;
pub mod run;
pub mod smtp_stdio;
pub mod spool;
pub mod units;
