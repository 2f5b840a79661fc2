//! Envelope-from → account matching (msmtp's `from` rules): case-insensitive comparison,
//! fnmatch-style globs (`*`, `?`, `[...]`), and subaddresses (`user+detail@dom` also matches
//! `user@dom`), with globs working on subaddresses too (msmtp 1.8.23 got that wrong).

/// Whether `pattern` is a glob rather than a plain address.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Whether an account's `from` (after `%U`-style substitution) matches an envelope-from.
pub fn from_matches(pattern: &str, address: &str) -> bool {
    let one = |addr: &str| {
        if is_glob(pattern) {
            glob_match(pattern, addr)
        } else {
            pattern.eq_ignore_ascii_case(addr)
        }
    };
    one(address) || strip_subaddress(address).is_some_and(|a| one(&a))
}

/// `user+detail@dom` → `user@dom`; `None` when there is no `+detail`.
pub fn strip_subaddress(address: &str) -> Option<String> {
    let at = address.rfind('@')?;
    let (local, domain) = address.split_at(at);
    let plus = local.find('+')?;
    let base = local.get(..plus)?;
    if base.is_empty() {
        return None;
    }
    Some(format!("{base}{domain}"))
}

/// fnmatch(3) without flags, except that letters compare ASCII case-insensitively (mail
/// addresses are matched case-insensitively everywhere else). `\` escapes the next character;
/// `[!...]` or `[^...]` negates a class; ranges `a-z` work.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with single-star backtracking: linear in practice, no recursion.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match match_class(&p, pi, t[ti]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                // An unterminated class is a literal `[`.
                None => eq('[', t[ti]).then_some(1),
            },
            Some('\\') => match p.get(pi + 1) {
                Some(c) if eq(*c, t[ti]) => Some(2),
                Some(_) => None,
                None => eq('\\', t[ti]).then_some(1),
            },
            Some(c) => eq(*c, t[ti]).then_some(1),
            None => None,
        };
        match step {
            Some(n) if n > 0 => {
                pi += n;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

fn eq(a: char, b: char) -> bool {
    a.eq_ignore_ascii_case(&b)
}

/// Matches `c` against the class starting at `p[start] == '['`. Returns (matched, pattern
/// length consumed), or `None` when the class is unterminated (then `[` is literal).
fn match_class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            break;
        }
        first = false;
        let lo = if ch == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            ch
        };
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|h| *h != ']') {
            let hi = *p.get(i + 2)?;
            let lc = c.to_ascii_lowercase();
            let uc = c.to_ascii_uppercase();
            if (lo <= lc && lc <= hi) || (lo <= uc && uc <= hi) {
                matched = true;
            }
            i += 3;
        } else {
            if eq(lo, c) {
                matched = true;
            }
            i += 1;
        }
    }
    Some((matched != negate, i + 1 - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbb", false),
            ("?", "a", true),
            ("?", "", false),
            ("*@example.org", "bob@example.org", true),
            ("*@example.org", "bob@EXAMPLE.org", true),
            ("*@example.org", "bob@example.org.evil", false),
            ("[ab]*", "bx", true),
            ("[ab]*", "cx", false),
            ("[!ab]*", "cx", true),
            ("[a-c]x", "Bx", true),
            ("[a-c]x", "dx", false),
            ("[]]", "]", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("[abc", "[abc", true),
            ("*a*b*c*", "xxaxxbxxcxx", true),
            ("*a*b*c*", "xxaxxcxxbxx", false),
            ("a**", "a", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), *want, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn from_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("alice@example.org", "Alice@Example.ORG", true),
            ("alice@example.org", "alice+lists@example.org", true),
            ("alice@example.org", "alice+@example.org", true),
            ("alice@example.org", "alicex@example.org", false),
            ("alice+x@example.org", "alice@example.org", false),
            ("alice+x@example.org", "alice+x@example.org", true),
            // msmtp 1.8.23 fails this one (fixed in 1.8.25).
            ("*@work.example", "bob+tag@work.example", true),
            ("bob@*.example", "bob+tag@mx.work.example", true),
            ("*@work.example", "bob@home.example", false),
            ("+x@example.org", "+x@example.org", true),
        ];
        for (p, a, want) in cases {
            assert_eq!(from_matches(p, a), *want, "{p:?} vs {a:?}");
        }
        assert_eq!(strip_subaddress("+x@y"), None);
        assert_eq!(strip_subaddress("a+b+c@y").as_deref(), Some("a@y"));
    }

    #[test]
    fn glob_never_panics() {
        for p in ["[", "[!", "[a-", "[\\", "\\", "[a-]", "[--]", "*[", "?\\"] {
            for t in ["", "a", "-", "[", "\\", "aé"] {
                let _ = glob_match(p, t);
            }
        }
    }
}
