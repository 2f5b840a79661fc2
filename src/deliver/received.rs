//! The `Received:` trace header rfetch prepends, in fetchmail's format (fetchmail transact.c:
//! `from SERVER [IP]`, `by HOST with PROTO (SOFTWARE)`, `for <ADDR> (single-drop)`, the date),
//! and its placement before the first existing `Received:` line (RFC 5322 §3.6.7).
//! Pure functions: no clock, no DNS.

use chrono::{DateTime, FixedOffset};

use crate::message::header;

/// Who the message is for, as fetchmail reports it on the `for` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceivedFor<'a> {
    /// Exactly one accepted recipient: `for <addr> (single-drop|multi-drop);`.
    One { address: &'a str, multidrop: bool },
    /// No recipient matched, delivered to the postmaster: `for <postmaster> (by default);`.
    ByDefault { postmaster: &'a str },
    /// Several recipients: only the date.
    Several,
}

/// `tracepolls`: which poll and account produced the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracePoll<'a> {
    pub label: &'a str,
    pub account: &'a str,
    pub folder: Option<&'a str>,
}

/// The inputs of the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedInfo<'a> {
    /// The server's true name (the `via` name, else the poll name).
    pub server: &'a str,
    /// Its numeric address, when known.
    pub server_ip: Option<&'a str>,
    /// This host's FQDN.
    pub client_host: &'a str,
    /// `POP3`, `IMAP`, ...
    pub protocol: &'a str,
    /// Program and version, e.g. `rfetch-0.1.0`.
    pub software: &'a str,
    pub trace: Option<TracePoll<'a>>,
    pub recipients: ReceivedFor<'a>,
    pub date: DateTime<FixedOffset>,
}

/// Characters that would break the header's structure are replaced.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\r' | '\n' | '<' | '>' | '(' | ')' | ';' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// The RFC 5322 date with fetchmail's zone comment: `Sun, 22 Nov 2026 04:25:39 +0000 (UTC)`.
pub fn rfc5322_date(date: &DateTime<FixedOffset>) -> String {
    let mut out = date.format("%a, %d %b %Y %H:%M:%S %z").to_string();
    if date.offset().local_minus_utc() == 0 {
        out.push_str(" (UTC)");
    }
    out
}

/// The complete header, folded on three lines, each ending in CRLF (the targets convert line
/// endings as they store the message).
pub fn received_header(info: &ReceivedInfo<'_>) -> String {
    let mut out = format!("Received: from {}", clean(info.server));
    if let Some(ip) = info.server_ip {
        out.push_str(&format!(" [{}]", clean(ip)));
    }
    out.push_str(&format!(
        "\r\n\tby {} with {} ({}",
        clean(info.client_host),
        clean(info.protocol),
        clean(info.software)
    ));
    if let Some(t) = &info.trace {
        out.push_str(&format!(
            " polling {} account {}",
            clean(t.label),
            clean(t.account)
        ));
        if let Some(f) = t.folder {
            out.push_str(&format!(" folder {}", clean(f)));
        }
    }
    out.push_str(")\r\n\t");
    match &info.recipients {
        ReceivedFor::One { address, multidrop } => out.push_str(&format!(
            "for <{}> ({}); ",
            clean(address),
            if *multidrop {
                "multi-drop"
            } else {
                "single-drop"
            }
        )),
        ReceivedFor::ByDefault { postmaster } => {
            out.push_str(&format!("for <{}> (by default); ", clean(postmaster)))
        }
        ReceivedFor::Several => {}
    }
    out.push_str(&rfc5322_date(&info.date));
    out.push_str("\r\n");
    out
}

/// Where to insert the header in `header_block` (the message's header section, or a prefix
/// of the message holding at least it): before the first `Received:` field (the name matched
/// case-insensitively), or at 0 when the header block has none, so a leading `Return-Path:`
/// stays first. The block is read by the one header scanner ([`crate::message::header`]).
pub fn insertion_offset(header_block: &[u8]) -> usize {
    header::field_offset(header_block, "Received").unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-11-22T04:25:39Z").unwrap()
    }

    #[test]
    fn matches_fetchmail_lab_output() {
        let info = ReceivedInfo {
            server: "127.0.0.1",
            server_ip: Some("127.0.0.1"),
            client_host: "vm",
            protocol: "POP3",
            software: "fetchmail-6.4.37",
            trace: None,
            recipients: ReceivedFor::One {
                address: "root@example.org",
                multidrop: false,
            },
            date: date(),
        };
        assert_eq!(
            received_header(&info),
            "Received: from 127.0.0.1 [127.0.0.1]\r\n\tby vm with POP3 (fetchmail-6.4.37)\r\n\
             \tfor <root@example.org> (single-drop); Sun, 22 Nov 2026 04:25:39 +0000 (UTC)\r\n"
        );
    }

    #[test]
    fn tracepolls_and_other_recipient_forms() {
        let mut info = ReceivedInfo {
            server: "imap.example.org",
            server_ip: None,
            client_host: "h.example.net",
            protocol: "IMAP",
            software: "rfetch-0.1.0",
            trace: Some(TracePoll {
                label: "work",
                account: "alice",
                folder: Some("INBOX"),
            }),
            recipients: ReceivedFor::Several,
            date: DateTime::parse_from_rfc3339("2026-11-22T05:25:39+01:00").unwrap(),
        };
        let h = received_header(&info);
        assert!(h.contains("(rfetch-0.1.0 polling work account alice folder INBOX)"));
        assert!(
            h.ends_with(")\r\n\tSun, 22 Nov 2026 05:25:39 +0100\r\n"),
            "{h}"
        );
        info.recipients = ReceivedFor::ByDefault {
            postmaster: "postmaster",
        };
        info.server = "evil\r\nX-Injected: 1";
        let h = received_header(&info);
        assert!(h.contains("for <postmaster> (by default); "));
        assert!(!h.contains("\r\nX-Injected"));
    }

    #[test]
    fn insertion_before_first_received() {
        let msg =
            b"Return-Path: <a@b>\r\nReceived: x\r\nReceived: y\r\n\r\nbody\r\nReceived: z\r\n";
        assert_eq!(insertion_offset(msg), 20);
        assert_eq!(insertion_offset(b"From: a\n\nReceived: body\n"), 0);
        assert_eq!(insertion_offset(b""), 0);
        assert_eq!(insertion_offset(b"received: x\n"), 0);
        assert_eq!(insertion_offset(b"A: 1\nReceived: x\n"), 5);
        // A lone CR ends a line: the field after it is a field.
        assert_eq!(insertion_offset(b"A: 1\rReceived: x\n\n"), 5);
        // Received in the body, after a line that is no header field, is not in the header.
        assert_eq!(insertion_offset(b"A: 1\nno field\nReceived: x\n"), 0);
    }
}
