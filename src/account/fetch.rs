//! An account's settings for fetching: protocol, folders, the delivery target, keep/flush/fetchall
//! and the tuning fetchmail users set, with fetchmail's defaults applied by the accessors.

use std::path::PathBuf;

use super::*;
use crate::net::{ConnectOptions, Endpoint, TlsMode, TlsOptions};

/// `protocol` for fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchProtocol {
    Pop3,
    Imap,
}

impl FetchProtocol {
    pub fn service(self) -> Service {
        match self {
            FetchProtocol::Pop3 => Service::Pop3,
            FetchProtocol::Imap => Service::Imap,
        }
    }
}

/// Where fetched mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Maildir(PathBuf),
    Mbox(PathBuf),
    /// A program run without a shell (native TOML `mda = [...]`); `%T`/`%F` are replaced per
    /// argument.
    Mda(Vec<String>),
    /// A command line run through `/bin/sh -c` (fetchmailrc's `mda "..."`), `%T`/`%F` passed as
    /// positional parameters (`deliver::mda::expand_shell`).
    MdaShell(String),
    Smtp(Endpoint),
    Lmtp(Endpoint),
}

/// What to fetch and where to put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSettings {
    pub server: ServerSettings,
    pub protocol: Sourced<FetchProtocol>,
    /// IMAP folders; empty means `INBOX`.
    pub folders: Option<Sourced<Vec<String>>>,
    pub keep: Option<Sourced<bool>>,
    pub fetchall: Option<Sourced<bool>>,
    pub idle: Option<Sourced<bool>>,
    /// `None`: the reader's default (`~/Maildir` for the native TOML).
    pub target: Option<Sourced<Target>>,
    /// RCPT TO for SMTP/LMTP targets (TOML `recipient`); `None`: `$USER@localhost`.
    pub recipient: Option<Sourced<String>>,
    /// Size limits and pacing (TOML keys; a fetchmailrc sets the same through its options).
    pub tuning: FetchTuning,
}

/// Per-poll limits and pacing, named as fetchmail names them (the TOML keys are the same words;
/// `idle_timeout`/`force_idle` for `idletimeout`/`forceidle`). Zero means "no limit" for the
/// limits, as in fetchmail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchTuning {
    /// Skip messages larger than this (octets).
    pub limit: Option<u64>,
    /// At most this many messages per poll.
    pub fetchlimit: Option<u64>,
    /// SMTP/LMTP targets: reconnect after this many messages (0: never).
    pub batchlimit: u64,
    /// Delete messages larger than `limit` instead of leaving them.
    pub limitflush: bool,
    /// Delete messages an earlier poll delivered, even with `keep`.
    pub flush: bool,
    /// Commit deletions after every N (IMAP EXPUNGE; POP3 QUIT and reconnect).
    pub expunge: Option<u64>,
    /// Re-issue IMAP IDLE after this many seconds.
    pub idle_timeout: Option<u64>,
    /// IMAP IDLE even when the server does not announce it.
    pub force_idle: bool,
    /// At most this many polls at once on this account's server (TOML `max_connections`):
    /// every polling account of the same host shares the bound (the smallest value set wins).
    pub max_connections: Option<u64>,
}

/// How a multidrop poll sorts its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultidropRules {
    /// (name on the server, local user): `'srv'='loc'` or a plain `loc` (the same name).
    pub names: Vec<(String, String)>,
    /// `*` among the local names: any name in one of our domains goes to the local user of
    /// the same name.
    pub wildcard: bool,
    /// The envelope header and how many of them to skip; `None` with `no envelope`.
    pub envelope: Option<(u32, String)>,
    /// `qvirtual P`: removed from the start of an envelope address's local part (a virtual
    /// domain's `P-user@...` becomes `user@...`) before the names are matched.
    pub qvirtual: Option<String>,
    /// The host names that count as ours (the poll name, `via`, `aka`, `localdomains`),
    /// lowercase; a subdomain of one counts too. An address without a domain is ours.
    pub domains: Vec<String>,
    /// Who gets a message no name matched (fetchmail's postmaster).
    pub postmaster: String,
}

impl FetchSettings {
    pub fn new(protocol: Sourced<FetchProtocol>) -> Self {
        FetchSettings {
            server: ServerSettings::default(),
            protocol,
            folders: None,
            keep: None,
            fetchall: None,
            idle: None,
            target: None,
            recipient: None,
            tuning: FetchTuning::default(),
        }
    }

    pub fn service(&self) -> Service {
        self.protocol.value.service()
    }

    pub fn endpoint(&self) -> Result<Endpoint, SettingError> {
        self.server.endpoint(self.service())
    }

    pub fn tls_mode(&self) -> TlsMode {
        self.server.tls_mode()
    }

    pub fn tls_options(&self) -> Result<TlsOptions, SettingError> {
        self.server.tls_options()
    }

    pub fn connect_options(&self) -> ConnectOptions {
        self.server.connect_options()
    }

    pub fn folders(&self) -> Vec<String> {
        match &self.folders {
            Some(f) if !f.value.is_empty() => f.value.clone(),
            _ => vec!["INBOX".to_owned()],
        }
    }

    pub fn keep(&self) -> bool {
        value(&self.keep).unwrap_or(false)
    }

    pub fn fetchall(&self) -> bool {
        value(&self.fetchall).unwrap_or(false)
    }

    pub fn idle(&self) -> bool {
        value(&self.idle).unwrap_or(false)
    }

    /// The delivery target, defaulting to `~/Maildir`.
    pub fn target(&self, env: &Env) -> Target {
        match &self.target {
            Some(t) => t.value.clone(),
            None => Target::Maildir(env.expand_tilde("~/Maildir")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_defaults() {
        let env = Env {
            home: Some("/h".into()),
            ..Default::default()
        };
        let f = FetchSettings::new(Sourced::new(FetchProtocol::Imap, Provenance::Builtin));
        assert_eq!(f.folders(), vec!["INBOX".to_owned()]);
        assert!(!f.keep());
        assert_eq!(f.target(&env), Target::Maildir("/h/Maildir".into()));
    }
}
