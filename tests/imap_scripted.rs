//! IMAP session against hermetic scripted servers on 127.0.0.1: STARTTLS missing or PREAUTH
//! before TLS (CVE-2021-39272), hostile numbers and literals, over-long lines, a server that
//! stops answering, login refusals, synchronising literals, bodies whose UID comes late and
//! untagged data we do not understand, and IDLE (wake-ups, BYE, silence, no capability). Never a
//! crash, hang or unbounded memory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode};
use postie::proto::imap::Search;
use postie::session::imap::{FetchSink, FetchedMeta, IdleEvent, ImapSession, ImapSettings, Secret};

enum Reply {
    Send(Vec<u8>),
    /// Send, then read exactly `n` more bytes (a literal the client sends), then send more.
    Literal(Vec<u8>, usize, Vec<u8>),
    /// Say nothing for longer than the client's io timeout, then close.
    Stall,
    /// Send the first bytes, wait, then send the second (IDLE: continuation, then news).
    Later(Vec<u8>, Duration, Vec<u8>),
    /// Send, then close the connection.
    Close(Vec<u8>),
}

/// Starts a one-connection server: `greeting`, then for each command line (tag, rest) the reply.
fn serve(
    greeting: &'static [u8],
    respond: impl Fn(&str, &str) -> Reply + Send + 'static,
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
            let (tag, rest) = cmd.split_once(' ').unwrap_or((&cmd, ""));
            let reply = respond(tag, rest);
            match reply {
                Reply::Send(bytes) => {
                    if sock.write_all(&bytes).is_err() {
                        return;
                    }
                }
                Reply::Literal(first, n, then) => {
                    let mut lit = vec![0u8; n];
                    if sock.write_all(&first).is_err() || reader.read_exact(&mut lit).is_err() {
                        return;
                    }
                    let mut tail = String::new();
                    let _ = reader.read_line(&mut tail);
                    seen2.lock().expect("lock").push(format!(
                        "LITERAL {}{}",
                        String::from_utf8_lossy(&lit),
                        tail.trim_end()
                    ));
                    if sock.write_all(&then).is_err() {
                        return;
                    }
                }
                Reply::Stall => {
                    std::thread::sleep(Duration::from_secs(4));
                    return;
                }
                Reply::Later(first, wait, then) => {
                    if sock.write_all(&first).is_err() {
                        return;
                    }
                    std::thread::sleep(wait);
                    if !then.is_empty() && sock.write_all(&then).is_err() {
                        return;
                    }
                }
                Reply::Close(bytes) => {
                    let _ = sock.write_all(&bytes);
                    return;
                }
            }
        }
    });
    (port, seen)
}

fn b(s: String) -> Reply {
    Reply::Send(s.into_bytes())
}

fn settings(port: u16, mode: TlsMode) -> ImapSettings {
    let mut s = ImapSettings::new(
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

const GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] ready\r\n";

/// LOGIN/LOGOUT/CAPABILITY answered; everything else by `rest`.
fn basic(
    rest: impl Fn(&str, &str) -> Reply + Send + 'static,
) -> impl Fn(&str, &str) -> Reply + Send {
    move |tag, cmd| {
        let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "LOGIN" => b(format!(
                "{tag} OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] in\r\n"
            )),
            "CAPABILITY" => b(format!("* CAPABILITY IMAP4rev1 IDLE\r\n{tag} OK\r\n")),
            "LOGOUT" => b(format!("* BYE bye\r\n{tag} OK\r\n")),
            _ => rest(tag, cmd),
        }
    }
}

fn no_login_sent(seen: &Arc<Mutex<Vec<String>>>) -> bool {
    seen.lock()
        .expect("lock")
        .iter()
        .all(|c| !c.contains("LOGIN") && !c.contains("s3cret") && !c.contains("AUTHENTICATE"))
}

#[test]
fn starttls_missing_when_required_sends_no_password() {
    let (port, seen) = serve(GREETING, basic(|tag, _| b(format!("{tag} BAD no\r\n"))));
    let e = ImapSession::connect(&settings(port, TlsMode::Starttls)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert!(no_login_sent(&seen));
}

#[test]
fn preauth_before_required_tls_is_refused() {
    let (port, seen) = serve(
        b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome\r\n",
        |tag, _| b(format!("{tag} OK\r\n")),
    );
    let e = ImapSession::connect(&settings(port, TlsMode::Starttls)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert!(e.chain().contains("PREAUTH"), "{}", e.chain());
    assert!(
        seen.lock().expect("lock").is_empty(),
        "nothing sent after PREAUTH"
    );
}

#[test]
fn starttls_refused_is_unsupported() {
    let (port, seen) = serve(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", |tag, _| {
        b(format!("{tag} NO not today\r\n"))
    });
    let e = ImapSession::connect(&settings(port, TlsMode::Starttls)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert!(no_login_sent(&seen));
}

#[test]
fn absurd_exists_is_reported_not_trusted() {
    let (port, _) = serve(
        GREETING,
        basic(|tag, _| {
            b(format!(
                "* 4294967295 EXISTS\r\n* OK [UIDVALIDITY 4294967295] v\r\n* 4294967296 RECENT\r\n{tag} OK [READ-WRITE] done\r\n"
            ))
        }),
    );
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    let info = s.select("INBOX").expect("select");
    assert_eq!(info.exists, u32::MAX);
    assert_eq!(info.uidvalidity, Some(u32::MAX));
    s.logout().expect("logout");
}

#[derive(Default)]
struct Collect {
    current: Vec<u8>,
    done: Vec<(FetchedMeta, Vec<u8>)>,
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
        assert_eq!(octets, self.current.len() as u64);
        self.done
            .push((meta.clone(), std::mem::take(&mut self.current)));
        Ok(())
    }
}

#[test]
fn huge_literal_is_refused_without_allocating() {
    let (port, _) = serve(
        GREETING,
        basic(|_, _| b("* 1 FETCH (UID 1 BODY[] {99999999999}\r\nabc".to_string())),
    );
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    let e = s
        .fetch_bodies(&[1], &mut Collect::default())
        .expect_err("too large");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
}

#[test]
fn overlong_line_is_protocol_error() {
    let (port, _) = serve(
        GREETING,
        basic(|_, _| {
            let mut v = b"* OK ".to_vec();
            v.extend(std::iter::repeat_n(b'x', 300_000));
            Reply::Send(v)
        }),
    );
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    assert_eq!(s.noop().expect_err("too long").kind(), ErrorKind::Protocol);
}

#[test]
fn too_many_untagged_is_protocol_error() {
    let (port, _) = serve(
        GREETING,
        basic(|_, _| Reply::Send(b"* 1 EXISTS\r\n".repeat(100))),
    );
    let mut set = settings(port, TlsMode::Off);
    set.limits.max_untagged = 50;
    let mut s = ImapSession::connect(&set).expect("connect");
    s.login().expect("login");
    assert_eq!(s.noop().expect_err("flood").kind(), ErrorKind::Protocol);
}

#[test]
fn silent_server_times_out() {
    let (port, _) = serve(GREETING, basic(|_, _| Reply::Stall));
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    let t = Instant::now();
    let e = s.select("INBOX").expect_err("timeout");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn silent_greeting_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let t = Instant::now();
    let e = ImapSession::connect(&settings(port, TlsMode::Off)).expect_err("timeout");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    drop(listener);
}

#[test]
fn login_refusals_map_to_kinds() {
    let (port, _) = serve(GREETING, |tag, _| {
        b(format!("{tag} NO [AUTHENTICATIONFAILED] wrong\r\n"))
    });
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    assert_eq!(s.login().expect_err("bad").kind(), ErrorKind::Auth);

    let (port, _) = serve(GREETING, |tag, _| {
        b(format!("{tag} NO [UNAVAILABLE] try later\r\n"))
    });
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    assert_eq!(
        s.login().expect_err("busy").kind(),
        ErrorKind::RejectedTemporary
    );

    let (port, _) = serve(b"* BYE too many connections\r\n", |tag, _| {
        b(format!("{tag} OK\r\n"))
    });
    let e = ImapSession::connect(&settings(port, TlsMode::Off)).expect_err("bye");
    assert_eq!(e.kind(), ErrorKind::RejectedTemporary);
}

/// LOGIN goes to a loopback peer (a local bridge) without the danger switch, by name as by
/// address; other peer addresses are refused by the same rule (session::auth::Cleartext).
#[test]
fn plaintext_login_allowed_to_a_loopback_peer_without_the_switch() {
    for host in ["127.0.0.1", "localhost"] {
        let (port, seen) = serve(GREETING, basic(|tag, _| b(format!("{tag} OK\r\n"))));
        let mut set = settings(port, TlsMode::Off);
        set.endpoint.host = host.into();
        set.allow_plaintext = false;
        let mut s = ImapSession::connect(&set).expect("connect");
        s.login().expect("LOGIN to a loopback peer");
        assert!(!no_login_sent(&seen), "{host}");
    }
}

#[test]
fn password_with_odd_bytes_goes_as_synchronising_literal() {
    let (port, seen) = serve(GREETING, |tag, cmd| {
        if cmd.starts_with("LOGIN") {
            Reply::Literal(
                b"+ go on\r\n".to_vec(),
                7,
                format!("{tag} OK in\r\n").into_bytes(),
            )
        } else {
            b(format!("* CAPABILITY IMAP4rev1\r\n{tag} OK\r\n"))
        }
    });
    let mut set = settings(port, TlsMode::Off);
    set.password = Secret::new("p\u{e4}ss\u{e9}");
    let mut s = ImapSession::connect(&set).expect("connect");
    s.login().expect("login with literal");
    let seen = seen.lock().expect("lock");
    assert!(
        seen.iter().any(|c| c.ends_with("LOGIN \"bob\" {7}")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|c| c == "LITERAL p\u{e4}ss\u{e9}"),
        "{seen:?}"
    );
}

#[test]
fn fetch_handles_late_uid_unknown_untagged_and_flag_updates() {
    let (port, _) = serve(
        GREETING,
        basic(|tag, cmd| {
            if cmd.starts_with("UID FETCH") {
                b(format!(
                    "* 1 FETCH (RFC822.SIZE 5 BODY[] {{5}}\r\nab\r\nc UID 10 FLAGS (\\Seen))\r\n\
                     * XUNKNOWN {{8}}\r\n) {{9}}\r\n and more\r\n\
                     * 3 FETCH (FLAGS (\\Deleted))\r\n\
                     * 2 FETCH (UID 11 RFC822.SIZE 0 FLAGS () BODY[] {{0}}\r\n)\r\n\
                     * 4 FETCH (UID 12 BODY[] {{3}}\r\n{tag})\r\n\
                     {tag} OK done\r\n"
                ))
            } else {
                b(format!("{tag} OK\r\n"))
            }
        }),
    );
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    let mut sink = Collect::default();
    let got = s.fetch_bodies(&[10, 11, 12], &mut sink).expect("fetch");
    assert_eq!(got, vec![10, 11, 12]);
    assert_eq!(sink.done[0].0.uid, 10);
    assert_eq!(sink.done[0].0.flags, vec!["\\Seen".to_string()]);
    assert_eq!(sink.done[0].1, b"ab\r\nc");
    assert_eq!(sink.done[1].1, b"");
    // A literal whose bytes look like a tagged completion is still just message data.
    assert_eq!(sink.done[2].1, b"A00");
    s.store_flags(&[10, 11], &["\\Seen", "\\Deleted"])
        .expect("store");
    s.expunge(&[10, 11]).expect("uid expunge");
    assert!(s.uid_search(Search::Unseen).expect("search").is_empty());
    s.logout().expect("logout");
}

#[test]
fn deferred_expunge_completes_during_the_next_fetch() {
    // UID EXPUNGE 10 succeeds, UID EXPUNGE 11 is refused; each is followed by a UID FETCH sent
    // before its completion was read.
    let (port, seen) = serve(
        GREETING,
        basic(|tag, cmd| {
            if cmd == "UID EXPUNGE 11" {
                b(format!("{tag} NO [CANNOT] not now\r\n"))
            } else if cmd.starts_with("UID EXPUNGE") {
                b(format!("* 1 EXPUNGE\r\n{tag} OK expunged\r\n"))
            } else if let Some(uid) = cmd.strip_prefix("UID FETCH ") {
                let uid = uid.split(' ').next().unwrap_or("0");
                b(format!(
                    "* 1 FETCH (UID {uid} BODY[] {{3}}\r\nabc)\r\n{tag} OK done\r\n"
                ))
            } else {
                b(format!("{tag} OK\r\n"))
            }
        }),
    );
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    s.expunge_deferred(&[10]).expect("expunge sent");
    let mut sink = Collect::default();
    assert_eq!(s.fetch_bodies(&[12], &mut sink).expect("fetch"), vec![12]);
    assert_eq!(sink.done[0].1, b"abc");
    // A refused deferred EXPUNGE fails the FETCH call that read it, after its data arrived.
    s.expunge_deferred(&[11]).expect("expunge sent");
    let mut sink = Collect::default();
    let e = s
        .fetch_bodies(&[13], &mut sink)
        .expect_err("refused expunge");
    assert!(e.chain().contains("UID EXPUNGE"), "{}", e.chain());
    assert_eq!(sink.done.len(), 1, "the FETCH itself completed");
    // The session stays in step: a deferred EXPUNGE before another command completes first.
    s.expunge_deferred(&[14]).expect("expunge sent");
    s.complete_deferred().expect("completed");
    s.logout().expect("logout");
    let seen = seen.lock().expect("lock");
    let order: Vec<&str> = seen
        .iter()
        .filter_map(|c| c.split_once(' ').map(|(_, rest)| rest))
        .filter(|c| c.starts_with("UID"))
        .collect();
    assert_eq!(
        order,
        [
            "UID EXPUNGE 10",
            "UID FETCH 12 (UID RFC822.SIZE FLAGS BODY.PEEK[])",
            "UID EXPUNGE 11",
            "UID FETCH 13 (UID RFC822.SIZE FLAGS BODY.PEEK[])",
            "UID EXPUNGE 14"
        ]
    );
}

#[test]
fn untagged_bye_mid_command_is_an_error() {
    let (port, _) = serve(
        GREETING,
        basic(|_, _| b("* BYE server shutting down\r\n".to_string())),
    );
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    let e = s.select("INBOX").expect_err("bye");
    assert_eq!(e.kind(), ErrorKind::RejectedTemporary, "{e:?}");
}

// ---- IDLE (RFC 2177) ----

/// A server that answers IDLE with `on_idle` and DONE with the IDLE's tagged OK; SELECT and
/// NOOP with OK.
fn idle_server(
    greeting: &'static [u8],
    login_caps: &'static str,
    on_idle: impl Fn(&str) -> Reply + Send + 'static,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let idle_tag = Mutex::new(String::new());
    serve(greeting, move |tag, cmd| {
        let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
        if tag == "DONE" {
            let t = idle_tag.lock().expect("lock").clone();
            return b(format!("{t} OK Idle completed\r\n"));
        }
        match verb.as_str() {
            "LOGIN" => b(format!("{tag} OK [CAPABILITY {login_caps}] in\r\n")),
            "CAPABILITY" => b(format!("* CAPABILITY {login_caps}\r\n{tag} OK\r\n")),
            "LOGOUT" => b(format!("* BYE bye\r\n{tag} OK\r\n")),
            "SELECT" => b(format!(
                "* 4 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n{tag} OK [READ-WRITE] sel\r\n"
            )),
            "IDLE" => {
                *idle_tag.lock().expect("lock") = tag.to_string();
                on_idle(tag)
            }
            _ => b(format!("{tag} OK done\r\n")),
        }
    })
}

fn count(seen: &Arc<Mutex<Vec<String>>>, what: &str) -> usize {
    seen.lock()
        .expect("lock")
        .iter()
        .filter(|c| c.ends_with(what))
        .count()
}

fn idle_session(port: u16) -> ImapSession {
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    assert_eq!(s.select("INBOX").expect("select").exists, 4);
    s
}

#[test]
fn idle_exists_wakes_and_sends_done() {
    let (port, seen) = idle_server(GREETING, "IMAP4rev1 IDLE", |_| {
        Reply::Later(
            b"+ idling\r\n".to_vec(),
            Duration::from_millis(300),
            b"* 5 EXISTS\r\n* 1 RECENT\r\n".to_vec(),
        )
    });
    let mut s = idle_session(port);
    let t = Instant::now();
    assert_eq!(
        s.idle(Duration::from_secs(60)).expect("idle"),
        IdleEvent::Exists(5)
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(count(&seen, "DONE"), 1);
    // The session goes on normally after IDLE.
    s.noop().expect("noop after idle");
    assert!(s.is_usable());
}

#[test]
fn idle_recent_alone_wakes() {
    let (port, _) = idle_server(GREETING, "IMAP4rev1 IDLE", |_| {
        Reply::Later(
            b"+ idling\r\n* OK Still here\r\n".to_vec(),
            Duration::from_millis(200),
            b"* 2 RECENT\r\n".to_vec(),
        )
    });
    let mut s = idle_session(port);
    assert_eq!(
        s.idle(Duration::from_secs(60)).expect("idle"),
        IdleEvent::Recent(2)
    );
}

#[test]
fn idle_silent_server_times_out_and_idle_is_reissued() {
    // The IDLE wait is bounded by its own timeout (2.5 s), not the 1 s read timeout.
    let (port, seen) = idle_server(GREETING, "IMAP4rev1 IDLE", |_| {
        Reply::Send(b"+ idling\r\n".to_vec())
    });
    let mut s = idle_session(port);
    for round in 1..=2 {
        let t = Instant::now();
        assert_eq!(
            s.idle(Duration::from_millis(2500)).expect("idle"),
            IdleEvent::Timeout
        );
        assert!(
            t.elapsed() >= Duration::from_millis(2400),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(count(&seen, "DONE"), round);
        assert_eq!(count(&seen, "IDLE"), round);
    }
    assert!(s.is_usable());
}

#[test]
fn idle_bye_is_an_error_and_the_session_is_dead() {
    let (port, seen) = idle_server(GREETING, "IMAP4rev1 IDLE", |_| {
        Reply::Later(
            b"+ idling\r\n".to_vec(),
            Duration::from_millis(200),
            b"* BYE Server shutting down\r\n".to_vec(),
        )
    });
    let mut s = idle_session(port);
    let e = s.idle(Duration::from_secs(60)).expect_err("BYE");
    assert_eq!(e.kind(), ErrorKind::RejectedTemporary, "{e:?}");
    assert!(e.chain().contains("shutting down"), "{}", e.chain());
    assert!(!s.is_usable());
    assert!(s.noop().is_err());
    assert_eq!(count(&seen, "DONE"), 0);
}

#[test]
fn idle_connection_closed_is_an_error() {
    let (port, _) = idle_server(GREETING, "IMAP4rev1 IDLE", |_| {
        Reply::Close(b"+ idling\r\n".to_vec())
    });
    let mut s = idle_session(port);
    let e = s.idle(Duration::from_secs(60)).expect_err("closed");
    assert_eq!(e.kind(), ErrorKind::NetworkIo, "{e:?}");
    assert!(!s.is_usable());
}

#[test]
fn idle_interrupted_by_caller() {
    let (port, seen) = idle_server(GREETING, "IMAP4rev1 IDLE", |_| {
        Reply::Send(b"+ idling\r\n".to_vec())
    });
    let mut s = idle_session(port);
    let t = Instant::now();
    let ev = s
        .idle_until(Duration::from_secs(60), None, &|| {
            t.elapsed() > Duration::from_millis(300)
        })
        .expect("idle");
    assert_eq!(ev, IdleEvent::Interrupted);
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(count(&seen, "DONE"), 1);
    assert!(s.is_usable());
}

#[test]
fn idle_without_capability_is_refused_unless_forced() {
    const PLAIN: &[u8] = b"* OK [CAPABILITY IMAP4rev1 UIDPLUS] ready\r\n";
    let (port, seen) = idle_server(PLAIN, "IMAP4rev1 UIDPLUS", |tag| {
        b(format!("{tag} BAD unknown command\r\n"))
    });
    let mut s = idle_session(port);
    let e = s.idle(Duration::from_secs(5)).expect_err("no IDLE");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert_eq!(count(&seen, "IDLE"), 0);
    // The fallback (fetchmail's NOOP emulation) works on the same session.
    assert_eq!(s.noop().expect("noop"), None);

    // forceidle sends it anyway; a refusal leaves the session usable for the NOOP fallback.
    let (port, seen) = idle_server(PLAIN, "IMAP4rev1 UIDPLUS", |tag| {
        b(format!("{tag} BAD unknown command\r\n"))
    });
    let mut set = settings(port, TlsMode::Off);
    set.force_idle = true;
    let mut s = ImapSession::connect(&set).expect("connect");
    s.login().expect("login");
    s.select("INBOX").expect("select");
    let e = s.idle(Duration::from_secs(5)).expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert_eq!(count(&seen, "IDLE"), 1);
    assert!(s.is_usable());
    s.noop().expect("noop fallback");
}

#[test]
fn idle_done_completion_with_exists_counts_as_news() {
    // Mail that arrives while DONE is on its way is reported in the completion.
    let idle_tag = Arc::new(Mutex::new(String::new()));
    let tag2 = Arc::clone(&idle_tag);
    let (port, _) = serve(
        GREETING,
        basic(move |tag, cmd| {
            if tag == "DONE" {
                let t = tag2.lock().expect("lock").clone();
                return b(format!("* 9 EXISTS\r\n{t} OK Idle completed\r\n"));
            }
            if cmd.eq_ignore_ascii_case("IDLE") {
                *tag2.lock().expect("lock") = tag.to_string();
                return Reply::Send(b"+ idling\r\n".to_vec());
            }
            b(format!("* 4 EXISTS\r\n{tag} OK done\r\n"))
        }),
    );
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    s.select("INBOX").expect("select");
    assert_eq!(
        s.idle(Duration::from_millis(1200)).expect("idle"),
        IdleEvent::Exists(9)
    );
    drop(idle_tag);
}
