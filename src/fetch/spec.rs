//! What one poll does, whatever file described it: a [`PollSpec`] built from a native TOML
//! account (`[accounts.NAME.fetch]`) or from a fetchmailrc poll/user entry (its server and user
//! options, `mda`, `smtphost`/`lmtp`, `is ... here`), plus the command-line
//! overrides (`-k`, `-K`, `-a`, `-l`, `-B`, `-b`, `--invisible`).

use std::time::Duration;

use super::multidrop;
use crate::account::{Account, Env, FetchProtocol, FetchSettings, Provenance, Sourced, Target};
use crate::config::fetchmailrc::FetchmailRc;
use crate::config::fetchmailrc::lower::{self, RcPoll};
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
    /// The last QUIT of a POP3 poll goes out without waiting for its answer (the server's
    /// deletions): set by the run for a one-shot run's account that is alone on its server.
    pub quit_unanswered: bool,
}

impl PollSpec {
    /// A poll of `fetch` with fetchmail's defaults for everything else: mail for the invoking
    /// user (root when unknown), SMTP recipient `user@localhost`, a Received header, no
    /// multidrop, no hooks, every cycle.
    pub fn new(name: &str, fetch: FetchSettings, env: &Env, vocabulary: Vocabulary) -> Self {
        let local_user = env.user.clone().unwrap_or_else(|| "root".into());
        PollSpec {
            name: name.to_owned(),
            skip: false,
            fetch,
            smtp_recipient: format!("{local_user}@localhost"),
            local_user,
            invisible: false,
            vocabulary,
            every_nth_poll: 1,
            multidrop: None,
            smtp_domain: "localhost".to_owned(),
            mda_line_ends: LineEnds::default(),
            drop_headers: DropHeaders::default(),
            smtp_fallbacks: Vec::new(),
            antispam: Vec::new(),
            hooks: Default::default(),
            bounce: Default::default(),
            quit_unanswered: false,
        }
    }

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
            let recipient = fetch.recipient.as_ref().map(|r| r.value.clone());
            let mut spec = PollSpec::new(&a.name, fetch, env, Vocabulary::TomlFetch);
            if let Some(r) = recipient {
                spec.smtp_recipient = r;
            }
            Some(spec)
        })
        .collect()
}

/// The polls of a fetchmailrc: one per user entry of every poll/skip record, from the
/// lowering of the file into the account model.
pub fn from_fetchmailrc(rc: &FetchmailRc, env: &Env) -> Result<Vec<PollSpec>> {
    let mut out = Vec::new();
    for poll in lower::polls(rc, env)? {
        out.push(from_rc_poll(poll?)?);
    }
    Ok(out)
}

/// A lowered fetchmailrc poll as a [`PollSpec`]: the fetch layer's checks and types on top.
fn from_rc_poll(p: RcPoll) -> Result<PollSpec> {
    let command = |c: Option<Sourced<String>>, kw: &str| {
        c.map(|c| {
            super::hooks::check_connect_command(&c.value)
                .map(|()| c.value.clone())
                .map_err(|why| {
                    Error::new(
                        ErrorKind::Config,
                        format!("{}: {kw} {:?}: {why}", c.at, c.value),
                    )
                })
        })
        .transpose()
    };
    // fetchmail: stripcr wins over forcecr; so forcecr changes what an MDA gets only with
    // `no stripcr`.
    let mda_line_ends = match (p.stripcr, p.forcecr) {
        (true, _) => LineEnds::Lf,
        (false, false) => LineEnds::AsReceived,
        (false, true) => LineEnds::Crlf,
    };
    Ok(PollSpec {
        hooks: super::hooks::ConnectHooks {
            plugin: command(p.plugin, "plugin")?,
            plugout: command(p.plugout, "plugout")?,
            preconnect: p.preconnect,
            postconnect: p.postconnect,
        },
        bounce: super::bounce::BouncePolicy {
            softbounce: p.softbounce,
            bouncemail: p.bouncemail,
            postmaster: p.postmaster,
        },
        name: p.name,
        skip: p.skip,
        fetch: p.fetch,
        local_user: p.local_user,
        smtp_recipient: p.smtp_recipient,
        invisible: p.invisible,
        vocabulary: Vocabulary::Fetchmailrc,
        every_nth_poll: p.every_nth_poll,
        multidrop: p.multidrop,
        smtp_domain: p.smtp_domain,
        mda_line_ends,
        drop_headers: DropHeaders {
            status: p.dropstatus,
            delivered: p.dropdelivered,
        },
        smtp_fallbacks: p.smtp_fallbacks,
        antispam: p.antispam,
        quit_unanswered: false,
    })
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
    PollSpec::new(name, fetch, env, Vocabulary::Fetchmailrc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fetchmailrc::parse_fetchmailrc;

    /// The polls of the fetchmailrc `text`.
    fn rc_polls(text: &str) -> Result<Vec<PollSpec>> {
        let rc = parse_fetchmailrc(text, std::path::Path::new("/rc")).unwrap();
        from_fetchmailrc(&rc, &env())
    }

    fn env() -> Env {
        Env {
            home: Some("/home/u".into()),
            user: Some("u".into()),
            ..Env::from_process()
        }
    }

    #[test]
    fn rc_entries_become_polls() {
        let polls = rc_polls(
            "poll pop.example proto pop3 port 1995\n  user bob there with password secret is ann here ssl keep limit 1000 fetchlimit 5\n  mda \"procmail -d %T\"\n\
             poll imap.example proto imap\n  user carl password x folder INBOX,Lists smtphost mx/2525 smtpaddress example.org\n\
             skip lm.example proto pop3 user d password y lmtp smtphost localhost/24\n",
        );
        let p = polls.unwrap();
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
        let polls = rc_polls(
            "poll a proto pop3 user x password y flush limitflush limit 10 expunge 0\n\
             poll b proto imap user x password y no flush\n",
        );
        let p = polls.unwrap();
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
        let polls = rc_polls(
            "poll a proto pop3 interval 3 user x password y\npoll b proto pop3 user x password y\n",
        );
        let p = polls.unwrap();
        assert_eq!((p[0].every_nth_poll, p[1].every_nth_poll), (3, 1));
        assert!(p[0].describe(&env()).contains("polled every 3 cycles"));
        assert!(!p[1].describe(&env()).contains("cycles"));
    }

    #[test]
    fn unsupported_protocol_names_the_line() {
        let polls = rc_polls("poll x proto etrn user a password b\n");
        let e = polls.unwrap_err();
        assert!(e.to_string().starts_with("/rc:1:"), "{e}");
    }

    #[test]
    fn multidrop_user_entries_get_sorting_rules() {
        let polls = rc_polls(
            "set postmaster pm\npoll mail.example.org via 127.0.0.1 proto pop3 aka example.org \
             localdomains lists.example.org envelope 1 X-Original-To\n  \
             user shared password p to 'info'='carol' alice * here smtpaddress example.org\n",
        );
        let spec = &polls.unwrap()[0];
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
        let polls = rc_polls("poll x proto pop3\n  user shared password p is alice bob here\n");
        let m = polls.unwrap()[0].multidrop.clone().unwrap();
        assert_eq!(m.envelope, Some((0, "Received".to_owned())));
        // One local name, even mapped, is single-drop.
        let polls = rc_polls("poll x proto pop3 user shared password p is alice here\n");
        let spec = &polls.unwrap()[0];
        assert!(spec.multidrop.is_none());
        assert_eq!(spec.local_user, "alice");
    }

    #[test]
    fn multidrop_with_an_mda_is_allowed() {
        let polls = rc_polls(
            "poll x proto pop3\n  user shared password p is alice bob here\n  mda \"procmail -d %T\"\n",
        );
        assert!(polls.unwrap()[0].multidrop.is_some());
    }
}
