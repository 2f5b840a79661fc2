//! The fetchmailrc reader: fetchmail 6.4's run-control grammar (fetchmail(1) "THE RUN CONTROL
//! FILE", rcfile_l.l, rcfile_y.y) plus the 6.5/7.0 keywords, parsed into an AST whose every value
//! remembers its line; the `--configdump` rendering; and the rc-file permission rule.
//!
//! Every keyword is in exactly one set of [`RC_KEYWORDS`]: implemented, refused (an error naming
//! the file, line and why: where ignoring it would be unsafe or would send the mail elsewhere), or
//! warned (an [`RcWarning`] saying what rfetch does instead). Unknown words are errors naming the
//! file, line and word.

use std::fmt;
use std::path::{Path, PathBuf};

/// Largest rc file read (the bound of every configuration file).
pub const MAX_RC_BYTES: u64 = super::MAX_CONFIG_BYTES;

// ---------------------------------------------------------------------------------------------
// AST
// ---------------------------------------------------------------------------------------------

/// A value and the rc-file line it was set on.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub line: u32,
}

/// A password from the rc file. Debug and configdump print `<redacted>`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RcSecret(String);

impl RcSecret {
    pub fn new(s: impl Into<String>) -> Self {
        RcSecret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RcSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `proto`/`protocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Auto,
    Pop2,
    Pop3,
    Imap,
    Apop,
    Rpop,
    Kpop,
    Sdps,
    Etrn,
    Odmr,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Auto => "auto",
            Protocol::Pop2 => "pop2",
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
            Protocol::Apop => "apop",
            Protocol::Rpop => "rpop",
            Protocol::Kpop => "kpop",
            Protocol::Sdps => "sdps",
            Protocol::Etrn => "etrn",
            Protocol::Odmr => "odmr",
        }
    }
}

/// `auth` values (aliases folded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    Any,
    Password,
    KerberosV4,
    KerberosV5,
    Gssapi,
    CramMd5,
    Otp,
    Ntlm,
    Msn,
    External,
    /// `ssh` (6.4), renamed `implicit` in 6.5: no authentication step.
    Implicit,
    OauthBearer,
    Xoauth2,
}

impl AuthType {
    pub fn name(self) -> &'static str {
        match self {
            AuthType::Any => "any",
            AuthType::Password => "password",
            AuthType::KerberosV4 => "kerberos_v4",
            AuthType::KerberosV5 => "kerberos_v5",
            AuthType::Gssapi => "gssapi",
            AuthType::CramMd5 => "cram-md5",
            AuthType::Otp => "otp",
            AuthType::Ntlm => "ntlm",
            AuthType::Msn => "msn",
            AuthType::External => "external",
            AuthType::Implicit => "implicit",
            AuthType::OauthBearer => "oauthbearer",
            AuthType::Xoauth2 => "xoauth2",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "any" => AuthType::Any,
            "password" => AuthType::Password,
            "kerberos_v4" | "kerberos4" | "kerberos" => AuthType::KerberosV4,
            "kerberos_v5" | "kerberos5" => AuthType::KerberosV5,
            "gssapi" => AuthType::Gssapi,
            "cram-md5" | "cram" => AuthType::CramMd5,
            "otp" | "opie" => AuthType::Otp,
            "ntlm" => AuthType::Ntlm,
            "msn" => AuthType::Msn,
            "external" => AuthType::External,
            "ssh" | "implicit" => AuthType::Implicit,
            "oauthbearer" => AuthType::OauthBearer,
            "xoauth2" => AuthType::Xoauth2,
            _ => return None,
        })
    }

    fn implemented(self) -> bool {
        !matches!(
            self,
            AuthType::KerberosV4 | AuthType::KerberosV5 | AuthType::Otp | AuthType::Msn
        )
    }
}

/// `envelope [N] HEADER` / `no envelope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    Disabled,
    Header { skip: u32, name: String },
}

/// `bad-header accept|reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHeader {
    Accept,
    Reject,
}

type Opt<T> = Option<Located<T>>;

/// How a value is written back in rc syntax by [`configdump`].
trait RcValue {
    fn render(&self, keyword: &str) -> String;
}

impl RcValue for bool {
    fn render(&self, kw: &str) -> String {
        match (*self, kw.strip_prefix("set ")) {
            (true, _) => kw.to_owned(),
            (false, Some(name)) => format!("set no {name}"),
            (false, None) => format!("no {kw}"),
        }
    }
}
impl RcValue for u64 {
    fn render(&self, kw: &str) -> String {
        format!("{kw} {self}")
    }
}
impl RcValue for String {
    fn render(&self, kw: &str) -> String {
        format!("{kw} {}", quote(self))
    }
}
impl RcValue for PathBuf {
    fn render(&self, kw: &str) -> String {
        format!("{kw} {}", quote(&self.to_string_lossy()))
    }
}
impl RcValue for Vec<String> {
    fn render(&self, kw: &str) -> String {
        let items: Vec<String> = self.iter().map(|s| quote(s)).collect();
        format!("{kw} {}", items.join(" "))
    }
}
impl RcValue for Vec<i64> {
    fn render(&self, kw: &str) -> String {
        let items: Vec<String> = self.iter().map(i64::to_string).collect();
        format!("{kw} {}", items.join(" "))
    }
}
impl RcValue for RcSecret {
    fn render(&self, kw: &str) -> String {
        format!("{kw} \"<redacted>\"")
    }
}
impl RcValue for Protocol {
    fn render(&self, kw: &str) -> String {
        format!("{kw} {}", self.name())
    }
}
impl RcValue for AuthType {
    fn render(&self, kw: &str) -> String {
        format!("{kw} {}", self.name())
    }
}
impl RcValue for Envelope {
    fn render(&self, kw: &str) -> String {
        match self {
            Envelope::Disabled => format!("no {kw}"),
            Envelope::Header { skip: 0, name } => format!("{kw} {}", quote(name)),
            Envelope::Header { skip, name } => format!("{kw} {skip} {}", quote(name)),
        }
    }
}
impl RcValue for BadHeader {
    fn render(&self, kw: &str) -> String {
        match self {
            BadHeader::Accept => format!("{kw} accept"),
            BadHeader::Reject => format!("{kw} reject"),
        }
    }
}

/// Double-quotes a string for rc syntax, escaping what the lexer would otherwise interpret.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\x22"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

macro_rules! option_set {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty => $kw:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name { $($(#[$fm])* pub $field: Opt<$ty>,)* }

        impl $name {
            /// Fills every option not set here from `defaults` (the `defaults` record).
            pub fn inherit(&mut self, defaults: &Self) {
                $( if self.$field.is_none() { self.$field.clone_from(&defaults.$field); } )*
            }

            fn dump(&self, out: &mut String, indent: &str) {
                $( if let Some(v) = &self.$field {
                    out.push_str(indent);
                    out.push_str(&RcValue::render(&v.value, $kw));
                    out.push('\n');
                } )*
            }
        }
    };
}

option_set! {
    /// `set` statements.
    Globals {
        daemon: u64 => "set daemon",
        logfile: PathBuf => "set logfile",
        idfile: PathBuf => "set idfile",
        pidfile: PathBuf => "set pidfile",
        postmaster: String => "set postmaster",
        bouncemail: bool => "set bouncemail",
        spambounce: bool => "set spambounce",
        softbounce: bool => "set softbounce",
        syslog: bool => "set syslog",
        invisible: bool => "set invisible",
        showdots: bool => "set showdots",
        properties: String => "set properties",
    }
}

option_set! {
    /// Server options (between `poll NAME` and the first user description).
    ServerOptions {
        via: String => "via",
        protocol: Protocol => "protocol",
        /// `service S` or `port N`.
        service: String => "service",
        auth: AuthType => "auth",
        timeout: u64 => "timeout",
        envelope: Envelope => "envelope",
        qvirtual: String => "qvirtual",
        aka: Vec<String> => "aka",
        localdomains: Vec<String> => "localdomains",
        interface: String => "interface",
        monitor: String => "monitor",
        plugin: String => "plugin",
        plugout: String => "plugout",
        dns: bool => "dns",
        checkalias: bool => "checkalias",
        uidl: bool => "uidl",
        interval: u64 => "interval",
        tracepolls: bool => "tracepolls",
        principal: String => "principal",
        esmtpname: String => "esmtpname",
        esmtppassword: RcSecret => "esmtppassword",
        bad_header: BadHeader => "bad-header",
    }
}

option_set! {
    /// User options (after `user`, or implicit-user options).
    UserOptions {
        password: RcSecret => "password",
        ssl: bool => "ssl",
        sslproto: String => "sslproto",
        sslcertck: bool => "sslcertck",
        sslcertfile: PathBuf => "sslcertfile",
        sslcertpath: PathBuf => "sslcertpath",
        sslcommonname: String => "sslcommonname",
        sslfingerprint: String => "sslfingerprint",
        sslcert: PathBuf => "sslcert",
        sslkey: PathBuf => "sslkey",
        folders: Vec<String> => "folder",
        smtphosts: Vec<String> => "smtphost",
        lmtp: bool => "lmtp",
        smtpaddress: String => "smtpaddress",
        smtpname: String => "smtpname",
        fetchdomains: Vec<String> => "fetchdomains",
        antispam: Vec<i64> => "antispam",
        mda: String => "mda",
        bsmtp: PathBuf => "bsmtp",
        preconnect: String => "preconnect",
        postconnect: String => "postconnect",
        keep: bool => "keep",
        flush: bool => "flush",
        limitflush: bool => "limitflush",
        fetchall: bool => "fetchall",
        rewrite: bool => "rewrite",
        stripcr: bool => "stripcr",
        forcecr: bool => "forcecr",
        pass8bits: bool => "pass8bits",
        dropstatus: bool => "dropstatus",
        dropdelivered: bool => "dropdelivered",
        mimedecode: bool => "mimedecode",
        idle: bool => "idle",
        limit: u64 => "limit",
        warnings: u64 => "warnings",
        batchlimit: u64 => "batchlimit",
        fetchlimit: u64 => "fetchlimit",
        fetchsizelimit: u64 => "fetchsizelimit",
        fastuidl: u64 => "fastuidl",
        expunge: u64 => "expunge",
        properties: String => "properties",
        // 6.5 / 7.0
        idletimeout: u64 => "idletimeout",
        forceidle: bool => "forceidle",
        sslmode: String => "sslmode",
        sslprotocolversion: String => "sslprotocolversion",
        passwordfile: PathBuf => "passwordfile",
        passwordfd: u64 => "passwordfd",
        passwordeval: String => "passwordeval",
        retrieve_error: String => "retrieve-error",
    }
}

/// One local name of a user description: `loc`, or `'srv'='loc'` (a server-side name mapped to
/// a local one, for multidrop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalName {
    pub server_name: Option<String>,
    pub local: String,
}

/// A user description.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserEntry {
    pub line: u32,
    /// The remote (server) login, when given. See [`UserEntry::remote_name`].
    pub remote: Opt<String>,
    /// Local names (`is`/`to` ... `here`); empty = the invoking user.
    pub locals: Vec<LocalName>,
    /// `*` among the local names: pass unknown names through.
    pub wildcard: bool,
    /// Options given before any `user` keyword (legacy form: the invoking user).
    pub implicit: bool,
    pub options: UserOptions,
}

impl UserEntry {
    /// The login to use: the remote name, else the first local name (fetchmail's rule), else
    /// `None` (the caller uses the invoking user).
    pub fn remote_name(&self) -> Option<&str> {
        self.remote
            .as_ref()
            .map(|r| r.value.as_str())
            .or_else(|| self.locals.first().map(|l| l.local.as_str()))
    }

    /// More than one local name, or `*`: messages are sorted by header inspection.
    pub fn is_multidrop(&self) -> bool {
        self.wildcard || self.locals.len() > 1
    }
}

/// A `poll`/`skip` record, or the `defaults` record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PollEntry {
    /// The poll name (the server's DNS name unless `via` is given).
    pub label: String,
    pub line: u32,
    /// `skip`: parsed, polled only when named on the command line.
    pub skip: bool,
    pub server: ServerOptions,
    pub users: Vec<UserEntry>,
}

impl PollEntry {
    /// The host to connect to: `via` when given, else the label.
    pub fn host(&self) -> &str {
        self.server
            .via
            .as_ref()
            .map_or(self.label.as_str(), |v| v.value.as_str())
    }
}

/// A keyword rfetch accepts but does not act on ([`Support::Warned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcWarning {
    pub path: PathBuf,
    pub line: u32,
    pub keyword: String,
    /// What rfetch does instead.
    pub instead: String,
}

impl fmt::Display for RcWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` is not supported by rfetch and is ignored: {}",
            self.path.display(),
            self.line,
            self.keyword,
            self.instead
        )
    }
}

/// A keyword rfetch refuses ([`Support::Refused`], or a value of an implemented keyword that
/// rfetch cannot honour). The file parses, so `--configdump` can show it, but no poll is built
/// from a file with a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcRefusal {
    pub path: PathBuf,
    pub line: u32,
    /// The keyword as written (`no rewrite`, `set no softbounce`, `sslproto tls1.3`).
    pub keyword: String,
    pub why: String,
}

impl fmt::Display for RcRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` is refused: {}",
            self.path.display(),
            self.line,
            self.keyword,
            self.why
        )
    }
}

/// A parsed fetchmailrc.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FetchmailRc {
    pub source: PathBuf,
    pub globals: Globals,
    pub defaults: Option<PollEntry>,
    /// The poll and skip records as written (without `defaults` applied).
    pub polls: Vec<PollEntry>,
    pub warnings: Vec<RcWarning>,
    pub refusals: Vec<RcRefusal>,
}

impl FetchmailRc {
    /// Every refusal as one configuration error (each on its own line, naming file and line).
    pub fn check_refusals(&self) -> Result<(), crate::Error> {
        if self.refusals.is_empty() {
            return Ok(());
        }
        let all: Vec<String> = self.refusals.iter().map(ToString::to_string).collect();
        Err(crate::Error::new(crate::ErrorKind::Config, all.join("\n")))
    }
}

impl FetchmailRc {
    /// The poll records with the `defaults` record applied: server options, user options, and
    /// a remote name or local names missing from a user description.
    pub fn effective_polls(&self) -> Vec<PollEntry> {
        let Some(defaults) = &self.defaults else {
            return self.polls.clone();
        };
        let mut default_user = UserEntry::default();
        for u in &defaults.users {
            default_user.options.inherit(&u.options);
            if default_user.remote.is_none() {
                default_user.remote.clone_from(&u.remote);
            }
            if default_user.locals.is_empty() {
                default_user.locals.clone_from(&u.locals);
                default_user.wildcard = u.wildcard;
            }
        }
        self.polls
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p.server.inherit(&defaults.server);
                if p.users.is_empty() && !defaults.users.is_empty() {
                    p.users.push(UserEntry {
                        line: p.line,
                        implicit: true,
                        ..UserEntry::default()
                    });
                }
                for u in &mut p.users {
                    u.options.inherit(&default_user.options);
                    if u.remote.is_none() {
                        u.remote.clone_from(&default_user.remote);
                    }
                    if u.locals.is_empty() && !u.wildcard {
                        u.locals.clone_from(&default_user.locals);
                        u.wildcard = default_user.wildcard;
                    }
                }
                p
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// What rfetch does with each keyword
// ---------------------------------------------------------------------------------------------

/// What rfetch does with a fetchmail keyword or command-line option. Every keyword of the
/// grammar and every option of the command line is in exactly one of these sets
/// (`tests/fetchmail_support.rs` walks them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Read and acted on.
    Implemented,
    /// A configuration error naming the file and line: ignoring it would be unsafe or would
    /// change where the mail goes. The text says why.
    Refused(&'static str),
    /// Accepted with one warning per run naming it; the text says what rfetch does instead.
    /// Only for what cannot change what is delivered or how it is protected.
    Warned(&'static str),
}

use Support::{Implemented as I, Refused as R, Warned as W};

const NO_DNS: &str =
    "rfetch matches multidrop domains by name, without DNS lookups; write `no dns`";
const AS_IT_CAME: &str = "rfetch delivers every message byte for byte as the server sent it";

/// Every fetchmailrc keyword (canonical spelling; `set` options as `set NAME`) and what rfetch
/// does with it. A `no KEYWORD` entry classifies the negated form where it differs.
pub const RC_KEYWORDS: &[(&str, Support)] = &[
    ("set daemon", I),
    ("set logfile", I),
    ("set idfile", I),
    ("set pidfile", I),
    ("set postmaster", I),
    ("set bouncemail", I),
    ("set no bouncemail", I),
    (
        "set spambounce",
        W("rfetch sends no report for mail refused with an antispam code"),
    ),
    ("set softbounce", I),
    ("set no softbounce", I),
    ("set syslog", I),
    ("set invisible", I),
    (
        "set showdots",
        W("rfetch shows its progress line only on a terminal"),
    ),
    ("set properties", I),
    // server options
    ("via", I),
    ("protocol", I),
    ("service", I),
    // How `auth` is lowered into the poll belongs to the fetch SASL work.
    ("auth", I),
    ("timeout", I),
    ("envelope", I),
    ("qvirtual", I),
    ("aka", I),
    ("localdomains", I),
    (
        "interface",
        R(
            "rfetch cannot check an interface address before polling; polling anyway could send the login over another network",
        ),
    ),
    (
        "monitor",
        W("rfetch polls whether or not the link saw other traffic"),
    ),
    ("plugin", I),
    ("plugout", I),
    ("dns", R(NO_DNS)),
    ("no dns", I),
    (
        "checkalias",
        R("rfetch matches multidrop domains by name, not by address; write `no checkalias`"),
    ),
    ("no checkalias", I),
    ("uidl", I),
    ("no uidl", W("rfetch always tracks POP3 messages by UIDL")),
    ("interval", I),
    (
        "tracepolls",
        W("rfetch's Received header has no `polling` clause"),
    ),
    ("no tracepolls", I),
    (
        "principal",
        W("only Kerberos IV uses it, and rfetch does not do Kerberos"),
    ),
    (
        "esmtpname",
        R("rfetch does not authenticate to the SMTP listener"),
    ),
    (
        "esmtppassword",
        R("rfetch does not authenticate to the SMTP listener"),
    ),
    ("bad-header", I),
    // user options
    ("password", I),
    ("is", I),
    ("to", I),
    ("here", I),
    ("there", I),
    ("ssl", I),
    ("sslproto", I),
    ("sslcertck", I),
    ("sslcertfile", I),
    ("sslcertpath", I),
    ("sslcommonname", I),
    ("sslfingerprint", I),
    ("sslcert", I),
    ("sslkey", I),
    ("folder", I),
    ("smtphost", I),
    ("lmtp", I),
    ("smtpaddress", I),
    ("smtpname", I),
    (
        "fetchdomains",
        W("only ETRN and ODMR use it, and rfetch refuses those protocols"),
    ),
    ("antispam", I),
    ("mda", I),
    (
        "bsmtp",
        R("rfetch cannot write BSMTP; ignoring it would deliver the mail elsewhere"),
    ),
    ("preconnect", I),
    ("postconnect", I),
    ("keep", I),
    ("flush", I),
    ("limitflush", I),
    ("fetchall", I),
    (
        "rewrite",
        R("rfetch does not rewrite addresses in headers; write `no rewrite`"),
    ),
    ("no rewrite", I),
    ("stripcr", I),
    ("no stripcr", I),
    ("forcecr", I),
    ("no forcecr", I),
    ("pass8bits", I),
    ("no pass8bits", I),
    ("dropstatus", I),
    ("no dropstatus", I),
    ("dropdelivered", I),
    ("no dropdelivered", I),
    ("mimedecode", R(AS_IT_CAME)),
    ("no mimedecode", I),
    ("idle", I),
    ("limit", I),
    (
        "warnings",
        W("rfetch logs an oversized message at every poll that leaves it on the server"),
    ),
    ("batchlimit", I),
    ("fetchlimit", I),
    (
        "fetchsizelimit",
        W("rfetch reads all message sizes with one command"),
    ),
    ("fastuidl", W("rfetch lists all UIDs with one command")),
    ("expunge", I),
    ("properties", I),
    ("idletimeout", I),
    ("forceidle", I),
    ("sslmode", I),
    ("sslprotocolversion", I),
    ("passwordfile", I),
    (
        "passwordfd",
        R("rfetch does not read a password from a file descriptor; use passwordeval or ~/.netrc"),
    ),
    ("passwordeval", I),
    (
        "retrieve-error",
        R("rfetch leaves a message it could not retrieve on the server; this cannot be configured"),
    ),
];

/// The canonical spelling of a keyword alias (fetchmail's lexer aliases).
pub fn canonical_keyword(word: &str) -> &str {
    match word {
        "proto" => "protocol",
        "port" => "service",
        "local" => "localdomains",
        "authenticate" | "preauth" | "preauthenticate" => "auth",
        "user" => "username",
        "pass" => "password",
        "folders" => "folder",
        "smtp" | "smtphosts" => "smtphost",
        "pre" => "preconnect",
        "post" => "postconnect",
        "pass8" => "pass8bits",
        "mimedec" => "mimedecode",
        "server" => "poll",
        w => w,
    }
}

/// What rfetch does with `keyword` (canonical; `set NAME` for globals), given or negated.
/// `None`: not a keyword that takes options.
pub fn rc_support(keyword: &str, negated: bool) -> Option<Support> {
    let find = |k: &str| RC_KEYWORDS.iter().find(|(n, _)| *n == k).map(|(_, s)| *s);
    if negated {
        let neg = match keyword.strip_prefix("set ") {
            Some(name) => format!("set no {name}"),
            None => format!("no {keyword}"),
        };
        if let Some(s) = find(&neg) {
            return Some(s);
        }
    }
    find(keyword)
}

// ---------------------------------------------------------------------------------------------
// Errors and the permission rule
// ---------------------------------------------------------------------------------------------

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
    let file = std::fs::File::open(path).map_err(read_err)?;
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

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum TokKind {
    Word {
        text: String,
        quoted: bool,
    },
    /// `=` in a mapping (`'srv'='loc'`) or after a `set` name.
    Eq,
}

#[derive(Debug, Clone, PartialEq)]
struct Tok {
    kind: TokKind,
    line: u32,
}

fn lex(input: &str, path: &Path) -> Result<Vec<Tok>, FetchmailRcError> {
    let err = |line: u32, message: String| FetchmailRcError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
    let bytes = input.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0usize;
    let mut line = 1u32;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b',' | b';' | b':' => i += 1,
            b'#' => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'\\' if bytes.get(i + 1) == Some(&b'\n') => {
                line += 1;
                i += 2;
            }
            b'=' => {
                toks.push(Tok {
                    kind: TokKind::Eq,
                    line,
                });
                i += 1;
            }
            b'"' | b'\'' => {
                let start_line = line;
                let start = i + 1;
                let mut j = start;
                loop {
                    match bytes.get(j) {
                        None => {
                            return Err(err(start_line, "unterminated quoted string".into()));
                        }
                        Some(&c) if c == b => break,
                        Some(&b'\n') => {
                            line += 1;
                            j += 1;
                        }
                        // An escaped character (`\"` included) never ends the string; `unescape`
                        // turns the pair into the character, as fetchmail's lexer does.
                        Some(&b'\\') => {
                            if bytes.get(j + 1) == Some(&b'\n') {
                                line += 1;
                            }
                            j += 2;
                        }
                        Some(_) => j += 1,
                    }
                }
                let raw = input.get(start..j).unwrap_or_default();
                let text = unescape(raw).map_err(|m| err(start_line, m))?;
                toks.push(Tok {
                    kind: TokKind::Word { text, quoted: true },
                    line: start_line,
                });
                i = j + 1;
            }
            _ => {
                let start = i;
                while bytes.get(i).is_some_and(|&c| {
                    !matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'=' | b';' | b':' | b',')
                }) {
                    i += 1;
                }
                let raw = input.get(start..i).unwrap_or_default();
                let text = unescape(raw).map_err(|m| err(line, m))?;
                toks.push(Tok {
                    kind: TokKind::Word {
                        text,
                        quoted: false,
                    },
                    line,
                });
            }
        }
    }
    Ok(toks)
}

/// fetchmail's `escapes()`: `\n \t \b \r \\`, `\xhh`, `\0oo` octal (the 0 counts as one of
/// three digits), `\nnn` decimal; `\` + newline joins lines; any other `\c` is `c`.
fn unescape(raw: &str) -> Result<String, String> {
    if !raw.contains('\\') {
        return Ok(raw.to_owned());
    }
    let b = raw.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(&e) = b.get(i + 1) else {
            out.push(b'\\');
            break;
        };
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'b' => out.push(8),
            b'r' => out.push(b'\r'),
            b'\n' => {}
            b'x' => {
                let mut v: u32 = 0;
                let mut n = 0;
                while n < 2 {
                    match b.get(i).and_then(|&d| (d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            b'0' => {
                let mut v: u32 = 0;
                let mut n = 0;
                while n < 2 {
                    match b.get(i).and_then(|&d| (d as char).to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            b'1'..=b'9' => {
                let mut v = u32::from(e - b'0');
                let mut n = 1;
                while n < 3 {
                    match b.get(i).and_then(|&d| (d as char).to_digit(10)) {
                        Some(d) => {
                            v = v * 10 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                let byte = u8::try_from(v).map_err(|_| format!("escape \\{v} is above 255"))?;
                out.push(byte);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).map_err(|_| "string escapes do not form valid UTF-8".to_owned())
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

const NOISE: &[&str] = &["and", "with", "has", "wants", "options"];
const STATEMENTS: &[&str] = &["set", "defaults", "poll", "server", "skip"];
const SERVER_KEYWORDS: &[&str] = &[
    "via",
    "protocol",
    "proto",
    "service",
    "port",
    "auth",
    "authenticate",
    "preauth",
    "preauthenticate",
    "timeout",
    "envelope",
    "qvirtual",
    "aka",
    "localdomains",
    "local",
    "interface",
    "monitor",
    "plugin",
    "plugout",
    "dns",
    "checkalias",
    "uidl",
    "interval",
    "tracepolls",
    "principal",
    "esmtpname",
    "esmtppassword",
    "bad-header",
];
const USER_KEYWORDS: &[&str] = &[
    "password",
    "pass",
    "is",
    "to",
    "ssl",
    "sslproto",
    "sslcertck",
    "sslcertfile",
    "sslcertpath",
    "sslcommonname",
    "sslfingerprint",
    "sslcert",
    "sslkey",
    "folder",
    "folders",
    "smtphost",
    "smtphosts",
    "smtp",
    "lmtp",
    "smtpaddress",
    "smtpname",
    "fetchdomains",
    "antispam",
    "mda",
    "bsmtp",
    "preconnect",
    "pre",
    "postconnect",
    "post",
    "keep",
    "flush",
    "limitflush",
    "fetchall",
    "rewrite",
    "stripcr",
    "forcecr",
    "pass8bits",
    "pass8",
    "dropstatus",
    "dropdelivered",
    "mimedecode",
    "mimedec",
    "idle",
    "limit",
    "warnings",
    "batchlimit",
    "fetchlimit",
    "fetchsizelimit",
    "fastuidl",
    "expunge",
    "properties",
    "idletimeout",
    "forceidle",
    "sslmode",
    "sslprotocolversion",
    "passwordfile",
    "passwordfd",
    "passwordeval",
    "retrieve-error",
];
const OTHER_KEYWORDS: &[&str] = &["user", "username", "here", "there", "no"];
/// One-word negations (rcfile_l.l).
const ONE_WORD_NEGATIONS: &[(&str, &str)] = &[
    ("nobouncemail", "bouncemail"),
    ("nouidl", "uidl"),
    ("nocheckalias", "checkalias"),
    ("nodns", "dns"),
    ("noenvelope", "envelope"),
    ("nokeep", "keep"),
    ("noflush", "flush"),
    ("nolimitflush", "limitflush"),
    ("nofetchall", "fetchall"),
    ("norewrite", "rewrite"),
    ("noforcecr", "forcecr"),
    ("nostripcr", "stripcr"),
    ("nopass8", "pass8bits"),
    ("nopass8bits", "pass8bits"),
    ("nodropstatus", "dropstatus"),
    ("nodropdelivered", "dropdelivered"),
    ("nomimedec", "mimedecode"),
    ("nomimedecode", "mimedecode"),
    ("nospambounce", "spambounce"),
    ("noidle", "idle"),
];

fn is_keyword(word: &str) -> bool {
    STATEMENTS.contains(&word)
        || SERVER_KEYWORDS.contains(&word)
        || USER_KEYWORDS.contains(&word)
        || OTHER_KEYWORDS.contains(&word)
        || ONE_WORD_NEGATIONS.iter().any(|(w, _)| *w == word)
}

/// Parses fetchmailrc text. `path` names the file in messages and anchors relative paths
/// (`logfile`, `idfile`, `pidfile`, `bsmtp`, `sslkey`, `sslcert`, `sslcertfile`,
/// `sslcertpath`, `passwordfile`) to the file's directory, as fetchmail does.
pub fn parse_fetchmailrc(text: &str, path: &Path) -> Result<FetchmailRc, FetchmailRcError> {
    let toks = lex(text, path)?;
    let mut p = Parser {
        toks,
        pos: 0,
        path,
        warnings: Vec::new(),
        refusals: Vec::new(),
        second_name_line: None,
    };
    let mut rc = FetchmailRc {
        source: path.to_owned(),
        ..FetchmailRc::default()
    };
    while let Some(tok) = p.peek() {
        let line = tok.line;
        let word = p.keyword_at_peek();
        match word.as_deref() {
            Some("set") => {
                p.bump();
                p.parse_set(&mut rc.globals)?;
            }
            Some("defaults") => {
                p.bump();
                if rc.defaults.is_some() || !rc.polls.is_empty() {
                    return Err(p.error(
                        line,
                        "multiple \"defaults\" records, or \"defaults\" is not the first record",
                    ));
                }
                let mut entry = PollEntry {
                    label: "defaults".into(),
                    line,
                    ..PollEntry::default()
                };
                p.parse_entry(&mut entry)?;
                rc.defaults = Some(entry);
            }
            Some(kw @ ("poll" | "server" | "skip")) => {
                let skip = kw == "skip";
                p.bump();
                let label = p.take_value(kw)?;
                let mut entry = PollEntry {
                    label,
                    line,
                    skip,
                    ..PollEntry::default()
                };
                p.parse_entry(&mut entry)?;
                rc.polls.push(entry);
            }
            _ => {
                let shown = p.describe_peek();
                return Err(p.error(
                    line,
                    format!("expected set, defaults, poll or skip, found {shown}"),
                ));
            }
        }
    }
    rc.warnings = p.warnings;
    rc.refusals = p.refusals;
    Ok(rc)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    path: &'a Path,
    warnings: Vec<RcWarning>,
    refusals: Vec<RcRefusal>,
    /// Line of the second name of the last mapping list, for error messages.
    second_name_line: Option<u32>,
}

/// Which options were given with `no`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Polarity {
    Yes,
    No,
}

impl Parser<'_> {
    fn error(&self, line: u32, message: impl Into<String>) -> FetchmailRcError {
        FetchmailRcError::Syntax {
            path: self.path.to_owned(),
            line,
            message: message.into(),
        }
    }

    fn warn(&mut self, line: u32, keyword: &str, instead: &str) {
        self.warnings.push(RcWarning {
            path: self.path.to_owned(),
            line,
            keyword: keyword.to_owned(),
            instead: instead.to_owned(),
        });
    }

    fn refuse(&mut self, line: u32, keyword: &str, why: &str) {
        self.refusals.push(RcRefusal {
            path: self.path.to_owned(),
            line,
            keyword: keyword.to_owned(),
            why: why.to_owned(),
        });
    }

    /// Applies [`RC_KEYWORDS`] to `keyword` (canonical) as written at `line`: a refused keyword
    /// is recorded as a refusal, a warned one as a warning.
    fn check_support(&mut self, keyword: &str, polarity: Polarity, line: u32) {
        let negated = polarity == Polarity::No;
        let shown = match (negated, keyword.strip_prefix("set ")) {
            (false, _) => keyword.to_owned(),
            (true, Some(name)) => format!("set no {name}"),
            (true, None) => format!("no {keyword}"),
        };
        match rc_support(keyword, negated) {
            Some(Support::Refused(why)) => self.refuse(line, &shown, why),
            Some(Support::Warned(instead)) => self.warn(line, &shown, instead),
            Some(Support::Implemented) | None => {}
        }
    }

    fn last_line(&self) -> u32 {
        self.toks.last().map_or(1, |t| t.line)
    }

    /// The next token, skipping noise words (not in name state).
    fn peek(&mut self) -> Option<&Tok> {
        while let Some(Tok {
            kind: TokKind::Word {
                text,
                quoted: false,
            },
            ..
        }) = self.toks.get(self.pos)
        {
            if NOISE.contains(&text.as_str()) {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.toks.get(self.pos)
    }

    fn peek_line(&mut self) -> u32 {
        let last = self.last_line();
        self.peek().map_or(last, |t| t.line)
    }

    fn bump(&mut self) {
        self.pos += 1;
    }

    /// The keyword at the next (noise-skipped) token, if it is an unquoted keyword.
    fn keyword_at_peek(&mut self) -> Option<String> {
        match self.peek() {
            Some(Tok {
                kind:
                    TokKind::Word {
                        text,
                        quoted: false,
                    },
                ..
            }) if is_keyword(text) => Some(text.clone()),
            _ => None,
        }
    }

    fn describe_peek(&mut self) -> String {
        match self.peek() {
            None => "end of file".into(),
            Some(Tok {
                kind: TokKind::Eq, ..
            }) => "`=`".into(),
            Some(Tok {
                kind: TokKind::Word { text, quoted },
                ..
            }) => {
                if *quoted {
                    format!("string {}", quote(text))
                } else {
                    format!("unknown keyword `{text}`")
                }
            }
        }
    }

    /// The raw next token as a name (NAME state: keywords and noise words are literal).
    fn take_name(&mut self, after: &str) -> Result<String, FetchmailRcError> {
        match self.toks.get(self.pos) {
            Some(Tok {
                kind: TokKind::Word { text, .. },
                ..
            }) => {
                let t = text.clone();
                self.pos += 1;
                Ok(t)
            }
            Some(Tok { line, .. }) => {
                let line = *line;
                Err(self.error(line, format!("expected a name after `{after}`")))
            }
            None => Err(self.error(
                self.last_line(),
                format!("expected a name after `{after}`, found end of file"),
            )),
        }
    }

    /// A value: a quoted string or an unquoted non-keyword word.
    fn take_value(&mut self, after: &str) -> Result<String, FetchmailRcError> {
        let line = self.peek_line();
        match self.peek() {
            Some(Tok {
                kind: TokKind::Word { text, quoted },
                ..
            }) if *quoted || !is_keyword(text) => {
                let t = text.clone();
                self.bump();
                Ok(t)
            }
            _ => {
                let shown = self.describe_peek().replace("unknown keyword", "keyword");
                Err(self.error(
                    line,
                    format!("expected a value after `{after}`, found {shown}"),
                ))
            }
        }
    }

    fn take_number(&mut self, after: &str) -> Result<i64, FetchmailRcError> {
        let line = self.peek_line();
        match self.peek() {
            Some(Tok {
                kind:
                    TokKind::Word {
                        text,
                        quoted: false,
                    },
                ..
            }) if is_number(text) => {
                let text = text.clone();
                let v = text.parse::<i64>().map_err(|_| {
                    self.error(
                        line,
                        format!("number {text} after `{after}` is out of range"),
                    )
                })?;
                self.bump();
                Ok(v)
            }
            _ => {
                let shown = self.describe_peek().replace("unknown keyword", "word");
                Err(self.error(
                    line,
                    format!("expected a number after `{after}`, found {shown}"),
                ))
            }
        }
    }

    fn take_count(&mut self, after: &str) -> Result<u64, FetchmailRcError> {
        let line = self.peek_line();
        let v = self.take_number(after)?;
        u64::try_from(v)
            .map_err(|_| self.error(line, format!("`{after}` needs a non-negative number")))
    }

    /// A number of seconds: a count no larger than [`super::MAX_SECONDS`].
    fn take_seconds(&mut self, after: &str) -> Result<u64, FetchmailRcError> {
        let line = self.peek_line();
        let v = self.take_count(after)?;
        super::check_seconds(v).map_err(|m| self.error(line, format!("`{after}`: {m}")))
    }

    fn peek_is_value(&mut self) -> bool {
        matches!(self.peek(), Some(Tok { kind: TokKind::Word { text, quoted }, .. }) if *quoted || !is_keyword(text))
    }

    fn take_list(&mut self, after: &str) -> Result<Vec<String>, FetchmailRcError> {
        let mut items = vec![self.take_value(after)?];
        while self.peek_is_value() {
            items.push(self.take_value(after)?);
        }
        Ok(items)
    }

    fn resolve(&self, value: String) -> PathBuf {
        let p = PathBuf::from(value);
        if p.is_relative()
            && p.as_os_str() != "-"
            && let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            return dir.join(p);
        }
        p
    }

    /// Reads `no`, a one-word negation, or a plain keyword; returns (canonical keyword,
    /// polarity, line) without consuming anything when the next token is not a keyword.
    fn take_keyword(&mut self) -> Option<(String, Polarity, u32)> {
        let line = self.peek()?.line;
        let kw = self.keyword_at_peek()?;
        if let Some((_, base)) = ONE_WORD_NEGATIONS.iter().find(|(w, _)| *w == kw) {
            self.bump();
            return Some(((*base).to_owned(), Polarity::No, line));
        }
        if kw == "no" {
            let save = self.pos;
            self.bump();
            if let Some(next) = self.keyword_at_peek() {
                self.bump();
                return Some((next, Polarity::No, line));
            }
            self.pos = save;
            return None;
        }
        self.bump();
        Some((kw, Polarity::Yes, line))
    }

    fn parse_set(&mut self, g: &mut Globals) -> Result<(), FetchmailRcError> {
        let line = self.peek_line();
        let mut polarity = Polarity::Yes;
        let mut name = self.take_name("set")?;
        if name == "no" {
            polarity = Polarity::No;
            name = self.take_name("set no")?;
        }
        if let Some((_, base)) = ONE_WORD_NEGATIONS.iter().find(|(w, _)| *w == name) {
            polarity = Polarity::No;
            name = (*base).to_owned();
        }
        if matches!(
            self.toks.get(self.pos),
            Some(Tok {
                kind: TokKind::Eq,
                ..
            })
        ) {
            self.bump();
        }
        if rc_support(&format!("set {name}"), false).is_some() {
            self.check_support(&format!("set {name}"), polarity, line);
        }
        let flag = polarity == Polarity::Yes;
        let boolean_only = |p: &Self, name: &str| -> Result<(), FetchmailRcError> {
            if polarity == Polarity::No {
                Err(p.error(line, format!("`set no {name}` is not valid")))
            } else {
                Ok(())
            }
        };
        match name.as_str() {
            "daemon" => {
                boolean_only(self, &name)?;
                g.daemon = loc(line, self.take_seconds("set daemon")?);
            }
            "logfile" | "idfile" | "pidfile" => {
                boolean_only(self, &name)?;
                let v = self.take_value(&format!("set {name}"))?;
                let v = loc(line, self.resolve(v));
                match name.as_str() {
                    "logfile" => g.logfile = v,
                    "idfile" => g.idfile = v,
                    _ => g.pidfile = v,
                }
            }
            "postmaster" => {
                boolean_only(self, &name)?;
                g.postmaster = loc(line, self.take_name("set postmaster")?);
            }
            "properties" => {
                boolean_only(self, &name)?;
                g.properties = loc(line, self.take_value("set properties")?);
            }
            "bouncemail" => g.bouncemail = loc(line, flag),
            "spambounce" => g.spambounce = loc(line, flag),
            "softbounce" => g.softbounce = loc(line, flag),
            "syslog" => g.syslog = loc(line, flag),
            "invisible" => g.invisible = loc(line, flag),
            "showdots" => g.showdots = loc(line, flag),
            "interface" | "monitor" | "batchlimit" => {
                return Err(self.error(
                    line,
                    format!(
                        "`set {name}` is no longer valid (since fetchmail 2.8 it is a {} option)",
                        if name == "batchlimit" {
                            "user"
                        } else {
                            "server"
                        }
                    ),
                ));
            }
            other => {
                return Err(self.error(line, format!("unknown `set` option `{other}`")));
            }
        }
        Ok(())
    }

    /// Server options, then user descriptions, until the next statement.
    fn parse_entry(&mut self, entry: &mut PollEntry) -> Result<(), FetchmailRcError> {
        loop {
            let Some(tok) = self.peek() else {
                return Ok(());
            };
            let line = tok.line;
            let Some(kw) = self.keyword_at_peek() else {
                let shown = self.describe_peek();
                return Err(self.error(line, format!("unexpected {shown}")));
            };
            if STATEMENTS.contains(&kw.as_str()) {
                return Ok(());
            }
            if kw == "user" || kw == "username" {
                self.bump();
                let user = self.parse_user_head(line)?;
                entry.users.push(user);
                continue;
            }
            let save = self.pos;
            let Some((kw, polarity, line)) = self.take_keyword() else {
                if kw == "no" {
                    return Err(self.error(line, "`no` must be followed by an option name"));
                }
                let shown = self.describe_peek();
                return Err(self.error(line, format!("unexpected {shown}")));
            };
            if SERVER_KEYWORDS.contains(&kw.as_str()) {
                if !entry.users.is_empty() {
                    return Err(self.error(
                        line,
                        format!(
                            "server option `{kw}` after user options (server options must come before the first `user`)"
                        ),
                    ));
                }
                self.parse_server_option(&mut entry.server, &kw, polarity, line)?;
            } else if USER_KEYWORDS.contains(&kw.as_str()) {
                if entry.users.is_empty() {
                    entry.users.push(UserEntry {
                        line,
                        implicit: true,
                        ..UserEntry::default()
                    });
                }
                let Some(user) = entry.users.last_mut() else {
                    return Err(self.error(line, "internal: no user entry"));
                };
                let mut user = std::mem::take(user);
                let r = self.parse_user_option(&mut user, &kw, polarity, line);
                if let Some(slot) = entry.users.last_mut() {
                    *slot = user;
                }
                r?;
            } else if kw == "here" || kw == "there" {
                return Err(self.error(
                    line,
                    format!("`{kw}` without a user name or local names before it"),
                ));
            } else {
                self.pos = save;
                let shown = self.describe_peek();
                return Err(self.error(line, format!("unexpected {shown}")));
            }
        }
    }

    /// After `user`: `NAME [there]`, or `NAME... here`.
    fn parse_user_head(&mut self, line: u32) -> Result<UserEntry, FetchmailRcError> {
        let (names, wildcard) = self.mapping_list("user")?;
        let mut user = UserEntry {
            line,
            ..UserEntry::default()
        };
        match self.keyword_at_peek().as_deref() {
            Some("here") => {
                self.bump();
                user.locals = names;
                user.wildcard = wildcard;
            }
            Some("there") => {
                self.bump();
                user.remote = Some(Located {
                    value: single_name(&names, wildcard)
                        .ok_or_else(|| self.error(line, "`there` needs exactly one name"))?,
                    line,
                });
            }
            _ => {
                user.remote = Some(Located {
                    value: single_name(&names, wildcard).ok_or_else(|| {
                        self.error(
                            self.second_name_line.unwrap_or(line),
                            format!(
                                "unexpected `{}` after the user name (several names after `user` must be followed by `here`)",
                                names.get(1).map_or("*", |n| n.local.as_str())
                            ),
                        )
                    })?,
                    line,
                });
            }
        }
        Ok(user)
    }

    /// Names after `user`/`is`/`to`: the first taken literally, then further non-keyword words,
    /// `a=b` mappings and `*`.
    fn mapping_list(&mut self, after: &str) -> Result<(Vec<LocalName>, bool), FetchmailRcError> {
        self.second_name_line = None;
        let mut names: Vec<LocalName> = Vec::new();
        let mut wildcard = false;
        let first = self.take_name(after)?;
        let mut push = |names: &mut Vec<LocalName>, n: String| {
            if n == "*" {
                wildcard = true;
            } else {
                names.push(LocalName {
                    server_name: None,
                    local: n,
                });
            }
        };
        push(&mut names, first);
        loop {
            if matches!(
                self.toks.get(self.pos),
                Some(Tok {
                    kind: TokKind::Eq,
                    ..
                })
            ) {
                self.bump();
                let local = self.take_name("=")?;
                match names.last_mut() {
                    Some(last) if last.server_name.is_none() => {
                        last.server_name = Some(std::mem::replace(&mut last.local, local));
                    }
                    _ => {
                        let line = self.last_line();
                        return Err(self.error(line, "`=` needs a name on its left"));
                    }
                }
                continue;
            }
            if self.peek_is_value() {
                if self.second_name_line.is_none() {
                    self.second_name_line = Some(self.peek_line());
                }
                let v = self.take_value(after)?;
                push(&mut names, v);
                continue;
            }
            break;
        }
        Ok((names, wildcard))
    }

    fn parse_server_option(
        &mut self,
        s: &mut ServerOptions,
        kw: &str,
        polarity: Polarity,
        line: u32,
    ) -> Result<(), FetchmailRcError> {
        let flag = polarity == Polarity::Yes;
        if polarity == Polarity::No
            && !matches!(
                kw,
                "dns" | "checkalias" | "uidl" | "tracepolls" | "envelope"
            )
        {
            return Err(self.error(line, format!("`no {kw}` is not valid")));
        }
        self.check_support(canonical_keyword(kw), polarity, line);
        match kw {
            "via" => s.via = loc(line, self.take_value(kw)?),
            "protocol" | "proto" => {
                let v = self.take_value(kw)?;
                let proto = parse_protocol(&v).ok_or_else(|| {
                    self.error(
                        line,
                        format!("unknown protocol `{v}` (protocol names are all lower or all upper case)"),
                    )
                })?;
                s.protocol = loc(line, proto);
            }
            "service" | "port" => {
                let v = self.take_value(kw)?;
                if kw == "port" && !is_number(&v) {
                    return Err(self.error(line, format!("`port` needs a number, found `{v}`")));
                }
                s.service = loc(line, v);
            }
            "auth" | "authenticate" | "preauth" | "preauthenticate" => {
                let v = self.take_name(kw)?;
                let auth = AuthType::parse(&v.to_ascii_lowercase()).ok_or_else(|| {
                    self.error(line, format!("unknown authentication type `{v}`"))
                })?;
                if !auth.implemented() {
                    self.warn(
                        line,
                        &format!("auth {}", auth.name()),
                        "rfetch chooses among the methods it implements",
                    );
                }
                s.auth = loc(line, auth);
            }
            "timeout" => s.timeout = loc(line, self.take_seconds(kw)?),
            "interval" => s.interval = loc(line, self.take_seconds(kw)?),
            "envelope" => {
                if polarity == Polarity::No {
                    s.envelope = loc(line, Envelope::Disabled);
                } else {
                    let mut skip = 0u32;
                    if matches!(self.peek(), Some(Tok { kind: TokKind::Word { text, quoted: false }, .. }) if is_number(text))
                    {
                        let n = self.take_count(kw)?;
                        skip = u32::try_from(n)
                            .map_err(|_| self.error(line, "envelope skip count is too large"))?;
                    }
                    let name = self.take_value(kw)?;
                    s.envelope = loc(line, Envelope::Header { skip, name });
                }
            }
            "qvirtual" => s.qvirtual = loc(line, self.take_value(kw)?),
            "aka" => s.aka = loc(line, self.take_list(kw)?),
            "localdomains" | "local" => s.localdomains = loc(line, self.take_list(kw)?),
            "interface" => s.interface = loc(line, self.take_value(kw)?),
            "monitor" => s.monitor = loc(line, self.take_value(kw)?),
            "plugin" => s.plugin = loc(line, self.take_value(kw)?),
            "plugout" => s.plugout = loc(line, self.take_value(kw)?),
            "principal" => s.principal = loc(line, self.take_value(kw)?),
            "esmtpname" => s.esmtpname = loc(line, self.take_name(kw)?),
            "esmtppassword" => s.esmtppassword = loc(line, RcSecret(self.take_name(kw)?)),
            "dns" => s.dns = loc(line, flag),
            "checkalias" => s.checkalias = loc(line, flag),
            "uidl" => s.uidl = loc(line, flag),
            "tracepolls" => s.tracepolls = loc(line, flag),
            "bad-header" => {
                let v = self.take_value(kw)?;
                s.bad_header = loc(
                    line,
                    match v.as_str() {
                        "accept" => BadHeader::Accept,
                        "reject" => {
                            self.refuse(
                                line,
                                "bad-header reject",
                                "rfetch delivers a message whose header is malformed as it came \
                                 (bad-header accept)",
                            );
                            BadHeader::Reject
                        }
                        _ => {
                            return Err(self.error(
                                line,
                                format!("`bad-header` takes accept or reject, found `{v}`"),
                            ));
                        }
                    },
                );
            }
            other => return Err(self.error(line, format!("unknown server option `{other}`"))),
        }
        Ok(())
    }

    fn parse_user_option(
        &mut self,
        u: &mut UserEntry,
        kw: &str,
        polarity: Polarity,
        line: u32,
    ) -> Result<(), FetchmailRcError> {
        let kw = match kw {
            "pass" => "password",
            "folders" => "folder",
            "smtphosts" | "smtp" => "smtphost",
            "pre" => "preconnect",
            "post" => "postconnect",
            "pass8" => "pass8bits",
            "mimedec" => "mimedecode",
            k => k,
        };
        let flag = polarity == Polarity::Yes;
        const BOOLEANS: &[&str] = &[
            "ssl",
            "sslcertck",
            "lmtp",
            "keep",
            "flush",
            "limitflush",
            "fetchall",
            "rewrite",
            "stripcr",
            "forcecr",
            "pass8bits",
            "dropstatus",
            "dropdelivered",
            "mimedecode",
            "idle",
            "forceidle",
        ];
        if polarity == Polarity::No && !BOOLEANS.contains(&kw) {
            return Err(self.error(line, format!("`no {kw}` is not valid")));
        }
        if kw != "antispam" {
            self.check_support(kw, polarity, line);
        }
        let o = &mut u.options;
        match kw {
            "password" => o.password = loc(line, RcSecret(self.take_name(kw)?)),
            "is" | "to" => {
                let (names, wildcard) = self.mapping_list(kw)?;
                match self.keyword_at_peek().as_deref() {
                    Some("there") => {
                        self.bump();
                        let name = single_name(&names, wildcard)
                            .ok_or_else(|| self.error(line, "`there` needs exactly one name"))?;
                        u.remote = loc(line, name);
                    }
                    Some("here") => {
                        self.bump();
                        u.locals.extend(names);
                        u.wildcard |= wildcard;
                    }
                    _ => {
                        u.locals.extend(names);
                        u.wildcard |= wildcard;
                    }
                }
            }
            "ssl" => o.ssl = loc(line, flag),
            "sslcertck" => o.sslcertck = loc(line, flag),
            "lmtp" => o.lmtp = loc(line, flag),
            "keep" => o.keep = loc(line, flag),
            "flush" => o.flush = loc(line, flag),
            "limitflush" => o.limitflush = loc(line, flag),
            "fetchall" => o.fetchall = loc(line, flag),
            "rewrite" => o.rewrite = loc(line, flag),
            "stripcr" => o.stripcr = loc(line, flag),
            "forcecr" => o.forcecr = loc(line, flag),
            "pass8bits" => o.pass8bits = loc(line, flag),
            "dropstatus" => o.dropstatus = loc(line, flag),
            "dropdelivered" => o.dropdelivered = loc(line, flag),
            "mimedecode" => o.mimedecode = loc(line, flag),
            "idle" => o.idle = loc(line, flag),
            "forceidle" => o.forceidle = loc(line, flag),
            "sslproto" | "sslprotocolversion" => {
                let v = self.take_value(kw)?;
                if let Err(why) = check_tls_floor(&v) {
                    self.refuse(line, &format!("{kw} {v}"), why);
                }
                match kw {
                    "sslproto" => u.options.sslproto = loc(line, v),
                    _ => u.options.sslprotocolversion = loc(line, v),
                }
            }
            "sslcommonname" => o.sslcommonname = loc(line, self.take_value(kw)?),
            "sslfingerprint" => o.sslfingerprint = loc(line, self.take_value(kw)?),
            "smtpaddress" => o.smtpaddress = loc(line, self.take_value(kw)?),
            "smtpname" => o.smtpname = loc(line, self.take_value(kw)?),
            "mda" => o.mda = loc(line, self.take_value(kw)?),
            "preconnect" => o.preconnect = loc(line, self.take_value(kw)?),
            "postconnect" => o.postconnect = loc(line, self.take_value(kw)?),
            "properties" => o.properties = loc(line, self.take_value(kw)?),
            "sslmode" => {
                let mut v = self.take_value(kw)?;
                // `starttls=must` lexes as three tokens (`=` is punctuation).
                if v == "starttls"
                    && matches!(
                        self.toks.get(self.pos),
                        Some(Tok {
                            kind: TokKind::Eq,
                            ..
                        })
                    )
                {
                    self.bump();
                    v = format!("starttls={}", self.take_name("starttls=")?);
                }
                if !matches!(v.as_str(), "wrapped" | "starttls=must" | "starttls=may") {
                    self.refuse(
                        line,
                        &format!("sslmode {v}"),
                        "rfetch polls over TLS only (wrapped, starttls=must; starttls=may is \
                         treated as must)",
                    );
                }
                u.options.sslmode = loc(line, v);
            }
            "passwordeval" => o.passwordeval = loc(line, self.take_value(kw)?),
            "retrieve-error" => o.retrieve_error = loc(line, self.take_value(kw)?),
            "sslcertfile" | "sslcertpath" | "sslcert" | "sslkey" | "bsmtp" | "passwordfile" => {
                let v = self.take_value(kw)?;
                let v = loc(line, self.resolve(v));
                match kw {
                    "sslcertfile" => o.sslcertfile = v,
                    "sslcertpath" => o.sslcertpath = v,
                    "sslcert" => o.sslcert = v,
                    "sslkey" => o.sslkey = v,
                    "bsmtp" => o.bsmtp = v,
                    _ => o.passwordfile = v,
                }
            }
            "folder" => o.folders = loc(line, self.take_list(kw)?),
            "smtphost" => {
                let hosts = self.take_list(kw)?;
                u.options.smtphosts = loc(line, hosts);
            }
            "fetchdomains" => o.fetchdomains = loc(line, self.take_list(kw)?),
            "antispam" => {
                let mut codes = vec![self.take_number(kw)?];
                while matches!(self.peek(), Some(Tok { kind: TokKind::Word { text, quoted: false }, .. }) if is_number(text))
                {
                    codes.push(self.take_number(kw)?);
                }
                if codes != [-1]
                    && let Some(bad) = codes.iter().find(|c| !(100..=599).contains(*c))
                {
                    return Err(self.error(
                        line,
                        format!("antispam {bad}: an SMTP reply code is 100 to 599 (or -1 alone)"),
                    ));
                }
                u.options.antispam = loc(line, codes);
            }
            "limit" => o.limit = loc(line, self.take_count(kw)?),
            "warnings" => o.warnings = loc(line, self.take_seconds(kw)?),
            "batchlimit" => o.batchlimit = loc(line, self.take_count(kw)?),
            "fetchlimit" => o.fetchlimit = loc(line, self.take_count(kw)?),
            "fetchsizelimit" => o.fetchsizelimit = loc(line, self.take_count(kw)?),
            "fastuidl" => o.fastuidl = loc(line, self.take_count(kw)?),
            "expunge" => o.expunge = loc(line, self.take_count(kw)?),
            "idletimeout" => o.idletimeout = loc(line, self.take_seconds(kw)?),
            "passwordfd" => o.passwordfd = loc(line, self.take_count(kw)?),
            other => return Err(self.error(line, format!("unknown user option `{other}`"))),
        }
        Ok(())
    }
}

/// `sslproto`/`sslprotocolversion`: the values whose floor rfetch meets (it speaks TLS 1.2
/// and 1.3); a floor above 1.2, or an exact old version, is refused with the reason. The empty
/// value (no STARTTLS) is accepted: rfetch still requires TLS, which is stricter.
pub fn check_tls_floor(value: &str) -> Result<(), &'static str> {
    match value.to_ascii_lowercase().as_str() {
        "" | "auto" | "ssl23" | "tls1+" | "tls1.1+" | "tls1.2+" | "tls1.2" => Ok(()),
        "tls1.3" | "tls1.3+" => Err("rfetch cannot require TLS 1.3; it accepts TLS 1.2 and 1.3"),
        _ => Err("rfetch speaks TLS 1.2 and 1.3 only (auto, tls1.2+ and tls1.2 are accepted)"),
    }
}

fn loc<T>(line: u32, value: T) -> Opt<T> {
    Some(Located { value, line })
}

fn single_name(names: &[LocalName], wildcard: bool) -> Option<String> {
    match names {
        [only] if !wildcard && only.server_name.is_none() => Some(only.local.clone()),
        _ => None,
    }
}

fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Protocol names: all lower or all upper case only (what fetchmail's lexer accepts).
fn parse_protocol(word: &str) -> Option<Protocol> {
    let lower = word.to_ascii_lowercase();
    if word != lower && word != word.to_ascii_uppercase() {
        return None;
    }
    Some(match lower.as_str() {
        "auto" => Protocol::Auto,
        "pop2" => Protocol::Pop2,
        "pop3" => Protocol::Pop3,
        "imap" => Protocol::Imap,
        "apop" => Protocol::Apop,
        "rpop" => Protocol::Rpop,
        "kpop" => Protocol::Kpop,
        "sdps" => Protocol::Sdps,
        "etrn" => Protocol::Etrn,
        "odmr" => Protocol::Odmr,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// configdump
// ---------------------------------------------------------------------------------------------

/// What was understood, in rc syntax (re-parsable), with `defaults` applied to every poll,
/// passwords shown as `<redacted>`, and the source line of each record as a comment.
pub fn configdump(rc: &FetchmailRc) -> String {
    let mut out = format!("# rfetch configdump of {}\n", rc.source.display());
    rc.globals.dump(&mut out, "");
    for poll in rc.effective_polls() {
        out.push_str(&format!(
            "\n{} {}    # line {}\n",
            if poll.skip { "skip" } else { "poll" },
            quote(&poll.label),
            poll.line
        ));
        poll.server.dump(&mut out, "    ");
        for user in &poll.users {
            out.push_str("    user ");
            match &user.remote {
                Some(r) => out.push_str(&format!("{} there", quote(&r.value))),
                None if user.locals.is_empty() => {
                    out.push_str("\"<invoking user>\" there");
                }
                None => {
                    if let Some(first) = user.locals.first() {
                        out.push_str(&format!("{} there", quote(&first.local)));
                    }
                }
            }
            if !user.locals.is_empty() || user.wildcard {
                out.push_str(" is");
                for l in &user.locals {
                    match &l.server_name {
                        Some(s) => out.push_str(&format!(" {}={}", quote(s), quote(&l.local))),
                        None => out.push_str(&format!(" {}", quote(&l.local))),
                    }
                }
                if user.wildcard {
                    out.push_str(" *");
                }
                out.push_str(" here");
            }
            out.push_str(&format!(
                "    # line {}{}\n",
                user.line,
                if user.is_multidrop() {
                    ", multidrop"
                } else {
                    ""
                }
            ));
            user.options.dump(&mut out, "        ");
        }
    }
    if !rc.warnings.is_empty() || !rc.refusals.is_empty() {
        out.push('\n');
        for w in &rc.warnings {
            out.push_str(&format!("# warning: {w}\n"));
        }
        for r in &rc.refusals {
            out.push_str(&format!("# error: {r}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_match_fetchmail() {
        assert_eq!(unescape(r"z\x41\101\0102").unwrap(), "zAe\u{8}2");
        assert_eq!(unescape(r"a\tb\nc\\d\qe").unwrap(), "a\tb\nc\\dqe");
        assert_eq!(unescape("a\\\nb").unwrap(), "ab");
        assert!(unescape(r"\999").is_err());
        assert_eq!(unescape(r"\x").unwrap(), "x");
    }

    #[test]
    fn lexer_tokens() {
        let toks = lex(
            "poll a.b: user 'x y'='z' # c\n,; \"q\\x22\"\\\nnext",
            Path::new("rc"),
        )
        .unwrap();
        let words: Vec<String> = toks
            .iter()
            .map(|t| match &t.kind {
                TokKind::Word { text, quoted } => {
                    format!("{}{text}", if *quoted { "q:" } else { "" })
                }
                TokKind::Eq => "=".into(),
            })
            .collect();
        assert_eq!(
            words,
            ["poll", "a.b", "user", "q:x y", "=", "q:z", "q:q\"", "next"]
        );
        assert_eq!(toks.last().unwrap().line, 3);
    }

    #[test]
    fn escaped_quotes_stay_inside_the_string() {
        let rc = parse_fetchmailrc(
            "poll h proto imap user \"a\\\"b\" password 'c\\'d' is x here\n",
            Path::new("/rc"),
        )
        .unwrap();
        let u = &rc.polls[0].users[0];
        assert_eq!(u.remote.as_ref().unwrap().value, "a\"b");
        assert_eq!(u.options.password.as_ref().unwrap().value.expose(), "c'd");
        // A backslash-newline inside a string still counts the line.
        let rc = parse_fetchmailrc("poll h user \"a\\\nb\"\npoll i\n", Path::new("/rc")).unwrap();
        assert_eq!(rc.polls[0].users[0].remote.as_ref().unwrap().value, "ab");
        assert_eq!(rc.polls[1].line, 3);
    }

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
