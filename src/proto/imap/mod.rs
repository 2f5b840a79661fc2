//! The IMAP client protocol machine, sans-I/O (an RFC 9051 / RFC 3501 subset): tagged commands,
//! greeting (OK / PREAUTH / BYE), CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE (with SASL-IR,
//! RFC 4959), SELECT/EXAMINE, UID SEARCH, UID FETCH with the message literal streamed in chunks,
//! UID STORE, EXPUNGE / UID EXPUNGE (RFC 4315), IDLE (RFC 2177), NOOP and LOGOUT.
//!
//! Bytes go in through [`Client::receive`], events come out of [`Client::poll`]. Every response is
//! read as a sequence of line fragments separated by literals; literal contents are either
//! streamed to the caller (the body of a FETCH) or skipped without being stored, so untagged data
//! we do not understand never desynchronises the connection. Memory is bounded by [`Limits`].

use std::collections::VecDeque;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::proto::trace::{Outbound, printable};

/// Size bounds on what the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest response text (all fragments of one response, literals excluded).
    pub max_line: usize,
    /// Longest `* SEARCH` response (it lists every matching UID on one line).
    pub max_search_line: usize,
    /// Largest literal accepted, streamed or skipped.
    pub max_literal: u64,
    /// Most untagged responses between two tagged completions.
    pub max_untagged: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_search_line: 64 * 1024 * 1024,
            max_literal: 1 << 30,
            max_untagged: 50_000_000,
        }
    }
}

/// The server broke the protocol or a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImapError {
    #[error("server response longer than {0} bytes")]
    LineTooLong(usize),
    #[error("server literal of {0} bytes exceeds the limit of {1}")]
    LiteralTooLarge(u64, u64),
    #[error("more than {0} untagged responses to one command")]
    TooManyUntagged(u64),
    #[error("server announced more than {0} capabilities")]
    TooManyCapabilities(usize),
    #[error("malformed server response: {0}")]
    Malformed(String),
    #[error("unexpected server response: {0}")]
    Unexpected(String),
}

/// Response condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

/// Response codes we act on (RFC 9051 §7.1, RFC 5530).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Capability(Vec<String>),
    UidValidity(u32),
    UidNext(u32),
    /// [UNAVAILABLE], [INUSE], [LIMIT], [SERVERBUG]-like temporary conditions.
    Temporary(String),
    /// [AUTHENTICATIONFAILED], [AUTHORIZATIONFAILED], [EXPIRED], [PRIVACYREQUIRED].
    AuthFailed(String),
    Other(String),
}

/// What a FETCH response said about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchAttrs {
    pub uid: Option<u32>,
    pub size: Option<u64>,
    pub flags: Option<Vec<String>>,
}

/// Which command a tagged completion belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Capability,
    Noop,
    Logout,
    StartTls,
    Login,
    Authenticate,
    Select,
    Search,
    Fetch,
    Store,
    Expunge,
    Idle,
}

/// One thing the server said (or, for [`Event::Send`], bytes the driver must write now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Greeting {
        status: Status,
        code: Option<Code>,
        text: String,
    },
    /// Untagged OK/NO/BAD/BYE.
    Untagged {
        status: Status,
        code: Option<Code>,
        text: String,
    },
    Capabilities(Vec<String>),
    Exists(u32),
    /// `* n RECENT` (IMAP4rev1; an IDLE wake-up on servers that announce new mail this way).
    Recent(u32),
    Expunge(u32),
    Search(Vec<u32>),
    /// A FETCH response's message literal begins; `attrs` holds what preceded it.
    BodyStart {
        seq: u32,
        attrs: FetchAttrs,
        size: u64,
    },
    /// Literal bytes of the body that [`Event::BodyStart`] announced.
    BodyChunk(Vec<u8>),
    /// A complete FETCH response (after its body, if any).
    Fetch {
        seq: u32,
        attrs: FetchAttrs,
        had_body: bool,
    },
    /// A SASL challenge (base64-decoded): answer with [`Client::auth_response`].
    AuthChallenge(Vec<u8>),
    /// The server accepted IDLE; end it with [`Client::idle_done`].
    Idling,
    /// The server asked for the rest of a command (synchronising literal): write these bytes
    /// (their secret part, a password, is marked for the trace).
    Send(Outbound),
    /// A tagged completion. After STARTTLS with `Status::Ok` the machine waits for
    /// [`Client::tls_established`].
    Done {
        tag: String,
        kind: Kind,
        status: Status,
        code: Option<Code>,
        text: String,
    },
}

/// What UID SEARCH looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    All,
    Unseen,
    /// `UID n:*`: messages with UID n or higher (plus the highest, as `*` always matches one).
    UidFrom(u32),
}

/// A command. Secrets are hidden by [`Command::redacted`] and Debug.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    StartTls,
    Login {
        user: String,
        password: String,
    },
    /// `initial` is sent as SASL-IR (RFC 4959); only pass it when SASL-IR is advertised.
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Select(String),
    Examine(String),
    UidSearch(Search),
    /// `UID FETCH set (UID RFC822.SIZE FLAGS BODY.PEEK[])` when `body`, else without the body.
    UidFetch {
        set: String,
        body: bool,
    },
    /// `UID STORE set +FLAGS.SILENT (flags)`.
    UidStoreAdd {
        set: String,
        flags: Vec<String>,
    },
    UidExpunge(String),
    Expunge,
    Idle,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Command {
    /// The command as it may appear in a log (without tag): secrets shown as `*`.
    pub fn redacted(&self) -> String {
        let mut all = Outbound::default();
        for part in self.segments(false) {
            all.append(&part);
        }
        all.trace_lines().join(" ")
    }

    fn kind(&self) -> Kind {
        match self {
            Command::Capability => Kind::Capability,
            Command::Noop => Kind::Noop,
            Command::Logout => Kind::Logout,
            Command::StartTls => Kind::StartTls,
            Command::Login { .. } => Kind::Login,
            Command::Authenticate { .. } => Kind::Authenticate,
            Command::Select(_) | Command::Examine(_) => Kind::Select,
            Command::UidSearch(_) => Kind::Search,
            Command::UidFetch { .. } => Kind::Fetch,
            Command::UidStoreAdd { .. } => Kind::Store,
            Command::UidExpunge(_) | Command::Expunge => Kind::Expunge,
            Command::Idle => Kind::Idle,
        }
    }

    /// The command text (without tag) split where synchronising literals need a continuation,
    /// secrets (the LOGIN password, an initial response) marked.
    fn segments(&self, literal_plus: bool) -> Vec<Outbound> {
        let mut w = Segments {
            parts: vec![Outbound::default()],
            literal_plus,
        };
        match self {
            Command::Capability => w.raw("CAPABILITY"),
            Command::Noop => w.raw("NOOP"),
            Command::Logout => w.raw("LOGOUT"),
            Command::StartTls => w.raw("STARTTLS"),
            Command::Login { user, password } => {
                w.raw("LOGIN ");
                w.astring(user.as_bytes(), false);
                w.raw(" ");
                w.astring(password.as_bytes(), true);
            }
            Command::Authenticate { mechanism, initial } => {
                w.raw("AUTHENTICATE ");
                w.raw(&sanitize_atom(mechanism));
                if let Some(i) = initial {
                    w.raw(" ");
                    if i.is_empty() {
                        w.raw("=");
                    } else {
                        w.secret(B64.encode(i).as_bytes());
                    }
                }
            }
            Command::Select(m) => {
                w.raw("SELECT ");
                w.astring(m.as_bytes(), false);
            }
            Command::Examine(m) => {
                w.raw("EXAMINE ");
                w.astring(m.as_bytes(), false);
            }
            Command::UidSearch(s) => match s {
                Search::All => w.raw("UID SEARCH ALL"),
                Search::Unseen => w.raw("UID SEARCH UNSEEN"),
                Search::UidFrom(n) => w.raw(&format!("UID SEARCH UID {n}:*")),
            },
            Command::UidFetch { set, body } => w.raw(&format!(
                "UID FETCH {} (UID RFC822.SIZE FLAGS{})",
                sanitize_set(set),
                if *body { " BODY.PEEK[]" } else { "" }
            )),
            Command::UidStoreAdd { set, flags } => {
                let flags: Vec<String> = flags.iter().map(|f| sanitize_flag(f)).collect();
                w.raw(&format!(
                    "UID STORE {} +FLAGS.SILENT ({})",
                    sanitize_set(set),
                    flags.join(" ")
                ))
            }
            Command::UidExpunge(set) => w.raw(&format!("UID EXPUNGE {}", sanitize_set(set))),
            Command::Expunge => w.raw("EXPUNGE"),
            Command::Idle => w.raw("IDLE"),
        }
        if let Some(last) = w.parts.last_mut() {
            last.push_plain(b"\r\n");
        }
        w.parts
    }
}

fn sanitize_set(set: &str) -> String {
    set.chars()
        .filter(|c| c.is_ascii_digit() || matches!(c, ':' | ',' | '*'))
        .collect()
}

fn sanitize_atom(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}

fn sanitize_flag(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '(' | ')' | '{' | '"' | '%' | '*' | ']'))
        .collect()
}

struct Segments {
    parts: Vec<Outbound>,
    literal_plus: bool,
}

impl Segments {
    fn cur(&mut self) -> &mut Outbound {
        if self.parts.is_empty() {
            self.parts.push(Outbound::default());
        }
        let last = self.parts.len() - 1;
        &mut self.parts[last]
    }

    fn raw(&mut self, s: &str) {
        self.cur().push_plain(s.as_bytes());
    }

    fn secret(&mut self, s: &[u8]) {
        self.cur().push_secret(s);
    }

    /// A quoted string when every byte is printable ASCII, else a literal (RFC 9051 §4.3). A
    /// `secret` value is marked whole: the quoted string with its quotes, or the literal's
    /// contents (its `{n}` announcement stays visible).
    fn astring(&mut self, s: &[u8], secret: bool) {
        let push = |out: &mut Outbound, bytes: &[u8]| {
            if secret {
                out.push_secret(bytes);
            } else {
                out.push_plain(bytes);
            }
        };
        if s.iter().all(|&b| (0x20..0x7f).contains(&b)) {
            let mut quoted = vec![b'"'];
            for &b in s {
                if b == b'"' || b == b'\\' {
                    quoted.push(b'\\');
                }
                quoted.push(b);
            }
            quoted.push(b'"');
            push(self.cur(), &quoted);
        } else if self.literal_plus {
            self.raw(&format!("{{{}+}}\r\n", s.len()));
            push(self.cur(), s);
        } else {
            self.raw(&format!("{{{}}}\r\n", s.len()));
            let mut next = Outbound::default();
            push(&mut next, s);
            self.parts.push(next);
        }
    }
}

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

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

fn parse_u32(w: &[u8]) -> Result<u32, ImapError> {
    parse_u64(w).and_then(|n| {
        u32::try_from(n).map_err(|_| ImapError::Malformed(format!("number {n} out of range")))
    })
}

fn parse_u64(w: &[u8]) -> Result<u64, ImapError> {
    if w.is_empty() || w.len() > 20 || !w.iter().all(u8::is_ascii_digit) {
        return Err(ImapError::Malformed(format!(
            "not a number: {:?}",
            truncate(&String::from_utf8_lossy(w))
        )));
    }
    String::from_utf8_lossy(w)
        .parse()
        .map_err(|_| ImapError::Malformed("number out of range".into()))
}

/// `{n}` or `{n+}` at the end of a line: the literal size and where the `{` starts.
fn literal_suffix(line: &[u8]) -> Result<Option<(u64, usize)>, ImapError> {
    if line.last() != Some(&b'}') {
        return Ok(None);
    }
    let Some(open) = line.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let inner = &line[open + 1..line.len() - 1];
    let digits = inner.strip_suffix(b"+").unwrap_or(inner);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None); // "}" ending ordinary text
    }
    if digits.len() > 19 {
        return Err(ImapError::Malformed("absurd literal size".into()));
    }
    Ok(Some((parse_u64(digits)?, open)))
}

/// Most capability names accepted in one announcement (AUTH= mechanisms included; real
/// servers send a few dozen).
pub const MAX_CAPABILITIES: usize = 512;

fn parse_caps(s: &[u8]) -> Result<Vec<String>, ImapError> {
    let mut caps = Vec::new();
    for word in String::from_utf8_lossy(s).split_ascii_whitespace() {
        if caps.len() >= MAX_CAPABILITIES {
            return Err(ImapError::TooManyCapabilities(MAX_CAPABILITIES));
        }
        caps.push(word.to_ascii_uppercase());
    }
    Ok(caps)
}

/// `OK [CODE args] text` (also NO/BAD/BYE/PREAUTH).
fn parse_cond(s: &[u8]) -> Result<(Status, Option<Code>, String), ImapError> {
    let (word, rest) = split_word(s);
    let status = match word.to_ascii_uppercase().as_slice() {
        b"OK" => Status::Ok,
        b"NO" => Status::No,
        b"BAD" => Status::Bad,
        b"BYE" => Status::Bye,
        b"PREAUTH" => Status::Preauth,
        _ => {
            return Err(ImapError::Malformed(format!(
                "expected OK/NO/BAD/BYE, got {:?}",
                truncate(&String::from_utf8_lossy(word))
            )));
        }
    };
    let mut code = None;
    let mut text = rest;
    if let Some(inner) = rest.strip_prefix(b"[")
        && let Some(close) = inner.iter().position(|&b| b == b']')
    {
        let (name, args) = split_word(&inner[..close]);
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        code = Some(match name.as_str() {
            "CAPABILITY" => Code::Capability(parse_caps(args)?),
            "UIDVALIDITY" => Code::UidValidity(parse_u32(args)?),
            "UIDNEXT" => Code::UidNext(parse_u32(args)?),
            "UNAVAILABLE" | "INUSE" | "LIMIT" | "SERVERBUG" => Code::Temporary(name),
            "AUTHENTICATIONFAILED" | "AUTHORIZATIONFAILED" | "EXPIRED" | "PRIVACYREQUIRED" => {
                Code::AuthFailed(name)
            }
            _ => Code::Other(name),
        });
        text = inner.get(close + 1..).unwrap_or_default();
    }
    let text = String::from_utf8_lossy(text).trim().to_string();
    Ok((status, code, text))
}

/// The sequence number when `text` is `* n FETCH ...`.
fn fetch_seq(text: &[u8]) -> Option<u32> {
    let rest = text.strip_prefix(b"* ")?;
    let (n, after) = split_word(rest);
    let (what, _) = split_word(after);
    if !what.eq_ignore_ascii_case(b"FETCH") {
        return None;
    }
    parse_u32(n).ok()
}

/// The item list of `* n FETCH (...)`.
fn fetch_items(text: &[u8]) -> &[u8] {
    let rest = text.strip_prefix(b"* ").unwrap_or(text);
    let (_, after) = split_word(rest);
    let (_, items) = split_word(after);
    strip_paren(items)
}

fn strip_paren(s: &[u8]) -> &[u8] {
    s.strip_prefix(b"(").unwrap_or(s)
}

/// Whether the text before a literal ends with a body item name (`BODY[]`, `BODY[]<0>`,
/// `RFC822`, ...): the literal is then message content to stream.
fn last_token_is_body(text: &[u8]) -> bool {
    let trimmed = text.trim_ascii_end();
    let start = trimmed
        .iter()
        .rposition(|&b| b == b' ' || b == b'(')
        .map_or(0, |i| i + 1);
    let token = trimmed[start..].to_ascii_uppercase();
    (token.starts_with(b"BODY[") && !token.starts_with(b"BODY[HEADER"))
        || token == b"RFC822"
        || token == b"RFC822.TEXT"
        || token == b"BINARY[]"
}

#[derive(Debug, PartialEq)]
enum Tok {
    Open,
    Close,
    Atom(Vec<u8>),
}

/// A tolerant tokenizer for FETCH item lists: atoms (with `[...]` sections and `<n>` suffixes
/// kept whole), quoted strings (as atoms) and parentheses.
fn tokens(s: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b' ' => i += 1,
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                out.push(Tok::Close);
                i += 1;
            }
            b'"' => {
                let mut v = Vec::new();
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' {
                        i += 1;
                    }
                    if let Some(&b) = s.get(i) {
                        v.push(b);
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Atom(v));
            }
            _ => {
                let start = i;
                let mut depth = 0u32;
                while i < s.len() {
                    let b = s[i];
                    if b == b'[' {
                        depth += 1;
                    } else if b == b']' {
                        depth = depth.saturating_sub(1);
                    } else if depth == 0 && matches!(b, b' ' | b'(' | b')') {
                        break;
                    }
                    i += 1;
                }
                out.push(Tok::Atom(s[start..i].to_vec()));
            }
        }
    }
    out
}

fn parse_fetch_attrs(items: &[u8]) -> FetchAttrs {
    let toks = tokens(items);
    let mut attrs = FetchAttrs::default();
    let mut i = 0;
    while i < toks.len() {
        let Tok::Atom(name) = &toks[i] else {
            i += 1;
            continue;
        };
        let name = name.to_ascii_uppercase();
        i += 1;
        match (name.as_slice(), toks.get(i)) {
            (b"UID", Some(Tok::Atom(v))) => {
                attrs.uid = parse_u32(v).ok();
                i += 1;
            }
            (b"RFC822.SIZE", Some(Tok::Atom(v))) => {
                attrs.size = parse_u64(v).ok();
                i += 1;
            }
            (b"FLAGS", Some(Tok::Open)) => {
                let mut flags = Vec::new();
                i += 1;
                while let Some(Tok::Atom(f)) = toks.get(i) {
                    if flags.len() < 256 {
                        flags.push(String::from_utf8_lossy(f).into_owned());
                    }
                    i += 1;
                }
                i += 1; // the closing paren
                attrs.flags = Some(flags);
            }
            (_, Some(Tok::Open)) => {
                // Skip a parenthesised value.
                let mut depth = 0usize;
                while let Some(t) = toks.get(i) {
                    match t {
                        Tok::Open => depth += 1,
                        Tok::Close => depth = depth.saturating_sub(1),
                        Tok::Atom(_) => {}
                    }
                    i += 1;
                    if depth == 0 {
                        break;
                    }
                }
            }
            (_, Some(Tok::Atom(_))) => i += 1,
            _ => {}
        }
    }
    attrs
}

#[cfg(test)]
mod tests {
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

    use super::*;

    /// Runs commands then feeds `input` in `step`-byte pieces, merging body chunks.
    fn run(cmds: &[Command], input: &[u8], step: usize) -> Result<Vec<Event>, ImapError> {
        let mut c = Client::new(Limits::default());
        run_with(&mut c, cmds, input, step)
    }

    fn run_with(
        c: &mut Client,
        cmds: &[Command],
        input: &[u8],
        step: usize,
    ) -> Result<Vec<Event>, ImapError> {
        for cmd in cmds {
            c.command(cmd);
        }
        let mut events: Vec<Event> = Vec::new();
        for piece in input.chunks(step.max(1)) {
            c.receive(piece);
            while let Some(ev) = c.poll()? {
                if let (Event::BodyChunk(d), Some(Event::BodyChunk(prev))) =
                    (&ev, events.last_mut())
                {
                    prev.extend_from_slice(d);
                    continue;
                }
                events.push(ev);
            }
        }
        Ok(events)
    }

    fn all_steps(cmds: &[Command], input: &[u8]) -> Vec<Event> {
        let whole = run(cmds, input, input.len().max(1)).expect("decodes");
        for step in [1, 2, 3, 5, 7] {
            assert_eq!(
                run(cmds, input, step).expect("decodes"),
                whole,
                "step {step}"
            );
        }
        whole
    }

    #[test]
    fn trace_shows_lines_withholds_challenges_and_summarises_literals() {
        let mut c = Client::new(Limits::default());
        c.set_trace(true);
        let input = b"* OK hi\x1b]0;x\x07\r\n+ PDEyMzQ+\r\nA0001 OK in\r\n* 1 FETCH (UID 5 BODY[] {6}\r\nsecret)\r\n* 2 FETCH (X {3}\r\nabc)\r\nA0002 OK done\r\n";
        run_with(
            &mut c,
            &[
                Command::Authenticate {
                    mechanism: "CRAM-MD5".into(),
                    initial: None,
                },
                Command::UidFetch {
                    set: "5".into(),
                    body: true,
                },
            ],
            input,
            4,
        )
        .expect("decodes");
        assert_eq!(
            c.take_trace(),
            vec![
                "* OK hi\\u{1b}]0;x\\u{7}",
                "+ <SASL challenge>",
                "A0001 OK in",
                "* 1 FETCH (UID 5 BODY[] {6}",
                "<6 octets of message data>",
                ")",
                "* 2 FETCH (X {3}",
                "<3 octets of literal data>",
                ")",
                "A0002 OK done",
            ]
        );
    }

    #[test]
    fn capability_flood_is_an_error() {
        let words = "X ".repeat(MAX_CAPABILITIES + 1);
        let input = format!("* OK hi\r\n* CAPABILITY {words}\r\n");
        assert_eq!(
            run(&[Command::Capability], input.as_bytes(), 64),
            Err(ImapError::TooManyCapabilities(MAX_CAPABILITIES))
        );
        let input = format!("* OK [CAPABILITY {words}] hi\r\n");
        assert_eq!(
            run(&[], input.as_bytes(), 64),
            Err(ImapError::TooManyCapabilities(MAX_CAPABILITIES))
        );
    }

    fn done(tag: &str, kind: Kind) -> Event {
        Event::Done {
            tag: tag.into(),
            kind,
            status: Status::Ok,
            code: None,
            text: "done".into(),
        }
    }

    #[test]
    fn select_search_fetch_stream() {
        let body = b"From: a\r\n\r\n.\r\n{5}\r\nA0002 OK fake\r\n\xff\r\n";
        let mut input = b"* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] hi\r\n".to_vec();
        input.extend_from_slice(
            b"* FLAGS (\\Seen \\Deleted)\r\n* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 77] v\r\n* OK [UIDNEXT 9] n\r\nA0001 OK [READ-WRITE] done\r\n",
        );
        input.extend_from_slice(b"* SEARCH 4 7 8\r\nA0002 OK done\r\n");
        input.extend_from_slice(
            format!(
                "* 1 FETCH (UID 4 RFC822.SIZE {} FLAGS (\\Seen $X) BODY[] {{{}}}\r\n",
                body.len(),
                body.len()
            )
            .as_bytes(),
        );
        input.extend_from_slice(body);
        input.extend_from_slice(b")\r\n* 2 FETCH (UID 7 BODY[] {0}\r\n FLAGS ())\r\n* 5 FETCH (FLAGS (\\Seen))\r\nA0003 OK done\r\n");
        let ev = all_steps(
            &[
                Command::Select("INBOX".into()),
                Command::UidSearch(Search::All),
                Command::UidFetch {
                    set: "4,7".into(),
                    body: true,
                },
            ],
            &input,
        );
        let want = vec![
            Event::Greeting {
                status: Status::Ok,
                code: Some(Code::Capability(vec![
                    "IMAP4REV1".into(),
                    "LITERAL+".into(),
                    "IDLE".into(),
                ])),
                text: "hi".into(),
            },
            Event::Exists(3),
            Event::Recent(0),
            Event::Untagged {
                status: Status::Ok,
                code: Some(Code::UidValidity(77)),
                text: "v".into(),
            },
            Event::Untagged {
                status: Status::Ok,
                code: Some(Code::UidNext(9)),
                text: "n".into(),
            },
            Event::Done {
                tag: "A0001".into(),
                kind: Kind::Select,
                status: Status::Ok,
                code: Some(Code::Other("READ-WRITE".into())),
                text: "done".into(),
            },
            Event::Search(vec![4, 7, 8]),
            done("A0002", Kind::Search),
            Event::BodyStart {
                seq: 1,
                attrs: FetchAttrs {
                    uid: Some(4),
                    size: Some(body.len() as u64),
                    flags: Some(vec!["\\Seen".into(), "$X".into()]),
                },
                size: body.len() as u64,
            },
            Event::BodyChunk(body.to_vec()),
            Event::Fetch {
                seq: 1,
                attrs: FetchAttrs {
                    uid: Some(4),
                    size: Some(body.len() as u64),
                    flags: Some(vec!["\\Seen".into(), "$X".into()]),
                },
                had_body: true,
            },
            Event::BodyStart {
                seq: 2,
                attrs: FetchAttrs {
                    uid: Some(7),
                    ..FetchAttrs::default()
                },
                size: 0,
            },
            Event::Fetch {
                seq: 2,
                attrs: FetchAttrs {
                    uid: Some(7),
                    size: None,
                    flags: Some(vec![]),
                },
                had_body: true,
            },
            Event::Fetch {
                seq: 5,
                attrs: FetchAttrs {
                    flags: Some(vec!["\\Seen".into()]),
                    ..FetchAttrs::default()
                },
                had_body: false,
            },
            done("A0003", Kind::Fetch),
        ];
        assert_eq!(ev, want);
    }

    #[test]
    fn unknown_untagged_with_literals_is_skipped() {
        let input = b"* OK hi\r\n* LIST () \"/\" {5}\r\nA0001\r\n* XFOO {3}\r\n)(\"{2}\r\nab and more\r\n* 1 FETCH (ENVELOPE (\"x\" {4}\r\nBODY) UID 9)\r\nA0001 OK done\r\n";
        let ev = all_steps(&[Command::Noop], input);
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert!(
            matches!(&ev[1], Event::Fetch { seq: 1, attrs, had_body: false } if attrs.uid == Some(9))
        );
        assert_eq!(ev[2], done("A0001", Kind::Noop));
    }

    #[test]
    fn greetings_and_byes() {
        let ev = all_steps(&[], b"* PREAUTH [CAPABILITY IMAP4rev1] ready\r\n");
        assert!(matches!(
            &ev[0],
            Event::Greeting {
                status: Status::Preauth,
                ..
            }
        ));
        let ev = all_steps(&[], b"* BYE go away\r\n");
        assert!(matches!(
            &ev[0],
            Event::Greeting {
                status: Status::Bye,
                ..
            }
        ));
        assert!(run(&[], b"* NO nope\r\n", 1).is_err());
        assert!(run(&[], b"A0001 OK early\r\n", 2).is_err());
        let ev = all_steps(&[Command::Logout], b"* OK\r\n* BYE bye\r\nA0001 OK out\r\n");
        assert!(matches!(
            &ev[1],
            Event::Untagged {
                status: Status::Bye,
                ..
            }
        ));
    }

    #[test]
    fn starttls_drops_injected_bytes_and_caps() {
        let mut c = Client::new(Limits::default());
        c.command(&Command::StartTls);
        c.receive(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\nA0001 OK go\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n");
        assert!(matches!(c.poll(), Ok(Some(Event::Greeting { .. }))));
        assert!(matches!(
            c.poll(),
            Ok(Some(Event::Done {
                kind: Kind::StartTls,
                ..
            }))
        ));
        assert_eq!(c.poll(), Ok(None));
        assert!(c.awaiting_tls());
        c.tls_established();
        assert!(c.capabilities().is_empty());
        c.command(&Command::Capability);
        c.receive(b"* CAPABILITY IMAP4rev1 SASL-IR\r\nA0002 OK\r\n");
        assert_eq!(
            c.poll(),
            Ok(Some(Event::Capabilities(vec![
                "IMAP4REV1".into(),
                "SASL-IR".into()
            ])))
        );
        assert!(c.has_capability("sasl-ir"));
    }

    #[test]
    fn login_quoting_and_literals() {
        let mut c = Client::new(Limits::default());
        let (_, bytes) = c.command(&Command::Login {
            user: "bob".into(),
            password: "p\"w\\x".into(),
        });
        assert_eq!(bytes.bytes, b"A0001 LOGIN \"bob\" \"p\\\"w\\\\x\"\r\n");
        assert_eq!(bytes.trace(), "A0001 LOGIN \"bob\" *");
        let (tag, bytes) = c.command(&Command::Login {
            user: "bob".into(),
            password: "p\u{e9}w".into(),
        });
        assert_eq!(tag, "A0002");
        assert_eq!(bytes.bytes, b"A0002 LOGIN \"bob\" {4}\r\n");
        c.receive(b"* OK hi\r\n+ go ahead\r\n");
        assert!(matches!(c.poll(), Ok(Some(Event::Greeting { .. }))));
        match c.poll() {
            Ok(Some(Event::Send(part))) => {
                assert_eq!(part.bytes, "p\u{e9}w\r\n".as_bytes());
                assert_eq!(part.trace_lines(), vec!["*"]);
                assert!(!format!("{part:?}").contains("112"), "{part:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !format!(
                "{:?}",
                Command::Login {
                    user: "u".into(),
                    password: "secret".into()
                }
            )
            .contains("secret")
        );
        // With LITERAL+ the literal goes in one write.
        let mut c = Client::new(Limits::default());
        c.receive(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n");
        assert!(c.poll().is_ok());
        let (_, bytes) = c.command(&Command::Login {
            user: "a\nb".into(),
            password: "x".into(),
        });
        assert_eq!(bytes.bytes, b"A0001 LOGIN {3+}\r\na\nb \"x\"\r\n");
        assert_eq!(bytes.trace_lines(), vec!["A0001 LOGIN {3+}", "a", "b *"]);
        let (_, bytes) = c.command(&Command::Login {
            user: "bob".into(),
            password: "p\u{e9}w".into(),
        });
        assert_eq!(
            bytes.bytes,
            "A0002 LOGIN \"bob\" {4+}\r\np\u{e9}w\r\n".as_bytes()
        );
        assert_eq!(bytes.trace_lines(), vec!["A0002 LOGIN \"bob\" {4+}", "*"]);
    }

    #[test]
    fn authenticate_and_idle() {
        let input = b"* OK hi\r\n+ \r\n+ PDEyMzQ+\r\nA0001 NO [AUTHENTICATIONFAILED] bad\r\n+ idling\r\n* 4 EXISTS\r\n* 2 EXPUNGE\r\nA0002 OK idle done\r\n";
        let ev = all_steps(
            &[
                Command::Authenticate {
                    mechanism: "CRAM-MD5".into(),
                    initial: None,
                },
                Command::Idle,
            ],
            input,
        );
        assert_eq!(ev[1], Event::AuthChallenge(vec![]));
        assert_eq!(ev[2], Event::AuthChallenge(b"<1234>".to_vec()));
        assert!(matches!(
            &ev[3],
            Event::Done {
                status: Status::No,
                code: Some(Code::AuthFailed(_)),
                ..
            }
        ));
        assert_eq!(ev[4], Event::Idling);
        assert_eq!(ev[5], Event::Exists(4));
        assert_eq!(ev[6], Event::Expunge(2));
        let mut c = Client::new(Limits::default());
        let (_, b) = c.command(&Command::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(b"\0u\0p".to_vec()),
        });
        assert_eq!(b.bytes, b"A0001 AUTHENTICATE PLAIN AHUAcA==\r\n");
        assert_eq!(b.trace(), "A0001 AUTHENTICATE PLAIN *");
        assert_eq!(c.auth_response(Some(b"pw")).trace(), "*");
    }

    /// IDLE as RFC 2177 and real servers say it: the continuation, wake-ups (EXISTS, RECENT,
    /// EXPUNGE), keep-alives, a BYE, and the completion after DONE; every chunking.
    #[test]
    fn idle_table() {
        let ok_done = |tag: &str| Event::Done {
            tag: tag.into(),
            kind: Kind::Idle,
            status: Status::Ok,
            code: None,
            text: "Idle completed".into(),
        };
        let cases: Vec<(&[u8], Vec<Event>)> = vec![
            (
                b"* OK hi\r\n+ idling\r\n* 7 EXISTS\r\n* 1 RECENT\r\nA0001 OK Idle completed\r\n",
                vec![Event::Idling, Event::Exists(7), Event::Recent(1), ok_done("A0001")],
            ),
            (
                b"* OK hi\r\n+ idling\r\n* OK Still here\r\n* 3 recent\r\nA0001 OK Idle completed\r\n",
                vec![
                    Event::Idling,
                    Event::Untagged {
                        status: Status::Ok,
                        code: None,
                        text: "Still here".into(),
                    },
                    Event::Recent(3),
                    ok_done("A0001"),
                ],
            ),
            (
                b"* OK hi\r\n+\r\n* 2 EXPUNGE\r\n* 4 FETCH (FLAGS (\\Seen))\r\nA0001 OK Idle completed\r\n",
                vec![
                    Event::Idling,
                    Event::Expunge(2),
                    Event::Fetch {
                        seq: 4,
                        attrs: FetchAttrs {
                            flags: Some(vec!["\\Seen".into()]),
                            ..FetchAttrs::default()
                        },
                        had_body: false,
                    },
                    ok_done("A0001"),
                ],
            ),
            (
                b"* OK hi\r\n+ idling\r\n* BYE Server shutting down\r\n",
                vec![
                    Event::Idling,
                    Event::Untagged {
                        status: Status::Bye,
                        code: None,
                        text: "Server shutting down".into(),
                    },
                ],
            ),
            (
                b"* OK hi\r\nA0001 BAD IDLE not supported\r\n",
                vec![Event::Done {
                    tag: "A0001".into(),
                    kind: Kind::Idle,
                    status: Status::Bad,
                    code: None,
                    text: "IDLE not supported".into(),
                }],
            ),
        ];
        for (input, want) in cases {
            let ev = all_steps(&[Command::Idle], input);
            assert_eq!(
                ev.get(1..).unwrap_or_default(),
                want.as_slice(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let mut c = Client::new(Limits::default());
        let (_, bytes) = c.command(&Command::Idle);
        assert_eq!(bytes.bytes, b"A0001 IDLE\r\n");
        assert_eq!(c.idle_done().bytes, b"DONE\r\n");
    }

    #[test]
    fn hostile_sizes() {
        let ev = all_steps(
            &[Command::Select("INBOX".into())],
            b"* OK\r\n* 4294967295 EXISTS\r\nA0001 OK\r\n",
        );
        assert_eq!(ev[1], Event::Exists(u32::MAX));
        assert!(matches!(
            run(
                &[Command::Noop],
                b"* OK\r\n* 1 FETCH (BODY[] {99999999999}\r\n",
                3
            ),
            Err(ImapError::LiteralTooLarge(99_999_999_999, _))
        ));
        assert!(
            run(&[Command::Noop], b"* OK\r\n* 4294967296 EXISTS\r\n", 3).is_ok(),
            "unknown forms are skipped"
        );
        assert!(
            run(
                &[Command::Noop],
                b"* OK\r\n* 1 FETCH (BODY[] {999999999999999999999}\r\n",
                4
            )
            .is_err()
        );
        assert!(run(&[Command::Noop], b"* OK\r\n* SEARCH 1 x\r\n", 4).is_err());
        let mut long = b"* OK\r\n* ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 70_000));
        assert_eq!(
            run(&[], &long, 1000),
            Err(ImapError::LineTooLong(64 * 1024))
        );
        let mut c = Client::new(Limits {
            max_untagged: 3,
            ..Limits::default()
        });
        let r = run_with(
            &mut c,
            &[Command::Noop],
            b"* OK\r\n* 1 EXISTS\r\n* 1 EXISTS\r\n* 1 EXISTS\r\n* 1 EXISTS\r\n",
            5,
        );
        assert_eq!(r, Err(ImapError::TooManyUntagged(3)));
        assert!(run(&[Command::Noop], b"* OK\r\nZZZ OK what\r\n", 2).is_err());
        assert!(run(&[], b"* OK\r\n+ unexpected\r\n", 2).is_err());
    }

    #[test]
    fn large_search_line_allowed() {
        let mut input = b"* OK\r\n* SEARCH".to_vec();
        for i in 1..=20_000u32 {
            input.extend_from_slice(format!(" {i}").as_bytes());
        }
        input.extend_from_slice(b"\r\nA0001 OK\r\n");
        let ev = run(&[Command::UidSearch(Search::UidFrom(1))], &input, 4096).expect("decodes");
        assert!(matches!(&ev[1], Event::Search(v) if v.len() == 20_000));
    }

    #[test]
    fn command_encoding() {
        let mut c = Client::new(Limits::default());
        let (_, b) = c.command(&Command::UidStoreAdd {
            set: "1:3,5\r\nX".into(),
            flags: vec!["\\Seen".into(), "\\Deleted".into()],
        });
        assert_eq!(
            b.bytes,
            b"A0001 UID STORE 1:3,5 +FLAGS.SILENT (\\Seen \\Deleted)\r\n"
        );
        let (_, b) = c.command(&Command::UidSearch(Search::UidFrom(42)));
        assert_eq!(b.bytes, b"A0002 UID SEARCH UID 42:*\r\n");
        let (_, b) = c.command(&Command::UidFetch {
            set: "1:*".into(),
            body: true,
        });
        assert_eq!(
            b.bytes,
            b"A0003 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[])\r\n"
        );
        let (_, b) = c.command(&Command::UidExpunge("7".into()));
        assert_eq!(b.bytes, b"A0004 UID EXPUNGE 7\r\n");
    }
}
