//! rfetch driven by a fetchmailrc on the real stack: an `mda` poll end to end, LMTP
//! forwarding into alice's mailbox (`is alice here`), a multidrop mailbox sorted over LMTP
//! into alice's and bob's (envelope header, To/Cc, postmaster), rc permission (exit 6) and syntax
//! (exit 5 naming file:line) errors, unknown poll names (exit 5).

mod common;
use common::rfetch::*;
use std::path::{Path, PathBuf};

use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn write_rc(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let p = dir.join("fetchmailrc");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn poll_line(s: &common::Stack) -> String {
    format!(
        "poll 127.0.0.1 proto pop3 port {} user bob password bobpw ssl sslcertfile \"{}\" sslcommonname localhost",
        s.port("POP3S_PORT"),
        s.ca().display()
    )
}

#[test]
fn mda_poll_end_to_end() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("rc-mda");
    clear_bob(&s);
    for i in 0..3 {
        put_bob(
            &s,
            &dir,
            &format!("m{i}"),
            format!("From: a@x\nSubject: {i}\nMessage-ID: <rc{i}@t>\n\nbody {i}\n").as_bytes(),
        );
    }
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let rc = write_rc(
        &dir,
        &format!(
            "set idfile \"{}/ids\"\n{} is carl here\n  mda \"cat > {}/$$-%T\"\n",
            dir.display(),
            poll_line(&s),
            out.display()
        ),
        0o600,
    );
    let o = rfetch(&dir, &["-v", "-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // Other test binaries may use bob's mailbox too: look for ours.
    assert!(names.len() >= 3, "{names:?}");
    assert!(
        names.iter().all(|n| n.ends_with("-carl")),
        "%T is the local name: {names:?}"
    );
    let bodies: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| String::from_utf8_lossy(&std::fs::read(e.unwrap().path()).unwrap()).into_owned())
        .collect();
    for i in 0..3 {
        assert!(
            bodies.iter().any(|b| b.contains(&format!("<rc{i}@t>"))),
            "rc{i} delivered"
        );
    }
    assert_eq!(server_count(&s), 0);
    // -V describes the poll, --configdump renders the rc.
    let o = rfetch(&dir, &["-V", "-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("bob@127.0.0.1"));
    let o = rfetch(&dir, &["--configdump", "-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("poll"));
    // A server in no poll is polled with the command-line options, as fetchmail does: here
    // without a password for it (exit 3), and never with the rc's polls.
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap(), "no.such.server"]);
    assert_eq!(code(&o), 3, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no.such.server"));
}

#[test]
fn lmtp_forwarding_into_alice() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("rc-lmtp");
    clear_bob(&s);
    let tag = format!("lmtp{}", std::process::id());
    put_bob(
        &s,
        &dir,
        "m",
        format!("From: a@x\nSubject: lmtp\nMessage-ID: <{tag}@t>\n\nvia lmtp\n").as_bytes(),
    );
    let rc = write_rc(
        &dir,
        &format!(
            "{} is alice here\n  lmtp smtphost 127.0.0.1/{}\n",
            poll_line(&s),
            s.port("LMTP_PORT")
        ),
        0o600,
    );
    let o = rfetch(&dir, &["-v", "-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server_count(&s), 0);
    let alice = PathBuf::from(s.var("STACK_MAILDIR1"));
    let found = ["new", "cur"]
        .iter()
        .flat_map(|d| std::fs::read_dir(alice.join(d)).into_iter().flatten())
        .any(|e| {
            std::fs::read(e.unwrap().path())
                .map(|b| String::from_utf8_lossy(&b).contains(&tag))
                .unwrap_or(false)
        });
    assert!(found, "message {tag} in alice's Maildir");
}

#[test]
fn multidrop_sorts_each_message_to_its_users_over_lmtp() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("rc-multidrop");
    clear_bob(&s);
    let tag = format!("md{}", std::process::id());
    let messages = [
        (
            "to-alice",
            "X-Original-To: alice@localhost\nTo: list@example.org\n",
        ),
        (
            "to-bob",
            "X-Original-To: bob@localhost\nTo: alice@localhost\n",
        ),
        (
            "to-both",
            "To: Alice <alice@localhost>, bob@localhost, x@elsewhere.net\n",
        ),
        ("to-nobody", "X-Original-To: stranger@elsewhere.net\n"),
    ];
    for (name, head) in messages {
        put_bob(
            &s,
            &dir,
            name,
            format!("From: a@x\n{head}Subject: {tag} {name}\n\nfor {name}\n").as_bytes(),
        );
    }
    let rc = write_rc(
        &dir,
        &format!(
            "set postmaster \"alice\"\n\
             poll 127.0.0.1 proto pop3 port {} localdomains localhost envelope X-Original-To\n  \
             user bob password bobpw ssl sslcertfile \"{}\" sslcommonname localhost\n  \
             is alice bob here lmtp smtphost 127.0.0.1/{} smtpaddress localhost\n",
            s.port("POP3S_PORT"),
            s.ca().display(),
            s.port("LMTP_PORT")
        ),
        0o600,
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        !err.contains("not supported"),
        "every keyword used is implemented: {err}"
    );
    let v = rfetch(&dir, &["-V", "-f", rc.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("Multidrop: local names alice bob"),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
    // Which of our messages each mailbox holds now (bob's originals were deleted at QUIT; what
    // bob has is what rfetch delivered to him).
    let holds = |maildir: &str| -> Vec<(String, String)> {
        let root = PathBuf::from(s.var(maildir));
        let mut got: Vec<(String, String)> = ["new", "cur"]
            .iter()
            .flat_map(|d| std::fs::read_dir(root.join(d)).into_iter().flatten())
            .filter_map(|e| {
                let text =
                    String::from_utf8_lossy(&std::fs::read(e.unwrap().path()).ok()?).into_owned();
                let at = text.find(&format!("Subject: {tag} "))? + tag.len() + 10;
                let name = text[at..].split_whitespace().next()?.to_owned();
                Some((name, text))
            })
            .collect();
        got.sort();
        got
    };
    let alice = holds("STACK_MAILDIR1");
    let bob = holds("STACK_MAILDIR2");
    let names = |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&alice), ["to-alice", "to-both", "to-nobody"], "{err}");
    assert_eq!(names(&bob), ["to-bob", "to-both"], "{err}");
    let nobody = &alice.iter().find(|(n, _)| n == "to-nobody").unwrap().1;
    assert!(
        nobody.contains("X-Fetchmail-Warning: no recipient addresses matched declared local names"),
        "{nobody}"
    );
    assert!(nobody.contains("(by default)"), "{nobody}");
    let to_alice = &alice.iter().find(|(n, _)| n == "to-alice").unwrap().1;
    assert!(
        to_alice.contains("for <alice@localhost> (multi-drop)"),
        "{to_alice}"
    );
    // MAIL FROM is the message's sender (Dovecot's LMTP records it as Return-Path).
    assert!(to_alice.starts_with("Return-Path: <a@x>"), "{to_alice}");
    clear_bob(&s);
}

#[test]
fn multidrop_with_an_mda_names_every_user_in_percent_t() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let dir = tempdir("rc-multidrop-mda");
    clear_bob(&s);
    put_bob(
        &s,
        &dir,
        "one",
        b"From: a@x\nX-Original-To: alice@localhost\nSubject: one\n\n1\n",
    );
    put_bob(
        &s,
        &dir,
        "two",
        b"From: a@x\nTo: alice@localhost, Bob <bob@localhost>\nSubject: two\n\n2\n",
    );
    let log = dir.join("rcpts");
    let rc = write_rc(
        &dir,
        &format!(
            "poll 127.0.0.1 proto pop3 port {} localdomains localhost envelope X-Original-To\n  \
             user bob password bobpw ssl sslcertfile \"{}\" sslcommonname localhost\n  \
             is alice bob here mda \"echo %T >> {}; cat >/dev/null\"\n",
            s.port("POP3S_PORT"),
            s.ca().display(),
            log.display()
        ),
        0o600,
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines, "alice\nalice bob\n");
    assert_eq!(server_count(&s), 0);
}

#[test]
fn rc_errors_have_fetchmail_exit_codes() {
    let s = common::Stack::get();
    let dir = tempdir("rc-errors");
    let rc = write_rc(&dir, &format!("{}\n", poll_line(&s)), 0o644);
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 6, "{}", String::from_utf8_lossy(&o.stderr));
    let rc = write_rc(
        &dir,
        "poll example.org proto pop3\n  user bob frobnicate yes\n",
        0o600,
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 5, "{err}");
    assert!(
        err.contains(&format!("{}:2", rc.display())),
        "names file:line: {err}"
    );
    let o = rfetch(&dir, &["--bogus-option"]);
    assert_eq!(code(&o), 5);
}
