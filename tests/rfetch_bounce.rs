//! fetchmail's `softbounce`/`bouncemail` on the real stack: a message the SMTP listener refuses
//! for good (550) stays on the server by default (softbounce); with `set no softbounce` it is
//! reported to its sender (an RFC 3464 report from the null sender), or to the postmaster with
//! `set no bouncemail`, and deleted only once that report was accepted; a report that is refused
//! too leaves the message where it is. Against a scripted listener and the stack's Postfix.

#![allow(dead_code)] // the shared helpers are not all used by every binary

mod common;
include!("rfetch_support.rs.inc");

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

/// One SMTP transaction the scripted listener accepted: MAIL FROM, RCPT TOs, the data.
#[derive(Debug, Clone)]
struct Txn {
    from: String,
    rcpts: Vec<String>,
    data: String,
}

/// A listener that refuses (550 5.1.1) every RCPT whose address `refuse` names and accepts the
/// rest; it records each transaction that reached the end of its data. Each connection is
/// served on its own thread, as by a real MTA: a report goes out on a second connection while
/// the delivery session is still open.
fn scripted_smtp(refuse: fn(&str) -> bool) -> (u16, Arc<Mutex<Vec<Txn>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(sock) = conn else { return };
            let store = Arc::clone(&store);
            std::thread::spawn(move || serve_smtp(sock, refuse, &store));
        }
    });
    (port, accepted)
}

/// One session of [`scripted_smtp`].
fn serve_smtp(mut sock: std::net::TcpStream, refuse: fn(&str) -> bool, store: &Mutex<Vec<Txn>>) {
    let mut reader = BufReader::new(sock.try_clone().expect("clone"));
    let _ = sock.write_all(b"220 scripted ESMTP\r\n");
    let mut line = String::new();
    let mut txn = Txn {
        from: String::new(),
        rcpts: Vec::new(),
        data: String::new(),
    };
    let mut in_data = false;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if in_data {
            if line == ".\r\n" {
                store.lock().unwrap().push(txn.clone());
                in_data = false;
                let _ = sock.write_all(b"250 2.0.0 queued\r\n");
            } else {
                txn.data.push_str(&line);
            }
            continue;
        }
        let upper = line.to_ascii_uppercase();
        let arg = |l: &str| {
            l.split_once('<')
                .and_then(|(_, r)| r.split_once('>'))
                .map(|(a, _)| a.to_owned())
                .unwrap_or_default()
        };
        let reply = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250-scripted\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL") {
            txn = Txn {
                from: arg(&line),
                rcpts: Vec::new(),
                data: String::new(),
            };
            "250 2.1.0 ok\r\n"
        } else if upper.starts_with("RCPT") {
            let a = arg(&line);
            if refuse(&a) {
                "550 5.1.1 no such user here\r\n"
            } else {
                txn.rcpts.push(a);
                "250 2.1.5 ok\r\n"
            }
        } else if upper.starts_with("DATA") {
            if txn.rcpts.is_empty() {
                "554 5.5.1 no valid recipients\r\n"
            } else {
                in_data = true;
                "354 go ahead\r\n"
            }
        } else if upper.starts_with("QUIT") {
            let _ = sock.write_all(b"221 bye\r\n");
            break;
        } else {
            "250 2.0.0 ok\r\n"
        };
        if sock.write_all(reply.as_bytes()).is_err() {
            break;
        }
    }
}

fn write_rc(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("fetchmailrc");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn rc_text(s: &common::Stack, dir: &Path, globals: &str, smtp: &str, extra: &str) -> String {
    format!(
        "set idfile \"{d}/ids\"\n{globals}\
         poll 127.0.0.1 proto pop3 port {pop3s} user bob is bob here password bobpw ssl sslcertfile \"{ca}\" \
         sslcommonname localhost smtphost {smtp} {extra}\n",
        d = dir.display(),
        pop3s = s.port("POP3S_PORT"),
        ca = s.ca().display(),
    )
}

fn seed(s: &common::Stack, dir: &Path, tag: &str, from: &str) {
    clear_bob(s);
    put_bob(
        s,
        dir,
        "m",
        format!(
            "Return-Path: <{from}>\nFrom: {from}\nSubject: {tag}\nMessage-ID: <{tag}@t>\n\nbody {tag}\n"
        )
        .as_bytes(),
    );
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn refuse_bob(a: &str) -> bool {
    a == "bob@localhost"
}

fn refuse_all(_: &str) -> bool {
    true
}

#[test]
fn a_permanent_refusal_is_kept_by_default_and_reported_with_no_softbounce() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    let dir = tempdir("bounce");
    let (port, got) = scripted_smtp(refuse_bob);
    let smtp = format!("127.0.0.1/{port}");

    // softbounce (the default, also written out): the refused message stays, nothing is sent.
    seed(&s, &dir, "kept", "a@x.org");
    for globals in ["", "set softbounce\n"] {
        let rc = write_rc(&dir, &rc_text(&s, &dir, globals, &smtp, ""));
        let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
        assert_ne!(code(&o), 0, "{}", stderr(&o));
        assert!(stderr(&o).contains("permanent failure"), "{}", stderr(&o));
        assert_eq!(server_count(&s), 1, "softbounce keeps it");
        assert!(got.lock().unwrap().is_empty());
    }

    // no softbounce: a report to the sender from <>, then the message is deleted.
    let rc = write_rc(&dir, &rc_text(&s, &dir, "set no softbounce\n", &smtp, ""));
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("refused permanently by smtp://")
            && stderr(&o).contains("reported to <a@x.org>"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server_count(&s), 0, "reported, so deleted: {}", stderr(&o));
    let txns = got.lock().unwrap().clone();
    assert_eq!(txns.len(), 1, "{txns:?}");
    let report = &txns[0];
    assert_eq!(report.from, "", "reports come from the null sender");
    assert_eq!(report.rcpts, ["a@x.org"]);
    for part in [
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Content-Type: message/delivery-status\r\n",
        "Final-Recipient: rfc822; bob@localhost\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        "Diagnostic-Code: smtp; ",
        "Content-Type: text/rfc822-headers\r\n",
        "Subject: kept\r\n",
    ] {
        assert!(report.data.contains(part), "{part}: {}", report.data);
    }
    assert!(!report.data.contains("body kept"), "the header only");

    // set no bouncemail: to the postmaster instead of the sender (--postmaster beats the rc).
    got.lock().unwrap().clear();
    seed(&s, &dir, "pm", "a@x.org");
    let rc = write_rc(
        &dir,
        &rc_text(
            &s,
            &dir,
            "set no softbounce\nset no bouncemail\nset postmaster pm@example.org\n",
            &smtp,
            "",
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(server_count(&s), 0, "{}", stderr(&o));
    assert_eq!(got.lock().unwrap()[0].rcpts, ["pm@example.org"]);
    got.lock().unwrap().clear();
    seed(&s, &dir, "pm2", "a@x.org");
    let rc = write_rc(&dir, &rc_text(&s, &dir, "", &smtp, ""));
    let o = rfetch(
        &dir,
        &[
            "-f",
            rc.to_str().unwrap(),
            "--nosoftbounce",
            "--nobounce",
            "--postmaster",
            "boss@example.org",
        ],
    );
    assert_eq!(server_count(&s), 0, "{}", stderr(&o));
    assert_eq!(got.lock().unwrap()[0].rcpts, ["boss@example.org"]);
    // A message from the null sender (a bounce itself) is never bounced to it.
    got.lock().unwrap().clear();
    clear_bob(&s);
    put_bob(
        &s,
        &dir,
        "m",
        b"Return-Path: <>\nFrom: MAILER-DAEMON@x.org\nSubject: b\n\nbody\n",
    );
    let rc = write_rc(
        &dir,
        &rc_text(
            &s,
            &dir,
            "set no softbounce\nset postmaster pm\n",
            &smtp,
            "",
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(server_count(&s), 0, "{}", stderr(&o));
    assert_eq!(got.lock().unwrap()[0].rcpts, ["pm@localhost"]);
}

/// fetchmail deletes a refused message with `no softbounce` even when its bounce could not be
/// sent (silent loss); rfetch keeps it.
#[test]
fn a_refused_report_keeps_the_message() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    let dir = tempdir("bounce-refused");
    let (port, got) = scripted_smtp(refuse_all);
    seed(&s, &dir, "lost", "a@x.org");
    let rc = write_rc(
        &dir,
        &rc_text(
            &s,
            &dir,
            "set no softbounce\n",
            &format!("127.0.0.1/{port}"),
            "",
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains("the report of the refusal was not sent"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server_count(&s), 1, "nothing is lost");
    assert!(got.lock().unwrap().is_empty());
    // Nobody to report to (`set postmaster ""` with no bouncemail): kept as well.
    let rc = write_rc(
        &dir,
        &rc_text(
            &s,
            &dir,
            "set no softbounce\nset no bouncemail\nset postmaster \"\"\n",
            &format!("127.0.0.1/{port}"),
            "",
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert!(stderr(&o).contains("nobody to report to"), "{}", stderr(&o));
    assert_eq!(server_count(&s), 1);
}

/// The real Postfix refuses an unknown local user (550 5.1.1); the report goes back through it
/// to the sender, alice, and lands in her mailbox; bob's message is then deleted.
#[test]
fn postfix_refusal_is_reported_to_the_sender() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    let dir = tempdir("bounce-postfix");
    let tag = format!("pfx-bounce-{}", std::process::id());
    seed(&s, &dir, &tag, "alice@localhost");
    let alice = PathBuf::from(s.var("STACK_MAILDIR1"));
    let rc = write_rc(
        &dir,
        &rc_text(
            &s,
            &dir,
            "set no softbounce\n",
            &format!("127.0.0.1/{}", s.port("SMTP_PORT")),
            "smtpname nosuchuser@localhost",
        ),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("reported to <alice@localhost>"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server_count(&s), 0);
    // Postfix delivers the report to alice asynchronously.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let found = loop {
        let found = ["new", "cur"].iter().any(|d| {
            std::fs::read_dir(alice.join(d))
                .into_iter()
                .flatten()
                .any(|e| {
                    let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
                    text.contains(&format!("Subject: {tag}"))
                        && text.contains("report-type=delivery-status")
                        && text.contains("Final-Recipient: rfc822; nosuchuser@localhost")
                })
        });
        if found || std::time::Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(found, "the report reached alice's mailbox");
}

/// The same over IMAP: the refused message is reported, then flagged and expunged.
#[test]
fn imap_refusal_is_reported_and_expunged() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    let dir = tempdir("bounce-imap");
    let (port, got) = scripted_smtp(refuse_bob);
    seed(&s, &dir, "imap", "a@x.org");
    let text = rc_text(
        &s,
        &dir,
        "set no softbounce\n",
        &format!("127.0.0.1/{port}"),
        "",
    )
    .replace("proto pop3", "proto imap")
    .replace(
        &s.port("POP3S_PORT").to_string(),
        &s.port("IMAPS_PORT").to_string(),
    );
    let rc = write_rc(&dir, &text);
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("reported to <a@x.org>"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server_count(&s), 0, "{}", stderr(&o));
    assert_eq!(got.lock().unwrap()[0].rcpts, ["a@x.org"]);
}

fn refuse_bob_at_example_org(a: &str) -> bool {
    a == "bob@example.org"
}

/// A multidrop poll for alice, bob and carol at example.org, forwarded to `smtp`.
fn multidrop_rc(s: &common::Stack, dir: &Path, globals: &str, smtp: &str) -> PathBuf {
    write_rc(
        dir,
        &format!(
            "set idfile \"{d}/ids\"\n{globals}\
             poll 127.0.0.1 proto pop3 port {pop3s} localdomains example.org no envelope\n  \
             user bob password bobpw ssl sslcertfile \"{ca}\" sslcommonname localhost\n  \
             is alice bob carol here smtphost {smtp} smtpaddress example.org\n",
            d = dir.display(),
            pop3s = s.port("POP3S_PORT"),
            ca = s.ca().display(),
        ),
    )
}

/// Multidrop forwarding where the listener refuses one recipient for good (550) and accepts
/// the others: as for a message with one recipient, the refusal is logged with the recipient
/// and the reply, the poll fails with it, and the message stays on the server (softbounce),
/// retried for the refused recipient only (the others never get a second copy); with
/// `no softbounce` the refusal is reported to the sender, naming only the refused recipient,
/// and the message is then deleted. (It was counted delivered and deleted, the refusal a
/// warning without the reply: the refused recipient's copy was lost.)
#[test]
fn a_multidrop_recipient_refused_for_good_keeps_the_message_or_is_reported() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    let dir = tempdir("bounce-multidrop");
    let (port, got) = scripted_smtp(refuse_bob_at_example_org);
    let smtp = format!("127.0.0.1/{port}");
    clear_bob(&s);
    put_bob(
        &s,
        &dir,
        "m",
        b"Return-Path: <a@x.org>\nFrom: a@x.org\n\
          To: alice@example.org, bob@example.org, carol@example.org\n\
          Subject: md550\nMessage-ID: <md550@t>\n\nbody md550\n",
    );
    let rc = multidrop_rc(&s, &dir, "", &smtp);
    for poll in 1..=2 {
        let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
        let err = stderr(&o);
        assert_ne!(
            code(&o),
            0,
            "poll {poll}: the refusal fails the poll: {err}"
        );
        assert!(
            err.contains("permanent failure")
                && err.contains("bob@example.org")
                && err.contains("550 5.1.1 no such user here"),
            "poll {poll}: the refused recipient and the reply: {err}"
        );
        assert_eq!(
            server_count(&s),
            1,
            "poll {poll}: softbounce keeps it: {err}"
        );
        let txns = got.lock().unwrap().clone();
        assert_eq!(
            txns.len(),
            1,
            "poll {poll}: one copy each for the others: {txns:?}"
        );
        assert_eq!(txns[0].rcpts, ["alice@example.org", "carol@example.org"]);
    }

    // no softbounce: reported to the sender for bob alone, then deleted.
    let rc = multidrop_rc(&s, &dir, "set no softbounce\n", &smtp);
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(
        err.contains("refused permanently") && err.contains("reported to <a@x.org>"),
        "{err}"
    );
    assert_eq!(server_count(&s), 0, "reported, so deleted: {err}");
    let txns = got.lock().unwrap().clone();
    assert_eq!(txns.len(), 2, "{txns:?}");
    let report = &txns[1];
    assert_eq!(
        (report.from.as_str(), &report.rcpts[..]),
        ("", &["a@x.org".to_owned()][..])
    );
    assert!(
        report
            .data
            .contains("Final-Recipient: rfc822; bob@example.org\r\n")
            && !report.data.contains("Final-Recipient: rfc822; alice")
            && !report.data.contains("Final-Recipient: rfc822; carol"),
        "{}",
        report.data
    );

    // With no softbounce from the first poll: delivered to the others and reported at once.
    got.lock().unwrap().clear();
    put_bob(
        &s,
        &dir,
        "m2",
        b"Return-Path: <a@x.org>\nFrom: a@x.org\n\
          To: alice@example.org, bob@example.org, carol@example.org\n\
          Subject: md550b\nMessage-ID: <md550b@t>\n\nbody md550b\n",
    );
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(err.contains("reported to <a@x.org>"), "{err}");
    assert_eq!(server_count(&s), 0, "{err}");
    let txns = got.lock().unwrap().clone();
    assert_eq!(txns.len(), 2, "{txns:?}");
    assert_eq!(txns[0].rcpts, ["alice@example.org", "carol@example.org"]);
    assert_eq!(txns[1].rcpts, ["a@x.org"]);
    assert!(
        txns[1]
            .data
            .contains("Final-Recipient: rfc822; bob@example.org\r\n")
            && !txns[1].data.contains("Final-Recipient: rfc822; alice"),
        "{}",
        txns[1].data
    );
    let _ = std::fs::remove_dir_all(&dir);
}
