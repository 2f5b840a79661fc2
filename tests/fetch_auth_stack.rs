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

/// bob on the stack's `port`, trusting the stack's CA.
fn bob(stack: &common::Stack, server: &mut Server, port: u16, mode: TlsMode, auth: FetchAuth) {
    server.endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    server.user = "bob".into();
    server.tls_mode = mode;
    server.tls = TlsOptions {
        trust: Trust::File(stack.ca()),
        server_name: Some("localhost".into()),
        ..TlsOptions::default()
    };
    server.auth = auth;
    server.connect.io_timeout = std::time::Duration::from_secs(20);
}

fn pop3_login(
    stack: &common::Stack,
    mode: TlsMode,
    auth: FetchAuth,
    pw: &str,
) -> postie::Result<()> {
    let port = match mode {
        TlsMode::Implicit => stack.port("POP3S_PORT"),
        _ => stack.port("POP3_PORT"),
    };
    let ep = Endpoint {
        host: String::new(),
        port,
    };
    let mut set = Pop3Settings::new(ep, "bob", Secret::new(pw));
    bob(stack, &mut set, port, mode, auth);
    let mut s = Pop3Session::connect(&set)?;
    assert!(s.is_tls());
    s.login()?;
    s.stat()?;
    s.quit().map(|_| ())
}

fn imap_login(
    stack: &common::Stack,
    mode: TlsMode,
    auth: FetchAuth,
    pw: &str,
) -> postie::Result<()> {
    let port = match mode {
        TlsMode::Implicit => stack.port("IMAPS_PORT"),
        _ => stack.port("IMAP_PORT"),
    };
    let ep = Endpoint {
        host: String::new(),
        port,
    };
    let mut set = ImapSettings::new(ep, "bob", Secret::new(pw));
    bob(stack, &mut set, port, mode, auth);
    let mut s = ImapSession::connect(&set)?;
    assert!(s.is_tls());
    s.login()?;
    s.examine("INBOX")?;
    s.logout()
}

type Login = fn(&common::Stack, TlsMode, FetchAuth, &str) -> postie::Result<()>;

const PROTOCOLS: [(&str, Login); 2] = [("POP3", pop3_login), ("IMAP", imap_login)];

#[test]
fn every_mechanism_logs_in_and_a_wrong_password_is_an_auth_error() {
    let stack = common::Stack::get();
    let mut cases = Vec::new();
    for (proto, login) in PROTOCOLS {
        for mode in [TlsMode::Implicit, TlsMode::Starttls] {
            let mut methods: Vec<FetchAuth> =
                MECHANISMS.iter().map(|&m| FetchAuth::Sasl(m)).collect();
            methods.extend([FetchAuth::Password, FetchAuth::Any]);
            for auth in methods {
                cases.push((proto, login, mode, auth));
            }
        }
    }
    // Dovecot delays every failed login by about two seconds: the cases run side by side.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let running: Vec<_> = cases
            .iter()
            .map(|&(proto, login, mode, auth)| {
                let stack = &stack;
                scope.spawn(move || {
                    let what = format!("{proto} {mode:?} {auth:?}");
                    let mut failed = Vec::new();
                    if let Err(e) = login(stack, mode, auth, "bobpw") {
                        failed.push(format!("{what}: {}", e.chain()));
                    }
                    match login(stack, mode, auth, "wrong-pw") {
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
    for (proto, login) in PROTOCOLS {
        for m in [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus] {
            let e = login(&stack, TlsMode::Implicit, FetchAuth::Sasl(m), "bobpw")
                .expect_err("not offered");
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{proto} {m}: {e:?}");
        }
    }
}
