//! (being written) msmtprc reader
