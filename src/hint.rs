//! The fix-it line printed under an error, for the errors users hit most (anchors/msmtp.md §6:
//! missing hints), naming the keys of the file the account came from. One table for both
//! binaries: msmtprc and the native TOML share key names (`tls_trust_file`...), fetchmailrc has
//! its own (`sslcertfile`...).

use crate::error::{Error, ErrorKind};

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

/// A next step for `e`, if there is a well-known one.
pub fn hint(e: &Error, vocabulary: Vocabulary) -> Option<&'static str> {
    use Vocabulary::{Fetchmailrc, Submit, TomlFetch};
    let text = e.chain();
    let rc = vocabulary == Fetchmailrc;
    match e.kind() {
        ErrorKind::Certificate if text.contains("fingerprint mismatch") => Some(match vocabulary {
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
        ErrorKind::Certificate if text.contains("not valid for") => Some(if rc {
            "poll the server by a name its certificate lists (via NAME keeps the label), or set sslcommonname"
        } else {
            "connect by a name the certificate lists, or set tls_host_override to one of them"
        }),
        ErrorKind::Certificate if vocabulary == Submit && text.contains("system CA") => Some(
            "install the ca-certificates package, or set tls_trust_file to a CA file, or pin the \
             server with tls_fingerprint",
        ),
        ErrorKind::Certificate => Some(match vocabulary {
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
        ErrorKind::Tls if vocabulary == Submit && text.contains("STARTTLS") => Some(
            "port and TLS mode disagree: port 465 wants tls_starttls off, 587 wants tls_starttls on",
        ),
        ErrorKind::Timeout if vocabulary == Submit => Some(
            "the server stopped answering; if this is port 465, set tls_starttls off (implicit TLS)",
        ),
        ErrorKind::Auth => Some(if rc {
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
        let unknown = Error::new(
            ErrorKind::Certificate,
            "certificate for pop.example:995 is not trusted: unknown issuer",
        );
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
        let pinned = Error::new(
            ErrorKind::Certificate,
            "fingerprint mismatch: server presented SHA256 AB:CD",
        );
        assert!(
            hint(&pinned, Vocabulary::Fetchmailrc)
                .unwrap()
                .contains("sslfingerprint")
        );
        let io = Error::new(ErrorKind::NetworkIo, "connection reset");
        assert_eq!(hint(&io, Vocabulary::TomlFetch), None);
    }

    #[test]
    fn smtp_port_hints_stay_with_submission() {
        let timeout = Error::new(ErrorKind::Timeout, "pop.example:995 stopped answering");
        assert!(hint(&timeout, Vocabulary::Submit).unwrap().contains("465"));
        assert_eq!(hint(&timeout, Vocabulary::TomlFetch), None);
        assert_eq!(hint(&timeout, Vocabulary::Fetchmailrc), None);
    }
}
