//! A small `.netrc` reader (the ftp(1) format): `machine NAME login L password P`, `default`,
//! `account`, and `macdef` blocks (skipped up to the next blank line). Tokens are separated by
//! any whitespace; a token may be double-quoted with `\` escapes.

/// One `machine` (or `default`) entry.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// `None` for the `default` entry.
    pub machine: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("machine", &self.machine)
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Parses netrc text leniently: unknown tokens are skipped, as ftp(1) and curl do.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut tokens = Tokens { rest: text };
    while let Some(tok) = tokens.next() {
        match tok.as_str() {
            "machine" => {
                let name = tokens.next();
                entries.push(Entry {
                    machine: Some(name.unwrap_or_default()),
                    login: None,
                    password: None,
                });
            }
            "default" => entries.push(Entry {
                machine: None,
                login: None,
                password: None,
            }),
            "login" => {
                let v = tokens.next();
                if let Some(e) = entries.last_mut() {
                    e.login = v;
                }
            }
            "password" => {
                let v = tokens.next();
                if let Some(e) = entries.last_mut() {
                    e.password = v;
                }
            }
            "account" => {
                tokens.next();
            }
            "macdef" => {
                tokens.next();
                tokens.skip_macro();
            }
            _ => {}
        }
    }
    entries
}

/// The password for `host` (case-insensitive) and `login` (if given): the first matching
/// `machine` entry, else the `default` entry.
pub fn find_password<'a>(entries: &'a [Entry], host: &str, login: Option<&str>) -> Option<&'a str> {
    let login_ok = |e: &Entry| match (login, &e.login) {
        (Some(want), Some(have)) => want == have,
        (Some(_), None) => true,
        (None, _) => true,
    };
    entries
        .iter()
        .find(|e| {
            e.machine
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(host))
                && login_ok(e)
        })
        .or_else(|| entries.iter().find(|e| e.machine.is_none() && login_ok(e)))
        .and_then(|e| e.password.as_deref())
}

struct Tokens<'a> {
    rest: &'a str,
}

impl Tokens<'_> {
    fn next(&mut self) -> Option<String> {
        self.rest = self.rest.trim_start();
        if self.rest.is_empty() {
            return None;
        }
        if let Some(quoted) = self.rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    c => out.push(c),
                }
            }
            self.rest = quoted.get(end..).unwrap_or("");
            return Some(out);
        }
        let end = self
            .rest
            .find(char::is_whitespace)
            .unwrap_or(self.rest.len());
        let (tok, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(tok.to_owned())
    }

    /// A macro body runs to the first empty line.
    fn skip_macro(&mut self) {
        match self.rest.find("\n\n") {
            Some(i) => self.rest = self.rest.get(i + 2..).unwrap_or(""),
            None => self.rest = "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# not a comment in ftp(1), but harmless tokens
machine mail.example.org login alice password s3cret
machine mail.example.org login bob password bobpw
macdef init
cd /pub
bin

machine other.example
  login carol
  password \"with space\\\"q\"
default login anon password guest
";

    #[test]
    fn lookup_table() {
        let e = parse(SAMPLE);
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("mail.example.org", Some("alice"), Some("s3cret")),
            ("MAIL.example.org", Some("bob"), Some("bobpw")),
            ("mail.example.org", None, Some("s3cret")),
            ("other.example", Some("carol"), Some("with space\"q")),
            ("mail.example.org", Some("anon"), Some("guest")),
            ("unknown.example", Some("anon"), Some("guest")),
            ("unknown.example", Some("zed"), None),
        ];
        for (host, login, want) in cases {
            assert_eq!(find_password(&e, host, *login), *want, "{host} {login:?}");
        }
    }

    #[test]
    fn macdef_body_is_skipped() {
        let e = parse("macdef x\nmachine fake password no\n\nmachine real password yes\n");
        assert_eq!(find_password(&e, "fake", None), None);
        assert_eq!(find_password(&e, "real", None), Some("yes"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for t in [
            "",
            "machine",
            "password",
            "\"",
            "login \"x",
            "machine \"a\\",
        ] {
            let _ = parse(t);
        }
        assert_eq!(parse("password x").len(), 0);
    }

    #[test]
    fn debug_redacts_password() {
        let e = parse("machine h login u password topsecret");
        assert!(!format!("{e:?}").contains("topsecret"));
    }
}
