//! The rfetch instance lock under concurrent starts: many daemons started at the same instant
//! against one configuration leave exactly one running, and the survivor's pid is in the lock
//! file for `rfetch --quit` to find.

mod common;

use common::temp_dir as tempdir;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Always killed and reaped, panics included.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A daemon configuration whose poll fails harmlessly: nothing listens on 127.0.0.1:1.
fn config(dir: &Path) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        format!(
            "[accounts.a.fetch]\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = 1\nuser = \"u\"\n\
             password = \"pw\"\ntimeout = 5\nmaildir = \"{}\"\n",
            dir.join("Maildir").display()
        ),
    )
    .expect("write config");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p
}

fn start(dir: &Path, cfg: &Path, pidfile: &Path) -> Reaped {
    let child = Command::new(env!("CARGO_BIN_EXE_rfetch"))
        .args(["-d", "300", "-N", "-C"])
        .arg(cfg)
        .arg("--pidfile")
        .arg(pidfile)
        .env("HOME", dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rfetch");
    Reaped(child)
}

/// Starts `n` daemons at once; returns the ones still running once every other one has exited
/// (a refused start exits at once with code 8).
fn race(dir: &Path, cfg: &Path, pidfile: &Path, n: usize) -> Vec<Reaped> {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (b, dir, cfg, pidfile) = (
                barrier.clone(),
                dir.to_owned(),
                cfg.to_owned(),
                pidfile.to_owned(),
            );
            std::thread::spawn(move || {
                b.wait();
                start(&dir, &cfg, &pidfile)
            })
        })
        .collect();
    let mut children: Vec<Reaped> = threads
        .into_iter()
        .map(|t| t.join().expect("spawner"))
        .collect();
    // Losers exit within moments; give them time even on a loaded machine, then settle.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut running = Vec::new();
    loop {
        running.clear();
        let mut refused = 0;
        for (i, c) in children.iter_mut().enumerate() {
            match c.0.try_wait().expect("try_wait") {
                None => running.push(i),
                Some(st) => {
                    assert_eq!(st.code(), Some(8), "a refused start exits 8, got {st}");
                    refused += 1;
                }
            }
        }
        if running.len() + refused == n && running.len() <= 1 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // One more look a moment later: a second daemon must not be merely slow to notice.
    std::thread::sleep(Duration::from_millis(500));
    let mut alive = Vec::new();
    for (i, mut c) in children.drain(..).enumerate() {
        if running.contains(&i) && c.0.try_wait().expect("try_wait").is_none() {
            alive.push(c);
        }
    }
    alive
}

#[test]
fn fifty_simultaneous_daemon_starts_leave_exactly_one() {
    let dir = tempdir("race");
    let cfg = config(&dir);
    // The default lock path, so that a bare `rfetch -q` (which reads no configuration) finds it.
    let pidfile = dir.join(".fetchmail.pid");
    for round in 0..3 {
        let alive = race(&dir, &cfg, &pidfile, 50);
        assert_eq!(
            alive.len(),
            1,
            "round {round}: {} daemons running at once",
            alive.len()
        );
        let text = std::fs::read_to_string(&pidfile).expect("lock file while running");
        let pid = text.lines().next().expect("pid line");
        assert_eq!(
            pid,
            alive[0].0.id().to_string(),
            "lock file names the survivor"
        );
        assert_eq!(text.lines().nth(1), Some("300"), "interval on line 2");
        // --quit finds and stops it through the pid in the lock file.
        let q = Command::new(env!("CARGO_BIN_EXE_rfetch"))
            .arg("-q")
            .env("HOME", &dir)
            .env_remove("FETCHMAILHOME")
            .stdin(Stdio::null())
            .output()
            .expect("rfetch -q");
        assert!(q.status.success(), "rfetch -q: {q:?}");
        let mut survivor = alive.into_iter().next().expect("one");
        let st = survivor.0.wait().expect("reap");
        assert_eq!(st.code(), Some(0), "the daemon stops cleanly on --quit");
        assert!(!pidfile.exists(), "lock file removed on exit");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_lock_left_by_a_killed_daemon_does_not_block_the_next() {
    let dir = tempdir("stale");
    let cfg = config(&dir);
    let pidfile = dir.join("rfetch.pid");
    let mut first = start(&dir, &cfg, &pidfile);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&pidfile).map_or(true, |t| !t.ends_with("300\n")) {
        assert!(
            Instant::now() < deadline,
            "first daemon never wrote its lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reap");
    assert!(pidfile.exists(), "SIGKILL leaves the file behind");
    let mut second = start(&dir, &cfg, &pidfile);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        second.0.try_wait().expect("try_wait").is_none(),
        "a stale lock file must not keep the next daemon from starting"
    );
    let text = std::fs::read_to_string(&pidfile).expect("lock");
    assert_eq!(text, format!("{}\n300\n", second.0.id()));
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs rfetch with `args` and HOME at `dir`, bounded by [`common::run_bounded`].
fn run_bounded(dir: &Path, args: &[&std::ffi::OsStr], what: &str) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rfetch"));
    command
        .args(args)
        .env("HOME", dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME");
    common::run_bounded(command, what)
}

#[test]
fn a_fifo_at_the_lock_path_is_refused_not_waited_on() {
    // Reading a FIFO with no writer never returns: one planted at the lock path hung both a
    // starting rfetch and rfetch --quit.
    let dir = tempdir("fifo");
    let cfg = config(&dir);
    // The default lock path, so that a bare `rfetch -q` (which reads no configuration) finds it.
    let pidfile = dir.join(".fetchmail.pid");
    common::mkfifo(&pidfile);
    let o = run_bounded(
        &dir,
        &[
            "-d".as_ref(),
            "300".as_ref(),
            "-N".as_ref(),
            "-C".as_ref(),
            cfg.as_os_str(),
            "--pidfile".as_ref(),
            pidfile.as_os_str(),
        ],
        "rfetch --pidfile FIFO",
    );
    let shown = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "started on a FIFO lock: {shown}");
    assert!(
        shown.contains("FIFO") && shown.contains(&pidfile.display().to_string()),
        "the error names the lock file and what it is: {shown}"
    );
    // No rfetch can hold a FIFO as its lock: --quit has nobody to stop.
    let o = run_bounded(&dir, &["-q".as_ref()], "rfetch -q with the lock a FIFO");
    let shown = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "nothing to stop: {shown}");
    assert!(shown.contains("no other rfetch is running"), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}
