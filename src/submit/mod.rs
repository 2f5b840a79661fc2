//! rsend's job: envelope resolution, the header pass, and handing the message to the SMTP session.

pub mod address;
pub mod aliases;
pub mod flush;
pub mod headers;
pub mod queue;
pub mod run;
pub mod spool;
pub mod units;
