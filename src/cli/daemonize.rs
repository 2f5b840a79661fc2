//! Detaching rfetch's daemon from the terminal as fetchmail does for `-d N` without `-N`: a
//! new session, a process that is not its session leader (so it can never gain a controlling
//! terminal again), standard input and output on /dev/null, and the lock taken by the daemon
//! itself, with the process the user started exiting only once the daemon is running.
//!
//! A crate that forbids `unsafe` cannot call fork(), so each fork is a re-execution of the
//! same binary with the same arguments and one hidden argument naming the stage:
//!
//! 1. the process the user started spawns stage `session` with stdin and stderr on
//!    /dev/null and stdout on a pipe, and waits for one line on that pipe;
//! 2. `session` calls setsid() and spawns stage `daemon` (inheriting the pipe), then exits:
//!    the daemon is orphaned to init and is not a session leader (the second fork);
//! 3. `daemon` loads the configuration, takes the lock (its own PID goes in the lock file),
//!    opens the state, and writes `ready PID` on the pipe; a failure before that point is
//!    written as `error CODE MESSAGE`, so the user sees it on the terminal with its exit code.
//!    Then the pipe is replaced by /dev/null.
//!
//! The working directory is kept (fetchmail changes to /): relative paths in the configuration
//! keep meaning what they meant when the daemon was started.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::error::{Error, ErrorKind, Result};
use crate::exit::fetchmail as code;

/// The hidden argument carrying the stage (always the first argument of a re-execution).
pub const STAGE_ARG: &str = "--detached-stage";

/// Which re-execution this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Creates the new session and starts the daemon.
    Session,
    /// The daemon: runs the polls, reports readiness on stdout.
    Daemon,
}

/// What the process the user started learned from the daemon.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The daemon runs with this PID.
    Ready(u32),
    /// The daemon could not start; exit with `code` after printing `message`.
    Failed { code: i32, message: String },
}

/// The arguments of this process after the program name, without our stage argument.
fn user_args() -> (OsString, Vec<OsString>) {
    let mut all = std::env::args_os().peekable();
    let arg0 = all.next().unwrap_or_else(|| OsString::from("rfetch"));
    // a re-execution has the stage first; the user's arguments follow unchanged
    if all
        .peek()
        .is_some_and(|a| a.to_string_lossy().starts_with(STAGE_ARG))
    {
        all.next();
    }
    (arg0, all.collect())
}

/// Re-executes this binary as `stage` with the user's arguments.
fn spawn(stage: &str, stdout: Stdio) -> Result<std::process::Child> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::with_source(ErrorKind::Internal, "cannot find the rfetch binary", e))?;
    let (arg0, args) = user_args();
    Command::new(&exe)
        .arg0(arg0)
        .arg(format!("{STAGE_ARG}={stage}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Internal,
                format!("cannot start {}", exe.display()),
                e,
            )
        })
}

/// In the process the user started: starts the daemon and waits until it is ready or failed.
pub fn detach() -> Result<Outcome> {
    let mut session = spawn("session", Stdio::piped())?;
    let pipe = session
        .stdout
        .take()
        .ok_or_else(|| Error::new(ErrorKind::Internal, "no pipe to the daemon"))?;
    let mut line = String::new();
    // The daemon writes one short line; bound it all the same.
    let read = BufReader::new(pipe.take(4096)).read_line(&mut line);
    // `session` exits right after starting the daemon: reap it.
    let _ = session.wait();
    read.map_err(|e| Error::with_source(ErrorKind::Internal, "reading from the daemon", e))?;
    Ok(parse_report(&line))
}

/// Reads the daemon's one line.
fn parse_report(line: &str) -> Outcome {
    let line = line.trim_end_matches('\n');
    if let Some(pid) = line.strip_prefix("ready ")
        && let Ok(pid) = pid.parse()
    {
        return Outcome::Ready(pid);
    }
    if let Some(rest) = line.strip_prefix("error ")
        && let Some((c, message)) = rest.split_once(' ')
        && let Ok(c) = c.parse()
    {
        return Outcome::Failed {
            code: c,
            message: message.to_owned(),
        };
    }
    Outcome::Failed {
        code: code::UNDEFINED,
        message: "the daemon exited before it was ready".to_owned(),
    }
}

/// Stage `session`: a new session, then the daemon; returns the exit code of this stage.
pub fn start_session() -> i32 {
    let started = rustix::process::setsid()
        .map_err(|e| Error::with_source(ErrorKind::Internal, "setsid", std::io::Error::from(e)))
        .and_then(|_| spawn("daemon", Stdio::inherit()));
    match started {
        Ok(_daemon) => code::SUCCESS,
        Err(e) => {
            report_failure(code::UNDEFINED, &e.chain());
            code::UNDEFINED
        }
    }
}

/// Stage `daemon`: everything that can fail at start has succeeded. Points stdout at /dev/null,
/// then tells the waiting process on a copy of the pipe. In this order, because the waiting
/// process returns to the user as soon as it reads the line: by then the daemon must hold no
/// descriptor of the terminal's pipe (the other order left a moment in which it still did).
pub fn report_ready() -> Result<()> {
    use std::os::fd::AsFd;
    let io = |what: &'static str| {
        move |e: rustix::io::Errno| {
            Error::with_source(ErrorKind::Internal, what, std::io::Error::from(e))
        }
    };
    let stdout = std::io::stdout();
    let _ = stdout.lock().flush();
    let pipe = rustix::io::dup(stdout.as_fd()).map_err(io("copying stdout"))?;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::with_source(ErrorKind::Internal, "opening /dev/null", e))?;
    rustix::stdio::dup2_stdout(&null).map_err(io("redirecting stdout"))?;
    let mut pipe = std::fs::File::from(pipe);
    writeln!(pipe, "ready {}", std::process::id())
        .and_then(|()| pipe.flush())
        .map_err(|e| Error::with_source(ErrorKind::Internal, "telling the terminal", e))
}

/// Stage `daemon` (or `session`) failed before it was ready: sends the exit code and the error
/// to the waiting process, on one line.
pub fn report_failure(exit_code: i32, message: &str) {
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "error {exit_code} {one_line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_line_is_parsed_strictly() {
        assert_eq!(parse_report("ready 4242\n"), Outcome::Ready(4242));
        assert_eq!(
            parse_report("error 8 another rfetch is running (pid 7)\n"),
            Outcome::Failed {
                code: 8,
                message: "another rfetch is running (pid 7)".into()
            }
        );
        for bad in ["", "ready", "ready x\n", "error x y", "hello\n"] {
            assert!(
                matches!(parse_report(bad), Outcome::Failed { code: 23, .. }),
                "{bad:?}"
            );
        }
    }
}
