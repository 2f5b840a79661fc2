//! The fetchmailrc AST: records, user descriptions and option sets whose every value remembers
//! the rc-file line it was set on, and how `defaults` is applied to the poll records.

use std::fmt;
use std::path::PathBuf;

/// A value and the rc-file line it was set on.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub line: u32,
}

/// A password from the rc file. Debug and configdump print `<redacted>`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RcSecret(pub(super) String);

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

    pub(super) fn parse(word: &str) -> Option<Self> {
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

    pub(super) fn implemented(self) -> bool {
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

pub(super) type Opt<T> = Option<Located<T>>;

macro_rules! option_set {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty => $kw:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name { $($(#[$fm])* pub $field: Opt<$ty>,)* }

        impl $name {
            /// The keyword of each option, as written in rc syntax: the parser accepts exactly
            /// these (and their aliases) in this record, and the dump writes each field under it.
            pub const KEYWORDS: &'static [&'static str] = &[$($kw),*];

            /// Whether `keyword` (canonical) of this set may be given as `no KEYWORD`: a flag,
            /// or `envelope` (`no envelope`). `false` for a keyword not in the set.
            pub(super) fn negatable(keyword: &str) -> bool {
                $( if keyword == $kw {
                    return <$ty as RcValue>::NEGATABLE;
                } )*
                false
            }

            /// Fills every option not set here from `defaults` (the `defaults` record).
            pub fn inherit(&mut self, defaults: &Self) {
                $( if self.$field.is_none() { self.$field.clone_from(&defaults.$field); } )*
            }

            pub(super) fn dump(&self, out: &mut String, indent: &str) {
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

/// A keyword rfetch accepts but does not act on ([`Support::Warned`](super::Support::Warned)).
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

/// A keyword rfetch refuses ([`Support::Refused`](super::Support::Refused), or a value of an implemented keyword that
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

/// How a value is written back in rc syntax by `configdump` (the impls are in `dump.rs`; the
/// trait lives here because the option sets above ask each value type whether it takes `no`).
pub(super) trait RcValue {
    /// Whether the option is written `no KEYWORD` when off, and so may be given negated.
    const NEGATABLE: bool = false;
    fn render(&self, keyword: &str) -> String;
}
