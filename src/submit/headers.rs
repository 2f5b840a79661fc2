//! The header pass of a message handed to rsend: splitting the header block from the body
//! (RFC 5322 section 2.2), `-t` recipient extraction (To/Cc/Bcc, or the first Resent- block),
//! Bcc/Resent-Bcc removal, and the missing From/Date/Message-ID/To headers msmtp adds.

use super::address::parse_address_list;

/// Upper bound on the header block we keep in memory; the body is streamed.
pub const MAX_HEADER_BYTES: usize = 4 * 1024 * 1024;

/// One header field with its continuation lines, as it appeared (line endings kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub raw: Vec<u8>,
}

impl Field {
    /// The unfolded value after the colon.
    pub fn value(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        let after = text.split_once(':').map(|(_, v)| v).unwrap_or("");
        after.replace(['\r', '\n'], " ").trim().to_string()
    }

    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// The head of the message as read from the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub fields: Vec<Field>,
    /// How many input bytes the header block (and the separating empty line, when present) used.
    pub consumed: usize,
    /// Whether the input had an empty line between header and body. When false, the text after
    /// the fields is body text (`echo hello | rsend x@y`) and a separator must be inserted.
    pub had_separator: bool,
    /// A leading mbox "From " line was dropped.
    pub dropped_mbox_from: bool,
}

/// Why the header block could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the message header is larger than {MAX_HEADER_BYTES} bytes")]
    TooLarge,
}

/// Whether `line` (without its line ending) starts a header field: a name of printable ASCII
/// other than ':' and space, then ':'.
fn field_name(line: &[u8]) -> Option<&str> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// Splits the header block off `input`, which holds the start of the message; `complete` says
/// whether `input` is the whole message. Returns `Ok(None)` when more input is needed to find
/// the end of the header block.
pub fn split_head(input: &[u8], complete: bool) -> Result<Option<Head>, HeaderError> {
    let mut pos = 0;
    let mut fields: Vec<Field> = Vec::new();
    let mut dropped_mbox_from = false;
    if input.starts_with(b"From ") {
        match input.iter().position(|&b| b == b'\n') {
            Some(nl) => {
                pos = nl + 1;
                dropped_mbox_from = true;
            }
            None if !complete => return Ok(None),
            None => {}
        }
    }
    loop {
        if pos >= input.len() && !complete {
            return Ok(None);
        }
        let rest = &input[pos..];
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => (&rest[..nl], pos + nl + 1),
            None if !complete => {
                if input.len() > MAX_HEADER_BYTES {
                    return Err(HeaderError::TooLarge);
                }
                return Ok(None);
            }
            None => (rest, input.len()),
        };
        if pos >= input.len() {
            // End of input inside (or right after) the header block: no body.
            return Ok(Some(Head {
                fields,
                consumed: input.len(),
                had_separator: false,
                dropped_mbox_from,
            }));
        }
        let bare = line.strip_suffix(b"\r").unwrap_or(line);
        if bare.is_empty() {
            return Ok(Some(Head {
                fields,
                consumed: next,
                had_separator: true,
                dropped_mbox_from,
            }));
        }
        if (bare[0] == b' ' || bare[0] == b'\t') && !fields.is_empty() {
            if let Some(last) = fields.last_mut() {
                last.raw.extend_from_slice(&rest[..next - pos]);
            }
        } else if let Some(name) = field_name(bare) {
            fields.push(Field {
                name: name.to_string(),
                raw: rest[..next - pos].to_vec(),
            });
        } else {
            // Not a header line: the body starts here without a separator.
            return Ok(Some(Head {
                fields,
                consumed: pos,
                had_separator: false,
                dropped_mbox_from,
            }));
        }
        if next > MAX_HEADER_BYTES {
            return Err(HeaderError::TooLarge);
        }
        pos = next;
    }
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

/// Runs the header pass.
pub fn prepare(head: &Head, policy: &HeaderPolicy, envelope_rcpts: &[String]) -> Prepared {
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
            recipients.extend(parse_address_list(&f.value()));
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
    Prepared { header, recipients }
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
        let p = prepare(&h, &policy(), &[]);
        let text = String::from_utf8(p.header).unwrap();
        assert!(text.starts_with("From: me@x.org\nDate: "));
        assert!(text.ends_with("\n\n"), "{text:?}");
    }

    #[test]
    fn headers_without_body_or_final_newline() {
        let h = head(b"Subject: x");
        assert_eq!(h.fields.len(), 1);
        assert_eq!(h.consumed, 10);
        let p = prepare(&h, &policy(), &[]);
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
        let p = prepare(&h, &policy(), &[]);
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
        let p = prepare(&h, &policy(), &[]);
        assert_eq!(p.recipients, ["new@x.org", "hidden@x.org"]);
        assert!(!String::from_utf8(p.header).unwrap().contains("hidden"));
        assert_eq!(from_address(&h).as_deref(), Some("r@x.org"));
    }

    #[test]
    fn existing_headers_are_kept() {
        let h = head(b"From: Other <o@x.org>\nDate: then\nMessage-ID: <m@x>\n\n");
        let p = prepare(&h, &policy(), &[]);
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
        let p = prepare(&head(b"\n"), &pol, &[]);
        assert!(
            String::from_utf8(p.header)
                .unwrap()
                .starts_with("From: Cron Daemon <me@x.org>\n")
        );
        pol.from_full_name = Some("Doe, J.".into());
        let p = prepare(&head(b"\n"), &pol, &[]);
        assert!(
            String::from_utf8(p.header)
                .unwrap()
                .starts_with("From: \"Doe, J.\" <me@x.org>\n")
        );
        pol.from_full_name = Some("Jörg".into());
        let p = prepare(&head(b"\n"), &pol, &[]);
        assert!(
            String::from_utf8(p.header)
                .unwrap()
                .starts_with("From: =?UTF-8?B?")
        );
    }

    #[test]
    fn set_to_undisclosed_replaces_recipients_headers() {
        let mut pol = policy();
        pol.set_to = SetTo::Undisclosed;
        let p = prepare(&head(b"To: a@x\nCc: b@x\n\n"), &pol, &[]);
        let text = String::from_utf8(p.header).unwrap();
        assert!(text.contains("To: undisclosed-recipients:;\n"));
        assert!(!text.contains("a@x"));
    }

    #[test]
    fn chunked_discovery_matches_whole() {
        let msg = b"From x Mon\r\nTo: a@b\r\n c@d\r\nSubject: s\r\n\r\nbody\r\n";
        let whole = split_head(msg, true).unwrap().unwrap();
        for cut in 0..msg.len() {
            if let Some(h) = split_head(&msg[..cut], false).unwrap() {
                assert_eq!(h, whole, "cut at {cut}");
            }
        }
    }
}
