//! The header block of a message (RFC 5322 section 2.2): its fields with their folded
//! continuation lines, where the block ends, and whether an empty line separated it from the
//! body; lines are those of [`super::line`]. Also the rule for values postie itself writes into a
//! header: no control characters.

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

/// A header block found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBlock {
    pub fields: Vec<Field>,
    /// Offset in the input just after the block (and after the separating empty line, when
    /// there is one).
    pub end: usize,
    /// Whether an empty line ended the block. When false, the input ended or a line that is no
    /// header field began the body.
    pub had_separator: bool,
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

/// Scans the header block starting at `input[start..]`; `complete` says whether `input` holds the
/// whole message. Returns `Ok(None)` while more input is needed to find the block's end (a CR at
/// the end of incomplete input counts as undecided, as for every streaming user of
/// [`find_line_end`]). `limit` bounds the offset the block may reach.
pub fn scan(
    input: &[u8],
    start: usize,
    complete: bool,
    limit: usize,
) -> Result<Option<HeaderBlock>, HeaderTooLarge> {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = start.min(input.len());
    loop {
        let rest = &input[pos..];
        if rest.is_empty() {
            if !complete {
                return Ok(None);
            }
            // End of input inside (or right after) the header block: no body.
            return Ok(Some(HeaderBlock {
                fields,
                end: input.len(),
                had_separator: false,
            }));
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
        if line.is_empty() {
            return Ok(Some(HeaderBlock {
                fields,
                end: next,
                had_separator: true,
            }));
        }
        let whole_line = &input[pos..next];
        if (line[0] == b' ' || line[0] == b'\t')
            && let Some(last) = fields.last_mut()
        {
            last.raw.extend_from_slice(whole_line);
        } else if let Some(name) = field_name(line) {
            fields.push(Field {
                name: name.to_string(),
                raw: whole_line.to_vec(),
            });
        } else {
            // Not a header line: the body starts here without a separator.
            return Ok(Some(HeaderBlock {
                fields,
                end: pos,
                had_separator: false,
            }));
        }
        if next > limit {
            return Err(HeaderTooLarge { limit });
        }
        pos = next;
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

    fn block(input: &[u8]) -> HeaderBlock {
        scan(input, 0, true, 1 << 20).unwrap().unwrap()
    }

    fn names(b: &HeaderBlock) -> Vec<&str> {
        b.fields.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn every_line_ending_separates_fields() {
        let b = block(b"A: 1\r\nB: 2\nC: 3\rD: 4\r\n\r\nbody");
        assert_eq!(names(&b), ["A", "B", "C", "D"]);
        assert!(b.had_separator);
        assert_eq!(b.end, b"A: 1\r\nB: 2\nC: 3\rD: 4\r\n\r\n".len());
        // A lone CR right after a line end is an empty line: the header ends there.
        let b = block(b"A: 1\r\rB: 2\n");
        assert_eq!(names(&b), ["A"]);
        assert_eq!(b.end, 6);
        assert!(b.had_separator);
        // CR CR LF: a lone CR, then a CRLF that is an empty line.
        let b = block(b"A: 1\r\r\nB: 2\n");
        assert_eq!(names(&b), ["A"]);
        assert_eq!(b.end, 7);
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
        assert_eq!(scan(b"A: 1\r", 0, false, 100), Ok(None));
        assert_eq!(scan(b"A: 1\n\r", 0, false, 100), Ok(None));
        let done = scan(b"A: 1\n\r", 0, true, 100).unwrap().unwrap();
        assert!(done.had_separator);
        assert_eq!(done.end, 6);
    }

    #[test]
    fn too_large() {
        assert_eq!(
            scan(b"A: 1234567890\n", 0, false, 5),
            Err(HeaderTooLarge { limit: 5 })
        );
        assert_eq!(
            scan(b"A: 1234567890", 0, false, 5),
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
        for l in lines(&input[..b.end]) {
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
}
