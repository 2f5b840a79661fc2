//! The temporary file rsend spools a large message body to is private from its first moment:
//! created with mode 0600 (not created and then restricted), so even under `umask 000` no other
//! user can open it in between. Checked on a running rsend through /proc/PID/fd while it is still
//! reading its standard input.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::rsend::*;

/// The spool file among the open files of process `pid`: the one whose name is in `dir`.
fn spool_fd(pid: u32, dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.flatten()
        .map(|e| e.path())
        .find(|fd| std::fs::read_link(fd).is_ok_and(|target| target.starts_with(dir)))
}

#[test]
fn spool_file_is_0600_even_under_umask_000() {
    let dir = TempDir::new("spool");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let rc = write_rc(
        dir.path(),
        "account default\nhost 127.0.0.1\nport 9\ntls off\nfrom a@localhost\n",
        0o600,
    );
    // The umask is set by the shell that then becomes rsend, so only rsend runs with it.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(RSEND)
        .arg("-C")
        .arg(&rc)
        .arg("bob@example.test")
        .env("TMPDIR", &tmp)
        .env_remove("HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run rsend");
    let mut stdin = child.stdin.take().expect("stdin");
    // More than the 1 MiB kept in memory, so the body spills to the file; stdin stays open, so
    // rsend keeps reading and the file stays open.
    stdin
        .write_all(b"Subject: big\n\n")
        .and_then(|()| stdin.write_all(&vec![b'x'; 2 * 1024 * 1024]))
        .expect("write the message");
    let deadline = Instant::now() + Duration::from_secs(20);
    let fd = loop {
        if let Some(fd) = spool_fd(child.id(), &tmp) {
            break fd;
        }
        assert!(
            Instant::now() < deadline,
            "rsend opened no spool file in {}",
            tmp.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // The path through /proc reaches the (already unlinked) file itself.
    let mode = std::fs::metadata(&fd)
        .expect("stat the spool file")
        .permissions()
        .mode()
        & 0o777;
    drop(stdin);
    let _ = child.wait();
    assert_eq!(mode, 0o600, "spool file mode {mode:o}");
    // Nothing is left behind.
    assert_eq!(std::fs::read_dir(&tmp).expect("read tmp").count(), 0);
}
