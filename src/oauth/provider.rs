//! Provider profiles: the endpoints, scopes and SASL mechanism of Google and Microsoft 365, and
//! the generic profile whose values all come from the configuration.

use std::fmt;

use crate::proto::sasl::Mechanism;

/// Which built-in profile an account uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Google,
    Microsoft,
    /// Every endpoint and the scope come from the configuration.
    Generic,
}

impl ProviderKind {
    /// The names accepted by `oauth_provider`.
    pub const NAMES: &'static str = "google, microsoft or generic";

    pub fn from_name(name: &str) -> Option<ProviderKind> {
        match name.to_ascii_lowercase().as_str() {
            "google" | "gmail" => Some(ProviderKind::Google),
            "microsoft" | "outlook" | "office365" | "microsoft365" => Some(ProviderKind::Microsoft),
            "generic" => Some(ProviderKind::Generic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Google => "google",
            ProviderKind::Microsoft => "microsoft",
            ProviderKind::Generic => "generic",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The resolved endpoints and parameters of one provider for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub kind: ProviderKind,
    /// Where the browser is sent (authorization-code flow).
    pub authorize_url: Option<String>,
    /// Where codes, device codes and refresh tokens are exchanged for access tokens.
    pub token_url: String,
    /// RFC 8628 device authorization endpoint.
    pub device_url: Option<String>,
    /// Space-separated scopes; they must include what keeps a refresh token coming
    /// (Microsoft: `offline_access`).
    pub scope: String,
    /// The mechanism the provider's mail servers expect when `auth` does not name one.
    pub mechanism: Mechanism,
    /// Extra parameters of the authorization request (Google only issues a refresh token to
    /// a request that asks for offline access).
    pub authorize_extra: &'static [(&'static str, &'static str)],
}

/// What the configuration may override; `None` takes the profile's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides<'a> {
    pub authorize_url: Option<&'a str>,
    pub token_url: Option<&'a str>,
    pub device_url: Option<&'a str>,
    pub scope: Option<&'a str>,
    /// Microsoft's directory: `common` (default), `organizations`, `consumers` or a tenant id.
    pub tenant: Option<&'a str>,
}

/// Google's mail scope covers IMAP, POP3 and SMTP alike.
const GOOGLE_SCOPE: &str = "https://mail.google.com/";
/// Microsoft 365 needs one scope per protocol, plus `offline_access` for a refresh token.
const MICROSOFT_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All \
https://outlook.office.com/POP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access";

impl Profile {
    /// The profile of `kind` with the configuration's overrides applied. The generic profile
    /// needs at least a token endpoint and a scope.
    pub fn resolve(kind: ProviderKind, o: &Overrides<'_>) -> Result<Profile, String> {
        let own = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
        let profile = match kind {
            ProviderKind::Google => Profile {
                kind,
                authorize_url: own(o.authorize_url)
                    .or_else(|| Some("https://accounts.google.com/o/oauth2/v2/auth".into())),
                token_url: own(o.token_url)
                    .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
                device_url: own(o.device_url)
                    .or_else(|| Some("https://oauth2.googleapis.com/device/code".into())),
                scope: own(o.scope).unwrap_or_else(|| GOOGLE_SCOPE.into()),
                mechanism: Mechanism::XOAuth2,
                authorize_extra: &[("access_type", "offline"), ("prompt", "consent")],
            },
            ProviderKind::Microsoft => {
                let tenant = o.tenant.filter(|t| !t.is_empty()).unwrap_or("common");
                if !tenant
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                {
                    return Err(format!("invalid oauth_tenant {tenant:?}"));
                }
                let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
                Profile {
                    kind,
                    authorize_url: own(o.authorize_url)
                        .or_else(|| Some(format!("{base}/authorize"))),
                    token_url: own(o.token_url).unwrap_or_else(|| format!("{base}/token")),
                    device_url: own(o.device_url).or_else(|| Some(format!("{base}/devicecode"))),
                    scope: own(o.scope).unwrap_or_else(|| MICROSOFT_SCOPE.into()),
                    mechanism: Mechanism::XOAuth2,
                    authorize_extra: &[],
                }
            }
            ProviderKind::Generic => Profile {
                kind,
                authorize_url: own(o.authorize_url),
                token_url: own(o.token_url).ok_or(
                    "oauth_provider generic needs oauth_token_url (and oauth_device_url or \
                     oauth_authorize_url for the authorization)",
                )?,
                device_url: own(o.device_url),
                scope: own(o.scope).unwrap_or_default(),
                mechanism: Mechanism::OAuthBearer,
                authorize_extra: &[],
            },
        };
        for url in [
            Some(&profile.token_url),
            profile.authorize_url.as_ref(),
            profile.device_url.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            check_endpoint(url)?;
        }
        Ok(profile)
    }
}

/// An endpoint must be `https://`, or `http://` to a loopback address (a local test or
/// development server): tokens and client secrets travel in these requests.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        if host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        {
            return Ok(());
        }
    }
    Err(format!(
        "OAuth2 endpoint {url:?} must use https:// (plain http:// only to a loopback address)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_and_overrides() {
        let g = Profile::resolve(ProviderKind::Google, &Overrides::default()).unwrap();
        assert_eq!(g.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(g.scope, "https://mail.google.com/");
        assert_eq!(g.mechanism, Mechanism::XOAuth2);
        let m = Profile::resolve(
            ProviderKind::Microsoft,
            &Overrides {
                tenant: Some("contoso.onmicrosoft.com"),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            m.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert!(m.scope.contains("offline_access") && m.scope.contains("SMTP.Send"));
        let bad = Overrides {
            tenant: Some("x/../y"),
            ..Default::default()
        };
        assert!(Profile::resolve(ProviderKind::Microsoft, &bad).is_err());
        assert!(Profile::resolve(ProviderKind::Generic, &Overrides::default()).is_err());
        let g = Profile::resolve(
            ProviderKind::Generic,
            &Overrides {
                token_url: Some("http://127.0.0.1:9/token"),
                scope: Some("mail"),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(g.mechanism, Mechanism::OAuthBearer);
    }

    #[test]
    fn endpoints_need_https_unless_loopback() {
        assert!(check_endpoint("https://example.org/token").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080/token").is_ok());
        assert!(check_endpoint("http://[::1]:8080/token").is_ok());
        assert!(check_endpoint("http://localhost/token").is_ok());
        assert!(check_endpoint("http://example.org/token").is_err());
        assert!(check_endpoint("http://127.0.0.1.example.org/token").is_err());
        assert!(check_endpoint("ftp://127.0.0.1/").is_err());
    }
}
