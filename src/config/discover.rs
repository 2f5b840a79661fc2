//! Which configuration file rsend and rfetch read: the one ordered table both binaries use, the
//! messages naming the file chosen and the files looked for, and the warning when a file that
//! would configure the binary exists but is not read.
//!
//! The order, for both binaries:
//!
//! 1. the file named on the command line (rsend `-C/--file`; rfetch `-f/--fetchmailrc` or
//!    `-C/--config`);
//! 2. the binary's classic rc file, as msmtp and fetchmail find it (rsend: `~/.msmtprc`, else
//!    `$XDG_CONFIG_HOME/msmtp/config`; rfetch: `$FETCHMAILHOME/fetchmailrc` when
//!    `FETCHMAILHOME` is set, else `~/.fetchmailrc`);
//! 3. the native `$XDG_CONFIG_HOME/postie/config.toml`.
//!
//! The first that exists is the one user file read; rsend also reads the system file
//! `/etc/msmtprc`, as msmtp does. The classic rc comes before the TOML because postie is a
//! drop-in: someone who replaces msmtp or fetchmail keeps the file that already works, and a
//! TOML written later (or by another tool) must not silently take its mail somewhere else.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::account::Env;
use crate::error::{Error, ErrorKind};

use super::{AccountSet, ConfigError};

/// Which binary is looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Rsend,
    Rfetch,
}

/// How a configuration file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Msmtprc,
    Fetchmailrc,
    Toml,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Msmtprc => "msmtprc",
            Format::Fetchmailrc => "fetchmailrc",
            Format::Toml => "postie TOML",
        })
    }
}

/// Why a file is a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Named with this option.
    CommandLine(&'static str),
    /// The binary's classic rc file (msmtp's or fetchmail's own location).
    Classic,
    /// postie's native file.
    Native,
}

/// One configuration file and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub format: Format,
    pub origin: Origin,
}

impl ConfigFile {
    /// A file named on the command line with `option`.
    pub fn explicit(path: PathBuf, format: Format, option: &'static str) -> Self {
        ConfigFile {
            path,
            format,
            origin: Origin::CommandLine(option),
        }
    }
}

impl fmt::Display for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.path.display(), self.format)?;
        match self.origin {
            Origin::CommandLine(o) => write!(f, ", given with {o})"),
            Origin::Classic | Origin::Native => f.write_str(")"),
        }
    }
}

/// The candidates of `program` after the command line, in the order they are tried.
/// `fetchmailhome` is `$FETCHMAILHOME` (it replaces `~/.fetchmailrc`, as in fetchmail).
pub fn table(program: Program, env: &Env, fetchmailhome: Option<&Path>) -> Vec<ConfigFile> {
    let classic = |path: PathBuf, format| ConfigFile {
        path,
        format,
        origin: Origin::Classic,
    };
    let mut out = Vec::new();
    match program {
        Program::Rsend => {
            if let Some(h) = &env.home {
                out.push(classic(h.join(".msmtprc"), Format::Msmtprc));
            }
            if let Some(c) = env.config_home() {
                out.push(classic(c.join("msmtp").join("config"), Format::Msmtprc));
            }
        }
        Program::Rfetch => match (fetchmailhome, &env.home) {
            (Some(fh), _) => out.push(classic(fh.join("fetchmailrc"), Format::Fetchmailrc)),
            (None, Some(h)) => out.push(classic(h.join(".fetchmailrc"), Format::Fetchmailrc)),
            (None, None) => {}
        },
    }
    if let Some(c) = env.config_home() {
        out.push(ConfigFile {
            path: c.join("postie").join("config.toml"),
            format: Format::Toml,
            origin: Origin::Native,
        });
    }
    out
}

/// The outcome of the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub program: Program,
    /// The user file to read: the command line's, else the first candidate that exists.
    pub chosen: Option<ConfigFile>,
    /// Every candidate in order (the command line's first), for "looked for" messages.
    pub looked_for: Vec<ConfigFile>,
    /// Candidates that exist but are not read.
    pub unused: Vec<ConfigFile>,
    /// rsend's system file, read in addition to the user file when readable.
    pub system: Option<PathBuf>,
}

/// Applies the order to `explicit` (the file named on the command line, if any) and `table`.
pub fn choose(
    program: Program,
    explicit: Option<ConfigFile>,
    table: Vec<ConfigFile>,
    system: Option<PathBuf>,
    exists: &dyn Fn(&Path) -> bool,
) -> Discovery {
    let mut looked_for: Vec<ConfigFile> = explicit.iter().cloned().collect();
    let mut chosen = explicit;
    let mut unused = Vec::new();
    for c in table {
        // -C ~/.msmtprc names a candidate: it is the chosen file, not an unused one
        if chosen.as_ref().is_some_and(|ch| ch.path == c.path) {
            continue;
        }
        if exists(&c.path) {
            if chosen.is_none() {
                chosen = Some(c.clone());
            } else {
                unused.push(c.clone());
            }
        }
        looked_for.push(c);
    }
    Discovery {
        program,
        chosen,
        looked_for,
        unused,
        system,
    }
}

/// The search as the process sees it (`$FETCHMAILHOME`, the file system).
pub fn discover(program: Program, explicit: Option<ConfigFile>, env: &Env) -> Discovery {
    let fetchmailhome = std::env::var_os("FETCHMAILHOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let system = (program == Program::Rsend).then(|| super::msmtp_system_file(env));
    choose(
        program,
        explicit,
        table(program, env, fetchmailhome.as_deref()),
        system,
        &|p: &Path| p.exists(),
    )
}

impl Discovery {
    /// "A, B, C": the files looked for, in order, the system file last.
    pub fn looked_for_list(&self) -> String {
        let mut names: Vec<String> = self
            .looked_for
            .iter()
            .map(|c| c.path.display().to_string())
            .collect();
        if let Some(s) = &self.system {
            names.push(s.display().to_string());
        }
        names.join(", ")
    }

    /// Makes a configuration error name the files this search reads: the chosen file and,
    /// for rsend, the system file when it exists (see [`name_file`]).
    pub fn name_in_error(&self, e: Error, exists: &dyn Fn(&Path) -> bool) -> Error {
        let Some(chosen) = &self.chosen else {
            return e;
        };
        let mut paths = vec![chosen.path.as_path()];
        let mut label = chosen.to_string();
        if let Some(s) = self.system.as_deref().filter(|s| exists(s)) {
            paths.push(s);
            label.push_str(&format!(" and {}", s.display()));
        }
        name_files(e, &paths, &label)
    }

    /// The error when there is nothing to read.
    pub fn nothing_found(&self) -> String {
        format!(
            "no configuration file found (looked for, in this order: {})",
            self.looked_for_list()
        )
    }

    /// Tells the user about files that exist but are not read. A file named on the command
    /// line was chosen deliberately, so the others are only mentioned at -v. Without one, a
    /// classic rc left unread, or a TOML file that `configures` says holds accounts for this
    /// binary, is a warning: the user wrote it for this program and it is being ignored. A TOML
    /// file holding only the other binary's accounts (rfetch's accounts beside an ~/.msmtprc
    /// used by rsend) is expected and mentioned only at -v.
    pub fn report_unused(&self, configures: &dyn Fn(&ConfigFile) -> bool) {
        let Some(chosen) = &self.chosen else {
            return;
        };
        let explicit = matches!(chosen.origin, Origin::CommandLine(_));
        for u in &self.unused {
            let line = format!(
                "{} exists but is not read: {} comes first{}",
                u.path.display(),
                chosen.path.display(),
                match self.program {
                    Program::Rsend => " (to use it: rsend -C FILE)",
                    Program::Rfetch => match u.format {
                        Format::Toml => " (to use it: rfetch -C FILE)",
                        _ => " (to use it: rfetch -f FILE)",
                    },
                }
            );
            if !explicit && (u.origin == Origin::Classic || configures(u)) {
                log::warn!("{line}");
            } else {
                log::info!("{line}");
            }
        }
    }
}

/// Makes a configuration error name the file it is about: a configuration error whose text
/// does not already contain the file's path gets "configuration FILE: " in front. Other errors
/// are returned as they are.
pub fn name_file(e: Error, file: &ConfigFile) -> Error {
    name_files(e, &[file.path.as_path()], &file.to_string())
}

/// [`name_file`] for several files: `label` names them all, and an error that already names
/// one of `paths` is left alone.
fn name_files(e: Error, paths: &[&Path], label: &str) -> Error {
    let chain = e.chain();
    match e.kind() {
        ErrorKind::Config | ErrorKind::InsecureConfig
            if !paths
                .iter()
                .any(|p| chain.contains(&p.display().to_string())) =>
        {
            e.context(format!("configuration {label}"))
        }
        _ => e,
    }
}

/// Whether the TOML file at `path` defines an account for `program` (a submit part for rsend,
/// a fetch part for rfetch). A file that cannot be read or parsed counts as not configuring:
/// it is not the one being used, so its errors are not this run's errors.
pub fn toml_configures(program: Program, path: &Path, env: &Env) -> bool {
    let Ok(text) = super::open_regular_file(path).and_then(super::read_bounded_text) else {
        return false;
    };
    let Ok(parsed) = super::toml::parse(&text, path, env) else {
        return false;
    };
    parsed.accounts.iter().any(|a| match program {
        Program::Rsend => a.submit.is_some(),
        Program::Rfetch => a.fetch.is_some(),
    })
}

/// rsend's `-C FILE`: a TOML file when its name ends in `.toml`, else an msmtprc.
pub fn rsend_explicit(path: PathBuf) -> ConfigFile {
    let format = if path.extension().is_some_and(|e| e == "toml") {
        Format::Toml
    } else {
        Format::Msmtprc
    };
    ConfigFile::explicit(path, format, "-C")
}

/// rsend's configuration: `-C FILE` (read as TOML when it ends in `.toml`) or the first file of
/// the table, then the system file; user accounts first, then system accounts the user file
/// does not define. `eval` runs msmtprc `eval` lines.
pub fn load_rsend_with(
    env: &Env,
    explicit: Option<&Path>,
    eval: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<(AccountSet, Discovery), ConfigError> {
    let explicit = explicit.map(|p| rsend_explicit(p.to_owned()));
    let found = discover(Program::Rsend, explicit, env);
    found.report_unused(&|c| toml_configures(Program::Rsend, &c.path, env));
    let mut set = match &found.chosen {
        Some(c) => {
            log::info!("reading configuration from {c}");
            match c.format {
                Format::Toml => super::load_toml(env, Some(&c.path))?,
                _ => super::load_msmtprc_user(env, &c.path, eval)?,
            }
        }
        None => AccountSet::new(),
    };
    super::add_msmtp_system_file(&mut set, env, eval)?;
    set.searched = found.looked_for.iter().map(|c| c.path.clone()).collect();
    set.searched.extend(found.system.clone());
    Ok((set, found))
}

/// [`load_rsend_with`] running `eval` lines through `sh -c`.
pub fn load_rsend(
    env: &Env,
    explicit: Option<&Path>,
) -> Result<(AccountSet, Discovery), ConfigError> {
    load_rsend_with(env, explicit, &mut super::msmtprc::run_eval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            home: Some("/h".into()),
            ..Env::default()
        }
    }

    fn paths(v: &[ConfigFile]) -> Vec<&str> {
        v.iter().map(|c| c.path.to_str().unwrap()).collect()
    }

    #[test]
    fn the_tables() {
        let e = env();
        assert_eq!(
            paths(&table(Program::Rsend, &e, None)),
            [
                "/h/.msmtprc",
                "/h/.config/msmtp/config",
                "/h/.config/postie/config.toml"
            ]
        );
        assert_eq!(
            paths(&table(Program::Rfetch, &e, None)),
            ["/h/.fetchmailrc", "/h/.config/postie/config.toml"]
        );
        assert_eq!(
            paths(&table(Program::Rfetch, &e, Some(Path::new("/fm")))),
            ["/fm/fetchmailrc", "/h/.config/postie/config.toml"]
        );
        let xdg = Env {
            xdg_config_home: Some("/x".into()),
            ..env()
        };
        assert_eq!(
            paths(&table(Program::Rsend, &xdg, None))[1..],
            ["/x/msmtp/config", "/x/postie/config.toml"]
        );
    }

    #[test]
    fn classic_rc_beats_the_toml_and_the_command_line_beats_both() {
        let e = env();
        let all = |_: &Path| true;
        let d = choose(
            Program::Rfetch,
            None,
            table(Program::Rfetch, &e, None),
            None,
            &all,
        );
        let chosen = d.chosen.unwrap();
        assert_eq!(chosen.path, Path::new("/h/.fetchmailrc"));
        assert_eq!(chosen.format, Format::Fetchmailrc);
        assert_eq!(paths(&d.unused), ["/h/.config/postie/config.toml"]);

        let only_toml = |p: &Path| p.ends_with("config.toml");
        let d = choose(
            Program::Rsend,
            None,
            table(Program::Rsend, &e, None),
            Some("/etc/msmtprc".into()),
            &only_toml,
        );
        assert_eq!(d.chosen.unwrap().format, Format::Toml);
        assert!(d.unused.is_empty());

        let cl = ConfigFile::explicit("/h/.config/postie/config.toml".into(), Format::Toml, "-C");
        let d = choose(
            Program::Rfetch,
            Some(cl.clone()),
            table(Program::Rfetch, &e, None),
            None,
            &all,
        );
        assert_eq!(d.chosen, Some(cl));
        assert_eq!(
            paths(&d.unused),
            ["/h/.fetchmailrc"],
            "named file not unused"
        );
        assert_eq!(
            paths(&d.looked_for),
            ["/h/.config/postie/config.toml", "/h/.fetchmailrc"]
        );
    }

    #[test]
    fn nothing_found_lists_every_file_in_order() {
        let d = choose(
            Program::Rsend,
            None,
            table(Program::Rsend, &env(), None),
            Some("/etc/msmtprc".into()),
            &|_: &Path| false,
        );
        assert_eq!(d.chosen, None);
        assert_eq!(
            d.nothing_found(),
            "no configuration file found (looked for, in this order: /h/.msmtprc, \
             /h/.config/msmtp/config, /h/.config/postie/config.toml, /etc/msmtprc)"
        );
    }

    #[test]
    fn configuration_errors_name_the_file_once() {
        let f = ConfigFile::explicit("/h/rc".into(), Format::Fetchmailrc, "-f");
        let e = name_file(Error::new(ErrorKind::Config, "bad poll"), &f);
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(
            e.chain(),
            "configuration /h/rc (fetchmailrc, given with -f): bad poll"
        );
        let e = name_file(Error::new(ErrorKind::Config, "/h/rc:3: bad poll"), &f);
        assert_eq!(e.chain(), "/h/rc:3: bad poll");
        let e = name_file(Error::new(ErrorKind::NetworkIo, "refused"), &f);
        assert_eq!(e.chain(), "refused");
        let d = choose(
            Program::Rsend,
            None,
            table(Program::Rsend, &env(), None),
            Some("/etc/msmtprc".into()),
            &|p: &Path| p == Path::new("/h/.msmtprc"),
        );
        let no_host = || Error::new(ErrorKind::Config, "no host is set");
        assert_eq!(
            d.name_in_error(no_host(), &|_: &Path| false).chain(),
            "configuration /h/.msmtprc (msmtprc): no host is set"
        );
        assert_eq!(
            d.name_in_error(no_host(), &|_: &Path| true).chain(),
            "configuration /h/.msmtprc (msmtprc) and /etc/msmtprc: no host is set"
        );
    }

    #[test]
    fn display_names_the_format_and_the_option() {
        let c = ConfigFile::explicit("/a.toml".into(), Format::Toml, "-C");
        assert_eq!(c.to_string(), "/a.toml (postie TOML, given with -C)");
        let t = table(Program::Rfetch, &env(), None);
        assert_eq!(t[0].to_string(), "/h/.fetchmailrc (fetchmailrc)");
    }
}
