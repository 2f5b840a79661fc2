//! The fix-it line printed under an error, for the errors users hit most (msmtp prints the error
//! alone, and users ask what to change), naming the keys of the file the account came from. One table for both
//! binaries: msmtprc and the native TOML share key names (`tls_trust_file`...), fetchmailrc has
//! its own (`sslcertfile`...).

use crate::error::{Cause, Error, ErrorKind};

/// Which configuration language, and which direction, a hint speaks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    /// rsend: msmtprc or TOML keys, SMTP submission ports.
    Submit,
    /// rfetch, account from the native TOML file: the same TLS keys as msmtprc.
    TomlFetch,
    /// rfetch, poll from a fetchmailrc.
    Fetchmailrc,
}

/// A next step for `e`, if there is a well-known one. Decided by the error's kind and
/// [`Cause`], never by its wording.
pub fn hint(e: &Error, vocabulary: Vocabulary) -> Option<&'static str> {
    use Vocabulary::{Fetchmailrc, Submit, TomlFetch};
    let rc = vocabulary == Fetchmailrc;
    match (e.kind(), e.cause()) {
        (_, Some(Cause::CertificatePinMismatch)) => Some(match vocabulary {
            Submit => {
                "the server's certificate is not the pinned one; if it was renewed on purpose, update \
                 tls_fingerprint (rsend --serverinfo shows the new one)"
            }
            TomlFetch => {
                "the server's certificate is not the pinned one; if it was renewed on purpose, update tls_fingerprint"
            }
            Fetchmailrc => {
                "the server's certificate is not the pinned one; if it was renewed on purpose, update sslfingerprint"
            }
        }),
        (_, Some(Cause::CertificateWrongName)) => Some(if rc {
            "poll the server by a name its certificate lists (via NAME keeps the label), or set sslcommonname"
        } else {
            "connect by a name the certificate lists, or set tls_host_override to one of them"
        }),
        (_, Some(Cause::CertificateOutOfDate)) => Some(
            "check this machine's clock; if it is right, the server's certificate must be renewed",
        ),
        (_, Some(Cause::NoSystemRoots)) => Some(if rc {
            "install the ca-certificates package, or set sslcertfile to a CA file, or pin the \
             server with sslfingerprint"
        } else {
            "install the ca-certificates package, or set tls_trust_file to a CA file, or pin the \
             server with tls_fingerprint"
        }),
        (ErrorKind::Certificate, _) => Some(match vocabulary {
            Submit => {
                "to trust this server, set tls_trust_file to its CA, or pin it with tls_fingerprint \
                 (rsend --serverinfo --tls-certcheck=off shows the fingerprint)"
            }
            TomlFetch => {
                "to trust this server, set tls_trust_file to its CA, or pin it with tls_fingerprint"
            }
            Fetchmailrc => {
                "to trust this server, set sslcertfile to its CA (with sslcertck), or pin it with sslfingerprint"
            }
        }),
        (_, Some(Cause::PlaintextAnswer)) => Some(match vocabulary {
            Submit => {
                "port and TLS mode disagree: port 465 wants tls_starttls off, 587 wants tls_starttls on"
            }
            TomlFetch => {
                "port and TLS mode disagree: ports 995/993 want tls_starttls = false, 110/143 want true"
            }
            Fetchmailrc => {
                "this port speaks plaintext first: drop ssl and use sslproto tls1.2+ for STARTTLS/STLS, \
                 or poll the implicit-TLS port (995 POP3S, 993 IMAPS)"
            }
        }),
        // The OAuth2 errors say themselves what to run or set; the hints about the mail server's
        // port or password would mislead.
        (_, Some(Cause::OAuthToken)) => None,
        (_, Some(Cause::OAuthTokenRefused)) => Some(if rc {
            "the token is not a password: run the passwordeval command by hand and check that it \
             prints a current access token (refreshing it first), and that the provider granted \
             the mail scope to your client"
        } else {
            "the token is not a password: with oauth_provider, run postie oauth login to authorize \
             again; with passwordeval, run that command by hand and check that it prints a current \
             access token; and check that the provider granted the mail scope to your client"
        }),
        (ErrorKind::Timeout, _) if vocabulary == Submit => Some(
            "the server stopped answering; if this is port 465, set tls_starttls off (implicit TLS)",
        ),
        (ErrorKind::Auth, _) => Some(if rc {
            "check user and password for this poll (rfetch -V shows what was understood)"
        } else {
            "check user and password (or passwordeval) for this account"
        }),
        _ => None,
    }
}

/// Prints `e` and its hint on stderr, as `program: ...` lines.
pub fn show(program: &str, e: &Error, vocabulary: Vocabulary) {
    eprintln!("{program}: {}", e.chain());
    if let Some(h) = hint(e, vocabulary) {
        eprintln!("{program}: {h}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_keys_of_the_right_file() {
        let cert = |cause| Error::new(ErrorKind::Certificate, "not trusted").with_cause(cause);
        let unknown = cert(Cause::CertificateUntrusted);
        assert!(
            hint(&unknown, Vocabulary::Fetchmailrc)
                .unwrap()
                .contains("sslcertfile")
        );
        assert!(
            hint(&unknown, Vocabulary::TomlFetch)
                .unwrap()
                .contains("tls_trust_file")
        );
        assert!(
            hint(&unknown, Vocabulary::Submit)
                .unwrap()
                .contains("rsend --serverinfo")
        );
        let pinned = cert(Cause::CertificatePinMismatch);
        assert!(
            hint(&pinned, Vocabulary::Fetchmailrc)
                .unwrap()
                .contains("sslfingerprint")
        );
        let name = cert(Cause::CertificateWrongName);
        assert!(
            hint(&name, Vocabulary::Fetchmailrc)
                .unwrap()
                .contains("sslcommonname")
        );
        assert!(
            hint(&name, Vocabulary::Submit)
                .unwrap()
                .contains("tls_host_override")
        );
        let refused = Error::new(ErrorKind::Auth, "535 no").with_cause(Cause::OAuthTokenRefused);
        for v in [
            Vocabulary::Submit,
            Vocabulary::TomlFetch,
            Vocabulary::Fetchmailrc,
        ] {
            let h = hint(&refused, v).unwrap();
            assert!(
                h.contains("passwordeval") && !h.contains("check user"),
                "{h}"
            );
        }
        let io = Error::new(ErrorKind::NetworkIo, "connection reset");
        assert_eq!(hint(&io, Vocabulary::TomlFetch), None);
    }

    #[test]
    fn the_wording_of_an_error_does_not_choose_its_hint() {
        // A server can put anything in its replies; only the recorded cause counts.
        let forged = Error::new(
            ErrorKind::Certificate,
            "fingerprint mismatch, not valid for, system CA, STARTTLS",
        );
        assert!(
            hint(&forged, Vocabulary::Submit)
                .unwrap()
                .starts_with("to trust this server")
        );
        let proto = Error::new(ErrorKind::Tls, "server said: STARTTLS please");
        assert_eq!(hint(&proto, Vocabulary::Submit), None);
        let plain = Error::new(ErrorKind::Tls, "x").with_cause(Cause::PlaintextAnswer);
        assert!(hint(&plain, Vocabulary::Submit).unwrap().contains("465"));
        assert!(
            hint(&plain, Vocabulary::TomlFetch)
                .unwrap()
                .contains("tls_starttls")
        );
        assert!(
            hint(&plain, Vocabulary::Fetchmailrc)
                .unwrap()
                .contains("sslproto")
        );
    }

    #[test]
    fn smtp_port_hints_stay_with_submission() {
        let timeout = Error::new(ErrorKind::Timeout, "pop.example:995 stopped answering");
        assert!(hint(&timeout, Vocabulary::Submit).unwrap().contains("465"));
        assert_eq!(hint(&timeout, Vocabulary::TomlFetch), None);
        assert_eq!(hint(&timeout, Vocabulary::Fetchmailrc), None);
    }
}
