//! The blocking SMTP/LMTP session: drives the [`crate::proto::smtp`] machines over a
//! [`crate::net::Connection`], streams message bodies through the dot-stuffer with bounded buffers,
//! performs the STARTTLS upgrade (dropping every pre-TLS byte, RFC 3207 §4.2), and writes the
//! protocol trace (`SMTP> MAIL FROM:<...>`, `SMTP< 250 ok`; target [`crate::log::WIRE`]) with
//! the spans the command builders marked secret, and the AUTH challenges, withheld.

use std::fmt;
use std::io::{self, Read, Write};

use super::auth::{Cleartext, Secret};
use super::link;
use crate::error::{Error, ErrorKind, Result};
use crate::log as plog;
use crate::net::{ConnectOptions, Connection, Endpoint, NetError, TlsMode, TlsOptions};
use crate::proto::dotstuff::DotStuffer;
use crate::proto::sasl::Mechanism;
use crate::proto::smtp::{
    AuthConfig, AuthMethod, Capabilities, Command, Envelope, Handshake, HandshakeConfig,
    HandshakeStep, Outgoing, PeerMisbehaved, Protocol, Reply, ReplyParser, SendReport, SmtpError,
    Transaction, TxnStep,
};
use crate::proto::trace::printable;

/// Raw message bytes read from the caller per chunk.
const BODY_CHUNK: usize = 64 * 1024;
/// Bytes read from the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// Credentials and policy for AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpAuth {
    pub method: AuthMethod,
    pub user: String,
    /// Password, or OAuth bearer token for XOAUTH2/OAUTHBEARER.
    pub secret: Secret,
    /// Allow plaintext-equivalent mechanisms (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER) without TLS
    /// to a non-loopback peer (a loopback peer address needs no permission).
    pub allow_plaintext: bool,
}

/// Everything needed to open a session (filled in by the account layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub endpoint: Endpoint,
    pub tls_mode: TlsMode,
    pub tls: TlsOptions,
    pub connect: ConnectOptions,
    /// The name sent with EHLO/LHLO/HELO.
    pub helo_domain: String,
    pub protocol: Protocol,
    pub auth: Option<SmtpAuth>,
}

/// An open, greeted (and, if configured, secured and authenticated) SMTP or LMTP session.
pub struct SmtpClient {
    /// `None` once the connection is unusable (timeout, protocol violation, aborted DATA).
    conn: Option<Connection>,
    parser: ReplyParser,
    peer: String,
    protocol: Protocol,
    greeting: Reply,
    caps: Capabilities,
    auth_mechanism: Option<Mechanism>,
    /// The phase and reply code of the refusal that failed the last `send` (fetchmail's
    /// `antispam` codes are matched against it).
    last_refusal: Option<(crate::proto::smtp::Phase, u16)>,
}

impl fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpClient")
            .field("peer", &self.peer)
            .field("protocol", &self.protocol)
            .field("tls", &self.is_tls())
            .field("auth_mechanism", &self.auth_mechanism)
            .finish()
    }
}

/// Reads replies and writes commands, tracing both; keeps nothing but the reply parser's
/// bounded buffer.
struct Wire {
    conn: Option<Connection>,
    parser: ReplyParser,
    peer: String,
    /// "SMTP" or "LMTP", for the trace.
    proto: &'static str,
}

fn trace_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Smtp => "SMTP",
        Protocol::Lmtp => "LMTP",
    }
}

impl Wire {
    fn conn(&mut self) -> Result<&mut Connection> {
        self.conn.as_mut().ok_or_else(|| {
            Error::new(
                ErrorKind::NetworkIo,
                format!("the connection to {} was closed after an error", self.peer),
            )
        })
    }

    /// Drops the connection: after this nothing more is sent.
    fn abandon(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.shutdown();
        }
    }

    fn write(&mut self, out: &Outgoing) -> Result<()> {
        if plog::wire_enabled() {
            for line in out.trace_lines() {
                plog::wire(self.proto, '>', &line);
            }
        }
        self.write_raw(&out.bytes)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let peer = self.peer.clone();
        let conn = self.conn()?;
        let res = conn.write_all(bytes).and_then(|()| conn.flush());
        res.map_err(|e| {
            self.abandon();
            Error::from(NetError::from_io(e)).context(format!("cannot send to {peer}"))
        })
    }

    /// The next reply; `in_auth`: a 334 challenge is not traced (with the withheld answer it
    /// would be material for an offline guess at the password).
    fn read_reply(&mut self, in_auth: bool) -> Result<Reply> {
        loop {
            match self.parser.next_reply() {
                Ok(Some(reply)) => {
                    if plog::wire_enabled() {
                        self.trace_reply(&reply, in_auth && reply.code() == 334);
                    }
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(p) => {
                    self.abandon();
                    return Err(SmtpError::PeerMisbehaved(p).into());
                }
            }
            let peer = self.peer.clone();
            let conn = self.conn()?;
            conn.quickack();
            let mut buf = [0u8; READ_CHUNK];
            let n = loop {
                match conn.read(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            match n {
                Ok(0) => {
                    self.abandon();
                    return Err(Error::new(
                        ErrorKind::NetworkIo,
                        format!("{peer} closed the connection unexpectedly"),
                    ));
                }
                Ok(n) => self.parser.push(buf.get(..n).unwrap_or_default()),
                Err(e) => {
                    self.abandon();
                    return Err(
                        Error::from(NetError::from_io(e)).context(format!("no reply from {peer}"))
                    );
                }
            }
        }
    }

    fn trace_reply(&self, reply: &Reply, challenge: bool) {
        if challenge {
            plog::wire(
                self.proto,
                '<',
                &format!("{} <SASL challenge>", reply.code()),
            );
            return;
        }
        let n = reply.lines().len();
        for (i, line) in reply.lines().iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            let shown = format!("{}{sep}{}", reply.code(), printable(line.as_bytes()));
            plog::wire(self.proto, '<', shown.trim_end());
        }
        if n == 0 {
            plog::wire(self.proto, '<', &reply.code().to_string());
        }
    }

    /// Ends a failed exchange politely when the connection is still in step (a negative
    /// reply), without waiting for the answer; otherwise just closes it.
    fn fail(&mut self, err: SmtpError) -> Error {
        let in_step = matches!(
            err,
            SmtpError::Transient { .. }
                | SmtpError::Permanent { .. }
                | SmtpError::StartTlsUnavailable
                | SmtpError::AuthUnavailable { .. }
                | SmtpError::PlaintextAuthRefused { .. }
        );
        if in_step && let Ok(quit) = outgoing(Command::Quit) {
            let _ = self.write(&quit);
        }
        self.abandon();
        err.into()
    }
}

impl SmtpClient {
    /// Connects, reads the greeting, says EHLO/LHLO (HELO as a fallback), does STARTTLS when
    /// `tls_mode` is `Starttls` (mandatory), and authenticates when `auth` is set.
    pub fn connect(settings: &SmtpSettings) -> Result<SmtpClient> {
        let conn = link::open(link::Target {
            endpoint: &settings.endpoint,
            tls_mode: settings.tls_mode,
            tls: &settings.tls,
            connect: &settings.connect,
        })?;
        let peer = conn.peer().to_string();
        let tls_active = conn.is_tls();
        // Decided on the socket's peer address before anything is said: a loopback peer (a
        // local bridge) may take a password without TLS, like an explicit permission.
        let cleartext = Cleartext::of(
            &conn,
            settings.auth.as_ref().is_some_and(|a| a.allow_plaintext),
        );
        let mut wire = Wire {
            conn: Some(conn),
            parser: ReplyParser::default(),
            peer,
            proto: trace_name(settings.protocol),
        };
        let config = HandshakeConfig {
            protocol: settings.protocol,
            helo_domain: settings.helo_domain.clone(),
            starttls: settings.tls_mode == TlsMode::Starttls,
            tls_active,
            auth: settings.auth.as_ref().map(|a| AuthConfig {
                method: a.method,
                user: a.user.clone(),
                secret: a.secret.expose().to_string(),
                allow_plaintext: cleartext.permits(),
                server: Some((settings.endpoint.host.clone(), settings.endpoint.port)),
            }),
        };
        let mut hs = Handshake::new(config);
        loop {
            let reply = wire.read_reply(hs.in_auth())?;
            match hs.on_reply(reply) {
                Ok(HandshakeStep::Send(out)) => wire.write(&out)?,
                Ok(HandshakeStep::StartTls) => {
                    // Anything after the go-ahead was sent in plaintext by someone: refuse it
                    // rather than read it as the post-TLS EHLO reply.
                    if !wire.parser.is_empty() {
                        wire.abandon();
                        return Err(
                            SmtpError::PeerMisbehaved(PeerMisbehaved::DataAfterStartTls).into()
                        );
                    }
                    wire.parser.clear();
                    let Some(plain) = wire.conn.take() else {
                        return Err(Error::new(
                            ErrorKind::Internal,
                            "STARTTLS without a connection",
                        ));
                    };
                    let secured = plain.upgrade_tls(&settings.tls, &settings.endpoint.host)?;
                    wire.conn = Some(secured);
                    match hs.tls_established() {
                        Ok(out) => wire.write(&out)?,
                        Err(e) => return Err(wire.fail(e)),
                    }
                }
                Ok(HandshakeStep::Ready) => break,
                Err(e) => {
                    let e = wire.fail(e);
                    return Err(super::auth::name_refused_token(e, hs.auth_mechanism()));
                }
            }
        }
        let greeting = hs
            .greeting()
            .cloned()
            .unwrap_or_else(|| Reply::new(220, &[""]));
        let caps = hs.capabilities().cloned().unwrap_or_default();
        if let (Some(m), Some(a)) = (hs.auth_mechanism(), &settings.auth)
            && m.is_plaintext_equivalent()
            && !hs.tls()
        {
            // Only says at -v which rule let it through: the handshake enforced it.
            cleartext.check(&wire.peer, &a.user, m.name())?;
        }
        log::debug!(
            "{}: session ready ({}, tls={}, auth={})",
            wire.peer,
            match settings.protocol {
                Protocol::Smtp => "SMTP",
                Protocol::Lmtp => "LMTP",
            },
            hs.tls(),
            hs.auth_mechanism().map_or("none", Mechanism::name)
        );
        Ok(SmtpClient {
            conn: wire.conn,
            parser: wire.parser,
            peer: wire.peer,
            protocol: settings.protocol,
            greeting,
            caps,
            auth_mechanism: hs.auth_mechanism(),
            last_refusal: None,
        })
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// What the server announced in its last EHLO/LHLO reply (after STARTTLS, the new one).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether the session is encrypted.
    pub fn is_tls(&self) -> bool {
        self.conn.as_ref().is_some_and(Connection::is_tls)
    }

    /// The AUTH mechanism used, if any.
    pub fn auth_mechanism(&self) -> Option<Mechanism> {
        self.auth_mechanism
    }

    /// The connection (TLS details for `--serverinfo`); `None` after a fatal error.
    pub fn connection(&self) -> Option<&Connection> {
        self.conn.as_ref()
    }

    /// `host:port` of the server.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    fn wire(&mut self) -> Wire {
        Wire {
            conn: self.conn.take(),
            parser: std::mem::take(&mut self.parser),
            peer: self.peer.clone(),
            proto: trace_name(self.protocol),
        }
    }

    fn put_back(&mut self, wire: Wire) {
        self.conn = wire.conn;
        self.parser = wire.parser;
    }

    /// Sends one message. The body is the raw message (any line endings), streamed in 64 KiB
    /// chunks through the dot-stuffer; `size_hint` (its size in bytes, if known) is checked
    /// against the server's SIZE limit before anything is sent and declared with SIZE=.
    ///
    /// Returns a report when the server took the message for at least one recipient. Without
    /// `envelope.allow_partial`, any refused recipient fails the whole message before DATA;
    /// with LMTP, per-recipient failures after the final "." are in the report's `rejected()`.
    pub fn send(
        &mut self,
        envelope: &Envelope,
        body: &mut dyn Read,
        size_hint: Option<u64>,
    ) -> Result<SendReport> {
        let mut wire = self.wire();
        let mut refusal = None;
        let result = Self::transaction(
            &mut wire,
            self.protocol,
            &self.caps,
            envelope,
            body,
            size_hint,
            &mut refusal,
        );
        self.put_back(wire);
        self.last_refusal = refusal;
        result
    }

    /// The phase and reply code of the refusal that failed the last [`send`](Self::send), if
    /// a reply (not the connection) failed it.
    pub fn last_refusal(&self) -> Option<(crate::proto::smtp::Phase, u16)> {
        self.last_refusal
    }

    fn transaction(
        wire: &mut Wire,
        protocol: Protocol,
        caps: &Capabilities,
        envelope: &Envelope,
        body: &mut dyn Read,
        size_hint: Option<u64>,
        refusal: &mut Option<(crate::proto::smtp::Phase, u16)>,
    ) -> Result<SendReport> {
        wire.conn()?;
        let (mut txn, first) = Transaction::start(protocol, caps, envelope, size_hint)?;
        wire.write(&first)?;
        let mut message_bytes = 0;
        loop {
            let reply = wire.read_reply(false)?;
            match txn.on_reply(reply) {
                Ok(TxnStep::Send(out)) => wire.write(&out)?,
                Ok(TxnStep::Read) => {}
                Ok(TxnStep::SendBody) => message_bytes = send_body(wire, body)?,
                Ok(TxnStep::Done(mut report)) => {
                    report.message_bytes = message_bytes;
                    log::debug!(
                        "{}: message of {message_bytes} bytes accepted: {}",
                        wire.peer,
                        report.final_reply
                    );
                    return Ok(report);
                }
                Err(e) => {
                    if let SmtpError::Permanent { phase, reply, .. }
                    | SmtpError::Transient { phase, reply, .. } = &e
                    {
                        *refusal = Some((*phase, reply.code()));
                    }
                    if txn.must_close() {
                        // The server waits for data we will not send: closing without the
                        // final "." is the only way to make sure nothing is delivered.
                        wire.abandon();
                    } else {
                        reset_quietly(wire);
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// Sends RSET (abandons a transaction; rarely needed, `send` resets after its failures).
    pub fn reset(&mut self) -> Result<()> {
        let mut wire = self.wire();
        let result = (|| {
            wire.write(&outgoing(Command::Rset)?)?;
            let reply = wire.read_reply(false)?;
            if reply.is_success() {
                Ok(())
            } else {
                Err(SmtpError::rejected(crate::proto::smtp::Phase::Reset, reply, None).into())
            }
        })();
        self.put_back(wire);
        result
    }

    /// Ends the session with QUIT and closes the connection. A missing or negative QUIT reply
    /// is not an error worth failing a delivered message for: it is only logged.
    pub fn quit(mut self) -> Result<()> {
        let mut wire = self.wire();
        if wire.conn.is_none() {
            return Ok(());
        }
        wire.write(&outgoing(Command::Quit)?)?;
        match wire.read_reply(false) {
            Ok(r) if !r.is_success() => log::debug!("{}: QUIT answered {r}", wire.peer),
            Ok(_) => {}
            Err(e) => log::debug!("{}: no QUIT reply: {}", wire.peer, e.chain()),
        }
        wire.abandon();
        Ok(())
    }
}

fn outgoing(cmd: Command) -> Result<Outgoing> {
    Ok(Outgoing::plain(cmd.encode()?))
}

/// RSET after a failed transaction so the session can carry the next message; failures only
/// make the connection unusable.
fn reset_quietly(wire: &mut Wire) {
    if wire.conn.is_none() {
        return;
    }
    let ok = outgoing(Command::Rset)
        .and_then(|o| wire.write(&o))
        .and_then(|()| wire.read_reply(false));
    if !matches!(ok, Ok(ref r) if r.is_success()) {
        wire.abandon();
    }
}

/// Streams the body: bounded buffers (64 KiB in, a little more out), the last chunk and the
/// final "." in one write. Returns the raw bytes read.
fn send_body(wire: &mut Wire, body: &mut dyn Read) -> Result<u64> {
    let mut stuffer = DotStuffer::new();
    let mut input = vec![0u8; BODY_CHUNK];
    let mut out = Vec::with_capacity(BODY_CHUNK + BODY_CHUNK / 8);
    loop {
        let n = match body.read(&mut input) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // The server is in DATA mode: only closing keeps a truncated message from
                // being delivered.
                wire.abandon();
                return Err(Error::with_source(
                    ErrorKind::LocalIo,
                    "cannot read the message",
                    e,
                ));
            }
        };
        if n == 0 {
            stuffer.finish(&mut out);
            wire.write_raw(&out)?;
            // Message contents are not traced, only their size (as fetchmail does).
            let summary = format!("<{} octets of message data>", stuffer.input_len());
            plog::wire(wire.proto, '>', &summary);
            plog::wire(wire.proto, '>', ".");
            return Ok(stuffer.input_len());
        }
        if !out.is_empty() {
            wire.write_raw(&out)?;
            out.clear();
        }
        stuffer.encode(input.get(..n).unwrap_or_default(), &mut out);
    }
}
