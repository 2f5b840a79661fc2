//! Reading IMAP response text: words, numbers, literal markers, capability lists, response
//! conditions with their codes, and FETCH item lists (UID, RFC822.SIZE, FLAGS, the body item).
//! Tolerant where servers differ, bounded everywhere.

use super::*;

pub(super) fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

pub(super) fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

pub(super) fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

pub(super) fn parse_u32(w: &[u8]) -> Result<u32, ImapError> {
    parse_u64(w).and_then(|n| {
        u32::try_from(n).map_err(|_| ImapError::Malformed(format!("number {n} out of range")))
    })
}

pub(super) fn parse_u64(w: &[u8]) -> Result<u64, ImapError> {
    if w.is_empty() || w.len() > 20 || !w.iter().all(u8::is_ascii_digit) {
        return Err(ImapError::Malformed(format!(
            "not a number: {:?}",
            truncate(&String::from_utf8_lossy(w))
        )));
    }
    String::from_utf8_lossy(w)
        .parse()
        .map_err(|_| ImapError::Malformed("number out of range".into()))
}

/// `{n}` or `{n+}` at the end of a line: the literal size and where the `{` starts.
pub(super) fn literal_suffix(line: &[u8]) -> Result<Option<(u64, usize)>, ImapError> {
    if line.last() != Some(&b'}') {
        return Ok(None);
    }
    let Some(open) = line.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let inner = &line[open + 1..line.len() - 1];
    let digits = inner.strip_suffix(b"+").unwrap_or(inner);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None); // "}" ending ordinary text
    }
    if digits.len() > 19 {
        return Err(ImapError::Malformed("absurd literal size".into()));
    }
    Ok(Some((parse_u64(digits)?, open)))
}

/// Most capability names accepted in one announcement (AUTH= mechanisms included; real
/// servers send a few dozen).
pub const MAX_CAPABILITIES: usize = 512;

pub(super) fn parse_caps(s: &[u8]) -> Result<Vec<String>, ImapError> {
    let mut caps = Vec::new();
    for word in String::from_utf8_lossy(s).split_ascii_whitespace() {
        if caps.len() >= MAX_CAPABILITIES {
            return Err(ImapError::TooManyCapabilities(MAX_CAPABILITIES));
        }
        caps.push(word.to_ascii_uppercase());
    }
    Ok(caps)
}

/// `OK [CODE args] text` (also NO/BAD/BYE/PREAUTH).
pub(super) fn parse_cond(s: &[u8]) -> Result<(Status, Option<Code>, String), ImapError> {
    let (word, rest) = split_word(s);
    let status = match word.to_ascii_uppercase().as_slice() {
        b"OK" => Status::Ok,
        b"NO" => Status::No,
        b"BAD" => Status::Bad,
        b"BYE" => Status::Bye,
        b"PREAUTH" => Status::Preauth,
        _ => {
            return Err(ImapError::Malformed(format!(
                "expected OK/NO/BAD/BYE, got {:?}",
                truncate(&String::from_utf8_lossy(word))
            )));
        }
    };
    let mut code = None;
    let mut text = rest;
    if let Some(inner) = rest.strip_prefix(b"[")
        && let Some(close) = inner.iter().position(|&b| b == b']')
    {
        let (name, args) = split_word(&inner[..close]);
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        code = Some(match name.as_str() {
            "CAPABILITY" => Code::Capability(parse_caps(args)?),
            "UIDVALIDITY" => Code::UidValidity(parse_u32(args)?),
            "UIDNEXT" => Code::UidNext(parse_u32(args)?),
            "UNAVAILABLE" | "INUSE" | "LIMIT" | "SERVERBUG" => Code::Temporary(name),
            "AUTHENTICATIONFAILED" | "AUTHORIZATIONFAILED" | "EXPIRED" | "PRIVACYREQUIRED" => {
                Code::AuthFailed(name)
            }
            _ => Code::Other(name),
        });
        text = inner.get(close + 1..).unwrap_or_default();
    }
    let text = String::from_utf8_lossy(text).trim().to_string();
    Ok((status, code, text))
}

/// The sequence number when `text` is `* n FETCH ...`.
pub(super) fn fetch_seq(text: &[u8]) -> Option<u32> {
    let rest = text.strip_prefix(b"* ")?;
    let (n, after) = split_word(rest);
    let (what, _) = split_word(after);
    if !what.eq_ignore_ascii_case(b"FETCH") {
        return None;
    }
    parse_u32(n).ok()
}

/// The item list of `* n FETCH (...)`.
pub(super) fn fetch_items(text: &[u8]) -> &[u8] {
    let rest = text.strip_prefix(b"* ").unwrap_or(text);
    let (_, after) = split_word(rest);
    let (_, items) = split_word(after);
    strip_paren(items)
}

pub(super) fn strip_paren(s: &[u8]) -> &[u8] {
    s.strip_prefix(b"(").unwrap_or(s)
}

/// Whether the text before a literal ends with a body item name (`BODY[]`, `BODY[]<0>`,
/// `RFC822`, ...): the literal is then message content to stream.
pub(super) fn last_token_is_body(text: &[u8]) -> bool {
    let trimmed = text.trim_ascii_end();
    let start = trimmed
        .iter()
        .rposition(|&b| b == b' ' || b == b'(')
        .map_or(0, |i| i + 1);
    let token = trimmed[start..].to_ascii_uppercase();
    (token.starts_with(b"BODY[") && !token.starts_with(b"BODY[HEADER"))
        || token == b"RFC822"
        || token == b"RFC822.TEXT"
        || token == b"BINARY[]"
}

#[derive(Debug, PartialEq)]
pub(super) enum Tok {
    Open,
    Close,
    Atom(Vec<u8>),
}

/// A tolerant tokenizer for FETCH item lists: atoms (with `[...]` sections and `<n>` suffixes
/// kept whole), quoted strings (as atoms) and parentheses.
pub(super) fn tokens(s: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b' ' => i += 1,
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                out.push(Tok::Close);
                i += 1;
            }
            b'"' => {
                let mut v = Vec::new();
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' {
                        i += 1;
                    }
                    if let Some(&b) = s.get(i) {
                        v.push(b);
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Atom(v));
            }
            _ => {
                let start = i;
                let mut depth = 0u32;
                while i < s.len() {
                    let b = s[i];
                    if b == b'[' {
                        depth += 1;
                    } else if b == b']' {
                        depth = depth.saturating_sub(1);
                    } else if depth == 0 && matches!(b, b' ' | b'(' | b')') {
                        break;
                    }
                    i += 1;
                }
                out.push(Tok::Atom(s[start..i].to_vec()));
            }
        }
    }
    out
}

pub(super) fn parse_fetch_attrs(items: &[u8]) -> FetchAttrs {
    let toks = tokens(items);
    let mut attrs = FetchAttrs::default();
    let mut i = 0;
    while i < toks.len() {
        let Tok::Atom(name) = &toks[i] else {
            i += 1;
            continue;
        };
        let name = name.to_ascii_uppercase();
        i += 1;
        match (name.as_slice(), toks.get(i)) {
            (b"UID", Some(Tok::Atom(v))) => {
                attrs.uid = parse_u32(v).ok();
                i += 1;
            }
            (b"RFC822.SIZE", Some(Tok::Atom(v))) => {
                attrs.size = parse_u64(v).ok();
                i += 1;
            }
            (b"FLAGS", Some(Tok::Open)) => {
                let mut flags = Vec::new();
                i += 1;
                while let Some(Tok::Atom(f)) = toks.get(i) {
                    if flags.len() < 256 {
                        flags.push(String::from_utf8_lossy(f).into_owned());
                    }
                    i += 1;
                }
                i += 1; // the closing paren
                attrs.flags = Some(flags);
            }
            (_, Some(Tok::Open)) => {
                // Skip a parenthesised value.
                let mut depth = 0usize;
                while let Some(t) = toks.get(i) {
                    match t {
                        Tok::Open => depth += 1,
                        Tok::Close => depth = depth.saturating_sub(1),
                        Tok::Atom(_) => {}
                    }
                    i += 1;
                    if depth == 0 {
                        break;
                    }
                }
            }
            (_, Some(Tok::Atom(_))) => i += 1,
            _ => {}
        }
    }
    attrs
}
