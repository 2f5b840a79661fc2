//! An account's settings for sending (msmtp's account keys beyond the server: envelope and
//! header policy, DSN, logging, aliases, the queue), with msmtp's defaults applied by the
//! accessors.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::net::{ConnectOptions, Endpoint, Route, TlsMode, TlsOptions, Trust};

/// `protocol` for submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubmitProtocol {
    #[default]
    Smtp,
    Lmtp,
}

/// `dsn_notify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnNotify {
    /// `off`: no NOTIFY parameter.
    Off,
    Never,
    /// Any of failure, delay, success (at least one true).
    On {
        failure: bool,
        delay: bool,
        success: bool,
    },
}

/// `dsn_return`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnReturn {
    Off,
    Headers,
    Full,
}

/// `set_from_header` (and `set_date_header` / `set_msgid_header`, which know only auto/off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderPolicy {
    /// Add the header when the message has none.
    Auto,
    /// Always replace it.
    On,
    Off,
}

/// `set_to_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToHeaderPolicy {
    On,
    Off,
    /// Add `To: undisclosed-recipients:;` when the message has no To/Cc/Bcc.
    UndisclosedRecipients,
}

/// `syslog` facilities msmtp accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFacility {
    User,
    Mail,
    Local(u8),
}

impl fmt::Display for SyslogFacility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogFacility::User => f.write_str("LOG_USER"),
            SyslogFacility::Mail => f.write_str("LOG_MAIL"),
            SyslogFacility::Local(n) => write!(f, "LOG_LOCAL{n}"),
        }
    }
}

/// `logfile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFile {
    /// `-`: standard output.
    Stdout,
    Path(PathBuf),
}

/// `queue`: whether rsend queues a message it could not (or did not try to) send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QueueMode {
    /// Never: a failure is the caller's (msmtp's behaviour).
    #[default]
    Off,
    /// Only after a temporary failure (network down, timeout, 4xx).
    Transient,
    /// Always: queue without trying, and start a flush in the background.
    Always,
}

/// How long a queued message is retried when `queue_max_age` is not set (sendmail's
/// Timeout.queuereturn).
pub const DEFAULT_QUEUE_MAX_AGE: Duration = Duration::from_secs(5 * 24 * 3600);

/// Everything msmtprc can say about submitting mail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitSettings {
    pub server: ServerSettings,
    /// Unix-domain socket; overrides host and port.
    pub socket: Option<Sourced<PathBuf>>,
    pub protocol: Option<Sourced<SubmitProtocol>>,
    /// EHLO/LHLO argument (with `%H %C %M`).
    pub domain: Option<Sourced<String>>,
    /// Envelope-from, possibly a glob (`*@example.org`) and `%U %H %C %M` patterns.
    pub from: Option<Sourced<String>>,
    pub from_full_name: Option<Sourced<String>>,
    pub allow_from_override: Option<Sourced<bool>>,
    pub dsn_notify: Option<Sourced<DsnNotify>>,
    pub dsn_return: Option<Sourced<DsnReturn>>,
    pub set_from_header: Option<Sourced<HeaderPolicy>>,
    pub set_date_header: Option<Sourced<HeaderPolicy>>,
    pub set_msgid_header: Option<Sourced<HeaderPolicy>>,
    pub set_to_header: Option<Sourced<ToHeaderPolicy>>,
    pub remove_bcc_headers: Option<Sourced<bool>>,
    /// `None` inside: unset by an empty argument.
    pub logfile: Option<Sourced<Option<LogFile>>>,
    /// `None` inside: `none` (no time stamp).
    pub logfile_time_format: Option<Sourced<Option<String>>>,
    /// `None` inside: `syslog off`.
    pub syslog: Option<Sourced<Option<SyslogFacility>>>,
    /// Empty path: unset.
    pub aliases: Option<Sourced<PathBuf>>,
    /// `queue` (a postie extension): when rsend queues a message instead of failing.
    pub queue: Option<Sourced<QueueMode>>,
    /// `queue_dir` (a postie extension): the queue directory.
    pub queue_dir: Option<Sourced<PathBuf>>,
    /// `queue_max_age` (a postie extension): how long a queued message is retried.
    pub queue_max_age: Option<Sourced<Duration>>,
    /// Directives we accept but do not implement (each was warned about when read).
    pub ignored: Vec<Sourced<String>>,
}

impl SubmitSettings {
    pub fn protocol(&self) -> SubmitProtocol {
        value(&self.protocol).unwrap_or_default()
    }

    pub fn service(&self) -> Service {
        match self.protocol() {
            SubmitProtocol::Smtp => Service::Smtp,
            SubmitProtocol::Lmtp => Service::Lmtp,
        }
    }

    /// The port with msmtp's default rules.
    pub fn port(&self) -> Option<u16> {
        self.server.port(self.service())
    }

    /// Where to connect (ignores `socket`; see [`SubmitSettings::socket`]).
    pub fn endpoint(&self) -> Result<Endpoint, SettingError> {
        self.server.endpoint(self.service())
    }

    pub fn socket(&self) -> Option<&Path> {
        self.socket
            .as_ref()
            .map(|s| s.value.as_path())
            .filter(|p| !p.as_os_str().is_empty())
    }

    pub fn tls_mode(&self) -> TlsMode {
        self.server.tls_mode()
    }

    pub fn tls_options(&self) -> Result<TlsOptions, SettingError> {
        self.server.tls_options()
    }

    /// Socket parameters; `socket` (a Unix-domain socket) overrides host, port and proxy, as
    /// in msmtp.
    pub fn connect_options(&self) -> ConnectOptions {
        let mut opts = self.server.connect_options();
        if let Some(path) = self.socket() {
            opts.route = Route::UnixSocket(path.to_owned());
        }
        opts
    }

    /// Where to connect, for the session: with `socket`, the host (default `localhost`) only
    /// names the server for TLS and messages, and the port is irrelevant.
    pub fn session_endpoint(&self) -> Result<Endpoint, SettingError> {
        if self.socket().is_some() {
            return Ok(Endpoint {
                host: self.server.host().unwrap_or("localhost").to_owned(),
                port: self.port().unwrap_or(0),
            });
        }
        self.endpoint()
    }

    /// The EHLO argument: `domain` with substitutions, default `localhost`.
    pub fn domain(&self, env: &Env) -> String {
        match &self.domain {
            Some(d) if !d.value.is_empty() => env.substitute(&d.value),
            _ => "localhost".to_owned(),
        }
    }

    /// The configured envelope-from with `%U %H %C %M` replaced (a glob stays a glob: it only
    /// selects accounts and cannot be used as an address).
    pub fn from_address(&self, env: &Env) -> Option<String> {
        self.from
            .as_ref()
            .filter(|f| !f.value.is_empty())
            .map(|f| env.substitute(&f.value))
    }

    /// Whether `from` is a pattern rather than an address.
    pub fn from_is_pattern(&self) -> bool {
        self.from
            .as_ref()
            .is_some_and(|f| matching::is_glob(&f.value))
    }

    pub fn allow_from_override(&self) -> bool {
        value(&self.allow_from_override).unwrap_or(true)
    }

    pub fn dsn_notify(&self) -> DsnNotify {
        value(&self.dsn_notify).unwrap_or(DsnNotify::Off)
    }

    pub fn dsn_return(&self) -> DsnReturn {
        value(&self.dsn_return).unwrap_or(DsnReturn::Off)
    }

    pub fn set_from_header(&self) -> HeaderPolicy {
        value(&self.set_from_header).unwrap_or(HeaderPolicy::Auto)
    }

    pub fn set_date_header(&self) -> HeaderPolicy {
        value(&self.set_date_header).unwrap_or(HeaderPolicy::Auto)
    }

    pub fn set_msgid_header(&self) -> HeaderPolicy {
        value(&self.set_msgid_header).unwrap_or(HeaderPolicy::Auto)
    }

    pub fn set_to_header(&self) -> ToHeaderPolicy {
        value(&self.set_to_header).unwrap_or(ToHeaderPolicy::Off)
    }

    pub fn remove_bcc_headers(&self) -> bool {
        value(&self.remove_bcc_headers).unwrap_or(true)
    }

    pub fn logfile(&self) -> Option<LogFile> {
        value(&self.logfile).flatten()
    }

    /// strftime format for log lines; `None` = `none`. Default `%b %d %H:%M:%S`.
    pub fn logfile_time_format(&self) -> Option<String> {
        match &self.logfile_time_format {
            None => Some("%b %d %H:%M:%S".to_owned()),
            Some(s) => s.value.clone(),
        }
    }

    /// The syslog facility when syslog is on (`syslog on` = LOG_USER, as msmtp).
    pub fn syslog(&self) -> Option<SyslogFacility> {
        value(&self.syslog).flatten()
    }

    pub fn queue(&self) -> QueueMode {
        value(&self.queue).unwrap_or_default()
    }

    /// The configured queue directory (`None`: the built-in default under $XDG_STATE_HOME).
    pub fn queue_dir(&self) -> Option<&Path> {
        self.queue_dir
            .as_ref()
            .map(|d| d.value.as_path())
            .filter(|p| !p.as_os_str().is_empty())
    }

    pub fn queue_max_age(&self) -> Duration {
        value(&self.queue_max_age).unwrap_or(DEFAULT_QUEUE_MAX_AGE)
    }

    pub fn aliases(&self) -> Option<&Path> {
        self.aliases
            .as_ref()
            .map(|a| a.value.as_path())
            .filter(|p| !p.as_os_str().is_empty())
    }

    /// The resolved settings as `key = value` lines for `--pretend`, each followed by where
    /// it was set (`# file:line`, `# command line`) or `# default`. The password prints as `*`.
    pub fn pretend_lines(&self, env: &Env) -> Vec<String> {
        fn on_off(b: bool) -> String {
            if b { "on" } else { "off" }.to_owned()
        }
        fn at<T>(s: &Option<Sourced<T>>) -> String {
            match s {
                Some(s) => format!("# {}", s.at),
                None => "# default".to_owned(),
            }
        }
        let sv = &self.server;
        let not_set = || "(not set)".to_owned();
        let path = |p: Option<&Path>| p.map_or_else(not_set, |p| p.display().to_string());
        let trust = match self.server.trust_quiet() {
            Ok(Trust::System) => "system".to_owned(),
            Ok(Trust::File(p)) => p.display().to_string(),
            Ok(Trust::Dir(p)) => format!("{} (directory)", p.display()),
            Ok(Trust::Fingerprint(_)) => "(fingerprint)".to_owned(),
            Ok(Trust::LegacyFingerprint(p)) => format!("({} fingerprint)", p.algorithm()),
            Ok(Trust::DangerAcceptAny) => "(certificate not checked)".to_owned(),
            Err(_) => "(empty)".to_owned(),
        };
        let rows: Vec<(&str, String, String)> = vec![
            (
                "host",
                sv.host().map_or_else(not_set, str::to_owned),
                at(&sv.host),
            ),
            (
                "port",
                self.port().map_or_else(not_set, |p| p.to_string()),
                at(&sv.port),
            ),
            (
                "source_ip",
                value(&sv.source_ip)
                    .flatten()
                    .map_or_else(not_set, |i| i.to_string()),
                at(&sv.source_ip),
            ),
            ("socket", path(self.socket()), at(&self.socket)),
            (
                "proxy_host",
                value(&sv.proxy_host)
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(not_set),
                at(&sv.proxy_host),
            ),
            (
                "proxy_port",
                match sv.proxy() {
                    Some(p) => p.endpoint.port.to_string(),
                    None => not_set(),
                },
                at(&sv.proxy_port),
            ),
            (
                "proxy_user",
                value(&sv.proxy_user)
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(not_set),
                at(&sv.proxy_user),
            ),
            (
                "proxy_password",
                match value(&sv.proxy_password) {
                    Some(_) => "*".to_owned(),
                    None => not_set(),
                },
                at(&sv.proxy_password),
            ),
            (
                "timeout",
                match value(&sv.timeout).flatten() {
                    Some(t) => t.as_secs().to_string(),
                    None => "off".to_owned(),
                },
                at(&sv.timeout),
            ),
            (
                "protocol",
                match self.protocol() {
                    SubmitProtocol::Smtp => "smtp",
                    SubmitProtocol::Lmtp => "lmtp",
                }
                .to_owned(),
                at(&self.protocol),
            ),
            ("domain", self.domain(env), at(&self.domain)),
            (
                "auth",
                match sv.auth() {
                    AuthSetting::Off => "off".to_owned(),
                    AuthSetting::Auto => "choose".to_owned(),
                    AuthSetting::Method(m) => m,
                },
                at(&sv.auth),
            ),
            (
                "user",
                sv.user().map_or_else(not_set, str::to_owned),
                at(&sv.user),
            ),
            (
                "password",
                match value(&sv.password) {
                    Some(Secret::Inline(_)) => "*".to_owned(),
                    _ => not_set(),
                },
                at(&sv.password),
            ),
            (
                "passwordeval",
                match value(&sv.password) {
                    Some(Secret::Command(c)) => c,
                    _ => not_set(),
                },
                at(&sv.password),
            ),
            ("tls", on_off(self.tls_mode() != TlsMode::Off), at(&sv.tls)),
            (
                "tls_starttls",
                on_off(self.tls_mode() != TlsMode::Implicit),
                at(&sv.tls_starttls),
            ),
            ("tls_trust_file", trust, at(&sv.tls_trust_file)),
            (
                "tls_fingerprint",
                match value(&sv.tls_fingerprint).flatten() {
                    Some(fp) => fp
                        .iter()
                        .map(|b| format!("{b:02X}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                    None => not_set(),
                },
                at(&sv.tls_fingerprint),
            ),
            (
                "tls_certcheck",
                on_off(!sv.certcheck_disabled()),
                at(&sv.tls_certcheck),
            ),
            (
                "tls_key_file",
                path(
                    sv.tls_key_file
                        .as_ref()
                        .map(|p| p.value.as_path())
                        .filter(|p| !p.as_os_str().is_empty()),
                ),
                at(&sv.tls_key_file),
            ),
            (
                "tls_cert_file",
                path(
                    sv.tls_cert_file
                        .as_ref()
                        .map(|p| p.value.as_path())
                        .filter(|p| !p.as_os_str().is_empty()),
                ),
                at(&sv.tls_cert_file),
            ),
            (
                "tls_host_override",
                value(&sv.tls_host_override)
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(not_set),
                at(&sv.tls_host_override),
            ),
            (
                "danger_plaintext_auth",
                on_off(sv.danger_plaintext_auth()),
                at(&sv.danger_plaintext_auth),
            ),
            (
                "from",
                self.from_address(env).unwrap_or_else(not_set),
                at(&self.from),
            ),
            (
                "from_full_name",
                value(&self.from_full_name)
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(not_set),
                at(&self.from_full_name),
            ),
            (
                "allow_from_override",
                on_off(self.allow_from_override()),
                at(&self.allow_from_override),
            ),
            (
                "dsn_notify",
                match self.dsn_notify() {
                    DsnNotify::Off => "(not set)".to_owned(),
                    DsnNotify::Never => "never".to_owned(),
                    DsnNotify::On {
                        failure,
                        delay,
                        success,
                    } => [("failure", failure), ("delay", delay), ("success", success)]
                        .iter()
                        .filter(|(_, on)| *on)
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(","),
                },
                at(&self.dsn_notify),
            ),
            (
                "dsn_return",
                match self.dsn_return() {
                    DsnReturn::Off => "(not set)",
                    DsnReturn::Headers => "headers",
                    DsnReturn::Full => "full",
                }
                .to_owned(),
                at(&self.dsn_return),
            ),
            (
                "set_from_header",
                policy(self.set_from_header()),
                at(&self.set_from_header),
            ),
            (
                "set_date_header",
                policy(self.set_date_header()),
                at(&self.set_date_header),
            ),
            (
                "set_msgid_header",
                policy(self.set_msgid_header()),
                at(&self.set_msgid_header),
            ),
            (
                "set_to_header",
                match self.set_to_header() {
                    ToHeaderPolicy::On => "on",
                    ToHeaderPolicy::Off => "off",
                    ToHeaderPolicy::UndisclosedRecipients => "undisclosed_recipients",
                }
                .to_owned(),
                at(&self.set_to_header),
            ),
            (
                "remove_bcc_headers",
                on_off(self.remove_bcc_headers()),
                at(&self.remove_bcc_headers),
            ),
            (
                "logfile",
                match self.logfile() {
                    None => not_set(),
                    Some(LogFile::Stdout) => "-".to_owned(),
                    Some(LogFile::Path(p)) => p.display().to_string(),
                },
                at(&self.logfile),
            ),
            (
                "logfile_time_format",
                self.logfile_time_format()
                    .unwrap_or_else(|| "none".to_owned()),
                at(&self.logfile_time_format),
            ),
            (
                "syslog",
                self.syslog()
                    .map_or_else(|| "off".to_owned(), |f| f.to_string()),
                at(&self.syslog),
            ),
            ("aliases", path(self.aliases()), at(&self.aliases)),
            (
                "queue",
                match self.queue() {
                    QueueMode::Off => "off",
                    QueueMode::Transient => "transient",
                    QueueMode::Always => "always",
                }
                .to_owned(),
                at(&self.queue),
            ),
            ("queue_dir", path(self.queue_dir()), at(&self.queue_dir)),
            (
                "queue_max_age",
                format!("{}s", self.queue_max_age().as_secs()),
                at(&self.queue_max_age),
            ),
        ];
        rows.into_iter()
            .map(|(k, v, a)| format!("{k:<21} = {v}  {a}"))
            .collect()
    }

    /// Send-time validation (msmtp's check_account): a host or socket, a port, and a usable
    /// TLS trust choice. `from` is checked by the caller, which knows whether `-f` was given.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.socket().is_none() {
            self.endpoint()?;
        }
        if self.tls_mode() != TlsMode::Off {
            self.server.trust_quiet()?;
            self.server.client_cert()?;
        }
        Ok(())
    }
}

fn policy(p: HeaderPolicy) -> String {
    match p {
        HeaderPolicy::Auto => "auto",
        HeaderPolicy::On => "on",
        HeaderPolicy::Off => "off",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_and_connect_options() {
        let mut s = SubmitSettings::default();
        assert!(s.endpoint().is_err());
        s.server.host = set("mail.example".into());
        assert_eq!(
            s.endpoint().unwrap(),
            Endpoint {
                host: "mail.example".into(),
                port: 25
            }
        );
        s.protocol = set(SubmitProtocol::Lmtp);
        assert!(s.endpoint().unwrap_err().message.contains("LMTP"));
        s.server.timeout = set(Some(Duration::from_secs(9)));
        s.server.source_ip = set(Some("127.0.0.1".parse().unwrap()));
        let c = s.connect_options();
        assert_eq!(c.io_timeout, Duration::from_secs(9));
        assert_eq!(c.connect_timeout, Duration::from_secs(9));
        assert_eq!(c.source_ip, Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn submit_defaults() {
        let s = SubmitSettings::default();
        let env = Env::default();
        assert_eq!(s.domain(&env), "localhost");
        assert!(s.remove_bcc_headers());
        assert!(s.allow_from_override());
        assert_eq!(s.set_from_header(), HeaderPolicy::Auto);
        assert_eq!(s.dsn_notify(), DsnNotify::Off);
        assert_eq!(s.syslog(), None);
        assert_eq!(s.logfile_time_format().as_deref(), Some("%b %d %H:%M:%S"));
        assert_eq!(s.server.auth(), AuthSetting::Off);
    }

    #[test]
    fn pretend_hides_the_password_and_cites_provenance() {
        let mut s = SubmitSettings::default();
        s.server.host = set("mx".into());
        s.server.password = set(Secret::Inline("hunter2".into()));
        let lines = s.pretend_lines(&Env::default());
        let text = lines.join("\n");
        assert!(!text.contains("hunter2"));
        assert!(
            text.contains("password              = *  # /x/rc:3"),
            "{text}"
        );
        assert!(
            text.contains("port                  = 25  # default"),
            "{text}"
        );
        assert!(
            text.contains("host                  = mx  # /x/rc:3"),
            "{text}"
        );
    }
}
