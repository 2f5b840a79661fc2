//! SRV lookups for `rsend --configure`: the query goes over UDP to the name servers listed in a
//! resolv.conf file, one after the other, each bounded by a timeout; the answer is read by
//! `proto::dns`. Nothing else in postie resolves this way (connections use the system resolver).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use super::NetError;
use crate::proto::dns::{self, Srv};

/// Largest answer read: a UDP answer without EDNS is at most 512 bytes; more room costs nothing.
const MAX_ANSWER: usize = 4096;

/// Largest resolv.conf read: a real one is a few hundred bytes, and the bound keeps a device
/// (a symlink to `/dev/zero`) or a huge file at its path from being read without end.
const MAX_RESOLV_CONF_BYTES: u64 = 64 * 1024;

/// The name servers of a resolv.conf file (`nameserver ADDRESS`, at most three as the C
/// library uses). An address may carry a port (`127.0.0.1:5353`, `[::1]:5353`), which the C
/// library does not accept but tests need. A file that cannot be read, is not a regular file
/// (a FIFO would block the read for ever) or is larger than 64 KiB lists none.
pub fn nameservers(resolv_conf: &Path) -> Vec<SocketAddr> {
    let text = match crate::config::open_regular_file(resolv_conf)
        .and_then(|file| crate::config::read_text_at_most(file, MAX_RESOLV_CONF_BYTES))
    {
        Ok(text) => text,
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("name servers not read from {}: {e}", resolv_conf.display());
            }
            return Vec::new();
        }
    };
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|a| {
            a.parse::<SocketAddr>()
                .ok()
                .or_else(|| a.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
        })
        .take(3)
        .collect()
}

/// The SRV records of `name`, best first, from the first server that answers within
/// `timeout`. An empty list means the name has none.
pub fn srv_lookup(
    name: &str,
    servers: &[SocketAddr],
    timeout: Duration,
) -> Result<Vec<Srv>, NetError> {
    let temporary = || NetError::ResolveTemporary {
        host: name.to_owned(),
    };
    let id = random_id();
    let query = dns::srv_query(id, name).map_err(|_| NetError::HostNotFound {
        host: name.to_owned(),
    })?;
    for server in servers {
        match ask(*server, &query, id, timeout) {
            Ok(records) => return Ok(records),
            Err(e) => log::debug!("SRV query for {name} to {server} failed: {e}"),
        }
    }
    Err(temporary())
}

fn ask(server: SocketAddr, query: &[u8], id: u16, timeout: Duration) -> io::Result<Vec<Srv>> {
    let local: IpAddr = if server.is_ipv6() {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))?;
    // Connected: datagrams from any other address are not delivered to us.
    socket.connect(server)?;
    socket.send(query)?;
    let mut buf = vec![0u8; MAX_ANSWER];
    // One deadline for the whole exchange: a server that keeps sending datagrams with another
    // identifier must not restart the wait with each one.
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
        }
        socket.set_read_timeout(Some(left))?;
        let n = socket.recv(&mut buf)?;
        match dns::parse_srv_answer(id, &buf[..n]) {
            Ok(records) => return Ok(records),
            // A stray datagram with another identifier: keep waiting (bounded by the timeout).
            Err(dns::DnsError::Malformed("wrong identifier")) => continue,
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}

fn random_id() -> u16 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u16::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_lines() {
        let dir = std::env::temp_dir().join(format!("postie-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        std::fs::write(
            &path,
            "# comment\nsearch x\nnameserver 10.0.0.1\nnameserver ::1\nnameserver 127.0.0.1:5353\n\
             nameserver bogus\nnameserver 10.0.0.4\n",
        )
        .unwrap();
        let got = nameservers(&path);
        let want: Vec<SocketAddr> = ["10.0.0.1:53", "[::1]:53", "127.0.0.1:5353"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert!(nameservers(&dir.join("missing")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_silent_server_is_a_temporary_failure_within_the_timeout() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = std::time::Instant::now();
        let err = srv_lookup(
            "_submission._tcp.example.org",
            &[silent.local_addr().unwrap()],
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, NetError::ResolveTemporary { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn stray_datagrams_do_not_extend_the_timeout() {
        // A server that answers every 20 ms, always with the wrong identifier, for 3 s.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let flooder = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, client) = server.recv_from(&mut buf).unwrap();
            let mut answer = buf[..n].to_vec();
            answer[0] ^= 0xff; // another identifier
            answer[2] |= 0x80; // QR: a response
            let until = std::time::Instant::now() + Duration::from_secs(3);
            while std::time::Instant::now() < until {
                let _ = server.send_to(&answer, client);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let start = std::time::Instant::now();
        let err = srv_lookup(
            "_submission._tcp.example.org",
            &[addr],
            Duration::from_millis(300),
        )
        .unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, NetError::ResolveTemporary { .. }), "{err:?}");
        assert!(took < Duration::from_millis(1500), "waited {took:?}");
        flooder.join().unwrap();
    }
}
