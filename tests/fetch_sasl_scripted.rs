//! The failure paths of POP3 AUTH and IMAP AUTHENTICATE against scripted servers on loopback,
//! and the mechanisms Dovecot cannot show (XOAUTH2, OAUTHBEARER, EXTERNAL): a SCRAM server-final
//! with the wrong signature aborts with "*" and nothing more is sent; a success without any
//! server-final is refused and the session is unusable afterwards; a server nonce that does
//! not extend ours is cancelled; a challenge that is not base64 is a protocol error; the OAuth
//! mechanisms send the token framed as specified and a failure is an Auth error.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode};
use postie::proto::sasl::Mechanism;
use postie::session::auth::{FetchAuth, Secret, Server};
use postie::session::imap::{ImapSession, ImapSettings};
use postie::session::pop3::{Pop3Session, Pop3Settings};

/// What the scripted server answers at each step of an exchange.
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

impl Proto {
    fn greeting(self) -> &'static str {
        match self {
            Proto::Pop3 => "+OK scripted\r\n",
            Proto::Imap => {
                "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=SCRAM-SHA-256 AUTH=XOAUTH2 \
                 AUTH=OAUTHBEARER AUTH=EXTERNAL] scripted\r\n"
            }
        }
    }

    fn ok(self, tag: &str) -> String {
        match self {
            Proto::Pop3 => "+OK welcome\r\n".into(),
            Proto::Imap => format!("{tag} OK welcome\r\n"),
        }
    }

    fn no(self, tag: &str) -> String {
        match self {
            Proto::Pop3 => "-ERR [AUTH] no\r\n".into(),
            Proto::Imap => format!("{tag} NO [AUTHENTICATIONFAILED] no\r\n"),
        }
    }
}

fn challenge(data: &str) -> String {
    format!("+ {}\r\n", B64.encode(data))
}

/// A one-connection server; returns its port and every line the client sent.
fn serve(proto: Proto, script: Script) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        let Ok((mut sock, _)) = listener.accept() else {
            return;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
        let mut r = BufReader::new(sock.try_clone().expect("clone"));
        let _ = sock.write_all(proto.greeting().as_bytes());
        let mut tag = String::new();
        let mut round = 0;
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            let l = line.trim_end().to_string();
            line.clear();
            log.lock().expect("lock").push(l.clone());
            let words: Vec<&str> = l.split(' ').collect();
            let reply = match (proto, words.as_slice()) {
                (Proto::Pop3, ["CAPA"]) => {
                    "+OK\r\nSASL SCRAM-SHA-256 XOAUTH2 OAUTHBEARER EXTERNAL\r\n.\r\n".into()
                }
                (Proto::Pop3, ["QUIT"]) => "+OK bye\r\n".into(),
                (Proto::Pop3, ["STAT"]) => "+OK 0 0\r\n".into(),
                (Proto::Imap, [t, "LOGOUT"]) => format!("* BYE\r\n{t} OK bye\r\n"),
                (Proto::Imap, [t, "NOOP"]) => format!("{t} OK\r\n"),
                (Proto::Imap, [t, "CAPABILITY"]) => {
                    format!("* CAPABILITY IMAP4rev1 SASL-IR\r\n{t} OK\r\n")
                }
                (_, words)
                    if round == 0
                        && (words.contains(&"AUTH") || words.contains(&"AUTHENTICATE")) =>
                {
                    let at = usize::from(matches!(proto, Proto::Imap));
                    tag = words[0].to_string();
                    round = 1;
                    first_reply(proto, script, &tag, words.get(at + 2).copied())
                }
                (_, ["*"]) => proto.no(&tag),
                _ if round == 1 => {
                    round = 2;
                    second_reply(proto, script, &tag, &l)
                }
                _ if round == 2 => proto.no(&tag),
                _ => "-ERR what\r\n".into(),
            };
            if sock.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    });
    (port, seen)
}

/// The answer to AUTH/AUTHENTICATE carrying `initial` (base64), if it has one.
fn first_reply(proto: Proto, script: Script, tag: &str, initial: Option<&str>) -> String {
    let Some(initial) = initial else {
        // No initial response (XOAUTH2): ask for it with an empty challenge.
        return "+ \r\n".into();
    };
    let client_first = B64
        .decode(initial)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let nonce = client_first
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .unwrap_or("none")
        .to_string();
    match script {
        Script::ScramWrongSignature | Script::ScramUnverifiedSuccess => {
            challenge(&format!("r={nonce}SERVER,s=QSXCR+Q6sek8bf92,i=4096"))
        }
        Script::ScramForeignNonce => challenge("r=someoneelse,s=QSXCR+Q6sek8bf92,i=4096"),
        Script::BadChallenge => "+ !!!not base64!!!\r\n".into(),
        Script::Accept => proto.ok(tag),
        Script::OAuthFailure => challenge("{\"status\":\"invalid_token\"}"),
    }
}

/// The answer to the client's `line` after the first challenge.
fn second_reply(proto: Proto, script: Script, tag: &str, line: &str) -> String {
    match script {
        Script::ScramWrongSignature => challenge("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
        Script::ScramUnverifiedSuccess | Script::Accept => proto.ok(tag),
        // XOAUTH2's token came after the empty challenge: now the error details.
        Script::OAuthFailure if !B64.decode(line).is_ok_and(|b| b == b"\x01") => {
            challenge("{\"status\":\"401\"}")
        }
        Script::OAuthFailure => proto.no(tag),
        Script::ScramForeignNonce | Script::BadChallenge => proto.no(tag),
    }
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
    let (port, seen) = serve(proto, script);
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
    let lines = seen.lock().expect("lock").clone();
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
