//! Config readers (native TOML, msmtprc, fetchmailrc), file discovery and the secret-file permission rule.

pub mod fetchmailrc;
pub mod msmtprc;
pub mod toml;
