//! rfetch end to end against faults, with the delivery contract as the oracle: a POP3 server that
//! drops the connection in the middle of a message of the second batch (while the first batch is
//! still being made durable on its own thread), and an SMTP target that answers 451. Each time
//! the affected messages must stay on the server (no DELE for them, no QUIT to commit anything
//! after the drop) and the next poll must deliver every message exactly once.

mod common;
use common::pop3_mailbox::{self, Faults};
use common::recorder::Relay;
use common::rfetch::*;
use std::path::Path;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use postie::fetch::poll::BATCH;

/// Messages on the scripted POP3 server: more than two batches.
const MESSAGES: usize = 2 * BATCH + 50;
/// The first session cuts the connection in the middle of this message (second batch).
const CUT_AT: usize = BATCH + BATCH / 2;

fn message(n: usize) -> String {
    format!(
        "From: a@example.org\r\nTo: bob@example.org\r\nSubject: fault test {n}\r\n\r\nbody of message {n}\r\n.. dot line {n}\r\n"
    )
}

fn subjects(md: &Path) -> Vec<usize> {
    let mut v: Vec<usize> = maildir_messages(md)
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(m);
            let at = text.find("Subject: fault test ").expect("subject") + 20;
            text[at..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    v.sort_unstable();
    v
}

fn commands<'a>(session: &'a [String], verb: &str) -> Vec<&'a str> {
    session
        .iter()
        .filter(|c| c.to_ascii_uppercase().starts_with(verb))
        .map(|c| c.as_str())
        .collect()
}

#[test]
fn pop3_connection_cut_mid_message_keeps_every_message_for_the_next_poll() {
    let dir = tempdir("cut");
    let md = dir.join("Maildir");
    let server = pop3_mailbox::serve(
        pop3_mailbox::mailbox((1..=MESSAGES).map(message)),
        Faults {
            pipelining: true,
            cut_at: Some(CUT_AT),
            ..Faults::default()
        },
    );
    let (port, sessions) = (server.port, server.sessions);
    let cfg = scripted_pop3_config(&dir, port, 10, &format!("maildir = \"{}\"", md.display()));
    let args = ["-C", cfg.to_str().unwrap(), "--danger-plaintext-auth"];

    let first = rfetch(&dir, &args);
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    // fetchmail's rule: a poll that delivered some mail exits 0; the error is still reported.
    assert_eq!(code(&first), 0, "{err}");
    assert!(err.contains("connection lost while fetching"), "{err}");
    // Everything complete before the cut is delivered once; the cut message is not.
    let got = subjects(&md);
    assert_eq!(got, (1..CUT_AT).collect::<Vec<_>>(), "{err}");
    // Nothing was committed on the server: the session died before QUIT.
    {
        let s = sessions.lock().unwrap();
        assert_eq!(s.len(), 1);
        assert!(commands(&s[0], "QUIT").is_empty(), "{:?}", s[0]);
    }

    let second = rfetch(&dir, &args);
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(code(&second), 0, "{err}");
    assert_eq!(
        subjects(&md),
        (1..=MESSAGES).collect::<Vec<_>>(),
        "each message exactly once"
    );
    let s = sessions.lock().unwrap();
    assert_eq!(s.len(), 3, "{s:?}");
    // The second poll first commits the deletion of what the first delivered (DELE, QUIT),
    // fetching nothing; then a new session fetches only what the first did not deliver.
    assert!(commands(&s[1], "RETR").is_empty(), "{:?}", s[1]);
    assert_eq!(commands(&s[1], "DELE").len(), CUT_AT - 1, "{:?}", s[1]);
    assert_eq!(commands(&s[1], "QUIT").len(), 1);
    let retr = commands(&s[2], "RETR");
    assert_eq!(retr.len(), MESSAGES - (CUT_AT - 1), "{retr:?}");
    assert_eq!(
        retr.first().copied(),
        Some(format!("RETR {CUT_AT}").as_str())
    );
    // The server removed the first session's deliveries at the second session's QUIT: the
    // third session deletes exactly what it fetched.
    assert_eq!(commands(&s[2], "DELE").len(), MESSAGES - (CUT_AT - 1));
    assert_eq!(commands(&s[2], "QUIT").len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server that answers +OK to DELE and QUIT but keeps the messages: the poll after a cut
/// runs its backlog session (DELE + QUIT of what was delivered) once, then fetches the rest in a
/// new session, and ends; it does not reconnect again and again to delete what stays.
#[test]
fn a_server_that_keeps_deleted_messages_gets_one_backlog_session_per_poll() {
    let dir = tempdir("keeps");
    let md = dir.join("Maildir");
    let server = pop3_mailbox::serve(
        pop3_mailbox::mailbox((1..=MESSAGES).map(message)),
        Faults {
            pipelining: true,
            cut_at: Some(CUT_AT),
            keeps_deleted: true,
            ..Faults::default()
        },
    );
    let (port, sessions) = (server.port, server.sessions);
    let cfg = scripted_pop3_config(&dir, port, 10, &format!("maildir = \"{}\"", md.display()));
    let args = ["-C", cfg.to_str().unwrap(), "--danger-plaintext-auth"];
    let first = rfetch(&dir, &args);
    assert_eq!(
        code(&first),
        0,
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = rfetch(&dir, &args);
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(code(&second), 0, "{err}");
    assert_eq!(
        subjects(&md),
        (1..=MESSAGES).collect::<Vec<_>>(),
        "each message once"
    );
    let s = sessions.lock().unwrap();
    assert_eq!(s.len(), 3, "cut, backlog, the rest: {s:?}");
    assert!(commands(&s[1], "RETR").is_empty(), "{:?}", s[1]);
    assert_eq!(commands(&s[1], "DELE").len(), CUT_AT - 1);
    assert_eq!(
        commands(&s[2], "RETR").len(),
        MESSAGES - (CUT_AT - 1),
        "only what was not delivered is fetched"
    );
    // The kept messages are deleted again with the rest, in the same session.
    assert_eq!(commands(&s[2], "DELE").len(), MESSAGES);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smtp_target_451_leaves_the_messages_for_the_next_poll() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let dir = tempdir("smtp451");
    let tag = format!("smtp451-{}", std::process::id());
    for i in 0..3 {
        put_bob(
            &s,
            &dir,
            &format!("m{i}"),
            format!("From: a@x\nTo: bob@localhost\nSubject: {tag} {i}\n\nbody {i}\n").as_bytes(),
        );
    }
    let busy_relay = Relay::always("451 4.3.0 try again later");
    let busy = busy_relay.port;
    let cfg = toml_config(
        &s,
        &dir,
        "pop3",
        "implicit",
        &format!("smtp = \"127.0.0.1:{busy}\""),
        "",
    );
    let first = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert_ne!(code(&first), 0, "{err}");
    assert!(err.contains("temporary failure"), "{err}");
    assert!(busy_relay.accepted().is_empty());
    assert_eq!(
        server_count(&s),
        3,
        "451 leaves every message on the server: {err}"
    );

    let ok_relay = Relay::always("250 2.1.5 ok");
    let ok = ok_relay.port;
    let cfg = toml_config(
        &s,
        &dir,
        "pop3",
        "implicit",
        &format!("smtp = \"127.0.0.1:{ok}\""),
        "",
    );
    let second = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(code(&second), 0, "{err}");
    let got: Vec<String> = ok_relay
        .accepted()
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(got.len(), 3, "{err}");
    for i in 0..3 {
        let subject = format!("Subject: {tag} {i}");
        assert_eq!(
            got.iter().filter(|m| m.contains(&subject)).count(),
            1,
            "{subject}"
        );
    }
    assert_eq!(server_count(&s), 0, "delivered messages are deleted");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a scripted LMTP/SMTP server received: (recipient, Subject) per copy accepted.
type Accepted = Arc<Mutex<Vec<(String, String)>>>;

/// When the scripted server refuses its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefuseAt {
    Rcpt,
    /// LMTP only: that recipient's reply after the final "." (RFC 2033 §4.2).
    EndOfData,
}

/// A scripted LMTP (or SMTP) server that answers 451 once for `refuse_once` (at RCPT TO, or
/// with LMTP after the final ".") and accepts everything else; with LMTP it answers once per
/// accepted recipient after the final ".", as RFC 2033 says.
fn scripted_lmtp(lmtp: bool, refuse_once: &'static str, at: RefuseAt) -> (u16, Accepted) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted: Accepted = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&accepted);
    let refused = Arc::new(Mutex::new(false));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut sock) = conn else { return };
            let mut reader = BufReader::new(sock.try_clone().expect("clone"));
            let _ = sock.write_all(b"220 scripted\r\n");
            let mut line = String::new();
            let mut rcpts: Vec<String> = Vec::new();
            let mut data: Option<String> = None;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if let Some(body) = data.as_mut() {
                    if line != ".\r\n" {
                        body.push_str(&line);
                        continue;
                    }
                    let subject = body
                        .lines()
                        .find_map(|l| l.strip_prefix("Subject: "))
                        .unwrap_or("")
                        .to_owned();
                    let mut reply = String::new();
                    for r in rcpts.drain(..) {
                        let mut refused = refused.lock().unwrap();
                        if at == RefuseAt::EndOfData && r == refuse_once && !*refused {
                            *refused = true;
                            reply.push_str("451 4.2.0 mailbox locked, try again later\r\n");
                            continue;
                        }
                        store.lock().unwrap().push((r, subject.clone()));
                        reply.push_str("250 2.0.0 delivered\r\n");
                    }
                    if !lmtp {
                        reply = "250 2.0.0 queued\r\n".into();
                    }
                    data = None;
                    if sock.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                    continue;
                }
                let upper = line.to_ascii_uppercase();
                let reply = if upper.starts_with("LHLO") || upper.starts_with("EHLO") {
                    "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n".to_string()
                } else if upper.starts_with("MAIL") {
                    rcpts.clear();
                    "250 2.1.0 ok\r\n".to_string()
                } else if upper.starts_with("RCPT") {
                    let addr = line
                        .split_once('<')
                        .and_then(|(_, rest)| rest.split_once('>'))
                        .map_or(String::new(), |(a, _)| a.to_owned());
                    let mut refused = refused.lock().unwrap();
                    if at == RefuseAt::Rcpt && addr == refuse_once && !*refused {
                        *refused = true;
                        "451 4.2.0 mailbox busy, try again later\r\n".to_string()
                    } else {
                        rcpts.push(addr);
                        "250 2.1.5 ok\r\n".to_string()
                    }
                } else if upper.starts_with("DATA") {
                    data = Some(String::new());
                    "354 go ahead\r\n".to_string()
                } else if upper.starts_with("QUIT") {
                    let _ = sock.write_all(b"221 bye\r\n");
                    break;
                } else {
                    "250 2.0.0 ok\r\n".to_string()
                };
                if sock.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (port, accepted)
}

/// Multidrop forwarding where the target refuses one recipient of a message temporarily (451)
/// and accepts the others: the message stays on the server, the next poll sends it to the
/// refused recipient only, and nobody gets a copy twice. (fetchmail sends such a message again
/// to every recipient, a known source of duplicates.)
fn multidrop_partial_refusal(lmtp: bool, at: RefuseAt) {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let dir = tempdir(if lmtp { "md-lmtp" } else { "md-smtp" });
    let tag = format!("md451-{}", std::process::id());
    for (name, to) in [
        (
            "m1",
            "alice@example.org, bob@example.org, carol@example.org",
        ),
        ("m2", "alice@example.org"),
        ("m3", "bob@example.org, carol@example.org"),
    ] {
        put_bob(
            &s,
            &dir,
            name,
            format!("From: a@elsewhere.net\nTo: {to}\nSubject: {tag} {name}\n\nbody {name}\n")
                .as_bytes(),
        );
    }
    let (target, accepted) = scripted_lmtp(lmtp, "bob@example.org", at);
    let rc = dir.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "poll 127.0.0.1 proto pop3 port {} localdomains example.org no envelope\n  \
             user bob password bobpw ssl sslcertfile \"{}\" sslcommonname localhost\n  \
             is alice bob carol here {}smtphost 127.0.0.1/{target} smtpaddress example.org\n",
            s.port("POP3S_PORT"),
            s.ca().display(),
            if lmtp { "lmtp " } else { "" }
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = ["-f", rc.to_str().unwrap()];
    // Which of our messages each recipient got, in order of Subject.
    let copies = |who: &str| -> Vec<String> {
        let mut v: Vec<String> = accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r == who)
            .filter_map(|(_, subject)| subject.strip_prefix(&format!("{tag} ")).map(str::to_owned))
            .collect();
        v.sort();
        v
    };

    let first = rfetch(&dir, &args);
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert_eq!(code(&first), 0, "{err}");
    assert!(
        err.contains("it will go to the others at the next poll"),
        "{err}"
    );
    assert_eq!(copies("alice@example.org"), ["m1", "m2"], "{err}");
    assert_eq!(copies("bob@example.org"), ["m3"], "{err}");
    assert_eq!(copies("carol@example.org"), ["m1", "m3"], "{err}");
    assert_eq!(server_count(&s), 1, "m1 stays on the server: {err}");

    let second = rfetch(&dir, &args);
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(code(&second), 0, "{err}");
    // Exactly one copy each: m1 went to bob only.
    assert_eq!(copies("alice@example.org"), ["m1", "m2"], "{err}");
    assert_eq!(copies("bob@example.org"), ["m1", "m3"], "{err}");
    assert_eq!(copies("carol@example.org"), ["m1", "m3"], "{err}");
    assert_eq!(server_count(&s), 0, "{err}");
    // The state no longer holds the served recipients of m1.
    let ids = std::fs::read_to_string(dir.join(".fetchids")).unwrap();
    assert!(!ids.contains("-rcpt"), "{ids}");

    let third = rfetch(&dir, &args);
    assert_eq!(
        code(&third),
        1,
        "nothing left: {}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(accepted.lock().unwrap().len(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn multidrop_lmtp_451_for_one_recipient_retries_only_that_recipient() {
    multidrop_partial_refusal(true, RefuseAt::Rcpt);
}

#[test]
fn multidrop_lmtp_451_after_data_for_one_recipient_retries_only_that_recipient() {
    multidrop_partial_refusal(true, RefuseAt::EndOfData);
}

#[test]
fn multidrop_smtp_451_for_one_recipient_retries_only_that_recipient() {
    multidrop_partial_refusal(false, RefuseAt::Rcpt);
}

/// `* seq FETCH` responses with bodies for UIDs `from..=to`.
fn imap_fetches(from: usize, to: usize) -> String {
    (from..=to)
        .map(|n| {
            let m = message(n);
            format!(
                "* {n} FETCH (UID {n} RFC822.SIZE {} FLAGS () BODY[] {{{}}}\r\n{m})\r\n",
                m.len(),
                m.len()
            )
        })
        .collect()
}

#[test]
fn a_store_refused_while_the_next_batch_streams_is_reported_as_a_refusal_and_deletes_nothing() {
    // Three batches (201 messages). The STORE that flags batch 1 goes out behind the UID FETCH
    // of batch 3 (asked for ahead) and the server refuses it before that FETCH completes. The
    // session is fine: the error says the server refused a command, not that the connection
    // was lost; every message is delivered and nothing is flagged or expunged.
    let f = "(UID RFC822.SIZE FLAGS BODY.PEEK[])";
    let search: Vec<String> = (1..=2 * BATCH + 1).map(|n| n.to_string()).collect();
    let text = format!(
        "S: * OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] ready\n\
         C: A0001 LOGIN \"bob\" *\n\
         S: A0001 OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] in\n\
         C: A0002 SELECT \"INBOX\"\n\
         C: A0003 UID SEARCH ALL\n\
         S: * {total} EXISTS\n\
         S: A0002 OK [READ-WRITE] selected\n\
         S: * SEARCH {search}\n\
         S: A0003 OK searched\n\
         C: A0004 UID FETCH 1:{b} {f}\n\
         S= ${{ONE}}\n\
         S: A0004 OK fetched\n\
         C: A0005 UID FETCH {b1}:{b2} {f}\n\
         S= ${{TWO}}\n\
         S: A0005 OK fetched\n\
         C: A0006 UID FETCH {total} {f}\n\
         C: A0007 UID STORE 1:{b} +FLAGS.SILENT (\\Seen \\Deleted)\n\
         S: A0007 NO [CANNOT] not now\n\
         S= ${{THREE}}\n\
         S: A0006 OK fetched\n\
         !eof\n",
        total = 2 * BATCH + 1,
        search = search.join(" "),
        b = BATCH,
        b1 = BATCH + 1,
        b2 = 2 * BATCH,
    );
    let one = imap_fetches(1, BATCH);
    let two = imap_fetches(BATCH + 1, 2 * BATCH);
    let three = imap_fetches(2 * BATCH + 1, 2 * BATCH + 1);
    let server = common::transcript::Transcript::parse_with(
        "store-refused",
        &text,
        &[("ONE", &one), ("TWO", &two), ("THREE", &three)],
    )
    .play();
    let dir = tempdir("store-refused");
    let md = dir.join("Maildir");
    let cfg = scripted_config(
        &dir,
        "imap",
        server.port(),
        10,
        &format!("maildir = \"{}\"", md.display()),
    );
    let o = rfetch(
        &dir,
        &["-C", cfg.to_str().unwrap(), "--danger-plaintext-auth"],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("refused UID STORE"), "{err}");
    assert!(
        err.contains("the server refused a command while fetching"),
        "{err}"
    );
    assert!(!err.contains("connection lost"), "{err}");
    assert_eq!(
        subjects(&md),
        (1..=2 * BATCH + 1).collect::<Vec<_>>(),
        "every message delivered once: {err}"
    );
    // The transcript holds no further STORE and no EXPUNGE before the client closes: the
    // player fails on any.
    server.finish();
}
