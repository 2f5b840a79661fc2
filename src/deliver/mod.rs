//! Local delivery targets: Maildir, mbox, MDA, and SMTP/LMTP to a local MTA; the delivery error
//! (transient or permanent), and the streaming CRLF→LF converter every file target uses.
//!
//! A target receives the message as a byte stream, possibly with CRLF line endings (as POP3 and
//! IMAP deliver them), and stores LF line endings as fetchmail and Maildir readers expect.

pub mod filter;
pub mod maildir;
pub mod mbox;
pub mod mda;
pub mod received;
pub mod smtp;

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use filter::{DropHeaders, HeaderFilter};
pub use maildir::{Maildir, Pending};
pub use mbox::Mbox;
pub use mda::{LineEnds, Mda, MdaCommand};

use crate::error::{Error, ErrorKind};

/// The envelope of one message being delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageInfo {
    /// The envelope sender (`%F`, the mbox `From ` line); empty for the null sender.
    pub sender: String,
    /// The local recipient (`%T`).
    pub recipient: String,
    /// Further recipients of the same copy (multidrop; SMTP and LMTP targets only).
    pub also: Vec<String>,
}

/// Proof that a target accepted a message and holds it durably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Where the message went: a file path for Maildir and mbox, the command for an MDA.
    pub location: String,
    /// The file holding the message, when the target stores one file per message.
    pub path: Option<PathBuf>,
    /// Bytes written (after line-ending conversion and quoting).
    pub bytes: u64,
}

/// A delivery that failed. Transient failures may succeed later unchanged (disk full, lock busy,
/// EX_TEMPFAIL); permanent ones will not. Neither means the message may be deleted on the server:
/// that is the fetch job's decision (fetchmail's `softbounce`).
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("{reason}")]
    Transient {
        reason: String,
        #[source]
        source: Option<io::Error>,
    },
    #[error("{reason}")]
    Permanent {
        reason: String,
        #[source]
        source: Option<io::Error>,
    },
    /// A message for several recipients (multidrop forwarding) that some of them were served
    /// (accepted it, or refused it with an antispam code) and the others refused: the next
    /// attempt goes to the others only. `transient` when any of them was refused temporarily;
    /// otherwise every one of them was refused for good, which is handled as a permanent
    /// refusal of the message (kept with softbounce, reported to the sender without).
    #[error("{reason}")]
    Partial {
        reason: String,
        served: Vec<String>,
        transient: bool,
    },
}

impl DeliverError {
    pub fn transient(reason: impl Into<String>) -> Self {
        DeliverError::Transient {
            reason: reason.into(),
            source: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliverError::Permanent {
            reason: reason.into(),
            source: None,
        }
    }

    /// Classifies a local I/O failure: resource exhaustion and interruptions are worth retrying,
    /// everything else (permissions, a path that is not a directory, ...) needs a human.
    pub fn from_io(reason: impl Into<String>, err: io::Error) -> Self {
        let reason = reason.into();
        if io_is_transient(&err) {
            DeliverError::Transient {
                reason,
                source: Some(err),
            }
        } else {
            DeliverError::Permanent {
                reason,
                source: Some(err),
            }
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            DeliverError::Transient { .. } => true,
            DeliverError::Permanent { .. } => false,
            DeliverError::Partial { transient, .. } => *transient,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            DeliverError::Transient { reason, .. }
            | DeliverError::Permanent { reason, .. }
            | DeliverError::Partial { reason, .. } => reason,
        }
    }
}

fn io_is_transient(err: &io::Error) -> bool {
    use io::ErrorKind as K;
    if matches!(
        err.kind(),
        K::Interrupted
            | K::WouldBlock
            | K::TimedOut
            | K::StorageFull
            | K::QuotaExceeded
            | K::OutOfMemory
            | K::ResourceBusy
            | K::BrokenPipe
    ) {
        return true;
    }
    // EIO, ENOSPC, EDQUOT, EMFILE, ENFILE, EAGAIN, EBUSY by number for kinds std leaves Other.
    matches!(err.raw_os_error(), Some(5 | 11 | 16 | 23 | 24 | 28 | 122))
}

impl From<DeliverError> for Error {
    fn from(err: DeliverError) -> Self {
        let kind = if err.is_transient() {
            ErrorKind::DeliveryTemporary
        } else {
            ErrorKind::DeliveryPermanent
        };
        let reason = err.reason().to_owned();
        match err {
            DeliverError::Transient {
                source: Some(s), ..
            }
            | DeliverError::Permanent {
                source: Some(s), ..
            } => Error::with_source(kind, reason, s),
            _ => Error::new(kind, reason),
        }
    }
}

/// Deliveries to an mbox or an MDA in flight, so that a stop never cuts one: the process must
/// not exit while an MDA holds half a message or an mbox ends in half of one.
struct Gate {
    active: usize,
    closed: bool,
}

static GATE: Mutex<Gate> = Mutex::new(Gate {
    active: 0,
    closed: false,
});
static GATE_CHANGED: Condvar = Condvar::new();
/// Set by [`finish_in_flight`]: deliveries that can be undone (an mbox append) roll back now.
static ROLL_BACK: AtomicBool = AtomicBool::new(false);

/// Held for the length of one delivery (see [`begin_delivery`]).
#[derive(Debug)]
pub(crate) struct InFlight(());

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
        gate.active = gate.active.saturating_sub(1);
        GATE_CHANGED.notify_all();
    }
}

/// Registers a delivery about to start; refused (transiently: the message stays on the server)
/// once the process is stopping.
pub(crate) fn begin_delivery(target: &str) -> Result<InFlight, DeliverError> {
    let mut gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
    if gate.closed {
        return Err(DeliverError::transient(format!(
            "not delivering to {target}: rfetch is stopping"
        )));
    }
    gate.active += 1;
    Ok(InFlight(()))
}

/// Whether a delivery that can be undone should stop and roll back (the process is exiting).
pub(crate) fn roll_back_requested() -> bool {
    ROLL_BACK.load(Ordering::Relaxed)
}

/// For a process about to exit: refuses new mbox and MDA deliveries, makes an mbox append in
/// progress roll back (it is cut back to its length before the message and unlocked), and waits
/// up to `limit` for every delivery in flight to end; an MDA, which cannot be undone, runs to
/// its end (bounded by its own timeout). True when none is left.
pub fn finish_in_flight(limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
    gate.closed = true;
    ROLL_BACK.store(true, Ordering::Relaxed);
    while gate.active > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        gate = GATE_CHANGED
            .wait_timeout(gate, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    true
}

/// A local delivery target.
pub trait Deliver {
    /// Delivers one message read from `msg` (CRLF or LF line endings). Returns only once the
    /// message is durably stored (or handed to an MDA that exited 0).
    fn deliver(&mut self, msg: &mut dyn Read, info: &MessageInfo) -> Result<Receipt, DeliverError>;
}

/// Streaming CRLF→LF conversion that gives the same output however the input is split into
/// chunks: a CR at the end of one chunk is held until the next byte shows whether an LF follows.
/// A CR not followed by LF is kept.
#[derive(Debug, Default, Clone)]
pub struct CrlfToLf {
    pending_cr: bool,
}

impl CrlfToLf {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the converted form of `input` to `out`.
    pub fn convert(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + 1);
        if self.pending_cr {
            match input.first() {
                None => return,
                Some(b'\n') => {}
                Some(_) => out.push(b'\r'),
            }
            self.pending_cr = false;
        }
        // Whole runs between CRs are copied at once: byte-by-byte pushing was the largest
        // user-space cost of a fetch (more than the TLS decryption). memchr finds the CRs
        // several bytes per step; a byte loop was still 7% of a fetch's CPU.
        while let Some(at) = memchr::memchr(b'\r', input) {
            out.extend_from_slice(&input[..at]);
            match input.get(at + 1) {
                None => {
                    self.pending_cr = true;
                    return;
                }
                Some(b'\n') => {}
                Some(_) => out.push(b'\r'),
            }
            input = &input[at + 1..];
        }
        out.extend_from_slice(input);
    }

    /// Flushes a CR held back at the very end of the input.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

/// Chunk size used by the targets when streaming a message.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Reads `msg` to the end in chunks, passing each converted (LF) chunk to `sink`.
pub(crate) fn stream_lf(
    msg: &mut dyn Read,
    sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), StreamError> {
    stream_lf_with(msg, &mut StreamBuffers::default(), 0, sink)
}

/// The buffers of [`stream_lf_with`], kept by a target that delivers many messages: three
/// 64 KiB allocations per message (one of them zeroed), freed again at its end, made glibc give
/// the pages back and fault them in again for the next message.
#[derive(Default)]
pub(crate) struct StreamBuffers {
    read: Vec<u8>,
    out: Vec<u8>,
}

impl std::fmt::Debug for StreamBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamBuffers")
    }
}

impl Clone for StreamBuffers {
    /// A clone has buffers of its own, allocated when first used.
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// [`stream_lf`] through `bufs`, passing converted bytes to `sink` once at least `batch` of
/// them are collected (and at the end): with `batch` = [`CHUNK`], a message smaller than that
/// reaches `sink` in one piece, one write(2), without a `BufWriter`'s buffer.
pub(crate) fn stream_lf_with(
    msg: &mut dyn Read,
    bufs: &mut StreamBuffers,
    batch: usize,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), StreamError> {
    let mut conv = CrlfToLf::new();
    if bufs.read.len() < CHUNK {
        bufs.read = vec![0u8; CHUNK];
    }
    let StreamBuffers { read: buf, out } = bufs;
    out.clear();
    loop {
        let n = match msg.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e)),
        };
        conv.convert(buf.get(..n).unwrap_or_default(), out);
        if !out.is_empty() && out.len() >= batch {
            sink(out).map_err(StreamError::Write)?;
            out.clear();
        }
    }
    conv.finish(out);
    if !out.is_empty() {
        sink(out).map_err(StreamError::Write)?;
        out.clear();
    }
    Ok(())
}

/// Which side of a streamed copy failed: reading the message (the fetch connection, so
/// transient) or writing it to the target.
#[derive(Debug)]
pub(crate) enum StreamError {
    Read(io::Error),
    Write(io::Error),
}

impl StreamError {
    pub(crate) fn into_deliver(self, target: &str) -> DeliverError {
        match self {
            StreamError::Read(e) => DeliverError::Transient {
                reason: format!("cannot read the message being delivered to {target}"),
                source: Some(e),
            },
            StreamError::Write(e) => DeliverError::from_io(format!("cannot write to {target}"), e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert_in_pieces(input: &[u8], piece: usize) -> Vec<u8> {
        let mut conv = CrlfToLf::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            conv.convert(chunk, &mut out);
        }
        conv.finish(&mut out);
        out
    }

    #[test]
    fn crlf_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a\r\nb\r\n", b"a\nb\n"),
            (b"a\nb\n", b"a\nb\n"),
            (b"a\rb", b"a\rb"),
            (b"a\r\r\nb", b"a\r\nb"),
            (b"\r", b"\r"),
            (b"\r\n\r\n", b"\n\n"),
            (b"x\r", b"x\r"),
        ];
        for (input, want) in cases {
            assert_eq!(&convert_in_pieces(input, 1000), want, "{input:?}");
        }
    }

    #[test]
    fn crlf_chunk_split() {
        let input = b"From: a\r\nSubject: \r\r\n\r\nbody\rline\r\n\r\n.\r\nend\r";
        let whole = convert_in_pieces(input, input.len());
        for piece in [1, 2, 3, 5, 7] {
            assert_eq!(convert_in_pieces(input, piece), whole, "piece {piece}");
        }
        assert_eq!(whole, b"From: a\nSubject: \r\n\nbody\rline\n\n.\nend\r");
    }

    #[test]
    fn crlf_matches_the_byte_by_byte_rule_for_any_split() {
        // The rule, one byte at a time: a CR followed by LF goes, every other byte stays.
        fn reference(input: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            for (i, &b) in input.iter().enumerate() {
                if !(b == b'\r' && input.get(i + 1) == Some(&b'\n')) {
                    out.push(b);
                }
            }
            out
        }
        let mut seed = 0x9e37_79b9_u32;
        for _ in 0..300 {
            let len = (seed % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    [b'\r', b'\n', b'a', b'.'][(seed >> 28) as usize % 4]
                })
                .collect();
            for piece in [1, 2, 3, 7, 64] {
                assert_eq!(
                    convert_in_pieces(&input, piece),
                    reference(&input),
                    "{input:?} in pieces of {piece}"
                );
            }
        }
    }

    #[test]
    fn deliver_error_maps_to_crate_kinds() {
        let t: Error = DeliverError::transient("mda said try later").into();
        assert_eq!(t.kind(), ErrorKind::DeliveryTemporary);
        let p: Error = DeliverError::permanent("no such mailbox").into();
        assert_eq!(p.kind(), ErrorKind::DeliveryPermanent);
        let full = DeliverError::from_io(
            "cannot write to /m",
            io::Error::from(io::ErrorKind::StorageFull),
        );
        assert!(full.is_transient());
        let denied = DeliverError::from_io(
            "cannot write to /m",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(!denied.is_transient());
    }
}
