//! SIGTERM never cuts a delivery: rfetch fetching from a scripted POP3 server is stopped while
//! an MDA sleeps in the middle of reading a message, and while a large message is being
//! appended to an mbox (the server dribbles it, so the append outlasts the stop grace period).
//! The stop must wait for the MDA (which then holds the whole message) or roll the mbox back
//! (no partial message, no dotlock), and a second run must leave every message delivered
//! completely, none lost and at most one twice.

mod common;
use common::pop3_mailbox::{self, Faults, Mailbox};
use common::rfetch::*;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

fn message(n: usize, size: usize) -> String {
    let mut m =
        format!("From: a@example.org\r\nTo: bob@example.org\r\nSubject: stop test {n}\r\n\r\n");
    let mut k = 0;
    while m.len() < size {
        m.push_str(&format!(
            "line {k} of message {n}, From here on just text\r\n"
        ));
        k += 1;
    }
    m.push_str(&format!("END OF MESSAGE {n}\r\n"));
    m
}

fn config(dir: &Path, port: u16, target: &str) -> PathBuf {
    scripted_pop3_config(dir, port, 20, target)
}

/// A POP3 server over `mailbox`; in its first session message `dribble` (if any) comes in
/// 48 kB pieces 200 ms apart.
fn scripted_pop3(mailbox: Mailbox, dribble: Option<usize>) -> u16 {
    scripted_pop3_flagged(mailbox, dribble, Arc::default())
}

/// [`scripted_pop3`], setting `dribbling` when the dribbled message starts.
fn scripted_pop3_flagged(
    mailbox: Mailbox,
    dribble: Option<usize>,
    dribbling: Arc<AtomicBool>,
) -> u16 {
    let faults = Faults {
        dribble,
        dribbling,
        ..Faults::default()
    };
    pop3_mailbox::serve(mailbox, faults).port
}

/// rfetch in the background; killed and reaped on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, args: &[&str]) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_rfetch"))
            .args(args)
            .env("HOME", dir)
            .env_remove("FETCHMAILHOME")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rfetch.log")).unwrap())
            .spawn()
            .expect("start rfetch"),
    )
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "no {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm_and_wait(r: &mut Running, limit: Duration) -> Instant {
    kill_process(Pid::from_raw(r.0.id() as i32).unwrap(), Signal::TERM).unwrap();
    let start = Instant::now();
    loop {
        if r.0.try_wait().unwrap().is_some() {
            return Instant::now();
        }
        assert!(
            start.elapsed() < limit,
            "rfetch did not stop within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Which message a delivered text is, after checking it is complete.
fn complete_message_number(text: &str) -> usize {
    let at = text.find("Subject: stop test ").expect("subject") + "Subject: stop test ".len();
    let n: usize = text[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        text.ends_with(&format!("END OF MESSAGE {n}\n")),
        "message {n} is incomplete ({} bytes, ends {:?})",
        text.len(),
        &text[text.len().saturating_sub(60)..]
    );
    n
}

/// Every message 1..=count delivered, none twice except at most one.
fn assert_each_once(mut got: Vec<usize>, count: usize) {
    got.sort_unstable();
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(
        unique,
        (1..=count).collect::<Vec<_>>(),
        "lost a message: {got:?}"
    );
    assert!(got.len() <= count + 1, "more than one duplicate: {got:?}");
}

/// An MDA whose first delivery reads 8 kB, then sleeps longer than the stop grace period
/// (8 s) before reading the rest (creating OUT/mda-sleeping meanwhile); every delivery is
/// stored whole in OUT/msg.PID with an atomic rename.
fn slow_mda(dir: &Path, out: &Path) -> PathBuf {
    let mda = dir.join("slow-mda");
    std::fs::write(
        &mda,
        format!(
            "#!/bin/sh\nd='{d}'\nt=$(mktemp \"$d/tmp.XXXXXX\")\n\
             if [ ! -e \"$d/slow-done\" ]; then\n  : > \"$d/slow-done\"\n  dd bs=4096 count=2 of=\"$t\" 2>/dev/null\n  : > \"$d/mda-sleeping\"\n  sleep 11\nfi\n\
             cat >> \"$t\"\nmv \"$t\" \"$d/msg.$$\"\n",
            d = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&mda, std::fs::Permissions::from_mode(0o755)).unwrap();
    mda
}

fn mda_temp_files(out: &Path) -> usize {
    std::fs::read_dir(out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("tmp.")
        })
        .count()
}

fn mda_messages(out: &Path) -> Vec<usize> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("msg."))
        .map(|p| complete_message_number(&std::fs::read_to_string(p).unwrap()))
        .collect()
}

#[test]
fn sigterm_during_a_slow_mda_waits_for_it_to_take_the_whole_message() {
    let dir = tempdir("stop-mda");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mda = slow_mda(&dir, &out);
    let mailbox: Mailbox = Arc::new(Mutex::new(
        (1..=3)
            .map(|n| (n, message(n, if n == 1 { 300_000 } else { 500 })))
            .collect(),
    ));
    let port = scripted_pop3(Arc::clone(&mailbox), None);
    let cfg = config(&dir, port, &format!("mda = [\"{}\"]", mda.display()));
    let args = ["-C", cfg.to_str().unwrap(), "--danger-plaintext-auth"];

    let mut first = start(&dir, &args);
    wait_for("sleeping MDA", Duration::from_secs(30), || {
        out.join("mda-sleeping").exists()
    });
    let exited = sigterm_and_wait(&mut first, Duration::from_secs(60));
    let log = std::fs::read_to_string(dir.join("rfetch.log")).unwrap_or_default();
    // The MDA had finished when rfetch exited: no temporary file of it is left.
    let at_exit = mda_temp_files(&out);
    // (Before the fix, the MDA was still asleep: give it time to end so that what it stores
    // of its message can be checked too.)
    wait_for("the MDA to end", Duration::from_secs(20), || {
        mda_temp_files(&out) == 0
    });
    assert!(exited.elapsed() < Duration::from_secs(60));
    assert_eq!(
        at_exit, 0,
        "rfetch exited while the MDA was still delivering:\n{log}"
    );

    let second = rfetch(&dir, &args);
    assert_eq!(
        code(&second),
        0,
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_each_once(mda_messages(&out), 3);
    assert!(
        mailbox.lock().unwrap().is_empty(),
        "all deleted on the server"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The messages of an mbox, each checked complete; panics on a malformed file.
fn mbox_messages(path: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("From "),
        "not an mbox: {:?}",
        &text[..text.len().min(80)]
    );
    assert!(text.ends_with("\n\n"), "ends in the middle of a message");
    let mut messages: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("From ") {
            messages.push(String::new());
        } else {
            let m = messages.last_mut().unwrap();
            m.push_str(
                std::str::from_utf8(postie::deliver::mbox::unquote_line(line.as_bytes())).unwrap(),
            );
        }
    }
    messages
        .iter()
        .map(|m| complete_message_number(m.strip_suffix('\n').expect("blank line after each")))
        .collect()
}

#[test]
fn sigterm_during_a_large_mbox_append_rolls_it_back() {
    let dir = tempdir("stop-mbox");
    let mbox = dir.join("mbox");
    // Message 2 (3 MB) is dribbled over about 13 s in the first session: the append is still
    // going when the stop grace period ends.
    let mailbox: Mailbox = Arc::new(Mutex::new(
        (1..=3)
            .map(|n| (n, message(n, if n == 2 { 3_000_000 } else { 500 })))
            .collect(),
    ));
    let port = scripted_pop3(Arc::clone(&mailbox), Some(2));
    let cfg = config(&dir, port, &format!("mbox = \"{}\"", mbox.display()));
    let args = ["-C", cfg.to_str().unwrap(), "--danger-plaintext-auth"];

    let mut first = start(&dir, &args);
    wait_for("the large append to start", Duration::from_secs(30), || {
        std::fs::metadata(&mbox).is_ok_and(|m| m.len() > 200_000)
    });
    sigterm_and_wait(&mut first, Duration::from_secs(60));
    let log = std::fs::read_to_string(dir.join("rfetch.log")).unwrap_or_default();
    assert!(
        !dir.join("mbox.lock").exists(),
        "dotlock left behind:\n{log}"
    );
    assert!(!dir.join("mbox.rfetch-append").exists(), "{log}");
    if std::fs::metadata(&mbox).is_ok_and(|m| m.len() > 0) {
        let got = mbox_messages(&mbox);
        assert!(
            !got.contains(&2),
            "the interrupted message stayed: {got:?}\n{log}"
        );
    }

    let second = rfetch(&dir, &args);
    assert_eq!(
        code(&second),
        0,
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_each_once(mbox_messages(&mbox), 3);
    assert!(!dir.join("mbox.lock").exists());
    assert!(
        mailbox.lock().unwrap().is_empty(),
        "all deleted on the server"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigkill_during_a_large_mbox_append_does_not_hold_up_the_next_run() {
    let dir = tempdir("kill-mbox");
    let mbox = dir.join("mbox");
    let mailbox: Mailbox = Arc::new(Mutex::new(
        (1..=3)
            .map(|n| (n, message(n, if n == 2 { 3_000_000 } else { 500 })))
            .collect(),
    ));
    let port = scripted_pop3(Arc::clone(&mailbox), Some(2));
    let cfg = config(&dir, port, &format!("mbox = \"{}\"", mbox.display()));
    let args = ["-C", cfg.to_str().unwrap(), "--danger-plaintext-auth"];

    let mut first = start(&dir, &args);
    wait_for("the large append to start", Duration::from_secs(30), || {
        std::fs::metadata(&mbox).is_ok_and(|m| m.len() > 200_000)
    });
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    assert!(
        dir.join("mbox.lock").exists(),
        "killed while holding the dotlock"
    );

    let start = Instant::now();
    let second = rfetch(&dir, &args);
    assert_eq!(
        code(&second),
        0,
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the next run waited {:?}",
        start.elapsed()
    );
    assert_each_once(mbox_messages(&mbox), 3);
    assert!(!dir.join("mbox.lock").exists());
    assert!(!dir.join("mbox.rfetch-append").exists());
    assert!(
        mailbox.lock().unwrap().is_empty(),
        "all deleted on the server"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigkill_during_a_slow_mda_leaves_it_the_whole_message() {
    let dir = tempdir("kill-mda");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mda = slow_mda(&dir, &out);
    let mailbox: Mailbox = Arc::new(Mutex::new(
        (1..=3)
            .map(|n| (n, message(n, if n == 1 { 300_000 } else { 500 })))
            .collect(),
    ));
    let port = scripted_pop3(Arc::clone(&mailbox), None);
    let cfg = config(&dir, port, &format!("mda = [\"{}\"]", mda.display()));
    let args = ["-C", cfg.to_str().unwrap(), "--danger-plaintext-auth"];

    let mut first = start(&dir, &args);
    wait_for("sleeping MDA", Duration::from_secs(30), || {
        out.join("mda-sleeping").exists()
    });
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    // The MDA outlives rfetch; what it stores once it wakes up must be the whole message.
    wait_for("the MDA to end", Duration::from_secs(20), || {
        mda_temp_files(&out) == 0
    });
    assert_eq!(mda_messages(&out), [1]);

    let second = rfetch(&dir, &args);
    assert_eq!(
        code(&second),
        0,
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_each_once(mda_messages(&out), 3);
    assert!(
        mailbox.lock().unwrap().is_empty(),
        "all deleted on the server"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_while_a_message_for_an_mda_is_still_arriving_abandons_it() {
    // The MDA would get message 2 only once it has arrived whole (about 13 s): a stop after the
    // grace period abandons the copy instead of waiting for it, and the MDA never runs for it.
    let dir = tempdir("stop-spool");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mda = dir.join("mda");
    std::fs::write(
        &mda,
        format!("#!/bin/sh\ncat > '{}/msg.'$$\n", out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&mda, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mailbox: Mailbox = Arc::new(Mutex::new(
        (1..=3)
            .map(|n| (n, message(n, if n == 2 { 3_000_000 } else { 500 })))
            .collect(),
    ));
    let dribbling = Arc::new(AtomicBool::new(false));
    let port = scripted_pop3_flagged(Arc::clone(&mailbox), Some(2), Arc::clone(&dribbling));
    let cfg = config(&dir, port, &format!("mda = [\"{}\"]", mda.display()));
    let args = ["-C", cfg.to_str().unwrap(), "--danger-plaintext-auth"];

    let mut first = start(&dir, &args);
    wait_for("message 2 to start", Duration::from_secs(30), || {
        dribbling.load(Ordering::SeqCst)
    });
    let signalled = Instant::now();
    sigterm_and_wait(&mut first, Duration::from_secs(60));
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(11), "the stop took {took:?}");
    assert!(!mda_messages(&out).contains(&2));

    let second = rfetch(&dir, &args);
    assert_eq!(
        code(&second),
        0,
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_each_once(mda_messages(&out), 3);
    assert!(
        mailbox.lock().unwrap().is_empty(),
        "all deleted on the server"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
