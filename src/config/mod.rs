//! Config readers (native TOML, msmtprc, fetchmailrc), file discovery and the secret-file
//! permission rule; the loaded accounts and msmtp's account selection (`-a`, envelope-from,
//! `default`).

pub mod discover;
pub mod fetchmailrc;
pub mod msmtprc;
pub mod toml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use crate::account::keys::{MAX_SECONDS, check_seconds};

use crate::account::keys::{self, KeyError};
use crate::account::matching::from_matches;
use crate::account::{Account, Env, Provenance, SettingError, SubmitSettings};
use crate::error::{Error, ErrorKind};

/// Largest configuration file read (msmtprc, TOML, fetchmailrc, netrc, aliases, PEM files):
/// far above any real one, and a bound on what a file named with `-C` (`/dev/zero`, a huge
/// log) can make postie allocate.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Opens a configuration or secret file for reading, refusing anything but a regular file
/// (and `/dev/null`, the conventional empty file): a FIFO would block the read forever, a
/// terminal would wait for typing, a directory fails later with a confusing error. The open
/// itself does not block on a FIFO (`O_NONBLOCK`), and the type is checked on the very file
/// opened, so a path swapped between a check and the open cannot slip one past.
pub fn open_regular_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    regular_file_only(file, true)
}

/// The check of [`open_regular_file`] on a file opened otherwise (opened with `O_NONBLOCK`,
/// so that the open itself did not wait on a FIFO): `file` back if it is a regular file, or
/// `/dev/null` when `allow_null_device`; else an error (kind `InvalidInput`) saying what it is.
pub fn regular_file_only(
    file: std::fs::File,
    allow_null_device: bool,
) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = file.metadata()?;
    let kind = meta.file_type();
    let is_null_device = kind.is_char_device()
        && rustix::fs::major(meta.rdev()) == 1
        && rustix::fs::minor(meta.rdev()) == 3;
    if kind.is_file() || (allow_null_device && is_null_device) {
        // A regular file ignores O_NONBLOCK, so reads behave as with a plain open.
        return Ok(file);
    }
    let what = if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file"),
    ))
}

/// Reads the text of a configuration file, at most [`MAX_CONFIG_BYTES`]: a larger file is an
/// error (kind `InvalidData`, naming the bound) after reading one byte past the bound, never a
/// read to the end.
pub fn read_bounded_text(reader: impl std::io::Read) -> std::io::Result<String> {
    read_text_at_most(reader, MAX_CONFIG_BYTES)
}

/// [`read_bounded_text`] for files that need not be text (PEM files are checked by their
/// parser).
pub fn read_bounded_bytes(reader: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    read_bytes_at_most(reader, MAX_CONFIG_BYTES)
}

/// The text `reader` gives, at most `max` bytes of it: for files smaller than a configuration
/// file can be (a lock file, `/etc/mailname`, resolv.conf), with the errors of
/// [`read_bounded_text`].
pub fn read_text_at_most(reader: impl std::io::Read, max: u64) -> std::io::Result<String> {
    read_bytes_at_most(reader, max).and_then(|bytes| {
        String::from_utf8(bytes).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file is not UTF-8 text",
            )
        })
    })
}

/// The bytes `reader` gives, at most `max`: more is an error (kind `InvalidData`, naming the
/// bound) after reading one byte past it.
pub fn read_bytes_at_most(reader: impl std::io::Read, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file is larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// Where in a file something went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: u32,
    pub column: Option<u32>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)?;
        if let Some(c) = self.column {
            write!(f, ":{c}")?;
        }
        Ok(())
    }
}

/// What kind of configuration failure (decides the crate [`ErrorKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// Syntax error, bad value, unknown directive or account.
    Invalid,
    /// A file holding a password is readable by others or owned by someone else.
    Insecure,
    /// A file the user named explicitly cannot be read.
    Unreadable,
}

/// A configuration error, citing file:line (and column for TOML) where there is one.
#[derive(Debug)]
pub struct ConfigError {
    pub kind: ConfigErrorKind,
    pub location: Option<Location>,
    pub message: String,
    pub source: Option<std::io::Error>,
}

impl ConfigError {
    pub fn invalid(location: Option<Location>, message: impl Into<String>) -> Self {
        ConfigError {
            kind: ConfigErrorKind::Invalid,
            location,
            message: message.into(),
            source: None,
        }
    }

    /// An error at `path:line`.
    pub fn at(path: &Path, line: u32, message: impl Into<String>) -> Self {
        Self::invalid(
            Some(Location {
                path: path.to_owned(),
                line,
                column: None,
            }),
            message,
        )
    }

    pub fn unreadable(path: &Path, source: std::io::Error) -> Self {
        ConfigError {
            kind: ConfigErrorKind::Unreadable,
            location: None,
            message: format!("cannot read {}", path.display()),
            source: Some(source),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.location {
            write!(f, "{l}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        let kind = match e.kind {
            ConfigErrorKind::Invalid => ErrorKind::Config,
            ConfigErrorKind::Insecure => ErrorKind::InsecureConfig,
            ConfigErrorKind::Unreadable => ErrorKind::FileUnreadable,
        };
        let context = e.to_string();
        match e.source {
            Some(io) => Error::with_source(kind, context, io),
            None => Error::new(kind, context),
        }
    }
}

impl From<SettingError> for ConfigError {
    fn from(e: SettingError) -> Self {
        let location = match &e.at {
            Some(Provenance::File { path, line }) => Some(Location {
                path: path.clone(),
                line: *line,
                column: None,
            }),
            _ => None,
        };
        let message = match &e.at {
            Some(p @ (Provenance::CommandLine | Provenance::Builtin)) => {
                format!("{}: {}", p, e.message)
            }
            _ => e.message,
        };
        ConfigError::invalid(location, message)
    }
}

/// The permission rule for a file that holds a secret (an inline password; `passwordeval`
/// does not count): it must belong to the effective user and have no group/other permission
/// bits. Applied to user files whatever the euid (also as root, unlike msmtp); never to
/// system files such as `/etc/msmtprc`, which must be readable by every sender.
pub fn check_secret_file(path: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| ConfigError::unreadable(path, e))?;
    check_secret_meta(path, &meta)
}

fn check_secret_meta(path: &Path, meta: &std::fs::Metadata) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let euid = rustix::process::geteuid().as_raw();
    check_secret_permissions(path, meta.uid(), meta.mode(), euid)
}

/// The pure part of [`check_secret_file`].
pub fn check_secret_permissions(
    path: &Path,
    owner: u32,
    mode: u32,
    euid: u32,
) -> Result<(), ConfigError> {
    let file = path.display();
    let perms = mode & 0o7777;
    let message = if owner != euid {
        format!(
            "{file} contains a password and is owned by uid {owner}, not by uid {euid}; \
             run: chown {euid} {file} && chmod 600 {file}"
        )
    } else if perms & 0o077 != 0 {
        format!(
            "{file} contains a password and is readable by others (mode {perms:04o}); \
             run: chmod 600 {file}"
        )
    } else {
        return Ok(());
    };
    Err(insecure(message))
}

/// The rule for a file that makes us run commands (`eval`, `passwordeval`, `mda`): nobody but
/// its owner may write it, and the owner is the effective user or root. Whoever can write such
/// a file runs commands as us. Readable by all is fine (msmtp accepts a 0644 file whose password
/// comes from `passwordeval`, and users depend on that). Applied to system files too: a
/// group-writable `/etc/msmtprc` with an `eval` line lets that group run commands as every
/// sender.
pub fn check_command_permissions(
    path: &Path,
    owner: u32,
    mode: u32,
    euid: u32,
) -> Result<(), ConfigError> {
    let file = path.display();
    let perms = mode & 0o7777;
    let message = if owner != euid && owner != 0 {
        format!(
            "{file} holds commands to run (eval, passwordeval or mda) and is owned by uid \
             {owner}, not by uid {euid} or root; run: chown {euid} {file} && chmod go-w {file}"
        )
    } else if perms & 0o022 != 0 {
        format!(
            "{file} holds commands to run (eval, passwordeval or mda) and is writable by others \
             (mode {perms:04o}); run: chmod go-w {file}"
        )
    } else {
        return Ok(());
    };
    Err(insecure(message))
}

fn check_command_meta(path: &Path, meta: &std::fs::Metadata) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let euid = rustix::process::geteuid().as_raw();
    check_command_permissions(path, meta.uid(), meta.mode(), euid)
}

fn insecure(message: String) -> ConfigError {
    ConfigError {
        kind: ConfigErrorKind::Insecure,
        location: None,
        message,
        source: None,
    }
}

/// Accounts loaded from one or more files, in priority order, and where they were looked for.
#[derive(Debug, Clone, Default)]
pub struct AccountSet {
    pub accounts: Vec<Account>,
    /// Every file consulted or looked for, for "not found" messages.
    pub searched: Vec<PathBuf>,
    /// Files actually read.
    pub loaded: Vec<PathBuf>,
    /// The fallback account name (`default`).
    pub default_name: String,
}

/// How [`AccountSet::select`] chose the account (for `--pretend` and debug output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectedBy {
    /// `-a NAME`.
    Name,
    /// The envelope-from matched the account's `from`.
    EnvelopeFrom,
    /// The fallback account.
    Default,
}

impl AccountSet {
    pub fn new() -> Self {
        AccountSet {
            default_name: "default".to_owned(),
            ..Default::default()
        }
    }

    pub fn find(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// The first account whose `from` matches `address` (msmtp: the first one wins, so user
    /// accounts before system accounts).
    pub fn by_envelope_from(&self, address: &str, env: &Env) -> Option<&Account> {
        self.accounts.iter().find(|a| {
            a.submit
                .as_ref()
                .and_then(|s| s.from_address(env))
                .is_some_and(|pattern| from_matches(&pattern, address))
        })
    }

    /// msmtp's choice: `-a NAME`; else the account matching the envelope-from; else `default`.
    pub fn select(
        &self,
        name: Option<&str>,
        envelope_from: Option<&str>,
        env: &Env,
    ) -> Result<(&Account, SelectedBy), ConfigError> {
        if let Some(name) = name {
            return self
                .find(name)
                .map(|a| (a, SelectedBy::Name))
                .ok_or_else(|| self.not_found(name));
        }
        if let Some(addr) = envelope_from.filter(|a| !a.is_empty())
            && let Some(a) = self.by_envelope_from(addr, env)
        {
            return Ok((a, SelectedBy::EnvelopeFrom));
        }
        self.find(&self.default_name)
            .map(|a| (a, SelectedBy::Default))
            .ok_or_else(|| self.not_found(&self.default_name))
    }

    fn not_found(&self, name: &str) -> ConfigError {
        let list = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let message = if self.loaded.is_empty() {
            format!(
                "account {name} not found: no configuration file available (looked for: {})",
                list(&self.searched)
            )
        } else {
            format!(
                "account {name} not found (looked in: {})",
                list(&self.loaded)
            )
        };
        ConfigError::invalid(None, message)
    }
}

/// Applies command-line options over an account's submit settings (or over
/// `SubmitSettings::default()` for `--host` mode). Keys are msmtprc directive names
/// (`--tls-starttls=off` is `("tls_starttls", "off")`); the provenance is "command line".
/// Returns the warnings for options accepted but ignored.
pub fn apply_command_line(
    settings: &mut SubmitSettings,
    options: &[(&str, &str)],
    env: &Env,
) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    for (key, arg) in options {
        match keys::set_submit(settings, key, arg, &Provenance::CommandLine, env) {
            Ok(Some(w)) => warnings.push(w),
            Ok(None) => {}
            Err(KeyError::Unknown) => {
                return Err(ConfigError::invalid(
                    None,
                    format!("unknown setting {key} (a bug in the option table)"),
                ));
            }
            Err(KeyError::Invalid(m)) => {
                return Err(ConfigError::invalid(
                    None,
                    format!("--{}: {m}", key.replace('_', "-")),
                ));
            }
        }
    }
    Ok(warnings)
}

/// msmtp's user file: `~/.msmtprc` if it exists, else `$XDG_CONFIG_HOME/msmtp/config`.
pub fn msmtp_user_file(env: &Env) -> Option<PathBuf> {
    let home_rc = env.home.as_ref().map(|h| h.join(".msmtprc"));
    if let Some(rc) = &home_rc
        && rc.exists()
    {
        return Some(rc.clone());
    }
    env.config_home()
        .map(|c| c.join("msmtp").join("config"))
        .or(home_rc)
}

/// msmtp's system file (`/etc/msmtprc`).
pub fn msmtp_system_file(env: &Env) -> PathBuf {
    env.sysconfdir.join("msmtprc")
}

/// Reads a config file and the metadata of the very file read (the permission rules judge what
/// was read, not whatever the path names a moment later): `Ok(None)` if it does not exist and
/// was not named explicitly.
fn read_config_file(
    path: &Path,
    explicit: bool,
) -> Result<Option<(String, std::fs::Metadata)>, ConfigError> {
    let file = match open_regular_file(path) {
        Ok(f) => f,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConfigError::unreadable(path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| ConfigError::unreadable(path, e))?;
    let text = read_bounded_text(file).map_err(|e| ConfigError::unreadable(path, e))?;
    Ok(Some((text, meta)))
}

/// Loads msmtp's files as msmtp does, running `eval` lines through `sh -c`.
pub fn load_msmtprc(env: &Env, file: Option<&Path>) -> Result<AccountSet, ConfigError> {
    load_msmtprc_with(env, file, &mut msmtprc::run_eval)
}

/// [`load_msmtprc`] with an injectable `eval` runner. `file` is `-C FILE` (replaces the user
/// file; unreadable is an error). The system file is read if readable and silently ignored
/// otherwise; user accounts come first, then system accounts the user file does not define.
pub fn load_msmtprc_with(
    env: &Env,
    file: Option<&Path>,
    eval: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<AccountSet, ConfigError> {
    let mut set = AccountSet::new();
    let user_path = match file {
        Some(f) => Some(f.to_owned()),
        None => msmtp_user_file(env),
    };
    if let Some(path) = &user_path {
        set.searched.push(path.clone());
        if let Some((text, meta)) = read_config_file(path, file.is_some())? {
            read_msmtprc_text(&mut set, &text, &meta, path, env, eval)?;
        }
    }
    add_msmtp_system_file(&mut set, env, eval)?;
    Ok(set)
}

/// Reads the msmtprc user file `path`, which must be readable.
pub fn load_msmtprc_user(
    env: &Env,
    path: &Path,
    eval: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<AccountSet, ConfigError> {
    let mut set = AccountSet::new();
    set.searched.push(path.to_owned());
    if let Some((text, meta)) = read_config_file(path, true)? {
        read_msmtprc_text(&mut set, &text, &meta, path, env, eval)?;
    }
    Ok(set)
}

/// Reads one msmtprc user file's text; `meta` is the metadata of the very file read. Both
/// permission rules are decided before the first `eval` line runs.
fn read_msmtprc_text(
    set: &mut AccountSet,
    text: &str,
    meta: &std::fs::Metadata,
    path: &Path,
    env: &Env,
    eval: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<(), ConfigError> {
    let scan = msmtprc::scan(text);
    if scan.commands {
        check_command_meta(path, meta)?;
    }
    if scan.password {
        check_secret_meta(path, meta)?;
    }
    let parsed = msmtprc::parse(text, path, env, eval)?;
    if parsed.has_password {
        // A `password` line an `eval` line produced.
        check_secret_meta(path, meta)?;
    }
    check_oauth_auth(&parsed.accounts)?;
    parsed.log_warnings();
    set.loaded.push(path.to_owned());
    set.accounts.extend(parsed.accounts);
    Ok(())
}

/// A password `auth` beside `oauth_provider` would send the token as the password
/// ([`crate::account::ServerSettings::check_oauth_auth`]): refused when the file is read.
fn check_oauth_auth(accounts: &[Account]) -> Result<(), ConfigError> {
    for acc in accounts {
        if let Some(s) = &acc.submit {
            s.server.check_oauth_auth()?;
        }
    }
    Ok(())
}

/// Adds the system file's accounts the user file does not define, when the file is readable
/// (msmtp ignores an unreadable system file).
pub fn add_msmtp_system_file(
    set: &mut AccountSet,
    env: &Env,
    eval: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<(), ConfigError> {
    let system = msmtp_system_file(env);
    set.searched.push(system.clone());
    match read_config_file(&system, true) {
        Ok(Some((text, meta))) => {
            if msmtprc::scan(&text).commands {
                check_command_meta(&system, &meta)?;
            }
            let parsed = msmtprc::parse(&text, &system, env, eval)?;
            check_oauth_auth(&parsed.accounts)?;
            parsed.log_warnings();
            set.loaded.push(system.clone());
            for acc in parsed.accounts {
                if set.find(&acc.name).is_none() {
                    set.accounts.push(acc);
                }
            }
        }
        Ok(None) => {}
        Err(e) => log::debug!("not reading {}: {e}", system.display()),
    }
    Ok(())
}

/// The native config file: `$XDG_CONFIG_HOME/postie/config.toml` (default
/// `~/.config/postie/config.toml`).
pub fn toml_file(env: &Env) -> Option<PathBuf> {
    env.config_home()
        .map(|c| c.join("postie").join("config.toml"))
}

/// Loads the native TOML config: `file` (`-C/--file`, must be readable), else the default
/// path if it exists (an absent default file gives an empty set).
pub fn load_toml(env: &Env, file: Option<&Path>) -> Result<AccountSet, ConfigError> {
    let mut set = AccountSet::new();
    let Some(path) = file.map(Path::to_owned).or_else(|| toml_file(env)) else {
        return Ok(set);
    };
    set.searched.push(path.clone());
    let Some((text, meta)) = read_config_file(&path, file.is_some())? else {
        return Ok(set);
    };
    // Parsing runs nothing; the commands it finds run only after these checks.
    let parsed = toml::parse(&text, &path, env)?;
    if parsed.has_command {
        check_command_meta(&path, &meta)?;
    }
    if parsed.has_password {
        check_secret_meta(&path, &meta)?;
    }
    set.loaded.push(path);
    if let Some(d) = parsed.default_account {
        set.default_name = d;
    }
    set.accounts = parsed.accounts;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Sourced;
    use crate::net::TlsMode;

    #[test]
    fn permission_rule_table() {
        let p = Path::new("/h/.msmtprc");
        let cases: &[(u32, u32, u32, bool)] = &[
            (1000, 0o100600, 1000, true),
            (1000, 0o100400, 1000, true),
            (1000, 0o100644, 1000, false),
            (1000, 0o100640, 1000, false),
            (1000, 0o100604, 1000, false),
            (1000, 0o100600, 0, false),
            (0, 0o100600, 0, true),
            (0, 0o100644, 0, false),
        ];
        for (owner, mode, euid, ok) in cases {
            let r = check_secret_permissions(p, *owner, *mode, *euid);
            assert_eq!(r.is_ok(), *ok, "{owner} {mode:o} {euid}");
            if let Err(e) = r {
                assert_eq!(e.kind, ConfigErrorKind::Insecure);
                assert!(e.message.contains("chmod 600 /h/.msmtprc"), "{}", e.message);
            }
        }
        let e = check_secret_permissions(p, 0, 0o100644, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/h/.msmtprc contains a password and is readable by others (mode 0644); run: chmod 600 /h/.msmtprc"
        );
        assert_eq!(Error::from(e).kind(), ErrorKind::InsecureConfig);
    }

    #[test]
    fn command_file_rule_table() {
        let p = Path::new("/h/.msmtprc");
        // (owner, mode, euid, accepted)
        let cases: &[(u32, u32, u32, bool)] = &[
            (1000, 0o100644, 1000, true),
            (1000, 0o100600, 1000, true),
            (0, 0o100644, 1000, true),
            (1000, 0o100664, 1000, false),
            (1000, 0o100646, 1000, false),
            (0, 0o100664, 1000, false),
            (1001, 0o100644, 1000, false),
        ];
        for (owner, mode, euid, ok) in cases {
            let r = check_command_permissions(p, *owner, *mode, *euid);
            assert_eq!(r.is_ok(), *ok, "{owner} {mode:o} {euid}");
            if let Err(e) = r {
                assert_eq!(e.kind, ConfigErrorKind::Insecure);
                assert!(
                    e.message.contains("chmod go-w /h/.msmtprc"),
                    "{}",
                    e.message
                );
            }
        }
    }

    fn account(name: &str, from: Option<&str>) -> Account {
        let s = SubmitSettings {
            from: from.map(|f| Sourced::new(f.to_owned(), Provenance::Builtin)),
            ..Default::default()
        };
        Account {
            name: name.into(),
            defined_at: Provenance::Builtin,
            submit: Some(s),
            fetch: None,
        }
    }

    #[test]
    fn selection_order() {
        let env = Env {
            user: Some("carol".into()),
            ..Default::default()
        };
        let mut set = AccountSet::new();
        set.loaded.push("/u/rc".into());
        set.accounts = vec![
            account("work", Some("*@work.example")),
            account("me", Some("%U@home.example")),
            account("default", Some("x@y")),
            account("work2", Some("bob@work.example")),
        ];
        let pick = |n: Option<&str>, f: Option<&str>| {
            set.select(n, f, &env).map(|(a, by)| (a.name.clone(), by))
        };
        assert_eq!(
            pick(Some("me"), Some("bob@work.example")).unwrap(),
            ("me".into(), SelectedBy::Name)
        );
        assert_eq!(
            pick(None, Some("bob+x@work.example")).unwrap(),
            ("work".into(), SelectedBy::EnvelopeFrom)
        );
        assert_eq!(
            pick(None, Some("Carol@HOME.example")).unwrap(),
            ("me".into(), SelectedBy::EnvelopeFrom)
        );
        assert_eq!(
            pick(None, Some("z@z")).unwrap(),
            ("default".into(), SelectedBy::Default)
        );
        assert_eq!(
            pick(None, None).unwrap(),
            ("default".into(), SelectedBy::Default)
        );
        let e = pick(Some("nope"), None).unwrap_err();
        assert_eq!(e.to_string(), "account nope not found (looked in: /u/rc)");
        let empty = AccountSet {
            searched: vec!["/h/.msmtprc".into(), "/etc/msmtprc".into()],
            ..AccountSet::new()
        };
        let e = empty.select(None, None, &env).unwrap_err();
        assert!(
            e.to_string().contains(
                "no configuration file available (looked for: /h/.msmtprc, /etc/msmtprc)"
            ),
            "{e}"
        );
    }

    #[test]
    fn command_line_overrides() {
        let env = Env::default();
        let mut s = SubmitSettings::default();
        s.server.host = Some(Sourced::new("mx".into(), Provenance::file("/rc", 2)));
        let w = apply_command_line(
            &mut s,
            &[
                ("tls", "on"),
                ("tls_starttls", "off"),
                ("port", "2465"),
                ("tls_priorities", "x"),
            ],
            &env,
        )
        .unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(s.tls_mode(), TlsMode::Implicit);
        assert_eq!(s.port(), Some(2465));
        assert_eq!(s.server.port.as_ref().unwrap().at, Provenance::CommandLine);
        let e = apply_command_line(&mut s, &[("tls_starttls", "maybe")], &env).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--tls-starttls: invalid argument"),
            "{e}"
        );
    }

    #[test]
    fn setting_error_cites_file_line() {
        let e: ConfigError = SettingError::new(Some(&Provenance::file("/rc", 4)), "no host").into();
        assert_eq!(e.to_string(), "/rc:4: no host");
        let e: ConfigError = SettingError::new(Some(&Provenance::CommandLine), "bad").into();
        assert_eq!(e.to_string(), "command line: bad");
    }

    /// A config file larger than the bound is refused without being read whole: a file
    /// named with `-C` can be anything (`/dev/zero`, a multi-gigabyte log), and reading it
    /// into memory would exhaust it.
    #[test]
    fn oversized_config_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("postie-config-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let env = Env {
            home: Some(dir.clone()),
            sysconfdir: dir.join("etc"),
            ..Default::default()
        };
        let big = "# padding padding padding padding padding padding padding padding\n"
            .repeat((MAX_CONFIG_BYTES as usize) / 60);
        let msmtprc = dir.join("msmtprc");
        std::fs::write(&msmtprc, format!("{big}account a\nhost h\nfrom a@b\n")).unwrap();
        let toml = dir.join("c.toml");
        std::fs::write(&toml, format!("{big}[accounts.a]\nhost = \"h\"\n")).unwrap();
        for e in [
            load_msmtprc_with(&env, Some(&msmtprc), &mut |_| Ok(String::new())).unwrap_err(),
            load_toml(&env, Some(&toml)).unwrap_err(),
        ] {
            let shown = Error::from(e).chain();
            assert!(shown.contains("larger than"), "{shown}");
        }
        assert!(
            !discover::toml_configures(discover::Program::Rsend, &toml, &env),
            "an oversized file configures nothing"
        );
        for dev in ["/dev/zero", "/dev/urandom"] {
            let dev = Path::new(dev);
            let e = load_msmtprc_with(&env, Some(dev), &mut |_| Ok(String::new())).unwrap_err();
            assert!(e.to_string().contains(dev.to_str().unwrap()), "{e}");
            assert!(load_toml(&env, Some(dev)).is_err());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn msmtprc_password_auth_with_oauth_is_refused() {
        let dir = std::env::temp_dir().join(format!("postie-msmtprc-oauth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let env = Env {
            home: Some(dir.clone()),
            sysconfdir: dir.join("etc"),
            ..Default::default()
        };
        let rc = dir.join("msmtprc");
        std::fs::write(
            &rc,
            "account a\nhost h\nfrom a@b\nuser u\noauth_provider google\noauth_client_id c\nauth login\n",
        )
        .unwrap();
        let e = load_msmtprc_with(&env, Some(&rc), &mut |_| Ok(String::new())).unwrap_err();
        assert!(
            e.to_string()
                .contains("msmtprc:7: auth login with oauth_provider"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
