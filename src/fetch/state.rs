//! rfetch's per-message "already seen" store: POP3 UIDL strings (RFC 1939 §7) and IMAP UIDs
//! per folder and UIDVALIDITY (RFC 3501 §2.3.1.1), keyed by account (protocol, server, user).
//!
//! Durability: changes are made in memory and written by [`SeenStore::commit`], which writes the
//! whole file to a temp file in the same directory, fsyncs it, renames it over the old one and
//! fsyncs the directory. A SIGKILL at any point leaves either the old or the new file, never a
//! torn one. Callers batch: record a group of UIDs, commit once (DESIGN §6).
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
//! ```
//!
//! A file without the `postie-seen` first line is read as fetchmail's `.fetchids` (`user@server
//! UID` per line, POP3); the next commit rewrites it in the format above.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AccountSeen {
    pop3: BTreeSet<String>,
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

/// The seen-message store, loaded in memory.
#[derive(Debug)]
pub struct SeenStore {
    path: PathBuf,
    accounts: BTreeMap<AccountKey, AccountSeen>,
    dirty: bool,
}

impl SeenStore {
    /// Loads the store at `path`. A missing file is an empty store; an unreadable, oversized or
    /// malformed one is an error.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StateError> {
        let path = path.into();
        let text = match read_bounded(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(SeenStore {
                    path,
                    accounts: BTreeMap::new(),
                    dirty: false,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                return Err(StateError::TooLarge { path });
            }
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let accounts = parse(&path, &text)?;
        Ok(SeenStore {
            path,
            accounts,
            dirty: false,
        })
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
        }
        Ok(())
    }

    /// Forgets the UIDs for which `keep` returns false — call it with the server's current
    /// UIDL list after a poll so deleted messages do not accumulate (fetchmail drops them too).
    pub fn pop3_retain(&mut self, account: &AccountKey, mut keep: impl FnMut(&str) -> bool) {
        if let Some(a) = self.accounts.get_mut(account) {
            let before = a.pop3.len();
            a.pop3.retain(|u| keep(u));
            if a.pop3.len() != before {
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
                f.uidvalidity = uidvalidity;
                f.uids.clear();
                self.dirty = true;
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
        let f = entry.imap.entry(folder.to_owned()).or_insert(ImapFolder {
            uidvalidity,
            uids: BTreeSet::new(),
        });
        if f.uidvalidity != uidvalidity {
            f.uidvalidity = uidvalidity;
            f.uids.clear();
            self.dirty = true;
        }
        for uid in uids {
            if f.uids.insert(uid) {
                self.dirty = true;
            }
        }
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
            let before = f.uids.len();
            f.uids.retain(|u| keep(*u));
            if f.uids.len() != before {
                self.dirty = true;
            }
        }
    }

    // ---- durability ----

    /// Writes the store durably (temp file, fsync, rename, fsync dir). Does nothing when there
    /// are no changes. When this returns `Ok`, everything recorded so far survives a crash.
    pub fn commit(&mut self) -> Result<(), StateError> {
        if !self.dirty {
            return Ok(());
        }
        write_atomic(&self.path, &self.render(), FaultPoint::None)?;
        self.dirty = false;
        Ok(())
    }

    /// The file content for the current state.
    fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(MAGIC);
        out.push('\n');
        for (key, seen) in &self.accounts {
            let server = encode(&key.server);
            let user = encode(&key.user);
            for uid in &seen.pop3 {
                out.push_str(&format!("pop3 {server} {user} {}\n", encode(uid)));
            }
            for (folder, f) in &seen.imap {
                let ranges = to_ranges(&f.uids);
                let folder = encode(folder);
                if ranges.is_empty() {
                    out.push_str(&format!(
                        "imap {server} {user} {folder} {} -\n",
                        f.uidvalidity
                    ));
                }
                for chunk in ranges.chunks(RANGES_PER_LINE) {
                    out.push_str(&format!(
                        "imap {server} {user} {folder} {} {}\n",
                        f.uidvalidity,
                        chunk.join(",")
                    ));
                }
            }
        }
        out
    }
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
    let file = File::open(path)?;
    let mut text = String::new();
    let n = file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
    if n as u64 > MAX_FILE_BYTES {
        return Err(io::Error::from(io::ErrorKind::FileTooLarge));
    }
    Ok(text)
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
        let dec = |f: &str| decode(f).ok_or_else(|| corrupt(no, format!("bad encoding in {f:?}")));
        match fields.as_slice() {
            ["pop3", server, user, uid] => {
                let uid = dec(uid)?;
                check_uid(&uid).map_err(|e| corrupt(no, e.to_string()))?;
                accounts
                    .entry(AccountKey::pop3(dec(server)?, dec(user)?))
                    .or_default()
                    .pop3
                    .insert(uid);
            }
            ["imap", server, user, folder, validity, ranges] => {
                let uidvalidity: u32 = validity
                    .parse()
                    .map_err(|_| corrupt(no, format!("bad uidvalidity {validity:?}")))?;
                let folder = dec(folder)?;
                let seen = accounts
                    .entry(AccountKey::imap(dec(server)?, dec(user)?))
                    .or_default();
                let f = seen.imap.entry(folder).or_insert(ImapFolder {
                    uidvalidity,
                    uids: BTreeSet::new(),
                });
                if f.uidvalidity != uidvalidity {
                    return Err(corrupt(no, "two uidvalidity values for one folder".into()));
                }
                if *ranges != "-" {
                    parse_ranges(ranges, &mut f.uids)
                        .ok_or_else(|| corrupt(no, format!("bad uid set {ranges:?}")))?;
                }
            }
            _ => return Err(corrupt(no, "unrecognised record".into())),
        }
    }
    Ok(accounts)
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
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let injected = || io::Error::other("injected fault");
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
            return Err(injected());
        }
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        drop(f);
        if fault == FaultPoint::BeforeRename {
            return Err(injected());
        }
        fs::rename(&tmp, path)?;
        if fault == FaultPoint::BeforeDirSync {
            return Err(injected());
        }
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() && fault == FaultPoint::None {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("postie-state-unit-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
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
        s.pop3_record(&AccountKey::pop3("h", "u"), uids.iter().copied())
            .unwrap();
        s
    }

    #[test]
    fn a_fault_at_any_step_leaves_old_or_new_state() {
        let dir = temp("faults");
        let path = dir.join("seen");
        store_with(&path, &["old"]).commit().unwrap();
        let key = AccountKey::pop3("h", "u");
        for (fault, expect_new) in [
            (FaultPoint::MidWrite, false),
            (FaultPoint::BeforeRename, false),
            (FaultPoint::BeforeDirSync, true),
        ] {
            let s = store_with(&path, &["old", "new"]);
            assert!(write_atomic(&path, &s.render(), fault).is_err());
            let reopened = SeenStore::open(&path).unwrap();
            assert!(reopened.pop3_is_seen(&key, "old"), "{fault:?}");
            assert_eq!(reopened.pop3_is_seen(&key, "new"), expect_new, "{fault:?}");
            // Restore the old state for the next round; a left-over temp file is overwritten.
            let mut s = SeenStore::open(&path).unwrap();
            s.pop3_retain(&key, |u| u == "old");
            s.commit().unwrap();
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
