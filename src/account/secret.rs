//! Password sources (msmtp's order: `password`, `passwordeval`, the system keyring under msmtp's
//! attributes, netrc, terminal prompt) and the rule that a secret never reaches Debug, Display
//! or logs.

use std::fmt;
use std::io::{Read, Write};

use super::Env;
use super::command;
use super::keyring::{self, KeyringError};
use super::netrc;
use crate::error::{Error, ErrorKind};

/// Bound on what we accept from a password command or a terminal line.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Where a password comes from. `Debug` and `Display` never print an inline value.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// `password VALUE`.
    Inline(String),
    /// `passwordeval CMD`: run through `sh -c`, stdin closed; stdout minus the trailing newline.
    Command(String),
    /// `passwordfile PATH` (fetchmail): the file's first line, read at each use. The file
    /// must be the user's and readable by nobody else.
    File(std::path::PathBuf),
    /// `~/.netrc`, then `/etc/netrc`, by host and login.
    Netrc,
    /// Ask on `/dev/tty` without echo (only when a terminal is available).
    Prompt,
    /// `passwordkeyring`: the system keyring, under these attributes (empty: msmtp's
    /// host/service/user). A keyring that cannot be reached is an error.
    Keyring(Vec<(String, String)>),
    /// msmtp's implicit lookup when no password is configured: the keyring under msmtp's
    /// attributes (and the old GNOME network-password ones); no keyring means no password.
    MsmtpKeyring,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Inline(<redacted>)"),
            Secret::Command(cmd) => f.debug_tuple("Command").field(cmd).finish(),
            Secret::File(path) => f.debug_tuple("File").field(path).finish(),
            Secret::Netrc => f.write_str("Netrc"),
            Secret::Prompt => f.write_str("Prompt"),
            Secret::Keyring(attrs) => f.debug_tuple("Keyring").field(attrs).finish(),
            Secret::MsmtpKeyring => f.write_str("MsmtpKeyring"),
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("<redacted>"),
            Secret::Command(cmd) => write!(f, "passwordeval {cmd}"),
            Secret::File(path) => write!(f, "passwordfile {}", path.display()),
            Secret::Netrc => f.write_str("netrc"),
            Secret::Prompt => f.write_str("prompt"),
            Secret::Keyring(_) | Secret::MsmtpKeyring => f.write_str("keyring"),
        }
    }
}

/// What a secret lookup needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    pub host: &'a str,
    pub user: Option<&'a str>,
    /// The keyring's `service` attribute: `smtp`, `pop3` or `imap`.
    pub service: &'a str,
    pub env: &'a Env,
}

/// A password source that failed (as opposed to one that simply has no password).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot run password command `{command}`")]
    CommandSpawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("password command `{command}` failed ({status})")]
    CommandFailed { command: String, status: String },
    #[error("password command `{command}` printed more than {MAX_SECRET_BYTES} bytes")]
    CommandTooLong { command: String },
    #[error("password command `{command}` did not finish within {seconds} s and was killed")]
    CommandTimedOut { command: String, seconds: u64 },
    #[error("password command `{command}` printed no password")]
    CommandEmpty { command: String },
    #[error("password command `{command}` printed something that is not UTF-8")]
    CommandNotUtf8 { command: String },
    /// `~/.netrc` holds passwords and others can read it (or it is someone else's).
    #[error("{path} holds passwords and {reason}; run: {fix}")]
    NetrcInsecure {
        path: String,
        reason: String,
        fix: String,
    },
    /// A `passwordfile` others can read (or someone else's).
    #[error("password file {path} {reason}; run: {fix}")]
    FileInsecure {
        path: String,
        reason: String,
        fix: String,
    },
    #[error("password file {path} has an empty first line")]
    FileEmpty { path: String },
    #[error("cannot read password file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Netrc {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the password from the terminal")]
    Prompt(#[source] std::io::Error),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthError),
}

impl From<SecretError> for Error {
    fn from(e: SecretError) -> Self {
        let kind = match &e {
            SecretError::Netrc { .. } => ErrorKind::FileUnreadable,
            SecretError::NetrcInsecure { .. } | SecretError::FileInsecure { .. } => {
                ErrorKind::InsecureConfig
            }
            SecretError::File { .. } => ErrorKind::FileUnreadable,
            SecretError::Prompt(_) => ErrorKind::LocalIo,
            SecretError::Keyring(KeyringError::TimedOut) => ErrorKind::Timeout,
            SecretError::OAuth(o) => {
                return Error::with_source(o.kind(), "cannot get an OAuth2 access token", e)
                    .with_cause(crate::error::Cause::OAuthToken);
            }
            _ => ErrorKind::Config,
        };
        Error::with_source(kind, "cannot get the password", e)
    }
}

impl Secret {
    /// The password, or `Ok(None)` when this source has none (no netrc entry, no terminal).
    pub fn resolve(&self, lookup: &Lookup<'_>) -> Result<Option<String>, SecretError> {
        match self {
            Secret::Inline(pw) => Ok(Some(pw.clone())),
            Secret::Command(cmd) => run_password_command(cmd).map(Some),
            Secret::File(path) => read_password_file(path).map(Some),
            Secret::Netrc => netrc_lookup(lookup),
            Secret::Prompt => prompt(lookup),
            Secret::Keyring(attrs) => {
                let user = lookup.user.unwrap_or("");
                let attrs = if attrs.is_empty() {
                    keyring::msmtp_attributes(lookup.host, lookup.service, user)
                } else {
                    attrs.clone()
                };
                Ok(keyring::lookup(&attrs)?)
            }
            Secret::MsmtpKeyring => Ok(msmtp_keyring(lookup)),
        }
    }
}

/// Runs a `passwordeval` command: `sh -c CMD`, stdin closed, stderr passed through, stdout
/// with one trailing newline (LF or CRLF) removed. A non-zero exit, more than
/// `MAX_SECRET_BYTES` (64 KiB) of output, or no exit within [`command::DEFAULT_TIMEOUT`] is an error.
pub fn run_password_command(command: &str) -> Result<String, SecretError> {
    run_password_command_with(
        command,
        command::Limits {
            max_output: MAX_SECRET_BYTES,
            timeout: command::DEFAULT_TIMEOUT,
        },
    )
}

/// [`run_password_command`] with other limits.
pub fn run_password_command_with(
    command: &str,
    limits: command::Limits,
) -> Result<String, SecretError> {
    let named = || command.to_owned();
    let out = command::run(command, limits).map_err(|e| match e {
        command::CommandError::Spawn(source) | command::CommandError::Read(source) => {
            SecretError::CommandSpawn {
                command: named(),
                source,
            }
        }
        command::CommandError::TooLong { .. } => SecretError::CommandTooLong { command: named() },
        command::CommandError::TimedOut { after } => SecretError::CommandTimedOut {
            command: named(),
            seconds: after.as_secs(),
        },
        command::CommandError::Failed(status) => SecretError::CommandFailed {
            command: named(),
            status: status.to_string(),
        },
    })?;
    let mut text = String::from_utf8(out).map_err(|_| SecretError::CommandNotUtf8 {
        command: command.to_owned(),
    })?;
    strip_newline(&mut text);
    if text.is_empty() {
        return Err(SecretError::CommandEmpty {
            command: command.to_owned(),
        });
    }
    Ok(text)
}

/// msmtp's implicit keyring lookup: only with a user name, and a keyring that is absent or
/// failing just means "no password here" (the next source is tried).
fn msmtp_keyring(lookup: &Lookup<'_>) -> Option<String> {
    let user = lookup.user?;
    for attrs in [
        keyring::msmtp_attributes(lookup.host, lookup.service, user),
        keyring::compat_network_attributes(lookup.host, lookup.service, user),
    ] {
        match keyring::lookup(&attrs) {
            Ok(Some(pw)) => return Some(pw),
            Ok(None) => {}
            Err(e) => {
                log::debug!("keyring not consulted: {e}");
                return None;
            }
        }
    }
    None
}

fn strip_newline(text: &mut String) {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
}

fn netrc_lookup(lookup: &Lookup<'_>) -> Result<Option<String>, SecretError> {
    let mut files = Vec::new();
    if let Some(home) = &lookup.env.home {
        files.push((home.join(".netrc"), true));
    }
    files.push((lookup.env.sysconfdir.join("netrc"), false));
    for (path, users_own) in files {
        let (text, meta) = match read_with_metadata(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(SecretError::Netrc {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let entries = netrc::parse(&text);
        // The user's ~/.netrc with a password must be private, or it is refused (not used
        // with a warning): fetchmail 6.5 refuses it ("must be <= 0700 if it holds
        // passwords"), BSD ftp(1) refuses it, and a warning in a cron job's or a daemon's log
        // is read after the password has long been exposed. msmtp and curl check nothing; we
        // apply the rule our own rc files follow. The system file (`/etc/netrc`) is exempt
        // like `/etc/msmtprc`: it is meant to be read by every user who sends mail.
        if users_own && entries.iter().any(|e| e.password.is_some()) {
            check_netrc_permissions(&path, &meta)?;
        }
        if let Some(pw) = netrc::find_password(&entries, lookup.host, lookup.user) {
            return Ok(Some(pw.to_owned()));
        }
    }
    Ok(None)
}

/// fetchmail's `passwordfile`: the first line (without its CR LF), read at each use so that a
/// rotated password is picked up by a running daemon. The file must be the user's own and
/// readable by nobody else, checked on the very file opened; what is read is bounded.
fn read_password_file(path: &std::path::Path) -> Result<String, SecretError> {
    let shown = path.display().to_string();
    let unreadable = |source| SecretError::File {
        path: shown.clone(),
        source,
    };
    let mut file = crate::config::open_regular_file(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    {
        use std::os::unix::fs::MetadataExt;
        let euid = rustix::process::geteuid().as_raw();
        let insecure = |reason: String, fix: String| SecretError::FileInsecure {
            path: shown.clone(),
            reason,
            fix,
        };
        if meta.uid() != euid {
            return Err(insecure(
                format!("is owned by uid {}, not by uid {euid}", meta.uid()),
                format!("chown {euid} {shown} && chmod 600 {shown}"),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(insecure(
                format!("is readable by others (mode {:04o})", meta.mode() & 0o7777),
                format!("chmod 600 {shown}"),
            ));
        }
    }
    let mut line = read_line(&mut file).map_err(unreadable)?;
    if line.ends_with('\r') {
        line.pop();
    }
    if line.is_empty() {
        return Err(SecretError::FileEmpty { path: shown });
    }
    Ok(line)
}

/// The text of `path` and the metadata of the very file read.
fn read_with_metadata(path: &std::path::Path) -> std::io::Result<(String, std::fs::Metadata)> {
    let file = crate::config::open_regular_file(path)?;
    let meta = file.metadata()?;
    let text = crate::config::read_bounded_text(file)?;
    Ok((text, meta))
}

fn check_netrc_permissions(
    path: &std::path::Path,
    meta: &std::fs::Metadata,
) -> Result<(), SecretError> {
    use std::os::unix::fs::MetadataExt;
    let euid = rustix::process::geteuid().as_raw();
    let shown = path.display().to_string();
    let (reason, fix) = if meta.uid() != euid {
        (
            format!("is owned by uid {}, not by uid {euid}", meta.uid()),
            format!("chown {euid} {shown} && chmod 600 {shown}"),
        )
    } else if meta.mode() & 0o077 != 0 {
        (
            format!("is readable by others (mode {:04o})", meta.mode() & 0o7777),
            format!("chmod 600 {shown}"),
        )
    } else {
        return Ok(());
    };
    Err(SecretError::NetrcInsecure {
        path: shown,
        reason,
        fix,
    })
}

/// Asks on `/dev/tty` with echo off. `Ok(None)` when there is no terminal (cron, daemons).
fn prompt(lookup: &Lookup<'_>) -> Result<Option<String>, SecretError> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let Ok(mut tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    else {
        return Ok(None);
    };
    let Ok(saved) = tcgetattr(&tty) else {
        return Ok(None);
    };
    let question = match lookup.user {
        Some(u) => format!("password for {u} at {}: ", lookup.host),
        None => format!("password for {}: ", lookup.host),
    };
    tty.write_all(question.as_bytes())
        .and_then(|()| tty.flush())
        .map_err(SecretError::Prompt)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&tty, OptionalActions::Flush, &quiet).map_err(|e| SecretError::Prompt(e.into()))?;
    let line = read_line(&mut tty);
    // Restore echo whatever happened while reading.
    let restored = tcsetattr(&tty, OptionalActions::Flush, &saved);
    let _ = tty.write_all(b"\n");
    restored.map_err(|e| SecretError::Prompt(e.into()))?;
    let mut line = line.map_err(SecretError::Prompt)?;
    strip_newline(&mut line);
    Ok(Some(line))
}

fn read_line(input: &mut impl Read) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while bytes.len() < MAX_SECRET_BYTES {
        if input.read(&mut byte)? == 0 || byte[0] == b'\n' {
            break;
        }
        bytes.push(byte[0]);
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact_inline() {
        let s = Secret::Inline("hunter2".into());
        assert_eq!(format!("{s:?}"), "Inline(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
        assert_eq!(
            format!("{:?}", Secret::Command("pass x".into())),
            "Command(\"pass x\")"
        );
    }

    #[test]
    fn command_output_strips_one_newline() {
        assert_eq!(run_password_command("printf 'a b\\n'").unwrap(), "a b");
        assert_eq!(run_password_command("printf 'pw\\r\\n'").unwrap(), "pw");
        assert_eq!(run_password_command("printf 'pw\\n\\n'").unwrap(), "pw\n");
        assert_eq!(run_password_command("printf 'pw'").unwrap(), "pw");
    }

    #[test]
    fn command_stdin_is_closed() {
        // `cat` would hang on an inherited terminal; with stdin closed it prints nothing.
        assert!(matches!(
            run_password_command("cat; printf x"),
            Ok(ref s) if s == "x"
        ));
    }

    #[test]
    fn command_failure_is_an_error() {
        let e = run_password_command("exit 3").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("password command `exit 3` failed"),
            "{e}"
        );
        let e = run_password_command("true").unwrap_err();
        assert!(matches!(e, SecretError::CommandEmpty { .. }));
        let crate_err: Error = run_password_command("exit 1").unwrap_err().into();
        assert_eq!(crate_err.kind(), ErrorKind::Config);
    }

    #[test]
    fn readable_home_netrc_with_a_password_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("postie-netrc-perm-{}", std::process::id()));
        let home = dir.join("home");
        let etc = dir.join("etc");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        let netrc = home.join(".netrc");
        std::fs::write(&netrc, "machine a login u password home\n").unwrap();
        std::fs::write(etc.join("netrc"), "machine b login u password sys\n").unwrap();
        let mode = |p: &std::path::Path, m| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        mode(&etc.join("netrc"), 0o644);
        let env = Env {
            home: Some(home.clone()),
            sysconfdir: etc,
            ..Default::default()
        };
        let l = |host| Lookup {
            host,
            user: Some("u"),
            service: "smtp",
            env: &env,
        };
        for m in [0o644, 0o640, 0o604] {
            mode(&netrc, m);
            let e = Secret::Netrc.resolve(&l("a")).unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.contains(&format!("run: chmod 600 {}", netrc.display())),
                "{m:o}: {shown}"
            );
            assert_eq!(Error::from(e).kind(), ErrorKind::InsecureConfig);
        }
        mode(&netrc, 0o600);
        assert_eq!(
            Secret::Netrc.resolve(&l("a")).unwrap().as_deref(),
            Some("home")
        );
        // The system file is readable by every user by design, as /etc/msmtprc is.
        assert_eq!(
            Secret::Netrc.resolve(&l("b")).unwrap().as_deref(),
            Some("sys")
        );
        // A readable file without a password holds no secret.
        std::fs::write(&netrc, "machine a login u\n").unwrap();
        mode(&netrc, 0o644);
        assert_eq!(
            Secret::Netrc.resolve(&l("b")).unwrap().as_deref(),
            Some("sys")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn password_file_gives_its_first_line_and_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("postie-pwfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let env = Env::default();
        let l = Lookup {
            host: "h",
            user: Some("u"),
            service: "imap",
            env: &env,
        };
        let file = dir.join("pw");
        let mode = |m| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).unwrap();
        std::fs::write(&file, "s3cret pw\r\nsecond line\n").unwrap();
        for m in [0o644, 0o640, 0o604, 0o660] {
            mode(m);
            let e = Secret::File(file.clone()).resolve(&l).unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.contains(&format!("run: chmod 600 {}", file.display())),
                "{m:o}: {shown}"
            );
            assert!(!shown.contains("s3cret"), "{shown}");
            assert_eq!(Error::from(e).kind(), ErrorKind::InsecureConfig);
        }
        mode(0o600);
        let src = Secret::File(file.clone());
        assert_eq!(src.resolve(&l).unwrap().as_deref(), Some("s3cret pw"));
        // Read at each use: a rotated password is picked up.
        std::fs::write(&file, "rotated").unwrap();
        assert_eq!(src.resolve(&l).unwrap().as_deref(), Some("rotated"));
        std::fs::write(&file, "\nlater").unwrap();
        assert!(matches!(
            src.resolve(&l),
            Err(SecretError::FileEmpty { .. })
        ));
        let e = Secret::File(dir.join("missing")).resolve(&l).unwrap_err();
        assert_eq!(Error::from(e).kind(), ErrorKind::FileUnreadable);
        assert!(!format!("{src:?}{src}").contains("rotated"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn netrc_source_reads_home_then_system() {
        let dir = std::env::temp_dir().join(format!("postie-secret-{}", std::process::id()));
        let home = dir.join("home");
        let etc = dir.join("etc");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(home.join(".netrc"), "machine a login u password home\n").unwrap();
        std::fs::set_permissions(
            home.join(".netrc"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(etc.join("netrc"), "machine b login u password sys\n").unwrap();
        let env = Env {
            home: Some(home),
            sysconfdir: etc,
            ..Default::default()
        };
        let l = |host| Lookup {
            host,
            user: Some("u"),
            service: "smtp",
            env: &env,
        };
        assert_eq!(
            Secret::Netrc.resolve(&l("a")).unwrap().as_deref(),
            Some("home")
        );
        assert_eq!(
            Secret::Netrc.resolve(&l("b")).unwrap().as_deref(),
            Some("sys")
        );
        assert_eq!(Secret::Netrc.resolve(&l("c")).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
