//! Every fetch login method against the real Dovecot of the test stack, over POP3 and IMAP, with
//! implicit TLS and with STARTTLS/STLS: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256 (the
//! SCRAM server signature is checked by the client), USER/PASS and LOGIN, APOP-free `any`
//! (which picks SCRAM-SHA-256 there); a wrong password is an Auth error for each mechanism;
//! -PLUS, which this Dovecot does not offer, is refused before anything is sent. EXTERNAL logs
//! in with a client certificate the stack's CA signed for bob (and `any` picks it), while a
//! self-signed certificate naming bob gets nowhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

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
    login_with(stack, proto, mode, auth, pw, None)
}

/// [`login`] with a client certificate and key (PEM files).
fn login_with(
    stack: &common::Stack,
    proto: &str,
    mode: TlsMode,
    auth: FetchAuth,
    pw: &str,
    client_cert: Option<(PathBuf, PathBuf)>,
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
        client_cert,
    };
    server.auth = auth;
    server.connect.io_timeout = std::time::Duration::from_secs(20);
    // Dovecot slows every login from an address that failed often (up to 15 s, Postfix's
    // SASL lookups included): this test's deliberate failures come from their own address.
    server.connect.source_ip = "127.0.0.2".parse().ok();
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
                    // One wrong password per mechanism and protocol is enough.
                    if mode == TlsMode::Starttls {
                        return failed;
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

/// A client certificate for `cn` in `dir`: signed by the stack's CA, or self-signed.
fn client_certificate(
    stack: &common::Stack,
    dir: &Path,
    cn: &str,
    by_ca: bool,
) -> (PathBuf, PathBuf) {
    let (key, csr, crt) = (dir.join("c.key"), dir.join("c.csr"), dir.join("c.crt"));
    let ext = dir.join("c.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .expect("ext");
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            st.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    let p = |p: &Path| p.to_str().expect("utf-8").to_string();
    let subject = format!("/CN={cn}");
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-sha256",
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
        "-subj",
        &subject,
    ]);
    let ca = stack.ca();
    let ca_key = ca.with_file_name("ca.key");
    let serial = dir.join("ca.srl");
    if by_ca {
        run(&[
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&ca),
            "-CAkey",
            &p(&ca_key),
            "-CAserial",
            &p(&serial),
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &p(&ext),
            "-out",
            &p(&crt),
        ]);
    } else {
        run(&[
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-signkey",
            &p(&key),
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &p(&ext),
            "-out",
            &p(&crt),
        ]);
    }
    (crt, key)
}

#[test]
fn external_with_a_certificate_from_the_stack_ca() {
    let stack = common::Stack::get();
    let dir = std::env::temp_dir().join(format!("postie-external-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let signed = client_certificate(&stack, &dir, "bob", true);
    let external = FetchAuth::Sasl(Mechanism::External);
    let mut failures = Vec::new();
    for proto in PROTOCOLS {
        for mode in [TlsMode::Implicit, TlsMode::Starttls] {
            for auth in [external, FetchAuth::Any] {
                // The password is wrong: only the certificate can log bob in.
                let r = login_with(
                    &stack,
                    proto,
                    mode,
                    auth,
                    "not-the-password",
                    Some(signed.clone()),
                );
                if let Err(e) = r {
                    failures.push(format!("{proto} {mode:?} {auth:?}: {}", e.chain()));
                }
            }
        }
    }
    let self_signed_dir = dir.join("self");
    std::fs::create_dir_all(&self_signed_dir).expect("dir");
    let forged = client_certificate(&stack, &self_signed_dir, "bob", false);
    for proto in PROTOCOLS {
        match login_with(
            &stack,
            proto,
            TlsMode::Implicit,
            external,
            "x",
            Some(forged.clone()),
        ) {
            Err(e) if e.kind() == ErrorKind::Auth => {}
            other => failures.push(format!("{proto}: a self-signed certificate: {other:?}")),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
