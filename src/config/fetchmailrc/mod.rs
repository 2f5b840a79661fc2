//! The fetchmailrc reader: fetchmail 6.4's run-control grammar (fetchmail(1) "THE RUN CONTROL
//! FILE", rcfile_l.l, rcfile_y.y) plus the 6.5/7.0 keywords, parsed into an AST whose every value
//! remembers its line; the `--configdump` rendering; and the rc-file permission rule.
//!
//! Every keyword is in exactly one set of [`RC_KEYWORDS`]: implemented, refused (an error naming
//! the file, line and why: where ignoring it would be unsafe or would send the mail elsewhere), or
//! warned (an [`RcWarning`] saying what rfetch does instead). Unknown words are errors naming the
//! file, line and word.

use std::path::{Path, PathBuf};

mod ast;
mod dump;
mod keywords;
mod lexer;
pub mod lower;
mod parser;

pub use ast::{
    AuthType, BadHeader, Envelope, FetchmailRc, Globals, LocalName, Located, PollEntry, Protocol,
    RcRefusal, RcSecret, RcWarning, ServerOptions, UserEntry, UserOptions,
};
pub use dump::configdump;
pub use keywords::{RC_KEYWORDS, Support, canonical_keyword, rc_support};
pub use parser::{check_tls_floor, parse_fetchmailrc};

/// Largest rc file read (the bound of every configuration file).
pub const MAX_RC_BYTES: u64 = crate::config::MAX_CONFIG_BYTES;

/// Why an rc file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FetchmailRcError {
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: u32,
        message: String,
    },
    /// Bad ownership or mode (fetchmail exit 6).
    #[error("{}: {reason}", path.display())]
    Insecure { path: PathBuf, reason: String },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<FetchmailRcError> for crate::Error {
    fn from(err: FetchmailRcError) -> Self {
        use crate::ErrorKind;
        match err {
            FetchmailRcError::Syntax { .. } => {
                crate::Error::new(ErrorKind::Config, err.to_string())
            }
            FetchmailRcError::Insecure { .. } => {
                crate::Error::new(ErrorKind::InsecureConfig, err.to_string())
            }
            FetchmailRcError::Read { ref path, .. } => {
                let context = format!("cannot read {}", path.display());
                crate::Error::with_source(ErrorKind::FileUnreadable, context, err)
            }
        }
    }
}

/// fetchmail's `prc_filecheck` as a pure function: the rc file must be a regular file owned by
/// the effective uid with no group or other permission bits (at most 0700). fetchmail applies
/// it whether or not the file holds a password.
pub fn check_rc_mode(
    path: &Path,
    is_regular_file: bool,
    mode: u32,
    owner_uid: u32,
    euid: u32,
) -> Result<(), FetchmailRcError> {
    let insecure = |reason: String| FetchmailRcError::Insecure {
        path: path.to_owned(),
        reason,
    };
    if !is_regular_file {
        return Err(insecure("is not a regular file".into()));
    }
    // The fix-it command ends the message, as for the msmtprc and TOML rules.
    let file = path.display();
    if owner_uid != euid {
        return Err(insecure(format!(
            "must be owned by you (uid {euid}), is owned by uid {owner_uid}; \
             run: chown {euid} {file} && chmod 600 {file}"
        )));
    }
    if mode & 0o077 != 0 {
        return Err(insecure(format!(
            "must have no more than -rwx------ (0700) permissions, has {:04o}; \
             run: chmod 600 {file}",
            mode & 0o7777
        )));
    }
    Ok(())
}

/// Applies [`check_rc_mode`] to a file on disk; `/dev/null` and `-` are exempt (fetchmail).
pub fn check_rc_permissions(path: &Path) -> Result<(), FetchmailRcError> {
    if path == Path::new("/dev/null") || path == Path::new("-") {
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(|source| FetchmailRcError::Read {
        path: path.to_owned(),
        source,
    })?;
    check_rc_meta(path, &meta)
}

fn check_rc_meta(path: &Path, meta: &std::fs::Metadata) -> Result<(), FetchmailRcError> {
    use std::os::unix::fs::MetadataExt;
    if path == Path::new("/dev/null") || path == Path::new("-") {
        return Ok(());
    }
    check_rc_mode(
        path,
        meta.is_file(),
        meta.mode(),
        meta.uid(),
        rustix::process::geteuid().as_raw(),
    )
}

/// Reads, permission-checks and parses the rc file at `path`. The permissions checked are
/// those of the file opened (not of whatever the path names a moment later), and they are
/// checked before anything in it is used: parsing runs no command, and `passwordeval` runs
/// only when a poll needs the password.
pub fn read_fetchmailrc(path: &Path) -> Result<FetchmailRc, FetchmailRcError> {
    use std::io::Read;
    let read_err = |source| FetchmailRcError::Read {
        path: path.to_owned(),
        source,
    };
    let file = crate::config::open_regular_file(path).map_err(read_err)?;
    check_rc_meta(path, &file.metadata().map_err(read_err)?)?;
    let mut text = String::new();
    let n = file
        .take(MAX_RC_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if n as u64 > MAX_RC_BYTES {
        return Err(FetchmailRcError::Syntax {
            path: path.to_owned(),
            line: 1,
            message: format!("file is larger than {MAX_RC_BYTES} bytes"),
        });
    }
    parse_fetchmailrc(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_rule() {
        let p = Path::new("/home/u/.fetchmailrc");
        assert!(check_rc_mode(p, true, 0o100600, 1000, 1000).is_ok());
        assert!(check_rc_mode(p, true, 0o100700, 1000, 1000).is_ok());
        let e = check_rc_mode(p, true, 0o100644, 1000, 1000).unwrap_err();
        assert!(e.to_string().contains("0700"), "{e}");
        assert!(check_rc_mode(p, true, 0o100600, 0, 1000).is_err());
        assert!(check_rc_mode(p, false, 0o040700, 1000, 1000).is_err());
        let ce: crate::Error = e.into();
        assert_eq!(ce.kind(), crate::ErrorKind::InsecureConfig);
    }
}
