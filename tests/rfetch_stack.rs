//! rfetch end to end against the real stack (bob's mailbox): POP3S, POP3+STLS, IMAPS and
//! IMAP+STARTTLS into a Maildir byte for byte; SMTP forwarding through Postfix into alice's
//! mailbox byte for byte; keep/nokeep; mbox and MDA targets; MDA exit 75
//! leaves the messages for the next poll. The tests share bob's mailbox, so they run one at
//! a time under a lock.

mod common;
use common::rfetch::*;
use std::path::PathBuf;

use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let mut big = b"From: big@x\nTo: bob@localhost\nSubject: big\nMessage-ID: <big@t>\n\n".to_vec();
    while big.len() < 5 * 1024 * 1024 {
        big.extend_from_slice(
            b"0123456789 the five megabyte message line, long enough to matter........\n",
        );
    }
    vec![
        ("plain", b"From: a@x\nTo: bob@localhost\nSubject: plain\nMessage-ID: <plain@t>\n\nhello\n".to_vec()),
        ("8bit", b"From: a@x\nTo: bob@localhost\nSubject: 8bit\nMessage-ID: <8bit@t>\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\ncaf\xc3\xa9 \xe2\x82\xac \xff\xfe\n".to_vec()),
        ("dots", b"From: a@x\nTo: bob@localhost\nSubject: dots\nMessage-ID: <dots@t>\n\n.\n..\n.x\n...\nend\n".to_vec()),
        ("nonl", b"From: a@x\nTo: bob@localhost\nSubject: nonl\nMessage-ID: <nonl@t>\n\nno newline at the end".to_vec()),
        ("big", big),
    ]
}

/// Delivered messages equal the seeded ones apart from the Received header (and a final
/// newline POP3 must add to a message that lacked one).
fn assert_same(got: &[Vec<u8>], want: &[(&str, Vec<u8>)], ctx: &str) {
    assert_eq!(got.len(), want.len(), "{ctx}: message count");
    let mut got: Vec<Vec<u8>> = got.iter().map(|m| strip_received(m)).collect();
    got.sort();
    for (name, w) in want {
        let ok = got
            .iter()
            .any(|g| g == w || (g.len() == w.len() + 1 && g.starts_with(w) && g.ends_with(b"\n")));
        assert!(ok, "{ctx}: message {name} not delivered byte-identical");
    }
}

#[test]
fn fetch_into_maildir_over_every_transport() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    for (proto, tls) in [
        ("pop3", "implicit"),
        ("pop3", "starttls"),
        ("imap", "implicit"),
        ("imap", "starttls"),
    ] {
        let dir = tempdir(&format!("{proto}-{tls}"));
        clear_bob(&s);
        let msgs = samples();
        for (name, m) in &msgs {
            put_bob(&s, &dir, name, m);
        }
        assert_eq!(server_count(&s), msgs.len());
        let md = dir.join("Maildir");
        let cfg = toml_config(
            &s,
            &dir,
            proto,
            tls,
            &format!("maildir = \"{}\"", md.display()),
            "",
        );
        let o = rfetch(&dir, &["-v", "-C", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 0, "{proto}/{tls}: {err}");
        assert!(err.contains("1 of 5 ("), "{proto}/{tls}: info lines: {err}");
        assert!(err.contains("delivered to"), "{err}");
        assert_same(&maildir_messages(&md), &msgs, &format!("{proto}/{tls}"));
        assert_eq!(
            server_count(&s),
            0,
            "{proto}/{tls}: server must be empty after nokeep"
        );
        // Nothing left: exit 1.
        let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
        assert_eq!(
            code(&o),
            1,
            "{proto}/{tls}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn keep_leaves_the_server_untouched_and_fetches_once() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    for proto in ["pop3", "imap"] {
        let dir = tempdir(&format!("keep-{proto}"));
        clear_bob(&s);
        let msgs = &samples()[..3];
        for (name, m) in msgs {
            put_bob(&s, &dir, name, m);
        }
        let md = dir.join("Maildir");
        let cfg = toml_config(
            &s,
            &dir,
            proto,
            "implicit",
            &format!("maildir = \"{}\"", md.display()),
            "keep = true",
        );
        let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(server_count(&s), 3, "{proto}: keep leaves the messages");
        assert_same(&maildir_messages(&md), msgs, proto);
        let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
        assert_eq!(
            code(&o),
            1,
            "{proto}: second run finds nothing new: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(maildir_messages(&md).len(), 3);
        // -a fetches them again.
        let o = rfetch(&dir, &["-a", "-C", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), 0);
        assert_eq!(maildir_messages(&md).len(), 6);
        // -c: nothing new waiting.
        let o = rfetch(&dir, &["-c", "-C", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), 1);
    }
    clear_bob(&s);
}

#[test]
fn smtp_forwarding_through_postfix_arrives_byte_identical() {
    // rfetch -> Postfix (SMTP) -> Dovecot (LMTP) -> alice's Maildir. Apart from the trace
    // fields put on top (rfetch's Received, Postfix's Received, Dovecot's Return-Path and
    // Delivered-To) and a Date Postfix adds where one is missing, each message is unchanged.
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("smtp-postfix");
    clear_bob(&s);
    let tag = format!("fwd{}", std::process::id());
    let msgs: Vec<(&str, Vec<u8>)> = samples()
        .into_iter()
        .map(|(name, mut m)| {
            // Unique Message-IDs, so alice's earlier mail cannot be taken for ours.
            let needle = b"Message-ID: <";
            let at = m
                .windows(needle.len())
                .position(|w| w == needle)
                .expect("every sample has a Message-ID")
                + needle.len();
            m.splice(at..at, format!("{tag}.").into_bytes());
            (name, m)
        })
        .collect();
    for (name, m) in &msgs {
        put_bob(&s, &dir, name, m);
    }
    let cfg = toml_config(
        &s,
        &dir,
        "pop3",
        "implicit",
        &format!("smtp = \"127.0.0.1:{}\"", s.port("SMTP_PORT")),
        "recipient = \"alice@localhost\"",
    );
    let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server_count(&s), 0);
    // Postfix delivers in the background: wait for all of ours in alice's Maildir.
    let alice = PathBuf::from(s.var("STACK_MAILDIR1"));
    let ours = || -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = ["new", "cur"]
            .iter()
            .flat_map(|d| std::fs::read_dir(alice.join(d)).into_iter().flatten())
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .filter(|m| m.windows(tag.len()).any(|w| w == tag.as_bytes()))
            .collect();
        v.sort();
        v
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while ours().len() < msgs.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let got = ours();
    assert_eq!(got.len(), msgs.len(), "all forwarded messages arrived");
    for (name, want) in &msgs {
        let found = got.iter().map(|g| strip_trace(g, want)).any(|g| {
            g == *want || (g.len() == want.len() + 1 && g.starts_with(want) && g.ends_with(b"\n"))
        });
        assert!(found, "{name} not delivered byte-identical through Postfix");
    }
}

/// `msg` without the trace fields on top (Return-Path, Delivered-To, Received and their
/// continuation lines) and without a Date field `original` lacks.
fn strip_trace(msg: &[u8], original: &[u8]) -> Vec<u8> {
    let mut rest = msg;
    loop {
        let is_trace = [&b"Return-Path:"[..], b"Delivered-To:", b"Received:"]
            .iter()
            .any(|p| rest.starts_with(p));
        if !is_trace {
            break;
        }
        // Skip the field and its continuation lines.
        loop {
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                return Vec::new();
            };
            rest = &rest[nl + 1..];
            if !rest.starts_with(b" ") && !rest.starts_with(b"\t") {
                break;
            }
        }
    }
    let original_has_date =
        original.starts_with(b"Date:") || original.windows(6).any(|w| w == b"\nDate:");
    let mut out = Vec::with_capacity(rest.len());
    let mut in_header = true;
    for line in rest.split_inclusive(|&b| b == b'\n') {
        if in_header && (line == b"\n" || line == b"\r\n") {
            in_header = false;
        }
        if in_header && !original_has_date && line.starts_with(b"Date:") {
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

#[test]
fn mbox_and_mda_targets_and_tempfail() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let msgs = &samples()[..3];

    // mbox
    let dir = tempdir("mbox");
    clear_bob(&s);
    for (name, m) in msgs {
        put_bob(&s, &dir, name, m);
    }
    let mbox = dir.join("inbox.mbox");
    let cfg = toml_config(
        &s,
        &dir,
        "imap",
        "implicit",
        &format!("mbox = \"{}\"", mbox.display()),
        "",
    );
    let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read(&mbox).unwrap();
    let froms = text
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"From "))
        .count();
    assert_eq!(froms, 3, "three mbox entries");
    for id in ["<plain@t>", "<8bit@t>", "<dots@t>"] {
        assert!(
            text.windows(id.len()).any(|w| w == id.as_bytes()),
            "{id} in mbox"
        );
    }
    assert_eq!(server_count(&s), 0);

    // MDA exit 75: everything stays, exit 10, then a working MDA gets them all.
    let dir = tempdir("mda");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    for (name, m) in msgs {
        put_bob(&s, &dir, name, m);
    }
    let cfg = toml_config(
        &s,
        &dir,
        "pop3",
        "implicit",
        "mda = [\"sh\", \"-c\", \"cat >/dev/null; exit 75\"]",
        "",
    );
    let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 10, "{err}");
    assert!(err.contains("retried at the next poll"), "{err}");
    // Each message's failure once: the poll's own error (the last of them) is not shown again.
    assert_eq!(err.matches("retried at the next poll").count(), 3, "{err}");
    assert_eq!(
        server_count(&s),
        3,
        "tempfail leaves the messages on the server"
    );
    let cfg = toml_config(
        &s,
        &dir,
        "pop3",
        "implicit",
        &format!("mda = [\"sh\", \"-c\", \"cat > {}/$$\"]", out.display()),
        "",
    );
    let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server_count(&s), 0);
    let got: Vec<Vec<u8>> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_same(&got, msgs, "mda");
}

/// Two accounts of one run on the same server with different trust files: the one whose file
/// holds the stack's CA fetches, the one whose file holds another CA is refused the server's
/// certificate, in whichever order their threads connect (connections with the same trust share
/// one TLS configuration; no other trust ever does).
#[test]
fn accounts_with_different_trust_files_each_verify_with_their_own() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("two-trusts");
    clear_bob(&s);
    put_bob(&s, &dir, "one", b"Subject: one\r\n\r\nbody\r\n");
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let wrong_ca = dir.join("stranger.pem");
    std::fs::write(&wrong_ca, stranger.cert.pem()).unwrap();
    let account = |name: &str, ca: &std::path::Path| {
        let md = dir.join(name);
        format!(
            "[accounts.{name}]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npassword = \"bobpw\"\n\
             tls_trust_file = \"{}\"\ntls_host_override = \"localhost\"\n\
             [accounts.{name}.fetch]\nprotocol = \"imap\"\nport = {}\ntls_starttls = false\n\
             keep = true\nmaildir = \"{}\"\n",
            ca.display(),
            s.port("IMAPS_PORT"),
            md.display()
        )
    };
    let text = account("trusting", &s.ca()) + &account("stranger", &wrong_ca);
    let cfg = write_config(&dir, &text);
    let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    // fetchmail's exit 0: some mail was fetched (the refused account is in the log).
    assert_eq!(code(&o), 0, "{err}");
    assert_eq!(maildir_messages(&dir.join("trusting")).len(), 1, "{err}");
    assert!(maildir_messages(&dir.join("stranger")).is_empty(), "{err}");
    let refused: Vec<&str> = err.lines().filter(|l| l.contains("not trusted")).collect();
    assert_eq!(refused.len(), 1, "{err}");
    assert!(refused[0].contains("unknown issuer"), "{err}");
    assert_eq!(server_count(&s), 1, "keep leaves the message");
    clear_bob(&s);
}

/// Restores a directory's mode when dropped (also when the test fails).
struct ModeGuard(PathBuf, u32);

impl Drop for ModeGuard {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(self.1));
    }
}

/// A message's Message-ID header line.
fn message_id(message: &[u8]) -> Option<String> {
    String::from_utf8_lossy(message)
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .map(str::to_string)
}

/// The distinct Message-IDs of a Maildir's messages, and how many messages there are.
fn message_ids(md: &std::path::Path) -> (std::collections::HashSet<String>, usize) {
    let msgs = maildir_messages(md);
    let ids = msgs.iter().filter_map(|m| message_id(m)).collect();
    (ids, msgs.len())
}

/// An implicit-TLS account of bob's (`proto` pop3 or imap) delivering into `<dir>/Maildir`:
/// the directory, the Maildir and the configuration file.
fn into_maildir(s: &common::Stack, proto: &str, tag: &str) -> (common::TempDir, PathBuf, PathBuf) {
    let dir = tempdir(tag);
    let md = dir.join("Maildir");
    let cfg = toml_config(
        s,
        &dir,
        proto,
        "implicit",
        &format!("maildir = \"{}\"", md.display()),
        "",
    );
    (dir, md, cfg)
}

#[test]
fn dovecot_deletes_at_a_quit_rfetch_does_not_wait_for() {
    // rfetch sends QUIT and closes without reading its answer: Dovecot must still commit the
    // deletions, also when it is still unlinking files as rfetch exits (1000 messages).
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let (dir, md, cfg) = into_maildir(&s, "pop3", "quit-unanswered");
    for round in 1..=3 {
        clear_bob(&s);
        stack_sh(&s, &["seed", "bob", "1000", "2000"]);
        let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        // server_count waits for bob's POP3 session to end: Dovecot commits before that.
        assert_eq!(
            server_count(&s),
            0,
            "round {round}: the QUIT was not acted on"
        );
        let (ids, n) = message_ids(&md);
        assert_eq!(
            (ids.len(), n),
            (1000 * round, 1000 * round),
            "round {round}"
        );
    }
}

#[test]
fn messages_of_a_session_whose_quit_failed_unseen_are_deleted_next_poll_not_fetched_twice() {
    use std::os::unix::fs::PermissionsExt;
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let (dir, md, cfg) = into_maildir(&s, "pop3", "quit-failed");
    clear_bob(&s);
    stack_sh(&s, &["seed", "bob", "30", "2000"]);
    // Dovecot (running as the mail user) can read bob's messages but not unlink them: it
    // answers QUIT with an error and keeps every message. rfetch never reads that answer.
    let cur = PathBuf::from(s.var("STACK_MAILDIR2")).join("cur");
    let mode = std::fs::metadata(&cur).unwrap().permissions().mode() & 0o7777;
    let guard = ModeGuard(cur.clone(), mode);
    std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(0o555)).unwrap();
    let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(message_ids(&md).1, 30);
    assert_eq!(server_count(&s), 30, "the server could not delete anything");
    drop(guard);
    // The next poll deletes them (their seen state was recorded before any DELE) and fetches
    // none of them again.
    let o = rfetch(&dir, &["-v", "-C", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 1, "no new mail: {err}");
    assert!(err.contains("delivered before, flushed"), "{err}");
    assert_eq!(server_count(&s), 0);
    let (ids, n) = message_ids(&md);
    assert_eq!((ids.len(), n), (30, 30), "nothing delivered twice");
}

/// Messages of bob's on the server whose Maildir file name carries the \Seen flag (`:2,...S`).
fn server_seen(s: &common::Stack) -> usize {
    let md = PathBuf::from(s.var("STACK_MAILDIR2"));
    ["cur", "new"]
        .iter()
        .flat_map(|d| std::fs::read_dir(md.join(d)).into_iter().flatten())
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.rsplit_once(":2,")
                .is_some_and(|(_, f)| f.contains('S'))
        })
        .count()
}

#[test]
fn sigterm_during_an_imap_poll_leaves_the_batch_asked_for_ahead_unseen_on_the_server() {
    // rfetch asks for the next batch of 100 before the current one is settled. Stopped in the
    // middle of a poll (an MDA slow enough to be caught mid-batch), it ends after the batch it
    // was delivering: the batch it had asked for ahead is read and dropped, so its messages
    // stay on the server unseen and undeleted, and the next run delivers exactly them. Every
    // message delivered once in all.
    use rustix::process::{Pid, Signal, kill_process};
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("imap-stop-ahead");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    clear_bob(&s);
    stack_sh(&s, &["seed", "bob", "400", "2000"]);
    let slow = toml_config(
        &s,
        &dir,
        "imap",
        "implicit",
        &format!(
            "mda = [\"sh\", \"-c\", \"cat > {}/$$; sleep 0.02\"]",
            out.display()
        ),
        "",
    );
    let delivered = || std::fs::read_dir(&out).unwrap().count();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rfetch"))
        .args(["-v", "-C", slow.to_str().unwrap()])
        .env("HOME", &*dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("rfetch.log")).unwrap())
        .spawn()
        .expect("start rfetch");
    let started = std::time::Instant::now();
    let mut exited = None;
    while delivered() < 110 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "batch 2 did not start"
        );
        exited = child.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Once reaped, the PID may belong to another process: signalled only while ours.
    let status = match exited {
        Some(status) => status,
        None => {
            kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::TERM).unwrap();
            child.wait().unwrap()
        }
    };
    let log = std::fs::read_to_string(dir.join("rfetch.log")).unwrap();
    assert!(log.contains("stopping on request"), "{status:?}: {log}");
    let first = delivered();
    assert!(
        (110..400).contains(&first) && first % 100 == 0,
        "stopped after whole batches, before the end: {first} delivered; {log}"
    );
    // What was not delivered stays on the server, not deleted and not marked seen.
    assert_eq!(server_count(&s), 400 - first, "{log}");
    assert_eq!(
        server_seen(&s),
        0,
        "nothing left on the server is marked seen"
    );
    let fast = toml_config(
        &s,
        &dir,
        "imap",
        "implicit",
        &format!("mda = [\"sh\", \"-c\", \"cat > {}/$$\"]", out.display()),
        "",
    );
    let o = rfetch(&dir, &["-C", fast.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server_count(&s), 0);
    let mut ids = std::collections::HashSet::new();
    for e in std::fs::read_dir(&out).unwrap() {
        let id = message_id(&std::fs::read(e.unwrap().path()).unwrap()).expect("a Message-ID");
        assert!(ids.insert(id.clone()), "{id} delivered twice");
    }
    assert_eq!(ids.len(), 400, "every message delivered once");
}

/// The IMAP commands rfetch sent (`-vv` protocol trace), by name: "UID FETCH", "UID STORE"...
fn imap_commands(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter_map(|l| l.split_once("IMAP> A").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(' ').map(|(_, cmd)| cmd))
        .map(|cmd| cmd.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .filter(|c| ["UID FETCH", "UID STORE", "UID EXPUNGE"].contains(&c.as_str()))
        .collect()
}

#[test]
fn imap_deletions_are_paced_by_mode_on_the_wire() {
    // 150 messages, two batches. By default the second batch is asked for before the first is
    // flagged, and one EXPUNGE at the end takes both. With fetchall (-a), which ignores the
    // seen state, each batch is expunged once flagged, so that a lost connection leaves at most
    // one batch flagged and not expunged for the next poll to fetch again.
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    for (args, want) in [
        (
            &["-vv"][..],
            &[
                "UID FETCH",
                "UID FETCH",
                "UID STORE",
                "UID STORE",
                "UID EXPUNGE",
            ][..],
        ),
        (
            &["-vv", "-a"][..],
            &[
                "UID FETCH",
                "UID FETCH",
                "UID STORE",
                "UID EXPUNGE",
                "UID STORE",
                "UID EXPUNGE",
            ][..],
        ),
    ] {
        let (dir, md, cfg) = into_maildir(&s, "imap", "imap-pacing");
        clear_bob(&s);
        stack_sh(&s, &["seed", "bob", "150", "2000"]);
        let mut all = args.to_vec();
        all.extend(["-C", cfg.to_str().unwrap()]);
        let o = rfetch(&dir, &all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 0, "{args:?}: {err}");
        assert_eq!(imap_commands(&err), want, "{args:?}");
        assert_eq!(server_count(&s), 0, "{args:?}: everything expunged");
        assert_eq!(message_ids(&md).1, 150, "{args:?}");
    }
}
