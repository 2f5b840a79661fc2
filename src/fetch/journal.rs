//! The Maildir batch journal and group commit: makes "renamed into `new/`" and "recorded as seen"
//! one atomic step as far as a SIGKILL is concerned, so a killed rfetch never fetches a Maildir
//! batch again, and lets many accounts' batches share one state commit.
//!
//! Commit order for one batch ([`publish_batch`]), none of it under the state lock except the
//! in-memory record: fsync the files in `tmp/`; write the batch's own journal
//! (`<statefile>.journal.<n>`: temp name, fsync, rename, directory fsync) naming each message's
//! state key, tmp path and final `new/` path; rename into `new/` and fsync `new/`; record the keys
//! in the [`SeenStore`] (under its lock, in memory); wait until a state commit that covers the
//! batch is durable; remove the journal. Only then does the caller delete on the server.
//!
//! Group commit: the first batch to find no state commit in flight becomes the leader: it takes a
//! snapshot of the whole store under the lock, releases the lock, writes and fsyncs the state
//! file, and wakes the others. Batches recorded while that write was in flight wait for it to end,
//! then one of them writes the next snapshot, which holds all of them: with 100 accounts, one
//! state fsync serves every batch that arrived during the previous one instead of each waiting
//! for its own. A batch is reported durable only when a snapshot taken after its record reached
//! the disk; when the leader's write fails, every batch of its group fails (the records stay in
//! memory and are written by the next commit). The journals themselves are separate files, so the
//! accounts write them at the same time and the file system joins their fsyncs.
//!
//! Recovery ([`recover`], at start-up after the instance lock, before any poll): temp files of
//! interrupted writes are removed; then for each entry of each journal left behind, a file
//! present at its final path is recorded as seen; a file still in `tmp/` (it was fsynced before
//! the journal was written) is renamed into `new/` and recorded; otherwise nothing happens. The
//! state is committed once, then the journals are removed. A journal without its header, entry
//! count or closing `end` line is ignored: it was cut while being written, and nothing had been
//! renamed yet. Each crash point therefore ends the same way: journal written and nothing renamed
//! (moved and recorded), renamed but the state not written (recorded), state written but the
//! journal not removed (recorded again, which changes nothing); a state snapshot written but not
//! renamed is a temp file, removed, and its batches are recorded from their journals.
//!
//! Format (text, fields separated by one space, each field percent-encoded byte-wise for `%`,
//! space, control and non-ASCII bytes):
//!
//! ```text
//! postie-journal 1
//! entries 2
//! pop3 SERVER USER UID TMP FINAL
//! imap SERVER USER FOLDER UIDVALIDITY UID TMP FINAL
//! end
//! ```
//!
//! A journal named `<statefile>.journal` (no number) was written by an earlier version, which
//! published one batch at a time; it is recovered like the others.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::deliver::{Maildir, Pending, Receipt};
use crate::error::{Error, ErrorKind, Result};

use super::state::{AccountKey, FaultPoint, SeenStore, StateError, write_atomic};

const MAGIC: &str = "postie-journal 1";
/// Largest journal read (bytes): a batch is 50 messages, so this is generous.
const MAX_JOURNAL_BYTES: u64 = 16 * 1024 * 1024;

/// What a journal entry records as seen, in the terms of the [`SeenStore`] record functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateKey {
    Pop3 {
        account: AccountKey,
        uid: String,
    },
    Imap {
        account: AccountKey,
        folder: String,
        uidvalidity: u32,
        uid: u32,
    },
}

impl StateKey {
    /// Records the key in the store (in memory). An IMAP key whose UIDVALIDITY is no longer the
    /// folder's recorded one is skipped: recording it would forget the folder's current UIDs.
    fn record(&self, st: &mut SeenStore) -> std::result::Result<(), StateError> {
        match self {
            StateKey::Pop3 { account, uid } => st.pop3_record(account, [uid.as_str()]),
            StateKey::Imap {
                account,
                folder,
                uidvalidity,
                uid,
            } => {
                match st.imap_uidvalidity(account, folder) {
                    Some(v) if v != *uidvalidity => {}
                    _ => st.imap_record(account, folder, *uidvalidity, [*uid]),
                }
                Ok(())
            }
        }
    }
}

impl StateKey {
    /// Records the message as delivered now, in memory and in the seen log
    /// ([`SeenStore::pop3_delivered`]): what a target that confirms each message itself (MDA,
    /// mbox, SMTP, LMTP) does the moment it confirmed one.
    pub fn delivered(&self, st: &mut SeenStore) -> std::result::Result<(), StateError> {
        match self {
            StateKey::Pop3 { account, uid } => st.pop3_delivered(account, uid),
            StateKey::Imap {
                account,
                folder,
                uidvalidity,
                uid,
            } => st.imap_delivered(account, folder, *uidvalidity, *uid),
        }
    }

    /// Records recipients the message was served to while others still wait for it.
    pub fn served(
        &self,
        st: &mut SeenStore,
        recipients: &[String],
    ) -> std::result::Result<(), StateError> {
        match self {
            StateKey::Pop3 { account, uid } => st.pop3_served(account, uid, recipients),
            StateKey::Imap {
                account,
                folder,
                uidvalidity,
                uid,
            } => st.imap_served(account, folder, *uidvalidity, *uid, recipients),
        }
    }

    /// The recipients an earlier poll served the message to (see [`served`](Self::served)).
    pub fn served_to(&self, st: &SeenStore) -> Vec<String> {
        match self {
            StateKey::Pop3 { account, uid } => st.pop3_served_to(account, uid),
            StateKey::Imap {
                account,
                folder,
                uidvalidity,
                uid,
            } => st.imap_served_to(account, folder, *uidvalidity, *uid),
        }
    }
}

/// One message of a journaled batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: StateKey,
    pub tmp: PathBuf,
    pub final_path: PathBuf,
}

impl Entry {
    /// The entries of a batch of `maildir`: each key with its written file's tmp/ name and the
    /// name it gets in new/.
    fn for_batch(maildir: &Maildir, keys: Vec<StateKey>, pending: &[Pending]) -> Vec<Entry> {
        keys.into_iter()
            .zip(pending)
            .map(|(key, p)| Entry {
                key,
                tmp: p.tmp_path().to_owned(),
                final_path: maildir.final_path(p),
            })
            .collect()
    }
}

/// The journal name an earlier version used for its one batch in flight: `<statefile>.journal`.
/// Each batch's journal adds `.<n>` to it (`batch_journal_path`).
pub fn journal_path(state_path: &Path) -> PathBuf {
    let mut name = state_path.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// Numbers the batch journals of this process. Recovery removes every journal before the first
/// poll and the instance lock keeps other processes away, so numbers never meet older files.
static NEXT_JOURNAL: AtomicU64 = AtomicU64::new(0);

/// A new batch's own journal: `<statefile>.journal.<n>`, so batches of different accounts
/// journal at the same time without sharing a file.
fn batch_journal_path(state_path: &Path) -> PathBuf {
    let mut name = journal_path(state_path).into_os_string();
    name.push(format!(".{}", NEXT_JOURNAL.fetch_add(1, Ordering::Relaxed)));
    PathBuf::from(name)
}

fn encode(field: &[u8]) -> String {
    let mut out = String::with_capacity(field.len());
    for &b in field {
        if b == b'%' || b == b' ' || b.is_ascii_control() || !b.is_ascii() {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

fn decode(field: &str) -> Option<Vec<u8>> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

fn decode_str(field: &str) -> Option<String> {
    String::from_utf8(decode(field)?).ok()
}

fn decode_path(field: &str) -> Option<PathBuf> {
    let raw = decode(field)?;
    (!raw.is_empty()).then(|| PathBuf::from(OsString::from_vec(raw)))
}

/// The journal text for `entries`.
pub fn render(entries: &[Entry]) -> String {
    let mut out = format!("{MAGIC}\nentries {}\n", entries.len());
    for e in entries {
        let paths = format!(
            "{} {}",
            encode(e.tmp.as_os_str().as_bytes()),
            encode(e.final_path.as_os_str().as_bytes())
        );
        let line = match &e.key {
            StateKey::Pop3 { account, uid } => format!(
                "pop3 {} {} {} {paths}",
                encode(account.server.as_bytes()),
                encode(account.user.as_bytes()),
                encode(uid.as_bytes())
            ),
            StateKey::Imap {
                account,
                folder,
                uidvalidity,
                uid,
            } => format!(
                "imap {} {} {} {uidvalidity} {uid} {paths}",
                encode(account.server.as_bytes()),
                encode(account.user.as_bytes()),
                encode(folder.as_bytes())
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("end\n");
    out
}

/// Parses a journal; `None` when it is not complete and well formed (cut while written).
pub fn parse(text: &str) -> Option<Vec<Entry>> {
    let mut lines = text.split('\n');
    if lines.next()? != MAGIC {
        return None;
    }
    let count: usize = lines.next()?.strip_prefix("entries ")?.parse().ok()?;
    let mut entries = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        entries.push(parse_entry(lines.next()?)?);
    }
    if lines.next()? != "end" {
        return None;
    }
    // Only the empty remainder after the final newline may follow.
    match (lines.next(), lines.next()) {
        (Some(""), None) => Some(entries),
        _ => None,
    }
}

fn parse_entry(line: &str) -> Option<Entry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let (key, tmp, final_path) = match fields.as_slice() {
        ["pop3", server, user, uid, tmp, fin] => (
            StateKey::Pop3 {
                account: AccountKey::pop3(decode_str(server)?, decode_str(user)?),
                uid: decode_str(uid)?,
            },
            tmp,
            fin,
        ),
        ["imap", server, user, folder, validity, uid, tmp, fin] => (
            StateKey::Imap {
                account: AccountKey::imap(decode_str(server)?, decode_str(user)?),
                folder: decode_str(folder)?,
                uidvalidity: validity.parse().ok()?,
                uid: uid.parse().ok()?,
            },
            tmp,
            fin,
        ),
        _ => return None,
    };
    Some(Entry {
        key,
        tmp: decode_path(tmp)?,
        final_path: decode_path(final_path)?,
    })
}

/// Writes the journal durably (temp file, fsync, rename, directory fsync).
fn write(path: &Path, entries: &[Entry]) -> std::result::Result<(), StateError> {
    write_atomic(path, &render(entries), FaultPoint::None)
}

/// Removes the journal once the state commit covers it. No directory fsync: a journal that
/// reappears after a power loss only records again what the state already holds.
fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::with_source(
            ErrorKind::LocalIo,
            format!("cannot remove the batch journal {}", path.display()),
            e,
        )),
    }
}

fn lock_state(state: &Mutex<SeenStore>) -> Result<MutexGuard<'_, SeenStore>> {
    state
        .lock()
        .map_err(|_| Error::new(ErrorKind::Internal, "state lock poisoned"))
}

/// Makes a Maildir batch durable and records it as seen, journaled so that a kill at any point
/// neither loses a message nor makes it be fetched again. When this returns `Ok`, every message
/// is in `new/` and committed in the state. On `Err` no message counts as delivered in this
/// poll; those already moved into `new/` are recorded as seen (the journal is recovered at
/// once), so with `nokeep` the next poll deletes them on the server without fetching them.
pub fn publish_batch(
    maildir: &mut Maildir,
    batch: Vec<(StateKey, Pending)>,
    state: &Mutex<SeenStore>,
) -> Result<Vec<Receipt>> {
    let (keys, pending): (Vec<StateKey>, Vec<Pending>) = batch.into_iter().unzip();
    maildir.sync_files(&pending)?;
    let entries = Entry::for_batch(maildir, keys, &pending);
    let path = batch_journal_path(lock_state(state)?.path());
    if let Err(e) = write(&path, &entries) {
        // Nothing was renamed: a journal that did get its name names files that `pending`,
        // dropped here, removes.
        let _ = remove(&path);
        return Err(e.into());
    }
    let receipts = match maildir.publish(pending) {
        Ok(r) => r,
        Err(e) => {
            let err = Error::from(e);
            recover_after_failure(state, &path);
            return Err(err);
        }
    };
    let mut st = lock_state(state)?;
    st.record_for_group_commit(|st| entries.iter().try_for_each(|e| e.key.record(st)))?;
    st.group.recorded += 1;
    let batch_number = st.group.recorded;
    match wait_durable(state, st, batch_number) {
        Ok(st) => drop(st),
        Err(e) => {
            recover_after_failure(state, &path);
            return Err(e);
        }
    }
    remove(&path)?;
    Ok(receipts)
}

/// Returns once batch `batch_number` is durable in the state file: it leads a commit when none
/// is in flight, else waits for the one in flight and then for the next, which holds the batch.
fn wait_durable<'a>(
    state: &'a Mutex<SeenStore>,
    mut st: MutexGuard<'a, SeenStore>,
    batch_number: u64,
) -> Result<MutexGuard<'a, SeenStore>> {
    loop {
        if st.group.durable >= batch_number {
            return Ok(st);
        }
        if st.group.failed >= batch_number {
            return Err(Error::new(
                ErrorKind::LocalIo,
                format!(
                    "cannot commit the seen state {} (the error is logged above)",
                    st.path().display()
                ),
            ));
        }
        if st.group.writing {
            let written = Arc::clone(&st.group.written);
            st = written
                .wait(st)
                .map_err(|_| Error::new(ErrorKind::Internal, "state lock poisoned"))?;
        } else {
            st = lead_commit(state, st);
        }
    }
}

/// Commits every batch recorded so far: takes the snapshot under the lock, writes it with the
/// lock released, and wakes the batches waiting. A failure is logged once here; each batch of
/// the group then fails on its own.
fn lead_commit<'a>(
    state: &'a Mutex<SeenStore>,
    mut st: MutexGuard<'a, SeenStore>,
) -> MutexGuard<'a, SeenStore> {
    st.group.writing = true;
    let through = st.group.recorded;
    let outcome = match st.begin_commit() {
        Ok(None) => Ok(()),
        Ok(Some(snapshot)) => {
            drop(st);
            let written = snapshot.write();
            // The bookkeeping below must be done even after a panic elsewhere poisoned the
            // lock, or the batches waiting would never wake; they see the poison themselves.
            st = state.lock().unwrap_or_else(PoisonError::into_inner);
            if written.is_err() {
                st.commit_failed();
            }
            written
        }
        Err(e) => Err(e),
    };
    st.group.writing = false;
    #[cfg(test)]
    {
        st.group.commits += 1;
    }
    match outcome {
        Ok(()) => st.group.durable = st.group.durable.max(through),
        Err(e) => {
            log::error!("{}", Error::from(e).chain());
            st.group.failed = st.group.failed.max(through);
        }
    }
    st.group.written.notify_all();
    st
}

/// After a failure, records what of the batch reached `new/` and commits under the lock (the
/// journal stays for the next start when that fails too).
fn recover_after_failure(state: &Mutex<SeenStore>, path: &Path) {
    let result = lock_state(state).and_then(|mut st| recover_locked(&mut st, &[path.to_owned()]));
    if let Err(e) = result {
        log::error!("{}", e.chain());
    }
}

/// What [`recover`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Journals found.
    pub found: usize,
    /// Of those, journals cut while being written, ignored.
    pub torn: usize,
    /// Entries found in `new/` and recorded as seen.
    pub recorded: usize,
    /// Entries moved from `tmp/` into `new/` and recorded.
    pub moved: usize,
    /// Entries with neither file (their batch never got to the rename).
    pub missing: usize,
}

/// Finishes the batches a killed run left journaled (call at start-up, after the instance lock
/// and before any poll). Logs what it did, one line per journal.
pub fn recover(state: &Mutex<SeenStore>) -> Result<Recovery> {
    let mut st = lock_state(state)?;
    let state_path = st.path().to_owned();
    remove_stale_temps(&state_path);
    let journals = journals_of(&state_path)?;
    recover_locked(&mut st, &journals)
}

/// The journals next to the state file: the earlier version's `<statefile>.journal` and every
/// `<statefile>.journal.<n>`, in a fixed order.
fn journals_of(state_path: &Path) -> Result<Vec<PathBuf>> {
    let base = journal_path(state_path);
    let (dir, Some(name)) = (parent_dir(&base), base.file_name()) else {
        return Ok(Vec::new());
    };
    let name = name.as_bytes();
    let list = match fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::with_source(
                ErrorKind::LocalIo,
                format!("cannot list {} for batch journals", dir.display()),
                e,
            ));
        }
    };
    let mut found = Vec::new();
    for item in list.flatten() {
        let file = item.file_name();
        let file = file.as_bytes();
        let ours = match file.strip_prefix(name) {
            Some(b"") => true,
            Some(rest) => rest
                .strip_prefix(b".")
                .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit)),
            None => false,
        };
        if ours {
            found.push(item.path());
        }
    }
    found.sort();
    Ok(found)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Applies `journals` (under the state lock), commits the state once, then removes them and
/// logs what each held.
fn recover_locked(st: &mut SeenStore, journals: &[PathBuf]) -> Result<Recovery> {
    let mut r = Recovery::default();
    let mut dirs = BTreeSet::new();
    let mut applied = Vec::new();
    let mut report = Vec::new();
    for path in journals {
        let text = match read_bounded(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::with_source(
                    ErrorKind::LocalIo,
                    format!("cannot read the batch journal {}", path.display()),
                    e,
                ));
            }
        };
        r.found += 1;
        applied.push(path);
        let Some(entries) = text.as_deref().and_then(parse) else {
            r.torn += 1;
            report.push(format!(
                "batch journal {} was incomplete (cut while written, nothing had been delivered); ignored",
                path.display()
            ));
            continue;
        };
        let before = (r.recorded, r.moved, r.missing);
        for e in &entries {
            if e.final_path.exists() {
                r.recorded += 1;
            } else if e.tmp.exists() {
                fs::rename(&e.tmp, &e.final_path).map_err(|err| {
                    Error::with_source(
                        ErrorKind::LocalIo,
                        format!(
                            "cannot move {} to {} (journal {})",
                            e.tmp.display(),
                            e.final_path.display(),
                            path.display()
                        ),
                        err,
                    )
                })?;
                r.moved += 1;
            } else {
                r.missing += 1;
                continue;
            }
            if let Some(d) = e.final_path.parent() {
                dirs.insert(d.to_owned());
            }
            e.key.record(st)?;
        }
        report.push(format!(
            "batch journal {}: recovered an interrupted batch: {} messages already in the maildir recorded as fetched, {} moved from tmp/ into new/, {} not delivered",
            path.display(),
            r.recorded - before.0,
            r.moved - before.1,
            r.missing - before.2
        ));
    }
    // The renames (ours, or the killed run's that maybe never reached the disk) are made
    // durable before the state says the messages were fetched.
    for d in &dirs {
        File::open(d).and_then(|f| f.sync_all()).map_err(|err| {
            Error::with_source(
                ErrorKind::LocalIo,
                format!("cannot sync directory {}", d.display()),
                err,
            )
        })?;
    }
    st.commit()?;
    for path in applied {
        remove(path)?;
    }
    for line in report {
        log::info!("{line}");
    }
    Ok(r)
}

/// Reads the journal; `Ok(None)` when it is too large or not text (so: not ours, ignored).
fn read_bounded(path: &Path) -> io::Result<Option<String>> {
    // Not waiting on a FIFO planted at a journal's name, nor reading a device.
    let file = crate::config::open_regular_file(path)?;
    match crate::config::read_bytes_at_most(file, MAX_JOURNAL_BYTES) {
        Ok(raw) => Ok(String::from_utf8(raw).ok()),
        // Reading raw bytes, its only InvalidData is the bound: no journal is that large.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the temp files of writes a killed run left unfinished: the state file's
/// (`<statefile>.tmp.*`: a snapshot not renamed, so not the state) and the journals'
/// (`<statefile>.journal.tmp.*`, `<statefile>.journal.<n>.tmp.*`: a journal not renamed, so
/// its batch renamed nothing).
fn remove_stale_temps(state_path: &Path) {
    let (dir, Some(name)) = (parent_dir(state_path), state_path.file_name()) else {
        return;
    };
    let mut prefix = name.as_bytes().to_vec();
    prefix.push(b'.');
    let Ok(list) = fs::read_dir(dir) else {
        return;
    };
    for item in list.flatten() {
        let file = item.file_name();
        let Some(rest) = file.as_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let rest = rest.strip_prefix(b"journal.").unwrap_or(rest);
        let rest = match rest.iter().position(|&b| b == b'.') {
            Some(dot) if rest[..dot].iter().all(u8::is_ascii_digit) && dot > 0 => &rest[dot + 1..],
            _ => rest,
        };
        if rest.starts_with(b"tmp.") {
            let _ = fs::remove_file(item.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::MessageInfo;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("postie-journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A scratch directory, its state file's path and the state opened from it.
    fn scratch_state(name: &str) -> (PathBuf, PathBuf, Mutex<SeenStore>) {
        let dir = scratch(name);
        let state_path = dir.join("seen");
        let state = Mutex::new(SeenStore::open(&state_path).unwrap());
        (dir, state_path, state)
    }

    #[test]
    fn a_fifo_at_a_journal_path_is_refused_not_waited_on() {
        // Recovery opened every `<statefile>.journal.<n>` it found: a FIFO there waited for a
        // writer for ever and hung rfetch before its first poll.
        let (dir, state_path, state) = scratch_state("fifo");
        let mut name = journal_path(&state_path).into_os_string();
        name.push(".7");
        let fifo = PathBuf::from(name);
        crate::test_support::mkfifo(&fifo);
        let shown = crate::test_support::within("recovery", move || {
            recover(&state).map(|_| ()).map_err(|e| e.chain())
        })
        .expect_err("a FIFO is no journal");
        assert!(
            shown.contains(&fifo.display().to_string()) && shown.contains("FIFO"),
            "{shown}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    fn pop3(uid: &str) -> StateKey {
        StateKey::Pop3 {
            account: AccountKey::pop3("pop.example", "al ice"),
            uid: uid.into(),
        }
    }

    fn imap(uid: u32) -> StateKey {
        StateKey::Imap {
            account: AccountKey::imap("imap.example", "bob"),
            folder: "INBOX/a b%".into(),
            uidvalidity: 7,
            uid,
        }
    }

    #[test]
    fn render_parse_round_trip() {
        let entries = vec![
            Entry {
                key: pop3("u 1%"),
                tmp: "/m d/tmp/1.M1P2Q3.host".into(),
                final_path: "/m d/new/1.M1P2Q3.host".into(),
            },
            Entry {
                key: imap(42),
                tmp: PathBuf::from(OsString::from_vec(b"/x/tmp/\xff\n".to_vec())),
                final_path: "/x/new/f".into(),
            },
        ];
        let text = render(&entries);
        assert!(text.starts_with("postie-journal 1\nentries 2\n") && text.ends_with("end\n"));
        assert_eq!(parse(&text), Some(entries));
        assert_eq!(parse(&render(&[])), Some(Vec::new()));
    }

    #[test]
    fn a_truncated_or_damaged_journal_is_rejected() {
        let entries = vec![
            Entry {
                key: pop3("a"),
                tmp: "/m/tmp/a".into(),
                final_path: "/m/new/a".into(),
            },
            Entry {
                key: imap(3),
                tmp: "/m/tmp/b".into(),
                final_path: "/m/new/b".into(),
            },
        ];
        let text = render(&entries);
        // Every proper prefix (a kill while writing) is detected.
        for cut in 0..text.len() {
            assert_eq!(parse(&text[..cut]), None, "prefix of {cut} bytes accepted");
        }
        assert_eq!(parse(&text.replace("entries 2", "entries 3")), None);
        assert_eq!(parse(&text.replace("entries 2", "entries 1")), None);
        assert_eq!(parse(&text.replace("imap", "mbox")), None);
        assert_eq!(parse(&format!("{text}junk\n")), None);
        assert_eq!(
            parse(&text.replace("postie-journal 1", "postie-journal 2")),
            None
        );
    }

    /// A Maildir with three written, fsynced tmp files; the journal names them.
    fn staged(dir: &Path) -> (Maildir, Vec<Entry>, Vec<Pending>) {
        staged_with(dir, vec![pop3("p1"), imap(5), imap(6)])
    }

    /// A Maildir `dir/Maildir` with one written, fsynced tmp file per key.
    fn staged_with(dir: &Path, keys: Vec<StateKey>) -> (Maildir, Vec<Entry>, Vec<Pending>) {
        let mut md = Maildir::open(dir.join("Maildir")).unwrap();
        let info = MessageInfo::default();
        let mut pending = Vec::new();
        for k in 0..keys.len() {
            let msg = format!("Subject: {k}\r\n\r\n{k}\r\n");
            pending.push(md.deliver_unsynced(&mut msg.as_bytes(), &info).unwrap());
        }
        md.sync_files(&pending).unwrap();
        let entries = Entry::for_batch(&md, keys, &pending);
        (md, entries, pending)
    }

    fn is_seen(st: &SeenStore, key: &StateKey) -> bool {
        match key {
            StateKey::Pop3 { account, uid } => st.pop3_is_seen(account, uid),
            StateKey::Imap {
                account,
                folder,
                uidvalidity,
                uid,
            } => st.imap_is_seen(account, folder, *uidvalidity, *uid),
        }
    }

    #[test]
    fn recovery_handles_each_entry_state() {
        let dir = scratch("recover");
        let (md, entries, pending) = staged(&dir);
        let state_path = dir.join("seen");
        write(&journal_path(&state_path), &entries).unwrap();
        // Entry 0: renamed before the kill. Entry 1: still in tmp/. Entry 2: gone (never
        // renamed and cleaned up).
        fs::rename(&entries[0].tmp, &entries[0].final_path).unwrap();
        fs::remove_file(&entries[2].tmp).unwrap();
        // Simulate the kill: the tmp files must survive the Pending tokens.
        std::mem::forget(pending);
        let state = Mutex::new(SeenStore::open(&state_path).unwrap());
        let r = recover(&state).unwrap();
        assert_eq!(
            r,
            Recovery {
                found: 1,
                torn: 0,
                recorded: 1,
                moved: 1,
                missing: 1,
            }
        );
        assert!(entries[1].final_path.exists() && !entries[1].tmp.exists());
        assert!(!journal_path(&state_path).exists(), "journal removed");
        // The commit reached the disk: a fresh load sees entries 0 and 1, not 2.
        let st = SeenStore::open(&state_path).unwrap();
        assert!(is_seen(&st, &entries[0].key));
        assert!(is_seen(&st, &entries[1].key));
        assert!(!is_seen(&st, &entries[2].key));
        let new_count = fs::read_dir(md.root().join("new")).unwrap().count();
        assert_eq!(new_count, 2);
        // A second recovery finds nothing.
        assert_eq!(recover(&state).unwrap(), Recovery::default());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_journal_is_ignored_and_removed() {
        let dir = scratch("torn");
        let (_md, entries, pending) = staged(&dir);
        let state_path = dir.join("seen");
        let text = render(&entries);
        fs::write(journal_path(&state_path), &text[..text.len() - 4]).unwrap();
        fs::write(dir.join("seen.journal.tmp.99999"), "postie-jour").unwrap();
        std::mem::forget(pending);
        let state = Mutex::new(SeenStore::open(&state_path).unwrap());
        let r = recover(&state).unwrap();
        assert!(r.found == 1 && r.torn == 1 && r.recorded + r.moved + r.missing == 0);
        assert!(!journal_path(&state_path).exists());
        assert!(!dir.join("seen.journal.tmp.99999").exists());
        assert!(
            entries
                .iter()
                .all(|e| e.tmp.exists() && !e.final_path.exists())
        );
        assert!(!state.lock().unwrap().is_dirty());
        assert!(!state_path.exists(), "nothing recorded");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recovery_does_not_reset_a_folder_with_a_newer_uidvalidity() {
        let dir = scratch("validity");
        let state_path = dir.join("seen");
        let account = AccountKey::imap("imap.example", "bob");
        {
            let mut st = SeenStore::open(&state_path).unwrap();
            st.imap_record(&account, "INBOX/a b%", 8, [1, 2]);
            st.commit().unwrap();
        }
        let final_path = dir.join("final");
        fs::write(&final_path, "x").unwrap();
        let entry = Entry {
            key: imap(9),
            tmp: dir.join("tmp-gone"),
            final_path,
        };
        write(&journal_path(&state_path), &[entry]).unwrap();
        let state = Mutex::new(SeenStore::open(&state_path).unwrap());
        recover(&state).unwrap();
        let st = state.lock().unwrap();
        assert!(st.imap_is_seen(&account, "INBOX/a b%", 8, 2));
        assert!(!st.imap_is_seen(&account, "INBOX/a b%", 7, 9));
        drop(st);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn publish_batch_moves_records_and_removes_the_journal() {
        let dir = scratch("publish");
        let (mut md, entries, pending) = staged(&dir);
        let state_path = dir.join("seen");
        let state = Mutex::new(SeenStore::open(&state_path).unwrap());
        let batch = entries.iter().map(|e| e.key.clone()).zip(pending).collect();
        let receipts = publish_batch(&mut md, batch, &state).unwrap();
        assert_eq!(receipts.len(), 3);
        assert!(!journal_path(&state_path).exists());
        let st = SeenStore::open(&state_path).unwrap();
        for e in &entries {
            assert!(e.final_path.exists() && !e.tmp.exists());
            assert!(is_seen(&st, &e.key));
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    fn pop3_of(user: &str, uid: &str) -> StateKey {
        StateKey::Pop3 {
            account: AccountKey::pop3("pop.example", user),
            uid: uid.into(),
        }
    }

    fn count_in(md: &Path, sub: &str) -> usize {
        fs::read_dir(md.join(sub)).map_or(0, |d| d.count())
    }

    /// Files in `dir` whose names start with `prefix`.
    fn files_named(dir: &Path, prefix: &str) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    /// Account `k`'s batch: a Maildir of its own (`dir/k/Maildir`) and `per` POP3 keys.
    fn account_batch(dir: &Path, k: usize, per: usize) -> (Maildir, Vec<Entry>, Vec<Pending>) {
        let keys = (0..per)
            .map(|i| pop3_of(&format!("user{k}"), &format!("uid{i}")))
            .collect();
        staged_with(&dir.join(k.to_string()), keys)
    }

    fn batch_of(entries: &[Entry], pending: Vec<Pending>) -> Vec<(StateKey, Pending)> {
        entries.iter().map(|e| e.key.clone()).zip(pending).collect()
    }

    #[test]
    fn concurrent_publishers_from_several_threads_are_all_durable() {
        let (dir, state_path, state) = scratch_state("concurrent");
        let (threads, batches, per) = (6, 4, 3);
        let mut all_keys = Vec::new();
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for k in 0..threads {
                let mut staged = Vec::new();
                for b in 0..batches {
                    let (md, entries, pending) = account_batch(&dir, k * batches + b, per);
                    all_keys.extend(entries.iter().map(|e| e.key.clone()));
                    staged.push((md, entries, pending));
                }
                let state = &state;
                handles.push(s.spawn(move || {
                    for (mut md, entries, pending) in staged {
                        let receipts =
                            publish_batch(&mut md, batch_of(&entries, pending), state).unwrap();
                        assert_eq!(receipts.len(), per);
                        // Reported durable: the state on disk already holds the batch.
                        let on_disk = SeenStore::open(state.lock().unwrap().path()).unwrap();
                        assert!(entries.iter().all(|e| is_seen(&on_disk, &e.key)));
                    }
                }));
            }
            for h in handles {
                h.join().unwrap();
            }
        });
        let st = SeenStore::open(&state_path).unwrap();
        assert_eq!(all_keys.len(), threads * batches * per);
        assert!(all_keys.iter().all(|k| is_seen(&st, k)));
        assert!(
            files_named(&dir, "seen.journal").is_empty(),
            "journals removed"
        );
        assert!(files_named(&dir, "seen.tmp").is_empty(), "no temp left");
        let commits = state.lock().unwrap().group.commits;
        assert!(commits >= 1 && commits <= (threads * batches) as u64);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Runs `accounts` publishers while the test plays a commit in flight, so that every batch is
    /// recorded before one of them leads the next commit; returns each publisher's result.
    fn publish_as_one_group(
        dir: &Path,
        state: &Mutex<SeenStore>,
        accounts: usize,
        before_release: impl FnOnce(),
    ) -> Vec<(Vec<Entry>, Result<Vec<Receipt>>)> {
        state.lock().unwrap().group.writing = true;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..accounts)
                .map(|k| {
                    let (mut md, entries, pending) = account_batch(dir, k, 2);
                    s.spawn(move || {
                        let batch = batch_of(&entries, pending);
                        (entries, publish_batch(&mut md, batch, state))
                    })
                })
                .collect();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while state.lock().unwrap().group.recorded < accounts as u64 {
                assert!(std::time::Instant::now() < deadline, "publishers stuck");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // The publishers are released even when a check fails, or the scope would wait
            // for them for ever.
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(before_release));
            {
                let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
                st.group.writing = false;
                st.group.written.notify_all();
            }
            let results = handles.into_iter().map(|h| h.join().unwrap()).collect();
            if let Err(panic) = checked {
                std::panic::resume_unwind(panic);
            }
            results
        })
    }

    #[test]
    fn batches_recorded_during_a_commit_share_the_next_one() {
        let (dir, state_path, state) = scratch_state("group");
        let results = publish_as_one_group(&dir, &state, 5, || {
            // Every batch is in new/ with its journal, and none is durable in the state yet.
            assert_eq!(files_named(&dir, "seen.journal.").len(), 5);
            assert!(!state_path.exists());
        });
        assert_eq!(state.lock().unwrap().group.commits, 1, "one write for all");
        let st = SeenStore::open(&state_path).unwrap();
        for (entries, result) in &results {
            assert_eq!(result.as_ref().unwrap().len(), 2);
            assert!(entries.iter().all(|e| is_seen(&st, &e.key)));
        }
        assert!(files_named(&dir, "seen.journal").is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_state_write_fails_every_batch_of_its_group() {
        let (dir, state_path, state) = scratch_state("groupfail");
        // A directory (not empty) where the state file goes: the snapshot is written and fsynced,
        // its rename over the state fails, as a full or failing disk would fail the write.
        let results = publish_as_one_group(&dir, &state, 4, || {
            fs::create_dir_all(state_path.join("in-the-way")).unwrap();
        });
        assert_eq!(state.lock().unwrap().group.commits, 1, "one write for all");
        for (_, result) in &results {
            assert!(
                result.is_err(),
                "a batch of the failed group reported durable"
            );
        }
        // Nothing was lost: each message is in new/ and its journal is still there.
        for k in 0..4 {
            assert_eq!(count_in(&dir.join(k.to_string()).join("Maildir"), "new"), 2);
        }
        assert_eq!(files_named(&dir, "seen.journal.").len(), 4);
        assert!(
            files_named(&dir, "seen.tmp").is_empty(),
            "failed snapshots removed"
        );
        // The next start (the disk repaired) records all of them.
        fs::remove_dir_all(&state_path).unwrap();
        let state = Mutex::new(SeenStore::open(&state_path).unwrap());
        let r = recover(&state).unwrap();
        assert_eq!((r.found, r.recorded, r.moved, r.missing), (4, 8, 0, 0));
        let st = SeenStore::open(&state_path).unwrap();
        for (entries, _) in &results {
            assert!(entries.iter().all(|e| is_seen(&st, &e.key)));
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Where a kill interrupted a group commit of two accounts' batches.
    #[derive(Debug, Clone, Copy)]
    enum CrashPoint {
        /// Both journals written, nothing renamed into `new/`.
        JournalsWritten,
        /// One batch renamed into `new/`, the other not yet.
        HalfRenamed,
        /// Both renamed and recorded in memory; no snapshot written.
        Renamed,
        /// The snapshot holding both written and fsynced under its temp name, not renamed.
        SnapshotNotRenamed,
        /// The snapshot renamed over the state file (applied); the journals not removed.
        AppliedNotRemoved,
    }

    #[test]
    fn recovery_from_each_crash_point_of_a_group_commit() {
        for point in [
            CrashPoint::JournalsWritten,
            CrashPoint::HalfRenamed,
            CrashPoint::Renamed,
            CrashPoint::SnapshotNotRenamed,
            CrashPoint::AppliedNotRemoved,
        ] {
            let dir = scratch(&format!("crash-{point:?}"));
            let state_path = dir.join("seen");
            // A batch committed before the crash, with its journal gone: it must stay seen.
            let (mut md0, done, pending0) = account_batch(&dir, 9, 2);
            {
                let state = Mutex::new(SeenStore::open(&state_path).unwrap());
                publish_batch(&mut md0, batch_of(&done, pending0), &state).unwrap();
            }
            let mut batches = Vec::new();
            for k in 0..2 {
                let (md, entries, pending) = account_batch(&dir, k, 3);
                write(&batch_journal_path(&state_path), &entries).unwrap();
                // The kill: the tmp files outlive the run.
                std::mem::forget(pending);
                batches.push((md, entries));
            }
            let rename = |entries: &[Entry]| {
                for e in entries {
                    fs::rename(&e.tmp, &e.final_path).unwrap();
                }
            };
            match point {
                CrashPoint::JournalsWritten => {}
                CrashPoint::HalfRenamed => rename(&batches[0].1),
                CrashPoint::Renamed | CrashPoint::SnapshotNotRenamed => {
                    rename(&batches[0].1);
                    rename(&batches[1].1);
                }
                CrashPoint::AppliedNotRemoved => {
                    rename(&batches[0].1);
                    rename(&batches[1].1);
                    let mut st = SeenStore::open(&state_path).unwrap();
                    for (_, entries) in &batches {
                        for e in entries {
                            e.key.record(&mut st).unwrap();
                        }
                    }
                    st.commit().unwrap();
                }
            }
            if let CrashPoint::SnapshotNotRenamed = point {
                let mut st = SeenStore::open(&state_path).unwrap();
                for (_, entries) in &batches {
                    for e in entries {
                        e.key.record(&mut st).unwrap();
                    }
                }
                let snapshot_tmp = dir.join(format!("seen.tmp.{}.77", std::process::id() + 1));
                fs::write(&snapshot_tmp, st.render_for_test()).unwrap();
            }
            // A third journal cut while written (its temp file) renamed nothing.
            fs::write(dir.join("seen.journal.99.tmp.12345.0"), "postie-jour").unwrap();

            let state = Mutex::new(SeenStore::open(&state_path).unwrap());
            let r = recover(&state).unwrap();
            assert_eq!((r.found, r.torn, r.missing), (2, 0, 0), "{point:?}: {r:?}");
            assert_eq!(r.recorded + r.moved, 6, "{point:?}");
            let st = SeenStore::open(&state_path).unwrap();
            // Nothing confirmed is fetched again, nothing is lost, nothing is delivered twice.
            assert!(done.iter().all(|e| is_seen(&st, &e.key)), "{point:?}");
            for (md, entries) in &batches {
                assert!(entries.iter().all(|e| is_seen(&st, &e.key)), "{point:?}");
                assert_eq!(count_in(md.root(), "new"), 3, "{point:?}");
                assert_eq!(count_in(md.root(), "tmp"), 0, "{point:?}");
            }
            assert!(files_named(&dir, "seen.journal").is_empty(), "{point:?}");
            assert!(files_named(&dir, "seen.tmp").is_empty(), "{point:?}");
            // A second start finds nothing to do.
            assert_eq!(recover(&state).unwrap(), Recovery::default(), "{point:?}");
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// Times `POSTIE_GROUP_BENCH_ACCOUNTS` (100) accounts publishing one batch of 50 messages of
    /// 5 KB each at the same moment into Maildirs under `POSTIE_GROUP_BENCH_DIR` (a journaled
    /// ext4 shows what the fsyncs cost): what many accounts polled together pay for the durable
    /// step alone. `cargo test --lib group_commit_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement: run it on the file system to measure"]
    fn group_commit_timing() {
        let base = std::env::var_os("POSTIE_GROUP_BENCH_DIR")
            .map_or_else(std::env::temp_dir, PathBuf::from)
            .join(format!("postie-group-bench-{}", std::process::id()));
        let accounts: usize = std::env::var("POSTIE_GROUP_BENCH_ACCOUNTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100);
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let state = Mutex::new(SeenStore::open(base.join("seen")).unwrap());
        let body = format!("Subject: x\r\n\r\n{}\r\n", "y".repeat(5000));
        let info = MessageInfo::default();
        let staged: Vec<_> = (0..accounts)
            .map(|k| {
                let mut md = Maildir::open(base.join(k.to_string())).unwrap();
                let batch: Vec<_> = (0..50)
                    .map(|i| {
                        let p = md.deliver_unsynced(&mut body.as_bytes(), &info).unwrap();
                        (pop3_of(&format!("user{k}"), &format!("uid{i}")), p)
                    })
                    .collect();
                (md, batch)
            })
            .collect();
        let start = std::sync::Barrier::new(accounts + 1);
        let (wall, mut latencies) = std::thread::scope(|s| {
            let handles: Vec<_> = staged
                .into_iter()
                .map(|(mut md, batch)| {
                    let (state, start) = (&state, &start);
                    s.spawn(move || {
                        start.wait();
                        let t = std::time::Instant::now();
                        publish_batch(&mut md, batch, state).unwrap();
                        t.elapsed()
                    })
                })
                .collect();
            start.wait();
            let t = std::time::Instant::now();
            let latencies: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            (t.elapsed(), latencies)
        });
        latencies.sort();
        println!("state commits: {}", state.lock().unwrap().group.commits);
        println!(
            "{accounts} accounts x 50 messages published at once: {:.3} s wall; per batch median {:.3} s, max {:.3} s",
            wall.as_secs_f64(),
            latencies[latencies.len() / 2].as_secs_f64(),
            latencies[latencies.len() - 1].as_secs_f64()
        );
        fs::remove_dir_all(&base).unwrap();
    }
}
