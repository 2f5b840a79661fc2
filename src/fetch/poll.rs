//! One poll of one account: connect, list, choose the messages not seen before, stream them into
//! the target in batches, and only after the target confirmed a batch (Maildir: one sync for the
//! batch; the others per message) commit the UIDs as seen (one state fsync per batch) and delete
//! them on the server unless `keep`. Maildir batches go through the batch journal
//! (fetch::journal); every other target has each message recorded in the seen log the moment it
//! confirmed it ([`StateLedger`]). Either way a kill makes at most the message in flight be
//! fetched again.
//!
//! Failure rules: a delivery failure (transient or permanent: fetchmail's softbounce) leaves
//! the message on the server and the poll goes on, except that with `no softbounce` a permanent
//! SMTP/LMTP refusal is reported to the sender (`fetch::bounce`) and the message, once the
//! report was accepted, is done with like a delivered one; a connection lost mid-batch leaves every
//! unconfirmed message on the server. With `nokeep`, messages already recorded as seen (a
//! previous run was interrupted between recording and the server's commit) are deleted
//! without being fetched again; over POP3 in a session of their own, committed by QUIT before
//! any new message is fetched, so the deletions of an interrupted run never pile up.
//!
//! fetchmail's disposal options: `flush` deletes the messages recorded as seen (delivered by
//! an earlier poll) also with `keep`; `limitflush` deletes messages over `limit` (sizes are
//! known before any body is fetched: POP3 LIST, IMAP RFC822.SIZE); `expunge N` paces the
//! deletions (IMAP: EXPUNGE every N; POP3: QUIT and a new session every N). These are the
//! only deletions of messages not delivered in the same poll.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use crate::account::{Env, FetchProtocol, Target as TargetSetting};
use crate::deliver::smtp::SmtpTarget;
use crate::deliver::{Deliver, Maildir, Mbox, Mda, MessageInfo};
use crate::error::{Error, ErrorKind, Result};
use crate::log as plog;
use crate::net::{ConnectOptions, Endpoint, TlsMode};
use crate::proto::imap::Search;
use crate::proto::smtp::Protocol as SmtpProtocol;
use crate::session::auth::{FetchAuth, Server as LoginServer};
use crate::session::imap::{ImapSession, ImapSettings};
use crate::session::pop3::{Pop3Session, Pop3Settings, Secret};

use super::batch::{Handling, deliver_batches};
use super::bounce;
pub use super::delivery::{BATCH, PollContext, PollReport};
use super::delivery::{Delivery, StateLedger};
use super::hooks;
use super::journal::StateKey;
use super::mailbox::imap::{Expunger, ImapMailbox};
use super::mailbox::pop3::{Pop3Mailbox, Pop3Round};
use super::multidrop::Sorted;
use super::pipe::{self, Target};
use super::spec::PollSpec;
use super::state::{AccountKey, UidValidityCheck};

/// Raises the soft limit on open files to the hard limit: a Maildir batch keeps each message's
/// file open until the batch is synced (the fsync goes through the descriptor that wrote it),
/// so a daemon polling many accounts at once needs more than the customary soft limit of 1024.
/// Best effort: a file that cannot be opened later is a transient delivery failure that leaves
/// the message on the server.
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            log::debug!("cannot raise the open-file limit: {e}");
        }
    }
}

/// Polls one account. Never panics on server input; every failure ends up in the report.
pub fn poll(spec: &PollSpec, ctx: &PollContext<'_>) -> PollReport {
    let mut report = PollReport::default();
    // fetchmail's `preconnect`: a failure aborts this poll (and is its error); `postconnect`
    // runs after every poll that got past it, whatever the poll's outcome.
    if let Err(e) = hooks::preconnect(&spec.name, &spec.hooks) {
        report.fail(e);
        return report;
    }
    let result = (|| -> Result<()> {
        let mut target = if ctx.check_only {
            None
        } else {
            Some(open_target(spec, ctx.env)?)
        };
        match spec.fetch.protocol.value {
            FetchProtocol::Pop3 => poll_pop3_sessions(spec, ctx, target.as_mut(), &mut report),
            FetchProtocol::Imap => poll_imap(spec, ctx, target.as_mut(), &mut report),
        }
    })();
    plog::progress(None);
    if let Err(e) = result {
        report.fail(e);
    }
    if let Err(e) = hooks::postconnect(&spec.name, &spec.hooks) {
        // The poll's own failure is the one shown and counted; this one is logged beside it.
        if report.error.is_some() {
            log::error!("{}", e.chain());
        } else {
            report.fail(e);
        }
    }
    report
}

/// Logs the fetchlimit stop the way fetchmail does.
fn fetchlimit_reached(account: &str, limit: u64, left: usize) {
    log::info!(
        target: plog::REPORT,
        "{account}: fetchlimit {limit} reached; {left} messages left on the server"
    );
}

/// Opens the account's delivery target.
pub fn open_target(spec: &PollSpec, env: &Env) -> Result<Target> {
    let host = env.hostname.clone().unwrap_or_else(|| "localhost".into());
    Ok(match spec.fetch.target(env) {
        TargetSetting::Maildir(p) => Target::Maildir(Maildir::open(p)?),
        TargetSetting::Mbox(p) => Target::Direct {
            description: p.display().to_string(),
            deliver: Box::new(Mbox::new(p)),
        },
        TargetSetting::Mda(argv) => Target::Direct {
            description: argv.join(" "),
            deliver: Box::new(Mda::argv(argv)?.with_line_ends(spec.mda_line_ends)),
        },
        TargetSetting::MdaShell(cmd) => Target::Direct {
            description: cmd.clone(),
            deliver: Box::new(Mda::shell(cmd)?.with_line_ends(spec.mda_line_ends)),
        },
        TargetSetting::Smtp(ep) => forward(spec, ep, SmtpProtocol::Smtp, host)?,
        TargetSetting::Lmtp(ep) => forward(spec, ep, SmtpProtocol::Lmtp, host)?,
    })
}

/// fetchmail's `no softbounce` on an SMTP or LMTP target: a permanent refusal is reported
/// (`fetch::bounce`) through the same listener (and `plugout`), from the null sender, to the
/// sender or the postmaster; the message is done with only when the report was accepted.
/// `None` with `softbounce` (the default) and for the other targets, whose failures are kept.
fn reporter(
    spec: &PollSpec,
    env: &Env,
    user: &str,
    server: &str,
) -> Option<Box<pipe::Reporter<'static>>> {
    if !spec.bounce.reports() {
        return None;
    }
    let (ep, protocol) = match spec.fetch.target(env) {
        TargetSetting::Smtp(ep) => (ep, SmtpProtocol::Smtp),
        TargetSetting::Lmtp(ep) => (ep, SmtpProtocol::Lmtp),
        _ => return None,
    };
    // open_target checked the plugout command already.
    let connect = hooks::route_through(
        spec.hooks.plugout.as_deref(),
        &ep,
        ConnectOptions::default(),
    )
    .ok()?;
    let helo = env.hostname.clone().unwrap_or_else(|| "localhost".into());
    let policy = spec.bounce.clone();
    let domain = spec.smtp_domain.clone();
    let mailbox = format!("{user}@{server}");
    Some(Box::new(move |refused: &pipe::Refused<'_>| {
        let to = policy
            .report_to(refused.sender, &domain)
            .ok_or("there is nobody to report to: the postmaster is empty")?;
        let text = bounce::compose(
            &bounce::Refusal {
                header: refused.header,
                recipients: &refused.recipients,
                reason: &refused.reason,
                mailbox: &mailbox,
                host: &helo,
            },
            &to,
        );
        let mut target =
            SmtpTarget::new(ep.clone(), protocol, helo.clone()).with_connect(connect.clone());
        let info = MessageInfo {
            sender: String::new(),
            recipient: to.clone(),
            also: Vec::new(),
        };
        target
            .deliver(&mut &text[..], &info)
            .map_err(|e| format!("the report to <{to}> was refused: {e}"))?;
        Ok(to)
    }))
}

/// An SMTP or LMTP target, reached through the `plugout` command when there is one.
fn forward(spec: &PollSpec, ep: Endpoint, protocol: SmtpProtocol, helo: String) -> Result<Target> {
    let scheme = match protocol {
        SmtpProtocol::Smtp => "smtp",
        SmtpProtocol::Lmtp => "lmtp",
    };
    let plugout = spec.hooks.plugout.as_deref();
    let description = match plugout {
        Some(cmd) => format!("{scheme}://{}:{} (plugout {cmd:?})", ep.host, ep.port),
        None => format!("{scheme}://{}:{}", ep.host, ep.port),
    };
    let connect = hooks::route_through(plugout, &ep, ConnectOptions::default())?;
    Ok(Target::Direct {
        description,
        deliver: Box::new(
            SmtpTarget::new(ep, protocol, helo)
                .with_connect(connect)
                .with_batchlimit(spec.fetch.tuning.batchlimit)
                .with_fallbacks(spec.smtp_fallbacks.clone())
                .with_antispam(spec.antispam.clone()),
        ),
    })
}

/// How the session reaches the server: the TLS mode and the route, through the `plugin`
/// command when there is one. `auth ssh` over a plugin (the command, such as `ssh host imapd`
/// answering PREAUTH, is the authentication, and no password is ever sent) lifts rfetch's
/// STARTTLS requirement, which only protects a password and cannot be met after PREAUTH;
/// `ssl` still runs TLS through the command.
fn link(spec: &PollSpec, ep: &Endpoint, auth: &FetchAuth) -> Result<(TlsMode, ConnectOptions)> {
    let f = &spec.fetch;
    let connect = hooks::route_through(spec.hooks.plugin.as_deref(), ep, f.connect_options())?;
    let tls_mode = match f.tls_mode() {
        TlsMode::Starttls if spec.hooks.plugin.is_some() && *auth == FetchAuth::Implicit => {
            TlsMode::Off
        }
        mode => mode,
    };
    Ok((tls_mode, connect))
}

/// The password for the login; none is needed (nor looked for) with `auth ssh`.
fn login_secret(spec: &PollSpec, env: &Env, user: &str, auth: &FetchAuth) -> Result<Secret> {
    if *auth == FetchAuth::Implicit {
        return Ok(Secret::new(String::new()));
    }
    password(spec, env, user)
}

fn password(spec: &PollSpec, env: &Env, user: &str) -> Result<Secret> {
    let server = spec.server_name();
    // The keyring's service attribute (msmtp/mpop: pop3; imap) and, with oauth_provider, a
    // fresh access token.
    let service = match spec.fetch.protocol.value {
        FetchProtocol::Pop3 => crate::account::Service::Pop3,
        FetchProtocol::Imap => crate::account::Service::Imap,
    };
    match spec.fetch.server.password_for(service, env)? {
        Some(pw) => Ok(Secret::new(pw)),
        None => Err(Error::new(
            ErrorKind::Auth,
            format!(
                "no password for {user}@{server} (set password or passwordeval, or add it to ~/.netrc)"
            ),
        )),
    }
}

/// The numeric address of the server end of `conn`, when the socket knows it.
fn peer_ip(conn: &crate::net::Connection) -> Option<String> {
    conn.peer_addr().ok().map(|a| a.ip().to_string())
}

fn poll_pop3_sessions(
    spec: &PollSpec,
    ctx: &PollContext<'_>,
    mut target: Option<&mut Target>,
    report: &mut PollReport,
) -> Result<()> {
    let mut round = Pop3Round {
        first: true,
        fetch_budget: spec.fetch.tuning.fetchlimit,
        deletions: spec
            .fetch
            .tuning
            .expunge
            .filter(|&n| n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        failed: HashSet::new(),
        backlog_committed: false,
    };
    loop {
        let (more, deleted) = poll_pop3(spec, ctx, target.as_deref_mut(), report, &mut round)?;
        round.first = false;
        // A session that deleted nothing cannot make progress by reconnecting.
        if !more || deleted == 0 || ctx.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        log::info!(
            "account {}: {deleted} deletions committed; reconnecting",
            spec.name
        );
    }
}

/// One POP3 session. Returns whether messages were left for another session (`expunge N`, or
/// new mail after a flushed backlog) and how many deletions this session committed.
/// How long the last session of a POP3 poll waits for the server's answer to QUIT, which comes
/// only once the server has deleted the messages (half of a 1000-message poll's time with
/// Dovecot). Not at all: see [`Pop3Session::quit_within`].
const QUIT_WAIT: std::time::Duration = std::time::Duration::ZERO;

fn poll_pop3(
    spec: &PollSpec,
    ctx: &PollContext<'_>,
    target: Option<&mut Target>,
    report: &mut PollReport,
    round: &mut Pop3Round,
) -> Result<(bool, usize)> {
    let f = &spec.fetch;
    let user = spec.user(ctx.env);
    let server = spec.server_name();
    let (login, account) = server_login(spec, ctx)?;
    let settings = Pop3Settings::from_server(login);
    let mut s = Pop3Session::connect(&settings)
        .map_err(|e| e.context(format!("{account}: cannot connect")))?;
    s.login()
        .map_err(|e| e.context(format!("{account}: login failed (check user and password)")))?;
    let uidl = s.uidl_all()?;
    let sizes: HashMap<u32, u64> = s.list_all()?.into_iter().collect();
    let total = uidl.len();
    let key = AccountKey::pop3(&server, &user);
    let on_server: HashSet<&str> = uidl.iter().map(|(_, u)| u.as_str()).collect();
    let mut old = Vec::new();
    let mut fresh = Vec::new();
    {
        let mut st = ctx
            .state
            .lock()
            .map_err(|_| Error::new(ErrorKind::Internal, "state lock poisoned"))?;
        st.pop3_retain(&key, |u| on_server.contains(u));
        for (n, uid) in &uidl {
            if !f.fetchall() && st.pop3_is_seen(&key, uid) {
                old.push(*n);
            } else if !round.failed.contains(uid) {
                fresh.push(*n);
            }
        }
    }
    let octets: u64 = sizes.values().sum();
    if total == 0 {
        log::info!(target: plog::NO_MAIL, "No mail for {user} at {server}");
    } else {
        log::info!(
            target: plog::REPORT,
            "{} ({} seen before) for {user} at {server} ({octets} octets)",
            count_messages(total),
            old.len()
        );
    }
    let oversized = split_oversized(
        spec,
        &mut fresh,
        |n| sizes.get(n).copied(),
        |n| format!("{user}@{server}:{n}"),
    );
    if round.first {
        report.waiting += fresh.len() as u64;
    }
    let Some(target) = target else {
        let _ = s.quit();
        return Ok((false, 0));
    };
    let mut early = flushed_before_fetch(spec, f.keep(), &old, &oversized, |n, why| match why {
        Flushed::DeliveredBefore => {
            log::info!(
                target: plog::MESSAGE,
                "message {user}@{server}:{n} of {total} delivered before, flushed"
            )
        }
        Flushed::Oversized => log::info!(
            target: plog::MESSAGE,
            "message {user}@{server}:{n} of {total} ({} octets) larger than the limit, flushed",
            sizes.get(&n).copied().unwrap_or(0)
        ),
    });
    let allowed = round.deletions.unwrap_or(usize::MAX);
    let more = round.plan(&mut early, &mut fresh);
    if let Some(fl) = round.fetch_budget
        && fresh.len() as u64 > fl
    {
        fetchlimit_reached(
            &account,
            spec.fetch.tuning.fetchlimit.unwrap_or(fl),
            fresh.len() - fl as usize,
        );
        fresh.truncate(fl as usize);
        report.fetchlimit_hit = true;
    }
    if !early.is_empty() {
        s.dele_many(&early)?;
    }
    let deleted = early.len();
    let uids: HashMap<u32, String> = uidl.iter().cloned().collect();
    let d = Delivery::new(spec, ctx, peer_ip(s.connection()));
    d.progress.start(fresh.len());
    let header = |sorted: Option<&Sorted>| d.received(sorted);
    let reporting = reporter(spec, ctx.env, &user, &server);
    let opts = d.pipe_options(&header, reporting.as_deref());
    let label = |k: &(u32, String)| format!("{} of {total}", k.0);
    let state_key = |k: &(u32, String)| StateKey::Pop3 {
        account: key.clone(),
        uid: k.1.clone(),
    };
    let ledger = StateLedger {
        state: ctx.state,
        key: &state_key,
        progress: &d.progress,
    };
    let mut mailbox = Pop3Mailbox {
        session: &mut s,
        fresh: &fresh,
        next: 0,
        keep: f.keep(),
        allowed,
        deleted,
        more,
        round,
        uids: &uids,
        sizes: &sizes,
        d: &d,
        key: &key,
        account: &account,
    };
    let handling = Handling {
        opts: &opts,
        ledger: &ledger,
        label: &label,
        state_key: &state_key,
    };
    deliver_batches(&mut mailbox, &d, target, &handling, report, &account)?;
    let Pop3Mailbox { deleted, more, .. } = mailbox;
    // A stop request leaves nothing for another session.
    let more = more && !ctx.stop.load(Ordering::Relaxed);
    // Every DELE went out after its message's seen state was durable, so a QUIT the server
    // never acts on costs nothing: the next poll deletes those messages without fetching them.
    // The reply is awaited only when this poll goes on with another session (which would find
    // the messages still being deleted) or without the seen state (`fetchall`).
    let quit_wait = (!more && !f.fetchall()).then_some(QUIT_WAIT);
    s.quit_within(quit_wait).map_err(|e| {
        e.context(format!(
            "{account}: QUIT failed; deletions may not have happened"
        ))
    })?;
    Ok((more, deleted))
}

/// Takes the messages larger than `limit` out of `fresh` and returns them (logged as skipped
/// unless `limitflush` will delete them). Messages of unknown size stay: the delivery pipe
/// checks the size again as the message streams.
fn split_oversized<K: Copy + PartialEq>(
    spec: &PollSpec,
    fresh: &mut Vec<K>,
    size: impl Fn(&K) -> Option<u64>,
    label: impl Fn(&K) -> String,
) -> Vec<K> {
    let Some(limit) = spec.fetch.tuning.limit else {
        return Vec::new();
    };
    let mut oversized = Vec::new();
    fresh.retain(|k| match size(k) {
        Some(sz) if sz > limit => {
            if !spec.fetch.tuning.limitflush {
                log::info!(
                    target: plog::MESSAGE,
                    "skipping message {} ({sz} octets): larger than the limit of {limit} octets",
                    label(k)
                );
            }
            oversized.push(*k);
            false
        }
        _ => true,
    });
    oversized
}

fn poll_imap(
    spec: &PollSpec,
    ctx: &PollContext<'_>,
    target: Option<&mut Target>,
    report: &mut PollReport,
) -> Result<()> {
    let mut s = imap_login(spec, ctx, false)?;
    poll_imap_session(spec, ctx, &mut s, target, report)?;
    let _ = s.logout();
    Ok(())
}

/// Where and how one poll of `spec` connects and logs in (POP3 and IMAP alike), and the
/// account's name for error messages.
fn server_login(spec: &PollSpec, ctx: &PollContext<'_>) -> Result<(LoginServer, String)> {
    let f = &spec.fetch;
    let user = spec.user(ctx.env);
    let auth = f.server.fetch_auth()?;
    let endpoint = f.endpoint()?;
    let (tls_mode, connect) = link(spec, &endpoint, &auth)?;
    let secret = login_secret(spec, ctx.env, &user, &auth)?;
    let mut login = LoginServer::new(endpoint, user.clone(), secret);
    login.tls_mode = tls_mode;
    login.tls = f.tls_options()?;
    login.connect = connect;
    login.allow_plaintext = ctx.allow_plaintext || f.server.danger_plaintext_auth();
    login.auth = auth;
    let account = format!("account {} ({user}@{})", spec.name, spec.server_name());
    Ok((login, account))
}

/// Connects and logs in to an IMAP account; `force_idle` lets the session send IDLE to a
/// server that does not announce it (fetchmail `forceidle`).
pub fn imap_login(spec: &PollSpec, ctx: &PollContext<'_>, force_idle: bool) -> Result<ImapSession> {
    let (login, account) = server_login(spec, ctx)?;
    let mut settings = ImapSettings::from_server(login);
    settings.force_idle = force_idle;
    let mut s = ImapSession::connect(&settings)
        .map_err(|e| e.context(format!("{account}: cannot connect")))?;
    s.login()
        .map_err(|e| e.context(format!("{account}: login failed (check user and password)")))?;
    Ok(s)
}

/// One IMAP poll over an open, logged-in session (a normal poll, or an IDLE wake-up): for
/// each folder, SELECT, choose the new messages, deliver, record and flag/expunge them. The
/// last folder stays selected. Does not log out.
pub fn poll_imap_session(
    spec: &PollSpec,
    ctx: &PollContext<'_>,
    s: &mut ImapSession,
    mut target: Option<&mut Target>,
    report: &mut PollReport,
) -> Result<()> {
    let f = &spec.fetch;
    let user = spec.user(ctx.env);
    let server = spec.server_name();
    let account = format!("account {} ({user}@{server})", spec.name);
    let key = AccountKey::imap(&server, &user);
    let d = Delivery::new(spec, ctx, peer_ip(s.connection()));
    let header = |sorted: Option<&Sorted>| d.received(sorted);
    let reporting = reporter(spec, ctx.env, &user, &server);
    let opts = d.pipe_options(&header, reporting.as_deref());
    let mut budget = spec.fetch.tuning.fetchlimit;
    for folder in f.folders() {
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let info = s
            .select(&folder)
            .map_err(|e| e.context(format!("{account}: cannot open folder {folder}")))?;
        let validity = info.uidvalidity.unwrap_or(0);
        let all = if info.exists == 0 {
            Vec::new()
        } else {
            s.uid_search(Search::All)?
        };
        let total = all.len();
        let on_server: HashSet<u32> = all.iter().copied().collect();
        let mut old = Vec::new();
        let mut fresh = Vec::new();
        {
            let mut st = ctx
                .state
                .lock()
                .map_err(|_| Error::new(ErrorKind::Internal, "state lock poisoned"))?;
            if let UidValidityCheck::Changed { old, dropped } =
                st.imap_select(&key, &folder, validity)
            {
                log::warn!(
                    "{account}: folder {folder} changed UIDVALIDITY ({old} -> {validity}); forgetting {dropped} seen messages"
                );
            }
            st.imap_retain(&key, &folder, |u| on_server.contains(&u));
            for &uid in &all {
                if !f.fetchall() && st.imap_is_seen(&key, &folder, validity, uid) {
                    old.push(uid);
                } else {
                    fresh.push(uid);
                }
            }
        }
        if total == 0 {
            log::info!(
                target: plog::NO_MAIL,
                "No mail for {user} at {server} folder {folder}"
            );
        } else {
            log::info!(
                target: plog::REPORT,
                "{} ({} seen before) for {user} at {server} folder {folder}",
                count_messages(total),
                old.len()
            );
        }
        let position: HashMap<u32, usize> =
            all.iter().enumerate().map(|(i, u)| (*u, i + 1)).collect();
        let oversized = if spec.fetch.tuning.limit.is_some() && !fresh.is_empty() {
            // Sizes first, so an oversized message is never downloaded.
            let sizes: HashMap<u32, u64> = s
                .fetch_meta(&fresh)?
                .into_iter()
                .filter_map(|m| Some((m.uid, m.size?)))
                .collect();
            split_oversized(
                spec,
                &mut fresh,
                |u| sizes.get(u).copied(),
                |u| {
                    format!(
                        "{user}@{server}:{} of {total} (folder {folder})",
                        position.get(u).copied().unwrap_or(0)
                    )
                },
            )
        } else {
            Vec::new()
        };
        report.waiting += fresh.len() as u64;
        let Some(target) = target.as_deref_mut() else {
            continue;
        };
        if let Some(b) = budget.as_mut() {
            if fresh.len() as u64 > *b {
                fetchlimit_reached(
                    &account,
                    spec.fetch.tuning.fetchlimit.unwrap_or(*b),
                    fresh.len() - *b as usize,
                );
                fresh.truncate(*b as usize);
                report.fetchlimit_hit = true;
            }
            *b -= fresh.len() as u64;
        }
        d.progress.start(fresh.len());
        let mut expunger = Expunger {
            every: spec.fetch.tuning.expunge,
            pending: Vec::new(),
        };
        let early = flushed_before_fetch(spec, f.keep(), &old, &oversized, |u, why| {
            let n = position.get(&u).copied().unwrap_or(0);
            let reason = match why {
                Flushed::DeliveredBefore => "delivered before",
                Flushed::Oversized => "larger than the limit",
            };
            log::info!(
                target: plog::MESSAGE,
                "message {user}@{server}:{n} of {total} (folder {folder}) {reason}, flushed"
            );
        });
        expunger.delete(s, &early)?;
        let label = |uid: &u32| format!("{} of {total}", position.get(uid).copied().unwrap_or(0));
        let state_key = |&uid: &u32| StateKey::Imap {
            account: key.clone(),
            folder: folder.clone(),
            uidvalidity: validity,
            uid,
        };
        let ledger = StateLedger {
            state: ctx.state,
            key: &state_key,
            progress: &d.progress,
        };
        let mut mailbox = ImapMailbox {
            session: &mut *s,
            batches: fresh.chunks(BATCH),
            expunger,
            keep: f.keep(),
            d: &d,
            key: &key,
            folder: &folder,
            validity,
            account: &account,
        };
        let handling = Handling {
            opts: &opts,
            ledger: &ledger,
            label: &label,
            state_key: &state_key,
        };
        deliver_batches(&mut mailbox, &d, target, &handling, report, &account)?;
        let mut expunger = mailbox.expunger;
        expunger.finish(s)?;
        s.complete_deferred()?;
    }
    Ok(())
}

/// Why a message is deleted before anything is fetched.
#[derive(Debug, Clone, Copy)]
enum Flushed {
    DeliveredBefore,
    Oversized,
}

/// The messages a poll deletes before fetching: those delivered by an earlier poll (nokeep: that
/// poll was interrupted before its deletions reached the server; `flush`: also with keep) and,
/// with `limitflush`, the oversized ones. `log` tells about each one.
fn flushed_before_fetch<K: Copy>(
    spec: &PollSpec,
    keep: bool,
    old: &[K],
    oversized: &[K],
    mut log: impl FnMut(K, Flushed),
) -> Vec<K> {
    let mut early = Vec::new();
    if !keep || spec.fetch.tuning.flush {
        for &k in old {
            log(k, Flushed::DeliveredBefore);
        }
        early.extend_from_slice(old);
    }
    if spec.fetch.tuning.limitflush {
        for &k in oversized {
            log(k, Flushed::Oversized);
        }
        early.extend_from_slice(oversized);
    }
    early
}

/// "1 message", "2 messages": the count as fetchmail's summary line says it.
fn count_messages(n: usize) -> String {
    if n == 1 {
        "1 message".to_owned()
    } else {
        format!("{n} messages")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_summary_says_one_message_not_one_messages() {
        assert_eq!(super::count_messages(1), "1 message");
        assert_eq!(super::count_messages(0), "0 messages");
        assert_eq!(super::count_messages(2), "2 messages");
    }

    use super::*;

    fn spec(opts: &str) -> PollSpec {
        let rc = crate::config::fetchmailrc::parse_fetchmailrc(
            &format!("poll h proto pop3 user a password b {opts}\n"),
            std::path::Path::new("/rc"),
        )
        .unwrap();
        let env = Env {
            user: Some("u".into()),
            ..Env::default()
        };
        crate::fetch::spec::from_fetchmailrc(&rc, &env)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        // Start below the hard limit (containers often set soft = hard), so the raise is seen.
        let before = getrlimit(Resource::Nofile);
        assert!(before.maximum.is_none_or(|m| m > 256), "{before:?}");
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(256),
                maximum: before.maximum,
            },
        )
        .unwrap();
        raise_open_file_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
        assert_ne!(limit.current, Some(256));
    }

    #[test]
    fn oversized_messages_are_split_off_by_size() {
        let sizes: HashMap<u32, u64> = [(1, 10), (2, 5000), (3, 100), (4, 101)].into();
        let size = |n: &u32| sizes.get(n).copied();
        let label = |n: &u32| n.to_string();
        let mut fresh = vec![1, 2, 3, 4, 5];
        assert!(split_oversized(&spec(""), &mut fresh, size, label).is_empty());
        assert_eq!(fresh, [1, 2, 3, 4, 5], "no limit: nothing is oversized");
        let over = split_oversized(&spec("limit 100"), &mut fresh, size, label);
        assert_eq!(over, [2, 4]);
        // Exactly the limit is fine; an unknown size (5) is left to the pipe's check.
        assert_eq!(fresh, [1, 3, 5]);
        let mut fresh = vec![1, 2];
        let over = split_oversized(&spec("limit 9 limitflush"), &mut fresh, size, label);
        assert_eq!((over, fresh), (vec![1, 2], vec![]));
    }
}
