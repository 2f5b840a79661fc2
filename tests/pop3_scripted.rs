//! POP3 session against hermetic scripted servers on 127.0.0.1: STLS missing when required,
//! hostile numbers and lines, a server that stops answering, temporary refusals, pipelined
//! retrieval with refused and empty messages. Never a crash, hang or unbounded memory.

mod common;

use std::time::{Duration, Instant};

use common::transcript::{Player, Transcript};
use common::wire_trace::WireTrace;

use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode};
use postie::proto::sasl::Mechanism;
use postie::session::pop3::{FetchAuth, MessageSink, Pop3Session, Pop3Settings, Secret};

/// Plays `tests/transcripts/pop3/NAME.txt` on a loopback port.
fn play(name: &str) -> Player {
    Transcript::load(&format!("pop3/{name}")).play()
}

/// Plays NAME and logs in to it (plain TCP).
fn logged_in(name: &str) -> (Player, Pop3Session) {
    let server = play(name);
    let mut s = Pop3Session::connect(&settings(server.port(), TlsMode::Off)).expect("connect");
    s.login().expect("login");
    (server, s)
}

fn settings(port: u16, mode: TlsMode) -> Pop3Settings {
    let mut s = Pop3Settings::new(
        Endpoint {
            host: "127.0.0.1".into(),
            port,
        },
        "bob",
        Secret::new("s3cret"),
    );
    s.tls_mode = mode;
    s.allow_plaintext = true;
    s.connect.io_timeout = Duration::from_secs(1);
    s.connect.connect_timeout = Duration::from_secs(2);
    s
}

#[test]
fn stls_missing_when_required_sends_no_password() {
    let server = play("stls_missing");
    let e =
        Pop3Session::connect(&settings(server.port(), TlsMode::Starttls)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    let seen = server.finish();
    assert!(
        seen.iter()
            .all(|c| !c.starts_with("PASS") && !c.starts_with("USER")),
        "{seen:?}"
    );
}

#[test]
fn stls_refused_is_unsupported() {
    let server = play("stls_refused");
    let e =
        Pop3Session::connect(&settings(server.port(), TlsMode::Starttls)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert!(server.finish().iter().all(|c| !c.starts_with("PASS")));
}

#[test]
fn absurd_sizes_are_reported_not_trusted() {
    let (server, mut s) = logged_in("absurd_sizes");
    assert_eq!(s.stat().expect("stat"), (u32::MAX, 1_000_000_000_000_000));
    assert_eq!(
        s.list_all().expect("list"),
        vec![(1, 1_000_000_000_000_000), (2, u64::MAX)]
    );
    // "-1" is a valid unique-id (printable); the session carries on.
    assert_eq!(s.uidl_all().expect("uidl"), vec![(1, "-1".to_string())]);
    drop(s);
    server.finish();
}

#[test]
fn negative_or_overflowing_numbers_are_protocol_errors() {
    let (server, mut s) = logged_in("negative_numbers");
    assert_eq!(s.list_all().expect_err("bad").kind(), ErrorKind::Protocol);
    // The session refuses further use after a protocol error (and sends nothing: the
    // transcript ends with the client closing).
    assert_eq!(s.stat().expect_err("poisoned").kind(), ErrorKind::Protocol);
    drop(s);
    server.finish();
}

#[test]
fn overlong_line_is_protocol_error() {
    let (server, mut s) = logged_in("overlong_line");
    assert_eq!(
        s.uidl_all().expect_err("too long").kind(),
        ErrorKind::Protocol
    );
    drop(s);
    server.finish();
}

#[test]
fn long_uid_is_refused() {
    let server = Transcript::load_with("pop3/long_uid", &[("LONG_UID", &"u".repeat(300))]).play();
    let mut s = Pop3Session::connect(&settings(server.port(), TlsMode::Off)).expect("connect");
    s.login().expect("login");
    assert_eq!(
        s.uidl_all().expect_err("uid too long").kind(),
        ErrorKind::Protocol
    );
    drop(s);
    server.finish();
}

#[test]
fn silent_server_times_out() {
    let (server, mut s) = logged_in("silent_server");
    let t = Instant::now();
    let e = s.stat().expect_err("timeout");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    drop(s);
    server.finish();
}

#[test]
fn silent_greeting_times_out() {
    let server = play("silent_greeting");
    let t = Instant::now();
    let e = Pop3Session::connect(&settings(server.port(), TlsMode::Off)).expect_err("timeout");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    server.finish();
}

#[test]
fn temporary_and_auth_refusals() {
    let server = play("in_use");
    let mut s = Pop3Session::connect(&settings(server.port(), TlsMode::Off)).expect("connect");
    assert_eq!(
        s.login().expect_err("in use").kind(),
        ErrorKind::RejectedTemporary
    );
    drop(s);
    server.finish();

    let server = play("bad_password");
    let mut s = Pop3Session::connect(&settings(server.port(), TlsMode::Off)).expect("connect");
    assert_eq!(s.login().expect_err("bad").kind(), ErrorKind::Auth);
    drop(s);
    server.finish();

    let server = play("greeting_overloaded");
    let e = Pop3Session::connect(&settings(server.port(), TlsMode::Off)).expect_err("greeting");
    assert_eq!(e.kind(), ErrorKind::RejectedTemporary);
    server.finish();
}

#[test]
fn apop_sends_digest_not_password() {
    let server = play("apop");
    let mut set = settings(server.port(), TlsMode::Off);
    set.password = Secret::new("tanstaaf");
    set.allow_plaintext = false;
    let mut s = Pop3Session::connect(&set).expect("connect");
    s.login().expect("APOP chosen automatically without TLS");
    drop(s);
    let seen = server.finish();
    assert!(
        seen.contains(&"APOP bob c4c9334bac560ecc979e58001b3e22fb".to_string()),
        "{seen:?}"
    );
    assert!(seen.iter().all(|c| !c.contains("tanstaaf")));
}

/// A local bridge (DavMail, a mail bridge) listens on loopback without TLS: USER/PASS goes to
/// it without the danger switch, reached by name as by address. The refusal for other peer
/// addresses is decided by the same function (session::auth::Cleartext, unit-tested there).
#[test]
fn plaintext_allowed_to_a_loopback_peer_without_the_switch() {
    for host in ["127.0.0.1", "localhost"] {
        let server = play("login_user_pass");
        let mut set = settings(server.port(), TlsMode::Off);
        set.endpoint.host = host.into();
        set.allow_plaintext = false;
        set.auth = FetchAuth::Password;
        let mut s = Pop3Session::connect(&set).expect("connect");
        s.login().expect("USER/PASS to a loopback peer");
        drop(s);
        assert!(server.finish().iter().any(|c| c == "PASS s3cret"), "{host}");
    }
}

#[derive(Default)]
struct Collect {
    current: Vec<u8>,
    done: Vec<(u32, Vec<u8>)>,
}

impl MessageSink for Collect {
    fn start(&mut self, _msgno: u32) -> postie::Result<()> {
        self.current.clear();
        Ok(())
    }
    fn data(&mut self, chunk: &[u8]) -> postie::Result<()> {
        self.current.extend_from_slice(chunk);
        Ok(())
    }
    fn end(&mut self, msgno: u32, octets: u64) -> postie::Result<()> {
        assert_eq!(octets, self.current.len() as u64);
        self.done.push((msgno, std::mem::take(&mut self.current)));
        Ok(())
    }
}

#[test]
fn pipelined_retr_with_refused_and_empty_messages() {
    let server = play("pipelined_retr");
    let mut set = settings(server.port(), TlsMode::Off);
    set.pipeline_window = 2;
    let mut s = Pop3Session::connect(&set).expect("connect");
    s.login().expect("login");
    let mut sink = Collect::default();
    let refused = s.retr_pipelined(&[1, 2, 3], &mut sink).expect("retr");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].msgno, 2);
    assert_eq!(refused[0].error.kind(), ErrorKind::RejectedTemporary);
    assert_eq!(
        sink.done,
        vec![(1, b"Subject: a\r\n\r\n.dot\r\n".to_vec()), (3, Vec::new())]
    );
    // A message the server never terminates: no hang, a timeout.
    let mut out = Vec::new();
    let e = s.retr(4, &mut out).expect_err("unterminated");
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(out, b"no final newline from a broken server.\r\n");
    drop(s);
    assert!(server.finish().contains(&"RETR 3".to_string()));
}

#[test]
fn deferred_deles_are_read_before_the_next_replies() {
    let (server, mut s) = logged_in("deferred_dele");
    // The RETR goes out before the DELE's reply is read; that reply is consumed first.
    s.dele_many_deferred(&[1]).expect("dele");
    let mut sink = Collect::default();
    let refused = s.retr_pipelined(&[4], &mut sink).expect("retr");
    assert!(refused.is_empty());
    assert_eq!(
        sink.done,
        vec![(4, b"Subject: four\r\n\r\nbody\r\n".to_vec())]
    );
    // A refused deferred DELE fails the next call that reads replies, before it sends anything.
    s.dele_many_deferred(&[2, 3]).expect("dele");
    let e = s.stat().expect_err("the refused DELE is reported");
    assert!(e.chain().contains("DELE"), "{}", e.chain());
    // At QUIT it is only a warning: QUIT still commits the other deletions.
    s.dele_many_deferred(&[2]).expect("dele");
    assert_eq!(s.quit().expect("quit"), "bye");
    let seen = server.finish();
    let after_login: Vec<&str> = seen
        .iter()
        .skip_while(|c| !c.starts_with("PASS"))
        .skip(1)
        .map(String::as_str)
        .collect();
    assert_eq!(
        after_login,
        ["DELE 1", "RETR 4", "DELE 2", "DELE 3", "DELE 2", "QUIT"]
    );
}

#[test]
fn message_size_limit_aborts() {
    let server = play("size_limit");
    let mut set = settings(server.port(), TlsMode::Off);
    set.limits.max_message_size = Some(10_000);
    let mut s = Pop3Session::connect(&set).expect("connect");
    s.login().expect("login");
    let mut out = Vec::new();
    let e = s.retr(1, &mut out).expect_err("too large");
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(out.len() <= 10_000 + 64 * 1024);
    drop(s);
    server.finish();
}

#[test]
fn connection_closed_mid_message_is_network_error() {
    let (server, mut s) = logged_in("closed_mid_message");
    let mut out = Vec::new();
    let e = s.retr(1, &mut out).expect_err("incomplete");
    assert_eq!(e.kind(), ErrorKind::NetworkIo, "{e:?}");
    assert_eq!(out, b"partial");
    drop(s);
    server.finish();
}

/// POP3 AUTH PLAIN, with the initial response on the AUTH line and (for a user name too long
/// for that line, RFC 5034 §4) after an empty challenge: the trace shows the commands with the
/// response as `*`, never the password in any form.
#[test]
fn auth_plain_trace_hides_the_response() {
    use base64::Engine as _;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let trace = WireTrace::install();
    let password = "p\u{e4}ss-w\u{f6}rd-99";
    for user in ["bob".to_string(), "u".repeat(200)] {
        let server = play(if user == "bob" {
            "auth_plain_initial"
        } else {
            "auth_plain_after_challenge"
        });
        let mut s = settings(server.port(), TlsMode::Off);
        s.auth = FetchAuth::Sasl(Mechanism::Plain);
        s.user = user.clone();
        s.password = Secret::new(password);
        let mut session = Pop3Session::connect(&s).expect("connect");
        session.login().expect("login");
        session.quit().expect("quit");
        let sent = server.finish();
        let lines = trace.lines();
        let message = format!("\0{user}\0{password}");
        let forbidden = [
            password.to_string(),
            b64(message.as_bytes()),
            b64(password.as_bytes()),
            format!("{:?}", password.as_bytes())
                .trim_matches(['[', ']'])
                .to_string(),
        ];
        for l in &lines {
            for f in &forbidden {
                assert!(!l.contains(f.as_str()), "{l:?} shows {f:?}");
            }
        }
        if user == "bob" {
            assert!(
                sent.iter().any(|c| c.starts_with("AUTH PLAIN AGJvYgBw")),
                "{sent:?}"
            );
            assert!(lines.iter().any(|l| l == "POP3> AUTH PLAIN *"), "{lines:?}");
        } else {
            assert!(sent.iter().any(|c| c == "AUTH PLAIN"), "{sent:?}");
            assert!(
                lines.iter().any(|l| l == "POP3< + <SASL challenge>"),
                "{lines:?}"
            );
            assert!(lines.iter().any(|l| l == "POP3> *"), "{lines:?}");
        }
    }
}

#[test]
fn quit_without_waiting_reads_every_dele_reply_then_closes_unanswered() {
    let (server, mut s) = logged_in("quit_unanswered");
    s.dele_many_deferred(&[1, 2]).expect("dele");
    let started = Instant::now();
    let reply = s.quit_within(Some(Duration::ZERO)).expect("quit");
    assert_eq!(reply, None, "the server never answered QUIT");
    // The server answers nothing after the DELE replies: a client waiting for QUIT's reply
    // would sit here for its io timeout (1 s) and fail; this one closed at once.
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "waited {:?} for a reply it was told not to wait for",
        started.elapsed()
    );
    let seen = server.finish();
    assert_eq!(seen.last().map(String::as_str), Some("QUIT"), "{seen:?}");
}

#[test]
fn quit_waits_for_a_reply_within_its_bound_and_no_longer() {
    let (server, mut s) = logged_in("quit_slow_reply");
    s.dele_many_deferred(&[1]).expect("dele");
    let reply = s.quit_within(Some(Duration::from_secs(5))).expect("quit");
    assert_eq!(reply.as_deref(), Some("1 message deleted"));
    server.finish();

    let (server, mut s) = logged_in("quit_slow_reply");
    s.dele_many_deferred(&[1]).expect("dele");
    let started = Instant::now();
    let reply = s
        .quit_within(Some(Duration::from_millis(50)))
        .expect("quit");
    assert_eq!(reply, None, "the answer comes 300 ms late");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    drop(server);
}
