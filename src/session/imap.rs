//! The blocking IMAP session: connects (IMAPS or STARTTLS; PREAUTH before a required STARTTLS
//! is refused, CVE-2021-39272), logs in (LOGIN, AUTHENTICATE with SASL-IR or a pluggable SASL
//! mechanism), selects a folder, searches, fetches many messages with one UID FETCH while
//! streaming each body, stores flags, expunges (UID EXPUNGE with UIDPLUS), IDLEs and logs out,
//! over a [`crate::net::Connection`].

use std::fmt;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::log as plog;
use crate::net::{self, ConnectOptions, Connection, Endpoint, NetError, TlsMode, TlsOptions};
use crate::proto::imap::{self, Code, Command, Event, ImapError, Search, Status};
use crate::proto::trace::Outbound;

pub use super::pop3::{SaslClient, Secret};
use super::pop3::{check_plaintext, plain_mechanism};

/// How to log in to an IMAP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImapAuth {
    /// LOGIN, or AUTHENTICATE PLAIN when the server says LOGINDISABLED.
    #[default]
    Auto,
    /// LOGIN (RFC 9051 §6.2.3).
    Login,
    /// AUTHENTICATE PLAIN (RFC 4616), with SASL-IR when advertised.
    Plain,
}

/// Everything needed to open and log in to one IMAP account.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub endpoint: Endpoint,
    pub tls_mode: TlsMode,
    pub tls: TlsOptions,
    pub connect: ConnectOptions,
    pub user: String,
    pub password: Secret,
    pub auth: ImapAuth,
    /// Allow LOGIN and AUTHENTICATE PLAIN over an unencrypted connection.
    pub allow_plaintext: bool,
    /// Send IDLE even when the server does not announce it (fetchmail `forceidle`).
    pub force_idle: bool,
    pub limits: imap::Limits,
}

impl ImapSettings {
    /// Settings with the defaults: STARTTLS required, Auto login.
    pub fn new(endpoint: Endpoint, user: impl Into<String>, password: Secret) -> Self {
        ImapSettings {
            endpoint,
            tls_mode: TlsMode::default(),
            tls: TlsOptions::default(),
            connect: ConnectOptions::default(),
            user: user.into(),
            password,
            auth: ImapAuth::default(),
            allow_plaintext: false,
            force_idle: false,
            limits: imap::Limits::default(),
        }
    }
}

/// What SELECT/EXAMINE reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxInfo {
    pub exists: u32,
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
}

/// What the server said about one fetched message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchedMeta {
    pub uid: u32,
    /// RFC822.SIZE as the server reported it (not trusted for allocation).
    pub size: Option<u64>,
    pub flags: Vec<String>,
}

/// Receives fetched messages as they stream in.
pub trait FetchSink {
    /// A message body begins.
    fn start(&mut self, meta: &FetchedMeta) -> Result<()>;
    /// The next raw bytes of the current message.
    fn data(&mut self, chunk: &[u8]) -> Result<()>;
    /// The current message is complete; `octets` bytes were passed to `data`.
    fn end(&mut self, meta: &FetchedMeta, octets: u64) -> Result<()>;
}

/// How IDLE ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleEvent {
    /// The mailbox now has this many messages (new mail, or a change).
    Exists(u32),
    /// A message was expunged by someone else.
    Expunged,
    /// New messages were announced with RECENT.
    Recent(u32),
    /// Nothing happened within the timeout.
    Timeout,
    /// The caller's interrupt check asked to stop waiting (shutdown, SIGUSR1).
    Interrupted,
}

/// How often an IDLE wait checks its interrupt condition: the longest read while idling.
pub const IDLE_SLICE: Duration = Duration::from_millis(500);

/// An IMAP session.
pub struct ImapSession {
    conn: Connection,
    client: imap::Client,
    settings: ImapSettings,
    authenticated: bool,
    read_buf: Vec<u8>,
    broken: bool,
    /// EXISTS seen since the last SELECT/NOOP/IDLE, for callers that care.
    last_exists: Option<u32>,
    /// Commands sent without waiting for their completion (tag, name), oldest first: see
    /// [`ImapSession::expunge_deferred`].
    deferred: Vec<(String, &'static str)>,
}

impl fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapSession")
            .field("peer", &self.conn.peer())
            .field("tls", &self.conn.is_tls())
            .field("user", &self.settings.user)
            .finish()
    }
}

/// Longest UID set we put in one command (servers limit command lines; Dovecot to 64 KiB).
const MAX_SET_LEN: usize = 8000;

/// Most bytes of a body held in memory while its UID is unknown (a server that puts UID after
/// the body literal). A larger body is dropped and fetched again on its own, when the UID asked
/// for is the UID of whatever body comes back.
const MAX_HELD_BODY: usize = 256 * 1024;

impl ImapSession {
    /// Connects, reads the greeting and, with [`TlsMode::Starttls`], upgrades (mandatory)
    /// and asks CAPABILITY again.
    pub fn connect(settings: &ImapSettings) -> Result<ImapSession> {
        let ep = &settings.endpoint;
        let context = || format!("cannot open IMAP session with {}:{}", ep.host, ep.port);
        let conn = match settings.tls_mode {
            TlsMode::Implicit => net::connect_tls(ep, &settings.connect, &settings.tls),
            TlsMode::Off | TlsMode::Starttls => net::connect(ep, &settings.connect),
        }
        .map_err(|e| Error::from(e).context(context()))?;
        Self::start(conn, settings).map_err(|e| e.context(context()))
    }

    /// Runs the session start (greeting, CAPABILITY, STARTTLS) on an open connection.
    pub fn start(conn: Connection, settings: &ImapSettings) -> Result<ImapSession> {
        let mut client = imap::Client::new(settings.limits);
        client.set_trace(plog::wire_enabled());
        let mut s = ImapSession {
            conn,
            client,
            settings: settings.clone(),
            authenticated: false,
            read_buf: vec![0; 64 * 1024],
            broken: false,
            last_exists: None,
            deferred: Vec::new(),
        };
        match s.next_event()? {
            Event::Greeting {
                status: Status::Ok, ..
            } => {}
            Event::Greeting {
                status: Status::Preauth,
                ..
            } => {
                if settings.tls_mode == TlsMode::Starttls && !s.conn.is_tls() {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        "server sent PREAUTH on an unencrypted connection: STARTTLS is impossible \
                         after PREAUTH, and TLS is required",
                    ));
                }
                s.authenticated = true;
            }
            Event::Greeting { text, .. } => {
                return Err(Error::new(
                    ErrorKind::RejectedTemporary,
                    format!("server refused the session: {text}"),
                ));
            }
            other => return Err(unexpected(&other)),
        }
        if s.client.capabilities().is_empty() {
            s.capability()?;
        }
        if settings.tls_mode == TlsMode::Starttls && !s.conn.is_tls() {
            if !s.client.has_capability("STARTTLS") {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "server does not offer STARTTLS, and TLS is required",
                ));
            }
            let done = s.run(&Command::StartTls)?;
            if done.status != Status::Ok {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("server refused STARTTLS: {}", done.text),
                ));
            }
            let ImapSession { conn, client, .. } = s;
            let conn = conn.upgrade_tls(&settings.tls, &settings.endpoint.host)?;
            s = ImapSession {
                conn,
                client,
                settings: settings.clone(),
                authenticated: false,
                read_buf: vec![0; 64 * 1024],
                broken: false,
                last_exists: None,
                deferred: Vec::new(),
            };
            s.client.tls_established();
            s.client.set_trace(plog::wire_enabled());
            s.capability()?;
        }
        Ok(s)
    }

    /// The capabilities last announced, upper-cased.
    pub fn capabilities(&self) -> &[String] {
        self.client.capabilities()
    }

    /// Whether `name` (e.g. "IDLE", "UIDPLUS") was announced.
    pub fn has_capability(&self, name: &str) -> bool {
        self.client.has_capability(name)
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// The underlying connection (for TLS details).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Logs in with the configured method (nothing to do after PREAUTH on a TLS connection).
    pub fn login(&mut self) -> Result<()> {
        if self.authenticated {
            return Ok(());
        }
        let user = self.settings.user.clone();
        let method = match self.settings.auth {
            ImapAuth::Auto if self.has_capability("LOGINDISABLED") => ImapAuth::Plain,
            ImapAuth::Auto => ImapAuth::Login,
            m => m,
        };
        match method {
            ImapAuth::Plain => {
                let mut mech = plain_mechanism(&user, &self.settings.password);
                self.login_sasl(&mut mech)
            }
            ImapAuth::Login | ImapAuth::Auto => {
                check_plaintext(
                    self.conn.is_tls(),
                    self.settings.allow_plaintext,
                    &user,
                    "LOGIN",
                )?;
                if self.has_capability("LOGINDISABLED") {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        "server has disabled LOGIN (LOGINDISABLED)",
                    ));
                }
                let done = self.run(&Command::Login {
                    user: user.clone(),
                    password: self.settings.password.expose().to_string(),
                })?;
                self.after_login(done, &user)
            }
        }
    }

    /// Logs in with AUTHENTICATE and a SASL mechanism (initial response sent as SASL-IR when
    /// the server advertises it).
    pub fn login_sasl(&mut self, mech: &mut dyn SaslClient) -> Result<()> {
        let user = self.settings.user.clone();
        if mech.sends_plaintext_secret() {
            check_plaintext(
                self.conn.is_tls(),
                self.settings.allow_plaintext,
                &user,
                mech.mechanism(),
            )?;
        }
        let name = mech.mechanism().to_string();
        if !self.has_capability(&format!("AUTH={name}")) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("server does not offer AUTHENTICATE {name}"),
            ));
        }
        let mut initial = mech.initial_response()?;
        let sasl_ir = self.has_capability("SASL-IR");
        let cmd = Command::Authenticate {
            mechanism: name,
            initial: if sasl_ir { initial.take() } else { None },
        };
        self.send(&cmd)?;
        let mut rounds = 0;
        let done = loop {
            match self.next_event()? {
                Event::AuthChallenge(challenge) => {
                    rounds += 1;
                    if rounds > 32 {
                        return Err(self.poison(Error::new(
                            ErrorKind::Protocol,
                            "SASL exchange did not finish after 32 challenges",
                        )));
                    }
                    // Without SASL-IR the first (empty) challenge asks for the initial response.
                    let response = match initial.take() {
                        Some(first) if challenge.is_empty() => Ok(first),
                        _ => mech.step(&challenge),
                    };
                    let line = match response {
                        Ok(r) => self.client.auth_response(Some(&r)),
                        Err(e) => {
                            let cancel = self.client.auth_response(None);
                            self.write_out(&cancel)?;
                            let _ = self.wait_done();
                            return Err(e);
                        }
                    };
                    self.write_out(&line)?;
                }
                Event::Done {
                    status, code, text, ..
                } => break Done { status, code, text },
                other => self.untagged(other)?,
            }
        };
        self.after_login(done, &user)
    }

    fn after_login(&mut self, done: Done, user: &str) -> Result<()> {
        match done.status {
            Status::Ok => {
                self.authenticated = true;
                // Capabilities change after login; Dovecot sends them in the OK code.
                if !matches!(done.code, Some(Code::Capability(_))) {
                    self.capability()?;
                }
                Ok(())
            }
            _ => {
                let kind = match done.code {
                    Some(Code::Temporary(_)) => ErrorKind::RejectedTemporary,
                    _ => ErrorKind::Auth,
                };
                Err(Error::new(
                    kind,
                    format!("IMAP login as {user} failed: {}", done.text),
                ))
            }
        }
    }

    /// SELECT a folder (read-write).
    pub fn select(&mut self, folder: &str) -> Result<MailboxInfo> {
        self.open_folder(Command::Select(folder.to_string()), folder)
    }

    /// EXAMINE a folder (read-only).
    pub fn examine(&mut self, folder: &str) -> Result<MailboxInfo> {
        self.open_folder(Command::Examine(folder.to_string()), folder)
    }

    fn open_folder(&mut self, cmd: Command, folder: &str) -> Result<MailboxInfo> {
        self.send(&cmd)?;
        let mut info = MailboxInfo::default();
        loop {
            match self.next_event()? {
                Event::Exists(n) => info.exists = n,
                Event::Untagged {
                    code: Some(Code::UidValidity(v)),
                    ..
                } => info.uidvalidity = Some(v),
                Event::Untagged {
                    code: Some(Code::UidNext(v)),
                    ..
                } => info.uidnext = Some(v),
                Event::Done {
                    status, code, text, ..
                } => {
                    check_done(Done { status, code, text }, &format!("SELECT {folder}"))?;
                    self.last_exists = Some(info.exists);
                    return Ok(info);
                }
                other => self.untagged(other)?,
            }
        }
    }

    /// UID SEARCH: the matching UIDs.
    pub fn uid_search(&mut self, what: Search) -> Result<Vec<u32>> {
        self.send(&Command::UidSearch(what))?;
        let mut uids = Vec::new();
        loop {
            match self.next_event()? {
                Event::Search(mut found) => uids.append(&mut found),
                Event::Done {
                    status, code, text, ..
                } => {
                    check_done(Done { status, code, text }, "UID SEARCH")?;
                    return Ok(uids);
                }
                other => self.untagged(other)?,
            }
        }
    }

    /// Fetches the given messages with `UID FETCH set (UID RFC822.SIZE FLAGS BODY.PEEK[])`
    /// (one command per 8000 bytes of UID set), streaming every body into `sink`. Returns the
    /// UIDs delivered; UIDs the server no longer has are simply absent.
    pub fn fetch_bodies(&mut self, uids: &[u32], sink: &mut dyn FetchSink) -> Result<Vec<u32>> {
        let mut delivered = Vec::new();
        for set in uid_sets(uids) {
            self.fetch_set(&set, sink, &mut delivered)?;
        }
        Ok(delivered)
    }

    /// `UID FETCH set (UID RFC822.SIZE FLAGS)` without bodies: the size and flags of each of
    /// `uids` the server still has (to apply a size limit before downloading anything).
    pub fn fetch_meta(&mut self, uids: &[u32]) -> Result<Vec<FetchedMeta>> {
        let mut out = Vec::new();
        for set in uid_sets(uids) {
            self.send(&Command::UidFetch { set, body: false })?;
            loop {
                match self.next_event()? {
                    Event::Fetch { attrs, .. } => {
                        if let Some(uid) = attrs.uid {
                            out.push(FetchedMeta {
                                uid,
                                size: attrs.size,
                                flags: attrs.flags.unwrap_or_default(),
                            });
                        }
                    }
                    Event::Done {
                        status, code, text, ..
                    } => {
                        check_done(Done { status, code, text }, "UID FETCH")?;
                        break;
                    }
                    other => self.untagged(other)?,
                }
            }
        }
        Ok(out)
    }

    /// Like [`ImapSession::fetch_bodies`] for a literal UID set such as "1:*".
    pub fn fetch_bodies_set(&mut self, set: &str, sink: &mut dyn FetchSink) -> Result<Vec<u32>> {
        let mut delivered = Vec::new();
        self.fetch_set(set, sink, &mut delivered)?;
        Ok(delivered)
    }

    fn fetch_set(
        &mut self,
        set: &str,
        sink: &mut dyn FetchSink,
        delivered: &mut Vec<u32>,
    ) -> Result<()> {
        let refetch = self.fetch_set_once(set, None, sink, delivered)?;
        for uid in refetch {
            // Asked for alone, the body that comes back is this UID's wherever the server puts
            // the UID, so it streams without being held.
            self.fetch_set_once(&uid.to_string(), Some(uid), sink, delivered)?;
        }
        Ok(())
    }

    /// One UID FETCH. `known_uid`: the set is this single UID. Returns the UIDs whose bodies
    /// came before their UID and were too large to hold (to be fetched again alone).
    fn fetch_set_once(
        &mut self,
        set: &str,
        known_uid: Option<u32>,
        sink: &mut dyn FetchSink,
        delivered: &mut Vec<u32>,
    ) -> Result<Vec<u32>> {
        // Deferred commands (an EXPUNGE of the previous batch) complete while this FETCH is
        // already with the server: their completions are read here, in whatever order.
        self.send_now(&Command::UidFetch {
            set: set.to_string(),
            body: true,
        })?;
        let mut deferred_err = None;
        // When the server puts UID after the body, the body is held (up to MAX_HELD_BODY) until
        // the UID is known.
        let mut current: Option<FetchedMeta> = None;
        let mut held: Option<Vec<u8>> = None;
        let mut overflowed = false;
        let mut refetch = Vec::new();
        let mut octets = 0u64;
        loop {
            match self.next_event()? {
                Event::BodyStart { attrs, .. } => {
                    octets = 0;
                    overflowed = false;
                    match attrs.uid.or(known_uid) {
                        Some(uid) => {
                            let meta = FetchedMeta {
                                uid,
                                size: attrs.size,
                                flags: attrs.flags.unwrap_or_default(),
                            };
                            if let Err(e) = sink.start(&meta) {
                                return Err(self.poison(e));
                            }
                            current = Some(meta);
                        }
                        None => held = Some(Vec::new()),
                    }
                }
                Event::BodyChunk(chunk) => {
                    octets += chunk.len() as u64;
                    if let Some(buf) = held.as_mut() {
                        if buf.len() + chunk.len() > MAX_HELD_BODY {
                            held = None;
                            overflowed = true;
                        } else {
                            buf.extend_from_slice(&chunk);
                        }
                    } else if current.is_some()
                        && let Err(e) = sink.data(&chunk)
                    {
                        return Err(self.poison(e));
                    }
                }
                Event::Fetch {
                    attrs,
                    had_body: true,
                    ..
                } => {
                    let r = if let Some(meta) = current.take() {
                        delivered.push(meta.uid);
                        sink.end(&meta, octets)
                    } else if let (Some(body), Some(uid)) = (held.take(), attrs.uid) {
                        let meta = FetchedMeta {
                            uid,
                            size: attrs.size,
                            flags: attrs.flags.unwrap_or_default(),
                        };
                        delivered.push(uid);
                        sink.start(&meta)
                            .and_then(|()| sink.data(&body))
                            .and_then(|()| sink.end(&meta, octets))
                    } else if let (true, Some(uid)) = (overflowed, attrs.uid) {
                        log::debug!(
                            "IMAP server sent the {octets}-byte body of UID {uid} before its UID; \
                             fetching it again alone"
                        );
                        refetch.push(uid);
                        Ok(())
                    } else {
                        log::warn!("IMAP server sent a message body without its UID; skipped");
                        Ok(())
                    };
                    overflowed = false;
                    if let Err(e) = r {
                        return Err(self.poison(e));
                    }
                }
                Event::Done {
                    tag,
                    status,
                    code,
                    text,
                    ..
                } => {
                    let done = Done { status, code, text };
                    if let Some(what) = self.take_deferred(&tag) {
                        if let Err(e) = check_done(done, what) {
                            deferred_err.get_or_insert(e);
                        }
                        continue;
                    }
                    check_done(done, "UID FETCH")?;
                    self.complete_deferred()?;
                    return deferred_err.map_or(Ok(refetch), Err);
                }
                other => self.untagged(other)?,
            }
        }
    }

    /// `UID STORE uids +FLAGS.SILENT (flags)`, e.g. `&["\\Seen", "\\Deleted"]`.
    pub fn store_flags(&mut self, uids: &[u32], flags: &[&str]) -> Result<()> {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        for set in uid_sets(uids) {
            let done = self.run(&Command::UidStoreAdd {
                set,
                flags: flags.clone(),
            })?;
            check_done(done, "UID STORE")?;
        }
        Ok(())
    }

    /// Removes messages marked \Deleted: only `uids` with UIDPLUS (UID EXPUNGE), otherwise
    /// every \Deleted message in the folder (EXPUNGE).
    pub fn expunge(&mut self, uids: &[u32]) -> Result<()> {
        self.expunge_deferred(uids)?;
        self.complete_deferred()
    }

    /// Like [`expunge`](Self::expunge), without waiting for the completion: it is read while
    /// the next command runs (the next batch's UID FETCH, or whatever is sent next), so the
    /// server goes from expunging straight to the next work instead of waiting a round trip.
    /// A refusal fails the call that reads it. The caller must not send a command whose
    /// result depends on the expunge (RFC 9051 §5.5); UID commands on other messages do not.
    pub fn expunge_deferred(&mut self, uids: &[u32]) -> Result<()> {
        if self.has_capability("UIDPLUS") {
            for set in uid_sets(uids) {
                let tag = self.send_now(&Command::UidExpunge(set))?;
                self.deferred.push((tag, "UID EXPUNGE"));
            }
        } else {
            let tag = self.send_now(&Command::Expunge)?;
            self.deferred.push((tag, "EXPUNGE"));
        }
        Ok(())
    }

    /// Waits for every deferred command; the first refusal is the error.
    pub fn complete_deferred(&mut self) -> Result<()> {
        let mut first_err = None;
        while !self.deferred.is_empty() {
            match self.next_event()? {
                Event::Done {
                    tag,
                    status,
                    code,
                    text,
                    ..
                } => {
                    let Some(what) = self.take_deferred(&tag) else {
                        return Err(self.poison(Error::new(
                            ErrorKind::Protocol,
                            format!("IMAP server completed command {tag}, which was not sent"),
                        )));
                    };
                    if let Err(e) = check_done(Done { status, code, text }, what) {
                        first_err.get_or_insert(e);
                    }
                }
                other => self.untagged(other)?,
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn take_deferred(&mut self, tag: &str) -> Option<&'static str> {
        let at = self.deferred.iter().position(|(t, _)| t == tag)?;
        Some(self.deferred.remove(at).1)
    }

    /// NOOP; returns the message count when the server reported one.
    pub fn noop(&mut self) -> Result<Option<u32>> {
        self.last_exists = None;
        let done = self.run(&Command::Noop)?;
        check_done(done, "NOOP")?;
        Ok(self.last_exists)
    }

    /// IDLE (RFC 2177) until the mailbox changes or `timeout` passes, then DONE.
    pub fn idle(&mut self, timeout: Duration) -> Result<IdleEvent> {
        self.idle_until(timeout, &|| false)
    }

    /// IDLE (RFC 2177): waits until the server reports a change (EXISTS, RECENT, EXPUNGE),
    /// `timeout` passes (callers re-issue IDLE before the server's inactivity limit; RFC 2177
    /// asks for less than 29 minutes), `interrupted()` returns true (checked every
    /// [`IDLE_SLICE`]), or the server ends the IDLE itself; then sends DONE and reads the
    /// completion. The wait reads with the IDLE deadline, not the normal read timeout, which
    /// is restored for DONE. A BYE or a lost connection is an error and the session is
    /// unusable afterwards. Without the IDLE capability this is refused unless
    /// [`ImapSettings::force_idle`] is set.
    pub fn idle_until(
        &mut self,
        timeout: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<IdleEvent> {
        if !self.has_capability("IDLE") && !self.settings.force_idle {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "server does not offer IDLE",
            ));
        }
        let deadline = Instant::now() + timeout;
        let before = self.last_exists;
        self.send(&Command::Idle)?;
        loop {
            match self.next_event()? {
                Event::Idling => break,
                Event::Done {
                    status, code, text, ..
                } => {
                    check_done(Done { status, code, text }, "IDLE")?;
                    return Ok(self.changed_since(before, IdleEvent::Timeout));
                }
                other => self.untagged(other)?,
            }
        }
        let mut result = IdleEvent::Timeout;
        let mut ended = None;
        let waited = loop {
            if interrupted() {
                result = IdleEvent::Interrupted;
                break Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ok(());
            }
            if let Err(e) = self.conn.set_io_timeout(left.min(IDLE_SLICE)) {
                break Err(Error::from(e));
            }
            match self.next_event_raw() {
                Ok(Event::Exists(n)) => {
                    self.last_exists = Some(n);
                    result = IdleEvent::Exists(n);
                    break Ok(());
                }
                Ok(Event::Recent(n)) if n > 0 => {
                    result = IdleEvent::Recent(n);
                    break Ok(());
                }
                Ok(Event::Expunge(_)) => {
                    result = IdleEvent::Expunged;
                    break Ok(());
                }
                Ok(Event::Untagged {
                    status: Status::Bye,
                    text,
                    ..
                }) => break Err(bye(&text)),
                // The server ended the IDLE on its own (RFC 2177 allows it): no DONE.
                Ok(Event::Done {
                    status, code, text, ..
                }) => {
                    ended = Some(Done { status, code, text });
                    break Ok(());
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Timeout => {}
                Err(e) => break Err(e),
            }
        };
        let restored = self
            .conn
            .set_io_timeout(self.settings.connect.io_timeout)
            .map_err(Error::from);
        if let Err(e) = waited.and(restored) {
            return Err(self.poison(e));
        }
        let done = match ended {
            Some(done) => done,
            None => {
                let done_bytes = self.client.idle_done();
                self.write_out(&done_bytes)?;
                self.wait_done()?
            }
        };
        check_done(done, "IDLE")?;
        Ok(self.changed_since(before, result))
    }

    /// A quiet IDLE whose completion carried a new EXISTS is a change after all.
    fn changed_since(&self, before: Option<u32>, result: IdleEvent) -> IdleEvent {
        match (result, self.last_exists) {
            (IdleEvent::Timeout | IdleEvent::Expunged, Some(n)) if Some(n) != before => {
                IdleEvent::Exists(n)
            }
            _ => result,
        }
    }

    /// Whether commands can still be sent (no earlier connection or protocol failure).
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// LOGOUT (the server's BYE is expected and not an error).
    pub fn logout(mut self) -> Result<()> {
        if let Err(e) = self.complete_deferred() {
            // Those messages stay \Deleted on the server; LOGOUT still ends the session.
            log::warn!("{}", e.chain());
        }
        self.send(&Command::Logout)?;
        let mut saw_bye = false;
        loop {
            match self.next_event_raw() {
                Ok(Event::Done { .. }) => break,
                Ok(Event::Untagged {
                    status: Status::Bye,
                    ..
                }) => saw_bye = true,
                Ok(_) => {}
                // Some servers close right after BYE without the tagged OK.
                Err(_) if saw_bye => break,
                Err(e) => return Err(e),
            }
        }
        let _ = self.conn.shutdown();
        Ok(())
    }

    // ---- plumbing ----

    fn capability(&mut self) -> Result<()> {
        let done = self.run(&Command::Capability)?;
        check_done(done, "CAPABILITY")
    }

    /// Sends a command and waits for its completion, handling untagged data on the way.
    fn run(&mut self, cmd: &Command) -> Result<Done> {
        self.send(cmd)?;
        self.wait_done()
    }

    fn wait_done(&mut self) -> Result<Done> {
        loop {
            match self.next_event()? {
                Event::Done {
                    status, code, text, ..
                } => return Ok(Done { status, code, text }),
                other => self.untagged(other)?,
            }
        }
    }

    /// Untagged data outside what the current command expects.
    fn untagged(&mut self, ev: Event) -> Result<()> {
        match ev {
            Event::Exists(n) => self.last_exists = Some(n),
            Event::Untagged {
                status: Status::Bye,
                text,
                ..
            } => return Err(self.poison(bye(&text))),
            Event::Send(part) => self.write_out(&part)?,
            Event::AuthChallenge(_) | Event::Idling => {
                return Err(self.poison(unexpected(&ev)));
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends a command whose completion is read next: deferred commands complete first.
    fn send(&mut self, cmd: &Command) -> Result<()> {
        self.complete_deferred()?;
        self.send_now(cmd).map(|_| ())
    }

    /// Sends a command; returns its tag.
    fn send_now(&mut self, cmd: &Command) -> Result<String> {
        if self.broken {
            return Err(Error::new(
                ErrorKind::Protocol,
                "IMAP session unusable after an earlier error",
            ));
        }
        let (tag, out) = self.client.command(cmd);
        self.write_out(&out)?;
        Ok(tag)
    }

    /// Writes `out`, tracing it line by line with its secret spans hidden.
    fn write_out(&mut self, out: &Outbound) -> Result<()> {
        if plog::wire_enabled() {
            for line in out.trace_lines() {
                plog::wire("IMAP", '>', &line);
            }
        }
        self.write_bytes(&out.bytes)
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let r = self.conn.write_all(bytes).and_then(|()| self.conn.flush());
        r.map_err(|e| self.poison(NetError::from_io(e).into()))
    }

    fn next_event(&mut self) -> Result<Event> {
        self.next_event_raw().map_err(|e| self.poison(e))
    }

    /// The next event; a timeout is returned without poisoning (IDLE uses it).
    fn next_event_raw(&mut self) -> Result<Event> {
        loop {
            let polled = self.client.poll();
            for line in self.client.take_trace() {
                plog::wire("IMAP", '<', &line);
            }
            match polled {
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(imap_error(e)),
            }
            self.conn.quickack();
            let n = match self.conn.read(&mut self.read_buf) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::NetworkIo,
                        "IMAP server closed the connection",
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NetError::from_io(e).into()),
            };
            let (client, buf) = (&mut self.client, &self.read_buf);
            client.receive(buf.get(..n).unwrap_or_default());
        }
    }

    fn poison(&mut self, e: Error) -> Error {
        self.broken = true;
        e
    }
}

/// A tagged completion.
#[derive(Debug)]
struct Done {
    status: Status,
    code: Option<Code>,
    text: String,
}

fn check_done(done: Done, what: &str) -> Result<()> {
    let kind = match (done.status, &done.code) {
        (Status::Ok, _) => return Ok(()),
        (_, Some(Code::Temporary(_))) => ErrorKind::RejectedTemporary,
        (Status::Bad, _) => ErrorKind::Protocol,
        _ => ErrorKind::RejectedPermanent,
    };
    Err(Error::new(
        kind,
        format!("IMAP server refused {what}: {}", done.text),
    ))
}

fn bye(text: &str) -> Error {
    Error::new(
        ErrorKind::RejectedTemporary,
        format!("IMAP server closed the session: {text}"),
    )
}

fn unexpected(ev: &Event) -> Error {
    let shown = match ev {
        Event::BodyChunk(_) => "message data".to_string(),
        other => format!("{other:?}"),
    };
    Error::new(
        ErrorKind::Protocol,
        format!(
            "unexpected IMAP response: {}",
            shown.chars().take(120).collect::<String>()
        ),
    )
}

fn imap_error(e: ImapError) -> Error {
    Error::with_source(ErrorKind::Protocol, "IMAP server broke the protocol", e)
}

/// Compresses UIDs into IMAP sets ("1:5,9,12:14"), each at most `MAX_SET_LEN` bytes.
fn uid_sets(uids: &[u32]) -> Vec<String> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut sets = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = sorted[i];
        }
        i += 1;
        let piece = if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        };
        if !cur.is_empty() && cur.len() + piece.len() + 1 > MAX_SET_LEN {
            sets.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(&piece);
    }
    if !cur.is_empty() {
        sets.push(cur);
    }
    sets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_and_split() {
        assert_eq!(uid_sets(&[5, 1, 2, 3, 9, 10, 3]), vec!["1:3,5,9:10"]);
        assert!(uid_sets(&[]).is_empty());
        let many: Vec<u32> = (0..10_000).map(|i| i * 2).collect();
        let sets = uid_sets(&many);
        assert!(sets.len() > 1);
        assert!(sets.iter().all(|s| s.len() <= MAX_SET_LEN));
        let count: usize = sets.iter().map(|s| s.split(',').count()).sum();
        assert_eq!(count, 10_000);
    }

    #[test]
    fn done_kinds() {
        let d = |status, code| Done {
            status,
            code,
            text: "t".into(),
        };
        assert!(check_done(d(Status::Ok, None), "x").is_ok());
        assert_eq!(
            check_done(
                d(Status::No, Some(Code::Temporary("UNAVAILABLE".into()))),
                "x"
            )
            .unwrap_err()
            .kind(),
            ErrorKind::RejectedTemporary
        );
        assert_eq!(
            check_done(d(Status::No, None), "x").unwrap_err().kind(),
            ErrorKind::RejectedPermanent
        );
        assert_eq!(
            check_done(d(Status::Bad, None), "x").unwrap_err().kind(),
            ErrorKind::Protocol
        );
    }

    #[test]
    fn settings_debug_hides_password() {
        let s = ImapSettings::new(
            Endpoint {
                host: "h".into(),
                port: 1,
            },
            "bob",
            Secret::new("hunter2"),
        );
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
