//! The SMTP/LMTP target: forwards fetched messages to a local MTA (fetchmail's default
//! delivery: SMTP to port 25 of localhost) or an LMTP server, reusing one session for many messages and
//! reconnecting after `batchlimit` messages. 4xx replies are transient, 5xx permanent; with
//! LMTP (RFC 2033 §4.2) every recipient's reply after the final "." counts. A message for several
//! recipients that some were served and others refused temporarily is a
//! [`DeliverError::Partial`] naming the served ones, so it is retried for the others only.

use std::io::Read;

use crate::net::{ConnectOptions, Endpoint, TlsMode, TlsOptions};
use crate::proto::smtp::{Envelope, Protocol, RcptStatus, Recipient, Reply};
use crate::session::smtp::{SmtpClient, SmtpSettings};

use super::{Deliver, DeliverError, MessageInfo, Receipt};

/// Forwarding to a local MTA over SMTP or LMTP.
pub struct SmtpTarget {
    settings: SmtpSettings,
    client: Option<SmtpClient>,
    /// Messages sent on the current session.
    sent_on_session: u64,
    /// Reconnect after this many messages (0: never).
    batchlimit: u64,
    /// fetchmail's smtphost hunt list: where each new session is tried in turn, first to
    /// last; the first that answers takes the session.
    hosts: Vec<Endpoint>,
    /// fetchmail's `antispam`: reply codes that mean "spam, discard" at MAIL FROM, RCPT TO
    /// or the end of the data; such a message counts as delivered without being delivered.
    antispam: Vec<u16>,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("endpoint", &self.settings.endpoint)
            .field("protocol", &self.settings.protocol)
            .finish()
    }
}

impl SmtpTarget {
    /// A target speaking `protocol` to `endpoint` without TLS or AUTH (a local listener).
    pub fn new(endpoint: Endpoint, protocol: Protocol, helo_domain: impl Into<String>) -> Self {
        let endpoint_copy = endpoint.clone();
        SmtpTarget {
            settings: SmtpSettings {
                endpoint,
                tls_mode: TlsMode::Off,
                tls: TlsOptions::default(),
                connect: ConnectOptions::default(),
                helo_domain: helo_domain.into(),
                protocol,
                auth: None,
            },
            hosts: vec![endpoint_copy],
            antispam: Vec::new(),
            client: None,
            sent_on_session: 0,
            batchlimit: 0,
        }
    }

    /// Reply codes that mean the listener took the message for spam (fetchmail's `antispam`).
    pub fn with_antispam(mut self, codes: Vec<u16>) -> Self {
        self.antispam = codes;
        self
    }

    /// The receipt of a message discarded as spam: the listener's refusal was one of the
    /// `antispam` codes, so it is deleted on the server, as fetchmail does, and never
    /// delivered.
    fn discarded(&self, what: String, refusal: &str) -> Receipt {
        log::warn!("{what} refused the message as spam ({refusal}); it is discarded (antispam)");
        Receipt {
            location: format!("{what} (discarded as spam: {refusal})"),
            path: None,
            bytes: 0,
        }
    }

    /// Hosts to try, in order, when the ones before cannot be reached or refuse the session
    /// (fetchmail's `smtphost` list).
    pub fn with_fallbacks(mut self, more: Vec<Endpoint>) -> Self {
        self.hosts.truncate(1);
        self.hosts.extend(more);
        self
    }

    /// Connects with these socket parameters (fetchmail's `plugout`: a command's stdin/stdout
    /// as the connection).
    pub fn with_connect(mut self, connect: ConnectOptions) -> Self {
        self.settings.connect = connect;
        self
    }

    /// Reconnects after `n` messages (fetchmail's `batchlimit`; 0 means no limit).
    pub fn with_batchlimit(mut self, n: u64) -> Self {
        self.batchlimit = n;
        self
    }

    fn describe(&self) -> String {
        let proto = match self.settings.protocol {
            Protocol::Smtp => "smtp",
            Protocol::Lmtp => "lmtp",
        };
        format!(
            "{proto}://{}:{}",
            self.settings.endpoint.host, self.settings.endpoint.port
        )
    }

    fn client(&mut self) -> Result<&mut SmtpClient, DeliverError> {
        if self.batchlimit > 0 && self.sent_on_session >= self.batchlimit {
            self.close();
        }
        if self.client.is_none() {
            let mut failures = Vec::new();
            for ep in self.hosts.clone() {
                self.settings.endpoint = ep;
                match SmtpClient::connect(&self.settings) {
                    Ok(c) => {
                        self.client = Some(c);
                        break;
                    }
                    Err(e) => {
                        let failed = format!("cannot reach {}: {}", self.describe(), e.chain());
                        if self.hosts.len() > 1 {
                            log::warn!("{failed}; trying the next smtphost");
                        }
                        failures.push(failed);
                    }
                }
            }
            if self.client.is_none() {
                return Err(DeliverError::transient(failures.join("; ")));
            }
            self.sent_on_session = 0;
        }
        self.client
            .as_mut()
            .ok_or_else(|| DeliverError::transient("smtp session vanished"))
    }

    /// Ends the session politely (QUIT).
    pub fn close(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.quit();
        }
    }
}

impl Drop for SmtpTarget {
    fn drop(&mut self) {
        self.close();
    }
}

impl Deliver for SmtpTarget {
    fn deliver(&mut self, msg: &mut dyn Read, info: &MessageInfo) -> Result<Receipt, DeliverError> {
        // Connected first: with an smtphost list, the host that took the session is named.
        self.client()?;
        let what = self.describe();
        let envelope = Envelope {
            from: info.sender.clone(),
            rcpts: std::iter::once(&info.recipient)
                .chain(&info.also)
                .map(|r| Recipient::new(r))
                .collect(),
            // We cannot know without reading ahead; 8BITMIME servers accept both.
            body_8bit: true,
            // A multidrop copy goes to the recipients that accept it; the refused ones are
            // sorted out below from the report.
            allow_partial: true,
            ..Envelope::default()
        };
        let client = self.client()?;
        let result = client.send(&envelope, msg, None);
        match result {
            Ok(report) => {
                self.sent_on_session += 1;
                // With several recipients (multidrop), permanent refusals of some are reported
                // and the copy the others accepted counts; a temporary refusal of any keeps the
                // message on the server for the next poll (as fetchmail's softbounce).
                let rejected: Vec<(&str, &Reply)> = report
                    .recipients
                    .iter()
                    .filter_map(|r| match &r.status {
                        RcptStatus::Rejected(reply) => Some((r.address.as_str(), reply)),
                        _ => None,
                    })
                    .collect();
                let transient = rejected.iter().find(|(_, reply)| reply.is_transient());
                if let Some((address, reply)) = transient {
                    // The recipients served (accepted, or refused for good) are reported, so
                    // the next attempt goes to the temporarily refused ones only: sending the
                    // message again to all of them would duplicate it for the others.
                    let served: Vec<String> = report
                        .recipients
                        .iter()
                        .filter(|r| match &r.status {
                            RcptStatus::Accepted(_) => true,
                            RcptStatus::Rejected(reply) => !reply.is_transient(),
                        })
                        .map(|r| r.address.clone())
                        .collect();
                    let reason = format!("{what} refused {address}: {reply}");
                    if served.is_empty() {
                        return Err(DeliverError::transient(reason));
                    }
                    for (address, reply) in rejected.iter().filter(|(_, r)| !r.is_transient()) {
                        log::warn!("{what} refused {address}: {reply}");
                    }
                    return Err(DeliverError::Partial {
                        reason: format!(
                            "{reason} (the message went to {}; it will go to the others at the next poll)",
                            served.join(", ")
                        ),
                        served,
                    });
                }
                if !rejected.is_empty()
                    && rejected.len() == report.recipients.len()
                    && rejected
                        .iter()
                        .all(|(_, reply)| self.antispam.contains(&reply.code()))
                {
                    let shown = rejected[0].1.to_string();
                    return Ok(self.discarded(what, &shown));
                }
                if rejected.len() == report.recipients.len()
                    && let Some((address, reply)) = rejected.first()
                {
                    return Err(DeliverError::permanent(format!(
                        "{what} refused {address}: {reply}"
                    )));
                }
                for (address, _) in &rejected {
                    log::warn!("{what} refused {address}; the other recipients got the message");
                }
                Ok(Receipt {
                    location: what,
                    path: None,
                    bytes: report.message_bytes,
                })
            }
            Err(e) => {
                let reason = format!("{what}: {}", e.chain());
                let refusal = client.last_refusal();
                let spam = refusal.is_some_and(|(phase, code)| {
                    use crate::proto::smtp::Phase;
                    matches!(phase, Phase::Mail | Phase::Rcpt | Phase::EndOfData)
                        && self.antispam.contains(&code)
                });
                // The session is dropped after any failed transaction; the next message
                // reconnects. A refusal can leave it unusable (a pipelined DATA that got its
                // 354 is abandoned by closing the connection), and a reconnect after a failure
                // costs little. A session that broke or stopped answering gets no QUIT.
                if matches!(
                    e.kind(),
                    crate::ErrorKind::NetworkIo
                        | crate::ErrorKind::Timeout
                        | crate::ErrorKind::Protocol
                ) {
                    self.client = None;
                } else {
                    self.close();
                }
                if spam {
                    Ok(self.discarded(what, &e.chain()))
                } else if e.kind() == crate::ErrorKind::RejectedPermanent {
                    Err(DeliverError::permanent(reason))
                } else {
                    Err(DeliverError::transient(reason))
                }
            }
        }
    }
}
