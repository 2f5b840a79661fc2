//! What rsend puts on the wire for hostile callers and messages, seen by a scripted SMTP server
//! that records the envelope and the DATA bytes: caller values that would inject a header line
//! (`-F`, `from_full_name`, `-f`, `%U`/`%H` from the environment) are refused before anything is
//! sent; a lone CR in the header is a line end for the header pass exactly as for the wire
//! encoder, so `Subject: x\rBcc: y` leaks no Bcc and `-t` sees every recipient header the
//! receivers see; the command line refuses what is not an address.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::recorder::{Heard, tcp_server as recording_server, wait};
use common::rsend::*;

/// An msmtprc for the recording server, with `extra` lines appended to the account.
fn rc(dir: &Path, port: u16, extra: &str) -> PathBuf {
    write_rc(
        dir,
        &format!(
            "account default\n\
             host 127.0.0.1\n\
             port {port}\n\
             tls off\n\
             auth off\n\
             from alice@localhost\n\
             timeout 5\n\
             {extra}"
        ),
        0o600,
    )
}

/// Runs rsend against a fresh recording server with the msmtprc `extra` lines, `args` and
/// `input`; returns rsend's output and what the server heard.
fn exchange(extra: &str, args: &[&str], input: &[u8]) -> (Output, Heard) {
    exchange_with(extra, args, input, |_| {})
}

/// [`exchange`] with a hook to change rsend's environment.
fn exchange_with(
    extra: &str,
    args: &[&str],
    input: &[u8],
    setup: impl FnOnce(&mut Command),
) -> (Output, Heard) {
    let (port, heard) = recording_server();
    let dir = TempDir::new("hdr");
    let rc = rc(dir.path(), port, extra);
    let mut command = Command::new(RSEND);
    command
        .arg("-C")
        .arg(&rc)
        .args(args)
        .env_remove("HOME")
        .env_remove("EMAIL");
    setup(&mut command);
    let out = run_command(command, input);
    (out, wait(port, heard))
}

/// Asserts rsend refused before sending any message, with exit `code` and `words` in stderr.
fn assert_refused(out: &Output, heard: &Heard, code: i32, words: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    assert!(
        heard.data.is_none(),
        "a message was sent: {:?}\n{}",
        heard.header(),
        describe(out)
    );
    let stderr = show(&out.stderr);
    assert!(
        stderr.contains(words),
        "stderr lacks {words:?}: {}",
        describe(out)
    );
}

const BODY: &[u8] = b"Subject: hello\n\nbody\n";

#[test]
fn full_name_with_a_line_break_is_refused_not_a_header() {
    for name in [
        "Eve\r\nBcc: leak@example.test",
        "Eve\nBcc: leak@example.test",
        "Eve\rBcc: leak@example.test",
        "Eve\u{1b}[2Jx",
        "Eve\tx",
    ] {
        let (out, heard) = exchange("", &["-F", name, "bob@example.test"], BODY);
        assert_refused(&out, &heard, 64, "-F");
        assert!(
            !heard.field_names().contains(&"bcc".to_string()),
            "{name:?}: {}",
            heard.header()
        );
    }
    // A plain name still works and lands in From.
    let (out, heard) = exchange("", &["-F", "Cron Daemon", "bob@example.test"], BODY);
    assert_exit(&out, 0);
    assert!(
        heard
            .header()
            .contains("From: Cron Daemon <alice@localhost>\r\n"),
        "{}",
        heard.header()
    );
}

#[test]
fn from_full_name_in_the_config_with_a_control_character_is_refused() {
    // A lone CR survives msmtprc's line splitting, so it reaches the value.
    let (out, heard) = exchange(
        "from_full_name Eve\rBcc: leak@example.test\n",
        &["bob@example.test"],
        BODY,
    );
    assert_refused(&out, &heard, 78, "from_full_name");
}

#[test]
fn from_full_name_in_toml_with_a_line_break_is_refused() {
    let (port, heard) = recording_server();
    let dir = TempDir::new("hdrtoml");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[accounts.default]\n\
             host = \"127.0.0.1\"\n\
             port = {port}\n\
             tls = false\n\
             auth = \"off\"\n\
             from = \"alice@localhost\"\n\
             from_full_name = \"Eve\\r\\nBcc: leak@example.test\"\n"
        ),
    )
    .expect("write toml");
    let mut command = Command::new(RSEND);
    command
        .arg("-C")
        .arg(&path)
        .arg("bob@example.test")
        .env_remove("HOME");
    let out = run_command(command, BODY);
    let heard = wait(port, heard);
    assert_refused(&out, &heard, 78, "from_full_name");
}

#[test]
fn envelope_from_with_a_line_break_is_refused() {
    for args in [
        &[
            "-f",
            "eve@example.test\r\nBcc: leak@example.test",
            "bob@example.test",
        ][..],
        &[
            "-r",
            "eve@example.test\nBcc: leak@example.test",
            "bob@example.test",
        ][..],
    ] {
        let (out, heard) = exchange("", args, BODY);
        assert_refused(&out, &heard, 64, "envelope-from");
    }
}

#[test]
fn environment_values_in_substitutions_cannot_inject() {
    // %U comes from $USER, %H from $HOSTNAME: both reach From, Message-ID and EHLO.
    let (out, heard) = exchange_with("from %U@localhost\n", &["bob@example.test"], BODY, |c| {
        c.env("USER", "eve\r\nBcc: leak@example.test");
    });
    assert_refused(&out, &heard, 78, "envelope-from");
    let (out, heard) = exchange_with("domain %H\n", &["bob@example.test"], BODY, |c| {
        c.env("HOSTNAME", "host\r\nBcc: leak@example.test");
    });
    assert_refused(&out, &heard, 78, "domain");
}

#[test]
fn lone_cr_in_the_header_leaks_no_bcc() {
    let input = b"Subject: x\rBcc: secret@example.test\r\nTo: bob@example.test\n\nbody\n";
    let (out, heard) = exchange("", &["bob@example.test"], input);
    assert_exit(&out, 0);
    let header = heard.header();
    assert!(!header.contains("secret"), "Bcc leaked:\n{header}");
    assert!(header.contains("Subject: x\r\n"), "{header}");
    assert_eq!(heard.rcpts, ["bob@example.test"]);
}

#[test]
fn lone_cr_header_lines_are_recipients_for_t() {
    // Every To/Cc/Bcc line a receiver sees was read by -t, and no Bcc line reaches it.
    let input =
        b"Subject: x\rTo: hidden@example.test\r\rCc: notheader@example.test\n\nbody\rmore\n";
    let (out, heard) = exchange("", &["-t"], input);
    assert_exit(&out, 0);
    assert_eq!(heard.rcpts, ["hidden@example.test"], "{}", heard.header());
    // The empty line made of "\r\r" ended the header: the Cc line is body text.
    let data = heard.data.as_deref().unwrap_or_default();
    assert!(
        contains(
            data,
            b"To: hidden@example.test\r\n\r\nCc: notheader@example.test\r\n\r\nbody\r\nmore\r\n"
        ),
        "{}",
        show(data)
    );
    let (out, heard) = exchange(
        "",
        &["-t"],
        b"To: a@example.test\rBcc: b@example.test\r\n\r\nbody\n",
    );
    assert_exit(&out, 0);
    assert_eq!(heard.rcpts, ["a@example.test", "b@example.test"]);
    assert!(
        !heard.field_names().contains(&"bcc".to_string()),
        "{}",
        heard.header()
    );
    assert!(
        !heard.header().contains("b@example.test"),
        "{}",
        heard.header()
    );
}

#[test]
fn no_recipients_says_t_or_an_address_is_needed() {
    let (out, heard) = exchange("", &[], BODY);
    assert_refused(&out, &heard, 64, "-t");
    assert!(show(&out.stderr).contains("address"), "{}", describe(&out));
}

#[test]
fn recipient_that_is_not_an_address_is_refused() {
    for arg in [
        "not an address",
        "a@b@c",
        "a@",
        "@x.org",
        "a..b@x.org",
        "x@[1.2.3.4",
    ] {
        let (out, heard) = exchange("", &[arg], BODY);
        assert_refused(&out, &heard, 64, arg);
    }
    // With -t, a To header made of words is refused the same way, naming the header.
    let (out, heard) = exchange("", &["-t"], b"To: John Doe\nSubject: s\n\nbody\n");
    assert_refused(&out, &heard, 64, "John Doe");
    // What msmtp accepts still works: lists, display names, groups, quoted local parts, and
    // local names (qualified with the sender's domain).
    let (out, heard) = exchange(
        "",
        &[
            "Bob <bob@example.test>, carol@example.test",
            "team: dave@example.test;",
            "\"odd name\"@example.test",
            "root",
        ],
        BODY,
    );
    assert_exit(&out, 0);
    assert_eq!(
        heard.rcpts,
        [
            "bob@example.test",
            "carol@example.test",
            "dave@example.test",
            "\"odd name\"@example.test",
            "root@localhost"
        ]
    );
}

#[test]
fn dash_h_without_a_number_points_to_help() {
    let out = rsend(&["-h"], b"");
    assert_exit(&out, 64);
    let stderr = show(&out.stderr);
    assert!(
        stderr.contains("hop count") && stderr.contains("--help"),
        "{stderr}"
    );
    // sendmail's -h N is still accepted and ignored.
    let (out, _) = exchange("", &["-h", "17", "bob@example.test"], BODY);
    assert_exit(&out, 0);
}

#[test]
fn man_page_synopsis_shows_value_names() {
    let page = String::from_utf8(postie::cli::manpage::rsend_page()).expect("utf-8");
    let synopsis = page
        .split(".SH SYNOPSIS")
        .nth(1)
        .and_then(|s| s.split(".SH").next())
        .expect("a SYNOPSIS section");
    assert!(!synopsis.contains("\\-F \\fR]"), "{synopsis}");
    for shown in ["[\\-F NAME]", "[\\-f ADDRESS]"] {
        assert!(synopsis.contains(shown), "{shown} not in {synopsis}");
    }
}
