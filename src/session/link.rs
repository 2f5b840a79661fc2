//! The connection under every session: opening it (plain, or TLS from the first byte), and for
//! the POP3 and IMAP sessions the traced write of a command, the read that feeds a protocol
//! machine until it has an event, the STARTTLS/STLS upgrade and the latch that makes a session
//! unusable after a failure left the protocol state unknown.

use std::io::{Read, Write};
use std::time::Duration;

use super::auth::Server;
use crate::error::{Error, ErrorKind, Result};
use crate::log as plog;
use crate::net::{
    self, ConnectOptions, Connection, Endpoint, NetError, Readiness, TlsMode, TlsOptions,
};
use crate::proto::trace::Outbound;
use crate::proto::{imap, pop3};

/// Where and how to connect: the part of a session's settings every protocol has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub endpoint: &'a Endpoint,
    pub tls_mode: TlsMode,
    pub tls: &'a TlsOptions,
    pub connect: &'a ConnectOptions,
}

/// Opens the connection: with [`TlsMode::Implicit`] the TLS handshake (and the certificate
/// check) is done when this returns; otherwise it is plain TCP and the protocol upgrades it.
pub(crate) fn open(t: Target<'_>) -> std::result::Result<Connection, NetError> {
    match t.tls_mode {
        TlsMode::Implicit => net::connect_tls(t.endpoint, t.connect, t.tls),
        TlsMode::Off | TlsMode::Starttls => net::connect(t.endpoint, t.connect),
    }
}

/// Opens the connection to `server` and runs the protocol's session start on it; either
/// failure says which `proto` session with which server could not be opened.
pub(crate) fn connect<S>(
    server: &Server,
    proto: &str,
    start: impl FnOnce(Connection) -> Result<S>,
) -> Result<S> {
    let ep = &server.endpoint;
    let context = || format!("cannot open {proto} session with {}:{}", ep.host, ep.port);
    let target = Target {
        endpoint: ep,
        tls_mode: server.tls_mode,
        tls: &server.tls,
        connect: &server.connect,
    };
    let conn = open(target).map_err(|e| Error::from(e).context(context()))?;
    start(conn).map_err(|e| e.context(context()))
}

/// The steps of a POP3 or IMAP session start; [`start`] runs them in the one order.
pub(crate) trait SessionStart: Sized {
    /// "STLS" or "STARTTLS".
    const UPGRADE: &'static str;
    /// Reads the greeting; an error unless it welcomes us.
    fn greeting(&mut self) -> Result<()>;
    /// Learns the capabilities (unless already known): whether the TLS upgrade is offered,
    /// `None` when the server cannot say.
    fn capabilities(&mut self) -> Result<Option<bool>>;
    /// Asks for the TLS upgrade: `Err(text)` when the server refuses.
    fn request_tls(&mut self) -> Result<std::result::Result<(), String>>;
    /// Upgrades the connection and returns the session restarted on it, with nothing read
    /// before the handshake kept.
    fn upgrade(self) -> Result<Self>;
}

/// Greeting, capabilities and, with `upgrade` (STARTTLS wanted on a plain connection), the
/// mandatory upgrade followed by a fresh capability list (what was said in plaintext is not
/// trusted).
pub(crate) fn start<S: SessionStart>(mut s: S, upgrade: bool) -> Result<S> {
    s.greeting()?;
    let offered = s.capabilities()?;
    if !upgrade {
        return Ok(s);
    }
    if offered == Some(false) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("server does not offer {}, and TLS is required", S::UPGRADE),
        ));
    }
    if let Err(text) = s.request_tls()? {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("server refused {}: {text}", S::UPGRADE),
        ));
    }
    let mut s = s.upgrade()?;
    s.capabilities()?;
    Ok(s)
}

/// The error for a greeting that turns us away.
pub(crate) fn refused_session(text: &str) -> Error {
    Error::new(
        ErrorKind::RejectedTemporary,
        format!("server refused the session: {text}"),
    )
}

/// The error for an event the session did not expect (`what`: "POP3 reply", "IMAP
/// response"), shown shortly; message data only as such, never its bytes.
pub(crate) fn unexpected(what: &str, event: &dyn std::fmt::Debug, is_data: bool) -> Error {
    let shown = if is_data {
        "message data".to_string()
    } else {
        format!("{event:?}")
    };
    let short: String = shown.chars().take(120).collect();
    Error::new(ErrorKind::Protocol, format!("unexpected {what}: {short}"))
}

/// A sans-I/O protocol machine a [`Link`] feeds: bytes in, events out, plus the received lines
/// for the trace.
pub(crate) trait Machine {
    type Event;
    fn receive(&mut self, data: &[u8]);
    fn poll(&mut self) -> Result<Option<Self::Event>>;
    fn take_trace(&mut self) -> Vec<String>;
}

/// The two fetch machines have the same three calls; only the error wording differs.
macro_rules! machine {
    ($client:ty, $event:ty, $broke:literal) => {
        impl Machine for $client {
            type Event = $event;
            fn receive(&mut self, data: &[u8]) {
                <$client>::receive(self, data);
            }
            fn poll(&mut self) -> Result<Option<$event>> {
                <$client>::poll(self)
                    .map_err(|e| Error::with_source(ErrorKind::Protocol, $broke, e))
            }
            fn take_trace(&mut self) -> Vec<String> {
                <$client>::take_trace(self)
            }
        }
    };
}

machine!(pop3::Client, pop3::Event, "POP3 server broke the protocol");
machine!(imap::Client, imap::Event, "IMAP server broke the protocol");

/// Bytes one read may take from the connection, at most.
const READ_BUFFER: usize = 64 * 1024;
/// The read buffer's size when a session starts reading again (after
/// [`Link::release_buffer`]): a read that fills it makes the next one four times larger, up to
/// [`READ_BUFFER`], so a message body is read in 64 KiB pieces after two reads, while the
/// short replies of a session that mostly waits (an IDLE continuation, EXISTS, the server's
/// "still here") never take a 64 KiB block. Those blocks, taken and given back by a thousand
/// waiting threads in glibc's shared arenas, left holes the small long-lived allocations of
/// the sessions then pinned: 11.6 KiB of resident heap per idle IMAPS account at 1000
/// accounts (BENCHMARKS.md).
const READ_BUFFER_FIRST: usize = 4 * 1024;

/// One connection with its read buffer and the broken latch.
pub(crate) struct Link {
    conn: Connection,
    read_buf: Vec<u8>,
    broken: bool,
    /// "POP3" or "IMAP", for the trace and messages.
    proto: &'static str,
}

impl Link {
    pub fn new(conn: Connection, proto: &'static str) -> Link {
        Link {
            conn,
            read_buf: Vec::new(),
            broken: false,
            proto,
        }
    }

    /// A session's Debug: its peer, whether TLS is on and the user, nothing else (no
    /// buffers, no settings with secrets in them).
    pub fn debug_session(
        &self,
        f: &mut std::fmt::Formatter<'_>,
        name: &str,
        user: &str,
    ) -> std::fmt::Result {
        f.debug_struct(name)
            .field("peer", &self.conn.peer())
            .field("tls", &self.conn.is_tls())
            .field("user", &user)
            .finish()
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Starts TLS after the server accepted STARTTLS/STLS. The caller drops its protocol
    /// machine (and with it every byte received before): the session restarts on the new link.
    pub fn upgrade_tls(self, tls: &TlsOptions, host: &str) -> Result<Link> {
        let conn = self.conn.upgrade_tls(tls, host)?;
        Ok(Link::new(conn, self.proto))
    }

    /// Marks the session unusable and passes the error on.
    pub fn poison(&mut self, e: Error) -> Error {
        self.broken = true;
        e
    }

    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// An error when an earlier failure made the session unusable.
    pub fn ensure_usable(&self) -> Result<()> {
        if self.broken {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("{} session unusable after an earlier error", self.proto),
            ));
        }
        Ok(())
    }

    /// Writes `out`, tracing it line by line with its secret spans hidden.
    pub fn write_out(&mut self, out: &Outbound) -> Result<()> {
        if plog::wire_enabled() {
            for line in out.trace_lines() {
                plog::wire(self.proto, '>', &line);
            }
        }
        let r = self
            .conn
            .write_all(&out.bytes)
            .and_then(|()| self.conn.flush());
        r.map_err(|e| self.poison(NetError::from_io(e).into()))?;
        // Sending is what puts Linux's delayed ACKs in interactive mode (its "pingpong"); the
        // reply may come in several segments, the server holding the next until the first is
        // acknowledged. Reading never re-enters that mode, so re-arming once per command batch
        // is enough: before every read it cost a setsockopt(2) per read, ~1.2 per message.
        self.conn.quickack();
        Ok(())
    }

    /// Gives the read buffer back to the allocator: a session that waits (IDLE) for minutes
    /// should not hold 64 KiB for it; the next read allocates it again.
    pub fn release_buffer(&mut self) {
        self.read_buf = Vec::new();
    }

    /// The next event `machine` can produce from what it already received, without reading.
    pub fn buffered_event<M: Machine>(&mut self, machine: &mut M) -> Result<Option<M::Event>> {
        let polled = machine.poll();
        for line in machine.take_trace() {
            plog::wire(self.proto, '<', &line);
        }
        polled
    }

    /// The next event of `machine` if it begins to arrive within `wait`; `None` when nothing
    /// did. Once data arrives, the rest of the event is read with the io timeout.
    pub fn next_event_within<M: Machine>(
        &mut self,
        machine: &mut M,
        wait: Duration,
    ) -> Result<Option<M::Event>> {
        if let Some(ev) = self.buffered_event(machine)? {
            return Ok(Some(ev));
        }
        if !self.conn.has_buffered_input()
            && self.conn.wait_readable(wait, None)? == Readiness::Timeout
        {
            return Ok(None);
        }
        self.next_event(machine).map(Some)
    }

    /// The next event of `machine`, reading (with the connection's io timeout) as needed. An
    /// error here does not poison: a timed-out IDLE read is expected, the callers decide.
    pub fn next_event<M: Machine>(&mut self, machine: &mut M) -> Result<M::Event> {
        loop {
            let polled = machine.poll();
            for line in machine.take_trace() {
                plog::wire(self.proto, '<', &line);
            }
            if let Some(ev) = polled? {
                return Ok(ev);
            }
            if self.read_buf.is_empty() {
                self.read_buf = vec![0; READ_BUFFER_FIRST];
            }
            let n = match self.conn.read(&mut self.read_buf) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::NetworkIo,
                        format!("{} server closed the connection", self.proto),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NetError::from_io(e).into()),
            };
            machine.receive(self.read_buf.get(..n).unwrap_or_default());
            if n == self.read_buf.len() && n < READ_BUFFER {
                // Replaced, not grown: its bytes were handed over already.
                self.read_buf = vec![0; (n * 4).min(READ_BUFFER)];
            }
        }
    }
}
