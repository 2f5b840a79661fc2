//! Header fields dropped on the way to the target (fetchmail's `dropstatus`: `Status:` and
//! `X-Mozilla-Status:`; `dropdelivered`: `Delivered-To:`), as a streaming [`Read`] adapter that
//! only ever looks at the header block: the body passes through untouched.

use std::io::{self, Read};

/// Which header fields to drop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropHeaders {
    /// `Status:` and `X-Mozilla-Status:` (a mail reader's read/answered flags).
    pub status: bool,
    /// `Delivered-To:` (a loop-detection field of the server's own MTA).
    pub delivered: bool,
}

impl DropHeaders {
    pub fn any(self) -> bool {
        self.status || self.delivered
    }

    fn drops(self, name: &[u8]) -> bool {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        (self.status && (is("Status") || is("X-Mozilla-Status")))
            || (self.delivered && is("Delivered-To"))
    }
}

/// Longest field name looked at: a longer run before the colon is no field we drop, and is
/// passed on without being held.
const MAX_NAME: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a header line.
    LineStart,
    /// Reading a field name (held in `name`).
    Name,
    /// In a line (or its continuation lines) that is passed on.
    Kept,
    /// In a field (and its continuation lines) that is dropped.
    Dropped,
    /// After the empty line: everything passes.
    Body,
}

/// A reader that leaves out the header fields `drop` names, with their continuation lines.
/// Line ends are LF or CRLF; a header without its empty line is filtered to the end.
pub struct HeaderFilter<R> {
    inner: R,
    drop: DropHeaders,
    state: State,
    /// Whether the last field was dropped (its continuation lines go too).
    last_dropped: bool,
    name: Vec<u8>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
}

impl<R: Read> HeaderFilter<R> {
    pub fn new(inner: R, drop: DropHeaders) -> Self {
        HeaderFilter {
            inner,
            drop,
            state: if drop.any() {
                State::LineStart
            } else {
                State::Body
            },
            last_dropped: false,
            name: Vec::new(),
            // Allocated on the first header read: a message nothing is dropped from never
            // needs it.
            inbuf: Vec::new(),
            out: Vec::new(),
            pos: 0,
        }
    }

    /// Runs the header bytes of `input` through the state machine into `out`.
    fn filter(&mut self, input: &[u8]) {
        for (i, &b) in input.iter().enumerate() {
            match self.state {
                State::Body => {
                    self.out.extend_from_slice(&input[i..]);
                    return;
                }
                State::LineStart => match b {
                    b' ' | b'\t' => {
                        self.state = if self.last_dropped {
                            State::Dropped
                        } else {
                            self.out.push(b);
                            State::Kept
                        };
                    }
                    b'\n' => {
                        self.out.push(b);
                        self.state = State::Body;
                    }
                    _ => {
                        self.name.clear();
                        self.name.push(b);
                        self.state = State::Name;
                    }
                },
                State::Name => match b {
                    b':' => {
                        let name = self.name.trim_ascii_end();
                        self.last_dropped = self.drop.drops(name);
                        if self.last_dropped {
                            self.state = State::Dropped;
                        } else {
                            self.out.extend_from_slice(&self.name);
                            self.out.push(b);
                            self.state = State::Kept;
                        }
                        self.name.clear();
                    }
                    b'\n' => {
                        // "\r\n" is the empty line; anything else is a line without a colon.
                        let blank = self.name == b"\r";
                        self.out.extend_from_slice(&self.name);
                        self.out.push(b);
                        self.name.clear();
                        self.last_dropped = false;
                        self.state = if blank { State::Body } else { State::LineStart };
                    }
                    _ if self.name.len() >= MAX_NAME => {
                        self.out.extend_from_slice(&self.name);
                        self.out.push(b);
                        self.name.clear();
                        self.last_dropped = false;
                        self.state = State::Kept;
                    }
                    _ => self.name.push(b),
                },
                State::Kept => {
                    self.out.push(b);
                    if b == b'\n' {
                        self.state = State::LineStart;
                    }
                }
                State::Dropped => {
                    if b == b'\n' {
                        self.state = State::LineStart;
                    }
                }
            }
        }
    }
}

impl<R: Read> Read for HeaderFilter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.state == State::Body && self.pos >= self.out.len() {
            return self.inner.read(buf);
        }
        while self.pos >= self.out.len() {
            self.out.clear();
            self.pos = 0;
            if self.inbuf.is_empty() {
                self.inbuf = vec![0; 16 * 1024];
            }
            let n = self.inner.read(&mut self.inbuf)?;
            if n == 0 {
                // A field name cut by the end of the message is passed on as it came.
                let held = std::mem::take(&mut self.name);
                if self.state == State::Name {
                    self.out.extend_from_slice(&held);
                    self.state = State::Body;
                }
                if self.out.is_empty() {
                    return Ok(0);
                }
                break;
            }
            let input = std::mem::take(&mut self.inbuf);
            self.filter(input.get(..n).unwrap_or_default());
            self.inbuf = input;
        }
        let avail = self.out.get(self.pos..).unwrap_or_default();
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads through the filter with the input cut into `piece`-byte reads.
    fn run(input: &[u8], drop: DropHeaders, piece: usize) -> Vec<u8> {
        struct Pieces<'a>(&'a [u8], usize);
        impl Read for Pieces<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        HeaderFilter::new(Pieces(input, piece), drop)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    const BOTH: DropHeaders = DropHeaders {
        status: true,
        delivered: true,
    };

    #[test]
    fn drops_the_named_fields_only_in_the_header() {
        let input = b"Received: from a\r\nStatus: RO\r\nX-Mozilla-Status: 0001\r\n\
X-Mozilla-Status2: 0\r\ndelivered-to: bob@x\r\n\tcontinued\r\nSubject: s\r\n  folded\r\n\
Statusbar: kept\r\n\r\nStatus: in the body\r\nDelivered-To: body too\r\n";
        let want = b"Received: from a\r\nX-Mozilla-Status2: 0\r\nSubject: s\r\n  folded\r\n\
Statusbar: kept\r\n\r\nStatus: in the body\r\nDelivered-To: body too\r\n";
        for piece in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(run(input, BOTH, piece), want, "piece {piece}");
        }
        let only_status = DropHeaders {
            status: true,
            delivered: false,
        };
        let out = run(input, only_status, 5);
        assert!(out.starts_with(
            b"Received: from a\r\nX-Mozilla-Status2: 0\r\ndelivered-to: bob@x\r\n\tcontinued\r\n"
        ));
        assert_eq!(run(input, DropHeaders::default(), 3), input);
    }

    #[test]
    fn lf_line_ends_and_odd_headers() {
        assert_eq!(
            run(b"Status: R\nA: b\n\nbody\n", BOTH, 2),
            b"A: b\n\nbody\n"
        );
        // No empty line, a name cut by the end, a line without a colon, a long name.
        assert_eq!(run(b"A: b\nStatus: x", BOTH, 1), b"A: b\n");
        assert_eq!(run(b"A: b\nStat", BOTH, 1), b"A: b\nStat");
        assert_eq!(run(b"no colon\nStatus: x\n\n", BOTH, 3), b"no colon\n\n");
        let long = format!("{}: v\nStatus: x\n\nb", "N".repeat(300));
        assert_eq!(
            run(long.as_bytes(), BOTH, 7),
            format!("{}: v\n\nb", "N".repeat(300)).as_bytes()
        );
        // A body-less message that starts with its empty line.
        assert_eq!(run(b"\r\nStatus: x\r\n", BOTH, 1), b"\r\nStatus: x\r\n");
    }
}
