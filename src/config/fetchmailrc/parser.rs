//! The fetchmailrc parser: the grammar of rcfile_y.y over the lexer's tokens, into the AST,
//! recording refusals and warnings from [`RC_KEYWORDS`](super::RC_KEYWORDS) as it goes.

use std::path::{Path, PathBuf};

use super::FetchmailRcError;
use super::ast::{
    AuthType, BadHeader, Envelope, FetchmailRc, Globals, LocalName, Located, Opt, PollEntry,
    Protocol, RcRefusal, RcSecret, RcWarning, ServerOptions, UserEntry, UserOptions,
};
use super::dump::quote;
use super::keywords::{
    NOISE, ONE_WORD_NEGATIONS, STATEMENTS, Support, canonical_keyword, is_keyword,
    is_server_keyword, is_user_keyword, rc_support,
};
use super::lexer::{Tok, TokKind, lex};

/// Parses fetchmailrc text. `path` names the file in messages and anchors relative paths
/// (`logfile`, `idfile`, `pidfile`, `bsmtp`, `sslkey`, `sslcert`, `sslcertfile`,
/// `sslcertpath`, `passwordfile`) to the file's directory, as fetchmail does.
pub fn parse_fetchmailrc(text: &str, path: &Path) -> Result<FetchmailRc, FetchmailRcError> {
    let toks = lex(text, path)?;
    let mut p = Parser {
        toks,
        pos: 0,
        path,
        warnings: Vec::new(),
        refusals: Vec::new(),
        second_name_line: None,
    };
    let mut rc = FetchmailRc {
        source: path.to_owned(),
        ..FetchmailRc::default()
    };
    while let Some(tok) = p.peek() {
        let line = tok.line;
        let word = p.keyword_at_peek();
        match word.as_deref() {
            Some("set") => {
                p.bump();
                p.parse_set(&mut rc.globals)?;
            }
            Some("defaults") => {
                p.bump();
                if rc.defaults.is_some() || !rc.polls.is_empty() {
                    return Err(p.error(
                        line,
                        "multiple \"defaults\" records, or \"defaults\" is not the first record",
                    ));
                }
                let mut entry = PollEntry {
                    label: "defaults".into(),
                    line,
                    ..PollEntry::default()
                };
                p.parse_entry(&mut entry)?;
                rc.defaults = Some(entry);
            }
            Some(kw @ ("poll" | "server" | "skip")) => {
                let skip = kw == "skip";
                p.bump();
                let label = p.take_value(kw)?;
                let mut entry = PollEntry {
                    label,
                    line,
                    skip,
                    ..PollEntry::default()
                };
                p.parse_entry(&mut entry)?;
                rc.polls.push(entry);
            }
            _ => {
                let shown = p.describe_peek();
                return Err(p.error(
                    line,
                    format!("expected set, defaults, poll or skip, found {shown}"),
                ));
            }
        }
    }
    rc.warnings = p.warnings;
    rc.refusals = p.refusals;
    Ok(rc)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    path: &'a Path,
    warnings: Vec<RcWarning>,
    refusals: Vec<RcRefusal>,
    /// Line of the second name of the last mapping list, for error messages.
    second_name_line: Option<u32>,
}

/// Which options were given with `no`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Polarity {
    Yes,
    No,
}

impl Parser<'_> {
    fn error(&self, line: u32, message: impl Into<String>) -> FetchmailRcError {
        FetchmailRcError::Syntax {
            path: self.path.to_owned(),
            line,
            message: message.into(),
        }
    }

    fn warn(&mut self, line: u32, keyword: &str, instead: &str) {
        self.warnings.push(RcWarning {
            path: self.path.to_owned(),
            line,
            keyword: keyword.to_owned(),
            instead: instead.to_owned(),
        });
    }

    fn refuse(&mut self, line: u32, keyword: &str, why: &str) {
        self.refusals.push(RcRefusal {
            path: self.path.to_owned(),
            line,
            keyword: keyword.to_owned(),
            why: why.to_owned(),
        });
    }

    /// Applies [`RC_KEYWORDS`](super::RC_KEYWORDS) to `keyword` (canonical) as written at `line`: a refused keyword
    /// is recorded as a refusal, a warned one as a warning.
    fn check_support(&mut self, keyword: &str, polarity: Polarity, line: u32) {
        let negated = polarity == Polarity::No;
        let shown = match (negated, keyword.strip_prefix("set ")) {
            (false, _) => keyword.to_owned(),
            (true, Some(name)) => format!("set no {name}"),
            (true, None) => format!("no {keyword}"),
        };
        match rc_support(keyword, negated) {
            Some(Support::Refused(why)) => self.refuse(line, &shown, why),
            Some(Support::Warned(instead)) => self.warn(line, &shown, instead),
            Some(Support::Implemented) | None => {}
        }
    }

    fn last_line(&self) -> u32 {
        self.toks.last().map_or(1, |t| t.line)
    }

    /// The next token, skipping noise words (not in name state).
    fn peek(&mut self) -> Option<&Tok> {
        while let Some(Tok {
            kind: TokKind::Word {
                text,
                quoted: false,
            },
            ..
        }) = self.toks.get(self.pos)
        {
            if NOISE.contains(&text.as_str()) {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.toks.get(self.pos)
    }

    fn peek_line(&mut self) -> u32 {
        let last = self.last_line();
        self.peek().map_or(last, |t| t.line)
    }

    fn bump(&mut self) {
        self.pos += 1;
    }

    /// The keyword at the next (noise-skipped) token, if it is an unquoted keyword.
    fn keyword_at_peek(&mut self) -> Option<String> {
        match self.peek() {
            Some(Tok {
                kind:
                    TokKind::Word {
                        text,
                        quoted: false,
                    },
                ..
            }) if is_keyword(text) => Some(text.clone()),
            _ => None,
        }
    }

    fn describe_peek(&mut self) -> String {
        match self.peek() {
            None => "end of file".into(),
            Some(Tok {
                kind: TokKind::Eq, ..
            }) => "`=`".into(),
            Some(Tok {
                kind: TokKind::Word { text, quoted },
                ..
            }) => {
                if *quoted {
                    format!("string {}", quote(text))
                } else {
                    format!("unknown keyword `{text}`")
                }
            }
        }
    }

    /// The raw next token as a name (NAME state: keywords and noise words are literal).
    fn take_name(&mut self, after: &str) -> Result<String, FetchmailRcError> {
        match self.toks.get(self.pos) {
            Some(Tok {
                kind: TokKind::Word { text, .. },
                ..
            }) => {
                let t = text.clone();
                self.pos += 1;
                Ok(t)
            }
            Some(Tok { line, .. }) => {
                let line = *line;
                Err(self.error(line, format!("expected a name after `{after}`")))
            }
            None => Err(self.error(
                self.last_line(),
                format!("expected a name after `{after}`, found end of file"),
            )),
        }
    }

    /// A value: a quoted string or an unquoted non-keyword word.
    fn take_value(&mut self, after: &str) -> Result<String, FetchmailRcError> {
        let line = self.peek_line();
        match self.peek() {
            Some(Tok {
                kind: TokKind::Word { text, quoted },
                ..
            }) if *quoted || !is_keyword(text) => {
                let t = text.clone();
                self.bump();
                Ok(t)
            }
            _ => {
                let shown = self.describe_peek().replace("unknown keyword", "keyword");
                Err(self.error(
                    line,
                    format!("expected a value after `{after}`, found {shown}"),
                ))
            }
        }
    }

    fn take_number(&mut self, after: &str) -> Result<i64, FetchmailRcError> {
        let line = self.peek_line();
        match self.peek() {
            Some(Tok {
                kind:
                    TokKind::Word {
                        text,
                        quoted: false,
                    },
                ..
            }) if is_number(text) => {
                let text = text.clone();
                let v = text.parse::<i64>().map_err(|_| {
                    self.error(
                        line,
                        format!("number {text} after `{after}` is out of range"),
                    )
                })?;
                self.bump();
                Ok(v)
            }
            _ => {
                let shown = self.describe_peek().replace("unknown keyword", "word");
                Err(self.error(
                    line,
                    format!("expected a number after `{after}`, found {shown}"),
                ))
            }
        }
    }

    fn take_count(&mut self, after: &str) -> Result<u64, FetchmailRcError> {
        let line = self.peek_line();
        let v = self.take_number(after)?;
        u64::try_from(v)
            .map_err(|_| self.error(line, format!("`{after}` needs a non-negative number")))
    }

    /// A number of seconds: a count no larger than [`crate::config::MAX_SECONDS`].
    fn take_seconds(&mut self, after: &str) -> Result<u64, FetchmailRcError> {
        let line = self.peek_line();
        let v = self.take_count(after)?;
        crate::config::check_seconds(v).map_err(|m| self.error(line, format!("`{after}`: {m}")))
    }

    /// The very next token (noise words included) is `=`.
    fn next_is_eq(&self) -> bool {
        self.toks
            .get(self.pos)
            .is_some_and(|t| t.kind == TokKind::Eq)
    }

    /// The next (noise-skipped) token is an unquoted number.
    fn peek_is_number(&mut self) -> bool {
        matches!(self.peek(), Some(Tok { kind: TokKind::Word { text, quoted: false }, .. }) if is_number(text))
    }

    fn peek_is_value(&mut self) -> bool {
        matches!(self.peek(), Some(Tok { kind: TokKind::Word { text, quoted }, .. }) if *quoted || !is_keyword(text))
    }

    fn take_list(&mut self, after: &str) -> Result<Vec<String>, FetchmailRcError> {
        let mut items = vec![self.take_value(after)?];
        while self.peek_is_value() {
            items.push(self.take_value(after)?);
        }
        Ok(items)
    }

    fn resolve(&self, value: String) -> PathBuf {
        let p = PathBuf::from(value);
        if p.is_relative()
            && p.as_os_str() != "-"
            && let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            return dir.join(p);
        }
        p
    }

    /// Reads `no`, a one-word negation, or a plain keyword; returns (canonical keyword,
    /// polarity, line) without consuming anything when the next token is not a keyword.
    fn take_keyword(&mut self) -> Option<(String, Polarity, u32)> {
        let line = self.peek()?.line;
        let kw = self.keyword_at_peek()?;
        if let Some((_, base)) = ONE_WORD_NEGATIONS.iter().find(|(w, _)| *w == kw) {
            self.bump();
            return Some(((*base).to_owned(), Polarity::No, line));
        }
        if kw == "no" {
            let save = self.pos;
            self.bump();
            if let Some(next) = self.keyword_at_peek() {
                self.bump();
                return Some((next, Polarity::No, line));
            }
            self.pos = save;
            return None;
        }
        self.bump();
        Some((kw, Polarity::Yes, line))
    }

    fn parse_set(&mut self, g: &mut Globals) -> Result<(), FetchmailRcError> {
        let line = self.peek_line();
        let mut polarity = Polarity::Yes;
        let mut name = self.take_name("set")?;
        if name == "no" {
            polarity = Polarity::No;
            name = self.take_name("set no")?;
        }
        if let Some((_, base)) = ONE_WORD_NEGATIONS.iter().find(|(w, _)| *w == name) {
            polarity = Polarity::No;
            name = (*base).to_owned();
        }
        if self.next_is_eq() {
            self.bump();
        }
        let keyword = format!("set {name}");
        if rc_support(&keyword, false).is_some() {
            self.check_support(&keyword, polarity, line);
        }
        if polarity == Polarity::No
            && Globals::KEYWORDS.contains(&keyword.as_str())
            && !Globals::negatable(&keyword)
        {
            return Err(self.error(line, format!("`set no {name}` is not valid")));
        }
        let flag = polarity == Polarity::Yes;
        match name.as_str() {
            "daemon" => {
                g.daemon = loc(line, self.take_seconds("set daemon")?);
            }
            "logfile" | "idfile" | "pidfile" => {
                let v = self.take_value(&format!("set {name}"))?;
                let v = loc(line, self.resolve(v));
                match name.as_str() {
                    "logfile" => g.logfile = v,
                    "idfile" => g.idfile = v,
                    _ => g.pidfile = v,
                }
            }
            "postmaster" => {
                g.postmaster = loc(line, self.take_name("set postmaster")?);
            }
            "properties" => {
                g.properties = loc(line, self.take_value("set properties")?);
            }
            "bouncemail" => g.bouncemail = loc(line, flag),
            "spambounce" => g.spambounce = loc(line, flag),
            "softbounce" => g.softbounce = loc(line, flag),
            "syslog" => g.syslog = loc(line, flag),
            "invisible" => g.invisible = loc(line, flag),
            "showdots" => g.showdots = loc(line, flag),
            "interface" | "monitor" | "batchlimit" => {
                return Err(self.error(
                    line,
                    format!(
                        "`set {name}` is no longer valid (since fetchmail 2.8 it is a {} option)",
                        if name == "batchlimit" {
                            "user"
                        } else {
                            "server"
                        }
                    ),
                ));
            }
            other => {
                return Err(self.error(line, format!("unknown `set` option `{other}`")));
            }
        }
        Ok(())
    }

    /// Server options, then user descriptions, until the next statement.
    fn parse_entry(&mut self, entry: &mut PollEntry) -> Result<(), FetchmailRcError> {
        loop {
            let Some(tok) = self.peek() else {
                return Ok(());
            };
            let line = tok.line;
            let Some(kw) = self.keyword_at_peek() else {
                let shown = self.describe_peek();
                return Err(self.error(line, format!("unexpected {shown}")));
            };
            if STATEMENTS.contains(&kw.as_str()) {
                return Ok(());
            }
            if kw == "user" || kw == "username" {
                self.bump();
                let user = self.parse_user_head(line)?;
                entry.users.push(user);
                continue;
            }
            let save = self.pos;
            let Some((kw, polarity, line)) = self.take_keyword() else {
                if kw == "no" {
                    return Err(self.error(line, "`no` must be followed by an option name"));
                }
                let shown = self.describe_peek();
                return Err(self.error(line, format!("unexpected {shown}")));
            };
            if is_server_keyword(&kw) {
                if !entry.users.is_empty() {
                    return Err(self.error(
                        line,
                        format!(
                            "server option `{kw}` after user options (server options must come before the first `user`)"
                        ),
                    ));
                }
                self.parse_server_option(&mut entry.server, &kw, polarity, line)?;
            } else if is_user_keyword(&kw) {
                if entry.users.is_empty() {
                    entry.users.push(UserEntry {
                        line,
                        implicit: true,
                        ..UserEntry::default()
                    });
                }
                let Some(user) = entry.users.last_mut() else {
                    return Err(self.error(line, "internal: no user entry"));
                };
                let mut user = std::mem::take(user);
                let r = self.parse_user_option(&mut user, &kw, polarity, line);
                if let Some(slot) = entry.users.last_mut() {
                    *slot = user;
                }
                r?;
            } else if kw == "here" || kw == "there" {
                return Err(self.error(
                    line,
                    format!("`{kw}` without a user name or local names before it"),
                ));
            } else {
                self.pos = save;
                let shown = self.describe_peek();
                return Err(self.error(line, format!("unexpected {shown}")));
            }
        }
    }

    /// After `user`: `NAME [there]`, or `NAME... here`.
    fn parse_user_head(&mut self, line: u32) -> Result<UserEntry, FetchmailRcError> {
        let (names, wildcard) = self.mapping_list("user")?;
        let mut user = UserEntry {
            line,
            ..UserEntry::default()
        };
        match self.keyword_at_peek().as_deref() {
            Some("here") => {
                self.bump();
                user.locals = names;
                user.wildcard = wildcard;
            }
            Some("there") => {
                self.bump();
                user.remote = Some(Located {
                    value: single_name(&names, wildcard)
                        .ok_or_else(|| self.error(line, "`there` needs exactly one name"))?,
                    line,
                });
            }
            _ => {
                user.remote = Some(Located {
                    value: single_name(&names, wildcard).ok_or_else(|| {
                        self.error(
                            self.second_name_line.unwrap_or(line),
                            format!(
                                "unexpected `{}` after the user name (several names after `user` must be followed by `here`)",
                                names.get(1).map_or("*", |n| n.local.as_str())
                            ),
                        )
                    })?,
                    line,
                });
            }
        }
        Ok(user)
    }

    /// Names after `user`/`is`/`to`: the first taken literally, then further non-keyword words,
    /// `a=b` mappings and `*`.
    fn mapping_list(&mut self, after: &str) -> Result<(Vec<LocalName>, bool), FetchmailRcError> {
        self.second_name_line = None;
        let mut names: Vec<LocalName> = Vec::new();
        let mut wildcard = false;
        let first = self.take_name(after)?;
        let mut push = |names: &mut Vec<LocalName>, n: String| {
            if n == "*" {
                wildcard = true;
            } else {
                names.push(LocalName {
                    server_name: None,
                    local: n,
                });
            }
        };
        push(&mut names, first);
        loop {
            if self.next_is_eq() {
                self.bump();
                let local = self.take_name("=")?;
                match names.last_mut() {
                    Some(last) if last.server_name.is_none() => {
                        last.server_name = Some(std::mem::replace(&mut last.local, local));
                    }
                    _ => {
                        let line = self.last_line();
                        return Err(self.error(line, "`=` needs a name on its left"));
                    }
                }
                continue;
            }
            if self.peek_is_value() {
                if self.second_name_line.is_none() {
                    self.second_name_line = Some(self.peek_line());
                }
                let v = self.take_value(after)?;
                push(&mut names, v);
                continue;
            }
            break;
        }
        Ok((names, wildcard))
    }

    fn parse_server_option(
        &mut self,
        s: &mut ServerOptions,
        kw: &str,
        polarity: Polarity,
        line: u32,
    ) -> Result<(), FetchmailRcError> {
        let flag = polarity == Polarity::Yes;
        if polarity == Polarity::No && !ServerOptions::negatable(canonical_keyword(kw)) {
            return Err(self.error(line, format!("`no {kw}` is not valid")));
        }
        self.check_support(canonical_keyword(kw), polarity, line);
        match kw {
            "via" => s.via = loc(line, self.take_value(kw)?),
            "protocol" | "proto" => {
                let v = self.take_value(kw)?;
                let proto = parse_protocol(&v).ok_or_else(|| {
                    self.error(
                        line,
                        format!("unknown protocol `{v}` (protocol names are all lower or all upper case)"),
                    )
                })?;
                s.protocol = loc(line, proto);
            }
            "service" | "port" => {
                let v = self.take_value(kw)?;
                if kw == "port" && !is_number(&v) {
                    return Err(self.error(line, format!("`port` needs a number, found `{v}`")));
                }
                s.service = loc(line, v);
            }
            "auth" | "authenticate" | "preauth" | "preauthenticate" => {
                let v = self.take_name(kw)?;
                let auth = AuthType::parse(&v.to_ascii_lowercase()).ok_or_else(|| {
                    self.error(line, format!("unknown authentication type `{v}`"))
                })?;
                if !auth.implemented() {
                    self.warn(
                        line,
                        &format!("auth {}", auth.name()),
                        "rfetch chooses among the methods it implements",
                    );
                }
                s.auth = loc(line, auth);
            }
            "timeout" => s.timeout = loc(line, self.take_seconds(kw)?),
            "interval" => s.interval = loc(line, self.take_seconds(kw)?),
            "envelope" => {
                if polarity == Polarity::No {
                    s.envelope = loc(line, Envelope::Disabled);
                } else {
                    let mut skip = 0u32;
                    if self.peek_is_number() {
                        let n = self.take_count(kw)?;
                        skip = u32::try_from(n)
                            .map_err(|_| self.error(line, "envelope skip count is too large"))?;
                    }
                    let name = self.take_value(kw)?;
                    s.envelope = loc(line, Envelope::Header { skip, name });
                }
            }
            "qvirtual" => s.qvirtual = loc(line, self.take_value(kw)?),
            "aka" => s.aka = loc(line, self.take_list(kw)?),
            "localdomains" | "local" => s.localdomains = loc(line, self.take_list(kw)?),
            "interface" => s.interface = loc(line, self.take_value(kw)?),
            "monitor" => s.monitor = loc(line, self.take_value(kw)?),
            "plugin" => s.plugin = loc(line, self.take_value(kw)?),
            "plugout" => s.plugout = loc(line, self.take_value(kw)?),
            "principal" => s.principal = loc(line, self.take_value(kw)?),
            "esmtpname" => s.esmtpname = loc(line, self.take_name(kw)?),
            "esmtppassword" => s.esmtppassword = loc(line, RcSecret(self.take_name(kw)?)),
            "dns" => s.dns = loc(line, flag),
            "checkalias" => s.checkalias = loc(line, flag),
            "uidl" => s.uidl = loc(line, flag),
            "tracepolls" => s.tracepolls = loc(line, flag),
            "bad-header" => {
                let v = self.take_value(kw)?;
                s.bad_header = loc(
                    line,
                    match v.as_str() {
                        "accept" => BadHeader::Accept,
                        "reject" => {
                            self.refuse(
                                line,
                                "bad-header reject",
                                "rfetch delivers a message whose header is malformed as it came \
                                 (bad-header accept)",
                            );
                            BadHeader::Reject
                        }
                        _ => {
                            return Err(self.error(
                                line,
                                format!("`bad-header` takes accept or reject, found `{v}`"),
                            ));
                        }
                    },
                );
            }
            other => return Err(self.error(line, format!("unknown server option `{other}`"))),
        }
        Ok(())
    }

    fn parse_user_option(
        &mut self,
        u: &mut UserEntry,
        kw: &str,
        polarity: Polarity,
        line: u32,
    ) -> Result<(), FetchmailRcError> {
        let kw = canonical_keyword(kw);
        let flag = polarity == Polarity::Yes;
        if polarity == Polarity::No && !UserOptions::negatable(kw) {
            return Err(self.error(line, format!("`no {kw}` is not valid")));
        }
        if kw != "antispam" {
            self.check_support(kw, polarity, line);
        }
        let o = &mut u.options;
        match kw {
            "password" => o.password = loc(line, RcSecret(self.take_name(kw)?)),
            "is" | "to" => {
                let (names, wildcard) = self.mapping_list(kw)?;
                match self.keyword_at_peek().as_deref() {
                    Some("there") => {
                        self.bump();
                        let name = single_name(&names, wildcard)
                            .ok_or_else(|| self.error(line, "`there` needs exactly one name"))?;
                        u.remote = loc(line, name);
                    }
                    Some("here") => {
                        self.bump();
                        u.locals.extend(names);
                        u.wildcard |= wildcard;
                    }
                    _ => {
                        u.locals.extend(names);
                        u.wildcard |= wildcard;
                    }
                }
            }
            "ssl" => o.ssl = loc(line, flag),
            "sslcertck" => o.sslcertck = loc(line, flag),
            "lmtp" => o.lmtp = loc(line, flag),
            "keep" => o.keep = loc(line, flag),
            "flush" => o.flush = loc(line, flag),
            "limitflush" => o.limitflush = loc(line, flag),
            "fetchall" => o.fetchall = loc(line, flag),
            "rewrite" => o.rewrite = loc(line, flag),
            "stripcr" => o.stripcr = loc(line, flag),
            "forcecr" => o.forcecr = loc(line, flag),
            "pass8bits" => o.pass8bits = loc(line, flag),
            "dropstatus" => o.dropstatus = loc(line, flag),
            "dropdelivered" => o.dropdelivered = loc(line, flag),
            "mimedecode" => o.mimedecode = loc(line, flag),
            "idle" => o.idle = loc(line, flag),
            "forceidle" => o.forceidle = loc(line, flag),
            "sslproto" | "sslprotocolversion" => {
                let v = self.take_value(kw)?;
                if let Err(why) = check_tls_floor(&v) {
                    self.refuse(line, &format!("{kw} {v}"), why);
                }
                match kw {
                    "sslproto" => u.options.sslproto = loc(line, v),
                    _ => u.options.sslprotocolversion = loc(line, v),
                }
            }
            "sslcommonname" => o.sslcommonname = loc(line, self.take_value(kw)?),
            "sslfingerprint" => o.sslfingerprint = loc(line, self.take_value(kw)?),
            "smtpaddress" => o.smtpaddress = loc(line, self.take_value(kw)?),
            "smtpname" => o.smtpname = loc(line, self.take_value(kw)?),
            "mda" => o.mda = loc(line, self.take_value(kw)?),
            "preconnect" => o.preconnect = loc(line, self.take_value(kw)?),
            "postconnect" => o.postconnect = loc(line, self.take_value(kw)?),
            "properties" => o.properties = loc(line, self.take_value(kw)?),
            "sslmode" => {
                let mut v = self.take_value(kw)?;
                // `starttls=must` lexes as three tokens (`=` is punctuation).
                if v == "starttls" && self.next_is_eq() {
                    self.bump();
                    v = format!("starttls={}", self.take_name("starttls=")?);
                }
                if !matches!(v.as_str(), "wrapped" | "starttls=must" | "starttls=may") {
                    self.refuse(
                        line,
                        &format!("sslmode {v}"),
                        "rfetch polls over TLS only (wrapped, starttls=must; starttls=may is \
                         treated as must)",
                    );
                }
                u.options.sslmode = loc(line, v);
            }
            "passwordeval" => o.passwordeval = loc(line, self.take_value(kw)?),
            "retrieve-error" => o.retrieve_error = loc(line, self.take_value(kw)?),
            "sslcertfile" | "sslcertpath" | "sslcert" | "sslkey" | "bsmtp" | "passwordfile" => {
                let v = self.take_value(kw)?;
                let v = loc(line, self.resolve(v));
                match kw {
                    "sslcertfile" => o.sslcertfile = v,
                    "sslcertpath" => o.sslcertpath = v,
                    "sslcert" => o.sslcert = v,
                    "sslkey" => o.sslkey = v,
                    "bsmtp" => o.bsmtp = v,
                    _ => o.passwordfile = v,
                }
            }
            "folder" => o.folders = loc(line, self.take_list(kw)?),
            "smtphost" => {
                let hosts = self.take_list(kw)?;
                u.options.smtphosts = loc(line, hosts);
            }
            "fetchdomains" => o.fetchdomains = loc(line, self.take_list(kw)?),
            "antispam" => {
                let mut codes = vec![self.take_number(kw)?];
                while self.peek_is_number() {
                    codes.push(self.take_number(kw)?);
                }
                if codes != [-1]
                    && let Some(bad) = codes.iter().find(|c| !(100..=599).contains(*c))
                {
                    return Err(self.error(
                        line,
                        format!("antispam {bad}: an SMTP reply code is 100 to 599 (or -1 alone)"),
                    ));
                }
                u.options.antispam = loc(line, codes);
            }
            "limit" => o.limit = loc(line, self.take_count(kw)?),
            "warnings" => o.warnings = loc(line, self.take_seconds(kw)?),
            "batchlimit" => o.batchlimit = loc(line, self.take_count(kw)?),
            "fetchlimit" => o.fetchlimit = loc(line, self.take_count(kw)?),
            "fetchsizelimit" => o.fetchsizelimit = loc(line, self.take_count(kw)?),
            "fastuidl" => o.fastuidl = loc(line, self.take_count(kw)?),
            "expunge" => o.expunge = loc(line, self.take_count(kw)?),
            "idletimeout" => o.idletimeout = loc(line, self.take_seconds(kw)?),
            "passwordfd" => o.passwordfd = loc(line, self.take_count(kw)?),
            other => return Err(self.error(line, format!("unknown user option `{other}`"))),
        }
        Ok(())
    }
}

/// `sslproto`/`sslprotocolversion`: the values whose floor rfetch meets (it speaks TLS 1.2
/// and 1.3); a floor above 1.2, or an exact old version, is refused with the reason. The empty
/// value (no STARTTLS) is accepted: rfetch still requires TLS, which is stricter.
pub fn check_tls_floor(value: &str) -> Result<(), &'static str> {
    match value.to_ascii_lowercase().as_str() {
        "" | "auto" | "ssl23" | "tls1+" | "tls1.1+" | "tls1.2+" | "tls1.2" => Ok(()),
        "tls1.3" | "tls1.3+" => Err("rfetch cannot require TLS 1.3; it accepts TLS 1.2 and 1.3"),
        _ => Err("rfetch speaks TLS 1.2 and 1.3 only (auto, tls1.2+ and tls1.2 are accepted)"),
    }
}

fn loc<T>(line: u32, value: T) -> Opt<T> {
    Some(Located { value, line })
}

fn single_name(names: &[LocalName], wildcard: bool) -> Option<String> {
    match names {
        [only] if !wildcard && only.server_name.is_none() => Some(only.local.clone()),
        _ => None,
    }
}

fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Protocol names: all lower or all upper case only (what fetchmail's lexer accepts).
fn parse_protocol(word: &str) -> Option<Protocol> {
    let lower = word.to_ascii_lowercase();
    if word != lower && word != word.to_ascii_uppercase() {
        return None;
    }
    Some(match lower.as_str() {
        "auto" => Protocol::Auto,
        "pop2" => Protocol::Pop2,
        "pop3" => Protocol::Pop3,
        "imap" => Protocol::Imap,
        "apop" => Protocol::Apop,
        "rpop" => Protocol::Rpop,
        "kpop" => Protocol::Kpop,
        "sdps" => Protocol::Sdps,
        "etrn" => Protocol::Etrn,
        "odmr" => Protocol::Odmr,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_quotes_stay_inside_the_string() {
        let rc = parse_fetchmailrc(
            "poll h proto imap user \"a\\\"b\" password 'c\\'d' is x here\n",
            Path::new("/rc"),
        )
        .unwrap();
        let u = &rc.polls[0].users[0];
        assert_eq!(u.remote.as_ref().unwrap().value, "a\"b");
        assert_eq!(u.options.password.as_ref().unwrap().value.expose(), "c'd");
        // A backslash-newline inside a string still counts the line.
        let rc = parse_fetchmailrc("poll h user \"a\\\nb\"\npoll i\n", Path::new("/rc")).unwrap();
        assert_eq!(rc.polls[0].users[0].remote.as_ref().unwrap().value, "ab");
        assert_eq!(rc.polls[1].line, 3);
    }
}
