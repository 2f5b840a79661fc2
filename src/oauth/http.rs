//! The one HTTP exchange OAuth2 needs: a form POST to a provider endpoint, answered with a
//! bounded JSON object. Blocking (ureq over rustls with ring and the system roots), with a
//! deadline on the whole call, no redirects (a redirect would resend the form, secrets and all,
//! to another place) and nothing secret in the debug log.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value};

/// An answer larger than this is not a token response.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// What went wrong talking to an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer within the deadline, or the connection failed: worth retrying later.
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    /// An answer that is not a JSON object (an HTML error page, garbage, too large).
    #[error("{url}: HTTP {status}: the answer is not a JSON object ({message})")]
    Garbage {
        url: String,
        status: u16,
        message: String,
    },
}

/// A JSON answer and its HTTP status.
#[derive(Debug)]
pub struct JsonReply {
    pub status: u16,
    pub body: Map<String, Value>,
}

impl JsonReply {
    /// A string member, when present and a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }

    /// An integer member (some servers send numbers as strings).
    pub fn u64(&self, key: &str) -> Option<u64> {
        match self.body.get(key)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// `direct`: no proxy even when the environment names one (plain http:// endpoints, which are
/// loopback only: the form would cross the proxy in clear text).
fn agent(timeout: Duration, direct: bool) -> ureq::Agent {
    static ROOTS: OnceLock<Arc<Vec<ureq::tls::Certificate<'static>>>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        Arc::new(
            loaded
                .certs
                .iter()
                .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
                .collect(),
        )
    });
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(roots.clone()))
        .unversioned_rustls_crypto_provider(crate::net::crypto_provider())
        .build();
    let mut config = ureq::Agent::config_builder();
    if direct {
        config = config.proxy(None);
    }
    ureq::Agent::new_with_config(
        config
            .tls_config(tls)
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("postie/", env!("CARGO_PKG_VERSION")))
            .build(),
    )
}

/// POSTs `form` (application/x-www-form-urlencoded) to `url` and reads the JSON object
/// answered, whatever the HTTP status (OAuth2 errors come as 400 with a JSON body).
/// `what` names the request in the debug log, which never shows the form's values.
pub fn post_form(
    url: &str,
    form: &[(&str, &str)],
    timeout: Duration,
    what: &str,
) -> Result<JsonReply, HttpError> {
    log::debug!(target: crate::log::WIRE, "OAuth2: POST {url} ({what})");
    let transport = |message: String| HttpError::Transport {
        url: url.to_owned(),
        message,
    };
    let response = agent(timeout, url.starts_with("http://"))
        .post(url)
        .header("Accept", "application/json")
        .send_form(form.iter().copied())
        .map_err(|e| transport(describe(&e)))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) | ureq::Error::Io(_) => transport(describe(&e)),
            other => HttpError::Garbage {
                url: url.to_owned(),
                status,
                message: describe(&other),
            },
        })?;
    log::debug!(target: crate::log::WIRE, "OAuth2: HTTP {status} from {url}");
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(body)) => Ok(JsonReply { status, body }),
        Ok(_) => Err(HttpError::Garbage {
            url: url.to_owned(),
            status,
            message: "not an object".into(),
        }),
        Err(e) => Err(HttpError::Garbage {
            url: url.to_owned(),
            status,
            message: format!(
                "{} at line {} column {}",
                e.classify_name(),
                e.line(),
                e.column()
            ),
        }),
    }
}

/// A transport error in words that never quote the answer (which a server controls).
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "no answer in time".into(),
        ureq::Error::Io(io) => format!("connection failed: {}", io.kind()),
        ureq::Error::BodyExceedsLimit(n) => format!("answer longer than {n} bytes"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Tls(m) => format!("TLS failed: {m}"),
        ureq::Error::Rustls(r) => format!("TLS failed: {r}"),
        other => format!("HTTP failed: {}", other),
    }
}

trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}
