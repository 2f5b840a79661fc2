//! Logger setup for the binaries: human messages on stderr (verbosity from -v/-d/-s), optional
//! syslog (facility from the config, as msmtp and fetchmail do), and the wire trace (target
//! `postie::wire`, already redacted by the sessions) only at the highest verbosity.

use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Log target the sessions use for protocol transcripts (secrets already redacted there).
pub const WIRE: &str = "postie::wire";

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

struct Logger {
    program: &'static str,
    level: LevelFilter,
    wire: bool,
    syslog: Option<Mutex<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>>,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        if m.target() == WIRE {
            return self.wire;
        }
        // Libraries' (rustls') debug chatter is not for users; our own debug lines are.
        if m.level() > Level::Info && !m.target().starts_with("postie") {
            return false;
        }
        m.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut err = std::io::stderr().lock();
        if record.target() == WIRE {
            let _ = writeln!(err, "{}", record.args());
            return;
        }
        let _ = match record.level() {
            Level::Error => writeln!(err, "{}: {}", self.program, record.args()),
            Level::Warn => writeln!(err, "{}: warning: {}", self.program, record.args()),
            _ => writeln!(err, "{}: {}", self.program, record.args()),
        };
        if let Some(sys) = &self.syslog
            && record.level() <= Level::Info
            && let Ok(mut sys) = sys.lock()
        {
            let msg = record.args().to_string();
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
    let syslog = syslog.and_then(|facility| {
        let formatter = syslog::Formatter3164 {
            facility,
            hostname: None,
            process: program.into(),
            pid: std::process::id(),
        };
        syslog::unix(formatter).ok().map(Mutex::new)
    });
    let logger = Logger {
        program,
        level,
        wire: verbosity == Verbosity::Debug,
        syslog,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(LevelFilter::Trace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
