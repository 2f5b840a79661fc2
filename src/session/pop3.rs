//! The blocking POP3 session: connects (POP3S or STLS, RFC 2595), logs in (USER/PASS, APOP,
//! AUTH with a pluggable SASL mechanism, RFC 5034), lists, retrieves messages as streams (one at
//! a time or pipelined, RFC 2449), deletes and quits, over a [`crate::net::Connection`].
//!
//! Also home of the pieces both mail-retrieval sessions share: [`Secret`], the [`SaslClient`]
//! hook and the plaintext-password policy.

use std::fmt;
use std::io::{Read, Write};

use crate::error::{Error, ErrorKind, Result};
use crate::log as plog;
use crate::net::{self, ConnectOptions, Connection, Endpoint, NetError, TlsMode, TlsOptions};
use crate::proto::pop3::{self, Capabilities, Command, Event, Pop3Error, RespCode};
use crate::proto::trace::Outbound;

/// A password or token: Debug and Display never show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A SASL mechanism driven by a session (the hook for `proto::sasl`): the session sends the
/// mechanism name and optional initial response, then hands every server challenge to `step`.
pub trait SaslClient {
    /// The mechanism name as registered with IANA ("SCRAM-SHA-256", "XOAUTH2", ...).
    fn mechanism(&self) -> &str;
    /// The client-first message, or `None` when the mechanism waits for the server.
    fn initial_response(&mut self) -> Result<Option<Vec<u8>>>;
    /// The answer to one server challenge (already base64-decoded).
    fn step(&mut self, challenge: &[u8]) -> Result<Vec<u8>>;
    /// Whether the exchange reveals a reusable secret (PLAIN, LOGIN): then it is refused over
    /// an unencrypted connection unless plaintext is allowed.
    fn sends_plaintext_secret(&self) -> bool;
}

/// Refuses to send a reusable secret in the clear unless the user allowed it.
pub(crate) fn check_plaintext(
    encrypted: bool,
    allowed: bool,
    user: &str,
    what: &str,
) -> Result<()> {
    if encrypted || allowed {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Config,
        format!(
            "refusing to send the password for {user} with {what} over an unencrypted connection \
             (use TLS, or allow plaintext passwords explicitly)"
        ),
    ))
}

/// How to log in to a POP3 server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pop3Auth {
    /// USER/PASS when the connection is encrypted (or plaintext is allowed), else APOP when
    /// the greeting offers it.
    #[default]
    Auto,
    /// USER/PASS (RFC 1939 §7).
    UserPass,
    /// APOP (RFC 1939 §7): the password is never sent, only an MD5 digest.
    Apop,
    /// AUTH PLAIN (RFC 5034 with RFC 4616).
    Plain,
}

/// Everything needed to open and log in to one POP3 account.
#[derive(Debug, Clone)]
pub struct Pop3Settings {
    pub endpoint: Endpoint,
    pub tls_mode: TlsMode,
    pub tls: TlsOptions,
    pub connect: ConnectOptions,
    pub user: String,
    pub password: Secret,
    pub auth: Pop3Auth,
    /// Allow USER/PASS and AUTH PLAIN over an unencrypted connection.
    pub allow_plaintext: bool,
    pub limits: pop3::Limits,
    /// Most commands in flight when the server supports PIPELINING.
    pub pipeline_window: usize,
}

impl Pop3Settings {
    /// Settings with the defaults: STLS required, Auto login, 64 commands in flight.
    pub fn new(endpoint: Endpoint, user: impl Into<String>, password: Secret) -> Self {
        Pop3Settings {
            endpoint,
            tls_mode: TlsMode::default(),
            tls: TlsOptions::default(),
            connect: ConnectOptions::default(),
            user: user.into(),
            password,
            auth: Pop3Auth::default(),
            allow_plaintext: false,
            limits: pop3::Limits::default(),
            pipeline_window: 64,
        }
    }
}

/// Receives retrieved messages as they stream in.
pub trait MessageSink {
    /// A message begins.
    fn start(&mut self, msgno: u32) -> Result<()>;
    /// The next raw bytes of the current message (dot-unstuffed, CRLF as sent).
    fn data(&mut self, chunk: &[u8]) -> Result<()>;
    /// The current message is complete: `octets` bytes were passed to `data`.
    fn end(&mut self, msgno: u32, octets: u64) -> Result<()>;
}

/// A message the server refused to hand out (for instance deleted by another session).
#[derive(Debug)]
pub struct Refused {
    pub msgno: u32,
    pub error: Error,
}

/// A logged-in (or about to be) POP3 session.
pub struct Pop3Session {
    conn: Connection,
    client: pop3::Client,
    settings: Pop3Settings,
    caps: Capabilities,
    apop_timestamp: Option<String>,
    greeting: String,
    read_buf: Vec<u8>,
    /// Set when an error left the protocol state unknown: every later call fails.
    broken: bool,
    /// DELE commands sent by [`dele_many_deferred`](Self::dele_many_deferred) whose replies
    /// are still to be read (before anything else's).
    unread_deles: usize,
}

impl fmt::Debug for Pop3Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pop3Session")
            .field("peer", &self.conn.peer())
            .field("tls", &self.conn.is_tls())
            .field("user", &self.settings.user)
            .finish()
    }
}

impl Pop3Session {
    /// Connects, reads the greeting, asks CAPA and, with [`TlsMode::Starttls`], upgrades with
    /// STLS (mandatory: an error of kind Unsupported when the server cannot) and asks CAPA again.
    pub fn connect(settings: &Pop3Settings) -> Result<Pop3Session> {
        let ep = &settings.endpoint;
        let context = || format!("cannot open POP3 session with {}:{}", ep.host, ep.port);
        let conn = match settings.tls_mode {
            TlsMode::Implicit => net::connect_tls(ep, &settings.connect, &settings.tls),
            TlsMode::Off | TlsMode::Starttls => net::connect(ep, &settings.connect),
        }
        .map_err(|e| Error::from(e).context(context()))?;
        Self::start(conn, settings).map_err(|e| e.context(context()))
    }

    /// Runs the session start (greeting, CAPA, STLS) on an already open connection.
    pub fn start(conn: Connection, settings: &Pop3Settings) -> Result<Pop3Session> {
        let mut client = pop3::Client::new(settings.limits);
        client.set_trace(plog::wire_enabled());
        let mut s = Pop3Session {
            conn,
            client,
            settings: settings.clone(),
            caps: Capabilities::default(),
            apop_timestamp: None,
            greeting: String::new(),
            read_buf: vec![0; 64 * 1024],
            broken: false,
            unread_deles: 0,
        };
        match s.next_event()? {
            Event::Greeting {
                ok: true,
                text,
                apop_timestamp,
            } => {
                s.greeting = text;
                s.apop_timestamp = apop_timestamp;
            }
            Event::Greeting { text, .. } => {
                return Err(Error::new(
                    ErrorKind::RejectedTemporary,
                    format!("server refused the session: {text}"),
                ));
            }
            other => return Err(unexpected(&other)),
        }
        let capa_ok = s.capa()?;
        if settings.tls_mode == TlsMode::Starttls && !s.conn.is_tls() {
            if capa_ok && !s.caps.stls {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "server does not offer STLS, and TLS is required",
                ));
            }
            s.send(&Command::Stls)?;
            match s.next_event()? {
                Event::StartTls => {}
                Event::Err { text, .. } => {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!("server refused STLS: {text}"),
                    ));
                }
                other => return Err(unexpected(&other)),
            }
            let host = settings.endpoint.host.clone();
            let Pop3Session { conn, .. } = s;
            // `conn` moves into the upgrade; rebuild the session around the TLS connection.
            let conn = conn.upgrade_tls(&settings.tls, &host)?;
            s = Pop3Session {
                conn,
                client: pop3::Client::new(settings.limits),
                settings: settings.clone(),
                caps: Capabilities::default(),
                apop_timestamp: None,
                greeting: String::new(),
                read_buf: vec![0; 64 * 1024],
                broken: false,
                unread_deles: 0,
            };
            s.client.tls_established();
            s.client.set_trace(plog::wire_enabled());
            s.capa()?;
        }
        Ok(s)
    }

    /// The capabilities from the last CAPA (empty when the server does not know CAPA).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// The greeting text after "+OK".
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// The underlying connection (for TLS details).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Logs in with the configured method. A wrong password is an error of kind Auth.
    pub fn login(&mut self) -> Result<()> {
        let encrypted = self.conn.is_tls();
        let allowed = self.settings.allow_plaintext;
        let user = self.settings.user.clone();
        let method = match self.settings.auth {
            Pop3Auth::Auto if encrypted || allowed => Pop3Auth::UserPass,
            Pop3Auth::Auto if self.apop_timestamp.is_some() => Pop3Auth::Apop,
            Pop3Auth::Auto => Pop3Auth::UserPass, // refused below with a clear message
            m => m,
        };
        match method {
            Pop3Auth::Apop => {
                let Some(ts) = self.apop_timestamp.clone() else {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        "server greeting offers no (valid) APOP timestamp",
                    ));
                };
                let digest = pop3::apop_digest(&ts, self.settings.password.expose());
                self.send(&Command::Apop {
                    user: user.clone(),
                    digest,
                })?;
                self.expect_login_ok(&user)
            }
            Pop3Auth::Plain => {
                let mut plain = PlainMechanism {
                    user: user.clone(),
                    password: self.settings.password.clone(),
                };
                self.login_sasl(&mut plain)
            }
            Pop3Auth::UserPass | Pop3Auth::Auto => {
                check_plaintext(encrypted, allowed, &user, "USER/PASS")?;
                let pass = Command::Pass(self.settings.password.expose().to_string());
                if self.caps.pipelining {
                    self.send_many(&[Command::User(user.clone()), pass])?;
                    let user_reply = self.next_event()?;
                    let pass_reply = self.next_event()?;
                    login_reply(user_reply, &user)?;
                    login_reply(pass_reply, &user)
                } else {
                    self.send(&Command::User(user.clone()))?;
                    self.expect_login_ok(&user)?;
                    self.send(&pass)?;
                    self.expect_login_ok(&user)
                }
            }
        }
    }

    /// Logs in with AUTH and a SASL mechanism (RFC 5034).
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
        if !self.caps.sasl.is_empty() && !self.caps.has_sasl(mech.mechanism()) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("server does not offer SASL {}", mech.mechanism()),
            ));
        }
        let mut initial = mech.initial_response()?;
        // RFC 5034 §4: an initial response that would make the line longer than 255 octets
        // is sent after the server's first (empty) challenge instead.
        let fits = initial
            .as_ref()
            .is_none_or(|i| i.len().div_ceil(3) * 4 + mech.mechanism().len() + 8 <= 255);
        self.send(&Command::Auth {
            mechanism: mech.mechanism().to_string(),
            initial: if fits { initial.take() } else { None },
        })?;
        for _ in 0..32 {
            match self.next_event()? {
                Event::AuthChallenge(challenge) => {
                    let response = match initial.take() {
                        Some(first) if challenge.is_empty() => Ok(first),
                        _ => mech.step(&challenge),
                    };
                    let response = match response {
                        Ok(r) => r,
                        Err(e) => {
                            let cancel = self.client.auth_response(None);
                            self.write_out(&cancel)?;
                            let _ = self.next_event();
                            return Err(e);
                        }
                    };
                    let line = self.client.auth_response(Some(&response));
                    self.write_out(&line)?;
                }
                other => return login_reply(other, &user),
            }
        }
        Err(self.poison(Error::new(
            ErrorKind::Protocol,
            "SASL exchange did not finish after 32 challenges",
        )))
    }

    /// STAT: message count and total size.
    pub fn stat(&mut self) -> Result<(u32, u64)> {
        self.send(&Command::Stat)?;
        match self.next_event()? {
            Event::Stat { count, size } => Ok((count, size)),
            other => Err(self.refusal(other, "STAT")),
        }
    }

    /// LIST: every message number with its size.
    pub fn list_all(&mut self) -> Result<Vec<(u32, u64)>> {
        self.send(&Command::ListAll)?;
        let mut out = Vec::new();
        loop {
            match self.next_event()? {
                Event::ListEntry { msgno, size } => out.push((msgno, size)),
                Event::ListingEnd => return Ok(out),
                other => return Err(self.refusal(other, "LIST")),
            }
        }
    }

    /// LIST n: the size of one message.
    pub fn list(&mut self, msgno: u32) -> Result<u64> {
        self.send(&Command::List(msgno))?;
        match self.next_event()? {
            Event::ListEntry { size, .. } => Ok(size),
            other => Err(self.refusal(other, "LIST")),
        }
    }

    /// UIDL: every message number with its unique-id.
    pub fn uidl_all(&mut self) -> Result<Vec<(u32, String)>> {
        self.send(&Command::UidlAll)?;
        let mut out = Vec::new();
        loop {
            match self.next_event()? {
                Event::UidlEntry { msgno, uid } => out.push((msgno, uid)),
                Event::ListingEnd => return Ok(out),
                other => return Err(self.refusal(other, "UIDL")),
            }
        }
    }

    /// UIDL n: the unique-id of one message.
    pub fn uidl(&mut self, msgno: u32) -> Result<String> {
        self.send(&Command::Uidl(msgno))?;
        match self.next_event()? {
            Event::UidlEntry { uid, .. } => Ok(uid),
            other => Err(self.refusal(other, "UIDL")),
        }
    }

    /// RETR n, streamed into `sink`; returns the number of bytes written.
    pub fn retr(&mut self, msgno: u32, sink: &mut dyn Write) -> Result<u64> {
        self.fetch_one(Command::Retr(msgno), sink)
    }

    /// TOP n lines: the header and the first `lines` body lines, streamed into `sink`.
    pub fn top(&mut self, msgno: u32, lines: u32, sink: &mut dyn Write) -> Result<u64> {
        self.fetch_one(Command::Top(msgno, lines), sink)
    }

    fn fetch_one(&mut self, cmd: Command, sink: &mut dyn Write) -> Result<u64> {
        let what = cmd.redacted();
        self.send(&cmd)?;
        match self.next_event()? {
            Event::MessageStart => {}
            other => return Err(self.refusal(other, &what)),
        }
        loop {
            match self.next_event()? {
                Event::MessageData(d) => {
                    if let Err(e) = sink.write_all(&d) {
                        return Err(self.poison(Error::with_source(
                            ErrorKind::LocalIo,
                            "cannot write the retrieved message",
                            e,
                        )));
                    }
                }
                Event::MessageEnd { octets } => return Ok(octets),
                other => return Err(self.poison(unexpected(&other))),
            }
        }
    }

    /// RETR for many messages with PIPELINING (up to `pipeline_window` commands in flight;
    /// one at a time without PIPELINING). Messages stream into `sink` in order. Messages the
    /// server refuses are returned; an error from `sink` aborts (and ends the session's use).
    pub fn retr_pipelined(
        &mut self,
        msgnos: &[u32],
        sink: &mut dyn MessageSink,
    ) -> Result<Vec<Refused>> {
        let window = if self.caps.pipelining {
            self.settings.pipeline_window.max(1)
        } else {
            1
        };
        let mut refused = Vec::new();
        let mut sent = 0usize;
        let mut done = 0usize;
        while done < msgnos.len() {
            // Refill when half the window has drained: fewer, larger writes.
            if sent - done <= window / 2 && sent < msgnos.len() {
                let upto = (done + window).min(msgnos.len());
                let cmds: Vec<Command> = msgnos[sent..upto]
                    .iter()
                    .map(|&n| Command::Retr(n))
                    .collect();
                self.send_many(&cmds)?;
                sent = upto;
                // Deletions sent earlier are answered before these RETRs: read their replies
                // now that the server has the next commands to work on.
                if self.unread_deles > 0
                    && let Err(e) = self.read_deferred_deles()
                {
                    return Err(self.poison(e));
                }
            }
            let msgno = msgnos[done];
            match self.next_event()? {
                Event::MessageStart => {}
                Event::Err { code, text } => {
                    refused.push(Refused {
                        msgno,
                        error: err_reply(code, &text, &format!("RETR {msgno}")),
                    });
                    done += 1;
                    continue;
                }
                other => return Err(self.poison(unexpected(&other))),
            }
            if let Err(e) = sink.start(msgno) {
                return Err(self.poison(e));
            }
            loop {
                match self.next_event()? {
                    Event::MessageData(d) => {
                        if let Err(e) = sink.data(&d) {
                            return Err(self.poison(e));
                        }
                    }
                    Event::MessageEnd { octets } => {
                        if let Err(e) = sink.end(msgno, octets) {
                            return Err(self.poison(e));
                        }
                        break;
                    }
                    other => return Err(self.poison(unexpected(&other))),
                }
            }
            done += 1;
        }
        Ok(refused)
    }

    /// DELE n (takes effect at QUIT).
    pub fn dele(&mut self, msgno: u32) -> Result<()> {
        self.send(&Command::Dele(msgno))?;
        self.expect_ok("DELE")
    }

    /// DELE for many messages, pipelined when the server allows it.
    pub fn dele_many(&mut self, msgnos: &[u32]) -> Result<()> {
        self.read_deferred_deles()?;
        if !self.caps.pipelining {
            for &n in msgnos {
                self.dele(n)?;
            }
            return Ok(());
        }
        let window = self.settings.pipeline_window.max(1);
        for batch in msgnos.chunks(window) {
            let cmds: Vec<Command> = batch.iter().map(|&n| Command::Dele(n)).collect();
            self.send_many(&cmds)?;
            self.unread_deles += batch.len();
            self.read_deferred_deles()?;
        }
        Ok(())
    }

    /// DELE for many messages without waiting for the replies: with PIPELINING they are sent
    /// at once and read before the replies to whatever is sent next (the next batch's RETRs:
    /// the server never idles waiting for the client to read "+OK" lines). Without PIPELINING,
    /// or for a very long list, this is [`dele_many`](Self::dele_many). A refused DELE found
    /// later fails the call that read it (at QUIT it is a warning: the other deletions are
    /// committed).
    pub fn dele_many_deferred(&mut self, msgnos: &[u32]) -> Result<()> {
        // Bounded so that the unread replies always fit in the socket buffers.
        const MOST_UNREAD: usize = 1000;
        if !self.caps.pipelining || self.unread_deles + msgnos.len() > MOST_UNREAD {
            return self.dele_many(msgnos);
        }
        let cmds: Vec<Command> = msgnos.iter().map(|&n| Command::Dele(n)).collect();
        self.send_many(&cmds)?;
        self.unread_deles += msgnos.len();
        Ok(())
    }

    /// Reads the replies to deferred DELEs; the first refusal is the error.
    fn read_deferred_deles(&mut self) -> Result<()> {
        let mut first_err = None;
        for _ in 0..std::mem::take(&mut self.unread_deles) {
            if let Err(e) = self.expect_ok("DELE")
                && first_err.is_none()
            {
                first_err = Some(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// RSET: undo the deletions of this session.
    pub fn rset(&mut self) -> Result<()> {
        self.send(&Command::Rset)?;
        self.expect_ok("RSET")
    }

    /// NOOP.
    pub fn noop(&mut self) -> Result<()> {
        self.send(&Command::Noop)?;
        self.expect_ok("NOOP")
    }

    /// QUIT: commits the deletions. Returns the server's reply text; an error here means the
    /// deletions may not have happened.
    pub fn quit(mut self) -> Result<String> {
        self.send_many(&[Command::Quit])?;
        if let Err(e) = self.read_deferred_deles() {
            // That message stays on the server (and is deleted by a later poll as delivered
            // before); the QUIT still commits the other deletions.
            log::warn!("{}", e.chain());
        }
        let reply = match self.next_event()? {
            Event::Ok { text } => text,
            other => return Err(self.refusal(other, "QUIT")),
        };
        let _ = self.conn.shutdown();
        Ok(reply)
    }

    // ---- plumbing ----

    /// Sends one command and expects to read its reply next: replies to deferred DELEs are
    /// read first.
    fn send(&mut self, cmd: &Command) -> Result<()> {
        self.read_deferred_deles()?;
        self.send_many(std::slice::from_ref(cmd))
    }

    /// Writes several commands in one write (pipelining).
    fn send_many(&mut self, cmds: &[Command]) -> Result<()> {
        if self.broken {
            return Err(Error::new(
                ErrorKind::Protocol,
                "POP3 session unusable after an earlier error",
            ));
        }
        let mut out = Outbound::default();
        for cmd in cmds {
            out.append(&self.client.send(cmd));
        }
        self.write_out(&out)
    }

    /// Writes `out`, tracing it line by line with its secret spans hidden.
    fn write_out(&mut self, out: &Outbound) -> Result<()> {
        if plog::wire_enabled() {
            for line in out.trace_lines() {
                plog::wire("POP3", '>', &line);
            }
        }
        self.write_bytes(&out.bytes)
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let r = self.conn.write_all(bytes).and_then(|()| self.conn.flush());
        r.map_err(|e| {
            self.broken = true;
            Error::from(NetError::from_io(e))
        })
    }

    /// The next event, reading (with the connection's io timeout) as needed.
    fn next_event(&mut self) -> Result<Event> {
        loop {
            let polled = self.client.poll();
            for line in self.client.take_trace() {
                plog::wire("POP3", '<', &line);
            }
            match polled {
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(self.poison(pop3_error(e))),
            }
            self.conn.quickack();
            let n = match self.conn.read(&mut self.read_buf) {
                Ok(0) => {
                    return Err(self.poison(Error::new(
                        ErrorKind::NetworkIo,
                        "POP3 server closed the connection",
                    )));
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.poison(NetError::from_io(e).into())),
            };
            let (client, buf) = (&mut self.client, &self.read_buf);
            client.receive(buf.get(..n).unwrap_or_default());
        }
    }

    fn poison(&mut self, e: Error) -> Error {
        self.broken = true;
        e
    }

    fn expect_ok(&mut self, what: &str) -> Result<()> {
        match self.next_event()? {
            Event::Ok { .. } => Ok(()),
            other => Err(self.refusal(other, what)),
        }
    }

    fn expect_login_ok(&mut self, user: &str) -> Result<()> {
        let ev = self.next_event()?;
        login_reply(ev, user)
    }

    /// Asks CAPA; false when the server does not know it.
    fn capa(&mut self) -> Result<bool> {
        self.send(&Command::Capa)?;
        match self.next_event()? {
            Event::Capabilities(c) => {
                self.caps = c;
                Ok(true)
            }
            Event::Err { .. } => {
                self.caps = Capabilities::default();
                Ok(false)
            }
            other => Err(self.poison(unexpected(&other))),
        }
    }

    /// The error for a reply that is not the expected success.
    fn refusal(&mut self, ev: Event, what: &str) -> Error {
        match ev {
            Event::Err { code, text } => err_reply(code, &text, what),
            other => self.poison(unexpected(&other)),
        }
    }
}

fn unexpected(ev: &Event) -> Error {
    let shown = match ev {
        Event::MessageData(_) => "message data".to_string(),
        other => format!("{other:?}"),
    };
    Error::new(
        ErrorKind::Protocol,
        format!(
            "unexpected POP3 reply: {}",
            shown.chars().take(120).collect::<String>()
        ),
    )
}

fn pop3_error(e: Pop3Error) -> Error {
    Error::with_source(ErrorKind::Protocol, "POP3 server broke the protocol", e)
}

/// -ERR to an ordinary command: temporary codes are transient, the rest permanent.
fn err_reply(code: Option<RespCode>, text: &str, what: &str) -> Error {
    let kind = match &code {
        Some(c) if c.is_temporary() => ErrorKind::RejectedTemporary,
        _ => ErrorKind::RejectedPermanent,
    };
    Error::new(kind, format!("POP3 server refused {what}: {text}"))
}

/// The reply to USER, PASS, APOP or AUTH.
fn login_reply(ev: Event, user: &str) -> Result<()> {
    match ev {
        Event::Ok { .. } => Ok(()),
        Event::Err { code, text } => {
            let kind = match &code {
                Some(c) if c.is_temporary() => ErrorKind::RejectedTemporary,
                Some(RespCode::SysPerm) => ErrorKind::RejectedPermanent,
                _ => ErrorKind::Auth,
            };
            Err(Error::new(
                kind,
                format!("POP3 login as {user} failed: {text}"),
            ))
        }
        other => Err(unexpected(&other)),
    }
}

/// SASL PLAIN (RFC 4616), built in so PLAIN works before `proto::sasl` is wired.
struct PlainMechanism {
    user: String,
    password: Secret,
}

impl SaslClient for PlainMechanism {
    fn mechanism(&self) -> &str {
        "PLAIN"
    }

    fn initial_response(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(Some(plain_response(&self.user, &self.password)))
    }

    fn step(&mut self, challenge: &[u8]) -> Result<Vec<u8>> {
        if challenge.is_empty() {
            Ok(plain_response(&self.user, &self.password))
        } else {
            Err(Error::new(
                ErrorKind::Protocol,
                "server sent a challenge to SASL PLAIN",
            ))
        }
    }

    fn sends_plaintext_secret(&self) -> bool {
        true
    }
}

/// `\0user\0password` (RFC 4616 with an empty authorization identity).
pub(crate) fn plain_response(user: &str, password: &Secret) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(user.as_bytes());
    v.push(0);
    v.extend_from_slice(password.expose().as_bytes());
    v
}

/// Lets a built-in PLAIN be used by the IMAP session too.
pub(crate) fn plain_mechanism(user: &str, password: &Secret) -> impl SaslClient + use<> {
    PlainMechanism {
        user: user.to_string(),
        password: password.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Pop3Settings::new(
            Endpoint {
                host: "h".into(),
                port: 1,
            },
            "bob",
            Secret::new("hunter2"),
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn plaintext_policy() {
        assert!(check_plaintext(true, false, "u", "USER/PASS").is_ok());
        assert!(check_plaintext(false, true, "u", "USER/PASS").is_ok());
        let e = check_plaintext(false, false, "u", "USER/PASS").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(plain_response("u", &Secret::new("p")), b"\0u\0p");
    }

    #[test]
    fn reply_kinds() {
        let k = |code, f: fn(Option<RespCode>) -> Error| f(code).kind();
        let login = |code| {
            login_reply(
                Event::Err {
                    code,
                    text: "x".into(),
                },
                "u",
            )
            .unwrap_err()
        };
        assert_eq!(k(None, login), ErrorKind::Auth);
        assert_eq!(k(Some(RespCode::Auth), login), ErrorKind::Auth);
        assert_eq!(
            k(Some(RespCode::InUse), login),
            ErrorKind::RejectedTemporary
        );
        assert_eq!(
            k(Some(RespCode::SysPerm), login),
            ErrorKind::RejectedPermanent
        );
        assert_eq!(
            err_reply(Some(RespCode::SysTemp), "x", "RETR 1").kind(),
            ErrorKind::RejectedTemporary
        );
        assert_eq!(
            err_reply(None, "x", "RETR 1").kind(),
            ErrorKind::RejectedPermanent
        );
    }
}
