//! The header block of a message (RFC 5322 section 2.2): the one scanner that finds its fields,
//! their folded continuation lines and where the block ends (whole or streaming), the fields'
//! unfolded values, and the rule for values postie itself writes into a header: no control
//! characters. Lines are those of [`super::line`].

use super::line::{LineEnd, find_line_end};

/// One header field with its continuation lines, as it appeared (line endings kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub raw: Vec<u8>,
}

impl Field {
    /// The unfolded value after the colon.
    pub fn value(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        let after = text.split_once(':').map(|(_, v)| v).unwrap_or("");
        after.replace(['\r', '\n'], " ").trim().to_string()
    }

    /// Whether the field is called `name` (field names are case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// The header block is larger than the caller's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the message header is larger than {limit} bytes")]
pub struct HeaderTooLarge {
    pub limit: usize,
}

/// Whether `line` (without its line ending) starts a header field: a name of printable ASCII
/// other than ':' and space, then ':'.
fn field_name(line: &[u8]) -> Option<&str> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// One step of [`Scanner`]: the next line of the header block, or its end. Offsets are into the
/// caller's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// A leading mbox `From ` line (`input[..end]`), which is no header field.
    MboxFrom { end: usize },
    /// A line starting a field (`input[start..end]`, line ending included); its name is the
    /// `name_len` bytes at `start`.
    Field {
        start: usize,
        end: usize,
        name_len: usize,
    },
    /// A line continuing the field before it (starts with a space or a tab).
    Continuation { start: usize, end: usize },
    /// The header block ends: `end` is the offset just after it (and after the separating empty
    /// line, when there is one). `had_separator` is false when the input ended, or when a line
    /// that is no header field began the body.
    End { end: usize, had_separator: bool },
}

/// The one scanner of a header block (RFC 5322 section 2.2) in postie: rsend's header pass,
/// rfetch's header read-ahead, the envelope sender and the place of the `Received:` header all
/// walk the block with it, so they agree on where fields start and where the block ends.
///
/// It is resumable: the caller passes the same input, grown at the end, until [`Scanner::next`]
/// gives [`Item::End`]; lines already read are not read again, so a header arriving one byte at
/// a time costs linear time. Lines are those of [`super::line`].
#[derive(Debug, Clone, Default)]
pub struct Scanner {
    /// Where the next line starts.
    pos: usize,
    /// The first line was looked at (for an mbox `From ` line).
    begun: bool,
    /// A field was started: a line beginning with white space continues it.
    in_field: bool,
    /// The block's end, once found.
    end: Option<Item>,
}

impl Scanner {
    /// The next line of the header block in `input`; `complete` says whether `input` holds the
    /// whole message. `Ok(None)` while more input is needed (a CR at the end of incomplete input
    /// counts as undecided, as for every streaming user of [`find_line_end`]). `limit` bounds the
    /// offset the block may reach. After [`Item::End`], every call gives it again.
    pub fn next(
        &mut self,
        input: &[u8],
        complete: bool,
        limit: usize,
    ) -> Result<Option<Item>, HeaderTooLarge> {
        if let Some(end) = self.end {
            return Ok(Some(end));
        }
        let pos = self.pos.min(input.len());
        let rest = &input[pos..];
        if rest.is_empty() {
            if !complete {
                return Ok(None);
            }
            // End of input inside (or right after) the header block: no body.
            return Ok(Some(self.finish(input.len(), false)));
        }
        let (text, next) = match find_line_end(rest) {
            LineEnd::Found { text, len } => (text, pos + text + len),
            LineEnd::CrAtEnd { text } if complete => (text, pos + text + 1),
            LineEnd::NotFound if complete => (rest.len(), input.len()),
            LineEnd::CrAtEnd { .. } | LineEnd::NotFound => {
                if input.len() > limit {
                    return Err(HeaderTooLarge { limit });
                }
                return Ok(None);
            }
        };
        let line = &rest[..text];
        let first = !self.begun;
        self.begun = true;
        // A first line that has a line ending and starts with "From " is an mbox separator
        // (`rsend < mbox-file`); without a line ending it is the whole message, read as body.
        let item = if first && line.starts_with(b"From ") && next > pos + text {
            Item::MboxFrom { end: next }
        } else if line.is_empty() {
            return Ok(Some(self.finish(next, true)));
        } else if (line[0] == b' ' || line[0] == b'\t') && self.in_field {
            Item::Continuation {
                start: pos,
                end: next,
            }
        } else if let Some(name) = field_name(line) {
            self.in_field = true;
            Item::Field {
                start: pos,
                end: next,
                name_len: name.len(),
            }
        } else {
            // Not a header line: the body starts here without a separator.
            return Ok(Some(self.finish(pos, false)));
        };
        if next > limit {
            return Err(HeaderTooLarge { limit });
        }
        self.pos = next;
        Ok(Some(item))
    }

    fn finish(&mut self, end: usize, had_separator: bool) -> Item {
        let item = Item::End { end, had_separator };
        self.end = Some(item);
        item
    }
}

/// The head of a message: its header fields and where the block ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub fields: Vec<Field>,
    /// How many input bytes the header block (and the separating empty line, when present) used.
    pub consumed: usize,
    /// Whether the input had an empty line between header and body. When false, the text after
    /// the fields is body text (`echo hello | rsend x@y`) and a separator must be inserted.
    pub had_separator: bool,
    /// A leading mbox "From " line was dropped.
    pub dropped_mbox_from: bool,
}

/// Splits the header block off `input`, which holds the start of the message; `complete` says
/// whether `input` is the whole message. Returns `Ok(None)` when more input is needed to find
/// the end of the header block; `limit` bounds the offset the block may reach.
pub fn split_head(
    input: &[u8],
    complete: bool,
    limit: usize,
) -> Result<Option<Head>, HeaderTooLarge> {
    let mut scanner = Scanner::default();
    let mut fields: Vec<Field> = Vec::new();
    let mut dropped_mbox_from = false;
    loop {
        let Some(item) = scanner.next(input, complete, limit)? else {
            return Ok(None);
        };
        match item {
            Item::MboxFrom { .. } => dropped_mbox_from = true,
            Item::Field {
                start,
                end,
                name_len,
            } => fields.push(Field {
                name: String::from_utf8_lossy(&input[start..start + name_len]).into_owned(),
                raw: input[start..end].to_vec(),
            }),
            Item::Continuation { start, end } => {
                if let Some(last) = fields.last_mut() {
                    last.raw.extend_from_slice(&input[start..end]);
                }
            }
            Item::End { end, had_separator } => {
                return Ok(Some(Head {
                    fields,
                    consumed: end,
                    had_separator,
                    dropped_mbox_from,
                }));
            }
        }
    }
}

/// The fields of the header block that starts `head` (the whole header, or as much of it as
/// was read, taken as complete).
pub fn fields_of(head: &[u8]) -> Vec<Field> {
    match split_head(head, true, usize::MAX) {
        Ok(Some(h)) => h.fields,
        _ => Vec::new(),
    }
}

/// The offset in `head` (a message, or a prefix of it holding at least its header block) of the
/// first field called `name`, if the header block has one.
pub fn field_offset(head: &[u8], name: &str) -> Option<usize> {
    let mut scanner = Scanner::default();
    loop {
        match scanner.next(head, true, usize::MAX) {
            Ok(Some(Item::Field {
                start, name_len, ..
            })) if head[start..start + name_len].eq_ignore_ascii_case(name.as_bytes()) => {
                return Some(start);
            }
            Ok(Some(Item::End { .. })) | Ok(None) | Err(_) => return None,
            Ok(Some(_)) => {}
        }
    }
}

/// The first control character in a value postie is about to write into a header (a display
/// name, an address, a domain), if any. CR and LF would start a new header line; the other
/// controls (NUL, TAB, ESC, DEL, the C1 range) have no business in those values either and are
/// refused by the same rule rather than encoded.
pub fn first_control(value: &str) -> Option<char> {
    value.chars().find(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::line::lines;

    fn block(input: &[u8]) -> Head {
        split_head(input, true, 1 << 20).unwrap().unwrap()
    }

    fn names(b: &Head) -> Vec<&str> {
        b.fields.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn every_line_ending_separates_fields() {
        let b = block(b"A: 1\r\nB: 2\nC: 3\rD: 4\r\n\r\nbody");
        assert_eq!(names(&b), ["A", "B", "C", "D"]);
        assert!(b.had_separator);
        assert_eq!(b.consumed, b"A: 1\r\nB: 2\nC: 3\rD: 4\r\n\r\n".len());
        // A lone CR right after a line end is an empty line: the header ends there.
        let b = block(b"A: 1\r\rB: 2\n");
        assert_eq!(names(&b), ["A"]);
        assert_eq!(b.consumed, 6);
        assert!(b.had_separator);
        // CR CR LF: a lone CR, then a CRLF that is an empty line.
        let b = block(b"A: 1\r\r\nB: 2\n");
        assert_eq!(names(&b), ["A"]);
        assert_eq!(b.consumed, 7);
    }

    #[test]
    fn folding_with_any_line_ending() {
        let b = block(b"To: a@b,\r c@d\r\n\td@e\nX: y\n\n");
        assert_eq!(names(&b), ["To", "X"]);
        assert_eq!(b.fields[0].raw, b"To: a@b,\r c@d\r\n\td@e\n");
        assert_eq!(b.fields[0].value(), "a@b,  c@d  \td@e");
    }

    #[test]
    fn undecided_cr_waits_for_more_input() {
        assert_eq!(split_head(b"A: 1\r", false, 100), Ok(None));
        assert_eq!(split_head(b"A: 1\n\r", false, 100), Ok(None));
        let done = split_head(b"A: 1\n\r", true, 100).unwrap().unwrap();
        assert!(done.had_separator);
        assert_eq!(done.consumed, 6);
    }

    #[test]
    fn too_large() {
        assert_eq!(
            split_head(b"A: 1234567890\n", false, 5),
            Err(HeaderTooLarge { limit: 5 })
        );
        assert_eq!(
            split_head(b"A: 1234567890", false, 5),
            Err(HeaderTooLarge { limit: 5 })
        );
    }

    /// The fields' raw bytes are exactly the header block's lines, so a check on the fields is a
    /// check on the lines any later reader splits with the same rule.
    #[test]
    fn fields_are_the_lines() {
        let input = b"A: 1\rB: 2\r\n c\rD:\n\re";
        let b = block(input);
        let from_fields: Vec<u8> = b.fields.iter().flat_map(|f| f.raw.clone()).collect();
        let mut from_lines = Vec::new();
        for l in lines(&input[..b.consumed]) {
            if l.text.is_empty() {
                break;
            }
            from_lines.extend_from_slice(l.text);
            from_lines.extend_from_slice(l.ending);
        }
        assert_eq!(from_fields, from_lines);
    }

    #[test]
    fn controls() {
        assert_eq!(first_control("Cron Daemon"), None);
        assert_eq!(first_control("J\u{f6}rg"), None);
        assert_eq!(first_control("a\rb"), Some('\r'));
        assert_eq!(first_control("a\nb"), Some('\n'));
        assert_eq!(first_control("a\tb"), Some('\t'));
        assert_eq!(first_control("a\u{0}b"), Some('\u{0}'));
        assert_eq!(first_control("a\u{7f}b"), Some('\u{7f}'));
        assert_eq!(first_control("a\u{85}b"), Some('\u{85}'));
    }

    /// Feeding the scanner a growing input gives the items and the end the whole input gives,
    /// wherever the input was cut, and each line is read once.
    #[test]
    fn resumable_scan_matches_whole() {
        let whole_items = |input: &[u8]| {
            let mut s = Scanner::default();
            let mut items = Vec::new();
            loop {
                let item = s.next(input, true, usize::MAX).unwrap().unwrap();
                items.push(item);
                if matches!(item, Item::End { .. }) {
                    return items;
                }
            }
        };
        for msg in [
            &b"From x Mon\r\nTo: a@b\r\n c@d\r\nSubject: s\r\n\r\nbody\r\n"[..],
            b"From x Mon\rTo: a@b\r c@d\rBcc: s\r\r\nbody\r",
            b"Subject: x\rBcc: y\r\n\rbody",
            b"A: 1\n\r",
            b" not a continuation\nA: 1\n\n",
            b"A: 1\nno header line\nB: 2\n\n",
            b"",
            b"From nobody",
        ] {
            let want = whole_items(msg);
            for step in 1..=3 {
                let mut s = Scanner::default();
                let mut got = Vec::new();
                let mut have = 0;
                loop {
                    let complete = have == msg.len();
                    match s.next(&msg[..have], complete, usize::MAX).unwrap() {
                        Some(item) => {
                            got.push(item);
                            if matches!(item, Item::End { .. }) {
                                break;
                            }
                        }
                        None => have = (have + step).min(msg.len()),
                    }
                }
                assert_eq!(got, want, "{msg:?} in steps of {step}");
            }
        }
    }

    #[test]
    fn mbox_from_line() {
        let b = block(b"From me@x Mon Nov 23 12:00:00 2026\nSubject: x\n\nb\n");
        assert!(b.dropped_mbox_from);
        assert_eq!(names(&b), ["Subject"]);
        // Only the first line, and only with a line ending.
        let b = block(b"A: 1\nFrom me@x\n\n");
        assert!(!b.dropped_mbox_from);
        assert_eq!(b.consumed, 5);
        let b = block(b"From me@x");
        assert!(!b.dropped_mbox_from);
        assert_eq!(b.consumed, 0);
    }

    #[test]
    fn fields_and_offsets() {
        let msg =
            b"Return-Path: <a@b>\r\nreceived: x\r\n y\r\nReceived: z\r\n\r\nReceived: body\r\n";
        assert_eq!(field_offset(msg, "Received"), Some(20));
        assert_eq!(field_offset(msg, "Return-Path"), Some(0));
        assert_eq!(field_offset(msg, "From"), None);
        assert_eq!(
            field_offset(b"From: a\n\nReceived: body\n", "Received"),
            None
        );
        let fields = fields_of(msg);
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[1].value(), "x   y");
        assert!(fields_of(b"").is_empty());
    }
}
