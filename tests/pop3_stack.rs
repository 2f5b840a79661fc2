//! POP3 session against the real Dovecot (POP3S and POP3+STLS): login, byte-exact retrieval of
//! seeded messages (dot lines, 8-bit bytes, no final newline, 5 MB), pipelined RETR, DELE/QUIT
//! removing messages and keep leaving them. Uses user bob; serialised with the IMAP tests by a
//! file lock since they share the mailbox.

mod common;

use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode, TlsOptions, Trust};
use postie::proto::sasl::Mechanism;
use postie::session::pop3::{FetchAuth, MessageSink, Pop3Session, Pop3Settings, Secret};

/// Holds bob's mailbox for one test (across test binaries: an flock on a file).
use common::mailbox::{crlf, lock_bob, messages, seed};

fn settings(stack: &common::Stack, mode: TlsMode) -> Pop3Settings {
    let port = match mode {
        TlsMode::Implicit => stack.port("POP3S_PORT"),
        _ => stack.port("POP3_PORT"),
    };
    let mut s = Pop3Settings::new(
        Endpoint {
            host: "127.0.0.1".into(),
            port,
        },
        "bob",
        Secret::new("bobpw"),
    );
    s.tls_mode = mode;
    s.tls = TlsOptions {
        trust: Trust::File(stack.ca()),
        ..TlsOptions::default()
    };
    s.connect.io_timeout = std::time::Duration::from_secs(20);
    s
}

/// What Dovecot's RETR returns for a seeded file: CRLF line ends, and a CRLF added when the
/// file does not end with a newline (the multi-line terminator must start a line).
fn pop3_expected(file: &[u8]) -> Vec<u8> {
    let mut v = crlf(file);
    if !v.ends_with(b"\r\n") {
        v.extend_from_slice(b"\r\n");
    }
    v
}

#[derive(Default)]
struct Collect {
    current: Vec<u8>,
    done: Vec<(u32, Vec<u8>, u64)>,
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
        self.done
            .push((msgno, std::mem::take(&mut self.current), octets));
        Ok(())
    }
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[test]
fn pop3s_fetches_byte_exact_and_keep_leaves_messages() {
    let stack = common::Stack::get();
    let _lock = lock_bob(&stack);
    let msgs = messages();
    seed(&stack, &msgs);
    let want = sorted(msgs.iter().map(|m| pop3_expected(m)).collect());

    let mut s = Pop3Session::connect(&settings(&stack, TlsMode::Implicit)).expect("connect");
    assert!(s.is_tls());
    s.login().expect("login");
    assert_eq!(s.stat().expect("stat").0, 5);
    let uidl = s.uidl_all().expect("uidl");
    assert_eq!(uidl.len(), 5);
    assert_eq!(s.uidl(uidl[0].0).expect("uidl 1"), uidl[0].1);
    let list = s.list_all().expect("list");
    assert_eq!(list.len(), 5);

    // One at a time.
    let mut got = Vec::new();
    for &(n, size) in &list {
        let mut out = Vec::new();
        let octets = s.retr(n, &mut out).expect("retr");
        assert_eq!(octets, out.len() as u64);
        // Dovecot counts the CRLF it appends to a message without a final newline in RETR
        // but not in LIST.
        let len = out.len() as u64;
        assert!(
            size == len || size + 2 == len,
            "LIST size {size} vs RETR {len} for {n}"
        );
        got.push(out);
    }
    assert_eq!(sorted(got), want);

    // Pipelined.
    let mut sink = Collect::default();
    let msgnos: Vec<u32> = list.iter().map(|&(n, _)| n).collect();
    let refused = s
        .retr_pipelined(&msgnos, &mut sink)
        .expect("retr pipelined");
    assert!(refused.is_empty());
    assert_eq!(
        sink.done.iter().map(|d| d.0).collect::<Vec<_>>(),
        msgnos,
        "in order"
    );
    assert_eq!(sorted(sink.done.into_iter().map(|d| d.1).collect()), want);

    let mut head = Vec::new();
    s.top(list[0].0, 0, &mut head).expect("top");
    assert!(
        head.ends_with(b"\r\n\r\n"),
        "TOP 0 is the header and the blank line"
    );

    s.quit().expect("quit");

    let mut s = Pop3Session::connect(&settings(&stack, TlsMode::Implicit)).expect("connect");
    s.login().expect("login");
    assert_eq!(s.stat().expect("stat").0, 5, "keep: nothing deleted");
    s.quit().expect("quit");
}

#[test]
fn pop3_stls_dele_quit_removes_messages() {
    let stack = common::Stack::get();
    let _lock = lock_bob(&stack);
    let msgs = messages();
    seed(&stack, &msgs[..4]);

    let mut s = Pop3Session::connect(&settings(&stack, TlsMode::Starttls)).expect("connect");
    assert!(s.is_tls(), "STLS upgraded the connection");
    assert!(s.capabilities().user, "CAPA re-asked after STLS");
    s.login().expect("login");
    let list = s.list_all().expect("list");
    assert_eq!(list.len(), 4);
    let mut out = Vec::new();
    s.retr(list[1].0, &mut out).expect("retr");
    assert!(msgs[..4].iter().any(|m| pop3_expected(m) == out));
    s.dele(list[0].0).expect("dele");
    s.rset().expect("rset undoes");
    s.dele_many(&list.iter().map(|&(n, _)| n).collect::<Vec<_>>())
        .expect("dele many");
    s.noop().expect("noop");
    let reply = s.quit().expect("quit commits");
    assert!(!reply.is_empty(), "QUIT reply text returned");

    let mut s = Pop3Session::connect(&settings(&stack, TlsMode::Starttls)).expect("connect");
    s.login().expect("login");
    assert_eq!(s.stat().expect("stat"), (0, 0), "DELE + QUIT removed them");
    s.quit().expect("quit");
}

#[test]
fn pop3_wrong_password_is_auth_error() {
    let stack = common::Stack::get();
    let _lock = lock_bob(&stack);
    let mut set = settings(&stack, TlsMode::Implicit);
    set.password = Secret::new("wrong");
    let mut s = Pop3Session::connect(&set).expect("connect");
    let e = s.login().expect_err("bad password");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e:?}");
}

#[test]
fn pop3_sasl_plain_login_works() {
    let stack = common::Stack::get();
    let _lock = lock_bob(&stack);
    let mut set = settings(&stack, TlsMode::Implicit);
    set.auth = FetchAuth::Sasl(Mechanism::Plain);
    let mut s = Pop3Session::connect(&set).expect("connect");
    s.login().expect("AUTH PLAIN");
    s.stat().expect("stat after AUTH");
    s.quit().expect("quit");
}

/// The stack listens on 127.0.0.1: a loopback peer takes USER/PASS without TLS and without
/// the danger switch (a local bridge); the refusal for other addresses is unit-tested.
#[test]
fn pop3_plaintext_password_to_a_loopback_peer() {
    let stack = common::Stack::get();
    let _lock = lock_bob(&stack);
    let mut set = settings(&stack, TlsMode::Off);
    set.auth = FetchAuth::Password;
    let mut s = Pop3Session::connect(&set).expect("connect");
    assert!(!s.is_tls());
    s.login().expect("USER/PASS to loopback");
    s.quit().expect("quit");
}
