//! The failure paths of POP3 AUTH and IMAP AUTHENTICATE against scripted servers on loopback,
//! and the mechanisms Dovecot cannot show (XOAUTH2, OAUTHBEARER, EXTERNAL): a SCRAM server-final
//! with the wrong signature aborts with "*" and nothing more is sent; a success without any
//! server-final is refused and the session is unusable afterwards; a server nonce that does
//! not extend ours is cancelled; a challenge that is not base64 is a protocol error; the OAuth
//! mechanisms send the token framed as specified and a failure is an Auth error.

mod common;

use std::time::Duration;

use common::transcript::Transcript;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode};
use postie::proto::sasl::Mechanism;
use postie::session::auth::{FetchAuth, Secret, Server};
use postie::session::imap::{ImapSession, ImapSettings};
use postie::session::pop3::{Pop3Session, Pop3Settings};

/// The server's part (a transcript under tests/transcripts/sasl/ for each protocol).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Script {
    /// SCRAM with a server-final whose signature is wrong.
    ScramWrongSignature,
    /// SCRAM where the server says OK right after client-final, proving nothing.
    ScramUnverifiedSuccess,
    /// SCRAM whose server nonce does not extend the client's.
    ScramForeignNonce,
    /// A challenge that is not base64.
    BadChallenge,
    /// Success for whatever the client sends (XOAUTH2, OAUTHBEARER, EXTERNAL).
    Accept,
    /// An OAuth error challenge, then failure.
    OAuthFailure,
}

#[derive(Clone, Copy, Debug)]
enum Proto {
    Pop3,
    Imap,
}

/// The transcript of `script` for `m` over `proto`.
fn transcript(proto: Proto, script: Script, m: Mechanism) -> Transcript {
    let proto = match proto {
        Proto::Pop3 => "pop3",
        Proto::Imap => "imap",
    };
    let mechanism = match m {
        Mechanism::XOAuth2 => "xoauth2",
        Mechanism::OAuthBearer => "oauthbearer",
        Mechanism::External => "external",
        _ => "scram",
    };
    let case = match script {
        Script::ScramWrongSignature => "scram_wrong_signature".to_string(),
        Script::ScramUnverifiedSuccess => "scram_unverified_success".to_string(),
        Script::ScramForeignNonce => "scram_foreign_nonce".to_string(),
        Script::BadChallenge => "bad_challenge".to_string(),
        Script::Accept => mechanism.to_string(),
        Script::OAuthFailure => format!("{mechanism}_refused"),
    };
    Transcript::load(&format!("sasl/{proto}_{case}"))
        .compute("scram-server-first", scram_server_first)
}

/// A SCRAM server-first message built on the nonce of the client-first message (the last word
/// of the client's AUTH or AUTHENTICATE line), as a continuation.
fn scram_server_first(heard: &[String]) -> Vec<u8> {
    let initial = heard
        .iter()
        .rev()
        .find(|l| l.contains("SCRAM-SHA-256 "))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_default();
    let client_first = B64
        .decode(initial)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let nonce = client_first
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .unwrap_or("none");
    let server_first = format!("r={nonce}SERVER,s=QSXCR+Q6sek8bf92,i=4096");
    format!("+ {}\r\n", B64.encode(server_first)).into_bytes()
}

fn server(port: u16, auth: FetchAuth) -> Server {
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    let mut s = Server::new(ep, "bob", Secret::new("s3cret-token"));
    s.tls_mode = TlsMode::Off;
    s.auth = auth;
    s.connect.io_timeout = Duration::from_secs(2);
    s
}

/// Logs in over `proto` with `auth` against `script`; returns the login result, whether a
/// command after it still works, and the client's lines.
fn run(proto: Proto, script: Script, m: Mechanism) -> (postie::Result<()>, bool, Vec<String>) {
    let player = transcript(proto, script, m).play();
    let port = player.port();
    let server = server(port, FetchAuth::Sasl(m));
    let (login, usable) = match proto {
        Proto::Pop3 => {
            let set = Pop3Settings {
                server,
                ..Pop3Settings::new(
                    Endpoint {
                        host: String::new(),
                        port,
                    },
                    "",
                    Secret::default(),
                )
            };
            let mut s = Pop3Session::connect(&set).expect("connect");
            let login = s.login();
            let usable = login.is_ok() && s.stat().is_ok();
            (login, usable)
        }
        Proto::Imap => {
            let set = ImapSettings {
                server,
                ..ImapSettings::new(
                    Endpoint {
                        host: String::new(),
                        port,
                    },
                    "",
                    Secret::default(),
                )
            };
            let mut s = ImapSession::connect(&set).expect("connect");
            let login = s.login();
            let usable = login.is_ok() && s.is_usable() && s.noop().is_ok();
            (login, usable)
        }
    };
    let lines = player.finish();
    (login, usable, lines)
}

fn error_text(r: &postie::Result<()>) -> String {
    match r {
        Ok(()) => "Ok".into(),
        Err(e) => e.chain().to_string(),
    }
}

/// Runs `script` over both protocols with SCRAM-SHA-256: the login fails with `kind` and a
/// message containing `says`; with `cancelled` the client's last line is the "*" cancel; no
/// command follows the failed login.
fn scram_fails(script: Script, kind: ErrorKind, says: &str, cancelled: bool) {
    for proto in [Proto::Pop3, Proto::Imap] {
        let (login, usable, lines) = run(proto, script, Mechanism::ScramSha256);
        let text = error_text(&login);
        let e = login.expect_err("refused");
        assert_eq!(e.kind(), kind, "{proto:?} {script:?}: {text}");
        assert!(text.contains(says), "{proto:?} {script:?}: {text}");
        assert!(!usable, "{proto:?} {script:?}");
        if cancelled {
            let last = lines.last().map(String::as_str);
            assert_eq!(last, Some("*"), "{proto:?} {script:?}: {lines:?}");
        }
        let after = lines
            .iter()
            .any(|l| l.contains("STAT") || l.contains("NOOP"));
        assert!(!after, "{proto:?} {script:?}: {lines:?}");
    }
}

#[test]
fn scram_server_final_mismatch_aborts_with_a_cancel() {
    scram_fails(
        Script::ScramWrongSignature,
        ErrorKind::Protocol,
        "signature is wrong",
        true,
    );
}

#[test]
fn scram_success_without_server_final_is_refused() {
    let says = "without proving it knows the password";
    scram_fails(
        Script::ScramUnverifiedSuccess,
        ErrorKind::Protocol,
        says,
        false,
    );
}

#[test]
fn scram_foreign_nonce_and_bad_challenges_fail_cleanly() {
    scram_fails(
        Script::ScramForeignNonce,
        ErrorKind::Protocol,
        "nonce",
        true,
    );
    scram_fails(Script::BadChallenge, ErrorKind::Protocol, "base64", false);
}

#[test]
fn oauth_and_external_send_what_the_specifications_say() {
    let token = B64.encode("user=bob\x01auth=Bearer s3cret-token\x01\x01");
    let bearer = B64.encode("n,a=bob,\x01host=127.0.0.1\x01port=");
    for proto in [Proto::Pop3, Proto::Imap] {
        let (login, usable, lines) = run(proto, Script::Accept, Mechanism::XOAuth2);
        assert!(login.is_ok() && usable, "{proto:?}: {}", error_text(&login));
        // XOAUTH2 has no initial response here: the token answers the empty challenge...
        // unless the command carried it; either way it is the exact XOAUTH2 string.
        assert!(
            lines.iter().any(|l| l.ends_with(&token)),
            "{proto:?}: {lines:?}"
        );

        let (login, usable, lines) = run(proto, Script::Accept, Mechanism::OAuthBearer);
        assert!(login.is_ok() && usable, "{proto:?}: {}", error_text(&login));
        let ir = lines
            .iter()
            .find_map(|l| {
                l.strip_prefix("AUTH OAUTHBEARER ")
                    .or(l.split("AUTHENTICATE OAUTHBEARER ").nth(1))
            })
            .unwrap_or_default();
        let decoded = String::from_utf8(B64.decode(ir).unwrap_or_default()).unwrap_or_default();
        assert!(
            decoded.starts_with(
                &String::from_utf8(B64.decode(&bearer).unwrap_or_default()).unwrap_or_default()
            ) && decoded.ends_with("\x01auth=Bearer s3cret-token\x01\x01"),
            "{proto:?}: {decoded:?}"
        );

        let (login, usable, lines) = run(proto, Script::Accept, Mechanism::External);
        assert!(login.is_ok() && usable, "{proto:?}: {}", error_text(&login));
        assert!(
            lines.iter().any(|l| l.ends_with("EXTERNAL =")),
            "{proto:?}: {lines:?}"
        );

        for m in [Mechanism::XOAuth2, Mechanism::OAuthBearer] {
            let (login, _, lines) = run(proto, Script::OAuthFailure, m);
            let e = login.as_ref().expect_err("refused token");
            assert_eq!(e.kind(), ErrorKind::Auth, "{proto:?} {m}: {e:?} {lines:?}");
        }
    }
}
