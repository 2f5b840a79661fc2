//! Config readers (native TOML, msmtprc, fetchmailrc), file discovery and the secret-file permission rule.
