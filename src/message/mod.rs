//! RFC 5322 message data as postie reads and writes it, shared by every part that looks at a
//! message: what a line is ([`line`]) and where the header block ends ([`header`]). Pure: bytes
//! in, positions and fields out; no I/O.

pub mod header;
pub mod line;
