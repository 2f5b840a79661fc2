//! (being written) fetchmailrc reader
