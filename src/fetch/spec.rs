//! What one poll does, whatever file described it: a [`PollSpec`] built from a native TOML
//! account (`[accounts.NAME.fetch]`) or from a fetchmailrc poll/user entry (its server and user
//! options, `mda`, `smtphost`/`lmtp`, `is ... here`), plus the command-line
//! overrides (`-k`, `-K`, `-a`, `-l`, `-B`, `-b`, `--invisible`).

use std::time::Duration;

use super::multidrop;
use crate::account::AuthSetting;
use crate::account::{
    Account, Env, FetchProtocol, FetchSettings, Provenance, Secret, ServerSettings, Sourced,
    Target, TrustFile,
};
use crate::config::fetchmailrc::{self, AuthType, FetchmailRc, PollEntry, Protocol, UserEntry};
use crate::deliver::{DropHeaders, LineEnds};
use crate::error::{Error, ErrorKind, Result};
use crate::hint::Vocabulary;
use crate::net::{Endpoint, TlsMode};

/// fetchmail's IDLE re-issue period (1680 s), below the 30-minute server limit of RFC 2177:
/// a poll's `idle_timeout` when none is configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(1680);

/// One mailbox to poll and where its mail goes.
#[derive(Debug, Clone)]
pub struct PollSpec {
    /// The account name (TOML) or poll label (fetchmailrc): what positional arguments select.
    pub name: String,
    /// fetchmailrc `skip`: polled only when named.
    pub skip: bool,
    pub fetch: FetchSettings,
    /// The local recipient: `%T` for an MDA, the Received `for` address.
    pub local_user: String,
    /// RCPT TO for SMTP/LMTP forwarding.
    pub smtp_recipient: String,
    /// No Received header (`set invisible`, `--invisible`).
    pub invisible: bool,
    /// The file language the poll came from: error hints name its keys.
    pub vocabulary: Vocabulary,
    /// fetchmailrc `interval N`: in daemon mode, poll only every N-th cycle (1: every cycle).
    pub every_nth_poll: u64,
    /// Multidrop (several local names, or `*`): each message is sorted to its local users
    /// (RCPT TO `user@`[`smtp_domain`](Self::smtp_domain)).
    pub multidrop: Option<multidrop::Rules>,
    /// The domain local names are qualified with for SMTP/LMTP (`smtpaddress`, else localhost).
    pub smtp_domain: String,
    /// The line ends an MDA is fed (`stripcr`, `forcecr`); SMTP and LMTP always carry CRLF.
    pub mda_line_ends: LineEnds,
    /// Header fields left out of every delivered message (`dropstatus`, `dropdelivered`).
    pub drop_headers: DropHeaders,
    /// The rest of an `smtphost` list: SMTP/LMTP listeners tried in turn when the target's
    /// cannot be reached.
    pub smtp_fallbacks: Vec<Endpoint>,
    /// SMTP/LMTP reply codes that mean "spam": the message is deleted, not delivered
    /// (`antispam`; empty: none).
    pub antispam: Vec<u16>,
    /// `plugin`, `plugout`, `preconnect`, `postconnect`.
    pub hooks: super::hooks::ConnectHooks,
    /// `softbounce`, `bouncemail`, `postmaster`: what a permanent refusal does.
    pub bounce: super::bounce::BouncePolicy,
}

impl PollSpec {
    /// The server's name as messages and the Received header show it.
    pub fn server_name(&self) -> String {
        self.fetch.server.host().unwrap_or("localhost").to_owned()
    }

    pub fn protocol_name(&self) -> &'static str {
        match self.fetch.protocol.value {
            FetchProtocol::Pop3 => "POP3",
            FetchProtocol::Imap => "IMAP",
        }
    }

    pub fn user(&self, env: &Env) -> String {
        self.fetch
            .server
            .user()
            .map(str::to_owned)
            .or_else(|| env.user.clone())
            .unwrap_or_default()
    }

    /// `-V`'s description of the poll.
    pub fn describe(&self, env: &Env) -> String {
        let f = &self.fetch;
        let ep = f
            .endpoint()
            .map(|e| format!("{}:{}", e.host, e.port))
            .unwrap_or_else(|e| format!("(unusable: {e})"));
        let tls = match f.tls_mode() {
            TlsMode::Implicit => "implicit TLS",
            TlsMode::Starttls => "STARTTLS (required)",
            TlsMode::Off => "no TLS",
        };
        let target = match f.target(env) {
            Target::Maildir(p) => format!("Maildir {}", p.display()),
            Target::Mbox(p) => format!("mbox {}", p.display()),
            Target::Mda(argv) => format!("MDA {}", argv.join(" ")),
            Target::MdaShell(cmd) => format!("MDA (sh -c) {cmd}"),
            Target::Smtp(e) => format!("SMTP {}:{} for {}", e.host, e.port, self.smtp_recipient),
            Target::Lmtp(e) => format!("LMTP {}:{} for {}", e.host, e.port, self.smtp_recipient),
        };
        let target = if self.smtp_fallbacks.is_empty() {
            target
        } else {
            let more: Vec<String> = self
                .smtp_fallbacks
                .iter()
                .map(|e| format!("{}:{}", e.host, e.port))
                .collect();
            format!(
                "{target} (then, while it cannot be reached, {})",
                more.join(", ")
            )
        };
        let mut out = format!(
            "Options for retrieving from {}@{}{}:\n  True name of server is {ep}.\n  Protocol is {}, {tls}.\n",
            self.user(env),
            self.name,
            if self.skip {
                " (skipped unless named)"
            } else {
                ""
            },
            self.protocol_name()
        );
        if self.skip {
            out.push_str("  This host will not be queried when no host is specified.\n");
        }
        if f.protocol.value == FetchProtocol::Imap {
            out.push_str(&format!("  Folders: {}.\n", f.folders().join(", ")));
        }
        out.push_str(&format!(
            "  {} messages will be retrieved (--all {}).\n  Fetched messages will {}be kept on the server (--keep {}).\n",
            if f.fetchall() { "All" } else { "Only new" },
            on_off(f.fetchall()),
            if f.keep() { "" } else { "not " },
            on_off(f.keep())
        ));
        if let Some(l) = self.fetch.tuning.limit {
            out.push_str(&format!("  Message size limit is {l} octets.\n"));
        }
        if let Some(l) = self.fetch.tuning.fetchlimit {
            out.push_str(&format!("  Received-message limit is {l}.\n"));
        }
        if self.every_nth_poll > 1 {
            out.push_str(&format!(
                "  In daemon mode polled every {} cycles (interval {}).\n",
                self.every_nth_poll, self.every_nth_poll
            ));
        }
        out.push_str(&format!(
            "  Messages seen before will {}be flushed (--flush {}).\n",
            if self.fetch.tuning.flush { "" } else { "not " },
            on_off(self.fetch.tuning.flush)
        ));
        if self.fetch.tuning.limit.is_some() {
            out.push_str(&format!(
                "  Oversized messages will {}be flushed (--limitflush {}).\n",
                if self.fetch.tuning.limitflush {
                    ""
                } else {
                    "not "
                },
                on_off(self.fetch.tuning.limitflush)
            ));
        }
        match self.fetch.tuning.expunge {
            Some(0) => {
                out.push_str("  Deletions are committed at the end of the poll (--expunge 0).\n")
            }
            Some(n) => out.push_str(&format!(
                "  Deletions are committed every {n} messages (--expunge {n}).\n"
            )),
            None => {}
        }
        out.push_str(&format!("  Messages will be delivered to {target}.\n"));
        let h = &self.hooks;
        for (what, cmd) in [
            ("Server connection will be through plugin", &h.plugin),
            ("Listener connection will be through plugout", &h.plugout),
            ("Server connection will be preceded by", &h.preconnect),
            ("Server connection will be followed by", &h.postconnect),
        ] {
            if let Some(cmd) = cmd {
                out.push_str(&format!("  {what} `{cmd}`.\n"));
            }
        }
        let b = &self.bounce;
        out.push_str(&if b.softbounce {
            "  Mail the listener refuses permanently is kept on the server (softbounce on).\n"
                .to_owned()
        } else {
            format!(
                "  Mail the listener refuses permanently is reported to {} and then deleted (softbounce off).\n",
                if b.bouncemail {
                    "its sender"
                } else {
                    "the postmaster"
                }
            )
        });
        if let Some(m) = &self.multidrop {
            let names: Vec<String> = m
                .names
                .iter()
                .map(|(srv, loc)| {
                    if srv == loc {
                        loc.clone()
                    } else {
                        format!("'{srv}'='{loc}'")
                    }
                })
                .chain(m.wildcard.then(|| "*".to_owned()))
                .collect();
            out.push_str(&format!(
                "  Multidrop: local names {}; recipients from {}; domains {}; unmatched mail to {}.\n",
                names.join(" "),
                m.envelope.as_ref().map_or_else(
                    || "To/Cc/Bcc".to_owned(),
                    |(skip, h)| format!("the {h} header (skipping {skip}), else To/Cc/Bcc")
                ),
                m.domains.join(" "),
                m.postmaster
            ));
        }
        if f.idle() && f.protocol.value == FetchProtocol::Imap {
            out.push_str(&format!(
                "  After each poll the connection stays open in IMAP IDLE (re-issued every {} s{}); new mail is fetched at once. Each folder gets its own connection.\n",
                self.fetch.tuning.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT.as_secs()),
                if self.fetch.tuning.force_idle {
                    ", sent even when not announced"
                } else {
                    "; without the IDLE capability: NOOP every 28 s"
                }
            ));
        } else if f.idle() {
            out.push_str("  IDLE is configured but applies to IMAP only.\n");
        }
        out
    }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The polls of a native TOML account set: every account with a `fetch` table.
pub fn from_accounts(accounts: &[Account], env: &Env) -> Vec<PollSpec> {
    accounts
        .iter()
        .filter_map(|a| {
            let fetch = a.fetch.clone()?;
            let local_user = env.user.clone().unwrap_or_else(|| "root".into());
            let smtp_recipient = match &fetch.recipient {
                Some(r) => r.value.clone(),
                None => format!("{local_user}@localhost"),
            };
            Some(PollSpec {
                name: a.name.clone(),
                skip: false,
                smtp_recipient,
                local_user,
                fetch,
                invisible: false,
                vocabulary: Vocabulary::TomlFetch,
                every_nth_poll: 1,
                multidrop: None,
                smtp_domain: "localhost".to_owned(),
                mda_line_ends: LineEnds::default(),
                drop_headers: DropHeaders::default(),
                smtp_fallbacks: Vec::new(),
                antispam: Vec::new(),
                hooks: Default::default(),
                bounce: Default::default(),
            })
        })
        .collect()
}

/// The polls of a fetchmailrc: one per user entry of every poll/skip record.
pub fn from_fetchmailrc(rc: &FetchmailRc, env: &Env) -> Result<Vec<PollSpec>> {
    rc.check_refusals()?;
    let invisible = rc.globals.invisible.as_ref().is_some_and(|v| v.value);
    let mut out = Vec::new();
    for poll in rc.effective_polls() {
        for user in &poll.users {
            let mut spec = rc_user(rc, &poll, user, env)?;
            spec.invisible = invisible;
            out.push(spec);
        }
    }
    Ok(out)
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

fn rc_user(rc: &FetchmailRc, poll: &PollEntry, user: &UserEntry, env: &Env) -> Result<PollSpec> {
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

    // fetchmail: stripcr is on for an MDA unless `no stripcr`, and wins over forcecr; so
    // forcecr changes what an MDA gets only with `no stripcr`.
    let stripcr = o.stripcr.as_ref().is_none_or(|v| v.value);
    let forcecr = o.forcecr.as_ref().is_some_and(|v| v.value);
    let mda_line_ends = match (stripcr, forcecr) {
        (true, _) => LineEnds::Lf,
        (false, false) => LineEnds::AsReceived,
        (false, true) => LineEnds::Crlf,
    };
    let multidrop = if user.is_multidrop() {
        Some(multidrop_rules(rc, poll, user, env))
    } else {
        None
    };
    let command = |c: &Option<crate::config::fetchmailrc::Located<String>>, kw: &str| {
        c.as_ref()
            .map(|c| {
                super::hooks::check_connect_command(&c.value)
                    .map(|()| c.value.clone())
                    .map_err(|why| bad(c.line, format!("{kw} {:?}: {why}", c.value)))
            })
            .transpose()
    };
    let hooks = super::hooks::ConnectHooks {
        plugin: command(&so.plugin, "plugin")?,
        plugout: command(&so.plugout, "plugout")?,
        preconnect: o.preconnect.as_ref().map(|c| c.value.clone()),
        postconnect: o.postconnect.as_ref().map(|c| c.value.clone()),
    };
    let g = &rc.globals;
    let bounce = super::bounce::BouncePolicy {
        softbounce: g.softbounce.as_ref().is_none_or(|v| v.value),
        bouncemail: g.bouncemail.as_ref().is_none_or(|v| v.value),
        postmaster: rc_postmaster(rc, env),
    };
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
    fetch.tuning = fetchmailrc::lower::tuning(o);
    Ok(PollSpec {
        name: poll.label.clone(),
        skip: poll.skip,
        fetch,
        local_user,
        smtp_recipient,
        invisible: false,
        vocabulary: Vocabulary::Fetchmailrc,
        every_nth_poll: so.interval.as_ref().map_or(1, |v| v.value.max(1)),
        multidrop,
        smtp_domain,
        mda_line_ends,
        drop_headers: DropHeaders {
            status: o.dropstatus.as_ref().is_some_and(|v| v.value),
            delivered: o.dropdelivered.as_ref().is_some_and(|v| v.value),
        },
        smtp_fallbacks,
        antispam: o
            .antispam
            .as_ref()
            .map(|a| antispam_codes(&a.value))
            .unwrap_or_default(),
        hooks,
        bounce,
    })
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

/// A poll named only on the command line (`rfetch -p IMAP -u bob mail.example.org`): the
/// server `name`, fetchmail's defaults (IMAP for AUTO, the invoking user's login, the password
/// from ~/.netrc or the prompt, SMTP to localhost port 25), and rfetch's rule that the
/// connection is encrypted (STARTTLS unless --ssl). The command-line overrides do the rest.
pub fn from_command_line(name: &str, env: &Env) -> PollSpec {
    let cl = || Provenance::CommandLine;
    let mut fetch = FetchSettings::new(Sourced::new(FetchProtocol::Imap, cl()));
    fetch.server.host = Some(Sourced::new(name.to_owned(), cl()));
    if let Some(u) = &env.user {
        fetch.server.user = Some(Sourced::new(u.clone(), cl()));
    }
    fetch.server.tls = Some(Sourced::new(true, cl()));
    fetch.server.tls_starttls = Some(Sourced::new(true, cl()));
    fetch.target = Some(Sourced::new(
        Target::Smtp(Endpoint {
            host: "localhost".to_owned(),
            port: 25,
        }),
        cl(),
    ));
    let local_user = env.user.clone().unwrap_or_else(|| "root".into());
    PollSpec {
        name: name.to_owned(),
        skip: false,
        fetch,
        smtp_recipient: format!("{local_user}@localhost"),
        local_user,
        invisible: false,
        vocabulary: Vocabulary::Fetchmailrc,
        every_nth_poll: 1,
        multidrop: None,
        smtp_domain: "localhost".to_owned(),
        mda_line_ends: LineEnds::default(),
        drop_headers: DropHeaders::default(),
        smtp_fallbacks: Vec::new(),
        antispam: Vec::new(),
        hooks: Default::default(),
        bounce: Default::default(),
    }
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
) -> multidrop::Rules {
    use crate::config::fetchmailrc::Envelope;
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
    multidrop::Rules {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fetchmailrc::parse_fetchmailrc;

    fn env() -> Env {
        Env {
            home: Some("/home/u".into()),
            user: Some("u".into()),
            ..Env::from_process()
        }
    }

    #[test]
    fn rc_entries_become_polls() {
        let rc = parse_fetchmailrc(
            "poll pop.example proto pop3 port 1995\n  user bob there with password secret is ann here ssl keep limit 1000 fetchlimit 5\n  mda \"procmail -d %T\"\n\
             poll imap.example proto imap\n  user carl password x folder INBOX,Lists smtphost mx/2525 smtpaddress example.org\n\
             skip lm.example proto pop3 user d password y lmtp smtphost localhost/24\n",
            std::path::Path::new("/rc"),
        )
        .unwrap();
        let p = from_fetchmailrc(&rc, &env()).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].fetch.protocol.value, FetchProtocol::Pop3);
        assert_eq!(p[0].fetch.endpoint().unwrap().port, 1995);
        assert_eq!(p[0].fetch.tls_mode(), TlsMode::Implicit);
        assert_eq!(p[0].user(&env()), "bob");
        assert_eq!(p[0].local_user, "ann");
        assert!(p[0].fetch.keep());
        assert_eq!(
            (p[0].fetch.tuning.limit, p[0].fetch.tuning.fetchlimit),
            (Some(1000), Some(5))
        );
        assert_eq!(
            p[0].fetch.target(&env()),
            Target::MdaShell("procmail -d %T".into())
        );
        assert_eq!(p[1].fetch.tls_mode(), TlsMode::Starttls);
        assert_eq!(p[1].fetch.folders(), ["INBOX", "Lists"]);
        // No `is`: the local name is the invoking user.
        assert_eq!(p[1].smtp_recipient, "u@example.org");
        assert_eq!(
            p[1].fetch.target(&env()),
            Target::Smtp(Endpoint {
                host: "mx".into(),
                port: 2525
            })
        );
        assert!(p[2].skip);
        assert_eq!(
            p[2].fetch.target(&env()),
            Target::Lmtp(Endpoint {
                host: "localhost".into(),
                port: 24
            })
        );
        assert!(p[0].describe(&env()).contains("Maildir") || p[0].describe(&env()).contains("MDA"));
    }

    #[test]
    fn disposal_options_from_the_rc() {
        let rc = parse_fetchmailrc(
            "poll a proto pop3 user x password y flush limitflush limit 10 expunge 0\n\
             poll b proto imap user x password y no flush\n",
            std::path::Path::new("/rc"),
        )
        .unwrap();
        let p = from_fetchmailrc(&rc, &env()).unwrap();
        assert!(p[0].fetch.tuning.flush && p[0].fetch.tuning.limitflush);
        assert_eq!(
            (p[0].fetch.tuning.limit, p[0].fetch.tuning.expunge),
            (Some(10), Some(0))
        );
        assert!(p[0].describe(&env()).contains("--flush on"));
        assert!(p[0].describe(&env()).contains("--limitflush on"));
        assert!(!p[1].fetch.tuning.flush && !p[1].fetch.tuning.limitflush);
        assert_eq!(p[1].fetch.tuning.expunge, None);
    }

    #[test]
    fn toml_recipient_is_the_smtp_recipient() {
        let e = env();
        let parsed = crate::config::toml::parse(
            "[accounts.a.fetch]\nprotocol = \"imap\"\nhost = \"h\"\nlmtp = \"127.0.0.1:24\"\nrecipient = \"bob@localhost\"\n\
             [accounts.b.fetch]\nprotocol = \"pop3\"\nhost = \"h\"\nsmtp = \"127.0.0.1:25\"\n",
            std::path::Path::new("/c.toml"),
            &e,
        )
        .unwrap();
        let p = from_accounts(&parsed.accounts, &e);
        assert_eq!(p[0].smtp_recipient, "bob@localhost");
        assert!(p[0].describe(&e).contains("for bob@localhost"));
        assert_eq!(
            p[1].smtp_recipient, "u@localhost",
            "default: $USER@localhost"
        );
    }

    #[test]
    fn toml_tuning_keys_match_the_rc_options() {
        let e = env();
        let parsed = crate::config::toml::parse(
            "[accounts.a.fetch]\nprotocol = \"imap\"\nhost = \"h\"\nlimit = 5000\nfetchlimit = 20\n\
             batchlimit = 7\nlimitflush = true\nflush = true\nexpunge = 0\nidle_timeout = 600\n\
             force_idle = true\n\
             [accounts.b.fetch]\nprotocol = \"pop3\"\nhost = \"h\"\nlimit = 0\n",
            std::path::Path::new("/c.toml"),
            &e,
        )
        .unwrap();
        let p = from_accounts(&parsed.accounts, &e);
        assert_eq!(
            (
                p[0].fetch.tuning.limit,
                p[0].fetch.tuning.fetchlimit,
                p[0].fetch.tuning.batchlimit
            ),
            (Some(5000), Some(20), 7)
        );
        assert!(
            p[0].fetch.tuning.limitflush && p[0].fetch.tuning.flush && p[0].fetch.tuning.force_idle
        );
        assert_eq!(
            (p[0].fetch.tuning.expunge, p[0].fetch.tuning.idle_timeout),
            (Some(0), Some(600))
        );
        // 0 is "no limit", as in fetchmail; the rest keep their defaults.
        assert_eq!(
            (
                p[1].fetch.tuning.limit,
                p[1].fetch.tuning.fetchlimit,
                p[1].fetch.tuning.batchlimit
            ),
            (None, None, 0)
        );
        assert!(
            !p[1].fetch.tuning.flush
                && !p[1].fetch.tuning.limitflush
                && !p[1].fetch.tuning.force_idle
        );
        assert_eq!(
            (p[1].fetch.tuning.expunge, p[1].fetch.tuning.idle_timeout),
            (None, None)
        );

        let bad = crate::config::toml::parse(
            "[accounts.a.fetch]\nprotocol = \"pop3\"\nhost = \"h\"\nfetchlimit = -3\n",
            std::path::Path::new("/c.toml"),
            &e,
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("/c.toml:4") && bad.contains("fetchlimit"),
            "{bad}"
        );
    }

    #[test]
    fn rc_interval_polls_every_nth_cycle() {
        let rc = parse_fetchmailrc(
            "poll a proto pop3 interval 3 user x password y\npoll b proto pop3 user x password y\n",
            std::path::Path::new("/rc"),
        )
        .unwrap();
        let p = from_fetchmailrc(&rc, &env()).unwrap();
        assert_eq!((p[0].every_nth_poll, p[1].every_nth_poll), (3, 1));
        assert!(p[0].describe(&env()).contains("polled every 3 cycles"));
        assert!(!p[1].describe(&env()).contains("cycles"));
    }

    #[test]
    fn unsupported_protocol_names_the_line() {
        let rc = parse_fetchmailrc(
            "poll x proto etrn user a password b\n",
            std::path::Path::new("/rc"),
        )
        .unwrap();
        let e = from_fetchmailrc(&rc, &env()).unwrap_err();
        assert!(e.to_string().starts_with("/rc:1:"), "{e}");
    }

    #[test]
    fn multidrop_user_entries_get_sorting_rules() {
        let rc = parse_fetchmailrc(
            "set postmaster pm\npoll mail.example.org via 127.0.0.1 proto pop3 aka example.org \
             localdomains lists.example.org envelope 1 X-Original-To\n  \
             user shared password p to 'info'='carol' alice * here smtpaddress example.org\n",
            std::path::Path::new("/rc"),
        )
        .unwrap();
        let spec = &from_fetchmailrc(&rc, &env()).unwrap()[0];
        let m = spec.multidrop.as_ref().expect("multidrop");
        assert_eq!(
            m.names,
            [
                ("info".to_owned(), "carol".to_owned()),
                ("alice".to_owned(), "alice".to_owned())
            ]
        );
        assert!(m.wildcard);
        assert_eq!(m.envelope, Some((1, "X-Original-To".to_owned())));
        assert_eq!(
            m.domains,
            [
                "mail.example.org",
                "127.0.0.1",
                "example.org",
                "lists.example.org"
            ]
        );
        assert_eq!(m.postmaster, "pm");
        assert_eq!(spec.smtp_domain, "example.org");
        // The defaults: envelope Received.
        let rc = parse_fetchmailrc(
            "poll x proto pop3\n  user shared password p is alice bob here\n",
            std::path::Path::new("/rc"),
        )
        .unwrap();
        let m = from_fetchmailrc(&rc, &env()).unwrap()[0]
            .multidrop
            .clone()
            .unwrap();
        assert_eq!(m.envelope, Some((0, "Received".to_owned())));
        // One local name, even mapped, is single-drop.
        let rc = parse_fetchmailrc(
            "poll x proto pop3 user shared password p is alice here\n",
            std::path::Path::new("/rc"),
        )
        .unwrap();
        let spec = &from_fetchmailrc(&rc, &env()).unwrap()[0];
        assert!(spec.multidrop.is_none());
        assert_eq!(spec.local_user, "alice");
    }

    #[test]
    fn multidrop_with_an_mda_is_allowed() {
        let rc = parse_fetchmailrc(
            "poll x proto pop3\n  user shared password p is alice bob here\n  mda \"procmail -d %T\"\n",
            std::path::Path::new("/rc"),
        )
        .unwrap();
        assert!(
            from_fetchmailrc(&rc, &env()).unwrap()[0]
                .multidrop
                .is_some()
        );
    }
}
