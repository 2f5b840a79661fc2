//! Streams fetched messages from the mail session into a delivery target without holding
//! whole messages in memory: the session pushes chunks into a bounded channel, a worker thread
//! pulls them through [`Deliver`] (or Maildir's unsynced write). Chunks travel in parcels of
//! about `PARCEL_BYTES`, so that the worker wakes once per parcel rather than per chunk. The
//! fetchmail `Received:` header is inserted on the way (before the first existing `Received:` line). A target that
//! confirms each message itself has it recorded through the [`Ledger`] before the worker reads
//! the next one, so a kill can make only the message in flight be delivered twice.

use std::cell::RefCell;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::multidrop::{Rules, Sorted};
use crate::deliver::received::insertion_offset;
use crate::deliver::{
    Deliver, DeliverError, DropHeaders, HeaderFilter, Maildir, MessageInfo, Pending, Receipt,
};
use crate::error::{Error, ErrorKind, Result};
use crate::message::envelope;
use crate::message::header::{self, Item, Scanner};

/// How many parcels may wait between the session and the target. With the parcel bound below
/// and chunks of at most 64 KiB, at most ~1 MiB of a message is in the pipe at any time, whatever
/// the message's size.
const CHANNEL_DEPTH: usize = 8;
/// A parcel is handed over once it holds this many bytes of message data. Handing over each
/// chunk woke the worker once or twice per message (a 5 KB message is a start, one or two
/// data chunks and an end): with 1000 such messages ~8 futex calls and as many context
/// switches per message, ~15% of rfetch's CPU. A parcel carries several small messages.
const PARCEL_BYTES: usize = 32 * 1024;
/// ... or this many chunks (many tiny messages), so that the worker still starts early.
const PARCEL_CHUNKS: usize = 64;
/// Most header bytes looked at to place the `Received:` header.
const HEADER_SCAN: usize = 64 * 1024;

/// A delivery target as the fetch job uses it: Maildir messages are written first and made
/// durable per batch (one directory fsync for many messages); every other target
/// confirms each message itself.
pub enum Target {
    Maildir(Maildir),
    Direct {
        deliver: Box<dyn Deliver + Send>,
        description: String,
    },
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Maildir(m) => m.root().display().to_string(),
            Target::Direct { description, .. } => description.clone(),
        }
    }
}

/// A message written to the target but maybe not yet durable.
pub enum Staged {
    Pending(Pending),
    Done(Receipt),
}

/// What happened to one message of a batch.
pub enum Outcome {
    Staged(Staged),
    /// Larger than `limit`: not delivered, left on the server.
    TooLarge(u64),
    Failed(DeliverError),
    /// Refused for good by the listener and reported (`no softbounce`): the report went to
    /// `to` and was accepted, so the message is done with, as if delivered.
    Reported {
        to: String,
        reason: String,
    },
}

/// A message the listener refused for good, as the worker hands it to a [`Reporter`].
pub struct Refused<'a> {
    /// The header block as read ahead.
    pub header: &'a [u8],
    /// The envelope sender taken from the header ("" for none).
    pub sender: &'a str,
    pub recipients: Vec<String>,
    pub reason: String,
}

/// Sends the report of a permanent refusal (fetchmail's `no softbounce`); returns whom it went
/// to once the report was accepted, or why it was not.
pub type Reporter<'a> = dyn Fn(&Refused<'_>) -> std::result::Result<String, String> + Sync + 'a;

/// One message of a batch, as the worker reports it.
pub struct BatchItem<K> {
    pub key: K,
    pub size: u64,
    pub outcome: Outcome,
}

enum Chunk<K> {
    Start { key: K, size_hint: Option<u64> },
    Data(Vec<u8>),
    End,
}

/// Chunks handed over together, in order.
type Parcel<K> = Vec<Chunk<K>>;

/// The session side of the pipe: `start`, `data`..., `end` per message. Chunks are collected
/// into a parcel, handed over when it is full and when the feeder is dropped (the end of the
/// batch, or of the connection).
pub struct Feeder<K> {
    tx: SyncSender<Parcel<K>>,
    /// The parcel being filled, and the message bytes in it.
    parcel: RefCell<(Parcel<K>, usize)>,
}

impl<K> Feeder<K> {
    fn new(tx: SyncSender<Parcel<K>>) -> Self {
        Feeder {
            tx,
            parcel: RefCell::new((Vec::new(), 0)),
        }
    }

    fn push(&self, c: Chunk<K>) -> Result<()> {
        let full = {
            let mut parcel = self.parcel.borrow_mut();
            if let Chunk::Data(d) = &c {
                parcel.1 += d.len();
            }
            parcel.0.push(c);
            parcel.1 >= PARCEL_BYTES || parcel.0.len() >= PARCEL_CHUNKS
        };
        if full { self.hand_over() } else { Ok(()) }
    }

    /// Sends the parcel being filled (if it holds anything) to the worker.
    fn hand_over(&self) -> Result<()> {
        let parcel = {
            let mut parcel = self.parcel.borrow_mut();
            parcel.1 = 0;
            std::mem::take(&mut parcel.0)
        };
        if parcel.is_empty() {
            return Ok(());
        }
        self.tx.send(parcel).map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                "the delivery worker stopped unexpectedly",
            )
        })
    }

    pub fn start(&self, key: K, size_hint: Option<u64>) -> Result<()> {
        self.push(Chunk::Start { key, size_hint })
    }
    pub fn data(&self, chunk: &[u8]) -> Result<()> {
        self.push(Chunk::Data(chunk.to_vec()))
    }
    pub fn end(&self) -> Result<()> {
        self.push(Chunk::End)
    }
}

impl<K> Drop for Feeder<K> {
    fn drop(&mut self) {
        // The worker gone is reported by whichever send came first, or by the worker's items.
        let _ = self.hand_over();
    }
}

/// The worker side of the pipe: the chunks in arrival order, parcel after parcel.
struct Inbox<K> {
    rx: Receiver<Parcel<K>>,
    parcel: std::vec::IntoIter<Chunk<K>>,
}

impl<K> Inbox<K> {
    /// The next chunk; `None` once the feeder is gone and everything it sent was taken.
    fn recv(&mut self) -> Option<Chunk<K>> {
        loop {
            if let Some(c) = self.parcel.next() {
                return Some(c);
            }
            self.parcel = self.rx.recv().ok()?.into_iter();
        }
    }
}

/// The per-message record the worker keeps for targets that confirm each message themselves
/// (MDA, mbox, SMTP, LMTP); a Maildir batch is recorded by its journal instead.
pub trait Ledger<K>: Sync {
    /// The target confirmed the message: record it so that a kill from now on cannot make it be
    /// fetched again. Called before the worker reads the next message.
    fn delivered(&self, key: &K);
    /// The message was served to these recipients while others refused it.
    fn served(&self, key: &K, recipients: &[String]);
    /// The recipients an earlier attempt served the message to (multidrop forwarding).
    fn served_before(&self, key: &K) -> Vec<String>;
}

/// A [`Ledger`] that records nothing (tests, and `-c`).
pub struct NoLedger;

impl<K> Ledger<K> for NoLedger {
    fn delivered(&self, _: &K) {}
    fn served(&self, _: &K, _: &[String]) {}
    fn served_before(&self, _: &K) -> Vec<String> {
        Vec::new()
    }
}

/// Makes the `Received:` header of a message (given its multidrop sorting, if any).
pub type ReceivedHeader<'a> = dyn Fn(Option<&Sorted>) -> String + Sync + 'a;

/// Per-message settings of the worker.
pub struct PipeOptions<'a> {
    /// The `Received:` header to insert (CRLF lines), or `None` with `invisible`; given the
    /// message's multidrop sorting when there is one.
    pub received: Option<&'a ReceivedHeader<'a>>,
    /// Multidrop: the sorting rules and the domain local names are qualified with (empty: bare
    /// names); each message goes to the users its header names (`info.recipient` and
    /// `info.also`).
    pub multidrop: Option<(&'a Rules, &'a str)>,
    pub info: MessageInfo,
    pub limit: Option<u64>,
    /// Header fields left out on the way (`dropstatus`, `dropdelivered`).
    pub drop_headers: DropHeaders,
    /// With `no softbounce` on an SMTP/LMTP target: reports permanent refusals.
    pub report: Option<&'a Reporter<'a>>,
}

/// Runs `fetch` (which feeds messages) while a worker delivers them into `target`. Returns
/// the per-message outcomes (in order) and the result of `fetch`. Messages whose stream was
/// cut (a connection lost mid-message) end as transient failures. Each message a direct target
/// confirmed is handed to `ledger` at once.
pub fn run_batch<K: Send>(
    target: &mut Target,
    opts: &PipeOptions<'_>,
    ledger: &dyn Ledger<K>,
    fetch: impl FnOnce(&Feeder<K>) -> Result<()>,
) -> (Vec<BatchItem<K>>, Result<()>) {
    let (tx, rx) = sync_channel::<Parcel<K>>(CHANNEL_DEPTH);
    std::thread::scope(|scope| {
        let inbox = Inbox {
            rx,
            parcel: Vec::new().into_iter(),
        };
        let worker = scope.spawn(|| worker(target, opts, ledger, inbox));
        let feeder = Feeder::new(tx);
        let fetched = fetch(&feeder);
        drop(feeder);
        let items = worker.join().unwrap_or_default();
        (items, fetched)
    })
}

fn worker<K>(
    target: &mut Target,
    opts: &PipeOptions<'_>,
    ledger: &dyn Ledger<K>,
    mut inbox: Inbox<K>,
) -> Vec<BatchItem<K>> {
    let mut items = Vec::new();
    let mut next = inbox.recv();
    while let Some(chunk) = next.take() {
        let Chunk::Start { key, size_hint } = chunk else {
            next = inbox.recv();
            continue;
        };
        let mut reader = ChunkReader {
            inbox: &mut inbox,
            buf: Vec::new(),
            pos: 0,
            ended: false,
            lost: false,
            head: None,
            received: None,
            total: 0,
            last: None,
        };
        let outcome = match (opts.limit, size_hint) {
            (Some(limit), Some(size)) if size > limit => {
                reader.drain();
                Outcome::TooLarge(size)
            }
            _ => {
                let mut info = std::borrow::Cow::Borrowed(&opts.info);
                // A Maildir has no envelope: its header is not read ahead for one.
                let direct = matches!(target, Target::Direct { .. });
                let fields = if direct || opts.multidrop.is_some() {
                    header::fields_of(reader.head())
                } else {
                    Vec::new()
                };
                // Kept for a refusal's report (the header block only, at most HEADER_SCAN).
                let header_copy = match opts.report {
                    Some(_) if direct => reader.head().to_vec(),
                    _ => Vec::new(),
                };
                if direct {
                    // MAIL FROM, %F and the mbox From line come from the header, as fetchmail
                    // takes them.
                    let from = envelope::sender(&fields);
                    if !from.is_empty() {
                        info.to_mut().sender = from;
                    }
                }
                let sorted = opts.multidrop.map(|(rules, domain)| {
                    let sorted = rules.sort(&fields);
                    let mut names = sorted.locals.iter().map(|l| qualify(l, domain));
                    let info = info.to_mut();
                    info.recipient = names.next().unwrap_or_default();
                    info.also = names.collect();
                    sorted
                });
                reader.received = opts.received.map(|f| f(sorted.as_ref()));
                // Recipients an earlier poll served already do not get the message again.
                let served = if direct && sorted.is_some() {
                    ledger.served_before(&key)
                } else {
                    Vec::new()
                };
                let left = if served.is_empty() {
                    None
                } else {
                    let info = info.to_mut();
                    let wanted: Vec<String> = std::iter::once(std::mem::take(&mut info.recipient))
                        .chain(std::mem::take(&mut info.also))
                        .filter(|r| !served.iter().any(|s| s.eq_ignore_ascii_case(r)))
                        .collect();
                    let mut wanted = wanted.into_iter();
                    info.recipient = wanted.next().unwrap_or_default();
                    info.also = wanted.collect();
                    Some(!info.recipient.is_empty())
                };
                let mut filtered = HeaderFilter::new(&mut reader, opts.drop_headers);
                let staged = match target {
                    Target::Maildir(m) => m
                        .deliver_unsynced(&mut filtered, &info)
                        .map(Staged::Pending),
                    // Every recipient was served before: the message is delivered.
                    Target::Direct { description, .. } if left == Some(false) => {
                        Ok(Staged::Done(Receipt {
                            location: description.clone(),
                            path: None,
                            bytes: 0,
                        }))
                    }
                    Target::Direct { deliver, .. } => {
                        deliver.deliver(&mut filtered, &info).map(Staged::Done)
                    }
                };
                drop(filtered);
                // A target that gave up early leaves the rest of the message in the channel.
                reader.drain();
                match staged {
                    _ if reader.lost => Outcome::Failed(DeliverError::transient(
                        "the connection to the mail server was lost during the message",
                    )),
                    Ok(Staged::Done(receipt)) => {
                        ledger.delivered(&key);
                        Outcome::Staged(Staged::Done(receipt))
                    }
                    Ok(s) => Outcome::Staged(s),
                    // A refusal for good, of every recipient or (multidrop) of those not served.
                    Err(e) if !e.is_transient() && opts.report.is_some() => {
                        let served: &[String] = match &e {
                            DeliverError::Partial { served, .. } => served,
                            _ => &[],
                        };
                        let refused = Refused {
                            header: &header_copy,
                            sender: &info.sender,
                            recipients: std::iter::once(info.recipient.clone())
                                .chain(info.also.iter().cloned())
                                .filter(|r| !served.iter().any(|s| s.eq_ignore_ascii_case(r)))
                                .collect(),
                            reason: e.to_string(),
                        };
                        match opts.report.map(|r| r(&refused)) {
                            Some(Ok(to)) => {
                                // Reported: done with, recorded like a delivery so that a kill
                                // now cannot make it be fetched (and reported) again.
                                ledger.delivered(&key);
                                Outcome::Reported {
                                    to,
                                    reason: refused.reason,
                                }
                            }
                            Some(Err(why)) => {
                                // Kept, but those who got it do not get it again.
                                if !served.is_empty() {
                                    ledger.served(&key, served);
                                }
                                Outcome::Failed(DeliverError::permanent(format!(
                                    "{e}; the report of the refusal was not sent ({why}), so \
                                     the message is kept"
                                )))
                            }
                            None => Outcome::Failed(e),
                        }
                    }
                    Err(e) => {
                        if let DeliverError::Partial { served, .. } = &e {
                            ledger.served(&key, served);
                        }
                        Outcome::Failed(e)
                    }
                }
            }
        };
        let lost = reader.lost;
        let size = size_hint.unwrap_or(reader.total);
        items.push(BatchItem { key, size, outcome });
        if lost {
            break;
        }
        next = inbox.recv();
    }
    items
}

/// Reads one message out of the channel, inserting the `Received:` header.
struct ChunkReader<'a, K> {
    inbox: &'a mut Inbox<K>,
    buf: Vec<u8>,
    pos: usize,
    ended: bool,
    lost: bool,
    /// The header block read ahead by [`head`](Self::head), not yet passed on.
    head: Option<Vec<u8>>,
    /// The header still to insert; taken once the header block was scanned.
    received: Option<String>,
    total: u64,
    /// The last byte received, to terminate an unterminated last line at the end.
    last: Option<u8>,
}

impl<K> ChunkReader<'_, K> {
    /// Next raw chunk; `None` at the message end or when the stream broke.
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.ended || self.lost {
            return None;
        }
        match self.inbox.recv() {
            Some(Chunk::Data(d)) => {
                self.total += d.len() as u64;
                if let Some(&b) = d.last() {
                    self.last = Some(b);
                }
                Some(d)
            }
            Some(Chunk::End) => {
                self.ended = true;
                // An IMAP literal can end without a newline (POP3 always ends in CRLF). Like
                // fetchmail (6.3.21), terminate that last line, so an MDA or an mbox never sees
                // a message whose last line runs into whatever follows it.
                match self.last {
                    Some(b) if b != b'\n' => {
                        self.last = Some(b'\n');
                        Some(b"\r\n".to_vec())
                    }
                    _ => None,
                }
            }
            Some(Chunk::Start { .. }) | None => {
                self.lost = true;
                None
            }
        }
    }

    fn drain(&mut self) {
        while self.next_chunk().is_some() {}
    }

    /// The header block (or its first HEADER_SCAN bytes), read ahead and kept for `read`.
    fn head(&mut self) -> &[u8] {
        if self.head.is_none() {
            let mut head = Vec::new();
            // The scanner resumes where the previous chunk left it.
            let mut scanner = Scanner::default();
            while !header_ended(&mut scanner, &head) && head.len() < HEADER_SCAN {
                match self.next_chunk() {
                    Some(d) => head.extend_from_slice(&d),
                    None => break,
                }
            }
            self.head = Some(head);
        }
        self.head.as_deref().unwrap_or_default()
    }

    fn fill(&mut self) {
        if let Some(hdr) = self.received.take() {
            // The header block (or its first HEADER_SCAN bytes) places the header.
            self.head();
            let head = self.head.take().unwrap_or_default();
            if self.lost {
                return;
            }
            let at = insertion_offset(&head).min(head.len());
            let (before, after) = head.split_at(at);
            let mut out = Vec::with_capacity(head.len() + hdr.len());
            out.extend_from_slice(before);
            out.extend_from_slice(hdr.as_bytes());
            out.extend_from_slice(after);
            self.buf = out;
            self.pos = 0;
            return;
        }
        self.buf = match self.head.take() {
            Some(head) => head,
            None => self.next_chunk().unwrap_or_default(),
        };
        self.pos = 0;
    }
}

/// `user@domain` for a local name (a name with a domain already stays as it is; no domain:
/// the bare name, for an MDA's %T).
pub(crate) fn qualify(local: &str, domain: &str) -> String {
    if local.contains('@') || domain.is_empty() {
        local.to_owned()
    } else {
        format!("{local}@{domain}")
    }
}

/// Whether the header block at the start of `head` (more of the message may follow) has ended:
/// at its empty line, or at a line that is no header field.
fn header_ended(scanner: &mut Scanner, head: &[u8]) -> bool {
    loop {
        match scanner.next(head, false, usize::MAX) {
            Ok(Some(Item::End { .. })) => return true,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

impl<K> Read for ChunkReader<'_, K> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.ended && self.received.is_none() && self.head.is_none() {
                return Ok(0);
            }
            self.fill();
            if self.lost {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection to the mail server lost",
                ));
            }
            if self.pos >= self.buf.len() && self.ended {
                return Ok(0);
            }
        }
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.pos += n;
        Ok(n)
    }
}

/// A direct target made of a closure, for the tests of the pipe and of the fetch loop: it reads
/// each message whole and the closure answers for it.
#[cfg(test)]
pub(super) fn test_target(
    answer: impl FnMut(Vec<u8>, &MessageInfo) -> std::result::Result<Receipt, DeliverError>
    + Send
    + 'static,
) -> Target {
    struct Answering<F>(F);
    impl<F> Deliver for Answering<F>
    where
        F: FnMut(Vec<u8>, &MessageInfo) -> std::result::Result<Receipt, DeliverError>,
    {
        fn deliver(
            &mut self,
            msg: &mut dyn Read,
            info: &MessageInfo,
        ) -> std::result::Result<Receipt, DeliverError> {
            let mut text = Vec::new();
            msg.read_to_end(&mut text)
                .map_err(|e| DeliverError::from_io("the test target", e))?;
            (self.0)(text, info)
        }
    }
    Target::Direct {
        deliver: Box::new(Answering(answer)),
        description: "the test target".into(),
    }
}

/// What a test target answers for a message it took.
#[cfg(test)]
pub(super) fn test_receipt(bytes: usize) -> Receipt {
    Receipt {
        location: "the test target".into(),
        path: None,
        bytes: bytes as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Each message's bytes and envelope, as the target got them.
    type Recorded = Arc<Mutex<Vec<(Vec<u8>, MessageInfo)>>>;

    /// A target that takes every message and records it in `got`.
    fn recording(got: &Recorded) -> Target {
        let got = got.clone();
        test_target(move |text, info| {
            let n = text.len();
            got.lock().unwrap().push((text, info.clone()));
            Ok(test_receipt(n))
        })
    }

    /// Pipe options with no size limit, header filter or reports.
    fn options<'a>(
        received: Option<&'a ReceivedHeader<'a>>,
        multidrop: Option<(&'a Rules, &'a str)>,
    ) -> PipeOptions<'a> {
        PipeOptions {
            received,
            multidrop,
            info: MessageInfo::default(),
            limit: None,
            drop_headers: Default::default(),
            report: None,
        }
    }

    /// Feeds `msgs` into the pipe in pieces of `piece` bytes; with `cut_last` the last one
    /// never ends (the connection dropped).
    fn feed<'a>(
        msgs: &'a [&'a [u8]],
        piece: usize,
        cut_last: bool,
    ) -> impl FnOnce(&Feeder<usize>) -> Result<()> + 'a {
        move |f| {
            for (i, m) in msgs.iter().enumerate() {
                f.start(i, None)?;
                for c in m.chunks(piece) {
                    f.data(c)?;
                }
                if !(cut_last && i + 1 == msgs.len()) {
                    f.end()?;
                }
            }
            Ok(())
        }
    }

    fn run(msgs: &[&[u8]], piece: usize, cut_last: bool) -> (Vec<Vec<u8>>, usize) {
        let got = Recorded::default();
        let hdr = |_: Option<&Sorted>| "Received: x\r\n".to_string();
        let opts = options(Some(&hdr), None);
        let (items, r) = run_batch(
            &mut recording(&got),
            &opts,
            &NoLedger,
            feed(msgs, piece, cut_last),
        );
        assert!(r.is_ok());
        let ok = items
            .iter()
            .filter(|i| matches!(i.outcome, Outcome::Staged(_)))
            .count();
        let v = got.lock().unwrap().iter().map(|(m, _)| m.clone()).collect();
        (v, ok)
    }

    #[test]
    fn header_end_found_across_chunks() {
        // Each message with the length of the shortest prefix that decides where its header
        // ends (a line is classified once its ending arrived; a CR needs the byte after it).
        for (msg, decided) in [
            (&b"A: 1\r\nB: 2\r\n\r\nbody"[..], Some(14)),
            (b"\r\nbody", Some(2)),
            (b"A: 1\r\n\rbody", Some(8)),
            (b"A: 1\nno field\nB: 2\n", Some(14)),
            (b"A: 1\r\nB: 2\r\n", None),
            (b"A: 1\r\n\r", None),
        ] {
            for step in 1..=msg.len() {
                let mut scanner = Scanner::default();
                let mut have = 0;
                let mut ended_at = None;
                while have < msg.len() {
                    have = (have + step).min(msg.len());
                    if header_ended(&mut scanner, &msg[..have]) {
                        ended_at = Some(have);
                        break;
                    }
                }
                // Found with the chunk that brought the deciding byte, never before.
                match decided {
                    Some(d) => {
                        let at = ended_at.unwrap_or_else(|| panic!("{msg:?} step {step}"));
                        assert!(at >= d && at < d + step, "{msg:?} step {step}: {at}");
                    }
                    None => assert_eq!(ended_at, None, "{msg:?} step {step}"),
                }
            }
        }
    }

    /// Multidrop rules: alice and bob of example.org, everything else to the postmaster `pm`.
    fn alice_and_bob_at_example_org() -> Rules {
        Rules {
            names: vec![
                ("alice".into(), "alice".into()),
                ("bob".into(), "bob".into()),
            ],
            wildcard: false,
            envelope: None,
            qvirtual: None,
            domains: vec!["example.org".into()],
            postmaster: "pm".into(),
        }
    }

    #[test]
    fn multidrop_sets_each_message_s_recipients_and_keeps_its_bytes() {
        let rules = alice_and_bob_at_example_org();
        let msgs: [&[u8]; 2] = [
            b"To: bob@example.org, alice@example.org\r\nSubject: a\r\n\r\nbody a\r\n",
            b"To: x@elsewhere.net\r\n\r\nbody b\r\n",
        ];
        for invisible in [true, false] {
            let got = Recorded::default();
            let hdr = |s: Option<&Sorted>| {
                format!("Received: for {}\r\n", s.map_or(0, |s| s.locals.len()))
            };
            let received = (!invisible).then_some(&hdr as &ReceivedHeader<'_>);
            let opts = options(received, Some((&rules, "example.org")));
            // One byte at a time: the header read-ahead spans many chunks.
            let (_, r) = run_batch(
                &mut recording(&got),
                &opts,
                &NoLedger,
                feed(&msgs, 1, false),
            );
            assert!(r.is_ok());
            let got = got.lock().unwrap();
            assert_eq!(got[0].1.recipient, "bob@example.org");
            assert_eq!(got[0].1.also, ["alice@example.org"]);
            assert_eq!(got[1].1.recipient, "pm@example.org");
            assert!(got[1].1.also.is_empty());
            for (i, m) in msgs.iter().enumerate() {
                let want = if invisible {
                    m.to_vec()
                } else {
                    let n = if i == 0 { 2 } else { 1 };
                    [format!("Received: for {n}\r\n").as_bytes(), m].concat()
                };
                assert_eq!(got[i].0, want, "message {i}, invisible {invisible}");
            }
        }
    }

    #[test]
    fn header_is_placed_and_chunking_does_not_matter() {
        let a: &[u8] = b"Return-Path: <a>\r\nReceived: y\r\nSubject: s\r\n\r\nbody\r\n";
        let b: &[u8] = b"Subject: s\r\n\r\nbody";
        for piece in [1, 2, 3, 5, 7, 1000] {
            let (v, ok) = run(&[a, b], piece, false);
            assert_eq!(ok, 2);
            assert_eq!(
                v[0],
                b"Return-Path: <a>\r\nReceived: x\r\nReceived: y\r\nSubject: s\r\n\r\nbody\r\n"
            );
            assert_eq!(v[1], b"Received: x\r\nSubject: s\r\n\r\nbody\r\n");
        }
    }

    #[test]
    fn an_unterminated_last_line_is_terminated_once() {
        let cases: [(&[u8], &[u8]); 5] = [
            (
                b"Subject: s\r\n\r\nno newline",
                b"Received: x\r\nSubject: s\r\n\r\nno newline\r\n",
            ),
            (
                b"Subject: s\r\n\r\nends in CR\r",
                b"Received: x\r\nSubject: s\r\n\r\nends in CR\r\r\n",
            ),
            (
                b"Subject: s\r\n\r\nterminated\r\n",
                b"Received: x\r\nSubject: s\r\n\r\nterminated\r\n",
            ),
            (b"Subject: s\r\n\r\n", b"Received: x\r\nSubject: s\r\n\r\n"),
            (
                b"Subject: only a header",
                b"Received: x\r\nSubject: only a header\r\n",
            ),
        ];
        for piece in [1, 2, 3, 5, 7, 1000] {
            let msgs: Vec<&[u8]> = cases.iter().map(|c| c.0).collect();
            let (v, ok) = run(&msgs, piece, false);
            assert_eq!(ok, cases.len());
            for (got, (_, want)) in v.iter().zip(cases.iter()) {
                assert_eq!(got.as_slice(), *want, "piece {piece}");
            }
        }
        // An empty message stays empty (apart from the Received header).
        let (v, ok) = run(&[b""], 1, false);
        assert_eq!(ok, 1);
        assert_eq!(v[0], b"Received: x\r\n");
    }

    #[test]
    fn a_cut_stream_is_a_transient_failure() {
        let (_, ok) = run(&[b"Subject: a\r\n\r\nx", b"Subject: b\r\n\r\ny"], 3, true);
        assert_eq!(ok, 1);
    }

    /// Records what the worker told the ledger.
    #[derive(Default)]
    struct Book {
        delivered: Mutex<Vec<usize>>,
        served: Mutex<Vec<(usize, Vec<String>)>>,
    }

    impl Ledger<usize> for Book {
        fn delivered(&self, key: &usize) {
            self.delivered.lock().unwrap().push(*key);
        }
        fn served(&self, key: &usize, recipients: &[String]) {
            self.served
                .lock()
                .unwrap()
                .push((*key, recipients.to_vec()));
        }
        fn served_before(&self, key: &usize) -> Vec<String> {
            // Message 2 was served to bob by an earlier poll; message 3 to both.
            match key {
                2 => vec!["BOB@example.org".into()],
                3 => vec!["alice@example.org".into(), "bob@example.org".into()],
                _ => Vec::new(),
            }
        }
    }

    /// Per delivery call: what the ledger had recorded as delivered then, and the envelope.
    type Calls = Arc<Mutex<Vec<(Vec<usize>, MessageInfo)>>>;

    /// A target that notes what `book` recorded as delivered before each message reaches it,
    /// and refuses bob temporarily for the second message while alice takes it.
    fn checked(book: &Arc<Book>, seen: &Calls) -> Target {
        let (book, seen) = (book.clone(), seen.clone());
        test_target(move |text, info| {
            let recorded = book.delivered.lock().unwrap().clone();
            let mut seen = seen.lock().unwrap();
            seen.push((recorded, info.clone()));
            if info.also.iter().any(|a| a == "bob@example.org") && seen.len() == 2 {
                return Err(DeliverError::Partial {
                    reason: "bob: 451".into(),
                    served: vec![info.recipient.clone()],
                    transient: true,
                });
            }
            Ok(test_receipt(text.len()))
        })
    }

    #[test]
    fn each_confirmed_message_is_recorded_before_the_next_and_served_recipients_are_skipped() {
        let rules = alice_and_bob_at_example_org();
        let book = Arc::new(Book::default());
        let seen = Calls::default();
        let mut t = checked(&book, &seen);
        let opts = options(None, Some((&rules, "example.org")));
        let msg: &[u8] = b"To: alice@example.org, bob@example.org\r\n\r\nbody\r\n";
        let (items, r) = run_batch(&mut t, &opts, &*book, |f: &Feeder<usize>| {
            for i in 0..4 {
                f.start(i, None)?;
                f.data(msg)?;
                f.end()?;
            }
            Ok(())
        });
        assert!(r.is_ok());
        let delivered = |i: usize| matches!(items[i].outcome, Outcome::Staged(Staged::Done(_)));
        assert!(delivered(0) && !delivered(1) && delivered(2) && delivered(3));
        assert_eq!(*book.delivered.lock().unwrap(), [0, 2, 3]);
        assert_eq!(
            *book.served.lock().unwrap(),
            [(1, vec!["alice@example.org".to_string()])]
        );
        let seen = seen.lock().unwrap();
        // Message 3 had every recipient served: it is not sent at all.
        assert_eq!(seen.len(), 3);
        // Message 2 goes to alice only (the served name matches without regard to case).
        assert_eq!(seen[2].1.recipient, "alice@example.org");
        assert!(seen[2].1.also.is_empty());
        // Each delivery found every earlier confirmed message recorded already.
        let recorded: Vec<&Vec<usize>> = seen.iter().map(|(r, _)| r).collect();
        assert_eq!(recorded, [&vec![], &vec![0], &vec![0]]);
    }
}
