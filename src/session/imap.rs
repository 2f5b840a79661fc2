//! The blocking IMAP session: connects (IMAPS or STARTTLS; PREAUTH before a required STARTTLS
//! is refused, CVE-2021-39272), logs in (LOGIN, AUTHENTICATE with SASL-IR or a pluggable SASL
//! mechanism), selects a folder, searches, fetches many messages with one UID FETCH while
//! streaming each body (asking for the caller's next batch ahead), stores flags and expunges
//! (UID EXPUNGE with UIDPLUS) without waiting in line for either, IDLEs and logs out, over a
//! [`crate::net::Connection`].

use std::fmt;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use super::auth::{self, Cleartext, Initial, SaslStep, SaslWire};
pub use super::auth::{FetchAuth, Secret, Server};
use super::link::{self, Link, SessionStart};
use crate::error::{Error, ErrorKind, Result};
use crate::log as plog;
use crate::net::{Connection, Endpoint, Readiness, TlsMode};
use crate::proto::imap::{self, Code, Command, Event, Search, Status};
use crate::proto::sasl::Mechanism;
use crate::proto::trace::Outbound;

/// Everything needed to open and log in to one IMAP account.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub server: Server,
    /// Send IDLE even when the server does not announce it (fetchmail `forceidle`).
    pub force_idle: bool,
    pub limits: imap::Limits,
}

impl ImapSettings {
    /// Settings with the defaults: STARTTLS required, `any` login.
    pub fn new(endpoint: Endpoint, user: impl Into<String>, password: Secret) -> Self {
        Self::from_server(Server::new(endpoint, user, password))
    }

    /// The same defaults around a server description already made.
    pub fn from_server(server: Server) -> Self {
        ImapSettings {
            server,
            force_idle: false,
            limits: imap::Limits::default(),
        }
    }
}

derefs_to_server!(ImapSettings);

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
    /// Whether the caller still wants the next batch asked for ahead (not when it is
    /// stopping: the batch would only be read and dropped).
    fn wants_next(&self) -> bool {
        true
    }
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

/// How often an IDLE wait without a wake descriptor checks its interrupt condition.
pub const IDLE_SLICE: Duration = Duration::from_millis(500);

/// An IMAP session.
pub struct ImapSession {
    link: Link,
    client: imap::Client,
    settings: ImapSettings,
    authenticated: bool,
    /// EXISTS seen since the last SELECT/NOOP/IDLE, for callers that care.
    last_exists: Option<u32>,
    /// Commands sent without waiting for their completion, oldest first: see
    /// [`ImapSession::expunge_deferred`] and [`ImapSession::store_flags_deferred`].
    deferred: Vec<Deferred>,
    /// A UID FETCH sent ahead for the caller's next batch (see
    /// [`ImapSession::fetch_bodies_asking_next`]), not yet read.
    asked_ahead: Option<AskedAhead>,
    /// UIDs a deferred STORE has flagged `\Deleted` (its success read), not yet expunged: see
    /// [`ImapSession::expunge_stored`].
    stored_deleted: Vec<u32>,
}

/// A command whose completion is read while later commands run.
struct Deferred {
    tag: String,
    what: &'static str,
    /// A UID STORE that flags these UIDs `\Deleted`: once it succeeded they may be expunged
    /// (an EXPUNGE depends on the flags a STORE sets, so it never goes out before the STORE's
    /// success is known: RFC 9051 §5.5).
    deletes: Option<Vec<u32>>,
}

/// A UID FETCH sent before the caller asked for it.
struct AskedAhead {
    tag: String,
    /// Its UID set, to recognise the call it was sent for.
    set: String,
}

impl fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.link
            .debug_session(f, "ImapSession", &self.settings.user)
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
        link::connect(&settings.server, "IMAP", |conn| Self::start(conn, settings))
    }

    /// A session on `link` with `client` (a new one, or the one that read the greeting).
    fn fresh(link: Link, mut client: imap::Client, settings: &ImapSettings) -> ImapSession {
        client.set_trace(plog::wire_enabled());
        ImapSession {
            link,
            client,
            settings: settings.clone(),
            authenticated: false,
            last_exists: None,
            deferred: Vec::new(),
            asked_ahead: None,
            stored_deleted: Vec::new(),
        }
    }

    /// Runs the session start (greeting, CAPABILITY, STARTTLS) on an open connection.
    pub fn start(conn: Connection, settings: &ImapSettings) -> Result<ImapSession> {
        let client = imap::Client::new(settings.limits);
        let s = Self::fresh(Link::new(conn, "IMAP"), client, settings);
        let upgrade = settings.tls_mode == TlsMode::Starttls && !s.is_tls();
        link::start(s, upgrade)
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
        self.link.conn().is_tls()
    }

    /// The underlying connection (for TLS details).
    pub fn connection(&self) -> &Connection {
        self.link.conn()
    }

    /// Logs in with the configured method (nothing to do after PREAUTH on a TLS connection).
    pub fn login(&mut self) -> Result<()> {
        if self.authenticated {
            return Ok(());
        }
        match self.settings.auth {
            FetchAuth::Implicit => Ok(()),
            FetchAuth::Sasl(m) => self.login_sasl(Some(m)).map(|_| ()),
            FetchAuth::Apop => Err(Error::new(
                ErrorKind::Config,
                "APOP is a POP3 login: IMAP has no such method",
            )),
            FetchAuth::Password => self.login_password(),
            FetchAuth::Any => {
                if self.login_sasl(None)? {
                    return Ok(());
                }
                self.login_password()
            }
        }
    }

    /// LOGIN, or AUTHENTICATE PLAIN when the server has disabled LOGIN.
    fn login_password(&mut self) -> Result<()> {
        if self.has_capability("LOGINDISABLED") {
            if self.has_capability("AUTH=PLAIN") {
                return self.login_sasl(Some(Mechanism::Plain)).map(|_| ());
            }
            return Err(Error::new(
                ErrorKind::Unsupported,
                "server has disabled LOGIN (LOGINDISABLED)",
            ));
        }
        let user = self.settings.user.clone();
        Cleartext::of(self.link.conn(), self.settings.allow_plaintext).check(
            self.link.conn().peer(),
            &user,
            "LOGIN",
        )?;
        let done = self.run(&Command::Login {
            user: user.clone(),
            password: self.settings.password.expose().to_string(),
        })?;
        self.after_login(done, &user)
    }

    /// Logs in with AUTHENTICATE and `wanted` (initial response sent as SASL-IR when the
    /// server advertises it), or with the strongest offered mechanism that hides the password
    /// when `None`. Returns false when `None` found none to use.
    pub fn login_sasl(&mut self, wanted: Option<Mechanism>) -> Result<bool> {
        let user = self.settings.user.clone();
        let client = &self.client;
        let offered = |m: Mechanism| client.has_capability(&format!("AUTH={}", m.name()));
        let Some(sasl) =
            auth::prepare_sasl(self.link.conn(), offered, wanted, &self.settings.server)?
        else {
            return Ok(false);
        };
        auth::sasl_login(self, sasl, |s, done| s.after_login(done, &user))
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
        self.leave_folder();
        let mut info = MailboxInfo::default();
        loop {
            match folder_event(&mut info, self.next_event()?) {
                None => {}
                Some(Event::Done {
                    status, code, text, ..
                }) => {
                    check_done(Done { status, code, text }, &format!("SELECT {folder}"))?;
                    self.last_exists = Some(info.exists);
                    return Ok(info);
                }
                Some(other) => self.untagged(other)?,
            }
        }
    }

    /// SELECT `folder` with UID SEARCH ALL pipelined behind it: what SELECT reported and every
    /// UID in the folder, in one round trip instead of two. A refused SELECT is the error; the
    /// SEARCH, which then finds no folder selected, is read and its refusal ignored.
    pub fn select_and_search_all(&mut self, folder: &str) -> Result<(MailboxInfo, Vec<u32>)> {
        let select_cmd = Command::Select(folder.to_string());
        if !self.client.sends_in_one_piece(&select_cmd) {
            // The folder name goes as a synchronising literal: the SEARCH may only follow once
            // the server has taken it.
            let info = self.select(folder)?;
            let uids = if info.exists == 0 {
                Vec::new()
            } else {
                self.uid_search(Search::All)?
            };
            return Ok((info, uids));
        }
        self.settle_deferred()?;
        self.leave_folder();
        let select = self.send_now(&select_cmd)?;
        let search = self.send_now(&Command::UidSearch(Search::All))?;
        let mut info = MailboxInfo::default();
        let mut uids = Vec::new();
        let mut selected = None;
        loop {
            match folder_event(&mut info, self.next_event()?) {
                None => {}
                Some(Event::Search(mut found)) => uids.append(&mut found),
                Some(ev @ Event::Done { .. }) => match Done::of(ev) {
                    Ok((tag, done)) if tag == select => {
                        let r = check_done(done, &format!("SELECT {folder}"));
                        if r.is_ok() {
                            self.last_exists = Some(info.exists);
                        }
                        selected = Some(r);
                    }
                    Ok((tag, done)) if tag == search && selected.is_some() => {
                        let searched = check_done(done, "UID SEARCH");
                        return match selected {
                            Some(Err(e)) => Err(e),
                            _ => searched.map(|()| (info, uids)),
                        };
                    }
                    Ok((tag, _)) => {
                        return Err(self.poison(Error::new(
                            ErrorKind::Protocol,
                            format!("IMAP server completed command {tag} out of turn"),
                        )));
                    }
                    Err(other) => self.untagged(other)?,
                },
                Some(other) => self.untagged(other)?,
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
        self.fetch_bodies_asking_next(uids, &[], sink)
    }

    /// Like [`ImapSession::fetch_bodies`], and once `uids` are in, asks for `next` (the
    /// caller's next batch) at once: the server streams it while the caller settles this one
    /// (the deferred STORE and EXPUNGE of a batch do not depend on a UID FETCH of others), and
    /// the next call for exactly `next` reads it instead of sending it. Only one UID FETCH is
    /// ever outstanding, so two commands' bodies never interleave (Dovecot runs pipelined UID
    /// FETCHes side by side). A UID FETCH asked for ahead that no call takes is read and
    /// dropped before any other command waits for its completion: its bodies were fetched with
    /// BODY.PEEK and stay unseen on the server.
    pub fn fetch_bodies_asking_next(
        &mut self,
        uids: &[u32],
        next: &[u32],
        sink: &mut dyn FetchSink,
    ) -> Result<Vec<u32>> {
        let mut delivered = Vec::new();
        for set in uid_sets(uids) {
            self.fetch_set(&set, sink, &mut delivered)?;
        }
        if let [set] = uid_sets(next).as_slice()
            && sink.wants_next()
        {
            // One UID FETCH outstanding at most, whatever the caller did before.
            let mut refused = None;
            self.drop_asked_ahead(&mut refused)?;
            if let Some(e) = refused {
                return Err(e);
            }
            let tag = self.send_now(&Command::UidFetch {
                set: set.clone(),
                body: true,
            })?;
            self.asked_ahead = Some(AskedAhead {
                tag,
                set: set.clone(),
            });
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
        // Deferred commands (the STORE and EXPUNGE of the previous batch) complete while this
        // FETCH is already with the server: their completions are read here, in whatever order.
        let mut deferred_err = None;
        let own_tag = match self.asked_ahead.take() {
            Some(ahead) if known_uid.is_none() && ahead.set == set => ahead.tag,
            ahead => {
                self.asked_ahead = ahead;
                self.drop_asked_ahead(&mut deferred_err)?;
                self.send_now(&Command::UidFetch {
                    set: set.to_string(),
                    body: true,
                })?
            }
        };
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
                other => match Done::of(other) {
                    Ok((tag, done)) if tag == own_tag => {
                        // Deferred commands sent after this FETCH may still be running: they
                        // complete while the next command runs.
                        check_done(done, "UID FETCH")?;
                        return deferred_err.map_or(Ok(refetch), Err);
                    }
                    Ok((tag, done)) => self.deferred_done(&tag, done, &mut deferred_err)?,
                    Err(other) => self.untagged(other)?,
                },
            }
        }
    }

    /// `UID STORE uids +FLAGS.SILENT (flags)` without waiting for the completion (read while
    /// the next command runs; a refusal fails the call that reads it). When `flags` holds
    /// `\Deleted`, the UIDs become expungeable once their STORE is known to have succeeded
    /// ([`ImapSession::expunge_stored`]), never before: a refused STORE expunges nothing.
    pub fn store_flags_deferred(&mut self, uids: &[u32], flags: &[&str]) -> Result<()> {
        let deletes = flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted"));
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        for (set, members) in uid_groups(uids) {
            let tag = self.send_now(&Command::UidStoreAdd {
                set,
                flags: flags.clone(),
            })?;
            self.deferred.push(Deferred {
                tag,
                what: "UID STORE",
                deletes: deletes.then_some(members),
            });
        }
        Ok(())
    }

    /// How many UIDs a STORE has flagged `\Deleted`, its success read, waiting for an EXPUNGE.
    pub fn stored_deleted(&self) -> usize {
        self.stored_deleted.len()
    }

    /// Expunges (deferred, as [`ImapSession::expunge_deferred`]) the UIDs whose `\Deleted`
    /// STORE is known to have succeeded. Without UIDPLUS the EXPUNGE removes every `\Deleted`
    /// message, so it waits while a STORE of `\Deleted` is still running (that STORE's result
    /// would decide what the EXPUNGE removes); [`ImapSession::complete_deferred`], then this,
    /// expunges everything.
    pub fn expunge_stored(&mut self) -> Result<()> {
        if self.stored_deleted.is_empty()
            || (!self.has_capability("UIDPLUS")
                && self.deferred.iter().any(|d| d.deletes.is_some()))
        {
            return Ok(());
        }
        let uids = std::mem::take(&mut self.stored_deleted);
        self.expunge_deferred(&uids)
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
        // Without UIDPLUS the EXPUNGE removes every \Deleted message: no STORE may still run.
        self.complete_deferred()?;
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
                self.deferred.push(Deferred {
                    tag,
                    what: "UID EXPUNGE",
                    deletes: None,
                });
            }
        } else {
            let tag = self.send_now(&Command::Expunge)?;
            self.deferred.push(Deferred {
                tag,
                what: "EXPUNGE",
                deletes: None,
            });
        }
        Ok(())
    }

    /// Waits for every deferred command (and drops a UID FETCH asked for ahead); the first
    /// refusal is the error.
    pub fn complete_deferred(&mut self) -> Result<()> {
        self.complete_deferred_collect()?.map_or(Ok(()), Err)
    }

    /// [`ImapSession::complete_deferred`], the first refusal given apart from the errors that
    /// end the session.
    fn complete_deferred_collect(&mut self) -> Result<Option<Error>> {
        let mut first_err = None;
        self.drop_asked_ahead(&mut first_err)?;
        while !self.deferred.is_empty() {
            match Done::of(self.next_event()?) {
                Ok((tag, done)) => self.deferred_done(&tag, done, &mut first_err)?,
                Err(other) => self.untagged(other)?,
            }
        }
        Ok(first_err)
    }

    /// Reads the UID FETCH asked for ahead, if one is outstanding, to its end and drops its
    /// bodies (nothing was delivered from it; BODY.PEEK left the messages unseen).
    fn drop_asked_ahead(&mut self, first_err: &mut Option<Error>) -> Result<()> {
        let Some(ahead) = self.asked_ahead.take() else {
            return Ok(());
        };
        log::debug!(
            "IMAP: dropping UID FETCH {} (asked for ahead, not taken)",
            ahead.set
        );
        loop {
            match self.next_event()? {
                Event::BodyStart { .. } | Event::BodyChunk(_) => {}
                Event::Fetch { had_body: true, .. } => {}
                other => match Done::of(other) {
                    Ok((tag, done)) if tag == ahead.tag => {
                        if let Err(e) = check_done(done, "UID FETCH") {
                            log::debug!("{}", e.chain());
                        }
                        return Ok(());
                    }
                    Ok((tag, done)) => self.deferred_done(&tag, done, first_err)?,
                    Err(other) => self.untagged(other)?,
                },
            }
        }
    }

    /// The completion of deferred command `tag`: a refusal goes into `first_err`; the UIDs of a
    /// `\Deleted` STORE that succeeded become expungeable. A tag that is no deferred command's
    /// is a protocol error.
    fn deferred_done(
        &mut self,
        tag: &str,
        done: Done,
        first_err: &mut Option<Error>,
    ) -> Result<()> {
        let Some(at) = self.deferred.iter().position(|d| d.tag == tag) else {
            return Err(self.poison(Error::new(
                ErrorKind::Protocol,
                format!("IMAP server completed command {tag}, which was not sent"),
            )));
        };
        let deferred = self.deferred.remove(at);
        match check_done(done, deferred.what) {
            Err(e) => {
                first_err.get_or_insert(e);
            }
            Ok(()) => {
                if let Some(uids) = deferred.deletes {
                    self.stored_deleted.extend(uids);
                }
            }
        }
        Ok(())
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
        self.idle_until(timeout, None, &|| false)
    }

    /// IDLE (RFC 2177): waits until the server reports a change (EXISTS, RECENT, EXPUNGE),
    /// `timeout` passes (callers re-issue IDLE before the server's inactivity limit; RFC 2177
    /// asks for less than 29 minutes, and the DONE then also finds a dead peer), `interrupted()`
    /// returns true, or the server ends the IDLE itself; then sends DONE and reads the
    /// completion. `interrupted()` is checked when `wake` (a descriptor such as the daemon's
    /// eventfd) becomes readable; without `wake`, every [`IDLE_SLICE`]. The wait itself is one
    /// poll(2) on the socket and `wake`, so a quiet account costs no CPU and no timer wake-ups;
    /// once the socket is readable, the rest of a response is read with the normal read
    /// timeout. The read buffer is released while waiting. A BYE or a lost connection is an
    /// error and the session is unusable afterwards. Without the IDLE capability this is
    /// refused unless [`ImapSettings::force_idle`] is set.
    pub fn idle_until(
        &mut self,
        timeout: Duration,
        wake: Option<BorrowedFd<'_>>,
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
            let event = match self.link.buffered_event(&mut self.client) {
                Ok(Some(ev)) => Ok(ev),
                Err(e) => Err(e),
                Ok(None) => {
                    if !self.link.conn_mut().has_buffered_input() {
                        self.link.release_buffer();
                        self.client.shrink();
                        let slice = if wake.is_some() {
                            left
                        } else {
                            left.min(IDLE_SLICE)
                        };
                        match self.link.conn().wait_readable(slice, wake) {
                            Ok(Readiness::Socket) => {}
                            Ok(Readiness::Wake | Readiness::Timeout) => continue,
                            Err(e) => break Err(Error::from(e)),
                        }
                    }
                    self.next_event_raw()
                }
            };
            match event {
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
                // The rest of a response did not come within the read timeout: keep waiting.
                Err(e) if e.kind() == ErrorKind::Timeout => {}
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = waited {
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
        self.link.is_usable()
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
        let _ = self.link.conn_mut().shutdown();
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
        self.settle_deferred()?;
        self.send_now(cmd).map(|_| ())
    }

    /// Completes what is still deferred before a command that waits for its own answer. A
    /// deferred command can only be left over when a fetch sequence ended early on an error
    /// (its finish reads them all): a refusal found now belongs to that error's aftermath, not
    /// to the command about to be sent, so it is logged and the session goes on (the messages
    /// it concerns are recorded as delivered; a later poll deletes them).
    fn settle_deferred(&mut self) -> Result<()> {
        if let Some(e) = self.complete_deferred_collect()? {
            log::warn!("{}", e.chain());
        }
        Ok(())
    }

    /// A folder is left (SELECT, EXAMINE): what a STORE flagged there can no longer be
    /// expunged by UID here, since UIDs are per folder. Those messages are recorded as
    /// delivered and stay flagged; the next poll of their folder deletes them.
    fn leave_folder(&mut self) {
        if !self.stored_deleted.is_empty() {
            log::debug!(
                "IMAP: {} flagged messages left unexpunged in the folder being left",
                self.stored_deleted.len()
            );
            self.stored_deleted.clear();
        }
    }

    /// Sends a command; returns its tag.
    fn send_now(&mut self, cmd: &Command) -> Result<String> {
        self.link.ensure_usable()?;
        let (tag, out) = self.client.command(cmd);
        self.write_out(&out)?;
        Ok(tag)
    }

    /// Writes `out`, tracing it line by line with its secret spans hidden.
    fn write_out(&mut self, out: &Outbound) -> Result<()> {
        self.link.write_out(out)
    }

    fn next_event(&mut self) -> Result<Event> {
        self.next_event_raw().map_err(|e| self.poison(e))
    }

    /// The next event; a timeout is returned without poisoning (IDLE uses it).
    fn next_event_raw(&mut self) -> Result<Event> {
        self.link.next_event(&mut self.client)
    }

    fn poison(&mut self, e: Error) -> Error {
        self.link.poison(e)
    }
}

impl SessionStart for ImapSession {
    const UPGRADE: &'static str = "STARTTLS";

    fn greeting(&mut self) -> Result<()> {
        match self.next_event()? {
            Event::Greeting {
                status: Status::Ok, ..
            } => Ok(()),
            Event::Greeting {
                status: Status::Preauth,
                ..
            } => {
                if self.settings.tls_mode == TlsMode::Starttls && !self.is_tls() {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        "server sent PREAUTH on an unencrypted connection: STARTTLS is impossible \
                         after PREAUTH, and TLS is required",
                    ));
                }
                self.authenticated = true;
                Ok(())
            }
            Event::Greeting { text, .. } => Err(link::refused_session(&text)),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks CAPABILITY unless the greeting (or, after the upgrade, nothing: the machine
    /// forgot the plaintext list) already said them.
    fn capabilities(&mut self) -> Result<Option<bool>> {
        if self.client.capabilities().is_empty() {
            self.capability()?;
        }
        Ok(Some(self.has_capability("STARTTLS")))
    }

    fn request_tls(&mut self) -> Result<std::result::Result<(), String>> {
        let done = self.run(&Command::StartTls)?;
        Ok(if done.status == Status::Ok {
            Ok(())
        } else {
            Err(done.text)
        })
    }

    fn upgrade(self) -> Result<Self> {
        let ImapSession {
            link,
            client,
            settings,
            ..
        } = self;
        let link = link.upgrade_tls(&settings.tls, &settings.endpoint.host)?;
        let mut s = Self::fresh(link, client, &settings);
        // Drops what was read before the handshake and the capabilities said in plaintext.
        s.client.tls_established();
        Ok(s)
    }
}

impl SaslWire for ImapSession {
    type Outcome = Done;

    fn carries(&self, _: Mechanism, _: &[u8]) -> bool {
        self.has_capability("SASL-IR")
    }

    fn send_auth(&mut self, mechanism: Mechanism, initial: Initial) -> Result<()> {
        let mechanism = mechanism.name().to_string();
        self.send(&Command::Authenticate { mechanism, initial })
    }

    fn read_step(&mut self) -> Result<SaslStep<Done>> {
        loop {
            match self.next_event()? {
                Event::AuthChallenge(challenge) => return Ok(SaslStep::Challenge(challenge)),
                Event::Done {
                    status, code, text, ..
                } => return Ok(SaslStep::Done(Done { status, code, text })),
                other => self.untagged(other)?,
            }
        }
    }

    fn send_response(&mut self, response: Option<&[u8]>) -> Result<()> {
        let line = self.client.auth_response(response);
        self.write_out(&line)
    }

    fn after_cancel(&mut self) {
        let _ = self.wait_done();
    }

    fn accepted(outcome: &Done) -> bool {
        outcome.status == Status::Ok
    }

    fn poison(&mut self, e: Error) -> Error {
        self.link.poison(e)
    }
}

/// A tagged completion.
#[derive(Debug)]
pub(crate) struct Done {
    status: Status,
    code: Option<Code>,
    text: String,
}

impl Done {
    /// The tag and completion of a tagged response; any other event is given back.
    fn of(ev: Event) -> std::result::Result<(String, Done), Event> {
        match ev {
            Event::Done {
                tag,
                status,
                code,
                text,
                ..
            } => Ok((tag, Done { status, code, text })),
            other => Err(other),
        }
    }
}

/// Takes what SELECT/EXAMINE report into `info`; any other event is given back.
fn folder_event(info: &mut MailboxInfo, ev: Event) -> Option<Event> {
    match ev {
        Event::Exists(n) => info.exists = n,
        Event::Untagged {
            code: Some(Code::UidValidity(v)),
            ..
        } => info.uidvalidity = Some(v),
        Event::Untagged {
            code: Some(Code::UidNext(v)),
            ..
        } => info.uidnext = Some(v),
        other => return Some(other),
    }
    None
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
    link::unexpected("IMAP response", ev, matches!(ev, Event::BodyChunk(_)))
}

/// Compresses UIDs into IMAP sets ("1:5,9,12:14"), each at most `MAX_SET_LEN` bytes.
fn uid_sets(uids: &[u32]) -> Vec<String> {
    uid_groups(uids).into_iter().map(|(set, _)| set).collect()
}

/// [`uid_sets`], each set with the UIDs it holds.
fn uid_groups(uids: &[u32]) -> Vec<(String, Vec<u32>)> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut groups = Vec::new();
    let mut cur = String::new();
    let mut members = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let first = i;
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
            groups.push((std::mem::take(&mut cur), std::mem::take(&mut members)));
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(&piece);
        members.extend_from_slice(&sorted[first..i]);
    }
    if !cur.is_empty() {
        groups.push((cur, members));
    }
    groups
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
        let groups = uid_groups(&many);
        assert_eq!(groups.len(), sets.len());
        assert!(groups.iter().zip(&sets).all(|((g, _), s)| g == s));
        let members: Vec<u32> = groups.into_iter().flat_map(|(_, m)| m).collect();
        assert_eq!(members, many, "each set with exactly its UIDs, in order");
        assert_eq!(
            uid_groups(&[9, 1, 2, 2, 3]),
            vec![("1:3,9".to_string(), vec![1, 2, 3, 9])]
        );
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
}
