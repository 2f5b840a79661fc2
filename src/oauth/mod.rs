//! OAuth2 access tokens for mail logins (XOAUTH2, OAUTHBEARER): the grant an account names,
//! the cached access token or a refresh of it before a session ([`access_token`]), and the
//! interactive authorizations that store a refresh token in the first place ([`flow`]).

pub mod flow;
pub mod http;
pub mod provider;
pub mod store;

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ErrorKind;
pub use provider::{Overrides, Profile, ProviderKind};
pub use store::{StoreError, StoredTokens, TokenFile};

/// A token longer than this is not one.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Everything needed to obtain an access token for one login: the provider, the client and
/// the grant's token file. `Debug` leaves the client secret out.
#[derive(Clone)]
pub struct Grant {
    pub profile: Profile,
    pub client_id: String,
    /// Google and Microsoft "installed app" clients may have one; it is not a real secret
    /// there, but it is kept out of logs anyway.
    pub client_secret: Option<String>,
    /// The mail login the grant is for (told to the provider as a login hint).
    pub user: String,
    pub token_file: TokenFile,
    /// Bound on each HTTP exchange.
    pub timeout: Duration,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("profile", &self.profile)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("user", &self.user)
            .field("token_file", &self.token_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "no OAuth2 authorization for {user} yet (token file {path}): run `postie oauth login --user {user}` once"
    )]
    NotAuthorized { user: String, path: String },
    #[error(
        "the OAuth2 authorization for {user} was revoked or has expired ({error}): run `postie oauth login --user {user}` to authorize again"
    )]
    GrantRevoked { user: String, error: String },
    #[error(
        "the token file {path} belongs to another OAuth2 client or provider: run `postie oauth login --user {user}` to authorize this one"
    )]
    WrongGrant { user: String, path: String },
    #[error("the OAuth2 server refused: {error}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("the OAuth2 server answered HTTP {status} without a usable token")]
    BadAnswer { status: u16 },
    #[error("OAuth2 endpoint {0}")]
    Http(#[from] http::HttpError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the OAuth2 authorization was not completed: {0}")]
    Flow(String),
    #[error("{0}")]
    Config(String),
}

impl OAuthError {
    /// The crate error kind: a missing or revoked grant needs the user (permanent); a
    /// server that does not answer may answer later (transient).
    pub fn kind(&self) -> ErrorKind {
        match self {
            OAuthError::NotAuthorized { .. }
            | OAuthError::GrantRevoked { .. }
            | OAuthError::WrongGrant { .. }
            | OAuthError::Refused { .. }
            | OAuthError::Flow(_) => ErrorKind::Auth,
            OAuthError::BadAnswer { status } if *status >= 500 => ErrorKind::RejectedTemporary,
            OAuthError::BadAnswer { .. } => ErrorKind::Protocol,
            OAuthError::Http(http::HttpError::Transport { .. }) => ErrorKind::Timeout,
            OAuthError::Http(http::HttpError::Garbage { status, .. }) if *status >= 500 => {
                ErrorKind::RejectedTemporary
            }
            OAuthError::Http(http::HttpError::Garbage { .. }) => ErrorKind::Protocol,
            OAuthError::Config(_) => ErrorKind::Config,
            OAuthError::Store(StoreError::Io { .. }) => ErrorKind::LocalIo,
            OAuthError::Store(StoreError::Keyring(
                crate::account::keyring::KeyringError::TimedOut,
            )) => ErrorKind::Timeout,
            OAuthError::Store(StoreError::Keyring(_)) => ErrorKind::Config,
            OAuthError::Store(_) => ErrorKind::InsecureConfig,
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The default token file of a grant: `~/.local/state/postie/oauth/USER-HASH.json`, where
/// HASH covers the token endpoint, the client and the user, so every account (and both
/// directions) logging in as the same user with the same client shares one grant.
pub fn default_token_file(
    state_home: &std::path::Path,
    token_url: &str,
    client_id: &str,
    user: &str,
) -> PathBuf {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{token_url}\n{client_id}\n{user}").as_bytes(),
    );
    let hash: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@.-_+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    state_home.join(format!("{name}-{hash}.json"))
}

/// A token (access or refresh) as the server sent it: printable ASCII without spaces, so it
/// cannot break the SASL message (XOAUTH2 separates fields with ^A) or a log line.
fn checked_token(value: Option<&str>) -> Option<String> {
    value
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_BYTES)
        .filter(|t| t.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        .map(str::to_owned)
}

/// Server-controlled text for a message: printable ASCII only, bounded.
pub(crate) fn printable(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(max)
        .collect()
}

/// A token endpoint's answer: the new tokens, or why not.
struct TokenAnswer {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: u64,
}

/// Reads a token endpoint's JSON answer (RFC 6749 §5.1 and §5.2).
fn token_answer(reply: &http::JsonReply) -> Result<TokenAnswer, OAuthError> {
    if let Some(error) = reply.str("error") {
        return Err(OAuthError::Refused {
            error: printable(error, 64),
            description: reply.str("error_description").map(|d| printable(d, 200)),
        });
    }
    let token_type_ok = reply
        .str("token_type")
        .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
    match checked_token(reply.str("access_token")) {
        Some(access_token) if reply.status == 200 && token_type_ok => Ok(TokenAnswer {
            access_token,
            refresh_token: checked_token(reply.str("refresh_token")),
            expires_in: reply.u64("expires_in").unwrap_or(3600),
        }),
        _ => Err(OAuthError::BadAnswer {
            status: reply.status,
        }),
    }
}

impl Grant {
    fn form<'a>(&'a self, mut fields: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
        fields.push(("client_id", &self.client_id));
        if let Some(secret) = &self.client_secret {
            fields.push(("client_secret", secret));
        }
        fields
    }

    fn matches(&self, stored: &StoredTokens) -> bool {
        stored.token_url == self.profile.token_url && stored.client_id == self.client_id
    }

    /// Stores a new grant (after an interactive authorization).
    fn store_new(&self, answer: TokenAnswer) -> Result<(), OAuthError> {
        let refresh_token = answer.refresh_token.ok_or_else(|| {
            OAuthError::Flow(
                "the server issued no refresh token (the scope may lack offline access)".into(),
            )
        })?;
        let lock = self.token_file.lock()?;
        self.token_file.save(
            &StoredTokens {
                refresh_token,
                access_token: answer.access_token,
                renew_after: store::renew_after(now(), answer.expires_in),
                token_url: self.profile.token_url.clone(),
                client_id: self.client_id.clone(),
            },
            &lock,
        )?;
        Ok(())
    }
}

/// An access token for `grant`: the cached one while it is good, else a new one from the
/// refresh token (a rotated refresh token replaces the old one atomically). Threads and
/// processes asking at once for the same grant wait for one refresh and share its token.
pub fn access_token(grant: &Grant) -> Result<String, OAuthError> {
    let not_authorized = || OAuthError::NotAuthorized {
        user: grant.user.clone(),
        path: grant.token_file.path().display().to_string(),
    };
    let wrong = || OAuthError::WrongGrant {
        user: grant.user.clone(),
        path: grant.token_file.path().display().to_string(),
    };
    // Readers need no lock: the file is only ever replaced by rename.
    if let Some(stored) = grant.token_file.load()? {
        if !grant.matches(&stored) {
            return Err(wrong());
        }
        if let Some(token) = stored.usable_access_token(now()) {
            return Ok(token.to_owned());
        }
    }
    let lock = grant.token_file.lock()?;
    let stored = grant.token_file.load()?.ok_or_else(not_authorized)?;
    if !grant.matches(&stored) {
        return Err(wrong());
    }
    // Another thread or process may have refreshed while we waited for the lock.
    if let Some(token) = stored.usable_access_token(now()) {
        return Ok(token.to_owned());
    }
    let form = grant.form(vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", &stored.refresh_token),
    ]);
    let reply = http::post_form(
        &grant.profile.token_url,
        &form,
        grant.timeout,
        "refresh_token grant",
    )?;
    let answer = match token_answer(&reply) {
        Err(OAuthError::Refused { error, .. }) if error == "invalid_grant" => {
            return Err(OAuthError::GrantRevoked {
                user: grant.user.clone(),
                error,
            });
        }
        other => other?,
    };
    let rotated = answer.refresh_token.is_some();
    let renewed = StoredTokens {
        refresh_token: answer.refresh_token.unwrap_or(stored.refresh_token),
        access_token: answer.access_token,
        renew_after: store::renew_after(now(), answer.expires_in),
        token_url: stored.token_url,
        client_id: stored.client_id,
    };
    grant.token_file.save(&renewed, &lock)?;
    log::info!(
        "OAuth2: new access token for {} (valid {} s{})",
        grant.user,
        answer.expires_in,
        if rotated {
            ", refresh token rotated"
        } else {
            ""
        }
    );
    Ok(renewed.access_token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(status: u16, body: serde_json::Value) -> http::JsonReply {
        http::JsonReply {
            status,
            body: body.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn token_answers_are_checked() {
        let ok = token_answer(&reply(
            200,
            json!({"access_token": "at-1", "token_type": "Bearer", "expires_in": 60, "refresh_token": "rt-2"}),
        ))
        .unwrap();
        assert_eq!((ok.access_token.as_str(), ok.expires_in), ("at-1", 60));
        assert_eq!(ok.refresh_token.as_deref(), Some("rt-2"));
        // A token that would end the XOAUTH2 field (^A), a line, or carry a space is refused:
        // it goes into the SASL message and must not add fields to it.
        for bad in ["at\u{1}auth=Bearer x", "at\r\nA1 LOGOUT", "at x", "", "tök"] {
            assert!(
                matches!(
                    token_answer(&reply(200, json!({"access_token": bad}))),
                    Err(OAuthError::BadAnswer { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(
            token_answer(&reply(
                200,
                json!({"access_token": "a", "token_type": "mac"})
            ))
            .is_err()
        );
        assert!(token_answer(&reply(201, json!({"access_token": "a"}))).is_err());
        let e = token_answer(&reply(
            400,
            json!({"error": "invalid_grant\u{1b}[31m", "error_description": "Token\nrevoked"}),
        ))
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "the OAuth2 server refused: invalid_grant[31m (Tokenrevoked)"
        );
        // No expires_in: an hour, as most providers issue.
        assert_eq!(
            token_answer(&reply(200, json!({"access_token": "a"})))
                .unwrap()
                .expires_in,
            3600
        );
    }

    #[test]
    fn grant_debug_hides_the_client_secret() {
        let grant = Grant {
            profile: Profile::resolve(ProviderKind::Google, &Overrides::default()).unwrap(),
            client_id: "cid".into(),
            client_secret: Some("GOCSPX-secret".into()),
            user: "u".into(),
            token_file: TokenFile::new("/t".into()),
            timeout: Duration::from_secs(1),
        };
        let shown = format!("{grant:?}");
        assert!(
            shown.contains("cid") && !shown.contains("GOCSPX"),
            "{shown}"
        );
    }

    #[test]
    fn default_token_file_names_are_safe_and_distinct() {
        let base = std::path::Path::new("/s");
        let a = default_token_file(base, "https://t", "c", "../../etc/passwd");
        assert_eq!(a.parent(), Some(base));
        assert!(
            !a.to_string_lossy().contains(".."[..1].repeat(2).as_str()) || a.parent() == Some(base)
        );
        assert_ne!(
            a,
            default_token_file(base, "https://t", "c2", "../../etc/passwd")
        );
        assert_ne!(
            a,
            default_token_file(base, "https://u", "c", "../../etc/passwd")
        );
    }
}
