//! `rfetch -d N` detaches as fetchmail does and `-N` does not: the command returns once the
//! daemon runs; the daemon is in its own session without being its leader, has no terminal,
//! has stdin/stdout on /dev/null and holds the lock under its own PID; --quit stops it. A
//! daemon that cannot start reports its error and exit code to the terminal. No mail server:
//! the account points at a closed loopback port (the daemon just retries it).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RFETCH: &str = env!("CARGO_BIN_EXE_rfetch");

/// A private HOME with a mode-600 ~/.fetchmailrc polling a closed port on 127.0.0.1.
/// Removed when the test passes.
fn home(tag: &str) -> common::TempDir {
    let h = common::temp_dir(&format!("rfetch-detach-{tag}"));
    let closed = common::closed_port();
    let rc = h.join(".fetchmailrc");
    std::fs::write(
        &rc,
        format!("poll 127.0.0.1 proto pop3 port {closed} user u password p\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    h
}

fn rfetch(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(RFETCH);
    c.args(args)
        .env("HOME", home)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::null());
    c
}

/// Runs to completion within 20 s; (exit code, stderr).
fn run(home: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = rfetch(home, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rfetch {args:?} did not return within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lock_pid(home: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(home.join(".fetchmail.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// (session id, controlling terminal) of `pid` from /proc/PID/stat.
fn session_and_tty(pid: i32) -> (i32, i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // after "pid (comm) ": state ppid pgrp session tty_nr ...
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    (f[3].parse().unwrap(), f[4].parse().unwrap())
}

fn alive(pid: i32) -> bool {
    // a zombie has exited; only a live process counts
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
}

/// Kills the daemon `pid` when the test ends before stopping it (a failed assertion would
/// otherwise leave a detached rfetch running for its whole interval).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// The same for a child of the test (std does not signal a child it has already reaped).
struct KillChildOnDrop(std::process::Child);

impl Drop for KillChildOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn daemon_mode_detaches_and_the_daemon_holds_the_lock() {
    let h = home("detach");
    let log = h.join("rfetch.log");
    let (code, err) = run(&h, &["-d", "300", "-L", log.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    // returned only after the daemon took the lock: the file is there at once
    let pid = lock_pid(&h).expect("the daemon's lock file");
    let daemon = KillOnDrop(pid);
    let lock = std::fs::read_to_string(h.join(".fetchmail.pid")).unwrap();
    assert_eq!(lock, format!("{pid}\n300\n"));
    assert!(alive(pid), "daemon {pid} runs");
    let (session, tty) = session_and_tty(pid);
    let (our_session, _) = session_and_tty(std::process::id() as i32);
    assert_ne!(session, our_session, "a new session");
    assert_ne!(session, pid, "not the session leader (second fork)");
    assert_eq!(tty, 0, "no controlling terminal");
    for fd in [0, 1, 2] {
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap(),
            Path::new("/dev/null"),
            "fd {fd}"
        );
    }
    wait_for("the daemon's first log lines", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("starting daemon"))
    });
    assert!(!err.contains("logs nowhere"), "{err}");

    let (code, err) = run(&h, &["--quit"]);
    assert_eq!(code, Some(0), "{err}");
    wait_for("the daemon to exit", || !alive(pid));
    // Gone: its PID may belong to someone else from now on.
    std::mem::forget(daemon);
    assert!(!h.join(".fetchmail.pid").exists(), "lock removed");
}

#[test]
fn nodetach_keeps_the_daemon_in_the_foreground() {
    let h = home("nodetach");
    let child = rfetch(&h, &["-d", "300", "-N"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillChildOnDrop(child);
    let child = &mut child.0;
    wait_for("the lock file", || lock_pid(&h).is_some());
    assert_eq!(lock_pid(&h), Some(child.id() as i32), "the same process");
    assert!(child.try_wait().unwrap().is_none(), "still running");
    let (code, err) = run(&h, &["--quit"]);
    assert_eq!(code, Some(0), "{err}");
    wait_for("rfetch -N to exit", || child.try_wait().unwrap().is_some());
}

#[test]
fn a_daemon_that_cannot_start_reports_its_error_to_the_terminal() {
    let h = home("busy");
    // a live process (this test) holds the lock
    std::fs::write(
        h.join(".fetchmail.pid"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    let (code, err) = run(&h, &["-d", "300"]);
    assert_eq!(code, Some(8), "{err}");
    // the holder is a live process that holds no flock (as fetchmail would): refused, named
    assert!(
        err.contains(".fetchmail.pid") && err.contains(&std::process::id().to_string()),
        "{err}"
    );
    assert_eq!(
        lock_pid(&h),
        Some(std::process::id() as i32),
        "lock untouched"
    );

    // without a log file or syslog the detached daemon would log nowhere: said on the terminal
    let h = home("nowhere");
    let (code, err) = run(&h, &["-d", "300"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("logs nowhere"), "{err}");
    let pid = lock_pid(&h).unwrap();
    let (code, _) = run(&h, &["--quit"]);
    assert_eq!(code, Some(0));
    wait_for("the daemon to exit", || !alive(pid));
}
