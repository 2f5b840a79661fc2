//! The MDA target: a command that receives the message on stdin. The fetchmailrc form is a
//! shell command run by `/bin/sh -c` in which `%T` (recipient) and `%F` (sender) become
//! references to positional parameters holding the values ([`expand_shell`]), so the shell never
//! parses a value; the TOML form is an argv run without a shell. The message is read whole into
//! an unnamed temporary file first and fed to the MDA by `cat`, so an MDA never reads an end of
//! file after part of a message, even when rfetch is killed while it runs.
//!
//! Exit status (fetchmail's, except that EX_TEMPFAIL is told apart from other failures):
//! 0 = delivered; 75 (EX_TEMPFAIL) = transient; any other status or death by a signal =
//! permanent; failure to start it = transient. fetchmail itself keeps the message on every
//! failure; deciding that from a permanent error is the fetch job's `softbounce` logic.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{Deliver, DeliverError, MessageInfo, Receipt, stream_lf};

/// How much of the MDA's stderr is kept for the error message.
const STDERR_LIMIT: usize = 4096;
/// How long an MDA may run by default before it is killed (its delivery is then transient).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
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
    line_ends: LineEnds,
}

/// The line ends an MDA is fed (fetchmail's `stripcr` and `forcecr`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LineEnds {
    /// CRLF becomes LF (`stripcr`, fetchmail's default for an MDA).
    #[default]
    Lf,
    /// As the server sent them (`no stripcr`).
    AsReceived,
    /// Every line ends in CRLF, a bare LF too (`no stripcr` with `forcecr`).
    Crlf,
}

impl Mda {
    /// A shell-form MDA. `%F` and `%T` may stand in any quoting (`%F`, `'%F'`, `"<%F>"`,
    /// `-f'%F'`): see [`expand_shell`] for why no quoting lets a value reach the shell parser.
    pub fn shell(command: impl Into<String>) -> Result<Self, DeliverError> {
        let command = command.into();
        if command.trim().is_empty() {
            return Err(DeliverError::permanent("mda command is empty"));
        }
        let why = match scan(&command, MDA_PLACEHOLDERS, 1).reparsed {
            None => return Ok(Self::new(MdaCommand::Shell(command))),
            Some(Reparsed::DashC) => "in the command string of -c",
            Some(Reparsed::Eval) => "on a line with eval",
            Some(Reparsed::Arithmetic) => "inside $((...))",
        };
        Err(DeliverError::permanent(format!(
            "mda command: %F or %T {why} would be parsed by the shell as code, and a message \
             controls them; pass them as arguments instead, e.g. sh -c 'procmail -f \"$1\"' sh %F"
        )))
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
            timeout: DEFAULT_TIMEOUT,
            line_ends: LineEnds::Lf,
        }
    }

    /// How long the MDA may run, from its start until it exits, before it is killed; the
    /// delivery is then transient. Default 10 minutes.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The line ends the MDA is fed (default LF, fetchmail's `stripcr` for an MDA).
    pub fn with_line_ends(mut self, line_ends: LineEnds) -> Self {
        self.line_ends = line_ends;
        self
    }

    /// The program and arguments that will run for this message.
    pub fn expand(&self, info: &MessageInfo) -> Vec<String> {
        match &self.command {
            MdaCommand::Shell(cmd) => expand_shell(cmd, info).argv(),
            MdaCommand::Argv(argv) => {
                let mut out = Vec::with_capacity(argv.len() + info.also.len());
                for arg in argv {
                    if arg == "%T" {
                        // A whole-argument %T: one argument per recipient (multidrop).
                        out.push(without_nul(&info.recipient));
                        out.extend(info.also.iter().map(|r| without_nul(r)));
                    } else {
                        out.push(expand_plain(arg, info));
                    }
                }
                out
            }
        }
    }

    fn describe(&self) -> String {
        match &self.command {
            MdaCommand::Shell(cmd) => format!("mda \"{cmd}\""),
            MdaCommand::Argv(argv) => format!("mda {:?}", argv),
        }
    }
}

/// A shell-form MDA command ready to run: `script` goes to `/bin/sh -c` and holds no byte of
/// any expanded value; the values travel as positional parameters (`$1` the sender, `$2`... the
/// recipients), which the shell substitutes after it has parsed the script, so nothing a
/// message's sender controls is ever parsed as shell syntax, whatever quoting surrounds `%F`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellInvocation {
    /// The command line with each placeholder rewritten to a parameter reference.
    pub script: String,
    /// `$1`, `$2`, ...: the sender, then every recipient.
    pub params: Vec<String>,
}

impl ShellInvocation {
    /// `/bin/sh -c SCRIPT sh PARAMS...` (`sh` is `$0`, the name the shell's messages use).
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            self.script.clone(),
            "sh".to_owned(),
        ];
        argv.extend(self.params.iter().cloned());
        argv
    }
}

/// Expands a fetchmailrc MDA line for one message (the public entry point for fuzzing).
///
/// `%F` is the envelope sender and `%T` every recipient (multidrop: one word each where the
/// placeholder is unquoted, joined by spaces inside quotes). Each placeholder becomes a
/// reference to a positional parameter written for the quoting context it stands in: `"${1}"`
/// unquoted, `${1}` inside double quotes, and inside single quotes the quote is closed, `"${1}"`
/// inserted and the quote reopened. So `procmail -f "<%F>" -d %T`, `-f'<%F>'` and the `'%F'`
/// that fetchmail 6.4 refuses all pass the exact value as (part of) one argument. Contexts
/// opened by `$(`, backquotes and backslash escapes are followed; a backslash-escaped `%` is
/// left alone. `%%` is not an escape (fetchmail has none): `%%F` is a `%` before the sender.
/// A NUL, which no argument can carry, becomes `_`. [`Mda::shell`] refuses a line in which a
/// second parser would read a value (`sh -c '... %F'`, `eval`, `$((%F))`): the first shell
/// would hand it the value as text.
pub fn expand_shell(cmd: &str, info: &MessageInfo) -> ShellInvocation {
    let recipients = 1 + info.also.len();
    let mut params = Vec::with_capacity(1 + recipients);
    params.push(without_nul(&info.sender));
    params.push(without_nul(&info.recipient));
    params.extend(info.also.iter().map(|r| without_nul(r)));
    ShellInvocation {
        script: scan(cmd, MDA_PLACEHOLDERS, recipients).script,
        params,
    }
}

fn without_nul(value: &str) -> String {
    value.replace('\0', "_")
}

/// Where the shell parser is at a given point of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// Unquoted, at the top level.
    Top,
    /// Inside `$(...)`, with this many unclosed `(` of its own.
    CommandSub(u32),
    /// Inside a backquoted command substitution.
    Backquote,
    /// Inside `$((...))`, with this many unclosed `(` of its own.
    Arithmetic(u32),
    Single,
    Double,
}

/// The MDA's placeholders: `%F` (`$1`, the sender) and `%T` (`$2`..., the recipients).
const MDA_PLACEHOLDERS: [char; 2] = ['F', 'T'];

/// A fetchmailrc `plugin`/`plugout` command for one connection: `%h` becomes a reference to
/// `$1` (the host) and `%p` to `$2` (the port), in whatever quoting they stand, exactly as
/// [`expand_shell`] does for `%F`/`%T`, so a host name such as `x;rm -rf ~` or `$(id)` reaches
/// the command as one argument and is never parsed by the shell. A command that would hand a
/// value to a second parser (`sh -c '... %h'`, `eval`) is refused with the reason.
pub fn expand_connect_command(cmd: &str, host: &str, port: u16) -> Result<ShellInvocation, String> {
    if cmd.trim().is_empty() {
        return Err("the command is empty".to_owned());
    }
    let scanned = scan(cmd, ['h', 'p'], 1);
    let why = match scanned.reparsed {
        None => {
            return Ok(ShellInvocation {
                script: scanned.script,
                params: vec![without_nul(host), port.to_string()],
            });
        }
        Some(Reparsed::DashC) => "in the command string of -c",
        Some(Reparsed::Eval) => "on a line with eval",
        Some(Reparsed::Arithmetic) => "inside $((...))",
    };
    Err(format!(
        "%h or %p {why} would be parsed by the shell as code; pass them as arguments instead, \
         e.g. sh -c 'ssh \"$1\" imapd' sh %h"
    ))
}

/// Why a command line is refused even though its own shell never parses a value: it hands the
/// expanded value to a second parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reparsed {
    /// The placeholder is in the command string of a `-c` (`sh -c '... %F'`, `su -c`).
    DashC,
    /// The line runs `eval`, which parses its arguments again.
    Eval,
    /// The placeholder is in `$((...))`, where some shells evaluate `a[$(cmd)]` in values.
    Arithmetic,
}

struct Scan {
    script: String,
    reparsed: Option<Reparsed>,
}

/// Rewrites the placeholders `%{letters[0]}` (one value, `$1`) and `%{letters[1]}`
/// (`recipients` values from `$2`) of `cmd`.
fn scan(cmd: &str, letters: [char; 2], recipients: usize) -> Scan {
    let mut out = String::with_capacity(cmd.len() + 16);
    // Bounded by the command line's length, never by a message.
    let mut stack = vec![Quoting::Top];
    let mut chars = cmd.chars().peekable();
    // The top-level words, to find placeholders a second parser would see.
    let mut word = String::new();
    let mut previous_word = String::new();
    let mut word_has_placeholder = false;
    let mut any_placeholder = false;
    let mut reparsed = None;
    let mut eval = false;
    let mut end_word = |word: &mut String, has: &mut bool, reparsed: &mut Option<Reparsed>| {
        if *has && previous_word == "-c" {
            reparsed.get_or_insert(Reparsed::DashC);
        }
        if word == "eval" {
            eval = true;
        }
        if !word.is_empty() {
            previous_word = std::mem::take(word);
        }
        *has = false;
    };
    while let Some(c) = chars.next() {
        let here = stack.last().copied().unwrap_or(Quoting::Top);
        if c == '%'
            && let Some(&which) = chars.peek()
            && letters.contains(&which)
        {
            chars.next();
            let first = if which == letters[0] { 1 } else { 2 };
            let count = if which == letters[0] { 1 } else { recipients };
            out.push_str(&parameter_reference(first, count, here));
            word.push('%');
            word.push(which);
            word_has_placeholder = true;
            any_placeholder = true;
            if stack.iter().any(|q| matches!(q, Quoting::Arithmetic(_))) {
                reparsed.get_or_insert(Reparsed::Arithmetic);
            }
            continue;
        }
        let unquoted = matches!(
            here,
            Quoting::Top | Quoting::CommandSub(_) | Quoting::Backquote
        );
        if unquoted && (c.is_whitespace() || matches!(c, ';' | '|' | '&' | '`')) {
            end_word(&mut word, &mut word_has_placeholder, &mut reparsed);
        } else {
            word.push(c);
        }
        out.push(c);
        let opens_substitution = c == '$' && chars.peek() == Some(&'(');
        match here {
            Quoting::Single => {
                if c == '\'' {
                    stack.pop();
                }
            }
            Quoting::Double => match c {
                '\\' => out.extend(chars.next()),
                '"' => {
                    stack.pop();
                }
                '`' => stack.push(Quoting::Backquote),
                _ if opens_substitution => open_substitution(&mut chars, &mut out, &mut stack),
                _ => {}
            },
            Quoting::Top | Quoting::CommandSub(_) | Quoting::Backquote | Quoting::Arithmetic(_) => {
                match c {
                    '\\' => out.extend(chars.next()),
                    '\'' => stack.push(Quoting::Single),
                    '"' => stack.push(Quoting::Double),
                    '`' if here == Quoting::Backquote => {
                        stack.pop();
                    }
                    '`' => stack.push(Quoting::Backquote),
                    _ if opens_substitution => open_substitution(&mut chars, &mut out, &mut stack),
                    '(' => {
                        if let Some(Quoting::CommandSub(depth) | Quoting::Arithmetic(depth)) =
                            stack.last_mut()
                        {
                            *depth += 1;
                        }
                    }
                    ')' => match stack.last_mut() {
                        Some(Quoting::CommandSub(0)) => {
                            stack.pop();
                        }
                        Some(Quoting::Arithmetic(0)) => {
                            // The first of the closing `))`.
                            if chars.peek() == Some(&')') {
                                out.extend(chars.next());
                            }
                            stack.pop();
                        }
                        Some(Quoting::CommandSub(depth) | Quoting::Arithmetic(depth)) => {
                            *depth -= 1
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
    }
    end_word(&mut word, &mut word_has_placeholder, &mut reparsed);
    if eval && any_placeholder {
        reparsed.get_or_insert(Reparsed::Eval);
    }
    Scan {
        script: out,
        reparsed,
    }
}

/// After a `$` followed by `(`: `$((` opens arithmetic, `$(` a command substitution.
fn open_substitution(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    out: &mut String,
    stack: &mut Vec<Quoting>,
) {
    out.extend(chars.next());
    if chars.peek() == Some(&'(') {
        out.extend(chars.next());
        stack.push(Quoting::Arithmetic(0));
    } else {
        stack.push(Quoting::CommandSub(0));
    }
}

/// `count` parameters from `$first` on, as text that yields exactly their values where it
/// stands.
fn parameter_reference(first: usize, count: usize, here: Quoting) -> String {
    let names = (first..first + count).map(|i| format!("${{{i}}}"));
    match here {
        Quoting::Double => names.collect::<Vec<_>>().join(" "),
        Quoting::Single => format!("'\"{}\"'", names.collect::<Vec<_>>().join(" ")),
        Quoting::Top | Quoting::CommandSub(_) | Quoting::Backquote | Quoting::Arithmetic(_) => {
            names
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

/// Argv form: `%T`/`%F` are replaced verbatim (no shell sees them); inside a longer argument
/// `%T` is every recipient joined by spaces.
pub fn expand_plain(arg: &str, info: &MessageInfo) -> String {
    let mut out = String::with_capacity(arg.len() + 32);
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.peek() {
                Some('T') => {
                    chars.next();
                    let all: Vec<&str> = std::iter::once(info.recipient.as_str())
                        .chain(info.also.iter().map(String::as_str))
                        .collect();
                    out.push_str(&without_nul(&all.join(" ")));
                    continue;
                }
                Some('F') => {
                    chars.next();
                    out.push_str(&without_nul(&info.sender));
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

impl Deliver for Mda {
    fn deliver(&mut self, msg: &mut dyn Read, info: &MessageInfo) -> Result<Receipt, DeliverError> {
        let what = self.describe();
        // Registered so that a stop waits for this MDA (bounded by the timeout) instead of
        // exiting while it holds half a message.
        let _in_flight = super::begin_delivery(&what)?;
        let argv = self.expand(info);
        let Some((program, args)) = argv.split_first() else {
            return Err(DeliverError::permanent("mda command is empty"));
        };
        // The whole message is read before the MDA starts, so that no MDA ever reads an end of
        // file after part of a message (which it would take for the end of a complete one):
        // not when the server connection breaks, and not when rfetch itself is killed, because
        // the MDA is then fed by a process of its own (below) that outlives rfetch.
        let (spool, written) = spool_message(msg, self.line_ends, &what)?;
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
        let pid = rustix::process::Pid::from_child(&child);

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

        // The feeder: cat(1) copies the spooled message into the MDA's stdin. Whether it
        // finished tells whether the MDA read the whole message (an MDA that exits early makes
        // it fail with EPIPE).
        let feeder = match child.stdin.take() {
            Some(stdin) => Command::new(FEEDER)
                .process_group(0)
                .stdin(Stdio::from(spool))
                .stdout(Stdio::from(stdin))
                .stderr(Stdio::null())
                .spawn(),
            None => Err(io::Error::other("no pipe to the MDA")),
        };
        let mut feeder = match feeder {
            Ok(f) => f,
            Err(e) => {
                kill_group(pid);
                let _ = child.wait();
                return Err(DeliverError::Transient {
                    reason: format!("cannot start {FEEDER} to feed {what}"),
                    source: Some(e),
                });
            }
        };
        let feeder_pid = rustix::process::Pid::from_child(&feeder);

        let status = wait_bounded(&mut child, pid, deadline);
        let fed = wait_bounded(&mut feeder, feeder_pid, deadline);
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

        let timed_out = || {
            DeliverError::transient(with_stderr(format!(
                "{what} did not finish within {} s and was killed",
                self.timeout.as_secs()
            )))
        };
        let status = match status {
            Ok(s) => s,
            Err(WaitError::TimedOut) => return Err(timed_out()),
            Err(WaitError::Io(e)) => {
                return Err(DeliverError::Transient {
                    reason: format!("cannot wait for {what}"),
                    source: Some(e),
                });
            }
        };
        match fed {
            Ok(s) if s.success() => {}
            Err(WaitError::TimedOut) => return Err(timed_out()),
            // The MDA did not take the whole message, whatever it exited with.
            _ => {
                return Err(DeliverError::transient(with_stderr(format!(
                    "{what} did not read the whole message"
                ))));
            }
        }
        classify_status(status, &what, with_stderr)?;
        Ok(Receipt {
            location: what,
            path: None,
            bytes: written,
        })
    }
}

/// The program that feeds the spooled message to the MDA.
const FEEDER: &str = "/bin/cat";

/// Reads the whole message (its line ends as `line_ends` says) into an unnamed temporary file;
/// returns it rewound, and its length.
fn spool_message(
    msg: &mut dyn Read,
    line_ends: LineEnds,
    what: &str,
) -> Result<(File, u64), DeliverError> {
    let mut file = unnamed_temp_file().map_err(|e| {
        DeliverError::from_io(format!("cannot create a temporary file for {what}"), e)
    })?;
    let mut written = 0u64;
    let mut stopped = false;
    {
        let mut out = io::BufWriter::with_capacity(super::CHUNK, &mut file);
        // Until the MDA starts nothing is delivered, so a stop may abandon the copy at once
        // (the message stays on the server).
        let mut sink = |chunk: &[u8]| {
            if super::roll_back_requested() {
                stopped = true;
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            written += chunk.len() as u64;
            out.write_all(chunk)
        };
        let copied = match line_ends {
            LineEnds::Lf => stream_lf(msg, sink),
            LineEnds::AsReceived => copy_raw(msg, &mut sink),
            // Through LF first, so that a CRLF does not become CR CR LF.
            LineEnds::Crlf => {
                let mut crlf = Vec::new();
                stream_lf(msg, |chunk| {
                    crlf.clear();
                    for part in chunk.split_inclusive(|&b| b == b'\n') {
                        match part.strip_suffix(b"\n") {
                            Some(line) => {
                                crlf.extend_from_slice(line);
                                crlf.extend_from_slice(b"\r\n");
                            }
                            None => crlf.extend_from_slice(part),
                        }
                    }
                    sink(&crlf)
                })
            }
        };
        copied
            .and_then(|()| out.flush().map_err(super::StreamError::Write))
            .map_err(|e| {
                if stopped {
                    DeliverError::transient(format!("not delivering to {what}: rfetch is stopping"))
                } else {
                    e.into_deliver(what)
                }
            })?;
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| DeliverError::from_io(format!("cannot rewind the copy for {what}"), e))?;
    Ok((file, written))
}

/// A file in the temporary directory that has no name (O_TMPFILE), so that nothing of the
/// message is left behind whatever happens to rfetch; where the file system lacks O_TMPFILE, a
/// private file removed as soon as it is open.
fn unnamed_temp_file() -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let dir = std::env::temp_dir();
    match rustix::fs::open(
        &dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => return Ok(File::from(fd)),
        Err(e)
            if e == rustix::io::Errno::OPNOTSUPP
                || e == rustix::io::Errno::ISDIR
                || e == rustix::io::Errno::INVAL => {}
        Err(e) => return Err(e.into()),
    }
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    for _ in 0..1000 {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!(".rfetch-mda-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from(io::ErrorKind::AlreadyExists))
}

fn copy_raw(
    msg: &mut dyn Read,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), super::StreamError> {
    let mut buf = vec![0u8; super::CHUNK];
    loop {
        let n = match msg.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(super::StreamError::Read(e)),
        };
        sink(buf.get(..n).unwrap_or_default()).map_err(super::StreamError::Write)?;
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
    fn line_ends_follow_stripcr_and_forcecr() {
        let input = b"A: b\r\nC: bare lf\n\r\nbody\rlone cr\r\nlast";
        let spooled = |ends| {
            let (mut f, n) = spool_message(&mut &input[..], ends, "t").unwrap();
            let mut v = Vec::new();
            f.read_to_end(&mut v).unwrap();
            assert_eq!(n, v.len() as u64);
            v
        };
        assert_eq!(
            spooled(LineEnds::Lf),
            b"A: b\nC: bare lf\n\nbody\rlone cr\nlast"
        );
        assert_eq!(spooled(LineEnds::AsReceived), input);
        assert_eq!(
            spooled(LineEnds::Crlf),
            b"A: b\r\nC: bare lf\r\n\r\nbody\rlone cr\r\nlast"
        );
    }

    #[test]
    fn percent_t_names_every_multidrop_recipient() {
        let mut i = info("a@x", "alice");
        i.also = vec!["bob".into(), "o'neil".into()];
        let inv = expand_shell("procmail -d %T", &i);
        assert_eq!(inv.script, r#"procmail -d "${2}" "${3}" "${4}""#);
        assert_eq!(inv.params, ["a@x", "alice", "bob", "o'neil"]);
        assert_eq!(
            expand_shell("x '%T' \"%T\"", &i).script,
            r#"x ''"${2} ${3} ${4}"'' "${2} ${3} ${4}""#
        );
    }

    #[test]
    fn placeholders_become_references_for_their_quoting() {
        let i = info("x'; rm -rf ~; '", "bob");
        let cases = [
            (
                "procmail -f %F -d %T %% %x",
                r#"procmail -f "${1}" -d "${2}" %% %x"#,
            ),
            ("a '%F' \"%F\"", r#"a ''"${1}"'' "${1}""#),
            ("p -f'<%F>' -f \"<%F>\"", r#"p -f'<'"${1}"'>' -f "<${1}>""#),
            (
                "p '-f%F' \"-f%F\" x%Fy",
                r#"p '-f'"${1}"'' "-f${1}" x"${1}"y"#,
            ),
            ("p \\%F \"\\\"%F\"", r#"p \%F "\"${1}""#),
            (
                "p \"$(echo '%F')\" `echo %F`",
                r#"p "$(echo ''"${1}"'')" `echo "${1}"`"#,
            ),
            (
                "p $(x (a) '%F') '%F'",
                r#"p $(x (a) ''"${1}"'') ''"${1}"''"#,
            ),
            ("%%F %", r#"%"${1}" %"#),
        ];
        for (cmd, want) in cases {
            let inv = expand_shell(cmd, &i);
            assert_eq!(inv.script, want, "{cmd}");
            assert_eq!(inv.params, ["x'; rm -rf ~; '", "bob"]);
        }
        assert_eq!(expand_plain("-d%T", &i), "-dbob");
        assert_eq!(expand_plain("-f%F", &i), "-fx'; rm -rf ~; '");
    }

    #[test]
    fn the_script_never_depends_on_the_values() {
        // Whatever the values, the shell parses the same text: the values cannot change it.
        let cmd = "procmail -f \"<%F>\" -a '%F' -b x%Fy -d %T";
        let base = expand_shell(cmd, &info("", "")).script;
        for v in [
            "$(id)", "`id`", "'", "\"", "\\", "a\nb", "%F", "${IFS}", "-x", "\0",
        ] {
            let inv = expand_shell(cmd, &info(v, v));
            assert_eq!(inv.script, base);
            assert_eq!(inv.params.len(), 2);
            assert!(!inv.params.iter().any(|p| p.contains('\0')));
        }
    }

    #[test]
    fn generated_commands_and_values_never_change_the_script() {
        // For any command line (here: random strings of shell syntax and placeholders), the
        // script is a function of the line alone and the values are exactly the parameters.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const PIECES: &[&str] = &[
            "%F", "%T", "%", "'", "\"", "`", "$(", "$((", ")", "(", "\\", " ", ";", "|", "x", "-c",
            "eval", "${", "}", "\n", "#",
        ];
        let mut text = |len: u64| -> String {
            (0..len)
                .map(|_| PIECES[(next() >> 7) as usize % PIECES.len()])
                .collect()
        };
        for _ in 0..2000 {
            let cmd = text(12);
            let (a, b) = (text(6), text(6));
            let one = expand_shell(&cmd, &info(&a, &b));
            let other = expand_shell(&cmd, &info(&b, ""));
            assert_eq!(one.script, other.script, "{cmd:?}");
            assert_eq!(one.params, [a.replace('\0', "_"), b.replace('\0', "_")]);
        }
    }

    #[test]
    fn argv_form_whole_percent_t_is_one_argument_per_recipient() {
        let mut i = info("s@x", "alice");
        i.also = vec!["bob".into()];
        let m = Mda::argv(vec![
            "deliver".into(),
            "-d".into(),
            "%T".into(),
            "-t%T".into(),
        ])
        .unwrap();
        assert_eq!(
            m.expand(&i),
            ["deliver", "-d", "alice", "bob", "-talice bob"]
        );
    }

    #[test]
    fn refuses_placeholders_a_second_parser_would_read() {
        for cmd in [
            "sh -c 'procmail -f %F'",
            "/bin/bash -c \"deliver %T\"",
            "su bob -c \"procmail -f '%F'\"",
            "sh -c %F",
            "eval procmail -f %F",
            "x; eval \"$y\"; procmail -d %T",
            "x $((%F + 1))",
            "x $(( (1) + %F ))",
            "x $(sh -c 'y %F')",
            "x `sh -c 'y %F'`",
        ] {
            let err = Mda::shell(cmd)
                .err()
                .unwrap_or_else(|| panic!("accepted {cmd}"));
            assert!(err.reason().contains("would be parsed"), "{cmd}: {err}");
            assert!(!err.is_transient());
        }
        for cmd in [
            "sh -c 'procmail -f \"$1\"' sh %F",
            "dovecot-lda -c /etc/dovecot.conf -f %F",
            "procmail -f %F -d %T",
            "x $(echo %F) $((1 + 2)) %T",
            "evaluate %F",
            "sh -c 'exit 0'",
        ] {
            assert!(Mda::shell(cmd).is_ok(), "{cmd}");
        }
        assert_eq!(
            expand_shell("x $((1+(2))) %F", &info("f", "t")).script,
            r#"x $((1+(2))) "${1}""#
        );
    }

    #[test]
    fn accepts_quoted_placeholders_refuses_empty_commands() {
        assert!(Mda::shell("procmail -d '%T'").is_ok());
        assert!(Mda::shell("procmail -f \"%F\" -d %T").is_ok());
        assert!(Mda::shell("  ").is_err());
        assert!(Mda::argv(vec![]).is_err());
    }
}
