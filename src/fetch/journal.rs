//! The Maildir batch journal: makes "renamed into `new/`" and "recorded as seen" one atomic
//! step as far as a SIGKILL is concerned, so a killed rfetch never fetches a Maildir batch again.
//!
//! Commit order for one batch ([`publish_batch`]): fsync the files in `tmp/`; write the journal
//! (`<statefile>.journal`: temp name, fsync, rename, directory fsync) naming each message's state
//! key, tmp path and final `new/` path; rename into `new/` and fsync `new/`; record the keys in
//! the [`SeenStore`] and commit it; remove the journal. Only then does the caller delete on the
//! server.
//!
//! Recovery ([`recover`], at start-up after the instance lock, before any poll): for each entry
//! of a journal left behind, a file present at its final path is recorded as seen; a file still
//! in `tmp/` (it was fsynced before the journal was written) is renamed into `new/` and recorded;
//! otherwise nothing happens. A journal without its header, entry count or closing `end` line is
//! ignored: it was cut while being written, and nothing had been renamed yet.
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
//! One journal per state file is enough because the whole commit runs under the state lock, so
//! account threads publish their batches one after another.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// The journal that belongs to a state file: `<statefile>.journal`.
pub fn journal_path(state_path: &Path) -> PathBuf {
    let mut name = state_path.as_os_str().to_owned();
    name.push(".journal");
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

fn lock_state(state: &Mutex<SeenStore>) -> Result<std::sync::MutexGuard<'_, SeenStore>> {
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
    let entries: Vec<Entry> = keys
        .into_iter()
        .zip(&pending)
        .map(|(key, p)| Entry {
            key,
            tmp: p.tmp_path().to_owned(),
            final_path: maildir.final_path(p),
        })
        .collect();
    // The state lock covers journal, renames and commit: one batch in flight per journal file.
    let mut st = lock_state(state)?;
    let path = journal_path(st.path());
    // On failure `pending` is dropped here, which removes the tmp files: nothing was renamed.
    write(&path, &entries)?;
    let receipts = match maildir.publish(pending) {
        Ok(r) => r,
        Err(e) => {
            let err = Error::from(e);
            if let Err(re) = recover_locked(&mut st, &path) {
                log::error!("{}", re.chain());
            }
            return Err(err);
        }
    };
    for e in &entries {
        e.key.record(&mut st)?;
    }
    st.commit()?;
    remove(&path)?;
    Ok(receipts)
}

/// What [`recover`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// A journal was found.
    pub found: bool,
    /// It was cut while being written and was ignored.
    pub torn: bool,
    /// Entries found in `new/` and recorded as seen.
    pub recorded: usize,
    /// Entries moved from `tmp/` into `new/` and recorded.
    pub moved: usize,
    /// Entries with neither file (their batch never got to the rename).
    pub missing: usize,
}

/// Finishes a batch a killed run left journaled (call at start-up, after the instance lock and
/// before any poll). Logs what it did.
pub fn recover(state: &Mutex<SeenStore>) -> Result<Recovery> {
    let mut st = lock_state(state)?;
    let path = journal_path(st.path());
    remove_stale_temps(&path);
    let r = recover_locked(&mut st, &path)?;
    if r.torn {
        log::info!(
            "batch journal {} was incomplete (cut while written, nothing had been delivered); ignored",
            path.display()
        );
    } else if r.found {
        log::info!(
            "batch journal {}: recovered an interrupted batch: {} messages already in the maildir recorded as fetched, {} moved from tmp/ into new/, {} not delivered",
            path.display(),
            r.recorded,
            r.moved,
            r.missing
        );
    }
    Ok(r)
}

fn recover_locked(st: &mut SeenStore, path: &Path) -> Result<Recovery> {
    let mut r = Recovery::default();
    let text = match read_bounded(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(r),
        Err(e) => {
            return Err(Error::with_source(
                ErrorKind::LocalIo,
                format!("cannot read the batch journal {}", path.display()),
                e,
            ));
        }
    };
    r.found = true;
    let Some(entries) = text.as_deref().and_then(parse) else {
        r.torn = true;
        remove(path)?;
        return Ok(r);
    };
    let mut dirs = BTreeSet::new();
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
    remove(path)?;
    Ok(r)
}

/// Reads the journal; `Ok(None)` when it is too large or not text (so: not ours, ignored).
fn read_bounded(path: &Path) -> io::Result<Option<String>> {
    let mut raw = Vec::new();
    File::open(path)?
        .take(MAX_JOURNAL_BYTES + 1)
        .read_to_end(&mut raw)?;
    if raw.len() as u64 > MAX_JOURNAL_BYTES {
        return Ok(None);
    }
    Ok(String::from_utf8(raw).ok())
}

/// Removes `<journal>.tmp.*` files of runs killed while writing their journal.
fn remove_stale_temps(journal: &Path) {
    let (Some(dir), Some(name)) = (journal.parent(), journal.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = name.as_bytes().to_vec();
    prefix.extend_from_slice(b".tmp.");
    let Ok(list) = fs::read_dir(dir) else {
        return;
    };
    for item in list.flatten() {
        if item.file_name().as_bytes().starts_with(&prefix) {
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
        let mut md = Maildir::open(dir.join("Maildir")).unwrap();
        let info = MessageInfo::default();
        let mut pending = Vec::new();
        for body in ["a", "b", "c"] {
            let msg = format!("Subject: {body}\r\n\r\n{body}\r\n");
            pending.push(md.deliver_unsynced(&mut msg.as_bytes(), &info).unwrap());
        }
        md.sync_files(&pending).unwrap();
        let keys = [pop3("p1"), imap(5), imap(6)];
        let entries = keys
            .into_iter()
            .zip(&pending)
            .map(|(key, p)| Entry {
                key,
                tmp: p.tmp_path().to_owned(),
                final_path: md.final_path(p),
            })
            .collect();
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
                found: true,
                torn: false,
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
        assert!(r.found && r.torn && r.recorded + r.moved + r.missing == 0);
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
}
