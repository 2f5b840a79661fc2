//! The IMAP client machine: tags, pending commands, the response reader that splits line
//! fragments from literals (streaming a FETCH body, skipping any other literal unstored), and
//! the events each response gives.

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::response::*;
use super::*;
use crate::proto::trace::{Outbound, printable};

#[derive(Debug)]
struct Pending {
    tag: String,
    kind: Kind,
    /// Parts still to send after continuation requests.
    rest: VecDeque<Outbound>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reading response text up to CRLF.
    Text,
    /// Inside a literal: `deliver` streams it as body chunks, otherwise it is skipped.
    Literal {
        remaining: u64,
        deliver: bool,
    },
    /// STARTTLS accepted: nothing is read until the handshake is done.
    TlsWait,
    Failed,
}

/// The IMAP client machine.
#[derive(Debug)]
pub struct Client {
    limits: Limits,
    buf: Vec<u8>,
    pos: usize,
    /// Where the search for the next LF resumes (avoids rescanning a long partial line).
    scan: usize,
    mode: Mode,
    /// Text of the response being read, literal contents replaced by `""`.
    text: Vec<u8>,
    /// Whether the current response already streamed a body literal.
    had_body: bool,
    greeted: bool,
    pending: VecDeque<Pending>,
    next_tag: u32,
    untagged: u64,
    caps: Vec<String>,
    queued: VecDeque<Event>,
    /// Received lines for the protocol trace, when it is on.
    trace: Option<Vec<String>>,
}

impl Client {
    /// A machine waiting for the greeting.
    pub fn new(limits: Limits) -> Self {
        Client {
            limits,
            buf: Vec::new(),
            pos: 0,
            scan: 0,
            mode: Mode::Text,
            text: Vec::new(),
            had_body: false,
            greeted: false,
            pending: VecDeque::new(),
            next_tag: 1,
            untagged: 0,
            caps: Vec::new(),
            queued: VecDeque::new(),
            trace: None,
        }
    }

    /// The capabilities last announced (upper-cased), empty until one arrives.
    pub fn capabilities(&self) -> &[String] {
        &self.caps
    }

    /// Whether capability `name` was announced.
    pub fn has_capability(&self, name: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(name))
    }

    /// Encodes `cmd` with a fresh tag; returns the tag and the bytes to write now. Any further
    /// parts (synchronising literals) come out later as [`Event::Send`].
    pub fn command(&mut self, cmd: &Command) -> (String, Outbound) {
        let tag = format!("A{:04}", self.next_tag);
        self.next_tag = self.next_tag.wrapping_add(1);
        let mut parts: VecDeque<Outbound> = cmd
            .segments(self.has_capability("LITERAL+"))
            .into_iter()
            .collect();
        let mut first = Outbound::plain(format!("{tag} ").into_bytes());
        first.append(&parts.pop_front().unwrap_or_default());
        self.pending.push_back(Pending {
            tag: tag.clone(),
            kind: cmd.kind(),
            rest: parts,
        });
        self.untagged = 0;
        (tag, first)
    }

    /// Whether `cmd` goes out in one write: false when it carries a synchronising literal (a
    /// folder name outside printable ASCII, without LITERAL+), whose rest waits for the
    /// server's continuation request, so nothing may be pipelined behind it.
    pub fn sends_in_one_piece(&self, cmd: &Command) -> bool {
        cmd.segments(self.has_capability("LITERAL+")).len() <= 1
    }

    /// The line answering a SASL challenge (secret); `None` cancels with "*".
    pub fn auth_response(&mut self, response: Option<&[u8]>) -> Outbound {
        let mut out = Outbound::default();
        match response {
            Some(r) => out.push_secret(B64.encode(r).as_bytes()),
            None => out.push_plain(b"*"),
        }
        out.push_plain(b"\r\n");
        out
    }

    /// The bytes that end IDLE.
    pub fn idle_done(&mut self) -> Outbound {
        Outbound::plain(b"DONE\r\n".to_vec())
    }

    /// Turns the record of received protocol lines on or off (see [`Client::take_trace`]).
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on.then(Vec::new);
    }

    /// The received response lines decoded since the last call, printable, with SASL
    /// challenges withheld and literals shown only as their size.
    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn note(&mut self, line: String) {
        if let Some(t) = self.trace.as_mut() {
            t.push(line);
        }
    }

    /// Whether a continuation request arriving now would be a SASL challenge (the same choice
    /// [`Client::continuation`] makes).
    fn continuation_is_challenge(&self) -> bool {
        self.pending
            .iter()
            .find(|p| !p.rest.is_empty() || matches!(p.kind, Kind::Authenticate | Kind::Idle))
            .is_some_and(|p| p.rest.is_empty() && p.kind == Kind::Authenticate)
    }

    /// Whether the machine waits for the TLS handshake after STARTTLS.
    pub fn awaiting_tls(&self) -> bool {
        self.mode == Mode::TlsWait
    }

    /// Call once TLS is up: bytes received before the handshake are dropped and the
    /// capabilities forgotten (RFC 9051 §6.2.1: ask CAPABILITY again).
    pub fn tls_established(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.scan = 0;
        self.text.clear();
        self.caps.clear();
        self.queued.clear();
        self.mode = Mode::Text;
    }

    /// Gives back the capacity the buffers grew to (a fetch leaves them at the size of the
    /// largest chunk or response) and keeps only the bytes not yet consumed: a session about
    /// to wait in IDLE for minutes should not hold it. Nothing observable changes.
    pub fn shrink(&mut self) {
        self.buf.drain(..self.pos.min(self.buf.len()));
        self.scan = self.scan.saturating_sub(self.pos);
        self.pos = 0;
        self.buf.shrink_to_fit();
        self.text.shrink_to_fit();
        self.pending.shrink_to_fit();
        self.queued.shrink_to_fit();
    }

    /// Adds bytes read from the server.
    pub fn receive(&mut self, data: &[u8]) {
        if matches!(self.mode, Mode::TlsWait | Mode::Failed) {
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next event, `Ok(None)` when more bytes are needed. After an error the machine is dead.
    pub fn poll(&mut self) -> Result<Option<Event>, ImapError> {
        if let Some(ev) = self.queued.pop_front() {
            return Ok(Some(ev));
        }
        let r = loop {
            match self.step() {
                Ok(Step::Event(ev)) => break Ok(Some(ev)),
                Ok(Step::Again) => continue,
                Ok(Step::NeedMore) => break Ok(None),
                Err(e) => break Err(e),
            }
        };
        if r.is_err() {
            self.mode = Mode::Failed;
        }
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.scan = self.scan.saturating_sub(self.pos);
            self.pos = 0;
        }
        r
    }

    fn step(&mut self) -> Result<Step, ImapError> {
        match self.mode {
            Mode::Failed | Mode::TlsWait => Ok(Step::NeedMore),
            Mode::Literal { remaining, deliver } => {
                let avail = (self.buf.len() - self.pos) as u64;
                if remaining == 0 {
                    self.mode = Mode::Text;
                    return Ok(Step::Again);
                }
                if avail == 0 {
                    return Ok(Step::NeedMore);
                }
                let take = avail.min(remaining).min(256 * 1024) as usize;
                let chunk = &self.buf[self.pos..self.pos + take];
                let ev = deliver.then(|| Event::BodyChunk(chunk.to_vec()));
                self.pos += take;
                self.scan = self.pos;
                self.mode = Mode::Literal {
                    remaining: remaining - take as u64,
                    deliver,
                };
                Ok(ev.map_or(Step::Again, Step::Event))
            }
            Mode::Text => {
                let start = self.scan.max(self.pos);
                let Some(off) = self.buf[start..].iter().position(|&b| b == b'\n') else {
                    self.scan = self.buf.len();
                    self.check_len(self.buf.len() - self.pos)?;
                    return Ok(Step::NeedMore);
                };
                let end = start + off;
                self.check_len(end - self.pos)?;
                let mut line = &self.buf[self.pos..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                let literal = literal_suffix(line)?;
                let line_len = line.len();
                let text_end = match literal {
                    Some((_, digits_at)) => digits_at,
                    None => line_len,
                };
                let fragment = self.buf[self.pos..self.pos + text_end].to_vec();
                if self.trace.is_some() {
                    // A challenge with the (withheld) response would be material for an
                    // offline guess at the password: it is not logged.
                    let shown = if self.text.is_empty()
                        && line.first() == Some(&b'+')
                        && self.continuation_is_challenge()
                    {
                        "+ <SASL challenge>".to_string()
                    } else {
                        printable(line)
                    };
                    self.note(shown);
                }
                self.pos = end + 1;
                self.scan = self.pos;
                self.text.extend_from_slice(&fragment);
                match literal {
                    Some((size, _)) => self.begin_literal(size),
                    None => {
                        let text = std::mem::take(&mut self.text);
                        let had_body = std::mem::replace(&mut self.had_body, false);
                        self.response(&text, had_body)
                    }
                }
            }
        }
    }

    fn check_len(&self, partial: usize) -> Result<(), ImapError> {
        let total = self.text.len() + partial;
        if total <= self.limits.max_line {
            return Ok(());
        }
        let head: &[u8] = if self.text.is_empty() {
            &self.buf[self.pos..]
        } else {
            &self.text
        };
        let is_search = starts_with_ci(head, b"* SEARCH") || starts_with_ci(head, b"* ESEARCH");
        if is_search && total <= self.limits.max_search_line {
            return Ok(());
        }
        Err(ImapError::LineTooLong(if is_search {
            self.limits.max_search_line
        } else {
            self.limits.max_line
        }))
    }

    fn begin_literal(&mut self, size: u64) -> Result<Step, ImapError> {
        if size > self.limits.max_literal {
            return Err(ImapError::LiteralTooLarge(size, self.limits.max_literal));
        }
        let fetch_seq = fetch_seq(&self.text);
        let is_body = fetch_seq.is_some() && !self.had_body && last_token_is_body(&self.text);
        self.note(if is_body {
            format!("<{size} octets of message data>")
        } else {
            format!("<{size} octets of literal data>")
        });
        // The literal counts as an empty string in the text we parse afterwards.
        self.text.extend_from_slice(b"\"\"");
        self.mode = Mode::Literal {
            remaining: size,
            deliver: is_body,
        };
        match fetch_seq {
            Some(seq) if is_body => {
                self.had_body = true;
                let attrs = parse_fetch_attrs(fetch_items(&self.text));
                Ok(Step::Event(Event::BodyStart { seq, attrs, size }))
            }
            _ => Ok(Step::Again),
        }
    }

    fn response(&mut self, text: &[u8], had_body: bool) -> Result<Step, ImapError> {
        if let Some(rest) = text.strip_prefix(b"+") {
            return self.continuation(rest);
        }
        if let Some(rest) = text.strip_prefix(b"* ") {
            if !self.greeted {
                self.greeted = true;
                let (status, code, text) = parse_cond(rest)?;
                if !matches!(status, Status::Ok | Status::Preauth | Status::Bye) {
                    return Err(ImapError::Unexpected(format!("greeting {status:?}")));
                }
                self.note_code(&code);
                return Ok(Step::Event(Event::Greeting { status, code, text }));
            }
            self.untagged += 1;
            if self.untagged > self.limits.max_untagged {
                return Err(ImapError::TooManyUntagged(self.limits.max_untagged));
            }
            return self.untagged_response(rest, had_body);
        }
        if !self.greeted {
            return Err(ImapError::Unexpected("response before the greeting".into()));
        }
        // Tagged completion.
        let sp = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
        let tag = String::from_utf8_lossy(&text[..sp]).into_owned();
        let Some(idx) = self.pending.iter().position(|p| p.tag == tag) else {
            return Err(ImapError::Unexpected(format!(
                "completion for unknown tag {:?}",
                truncate(&tag)
            )));
        };
        let Some(pending) = self.pending.remove(idx) else {
            return Err(ImapError::Unexpected("lost pending command".into()));
        };
        let (status, code, text) = parse_cond(text.get(sp + 1..).unwrap_or_default())?;
        if matches!(status, Status::Preauth) {
            return Err(ImapError::Malformed("tagged PREAUTH".into()));
        }
        self.note_code(&code);
        if pending.kind == Kind::StartTls && status == Status::Ok {
            // Anything after the tagged OK was sent before TLS: drop it now.
            self.mode = Mode::TlsWait;
            self.buf.clear();
            self.pos = 0;
            self.scan = 0;
        }
        Ok(Step::Event(Event::Done {
            tag,
            kind: pending.kind,
            status,
            code,
            text,
        }))
    }

    fn note_code(&mut self, code: &Option<Code>) {
        if let Some(Code::Capability(c)) = code {
            self.caps = c.clone();
        }
    }

    fn continuation(&mut self, rest: &[u8]) -> Result<Step, ImapError> {
        let rest = rest.strip_prefix(b" ").unwrap_or(rest);
        let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| !p.rest.is_empty() || matches!(p.kind, Kind::Authenticate | Kind::Idle))
        else {
            return Err(ImapError::Unexpected("continuation request".into()));
        };
        if let Some(part) = p.rest.pop_front() {
            return Ok(Step::Event(Event::Send(part)));
        }
        match p.kind {
            Kind::Idle => Ok(Step::Event(Event::Idling)),
            _ => {
                let text: Vec<u8> = rest.iter().copied().filter(|b| *b != b' ').collect();
                let challenge = B64
                    .decode(&text)
                    .map_err(|_| ImapError::Malformed("challenge is not base64".into()))?;
                Ok(Step::Event(Event::AuthChallenge(challenge)))
            }
        }
    }

    fn untagged_response(&mut self, rest: &[u8], had_body: bool) -> Result<Step, ImapError> {
        let (first, after) = split_word(rest);
        if let Ok(n) = parse_u32(first) {
            let (what, tail) = split_word(after);
            let ev = match what.to_ascii_uppercase().as_slice() {
                b"EXISTS" => Some(Event::Exists(n)),
                b"RECENT" => Some(Event::Recent(n)),
                b"EXPUNGE" => Some(Event::Expunge(n)),
                b"FETCH" => Some(Event::Fetch {
                    seq: n,
                    attrs: parse_fetch_attrs(strip_paren(tail)),
                    had_body,
                }),
                _ => None,
            };
            return Ok(ev.map_or(Step::Again, Step::Event));
        }
        match first.to_ascii_uppercase().as_slice() {
            b"OK" | b"NO" | b"BAD" | b"BYE" => {
                let (status, code, text) = parse_cond(rest)?;
                self.note_code(&code);
                Ok(Step::Event(Event::Untagged { status, code, text }))
            }
            b"CAPABILITY" => {
                self.caps = parse_caps(after)?;
                Ok(Step::Event(Event::Capabilities(self.caps.clone())))
            }
            b"SEARCH" => {
                let mut uids = Vec::new();
                for w in after.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
                    if w.starts_with(b"(") {
                        break; // RFC 7162 (MODSEQ n) suffix
                    }
                    uids.push(parse_u32(w)?);
                }
                Ok(Step::Event(Event::Search(uids)))
            }
            _ => Ok(Step::Again), // FLAGS, LIST, STATUS, ENABLED, ...: not needed
        }
    }
}

enum Step {
    Event(Event),
    Again,
    NeedMore,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_keeps_unread_bytes_and_gives_capacity_back() {
        let mut c = Client::new(Limits::default());
        let mut data = b"* OK hi\r\n* 3 EXISTS\r\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 100_000));
        c.receive(&data);
        assert!(matches!(c.poll(), Ok(Some(Event::Greeting { .. }))));
        c.shrink();
        assert!(c.buf.capacity() < 100_100, "{}", c.buf.capacity());
        assert_eq!(c.buf.len(), data.len() - b"* OK hi\r\n".len());
        assert_eq!(c.poll(), Ok(Some(Event::Exists(3))));
        let mut c = Client::new(Limits::default());
        c.receive(b"* OK hi\r\n");
        c.receive(&vec![b'y'; 50_000]);
        c.buf.truncate(b"* OK hi\r\n".len());
        assert!(matches!(c.poll(), Ok(Some(Event::Greeting { .. }))));
        c.shrink();
        assert_eq!(c.buf.capacity(), 0);
    }
}
