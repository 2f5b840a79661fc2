//! EHLO/LHLO capability parsing (RFC 5321 §4.1.1.1; SIZE RFC 1870, PIPELINING RFC 2920,
//! STARTTLS RFC 3207, AUTH RFC 4954, 8BITMIME RFC 6152, SMTPUTF8 RFC 6531, DSN RFC 3461,
//! CHUNKING RFC 3030, ENHANCEDSTATUSCODES RFC 2034). Keywords are case-insensitive.

use super::PeerMisbehaved;
use super::reply::Reply;

/// Most AUTH mechanisms accepted from one EHLO reply (real servers name a handful).
pub const MAX_AUTH_MECHANISMS: usize = 64;

/// What the server announced in its EHLO (or LHLO) reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The domain the server named on the first line.
    pub domain: String,
    /// SIZE was announced.
    pub size_extension: bool,
    /// The announced SIZE limit, if it is a positive number (0 or none means no fixed limit).
    pub size_limit: Option<u64>,
    pub pipelining: bool,
    pub starttls: bool,
    /// AUTH mechanisms, upper-case, in the order announced (both "AUTH" and "AUTH=" lines).
    pub auth: Vec<String>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub chunking: bool,
    pub enhanced_status_codes: bool,
    /// Every extension line as sent (for `--serverinfo`).
    pub extensions: Vec<String>,
}

impl Capabilities {
    /// Parses a successful EHLO reply. Unknown or malformed lines are kept in `extensions` only;
    /// more than [`MAX_AUTH_MECHANISMS`] AUTH mechanisms is an error.
    pub fn from_ehlo(reply: &Reply) -> Result<Capabilities, PeerMisbehaved> {
        let mut caps = Capabilities::default();
        let mut lines = reply.lines().iter();
        if let Some(first) = lines.next() {
            caps.domain = first.split(' ').next().unwrap_or_default().to_string();
        }
        for line in lines {
            caps.extensions.push(line.clone());
            let mut words = line.split([' ', '=']).filter(|w| !w.is_empty());
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "SIZE" => {
                    caps.size_extension = true;
                    caps.size_limit = words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|&n| n > 0);
                }
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "AUTH" => {
                    for mech in words {
                        let mech = mech.to_ascii_uppercase();
                        if !caps.auth.contains(&mech) {
                            if caps.auth.len() >= MAX_AUTH_MECHANISMS {
                                return Err(PeerMisbehaved::TooManyAuthMechanisms {
                                    limit: MAX_AUTH_MECHANISMS,
                                });
                            }
                            caps.auth.push(mech);
                        }
                    }
                }
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "CHUNKING" => caps.chunking = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                _ => {}
            }
        }
        Ok(caps)
    }

    /// Whether the server offers this AUTH mechanism.
    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(mechanism))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::smtp::reply::ReplyParser;

    fn caps_of(wire: &[u8]) -> Capabilities {
        let mut p = ReplyParser::default();
        p.push(wire);
        match p.next_reply() {
            Ok(Some(r)) => Capabilities::from_ehlo(&r).expect("valid EHLO reply"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn postfix_style() {
        let c = caps_of(
            b"250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
              250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n\
              250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n",
        );
        assert_eq!(c.domain, "mail.example.org");
        assert!(c.pipelining && c.starttls && c.eight_bit_mime && c.dsn && c.smtputf8);
        assert!(c.chunking && c.enhanced_status_codes && c.size_extension);
        assert_eq!(c.size_limit, Some(10_240_000));
        assert_eq!(c.auth, vec!["PLAIN", "LOGIN"]);
        assert!(c.offers_auth("plain"));
        assert!(!c.offers_auth("CRAM-MD5"));
        assert_eq!(c.extensions.len(), 12);
    }

    #[test]
    fn case_insensitive_and_odd_forms() {
        let c = caps_of(
            b"250-host greets you\r\n250-size\r\n250-auth=cram-md5 scram-sha-256\r\n\
              250-starttls\r\n250-Pipelining\r\n250 \r\n",
        );
        assert_eq!(c.domain, "host");
        assert!(c.size_extension);
        assert_eq!(c.size_limit, None);
        assert_eq!(c.auth, vec!["CRAM-MD5", "SCRAM-SHA-256"]);
        assert!(c.starttls && c.pipelining);
        assert!(!c.dsn);
        let c = caps_of(b"250-h\r\n250 SIZE 0\r\n");
        assert!(c.size_extension);
        assert_eq!(c.size_limit, None);
        let c = caps_of(b"250-h\r\n250 SIZE lots\r\n");
        assert_eq!(c.size_limit, None);
    }

    #[test]
    fn chunk_split_gives_same_result() {
        let wire = b"250-h\r\n250-SIZE 100\r\n250-AUTH PLAIN\r\n250 DSN\r\n";
        let whole = caps_of(wire);
        for size in [1, 2, 3, 5, 7] {
            let mut p = ReplyParser::default();
            let mut got = None;
            for c in wire.chunks(size) {
                p.push(c);
                if let Ok(Some(r)) = p.next_reply() {
                    got = Capabilities::from_ehlo(&r).ok();
                }
            }
            assert_eq!(got.as_ref(), Some(&whole), "size {size}");
        }
    }

    #[test]
    fn auth_mechanism_flood_is_an_error() {
        let mechs: Vec<String> = (0..65).map(|i| format!("M{i}")).collect();
        let line = format!("AUTH {}", mechs.join(" "));
        let r = Reply::new(250, &["host", &line]);
        assert_eq!(
            Capabilities::from_ehlo(&r),
            Err(PeerMisbehaved::TooManyAuthMechanisms {
                limit: MAX_AUTH_MECHANISMS
            })
        );
        let line = format!("AUTH {}", mechs[..64].join(" "));
        let ok = Capabilities::from_ehlo(&Reply::new(250, &["host", &line])).expect("64 is fine");
        assert_eq!(ok.auth.len(), 64);
    }

    #[test]
    fn helo_only_reply_has_no_extensions() {
        let c = Capabilities::from_ehlo(&Reply::new(250, &["host"])).expect("valid");
        assert_eq!(
            c,
            Capabilities {
                domain: "host".into(),
                ..Capabilities::default()
            }
        );
    }
}
