//! IMAP session against hermetic scripted servers on 127.0.0.1: STARTTLS missing or PREAUTH
//! before TLS (CVE-2021-39272), hostile numbers and literals, over-long lines, a server that
//! stops answering, login refusals, synchronising literals, bodies whose UID comes late and
//! untagged data we do not understand, and IDLE (wake-ups, BYE, silence, no capability). Never a
//! crash, hang or unbounded memory.

mod common;

use std::time::{Duration, Instant};

use common::transcript::{Player, Transcript};

use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode};
use postie::proto::imap::Search;
use postie::session::imap::{FetchSink, FetchedMeta, IdleEvent, ImapSession, ImapSettings, Secret};

/// Plays `tests/transcripts/imap/NAME.txt` on a loopback port.
fn play(name: &str) -> Player {
    Transcript::load(&format!("imap/{name}")).play()
}

/// Plays NAME and logs in to it (plain TCP).
fn logged_in(name: &str) -> (Player, ImapSession) {
    let server = play(name);
    let mut s = ImapSession::connect(&settings(server.port(), TlsMode::Off)).expect("connect");
    s.login().expect("login");
    (server, s)
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

fn no_login_sent(seen: &[String]) -> bool {
    seen.iter()
        .all(|c| !c.contains("LOGIN") && !c.contains("s3cret") && !c.contains("AUTHENTICATE"))
}

#[test]
fn starttls_missing_when_required_sends_no_password() {
    let server = play("starttls_missing");
    let e =
        ImapSession::connect(&settings(server.port(), TlsMode::Starttls)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert!(no_login_sent(&server.finish()));
}

#[test]
fn preauth_before_required_tls_is_refused() {
    let server = play("preauth_before_tls");
    let e =
        ImapSession::connect(&settings(server.port(), TlsMode::Starttls)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert!(e.chain().contains("PREAUTH"), "{}", e.chain());
    assert!(server.finish().is_empty(), "nothing sent after PREAUTH");
}

#[test]
fn starttls_refused_is_unsupported() {
    let server = play("starttls_refused");
    let e =
        ImapSession::connect(&settings(server.port(), TlsMode::Starttls)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert!(no_login_sent(&server.finish()));
}

#[test]
fn absurd_exists_is_reported_not_trusted() {
    let (server, mut s) = logged_in("absurd_exists");
    let info = s.select("INBOX").expect("select");
    assert_eq!(info.exists, u32::MAX);
    assert_eq!(info.uidvalidity, Some(u32::MAX));
    s.logout().expect("logout");
    server.finish();
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
    let (server, mut s) = logged_in("huge_literal");
    let e = s
        .fetch_bodies(&[1], &mut Collect::default())
        .expect_err("too large");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    drop(s);
    server.finish();
}

#[test]
fn overlong_line_is_protocol_error() {
    let (server, mut s) = logged_in("overlong_line");
    assert_eq!(s.noop().expect_err("too long").kind(), ErrorKind::Protocol);
    drop(s);
    server.finish();
}

#[test]
fn too_many_untagged_is_protocol_error() {
    let server = play("too_many_untagged");
    let mut set = settings(server.port(), TlsMode::Off);
    set.limits.max_untagged = 50;
    let mut s = ImapSession::connect(&set).expect("connect");
    s.login().expect("login");
    assert_eq!(s.noop().expect_err("flood").kind(), ErrorKind::Protocol);
    drop(s);
    server.finish();
}

#[test]
fn silent_server_times_out() {
    let (server, mut s) = logged_in("silent_server");
    let t = Instant::now();
    let e = s.select("INBOX").expect_err("timeout");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    drop(s);
    server.finish();
}

#[test]
fn silent_greeting_times_out() {
    let server = play("silent_greeting");
    let t = Instant::now();
    let e = ImapSession::connect(&settings(server.port(), TlsMode::Off)).expect_err("timeout");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    server.finish();
}

#[test]
fn login_refusals_map_to_kinds() {
    let server = play("login_auth_failed");
    let mut s = ImapSession::connect(&settings(server.port(), TlsMode::Off)).expect("connect");
    assert_eq!(s.login().expect_err("bad").kind(), ErrorKind::Auth);
    drop(s);
    server.finish();

    let server = play("login_unavailable");
    let mut s = ImapSession::connect(&settings(server.port(), TlsMode::Off)).expect("connect");
    assert_eq!(
        s.login().expect_err("busy").kind(),
        ErrorKind::RejectedTemporary
    );
    drop(s);
    server.finish();

    let server = play("greeting_bye");
    let e = ImapSession::connect(&settings(server.port(), TlsMode::Off)).expect_err("bye");
    assert_eq!(e.kind(), ErrorKind::RejectedTemporary);
    server.finish();
}

/// LOGIN goes to a loopback peer (a local bridge) without the danger switch, by name as by
/// address; other peer addresses are refused by the same rule (session::auth::Cleartext).
#[test]
fn plaintext_login_allowed_to_a_loopback_peer_without_the_switch() {
    for host in ["127.0.0.1", "localhost"] {
        let server = play("login");
        let mut set = settings(server.port(), TlsMode::Off);
        set.endpoint.host = host.into();
        set.allow_plaintext = false;
        let mut s = ImapSession::connect(&set).expect("connect");
        s.login().expect("LOGIN to a loopback peer");
        drop(s);
        assert!(!no_login_sent(&server.finish()), "{host}");
    }
}

#[test]
fn password_with_odd_bytes_goes_as_synchronising_literal() {
    let server = play("login_literal");
    let mut set = settings(server.port(), TlsMode::Off);
    set.password = Secret::new("p\u{e4}ss\u{e9}");
    let mut s = ImapSession::connect(&set).expect("connect");
    s.login().expect("login with literal");
    drop(s);
    let seen = server.finish();
    assert!(
        seen.iter().any(|c| c.ends_with("LOGIN \"bob\" {7}")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|c| c == "p\u{e4}ss\u{e9}"), "{seen:?}");
}

#[test]
fn fetch_handles_late_uid_unknown_untagged_and_flag_updates() {
    let (server, mut s) = logged_in("late_uid");
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
    server.finish();
}

#[test]
fn deferred_expunge_completes_during_the_next_fetch() {
    // UID EXPUNGE 10 succeeds, UID EXPUNGE 11 is refused; each is followed by a UID FETCH sent
    // before its completion was read.
    let (server, mut s) = logged_in("deferred_expunge");
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
    let seen = server.finish();
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
fn the_next_batch_is_asked_for_ahead_and_the_expunge_takes_only_what_was_stored() {
    // The wire order is the transcript's: FETCH 11 goes out before batch 10 is settled, each
    // STORE behind a FETCH without waiting, and the EXPUNGE only for UID 10, whose STORE was
    // read to have succeeded; the refused STORE 11 keeps UID 11 out of it.
    let (server, mut s) = logged_in("asked_ahead");
    let mut sink = Collect::default();
    let got = s.fetch_bodies_asking_next(&[10], &[11], &mut sink);
    assert_eq!(got.expect("batch 10"), vec![10]);
    s.store_flags_deferred(&[10], &["\\Seen", "\\Deleted"])
        .expect("store 10 sent");
    let got = s.fetch_bodies_asking_next(&[11], &[12], &mut sink);
    assert_eq!(got.expect("batch 11"), vec![11]);
    assert_eq!(s.stored_deleted(), 0, "STORE 10's answer not read yet");
    s.store_flags_deferred(&[11], &["\\Seen", "\\Deleted"])
        .expect("store 11 sent");
    let got = s.fetch_bodies_asking_next(&[12], &[], &mut sink);
    assert_eq!(got.expect("batch 12"), vec![12]);
    assert_eq!(s.stored_deleted(), 1, "STORE 10 read to have succeeded");
    let bodies: Vec<&[u8]> = sink.done.iter().map(|(_, b)| b.as_slice()).collect();
    assert_eq!(bodies, [&b"abc"[..], b"def", b"ghi"]);
    let e = s.complete_deferred().expect_err("STORE 11 was refused");
    assert!(e.chain().contains("UID STORE"), "{}", e.chain());
    assert_eq!(s.stored_deleted(), 1, "the refused STORE flagged nothing");
    s.expunge_stored().expect("expunge sent");
    assert_eq!(s.stored_deleted(), 0);
    s.complete_deferred().expect("expunged");
    s.logout().expect("logout");
    server.finish();
}

#[test]
fn without_uidplus_the_expunge_waits_until_no_store_of_deleted_is_running() {
    let (server, mut s) = logged_in("stored_no_uidplus");
    s.store_flags_deferred(&[10], &["\\Seen", "\\Deleted"])
        .expect("store 10 sent");
    let mut sink = Collect::default();
    assert_eq!(s.fetch_bodies(&[12], &mut sink).expect("fetch"), vec![12]);
    assert_eq!(s.stored_deleted(), 1);
    s.store_flags_deferred(&[12], &["\\Seen", "\\Deleted"])
        .expect("store 12 sent");
    // A plain EXPUNGE now would race STORE 12: nothing is sent, nothing is taken.
    s.expunge_stored().expect("nothing to send yet");
    assert_eq!(s.stored_deleted(), 1);
    s.complete_deferred().expect("store 12 done");
    assert_eq!(s.stored_deleted(), 2);
    s.expunge_stored().expect("expunge sent");
    s.complete_deferred().expect("expunged");
    s.logout().expect("logout");
    server.finish();
}

#[test]
fn a_batch_asked_for_ahead_and_not_taken_is_read_and_dropped() {
    // Asked for 11, then called for 12: 11 is read to its end and dropped, 12 is fetched; 13,
    // asked for ahead, is dropped by LOGOUT. Nothing of 11 or 13 reaches the sink.
    let (server, mut s) = logged_in("asked_ahead_dropped");
    let mut sink = Collect::default();
    let got = s.fetch_bodies_asking_next(&[10], &[11], &mut sink);
    assert_eq!(got.expect("batch 10"), vec![10]);
    let got = s.fetch_bodies_asking_next(&[12], &[13], &mut sink);
    assert_eq!(got.expect("batch 12"), vec![12]);
    let uids: Vec<u32> = sink.done.iter().map(|(m, _)| m.uid).collect();
    assert_eq!(uids, [10, 12]);
    let bodies: Vec<&[u8]> = sink.done.iter().map(|(_, b)| b.as_slice()).collect();
    assert_eq!(bodies, [&b"abc"[..], b"ghi"]);
    s.logout().expect("logout");
    server.finish();
}

#[test]
fn select_and_search_all_go_out_together() {
    let (server, mut s) = logged_in("select_and_search");
    let e = s.select_and_search_all("Nope").expect_err("refused SELECT");
    assert!(e.chain().contains("SELECT Nope"), "{}", e.chain());
    assert!(e.chain().contains("doesn't exist"), "{}", e.chain());
    let (info, uids) = s.select_and_search_all("INBOX").expect("selected");
    assert_eq!(
        (info.exists, info.uidvalidity, info.uidnext),
        (3, Some(7), Some(13))
    );
    assert_eq!(uids, [10, 11, 12]);
    s.logout().expect("logout");
    server.finish();
}

#[test]
fn a_select_with_a_synchronising_literal_is_not_pipelined() {
    // Nothing may follow a command part that waits for the server's continuation request: the
    // player hears the name only after its "+", and the SEARCH only after the SELECT's answer.
    let (server, mut s) = logged_in("select_literal");
    let (info, uids) = s.select_and_search_all("Entwürfe").expect("selected");
    assert_eq!((info.exists, info.uidvalidity), (2, Some(3)));
    assert_eq!(uids, [4, 5]);
    s.logout().expect("logout");
    server.finish();
}

#[test]
fn what_a_store_flagged_is_not_expunged_in_the_next_folder() {
    let (server, mut s) = logged_in("leave_folder");
    let (_, uids) = s.select_and_search_all("Lists").expect("Lists");
    assert_eq!(uids, [10, 11]);
    s.store_flags_deferred(&[10], &["\\Seen", "\\Deleted"])
        .expect("store 10 sent");
    s.store_flags_deferred(&[11], &["\\Seen", "\\Deleted"])
        .expect("store 11 sent");
    // The fetch sequence of Lists ended on an error here: no finish, no EXPUNGE.
    let (_, uids) = s
        .select_and_search_all("INBOX")
        .expect("INBOX, the refusal only logged");
    assert_eq!(uids, [10]);
    assert_eq!(s.stored_deleted(), 0, "Lists' UID 10 is not INBOX's");
    s.expunge_stored().expect("nothing to expunge");
    s.logout().expect("logout");
    server.finish();
}

#[test]
fn untagged_bye_mid_command_is_an_error() {
    let (server, mut s) = logged_in("untagged_bye");
    let e = s.select("INBOX").expect_err("bye");
    assert_eq!(e.kind(), ErrorKind::RejectedTemporary, "{e:?}");
    drop(s);
    server.finish();
}

// ---- IDLE (RFC 2177) ----

fn count(server: &Player, what: &str) -> usize {
    server.heard().iter().filter(|c| c.ends_with(what)).count()
}

fn idle_session(port: u16) -> ImapSession {
    let mut s = ImapSession::connect(&settings(port, TlsMode::Off)).expect("connect");
    s.login().expect("login");
    assert_eq!(s.select("INBOX").expect("select").exists, 4);
    s
}

#[test]
fn idle_exists_wakes_and_sends_done() {
    let server = play("idle_exists");
    let mut s = idle_session(server.port());
    let t = Instant::now();
    assert_eq!(
        s.idle(Duration::from_secs(60)).expect("idle"),
        IdleEvent::Exists(5)
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(count(&server, "DONE"), 1);
    // The session goes on normally after IDLE.
    s.noop().expect("noop after idle");
    assert!(s.is_usable());
    drop(s);
    server.finish();
}

#[test]
fn idle_recent_alone_wakes() {
    let server = play("idle_recent");
    let mut s = idle_session(server.port());
    assert_eq!(
        s.idle(Duration::from_secs(60)).expect("idle"),
        IdleEvent::Recent(2)
    );
    drop(s);
    server.finish();
}

#[test]
fn idle_silent_server_times_out_and_idle_is_reissued() {
    // The IDLE wait is bounded by its own timeout (2.5 s), not the 1 s read timeout.
    let server = play("idle_silent");
    let mut s = idle_session(server.port());
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
        assert_eq!(count(&server, "DONE"), round);
        assert_eq!(count(&server, "IDLE"), round);
    }
    assert!(s.is_usable());
    drop(s);
    server.finish();
}

#[test]
fn idle_bye_is_an_error_and_the_session_is_dead() {
    let server = play("idle_bye");
    let mut s = idle_session(server.port());
    let e = s.idle(Duration::from_secs(60)).expect_err("BYE");
    assert_eq!(e.kind(), ErrorKind::RejectedTemporary, "{e:?}");
    assert!(e.chain().contains("shutting down"), "{}", e.chain());
    assert!(!s.is_usable());
    assert!(s.noop().is_err());
    assert_eq!(count(&server, "DONE"), 0);
    drop(s);
    server.finish();
}

#[test]
fn idle_connection_closed_is_an_error() {
    let server = play("idle_closed");
    let mut s = idle_session(server.port());
    let e = s.idle(Duration::from_secs(60)).expect_err("closed");
    assert_eq!(e.kind(), ErrorKind::NetworkIo, "{e:?}");
    assert!(!s.is_usable());
    drop(s);
    server.finish();
}

#[test]
fn idle_interrupted_by_caller() {
    let server = play("idle_interrupted");
    let mut s = idle_session(server.port());
    let t = Instant::now();
    let ev = s
        .idle_until(Duration::from_secs(60), None, &|| {
            t.elapsed() > Duration::from_millis(300)
        })
        .expect("idle");
    assert_eq!(ev, IdleEvent::Interrupted);
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(count(&server, "DONE"), 1);
    assert!(s.is_usable());
    drop(s);
    server.finish();
}

#[test]
fn idle_without_capability_is_refused_unless_forced() {
    let server = play("idle_not_offered");
    let mut s = idle_session(server.port());
    let e = s.idle(Duration::from_secs(5)).expect_err("no IDLE");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert_eq!(count(&server, "IDLE"), 0);
    // The fallback (fetchmail's NOOP emulation) works on the same session.
    assert_eq!(s.noop().expect("noop"), None);
    drop(s);
    server.finish();

    // forceidle sends it anyway; a refusal leaves the session usable for the NOOP fallback.
    let server = play("idle_forced");
    let mut set = settings(server.port(), TlsMode::Off);
    set.force_idle = true;
    let mut s = ImapSession::connect(&set).expect("connect");
    s.login().expect("login");
    s.select("INBOX").expect("select");
    let e = s.idle(Duration::from_secs(5)).expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert_eq!(count(&server, "IDLE"), 1);
    assert!(s.is_usable());
    s.noop().expect("noop fallback");
    drop(s);
    server.finish();
}

#[test]
fn idle_done_completion_with_exists_counts_as_news() {
    // Mail that arrives while DONE is on its way is reported in the completion.
    let (server, mut s) = logged_in("idle_done_with_exists");
    s.select("INBOX").expect("select");
    assert_eq!(
        s.idle(Duration::from_millis(1200)).expect("idle"),
        IdleEvent::Exists(9)
    );
    drop(s);
    server.finish();
}
