//! The server side of an account, shared by both directions: where to connect (host, port,
//! source address, proxy), how to secure it (TLS, trust, client certificate), how to log in
//! (`auth`, user, the password sources, OAuth2), each with msmtp's defaults applied by the
//! accessors.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::net::{ConnectOptions, Endpoint, Route, Socks5Proxy, TlsMode, TlsOptions, Trust};

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
    /// A directory of CA certificate files (fetchmail's `sslcertpath`).
    Dir(PathBuf),
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
    /// fetchmail's MD5 or SHA-1 `sslfingerprint`; a SHA-256 `tls_fingerprint` wins over it.
    pub tls_fingerprint_legacy: Option<Sourced<crate::net::LegacyPin>>,
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

/// The keyring's `service` attribute for a protocol (msmtp: `smtp`, mpop: `pop3`).
pub fn keyring_service(service: Service) -> &'static str {
    match service {
        Service::Smtp | Service::Lmtp => "smtp",
        Service::Pop3 => "pop3",
        Service::Imap => "imap",
    }
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
        self.check_oauth_auth()?;
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

    /// With `oauth_provider`, the secret is an OAuth2 access token: an explicit `auth` that
    /// sends a password (USER/PASS, LOGIN, PLAIN, CRAM-MD5, SCRAM, APOP) would send the token
    /// as one, silently. Only the token mechanisms and EXTERNAL (no secret at all) fit.
    pub fn check_oauth_auth(&self) -> Result<(), SettingError> {
        let (
            Some(_),
            Some(Sourced {
                value: AuthSetting::Method(name),
                at,
            }),
        ) = (&self.oauth.provider, &self.auth)
        else {
            return Ok(());
        };
        let upper = name.to_ascii_uppercase();
        if matches!(
            upper.as_str(),
            "XOAUTH2" | "OAUTHBEARER" | "EXTERNAL" | "IMPLICIT"
        ) {
            return Ok(());
        }
        Err(SettingError::new(
            Some(at),
            format!(
                "auth {} with oauth_provider would send the OAuth2 access token as a password; \
                 use auth xoauth2 or oauthbearer (or leave auth unset for the provider's \
                 mechanism)",
                name.to_ascii_lowercase()
            ),
        ))
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

    pub(super) fn trust_quiet(&self) -> Result<Trust, SettingError> {
        if self.certcheck_disabled() {
            return Ok(Trust::DangerAcceptAny);
        }
        if let Some(Sourced {
            value: Some(fp), ..
        }) = &self.tls_fingerprint
        {
            return Ok(Trust::Fingerprint(*fp));
        }
        if let Some(pin) = &self.tls_fingerprint_legacy {
            return Ok(Trust::LegacyFingerprint(pin.value));
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
                value: TrustFile::Dir(p),
                ..
            }) => Ok(Trust::Dir(p.clone())),
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A password mechanism with `oauth_provider` would send the access token as the
    /// password (USER/PASS, LOGIN, PLAIN), in cleartext inside TLS to a server that may log
    /// it, and fail anyway: refused, naming where `auth` was set.
    #[test]
    fn password_mechanisms_with_oauth_are_refused() {
        use crate::oauth::ProviderKind;
        let mut s = ServerSettings {
            oauth: OAuthKeys {
                provider: set(ProviderKind::Google),
                ..OAuthKeys::default()
            },
            ..ServerSettings::default()
        };
        for m in [
            "PASSWORD",
            "plain",
            "LOGIN",
            "CRAM-MD5",
            "SCRAM-SHA-256",
            "APOP",
        ] {
            s.auth = set(AuthSetting::Method(m.into()));
            let e = s.check_oauth_auth().unwrap_err().to_string();
            assert!(e.starts_with("/x/rc:3: auth "), "{m}: {e}");
            assert!(e.contains("oauth_provider") && e.contains("xoauth2"), "{e}");
            let e = s.fetch_auth().unwrap_err().to_string();
            assert!(e.contains("oauth_provider"), "{m}: {e}");
        }
        for m in ["XOAUTH2", "oauthbearer", "EXTERNAL"] {
            s.auth = set(AuthSetting::Method(m.into()));
            assert!(s.check_oauth_auth().is_ok(), "{m}");
        }
        s.auth = set(AuthSetting::Auto);
        assert!(s.check_oauth_auth().is_ok());
        // Without OAuth2 every mechanism is the user's choice.
        s.oauth.provider = None;
        s.auth = set(AuthSetting::Method("PLAIN".into()));
        assert!(s.check_oauth_auth().is_ok());
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
}
