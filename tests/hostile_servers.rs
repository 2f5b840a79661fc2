//! Hostile scripted servers against the SMTP, POP3 and IMAP sessions on 127.0.0.1: floods of
//! capability lines, endless lines, a million untagged responses, absurd literal sizes, a body
//! whose UID comes after it, and TLS connections cut in the middle of a message. Every case must
//! end in a clear error (or the right result) within seconds, with bounded memory and no crash.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::tls::TestCert;
use common::transcript::{Player, Transcript};

use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode};
use postie::session::imap::{FetchSink, FetchedMeta, ImapSession, ImapSettings};
use postie::session::pop3::{Pop3Session, Pop3Settings, Secret};
use postie::session::smtp::{SmtpClient, SmtpSettings};

/// Plays `tests/transcripts/hostile/NAME.txt` with the given variables.
fn play(name: &str, vars: &[(&str, &str)]) -> Player {
    Transcript::load_with(&format!("hostile/{name}"), vars).play()
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
    }
}

fn pop3_settings(port: u16) -> Pop3Settings {
    let mut s = Pop3Settings::new(endpoint(port), "bob", Secret::new("s3cret"));
    s.tls_mode = TlsMode::Off;
    s.allow_plaintext = true;
    s.connect.io_timeout = Duration::from_secs(2);
    s
}

fn imap_settings(port: u16) -> ImapSettings {
    let mut s = ImapSettings::new(endpoint(port), "bob", Secret::new("s3cret"));
    s.tls_mode = TlsMode::Off;
    s.allow_plaintext = true;
    s.connect.io_timeout = Duration::from_secs(2);
    s
}

#[test]
fn pop3_capa_flood_is_a_clear_error_not_a_stack_overflow() {
    let server = play("pop3_capa_flood", &[]);
    let started = Instant::now();
    let e =
        Pop3Session::connect(&pop3_settings(server.port())).expect_err("a CAPA flood must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("CAPA"), "{}", e.chain());
    assert!(started.elapsed() < Duration::from_secs(5));
    server.finish();
}

fn smtp_settings(port: u16) -> SmtpSettings {
    let connect = postie::net::ConnectOptions {
        io_timeout: Duration::from_secs(2),
        ..postie::net::ConnectOptions::default()
    };
    SmtpSettings {
        endpoint: endpoint(port),
        tls_mode: TlsMode::Off,
        tls: postie::net::TlsOptions::default(),
        connect,
        helo_domain: "client.test".into(),
        protocol: postie::proto::smtp::Protocol::Smtp,
        auth: None,
    }
}

#[test]
fn smtp_ehlo_flood_is_a_clear_error() {
    let server = play("smtp_ehlo_flood", &[]);
    let started = Instant::now();
    let e =
        SmtpClient::connect(&smtp_settings(server.port())).expect_err("an EHLO flood must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("more than 100 lines"), "{}", e.chain());
    assert!(started.elapsed() < Duration::from_secs(5));
    server.finish();
}

#[test]
fn smtp_auth_mechanism_flood_is_a_clear_error() {
    let mechs: String = (0..300).map(|i| format!("M{i} ")).collect();
    let server = play("smtp_auth_flood", &[("MECHS", &mechs)]);
    let e = SmtpClient::connect(&smtp_settings(server.port())).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("AUTH mechanisms"), "{}", e.chain());
    server.finish();
}

#[test]
fn imap_capability_flood_is_a_clear_error() {
    let words = "AUTH=X ".repeat(5000);
    let server = play("imap_capability_flood", &[("WORDS", &words)]);
    let e = ImapSession::connect(&imap_settings(server.port())).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("capabilities"), "{}", e.chain());
    server.finish();
}

#[test]
fn pop3_sasl_mechanism_flood_is_a_clear_error() {
    let mechs = "M ".repeat(1000);
    let server = play("pop3_sasl_flood", &[("MECHS", &mechs)]);
    let e = Pop3Session::connect(&pop3_settings(server.port())).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("SASL mechanisms"), "{}", e.chain());
    server.finish();
}

/// Records what a fetch delivered, and the largest piece handed over at once.
#[derive(Default)]
struct Collect {
    messages: Vec<(u32, Vec<u8>)>,
    largest_piece: usize,
}

impl FetchSink for Collect {
    fn start(&mut self, meta: &FetchedMeta) -> postie::Result<()> {
        self.messages.push((meta.uid, Vec::new()));
        Ok(())
    }
    fn data(&mut self, chunk: &[u8]) -> postie::Result<()> {
        self.largest_piece = self.largest_piece.max(chunk.len());
        if let Some((_, m)) = self.messages.last_mut() {
            m.extend_from_slice(chunk);
        }
        Ok(())
    }
    fn end(&mut self, _meta: &FetchedMeta, octets: u64) -> postie::Result<()> {
        let got = self.messages.last().map_or(0, |(_, m)| m.len() as u64);
        assert_eq!(got, octets);
        Ok(())
    }
}

fn big_body(n: usize, seed: u8) -> Vec<u8> {
    let mut v = b"Subject: big\r\n\r\n".to_vec();
    while v.len() < n {
        v.extend_from_slice(format!("line {seed} {}\r\n", v.len()).as_bytes());
    }
    v.truncate(n);
    v
}

#[test]
fn imap_body_before_uid_is_never_held_whole() {
    const BIG: usize = 4 * 1024 * 1024;
    let big = big_body(BIG, 5);
    let small = big_body(2000, 6);
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("the bodies are text");
    let (big_text, small_text) = (text(&big), text(&small));
    let (big_size, small_size) = (big.len().to_string(), small.len().to_string());
    let server = play(
        "imap_body_before_uid",
        &[
            ("BIG", &big_text),
            ("BIG_SIZE", &big_size),
            ("SMALL", &small_text),
            ("SMALL_SIZE", &small_size),
        ],
    );
    let mut s = ImapSession::connect(&imap_settings(server.port())).expect("connect");
    s.login().expect("login");
    let mut sink = Collect::default();
    let started = Instant::now();
    let delivered = s.fetch_bodies(&[5, 6], &mut sink).expect("fetch");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The small body was held until its UID came; the large one was fetched again alone and
    // streamed: no piece handed over (or held) is anywhere near the message size.
    assert!(
        sink.largest_piece <= 512 * 1024,
        "a {} byte piece was handed over at once",
        sink.largest_piece
    );
    let mut got = sink.messages.clone();
    got.sort();
    assert_eq!(got, vec![(5, big), (6, small)]);
    let mut delivered = delivered;
    delivered.sort_unstable();
    assert_eq!(delivered, vec![5, 6]);
    s.logout().expect("logout");
    server.finish();
}

// ---- endless lines, floods of responses, absurd literal sizes ----

#[test]
fn endless_line_is_a_clear_error_for_every_protocol() {
    let started = Instant::now();
    let server = play("endless_pop3", &[]);
    let e = Pop3Session::connect(&pop3_settings(server.port())).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("line longer than"), "{}", e.chain());
    server.finish();

    let server = play("endless_imap", &[]);
    let e = ImapSession::connect(&imap_settings(server.port())).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("longer than"), "{}", e.chain());
    server.finish();

    // "* SEARCH" lines have their own, larger bound (64 MiB): still a bound.
    let server = play("endless_imap_search", &[]);
    let e = ImapSession::connect(&imap_settings(server.port())).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("longer than"), "{}", e.chain());
    server.finish();

    let server = play("endless_smtp", &[]);
    let e = SmtpClient::connect(&smtp_settings(server.port())).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("longer than"), "{}", e.chain());
    server.finish();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_million_untagged_responses_finish_in_bounded_time() {
    let server = play("million_untagged", &[]);
    let mut s = ImapSession::connect(&imap_settings(server.port())).expect("connect");
    s.login().expect("login");
    let started = Instant::now();
    let info = s.select("INBOX").expect("select");
    let took = started.elapsed();
    assert_eq!(info.exists, 7);
    assert_eq!(info.uidvalidity, Some(9));
    assert!(took < Duration::from_secs(15), "{took:?}");
    s.logout().expect("logout");
    server.finish();
}

#[test]
fn absurd_literal_sizes_are_clear_errors() {
    for size in [
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999999999",
    ] {
        for what in ["body", "skipped", "untagged"] {
            let server = play(&format!("absurd_literal_{what}"), &[("SIZE", size)]);
            let mut s = ImapSession::connect(&imap_settings(server.port())).expect("connect");
            s.login().expect("login");
            let started = Instant::now();
            let e = s
                .fetch_bodies(&[5], &mut Collect::default())
                .expect_err("absurd literal");
            assert_eq!(e.kind(), ErrorKind::Protocol, "{size} {what}: {e:?}");
            assert!(
                e.chain().contains("literal") || e.chain().contains("number"),
                "{size} {what}: {}",
                e.chain()
            );
            assert!(started.elapsed() < Duration::from_secs(3));
            drop(s);
            server.finish();
        }
    }
}

// ---- a reply split at every byte ----

/// Feeds `input` to a machine in the given pieces, collecting its events (consecutive data
/// chunks merged, since their size follows the pieces) and its trace lines.
fn split_at<E: PartialEq + Clone, M>(
    machine: &mut M,
    pieces: &[&[u8]],
    receive: fn(&mut M, &[u8]),
    poll: fn(&mut M) -> Result<Option<E>, String>,
    merge: fn(&mut E, &E) -> bool,
) -> Result<Vec<E>, String> {
    let mut events: Vec<E> = Vec::new();
    for piece in pieces {
        receive(machine, piece);
        while let Some(ev) = poll(machine)? {
            if let Some(last) = events.last_mut()
                && merge(last, &ev)
            {
                continue;
            }
            events.push(ev);
        }
    }
    Ok(events)
}

/// Every two-piece split and the byte-at-a-time feed give what the whole input gives.
fn every_split<T: PartialEq + std::fmt::Debug>(input: &[u8], run: impl Fn(&[&[u8]]) -> T) {
    let whole = run(&[input]);
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(run(&[a, b]), whole, "split at byte {i}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes), whole, "one byte at a time");
}

#[test]
fn pop3_machine_gives_identical_results_for_every_split() {
    use postie::proto::pop3::{Client, Command, Event, Limits};
    let input: &[u8] = b"+OK ready <1.2@host>\r\n+OK caps\r\nUSER\r\nSASL PLAIN LOGIN\r\n..X-DOT\r\nPIPELINING\r\n.\r\n+OK\r\n-ERR [AUTH] no\r\n+OK 2 320\r\n+OK\r\n1 120\r\n2 200\r\n.\r\n+OK\r\n1 uid-a\r\n2 uid-b\r\n.\r\n+OK 120 octets\r\nSubject: x\r\n\r\n..dot\r\n.\r\r\nbare\nlf\r\n.\r\n+OK\r\n.\r\n-ERR [IN-USE] busy\r\n+ PDEyMzQ+\r\n+OK bye\r\n";
    let cmds = [
        Command::Capa,
        Command::User("bob".into()),
        Command::Pass("pw".into()),
        Command::Stat,
        Command::ListAll,
        Command::UidlAll,
        Command::Retr(1),
        Command::Top(2, 0),
        Command::Dele(1),
        Command::Auth {
            mechanism: "CRAM-MD5".into(),
            initial: None,
        },
    ];
    let run = |pieces: &[&[u8]]| {
        let mut c = Client::new(Limits::default());
        c.set_trace(true);
        for cmd in &cmds {
            c.send(cmd);
        }
        let events = split_at(
            &mut c,
            pieces,
            |c, d| c.receive(d),
            |c| c.poll().map_err(|e| e.to_string()),
            |last: &mut Event, ev: &Event| match (last, ev) {
                (Event::MessageData(a), Event::MessageData(b)) => {
                    a.extend_from_slice(b);
                    true
                }
                _ => false,
            },
        );
        (events, c.take_trace())
    };
    let (events, trace) = run(&[input]);
    let events = events.expect("the transcript decodes");
    assert_eq!(events.len(), 19, "{events:?}");
    assert!(
        trace.contains(&"+ <SASL challenge>".to_string()),
        "{trace:?}"
    );
    every_split(input, run);
}

#[test]
fn imap_machine_gives_identical_results_for_every_split() {
    use postie::proto::imap::{Client, Command, Event, Limits, Search};
    let input: &[u8] = b"* OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE] hi\r\nA0001 OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE] in\r\n* 2 EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 9] n\r\nA0002 OK [READ-WRITE] sel\r\n* SEARCH 5 8\r\nA0003 OK s\r\n* 1 FETCH (UID 5 RFC822.SIZE 12 FLAGS (\\Seen) BODY[] {12}\r\nab\r\n)\r\n{3}\r\n)\r\n* 2 FETCH (BODY[] {4}\r\nwxyz UID 8 FLAGS ())\r\n* 9 FETCH (X-ANNOT {5}\r\n{1}\r\n)\r\nA0004 OK f\r\n* 1 EXPUNGE\r\nA0005 OK e\r\n* BYE bye\r\nA0006 OK out\r\n";
    let cmds = [
        Command::Login {
            user: "bob".into(),
            password: "pw".into(),
        },
        Command::Select("INBOX".into()),
        Command::UidSearch(Search::All),
        Command::UidFetch {
            set: "5,8".into(),
            body: true,
        },
        Command::UidExpunge("5".into()),
        Command::Logout,
    ];
    let run = |pieces: &[&[u8]]| {
        let mut c = Client::new(Limits::default());
        c.set_trace(true);
        for cmd in &cmds {
            c.command(cmd);
        }
        let events = split_at(
            &mut c,
            pieces,
            |c, d| c.receive(d),
            |c| c.poll().map_err(|e| e.to_string()),
            |last: &mut Event, ev: &Event| match (last, ev) {
                (Event::BodyChunk(a), Event::BodyChunk(b)) => {
                    a.extend_from_slice(b);
                    true
                }
                _ => false,
            },
        );
        (events, c.take_trace())
    };
    let (events, _) = run(&[input]);
    let events = events.expect("the transcript decodes");
    assert!(
        events.contains(&Event::BodyChunk(b"ab\r\n)\r\n{3}\r\n".to_vec())),
        "{events:?}"
    );
    every_split(input, run);
}

#[test]
fn smtp_reply_parser_gives_identical_results_for_every_split() {
    use postie::proto::smtp::{Capabilities, ReplyParser};
    let input: &[u8] = b"220 mail.example ESMTP ready\r\n250-mail.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n334 VXNlcm5hbWU6\r\n235 2.7.0 ok\r\n250 2.1.0 ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go\r\n250 2.0.0 queued\n221 bye\r\n";
    let run = |pieces: &[&[u8]]| {
        let mut p = ReplyParser::default();
        let mut replies = Vec::new();
        for piece in pieces {
            p.push(piece);
            loop {
                match p.next_reply() {
                    Ok(Some(r)) => replies.push(r),
                    Ok(None) => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        Ok(replies)
    };
    let replies = run(&[input]).expect("decodes");
    assert_eq!(replies.len(), 9, "{replies:?}");
    let caps = Capabilities::from_ehlo(&replies[1]).expect("EHLO");
    assert!(caps.pipelining && caps.offers_auth("LOGIN"));
    every_split(input, run);
}

// ---- TLS connections cut in the middle of a message (no close_notify) ----

/// Plays an implicit-TLS transcript; returns it and the certificate's fingerprint as
/// configuration files write it.
fn serve_tls(name: &str) -> (Player, String) {
    (play(name, &[]), TestCert::get().fingerprint_hex())
}

/// Runs rfetch once against an implicit-TLS server pinned by fingerprint; returns its output
/// and the number of messages in the Maildir.
fn rfetch_tls(proto: &str, port: u16, fingerprint: &str) -> (std::process::Output, usize) {
    let dir = common::temp_dir("rfetch-tls");
    let md = common::new_maildir(&dir);
    let config = dir.join("config.toml");
    common::write_private(
        &config,
        &format!(
            "[accounts.cut]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npassword = \"pw\"\ntimeout = 5\n\
             [accounts.cut.fetch]\nprotocol = \"{proto}\"\nport = {port}\nmaildir = \"{}\"\n\
             tls = true\ntls_starttls = false\ntls_fingerprint = \"{fingerprint}\"\n",
            md.display()
        ),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rfetch"))
        .args(["-C", config.to_str().expect("utf-8")])
        .env("HOME", &dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run rfetch");
    let count = ["new", "cur", "tmp"]
        .iter()
        .map(|d| std::fs::read_dir(md.join(d)).map_or(0, |r| r.count()))
        .sum();
    let _ = std::fs::remove_dir_all(&dir);
    (out, count)
}

#[test]
fn pop3s_cut_mid_message_delivers_and_deletes_nothing() {
    let (server, fingerprint) = serve_tls("pop3s_cut");
    let port = server.port();
    let (out, delivered) = rfetch_tls("pop3", port, &fingerprint);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(delivered, 0, "a cut message was delivered: {err}");
    let heard = server.finish();
    assert!(
        heard.iter().any(|l| l.starts_with("RETR")),
        "{heard:?} {err}"
    );
    assert!(
        !heard
            .iter()
            .any(|l| l.starts_with("DELE") || l.starts_with("QUIT")),
        "{heard:?}"
    );
    assert!(
        err.contains("closed") || err.contains("close_notify") || err.contains("TLS"),
        "{err}"
    );
}

#[test]
fn imaps_cut_mid_message_delivers_and_deletes_nothing() {
    let (server, fingerprint) = serve_tls("imaps_cut");
    let port = server.port();
    let (out, delivered) = rfetch_tls("imap", port, &fingerprint);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(delivered, 0, "a cut message was delivered: {err}");
    let heard = server.finish();
    assert!(heard.iter().any(|l| l.contains("UID FETCH")), "{heard:?}");
    assert!(
        !heard
            .iter()
            .any(|l| l.contains("STORE") || l.contains("EXPUNGE")),
        "{heard:?}"
    );
}

#[test]
fn smtps_cut_mid_data_is_not_reported_as_sent() {
    let (server, fingerprint) = serve_tls("smtps_cut");
    let port = server.port();
    let dir = common::temp_dir("rsend-tls");
    let rc = dir.join("msmtprc");
    common::write_private(
        &rc,
        &format!(
            "account default\nhost 127.0.0.1\nport {port}\ntls on\ntls_starttls off\n\
             tls_fingerprint {fingerprint}\nfrom alice@localhost\ntimeout 5\n"
        ),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rsend"))
        .args(["-C", rc.to_str().expect("utf-8"), "bob@example.org"])
        .env_remove("HOME")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rsend");
    if let Some(mut stdin) = child.stdin.take() {
        let body = format!("Subject: cut\n\n{}", "a line of the body\n".repeat(20_000));
        let _ = stdin.write_all(body.as_bytes());
    }
    let out = child.wait_with_output().expect("wait");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(75),
        "temporary failure expected: {err}"
    );
    assert!(!err.contains("accepted"), "{err}");
    assert!(server.finish().iter().any(|l| l == "DATA"));
}
