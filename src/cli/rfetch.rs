//! The rfetch command line (fetchmail options) and its dispatch: config loading (native TOML
//! or fetchmailrc), the instance lock, handing the accounts to [`crate::fetch::daemon`]
//! (one-shot, daemon, IDLE), and fetchmail's exit codes (anchor §8).
//!
//! Daemon mode detaches from the terminal (through [`crate::cli::daemonize`]) unless -N is
//! given.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::account::{Env, Provenance, Sourced, Target};
use crate::cli::daemonize::{self, Outcome, Stage};
use crate::cli::rfetch_args::{self, RfetchArgs};
use crate::cli::{build_info, completions, write_stdout};
use crate::config::discover::{self, ConfigFile, Format, Program};
use crate::config::{self, fetchmailrc};
use crate::error::{Error, ErrorKind, Result};
use crate::exit::{fetchmail as code, rfetch_code};
use crate::fetch::daemon::{self, Control, Schedule};
use crate::fetch::lock;
use crate::fetch::poll::{PollContext, PollReport};
use crate::fetch::spec::{self, PollSpec};
use crate::fetch::state::SeenStore;
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
    /// The file read (named in -v, -V, --configdump and configuration errors).
    file: ConfigFile,
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
    let (specs, rc) = read(&file, env).map_err(|e| discover::name_file(e, &file))?;
    Ok(Loaded { specs, rc, file })
}

/// The polls of `file`, and the fetchmailrc itself when it is one.
fn read(file: &ConfigFile, env: &Env) -> Result<(Vec<PollSpec>, Option<fetchmailrc::FetchmailRc>)> {
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
    let specs = spec::from_fetchmailrc(&rc, env)?;
    Ok((specs, Some(rc)))
}

/// Command-line options that override every selected poll.
fn apply_overrides(args: &RfetchArgs, s: &mut PollSpec) {
    let cl = |v| Some(Sourced::new(v, Provenance::CommandLine));
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
        s.limit = (l > 0).then_some(l);
    }
    if let Some(l) = args.fetchlimit {
        s.fetchlimit = (l > 0).then_some(l);
    }
    if let Some(b) = args.batchlimit {
        s.batchlimit = b;
    }
    if args.invisible {
        s.invisible = true;
    }
    if args.idle {
        s.fetch.idle = cl(true);
    }
    if args.flush {
        s.flush = true;
    }
    if args.limitflush {
        s.limitflush = true;
    }
    if let Some(e) = args.expunge {
        s.expunge = Some(e);
    }
    if let Some(m) = &args.mda {
        s.fetch.target = Some(Sourced::new(
            Target::MdaShell(m.clone()),
            Provenance::CommandLine,
        ));
    }
    if let Some(f) = &args.folder {
        s.fetch.folders = Some(Sourced::new(
            f.split(',').map(str::to_owned).collect(),
            Provenance::CommandLine,
        ));
    }
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
    let logfile = args
        .logfile
        .as_deref()
        .map(|p| env.expand_tilde(p))
        .or_else(|| {
            rc.and_then(|r| r.globals.logfile.as_ref())
                .map(|p| p.value.clone())
        });
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

fn lock_path(args: &RfetchArgs, rc: Option<&fetchmailrc::FetchmailRc>, env: &Env) -> PathBuf {
    if let Some(p) = &args.pidfile {
        return env.expand_tilde(p);
    }
    if let Some(p) = rc.and_then(|r| r.globals.pidfile.as_ref()) {
        return p.value.clone();
    }
    if let Some(h) = std::env::var_os("FETCHMAILHOME") {
        return PathBuf::from(h).join("fetchmail.pid");
    }
    env.expand_tilde("~/.fetchmail.pid")
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
    for (set, what) in [
        (args.bsmtp.is_some(), "--bsmtp"),
        (args.interface.is_some(), "--interface"),
        (args.monitor.is_some(), "--monitor"),
    ] {
        if set {
            log::warn!("{what} is not supported by rfetch and is ignored");
        }
    }
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
    }
    if args.configdump {
        match &loaded.rc {
            Some(rc) => print!("{}", fetchmailrc::configdump(rc)),
            None => {
                println!("# rfetch configdump of {}", loaded.file);
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
                let known: Vec<&str> = loaded.specs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!(
                        "{name} is not a configured account or poll name in {} (known: {})",
                        loaded.file.path.display(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            out.extend(found);
        }
        out
    };
    for s in &mut selected {
        apply_overrides(args, s);
    }
    if args.version {
        let mut text = format!("Taking options from command line and {}\n", loaded.file);
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
                loaded.file
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
    let _lock = lock::acquire(&lock_file, interval)?;
    let idfile = args
        .idfile
        .as_deref()
        .map(|p| env.expand_tilde(p))
        .or_else(|| {
            loaded
                .rc
                .as_ref()
                .and_then(|r| r.globals.idfile.as_ref())
                .map(|p| p.value.clone())
        })
        .unwrap_or_else(|| spec::default_idfile(&env));
    let state = Mutex::new(SeenStore::open(&idfile)?);
    // A batch a killed run left half-published is finished before anything is fetched again.
    crate::fetch::journal::recover(&state)?;
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
        let reports = daemon::run(&selected, ctx, control, schedule);
        return Ok(exit_code(&reports, args.check));
    };
    if args.detached_stage == Some(Stage::Daemon) {
        daemonize::report_ready()?;
    }
    log::info!("starting daemon: polling every {interval} s");
    daemon::run(&selected, ctx, control, schedule);
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

    #[test]
    fn disposal_options_override_the_rc() {
        let r = rc("poll h proto imap user a password b keep limit 100 expunge 3\n");
        let mut specs = spec::from_fetchmailrc(&r, &env()).unwrap();
        let s = &mut specs[0];
        assert!(!s.flush && !s.limitflush);
        assert_eq!(s.expunge, Some(3));
        apply_overrides(&args("-F --limitflush -e 0 -l 50 -b 7 -B 9 -K"), s);
        assert!(s.flush && s.limitflush && !s.fetch.keep());
        assert_eq!(s.expunge, Some(0));
        assert_eq!(
            (s.limit, s.fetchlimit, s.batchlimit),
            (Some(50), Some(9), 7)
        );
        apply_overrides(&args("-l 0 -B 0"), s);
        assert_eq!((s.limit, s.fetchlimit), (None, None), "0 means no limit");
    }
}
