//! The Maildir target (maildir(5), cr.yp.to/proto/maildir.html): write to `tmp/` under a unique
//! name, rename into `new/`, and make both durable with fsync — batched, because one fsync per
//! message costs more than the whole protocol exchange (DESIGN §6).
//!
//! A message counts as delivered only once a [`Maildir::sync`] that covers its [`Pending`] token
//! returned `Ok`: the token is the only way to get a [`Receipt`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Deliver, DeliverError, MessageInfo, Receipt, stream_lf};

/// A Maildir opened for delivery.
#[derive(Debug)]
pub struct Maildir {
    root: PathBuf,
    host: String,
    pid: u32,
    seq: u64,
}

/// A message renamed into `new/` but not yet fsynced: not delivered until [`Maildir::sync`]
/// turns it into a [`Receipt`]. Dropping it without syncing leaves the file in `new/` (a crash
/// could lose it, so the caller must not delete the message on the server).
#[must_use = "a pending Maildir delivery is not durable until Maildir::sync confirms it"]
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    bytes: u64,
}

impl Pending {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Maildir {
    /// Opens the Maildir at `root`, creating `root`, `cur/`, `new/` and `tmp/` (mode 0700) when
    /// missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, DeliverError> {
        let root = root.into();
        for sub in ["", "cur", "new", "tmp"] {
            let dir = root.join(sub);
            match fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
            {
                Ok(()) => {}
                Err(e) => {
                    return Err(DeliverError::from_io(
                        format!("cannot create maildir {}", dir.display()),
                        e,
                    ));
                }
            }
        }
        Ok(Maildir {
            root,
            host: maildir_host(),
            pid: std::process::id(),
            seq: 0,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn unique_name(&mut self) -> String {
        self.seq += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            self.pid,
            self.seq,
            self.host
        )
    }

    /// Writes the message to `tmp/` and renames it into `new/` without any fsync. On failure
    /// the tmp file is removed.
    pub fn deliver_unsynced(
        &mut self,
        msg: &mut dyn Read,
        _info: &MessageInfo,
    ) -> Result<Pending, DeliverError> {
        let target = self.root.display().to_string();
        let (tmp_path, file) = loop {
            let name = self.unique_name();
            let tmp_path = self.root.join("tmp").join(&name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp_path)
            {
                Ok(f) => break (tmp_path, f),
                // Another process with our pid (a recycled pid in a container) used the name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(DeliverError::from_io(
                        format!("cannot create a file in {}/tmp", target),
                        e,
                    ));
                }
            }
        };
        let result = (|| {
            let mut out = io::BufWriter::with_capacity(super::CHUNK, file);
            let mut bytes = 0u64;
            stream_lf(msg, |chunk| {
                bytes += chunk.len() as u64;
                out.write_all(chunk)
            })
            .map_err(|e| e.into_deliver(&target))?;
            out.flush()
                .map_err(|e| DeliverError::from_io(format!("cannot write to {target}"), e))?;
            let name = tmp_path.file_name().unwrap_or_default();
            let new_path = self.root.join("new").join(name);
            fs::rename(&tmp_path, &new_path).map_err(|e| {
                DeliverError::from_io(format!("cannot move a message into {target}/new"), e)
            })?;
            Ok(Pending {
                path: new_path,
                bytes,
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp_path);
        }
        result
    }

    /// Makes every pending message durable: fsyncs each file, then `new/` once. Only when this
    /// returns `Ok` are the messages delivered. On error none of them counts as delivered (some
    /// may survive a crash and be delivered twice later; none is lost).
    pub fn sync(&mut self, pending: Vec<Pending>) -> Result<Vec<Receipt>, DeliverError> {
        for p in &pending {
            File::open(&p.path)
                .and_then(|f| f.sync_all())
                .map_err(|e| {
                    DeliverError::from_io(format!("cannot sync {}", p.path.display()), e)
                })?;
        }
        sync_dir(&self.root.join("new"))?;
        Ok(pending
            .into_iter()
            .map(|p| Receipt {
                location: self.root.display().to_string(),
                path: Some(p.path),
                bytes: p.bytes,
            })
            .collect())
    }
}

impl Deliver for Maildir {
    fn deliver(&mut self, msg: &mut dyn Read, info: &MessageInfo) -> Result<Receipt, DeliverError> {
        let pending = self.deliver_unsynced(msg, info)?;
        let mut receipts = self.sync(vec![pending])?;
        receipts
            .pop()
            .ok_or_else(|| DeliverError::permanent("maildir sync returned no receipt"))
    }
}

/// fsyncs a directory so a rename into it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), DeliverError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| DeliverError::from_io(format!("cannot sync directory {}", dir.display()), e))
}

/// The host part of a Maildir file name, with `/` and `:` encoded as the spec requires.
fn maildir_host() -> String {
    let uname = rustix::system::uname();
    let raw = uname.nodename().to_string_lossy().into_owned();
    let raw = if raw.is_empty() {
        "localhost".to_owned()
    } else {
        raw
    };
    raw.replace('/', "\\057").replace(':', "\\072")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_follow_the_convention() {
        let dir = std::env::temp_dir().join(format!("postie-md-unit-{}", std::process::id()));
        let mut md = Maildir::open(&dir).unwrap();
        let a = md.unique_name();
        let b = md.unique_name();
        assert_ne!(a, b);
        assert!(a.contains(&format!("P{}Q1.", std::process::id())), "{a}");
        assert!(!a.contains('/') && !a.contains(':'));
        fs::remove_dir_all(&dir).unwrap();
    }
}
