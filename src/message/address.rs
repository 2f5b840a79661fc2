//! RFC 5322 address-list parsing (section 3.4) as far as both jobs need it: the addr-specs in
//! To/Cc/Bcc/From fields (rsend's `-t`, rfetch's envelope sender and multidrop recipients),
//! through display names, quoted strings, nested comments, angle addresses, source routes and
//! groups. [`parse_address_list`] is tolerant (garbage yields fewer
//! addresses, never a panic); [`parse_recipient_list`] refuses what is not an address.

/// One mailbox of an address list as the parser saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mailbox {
    /// The addr-spec: the text in angle brackets, or else the mailbox's text without the white
    /// space and comments between its words.
    addr: String,
    /// The mailbox had no angle brackets and was several words separated by white space
    /// (`not an address`, `John Doe`): no addr-spec, whatever running the words together gives.
    words: bool,
    /// A quoted string, comment or angle address in it was not closed.
    unclosed: bool,
}

/// Splits an address-list field body into mailboxes (folding allowed: CR/LF are white space).
fn mailboxes(body: &str) -> Vec<Mailbox> {
    let mut out = Vec::new();
    // Text of the current mailbox outside <...>, without white space outside quoted strings.
    let mut current = String::new();
    let mut space_pending = false;
    let mut words = false;
    let mut unclosed = false;
    let mut angle: Option<String> = None; // contents of <...> when seen
    let mut in_angle = false;
    let mut chars = body.chars().peekable();
    // Appends `text` to the current mailbox; white space between two words (not around '@' or
    // '.', which obsolete syntax allows) means the mailbox is words, not an address.
    let push = |current: &mut String, space_pending: &mut bool, words: &mut bool, text: &str| {
        if *space_pending && !current.ends_with(['@', '.']) && !text.starts_with(['@', '.']) {
            *words = true;
        }
        *space_pending = false;
        current.push_str(text);
    };
    let flush = |current: &mut String,
                 space_pending: &mut bool,
                 words: &mut bool,
                 unclosed: &mut bool,
                 angle: &mut Option<String>,
                 out: &mut Vec<Mailbox>| {
        let mailbox = match angle.take() {
            Some(a) => Mailbox {
                addr: strip_route(a.trim()),
                words: false,
                unclosed: *unclosed,
            },
            None => Mailbox {
                addr: std::mem::take(current),
                words: *words,
                unclosed: *unclosed,
            },
        };
        if !mailbox.addr.is_empty() && mailbox.addr != "<>" {
            out.push(mailbox);
        }
        current.clear();
        *space_pending = false;
        *words = false;
        *unclosed = false;
    };
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                unclosed |= !skip_comment(&mut chars);
                space_pending |= !in_angle && !current.is_empty();
            }
            '"' => {
                // A quoted string: part of a display name, or of a local part.
                let mut q = String::from('"');
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                q.push('\\');
                                q.push(n);
                            }
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\r' | '\n' => {}
                        _ => q.push(c),
                    }
                }
                unclosed |= !closed;
                q.push('"');
                if in_angle {
                    angle.get_or_insert_with(String::new).push_str(&q);
                } else {
                    push(&mut current, &mut space_pending, &mut words, &q);
                }
            }
            '<' if !in_angle => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' if in_angle => in_angle = false,
            // A ':' in a domain literal ("[IPv6:...]") belongs to it.
            ':' if !in_angle && !current.contains('[') => {
                // "group-name:" — what came before is the group's display name.
                current.clear();
                space_pending = false;
                words = false;
            }
            ',' | ';' if !in_angle => flush(
                &mut current,
                &mut space_pending,
                &mut words,
                &mut unclosed,
                &mut angle,
                &mut out,
            ),
            c if c.is_whitespace() => {
                space_pending |= !in_angle && !current.is_empty();
            }
            _ => {
                if in_angle {
                    angle.get_or_insert_with(String::new).push(c);
                } else {
                    let mut buf = [0u8; 4];
                    push(
                        &mut current,
                        &mut space_pending,
                        &mut words,
                        c.encode_utf8(&mut buf),
                    );
                }
            }
        }
    }
    unclosed |= in_angle;
    flush(
        &mut current,
        &mut space_pending,
        &mut words,
        &mut unclosed,
        &mut angle,
        &mut out,
    );
    // A bare quoted string with no @ (a display name without an address) is not an address.
    out.retain(|m| !m.addr.starts_with('"') || m.addr.contains('@'));
    out
}

/// Returns the addr-specs in an address-list field body (folding allowed: CR/LF are treated as
/// white space). Tolerant, for reading a sender out of a message: a mailbox of several words
/// comes back run together, garbage yields fewer addresses, nothing panics.
pub fn parse_address_list(body: &str) -> Vec<String> {
    mailboxes(body).into_iter().map(|m| m.addr).collect()
}

/// Why a recipient is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address:?} is not an address: {reason}")]
pub struct AddressError {
    /// The offending mailbox as parsed.
    pub address: String,
    pub reason: &'static str,
}

/// Returns the addr-specs of an address list given as recipients (a command-line argument, or a
/// To/Cc/Bcc body with -t), refusing the whole list when one mailbox is not an address (see
/// [`check_addr_spec`]): sending `not an address` as `notanaddress@localhost` is never what the
/// caller meant. Display names, groups, comments and lists are read as by
/// [`parse_address_list`].
pub fn parse_recipient_list(body: &str) -> Result<Vec<String>, AddressError> {
    let mut out = Vec::new();
    for m in mailboxes(body) {
        if m.unclosed {
            return Err(AddressError {
                address: body.trim().to_string(),
                reason: "a quote, comment or <...> is not closed",
            });
        }
        if m.words {
            return Err(AddressError {
                address: body.trim().to_string(),
                reason: "words separated by spaces (write a name as Name <user@domain>)",
            });
        }
        check_addr_spec(&m.addr).map_err(|reason| AddressError {
            address: m.addr.clone(),
            reason,
        })?;
        out.push(m.addr);
    }
    Ok(out)
}

/// Checks one addr-spec (RFC 5322 section 3.4.1, with UTF-8 allowed as RFC 6532 does): a
/// dot-atom or quoted-string local part, then optionally `@` and a domain of non-empty labels or
/// a `[literal]`. A local part alone is a local name (`root`), which rsend qualifies with a
/// domain as msmtp users expect. Returns why the text is not an address.
pub fn check_addr_spec(addr: &str) -> Result<(), &'static str> {
    if addr.chars().any(char::is_control) {
        return Err("it contains a control character");
    }
    let (local, domain) = split_addr_spec(addr)?;
    if local.starts_with('"') {
        // The quoted string was read whole by split_addr_spec; any content is allowed.
    } else if !is_dot_atom(local) {
        return Err(if local.is_empty() {
            "nothing before the @"
        } else {
            "the part before the @ holds a character that needs quoting, or misplaced dots"
        });
    }
    let Some(domain) = domain else {
        return Ok(());
    };
    if let Some(literal) = domain.strip_prefix('[') {
        let Some(inner) = literal.strip_suffix(']') else {
            return Err("the domain literal has no closing ]");
        };
        if inner.is_empty()
            || inner.contains(['[', ']', '\\'])
            || inner.contains(char::is_whitespace)
        {
            return Err("the domain literal is malformed");
        }
        return Ok(());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    };
    if domain.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("the domain after the @ is empty or malformed")
    }
}

/// Splits an addr-spec into its local part and, when there is an `@`, its domain.
fn split_addr_spec(addr: &str) -> Result<(&str, Option<&str>), &'static str> {
    if addr.starts_with('"') {
        let mut escaped = false;
        for (i, c) in addr.char_indices().skip(1) {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    let (local, rest) = addr.split_at(i + 1);
                    return match rest.strip_prefix('@') {
                        Some(domain) => Ok((local, Some(domain))),
                        None if rest.is_empty() => Ok((local, None)),
                        None => Err("text after the quoted part is not @domain"),
                    };
                }
                _ => {}
            }
        }
        return Err("the quoted part has no closing quote");
    }
    Ok(match addr.split_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (addr, None),
    })
}

/// RFC 5322 dot-atom: atext runs separated by single dots (non-ASCII allowed, RFC 6532).
fn is_dot_atom(text: &str) -> bool {
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    !text.is_empty()
        && text
            .split('.')
            .all(|run| !run.is_empty() && run.chars().all(atext))
}

/// Skips a comment after its "("; returns whether it was closed.
fn skip_comment(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> bool {
    let mut depth = 1usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// `<@relay1,@relay2:user@host>` → `user@host` (obsolete source routes).
fn strip_route(addr: &str) -> String {
    if addr.starts_with('@')
        && let Some((_, rest)) = addr.split_once(':')
    {
        return rest.to_string();
    }
    addr.to_string()
}

/// The domain part of an address, if any.
pub fn domain_of(addr: &str) -> Option<&str> {
    addr.rsplit_once('@').map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &[&str])] = &[
            ("a@b.c", &["a@b.c"]),
            ("a@b.c, d@e.f", &["a@b.c", "d@e.f"]),
            ("Name <a@b.c>", &["a@b.c"]),
            ("\"Doe, John\" <j@x.org>, k@y.org", &["j@x.org", "k@y.org"]),
            ("a@b.c (a comment, with (nested) parens)", &["a@b.c"]),
            (
                "friends: g1@x.org, Two <g2@x.org>;, z@y.org",
                &["g1@x.org", "g2@x.org", "z@y.org"],
            ),
            ("undisclosed-recipients:;", &[]),
            ("<@r1,@r2:user@host>", &["user@host"]),
            ("root", &["root"]),
            ("\"odd\\\"quote\"@x.org", &["\"odd\\\"quote\"@x.org"]),
            ("a@b.c,\r\n d@e.f", &["a@b.c", "d@e.f"]),
            ("Name\r\n <a@b.c>", &["a@b.c"]),
            ("", &[]),
            ("<>", &[]),
            (",,,", &[]),
            ("<unterminated@x", &["unterminated@x"]),
            ("(unterminated comment a@b.c", &[]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_address_list(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn quoted_local_parts_keep_their_spaces() {
        assert_eq!(
            parse_address_list("\"john doe\"@x.org"),
            ["\"john doe\"@x.org"]
        );
    }

    #[test]
    fn recipients_must_be_addresses() {
        let good: &[(&str, &[&str])] = &[
            ("a@b.c", &["a@b.c"]),
            ("root", &["root"]),
            ("Name <a@b.c>, d@e.f", &["a@b.c", "d@e.f"]),
            ("team: g1@x.org, Two <g2@x.org>;", &["g1@x.org", "g2@x.org"]),
            ("undisclosed-recipients:;", &[]),
            ("a@b.c (comment)", &["a@b.c"]),
            ("a @ b.c", &["a@b.c"]),
            ("\"odd name\"@x.org", &["\"odd name\"@x.org"]),
            (
                "j\u{f6}rg@b\u{fc}cher.example",
                &["j\u{f6}rg@b\u{fc}cher.example"],
            ),
            ("x@[192.0.2.1]", &["x@[192.0.2.1]"]),
            ("x@[IPv6:2001:db8::1]", &["x@[IPv6:2001:db8::1]"]),
            ("<@r1,@r2:user@host>", &["user@host"]),
            (
                "first.last+tag@sub.example.org",
                &["first.last+tag@sub.example.org"],
            ),
        ];
        for (input, want) in good {
            let got = parse_recipient_list(input).map_err(|e| e.to_string());
            let want: Vec<String> = want.iter().map(|w| w.to_string()).collect();
            assert_eq!(got, Ok(want), "{input:?}");
        }
        let bad = [
            "not an address",
            "John Doe",
            "a@b@c",
            "a@",
            "@x.org",
            ".a@x.org",
            "a..b@x.org",
            "a.@x.org",
            "x@[1.2.3.4",
            "x@a..b",
            "x@a.b.",
            "a(b)c@x.org",
            "ok@x.org, two words",
            "\"open@x.org",
            "\"q\"x@y",
            "a\u{7}b@x.org",
            "a@b\u{1b}c",
        ];
        for input in bad {
            assert!(parse_recipient_list(input).is_err(), "{input:?} accepted");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"a@<>\"\\(),:; \r\n.xy";
        for _ in 0..2000 {
            let mut s = String::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push(alphabet[(seed % alphabet.len() as u64) as usize] as char);
            }
            let _ = parse_address_list(&s);
            let _ = parse_recipient_list(&s);
        }
    }
}
