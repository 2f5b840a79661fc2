//! rsend's header policy on a message handed to it (the block is split by
//! [`crate::message::header`]): `-t` recipient extraction (To/Cc/Bcc, or the first Resent- block),
//! Bcc/Resent-Bcc removal, and the missing From/Date/Message-ID/To headers msmtp adds.

use crate::message::address::{AddressError, parse_address_list, parse_recipient_list};
use crate::message::header;

pub use crate::message::header::{Field, Head};

/// Upper bound on the header block we keep in memory; the body is streamed.
pub const MAX_HEADER_BYTES: usize = 4 * 1024 * 1024;

/// Why the header block could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the message header is larger than {MAX_HEADER_BYTES} bytes")]
    TooLarge,
    /// A value rsend was asked to write into a header holds a control character (a CR or LF
    /// would add header lines of the caller's choosing).
    #[error("{what} contains the control character U+{:04X}", u32::from(*found))]
    Control { what: &'static str, found: char },
    /// With -t, a recipient header holds something that is not an address.
    #[error("the {field} header: {error}")]
    Recipient { field: String, error: AddressError },
}

/// Splits the header block off `input` (see [`header::split_head`]), bounded by
/// [`MAX_HEADER_BYTES`]. Lines are split by [`crate::message::line`], the rule the DATA encoder
/// uses too, so the fields seen here are the header lines that go on the wire.
pub fn split_head(input: &[u8], complete: bool) -> Result<Option<Head>, HeaderError> {
    header::split_head(input, complete, MAX_HEADER_BYTES).map_err(|_| HeaderError::TooLarge)
}

/// msmtp's `set_from_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetFrom {
    /// Add From when missing.
    #[default]
    Auto,
    /// Replace any From.
    On,
    Off,
}

/// msmtp's `set_to_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetTo {
    #[default]
    Off,
    /// Replace To/Cc/Bcc with one To listing the envelope recipients.
    On,
    /// Replace To/Cc/Bcc with `To: undisclosed-recipients:;`.
    Undisclosed,
}

/// What the header pass should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPolicy {
    pub read_recipients: bool,
    pub remove_bcc: bool,
    pub set_from: SetFrom,
    pub set_date: bool,
    pub set_msgid: bool,
    pub set_to: SetTo,
    /// Envelope-from address used for an added From.
    pub from_address: Option<String>,
    /// `-F` / `from_full_name`.
    pub from_full_name: Option<String>,
    /// RFC 5322 date to use for an added Date.
    pub date: String,
    /// Message-ID to use for an added Message-ID, with angle brackets.
    pub message_id: String,
}

/// The result of the header pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The header block to send, ending with the empty separator line.
    pub header: Vec<u8>,
    /// Recipients found in the header (with `read_recipients`), in order.
    pub recipients: Vec<String>,
}

/// The address in the From header (or the leading Resent-From), for `--read-envelope-from`.
pub fn from_address(head: &Head) -> Option<String> {
    let field = head
        .fields
        .iter()
        .take_while(|f| !f.is("From"))
        .find(|f| f.is("Resent-From"))
        .or_else(|| head.fields.iter().find(|f| f.is("From")))?;
    parse_address_list(&field.value()).into_iter().next()
}

/// Refuses `value`, bound for a header as `what`, when it holds a control character.
fn no_control(value: &str, what: &'static str) -> Result<(), HeaderError> {
    match header::first_control(value) {
        Some(found) => Err(HeaderError::Control { what, found }),
        None => Ok(()),
    }
}

/// Runs the header pass. Every value the policy adds to the header (addresses, full name, date,
/// Message-ID, the envelope recipients for `set_to_header`) is refused when it holds a control
/// character; the caller checks them earlier with better messages, this is the last line.
pub fn prepare(
    head: &Head,
    policy: &HeaderPolicy,
    envelope_rcpts: &[String],
) -> Result<Prepared, HeaderError> {
    if let Some(a) = &policy.from_address {
        no_control(a, "the From address")?;
    }
    if let Some(n) = &policy.from_full_name {
        no_control(n, "the full name")?;
    }
    no_control(&policy.date, "the Date")?;
    no_control(&policy.message_id, "the Message-ID")?;
    for r in envelope_rcpts {
        no_control(r, "a recipient address")?;
    }
    let mut recipients = Vec::new();
    if policy.read_recipients {
        let resent_start = head
            .fields
            .iter()
            .position(|f| f.name.len() > 7 && f.name[..7].eq_ignore_ascii_case("resent-"));
        let candidates: Vec<&Field> = match resent_start {
            // Only the first Resent- block counts (RFC 5322 3.6.6: blocks are prepended).
            Some(start) => head.fields[start..]
                .iter()
                .take_while(|f| f.name.len() > 7 && f.name[..7].eq_ignore_ascii_case("resent-"))
                .filter(|f| f.is("Resent-To") || f.is("Resent-Cc") || f.is("Resent-Bcc"))
                .collect(),
            None => head
                .fields
                .iter()
                .filter(|f| f.is("To") || f.is("Cc") || f.is("Bcc"))
                .collect(),
        };
        for f in candidates {
            let found =
                parse_recipient_list(&f.value()).map_err(|error| HeaderError::Recipient {
                    field: f.name.clone(),
                    error,
                })?;
            recipients.extend(found);
        }
    }

    let mut added: Vec<String> = Vec::new();
    let has = |name: &str| head.fields.iter().any(|f| f.is(name));
    let replace_from = policy.set_from == SetFrom::On;
    if let Some(addr) = &policy.from_address
        && (replace_from || (policy.set_from == SetFrom::Auto && !has("From")))
    {
        let value = match &policy.from_full_name {
            Some(name) if !name.is_empty() => format!("{} <{addr}>", quote_display_name(name)),
            _ => addr.clone(),
        };
        added.push(format!("From: {value}"));
    }
    if policy.set_date && !has("Date") {
        added.push(format!("Date: {}", policy.date));
    }
    if policy.set_msgid && !has("Message-ID") {
        added.push(format!("Message-ID: {}", policy.message_id));
    }
    match policy.set_to {
        SetTo::Off => {}
        SetTo::On => added.push(format!("To: {}", envelope_rcpts.join(", "))),
        SetTo::Undisclosed => added.push("To: undisclosed-recipients:;".to_string()),
    }

    let mut header = Vec::new();
    for line in &added {
        header.extend_from_slice(line.as_bytes());
        header.push(b'\n');
    }
    for f in &head.fields {
        let drop = (policy.remove_bcc && (f.is("Bcc") || f.is("Resent-Bcc")))
            || (replace_from && f.is("From"))
            || (policy.set_to != SetTo::Off && (f.is("To") || f.is("Cc") || f.is("Bcc")));
        if drop {
            continue;
        }
        header.extend_from_slice(&f.raw);
        if !f.raw.ends_with(b"\n") {
            header.push(b'\n');
        }
    }
    header.push(b'\n');
    Ok(Prepared { header, recipients })
}

/// A display name as an RFC 5322 phrase: plain atoms stay, anything else is quoted; non-ASCII
/// names are RFC 2047 encoded (base64, UTF-8).
fn quote_display_name(name: &str) -> String {
    use base64::Engine;
    if !name.is_ascii() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(name.as_bytes());
        return format!("=?UTF-8?B?{b64}?=");
    }
    let atom_ok = |c: char| c.is_ascii_alphanumeric() || " !#$%&'*+-/=?^_`{|}~".contains(c);
    if name.chars().all(atom_ok) {
        name.to_string()
    } else {
        let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HeaderPolicy {
        HeaderPolicy {
            read_recipients: true,
            remove_bcc: true,
            set_from: SetFrom::Auto,
            set_date: true,
            set_msgid: true,
            set_to: SetTo::Off,
            from_address: Some("me@x.org".into()),
            from_full_name: None,
            date: "Mon, 23 Nov 2026 12:00:00 +0000".into(),
            message_id: "<id@x.org>".into(),
        }
    }

    fn head(input: &[u8]) -> Head {
        split_head(input, true).unwrap().unwrap()
    }

    #[test]
    fn split_finds_separator_and_folding() {
        let h = head(b"To: a@b.c,\n d@e.f\nSubject: hi\n\nbody\n");
        assert_eq!(h.fields.len(), 2);
        assert_eq!(h.fields[0].value(), "a@b.c,  d@e.f");
        assert!(h.had_separator);
        assert_eq!(h.consumed, b"To: a@b.c,\n d@e.f\nSubject: hi\n\n".len());
    }

    #[test]
    fn no_header_means_body_only() {
        let h = head(b"hello world\n");
        assert!(h.fields.is_empty());
        assert_eq!(h.consumed, 0);
        assert!(!h.had_separator);
        let p = prepare(&h, &policy(), &[]).unwrap();
        let text = String::from_utf8(p.header).unwrap();
        assert!(text.starts_with("From: me@x.org\nDate: "));
        assert!(text.ends_with("\n\n"), "{text:?}");
    }

    #[test]
    fn headers_without_body_or_final_newline() {
        let h = head(b"Subject: x");
        assert_eq!(h.fields.len(), 1);
        assert_eq!(h.consumed, 10);
        let p = prepare(&h, &policy(), &[]).unwrap();
        assert!(
            String::from_utf8(p.header)
                .unwrap()
                .ends_with("Subject: x\n\n")
        );
    }

    #[test]
    fn mbox_from_line_is_dropped() {
        let h = head(b"From me@x.org Mon Nov 23 12:00:00 2026\nSubject: x\n\nb\n");
        assert!(h.dropped_mbox_from);
        assert_eq!(h.fields[0].name, "Subject");
    }

    #[test]
    fn needs_more_input_until_separator() {
        assert_eq!(split_head(b"Subject: x\nTo: y", false), Ok(None));
        assert_eq!(split_head(b"Subject: x\n", false), Ok(None));
        assert!(split_head(b"Subject: x\n\n", false).unwrap().is_some());
    }

    #[test]
    fn t_collects_and_bcc_is_removed() {
        let h =
            head(b"To: A <a@x.org>\nCc: b@x.org\nBcc: secret@x.org\n  , s2@x.org\nSubject: s\n\n");
        let p = prepare(&h, &policy(), &[]).unwrap();
        assert_eq!(
            p.recipients,
            ["a@x.org", "b@x.org", "secret@x.org", "s2@x.org"]
        );
        let text = String::from_utf8(p.header).unwrap();
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("s2@"), "{text}");
        assert!(text.contains("Subject: s\n"));
    }

    #[test]
    fn resent_block_wins_and_resent_bcc_removed() {
        let h = head(
            b"Resent-From: r@x.org\nResent-To: new@x.org\nResent-Bcc: hidden@x.org\nTo: old@x.org\n\n",
        );
        let p = prepare(&h, &policy(), &[]).unwrap();
        assert_eq!(p.recipients, ["new@x.org", "hidden@x.org"]);
        assert!(!String::from_utf8(p.header).unwrap().contains("hidden"));
        assert_eq!(from_address(&h).as_deref(), Some("r@x.org"));
    }

    #[test]
    fn existing_headers_are_kept() {
        let h = head(b"From: Other <o@x.org>\nDate: then\nMessage-ID: <m@x>\n\n");
        let p = prepare(&h, &policy(), &[]).unwrap();
        let text = String::from_utf8(p.header).unwrap();
        assert_eq!(
            text,
            "From: Other <o@x.org>\nDate: then\nMessage-ID: <m@x>\n\n"
        );
        assert_eq!(from_address(&h).as_deref(), Some("o@x.org"));
    }

    #[test]
    fn full_name_is_quoted_or_encoded() {
        let mut pol = policy();
        pol.from_full_name = Some("Cron Daemon".into());
        let p = prepare(&head(b"\n"), &pol, &[]).unwrap();
        assert!(
            String::from_utf8(p.header)
                .unwrap()
                .starts_with("From: Cron Daemon <me@x.org>\n")
        );
        pol.from_full_name = Some("Doe, J.".into());
        let p = prepare(&head(b"\n"), &pol, &[]).unwrap();
        assert!(
            String::from_utf8(p.header)
                .unwrap()
                .starts_with("From: \"Doe, J.\" <me@x.org>\n")
        );
        pol.from_full_name = Some("Jörg".into());
        let p = prepare(&head(b"\n"), &pol, &[]).unwrap();
        assert!(
            String::from_utf8(p.header)
                .unwrap()
                .starts_with("From: =?UTF-8?B?")
        );
    }

    #[test]
    fn values_with_controls_are_refused_not_written() {
        type Change = fn(&mut HeaderPolicy);
        let cases: [(&str, Change); 4] = [
            ("the full name", |p| {
                p.from_full_name = Some("Eve\r\nBcc: x@y".into())
            }),
            ("the From address", |p| {
                p.from_address = Some("e@x\nBcc: x@y".into())
            }),
            ("the Message-ID", |p| {
                p.message_id = "<a@b>\rBcc: x@y".into()
            }),
            ("the Date", |p| p.date = "now\u{0}".into()),
        ];
        for (what, change) in cases {
            let mut pol = policy();
            change(&mut pol);
            let err = prepare(&head(b"\n"), &pol, &[]).unwrap_err();
            assert!(
                matches!(err, HeaderError::Control { what: w, .. } if w == what),
                "{err}"
            );
        }
        let mut pol = policy();
        pol.set_to = SetTo::On;
        let err = prepare(&head(b"\n"), &pol, &["a@b\r\nBcc: x@y".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a recipient address contains the control character U+000D"
        );
    }

    #[test]
    fn set_to_undisclosed_replaces_recipients_headers() {
        let mut pol = policy();
        pol.set_to = SetTo::Undisclosed;
        let p = prepare(&head(b"To: a@x\nCc: b@x\n\n"), &pol, &[]).unwrap();
        let text = String::from_utf8(p.header).unwrap();
        assert!(text.contains("To: undisclosed-recipients:;\n"));
        assert!(!text.contains("a@x"));
    }

    #[test]
    fn chunked_discovery_matches_whole() {
        for msg in [
            &b"From x Mon\r\nTo: a@b\r\n c@d\r\nSubject: s\r\n\r\nbody\r\n"[..],
            b"From x Mon\rTo: a@b\r c@d\rBcc: s\r\r\nbody\r",
            b"Subject: x\rBcc: y\r\n\rbody",
            b"A: 1\n\r",
        ] {
            let whole = split_head(msg, true).unwrap().unwrap();
            for cut in 0..msg.len() {
                if let Some(h) = split_head(&msg[..cut], false).unwrap() {
                    assert_eq!(h, whole, "{msg:?} cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn t_refuses_a_recipient_header_that_is_no_address() {
        let h = head(b"To: John Doe\nSubject: s\n\n");
        let err = prepare(&h, &policy(), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the To header: \"John Doe\" is not an address: words separated by spaces (write a \
             name as Name <user@domain>)"
        );
        // Without -t the header is not read for recipients, and is sent as it is.
        let mut pol = policy();
        pol.read_recipients = false;
        assert!(prepare(&h, &pol, &[]).is_ok());
    }

    #[test]
    fn lone_cr_ends_a_header_line() {
        let h = head(b"Subject: x\rBcc: secret@x.org\r\nTo: a@x.org\n\nbody\n");
        let names: Vec<&str> = h.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Subject", "Bcc", "To"]);
        let p = prepare(&h, &policy(), &[]).unwrap();
        assert_eq!(p.recipients, ["secret@x.org", "a@x.org"]);
        assert!(!String::from_utf8_lossy(&p.header).contains("secret"));
    }

    /// The header lines a receiver reads in the DATA rsend sends, grouped into fields (a line
    /// starting with white space continues the previous one), each line ending in CRLF.
    fn wire_fields(message: &[u8], chunk_sizes: &mut impl FnMut(usize) -> usize) -> Vec<Vec<u8>> {
        use crate::proto::dotstuff::{DotStuffer, DotUnstuffer};
        let mut stuffer = DotStuffer::new();
        let mut wire = Vec::new();
        let mut rest = message;
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(chunk_sizes(rest.len()));
            stuffer.encode(chunk, &mut wire);
            rest = after;
        }
        stuffer.finish(&mut wire);
        let mut text = Vec::new();
        assert!(DotUnstuffer::new().decode(&wire, &mut text).done);
        let mut fields: Vec<Vec<u8>> = Vec::new();
        for line in text.split_inclusive(|&b| b == b'\n') {
            if line == b"\r\n" {
                break;
            }
            match fields.last_mut() {
                Some(last) if line[0] == b' ' || line[0] == b'\t' => last.extend_from_slice(line),
                _ => fields.push(line.to_vec()),
            }
        }
        fields
    }

    /// A field as the shared line rule splits it, each line ending in CRLF.
    fn canonical(raw: &[u8]) -> Vec<u8> {
        crate::message::line::lines(raw)
            .flat_map(|l| [l.text, b"\r\n"].concat())
            .collect()
    }

    /// -t and Bcc removal see exactly the header lines that go on the wire: for crafted messages
    /// mixing CRLF, LF and lone CR, sent in random chunks (so a CR lands on chunk boundaries),
    /// the fields on the wire are the fields the header pass kept, and none of them is a Bcc.
    #[test]
    fn header_pass_sees_the_wire_lines() {
        let pieces: &[&[u8]] = &[
            b"\r",
            b"\n",
            b"\r\n",
            b"Bcc: b@x.org",
            b"bcc:c@x.org",
            b"To: t@x.org",
            b"Cc:u@x.org",
            b"Subject: s",
            b" ",
            b"\t",
            b"x",
            b":",
            b".",
            b"From: f@x.org",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut pol = policy();
        pol.set_from = SetFrom::Off;
        pol.set_date = false;
        pol.set_msgid = false;
        let mut refused = 0;
        for _ in 0..4000 {
            let count = next(14);
            let input: Vec<u8> = (0..count)
                .flat_map(|_| pieces[next(pieces.len())])
                .copied()
                .collect();
            let h = head(&input);
            let p = match prepare(&h, &pol, &[]) {
                Ok(p) => p,
                // A recipient header that is no address list: nothing is sent at all.
                Err(HeaderError::Recipient { .. }) => {
                    refused += 1;
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            let kept: Vec<Vec<u8>> = h
                .fields
                .iter()
                .filter(|f| !f.is("Bcc"))
                .map(|f| canonical(&f.raw))
                .collect();
            let mut message = p.header.clone();
            message.extend_from_slice(&input[h.consumed..]);
            let on_wire = wire_fields(&message, &mut |left| 1 + next(left));
            assert_eq!(on_wire, kept, "{:?}", String::from_utf8_lossy(&input));
            // The header pass and the wire agree on the recipients -t reads.
            let mut wire_rcpts = Vec::new();
            for f in &on_wire {
                let text = String::from_utf8_lossy(f);
                let (name, value) = text.split_once(':').unwrap_or_default();
                assert!(
                    !name.eq_ignore_ascii_case("bcc"),
                    "Bcc on the wire: {text:?}"
                );
                if name.eq_ignore_ascii_case("to") || name.eq_ignore_ascii_case("cc") {
                    wire_rcpts.extend(parse_address_list(value));
                }
            }
            for r in &wire_rcpts {
                assert!(
                    p.recipients.contains(r),
                    "{r} on the wire but not a recipient: {input:?}"
                );
            }
        }
        assert!(
            refused < 1000,
            "{refused} of 4000 inputs refused: the test checks too little"
        );
    }
}
