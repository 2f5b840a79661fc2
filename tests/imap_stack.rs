//! IMAP session against the real Dovecot (IMAPS and IMAP+STARTTLS): login, SELECT, UID SEARCH,
//! one UID FETCH streaming every seeded message byte-exact (dot lines, 8-bit bytes, no final
//! newline, 5 MB), STORE \Seen, STORE \Deleted + EXPUNGE removing messages, IDLE seeing new
//! mail. Uses user bob; serialised with the POP3 tests by a file lock.

mod common;

use std::time::Duration;

use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode, TlsOptions, Trust};
use postie::proto::imap::Search;
use postie::session::imap::{
    FetchAuth, FetchSink, FetchedMeta, IdleEvent, ImapSession, ImapSettings, Secret,
};

/// Holds bob's mailbox for one test (across test binaries: an flock on a file).
use common::mailbox::{crlf, lock_bob, messages, seed};

fn settings(stack: &common::Stack, mode: TlsMode) -> ImapSettings {
    let port = match mode {
        TlsMode::Implicit => stack.port("IMAPS_PORT"),
        _ => stack.port("IMAP_PORT"),
    };
    let mut s = ImapSettings::new(
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
    s.connect.io_timeout = Duration::from_secs(20);
    s
}

#[derive(Default)]
struct Collect {
    current: Vec<u8>,
    done: Vec<(FetchedMeta, Vec<u8>, u64)>,
}

impl FetchSink for Collect {
    fn start(&mut self, _meta: &FetchedMeta) -> postie::Result<()> {
        self.current.clear();
        Ok(())
    }
    fn data(&mut self, chunk: &[u8]) -> postie::Result<()> {
        self.current.extend_from_slice(chunk);
        Ok(())
    }
    fn end(&mut self, meta: &FetchedMeta, octets: u64) -> postie::Result<()> {
        self.done
            .push((meta.clone(), std::mem::take(&mut self.current), octets));
        Ok(())
    }
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[test]
fn imaps_fetches_byte_exact_then_store_and_expunge_remove() {
    let stack = common::Stack::get();
    let _lock = lock_bob(&stack);
    let msgs = messages();
    seed(&stack, &msgs);
    let want = sorted(msgs.iter().map(|m| crlf(m)).collect());

    let mut s = ImapSession::connect(&settings(&stack, TlsMode::Implicit)).expect("connect");
    assert!(s.is_tls());
    s.login().expect("login");
    let info = s.select("INBOX").expect("select");
    assert_eq!(info.exists, 5);
    assert!(
        info.uidvalidity.is_some() && info.uidnext.is_some(),
        "{info:?}"
    );
    let uids = s.uid_search(Search::All).expect("search all");
    assert_eq!(uids.len(), 5);
    assert_eq!(s.uid_search(Search::Unseen).expect("unseen").len(), 5);
    let first = *uids.iter().min().expect("uids");
    assert_eq!(s.uid_search(Search::UidFrom(first)).expect("from").len(), 5);

    let mut sink = Collect::default();
    let delivered = s.fetch_bodies(&uids, &mut sink).expect("fetch");
    assert_eq!(delivered.len(), 5);
    for (meta, body, octets) in &sink.done {
        assert_eq!(*octets, body.len() as u64);
        assert_eq!(
            meta.size,
            Some(body.len() as u64),
            "RFC822.SIZE for uid {}",
            meta.uid
        );
        assert!(
            !meta.flags.iter().any(|f| f == "\\Seen"),
            "BODY.PEEK leaves \\Seen unset"
        );
    }
    assert_eq!(
        sorted(sink.done.into_iter().map(|d| d.1).collect()),
        want,
        "byte-exact"
    );

    // Keep: mark seen only; the messages stay.
    s.store_flags(&uids, &["\\Seen"]).expect("store seen");
    assert!(s.uid_search(Search::Unseen).expect("unseen").is_empty());
    assert_eq!(s.noop().expect("noop"), None);
    s.logout().expect("logout");

    let mut s = ImapSession::connect(&settings(&stack, TlsMode::Implicit)).expect("connect");
    s.login().expect("login");
    assert_eq!(
        s.select("INBOX").expect("select").exists,
        5,
        "keep leaves them"
    );
    let mut two = uids.clone();
    two.sort_unstable();
    two.truncate(2);
    s.store_flags(&two, &["\\Seen", "\\Deleted"])
        .expect("store deleted");
    s.expunge(&two).expect("expunge");
    let left = s.uid_search(Search::All).expect("search");
    assert_eq!(left.len(), 3);
    assert!(two.iter().all(|u| !left.contains(u)));
    s.logout().expect("logout");

    let mut s = ImapSession::connect(&settings(&stack, TlsMode::Implicit)).expect("connect");
    s.login().expect("login");
    assert_eq!(
        s.examine("INBOX").expect("examine").exists,
        3,
        "expunge removed two"
    );
    s.logout().expect("logout");
}

#[test]
fn imap_starttls_login_fetch_and_idle() {
    let stack = common::Stack::get();
    let _lock = lock_bob(&stack);
    let msgs = messages();
    seed(&stack, &msgs[..4]);

    let mut s = ImapSession::connect(&settings(&stack, TlsMode::Starttls)).expect("connect");
    assert!(s.is_tls(), "STARTTLS upgraded the connection");
    assert!(
        !s.has_capability("STARTTLS"),
        "CAPABILITY re-asked after TLS"
    );
    s.login().expect("login");
    assert!(s.has_capability("IDLE"));
    let info = s.select("INBOX").expect("select");
    assert_eq!(info.exists, 4);
    let mut sink = Collect::default();
    let delivered = s.fetch_bodies_set("1:*", &mut sink).expect("fetch 1:*");
    assert_eq!(delivered.len(), 4);
    assert_eq!(
        sorted(sink.done.into_iter().map(|d| d.1).collect()),
        sorted(msgs[..4].iter().map(|m| crlf(m)).collect())
    );

    // IDLE with nothing happening times out cleanly.
    assert_eq!(
        s.idle(Duration::from_millis(300)).expect("idle"),
        IdleEvent::Timeout
    );
    // New mail during IDLE is reported.
    let stack2 = stack.clone();
    let delivery = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let st = std::process::Command::new("doveadm")
            .arg("-c")
            .arg(stack2.var("STACK_DOVECONF"))
            .args(["save", "-u", "bob", "-m", "INBOX"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(b"Subject: idle\n\nnew mail\n")?;
                }
                child.wait()
            })
            .expect("doveadm save");
        assert!(st.success());
    });
    let ev = s.idle(Duration::from_secs(10)).expect("idle");
    delivery.join().expect("delivery thread");
    assert_eq!(ev, IdleEvent::Exists(5));
    s.logout().expect("logout");
}

#[test]
fn imap_wrong_password_is_auth_error_and_plain_works() {
    let stack = common::Stack::get();
    let _lock = lock_bob(&stack);
    let mut set = settings(&stack, TlsMode::Implicit);
    set.password = Secret::new("wrong");
    let mut s = ImapSession::connect(&set).expect("connect");
    let e = s.login().expect_err("bad password");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e:?}");

    let mut set = settings(&stack, TlsMode::Implicit);
    set.auth = FetchAuth::Sasl(postie::proto::sasl::Mechanism::Plain);
    let mut s = ImapSession::connect(&set).expect("connect");
    s.login().expect("AUTHENTICATE PLAIN");
    s.select("INBOX").expect("select after AUTHENTICATE");
    s.logout().expect("logout");
}

/// The stack listens on 127.0.0.1: a loopback peer takes LOGIN without TLS and without the
/// danger switch (a local bridge); the refusal for other addresses is unit-tested.
#[test]
fn imap_plaintext_login_to_a_loopback_peer() {
    let stack = common::Stack::get();
    let _lock = lock_bob(&stack);
    let mut set = settings(&stack, TlsMode::Off);
    set.auth = FetchAuth::Password;
    let mut s = ImapSession::connect(&set).expect("connect");
    assert!(!s.is_tls());
    s.login().expect("LOGIN to loopback");
    s.logout().expect("logout");
}
