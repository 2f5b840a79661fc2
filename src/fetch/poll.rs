//! One poll of one account: connect and log in (a POP3 session, again for each session a
//! POP3 poll needs; one IMAP session for all its folders), and run the fetch sequence
//! (`fetch::batch`) over each mailbox: list, choose the messages not seen before, stream them into
//! the target in batches, and only after the target confirmed a batch (Maildir: one sync for the
//! batch; the others per message) commit the UIDs as seen (one state fsync per batch) and delete
//! them on the server unless `keep`. Maildir batches go through the batch journal
//! (fetch::journal); every other target has each message recorded in the seen log the moment it
//! confirmed it (`delivery::StateLedger`). Either way a kill makes at most the message in flight
//! be fetched again. This file also opens the target and the bounce reporter.
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

use std::sync::atomic::Ordering;

use crate::account::{Env, FetchProtocol, Target as TargetSetting};
use crate::deliver::smtp::SmtpTarget;
use crate::deliver::{Deliver, Maildir, Mbox, Mda, MessageInfo};
use crate::error::{Error, ErrorKind, Result};
use crate::log as plog;
use crate::net::{ConnectOptions, Endpoint, TlsMode};
use crate::proto::smtp::Protocol as SmtpProtocol;
use crate::session::auth::{FetchAuth, Server as LoginServer};
use crate::session::imap::{ImapSession, ImapSettings};
use crate::session::pop3::{Pop3Session, Pop3Settings, Secret};

use super::batch::fetch_mailbox;
use super::bounce;
use super::delivery::Delivery;
pub use super::delivery::{BATCH, PollContext, PollReport};
use super::hooks;
use super::mailbox::imap::ImapMailbox;
use super::mailbox::pop3::{Pop3Mailbox, Pop3Round};
use super::multidrop::Sorted;
use super::pipe::{self, Target};
use super::spec::PollSpec;
use super::state::AccountKey;

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

/// A POP3 poll: one session, or more when a session leaves messages for another (`expunge N`,
/// new mail after a flushed backlog).
fn poll_pop3_sessions(
    spec: &PollSpec,
    ctx: &PollContext<'_>,
    mut target: Option<&mut Target>,
    report: &mut PollReport,
) -> Result<()> {
    let mut round = Pop3Round {
        deletions: spec
            .fetch
            .tuning
            .expunge
            .filter(|&n| n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        ..Pop3Round::default()
    };
    let mut budget = spec.fetch.tuning.fetchlimit;
    loop {
        poll_pop3(
            spec,
            ctx,
            target.as_deref_mut(),
            report,
            &mut round,
            &mut budget,
        )?;
        // A session that deleted nothing cannot make progress by reconnecting; a stop request
        // leaves nothing for another session.
        if !round.more || round.deleted == 0 || ctx.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        log::info!(
            "account {}: {} deletions committed; reconnecting",
            spec.name,
            round.deleted
        );
    }
}

/// One POP3 session of `round`: connect, log in, and the fetch sequence over its mailbox.
fn poll_pop3(
    spec: &PollSpec,
    ctx: &PollContext<'_>,
    target: Option<&mut Target>,
    report: &mut PollReport,
    round: &mut Pop3Round,
    budget: &mut Option<u64>,
) -> Result<()> {
    let (login, account) = server_login(spec, ctx)?;
    let settings = Pop3Settings::from_server(login);
    let mut s = Pop3Session::connect(&settings)
        .map_err(|e| e.context(format!("{account}: cannot connect")))?;
    s.login()
        .map_err(|e| e.context(format!("{account}: login failed")))?;
    let d = Delivery::new(spec, ctx, peer_ip(s.connection()));
    let header = |sorted: Option<&Sorted>| d.received(sorted);
    let reporting = reporter(spec, ctx.env, &d.user, &d.server);
    let opts = d.pipe_options(&header, reporting.as_deref());
    let key = AccountKey::pop3(&d.server, &d.user);
    let mailbox = Pop3Mailbox::new(s, round, &d, key);
    fetch_mailbox(mailbox, &d, target, &opts, budget, report)
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
        .map_err(|e| e.context(format!("{account}: login failed")))?;
    Ok(s)
}

/// One IMAP poll over an open, logged-in session (a normal poll, or an IDLE wake-up): the
/// fetch sequence over each folder in turn. The last folder stays selected. Does not log out.
pub fn poll_imap_session(
    spec: &PollSpec,
    ctx: &PollContext<'_>,
    s: &mut ImapSession,
    mut target: Option<&mut Target>,
    report: &mut PollReport,
) -> Result<()> {
    let d = Delivery::new(spec, ctx, peer_ip(s.connection()));
    let header = |sorted: Option<&Sorted>| d.received(sorted);
    let reporting = reporter(spec, ctx.env, &d.user, &d.server);
    let opts = d.pipe_options(&header, reporting.as_deref());
    let key = AccountKey::imap(&d.server, &d.user);
    let mut budget = spec.fetch.tuning.fetchlimit;
    for folder in spec.fetch.folders() {
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let mailbox = ImapMailbox::new(s, folder, &d, &key);
        fetch_mailbox(
            mailbox,
            &d,
            target.as_deref_mut(),
            &opts,
            &mut budget,
            report,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
