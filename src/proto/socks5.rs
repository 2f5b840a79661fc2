//! The client side of a SOCKS5 CONNECT handshake (RFC 1928) with optional username/password
//! authentication (RFC 1929), as a pure machine: it says which bytes to send and how many bytes
//! it needs next, so the caller never reads past the proxy's reply into the server's first bytes.
//! A target name is always sent as a name (address type 3), so the proxy resolves it and no
//! local DNS lookup reveals the destination.

use std::fmt;
use std::net::IpAddr;

const VERSION: u8 = 5;
const METHOD_NONE: u8 = 0x00;
const METHOD_USERPASS: u8 = 0x02;
const METHOD_NO_ACCEPTABLE: u8 = 0xFF;
const USERPASS_VERSION: u8 = 1;
const CMD_CONNECT: u8 = 1;
const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// Username and password for RFC 1929. The password is a secret: `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why the handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Socks5Error {
    /// The target cannot be expressed in a SOCKS5 request (empty, or a name over 255 bytes).
    BadTarget(String),
    /// A user name or password is empty or longer than 255 bytes (RFC 1929's limits).
    BadCredentials(&'static str),
    /// The proxy accepts none of the methods offered (no authentication, or username/password
    /// when credentials are configured).
    NoAcceptableMethod { offered_password: bool },
    /// The proxy rejected the user name and password.
    AuthRejected,
    /// The proxy could not or would not connect to the target (a REP code other than 0).
    ConnectRefused(u8),
    /// The proxy sent something that is not SOCKS5.
    Protocol(String),
}

impl Socks5Error {
    /// Whether trying again later can succeed (the proxy reported a network condition).
    pub fn is_transient(&self) -> bool {
        matches!(self, Socks5Error::ConnectRefused(1 | 3 | 4 | 5 | 6))
    }
}

impl fmt::Display for Socks5Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Socks5Error::BadTarget(why) => write!(f, "cannot ask the proxy for this target: {why}"),
            Socks5Error::BadCredentials(why) => write!(f, "invalid proxy credentials: {why}"),
            Socks5Error::NoAcceptableMethod {
                offered_password: true,
            } => f.write_str(
                "the proxy accepts neither no authentication nor username/password authentication",
            ),
            Socks5Error::NoAcceptableMethod {
                offered_password: false,
            } => f.write_str(
                "the proxy requires authentication (set proxy_user and proxy_password) or a \
                 method rsend does not support",
            ),
            Socks5Error::AuthRejected => {
                f.write_str("the proxy rejected the user name and password")
            }
            Socks5Error::ConnectRefused(code) => {
                write!(f, "the proxy could not connect: {}", reply_text(*code))
            }
            Socks5Error::Protocol(what) => write!(f, "the proxy does not speak SOCKS5: {what}"),
        }
    }
}

impl std::error::Error for Socks5Error {}

/// RFC 1928 §6's reply codes.
fn reply_text(code: u8) -> String {
    match code {
        1 => "general SOCKS server failure".into(),
        2 => "connection not allowed by ruleset".into(),
        3 => "network unreachable".into(),
        4 => "host unreachable".into(),
        5 => "connection refused".into(),
        6 => "TTL expired".into(),
        7 => "command not supported".into(),
        8 => "address type not supported".into(),
        other => format!("unknown reply code {other}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for VER METHOD.
    Method,
    /// Waiting for VER STATUS of the username/password exchange.
    Auth,
    /// Waiting for the CONNECT reply; `None` until its first five bytes give its length.
    Reply(Option<usize>),
    Done,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read more (at most [`Socks5Client::wanted`] bytes).
    NeedMore,
    /// Send these bytes, then read.
    Send(Vec<u8>),
    /// The tunnel is open: every further byte belongs to the target server.
    Connected,
}

/// One handshake. Create with [`Socks5Client::start`], send its greeting, then read at most
/// [`Socks5Client::wanted`] bytes at a time and hand them to [`Socks5Client::feed`].
#[derive(Debug)]
pub struct Socks5Client {
    state: State,
    /// The bytes of the reply being collected; never longer than the longest reply (262).
    buf: Vec<u8>,
    credentials: Option<Credentials>,
    request: Vec<u8>,
}

impl Socks5Client {
    /// Prepares a CONNECT to `host:port` and returns the greeting to send first. An IP literal
    /// (brackets allowed around IPv6) is sent as an address, anything else as a name.
    pub fn start(
        host: &str,
        port: u16,
        credentials: Option<Credentials>,
    ) -> Result<(Socks5Client, Vec<u8>), Socks5Error> {
        let request = connect_request(host, port)?;
        if let Some(c) = &credentials {
            for (what, value) in [
                (
                    "the user name (proxy_user) is empty or longer than 255 bytes",
                    &c.user,
                ),
                (
                    "the password (proxy_password) is empty or longer than 255 bytes",
                    &c.password,
                ),
            ] {
                if value.is_empty() || value.len() > 255 {
                    return Err(Socks5Error::BadCredentials(what));
                }
            }
        }
        let greeting = if credentials.is_some() {
            vec![VERSION, 2, METHOD_NONE, METHOD_USERPASS]
        } else {
            vec![VERSION, 1, METHOD_NONE]
        };
        Ok((
            Socks5Client {
                state: State::Method,
                buf: Vec::with_capacity(16),
                credentials,
                request,
            },
            greeting,
        ))
    }

    /// How many more bytes the current reply needs: reading no more than this never consumes a
    /// byte of the target server's data. Zero once connected.
    pub fn wanted(&self) -> usize {
        let total = match self.state {
            State::Method | State::Auth => 2,
            State::Reply(None) => 5,
            State::Reply(Some(n)) => n,
            State::Done => return 0,
        };
        total - self.buf.len()
    }

    /// Takes up to [`Socks5Client::wanted`] bytes of `data`; returns how many it took and what
    /// to do next. Bytes beyond what it wants are left to the caller (not consumed).
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, Step), Socks5Error> {
        let take = data.len().min(self.wanted());
        self.buf.extend_from_slice(&data[..take]);
        if self.wanted() > 0 || self.state == State::Done {
            let step = if self.state == State::Done {
                Step::Connected
            } else {
                Step::NeedMore
            };
            return Ok((take, step));
        }
        let step = self.complete()?;
        Ok((take, step))
    }

    /// Handles one complete reply in `buf`.
    fn complete(&mut self) -> Result<Step, Socks5Error> {
        let reply = std::mem::take(&mut self.buf);
        match self.state {
            State::Method => {
                if reply[0] != VERSION {
                    return Err(bad_version(reply[0]));
                }
                match (reply[1], &self.credentials) {
                    (METHOD_NONE, _) => {
                        self.state = State::Reply(None);
                        Ok(Step::Send(self.request.clone()))
                    }
                    (METHOD_USERPASS, Some(c)) => {
                        self.state = State::Auth;
                        let mut msg = Vec::with_capacity(3 + c.user.len() + c.password.len());
                        msg.push(USERPASS_VERSION);
                        msg.push(c.user.len() as u8);
                        msg.extend_from_slice(c.user.as_bytes());
                        msg.push(c.password.len() as u8);
                        msg.extend_from_slice(c.password.as_bytes());
                        Ok(Step::Send(msg))
                    }
                    (METHOD_NO_ACCEPTABLE, c) => Err(Socks5Error::NoAcceptableMethod {
                        offered_password: c.is_some(),
                    }),
                    (other, _) => Err(Socks5Error::Protocol(format!(
                        "it chose method {other:#04x}, which was not offered"
                    ))),
                }
            }
            State::Auth => {
                if reply[0] != USERPASS_VERSION {
                    return Err(Socks5Error::Protocol(format!(
                        "authentication reply version {} (expected 1)",
                        reply[0]
                    )));
                }
                if reply[1] != 0 {
                    return Err(Socks5Error::AuthRejected);
                }
                self.state = State::Reply(None);
                Ok(Step::Send(self.request.clone()))
            }
            State::Reply(None) => {
                if reply[0] != VERSION {
                    return Err(bad_version(reply[0]));
                }
                if reply[1] != 0 {
                    return Err(Socks5Error::ConnectRefused(reply[1]));
                }
                // VER REP RSV ATYP, the address, two port bytes; five bytes are in.
                let total = match reply[3] {
                    ATYP_IPV4 => 4 + 4 + 2,
                    ATYP_IPV6 => 4 + 16 + 2,
                    ATYP_DOMAIN => 4 + 1 + usize::from(reply[4]) + 2,
                    other => {
                        return Err(Socks5Error::Protocol(format!(
                            "reply with address type {other}"
                        )));
                    }
                };
                self.state = State::Reply(Some(total));
                self.buf = reply;
                if self.wanted() == 0 {
                    return self.complete();
                }
                Ok(Step::NeedMore)
            }
            State::Reply(Some(_)) => {
                self.state = State::Done;
                Ok(Step::Connected)
            }
            State::Done => Ok(Step::Connected),
        }
    }
}

fn bad_version(v: u8) -> Socks5Error {
    Socks5Error::Protocol(format!("reply version {v} (expected 5)"))
}

/// VER CMD RSV ATYP DST.ADDR DST.PORT.
fn connect_request(host: &str, port: u16) -> Result<Vec<u8>, Socks5Error> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let mut req = vec![VERSION, CMD_CONNECT, 0];
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            req.push(ATYP_IPV4);
            req.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            req.push(ATYP_IPV6);
            req.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            if bare.is_empty() {
                return Err(Socks5Error::BadTarget("empty host name".into()));
            }
            if bare.len() > 255 {
                return Err(Socks5Error::BadTarget(format!(
                    "host name of {} bytes (at most 255)",
                    bare.len()
                )));
            }
            req.push(ATYP_DOMAIN);
            req.push(bare.len() as u8);
            req.extend_from_slice(bare.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a handshake against the proxy's whole byte stream `server`, split into chunks at
    /// every position of `cuts`; returns what the client sent and the bytes left unread.
    fn run(
        host: &str,
        creds: Option<Credentials>,
        server: &[u8],
        chunk: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), Socks5Error> {
        let (mut c, greeting) = Socks5Client::start(host, 25, creds)?;
        let mut sent = greeting;
        let mut pos = 0;
        loop {
            let want = c.wanted();
            assert!(want > 0, "wants nothing before being connected");
            let end = server.len().min(pos + want.min(chunk));
            if end == pos {
                return Err(Socks5Error::Protocol("eof".into()));
            }
            let (took, step) = c.feed(&server[pos..end])?;
            assert_eq!(took, end - pos, "a read of at most wanted() is taken whole");
            pos += took;
            match step {
                Step::NeedMore => {}
                Step::Send(b) => sent.extend(b),
                Step::Connected => return Ok((sent, server[pos..].to_vec())),
            }
        }
    }

    fn creds() -> Credentials {
        Credentials {
            user: "alice".into(),
            password: "s3cret".into(),
        }
    }

    const GREETING: &[u8] = b"220 smtp.example ESMTP\r\n";

    #[test]
    fn no_auth_with_a_name_target_at_every_split() {
        let mut server = vec![5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38];
        server.extend_from_slice(GREETING);
        for chunk in 1..server.len() {
            let (sent, rest) = run("mail.example.org", None, &server, chunk).unwrap();
            let mut expect = vec![5, 1, 0, 5, 1, 0, 3, 16];
            expect.extend_from_slice(b"mail.example.org");
            expect.extend_from_slice(&[0, 25]);
            assert_eq!(sent, expect);
            assert_eq!(
                rest, GREETING,
                "chunk {chunk}: the server's bytes stay unread"
            );
        }
    }

    #[test]
    fn userpass_auth_and_domain_and_ipv6_replies() {
        let domain_reply = {
            let mut r = vec![5, 0, 0, 3, 7];
            r.extend_from_slice(b"proxy.x");
            r.extend_from_slice(&[0, 1]);
            r
        };
        let v6_reply = {
            let mut r = vec![5, 0, 0, 4];
            r.extend_from_slice(&[0; 16]);
            r.extend_from_slice(&[0, 1]);
            r
        };
        for reply in [domain_reply, v6_reply] {
            let mut server = vec![5, 2, 1, 0];
            server.extend_from_slice(&reply);
            server.extend_from_slice(GREETING);
            for chunk in 1..server.len() {
                let (sent, rest) = run("[::1]", Some(creds()), &server, chunk).unwrap();
                let mut expect = vec![5, 2, 0, 2, 1, 5];
                expect.extend_from_slice(b"alice");
                expect.push(6);
                expect.extend_from_slice(b"s3cret");
                expect.extend_from_slice(&[5, 1, 0, 4]);
                expect.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
                expect.extend_from_slice(&[0, 25]);
                assert_eq!(sent, expect);
                assert_eq!(rest, GREETING);
            }
        }
    }

    #[test]
    fn ipv4_literal_is_sent_as_an_address() {
        let req = connect_request("192.0.2.7", 587).unwrap();
        assert_eq!(req, [5, 1, 0, 1, 192, 0, 2, 7, 2, 75]);
    }

    #[test]
    fn failures_are_errors() {
        let cases: Vec<(&[u8], Option<Credentials>, Socks5Error)> = vec![
            (
                &[5, 0xFF],
                None,
                Socks5Error::NoAcceptableMethod {
                    offered_password: false,
                },
            ),
            (
                &[5, 2],
                None,
                Socks5Error::Protocol("it chose method 0x02, which was not offered".into()),
            ),
            (&[5, 2, 1, 1], Some(creds()), Socks5Error::AuthRejected),
            (&[5, 0, 5, 5, 0, 1, 0], None, Socks5Error::ConnectRefused(5)),
            (&[4, 0], None, bad_version(4)),
            (&[5, 0, 4, 0, 0, 1, 0], None, bad_version(4)),
            (
                &[5, 0, 5, 0, 0, 9, 0, 0],
                None,
                Socks5Error::Protocol("reply with address type 9".into()),
            ),
            (
                &[5, 2, 2, 0],
                Some(creds()),
                Socks5Error::Protocol("authentication reply version 2 (expected 1)".into()),
            ),
        ];
        for (server, creds, want) in cases {
            for chunk in 1..=server.len() {
                let got = run("h.example", creds.clone(), server, chunk).unwrap_err();
                assert_eq!(got, want, "{server:?} chunk {chunk}");
            }
        }
        assert!(Socks5Error::ConnectRefused(5).is_transient());
        assert!(!Socks5Error::ConnectRefused(2).is_transient());
    }

    #[test]
    fn bad_targets_and_credentials_are_refused_before_sending() {
        let long = "a".repeat(256);
        assert!(matches!(
            Socks5Client::start(&long, 25, None),
            Err(Socks5Error::BadTarget(_))
        ));
        assert!(matches!(
            Socks5Client::start("", 25, None),
            Err(Socks5Error::BadTarget(_))
        ));
        let c = Credentials {
            user: "u".into(),
            password: long,
        };
        assert!(matches!(
            Socks5Client::start("h", 25, Some(c)),
            Err(Socks5Error::BadCredentials(_))
        ));
        let c = Credentials {
            user: String::new(),
            password: "p".into(),
        };
        assert!(Socks5Client::start("h", 25, Some(c)).is_err());
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let (c, _) = Socks5Client::start("h", 25, Some(creds())).unwrap();
        let dbg = format!("{c:?} {:?}", creds());
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(dbg.contains("alice"));
    }

    #[test]
    fn feeding_more_than_wanted_leaves_the_rest() {
        let (mut c, _) = Socks5Client::start("h", 25, None).unwrap();
        let (took, step) = c.feed(&[5, 0, 5, 0, 0, 1]).unwrap();
        assert_eq!(
            (took, step),
            (2, Step::Send(vec![5, 1, 0, 3, 1, b'h', 0, 25]))
        );
        assert_eq!(c.wanted(), 5);
    }
}
