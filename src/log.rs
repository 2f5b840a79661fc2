//! Logger setup for the binaries: human messages on stderr (verbosity from -v/-d/-s), optional
//! syslog (facility from the config, as msmtp and fetchmail do), an optional append-only log
//! file with timestamps (rfetch `-L`/`set logfile`), the protocol trace (target [`WIRE`], lines
//! such as `rfetch: IMAP> A0001 LOGIN "bob" *`, redacted and made printable by the sessions)
//! only at the highest verbosity, and rfetch's in-place progress line on a terminal.
//!
//! The log file and syslog get every line from `info` up whatever the stderr verbosity (they
//! are the record of a daemon), never the wire trace. Progress output exists only when stderr
//! is a terminal: a pipe or file sees no `\r` and no escape sequences.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Log target the sessions use for protocol transcripts (secrets already redacted there).
pub const WIRE: &str = "postie::wire";

/// Whether the protocol trace is shown: sessions record received lines only then.
pub fn wire_enabled() -> bool {
    log::log_enabled!(target: WIRE, Level::Trace)
}

/// One line of the protocol trace, as fetchmail prints it: `proto` ("POP3", "IMAP", "SMTP",
/// "LMTP"), `dir` `<` for received and `>` for sent, `line` already redacted and printable
/// (see [`crate::proto::trace`]).
pub fn wire(proto: &str, dir: char, line: &str) {
    log::trace!(target: WIRE, "{proto}{dir} {line}");
}

/// Log target for the `info` lines fetchmail prints without `-v` (one summary per account or
/// folder, one line per message): shown on stderr unless `-s`, whatever the verbosity.
pub const REPORT: &str = "postie::report";

/// Log target for the [`REPORT`] lines about one message each ("message bob@host:3 of 500 ...
/// delivered to ...", "... delivered before, flushed", skipped as too large): shown on stderr
/// like [`REPORT`], except that while the progress line is drawn (stderr is a terminal) they
/// need `-v`, since the progress line stands for them there (fetchmail's dots: one line per
/// account, not 500 scrolling past). The log file and syslog get them always.
pub const MESSAGE: &str = "postie::report::message";

/// Log target for the "No mail for ..." summary: a [`REPORT`] line in a single run, but in
/// daemon mode (see [`set_daemon`]) shown and recorded only at `-v`, as fetchmail does, since
/// it would otherwise repeat every poll (a 5 s daemon wrote it 120 times in 10 minutes).
pub const NO_MAIL: &str = "postie::report::no_mail";

/// How chatty the binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Errors only (`-s`).
    Quiet,
    /// Warnings and errors (default).
    Normal,
    /// Progress and one line per message (`-v`).
    Verbose,
    /// Everything, including the redacted wire trace (`-d`, `-v -v`).
    Debug,
}

type SyslogWriter = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

/// The sinks that can be switched after start-up (the config file names them): the log file,
/// syslog, and the progress line currently shown on the terminal.
struct Sinks {
    program: &'static str,
    file: Option<File>,
    syslog: Option<SyslogWriter>,
    /// The progress text on screen (stderr is a terminal and progress is wanted).
    shown: Option<String>,
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks {
    program: "postie",
    file: None,
    syslog: None,
    shown: None,
});
/// stderr is a terminal and the verbosity is not `Quiet`: progress lines are drawn.
static PROGRESS: AtomicBool = AtomicBool::new(false);
/// The installed logger sends `info` lines somewhere besides stderr.
static RECORDING: AtomicBool = AtomicBool::new(false);
/// rfetch runs as a daemon (polls repeat): [`NO_MAIL`] lines need `-v`.
static DAEMON: AtomicBool = AtomicBool::new(false);

/// Tells the logger whether polls repeat (daemon mode), which hides [`NO_MAIL`] lines below
/// `-v` on every sink.
pub fn set_daemon(on: bool) {
    DAEMON.store(on, Ordering::Relaxed);
}

/// Whether a record of `target` is dropped everywhere: a [`NO_MAIL`] line in daemon mode
/// below `-v`.
fn dropped(target: &str, level: LevelFilter, daemon: bool) -> bool {
    target == NO_MAIL && daemon && level < LevelFilter::Info
}

/// Whether a [`MESSAGE`] line goes to stderr at stderr verbosity `level`: as a [`REPORT`] line,
/// but with the progress line drawn only from `-v` on.
fn per_message_on_stderr(level: LevelFilter, progress: bool) -> bool {
    if progress {
        level >= LevelFilter::Info
    } else {
        level >= LevelFilter::Warn
    }
}

/// Clears the terminal line (carriage return + erase to end of line).
const CLEAR_LINE: &str = "\r\x1b[K";

struct Logger {
    program: &'static str,
    level: LevelFilter,
    wire: bool,
}

impl Logger {
    fn for_stderr(&self, m: &Metadata) -> bool {
        if m.target() == WIRE {
            return self.wire;
        }
        if m.target() == MESSAGE && m.level() <= Level::Info {
            return per_message_on_stderr(self.level, PROGRESS.load(Ordering::Relaxed));
        }
        if (m.target() == REPORT || m.target() == NO_MAIL) && m.level() <= Level::Info {
            return self.level >= LevelFilter::Warn;
        }
        m.level() <= self.level
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        // Libraries' (rustls') debug chatter is not for users; our own debug lines are.
        if m.level() > Level::Info && !m.target().starts_with("postie") {
            return false;
        }
        if dropped(m.target(), self.level, DAEMON.load(Ordering::Relaxed)) {
            return false;
        }
        self.for_stderr(m)
            || (m.target() != WIRE && m.level() <= Level::Info && RECORDING.load(Ordering::Relaxed))
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Ok(mut sinks) = SINKS.lock() else {
            return;
        };
        // Messages quote servers (refusal texts, greetings): one record stays one line and
        // carries no terminal escapes, whatever those texts hold.
        let msg = one_line(&record.args().to_string());
        if self.for_stderr(record.metadata()) {
            // Put together first and written at once: stderr is unbuffered, and writing the
            // pieces made four write(2) calls of every per-message line.
            let mut line = String::with_capacity(msg.len() + 64);
            // A log line never lands behind the progress text: clear it, write, redraw.
            if sinks.shown.is_some() {
                line.push_str(CLEAR_LINE);
            }
            line.push_str(self.program);
            line.push_str(match record.level() {
                Level::Warn if record.target() != WIRE => ": warning: ",
                _ => ": ",
            });
            line.push_str(&msg);
            line.push('\n');
            if let Some(text) = &sinks.shown {
                line.push_str(text);
            }
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        if record.target() == WIRE || record.level() > Level::Info {
            return;
        }
        let program = sinks.program;
        if let Some(f) = sinks.file.as_mut() {
            let _ = f.write_all(file_line(program, record.level(), &msg).as_bytes());
        }
        if let Some(sys) = sinks.syslog.as_mut() {
            let _ = match record.level() {
                Level::Error => sys.err(msg),
                Level::Warn => sys.warning(msg),
                _ => sys.info(msg),
            };
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// One log-file line: local time, program and PID, then the message as stderr shows it.
fn file_line(program: &str, level: Level, msg: &str) -> String {
    let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%z");
    let pid = std::process::id();
    let msg = one_line(msg);
    match level {
        Level::Warn => format!("{now} {program}[{pid}]: warning: {msg}\n"),
        _ => format!("{now} {program}[{pid}]: {msg}\n"),
    }
}

/// `msg` as one log line: CR and LF (a multi-line server reply) become spaces, other control
/// characters (ESC, BEL, the C1 range...) `\u{..}` escapes, so text a server controls can
/// neither start a forged line nor restyle the terminal.
fn one_line(msg: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(msg.len());
    for c in msg.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\t' => out.push('\t'),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn refresh_recording(sinks: &Sinks) {
    RECORDING.store(
        sinks.file.is_some() || sinks.syslog.is_some(),
        Ordering::Relaxed,
    );
}

/// Appends every later log line (`info` and up, timestamped) to `path`, creating it with
/// mode 600 when missing; `None` stops file logging.
pub fn set_logfile(path: Option<&Path>) -> std::io::Result<()> {
    let file = match path {
        Some(p) => {
            use std::os::unix::fs::OpenOptionsExt;
            Some(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(p)?,
            )
        }
        None => None,
    };
    if let Ok(mut sinks) = SINKS.lock() {
        sinks.file = file;
        refresh_recording(&sinks);
    }
    Ok(())
}

/// Sends every later log line (`info` and up) to syslog with `facility`, or stops (`None`).
/// A syslog that cannot be reached is reported once on stderr and otherwise ignored.
pub fn set_syslog(facility: Option<syslog::Facility>) {
    let Ok(mut sinks) = SINKS.lock() else {
        return;
    };
    sinks.syslog = facility.and_then(|facility| {
        let formatter = syslog::Formatter3164 {
            facility,
            hostname: None,
            process: sinks.program.into(),
            pid: std::process::id(),
        };
        match syslog::unix(formatter) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("{}: warning: cannot reach syslog: {e}", sinks.program);
                None
            }
        }
    });
    refresh_recording(&sinks);
}

/// Whether [`progress`] draws anything (stderr is a terminal and output is not silenced).
pub fn progress_enabled() -> bool {
    PROGRESS.load(Ordering::Relaxed)
}

/// Shows `text` as the progress line on the terminal, replacing the previous one in place;
/// `None` clears it. Does nothing unless stderr is a terminal.
pub fn progress(text: Option<&str>) {
    if !progress_enabled() {
        return;
    }
    let Ok(mut sinks) = SINKS.lock() else {
        return;
    };
    let mut err = std::io::stderr().lock();
    match text {
        Some(t) => {
            // One terminal line: no control characters from server-supplied text.
            let clean: String = t.chars().filter(|c| !c.is_control()).collect();
            let _ = write!(err, "{CLEAR_LINE}{clean}");
            sinks.shown = Some(clean);
        }
        None => {
            if sinks.shown.take().is_some() {
                let _ = write!(err, "{CLEAR_LINE}");
            }
        }
    }
    let _ = err.flush();
}

/// Parses a syslog facility name as msmtp/fetchmail accept it (`LOG_MAIL`, `mail`, `LOG_LOCAL3`).
pub fn parse_facility(name: &str) -> Option<syslog::Facility> {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix("log_").unwrap_or(&lower);
    use syslog::Facility::*;
    Some(match bare {
        "user" => LOG_USER,
        "mail" => LOG_MAIL,
        "daemon" => LOG_DAEMON,
        "local0" => LOG_LOCAL0,
        "local1" => LOG_LOCAL1,
        "local2" => LOG_LOCAL2,
        "local3" => LOG_LOCAL3,
        "local4" => LOG_LOCAL4,
        "local5" => LOG_LOCAL5,
        "local6" => LOG_LOCAL6,
        "local7" => LOG_LOCAL7,
        _ => return None,
    })
}

/// Installs the process logger. Safe to call more than once (later calls are ignored), so the
/// library's tests never depend on it.
pub fn init(program: &'static str, verbosity: Verbosity, syslog: Option<syslog::Facility>) {
    let level = match verbosity {
        Verbosity::Quiet => LevelFilter::Error,
        Verbosity::Normal => LevelFilter::Warn,
        Verbosity::Verbose => LevelFilter::Info,
        Verbosity::Debug => LevelFilter::Trace,
    };
    let logger = Logger {
        program,
        level,
        wire: verbosity == Verbosity::Debug,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(LevelFilter::Trace);
        if let Ok(mut sinks) = SINKS.lock() {
            sinks.program = program;
        }
        PROGRESS.store(
            verbosity != Verbosity::Quiet && rustix::termios::isatty(std::io::stderr()),
            Ordering::Relaxed,
        );
        set_syslog(syslog);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_mail_lines_need_verbose_in_daemon_mode_only() {
        use LevelFilter::*;
        // a single run: shown at every verbosity but -s (which for_stderr decides)
        for level in [Error, Warn, Info, Trace] {
            assert!(!dropped(NO_MAIL, level, false));
        }
        // daemon: only -v and more
        assert!(dropped(NO_MAIL, Error, true));
        assert!(dropped(NO_MAIL, Warn, true));
        assert!(!dropped(NO_MAIL, Info, true));
        assert!(!dropped(NO_MAIL, Trace, true));
        // other summaries are never dropped
        assert!(!dropped(REPORT, Warn, true));
        let quiet_daemon = Logger {
            program: "rfetch",
            level: Warn,
            wire: false,
        };
        let no_mail = Metadata::builder()
            .target(NO_MAIL)
            .level(Level::Info)
            .build();
        assert!(quiet_daemon.for_stderr(&no_mail), "a single run shows it");
    }

    #[test]
    fn per_message_lines_give_way_to_the_progress_line_below_verbose() {
        use LevelFilter::*;
        // No progress line (a pipe, a file): shown like every report line, but not with -s.
        assert!(!per_message_on_stderr(Error, false));
        assert!(per_message_on_stderr(Warn, false));
        assert!(per_message_on_stderr(Info, false));
        // The progress line drawn: only -v and more show them besides it.
        assert!(!per_message_on_stderr(Error, true));
        assert!(!per_message_on_stderr(Warn, true));
        assert!(per_message_on_stderr(Info, true));
        assert!(per_message_on_stderr(Trace, true));
        // The summary lines stay at the default verbosity either way.
        let default = Logger {
            program: "rfetch",
            level: Warn,
            wire: false,
        };
        let summary = Metadata::builder()
            .target(REPORT)
            .level(Level::Info)
            .build();
        assert!(default.for_stderr(&summary));
    }

    #[test]
    fn log_file_lines_are_timestamped_single_lines() {
        let line = file_line(
            "rfetch",
            Level::Info,
            "3 messages for bob at host\r\nforged: x",
        );
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        assert!(!line.contains('\r'));
        assert!(
            line.contains(&format!(
                "rfetch[{}]: 3 messages for bob at host  forged: x",
                std::process::id()
            )),
            "{line:?}"
        );
        // "YYYY-MM-DD HH:MM:SS+zzzz " first.
        let stamp = line.split(" rfetch[").next().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%z").is_ok(),
            "{stamp:?}"
        );
        let warn = file_line("rfetch", Level::Warn, "careful");
        assert!(warn.ends_with("]: warning: careful\n"), "{warn:?}");
    }

    #[test]
    fn server_text_cannot_forge_or_restyle_lines() {
        assert_eq!(
            one_line("refused: 550 no\r\nrfetch: 3 messages\x1b[31m"),
            "refused: 550 no  rfetch: 3 messages\\u{1b}[31m"
        );
        assert_eq!(one_line("caf\u{e9}\u{85}"), "caf\u{e9}\\u{85}");
    }

    #[test]
    fn log_file_is_created_private_and_appended() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("postie-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rfetch.log");
        let _ = std::fs::remove_file(&path);
        set_logfile(Some(&path)).unwrap();
        set_logfile(None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // An existing file is appended to, never truncated.
        std::fs::write(&path, "earlier line\n").unwrap();
        set_logfile(Some(&path)).unwrap();
        set_logfile(None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "earlier line\n");
        assert!(set_logfile(Some(&dir.join("no/such/dir/log"))).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn facility_names() {
        let code = |n: &str| parse_facility(n).map(|f| f as u32);
        assert_eq!(code("LOG_MAIL"), Some(syslog::Facility::LOG_MAIL as u32));
        assert_eq!(code("mail"), Some(syslog::Facility::LOG_MAIL as u32));
        assert_eq!(
            code("LOG_LOCAL7"),
            Some(syslog::Facility::LOG_LOCAL7 as u32)
        );
        assert!(code("LOG_NOPE").is_none());
    }
}
