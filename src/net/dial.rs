//! Opening the byte stream to a server along its route: resolving a host and connecting to it
//! over TCP (IPv6 and IPv4 addresses interleaved and tried happy-eyeballs style, RFC 8305 §4-5,
//! with a fixed 250 ms attempt delay; optionally bound to a source address), through a SOCKS5
//! proxy that resolves the name itself, or to a Unix-domain socket. Each is bounded by the
//! connect timeout.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::socket::Socket;
use super::{ConnectOptions, Endpoint, NetError, Route, Socks5Proxy};
use crate::proto::socks5::{Socks5Client, Step};

/// An opened stream and how to name its far end.
pub(crate) struct Opened {
    pub socket: Socket,
    /// `host:port` of the server, or the socket path.
    pub peer: String,
    /// The socket's far end is a proxy or a Unix socket, not the server's IP address.
    pub indirect: bool,
    /// The command whose stdin/stdout is the stream ([`Route::Command`]).
    pub child: Option<CommandChild>,
}

/// The process behind a [`Route::Command`] stream. Dropping it gives the command a moment to
/// exit by itself (its stdin has reached end of file by then), then ends it and what it started
/// (a shell line such as `openssl s_client ...` keeps its real program as a child, and
/// `s_client -quiet` does not exit at end of file), so neither a zombie nor a lingering `ssh`
/// outlives the connection. The command stays in rfetch's process group, so that an `ssh`
/// asking for a password on the terminal can read it.
pub(crate) struct CommandChild {
    child: std::process::Child,
}

/// How long a plugin command may take to exit after its connection closed.
const COMMAND_EXIT_GRACE: Duration = Duration::from_secs(2);

impl Drop for CommandChild {
    fn drop(&mut self) {
        let deadline = Instant::now() + COMMAND_EXIT_GRACE;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    log::debug!("plugin command exited: {status}");
                    return;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => break,
            }
        }
        // Still running: its descendants first (they are re-parented once it is gone).
        for pid in crate::process::descendants(self.child.id()) {
            crate::process::signal_pid(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How messages name the server of `ep` reached along `opts.route`.
pub(crate) fn peer_name(ep: &Endpoint, opts: &ConnectOptions) -> String {
    match &opts.route {
        Route::UnixSocket(path) => path.display().to_string(),
        Route::Direct | Route::Socks5(_) | Route::Command(_) => target_name(ep),
    }
}

/// Opens the stream to `ep` along `opts.route`, with read/write timeouts = `io_timeout`.
pub(crate) fn open(ep: &Endpoint, opts: &ConnectOptions) -> Result<Opened, NetError> {
    match &opts.route {
        Route::Direct => Ok(Opened {
            socket: Socket::Tcp(tcp_connect(ep, opts)?),
            peer: target_name(ep),
            indirect: false,
            child: None,
        }),
        Route::Socks5(proxy) => Ok(Opened {
            socket: Socket::Tcp(socks5_connect(ep, proxy, opts)?),
            peer: target_name(ep),
            indirect: true,
            child: None,
        }),
        Route::UnixSocket(path) => Ok(Opened {
            socket: Socket::Unix(unix_connect(path, opts)?),
            peer: path.display().to_string(),
            indirect: true,
            child: None,
        }),
        Route::Command(argv) => {
            let (stream, child) = command_connect(ep, argv, opts)?;
            Ok(Opened {
                socket: Socket::Unix(stream),
                peer: target_name(ep),
                indirect: true,
                child: Some(child),
            })
        }
    }
}

/// Starts `argv` with its stdin and stdout on one end of a socket pair and returns the other
/// end (with the io timeout on reads and writes, so a command that never answers cannot hang
/// the session) and the process. Its stderr stays ours: ssh's messages reach the user.
fn command_connect(
    ep: &Endpoint,
    argv: &[String],
    opts: &ConnectOptions,
) -> Result<(UnixStream, CommandChild), NetError> {
    let target = format!("{} (plugin command)", target_name(ep));
    let failed = |source: io::Error| NetError::Connect {
        target: target.clone(),
        tried: String::new(),
        source,
    };
    let Some((program, args)) = argv.split_first() else {
        return Err(failed(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the plugin command is empty",
        )));
    };
    let (ours, theirs) = UnixStream::pair().map_err(failed)?;
    let theirs_out = theirs.try_clone().map_err(failed)?;
    log::debug!(
        "connecting to {} through the plugin command {argv:?}",
        target_name(ep)
    );
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )))
        .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs_out,
        )))
        .spawn()
        .map_err(failed)?;
    let child = CommandChild { child };
    let timeout = Some(opts.io_timeout).filter(|t| !t.is_zero());
    ours.set_read_timeout(timeout).map_err(failed)?;
    ours.set_write_timeout(timeout).map_err(failed)?;
    Ok((ours, child))
}

/// The connect timeout as a bound (zero means none of our own).
fn connect_limit(opts: &ConnectOptions) -> Duration {
    Some(opts.connect_timeout)
        .filter(|t| !t.is_zero())
        .unwrap_or(UNBOUNDED_CONNECT)
        .min(UNBOUNDED_CONNECT)
}

/// Connects to the proxy (resolving the proxy's own name here, which reveals nothing about the
/// destination) and asks it for a tunnel to `ep` by name. The connect timeout bounds the
/// connect and the handshake together. Nothing here ever falls back to a direct connection.
fn socks5_connect(
    ep: &Endpoint,
    proxy: &Socks5Proxy,
    opts: &ConnectOptions,
) -> Result<TcpStream, NetError> {
    let target = target_name(ep);
    let proxy_name = target_name(&proxy.endpoint);
    let proxy_error = |problem| NetError::Proxy {
        proxy: proxy_name.clone(),
        target: target.clone(),
        problem,
    };
    // Checked before any connection: a name too long for SOCKS5 must not become a direct
    // attempt or a local lookup.
    let (mut machine, greeting) =
        Socks5Client::start(&ep.host, ep.port, proxy.credentials.clone()).map_err(proxy_error)?;
    let deadline = Instant::now() + connect_limit(opts);
    log::debug!("connecting to {target} through SOCKS5 proxy {proxy_name}");
    let direct = ConnectOptions {
        route: Route::Direct,
        ..opts.clone()
    };
    let about_proxy = format!("SOCKS5 proxy {proxy_name}");
    let mut stream = tcp_connect(&proxy.endpoint, &direct).map_err(|e| match e {
        NetError::Connect { tried, source, .. } => NetError::Connect {
            target: about_proxy.clone(),
            tried,
            source,
        },
        NetError::ConnectTimeout { timeout, .. } => NetError::ConnectTimeout {
            target: about_proxy.clone(),
            timeout,
        },
        NetError::HostNotFound { host } => NetError::HostNotFound {
            host: format!("{host} (the SOCKS5 proxy)"),
        },
        NetError::ResolveTemporary { host } => NetError::ResolveTemporary {
            host: format!("{host} (the SOCKS5 proxy)"),
        },
        other => other,
    })?;
    let timed_out = || NetError::ConnectTimeout {
        target: format!("{target} through {about_proxy}"),
        timeout: opts.connect_timeout,
    };
    let io_error = |e: io::Error| match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => timed_out(),
        _ => NetError::Connect {
            target: format!("{target} through {about_proxy}"),
            tried: String::new(),
            source: e,
        },
    };
    let send = |stream: &mut TcpStream, bytes: &[u8]| -> Result<(), NetError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timed_out());
        }
        stream
            .set_write_timeout(Some(remaining))
            .map_err(&io_error)?;
        stream.write_all(bytes).map_err(&io_error)
    };
    send(&mut stream, &greeting)?;
    // The longest SOCKS5 reply is 262 bytes; reading at most `wanted` leaves the server's
    // first bytes (an SMTP greeting) in the socket for the session.
    let mut buf = [0u8; 262];
    loop {
        let want = machine.wanted().min(buf.len());
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timed_out());
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(&io_error)?;
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(proxy_error(crate::proto::socks5::Socks5Error::Protocol(
                    "it closed the connection during the handshake".into(),
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(e)),
        };
        match machine.feed(&buf[..n]).map_err(proxy_error)? {
            (_, Step::NeedMore) => {}
            (_, Step::Send(bytes)) => send(&mut stream, &bytes)?,
            (_, Step::Connected) => break,
        }
    }
    configure(&stream, opts.io_timeout).map_err(&io_error)?;
    Ok(stream)
}

/// Connects to a Unix-domain socket. Linux bounds a blocking connect() to a socket whose
/// listen queue is full by SO_SNDTIMEO and reports the expiry as EAGAIN.
fn unix_connect(path: &Path, opts: &ConnectOptions) -> Result<UnixStream, NetError> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let target = path.display().to_string();
    let failed = |source: io::Error| NetError::Connect {
        target: target.clone(),
        tried: String::new(),
        source,
    };
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| failed(e.into()))?;
    let stream = UnixStream::from(fd);
    stream
        .set_write_timeout(Some(connect_limit(opts)))
        .map_err(failed)?;
    let addr = SocketAddrUnix::new(path).map_err(|e| failed(e.into()))?;
    loop {
        match rustix::net::connect(&stream, &addr) {
            Ok(()) | Err(rustix::io::Errno::ISCONN) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => {
                return Err(NetError::ConnectTimeout {
                    target,
                    timeout: opts.connect_timeout,
                });
            }
            Err(e) => return Err(failed(e.into())),
        }
    }
    let timeout = Some(opts.io_timeout).filter(|t| !t.is_zero());
    stream.set_read_timeout(timeout).map_err(failed)?;
    stream.set_write_timeout(timeout).map_err(failed)?;
    Ok(stream)
}

/// How long an attempt may stay unanswered before the next address is tried in parallel.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// `host:port` as users write it (IPv6 literals in brackets).
pub(crate) fn target_name(ep: &Endpoint) -> String {
    let host = bare_host(&ep.host);
    if host.contains(':') {
        format!("[{host}]:{}", ep.port)
    } else {
        format!("{host}:{}", ep.port)
    }
}

/// The host without the brackets some users put around IPv6 literals.
pub(crate) fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Bound used when the connect timeout is zero ("off"): the kernel gives up on unanswered SYNs
/// after about two minutes anyway.
const UNBOUNDED_CONNECT: Duration = Duration::from_secs(24 * 3600);

/// Opens a TCP connection with TCP_NODELAY and read/write timeouts set to `io_timeout` (zero
/// means none). A zero `connect_timeout` means no bound of our own.
fn tcp_connect(ep: &Endpoint, opts: &ConnectOptions) -> Result<TcpStream, NetError> {
    let limit = connect_limit(opts);
    let deadline = Instant::now() + limit;
    let target = target_name(ep);
    let mut addrs = interleave(resolve(ep, limit)?);
    if let Some(source) = opts.source_ip {
        addrs.retain(|a| a.is_ipv6() == source.is_ipv6());
        if addrs.is_empty() {
            return Err(NetError::Connect {
                target,
                tried: String::new(),
                source: io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("no address of the same family as source address {source}"),
                ),
            });
        }
    }
    let stream = race(&addrs, deadline, opts, &target)?;
    configure(&stream, opts.io_timeout).map_err(|source| NetError::Connect {
        target,
        tried: String::new(),
        source,
    })?;
    Ok(stream)
}

fn configure(stream: &TcpStream, io_timeout: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let timeout = Some(io_timeout).filter(|t| !t.is_zero());
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    Ok(())
}

/// Resolves the endpoint. IP literals skip the resolver; names are looked up on a helper thread
/// so that a hanging resolver is bounded by the connect timeout too.
fn resolve(ep: &Endpoint, timeout: Duration) -> Result<Vec<SocketAddr>, NetError> {
    let host = bare_host(&ep.host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, ep.port)]);
    }
    let (tx, rx) = mpsc::channel();
    let query = (host.to_string(), ep.port);
    let spawned = thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let result = query
                .to_socket_addrs()
                .map(|addrs| addrs.collect::<Vec<_>>());
            // The receiver is gone when the lookup took too long; nobody wants the answer then.
            let _ = tx.send(result);
        });
    let not_found = || NetError::HostNotFound {
        host: host.to_string(),
    };
    let temporary = || NetError::ResolveTemporary {
        host: host.to_string(),
    };
    if spawned.is_err() {
        return Err(temporary());
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) if addrs.is_empty() => Err(not_found()),
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) if is_temporary_lookup_failure(&e) => Err(temporary()),
        Ok(Err(e)) => {
            log::debug!("lookup of {host} failed: {e}");
            Err(not_found())
        }
        Err(_) => Err(temporary()),
    }
}

/// std reports getaddrinfo failures only as text: EAI_AGAIN is "Temporary failure in name
/// resolution" (glibc and musl).
fn is_temporary_lookup_failure(e: &io::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("temporary failure") || text.contains("try again")
}

/// Orders addresses alternating between families, starting with the family the resolver put
/// first (RFC 8305 §4).
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let first_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
    // /etc/hosts often lists an address twice; trying it twice only wastes an attempt slot.
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if !unique.contains(&addr) {
            unique.push(addr);
        }
    }
    let (preferred, other): (Vec<_>, Vec<_>) =
        unique.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(preferred.len() + other.len());
    let mut preferred = preferred.into_iter();
    let mut other = other.into_iter();
    loop {
        match (preferred.next(), other.next()) {
            (None, None) => break,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
    out
}

/// Tries the addresses in order, starting the next one when the previous has not connected
/// after [`ATTEMPT_DELAY`] (or at once when it failed). The first connection wins; attempts
/// still running are abandoned and their sockets closed when they finish.
fn race(
    addrs: &[SocketAddr],
    deadline: Instant,
    opts: &ConnectOptions,
    target: &str,
) -> Result<TcpStream, NetError> {
    let timed_out = || NetError::ConnectTimeout {
        target: target.to_string(),
        timeout: opts.connect_timeout,
    };
    let mut failures: Vec<(SocketAddr, io::Error)> = Vec::new();
    if let [addr] = addrs {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match attempt(*addr, remaining, opts.source_ip) {
            Ok(stream) => return Ok(stream),
            Err(e) => failures.push((*addr, e)),
        }
    } else {
        let (tx, rx) = mpsc::channel::<(SocketAddr, io::Result<TcpStream>)>();
        let mut next = 0;
        let mut running = 0;
        let mut next_start = Instant::now();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(timed_out());
            }
            if let Some(addr) = addrs.get(next).copied()
                && (now >= next_start || running == 0)
            {
                let tx = tx.clone();
                let remaining = deadline - now;
                let source_ip = opts.source_ip;
                let spawned = thread::Builder::new()
                    .name("connect".into())
                    .spawn(move || {
                        let result = attempt(addr, remaining, source_ip);
                        // A closed channel means another attempt won: dropping the stream
                        // closes this one.
                        let _ = tx.send((addr, result));
                    });
                next += 1;
                match spawned {
                    Ok(_) => {
                        running += 1;
                        next_start = now + ATTEMPT_DELAY;
                    }
                    Err(e) => failures.push((addr, e)),
                }
                continue;
            }
            if running == 0 {
                break;
            }
            let wake = if next < addrs.len() {
                next_start.min(deadline)
            } else {
                deadline
            };
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok((_, Ok(stream))) => return Ok(stream),
                Ok((addr, Err(e))) => {
                    log::debug!("connect to {addr} failed: {e}");
                    running -= 1;
                    failures.push((addr, e));
                    next_start = Instant::now();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    }
    if failures
        .iter()
        .all(|(_, e)| e.kind() == io::ErrorKind::TimedOut)
    {
        return Err(timed_out());
    }
    // Report a refusal or unreachability over a timeout: it says more about what is wrong.
    let tried = if addrs.len() > 1 {
        let list: Vec<String> = failures.iter().map(|(a, _)| a.to_string()).collect();
        format!(" (tried {})", list.join(", "))
    } else {
        String::new()
    };
    let best = failures
        .iter()
        .rposition(|(_, e)| e.kind() != io::ErrorKind::TimedOut)
        .unwrap_or(0);
    let source = failures
        .into_iter()
        .nth(best)
        .map(|(_, e)| e)
        .unwrap_or_else(|| io::Error::other("no address to connect to"));
    Err(NetError::Connect {
        target: target.to_string(),
        tried,
        source,
    })
}

/// One connection attempt, bounded by `timeout`.
fn attempt(
    addr: SocketAddr,
    timeout: Duration,
    source_ip: Option<IpAddr>,
) -> io::Result<TcpStream> {
    if timeout.is_zero() {
        return Err(io::Error::from(io::ErrorKind::TimedOut));
    }
    match source_ip {
        None => TcpStream::connect_timeout(&addr, timeout),
        Some(source) => bound_attempt(addr, timeout, source),
    }
}

/// std cannot bind before connecting, so this builds the socket with rustix. Linux bounds a
/// blocking connect() by SO_SNDTIMEO and reports the expiry as EINPROGRESS.
fn bound_attempt(addr: SocketAddr, timeout: Duration, source: IpAddr) -> io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv6() {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    let stream = TcpStream::from(fd);
    stream.set_write_timeout(Some(timeout))?;
    rustix::net::bind(&stream, &SocketAddr::new(source, 0)).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("cannot bind to source address {source}: {e}"),
        )
    })?;
    loop {
        match rustix::net::connect(&stream, &addr) {
            Ok(()) => break,
            Err(rustix::io::Errno::INPROGRESS) | Err(rustix::io::Errno::ALREADY) => {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            // Interrupted: the connection proceeds in the background; connecting again
            // reports how it went (EISCONN once established).
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::ISCONN) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn interleave_alternates_families_starting_with_the_first() {
        let got = interleave(vec![
            sa("[::1]:1"),
            sa("[::2]:1"),
            sa("[::3]:1"),
            sa("127.0.0.1:1"),
            sa("127.0.0.2:1"),
        ]);
        assert_eq!(
            got,
            vec![
                sa("[::1]:1"),
                sa("127.0.0.1:1"),
                sa("[::2]:1"),
                sa("127.0.0.2:1"),
                sa("[::3]:1"),
            ]
        );
        let got = interleave(vec![
            sa("127.0.0.1:1"),
            sa("[::1]:1"),
            sa("127.0.0.1:1"),
            sa("[::1]:1"),
        ]);
        assert_eq!(got, vec![sa("127.0.0.1:1"), sa("[::1]:1")]);
        assert!(interleave(vec![]).is_empty());
    }

    #[test]
    fn target_names() {
        let ep = |h: &str| Endpoint {
            host: h.into(),
            port: 25,
        };
        assert_eq!(target_name(&ep("::1")), "[::1]:25");
        assert_eq!(target_name(&ep("[::1]")), "[::1]:25");
        assert_eq!(target_name(&ep("mail.example")), "mail.example:25");
    }

    #[test]
    fn temporary_lookup_failures_are_recognised() {
        let e = io::Error::other(
            "failed to lookup address information: Temporary failure in name resolution",
        );
        assert!(is_temporary_lookup_failure(&e));
        let e = io::Error::other("failed to lookup address information: Name or service not known");
        assert!(!is_temporary_lookup_failure(&e));
    }

    #[test]
    fn connects_and_sets_options() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let opts = ConnectOptions {
            io_timeout: Duration::from_secs(7),
            ..ConnectOptions::default()
        };
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port,
        };
        let s = tcp_connect(&ep, &opts).unwrap();
        assert!(s.nodelay().unwrap());
        assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn binds_to_source_ip() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let opts = ConnectOptions {
            source_ip: Some("127.0.0.1".parse().unwrap()),
            ..ConnectOptions::default()
        };
        let ep = Endpoint {
            host: "localhost".into(),
            port,
        };
        let s = tcp_connect(&ep, &opts).unwrap();
        assert_eq!(s.local_addr().unwrap().ip(), opts.source_ip.unwrap());
    }

    #[test]
    fn second_family_wins_when_first_is_refused() {
        // localhost resolves to ::1 and 127.0.0.1; only the IPv4 one listens.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ep = Endpoint {
            host: "localhost".into(),
            port,
        };
        let s = tcp_connect(&ep, &ConnectOptions::default()).unwrap();
        assert_eq!(s.peer_addr().unwrap(), sa(&format!("127.0.0.1:{port}")));
    }

    /// A listener whose accept queue is full: Linux drops further SYNs, so connecting to it
    /// hangs like connecting to a black-holed address.
    fn black_hole() -> (SocketAddr, Vec<TcpStream>, TcpStream) {
        use rustix::net::{AddressFamily, SocketType};
        let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        let listener = TcpStream::from(fd);
        rustix::net::bind(&listener, &sa("127.0.0.1:0")).unwrap();
        rustix::net::listen(&listener, 0).unwrap();
        let addr = listener.local_addr().unwrap();
        // Fill the queue (backlog 0 still admits one or two connections).
        let mut fillers = Vec::new();
        while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
            assert!(fillers.len() < 10, "accept queue never filled");
        }
        (addr, fillers, listener)
    }

    #[test]
    fn a_stalled_address_is_overtaken_after_the_attempt_delay() {
        let (hole, _fillers, _hole_listener) = black_hole();
        let good = TcpListener::bind("127.0.0.1:0").unwrap();
        let good_addr = good.local_addr().unwrap();
        let opts = ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            ..ConnectOptions::default()
        };
        let start = Instant::now();
        let deadline = start + opts.connect_timeout;
        let s = race(&[hole, good_addr], deadline, &opts, "test").unwrap();
        let took = start.elapsed();
        assert_eq!(s.peer_addr().unwrap(), good_addr);
        assert!(
            took >= ATTEMPT_DELAY && took < ATTEMPT_DELAY * 4,
            "{took:?}"
        );
    }

    #[test]
    // The bound is loose on purpose: CI machines are shared and slow; what matters is that a
    // stalled address cannot hang the connect for long, not the exact figure.
    fn a_stalled_address_times_out_within_the_connect_timeout() {
        let (hole, _fillers, _hole_listener) = black_hole();
        let opts = ConnectOptions {
            connect_timeout: Duration::from_millis(400),
            ..ConnectOptions::default()
        };
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port: hole.port(),
        };
        let start = Instant::now();
        let err = tcp_connect(&ep, &opts).unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, NetError::ConnectTimeout { .. }), "{err:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        // The bound (rustix) path reports the expiry the same way.
        let bound = ConnectOptions {
            source_ip: Some("127.0.0.1".parse().unwrap()),
            ..opts.clone()
        };
        let start = Instant::now();
        let err = tcp_connect(&ep, &bound).unwrap_err();
        assert!(matches!(err, NetError::ConnectTimeout { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        // Two stalled addresses: the race as a whole is bounded too.
        let start = Instant::now();
        let deadline = start + opts.connect_timeout;
        let err = race(&[hole, hole], deadline, &opts, "test").unwrap_err();
        assert!(matches!(err, NetError::ConnectTimeout { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn refusals_from_all_addresses_report_each() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = sa(&format!("127.0.0.1:{port}"));
        let b = sa(&format!("[::1]:{port}"));
        let opts = ConnectOptions::default();
        let err = race(&[a, b], Instant::now() + opts.connect_timeout, &opts, "t").unwrap_err();
        match &err {
            NetError::Connect { tried, source, .. } => {
                assert!(tried.contains(&a.to_string()) && tried.contains(&b.to_string()));
                assert_ne!(source.kind(), io::ErrorKind::TimedOut);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A one-shot SOCKS5 proxy on a thread: no authentication, records the CONNECT request,
    /// replies success and then speaks as the server (`220 hi`).
    fn scripted_proxy() -> (u16, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut greeting = [0u8; 3];
            s.read_exact(&mut greeting).unwrap();
            assert_eq!(greeting, [5, 1, 0]);
            s.write_all(&[5, 0]).unwrap();
            let mut head = [0u8; 5];
            s.read_exact(&mut head).unwrap();
            let mut rest = vec![0u8; usize::from(head[4]) + 2];
            s.read_exact(&mut rest).unwrap();
            // The reply and the server's greeting in one segment: the client must not eat it.
            s.write_all(&[
                5, 0, 0, 1, 127, 0, 0, 1, 0, 25, b'2', b'2', b'0', b' ', b'h', b'i',
            ])
            .unwrap();
            let mut request = head.to_vec();
            request.extend(rest);
            request
        });
        (port, handle)
    }

    fn via(port: u16) -> ConnectOptions {
        ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            route: Route::Socks5(Socks5Proxy {
                endpoint: Endpoint {
                    host: "127.0.0.1".into(),
                    port,
                },
                credentials: None,
            }),
            ..ConnectOptions::default()
        }
    }

    #[test]
    fn socks5_sends_the_name_for_the_proxy_to_resolve() {
        let (port, proxy) = scripted_proxy();
        // A name that cannot resolve here: only the proxy may look it up.
        let ep = Endpoint {
            host: "no-such-host.invalid".into(),
            port: 587,
        };
        let mut opened = open(&ep, &via(port)).unwrap();
        assert_eq!(opened.peer, "no-such-host.invalid:587");
        assert!(opened.indirect);
        let mut greeting = [0u8; 6];
        opened.socket.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting, b"220 hi");
        let mut want = vec![5, 1, 0, 3, 20];
        want.extend_from_slice(b"no-such-host.invalid");
        want.extend_from_slice(&587u16.to_be_bytes());
        assert_eq!(proxy.join().unwrap(), want);
    }

    #[test]
    fn an_unreachable_proxy_is_an_error_and_no_direct_connection() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port: server.local_addr().unwrap().port(),
        };
        let err = match open(&ep, &via(dead)) {
            Err(e) => e,
            Ok(_) => panic!("connected although the proxy is down"),
        };
        assert!(matches!(err, NetError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains("SOCKS5 proxy 127.0.0.1:"), "{err}");
        assert_eq!(
            server.accept().map(|_| ()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "the server was contacted directly"
        );
    }

    #[test]
    fn a_silent_proxy_is_bounded_by_the_connect_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let opts = ConnectOptions {
            connect_timeout: Duration::from_millis(300),
            ..via(port)
        };
        let ep = Endpoint {
            host: "mail.example".into(),
            port: 25,
        };
        let start = Instant::now();
        let err = open(&ep, &opts).map(|_| ()).unwrap_err();
        assert!(matches!(err, NetError::ConnectTimeout { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    #[test]
    fn unix_socket_route() {
        let dir = std::env::temp_dir().join(format!("postie-dial-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("smtp.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let opts = ConnectOptions {
            route: Route::UnixSocket(path.clone()),
            ..ConnectOptions::default()
        };
        let ep = Endpoint {
            host: "localhost".into(),
            port: 25,
        };
        let mut opened = open(&ep, &opts).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.write_all(b"220").unwrap();
        let mut got = [0u8; 3];
        opened.socket.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"220");
        assert_eq!(opened.peer, path.display().to_string());
        drop(listener);
        std::fs::remove_file(&path).unwrap();
        let err = open(&ep, &opts).map(|_| ()).unwrap_err();
        assert!(matches!(err, NetError::Connect { .. }), "{err:?}");
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn unknown_host_is_permanent() {
        let ep = Endpoint {
            host: "no-such-host.invalid".into(),
            port: 25,
        };
        match tcp_connect(&ep, &ConnectOptions::default()) {
            Err(NetError::HostNotFound { host }) => assert_eq!(host, "no-such-host.invalid"),
            Err(NetError::ResolveTemporary { .. }) => {} // no resolver at all on this machine
            other => panic!("unexpected {other:?}"),
        }
    }
}
