//! The MDA target: a command that receives the message on stdin. The fetchmailrc form is a
//! shell command run by `/bin/sh -c` with `%T` (recipient) and `%F` (sender) replaced by
//! single-quoted values; the TOML form is an argv run without a shell.
//!
//! Exit status (fetchmail man `--mda`, anchor §3.3, refined as the parity checklist asks):
//! 0 = delivered; 75 (EX_TEMPFAIL) = transient; any other status or death by a signal =
//! permanent; failure to start it = transient. fetchmail itself keeps the message on every
//! failure; deciding that from a permanent error is the fetch job's `softbounce` logic.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{Deliver, DeliverError, MessageInfo, Receipt, stream_lf};

/// How much of the MDA's stderr is kept for the error message.
const STDERR_LIMIT: usize = 4096;
/// sysexits.h EX_TEMPFAIL.
pub const EX_TEMPFAIL: i32 = 75;

/// The command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MdaCommand {
    /// fetchmailrc `mda "procmail -d %T"`: run through `/bin/sh -c`.
    Shell(String),
    /// TOML `mda = ["procmail", "-d", "%T"]`: run directly.
    Argv(Vec<String>),
}

/// An MDA target.
#[derive(Debug, Clone)]
pub struct Mda {
    command: MdaCommand,
    timeout: Duration,
    strip_cr: bool,
}

impl Mda {
    /// A shell-form MDA. Refuses a command that already quotes `%T` or `%F` (`'%T'`), because
    /// our own quoting would then be undone (fetchmail ≥ 6.4.0 refuses it too).
    pub fn shell(command: impl Into<String>) -> Result<Self, DeliverError> {
        let command = command.into();
        for bad in ["'%T'", "'%F'", "\"%T\"", "\"%F\""] {
            if command.contains(bad) {
                return Err(DeliverError::permanent(format!(
                    "mda command must not quote {bad}: %T and %F are quoted by rfetch"
                )));
            }
        }
        if command.trim().is_empty() {
            return Err(DeliverError::permanent("mda command is empty"));
        }
        Ok(Self::new(MdaCommand::Shell(command)))
    }

    /// An argv-form MDA.
    pub fn argv(argv: Vec<String>) -> Result<Self, DeliverError> {
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err(DeliverError::permanent("mda command is empty"));
        }
        Ok(Self::new(MdaCommand::Argv(argv)))
    }

    fn new(command: MdaCommand) -> Self {
        Mda {
            command,
            timeout: Duration::from_secs(600),
            strip_cr: true,
        }
    }

    /// How long the MDA may run (including reading the message) before it is killed; the
    /// delivery is then transient. Default 10 minutes.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether CRLF is converted to LF (fetchmail's `stripcr`, on by default for an MDA).
    pub fn with_strip_cr(mut self, strip_cr: bool) -> Self {
        self.strip_cr = strip_cr;
        self
    }

    /// The program and arguments that will run for this message.
    pub fn expand(&self, info: &MessageInfo) -> Vec<String> {
        match &self.command {
            MdaCommand::Shell(cmd) => vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                expand_shell(cmd, info),
            ],
            MdaCommand::Argv(argv) => argv.iter().map(|a| expand_plain(a, info)).collect(),
        }
    }

    fn describe(&self) -> String {
        match &self.command {
            MdaCommand::Shell(cmd) => format!("mda \"{cmd}\""),
            MdaCommand::Argv(argv) => format!("mda {:?}", argv),
        }
    }
}

/// Single-quotes `value` for a POSIX shell: `'` becomes `'\''`.
pub fn shell_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

fn expand_with(cmd: &str, info: &MessageInfo, quote: fn(&str) -> String) -> String {
    let mut out = String::with_capacity(cmd.len() + 32);
    let mut chars = cmd.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.peek() {
                Some('T') => {
                    chars.next();
                    // Multidrop: every recipient, each quoted, as fetchmail does
                    // (`procmail -d %T` delivers to each).
                    let all: Vec<String> = std::iter::once(&info.recipient)
                        .chain(&info.also)
                        .map(|r| quote(r))
                        .collect();
                    out.push_str(&all.join(" "));
                    continue;
                }
                Some('F') => {
                    chars.next();
                    out.push_str(&quote(&info.sender));
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Shell form: `%T`/`%F` become single-quoted words.
pub fn expand_shell(cmd: &str, info: &MessageInfo) -> String {
    expand_with(cmd, info, shell_quote)
}

/// Argv form: `%T`/`%F` are replaced verbatim (no shell sees them).
pub fn expand_plain(arg: &str, info: &MessageInfo) -> String {
    expand_with(arg, info, str::to_owned)
}

impl Deliver for Mda {
    fn deliver(&mut self, msg: &mut dyn Read, info: &MessageInfo) -> Result<Receipt, DeliverError> {
        let what = self.describe();
        let argv = self.expand(info);
        let Some((program, args)) = argv.split_first() else {
            return Err(DeliverError::permanent("mda command is empty"));
        };
        // Its own process group, so a timeout kills whatever the shell started too (a surviving
        // grandchild would otherwise hold the pipes open).
        let mut child = Command::new(program)
            .args(args)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| DeliverError::Transient {
                reason: format!("cannot start {what}"),
                source: Some(e),
            })?;
        let deadline = Instant::now() + self.timeout;

        let stderr_reader = child.stderr.take().map(|mut err| {
            let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
            thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match err.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let room = STDERR_LIMIT.saturating_sub(kept.len());
                            kept.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
                        }
                    }
                }
                let _ = tx.send(kept);
            });
            rx
        });

        let mut written = 0u64;
        // A watchdog kills an MDA that stops reading past the deadline, so a blocked write on
        // its stdin cannot hang us. It only fires while we are still writing: the child is not
        // reaped yet, so its pid cannot have been reused.
        let pid = rustix::process::Pid::from_child(&child);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let watchdog = thread::spawn(move || {
            let wait = deadline.saturating_duration_since(Instant::now());
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(wait) {
                kill_group(pid);
            }
        });
        let write_result = match child.stdin.take() {
            Some(mut stdin) => {
                let r = if self.strip_cr {
                    stream_lf(msg, |chunk| {
                        written += chunk.len() as u64;
                        stdin.write_all(chunk)
                    })
                } else {
                    copy_raw(msg, &mut stdin, &mut written)
                };
                drop(stdin); // EOF for the MDA
                r
            }
            None => Ok(()),
        };
        let _ = done_tx.send(());
        let _ = watchdog.join();

        let status = wait_bounded(&mut child, pid, deadline);
        // A background process started by the MDA may keep stderr open: wait only briefly.
        let stderr_text = stderr_reader
            .and_then(|rx| rx.recv_timeout(Duration::from_millis(500)).ok())
            .map(|v| String::from_utf8_lossy(&v).trim().to_owned())
            .unwrap_or_default();
        let with_stderr = |mut reason: String| {
            if !stderr_text.is_empty() {
                reason.push_str(" (");
                reason.push_str(&scrub(&stderr_text));
                reason.push(')');
            }
            reason
        };

        let status = match status {
            Ok(s) => s,
            Err(WaitError::TimedOut) => {
                return Err(DeliverError::transient(with_stderr(format!(
                    "{what} did not finish within {} s and was killed",
                    self.timeout.as_secs()
                ))));
            }
            Err(WaitError::Io(e)) => {
                return Err(DeliverError::Transient {
                    reason: format!("cannot wait for {what}"),
                    source: Some(e),
                });
            }
        };
        if let Err(e) = write_result {
            // The MDA did not take the whole message, whatever it exited with.
            return Err(e.into_deliver(&what));
        }
        classify_status(status, &what, with_stderr)?;
        Ok(Receipt {
            location: what,
            path: None,
            bytes: written,
        })
    }
}

fn copy_raw(
    msg: &mut dyn Read,
    out: &mut dyn Write,
    written: &mut u64,
) -> Result<(), super::StreamError> {
    let mut buf = vec![0u8; super::CHUNK];
    loop {
        let n = match msg.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(super::StreamError::Read(e)),
        };
        out.write_all(buf.get(..n).unwrap_or_default())
            .map_err(super::StreamError::Write)?;
        *written += n as u64;
    }
}

fn classify_status(
    status: ExitStatus,
    what: &str,
    with_stderr: impl Fn(String) -> String,
) -> Result<(), DeliverError> {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(EX_TEMPFAIL), _) => Err(DeliverError::transient(with_stderr(format!(
            "{what} returned status {EX_TEMPFAIL} (temporary failure)"
        )))),
        (Some(code), _) => Err(DeliverError::permanent(with_stderr(format!(
            "{what} returned nonzero status {code}"
        )))),
        (None, Some(sig)) => Err(DeliverError::permanent(with_stderr(format!(
            "{what} was killed by signal {sig}"
        )))),
        (None, None) => Err(DeliverError::permanent(with_stderr(format!(
            "{what} ended abnormally"
        )))),
    }
}

/// Replaces control characters so hostile MDA output cannot forge log lines.
fn scrub(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Kills the MDA's process group (the group id is the MDA's pid, see `process_group(0)`).
fn kill_group(pid: rustix::process::Pid) {
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

enum WaitError {
    TimedOut,
    Io(io::Error),
}

/// Waits for the child until `deadline`, then kills and reaps it: never leaves a zombie.
fn wait_bounded(
    child: &mut Child,
    pid: rustix::process::Pid,
    deadline: Instant,
) -> Result<ExitStatus, WaitError> {
    let mut pause = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(WaitError::Io(e));
            }
        }
        if Instant::now() >= deadline {
            kill_group(pid);
            let _ = child.kill();
            let _ = child.wait();
            return Err(WaitError::TimedOut);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(sender: &str, recipient: &str) -> MessageInfo {
        MessageInfo {
            sender: sender.into(),
            recipient: recipient.into(),
            also: Vec::new(),
        }
    }

    #[test]
    fn percent_t_names_every_multidrop_recipient() {
        let mut i = info("a@x", "alice");
        i.also = vec!["bob".into(), "o'neil".into()];
        assert_eq!(
            expand_shell("procmail -d %T", &i),
            "procmail -d 'alice' 'bob' 'o'\\''neil'"
        );
    }

    #[test]
    fn shell_expansion_quotes_values() {
        let i = info("x'; rm -rf ~; '", "bob");
        assert_eq!(
            expand_shell("procmail -f %F -d %T %% %x", &i),
            "procmail -f 'x'\\''; rm -rf ~; '\\''' -d 'bob' %% %x"
        );
        assert_eq!(expand_plain("-d%T", &i), "-dbob");
    }

    #[test]
    fn refuses_prequoted_placeholders() {
        assert!(Mda::shell("procmail -d '%T'").is_err());
        assert!(Mda::shell("  ").is_err());
        assert!(Mda::argv(vec![]).is_err());
        assert!(Mda::shell("procmail -d %T").is_ok());
    }
}
