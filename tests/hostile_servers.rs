//! Hostile scripted servers against the SMTP, POP3 and IMAP sessions on 127.0.0.1: floods of
//! capability lines, endless lines, a million untagged responses, absurd literal sizes, a body
//! whose UID comes after it, and TLS connections cut in the middle of a message. Every case must
//! end in a clear error (or the right result) within seconds, with bounded memory and no crash.

use std::io::{BufRead, BufReader, Write};
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
