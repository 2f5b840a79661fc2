//! Local delivery targets in temp dirs: Maildir (batched and single), mbox (quoting, failure
//! truncation, concurrent appenders), MDA (exit statuses, %F injection, timeouts).

mod common;

use common::temp_dir;
use std::fs;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use postie::deliver::{Deliver, DeliverError, Maildir, Mbox, Mda, MessageInfo};

fn info() -> MessageInfo {
    MessageInfo {
        sender: "alice@example.org".into(),
        recipient: "bob".into(),
        also: Vec::new(),
    }
}

/// A reader that yields `good` bytes and then fails.
struct FailingReader {
    good: io::Cursor<Vec<u8>>,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.good.read(buf)?;
        if n == 0 {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "server went away",
            ))
        } else {
            Ok(n)
        }
    }
}

/// A reader handing out its data in 3-byte pieces, to split CRLF pairs across reads.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(buf.len()).min(3);
        let (head, tail) = self.0.split_at(n);
        buf[..n].copy_from_slice(head);
        self.0 = tail;
        Ok(n)
    }
}

const MSG: &[u8] = b"From: a@example.org\r\nSubject: hi\r\n\r\nFrom here\r\nbody\r\n";

#[test]
fn maildir_single_delivery_one_file_in_new_with_lf() {
    let dir = temp_dir("md1");
    let root = dir.join("Maildir");
    let mut md = Maildir::open(&root).unwrap();
    let receipt = md.deliver(&mut Trickle(MSG), &info()).unwrap();
    let new: Vec<_> = fs::read_dir(root.join("new")).unwrap().collect();
    assert_eq!(new.len(), 1);
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(root.join("cur")).unwrap().count(), 0);
    let path = receipt.path.unwrap();
    assert_eq!(
        fs::read(&path).unwrap(),
        b"From: a@example.org\nSubject: hi\n\nFrom here\nbody\n"
    );
    assert_eq!(receipt.bytes, 48);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn maildir_batched_delivery_confirms_after_sync() {
    let dir = temp_dir("md2");
    let mut md = Maildir::open(dir.join("M")).unwrap();
    let mut pending = Vec::new();
    for i in 0..20 {
        let body = format!("Subject: {i}\r\n\r\nx\r\n");
        pending.push(md.deliver_unsynced(&mut body.as_bytes(), &info()).unwrap());
    }
    // Nothing is visible in new/ before the sync that makes it durable.
    assert_eq!(fs::read_dir(dir.join("M/new")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(dir.join("M/tmp")).unwrap().count(), 20);
    let receipts = md.sync(pending).unwrap();
    assert_eq!(receipts.len(), 20);
    let mut names: Vec<_> = fs::read_dir(dir.join("M/new"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20);
    assert_eq!(fs::read_dir(dir.join("M/tmp")).unwrap().count(), 0);
    fs::remove_dir_all(&dir).unwrap();
}

/// Mail is as private as a password: what the targets create is the owner's alone, whatever
/// the umask would allow (the test's umask leaves group and world bits on by default).
#[test]
fn mail_files_and_directories_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = temp_dir("private");
    let mut md = Maildir::open(dir.join("M")).unwrap();
    md.deliver(&mut &b"Subject: p\r\n\r\nx\r\n"[..], &info())
        .unwrap();
    for sub in ["M", "M/cur", "M/new", "M/tmp"] {
        assert_eq!(mode(&dir.join(sub)), 0o700, "{sub}");
    }
    let delivered: Vec<_> = fs::read_dir(dir.join("M/new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(mode(&delivered[0]), 0o600, "{}", delivered[0].display());
    let mbox_path = dir.join("mbox");
    Mbox::new(&mbox_path)
        .deliver(&mut &b"Subject: p\n\nx\n"[..], &info())
        .unwrap();
    assert_eq!(mode(&mbox_path), 0o600);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn maildir_pending_dropped_without_sync_leaves_nothing() {
    let dir = temp_dir("md5");
    let mut md = Maildir::open(dir.join("M")).unwrap();
    let p = md
        .deliver_unsynced(&mut &b"Subject: x\r\n\r\n"[..], &info())
        .unwrap();
    assert!(p.tmp_path().exists());
    drop(p);
    assert_eq!(fs::read_dir(dir.join("M/tmp")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(dir.join("M/new")).unwrap().count(), 0);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn maildir_failed_read_leaves_no_file() {
    let dir = temp_dir("md3");
    let mut md = Maildir::open(dir.join("M")).unwrap();
    let mut reader = FailingReader {
        good: io::Cursor::new(b"Subject: half\r\n".to_vec()),
    };
    let err = md.deliver(&mut reader, &info()).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(fs::read_dir(dir.join("M/tmp")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(dir.join("M/new")).unwrap().count(), 0);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn maildir_unwritable_root_is_an_error() {
    let dir = temp_dir("md4");
    fs::write(dir.join("file"), b"x").unwrap();
    let err = Maildir::open(dir.join("file/M")).unwrap_err();
    assert!(!err.is_transient());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mbox_quotes_and_round_trips() {
    let dir = temp_dir("mbox1");
    let path = dir.join("mbox");
    let mut mbox = Mbox::new(&path);
    let first = b"Subject: one\r\n\r\nFrom the start\r\n>From quoted\r\n>>From twice\r\nend";
    mbox.deliver(&mut &first[..], &info()).unwrap();
    mbox.deliver(&mut &b"Subject: two\n\nsecond\n"[..], &info())
        .unwrap();
    let text = fs::read(&path).unwrap();
    let text = String::from_utf8(text).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(lines[0].starts_with("From alice@example.org "), "{text}");
    assert_eq!(
        &lines[1..8],
        &[
            "Subject: one",
            "",
            ">From the start",
            ">>From quoted",
            ">>>From twice",
            "end",
            ""
        ]
    );
    assert!(lines[8].starts_with("From alice@example.org "));
    assert_eq!(&lines[9..], &["Subject: two", "", "second", "", ""]);

    // Reading it back: split on separator lines, unquote, and get the originals (LF form).
    let mut messages: Vec<Vec<u8>> = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("From ") {
            messages.push(Vec::new());
            continue;
        }
        let m = messages.last_mut().unwrap();
        m.extend_from_slice(postie::deliver::mbox::unquote_line(line.as_bytes()));
    }
    for m in &mut messages {
        assert_eq!(m.pop(), Some(b'\n')); // the separator blank line
    }
    assert_eq!(
        messages[0],
        b"Subject: one\n\nFrom the start\n>From quoted\n>>From twice\nend\n"
    );
    assert_eq!(messages[1], b"Subject: two\n\nsecond\n");
    assert!(!dir.join("mbox.lock").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mbox_failed_delivery_truncates_back() {
    let dir = temp_dir("mbox2");
    let path = dir.join("mbox");
    let mut mbox = Mbox::new(&path);
    mbox.deliver(&mut &b"Subject: ok\n\nfine\n"[..], &info())
        .unwrap();
    let before = fs::read(&path).unwrap();
    let mut reader = FailingReader {
        good: io::Cursor::new(vec![b'x'; 200_000]),
    };
    let err = mbox.deliver(&mut reader, &info()).unwrap_err();
    assert!(matches!(err, DeliverError::Transient { .. }), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert!(!dir.join("mbox.lock").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mbox_concurrent_appenders_do_not_interleave() {
    let dir = temp_dir("mbox3");
    let path = dir.join("mbox");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut mbox = Mbox::new(&path);
                for i in 0..10 {
                    // Big enough to need several writes.
                    let line = format!("thread {t} message {i}\n");
                    let body = format!("Subject: {t}-{i}\n\n{}", line.repeat(5000));
                    mbox.deliver(&mut body.as_bytes(), &info()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let text = fs::read_to_string(&path).unwrap();
    let mut count = 0;
    for block in text.split("\nFrom alice@example.org ").skip(1) {
        count += 1;
        let mut lines = block.lines().skip(1);
        let subject = lines.next().unwrap();
        let (t, i) = subject
            .strip_prefix("Subject: ")
            .unwrap()
            .split_once('-')
            .unwrap();
        let want = format!("thread {t} message {i}");
        let body: Vec<&str> = lines.skip(1).filter(|l| !l.is_empty()).collect();
        assert_eq!(body.len(), 5000);
        assert!(body.iter().all(|l| *l == want), "interleaved in {subject}");
    }
    assert_eq!(count + 1, 40); // the first block has no leading newline
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mbox_stale_dotlock_is_removed_fresh_one_waited_for() {
    let dir = temp_dir("mbox4");
    let path = dir.join("mbox");
    let lock = dir.join("mbox.lock");
    fs::write(&lock, b"99999\n").unwrap();
    let mut mbox = Mbox::new(&path).with_lock_timeout(Duration::from_millis(200));
    let start = Instant::now();
    let err = mbox.deliver(&mut &b"x\n"[..], &info()).unwrap_err();
    assert!(err.is_transient());
    assert!(start.elapsed() >= Duration::from_millis(200));
    // Make it old: the next delivery removes it.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    mbox.deliver(&mut &b"x\n"[..], &info()).unwrap();
    assert!(!lock.exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mda_cat_to_file_delivers_lf_content() {
    let dir = temp_dir("mda1");
    let out = dir.join("out");
    let mut mda = Mda::shell(format!("cat > '{}'", out.display())).unwrap();
    let receipt = mda.deliver(&mut Trickle(MSG), &info()).unwrap();
    assert_eq!(
        fs::read(&out).unwrap(),
        b"From: a@example.org\nSubject: hi\n\nFrom here\nbody\n"
    );
    assert_eq!(receipt.bytes, 48);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mda_exit_75_is_transient_exit_1_permanent() {
    let mut t = Mda::shell("cat >/dev/null; echo 'try later' >&2; exit 75").unwrap();
    let err = t.deliver(&mut &MSG[..], &info()).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.reason().contains("75"), "{err}");
    assert!(err.reason().contains("try later"), "{err}");

    let mut p = Mda::shell("cat >/dev/null; exit 1").unwrap();
    let err = p.deliver(&mut &MSG[..], &info()).unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    let e: postie::Error = err.into();
    assert_eq!(e.kind(), postie::ErrorKind::DeliveryPermanent);

    let mut sig = Mda::shell("kill -9 $$").unwrap();
    let err = sig.deliver(&mut &b""[..], &info()).unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    assert!(err.reason().contains("signal 9"), "{err}");
}

#[test]
fn mda_spawn_failure_is_transient() {
    let mut m = Mda::argv(vec!["/nonexistent/postie-mda".into()]).unwrap();
    let err = m.deliver(&mut &MSG[..], &info()).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[test]
fn mda_sender_injection_is_harmless() {
    let dir = temp_dir("mda2");
    let canary = dir.join("canary");
    fs::write(&canary, b"alive").unwrap();
    let out = dir.join("sender");
    let info = MessageInfo {
        sender: format!("x'; rm -f '{}'; echo '", canary.display()),
        recipient: "$(touch /tmp/postie-pwned)`id`".into(),
        also: Vec::new(),
    };
    let mut mda = Mda::shell(format!(
        "cat >/dev/null; printf '%s\\n%s\\n' %F %T > '{}'",
        out.display()
    ))
    .unwrap();
    mda.deliver(&mut &MSG[..], &info).unwrap();
    assert!(canary.exists(), "the injected command ran");
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        format!("{}\n{}\n", info.sender, info.recipient)
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mda_argv_form_substitutes_without_shell() {
    let dir = temp_dir("mda3");
    let out = dir.join("args");
    let mut mda = Mda::argv(vec![
        "/bin/sh".into(),
        "-c".into(),
        "cat >/dev/null; printf '%s|%s' \"$1\" \"$2\" > \"$3\"".into(),
        "sh".into(),
        "%F".into(),
        "to=%T".into(),
        out.display().to_string(),
    ])
    .unwrap();
    let info = MessageInfo {
        sender: "a'b $(x)".into(),
        recipient: "bob".into(),
        also: Vec::new(),
    };
    mda.deliver(&mut &MSG[..], &info).unwrap();
    assert_eq!(fs::read_to_string(&out).unwrap(), "a'b $(x)|to=bob");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mda_that_hangs_without_reading_is_killed() {
    let mut mda = Mda::shell("sleep 30")
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let big = vec![b'x'; 1 << 20]; // more than a pipe buffer: the write blocks
    let start = Instant::now();
    let err = mda.deliver(&mut &big[..], &info()).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn mda_that_exits_early_without_reading_is_not_delivered() {
    let mut mda = Mda::shell("exit 0").unwrap();
    let big = vec![b'x'; 1 << 20];
    let err = mda.deliver(&mut &big[..], &info()).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[test]
fn mda_never_sees_eof_when_the_message_cannot_be_read_to_its_end() {
    // An MDA that delivers what it read once its stdin ends: had it seen an EOF after half the
    // message, it would have delivered half a message and exited 0.
    let dir = temp_dir("mda-halfread");
    let out = dir.join("out");
    let mut mda = Mda::shell(format!(
        "m=$(cat; echo x); printf '%s' \"$m\" > '{}'",
        out.display()
    ))
    .unwrap();
    let mut reader = FailingReader {
        good: io::Cursor::new(b"Subject: half\r\n\r\nfirst half only\r\n".to_vec()),
    };
    let err = mda.deliver(&mut reader, &info()).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!out.exists(), "the MDA delivered half a message");
    fs::remove_dir_all(&dir).unwrap();
}
