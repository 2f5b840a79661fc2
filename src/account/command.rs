//! Runs a command a configuration names for a value (`passwordeval`, msmtprc `eval`): `sh -c`,
//! stdin closed, stderr passed through, stdout read while the command runs up to a bound, and a
//! time limit after which the command is killed and reaped.
//!
//! Stdout is read as it arrives (with poll(2), on this thread) so that a command printing more
//! than a pipe holds never blocks on a reader that is waiting for it to exit. stderr is not a
//! pipe at all: it is ours, as msmtp and fetchmail leave it, so a command's complaints reach
//! the user and can never fill a buffer. The command is not moved to its own process group:
//! `pass` and `gpg` ask for a passphrase on the terminal, which a background process group
//! could not read. So the kill cannot name the group: it reaches the shell and, found through
//! /proc, every process below it (background jobs included).

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

/// How much a command may print and for how long it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of stdout; one more is an error.
    pub max_output: usize,
    pub timeout: Duration,
}

/// The time a password command gets: long enough to type a passphrase into a pinentry
/// prompt, short enough that a command waiting on nothing does not hold a daemon's poll (or
/// an rsend in a cron job) forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a command gave no value.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run it")]
    Spawn(#[source] std::io::Error),
    #[error("cannot read its output")]
    Read(#[source] std::io::Error),
    #[error("it printed more than {max} bytes")]
    TooLong { max: usize },
    #[error("it did not finish within {} s and was killed", seconds(*after))]
    TimedOut { after: Duration },
    #[error("it failed ({0})")]
    Failed(ExitStatus),
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

/// Runs `sh -c command` and returns everything it printed on stdout, if it exited 0 within
/// the limits. On any error the command has been killed (if still running) and reaped.
pub fn run(command: &str, limits: Limits) -> Result<Vec<u8>, CommandError> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(CommandError::Spawn)?;
    let started = Instant::now();
    let result = collect(&mut child, started, limits);
    match result {
        Ok(out) => match wait_until(&mut child, started, limits.timeout) {
            Ok(Some(status)) if status.success() => Ok(out),
            Ok(Some(status)) => Err(CommandError::Failed(status)),
            Ok(None) => {
                kill_and_reap(&mut child);
                Err(CommandError::TimedOut {
                    after: limits.timeout,
                })
            }
            Err(e) => {
                kill_and_reap(&mut child);
                Err(CommandError::Read(e))
            }
        },
        Err(e) => {
            kill_and_reap(&mut child);
            Err(e)
        }
    }
}

/// Reads stdout to its end, within the output bound and the time limit. The pipe is closed
/// on return, whatever happened.
fn collect(child: &mut Child, started: Instant, limits: Limits) -> Result<Vec<u8>, CommandError> {
    let Some(mut stdout) = child.stdout.take() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = limits.timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(CommandError::TimedOut {
                after: limits.timeout,
            });
        }
        // A limit poll(2) cannot express is no limit at all.
        let wait = Timespec::try_from(left).ok();
        let mut fds = [PollFd::new(&stdout, PollFlags::IN)];
        match poll(&mut fds, wait.as_ref()) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) => return Err(CommandError::Read(e.into())),
        }
        // Readable, or hung up: either way this read does not block.
        match stdout.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(chunk.get(..n).unwrap_or_default());
                if out.len() > limits.max_output {
                    return Err(CommandError::TooLong {
                        max: limits.max_output,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CommandError::Read(e)),
        }
    }
}

/// The exit status, or `None` if the command is still running when the time limit is reached
/// (it closed its stdout but did not exit).
fn wait_until(
    child: &mut Child,
    started: Instant,
    timeout: Duration,
) -> std::io::Result<Option<ExitStatus>> {
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        // Almost every command has exited by the time its stdout closes; the naps only grow
        // for one that has not.
        std::thread::sleep(nap.min(left));
        nap = (nap * 2).min(Duration::from_millis(100));
    }
}

/// SIGKILL to the command and to every process it started (`sh -c 'slow & wait'` leaves a
/// background child the shell's death does not end), then reap it.
fn kill_and_reap(child: &mut Child) {
    crate::process::kill_tree_and_reap(child);
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Limits = Limits {
        max_output: 16,
        timeout: Duration::from_secs(20),
    };

    #[test]
    fn output_status_and_bound() {
        assert_eq!(run("printf abc", QUICK).unwrap(), b"abc");
        assert_eq!(run("printf 0123456789abcdef", QUICK).unwrap().len(), 16);
        assert!(matches!(
            run("printf 0123456789abcdefX", QUICK),
            Err(CommandError::TooLong { max: 16 })
        ));
        assert!(matches!(
            run("printf x; exit 4", QUICK),
            Err(CommandError::Failed(s)) if s.code() == Some(4)
        ));
        assert_eq!(
            CommandError::TimedOut {
                after: Duration::from_secs(120)
            }
            .to_string(),
            "it did not finish within 120 s and was killed"
        );
    }
}
