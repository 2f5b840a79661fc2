//! The SMTP/LMTP session against the real Postfix + Dovecot stack: messages sent through SMTPS
//! (implicit TLS, AUTH PLAIN) and submission (STARTTLS, AUTH LOGIN) must land in alice's Maildir
//! byte-identical apart from the headers the servers prepend and CRLF stored as LF; LMTP to
//! Dovecot reports each recipient.
//! Run with POSTIE_STACK_DIR=/tmp/refstack.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use postie::ErrorKind;
use postie::net::{ConnectOptions, Endpoint, TlsMode, TlsOptions, Trust};
use postie::proto::dotstuff::has_8bit;
use postie::proto::sasl::Mechanism;
use postie::proto::smtp::{AuthMethod, Envelope, Protocol, RcptStatus, Recipient};
use postie::session::smtp::{SmtpAuth, SmtpClient, SmtpSettings};

fn unique_id(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{tag}.{nanos}.{}@postie.test", std::process::id())
}

fn settings(
    stack: &common::Stack,
    port: &str,
    tls_mode: TlsMode,
    trust: Trust,
    auth: Option<SmtpAuth>,
    protocol: Protocol,
) -> SmtpSettings {
    SmtpSettings {
        endpoint: Endpoint {
            host: "127.0.0.1".into(),
            port: stack.port(port),
        },
        tls_mode,
        tls: TlsOptions {
            trust,
            server_name: Some("localhost".into()),
            client_cert: None,
        },
        connect: ConnectOptions {
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            source_ip: None,
            route: postie::net::Route::Direct,
        },
        helo_domain: "client.postie.test".into(),
        protocol,
        auth,
    }
}

fn alice_auth(method: AuthMethod) -> Option<SmtpAuth> {
    Some(SmtpAuth {
        method,
        user: "alice".into(),
        secret: postie::session::auth::Secret::new("alicepw"),
        allow_plaintext: false,
    })
}

/// A test message: the raw bytes we submit, and what the Maildir copy must end with.
struct Case {
    name: &'static str,
    raw: Vec<u8>,
    id: String,
}

fn headers(id: &str, subject: &str, eol: &str, extra: &str) -> String {
    format!(
        "Message-ID: <{id}>{eol}From: Postie Test <postie-test@localhost>{eol}\
         To: alice@localhost{eol}Date: Mon, 23 Nov 2026 12:00:00 +0000{eol}\
         Subject: {subject}{eol}{extra}"
    )
}

fn cases(tag: &str) -> Vec<Case> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, build: &dyn Fn(&str) -> Vec<u8>| {
        let id = unique_id(&format!("{tag}-{name}"));
        out.push(Case {
            name,
            raw: build(&id),
            id,
        });
    };
    add("plain", &|id| {
        format!(
            "{}\r\nHello Alice,\r\nplain text.\r\n",
            headers(id, "plain", "\r\n", "")
        )
        .into_bytes()
    });
    add("utf8", &|id| {
        format!(
            "{}\nGr\u{fc}\u{df}e, na\u{ef}ve caf\u{e9} \u{2603}\n\u{65e5}\u{672c}\u{8a9e}\n",
            headers(
                id,
                "8-bit",
                "\n",
                "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"
            )
        )
        .into_bytes()
    });
    add("dots", &|id| {
        format!(
            "{}\n.\nbefore\n.\n..\n..two\n.hidden\n...three\nend\n.",
            headers(id, "dots", "\n", "")
        )
        .into_bytes()
    });
    add("bare-lf", &|id| {
        format!(
            "{}\nline one\nline two\n\nafter blank\n",
            headers(id, "bare LF", "\n", "")
        )
        .into_bytes()
    });
    add("crlf", &|id| {
        format!(
            "{}\r\nline one\r\nline two\r\n\r\n",
            headers(id, "CRLF", "\r\n", "")
        )
        .into_bytes()
    });
    add("no-newline", &|id| {
        format!(
            "{}\nthe last line has no newline",
            headers(id, "no newline", "\n", "")
        )
        .into_bytes()
    });
    add("attachment", &|id| {
        // 10 MiB of deterministic pseudo-random bytes, base64 in 76-character lines.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..10 * 1024 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
        let mut body = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 1024);
        body.push_str(&headers(
            id,
            "attachment",
            "\r\n",
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n",
        ));
        body.push_str("\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b1\r\n");
        body.push_str(
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        );
        for chunk in encoded.as_bytes().chunks(76) {
            body.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            body.push_str("\r\n");
        }
        body.push_str("--b1--\r\n");
        body.into_bytes()
    });
    out
}

/// CRLF and bare LF become LF (as Maildir stores them); a missing final newline is added.
fn stored_form(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(b);
        i += 1;
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// Waits for the message with this Message-ID to appear in the user's Maildir and returns it.
fn find_delivered(stack: &common::Stack, user: &str, id: &str) -> Vec<u8> {
    let maildir = stack.dir.join("mail").join(user).join("Maildir");
    let needle = format!("Message-ID: <{id}>");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = std::collections::HashSet::new();
    while Instant::now() < deadline {
        for sub in ["new", "cur"] {
            for path in list(&maildir.join(sub)) {
                let base = base_name(&path);
                if seen.contains(&base) {
                    continue;
                }
                let Ok(head) = read_head(&path) else { continue };
                if String::from_utf8_lossy(&head).contains(&needle) {
                    if let Ok(all) = std::fs::read(&path) {
                        return all;
                    }
                    continue;
                }
                seen.insert(base);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("message {id} did not arrive in {}", maildir.display());
}

fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn base_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.split(':').next().unwrap_or_default().to_string()
}

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; 8192];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn check_stored(stack: &common::Stack, user: &str, case: &Case) {
    let stored = find_delivered(stack, user, &case.id);
    let start_marker = format!("Message-ID: <{}>", case.id);
    let start = stored
        .windows(start_marker.len())
        .position(|w| w == start_marker.as_bytes())
        .unwrap_or_else(|| panic!("{}: Message-ID not at a header line", case.name));
    let prepended = String::from_utf8_lossy(&stored[..start]);
    for line in prepended.lines() {
        let first = line.chars().next().unwrap_or(' ');
        assert!(
            first == ' '
                || first == '\t'
                || ["Return-Path:", "Delivered-To:", "Received:", "X-"]
                    .iter()
                    .any(|h| line.starts_with(h)),
            "{}: unexpected prepended header {line:?}",
            case.name
        );
    }
    let expected = stored_form(&case.raw);
    let got = &stored[start..];
    if got != expected.as_slice() {
        let diff_at = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "{}: stored copy differs at byte {diff_at} (len {} vs {}): got {:?} expected {:?}",
            case.name,
            got.len(),
            expected.len(),
            String::from_utf8_lossy(
                &got[diff_at.saturating_sub(20)..(diff_at + 40).min(got.len())]
            ),
            String::from_utf8_lossy(
                &expected[diff_at.saturating_sub(20)..(diff_at + 40).min(expected.len())]
            ),
        );
    }
}

fn send_all(settings: &SmtpSettings, tag: &str, expect_mech: Mechanism) {
    let stack = common::Stack::get();
    let mut client = SmtpClient::connect(settings).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(client.is_tls());
    assert_eq!(client.auth_mechanism(), Some(expect_mech));
    let cases = cases(tag);
    for case in &cases {
        let envelope = Envelope {
            from: "postie-test@localhost".into(),
            rcpts: vec![Recipient::new("alice@localhost")],
            body_8bit: has_8bit(&case.raw),
            ..Envelope::default()
        };
        let report = client
            .send(
                &envelope,
                &mut Cursor::new(&case.raw),
                Some(case.raw.len() as u64),
            )
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        assert_eq!(report.final_reply.code(), 250, "{}", case.name);
        assert_eq!(report.message_bytes, case.raw.len() as u64, "{}", case.name);
    }
    client.quit().unwrap();
    for case in &cases {
        check_stored(&stack, "alice", case);
    }
}

#[test]
fn smtps_with_auth_plain_delivers_byte_exact() {
    let stack = common::Stack::get();
    let s = settings(
        &stack,
        "SMTPS_PORT",
        TlsMode::Implicit,
        Trust::File(stack.ca()),
        alice_auth(AuthMethod::Mechanism(Mechanism::Plain)),
        Protocol::Smtp,
    );
    send_all(&s, "smtps", Mechanism::Plain);
}

#[test]
fn submission_starttls_with_auth_login_delivers_byte_exact() {
    let stack = common::Stack::get();
    let s = settings(
        &stack,
        "SUBMISSION_PORT",
        TlsMode::Starttls,
        Trust::Fingerprint(stack.server_fingerprint()),
        alice_auth(AuthMethod::Mechanism(Mechanism::Login)),
        Protocol::Smtp,
    );
    send_all(&s, "submission", Mechanism::Login);
}

#[test]
fn wrong_password_is_an_auth_error() {
    let stack = common::Stack::get();
    let mut auth = alice_auth(AuthMethod::Auto);
    if let Some(a) = auth.as_mut() {
        a.secret = postie::session::auth::Secret::new("wrong");
    }
    let s = settings(
        &stack,
        "SMTPS_PORT",
        TlsMode::Implicit,
        Trust::File(stack.ca()),
        auth,
        Protocol::Smtp,
    );
    let err = SmtpClient::connect(&s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err:?}");
}

#[test]
fn plain_port_refuses_plaintext_auth() {
    let stack = common::Stack::get();
    let s = settings(
        &stack,
        "SMTP_PORT",
        TlsMode::Off,
        Trust::File(stack.ca()),
        alice_auth(AuthMethod::Mechanism(Mechanism::Plain)),
        Protocol::Smtp,
    );
    // Postfix offers AUTH only after TLS here; either way no password goes out.
    let err = SmtpClient::connect(&s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err:?}");
}

#[test]
fn lmtp_reports_each_recipient() {
    let stack = common::Stack::get();
    let s = settings(
        &stack,
        "LMTP_PORT",
        TlsMode::Off,
        Trust::File(stack.ca()),
        None,
        Protocol::Lmtp,
    );
    let mut client = SmtpClient::connect(&s).unwrap_or_else(|e| panic!("{e:?}"));
    let id = unique_id("lmtp");
    let raw = format!("{}\nto both\n", headers(&id, "lmtp", "\n", "")).into_bytes();
    let envelope = Envelope {
        from: "postie-test@localhost".into(),
        rcpts: [
            "alice@localhost",
            "nosuchuser-postie@localhost",
            "bob@localhost",
        ]
        .iter()
        .map(|r| Recipient::new(r))
        .collect(),
        allow_partial: true,
        ..Envelope::default()
    };
    let report = client
        .send(&envelope, &mut Cursor::new(&raw), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let rejected: Vec<&str> = report.rejected().map(|r| r.address.as_str()).collect();
    assert_eq!(rejected, vec!["nosuchuser-postie@localhost"]);
    for r in &report.recipients {
        if let RcptStatus::Rejected(reply) = &r.status {
            assert_eq!(reply.code() / 100, 5, "{reply}");
        }
    }
    client.quit().unwrap();
    let case = Case {
        name: "lmtp",
        raw,
        id,
    };
    check_stored(&stack, "alice", &case);
    check_stored(&stack, "bob", &case);

    // Without allow_partial the unknown recipient fails the whole message before DATA.
    let mut client = SmtpClient::connect(&s).unwrap_or_else(|e| panic!("{e:?}"));
    let strict = Envelope {
        allow_partial: false,
        ..envelope
    };
    let err = client
        .send(&strict, &mut Cursor::new(&b"x\n"[..]), None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RejectedPermanent, "{err:?}");
    // Dovecot pipelines, so DATA was already accepted: the client must have closed the
    // connection rather than send the final "." (which would deliver to alice and bob).
    assert!(client.connection().is_none());
    drop(client);
    let mut client = SmtpClient::connect(&s).unwrap_or_else(|e| panic!("{e:?}"));
    let ok = Envelope {
        rcpts: vec![Recipient::new("bob@localhost")],
        ..strict
    };
    let id2 = unique_id("lmtp-after-rset");
    let raw2 = format!("{}\nafter rset\n", headers(&id2, "after rset", "\n", "")).into_bytes();
    client
        .send(&ok, &mut Cursor::new(&raw2), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    client.quit().unwrap();
    check_stored(
        &stack,
        "bob",
        &Case {
            name: "after rset",
            raw: raw2,
            id: id2,
        },
    );
}
