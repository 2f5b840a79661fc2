//! The net layer against the real loopback Postfix + Dovecot stack: implicit TLS, STARTTLS on
//! SMTP submission, IMAP and POP3, each trust choice, IPv6, and the connect/timeout failures.
//! Run with `POSTIE_STACK_DIR=/tmp/refstack cargo test --test net_stack`.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use postie::ErrorKind;
use postie::net::{
    self, ConnectOptions, Connection, Endpoint, NetError, TlsOptions, Trust, format_fingerprint,
};

fn ep(host: &str, port: u16) -> Endpoint {
    Endpoint {
        host: host.to_string(),
        port,
    }
}

fn opts() -> ConnectOptions {
    ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        source_ip: None,
        route: postie::net::Route::Direct,
    }
}

fn trust(t: Trust) -> TlsOptions {
    TlsOptions {
        trust: t,
        ..TlsOptions::default()
    }
}

/// Reads one line byte by byte, so nothing past it is consumed (a session would buffer, but
/// here the STARTTLS upgrade must see the socket exactly as the server left it).
fn read_line(conn: &mut Connection) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        assert!(line.len() < 8192, "line too long: {line:?}");
        match conn.read(&mut byte) {
            Ok(0) => panic!("EOF after {:?}", String::from_utf8_lossy(&line)),
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!("read failed: {:?}", NetError::from_io(e)),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Reads lines until one satisfies `last`; returns them all.
fn read_until(conn: &mut Connection, last: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    loop {
        let line = read_line(conn);
        text.push_str(&line);
        if last(&line) {
            return text;
        }
    }
}

fn smtp_reply(conn: &mut Connection) -> String {
    read_until(conn, |l| l.as_bytes().get(3) == Some(&b' '))
}

fn send(conn: &mut Connection, text: &str) {
    conn.write_all(text.as_bytes()).unwrap();
}

#[derive(Debug, Clone, Copy)]
enum Proto {
    Smtps,
    Submission,
    Imap,
    Pop3,
}

const ALL: [Proto; 4] = [Proto::Smtps, Proto::Submission, Proto::Imap, Proto::Pop3];

impl Proto {
    fn port(self, stack: &common::Stack) -> u16 {
        stack.port(match self {
            Proto::Smtps => "SMTPS_PORT",
            Proto::Submission => "SUBMISSION_PORT",
            Proto::Imap => "IMAP_PORT",
            Proto::Pop3 => "POP3_PORT",
        })
    }
}

/// Connects, secures the connection as the protocol does, and returns what the server says
/// about its capabilities once TLS is on, with the connection.
fn secure_session(
    proto: Proto,
    host: &str,
    port: u16,
    tls: &TlsOptions,
) -> Result<(String, Connection), NetError> {
    let endpoint = ep(host, port);
    let mut conn = match proto {
        Proto::Smtps => net::connect_tls(&endpoint, &opts(), tls)?,
        _ => net::connect(&endpoint, &opts())?,
    };
    match proto {
        Proto::Smtps => {
            assert!(conn.is_tls());
            let banner = smtp_reply(&mut conn);
            assert!(banner.starts_with("220"), "{banner}");
            send(&mut conn, "EHLO client.test\r\n");
        }
        Proto::Submission => {
            let banner = smtp_reply(&mut conn);
            assert!(banner.starts_with("220"), "{banner}");
            send(&mut conn, "EHLO client.test\r\n");
            let ehlo = smtp_reply(&mut conn);
            assert!(ehlo.contains("STARTTLS"), "{ehlo}");
            send(&mut conn, "STARTTLS\r\n");
            let go = smtp_reply(&mut conn);
            assert!(go.starts_with("220"), "{go}");
            conn = conn.upgrade_tls(tls, host)?;
            send(&mut conn, "EHLO client.test\r\n");
        }
        Proto::Imap => {
            let banner = read_line(&mut conn);
            assert!(banner.starts_with("* OK"), "{banner}");
            send(&mut conn, "a STARTTLS\r\n");
            let go = read_until(&mut conn, |l| l.starts_with("a "));
            assert!(go.contains("a OK"), "{go}");
            conn = conn.upgrade_tls(tls, host)?;
            send(&mut conn, "b CAPABILITY\r\n");
        }
        Proto::Pop3 => {
            let banner = read_line(&mut conn);
            assert!(banner.starts_with("+OK"), "{banner}");
            send(&mut conn, "STLS\r\n");
            let go = read_line(&mut conn);
            assert!(go.starts_with("+OK"), "{go}");
            conn = conn.upgrade_tls(tls, host)?;
            send(&mut conn, "CAPA\r\n");
        }
    }
    let caps = match proto {
        Proto::Smtps | Proto::Submission => smtp_reply(&mut conn),
        Proto::Imap => read_until(&mut conn, |l| l.starts_with("b ")),
        Proto::Pop3 => read_until(&mut conn, |l| l == ".\r\n"),
    };
    Ok((caps, conn))
}

fn assert_auth_offered(proto: Proto, caps: &str) {
    let needle = match proto {
        Proto::Smtps | Proto::Submission => "AUTH",
        Proto::Imap => "AUTH=PLAIN",
        Proto::Pop3 => "SASL",
    };
    assert!(caps.contains(needle), "{proto:?}: {caps}");
}

#[test]
fn implicit_tls_verifies_with_the_stack_ca_and_reads_the_banner() {
    let stack = common::Stack::get();
    let tls = trust(Trust::File(stack.ca()));
    let endpoint = ep("localhost", stack.port("SMTPS_PORT"));
    let mut conn = net::connect_tls(&endpoint, &opts(), &tls).unwrap();
    let banner = smtp_reply(&mut conn);
    assert!(banner.starts_with("220 "), "{banner}");
    assert!(conn.is_tls());
    assert_eq!(
        conn.peer_fingerprint_sha256(),
        Some(stack.server_fingerprint())
    );
    let der = conn.peer_certificate_der().unwrap();
    assert!(
        der.len() > 100 && der[0] == 0x30,
        "not DER: {:?}",
        &der[..4]
    );
    let version = conn.protocol_version().unwrap();
    assert!(version.starts_with("TLSv1."), "{version}");
    let suite = conn.cipher_suite().unwrap();
    assert!(suite.starts_with("TLS"), "{suite}");
    conn.quickack();
    send(&mut conn, "QUIT\r\n");
    assert!(smtp_reply(&mut conn).starts_with("221"));
    conn.shutdown().unwrap();
}

#[test]
fn every_protocol_secures_with_the_trust_file_and_offers_auth() {
    let stack = common::Stack::get();
    let tls = trust(Trust::File(stack.ca()));
    for proto in ALL {
        let (caps, conn) = secure_session(proto, "localhost", proto.port(&stack), &tls)
            .unwrap_or_else(|e| panic!("{proto:?}: {e}"));
        assert!(conn.is_tls());
        assert_auth_offered(proto, &caps);
    }
}

#[test]
fn system_trust_rejects_the_private_ca_as_unknown_issuer() {
    let stack = common::Stack::get();
    let tls = trust(Trust::System);
    for proto in ALL {
        let err = secure_session(proto, "localhost", proto.port(&stack), &tls).unwrap_err();
        assert!(
            matches!(err, NetError::Certificate { .. }),
            "{proto:?}: {err:?}"
        );
        let text = err.to_string();
        let want = format!(
            "certificate for localhost:{} is not trusted: unknown issuer",
            proto.port(&stack)
        );
        assert!(text.starts_with(&want), "{proto:?}: {text}");
        assert_eq!(postie::Error::from(err).kind(), ErrorKind::Certificate);
    }
}

#[test]
fn the_right_fingerprint_is_accepted() {
    let stack = common::Stack::get();
    let tls = trust(Trust::Fingerprint(stack.server_fingerprint()));
    for proto in ALL {
        let (caps, _) = secure_session(proto, "localhost", proto.port(&stack), &tls)
            .unwrap_or_else(|e| panic!("{proto:?}: {e}"));
        assert_auth_offered(proto, &caps);
    }
    // The fingerprint ignores the name: an override naming nothing in the certificate passes.
    let tls = TlsOptions {
        trust: Trust::Fingerprint(stack.server_fingerprint()),
        server_name: Some("not-the-name.example".into()),
        client_cert: None,
    };
    secure_session(Proto::Smtps, "127.0.0.1", stack.port("SMTPS_PORT"), &tls).unwrap();
}

#[test]
fn a_wrong_fingerprint_is_a_mismatch_naming_the_presented_one() {
    let stack = common::Stack::get();
    let mut wrong = stack.server_fingerprint();
    wrong[0] ^= 0xff;
    let tls = trust(Trust::Fingerprint(wrong));
    for proto in ALL {
        let err = secure_session(proto, "localhost", proto.port(&stack), &tls).unwrap_err();
        let text = err.to_string();
        let want = format!(
            "fingerprint mismatch: server presented SHA256 {}",
            format_fingerprint(&stack.server_fingerprint())
        );
        assert!(text.ends_with(&want), "{proto:?}: {text}");
        assert_eq!(
            postie::Error::from(err).kind(),
            ErrorKind::Certificate,
            "{proto:?}"
        );
    }
}

#[test]
fn ipv6_loopback_works_and_verifies_the_ip_name() {
    let stack = common::Stack::get();
    let tls = trust(Trust::File(stack.ca()));
    for proto in ALL {
        let (caps, conn) = secure_session(proto, "::1", proto.port(&stack), &tls)
            .unwrap_or_else(|e| panic!("{proto:?}: {e}"));
        assert!(conn.peer_addr().unwrap().is_ipv6());
        assert_eq!(conn.peer(), format!("[::1]:{}", proto.port(&stack)));
        assert_auth_offered(proto, &caps);
    }
}

#[test]
fn a_name_the_certificate_lacks_is_rejected() {
    let stack = common::Stack::get();
    let tls = TlsOptions {
        trust: Trust::File(stack.ca()),
        server_name: Some("mail.example.org".into()),
        client_cert: None,
    };
    let err =
        secure_session(Proto::Smtps, "localhost", stack.port("SMTPS_PORT"), &tls).unwrap_err();
    assert!(matches!(err, NetError::Certificate { .. }), "{err:?}");
    assert!(err.to_string().contains("not valid for"), "{err}");
}

#[test]
fn implicit_tls_on_a_starttls_port_hints_at_starttls() {
    let stack = common::Stack::get();
    let tls = trust(Trust::File(stack.ca()));
    for port in ["SUBMISSION_PORT", "IMAP_PORT", "POP3_PORT"] {
        let endpoint = ep("localhost", stack.port(port));
        let err = net::connect_tls(&endpoint, &opts(), &tls).unwrap_err();
        assert!(
            matches!(err, NetError::PlaintextAnswer { .. }),
            "{port}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("is this port expecting STARTTLS rather than implicit TLS?"),
            "{port}: {text}"
        );
        let err = postie::Error::from(err);
        assert_eq!(err.kind(), ErrorKind::Tls);
        assert_eq!(
            err.cause(),
            Some(postie::error::Cause::PlaintextAnswer),
            "{port}"
        );
    }
}

#[test]
fn refused_connection_maps_to_connect() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = net::connect(&ep("127.0.0.1", port), &opts()).unwrap_err();
    assert!(matches!(err, NetError::Connect { .. }), "{err:?}");
    let err = postie::Error::from(err);
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert!(err.is_transient());
    assert!(
        err.chain()
            .starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
        "{}",
        err.chain()
    );
}

#[test]
fn a_silent_server_times_out_within_the_io_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        // Accept twice and hold both connections open without a word until the test is done.
        let a = listener.accept().unwrap();
        let b = listener.accept().unwrap();
        let _ = done_rx.recv_timeout(Duration::from_secs(10));
        drop((a, b));
    });
    let options = ConnectOptions {
        io_timeout: Duration::from_millis(300),
        ..opts()
    };

    let mut conn = net::connect(&ep("127.0.0.1", port), &options).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let err = NetError::from_io(conn.read(&mut buf).unwrap_err());
    let waited = start.elapsed();
    assert!(matches!(err, NetError::Timeout), "{err:?}");
    assert_eq!(postie::Error::from(err).kind(), ErrorKind::Timeout);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );

    // A handshake with a silent server times out the same way.
    let start = Instant::now();
    let err = net::connect_tls(
        &ep("127.0.0.1", port),
        &options,
        &trust(Trust::DangerAcceptAny),
    )
    .unwrap_err();
    assert!(matches!(err, NetError::HandshakeTimeout { .. }), "{err:?}");
    assert_eq!(postie::Error::from(err).kind(), ErrorKind::Timeout);
    assert!(start.elapsed() < Duration::from_secs(2));
    done_tx.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn a_missing_trust_file_is_named() {
    let stack = common::Stack::get();
    let path = std::env::temp_dir().join("postie-no-such-ca.pem");
    let err = net::connect_tls(
        &ep("localhost", stack.port("SMTPS_PORT")),
        &opts(),
        &trust(Trust::File(path.clone())),
    )
    .unwrap_err();
    assert!(matches!(err, NetError::TrustFile { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot use trust file {}: ", path.display())),
        "{err}"
    );
    assert_eq!(postie::Error::from(err).kind(), ErrorKind::FileUnreadable);
}

/// Accounts with different trust share nothing: connections with one trust file share one TLS
/// configuration, and that lets no connection with another trust past its own certificate
/// check. None resumes a session: this Dovecot (ssl_verify_client_cert, no session id context)
/// aborts a handshake that offers one, so a second connection would fail.
#[test]
fn each_trust_verifies_on_its_own_and_no_session_is_resumed() {
    let stack = common::Stack::get();
    let dir = std::env::temp_dir().join(format!("postie-net-stack-trust-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let wrong_ca = dir.join("stranger.pem");
    std::fs::write(&wrong_ca, stranger.cert.pem()).unwrap();
    let copy = dir.join("stack-ca-copy.pem");
    std::fs::copy(stack.ca(), &copy).unwrap();
    let endpoint = ep("localhost", stack.port("IMAPS_PORT"));
    let imaps = |t: Trust| net::connect_tls(&endpoint, &opts(), &trust(t));
    let greeted = |mut conn: Connection| {
        let greeting = read_line(&mut conn);
        assert!(greeting.starts_with("* OK"), "{greeting}");
        assert!(!conn.tls_resumed());
    };

    let good = || imaps(Trust::File(stack.ca())).unwrap();
    greeted(good());
    greeted(good());
    let mut wrong_pin = stack.server_fingerprint();
    wrong_pin[31] ^= 1;
    for refused in [Trust::File(wrong_ca.clone()), Trust::Fingerprint(wrong_pin)] {
        let err = imaps(refused.clone()).unwrap_err();
        assert!(
            matches!(err, NetError::Certificate { .. }),
            "{refused:?}: {err:?}"
        );
    }
    // The same CA under another path, or the pin, is another configuration, and verifies.
    greeted(imaps(Trust::File(copy)).unwrap());
    greeted(imaps(Trust::Fingerprint(stack.server_fingerprint())).unwrap());
    greeted(good());
    std::fs::remove_dir_all(&dir).unwrap();
}
