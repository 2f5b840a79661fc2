//! The only code that touches sockets and TLS: connecting with timeouts (IPv6 and IPv4,
//! happy-eyeballs style), implicit TLS and the in-place STARTTLS upgrade over rustls, and the
//! trust choices (system roots, a trust file, a SHA-256 fingerprint, or the `danger` switch).
//!
//! API:
//! * [`connect`]`(&Endpoint, &ConnectOptions) -> Result<Connection, NetError>`: plain TCP,
//!   TCP_NODELAY, read/write timeouts = `io_timeout`; or, by `ConnectOptions::route`, through a
//!   SOCKS5 proxy (which resolves the name: no local lookup of the target) or to a Unix socket.
//!   With [`Route::Command`] the stream is a command's stdin/stdout (a socket pair).
//! * [`connect_tls`]`(&Endpoint, &ConnectOptions, &TlsOptions)`: implicit TLS, handshake done.
//! * [`Connection::upgrade_tls`]`(self, &TlsOptions, host)`: STARTTLS; the caller's protocol
//!   buffer must be dropped before this is called (see `session`).
//! * [`Connection`] implements `Read + Write`; a timed-out read is an `io::Error` of kind
//!   `TimedOut`/`WouldBlock`, which [`NetError::from_io`] maps to [`NetError::Timeout`].

mod connection;
mod dial;
mod dns;
mod error;
mod socket;
mod tls;

pub use connection::{Connection, Readiness, connect, connect_tls};
pub use dns::{nameservers, srv_lookup};
pub use error::NetError;
pub use tls::{crypto_provider, format_fingerprint, parse_fingerprint};

use std::path::PathBuf;
use std::time::Duration;

/// Where to connect: a host name or IP literal, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// No TLS at all (only for loopback relays or when the user explicitly asks).
    Off,
    /// Plain connect, then STARTTLS/STLS, mandatory: no fallback to plaintext.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS 465, POP3S 995, IMAPS 993).
    Implicit,
}

/// An MD5 (16 bytes) or SHA-1 (20 bytes) certificate fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegacyPin {
    Md5([u8; 16]),
    Sha1([u8; 20]),
}

impl LegacyPin {
    /// fetchmail's forms: 16 or 20 hex pairs, with colons or without, either case.
    pub fn parse(text: &str) -> Option<Self> {
        let hex: String = text.trim().chars().filter(|c| *c != ':').collect();
        if !hex.is_ascii() || !hex.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        Some(match bytes.len() {
            16 => LegacyPin::Md5(bytes.try_into().ok()?),
            20 => LegacyPin::Sha1(bytes.try_into().ok()?),
            _ => return None,
        })
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            LegacyPin::Md5(_) => "MD5",
            LegacyPin::Sha1(_) => "SHA-1",
        }
    }

    /// Warns, once per server and pin in this process, that the certificate of `peer` matched
    /// this weak pin, giving the SHA-256 to pin instead. A daemon connects to the same server
    /// every poll: the advice once is enough, a copy per connection buries the log. Returns
    /// whether it warned.
    pub(crate) fn warn_weak_match(&self, peer: &str, sha256: &[u8; 32]) -> bool {
        use std::collections::HashSet;
        use std::sync::{Mutex, PoisonError};
        static WARNED: Mutex<Option<HashSet<(String, LegacyPin)>>> = Mutex::new(None);
        let first = WARNED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(HashSet::new)
            .insert((peer.to_owned(), *self));
        if first {
            // Both digests have practical collisions: the match is weak evidence.
            log::warn!(
                "{peer}: the certificate matches the {} fingerprint, a digest that can be \
                 forged; pin its SHA-256 instead: \"{}\"",
                self.algorithm(),
                tls::format_fingerprint(sha256)
            );
        }
        first
    }

    /// Whether `der` (a certificate) has this fingerprint.
    pub fn matches(&self, der: &[u8]) -> bool {
        match self {
            LegacyPin::Md5(pin) => {
                use md5::{Digest as _, Md5};
                Md5::digest(der).as_slice() == pin
            }
            LegacyPin::Sha1(pin) => {
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref() == pin
            }
        }
    }
}

/// What server certificates are trusted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Trust {
    /// The system's root store (rustls-native-certs).
    #[default]
    System,
    /// Only the CA certificates in this PEM file.
    File(PathBuf),
    /// The CA certificates of every file in this directory (a hashed directory as OpenSSL's
    /// c_rehash makes it, fetchmail's `sslcertpath`).
    Dir(PathBuf),
    /// Exactly the leaf certificate with this SHA-256 fingerprint (name and expiry not checked,
    /// as msmtp's `tls_fingerprint`).
    Fingerprint([u8; 32]),
    /// Exactly the leaf certificate with this MD5 or SHA-1 fingerprint (fetchmail's
    /// `sslfingerprint` forms). Checked like [`Trust::Fingerprint`]; a match logs a warning
    /// with the SHA-256 to pin instead, since both digests can be forged.
    LegacyFingerprint(LegacyPin),
    /// Accept any certificate. Only from a switch whose name says `danger`.
    DangerAcceptAny,
}

/// TLS parameters for one connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    pub trust: Trust,
    /// Name to verify and send as SNI instead of the endpoint host (msmtp `tls_host_override`).
    pub server_name: Option<String>,
    /// Client certificate and key (PEM), for servers that want one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Socket parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Bound on connecting (all addresses together).
    pub connect_timeout: Duration,
    /// Bound on each read and write once connected.
    pub io_timeout: Duration,
    /// Local address to bind (msmtp `source_ip`).
    pub source_ip: Option<std::net::IpAddr>,
    /// How the server is reached.
    pub route: Route,
}

/// How a connection reaches the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Route {
    /// Resolve the host here and connect to it.
    #[default]
    Direct,
    /// Connect to this SOCKS5 proxy and have it connect to the host, by name, so that the name
    /// is resolved by the proxy and never here (msmtp `proxy_host`, `proxy_port`). A proxy that
    /// cannot be reached is an error, never a reason to connect directly.
    Socks5(Socks5Proxy),
    /// Connect to this Unix-domain socket instead (msmtp `socket`); the endpoint's host only
    /// names the server for TLS and messages.
    UnixSocket(PathBuf),
    /// Run this program (argv, no shell of ours) with its stdin and stdout joined to one end of
    /// a socket pair, and talk to the server through it (fetchmail's `plugin`/`plugout`, e.g.
    /// `ssh host imapd` or `socat - TCP:host:port`). The far end is the command, not the
    /// server's address: the cleartext-password rule never sees a loopback peer here.
    Command(Vec<String>),
}

/// A SOCKS5 proxy and, when it wants them, the RFC 1929 credentials (the password is redacted
/// from `Debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socks5Proxy {
    pub endpoint: Endpoint,
    pub credentials: Option<crate::proto::socks5::Credentials>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(120),
            source_ip: None,
            route: Route::Direct,
        }
    }
}
