//! RFC 5322 address-list parsing (section 3.4) as far as a submitter needs it: the addr-specs in
//! To/Cc/Bcc/From fields, through display names, quoted strings, nested comments, angle
//! addresses, source routes and groups. Tolerant: garbage yields fewer addresses, never a panic.

/// Returns the addr-specs in an address-list field body (folding already allowed: CR/LF are
/// treated as white space).
pub fn parse_address_list(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new(); // text of the current mailbox outside <...>
    let mut angle: Option<String> = None; // contents of <...> when seen
    let mut in_angle = false;
    let mut chars = body.chars().peekable();
    let flush = |current: &mut String, angle: &mut Option<String>, out: &mut Vec<String>| {
        let addr = match angle.take() {
            Some(a) => strip_route(a.trim()),
            None => current.split_whitespace().collect::<Vec<_>>().join(""),
        };
        if !addr.is_empty() && addr != "<>" {
            out.push(addr);
        }
        current.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '(' => skip_comment(&mut chars),
            '"' => {
                // A quoted string: part of a display name, or of a local part inside <...>.
                let mut q = String::from('"');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                q.push('\\');
                                q.push(n);
                            }
                        }
                        '"' => break,
                        '\r' | '\n' => {}
                        _ => q.push(c),
                    }
                }
                q.push('"');
                if in_angle {
                    angle.get_or_insert_with(String::new).push_str(&q);
                } else {
                    current.push_str(&q);
                    current.push(' ');
                }
            }
            '<' if !in_angle => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' if in_angle => in_angle = false,
            ':' if !in_angle => {
                // "group-name:" — what came before is the group's display name.
                current.clear();
            }
            ',' | ';' if !in_angle => flush(&mut current, &mut angle, &mut out),
            '\r' | '\n' => {
                if in_angle {
                } else {
                    current.push(' ');
                }
            }
            _ => {
                if in_angle {
                    if !c.is_whitespace() {
                        angle.get_or_insert_with(String::new).push(c);
                    }
                } else {
                    current.push(c);
                }
            }
        }
    }
    flush(&mut current, &mut angle, &mut out);
    // A bare "name" token sequence with spaces and no @ and no angle (a display name without an
    // address, e.g. "undisclosed-recipients") is not an address.
    out.retain(|a| !a.starts_with('"') || a.contains('@'));
    out
}

fn skip_comment(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
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
                    return;
                }
            }
            _ => {}
        }
    }
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
        }
    }
}
