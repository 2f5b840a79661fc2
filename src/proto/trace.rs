//! The protocol trace, pure part: bytes a client writes together with the spans of them that are
//! secret ([`Outbound`], built by the command builders, so redaction follows from how a command
//! was put together and never from recognising a password in the output), and the rendering of
//! written or received bytes as printable log lines ([`printable`]) in which a server cannot
//! forge a line break, a terminal escape or a misleading direction mark.

use std::fmt;
use std::ops::Range;

/// What a redacted span is shown as (fetchmail's convention: `LOGIN alice *`).
pub const REDACTED: &str = "*";

/// Bytes to write and which of them are secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Outbound {
    /// Exactly what goes on the wire.
    pub bytes: Vec<u8>,
    /// Byte ranges of `bytes` that never appear in a trace, in order, not overlapping.
    secret: Vec<Range<usize>>,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Outbound({:?})", self.trace())
    }
}

impl Outbound {
    /// Nothing secret in `bytes`.
    pub fn plain(bytes: impl Into<Vec<u8>>) -> Outbound {
        Outbound {
            bytes: bytes.into(),
            secret: Vec::new(),
        }
    }

    /// Appends bytes that may be shown.
    pub fn push_plain(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Appends bytes that must never be shown.
    pub fn push_secret(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        match self.secret.last_mut() {
            Some(last) if last.end == start => last.end = self.bytes.len(),
            _ => self.secret.push(start..self.bytes.len()),
        }
    }

    /// Appends another outbound chunk, its secret spans included.
    pub fn append(&mut self, other: &Outbound) {
        let mut at = 0;
        for span in &other.secret {
            self.push_plain(other.bytes.get(at..span.start).unwrap_or_default());
            self.push_secret(other.bytes.get(span.clone()).unwrap_or_default());
            at = span.end;
        }
        self.push_plain(other.bytes.get(at..).unwrap_or_default());
    }

    /// Drops every byte equal to CR or LF inside the bytes appended since `from` (a CR or LF in
    /// an argument would smuggle a second command), keeping the secret spans right.
    pub fn strip_line_breaks_from(&mut self, from: usize) {
        let tail = self.bytes.split_off(from.min(self.bytes.len()));
        let spans: Vec<Range<usize>> = self
            .secret
            .iter()
            .filter(|s| s.end > from)
            .map(|s| s.start.max(from) - from..s.end - from)
            .collect();
        self.secret.retain_mut(|s| {
            s.end = s.end.min(from);
            s.start < s.end
        });
        let mut at = 0;
        for span in spans {
            let clean = |b: &[u8]| -> Vec<u8> {
                b.iter()
                    .copied()
                    .filter(|&c| c != b'\r' && c != b'\n')
                    .collect()
            };
            self.push_plain(&clean(tail.get(at..span.start).unwrap_or_default()));
            self.push_secret(&clean(tail.get(span.clone()).unwrap_or_default()));
            at = span.end;
        }
        let rest: Vec<u8> = tail
            .get(at..)
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|&c| c != b'\r' && c != b'\n')
            .collect();
        self.push_plain(&rest);
    }

    /// Whether any byte is secret.
    pub fn has_secret(&self) -> bool {
        !self.secret.is_empty()
    }

    /// The trace lines: one per line written (CRLF or LF ends a line, a final partial line is a
    /// line too), each secret span shown as [`REDACTED`], everything else through
    /// [`printable`]. A secret span never splits or ends a line, whatever bytes it holds.
    pub fn trace_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        let mut open = false;
        let mut run: Vec<u8> = Vec::new();
        let flush_run = |run: &mut Vec<u8>, line: &mut String| {
            line.push_str(&printable(run));
            run.clear();
        };
        let mut at = 0;
        let mut spans = self.secret.iter().peekable();
        while at < self.bytes.len() {
            if let Some(span) = spans.peek()
                && span.start == at
            {
                flush_run(&mut run, &mut line);
                line.push_str(REDACTED);
                open = true;
                at = span.end;
                spans.next();
                continue;
            }
            let b = self.bytes[at];
            at += 1;
            if b == b'\n' {
                if run.last() == Some(&b'\r') {
                    run.pop();
                }
                flush_run(&mut run, &mut line);
                lines.push(std::mem::take(&mut line));
                open = false;
            } else {
                run.push(b);
                open = true;
            }
        }
        if open || !run.is_empty() {
            flush_run(&mut run, &mut line);
            lines.push(line);
        }
        lines
    }

    /// The trace lines joined with "\n" (for error messages and tests).
    pub fn trace(&self) -> String {
        self.trace_lines().join("\n")
    }
}

/// `bytes` as one printable log line: valid UTF-8 text is kept, except that control characters
/// (CR, LF, ESC, the C1 range...), line and paragraph separators and bidirectional overrides are
/// shown as `\u{..}` escapes (`\r`, `\n`, `\t` for the common ones), and bytes that are not UTF-8
/// as `\xNN`. A server's text can therefore neither start a new log line nor restyle or reorder
/// the terminal.
pub fn printable(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if needs_escape(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_spans_become_one_star_each() {
        let mut o = Outbound::plain(b"A0001 LOGIN \"bob\" ".to_vec());
        o.push_secret(b"\"pw\"");
        o.push_plain(b"\r\n");
        assert_eq!(o.trace_lines(), vec!["A0001 LOGIN \"bob\" *"]);
        assert_eq!(o.bytes, b"A0001 LOGIN \"bob\" \"pw\"\r\n");
        // A secret holding CR LF does not end the line, a secret alone is a line.
        let mut o = Outbound::default();
        o.push_secret(b"a\r\nb");
        o.push_plain(b"\r\n");
        assert_eq!(o.trace_lines(), vec!["*"]);
        // Several lines, a trailing partial line.
        let o = Outbound::plain(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA".to_vec());
        assert_eq!(
            o.trace_lines(),
            vec!["MAIL FROM:<a>", "RCPT TO:<b>", "DATA"]
        );
        assert!(!format!("{o:?}").contains('['));
    }

    #[test]
    fn append_and_strip_keep_spans() {
        let mut inner = Outbound::plain(b"PASS ".to_vec());
        inner.push_secret(b"p\r\nDELE 1");
        let mut o = Outbound::plain(b"USER bob\r\n".to_vec());
        let from = o.bytes.len();
        o.append(&inner);
        o.strip_line_breaks_from(from);
        o.push_plain(b"\r\n");
        assert_eq!(o.bytes, b"USER bob\r\nPASS pDELE 1\r\n");
        assert_eq!(o.trace_lines(), vec!["USER bob", "PASS *"]);
        assert!(o.has_secret());
    }

    #[test]
    fn printable_escapes_what_could_forge_or_restyle_a_line() {
        assert_eq!(printable(b"+OK fine"), "+OK fine");
        assert_eq!(
            printable(b"a\r\nrfetch: forged\x1b[2J"),
            "a\\r\\nrfetch: forged\\u{1b}[2J"
        );
        assert_eq!(
            printable("caf\u{e9} \u{202e}x".as_bytes()),
            "caf\u{e9} \\u{202e}x"
        );
        assert_eq!(printable(b"\xff\xfe ok"), "\\xff\\xfe ok");
        assert_eq!(printable("\u{85}".as_bytes()), "\\u{85}");
    }
}
