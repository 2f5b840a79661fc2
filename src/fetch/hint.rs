//! The fix-it line rfetch prints under an error, in the vocabulary of the file the account came
//! from (fetchmailrc keywords, or the native TOML keys), for the errors users hit most.

use crate::error::{Error, ErrorKind};

/// Which configuration language to name keys in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    Fetchmailrc,
    Toml,
}

/// A next step for `e`, if there is a well-known one.
pub fn hint(e: &Error, vocabulary: Vocabulary) -> Option<&'static str> {
    let text = e.chain();
    let rc = vocabulary == Vocabulary::Fetchmailrc;
    match e.kind() {
        ErrorKind::Certificate if text.contains("fingerprint mismatch") => Some(if rc {
            "the server's certificate is not the pinned one; if it was renewed on purpose, update sslfingerprint"
        } else {
            "the server's certificate is not the pinned one; if it was renewed on purpose, update tls_fingerprint"
        }),
        ErrorKind::Certificate if text.contains("not valid for") => Some(if rc {
            "poll the server by a name its certificate lists (via NAME keeps the label), or set sslcommonname"
        } else {
            "connect by a name the certificate lists, or set tls_host_override to one of them"
        }),
        ErrorKind::Certificate => Some(if rc {
            "to trust this server, set sslcertfile to its CA (with sslcertck), or pin it with sslfingerprint"
        } else {
            "to trust this server, set tls_trust_file to its CA, or pin it with tls_fingerprint"
        }),
        ErrorKind::Auth => Some(if rc {
            "check user and password for this poll (rfetch -V shows what was understood)"
        } else {
            "check user and password (or passwordeval) for this account"
        }),
        _ => None,
    }
}

/// Prints `e` and its hint on stderr, as every rfetch error is shown.
pub fn show(e: &Error, vocabulary: Vocabulary) {
    eprintln!("rfetch: {}", e.chain());
    if let Some(h) = hint(e, vocabulary) {
        eprintln!("rfetch: {h}");
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
            hint(&unknown, Vocabulary::Toml)
                .unwrap()
                .contains("tls_trust_file")
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
        assert_eq!(hint(&io, Vocabulary::Toml), None);
    }
}
