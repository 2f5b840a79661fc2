//! The instance lock (fetchmail's pid file): `pid\n[interval\n]`, held with flock(2) for the
//! life of the process; `--quit` signals the live owner named in it.
//!
//! Why flock and not only the pid: fetchmail creates the file with O_EXCL and writes the pid
//! afterwards, so a second instance starting in between reads no pid, takes the lock for stale,
//! removes it and runs too. A flock is taken atomically and released by the kernel when its
//! holder dies, so "stale" needs no guessing and a lock file is never removed by anyone but its
//! holder. The pid stays in the file because `rfetch --quit`, a second rfetch and fetchmail
//! itself read it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};
use rustix::process::{Pid, Signal, kill_process, test_kill_process};

use crate::error::{Error, ErrorKind, Result};

/// A held lock: the open, flocked file. Removed on drop, while still locked.
#[derive(Debug)]
pub struct PidLock {
    path: PathBuf,
    file: File,
}

impl PidLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        // Unlink while the lock is still held, and only if the path is still our file: a
        // starter that opened it before the unlink finds its lock on an unlinked file and
        // tries again (see `acquire`).
        if is_same_file(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn is_same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn first_line_pid(text: &str) -> Option<i32> {
    text.lines().next()?.trim().parse().ok()
}

/// Largest lock file read: rfetch and fetchmail write a pid and an interval, a few bytes. The
/// bound keeps a file planted at the lock path (a huge file, a symlink to `/dev/zero`) from
/// being read to its end.
const MAX_LOCK_BYTES: u64 = 4096;

/// The text of an open lock file from its start, at most [`MAX_LOCK_BYTES`] (larger is an
/// error); bytes that are not UTF-8 are replaced, as they name no pid either way.
fn read_lock_text(mut file: &File) -> io::Result<String> {
    file.rewind()?;
    let bytes = crate::config::read_bytes_at_most(file, MAX_LOCK_BYTES)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read_pid(file: &File) -> Option<i32> {
    first_line_pid(&read_lock_text(file).ok()?)
}

/// Opens the lock file at `path` for reading without waiting on a FIFO, refusing anything but a
/// regular file (or `/dev/null`, which names no pid).
fn open_lock_to_read(path: &Path) -> Option<File> {
    crate::config::open_regular_file(path).ok()
}

/// Whether `pid` names a live process other than this one.
fn is_alive_other(pid: i32) -> bool {
    let Some(p) = crate::process::single_process(pid) else {
        return false;
    };
    if pid == std::process::id() as i32 {
        return false;
    }
    match test_kill_process(p) {
        Ok(()) => true,
        // EPERM: alive but someone else's.
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// The pid of the instance holding the lock file, if one holds it.
///
/// Only a file some process holds a flock on counts: a pid in a file nobody holds is left over
/// from a killed instance, and may by now belong to an unrelated process that `--quit` must not
/// signal. Probing takes a shared lock for an instant; a daemon starting in exactly that
/// instant is refused as if another were running.
pub fn running_pid(path: &Path) -> Option<i32> {
    held_lock_text(path).and_then(|text| positive_pid(&text))
}

/// The first line's pid, only if it names one process (0 and negative numbers name process
/// groups to kill(2): a lock file never makes rfetch signal a group).
fn positive_pid(text: &str) -> Option<i32> {
    first_line_pid(text).filter(|&pid| crate::process::single_process(pid).is_some())
}

/// The lock file's text when some process holds its flock (see [`running_pid`]), read once.
fn held_lock_text(path: &Path) -> Option<String> {
    let file = open_lock_to_read(path)?;
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = flock(&file, FlockOperation::Unlock);
            None
        }
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => read_lock_text(&file).ok(),
        Err(_) => None,
    }
}

/// The instance holding the lock file and whether it is a daemon (the interval on the
/// second line, as fetchmail writes it and reads it to tell a background instance).
pub fn running_instance(path: &Path) -> Option<(i32, bool)> {
    let text = held_lock_text(path)?;
    let pid = positive_pid(&text)?;
    let daemon = text
        .lines()
        .nth(1)
        .is_some_and(|l| l.trim().parse::<u64>().is_ok());
    Some((pid, daemon))
}

/// fetchmail's wake-up: SIGUSR1 to the daemon `pid`, which polls every account at once.
pub fn wake(pid: i32) -> Result<()> {
    send(pid, Signal::USR1, "wake").map(|_| ())
}

/// Sends `signal` to the one process `pid` (never a group); `what` names the act in the error.
fn send(pid: i32, signal: Signal, what: &str) -> Result<Pid> {
    let p = crate::process::single_process(pid)
        .ok_or_else(|| Error::new(ErrorKind::Internal, "bad pid"))?;
    kill_process(p, signal).map_err(|e| {
        Error::with_source(
            ErrorKind::Lock,
            format!("cannot {what} rfetch pid {pid}"),
            io::Error::from(e),
        )
    })?;
    Ok(p)
}

fn held_elsewhere(path: &Path, pid: Option<i32>) -> Error {
    let who = match pid {
        Some(pid) => format!("pid {pid}, "),
        None => String::new(),
    };
    Error::new(
        ErrorKind::Lock,
        format!(
            "another rfetch is running ({who}lock file {}); stop it with rfetch --quit",
            path.display()
        ),
    )
}

fn io_error(what: &str, path: &Path, e: impl Into<io::Error>) -> Error {
    Error::with_source(
        ErrorKind::LocalIo,
        format!("{what} {}", path.display()),
        e.into(),
    )
}

/// How long a lock whose named holder no longer exists is waited for (see [`acquire`]): the
/// kill test met it once in some 700 runs, right after killing an rfetch that was starting an
/// MDA on a loaded machine.
const HOLDER_GONE_WAIT: Duration = Duration::from_secs(2);

/// Takes the lock. Another live instance is an error of kind Lock; a file left by a dead one
/// is taken over (its flock died with it).
pub fn acquire(path: &Path, interval: Option<u64>) -> Result<PidLock> {
    // Each retry follows a holder that removed the file between our open and our flock;
    // holders come and go far less often than that.
    for _ in 0..16 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            // Never truncated before the lock is ours: the holder's pid must stay readable.
            .truncate(false)
            .mode(0o644)
            // Not waiting on a FIFO planted at the path (a regular file ignores the flag).
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)
            .map_err(|e| io_error("cannot create lock file", path, e))?;
        // A FIFO would hang the pid read below, a device (a symlink to /dev/zero) would feed it
        // without end, and neither can be written as a lock file.
        let file = crate::config::regular_file_only(file, false)
            .map_err(|e| io_error("cannot use lock file", path, e))?;
        let mut holder_gone_since = None;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    // The holder may not have written its pid yet: then there is none to show.
                    let pid = read_pid(&file);
                    // The pid named is gone, yet the flock is held: by a child the holder was
                    // starting when it was killed (between fork and exec the child shares the
                    // locked file), which lets go once it runs its program.
                    let gone = pid.is_some_and(|p| {
                        crate::process::single_process(p)
                            .is_some_and(|p| test_kill_process(p) == Err(rustix::io::Errno::SRCH))
                    });
                    let since = *holder_gone_since.get_or_insert_with(Instant::now);
                    if !gone || since.elapsed() > HOLDER_GONE_WAIT {
                        return Err(held_elsewhere(path, pid));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(io_error("cannot lock", path, e)),
            }
        }
        if !is_same_file(&file, path) {
            continue;
        }
        // More than a lock file ever holds: some other file (a mistyped --pidfile naming a
        // mailbox?), never overwritten with our pid.
        let text = read_lock_text(&file).map_err(|e| io_error("cannot use lock file", path, e))?;
        // A live pid in a file nobody had locked: an instance that does not flock (fetchmail,
        // an older rfetch) holds it the O_EXCL way.
        if let Some(pid) = first_line_pid(&text).filter(|&p| is_alive_other(p)) {
            return Err(Error::new(
                ErrorKind::Lock,
                format!(
                    "lock file {} names running process {pid} (fetchmail or an older rfetch?); \
                     stop it, or remove the file if that process is no fetcher",
                    path.display()
                ),
            ));
        }
        let mut text = format!("{}\n", std::process::id());
        if let Some(i) = interval {
            text.push_str(&format!("{i}\n"));
        }
        // Written over the old contents, then cut to length: a reader never sees an empty
        // file, only the old pid or the new one on the first line.
        file.write_all_at(text.as_bytes(), 0)
            .and_then(|()| file.set_len(text.len() as u64))
            .map_err(|e| io_error("cannot write lock file", path, e))?;
        return Ok(PidLock {
            path: path.to_owned(),
            file,
        });
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
    let p = send(pid, Signal::TERM, "signal")?;
    let start = Instant::now();
    while start.elapsed() < wait {
        // Gone, or done: a stopped instance removes its lock before exiting (and may linger
        // as a zombie until its parent reaps it).
        let holder = open_lock_to_read(path).and_then(|f| read_pid(&f));
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
    use crate::test_support::{mkfifo, within};

    /// A lock file path in a directory of the test's own, holding the pid of a process that
    /// cannot be alive (what a killed rfetch leaves behind).
    fn dead_holders_lock(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("rfetch-{name}-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let path = dir.join("pid");
        fs::write(&path, "999999999\n").unwrap();
        (dir, path)
    }

    #[test]
    fn a_fifo_at_the_lock_path_is_refused_not_waited_on() {
        // Opening a FIFO for reading waits for a writer, and reading one with no writer waits
        // forever: a FIFO planted at the lock path once hung rfetch and rfetch --quit.
        let (dir, path) = dead_holders_lock("lock-fifo");
        fs::remove_file(&path).unwrap();
        mkfifo(&path);
        let p = path.clone();
        let e = within("acquire", move || acquire(&p, None).map(|_| ()))
            .expect_err("a FIFO is no lock file");
        let shown = e.chain();
        assert!(shown.contains("FIFO"), "{shown}");
        let p = path.clone();
        assert_eq!(within("running_pid", move || running_pid(&p)), None);
        let p = path.clone();
        assert_eq!(
            within("running_instance", move || running_instance(&p)),
            None
        );
        let p = path.clone();
        let quit = within("quit_running", move || {
            quit_running(&p, Duration::from_secs(1)).map_err(|e| e.to_string())
        });
        assert_eq!(quit, Ok(None));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_device_at_the_lock_path_is_refused_not_read() {
        // A symlink to /dev/zero reads zeros for ever: read to the end, it ate all memory.
        let (dir, path) = dead_holders_lock("lock-dev");
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let p = path.clone();
        let e = within("acquire", move || acquire(&p, None).map(|_| ()))
            .expect_err("a device is no lock file");
        let shown = e.chain();
        assert!(shown.contains("character device"), "{shown}");
        let p = path.clone();
        assert_eq!(within("running_pid", move || running_pid(&p)), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_oversized_lock_file_is_refused_and_left_alone() {
        // Neither rfetch nor fetchmail writes more than a pid and an interval: a larger file is
        // not a lock file (a mistyped --pidfile naming a mailbox?), so it is neither read whole
        // nor overwritten with our pid.
        let (dir, path) = dead_holders_lock("lock-big");
        let big = format!("999999999\n{}", "x".repeat(1 << 20));
        fs::write(&path, &big).unwrap();
        let e = acquire(&path, None).unwrap_err();
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        let shown = e.chain();
        assert!(shown.contains("larger than"), "{shown}");
        assert_eq!(fs::read_to_string(&path).unwrap(), big);
        // Held by someone, it still names no pid to signal.
        let file = File::open(&path).unwrap();
        flock(&file, FlockOperation::LockShared).unwrap();
        assert_eq!(running_pid(&path), None);
        drop(file);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_lock_a_dead_holders_child_still_holds_is_waited_for() {
        // What a killed rfetch can leave for a moment: its pid, gone, in the file, and the flock
        // held by a child it was starting. flock(1) plays the child.
        let (dir, path) = dead_holders_lock("lock-orphan");
        let mut child = std::process::Command::new("flock")
            .arg(&path)
            .args(["sleep", "0.5"])
            .spawn()
            .expect("flock(1) from util-linux");
        let start = Instant::now();
        while running_pid(&path).is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "flock(1) took the lock"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let lock = acquire(&path, None).expect("taken once the child let go");
        child.wait().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(lock);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn stale_lock_is_replaced_and_live_one_refused() {
        let (dir, path) = dead_holders_lock("lock");
        let lock = acquire(&path, Some(60)).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n60\n", std::process::id())
        );
        drop(lock);
        assert!(!path.exists());
        // pid 1 is alive: a file written the O_EXCL way (fetchmail) by a live process.
        fs::write(&path, "1\n").unwrap();
        let e = acquire(&path, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Lock);
        // ... but nobody holds a flock on it, so --quit has no one to signal.
        assert_eq!(running_pid(&path), None);
        fs::remove_file(&path).unwrap();
        // A held lock refuses a second taker even before its pid is written (an empty file),
        // and is never removed by it.
        let held = acquire(&path, None).unwrap();
        held.file.set_len(0).unwrap();
        let e = acquire(&path, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Lock);
        assert!(path.exists());
        held.file.write_all_at(b"4242\n", 0).unwrap();
        assert_eq!(running_pid(&path), Some(4242));
        assert_eq!(running_instance(&path), Some((4242, false)));
        held.file.write_all_at(b"4242\n300\n", 0).unwrap();
        assert_eq!(running_instance(&path), Some((4242, true)));
        // 0 and negative numbers name process groups to kill(2): never a pid to signal.
        for group in [b"-1\n300\n", b"0\n300\n\n"] {
            held.file.set_len(0).unwrap();
            held.file.write_all_at(group, 0).unwrap();
            assert_eq!(running_pid(&path), None);
            assert_eq!(running_instance(&path), None);
        }
        drop(held);
        assert!(!path.exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
