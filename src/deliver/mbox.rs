//! The mbox target in mboxrd format: a `From sender date` separator, `>`-quoting of every line
//! matching `>*From `, a blank line after each message; locked with flock(2) and a `FILE.lock`
//! dotlock; fsynced; and truncated back to its original length when a delivery fails, so a
//! half-written message never remains.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{FlockOperation, flock};

use super::{Deliver, DeliverError, MessageInfo, Receipt, stream_lf};

/// A dotlock older than this is taken to be left over from a crashed writer and removed.
const STALE_DOTLOCK: Duration = Duration::from_secs(300);

/// An mbox file opened for delivery.
#[derive(Debug, Clone)]
pub struct Mbox {
    path: PathBuf,
    lock_timeout: Duration,
}

impl Mbox {
    /// Delivers to `path`, created (mode 0600) on first delivery. Waits up to 30 s for locks.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Mbox {
            path: path.into(),
            lock_timeout: Duration::from_secs(30),
        }
    }

    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }
}

impl Deliver for Mbox {
    fn deliver(&mut self, msg: &mut dyn Read, info: &MessageInfo) -> Result<Receipt, DeliverError> {
        let target = self.target();
        let deadline = Instant::now() + self.lock_timeout;
        let dotlock = DotLock::acquire(&self.path, deadline)?;
        let existed = self.path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| DeliverError::from_io(format!("cannot open mbox {target}"), e))?;
        flock_with_deadline(&file, deadline, &target)?;

        let original_len = file
            .seek(SeekFrom::End(0))
            .map_err(|e| DeliverError::from_io(format!("cannot seek in mbox {target}"), e))?;
        let result = append_message(&mut file, original_len, msg, info, &target);
        let result = match result {
            Ok(bytes) => file
                .sync_all()
                .map(|()| bytes)
                .map_err(|e| DeliverError::from_io(format!("cannot sync mbox {target}"), e)),
            Err(e) => Err(e),
        };
        // A new mbox also needs its directory entry on disk.
        let result = match result {
            Ok(bytes) if !existed => {
                let dir = match self.path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                super::maildir::sync_dir(dir).map(|()| bytes)
            }
            other => other,
        };
        if result.is_err() {
            // Never leave half a message: cut the file back to where it was.
            let _ = file.set_len(original_len).and_then(|()| file.sync_all());
        }
        let _ = flock(&file, FlockOperation::Unlock);
        drop(file);
        drop(dotlock);
        result.map(|bytes| Receipt {
            location: target,
            path: Some(self.path.clone()),
            bytes,
        })
    }
}

fn append_message(
    file: &mut File,
    original_len: u64,
    msg: &mut dyn Read,
    info: &MessageInfo,
    target: &str,
) -> Result<u64, DeliverError> {
    let write_err = |e| DeliverError::from_io(format!("cannot write to mbox {target}"), e);
    let mut out = io::BufWriter::with_capacity(super::CHUNK, &mut *file);
    let mut bytes = 0u64;
    // Messages are separated by a blank line; a file not ending in one (written by another
    // program) gets one first, so our separator starts a line.
    let needs_newline = original_len > 0 && !ends_with_blank_line(out.get_mut(), original_len);
    if needs_newline {
        out.write_all(b"\n").map_err(write_err)?;
        bytes += 1;
    }
    let separator = from_line(&info.sender, SystemTime::now());
    out.write_all(separator.as_bytes()).map_err(write_err)?;
    bytes += separator.len() as u64;
    let mut quoter = FromQuoter::new();
    let mut quoted = Vec::with_capacity(super::CHUNK + 64);
    stream_lf(msg, |chunk| {
        quoted.clear();
        quoter.quote(chunk, &mut quoted);
        bytes += quoted.len() as u64;
        out.write_all(&quoted)
    })
    .map_err(|e| e.into_deliver(target))?;
    quoted.clear();
    quoter.finish(&mut quoted);
    bytes += quoted.len() as u64;
    out.write_all(&quoted).map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(bytes)
}

/// Whether the file ends in "\n\n" (or is a lone "\n").
fn ends_with_blank_line(file: &mut File, len: u64) -> bool {
    let take = len.min(2);
    let mut tail = [0u8; 2];
    let Some(buf) = tail.get_mut(..take as usize) else {
        return false;
    };
    let ok = file
        .seek(SeekFrom::Start(len - take))
        .and_then(|_| file.read_exact(buf))
        .is_ok();
    let _ = file.seek(SeekFrom::End(0));
    ok && (buf == b"\n\n" || (len == 1 && buf == b"\n"))
}

/// The `From ` separator line: `From sender asctime-date`.
pub fn from_line(sender: &str, when: SystemTime) -> String {
    let sender: String = sender
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let sender = if sender.is_empty() {
        "MAILER-DAEMON".to_owned()
    } else {
        sender
    };
    let date = chrono::DateTime::<chrono::Utc>::from(when).format("%a %b %e %H:%M:%S %Y");
    format!("From {sender} {date}\n")
}

/// Streaming mboxrd quoting: a line matching `>*From ` gets one more `>`. It also guarantees the
/// output ends with a newline followed by the blank separator line. Memory stays bounded: the
/// start of a line is held only as a count of `>` and a prefix of "From ".
#[derive(Debug, Clone)]
pub struct FromQuoter {
    state: LineState,
    last_byte: Option<u8>,
}

#[derive(Debug, Clone, Copy)]
enum LineState {
    /// At a line start, having seen `gt` `>` then `matched` bytes of "From ".
    Start {
        gt: usize,
        matched: usize,
    },
    Middle,
}

const FROM_: &[u8] = b"From ";

impl Default for FromQuoter {
    fn default() -> Self {
        Self::new()
    }
}

impl FromQuoter {
    pub fn new() -> Self {
        FromQuoter {
            state: LineState::Start { gt: 0, matched: 0 },
            last_byte: None,
        }
    }

    fn flush_held(gt: usize, matched: usize, quote: bool, out: &mut Vec<u8>) {
        if quote {
            out.push(b'>');
        }
        out.extend(std::iter::repeat_n(b'>', gt));
        out.extend_from_slice(FROM_.get(..matched).unwrap_or_default());
    }

    /// Appends the quoted form of `input` (LF line endings) to `out`.
    pub fn quote(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.last_byte = Some(b);
            match self.state {
                LineState::Middle => {
                    out.push(b);
                    if b == b'\n' {
                        self.state = LineState::Start { gt: 0, matched: 0 };
                    }
                }
                LineState::Start { gt, matched } => {
                    if matched == 0 && b == b'>' {
                        self.state = LineState::Start {
                            gt: gt + 1,
                            matched,
                        };
                    } else if FROM_.get(matched) == Some(&b) {
                        if matched + 1 == FROM_.len() {
                            Self::flush_held(gt, FROM_.len(), true, out);
                            self.state = LineState::Middle;
                        } else {
                            self.state = LineState::Start {
                                gt,
                                matched: matched + 1,
                            };
                        }
                    } else {
                        Self::flush_held(gt, matched, false, out);
                        out.push(b);
                        self.state = if b == b'\n' {
                            LineState::Start { gt: 0, matched: 0 }
                        } else {
                            LineState::Middle
                        };
                    }
                }
            }
        }
    }

    /// Ends the message: flushes a held line start, terminates the last line and adds the blank
    /// separator line.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let LineState::Start { gt, matched } = self.state
            && (gt > 0 || matched > 0)
        {
            Self::flush_held(gt, matched, false, out);
            self.last_byte = Some(b'x');
        }
        if self.last_byte.is_some_and(|b| b != b'\n') {
            out.push(b'\n');
        }
        out.push(b'\n');
        self.state = LineState::Start { gt: 0, matched: 0 };
        self.last_byte = None;
    }
}

/// Undoes mboxrd quoting on one line (for readers and tests): `>+From ` loses one `>`.
pub fn unquote_line(line: &[u8]) -> &[u8] {
    let gts = line.iter().take_while(|&&b| b == b'>').count();
    if gts > 0 && line.get(gts..).is_some_and(|rest| rest.starts_with(FROM_)) {
        line.get(1..).unwrap_or_default()
    } else {
        line
    }
}

fn flock_with_deadline(file: &File, deadline: Instant, target: &str) -> Result<(), DeliverError> {
    loop {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                if Instant::now() >= deadline {
                    return Err(DeliverError::transient(format!(
                        "mbox {target} is locked by another process"
                    )));
                }
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(DeliverError::from_io(
                    format!("cannot lock mbox {target}"),
                    io::Error::from(e),
                ));
            }
        }
    }
}

/// `FILE.lock`, created with O_EXCL and removed on drop. When the mbox directory does not allow
/// us to create files (a system spool dir), flock alone protects the file.
struct DotLock {
    path: Option<PathBuf>,
}

impl DotLock {
    fn acquire(mbox: &Path, deadline: Instant) -> Result<DotLock, DeliverError> {
        let mut name = mbox.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let mut removed_stale = false;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(DotLock { path: Some(path) });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !removed_stale && is_stale(&path) {
                        // Bounded: a stale lock is removed once; if it reappears, someone is
                        // actively locking and we wait for them.
                        removed_stale = true;
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(DeliverError::transient(format!(
                            "mbox {} is locked ({} exists)",
                            mbox.display(),
                            path.display()
                        )));
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    log::debug!(
                        "cannot create {}, relying on flock alone: {e}",
                        path.display()
                    );
                    return Ok(DotLock { path: None });
                }
                Err(e) => {
                    return Err(DeliverError::from_io(
                        format!("cannot create lock file {}", path.display()),
                        e,
                    ));
                }
            }
        }
    }
}

fn is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_DOTLOCK)
}

impl Drop for DotLock {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote_in_pieces(input: &[u8], piece: usize) -> Vec<u8> {
        let mut q = FromQuoter::new();
        let mut out = Vec::new();
        for c in input.chunks(piece) {
            q.quote(c, &mut out);
        }
        q.finish(&mut out);
        out
    }

    #[test]
    fn quoting_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b"\n"),
            (b"a\n", b"a\n\n"),
            (b"a", b"a\n\n"),
            (b"From x\n", b">From x\n\n"),
            (b">From x\n", b">>From x\n\n"),
            (b">>From x\n", b">>>From x\n\n"),
            (b"b\nFrom  y\nFromage\n", b"b\n>From  y\nFromage\n\n"),
            (b" From x\n", b" From x\n\n"),
            (b">Fro", b">Fro\n\n"),
            (b">>\n", b">>\n\n"),
            (b"x\n>From", b"x\n>From\n\n"),
        ];
        for (input, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&quote_in_pieces(input, 100)),
                String::from_utf8_lossy(want),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn quoting_chunk_split() {
        let input = b"From a\n>From b\n>>From c\nFro\n>Fr\nFrom\n>>>>x\nbody From \nFrom ";
        let whole = quote_in_pieces(input, input.len());
        for piece in [1, 2, 3, 5, 7] {
            assert_eq!(quote_in_pieces(input, piece), whole, "piece {piece}");
        }
    }

    #[test]
    fn unquote_inverts_quote() {
        for line in [&b"From x"[..], b">From x", b">>From", b"plain", b">x"] {
            let quoted = quote_in_pieces(line, 3);
            let first = quoted.split(|&b| b == b'\n').next().unwrap();
            assert_eq!(unquote_line(first), line);
        }
    }

    #[test]
    fn from_line_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            from_line("a b@x", t),
            "From a_b@x Tue Nov 14 22:13:20 2023\n"
        );
        assert!(from_line("", t).starts_with("From MAILER-DAEMON "));
    }
}
