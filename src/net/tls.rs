//! TLS client setup over rustls with the ring provider: the trust choices (system roots, a CA
//! file, a pinned SHA-256 leaf fingerprint, accept-anything), the client certificate, the
//! server name, the blocking handshake, and turning rustls failures into messages that say what
//! to change.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

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
    crate::config::open_regular_file(path)
        .and_then(|file| crate::config::read_bytes_at_most(file, MAX_PEM_BYTES))
        .map_err(|e| e.to_string())
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
/// certificate's key. It names no server: one configuration (and so one verifier) serves every
/// connection with the same trust ([`client_config`]).
#[derive(Debug)]
struct PinnedVerifier {
    pin: Pin,
    provider: Arc<CryptoProvider>,
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
            // The warning that the match is weak evidence comes after the handshake, where the
            // server's name is known (`handshake`).
            Pin::Legacy(pin) => pin.matches(end_entity.as_ref()),
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

/// What a client configuration is built from: the trust and the client certificate. The
/// server name is not part of it (each connection passes its own), so every account with the
/// same trust and certificate shares one configuration, and two with any difference never do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConfigKey {
    trust: Trust,
    client_cert: Option<(PathBuf, PathBuf)>,
}

/// The identity of a file as last read: device, inode, size and modification time (ns).
type FileStamp = (u64, u64, u64, i128);

/// A configuration built earlier, with the stamps of the files it was built from.
struct Cached {
    files: Vec<(PathBuf, Option<FileStamp>)>,
    config: Arc<ClientConfig>,
}

/// Most distinct configurations kept: one per distinct trust and client certificate among the
/// accounts, which a configuration file fixes; the bound only keeps a process that is handed
/// ever new trust files from growing without end (the oldest entries then go).
const MAX_CACHED_CONFIGS: usize = 1024;

/// The configurations built so far, shared by every connection of the process.
fn config_cache() -> &'static Mutex<HashMap<ConfigKey, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<ConfigKey, Cached>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    // Follows links: a trust file or a c_rehash link replaced by a new target is a change.
    let m = std::fs::metadata(path).ok()?;
    let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    Some((m.dev(), m.ino(), m.size(), mtime))
}

/// The files a configuration for `key` is read from, each with its current stamp (None: it
/// cannot be looked at now). A trust directory contributes itself and every entry in it.
fn stamps(key: &ConfigKey) -> Vec<(PathBuf, Option<FileStamp>)> {
    let mut files: Vec<PathBuf> = Vec::new();
    match &key.trust {
        Trust::File(path) => files.push(path.clone()),
        Trust::Dir(path) => {
            files.push(path.clone());
            if let Ok(entries) = std::fs::read_dir(path) {
                let mut inside: Vec<PathBuf> = entries
                    .take(MAX_DIR_ENTRIES)
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                inside.sort();
                files.extend(inside);
            }
        }
        Trust::System
        | Trust::Fingerprint(_)
        | Trust::LegacyFingerprint(_)
        | Trust::DangerAcceptAny => {}
    }
    if let Some((cert, key)) = &key.client_cert {
        files.push(cert.clone());
        files.push(key.clone());
    }
    files
        .into_iter()
        .map(|p| {
            let stamp = file_stamp(&p);
            (p, stamp)
        })
        .collect()
}

/// The rustls client configuration for these options, shared: every connection with the same
/// trust and client certificate gets the same `Arc`, and with it one parsed trust store (no
/// session resumption: see [`build_config`]). A connection whose trust file, trust directory
/// (an entry added, removed or replaced) or client certificate or key changed on disk since the
/// configuration was built (device, inode, size or modification time differ) gets a newly built
/// one; the system roots are read once per process. Failures are not kept: the next connection
/// tries again.
pub(crate) fn client_config(tls: &TlsOptions, peer: &str) -> Result<Arc<ClientConfig>, NetError> {
    let key = ConfigKey {
        trust: tls.trust.clone(),
        client_cert: tls.client_cert.clone(),
    };
    // Stamped before reading, so that a change while the files are read shows next time.
    let files = stamps(&key);
    let cache = config_cache();
    {
        let cached = cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = cached.get(&key).filter(|c| c.files == files) {
            return Ok(hit.config.clone());
        }
    }
    let config = build_config(tls, peer)?;
    let mut cached = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if cached.len() >= MAX_CACHED_CONFIGS && !cached.contains_key(&key) {
        cached.clear();
    }
    cached.insert(
        key,
        Cached {
            files,
            config: config.clone(),
        },
    );
    Ok(config)
}

/// Builds a rustls client configuration for these options (uncached: see [`client_config`]).
fn build_config(tls: &TlsOptions, peer: &str) -> Result<Arc<ClientConfig>, NetError> {
    let provider = crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls {
            host: peer.to_string(),
            reason: format!("cannot set up TLS: {e}"),
        })?;
    let pinned = |pin: Pin| {
        Arc::new(PinnedVerifier {
            pin,
            provider: provider.clone(),
        })
    };
    let builder = match &tls.trust {
        Trust::System => builder.with_root_certificates(system_roots()?),
        Trust::File(path) => builder.with_root_certificates(file_roots(path)?),
        Trust::Dir(path) => builder.with_root_certificates(dir_roots(path)?),
        Trust::Fingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(pinned(Pin::Sha256(*pin))),
        Trust::LegacyFingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(pinned(Pin::Legacy(*pin))),
        Trust::DangerAcceptAny => builder
            .dangerous()
            .with_custom_certificate_verifier(pinned(Pin::Any)),
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
    // No session resumption, although connections with the same trust now share this
    // configuration and a ticket from one could serve the next: an OpenSSL server that asks for
    // client certificates without a session id context (Dovecot with ssl_verify_client_cert,
    // as the test stack runs it) aborts every handshake that offers a ticket, and the account
    // could not connect again until the daemon restarted. Without resumption, rustls keeps no
    // ticket either, so nothing of a server's ever outlives its connection here.
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
    /// A legacy (MD5 or SHA-1) pin, whose match is warned about.
    legacy_pin: Option<super::LegacyPin>,
}

pub(crate) fn prepare(tls: &TlsOptions, host: &str, peer: &str) -> Result<Prepared, NetError> {
    if tls.trust == Trust::DangerAcceptAny {
        log::warn!("{peer}: accepting any server certificate; the connection is not authenticated");
    }
    let legacy_pin = match &tls.trust {
        Trust::LegacyFingerprint(pin) => Some(*pin),
        _ => None,
    };
    Ok(Prepared {
        config: client_config(tls, peer)?,
        name: server_name(tls, host, peer)?,
        legacy_pin,
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
    if let Some(pin) = prepared.legacy_pin {
        // Once per server and pin (a daemon connects every poll).
        let leaf = conn.peer_certificates().and_then(|certs| certs.first());
        if let Some(leaf) = leaf {
            pin.warn_weak_match(peer, &sha256(leaf.as_ref()));
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
    fn an_oversized_or_device_pem_file_is_refused_by_name() {
        // Read to its end, a huge file (or a symlink to /dev/zero) would exhaust memory.
        let dir = std::env::temp_dir().join(format!("postie-tls-pem-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.pem");
        std::fs::write(&big, vec![b'A'; MAX_PEM_BYTES as usize + 1]).unwrap();
        let shown = file_roots(&big).map(|_| ()).unwrap_err().to_string();
        assert!(
            shown.contains(&big.display().to_string())
                && shown.contains(&format!("larger than {MAX_PEM_BYTES} bytes")),
            "{shown}"
        );
        let zero = dir.join("zero.pem");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let shown = file_roots(&zero).map(|_| ()).unwrap_err().to_string();
        assert!(shown.contains("character device"), "{shown}");
        let _ = std::fs::remove_dir_all(&dir);
    }

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

    /// A self-signed server for "localhost" (its certificate is its own CA), with the rustls
    /// server configuration that presents it: one per test, so its session store is its own.
    struct TestServer {
        cert_pem: String,
        fingerprint: [u8; 32],
        config: Arc<rustls::ServerConfig>,
    }

    impl TestServer {
        fn new() -> TestServer {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
            let key = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
            let config = rustls::ServerConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![ck.cert.der().clone()], key)
                .unwrap();
            TestServer {
                cert_pem: ck.cert.pem(),
                fingerprint: sha256(ck.cert.der().as_ref()),
                config: Arc::new(config),
            }
        }

        /// One handshake in memory with a client of `config`, then the server's session
        /// tickets delivered; the client's handshake kind, or the client's error.
        fn handshake(
            &self,
            config: Arc<ClientConfig>,
        ) -> Result<rustls::HandshakeKind, rustls::Error> {
            let name = ServerName::try_from("localhost").unwrap();
            let mut client = ClientConnection::new(config, name).unwrap();
            let mut server = rustls::ServerConnection::new(self.config.clone()).unwrap();
            for _ in 0..20 {
                let mut wire = Vec::new();
                while client.wants_write() {
                    client.write_tls(&mut wire).unwrap();
                }
                if !wire.is_empty() {
                    server.read_tls(&mut wire.as_slice()).unwrap();
                    if let Err(e) = server.process_new_packets() {
                        // Let the client read the alert that says why.
                        let mut alert = Vec::new();
                        let _ = server.write_tls(&mut alert);
                        let _ = client.read_tls(&mut alert.as_slice());
                        client.process_new_packets()?;
                        panic!("the server failed alone: {e}");
                    }
                }
                let mut wire = Vec::new();
                while server.wants_write() {
                    server.write_tls(&mut wire).unwrap();
                }
                if !wire.is_empty() {
                    client.read_tls(&mut wire.as_slice()).unwrap();
                    client.process_new_packets()?;
                }
                if !client.is_handshaking() && !server.is_handshaking() && !server.wants_write() {
                    return Ok(client.handshake_kind().unwrap());
                }
            }
            panic!("the handshake did not finish");
        }
    }

    fn trust(trust: Trust) -> TlsOptions {
        TlsOptions {
            trust,
            ..TlsOptions::default()
        }
    }

    #[test]
    fn connections_with_the_same_trust_share_one_configuration_and_others_never_do() {
        let dir = std::env::temp_dir().join(format!("postie-net-tls-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = TestServer::new();
        let other = TestServer::new();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &server.cert_pem).unwrap();
        let copy = dir.join("copy.pem");
        std::fs::write(&copy, &server.cert_pem).unwrap();
        let client_cert = dir.join("client.pem");
        let client_key = dir.join("client.key");
        let ck = rcgen::generate_simple_self_signed(vec!["client".to_string()]).unwrap();
        std::fs::write(&client_cert, ck.cert.pem()).unwrap();
        std::fs::write(&client_key, ck.signing_key.serialize_pem()).unwrap();

        let a = client_config(&trust(Trust::File(ca.clone())), "p").unwrap();
        // Another peer, another server name: still the same trust, the same configuration.
        let named = TlsOptions {
            server_name: Some("mail.example".into()),
            ..trust(Trust::File(ca.clone()))
        };
        assert!(Arc::ptr_eq(&a, &client_config(&named, "q").unwrap()));
        let distinct = [
            trust(Trust::File(copy.clone())),
            trust(Trust::Dir(dir.clone())),
            trust(Trust::Fingerprint(server.fingerprint)),
            trust(Trust::Fingerprint(other.fingerprint)),
            trust(Trust::DangerAcceptAny),
            TlsOptions {
                client_cert: Some((client_cert.clone(), client_key.clone())),
                ..trust(Trust::File(ca.clone()))
            },
        ];
        let mut seen = vec![a.clone()];
        for tls in &distinct {
            let config = client_config(tls, "p").unwrap();
            assert!(
                seen.iter().all(|c| !Arc::ptr_eq(c, &config)),
                "{tls:?} shares a configuration"
            );
            assert!(
                Arc::ptr_eq(&config, &client_config(tls, "p").unwrap()),
                "{tls:?}"
            );
            seen.push(config);
        }

        // A trust file replaced on disk (a new file renamed over it, as packages and
        // editors do) is read again: the next connection trusts the new CA.
        assert!(server.handshake(a.clone()).is_ok());
        let new = dir.join("new.pem");
        std::fs::write(&new, &other.cert_pem).unwrap();
        std::fs::rename(&new, &ca).unwrap();
        let b = client_config(&trust(Trust::File(ca.clone())), "p").unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(other.handshake(b.clone()).is_ok());
        assert!(server.handshake(b).is_err());
        // A file that became unreadable fails the connection instead of using what was read.
        std::fs::remove_file(&ca).unwrap();
        assert!(client_config(&trust(Trust::File(ca.clone())), "p").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_connection_resumes_a_session_whatever_the_trust() {
        let dir =
            std::env::temp_dir().join(format!("postie-net-tls-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = TestServer::new();
        let stranger = TestServer::new();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &server.cert_pem).unwrap();
        let wrong_ca = dir.join("wrong-ca.pem");
        std::fs::write(&wrong_ca, &stranger.cert_pem).unwrap();
        let config = |t: Trust| client_config(&trust(t), "p").unwrap();
        let full = Ok(rustls::HandshakeKind::Full);

        // The server sends session tickets; a shared configuration offers none of them back.
        let file = config(Trust::File(ca.clone()));
        assert_eq!(server.handshake(file.clone()), full);
        assert_eq!(server.handshake(file.clone()), full);
        // Nor does another trust get past its own check on the strength of those sessions.
        let mut wrong_pin = server.fingerprint;
        wrong_pin[0] ^= 0xff;
        for refused in [Trust::Fingerprint(wrong_pin), Trust::File(wrong_ca.clone())] {
            let err = server.handshake(config(refused.clone())).unwrap_err();
            assert!(
                matches!(err, rustls::Error::InvalidCertificate(_)),
                "{refused:?}: {err:?}"
            );
        }
        let pin = config(Trust::Fingerprint(server.fingerprint));
        assert_eq!(server.handshake(pin.clone()), full);
        assert_eq!(server.handshake(pin), full);
        assert_eq!(server.handshake(file), full);
        std::fs::remove_dir_all(&dir).unwrap();
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
