//! Streaming dot-stuffing for SMTP DATA (RFC 5321 §4.5.2, §2.3.8) and unstuffing for POP3
//! multi-line responses (RFC 1939 §3). The encoder splits lines by [`crate::message::line`] (CRLF,
//! bare LF and lone CR each end a line, the same rule the header pass uses) and writes every line
//! end as CRLF, so no input can put "\r\n.\r\n" on the wire before the real end (SMTP smuggling)
//! and the header lines on the wire are the ones the header pass checked.

use crate::message::line::{LineEnd, find_line_end};

/// Encodes a raw message, fed in arbitrary chunks, into DATA wire bytes.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    /// The next byte starts a line (so a "." there must be doubled).
    at_line_start: bool,
    /// The previous chunk ended in a CR whose meaning depends on the next byte.
    pending_cr: bool,
    /// Raw input bytes seen.
    input_len: u64,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    pub fn new() -> Self {
        DotStuffer {
            at_line_start: true,
            pending_cr: false,
            input_len: 0,
        }
    }

    /// Raw message bytes consumed so far.
    pub fn input_len(&self) -> u64 {
        self.input_len
    }

    /// Appends the wire form of `input` to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if input.is_empty() {
            // An empty chunk must not decide a pending CR: the LF may still come.
            return;
        }
        self.input_len += input.len() as u64;
        out.reserve(input.len() + input.len() / 32 + 4);
        let mut rest = input;
        if self.pending_cr {
            self.pending_cr = false;
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
            if let Some(after) = rest.strip_prefix(b"\n") {
                rest = after;
            }
        }
        while !rest.is_empty() {
            if self.at_line_start && rest.first() == Some(&b'.') {
                out.push(b'.');
            }
            match find_line_end(rest) {
                LineEnd::NotFound => {
                    out.extend_from_slice(rest);
                    self.at_line_start = false;
                    return;
                }
                LineEnd::CrAtEnd { text } => {
                    // Wait for the next chunk: CR LF split across chunks is one line end.
                    out.extend_from_slice(&rest[..text]);
                    self.pending_cr = true;
                    self.at_line_start = false;
                    return;
                }
                LineEnd::Found { text, len } => {
                    out.extend_from_slice(&rest[..text]);
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    rest = &rest[text + len..];
                }
            }
        }
    }

    /// Ends the message: one CRLF if the message did not end with a line end, then ".\r\n".
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr || !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.pending_cr = false;
        self.at_line_start = true;
    }
}

/// Whether the message holds bytes above 127 (it then needs BODY=8BITMIME, RFC 6152).
pub fn has_8bit(message: &[u8]) -> bool {
    !message.is_ascii()
}

/// Whether an envelope address needs the SMTPUTF8 extension (RFC 6531 §3.4).
pub fn needs_smtputf8(address: &str) -> bool {
    !address.is_ascii()
}

/// Progress of [`DotUnstuffer::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unstuffed {
    /// Input bytes consumed; bytes after the terminator are not consumed.
    pub consumed: usize,
    /// The terminating ".\r\n" was seen.
    pub done: bool,
}

/// Decodes a dot-stuffed multi-line body (POP3 RETR, and tests of the encoder), fed in chunks.
/// Line endings are kept as received; the terminating ".\r\n" is removed.
#[derive(Debug, Clone)]
pub struct DotUnstuffer {
    at_line_start: bool,
    state: UnstuffState,
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnstuffState {
    Normal,
    /// A "." at the start of a line.
    Dot,
    /// ".\r" at the start of a line.
    DotCr,
}

impl Default for DotUnstuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotUnstuffer {
    pub fn new() -> Self {
        DotUnstuffer {
            at_line_start: true,
            state: UnstuffState::Normal,
            done: false,
        }
    }

    /// Appends the decoded form of `input` to `out`; stops after the terminator.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Unstuffed {
        let mut i = 0;
        while i < input.len() && !self.done {
            let Some(&b) = input.get(i) else { break };
            i += 1;
            match self.state {
                UnstuffState::Normal => {
                    if self.at_line_start && b == b'.' {
                        self.state = UnstuffState::Dot;
                        continue;
                    }
                    out.push(b);
                    self.at_line_start = b == b'\n';
                }
                UnstuffState::Dot => {
                    if b == b'\r' {
                        self.state = UnstuffState::DotCr;
                    } else {
                        self.state = UnstuffState::Normal;
                        out.push(b);
                        self.at_line_start = b == b'\n';
                    }
                }
                UnstuffState::DotCr => {
                    self.state = UnstuffState::Normal;
                    if b == b'\n' {
                        self.done = true;
                    } else {
                        out.push(b'\r');
                        self.at_line_start = false;
                        // Re-read this byte in the normal state.
                        i -= 1;
                    }
                }
            }
        }
        Unstuffed {
            consumed: i,
            done: self.done,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_chunks(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        for c in chunks {
            s.encode(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    fn encode(input: &[u8]) -> Vec<u8> {
        encode_chunks(&[input])
    }

    fn decode(wire: &[u8]) -> Vec<u8> {
        let mut u = DotUnstuffer::new();
        let mut out = Vec::new();
        let r = u.decode(wire, &mut out);
        assert!(r.done, "no terminator in {wire:?}");
        assert_eq!(r.consumed, wire.len());
        out
    }

    /// Bare LF and lone CR become CRLF; a non-empty message gets a final CRLF.
    fn normalize(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            match b {
                b'\r' => {
                    out.extend_from_slice(b"\r\n");
                    if input.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                }
                b'\n' => out.extend_from_slice(b"\r\n"),
                _ => out.push(b),
            }
            i += 1;
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a\n", b"a\r\n.\r\n"),
            (b"a\nb", b"a\r\nb\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
            (b".\n", b"..\r\n.\r\n"),
            (b"a\n.\nb\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"..dots\r\n", b"...dots\r\n.\r\n"),
            (b"a.b\n", b"a.b\r\n.\r\n"),
            (b"a\rb", b"a\r\nb\r\n.\r\n"),
            (b"a\r", b"a\r\n.\r\n"),
            (b"a\r\r\n", b"a\r\n\r\n.\r\n"),
            (b"\n.\r\n", b"\r\n..\r\n.\r\n"),
            // Smuggling attempts: none may end the data early.
            (
                b"x\n.\r\nMAIL FROM:<e>\r\n",
                b"x\r\n..\r\nMAIL FROM:<e>\r\n.\r\n",
            ),
            (b"x\r\n.\nRCPT\n", b"x\r\n..\r\nRCPT\r\n.\r\n"),
            (b"x\r.\r", b"x\r\n..\r\n.\r\n"),
        ];
        for (input, wire) in cases {
            assert_eq!(encode(input), *wire, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn chunk_split_gives_same_result() {
        let input = b"a\r\n.b\r\r\n.\n..\rc\r";
        let whole = encode(input);
        for size in [1, 2, 3, 5, 7] {
            let chunks: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(encode_chunks(&chunks), whole, "size {size}");
        }
        // Empty chunks between a CR and its LF change nothing.
        assert_eq!(
            encode_chunks(&[b"a\r", b"", b"\nb"]),
            encode(b"a\r\nb"),
            "empty chunk"
        );
    }

    /// The wire lines are the lines of the shared rule, whatever the chunking.
    #[test]
    fn wire_lines_are_the_message_lines() {
        let input = b"S: x\rBcc: y\r\n\rz\n\r\r\n.a\r";
        let want: Vec<u8> = crate::message::line::lines(input)
            .flat_map(|l| {
                let dot: &[u8] = if l.text.first() == Some(&b'.') {
                    b"."
                } else {
                    b""
                };
                [dot, l.text, b"\r\n"].concat()
            })
            .chain(b".\r\n".iter().copied())
            .collect();
        for size in 1..input.len() {
            let chunks: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(encode_chunks(&chunks), want, "size {size}");
        }
    }

    /// A small deterministic generator, so the property test needs no extra crate.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    fn no_early_terminator(wire: &[u8]) -> bool {
        let body = &wire[..wire.len() - 3];
        !body.windows(5).any(|w| w == b"\r\n.\r\n") && !body.starts_with(b".\r\n")
    }

    #[test]
    fn random_inputs_randomly_split() {
        let alphabet = b"\r\n.a\xc3\x00";
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let len = rng.below(40);
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64)])
                .collect();
            let whole = encode(&input);
            let mut chunks = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len() as u64);
                let (a, b) = rest.split_at(n);
                chunks.push(a);
                rest = b;
            }
            assert_eq!(encode_chunks(&chunks), whole, "{input:?} {chunks:?}");
            assert!(whole.ends_with(b".\r\n"));
            assert!(no_early_terminator(&whole), "{input:?} -> {whole:?}");
            // Every CR and LF on the wire is part of a CRLF.
            for (i, &b) in whole.iter().enumerate() {
                if b == b'\r' {
                    assert_eq!(whole.get(i + 1), Some(&b'\n'));
                }
                if b == b'\n' {
                    assert_eq!(whole.get(i.wrapping_sub(1)), Some(&b'\r'));
                }
            }
            assert_eq!(decode(&whole), normalize(&input), "{input:?}");
        }
    }

    #[test]
    fn unstuffer_table_and_leftovers() {
        let cases: &[(&[u8], &[u8], usize)] = &[
            (b".\r\n", b"", 3),
            (b"a\r\n.\r\nNEXT", b"a\r\n", 6),
            (b"..x\r\n.\r\n", b".x\r\n", 8),
            (b".\rx\r\n.\r\n", b"\rx\r\n", 8),
        ];
        for (wire, body, consumed) in cases {
            for size in [1, 2, 3, 5, 7, 100] {
                let mut u = DotUnstuffer::new();
                let mut out = Vec::new();
                let mut used = 0;
                for c in wire.chunks(size) {
                    let r = u.decode(c, &mut out);
                    used += r.consumed;
                    if r.done {
                        break;
                    }
                }
                assert!(u.is_done());
                assert_eq!(&out, body, "{wire:?}");
                assert_eq!(used, *consumed, "{wire:?}");
            }
        }
    }

    #[test]
    fn eight_bit_and_utf8_helpers() {
        assert!(!has_8bit(b"plain\r\n"));
        assert!(has_8bit("caf\u{e9}".as_bytes()));
        assert!(!needs_smtputf8("alice@example.org"));
        assert!(needs_smtputf8("j\u{f6}rg@example.org"));
    }
}
