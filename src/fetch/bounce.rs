//! fetchmail's `softbounce`/`bouncemail` for mail the SMTP or LMTP listener refused for good
//! (a 5xx reply): with `softbounce` (fetchmail 6.4's default, and rfetch's) the message stays on
//! the server for the next poll; with `no softbounce` rfetch sends a delivery status
//! notification (RFC 3464 `multipart/report`, from the null sender) to the message's sender, or
//! to the postmaster with `no bouncemail` (and for a message without a usable sender, such as a
//! bounce itself), and the message is recorded and deleted only once that report was accepted.
//! A report that cannot be sent leaves the message where it is: nothing is lost to a refusal
//! nobody was told about (fetchmail deletes it anyway).
//!
//! An MDA's failure is never bounced, as in fetchmail: a broken MDA fails every message the same
//! way, and bouncing would empty the mailbox.

use std::time::{SystemTime, UNIX_EPOCH};

/// What to do with a permanent refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncePolicy {
    /// Keep refused mail on the server (`softbounce`, the default).
    pub softbounce: bool,
    /// Report to the sender (`bouncemail`, the default) rather than the postmaster.
    pub bouncemail: bool,
    /// `set postmaster`/`--postmaster`: who gets reports with `no bouncemail`; an empty name
    /// means nobody, so refused mail stays.
    pub postmaster: String,
}

impl Default for BouncePolicy {
    fn default() -> Self {
        BouncePolicy {
            softbounce: true,
            bouncemail: true,
            postmaster: "postmaster".to_owned(),
        }
    }
}

impl BouncePolicy {
    /// Whether a permanent refusal is reported (and the message then deleted).
    pub fn reports(&self) -> bool {
        !self.softbounce
    }

    /// Who gets the report for a message from `sender`: the sender with `bouncemail` when it
    /// is a usable address, else the postmaster (qualified with `domain` when it is a local
    /// name); `None` when there is nobody (`set postmaster ""`).
    pub fn report_to(&self, sender: &str, domain: &str) -> Option<String> {
        if self.bouncemail && usable_address(sender) {
            return Some(sender.to_owned());
        }
        let pm = self.postmaster.trim();
        if pm.is_empty() || !usable_local_or_address(pm) {
            return None;
        }
        Some(if pm.contains('@') {
            pm.to_owned()
        } else {
            format!("{pm}@{domain}")
        })
    }
}

/// A sender a report can go to: `local@domain`, printable, without spaces or brackets. The null
/// sender (a bounce) and anything a header could have garbled are not.
fn usable_address(a: &str) -> bool {
    a.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && usable_local_or_address(a)
}

fn usable_local_or_address(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 256
        && a.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"'))
}

/// One refused message, as the report describes it.
pub struct Refusal<'a> {
    /// The message's header block as fetched (at most the pipe's read-ahead).
    pub header: &'a [u8],
    /// The recipients the listener refused.
    pub recipients: &'a [String],
    /// Why (the listener's reply, as the delivery error gives it).
    pub reason: &'a str,
    /// Where the message was fetched from: `user@server`.
    pub mailbox: &'a str,
    /// This host's name, for Reporting-MTA and the Message-ID.
    pub host: &'a str,
}

/// Replaces control characters (a reply's line breaks, anything else a server sent) with
/// spaces and bounds the length, so that a value is one line of the report.
fn one_line(value: &str, max: usize) -> String {
    let mut out: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if value.chars().count() > max {
        out.push_str("...");
    }
    out
}

/// The first `5.x.y` enhanced status code in `reason`, else `5.0.0`.
fn status_code(reason: &str) -> String {
    reason
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && parts[0] == "5"
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .unwrap_or("5.0.0")
        .to_owned()
}

/// The header lines of `header` (up to its blank line), each ending in CRLF; a lone CR inside
/// a line becomes a space, so every line of the report part is a line to every reader.
fn header_lines(header: &[u8]) -> String {
    let text = String::from_utf8_lossy(header);
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        out.extend(line.chars().map(|c| if c == '\r' { ' ' } else { c }));
        out.push_str("\r\n");
    }
    out
}

/// The report for `refusal`, addressed to `to`: an RFC 3464 `multipart/report` with a
/// human-readable part, the `message/delivery-status` part and the refused message's header
/// (`text/rfc822-headers`), CRLF throughout.
pub fn compose(refusal: &Refusal<'_>, to: &str) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let host = one_line(refusal.host, 200);
    let boundary = format!("=_rfetch-report-{now:x}-{}", std::process::id());
    let reason = one_line(refusal.reason, 900);
    let mailbox = one_line(refusal.mailbox, 300);
    let date = chrono::Local::now().to_rfc2822();
    let mut out = String::new();
    out.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Message-ID: <rfetch-report.{now:x}.{pid}@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         rfetch fetched a message from the mailbox {mailbox} and the mail system it\r\n\
         forwards to refused it permanently:\r\n\
         \r\n\
         \x20 {reason}\r\n\
         \r\n\
         This report replaces the message: it is deleted from the mailbox. Its header\r\n\
         follows.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n",
        pid = std::process::id(),
    ));
    let status = status_code(&reason);
    for rcpt in refusal.recipients {
        out.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {status}\r\n\
             Diagnostic-Code: smtp; {reason}\r\n",
            one_line(rcpt, 300)
        ));
    }
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{}\r\n--{boundary}--\r\n",
        header_lines(refusal.header)
    ));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_goes_to_the_sender_or_the_postmaster() {
        let p = BouncePolicy::default();
        assert_eq!(
            p.report_to("a@x.org", "localhost").as_deref(),
            Some("a@x.org")
        );
        // No usable sender (a bounce, a garbled header): the postmaster.
        for sender in ["", "a@b@c", "a b@x", "a@x>\r\nRCPT TO:<z@y", "noat"] {
            assert_eq!(
                p.report_to(sender, "localhost").as_deref(),
                Some("postmaster@localhost"),
                "{sender:?}"
            );
        }
        let p = BouncePolicy {
            bouncemail: false,
            postmaster: "pm@example.org".into(),
            ..BouncePolicy::default()
        };
        assert_eq!(
            p.report_to("a@x.org", "l").as_deref(),
            Some("pm@example.org")
        );
        let p = BouncePolicy {
            bouncemail: false,
            postmaster: String::new(),
            ..BouncePolicy::default()
        };
        assert_eq!(p.report_to("a@x.org", "l"), None);
        assert!(!BouncePolicy::default().reports());
    }

    #[test]
    fn the_report_is_rfc3464_shaped_and_server_text_stays_on_its_line() {
        let header =
            b"Return-Path: <a@x.org>\r\nSubject: hi\rBcc: evil\r\nFrom: a@x.org\n\r\nbody\r\n";
        let r = Refusal {
            header,
            recipients: &["bob@localhost".to_owned()],
            reason: "smtp://h:25 refused bob@localhost: 550 5.1.1 no\r\nAction: delivered",
            mailbox: "bob@mail",
            host: "here",
        };
        let text = String::from_utf8(compose(&r, "a@x.org")).unwrap();
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains("\r\nTo: <a@x.org>\r\n"));
        assert!(text.contains(
            "\r\nFinal-Recipient: rfc822; bob@localhost\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ));
        assert!(text.contains("Diagnostic-Code: smtp; smtp://h:25 refused bob@localhost: 550 5.1.1 no  Action: delivered\r\n"));
        assert_eq!(text.matches("\nAction:").count(), 1, "{text}");
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nReturn-Path: <a@x.org>\r\nSubject: hi Bcc: evil\r\nFrom: a@x.org\r\n\r\n--"));
        assert!(!text.contains("body"));
        // Every line ends in CRLF; no bare CR or LF.
        let bytes = text.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(bytes[i - 1], b'\r');
            }
            if b == b'\r' {
                assert_eq!(bytes.get(i + 1), Some(&b'\n'));
            }
        }
        assert_eq!(status_code("550 no code"), "5.0.0");
        assert_eq!(status_code("554 5.7.1 spam 4.2.0"), "5.7.1");
    }
}
