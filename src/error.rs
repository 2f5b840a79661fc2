//! The crate error: every layer's error converges here, carrying what kind of failure it was
//! (which decides the exit code) and whether trying again later may succeed.

use std::fmt;

/// What went wrong, coarsely enough to pick an exit code and decide on retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Bad command line.
    Usage,
    /// Config syntax error, missing or contradictory setting, unknown account.
    Config,
    /// A config file that holds a secret is readable by others or owned by someone else.
    InsecureConfig,
    /// A file the user named (trust file, `-C` file, message file) cannot be read.
    FileUnreadable,
    /// The host name does not resolve (permanent).
    HostUnknown,
    /// Name resolution failed temporarily (EAI_AGAIN).
    HostLookupTemporary,
    /// connect() failed: refused, unreachable, connect timeout.
    Connect,
    /// A read or write on an established connection timed out.
    Timeout,
    /// A read or write on an established connection failed (reset, EOF mid-reply).
    NetworkIo,
    /// TLS handshake failure that is not about the certificate.
    Tls,
    /// The server certificate failed verification (unknown CA, wrong name, fingerprint mismatch).
    Certificate,
    /// The peer broke the protocol: malformed, oversized or unexpected reply.
    Protocol,
    /// The server lacks something we need (STARTTLS, AUTH, a mechanism, DSN).
    Unsupported,
    /// The server rejected our credentials.
    Auth,
    /// The server refused a command with a temporary (4xx / -ERR [IN-USE]) reply.
    RejectedTemporary,
    /// The server refused a command with a permanent (5xx) reply.
    RejectedPermanent,
    /// A local delivery target failed and may work later (EX_TEMPFAIL, disk full, 4xx from LMTP).
    DeliveryTemporary,
    /// A local delivery target refused the message for good.
    DeliveryPermanent,
    /// Another instance holds the lock.
    Lock,
    /// A local I/O failure not covered above (temp file, state file).
    LocalIo,
    /// A bug or a library failure we did not expect.
    Internal,
}

impl ErrorKind {
    /// Whether the same operation may succeed if tried again later without any change.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::HostLookupTemporary
                | ErrorKind::Connect
                | ErrorKind::Timeout
                | ErrorKind::NetworkIo
                | ErrorKind::RejectedTemporary
                | ErrorKind::DeliveryTemporary
                | ErrorKind::Lock
        )
    }
}

/// What precisely went wrong, for the failures whose fix a hint can name (see `crate::hint`).
/// Set where the failure is recognised (the net layer), kept through every added context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The certificate chain does not lead to a trusted CA (or cannot be verified otherwise).
    CertificateUntrusted,
    /// The certificate does not name the host we connected to.
    CertificateWrongName,
    /// The certificate has expired or is not valid yet.
    CertificateOutOfDate,
    /// The certificate is not the one pinned by fingerprint.
    CertificatePinMismatch,
    /// The system CA store is empty or unreadable.
    NoSystemRoots,
    /// Implicit TLS was attempted and the server answered in plaintext (a STARTTLS port).
    PlaintextAnswer,
    /// No OAuth2 access token could be had (the message names the command or setting to fix).
    OAuthToken,
    /// The server refused the OAuth2 access token sent with XOAUTH2 or OAUTHBEARER: expired,
    /// revoked or without the mail scope (the password hints do not apply).
    OAuthTokenRefused,
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The crate error. `Display` prints only this level's context ("cannot connect to
/// smtp.example.org:465"); [`Error::chain`] joins the sources for the user-facing line.
pub struct Error {
    kind: ErrorKind,
    cause: Option<Cause>,
    context: String,
    source: Option<Source>,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Error {
            kind,
            cause: None,
            context: context.into(),
            source: None,
        }
    }

    pub fn with_source(
        kind: ErrorKind,
        context: impl Into<String>,
        source: impl Into<Source>,
    ) -> Self {
        Error {
            kind,
            cause: None,
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// Records precisely what went wrong (see [`Cause`]).
    pub fn with_cause(mut self, cause: Cause) -> Self {
        self.cause = Some(cause);
        self
    }

    pub fn cause(&self) -> Option<Cause> {
        self.cause
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// Wraps this error in more context, keeping its kind.
    pub fn context(self, context: impl Into<String>) -> Self {
        Error {
            kind: self.kind,
            cause: self.cause,
            context: context.into(),
            source: Some(Box::new(self)),
        }
    }

    /// "outer: inner: innermost", each level printed once.
    pub fn chain(&self) -> String {
        let mut out = self.context.clone();
        let mut next: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|s| s as _);
        while let Some(err) = next {
            let text = err.to_string();
            if !text.is_empty() && !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            next = err.source();
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.chain())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

/// Adds context to any error convertible into [`Error`].
pub trait ResultExt<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_joins_each_level_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = Error::with_source(
            ErrorKind::Connect,
            "cannot connect to smtp.example.org:465",
            io,
        )
        .context("cannot send mail");
        assert_eq!(
            e.chain(),
            "cannot send mail: cannot connect to smtp.example.org:465: connection refused"
        );
        assert_eq!(e.kind(), ErrorKind::Connect);
        assert!(e.is_transient());
    }

    #[test]
    fn the_cause_survives_added_context() {
        let e = Error::new(ErrorKind::Certificate, "certificate for x:1 is not trusted")
            .with_cause(Cause::CertificatePinMismatch)
            .context("cannot connect")
            .context("account a");
        assert_eq!(e.cause(), Some(Cause::CertificatePinMismatch));
        assert_eq!(Error::new(ErrorKind::Auth, "no").cause(), None);
    }

    #[test]
    fn permanent_kinds_are_not_transient() {
        for k in [
            ErrorKind::Auth,
            ErrorKind::Certificate,
            ErrorKind::RejectedPermanent,
        ] {
            assert!(!k.is_transient(), "{k:?}");
        }
    }
}
