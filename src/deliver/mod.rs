//! Local delivery targets: Maildir, mbox, MDA, and SMTP/LMTP to a local MTA.
