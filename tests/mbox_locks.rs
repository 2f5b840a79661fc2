//! mbox delivery against other lockers and against SIGKILL: a process holding an fcntl(2)
//! lock (as procmail, mutt and Dovecot may) holds the delivery up until it lets go; a delivery
//! killed in the middle of its append or while it holds the locks leaves nothing that blocks
//! the next one or survives it (the partial message is cut off, the dead writer's dotlock
//! removed at once); and a partial message another program wrote past is left alone.
//!
//! The killed writer is this test binary itself, re-run with `POSTIE_MBOX_CHILD` set so that
//! only [`child_delivers_and_stalls`] does anything: it starts a real `Mbox` delivery whose
//! message source stalls, and the parent SIGKILLs it.

mod common;

use common::temp_dir;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postie::deliver::{Deliver, Mbox, MessageInfo};

fn info() -> MessageInfo {
    MessageInfo {
        // The kill tests' child may be given a sender (POSTIE_MBOX_CHILD_SENDER).
        sender: std::env::var("POSTIE_MBOX_CHILD_SENDER")
            .unwrap_or_else(|_| "alice@example.org".into()),
        recipient: "bob".into(),
        also: Vec::new(),
    }
}

/// The messages of an mboxrd file: split at separator lines, unquoted, the separator blank
/// line dropped. Panics on anything that is not a well-formed mbox of ours.
fn parse_mbox(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.starts_with("From "), "{text:?}");
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "ends mid-message: {text:?}"
    );
    let mut messages: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("From ") {
            messages.push(String::new());
            continue;
        }
        let m = messages.last_mut().unwrap();
        m.push_str(
            std::str::from_utf8(postie::deliver::mbox::unquote_line(line.as_bytes())).unwrap(),
        );
    }
    for m in &mut messages {
        assert_eq!(m.pop(), Some('\n'), "separator blank line");
    }
    messages
}

/// Yields `first` bytes, then blocks (the child is killed while it waits).
struct Stalls {
    first: io::Cursor<Vec<u8>>,
}

impl Read for Stalls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.first.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        println!("stalled");
        std::thread::sleep(Duration::from_secs(120));
        Ok(0)
    }
}

/// Not a test on its own: the body of the child process the kill tests start.
#[test]
#[ignore = "the child process of the kill tests, which run it"]
fn child_delivers_and_stalls() {
    let (Ok(path), Ok(size)) = (
        std::env::var("POSTIE_MBOX_CHILD"),
        std::env::var("POSTIE_MBOX_CHILD_BYTES"),
    ) else {
        return;
    };
    let size: usize = size.parse().unwrap();
    let mut body = b"Subject: killed\n\n".to_vec();
    while body.len() < size {
        body.extend_from_slice(b"From a line that must be quoted, then more text\n");
    }
    body.truncate(size);
    let mut mbox = Mbox::new(path);
    let _ = mbox.deliver(
        &mut Stalls {
            first: io::Cursor::new(body),
        },
        &info(),
    );
}

/// Starts the child delivering `bytes` bytes then stalling; returns once it stalls.
fn start_stalled_child(mbox: &Path, bytes: usize) -> Child {
    start_stalled_child_from(mbox, bytes, "alice@example.org")
}

/// [`start_stalled_child`] with the envelope sender `sender`.
fn start_stalled_child_from(mbox: &Path, bytes: usize, sender: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_delivers_and_stalls",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("POSTIE_MBOX_CHILD", mbox)
        .env("POSTIE_MBOX_CHILD_BYTES", bytes.to_string())
        .env("POSTIE_MBOX_CHILD_SENDER", sender)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("stalled") => break,
            Some(_) => {}
            None => panic!("the child ended before stalling"),
        }
    }
    child
}

fn kill(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn killed_mid_append(bytes: usize) {
    killed_mid_append_from(bytes, "alice@example.org");
}

fn killed_mid_append_from(bytes: usize, sender: &str) {
    let dir = temp_dir(&format!("kill{bytes}"));
    let path = dir.join("mbox");
    Mbox::new(&path)
        .deliver(&mut &b"Subject: before\n\nfirst\n"[..], &info())
        .unwrap();
    let before_len = fs::metadata(&path).unwrap().len();
    let child = start_stalled_child_from(&path, bytes, sender);
    kill(child);
    // What the killed delivery left: its dotlock, and (with bytes written) half a message.
    assert!(
        dir.join("mbox.lock").exists(),
        "the killed writer held the dotlock"
    );
    if bytes > 0 {
        assert!(fs::metadata(&path).unwrap().len() > before_len + 100_000);
    }

    // The next delivery neither waits for the dead writer's lock nor keeps its partial message.
    let start = Instant::now();
    Mbox::new(&path)
        .with_lock_timeout(Duration::from_secs(2))
        .deliver(&mut &b"Subject: after\n\nnext\n"[..], &info())
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(
        parse_mbox(&path),
        ["Subject: before\n\nfirst\n", "Subject: after\n\nnext\n"]
    );
    assert!(!dir.join("mbox.lock").exists());
    assert!(!dir.join("mbox.rfetch-append").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sender_of_any_length_keeps_a_killed_append_recoverable() {
    // The sender comes from the message and goes into the separator line, which the append
    // record holds: a 6000-byte sender made the record too long to read back, so the partial
    // message a SIGKILL left stayed in the mbox.
    killed_mid_append_from(300_000, &"x".repeat(6000));
}

#[test]
fn sigkill_mid_append_leaves_nothing_for_the_next_delivery() {
    // 300 kB: several 64 kB chunks are in the file when the source stalls.
    killed_mid_append(300_000);
}

#[test]
fn sigkill_while_holding_the_locks_does_not_block_the_next_delivery() {
    // The source stalls at once: the child holds every lock and has written nothing.
    killed_mid_append(0);
}

#[test]
fn the_partial_message_is_cut_even_when_someone_cleared_the_dotlock() {
    let dir = temp_dir("cleared");
    let path = dir.join("mbox");
    Mbox::new(&path)
        .deliver(&mut &b"Subject: before\n\nfirst\n"[..], &info())
        .unwrap();
    kill(start_stalled_child(&path, 300_000));
    fs::remove_file(dir.join("mbox.lock")).unwrap();
    Mbox::new(&path)
        .deliver(&mut &b"Subject: after\n\nnext\n"[..], &info())
        .unwrap();
    assert_eq!(
        parse_mbox(&path),
        ["Subject: before\n\nfirst\n", "Subject: after\n\nnext\n"]
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_partial_message_another_program_wrote_past_is_left_alone() {
    let dir = temp_dir("foreign");
    let path = dir.join("mbox");
    Mbox::new(&path)
        .deliver(&mut &b"Subject: before\n\nfirst\n"[..], &info())
        .unwrap();
    let child = start_stalled_child(&path, 300_000);
    kill(child);
    // Another MDA, which knows nothing of our record, waits out the dotlock and appends.
    fs::remove_file(dir.join("mbox.lock")).unwrap();
    let mut text = fs::read(&path).unwrap();
    text.extend_from_slice(
        b"\nFrom other@example.org Sat Dec  5 10:00:00 2026\nSubject: other\n\nx\n\n",
    );
    fs::write(&path, &text).unwrap();

    Mbox::new(&path)
        .deliver(&mut &b"Subject: after\n\nnext\n"[..], &info())
        .unwrap();
    let got = fs::read(&path).unwrap();
    assert!(
        got.starts_with(&text),
        "the other program's message was cut"
    );
    assert!(!dir.join("mbox.rfetch-append").exists());
    fs::remove_dir_all(&dir).unwrap();
}

/// A python3 child holding an fcntl (lockf) write lock on `path` until its stdin closes.
fn fcntl_holder(path: &Path) -> Option<Child> {
    let python = Path::new("/usr/bin/python3");
    if !python.exists() {
        return None;
    }
    let mut child = Command::new(python)
        .args([
            "-c",
            "import fcntl,sys\nf=open(sys.argv[1],'a')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\nsys.stdin.read()\n",
        ])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    Some(child)
}

#[test]
fn an_fcntl_lock_holds_the_delivery_until_released() {
    let dir = temp_dir("fcntl");
    let path = dir.join("mbox");
    fs::write(&path, b"").unwrap();
    let Some(mut holder) = fcntl_holder(&path) else {
        eprintln!("skipped: no /usr/bin/python3");
        return;
    };
    // While it is held: a short wait gives up, transiently.
    let err = Mbox::new(&path)
        .with_lock_timeout(Duration::from_millis(300))
        .deliver(&mut &b"Subject: x\n\ny\n"[..], &info())
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.reason().contains("fcntl"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"");

    // Released after 700 ms: a longer wait then delivers.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        drop(holder.stdin.take());
        holder.wait().unwrap();
    });
    let start = Instant::now();
    Mbox::new(&path)
        .with_lock_timeout(Duration::from_secs(10))
        .deliver(&mut &b"Subject: x\n\ny\n"[..], &info())
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "did not wait"
    );
    release.join().unwrap();
    assert_eq!(parse_mbox(&path), ["Subject: x\n\ny\n"]);
    fs::remove_dir_all(&dir).unwrap();
}

/// The dotlock is never seen without its owner's pid and host, the only thing that lets the
/// next run remove it at once when its owner was killed. A lock created empty and filled after
/// was found empty or half written by a watcher here; left like that by a kill (which the
/// rfetch kill test hit), it held every later delivery up for its whole lock timeout, message
/// after message, until it went stale five minutes later.
#[test]
fn the_dotlock_is_never_seen_without_its_owner() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = temp_dir("dotlock-content");
    let path = dir.join("mbox");
    let lock = dir.join("mbox.lock");
    let done = AtomicBool::new(false);
    let want = format!(
        "{}\n{}\n",
        std::process::id(),
        rustix::system::uname().nodename().to_string_lossy()
    );
    let (seen, bad) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let (mut seen, mut bad) = (0usize, Vec::new());
            while !done.load(Ordering::Relaxed) {
                if let Ok(text) = fs::read_to_string(&lock) {
                    seen += 1;
                    if text != want {
                        bad.push(text);
                    }
                }
            }
            (seen, bad)
        });
        let mut mbox = Mbox::new(&path);
        let started = Instant::now();
        let mut n = 0;
        while n < 300 || (started.elapsed() < Duration::from_secs(5) && n < 3000) {
            mbox.deliver(&mut &b"Subject: one\n\nbody\n"[..], &info())
                .unwrap();
            n += 1;
        }
        done.store(true, Ordering::Relaxed);
        watcher.join().unwrap()
    });
    assert!(seen > 0, "the watcher saw the lock at least once");
    assert!(
        bad.is_empty(),
        "the lock was seen {} times of {seen} without its owner: {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "mbox")
        .collect();
    assert!(
        leftovers.is_empty(),
        "nothing but the mbox is left: {leftovers:?}"
    );
    let _ = fs::remove_dir_all(&dir);
}
