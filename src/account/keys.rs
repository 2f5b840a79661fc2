//! The settings vocabulary: msmtprc's directive names (and the fetch keys of the native TOML)
//! applied to the model, one `key argument` at a time. Both readers and the command line go
//! through here, so a key means the same thing wherever it is written.

use std::net::IpAddr;
use std::time::Duration;

use super::{
    AuthSetting, DsnNotify, DsnReturn, Env, FetchSettings, HeaderPolicy, LogFile, Provenance,
    QueueMode, Secret, ServerSettings, Sourced, SubmitProtocol, SubmitSettings, SyslogFacility,
    Target, ToHeaderPolicy, TrustFile,
};
use crate::net::Endpoint;

/// Why a key could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not a key of this vocabulary.
    Unknown,
    /// A known key with a bad argument; the message says what is wrong.
    Invalid(String),
}

/// What applying a key produced besides the change itself.
pub type Applied = Result<Option<String>, KeyError>;

/// The mechanism names msmtp accepts for `auth` (the session decides which ones we implement).
pub const AUTH_METHODS: &[&str] = &[
    "plain",
    "scram-sha-1",
    "scram-sha-1-plus",
    "scram-sha-256",
    "scram-sha-256-plus",
    "cram-md5",
    "digest-md5",
    "login",
    "ntlm",
    "gssapi",
    "external",
    "oauthbearer",
    "xoauth2",
];

fn invalid(key: &str, arg: &str) -> KeyError {
    KeyError::Invalid(format!("invalid argument {arg:?} for {key}"))
}

/// An empty argument to an on/off command means on (msmtp).
pub fn parse_on_off(key: &str, arg: &str) -> Result<bool, KeyError> {
    match arg {
        "" | "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(KeyError::Invalid(format!(
            "invalid argument {arg:?} for {key}: use on or off"
        ))),
    }
}

fn needs_arg<'a>(key: &str, arg: &'a str) -> Result<&'a str, KeyError> {
    if arg.is_empty() {
        Err(KeyError::Invalid(format!("{key} needs an argument")))
    } else {
        Ok(arg)
    }
}

/// A SHA-256 fingerprint as colon-separated hex (colons optional). SHA-1 and MD5 lengths get
/// their own message: msmtp still accepts them, we do not.
pub fn parse_fingerprint(arg: &str) -> Result<[u8; 32], KeyError> {
    let hex: String = arg.chars().filter(|c| *c != ':').collect();
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let bytes = bytes
        .filter(|_| hex.len().is_multiple_of(2) && hex.is_ascii())
        .ok_or_else(|| {
            KeyError::Invalid(format!(
                "invalid tls_fingerprint {arg:?}: expected SHA-256 as colon-separated hex"
            ))
        })?;
    match bytes.len() {
        32 => {
            let mut fp = [0u8; 32];
            fp.copy_from_slice(&bytes);
            Ok(fp)
        }
        20 | 16 => Err(KeyError::Invalid(format!(
            "tls_fingerprint: {} fingerprints are not supported, use the SHA-256 fingerprint \
             (rsend --serverinfo prints it)",
            if bytes.len() == 20 { "SHA-1" } else { "MD5" }
        ))),
        n => Err(KeyError::Invalid(format!(
            "invalid tls_fingerprint: {n} bytes, a SHA-256 fingerprint has 32"
        ))),
    }
}

/// The largest number of seconds a configuration file or command line may give for a duration
/// (`set daemon`, `timeout`, `idletimeout`, `interval`, ...): 2^31-1, about 68 years.
/// fetchmail keeps these in a C `int`, so no larger value ever worked there; and a value near
/// the top of u64 cannot be added to the clock at all (a panic where the deadline is computed).
pub const MAX_SECONDS: u64 = i32::MAX as u64;

/// `Err` with the reason when `seconds` is above [`MAX_SECONDS`].
pub fn check_seconds(seconds: u64) -> Result<u64, String> {
    if seconds > MAX_SECONDS {
        Err(format!(
            "{seconds} seconds is too long (at most {MAX_SECONDS}, about 68 years)"
        ))
    } else {
        Ok(seconds)
    }
}

fn parse_timeout(key: &str, arg: &str) -> Result<Option<Duration>, KeyError> {
    match arg {
        "off" => Ok(None),
        _ => match arg.parse::<u64>() {
            Ok(0) | Err(_) => Err(KeyError::Invalid(format!(
                "invalid argument {arg:?} for {key}: use off or a number of seconds"
            ))),
            Ok(n) => check_seconds(n)
                .map(|n| Some(Duration::from_secs(n)))
                .map_err(|m| KeyError::Invalid(format!("{key}: {m}"))),
        },
    }
}

/// `host:port` (IPv6 literals in brackets: `[::1]:24`).
pub fn parse_host_port(key: &str, arg: &str) -> Result<Endpoint, KeyError> {
    let bad = || KeyError::Invalid(format!("invalid argument {arg:?} for {key}: use HOST:PORT"));
    let (host, port) = arg.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(Endpoint {
        host: host.to_owned(),
        port,
    })
}

fn sourced<T>(value: T, at: &Provenance) -> Option<Sourced<T>> {
    Some(Sourced::new(value, at.clone()))
}

/// Applies one server/credential/TLS key shared by both directions.
pub fn set_server(
    s: &mut ServerSettings,
    key: &str,
    arg: &str,
    at: &Provenance,
    env: &Env,
) -> Applied {
    match key {
        "host" => s.host = sourced(needs_arg(key, arg)?.to_owned(), at),
        "port" => {
            let port = match needs_arg(key, arg)?.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(invalid(key, arg)),
            };
            s.port = sourced(port, at);
        }
        "source_ip" => {
            let ip = if arg.is_empty() {
                None
            } else {
                Some(arg.parse::<IpAddr>().map_err(|_| invalid(key, arg))?)
            };
            s.source_ip = sourced(ip, at);
        }
        "timeout" | "connect_timeout" => s.timeout = sourced(parse_timeout(key, arg)?, at),
        // An empty proxy_host unsets the proxy (msmtp); the port defaults to 1080.
        "proxy_host" => s.proxy_host = sourced(arg.to_owned(), at),
        "proxy_port" => {
            let port = match arg {
                "" => None,
                p => match p.parse::<u16>() {
                    Ok(p) if p > 0 => Some(p),
                    _ => return Err(invalid(key, arg)),
                },
            };
            s.proxy_port = sourced(port, at);
        }
        "proxy_user" => s.proxy_user = sourced(arg.to_owned(), at),
        "proxy_password" => s.proxy_password = sourced(Secret::Inline(arg.to_owned()), at),
        "auth" => {
            let auth = match arg {
                "" | "on" => AuthSetting::Auto,
                "off" => AuthSetting::Off,
                m if AUTH_METHODS.contains(&m.to_ascii_lowercase().as_str()) => {
                    AuthSetting::Method(m.to_ascii_uppercase())
                }
                _ => {
                    return Err(KeyError::Invalid(format!(
                        "invalid argument {arg:?} for auth: use on, off or a method ({})",
                        AUTH_METHODS.join(", ")
                    )));
                }
            };
            s.auth = sourced(auth, at);
        }
        "user" => s.user = sourced(arg.to_owned(), at),
        "password" => s.password = sourced(Secret::Inline(arg.to_owned()), at),
        "passwordeval" => {
            // An empty passwordeval unsets it (the next source applies).
            s.password = if arg.is_empty() {
                None
            } else {
                sourced(Secret::Command(arg.to_owned()), at)
            };
        }
        "passwordkeyring" => {
            // Like passwordeval: an empty argument unsets it.
            s.password = if arg.is_empty() || arg == "off" {
                None
            } else {
                let attrs = super::keyring::parse_attributes(arg).map_err(KeyError::Invalid)?;
                sourced(Secret::Keyring(attrs), at)
            };
        }
        "oauth_provider" => {
            s.oauth.provider = if arg.is_empty() || arg == "off" {
                None
            } else {
                let kind = crate::oauth::ProviderKind::from_name(arg).ok_or_else(|| {
                    KeyError::Invalid(format!(
                        "invalid argument {arg:?} for oauth_provider: use {}",
                        crate::oauth::ProviderKind::NAMES
                    ))
                })?;
                sourced(kind, at)
            };
        }
        "oauth_client_id" => s.oauth.client_id = sourced(arg.to_owned(), at),
        "oauth_client_secret" => {
            s.oauth.client_secret = sourced(Secret::Inline(arg.to_owned()), at);
        }
        "oauth_client_secret_eval" => {
            s.oauth.client_secret = sourced(Secret::Command(needs_arg(key, arg)?.to_owned()), at);
        }
        "oauth_scope" => s.oauth.scope = sourced(arg.to_owned(), at),
        "oauth_authorize_url" | "oauth_token_url" | "oauth_device_url" => {
            if !arg.is_empty() {
                crate::oauth::provider::check_endpoint(arg).map_err(KeyError::Invalid)?;
            }
            let v = sourced(arg.to_owned(), at);
            match key {
                "oauth_authorize_url" => s.oauth.authorize_url = v,
                "oauth_token_url" => s.oauth.token_url = v,
                _ => s.oauth.device_url = v,
            }
        }
        "oauth_tenant" => s.oauth.tenant = sourced(arg.to_owned(), at),
        "oauth_token_store" => {
            let in_keyring = match arg {
                "keyring" => true,
                "file" | "" => false,
                _ => {
                    return Err(KeyError::Invalid(format!(
                        "invalid argument {arg:?} for oauth_token_store: use file or keyring"
                    )));
                }
            };
            s.oauth.token_in_keyring = sourced(in_keyring, at);
        }
        "oauth_token_file" => {
            s.oauth.token_file = sourced(env.expand_tilde(needs_arg(key, arg)?), at)
        }
        "tls" => s.tls = sourced(parse_on_off(key, arg)?, at),
        "tls_starttls" => s.tls_starttls = sourced(parse_on_off(key, arg)?, at),
        "tls_nostarttls" => s.tls_starttls = sourced(false, at),
        "tls_trust_file" => {
            let v = match arg {
                "" => TrustFile::Empty,
                "system" => TrustFile::System,
                p => TrustFile::Path(env.expand_tilde(p)),
            };
            s.tls_trust_file = sourced(v, at);
        }
        "tls_fingerprint" => {
            // The last tls_fingerprint wins, whatever its digest.
            s.tls_fingerprint_legacy = None;
            if let Some(legacy) = crate::net::LegacyPin::parse(arg) {
                // msmtp still accepts SHA-1 and MD5 (deprecated): checked, with the advice.
                s.tls_fingerprint = sourced(None, at);
                s.tls_fingerprint_legacy = sourced(legacy, at);
                return Ok(Some(format!(
                    "tls_fingerprint is {}, a digest that can be forged; it is checked, and once \
                     the server's certificate matches, the SHA-256 to pin instead is printed \
                     (rsend --serverinfo prints it too)",
                    legacy.algorithm()
                )));
            }
            let v = if arg.is_empty() {
                None
            } else {
                Some(parse_fingerprint(arg)?)
            };
            s.tls_fingerprint = sourced(v, at);
        }
        "tls_certcheck" => s.tls_certcheck = sourced(parse_on_off(key, arg)?, at),
        "tls_nocertcheck" => s.tls_certcheck = sourced(false, at),
        "tls_key_file" => s.tls_key_file = sourced(env.expand_tilde(arg), at),
        "tls_cert_file" => s.tls_cert_file = sourced(env.expand_tilde(arg), at),
        "tls_host_override" => s.tls_host_override = sourced(arg.to_owned(), at),
        "danger_plaintext_auth" => {
            s.danger_plaintext_auth = sourced(parse_on_off(key, arg)?, at);
        }
        _ => return Err(KeyError::Unknown),
    }
    Ok(None)
}

/// Applies one msmtprc directive (other than `account`, `defaults`, `eval`) to submit settings.
/// `Ok(Some(warning))` for directives accepted but not implemented.
pub fn set_submit(
    s: &mut SubmitSettings,
    key: &str,
    arg: &str,
    at: &Provenance,
    env: &Env,
) -> Applied {
    match set_server(&mut s.server, key, arg, at, env) {
        Err(KeyError::Unknown) => {}
        other => return other,
    }
    let header = |arg: &str, on_allowed: bool| -> Result<HeaderPolicy, KeyError> {
        match arg {
            "auto" => Ok(HeaderPolicy::Auto),
            "on" if on_allowed => Ok(HeaderPolicy::On),
            "off" => Ok(HeaderPolicy::Off),
            _ => Err(invalid(key, arg)),
        }
    };
    match key {
        "socket" => s.socket = sourced(env.expand_tilde(arg), at),
        "protocol" => {
            let p = match arg {
                "smtp" => SubmitProtocol::Smtp,
                "lmtp" => SubmitProtocol::Lmtp,
                _ => return Err(invalid(key, arg)),
            };
            s.protocol = sourced(p, at);
        }
        "domain" => s.domain = sourced(arg.to_owned(), at),
        "from" => s.from = sourced(arg.to_owned(), at),
        "from_full_name" => s.from_full_name = sourced(arg.to_owned(), at),
        "allow_from_override" => s.allow_from_override = sourced(parse_on_off(key, arg)?, at),
        "dsn_notify" => {
            let v = match arg {
                "off" | "" => DsnNotify::Off,
                "never" => DsnNotify::Never,
                list => {
                    let (mut failure, mut delay, mut success) = (false, false, false);
                    for item in list.split(',').map(str::trim) {
                        match item {
                            "failure" => failure = true,
                            "delay" => delay = true,
                            "success" => success = true,
                            _ => return Err(invalid(key, arg)),
                        }
                    }
                    DsnNotify::On {
                        failure,
                        delay,
                        success,
                    }
                }
            };
            s.dsn_notify = sourced(v, at);
        }
        "dsn_return" => {
            let v = match arg {
                "off" | "" => DsnReturn::Off,
                "hdrs" | "headers" => DsnReturn::Headers,
                "full" => DsnReturn::Full,
                _ => return Err(invalid(key, arg)),
            };
            s.dsn_return = sourced(v, at);
        }
        "set_from_header" => s.set_from_header = sourced(header(arg, true)?, at),
        "add_missing_from_header" => {
            let on = parse_on_off(key, arg)?;
            s.set_from_header = sourced(
                if on {
                    HeaderPolicy::Auto
                } else {
                    HeaderPolicy::Off
                },
                at,
            );
        }
        "set_date_header" => s.set_date_header = sourced(header(arg, false)?, at),
        "add_missing_date_header" => {
            let on = parse_on_off(key, arg)?;
            s.set_date_header = sourced(
                if on {
                    HeaderPolicy::Auto
                } else {
                    HeaderPolicy::Off
                },
                at,
            );
        }
        "set_msgid_header" => s.set_msgid_header = sourced(header(arg, false)?, at),
        "set_to_header" => {
            let v = match arg {
                "on" | "" => ToHeaderPolicy::On,
                "off" => ToHeaderPolicy::Off,
                "undisclosed_recipients" => ToHeaderPolicy::UndisclosedRecipients,
                _ => return Err(invalid(key, arg)),
            };
            s.set_to_header = sourced(v, at);
        }
        "undisclosed_recipients" => {
            let v = if parse_on_off(key, arg)? {
                ToHeaderPolicy::UndisclosedRecipients
            } else {
                ToHeaderPolicy::Off
            };
            s.set_to_header = sourced(v, at);
        }
        "remove_bcc_headers" => s.remove_bcc_headers = sourced(parse_on_off(key, arg)?, at),
        "keepbcc" => s.remove_bcc_headers = sourced(!parse_on_off(key, arg)?, at),
        "logfile" => {
            let v = match arg {
                "" => None,
                "-" => Some(LogFile::Stdout),
                p => Some(LogFile::Path(env.expand_tilde(p))),
            };
            s.logfile = sourced(v, at);
        }
        "logfile_time_format" => {
            let v = match arg {
                "none" => None,
                "" => Some("%b %d %H:%M:%S".to_owned()),
                f => {
                    // Checked here: an unknown conversion would only fail when the log line
                    // is written, after the message was sent.
                    use chrono::format::{Item, StrftimeItems};
                    if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
                        return Err(KeyError::Invalid(format!(
                            "invalid argument {f:?} for {key}: not a strftime format \
                             (use none to log without a time)"
                        )));
                    }
                    Some(f.to_owned())
                }
            };
            s.logfile_time_format = sourced(v, at);
        }
        "syslog" => {
            let v = match arg {
                "" | "on" => Some(SyslogFacility::User),
                "off" => None,
                "LOG_USER" => Some(SyslogFacility::User),
                "LOG_MAIL" => Some(SyslogFacility::Mail),
                f => match f
                    .strip_prefix("LOG_LOCAL")
                    .and_then(|n| n.parse::<u8>().ok())
                {
                    Some(n) if n <= 7 => Some(SyslogFacility::Local(n)),
                    _ => return Err(invalid(key, arg)),
                },
            };
            s.syslog = sourced(v, at);
        }
        "aliases" => s.aliases = sourced(env.expand_tilde(arg), at),
        // postie extensions (msmtp rejects these keys): rsend's queue.
        "queue" => {
            let v = match arg {
                "off" => QueueMode::Off,
                "transient" | "on" | "" => QueueMode::Transient,
                "always" => QueueMode::Always,
                _ => {
                    return Err(KeyError::Invalid(format!(
                        "invalid argument {arg:?} for queue: use off, transient or always"
                    )));
                }
            };
            s.queue = sourced(v, at);
        }
        "queue_dir" => s.queue_dir = sourced(env.expand_tilde(arg), at),
        "queue_max_age" => {
            let v = parse_age(arg).ok_or_else(|| {
                KeyError::Invalid(format!(
                    "invalid argument {arg:?} for queue_max_age: use a number with s, m, h or d \
                     (5d)"
                ))
            })?;
            s.queue_max_age = sourced(v, at);
        }
        // Accepted for compatibility, silently: msmtp itself ignores it.
        "tls_force_sslv3" => {}
        "tls_priorities"
        | "tls_crl_file"
        | "tls_min_dh_prime_bits"
        | "ntlmdomain"
        | "auto_from"
        | "maildomain" => {
            s.ignored.push(Sourced::new(key.to_owned(), at.clone()));
            let why = match key {
                "auto_from" | "maildomain" => "obsolete; use from with %U/%H/%M patterns",
                "ntlmdomain" => "obsolete",
                _ => "not supported by rsend",
            };
            return Ok(Some(format!("{key} is ignored ({why})")));
        }
        _ => return Err(KeyError::Unknown),
    }
    Ok(None)
}

/// `30s`, `15m`, `12h`, `5d`, or a plain number of seconds; at least one second.
pub fn parse_age(arg: &str) -> Option<Duration> {
    let (digits, unit) = match arg.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => arg.split_at(i),
        None => (arg, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    let secs = n.checked_mul(scale)?;
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// An argument as the TOML reader hands it over: a scalar rendered as text, or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    Text(String),
    List(Vec<String>),
}

/// Applies one fetch key (native TOML `[accounts.NAME.fetch]`): the shared server keys plus
/// `keep`, `fetchall`, `idle`, `folders` and the target (`maildir`, `mbox`, `mda`, `lmtp`,
/// `smtp`). `protocol` is handled by the reader, which needs it to build the settings.
pub fn set_fetch(
    f: &mut FetchSettings,
    key: &str,
    arg: &KeyValue,
    at: &Provenance,
    env: &Env,
) -> Applied {
    let text = |arg: &KeyValue| -> Result<String, KeyError> {
        match arg {
            KeyValue::Text(t) => Ok(t.clone()),
            KeyValue::List(_) => Err(KeyError::Invalid(format!(
                "{key} takes one value, not a list"
            ))),
        }
    };
    match key {
        "folders" => {
            let list = match arg {
                KeyValue::List(l) => l.clone(),
                KeyValue::Text(t) => vec![t.clone()],
            };
            f.folders = sourced(list, at);
        }
        "mda" => {
            let argv = match arg {
                KeyValue::List(l) if !l.is_empty() && !l[0].is_empty() => l.clone(),
                KeyValue::List(_) => {
                    return Err(KeyError::Invalid(
                        "mda needs a program: [\"procmail\", \"-d\", \"%T\"]".into(),
                    ));
                }
                KeyValue::Text(_) => {
                    return Err(KeyError::Invalid(
                        "mda takes an argument list (no shell): mda = [\"procmail\", \"-d\", \"%T\"]".into(),
                    ));
                }
            };
            f.target = sourced(Target::Mda(argv), at);
        }
        "maildir" => {
            let t = text(arg)?;
            f.target = sourced(Target::Maildir(env.expand_tilde(needs_arg(key, &t)?)), at);
        }
        "mbox" => {
            let t = text(arg)?;
            f.target = sourced(Target::Mbox(env.expand_tilde(needs_arg(key, &t)?)), at);
        }
        "lmtp" => f.target = sourced(Target::Lmtp(parse_host_port(key, &text(arg)?)?), at),
        "smtp" => f.target = sourced(Target::Smtp(parse_host_port(key, &text(arg)?)?), at),
        "keep" => f.keep = sourced(parse_on_off(key, &text(arg)?)?, at),
        "fetchall" => f.fetchall = sourced(parse_on_off(key, &text(arg)?)?, at),
        "idle" => f.idle = sourced(parse_on_off(key, &text(arg)?)?, at),
        "recipient" => f.recipient = sourced(parse_recipient(&text(arg)?)?, at),
        "limit" => f.tuning.limit = parse_count(key, &text(arg)?)?.filter(|&n| n > 0),
        "fetchlimit" => f.tuning.fetchlimit = parse_count(key, &text(arg)?)?.filter(|&n| n > 0),
        "batchlimit" => f.tuning.batchlimit = parse_count(key, &text(arg)?)?.unwrap_or(0),
        "expunge" => f.tuning.expunge = parse_count(key, &text(arg)?)?,
        "idle_timeout" => {
            let seconds = parse_count(key, &text(arg)?)?.unwrap_or(0);
            check_seconds(seconds).map_err(|m| KeyError::Invalid(format!("{key}: {m}")))?;
            f.tuning.idle_timeout = Some(seconds).filter(|&n| n > 0);
        }
        "limitflush" => f.tuning.limitflush = parse_on_off(key, &text(arg)?)?,
        "flush" => f.tuning.flush = parse_on_off(key, &text(arg)?)?,
        "force_idle" => f.tuning.force_idle = parse_on_off(key, &text(arg)?)?,
        "max_connections" => {
            let n = parse_count(key, &text(arg)?)?.unwrap_or(0);
            if n == 0 {
                return Err(KeyError::Invalid(format!(
                    "{key} takes a whole number >= 1 (simultaneous polls on one server)"
                )));
            }
            f.tuning.max_connections = Some(n);
        }
        _ => return set_server(&mut f.server, key, &text(arg)?, at, env),
    }
    Ok(None)
}

/// A non-negative count (`limit = 0` is accepted: "no limit", as in fetchmail).
fn parse_count(key: &str, arg: &str) -> Result<Option<u64>, KeyError> {
    arg.trim()
        .parse::<u64>()
        .map(Some)
        .map_err(|_| KeyError::Invalid(format!("{key} takes a whole number >= 0, not {arg:?}")))
}

/// An SMTP/LMTP recipient address: `user@domain`, no spaces, no angle brackets (rfetch adds
/// those), no control characters.
fn parse_recipient(arg: &str) -> Result<String, KeyError> {
    let bad = arg.is_empty()
        || arg.starts_with('@')
        || arg.ends_with('@')
        || arg
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c));
    if bad {
        return Err(KeyError::Invalid(format!(
            "invalid argument {arg:?} for recipient: give one address such as \"bob@localhost\""
        )));
    }
    Ok(arg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TlsMode;

    fn at() -> Provenance {
        Provenance::file("/rc", 1)
    }

    fn env() -> Env {
        Env {
            home: Some("/home/a".into()),
            ..Default::default()
        }
    }

    fn apply(lines: &[(&str, &str)]) -> SubmitSettings {
        let mut s = SubmitSettings::default();
        for (k, v) in lines {
            set_submit(&mut s, k, v, &at(), &env()).unwrap();
        }
        s
    }

    #[test]
    fn queue_keys() {
        let s = apply(&[
            ("queue", "transient"),
            ("queue_dir", "~/q"),
            ("queue_max_age", "2d"),
        ]);
        assert_eq!(s.queue(), QueueMode::Transient);
        assert_eq!(s.queue_dir(), Some(std::path::Path::new("/home/a/q")));
        assert_eq!(s.queue_max_age(), Duration::from_secs(2 * 86400));
        assert_eq!(apply(&[("queue", "always")]).queue(), QueueMode::Always);
        assert_eq!(SubmitSettings::default().queue(), QueueMode::Off);
        let mut s = SubmitSettings::default();
        for (k, v) in [
            ("queue", "sometimes"),
            ("queue_max_age", "0"),
            ("queue_max_age", "5w"),
        ] {
            assert!(
                matches!(
                    set_submit(&mut s, k, v, &at(), &env()),
                    Err(KeyError::Invalid(_))
                ),
                "{k} {v}"
            );
        }
        assert_eq!(parse_age("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_age("15m"), Some(Duration::from_secs(900)));
    }

    #[test]
    fn oauth_and_keyring_keys() {
        let s = apply(&[
            ("user", "ann"),
            ("oauth_provider", "Microsoft"),
            ("oauth_client_id", "cid"),
            ("oauth_tenant", "contoso.com"),
            ("oauth_token_file", "~/t.json"),
        ]);
        assert_eq!(s.server.auth(), AuthSetting::Method("XOAUTH2".into()));
        let grant = s.server.oauth_grant(&env()).unwrap().unwrap();
        assert!(grant.profile.token_url.contains("/contoso.com/"));
        assert_eq!(
            grant.token_file.path(),
            std::path::Path::new("/home/a/t.json")
        );
        // An explicit mechanism wins over the provider's.
        let s = apply(&[
            ("user", "ann"),
            ("oauth_provider", "generic"),
            ("oauth_token_url", "https://idp.example/token"),
            ("oauth_client_id", "cid"),
            ("auth", "xoauth2"),
        ]);
        assert_eq!(s.server.auth(), AuthSetting::Method("XOAUTH2".into()));
        let s = apply(&[("oauth_provider", "generic"), ("oauth_client_id", "c")]);
        assert_eq!(s.server.auth(), AuthSetting::Method("OAUTHBEARER".into()));
        assert!(
            s.server.oauth_grant(&env()).is_err(),
            "generic needs a token URL"
        );
        let mut s = SubmitSettings::default();
        for (k, v) in [
            ("oauth_provider", "yahoo"),
            ("oauth_token_url", "http://idp.example/token"),
            ("passwordkeyring", "service"),
        ] {
            assert!(
                matches!(
                    set_submit(&mut s, k, v, &at(), &env()),
                    Err(KeyError::Invalid(_))
                ),
                "{k} {v}"
            );
        }
        let s = apply(&[("passwordkeyring", "service=imap user=x")]);
        assert_eq!(
            s.server.password.unwrap().value,
            Secret::Keyring(vec![
                ("service".into(), "imap".into()),
                ("user".into(), "x".into())
            ])
        );
        let s = apply(&[("oauth_client_secret", "shh")]);
        assert!(
            !format!("{:?}", s.server).contains("shh"),
            "the client secret in Debug"
        );
        // Without oauth_provider the password sources are msmtp's, keyring before netrc.
        assert_eq!(
            apply(&[]).server.password_sources(),
            vec![Secret::MsmtpKeyring, Secret::Netrc, Secret::Prompt]
        );
    }

    #[test]
    fn every_directive_is_accepted() {
        let ok: &[(&str, &str)] = &[
            ("host", "mx"),
            ("port", "587"),
            ("source_ip", "127.0.0.1"),
            ("source_ip", ""),
            ("timeout", "off"),
            ("timeout", "30"),
            ("connect_timeout", "5"),
            ("protocol", "lmtp"),
            ("domain", "%H"),
            ("auth", ""),
            ("auth", "scram-sha-256"),
            ("user", "u"),
            ("password", "p"),
            ("passwordeval", "pass x"),
            ("tls", ""),
            ("tls_starttls", "off"),
            ("tls_nostarttls", ""),
            ("tls_trust_file", "system"),
            ("tls_fingerprint", ""),
            ("tls_certcheck", "on"),
            ("tls_nocertcheck", ""),
            ("tls_key_file", "~/k"),
            ("tls_cert_file", "~/c"),
            ("tls_host_override", "h"),
            ("tls_force_sslv3", ""),
            ("socket", "/run/s"),
            ("from", "*@x"),
            ("from_full_name", "A B"),
            ("allow_from_override", "off"),
            ("dsn_notify", "failure,delay"),
            ("dsn_return", "hdrs"),
            ("set_from_header", "on"),
            ("set_date_header", "off"),
            ("set_msgid_header", "auto"),
            ("set_to_header", "undisclosed_recipients"),
            ("undisclosed_recipients", "on"),
            ("remove_bcc_headers", "off"),
            ("keepbcc", "off"),
            ("add_missing_from_header", "off"),
            ("add_missing_date_header", "on"),
            ("logfile", "~/log"),
            ("logfile_time_format", "none"),
            ("syslog", "LOG_LOCAL3"),
            ("aliases", "~/aliases"),
            ("danger_plaintext_auth", "on"),
            ("proxy_host", "127.0.0.1"),
            ("proxy_host", ""),
            ("proxy_port", "9050"),
            ("proxy_port", ""),
            ("proxy_user", "u"),
            ("proxy_password", "p"),
        ];
        for (k, v) in ok {
            let mut s = SubmitSettings::default();
            assert_eq!(set_submit(&mut s, k, v, &at(), &env()), Ok(None), "{k} {v}");
        }
        let warned = [
            "tls_priorities",
            "tls_crl_file",
            "tls_min_dh_prime_bits",
            "ntlmdomain",
            "auto_from",
            "maildomain",
        ];
        for k in warned {
            let mut s = SubmitSettings::default();
            let w = set_submit(&mut s, k, "x", &at(), &env()).unwrap();
            assert!(w.unwrap().starts_with(k));
            assert_eq!(s.ignored.len(), 1);
        }
    }

    #[test]
    fn invalid_arguments_are_rejected() {
        let bad: &[(&str, &str)] = &[
            ("port", "0"),
            ("port", "70000"),
            ("port", ""),
            ("host", ""),
            ("source_ip", "nope"),
            ("timeout", "0"),
            ("timeout", "x"),
            ("protocol", "esmtp"),
            ("auth", "magic"),
            ("tls", "yes"),
            ("tls_fingerprint", "zz"),
            ("dsn_notify", "sometimes"),
            ("dsn_return", "all"),
            ("set_date_header", "on"),
            ("set_from_header", "x"),
            ("syslog", "LOG_LOCAL9"),
            ("set_to_header", "x"),
            ("proxy_port", "0"),
            ("proxy_port", "socks"),
            ("logfile_time_format", "%Y %Q"),
            ("logfile_time_format", "%"),
        ];
        for (k, v) in bad {
            let mut s = SubmitSettings::default();
            assert!(
                matches!(
                    set_submit(&mut s, k, v, &at(), &env()),
                    Err(KeyError::Invalid(_))
                ),
                "{k} {v:?}"
            );
        }
        let mut s = SubmitSettings::default();
        assert_eq!(
            set_submit(&mut s, "hots", "x", &at(), &env()),
            Err(KeyError::Unknown)
        );
    }

    #[test]
    fn compat_spellings_map_to_the_same_settings() {
        let s = apply(&[("tls", "on"), ("tls_nostarttls", "")]);
        assert_eq!(s.tls_mode(), TlsMode::Implicit);
        assert_eq!(s.port(), Some(465));
        let s = apply(&[("tls_nocertcheck", "")]);
        assert!(s.server.certcheck_disabled());
        let s = apply(&[("keepbcc", "on")]);
        assert!(!s.remove_bcc_headers());
        let s = apply(&[("keepbcc", "")]);
        assert!(!s.remove_bcc_headers());
        let s = apply(&[("add_missing_from_header", "off")]);
        assert_eq!(s.set_from_header(), HeaderPolicy::Off);
        let s = apply(&[("undisclosed_recipients", "")]);
        assert_eq!(s.set_to_header(), ToHeaderPolicy::UndisclosedRecipients);
        let s = apply(&[("connect_timeout", "7")]);
        assert_eq!(s.connect_options().connect_timeout, Duration::from_secs(7));
        let s = apply(&[("syslog", "")]);
        assert_eq!(s.syslog(), Some(SyslogFacility::User));
        let s = apply(&[("auth", "Cram-MD5")]);
        assert_eq!(s.server.auth(), AuthSetting::Method("CRAM-MD5".into()));
        let s = apply(&[("tls_trust_file", "~/ca.pem"), ("logfile", "-")]);
        assert_eq!(
            s.server.tls_trust_file.clone().unwrap().value,
            TrustFile::Path("/home/a/ca.pem".into())
        );
        assert_eq!(s.logfile(), Some(LogFile::Stdout));
        let s = apply(&[("passwordeval", "x"), ("passwordeval", "")]);
        assert!(s.server.password.is_none());
    }

    #[test]
    fn fingerprints() {
        let sha256 = ["ab"; 32].join(":");
        assert_eq!(parse_fingerprint(&sha256), Ok([0xab; 32]));
        assert_eq!(parse_fingerprint(&"AB".repeat(32)), Ok([0xab; 32]));
        let sha1 = ["ab"; 20].join(":");
        match parse_fingerprint(&sha1) {
            Err(KeyError::Invalid(m)) => {
                assert!(m.contains("SHA-1") && m.contains("SHA-256"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let md5 = ["ab"; 16].join(":");
        assert!(matches!(parse_fingerprint(&md5), Err(KeyError::Invalid(m)) if m.contains("MD5")));
        assert!(parse_fingerprint("a:b").is_err());
        assert!(parse_fingerprint("é").is_err());
    }

    #[test]
    fn fetch_keys() {
        let mut f = FetchSettings::new(Sourced::new(super::super::FetchProtocol::Imap, at()));
        let t = |s: &str| KeyValue::Text(s.into());
        set_fetch(&mut f, "keep", &t("on"), &at(), &env()).unwrap();
        set_fetch(
            &mut f,
            "folders",
            &KeyValue::List(vec!["A".into(), "B".into()]),
            &at(),
            &env(),
        )
        .unwrap();
        set_fetch(&mut f, "port", &t("10993"), &at(), &env()).unwrap();
        set_fetch(&mut f, "lmtp", &t("[::1]:24"), &at(), &env()).unwrap();
        assert!(f.keep());
        assert_eq!(f.folders(), vec!["A", "B"]);
        assert_eq!(f.server.port(f.service()), Some(10993));
        assert_eq!(
            f.target(&env()),
            Target::Lmtp(Endpoint {
                host: "::1".into(),
                port: 24
            })
        );
        assert!(set_fetch(&mut f, "mda", &t("procmail"), &at(), &env()).is_err());
        set_fetch(
            &mut f,
            "mda",
            &KeyValue::List(vec!["procmail".into(), "-d".into(), "%T".into()]),
            &at(),
            &env(),
        )
        .unwrap();
        assert!(matches!(f.target(&env()), Target::Mda(v) if v.len() == 3));
        assert!(set_fetch(&mut f, "smtp", &t("nohostport"), &at(), &env()).is_err());
        assert_eq!(
            set_fetch(&mut f, "bogus", &t("x"), &at(), &env()),
            Err(KeyError::Unknown)
        );
    }
}
