//! What rfetch does with each fetchmailrc keyword ([`RC_KEYWORDS`]), the keyword aliases, and
//! the words the parser treats as keywords.

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

pub(super) const NOISE: &[&str] = &["and", "with", "has", "wants", "options"];
pub(super) const STATEMENTS: &[&str] = &["set", "defaults", "poll", "server", "skip"];
pub(super) const SERVER_KEYWORDS: &[&str] = &[
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
pub(super) const USER_KEYWORDS: &[&str] = &[
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
pub(super) const OTHER_KEYWORDS: &[&str] = &["user", "username", "here", "there", "no"];
/// One-word negations (rcfile_l.l).
pub(super) const ONE_WORD_NEGATIONS: &[(&str, &str)] = &[
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

pub(super) fn is_keyword(word: &str) -> bool {
    STATEMENTS.contains(&word)
        || SERVER_KEYWORDS.contains(&word)
        || USER_KEYWORDS.contains(&word)
        || OTHER_KEYWORDS.contains(&word)
        || ONE_WORD_NEGATIONS.iter().any(|(w, _)| *w == word)
}
