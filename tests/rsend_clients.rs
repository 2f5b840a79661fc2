//! rsend as a drop-in, checked against the programs it replaces or serves: the same ~/.msmtprc
//! drives Debian's msmtp and rsend to the same delivered message and the same exit codes; mutt
//! and git send-email submit through rsend as their sendmail; a 10 MB message arrives byte for
//! byte. Run with POSTIE_STACK_DIR=<stack dir>; msmtp, mutt and git-email must be installed
//! (tests/stack/stack.sh deps tests installs them).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::rsend::*;

/// A client program, found or the test fails (never skips) saying how to get it.
fn require(program: &str) -> PathBuf {
    let found = if program.starts_with('/') {
        Some(PathBuf::from(program)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
    };
    found.unwrap_or_else(|| {
        panic!(
            "{program} is not installed; tests/stack/stack.sh deps tests installs them \
             (msmtp mutt git-email)"
        )
    })
}

/// An unused loopback port: bound, then released.
fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A temporary HOME holding one ~/.msmtprc (mode 600) as a user of both programs writes it:
/// `smtps` (implicit TLS + AUTH PLAIN), `sub` (STARTTLS + AUTH LOGIN on the submission port),
/// `wrongpw` and `refused` (for the failure cases), and `account default : smtps`.
fn msmtp_home(stack: &common::Stack) -> TempDir {
    let home = TempDir::new("home");
    let text = format!(
        "# one file for msmtp and rsend\n\
         defaults\n\
         tls on\n\
         tls_trust_file {ca}\n\
         auth on\n\
         from alice@localhost\n\
         \n\
         account smtps\n\
         host localhost\n\
         port {smtps}\n\
         tls_starttls off\n\
         user alice\n\
         password alicepw\n\
         \n\
         account sub\n\
         host localhost\n\
         port {sub}\n\
         tls_starttls on\n\
         auth login\n\
         user alice\n\
         password alicepw\n\
         \n\
         account wrongpw : smtps\n\
         password not-the-password\n\
         \n\
         account refused : smtps\n\
         port {refused}\n\
         \n\
         account default : smtps\n",
        ca = stack.ca().display(),
        smtps = stack.port("SMTPS_PORT"),
        sub = stack.port("SUBMISSION_PORT"),
        refused = refused_port(),
    );
    let rc = write_rc(home.path(), &text, 0o600);
    std::fs::rename(&rc, home.path().join(".msmtprc")).expect("rename to .msmtprc");
    home
}

/// A command run as a user whose HOME is `home`, with no controlling terminal (setsid) and no
/// configuration from the environment.
fn as_user(home: &Path, program: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(require("setsid"));
    command
        .arg("--wait")
        .arg(program)
        .args(args)
        .current_dir(home)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("MAIL")
        .env_remove("EMAIL")
        .env_remove("MUTT")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    command
}

/// The same message twice, once through each program.
struct Pair {
    msmtp_marker: String,
    rsend_marker: String,
}

/// The message used for the msmtp/rsend comparison, with `marker` in Subject, Message-ID and
/// body. Date and Message-ID are given, so neither program adds its own.
fn parity_message(marker: &str, to: &str, extra_header: &str) -> String {
    format!(
        "From: Alice <alice@localhost>\n\
         To: {to}\n\
         {extra_header}\
         Subject: parity {marker}\n\
         Date: Mon, 23 Nov 2026 14:00:00 +0000\n\
         Message-ID: <{marker}@postie.test>\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\
         \n\
         Hello, {marker}.\n\
         .\n\
         ..two dots\n\
         .leading dot\n\
         Grüße ✓\n\
         \n\
         -- \n\
         Alice\n"
    )
}

/// Sends the parity message through msmtp and through rsend with the same HOME and arguments;
/// asserts both exit 0.
fn send_with_both(home: &Path, args: &[&str], to: &str, extra_header: &str) -> Pair {
    let msmtp = require("/usr/bin/msmtp");
    let pair = Pair {
        msmtp_marker: unique("msmtp"),
        rsend_marker: unique("rsend"),
    };
    for (program, marker) in [
        (msmtp.as_path(), &pair.msmtp_marker),
        (Path::new(RSEND), &pair.rsend_marker),
    ] {
        let message = parity_message(marker, to, extra_header);
        let out = run_command(as_user(home, program, args), message.as_bytes());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} {args:?}: {}",
            program.display(),
            describe(&out)
        );
    }
    pair
}

/// Both copies arrived in `user`'s Maildir and are identical apart from what Postfix and
/// Dovecot added and the markers.
fn assert_same_delivery(stack: &common::Stack, user: &str, pair: &Pair, case: &str) {
    let dir = maildir(stack, user);
    let by_msmtp = wait_for(&dir, &pair.msmtp_marker);
    let by_rsend = wait_for(&dir, &pair.rsend_marker);
    let a = without_delivery_headers(&by_msmtp, &pair.msmtp_marker);
    let b = without_delivery_headers(&by_rsend, &pair.rsend_marker);
    assert!(
        contains(&a, b"parity MARKER") && contains(&a, "Grüße ✓".as_bytes()),
        "{case} {user}: not the parity message:\n{}",
        show(&a)
    );
    assert_eq!(
        show(&a),
        show(&b),
        "{case} {user}: msmtp's copy (left) and rsend's (right) differ"
    );
    assert_eq!(a, b, "{case} {user}: bytes differ");
    for got in [&by_msmtp, &by_rsend] {
        let (h, _) = split(got);
        assert_eq!(
            header_value(&h, "Return-Path"),
            Some("<alice@localhost>"),
            "{case} {user}: envelope sender\n{}",
            show(got)
        );
        assert!(
            header_value(&h, "Bcc").is_none(),
            "{case} {user}: Bcc kept\n{}",
            show(got)
        );
    }
}

#[test]
fn same_msmtprc_same_delivery_as_msmtp() {
    let stack = common::Stack::get();
    let home = msmtp_home(&stack);
    let home = home.path();

    // Default account (SMTPS), recipients on the command line.
    let pair = send_with_both(
        home,
        &["bob@localhost", "alice@localhost"],
        "Bob <bob@localhost>",
        "",
    );
    for user in ["bob", "alice"] {
        assert_same_delivery(&stack, user, &pair, "command-line recipients");
    }

    // STARTTLS account, recipients from the header with -t; Bcc delivered and removed.
    let pair = send_with_both(
        home,
        &["-a", "sub", "-t"],
        "Alice <alice@localhost>",
        "Bcc: Bob <bob@localhost>\n",
    );
    for user in ["alice", "bob"] {
        assert_same_delivery(&stack, user, &pair, "-a sub -t with Bcc");
    }

    // -t plus an address on the command line: both programs add it to the header's.
    let pair = send_with_both(
        home,
        &["-t", "-i", "bob@localhost"],
        "Alice <alice@localhost>",
        "",
    );
    for user in ["alice", "bob"] {
        assert_same_delivery(&stack, user, &pair, "-t -i with an extra recipient");
    }
}

#[test]
fn same_msmtprc_same_exit_codes_as_msmtp() {
    let stack = common::Stack::get();
    let msmtp = require("/usr/bin/msmtp");
    let home = msmtp_home(&stack);
    let home = home.path();
    let cases: [(&str, &[&str], i32); 4] = [
        ("wrong password", &["-a", "wrongpw", "bob@localhost"], 77),
        ("unknown recipient", &["nobody@localhost"], 65),
        (
            "unknown recipient, STARTTLS",
            &["-a", "sub", "nobody@localhost"],
            65,
        ),
        (
            "connection refused",
            &["-a", "refused", "bob@localhost"],
            75,
        ),
    ];
    for (case, args, expected) in cases {
        let marker = unique("exit");
        let message = format!("From: alice@localhost\nSubject: {marker}\n\nx\n");
        let by_msmtp = run_command(as_user(home, &msmtp, args), message.as_bytes());
        let by_rsend = run_command(as_user(home, Path::new(RSEND), args), message.as_bytes());
        assert_eq!(
            by_msmtp.status.code(),
            Some(expected),
            "{case}: msmtp\n{}",
            describe(&by_msmtp)
        );
        assert_eq!(
            by_rsend.status.code(),
            Some(expected),
            "{case}: rsend (msmtp exits {expected})\n{}",
            describe(&by_rsend)
        );
        assert!(
            !show(&by_rsend.stderr).contains("not-the-password"),
            "{case}: password in stderr"
        );
        assert!(
            !by_rsend.stderr.is_empty(),
            "{case}: rsend failed without a word"
        );
    }
}

/// The sendmail command a client is configured with: rsend reading the stack msmtprc.
fn rsend_cmd(rc: &Path) -> String {
    format!("{RSEND} -C {}", rc.display())
}

#[test]
fn mutt_in_batch_mode_sends_through_rsend() {
    let stack = common::Stack::get();
    let mutt = require("mutt");
    let (home, rc) = good_rc(&stack);
    let home = home.path();
    let muttrc = home.join("muttrc");
    std::fs::write(
        &muttrc,
        format!(
            "set sendmail=\"{}\"\n\
             set from=\"Alice <alice@localhost>\"\n\
             set use_from=yes\n\
             set use_envelope_from=yes\n\
             set record=\"\"\n\
             set copy=no\n\
             set hostname=\"localhost\"\n\
             set folder=\"{home}/Mail\"\n\
             set spoolfile=\"{home}/Mail/inbox\"\n\
             set charset=\"utf-8\"\n",
            rsend_cmd(&rc),
            home = home.display(),
        ),
    )
    .expect("write muttrc");
    let marker = unique("mutt");
    let subject = format!("subject {marker}");
    let body = "Hello from mutt.\n.\n..two dots\nlast line\n";
    let body_file = home.join("body.txt");
    std::fs::write(&body_file, body).expect("write body");
    let mut command = as_user(
        home,
        &mutt,
        &[
            "-F",
            muttrc.to_str().expect("utf-8 path"),
            "-s",
            &subject,
            "--",
            "bob@localhost",
        ],
    );
    command.stdin(std::fs::File::open(&body_file).expect("open body"));
    let out = command.output().expect("run mutt");
    assert_eq!(out.status.code(), Some(0), "mutt: {}", describe(&out));
    let got = wait_for(&maildir(&stack, "bob"), &marker);
    let (h, got_body) = split(&got);
    assert_eq!(
        header_value(&h, "Subject"),
        Some(subject.as_str()),
        "{}",
        show(&got)
    );
    assert_eq!(
        header_value(&h, "From"),
        Some("Alice <alice@localhost>"),
        "{}",
        show(&got)
    );
    assert_eq!(
        header_value(&h, "Return-Path"),
        Some("<alice@localhost>"),
        "{}",
        show(&got)
    );
    assert_eq!(
        show(&got_body),
        body,
        "mutt's body changed:\n{}",
        show(&got)
    );
}

fn git(home: &Path, repo: &Path, args: &[&str]) -> Output {
    let mut command = as_user(home, &require("git"), args);
    command
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "Alice")
        .env("GIT_AUTHOR_EMAIL", "alice@localhost")
        .env("GIT_COMMITTER_NAME", "Alice")
        .env("GIT_COMMITTER_EMAIL", "alice@localhost");
    let out = run_command(command, b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "git {args:?}: {}",
        describe(&out)
    );
    out
}

#[test]
fn git_send_email_sends_a_patch_through_rsend() {
    let stack = common::Stack::get();
    require("git");
    let (home, rc) = good_rc(&stack);
    let home = home.path();
    let repo = home.join("repo");
    std::fs::create_dir(&repo).expect("mkdir repo");
    let marker = unique("git");
    git(home, &repo, &["init", "-q", "."]);
    std::fs::write(repo.join("hello.txt"), format!("hello {marker}\n.\n")).expect("write");
    git(home, &repo, &["add", "hello.txt"]);
    git(
        home,
        &repo,
        &["commit", "-q", "-m", &format!("add hello {marker}")],
    );
    let out = git(home, &repo, &["format-patch", "-1", "-o", "patches"]);
    let patch = show(&out.stdout).trim().to_string();
    assert!(patch.ends_with(".patch"), "format-patch said: {patch}");
    // git send-email refuses addresses whose domain has no dot ("unable to extract a valid
    // address from: bob@localhost") and then exits 0 without sending, so the test uses the
    // stack's other local domain, localhost.localdomain.
    let out = git(
        home,
        &repo,
        &[
            "send-email",
            &format!("--sendmail-cmd={}", rsend_cmd(&rc)),
            "--to=bob@localhost.localdomain",
            "--from=Alice <alice@localhost.localdomain>",
            "--suppress-cc=all",
            "--confirm=never",
            "--no-annotate",
            "--no-thread",
            &patch,
        ],
    );
    assert!(
        show(&out.stdout).contains("Result: OK"),
        "git send-email: {}",
        describe(&out)
    );
    let got = wait_for(&maildir(&stack, "bob"), &marker);
    let (h, body) = split(&got);
    assert_eq!(
        header_value(&h, "Subject"),
        Some(format!("[PATCH] add hello {marker}").as_str()),
        "{}",
        show(&got)
    );
    assert_eq!(
        header_value(&h, "Return-Path"),
        Some("<alice@localhost>"),
        "{}",
        show(&got)
    );
    let body = show(&body);
    assert!(
        body.contains(&format!("+hello {marker}\n+.\n")),
        "the diff did not arrive intact:\n{}",
        show(&got)
    );
}

/// A message of about `size` bytes: a text part with dot lines at every offset, a base64
/// attachment (76-character lines), and dot lines again after it.
fn big_message(marker: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Alice <alice@localhost>\n\
         To: Bob <bob@localhost>\n\
         Subject: big {marker}\n\
         Date: Mon, 23 Nov 2026 14:00:00 +0000\n\
         Message-ID: <{marker}@postie.test>\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b-{marker}\"\n\
         \n\
         --b-{marker}\n\
         Content-Type: text/plain; charset=us-ascii\n\
         \n"
    )
    .into_bytes();
    let dot_lines = |m: &mut Vec<u8>| {
        for i in 0..2000 {
            let dots = ".".repeat(1 + i % 4);
            m.extend_from_slice(format!("{dots}{}\n", "x".repeat(i % 97)).as_bytes());
        }
        m.extend_from_slice(b".\n..\n");
    };
    dot_lines(&mut m);
    m.extend_from_slice(
        format!(
            "--b-{marker}\n\
             Content-Type: application/octet-stream\n\
             Content-Transfer-Encoding: base64\n\
             Content-Disposition: attachment; filename=\"big.bin\"\n\
             \n"
        )
        .as_bytes(),
    );
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while m.len() < size {
        for _ in 0..76 {
            // xorshift: cheap pseudo-random base64 text
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            m.push(ALPHABET[(state % 64) as usize]);
        }
        m.push(b'\n');
    }
    m.extend_from_slice(format!("--b-{marker}\nContent-Type: text/plain\n\n").as_bytes());
    dot_lines(&mut m);
    m.extend_from_slice(format!("--b-{marker}--\n").as_bytes());
    m
}

#[test]
fn ten_megabytes_arrive_byte_identical() {
    let stack = common::Stack::get();
    let (_dir, rc) = good_rc(&stack);
    let marker = unique("big");
    let message = big_message(&marker, 10 * 1024 * 1024);
    let out = rsend(
        &["-C", rc.to_str().expect("utf-8 path"), "bob@localhost"],
        &message,
    );
    assert_exit(&out, 0);
    let dir = maildir(&stack, "bob");
    let got = wait_for(&dir, &marker);
    let got = without_delivery_headers(&got, &marker);
    let sent = replace_all(&message, marker.as_bytes(), b"MARKER");
    if got != sent {
        let at = got
            .iter()
            .zip(&sent)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(sent.len()));
        let from = at.saturating_sub(200);
        panic!(
            "10 MB message changed: {} bytes arrived, {} sent; first difference at {at}:\n\
             arrived: {:?}\nsent:    {:?}",
            got.len(),
            sent.len(),
            show(&got[from..(at + 200).min(got.len())]),
            show(&sent[from..(at + 200).min(sent.len())]),
        );
    }
    // Keep bob's Maildir small for the other tests, which read every message in it.
    for (path, _) in find_message_files(&dir, &marker) {
        let _ = std::fs::remove_file(path);
    }
}
