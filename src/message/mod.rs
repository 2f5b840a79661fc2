//! RFC 5322 message data as postie reads and writes it, shared by both jobs (rsend's header pass,
//! rfetch's delivery): what a line is ([`line`](mod@line)), the header block and its fields ([`header`]),
//! address lists ([`address`]) and the envelope sender a header names ([`envelope`]). Pure: bytes
//! in, positions, fields and addresses out; no I/O.

pub mod address;
pub mod envelope;
pub mod header;
pub mod line;
