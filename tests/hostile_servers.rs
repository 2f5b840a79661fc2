//! Hostile scripted servers against the SMTP, POP3 and IMAP sessions on 127.0.0.1: floods of
//! capability lines, endless lines, a million untagged responses, absurd literal sizes, a body
//! whose UID comes after it, and TLS connections cut in the middle of a message. Every case must
//! end in a clear error (or the right result) within seconds, with bounded memory and no crash.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode};
use postie::session::imap::{FetchSink, FetchedMeta, ImapSession, ImapSettings};
use postie::session::pop3::{Pop3Session, Pop3Settings, Secret};
use postie::session::smtp::{SmtpClient, SmtpSettings};

/// Runs `script` on the first connection to a fresh loopback port.
fn serve(script: impl FnOnce(TcpStream) + Send + 'static) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        if let Ok((sock, _)) = listener.accept() {
            let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
            script(sock);
        }
    });
    (port, handle)
}

/// Reads one command line (None when the client went away).
fn hear(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_string()),
    }
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

/// A POP3 server answering CAPA with `lines` capability lines (sent in large writes).
fn capa_flood(lines: usize) -> (u16, JoinHandle<()>) {
    serve(move |mut sock| {
        let mut reader = BufReader::new(sock.try_clone().expect("clone"));
        let _ = sock.write_all(b"+OK flood\r\n");
        while let Some(cmd) = hear(&mut reader) {
            if cmd == "CAPA" {
                let _ = sock.write_all(b"+OK\r\n");
                let chunk = "X\r\n".repeat(10_000);
                for _ in 0..lines / 10_000 {
                    if sock.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                }
                let _ = sock.write_all(b".\r\n");
            } else {
                let _ = sock.write_all(b"+OK\r\n");
            }
        }
    })
}

#[test]
fn pop3_capa_flood_is_a_clear_error_not_a_stack_overflow() {
    let (port, server) = capa_flood(200_000);
    let started = Instant::now();
    let e = Pop3Session::connect(&pop3_settings(port)).expect_err("a CAPA flood must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("CAPA"), "{}", e.chain());
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(server);
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
    let (port, server) = serve(|mut sock| {
        let mut reader = BufReader::new(sock.try_clone().expect("clone"));
        let _ = sock.write_all(b"220 flood\r\n");
        if hear(&mut reader).is_some() {
            let lines = "250-X\r\n".repeat(100_000);
            let _ = sock.write_all(lines.as_bytes());
        }
    });
    let started = Instant::now();
    let e = SmtpClient::connect(&smtp_settings(port)).expect_err("an EHLO flood must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("more than 100 lines"), "{}", e.chain());
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = server.join();
}

#[test]
fn smtp_auth_mechanism_flood_is_a_clear_error() {
    let (port, server) = serve(|mut sock| {
        let mut reader = BufReader::new(sock.try_clone().expect("clone"));
        let _ = sock.write_all(b"220 flood\r\n");
        if hear(&mut reader).is_some() {
            let mechs: String = (0..300).map(|i| format!("M{i} ")).collect();
            let _ = sock.write_all(format!("250-flood\r\n250 AUTH {mechs}\r\n").as_bytes());
        }
        let _ = hear(&mut reader);
    });
    let e = SmtpClient::connect(&smtp_settings(port)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("AUTH mechanisms"), "{}", e.chain());
    let _ = server.join();
}

#[test]
fn imap_capability_flood_is_a_clear_error() {
    let (port, server) = serve(|mut sock| {
        let mut reader = BufReader::new(sock.try_clone().expect("clone"));
        let _ = sock.write_all(b"* OK flood\r\n");
        if let Some(cmd) = hear(&mut reader) {
            let tag = cmd.split(' ').next().unwrap_or("A").to_string();
            let words = "AUTH=X ".repeat(5000);
            let _ = sock.write_all(format!("* CAPABILITY {words}\r\n{tag} OK\r\n").as_bytes());
        }
        let _ = hear(&mut reader);
    });
    let e = ImapSession::connect(&imap_settings(port)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("capabilities"), "{}", e.chain());
    let _ = server.join();
}

#[test]
fn pop3_sasl_mechanism_flood_is_a_clear_error() {
    let (port, server) = serve(|mut sock| {
        let mut reader = BufReader::new(sock.try_clone().expect("clone"));
        let _ = sock.write_all(b"+OK flood\r\n");
        if hear(&mut reader).is_some() {
            let mechs = "M ".repeat(1000);
            let _ = sock.write_all(format!("+OK\r\nSASL {mechs}\r\n.\r\n").as_bytes());
        }
        let _ = hear(&mut reader);
    });
    let e = Pop3Session::connect(&pop3_settings(port)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("SASL mechanisms"), "{}", e.chain());
    let _ = server.join();
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

/// A logged-in IMAP server whose commands after LOGIN are answered by `rest(tag, command)`.
fn imap_server(rest: impl Fn(&str, &str) -> Vec<u8> + Send + 'static) -> (u16, JoinHandle<()>) {
    serve(move |mut sock| {
        let mut reader = BufReader::new(sock.try_clone().expect("clone"));
        let _ = sock.write_all(b"* OK [CAPABILITY IMAP4rev1 UIDPLUS] hostile\r\n");
        while let Some(line) = hear(&mut reader) {
            let (tag, cmd) = line.split_once(' ').unwrap_or((&line, ""));
            let reply = if cmd.starts_with("LOGIN") {
                format!("{tag} OK [CAPABILITY IMAP4rev1 UIDPLUS] in\r\n").into_bytes()
            } else if cmd.starts_with("LOGOUT") {
                let _ = sock.write_all(format!("* BYE\r\n{tag} OK\r\n").as_bytes());
                return;
            } else {
                rest(tag, cmd)
            };
            if sock.write_all(&reply).is_err() {
                return;
            }
        }
    })
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
    let (big2, small2) = (big.clone(), small.clone());
    let (port, server) = imap_server(move |tag, cmd| {
        let fetch = |uid: u32, body: &[u8]| {
            let mut r = format!("* {uid} FETCH (BODY[] {{{}}}\r\n", body.len()).into_bytes();
            r.extend_from_slice(body);
            r.extend_from_slice(format!(" UID {uid} FLAGS (\\Seen))\r\n").as_bytes());
            r
        };
        let mut out = Vec::new();
        if cmd.starts_with("UID FETCH 5:6 ") {
            out.extend(fetch(5, &big2));
            out.extend(fetch(6, &small2));
        } else if cmd.starts_with("UID FETCH 5 ") {
            out.extend(fetch(5, &big2));
        }
        out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
        out
    });
    let mut s = ImapSession::connect(&imap_settings(port)).expect("connect");
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
    let _ = server.join();
}

// ---- endless lines, floods of responses, absurd literal sizes ----

/// A server that says `prefix` and then sends `fill` bytes forever (until the client goes).
fn endless(prefix: &'static [u8], fill: u8) -> (u16, JoinHandle<()>) {
    serve(move |mut sock| {
        let _ = sock.set_write_timeout(Some(Duration::from_secs(10)));
        if sock.write_all(prefix).is_err() {
            return;
        }
        let chunk = vec![fill; 64 * 1024];
        // 1 GiB at most: far more than any bound, and the test fails if it is all read.
        for _ in 0..16_384 {
            if sock.write_all(&chunk).is_err() {
                return;
            }
        }
    })
}

#[test]
fn endless_line_is_a_clear_error_for_every_protocol() {
    let started = Instant::now();
    let (port, server) = endless(b"+OK ", b'x');
    let e = Pop3Session::connect(&pop3_settings(port)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("line longer than"), "{}", e.chain());
    let _ = server.join();

    let (port, server) = endless(b"* OK ", b'x');
    let e = ImapSession::connect(&imap_settings(port)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("longer than"), "{}", e.chain());
    let _ = server.join();

    // "* SEARCH" lines have their own, larger bound (64 MiB): still a bound.
    let (port, server) = endless(b"* OK hi\r\n* SEARCH ", b'1');
    let e = ImapSession::connect(&imap_settings(port)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("longer than"), "{}", e.chain());
    let _ = server.join();

    let (port, server) = endless(b"220 ", b'x');
    let e = SmtpClient::connect(&smtp_settings(port)).expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert!(e.chain().contains("longer than"), "{}", e.chain());
    let _ = server.join();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_million_untagged_responses_finish_in_bounded_time() {
    const N: usize = 1_000_000;
    let (port, server) = imap_server(|tag, cmd| {
        if cmd.starts_with("SELECT") {
            let mut out = Vec::with_capacity(N * 16);
            for i in 0..N {
                // A mix of what servers send: counts, flags, unknown data with a literal.
                match i % 4 {
                    0 => out.extend_from_slice(b"* 3 RECENT\r\n"),
                    1 => out.extend_from_slice(b"* FLAGS (\\Seen)\r\n"),
                    2 => out.extend_from_slice(b"* X-UNKNOWN {3}\r\nabc\r\n"),
                    _ => out.extend_from_slice(b"* 7 EXISTS\r\n"),
                }
            }
            out.extend_from_slice(
                format!("* OK [UIDVALIDITY 9] v\r\n{tag} OK selected\r\n").as_bytes(),
            );
            out
        } else {
            format!("{tag} OK\r\n").into_bytes()
        }
    });
    let mut s = ImapSession::connect(&imap_settings(port)).expect("connect");
    s.login().expect("login");
    let started = Instant::now();
    let info = s.select("INBOX").expect("select");
    let took = started.elapsed();
    assert_eq!(info.exists, 7);
    assert_eq!(info.uidvalidity, Some(9));
    assert!(took < Duration::from_secs(15), "{took:?}");
    s.logout().expect("logout");
    let _ = server.join();
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
        for (what, line) in [
            ("body", format!("* 1 FETCH (UID 5 BODY[] {{{size}}}\r\nabc")),
            ("skipped", format!("* 1 FETCH (X-THING {{{size}}}\r\nabc")),
            ("untagged", format!("* LIST () \"/\" {{{size}}}\r\nabc")),
        ] {
            let (port, server) = imap_server(move |_, cmd| {
                if cmd.starts_with("UID FETCH") {
                    line.clone().into_bytes()
                } else {
                    b"* BAD what\r\n".to_vec()
                }
            });
            let mut s = ImapSession::connect(&imap_settings(port)).expect("connect");
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
            let _ = server.join();
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

type TlsStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// A server certificate for "localhost" and its SHA-256 fingerprint as colon-separated hex.
fn tls_config() -> (std::sync::Arc<rustls::ServerConfig>, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let der = ck.cert.der().clone();
    let fp = ring::digest::digest(&ring::digest::SHA256, &der);
    let fingerprint: Vec<String> = fp.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(postie::net::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("config");
    (std::sync::Arc::new(config), fingerprint.join(":"))
}

/// One implicit-TLS connection: lines in, bytes out, and a cut that drops the TCP connection
/// without a TLS close_notify.
struct TlsPeer {
    stream: TlsStream,
    tcp: TcpStream,
    pending: Vec<u8>,
    heard: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TlsPeer {
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                self.heard.lock().expect("lock").push(text.clone());
                return Some(text);
            }
            let mut buf = [0u8; 8192];
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn say(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    /// Drops the connection as a crash or an attacker would: TCP closes, no close_notify.
    fn cut(self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}

type Heard = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

fn serve_tls(script: impl FnOnce(TlsPeer) + Send + 'static) -> (u16, String, Heard) {
    let (config, fingerprint) = tls_config();
    let heard: Heard = std::sync::Arc::default();
    let heard2 = std::sync::Arc::clone(&heard);
    let (port, _) = serve(move |sock| {
        let tcp = sock.try_clone().expect("clone");
        let conn = rustls::ServerConnection::new(config).expect("tls");
        script(TlsPeer {
            stream: rustls::StreamOwned::new(conn, sock),
            tcp,
            pending: Vec::new(),
            heard: heard2,
        });
    });
    (port, fingerprint, heard)
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let d = std::env::temp_dir().join(format!("hostile-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write config");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Runs rfetch once against an implicit-TLS server pinned by fingerprint; returns its output
/// and the number of messages in the Maildir.
fn rfetch_tls(proto: &str, port: u16, fingerprint: &str) -> (std::process::Output, usize) {
    let dir = temp_dir("rfetch-tls");
    let md = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).expect("maildir");
    }
    let config = dir.join("config.toml");
    write_private(
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

const CUT_MESSAGE: &str = "From: a@example.org\r\nSubject: cut\r\n\r\nfirst half of the body\r\n";

#[test]
fn pop3s_cut_mid_message_delivers_and_deletes_nothing() {
    let (port, fingerprint, heard) = serve_tls(|mut peer| {
        peer.say(b"+OK POP3S\r\n");
        while let Some(line) = peer.line() {
            let verb = line
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            match verb.as_str() {
                "CAPA" => peer.say(b"+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
                "UIDL" => peer.say(b"+OK\r\n1 uid-1\r\n.\r\n"),
                "LIST" => peer.say(b"+OK\r\n1 5000\r\n.\r\n"),
                "STAT" => peer.say(b"+OK 1 5000\r\n"),
                "RETR" => {
                    peer.say(b"+OK 5000 octets\r\n");
                    peer.say(CUT_MESSAGE.as_bytes());
                    std::thread::sleep(Duration::from_millis(100));
                    return peer.cut();
                }
                _ => peer.say(b"+OK\r\n"),
            }
        }
    });
    let (out, delivered) = rfetch_tls("pop3", port, &fingerprint);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(delivered, 0, "a cut message was delivered: {err}");
    let heard = heard.lock().expect("lock").clone();
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
    let (port, fingerprint, heard) = serve_tls(|mut peer| {
        peer.say(b"* OK [CAPABILITY IMAP4rev1 UIDPLUS] IMAPS\r\n");
        while let Some(line) = peer.line() {
            let (tag, cmd) = line.split_once(' ').unwrap_or((&line, ""));
            let tag = tag.to_string();
            if cmd.starts_with("SELECT") {
                peer.say(
                    format!("* 1 EXISTS\r\n* OK [UIDVALIDITY 3] v\r\n{tag} OK [READ-WRITE] s\r\n")
                        .as_bytes(),
                );
            } else if cmd.starts_with("UID SEARCH") {
                peer.say(format!("* SEARCH 4\r\n{tag} OK s\r\n").as_bytes());
            } else if cmd.starts_with("UID FETCH") && cmd.contains("BODY") {
                peer.say(b"* 1 FETCH (UID 4 RFC822.SIZE 5000 BODY[] {5000}\r\n");
                peer.say(CUT_MESSAGE.as_bytes());
                std::thread::sleep(Duration::from_millis(100));
                return peer.cut();
            } else if cmd.starts_with("UID FETCH") {
                peer.say(
                    format!("* 1 FETCH (UID 4 RFC822.SIZE 5000)\r\n{tag} OK f\r\n").as_bytes(),
                );
            } else {
                peer.say(format!("{tag} OK done\r\n").as_bytes());
            }
        }
    });
    let (out, delivered) = rfetch_tls("imap", port, &fingerprint);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(delivered, 0, "a cut message was delivered: {err}");
    let heard = heard.lock().expect("lock").clone();
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
    let (port, fingerprint, heard) = serve_tls(|mut peer| {
        peer.say(b"220 SMTPS\r\n");
        while let Some(line) = peer.line() {
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                peer.say(b"250-smtps\r\n250 8BITMIME\r\n");
            } else if upper.starts_with("DATA") {
                peer.say(b"354 go\r\n");
                // Read a little of the message, then vanish without a reply.
                let _ = peer.line();
                return peer.cut();
            } else {
                peer.say(b"250 ok\r\n");
            }
        }
    });
    let dir = temp_dir("rsend-tls");
    let rc = dir.join("msmtprc");
    write_private(
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
    assert!(heard.lock().expect("lock").iter().any(|l| l == "DATA"));
}
