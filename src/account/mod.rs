//! The shared account model used by both directions: servers, TLS, credentials and secrets,
//! submission and fetch settings, each value remembering where it was set.
//!
//! Settings are stored as they were written (`Option<Sourced<T>>`: unset, or a value plus the
//! file:line / command line that set it); the defaults (msmtp's port rules, `domain localhost`,
//! `remove_bcc_headers on`, ...) are applied by the accessor methods, so `--pretend` can tell a
//! configured value from a default and every error can cite where a value came from.

pub mod command;
pub mod keyring;
pub mod keys;
pub mod matching;
pub mod netrc;
pub mod secret;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::net::{ConnectOptions, Endpoint, Route, Socks5Proxy, TlsMode, TlsOptions, Trust};

pub use secret::{Secret, SecretError};

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
        let mailname = std::fs::read_to_string(sysconfdir.join("mailname"))
            .ok()
            .and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
            .filter(|s| !s.is_empty());
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

/// Which protocol a server speaks; decides default ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Smtp,
    Lmtp,
    Pop3,
    Imap,
}

/// `auth`: off, automatic choice, or one named mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSetting {
    Off,
    /// `auth on`: pick the best mechanism the server offers.
    Auto,
    /// A mechanism name, upper case as on the wire (`PLAIN`, `SCRAM-SHA-256`, ...).
    Method(String),
}

/// `tls_trust_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustFile {
    /// The special value `system` (msmtp's default since 1.8.2).
    System,
    /// A PEM file of CA certificates.
    Path(PathBuf),
    /// An empty argument: no CA trust at all (needs a fingerprint or `tls_certcheck off`).
    Empty,
}

/// The server side shared by both directions: where to connect, how to secure it and how to
/// log in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSettings {
    pub host: Option<Sourced<String>>,
    pub port: Option<Sourced<u16>>,
    /// `source_ip`; `None` inside means "unset" (an empty argument).
    pub source_ip: Option<Sourced<Option<IpAddr>>>,
    /// `timeout`; `None` inside means `off` (our default bounds apply).
    pub timeout: Option<Sourced<Option<Duration>>>,
    pub auth: Option<Sourced<AuthSetting>>,
    /// `user`; empty means unset.
    pub user: Option<Sourced<String>>,
    /// `password` (inline) or `passwordeval` (command).
    pub password: Option<Sourced<Secret>>,
    pub tls: Option<Sourced<bool>>,
    pub tls_starttls: Option<Sourced<bool>>,
    pub tls_trust_file: Option<Sourced<TrustFile>>,
    /// SHA-256 of the server's leaf certificate; `None` inside means unset.
    pub tls_fingerprint: Option<Sourced<Option<[u8; 32]>>>,
    pub tls_certcheck: Option<Sourced<bool>>,
    /// Empty paths mean unset.
    pub tls_key_file: Option<Sourced<PathBuf>>,
    pub tls_cert_file: Option<Sourced<PathBuf>>,
    /// Empty means unset.
    pub tls_host_override: Option<Sourced<String>>,
    /// Allow a password over an unencrypted connection (enforced by the session layer).
    pub danger_plaintext_auth: Option<Sourced<bool>>,
    /// `proxy_host`: a SOCKS5 proxy every connection goes through; empty means unset.
    pub proxy_host: Option<Sourced<String>>,
    /// `proxy_port`, default 1080; `None` inside means unset.
    pub proxy_port: Option<Sourced<Option<u16>>>,
    /// `proxy_user` and `proxy_password`: RFC 1929 credentials for the proxy (postie's own
    /// keys; msmtp has none). Both or neither.
    pub proxy_user: Option<Sourced<String>>,
    pub proxy_password: Option<Sourced<Secret>>,
    /// `oauth_*`: log in with OAuth2 access tokens that postie obtains and refreshes.
    pub oauth: OAuthKeys,
}

/// The `oauth_*` settings as written. `oauth_provider` switches OAuth2 on; the rest override
/// the provider profile's values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuthKeys {
    pub provider: Option<Sourced<crate::oauth::ProviderKind>>,
    pub client_id: Option<Sourced<String>>,
    /// Kept as a [`Secret`] so Debug output never shows it.
    pub client_secret: Option<Sourced<Secret>>,
    pub scope: Option<Sourced<String>>,
    pub authorize_url: Option<Sourced<String>>,
    pub token_url: Option<Sourced<String>>,
    pub device_url: Option<Sourced<String>>,
    pub tenant: Option<Sourced<String>>,
    pub token_file: Option<Sourced<PathBuf>>,
    /// `oauth_token_store keyring`: the tokens in the system keyring instead of the file.
    pub token_in_keyring: Option<Sourced<bool>>,
}

impl OAuthKeys {
    fn overlay(&mut self, other: &OAuthKeys) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(
            provider,
            client_id,
            client_secret,
            scope,
            authorize_url,
            token_url,
            device_url,
            tenant,
            token_file,
            token_in_keyring
        );
    }
}

/// The keyring's `service` attribute for a protocol (msmtp: `smtp`, mpop: `pop3`).
pub fn keyring_service(service: Service) -> &'static str {
    match service {
        Service::Smtp | Service::Lmtp => "smtp",
        Service::Pop3 => "pop3",
        Service::Imap => "imap",
    }
}

fn value<T: Clone>(s: &Option<Sourced<T>>) -> Option<T> {
    s.as_ref().map(|s| s.value.clone())
}

impl ServerSettings {
    /// The host name, if set and not empty.
    pub fn host(&self) -> Option<&str> {
        self.host
            .as_ref()
            .map(|h| h.value.as_str())
            .filter(|h| !h.is_empty())
    }

    /// The login name, if set and not empty.
    pub fn user(&self) -> Option<&str> {
        self.user
            .as_ref()
            .map(|u| u.value.as_str())
            .filter(|u| !u.is_empty())
    }

    /// `auth`, default off; with OAuth2 configured, unset or `on` means the provider's
    /// mechanism (XOAUTH2 for Google and Microsoft, OAUTHBEARER for a generic server).
    pub fn auth(&self) -> AuthSetting {
        let set = value(&self.auth);
        if let Some(provider) = &self.oauth.provider
            && matches!(set, None | Some(AuthSetting::Auto))
        {
            let mechanism = match provider.value {
                crate::oauth::ProviderKind::Generic => "OAUTHBEARER",
                _ => "XOAUTH2",
            };
            return AuthSetting::Method(mechanism.into());
        }
        set.unwrap_or(AuthSetting::Off)
    }

    /// The OAuth2 grant this server logs in with, `Ok(None)` without `oauth_provider`.
    pub fn oauth_grant(&self, env: &Env) -> Result<Option<crate::oauth::Grant>, SettingError> {
        use crate::oauth::{Grant, Overrides, Profile, TokenFile, default_token_file};
        let o = &self.oauth;
        let Some(provider) = &o.provider else {
            return Ok(None);
        };
        fn text(v: &Option<Sourced<String>>) -> Option<&str> {
            v.as_ref().map(|s| s.value.as_str())
        }
        let profile = Profile::resolve(
            provider.value,
            &Overrides {
                authorize_url: text(&o.authorize_url),
                token_url: text(&o.token_url),
                device_url: text(&o.device_url),
                scope: text(&o.scope),
                tenant: text(&o.tenant),
            },
        )
        .map_err(|m| SettingError::new(Some(&provider.at), m))?;
        let client_id = text(&o.client_id).filter(|c| !c.is_empty()).ok_or_else(|| {
            SettingError::new(
                Some(&provider.at),
                format!(
                    "oauth_provider {} needs oauth_client_id (register an application with the provider; see postie(1))",
                    provider.value
                ),
            )
        })?;
        let user = self.user().ok_or_else(|| {
            SettingError::new(Some(&provider.at), "OAuth2 needs the login name (set user)")
        })?;
        let client_secret = match &o.client_secret {
            None => None,
            Some(s) => {
                let lookup = secret::Lookup {
                    host: self.host().unwrap_or(""),
                    user: Some(user),
                    service: "oauth",
                    env,
                };
                s.value.resolve(&lookup).map_err(|e| {
                    SettingError::new(Some(&s.at), format!("oauth_client_secret: {e}"))
                })?
            }
        };
        let token_path = match &o.token_file {
            Some(p) => p.value.clone(),
            None => {
                let state = env
                    .home
                    .as_ref()
                    .map(|h| h.join(".local/state/postie/oauth"))
                    .ok_or_else(|| {
                        SettingError::new(
                            Some(&provider.at),
                            "$HOME is not set: set oauth_token_file",
                        )
                    })?;
                default_token_file(&state, &profile.token_url, client_id, user)
            }
        };
        let token_file = if value(&o.token_in_keyring) == Some(true) {
            TokenFile::in_keyring(
                token_path,
                vec![
                    ("service".into(), "oauth2".into()),
                    ("user".into(), user.into()),
                    ("token_url".into(), profile.token_url.clone()),
                    ("client_id".into(), client_id.into()),
                ],
            )
        } else {
            TokenFile::new(token_path)
        };
        let timeout = match &self.timeout {
            Some(Sourced { value: Some(t), .. }) => *t,
            _ => Duration::from_secs(30),
        };
        Ok(Some(Grant {
            profile,
            client_id: client_id.to_owned(),
            client_secret,
            user: user.to_owned(),
            token_file,
            timeout,
        }))
    }

    /// `auth` for fetching: unset, `on` and `any` are the automatic choice, or with
    /// `oauth_provider` the provider's mechanism (as [`Self::auth`]: the automatic choice never
    /// picks XOAUTH2 or OAUTHBEARER, and would send the token with LOGIN or USER/PASS); an
    /// unsupported value is an error naming where it was set (never a fall back to the plain
    /// password).
    pub fn fetch_auth(&self) -> crate::error::Result<crate::session::auth::FetchAuth> {
        use crate::session::auth::FetchAuth;
        match self.auth() {
            AuthSetting::Off | AuthSetting::Auto => Ok(FetchAuth::Any),
            AuthSetting::Method(name) => FetchAuth::from_name(&name).ok_or_else(|| {
                let at = self
                    .auth
                    .as_ref()
                    .map_or_else(String::new, |s| format!("{}: ", s.at));
                crate::error::Error::new(
                    crate::error::ErrorKind::Config,
                    format!(
                        "{at}auth {} is not supported for fetching (use any, password, apop, \
                         plain, login, cram-md5, scram-sha-1, scram-sha-256 (-plus), external, \
                         xoauth2, oauthbearer or implicit)",
                        name.to_ascii_lowercase()
                    ),
                )
            }),
        }
    }

    pub fn danger_plaintext_auth(&self) -> bool {
        value(&self.danger_plaintext_auth).unwrap_or(false)
    }

    /// `tls` + `tls_starttls` as a [`TlsMode`] (`tls` defaults to off, as in msmtp; the native
    /// TOML reader sets a built-in `tls = true`).
    pub fn tls_mode(&self) -> TlsMode {
        match (value(&self.tls), value(&self.tls_starttls)) {
            (Some(true), Some(false)) => TlsMode::Implicit,
            (Some(true), _) => TlsMode::Starttls,
            _ => TlsMode::Off,
        }
    }

    /// The port: the configured one, else the service's default for the TLS mode (SMTP: 25, or
    /// 465 with implicit TLS, never 587, as msmtp; POP3 110/995; IMAP 143/993; LMTP has none).
    pub fn port(&self, service: Service) -> Option<u16> {
        if let Some(p) = &self.port {
            return Some(p.value);
        }
        let implicit = self.tls_mode() == TlsMode::Implicit;
        match service {
            Service::Smtp => Some(if implicit { 465 } else { 25 }),
            Service::Lmtp => None,
            Service::Pop3 => Some(if implicit { 995 } else { 110 }),
            Service::Imap => Some(if implicit { 993 } else { 143 }),
        }
    }

    /// Where to connect.
    pub fn endpoint(&self, service: Service) -> Result<Endpoint, SettingError> {
        let host = self
            .host()
            .ok_or_else(|| SettingError::new(None, "no host is set (use the host command)"))?;
        let port = self.port(service).ok_or_else(|| {
            SettingError::new(
                self.host.as_ref().map(|h| &h.at),
                "no port is set (LMTP has no default port)",
            )
        })?;
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }

    /// Whether certificate checking is switched off (`tls_certcheck off`): the caller should
    /// warn, citing [`ServerSettings::tls_certcheck`]'s provenance.
    pub fn certcheck_disabled(&self) -> bool {
        value(&self.tls_certcheck) == Some(false)
    }

    /// Which certificates to trust: `tls_certcheck off` beats `tls_fingerprint`, which beats
    /// `tls_trust_file` (msmtp's order).
    /// Logs a warning when certificate checking is off.
    pub fn trust(&self) -> Result<Trust, SettingError> {
        let trust = self.trust_quiet()?;
        if trust == Trust::DangerAcceptAny
            && let Some(check) = &self.tls_certcheck
        {
            log::warn!(
                "{}: tls_certcheck off: the server certificate is not verified",
                check.at
            );
        }
        Ok(trust)
    }

    fn trust_quiet(&self) -> Result<Trust, SettingError> {
        if self.certcheck_disabled() {
            return Ok(Trust::DangerAcceptAny);
        }
        if let Some(Sourced {
            value: Some(fp), ..
        }) = &self.tls_fingerprint
        {
            return Ok(Trust::Fingerprint(*fp));
        }
        match &self.tls_trust_file {
            None => Ok(Trust::System),
            Some(Sourced {
                value: TrustFile::System,
                ..
            }) => Ok(Trust::System),
            Some(Sourced {
                value: TrustFile::Path(p),
                ..
            }) => Ok(Trust::File(p.clone())),
            Some(Sourced {
                value: TrustFile::Empty,
                at,
            }) => Err(SettingError::new(
                Some(at),
                "tls_trust_file is empty: set a trust file, a tls_fingerprint, or tls_certcheck off",
            )),
        }
    }

    /// The TLS parameters for a connection to this server.
    pub fn tls_options(&self) -> Result<TlsOptions, SettingError> {
        Ok(TlsOptions {
            trust: self.trust()?,
            server_name: self
                .tls_host_override
                .as_ref()
                .map(|h| h.value.clone())
                .filter(|h| !h.is_empty()),
            client_cert: self.client_cert()?,
        })
    }

    /// `tls_cert_file` + `tls_key_file`, which come as a pair.
    pub fn client_cert(&self) -> Result<Option<(PathBuf, PathBuf)>, SettingError> {
        let path = |p: &Option<Sourced<PathBuf>>| {
            p.as_ref()
                .filter(|s| !s.value.as_os_str().is_empty())
                .map(|s| (s.value.clone(), s.at.clone()))
        };
        let client_cert = match (path(&self.tls_cert_file), path(&self.tls_key_file)) {
            (Some((cert, _)), Some((key, _))) => Some((cert, key)),
            (None, None) => None,
            (Some((_, at)), None) => {
                return Err(SettingError::new(
                    Some(&at),
                    "tls_cert_file requires tls_key_file",
                ));
            }
            (None, Some((_, at))) => {
                return Err(SettingError::new(
                    Some(&at),
                    "tls_key_file requires tls_cert_file",
                ));
            }
        };
        Ok(client_cert)
    }

    /// Socket parameters: `timeout N` bounds both connecting and each read/write; with
    /// `proxy_host` every connection goes through that SOCKS5 proxy.
    pub fn connect_options(&self) -> ConnectOptions {
        let mut opts = ConnectOptions::default();
        if let Some(Sourced { value: Some(t), .. }) = &self.timeout {
            opts.connect_timeout = *t;
            opts.io_timeout = *t;
        }
        if let Some(Sourced { value: ip, .. }) = &self.source_ip {
            opts.source_ip = *ip;
        }
        if let Some(proxy) = self.proxy() {
            opts.route = Route::Socks5(proxy);
        }
        opts
    }

    /// The SOCKS5 proxy, when `proxy_host` is set (port 1080 unless `proxy_port` says
    /// otherwise, as msmtp).
    pub fn proxy(&self) -> Option<Socks5Proxy> {
        let host = self.proxy_host.as_ref().filter(|h| !h.value.is_empty())?;
        let port = value(&self.proxy_port).flatten().unwrap_or(1080);
        let user = self
            .proxy_user
            .as_ref()
            .map(|u| u.value.clone())
            .filter(|u| !u.is_empty());
        let password = match value(&self.proxy_password) {
            Some(Secret::Inline(p)) => Some(p),
            _ => None,
        };
        // A user without a password (or the reverse) is sent as given, and the handshake
        // refuses the empty half before connecting: never silently without credentials.
        let credentials = match (user, password) {
            (None, None) => None,
            (user, password) => Some(crate::proto::socks5::Credentials {
                user: user.unwrap_or_default(),
                password: password.unwrap_or_default(),
            }),
        };
        Some(Socks5Proxy {
            endpoint: Endpoint {
                host: host.value.clone(),
                port,
            },
            credentials,
        })
    }

    /// Where the password comes from, in msmtp's order: `password`, `passwordeval` or
    /// `passwordkeyring`, then the system keyring under msmtp's attributes, then `~/.netrc` /
    /// `/etc/netrc`, then a prompt on the terminal.
    pub fn password_sources(&self) -> Vec<Secret> {
        match &self.password {
            Some(s) => vec![s.value.clone()],
            None => vec![Secret::MsmtpKeyring, Secret::Netrc, Secret::Prompt],
        }
    }

    /// The submission password ([`ServerSettings::password_for`] with the keyring service
    /// `smtp`).
    pub fn password(&self, env: &Env) -> Result<Option<String>, SecretError> {
        self.password_for(Service::Smtp, env)
    }

    /// The secret to log in with: with `oauth_provider`, a valid OAuth2 access token (cached or
    /// refreshed now; see [`crate::oauth::access_token`]); else the password through
    /// [`ServerSettings::password_sources`], the keyring consulted under `service`'s name.
    /// `Ok(None)` when no source has one (no netrc entry, no terminal). Call it only when
    /// authentication needs it, right before the session logs in.
    pub fn password_for(&self, service: Service, env: &Env) -> Result<Option<String>, SecretError> {
        if let Some(grant) = self
            .oauth_grant(env)
            .map_err(|e| SecretError::OAuth(crate::oauth::OAuthError::Config(e.to_string())))?
        {
            return Ok(Some(crate::oauth::access_token(&grant)?));
        }
        let lookup = secret::Lookup {
            host: self.host().unwrap_or(""),
            user: self.user(),
            service: keyring_service(service),
            env,
        };
        for source in self.password_sources() {
            if let Some(pw) = source.resolve(&lookup)? {
                return Ok(Some(pw));
            }
        }
        Ok(None)
    }

    /// Copies every field set in `other` over this one (inheritance and command-line overrides).
    pub fn overlay(&mut self, other: &ServerSettings) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(
            host,
            port,
            source_ip,
            timeout,
            auth,
            user,
            password,
            tls,
            tls_starttls,
            tls_trust_file,
            tls_fingerprint,
            tls_certcheck,
            tls_key_file,
            tls_cert_file,
            tls_host_override,
            danger_plaintext_auth,
            proxy_host,
            proxy_port,
            proxy_user,
            proxy_password
        );
        self.oauth.overlay(&other.oauth);
    }
}

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
            Ok(Trust::Fingerprint(_)) => "(fingerprint)".to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn set<T>(v: T) -> Option<Sourced<T>> {
        Some(Sourced::new(v, Provenance::file("/x/rc", 3)))
    }

    #[test]
    fn smtp_port_defaults_follow_msmtp() {
        let mut s = ServerSettings::default();
        assert_eq!(s.port(Service::Smtp), Some(25));
        s.tls = set(true);
        assert_eq!(s.port(Service::Smtp), Some(25));
        assert_eq!(s.tls_mode(), TlsMode::Starttls);
        s.tls_starttls = set(false);
        assert_eq!(s.port(Service::Smtp), Some(465));
        assert_eq!(s.tls_mode(), TlsMode::Implicit);
        assert_eq!(s.port(Service::Lmtp), None);
        assert_eq!(s.port(Service::Pop3), Some(995));
        assert_eq!(s.port(Service::Imap), Some(993));
        s.tls_starttls = set(true);
        assert_eq!(s.port(Service::Pop3), Some(110));
        assert_eq!(s.port(Service::Imap), Some(143));
        s.port = set(2525);
        assert_eq!(s.port(Service::Smtp), Some(2525));
        s.tls = set(false);
        assert_eq!(s.tls_mode(), TlsMode::Off);
    }

    #[test]
    fn trust_precedence_certcheck_fingerprint_file() {
        let mut s = ServerSettings::default();
        assert_eq!(s.trust(), Ok(Trust::System));
        s.tls_trust_file = set(TrustFile::Path("/ca.pem".into()));
        assert_eq!(s.trust(), Ok(Trust::File("/ca.pem".into())));
        s.tls_fingerprint = set(Some([7; 32]));
        assert_eq!(s.trust(), Ok(Trust::Fingerprint([7; 32])));
        s.tls_certcheck = set(false);
        assert_eq!(s.trust(), Ok(Trust::DangerAcceptAny));
        let mut e = ServerSettings {
            tls_trust_file: set(TrustFile::Empty),
            ..Default::default()
        };
        let err = e.trust().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/x/rc:3: tls_trust_file is empty")
        );
        e.tls_fingerprint = set(Some([1; 32]));
        assert!(e.trust().is_ok());
    }

    #[test]
    fn fetch_auth_with_oauth_is_the_providers_mechanism() {
        use crate::oauth::ProviderKind;
        use crate::proto::sasl::Mechanism;
        use crate::session::auth::FetchAuth;
        let mut s = ServerSettings::default();
        assert_eq!(s.fetch_auth().unwrap(), FetchAuth::Any);
        // Without this the automatic choice sent the token with LOGIN or USER/PASS.
        s.oauth.provider = set(ProviderKind::Generic);
        assert_eq!(
            s.fetch_auth().unwrap(),
            FetchAuth::Sasl(Mechanism::OAuthBearer)
        );
        s.oauth.provider = set(ProviderKind::Google);
        assert_eq!(s.fetch_auth().unwrap(), FetchAuth::Sasl(Mechanism::XOAuth2));
        s.auth = set(AuthSetting::Auto);
        assert_eq!(s.fetch_auth().unwrap(), FetchAuth::Sasl(Mechanism::XOAuth2));
        // An explicit mechanism stays the user's choice.
        s.auth = set(AuthSetting::Method("oauthbearer".into()));
        assert_eq!(
            s.fetch_auth().unwrap(),
            FetchAuth::Sasl(Mechanism::OAuthBearer)
        );
        s.auth = set(AuthSetting::Method("gssapi".into()));
        let e = s.fetch_auth().unwrap_err();
        assert!(e.to_string().starts_with("/x/rc:3: auth gssapi"), "{e}");
    }

    #[test]
    fn client_cert_needs_both_files() {
        let mut s = ServerSettings {
            tls_key_file: set("/k.pem".into()),
            ..Default::default()
        };
        assert!(
            s.tls_options()
                .unwrap_err()
                .message
                .contains("requires tls_cert_file")
        );
        s.tls_cert_file = set("/c.pem".into());
        s.tls_host_override = set("mx.example".into());
        let o = s.tls_options().unwrap();
        assert_eq!(o.client_cert, Some(("/c.pem".into(), "/k.pem".into())));
        assert_eq!(o.server_name.as_deref(), Some("mx.example"));
    }

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
