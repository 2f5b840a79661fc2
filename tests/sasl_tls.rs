//! The TLS-bound SASL mechanisms against a scripted IMAPS server. EXTERNAL: with a client
//! certificate configured, `any` authenticates with it and the server saw the certificate.
//! SCRAM with channel binding, the server side of SCRAM-SHA-256(-PLUS) implemented here: over TLS 1.3 the automatic choice is
//! SCRAM-SHA-256-PLUS and `c=` carries exactly this connection's tls-exporter value (RFC 9266,
//! checked by the server with its own export); a server that does not offer -PLUS gets "y"
//! (the client could bind: a downgrade is visible to a real server); over TLS 1.2 there is no
//! binding ("n"), and an explicit -PLUS there is refused before anything is sent.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use postie::ErrorKind;
use postie::net::{Endpoint, TlsMode, TlsOptions, Trust};
use postie::proto::sasl::Mechanism;
use postie::session::auth::{FetchAuth, Secret};
use postie::session::imap::{ImapSession, ImapSettings};

const PASSWORD: &str = "pencil-bob";
const SALT: &[u8] = b"scripted-salt-16";
const ITERATIONS: u32 = 4096;

/// The server's TLS configuration; with `client_ca`, client certificates it signs are
/// requested (and a client without one is still let in).
fn tls_config(
    tls13: bool,
    client_ca: Option<rustls::pki_types::CertificateDer<'static>>,
) -> (Arc<rustls::ServerConfig>, [u8; 32]) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let der = ck.cert.der().clone();
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &der).as_ref());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let provider = postie::net::crypto_provider();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .expect("versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).expect("client CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(vec![der], key).expect("config");
    (Arc::new(config), fingerprint)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data).as_ref().to_vec()
}

/// What the server saw: the gs2 header of client-first, and whether `c=` matched its own
/// tls-exporter value.
#[derive(Debug, Default, Clone)]
struct Seen {
    mechanism: String,
    gs2: String,
    binding_matched: bool,
    proof_ok: bool,
    /// The client presented a certificate.
    client_cert: bool,
}

/// One IMAPS connection offering `caps`; runs SCRAM-SHA-256(-PLUS) as a server would.
fn serve(tls13: bool, caps: &'static str) -> (u16, [u8; 32], Arc<Mutex<Seen>>) {
    serve_with(tls13, caps, None)
}

fn serve_with(
    tls13: bool,
    caps: &'static str,
    client_ca: Option<rustls::pki_types::CertificateDer<'static>>,
) -> (u16, [u8; 32], Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (config, fingerprint) = tls_config(tls13, client_ca);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        let Ok((mut sock, _)) = listener.accept() else {
            return;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
        let Ok(mut conn) = rustls::ServerConnection::new(config) else {
            return;
        };
        while conn.is_handshaking() {
            if conn.complete_io(&mut sock).is_err() {
                return;
            }
        }
        record.lock().expect("lock").client_cert = conn.peer_certificates().is_some();
        let mut exporter = [0u8; 32];
        if conn
            .export_keying_material(&mut exporter, b"EXPORTER-Channel-Binding", None)
            .is_err()
        {
            exporter = [0u8; 32];
        }
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let _ =
            tls.write_all(format!("* OK [CAPABILITY IMAP4rev1 SASL-IR {caps}] hi\r\n").as_bytes());
        let mut state: Option<(String, String, String)> = None; // (gs2, client-first-bare, server-first)
        let mut expected_v = None;
        loop {
            let Some(line) = read_line(&mut tls) else {
                return;
            };
            let words: Vec<&str> = line.split(' ').collect();
            let reply = match words.as_slice() {
                [t, "AUTHENTICATE", "EXTERNAL", "="] => {
                    let mut s = record.lock().expect("lock");
                    s.mechanism = "EXTERNAL".into();
                    if s.client_cert {
                        format!("{t} OK certificate accepted\r\n")
                    } else {
                        format!("{t} NO [AUTHENTICATIONFAILED] no certificate\r\n")
                    }
                }
                [t, "AUTHENTICATE", mech, ir] => {
                    let cf =
                        String::from_utf8(B64.decode(ir).unwrap_or_default()).unwrap_or_default();
                    let Some(at) = cf.find("n=") else { return };
                    let (gs2, bare) = cf.split_at(at);
                    let nonce = bare
                        .split(',')
                        .find_map(|a| a.strip_prefix("r="))
                        .unwrap_or("");
                    let sf = format!("r={nonce}srv,s={},i={ITERATIONS}", B64.encode(SALT));
                    {
                        let mut s = record.lock().expect("lock");
                        s.mechanism = (*mech).to_string();
                        s.gs2 = gs2.to_string();
                    }
                    state = Some((gs2.to_string(), bare.to_string(), sf.clone()));
                    let _ = t;
                    format!("+ {}\r\n", B64.encode(&sf))
                }
                [final_b64] if state.is_some() && expected_v.is_none() => {
                    let Some((gs2, bare, sf)) = state.clone() else {
                        return;
                    };
                    let cfin = String::from_utf8(B64.decode(final_b64).unwrap_or_default())
                        .unwrap_or_default();
                    let Some((without_proof, proof)) = cfin.rsplit_once(",p=") else {
                        return;
                    };
                    let c = without_proof
                        .split(',')
                        .find_map(|a| a.strip_prefix("c="))
                        .unwrap_or("");
                    let mut binding = gs2.as_bytes().to_vec();
                    if gs2.starts_with("p=") {
                        binding.extend_from_slice(&exporter);
                    }
                    let matched = c == B64.encode(&binding);
                    let mut salted = [0u8; 32];
                    ring::pbkdf2::derive(
                        ring::pbkdf2::PBKDF2_HMAC_SHA256,
                        std::num::NonZeroU32::new(ITERATIONS).expect("nonzero"),
                        SALT,
                        PASSWORD.as_bytes(),
                        &mut salted,
                    );
                    let client_key = hmac(&salted, b"Client Key");
                    let stored = ring::digest::digest(&ring::digest::SHA256, &client_key);
                    let auth_message = format!("{bare},{sf},{without_proof}");
                    let client_sig = hmac(stored.as_ref(), auth_message.as_bytes());
                    let expected_proof: Vec<u8> = client_key
                        .iter()
                        .zip(&client_sig)
                        .map(|(a, b)| a ^ b)
                        .collect();
                    let proof_ok = B64.decode(proof).is_ok_and(|p| p == expected_proof);
                    {
                        let mut s = record.lock().expect("lock");
                        s.binding_matched = matched;
                        s.proof_ok = proof_ok;
                    }
                    if !(matched && proof_ok) {
                        "A0001 NO [AUTHENTICATIONFAILED] binding or proof wrong\r\n".to_string()
                    } else {
                        let server_key = hmac(&salted, b"Server Key");
                        let v = B64.encode(hmac(&server_key, auth_message.as_bytes()));
                        expected_v = Some(v.clone());
                        format!("+ {}\r\n", B64.encode(format!("v={v}")))
                    }
                }
                [""] | [] if expected_v.is_some() => "A0001 OK logged in\r\n".to_string(),
                [t, "NOOP"] => format!("{t} OK\r\n"),
                [t, "CAPABILITY"] => format!("* CAPABILITY IMAP4rev1\r\n{t} OK\r\n"),
                [t, "LOGOUT"] => format!("* BYE\r\n{t} OK\r\n"),
                [t, ..] => format!("{t} BAD what\r\n"),
                [] => return,
            };
            if tls.write_all(reply.as_bytes()).is_err() {
                return;
            }
            let _ = tls.flush();
        }
    });
    (port, fingerprint, seen)
}

/// One line, read byte by byte so nothing after it is taken from the stream.
fn read_line(r: &mut impl Read) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while r.read(&mut byte).ok()? == 1 {
        if byte[0] == b'\n' {
            return Some(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        line.push(byte[0]);
    }
    None
}

fn login(port: u16, fingerprint: [u8; 32], auth: FetchAuth) -> postie::Result<()> {
    login_with(port, fingerprint, auth, None)
}

fn login_with(
    port: u16,
    fingerprint: [u8; 32],
    auth: FetchAuth,
    client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> postie::Result<()> {
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    let mut set = ImapSettings::new(ep, "bob", Secret::new(PASSWORD));
    set.tls_mode = TlsMode::Implicit;
    set.tls = TlsOptions {
        trust: Trust::Fingerprint(fingerprint),
        client_cert,
        ..TlsOptions::default()
    };
    set.auth = auth;
    set.connect.io_timeout = Duration::from_secs(3);
    let mut s = ImapSession::connect(&set)?;
    s.login()?;
    s.noop()?;
    s.logout()
}

const BOTH: &str = "AUTH=SCRAM-SHA-256-PLUS AUTH=SCRAM-SHA-256 AUTH=PLAIN";

#[test]
fn tls13_any_binds_scram_to_this_connection() {
    let (port, fp, seen) = serve(true, BOTH);
    login(port, fp, FetchAuth::Any).expect("SCRAM-SHA-256-PLUS");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.mechanism, "SCRAM-SHA-256-PLUS");
    assert_eq!(seen.gs2, "p=tls-exporter,,");
    assert!(seen.binding_matched && seen.proof_ok, "{seen:?}");
}

#[test]
fn tls13_without_plus_offered_says_y() {
    let (port, fp, seen) = serve(true, "AUTH=SCRAM-SHA-256 AUTH=PLAIN");
    login(port, fp, FetchAuth::Any).expect("SCRAM-SHA-256");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        (seen.mechanism.as_str(), seen.gs2.as_str()),
        ("SCRAM-SHA-256", "y,,")
    );
    assert!(seen.binding_matched && seen.proof_ok, "{seen:?}");
}

#[test]
fn tls12_has_no_binding() {
    let (port, fp, seen) = serve(false, BOTH);
    login(port, fp, FetchAuth::Any).expect("SCRAM-SHA-256 without binding");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        (seen.mechanism.as_str(), seen.gs2.as_str()),
        ("SCRAM-SHA-256", "n,,")
    );

    let (port, fp, seen) = serve(false, BOTH);
    let e = login(port, fp, FetchAuth::Sasl(Mechanism::ScramSha256Plus)).expect_err("no TLS 1.3");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert!(seen.lock().expect("lock").mechanism.is_empty());
}

#[test]
fn external_with_a_client_certificate() {
    let client = rcgen::generate_simple_self_signed(vec!["bob".to_string()]).expect("cert");
    let dir = std::env::temp_dir().join(format!("postie-external-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key) = (dir.join("bob.crt"), dir.join("bob.key"));
    std::fs::write(&cert, client.cert.pem()).expect("cert file");
    std::fs::write(&key, client.signing_key.serialize_pem()).expect("key file");
    let caps = "AUTH=EXTERNAL AUTH=SCRAM-SHA-256 AUTH=PLAIN";
    let ca = || Some(client.cert.der().clone());

    // `any` with a certificate: EXTERNAL first, and the server saw the certificate.
    let (port, fp, seen) = serve_with(true, caps, ca());
    let files = Some((cert.clone(), key.clone()));
    login_with(port, fp, FetchAuth::Any, files.clone()).expect("EXTERNAL");
    let s = seen.lock().expect("lock").clone();
    assert!(s.client_cert && s.mechanism == "EXTERNAL", "{s:?}");

    // Explicit EXTERNAL without a certificate: the server refuses, an Auth error.
    let (port, fp, _) = serve_with(true, caps, ca());
    let e = login(port, fp, FetchAuth::Sasl(Mechanism::External)).expect_err("no certificate");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e:?}");

    // `any` without a certificate does not try EXTERNAL.
    let (port, fp, seen) = serve_with(true, caps, ca());
    login(port, fp, FetchAuth::Any).expect("SCRAM");
    assert_eq!(seen.lock().expect("lock").mechanism, "SCRAM-SHA-256");
    let _ = std::fs::remove_dir_all(&dir);
}
