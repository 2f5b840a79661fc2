//! The start of one rfetch instance, before anything is polled: the instance lock (fetchmail's
//! pid file), the seen-state store (the id file), and finishing a batch a killed run left
//! journaled, in that order; and where the lock and id files are when none is configured.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::journal;
use super::lock::{self, PidLock};
use super::state::SeenStore;
use crate::account::Env;
use crate::error::Result;

/// A started instance: the lock it holds until it is dropped, and the seen state every poll of
/// the run shares.
pub struct Instance {
    pub lock: PidLock,
    pub state: Mutex<SeenStore>,
}

impl Instance {
    /// Takes the lock at `lock_file` (`interval`: the daemon's poll interval, which the lock
    /// file records as fetchmail's does), opens the id file, and recovers a journaled batch.
    /// The lock comes first: two instances must never recover or poll at once.
    pub fn start(lock_file: &Path, interval: Option<u64>, idfile: &Path) -> Result<Instance> {
        let lock = lock::acquire(lock_file, interval)?;
        let state = Mutex::new(SeenStore::open(idfile)?);
        // A batch a killed run left half-published is finished before anything is fetched
        // again.
        journal::recover(&state)?;
        Ok(Instance { lock, state })
    }
}

/// The lock file: the configured one (`-f`/`--pidfile`, `set pidfile`), else
/// `$FETCHMAILHOME/fetchmail.pid`, else `~/.fetchmail.pid`, as fetchmail.
pub fn lock_path(configured: Option<PathBuf>, env: &Env) -> PathBuf {
    if let Some(p) = configured {
        return p;
    }
    if let Some(h) = std::env::var_os("FETCHMAILHOME") {
        return PathBuf::from(h).join("fetchmail.pid");
    }
    env.expand_tilde("~/.fetchmail.pid")
}

/// The id file (the seen state): the configured one (`-i`, `set idfile`), else
/// `$FETCHMAILHOME/.fetchids`, else `~/.fetchids`, as fetchmail.
pub fn idfile_path(configured: Option<PathBuf>, env: &Env) -> PathBuf {
    if let Some(p) = configured {
        return p;
    }
    if let Some(h) = std::env::var_os("FETCHMAILHOME") {
        return PathBuf::from(h).join(".fetchids");
    }
    env.home
        .as_ref()
        .map_or_else(|| PathBuf::from(".fetchids"), |h| h.join(".fetchids"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_paths_win() {
        let env = Env {
            home: Some("/home/u".into()),
            ..Env::default()
        };
        assert_eq!(
            lock_path(Some("/run/x.pid".into()), &env),
            PathBuf::from("/run/x.pid")
        );
        assert_eq!(
            idfile_path(Some("/var/ids".into()), &env),
            PathBuf::from("/var/ids")
        );
        // The defaults depend on FETCHMAILHOME, which this process may have; they are files
        // called as fetchmail calls them either way.
        let lock = lock_path(None, &env);
        assert!(lock.ends_with("fetchmail.pid") || lock.ends_with(".fetchmail.pid"));
        assert!(idfile_path(None, &env).ends_with(".fetchids"));
    }

    /// The lock is taken before the id file is read: a second instance fails on the lock and
    /// never touches the state.
    #[test]
    fn second_instance_is_refused() {
        let dir = std::env::temp_dir().join(format!("postie-instance-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lock_file = dir.join("lock");
        let idfile = dir.join("ids");
        let first = Instance::start(&lock_file, None, &idfile).unwrap();
        assert!(Instance::start(&lock_file, None, &dir.join("other-ids")).is_err());
        assert!(!dir.join("other-ids").exists());
        drop(first);
        assert!(Instance::start(&lock_file, None, &idfile).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
