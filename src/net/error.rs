//! The net layer's error type: what failed while resolving, connecting, handshaking or moving
//! bytes, worded so the user knows what to change, and its mapping onto the crate [`ErrorKind`].

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Cause, Error, ErrorKind};

/// A failure in the net layer. Display is lowercase, names the object and never repeats the
/// source (see [`crate::Error::chain`]).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The name does not resolve (NXDOMAIN, no address): permanent.
    #[error("host {host} not found")]
    HostNotFound { host: String },

    /// The resolver failed temporarily (EAI_AGAIN) or did not answer in time.
    #[error("temporary failure looking up host {host}; try again later")]
    ResolveTemporary { host: String },

    /// Every address refused, was unreachable, or failed otherwise. `target` is `host:port`,
    /// `tried` lists the addresses when there was more than one.
    #[error("cannot connect to {target}{tried}")]
    Connect {
        target: String,
        tried: String,
        #[source]
        source: io::Error,
    },

    /// No address accepted the connection within the connect timeout.
    #[error("cannot connect to {target}: no answer within {}s", timeout.as_secs_f64())]
    ConnectTimeout { target: String, timeout: Duration },

    /// The SOCKS5 proxy could not give us a tunnel to the target. `proxy` and `target` are
    /// `host:port`.
    #[error("SOCKS5 proxy {proxy} (for {target}): {problem}")]
    Proxy {
        proxy: String,
        target: String,
        problem: crate::proto::socks5::Socks5Error,
    },

    /// A read or write on an established connection timed out.
    #[error("network timeout: the server did not answer in time")]
    Timeout,

    /// The server stopped answering during the TLS handshake. `host` is `host:port`.
    #[error("TLS handshake with {host} timed out: the server did not answer in time")]
    HandshakeTimeout { host: String },

    /// A read or write on an established connection failed.
    #[error("network i/o failed")]
    Io(#[source] io::Error),

    /// The TLS handshake failed for a reason other than the certificate. `host` is `host:port`.
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls { host: String, reason: String },

    /// Implicit TLS was attempted and the server answered with something that is not TLS.
    #[error(
        "TLS handshake with {host} failed: the server answered with something that is not TLS \
         (is this port expecting STARTTLS rather than implicit TLS?)"
    )]
    PlaintextAnswer { host: String },

    /// The server certificate was not accepted. `host` is `host:port`; `problem` is one of the
    /// certificate [`Cause`]s.
    #[error("certificate for {host} is not trusted: {reason}")]
    Certificate {
        host: String,
        problem: Cause,
        reason: String,
    },

    /// A trust file (CA certificates) cannot be used.
    #[error("cannot use trust file {}: {reason}", path.display())]
    TrustFile { path: PathBuf, reason: String },

    /// The client certificate or key file cannot be used.
    #[error("cannot use client certificate file {}: {reason}", path.display())]
    ClientCert { path: PathBuf, reason: String },

    /// No CA certificates could be loaded from the system store.
    #[error("no system CA certificates could be loaded ({reason})")]
    SystemRoots { reason: String },
}

impl NetError {
    /// Maps an error from a read or write on an established connection: timeouts (which the
    /// socket reports as `TimedOut` or `WouldBlock`) become [`NetError::Timeout`].
    pub fn from_io(err: io::Error) -> NetError {
        match err.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => NetError::Timeout,
            _ => NetError::Io(err),
        }
    }

    /// The crate error kind this failure belongs to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetError::HostNotFound { .. } => ErrorKind::HostUnknown,
            NetError::ResolveTemporary { .. } => ErrorKind::HostLookupTemporary,
            NetError::Connect { .. } | NetError::ConnectTimeout { .. } => ErrorKind::Connect,
            NetError::Timeout | NetError::HandshakeTimeout { .. } => ErrorKind::Timeout,
            NetError::Io(_) => ErrorKind::NetworkIo,
            NetError::Tls { .. } | NetError::PlaintextAnswer { .. } => ErrorKind::Tls,
            NetError::Certificate { .. } | NetError::SystemRoots { .. } => ErrorKind::Certificate,
            NetError::TrustFile { .. } | NetError::ClientCert { .. } => ErrorKind::FileUnreadable,
            NetError::Proxy { problem, .. } => {
                use crate::proto::socks5::Socks5Error as S;
                match problem {
                    // A network condition the proxy reports: try again later.
                    S::ConnectRefused(_) if problem.is_transient() => ErrorKind::Connect,
                    S::BadTarget(_) | S::BadCredentials(_) => ErrorKind::Config,
                    // Everything else the proxy says is a proxy error (msmtp: EX_UNAVAILABLE),
                    // not a problem with the mail account's password.
                    S::ConnectRefused(_)
                    | S::NoAcceptableMethod { .. }
                    | S::AuthRejected
                    | S::Protocol(_) => ErrorKind::Unsupported,
                }
            }
        }
    }

    /// What a hint needs to know beyond the kind.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            NetError::Certificate { problem, .. } => Some(*problem),
            NetError::SystemRoots { .. } => Some(Cause::NoSystemRoots),
            NetError::PlaintextAnswer { .. } => Some(Cause::PlaintextAnswer),
            _ => None,
        }
    }
}

impl From<io::Error> for NetError {
    fn from(err: io::Error) -> Self {
        NetError::from_io(err)
    }
}

impl From<NetError> for Error {
    fn from(err: NetError) -> Self {
        let kind = err.kind();
        let cause = err.cause();
        let context = err.to_string();
        let e = match err {
            NetError::Connect { source, .. } | NetError::Io(source) => {
                Error::with_source(kind, context, source)
            }
            _ => Error::new(kind, context),
        };
        match cause {
            Some(c) => e.with_cause(c),
            None => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_from_reads_map_to_timeout() {
        for kind in [io::ErrorKind::TimedOut, io::ErrorKind::WouldBlock] {
            let e = NetError::from_io(io::Error::from(kind));
            assert!(matches!(e, NetError::Timeout), "{kind:?}");
            assert_eq!(Error::from(e).kind(), ErrorKind::Timeout);
        }
        let e = NetError::from_io(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(e.kind(), ErrorKind::NetworkIo);
    }

    #[test]
    fn crate_error_chain_names_object_then_source() {
        let e = NetError::Connect {
            target: "smtp.example.org:465".into(),
            tried: String::new(),
            source: io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused"),
        };
        let e = Error::from(e);
        assert_eq!(e.kind(), ErrorKind::Connect);
        assert_eq!(
            e.chain(),
            "cannot connect to smtp.example.org:465: connection refused"
        );
    }

    #[test]
    fn kinds() {
        let cases = [
            (
                NetError::HostNotFound { host: "x".into() },
                ErrorKind::HostUnknown,
            ),
            (
                NetError::ResolveTemporary { host: "x".into() },
                ErrorKind::HostLookupTemporary,
            ),
            (
                NetError::ConnectTimeout {
                    target: "x:1".into(),
                    timeout: Duration::from_secs(1),
                },
                ErrorKind::Connect,
            ),
            (
                NetError::Tls {
                    host: "x:1".into(),
                    reason: "r".into(),
                },
                ErrorKind::Tls,
            ),
            (
                NetError::Certificate {
                    host: "x:1".into(),
                    problem: Cause::CertificateUntrusted,
                    reason: "r".into(),
                },
                ErrorKind::Certificate,
            ),
            (
                NetError::TrustFile {
                    path: "/x".into(),
                    reason: "r".into(),
                },
                ErrorKind::FileUnreadable,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(Error::from(e).kind(), kind);
        }
    }
}
