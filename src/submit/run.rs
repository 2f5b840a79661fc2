//! One rsend run: configuration and account choice, reading the message, the envelope (sender,
//! recipients, aliases), the header pass, the SMTP session, and msmtp's log line.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::account::{
    AuthSetting, DsnNotify, DsnReturn, Env, HeaderPolicy as AccountHeaderPolicy, LogFile,
    Provenance, SubmitProtocol, SubmitSettings, ToHeaderPolicy,
};
use crate::cli::rsend_args::RsendArgs;
use crate::config::{self, AccountSet};
use crate::error::{Error, ErrorKind, Result};
use crate::net::TlsMode;
use crate::proto::sasl::Mechanism;
use crate::proto::smtp::{AuthMethod, DsnRet, Envelope, Notify, Protocol, Recipient};
use crate::session::smtp::{SmtpAuth, SmtpClient, SmtpSettings};

use super::address::{check_addr_spec, domain_of, parse_recipient_list};
use super::aliases::Aliases;
use super::headers::{self, HeaderPolicy, SetFrom, SetTo};
use super::spool::Spool;

/// The account settings chosen for this run, after command-line overrides.
pub struct Resolved {
    pub account_name: String,
    pub settings: SubmitSettings,
    pub files: Vec<PathBuf>,
}

/// What a successful run reports.
#[derive(Debug)]
pub struct Sent {
    pub recipients: Vec<String>,
    pub final_reply: String,
}

/// msmtp-style command-line overrides as `(msmtprc key, value)` pairs.
fn overrides(args: &RsendArgs) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut push = |key: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            out.push((key, v.clone()));
        }
    };
    push("host", &args.host);
    push("port", &args.port.map(|p| p.to_string()));
    push("timeout", &args.timeout);
    push("protocol", &args.protocol);
    push("domain", &args.domain);
    push("auth", &args.auth);
    push("user", &args.user);
    push("passwordeval", &args.passwordeval);
    push("tls", &args.tls);
    push("tls_starttls", &args.tls_starttls);
    push("tls_trust_file", &args.tls_trust_file);
    push("tls_fingerprint", &args.tls_fingerprint);
    push("tls_certcheck", &args.tls_certcheck);
    push("tls_key_file", &args.tls_key_file);
    push("tls_cert_file", &args.tls_cert_file);
    push("tls_host_override", &args.tls_host_override);
    push("dsn_notify", &args.dsn_notify);
    push("dsn_return", &args.dsn_return);
    push("logfile", &args.logfile);
    push("syslog", &args.syslog);
    push("aliases", &args.aliases);
    push("set_from_header", &args.set_from_header);
    push("set_date_header", &args.set_date_header);
    push("set_msgid_header", &args.set_msgid_header);
    push("set_to_header", &args.set_to_header);
    push("remove_bcc_headers", &args.remove_bcc_headers);
    push("from_full_name", &args.full_name);
    if args.danger_plaintext_auth {
        out.push(("danger_plaintext_auth", "on".to_string()));
    }
    out
}

/// Loads the configuration as msmtp does (-C or ~/.msmtprc / XDG, plus /etc/msmtprc), falling
/// back to the native TOML file when no msmtp file exists. A `-C` file ending in `.toml` is read
/// as TOML.
pub fn load_accounts(args: &RsendArgs, env: &Env) -> Result<AccountSet> {
    let file = args.file.as_deref().map(|f| env.expand_tilde(f));
    if let Some(f) = &file
        && f.extension().is_some_and(|e| e == "toml")
    {
        return Ok(config::load_toml(env, Some(f))?);
    }
    let set = config::load_msmtprc(env, file.as_deref())?;
    if !set.loaded.is_empty() || file.is_some() {
        return Ok(set);
    }
    let toml = config::load_toml(env, None)?;
    if toml.loaded.is_empty() {
        return Ok(set);
    }
    Ok(toml)
}

/// Picks the account (or builds one from --host) and applies the command line.
pub fn resolve(args: &RsendArgs, env: &Env, envelope_from: Option<&str>) -> Result<Resolved> {
    let (name, mut settings, files) = if args.host.is_some() {
        (
            "(command line)".to_string(),
            SubmitSettings::default(),
            Vec::new(),
        )
    } else {
        let set = load_accounts(args, env)?;
        let (account, _) = set.select(args.account.as_deref(), envelope_from, env)?;
        let settings = account.submit()?.clone();
        (account.name.clone(), settings, set.loaded.clone())
    };
    let pairs = overrides(args);
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for w in config::apply_command_line(&mut settings, &borrowed, env)? {
        log::warn!("{w}");
    }
    Ok(Resolved {
        account_name: name,
        settings,
        files,
    })
}

/// The SMTP session settings without credentials (for --serverinfo: no password is needed).
pub fn session_settings_without_auth(s: &SubmitSettings, env: &Env) -> Result<SmtpSettings> {
    let mut plain = s.clone();
    plain.server.auth = None;
    session_settings(&plain, env)
}

/// The SMTP session settings for an account (password resolved only when AUTH is on).
pub fn session_settings(s: &SubmitSettings, env: &Env) -> Result<SmtpSettings> {
    if s.socket().is_some() {
        return Err(Error::new(
            ErrorKind::Config,
            "the socket directive (Unix-domain sockets) is not supported by rsend; use host and port",
        ));
    }
    let endpoint = s.endpoint()?;
    let tls_mode = s.tls_mode();
    let tls = if tls_mode == TlsMode::Off {
        Default::default()
    } else {
        s.tls_options()?
    };
    let auth = match s.server.auth() {
        AuthSetting::Off => None,
        setting => {
            let method = match &setting {
                AuthSetting::Method(name) => {
                    AuthMethod::Mechanism(Mechanism::from_name(name).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Config,
                            format!(
                                "authentication method {name} is not supported (use plain, login, \
                                 cram-md5, scram-sha-256, xoauth2 or oauthbearer)"
                            ),
                        )
                    })?)
                }
                _ => AuthMethod::Auto,
            };
            let user = s.server.user().unwrap_or("").to_string();
            let secret = s.server.password(env)?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "no password for {user}@{}: set password or passwordeval, or add it to ~/.netrc",
                        endpoint.host
                    ),
                )
            })?;
            Some(SmtpAuth {
                method,
                user,
                secret: crate::session::auth::Secret::new(secret),
                allow_plaintext: s.server.danger_plaintext_auth(),
            })
        }
    };
    Ok(SmtpSettings {
        endpoint,
        tls_mode,
        tls,
        connect: s.connect_options(),
        helo_domain: s.domain(env),
        protocol: match s.protocol() {
            SubmitProtocol::Smtp => Protocol::Smtp,
            SubmitProtocol::Lmtp => Protocol::Lmtp,
        },
        auth,
    })
}

/// Reads until the end of the header block (bounded), returning the head and every byte read.
fn read_head(input: &mut dyn Read) -> Result<(headers::Head, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::with_source(
                    ErrorKind::LocalIo,
                    "cannot read the message from standard input",
                    e,
                ));
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        match headers::split_head(&buf, n == 0) {
            Ok(Some(head)) => return Ok((head, buf)),
            Ok(None) if n == 0 => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "header split needs more input at EOF",
                ));
            }
            Ok(None) => {}
            Err(e) => {
                return Err(Error::with_source(
                    ErrorKind::Usage,
                    "cannot read the message",
                    e,
                ));
            }
        }
    }
}

fn header_policy(s: &SubmitSettings) -> (SetFrom, bool, bool, SetTo) {
    let set_from = match s.set_from_header() {
        AccountHeaderPolicy::Auto => SetFrom::Auto,
        AccountHeaderPolicy::On => SetFrom::On,
        AccountHeaderPolicy::Off => SetFrom::Off,
    };
    let date = s.set_date_header() != AccountHeaderPolicy::Off;
    let msgid = s.set_msgid_header() != AccountHeaderPolicy::Off;
    let to = match s.set_to_header() {
        ToHeaderPolicy::Off => SetTo::Off,
        ToHeaderPolicy::On => SetTo::On,
        ToHeaderPolicy::UndisclosedRecipients => SetTo::Undisclosed,
    };
    (set_from, date, msgid, to)
}

fn message_id(domain: &str) -> String {
    use ring::rand::SecureRandom;
    let mut random = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut random);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("<{now:x}.{}.{hex}@{domain}>", std::process::id())
}

/// Refuses a caller or configuration value bound for a header or the SMTP envelope when it holds
/// a control character: a CR or LF there would add header lines (or SMTP commands), and no other
/// control has a place in a name, address or domain. `what` names the value and where it came
/// from; a command-line value is a usage error, a configured one a configuration error.
fn refuse_control(value: &str, at: Option<&Provenance>, what: &str) -> Result<()> {
    let Some(found) = crate::message::header::first_control(value) else {
        return Ok(());
    };
    let (kind, place) = match at {
        None | Some(Provenance::CommandLine) => (ErrorKind::Usage, String::new()),
        Some(other) => (ErrorKind::Config, format!(" at {other}")),
    };
    Err(Error::new(
        kind,
        format!(
            "{what}{place} contains the control character U+{:04X}; refused, because a line \
             break there would add header lines",
            u32::from(found)
        ),
    ))
}

/// Null sender spellings (`-f '<>'`, `MAILER-DAEMON`) become an empty reverse path.
fn normalize_sender(from: &str) -> String {
    let f = from.trim();
    if f == "<>" || f.eq_ignore_ascii_case("MAILER-DAEMON") {
        String::new()
    } else {
        f.trim_start_matches('<').trim_end_matches('>').to_string()
    }
}

/// Sends the message on `input`. `log_line` receives msmtp's log fields on success and failure.
pub fn send(args: &RsendArgs, env: &Env, input: &mut dyn Read) -> Result<Sent> {
    let (head, buffered) = read_head(input)?;

    // The envelope-from: --read-envelope-from, -f/-r, or the account's from.
    let header_from = headers::from_address(&head);
    let cli_from = args.from.clone().or_else(|| args.from_r.clone());
    if args.read_envelope_from && header_from.is_none() {
        return Err(Error::new(
            ErrorKind::Usage,
            "--read-envelope-from: the message has no From header",
        ));
    }
    let wanted_from = if args.read_envelope_from {
        header_from.clone()
    } else {
        cli_from.clone()
    };
    let resolved = resolve(args, env, wanted_from.as_deref())?;
    let s = &resolved.settings;
    let configured_from = s.from_address(env).filter(|_| !s.from_is_pattern());
    let configured_at = s.from.as_ref().map(|f| &f.at);
    let (envelope_from, from_at) = match (&wanted_from, &configured_from) {
        (Some(_), Some(c)) if !args.read_envelope_from && !s.allow_from_override() => {
            (c.clone(), configured_at)
        }
        (Some(w), _) => (w.clone(), None),
        (None, Some(c)) => (c.clone(), configured_at),
        (None, None) => {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "envelope-from address is missing: set from in account {} or pass -f ADDRESS",
                    resolved.account_name
                ),
            ));
        }
    };
    let from_what = if from_at.is_none() && args.read_envelope_from {
        "the envelope-from address in the From header"
    } else if from_at.is_none() {
        "the -f/-r envelope-from address"
    } else {
        "the envelope-from address set by from"
    };
    refuse_control(&envelope_from, from_at, from_what)?;
    let envelope_from = normalize_sender(&envelope_from);
    if let Some(name) = &s.from_full_name {
        let what = match name.at {
            Provenance::CommandLine => "the -F full name",
            _ => "from_full_name",
        };
        refuse_control(&name.value, Some(&name.at), what)?;
    }
    refuse_control(
        &s.domain(env),
        s.domain.as_ref().map(|d| &d.at),
        "domain (used in EHLO and Message-ID)",
    )?;

    let mut session = session_settings(s, env)?;
    let domain_for_ids = {
        let d = s.domain(env);
        if d != "localhost" {
            d
        } else {
            domain_of(&envelope_from)
                .map(str::to_string)
                .unwrap_or_else(|| session.endpoint.host.clone())
        }
    };

    // Recipients: the command line (address lists, as msmtp), plus -t.
    let mut wanted: Vec<String> = Vec::new();
    for r in &args.recipients {
        let found = parse_recipient_list(r)
            .map_err(|e| Error::new(ErrorKind::Usage, format!("recipient {e}")))?;
        wanted.extend(found);
    }
    let (set_from, set_date, set_msgid, set_to) = header_policy(s);
    let policy = HeaderPolicy {
        read_recipients: args.read_recipients,
        remove_bcc: s.remove_bcc_headers(),
        set_from,
        set_date,
        set_msgid,
        set_to,
        from_address: Some(envelope_from.clone()).filter(|f| !f.is_empty()),
        from_full_name: args
            .full_name
            .clone()
            .or_else(|| s.from_full_name.as_ref().map(|n| n.value.clone())),
        date: chrono::Local::now().to_rfc2822(),
        message_id: message_id(&domain_for_ids),
    };
    // set_to_header needs the final list, so expand first with the header's recipients.
    let refused = |e| Error::with_source(ErrorKind::Usage, "cannot prepare the message header", e);
    let pre = headers::prepare(&head, &policy, &[]).map_err(refused)?;
    wanted.extend(pre.recipients.iter().cloned());
    let recipients = finish_recipients(wanted, s, env, &envelope_from)?;
    if recipients.is_empty() {
        return Err(Error::new(
            ErrorKind::Usage,
            if args.read_recipients {
                "no recipients found: the To, Cc and Bcc headers hold no address (-t) and none \
                 was given on the command line"
            } else {
                "no recipients: give an address on the command line, or -t to read them from \
                 the To, Cc and Bcc headers"
            },
        ));
    }
    let prepared = if policy.set_to == SetTo::On {
        headers::prepare(&head, &policy, &recipients).map_err(refused)?
    } else {
        pre
    };

    let body = Spool::read_all(&buffered[head.consumed..], input)
        .map_err(|e| Error::with_source(ErrorKind::LocalIo, "cannot read the message body", e))?;
    let size = prepared.header.len() as u64 + body.len();
    let eight_bit = body.is_8bit() || prepared.header.iter().any(|&b| b >= 0x80);
    let mut message = io::Cursor::new(prepared.header).chain(body.reader());

    let notify = match s.dsn_notify() {
        DsnNotify::Off => None,
        DsnNotify::Never => Some(Notify::default()),
        DsnNotify::On {
            failure,
            delay,
            success,
        } => Some(Notify {
            success,
            failure,
            delay,
        }),
    };
    let envelope = Envelope {
        from: envelope_from.clone(),
        rcpts: recipients
            .iter()
            .map(|r| Recipient {
                address: r.clone(),
                notify,
            })
            .collect(),
        ret: match s.dsn_return() {
            DsnReturn::Off => None,
            DsnReturn::Headers => Some(DsnRet::Headers),
            DsnReturn::Full => Some(DsnRet::Full),
        },
        envid: None,
        body_8bit: eight_bit,
        allow_partial: false,
    };

    let log_base = LogLine::new(s, &session, &envelope_from, &recipients);
    if args.verbose > 0 {
        session.connect.io_timeout = session
            .connect
            .io_timeout
            .max(std::time::Duration::from_secs(1));
    }
    let result = (|| {
        let mut client = SmtpClient::connect(&session)?;
        let report = client.send(&envelope, &mut message, Some(size))?;
        let rejected: Vec<String> = report
            .rejected()
            .map(|r| format!("{}: {:?}", r.address, r.status))
            .collect();
        let _ = client.quit();
        if !rejected.is_empty() {
            return Err(Error::new(
                ErrorKind::RejectedPermanent,
                format!(
                    "could not send mail to all recipients: {}",
                    rejected.join("; ")
                ),
            ));
        }
        Ok(Sent {
            recipients: recipients.clone(),
            final_reply: report.final_reply.text(),
        })
    })();
    log_base.write(s, &result, size);
    result
}

/// Aliases, bare local names qualified with the domain, de-duplication (case-insensitive).
fn finish_recipients(
    wanted: Vec<String>,
    s: &SubmitSettings,
    env: &Env,
    envelope_from: &str,
) -> Result<Vec<String>> {
    let aliases =
        match s.aliases() {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::with_source(
                        ErrorKind::FileUnreadable,
                        format!("cannot read aliases file {}", path.display()),
                        e,
                    )
                })?;
                Some(Aliases::parse(&text).map_err(|m| {
                    Error::new(ErrorKind::Config, format!("{}: {m}", path.display()))
                })?)
            }
            None => None,
        };
    let qualify_domain = {
        let d = s.domain(env);
        if d != "localhost" {
            Some(d)
        } else {
            domain_of(envelope_from).map(str::to_string)
        }
    };
    let mut out: Vec<String> = Vec::new();
    for r in wanted {
        let expanded = match &aliases {
            Some(a) => {
                let expanded = a.expand(&r).map_err(|m| Error::new(ErrorKind::Config, m))?;
                for addr in &expanded {
                    check_addr_spec(addr).map_err(|reason| {
                        Error::new(
                            ErrorKind::Config,
                            format!("the aliases file maps {r} to {addr:?}, which is not an address: {reason}"),
                        )
                    })?;
                }
                expanded
            }
            None => vec![r],
        };
        for mut addr in expanded {
            if !addr.contains('@')
                && let Some(d) = &qualify_domain
            {
                addr = format!("{addr}@{d}");
            }
            if !out.iter().any(|o| o.eq_ignore_ascii_case(&addr)) {
                out.push(addr);
            }
        }
    }
    Ok(out)
}

/// msmtp's log line (host= tls= auth= user= from= recipients= mailsize= smtpstatus= ...).
struct LogLine {
    fields: String,
}

impl LogLine {
    fn new(s: &SubmitSettings, session: &SmtpSettings, from: &str, rcpts: &[String]) -> LogLine {
        let mut fields = format!(
            "host={} tls={} auth={}",
            session.endpoint.host,
            if session.tls_mode == TlsMode::Off {
                "off"
            } else {
                "on"
            },
            if session.auth.is_some() { "on" } else { "off" }
        );
        if let Some(a) = &session.auth {
            fields.push_str(&format!(" user={}", a.user));
        }
        let _ = s;
        fields.push_str(&format!(" from={from} recipients={}", rcpts.join(",")));
        LogLine { fields }
    }

    fn write(&self, s: &SubmitSettings, result: &Result<Sent>, size: u64) {
        let (line, ok) = match result {
            Ok(sent) => (
                format!(
                    "{} mailsize={size} smtpstatus={} smtpmsg='{}' exitcode=EX_OK",
                    self.fields,
                    sent.final_reply.get(..3).unwrap_or(""),
                    sent.final_reply.replace('\'', "?")
                ),
                true,
            ),
            Err(e) => (
                format!(
                    "{} errormsg='{}' exitcode={}",
                    self.fields,
                    e.chain().replace('\'', "?"),
                    exit_name(crate::exit::rsend_code(e.kind()))
                ),
                false,
            ),
        };
        if let Some(target) = s.logfile() {
            let stamp = s
                .logfile_time_format()
                .map(|f| format!("{} ", chrono::Local::now().format(&f)))
                .unwrap_or_default();
            let text = format!("{stamp}{line}\n");
            match target {
                LogFile::Stdout => {
                    let _ = io::stdout().write_all(text.as_bytes());
                }
                LogFile::Path(p) => {
                    if let Err(e) = append_locked(&p, text.as_bytes()) {
                        eprintln!("rsend: cannot log to {}: {e}\nrsend: {line}", p.display());
                    }
                }
            }
        }
        if let Some(facility) = s.syslog() {
            let facility = crate::log::parse_facility(&facility.to_string())
                .unwrap_or(syslog::Facility::LOG_USER);
            let formatter = syslog::Formatter3164 {
                facility,
                hostname: None,
                process: "rsend".into(),
                pid: std::process::id(),
            };
            if let Ok(mut w) = syslog::unix(formatter) {
                let _ = if ok { w.info(&line) } else { w.err(&line) };
            }
        }
    }
}

fn append_locked(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
    f.write_all(bytes)
}

fn exit_name(code: i32) -> &'static str {
    match code {
        0 => "EX_OK",
        64 => "EX_USAGE",
        65 => "EX_DATAERR",
        66 => "EX_NOINPUT",
        68 => "EX_NOHOST",
        69 => "EX_UNAVAILABLE",
        70 => "EX_SOFTWARE",
        74 => "EX_IOERR",
        75 => "EX_TEMPFAIL",
        76 => "EX_PROTOCOL",
        77 => "EX_NOPERM",
        78 => "EX_CONFIG",
        _ => "EX_UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_sender_spellings() {
        assert_eq!(normalize_sender("<>"), "");
        assert_eq!(normalize_sender("mailer-daemon"), "");
        assert_eq!(normalize_sender("<a@b>"), "a@b");
    }

    #[test]
    fn recipients_are_qualified_and_deduplicated() {
        let s = SubmitSettings::default();
        let env = Env::default();
        let r = finish_recipients(
            vec!["root".into(), "A@x.org".into(), "a@x.org".into()],
            &s,
            &env,
            "me@host.example",
        )
        .unwrap();
        assert_eq!(r, ["root@host.example", "A@x.org"]);
    }
}
