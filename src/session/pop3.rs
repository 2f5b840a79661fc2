//! The blocking POP3 session: connects (POP3S or STLS, RFC 2595), logs in (USER/PASS, APOP,
//! AUTH with any [`crate::proto::sasl`] mechanism, RFC 5034), lists, retrieves messages as
//! streams (one at a time or pipelined, RFC 2449), deletes and quits, over a
//! [`crate::net::Connection`].

use std::fmt;
use std::io::Write;
use std::time::Duration;

use super::auth::{self, Cleartext, Initial, SaslStep, SaslWire};
pub use super::auth::{FetchAuth, Secret, Server};
use super::link::{self, Link, SessionStart};
use crate::error::{Error, ErrorKind, Result};
use crate::log as plog;
use crate::net::{Connection, Endpoint, TlsMode};
use crate::proto::pop3::{self, Capabilities, Command, Event, RespCode};
use crate::proto::sasl::Mechanism;
use crate::proto::trace::Outbound;

/// Everything needed to open and log in to one POP3 account.
#[derive(Debug, Clone)]
pub struct Pop3Settings {
    pub server: Server,
    pub limits: pop3::Limits,
    /// Most commands in flight when the server supports PIPELINING.
    pub pipeline_window: usize,
}

impl Pop3Settings {
    /// Settings with the defaults: STLS required, `any` login, 64 commands in flight.
    pub fn new(endpoint: Endpoint, user: impl Into<String>, password: Secret) -> Self {
        Self::from_server(Server::new(endpoint, user, password))
    }

    /// The same defaults around a server description already made.
    pub fn from_server(server: Server) -> Self {
        Pop3Settings {
            server,
            limits: pop3::Limits::default(),
            pipeline_window: 64,
        }
    }
}

derefs_to_server!(Pop3Settings);

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
    link: Link,
    client: pop3::Client,
    settings: Pop3Settings,
    caps: Capabilities,
    apop_timestamp: Option<String>,
    greeting: String,
    /// DELE commands sent by [`dele_many_deferred`](Self::dele_many_deferred) whose replies
    /// are still to be read (before anything else's).
    unread_deles: usize,
}

impl fmt::Debug for Pop3Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.link
            .debug_session(f, "Pop3Session", &self.settings.user)
    }
}

impl Pop3Session {
    /// Connects, reads the greeting, asks CAPA and, with [`TlsMode::Starttls`], upgrades with
    /// STLS (mandatory: an error of kind Unsupported when the server cannot) and asks CAPA again.
    pub fn connect(settings: &Pop3Settings) -> Result<Pop3Session> {
        link::connect(&settings.server, "POP3", |conn| Self::start(conn, settings))
    }

    /// A session on `link` that has read nothing yet.
    fn fresh(link: Link, settings: &Pop3Settings) -> Pop3Session {
        let mut client = pop3::Client::new(settings.limits);
        client.set_trace(plog::wire_enabled());
        Pop3Session {
            link,
            client,
            settings: settings.clone(),
            caps: Capabilities::default(),
            apop_timestamp: None,
            greeting: String::new(),
            unread_deles: 0,
        }
    }

    /// Runs the session start (greeting, CAPA, STLS) on an already open connection.
    pub fn start(conn: Connection, settings: &Pop3Settings) -> Result<Pop3Session> {
        let s = Self::fresh(Link::new(conn, "POP3"), settings);
        let upgrade = settings.tls_mode == TlsMode::Starttls && !s.is_tls();
        link::start(s, upgrade)
    }

    /// The capabilities from the last CAPA (empty when the server does not know CAPA).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.link.conn().is_tls()
    }

    /// The greeting text after "+OK".
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// The underlying connection (for TLS details).
    pub fn connection(&self) -> &Connection {
        self.link.conn()
    }

    /// Logs in with the configured method. A wrong password is an error of kind Auth.
    pub fn login(&mut self) -> Result<()> {
        let user = self.settings.user.clone();
        match self.settings.auth {
            FetchAuth::Implicit => Ok(()),
            FetchAuth::Sasl(m) => self.login_sasl(Some(m)).map(|_| ()),
            FetchAuth::Apop => self.login_apop(&user),
            FetchAuth::Password => self.login_password(&user),
            FetchAuth::Any => {
                if self.login_sasl(None)? {
                    return Ok(());
                }
                // Without TLS the digest beats the password even where the password would be
                // allowed (a loopback peer, an explicit permission).
                if !self.is_tls() && self.apop_timestamp.is_some() {
                    self.login_apop(&user)
                } else {
                    self.login_password(&user)
                }
            }
        }
    }

    fn login_apop(&mut self, user: &str) -> Result<()> {
        let Some(ts) = self.apop_timestamp.clone() else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "server greeting offers no (valid) APOP timestamp",
            ));
        };
        let digest = pop3::apop_digest(&ts, self.settings.password.expose());
        self.send(&Command::Apop {
            user: user.to_string(),
            digest,
        })?;
        self.expect_login_ok(user)
    }

    fn login_password(&mut self, user: &str) -> Result<()> {
        Cleartext::of(self.link.conn(), self.settings.allow_plaintext).check(
            self.link.conn().peer(),
            user,
            "USER/PASS",
        )?;
        let pass = Command::Pass(self.settings.password.expose().to_string());
        if self.caps.pipelining {
            self.send_many(&[Command::User(user.to_string()), pass])?;
            let user_reply = self.next_event()?;
            let pass_reply = self.next_event()?;
            login_reply(user_reply, user)?;
            login_reply(pass_reply, user)
        } else {
            self.send(&Command::User(user.to_string()))?;
            self.expect_login_ok(user)?;
            self.send(&pass)?;
            self.expect_login_ok(user)
        }
    }

    /// Logs in with AUTH (RFC 5034) and `wanted`, or with the strongest offered mechanism that
    /// hides the password when `None`. Returns false when `None` found none to use.
    pub fn login_sasl(&mut self, wanted: Option<Mechanism>) -> Result<bool> {
        let user = self.settings.user.clone();
        // A server without a SASL list in CAPA may still know the mechanism asked for.
        let caps = &self.caps;
        let offered =
            |m: Mechanism| caps.has_sasl(m.name()) || (wanted.is_some() && caps.sasl.is_empty());
        let Some(client) =
            auth::prepare_sasl(self.link.conn(), offered, wanted, &self.settings.server)?
        else {
            return Ok(false);
        };
        auth::sasl_login(self, client, |_, reply| login_reply(reply, &user))
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
        self.listing(Command::ListAll, "LIST", |ev| match ev {
            Event::ListEntry { msgno, size } => Ok((msgno, size)),
            other => Err(other),
        })
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
        self.listing(Command::UidlAll, "UIDL", |ev| match ev {
            Event::UidlEntry { msgno, uid } => Ok((msgno, uid)),
            other => Err(other),
        })
    }

    /// A multi-line listing: `entry` takes each line's event apart until the end.
    fn listing<T>(
        &mut self,
        cmd: Command,
        what: &str,
        entry: impl Fn(Event) -> std::result::Result<T, Event>,
    ) -> Result<Vec<T>> {
        self.send(&cmd)?;
        let mut out = Vec::new();
        loop {
            match self.next_event()? {
                Event::ListingEnd => return Ok(out),
                ev => match entry(ev) {
                    Ok(item) => out.push(item),
                    Err(other) => return Err(self.refusal(other, what)),
                },
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
    pub fn quit(self) -> Result<String> {
        self.quit_within(None)
            .map(|reply| reply.unwrap_or_default())
    }

    /// QUIT, waiting at most `wait` for the server's reply (`None`: as long as any read, the io
    /// timeout). Returns the reply text, or `None` when `wait` passed first: the connection is
    /// then closed, the deletions are the server's to commit and nobody learns whether it did.
    ///
    /// The server answers QUIT only once it has committed the deletions, which on a large
    /// mailbox is most of a session's time (Dovecot unlinking 1000 files: 70–90 ms of a 160 ms
    /// poll). Not waiting is safe only because every DELE is sent after the message's seen
    /// state is durable: a QUIT the server never acts on leaves delivered messages on the
    /// server, and the next poll deletes them without fetching them. Every DELE reply is read
    /// before the close, so the server has processed every command before QUIT (a server that
    /// cannot write a reply may drop the commands still in its input) and nothing unread is
    /// left in the socket (a close with unread data sends a TCP reset instead of the end of the
    /// stream after the QUIT).
    pub fn quit_within(mut self, wait: Option<Duration>) -> Result<Option<String>> {
        self.send_many(&[Command::Quit])?;
        if let Err(e) = self.read_deferred_deles() {
            // That message stays on the server (and is deleted by a later poll as delivered
            // before); the QUIT still commits the other deletions.
            log::warn!("{}", e.chain());
            self.link.ensure_usable()?;
        }
        let event = match wait {
            None => Some(self.next_event()?),
            Some(wait) => {
                let r = self.link.next_event_within(&mut self.client, wait);
                r.map_err(|e| self.link.poison(e))?
            }
        };
        let reply = match event {
            Some(Event::Ok { text }) => Some(text),
            Some(other) => return Err(self.refusal(other, "QUIT")),
            None => {
                log::debug!("QUIT sent; not waiting for the server to commit the deletions");
                None
            }
        };
        let _ = self.link.conn_mut().shutdown();
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
        self.link.ensure_usable()?;
        let mut out = Outbound::default();
        for cmd in cmds {
            out.append(&self.client.send(cmd));
        }
        self.link.write_out(&out)
    }

    /// The next event, reading (with the connection's io timeout) as needed.
    fn next_event(&mut self) -> Result<Event> {
        let r = self.link.next_event(&mut self.client);
        r.map_err(|e| self.link.poison(e))
    }

    fn poison(&mut self, e: Error) -> Error {
        self.link.poison(e)
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
    link::unexpected("POP3 reply", ev, matches!(ev, Event::MessageData(_)))
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

impl SessionStart for Pop3Session {
    const UPGRADE: &'static str = "STLS";

    fn greeting(&mut self) -> Result<()> {
        match self.next_event()? {
            Event::Greeting {
                ok: true,
                text,
                apop_timestamp,
            } => {
                self.greeting = text;
                self.apop_timestamp = apop_timestamp;
                Ok(())
            }
            Event::Greeting { text, .. } => Err(link::refused_session(&text)),
            other => Err(unexpected(&other)),
        }
    }

    fn capabilities(&mut self) -> Result<Option<bool>> {
        Ok(self.capa()?.then_some(self.caps.stls))
    }

    fn request_tls(&mut self) -> Result<std::result::Result<(), String>> {
        self.send(&Command::Stls)?;
        match self.next_event()? {
            Event::StartTls => Ok(Ok(())),
            Event::Err { text, .. } => Ok(Err(text)),
            other => Err(unexpected(&other)),
        }
    }

    fn upgrade(self) -> Result<Self> {
        let settings = self.settings;
        let link = self
            .link
            .upgrade_tls(&settings.tls, &settings.endpoint.host)?;
        let mut s = Self::fresh(link, &settings);
        // No greeting follows STLS: the machine expects nothing until CAPA.
        s.client.tls_established();
        Ok(s)
    }
}

impl SaslWire for Pop3Session {
    type Outcome = Event;

    /// RFC 5034 §4: an initial response that would make the line longer than 255 octets
    /// is sent after the server's first (empty) challenge instead.
    fn carries(&self, mechanism: Mechanism, initial: &[u8]) -> bool {
        initial.len().div_ceil(3) * 4 + mechanism.name().len() + 8 <= 255
    }

    fn send_auth(&mut self, mechanism: Mechanism, initial: Initial) -> Result<()> {
        let mechanism = mechanism.name().to_string();
        self.send(&Command::Auth { mechanism, initial })
    }

    fn read_step(&mut self) -> Result<SaslStep<Event>> {
        Ok(match self.next_event()? {
            Event::AuthChallenge(challenge) => SaslStep::Challenge(challenge),
            other => SaslStep::Done(other),
        })
    }

    fn send_response(&mut self, response: Option<&[u8]>) -> Result<()> {
        let line = self.client.auth_response(response);
        self.link.write_out(&line)
    }

    fn after_cancel(&mut self) {
        let _ = self.next_event();
    }

    fn accepted(outcome: &Event) -> bool {
        matches!(outcome, Event::Ok { .. })
    }

    fn poison(&mut self, e: Error) -> Error {
        self.link.poison(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
