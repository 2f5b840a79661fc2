//! The rsend entry point: argument parsing (also when called as sendmail, mailq or newaliases),
//! the logger, the modes (send, --pretend, --serverinfo), and the one place errors become exit
//! codes (through [`crate::exit::rsend_code`]).

use std::io::Write;

use crate::account::Env;
use crate::cli::rsend_args::{self, Mode, RsendArgs};
use crate::cli::{build_info, completions, write_stdout};
use crate::error::{Error, ErrorKind};
use crate::exit::{rsend_code, sysexits};
use crate::hint::Vocabulary;
use crate::log::Verbosity;
use crate::net::format_fingerprint;
use crate::session::smtp::SmtpClient;
use crate::submit::queue::Queue;
use crate::submit::request::{AccountChoice, Request};
use crate::submit::{flush, run};

/// Runs rsend with the process arguments; returns the exit code.
pub fn main() -> i32 {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let program = argv
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .unwrap_or_default();
    // Called as mailq or newaliases through a symlink, as MTAs are.
    match program.as_str() {
        "mailq" => {
            crate::log::init("rsend", Verbosity::Normal, None);
            let args = RsendArgs {
                mode: Some("p".into()),
                ..Default::default()
            };
            return match list_queue(&args, &Env::from_process()) {
                Ok(()) => sysexits::OK,
                Err(e) => {
                    crate::hint::show("rsend", &e, Vocabulary::Submit);
                    rsend_code(e.kind())
                }
            };
        }
        "newaliases" => return sysexits::OK,
        _ => {}
    }
    let args = match rsend_args::parse(argv) {
        Ok(a) => a,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    sysexits::OK
                }
                _ => sysexits::USAGE,
            };
            let _ = e.print();
            return code;
        }
    };
    let verbosity = match args.verbose {
        0 => Verbosity::Normal,
        _ => Verbosity::Debug,
    };
    crate::log::init("rsend", verbosity, None);
    for w in rsend_args::compat_warnings(&args) {
        log::warn!("{w}");
    }
    match run_args(&args, &mut std::io::stdin().lock()) {
        Ok(()) => sysexits::OK,
        Err(e) => {
            let e = name_config_files(&args, e);
            crate::hint::show("rsend", &e, Vocabulary::Submit);
            rsend_code(e.kind())
        }
    }
}

/// A configuration error names the files read (unless it already does, or --host means no
/// file was read).
fn name_config_files(args: &RsendArgs, e: Error) -> Error {
    use crate::config::discover::{self, Program};
    if args.host.is_some() || !matches!(e.kind(), ErrorKind::Config | ErrorKind::InsecureConfig) {
        return e;
    }
    let env = Env::from_process();
    let explicit = args
        .file
        .as_deref()
        .map(|f| discover::rsend_explicit(env.expand_tilde(f)));
    discover::discover(Program::Rsend, explicit, &env).name_in_error(e, &|p| p.exists())
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
    push("queue_dir", &args.queue_dir);
    push("source_ip", &args.source_ip);
    push("proxy_host", &args.proxy_host);
    push("proxy_port", &args.proxy_port);
    push("socket", &args.socket);
    push("logfile_time_format", &args.logfile_time_format);
    push("keepbcc", &args.keepbcc);
    push("undisclosed_recipients", &args.undisclosed_recipients);
    push("add_missing_from_header", &args.add_missing_from_header);
    push("add_missing_date_header", &args.add_missing_date_header);
    if args.danger_plaintext_auth {
        out.push(("danger_plaintext_auth", "on".to_string()));
    }
    out
}

/// The submit job's request for a parsed command line.
pub fn request(args: &RsendArgs) -> Request {
    Request {
        config_file: args.file.clone(),
        account: if args.host.is_some() {
            AccountChoice::CommandLine
        } else {
            AccountChoice::Configured(args.account.clone())
        },
        overrides: overrides(args),
        from: args.from.clone().or_else(|| args.from_r.clone()),
        read_envelope_from: args.read_envelope_from,
        recipients: args.recipients.clone(),
        read_recipients: args.read_recipients,
        full_name: args.full_name.clone(),
        delivery: rsend_args::delivery_flag(args),
        queue_on_failure: args.queue_on_failure,
        verbose: args.verbose > 0,
        sender_needed: !args.serverinfo,
    }
}

/// Runs a parsed command line with `input` as the message source.
pub fn run_args(args: &RsendArgs, input: &mut dyn std::io::Read) -> Result<(), Error> {
    if let Some(shell) = args.completions {
        return write_stdout(&completions::script(completions::Program::Rsend, shell));
    }
    if args.version {
        let text = format!(
            "{}\n{}{}",
            build_info::rsend_title(),
            build_info::describe(build_info::Binary::Rsend),
            configuration_lines(args, &Env::from_process())
        );
        return write_stdout(text.as_bytes());
    }
    if let Some(address) = &args.configure {
        let env = Env::from_process();
        return crate::submit::configure::configure(address, &env, &mut std::io::stdout().lock());
    }
    if rsend_args::smtp_on_stdio(args) {
        let env = Env::from_process();
        return crate::submit::smtp_stdio::serve(
            &request(args),
            &env,
            input,
            &mut std::io::stdout().lock(),
        );
    }
    let mode = rsend_args::mode(args).map_err(|m| Error::new(ErrorKind::Usage, m))?;
    let env = Env::from_process();
    match mode {
        Mode::Newaliases => return Ok(()),
        Mode::ListQueue => return list_queue(args, &env),
        Mode::Flush => return flush_queue(args, &env),
        Mode::Remove => {
            let id = args.queue_remove.as_deref().unwrap_or_default();
            let queue = Queue::open(&command_queue_dir(args, &env)?)?;
            queue.remove(id)?;
            log::info!("message {id} removed from the queue");
            return Ok(());
        }
        Mode::InstallUnits => return install_units(args, &env),
        Mode::Deliver => {}
    }
    if args.pretend {
        return pretend(args, &env);
    }
    if args.serverinfo {
        if !args.recipients.is_empty() {
            return Err(Error::new(
                ErrorKind::Usage,
                "too many arguments: --serverinfo takes no recipients",
            ));
        }
        return serverinfo(args, &env);
    }
    match run::send(&request(args), &env, input)? {
        run::Outcome::Sent(sent) => log::info!(
            "message accepted for {}: {}",
            sent.recipients.join(", "),
            sent.final_reply
        ),
        // The temporary failure was logged as a warning where it was queued.
        run::Outcome::Queued { .. } => {}
    }
    Ok(())
}

/// The queue directory for -q, -bp and --queue-remove: --queue-dir, else `queue_dir` of the
/// account the run would use (-a, or the default account), else the default directory.
fn command_queue_dir(args: &RsendArgs, env: &Env) -> Result<std::path::PathBuf, Error> {
    if let Some(d) = &args.queue_dir {
        return Ok(env.expand_tilde(d));
    }
    let req = request(args);
    if req.account != AccountChoice::Configured(None) {
        let resolved = run::resolve(&req, env, None)?;
        return run::queue_dir(&resolved.settings, env);
    }
    let set = run::load_accounts(&req, env)?;
    let configured = set
        .select(None, None, env)
        .ok()
        .and_then(|(a, _)| a.submit().ok())
        .and_then(|s| s.queue_dir().map(std::path::Path::to_path_buf));
    match configured {
        Some(d) => Ok(d),
        None => run::queue_dir(&Default::default(), env),
    }
}

/// --install-units: the units for this binary and this queue, in the user's systemd directory.
/// They are written (each to a temporary name, then renamed) but not enabled: that is the
/// user's decision, and the printed command does it.
fn install_units(args: &RsendArgs, env: &Env) -> Result<(), Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::with_source(ErrorKind::LocalIo, "cannot find the rsend binary", e))?;
    let queue_dir = command_queue_dir(args, env)?;
    let units = crate::submit::units::render(&exe, &queue_dir)
        .map_err(|m| Error::new(ErrorKind::Usage, m))?;
    let dir = env
        .config_home()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "neither $XDG_CONFIG_HOME nor $HOME is set: nowhere to install the units",
            )
        })?
        .join("systemd/user");
    let failed = |what: String| move |e| Error::with_source(ErrorKind::LocalIo, what, e);
    std::fs::create_dir_all(&dir).map_err(failed(format!("cannot create {}", dir.display())))?;
    let mut out = std::io::stdout().lock();
    for unit in &units {
        let path = dir.join(unit.name);
        let tmp = dir.join(format!(".{}.tmp", unit.name));
        std::fs::write(&tmp, &unit.text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(failed(format!("cannot write {}", path.display())))?;
        let _ = writeln!(out, "wrote {}", path.display());
    }
    let _ = writeln!(
        out,
        "enable them with: systemctl --user daemon-reload && systemctl --user enable --now \
         rsend-queue.timer rsend-queue.path"
    );
    Ok(())
}

/// What --version says about configuration: the order files are looked for, and the files
/// this invocation reads (msmtp's two "configuration file name" lines).
fn configuration_lines(args: &RsendArgs, env: &Env) -> String {
    use crate::config::discover::{self, Program};
    let explicit = args
        .file
        .as_deref()
        .map(|f| discover::rsend_explicit(env.expand_tilde(f)));
    let found = discover::discover(Program::Rsend, explicit, env);
    let mut out = String::from(
        "Configuration files, in the order looked for (the first that exists is read):\n",
    );
    for c in &found.looked_for {
        out.push_str(&format!("    {c}\n"));
    }
    if let Some(s) = &found.system {
        out.push_str(&format!(
            "System configuration file name: {}\n",
            s.display()
        ));
    }
    out.push_str(&format!(
        "User configuration file name: {}\n",
        found.chosen.as_ref().map_or_else(
            || "(none found)".to_owned(),
            |c| c.path.display().to_string()
        )
    ));
    for u in &found.unused {
        out.push_str(&format!("Present but not read: {}\n", u.path.display()));
    }
    out
}

/// -bp and mailq.
fn list_queue(args: &RsendArgs, env: &Env) -> Result<(), Error> {
    let queue = Queue::existing(&command_queue_dir(args, env)?)?;
    let mut out = std::io::stdout().lock();
    flush::list(queue.as_ref(), &mut out)
        .map_err(|e| Error::with_source(ErrorKind::LocalIo, "cannot list the queue", e))?;
    Ok(())
}

/// -q: exits 0 when every message tried was sent or waits for its next attempt; 65 when a
/// message is held (too old, or refused) or a file in the queue cannot be read, so that the
/// systemd unit shows that something needs a person.
fn flush_queue(args: &RsendArgs, env: &Env) -> Result<(), Error> {
    let Some(queue) = Queue::existing(&command_queue_dir(args, env)?)? else {
        return Ok(());
    };
    let summary = flush::flush(
        &queue,
        env,
        flush::Selection {
            due_only: args.due_only,
            only: args.flush_id.as_deref(),
        },
    )?;
    log::info!(
        "queue flushed: {} sent, {} deferred, {} held, {} unreadable, {} foreign, {} busy",
        summary.sent,
        summary.deferred,
        summary.held,
        summary.unreadable,
        summary.foreign,
        summary.busy
    );
    if summary.needs_attention() {
        return Err(Error::new(
            ErrorKind::RejectedPermanent,
            "the queue holds messages that need attention (see rsend -bp)",
        ));
    }
    Ok(())
}

fn pretend(args: &RsendArgs, env: &Env) -> Result<(), Error> {
    let req = request(args);
    let resolved = run::resolve(&req, env, req.from.as_deref())?;
    let mut out = std::io::stdout().lock();
    let files: Vec<String> = resolved
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let _ = writeln!(out, "loaded configuration files: {}", files.join(", "));
    let _ = writeln!(out, "using account: {}", resolved.account_name);
    for line in resolved.settings.pretend_lines(env) {
        let _ = writeln!(out, "{line}");
    }
    Ok(())
}

fn serverinfo(args: &RsendArgs, env: &Env) -> Result<(), Error> {
    let resolved = run::resolve(&request(args), env, None)?;
    let mut settings = run::session_settings_without_auth(&resolved.settings, env)?;
    settings.auth = None;
    let client = SmtpClient::connect(&settings)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{} server at {} ({})",
        match settings.protocol {
            crate::proto::smtp::Protocol::Smtp => "SMTP",
            crate::proto::smtp::Protocol::Lmtp => "LMTP",
        },
        client.peer(),
        if client.is_tls() { "TLS" } else { "no TLS" }
    );
    if let Some(conn) = client.connection()
        && conn.is_tls()
    {
        let _ = writeln!(out, "TLS session:");
        if let Some(v) = conn.protocol_version() {
            let _ = writeln!(out, "    Protocol: {v}");
        }
        if let Some(c) = conn.cipher_suite() {
            let _ = writeln!(out, "    Cipher: {c}");
        }
        if let Some(fp) = conn.peer_fingerprint_sha256() {
            let _ = writeln!(
                out,
                "    Certificate SHA256 fingerprint: {}",
                format_fingerprint(&fp)
            );
        }
    }
    let _ = writeln!(out, "Greeting: {}", client.greeting().text());
    let caps = client.capabilities();
    let _ = writeln!(out, "Capabilities:");
    if caps.size_extension {
        match caps.size_limit {
            Some(n) => {
                let _ = writeln!(
                    out,
                    "    SIZE {n}: maximum message size is {} MiB",
                    n / (1024 * 1024)
                );
            }
            None => {
                let _ = writeln!(out, "    SIZE: no fixed maximum message size");
            }
        }
    }
    for (on, name, what) in [
        (
            caps.pipelining,
            "PIPELINING",
            "several commands per round trip",
        ),
        (caps.starttls, "STARTTLS", "upgrade to TLS"),
        (caps.eight_bit_mime, "8BITMIME", "8-bit message bodies"),
        (caps.smtputf8, "SMTPUTF8", "UTF-8 addresses"),
        (caps.dsn, "DSN", "delivery status notifications"),
        (caps.chunking, "CHUNKING", "BDAT"),
    ] {
        if on {
            let _ = writeln!(out, "    {name}: {what}");
        }
    }
    if !caps.auth.is_empty() {
        let _ = writeln!(out, "    AUTH: {}", caps.auth.join(" "));
    } else if !client.is_tls() && caps.starttls {
        let _ = writeln!(
            out,
            "    AUTH: none offered before STARTTLS (use --tls --tls-starttls to see them)"
        );
    }
    let _ = client.quit();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submit::request::DeliveryFlag;

    fn req(line: &str) -> Request {
        let args = rsend_args::parse(
            std::iter::once("rsend".to_string()).chain(line.split_whitespace().map(String::from)),
        )
        .unwrap_or_else(|e| panic!("{line}: {e}"));
        request(&args)
    }

    #[test]
    fn request_from_the_command_line() {
        let r = req("-C /etc/x -a work -f me@x.org -t -odq --queue-on-failure -v a@b,c@d");
        assert_eq!(r.config_file.as_deref(), Some("/etc/x"));
        assert_eq!(r.account, AccountChoice::Configured(Some("work".into())));
        assert_eq!(r.from.as_deref(), Some("me@x.org"));
        assert!(r.read_recipients && r.queue_on_failure && r.verbose && r.sender_needed);
        assert_eq!(r.recipients, ["a@b,c@d"]);
        assert_eq!(r.delivery, Some(DeliveryFlag::Queue));

        // --host means no configuration file; -r is the envelope-from when -f is absent; the
        // settings given as flags become msmtprc overrides, kept for a queued message.
        let r = req("--host=mx.example.org --port=2525 -r bounce@x.org --tls=on x@y");
        assert_eq!(r.account, AccountChoice::CommandLine);
        assert_eq!(r.from.as_deref(), Some("bounce@x.org"));
        assert_eq!(
            r.overrides,
            [
                ("host", "mx.example.org".to_string()),
                ("port", "2525".to_string()),
                ("tls", "on".to_string())
            ]
        );
        assert_eq!(req("x@y").account, AccountChoice::Configured(None));
        assert!(!req("--serverinfo").sender_needed);
    }
}
