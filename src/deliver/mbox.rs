//! The mbox target in mboxrd format: a `From sender date` separator, `>`-quoting of every line
//! matching `>*From `, a blank line after each message; locked with a `FILE.lock` dotlock,
//! flock(2) and fcntl(2) (mail readers and MDAs use any of the three); fsynced; and truncated
//! back to its original length when a delivery fails or a stop interrupts it, so a
//! half-written message never remains. Against SIGKILL, the length before each append is
//! recorded in `FILE.rfetch-append` while the append runs: the next delivery finds the record
//! and cuts the partial message off. A dotlock whose writer is provably dead (its pid and host
//! are in it from the moment it exists, the host is this one, the pid no longer exists) is
//! removed at once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{FlockOperation, fcntl_lock, flock};

use super::{Deliver, DeliverError, MessageInfo, Receipt, stream_lf};

/// Largest dotlock read for its owner's pid and host (a pid, a host name of at most 64 bytes).
const MAX_DOTLOCK_BYTES: u64 = 512;

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
        let _in_flight = super::begin_delivery(&target)?;
        let deadline = Instant::now() + self.lock_timeout;
        // fcntl locks belong to the process and any close of the file drops them, so two of
        // our own threads must never have the same mbox open at once.
        let _turn = LocalTurn::take(&self.path, deadline, &target)?;
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
        lock_with_deadline(&file, deadline, &target)?;
        let record_path = append_record_path(&self.path);
        if let Err(e) = recover_interrupted_append(&mut file, &record_path, &target) {
            let _ = fcntl_lock(&file, FlockOperation::Unlock);
            let _ = flock(&file, FlockOperation::Unlock);
            return Err(e);
        }

        let original_len = file
            .seek(SeekFrom::End(0))
            .map_err(|e| DeliverError::from_io(format!("cannot seek in mbox {target}"), e))?;
        // Messages are separated by a blank line; a file not ending in one (written by another
        // program) gets one first, so our separator starts a line.
        let needs_newline = original_len > 0 && !ends_with_blank_line(&mut file, original_len);
        let separator = from_line(&info.sender, SystemTime::now());
        let record = AppendRecord::write(&record_path, original_len, needs_newline, &separator);
        let result = append_message(&mut file, needs_newline, &separator, msg, &target);
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
        // A record that outlived a confirmed delivery would make the next one cut that message
        // off after it was recorded as delivered: if it cannot be removed, the delivery is
        // undone instead (and the record then describes the file truthfully).
        let result = match (result, record) {
            (Ok(bytes), Some(record)) => record.remove().map(|()| bytes).map_err(|e| {
                DeliverError::from_io(format!("cannot remove {}", record_path.display()), e)
            }),
            (result, _) => result,
        };
        if result.is_err() {
            // Never leave half a message: cut the file back to where it was. When that fails
            // the record stays, and the next delivery retries the cut.
            let cut = file.set_len(original_len).and_then(|()| file.sync_all());
            if cut.is_ok() {
                let _ = fs::remove_file(&record_path);
            }
        }
        let _ = fcntl_lock(&file, FlockOperation::Unlock);
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
    needs_newline: bool,
    separator: &str,
    msg: &mut dyn Read,
    target: &str,
) -> Result<u64, DeliverError> {
    let write_err = |e| DeliverError::from_io(format!("cannot write to mbox {target}"), e);
    let mut out = io::BufWriter::with_capacity(super::CHUNK, &mut *file);
    let mut bytes = 0u64;
    if needs_newline {
        out.write_all(b"\n").map_err(write_err)?;
        bytes += 1;
    }
    out.write_all(separator.as_bytes()).map_err(write_err)?;
    bytes += separator.len() as u64;
    let mut quoter = FromQuoter::new();
    let mut quoted = Vec::with_capacity(super::CHUNK + 64);
    let mut stopped = false;
    stream_lf(msg, |chunk| {
        if super::roll_back_requested() {
            stopped = true;
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        quoted.clear();
        quoter.quote(chunk, &mut quoted);
        bytes += quoted.len() as u64;
        out.write_all(&quoted)
    })
    .map_err(|e| {
        if stopped {
            DeliverError::transient(format!(
                "delivery to mbox {target} rolled back: rfetch is stopping"
            ))
        } else {
            e.into_deliver(target)
        }
    })?;
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
    let mut sender: String = sender
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    // The sender comes from the message. Cut to what an SMTP reverse-path may hold (256
    // octets), with room to spare: the separator goes into the append record too, whose read
    // is bounded, and a record too long to read would leave a killed append unprotected.
    if sender.len() > MAX_FROM_SENDER {
        let mut end = MAX_FROM_SENDER;
        while !sender.is_char_boundary(end) {
            end -= 1;
        }
        sender.truncate(end);
    }
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

/// Takes flock(2) and then an fcntl(2) write lock on the whole file, retrying until `deadline`.
fn lock_with_deadline(file: &File, deadline: Instant, target: &str) -> Result<(), DeliverError> {
    type Locker = fn(&File, FlockOperation) -> rustix::io::Result<()>;
    let lockers: [(&str, Locker); 2] = [
        ("flock", |f, op| flock(f, op)),
        ("fcntl", |f, op| fcntl_lock(f, op)),
    ];
    for (name, lock) in lockers {
        loop {
            match lock(file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                // fcntl says EACCES or EAGAIN when another process holds the lock.
                Err(e)
                    if e == rustix::io::Errno::WOULDBLOCK
                        || e == rustix::io::Errno::ACCESS
                        || e == rustix::io::Errno::INTR =>
                {
                    if Instant::now() >= deadline || super::roll_back_requested() {
                        let _ = flock(file, FlockOperation::Unlock);
                        return Err(DeliverError::transient(format!(
                            "mbox {target} is locked by another process ({name})"
                        )));
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    let _ = flock(file, FlockOperation::Unlock);
                    return Err(DeliverError::from_io(
                        format!("cannot lock mbox {target} ({name})"),
                        io::Error::from(e),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Mboxes this process is delivering to right now (see [`LocalTurn`]).
static BUSY: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static BUSY_FREED: Condvar = Condvar::new();

/// This process's exclusive turn at one mbox path.
struct LocalTurn(PathBuf);

impl LocalTurn {
    fn take(path: &Path, deadline: Instant, target: &str) -> Result<LocalTurn, DeliverError> {
        let mut busy = BUSY.lock().unwrap_or_else(PoisonError::into_inner);
        while busy.iter().any(|p| p == path) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || super::roll_back_requested() {
                return Err(DeliverError::transient(format!(
                    "mbox {target} is busy with another delivery of this process"
                )));
            }
            busy = BUSY_FREED
                .wait_timeout(busy, left.min(Duration::from_millis(100)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        busy.push(path.to_path_buf());
        Ok(LocalTurn(path.to_path_buf()))
    }
}

impl Drop for LocalTurn {
    fn drop(&mut self) {
        let mut busy = BUSY.lock().unwrap_or_else(PoisonError::into_inner);
        busy.retain(|p| p != &self.0);
        BUSY_FREED.notify_all();
    }
}

/// `FILE.rfetch-append`: where an append in progress records the mbox's length before it.
fn append_record_path(mbox: &Path) -> PathBuf {
    let mut name = mbox.as_os_str().to_owned();
    name.push(".rfetch-append");
    PathBuf::from(name)
}

const RECORD_MAGIC: &str = "postie mbox append 1";

/// Longest sender a separator line carries, in bytes (see [`from_line`]).
const MAX_FROM_SENDER: usize = 512;

/// Largest append record read: a record is a few short lines (a separator line with the
/// sender, and three numbers).
const MAX_RECORD_BYTES: u64 = 4096;

/// A transient delivery failure for a file at `path` that is not a regular file (the error of
/// [`crate::config::regular_file_only`]): in a group-writable spool another user can plant a
/// FIFO or a device where postie keeps its lock or record, and the message must stay on the
/// server until someone removes it.
fn not_a_regular_file(target: &str, path: &Path, e: io::Error) -> DeliverError {
    DeliverError::Transient {
        reason: format!("mbox {target}: cannot use {}: {e}", path.display()),
        source: Some(e),
    }
}

/// Whether `e` is the refusal of [`crate::config::regular_file_only`].
fn is_not_regular(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
}

/// The record of one append in progress; removed once the append is durable or undone.
struct AppendRecord {
    path: PathBuf,
}

impl AppendRecord {
    /// Written (not fsynced: it guards against a killed process, whose writes the kernel keeps)
    /// before the first byte of the message. None when the directory does not let us create it
    /// (a system spool): the append is then unprotected against SIGKILL, as with any mbox
    /// writer. Created anew (O_EXCL, after removing what is there): a symlink planted at the
    /// path is never written through, and a FIFO never waited on.
    fn write(
        path: &Path,
        original_len: u64,
        needs_newline: bool,
        separator: &str,
    ) -> Option<AppendRecord> {
        let text = format!(
            "{RECORD_MAGIC}\n{}\n{original_len}\n{}\n{separator}",
            std::process::id(),
            u8::from(needs_newline)
        );
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                log::debug!("cannot remove {}: {e}", path.display());
                return None;
            }
        }
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path);
        let written = match written {
            Ok(file) => file.write_all_at(text.as_bytes(), 0),
            // Someone else's file, created since the removal: not ours to remove either.
            Err(e) => {
                log::debug!("cannot create {}: {e}", path.display());
                return None;
            }
        };
        match written {
            Ok(()) => Some(AppendRecord {
                path: path.to_path_buf(),
            }),
            Err(e) => {
                log::debug!("cannot write {}: {e}", path.display());
                let _ = fs::remove_file(path);
                None
            }
        }
    }

    fn remove(self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Called with every lock held: a record left by a killed delivery means the mbox may end in
/// part of a message. That part is cut off, but only when the file still holds exactly what the
/// dead delivery wrote from its recorded length on (its separator line, and no other message's
/// separator after it); anything else means another program changed the file since, and it is
/// left alone with a warning. A record path that is not a regular file (a FIFO, a device) is
/// an error: the delivery waits until someone removes it.
fn recover_interrupted_append(
    file: &mut File,
    record_path: &Path,
    target: &str,
) -> Result<(), DeliverError> {
    let read = crate::config::open_regular_file(record_path)
        .and_then(|f| crate::config::read_bytes_at_most(f, MAX_RECORD_BYTES));
    let text = match read {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if is_not_regular(&e) => {
            return Err(not_a_regular_file(target, record_path, e));
        }
        Err(e) => {
            log::warn!("cannot read {}: {e}", record_path.display());
            // Too large to be a record: not one, removed like any other non-record below.
            if e.kind() != io::ErrorKind::InvalidData {
                return Ok(());
            }
            Vec::new()
        }
    };
    let _ = fs::remove_file(record_path);
    let Some((original_len, written)) = parse_record(&text) else {
        log::warn!("ignoring {}: not an append record", record_path.display());
        return Ok(());
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Ok(());
    };
    if len <= original_len {
        return Ok(());
    }
    match partial_append_is_ours(file, original_len, len, &written) {
        Ok(true) => match file.set_len(original_len).and_then(|()| file.sync_all()) {
            Ok(()) => log::warn!(
                "mbox {target}: removed {} bytes of a message an interrupted delivery left (it was not confirmed, so it is fetched again)",
                len - original_len
            ),
            Err(e) => log::warn!("mbox {target}: cannot remove an interrupted delivery: {e}"),
        },
        Ok(false) => log::warn!(
            "mbox {target}: an interrupted delivery left data at byte {original_len}, but the file changed since; leaving it as it is"
        ),
        Err(e) => log::warn!("mbox {target}: cannot check an interrupted delivery: {e}"),
    }
    Ok(())
}

/// (length before the append, the bytes the append began with).
fn parse_record(text: &[u8]) -> Option<(u64, Vec<u8>)> {
    let text = std::str::from_utf8(text).ok()?;
    let mut lines = text.splitn(5, '\n');
    if lines.next()? != RECORD_MAGIC {
        return None;
    }
    let _pid = lines.next()?;
    let original_len: u64 = lines.next()?.parse().ok()?;
    let newline = match lines.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let separator = lines.next()?;
    if !separator.starts_with("From ") || !separator.ends_with('\n') {
        return None;
    }
    let mut written = Vec::with_capacity(separator.len() + 1);
    if newline {
        written.push(b'\n');
    }
    written.extend_from_slice(separator.as_bytes());
    Some((original_len, written))
}

/// Whether `file[original_len..len]` starts with (or is a prefix of) `written` and has no other
/// separator line after it. Reads in bounded chunks.
fn partial_append_is_ours(
    file: &mut File,
    original_len: u64,
    len: u64,
    written: &[u8],
) -> io::Result<bool> {
    let head_len = (len - original_len).min(written.len() as u64) as usize;
    let mut head = vec![0u8; head_len];
    file.seek(SeekFrom::Start(original_len))?;
    file.read_exact(&mut head)?;
    if written.get(..head_len) != Some(head.as_slice()) {
        return Ok(false);
    }
    // The message itself is mboxrd-quoted, so a line starting "From " after our separator can
    // only be another writer's message.
    let mut carry: Vec<u8> = b"\n".to_vec();
    let mut buf = vec![0u8; super::CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        carry.extend_from_slice(buf.get(..n).unwrap_or_default());
        if carry.windows(6).any(|w| w == b"\nFrom ") {
            return Ok(false);
        }
        let keep = carry.len().saturating_sub(5);
        carry.drain(..keep);
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
            match create_filled(&path) {
                Ok(()) => return Ok(DotLock { path: Some(path) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match remove_if_owner_dead(&path) {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(e) => {
                            return Err(not_a_regular_file(&mbox.display().to_string(), &path, e));
                        }
                    }
                    if !removed_stale && is_stale(&path) {
                        // Bounded: a stale lock is removed once; if it reappears, someone is
                        // actively locking and we wait for them.
                        removed_stale = true;
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if Instant::now() >= deadline || super::roll_back_requested() {
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

/// Creates the dotlock at `path` holding this process's pid and host, what proves the lock
/// dead if the process is killed (see [`remove_if_owner_dead`]); `AlreadyExists` when it is
/// held. The content is written to a file of this process first and hard-linked into place,
/// so the lock never exists without it: a lock created empty and filled after (open with
/// O_EXCL, then write) was left empty by a kill between the two, and such a lock proves
/// nothing, so every later delivery waited its whole lock timeout on it until it went stale
/// after [`STALE_DOTLOCK`]. Where hard links are not supported, it falls back to exactly that.
fn create_filled(path: &Path) -> io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let content = format!("{}\n{}\n", std::process::id(), host_name());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        ".{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let own = PathBuf::from(name);
    // Its name is predictable (pid and counter), so in a shared spool something may be planted
    // there: created anew (O_EXCL), a symlink is never written through and a FIFO never waited
    // on. Its AlreadyExists must not read as "the lock is held" to the caller.
    let _ = fs::remove_file(&own);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&own)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                // Transient: the message waits on the server until someone removes it.
                io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("{} exists and cannot be removed", own.display()),
                )
            } else {
                e
            }
        })
        .and_then(|mut f| f.write_all(content.as_bytes()));
    let linked = written.and_then(|()| fs::hard_link(&own, path));
    let _ = fs::remove_file(&own);
    match linked {
        Err(e)
            if matches!(
                rustix::io::Errno::from_io_error(&e),
                Some(rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP)
            ) =>
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            let _ = f.write_all(content.as_bytes());
            Ok(())
        }
        other => other,
    }
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Removes the dotlock at `path` when it names a process of this host that no longer exists
/// (a killed rfetch): waiting for the age rule would hold up every delivery for minutes. A
/// lock without our `pid\nhost\n` form (another program's) is left to the age rule. Whether
/// it was removed; an error (kind `InvalidInput`) when the lock is no regular file (a FIFO,
/// a device), which is no lock anyone holds, yet not ours to remove.
fn remove_if_owner_dead(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let Ok(before) = fs::symlink_metadata(path) else {
        return Ok(false);
    };
    let file = match crate::config::open_regular_file(path) {
        Ok(file) => file,
        Err(e) if is_not_regular(&e) => return Err(e),
        Err(_) => return Ok(false),
    };
    // Bounded: our lock holds a pid and a host name; a larger one is another program's.
    let Ok(text) = crate::config::read_text_at_most(file, MAX_DOTLOCK_BYTES) else {
        return Ok(false);
    };
    let mut lines = text.lines();
    let (Some(pid), Some(host)) = (lines.next(), lines.next()) else {
        return Ok(false);
    };
    let Some(pid) = pid
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(crate::process::single_process)
    else {
        return Ok(false);
    };
    if host != host_name()
        || rustix::process::test_kill_process(pid) != Err(rustix::io::Errno::SRCH)
    {
        return Ok(false);
    }
    // Only the file judged: a live writer may have replaced it meanwhile. (The kernel locks
    // still exclude it if this check loses that race.)
    let same = fs::symlink_metadata(path)
        .is_ok_and(|now| now.ino() == before.ino() && now.dev() == before.dev());
    if same && fs::remove_file(path).is_ok() {
        log::info!(
            "removed {}: left by process {pid}, which no longer exists",
            path.display()
        );
        return Ok(true);
    }
    Ok(false)
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
    use crate::test_support::{mkfifo, within};

    /// A dotlock's pid is written by whoever could create the lock (a group-writable mail
    /// spool): 0 and negative numbers name process groups, never a dead owner, and must not
    /// panic the probe.
    #[test]
    fn a_dotlock_naming_a_process_group_is_not_a_dead_owner() {
        let dir = std::env::temp_dir().join(format!("postie-dotlock-group-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let lock = dir.join("mbox.lock");
        for pid in ["-1", "0", "-4242"] {
            fs::write(&lock, format!("{pid}\n{}\n", host_name())).unwrap();
            assert!(!remove_if_owner_dead(&lock).unwrap(), "{pid}");
            assert!(lock.exists(), "{pid}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    fn planted_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("postie-mbox-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Delivers one short message to `mbox` on a thread bounded by [`within`].
    fn deliver_bounded(mbox: &Path) -> Result<Receipt, DeliverError> {
        let mbox = mbox.to_path_buf();
        within("mbox delivery", move || {
            let info = MessageInfo {
                sender: "a@example.org".into(),
                recipient: "b".into(),
                also: Vec::new(),
            };
            Mbox::new(mbox)
                .with_lock_timeout(Duration::from_secs(2))
                .deliver(&mut &b"Subject: x\n\nbody\n"[..], &info)
        })
    }

    #[test]
    fn a_fifo_at_the_append_record_fails_the_delivery_for_now_not_hangs_it() {
        // In a group-writable spool another user can create FILE.rfetch-append: opened as a
        // record to read, a FIFO waited for a writer for ever and hung every delivery.
        let dir = planted_dir("record-fifo");
        let mbox = dir.join("inbox");
        let record = append_record_path(&mbox);
        mkfifo(&record);
        let e = deliver_bounded(&mbox).expect_err("a FIFO is no append record");
        assert!(e.is_transient(), "{e:?}");
        let shown = e.to_string();
        assert!(
            shown.contains(&record.display().to_string()) && shown.contains("FIFO"),
            "{shown}"
        );
        // Nothing was appended, and the dotlock is gone again.
        assert_eq!(fs::metadata(&mbox).map(|m| m.len()).unwrap_or(0), 0);
        assert!(!dir.join("inbox.lock").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_symlink_at_the_append_record_is_not_written_through() {
        // A dangling symlink planted at FILE.rfetch-append made the record write create (and
        // a live one truncate) the file it names, anywhere the delivering user can write.
        let dir = planted_dir("record-link");
        let mbox = dir.join("inbox");
        let victim = dir.join("victim");
        std::os::unix::fs::symlink(&victim, append_record_path(&mbox)).unwrap();
        deliver_bounded(&mbox).expect("delivered");
        assert!(
            !victim.exists(),
            "the record was written through the symlink"
        );
        assert!(fs::read_to_string(&mbox).unwrap().contains("body\n"));
        assert!(fs::symlink_metadata(append_record_path(&mbox)).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fifo_at_the_dotlock_fails_the_delivery_for_now_not_hangs_it() {
        // A FIFO at FILE.lock: reading it for the owner's pid waited for a writer for ever.
        let dir = planted_dir("lock-fifo");
        let mbox = dir.join("inbox");
        let lock = dir.join("inbox.lock");
        mkfifo(&lock);
        let e = deliver_bounded(&mbox).expect_err("a FIFO is no dotlock");
        assert!(e.is_transient(), "{e:?}");
        let shown = e.to_string();
        assert!(
            shown.contains(&lock.display().to_string()) && shown.contains("FIFO"),
            "{shown}"
        );
        // Left for the administrator: it is not ours to remove.
        assert!(fs::symlink_metadata(&lock).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_device_at_the_dotlock_fails_the_delivery_for_now() {
        let dir = planted_dir("lock-dev");
        let mbox = dir.join("inbox");
        let lock = dir.join("inbox.lock");
        std::os::unix::fs::symlink("/dev/zero", &lock).unwrap();
        let e = deliver_bounded(&mbox).expect_err("a device is no dotlock");
        assert!(e.is_transient(), "{e:?}");
        let shown = e.to_string();
        assert!(
            shown.contains(&lock.display().to_string()) && shown.contains("character device"),
            "{shown}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

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
    fn a_separator_line_and_its_append_record_stay_bounded_whatever_the_sender() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let line = from_line(&"é".repeat(5000), t);
        assert!(line.len() <= MAX_FROM_SENDER + 40, "{} bytes", line.len());
        assert!(
            line.starts_with("From é") && line.ends_with(" 2023\n"),
            "{line}"
        );
        let record = format!("{RECORD_MAGIC}\n{}\n{}\n1\n{line}", u32::MAX, u64::MAX);
        assert!((record.len() as u64) < MAX_RECORD_BYTES);
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
