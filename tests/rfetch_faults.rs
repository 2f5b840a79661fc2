//! rfetch end to end against faults, with the delivery contract as the oracle: a POP3 server that
//! drops the connection in the middle of a message of the second batch (while the first batch is
//! still being made durable on its own thread), and an SMTP target that answers 451. Each time
//! the affected messages must stay on the server (no DELE for them, no QUIT to commit anything
//! after the drop) and the next poll must deliver every message exactly once.

#![allow(dead_code)] // the shared helpers are not all used by every binary

mod common;
include!("rfetch_support.rs.inc");

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
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

/// What one POP3 session received: its command lines.
type Transcript = Arc<Mutex<Vec<Vec<String>>>>;

/// A plaintext POP3 server for MESSAGES messages (PIPELINING, UIDL). `cut_first` makes the first
/// session send half of message CUT_AT and close the connection.
fn scripted_pop3(cut_first: bool) -> (u16, Transcript) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sessions: Transcript = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&sessions);
    std::thread::spawn(move || {
        for (index, conn) in listener.incoming().enumerate() {
            let Ok(sock) = conn else { return };
            log.lock().unwrap().push(Vec::new());
            let cut = cut_first && index == 0;
            let log = Arc::clone(&log);
            std::thread::spawn(move || pop3_session(sock, cut, index, &log));
        }
    });
    (port, sessions)
}

fn pop3_session(mut sock: TcpStream, cut: bool, index: usize, log: &Transcript) {
    let mut reader = BufReader::new(sock.try_clone().expect("clone"));
    let mut deleted = BTreeSet::new();
    if sock.write_all(b"+OK scripted POP3\r\n").is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let cmd = line.trim_end().to_string();
        log.lock().unwrap()[index].push(cmd.clone());
        let mut words = cmd.split_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let arg: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let reply = match verb.as_str() {
            "CAPA" => "+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n".to_string(),
            "USER" | "PASS" | "NOOP" | "RSET" => "+OK\r\n".to_string(),
            "STAT" => format!("+OK {MESSAGES} {}\r\n", MESSAGES * 100),
            "UIDL" => {
                let mut r = String::from("+OK\r\n");
                for n in 1..=MESSAGES {
                    r.push_str(&format!("{n} uid-{n}\r\n"));
                }
                r + ".\r\n"
            }
            "LIST" => {
                let mut r = String::from("+OK\r\n");
                for n in 1..=MESSAGES {
                    r.push_str(&format!("{n} {}\r\n", message(n).len()));
                }
                r + ".\r\n"
            }
            "RETR" if (1..=MESSAGES).contains(&arg) => {
                let text = message(arg).replace("\r\n..", "\r\n...");
                if cut && arg == CUT_AT {
                    let _ =
                        sock.write_all(format!("+OK\r\n{}", &text[..text.len() / 2]).as_bytes());
                    let _ = sock.shutdown(std::net::Shutdown::Both);
                    return;
                }
                format!("+OK\r\n{text}.\r\n")
            }
            "DELE" if (1..=MESSAGES).contains(&arg) => {
                deleted.insert(arg);
                "+OK\r\n".to_string()
            }
            "QUIT" => {
                let _ = sock.write_all(b"+OK bye\r\n");
                return;
            }
            _ => "-ERR unknown\r\n".to_string(),
        };
        if sock.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn scripted_config(dir: &Path, port: u16, target: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "[accounts.scripted]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npassword = \"x\"\ntls = false\ntimeout = 10\n\
             [accounts.scripted.fetch]\nprotocol = \"pop3\"\nport = {port}\n{target}\n"
        ),
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
    let (port, sessions) = scripted_pop3(true);
    let cfg = scripted_config(&dir, port, &format!("maildir = \"{}\"", md.display()));
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
    // This server keeps what a session deleted: the third session deletes those again (not
    // fetching them), and the poll does not reconnect a second time for them.
    assert_eq!(commands(&s[2], "DELE").len(), MESSAGES);
    assert_eq!(commands(&s[2], "QUIT").len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scripted SMTP server: answers `rcpt_reply` to RCPT TO and collects accepted messages.
fn scripted_smtp(rcpt_reply: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut sock) = conn else { return };
            let mut reader = BufReader::new(sock.try_clone().expect("clone"));
            let _ = sock.write_all(b"220 scripted ESMTP\r\n");
            let mut line = String::new();
            let mut data: Option<String> = None;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if let Some(body) = data.as_mut() {
                    if line == ".\r\n" {
                        store.lock().unwrap().push(std::mem::take(body));
                        data = None;
                        let _ = sock.write_all(b"250 2.0.0 queued\r\n");
                    } else {
                        body.push_str(&line);
                    }
                    continue;
                }
                let upper = line.to_ascii_uppercase();
                let reply = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                    "250-scripted\r\n250 8BITMIME\r\n"
                } else if upper.starts_with("RCPT") {
                    rcpt_reply
                } else if upper.starts_with("DATA") {
                    data = Some(String::new());
                    "354 go ahead\r\n"
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
    });
    (port, accepted)
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
    let (busy, busy_got) = scripted_smtp("451 4.3.0 try again later\r\n");
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
    assert!(busy_got.lock().unwrap().is_empty());
    assert_eq!(
        server_count(&s),
        3,
        "451 leaves every message on the server: {err}"
    );

    let (ok, ok_got) = scripted_smtp("250 2.1.5 ok\r\n");
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
    let got = ok_got.lock().unwrap();
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
