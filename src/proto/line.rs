//! Bounded line framing shared by the SMTP, POP3 and IMAP clients: lines end in CRLF or a bare LF,
//! bytes after the last complete line are kept for the next call, and a line longer than the
//! caller's limit is an error instead of an ever-growing buffer (RFC 5321 §4.5.3.1.5,
//! RFC 1939 §3, RFC 9051 §2.2).

use std::fmt;

/// A line (without its terminator) was longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    /// The limit that was exceeded, in bytes, terminator not counted.
    pub limit: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line longer than {} bytes", self.limit)
    }
}

impl std::error::Error for LineTooLong {}

/// Splits a byte stream into lines. Feed it with [`LineFramer::push`], take lines with
/// [`LineFramer::next_line`]. Memory is bounded by the limit plus the largest pushed chunk.
#[derive(Debug, Clone)]
pub struct LineFramer {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    /// How far past `start` we already looked for a LF (so a long partial line is scanned once).
    scanned: usize,
    max_len: usize,
}

impl LineFramer {
    /// A framer accepting lines of at most `max_len` bytes, terminator not counted.
    pub fn new(max_len: usize) -> Self {
        LineFramer {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max_len,
        }
    }

    /// The configured line length limit.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete line without its CRLF or LF, or `None` when more bytes are needed.
    /// After an error the framer should be discarded: the stream is no longer in sync.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineTooLong> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        let from = self.scanned.min(pending.len());
        match pending
            .get(from..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        {
            Some(pos) => {
                let lf = from + pos;
                let mut line = pending.get(..lf).unwrap_or_default();
                if let Some(stripped) = line.strip_suffix(b"\r") {
                    line = stripped;
                }
                if line.len() > self.max_len {
                    return Err(LineTooLong {
                        limit: self.max_len,
                    });
                }
                let line = line.to_vec();
                self.start += lf + 1;
                self.scanned = 0;
                Ok(Some(line))
            }
            None => {
                // A CR may still precede the LF, so allow one byte more than the limit.
                if pending.len() > self.max_len.saturating_add(1) {
                    return Err(LineTooLong {
                        limit: self.max_len,
                    });
                }
                self.scanned = pending.len();
                Ok(None)
            }
        }
    }

    /// Bytes received but not yet returned as a line.
    pub fn buffered(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Drops everything buffered (required at a STARTTLS upgrade: nothing sent in plaintext may
    /// be read as if it came over TLS).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]], max: usize) -> (Vec<Vec<u8>>, Vec<u8>, bool) {
        let mut f = LineFramer::new(max);
        let mut lines = Vec::new();
        for c in chunks {
            f.push(c);
            loop {
                match f.next_line() {
                    Ok(Some(l)) => lines.push(l),
                    Ok(None) => break,
                    Err(_) => return (lines, f.buffered().to_vec(), true),
                }
            }
        }
        (lines, f.buffered().to_vec(), false)
    }

    fn split(input: &[u8], size: usize) -> Vec<&[u8]> {
        input.chunks(size).collect()
    }

    /// input, lines, leftover, error
    type Case<'a> = (&'a [u8], &'a [&'a [u8]], &'a [u8], bool);

    #[test]
    fn table() {
        let cases: &[Case] = &[
            (b"", &[], b"", false),
            (b"abc\r\n", &[b"abc"], b"", false),
            (b"abc\n", &[b"abc"], b"", false),
            (b"a\r\nb\nc", &[b"a", b"b"], b"c", false),
            (b"\r\n\n", &[b"", b""], b"", false),
            (b"a\rb\n", &[b"a\rb"], b"", false),
            (b"12345\r\n", &[b"12345"], b"", false),
            (b"123456\r\n", &[], b"123456\r\n", true),
            (b"1234567", &[], b"1234567", true),
            (b"123456", &[], b"123456", false),
        ];
        for (input, lines, rest, err) in cases {
            let (got, left, e) = collect(&[input], 5);
            assert_eq!(&got, lines, "{input:?}");
            if !*err {
                assert_eq!(&left[..], *rest, "{input:?}");
            }
            assert_eq!(e, *err, "{input:?}");
        }
    }

    #[test]
    fn chunk_split_gives_same_result() {
        let input = b"250-first\r\n250-second\n\r\n250 third\r\nleft";
        let whole = collect(&[input], 100);
        for size in [1, 2, 3, 5, 7] {
            assert_eq!(collect(&split(input, size), 100), whole, "size {size}");
        }
        let long = b"ok\r\n0123456789abcdef\r\n";
        let whole = collect(&[long], 10);
        assert!(whole.2);
        for size in [1, 2, 3, 5, 7] {
            let got = collect(&split(long, size), 10);
            assert_eq!((got.0, got.2), (whole.0.clone(), true), "size {size}");
        }
    }

    #[test]
    fn memory_stays_bounded_without_newlines() {
        let mut f = LineFramer::new(1000);
        let chunk = [b'x'; 512];
        let mut failed = false;
        for _ in 0..100 {
            f.push(&chunk);
            if f.next_line().is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        assert!(f.buffered().len() < 2000);
    }

    #[test]
    fn clear_drops_leftovers() {
        let mut f = LineFramer::new(100);
        f.push(b"220 go ahead\r\n250 INJECTED\r\n");
        assert_eq!(f.next_line(), Ok(Some(b"220 go ahead".to_vec())));
        assert_eq!(f.buffered(), b"250 INJECTED\r\n");
        f.clear();
        assert_eq!(f.next_line(), Ok(None));
    }
}
