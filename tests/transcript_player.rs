//! The transcript player of tests/common/transcript.rs, tested with a hand-driven client: it
//! sends what the transcript says byte for byte, checks what the client sends, fails with the
//! transcript line instead of hanging, and speaks TLS.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::tls::TestCert;
use common::transcript::{Player, Transcript};
use postie::net::{self, ConnectOptions, Endpoint, TlsOptions, Trust};

fn client(player: &Player) -> (BufReader<TcpStream>, TcpStream) {
    let sock = TcpStream::connect(("127.0.0.1", player.port())).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    (BufReader::new(sock.try_clone().expect("clone")), sock)
}

fn line(reader: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    reader.read_line(&mut l).expect("read");
    l
}

fn rest(reader: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut all = Vec::new();
    reader.read_to_end(&mut all).expect("read");
    all
}

#[test]
fn a_dialogue_plays_and_the_client_lines_are_heard() {
    let player = Transcript::parse(
        "dialogue",
        "# a comment\n\nS: +OK ready\nC: USER bob\nS: +OK\nC: PASS *\nS: +OK in\nC: QUIT\nS: +OK bye\n",
    )
    .play();
    let (mut r, mut w) = client(&player);
    assert_eq!(line(&mut r), "+OK ready\r\n");
    w.write_all(b"USER bob\r\n").unwrap();
    assert_eq!(line(&mut r), "+OK\r\n");
    w.write_all(b"PASS s3cret\r\n").unwrap();
    assert_eq!(line(&mut r), "+OK in\r\n");
    w.write_all(b"QUIT\r\n").unwrap();
    assert_eq!(line(&mut r), "+OK bye\r\n");
    // The server closes its side at the end of the transcript.
    assert_eq!(rest(&mut r), b"");
    drop((r, w));
    assert_eq!(player.heard(), ["USER bob", "PASS s3cret", "QUIT"]);
    player.finish();
}

#[test]
fn a_different_line_fails_naming_the_transcript_line_and_both_sides() {
    let player = Transcript::parse("mismatch", "S: +OK\nC: USER bob\nS: +OK\nC: PASS *\n").play();
    let (mut r, mut w) = client(&player);
    line(&mut r);
    w.write_all(b"USER bob\r\n").unwrap();
    line(&mut r);
    w.write_all(b"APOP bob 0123\r\n").unwrap();
    let e = player.outcome().expect_err("mismatch");
    assert!(e.contains("transcript mismatch line 4"), "{e}");
    assert!(e.contains("expected: C: PASS *"), "{e}");
    assert!(e.contains("got:      C: APOP bob 0123"), "{e}");
    assert!(e.contains("    C: USER bob"), "{e}");
}

#[test]
fn a_silent_client_fails_after_the_timeout_instead_of_hanging() {
    let player = Transcript::parse("silent", "!timeout 300ms\nS: 220 hi\nC: EHLO *\n").play();
    let (mut r, _w) = client(&player);
    line(&mut r);
    let t = Instant::now();
    let e = player.outcome().expect_err("silence");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        e.contains("line 3: the client sent nothing more for 300ms"),
        "{e}"
    );
}

#[test]
fn no_client_at_all_is_reported() {
    let player = Transcript::parse("nobody", "!timeout 1s\nS: hello\n").play();
    let t = Instant::now();
    let e = player.outcome().expect_err("no client");
    assert!(e.contains("no client connected"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_closing_client_is_reported_where_a_line_was_expected() {
    let player = Transcript::parse("closed", "S: +OK\nC: CAPA\n").play();
    let (mut r, w) = client(&player);
    line(&mut r);
    drop((r, w));
    let e = player.outcome().expect_err("closed");
    assert!(
        e.contains("line 2: the client closed the connection"),
        "{e}"
    );
}

#[test]
fn a_lone_lf_from_the_client_is_a_mismatch() {
    let player = Transcript::parse("lf", "C: NOOP\n").play();
    let (_r, mut w) = client(&player);
    w.write_all(b"NOOP\n").unwrap();
    let e = player.outcome().expect_err("lone LF");
    assert!(e.contains("lone LF"), "{e}");
}

#[test]
fn wildcards_escapes_and_raw_bytes() {
    let player = Transcript::parse(
        "escapes",
        "C: a* LOGIN \\* *\nS= raw\\r\\nlone\\nCR\\rNUL\\0\\xff end\nS: tail (\\Seen \\Recent)\nC= {3}\\r\\nx\\ny\n",
    )
    .play();
    let (mut r, mut w) = client(&player);
    w.write_all(b"a12 LOGIN * AGJvYgBwdw==\r\n{3}\r\nx\ny")
        .unwrap();
    w.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        rest(&mut r),
        b"raw\r\nlone\nCR\rNUL\0\xff endtail (\\Seen \\Recent)\r\n"
    );
    drop((r, w));
    assert_eq!(player.heard(), ["a12 LOGIN * AGJvYgBwdw==", "{3}\r\nx\ny"]);
    player.finish();
}

#[test]
fn skip_until_reads_lines_up_to_a_match() {
    let player = Transcript::parse("until", "C: DATA\nC* .\nS: 250 queued\n").play();
    let (mut r, mut w) = client(&player);
    w.write_all(b"DATA\r\nDate: now\r\n\r\n..stuffed\r\n.\r\n")
        .unwrap();
    assert_eq!(line(&mut r), "250 queued\r\n");
    drop((r, w));
    assert_eq!(player.heard(), ["DATA", "Date: now", "", "..stuffed", "."]);
    player.finish();
}

#[test]
fn a_computed_step_answers_from_what_the_client_sent() {
    let player = Transcript::parse("computed", "C: HELLO *\nS! echo\n")
        .compute("echo", |heard| {
            let name = heard[0].strip_prefix("HELLO ").unwrap_or_default();
            format!("hi {name}\r\n").into_bytes()
        })
        .play();
    let (mut r, mut w) = client(&player);
    w.write_all(b"HELLO nonce-42\r\n").unwrap();
    assert_eq!(line(&mut r), "hi nonce-42\r\n");
    drop((r, w));
    player.finish();
}

#[test]
#[should_panic(expected = "line 1: no function given for S! echo")]
fn a_computed_step_without_its_function_is_refused() {
    Transcript::parse("uncomputed", "S! echo\n").play();
}

#[test]
fn a_star_that_must_be_literal_does_not_match_anything_else() {
    let player = Transcript::parse("star", "C: A1 \\*\n").play();
    let (_r, mut w) = client(&player);
    w.write_all(b"A1 x\r\n").unwrap();
    assert!(player.outcome().is_err());
}

#[test]
fn repeat_sends_a_line_many_times() {
    let player = Transcript::parse("flood", "S: +OK\n!repeat 100000 S: X-CAP\nS: .\n").play();
    let (mut r, w) = client(&player);
    let all = rest(&mut r);
    drop((r, w));
    assert_eq!(all.len(), 5 + 100_000 * 7 + 3);
    assert!(all.ends_with(b"X-CAP\r\n.\r\n"));
    player.finish();
}

#[test]
fn a_client_that_leaves_in_the_middle_of_a_flood_ends_it() {
    let player = Transcript::parse("gone", "!repeat 100000000 S= AAAAAAAA\n!eof\n").play();
    let (mut r, w) = client(&player);
    let mut buf = [0u8; 1024];
    r.read_exact(&mut buf).unwrap();
    drop((r, w));
    let t = Instant::now();
    player.finish();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn eof_is_checked() {
    let player = Transcript::parse("eof", "S: bye\n!eof\n").play();
    let (mut r, w) = client(&player);
    line(&mut r);
    drop((r, w));
    player.finish();

    let player = Transcript::parse("not eof", "S: bye\n!eof\n").play();
    let (mut r, mut w) = client(&player);
    line(&mut r);
    w.write_all(b"QUIT\r\n").unwrap();
    let e = player.outcome().expect_err("more");
    assert!(
        e.contains("line 2: the client sent more instead of closing"),
        "{e}"
    );
    assert!(e.contains("QUIT"), "{e}");
}

#[test]
fn drain_records_whatever_the_client_still_sends() {
    let player = Transcript::parse("drain", "S: go\n!timeout 300ms\n!drain\nS: late\n").play();
    let (mut r, mut w) = client(&player);
    assert_eq!(line(&mut r), "go\r\n");
    w.write_all(b"one\r\ntwo\r\n").unwrap();
    // The server goes on after the client falls silent.
    assert_eq!(line(&mut r), "late\r\n");
    drop((r, w));
    assert_eq!(player.finish(), ["one", "two"]);
}

#[test]
fn sleep_delays_and_cut_drops_the_connection() {
    let player = Transcript::parse("slow", "S: one\n!sleep 300ms\nS= two\n!cut\n").play();
    let (mut r, w) = client(&player);
    let t = Instant::now();
    assert_eq!(line(&mut r), "one\r\n");
    assert_eq!(rest(&mut r), b"two");
    assert!(t.elapsed() >= Duration::from_millis(300));
    drop((r, w));
    player.finish();
}

#[test]
fn accept_serves_the_next_connection() {
    let player = Transcript::parse("two", "S: first\n!accept\nS: second\nC: BYE\n").play();
    let (mut r, w) = client(&player);
    assert_eq!(line(&mut r), "first\r\n");
    assert_eq!(rest(&mut r), b"");
    drop((r, w));
    let (mut r, mut w) = client(&player);
    assert_eq!(line(&mut r), "second\r\n");
    w.write_all(b"BYE\r\n").unwrap();
    drop((r, w));
    player.finish();
}

#[test]
fn variables_are_substituted() {
    let t = Transcript::parse_with("vars", "S: hello ${WHO}\n", &[("WHO", "bob")]);
    let player = t.play();
    let (mut r, w) = client(&player);
    assert_eq!(line(&mut r), "hello bob\r\n");
    drop((r, w));
    player.finish();
}

#[test]
fn a_variable_is_bytes_as_they_are_in_a_step_and_text_in_a_directive() {
    let t = Transcript::parse_with(
        "raw vars",
        "# ${NOT_GIVEN} in a comment is not read\n!repeat ${N} S= ${BODY}\nC: * ${STAR}\n",
        &[("N", "2"), ("BODY", "a\r\n\\n*"), ("STAR", "*")],
    );
    let player = t.play();
    let (mut r, mut w) = client(&player);
    w.write_all(b"x *\r\n").unwrap();
    assert_eq!(rest(&mut r), b"a\r\n\\n*a\r\n\\n*");
    drop((r, w));
    player.finish();

    // The variable's star is a star, not a wildcard.
    let t = Transcript::parse_with("star var", "C: ${STAR}\n", &[("STAR", "*")]);
    let player = t.play();
    let (_r, mut w) = client(&player);
    w.write_all(b"anything\r\n").unwrap();
    assert!(player.outcome().is_err());
}

#[test]
#[should_panic(expected = "no value given for ${WHO}")]
fn a_missing_variable_is_refused() {
    Transcript::parse("vars", "S: hello ${WHO}\n");
}

#[test]
#[should_panic(expected = "transcript bad line 2: not a transcript step")]
fn an_unknown_step_is_refused_with_its_line() {
    Transcript::parse("bad", "S: fine\nX: what\n");
}

#[test]
#[should_panic(expected = "line 2: the client closed")]
fn dropping_an_unfinished_player_fails_the_test() {
    let player = Transcript::parse("dropped", "S: hi\nC: NEVER\n").play();
    let (mut r, w) = client(&player);
    line(&mut r);
    drop((r, w));
    drop(player);
}

fn tls_client(port: u16) -> net::Connection {
    let opts = ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        source_ip: None,
        route: net::Route::Direct,
    };
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    net::connect(&ep, &opts).expect("connect")
}

fn tls(trust: Trust) -> TlsOptions {
    TlsOptions {
        trust,
        ..TlsOptions::default()
    }
}

fn read_line_of(conn: &mut net::Connection) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\n") {
        match conn.read(&mut b) {
            Ok(1) => out.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn starttls_switches_to_the_test_certificate() {
    let player = Transcript::parse(
        "starttls",
        "S: 220 ready\nC: STARTTLS\nS: 220 go ahead\n!tls\nC: EHLO secure\nS: 250 REAL\n",
    )
    .play();
    let mut conn = tls_client(player.port());
    assert_eq!(read_line_of(&mut conn), "220 ready\r\n");
    conn.write_all(b"STARTTLS\r\n").unwrap();
    assert_eq!(read_line_of(&mut conn), "220 go ahead\r\n");
    let mut conn = conn
        .upgrade_tls(
            &tls(Trust::Fingerprint(TestCert::get().sha256())),
            "localhost",
        )
        .expect("handshake with the pinned certificate");
    conn.write_all(b"EHLO secure\r\n").unwrap();
    assert_eq!(read_line_of(&mut conn), "250 REAL\r\n");
    drop(conn);
    player.finish();
}

#[test]
fn a_failed_handshake_is_reported() {
    let player = Transcript::parse("badtls", "!tls\nS: never\n").play();
    let conn = tls_client(player.port());
    conn.upgrade_tls(&tls(Trust::Fingerprint([0; 32])), "localhost")
        .expect_err("wrong pin");
    let e = player.outcome().expect_err("handshake");
    assert!(e.contains("line 1: TLS handshake failed"), "{e}");
}
