//! The POP3 client protocol machine, sans-I/O: command encoding, in-order response matching for
//! PIPELINING, CAPA, STLS, USER/PASS, APOP, AUTH, listings and the byte-exact streaming decoder for
//! multi-line message bodies (RFC 1939, RFC 2449 CAPA and extended status codes, RFC 2595 STLS,
//! RFC 5034 AUTH).
//!
//! Bytes go in through [`Client::receive`], events come out of [`Client::poll`]. Command lines come
//! out of [`Client::send`] and may be written back to back (pipelining); replies are matched to
//! them in order. Message bodies are delivered as [`Event::MessageData`] chunks of raw message
//! bytes: CRLF kept as sent, dot-unstuffed, the terminating ".\r\n" removed. Work is O(n) in the
//! input and memory is bounded by [`Limits`], whatever the chunking.

use std::collections::VecDeque;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest as _, Md5};

use crate::proto::trace::{Outbound, printable};

/// Most message bytes one [`Event::MessageData`] carries.
const MESSAGE_CHUNK: usize = 64 * 1024;

/// Size bounds enforced on everything the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest status or listing line, CRLF included (RFC 2449 says 512; real servers exceed it).
    pub max_line: usize,
    /// Most lines in one multi-line listing (LIST, UIDL, CAPA).
    pub max_listing_lines: u64,
    /// Largest message body accepted from RETR/TOP; `None` means no limit.
    pub max_message_size: Option<u64>,
    /// Most lines in a CAPA reply (real servers send about 15; CAPA goes out before STLS, so
    /// anyone on the path can answer it).
    pub max_capa_lines: u64,
}

/// Most SASL mechanisms accepted on the CAPA `SASL` line (real servers name a handful).
pub const MAX_SASL_MECHANISMS: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8192,
            max_listing_lines: 10_000_000,
            max_message_size: None,
            max_capa_lines: 1000,
        }
    }
}

/// Longest unique-id we accept (RFC 1939 says 70; fetchmail's CVE-2005-2335 was about > 128).
pub const MAX_UID_LEN: usize = 256;

/// What went wrong while decoding the server's bytes. The peer is at fault in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pop3Error {
    #[error("server line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("server listing longer than {0} lines")]
    ListingTooLong(u64),
    #[error("server CAPA reply longer than {0} lines")]
    CapaTooLong(u64),
    #[error("server CAPA reply names more than {0} SASL mechanisms")]
    TooManyMechanisms(usize),
    #[error("message larger than the limit of {0} bytes")]
    MessageTooLarge(u64),
    #[error("malformed server reply: {0}")]
    Malformed(String),
    #[error("server reply without a command waiting for one")]
    Unsolicited,
}

/// RFC 2449 extended response codes, plus "none".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespCode {
    /// [IN-USE]: the maildrop is locked by another session (temporary).
    InUse,
    /// [LOGIN-DELAY]: logging in too often (temporary).
    LoginDelay,
    /// [SYS/TEMP]: temporary server failure.
    SysTemp,
    /// [SYS/PERM]: permanent server failure.
    SysPerm,
    /// `[AUTH]`: the credentials were wrong.
    Auth,
    /// Any other bracketed code.
    Other(String),
}

impl RespCode {
    fn parse(text: &str) -> (Option<RespCode>, String) {
        let Some(rest) = text.strip_prefix('[') else {
            return (None, text.to_string());
        };
        let Some(end) = rest.find(']') else {
            return (None, text.to_string());
        };
        let code = &rest[..end];
        let after = rest[end + 1..].trim_start().to_string();
        let parsed = match code.to_ascii_uppercase().as_str() {
            "IN-USE" => RespCode::InUse,
            "LOGIN-DELAY" => RespCode::LoginDelay,
            "SYS/TEMP" => RespCode::SysTemp,
            "SYS/PERM" => RespCode::SysPerm,
            "AUTH" => RespCode::Auth,
            _ => RespCode::Other(code.to_string()),
        };
        (Some(parsed), after)
    }

    /// Whether trying again later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            RespCode::InUse | RespCode::LoginDelay | RespCode::SysTemp
        )
    }
}

/// A command to send. Secrets in it are never shown by [`Command::redacted`].
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    Capa,
    Stls,
    User(String),
    Pass(String),
    /// APOP with the user name and the already computed digest (see [`apop_digest`]).
    Apop {
        user: String,
        digest: String,
    },
    /// AUTH with a mechanism and an optional initial response (RFC 5034 "=" for empty).
    Auth {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Stat,
    ListAll,
    List(u32),
    UidlAll,
    Uidl(u32),
    Top(u32, u32),
    Retr(u32),
    Dele(u32),
    Rset,
    Noop,
    Quit,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Command {
    /// The command line as it goes on the wire, CRLF included.
    pub fn encode(&self) -> Vec<u8> {
        self.outbound().bytes
    }

    /// The command line with its secret part marked: the password of PASS, the APOP digest
    /// (as good as the password for this session) and an AUTH initial response.
    pub fn outbound(&self) -> Outbound {
        let mut out = Outbound::default();
        match self {
            Command::Pass(p) => {
                out.push_plain(b"PASS ");
                out.push_secret(p.as_bytes());
            }
            Command::Apop { user, digest } => {
                out.push_plain(format!("APOP {user} ").as_bytes());
                out.push_secret(digest.as_bytes());
            }
            Command::Auth {
                mechanism,
                initial: Some(i),
            } if !i.is_empty() => {
                out.push_plain(format!("AUTH {mechanism} ").as_bytes());
                out.push_secret(B64.encode(i).as_bytes());
            }
            other => out.push_plain(other.public_line().as_bytes()),
        }
        // A CR or LF inside an argument would smuggle a second command.
        out.strip_line_breaks_from(0);
        out.push_plain(b"\r\n");
        out
    }

    /// The text of a command without secrets (the others are built in `outbound`).
    fn public_line(&self) -> String {
        match self {
            Command::Capa => "CAPA".to_string(),
            Command::Stls => "STLS".to_string(),
            Command::User(u) => format!("USER {u}"),
            Command::Pass(_) => "PASS".to_string(),
            Command::Apop { user, .. } => format!("APOP {user}"),
            Command::Auth { mechanism, initial } => match initial {
                Some(i) if i.is_empty() => format!("AUTH {mechanism} ="),
                _ => format!("AUTH {mechanism}"),
            },
            Command::Stat => "STAT".to_string(),
            Command::ListAll => "LIST".to_string(),
            Command::List(n) => format!("LIST {n}"),
            Command::UidlAll => "UIDL".to_string(),
            Command::Uidl(n) => format!("UIDL {n}"),
            Command::Top(n, l) => format!("TOP {n} {l}"),
            Command::Retr(n) => format!("RETR {n}"),
            Command::Dele(n) => format!("DELE {n}"),
            Command::Rset => "RSET".to_string(),
            Command::Noop => "NOOP".to_string(),
            Command::Quit => "QUIT".to_string(),
        }
    }

    /// The command as it may appear in a log: secrets shown as `*`.
    pub fn redacted(&self) -> String {
        self.outbound().trace()
    }

    fn expects(&self) -> Expect {
        match self {
            Command::Capa => Expect::Capa,
            Command::Stls => Expect::Stls,
            Command::Auth { .. } => Expect::Auth,
            Command::Stat => Expect::Stat,
            Command::ListAll => Expect::ListAll,
            Command::List(_) => Expect::ListOne,
            Command::UidlAll => Expect::UidlAll,
            Command::Uidl(_) => Expect::UidlOne,
            Command::Top(..) | Command::Retr(_) => Expect::Message,
            _ => Expect::Simple,
        }
    }
}

/// The digest APOP sends: lowercase hex MD5 of the greeting timestamp followed by the secret.
pub fn apop_digest(timestamp: &str, secret: &str) -> String {
    let mut h = Md5::new();
    h.update(timestamp.as_bytes());
    h.update(secret.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What the server advertised in its CAPA reply (unknown lines are kept only as names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub stls: bool,
    pub user: bool,
    pub top: bool,
    pub uidl: bool,
    pub pipelining: bool,
    pub resp_codes: bool,
    pub sasl: Vec<String>,
    /// Every capability name, upper-cased, in the order received.
    pub names: Vec<String>,
}

impl Capabilities {
    fn add_line(&mut self, line: &str) -> Result<(), Pop3Error> {
        let mut words = line.split_ascii_whitespace();
        let Some(name) = words.next() else {
            return Ok(());
        };
        let name = name.to_ascii_uppercase();
        match name.as_str() {
            "STLS" => self.stls = true,
            "USER" => self.user = true,
            "TOP" => self.top = true,
            "UIDL" => self.uidl = true,
            "PIPELINING" => self.pipelining = true,
            "RESP-CODES" => self.resp_codes = true,
            "SASL" => {
                for w in words {
                    if self.sasl.len() >= MAX_SASL_MECHANISMS {
                        return Err(Pop3Error::TooManyMechanisms(MAX_SASL_MECHANISMS));
                    }
                    self.sasl.push(w.to_ascii_uppercase());
                }
            }
            _ => {}
        }
        if self.names.len() < 256 {
            self.names.push(name);
        }
        Ok(())
    }

    /// Whether SASL mechanism `mech` is advertised.
    pub fn has_sasl(&self, mech: &str) -> bool {
        self.sasl.iter().any(|m| m.eq_ignore_ascii_case(mech))
    }
}

/// One thing the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The greeting; `apop_timestamp` is set only when it is well-formed (`<...@...>`).
    Greeting {
        ok: bool,
        text: String,
        apop_timestamp: Option<String>,
    },
    /// +OK to a single-line command (USER, PASS, APOP, AUTH done, DELE, RSET, NOOP, QUIT).
    Ok {
        text: String,
    },
    /// -ERR to any command.
    Err {
        code: Option<RespCode>,
        text: String,
    },
    /// The complete CAPA listing.
    Capabilities(Capabilities),
    /// +OK to STLS: start the TLS handshake now, then call [`Client::tls_established`].
    StartTls,
    /// A SASL challenge (already base64-decoded); answer with [`Client::auth_response`].
    AuthChallenge(Vec<u8>),
    Stat {
        count: u32,
        size: u64,
    },
    /// One entry of `LIST` or the reply to `LIST n`.
    ListEntry {
        msgno: u32,
        size: u64,
    },
    /// One entry of `UIDL` or the reply to `UIDL n`.
    UidlEntry {
        msgno: u32,
        uid: String,
    },
    /// End of a multi-line LIST/UIDL listing.
    ListingEnd,
    /// +OK to RETR/TOP: message bytes follow.
    MessageStart,
    /// Raw message bytes (dot-unstuffed, line endings as sent).
    MessageData(Vec<u8>),
    /// The message ended; `octets` counts the bytes delivered in `MessageData`.
    MessageEnd {
        octets: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Capa,
    Stls,
    Auth,
    Simple,
    Stat,
    ListAll,
    ListOne,
    UidlAll,
    UidlOne,
    Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Reading the status line of the oldest pending command.
    Status,
    /// Inside a multi-line listing.
    Listing(Expect, u64),
    /// Inside a message body; `line_start` says whether the next byte begins a line.
    Message { line_start: bool, octets: u64 },
    /// STLS accepted: nothing more is read until the TLS handshake is done.
    TlsWait,
    /// A fatal error happened; nothing more is decoded.
    Failed,
}

/// The POP3 client machine.
#[derive(Debug)]
pub struct Client {
    limits: Limits,
    buf: Vec<u8>,
    pos: usize,
    pending: VecDeque<Expect>,
    body: Body,
    capa: Capabilities,
    /// The last [`Client::decode_one`] consumed input without producing an event.
    progressed: bool,
    /// Received lines for the protocol trace, when it is on.
    trace: Option<Vec<String>>,
}

impl Client {
    /// A machine waiting for the server greeting.
    pub fn new(limits: Limits) -> Self {
        let mut pending = VecDeque::new();
        pending.push_back(Expect::Greeting);
        Client {
            limits,
            buf: Vec::new(),
            pos: 0,
            pending,
            body: Body::Status,
            capa: Capabilities::default(),
            progressed: false,
            trace: None,
        }
    }

    /// Encodes `cmd` and queues its reply; the bytes may be written right after earlier
    /// commands' (pipelining) when the server advertised PIPELINING.
    pub fn send(&mut self, cmd: &Command) -> Outbound {
        self.pending.push_back(cmd.expects());
        cmd.outbound()
    }

    /// The line answering a SASL challenge (`None` cancels the exchange with "*"); the
    /// response is secret.
    pub fn auth_response(&mut self, response: Option<&[u8]>) -> Outbound {
        let mut out = Outbound::default();
        match response {
            Some(r) => out.push_secret(B64.encode(r).as_bytes()),
            None => out.push_plain(b"*"),
        }
        out.push_plain(b"\r\n");
        out
    }

    /// Turns the record of received protocol lines on or off (see [`Client::take_trace`]).
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on.then(Vec::new);
    }

    /// The received protocol lines decoded since the last call, printable and with SASL
    /// challenges withheld; message contents appear only as their size.
    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn note(&mut self, line: String) {
        if let Some(t) = self.trace.as_mut() {
            t.push(line);
        }
    }

    /// Number of commands whose replies have not been fully received.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the machine waits for the TLS handshake after STLS.
    pub fn awaiting_tls(&self) -> bool {
        self.body == Body::TlsWait
    }

    /// Call once TLS is up after [`Event::StartTls`]: every byte received before the handshake
    /// is dropped (a man in the middle may have injected them), as RFC 2595 §4 asks.
    pub fn tls_established(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.pending.clear();
        self.body = Body::Status;
        self.capa = Capabilities::default();
    }

    /// Adds bytes read from the server.
    pub fn receive(&mut self, data: &[u8]) {
        if self.body == Body::TlsWait || self.body == Body::Failed {
            return;
        }
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next event, `Ok(None)` when more bytes are needed. After an error the machine is dead.
    pub fn poll(&mut self) -> Result<Option<Event>, Pop3Error> {
        let result = self.poll_inner();
        if result.is_err() {
            self.body = Body::Failed;
        }
        // Compact once the consumed prefix dominates: amortised O(n).
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        result
    }

    /// Decodes until one event is complete or more bytes are needed. A loop, never recursion:
    /// lines that produce no event (CAPA lines, the status line before a listing) go round
    /// again, so no number of them can exhaust the stack.
    fn poll_inner(&mut self) -> Result<Option<Event>, Pop3Error> {
        loop {
            if let Some(result) = self.decode_one()? {
                return Ok(Some(result));
            }
            if !self.progressed {
                return Ok(None);
            }
        }
    }

    /// One decoding step: `Some` event, or `None` with `progressed` telling whether a line was
    /// consumed without producing an event (then the caller steps again).
    fn decode_one(&mut self) -> Result<Option<Event>, Pop3Error> {
        self.progressed = false;
        match self.body {
            Body::Failed | Body::TlsWait => Ok(None),
            Body::Message { line_start, octets } => self.poll_message(line_start, octets),
            Body::Listing(kind, count) => {
                let Some(line) = self.take_line()? else {
                    return Ok(None);
                };
                if line == b"." {
                    self.body = Body::Status;
                    self.pending.pop_front();
                    return Ok(Some(match kind {
                        Expect::Capa => Event::Capabilities(std::mem::take(&mut self.capa)),
                        _ => Event::ListingEnd,
                    }));
                }
                if kind == Expect::Capa && count >= self.limits.max_capa_lines {
                    return Err(Pop3Error::CapaTooLong(self.limits.max_capa_lines));
                }
                if count >= self.limits.max_listing_lines {
                    return Err(Pop3Error::ListingTooLong(self.limits.max_listing_lines));
                }
                self.body = Body::Listing(kind, count + 1);
                let line = line.strip_prefix(b".").unwrap_or(&line);
                let text = String::from_utf8_lossy(line);
                match kind {
                    Expect::Capa => {
                        self.capa.add_line(&text)?;
                        self.progressed = true;
                        Ok(None)
                    }
                    Expect::ListAll => {
                        let (msgno, size) = parse_scan(&text)?;
                        Ok(Some(Event::ListEntry { msgno, size }))
                    }
                    _ => {
                        let (msgno, uid) = parse_uidl(&text)?;
                        Ok(Some(Event::UidlEntry { msgno, uid }))
                    }
                }
            }
            Body::Status => {
                let Some(line) = self.take_line()? else {
                    return Ok(None);
                };
                let Some(&expect) = self.pending.front() else {
                    return Err(Pop3Error::Unsolicited);
                };
                let text = String::from_utf8_lossy(&line).into_owned();
                if expect == Expect::Auth
                    && let Some(rest) = text.strip_prefix('+')
                    && !text.starts_with("+OK")
                {
                    // The challenge is not logged: with the (withheld) response it would be
                    // material for an offline guess at the password.
                    if let Some(t) = self.trace.as_mut() {
                        t.pop();
                        t.push("+ <SASL challenge>".to_string());
                    }
                    let challenge = B64
                        .decode(rest.trim())
                        .map_err(|_| Pop3Error::Malformed("challenge is not base64".into()))?;
                    return Ok(Some(Event::AuthChallenge(challenge)));
                }
                let ok = if let Some(rest) = strip_ci(&text, "+OK") {
                    rest.trim_start().to_string()
                } else if let Some(rest) = strip_ci(&text, "-ERR") {
                    self.pending.pop_front();
                    let (code, text) = RespCode::parse(rest.trim_start());
                    if expect == Expect::Greeting {
                        return Ok(Some(Event::Greeting {
                            ok: false,
                            text,
                            apop_timestamp: None,
                        }));
                    }
                    return Ok(Some(Event::Err { code, text }));
                } else {
                    return Err(Pop3Error::Malformed(format!(
                        "status line is neither +OK nor -ERR: {:?}",
                        truncate(&text)
                    )));
                };
                match expect {
                    Expect::Greeting => {
                        self.pending.pop_front();
                        let apop_timestamp = apop_timestamp(&ok);
                        Ok(Some(Event::Greeting {
                            ok: true,
                            text: ok,
                            apop_timestamp,
                        }))
                    }
                    Expect::Capa => {
                        self.capa = Capabilities::default();
                        self.body = Body::Listing(Expect::Capa, 0);
                        self.progressed = true;
                        Ok(None)
                    }
                    Expect::ListAll | Expect::UidlAll => {
                        self.body = Body::Listing(expect, 0);
                        self.progressed = true;
                        Ok(None)
                    }
                    Expect::Stls => {
                        self.pending.pop_front();
                        self.body = Body::TlsWait;
                        // Whatever followed "+OK" in the same read is discarded now.
                        self.buf.clear();
                        self.pos = 0;
                        Ok(Some(Event::StartTls))
                    }
                    Expect::Stat => {
                        self.pending.pop_front();
                        let (count, size) = parse_scan(&ok)?;
                        Ok(Some(Event::Stat { count, size }))
                    }
                    Expect::ListOne => {
                        self.pending.pop_front();
                        let (msgno, size) = parse_scan(&ok)?;
                        Ok(Some(Event::ListEntry { msgno, size }))
                    }
                    Expect::UidlOne => {
                        self.pending.pop_front();
                        let (msgno, uid) = parse_uidl(&ok)?;
                        Ok(Some(Event::UidlEntry { msgno, uid }))
                    }
                    Expect::Message => {
                        self.body = Body::Message {
                            line_start: true,
                            octets: 0,
                        };
                        Ok(Some(Event::MessageStart))
                    }
                    Expect::Auth | Expect::Simple => {
                        self.pending.pop_front();
                        Ok(Some(Event::Ok { text: ok }))
                    }
                }
            }
        }
    }

    /// Streams message bytes: every complete line at once, and the head of an incomplete line
    /// as soon as it cannot be the terminator, so memory stays bounded for any line length.
    fn poll_message(&mut self, line_start: bool, octets: u64) -> Result<Option<Event>, Pop3Error> {
        // Sized for what is buffered: grown line by line, a 5 KB message took a dozen
        // reallocations.
        let mut out = Vec::with_capacity((self.buf.len() - self.pos).min(MESSAGE_CHUNK));
        let mut line_start = line_start;
        let mut octets = octets;
        let mut ended = false;
        while self.pos < self.buf.len() {
            let rest = &self.buf[self.pos..];
            if line_start && rest.first() == Some(&b'.') {
                // ".\r\n" (or a broken server's ".\n") ends the message.
                if rest.starts_with(b".\r\n") || rest.starts_with(b".\n") {
                    // Deliver pending bytes first; the terminator is consumed on the next poll.
                    if out.is_empty() {
                        self.pos += if rest.get(1) == Some(&b'\r') { 3 } else { 2 };
                        ended = true;
                    }
                    break;
                }
                if rest.len() < 3 && b".\r\n".starts_with(rest) {
                    break; // could still become the terminator
                }
                self.pos += 1; // the stuffed dot
            }
            let rest = &self.buf[self.pos..];
            let (take, complete) = match memchr::memchr(b'\n', rest) {
                Some(i) => (i + 1, true),
                None => (rest.len(), false),
            };
            out.extend_from_slice(&rest[..take]);
            self.pos += take;
            octets += take as u64;
            line_start = complete;
            if let Some(max) = self.limits.max_message_size
                && octets > max
            {
                return Err(Pop3Error::MessageTooLarge(max));
            }
            if out.len() >= MESSAGE_CHUNK {
                break;
            }
        }
        if ended {
            self.pending.pop_front();
            self.body = Body::Status;
            self.note(format!("<{octets} octets of message data>"));
            self.note(".".to_string());
            return Ok(Some(Event::MessageEnd { octets }));
        }
        self.body = Body::Message { line_start, octets };
        if out.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Event::MessageData(out)))
        }
    }

    /// Takes one complete line (CRLF or bare LF stripped), bounded by `max_line`.
    fn take_line(&mut self) -> Result<Option<Vec<u8>>, Pop3Error> {
        let rest = &self.buf[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if i + 1 > self.limits.max_line {
                    return Err(Pop3Error::LineTooLong(self.limits.max_line));
                }
                let mut line = rest[..i].to_vec();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.pos += i + 1;
                if self.trace.is_some() {
                    self.note(printable(&line));
                }
                Ok(Some(line))
            }
            None if rest.len() >= self.limits.max_line => {
                Err(Pop3Error::LineTooLong(self.limits.max_line))
            }
            None => Ok(None),
        }
    }
}

fn strip_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = &text[prefix.len()..];
    // "+OKAY" is not "+OK".
    if rest.is_empty() || rest.starts_with(' ') {
        Some(rest)
    } else {
        None
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

fn parse_number<T: std::str::FromStr>(word: Option<&str>, what: &str) -> Result<T, Pop3Error> {
    let word = word.ok_or_else(|| Pop3Error::Malformed(format!("missing {what}")))?;
    if word.is_empty() || word.len() > 20 || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Pop3Error::Malformed(format!(
            "{what} is not a number: {:?}",
            truncate(word)
        )));
    }
    word.parse()
        .map_err(|_| Pop3Error::Malformed(format!("{what} out of range: {word}")))
}

/// "msgno size" (LIST) or "count size" (STAT), extra words ignored (RFC 1939 allows them).
fn parse_scan(text: &str) -> Result<(u32, u64), Pop3Error> {
    let mut words = text.split_ascii_whitespace();
    let n = parse_number(words.next(), "message number")?;
    let size = parse_number(words.next(), "message size")?;
    Ok((n, size))
}

/// "msgno uid" with the uid checked against RFC 1939 (printable ASCII, bounded length).
fn parse_uidl(text: &str) -> Result<(u32, String), Pop3Error> {
    let mut words = text.split_ascii_whitespace();
    let n = parse_number(words.next(), "message number")?;
    let uid = words
        .next()
        .ok_or_else(|| Pop3Error::Malformed("UIDL entry without a unique-id".into()))?;
    if uid.len() > MAX_UID_LEN || !uid.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Pop3Error::Malformed(format!(
            "bad unique-id for message {n} ({} bytes)",
            uid.len()
        )));
    }
    Ok((n, uid.to_string()))
}

/// The APOP timestamp `<...@...>` from a greeting, only when it is well-formed printable ASCII
/// (CVE-2007-1558: fetchmail used unvalidated challenges).
fn apop_timestamp(text: &str) -> Option<String> {
    let start = text.find('<')?;
    let end = start + text[start..].find('>')?;
    let ts = &text[start..=end];
    let inner = &ts[1..ts.len() - 1];
    let valid = ts.len() <= 256
        && inner.contains('@')
        && !inner.is_empty()
        && inner
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'<');
    valid.then(|| ts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, collecting every event; message data chunks are
    /// merged so the result does not depend on the chunking.
    fn run(cmds: &[Command], input: &[u8], step: usize) -> Result<Vec<Event>, Pop3Error> {
        let mut c = Client::new(Limits::default());
        run_with(&mut c, cmds, input, step)
    }

    fn run_with(
        c: &mut Client,
        cmds: &[Command],
        input: &[u8],
        step: usize,
    ) -> Result<Vec<Event>, Pop3Error> {
        for cmd in cmds {
            c.send(cmd);
        }
        let mut events: Vec<Event> = Vec::new();
        for piece in input.chunks(step.max(1)) {
            c.receive(piece);
            while let Some(ev) = c.poll()? {
                if let (Event::MessageData(d), Some(Event::MessageData(prev))) =
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
        let whole = run(cmds, input, input.len()).expect("whole input decodes");
        for step in [1, 2, 3, 5, 7] {
            assert_eq!(
                run(cmds, input, step).expect("decodes"),
                whole,
                "step {step}"
            );
        }
        whole
    }

    fn retr_events(body: &[u8]) -> Vec<Event> {
        let mut input = b"+OK hi <1.2@host>\r\n+OK 5 octets\r\n".to_vec();
        input.extend_from_slice(body);
        all_steps(&[Command::Retr(1)], &input)
    }

    fn retr_bytes(body: &[u8]) -> Vec<u8> {
        let ev = retr_events(body);
        let mut out = Vec::new();
        let mut ended = false;
        for e in ev {
            match e {
                Event::MessageData(d) => out.extend(d),
                Event::MessageEnd { octets } => {
                    assert_eq!(octets, out.len() as u64);
                    ended = true;
                }
                _ => {}
            }
        }
        assert!(ended, "message end seen");
        out
    }

    #[test]
    fn retr_table() {
        let table: &[(&[u8], &[u8])] = &[
            (b".\r\n", b""),
            (b"a\r\n.\r\n", b"a\r\n"),
            (b"..\r\n.\r\n", b".\r\n"),
            (b"...x\r\n.\r\n", b"..x\r\n"),
            (b"a\r\n..\r\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),
            (b"x.\r\n.y\r\n.\r\n", b"x.\r\ny\r\n"),
            (b"bare\nlf\n.\r\n", b"bare\nlf\n"),
            (b"\xff\xfe8bit\r\n\r\n.\r\n", b"\xff\xfe8bit\r\n\r\n"),
            (b"nul\0in\r\n.\n", b"nul\0in\r\n"),
            (b".\r\r\n.\r\n", b"\r\r\n"),
        ];
        for (wire, want) in table {
            assert_eq!(
                retr_bytes(wire),
                *want,
                "wire {:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn retr_large_streams_in_bounded_chunks() {
        let mut body = Vec::new();
        for i in 0..20_000 {
            body.extend_from_slice(format!(".line {i}\r\n").as_bytes());
        }
        let mut wire = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            wire.push(b'.');
            wire.extend_from_slice(line);
        }
        wire.extend_from_slice(b".\r\n");
        let mut c = Client::new(Limits::default());
        c.send(&Command::Retr(1));
        c.receive(b"+OK\r\n+OK\r\n");
        c.receive(&wire);
        let mut got = Vec::new();
        while let Some(ev) = c.poll().expect("decodes") {
            if let Event::MessageData(d) = ev {
                assert!(d.len() <= 64 * 1024 + 100);
                got.extend(d);
            }
        }
        assert_eq!(got, body);
    }

    #[test]
    fn pipelined_replies_match_in_order() {
        let input = b"+OK ready\r\n+OK 2 30\r\n+OK\r\n1 10\r\n2 20\r\n.\r\n+OK\r\n1 a1\r\n2 b2\r\n.\r\n+OK\r\nhi\r\n.\r\n-ERR [SYS/TEMP] busy\r\n+OK bye\r\n";
        let ev = all_steps(
            &[
                Command::Stat,
                Command::ListAll,
                Command::UidlAll,
                Command::Retr(1),
                Command::Dele(1),
                Command::Quit,
            ],
            input,
        );
        assert_eq!(
            ev,
            vec![
                Event::Greeting {
                    ok: true,
                    text: "ready".into(),
                    apop_timestamp: None
                },
                Event::Stat { count: 2, size: 30 },
                Event::ListEntry { msgno: 1, size: 10 },
                Event::ListEntry { msgno: 2, size: 20 },
                Event::ListingEnd,
                Event::UidlEntry {
                    msgno: 1,
                    uid: "a1".into()
                },
                Event::UidlEntry {
                    msgno: 2,
                    uid: "b2".into()
                },
                Event::ListingEnd,
                Event::MessageStart,
                Event::MessageData(b"hi\r\n".to_vec()),
                Event::MessageEnd { octets: 4 },
                Event::Err {
                    code: Some(RespCode::SysTemp),
                    text: "busy".into()
                },
                Event::Ok { text: "bye".into() },
            ]
        );
    }

    #[test]
    fn empty_listing_and_empty_messages() {
        let input = b"+OK\r\n+OK\r\n.\r\n+OK\r\n.\r\n+OK\r\n.\r\n";
        let ev = all_steps(
            &[Command::UidlAll, Command::Retr(1), Command::Top(2, 0)],
            input,
        );
        assert_eq!(ev.len(), 6, "{ev:?}");
        assert_eq!(ev[1], Event::ListingEnd);
        assert_eq!(ev[3], Event::MessageEnd { octets: 0 });
        assert_eq!(ev[5], Event::MessageEnd { octets: 0 });
    }

    #[test]
    fn capa_ignores_unknown_lines_without_desync() {
        let input = b"+OK <a.b@c>\r\n+OK Capability list follows\r\nTOP\r\nX-WEIRD with args\r\n..dotted\r\nSASL PLAIN cram-md5\r\nPIPELINING\r\nSTLS\r\n.\r\n+OK 1 2\r\n";
        let ev = all_steps(&[Command::Capa, Command::Stat], input);
        let Event::Greeting { apop_timestamp, .. } = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(apop_timestamp.as_deref(), Some("<a.b@c>"));
        let Event::Capabilities(c) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert!(c.top && c.pipelining && c.stls && !c.uidl);
        assert!(c.has_sasl("CRAM-MD5") && c.has_sasl("plain"));
        assert!(c.names.contains(&"X-WEIRD".to_string()));
        assert_eq!(ev[2], Event::Stat { count: 1, size: 2 });
    }

    #[test]
    fn capa_flood_and_mechanism_flood_are_bounded_errors() {
        // Far more lines than the bound, in one chunk: decoded in a loop, stopped at the bound.
        let mut input = b"+OK\r\n+OK\r\n".to_vec();
        input.extend_from_slice(&b"X\r\n".repeat(100_000));
        assert_eq!(
            run(&[Command::Capa], &input, input.len()),
            Err(Pop3Error::CapaTooLong(1000))
        );
        // Right at the bound it is accepted.
        let mut input = b"+OK\r\n+OK\r\n".to_vec();
        input.extend_from_slice(&b"X\r\n".repeat(1000));
        input.extend_from_slice(b".\r\n");
        assert!(matches!(
            all_steps(&[Command::Capa], &input).get(1),
            Some(Event::Capabilities(_))
        ));
        let many = format!("+OK\r\n+OK\r\nSASL {}\r\n.\r\n", "M ".repeat(65));
        assert_eq!(
            run(&[Command::Capa], many.as_bytes(), 7),
            Err(Pop3Error::TooManyMechanisms(MAX_SASL_MECHANISMS))
        );
        // A long listing (not CAPA) is still decoded one entry per event, without recursion.
        let mut input = b"+OK\r\n+OK\r\n".to_vec();
        for i in 1..=50_000 {
            input.extend_from_slice(format!("{i} {i}\r\n").as_bytes());
        }
        input.extend_from_slice(b".\r\n");
        let ev = run(&[Command::ListAll], &input, input.len()).expect("decodes");
        assert_eq!(ev.len(), 50_002);
    }

    #[test]
    fn trace_shows_lines_withholds_challenges_and_summarises_bodies() {
        let mut c = Client::new(Limits::default());
        c.set_trace(true);
        let input = b"+OK hi\x1b[2J\r\n+ PDEyMzQ+\r\n+OK\r\n+OK 9 octets\r\nsecret body\r\n.\r\n";
        let ev = run_with(
            &mut c,
            &[
                Command::Auth {
                    mechanism: "CRAM-MD5".into(),
                    initial: None,
                },
                Command::Retr(1),
            ],
            input,
            3,
        )
        .expect("decodes");
        assert_eq!(ev.len(), 6, "{ev:?}");
        assert_eq!(
            c.take_trace(),
            vec![
                "+OK hi\\u{1b}[2J",
                "+ <SASL challenge>",
                "+OK",
                "+OK 9 octets",
                "<13 octets of message data>",
                ".",
            ]
        );
        assert!(c.take_trace().is_empty());
    }

    #[test]
    fn stls_drops_injected_bytes() {
        let mut c = Client::new(Limits::default());
        c.send(&Command::Stls);
        c.receive(b"+OK\r\n+OK begin TLS\r\n+OK injected\r\n-ERR injected\r\n");
        assert!(matches!(c.poll(), Ok(Some(Event::Greeting { .. }))));
        assert_eq!(c.poll(), Ok(Some(Event::StartTls)));
        c.receive(b"+OK more injected\r\n");
        assert_eq!(c.poll(), Ok(None));
        assert!(c.awaiting_tls());
        c.tls_established();
        c.send(&Command::Capa);
        c.receive(b"+OK\r\nUSER\r\n.\r\n");
        let Ok(Some(Event::Capabilities(caps))) = c.poll() else {
            panic!("capa after tls")
        };
        assert!(caps.user);
    }

    #[test]
    fn auth_challenge_and_codes() {
        let input = b"+OK\r\n+ PDEyMzQ+\r\n-ERR [AUTH] bad password\r\n-ERR [IN-USE] locked\r\n";
        let ev = all_steps(
            &[
                Command::Auth {
                    mechanism: "CRAM-MD5".into(),
                    initial: None,
                },
                Command::Noop,
            ],
            input,
        );
        assert_eq!(ev[1], Event::AuthChallenge(b"<1234>".to_vec()));
        assert_eq!(
            ev[2],
            Event::Err {
                code: Some(RespCode::Auth),
                text: "bad password".into()
            }
        );
        assert!(matches!(&ev[3], Event::Err { code: Some(c), .. } if c.is_temporary()));
    }

    #[test]
    fn hostile_numbers_and_lines() {
        // Sizes beyond any message are reported, not trusted for allocation.
        let ev = all_steps(
            &[Command::ListAll],
            b"+OK\r\n+OK\r\n1 1000000000000000\r\n.\r\n",
        );
        assert_eq!(
            ev[1],
            Event::ListEntry {
                msgno: 1,
                size: 1_000_000_000_000_000
            }
        );
        for bad in [
            &b"+OK\r\n+OK\r\n-1 5\r\n.\r\n"[..],
            b"+OK\r\n+OK\r\n99999999999 5\r\n.\r\n",
            b"+OK\r\n+OK\r\n1 999999999999999999999999\r\n.\r\n",
            b"+OK\r\n+OK\r\n1\r\n.\r\n",
        ] {
            assert!(matches!(
                run(&[Command::ListAll], bad, 3),
                Err(Pop3Error::Malformed(_))
            ));
        }
        let long_uid = format!("+OK\r\n+OK\r\n1 {}\r\n.\r\n", "u".repeat(300));
        assert!(run(&[Command::UidlAll], long_uid.as_bytes(), 7).is_err());
        let long = vec![b'x'; 10_000];
        assert_eq!(run(&[], &long, 100), Err(Pop3Error::LineTooLong(8192)));
        assert!(matches!(
            run(&[], b"HELLO\r\n", 1),
            Err(Pop3Error::Malformed(_))
        ));
        assert_eq!(run(&[], b"+OK\r\n+OK\r\n", 1), Err(Pop3Error::Unsolicited));
    }

    #[test]
    fn listing_and_message_bounds() {
        let mut c = Client::new(Limits {
            max_listing_lines: 2,
            max_message_size: Some(5),
            ..Limits::default()
        });
        let r = run_with(
            &mut c,
            &[Command::ListAll],
            b"+OK\r\n+OK\r\n1 1\r\n2 2\r\n3 3\r\n.\r\n",
            2,
        );
        assert_eq!(r, Err(Pop3Error::ListingTooLong(2)));
        let mut c = Client::new(Limits {
            max_message_size: Some(5),
            ..Limits::default()
        });
        let r = run_with(
            &mut c,
            &[Command::Retr(1)],
            b"+OK\r\n+OK\r\n123456\r\n.\r\n",
            1,
        );
        assert_eq!(r, Err(Pop3Error::MessageTooLarge(5)));
    }

    #[test]
    fn encoding_and_redaction() {
        assert_eq!(Command::Retr(7).encode(), b"RETR 7\r\n");
        assert_eq!(
            Command::Pass("a\r\nDELE 1".into()).encode(),
            b"PASS aDELE 1\r\n"
        );
        assert_eq!(format!("{:?}", Command::Pass("pw".into())), "PASS *");
        let auth = Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some(b"\0u\0p".to_vec()),
        };
        assert_eq!(auth.encode(), b"AUTH PLAIN AHUAcA==\r\n");
        assert_eq!(auth.redacted(), "AUTH PLAIN *");
        let apop = Command::Apop {
            user: "bob".into(),
            digest: "c4c9334bac560ecc979e58001b3e22fb".into(),
        };
        assert_eq!(apop.redacted(), "APOP bob *");
        let mut c = Client::new(Limits::default());
        assert_eq!(c.auth_response(Some(b"pw")).trace(), "*");
        assert_eq!(c.auth_response(None).trace(), "*");
        assert_eq!(c.auth_response(None).bytes, b"*\r\n");
        // RFC 1939 §7 example.
        assert_eq!(
            apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
        assert_eq!(apop_timestamp("hi <x y@z>"), None);
        assert_eq!(apop_timestamp("hi <nodomain>"), None);
    }
}
