//! SMTP and LMTP client protocol, sans-I/O (RFC 5321, LMTP RFC 2033, STARTTLS RFC 3207, AUTH
//! RFC 4954, PIPELINING RFC 2920): reply parser, EHLO capabilities, command encoder, and the
//! client machines for the session handshake and for one mail transaction. The typed
//! [`SmtpError`] lives here, with its mapping to the crate error.

pub mod caps;
pub mod client;
pub mod command;
pub mod reply;

use std::fmt;

pub use caps::Capabilities;
pub use client::{
    AuthConfig, AuthMethod, Envelope, Handshake, HandshakeConfig, HandshakeStep, Outgoing,
    Protocol, RcptStatus, Recipient, RecipientReport, SendReport, Transaction, TxnStep,
    choose_mechanism,
};
pub use command::{Command, DsnRet, MailParams, Notify};
pub use reply::{EnhancedCode, Reply, ReplyParser};

use crate::error::{Error, ErrorKind};
use crate::proto::sasl::{Mechanism, SaslError};

/// Where in the session a reply came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    Reset,
    Quit,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Greeting => "greeting",
            Phase::Ehlo => "EHLO",
            Phase::StartTls => "STARTTLS",
            Phase::Auth => "AUTH",
            Phase::Mail => "MAIL FROM",
            Phase::Rcpt => "RCPT TO",
            Phase::Data => "DATA",
            Phase::EndOfData => "end of data",
            Phase::Reset => "RSET",
            Phase::Quit => "QUIT",
        })
    }
}

/// Ways the server broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerMisbehaved {
    #[error("malformed reply")]
    MalformedReply,
    #[error("reply line longer than {limit} bytes")]
    ReplyLineTooLong { limit: usize },
    #[error("reply with more than {limit} lines")]
    TooManyReplyLines { limit: usize },
    #[error("EHLO reply names more than {limit} AUTH mechanisms")]
    TooManyAuthMechanisms { limit: usize },
    #[error("multi-line reply with differing codes")]
    InconsistentReplyCode,
    #[error("unexpected reply code {code} to {phase}")]
    UnexpectedReply { phase: Phase, code: u16 },
    #[error("data sent after the STARTTLS go-ahead, before the TLS handshake")]
    DataAfterStartTls,
    #[error("reply sent before the command it answers")]
    UnsolicitedReply,
    #[error("AUTH challenge is not valid base64")]
    BadAuthChallenge,
    #[error("connection closed in the middle of the session")]
    ClosedEarly,
}

/// An SMTP session failure, typed so callers can tell retryable from final.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpError {
    /// A 4xx reply.
    #[error(
        "{}temporarily rejected at {phase}: {reply}",
        recipient_prefix(recipient)
    )]
    Transient {
        phase: Phase,
        reply: Reply,
        recipient: Option<String>,
    },
    /// A 5xx reply.
    #[error("{}rejected at {phase}: {reply}", recipient_prefix(recipient))]
    Permanent {
        phase: Phase,
        reply: Reply,
        recipient: Option<String>,
    },
    #[error("the server does not support TLS via the STARTTLS command")]
    StartTlsUnavailable,
    #[error(
        "the server does not offer a usable authentication method (offered: {})",
        offered_list(offered)
    )]
    AuthUnavailable { offered: Vec<String> },
    #[error("refusing to send the {mechanism} secret over an unencrypted connection")]
    PlaintextAuthRefused { mechanism: Mechanism },
    #[error("the server does not support DSN")]
    DsnUnavailable,
    #[error("the server does not support SMTPUTF8, needed for non-ASCII addresses")]
    SmtpUtf8Unavailable,
    #[error("the message ({size} bytes) exceeds the server's size limit of {limit} bytes")]
    TooLarge { limit: u64, size: u64 },
    #[error("invalid {what}: contains a line break, control character or angle bracket")]
    InvalidArgument { what: &'static str },
    #[error("no recipients")]
    NoRecipients,
    #[error("authentication failed")]
    Sasl(#[source] SaslError),
    #[error("the server broke the protocol")]
    PeerMisbehaved(#[source] PeerMisbehaved),
}

fn recipient_prefix(recipient: &Option<String>) -> String {
    match recipient {
        Some(r) => format!("recipient {r} "),
        None => String::new(),
    }
}

fn offered_list(offered: &[String]) -> String {
    if offered.is_empty() {
        "none".to_string()
    } else {
        offered.join(" ")
    }
}

impl SmtpError {
    /// The error for a negative reply at `phase`.
    pub fn rejected(phase: Phase, reply: Reply, recipient: Option<String>) -> SmtpError {
        if reply.is_transient() {
            SmtpError::Transient {
                phase,
                reply,
                recipient,
            }
        } else if reply.is_permanent() {
            SmtpError::Permanent {
                phase,
                reply,
                recipient,
            }
        } else {
            SmtpError::PeerMisbehaved(PeerMisbehaved::UnexpectedReply {
                phase,
                code: reply.code(),
            })
        }
    }

    /// The server reply behind this error, if any.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            SmtpError::Transient { reply, .. } | SmtpError::Permanent { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// The crate error kind (decides the exit code): every 4xx is temporary.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SmtpError::Transient { .. } => ErrorKind::RejectedTemporary,
            SmtpError::Permanent { phase, reply, .. } => match phase {
                Phase::Auth if reply.code() == 504 => ErrorKind::Unsupported,
                Phase::Auth => ErrorKind::Auth,
                Phase::StartTls => ErrorKind::Unsupported,
                _ => ErrorKind::RejectedPermanent,
            },
            SmtpError::StartTlsUnavailable
            | SmtpError::AuthUnavailable { .. }
            | SmtpError::PlaintextAuthRefused { .. }
            | SmtpError::DsnUnavailable
            | SmtpError::SmtpUtf8Unavailable => ErrorKind::Unsupported,
            SmtpError::TooLarge { .. } => ErrorKind::RejectedPermanent,
            SmtpError::InvalidArgument { .. } | SmtpError::NoRecipients => ErrorKind::Usage,
            SmtpError::Sasl(e) => match e {
                SaslError::MalformedServerMessage | SaslError::UnexpectedChallenge(_) => {
                    ErrorKind::Protocol
                }
                _ => ErrorKind::Auth,
            },
            SmtpError::PeerMisbehaved(_) => ErrorKind::Protocol,
        }
    }
}

impl From<PeerMisbehaved> for SmtpError {
    fn from(p: PeerMisbehaved) -> Self {
        SmtpError::PeerMisbehaved(p)
    }
}

impl From<SmtpError> for Error {
    fn from(e: SmtpError) -> Self {
        let kind = e.kind();
        match e {
            // The message of these already says everything; their source adds detail.
            SmtpError::Sasl(_) | SmtpError::PeerMisbehaved(_) => {
                Error::with_source(kind, e.to_string(), e)
            }
            _ => Error::new(kind, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let t = |phase, code| SmtpError::rejected(phase, Reply::new(code, &["x"]), None).kind();
        for phase in [
            Phase::Greeting,
            Phase::Ehlo,
            Phase::StartTls,
            Phase::Auth,
            Phase::Mail,
            Phase::Rcpt,
            Phase::Data,
            Phase::EndOfData,
        ] {
            assert_eq!(t(phase, 421), ErrorKind::RejectedTemporary, "{phase}");
            assert_eq!(t(phase, 451), ErrorKind::RejectedTemporary, "{phase}");
        }
        assert_eq!(t(Phase::Mail, 550), ErrorKind::RejectedPermanent);
        assert_eq!(t(Phase::Rcpt, 550), ErrorKind::RejectedPermanent);
        assert_eq!(t(Phase::EndOfData, 554), ErrorKind::RejectedPermanent);
        assert_eq!(t(Phase::Auth, 535), ErrorKind::Auth);
        assert_eq!(t(Phase::Auth, 504), ErrorKind::Unsupported);
        assert_eq!(
            SmtpError::StartTlsUnavailable.kind(),
            ErrorKind::Unsupported
        );
        assert_eq!(
            SmtpError::PeerMisbehaved(PeerMisbehaved::MalformedReply).kind(),
            ErrorKind::Protocol
        );
        let e: Error = SmtpError::rejected(
            Phase::Rcpt,
            Reply::new(550, &["5.1.1 no such user"]),
            Some("bob@x".into()),
        )
        .into();
        assert_eq!(
            e.to_string(),
            "recipient bob@x rejected at RCPT TO: 550 5.1.1 no such user"
        );
        assert!(!e.is_transient());
    }
}
