//! The shared account model used by both directions: servers, TLS, credentials and secrets,
//! submission and fetch settings, each value remembering where it was set.
//!
//! Settings are stored as they were written (`Option<Sourced<T>>`: unset, or a value plus the
//! file:line / command line that set it); the defaults (msmtp's port rules, `domain localhost`,
//! `remove_bcc_headers on`, ...) are applied by the accessor methods, so `--pretend` can tell a
//! configured value from a default and every error can cite where a value came from.
//!
//! This file holds what every setting shares (provenance, [`Env`]) and [`Account`];
//! `server.rs` the server side both directions share, `submit.rs` and `fetch.rs` the settings
//! of each direction, `keys.rs` the key vocabulary the readers apply, `secret.rs` and its
//! siblings the password sources.

pub mod command;
pub mod fetch;
pub mod keyring;
pub mod keys;
pub mod matching;
pub mod netrc;
pub mod secret;
pub mod server;
pub mod submit;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};

pub use fetch::{FetchProtocol, FetchSettings, FetchTuning, MultidropRules, Target};
pub use secret::{Secret, SecretError};
pub use server::{AuthSetting, OAuthKeys, ServerSettings, Service, TrustFile, keyring_service};
pub use submit::{
    DEFAULT_QUEUE_MAX_AGE, DsnNotify, DsnReturn, HeaderPolicy, LogFile, QueueMode, SubmitProtocol,
    SubmitSettings, SyslogFacility, ToHeaderPolicy,
};

/// Where a setting was set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Provenance {
    /// A built-in default of the reader (e.g. the native TOML's `tls = true`).
    Builtin,
    /// A command-line option.
    CommandLine,
    /// A config file line.
    File { path: PathBuf, line: u32 },
    /// An environment variable (msmtp's `EMAIL` and `SMTPSERVER`).
    Environment(&'static str),
}

impl Provenance {
    pub fn file(path: impl Into<PathBuf>, line: u32) -> Self {
        Provenance::File {
            path: path.into(),
            line,
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::Builtin => f.write_str("built-in default"),
            Provenance::CommandLine => f.write_str("command line"),
            Provenance::File { path, line } => write!(f, "{}:{line}", path.display()),
            Provenance::Environment(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// A value and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub at: Provenance,
}

impl<T> Sourced<T> {
    pub fn new(value: T, at: Provenance) -> Self {
        Sourced { value, at }
    }
}

/// The value of a setting, if set.
fn value<T: Clone>(s: &Option<Sourced<T>>) -> Option<T> {
    s.as_ref().map(|s| s.value.clone())
}

/// A setting that is missing, contradictory or unusable when the account is resolved for use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", at.as_ref().map(|a| format!("{a}: ")).unwrap_or_default())]
pub struct SettingError {
    /// The setting at fault, when one is.
    pub at: Option<Provenance>,
    pub message: String,
}

impl SettingError {
    pub fn new(at: Option<&Provenance>, message: impl Into<String>) -> Self {
        SettingError {
            at: at.cloned(),
            message: message.into(),
        }
    }
}

impl From<SettingError> for Error {
    fn from(e: SettingError) -> Self {
        Error::new(ErrorKind::Config, e.to_string())
    }
}

/// The process environment the model and readers consult, passed explicitly so tests are
/// hermetic. [`Env::from_process`] builds it from the real environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `$HOME`: `~` expansion, `~/.msmtprc`, `~/.netrc`.
    pub home: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME` (unset or empty: `~/.config`).
    pub xdg_config_home: Option<PathBuf>,
    /// Where the system files live (`/etc`): `msmtprc`, `netrc`.
    pub sysconfdir: PathBuf,
    /// `%U`: `$USER`, else `$LOGNAME`.
    pub user: Option<String>,
    /// `%H`: `$HOSTNAME`, else the kernel's host name.
    pub hostname: Option<String>,
    /// `%M`: the first line of `/etc/mailname`.
    pub mailname: Option<String>,
}

/// Largest `/etc/mailname` read: it holds one host name (at most 255 bytes).
const MAX_MAILNAME_BYTES: u64 = 4096;

/// The first line of a mailname file (`/etc/mailname`), trimmed; `None` if it cannot be read,
/// says nothing, is not a regular file (a FIFO would block the read for ever) or is larger
/// than 4 KiB (no mailname file; a device would be read without end).
pub fn read_mailname(path: &Path) -> Option<String> {
    crate::config::open_regular_file(path)
        .and_then(|file| crate::config::read_text_at_most(file, MAX_MAILNAME_BYTES))
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
        .filter(|s| !s.is_empty())
}

impl Env {
    /// The real environment of this process.
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let sysconfdir = PathBuf::from("/etc");
        let hostname = var("HOSTNAME")
            .and_then(|h| h.into_string().ok())
            .or_else(|| {
                let uname = rustix::system::uname();
                uname.nodename().to_str().ok().map(str::to_owned)
            })
            .filter(|h| !h.is_empty());
        let mailname = read_mailname(&sysconfdir.join("mailname"));
        Env {
            home: var("HOME").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            sysconfdir,
            user: var("USER")
                .or_else(|| var("LOGNAME"))
                .and_then(|u| u.into_string().ok()),
            hostname,
            mailname,
        }
    }

    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub fn config_home(&self) -> Option<PathBuf> {
        self.xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
    }

    /// `~` or `~/x` at the start of a file name becomes `$HOME` (msmtp's rule for file names).
    pub fn expand_tilde(&self, path: &str) -> PathBuf {
        if let Some(home) = &self.home {
            if path == "~" {
                return home.clone();
            }
            if let Some(rest) = path.strip_prefix("~/") {
                return home.join(rest);
            }
        }
        PathBuf::from(path)
    }

    /// Replaces msmtp's `%U %H %C %M` patterns (`%C`, the canonical name, is taken to be the
    /// host name: we do no DNS lookups while reading configuration). `%%` is a literal `%`.
    pub fn substitute(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('U') => out.push_str(self.user.as_deref().unwrap_or("")),
                Some('H') | Some('C') => out.push_str(self.hostname.as_deref().unwrap_or("")),
                Some('M') => out.push_str(self.mailname.as_deref().unwrap_or("")),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

/// One account: a name and what it does in each direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// Where the account was defined (its `account` line or TOML table).
    pub defined_at: Provenance,
    pub submit: Option<SubmitSettings>,
    pub fetch: Option<FetchSettings>,
}

impl Account {
    /// The submit settings, or an error naming the account.
    pub fn submit(&self) -> Result<&SubmitSettings, SettingError> {
        self.submit.as_ref().ok_or_else(|| {
            SettingError::new(
                Some(&self.defined_at),
                format!("account {} has no settings for sending mail", self.name),
            )
        })
    }

    /// The fetch settings, or an error naming the account.
    pub fn fetch(&self) -> Result<&FetchSettings, SettingError> {
        self.fetch.as_ref().ok_or_else(|| {
            SettingError::new(
                Some(&self.defined_at),
                format!("account {} has no settings for fetching mail", self.name),
            )
        })
    }
}

/// A setting as a test writes it: set at line 3 of `/x/rc`.
#[cfg(test)]
fn set<T>(v: T) -> Option<Sourced<T>> {
    Some(Sourced::new(v, Provenance::file("/x/rc", 3)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions() {
        let env = Env {
            user: Some("alice".into()),
            hostname: Some("box".into()),
            mailname: Some("example.org".into()),
            home: Some("/home/alice".into()),
            ..Default::default()
        };
        assert_eq!(env.substitute("%U@%M"), "alice@example.org");
        assert_eq!(env.substitute("%U@%H %C 100%% %x"), "alice@box box 100% %x");
        assert_eq!(
            env.expand_tilde("~/ca.pem"),
            PathBuf::from("/home/alice/ca.pem")
        );
        assert_eq!(env.expand_tilde("/~/x"), PathBuf::from("/~/x"));
        assert_eq!(
            env.config_home(),
            Some(PathBuf::from("/home/alice/.config"))
        );
    }
}
