//! One poll of one account (anchor §3, DESIGN §6): connect, list, choose the messages not seen
//! before, stream them into the target in batches, and only after the target confirmed a
//! batch (Maildir: one sync for the batch; the others per message) record the UIDs as seen
//! (one state fsync per batch) and delete them on the server unless `keep`.
//!
//! Failure rules: a delivery failure (transient or permanent: fetchmail's softbounce) leaves
//! the message on the server and the poll goes on; a connection lost mid-batch leaves every
//! unconfirmed message on the server. With `nokeep`, messages already recorded as seen (a
//! previous run was interrupted between recording and the server's commit) are deleted
//! without being fetched again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::account::{Env, FetchProtocol, Target as TargetSetting};
use crate::deliver::received::{ReceivedFor, ReceivedInfo, received_header};
use crate::deliver::smtp::SmtpTarget;
use crate::deliver::{Maildir, Mbox, Mda, MessageInfo};
use crate::error::{Error, ErrorKind, Result};
use crate::proto::imap::Search;
use crate::proto::smtp::Protocol as SmtpProtocol;
use crate::session::imap::{FetchSink, FetchedMeta, ImapSession, ImapSettings};
use crate::session::pop3::{MessageSink, Pop3Session, Pop3Settings, Secret};

use super::pipe::{self, BatchItem, Feeder, Outcome, PipeOptions, Staged, Target};
use super::spec::PollSpec;
use super::state::{AccountKey, SeenStore, UidValidityCheck};

/// Messages per batch: one Maildir sync, one state fsync and one pipelined DELE burst each.
pub const BATCH: usize = 50;

/// What the poll needs besides the account.
pub struct PollContext<'a> {
    pub env: &'a Env,
    pub state: &'a Mutex<SeenStore>,
    /// `-c`: only count the waiting messages.
    pub check_only: bool,
    /// Set by SIGTERM/SIGINT: finish the current batch and stop.
    pub stop: &'a AtomicBool,
    /// `--danger-plaintext-auth`.
    pub allow_plaintext: bool,
}

/// The result of one poll.
#[derive(Debug, Default)]
pub struct PollReport {
    /// Messages confirmed by the target.
    pub delivered: u64,
    /// New messages found (what `-c` reports).
    pub waiting: u64,
    /// `fetchlimit` stopped the poll with messages left.
    pub fetchlimit_hit: bool,
    /// The last failure (connection, login, delivery...).
    pub error: Option<Error>,
}

impl PollReport {
    /// Records a failure (the last one wins).
    pub fn fail(&mut self, e: Error) {
        self.error = Some(e);
    }
}

/// Polls one account. Never panics on server input; every failure ends up in the report.
pub fn poll(spec: &PollSpec, ctx: &PollContext<'_>) -> PollReport {
    let mut report = PollReport::default();
    let result = (|| -> Result<()> {
        let mut target = if ctx.check_only {
            None
        } else {
            Some(open_target(spec, ctx.env)?)
        };
        match spec.fetch.protocol.value {
            FetchProtocol::Pop3 => poll_pop3(spec, ctx, target.as_mut(), &mut report),
            FetchProtocol::Imap => poll_imap(spec, ctx, target.as_mut(), &mut report),
        }
    })();
    if let Err(e) = result {
        report.fail(e);
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
            deliver: Box::new(Mda::argv(argv)?),
        },
        TargetSetting::MdaShell(cmd) => Target::Direct {
            description: cmd.clone(),
            deliver: Box::new(Mda::shell(cmd)?),
        },
        TargetSetting::Smtp(ep) => Target::Direct {
            description: format!("smtp://{}:{}", ep.host, ep.port),
            deliver: Box::new(
                SmtpTarget::new(ep, SmtpProtocol::Smtp, host).with_batchlimit(spec.batchlimit),
            ),
        },
        TargetSetting::Lmtp(ep) => Target::Direct {
            description: format!("lmtp://{}:{}", ep.host, ep.port),
            deliver: Box::new(
                SmtpTarget::new(ep, SmtpProtocol::Lmtp, host).with_batchlimit(spec.batchlimit),
            ),
        },
    })
}

fn password(spec: &PollSpec, env: &Env, user: &str) -> Result<Secret> {
    let server = spec.server_name();
    match spec.fetch.server.password(env)? {
        Some(pw) => Ok(Secret::new(pw)),
        None => Err(Error::new(
            ErrorKind::Auth,
            format!(
                "no password for {user}@{server} (set password or passwordeval, or add it to ~/.netrc)"
            ),
        )),
    }
}

fn recipient(spec: &PollSpec) -> String {
    match &spec.fetch.target {
        Some(t) if matches!(t.value, TargetSetting::Smtp(_) | TargetSetting::Lmtp(_)) => {
            spec.smtp_recipient.clone()
        }
        _ => spec.local_user.clone(),
    }
}

struct Delivery<'a> {
    spec: &'a PollSpec,
    ctx: &'a PollContext<'a>,
    user: String,
    server: String,
    recipient: String,
    client_host: String,
}

impl Delivery<'_> {
    fn received(&self) -> String {
        received_header(&ReceivedInfo {
            server: &self.server,
            server_ip: None,
            client_host: &self.client_host,
            protocol: self.spec.protocol_name(),
            software: concat!("rfetch-", env!("CARGO_PKG_VERSION")),
            trace: None,
            recipients: ReceivedFor::One {
                address: &self.recipient,
                multidrop: false,
            },
            date: chrono::Local::now().fixed_offset(),
        })
    }

    fn pipe_options<'b>(&self, header: &'b (dyn Fn() -> String + Sync)) -> PipeOptions<'b> {
        PipeOptions {
            received: (!self.spec.invisible).then_some(header),
            info: MessageInfo {
                sender: String::new(),
                recipient: self.recipient.clone(),
            },
            limit: self.spec.limit,
        }
    }

    /// Turns the batch outcomes into the confirmed messages: Maildir files are synced here.
    /// Failures are logged and kept in the report; their messages stay on the server.
    fn confirm<K>(
        &self,
        target: &mut Target,
        items: Vec<BatchItem<K>>,
        label: impl Fn(&K) -> String,
        report: &mut PollReport,
    ) -> Vec<K> {
        let where_to = target.describe();
        let mut pending = Vec::new();
        let mut pending_keys = Vec::new();
        let mut done = Vec::new();
        for item in items {
            match item.outcome {
                Outcome::Staged(Staged::Pending(p)) => {
                    pending.push(p);
                    pending_keys.push((item.key, item.size));
                }
                Outcome::Staged(Staged::Done(_)) => {
                    self.delivered_line(&label(&item.key), item.size, &where_to);
                    done.push(item.key);
                }
                Outcome::TooLarge(size) => log::info!(
                    "skipping message {} ({size} octets) from {} for {}: larger than the limit of {} octets",
                    label(&item.key),
                    self.server,
                    self.user,
                    self.spec.limit.unwrap_or(0)
                ),
                Outcome::Failed(e) => {
                    let transient = e.is_transient();
                    let err = Error::from(e).context(format!(
                        "account {}: message {} not delivered to {where_to} ({}); it stays on {} and is retried at the next poll",
                        self.spec.name,
                        label(&item.key),
                        if transient { "temporary failure" } else { "permanent failure" },
                        self.server
                    ));
                    log::error!("{}", err.chain());
                    report.fail(err);
                }
            }
        }
        if !pending.is_empty()
            && let Target::Maildir(m) = target
        {
            match m.sync(pending) {
                Ok(_) => {
                    for (k, size) in pending_keys {
                        self.delivered_line(&label(&k), size, &where_to);
                        done.push(k);
                    }
                }
                Err(e) => {
                    let err = Error::from(e).context(format!(
                        "account {}: cannot make {} messages durable in {where_to}; they stay on {}",
                        self.spec.name,
                        pending_keys.len(),
                        self.server
                    ));
                    log::error!("{}", err.chain());
                    report.fail(err);
                }
            }
        }
        report.delivered += done.len() as u64;
        done
    }

    fn delivered_line(&self, label: &str, size: u64, target: &str) {
        log::info!(
            "{label} ({size} octets) from {} for {} delivered to {target}",
            self.server,
            self.user
        );
    }

    fn commit(&self, record: impl FnOnce(&mut SeenStore) -> Result<()>) -> Result<()> {
        let mut st = self
            .ctx
            .state
            .lock()
            .map_err(|_| Error::new(ErrorKind::Internal, "state lock poisoned"))?;
        record(&mut st)?;
        st.commit()?;
        Ok(())
    }
}

struct PopSink<'a> {
    feeder: &'a Feeder<(u32, String)>,
    uids: &'a HashMap<u32, String>,
    sizes: &'a HashMap<u32, u64>,
}

impl MessageSink for PopSink<'_> {
    fn start(&mut self, msgno: u32) -> Result<()> {
        let uid = self.uids.get(&msgno).cloned().unwrap_or_default();
        self.feeder
            .start((msgno, uid), self.sizes.get(&msgno).copied())
    }
    fn data(&mut self, chunk: &[u8]) -> Result<()> {
        self.feeder.data(chunk)
    }
    fn end(&mut self, _msgno: u32, _octets: u64) -> Result<()> {
        self.feeder.end()
    }
}

fn poll_pop3(
    spec: &PollSpec,
    ctx: &PollContext<'_>,
    target: Option<&mut Target>,
    report: &mut PollReport,
) -> Result<()> {
    let f = &spec.fetch;
    let user = spec.user(ctx.env);
    let server = spec.server_name();
    let mut settings =
        Pop3Settings::new(f.endpoint()?, user.clone(), password(spec, ctx.env, &user)?);
    settings.tls_mode = f.tls_mode();
    settings.tls = f.tls_options()?;
    settings.connect = f.connect_options();
    settings.allow_plaintext = ctx.allow_plaintext || f.server.danger_plaintext_auth();
    let account = format!("account {} ({user}@{server})", spec.name);
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
            } else {
                fresh.push(*n);
            }
        }
    }
    log::info!(
        "{total} messages ({} seen before) for {user} at {server}",
        old.len()
    );
    if let Some(limit) = spec.limit {
        fresh.retain(|n| {
            let size = sizes.get(n).copied().unwrap_or(0);
            if size > limit {
                log::info!("skipping message {user}@{server}:{n} ({size} octets): larger than the limit of {limit} octets");
            }
            size <= limit
        });
    }
    report.waiting += fresh.len() as u64;
    let Some(target) = target else {
        let _ = s.quit();
        return Ok(());
    };
    if let Some(fl) = spec.fetchlimit
        && fresh.len() as u64 > fl
    {
        fresh.truncate(fl as usize);
        report.fetchlimit_hit = true;
    }
    if !f.keep() && !old.is_empty() {
        s.dele_many(&old)?;
    }
    let uids: HashMap<u32, String> = uidl.iter().cloned().collect();
    let d = Delivery {
        spec,
        ctx,
        user: user.clone(),
        server: server.clone(),
        recipient: recipient(spec),
        client_host: ctx
            .env
            .hostname
            .clone()
            .unwrap_or_else(|| "localhost".into()),
    };
    let header = || d.received();
    let opts = d.pipe_options(&header);
    for batch in fresh.chunks(BATCH) {
        if ctx.stop.load(Ordering::Relaxed) {
            log::info!("{account}: stopping on request");
            break;
        }
        let (items, fetched) = pipe::run_batch(target, &opts, |feeder| {
            let mut sink = PopSink {
                feeder,
                uids: &uids,
                sizes: &sizes,
            };
            for r in s.retr_pipelined(batch, &mut sink)? {
                log::warn!(
                    "{account}: server refused message {}: {}",
                    r.msgno,
                    r.error.chain()
                );
            }
            Ok(())
        });
        let done = d.confirm(target, items, |(n, _)| format!("{n} of {total}"), report);
        d.commit(|st| {
            st.pop3_record(&key, done.iter().map(|(_, u)| u.as_str()))?;
            Ok(())
        })?;
        fetched.map_err(|e| e.context(format!("{account}: connection lost while fetching")))?;
        if !f.keep() {
            let nums: Vec<u32> = done.iter().map(|(n, _)| *n).collect();
            s.dele_many(&nums)?;
        }
    }
    s.quit().map_err(|e| {
        e.context(format!(
            "{account}: QUIT failed; deletions may not have happened"
        ))
    })?;
    Ok(())
}

struct ImapSink<'a> {
    feeder: &'a Feeder<u32>,
}

impl FetchSink for ImapSink<'_> {
    fn start(&mut self, meta: &FetchedMeta) -> Result<()> {
        self.feeder.start(meta.uid, meta.size)
    }
    fn data(&mut self, chunk: &[u8]) -> Result<()> {
        self.feeder.data(chunk)
    }
    fn end(&mut self, _meta: &FetchedMeta, _octets: u64) -> Result<()> {
        self.feeder.end()
    }
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

/// Connects and logs in to an IMAP account; `force_idle` lets the session send IDLE to a
/// server that does not announce it (fetchmail `forceidle`).
pub fn imap_login(spec: &PollSpec, ctx: &PollContext<'_>, force_idle: bool) -> Result<ImapSession> {
    let f = &spec.fetch;
    let user = spec.user(ctx.env);
    let server = spec.server_name();
    let mut settings =
        ImapSettings::new(f.endpoint()?, user.clone(), password(spec, ctx.env, &user)?);
    settings.tls_mode = f.tls_mode();
    settings.tls = f.tls_options()?;
    settings.connect = f.connect_options();
    settings.allow_plaintext = ctx.allow_plaintext || f.server.danger_plaintext_auth();
    settings.force_idle = force_idle;
    let account = format!("account {} ({user}@{server})", spec.name);
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
    let d = Delivery {
        spec,
        ctx,
        user: user.clone(),
        server: server.clone(),
        recipient: recipient(spec),
        client_host: ctx
            .env
            .hostname
            .clone()
            .unwrap_or_else(|| "localhost".into()),
    };
    let header = || d.received();
    let opts = d.pipe_options(&header);
    let mut budget = spec.fetchlimit;
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
        log::info!(
            "{total} messages ({} seen before) for {user} at {server} folder {folder}",
            old.len()
        );
        report.waiting += fresh.len() as u64;
        let Some(target) = target.as_deref_mut() else {
            continue;
        };
        if let Some(b) = budget.as_mut() {
            if fresh.len() as u64 > *b {
                fresh.truncate(*b as usize);
                report.fetchlimit_hit = true;
            }
            *b -= fresh.len() as u64;
        }
        if !f.keep() && !old.is_empty() {
            s.store_flags(&old, &["\\Seen", "\\Deleted"])?;
            s.expunge(&old)?;
        }
        let position: HashMap<u32, usize> =
            all.iter().enumerate().map(|(i, u)| (*u, i + 1)).collect();
        for batch in fresh.chunks(BATCH) {
            if ctx.stop.load(Ordering::Relaxed) {
                log::info!("{account}: stopping on request");
                break;
            }
            let (items, fetched) = pipe::run_batch(target, &opts, |feeder| {
                let mut sink = ImapSink { feeder };
                s.fetch_bodies(batch, &mut sink).map(|_| ())
            });
            let done = d.confirm(
                target,
                items,
                |uid| format!("{} of {total}", position.get(uid).copied().unwrap_or(0)),
                report,
            );
            d.commit(|st| {
                st.imap_record(&key, &folder, validity, done.iter().copied());
                Ok(())
            })?;
            fetched.map_err(|e| {
                e.context(format!(
                    "{account}: connection lost while fetching from {folder}"
                ))
            })?;
            if done.is_empty() {
                continue;
            }
            if f.keep() {
                s.store_flags(&done, &["\\Seen"])?;
            } else {
                s.store_flags(&done, &["\\Seen", "\\Deleted"])?;
                s.expunge(&done)?;
            }
        }
    }
    Ok(())
}
