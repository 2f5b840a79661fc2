//! No silent divergence from fetchmail: every keyword of fetchmail 6.4's run-control grammar
//! (plus the 6.5/7.0 keywords rfetch reads) is in exactly one of rfetch's three sets
//! (`fetchmailrc::RC_KEYWORDS`), and the parser does what the set says: a refused keyword makes
//! the file unusable, with an error naming the file, line, keyword and why; a warned one is a warning naming it and what rfetch
//! does instead; an implemented one changes the poll rfetch builds (or, for a `set` option, the
//! globals rfetch reads), unless it asks for what rfetch always does (listed below, each with
//! its reason).

use std::path::Path;

use postie::account::Env;
use postie::config::fetchmailrc::{Support, canonical_keyword, parse_fetchmailrc, rc_support};
use postie::fetch::spec::from_fetchmailrc;

#[derive(Clone, Copy, Debug)]
enum Pos {
    /// A `set` statement.
    Set,
    /// A server option, between `poll NAME` and `user`.
    Server,
    /// A user option.
    User,
}

/// Every keyword as fetchmail 6.4 spells it (fetchmail(1) "KEYWORD/OPTION SUMMARY", the lexer
/// rcfile_l.l with its aliases and one-word negations), then the 6.5/7.0 additions: what is
/// written on line 2 of a small rc file, where, and the key of rfetch's table it falls under.
const GRAMMAR: &[(&str, Pos, &str)] = &[
    // global `set` options
    ("set daemon 300", Pos::Set, "set daemon"),
    ("set logfile /tmp/fm.log", Pos::Set, "set logfile"),
    ("set idfile /tmp/ids", Pos::Set, "set idfile"),
    ("set pidfile /tmp/pid", Pos::Set, "set pidfile"),
    ("set postmaster pm", Pos::Set, "set postmaster"),
    ("set bouncemail", Pos::Set, "set bouncemail"),
    ("set no bouncemail", Pos::Set, "set no bouncemail"),
    ("set nobouncemail", Pos::Set, "set no bouncemail"),
    ("set spambounce", Pos::Set, "set spambounce"),
    ("set no spambounce", Pos::Set, "set no spambounce"),
    ("set nospambounce", Pos::Set, "set no spambounce"),
    ("set softbounce", Pos::Set, "set softbounce"),
    ("set no softbounce", Pos::Set, "set no softbounce"),
    ("set syslog", Pos::Set, "set syslog"),
    ("set no syslog", Pos::Set, "set no syslog"),
    ("set invisible", Pos::Set, "set invisible"),
    ("set showdots", Pos::Set, "set showdots"),
    ("set properties x", Pos::Set, "set properties"),
    // server options
    ("via 127.0.0.1", Pos::Server, "via"),
    ("protocol pop3", Pos::Server, "protocol"),
    ("proto pop3", Pos::Server, "protocol"),
    ("service 1234", Pos::Server, "service"),
    ("port 1234", Pos::Server, "service"),
    ("auth password", Pos::Server, "auth"),
    ("authenticate password", Pos::Server, "auth"),
    ("preauth password", Pos::Server, "auth"),
    ("preauthenticate password", Pos::Server, "auth"),
    ("timeout 60", Pos::Server, "timeout"),
    ("envelope X-Original-To", Pos::Server, "envelope"),
    ("no envelope", Pos::Server, "no envelope"),
    ("noenvelope", Pos::Server, "no envelope"),
    ("qvirtual pfx-", Pos::Server, "qvirtual"),
    ("aka example.org", Pos::Server, "aka"),
    ("localdomains example.net", Pos::Server, "localdomains"),
    ("local example.net", Pos::Server, "localdomains"),
    ("interface eth0/10.0.0.1", Pos::Server, "interface"),
    ("monitor ppp0", Pos::Server, "monitor"),
    ("plugin \"ssh %h imapd\"", Pos::Server, "plugin"),
    ("plugout \"ssh %h smtpd\"", Pos::Server, "plugout"),
    ("dns", Pos::Server, "dns"),
    ("no dns", Pos::Server, "no dns"),
    ("nodns", Pos::Server, "no dns"),
    ("checkalias", Pos::Server, "checkalias"),
    ("no checkalias", Pos::Server, "no checkalias"),
    ("nocheckalias", Pos::Server, "no checkalias"),
    ("uidl", Pos::Server, "uidl"),
    ("no uidl", Pos::Server, "no uidl"),
    ("nouidl", Pos::Server, "no uidl"),
    ("interval 3", Pos::Server, "interval"),
    ("tracepolls", Pos::Server, "tracepolls"),
    ("no tracepolls", Pos::Server, "no tracepolls"),
    ("principal imap/h@R", Pos::Server, "principal"),
    ("esmtpname bob", Pos::Server, "esmtpname"),
    ("esmtppassword secret", Pos::Server, "esmtppassword"),
    ("bad-header accept", Pos::Server, "bad-header"),
    // user options
    ("password q", Pos::User, "password"),
    ("pass q", Pos::User, "password"),
    ("is c here", Pos::User, "is"),
    ("to c", Pos::User, "to"),
    ("is c d here", Pos::User, "here"),
    ("to carl there", Pos::User, "there"),
    ("ssl", Pos::User, "ssl"),
    ("no ssl", Pos::User, "no ssl"),
    ("sslproto tls1.2+", Pos::User, "sslproto"),
    ("sslcertck", Pos::User, "sslcertck"),
    ("no sslcertck", Pos::User, "no sslcertck"),
    ("sslcertfile /ca.pem", Pos::User, "sslcertfile"),
    ("sslcertpath /etc/ssl/certs", Pos::User, "sslcertpath"),
    ("sslcommonname mail.example.org", Pos::User, "sslcommonname"),
    (
        "sslfingerprint 00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF",
        Pos::User,
        "sslfingerprint",
    ),
    ("sslcert /c.pem sslkey /k.pem", Pos::User, "sslcert"),
    ("sslkey /k.pem sslcert /c.pem", Pos::User, "sslkey"),
    ("folder A,B", Pos::User, "folder"),
    ("folders A B", Pos::User, "folder"),
    ("smtphost mx/2525", Pos::User, "smtphost"),
    ("smtp mx/2525", Pos::User, "smtphost"),
    ("lmtp smtphost localhost/24", Pos::User, "lmtp"),
    ("smtpaddress example.org", Pos::User, "smtpaddress"),
    ("smtpname x@example.org", Pos::User, "smtpname"),
    ("fetchdomains example.org", Pos::User, "fetchdomains"),
    ("antispam 571 550", Pos::User, "antispam"),
    ("mda \"procmail -d %T\"", Pos::User, "mda"),
    ("bsmtp /tmp/out", Pos::User, "bsmtp"),
    ("preconnect \"true\"", Pos::User, "preconnect"),
    ("pre \"true\"", Pos::User, "preconnect"),
    ("postconnect \"true\"", Pos::User, "postconnect"),
    ("post \"true\"", Pos::User, "postconnect"),
    ("keep", Pos::User, "keep"),
    ("no keep", Pos::User, "no keep"),
    ("nokeep", Pos::User, "no keep"),
    ("flush", Pos::User, "flush"),
    ("noflush", Pos::User, "no flush"),
    ("limitflush limit 10", Pos::User, "limitflush"),
    ("nolimitflush", Pos::User, "no limitflush"),
    ("fetchall", Pos::User, "fetchall"),
    ("nofetchall", Pos::User, "no fetchall"),
    ("rewrite", Pos::User, "rewrite"),
    ("no rewrite", Pos::User, "no rewrite"),
    ("norewrite", Pos::User, "no rewrite"),
    ("stripcr", Pos::User, "stripcr"),
    ("nostripcr", Pos::User, "no stripcr"),
    ("forcecr", Pos::User, "forcecr"),
    ("noforcecr", Pos::User, "no forcecr"),
    ("pass8bits", Pos::User, "pass8bits"),
    ("pass8", Pos::User, "pass8bits"),
    ("nopass8bits", Pos::User, "no pass8bits"),
    ("nopass8", Pos::User, "no pass8bits"),
    ("dropstatus", Pos::User, "dropstatus"),
    ("nodropstatus", Pos::User, "no dropstatus"),
    ("dropdelivered", Pos::User, "dropdelivered"),
    ("nodropdelivered", Pos::User, "no dropdelivered"),
    ("mimedecode", Pos::User, "mimedecode"),
    ("mimedec", Pos::User, "mimedecode"),
    ("nomimedecode", Pos::User, "no mimedecode"),
    ("nomimedec", Pos::User, "no mimedecode"),
    ("idle", Pos::User, "idle"),
    ("noidle", Pos::User, "no idle"),
    ("limit 100", Pos::User, "limit"),
    ("warnings 60", Pos::User, "warnings"),
    ("batchlimit 5", Pos::User, "batchlimit"),
    ("fetchlimit 5", Pos::User, "fetchlimit"),
    ("fetchsizelimit 1", Pos::User, "fetchsizelimit"),
    ("fastuidl 4", Pos::User, "fastuidl"),
    ("expunge 5", Pos::User, "expunge"),
    ("properties x", Pos::User, "properties"),
    // 6.5 and 7.0
    ("idletimeout 600", Pos::User, "idletimeout"),
    ("forceidle", Pos::User, "forceidle"),
    ("sslmode wrapped", Pos::User, "sslmode"),
    (
        "sslprotocolversion tls1.2+",
        Pos::User,
        "sslprotocolversion",
    ),
    ("passwordfile /pw", Pos::User, "passwordfile"),
    ("passwordfd 3", Pos::User, "passwordfd"),
    ("passwordeval \"echo x\"", Pos::User, "passwordeval"),
    ("retrieve-error markseen", Pos::User, "retrieve-error"),
];

/// Implemented keywords whose value rfetch's poll does not need to read, because they ask for
/// what rfetch always does; the reason is given for each.
const ALWAYS_SO: &[(&str, &str)] = &[
    ("uidl", "rfetch always tracks POP3 messages by UIDL"),
    (
        "no dns",
        "rfetch never looks multidrop domains up in the DNS",
    ),
    (
        "no checkalias",
        "rfetch never compares multidrop hosts by address",
    ),
    (
        "no tracepolls",
        "rfetch's Received header has no polling clause",
    ),
    (
        "bad-header",
        "rfetch delivers malformed headers as they came (`accept`; `reject` is refused)",
    ),
    (
        "sslproto",
        "rfetch's floor, TLS 1.2, meets every accepted value (the others are refused)",
    ),
    ("sslprotocolversion", "as sslproto"),
    (
        "properties",
        "an opaque string, ignored by fetchmail too (--configdump shows it)",
    ),
    ("no rewrite", "rfetch never rewrites addresses"),
    (
        "stripcr",
        "the default for an mda (SMTP and LMTP always carry CRLF line ends)",
    ),
    (
        "forcecr",
        "alone it changes nothing: stripcr, on by default for an mda, wins (fetchmail's rule), \
         and SMTP and LMTP always carry CRLF; with `no stripcr` it changes the poll \
         (tests/rfetch_rc_options.rs)",
    ),
    ("no forcecr", "the default"),
    (
        "pass8bits",
        "rfetch always declares BODY=8BITMIME to a listener that offers 8BITMIME \
         (tests/rfetch_rc_options.rs shows it on the wire)",
    ),
    ("no dropstatus", "the default"),
    ("no dropdelivered", "the default"),
    ("no mimedecode", "rfetch never decodes bodies"),
    ("no ssl", "the default: STARTTLS is required"),
    ("no keep", "the default: delivered mail is deleted"),
    ("no flush", "the default"),
    ("no limitflush", "the default"),
    ("no fetchall", "the default"),
    ("no idle", "the default"),
];

fn split_key(key: &str) -> (String, bool) {
    if let Some(rest) = key.strip_prefix("set no ") {
        return (format!("set {rest}"), true);
    }
    if let Some(rest) = key.strip_prefix("no ") {
        return (rest.to_owned(), true);
    }
    (key.to_owned(), false)
}

fn rc_text(pos: Pos, line2: &str) -> String {
    // The user is multidrop, so that the multidrop keywords show in the poll too.
    let user = "user u is a b here";
    match pos {
        Pos::Set => format!("# rc\n{line2}\npoll h proto imap {user}\n"),
        Pos::Server => format!("poll h\n{line2}\n{user}\n"),
        Pos::User => format!("poll h proto imap {user}\n{line2}\n"),
    }
}

fn env() -> Env {
    Env {
        home: Some("/home/u".into()),
        user: Some("u".into()),
        ..Env::from_process()
    }
}

#[test]
fn the_table_names_each_keyword_once() {
    let table = postie::config::fetchmailrc::RC_KEYWORDS;
    for (i, (k, _)) in table.iter().enumerate() {
        assert!(
            !table[..i].iter().any(|(o, _)| o == k),
            "{k} is in the table twice"
        );
        assert!(
            GRAMMAR
                .iter()
                .any(|(_, _, key)| key == k || split_key(key).0 == *k && !split_key(key).1),
            "{k} is in the table but no walk entry exercises it"
        );
    }
}

#[test]
fn every_keyword_does_what_its_set_says() {
    let path = Path::new("/rc");
    let env = env();
    let mut failures = Vec::new();
    for &(line2, pos, key) in GRAMMAR {
        let (base, negated) = split_key(key);
        // The written word, folded as the lexer folds aliases, lands on the same table key.
        let first = line2
            .split_whitespace()
            .nth(if matches!(pos, Pos::Set) { 1 } else { 0 })
            .unwrap_or_default();
        let first = first
            .strip_prefix("no")
            .filter(|_| negated && first != "no")
            .unwrap_or(first);
        if first != "no"
            && !base.ends_with(canonical_keyword(first))
            && !matches!(first, "is" | "to")
        {
            failures.push(format!(
                "{line2}: written `{first}` does not fold to `{base}`"
            ));
        }
        let Some(support) = rc_support(&base, negated) else {
            failures.push(format!("{line2}: `{key}` is in none of the three sets"));
            continue;
        };
        let text = rc_text(pos, line2);
        let parsed = parse_fetchmailrc(&text, path);
        match support {
            Support::Refused(why) => match parsed {
                Err(e) => failures.push(format!("{line2}: refused, but as a syntax error: {e}")),
                Ok(rc) => match from_fetchmailrc(&rc, &env) {
                    Ok(_) => failures.push(format!("{line2}: refused, but the poll was built")),
                    Err(e) => {
                        let msg = e.to_string();
                        if !msg.starts_with("/rc:2: `")
                            || !msg.contains("is refused: ")
                            || !msg.contains(why)
                        {
                            failures.push(format!(
                                "{line2}: refusal does not name /rc:2 and why: {msg}"
                            ));
                        }
                    }
                },
            },
            Support::Warned(instead) => match parsed {
                Err(e) => failures.push(format!("{line2}: warned, but refused: {e}")),
                Ok(rc) => {
                    let w: Vec<String> = rc.warnings.iter().map(|w| w.to_string()).collect();
                    if w.len() != 1
                        || !rc.refusals.is_empty()
                        || rc.warnings[0].line != 2
                        || !w[0].contains(instead)
                        || !w[0].contains(&format!(
                            "{}` is not supported",
                            base.rsplit(' ').next().unwrap_or_default()
                        ))
                    {
                        failures.push(format!(
                            "{line2}: expected one warning on line 2 naming it: {w:?}"
                        ));
                    }
                }
            },
            Support::Implemented => match parsed {
                Err(e) => failures.push(format!("{line2}: implemented, but refused: {e}")),
                Ok(rc) => {
                    if !rc.warnings.is_empty() || !rc.refusals.is_empty() {
                        failures.push(format!(
                            "{line2}: implemented, but warned or refused: {:?} {:?}",
                            rc.warnings, rc.refusals
                        ));
                    }
                    if ALWAYS_SO.iter().any(|(k, _)| *k == key) {
                        continue;
                    }
                    let baseline = parse_fetchmailrc(&rc_text(pos, ""), path).unwrap();
                    let changed = match pos {
                        Pos::Set => {
                            format!("{:?}", rc.globals) != format!("{:?}", baseline.globals)
                        }
                        _ => match (
                            from_fetchmailrc(&rc, &env),
                            from_fetchmailrc(&baseline, &env),
                        ) {
                            (Ok(a), Ok(b)) => format!("{a:?}") != format!("{b:?}"),
                            (Err(e), _) => {
                                failures.push(format!("{line2}: the poll cannot be built: {e}"));
                                continue;
                            }
                            (_, Err(e)) => panic!("baseline: {e}"),
                        },
                    };
                    if !changed {
                        failures.push(format!("{line2}: implemented, but the poll rfetch builds is the same without it"));
                    }
                }
            },
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Values of implemented keywords that rfetch cannot honour are refused like keywords.
#[test]
fn values_rfetch_cannot_honour_are_refused() {
    let env = env();
    for (line2, named) in [
        (
            "sslproto tls1.3+",
            "`sslproto tls1.3+` is refused: rfetch cannot require TLS 1.3",
        ),
        ("sslproto ssl3", "`sslproto ssl3` is refused"),
        (
            "sslprotocolversion tls1.3",
            "`sslprotocolversion tls1.3` is refused",
        ),
        ("sslmode none", "`sslmode none` is refused"),
    ] {
        let rc = parse_fetchmailrc(&rc_text(Pos::User, line2), Path::new("/rc")).unwrap();
        let e = from_fetchmailrc(&rc, &env).unwrap_err().to_string();
        assert!(
            e.starts_with("/rc:2: ") && e.contains(named),
            "{line2}: {e}"
        );
    }
    let rc =
        parse_fetchmailrc(&rc_text(Pos::Server, "bad-header reject"), Path::new("/rc")).unwrap();
    let e = from_fetchmailrc(&rc, &env).unwrap_err().to_string();
    assert!(e.contains("/rc:2: `bad-header reject` is refused"), "{e}");
    // What rfetch does honour: no spam codes, a floor it meets, TLS modes it speaks.
    for line2 in [
        "antispam -1",
        "sslproto tls1.2+",
        "sslproto auto",
        "sslproto ''",
        "sslmode starttls=must",
    ] {
        let rc = parse_fetchmailrc(&rc_text(Pos::User, line2), Path::new("/rc")).unwrap();
        assert!(from_fetchmailrc(&rc, &env).is_ok(), "{line2}");
    }
    // Every refusal of a file is reported at once.
    let rc = parse_fetchmailrc(
        "poll h proto imap user u plugin x\n rewrite\n",
        Path::new("/rc"),
    );
    assert!(
        rc.is_err(),
        "plugin is a server option: after `user` it is a syntax error"
    );
    let rc = parse_fetchmailrc(
        "poll h interface eth0/10.0.0.1 user u\n rewrite\n",
        Path::new("/rc"),
    )
    .unwrap();
    let e = from_fetchmailrc(&rc, &env).unwrap_err().to_string();
    assert!(
        e.contains("/rc:1: `interface`") && e.contains("/rc:2: `rewrite`"),
        "{e}"
    );
}

/// A hunt list of SMTP hosts: the first is the target, the rest are tried in turn when it
/// cannot be reached (tests/rfetch_rc_options.rs shows the fallback on the stack).
#[test]
fn a_smtphost_hunt_list_is_tried_in_turn() {
    let rc = parse_fetchmailrc(
        &rc_text(Pos::User, "smtphost a/25 b/2525 c"),
        Path::new("/rc"),
    )
    .unwrap();
    assert!(rc.warnings.is_empty(), "{:?}", rc.warnings);
    let p = &from_fetchmailrc(&rc, &env()).unwrap()[0];
    let hosts: Vec<String> = p
        .smtp_fallbacks
        .iter()
        .map(|e| format!("{}:{}", e.host, e.port))
        .collect();
    assert_eq!(hosts, ["b:2525", "c:25"]);
    assert!(
        p.describe(&env())
            .contains("then, while it cannot be reached, b:2525, c:25")
    );
    let rc = parse_fetchmailrc(&rc_text(Pos::User, "smtphost a/25"), Path::new("/rc")).unwrap();
    assert!(
        from_fetchmailrc(&rc, &env()).unwrap()[0]
            .smtp_fallbacks
            .is_empty()
    );
}

/// `sslmode wrapped` is implicit TLS; `sslcert`/`sslkey` reach the TLS client as its certificate.
#[test]
fn tls_keywords_reach_the_connection_settings() {
    use postie::net::TlsMode;
    let env = env();
    let rc = parse_fetchmailrc(
        "poll h proto imap user u sslmode wrapped sslcert /c.pem sslkey /k.pem\n\
         poll i proto imap user u sslmode starttls=may\n",
        Path::new("/rc"),
    )
    .unwrap();
    let p = from_fetchmailrc(&rc, &env).unwrap();
    assert_eq!(p[0].fetch.tls_mode(), TlsMode::Implicit);
    assert_eq!(
        p[0].fetch.tls_options().unwrap().client_cert,
        Some(("/c.pem".into(), "/k.pem".into()))
    );
    assert_eq!(p[1].fetch.tls_mode(), TlsMode::Starttls);
    let rc = parse_fetchmailrc(
        "poll h proto imap user u sslcert /c.pem\n",
        Path::new("/rc"),
    )
    .unwrap();
    let e = from_fetchmailrc(&rc, &env).unwrap()[0]
        .fetch
        .tls_options()
        .unwrap_err()
        .to_string();
    assert!(e.contains("requires"), "{e}");
}
