//! The SMTP/LMTP target: forwards fetched messages to a local MTA (fetchmail's default
//! delivery: SMTP to port 25 of localhost) or an LMTP server, reusing one session for many messages and
//! reconnecting after `batchlimit` messages. 4xx replies are transient, 5xx permanent; with
//! LMTP (RFC 2033 §4.2) every recipient's reply after the final "." counts. A message for several
//! recipients that some were served and others refused is a [`DeliverError::Partial`] naming the
//! served ones, so it is retried for the others only.

use std::io::Read;

use crate::net::{ConnectOptions, Endpoint, TlsMode, TlsOptions};
use crate::proto::smtp::{Envelope, Protocol, RcptStatus, Recipient};
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
                // With several recipients (multidrop), each refusal is sorted: an antispam code
                // means that copy is discarded as spam (a whole message: every recipient
                // refused so), any other refusal means that recipient did not get it. The
                // message is then not delivered: the next attempt goes to the recipients not
                // served only (the others would get a second copy), and a refusal for good is
                // handled as for a message with one recipient (kept with softbounce, reported
                // without it), never counted delivered.
                let mut served = Vec::new();
                let mut spam = Vec::new();
                let mut refused = Vec::new();
                let mut transient = false;
                for r in &report.recipients {
                    match &r.status {
                        RcptStatus::Accepted(_) => served.push(r.address.clone()),
                        RcptStatus::Rejected(reply) if self.antispam.contains(&reply.code()) => {
                            spam.push((r.address.as_str(), reply));
                        }
                        RcptStatus::Rejected(reply) => {
                            transient |= reply.is_transient();
                            refused.push(format!("{}: {reply}", r.address));
                        }
                    }
                }
                if refused.is_empty() {
                    if served.is_empty()
                        && let Some((_, reply)) = spam.first()
                    {
                        return Ok(self.discarded(what, &reply.to_string()));
                    }
                    for (address, reply) in &spam {
                        log::warn!(
                            "{what} refused the copy for {address} as spam ({reply}); it is \
                             discarded (antispam), the other recipients got the message"
                        );
                    }
                    return Ok(Receipt {
                        location: what,
                        path: None,
                        bytes: report.message_bytes,
                    });
                }
                let reason = format!("{what} refused {}", refused.join("; "));
                if served.is_empty() && spam.is_empty() {
                    return Err(if transient {
                        DeliverError::transient(reason)
                    } else {
                        DeliverError::permanent(reason)
                    });
                }
                let mut done = Vec::new();
                if !served.is_empty() {
                    done.push(format!("the message went to {}", served.join(", ")));
                }
                if !spam.is_empty() {
                    let names: Vec<&str> = spam.iter().map(|(address, _)| *address).collect();
                    done.push(format!("discarded as spam for {}", names.join(", ")));
                }
                if transient {
                    done.push("it will go to the others at the next poll".to_owned());
                }
                served.extend(spam.iter().map(|(address, _)| (*address).to_owned()));
                Err(DeliverError::Partial {
                    reason: format!("{reason} ({})", done.join("; ")),
                    served,
                    transient,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// An LMTP listener for one session that accepts every RCPT and answers after the data, per
    /// recipient in order, with `replies`.
    fn scripted_lmtp(replies: &'static [&'static str]) -> Endpoint {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let Ok((mut sock, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(sock.try_clone().unwrap());
            let _ = sock.write_all(b"220 scripted LMTP\r\n");
            let mut line = String::new();
            let mut in_data = false;
            loop {
                line.clear();
                if matches!(reader.read_line(&mut line), Ok(0) | Err(_)) {
                    return;
                }
                let reply: String = if in_data {
                    if line != ".\r\n" {
                        continue;
                    }
                    in_data = false;
                    replies.iter().map(|r| format!("{r}\r\n")).collect()
                } else if line.starts_with("LHLO") {
                    "250-scripted\r\n250 PIPELINING\r\n".into()
                } else if line.starts_with("DATA") {
                    in_data = true;
                    "354 go ahead\r\n".into()
                } else if line.starts_with("QUIT") {
                    let _ = sock.write_all(b"221 bye\r\n");
                    return;
                } else {
                    "250 2.0.0 ok\r\n".into()
                };
                if sock.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        });
        Endpoint {
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// Delivers a small message to alice, bob and carol at example.org through a listener
    /// answering `replies` after the data, with 554 as the antispam code.
    fn deliver_to_three(replies: &'static [&'static str]) -> Result<Receipt, DeliverError> {
        let mut target = SmtpTarget::new(scripted_lmtp(replies), Protocol::Lmtp, "localhost")
            .with_antispam(vec![554]);
        let info = MessageInfo {
            sender: "a@x.org".into(),
            recipient: "alice@example.org".into(),
            also: vec!["bob@example.org".into(), "carol@example.org".into()],
        };
        let result = target.deliver(&mut &b"Subject: t\r\n\r\nbody\r\n"[..], &info);
        target.close();
        result
    }

    #[test]
    fn a_recipient_refused_for_good_makes_a_permanent_partial_delivery() {
        // Counted delivered once, with a warning that did not even give the reply: bob's copy
        // was lost without the poll failing.
        let e = deliver_to_three(&[
            "250 2.0.0 alice ok",
            "550 5.1.1 bob unknown",
            "250 2.0.0 carol ok",
        ])
        .expect_err("bob did not get it");
        assert!(!e.is_transient(), "{e}");
        let DeliverError::Partial { served, reason, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(served, &["alice@example.org", "carol@example.org"]);
        assert!(
            reason.contains("refused bob@example.org: 550 5.1.1 bob unknown")
                && reason.contains("went to alice@example.org, carol@example.org")
                && !reason.contains("next poll"),
            "{reason}"
        );
    }

    #[test]
    fn a_temporary_refusal_beside_one_for_good_retries_both() {
        // The recipient refused for good is not counted served: with softbounce it is retried
        // like a message with one recipient (it was dropped with a warning).
        let e = deliver_to_three(&[
            "250 2.0.0 alice ok",
            "550 5.1.1 bob unknown",
            "451 4.2.0 carol busy",
        ])
        .expect_err("bob and carol did not get it");
        assert!(e.is_transient(), "{e}");
        let DeliverError::Partial { served, reason, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(served, &["alice@example.org"]);
        assert!(
            reason.contains("bob@example.org: 550 5.1.1 bob unknown")
                && reason.contains("carol@example.org: 451 4.2.0 carol busy")
                && reason.contains("it will go to the others at the next poll"),
            "{reason}"
        );
    }

    #[test]
    fn antispam_codes_discard_only_their_copies() {
        // One recipient's spam refusal: that copy is discarded, the message delivered.
        let ok = deliver_to_three(&["250 2.0.0 alice ok", "554 5.7.1 spam", "250 2.0.0 carol"])
            .expect("delivered to the others, bob's copy discarded");
        assert!(!ok.location.contains("discarded"), "{}", ok.location);
        // Every recipient: the message is discarded as spam.
        let all = deliver_to_three(&["554 5.7.1 spam", "554 5.7.1 spam", "554 5.7.1 spam"])
            .expect("discarded");
        assert!(
            all.location.contains("discarded as spam"),
            "{}",
            all.location
        );
        // Spam for one, refused for good for another: the spam copy counts as served.
        let e = deliver_to_three(&["250 2.0.0 alice ok", "554 5.7.1 spam", "550 5.1.1 carol"])
            .expect_err("carol did not get it");
        let DeliverError::Partial { served, reason, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(served, &["alice@example.org", "bob@example.org"]);
        assert!(
            reason.contains("went to alice@example.org; discarded as spam for bob@example.org"),
            "{reason}"
        );
        // Every recipient refused for good: a permanent failure.
        let e = deliver_to_three(&["550 5.1.1 a", "550 5.1.1 b", "550 5.1.1 c"])
            .expect_err("nobody got it");
        assert!(matches!(e, DeliverError::Permanent { .. }), "{e:?}");
    }
}
