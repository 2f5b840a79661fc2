//! rfetch's long-running side: one thread per account (and per folder for IMAP IDLE), each
//! with its own schedule, retry backoff and IDLE loop; SIGTERM/SIGINT end it, SIGUSR1 wakes it
//! for an immediate poll, as in fetchmail's daemon mode.
//!
//! Schedules. A polling account polls, then sleeps `interval` (daemon) or ends (one-shot).
//! After a transient failure (connect, timeout, lost connection, 4xx) it retries after 30 s,
//! doubling up to the interval; a permanent failure (login refused, bad config) is retried at
//! the normal interval, as fetchmail does. SIGUSR1 wakes every sleeping account at once. One
//! account's slow server never delays another: they share nothing but the UID store.
//!
//! IDLE (fetchmailrc `idle`, `--idle`, TOML `idle = true`; IMAP only, not with `-c`): after
//! its first poll the account keeps the connection, IDLEs on the folder and, when the server
//! announces EXISTS/RECENT (or EXPUNGE, or the IDLE is re-issued after `idletimeout`, default
//! 28 min, RFC 2177's "at least every 29 minutes"), leaves IDLE and fetches through the normal
//! poll code ([`poll::poll_imap_session`]). Like fetchmail this also happens in one-shot mode:
//! the process then runs until signalled. Several folders get a connection (thread) each.
//! A server without the IDLE capability is watched with NOOP every 28 s instead (fetchmail's
//! emulation); `forceidle` sends IDLE regardless. A lost connection is re-opened after 1 s,
//! doubling to 5 minutes, reset by a successful poll; the loss and the recovery are each
//! logged once. A waiting account costs no CPU: it sleeps in poll(2) on its socket and the
//! [`Control::beacon`] eventfd until the server speaks, the IDLE renewal is due, or the daemon
//! is stopped or woken. Its logins and polls run on a thread that ends with them
//! (`on_own_stack`), so the waiting thread's resident stack stays small.
//!
//! Per server host, at most `max_connections` (default [`DEFAULT_MAX_CONNECTIONS`]) logins
//! and polls run at once, first come first served; an IDLE connection waiting does not count.
//!
//! Stopping. SIGTERM/SIGINT set the stop flag: a poll finishes the batch in progress (nothing
//! is deleted on the server before its target confirmed it, so an abandoned batch only means
//! messages fetched again later), IDLE sends DONE and logs out, sleepers wake. Threads stuck
//! in a network read (a server that stopped answering) are abandoned after [`STOP_GRACE`];
//! their reads are bounded by the account's timeout anyway. A delivery still in flight then is
//! never cut by the exit: an mbox append is rolled back and an MDA run to its end
//! ([`crate::deliver::finish_in_flight`]), and the exit waits for that.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::account::{FetchProtocol, Provenance, Sourced};
use crate::error::{Error, ErrorKind, Result};
use crate::hint;
use crate::session::imap::{IdleEvent, ImapSession};

use super::hooks;
use super::poll::{self, PollContext, PollReport};
use super::spec::{DEFAULT_IDLE_TIMEOUT, PollSpec};

/// fetchmail's NOOP period when the server lacks IDLE.
pub const NOOP_PERIOD: Duration = Duration::from_secs(28);
/// First retry after a transient poll failure (then doubling up to the interval).
pub const RETRY_FIRST: Duration = Duration::from_secs(30);
/// IDLE reconnect backoff: first delay and cap.
pub const RECONNECT_FIRST: Duration = Duration::from_secs(1);
pub const RECONNECT_MAX: Duration = Duration::from_secs(300);
/// How long a stop waits for threads blocked in network reads before exiting without them.
pub const STOP_GRACE: Duration = Duration::from_secs(8);
/// How long a stop waits for deliveries in flight after [`STOP_GRACE`]: an MDA's own timeout,
/// plus time for its thread to record the result.
const IN_FLIGHT_LIMIT: Duration =
    Duration::from_secs(crate::deliver::mda::DEFAULT_TIMEOUT.as_secs() + 30);
/// After the deliveries in flight ended, how long their threads get to record them.
const RECORD_GRACE: Duration = Duration::from_secs(2);
/// Stack reserved for an account thread. Only the pages a thread touched are resident, so this
/// bounds address space (10,000 accounts x 2 MiB default = 20 GB of it), not memory; the
/// deepest path (TLS handshake, SASL, a poll with its delivery) uses well under 256 KiB.
const ACCOUNT_STACK: usize = 512 * 1024;
/// Stack for a thread that only waits.
const SMALL_STACK: usize = 64 * 1024;

/// Exponential backoff: `first`, doubling, capped at `max`; [`Backoff::reset`] starts over.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        let first = first.min(max);
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The delay to wait now; the following one doubles.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Simultaneous polls on one server when no account of it sets `max_connections`. Providers
/// limit connections per user and per address (a few to 15 for IMAP, often fewer for POP3),
/// and a daemon with hundreds of accounts on one server would otherwise open them all at once
/// at every interval.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 8;

/// The bound on simultaneous polls on one server: a first-come, first-served queue, so that
/// with more accounts than slots each waits its turn and none is passed over. A finished poll
/// hands its slot to the first waiter alone (ten thousand accounts starting together must not
/// all wake at every hand-over), and waiters sleep without a timer: a stop closes the gate.
#[derive(Debug)]
struct ServerGate {
    limit: u64,
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// Slots in use.
    active: u64,
    /// The waiters, oldest first: each is sent `true` when it gets a slot, `false` on stop.
    waiting: VecDeque<mpsc::SyncSender<bool>>,
    closed: bool,
}

/// A slot in a [`ServerGate`]; dropping it hands the slot on.
struct GatePermit<'a>(&'a ServerGate);

impl Drop for GatePermit<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

impl ServerGate {
    fn new(limit: u64) -> ServerGate {
        ServerGate {
            limit: limit.max(1),
            state: Mutex::new(GateState::default()),
        }
    }

    /// Waits for this caller's turn; None when the gate was closed (the daemon stops).
    fn enter(&self) -> Option<GatePermit<'_>> {
        let turn = {
            let mut g = self.state.lock().ok()?;
            if g.closed {
                return None;
            }
            if g.active < self.limit && g.waiting.is_empty() {
                g.active += 1;
                return Some(GatePermit(self));
            }
            let (tx, rx) = mpsc::sync_channel(1);
            g.waiting.push_back(tx);
            rx
        };
        // The slot is handed over with its count: `active` already includes it.
        match turn.recv() {
            Ok(true) => Some(GatePermit(self)),
            _ => None,
        }
    }

    fn finish(&self) {
        let Ok(mut g) = self.state.lock() else {
            return;
        };
        while let Some(next) = g.waiting.pop_front() {
            // A waiter that is gone (its thread ended) cannot take it: try the next one.
            if next.send(true).is_ok() {
                return;
            }
        }
        g.active = g.active.saturating_sub(1);
    }

    /// Refuses every waiter and every later caller.
    fn close(&self) {
        if let Ok(mut g) = self.state.lock() {
            g.closed = true;
            for w in g.waiting.drain(..) {
                let _ = w.send(false);
            }
        }
    }
}

/// One gate per server host (lower case): the smallest `max_connections` among its accounts,
/// else [`DEFAULT_MAX_CONNECTIONS`]. A polling account holds a slot for its whole poll; an
/// IDLE account for its login and for each poll, not while it waits in IDLE.
fn server_gates(jobs: &[PollSpec]) -> HashMap<String, Arc<ServerGate>> {
    let mut limits: HashMap<String, u64> = HashMap::new();
    for spec in jobs {
        let limit = spec
            .fetch
            .tuning
            .max_connections
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            .max(1);
        limits
            .entry(server_key(spec))
            .and_modify(|l| *l = (*l).min(limit))
            .or_insert(limit);
    }
    limits
        .into_iter()
        .map(|(k, l)| (k, Arc::new(ServerGate::new(l))))
        .collect()
}

fn server_key(spec: &PollSpec) -> String {
    spec.server_name().to_ascii_lowercase()
}

/// Why a [`Control::sleep`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Stop,
    /// SIGUSR1 (or [`Control::wake`]).
    Woken,
    Elapsed,
}

/// The stop flag and the wake-up broadcast every account thread watches.
#[derive(Debug, Default)]
pub struct Control {
    stop: AtomicBool,
    /// Wake-up generation: each SIGUSR1 increments it and notifies the sleepers.
    wakes: Mutex<u64>,
    cv: Condvar,
    /// The eventfd IDLE waits poll beside their socket (see [`Control::beacon`]); None until
    /// one is asked for, and again after each wake consumed it.
    beacon: Mutex<Option<Arc<OwnedFd>>>,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    /// The flag polls check between batches.
    pub fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        {
            let _g = self.wakes.lock();
            self.cv.notify_all();
        }
        // The beacon stays readable from now on: every IDLE wait, present and future, ends.
        self.ring_beacon(false);
    }

    /// Wakes every sleeping or idling account (SIGUSR1).
    pub fn wake(&self) {
        if let Ok(mut g) = self.wakes.lock() {
            *g = g.wrapping_add(1);
        }
        self.cv.notify_all();
        // Rung and replaced: the waits that hold this one end, later waits get a quiet one.
        self.ring_beacon(true);
    }

    /// A file descriptor that becomes readable, and stays so, at the next [`Control::wake`] or
    /// at [`Control::stop`]: an IDLE wait polls it together with its socket, so that it sleeps
    /// in the kernel until the server speaks or the daemon needs it, with no timer. A waiter
    /// takes the beacon first and then checks [`Control::stopping`] and
    /// `Control::woken_since`: a wake before the check is seen by the check, one after it
    /// rings this beacon. None when no eventfd can be made (out of descriptors); the caller
    /// then checks the flags on a timer.
    pub fn beacon(&self) -> Option<Arc<OwnedFd>> {
        let mut slot = self.beacon.lock().ok()?;
        if slot.is_none() {
            let fd = rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .ok()?;
            if self.stopping() {
                ring(&fd);
            }
            *slot = Some(Arc::new(fd));
        }
        slot.clone()
    }

    fn ring_beacon(&self, replace: bool) {
        let Ok(mut slot) = self.beacon.lock() else {
            return;
        };
        if let Some(fd) = slot.as_ref() {
            ring(fd);
        }
        if replace {
            *slot = None;
        }
    }

    /// The current wake-up generation.
    pub fn generation(&self) -> u64 {
        self.wakes.lock().map(|g| *g).unwrap_or(0)
    }

    /// Sleeps up to `d`, ending early on stop or on a wake newer than `*seen` (which is then
    /// updated).
    pub fn sleep(&self, d: Duration, seen: &mut u64) -> Wake {
        // A sleep too long for the clock has no deadline: it ends on a wake or a stop.
        let until = Instant::now().checked_add(d);
        let Ok(mut g) = self.wakes.lock() else {
            return Wake::Stop;
        };
        loop {
            if self.stopping() {
                return Wake::Stop;
            }
            if *g != *seen {
                *seen = *g;
                return Wake::Woken;
            }
            let left = match until {
                Some(t) => t.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Wake::Elapsed;
            }
            g = match self.cv.wait_timeout(g, left) {
                Ok((g, _)) => g,
                Err(_) => return Wake::Stop,
            };
        }
    }

    /// Whether a wake newer than `seen` happened (without consuming it).
    fn woken_since(&self, seen: u64) -> bool {
        self.generation() != seen
    }
}

/// Makes an eventfd readable (a counter above zero stays readable until read; nobody reads it).
fn ring(fd: &OwnedFd) {
    if let Err(e) = rustix::io::write(fd, &1u64.to_ne_bytes()) {
        log::warn!("cannot signal the IDLE waits: {e}");
    }
}

/// Routes SIGTERM and SIGINT to [`Control::stop`] and SIGUSR1 to [`Control::wake`] through a
/// signal-handling thread.
pub fn install_signals(control: &'static Control) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    // SIGHUP wakes as SIGUSR1 does (fetchmail does so when run as root; otherwise it dies of
    // it): a daemon must not end because a terminal or a session it left went away.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGUSR1, SIGHUP])
        .map_err(|e| {
            Error::with_source(ErrorKind::Internal, "cannot install signal handlers", e)
        })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGUSR1 || sig == SIGHUP {
                    let name = if sig == SIGHUP { "SIGHUP" } else { "SIGUSR1" };
                    log::info!("awakened by {name}");
                    control.wake();
                } else {
                    log::info!("terminating on signal {sig}");
                    control.stop();
                }
            }
        })
        .map_err(|e| {
            Error::with_source(ErrorKind::Internal, "cannot start the signal thread", e)
        })?;
    Ok(())
}

/// How the accounts run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// `-d N`: poll every N; None: poll once (IDLE accounts still stay).
    pub interval: Option<Duration>,
}

/// One thread's job: an account, or one folder of an IDLE account. Takes the specs, so that
/// each account's settings are held once, by its thread (a few KiB per account: 10,000 IDLE
/// accounts held a copy more in the caller's list and another here).
fn jobs(specs: Vec<PollSpec>, check_only: bool) -> Vec<PollSpec> {
    let mut out = Vec::new();
    for s in specs {
        if !uses_idle(&s, check_only) {
            out.push(s);
            continue;
        }
        let folders = s.fetch.folders();
        if folders.len() <= 1 {
            out.push(s);
            continue;
        }
        let provenance = s
            .fetch
            .folders
            .as_ref()
            .map_or(Provenance::Builtin, |f| f.at.clone());
        for f in folders {
            let mut one = s.clone();
            one.fetch.folders = Some(Sourced::new(vec![f], provenance.clone()));
            out.push(one);
        }
    }
    out
}

fn uses_idle(spec: &PollSpec, check_only: bool) -> bool {
    spec.fetch.protocol.value == FetchProtocol::Imap && spec.fetch.idle() && !check_only
}

/// Runs every account on its own thread until one-shot polls are done or a stop is requested.
/// Returns one report per thread: its only poll (one-shot), its first poll (one-shot IDLE), or
/// its last poll (daemon). `ctx` must outlive the threads, which may be abandoned on stop.
pub fn run(
    specs: Vec<PollSpec>,
    ctx: &'static PollContext<'static>,
    control: &'static Control,
    schedule: Schedule,
) -> Vec<PollReport> {
    let mut jobs = jobs(specs, ctx.check_only);
    let gates = server_gates(&jobs);
    let mut per_server: HashMap<String, usize> = HashMap::new();
    for spec in &jobs {
        *per_server.entry(server_key(spec)).or_default() += 1;
    }
    for spec in &mut jobs {
        // Only where nobody waits for the answer: a one-shot run exits right after (a daemon
        // has minutes until its next poll, and logs a failed QUIT), and no other account of
        // the run waits for this server's connection slot (until the server has finished
        // deleting, it still counts the session against max_connections).
        spec.quit_unanswered = schedule.interval.is_none() && per_server[&server_key(spec)] == 1;
    }
    let (tx, rx) = mpsc::channel::<(usize, PollReport)>();
    let mut reports: Vec<Option<PollReport>> = Vec::new();
    for (i, spec) in jobs.into_iter().enumerate() {
        reports.push(None);
        let thread_tx = tx.clone();
        let name = spec.name.clone();
        let gate = gates.get(&server_key(&spec)).cloned();
        // Boxed: a thread's closure is moved onto its stack when the thread starts, and the
        // settings by value (a few KiB) stayed in the stack pages a waiting account keeps
        // (its stack measured 24 KiB resident with them in the closure, 16 KiB without).
        let spec = Box::new(spec);
        let spawned = std::thread::Builder::new()
            .name(format!("account {name}"))
            .stack_size(ACCOUNT_STACK)
            .spawn(move || {
                let daemon = schedule.interval.is_some();
                let r = guarded(&spec.name, control, daemon, || {
                    let account = AccountRun {
                        spec: &spec,
                        ctx,
                        control,
                        schedule,
                        gate: gate.as_deref(),
                    };
                    if uses_idle(&spec, ctx.check_only) {
                        idle_account(&account)
                    } else {
                        poll_account(&account)
                    }
                });
                let _ = thread_tx.send((i, r));
            });
        if let Err(e) = spawned {
            let _ = tx.send((
                i,
                failed(Error::with_source(
                    ErrorKind::Internal,
                    format!("account {name}: cannot start its thread"),
                    e,
                )),
            ));
        }
    }
    // The stop reaches this loop as a message, so that it sleeps in recv() instead of waking
    // on a timer to look at the flag. The watcher sleeps on the condition variable.
    let stop_tx = tx.clone();
    let gates_to_close: Vec<Arc<ServerGate>> = gates.values().cloned().collect();
    let watcher = std::thread::Builder::new()
        .name("stop watch".into())
        .stack_size(SMALL_STACK)
        .spawn(move || {
            let mut seen = control.generation();
            while control.sleep(Duration::MAX, &mut seen) != Wake::Stop {}
            // Accounts waiting for a slot end now instead of polling once more.
            for g in &gates_to_close {
                g.close();
            }
            let _ = stop_tx.send((usize::MAX, PollReport::default()));
        });
    // Without the watcher the flag is looked at every 250 ms, as before.
    let tick = match watcher {
        Ok(_) => None,
        Err(_) => Some(Duration::from_millis(250)),
    };
    drop(tx);
    let mut remaining = reports.len();
    let mut give_up: Option<Instant> = None;
    let mut deliveries_finished = false;
    while remaining > 0 {
        let received = match (give_up, tick) {
            (Some(t), _) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
            (None, Some(t)) => rx.recv_timeout(t),
            (None, None) => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match received {
            Ok((usize::MAX, _)) => {
                if give_up.is_none() {
                    give_up = Some(Instant::now() + STOP_GRACE);
                }
            }
            Ok((i, r)) => {
                if let Some(slot) = reports.get_mut(i) {
                    *slot = Some(r);
                }
                remaining -= 1;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !control.stopping() {
                    continue;
                }
                match give_up {
                    None => give_up = Some(Instant::now() + STOP_GRACE),
                    Some(t) if Instant::now() >= t && !deliveries_finished => {
                        // Exiting now could cut a delivery: let it end first.
                        if !crate::deliver::finish_in_flight(IN_FLIGHT_LIMIT) {
                            log::warn!("a delivery did not end in time; exiting anyway");
                        }
                        deliveries_finished = true;
                        give_up = Some(Instant::now() + RECORD_GRACE);
                    }
                    Some(t) if Instant::now() >= t => {
                        log::warn!(
                            "{remaining} account(s) still blocked in a network read; exiting without them (nothing unconfirmed was deleted)"
                        );
                        break;
                    }
                    Some(_) => {}
                }
            }
        }
    }
    reports.into_iter().flatten().collect()
}

fn failed(e: Error) -> PollReport {
    let mut r = PollReport::default();
    r.fail(e);
    r
}

/// Runs an account's job, turning a panic into an error report that is logged at once (a
/// detached daemon's stderr, where the panic message went, is /dev/null). In a daemon the whole
/// daemon is then stopped, so that it exits with an error status its supervisor sees instead of
/// running on without that account; a single run lets the other accounts finish.
fn guarded(
    name: &str,
    control: &Control,
    daemon: bool,
    job: impl FnOnce() -> PollReport,
) -> PollReport {
    catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        let e = Error::new(
            ErrorKind::Internal,
            format!(
                "account {name}: the poll crashed ({}){}",
                what.chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect::<String>(),
                if daemon { "; stopping the daemon" } else { "" }
            ),
        );
        log::error!("{}", e.chain());
        if daemon {
            control.stop();
        }
        failed(e)
    })
}

/// Whether a round of reports holds a crashed account: the daemon's exit status is then an
/// internal error, never 0.
pub fn any_crashed(reports: &[PollReport]) -> bool {
    reports.iter().any(|r| {
        r.error
            .as_ref()
            .is_some_and(|e| e.kind() == ErrorKind::Internal)
    })
}

fn show_error(spec: &PollSpec, report: &PollReport) {
    match &report.error {
        Some(e) if report.error_logged => {
            if let Some(h) = hint::hint(e, spec.vocabulary) {
                eprintln!("rfetch: {h}");
            }
        }
        Some(e) => hint::show("rfetch", e, spec.vocabulary),
        None => {}
    }
}

/// What one account's thread runs with.
#[derive(Clone, Copy)]
struct AccountRun<'a> {
    spec: &'a PollSpec,
    ctx: &'a PollContext<'a>,
    control: &'a Control,
    schedule: Schedule,
    /// The server's bound on logins and polls at once.
    gate: Option<&'a ServerGate>,
}

/// A polling account: poll, sleep, repeat (daemon) or poll once.
fn poll_account(account: &AccountRun<'_>) -> PollReport {
    let (spec, control, interval) = (account.spec, account.control, account.schedule.interval);
    let mut seen = control.generation();
    let mut retry = interval.map(|i| Backoff::new(RETRY_FIRST, i));
    let mut last = PollReport::default();
    loop {
        let permit = match account.gate {
            Some(g) => match g.enter() {
                Some(p) => Some(p),
                None => return last,
            },
            None => None,
        };
        let report = poll::poll(spec, account.ctx);
        drop(permit);
        show_error(spec, &report);
        let (Some(interval), Some(retry)) = (interval, retry.as_mut()) else {
            return report;
        };
        let delay = match &report.error {
            Some(e) if e.is_transient() => retry.next_delay(),
            _ => {
                retry.reset();
                // fetchmailrc `interval N`: this account sits out N-1 cycles after each poll.
                interval
                    .saturating_mul(u32::try_from(spec.every_nth_poll).unwrap_or(u32::MAX))
                    .min(Duration::from_secs(crate::config::MAX_SECONDS))
            }
        };
        log::info!("account {}: next poll in {} s", spec.name, delay.as_secs());
        if control.sleep(delay, &mut seen) == Wake::Stop {
            return report;
        }
        last = report;
    }
}

/// Whether the IDLE connection is up, for logging each change once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Unknown,
    Up,
    Down,
}

/// An IDLE account (one folder): connect, poll, IDLE, poll on news, reconnect on loss.
fn idle_account(account: &AccountRun<'_>) -> PollReport {
    let AccountRun {
        spec,
        ctx,
        control,
        schedule,
        gate,
    } = *account;
    let label = format!(
        "account {} ({}@{} folder {})",
        spec.name,
        spec.user(ctx.env),
        spec.server_name(),
        spec.fetch.folders().join(",")
    );
    let idle_timeout = spec
        .fetch
        .tuning
        .idle_timeout
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_IDLE_TIMEOUT);
    let mut first: Option<PollReport> = None;
    let mut reconnect = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    let mut link = Link::Unknown;
    let mut seen = control.generation();
    while !control.stopping() {
        // An IDLE connection is a server connection like a poll's: preconnect before it,
        // postconnect once it ended.
        let login = gated_work(gate, || {
            hooks::preconnect(&spec.name, &spec.hooks)
                .and_then(|()| poll::imap_login(spec, ctx, spec.fetch.tuning.force_idle))
        });
        let Some(login) = login else { break };
        let mut session = match login {
            Ok(s) => s,
            Err(e) => {
                let delay = if !e.is_transient() {
                    schedule.interval.unwrap_or(RECONNECT_MAX)
                } else {
                    reconnect.next_delay()
                };
                if link != Link::Down {
                    log::error!("{}; retrying in {} s", e.chain(), delay.as_secs());
                    hint::show("rfetch", &e, spec.vocabulary);
                } else {
                    log::debug!("{}; retrying in {} s", e.chain(), delay.as_secs());
                }
                link = Link::Down;
                if first.is_none() {
                    let r = failed(e);
                    if schedule.interval.is_none() {
                        // One-shot: a first poll that cannot connect ends like a normal poll.
                        return r;
                    }
                    first = Some(r);
                }
                if control.sleep(delay, &mut seen) == Wake::Stop {
                    break;
                }
                continue;
            }
        };
        let lost = watch(
            account,
            &mut session,
            &label,
            idle_timeout,
            &mut WatchState {
                first: &mut first,
                link: &mut link,
                reconnect: &mut reconnect,
                seen: &mut seen,
            },
        );
        if lost.is_none() {
            let _ = session.logout();
        } else {
            drop(session);
        }
        if let Err(e) = hooks::postconnect(&spec.name, &spec.hooks) {
            log::error!("{}", e.chain());
        }
        match lost {
            None => break,
            Some(e) => {
                if link != Link::Down {
                    log::warn!(
                        "{label}: connection lost ({}); reconnecting with backoff",
                        e.chain()
                    );
                }
                link = Link::Down;
                let delay = reconnect.next_delay();
                if control.sleep(delay, &mut seen) == Wake::Stop {
                    break;
                }
            }
        }
    }
    first.unwrap_or_default()
}

struct WatchState<'a> {
    first: &'a mut Option<PollReport>,
    link: &'a mut Link,
    reconnect: &'a mut Backoff,
    seen: &'a mut u64,
}

/// Polls and IDLEs on one connection until a stop (None) or until the connection is lost
/// (the error).
fn watch(
    account: &AccountRun<'_>,
    s: &mut ImapSession,
    label: &str,
    idle_timeout: Duration,
    st: &mut WatchState<'_>,
) -> Option<Error> {
    let AccountRun {
        spec,
        ctx,
        control,
        gate,
        ..
    } = *account;
    let mut use_idle = s.has_capability("IDLE") || spec.fetch.tuning.force_idle;
    if !use_idle {
        log::info!(
            "{label}: server does not offer IDLE; checking with NOOP every {} s",
            NOOP_PERIOD.as_secs()
        );
    }
    loop {
        let report = gated_work(gate, || {
            let mut report = PollReport::default();
            let polled = (|| -> Result<()> {
                let mut target = if ctx.check_only {
                    None
                } else {
                    Some(poll::open_target(spec, ctx.env)?)
                };
                poll::poll_imap_session(spec, ctx, s, target.as_mut(), &mut report)
            })();
            if let Err(e) = polled {
                report.fail(e);
            }
            report
        });
        let mut report = report?;
        if !s.is_usable() {
            let e = report.error.take().unwrap_or_else(|| {
                Error::new(ErrorKind::NetworkIo, "IMAP session broke during the poll")
            });
            if st.first.is_none() {
                *st.first = Some(failed(Error::new(e.kind(), e.chain())));
            }
            return Some(e);
        }
        show_error(spec, &report);
        if *st.link == Link::Down {
            log::info!("{label}: connection restored");
        }
        *st.link = Link::Up;
        st.reconnect.reset();
        if st.first.is_none() {
            *st.first = Some(report);
        }
        if control.stopping() {
            return None;
        }
        // The beacon before the checks: a wake after them rings it (see Control::beacon).
        let beacon = control.beacon();
        let seen_now = *st.seen;
        let interrupted = || control.stopping() || control.woken_since(seen_now);
        let event = if use_idle {
            log::info!("{label}: waiting for new mail (IDLE)");
            let wake = beacon.as_deref().map(AsFd::as_fd);
            match s.idle_until(idle_timeout, wake, &interrupted) {
                Ok(ev) => Ok(ev),
                // Refused (forceidle on a server without IDLE): watch with NOOP instead.
                Err(e) if s.is_usable() => {
                    log::warn!(
                        "{label}: IDLE refused ({}); checking with NOOP every {} s",
                        e.chain(),
                        NOOP_PERIOD.as_secs()
                    );
                    use_idle = false;
                    Ok(IdleEvent::Timeout)
                }
                Err(e) => Err(e),
            }
        } else {
            noop_watch(s, control, st.seen, idle_timeout)
        };
        match event {
            Ok(IdleEvent::Interrupted) if control.stopping() => return None,
            Ok(IdleEvent::Interrupted) => {
                *st.seen = control.generation();
                log::info!("{label}: awakened; polling");
            }
            Ok(IdleEvent::Timeout) => log::debug!("{label}: re-polling and re-issuing IDLE"),
            Ok(ev) => log::info!("{label}: server reported {ev:?}; fetching"),
            Err(e) => return Some(e),
        }
    }
}

/// Runs `work` on its own stack ([`on_own_stack`]) once the server's gate lets it in; None
/// when the daemon stops meanwhile (the gate is closed). IDLE accounts pass their logins and polls through the
/// gate too: their connections stay open, but no more than the bound log in or fetch at
/// once (10,000 accounts starting together would otherwise ask for 10,000 TLS handshakes at
/// the same moment, and the memory those take at once stays with the process).
fn gated_work<T: Send>(gate: Option<&ServerGate>, work: impl FnOnce() -> T + Send) -> Option<T> {
    let _permit = match gate {
        Some(g) => Some(g.enter()?),
        None => None,
    };
    Some(on_own_stack(work))
}

/// Runs `work` (a login, a poll) on a thread of its own and waits for it. An IDLE account's
/// thread spends its life waiting; the stack pages a thread once touched stay resident until it
/// ends, so the deep paths (TLS handshake, SASL, fetching and delivering) run on a thread that
/// ends with them (glibc returns a finished thread's stack pages to the system), and each
/// waiting account keeps only the shallow stack of its IDLE loop: about 60 KiB less per account
/// (BENCHMARKS.md). A panic is passed on to the caller; if no thread can be started the work
/// runs here.
fn on_own_stack<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let mut work = Some(work);
    let spawned = std::thread::scope(|scope| {
        let slot = &mut work;
        let handle = std::thread::Builder::new()
            .name("account work".into())
            .stack_size(ACCOUNT_STACK)
            .spawn_scoped(scope, move || slot.take().map(|w| w()));
        match handle {
            Ok(h) => Some(h.join()),
            Err(_) => None,
        }
    });
    match spawned {
        Some(Ok(Some(out))) => out,
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        // Not started (the closure never ran): run it here.
        Some(Ok(None)) | None => match work.take() {
            Some(w) => w(),
            None => unreachable_work(),
        },
    }
}

/// The work was taken but produced nothing: impossible, since taking it runs it.
fn unreachable_work() -> ! {
    panic!("account work vanished")
}

/// fetchmail's IDLE emulation: NOOP every [`NOOP_PERIOD`]; an EXISTS in the reply is news.
/// Ends after `limit` with Timeout (the caller re-polls), or on stop/wake.
fn noop_watch(
    s: &mut ImapSession,
    control: &Control,
    seen: &mut u64,
    limit: Duration,
) -> Result<IdleEvent> {
    let until = Instant::now().checked_add(limit);
    loop {
        let left = until.map_or(limit, |t| t.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return Ok(IdleEvent::Timeout);
        }
        let before = *seen;
        match control.sleep(left.min(NOOP_PERIOD), seen) {
            Wake::Stop => return Ok(IdleEvent::Interrupted),
            Wake::Woken => {
                // Leave the wake for the caller to see.
                *seen = before;
                return Ok(IdleEvent::Interrupted);
            }
            Wake::Elapsed => {}
        }
        if let Some(n) = s.noop()? {
            return Ok(IdleEvent::Exists(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A panicking account is an internal error naming it and the panic (logged, since a
    /// detached daemon's stderr is /dev/null); in a daemon it stops everything, so that the
    /// daemon exits with an error status (`any_crashed`) instead of 0.
    #[test]
    fn a_panicking_account_stops_the_daemon_with_an_error() {
        let control = Control::new();
        let r = guarded("a", &control, false, || panic!("boom\nforged line"));
        let e = r.error.as_ref().unwrap();
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(
            e.to_string()
                .contains("account a: the poll crashed (boom forged line)"),
            "{e}"
        );
        assert!(!control.stopping(), "a single run lets the others finish");
        assert!(any_crashed(&[PollReport::default(), r]));
        let r = guarded("b", &control, true, || panic!("{}", String::from("owned")));
        assert!(
            r.error
                .unwrap()
                .to_string()
                .contains("(owned); stopping the daemon")
        );
        assert!(control.stopping());
        let fine = guarded("c", &control, true, PollReport::default);
        assert!(fine.error.is_none());
        assert!(!any_crashed(&[fine]));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let got: Vec<u64> = (0..11).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        // A retry start above the interval is capped by it.
        let mut r = Backoff::new(RETRY_FIRST, Duration::from_secs(10));
        assert_eq!(r.next_delay(), Duration::from_secs(10));
        assert_eq!(r.next_delay(), Duration::from_secs(10));
    }

    #[test]
    fn server_gate_bounds_hands_over_in_order_and_closes() {
        let gate = Arc::new(ServerGate::new(2));
        let a = gate.enter().expect("first slot");
        let b = gate.enter().expect("second slot");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for k in 0..3 {
            let (g, seen) = (Arc::clone(&gate), Arc::clone(&order));
            waiters.push(std::thread::spawn(move || {
                let permit = g.enter();
                seen.lock().unwrap().push((k, permit.is_some()));
                // The slot is held a moment, then handed on as the permit drops.
                std::thread::sleep(Duration::from_millis(50));
            }));
            // Queue them in a known order.
            while gate.state.lock().unwrap().waiting.len() < k + 1 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert!(
            order.lock().unwrap().is_empty(),
            "nobody passes a full gate"
        );
        drop(a);
        while order.lock().unwrap().is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(*order.lock().unwrap(), vec![(0, true)]);
        gate.close();
        for w in waiters {
            w.join().unwrap();
        }
        // Waiter 0's slot went back when it ended; 1 and 2 were refused by the close (both
        // at once: the order in which their threads record that is the scheduler's).
        let mut seen = order.lock().unwrap().clone();
        seen[1..].sort_unstable();
        assert_eq!(seen, vec![(0, true), (1, false), (2, false)]);
        assert!(gate.enter().is_none(), "a closed gate admits nobody");
        drop(b);
        assert_eq!(gate.state.lock().unwrap().active, 0);
    }

    #[test]
    fn control_wakes_and_stops_sleepers() {
        let c = Arc::new(Control::new());
        let mut seen = c.generation();
        assert_eq!(c.sleep(Duration::from_millis(10), &mut seen), Wake::Elapsed);
        let c2 = Arc::clone(&c);
        let t = std::thread::spawn(move || {
            let mut seen = 0;
            c2.sleep(Duration::from_secs(60), &mut seen)
        });
        std::thread::sleep(Duration::from_millis(50));
        c.wake();
        assert_eq!(t.join().unwrap(), Wake::Woken);
        // A wake before the sleep is not lost.
        assert_eq!(c.sleep(Duration::from_secs(60), &mut seen), Wake::Woken);
        assert_eq!(seen, c.generation());
        let c3 = Arc::clone(&c);
        let t = std::thread::spawn(move || {
            let mut seen = c3.generation();
            // Longer than the clock can count: no deadline, no panic, still stoppable.
            c3.sleep(Duration::MAX, &mut seen)
        });
        std::thread::sleep(Duration::from_millis(50));
        c.stop();
        assert_eq!(t.join().unwrap(), Wake::Stop);
        assert!(c.stop_flag().load(Ordering::Relaxed));
    }
}
