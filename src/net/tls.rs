//! TLS client setup over rustls with the ring provider: the trust choices (system roots, a CA
//! file, a pinned SHA-256 leaf fingerprint, accept-anything), the client certificate, the
//! server name, the blocking handshake, and turning rustls failures into messages that say what
//! to change.

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
};

use super::socket::Socket;
use super::{NetError, TlsOptions, Trust};
use crate::error::Cause;

/// The established TLS stream.
pub(crate) type TlsStream = StreamOwned<ClientConnection, Socket>;

/// SHA-256 of a DER certificate.
pub(crate) fn sha256(der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Formats a fingerprint as uppercase hex pairs joined by colons ("AB:CD:...").
pub fn format_fingerprint(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// Parses a SHA-256 fingerprint written as 64 hex digits, plain or with colons between pairs,
/// in either case. Returns `None` for anything else.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let hex: Vec<u8> = if text.contains(':') {
        let pairs: Vec<&str> = text.split(':').collect();
        if pairs.len() != 32 || pairs.iter().any(|p| p.len() != 2) {
            return None;
        }
        pairs.concat().into_bytes()
    } else {
        text.as_bytes().to_vec()
    };
    if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// The ring crypto provider every TLS configuration uses (also the tests' TLS servers), built
/// once per process.
///
/// rustls 0.23.48 deprecated `ring::default_provider` with the note "no support for
/// post-quantum algorithms": ring has no ML-KEM key exchange, which rustls offers only with its
/// aws-lc-rs provider. Postie keeps ring on purpose (no C/assembly toolchain beyond ring's, no
/// second crypto library; the dependency table records why), so the deprecation names a
/// property we accept, not a replacement to move to; allowing it here, in the one place the
/// provider is built, keeps builds against the newest compatible rustls free of warnings.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            #[allow(deprecated)]
            let ring = rustls::crypto::ring::default_provider();
            Arc::new(ring)
        })
        .clone()
}

/// The system roots, loaded once per process.
fn system_roots() -> Result<Arc<RootCertStore>, NetError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            for e in &loaded.errors {
                log::debug!("system CA store: {e}");
            }
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
            if added == 0 {
                let reason = match loaded.errors.first() {
                    Some(e) => e.to_string(),
                    None => "the store is empty".to_string(),
                };
                return Err(reason);
            }
            Ok(Arc::new(store))
        })
        .clone()
        .map_err(|reason| NetError::SystemRoots { reason })
}

/// Largest PEM file read (a CA bundle, a client certificate or key): the system bundle is a
/// few hundred KiB, and the bound keeps a path naming `/dev/zero` or a huge file from
/// exhausting memory.
const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

/// The bytes of a PEM file, at most [`MAX_PEM_BYTES`]; the error is the text to show.
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = crate::config::open_regular_file(path).map_err(|e| e.to_string())?;
    let mut pem = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| e.to_string())?;
    if pem.len() as u64 > MAX_PEM_BYTES {
        return Err(format!("it is larger than {MAX_PEM_BYTES} bytes"));
    }
    Ok(pem)
}

/// The CA certificates in a PEM file.
fn file_roots(path: &Path) -> Result<Arc<RootCertStore>, NetError> {
    let fail = |reason: String| NetError::TrustFile {
        path: path.to_path_buf(),
        reason,
    };
    // Read first so that a missing or unreadable file reports the OS error plainly.
    let pem = read_pem(path).map_err(fail)?;
    let mut store = RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(format!("not a valid PEM file ({e})")))?;
        found += 1;
        store
            .add(cert)
            .map_err(|e| fail(format!("certificate {found} is unusable as a CA ({e})")))?;
    }
    if found == 0 {
        return Err(fail("it holds no PEM certificate".to_string()));
    }
    Ok(Arc::new(store))
}

/// Most directory entries looked at for [`dir_roots`]: a system directory holds a few hundred
/// certificates and as many hash links.
const MAX_DIR_ENTRIES: usize = 10_000;

/// The CA certificates of every file in a directory (fetchmail's `sslcertpath`, a directory
/// that OpenSSL's c_rehash filled with `HASH.N` links beside the certificate files). OpenSSL
/// finds a CA there by its subject hash; loading every certificate trusts the same set.
/// Files that hold no PEM certificate (a README, a CRL) are skipped; a directory with no
/// certificate at all is an error, never a silent fall back to the system roots.
fn dir_roots(path: &Path) -> Result<Arc<RootCertStore>, NetError> {
    let fail = |reason: String| NetError::TrustFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(path)
        .map_err(|e| fail(e.to_string()))?
        .take(MAX_DIR_ENTRIES)
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut store = RootCertStore::empty();
    let mut seen = std::collections::HashSet::new();
    for file in entries {
        // Follows the hash links; a dangling link or a subdirectory is skipped.
        if !file.is_file() {
            continue;
        }
        let Ok(pem) = read_pem(&file) else {
            log::debug!("{}: skipped (unreadable or too large)", file.display());
            continue;
        };
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            // c_rehash links each certificate under its hash: count it once.
            if !seen.insert(sha256(cert.as_ref())) {
                continue;
            }
            if let Err(e) = store.add(cert) {
                log::debug!("{}: a certificate unusable as a CA ({e})", file.display());
            }
        }
    }
    if store.is_empty() {
        return Err(fail(
            "the directory holds no usable PEM CA certificate".into(),
        ));
    }
    Ok(Arc::new(store))
}

/// Accepts exactly the leaf with the pinned SHA-256 (or any leaf when `pin` is `None`, the
/// `danger` switch). Names and validity dates are not checked, as with msmtp's
/// `tls_fingerprint`, but the handshake signatures still are: they prove the server holds the
/// certificate's key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Pin,
    provider: Arc<CryptoProvider>,
    /// The server as messages name it.
    peer: String,
}

/// What a [`PinnedVerifier`] accepts.
#[derive(Debug)]
enum Pin {
    /// Anything (the `danger` switch).
    Any,
    Sha256([u8; 32]),
    /// fetchmail's MD5 and SHA-1 fingerprints.
    Legacy(super::LegacyPin),
}

/// The error a [`PinnedVerifier`] reports, carried through rustls to [`handshake_error`].
#[derive(Debug)]
struct FingerprintMismatch {
    presented: [u8; 32],
}

impl std::fmt::Display for FingerprintMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fingerprint mismatch: server presented SHA256 {}",
            format_fingerprint(&self.presented)
        )
    }
}

impl std::error::Error for FingerprintMismatch {}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = sha256(end_entity.as_ref());
        let matched = match &self.pin {
            Pin::Any => true,
            Pin::Sha256(pin) => *pin == presented,
            Pin::Legacy(pin) => {
                let matched = pin.matches(end_entity.as_ref());
                if matched {
                    pin.warn_weak_match(&self.peer, &presented);
                }
                matched
            }
        };
        if matched {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(FingerprintMismatch { presented })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Builds the rustls client configuration for these options.
pub(crate) fn client_config(tls: &TlsOptions, peer: &str) -> Result<Arc<ClientConfig>, NetError> {
    let provider = crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls {
            host: peer.to_string(),
            reason: format!("cannot set up TLS: {e}"),
        })?;
    let builder = match &tls.trust {
        Trust::System => builder.with_root_certificates(system_roots()?),
        Trust::File(path) => builder.with_root_certificates(file_roots(path)?),
        Trust::Dir(path) => builder.with_root_certificates(dir_roots(path)?),
        Trust::Fingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: Pin::Sha256(*pin),
                provider,
                peer: peer.to_string(),
            })),
        Trust::LegacyFingerprint(pin) => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    pin: Pin::Legacy(*pin),
                    provider,
                    peer: peer.to_string(),
                }))
        }
        Trust::DangerAcceptAny => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: Pin::Any,
                provider,
                peer: peer.to_string(),
            })),
    };
    let mut config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let fail = |path: &Path, reason: String| NetError::ClientCert {
                path: path.to_path_buf(),
                reason,
            };
            let pem = read_pem(cert_path).map_err(|e| fail(cert_path, e))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(cert_path, format!("not a valid PEM file ({e})")))?;
            if certs.is_empty() {
                return Err(fail(cert_path, "it holds no PEM certificate".into()));
            }
            let pem = read_pem(key_path).map_err(|e| fail(key_path, e))?;
            let key = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| fail(key_path, format!("no usable private key ({e})")))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| fail(key_path, format!("key does not fit the certificate ({e})")))?
        }
    };
    // Each connection builds its own config, so a session ticket stored in it could never be
    // used: without this the tickets the server sends (Dovecot sends two under TLS 1.3, each
    // kept with the server's certificate chain) stay in memory as long as the connection, which
    // for an IDLE account is for good.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The name to send as SNI and to verify: the override, else the host. IP literals become
/// `ServerName::IpAddress`.
pub(crate) fn server_name(
    tls: &TlsOptions,
    host: &str,
    peer: &str,
) -> Result<ServerName<'static>, NetError> {
    let name = tls.server_name.as_deref().unwrap_or(host);
    let name = super::dial::bare_host(name);
    ServerName::try_from(name.to_string()).map_err(|_| NetError::Tls {
        host: peer.to_string(),
        reason: format!("{name:?} is not a valid server name"),
    })
}

/// Everything a handshake needs that does not depend on the socket, prepared before connecting
/// so that a bad trust file or name fails without touching the network.
pub(crate) struct Prepared {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

pub(crate) fn prepare(tls: &TlsOptions, host: &str, peer: &str) -> Result<Prepared, NetError> {
    if tls.trust == Trust::DangerAcceptAny {
        log::warn!("{peer}: accepting any server certificate; the connection is not authenticated");
    }
    Ok(Prepared {
        config: client_config(tls, peer)?,
        name: server_name(tls, host, peer)?,
    })
}

/// Runs the client handshake to completion, so certificate failures surface here.
/// `after_starttls` only changes the wording when the server answers in plaintext.
pub(crate) fn handshake(
    mut sock: Socket,
    prepared: Prepared,
    peer: &str,
    after_starttls: bool,
) -> Result<TlsStream, NetError> {
    let mut conn =
        ClientConnection::new(prepared.config, prepared.name).map_err(|e| NetError::Tls {
            host: peer.to_string(),
            reason: e.to_string(),
        })?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err(handshake_error(e, peer, after_starttls));
        }
    }
    Ok(StreamOwned::new(conn, sock))
}

/// Classifies a failed handshake: certificate problems (with the fix), plaintext answers (with
/// the STARTTLS hint), timeouts, and the rest.
fn handshake_error(err: io::Error, peer: &str, after_starttls: bool) -> NetError {
    let tls = |reason: String| NetError::Tls {
        host: peer.to_string(),
        reason,
    };
    let cert = |err: &CertificateError| NetError::Certificate {
        host: peer.to_string(),
        problem: certificate_cause(err),
        reason: certificate_reason(err),
    };
    let rustls_err = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let Some(rustls_err) = rustls_err else {
        return match err.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => NetError::HandshakeTimeout {
                host: peer.to_string(),
            },
            io::ErrorKind::UnexpectedEof => {
                tls("the server closed the connection during the handshake".to_string())
            }
            _ => tls(err.to_string()),
        };
    };
    match rustls_err {
        rustls::Error::InvalidCertificate(c) => cert(c),
        rustls::Error::InvalidMessage(_) if after_starttls => {
            tls("the server sent something that is not TLS after accepting STARTTLS".to_string())
        }
        rustls::Error::InvalidMessage(_) => NetError::PlaintextAnswer {
            host: peer.to_string(),
        },
        rustls::Error::AlertReceived(alert) => tls(format!(
            "the server aborted the handshake (alert {alert:?})"
        )),
        other => tls(other.to_string()),
    }
}

/// Which certificate problem this is, for the hint that names the fix.
fn certificate_cause(err: &CertificateError) -> Cause {
    match err {
        CertificateError::Other(other)
            if other.0.downcast_ref::<FingerprintMismatch>().is_some() =>
        {
            Cause::CertificatePinMismatch
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Cause::CertificateWrongName
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => Cause::CertificateOutOfDate,
        _ => Cause::CertificateUntrusted,
    }
}

// The fix for these is a configuration key whose name depends on the file format (msmtprc and TOML
// say tls_trust_file, fetchmailrc sslcertfile): each binary's hint table names it, not this layer.
fn certificate_reason(err: &CertificateError) -> String {
    match err {
        CertificateError::UnknownIssuer => "unknown issuer (no trusted CA signed it)".to_string(),
        CertificateError::Other(other) => match other.0.downcast_ref::<FingerprintMismatch>() {
            Some(mismatch) => mismatch.to_string(),
            None => other.to_string(),
        },
        CertificateError::NotValidForName => "it is not valid for this name".to_string(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "it is not valid for {:?} (it names {})",
            expected.to_str(),
            presented.join(", ")
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet (check the system clock)".to_string()
        }
        CertificateError::BadSignature => "its signature is invalid".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trip() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 7 + 0xA0) as u8);
        let text = format_fingerprint(&bytes);
        assert_eq!(text.len(), 32 * 3 - 1);
        assert!(text.starts_with("A0:A7:AE:"));
        assert_eq!(parse_fingerprint(&text), Some(bytes));
        assert_eq!(parse_fingerprint(&text.to_lowercase()), Some(bytes));
        assert_eq!(parse_fingerprint(&text.replace(':', "")), Some(bytes));
        assert_eq!(parse_fingerprint(&format!("  {text}\n")), Some(bytes));
    }

    #[test]
    fn fingerprint_parse_rejects_malformed() {
        let good = "00".repeat(32);
        for bad in [
            "",
            "00",
            &good[1..],
            &format!("{good}00"),
            &"0g".repeat(32),
            &"0:00".repeat(16),
            "00:".repeat(32).as_str(),
            &"é".repeat(32),
            &"+1".repeat(32),
        ] {
            assert_eq!(parse_fingerprint(bad), None, "{bad:?}");
        }
        assert_eq!(parse_fingerprint(&good), Some([0; 32]));
    }

    #[test]
    fn server_name_prefers_override_and_handles_ip_literals() {
        let tls = TlsOptions::default();
        assert!(matches!(
            server_name(&tls, "::1", "p").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name(&tls, "[::1]", "p").unwrap(),
            ServerName::IpAddress(_)
        ));
        let tls = TlsOptions {
            server_name: Some("mail.example".into()),
            ..TlsOptions::default()
        };
        assert_eq!(
            server_name(&tls, "127.0.0.1", "p").unwrap(),
            ServerName::try_from("mail.example").unwrap()
        );
    }

    #[test]
    fn trust_file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("postie-net-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        for path in [missing, empty, "/dev/zero".into()] {
            let tls = TlsOptions {
                trust: Trust::File(path.clone()),
                ..TlsOptions::default()
            };
            let err = client_config(&tls, "p").unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert_eq!(err.kind(), crate::ErrorKind::FileUnreadable);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_certificate_directory_without_certificates_is_an_error() {
        let dir = std::env::temp_dir().join(format!("postie-net-tls-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("README"), "no certificates here\n").unwrap();
        for path in [dir.clone(), dir.join("missing")] {
            let tls = TlsOptions {
                trust: Trust::Dir(path.clone()),
                ..TlsOptions::default()
            };
            let err = client_config(&tls, "p").unwrap_err();
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn legacy_fingerprints_parse_and_match() {
        use crate::net::LegacyPin;
        let der = b"not really a certificate";
        let md5 = "5E:AA:C5:6E:A6:83:80:AB:9A:6C:31:AA:13:BC:D7:FA";
        let pin = LegacyPin::parse(md5).unwrap();
        assert_eq!(pin.algorithm(), "MD5");
        assert!(pin.matches(der));
        assert!(
            LegacyPin::parse(&md5.replace(':', "").to_lowercase())
                .unwrap()
                .matches(der)
        );
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        let pin = LegacyPin::parse(&format_fingerprint(sha1.as_ref())).unwrap();
        assert_eq!(pin.algorithm(), "SHA-1");
        assert!(pin.matches(der) && !pin.matches(b"another"));
        for bad in [
            "",
            "AB",
            "AB:CD:EF",
            "ZZ:ZZ:ZZ:ZZ:ZZ:ZZ:ZZ:ZZ:ZZ:ZZ:ZZ:ZZ:ZZ:ZZ:ZZ:ZZ",
            "é",
        ] {
            assert_eq!(LegacyPin::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn certificate_reasons_say_how_to_fix() {
        let r = certificate_reason(&CertificateError::UnknownIssuer);
        assert_eq!(r, "unknown issuer (no trusted CA signed it)");
        let r = certificate_reason(&CertificateError::Other(rustls::OtherError(Arc::new(
            FingerprintMismatch {
                presented: [0xAB; 32],
            },
        ))));
        assert!(
            r.starts_with("fingerprint mismatch: server presented SHA256 AB:AB:"),
            "{r}"
        );
    }
}
