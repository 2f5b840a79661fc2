//! The msmtprc reader: msmtp's syntax exactly (`command [argument]` lines, `#` comments, double
//! quotes, `~`, `defaults`, `account NAME : A,B`, the implicit `default` account, `eval`), as a
//! pure function over the text; `eval` commands go through an injected runner.
//!
//! One deliberate difference: msmtp refuses lines longer than 500 characters ("line longer
//! than 500 characters"), which bites users who paste OAuth tokens; we accept any length.

use std::path::{Path, PathBuf};

use crate::account::command;
use crate::account::keys::{self, KeyError};
use crate::account::{Account, Env, Provenance, SubmitSettings};

use super::ConfigError;

/// Bound on what an `eval` command may print: the line it stands for (an OAuth token at most)
/// with room to spare; more is an error rather than a silently cut line.
const MAX_EVAL_OUTPUT: usize = 64 * 1024;

pub use crate::config::fetchmailrc::Support;
use Support::{Implemented as I, Refused as R, Warned as W};

/// Every msmtp 1.8 msmtprc directive and what rsend does with it: implemented (in
/// `account::keys`), refused (an error naming the file, line and why: ignoring it would weaken
/// the connection's protection or change the sender), or warned (a warning saying what rsend
/// does instead). `tests/msmtp_support.rs` walks them all.
pub const MSMTPRC_DIRECTIVES: &[(&str, Support)] = &[
    ("defaults", I),
    ("account", I),
    ("eval", I),
    ("host", I),
    ("port", I),
    ("source_ip", I),
    ("proxy_host", I),
    ("proxy_port", I),
    ("socket", I),
    ("timeout", I),
    ("connect_timeout", I),
    ("protocol", I),
    ("domain", I),
    ("auth", I),
    ("user", I),
    ("password", I),
    ("passwordeval", I),
    ("ntlmdomain", W("obsolete: rsend has no NTLM")),
    ("tls", I),
    ("tls_starttls", I),
    ("tls_nostarttls", I),
    ("tls_trust_file", I),
    (
        "tls_crl_file",
        R(
            "rsend does not read certificate revocation lists; ignoring it would accept a revoked certificate",
        ),
    ),
    ("tls_fingerprint", I),
    ("tls_certcheck", I),
    ("tls_nocertcheck", I),
    ("tls_key_file", I),
    ("tls_cert_file", I),
    (
        "tls_priorities",
        W("rsend uses rustls's choices: TLS 1.2 and 1.3 with forward-secret AEAD ciphers only"),
    ),
    ("tls_host_override", I),
    (
        "tls_min_dh_prime_bits",
        W("rustls does not use finite-field Diffie-Hellman at all"),
    ),
    // msmtp itself ignores it, silently; so does rsend.
    ("tls_force_sslv3", I),
    ("from", I),
    ("from_full_name", I),
    ("allow_from_override", I),
    ("dsn_notify", I),
    ("dsn_return", I),
    ("set_from_header", I),
    ("add_missing_from_header", I),
    ("set_date_header", I),
    ("add_missing_date_header", I),
    ("set_msgid_header", I),
    ("set_to_header", I),
    ("undisclosed_recipients", I),
    ("remove_bcc_headers", I),
    ("keepbcc", I),
    ("logfile", I),
    ("logfile_time_format", I),
    ("syslog", I),
    ("aliases", I),
    (
        "auto_from",
        R(
            "rsend does not build the envelope-from from the user name; ignoring it would send from another address (write from %U@%M; auto_from off is accepted)",
        ),
    ),
    (
        "maildomain",
        W("obsolete: it only served auto_from; use from with %M"),
    ),
];

/// What rsend does with the msmtprc directive `name`.
pub fn directive_support(name: &str) -> Option<Support> {
    MSMTPRC_DIRECTIVES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
}

/// One msmtprc file, parsed.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    pub path: PathBuf,
    /// In file order.
    pub accounts: Vec<Account>,
    /// The file has a `password` line (so the permission rule applies to it).
    pub has_password: bool,
    /// Directives accepted but ignored, with file:line.
    pub warnings: Vec<String>,
}

impl ParsedFile {
    /// Sends the warnings to the log.
    pub fn log_warnings(&self) {
        for w in &self.warnings {
            log::warn!("{w}");
        }
    }
}

/// One explicitly written setting, replayed when another account inherits it.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    arg: String,
    at: Provenance,
}

struct Building {
    name: String,
    defined_at: Provenance,
    settings: SubmitSettings,
    /// Settings written for this account or inherited from a parent (not from `defaults`):
    /// what a child copies (msmtp copies only explicitly set fields).
    explicit: Vec<Entry>,
}

enum Section {
    /// Before any `defaults` or `account` line.
    Start,
    Defaults,
    Account(usize),
}

/// Splits a line into command and argument, honouring double quotes (`\"` and `\\` escape).
/// `Ok(None)` for blank lines and comments.
fn split_line(line: &str) -> Result<Option<(&str, String)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (cmd, rest) = match line.find(char::is_whitespace) {
        Some(i) => line.split_at(i),
        None => (line, ""),
    };
    let rest = rest.trim();
    let Some(quoted) = rest.strip_prefix('"') else {
        return Ok(Some((cmd, rest.to_owned())));
    };
    let mut arg = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, n)) => arg.push(n),
                None => return Err("unterminated quoted argument".into()),
            },
            '"' => {
                let after = quoted.get(i + 1..).unwrap_or("");
                if !after.trim().is_empty() {
                    return Err(format!("text after the closing quote: {:?}", after.trim()));
                }
                return Ok(Some((cmd, arg)));
            }
            c => arg.push(c),
        }
    }
    Err("unterminated quoted argument".into())
}

/// What a file holds, found without running anything: the permission rules are decided on this
/// before the first `eval` line runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scan {
    /// A `password` line (a secret written in the file).
    pub password: bool,
    /// An `eval` or `passwordeval` line (a command this file makes us run).
    pub commands: bool,
}

/// Scans msmtprc text for `password`, `eval` and `passwordeval` lines. Lines that do not split
/// (bad quoting) are skipped here; [`parse`] reports them.
pub fn scan(text: &str) -> Scan {
    let mut found = Scan::default();
    for line in text.lines() {
        match split_line(line) {
            Ok(Some(("password", _))) => found.password = true,
            Ok(Some(("eval" | "passwordeval", _))) => found.commands = true,
            _ => {}
        }
    }
    found
}

/// Parses msmtprc text. `path` is used for provenance and messages only; `eval` runs an
/// `eval` command and returns the line that replaces it.
pub fn parse(
    text: &str,
    path: &Path,
    env: &Env,
    eval: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<ParsedFile, ConfigError> {
    let mut defaults = SubmitSettings::default();
    let mut accounts: Vec<Building> = Vec::new();
    let mut section = Section::Start;
    let mut has_password = false;
    let mut warnings = Vec::new();

    for (index, raw) in text.lines().enumerate() {
        let line_no = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let err = |msg: String| ConfigError::at(path, line_no, msg);
        let at = Provenance::file(path, line_no);

        let Some((mut cmd, mut arg)) = split_line(raw).map_err(&err)? else {
            continue;
        };
        let evaluated;
        if cmd == "eval" {
            if arg.is_empty() {
                return Err(err("eval needs a command".into()));
            }
            evaluated = eval(&arg).map_err(|e| err(format!("eval {arg}: {e}")))?;
            match split_line(&evaluated).map_err(&err)? {
                None => continue,
                Some(("eval", _)) => return Err(err("eval produced another eval line".into())),
                Some((c, a)) => {
                    cmd = c;
                    arg = a;
                }
            }
        }

        match cmd {
            "defaults" => {
                if !arg.is_empty() {
                    return Err(err("defaults takes no argument".into()));
                }
                section = Section::Defaults;
            }
            "account" => {
                let (name, parents) = match arg.split_once(':') {
                    Some((n, p)) => (n.trim(), Some(p)),
                    None => (arg.trim(), None),
                };
                if name.is_empty() {
                    return Err(err("account needs a name".into()));
                }
                if name.contains(',') {
                    return Err(err(format!(
                        "account name {name:?} must not contain ',' or ':'"
                    )));
                }
                if let Some(first) = accounts.iter().find(|a| a.name == name) {
                    return Err(err(format!(
                        "account {name} was already defined at {}",
                        first.defined_at
                    )));
                }
                let mut acc = Building {
                    name: name.to_owned(),
                    defined_at: at.clone(),
                    settings: defaults.clone(),
                    explicit: Vec::new(),
                };
                for parent in parents.into_iter().flat_map(|p| p.split(',')) {
                    let parent = parent.trim();
                    if parent.is_empty() {
                        return Err(err(format!(
                            "account {name}: empty name in inheritance list"
                        )));
                    }
                    let Some(src) = accounts.iter().find(|a| a.name == parent) else {
                        return Err(err(format!(
                            "account {name} inherits from {parent}, which is not (yet) defined"
                        )));
                    };
                    for e in &src.explicit {
                        // Already validated where it was written; cannot fail here.
                        let _ = keys::set_submit(&mut acc.settings, &e.key, &e.arg, &e.at, env);
                    }
                    acc.explicit.extend(src.explicit.iter().cloned());
                }
                accounts.push(acc);
                section = Section::Account(accounts.len() - 1);
            }
            _ => {
                if matches!(section, Section::Start) {
                    // Settings before any account form the account `default` (msmtp 1.2
                    // compatibility).
                    accounts.push(Building {
                        name: "default".to_owned(),
                        defined_at: at.clone(),
                        settings: defaults.clone(),
                        explicit: Vec::new(),
                    });
                    section = Section::Account(accounts.len() - 1);
                }
                let target = match section {
                    Section::Account(i) => accounts.get_mut(i),
                    _ => None,
                };
                let settings = match &target {
                    Some(a) => &a.settings,
                    None => &defaults,
                };
                // `auto_from off` asks for what rsend does; on, it is refused.
                if let Some(Support::Refused(why)) = directive_support(cmd)
                    && !(cmd == "auto_from" && arg == "off")
                {
                    return Err(err(format!("{cmd} is refused: {why}")));
                }
                let mut scratch = settings.clone();
                match keys::set_submit(&mut scratch, cmd, &arg, &at, env) {
                    Ok(warning) => {
                        if let Some(w) = warning {
                            // The table says what rsend does instead, in one wording.
                            match directive_support(cmd) {
                                Some(Support::Warned(instead)) => warnings
                                    .push(format!("{at}: {cmd} is ignored by rsend: {instead}")),
                                // `auto_from off`: nothing to warn about.
                                Some(Support::Refused(_)) => {}
                                _ => warnings.push(format!("{at}: {w}")),
                            }
                        }
                    }
                    Err(KeyError::Unknown) => {
                        return Err(err(format!("unknown command {cmd}")));
                    }
                    Err(KeyError::Invalid(m)) => return Err(err(m)),
                }
                if cmd == "password" || cmd == "proxy_password" {
                    has_password = true;
                }
                match target {
                    Some(acc) => {
                        acc.settings = scratch;
                        acc.explicit.push(Entry {
                            key: cmd.to_owned(),
                            arg,
                            at,
                        });
                    }
                    None => defaults = scratch,
                }
            }
        }
    }

    Ok(ParsedFile {
        path: path.to_owned(),
        accounts: accounts
            .into_iter()
            .map(|b| Account {
                name: b.name,
                defined_at: b.defined_at,
                submit: Some(b.settings),
                fetch: None,
            })
            .collect(),
        has_password,
        warnings,
    })
}

/// The real `eval` runner: `sh -c CMD` with stdin closed, at most 64 KiB of output and
/// [`command::DEFAULT_TIMEOUT`]; the first line of its stdout.
pub fn run_eval(command: &str) -> Result<String, String> {
    let limits = command::Limits {
        max_output: MAX_EVAL_OUTPUT,
        timeout: command::DEFAULT_TIMEOUT,
    };
    let out = command::run(command, limits).map_err(|e| {
        use std::error::Error as _;
        match e.source() {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        }
    })?;
    let text = String::from_utf8_lossy(&out);
    Ok(text.lines().next().unwrap_or("").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{AuthSetting, Secret};
    use crate::net::TlsMode;

    fn env() -> Env {
        Env {
            home: Some("/home/u".into()),
            ..Default::default()
        }
    }

    fn no_eval(_: &str) -> Result<String, String> {
        Err("eval not expected".into())
    }

    fn parse_ok(text: &str) -> ParsedFile {
        match parse(text, Path::new("/rc"), &env(), &mut no_eval) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match parse(text, Path::new("/rc"), &env(), &mut no_eval) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn acc<'a>(p: &'a ParsedFile, name: &str) -> &'a SubmitSettings {
        match p.accounts.iter().find(|a| a.name == name) {
            Some(a) => a.submit.as_ref().unwrap(),
            None => panic!("no account {name}"),
        }
    }

    fn host(s: &SubmitSettings) -> Option<&str> {
        s.server.host()
    }

    #[test]
    fn line_syntax_table() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("", None),
            ("   ", None),
            ("# comment", None),
            ("   # indented comment", None),
            ("host mx", Some(("host", "mx"))),
            ("  host\tmx  ", Some(("host", "mx"))),
            ("tls", Some(("tls", ""))),
            ("password a#b c", Some(("password", "a#b c"))),
            (
                "password \"a \\\"q\\\" \\\\ b\"",
                Some(("password", "a \"q\" \\ b")),
            ),
            ("password \"\"", Some(("password", ""))),
            ("from  \"x@y\"  ", Some(("from", "x@y"))),
        ];
        for (line, want) in cases {
            let got = split_line(line).unwrap();
            let got = got.as_ref().map(|(c, a)| (*c, a.as_str()));
            assert_eq!(got, *want, "{line:?}");
        }
        assert!(split_line("password \"abc").is_err());
        assert!(split_line("password \"a\" b").is_err());
        assert!(split_line("password \"a\\").is_err());
    }

    #[test]
    fn defaults_apply_to_following_accounts_only_in_order() {
        let p = parse_ok(
            "defaults\nhost d1\nport 2525\naccount a\naccount b\nhost bhost\ndefaults\nhost d2\naccount c\n",
        );
        assert_eq!(host(acc(&p, "a")), Some("d1"));
        assert_eq!(acc(&p, "a").port(), Some(2525));
        assert_eq!(host(acc(&p, "b")), Some("bhost"));
        assert_eq!(host(acc(&p, "c")), Some("d2"));
        assert_eq!(acc(&p, "c").port(), Some(2525), "defaults accumulate");
        assert_eq!(p.accounts.len(), 3);
        let names: Vec<_> = p.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn implicit_default_account() {
        let p = parse_ok("host old\nport 26\naccount x\nhost xh\n");
        assert_eq!(host(acc(&p, "default")), Some("old"));
        assert_eq!(acc(&p, "default").port(), Some(26));
        assert_eq!(
            acc(&p, "x").port(),
            Some(25),
            "implicit default is not defaults"
        );
        assert_eq!(p.accounts[0].defined_at, Provenance::file("/rc", 1));
        let e = parse_err("host old\naccount default\n");
        assert!(
            e.contains("/rc:2: account default was already defined at /rc:1"),
            "{e}"
        );
    }

    #[test]
    fn inheritance_copies_explicit_fields_in_order() {
        let p = parse_ok(
            "defaults\ntls on\nport 1\n\
             account a\nhost ha\nuser ua\n\
             account b\nhost hb\nauth plain\n\
             defaults\ntls off\nport 2\n\
             account c : a, b\nuser uc\n\
             account default : c\n",
        );
        let c = acc(&p, "c");
        assert_eq!(host(c), Some("hb"), "b after a");
        assert_eq!(c.server.user(), Some("uc"), "own lines after parents");
        assert_eq!(c.server.auth(), AuthSetting::Method("PLAIN".into()));
        // tls came from the first defaults into a and b, but only as a default: c gets the
        // defaults current at its own definition.
        assert_eq!(c.tls_mode(), TlsMode::Off);
        assert_eq!(c.port(), Some(2));
        let d = acc(&p, "default");
        assert_eq!(host(d), Some("hb"));
        assert_eq!(d.server.user(), Some("uc"));
        assert_eq!(
            d.server.user.as_ref().unwrap().at,
            Provenance::file("/rc", 14),
            "provenance survives inheritance"
        );
    }

    #[test]
    fn account_errors() {
        let cases: &[(&str, &str)] = &[
            ("account\n", "/rc:1: account needs a name"),
            (
                "account a,b\n",
                "/rc:1: account name \"a,b\" must not contain",
            ),
            (
                "account a\naccount a\n",
                "/rc:2: account a was already defined at /rc:1",
            ),
            (
                "account a : b\n",
                "/rc:1: account a inherits from b, which is not (yet) defined",
            ),
            (
                "account a\naccount b : a,\n",
                "/rc:2: account b: empty name in inheritance list",
            ),
            ("defaults x\n", "/rc:1: defaults takes no argument"),
            ("\n\naccount a\nhots mx\n", "/rc:4: unknown command hots"),
            (
                "account a\nport many\n",
                "/rc:2: invalid argument \"many\" for port",
            ),
            (
                "account a\ntls_fingerprint 00:11\n",
                "/rc:2: invalid tls_fingerprint",
            ),
        ];
        for (text, want) in cases {
            let e = parse_err(text);
            assert!(e.starts_with(want), "{text:?}: got {e:?}");
        }
    }

    #[test]
    fn sha1_and_md5_fingerprints_are_accepted_with_a_warning() {
        use crate::net::{LegacyPin, Trust};
        for (pairs, algorithm) in [(20, "SHA-1"), (16, "MD5")] {
            let fp = vec!["0a"; pairs].join(":");
            let p = parse_ok(&format!("account a\ntls_fingerprint {fp}\n"));
            let s = acc(&p, "a");
            assert_eq!(
                s.server.tls_fingerprint_legacy.as_ref().map(|l| l.value),
                LegacyPin::parse(&fp)
            );
            assert_eq!(
                s.server.trust(),
                Ok(Trust::LegacyFingerprint(LegacyPin::parse(&fp).unwrap()))
            );
            assert!(
                p.warnings.iter().any(|w| w.starts_with(&format!(
                    "/rc:2: tls_fingerprint is {algorithm}, a digest that can be forged"
                ))),
                "{:?}",
                p.warnings
            );
            // A later SHA-256 replaces it, and the other way round.
            let sha256 = ["0b"; 32].join(":");
            let p = parse_ok(&format!(
                "account a\ntls_fingerprint {fp}\ntls_fingerprint {sha256}\n"
            ));
            assert_eq!(
                acc(&p, "a").server.trust(),
                Ok(Trust::Fingerprint([0x0b; 32]))
            );
            let p = parse_ok(&format!(
                "account a\ntls_fingerprint {sha256}\ntls_fingerprint {fp}\n"
            ));
            assert!(matches!(
                acc(&p, "a").server.trust(),
                Ok(Trust::LegacyFingerprint(_))
            ));
        }
    }

    #[test]
    fn password_marks_file_and_passwordeval_does_not() {
        assert!(parse_ok("account a\npassword x\n").has_password);
        assert!(parse_ok("defaults\npassword x\n").has_password);
        assert!(!parse_ok("account a\npasswordeval pass x\n").has_password);
        let p = parse_ok("account a\npassword \"p w\"\n");
        assert_eq!(
            acc(&p, "a").server.password.as_ref().unwrap().value,
            Secret::Inline("p w".into())
        );
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let p = parse_ok("account a\nhost h\npassword hunter2\n");
        let dump = format!("{:?} {:#?}", p, p.accounts);
        assert!(!dump.contains("hunter2"), "{dump}");
        assert!(dump.contains("<redacted>"));
    }

    #[test]
    fn long_lines_are_accepted() {
        let token = "x".repeat(4000);
        let p = parse_ok(&format!("account a\npassword {token}\n"));
        assert_eq!(
            acc(&p, "a").server.password.as_ref().unwrap().value,
            Secret::Inline(token)
        );
    }

    #[test]
    fn ignored_directives_warn_with_location() {
        let p = parse_ok("account a\ntls_priorities x\ntls_force_sslv3\n");
        assert_eq!(p.warnings.len(), 1);
        assert!(
            p.warnings[0].starts_with("/rc:2: tls_priorities is ignored by rsend: "),
            "{:?}",
            p.warnings
        );
        // A revocation list rsend cannot check is refused, not ignored.
        let e = parse_err("account a\ntls_crl_file x\n");
        assert!(e.starts_with("/rc:2: tls_crl_file is refused: "), "{e}");
    }

    #[test]
    fn proxy_directives_configure_a_socks5_route() {
        let p = parse_ok("account a\nhost mail.example\nproxy_host 127.0.0.1\n");
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let proxy = acc(&p, "a").server.proxy().unwrap();
        assert_eq!(proxy.endpoint.port, 1080);
        assert_eq!(proxy.credentials, None);
        let p = parse_ok(
            "account a\nproxy_host socks.lan\nproxy_port 9050\nproxy_user u\nproxy_password pw\n",
        );
        assert!(
            p.has_password,
            "proxy_password makes the file a secret file"
        );
        let proxy = acc(&p, "a").server.proxy().unwrap();
        assert_eq!(proxy.endpoint.host, "socks.lan");
        assert_eq!(proxy.endpoint.port, 9050);
        assert_eq!(proxy.credentials.unwrap().password, "pw");
        let p = parse_ok("account a\nproxy_host socks\nproxy_host\n");
        assert!(acc(&p, "a").server.proxy().is_none());
    }

    #[test]
    fn eval_replaces_the_line() {
        let calls = std::cell::RefCell::new(Vec::new());
        let mut runner = |cmd: &str| {
            calls.borrow_mut().push(cmd.to_owned());
            match cmd {
                "echo host $MSMTP_HOST" => Ok("host from-eval".to_owned()),
                "echo" => Ok(String::new()),
                "again" => Ok("eval x".to_owned()),
                "broken" => Ok("bogus directive".to_owned()),
                _ => Err("command failed (exit status: 1)".to_owned()),
            }
        };
        let p = parse(
            "account a\neval echo host $MSMTP_HOST\neval echo\naccount unused\neval \"echo\"\n",
            Path::new("/rc"),
            &env(),
            &mut runner,
        )
        .unwrap();
        assert_eq!(host(acc(&p, "a")), Some("from-eval"));
        assert_eq!(
            *calls.borrow(),
            ["echo host $MSMTP_HOST", "echo", "echo"],
            "every eval runs, even in unused accounts"
        );
        for (text, want) in [
            ("eval false\n", "/rc:1: eval false: command failed"),
            ("eval again\n", "/rc:1: eval produced another eval line"),
            ("account a\neval broken\n", "/rc:2: unknown command bogus"),
            ("eval\n", "/rc:1: eval needs a command"),
        ] {
            let e = parse(text, Path::new("/rc"), &env(), &mut runner).unwrap_err();
            assert!(e.to_string().starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn real_eval_runner_takes_first_line() {
        assert_eq!(run_eval("printf 'host a\\nhost b\\n'").unwrap(), "host a");
        assert!(run_eval("exit 2").is_err());
    }

    #[test]
    fn tilde_expansion_in_file_arguments() {
        let p = parse_ok("account a\ntls_trust_file ~/ca.pem\naliases ~/al\nfrom ~x@y\n");
        let a = acc(&p, "a");
        assert_eq!(a.aliases(), Some(Path::new("/home/u/al")));
        assert_eq!(
            a.from.as_ref().unwrap().value,
            "~x@y",
            "only file names expand"
        );
    }
}
