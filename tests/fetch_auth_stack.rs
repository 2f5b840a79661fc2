//! Every fetch login method against the real Dovecot of the test stack, over POP3 and IMAP, with
//! implicit TLS and with STARTTLS/STLS: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256 (the
//! SCRAM server signature is checked by the client), USER/PASS and LOGIN, APOP-free `any`
//! (which picks SCRAM-SHA-256 there); a wrong password is an Auth error for each mechanism;
//! -PLUS, which this Dovecot does not offer, is refused before anything is sent.

mod common;

use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode, TlsOptions, Trust};
use postie::proto::sasl::Mechanism;
use postie::session::auth::{FetchAuth, Secret, Server};
use postie::session::imap::{ImapSession, ImapSettings};
use postie::session::pop3::{Pop3Session, Pop3Settings};

const MECHANISMS: [Mechanism; 5] = [
    Mechanism::Plain,
    Mechanism::Login,
    Mechanism::CramMd5,
    Mechanism::ScramSha1,
    Mechanism::ScramSha256,
];

/// Logs in as bob over `proto` ("POP3" or "IMAP") with `auth` and password `pw`, trusting
/// the stack's CA, and runs one command after the login.
fn login(
    stack: &common::Stack,
    proto: &str,
    mode: TlsMode,
    auth: FetchAuth,
    pw: &str,
) -> postie::Result<()> {
    let port = stack.port(match (proto, mode) {
        ("POP3", TlsMode::Implicit) => "POP3S_PORT",
        ("POP3", _) => "POP3_PORT",
        (_, TlsMode::Implicit) => "IMAPS_PORT",
        _ => "IMAP_PORT",
    });
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    let mut server = Server::new(ep.clone(), "bob", Secret::new(pw));
    server.tls_mode = mode;
    server.tls = TlsOptions {
        trust: Trust::File(stack.ca()),
        server_name: Some("localhost".into()),
        ..TlsOptions::default()
    };
    server.auth = auth;
    server.connect.io_timeout = std::time::Duration::from_secs(20);
    if proto == "POP3" {
        let defaults = Pop3Settings::new(ep, "", Secret::default());
        let mut s = Pop3Session::connect(&Pop3Settings { server, ..defaults })?;
        assert!(s.is_tls());
        s.login()?;
        s.stat()?;
        s.quit().map(|_| ())
    } else {
        let defaults = ImapSettings::new(ep, "", Secret::default());
        let mut s = ImapSession::connect(&ImapSettings { server, ..defaults })?;
        assert!(s.is_tls());
        s.login()?;
        s.examine("INBOX")?;
        s.logout()
    }
}

const PROTOCOLS: [&str; 2] = ["POP3", "IMAP"];

#[test]
fn every_mechanism_logs_in_and_a_wrong_password_is_an_auth_error() {
    let stack = common::Stack::get();
    let mut cases = Vec::new();
    for proto in PROTOCOLS {
        for mode in [TlsMode::Implicit, TlsMode::Starttls] {
            let mut methods: Vec<FetchAuth> =
                MECHANISMS.iter().map(|&m| FetchAuth::Sasl(m)).collect();
            methods.extend([FetchAuth::Password, FetchAuth::Any]);
            for auth in methods {
                cases.push((proto, mode, auth));
            }
        }
    }
    // Dovecot delays every failed login by about two seconds: the cases run side by side.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let running: Vec<_> = cases
            .iter()
            .map(|&(proto, mode, auth)| {
                let stack = &stack;
                scope.spawn(move || {
                    let what = format!("{proto} {mode:?} {auth:?}");
                    let mut failed = Vec::new();
                    if let Err(e) = login(stack, proto, mode, auth, "bobpw") {
                        failed.push(format!("{what}: {}", e.chain()));
                    }
                    match login(stack, proto, mode, auth, "wrong-pw") {
                        Err(e) if e.kind() == ErrorKind::Auth => {}
                        other => failed.push(format!("{what} with a wrong password: {other:?}")),
                    }
                    failed
                })
            })
            .collect();
        running
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_else(|_| vec!["a case panicked".into()]))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn plus_mechanisms_this_dovecot_does_not_offer_are_refused_before_sending() {
    let stack = common::Stack::get();
    for proto in PROTOCOLS {
        for m in [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus] {
            let e = login(
                &stack,
                proto,
                TlsMode::Implicit,
                FetchAuth::Sasl(m),
                "bobpw",
            )
            .expect_err("not offered");
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{proto} {m}: {e:?}");
        }
    }
}
