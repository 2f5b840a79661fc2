//! The rsend binary against a hostile scripted SMTP server on 127.0.0.1 (no stack needed): a 4xx
//! reply at any phase exits 75 and names the phase, a 5xx reply exits with the documented
//! permanent code (man/rsend.1 EXIT STATUS, src/exit.rs), and a server that stops answering
//! exits 75 within the configured `timeout`.

mod common;

use std::time::{Duration, Instant};

use common::rsend::*;
use common::transcript::{Player, Transcript};

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

    /// How the transcripts for the phase are named.
    fn file_name(self) -> &'static str {
        match self {
            Phase::Greeting => "greeting",
            Phase::Ehlo => "ehlo",
            Phase::StartTls => "starttls",
            Phase::Auth => "auth",
            Phase::Mail => "mail",
            Phase::Rcpt => "rcpt",
            Phase::Data => "data",
            Phase::EndOfData => "end_of_data",
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

/// The transcript of a normal SMTP submission that goes wrong at `case.phase`
/// (tests/transcripts/rsend/), playing on a loopback port.
fn hostile_server(case: &Case) -> Player {
    let phase = case.phase.file_name();
    match case.answer {
        Reply(text) => {
            Transcript::load_with(&format!("rsend/fail_at_{phase}"), &[("REPLY", text)]).play()
        }
        Silence => Transcript::load(&format!("rsend/silent_at_{phase}")).play(),
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
        let server = hostile_server(case);
        let dir = TempDir::new("hostile");
        let rc = hostile_rc(dir.path(), server.port());
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
        let lines = match server.outcome() {
            Ok(lines) => lines,
            Err(e) => {
                failures.push(format!(
                    "{e}\n{:?} {:?}: {}",
                    case.phase,
                    case.answer,
                    describe(&out)
                ));
                continue;
            }
        };
        let message_sent = lines.iter().any(|l| l == "Subject: hostile");
        let heard: String = lines.iter().map(|l| format!("C: {l}\n")).collect();
        let what = format!(
            "{:?} {:?}: {}\nthe client sent:\n{heard}",
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
        if case.phase < Phase::EndOfData && message_sent {
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
