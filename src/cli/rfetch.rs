//! The rfetch command line (fetchmail options) and its dispatch: config loading (native TOML
//! or fetchmailrc), starting the instance ([`crate::fetch::instance`]: lock, id file, journal
//! recovery), handing the accounts to [`crate::fetch::daemon`] (one-shot, daemon, IDLE), and
//! fetchmail's exit codes (0 mail, 1 no mail, 13 fetchlimit reached, the failure's otherwise).
//!
//! Daemon mode detaches from the terminal (through [`crate::cli::daemonize`]) unless -N is
//! given.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::account::{Env, Provenance, Sourced, Target};
use crate::cli::daemonize::{self, Outcome, Stage};
use crate::cli::rfetch_args::{self, RfetchArgs};
use crate::cli::{build_info, completions, write_stdout};
use crate::config::discover::{self, ConfigFile, Format, Program};
use crate::config::fetchmailrc::lower;
use crate::config::{self, fetchmailrc};
use crate::error::{Error, ErrorKind, Result};
use crate::exit::{fetchmail as code, rfetch_code};
use crate::fetch::daemon::{self, Control, Schedule};
use crate::fetch::instance::{self, Instance};
use crate::fetch::lock;
use crate::fetch::poll::{PollContext, PollReport};
use crate::fetch::spec::{self, PollSpec};
use crate::log::{self as plog, Verbosity};

/// Runs rfetch with the process arguments; returns the exit code.
pub fn main() -> i32 {
    let args = match rfetch_args::parse(std::env::args()) {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind as K;
            let _ = e.print();
            return match e.kind() {
                K::DisplayHelp | K::DisplayVersion => code::SUCCESS,
                _ => code::SYNTAX,
            };
        }
    };
    let verbosity = if args.silent {
        Verbosity::Quiet
    } else {
        match args.verbose {
            0 => Verbosity::Normal,
            1 => Verbosity::Verbose,
            _ => Verbosity::Debug,
        }
    };
    if args.detached_stage == Some(Stage::Session) {
        return daemonize::start_session();
    }
    let syslog = (args.syslog && !args.nosyslog).then_some(syslog::Facility::LOG_MAIL);
    plog::init("rfetch", verbosity, syslog);
    crate::fetch::poll::raise_open_file_limit();
    match run(&args) {
        Ok(c) => c,
        Err(e) => {
            let c = rfetch_code(e.kind());
            if args.detached_stage == Some(Stage::Daemon) {
                daemonize::report_failure(c, &e.chain());
            }
            eprintln!("rfetch: {}", e.chain());
            c
        }
    }
}

/// The process the user started, in daemon mode without -N: the daemon runs detached; this
/// process reports how that went and exits.
fn detach(interval: u64, logging: (Option<PathBuf>, bool)) -> Result<i32> {
    match daemonize::detach()? {
        Outcome::Ready(pid) => {
            log::info!("rfetch daemon started as pid {pid}, polling every {interval} s");
            if let (None, false) = logging {
                log::warn!(
                    "the daemon (pid {pid}) logs nowhere: give -L FILE or --syslog to see its \
                     errors, or -N to keep it in the foreground"
                );
            }
            Ok(code::SUCCESS)
        }
        Outcome::Failed { code, message } => {
            eprintln!("rfetch: {message}");
            Ok(code)
        }
    }
}

/// Where the polls came from.
struct Loaded {
    specs: Vec<PollSpec>,
    rc: Option<fetchmailrc::FetchmailRc>,
    /// The file read (named in -v, -V, --configdump and configuration errors); `None` when
    /// there is none and the servers named on the command line are polled with its options
    /// alone, as fetchmail does.
    file: Option<ConfigFile>,
}

/// The file named with -f or -C, if any.
fn explicit_file(args: &RfetchArgs, env: &Env) -> Result<Option<ConfigFile>> {
    if let Some(c) = &args.config {
        return Ok(Some(ConfigFile::explicit(
            env.expand_tilde(c),
            Format::Toml,
            "-C",
        )));
    }
    if let Some(f) = &args.fetchmailrc {
        if f == "-" {
            return Err(Error::new(
                ErrorKind::Usage,
                "reading the fetchmailrc from standard input is not supported; give a file",
            ));
        }
        return Ok(Some(ConfigFile::explicit(
            env.expand_tilde(f),
            Format::Fetchmailrc,
            "-f",
        )));
    }
    Ok(None)
}

/// Reads the configuration in the order both binaries share (`config::discover`).
fn load(args: &RfetchArgs, env: &Env) -> Result<Loaded> {
    let found = discover::discover(Program::Rfetch, explicit_file(args, env)?, env);
    let Some(file) = found.chosen.clone() else {
        if !args.servers.is_empty() && explicit_file(args, env)?.is_none() {
            log::info!("no configuration file: polling with the command-line options only");
            return Ok(Loaded {
                specs: Vec::new(),
                rc: None,
                file: None,
            });
        }
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "no mailservers have been specified: {}",
                found.nothing_found()
            ),
        ));
    };
    found.report_unused(&|c| discover::toml_configures(Program::Rfetch, &c.path, env));
    log::info!("reading configuration from {file}");
    let (specs, rc) =
        read(&file, env, args.configdump).map_err(|e| discover::name_file(e, &file))?;
    Ok(Loaded {
        specs,
        rc,
        file: Some(file),
    })
}

/// The polls of `file`, and the fetchmailrc itself when it is one.
/// With `configdump`, a fetchmailrc whose keywords rfetch refuses is still returned (no polls),
/// so that --configdump can show it with its errors.
fn read(
    file: &ConfigFile,
    env: &Env,
    configdump: bool,
) -> Result<(Vec<PollSpec>, Option<fetchmailrc::FetchmailRc>)> {
    if file.format == Format::Toml {
        let set = config::load_toml(env, Some(&file.path))?;
        return Ok((spec::from_accounts(&set.accounts, env), None));
    }
    let rc = fetchmailrc::read_fetchmailrc(&file.path)?;
    // One warning per keyword and run, however often the file uses it (the first use named).
    let mut warned: Vec<&str> = Vec::new();
    for w in &rc.warnings {
        if !warned.contains(&w.keyword.as_str()) {
            warned.push(&w.keyword);
            log::warn!("{w}");
        }
    }
    if configdump && !rc.refusals.is_empty() {
        return Ok((Vec::new(), Some(rc)));
    }
    let specs = spec::from_fetchmailrc(&rc, env)?;
    Ok((specs, Some(rc)))
}

/// The name of the configuration file read, for messages.
fn describe_file(file: &Option<ConfigFile>) -> String {
    file.as_ref()
        .map_or_else(|| "the command line".to_owned(), ToString::to_string)
}

/// Refused fetchmail options end the run with the reason; warned ones are logged once, saying
/// what rfetch does instead (`rfetch_args::RFETCH_OPTIONS`).
fn check_unsupported(args: &RfetchArgs) -> Result<()> {
    for (long, support) in &args.unsupported {
        match support {
            rfetch_args::Support::Refused(why) => {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("{long} is refused: {why}"),
                ));
            }
            rfetch_args::Support::Warned(instead) => {
                log::warn!("{long} is not supported by rfetch and is ignored: {instead}");
            }
            rfetch_args::Support::Implemented => {}
        }
    }
    Ok(())
}

/// Command-line options that override every selected poll (fetchmail: the command line wins
/// over the rc file). A value rfetch cannot honour is an error naming the option.
fn apply_overrides(args: &RfetchArgs, s: &mut PollSpec) -> Result<()> {
    use crate::account::{FetchProtocol, TrustFile};
    fn cl<T>(v: T) -> Option<Sourced<T>> {
        Some(Sourced::new(v, Provenance::CommandLine))
    }
    let usage = |m: String| Error::new(ErrorKind::Usage, m);
    if let Some(p) = &args.protocol {
        let protocol = match p.to_ascii_lowercase().as_str() {
            "pop3" | "apop" => FetchProtocol::Pop3,
            "imap" | "auto" => FetchProtocol::Imap,
            _ => {
                return Err(usage(format!(
                    "-p {p}: protocol not supported by rfetch (use POP3, APOP, IMAP or AUTO)"
                )));
            }
        };
        s.fetch.protocol = Sourced::new(protocol, Provenance::CommandLine);
    }
    if let Some(u) = &args.user {
        s.fetch.server.user = cl(u.clone());
    }
    if let Some(p) = &args.service {
        let port = lower::service_port(p).ok_or_else(|| {
            usage(format!(
                "-P {p}: not a port number or pop3, pop3s, imap, imaps"
            ))
        })?;
        s.fetch.server.port = cl(port);
    }
    if let Some(t) = args.timeout {
        s.fetch.server.timeout = cl((t > 0).then(|| Duration::from_secs(t)));
    }
    if let Some(a) = &args.auth {
        // fetchmail's auth values, lowered as the rc keyword is: `any` is the automatic
        // choice, a method the server must offer otherwise; what rfetch cannot do (GSSAPI,
        // NTLM, Kerberos, ...) is refused here, never a fall back to the password.
        let setting = match a.to_ascii_lowercase().as_str() {
            "any" => crate::account::AuthSetting::Auto,
            name => match crate::session::auth::FetchAuth::from_name(name) {
                Some(_) => crate::account::AuthSetting::Method(name.to_ascii_uppercase()),
                None => {
                    return Err(usage(format!(
                        "--auth {a} is refused: rfetch cannot log in that way (use any, password, \
                         cram-md5, scram-sha-1, scram-sha-256, external, xoauth2, oauthbearer, \
                         implicit)"
                    )));
                }
            },
        };
        s.fetch.server.auth = cl(setting);
    }
    if args.nobounce {
        s.bounce.bouncemail = false;
    }
    if args.softbounce {
        s.bounce.softbounce = true;
    }
    if args.nosoftbounce {
        s.bounce.softbounce = false;
    }
    if let Some(p) = &args.postmaster {
        s.bounce.postmaster = p.clone();
    }
    for (given, slot, name) in [
        (&args.plugin, &mut s.hooks.plugin, "--plugin"),
        (&args.plugout, &mut s.hooks.plugout, "--plugout"),
    ] {
        if let Some(cmd) = given {
            crate::fetch::hooks::check_connect_command(cmd)
                .map_err(|why| usage(format!("{name} {cmd:?}: {why}")))?;
            *slot = Some(cmd.clone());
        }
    }
    if let Some(m) = &mut s.multidrop {
        if let Some(e) = &args.envelope {
            m.envelope = Some((0, e.clone()));
        }
        if let Some(q) = &args.qvirtual {
            m.qvirtual = Some(q.clone());
        }
        if let Some(p) = &args.postmaster {
            m.postmaster = p.clone();
        }
    }
    if args.ssl {
        s.fetch.server.tls = cl(true);
        s.fetch.server.tls_starttls = cl(false);
    }
    if args.sslcertck {
        s.fetch.server.tls_certcheck = cl(true);
    }
    if args.nosslcertck {
        s.fetch.server.tls_certcheck = cl(false);
    }
    match (&args.sslcertfile, &args.sslcertpath) {
        (Some(_), Some(_)) => {
            return Err(usage(
                "--sslcertfile and --sslcertpath together: rfetch trusts one of them".into(),
            ));
        }
        (Some(f), None) => s.fetch.server.tls_trust_file = cl(TrustFile::Path(PathBuf::from(f))),
        (None, Some(d)) => s.fetch.server.tls_trust_file = cl(TrustFile::Dir(PathBuf::from(d))),
        (None, None) => {}
    }
    if let Some(fp) = &args.sslfingerprint {
        // The command line wins over the rc's pin of either kind.
        if let Some(sha256) = crate::net::parse_fingerprint(fp) {
            s.fetch.server.tls_fingerprint = cl(Some(sha256));
            s.fetch.server.tls_fingerprint_legacy = None;
        } else if let Some(legacy) = crate::net::LegacyPin::parse(fp) {
            log::warn!(
                "--sslfingerprint is {}, a digest that can be forged; rfetch checks it and \
                 prints the SHA-256 to use instead when it reaches the server",
                legacy.algorithm()
            );
            s.fetch.server.tls_fingerprint = None;
            s.fetch.server.tls_fingerprint_legacy = cl(legacy);
        } else {
            return Err(usage(
                "--sslfingerprint must be a SHA-256 fingerprint (32 hex pairs), or fetchmail's \
                 MD5 (16) or SHA-1 (20)"
                    .into(),
            ));
        }
    }
    if let Some(cn) = &args.sslcommonname {
        s.fetch.server.tls_host_override = cl(cn.clone());
    }
    if let Some(c) = &args.sslcert {
        s.fetch.server.tls_cert_file = cl(PathBuf::from(c));
    }
    if let Some(k) = &args.sslkey {
        s.fetch.server.tls_key_file = cl(PathBuf::from(k));
    }
    if let Some(v) = &args.sslproto
        && let Err(why) = fetchmailrc::check_tls_floor(v)
    {
        return Err(usage(format!("--sslproto {v} is refused: {why}")));
    }
    if let Some(b) = &args.bad_header
        && b != "accept"
    {
        return Err(usage(format!(
            "--bad-header {b} is refused: rfetch delivers a message whose header is malformed \
             as it came (--bad-header accept)"
        )));
    }
    if args.keep {
        s.fetch.keep = cl(true);
    }
    if args.nokeep {
        s.fetch.keep = cl(false);
    }
    if args.all {
        s.fetch.fetchall = cl(true);
    }
    if let Some(l) = args.limit {
        s.fetch.tuning.limit = (l > 0).then_some(l);
    }
    if let Some(l) = args.fetchlimit {
        s.fetch.tuning.fetchlimit = (l > 0).then_some(l);
    }
    if let Some(b) = args.batchlimit {
        s.fetch.tuning.batchlimit = b;
    }
    if args.invisible {
        s.invisible = true;
    }
    if args.idle {
        s.fetch.idle = cl(true);
    }
    if args.flush {
        s.fetch.tuning.flush = true;
    }
    if args.limitflush {
        s.fetch.tuning.limitflush = true;
    }
    if let Some(e) = args.expunge {
        s.fetch.tuning.expunge = Some(e);
    }
    if let Some(f) = &args.folder {
        s.fetch.folders = cl(f.split(',').map(str::to_owned).collect());
    }
    if let Some(z) = &args.antispam {
        let codes: Vec<i64> = z
            .split(',')
            .map(|c| c.trim().parse::<i64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| usage(format!("-Z {z}: a comma-separated list of reply codes")))?;
        if codes != [-1] && codes.iter().any(|c| !(100..=599).contains(c)) {
            return Err(usage(format!(
                "-Z {z}: an SMTP reply code is 100 to 599 (or -1 alone)"
            )));
        }
        s.antispam = lower::antispam_codes(&codes);
    }
    // Where the mail goes: -S (with --lmtp, LMTP), or --lmtp to the poll's SMTP host; -m
    // wins over both, as fetchmail's mda does over smtphost.
    if let Some(hosts) = &args.smtphost {
        let list: Vec<String> = hosts.split(',').map(str::to_owned).collect();
        let first = list.first().map_or("localhost", String::as_str);
        let target = lower::smtp_target(first, args.lmtp).map_err(|m| usage(format!("-S: {m}")))?;
        s.fetch.target = Some(Sourced::new(target, Provenance::CommandLine));
        // The rest of the list is tried in turn when the first cannot be reached.
        s.smtp_fallbacks = lower::smtp_endpoints(list.iter().skip(1), args.lmtp)
            .map_err(|m| usage(format!("-S: {m}")))?;
    } else if args.lmtp {
        let endpoint = match s.fetch.target.as_ref().map(|t| &t.value) {
            Some(Target::Smtp(e) | Target::Lmtp(e)) if e.port != 25 => e.clone(),
            _ => {
                return Err(usage(
                    "--lmtp needs the LMTP listener's host and port: -S host/port".into(),
                ));
            }
        };
        s.fetch.target = Some(Sourced::new(
            Target::Lmtp(endpoint),
            Provenance::CommandLine,
        ));
    }
    if let Some(m) = &args.mda {
        s.fetch.target = Some(Sourced::new(
            Target::MdaShell(m.clone()),
            Provenance::CommandLine,
        ));
    }
    if let Some(d) = &args.smtpaddress {
        // The recipient follows the domain unless it was given in full.
        if s.smtp_recipient == format!("{}@{}", s.local_user, s.smtp_domain) {
            s.smtp_recipient = format!("{}@{d}", s.local_user);
        }
        s.smtp_domain = d.clone();
    }
    if let Some(n) = &args.smtpname {
        s.smtp_recipient = n.clone();
    }
    Ok(())
}

/// Where log lines go besides stderr: `-L FILE` or `set logfile` (the command line first),
/// else syslog when `--syslog` or `set syslog` asks for it and `--nosyslog` does not. As in
/// fetchmail a log file wins over syslog. Unlike fetchmail the file is used in the foreground
/// too (-N, or a single run) and is created (mode 600) when missing.
fn log_sinks(
    args: &RfetchArgs,
    rc: Option<&fetchmailrc::FetchmailRc>,
    env: &Env,
) -> (Option<PathBuf>, bool) {
    let logfile = path_setting(
        args.logfile.as_deref(),
        rc.and_then(|r| r.globals.logfile.as_ref()),
        env,
    );
    let syslog = if args.nosyslog {
        false
    } else if args.syslog {
        true
    } else {
        rc.and_then(|r| r.globals.syslog.as_ref())
            .is_some_and(|v| v.value)
    };
    let syslog = syslog && logfile.is_none();
    (logfile, syslog)
}

/// Switches the logger to the configured sinks. A log file that cannot be opened is a
/// warning, as in fetchmail: logging never stops mail from being fetched.
fn configure_logging(args: &RfetchArgs, rc: Option<&fetchmailrc::FetchmailRc>, env: &Env) {
    let (logfile, syslog) = log_sinks(args, rc, env);
    plog::set_syslog(syslog.then_some(syslog::Facility::LOG_MAIL));
    if let Some(p) = &logfile
        && let Err(e) = plog::set_logfile(Some(p))
    {
        log::warn!(
            "cannot open the log file {}: {e}; not logging to it",
            p.display()
        );
    }
}

/// A file given by an option (`~` expanded), else by the fetchmailrc's `set` line.
fn path_setting(
    option: Option<&str>,
    rc: Option<&fetchmailrc::Located<PathBuf>>,
    env: &Env,
) -> Option<PathBuf> {
    option
        .map(|p| env.expand_tilde(p))
        .or_else(|| rc.map(|p| p.value.clone()))
}

/// The lock file: `--pidfile`, else `set pidfile`, else the default.
fn lock_path(args: &RfetchArgs, rc: Option<&fetchmailrc::FetchmailRc>, env: &Env) -> PathBuf {
    let configured = path_setting(
        args.pidfile.as_deref(),
        rc.and_then(|r| r.globals.pidfile.as_ref()),
        env,
    );
    instance::lock_path(configured, env)
}

/// Stops the instance holding the lock file at `path`, as `--quit` does; whether one ran.
fn quit_running(path: &Path) -> Result<bool> {
    match lock::quit_running(path, Duration::from_secs(10))? {
        Some(pid) => {
            eprintln!("rfetch: running rfetch (pid {pid}) stopped");
            Ok(true)
        }
        None => {
            eprintln!("rfetch: no other rfetch is running");
            Ok(false)
        }
    }
}

/// fetchmail's rule for a second instance: a running daemon is woken (SIGUSR1: it polls every
/// account at once) when nothing but -v, -s and the configuration and lock files were given;
/// server names or other options, which the daemon would not apply, are refused with exit 8, as
/// is any other instance while a foreground one runs (the lock refuses it). `None`: no daemon
/// runs, go on.
fn wake_daemon(args: &RfetchArgs, lock_file: &Path) -> Result<Option<i32>> {
    let Some((pid, true)) = lock::running_instance(lock_file) else {
        return Ok(None);
    };
    if !args.servers.is_empty() {
        return Err(Error::new(
            ErrorKind::Lock,
            format!("cannot poll the servers named with another rfetch running at pid {pid}"),
        ));
    }
    if !args.wake_only {
        return Err(Error::new(
            ErrorKind::Lock,
            format!(
                "cannot accept options while a background rfetch is running at pid {pid} \
                 (rfetch alone wakes it; rfetch --quit stops it)"
            ),
        ));
    }
    lock::wake(pid)?;
    if !args.silent {
        eprintln!("rfetch: background rfetch at {pid} awakened");
    }
    Ok(Some(code::SUCCESS))
}

fn run(args: &RfetchArgs) -> Result<i32> {
    if let Some(shell) = args.completions {
        write_stdout(&completions::script(completions::Program::Rfetch, shell))?;
        return Ok(code::SUCCESS);
    }
    // The build comes first, as in fetchmail, so that -V describes it also when the
    // configuration cannot be read (what a bug report needs most then).
    if args.version && args.detached_stage.is_none() {
        let text = format!(
            "{}\n{}",
            build_info::rfetch_title(),
            build_info::describe(build_info::Binary::Rfetch)
        );
        write_stdout(text.as_bytes())?;
    }
    let env = Env::from_process();
    check_unsupported(args)?;
    if args.quit_only {
        // Needs no configuration: a broken rc file must not keep a daemon from being stopped.
        return Ok(match quit_running(&lock_path(args, None, &env))? {
            true => code::SUCCESS,
            false => code::NOMAIL,
        });
    }
    let loaded = load(args, &env)?;
    // the process the user started already stopped the old instance before detaching
    if args.quit && args.detached_stage.is_none() {
        quit_running(&lock_path(args, loaded.rc.as_ref(), &env))?;
    } else if args.detached_stage.is_none()
        && !args.version
        && !args.configdump
        && let Some(code) = wake_daemon(args, &lock_path(args, loaded.rc.as_ref(), &env))?
    {
        return Ok(code);
    }
    if args.configdump {
        match &loaded.rc {
            Some(rc) => {
                print!("{}", fetchmailrc::configdump(rc));
                // Shown, but still an error: the file cannot be used as it is.
                rc.check_refusals()?;
            }
            None => {
                println!("# rfetch configdump of {}", describe_file(&loaded.file));
                for s in &loaded.specs {
                    print!("{}", s.describe(&env));
                }
            }
        }
        return Ok(code::SUCCESS);
    }
    let mut selected: Vec<PollSpec> = if args.servers.is_empty() {
        // -V describes every poll, skipped ones included (marked), as fetchmail -V does
        loaded
            .specs
            .iter()
            .filter(|s| args.version || !s.skip)
            .cloned()
            .collect()
    } else {
        let mut out = Vec::new();
        for name in &args.servers {
            let found: Vec<_> = loaded
                .specs
                .iter()
                .filter(|s| &s.name == name)
                .cloned()
                .collect();
            if found.is_empty() {
                // As in fetchmail, a server named on the command line and in no poll is
                // polled with the command-line options; a TOML file names accounts, not
                // servers, so there an unknown name stays an error.
                if let Some(f) = loaded.file.as_ref().filter(|f| f.format == Format::Toml) {
                    let known: Vec<&str> = loaded.specs.iter().map(|s| s.name.as_str()).collect();
                    return Err(Error::new(
                        ErrorKind::Usage,
                        format!(
                            "{name} is not a configured account in {} (known: {})",
                            f.path.display(),
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
                out.push(spec::from_command_line(name, &env));
                continue;
            }
            out.extend(found);
        }
        out
    };
    for s in &mut selected {
        apply_overrides(args, s)?;
    }
    if args.version {
        let mut text = match &loaded.file {
            Some(f) => format!("Taking options from command line and {f}\n"),
            None => "Taking options from command line\n".to_owned(),
        };
        for s in &selected {
            text.push_str(&s.describe(&env));
        }
        write_stdout(text.as_bytes())?;
        return Ok(code::SUCCESS);
    }
    if selected.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "no mailservers have been specified: {} has no poll that is not skipped",
                describe_file(&loaded.file)
            ),
        ));
    }
    let interval = args
        .daemon
        .or_else(|| {
            loaded
                .rc
                .as_ref()
                .and_then(|r| r.globals.daemon.as_ref())
                .map(|d| d.value)
        })
        .filter(|&d| d > 0);
    if let Some(i) = interval
        && !args.nodetach
        && args.detached_stage.is_none()
    {
        return detach(i, log_sinks(args, loaded.rc.as_ref(), &env));
    }
    plog::set_daemon(interval.is_some());
    configure_logging(args, loaded.rc.as_ref(), &env);
    let lock_file = lock_path(args, loaded.rc.as_ref(), &env);
    let idfile = path_setting(
        args.idfile.as_deref(),
        loaded.rc.as_ref().and_then(|r| r.globals.idfile.as_ref()),
        &env,
    );
    let Instance { lock: _lock, state } =
        Instance::start(&lock_file, interval, &instance::idfile_path(idfile, &env))?;
    // The polls to run are in `selected`, which the account threads take over: the loaded
    // configuration would keep a second copy of every account's settings for as long as the
    // daemon runs.
    drop(loaded);
    // Account threads may outlive this function when a stop abandons one blocked in a network
    // read (fetch::daemon), so what they share lives for the rest of the process.
    let control: &'static Control = Box::leak(Box::new(Control::new()));
    daemon::install_signals(control)?;
    let env: &'static Env = Box::leak(Box::new(env));
    let ctx: &'static PollContext<'static> = Box::leak(Box::new(PollContext {
        env,
        state: Box::leak(Box::new(state)),
        check_only: args.check,
        stop: control.stop_flag(),
        allow_plaintext: args.danger_plaintext_auth,
    }));
    let schedule = Schedule {
        interval: interval.map(Duration::from_secs),
    };
    let Some(interval) = interval else {
        let reports = daemon::run(selected, ctx, control, schedule);
        return Ok(exit_code(&reports, args.check));
    };
    if args.detached_stage == Some(Stage::Daemon) {
        daemonize::report_ready()?;
    }
    log::info!("starting daemon: polling every {interval} s");
    let reports = daemon::run(selected, ctx, control, schedule);
    if daemon::any_crashed(&reports) {
        log::error!("daemon stopped after an internal error");
        return Ok(rfetch_code(ErrorKind::Internal));
    }
    log::info!("terminating on signal");
    Ok(code::SUCCESS)
}

/// fetchmail's status for a round of polls: 13 when a fetchlimit stopped a poll, 0 when mail
/// was delivered (check mode: waiting), else the last failure's code, else 1 (no mail).
fn exit_code(reports: &[PollReport], check: bool) -> i32 {
    if reports.iter().any(|r| r.fetchlimit_hit) {
        return code::MAXFETCH;
    }
    let got = if check {
        reports.iter().any(|r| r.waiting > 0)
    } else {
        reports.iter().any(|r| r.delivered > 0)
    };
    if got {
        return code::SUCCESS;
    }
    match reports.iter().rev().find_map(|r| r.error.as_ref()) {
        Some(e) => rfetch_code(e.kind()),
        None => code::NOMAIL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fetchmailrc::parse_fetchmailrc;

    fn args(line: &str) -> RfetchArgs {
        rfetch_args::parse(
            std::iter::once("rfetch".to_string()).chain(line.split_whitespace().map(String::from)),
        )
        .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn rc(text: &str) -> fetchmailrc::FetchmailRc {
        parse_fetchmailrc(text, Path::new("/rc")).unwrap()
    }

    fn env() -> Env {
        Env {
            home: Some("/home/u".into()),
            user: Some("u".into()),
            ..Env::default()
        }
    }

    #[test]
    fn log_sink_precedence() {
        let e = env();
        let poll = "poll h proto pop3 user a password b\n";
        assert_eq!(log_sinks(&args(""), None, &e), (None, false));
        assert_eq!(log_sinks(&args("--syslog"), None, &e), (None, true));
        let with_syslog = rc(&format!("set syslog\n{poll}"));
        assert_eq!(log_sinks(&args(""), Some(&with_syslog), &e), (None, true));
        assert_eq!(
            log_sinks(&args("--nosyslog"), Some(&with_syslog), &e),
            (None, false),
            "--nosyslog beats set syslog"
        );
        let no_syslog = rc(&format!("set no syslog\n{poll}"));
        assert_eq!(log_sinks(&args(""), Some(&no_syslog), &e), (None, false));
        assert_eq!(
            log_sinks(&args("--syslog"), Some(&no_syslog), &e),
            (None, true)
        );
        // A log file (rc or -L, -L first) wins over syslog.
        let with_file = rc(&format!("set logfile /var/log/f.log\nset syslog\n{poll}"));
        assert_eq!(
            log_sinks(&args(""), Some(&with_file), &e),
            (Some(PathBuf::from("/var/log/f.log")), false)
        );
        assert_eq!(
            log_sinks(&args("-L ~/mine.log --syslog"), Some(&with_file), &e),
            (Some(PathBuf::from("/home/u/mine.log")), false)
        );
    }

    /// Every fetchmail 6.4 option (fetchmail --help, fetchmail(1), options.c: long name, short
    /// letter, a sample value), whatever rfetch does with it.
    const FETCHMAIL_OPTIONS: &[(&str, Option<char>, Option<&str>)] = &[
        ("--help", Some('?'), None),
        ("--version", Some('V'), None),
        ("--check", Some('c'), None),
        ("--silent", Some('s'), None),
        ("--verbose", Some('v'), None),
        ("--configdump", None, None),
        ("--yydebug", Some('y'), None),
        ("--daemon", Some('d'), Some("300")),
        ("--nodetach", Some('N'), None),
        ("--quit", Some('q'), None),
        ("--logfile", Some('L'), Some("/tmp/log")),
        ("--syslog", None, None),
        ("--nosyslog", None, None),
        ("--showdots", None, None),
        ("--fetchmailrc", Some('f'), Some("/tmp/rc")),
        ("--idfile", Some('i'), Some("/tmp/ids")),
        ("--pidfile", None, Some("/tmp/pid")),
        ("--postmaster", None, Some("pm")),
        ("--nobounce", None, None),
        ("--softbounce", None, None),
        ("--nosoftbounce", None, None),
        ("--invisible", None, None),
        ("--protocol", Some('p'), Some("POP3")),
        ("--uidl", Some('U'), None),
        ("--idle", None, None),
        ("--service", Some('P'), Some("1995")),
        ("--port", None, Some("1995")),
        ("--auth", None, Some("cram-md5")),
        ("--timeout", Some('t'), Some("60")),
        ("--envelope", Some('E'), Some("X-Original-To")),
        ("--qvirtual", Some('Q'), Some("pfx-")),
        ("--principal", None, Some("imap/h@R")),
        ("--tracepolls", None, None),
        ("--user", Some('u'), Some("bob")),
        ("--folder", Some('r'), Some("Lists")),
        ("--interface", Some('I'), Some("eth0/10.0.0.1")),
        ("--monitor", Some('M'), Some("ppp0")),
        ("--plugin", None, Some("ssh %h imapd")),
        ("--plugout", None, Some("ssh %h smtpd")),
        ("--bad-header", None, Some("accept")),
        ("--ssl", None, None),
        ("--sslproto", None, Some("tls1.2+")),
        ("--sslcertck", None, None),
        ("--nosslcertck", None, None),
        ("--sslcertfile", None, Some("/ca.pem")),
        ("--sslcertpath", None, Some("/etc/ssl/certs")),
        ("--sslcommonname", None, Some("mail.example.org")),
        (
            "--sslfingerprint",
            None,
            Some("00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF"),
        ),
        ("--sslcert", None, Some("/c.pem")),
        ("--sslkey", None, Some("/k.pem")),
        ("--all", Some('a'), None),
        ("--keep", Some('k'), None),
        ("--nokeep", Some('K'), None),
        ("--flush", Some('F'), None),
        ("--limitflush", None, None),
        ("--smtphost", Some('S'), Some("mx2/2526")),
        ("--fetchdomains", None, Some("example.org")),
        ("--smtpaddress", Some('D'), Some("example.org")),
        ("--smtpname", None, Some("x@example.org")),
        ("--antispam", Some('Z'), Some("571")),
        ("--mda", Some('m'), Some("procmail -d %T")),
        ("--bsmtp", None, Some("/tmp/out")),
        ("--lmtp", None, None),
        ("--norewrite", Some('n'), None),
        ("--limit", Some('l'), Some("100")),
        ("--warnings", Some('w'), Some("60")),
        ("--batchlimit", Some('b'), Some("5")),
        ("--fetchlimit", Some('B'), Some("5")),
        ("--fetchsizelimit", None, Some("1")),
        ("--fastuidl", None, Some("4")),
        ("--expunge", Some('e'), Some("5")),
    ];

    /// Implemented options that act before or around the polls (reading the configuration,
    /// logging, the daemon, the lock) rather than on each poll: their field is set by the parse
    /// and read by `run`, whose own tests show each (log_sink_precedence, tests/rfetch_*).
    const RUN_LEVEL: &[&str] = &[
        "--help",
        "--version",
        "--check",
        "--silent",
        "--verbose",
        "--configdump",
        "--daemon",
        "--nodetach",
        "--quit",
        "--logfile",
        "--syslog",
        "--nosyslog",
        "--fetchmailrc",
        "--idfile",
        "--pidfile",
    ];

    /// Implemented options asking for what rfetch always does, with the reason.
    const ALWAYS_SO: &[(&str, &str)] = &[
        ("--uidl", "rfetch always tracks POP3 messages by UIDL"),
        (
            "--softbounce",
            "the default: refused mail stays on the server",
        ),
        ("--norewrite", "rfetch never rewrites addresses"),
        (
            "--bad-header",
            "accept: malformed headers are delivered as they came",
        ),
        ("--sslproto", "tls1.2+: rfetch's floor"),
    ];

    fn argv(long: &str, short: Option<char>, value: Option<&str>, use_short: bool) -> Vec<String> {
        let mut v = vec!["rfetch".to_owned()];
        match (use_short, short) {
            (true, Some(c)) => v.push(format!("-{c}")),
            _ => v.push(long.to_owned()),
        }
        v.extend(value.map(str::to_owned));
        v
    }

    #[test]
    fn every_fetchmail_option_does_what_its_set_says() {
        use rfetch_args::{RFETCH_OPTIONS, Support, option_support};
        let cmd = <RfetchArgs as clap::CommandFactory>::command();
        let base_rc = rc("poll h proto imap user u is a b here smtphost mx/2525\n");
        let baseline = spec::from_fetchmailrc(&base_rc, &env()).unwrap();
        let mut failures = Vec::new();
        for (long, _) in RFETCH_OPTIONS {
            if !FETCHMAIL_OPTIONS.iter().any(|(l, ..)| l == long) {
                failures.push(format!("{long} is in the table but not a fetchmail option"));
            }
        }
        for &(long, short, value) in FETCHMAIL_OPTIONS {
            let Some(support) = option_support(long) else {
                failures.push(format!("{long} is in none of the three sets"));
                continue;
            };
            let arg = cmd.get_arguments().find(|a| {
                a.get_long() == Some(long.trim_start_matches('-'))
                    || a.get_all_aliases()
                        .is_some_and(|al| al.contains(&long.trim_start_matches('-')))
            });
            let Some(arg) = arg else {
                failures.push(format!("{long} is not parsed at all"));
                continue;
            };
            if arg.get_long() == Some(long.trim_start_matches('-')) && arg.get_short() != short {
                failures.push(format!(
                    "{long}: short letter {:?}, fetchmail's is {short:?}",
                    arg.get_short()
                ));
            }
            let shown = !arg.is_hide_set();
            if shown != (support == Support::Implemented) {
                failures.push(format!(
                    "{long}: --help shows it: {shown}, but it is {support:?}"
                ));
            }
            if long == "--help" {
                continue;
            }
            for use_short in [false, true] {
                if use_short && short.is_none() {
                    continue;
                }
                let parsed = match rfetch_args::parse(argv(long, short, value, use_short)) {
                    Ok(p) => p,
                    Err(e) => {
                        failures.push(format!("{long}: does not parse: {e}"));
                        continue;
                    }
                };
                match support {
                    Support::Refused(why) => match check_unsupported(&parsed) {
                        Ok(()) => failures.push(format!("{long}: refused, but accepted")),
                        Err(e) => {
                            let m = e.to_string();
                            if !m.contains(&format!("{long} is refused: {why}")) {
                                failures.push(format!("{long}: refusal does not say why: {m}"));
                            }
                            if rfetch_code(e.kind()) != code::SYNTAX {
                                failures.push(format!("{long}: refusal does not exit 5"));
                            }
                        }
                    },
                    Support::Warned(_) => {
                        if parsed.unsupported != [(long, support)]
                            || check_unsupported(&parsed).is_err()
                        {
                            failures.push(format!(
                                "{long}: warned, but recorded as {:?}",
                                parsed.unsupported
                            ));
                        }
                    }
                    Support::Implemented => {
                        if !parsed.unsupported.is_empty() {
                            failures.push(format!(
                                "{long}: implemented, but recorded as {:?}",
                                parsed.unsupported
                            ));
                        }
                        if RUN_LEVEL.contains(&long) {
                            if format!("{parsed:?}") == format!("{:?}", args("")) {
                                failures.push(format!("{long}: sets nothing"));
                            }
                            continue;
                        }
                        let mut spec = baseline[0].clone();
                        if let Err(e) = apply_overrides(&parsed, &mut spec) {
                            failures.push(format!("{long}: override refused: {e}"));
                            continue;
                        }
                        let changed = format!("{spec:?}") != format!("{:?}", baseline[0]);
                        let always = ALWAYS_SO.iter().any(|(l, _)| *l == long);
                        if changed == always {
                            failures.push(format!("{long}: the poll changed: {changed}"));
                        }
                    }
                }
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn option_values_rfetch_cannot_honour_are_refused() {
        let r = rc("poll h proto imap user u password p\n");
        for line in [
            "--auth gssapi",
            "--auth ntlm",
            "--sslproto tls1.3+",
            "--bad-header reject",
            "-p ETRN",
            "-P nosuch",
            "--sslfingerprint AA:BB",
            "--lmtp",
            "-S /var/run/lmtp",
        ] {
            let mut s = spec::from_fetchmailrc(&r, &env()).unwrap().remove(0);
            let e = apply_overrides(&args(line), &mut s).unwrap_err();
            assert_eq!(rfetch_code(e.kind()), code::SYNTAX, "{line}");
            let first = line.split(' ').next().unwrap();
            assert!(
                e.to_string().contains(first) || e.to_string().contains("smtphost"),
                "{line}: {e}"
            );
        }
        // -Z takes reply codes (-1: none); anything else is a usage error.
        assert!(args("-Z -1").unsupported.is_empty());
        assert!(check_unsupported(&args("-Z 550")).is_ok());
        let mut s = spec::from_fetchmailrc(&r, &env()).unwrap().remove(0);
        apply_overrides(&args("-Z 571,550"), &mut s).unwrap();
        assert_eq!(s.antispam, [571, 550]);
        apply_overrides(&args("-Z -1"), &mut s).unwrap();
        assert!(s.antispam.is_empty());
        for bad in ["-Z 5500", "-Z x", "-Z 550,-1"] {
            let e = apply_overrides(&args(bad), &mut s).unwrap_err();
            assert_eq!(rfetch_code(e.kind()), code::SYNTAX, "{bad}");
        }
    }

    #[test]
    fn connection_and_delivery_overrides_reach_the_poll() {
        use crate::account::{FetchProtocol, TrustFile};
        use crate::net::{Endpoint, TlsMode};
        let r = rc("poll h proto imap user u is a b here smtphost mx/2525\n");
        let mut s = spec::from_fetchmailrc(&r, &env()).unwrap().remove(0);
        apply_overrides(
            &args("-p POP3 -u bob -P 1995 --ssl --sslcertfile /ca.pem -t 9 -E X-To -Q pfx- --postmaster pm -D ex.org -S lm/24 --lmtp"),
            &mut s,
        )
        .unwrap();
        assert_eq!(s.fetch.protocol.value, FetchProtocol::Pop3);
        assert_eq!(s.fetch.server.user(), Some("bob"));
        assert_eq!(s.fetch.endpoint().unwrap().port, 1995);
        assert_eq!(s.fetch.tls_mode(), TlsMode::Implicit);
        assert_eq!(
            s.fetch.server.tls_trust_file.as_ref().unwrap().value,
            TrustFile::Path("/ca.pem".into())
        );
        assert_eq!(s.fetch.connect_options().io_timeout, Duration::from_secs(9));
        let m = s.multidrop.as_ref().unwrap();
        assert_eq!(m.envelope, Some((0, "X-To".to_owned())));
        assert_eq!(m.qvirtual.as_deref(), Some("pfx-"));
        assert_eq!(m.postmaster, "pm");
        assert_eq!(s.smtp_domain, "ex.org");
        assert_eq!(
            s.fetch.target(&env()),
            Target::Lmtp(Endpoint {
                host: "lm".into(),
                port: 24
            })
        );
        // --lmtp alone turns the rc's SMTP host (with its port) into an LMTP one; -m wins.
        let mut s = spec::from_fetchmailrc(&r, &env()).unwrap().remove(0);
        apply_overrides(&args("--lmtp --smtpname x@y"), &mut s).unwrap();
        assert_eq!(
            s.fetch.target(&env()),
            Target::Lmtp(Endpoint {
                host: "mx".into(),
                port: 2525
            })
        );
        assert_eq!(s.smtp_recipient, "x@y");
        apply_overrides(&args("-S mx2 -m cat"), &mut s).unwrap();
        assert_eq!(s.fetch.target(&env()), Target::MdaShell("cat".into()));
    }

    #[test]
    fn disposal_options_override_the_rc() {
        let r = rc("poll h proto imap user a password b keep limit 100 expunge 3\n");
        let mut specs = spec::from_fetchmailrc(&r, &env()).unwrap();
        let s = &mut specs[0];
        assert!(!s.fetch.tuning.flush && !s.fetch.tuning.limitflush);
        assert_eq!(s.fetch.tuning.expunge, Some(3));
        apply_overrides(&args("-F --limitflush -e 0 -l 50 -b 7 -B 9 -K"), s).unwrap();
        assert!(s.fetch.tuning.flush && s.fetch.tuning.limitflush && !s.fetch.keep());
        assert_eq!(s.fetch.tuning.expunge, Some(0));
        assert_eq!(
            (
                s.fetch.tuning.limit,
                s.fetch.tuning.fetchlimit,
                s.fetch.tuning.batchlimit
            ),
            (Some(50), Some(9), 7)
        );
        apply_overrides(&args("-l 0 -B 0"), s).unwrap();
        assert_eq!(
            (s.fetch.tuning.limit, s.fetch.tuning.fetchlimit),
            (None, None),
            "0 means no limit"
        );
    }
}
