//! The fetchmailrc AST lowered into the account model: each user description of a poll or
//! skip record (with `defaults` applied) becomes the [`FetchSettings`] a native TOML account
//! holds (server, TLS, login, target, limits and pacing) plus what only a fetchmailrc says
//! ([`RcPoll`]). Values keep the file and line they came from; what rfetch cannot do is an
//! error naming them.

use super::AuthType;
use super::ast::{Envelope, FetchmailRc, Located, PollEntry, Protocol, UserEntry, UserOptions};
use crate::account::{
    AuthSetting, Env, FetchProtocol, FetchSettings, FetchTuning, MultidropRules, Provenance,
    Secret, ServerSettings, Sourced, Target, TrustFile,
};
use crate::error::{Error, ErrorKind, Result};
use crate::net::Endpoint;

/// One poll of a fetchmailrc in the account model's terms.
#[derive(Debug, Clone)]
pub struct RcPoll {
    /// The poll label: what positional arguments select.
    pub name: String,
    /// `skip`: polled only when named.
    pub skip: bool,
    pub fetch: FetchSettings,
    /// The local recipient: `%T` for an MDA, the Received `for` address.
    pub local_user: String,
    /// RCPT TO for SMTP/LMTP forwarding.
    pub smtp_recipient: String,
    /// `set invisible`: no Received header.
    pub invisible: bool,
    /// `interval N`: in daemon mode, poll only every N-th cycle (1: every cycle).
    pub every_nth_poll: u64,
    /// Several local names, or `*`.
    pub multidrop: Option<MultidropRules>,
    /// `smtpaddress`, else localhost.
    pub smtp_domain: String,
    /// `stripcr` (on unless `no stripcr`) and `forcecr`: the line ends an MDA is fed.
    pub stripcr: bool,
    pub forcecr: bool,
    pub dropstatus: bool,
    pub dropdelivered: bool,
    /// The rest of an `smtphost` list (not with an `mda`).
    pub smtp_fallbacks: Vec<Endpoint>,
    /// `antispam` reply codes (empty: none).
    pub antispam: Vec<u16>,
    /// `plugin`/`plugout`, with their line: the fetch layer checks the command.
    pub plugin: Option<Sourced<String>>,
    pub plugout: Option<Sourced<String>>,
    pub preconnect: Option<String>,
    pub postconnect: Option<String>,
    /// `set softbounce` (on unless `set no softbounce`), `set bouncemail` (likewise),
    /// `set postmaster` (else the invoking user, else "postmaster").
    pub softbounce: bool,
    pub bouncemail: bool,
    pub postmaster: String,
}

/// The polls of a fetchmailrc, one per user description of every poll/skip record, lowered
/// one at a time (the first error stops the caller). A file with a refusal is an error.
pub fn polls<'a>(
    rc: &'a FetchmailRc,
    env: &'a Env,
) -> Result<impl Iterator<Item = Result<RcPoll>> + 'a> {
    rc.check_refusals()?;
    Ok(rc.effective_polls().into_iter().flat_map(move |poll| {
        let users = poll.users.clone();
        users
            .into_iter()
            .map(move |user| rc_user(rc, &poll, &user, env))
    }))
}

/// fetchmail's `auth` value as the account model's setting; what rfetch cannot do is an
/// error naming the line, never a fall back to the plain password.
fn rc_auth(auth: AuthType, line: u32, bad: &dyn Fn(u32, String) -> Error) -> Result<AuthSetting> {
    let method = |m: &str| Ok(AuthSetting::Method(m.to_owned()));
    match auth {
        AuthType::Any => Ok(AuthSetting::Auto),
        AuthType::Password => method("PASSWORD"),
        AuthType::CramMd5 => method("CRAM-MD5"),
        AuthType::External => method("EXTERNAL"),
        AuthType::Implicit => method("IMPLICIT"),
        AuthType::OauthBearer => method("OAUTHBEARER"),
        AuthType::Xoauth2 => method("XOAUTH2"),
        AuthType::KerberosV4
        | AuthType::KerberosV5
        | AuthType::Gssapi
        | AuthType::Otp
        | AuthType::Ntlm
        | AuthType::Msn => Err(bad(
            line,
            format!(
                "auth {} is not supported by rfetch (use any, password, cram-md5, external, \
                 oauthbearer, xoauth2 or ssh)",
                auth.name()
            ),
        )),
    }
}

fn rc_user(rc: &FetchmailRc, poll: &PollEntry, user: &UserEntry, env: &Env) -> Result<RcPoll> {
    let path = &rc.source;
    let at = |line: u32| Provenance::file(path.clone(), line);
    let here = at(user.line);
    let bad = |line: u32, msg: String| {
        Error::new(
            ErrorKind::Config,
            format!("{}:{line}: {msg}", path.display()),
        )
    };
    let s = |v: &str, line: u32| Some(Sourced::new(v.to_owned(), at(line)));
    let o = &user.options;
    let so = &poll.server;

    let protocol = match so.protocol.as_ref().map(|p| (p.value, p.line)) {
        // AUTO (and no protocol) is IMAP: rfetch does not probe.
        None | Some((Protocol::Imap | Protocol::Auto, _)) => FetchProtocol::Imap,
        Some((Protocol::Pop3 | Protocol::Apop, _)) => FetchProtocol::Pop3,
        Some((other, line)) => {
            return Err(bad(
                line,
                format!(
                    "protocol {} is not supported by rfetch (use pop3 or imap)",
                    other.name()
                ),
            ));
        }
    };
    let mut server = ServerSettings {
        host: s(poll.host(), poll.line),
        ..ServerSettings::default()
    };
    if let Some(svc) = &so.service {
        let port = service_port(&svc.value).ok_or_else(|| {
            bad(
                svc.line,
                format!(
                    "service {:?} is not a port number or a known service",
                    svc.value
                ),
            )
        })?;
        server.port = Some(Sourced::new(port, at(svc.line)));
    }
    if let Some(a) = &so.auth {
        server.auth = Some(Sourced::new(rc_auth(a.value, a.line, &bad)?, at(a.line)));
    }
    if let Some(t) = &so.timeout {
        server.timeout = Some(Sourced::new(
            (t.value > 0).then(|| std::time::Duration::from_secs(t.value)),
            at(t.line),
        ));
    }
    let login = user
        .remote_name()
        .map(str::to_owned)
        .or_else(|| env.user.clone())
        .unwrap_or_default();
    server.user = s(&login, user.line);
    if let Some(pw) = &o.password {
        server.password = Some(Sourced::new(
            Secret::Inline(pw.value.expose().to_owned()),
            at(pw.line),
        ));
    } else if let Some(pe) = &o.passwordeval {
        server.password = Some(Sourced::new(Secret::Command(pe.value.clone()), at(pe.line)));
    } else if let Some(pf) = &o.passwordfile {
        server.password = Some(Sourced::new(Secret::File(pf.value.clone()), at(pf.line)));
    }
    // TLS: `ssl` is implicit TLS; without it rfetch insists on STLS/STARTTLS (fetchmail 6.4
    // tries it opportunistically; rfetch never falls back to plaintext).
    // 7.0's `sslmode wrapped` is 6.4's `ssl`; `starttls=must` and `=may` both require
    // STARTTLS (the parser refuses `none`).
    let ssl = o.ssl.as_ref().is_some_and(|v| v.value)
        || o.sslmode.as_ref().is_some_and(|m| m.value == "wrapped");
    server.tls = Some(Sourced::new(true, here.clone()));
    server.tls_starttls = Some(Sourced::new(!ssl, here.clone()));
    if let Some(ck) = &o.sslcertck {
        server.tls_certcheck = Some(Sourced::new(ck.value, at(ck.line)));
    }
    match (&o.sslcertfile, &o.sslcertpath) {
        (Some(_), Some(d)) => {
            return Err(bad(
                d.line,
                "sslcertfile and sslcertpath together: rfetch trusts one of them; put the \
                 bundle's certificates into the directory, or use the file alone"
                    .into(),
            ));
        }
        (Some(f), None) => {
            server.tls_trust_file =
                Some(Sourced::new(TrustFile::Path(f.value.clone()), at(f.line)));
        }
        (None, Some(d)) => {
            server.tls_trust_file = Some(Sourced::new(TrustFile::Dir(d.value.clone()), at(d.line)));
        }
        (None, None) => {}
    }
    if let Some(fp) = &o.sslfingerprint {
        if let Some(sha256) = crate::net::parse_fingerprint(&fp.value) {
            server.tls_fingerprint = Some(Sourced::new(Some(sha256), at(fp.line)));
        } else if let Some(legacy) = crate::net::LegacyPin::parse(&fp.value) {
            log::warn!(
                "{}:{}: sslfingerprint is {}, a digest that can be forged; rfetch checks it and \
                 prints the SHA-256 to use instead when it reaches the server",
                path.display(),
                fp.line,
                legacy.algorithm()
            );
            server.tls_fingerprint_legacy = Some(Sourced::new(legacy, at(fp.line)));
        } else {
            return Err(bad(
                fp.line,
                "sslfingerprint must be a SHA-256 fingerprint (32 hex pairs), or fetchmail's \
                 MD5 (16) or SHA-1 (20)"
                    .into(),
            ));
        }
    }
    if let Some(c) = &o.sslcert {
        server.tls_cert_file = Some(Sourced::new(c.value.clone(), at(c.line)));
    }
    if let Some(k) = &o.sslkey {
        server.tls_key_file = Some(Sourced::new(k.value.clone(), at(k.line)));
    }
    if let Some(cn) = &o.sslcommonname {
        server.tls_host_override = s(&cn.value, cn.line);
    }

    let local_user = user
        .locals
        .first()
        .map(|l| l.local.clone())
        .or_else(|| env.user.clone())
        .unwrap_or_else(|| "root".into());
    // `smtpaddress`: the domain local names are qualified with for SMTP/LMTP.
    let smtp_domain = o
        .smtpaddress
        .as_ref()
        .map_or("localhost", |d| d.value.as_str())
        .to_owned();
    let smtp_recipient = if let Some(name) = &o.smtpname {
        name.value.clone()
    } else if local_user.contains('@') {
        local_user.clone()
    } else {
        format!("{local_user}@{smtp_domain}")
    };
    let lmtp = o.lmtp.as_ref().is_some_and(|v| v.value);
    // The hosts after the first of an `smtphost` list (not with an mda, which wins).
    let smtp_fallbacks = match (&o.mda, &o.smtphosts) {
        (None, Some(h)) => {
            smtp_endpoints(h.value.iter().skip(1), lmtp).map_err(|m| bad(h.line, m))?
        }
        _ => Vec::new(),
    };
    let target = if let Some(mda) = &o.mda {
        Sourced::new(Target::MdaShell(mda.value.clone()), at(mda.line))
    } else {
        let (host, line) = match &o.smtphosts {
            Some(h) => (
                h.value
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "localhost".into()),
                h.line,
            ),
            None => ("localhost".to_owned(), user.line),
        };
        Sourced::new(
            smtp_target(&host, lmtp).map_err(|m| bad(line, m))?,
            at(line),
        )
    };

    // fetchmail: stripcr is on for an MDA unless `no stripcr`.
    let stripcr = o.stripcr.as_ref().is_none_or(|v| v.value);
    let forcecr = o.forcecr.as_ref().is_some_and(|v| v.value);
    let multidrop = if user.is_multidrop() {
        Some(multidrop_rules(rc, poll, user, env))
    } else {
        None
    };
    let sourced = |c: &Option<Located<String>>| {
        c.as_ref()
            .map(|c| Sourced::new(c.value.clone(), at(c.line)))
    };
    let g = &rc.globals;
    let mut fetch = FetchSettings::new(Sourced::new(protocol, at(poll.line)));
    fetch.server = server;
    if let Some(f) = &o.folders {
        fetch.folders = Some(Sourced::new(f.value.clone(), at(f.line)));
    }
    fetch.keep = o.keep.as_ref().map(|v| Sourced::new(v.value, at(v.line)));
    fetch.fetchall = o
        .fetchall
        .as_ref()
        .map(|v| Sourced::new(v.value, at(v.line)));
    fetch.idle = o.idle.as_ref().map(|v| Sourced::new(v.value, at(v.line)));
    fetch.target = Some(target);
    fetch.tuning = tuning(o);
    Ok(RcPoll {
        name: poll.label.clone(),
        skip: poll.skip,
        fetch,
        local_user,
        smtp_recipient,
        invisible: g.invisible.as_ref().is_some_and(|v| v.value),
        every_nth_poll: so.interval.as_ref().map_or(1, |v| v.value.max(1)),
        multidrop,
        smtp_domain,
        stripcr,
        forcecr,
        dropstatus: o.dropstatus.as_ref().is_some_and(|v| v.value),
        dropdelivered: o.dropdelivered.as_ref().is_some_and(|v| v.value),
        smtp_fallbacks,
        antispam: o
            .antispam
            .as_ref()
            .map(|a| antispam_codes(&a.value))
            .unwrap_or_default(),
        plugin: sourced(&so.plugin),
        plugout: sourced(&so.plugout),
        preconnect: o.preconnect.as_ref().map(|c| c.value.clone()),
        postconnect: o.postconnect.as_ref().map(|c| c.value.clone()),
        softbounce: g.softbounce.as_ref().is_none_or(|v| v.value),
        bouncemail: g.bouncemail.as_ref().is_none_or(|v| v.value),
        postmaster: rc_postmaster(rc, env),
    })
}

/// The limits and pacing of a user description, with fetchmail's meaning of zero (no limit for
/// `limit`, `fetchlimit` and `idletimeout`; never reconnect for `batchlimit`).
pub fn tuning(o: &UserOptions) -> FetchTuning {
    let count = |v: &Option<Located<u64>>| v.as_ref().map(|v| v.value);
    let flag = |v: &Option<Located<bool>>| v.as_ref().is_some_and(|v| v.value);
    FetchTuning {
        limit: count(&o.limit).filter(|&v| v > 0),
        fetchlimit: count(&o.fetchlimit).filter(|&v| v > 0),
        batchlimit: count(&o.batchlimit).unwrap_or(0),
        limitflush: flag(&o.limitflush),
        flush: flag(&o.flush),
        expunge: count(&o.expunge),
        idle_timeout: count(&o.idletimeout).filter(|&v| v > 0),
        force_idle: flag(&o.forceidle),
        // fetchmailrc has no such keyword: the default bound applies.
        max_connections: None,
    }
}

/// A port from fetchmail's `service`/`-P`: a number, or one of the four mail service names.
pub fn service_port(service: &str) -> Option<u16> {
    match service {
        "pop3" => Some(110),
        "pop3s" => Some(995),
        "imap" => Some(143),
        "imaps" => Some(993),
        p => p.parse::<u16>().ok(),
    }
}

/// The SMTP or LMTP listener of `smtphost`/`-S` (`host[/port]`); LMTP needs its port.
pub fn smtp_target(host: &str, lmtp: bool) -> std::result::Result<Target, String> {
    if host.starts_with('/') {
        return Err(format!(
            "smtphost {host}: local sockets are not supported by rfetch"
        ));
    }
    let (h, port) = match host.split_once('/') {
        Some((h, p)) => (
            h.to_owned(),
            Some(
                p.parse::<u16>()
                    .map_err(|_| format!("smtphost {host}: bad port"))?,
            ),
        ),
        None => (host.to_owned(), None),
    };
    if lmtp {
        let port = port.ok_or("lmtp needs a port: smtphost host/port")?;
        Ok(Target::Lmtp(Endpoint { host: h, port }))
    } else {
        Ok(Target::Smtp(Endpoint {
            host: h,
            port: port.unwrap_or(25),
        }))
    }
}

/// fetchmail's `antispam` list as reply codes; `-1` means none. The parser admits only -1
/// alone or codes from 100 to 599.
pub fn antispam_codes(codes: &[i64]) -> Vec<u16> {
    codes
        .iter()
        .filter_map(|&c| u16::try_from(c).ok())
        .filter(|c| (100..=599).contains(c))
        .collect()
}

/// The listeners of an `smtphost`/`-S` list, in order.
pub fn smtp_endpoints<'a>(
    hosts: impl Iterator<Item = &'a String>,
    lmtp: bool,
) -> std::result::Result<Vec<Endpoint>, String> {
    hosts
        .map(|h| match smtp_target(h, lmtp)? {
            Target::Smtp(e) | Target::Lmtp(e) => Ok(e),
            _ => Err(format!("smtphost {h}: not an SMTP or LMTP listener")),
        })
        .collect()
}

/// fetchmail's postmaster: `set postmaster`, else the invoking user, else "postmaster" (root).
fn rc_postmaster(rc: &FetchmailRc, env: &Env) -> String {
    rc.globals
        .postmaster
        .as_ref()
        .map(|p| p.value.clone())
        .or_else(|| env.user.clone().filter(|u| u != "root"))
        .unwrap_or_else(|| "postmaster".to_owned())
}

/// The sorting rules of a multidrop user entry (fetchmail's defaults: envelope `Received`,
/// our domains the poll name, `via`, `aka` and `localdomains`, the postmaster from
/// `set postmaster`, else the invoking user, else "postmaster").
fn multidrop_rules(
    rc: &FetchmailRc,
    poll: &PollEntry,
    user: &UserEntry,
    env: &Env,
) -> MultidropRules {
    let so = &poll.server;
    let envelope = match so.envelope.as_ref().map(|e| &e.value) {
        None => Some((0, "Received".to_owned())),
        Some(Envelope::Disabled) => None,
        Some(Envelope::Header { skip, name }) => Some((*skip, name.clone())),
    };
    let mut domains = vec![poll.label.to_ascii_lowercase()];
    if let Some(via) = &so.via {
        domains.push(via.value.to_ascii_lowercase());
    }
    for list in [&so.aka, &so.localdomains].into_iter().flatten() {
        domains.extend(list.value.iter().map(|d| d.to_ascii_lowercase()));
    }
    let postmaster = rc_postmaster(rc, env);
    MultidropRules {
        names: user
            .locals
            .iter()
            .map(|l| {
                let server = l.server_name.clone().unwrap_or_else(|| l.local.clone());
                (server, l.local.clone())
            })
            .collect(),
        wildcard: user.wildcard,
        envelope,
        qvirtual: so.qvirtual.as_ref().map(|q| q.value.clone()),
        domains,
        postmaster,
    }
}
