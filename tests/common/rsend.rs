//! Shared by the rsend integration tests (`common::rsend`): the rsend binary, msmtprc files that
//! work against the stack, running programs with a message on stdin, and finding delivered
//! messages in the stack's Maildirs.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const RSEND: &str = env!("CARGO_BIN_EXE_rsend");

/// A marker no other test (or run) puts into a message.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("rsend-{tag}-{}-{nanos}-{n}", std::process::id())
}

/// A temporary directory removed on drop (kept when the test fails).
pub use super::TempDir;

/// Which Postfix port a test submits through.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// SMTPS: implicit TLS + AUTH (account `smtps`, the default).
    Smtps,
    /// Submission: STARTTLS + AUTH LOGIN (account `sub`).
    Submission,
}

impl Via {
    pub fn account(self) -> &'static str {
        match self {
            Via::Smtps => "smtps",
            Via::Submission => "sub",
        }
    }
}

/// The msmtprc text that works against the stack, with `password` for alice and extra
/// lines appended to the `smtps` account.
pub fn msmtprc_text(stack: &super::Stack, password: &str, smtps_port: u16) -> String {
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

pub fn write_rc(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let path = dir.join("msmtprc");
    std::fs::write(&path, text).expect("write msmtprc");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// A temp dir holding the working msmtprc (mode 600).
pub fn good_rc(stack: &super::Stack) -> (TempDir, PathBuf) {
    let dir = TempDir::new("rc");
    let rc = write_rc(
        dir.path(),
        &msmtprc_text(stack, "alicepw", stack.port("SMTPS_PORT")),
        0o600,
    );
    (dir, rc)
}

/// Runs `program` with `args` and `input` on stdin, without $HOME (so no ~/.msmtprc is read).
pub fn run_program(program: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut command = Command::new(program);
    command.args(args).env_remove("HOME");
    run_command(command, input)
}

/// Runs `command` with `input` on stdin and collects its output.
pub fn run_command(mut command: Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    // Written from a thread: the program may exit before reading all of stdin.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for the program");
    let _ = writer.join();
    out
}

pub fn rsend(args: &[&str], input: &[u8]) -> Output {
    run_program(Path::new(RSEND), args, input)
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
}

/// Sends `input` through `via` to `recipients` with extra `flags`; asserts exit 0.
pub fn send(rc: &Path, via: Via, flags: &[&str], recipients: &[&str], input: &[u8]) {
    let rc = rc.to_str().expect("utf-8 path");
    let mut args = vec!["-C", rc, "-a", via.account()];
    args.extend_from_slice(flags);
    args.extend_from_slice(recipients);
    let out = rsend(&args, input);
    assert_exit(&out, 0);
}

pub fn maildir(stack: &super::Stack, user: &str) -> PathBuf {
    match user {
        "alice" => PathBuf::from(stack.var("STACK_MAILDIR1")),
        "bob" => PathBuf::from(stack.var("STACK_MAILDIR2")),
        other => panic!("no maildir for {other}"),
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every message in the Maildir (new/ and cur/) containing `marker`.
pub fn find_messages(maildir: &Path, marker: &str) -> Vec<Vec<u8>> {
    find_message_files(maildir, marker)
        .into_iter()
        .map(|(_, data)| data)
        .collect()
}

/// Every message file in the Maildir (new/ and cur/) containing `marker`, with its path.
pub fn find_message_files(maildir: &Path, marker: &str) -> Vec<(PathBuf, Vec<u8>)> {
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
                found.push((entry.path(), data));
            }
        }
    }
    found
}

/// Waits up to 30 s until `count` messages containing `marker` are in the Maildir.
pub fn wait_for_n(maildir: &Path, marker: &str, count: usize) -> Vec<Vec<u8>> {
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

pub fn wait_for(maildir: &Path, marker: &str) -> Vec<u8> {
    let mut found = wait_for_n(maildir, marker, 1);
    assert_eq!(found.len(), 1, "{marker} delivered more than once");
    found.remove(0)
}

/// Splits a delivered message at the first empty line: (header, body).
pub fn split(message: &[u8]) -> (String, Vec<u8>) {
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

pub fn show(message: &[u8]) -> String {
    String::from_utf8_lossy(message).into_owned()
}

/// Header field lines (unfolded not needed for our short headers).
pub fn header_lines(header: &str) -> Vec<&str> {
    header.lines().collect()
}

pub fn has_header_line(header: &str, line: &str) -> bool {
    header_lines(header).contains(&line)
}

pub fn header_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header_lines(header).into_iter().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Header fields Postfix and Dovecot add on the way in; two submissions of the same message
/// differ only in these.
pub const ADDED_ON_DELIVERY: [&str; 4] =
    ["Received", "Return-Path", "Delivered-To", "X-Original-To"];

/// A delivered message without the fields in [`ADDED_ON_DELIVERY`] (each with its continuation
/// lines), and with every `marker` replaced by `MARKER`.
pub fn without_delivery_headers(message: &[u8], marker: &str) -> Vec<u8> {
    let header_end = message
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + 1)
        .unwrap_or_else(|| panic!("no header/body separator in {}", show(message)));
    let mut out = Vec::with_capacity(message.len());
    let mut dropping = false;
    for line in message[..header_end].split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            dropping = ADDED_ON_DELIVERY
                .iter()
                .any(|added| added.as_bytes().eq_ignore_ascii_case(name));
        }
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&message[header_end..]);
    replace_all(&out, marker.as_bytes(), b"MARKER")
}

/// `data` with every `from` replaced by `to`.
pub fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(pos) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..pos]);
        out.extend_from_slice(to);
        rest = &rest[pos + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}
