//! One rsend run: configuration and account choice, reading the message, the envelope (sender,
//! recipients, aliases), the header pass, the SMTP session, and msmtp's log line.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::account::{
    AuthSetting, DsnNotify, DsnReturn, Env, HeaderPolicy as AccountHeaderPolicy, LogFile,
    Provenance, QueueMode, Sourced, SubmitProtocol, SubmitSettings, ToHeaderPolicy,
};
use crate::config::{self, AccountSet};
use crate::error::{Error, ErrorKind, Result};
use crate::net::TlsMode;
use crate::proto::sasl::Mechanism;
use crate::proto::smtp::{AuthMethod, DsnRet, Envelope, Notify, Protocol, Recipient};
use crate::session::smtp::{SmtpAuth, SmtpClient, SmtpSettings};

use super::aliases::Aliases;
use super::headers::{self, HeaderPolicy, SetFrom, SetTo};
use super::queue::{self, Queue, RetryState, Stored};
use super::request::{AccountChoice, DeliveryFlag, Request};
use super::spool::Spool;
use crate::message::address::{check_addr_spec, domain_of, parse_recipient_list};

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
    /// The text of the reply to the end of data (lines joined with "\n"), without the code.
    pub final_reply: String,
    /// That reply's code.
    pub final_code: u16,
}

/// Loads the configuration in the order both binaries share (`config::discover`): `-C FILE`
/// (read as TOML when it ends in `.toml`), else ~/.msmtprc, $XDG_CONFIG_HOME/msmtp/config,
/// $XDG_CONFIG_HOME/postie/config.toml, the first that exists; plus /etc/msmtprc.
pub fn load_accounts(req: &Request, env: &Env) -> Result<AccountSet> {
    load_accounts_from(req.config_file.as_deref(), env)
}

/// [`load_accounts`] with `-C FILE` given directly (a queued message records it).
pub fn load_accounts_from(file: Option<&str>, env: &Env) -> Result<AccountSet> {
    let file = file.map(|f| env.expand_tilde(f));
    Ok(config::discover::load_rsend(env, file.as_deref())?.0)
}

/// Picks the account (or builds one from --host) and applies the command line.
pub fn resolve(req: &Request, env: &Env, envelope_from: Option<&str>) -> Result<Resolved> {
    let borrowed: Vec<(&str, &str)> = req
        .overrides
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let account = match &req.account {
        AccountChoice::CommandLine => None,
        AccountChoice::Configured(name) => Some(name.as_deref()),
    };
    let from_known = envelope_from.is_some() || !req.sender_needed;
    resolve_with(
        req.config_file.as_deref(),
        account,
        envelope_from,
        from_known,
        &borrowed,
        env,
    )
}

/// The name a run without a configured account (`--host`) reports.
const COMMAND_LINE_ACCOUNT: &str = "(command line)";

/// Resolves an account: `account` `None` means command-line settings only (`--host`),
/// `Some(None)` the default account (or the one whose from matches `envelope_from`).
fn resolve_with(
    file: Option<&str>,
    account: Option<Option<&str>>,
    envelope_from: Option<&str>,
    from_known: bool,
    pairs: &[(&str, &str)],
    env: &Env,
) -> Result<Resolved> {
    let (name, mut settings, files) = match account {
        None => (
            COMMAND_LINE_ACCOUNT.to_string(),
            SubmitSettings::default(),
            Vec::new(),
        ),
        Some(wanted) => {
            let set = load_accounts_from(file, env)?;
            match set.select(wanted, envelope_from, env) {
                Ok((account, _)) => {
                    let settings = account.submit()?.clone();
                    (account.name.clone(), settings, set.loaded.clone())
                }
                // Without -a, selection fails only when there is no default account: then
                // msmtp falls back to the environment.
                Err(e) if wanted.is_none() => match from_environment(
                    std::env::var("SMTPSERVER").ok(),
                    std::env::var("EMAIL").ok(),
                    from_known,
                ) {
                    Some(settings) => {
                        log::info!("using environment variables EMAIL and SMTPSERVER");
                        ("(environment)".to_string(), settings, set.loaded.clone())
                    }
                    None => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
    };
    for w in config::apply_command_line(&mut settings, pairs, env)? {
        log::warn!("{w}");
    }
    Ok(Resolved {
        account_name: name,
        settings,
        files,
    })
}

/// msmtp's last resort when no account applies: `SMTPSERVER` is the host, and `EMAIL` the
/// envelope-from unless one was given (`have_from`). Both must be usable: a server without
/// an address to send from is no account.
fn from_environment(
    smtpserver: Option<String>,
    email: Option<String>,
    have_from: bool,
) -> Option<SubmitSettings> {
    let server = smtpserver.filter(|s| !s.is_empty())?;
    let email = email.filter(|e| !e.is_empty());
    if !have_from && email.is_none() {
        return None;
    }
    let mut settings = SubmitSettings::default();
    settings.server.host = Some(Sourced::new(server, Provenance::Environment("SMTPSERVER")));
    if let Some(email) = email {
        settings.from = Some(Sourced::new(email, Provenance::Environment("EMAIL")));
    }
    Some(settings)
}

/// The SMTP session settings without credentials (for --serverinfo: no password is needed).
pub fn session_settings_without_auth(s: &SubmitSettings, env: &Env) -> Result<SmtpSettings> {
    let mut plain = s.clone();
    plain.server.auth = None;
    session_settings(&plain, env)
}

/// The SMTP session settings for an account (password resolved only when AUTH is on).
pub fn session_settings(s: &SubmitSettings, env: &Env) -> Result<SmtpSettings> {
    let endpoint = s.session_endpoint()?;
    let tls_mode = s.tls_mode();
    let tls = if tls_mode == TlsMode::Off {
        Default::default()
    } else {
        s.tls_options()?
    };
    s.server.check_oauth_auth()?;
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
pub fn send(req: &Request, env: &Env, input: &mut dyn Read) -> Result<Outcome> {
    let (head, buffered) = read_head(input)?;

    // The envelope-from: --read-envelope-from, -f/-r, or the account's from.
    let header_from = headers::from_address(&head);
    let cli_from = req.from.clone();
    if req.read_envelope_from && header_from.is_none() {
        return Err(Error::new(
            ErrorKind::Usage,
            "--read-envelope-from: the message has no From header",
        ));
    }
    let wanted_from = if req.read_envelope_from {
        header_from.clone()
    } else {
        cli_from.clone()
    };
    let resolved = resolve(req, env, wanted_from.as_deref())?;
    let s = &resolved.settings;
    let configured_from = s.from_address(env).filter(|_| !s.from_is_pattern());
    let configured_at = s.from.as_ref().map(|f| &f.at);
    let (envelope_from, from_at) = match (&wanted_from, &configured_from) {
        (Some(_), Some(c)) if !req.read_envelope_from && !s.allow_from_override() => {
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
    let from_what = if from_at.is_none() && req.read_envelope_from {
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

    // Only the host is needed before sending: the password (perhaps a prompt or a
    // passwordeval) is resolved when a connection is made, which -odq never does.
    let endpoint_host = s.session_endpoint()?.host;
    let domain_for_ids = {
        let d = s.domain(env);
        if d != "localhost" {
            d
        } else {
            domain_of(&envelope_from)
                .map(str::to_string)
                .unwrap_or_else(|| endpoint_host.clone())
        }
    };

    // Recipients: the command line (address lists, as msmtp), plus -t.
    let mut wanted: Vec<String> = Vec::new();
    for r in &req.recipients {
        let found = parse_recipient_list(r)
            .map_err(|e| Error::new(ErrorKind::Usage, format!("recipient {e}")))?;
        wanted.extend(found);
    }
    let (set_from, set_date, set_msgid, set_to) = header_policy(s);
    let policy = HeaderPolicy {
        read_recipients: req.read_recipients,
        remove_bcc: s.remove_bcc_headers(),
        set_from,
        set_date,
        set_msgid,
        set_to,
        from_address: Some(envelope_from.clone()).filter(|f| !f.is_empty()),
        from_full_name: req
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
            if req.read_recipients {
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
    let log_base = LogLine::new(s, &envelope_from, &recipients);
    let stored = Stored {
        queued: queue::now(),
        from: envelope_from.clone(),
        recipients: recipients.clone(),
        account: (req.account != AccountChoice::CommandLine).then(|| resolved.account_name.clone()),
        // Absolute: the flush may run elsewhere (a systemd unit starts in the home directory).
        config: req.config_file.as_deref().map(|f| {
            let path = env.expand_tilde(f);
            std::path::absolute(&path)
                .unwrap_or(path)
                .to_string_lossy()
                .into_owned()
        }),
        options: req
            .overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        eight_bit,
        size,
    };

    let delivery = delivery(req, s);
    let queue_dir = || queue_dir(s, env);
    if let Delivery::Queue { background } = delivery {
        let queue = Queue::open(&queue_dir()?)?;
        let mut pending = queue.begin(&stored)?;
        write_message(&mut pending, &prepared.header, body)?;
        let id = pending.commit(None)?;
        log_base.write_queued(s, &id, size, None);
        if background {
            spawn_flush(queue.dir());
        }
        return Ok(Outcome::Queued { id, reason: None });
    }

    // Queueing on a temporary failure: the message goes to a queue file first (not synced,
    // so a success costs no fsync), the attempt reads it from there, and only a temporary
    // failure makes it durable and visible in the queue.
    let queue_on_transient = matches!(
        delivery,
        Delivery::Now {
            queue_on_transient: true
        }
    );
    let queue = if queue_on_transient {
        match queue_dir().and_then(|d| Queue::open(&d)) {
            Ok(q) => Some(q),
            Err(e) => {
                log::warn!("cannot use the queue, sending without it: {}", e.chain());
                None
            }
        }
    } else {
        None
    };
    let mut pending = None;
    let mut direct: Option<Box<dyn Read>> = None;
    match queue {
        Some(queue) => {
            let mut p = queue.begin(&stored)?;
            write_message(&mut p, &prepared.header, body)?;
            pending = Some(p);
        }
        None => {
            direct = Some(Box::new(
                io::Cursor::new(prepared.header).chain(body.reader()),
            ))
        }
    }

    let envelope = smtp_envelope(s, &envelope_from, &recipients, eight_bit);
    let result = (|| {
        let mut session = session_settings(s, env)?;
        if req.verbose {
            session.connect.io_timeout = session
                .connect
                .io_timeout
                .max(std::time::Duration::from_secs(1));
        }
        match (&mut pending, &mut direct) {
            (Some(p), _) => {
                let mut message = p.message_reader().map_err(|e| {
                    Error::with_source(ErrorKind::LocalIo, "cannot read the queue file", e)
                })?;
                attempt(&session, &envelope, &mut message, size)
            }
            (None, Some(message)) => attempt(&session, &envelope, message.as_mut(), size),
            (None, None) => Err(Error::new(ErrorKind::Internal, "no message to send")),
        }
    })();
    match result {
        Ok((final_reply, final_code)) => {
            let sent = Sent {
                recipients,
                final_reply,
                final_code,
            };
            log_base.write(s, &Ok(&sent), size);
            drop(pending);
            if let Ok(dir) = queue_dir()
                && Queue::any_waiting(&dir)
            {
                spawn_flush(&dir);
            }
            Ok(Outcome::Sent(sent))
        }
        Err(e) => {
            if e.is_transient()
                && let Some(p) = pending
            {
                let now = queue::now();
                let state = RetryState::default().after_failure(
                    &e.chain(),
                    false,
                    now,
                    now,
                    s.queue_max_age(),
                );
                match p.commit(Some(&state)) {
                    Ok(id) => {
                        log_base.write_queued(s, &id, size, Some(&e));
                        return Ok(Outcome::Queued {
                            id,
                            reason: Some(e.chain()),
                        });
                    }
                    Err(queue_error) => {
                        log::warn!("the message could not be queued: {}", queue_error.chain());
                    }
                }
            }
            log_base.write(s, &Err(&e), size);
            Err(e)
        }
    }
}

/// What a run did with the message.
#[derive(Debug)]
pub enum Outcome {
    /// The relay accepted it.
    Sent(Sent),
    /// It is durably in the queue; `reason` is the temporary failure that put it there.
    Queued { id: String, reason: Option<String> },
}

/// How this run delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Try now; after a temporary failure queue the message (and exit 0) if asked to.
    Now { queue_on_transient: bool },
    /// Queue without trying; `background`: then start a flush.
    Queue { background: bool },
}

/// sendmail's -od flags first, then --queue-on-failure, then the configuration's `queue`.
/// -odi tries now but keeps queueing on a temporary failure when the configuration enables a
/// queue: cron passes -odi, and cron's mail is what a queue is for.
fn delivery(req: &Request, s: &SubmitSettings) -> Delivery {
    let configured = s.queue();
    let queue_on_transient = req.queue_on_failure || configured != QueueMode::Off;
    match req.delivery {
        Some(DeliveryFlag::Queue) => Delivery::Queue { background: false },
        Some(DeliveryFlag::Background) => Delivery::Queue { background: true },
        Some(DeliveryFlag::Interactive) => Delivery::Now { queue_on_transient },
        None if configured == QueueMode::Always && !req.queue_on_failure => {
            Delivery::Queue { background: true }
        }
        None => Delivery::Now { queue_on_transient },
    }
}

/// The queue directory: `queue_dir` (configuration or --queue-dir), else the default under
/// $XDG_STATE_HOME.
pub fn queue_dir(s: &SubmitSettings, env: &Env) -> Result<PathBuf> {
    if let Some(d) = s.queue_dir() {
        return Ok(d.to_path_buf());
    }
    queue::default_dir(env).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "no queue directory: neither queue_dir nor $XDG_STATE_HOME nor $HOME is set",
        )
    })
}

/// Writes the prepared header and the body to a queue file.
fn write_message(out: &mut queue::Pending, header: &[u8], body: Spool) -> Result<()> {
    let failed = |e| Error::with_source(ErrorKind::LocalIo, "cannot write to the queue", e);
    out.write_all(header).map_err(failed)?;
    io::copy(&mut body.reader(), out).map_err(failed)?;
    Ok(())
}

/// Starts `rsend -q` for `dir` in the background, detached from the caller: its own process
/// group (a terminal's ^C does not reach it) and no inherited output (cron and mutt wait for
/// their pipes to close, not for it).
pub fn spawn_flush(dir: &Path) {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut queue_dir = std::ffi::OsString::from("--queue-dir=");
    queue_dir.push(dir);
    let spawned = std::process::Command::new(exe)
        .arg("-q")
        .arg(queue_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        log::warn!("cannot start a background flush of the queue: {e}");
    }
}

/// The SMTP envelope for `from` and `recipients` with the account's DSN settings.
pub fn smtp_envelope(
    s: &SubmitSettings,
    from: &str,
    recipients: &[String],
    eight_bit: bool,
) -> Envelope {
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
    Envelope {
        from: from.to_string(),
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
    }
}

/// One connection, one message; returns the server's final reply (text, code).
fn attempt(
    session: &SmtpSettings,
    envelope: &Envelope,
    message: &mut dyn Read,
    size: u64,
) -> Result<(String, u16)> {
    let mut client = SmtpClient::connect(session)?;
    let reply = transact(&mut client, envelope, message, size);
    // After a refused transaction too: the session is still in step (it was reset), and a
    // server that still talks gets a QUIT, not a dropped connection. `quit` sends nothing on
    // a connection already abandoned.
    let _ = client.quit();
    reply
}

/// One message on an open connection; every recipient must be accepted. Returns the final
/// reply's text and code.
pub fn transact(
    client: &mut SmtpClient,
    envelope: &Envelope,
    message: &mut dyn Read,
    size: u64,
) -> Result<(String, u16)> {
    let report = client.send(envelope, message, Some(size))?;
    let rejected: Vec<String> = report
        .rejected()
        .map(|r| format!("{}: {:?}", r.address, r.status))
        .collect();
    if !rejected.is_empty() {
        return Err(Error::new(
            ErrorKind::RejectedPermanent,
            format!(
                "could not send mail to all recipients: {}",
                rejected.join("; ")
            ),
        ));
    }
    Ok((report.final_reply.text(), report.final_reply.code()))
}

/// The settings a queued message is sent with: its account from its configuration file, and
/// its command-line settings, as the rsend that queued it resolved them.
pub fn resolve_stored(stored: &Stored, env: &Env) -> Result<Resolved> {
    let pairs: Vec<(&str, &str)> = stored
        .options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let account = stored.account.as_deref().map(Some);
    resolve_with(stored.config.as_deref(), account, None, true, &pairs, env)
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
                let text = config::open_regular_file(path)
                    .and_then(config::read_bounded_text)
                    .map_err(|e| {
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

/// Set when stdout carries SMTP (`-bs`): `logfile -` then writes to stderr instead.
static LOG_STDOUT_TO_STDERR: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Sends log lines meant for stdout (`logfile -`) to stderr from now on.
pub fn log_stdout_to_stderr() {
    LOG_STDOUT_TO_STDERR.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Text a server (or an error that quotes one) puts into msmtp's log line (log file, syslog):
/// control characters are escaped as in the protocol trace, so a reply can neither start a
/// new log line nor restyle a terminal, and `'` (which would close the quoted field) becomes `?`
/// as in msmtp.
fn log_value(text: &str) -> String {
    crate::proto::trace::printable(text.as_bytes()).replace('\'', "?")
}

/// msmtp's log line (host= tls= auth= user= from= recipients= mailsize= smtpstatus= ...).
pub struct LogLine {
    fields: String,
}

impl LogLine {
    pub fn new(s: &SubmitSettings, from: &str, rcpts: &[String]) -> LogLine {
        let auth = !matches!(s.server.auth(), AuthSetting::Off);
        // msmtp names the host when one is set, else the socket.
        let place = match (s.server.host(), s.socket()) {
            (None, Some(path)) => format!("socket={}", path.display()),
            (host, _) => format!("host={}", host.unwrap_or("")),
        };
        let mut fields = format!(
            "{place} tls={} auth={}",
            if s.tls_mode() == TlsMode::Off {
                "off"
            } else {
                "on"
            },
            if auth { "on" } else { "off" }
        );
        if auth {
            fields.push_str(&format!(" user={}", s.server.user().unwrap_or("")));
        }
        fields.push_str(&format!(" from={from} recipients={}", rcpts.join(",")));
        LogLine { fields }
    }

    pub fn write(
        &self,
        s: &SubmitSettings,
        result: &std::result::Result<&Sent, &Error>,
        size: u64,
    ) {
        let (line, ok) = match result {
            Ok(sent) => (self.sent_line(sent, size), true),
            Err(e) => (
                format!(
                    "{} errormsg='{}' exitcode={}",
                    self.fields,
                    log_value(&e.chain()),
                    crate::exit::sysexits::name(crate::exit::rsend_code(e.kind()))
                ),
                false,
            ),
        };
        self.emit(s, &line, ok);
    }

    /// The line for a message the server accepted.
    fn sent_line(&self, sent: &Sent, size: u64) -> String {
        format!(
            "{} mailsize={size} smtpstatus={} smtpmsg='{}' exitcode=EX_OK",
            self.fields,
            sent.final_code,
            // msmtp: each reply line with its code, joined by a literal \n.
            sent.final_reply
                .split('\n')
                .map(|l| log_value(&format!("{} {l}", sent.final_code)))
                .collect::<Vec<_>>()
                .join("\\n")
        )
    }

    /// The message is in the queue (after `failure`, or without an attempt); rsend exits 0.
    pub fn write_queued(&self, s: &SubmitSettings, id: &str, size: u64, failure: Option<&Error>) {
        let line = match failure {
            Some(e) => format!(
                "{} mailsize={size} errormsg='{}' queued={id} exitcode=EX_OK",
                self.fields,
                log_value(&e.chain())
            ),
            None => format!("{} mailsize={size} queued={id} exitcode=EX_OK", self.fields),
        };
        match failure {
            Some(e) => log::warn!(
                "temporary failure ({}); the message is queued as {id} and will be retried",
                e.chain()
            ),
            None => log::info!("message queued as {id}"),
        }
        self.emit(s, &line, true);
    }

    fn emit(&self, s: &SubmitSettings, line: &str, ok: bool) {
        if let Some(target) = s.logfile() {
            let stamp = s
                .logfile_time_format()
                .map(|f| format!("{} ", chrono::Local::now().format(&f)))
                .unwrap_or_default();
            let text = format!("{stamp}{line}\n");
            match target {
                LogFile::Stdout
                    if LOG_STDOUT_TO_STDERR.load(std::sync::atomic::Ordering::Relaxed) =>
                {
                    let _ = io::stderr().write_all(text.as_bytes());
                }
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
                let _ = if ok { w.info(line) } else { w.err(line) };
            }
        }
    }
}

fn append_locked(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // Created private, as rfetch's log is: the lines name senders, recipients and servers.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_cannot_forge_or_restyle_the_log_line() {
        let line = LogLine::new(&SubmitSettings::default(), "a@b", &["c@d".into()]);
        let sent = Sent {
            recipients: vec!["c@d".into()],
            final_reply: "ok\r\nFAKE exitcode=EX_OK\u{1b}[31m 'x'".into(),
            final_code: 250,
        };
        let text = line.sent_line(&sent, 10);
        assert!(
            !text.chars().any(|c| c.is_control()),
            "a control character from the server reached the log line: {text:?}"
        );
        assert!(text.contains("\\r"), "{text}");
        assert!(
            !text.contains("'x'"),
            "a quote from the server closed the field: {text}"
        );
    }

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
