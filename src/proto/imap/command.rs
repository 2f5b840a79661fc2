//! IMAP commands as the client writes them: each [`Command`] encoded with its tag, atoms,
//! sets and flags cleaned of anything that could end the line or start a literal, and a
//! redacted form for the trace (LOGIN and AUTHENTICATE secrets hidden).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::*;
use crate::proto::trace::Outbound;

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

    pub(super) fn kind(&self) -> Kind {
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
    pub(super) fn segments(&self, literal_plus: bool) -> Vec<Outbound> {
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

pub(super) fn sanitize_set(set: &str) -> String {
    set.chars()
        .filter(|c| c.is_ascii_digit() || matches!(c, ':' | ',' | '*'))
        .collect()
}

pub(super) fn sanitize_atom(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}

pub(super) fn sanitize_flag(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '(' | ')' | '{' | '"' | '%' | '*' | ']'))
        .collect()
}

/// A command as written: the parts between which the server must send a continuation
/// request (a synchronizing literal), each with its secret bytes marked for the trace.
pub(super) struct Segments {
    pub(super) parts: Vec<Outbound>,
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
