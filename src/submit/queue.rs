//! rsend's durable queue: one file per message (its envelope, then the message as it goes on
//! the wire), written under `tmp/`, renamed into the queue directory, then the file and the
//! directory fsynced; a small retry-state file beside it; claiming by `flock` so that two flushers never
//! send the same message and a killed flusher's claim disappears with it.
//!
//! A message file is its envelope (text lines up to `end`), the message bytes, and a trailer
//! line with their SHA-256.
//!
//! Layout of the queue directory (mode 0700, files 0600):
//! `ID.msg` a queued message, `ID.state` its retry state (absent: never tried, due now),
//! `tmp/` messages being written (locked by their writer while it lives).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::FlockOperation;

use crate::account::Env;
use crate::error::{Error, ErrorKind, Result};

/// The first line of every queued message file.
const MAGIC: &str = "postie-queue 1";
/// What follows the message: its SHA-256, so that a message whose bytes did not all reach the
/// disk (a crash before rsend returned) is never sent with holes in it.
const TRAILER_PREFIX: &str = "sha256 ";
const TRAILER_LEN: u64 = 7 + 64 + 1;
/// An envelope larger than this is not ours (a corrupt or foreign file).
const MAX_ENVELOPE: u64 = 1024 * 1024;
/// Largest retry-state file read. A state file holds three short lines and the last error
/// recorded, cut to [`MAX_ERROR_BYTES`] when written, each byte escaped to at most 3: well
/// under 1 MiB. A larger file is not one we wrote.
const MAX_STATE_BYTES: u64 = 1024 * 1024;
/// Longest error text a retry state keeps (an SMTP reply within the reply reader's bounds is
/// shorter; the cut makes the state file's bound hold whatever the error says).
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// First retry delay; it doubles with each failed attempt up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: u64 = 60;
const MAX_RETRY_DELAY: u64 = 3600;
/// A `tmp/` file its writer no longer holds and older than this is left over from a killed rsend
/// (that caller got a failure exit, so the message was never ours to keep).
const STALE_TMP: Duration = Duration::from_secs(60);

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `$XDG_STATE_HOME/postie/queue`, else `~/.local/state/postie/queue`.
pub fn default_dir(env: &Env) -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env.home.as_ref().map(|h| h.join(".local/state")))?;
    Some(state.join("postie/queue"))
}

/// What a queued message carries besides its bytes: everything a later flush needs to send it
/// as the original rsend would have.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stored {
    /// When it was queued (seconds since the epoch).
    pub queued: u64,
    /// The envelope-from ("" for the null sender).
    pub from: String,
    pub recipients: Vec<String>,
    /// The account it was resolved to; `None`: command-line settings only (`--host`).
    pub account: Option<String>,
    /// `-C FILE` as given.
    pub config: Option<String>,
    /// The command-line settings, as `(msmtprc key, value)`.
    pub options: Vec<(String, String)>,
    pub eight_bit: bool,
    /// Message bytes following the envelope.
    pub size: u64,
}

/// Percent-escapes bytes that would end or split a field (controls, space, `%`, DEL).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_control() || c == ' ' || c == '%' {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Stored {
    fn encode(&self) -> Vec<u8> {
        let mut t = format!(
            "{MAGIC}\nqueued {}\nfrom {}\n",
            self.queued,
            escape(&self.from)
        );
        for r in &self.recipients {
            t.push_str(&format!("rcpt {}\n", escape(r)));
        }
        if let Some(a) = &self.account {
            t.push_str(&format!("account {}\n", escape(a)));
        }
        if let Some(c) = &self.config {
            t.push_str(&format!("config {}\n", escape(c)));
        }
        for (k, v) in &self.options {
            t.push_str(&format!("option {} {}\n", escape(k), escape(v)));
        }
        t.push_str(&format!(
            "eight-bit {}\nsize {}\nend\n",
            if self.eight_bit { "yes" } else { "no" },
            self.size
        ));
        t.into_bytes()
    }

    /// Reads an envelope; returns it and its length in bytes. Anything unexpected is an error
    /// naming what: the file is then reported and never sent.
    fn decode(input: &mut dyn BufRead) -> std::result::Result<(Stored, u64), String> {
        let mut s = Stored::default();
        let mut consumed = 0u64;
        let mut first = true;
        let (mut have_queued, mut have_size) = (false, false);
        loop {
            let mut line = Vec::new();
            let n = input
                .take(MAX_ENVELOPE - consumed.min(MAX_ENVELOPE))
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("cannot read: {e}"))?;
            consumed += n as u64;
            if line.last() != Some(&b'\n') {
                return Err(if consumed >= MAX_ENVELOPE {
                    "envelope too large".into()
                } else {
                    "truncated envelope".into()
                });
            }
            line.pop();
            let line = String::from_utf8(line).map_err(|_| "envelope is not UTF-8".to_string())?;
            if first {
                if line != MAGIC {
                    return Err("not a postie queue file".into());
                }
                first = false;
                continue;
            }
            if line == "end" {
                break;
            }
            let (key, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            let value = || unescape(rest).ok_or_else(|| format!("bad value in {key:?} line"));
            let number = || {
                rest.parse::<u64>()
                    .map_err(|_| format!("bad number in {key:?}"))
            };
            match key {
                "queued" => {
                    s.queued = number()?;
                    have_queued = true;
                }
                "from" => s.from = value()?,
                "rcpt" => s.recipients.push(value()?),
                "account" => s.account = Some(value()?),
                "config" => s.config = Some(value()?),
                "option" => {
                    let (k, v) = rest
                        .split_once(' ')
                        .ok_or_else(|| "bad option line".to_string())?;
                    let k = unescape(k).ok_or_else(|| "bad option name".to_string())?;
                    let v = unescape(v).ok_or_else(|| "bad option value".to_string())?;
                    s.options.push((k, v));
                }
                "eight-bit" => s.eight_bit = rest == "yes",
                "size" => {
                    s.size = number()?;
                    have_size = true;
                }
                other => return Err(format!("unknown envelope field {other:?}")),
            }
        }
        if !have_queued || !have_size || s.recipients.is_empty() {
            return Err("incomplete envelope (queued, size or recipients missing)".into());
        }
        Ok((s, consumed))
    }
}

/// A message's retry state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryState {
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before this time (seconds since the epoch).
    pub next: u64,
    /// No automatic attempt any more (too old, or refused permanently): reported until someone
    /// removes it or flushes it by id.
    pub held: bool,
    pub last_error: Option<String>,
}

impl RetryState {
    fn encode(&self) -> String {
        let mut t = format!(
            "attempts {}\nnext {}\nheld {}\n",
            self.attempts,
            self.next,
            if self.held { "yes" } else { "no" }
        );
        if let Some(e) = &self.last_error {
            t.push_str(&format!("error {}\n", escape(e)));
        }
        t
    }

    fn decode(text: &str) -> RetryState {
        let mut s = RetryState::default();
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "attempts" => s.attempts = v.parse().unwrap_or(0),
                "next" => s.next = v.parse().unwrap_or(0),
                "held" => s.held = v == "yes",
                "error" => s.last_error = unescape(v),
                _ => {}
            }
        }
        s
    }

    /// The state after a failed attempt at `now`: the next attempt waits 1, 2, 4 ... minutes, at
    /// most an hour; a message queued longer than `max_age` ago, or refused permanently, is held.
    pub fn after_failure(
        &self,
        error: &str,
        permanent: bool,
        queued: u64,
        now: u64,
        max_age: Duration,
    ) -> RetryState {
        let attempts = self.attempts.saturating_add(1);
        let delay = FIRST_RETRY_DELAY
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
            .min(MAX_RETRY_DELAY);
        let expired = now.saturating_sub(queued) >= max_age.as_secs();
        let mut reason = error.to_string();
        if permanent {
            reason = format!("refused permanently, kept: {reason}");
        } else if expired {
            reason = format!(
                "queued longer than {} and kept: {reason}",
                age_text(max_age.as_secs())
            );
        }
        if reason.len() > MAX_ERROR_BYTES {
            let mut end = MAX_ERROR_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push_str(" [...]");
        }
        RetryState {
            attempts,
            next: now.saturating_add(delay),
            held: permanent || expired,
            last_error: Some(reason),
        }
    }
}

/// `3d4h`, `12m`, `40s`.
pub fn age_text(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{secs}s")
    }
}

/// A queue directory.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
}

/// What a directory listing found.
#[derive(Debug)]
pub enum Entry {
    Message {
        id: String,
        state: RetryState,
    },
    /// A file that is not one of ours (reported, never touched).
    Foreign {
        name: String,
    },
}

fn io_error(what: String, e: io::Error) -> Error {
    Error::with_source(ErrorKind::LocalIo, what, e)
}

/// Queue ids are `SECONDS-RANDOM` in lower-case hex: sortable by age, safe in a file name.
fn is_id(s: &str) -> bool {
    let Some((t, r)) = s.split_once('-') else {
        return false;
    };
    let hex = |x: &str| {
        !x.is_empty()
            && x.len() <= 16
            && x.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    hex(t) && hex(r)
}

fn new_id() -> String {
    use ring::rand::SecureRandom;
    let mut random = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut random);
    format!("{:x}-{:08x}", now(), u32::from_be_bytes(random))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn lock_now(file: &File) -> io::Result<bool> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The file must be exactly its envelope, the message its envelope announces, and the trailer.
fn check_length(len: u64, envelope_len: u64, size: u64) -> std::result::Result<(), String> {
    let expected = envelope_len
        .saturating_add(size)
        .saturating_add(TRAILER_LEN);
    if len != expected {
        return Err(format!(
            "the file holds {len} bytes, its envelope says {expected}: truncated or altered"
        ));
    }
    Ok(())
}

/// Reads the `size` message bytes and the trailer after them; they must agree.
fn check_digest(reader: &mut dyn Read, size: u64) -> std::result::Result<(), String> {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut message = reader.take(size);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match message.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => digest.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read: {e}")),
        }
    }
    let mut trailer = Vec::new();
    reader
        .take(TRAILER_LEN)
        .read_to_end(&mut trailer)
        .map_err(|e| format!("cannot read: {e}"))?;
    if trailer != trailer_line(digest.finish()).as_bytes() {
        return Err(
            "the message does not match its checksum: damaged or incompletely written".into(),
        );
    }
    Ok(())
}

fn trailer_line(digest: ring::digest::Digest) -> String {
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{TRAILER_PREFIX}{hex}\n")
}

impl Queue {
    /// The queue in `dir`, created (mode 0700) if missing. A directory other users can read is
    /// refused: queued messages are private.
    pub fn open(dir: &Path) -> Result<Queue> {
        let tmp = dir.join("tmp");
        if let Err(e) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tmp)
        {
            return Err(io_error(
                format!("cannot create the queue directory {}", tmp.display()),
                e,
            ));
        }
        let meta =
            fs::metadata(dir).map_err(|e| io_error(format!("cannot read {}", dir.display()), e))?;
        if meta.permissions().mode() & 0o077 != 0
            || meta.uid() != rustix::process::getuid().as_raw()
        {
            return Err(Error::new(
                ErrorKind::InsecureConfig,
                format!(
                    "the queue directory {} must belong to you and not be accessible by others \
                     (chmod 700 {})",
                    dir.display(),
                    dir.display()
                ),
            ));
        }
        Ok(Queue {
            dir: dir.to_path_buf(),
        })
    }

    /// The queue in `dir` if it exists (listing and flushing never create one).
    pub fn existing(dir: &Path) -> Result<Option<Queue>> {
        if !dir.is_dir() {
            return Ok(None);
        }
        Queue::open(dir).map(Some)
    }

    /// Whether `dir` holds a message a flush would try (not held). Reads only the directory
    /// and the state files: cheap enough to ask after every successful send.
    pub fn any_waiting(dir: &Path) -> bool {
        let Ok(read) = fs::read_dir(dir) else {
            return false;
        };
        let probe = Queue {
            dir: dir.to_path_buf(),
        };
        read.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_suffix(".msg")
                .is_some_and(|id| is_id(id) && !probe.state(id).held)
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn message_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.msg"))
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.state"))
    }

    /// Starts a message: a locked file under `tmp/` holding the envelope; the caller appends
    /// exactly `stored.size` message bytes, then commits or drops it.
    pub fn begin(&self, stored: &Stored) -> Result<Pending> {
        // Ids are random within a second; a clash (one in 2^32 per pair of messages queued in
        // the same second) only costs another draw.
        let mut attempt = 0;
        let (id, path, mut file) = loop {
            let id = new_id();
            let path = self.dir.join("tmp").join(&id);
            let taken = self.message_path(&id).exists();
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) if !taken => break (id, path, file),
                Ok(_) => {
                    let _ = fs::remove_file(&path);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => {}
                Err(e) => return Err(io_error(format!("cannot create {}", path.display()), e)),
            }
            attempt += 1;
            if attempt > 8 {
                return Err(Error::new(
                    ErrorKind::LocalIo,
                    format!("cannot find a free queue id in {}", self.dir.display()),
                ));
            }
        };
        let _ = lock_now(&file);
        let envelope = stored.encode();
        file.write_all(&envelope)
            .map_err(|e| io_error(format!("cannot write {}", path.display()), e))?;
        Ok(Pending {
            queue: self.clone(),
            id,
            path,
            file,
            envelope_len: envelope.len() as u64,
            size: stored.size,
            written: 0,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            committed: false,
        })
    }

    /// Every message (oldest first) and every foreign file; clears what killed writers left in
    /// `tmp/` and state files whose message is gone.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let read = fs::read_dir(&self.dir)
            .map_err(|e| io_error(format!("cannot read {}", self.dir.display()), e))?;
        let mut out = Vec::new();
        let mut states = Vec::new();
        for entry in read.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "tmp" {
                continue;
            }
            if let Some(id) = name.strip_suffix(".msg").filter(|id| is_id(id)) {
                out.push(Entry::Message {
                    id: id.to_string(),
                    state: self.state(id),
                });
            } else if let Some(id) = name.strip_suffix(".state").filter(|id| is_id(id)) {
                states.push(id.to_string());
            } else if name.starts_with(".state-") {
                // A state file's temporary name, left by a process killed while writing it.
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or_default() > STALE_TMP);
                if stale {
                    let _ = fs::remove_file(entry.path());
                }
            } else {
                out.push(Entry::Foreign { name });
            }
        }
        for id in states {
            let orphan = !self.message_path(&id).exists()
                && fs::metadata(self.state_path(&id))
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or_default() > STALE_TMP);
            if orphan {
                let _ = fs::remove_file(self.state_path(&id));
            }
        }
        self.clear_stale_tmp();
        out.sort_by(|a, b| {
            let key = |e: &Entry| match e {
                Entry::Message { id, .. } => (0, id.clone()),
                Entry::Foreign { name } => (1, name.clone()),
            };
            key(a).cmp(&key(b))
        });
        Ok(out)
    }

    fn clear_stale_tmp(&self) {
        let Ok(read) = fs::read_dir(self.dir.join("tmp")) else {
            return;
        };
        for entry in read.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > STALE_TMP);
            if !old {
                continue;
            }
            // Its writer holds the lock while it lives. Something not a regular file (a FIFO,
            // which a plain open waits on) is no message of ours, and left alone.
            if let Ok(f) = crate::config::open_regular_file(&entry.path())
                && lock_now(&f).unwrap_or(false)
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// The retry state of `id` (never tried: due now). A state file that is not a regular file
    /// (a FIFO would block the read for ever) or larger than 1 MiB is ignored
    /// with a warning naming it.
    pub fn state(&self, id: &str) -> RetryState {
        let path = self.state_path(id);
        let text = crate::config::open_regular_file(&path)
            .and_then(|f| crate::config::read_text_at_most(f, MAX_STATE_BYTES));
        match text {
            Ok(text) => RetryState::decode(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => RetryState::default(),
            Err(e) => {
                log::warn!("ignoring the retry state {}: {e}", path.display());
                RetryState::default()
            }
        }
    }

    /// Writes the retry state atomically (a temporary name, then rename). Not fsynced: losing
    /// it to a crash only means an earlier retry.
    fn write_state(&self, id: &str, state: &RetryState) -> io::Result<()> {
        let tmp = self.dir.join(format!(".state-{id}-{}", std::process::id()));
        // Created anew: whatever a killed run (or anyone) left at the name is not written
        // through (a symlink) nor waited on (a FIFO opened to write waits for a reader).
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(state.encode().as_bytes())?;
        drop(f);
        fs::rename(&tmp, self.state_path(id))
    }

    /// Takes `id` for sending. `Ok(None)`: another process holds it, or it is gone (sent by
    /// another flusher meanwhile). `Err`: it cannot be read as a queued message.
    pub fn claim(&self, id: &str) -> std::result::Result<Option<Claimed>, String> {
        let path = self.message_path(id);
        // Not waiting on a FIFO planted at the name, nor reading a device.
        let file = match crate::config::open_regular_file(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
        };
        match lock_now(&file) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(format!("cannot lock: {e}")),
        }
        // Whoever sent it before us removed the name while holding the lock: if the name is
        // gone or names another file now, what we locked is not queued any more.
        let ours = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
        match fs::metadata(&path) {
            Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {}
            _ => return Ok(None),
        }
        let mut reader = BufReader::new(file);
        let (stored, envelope_len) = Stored::decode(&mut reader)?;
        check_length(ours.len(), envelope_len, stored.size)?;
        check_digest(&mut reader, stored.size)?;
        let mut file = reader.into_inner();
        file.seek(SeekFrom::Start(envelope_len))
            .map_err(|e| format!("cannot seek: {e}"))?;
        Ok(Some(Claimed {
            queue: self.clone(),
            id: id.to_string(),
            file,
            stored,
            state: self.state(id),
        }))
    }

    /// Reads the envelope of `id` without claiming it (for listing).
    pub fn peek(&self, id: &str) -> std::result::Result<(Stored, u64), String> {
        let path = self.message_path(id);
        let file = crate::config::open_regular_file(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (stored, envelope_len) = Stored::decode(&mut BufReader::new(file))?;
        check_length(len, envelope_len, stored.size)?;
        Ok((stored, len))
    }

    /// Removes `id` (and its state). A message being sent right now cannot be removed.
    pub fn remove(&self, id: &str) -> Result<()> {
        if !is_id(id) {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("{id:?} is not a queue id (see rsend -bp)"),
            ));
        }
        let path = self.message_path(id);
        let file = crate::config::open_regular_file(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::new(ErrorKind::Usage, format!("no message {id} in the queue"))
            } else {
                io_error(format!("cannot open {}", path.display()), e)
            }
        })?;
        if !lock_now(&file).map_err(|e| io_error(format!("cannot lock {}", path.display()), e))? {
            return Err(Error::new(
                ErrorKind::Lock,
                format!("message {id} is being sent right now"),
            ));
        }
        fs::remove_file(&path)
            .map_err(|e| io_error(format!("cannot remove {}", path.display()), e))?;
        let _ = fs::remove_file(self.state_path(id));
        let _ = sync_dir(&self.dir);
        Ok(())
    }

    /// Makes removals durable (once per flush rather than once per message: a removal lost
    /// to a power failure re-sends that message, which the contract allows).
    pub fn sync(&self) {
        let _ = sync_dir(&self.dir);
    }
}

/// A message being written to the queue.
pub struct Pending {
    queue: Queue,
    id: String,
    path: PathBuf,
    file: File,
    envelope_len: u64,
    /// The message size the envelope announces.
    size: u64,
    written: u64,
    digest: ring::digest::Context,
    committed: bool,
}

impl Write for Pending {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.file.write(bytes)?;
        self.digest.update(&bytes[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Pending {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A reader over the message bytes written so far (for sending before committing).
    pub fn message_reader(&mut self) -> io::Result<impl Read + '_> {
        self.file.seek(SeekFrom::Start(self.envelope_len))?;
        Ok((&mut self.file).take(self.written))
    }

    /// Makes the message durable in the queue. The trailer is appended, the file renamed into
    /// the queue, then the file and the directory are fsynced: on a journaled file system the
    /// file's fsync commits the rename with it, so the directory's fsync finds nothing left to
    /// write (one journal commit instead of two, half the wall time on ext4). A crash before
    /// both fsyncs returned (the caller then got no success) may leave the name with bytes
    /// missing; the length and checksum checks keep such a file from ever being sent.
    /// `state` (after a failed attempt) is written before the message appears, so no flusher
    /// takes it for a message never tried.
    pub fn commit(mut self, state: Option<&RetryState>) -> Result<String> {
        if self.written != self.size {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "queue file: {} message bytes written, {} announced",
                    self.written, self.size
                ),
            ));
        }
        let digest = std::mem::replace(
            &mut self.digest,
            ring::digest::Context::new(&ring::digest::SHA256),
        )
        .finish();
        self.file
            .seek(SeekFrom::End(0))
            .and_then(|_| self.file.write_all(trailer_line(digest).as_bytes()))
            .map_err(|e| io_error(format!("cannot write {}", self.path.display()), e))?;
        if let Some(state) = state {
            self.queue
                .write_state(&self.id, state)
                .map_err(|e| io_error("cannot write the retry state".to_string(), e))?;
        }
        let target = self.queue.message_path(&self.id);
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &self.path,
            rustix::fs::CWD,
            &target,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(|e| {
            io_error(
                format!("cannot move the message to {}", target.display()),
                e.into(),
            )
        })?;
        self.committed = true;
        self.file
            .sync_all()
            .map_err(|e| io_error(format!("cannot sync {}", target.display()), e))?;
        sync_dir(&self.queue.dir)
            .map_err(|e| io_error(format!("cannot sync {}", self.queue.dir.display()), e))?;
        Ok(self.id.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A message this process holds the lock on.
#[derive(Debug)]
pub struct Claimed {
    queue: Queue,
    pub id: String,
    file: File,
    pub stored: Stored,
    pub state: RetryState,
}

impl Claimed {
    /// The message bytes (exactly `stored.size` of them).
    pub fn body(&mut self) -> impl Read + '_ {
        (&mut self.file).take(self.stored.size)
    }

    /// The relay accepted it: remove it while still holding the lock (a flusher waiting on the
    /// lock then finds the name gone).
    pub fn delivered(self) -> Result<()> {
        let path = self.queue.message_path(&self.id);
        match fs::remove_file(&path) {
            // Removed by hand while it was being sent: it is gone either way.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(format!("cannot remove {}", path.display()), e)),
            Ok(()) => {}
        }
        let _ = fs::remove_file(self.queue.state_path(&self.id));
        Ok(())
    }

    /// An attempt failed: records when to try again (or that it is held).
    pub fn failed(self, state: &RetryState) -> Result<()> {
        self.queue
            .write_state(&self.id, state)
            .map_err(|e| io_error("cannot write the retry state".to_string(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{mkfifo, within};

    fn temp_queue(tag: &str) -> (PathBuf, Queue) {
        let dir = std::env::temp_dir().join(format!(
            "postie-queue-{tag}-{}-{}",
            std::process::id(),
            new_id()
        ));
        let q = Queue::open(&dir).unwrap();
        (dir, q)
    }

    fn stored(size: u64) -> Stored {
        Stored {
            queued: 1000,
            from: "a b%c@x".into(),
            recipients: vec!["r@x".into(), "s\r\n@y".into()],
            account: Some("work".into()),
            config: Some("/home/me/my rc".into()),
            options: vec![
                ("host".into(), "h".into()),
                ("passwordeval".into(), "pass x y".into()),
            ],
            eight_bit: true,
            size,
        }
    }

    fn put(q: &Queue, body: &[u8]) -> String {
        let mut p = q.begin(&stored(body.len() as u64)).unwrap();
        p.write_all(body).unwrap();
        p.commit(None).unwrap()
    }

    #[test]
    fn a_retry_state_stays_within_its_read_bound_whatever_the_error() {
        let error = "\u{1}é".repeat(600_000);
        let state = RetryState::default().after_failure(
            &error,
            false,
            0,
            60,
            Duration::from_secs(5 * 86400),
        );
        let text = state.encode();
        assert!(
            (text.len() as u64) < MAX_STATE_BYTES,
            "{} bytes",
            text.len()
        );
        let back = RetryState::decode(&text);
        assert_eq!(back, state, "written and read back the same");
        assert!(back.last_error.unwrap().ends_with(" [...]"));
    }

    #[test]
    fn a_fifo_or_a_huge_file_as_a_state_file_is_ignored_not_waited_on() {
        // `rsend -bp`, `rsend -q` and every successful send read the state files: a FIFO at
        // one waited for a writer for ever, a huge one was read whole.
        let (dir, q) = temp_queue("state-fifo");
        let id = put(&q, b"x\r\n");
        mkfifo(&q.state_path(&id));
        let (probe, probe_id) = (q.clone(), id.clone());
        assert_eq!(
            within("state", move || probe.state(&probe_id)),
            RetryState::default()
        );
        let probe_dir = dir.clone();
        assert!(within("any_waiting", move || Queue::any_waiting(
            &probe_dir
        )));
        fs::remove_file(q.state_path(&id)).unwrap();
        let held = RetryState {
            held: true,
            ..RetryState::default()
        };
        let mut big = held.encode();
        big.push_str(&"x".repeat(MAX_STATE_BYTES as usize));
        fs::write(q.state_path(&id), big).unwrap();
        assert_eq!(q.state(&id), RetryState::default());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fifo_as_a_queued_message_is_unreadable_not_waited_on() {
        // A FIFO at ID.msg hung `rsend -q` (claim), `rsend -bp` (peek) and `rsend -q -R ID`
        // style removal alike.
        let (dir, q) = temp_queue("msg-fifo");
        let id = new_id();
        let path = q.message_path(&id);
        mkfifo(&path);
        let (probe, probe_id) = (q.clone(), id.clone());
        let claimed = within("claim", move || probe.claim(&probe_id).map(|_| ()));
        let shown = claimed.expect_err("a FIFO is no queued message");
        assert!(
            shown.contains(&path.display().to_string()) && shown.contains("FIFO"),
            "{shown}"
        );
        let (probe, probe_id) = (q.clone(), id.clone());
        let peeked = within("peek", move || probe.peek(&probe_id).map(|_| ()));
        let shown = peeked.expect_err("a FIFO is no queued message");
        assert!(shown.contains("FIFO"), "{shown}");
        let (probe, probe_id) = (q.clone(), id.clone());
        let removed = within("remove", move || {
            probe.remove(&probe_id).map_err(|e| e.chain())
        });
        let shown = removed.expect_err("a FIFO is no queued message");
        assert!(
            shown.contains(&path.display().to_string()) && shown.contains("FIFO"),
            "{shown}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_old_fifo_in_tmp_is_not_waited_on() {
        // Listing clears what killed writers left in tmp/, opening each old file to test its
        // writer's lock: a FIFO there hung every `rsend -bp` and `rsend -q`.
        let (dir, q) = temp_queue("tmp-fifo");
        let fifo = dir.join("tmp").join(new_id());
        mkfifo(&fifo);
        let old = rustix::fs::Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &fifo,
            &rustix::fs::Timestamps {
                last_access: old,
                last_modification: old,
            },
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        let probe = q.clone();
        let listed = within("entries", move || probe.entries().map(|e| e.len()));
        assert_eq!(listed.unwrap(), 0);
        // Not ours: left for whoever made it.
        assert!(fs::symlink_metadata(&fifo).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn envelope_round_trips_every_byte() {
        let s = stored(5);
        let bytes = s.encode();
        let (back, len) = Stored::decode(&mut &bytes[..]).unwrap();
        assert_eq!(back, s);
        assert_eq!(len, bytes.len() as u64);
    }

    #[test]
    fn foreign_and_damaged_envelopes_are_errors() {
        for bad in [
            &b""[..],
            b"From someone\n",
            b"postie-queue 1\nqueued 1\nsize 3\n",
            b"postie-queue 1\nqueued 1\nrcpt a@b\nsize x\nend\n",
            b"postie-queue 1\nqueued 1\nsize 3\nend\n",
            b"postie-queue 1\nqueued 1\nrcpt a%Zb\nsize 3\nend\n",
            b"postie-queue 1\nqueued 1\nrcpt a\nwhat 3\nend\n",
        ] {
            assert!(
                Stored::decode(&mut &bad[..]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn commit_claim_deliver() {
        let (dir, q) = temp_queue("claim");
        let id = put(&q, b"Subject: x\r\n\r\nhello\r\n");
        assert!(is_id(&id), "{id}");
        let mode = fs::metadata(dir.join(format!("{id}.msg")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let mut c = q.claim(&id).unwrap().unwrap();
        // A second claimer (another open file description) is refused while we hold it.
        assert!(q.claim(&id).unwrap().is_none());
        let mut body = Vec::new();
        c.body().read_to_end(&mut body).unwrap();
        assert_eq!(body, b"Subject: x\r\n\r\nhello\r\n");
        c.delivered().unwrap();
        assert!(q.claim(&id).unwrap().is_none());
        assert!(q.entries().unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn truncated_message_is_refused_and_foreign_files_listed() {
        let (dir, q) = temp_queue("bad");
        let id = put(&q, b"0123456789");
        let path = dir.join(format!("{id}.msg"));
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        assert!(q.claim(&id).unwrap_err().contains("truncated"));
        fs::write(dir.join("notes.txt"), "x").unwrap();
        let entries = q.entries().unwrap();
        assert!(matches!(&entries[0], Entry::Message { id: i, .. } if *i == id));
        assert!(matches!(&entries[1], Entry::Foreign { name } if name == "notes.txt"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_damaged_byte_fails_the_checksum() {
        let (dir, q) = temp_queue("sum");
        let id = put(&q, b"Subject: x\r\n\r\nhello\r\n");
        let path = dir.join(format!("{id}.msg"));
        let mut data = fs::read(&path).unwrap();
        let at = data.len() - TRAILER_LEN as usize - 3;
        data[at] = 0;
        fs::write(&path, &data).unwrap();
        assert!(q.claim(&id).unwrap_err().contains("checksum"));
        // The listing (which reads only the envelope) still shows it.
        assert!(q.peek(&id).is_ok());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn commit_refuses_a_short_message() {
        let (dir, q) = temp_queue("short");
        let mut p = q.begin(&stored(10)).unwrap();
        p.write_all(b"12345").unwrap();
        assert_eq!(p.commit(None).unwrap_err().kind(), ErrorKind::Internal);
        assert!(q.entries().unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dropped_pending_leaves_nothing() {
        let (dir, q) = temp_queue("drop");
        let p = q.begin(&stored(0)).unwrap();
        drop(p);
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn backoff_doubles_caps_and_holds() {
        let day = Duration::from_secs(86400);
        let s = RetryState::default().after_failure("451 busy", false, 0, 100, day);
        assert_eq!((s.attempts, s.next, s.held), (1, 160, false));
        let s = s.after_failure("451", false, 0, 200, day);
        assert_eq!(s.next, 320);
        let mut t = s;
        for _ in 0..30 {
            t = t.after_failure("451", false, 0, 1000, day);
        }
        assert_eq!(t.next, 1000 + MAX_RETRY_DELAY);
        assert!(t.after_failure("451", false, 0, 86400, day).held);
        assert!(
            RetryState::default()
                .after_failure("550", true, 0, 1, day)
                .held
        );
        let back = RetryState::decode(&t.encode());
        assert_eq!(back, t);
    }

    #[test]
    fn insecure_queue_directory_is_refused() {
        let (dir, q) = temp_queue("mode");
        drop(q);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            Queue::open(&dir).unwrap_err().kind(),
            ErrorKind::InsecureConfig
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
