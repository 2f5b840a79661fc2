//! The interactive authorizations that produce a refresh token: the device flow (RFC 8628),
//! for machines without a browser, and the authorization-code flow with PKCE and a loopback
//! redirect (RFC 7636, RFC 8252), for machines with one.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Grant, OAuthError, http, printable, token_answer};

/// What the user is asked to do in the device flow.
#[derive(Debug, Clone)]
pub struct DevicePrompt {
    /// Where to go (server-provided; printable ASCII only).
    pub verification_uri: String,
    /// The code to type there.
    pub user_code: String,
    /// The same page with the code filled in, when the server offers it.
    pub verification_uri_complete: Option<String>,
}

/// Runs the device flow: asks for a device code, hands the prompt to `show`, then polls the
/// token endpoint at the server's interval until the user approved, refused, or the code
/// expired, and stores the grant.
pub fn device_login(grant: &Grant, show: &mut dyn FnMut(&DevicePrompt)) -> Result<(), OAuthError> {
    let device_url = grant.profile.device_url.as_deref().ok_or_else(|| {
        OAuthError::Flow(format!(
            "provider {} has no device authorization endpoint: set oauth_device_url, or use the browser flow",
            grant.profile.kind
        ))
    })?;
    let form = grant.form(vec![("scope", &grant.profile.scope)]);
    let reply = http::post_form(device_url, &form, grant.timeout, "device authorization")?;
    if let Some(error) = reply.str("error") {
        return Err(OAuthError::Refused {
            error: printable(error, 64),
            description: reply.str("error_description").map(|d| printable(d, 200)),
        });
    }
    let field = |k: &str| {
        reply
            .str(k)
            .map(|v| printable(v, 512))
            .filter(|v| !v.is_empty())
    };
    let (Some(device_code), Some(user_code), Some(verification_uri)) = (
        reply.str("device_code").map(str::to_owned),
        field("user_code"),
        // Google calls it verification_url.
        field("verification_uri").or_else(|| field("verification_url")),
    ) else {
        return Err(OAuthError::BadAnswer {
            status: reply.status,
        });
    };
    show(&DevicePrompt {
        verification_uri,
        user_code,
        verification_uri_complete: field("verification_uri_complete"),
    });
    let expires =
        Instant::now() + Duration::from_secs(reply.u64("expires_in").unwrap_or(600).min(3600));
    let mut interval = Duration::from_secs(reply.u64("interval").unwrap_or(5).clamp(1, 60));
    loop {
        if Instant::now() >= expires {
            return Err(OAuthError::Flow(
                "the device code expired before it was approved".into(),
            ));
        }
        std::thread::sleep(interval);
        let form = grant.form(vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", &device_code),
        ]);
        let reply = http::post_form(
            &grant.profile.token_url,
            &form,
            grant.timeout,
            "device_code grant",
        )?;
        match token_answer(&reply) {
            Ok(answer) => return grant.store_new(answer),
            Err(OAuthError::Refused { error, .. }) if error == "authorization_pending" => {}
            Err(OAuthError::Refused { error, .. }) if error == "slow_down" => {
                interval += Duration::from_secs(5);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Random bytes as base64url (PKCE verifier, state).
fn random_token(bytes: usize) -> Result<String, OAuthError> {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| OAuthError::Flow("no random numbers available".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Decodes a query value (`+` is a space); `None` for broken escapes or non-UTF-8.
fn decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query parameters of a request target (`/path?a=b&c=d`).
fn query_params(target: &str) -> Vec<(String, String)> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// A prepared authorization-code login: the loopback listener, the URL to open, and the PKCE
/// verifier and state that only this process knows.
pub struct BrowserLogin {
    listener: TcpListener,
    redirect_uri: String,
    verifier: String,
    state: String,
    pub url: String,
}

/// Binds the loopback redirect listener and builds the authorization URL.
pub fn browser_start(grant: &Grant) -> Result<BrowserLogin, OAuthError> {
    let authorize_url = grant.profile.authorize_url.as_deref().ok_or_else(|| {
        OAuthError::Flow(format!(
            "provider {} has no authorization endpoint: set oauth_authorize_url, or use --device",
            grant.profile.kind
        ))
    })?;
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| OAuthError::Flow(format!("cannot listen on 127.0.0.1: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| OAuthError::Flow(e.to_string()))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/");
    let verifier = random_token(32)?;
    let state = random_token(16)?;
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &grant.client_id),
        ("redirect_uri", &redirect_uri),
        ("scope", &grant.profile.scope),
        ("state", &state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("login_hint", &grant.user),
    ];
    params.extend_from_slice(grant.profile.authorize_extra);
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let sep = if authorize_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{authorize_url}{sep}{}", query.join("&"));
    Ok(BrowserLogin {
        listener,
        redirect_uri,
        verifier,
        state,
        url,
    })
}

impl BrowserLogin {
    /// Waits (up to `wait`) for the browser to come back to the loopback address with a code
    /// and this login's state, exchanges the code with the PKCE verifier and stores the grant.
    /// Requests without the right state (another local program guessing) are answered and
    /// ignored.
    pub fn finish(self, grant: &Grant, wait: Duration) -> Result<(), OAuthError> {
        let deadline = Instant::now() + wait;
        self.listener
            .set_nonblocking(true)
            .map_err(|e| OAuthError::Flow(e.to_string()))?;
        loop {
            if Instant::now() >= deadline {
                return Err(OAuthError::Flow(
                    "no answer from the browser in time".into(),
                ));
            }
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                Err(e) => return Err(OAuthError::Flow(e.to_string())),
            };
            match self.redirect(stream) {
                Some(Ok(code)) => {
                    let form = grant.form(vec![
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", &self.redirect_uri),
                        ("code_verifier", &self.verifier),
                    ]);
                    let reply = http::post_form(
                        &grant.profile.token_url,
                        &form,
                        grant.timeout,
                        "authorization_code grant",
                    )?;
                    return grant.store_new(token_answer(&reply)?);
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
    }

    /// Reads one request on the redirect listener. `Some(Ok(code))` for the redirect of this
    /// login, `Some(Err)` when the provider reported a refusal for it, `None` for anything else.
    fn redirect(&self, stream: TcpStream) -> Option<Result<String, OAuthError>> {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        let mut reader = BufReader::new(std::io::Read::take(&stream, 8192));
        reader.read_line(&mut line).ok()?;
        let target = line.strip_prefix("GET ")?.split(' ').next()?.to_owned();
        let params = query_params(&target);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let ours = get("state") == Some(self.state.as_str());
        let result = match (ours, get("code"), get("error")) {
            (true, Some(code), _) => Some(Ok(code.to_owned())),
            (true, None, Some(error)) => Some(Err(OAuthError::Refused {
                error: printable(error, 64),
                description: get("error_description").map(|d| printable(d, 200)),
            })),
            _ => None,
        };
        let body = match &result {
            Some(Ok(_)) => "postie is authorized. You can close this window.",
            Some(Err(_)) => "The authorization was refused. See the terminal.",
            None => "Not a postie authorization.",
        };
        let mut out = &stream;
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding_round_trips() {
        assert_eq!(encode("a b/c&d=é"), "a%20b%2Fc%26d%3D%C3%A9");
        assert_eq!(decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
        let p = query_params("/?code=x%2By&state=s&flag");
        assert_eq!(
            p,
            vec![
                ("code".into(), "x+y".into()),
                ("state".into(), "s".into()),
                ("flag".into(), "".into())
            ]
        );
    }
}
