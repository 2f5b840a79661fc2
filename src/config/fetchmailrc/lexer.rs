//! The fetchmailrc lexer: words (quoted or not, with fetchmail's escapes), `=`, and the line
//! each starts on; comments and punctuation (`,;:`) dropped.

use std::path::Path;

use super::FetchmailRcError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokKind {
    Word {
        text: String,
        quoted: bool,
    },
    /// `=` in a mapping (`'srv'='loc'`) or after a `set` name.
    Eq,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tok {
    pub(super) kind: TokKind,
    pub(super) line: u32,
}

pub(super) fn lex(input: &str, path: &Path) -> Result<Vec<Tok>, FetchmailRcError> {
    let err = |line: u32, message: String| FetchmailRcError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
    let bytes = input.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0usize;
    let mut line = 1u32;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b',' | b';' | b':' => i += 1,
            b'#' => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'\\' if bytes.get(i + 1) == Some(&b'\n') => {
                line += 1;
                i += 2;
            }
            b'=' => {
                toks.push(Tok {
                    kind: TokKind::Eq,
                    line,
                });
                i += 1;
            }
            b'"' | b'\'' => {
                let start_line = line;
                let start = i + 1;
                let mut j = start;
                loop {
                    match bytes.get(j) {
                        None => {
                            return Err(err(start_line, "unterminated quoted string".into()));
                        }
                        Some(&c) if c == b => break,
                        Some(&b'\n') => {
                            line += 1;
                            j += 1;
                        }
                        // An escaped character (`\"` included) never ends the string; `unescape`
                        // turns the pair into the character, as fetchmail's lexer does.
                        Some(&b'\\') => {
                            if bytes.get(j + 1) == Some(&b'\n') {
                                line += 1;
                            }
                            j += 2;
                        }
                        Some(_) => j += 1,
                    }
                }
                let raw = input.get(start..j).unwrap_or_default();
                let text = unescape(raw).map_err(|m| err(start_line, m))?;
                toks.push(Tok {
                    kind: TokKind::Word { text, quoted: true },
                    line: start_line,
                });
                i = j + 1;
            }
            _ => {
                let start = i;
                while bytes.get(i).is_some_and(|&c| {
                    !matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'=' | b';' | b':' | b',')
                }) {
                    i += 1;
                }
                let raw = input.get(start..i).unwrap_or_default();
                let text = unescape(raw).map_err(|m| err(line, m))?;
                toks.push(Tok {
                    kind: TokKind::Word {
                        text,
                        quoted: false,
                    },
                    line,
                });
            }
        }
    }
    Ok(toks)
}

/// fetchmail's `escapes()`: `\n \t \b \r \\`, `\xhh`, `\0oo` octal (the 0 counts as one of
/// three digits), `\nnn` decimal; `\` + newline joins lines; any other `\c` is `c`.
fn unescape(raw: &str) -> Result<String, String> {
    if !raw.contains('\\') {
        return Ok(raw.to_owned());
    }
    let b = raw.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(&e) = b.get(i + 1) else {
            out.push(b'\\');
            break;
        };
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'b' => out.push(8),
            b'r' => out.push(b'\r'),
            b'\n' => {}
            b'x' => {
                let mut v: u32 = 0;
                let mut n = 0;
                while n < 2 {
                    match b.get(i).and_then(|&d| (d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            b'0' => {
                let mut v: u32 = 0;
                let mut n = 0;
                while n < 2 {
                    match b.get(i).and_then(|&d| (d as char).to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            b'1'..=b'9' => {
                let mut v = u32::from(e - b'0');
                let mut n = 1;
                while n < 3 {
                    match b.get(i).and_then(|&d| (d as char).to_digit(10)) {
                        Some(d) => {
                            v = v * 10 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                let byte = u8::try_from(v).map_err(|_| format!("escape \\{v} is above 255"))?;
                out.push(byte);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).map_err(|_| "string escapes do not form valid UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_match_fetchmail() {
        assert_eq!(unescape(r"z\x41\101\0102").unwrap(), "zAe\u{8}2");
        assert_eq!(unescape(r"a\tb\nc\\d\qe").unwrap(), "a\tb\nc\\dqe");
        assert_eq!(unescape("a\\\nb").unwrap(), "ab");
        assert!(unescape(r"\999").is_err());
        assert_eq!(unescape(r"\x").unwrap(), "x");
    }

    #[test]
    fn lexer_tokens() {
        let toks = lex(
            "poll a.b: user 'x y'='z' # c\n,; \"q\\x22\"\\\nnext",
            Path::new("rc"),
        )
        .unwrap();
        let words: Vec<String> = toks
            .iter()
            .map(|t| match &t.kind {
                TokKind::Word { text, quoted } => {
                    format!("{}{text}", if *quoted { "q:" } else { "" })
                }
                TokKind::Eq => "=".into(),
            })
            .collect();
        assert_eq!(
            words,
            ["poll", "a.b", "user", "q:x y", "=", "q:z", "q:q\"", "next"]
        );
        assert_eq!(toks.last().unwrap().line, 3);
    }
}
