//! The one definition of a line for RFC 5322 data in postie: a line ends at CRLF, at a bare LF,
//! or at a lone CR (a CR not followed by LF). Everything that splits a message into lines (the
//! header pass that finds Bcc and `-t` recipients, the SMTP DATA encoder that writes CRLF on the
//! wire) asks this module, so what is checked is exactly what is sent.
//!
//! Why a lone CR ends a line instead of being data: RFC 5322 allows CR only as part of CRLF and
//! RFC 5321 forbids a client to send a bare CR, so a lone CR has to become something before it
//! reaches the wire. Receivers disagree on it (some split lines there, Postfix keeps it inside the
//! line and passes it on to the next hop, which may split), and a byte that one party reads as a
//! line end and another as data is how `Subject: x\rBcc: y` hides a header from a check and
//! shows it to a reader. Treating it as a line end everywhere, and writing every line end as
//! CRLF, leaves no lone CR on the wire for anyone to read differently, keeps the line content,
//! and needs no escape (RFC 5322 header text has none for CR). msmtp passes lone CRs through
//! unchanged, which is the ambiguity itself.

/// Where the first line in some data ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// The line's text is `data[..text]`; its ending is the `len` bytes after it (1 for LF or a
    /// lone CR, 2 for CRLF).
    Found { text: usize, len: usize },
    /// The data ends in a CR right after the text `data[..text]`: a line ends there, but only the
    /// next byte can tell whether the ending is a lone CR or a CRLF. Streaming callers wait for
    /// it; at the end of the input it is a lone CR.
    CrAtEnd { text: usize },
    /// No line end in the data.
    NotFound,
}

/// Finds the end of the first line in `data`.
pub fn find_line_end(data: &[u8]) -> LineEnd {
    let Some(at) = data.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return LineEnd::NotFound;
    };
    if data[at] == b'\n' {
        return LineEnd::Found { text: at, len: 1 };
    }
    match data.get(at + 1) {
        Some(b'\n') => LineEnd::Found { text: at, len: 2 },
        Some(_) => LineEnd::Found { text: at, len: 1 },
        None => LineEnd::CrAtEnd { text: at },
    }
}

/// One line of complete data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line without its ending.
    pub text: &'a [u8],
    /// `b"\r\n"`, `b"\n"`, `b"\r"`, or empty for a last line without an ending.
    pub ending: &'a [u8],
}

/// The lines of `data`, which is the whole input (a CR at its very end is a lone CR).
pub fn lines(data: &[u8]) -> Lines<'_> {
    Lines { rest: data }
}

/// Iterator returned by [`lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let (text, len) = match find_line_end(self.rest) {
            LineEnd::Found { text, len } => (text, len),
            LineEnd::CrAtEnd { text } => (text, 1),
            LineEnd::NotFound => (self.rest.len(), 0),
        };
        let (line, rest) = self.rest.split_at(text + len);
        self.rest = rest;
        let (text, ending) = line.split_at(text);
        Some(Line { text, ending })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(data: &[u8]) -> Vec<(&[u8], &[u8])> {
        lines(data).map(|l| (l.text, l.ending)).collect()
    }

    #[test]
    fn every_ending() {
        assert_eq!(find_line_end(b"abc"), LineEnd::NotFound);
        assert_eq!(find_line_end(b"a\nb"), LineEnd::Found { text: 1, len: 1 });
        assert_eq!(find_line_end(b"a\r\nb"), LineEnd::Found { text: 1, len: 2 });
        assert_eq!(find_line_end(b"a\rb"), LineEnd::Found { text: 1, len: 1 });
        assert_eq!(
            find_line_end(b"a\r\r\n"),
            LineEnd::Found { text: 1, len: 1 }
        );
        assert_eq!(find_line_end(b"a\r"), LineEnd::CrAtEnd { text: 1 });
        assert_eq!(find_line_end(b"\n\r"), LineEnd::Found { text: 0, len: 1 });
    }

    #[test]
    fn lines_of_mixed_endings() {
        let got = split(b"a\r\nb\nc\rd\r\re\n\rf\r");
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"a", b"\r\n"),
            (b"b", b"\n"),
            (b"c", b"\r"),
            (b"d", b"\r"),
            (b"", b"\r"),
            (b"e", b"\n"),
            (b"", b"\r"),
            (b"f", b"\r"),
        ];
        assert_eq!(got, want);
        assert_eq!(split(b"no ending"), vec![(&b"no ending"[..], &b""[..])]);
        assert!(split(b"").is_empty());
    }

    #[test]
    fn lines_cover_the_input_exactly() {
        let data = b"x\r\r\n\n\r\ry\rz";
        let joined: Vec<u8> = lines(data)
            .flat_map(|l| l.text.iter().chain(l.ending).copied())
            .collect();
        assert_eq!(joined, data);
    }
}
