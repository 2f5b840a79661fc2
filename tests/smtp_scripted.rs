//! Hermetic tests of the SMTP session against scripted servers on 127.0.0.1: each server plays
//! an exact transcript (tests/transcripts/smtp/) and records what the client sent.

mod common;

use std::time::{Duration, Instant};

use common::tls::TestCert;
use common::transcript::{Player, Transcript};
use common::wire_trace::WireTrace;
use postie::ErrorKind;
use postie::net::{ConnectOptions, Endpoint, TlsMode, TlsOptions, Trust};
use postie::proto::sasl::Mechanism;
use postie::proto::smtp::{AuthMethod, Envelope, Protocol, Recipient};
use postie::session::smtp::{SmtpAuth, SmtpClient, SmtpSettings};

/// Plays `tests/transcripts/smtp/NAME.txt` on a loopback port.
fn play(name: &str) -> Player {
    Transcript::load(&format!("smtp/{name}")).play()
}

fn settings(server: &Player, tls_mode: TlsMode, auth: Option<SmtpAuth>) -> SmtpSettings {
    SmtpSettings {
        endpoint: Endpoint {
            host: "localhost".into(),
            port: server.port(),
        },
        tls_mode,
        tls: TlsOptions {
            trust: Trust::Fingerprint(TestCert::get().sha256()),
            server_name: None,
            client_cert: None,
        },
        connect: ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(1),
            source_ip: None,
            route: postie::net::Route::Direct,
        },
        helo_domain: "client.test".into(),
        protocol: Protocol::Smtp,
        auth,
    }
}

fn alice(method: AuthMethod, allow_plaintext: bool) -> Option<SmtpAuth> {
    Some(SmtpAuth {
        method,
        user: "alice".into(),
        secret: postie::session::auth::Secret::new("s3cret-pw"),
        allow_plaintext,
    })
}

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        from: "me@example.org".into(),
        rcpts: rcpts.iter().map(|r| Recipient::new(r)).collect(),
        ..Envelope::default()
    }
}

/// Waits for the end of the transcript; everything the client sent, each line with its CRLF.
fn sent(server: Player) -> String {
    server.finish().iter().map(|l| format!("{l}\r\n")).collect()
}

/// Connect and send one message; returns the outcome kind (None = success) and what the
/// client sent.
fn session(server: Player, size_hint: Option<u64>) -> (Option<ErrorKind>, String) {
    let s = settings(&server, TlsMode::Off, None);
    let outcome = match SmtpClient::connect(&s) {
        Ok(mut client) => {
            let r = client.send(
                &envelope(&["rcpt@example.org"]),
                &mut &b"Subject: t\n\nbody\n"[..],
                size_hint,
            );
            let _ = client.quit();
            r.err().map(|e| e.kind())
        }
        Err(e) => Some(e.kind()),
    };
    (outcome, sent(server))
}

/// The transcript NAME with `${REPLY}` set to `reply`.
fn rejected(name: &str, reply: &str) -> Player {
    Transcript::load_with(&format!("smtp/{name}"), &[("REPLY", reply)]).play()
}

#[test]
fn full_transaction_without_pipelining() {
    let (outcome, transcript) = session(play("full_transaction"), None);
    assert_eq!(outcome, None);
    assert_eq!(
        transcript,
        "EHLO client.test\r\nMAIL FROM:<me@example.org>\r\nRCPT TO:<rcpt@example.org>\r\n\
         DATA\r\nSubject: t\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    );
}

#[test]
fn temporary_rejections_are_transient_at_every_phase() {
    let cases = [
        ("greeting", rejected("rejected_greeting", "421 4.3.2 busy")),
        ("ehlo", play("rejected_ehlo")),
        ("mail", rejected("rejected_mail", "451 4.3.0 later")),
        ("rcpt", rejected("rejected_rcpt", "450 4.2.0 greylisted")),
        ("data", rejected("rejected_data", "451 4.3.0 later")),
        (
            "end of data",
            rejected("rejected_end_of_data", "452 4.3.1 full"),
        ),
    ];
    for (phase, server) in cases {
        let (outcome, _) = session(server, None);
        assert_eq!(outcome, Some(ErrorKind::RejectedTemporary), "{phase}");
        assert!(outcome.is_some_and(|k| k.is_transient()), "{phase}");
    }
}

#[test]
fn permanent_rejections_are_permanent_at_every_phase() {
    let cases = [
        (
            "greeting",
            rejected("rejected_greeting", "554 5.3.2 no service"),
        ),
        ("ehlo then helo", play("rejected_ehlo_and_helo")),
        ("mail", rejected("rejected_mail", "553 5.1.8 bad sender")),
        ("rcpt", rejected("rejected_rcpt", "550 5.1.1 no such user")),
        (
            "data",
            rejected("rejected_data", "554 5.5.1 no valid recipients"),
        ),
        (
            "end of data",
            rejected("rejected_end_of_data", "554 5.7.1 spam"),
        ),
    ];
    for (phase, server) in cases {
        let (outcome, _) = session(server, None);
        assert_eq!(outcome, Some(ErrorKind::RejectedPermanent), "{phase}");
    }
}

#[test]
fn helo_fallback_works() {
    let (outcome, transcript) = session(play("helo_fallback"), None);
    assert_eq!(outcome, None);
    assert!(transcript.starts_with("EHLO client.test\r\nHELO client.test\r\nMAIL FROM:"));
}

#[test]
fn size_limit_refuses_before_mail() {
    let (outcome, transcript) = session(play("size_limit"), Some(1000));
    assert_eq!(outcome, Some(ErrorKind::RejectedPermanent));
    assert!(!transcript.contains("MAIL"), "{transcript}");
}

/// The transcript proves the pipelining: MAIL, both RCPTs and DATA must all arrive before the
/// server sends any of their replies.
#[test]
fn pipelining_sends_mail_rcpts_and_data_in_one_write() {
    let server = play("pipelining");
    let s = settings(&server, TlsMode::Off, None);
    let mut client = SmtpClient::connect(&s).unwrap();
    assert!(client.capabilities().pipelining);
    let report = client
        .send(
            &envelope(&["a@example.org", "b@example.org"]),
            &mut &b"x\n.\n"[..],
            Some(4),
        )
        .unwrap();
    assert_eq!(report.recipients.len(), 2);
    assert_eq!(report.message_bytes, 4);
    assert_eq!(report.final_reply.code(), 250);
    client.quit().unwrap();
    let all = sent(server);
    assert!(
        all.contains(
            "MAIL FROM:<me@example.org> SIZE=4\r\nRCPT TO:<a@example.org>\r\n\
             RCPT TO:<b@example.org>\r\nDATA\r\n"
        ),
        "{all}"
    );
    assert!(all.ends_with("DATA\r\nx\r\n..\r\n.\r\nQUIT\r\n"), "{all}");
}

#[test]
fn starttls_required_but_not_offered_sends_no_credentials() {
    let server = play("starttls_not_offered");
    let s = settings(&server, TlsMode::Starttls, alice(AuthMethod::Auto, true));
    let err = SmtpClient::connect(&s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    let transcript = sent(server);
    assert!(!transcript.contains("AUTH"), "{transcript}");
    assert!(!transcript.contains("s3cret"), "{transcript}");
}

/// A loopback peer (a local bridge) takes a password without TLS and without the danger
/// switch: the rule is decided on the socket's peer address ("localhost" resolves to it). The
/// refusal for other addresses is the same function, unit-tested in session::auth.
#[test]
fn plaintext_auth_to_a_loopback_peer_without_the_switch() {
    for method in [AuthMethod::Auto, AuthMethod::Mechanism(Mechanism::Plain)] {
        let server = play("auth_plain_loopback");
        let s = settings(&server, TlsMode::Off, alice(method, false));
        let client = SmtpClient::connect(&s).unwrap();
        assert_eq!(client.auth_mechanism(), Some(Mechanism::Plain));
        client.quit().unwrap();
        let transcript = sent(server);
        let auth = "AUTH PLAIN AGFsaWNlAHMzY3JldC1wdw==\r\n";
        assert!(transcript.contains(auth), "{method:?}: {transcript}");
    }
}

#[test]
fn failed_auth_is_an_auth_error() {
    let server = play("auth_login_failed");
    let s = settings(&server, TlsMode::Off, alice(AuthMethod::Auto, true));
    let err = SmtpClient::connect(&s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    let transcript = sent(server);
    assert!(
        transcript.contains("AUTH LOGIN\r\nYWxpY2U=\r\nczNjcmV0LXB3\r\nQUIT\r\n"),
        "{transcript}"
    );
}

#[test]
fn silent_server_times_out() {
    let server = play("silent_server");
    let s = settings(&server, TlsMode::Off, None);
    let start = Instant::now();
    let err = SmtpClient::connect(&s).unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(err.is_transient());
    assert!(took < Duration::from_millis(2500), "{took:?}");
    server.finish();
}

#[test]
fn overlong_reply_is_a_protocol_error() {
    let server = play("overlong_reply");
    let s = settings(&server, TlsMode::Off, None);
    let err = SmtpClient::connect(&s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:?}");
    server.finish();

    // Endless continuation lines.
    let server = play("endless_continuation");
    let s = settings(&server, TlsMode::Off, None);
    let err = SmtpClient::connect(&s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:?}");
    server.finish();
}

#[test]
fn lmtp_reports_each_recipient() {
    let server = play("lmtp");
    let mut s = settings(&server, TlsMode::Off, None);
    s.protocol = Protocol::Lmtp;
    let mut client = SmtpClient::connect(&s).unwrap();
    let mut env = envelope(&["alice", "nobody", "bob"]);
    env.allow_partial = true;
    let report = client.send(&env, &mut &b"hi\n"[..], None).unwrap();
    let rejected: Vec<&str> = report.rejected().map(|r| r.address.as_str()).collect();
    assert_eq!(rejected, vec!["nobody"]);
    assert_eq!(report.recipients.len(), 3);
    client.quit().unwrap();
    assert!(sent(server).starts_with("LHLO client.test\r\n"));
}

#[test]
fn starttls_injection_is_not_read_as_the_ehlo_reply() {
    for delayed in [false, true] {
        let server = play(if delayed {
            "starttls_injection_delayed"
        } else {
            "starttls_injection"
        });
        let s = settings(&server, TlsMode::Starttls, None);
        match SmtpClient::connect(&s) {
            Ok(client) => {
                // Only possible if the injected bytes were discarded before the handshake.
                assert!(client.is_tls());
                assert_eq!(
                    client.capabilities().domain,
                    "after-tls",
                    "delayed={delayed}"
                );
                client.quit().unwrap();
                server.finish();
            }
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::Protocol | ErrorKind::Tls),
                    "delayed={delayed}: {e:?}"
                );
                // The server's side of a refused handshake is not a difference to report.
                let _ = server.outcome();
            }
        }
    }
}

#[test]
fn starttls_session_works() {
    let server = play("starttls_session");
    let s = settings(&server, TlsMode::Starttls, alice(AuthMethod::Auto, false));
    let client = SmtpClient::connect(&s).unwrap();
    assert!(client.is_tls());
    assert_eq!(client.capabilities().auth, vec!["PLAIN", "LOGIN"]);
    assert_eq!(client.auth_mechanism(), Some(Mechanism::Plain));
    client.quit().unwrap();
    server.finish();
}

#[test]
fn wire_trace_redacts_auth_payloads() {
    let trace = WireTrace::install();
    for (mechs, method) in [
        ("PLAIN", AuthMethod::Mechanism(Mechanism::Plain)),
        ("LOGIN", AuthMethod::Mechanism(Mechanism::Login)),
    ] {
        let server = play(if mechs == "PLAIN" {
            "auth_plain"
        } else {
            "auth_login"
        });
        let s = settings(&server, TlsMode::Off, alice(method, true));
        trace.clear();
        let client = SmtpClient::connect(&s).unwrap();
        client.quit().unwrap();
        server.finish();
        // Other tests of this binary may trace at the same time: look for our lines only.
        let lines: Vec<String> = trace.lines();
        assert!(
            lines.iter().any(|l| l == "SMTP> EHLO client.test"),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("SMTP> AUTH {mechs}"))),
            "{lines:?}"
        );
        for l in &lines {
            assert!(!l.contains("s3cret"), "{l}");
            assert!(!l.contains("czNjcmV0LXB3"), "{l}");
            assert!(!l.contains("AGFsaWNlAHMzY3JldC1wdw"), "{l}");
        }
        if mechs == "PLAIN" {
            assert!(lines.iter().any(|l| l == "SMTP> AUTH PLAIN *"), "{lines:?}");
        } else {
            assert!(
                lines.iter().filter(|l| *l == "SMTP> *").count() >= 2,
                "{lines:?}"
            );
            assert!(
                lines.iter().any(|l| l == "SMTP< 334 <SASL challenge>"),
                "{lines:?}"
            );
        }
    }
}
