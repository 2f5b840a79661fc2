//! POP3 session against hermetic scripted servers on 127.0.0.1: STLS missing when required,
//! hostile numbers and lines, a server that stops answering, temporary refusals, pipelined
//! retrieval with refused and empty messages. Never a crash, hang or unbounded memory.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode};
use postie::proto::sasl::Mechanism;
use postie::session::pop3::{FetchAuth, MessageSink, Pop3Session, Pop3Settings, Secret};

enum Reply {
    Send(Vec<u8>),
    /// Send, then close the connection.
    Close(Vec<u8>),
    /// Say nothing for a while (longer than the client's io timeout), then close.
    Stall,
}

fn send(s: &str) -> Reply {
    Reply::Send(s.as_bytes().to_vec())
}

/// Starts a one-connection server: `greeting`, then `respond` for every command line.
/// Returns the port and the command lines the client sent.
fn serve(
    greeting: &'static [u8],
    respond: impl Fn(&str) -> Reply + Send + 'static,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        let Ok((mut sock, _)) = listener.accept() else {
            return;
        };
        if sock.write_all(greeting).is_err() {
            return;
        }
        let mut reader = BufReader::new(sock.try_clone().expect("clone"));
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let cmd = line.trim_end().to_string();
            seen2.lock().expect("lock").push(cmd.clone());
            match respond(&cmd) {
                Reply::Send(bytes) => {
                    if sock.write_all(&bytes).is_err() {
                        return;
                    }
                }
                Reply::Close(bytes) => {
                    let _ = sock.write_all(&bytes);
                    return;
                }
                Reply::Stall => {
                    std::thread::sleep(Duration::from_secs(4));
                    return;
                }
            }
        }
    });
    (port, seen)
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

/// A server that knows CAPA (with PIPELINING), USER/PASS and answers `rest` for the others.
fn basic(rest: impl Fn(&str) -> Reply + Send + 'static) -> impl Fn(&str) -> Reply + Send {
    move |cmd| match cmd {
        "CAPA" => send("+OK\r\nUSER\r\nPIPELINING\r\nUIDL\r\nX-UNKNOWN foo bar\r\n.\r\n"),
        c if c.starts_with("USER ") || c.starts_with("PASS ") => send("+OK\r\n"),
        "QUIT" => send("+OK bye\r\n"),
        c => rest(c),
    }
}

#[test]
fn stls_missing_when_required_sends_no_password() {
    let (port, seen) = serve(b"+OK ready\r\n", basic(|_| send("-ERR no\r\n")));
    let e = Pop3Session::connect(&settings(port, TlsMode::Starttls)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    let seen = seen.lock().expect("lock");
    assert!(
        seen.iter()
            .all(|c| !c.starts_with("PASS") && !c.starts_with("USER")),
        "{seen:?}"
    );
}

#[test]
fn stls_refused_is_unsupported() {
    let (port, seen) = serve(b"+OK ready\r\n", |cmd| match cmd {
        "CAPA" => send("+OK\r\nSTLS\r\nUSER\r\n.\r\n"),
        _ => send("-ERR not now\r\n"),
    });
    let e = Pop3Session::connect(&settings(port, TlsMode::Starttls)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert!(
        seen.lock()
            .expect("lock")
            .iter()
            .all(|c| !c.starts_with("PASS"))
    );
}

#[test]
fn absurd_sizes_are_reported_not_trusted() {
    let (port, _) = serve(
        b"+OK ready\r\n",
        basic(|cmd| match cmd {
            "LIST" => send("+OK\r\n1 1000000000000000\r\n2 18446744073709551615\r\n.\r\n"),
            "STAT" => send("+OK 4294967295 1000000000000000\r\n"),
            "UIDL" => send("+OK\r\n1 -1\r\n.\r\n"),
            _ => send("-ERR\r\n"),
        }),
    );
    let mut s = Pop3Session::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    assert_eq!(s.stat().expect("stat"), (u32::MAX, 1_000_000_000_000_000));
    assert_eq!(
        s.list_all().expect("list"),
        vec![(1, 1_000_000_000_000_000), (2, u64::MAX)]
    );
    // "-1" is a valid unique-id (printable); the session carries on.
    assert_eq!(s.uidl_all().expect("uidl"), vec![(1, "-1".to_string())]);
}

#[test]
fn negative_or_overflowing_numbers_are_protocol_errors() {
    let (port, _) = serve(
        b"+OK ready\r\n",
        basic(|cmd| match cmd {
            "LIST" => send("+OK\r\n-1 5\r\n.\r\n"),
            _ => send("+OK 99999999999999999999999 1\r\n"),
        }),
    );
    let mut s = Pop3Session::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    assert_eq!(s.list_all().expect_err("bad").kind(), ErrorKind::Protocol);
    // The session refuses further use after a protocol error.
    assert_eq!(s.stat().expect_err("poisoned").kind(), ErrorKind::Protocol);
}

#[test]
fn overlong_line_is_protocol_error() {
    let (port, _) = serve(
        b"+OK ready\r\n",
        basic(|cmd| match cmd {
            "UIDL" => {
                let mut v = b"+OK\r\n1 ".to_vec();
                v.extend(std::iter::repeat_n(b'u', 200_000));
                Reply::Send(v)
            }
            _ => send("-ERR\r\n"),
        }),
    );
    let mut s = Pop3Session::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    assert_eq!(
        s.uidl_all().expect_err("too long").kind(),
        ErrorKind::Protocol
    );
}

#[test]
fn long_uid_is_refused() {
    let (port, _) = serve(
        b"+OK ready\r\n",
        basic(|cmd| match cmd {
            "UIDL" => Reply::Send(format!("+OK\r\n1 {}\r\n.\r\n", "u".repeat(300)).into_bytes()),
            _ => send("-ERR\r\n"),
        }),
    );
    let mut s = Pop3Session::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    assert_eq!(
        s.uidl_all().expect_err("uid too long").kind(),
        ErrorKind::Protocol
    );
}

#[test]
fn silent_server_times_out() {
    let (port, _) = serve(
        b"+OK ready\r\n",
        basic(|cmd| match cmd {
            "STAT" => Reply::Stall,
            _ => send("-ERR\r\n"),
        }),
    );
    let mut s = Pop3Session::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    let t = Instant::now();
    let e = s.stat().expect_err("timeout");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn silent_greeting_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let t = Instant::now();
    let e = Pop3Session::connect(&settings(port, TlsMode::Off)).expect_err("timeout");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    drop(listener);
}

#[test]
fn temporary_and_auth_refusals() {
    let (port, _) = serve(b"+OK ready\r\n", |cmd| match cmd {
        "CAPA" => send("-ERR what\r\n"),
        c if c.starts_with("USER") => send("+OK\r\n"),
        _ => send("-ERR [IN-USE] mailbox locked\r\n"),
    });
    let mut s = Pop3Session::connect(&settings(port, TlsMode::Off)).expect("connect");
    assert_eq!(
        s.login().expect_err("in use").kind(),
        ErrorKind::RejectedTemporary
    );

    let (port, _) = serve(b"+OK ready\r\n", |cmd| match cmd {
        c if c.starts_with("PASS") => send("-ERR [AUTH] bad password\r\n"),
        "CAPA" => send("+OK\r\n.\r\n"),
        _ => send("+OK\r\n"),
    });
    let mut s = Pop3Session::connect(&settings(port, TlsMode::Off)).expect("connect");
    assert_eq!(s.login().expect_err("bad").kind(), ErrorKind::Auth);

    let (port, _) = serve(b"-ERR [SYS/TEMP] overloaded\r\n", |_| send("-ERR\r\n"));
    let e = Pop3Session::connect(&settings(port, TlsMode::Off)).expect_err("greeting");
    assert_eq!(e.kind(), ErrorKind::RejectedTemporary);
}

#[test]
fn apop_sends_digest_not_password() {
    let (port, seen) = serve(
        b"+OK POP3 <1896.697170952@dbc.mtview.ca.us>\r\n",
        |cmd| match cmd {
            "CAPA" => send("+OK\r\n.\r\n"),
            _ => send("+OK\r\n"),
        },
    );
    let mut set = settings(port, TlsMode::Off);
    set.password = Secret::new("tanstaaf");
    set.allow_plaintext = false;
    let mut s = Pop3Session::connect(&set).expect("connect");
    s.login().expect("APOP chosen automatically without TLS");
    let seen = seen.lock().expect("lock");
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
        let (port, seen) = serve(b"+OK ready\r\n", basic(|_| send("+OK\r\n")));
        let mut set = settings(port, TlsMode::Off);
        set.endpoint.host = host.into();
        set.allow_plaintext = false;
        set.auth = FetchAuth::Password;
        let mut s = Pop3Session::connect(&set).expect("connect");
        s.login().expect("USER/PASS to a loopback peer");
        assert!(
            seen.lock()
                .expect("lock")
                .iter()
                .any(|c| c == "PASS s3cret"),
            "{host}"
        );
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
    let (port, seen) = serve(
        b"+OK ready\r\n",
        basic(|cmd| match cmd {
            "RETR 1" => send("+OK\r\nSubject: a\r\n\r\n..dot\r\n.\r\n"),
            "RETR 2" => send("-ERR [SYS/TEMP] gone\r\n"),
            "RETR 3" => send("+OK\r\n.\r\n"),
            "RETR 4" => send("+OK\r\nno final newline from a broken server.\r\n"),
            _ => send("-ERR\r\n"),
        }),
    );
    let mut set = settings(port, TlsMode::Off);
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
    assert!(seen.lock().expect("lock").contains(&"RETR 3".to_string()));
}

#[test]
fn deferred_deles_are_read_before_the_next_replies() {
    let (port, seen) = serve(
        b"+OK ready\r\n",
        basic(|cmd| match cmd {
            "DELE 1" | "DELE 3" => send("+OK deleted\r\n"),
            "DELE 2" => send("-ERR [SYS/PERM] cannot delete\r\n"),
            "RETR 4" => send("+OK\r\nSubject: four\r\n\r\nbody\r\n.\r\n"),
            "STAT" => send("+OK 1 10\r\n"),
            _ => send("-ERR\r\n"),
        }),
    );
    let mut s = Pop3Session::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
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
    let seen = seen.lock().expect("lock");
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
    let (port, _) = serve(
        b"+OK ready\r\n",
        basic(|cmd| match cmd {
            "RETR 1" => {
                let mut v = b"+OK\r\n".to_vec();
                for _ in 0..2000 {
                    v.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
                }
                v.extend_from_slice(b".\r\n");
                Reply::Send(v)
            }
            _ => send("-ERR\r\n"),
        }),
    );
    let mut set = settings(port, TlsMode::Off);
    set.limits.max_message_size = Some(10_000);
    let mut s = Pop3Session::connect(&set).expect("connect");
    s.login().expect("login");
    let mut out = Vec::new();
    let e = s.retr(1, &mut out).expect_err("too large");
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(out.len() <= 10_000 + 64 * 1024);
}

#[test]
fn connection_closed_mid_message_is_network_error() {
    let (port, _) = serve(
        b"+OK ready\r\n",
        basic(|cmd| match cmd {
            "RETR 1" => Reply::Close(b"+OK\r\npartial".to_vec()),
            _ => send("-ERR\r\n"),
        }),
    );
    let mut s = Pop3Session::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    let mut out = Vec::new();
    let e = s.retr(1, &mut out).expect_err("incomplete");
    assert_eq!(e.kind(), ErrorKind::NetworkIo, "{e:?}");
    assert_eq!(out, b"partial");
}

/// Collects protocol trace lines so tests can check what `-v -v` would show.
struct TraceCapture(Mutex<Vec<String>>);

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

static TRACE: TraceCapture = TraceCapture(Mutex::new(Vec::new()));

/// POP3 AUTH PLAIN, with the initial response on the AUTH line and (for a user name too long
/// for that line, RFC 5034 §4) after an empty challenge: the trace shows the commands with the
/// response as `*`, never the password in any form.
#[test]
fn auth_plain_trace_hides_the_response() {
    use base64::Engine as _;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let _ = log::set_logger(&TRACE);
    log::set_max_level(log::LevelFilter::Trace);
    let password = "p\u{e4}ss-w\u{f6}rd-99";
    for user in ["bob".to_string(), "u".repeat(200)] {
        let (port, seen) = serve(b"+OK ready\r\n", |cmd| match cmd {
            "CAPA" => send("+OK\r\nSASL PLAIN\r\n.\r\n"),
            "AUTH PLAIN" => send("+ \r\n"),
            "QUIT" => send("+OK bye\r\n"),
            _ => send("+OK welcome\r\n"),
        });
        let mut s = settings(port, TlsMode::Off);
        s.auth = FetchAuth::Sasl(Mechanism::Plain);
        s.user = user.clone();
        s.password = Secret::new(password);
        let mut session = Pop3Session::connect(&s).expect("connect");
        session.login().expect("login");
        session.quit().expect("quit");
        let sent = seen.lock().expect("lock").clone();
        let lines = TRACE.0.lock().expect("lock").clone();
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
