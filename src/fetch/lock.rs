//! The instance lock (fetchmail's pid file, anchor §8): `pid\n[interval\n]`, created with
//! O_EXCL; a lock left by a dead process is removed; `--quit` signals the live owner.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, test_kill_process};

use crate::error::{Error, ErrorKind, Result};

/// A held lock; removed on drop.
#[derive(Debug)]
pub struct PidLock {
    path: PathBuf,
}

impl PidLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The pid recorded in a lock file, when the file exists and names a live process.
pub fn running_pid(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let p = Pid::from_raw(pid)?;
    if pid == std::process::id() as i32 {
        return None;
    }
    match test_kill_process(p) {
        Ok(()) => Some(pid),
        // EPERM: alive but someone else's.
        Err(e) if e == rustix::io::Errno::PERM => Some(pid),
        Err(_) => None,
    }
}

/// Takes the lock, removing a stale one. Another live instance is an error of kind Lock.
pub fn acquire(path: &Path, interval: Option<u64>) -> Result<PidLock> {
    for _ in 0..3 {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
        {
            Ok(mut f) => {
                let mut text = format!("{}\n", std::process::id());
                if let Some(i) = interval {
                    text.push_str(&format!("{i}\n"));
                }
                f.write_all(text.as_bytes()).map_err(|e| {
                    Error::with_source(
                        ErrorKind::LocalIo,
                        format!("cannot write lock file {}", path.display()),
                        e,
                    )
                })?;
                return Ok(PidLock {
                    path: path.to_owned(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if let Some(pid) = running_pid(path) {
                    return Err(Error::new(
                        ErrorKind::Lock,
                        format!(
                            "another rfetch is running (pid {pid}, lock file {}); stop it with rfetch --quit",
                            path.display()
                        ),
                    ));
                }
                log::info!("removing stale lock file {}", path.display());
                let _ = fs::remove_file(path);
            }
            Err(e) => {
                return Err(Error::with_source(
                    ErrorKind::LocalIo,
                    format!("cannot create lock file {}", path.display()),
                    e,
                ));
            }
        }
    }
    Err(Error::new(
        ErrorKind::Lock,
        format!("cannot take the lock file {}", path.display()),
    ))
}

/// `--quit`: SIGTERM the instance holding the lock and wait up to `wait` for it to exit (or
/// at least to release the lock).
/// Returns the pid signalled, or `None` when no instance runs.
pub fn quit_running(path: &Path, wait: Duration) -> Result<Option<i32>> {
    let Some(pid) = running_pid(path) else {
        return Ok(None);
    };
    let p = Pid::from_raw(pid).ok_or_else(|| Error::new(ErrorKind::Internal, "bad pid"))?;
    kill_process(p, Signal::TERM).map_err(|e| {
        Error::with_source(
            ErrorKind::Lock,
            format!("cannot signal rfetch pid {pid}"),
            io::Error::from(e),
        )
    })?;
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        // Gone, or done: a stopped instance removes its lock before exiting (and may linger
        // as a zombie until its parent reaps it).
        let holder = fs::read_to_string(path)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        if test_kill_process(p).is_err() || holder != Some(pid) {
            return Ok(Some(pid));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::new(
        ErrorKind::Lock,
        format!("rfetch pid {pid} did not exit within {} s", wait.as_secs()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_lock_is_replaced_and_live_one_refused() {
        let dir = std::env::temp_dir().join(format!("rfetch-lock-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let path = dir.join("pid");
        // A pid that cannot be alive.
        fs::write(&path, "999999999\n").unwrap();
        let lock = acquire(&path, Some(60)).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n60\n", std::process::id())
        );
        drop(lock);
        assert!(!path.exists());
        // pid 1 is alive.
        fs::write(&path, "1\n").unwrap();
        let e = acquire(&path, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Lock);
        let _ = fs::remove_dir_all(&dir);
    }
}
