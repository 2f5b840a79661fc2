//! Smoke test of the real loopback mail stack (tests/stack/stack.sh): every server answers with
//! the greeting we expect, and `stack.sh put` / `stack.sh seed` land in the users' INBOX where
//! Dovecot sees them. Uses std only. Fails (never skips) when the stack is not running.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest reply line we accept from a server; the greetings are far shorter.
const MAX_LINE: usize = 4096;

fn connect(port: u16) -> BufReader<TcpStream> {
    let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"));
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    BufReader::new(stream)
}

fn read_line(conn: &mut BufReader<TcpStream>) -> String {
    let mut line = Vec::new();
    let n = conn
        .by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .expect("read a reply line");
    assert!(n > 0, "the server closed the connection");
    assert!(
        line.ends_with(b"\r\n"),
        "reply line not CRLF-terminated: {line:?}"
    );
    String::from_utf8_lossy(&line).trim_end().to_string()
}

/// Reads a multi-line SMTP/LMTP reply ("250-..." lines up to the "250 ..." one).
fn read_reply(conn: &mut BufReader<TcpStream>) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = read_line(conn);
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last || lines.len() > 100 {
            return lines;
        }
    }
}

fn send(conn: &mut BufReader<TcpStream>, line: &str) {
    conn.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .expect("send a command");
}

#[test]
fn smtp_banner_and_ehlo_offer_starttls() {
    let stack = common::Stack::get();
    let mut conn = connect(stack.port("SMTP_PORT"));
    let banner = read_line(&mut conn);
    assert!(banner.starts_with("220 "), "SMTP banner: {banner}");
    assert!(banner.contains("ESMTP"), "SMTP banner: {banner}");
    send(&mut conn, "EHLO smoke.localhost");
    let ehlo = read_reply(&mut conn);
    assert!(ehlo.iter().all(|l| l.starts_with("250")), "EHLO: {ehlo:?}");
    assert!(
        ehlo.iter().any(|l| l.contains("STARTTLS")),
        "EHLO: {ehlo:?}"
    );
    // AUTH is offered only after STARTTLS on the plain port
    assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "EHLO: {ehlo:?}");
    send(&mut conn, "QUIT");
    assert!(read_line(&mut conn).starts_with("221"));
}

#[test]
fn submission_port_offers_starttls() {
    let stack = common::Stack::get();
    let mut conn = connect(stack.port("SUBMISSION_PORT"));
    assert!(read_line(&mut conn).starts_with("220 "));
    send(&mut conn, "EHLO smoke.localhost");
    let ehlo = read_reply(&mut conn);
    assert!(
        ehlo.iter().any(|l| l.contains("STARTTLS")),
        "EHLO: {ehlo:?}"
    );
    send(&mut conn, "MAIL FROM:<alice@localhost>");
    let reply = read_line(&mut conn);
    assert!(reply.starts_with("530"), "MAIL before STARTTLS: {reply}");
}

#[test]
fn lmtp_lhlo() {
    let stack = common::Stack::get();
    let mut conn = connect(stack.port("LMTP_PORT"));
    let greeting = read_line(&mut conn);
    assert!(greeting.starts_with("220 "), "LMTP greeting: {greeting}");
    assert!(greeting.contains("Dovecot"), "LMTP greeting: {greeting}");
    send(&mut conn, "LHLO smoke.localhost");
    let lhlo = read_reply(&mut conn);
    assert!(lhlo.iter().all(|l| l.starts_with("250")), "LHLO: {lhlo:?}");
    assert!(
        lhlo.iter().any(|l| l.contains("PIPELINING")),
        "LHLO: {lhlo:?}"
    );
    send(&mut conn, "QUIT");
    assert!(read_line(&mut conn).starts_with("221"));
}

#[test]
fn pop3_greeting() {
    let stack = common::Stack::get();
    let mut conn = connect(stack.port("POP3_PORT"));
    let greeting = read_line(&mut conn);
    assert!(greeting.starts_with("+OK"), "POP3 greeting: {greeting}");
    send(&mut conn, "CAPA");
    let mut capa = vec![read_line(&mut conn)];
    while capa.last().map(String::as_str) != Some(".") && capa.len() < 100 {
        capa.push(read_line(&mut conn));
    }
    assert!(capa[0].starts_with("+OK"), "CAPA: {capa:?}");
    assert!(capa.iter().any(|l| l == "STLS"), "CAPA: {capa:?}");
    send(&mut conn, "QUIT");
    assert!(read_line(&mut conn).starts_with("+OK"));
}

#[test]
fn imap_greeting() {
    let stack = common::Stack::get();
    let mut conn = connect(stack.port("IMAP_PORT"));
    let greeting = read_line(&mut conn);
    assert!(greeting.starts_with("* OK"), "IMAP greeting: {greeting}");
    assert!(greeting.contains("IMAP4rev1"), "IMAP greeting: {greeting}");
    assert!(greeting.contains("STARTTLS"), "IMAP greeting: {greeting}");
    send(&mut conn, "a1 LOGOUT");
    assert!(read_line(&mut conn).starts_with("* BYE"));
}

/// A tag unique to this test run, so we find (and remove) exactly our own messages.
fn unique_tag(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("smoke-{what}-{}-{nanos}", std::process::id())
}

fn stack_sh(stack: &common::Stack, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(common::Stack::script());
    cmd.args(args).envs(env.iter().copied());
    let out = cmd.output().expect("run tests/stack/stack.sh");
    assert!(
        out.status.success(),
        "stack.sh {args:?} in {} failed: {}",
        stack.dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn doveadm(stack: &common::Stack, args: &[&str]) -> String {
    let out = Command::new("doveadm")
        .arg("-c")
        .arg(stack.var("STACK_DOVECONF"))
        .args(args)
        .output()
        .expect("run doveadm");
    assert!(
        out.status.success(),
        "doveadm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Maildir files (cur/ and new/) whose content contains `needle`.
fn maildir_files_with(maildir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(bytes) = std::fs::read(&path)
                && String::from_utf8_lossy(&bytes).contains(needle)
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn put_stores_a_message_byte_exact_and_dovecot_sees_it() {
    let stack = common::Stack::get();
    let tag = unique_tag("put");
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("message.eml");
    // CRLF and LF lines mixed, a trailing line without newline: put must not touch any byte
    let message = format!(
        "From: Smoke <smoke@localhost>\r\nTo: bob@localhost\nSubject: {tag}\r\n\
         Message-ID: <{tag}@localhost>\n\nbody line\r\n. dot line\nno newline at end"
    );
    std::fs::write(&file, &message).expect("write message");
    let file_arg = file.to_string_lossy().into_owned();
    let dir_arg = stack.dir.to_string_lossy().into_owned();
    stack_sh(&stack, &["put", &dir_arg, "bob", &file_arg], &[]);

    let maildir = PathBuf::from(stack.var("STACK_MAILDIR2"));
    let stored = maildir_files_with(&maildir, &tag);
    assert_eq!(stored.len(), 1, "put stored {stored:?}");
    let bytes = std::fs::read(&stored[0]).expect("read stored message");
    assert_eq!(bytes, message.as_bytes(), "put changed the message");

    let query = ["mailbox", "INBOX", "header", "Message-ID", tag.as_str()];
    let mut search = vec!["search", "-u", "bob"];
    search.extend_from_slice(&query);
    let hits = doveadm(&stack, &search);
    assert_eq!(hits.lines().count(), 1, "doveadm search found: {hits}");

    let mut expunge = vec!["expunge", "-u", "bob"];
    expunge.extend_from_slice(&query);
    doveadm(&stack, &expunge);
    assert!(maildir_files_with(&maildir, &tag).is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn seed_adds_n_messages_of_about_size_bytes() {
    let stack = common::Stack::get();
    let tag = unique_tag("seed");
    let dir_arg = stack.dir.to_string_lossy().into_owned();
    stack_sh(
        &stack,
        &["seed", &dir_arg, "alice", "3", "2000"],
        &[("SEED_TAG", &tag)],
    );

    let maildir = PathBuf::from(stack.var("STACK_MAILDIR1"));
    let seeded = maildir_files_with(&maildir, &tag);
    assert_eq!(seeded.len(), 3, "seeded files: {seeded:?}");
    for path in &seeded {
        let size = std::fs::metadata(path).expect("stat seeded file").len();
        assert!(
            (1900..=2000).contains(&size),
            "{} has {size} bytes",
            path.display()
        );
    }

    let query = ["mailbox", "INBOX", "subject", tag.as_str()];
    let mut search = vec!["search", "-u", "alice"];
    search.extend_from_slice(&query);
    let hits = doveadm(&stack, &search);
    assert_eq!(hits.lines().count(), 3, "doveadm search found: {hits}");

    let mut expunge = vec!["expunge", "-u", "alice"];
    expunge.extend_from_slice(&query);
    doveadm(&stack, &expunge);
    assert!(maildir_files_with(&maildir, &tag).is_empty());
}
