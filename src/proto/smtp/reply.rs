//! SMTP reply parsing (RFC 5321 §4.2, enhanced status codes RFC 3463 / RFC 2034): multi-line
//! replies, resumable across arbitrary chunks, bounded in line length and line count.

use std::fmt;

use crate::proto::line::LineFramer;

use super::PeerMisbehaved;

/// Longest reply line accepted (RFC 5321 §4.5.3.1.5 says 512; servers exceed it in practice).
pub const DEFAULT_MAX_LINE: usize = 2048;
/// Most lines accepted in one reply (msmtp reads 50; EHLO replies rarely exceed 20).
pub const DEFAULT_MAX_LINES: usize = 100;

/// A complete server reply.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    /// Text of each line after "250-" / "250 ".
    lines: Vec<String>,
}

/// An RFC 3463 enhanced status code such as 5.7.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl Reply {
    /// Builds a reply (for tests and for synthesising replies).
    pub fn new(code: u16, lines: &[&str]) -> Reply {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let enhanced = lines.first().and_then(|l| parse_enhanced(code, l));
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text of each line, without the code.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// All lines' text joined with "\n".
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not retry unchanged.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    /// As the server sent it, lines joined with "\n" ("250-first\n250 last").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.lines.len();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let sep = if i + 1 == n { ' ' } else { '-' };
            if line.is_empty() && i + 1 == n {
                write!(f, "{}", self.code)?;
            } else {
                write!(f, "{}{sep}{line}", self.code)?;
            }
        }
        if n == 0 {
            write!(f, "{}", self.code)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply({self})")
    }
}

fn parse_enhanced(code: u16, text: &str) -> Option<EnhancedCode> {
    let word = text.split(' ').next()?;
    let mut parts = word.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || u16::from(class) != code / 100 || subject > 999 || detail > 999 {
        return None;
    }
    Some(EnhancedCode {
        class,
        subject,
        detail,
    })
}

/// Resumable reply parser: push received bytes, pull complete replies. Bytes after a reply stay
/// buffered (pipelined replies); [`ReplyParser::buffered`] shows them.
#[derive(Debug, Clone)]
pub struct ReplyParser {
    framer: LineFramer,
    max_lines: usize,
    code: Option<u16>,
    lines: Vec<String>,
}

impl Default for ReplyParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE, DEFAULT_MAX_LINES)
    }
}

impl ReplyParser {
    pub fn new(max_line: usize, max_lines: usize) -> Self {
        ReplyParser {
            framer: LineFramer::new(max_line),
            max_lines,
            code: None,
            lines: Vec::new(),
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.framer.push(data);
    }

    /// The next complete reply, `None` if more bytes are needed. After an error the stream is
    /// out of sync and the connection must be closed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, PeerMisbehaved> {
        loop {
            let line = match self.framer.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(None),
                Err(e) => return Err(PeerMisbehaved::ReplyLineTooLong { limit: e.limit }),
            };
            let (code, last, text) = parse_line(&line)?;
            if let Some(expected) = self.code
                && expected != code
            {
                return Err(PeerMisbehaved::InconsistentReplyCode);
            }
            if self.lines.len() >= self.max_lines {
                return Err(PeerMisbehaved::TooManyReplyLines {
                    limit: self.max_lines,
                });
            }
            self.code = Some(code);
            self.lines.push(text);
            if last {
                self.code = None;
                let lines = std::mem::take(&mut self.lines);
                let enhanced = lines.first().and_then(|l| parse_enhanced(code, l));
                return Ok(Some(Reply {
                    code,
                    enhanced,
                    lines,
                }));
            }
        }
    }

    /// Whether nothing is buffered: no partial reply and no bytes after the last reply.
    pub fn is_empty(&self) -> bool {
        self.framer.buffered().is_empty() && self.lines.is_empty()
    }

    /// Received bytes not yet part of a returned reply (apart from lines of a reply in progress).
    pub fn buffered(&self) -> &[u8] {
        self.framer.buffered()
    }

    /// Forgets everything received (at the STARTTLS upgrade).
    pub fn clear(&mut self) {
        self.framer.clear();
        self.code = None;
        self.lines.clear();
    }
}

/// Splits "250-text" into (250, false, "text").
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), PeerMisbehaved> {
    let digits = line.get(..3).ok_or(PeerMisbehaved::MalformedReply)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(PeerMisbehaved::MalformedReply);
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(200..600).contains(&code) {
        return Err(PeerMisbehaved::MalformedReply);
    }
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, line.get(4..).unwrap_or_default()),
        Some(b'-') => (false, line.get(4..).unwrap_or_default()),
        Some(_) => return Err(PeerMisbehaved::MalformedReply),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Result<Vec<Reply>, PeerMisbehaved> {
        let mut p = ReplyParser::new(64, 5);
        let mut out = Vec::new();
        for c in chunks {
            p.push(c);
            while let Some(r) = p.next_reply()? {
                out.push(r);
            }
        }
        Ok(out)
    }

    #[test]
    fn table() {
        type Case = (&'static [u8], Result<Vec<Reply>, PeerMisbehaved>);
        let cases: Vec<Case> = vec![
            (b"220 ready\r\n", Ok(vec![Reply::new(220, &["ready"])])),
            (b"250\r\n", Ok(vec![Reply::new(250, &[""])])),
            (b"250 ok\n", Ok(vec![Reply::new(250, &["ok"])])),
            (
                b"250-a\r\n250-b\r\n250 c\r\n",
                Ok(vec![Reply::new(250, &["a", "b", "c"])]),
            ),
            (
                b"250 ok\r\n354 go\r\n",
                Ok(vec![Reply::new(250, &["ok"]), Reply::new(354, &["go"])]),
            ),
            (
                b"250-a\r\n251 b\r\n",
                Err(PeerMisbehaved::InconsistentReplyCode),
            ),
            (b"25\r\n", Err(PeerMisbehaved::MalformedReply)),
            (b"abc ok\r\n", Err(PeerMisbehaved::MalformedReply)),
            (b"250_ok\r\n", Err(PeerMisbehaved::MalformedReply)),
            (b"199 low\r\n", Err(PeerMisbehaved::MalformedReply)),
            (b"600 high\r\n", Err(PeerMisbehaved::MalformedReply)),
            (
                b"250-1\r\n250-2\r\n250-3\r\n250-4\r\n250-5\r\n250 6\r\n",
                Err(PeerMisbehaved::TooManyReplyLines { limit: 5 }),
            ),
            (
                &[b'2'; 100],
                Err(PeerMisbehaved::ReplyLineTooLong { limit: 64 }),
            ),
            (b"250-partial\r\n", Ok(vec![])),
        ];
        for (input, expected) in &cases {
            assert_eq!(&parse_all(&[input]), expected, "{input:?}");
            for size in [1, 2, 3, 5, 7] {
                let chunks: Vec<&[u8]> = input.chunks(size).collect();
                assert_eq!(&parse_all(&chunks), expected, "{input:?} in {size}s");
            }
        }
    }

    #[test]
    fn enhanced_codes() {
        let r = Reply::new(535, &["5.7.8 Error: authentication failed"]);
        assert_eq!(
            r.enhanced(),
            Some(EnhancedCode {
                class: 5,
                subject: 7,
                detail: 8
            })
        );
        assert_eq!(
            Reply::new(250, &["2.1.0 Ok"])
                .enhanced()
                .map(|e| e.to_string()),
            Some("2.1.0".into())
        );
        // The class must match the reply code.
        assert_eq!(Reply::new(250, &["5.1.0 Ok"]).enhanced(), None);
        assert_eq!(Reply::new(250, &["Ok 2.1.0"]).enhanced(), None);
        assert_eq!(Reply::new(250, &["2.1 Ok"]).enhanced(), None);
    }

    #[test]
    fn display_and_classes() {
        let r = Reply::new(250, &["a", "b"]);
        assert_eq!(r.to_string(), "250-a\n250 b");
        assert_eq!(r.text(), "a\nb");
        assert!(r.is_success());
        assert!(Reply::new(354, &["go"]).is_intermediate());
        assert!(Reply::new(451, &["later"]).is_transient());
        assert!(Reply::new(550, &["no"]).is_permanent());
    }

    #[test]
    fn leftovers_after_a_reply_stay_buffered() {
        let mut p = ReplyParser::default();
        p.push(b"220 go ahead\r\n250 INJECTED\r\n");
        assert_eq!(p.next_reply(), Ok(Some(Reply::new(220, &["go ahead"]))));
        assert!(!p.is_empty());
        assert_eq!(p.buffered(), b"250 INJECTED\r\n");
        p.clear();
        assert!(p.is_empty());
    }

    #[test]
    fn random_input_never_panics_and_ignores_chunking() {
        let alphabet = b"2505-  \r\n4x.";
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..2000 {
            let len = next(60);
            let input: Vec<u8> = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
            let whole = parse_all(&[&input]);
            let split = next(len.max(1));
            let (a, b) = input.split_at(split.min(input.len()));
            assert_eq!(parse_all(&[a, b]), whole, "{input:?}");
        }
    }
}
