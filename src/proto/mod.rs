//! Pure protocol code: no sockets, files, processes or clocks. Bytes in, events and bytes out.

pub mod dns;
pub mod dotstuff;
pub mod imap;
pub mod line;
pub mod pop3;
pub mod sasl;
pub mod smtp;
pub mod smtp_server;
pub mod socks5;
pub mod trace;
