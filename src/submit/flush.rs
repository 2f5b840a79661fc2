//! Working the queue: `rsend -q` (send what is queued, one claimed message at a time, removed
//! only after the relay accepted it), `rsend -bp` / mailq (the listing), and the report of what
//! needs a person's attention (held, corrupt and foreign files).

use std::io::Write;

use crate::account::Env;
use crate::error::{Error, Result};
use crate::session::smtp::SmtpClient;

use super::queue::{self, Claimed, Entry, Queue};
use super::run::{self, LogLine, Resolved, Sent};

/// Which messages a flush tries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    /// Only those whose retry time has come (the timer's flush).
    pub due_only: bool,
    /// Only this one, even if held.
    pub only: Option<&'a str>,
}

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub sent: usize,
    /// Failed temporarily; retried later.
    pub deferred: usize,
    /// Too old or refused permanently: kept, reported, not retried automatically.
    pub held: usize,
    /// Files in the queue that cannot be read as a queued message: reported, never sent.
    pub unreadable: usize,
    /// Files that are not queue files at all.
    pub foreign: usize,
    /// Claimed by another flusher at the moment.
    pub busy: usize,
}

impl Summary {
    /// Whether something in the queue needs a person (a held or unreadable message).
    pub fn needs_attention(&self) -> bool {
        self.held > 0 || self.unreadable > 0
    }
}

/// An open connection, kept for the next message of the same account and settings.
struct Open {
    key: String,
    client: SmtpClient,
}

/// Sends the queued messages `selection` picks. Every failure of one message is recorded with
/// it and reported; the flush goes on with the next.
pub fn flush(queue: &Queue, env: &Env, selection: Selection) -> Result<Summary> {
    let mut summary = Summary::default();
    let mut open: Option<Open> = None;
    let now = queue::now();
    let mut found_only = false;
    for entry in queue.entries()? {
        let (id, state) = match entry {
            Entry::Foreign { name } => {
                summary.foreign += 1;
                log::warn!(
                    "{}: not a queued message; skipped (remove it from the queue directory)",
                    queue.dir().join(name).display()
                );
                continue;
            }
            Entry::Message { id, state } => (id, state),
        };
        match selection.only {
            Some(only) if only != id => continue,
            Some(_) => found_only = true,
            None if state.held => {
                summary.held += 1;
                log::warn!(
                    "queued message {id} is held: {} (rsend -q --flush-id {id} retries it, \
                     rsend --queue-remove {id} removes it)",
                    state.last_error.as_deref().unwrap_or("no reason recorded")
                );
                continue;
            }
            None if selection.due_only && state.next > now => continue,
            None => {}
        }
        let mut claimed = match queue.claim(&id) {
            Ok(Some(c)) => c,
            Ok(None) => {
                summary.busy += 1;
                continue;
            }
            Err(reason) => {
                summary.unreadable += 1;
                log::error!("queued message {id} cannot be read and is not sent: {reason}");
                continue;
            }
        };
        let resolved = run::resolve_stored(&claimed.stored, env);
        let result = match &resolved {
            Ok(r) => send_claimed(&mut claimed, r, env, &mut open),
            Err(e) => Err(Error::new(e.kind(), e.chain())),
        };
        if result.is_err()
            && let Some(o) = open.take()
        {
            let _ = o.client.quit();
        }
        let log_line = resolved.as_ref().ok().map(|r| {
            (
                LogLine::new(
                    &r.settings,
                    &claimed.stored.from,
                    &claimed.stored.recipients,
                ),
                r,
            )
        });
        let size = claimed.stored.size;
        match result {
            Ok((final_reply, final_code)) => {
                if let Some((line, r)) = &log_line {
                    let sent = Sent {
                        recipients: claimed.stored.recipients.clone(),
                        final_reply,
                        final_code,
                    };
                    line.write(&r.settings, &Ok(&sent), size);
                }
                claimed.delivered()?;
                summary.sent += 1;
                log::info!("queued message {id} sent");
            }
            Err(e) => {
                if let Some((line, r)) = &log_line {
                    line.write(&r.settings, &Err(&e), size);
                }
                let max_age = resolved
                    .as_ref()
                    .map(|r| r.settings.queue_max_age())
                    .unwrap_or(crate::account::DEFAULT_QUEUE_MAX_AGE);
                // Only a refusal is final; a configuration or authentication problem can be
                // mended, so it waits like a network failure (until the maximum age).
                let permanent = matches!(
                    e.kind(),
                    crate::error::ErrorKind::RejectedPermanent
                        | crate::error::ErrorKind::DeliveryPermanent
                );
                let queued = claimed.stored.queued;
                let next = claimed
                    .state
                    .after_failure(&e.chain(), permanent, queued, now, max_age);
                if next.held {
                    summary.held += 1;
                    log::error!(
                        "queued message {id} is held and will not be retried automatically: {}",
                        next.last_error.as_deref().unwrap_or_default()
                    );
                } else {
                    summary.deferred += 1;
                    log::warn!(
                        "queued message {id} deferred (attempt {}, next in {}): {}",
                        next.attempts,
                        queue::age_text(next.next.saturating_sub(now)),
                        e.chain()
                    );
                }
                claimed.failed(&next)?;
            }
        }
    }
    if let Some(o) = open.take() {
        let _ = o.client.quit();
    }
    queue.sync();
    if let Some(only) = selection.only
        && !found_only
    {
        return Err(Error::new(
            crate::error::ErrorKind::Usage,
            format!("no message {only} in the queue"),
        ));
    }
    Ok(summary)
}

fn send_claimed(
    claimed: &mut Claimed,
    resolved: &Resolved,
    env: &Env,
    open: &mut Option<Open>,
) -> Result<(String, u16)> {
    let s = &resolved.settings;
    let stored = &claimed.stored;
    let key = format!("{:?}", (&stored.config, &stored.account, &stored.options));
    if open.as_ref().is_some_and(|o| o.key != key)
        && let Some(o) = open.take()
    {
        let _ = o.client.quit();
    }
    if open.is_none() {
        let session = run::session_settings(s, env)?;
        *open = Some(Open {
            key,
            client: SmtpClient::connect(&session)?,
        });
    }
    let envelope = run::smtp_envelope(s, &stored.from, &stored.recipients, stored.eight_bit);
    let size = stored.size;
    let Some(o) = open.as_mut() else {
        return Err(Error::new(
            crate::error::ErrorKind::Internal,
            "no connection",
        ));
    };
    run::transact(&mut o.client, &envelope, &mut claimed.body(), size)
}

/// `text` with every control character shown as `?`: a server's reply text (the last error)
/// and a file's contents must not reach a terminal as escape sequences.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Writes the listing (mailq): id, size, age, sender, then the recipients and the last error.
pub fn list(queue: Option<&Queue>, out: &mut dyn Write) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    let entries = match queue.map(Queue::entries) {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Err(std::io::Error::other(e.chain())),
        None => Vec::new(),
    };
    let now = queue::now();
    let (mut count, mut bytes) = (0usize, 0u64);
    for entry in &entries {
        let Some(queue) = queue else { break };
        match entry {
            Entry::Foreign { name } => {
                summary.foreign += 1;
                writeln!(
                    out,
                    "{}: not a queued message (skipped by every flush)",
                    printable(&queue.dir().join(name).display().to_string())
                )?;
            }
            Entry::Message { id, state } => match queue.peek(id) {
                Err(reason) => {
                    summary.unreadable += 1;
                    writeln!(
                        out,
                        "{id:<18} (cannot be read, never sent: {})",
                        printable(&reason)
                    )?;
                }
                Ok((stored, size)) => {
                    count += 1;
                    bytes += size;
                    let from = if stored.from.is_empty() {
                        "<>".to_string()
                    } else {
                        printable(&stored.from)
                    };
                    if count == 1 {
                        writeln!(
                            out,
                            "{:<18} {:>9} {:>6} Sender/Recipients",
                            "Queue ID", "Size", "Age"
                        )?;
                    }
                    writeln!(
                        out,
                        "{id:<18} {size:>9} {:>6} {from}",
                        queue::age_text(now.saturating_sub(stored.queued))
                    )?;
                    if let Some(e) = &state.last_error {
                        let when = if state.held {
                            "held".to_string()
                        } else if state.next > now {
                            format!("next attempt in {}", queue::age_text(state.next - now))
                        } else {
                            "due now".to_string()
                        };
                        if state.held {
                            summary.held += 1;
                        }
                        writeln!(
                            out,
                            "{:18} ({} attempt(s), {when}: {})",
                            "",
                            state.attempts,
                            printable(e)
                        )?;
                    }
                    for r in &stored.recipients {
                        writeln!(out, "{:18} {}", "", printable(r))?;
                    }
                }
            },
        }
    }
    if count == 0 && summary.unreadable == 0 {
        writeln!(out, "Mail queue is empty")?;
    } else {
        writeln!(
            out,
            "-- {count} message(s), {bytes} bytes{}",
            if summary.held > 0 {
                format!(", {} held", summary.held)
            } else {
                String::new()
            }
        )?;
    }
    Ok(summary)
}
