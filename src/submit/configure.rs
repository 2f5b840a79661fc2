//! `rsend --configure ADDRESS`: prints an msmtprc account for an address, as msmtp does: the
//! submission server from the domain's SRV records (RFC 6186 `_submission._tcp`, RFC 8314
//! `_submissions._tcp`, implicit TLS preferred), else from a built-in table of large providers
//! that publish none.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::account::Env;
use crate::error::{Error, ErrorKind, Result};
use crate::net;

use crate::message::address::check_addr_spec;

/// How long each name server gets to answer.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a suggestion came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Srv,
    Table,
}

/// A submission server for a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub host: String,
    pub port: u16,
    /// STARTTLS on the submission port (587) rather than implicit TLS (465).
    pub starttls: bool,
    pub source: Source,
}

/// Large providers, for when DNS gives no SRV answer (no records published, or no DNS server
/// reachable), with the servers their help pages give: (domains, host, port, STARTTLS).
const PROVIDERS: &[(&[&str], &str, u16, bool)] = &[
    (
        &["gmail.com", "googlemail.com"],
        "smtp.gmail.com",
        465,
        false,
    ),
    (
        &[
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "outlook.de",
            "hotmail.de",
            "hotmail.co.uk",
            "live.de",
        ],
        "smtp-mail.outlook.com",
        587,
        true,
    ),
    (&["office365.com"], "smtp.office365.com", 587, true),
    (
        &["yahoo.com", "yahoo.de", "yahoo.co.uk", "ymail.com"],
        "smtp.mail.yahoo.com",
        465,
        false,
    ),
    (&["aol.com"], "smtp.aol.com", 465, false),
    (
        &["icloud.com", "me.com", "mac.com"],
        "smtp.mail.me.com",
        587,
        true,
    ),
    (
        &["fastmail.com", "fastmail.fm"],
        "smtp.fastmail.com",
        465,
        false,
    ),
    (
        &["gmx.de", "gmx.net", "gmx.at", "gmx.ch"],
        "mail.gmx.net",
        465,
        false,
    ),
    (&["gmx.com"], "mail.gmx.com", 465, false),
    (&["web.de"], "smtp.web.de", 587, true),
    (&["posteo.de", "posteo.net"], "posteo.de", 465, false),
    (&["mailbox.org"], "smtp.mailbox.org", 465, false),
    (&["t-online.de"], "securesmtp.t-online.de", 465, false),
    (&["zoho.com"], "smtp.zoho.com", 465, false),
    (&["yandex.com", "yandex.ru"], "smtp.yandex.com", 465, false),
];

/// The built-in entry for `domain` (case-insensitive).
pub fn from_table(domain: &str) -> Option<Suggestion> {
    let domain = domain.to_ascii_lowercase();
    PROVIDERS
        .iter()
        .find(|(domains, ..)| domains.contains(&domain.as_str()))
        .map(|(_, host, port, starttls)| Suggestion {
            host: (*host).to_owned(),
            port: *port,
            starttls: *starttls,
            source: Source::Table,
        })
}

/// The resolv.conf whose name servers are asked: `$POSTIE_RESOLV_CONF` (tests point it at a
/// loopback server), else /etc/resolv.conf.
fn resolv_conf() -> PathBuf {
    std::env::var_os("POSTIE_RESOLV_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/resolv.conf"))
}

/// Finds the server for `address` and writes the account to `out`.
pub fn configure(address: &str, env: &Env, out: &mut dyn Write) -> Result<()> {
    let invalid = |why: &str| {
        Error::new(
            ErrorKind::RejectedPermanent,
            format!("automatic configuration failed: {address:?} is not a mail address ({why})"),
        )
    };
    // The address is written into a configuration file: only a plain user@domain may go there.
    let (local, domain) = address
        .rsplit_once('@')
        .filter(|(l, d)| !l.is_empty() && !d.is_empty() && !l.starts_with('"'))
        .ok_or_else(|| invalid("expected user@domain"))?;
    check_addr_spec(address).map_err(invalid)?;
    if domain.starts_with('[') {
        return Err(invalid("an address literal has no SRV records"));
    }
    let servers = net::nameservers(&resolv_conf());
    let submissions = format!("_submissions._tcp.{domain}");
    let submission = format!("_submission._tcp.{domain}");
    let mut found = None;
    for (name, starttls) in [(&submissions, false), (&submission, true)] {
        match net::srv_lookup(name, &servers, DNS_TIMEOUT) {
            Ok(records) => {
                if let Some(r) = records
                    .into_iter()
                    .find(|r| !r.target.is_empty() && r.port != 0)
                {
                    found = Some(Suggestion {
                        host: r.target,
                        port: r.port,
                        starttls,
                        source: Source::Srv,
                    });
                    break;
                }
            }
            Err(e) => {
                // No server answered: asking again for the other name would only wait again.
                log::debug!("{e}");
                break;
            }
        }
    }
    let Some(s) = found.or_else(|| from_table(domain)) else {
        return Err(Error::new(
            ErrorKind::HostUnknown,
            format!(
                "automatic configuration failed: no SRV records for {submissions} or \
                 {submission}, and {domain} is not in rsend's table of large providers"
            ),
        ));
    };
    let conffile = env.home.as_ref().map_or_else(
        || "~/.msmtprc".to_owned(),
        |h| h.join(".msmtprc").display().to_string(),
    );
    let mut text = format!("# - copy this to your configuration file {conffile}\n");
    if s.source == Source::Table {
        text.push_str(&format!(
            "# - from rsend's built-in table (no submission SRV records found for {domain})\n"
        ));
    }
    let host_lower = s.host.to_ascii_lowercase();
    let domain_lower = domain.to_ascii_lowercase();
    if host_lower != domain_lower && !host_lower.ends_with(&format!(".{domain_lower}")) {
        text.push_str("# - warning: the host does not match the mail domain; please check\n");
    }
    text.push_str(&format!(
        "# - encrypt your password:\n#   gpg -e -o ~/.msmtp-password.gpg\n\
         account {address}\nhost {host}\nport {port}\ntls on\ntls_starttls {starttls}\nauth on\n\
         user {local}\npasswordeval gpg --no-tty -q -d ~/.msmtp-password.gpg\nfrom {address}\n",
        host = s.host,
        port = s.port,
        starttls = if s.starttls { "on" } else { "off" },
    ));
    out.write_all(text.as_bytes())
        .map_err(|e| Error::with_source(ErrorKind::LocalIo, "cannot write to standard output", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lookups() {
        let g = from_table("GMail.com").unwrap();
        assert_eq!(
            (g.host.as_str(), g.port, g.starttls),
            ("smtp.gmail.com", 465, false)
        );
        let o = from_table("hotmail.com").unwrap();
        assert_eq!(
            (o.host.as_str(), o.port, o.starttls),
            ("smtp-mail.outlook.com", 587, true)
        );
        assert!(from_table("example.org").is_none());
        for (domains, host, port, _) in PROVIDERS {
            assert!(!domains.is_empty() && !host.is_empty() && *port > 0);
        }
    }
}
