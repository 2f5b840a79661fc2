//! What rfetch does with each fetchmailrc keyword ([`RC_KEYWORDS`]), the keyword aliases, and
//! the words the parser treats as keywords. Which options a record takes is not listed here: it
//! is the option sets of the AST (`KEYWORDS` of [`Globals`](super::Globals), [`ServerOptions`]
//! and [`UserOptions`]), which the parser and the dump both use; the tests below fail when the
//! table and those sets disagree, or when the parser has no arm for an option.

use super::ast::{ServerOptions, UserOptions};

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
    (
        "no pass8bits",
        W(
            "rfetch declares BODY=8BITMIME for every message to a listener that offers \
             8BITMIME, 7bit ones included",
        ),
    ),
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
/// A server option or an alias of one: the keywords of [`ServerOptions`].
pub(super) fn is_server_keyword(word: &str) -> bool {
    ServerOptions::KEYWORDS.contains(&canonical_keyword(word))
}

/// A user option or an alias of one: the keywords of [`UserOptions`], and `is`/`to` (the local
/// names, which are not an option of their own).
pub(super) fn is_user_keyword(word: &str) -> bool {
    matches!(word, "is" | "to") || UserOptions::KEYWORDS.contains(&canonical_keyword(word))
}

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
        || is_server_keyword(word)
        || is_user_keyword(word)
        || OTHER_KEYWORDS.contains(&word)
        || ONE_WORD_NEGATIONS.iter().any(|(w, _)| *w == word)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Globals, ServerOptions, UserOptions, configdump, parse_fetchmailrc};
    use super::*;

    /// Keywords of the table that are not an option of their own: the local names and the
    /// words that say on which side a name is.
    const NAME_WORDS: &[&str] = &["is", "to", "here", "there"];

    /// Values tried after a keyword until the line parses: a flag takes none, then a number,
    /// a protocol, an authentication type, a `bad-header` choice, an SMTP reply code.
    const CANDIDATE_VALUES: &[&str] = &["", "1", "imap", "password", "accept", "550"];

    fn negatable(keyword: &str) -> bool {
        Globals::negatable(keyword)
            || ServerOptions::negatable(keyword)
            || UserOptions::negatable(keyword)
    }

    /// `no X` -> `X`, `set no X` -> `set X`; `None` for a keyword given plainly.
    fn negated_base(entry: &str) -> Option<String> {
        if let Some(name) = entry.strip_prefix("set no ") {
            return Some(format!("set {name}"));
        }
        entry.strip_prefix("no ").map(str::to_owned)
    }

    #[test]
    fn the_table_and_the_option_sets_name_the_same_keywords() {
        let options: Vec<&str> = Globals::KEYWORDS
            .iter()
            .chain(ServerOptions::KEYWORDS)
            .chain(UserOptions::KEYWORDS)
            .chain(NAME_WORDS)
            .copied()
            .collect();
        let mut failures = Vec::new();
        for (entry, _) in RC_KEYWORDS {
            match negated_base(entry) {
                Some(base) if !negatable(&base) => failures.push(format!(
                    "`{entry}` is in RC_KEYWORDS but `{base}` is no flag of an option set"
                )),
                Some(_) => {}
                None if !options.contains(entry) => failures.push(format!(
                    "`{entry}` is in RC_KEYWORDS but in no option set of ast.rs"
                )),
                None => {}
            }
        }
        for keyword in &options {
            if rc_support(keyword, false).is_none() {
                failures.push(format!("`{keyword}` is an option but not in RC_KEYWORDS"));
            }
        }
        for (word, base) in ONE_WORD_NEGATIONS {
            if !negatable(base) && !negatable(&format!("set {base}")) {
                failures.push(format!("`{word}` negates `{base}`, which is no flag"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Walks the parser with every option keyword: each must reach an arm of the parser that
    /// sets the field the dump then writes under the same keyword (a keyword listed in an
    /// option set but missing from the parser's match is an `unknown ... option` error).
    #[test]
    fn every_option_keyword_reaches_the_parser_and_the_dump() {
        let sets: [(&[&str], &str); 3] = [
            (Globals::KEYWORDS, ""),
            (ServerOptions::KEYWORDS, "poll h "),
            (UserOptions::KEYWORDS, "poll h user u there "),
        ];
        let mut failures = Vec::new();
        for (keywords, prefix) in sets {
            for keyword in keywords {
                let mut errors = Vec::new();
                let dumped = CANDIDATE_VALUES.iter().find_map(|value| {
                    let text = format!("{prefix}{keyword} {value}\n");
                    match parse_fetchmailrc(&text, Path::new("/rc")) {
                        Ok(rc) => Some(configdump(&rc)),
                        Err(e) => {
                            errors.push(e.to_string());
                            None
                        }
                    }
                });
                let Some(dumped) = dumped else {
                    failures.push(format!("`{keyword}`: no value parses: {errors:?}"));
                    continue;
                };
                let written = dumped.lines().map(str::trim_start).any(|line| {
                    line == *keyword
                        || line
                            .strip_prefix(keyword)
                            .is_some_and(|rest| rest.starts_with(' '))
                });
                if !written {
                    failures.push(format!(
                        "`{keyword}` parses but the dump omits it:\n{dumped}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
