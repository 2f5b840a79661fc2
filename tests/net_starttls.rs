//! The STARTTLS upgrade against a scripted loopback server (self-signed rcgen certificate):
//! plaintext the server sends after its go-ahead must never be read as TLS-protected data, and
//! the fingerprint and trust choices behave on a self-signed server. Hermetic: port 0 only.

mod common;

use std::io::{Read, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::tls::TestCert;
use common::transcript::{Player, Transcript};
use postie::ErrorKind;
use postie::net::{self, ConnectOptions, Connection, Endpoint, NetError, TlsOptions, Trust};

/// Log records captured from the library (the discard warning is checked through them).
static LOGS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if let Some(logs) = LOGS.get() {
            logs.lock()
                .unwrap()
                .push(format!("{} {}", record.level(), record.args()));
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    if LOGS.set(Mutex::new(Vec::new())).is_ok() {
        log::set_boxed_logger(Box::new(Capture)).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    }
}

fn warnings_about(port: u16) -> Vec<String> {
    let needle = format!("127.0.0.1:{port}");
    LOGS.get()
        .unwrap()
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("WARN") && l.contains(&needle))
        .cloned()
        .collect()
}

fn fingerprint() -> [u8; 32] {
    TestCert::get().sha256()
}

/// Plays `tests/transcripts/starttls/NAME.txt`.
fn start_server(name: &str) -> Player {
    Transcript::load(&format!("starttls/{name}")).play()
}

/// Whether the server's side of the TLS handshake failed (and nothing else went wrong).
fn handshake_failed(server: Player) -> bool {
    match server.outcome() {
        Ok(_) => false,
        Err(e) => {
            assert!(e.contains("TLS handshake failed"), "{e}");
            true
        }
    }
}

fn read_line_raw(sock: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") && line.len() < 1024 {
        if sock.read(&mut byte).unwrap() == 0 {
            break;
        }
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// How the client reads the go-ahead before upgrading.
#[derive(Debug, Clone, Copy)]
enum ReadStyle {
    /// Exactly the line, byte by byte: anything after it stays in the socket for the upgrade.
    Exact,
    /// One 4096-byte read into a session-style buffer that is then dropped.
    Buffered,
}

fn opts() -> ConnectOptions {
    ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        source_ip: None,
        route: postie::net::Route::Direct,
    }
}

/// Plain connect, banner, STARTTLS, go-ahead, upgrade with `trust`; returns the connection.
fn client_upgrade(port: u16, style: ReadStyle, trust: Trust) -> Result<Connection, NetError> {
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    let mut conn = net::connect(&ep, &opts())?;
    assert_eq!(read_line_raw(&mut conn), "220 ready\r\n");
    conn.write_all(b"STARTTLS\r\n").unwrap();
    match style {
        ReadStyle::Exact => assert_eq!(read_line_raw(&mut conn), "220 go ahead\r\n"),
        ReadStyle::Buffered => {
            let mut session_buffer = vec![0u8; 4096];
            let n = conn.read(&mut session_buffer).unwrap();
            assert!(session_buffer[..n].starts_with(b"220 go ahead\r\n"));
            drop(session_buffer);
        }
    }
    let tls = TlsOptions {
        trust,
        ..TlsOptions::default()
    };
    conn.upgrade_tls(&tls, "localhost")
}

/// Reads everything after the upgrade until the server closes.
fn read_rest(conn: &mut Connection) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
        if got.ends_with(b"\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn plain_upgrade_reads_the_real_reply() {
    let server = start_server("plain");
    let mut conn = client_upgrade(
        server.port(),
        ReadStyle::Exact,
        Trust::Fingerprint(fingerprint()),
    )
    .expect("upgrade");
    assert!(conn.is_tls());
    assert_eq!(conn.peer_fingerprint_sha256(), Some(fingerprint()));
    assert_eq!(read_rest(&mut conn), "250 REAL\r\n");
    conn.shutdown().unwrap();
    server.finish();
}

#[test]
fn injected_bytes_in_the_socket_are_discarded_with_a_warning() {
    capture_logs();
    let server = start_server("injected");
    let port = server.port();
    let mut conn = client_upgrade(port, ReadStyle::Exact, Trust::Fingerprint(fingerprint()))
        .expect("the stray bytes are discarded, the handshake then succeeds");
    let got = read_rest(&mut conn);
    assert_eq!(got, "250 REAL\r\n");
    assert!(!got.contains("INJECTED"));
    conn.shutdown().unwrap();
    server.finish();
    let warnings = warnings_about(port);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("discarded 14 bytes"),
        "{}",
        warnings[0]
    );
}

#[test]
fn injected_bytes_in_the_dropped_session_buffer_never_resurface() {
    let server = start_server("injected");
    // The session's own buffer may hold the injection (dropped) or the socket may (discarded);
    // either way only the real reply is read after the upgrade.
    let mut conn = client_upgrade(
        server.port(),
        ReadStyle::Buffered,
        Trust::Fingerprint(fingerprint()),
    )
    .expect("upgrade");
    let got = read_rest(&mut conn);
    assert_eq!(got, "250 REAL\r\n");
    conn.shutdown().unwrap();
    server.finish();
}

#[test]
fn injected_bytes_arriving_late_fail_the_handshake_or_are_discarded() {
    for style in [ReadStyle::Exact, ReadStyle::Buffered] {
        let server = start_server("injected_late");
        match client_upgrade(server.port(), style, Trust::Fingerprint(fingerprint())) {
            Ok(mut conn) => {
                // Only possible when the client was slow enough to discard the injection.
                let got = read_rest(&mut conn);
                assert_eq!(got, "250 REAL\r\n", "{style:?}");
            }
            Err(err) => {
                // The late plaintext reached the TLS layer as a record and was refused.
                assert!(matches!(err, NetError::Tls { .. }), "{style:?}: {err:?}");
                assert!(
                    err.to_string().contains("not TLS after accepting STARTTLS"),
                    "{err}"
                );
                assert_eq!(postie::Error::from(err).kind(), ErrorKind::Tls);
            }
        }
        let _ = server.outcome();
    }
}

#[test]
fn a_self_signed_server_needs_a_pin_or_its_certificate_as_trust() {
    // The system roots do not know it.
    let server = start_server("plain");
    let err = client_upgrade(server.port(), ReadStyle::Exact, Trust::System).unwrap_err();
    assert!(matches!(err, NetError::Certificate { .. }), "{err:?}");
    assert!(err.to_string().contains("unknown issuer"), "{err}");
    assert!(handshake_failed(server));

    // A wrong pin names the presented fingerprint.
    let server = start_server("plain");
    let err =
        client_upgrade(server.port(), ReadStyle::Exact, Trust::Fingerprint([7; 32])).unwrap_err();
    let want = format!(
        "fingerprint mismatch: server presented SHA256 {}",
        net::format_fingerprint(&fingerprint())
    );
    assert!(err.to_string().ends_with(&want), "{err}");
    assert!(handshake_failed(server));

    // The certificate itself as the trust file works (it names localhost).
    let dir = std::env::temp_dir().join(format!("postie-net-starttls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("self-signed.pem");
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(TestCert::get().cert.as_ref())
    };
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    std::fs::write(
        &pem,
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            body.join("\n")
        ),
    )
    .unwrap();
    let server = start_server("plain");
    let mut conn =
        client_upgrade(server.port(), ReadStyle::Exact, Trust::File(pem)).expect("trust file");
    assert_eq!(read_rest(&mut conn), "250 REAL\r\n");
    drop(conn);
    server.finish();
    std::fs::remove_dir_all(&dir).unwrap();

    // Accept-anything accepts it too.
    let server = start_server("plain");
    let mut conn = client_upgrade(server.port(), ReadStyle::Exact, Trust::DangerAcceptAny).unwrap();
    assert_eq!(read_rest(&mut conn), "250 REAL\r\n");
    drop(conn);
    server.finish();
}

#[test]
fn upgrading_twice_is_refused() {
    let server = start_server("plain");
    let conn = client_upgrade(server.port(), ReadStyle::Exact, Trust::DangerAcceptAny).unwrap();
    let err = conn
        .upgrade_tls(&TlsOptions::default(), "localhost")
        .unwrap_err();
    assert!(err.to_string().contains("already uses TLS"), "{err}");
    let _ = server.outcome();
}
