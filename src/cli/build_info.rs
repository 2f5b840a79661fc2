//! What `rsend --version` and `rfetch -V` say about the build: version, platform, TLS library
//! and the features compiled in, the lines users paste into bug reports (as `msmtp --version`
//! and `fetchmail -V` print them).

use crate::proto::sasl::Mechanism;

/// Which binary is describing itself: the protocol and target lines differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Rsend,
    Rfetch,
}

/// The rustls line. The version is the one Cargo.toml requires (postie builds with no other
/// major version); the crypto provider and protocol versions are fixed by the features the
/// crate enables (`ring`, `tls12`; TLS 1.3 is always on), so they cannot differ between builds.
pub const TLS_LIBRARY: &str =
    "rustls 0.23 with the ring crypto provider (TLS 1.2, TLS 1.3; no OpenSSL)";

/// The build description, one "Name: value" line each, ending with a newline.
pub fn describe(binary: Binary) -> String {
    let mut mechanisms: Vec<String> = Mechanism::ALL
        .iter()
        .map(|m| m.name().to_ascii_lowercase())
        .collect();
    let (protocols, extra_auth, features) = match binary {
        Binary::Rsend => (
            "SMTP, LMTP; STARTTLS and implicit TLS (submissions)",
            None,
            "syslog, log file, DSN, 8BITMIME, SMTPUTF8, SIZE, PIPELINING, sendmail flags \
             (-t, -f/-r, -F, -oi), mailq/newaliases by program name",
        ),
        Binary::Rfetch => (
            "POP3 (UIDL, PIPELINING), IMAP4rev1 (UID, IDLE); STARTTLS/STLS and implicit TLS",
            Some("apop (POP3)"),
            "daemon (-d, -N), IDLE, multidrop, Maildir, mbox, MDA, SMTP/LMTP forwarding, \
             syslog, log file",
        ),
    };
    mechanisms.extend(extra_auth.map(str::to_owned));
    format!(
        "Platform: {arch}-{os}\n\
         TLS library: {TLS_LIBRARY}\n\
         Trust: the system store (rustls-native-certs), a trust file, or a SHA-256 fingerprint\n\
         Protocols: {protocols}\n\
         Authentication methods: {auth}\n\
         Features: {features}\n",
        arch = std::env::consts::ARCH,
        os = std::env::consts::OS,
        auth = mechanisms.join(" "),
    )
}

/// rsend's first line, in msmtp's "NAME version X" form.
pub fn rsend_title() -> String {
    format!("rsend (postie) version {}", env!("CARGO_PKG_VERSION"))
}

/// rfetch's first line, in fetchmail's "This is fetchmail release X" form.
pub fn rfetch_title() -> String {
    format!(
        "This is rfetch release {} (postie; fetchmail compatible)",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mechanism_and_the_tls_library_are_listed() {
        for binary in [Binary::Rsend, Binary::Rfetch] {
            let text = describe(binary);
            assert!(text.contains("TLS library: rustls 0.23"), "{text}");
            for m in Mechanism::ALL {
                assert!(
                    text.contains(&m.name().to_ascii_lowercase()),
                    "{binary:?} misses {m}: {text}"
                );
            }
        }
        assert!(describe(Binary::Rfetch).contains("apop"));
        assert!(!describe(Binary::Rsend).contains("apop"));
        assert!(rsend_title().ends_with(env!("CARGO_PKG_VERSION")));
    }

    /// The TLS line states the version and features Cargo.toml asks for; a rustls upgrade
    /// must update it. (Both manifest forms: `rustls = { ... }` in the repository and the
    /// `[dependencies.rustls]` table `cargo package` writes.)
    #[test]
    fn the_tls_line_matches_cargo_toml() {
        let manifest = include_str!("../../Cargo.toml");
        let at = manifest
            .find("\nrustls = ")
            .or_else(|| manifest.find("[dependencies.rustls]"))
            .unwrap_or_else(|| panic!("no rustls dependency in Cargo.toml"));
        let entry = manifest[at..].chars().take(300).collect::<String>();
        assert!(entry.contains("\"0.23"), "{entry}");
        assert!(
            entry.contains("\"ring\"") && entry.contains("\"tls12\""),
            "{entry}"
        );
    }
}
