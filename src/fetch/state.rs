//! rfetch's per-message "already seen" store: POP3 UIDL strings (RFC 1939 §7) and IMAP UIDs
//! per folder and UIDVALIDITY (RFC 3501 §2.3.1.1), keyed by account (protocol, server, user).
//!
//! Durability: changes are made in memory and written by [`SeenStore::commit`], which writes the
//! whole file to a temp file in the same directory, fsyncs it, renames it over the old one and
//! fsyncs the directory. A SIGKILL at any point leaves either the old or the new file, never a
//! torn one. Callers batch: record a group of UIDs, commit once per batch. The Maildir batch
//! journal's group commit writes a `Snapshot` with the store's lock released; writes of the
//! file are numbered when their content is taken, and one that finishes after a newer one
//! reached the file is dropped (the newer content holds everything it held), so the file never
//! goes back to an older state.
//!
//! Between two commits, each message a target confirmed is also appended to the seen log
//! (`<statefile>.seen-log`, [`SeenStore::pop3_delivered`], [`SeenStore::imap_delivered`]): one
//! `write(2)` of one line to an append-only file, no fsync. Once the write returned, the line is
//! in the kernel, so a SIGKILL right after cannot make the message be fetched again; surviving a
//! power loss is left to the batch's commit, which fsyncs the state after the target's own
//! durability. [`SeenStore::open`] replays the log over the file (a last line without its newline
//! was cut while written and is ignored) and the next commit, which holds everything replayed,
//! removes it. The log's lines are the file's record lines, one message per line; a line
//! `imap SERVER USER FOLDER UIDVALIDITY -` there records a UIDVALIDITY change, and an `imap` line
//! of another UIDVALIDITY than the folder's is skipped, so a log that reappears after a power loss
//! (its removal is made durable only by the next commit's directory fsync) cannot reset a folder.
//!
//! Multidrop forwarding to SMTP/LMTP can be accepted for some recipients and refused temporarily
//! for others. The recipients that were served (accepted, or refused for good) are recorded per
//! message (`pop3-rcpt`, `imap-rcpt`, logged the same way), so the next poll sends the message
//! to the remaining recipients only; recording the message as delivered forgets them.
//!
//! Corruption policy: a state file that cannot be read or parsed is an error naming the file
//! and line; it is never silently treated as empty, because in `keep` mode that would re-deliver
//! every message on the server. The user deletes the file to start over. A missing file is an
//! empty store.
//!
//! Format (text, one record per line, fields separated by one space, each field percent-encoded
//! for `%`, space, and control characters):
//!
//! ```text
//! postie-seen 1
//! pop3 SERVER USER UID
//! imap SERVER USER FOLDER UIDVALIDITY 1:5,7,9:12
//! pop3-rcpt SERVER USER UID RECIPIENT
//! imap-rcpt SERVER USER FOLDER UIDVALIDITY UID RECIPIENT
//! ```
//!
//! A file without the `postie-seen` first line is read as fetchmail's `.fetchids` (`user@server
//! UID` per line, POP3); the next commit rewrites it in the format above.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Largest state file read (bytes).
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Longest line read (bytes).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Longest POP3 UID kept. RFC 1939 allows 70 characters; fetchmail's IDLEN was 128
/// (CVE-2005-2335). Longer UIDs are refused rather than truncated, so two cannot collide.
pub const MAX_UID_BYTES: usize = 512;
/// Ranges per `imap` line when writing, so lines stay well below [`MAX_LINE_BYTES`].
const RANGES_PER_LINE: usize = 2000;

const MAGIC: &str = "postie-seen 1";

/// The protocol part of an account key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateProtocol {
    Pop3,
    Imap,
}

/// Which mailbox the UIDs belong to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountKey {
    pub protocol: StateProtocol,
    pub server: String,
    pub user: String,
}

impl AccountKey {
    pub fn pop3(server: impl Into<String>, user: impl Into<String>) -> Self {
        AccountKey {
            protocol: StateProtocol::Pop3,
            server: server.into(),
            user: user.into(),
        }
    }

    pub fn imap(server: impl Into<String>, user: impl Into<String>) -> Self {
        AccountKey {
            protocol: StateProtocol::Imap,
            server: server.into(),
            user: user.into(),
        }
    }
}

/// What [`SeenStore::imap_select`] found out about a folder's UIDVALIDITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UidValidityCheck {
    /// No UIDs recorded for this folder yet.
    New,
    /// Same UIDVALIDITY as recorded: the recorded UIDs stay valid.
    Unchanged,
    /// UIDVALIDITY changed: the `dropped` recorded UIDs no longer mean anything and were
    /// forgotten (in memory; the next commit makes it durable).
    Changed { old: u32, dropped: usize },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ImapFolder {
    uidvalidity: u32,
    uids: BTreeSet<u32>,
    /// Recipients already served of messages not yet delivered to all of theirs.
    rcpts: BTreeMap<u32, BTreeSet<String>>,
}

impl ImapFolder {
    fn new(uidvalidity: u32) -> Self {
        ImapFolder {
            uidvalidity,
            ..ImapFolder::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AccountSeen {
    pop3: BTreeSet<String>,
    /// Recipients already served of messages not yet delivered to all of theirs.
    pop3_rcpts: BTreeMap<String, BTreeSet<String>>,
    imap: BTreeMap<String, ImapFolder>,
}

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write state file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state file {}:{line}: {problem} (delete the file to start over; messages kept on the server will then be fetched again)", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("state file {} is larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("uid of {len} bytes is longer than the {MAX_UID_BYTES} bytes allowed")]
    UidTooLong { len: usize },
    #[error("uid {0:?} contains characters a uid may not hold")]
    UidInvalid(String),
}

impl From<StateError> for crate::Error {
    fn from(err: StateError) -> Self {
        let kind = match &err {
            StateError::UidTooLong { .. } | StateError::UidInvalid(_) => crate::ErrorKind::Protocol,
            _ => crate::ErrorKind::LocalIo,
        };
        crate::Error::with_source(kind, "cannot use the seen-message state", err)
    }
}

/// The Maildir batch journal's group commit bookkeeping (`journal::publish_batch`), kept in the [`SeenStore`] so that the state lock guards it.
/// Batches are numbered in the order they were recorded in memory; a snapshot taken after batch
/// `n` was recorded holds batches `1..=n`.
#[derive(Debug, Default)]
pub(super) struct CommitGroup {
    /// The number of the last batch recorded.
    pub(super) recorded: u64,
    /// Every batch up to this number is durable in the state file.
    pub(super) durable: u64,
    /// The last batch of a group whose state write failed.
    pub(super) failed: u64,
    /// A leader is writing a snapshot with the lock released.
    pub(super) writing: bool,
    /// Wakes the batches waiting for the write in flight (always used with the store's lock).
    pub(super) written: Arc<Condvar>,
    /// Snapshots written (or committed under the lock) by leaders.
    #[cfg(test)]
    pub(super) commits: u64,
}

/// The seen-message store, loaded in memory.
#[derive(Debug)]
pub struct SeenStore {
    path: PathBuf,
    accounts: BTreeMap<AccountKey, AccountSeen>,
    dirty: bool,
    /// The seen log, open for appending once something was logged since the last commit.
    log: Option<File>,
    /// A seen log exists on disk (replayed at open, or written since): the commit removes it.
    log_exists: bool,
    /// Which snapshots reached the file (shared with the snapshots being written).
    writes: Arc<Mutex<WriteOrder>>,
    /// The number of the last snapshot taken.
    snapshots: u64,
    /// The Maildir batch journal's group commit, guarded by the same lock as the store.
    pub(super) group: CommitGroup,
}

/// The snapshots of one state file that reached it. Snapshots are numbered in the order they were
/// taken; writes can finish in another order, and an older one renamed over a newer one would
/// forget what only the newer one holds.
#[derive(Debug, Default)]
struct WriteOrder {
    /// The newest snapshot renamed over the file.
    renamed: u64,
    /// The newest snapshot renamed and made durable (its directory synced).
    durable: u64,
}

/// The store's content at one moment, to write with the store's lock released
/// ([`SeenStore::begin_commit`]).
#[derive(Debug)]
pub(super) struct Snapshot {
    path: PathBuf,
    content: String,
    number: u64,
    writes: Arc<Mutex<WriteOrder>>,
}

impl Snapshot {
    /// Writes the snapshot durably unless a newer one is already durable. `Ok` means the file
    /// holds at least this snapshot's content, durably.
    pub(super) fn write(self) -> Result<(), StateError> {
        let werr = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        // The slow part, the content's fsync, runs without any lock, beside other writers.
        let tmp = write_temp(&self.path, &self.content, FaultPoint::None).map_err(werr)?;
        let result = (|| {
            let mut order = self
                .writes
                .lock()
                .map_err(|_| io::Error::other("state write order lock poisoned"))?;
            if order.durable >= self.number {
                return Ok(false);
            }
            if order.renamed > self.number {
                return Err(io::Error::other(
                    "a newer write of the state file did not complete",
                ));
            }
            install(&self.path, &tmp, FaultPoint::None, || {
                order.renamed = self.number;
            })?;
            order.durable = self.number;
            Ok(true)
        })();
        if !matches!(result, Ok(true)) {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|_| ()).map_err(werr)
    }
}

/// The seen log of a state file: `<statefile>.seen-log`.
pub fn seen_log_path(state_path: &Path) -> PathBuf {
    let mut name = state_path.as_os_str().to_owned();
    name.push(".seen-log");
    PathBuf::from(name)
}

impl SeenStore {
    /// Loads the store at `path`. A missing file is an empty store; an unreadable, oversized or
    /// malformed one is an error.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StateError> {
        let path = path.into();
        let mut accounts = match read_bounded(&path) {
            Ok(text) => parse(&path, &text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                return Err(StateError::TooLarge { path });
            }
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let log_path = seen_log_path(&path);
        let log_exists = match read_bounded(&log_path) {
            Ok(text) => {
                let applied = replay(&log_path, &text, &mut accounts);
                if applied > 0 {
                    log::info!(
                        "seen log {}: {applied} messages delivered by an interrupted run recorded",
                        log_path.display()
                    );
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                return Err(StateError::TooLarge { path: log_path });
            }
            Err(source) => {
                return Err(StateError::Read {
                    path: log_path,
                    source,
                });
            }
        };
        Ok(SeenStore {
            path,
            accounts,
            // A replayed log is removed by the next commit, which holds what it recorded.
            dirty: log_exists,
            log: None,
            log_exists,
            writes: Arc::default(),
            snapshots: 0,
            group: CommitGroup::default(),
        })
    }

    /// Appends one record line to the seen log: a single `write(2)` on an `O_APPEND` file, so the
    /// line reaches the kernel whole before this returns. No fsync (see the module comment).
    fn append_log(&mut self, line: &str) -> Result<(), StateError> {
        let log_path = seen_log_path(&self.path);
        let werr = |source| StateError::Write {
            path: seen_log_path(&self.path),
            source,
        };
        if self.log.is_none() {
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&log_path)
                .map_err(werr)?;
            self.log = Some(f);
            self.log_exists = true;
        }
        let Some(f) = self.log.as_mut() else {
            return Ok(());
        };
        f.write_all(line.as_bytes()).map_err(werr)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether there are uncommitted changes.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    // ---- POP3 ----

    pub fn pop3_is_seen(&self, account: &AccountKey, uid: &str) -> bool {
        self.accounts
            .get(account)
            .is_some_and(|a| a.pop3.contains(uid))
    }

    /// Records UIDs as seen (in memory until [`commit`](Self::commit)).
    pub fn pop3_record<'a>(
        &mut self,
        account: &AccountKey,
        uids: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StateError> {
        let entry = self.accounts.entry(account.clone()).or_default();
        for uid in uids {
            check_uid(uid)?;
            if entry.pop3.insert(uid.to_owned()) {
                self.dirty = true;
            }
            if entry.pop3_rcpts.remove(uid).is_some() {
                self.dirty = true;
            }
        }
        Ok(())
    }

    /// Records one message a target just confirmed, in memory and in the seen log, so that a
    /// kill from now on cannot make it be fetched again.
    pub fn pop3_delivered(&mut self, account: &AccountKey, uid: &str) -> Result<(), StateError> {
        if self.pop3_is_seen(account, uid) {
            return Ok(());
        }
        self.pop3_record(account, [uid])?;
        self.append_log(&record_line("pop3", account, &[uid]))
    }

    /// Records that the message `uid` was served to `recipients` (accepted, or refused for
    /// good) while others of its recipients still wait; logged like [`pop3_delivered`].
    ///
    /// [`pop3_delivered`]: Self::pop3_delivered
    pub fn pop3_served(
        &mut self,
        account: &AccountKey,
        uid: &str,
        recipients: &[String],
    ) -> Result<(), StateError> {
        check_uid(uid)?;
        let entry = self.accounts.entry(account.clone()).or_default();
        let served = entry.pop3_rcpts.entry(uid.to_owned()).or_default();
        let lines = new_served_records(served, recipients, |r| {
            record_line("pop3-rcpt", account, &[uid, r])
        });
        self.log_served(&lines)
    }

    /// Logs the records [`new_served_records`] made, if any.
    fn log_served(&mut self, lines: &str) -> Result<(), StateError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.dirty = true;
        self.append_log(lines)
    }

    /// The recipients already served of a message not yet delivered to all of its recipients.
    pub fn pop3_served_to(&self, account: &AccountKey, uid: &str) -> Vec<String> {
        self.accounts
            .get(account)
            .and_then(|a| a.pop3_rcpts.get(uid))
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets the UIDs for which `keep` returns false — call it with the server's current
    /// UIDL list after a poll so deleted messages do not accumulate (fetchmail drops them too).
    pub fn pop3_retain(&mut self, account: &AccountKey, mut keep: impl FnMut(&str) -> bool) {
        if let Some(a) = self.accounts.get_mut(account) {
            let before = (a.pop3.len(), a.pop3_rcpts.len());
            a.pop3.retain(|u| keep(u));
            a.pop3_rcpts.retain(|u, _| keep(u));
            if (a.pop3.len(), a.pop3_rcpts.len()) != before {
                self.dirty = true;
            }
        }
    }

    /// The recorded POP3 UIDs of an account.
    pub fn pop3_uids(&self, account: &AccountKey) -> impl Iterator<Item = &str> {
        self.accounts
            .get(account)
            .into_iter()
            .flat_map(|a| a.pop3.iter().map(String::as_str))
    }

    // ---- IMAP ----

    /// Tells the store the folder's current UIDVALIDITY (call after SELECT/EXAMINE). A change
    /// forgets the folder's recorded UIDs.
    pub fn imap_select(
        &mut self,
        account: &AccountKey,
        folder: &str,
        uidvalidity: u32,
    ) -> UidValidityCheck {
        let entry = self.accounts.entry(account.clone()).or_default();
        match entry.imap.get_mut(folder) {
            None => UidValidityCheck::New,
            Some(f) if f.uidvalidity == uidvalidity => UidValidityCheck::Unchanged,
            Some(f) => {
                let old = f.uidvalidity;
                let dropped = f.uids.len();
                *f = ImapFolder::new(uidvalidity);
                self.dirty = true;
                // Logged, so the messages this run logs under the new UIDVALIDITY count after a
                // kill; failing that, they would be fetched once more.
                let line = record_line("imap", account, &[folder, &uidvalidity.to_string(), "-"]);
                if let Err(e) = self.append_log(&line) {
                    log::warn!("{e}");
                }
                UidValidityCheck::Changed { old, dropped }
            }
        }
    }

    /// Whether `uid` is recorded for this folder under this UIDVALIDITY.
    pub fn imap_is_seen(
        &self,
        account: &AccountKey,
        folder: &str,
        uidvalidity: u32,
        uid: u32,
    ) -> bool {
        self.accounts
            .get(account)
            .and_then(|a| a.imap.get(folder))
            .is_some_and(|f| f.uidvalidity == uidvalidity && f.uids.contains(&uid))
    }

    /// The UIDVALIDITY recorded for a folder, if any.
    pub fn imap_uidvalidity(&self, account: &AccountKey, folder: &str) -> Option<u32> {
        self.accounts
            .get(account)
            .and_then(|a| a.imap.get(folder))
            .map(|f| f.uidvalidity)
    }

    /// Records UIDs as seen under `uidvalidity` (a different recorded UIDVALIDITY is replaced
    /// and its UIDs forgotten).
    pub fn imap_record(
        &mut self,
        account: &AccountKey,
        folder: &str,
        uidvalidity: u32,
        uids: impl IntoIterator<Item = u32>,
    ) {
        let entry = self.accounts.entry(account.clone()).or_default();
        let f = entry
            .imap
            .entry(folder.to_owned())
            .or_insert_with(|| ImapFolder::new(uidvalidity));
        if f.uidvalidity != uidvalidity {
            *f = ImapFolder::new(uidvalidity);
            self.dirty = true;
        }
        for uid in uids {
            if f.uids.insert(uid) {
                self.dirty = true;
            }
            if f.rcpts.remove(&uid).is_some() {
                self.dirty = true;
            }
        }
    }

    /// Records one message a target just confirmed, in memory and in the seen log (see
    /// [`pop3_delivered`](Self::pop3_delivered)). A UID of another UIDVALIDITY than the
    /// folder's recorded one is not recorded: it would forget the folder's current UIDs.
    pub fn imap_delivered(
        &mut self,
        account: &AccountKey,
        folder: &str,
        uidvalidity: u32,
        uid: u32,
    ) -> Result<(), StateError> {
        match self.imap_uidvalidity(account, folder) {
            Some(v) if v != uidvalidity => return Ok(()),
            _ if self.imap_is_seen(account, folder, uidvalidity, uid) => return Ok(()),
            _ => {}
        }
        self.imap_record(account, folder, uidvalidity, [uid]);
        let (uidvalidity, uid) = (uidvalidity.to_string(), uid.to_string());
        self.append_log(&record_line("imap", account, &[folder, &uidvalidity, &uid]))
    }

    /// Records that message `uid` was served to `recipients` (see
    /// [`pop3_served`](Self::pop3_served)).
    pub fn imap_served(
        &mut self,
        account: &AccountKey,
        folder: &str,
        uidvalidity: u32,
        uid: u32,
        recipients: &[String],
    ) -> Result<(), StateError> {
        if self
            .imap_uidvalidity(account, folder)
            .is_some_and(|v| v != uidvalidity)
        {
            return Ok(());
        }
        let entry = self.accounts.entry(account.clone()).or_default();
        let f = entry
            .imap
            .entry(folder.to_owned())
            .or_insert_with(|| ImapFolder::new(uidvalidity));
        let served = f.rcpts.entry(uid).or_default();
        let (uidvalidity, uid) = (uidvalidity.to_string(), uid.to_string());
        let lines = new_served_records(served, recipients, |r| {
            record_line("imap-rcpt", account, &[folder, &uidvalidity, &uid, r])
        });
        self.log_served(&lines)
    }

    /// The recipients already served of a message not yet delivered to all of its recipients.
    pub fn imap_served_to(
        &self,
        account: &AccountKey,
        folder: &str,
        uidvalidity: u32,
        uid: u32,
    ) -> Vec<String> {
        self.accounts
            .get(account)
            .and_then(|a| a.imap.get(folder))
            .filter(|f| f.uidvalidity == uidvalidity)
            .and_then(|f| f.rcpts.get(&uid))
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets UIDs of a folder for which `keep` returns false (expunged messages).
    pub fn imap_retain(
        &mut self,
        account: &AccountKey,
        folder: &str,
        mut keep: impl FnMut(u32) -> bool,
    ) {
        if let Some(f) = self
            .accounts
            .get_mut(account)
            .and_then(|a| a.imap.get_mut(folder))
        {
            let before = (f.uids.len(), f.rcpts.len());
            f.uids.retain(|u| keep(*u));
            f.rcpts.retain(|u, _| keep(*u));
            if (f.uids.len(), f.rcpts.len()) != before {
                self.dirty = true;
            }
        }
    }

    // ---- durability ----

    /// Writes the store durably (temp file, fsync, rename, fsync dir), then removes the seen
    /// log, which the file now covers. Does nothing when there are no changes. When this
    /// returns `Ok`, everything recorded so far survives a crash.
    pub fn commit(&mut self) -> Result<(), StateError> {
        if !self.dirty {
            return Ok(());
        }
        self.write_now()
    }

    /// [`commit`](Self::commit) without the shortcut.
    fn write_now(&mut self) -> Result<(), StateError> {
        self.snapshot().write()?;
        self.dirty = false;
        if self.log_exists {
            // Closed first: a line appended after the removal must go to a new file.
            self.log = None;
            let log_path = seen_log_path(&self.path);
            match fs::remove_file(&log_path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StateError::Write {
                        path: log_path,
                        source,
                    });
                }
            }
            self.log_exists = false;
        }
        Ok(())
    }

    /// Takes a numbered snapshot of everything recorded so far.
    fn snapshot(&mut self) -> Snapshot {
        self.snapshots += 1;
        Snapshot {
            path: self.path.clone(),
            content: self.render(),
            number: self.snapshots,
            writes: Arc::clone(&self.writes),
        }
    }

    /// Records what a Maildir batch published, for the batch journal's group commit, which makes
    /// it durable itself: the store's dirty flag is left as it was, so the other callers'
    /// commits are not made to write for it.
    pub(super) fn record_for_group_commit<T>(&mut self, record: impl FnOnce(&mut Self) -> T) -> T {
        let was_dirty = self.dirty;
        let result = record(self);
        self.dirty = was_dirty;
        result
    }

    /// Starts a group commit to finish with the lock released: the snapshot to write, or `None`
    /// when the commit had to be made here. It is made here while a seen log exists: the log is
    /// removed after a write that holds every line in it, and its lines are appended under this
    /// lock. A snapshot leaves the store as dirty as it was: changes of other callers it holds
    /// may not be durable yet when those callers commit, so their commit writes them again.
    pub(super) fn begin_commit(&mut self) -> Result<Option<Snapshot>, StateError> {
        if self.log_exists {
            self.write_now()?;
            return Ok(None);
        }
        Ok(Some(self.snapshot()))
    }

    /// A snapshot from [`begin_commit`](Self::begin_commit) was not written: the next commit
    /// writes what it held.
    pub(super) fn commit_failed(&mut self) {
        self.dirty = true;
    }

    /// The file content for the current state, for tests that leave a snapshot where a kill
    /// would.
    #[cfg(test)]
    pub(super) fn render_for_test(&self) -> String {
        self.render()
    }

    /// The file content for the current state.
    fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(MAGIC);
        out.push('\n');
        for (key, seen) in &self.accounts {
            for uid in &seen.pop3 {
                out.push_str(&record_line("pop3", key, &[uid]));
            }
            for (uid, rcpts) in &seen.pop3_rcpts {
                for r in rcpts {
                    out.push_str(&record_line("pop3-rcpt", key, &[uid, r]));
                }
            }
            for (folder, f) in &seen.imap {
                let ranges = to_ranges(&f.uids);
                let uidvalidity = f.uidvalidity.to_string();
                if ranges.is_empty() {
                    out.push_str(&record_line("imap", key, &[folder, &uidvalidity, "-"]));
                }
                for chunk in ranges.chunks(RANGES_PER_LINE) {
                    let uids = chunk.join(",");
                    out.push_str(&record_line("imap", key, &[folder, &uidvalidity, &uids]));
                }
                for (uid, rcpts) in &f.rcpts {
                    let uid = uid.to_string();
                    for r in rcpts {
                        let fields = [folder.as_str(), &uidvalidity, &uid, r];
                        out.push_str(&record_line("imap-rcpt", key, &fields));
                    }
                }
            }
        }
        out
    }
}

/// One record line of the file and the seen log: `KIND SERVER USER FIELD...`, each field
/// percent-encoded (numbers, UID ranges and `-` pass unchanged).
fn record_line(kind: &str, account: &AccountKey, fields: &[&str]) -> String {
    let mut line = format!(
        "{kind} {} {}",
        encode(&account.server),
        encode(&account.user)
    );
    for field in fields {
        line.push(' ');
        line.push_str(&encode(field));
    }
    line.push('\n');
    line
}

fn check_uid(uid: &str) -> Result<(), StateError> {
    if uid.len() > MAX_UID_BYTES {
        return Err(StateError::UidTooLong { len: uid.len() });
    }
    if uid.is_empty() || uid.contains(['\n', '\r', '\0']) {
        return Err(StateError::UidInvalid(uid.chars().take(80).collect()));
    }
    Ok(())
}

fn read_bounded(path: &Path) -> io::Result<String> {
    // Not waiting on a FIFO, nor reading a device (a symlink to /dev/zero) up to the bound.
    let file = crate::config::open_regular_file(path)?;
    let bytes = crate::config::read_bytes_at_most(file, MAX_FILE_BYTES).map_err(|e| {
        // Reading raw bytes, its only InvalidData is the bound.
        if e.kind() == io::ErrorKind::InvalidData {
            io::Error::from(io::ErrorKind::FileTooLarge)
        } else {
            e
        }
    })?;
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn parse(path: &Path, text: &str) -> Result<BTreeMap<AccountKey, AccountSeen>, StateError> {
    let corrupt = |line: usize, problem: String| StateError::Corrupt {
        path: path.to_owned(),
        line,
        problem,
    };
    let mut accounts: BTreeMap<AccountKey, AccountSeen> = BTreeMap::new();
    let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l));
    let native = text.split('\n').next() == Some(MAGIC);
    if native {
        lines.next();
    }
    for (no, line) in lines {
        if line.len() > MAX_LINE_BYTES {
            return Err(corrupt(
                no,
                format!("line longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        if !native {
            // fetchmail .fetchids: "user@server uid"
            let [account, uid] = fields.as_slice() else {
                return Err(corrupt(
                    no,
                    "expected \"user@server uid\" (fetchmail .fetchids) or a postie-seen header"
                        .into(),
                ));
            };
            let Some((user, server)) = account.rsplit_once('@') else {
                return Err(corrupt(no, format!("{account:?} has no @server")));
            };
            check_uid(uid).map_err(|e| corrupt(no, e.to_string()))?;
            accounts
                .entry(AccountKey::pop3(server, user))
                .or_default()
                .pop3
                .insert((*uid).to_owned());
            continue;
        }
        apply_record(&mut accounts, &fields, Source::File).map_err(|p| corrupt(no, p))?;
    }
    Ok(accounts)
}

/// Where a record line comes from: the state file, or the seen log replayed over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    File,
    Log,
}

/// Replays the seen log `text` over `accounts`; returns how many messages it recorded as
/// delivered. Only complete lines count: a last line without its newline was cut while written.
/// A line that does not parse is skipped with a warning: the cost of skipping it is at most one
/// message fetched again, while refusing the whole log would fetch again all of them.
fn replay(path: &Path, text: &str, accounts: &mut BTreeMap<AccountKey, AccountSeen>) -> usize {
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    let mut applied = 0;
    for (i, line) in complete.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let delivery =
            matches!(fields.first(), Some(&"pop3" | &"imap")) && fields.last() != Some(&"-");
        match apply_record(accounts, &fields, Source::Log) {
            Ok(()) if delivery => applied += 1,
            Ok(()) => {}
            Err(problem) => log::warn!(
                "seen log {}:{}: {problem}; line ignored",
                path.display(),
                i + 1
            ),
        }
    }
    applied
}

/// Applies one native record line (see the module comment for the differences between the file
/// and the log).
fn apply_record(
    accounts: &mut BTreeMap<AccountKey, AccountSeen>,
    fields: &[&str],
    source: Source,
) -> Result<(), String> {
    let imap_uid = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|&u| u > 0)
            .ok_or_else(|| format!("bad uid {v:?}"))
    };
    match fields {
        ["pop3", server, user, uid] => {
            let (seen, uid) = pop3_message(accounts, server, user, uid)?;
            seen.pop3_rcpts.remove(&uid);
            seen.pop3.insert(uid);
        }
        ["pop3-rcpt", server, user, uid, rcpt] => {
            let (seen, uid) = pop3_message(accounts, server, user, uid)?;
            if !seen.pop3.contains(&uid) {
                seen.pop3_rcpts.entry(uid).or_default().insert(dec(rcpt)?);
            }
        }
        ["imap", server, user, folder, v, ranges] => {
            let mut uids = BTreeSet::new();
            if *ranges != "-" {
                parse_ranges(ranges, &mut uids).ok_or_else(|| format!("bad uid set {ranges:?}"))?;
            }
            let Some(f) = imap_folder(accounts, [server, user, folder, v], source, *ranges == "-")?
            else {
                return Ok(());
            };
            for uid in &uids {
                f.rcpts.remove(uid);
            }
            f.uids.extend(uids);
        }
        ["imap-rcpt", server, user, folder, v, uid, rcpt] => {
            let uid = imap_uid(uid)?;
            let Some(f) = imap_folder(accounts, [server, user, folder, v], source, false)? else {
                return Ok(());
            };
            if !f.uids.contains(&uid) {
                f.rcpts.entry(uid).or_default().insert(dec(rcpt)?);
            }
        }
        _ => return Err("unrecognised record".into()),
    }
    Ok(())
}

fn dec(field: &str) -> Result<String, String> {
    decode(field).ok_or_else(|| format!("bad encoding in {field:?}"))
}

/// The account and the checked UID a POP3 record line names.
fn pop3_message<'a>(
    accounts: &'a mut BTreeMap<AccountKey, AccountSeen>,
    server: &str,
    user: &str,
    uid: &str,
) -> Result<(&'a mut AccountSeen, String), String> {
    let uid = dec(uid)?;
    check_uid(&uid).map_err(|e| e.to_string())?;
    let account = AccountKey::pop3(dec(server)?, dec(user)?);
    Ok((accounts.entry(account).or_default(), uid))
}

/// The folder an IMAP record line names (`[server, user, folder, uidvalidity]`), created with
/// the line's UIDVALIDITY. A line of another UIDVALIDITY than the folder's is an error in the
/// file; in the log it is `None` (a message of an older UIDVALIDITY means nothing now), unless
/// it is the log's UIDVALIDITY change (`restart`): the folder starts over, as it did in memory.
fn imap_folder<'a>(
    accounts: &'a mut BTreeMap<AccountKey, AccountSeen>,
    [server, user, folder, v]: [&str; 4],
    source: Source,
    restart: bool,
) -> Result<Option<&'a mut ImapFolder>, String> {
    let uidvalidity = v
        .parse::<u32>()
        .map_err(|_| format!("bad uidvalidity {v:?}"))?;
    let seen = accounts
        .entry(AccountKey::imap(dec(server)?, dec(user)?))
        .or_default();
    let f = seen
        .imap
        .entry(dec(folder)?)
        .or_insert_with(|| ImapFolder::new(uidvalidity));
    if f.uidvalidity != uidvalidity {
        match source {
            Source::File => return Err("two uidvalidity values for one folder".into()),
            Source::Log if restart => *f = ImapFolder::new(uidvalidity),
            Source::Log => return Ok(None),
        }
    }
    Ok(Some(f))
}

/// Largest IMAP UID range expanded from a file (a corrupt `1:4294967295` must not allocate
/// billions of entries).
const MAX_RANGE_SPAN: u32 = 10_000_000;

fn parse_ranges(text: &str, into: &mut BTreeSet<u32>) -> Option<()> {
    for part in text.split(',') {
        let (lo, hi) = match part.split_once(':') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let v = part.parse::<u32>().ok()?;
                (v, v)
            }
        };
        if lo == 0 || hi < lo || hi - lo > MAX_RANGE_SPAN {
            return None;
        }
        into.extend(lo..=hi);
    }
    Some(())
}

fn to_ranges(uids: &BTreeSet<u32>) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = uids.iter().copied();
    let Some(first) = iter.next() else {
        return out;
    };
    let (mut lo, mut hi) = (first, first);
    let mut push = |lo: u32, hi: u32| {
        out.push(if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}:{hi}")
        })
    };
    for u in iter {
        if hi.checked_add(1) == Some(u) {
            hi = u;
        } else {
            push(lo, hi);
            lo = u;
            hi = u;
        }
    }
    push(lo, hi);
    out
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c == ' ' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str("%00empty"); // never an empty field
    }
    out
}

fn decode(s: &str) -> Option<String> {
    if s == "%00empty" {
        return Some(String::new());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where [`write_atomic`] stops, to test crash safety (a SIGKILL between two steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultPoint {
    None,
    /// Half the temp file written, nothing synced.
    MidWrite,
    /// Temp file written and synced, not renamed.
    BeforeRename,
    /// Renamed, directory not synced.
    BeforeDirSync,
}

pub(crate) fn write_atomic(
    path: &Path,
    content: &str,
    fault: FaultPoint,
) -> Result<(), StateError> {
    let werr = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = write_temp(path, content, fault).map_err(werr)?;
    let result = install(path, &tmp, fault, || {});
    if result.is_err() && fault == FaultPoint::None {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(werr)
}

/// Numbers temp files, so that writes of one file from several threads never share one.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The first half of [`write_atomic`]: `content` in a new temp file next to `path`
/// (`<path>.tmp.<pid>.<n>`), fsynced. Returns the temp file's path.
fn write_temp(path: &Path, content: &str, fault: FaultPoint) -> io::Result<PathBuf> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = parent_dir(path).join(tmp_name);
    let result = (|| {
        // A file left under this name by an earlier crash (or planted there) would keep its
        // own mode, or be a symlink written through: remove it, then create a new file with
        // O_EXCL, so the mode below is the mode the state gets.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if fault == FaultPoint::MidWrite {
            let half = content.len() / 2;
            f.write_all(content.as_bytes().get(..half).unwrap_or_default())?;
            return Err(io::Error::other("injected fault"));
        }
        f.write_all(content.as_bytes())?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            if fault == FaultPoint::None {
                let _ = fs::remove_file(&tmp);
            }
            Err(e)
        }
    }
}

/// The second half of [`write_atomic`]: renames the synced temp file over `path`, calls
/// `renamed`, then fsyncs the directory.
fn install(path: &Path, tmp: &Path, fault: FaultPoint, renamed: impl FnOnce()) -> io::Result<()> {
    let injected = || io::Error::other("injected fault");
    if fault == FaultPoint::BeforeRename {
        return Err(injected());
    }
    fs::rename(tmp, path)?;
    renamed();
    if fault == FaultPoint::BeforeDirSync {
        return Err(injected());
    }
    File::open(parent_dir(path))?.sync_all()
}

/// Adds `recipients` to the set of those a message was served to; returns the log records
/// (`record` makes one) of those not in it before.
fn new_served_records(
    served: &mut BTreeSet<String>,
    recipients: &[String],
    record: impl Fn(&str) -> String,
) -> String {
    recipients
        .iter()
        .filter(|r| served.insert((*r).clone()))
        .map(|r| record(r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{mkfifo, within};

    /// A directory of its own for a test, removed when the test ends; `path` is the state file.
    struct Scratch {
        dir: PathBuf,
        path: PathBuf,
    }

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("postie-state-unit-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let path = dir.join("seen");
            Scratch { dir, path }
        }

        /// The store at `path`, as a new run opens it.
        fn open(&self) -> SeenStore {
            SeenStore::open(&self.path).unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    /// The error [`SeenStore::open`] gives for `path`, as the user reads it, within 10 s.
    fn open_error(path: &Path) -> String {
        let path = path.to_path_buf();
        within("SeenStore::open", move || {
            SeenStore::open(path)
                .map(|_| ())
                .map_err(|e| crate::Error::from(e).chain())
        })
        .expect_err("opened")
    }

    #[test]
    fn a_fifo_at_the_state_file_or_its_log_is_refused_not_waited_on() {
        // Opening a FIFO for reading waits for a writer: one at the state file hung rfetch.
        let s = Scratch::new("fifo");
        mkfifo(&s.path);
        let shown = open_error(&s.path);
        assert!(
            shown.contains(&s.path.display().to_string()) && shown.contains("FIFO"),
            "{shown}"
        );
        fs::remove_file(&s.path).unwrap();
        let log = seen_log_path(&s.path);
        mkfifo(&log);
        let shown = open_error(&s.path);
        assert!(
            shown.contains(&log.display().to_string()) && shown.contains("FIFO"),
            "{shown}"
        );
    }

    #[test]
    fn a_device_at_the_state_file_is_refused_not_read() {
        // A symlink to /dev/zero was read up to the 256 MiB bound, then called corrupt.
        let s = Scratch::new("device");
        std::os::unix::fs::symlink("/dev/zero", &s.path).unwrap();
        let shown = open_error(&s.path);
        assert!(
            shown.contains(&s.path.display().to_string()) && shown.contains("character device"),
            "{shown}"
        );
    }

    /// The POP3 and the IMAP account of the tests.
    fn keys() -> (AccountKey, AccountKey) {
        (AccountKey::pop3("h", "u"), AccountKey::imap("h", "u"))
    }

    #[test]
    fn ranges_round_trip() {
        let set: BTreeSet<u32> = [1, 2, 3, 5, 7, 8, 4294967295].into_iter().collect();
        let r = to_ranges(&set);
        assert_eq!(r, ["1:3", "5", "7:8", "4294967295"]);
        let mut back = BTreeSet::new();
        parse_ranges(&r.join(","), &mut back).unwrap();
        assert_eq!(back, set);
        for bad in ["0", "5:3", "1:4294967295", "x", "1,,2", ""] {
            assert!(parse_ranges(bad, &mut BTreeSet::new()).is_none(), "{bad}");
        }
    }

    #[test]
    fn encoding_round_trip() {
        for s in ["plain", "with space", "100%", "tab\there", "", "ünï"] {
            assert_eq!(decode(&encode(s)).unwrap(), s);
            assert!(!encode(s).contains(' '));
        }
        assert!(decode("%zz").is_none());
        assert!(decode("%4").is_none());
    }

    fn store_with(path: &Path, uids: &[&str]) -> SeenStore {
        let mut s = SeenStore::open(path).unwrap();
        s.pop3_record(&keys().0, uids.iter().copied()).unwrap();
        s
    }

    #[test]
    fn a_fault_at_any_step_leaves_old_or_new_state() {
        let scratch = Scratch::new("faults");
        let path = &scratch.path;
        store_with(path, &["old"]).commit().unwrap();
        let (key, _) = keys();
        for (fault, expect_new) in [
            (FaultPoint::MidWrite, false),
            (FaultPoint::BeforeRename, false),
            (FaultPoint::BeforeDirSync, true),
        ] {
            let s = store_with(path, &["old", "new"]);
            assert!(write_atomic(path, &s.render(), fault).is_err());
            let reopened = scratch.open();
            assert!(reopened.pop3_is_seen(&key, "old"), "{fault:?}");
            assert_eq!(reopened.pop3_is_seen(&key, "new"), expect_new, "{fault:?}");
            // Restore the old state for the next round; a left-over temp file is overwritten.
            let mut s = scratch.open();
            s.pop3_retain(&key, |u| u == "old");
            s.commit().unwrap();
        }
    }

    #[test]
    fn an_older_snapshot_written_last_does_not_replace_a_newer_one() {
        let scratch = Scratch::new("order");
        let (dir, path) = (&scratch.dir, &scratch.path);
        let key = keys().0;
        let mut s = store_with(path, &["a"]);
        let older = s.begin_commit().unwrap().unwrap();
        s.pop3_record(&key, ["b"]).unwrap();
        let newer = s.begin_commit().unwrap().unwrap();
        newer.write().unwrap();
        // The older one finishes last: it is covered, and dropped rather than renamed.
        older.write().unwrap();
        let reopened = SeenStore::open(path).unwrap();
        assert!(reopened.pop3_is_seen(&key, "a") && reopened.pop3_is_seen(&key, "b"));
        assert_eq!(fs::read_dir(dir).unwrap().count(), 1, "temp files removed");
        // A commit while a snapshot is still being written writes again, though nothing changed
        // since: the caller's changes are in the snapshot in flight, not yet on disk.
        s.pop3_record(&key, ["c"]).unwrap();
        let in_flight = s.begin_commit().unwrap().unwrap();
        assert!(
            s.is_dirty(),
            "a snapshot not yet durable leaves the store dirty"
        );
        s.commit().unwrap();
        assert!(SeenStore::open(path).unwrap().pop3_is_seen(&key, "c"));
        in_flight.write().unwrap();
    }

    #[test]
    fn the_seen_log_survives_a_kill_and_the_commit_removes_it() {
        let scratch = Scratch::new("seenlog");
        let path = &scratch.path;
        let (pop, imap) = keys();
        {
            let mut s = store_with(path, &["committed"]);
            s.imap_record(&imap, "INBOX", 7, [1]);
            s.commit().unwrap();
            assert!(!seen_log_path(path).exists(), "nothing logged yet");
            s.pop3_delivered(&pop, "logged").unwrap();
            s.imap_delivered(&imap, "INBOX", 7, 2).unwrap();
            // Another UIDVALIDITY than the folder's is not recorded.
            s.imap_delivered(&imap, "INBOX", 6, 3).unwrap();
            s.pop3_served(&pop, "half", &["a@x".into(), "b c@x".into()])
                .unwrap();
            // Killed here: no commit; the store is dropped without writing the file.
        }
        // A line cut while written (no newline) is ignored.
        let mut log = OpenOptions::new()
            .append(true)
            .open(seen_log_path(path))
            .unwrap();
        log.write_all(b"pop3 h u cu").unwrap();
        drop(log);
        let mut s = scratch.open();
        assert!(s.pop3_is_seen(&pop, "committed") && s.pop3_is_seen(&pop, "logged"));
        assert!(!s.pop3_is_seen(&pop, "cu") && !s.pop3_is_seen(&pop, "cut"));
        assert!(s.imap_is_seen(&imap, "INBOX", 7, 1) && s.imap_is_seen(&imap, "INBOX", 7, 2));
        assert!(!s.imap_is_seen(&imap, "INBOX", 7, 3));
        assert_eq!(s.pop3_served_to(&pop, "half"), ["a@x", "b c@x"]);
        assert!(
            s.is_dirty(),
            "a replayed log is committed by the next commit"
        );
        s.commit().unwrap();
        assert!(!seen_log_path(path).exists(), "the commit removes the log");
        // The file now holds what the log held, the served recipients included.
        let s = scratch.open();
        assert!(s.pop3_is_seen(&pop, "logged") && s.imap_is_seen(&imap, "INBOX", 7, 2));
        assert_eq!(s.pop3_served_to(&pop, "half"), ["a@x", "b c@x"]);
        assert!(!s.is_dirty());
    }

    #[test]
    fn delivering_a_message_forgets_its_served_recipients() {
        let scratch = Scratch::new("served");
        let (pop, imap) = keys();
        let mut s = scratch.open();
        s.pop3_served(&pop, "m", &["a@x".into()]).unwrap();
        s.imap_record(&imap, "F", 3, []);
        s.imap_served(&imap, "F", 3, 9, &["a@x".into()]).unwrap();
        assert_eq!(s.imap_served_to(&imap, "F", 3, 9), ["a@x"]);
        assert!(s.imap_served_to(&imap, "F", 4, 9).is_empty());
        s.commit().unwrap();
        s.pop3_delivered(&pop, "m").unwrap();
        s.imap_delivered(&imap, "F", 3, 9).unwrap();
        assert!(s.pop3_served_to(&pop, "m").is_empty());
        assert!(s.imap_served_to(&imap, "F", 3, 9).is_empty());
        // Replayed from the log over the file that still has them, the same.
        let s2 = scratch.open();
        assert!(s2.pop3_served_to(&pop, "m").is_empty());
        assert!(s2.imap_served_to(&imap, "F", 3, 9).is_empty());
        assert!(s2.imap_is_seen(&imap, "F", 3, 9));
    }

    #[test]
    fn a_logged_uidvalidity_change_is_replayed_in_order() {
        let scratch = Scratch::new("validity-log");
        let path = &scratch.path;
        let (_, imap) = keys();
        {
            let mut s = scratch.open();
            s.imap_record(&imap, "F", 1, [1, 2]);
            s.commit().unwrap();
            assert_eq!(
                s.imap_select(&imap, "F", 2),
                UidValidityCheck::Changed { old: 1, dropped: 2 }
            );
            s.imap_delivered(&imap, "F", 2, 5).unwrap();
        }
        let text = fs::read_to_string(seen_log_path(path)).unwrap();
        let s = scratch.open();
        assert!(s.imap_is_seen(&imap, "F", 2, 5));
        assert!(!s.imap_is_seen(&imap, "F", 1, 1) && !s.imap_is_seen(&imap, "F", 2, 1));
        // The same log found again over the committed state (a power loss lost its removal)
        // changes nothing, even after older lines of the old UIDVALIDITY.
        let mut s = s;
        s.commit().unwrap();
        fs::write(
            seen_log_path(path),
            format!("imap h u F 1 3\n{text}imap h u F 1 4\n"),
        )
        .unwrap();
        let again = scratch.open();
        assert!(again.imap_is_seen(&imap, "F", 2, 5));
        assert_eq!(again.imap_uidvalidity(&imap, "F"), Some(2));
        assert!(!again.imap_is_seen(&imap, "F", 2, 3));
    }
}
