//! The SMTP/LMTP client machines: [`Handshake`] (greeting, EHLO/LHLO with HELO fallback,
//! STARTTLS, AUTH; RFC 5321 §3.1-3.2, RFC 3207 §4.2, RFC 4954 §4) and [`Transaction`] (MAIL,
//! RCPT, DATA with PIPELINING in batches, and LMTP's per-recipient replies; RFC 5321 §3.3,
//! RFC 2920 §3, RFC 2033 §4.2). They consume parsed replies and return what to send next.

use std::collections::VecDeque;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::caps::Capabilities;
use super::command::{Command, DsnRet, MailParams, Notify};
use super::reply::Reply;
use super::{PeerMisbehaved, Phase, SmtpError};
use crate::proto::dotstuff::needs_smtputf8;
use crate::proto::sasl::{self, Mechanism, SaslClient};

/// Commands in flight at once with PIPELINING (msmtp's limit): replies to a bigger batch could
/// fill our receive buffer while we are still writing, and both sides would stall.
pub const PIPELINE_LIMIT: usize = 100;

/// SMTP or LMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Smtp,
    Lmtp,
}

/// Which AUTH mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// The strongest offered (SCRAM-SHA-256, CRAM-MD5, PLAIN, LOGIN), plaintext-equivalent
    /// ones only over TLS unless allowed.
    #[default]
    Auto,
    /// Exactly this one.
    Mechanism(Mechanism),
}

/// Credentials and policy for AUTH.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub method: AuthMethod,
    pub user: String,
    /// The password, or the OAuth bearer token.
    pub secret: String,
    /// Allow PLAIN/LOGIN/XOAUTH2/OAUTHBEARER on an unencrypted connection.
    pub allow_plaintext: bool,
    /// Host and port reported by OAUTHBEARER.
    pub server: Option<(String, u16)>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("method", &self.method)
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .field("allow_plaintext", &self.allow_plaintext)
            .field("server", &self.server)
            .finish()
    }
}

/// What the handshake needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeConfig {
    pub protocol: Protocol,
    /// The name sent with EHLO/LHLO/HELO.
    pub helo_domain: String,
    /// Issue STARTTLS (mandatory: an error when not offered).
    pub starttls: bool,
    /// The connection is already encrypted (implicit TLS).
    pub tls_active: bool,
    pub auth: Option<AuthConfig>,
}

/// Bytes to write, with the AUTH payloads marked secret for the trace.
pub use crate::proto::trace::Outbound as Outgoing;

/// A command with nothing secret in it.
fn command_out(cmd: Command) -> Result<Outgoing, SmtpError> {
    Ok(Outgoing::plain(cmd.encode()?))
}

/// An AUTH command; its initial response (the last word) is secret.
fn auth_out(mechanism: &str, initial: Option<&str>) -> Result<Outgoing, SmtpError> {
    let bytes = Command::Auth(mechanism, initial).encode()?;
    let mut out = Outgoing::default();
    match initial {
        Some(ir) if !ir.is_empty() => {
            let tail = ir.len() + 2;
            let head = bytes.len().saturating_sub(tail);
            out.push_plain(bytes.get(..head).unwrap_or_default());
            out.push_secret(bytes.get(head..bytes.len() - 2).unwrap_or_default());
            out.push_plain(b"\r\n");
        }
        _ => out.push_plain(&bytes),
    }
    Ok(out)
}

/// A line answering an AUTH challenge: secret.
fn answer_out(answer: &[u8]) -> Outgoing {
    let mut out = Outgoing::default();
    out.push_secret(B64.encode(answer).as_bytes());
    out.push_plain(b"\r\n");
    out
}

/// What the driver does next during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeStep {
    /// Write these bytes, then read the next reply.
    Send(Outgoing),
    /// The server said go ahead: check nothing else was received, drop every buffered byte,
    /// do the TLS handshake, then call [`Handshake::tls_established`].
    StartTls,
    /// The session is ready for mail.
    Ready,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HsState {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    AwaitTls,
    Auth,
    /// A SASL step failed and "*" was sent; the error is returned after the server's reply.
    AuthCancelled(crate::proto::sasl::SaslError),
    Ready,
}

/// The session opening: greeting → EHLO/LHLO (→ HELO) → STARTTLS → EHLO → AUTH.
#[derive(Debug)]
pub struct Handshake {
    config: HandshakeConfig,
    state: HsState,
    tls: bool,
    greeting: Option<Reply>,
    caps: Option<Capabilities>,
    sasl: Option<SaslClient>,
}

impl Handshake {
    /// A handshake waiting for the server greeting.
    pub fn new(config: HandshakeConfig) -> Handshake {
        let tls = config.tls_active;
        Handshake {
            config,
            state: HsState::Greeting,
            tls,
            greeting: None,
            caps: None,
            sasl: None,
        }
    }

    pub fn greeting(&self) -> Option<&Reply> {
        self.greeting.as_ref()
    }

    /// The capabilities of the latest EHLO (after STARTTLS: the post-TLS ones).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.caps.as_ref()
    }

    /// Whether TLS is active.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Whether an AUTH exchange is in progress (incoming challenges and outgoing answers are
    /// then not for the trace).
    pub fn in_auth(&self) -> bool {
        matches!(self.state, HsState::Auth | HsState::AuthCancelled(_))
    }

    /// The mechanism used, once AUTH started.
    pub fn auth_mechanism(&self) -> Option<Mechanism> {
        self.sasl.as_ref().map(SaslClient::mechanism)
    }

    /// Feeds the next reply.
    pub fn on_reply(&mut self, reply: Reply) -> Result<HandshakeStep, SmtpError> {
        match std::mem::replace(&mut self.state, HsState::Ready) {
            HsState::Greeting => {
                if reply.code() != 220 {
                    return Err(reject(Phase::Greeting, reply));
                }
                self.greeting = Some(reply);
                self.send_ehlo()
            }
            HsState::Ehlo => {
                if reply.is_success() {
                    self.caps = Some(Capabilities::from_ehlo(&reply)?);
                    return self.after_ehlo();
                }
                if reply.is_permanent() && self.config.protocol == Protocol::Smtp {
                    self.state = HsState::Helo;
                    return Ok(HandshakeStep::Send(command_out(Command::Helo(
                        &self.config.helo_domain,
                    ))?));
                }
                Err(reject(Phase::Ehlo, reply))
            }
            HsState::Helo => {
                if !reply.is_success() {
                    return Err(reject(Phase::Ehlo, reply));
                }
                self.caps = Some(Capabilities::from_ehlo(&Reply::new(
                    reply.code(),
                    &[reply.lines().first().map(String::as_str).unwrap_or("")],
                ))?);
                self.after_ehlo()
            }
            HsState::StartTls => {
                if reply.code() != 220 {
                    return Err(reject(Phase::StartTls, reply));
                }
                self.state = HsState::AwaitTls;
                Ok(HandshakeStep::StartTls)
            }
            HsState::AwaitTls => Err(PeerMisbehaved::DataAfterStartTls.into()),
            HsState::Auth => self.on_auth_reply(reply),
            HsState::AuthCancelled(err) => Err(SmtpError::Sasl(err)),
            HsState::Ready => Err(PeerMisbehaved::UnsolicitedReply.into()),
        }
    }

    /// The TLS handshake after STARTTLS succeeded: everything learnt before is forgotten and
    /// EHLO is sent again (RFC 3207 §4.2).
    pub fn tls_established(&mut self) -> Result<Outgoing, SmtpError> {
        if self.state != HsState::AwaitTls {
            return Err(PeerMisbehaved::UnsolicitedReply.into());
        }
        self.tls = true;
        self.caps = None;
        match self.send_ehlo()? {
            HandshakeStep::Send(out) => Ok(out),
            _ => Err(PeerMisbehaved::UnsolicitedReply.into()),
        }
    }

    fn send_ehlo(&mut self) -> Result<HandshakeStep, SmtpError> {
        self.state = HsState::Ehlo;
        let domain = &self.config.helo_domain;
        let cmd = match self.config.protocol {
            Protocol::Smtp => Command::Ehlo(domain),
            Protocol::Lmtp => Command::Lhlo(domain),
        };
        Ok(HandshakeStep::Send(command_out(cmd)?))
    }

    fn after_ehlo(&mut self) -> Result<HandshakeStep, SmtpError> {
        let caps = self.caps.clone().unwrap_or_default();
        if self.config.starttls && !self.tls {
            if !caps.starttls {
                return Err(SmtpError::StartTlsUnavailable);
            }
            self.state = HsState::StartTls;
            return Ok(HandshakeStep::Send(command_out(Command::StartTls)?));
        }
        let Some(auth) = self.config.auth.clone() else {
            self.state = HsState::Ready;
            return Ok(HandshakeStep::Ready);
        };
        let mechanism = choose_mechanism(&caps, auth.method, self.tls, auth.allow_plaintext)?;
        let mut sasl = SaslClient::new(mechanism, &auth.user, &auth.secret);
        if let Some((host, port)) = &auth.server {
            sasl = sasl.with_server(host, *port);
        }
        let initial = sasl.start().map(|ir| B64.encode(ir));
        self.sasl = Some(sasl);
        self.state = HsState::Auth;
        Ok(HandshakeStep::Send(auth_out(
            mechanism.name(),
            initial.as_deref(),
        )?))
    }

    fn on_auth_reply(&mut self, reply: Reply) -> Result<HandshakeStep, SmtpError> {
        let Some(sasl) = self.sasl.as_mut() else {
            return Err(PeerMisbehaved::UnsolicitedReply.into());
        };
        match reply.code() {
            235 => {
                sasl.finish(None).map_err(SmtpError::Sasl)?;
                self.state = HsState::Ready;
                Ok(HandshakeStep::Ready)
            }
            334 => {
                let text = reply.lines().first().map(String::as_str).unwrap_or("");
                let challenge = B64
                    .decode(text.trim())
                    .map_err(|_| PeerMisbehaved::BadAuthChallenge)?;
                match sasl.step(&challenge) {
                    Ok(answer) => {
                        self.state = HsState::Auth;
                        Ok(HandshakeStep::Send(answer_out(&answer)))
                    }
                    Err(err) => {
                        // RFC 4954 §4: "*" cancels; the server answers 501.
                        self.state = HsState::AuthCancelled(err);
                        Ok(HandshakeStep::Send(Outgoing::plain(b"*\r\n".to_vec())))
                    }
                }
            }
            _ => Err(reject(Phase::Auth, reply)),
        }
    }
}

fn reject(phase: Phase, reply: Reply) -> SmtpError {
    SmtpError::rejected(phase, reply, None)
}

/// Picks the AUTH mechanism as msmtp does, with the rule POP3 and IMAP use too
/// ([`sasl::choose`]): an explicit one is used as is (if offered); "auto" takes the strongest
/// offered. Plaintext-equivalent mechanisms need TLS unless allowed. The SMTP handshake has no
/// channel binding, so the -PLUS variants are never chosen automatically here.
pub fn choose_mechanism(
    caps: &Capabilities,
    method: AuthMethod,
    tls: bool,
    allow_plaintext: bool,
) -> Result<Mechanism, SmtpError> {
    let wanted = match method {
        AuthMethod::Mechanism(m) => Some(m),
        AuthMethod::Auto => None,
    };
    let cond = sasl::Conditions {
        cleartext_ok: tls || allow_plaintext,
        channel_binding: false,
    };
    sasl::choose(|m| caps.offers_auth(m.name()), wanted, cond).map_err(|e| match e {
        sasl::ChoiceError::Cleartext(mechanism) => SmtpError::PlaintextAuthRefused { mechanism },
        sasl::ChoiceError::NotOffered | sasl::ChoiceError::NoChannelBinding(_) => {
            SmtpError::AuthUnavailable {
                offered: caps.auth.clone(),
            }
        }
    })
}

/// One recipient with its DSN request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipient {
    pub address: String,
    pub notify: Option<Notify>,
}

impl Recipient {
    pub fn new(address: &str) -> Recipient {
        Recipient {
            address: address.to_string(),
            notify: None,
        }
    }
}

/// The envelope of one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Reverse path; empty for the null sender "<>".
    pub from: String,
    pub rcpts: Vec<Recipient>,
    pub ret: Option<DsnRet>,
    pub envid: Option<String>,
    /// The body has 8-bit bytes: declare BODY=8BITMIME when the server offers it.
    pub body_8bit: bool,
    /// Send to the accepted recipients even if some were rejected (sendmail semantics are
    /// all-or-nothing, which is the default).
    pub allow_partial: bool,
}

/// The outcome for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptStatus {
    Accepted(Reply),
    Rejected(Reply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientReport {
    pub address: String,
    /// For LMTP, the reply after the final "." (otherwise the RCPT reply).
    pub status: RcptStatus,
}

/// The result of a transaction that got at least one recipient the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    pub recipients: Vec<RecipientReport>,
    /// The reply to the final "." (LMTP: the last per-recipient reply).
    pub final_reply: Reply,
    /// Raw message bytes read from the caller (filled in by the session driver).
    pub message_bytes: u64,
}

impl SendReport {
    /// Recipients the server refused (only with `allow_partial`, or LMTP end-of-data failures).
    pub fn rejected(&self) -> impl Iterator<Item = &RecipientReport> {
        self.recipients
            .iter()
            .filter(|r| matches!(r.status, RcptStatus::Rejected(_)))
    }
}

/// What the driver does next during a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnStep {
    /// Write these bytes, then read the next reply.
    Send(Outgoing),
    /// Read the next reply (pipelined replies still due).
    Read,
    /// DATA was accepted: stream the dot-stuffed body and the final "." (in one write with the
    /// body's end), then read the next reply.
    SendBody,
    Done(SendReport),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Mail,
    Rcpt(usize),
    Data,
    EndOfData,
    /// LMTP: the reply after "." for this recipient.
    LmtpRcpt(usize),
}

/// One MAIL/RCPT/DATA transaction.
#[derive(Debug)]
pub struct Transaction {
    protocol: Protocol,
    pipelining: bool,
    addresses: Vec<String>,
    allow_partial: bool,
    /// Commands not yet written.
    queued: VecDeque<(Expect, Outgoing)>,
    /// Replies due, in order.
    in_flight: VecDeque<Expect>,
    mail_reply: Option<Reply>,
    rcpt: Vec<Option<RcptStatus>>,
    final_reply: Option<Reply>,
    /// A 354 arrived although we will not send the message: the only safe way out is to close
    /// the connection without the final ".".
    must_close: bool,
}

impl Transaction {
    /// Checks the envelope against the server's capabilities and returns the first write.
    pub fn start(
        protocol: Protocol,
        caps: &Capabilities,
        envelope: &Envelope,
        size_hint: Option<u64>,
    ) -> Result<(Transaction, Outgoing), SmtpError> {
        if envelope.rcpts.is_empty() {
            return Err(SmtpError::NoRecipients);
        }
        if let (Some(limit), Some(size)) = (caps.size_limit, size_hint)
            && size > limit
        {
            return Err(SmtpError::TooLarge { limit, size });
        }
        let wants_dsn = envelope.ret.is_some()
            || envelope.envid.is_some()
            || envelope.rcpts.iter().any(|r| r.notify.is_some());
        if wants_dsn && !caps.dsn {
            return Err(SmtpError::DsnUnavailable);
        }
        let utf8 = needs_smtputf8(&envelope.from)
            || envelope.rcpts.iter().any(|r| needs_smtputf8(&r.address));
        if utf8 && !caps.smtputf8 {
            return Err(SmtpError::SmtpUtf8Unavailable);
        }
        let params = MailParams {
            size: size_hint.filter(|_| caps.size_extension),
            body_8bit: envelope.body_8bit && caps.eight_bit_mime,
            smtputf8: utf8,
            ret: envelope.ret,
            envid: envelope.envid.clone(),
        };
        let mut queued = VecDeque::new();
        queued.push_back((
            Expect::Mail,
            command_out(Command::Mail(&envelope.from, &params))?,
        ));
        for (i, r) in envelope.rcpts.iter().enumerate() {
            queued.push_back((
                Expect::Rcpt(i),
                command_out(Command::Rcpt(&r.address, r.notify))?,
            ));
        }
        queued.push_back((Expect::Data, command_out(Command::Data)?));

        let mut txn = Transaction {
            protocol,
            pipelining: caps.pipelining,
            addresses: envelope.rcpts.iter().map(|r| r.address.clone()).collect(),
            allow_partial: envelope.allow_partial,
            queued,
            in_flight: VecDeque::new(),
            mail_reply: None,
            rcpt: vec![None; envelope.rcpts.len()],
            final_reply: None,
            must_close: false,
        };
        let first = txn.next_batch();
        Ok((txn, first))
    }

    /// Whether the connection is unusable after an error (see [`TxnStep::SendBody`]): the
    /// driver must close it without sending anything more.
    pub fn must_close(&self) -> bool {
        self.must_close
    }

    /// The next batch of commands: everything up to the pipeline limit, or one command.
    fn next_batch(&mut self) -> Outgoing {
        let limit = if self.pipelining { PIPELINE_LIMIT } else { 1 };
        let mut out = Outgoing::default();
        while self.in_flight.len() < limit {
            let Some((expect, cmd)) = self.queued.pop_front() else {
                break;
            };
            out.append(&cmd);
            self.in_flight.push_back(expect);
        }
        out
    }

    /// Feeds the next reply.
    pub fn on_reply(&mut self, reply: Reply) -> Result<TxnStep, SmtpError> {
        let Some(expect) = self.in_flight.pop_front() else {
            return Err(PeerMisbehaved::UnsolicitedReply.into());
        };
        match expect {
            Expect::Mail => self.mail_reply = Some(reply),
            Expect::Rcpt(i) => {
                let status = if reply.is_success() {
                    RcptStatus::Accepted(reply)
                } else {
                    RcptStatus::Rejected(reply)
                };
                if let Some(slot) = self.rcpt.get_mut(i) {
                    *slot = Some(status);
                }
            }
            Expect::Data => return self.on_data_reply(reply),
            Expect::EndOfData => {
                if !reply.is_success() {
                    return Err(reject(Phase::EndOfData, reply));
                }
                self.final_reply = Some(reply);
                return Ok(TxnStep::Done(self.report()));
            }
            Expect::LmtpRcpt(i) => {
                let status = if reply.is_success() {
                    RcptStatus::Accepted(reply.clone())
                } else {
                    RcptStatus::Rejected(reply.clone())
                };
                if let Some(slot) = self.rcpt.get_mut(i) {
                    *slot = Some(status);
                }
                self.final_reply = Some(reply);
                if self.in_flight.is_empty() {
                    return self.lmtp_done();
                }
                return Ok(TxnStep::Read);
            }
        }
        if !self.in_flight.is_empty() {
            return Ok(TxnStep::Read);
        }
        // A batch is complete and its replies are all in: the connection is in sync here.
        self.check_mail()?;
        if matches!(self.queued.front(), Some((Expect::Data, _))) {
            self.check_recipients()?;
        }
        Ok(TxnStep::Send(self.next_batch()))
    }

    fn on_data_reply(&mut self, reply: Reply) -> Result<TxnStep, SmtpError> {
        let go_ahead = reply.code() == 354;
        let verdict = self.check_mail().and_then(|()| self.check_recipients());
        if let Err(e) = verdict {
            self.must_close = go_ahead;
            return Err(e);
        }
        if !go_ahead {
            return Err(reject(Phase::Data, reply));
        }
        match self.protocol {
            Protocol::Smtp => self.in_flight.push_back(Expect::EndOfData),
            Protocol::Lmtp => {
                for (i, status) in self.rcpt.iter().enumerate() {
                    if matches!(status, Some(RcptStatus::Accepted(_))) {
                        self.in_flight.push_back(Expect::LmtpRcpt(i));
                    }
                }
            }
        }
        Ok(TxnStep::SendBody)
    }

    fn check_mail(&self) -> Result<(), SmtpError> {
        match &self.mail_reply {
            Some(r) if !r.is_success() => Err(reject(Phase::Mail, r.clone())),
            _ => Ok(()),
        }
    }

    /// Fails when no recipient was accepted, or any was refused without `allow_partial`.
    fn check_recipients(&self) -> Result<(), SmtpError> {
        let accepted = self
            .rcpt
            .iter()
            .filter(|s| matches!(s, Some(RcptStatus::Accepted(_))))
            .count();
        let rejected = self.rejections();
        if accepted == 0 || (!rejected.is_empty() && !self.allow_partial) {
            return Err(self
                .worst(Phase::Rcpt, rejected)
                .unwrap_or(SmtpError::PeerMisbehaved(PeerMisbehaved::UnexpectedReply {
                    phase: Phase::Rcpt,
                    code: 0,
                })));
        }
        Ok(())
    }

    fn rejections(&self) -> Vec<usize> {
        self.rcpt
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Some(RcptStatus::Rejected(_))))
            .map(|(i, _)| i)
            .collect()
    }

    /// The error for a set of refused recipients: temporary if any refusal was (trying again
    /// may get the message to all), else permanent; it names the first such recipient.
    fn worst(&self, phase: Phase, rejected: Vec<usize>) -> Option<SmtpError> {
        let reply_of = |i: usize| match self.rcpt.get(i) {
            Some(Some(RcptStatus::Rejected(r))) => Some(r.clone()),
            _ => None,
        };
        let pick = rejected
            .iter()
            .copied()
            .find(|&i| reply_of(i).is_some_and(|r| r.is_transient()))
            .or_else(|| rejected.first().copied())?;
        let reply = reply_of(pick)?;
        Some(SmtpError::rejected(
            phase,
            reply,
            self.addresses.get(pick).cloned(),
        ))
    }

    fn lmtp_done(&mut self) -> Result<TxnStep, SmtpError> {
        let delivered = self
            .rcpt
            .iter()
            .any(|s| matches!(s, Some(RcptStatus::Accepted(_))));
        if !delivered {
            let rejected = self.rejections();
            return Err(self
                .worst(Phase::EndOfData, rejected)
                .unwrap_or(SmtpError::NoRecipients));
        }
        Ok(TxnStep::Done(self.report()))
    }

    fn report(&self) -> SendReport {
        let recipients = self
            .addresses
            .iter()
            .zip(&self.rcpt)
            .filter_map(|(a, s)| {
                s.clone().map(|status| RecipientReport {
                    address: a.clone(),
                    status,
                })
            })
            .collect();
        SendReport {
            recipients,
            final_reply: self
                .final_reply
                .clone()
                .unwrap_or_else(|| Reply::new(250, &[""])),
            message_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(code: u16, text: &str) -> Reply {
        Reply::new(code, &[text])
    }

    fn caps(lines: &[&str]) -> Capabilities {
        let mut all = vec!["server.example"];
        all.extend_from_slice(lines);
        Capabilities::from_ehlo(&Reply::new(250, &all)).expect("valid EHLO reply")
    }

    fn hs(starttls: bool, tls_active: bool, auth: Option<AuthConfig>) -> Handshake {
        Handshake::new(HandshakeConfig {
            protocol: Protocol::Smtp,
            helo_domain: "client.example".into(),
            starttls,
            tls_active,
            auth,
        })
    }

    fn auth(method: AuthMethod, allow_plaintext: bool) -> Option<AuthConfig> {
        Some(AuthConfig {
            method,
            user: "alice".into(),
            secret: "alicepw".into(),
            allow_plaintext,
            server: None,
        })
    }

    fn sent(step: Result<HandshakeStep, SmtpError>) -> String {
        match step {
            Ok(HandshakeStep::Send(o)) => String::from_utf8_lossy(&o.bytes).into_owned(),
            other => format!("{other:?}"),
        }
    }

    fn ehlo_reply(lines: &[&str]) -> Reply {
        let mut all = vec!["server.example"];
        all.extend_from_slice(lines);
        Reply::new(250, &all)
    }

    #[test]
    fn starttls_then_auth_plain() {
        let mut h = hs(true, false, auth(AuthMethod::Auto, false));
        assert_eq!(sent(h.on_reply(r(220, "hi"))), "EHLO client.example\r\n");
        assert_eq!(
            sent(h.on_reply(ehlo_reply(&["STARTTLS", "AUTH PLAIN"]))),
            "STARTTLS\r\n"
        );
        assert_eq!(h.on_reply(r(220, "go ahead")), Ok(HandshakeStep::StartTls));
        let ehlo = h.tls_established().map(|o| o.bytes);
        assert_eq!(ehlo, Ok(b"EHLO client.example\r\n".to_vec()));
        assert!(h.capabilities().is_none());
        match h.on_reply(ehlo_reply(&["AUTH PLAIN LOGIN"])) {
            Ok(HandshakeStep::Send(o)) => {
                assert_eq!(o.bytes, b"AUTH PLAIN AGFsaWNlAGFsaWNlcHc=\r\n");
                assert_eq!(o.trace(), "AUTH PLAIN *");
            }
            other => panic!("{other:?}"),
        }
        assert!(h.in_auth());
        assert_eq!(h.on_reply(r(235, "2.7.0 ok")), Ok(HandshakeStep::Ready));
    }

    #[test]
    fn starttls_not_offered_sends_no_credentials() {
        let mut h = hs(true, false, auth(AuthMethod::Auto, true));
        h.on_reply(r(220, "hi")).ok();
        assert_eq!(
            h.on_reply(ehlo_reply(&["AUTH PLAIN"])),
            Err(SmtpError::StartTlsUnavailable)
        );
    }

    #[test]
    fn injected_reply_after_starttls_go_ahead_is_refused() {
        let mut h = hs(true, false, None);
        h.on_reply(r(220, "hi")).ok();
        h.on_reply(ehlo_reply(&["STARTTLS"])).ok();
        assert_eq!(h.on_reply(r(220, "go")), Ok(HandshakeStep::StartTls));
        assert_eq!(
            h.on_reply(r(250, "INJECTED")),
            Err(SmtpError::PeerMisbehaved(PeerMisbehaved::DataAfterStartTls))
        );
    }

    #[test]
    fn helo_fallback_for_smtp_only() {
        let mut h = hs(false, false, None);
        h.on_reply(r(220, "hi")).ok();
        assert_eq!(
            sent(h.on_reply(r(502, "no EHLO"))),
            "HELO client.example\r\n"
        );
        assert_eq!(h.on_reply(r(250, "hello")), Ok(HandshakeStep::Ready));

        let mut l = Handshake::new(HandshakeConfig {
            protocol: Protocol::Lmtp,
            helo_domain: "c".into(),
            starttls: false,
            tls_active: false,
            auth: None,
        });
        assert_eq!(sent(l.on_reply(r(220, "lmtp"))), "LHLO c\r\n");
        assert!(matches!(
            l.on_reply(r(500, "no")),
            Err(SmtpError::Permanent {
                phase: Phase::Ehlo,
                ..
            })
        ));
    }

    #[test]
    fn greeting_and_ehlo_rejections() {
        let mut h = hs(false, false, None);
        assert!(matches!(
            h.on_reply(r(421, "busy")),
            Err(SmtpError::Transient {
                phase: Phase::Greeting,
                ..
            })
        ));
        let mut h = hs(false, false, None);
        assert!(matches!(
            h.on_reply(r(554, "go away")),
            Err(SmtpError::Permanent {
                phase: Phase::Greeting,
                ..
            })
        ));
        let mut h = hs(false, false, None);
        h.on_reply(r(220, "hi")).ok();
        assert!(matches!(
            h.on_reply(r(421, "closing")),
            Err(SmtpError::Transient {
                phase: Phase::Ehlo,
                ..
            })
        ));
    }

    #[test]
    fn mechanism_choice() {
        use AuthMethod::{Auto, Mechanism as M};
        let all = caps(&["AUTH LOGIN PLAIN CRAM-MD5 SCRAM-SHA-256 XOAUTH2"]);
        let plain_only = caps(&["AUTH PLAIN LOGIN"]);
        let none = caps(&[]);
        type Case<'a> = (
            &'a Capabilities,
            AuthMethod,
            bool,
            bool,
            Result<Mechanism, SmtpError>,
        );
        let table: Vec<Case> = vec![
            (&all, Auto, true, false, Ok(Mechanism::ScramSha256)),
            (&all, Auto, false, false, Ok(Mechanism::ScramSha256)),
            (&plain_only, Auto, true, false, Ok(Mechanism::Plain)),
            (
                &plain_only,
                Auto,
                false,
                false,
                Err(SmtpError::PlaintextAuthRefused {
                    mechanism: Mechanism::Plain,
                }),
            ),
            (&plain_only, Auto, false, true, Ok(Mechanism::Plain)),
            (&all, M(Mechanism::Login), true, false, Ok(Mechanism::Login)),
            (
                &all,
                M(Mechanism::XOAuth2),
                true,
                false,
                Ok(Mechanism::XOAuth2),
            ),
            (
                &all,
                M(Mechanism::XOAuth2),
                false,
                false,
                Err(SmtpError::PlaintextAuthRefused {
                    mechanism: Mechanism::XOAuth2,
                }),
            ),
            (
                &plain_only,
                M(Mechanism::CramMd5),
                true,
                false,
                Err(SmtpError::AuthUnavailable {
                    offered: vec!["PLAIN".into(), "LOGIN".into()],
                }),
            ),
            (
                &none,
                Auto,
                true,
                false,
                Err(SmtpError::AuthUnavailable { offered: vec![] }),
            ),
        ];
        for (c, method, tls, allow, expected) in table {
            assert_eq!(
                choose_mechanism(c, method, tls, allow),
                expected,
                "{method:?} tls={tls} allow={allow} {:?}",
                c.auth
            );
        }
        // Only OAuth offered: never chosen automatically.
        assert!(matches!(
            choose_mechanism(&caps(&["AUTH XOAUTH2"]), Auto, true, true),
            Err(SmtpError::AuthUnavailable { .. })
        ));
    }

    #[test]
    fn login_exchange_is_redacted_and_bad_challenge_fails() {
        let mut h = hs(
            false,
            true,
            auth(AuthMethod::Mechanism(Mechanism::Login), false),
        );
        h.on_reply(r(220, "hi")).ok();
        match h.on_reply(ehlo_reply(&["AUTH LOGIN"])) {
            Ok(HandshakeStep::Send(o)) => assert_eq!(o.trace(), "AUTH LOGIN"),
            other => panic!("{other:?}"),
        }
        match h.on_reply(r(334, "VXNlcm5hbWU6")) {
            Ok(HandshakeStep::Send(o)) => {
                assert_eq!(o.bytes, b"YWxpY2U=\r\n");
                assert_eq!(o.trace(), "*");
            }
            other => panic!("{other:?}"),
        }
        match h.on_reply(r(334, "UGFzc3dvcmQ6")) {
            Ok(HandshakeStep::Send(o)) => assert_eq!(o.bytes, b"YWxpY2Vwdw==\r\n"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            h.on_reply(r(535, "5.7.8 bad")),
            Err(SmtpError::Permanent {
                phase: Phase::Auth,
                ..
            })
        ));

        let mut h = hs(
            false,
            true,
            auth(AuthMethod::Mechanism(Mechanism::Login), false),
        );
        h.on_reply(r(220, "hi")).ok();
        h.on_reply(ehlo_reply(&["AUTH LOGIN"])).ok();
        assert_eq!(
            h.on_reply(r(334, "!!!not base64")),
            Err(SmtpError::PeerMisbehaved(PeerMisbehaved::BadAuthChallenge))
        );
    }

    #[test]
    fn scram_failure_cancels_with_star() {
        let mut h = hs(false, true, auth(AuthMethod::Auto, false));
        h.on_reply(r(220, "hi")).ok();
        h.on_reply(ehlo_reply(&["AUTH SCRAM-SHA-256"])).ok();
        // A server-first whose nonce does not extend ours.
        let bad = B64.encode("r=evil,s=AAAA,i=4096");
        assert_eq!(sent(h.on_reply(r(334, &bad))), "*\r\n");
        assert!(matches!(
            h.on_reply(r(501, "cancelled")),
            Err(SmtpError::Sasl(_))
        ));
        // Success claimed without the server signature.
        let mut h = hs(false, true, auth(AuthMethod::Auto, false));
        h.on_reply(r(220, "hi")).ok();
        h.on_reply(ehlo_reply(&["AUTH SCRAM-SHA-256"])).ok();
        assert!(matches!(h.on_reply(r(235, "ok")), Err(SmtpError::Sasl(_))));
    }

    fn env(rcpts: &[&str]) -> Envelope {
        Envelope {
            from: "me@example.org".into(),
            rcpts: rcpts.iter().map(|a| Recipient::new(a)).collect(),
            ..Envelope::default()
        }
    }

    fn text(o: &Outgoing) -> String {
        String::from_utf8_lossy(&o.bytes).into_owned()
    }

    #[test]
    fn pipelined_transaction() {
        let c = caps(&["PIPELINING", "SIZE 1000", "8BITMIME"]);
        let mut e = env(&["a@x", "b@x"]);
        e.body_8bit = true;
        let (mut t, first) = match Transaction::start(Protocol::Smtp, &c, &e, Some(10)) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            text(&first),
            "MAIL FROM:<me@example.org> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
        );
        assert_eq!(t.on_reply(r(250, "ok")), Ok(TxnStep::Read));
        assert_eq!(t.on_reply(r(250, "ok")), Ok(TxnStep::Read));
        assert_eq!(t.on_reply(r(250, "ok")), Ok(TxnStep::Read));
        assert_eq!(t.on_reply(r(354, "go")), Ok(TxnStep::SendBody));
        match t.on_reply(r(250, "queued as X")) {
            Ok(TxnStep::Done(rep)) => {
                assert_eq!(rep.recipients.len(), 2);
                assert_eq!(rep.final_reply, r(250, "queued as X"));
                assert_eq!(rep.rejected().count(), 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pipelined_rcpt_rejection_after_go_ahead_means_close() {
        let c = caps(&["PIPELINING"]);
        let (mut t, _) = match Transaction::start(Protocol::Smtp, &c, &env(&["a@x", "b@x"]), None) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        t.on_reply(r(250, "ok")).ok();
        t.on_reply(r(250, "ok")).ok();
        t.on_reply(r(550, "5.1.1 no such user")).ok();
        let err = t.on_reply(r(354, "go"));
        assert!(matches!(
            err,
            Err(SmtpError::Permanent { phase: Phase::Rcpt, recipient: Some(ref a), .. }) if a == "b@x"
        ));
        assert!(t.must_close());
    }

    #[test]
    fn sequential_transaction_and_rejections() {
        let c = caps(&[]);
        let (mut t, first) =
            match Transaction::start(Protocol::Smtp, &c, &env(&["a@x", "b@x"]), Some(5)) {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            };
        // No SIZE extension: no SIZE parameter.
        assert_eq!(text(&first), "MAIL FROM:<me@example.org>\r\n");
        match t.on_reply(r(250, "ok")) {
            Ok(TxnStep::Send(o)) => assert_eq!(text(&o), "RCPT TO:<a@x>\r\n"),
            other => panic!("{other:?}"),
        }
        match t.on_reply(r(451, "4.3.0 later")) {
            Ok(TxnStep::Send(o)) => assert_eq!(text(&o), "RCPT TO:<b@x>\r\n"),
            other => panic!("{other:?}"),
        }
        let err = t.on_reply(r(250, "ok"));
        assert!(matches!(
            err,
            Err(SmtpError::Transient {
                phase: Phase::Rcpt,
                ..
            })
        ));
        assert!(!t.must_close());

        // MAIL rejected.
        let (mut t, _) = match Transaction::start(Protocol::Smtp, &c, &env(&["a@x"]), None) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert!(matches!(
            t.on_reply(r(553, "bad sender")),
            Err(SmtpError::Permanent {
                phase: Phase::Mail,
                ..
            })
        ));

        // DATA and end-of-data rejections.
        let (mut t, _) = match Transaction::start(Protocol::Smtp, &c, &env(&["a@x"]), None) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        t.on_reply(r(250, "ok")).ok();
        match t.on_reply(r(250, "ok")) {
            Ok(TxnStep::Send(o)) => assert_eq!(text(&o), "DATA\r\n"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            t.on_reply(r(451, "later")),
            Err(SmtpError::Transient {
                phase: Phase::Data,
                ..
            })
        ));
    }

    #[test]
    fn partial_acceptance_when_allowed() {
        let c = caps(&["PIPELINING"]);
        let mut e = env(&["a@x", "b@x"]);
        e.allow_partial = true;
        let (mut t, _) = match Transaction::start(Protocol::Smtp, &c, &e, None) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        t.on_reply(r(250, "ok")).ok();
        t.on_reply(r(550, "no")).ok();
        t.on_reply(r(250, "ok")).ok();
        assert_eq!(t.on_reply(r(354, "go")), Ok(TxnStep::SendBody));
        match t.on_reply(r(250, "queued")) {
            Ok(TxnStep::Done(rep)) => {
                let rejected: Vec<&str> = rep.rejected().map(|r| r.address.as_str()).collect();
                assert_eq!(rejected, vec!["a@x"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lmtp_per_recipient_replies() {
        let c = caps(&["PIPELINING"]);
        let mut e = env(&["alice", "nobody", "bob"]);
        e.allow_partial = true;
        let (mut t, _) = match Transaction::start(Protocol::Lmtp, &c, &e, None) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        t.on_reply(r(250, "ok")).ok();
        t.on_reply(r(250, "ok")).ok();
        t.on_reply(r(550, "5.1.1 unknown")).ok();
        t.on_reply(r(250, "ok")).ok();
        assert_eq!(t.on_reply(r(354, "go")), Ok(TxnStep::SendBody));
        assert_eq!(t.on_reply(r(250, "alice saved")), Ok(TxnStep::Read));
        match t.on_reply(r(452, "bob over quota")) {
            Ok(TxnStep::Done(rep)) => {
                let statuses: Vec<(&str, u16)> = rep
                    .recipients
                    .iter()
                    .map(|r| {
                        let code = match &r.status {
                            RcptStatus::Accepted(x) | RcptStatus::Rejected(x) => x.code(),
                        };
                        (r.address.as_str(), code)
                    })
                    .collect();
                assert_eq!(
                    statuses,
                    vec![("alice", 250), ("nobody", 550), ("bob", 452)]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals_before_mail() {
        let limited = caps(&["SIZE 100"]);
        assert!(matches!(
            Transaction::start(Protocol::Smtp, &limited, &env(&["a@x"]), Some(101)),
            Err(SmtpError::TooLarge {
                limit: 100,
                size: 101
            })
        ));
        let mut dsn = env(&["a@x"]);
        dsn.ret = Some(DsnRet::Full);
        assert!(matches!(
            Transaction::start(Protocol::Smtp, &limited, &dsn, None),
            Err(SmtpError::DsnUnavailable)
        ));
        assert!(matches!(
            Transaction::start(Protocol::Smtp, &limited, &env(&["j\u{f6}rg@x"]), None),
            Err(SmtpError::SmtpUtf8Unavailable)
        ));
        assert!(matches!(
            Transaction::start(Protocol::Smtp, &limited, &env(&[]), None),
            Err(SmtpError::NoRecipients)
        ));
        assert!(matches!(
            Transaction::start(Protocol::Smtp, &limited, &env(&["a@x\r\nDATA"]), None),
            Err(SmtpError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn large_recipient_lists_are_batched() {
        let c = caps(&["PIPELINING"]);
        let addrs: Vec<String> = (0..150).map(|i| format!("r{i}@x")).collect();
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let (mut t, first) = match Transaction::start(Protocol::Smtp, &c, &env(&refs), None) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            first.bytes.split(|&b| b == b'\n').count() - 1,
            PIPELINE_LIMIT
        );
        for _ in 0..PIPELINE_LIMIT - 1 {
            assert_eq!(t.on_reply(r(250, "ok")), Ok(TxnStep::Read));
        }
        match t.on_reply(r(250, "ok")) {
            Ok(TxnStep::Send(o)) => {
                assert_eq!(o.bytes.split(|&b| b == b'\n').count() - 1, 52);
                assert!(o.bytes.ends_with(b"DATA\r\n"));
            }
            other => panic!("{other:?}"),
        }
    }
}
