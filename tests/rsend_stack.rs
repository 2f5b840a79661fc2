//! The rsend binary end to end: messages submitted through Postfix's implicit-TLS port and its
//! STARTTLS submission port land in bob's (and alice's) Dovecot Maildir as written; the sendmail
//! flags real callers pass work; exit codes follow sysexits (issue 3). Hostile scripted servers
//! are in rsend_scripted.rs, other clients (msmtp, mutt, git send-email) in rsend_clients.rs.
//! Run with POSTIE_STACK_DIR=<stack dir>.

mod common;

use std::time::{Duration, Instant};

use common::rsend::*;

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
    let unused = common::closed_port();
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
    // The hint comes from the recorded cause (plaintext answer to a TLS hello), not the wording.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not TLS") && err.contains("port and TLS mode disagree"),
        "{err}"
    );
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

/// msmtp's deprecated SHA-1 and MD5 `tls_fingerprint`s pin the server too: the message goes
/// through with a warning that gives the SHA-256 to pin instead; a wrong one is refused.
#[test]
fn sha1_and_md5_tls_fingerprints_pin_the_server_with_a_warning() {
    let stack = common::Stack::get();
    let cert = stack.dir.join("tls/server.crt");
    let sha256 = stack.var("STACK_SERVER_SHA256").to_owned();
    for (digest, algorithm) in [("-sha1", "SHA-1"), ("-md5", "MD5")] {
        let o = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", digest, "-in"])
            .arg(&cert)
            .output()
            .expect("run openssl");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let fp = text
            .trim()
            .rsplit('=')
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut wrong = fp.clone();
        wrong.replace_range(0..2, if fp.starts_with("00") { "11" } else { "00" });
        for (pin, good) in [(&fp, true), (&wrong, false)] {
            let dir = TempDir::new("legacy-fp");
            let rc = write_rc(
                dir.path(),
                &format!(
                    "account default\nhost localhost\nport {}\ntls on\ntls_starttls off\n\
                     tls_fingerprint {pin}\nauth on\nuser alice\npassword alicepw\n\
                     from alice@localhost\n",
                    stack.port("SMTPS_PORT")
                ),
                0o600,
            );
            let marker = unique("legacyfp");
            let out = rsend(
                &["-C", rc.to_str().expect("utf-8"), "bob@localhost"],
                format!("Subject: {marker}\n\nbody\n").as_bytes(),
            );
            let err = show(&out.stderr);
            assert!(
                err.contains(&format!(
                    "tls_fingerprint is {algorithm}, a digest that can be forged"
                )),
                "{algorithm}: warned when read: {err}"
            );
            if good {
                assert_exit(&out, 0);
                assert!(
                    err.contains(&format!("pin its SHA-256 instead: \"{sha256}\"")),
                    "{algorithm}: the SHA-256 to pin: {err}"
                );
                wait_for(&maildir(&stack, "bob"), &marker);
            } else {
                assert_ne!(out.status.code(), Some(0), "{algorithm}: {err}");
                assert!(err.contains("fingerprint mismatch"), "{algorithm}: {err}");
            }
        }
    }
}
