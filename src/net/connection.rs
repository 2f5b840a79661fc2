//! An established connection, plain or TLS: byte I/O with timeouts, the in-place STARTTLS
//! upgrade (discarding anything the server sent after its go-ahead), TLS details for
//! `--serverinfo`, and the TCP_QUICKACK re-arm (a server answering in several segments, such as
//! Postfix's session tickets before its reply, must not wait for the 40 ms delayed-ACK timer).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use super::socket::{self, Socket};
use super::tls::{self, TlsStream};
use super::{ConnectOptions, Endpoint, NetError, TlsOptions, dial};

/// Bound on the bytes discarded before a STARTTLS handshake: a server that keeps talking
/// after its go-ahead is not negotiating TLS.
const MAX_DISCARD: usize = 64 * 1024;

enum Stream {
    Plain(Socket),
    Tls(Box<TlsStream>),
}

/// A connection to a server. Reads and writes honour the io timeout; a timed-out read returns
/// an `io::Error` of kind `TimedOut` or `WouldBlock` (map it with [`NetError::from_io`]).
pub struct Connection {
    stream: Stream,
    /// `host:port`, for messages.
    peer: String,
    /// Whether the socket's far end is something other than the server (a SOCKS5 proxy, or a
    /// Unix socket): then the socket has no address of the server to report.
    indirect: bool,
    /// The plugin command behind the stream, reaped (or killed) when the connection is dropped.
    _child: Option<dial::CommandChild>,
}

/// Opens a plain connection along `opts.route`: TCP (TCP_NODELAY), through a SOCKS5 proxy, or
/// to a Unix socket; read/write timeouts = `io_timeout`.
pub fn connect(ep: &Endpoint, opts: &ConnectOptions) -> Result<Connection, NetError> {
    let opened = dial::open(ep, opts)?;
    Ok(Connection {
        stream: Stream::Plain(opened.socket),
        peer: opened.peer,
        indirect: opened.indirect,
        _child: opened.child,
    })
}

/// Opens a connection with TLS from the first byte; the handshake (and certificate check) is
/// complete when this returns.
pub fn connect_tls(
    ep: &Endpoint,
    opts: &ConnectOptions,
    tls_opts: &TlsOptions,
) -> Result<Connection, NetError> {
    let peer = dial::peer_name(ep, opts);
    let prepared = tls::prepare(tls_opts, &ep.host, &peer)?;
    let conn = connect(ep, opts)?;
    conn.secure(prepared, false)
}

impl Connection {
    /// Starts TLS on this plain connection (after STARTTLS/STLS was accepted), verifying the
    /// server as `host` unless `tls_opts.server_name` overrides it. The caller must have dropped
    /// its protocol buffer; bytes the server sent after its go-ahead that are still in the socket
    /// are discarded with a warning, never read as TLS-protected data.
    pub fn upgrade_tls(self, tls_opts: &TlsOptions, host: &str) -> Result<Connection, NetError> {
        let Stream::Plain(sock) = &self.stream else {
            return Err(NetError::Tls {
                host: self.peer,
                reason: "the connection already uses TLS".to_string(),
            });
        };
        let prepared = tls::prepare(tls_opts, host, &self.peer)?;
        discard_pending(sock, &self.peer)?;
        self.secure(prepared, true)
    }

    /// Runs the TLS handshake on this plain connection.
    fn secure(self, prepared: tls::Prepared, after_starttls: bool) -> Result<Connection, NetError> {
        let Connection {
            stream,
            peer,
            indirect,
            _child,
        } = self;
        let sock = match stream {
            Stream::Plain(sock) => sock,
            Stream::Tls(_) => {
                return Err(NetError::Tls {
                    host: peer,
                    reason: "the connection already uses TLS".to_string(),
                });
            }
        };
        let stream = tls::handshake(sock, prepared, &peer, after_starttls)?;
        let conn = Connection {
            stream: Stream::Tls(Box::new(stream)),
            peer,
            indirect,
            _child,
        };
        // Postfix sends session tickets before its reply; do not let a delayed ACK stall it.
        conn.quickack();
        Ok(conn)
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// `host:port` as connected to (for messages).
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The server's socket address; an error when the connection goes through a proxy or a
    /// Unix socket (the proxy's address is not the server's).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self.socket() {
            Socket::Tcp(s) if !self.indirect => s.peer_addr(),
            _ => Err(socket::no_ip_address()),
        }
    }

    /// The local socket address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket().local_addr()
    }

    /// The DER of the server's leaf certificate, when TLS is active.
    pub fn peer_certificate_der(&self) -> Option<Vec<u8>> {
        match &self.stream {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s
                .conn
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|c| c.as_ref().to_vec()),
        }
    }

    /// SHA-256 of the server's leaf certificate, when TLS is active.
    pub fn peer_fingerprint_sha256(&self) -> Option<[u8; 32]> {
        match &self.stream {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s
                .conn
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|c| tls::sha256(c.as_ref())),
        }
    }

    /// The negotiated protocol version ("TLSv1.3"), when TLS is active.
    pub fn protocol_version(&self) -> Option<String> {
        match &self.stream {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s.conn.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                other => format!("{other:?}"),
            }),
        }
    }

    /// The tls-exporter channel binding value (RFC 9266: 32 bytes exported with the label
    /// "EXPORTER-Channel-Binding" and no context) for SCRAM -PLUS. Only for TLS 1.3: under
    /// TLS 1.2 the exporter is unique to the connection only with the extended master secret,
    /// which the client cannot see was used.
    pub fn tls_exporter(&self) -> Option<Vec<u8>> {
        let Stream::Tls(s) = &self.stream else {
            return None;
        };
        if s.conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return None;
        }
        s.conn
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
            .map(|k| k.to_vec())
    }

    /// Whether the TLS handshake resumed an earlier session (with a ticket from a connection of
    /// the same trust, `net::tls::client_config`) instead of checking the certificate again.
    pub fn tls_resumed(&self) -> bool {
        match &self.stream {
            Stream::Plain(_) => false,
            Stream::Tls(s) => s.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        }
    }

    /// The negotiated cipher suite ("TLS13_AES_256_GCM_SHA384"), when TLS is active.
    pub fn cipher_suite(&self) -> Option<String> {
        match &self.stream {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s.conn.negotiated_cipher_suite().map(|cs| {
                let suite = cs.suite();
                suite
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{suite:?}"))
            }),
        }
    }

    /// Changes the read and write timeout (zero means none).
    pub fn set_io_timeout(&self, timeout: Duration) -> Result<(), NetError> {
        let timeout = Some(timeout).filter(|t| !t.is_zero());
        self.socket().set_timeouts(timeout).map_err(NetError::Io)
    }

    /// Re-arms TCP_QUICKACK so the next segment we receive is acknowledged at once instead of
    /// waiting for the delayed-ACK timer (Linux clears the flag by itself when we send). Call
    /// after a write the server answers in several segments, before reading the answer.
    /// Failure only costs speed.
    pub fn quickack(&self) {
        let Some(tcp) = self.socket().tcp() else {
            return;
        };
        if let Err(e) = rustix::net::sockopt::set_tcp_quickack(tcp, true) {
            log::debug!("cannot set TCP_QUICKACK on {}: {e}", self.peer);
        }
    }

    /// Ends the connection: TLS close_notify when TLS is active, then a TCP shutdown. Errors
    /// are of no interest to anyone at this point except when the peer is still reading, so
    /// they are returned but harmless to ignore.
    pub fn shutdown(&mut self) -> Result<(), NetError> {
        if let Stream::Tls(s) = &mut self.stream {
            s.conn.send_close_notify();
            while s.conn.wants_write() {
                s.conn.write_tls(&mut s.sock).map_err(NetError::from_io)?;
            }
        }
        match self.socket().shutdown(Shutdown::Both) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(NetError::from_io(e)),
            _ => Ok(()),
        }
    }

    /// Whether data already received can be read without touching the socket: decrypted TLS
    /// plaintext not yet taken (a read returns at most its buffer's worth). A TLS error counts
    /// as data, so that the next read reports it.
    pub fn has_buffered_input(&mut self) -> bool {
        match &mut self.stream {
            Stream::Plain(_) => false,
            Stream::Tls(s) => s
                .conn
                .process_new_packets()
                .map_or(true, |st| st.plaintext_bytes_to_read() > 0),
        }
    }

    /// Sleeps in poll(2) until the socket is readable, `wake` (an eventfd or pipe) is readable,
    /// or `timeout` passes; one system call, no timer ticks in between. Data already buffered
    /// ([`Connection::has_buffered_input`]) is the caller's to check first.
    pub fn wait_readable(
        &self,
        timeout: Duration,
        wake: Option<BorrowedFd<'_>>,
    ) -> Result<Readiness, NetError> {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let limit = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let sock = self.socket().as_fd();
        let wake_fd = wake.unwrap_or(sock);
        let mut both = [
            PollFd::new(&sock, PollFlags::IN),
            PollFd::new(&wake_fd, PollFlags::IN),
        ];
        let fds = both
            .get_mut(..if wake.is_some() { 2 } else { 1 })
            .unwrap_or_default();
        loop {
            match rustix::event::poll(fds, Some(&limit)) {
                Ok(0) => return Ok(Readiness::Timeout),
                Ok(_) => break,
                // A signal: poll again (at worst the full timeout again, still a bounded wait).
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(NetError::Io(e.into())),
            }
        }
        let ready = |fd: Option<&PollFd<'_>>| fd.is_some_and(|f| !f.revents().is_empty());
        if ready(fds.get(1)) {
            return Ok(Readiness::Wake);
        }
        Ok(Readiness::Socket)
    }

    fn socket(&self) -> &Socket {
        match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

/// Why [`Connection::wait_readable`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The socket has data, or an end or error a read will report.
    Socket,
    /// The wake descriptor is readable.
    Wake,
    Timeout,
}

/// Reads and drops whatever the server has already sent, without waiting for more.
fn discard_pending(sock: &Socket, peer: &str) -> Result<(), NetError> {
    sock.set_nonblocking(true).map_err(NetError::Io)?;
    let mut buf = [0u8; 4096];
    let mut discarded = 0usize;
    let result = loop {
        match (&*sock).read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                discarded += n;
                if discarded > MAX_DISCARD {
                    break Err(NetError::Tls {
                        host: peer.to_string(),
                        reason: "the server keeps sending data after accepting STARTTLS"
                            .to_string(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(NetError::Io(e)),
        }
    };
    sock.set_nonblocking(false).map_err(NetError::Io)?;
    if discarded > 0 {
        log::warn!(
            "{peer}: discarded {discarded} bytes the server sent after accepting STARTTLS \
             (never treated as TLS-protected data)"
        );
    }
    result
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("tls", &self.is_tls())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn assert_send<T: Send>() {}

    #[test]
    fn connection_is_send() {
        assert_send::<Connection>();
    }

    #[test]
    fn plain_connection_basics() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port,
        };
        let mut conn = connect(&ep, &ConnectOptions::default()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert!(!conn.is_tls());
        assert_eq!(conn.peer(), format!("127.0.0.1:{port}"));
        assert_eq!(conn.peer_fingerprint_sha256(), None);
        assert_eq!(conn.peer_certificate_der(), None);
        assert_eq!(conn.protocol_version(), None);
        assert_eq!(conn.cipher_suite(), None);
        assert_eq!(
            format!("{conn:?}"),
            format!("Connection {{ peer: \"127.0.0.1:{port}\", tls: false }}")
        );
        conn.set_io_timeout(Duration::from_millis(50)).unwrap();
        conn.quickack();
        let mut buf = [0u8; 8];
        let err = NetError::from_io(conn.read(&mut buf).unwrap_err());
        assert!(matches!(err, NetError::Timeout), "{err:?}");
        conn.write_all(b"ping").unwrap();
        server.read_exact(&mut buf[..4]).unwrap();
        assert_eq!(&buf[..4], b"ping");
        conn.shutdown().unwrap();
        assert_eq!(server.read(&mut buf).unwrap(), 0);
    }
}
