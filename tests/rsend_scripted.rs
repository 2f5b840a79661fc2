//! The rsend binary against a hostile scripted SMTP server on 127.0.0.1 (no stack needed): a 4xx
//! reply at any phase exits 75 and names the phase, a 5xx reply exits with the documented
//! permanent code (man/rsend.1 EXIT STATUS, src/exit.rs), and a server that stops answering
//! exits 75 within the configured `timeout`.

mod common;

#[path = "rsend_support.rs.inc"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

/// Where the server misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Phase {
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    EndOfData,
}

impl Phase {
    /// How rsend's error message names the phase.
    fn named(self) -> &'static str {
        match self {
            Phase::Greeting => "greeting",
            Phase::Ehlo => "EHLO",
            Phase::StartTls => "STARTTLS",
            Phase::Auth => "AUTH",
            Phase::Mail => "MAIL FROM",
            Phase::Rcpt => "RCPT TO",
            Phase::Data => "DATA",
            Phase::EndOfData => "end of data",
        }
    }
}

/// What the server does at the failing phase.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// This reply (one line, without CRLF).
    Reply(&'static str),
    /// Nothing at all: it keeps the connection open and stays silent.
    Silence,
}

/// One row: the server answers `answer` at `phase`; rsend must exit `exit`.
struct Case {
    phase: Phase,
    answer: Answer,
    exit: i32,
}

const fn case(phase: Phase, answer: Answer, exit: i32) -> Case {
    Case {
        phase,
        answer,
        exit,
    }
}

use Answer::{Reply, Silence};

/// Every row of the hostile-server table. The reply texts are unique so that the test can check
/// rsend passes the server's words on.
const CASES: &[Case] = &[
    // Temporary failures: 75 EX_TEMPFAIL at every phase.
    case(Phase::Greeting, Reply("421 4.3.2 greeting-busy"), 75),
    case(Phase::Ehlo, Reply("421 4.3.2 ehlo-busy"), 75),
    case(Phase::StartTls, Reply("454 4.7.0 starttls-later"), 75),
    case(Phase::Auth, Reply("454 4.7.0 auth-later"), 75),
    case(Phase::Mail, Reply("451 4.3.0 mail-later"), 75),
    case(Phase::Rcpt, Reply("450 4.2.1 rcpt-later"), 75),
    case(Phase::Data, Reply("451 4.3.0 data-later"), 75),
    case(Phase::EndOfData, Reply("452 4.3.1 eod-later"), 75),
    // Permanent failures: the documented codes.
    case(Phase::StartTls, Reply("554 5.7.0 starttls-never"), 69),
    case(Phase::Auth, Reply("535 5.7.8 auth-never"), 77),
    case(Phase::Mail, Reply("550 5.7.1 mail-never"), 65),
    case(Phase::Rcpt, Reply("550 5.1.1 rcpt-never"), 65),
    case(Phase::Data, Reply("554 5.5.1 data-never"), 65),
    case(Phase::EndOfData, Reply("554 5.6.0 eod-never"), 65),
    // A server that stops answering: 75 after the configured timeout.
    case(Phase::Greeting, Silence, 75),
    case(Phase::Ehlo, Silence, 75),
    case(Phase::EndOfData, Silence, 75),
];

/// The `timeout` in the rc: a silent server must be given up on after about this long.
const TIMEOUT_SECS: u64 = 2;

/// Starts a server that plays a normal SMTP submission except at `fail_at`, where it answers
/// `answer`. Returns its port and a channel that receives the transcript of what rsend sent.
fn hostile_server(fail_at: Phase, answer: Answer) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut transcript = String::new();
        serve(stream, fail_at, answer, &mut transcript);
        let _ = tx.send(transcript);
    });
    (port, rx)
}

/// The normal answer to each command, or the scripted one at the failing phase. `None` means:
/// say nothing and wait until rsend gives up.
fn answer_at(phase: Phase, fail_at: Phase, answer: Answer, normal: &str) -> Option<String> {
    if phase != fail_at {
        return Some(normal.to_string());
    }
    match answer {
        Reply(text) => Some(format!("{text}\r\n")),
        Silence => None,
    }
}

fn serve(stream: TcpStream, fail_at: Phase, answer: Answer, transcript: &mut String) {
    // rsend closes the connection when it gives up; the read timeout only bounds a broken test.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut say = |text: Option<String>, transcript: &mut String| -> bool {
        match text {
            Some(t) => {
                transcript.push_str(&format!("S: {t}"));
                writer.write_all(t.as_bytes()).is_ok()
            }
            None => {
                // Silent: drain until rsend hangs up.
                transcript.push_str("S: (silence)\n");
                false
            }
        }
    };
    let greeting = answer_at(
        Phase::Greeting,
        fail_at,
        answer,
        "220 fake.test ESMTP hostile\r\n",
    );
    let mut silent = !say(greeting, transcript);
    let mut line = String::new();
    let mut in_data = false;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if in_data {
            if line == ".\r\n" {
                in_data = false;
                transcript.push_str("C: <message>.\n");
                if !silent {
                    let reply =
                        answer_at(Phase::EndOfData, fail_at, answer, "250 2.0.0 queued\r\n");
                    silent = !say(reply, transcript);
                }
            }
            continue;
        }
        transcript.push_str(&format!("C: {line}"));
        if silent {
            continue;
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply = if command.starts_with("EHLO") || command.starts_with("HELO") {
            answer_at(
                Phase::Ehlo,
                fail_at,
                answer,
                "250-fake.test\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
            )
        } else if command == "STARTTLS" {
            // Only the STARTTLS rows ask for TLS, and they fail here.
            answer_at(
                Phase::StartTls,
                fail_at,
                answer,
                "502 5.5.1 no TLS here\r\n",
            )
        } else if command.starts_with("AUTH") {
            if command == "AUTH PLAIN" {
                // No initial response: ask for it, then answer the credentials line.
                if !say(Some("334 \r\n".to_string()), transcript) {
                    return;
                }
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                transcript.push_str("C: <credentials>\n");
            }
            answer_at(Phase::Auth, fail_at, answer, "235 2.7.0 authenticated\r\n")
        } else if command.starts_with("MAIL") {
            answer_at(Phase::Mail, fail_at, answer, "250 2.1.0 ok\r\n")
        } else if command.starts_with("RCPT") {
            answer_at(Phase::Rcpt, fail_at, answer, "250 2.1.5 ok\r\n")
        } else if command == "DATA" {
            let reply = answer_at(Phase::Data, fail_at, answer, "354 go ahead\r\n");
            in_data = reply.as_deref().is_some_and(|r| r.starts_with("354"));
            reply
        } else if command == "RSET" {
            Some("250 2.0.0 ok\r\n".to_string())
        } else if command == "QUIT" {
            let _ = say(Some("221 2.0.0 bye\r\n".to_string()), transcript);
            return;
        } else {
            Some("500 5.5.2 what?\r\n".to_string())
        };
        silent = !say(reply, transcript);
    }
}

/// An rc for the scripted server: plaintext AUTH PLAIN (allowed with --danger-plaintext-auth),
/// `timeout 2`.
fn hostile_rc(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    write_rc(
        dir,
        &format!(
            "account default\n\
             host 127.0.0.1\n\
             port {port}\n\
             tls off\n\
             auth plain\n\
             user alice\n\
             password hostile-secret\n\
             from alice@localhost\n\
             timeout {TIMEOUT_SECS}\n"
        ),
        0o600,
    )
}

#[test]
fn every_phase_fails_with_the_documented_exit_code() {
    let mut failures = Vec::new();
    for case in CASES {
        let (port, transcript) = hostile_server(case.phase, case.answer);
        let dir = TempDir::new("hostile");
        let rc = hostile_rc(dir.path(), port);
        let rc = rc.to_str().expect("utf-8 path");
        let mut args = vec!["-C", rc, "--danger-plaintext-auth"];
        if case.phase == Phase::StartTls {
            args.extend_from_slice(&["--tls=on", "--tls-starttls=on"]);
        }
        args.push("bob@example.test");
        let started = Instant::now();
        let out = rsend(&args, b"Subject: hostile\n\nbody\n.\nafter a dot\n");
        let took = started.elapsed();
        let stderr = show(&out.stderr);
        let heard = transcript
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| "(no transcript: the server did not finish)".to_string());
        let what = format!(
            "{:?} {:?}: {}\nserver transcript:\n{heard}",
            case.phase,
            case.answer,
            describe(&out)
        );
        if out.status.code() != Some(case.exit) {
            failures.push(format!("expected exit {}; {what}", case.exit));
            continue;
        }
        match case.answer {
            Reply(text) => {
                // rsend says what failed: the phase and the server's own words.
                let words = text.split_once(' ').map(|(_, w)| w).unwrap_or(text);
                let words = words.split_once(' ').map(|(_, w)| w).unwrap_or(words);
                if !stderr.contains(words) {
                    failures.push(format!("stderr lacks the reply {words:?}; {what}"));
                }
                if !stderr.contains(case.phase.named()) {
                    failures.push(format!(
                        "stderr does not name the phase {:?}; {what}",
                        case.phase.named()
                    ));
                }
            }
            Silence => {
                if took >= Duration::from_secs(TIMEOUT_SECS + 8) {
                    failures.push(format!("took {took:?} with timeout {TIMEOUT_SECS}; {what}"));
                }
                if took < Duration::from_secs(TIMEOUT_SECS) - Duration::from_millis(200) {
                    failures.push(format!(
                        "gave up after {took:?}, before the timeout; {what}"
                    ));
                }
                if !stderr.to_ascii_lowercase().contains("time") {
                    failures.push(format!("stderr does not say it timed out; {what}"));
                }
            }
        }
        // The password never shows, whatever failed.
        if stderr.contains("hostile-secret") {
            failures.push(format!("password in stderr; {what}"));
        }
        // Nothing after a failed phase reaches the server: no message after a refusal.
        if case.phase < Phase::EndOfData && heard.contains("<message>") {
            failures.push(format!("message sent despite the failure; {what}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}
