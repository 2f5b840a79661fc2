//! The rsend binary end to end: messages submitted through Postfix's implicit-TLS port and its
//! STARTTLS submission port land in bob's (and alice's) Dovecot Maildir as written; the sendmail
//! flags real callers pass work; exit codes follow sysexits (issue 3); scripted fake servers
//! check the temporary-failure and timeout paths.
//! Run with POSTIE_STACK_DIR=<stack dir>.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RSEND: &str = env!("CARGO_BIN_EXE_rsend");

/// A marker no other test (or run) puts into a message.
fn unique(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("rsendstack-{tag}-{}-{nanos}-{n}", std::process::id())
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which Postfix port a test submits through.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// SMTPS: implicit TLS + AUTH (account `smtps`, the default).
    Smtps,
    /// Submission: STARTTLS + AUTH LOGIN (account `sub`).
    Submission,
}

impl Via {
    fn account(self) -> &'static str {
        match self {
            Via::Smtps => "smtps",
            Via::Submission => "sub",
        }
    }
}

/// The msmtprc text that works against the stack, with `password` for alice and extra
/// lines appended to the `smtps` account.
fn msmtprc_text(stack: &common::Stack, password: &str, smtps_port: u16) -> String {
    format!(
        "defaults\n\
         tls on\n\
         tls_trust_file {ca}\n\
         auth on\n\
         from alice@localhost\n\
         account smtps\n\
         host localhost\n\
         port {smtps_port}\n\
         tls_starttls off\n\
         user alice\n\
         password {password}\n\
         account sub\n\
         host localhost\n\
         port {sub}\n\
         auth login\n\
         user alice\n\
         password {password}\n\
         account default : smtps\n",
        ca = stack.ca().display(),
        sub = stack.port("SUBMISSION_PORT"),
    )
}

fn write_rc(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let path = dir.join("msmtprc");
    std::fs::write(&path, text).expect("write msmtprc");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// A temp dir holding the working msmtprc (mode 600).
fn good_rc(stack: &common::Stack) -> (TempDir, PathBuf) {
    let dir = TempDir::new("rc");
    let rc = write_rc(
        dir.path(),
        &msmtprc_text(stack, "alicepw", stack.port("SMTPS_PORT")),
        0o600,
    );
    (dir, rc)
}

fn run_program(program: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env_remove("HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    // Written from a thread: rsend may exit before reading all of stdin.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for rsend");
    let _ = writer.join();
    out
}

fn rsend(args: &[&str], input: &[u8]) -> Output {
    run_program(Path::new(RSEND), args, input)
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
}

/// Sends `input` through `via` to `recipients` with extra `flags`; asserts exit 0.
fn send(rc: &Path, via: Via, flags: &[&str], recipients: &[&str], input: &[u8]) {
    let rc = rc.to_str().expect("utf-8 path");
    let mut args = vec!["-C", rc, "-a", via.account()];
    args.extend_from_slice(flags);
    args.extend_from_slice(recipients);
    let out = rsend(&args, input);
    assert_exit(&out, 0);
}

fn maildir(stack: &common::Stack, user: &str) -> PathBuf {
    match user {
        "alice" => PathBuf::from(stack.var("STACK_MAILDIR1")),
        "bob" => PathBuf::from(stack.var("STACK_MAILDIR2")),
        other => panic!("no maildir for {other}"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every message in the Maildir (new/ and cur/) containing `marker`.
fn find_messages(maildir: &Path, marker: &str) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            // A file may move from new/ to cur/ while we look: skip what vanished.
            if let Ok(data) = std::fs::read(entry.path())
                && contains(&data, marker.as_bytes())
            {
                found.push(data);
            }
        }
    }
    found
}

/// Waits up to 30 s until `count` messages containing `marker` are in the Maildir.
fn wait_for_n(maildir: &Path, marker: &str, count: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = find_messages(maildir, marker);
        if found.len() >= count {
            return found;
        }
        if Instant::now() > deadline {
            panic!(
                "{} message(s) with {marker} in {} after 30 s, expected {count}",
                found.len(),
                maildir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for(maildir: &Path, marker: &str) -> Vec<u8> {
    let mut found = wait_for_n(maildir, marker, 1);
    assert_eq!(found.len(), 1, "{marker} delivered more than once");
    found.remove(0)
}

/// Splits a delivered message at the first empty line: (header, body).
fn split(message: &[u8]) -> (String, Vec<u8>) {
    let text = message;
    let pos = text
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or_else(|| panic!("no header/body separator in {}", show(message)));
    (
        String::from_utf8_lossy(&text[..pos + 1]).into_owned(),
        text[pos + 2..].to_vec(),
    )
}

fn show(message: &[u8]) -> String {
    String::from_utf8_lossy(message).into_owned()
}

/// Header field lines (unfolded not needed for our short headers).
fn header_lines(header: &str) -> Vec<&str> {
    header.lines().collect()
}

fn has_header_line(header: &str, line: &str) -> bool {
    header_lines(header).contains(&line)
}

fn header_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header_lines(header).into_iter().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const BOTH: [Via; 2] = [Via::Smtps, Via::Submission];

#[test]
fn plain_message_arrives_as_written() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    for via in BOTH {
        let marker = unique("plain");
        let header = format!(
            "From: Alice <alice@localhost>\n\
             To: Bob <bob@localhost>\n\
             Subject: {marker}\n\
             Date: Mon, 23 Nov 2026 14:00:00 +0000\n\
             Message-ID: <{marker}@postie.test>\n"
        );
        let body = "Hello Bob,\n\nthis is a plain message.\n\n-- \nAlice\n";
        send(
            &rc,
            via,
            &[],
            &["bob@localhost"],
            format!("{header}\n{body}").as_bytes(),
        );
        let got = wait_for(&maildir(&stack, "bob"), &marker);
        let (got_header, got_body) = split(&got);
        for line in header.lines() {
            assert!(
                has_header_line(&got_header, line),
                "{via:?}: header line {line:?} missing in\n{}",
                show(&got)
            );
        }
        assert_eq!(show(&got_body), body, "{via:?}: body changed");
        assert_eq!(
            header_value(&got_header, "Return-Path"),
            Some("<alice@localhost>"),
            "{via:?}: envelope sender"
        );
    }
}

#[test]
fn message_without_header_gets_its_text_as_body() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    for via in BOTH {
        let marker = unique("nohdr");
        let input = format!("hello {marker}\n");
        send(&rc, via, &[], &["bob@localhost"], input.as_bytes());
        let got = wait_for(&maildir(&stack, "bob"), &marker);
        let (got_header, got_body) = split(&got);
        assert_eq!(show(&got_body), input, "{via:?}: {}", show(&got));
        assert!(
            !got_header.contains(&marker),
            "{via:?}: the text became a header:\n{}",
            show(&got)
        );
    }
}

#[test]
fn echo_hello_arrives_as_body() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    let marker = unique("echo");
    // Exactly `echo hello | rsend bob@localhost`; the message is found by the -F full name,
    // which only goes into the From header rsend adds.
    let out = rsend(
        &[
            "-C",
            rc.to_str().expect("path"),
            "-F",
            &marker,
            "bob@localhost",
        ],
        b"hello\n",
    );
    assert_exit(&out, 0);
    let got = wait_for(&maildir(&stack, "bob"), &marker);
    let (got_header, got_body) = split(&got);
    assert_eq!(show(&got_body), "hello\n", "{}", show(&got));
    assert!(got_header.contains(&marker), "{}", show(&got));
}

#[test]
fn read_recipients_delivers_to_all_and_removes_bcc() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    for via in BOTH {
        // To + Cc: both get it, Cc header stays.
        let marker = unique("tcc");
        let input = format!(
            "From: alice@localhost\nTo: alice@localhost\nCc: Bob <bob@localhost>\nSubject: {marker}\n\nbody\n"
        );
        send(&rc, via, &["-t"], &[], input.as_bytes());
        for user in ["alice", "bob"] {
            let got = wait_for(&maildir(&stack, user), &marker);
            let (h, _) = split(&got);
            assert!(
                has_header_line(&h, "Cc: Bob <bob@localhost>"),
                "{via:?} {user}: {}",
                show(&got)
            );
        }
        // To + Bcc: both get it, neither copy shows Bcc.
        let marker = unique("tbcc");
        let input = format!(
            "From: alice@localhost\nTo: alice@localhost\nBcc: bob@localhost\nSubject: {marker}\n\nsecret copy\n"
        );
        send(&rc, via, &["-t"], &[], input.as_bytes());
        for user in ["alice", "bob"] {
            let got = wait_for(&maildir(&stack, user), &marker);
            let (h, body) = split(&got);
            assert!(
                header_value(&h, "Bcc").is_none(),
                "{via:?} {user}: Bcc kept:\n{}",
                show(&got)
            );
            assert!(!contains(&got, b"Bcc:"), "{via:?} {user}: {}", show(&got));
            assert_eq!(show(&body), "secret copy\n");
        }
    }
}

#[test]
fn leading_mbox_from_line_is_dropped() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    for via in BOTH {
        let marker = unique("mbox");
        let input = format!(
            "From alice@localhost Mon Nov 23 14:00:00 2026\nFrom: alice@localhost\nTo: bob@localhost\nSubject: {marker}\n\nbody\n"
        );
        send(&rc, via, &[], &["bob@localhost"], input.as_bytes());
        let got = wait_for(&maildir(&stack, "bob"), &marker);
        assert!(
            !show(&got)
                .lines()
                .any(|l| l.starts_with("From alice@localhost Mon")),
            "{via:?}: mbox From line kept:\n{}",
            show(&got)
        );
        let (h, body) = split(&got);
        assert!(has_header_line(&h, &format!("Subject: {marker}")));
        assert_eq!(show(&body), "body\n");
    }
}

#[test]
fn bare_lf_dot_lines_arrive_intact() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    for via in BOTH {
        let marker = unique("dots");
        let body = ".\n..x\nmiddle\n.\n.leading dot\n..\nlast\n";
        let input = format!("Subject: {marker}\n\n{body}");
        send(&rc, via, &[], &["bob@localhost"], input.as_bytes());
        let got = wait_for(&maildir(&stack, "bob"), &marker);
        let (_, got_body) = split(&got);
        assert_eq!(show(&got_body), body, "{via:?}");
    }
}

#[test]
fn crlf_input_and_missing_final_newline() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    for via in BOTH {
        let marker = unique("crlf");
        let input = format!("Subject: {marker}\r\n\r\nline one\r\n.\r\nline three");
        send(&rc, via, &[], &["bob@localhost"], input.as_bytes());
        let got = wait_for(&maildir(&stack, "bob"), &marker);
        let (_, got_body) = split(&got);
        // Dovecot stores CRLF as LF; the missing newline is added.
        assert_eq!(show(&got_body), "line one\n.\nline three\n", "{via:?}");
    }
}

#[test]
fn utf8_body_arrives_intact() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    for via in BOTH {
        let marker = unique("utf8");
        let body = "Grüße aus Köln — ½ € ✓ 日本語 🦀\nnoch eine Zeile: ÄÖÜß\n";
        let input = format!(
            "Subject: {marker}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{body}"
        );
        send(&rc, via, &[], &["bob@localhost"], input.as_bytes());
        let got = wait_for(&maildir(&stack, "bob"), &marker);
        let (_, got_body) = split(&got);
        assert_eq!(got_body, body.as_bytes(), "{via:?}: {}", show(&got_body));
    }
}

#[test]
fn from_flags_set_the_from_header() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    for via in BOTH {
        let marker = unique("fromflags");
        let input = format!("To: bob@localhost\nSubject: {marker}\n\nbody\n");
        send(
            &rc,
            via,
            &["-f", "alice@localhost", "-F", "Alice Liddell"],
            &["bob@localhost"],
            input.as_bytes(),
        );
        let got = wait_for(&maildir(&stack, "bob"), &marker);
        let (h, _) = split(&got);
        let from = header_value(&h, "From").unwrap_or_else(|| panic!("no From: {}", show(&got)));
        assert!(
            from.contains("Alice Liddell") && from.contains("alice@localhost"),
            "{via:?}: From: {from}"
        );
        assert_eq!(header_value(&h, "Return-Path"), Some("<alice@localhost>"));
    }
}

#[test]
fn cron_flags_deliver() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    let marker = unique("cron");
    let input = format!(
        "Subject: Cron <alice@host> run-parts {marker}\nContent-Type: text/plain; charset=UTF-8\n\noutput of the job\n"
    );
    let out = rsend(
        &[
            "-C",
            rc.to_str().expect("path"),
            "-FCronDaemon",
            "-i",
            "-B8BITMIME",
            "-oem",
            "bob@localhost",
        ],
        input.as_bytes(),
    );
    assert_exit(&out, 0);
    let got = wait_for(&maildir(&stack, "bob"), &marker);
    let (h, body) = split(&got);
    let from = header_value(&h, "From").unwrap_or_else(|| panic!("no From: {}", show(&got)));
    assert!(from.contains("CronDaemon"), "From: {from}");
    assert_eq!(show(&body), "output of the job\n");
}

#[test]
fn php_mail_flags_deliver() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    let marker = unique("php");
    // PHP's mail() writes CRLF-free headers and calls `sendmail -t -i` (+ -r from sendmail_from).
    let input = format!(
        "To: bob@localhost\nSubject: {marker}\nX-PHP-Originating-Script: 0:index.php\n\nline\n.\nafter a dot (-i: not the end)\n"
    );
    let out = rsend(
        &[
            "-C",
            rc.to_str().expect("path"),
            "-t",
            "-i",
            "-r",
            "alice@localhost",
        ],
        input.as_bytes(),
    );
    assert_exit(&out, 0);
    let got = wait_for(&maildir(&stack, "bob"), &marker);
    let (h, body) = split(&got);
    assert_eq!(header_value(&h, "Return-Path"), Some("<alice@localhost>"));
    assert_eq!(show(&body), "line\n.\nafter a dot (-i: not the end)\n");
}

#[test]
fn called_as_sendmail_through_a_symlink() {
    let stack = common::Stack::get();
    let (dir, rc) = good_rc(&stack);
    let link = dir.path().join("sendmail");
    std::os::unix::fs::symlink(RSEND, &link).expect("symlink");
    let marker = unique("symlink");
    let input = format!("To: bob@localhost\nSubject: {marker}\n\nvia sendmail\n.\n..dots\n");
    let out = run_program(
        &link,
        &["-C", rc.to_str().expect("path"), "-t", "-i"],
        input.as_bytes(),
    );
    assert_exit(&out, 0);
    let got = wait_for(&maildir(&stack, "bob"), &marker);
    let (_, body) = split(&got);
    assert_eq!(show(&body), "via sendmail\n.\n..dots\n");
}

#[test]
fn wrong_password_exits_77() {
    let stack = common::Stack::get();
    let dir = TempDir::new("badpw");
    let rc = write_rc(
        dir.path(),
        &msmtprc_text(&stack, "not-the-password", stack.port("SMTPS_PORT")),
        0o600,
    );
    for via in BOTH {
        let out = rsend(
            &[
                "-C",
                rc.to_str().expect("path"),
                "-a",
                via.account(),
                "bob@localhost",
            ],
            b"Subject: wrong password\n\nx\n",
        );
        assert_exit(&out, 77);
        assert!(
            !show(&out.stderr).contains("not-the-password"),
            "password in stderr"
        );
    }
}

#[test]
fn connection_refused_exits_75() {
    let stack = common::Stack::get();
    let unused = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = TempDir::new("refused");
    let rc = write_rc(dir.path(), &msmtprc_text(&stack, "alicepw", unused), 0o600);
    let out = rsend(
        &["-C", rc.to_str().expect("path"), "bob@localhost"],
        b"Subject: refused\n\nx\n",
    );
    assert_exit(&out, 75);
}

#[test]
fn implicit_tls_against_starttls_port_exits_76() {
    let stack = common::Stack::get();
    let dir = TempDir::new("tlsmismatch");
    let rc = write_rc(
        dir.path(),
        &msmtprc_text(&stack, "alicepw", stack.port("SUBMISSION_PORT")),
        0o600,
    );
    let started = Instant::now();
    let out = rsend(
        &[
            "-C",
            rc.to_str().expect("path"),
            "--timeout=10",
            "bob@localhost",
        ],
        b"Subject: mismatch\n\nx\n",
    );
    assert_exit(&out, 76);
    assert!(started.elapsed() < Duration::from_secs(9), "took a timeout");
}

#[test]
fn unknown_recipient_exits_65() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    for via in BOTH {
        let out = rsend(
            &[
                "-C",
                rc.to_str().expect("path"),
                "-a",
                via.account(),
                "nobody@localhost",
            ],
            b"Subject: unknown\n\nx\n",
        );
        assert_exit(&out, 65);
    }
}

#[test]
fn readable_config_with_password_exits_78() {
    let stack = common::Stack::get();
    let dir = TempDir::new("mode644");
    let rc = write_rc(
        dir.path(),
        &msmtprc_text(&stack, "alicepw", stack.port("SMTPS_PORT")),
        0o644,
    );
    let out = rsend(
        &["-C", rc.to_str().expect("path"), "bob@localhost"],
        b"Subject: perms\n\nx\n",
    );
    assert_exit(&out, 78);
    assert!(
        show(&out.stderr).contains("chmod 600"),
        "{}",
        describe(&out)
    );
    assert!(!show(&out.stderr).contains("alicepw"), "{}", describe(&out));
}

#[test]
fn no_recipients_exits_64() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    let out = rsend(
        &["-C", rc.to_str().expect("path")],
        b"Subject: nobody\n\nx\n",
    );
    assert_exit(&out, 64);
    // -t with no recipient header is the same.
    let out = rsend(
        &["-C", rc.to_str().expect("path"), "-t"],
        b"Subject: nobody\n\nx\n",
    );
    assert_exit(&out, 64);
}

#[test]
fn serverinfo_shows_auth_and_fingerprint() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    for via in BOTH {
        let out = rsend(
            &[
                "-C",
                rc.to_str().expect("path"),
                "-a",
                via.account(),
                "--serverinfo",
            ],
            b"",
        );
        assert_exit(&out, 0);
        let text = show(&out.stdout);
        assert!(text.contains("AUTH"), "{via:?}: {text}");
        assert!(text.contains("PLAIN"), "{via:?}: {text}");
        assert!(
            text.contains(stack.var("STACK_SERVER_SHA256")),
            "{via:?}: fingerprint missing: {text}"
        );
        assert!(!text.contains("alicepw"));
    }
}

#[test]
fn pretend_shows_password_as_star() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    for args in [vec!["-P"], vec!["-P", "-a", "sub"], vec!["--pretend"]] {
        let mut full = vec!["-C", rc.to_str().expect("path")];
        full.extend(args.iter());
        let out = rsend(&full, b"");
        assert_exit(&out, 0);
        let text = show(&out.stdout);
        assert!(
            text.lines().any(|l| {
                l.split_once('=')
                    .is_some_and(|(k, v)| k.trim() == "password" && v.trim().starts_with('*'))
            }),
            "{args:?}: no `password = *` line: {text}"
        );
        assert!(!text.contains("alicepw"), "{args:?}: password shown");
        assert!(!show(&out.stderr).contains("alicepw"), "{args:?}");
    }
}

// ----- scripted fake servers (no TLS, no AUTH) -----

fn plain_rc(dir: &Path, port: u16) -> PathBuf {
    write_rc(
        dir,
        &format!(
            "account default\nhost 127.0.0.1\nport {port}\ntls off\nauth off\nfrom alice@localhost\n"
        ),
        0o600,
    )
}

/// A fake SMTP server answering each command line with `reply(command)`; returns its port.
fn scripted_server(reply: fn(&str) -> Option<&'static str>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let mut writer = match stream.try_clone() {
            Ok(w) => w,
            Err(_) => return,
        };
        let _ = writer.write_all(b"220 fake.test ESMTP\r\n");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let command = line.trim_end().to_ascii_uppercase();
            if let Some(answer) = reply(&command)
                && writer.write_all(answer.as_bytes()).is_err()
            {
                return;
            }
            if command == "QUIT" {
                return;
            }
        }
    });
    port
}

#[test]
fn temporary_failure_at_rcpt_exits_75() {
    let port = scripted_server(|command| {
        Some(
            if command.starts_with("EHLO") || command.starts_with("HELO") {
                "250-fake.test\r\n250 8BITMIME\r\n"
            } else if command.starts_with("MAIL") {
                "250 2.1.0 ok\r\n"
            } else if command.starts_with("RCPT") {
                "451 4.3.0 try again later\r\n"
            } else if command == "QUIT" {
                "221 2.0.0 bye\r\n"
            } else {
                "250 ok\r\n"
            },
        )
    });
    let dir = TempDir::new("fake451");
    let rc = plain_rc(dir.path(), port);
    let out = rsend(
        &[
            "-C",
            rc.to_str().expect("path"),
            "--timeout=10",
            "bob@localhost",
        ],
        b"Subject: 451\n\nx\n",
    );
    assert_exit(&out, 75);
}

#[test]
fn silent_server_times_out_with_75() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        // Accept and hold the connection without ever answering.
        if let Ok((stream, _)) = listener.accept() {
            std::thread::sleep(Duration::from_secs(15));
            drop(stream);
        }
    });
    let dir = TempDir::new("silent");
    let rc = plain_rc(dir.path(), port);
    let started = Instant::now();
    let out = rsend(
        &[
            "-C",
            rc.to_str().expect("path"),
            "--timeout=2",
            "bob@localhost",
        ],
        b"Subject: silent\n\nx\n",
    );
    let took = started.elapsed();
    assert_exit(&out, 75);
    assert!(
        took < Duration::from_secs(6),
        "rsend took {took:?} with --timeout=2"
    );
}
