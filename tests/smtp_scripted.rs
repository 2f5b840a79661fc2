//! Hermetic tests of the SMTP session against scripted servers on 127.0.0.1: each server plays
//! an exact transcript and records what the client sent.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postie::ErrorKind;
use postie::net::{ConnectOptions, Endpoint, TlsMode, TlsOptions, Trust};
use postie::proto::sasl::Mechanism;
use postie::proto::smtp::{AuthMethod, Envelope, Protocol, Recipient};
use postie::session::smtp::{SmtpAuth, SmtpClient, SmtpSettings};

/// One step of a server script.
#[derive(Clone)]
enum Step {
    /// Write these bytes ("\r\n" is not added).
    Say(&'static str),
    /// Read this many lines.
    Hear(usize),
    /// Read one chunk (one read call) and record it separately.
    HearChunk,
    /// Read until the end of DATA ("\r\n.\r\n").
    HearData,
    /// Do nothing for a while.
    Stall(Duration),
    /// Upgrade to TLS with a self-signed certificate; later steps run over TLS.
    Tls,
}

struct Recorded {
    /// Everything received, in order.
    all: Vec<u8>,
    /// The chunks read by `HearChunk` steps.
    chunks: Vec<Vec<u8>>,
}

struct Server {
    port: u16,
    handle: JoinHandle<Recorded>,
    fingerprint: [u8; 32],
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn tls_config() -> (Arc<rustls::ServerConfig>, [u8; 32]) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = ck.cert.der().clone();
    let fp = ring::digest::digest(&ring::digest::SHA256, &der);
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(fp.as_ref());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(postie::net::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    (Arc::new(config), fingerprint)
}

fn serve(script: Vec<Step>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (config, fingerprint) = tls_config();
    let handle = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut stream: Box<dyn Stream> = Box::new(sock.try_clone().unwrap());
        let mut rec = Recorded {
            all: Vec::new(),
            chunks: Vec::new(),
        };
        let mut pending: Vec<u8> = Vec::new();
        for step in script {
            match step {
                Step::Say(text) => {
                    if stream.write_all(text.as_bytes()).is_err() {
                        break;
                    }
                    let _ = stream.flush();
                }
                Step::Hear(n) => {
                    let mut lines = 0;
                    loop {
                        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                            pending.drain(..=pos);
                            lines += 1;
                            if lines == n {
                                break;
                            }
                        }
                        if lines >= n || !read_more(&mut stream, &mut pending, &mut rec) {
                            break;
                        }
                    }
                }
                Step::HearChunk => {
                    let before = rec.all.len();
                    read_more(&mut stream, &mut pending, &mut rec);
                    rec.chunks.push(rec.all[before..].to_vec());
                    pending.clear();
                }
                Step::HearData => loop {
                    if let Some(pos) = pending.windows(5).position(|w| w == b"\r\n.\r\n") {
                        pending.drain(..pos + 5);
                        break;
                    }
                    if pending == b".\r\n" {
                        pending.clear();
                        break;
                    }
                    if !read_more(&mut stream, &mut pending, &mut rec) {
                        break;
                    }
                },
                Step::Stall(d) => std::thread::sleep(d),
                Step::Tls => {
                    let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                    let sock: TcpStream = sock.try_clone().unwrap();
                    stream = Box::new(rustls::StreamOwned::new(conn, sock));
                    pending.clear();
                }
            }
        }
        // Afterwards answer RSET and QUIT until the client goes away.
        loop {
            while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                let reply: &[u8] = if line.starts_with(b"RSET") {
                    b"250 2.0.0 ok\r\n"
                } else if line.starts_with(b"QUIT") {
                    b"221 2.0.0 bye\r\n"
                } else {
                    b""
                };
                let _ = stream.write_all(reply);
            }
            if !read_more(&mut stream, &mut pending, &mut rec) {
                break;
            }
        }
        rec
    });
    Server {
        port,
        handle,
        fingerprint,
    }
}

fn read_more(stream: &mut Box<dyn Stream>, pending: &mut Vec<u8>, rec: &mut Recorded) -> bool {
    let mut buf = [0u8; 65536];
    match stream.read(&mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            pending.extend_from_slice(&buf[..n]);
            rec.all.extend_from_slice(&buf[..n]);
            true
        }
    }
}

fn settings(server: &Server, tls_mode: TlsMode, auth: Option<SmtpAuth>) -> SmtpSettings {
    SmtpSettings {
        endpoint: Endpoint {
            host: "localhost".into(),
            port: server.port,
        },
        tls_mode,
        tls: TlsOptions {
            trust: Trust::Fingerprint(server.fingerprint),
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const GREETING: Step = Step::Say("220 scripted ESMTP\r\n");
const EHLO_PLAIN: Step = Step::Say("250-scripted\r\n250 8BITMIME\r\n");

/// Connect and send one message; returns the outcome kind (None = success) and the transcript.
fn session(script: Vec<Step>, size_hint: Option<u64>) -> (Option<ErrorKind>, String) {
    let server = serve(script);
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
    let rec = server.handle.join().unwrap();
    (outcome, text(&rec.all))
}

fn upto_mail() -> Vec<Step> {
    vec![GREETING, Step::Hear(1), EHLO_PLAIN, Step::Hear(1)]
}

#[test]
fn full_transaction_without_pipelining() {
    let mut script = upto_mail();
    script.extend([
        Step::Say("250 2.1.0 ok\r\n"),
        Step::Hear(1),
        Step::Say("250 2.1.5 ok\r\n"),
        Step::Hear(1),
        Step::Say("354 go\r\n"),
        Step::HearData,
        Step::Say("250 2.0.0 queued as ABC\r\n"),
    ]);
    let (outcome, transcript) = session(script, None);
    assert_eq!(outcome, None);
    assert_eq!(
        transcript,
        "EHLO client.test\r\nMAIL FROM:<me@example.org>\r\nRCPT TO:<rcpt@example.org>\r\n\
         DATA\r\nSubject: t\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    );
}

#[test]
fn temporary_rejections_are_transient_at_every_phase() {
    let after = |n: usize, bad: &'static str| {
        let mut s = upto_mail();
        let oks = [
            Step::Say("250 ok\r\n"),
            Step::Hear(1),
            Step::Say("250 ok\r\n"),
            Step::Hear(1),
            Step::Say("354 go\r\n"),
            Step::HearData,
        ];
        s.extend(oks.iter().take(n * 2).cloned());
        s.push(Step::Say(bad));
        s
    };
    let cases: Vec<(&str, Vec<Step>)> = vec![
        ("greeting", vec![Step::Say("421 4.3.2 busy\r\n")]),
        (
            "ehlo",
            vec![GREETING, Step::Hear(1), Step::Say("421 4.3.2 closing\r\n")],
        ),
        ("mail", after(0, "451 4.3.0 later\r\n")),
        ("rcpt", after(1, "450 4.2.0 greylisted\r\n")),
        ("data", after(2, "451 4.3.0 later\r\n")),
        ("end of data", after(3, "452 4.3.1 full\r\n")),
    ];
    for (phase, script) in cases {
        let (outcome, _) = session(script, None);
        assert_eq!(outcome, Some(ErrorKind::RejectedTemporary), "{phase}");
        assert!(outcome.is_some_and(|k| k.is_transient()), "{phase}");
    }
}

#[test]
fn permanent_rejections_are_permanent_at_every_phase() {
    let after = |n: usize, bad: &'static str| {
        let mut s = upto_mail();
        let oks = [
            Step::Say("250 ok\r\n"),
            Step::Hear(1),
            Step::Say("250 ok\r\n"),
            Step::Hear(1),
            Step::Say("354 go\r\n"),
            Step::HearData,
        ];
        s.extend(oks.iter().take(n * 2).cloned());
        s.push(Step::Say(bad));
        s
    };
    let cases: Vec<(&str, Vec<Step>)> = vec![
        ("greeting", vec![Step::Say("554 5.3.2 no service\r\n")]),
        (
            "ehlo then helo",
            vec![
                GREETING,
                Step::Hear(1),
                Step::Say("502 5.5.1 no EHLO\r\n"),
                Step::Hear(1),
                Step::Say("554 5.5.1 no HELO either\r\n"),
            ],
        ),
        ("mail", after(0, "553 5.1.8 bad sender\r\n")),
        ("rcpt", after(1, "550 5.1.1 no such user\r\n")),
        ("data", after(2, "554 5.5.1 no valid recipients\r\n")),
        ("end of data", after(3, "554 5.7.1 spam\r\n")),
    ];
    for (phase, script) in cases {
        let (outcome, _) = session(script, None);
        assert_eq!(outcome, Some(ErrorKind::RejectedPermanent), "{phase}");
    }
}

#[test]
fn helo_fallback_works() {
    let script = vec![
        GREETING,
        Step::Hear(1),
        Step::Say("500 what\r\n"),
        Step::Hear(1),
        Step::Say("250 hello\r\n"),
        Step::Hear(1),
        Step::Say("250 ok\r\n"),
        Step::Hear(1),
        Step::Say("250 ok\r\n"),
        Step::Hear(1),
        Step::Say("354 go\r\n"),
        Step::HearData,
        Step::Say("250 queued\r\n"),
    ];
    let (outcome, transcript) = session(script, None);
    assert_eq!(outcome, None);
    assert!(transcript.starts_with("EHLO client.test\r\nHELO client.test\r\nMAIL FROM:"));
}

#[test]
fn size_limit_refuses_before_mail() {
    let script = vec![
        GREETING,
        Step::Hear(1),
        Step::Say("250-scripted\r\n250 SIZE 100\r\n"),
    ];
    let (outcome, transcript) = session(script, Some(1000));
    assert_eq!(outcome, Some(ErrorKind::RejectedPermanent));
    assert!(!transcript.contains("MAIL"), "{transcript}");
}

#[test]
fn pipelining_sends_mail_rcpts_and_data_in_one_write() {
    let server = serve(vec![
        GREETING,
        Step::Hear(1),
        Step::Say("250-scripted\r\n250-PIPELINING\r\n250 SIZE 100000\r\n"),
        Step::HearChunk,
        Step::Say("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::HearData,
        Step::Say("250 queued\r\n"),
    ]);
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
    let rec = server.handle.join().unwrap();
    assert_eq!(
        text(&rec.chunks[0]),
        "MAIL FROM:<me@example.org> SIZE=4\r\nRCPT TO:<a@example.org>\r\n\
         RCPT TO:<b@example.org>\r\nDATA\r\n"
    );
    assert!(text(&rec.all).ends_with("DATA\r\nx\r\n..\r\n.\r\nQUIT\r\n"));
}

#[test]
fn starttls_required_but_not_offered_sends_no_credentials() {
    let server = serve(vec![
        GREETING,
        Step::Hear(1),
        Step::Say("250-scripted\r\n250 AUTH PLAIN LOGIN\r\n"),
    ]);
    let s = settings(&server, TlsMode::Starttls, alice(AuthMethod::Auto, true));
    let err = SmtpClient::connect(&s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    let rec = server.handle.join().unwrap();
    let transcript = text(&rec.all);
    assert!(!transcript.contains("AUTH"), "{transcript}");
    assert!(!transcript.contains("s3cret"), "{transcript}");
}

/// A loopback peer (a local bridge) takes a password without TLS and without the danger
/// switch: the rule is decided on the socket's peer address ("localhost" resolves to it). The
/// refusal for other addresses is the same function, unit-tested in session::auth.
#[test]
fn plaintext_auth_to_a_loopback_peer_without_the_switch() {
    for method in [AuthMethod::Auto, AuthMethod::Mechanism(Mechanism::Plain)] {
        let server = serve(vec![
            GREETING,
            Step::Hear(1),
            Step::Say("250-scripted\r\n250 AUTH PLAIN LOGIN\r\n"),
            Step::Hear(1),
            Step::Say("235 2.7.0 ok\r\n"),
        ]);
        let s = settings(&server, TlsMode::Off, alice(method, false));
        let client = SmtpClient::connect(&s).unwrap();
        assert_eq!(client.auth_mechanism(), Some(Mechanism::Plain));
        client.quit().unwrap();
        let transcript = text(&server.handle.join().unwrap().all);
        let auth = "AUTH PLAIN AGFsaWNlAHMzY3JldC1wdw==\r\n";
        assert!(transcript.contains(auth), "{method:?}: {transcript}");
    }
}

#[test]
fn failed_auth_is_an_auth_error() {
    let server = serve(vec![
        GREETING,
        Step::Hear(1),
        Step::Say("250-scripted\r\n250 AUTH LOGIN\r\n"),
        Step::Hear(1),
        Step::Say("334 VXNlcm5hbWU6\r\n"),
        Step::Hear(1),
        Step::Say("334 UGFzc3dvcmQ6\r\n"),
        Step::Hear(1),
        Step::Say("535 5.7.8 authentication failed\r\n"),
    ]);
    let s = settings(&server, TlsMode::Off, alice(AuthMethod::Auto, true));
    let err = SmtpClient::connect(&s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    let transcript = text(&server.handle.join().unwrap().all);
    assert!(
        transcript.contains("AUTH LOGIN\r\nYWxpY2U=\r\nczNjcmV0LXB3\r\nQUIT\r\n"),
        "{transcript}"
    );
}

#[test]
fn silent_server_times_out() {
    let server = serve(vec![
        GREETING,
        Step::Hear(1),
        Step::Stall(Duration::from_secs(3)),
    ]);
    let s = settings(&server, TlsMode::Off, None);
    let start = Instant::now();
    let err = SmtpClient::connect(&s).unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(err.is_transient());
    assert!(took < Duration::from_millis(2500), "{took:?}");
    server.handle.join().unwrap();
}

#[test]
fn overlong_reply_is_a_protocol_error() {
    static LONG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let long: &'static str = LONG.get_or_init(|| format!("220 {}\r\n", "x".repeat(1 << 20)));
    let server = serve(vec![Step::Say(long)]);
    let s = settings(&server, TlsMode::Off, None);
    let err = SmtpClient::connect(&s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:?}");
    server.handle.join().unwrap();

    // Endless continuation lines.
    static MANY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let many: &'static str = MANY.get_or_init(|| "220-more\r\n".repeat(10_000));
    let server = serve(vec![Step::Say(many)]);
    let s = settings(&server, TlsMode::Off, None);
    let err = SmtpClient::connect(&s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:?}");
    server.handle.join().unwrap();
}

#[test]
fn lmtp_reports_each_recipient() {
    let server = serve(vec![
        Step::Say("220 lmtp ready\r\n"),
        Step::Hear(1),
        Step::Say("250-lmtp\r\n250 PIPELINING\r\n"),
        Step::HearChunk,
        Step::Say("250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n"),
        Step::HearData,
        Step::Say("250 2.0.0 alice saved\r\n250 2.0.0 bob saved\r\n"),
    ]);
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
    let rec = server.handle.join().unwrap();
    assert!(text(&rec.all).starts_with("LHLO client.test\r\n"));
}

#[test]
fn starttls_injection_is_not_read_as_the_ehlo_reply() {
    for delayed in [false, true] {
        let mut script = vec![
            GREETING,
            Step::Hear(1),
            Step::Say("250-scripted\r\n250 STARTTLS\r\n"),
            Step::Hear(1),
        ];
        if delayed {
            script.push(Step::Say("220 go ahead\r\n"));
            script.push(Step::Stall(Duration::from_millis(50)));
            script.push(Step::Say("250 INJECTED\r\n"));
        } else {
            script.push(Step::Say("220 go ahead\r\n250 INJECTED\r\n"));
        }
        script.extend([
            Step::Tls,
            Step::Hear(1),
            Step::Say("250-after-tls\r\n250 8BITMIME\r\n"),
        ]);
        let server = serve(script);
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
            }
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::Protocol | ErrorKind::Tls),
                "delayed={delayed}: {e:?}"
            ),
        }
        server.handle.join().unwrap();
    }
}

#[test]
fn starttls_session_works() {
    let server = serve(vec![
        GREETING,
        Step::Hear(1),
        Step::Say("250-scripted\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"),
        Step::Hear(1),
        Step::Say("220 go ahead\r\n"),
        Step::Tls,
        Step::Hear(1),
        Step::Say("250-after-tls\r\n250 AUTH PLAIN LOGIN\r\n"),
        Step::Hear(1),
        Step::Say("235 ok\r\n"),
    ]);
    let s = settings(&server, TlsMode::Starttls, alice(AuthMethod::Auto, false));
    let client = SmtpClient::connect(&s).unwrap();
    assert!(client.is_tls());
    assert_eq!(client.capabilities().auth, vec!["PLAIN", "LOGIN"]);
    assert_eq!(client.auth_mechanism(), Some(Mechanism::Plain));
    client.quit().unwrap();
    server.handle.join().unwrap();
}

/// Collects wire trace lines so tests can check what would be logged.
struct TraceCapture(std::sync::Mutex<Vec<String>>);

impl log::Log for TraceCapture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target() == postie::log::WIRE
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata())
            && let Ok(mut lines) = self.0.lock()
        {
            lines.push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

static TRACE: TraceCapture = TraceCapture(std::sync::Mutex::new(Vec::new()));

#[test]
fn wire_trace_redacts_auth_payloads() {
    let _ = log::set_logger(&TRACE);
    log::set_max_level(log::LevelFilter::Trace);
    for (mechs, method) in [
        ("PLAIN", AuthMethod::Mechanism(Mechanism::Plain)),
        ("LOGIN", AuthMethod::Mechanism(Mechanism::Login)),
    ] {
        let ehlo: &'static str = if mechs == "PLAIN" {
            "250-scripted\r\n250 AUTH PLAIN\r\n"
        } else {
            "250-scripted\r\n250 AUTH LOGIN\r\n"
        };
        let mut script = vec![GREETING, Step::Hear(1), Step::Say(ehlo), Step::Hear(1)];
        if mechs == "LOGIN" {
            script.extend([
                Step::Say("334 VXNlcm5hbWU6\r\n"),
                Step::Hear(1),
                Step::Say("334 UGFzc3dvcmQ6\r\n"),
                Step::Hear(1),
            ]);
        }
        script.push(Step::Say("235 2.7.0 ok\r\n"));
        let server = serve(script);
        let s = settings(&server, TlsMode::Off, alice(method, true));
        TRACE.0.lock().unwrap().clear();
        let client = SmtpClient::connect(&s).unwrap();
        client.quit().unwrap();
        server.handle.join().unwrap();
        // Other tests of this binary may trace at the same time: look for our lines only.
        let lines: Vec<String> = TRACE.0.lock().unwrap().clone();
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
