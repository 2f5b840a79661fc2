//! Logging in, the same way for every protocol: the [`Secret`], the rule deciding whether a
//! secret may cross a connection in the clear (TLS, a loopback peer address, or the user's
//! explicit permission), how a fetch account logs in ([`FetchAuth`], fetchmail's `auth`
//! values), and the SASL exchange POP3 AUTH and IMAP AUTHENTICATE both run over
//! [`crate::proto::sasl`] (SMTP runs the same mechanisms inside its sans-I/O handshake).

use std::fmt;
use std::net::IpAddr;

use crate::error::{Error, ErrorKind, Result};
use crate::net::{ConnectOptions, Connection, Endpoint, TlsMode, TlsOptions};
use crate::proto::sasl::{self, ChoiceError, Conditions, Mechanism, SaslClient, SaslError};

/// A password or token: Debug and Display never show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a fetch session connects and how it logs in: what the POP3 and IMAP settings share
/// (they dereference to it, so `settings.tls_mode` reads the same for both).
#[derive(Debug, Clone)]
pub struct Server {
    pub endpoint: Endpoint,
    pub tls_mode: TlsMode,
    pub tls: TlsOptions,
    pub connect: ConnectOptions,
    pub user: String,
    /// The password, or the bearer token for XOAUTH2 and OAUTHBEARER.
    pub password: Secret,
    pub auth: FetchAuth,
    /// Allow the password over an unencrypted connection to a non-loopback peer.
    pub allow_plaintext: bool,
}

impl Server {
    /// STARTTLS required, `any` login, plaintext passwords only to loopback peers.
    pub fn new(endpoint: Endpoint, user: impl Into<String>, password: Secret) -> Server {
        Server {
            endpoint,
            tls_mode: TlsMode::default(),
            tls: TlsOptions::default(),
            connect: ConnectOptions::default(),
            user: user.into(),
            password,
            auth: FetchAuth::default(),
            allow_plaintext: false,
        }
    }
}

/// How a fetch account logs in (fetchmail's `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FetchAuth {
    /// fetchmail's `any`: EXTERNAL when a client certificate is configured and the server
    /// offers it, else the strongest offered mechanism that hides the password (channel-bound
    /// SCRAM, SCRAM, CRAM-MD5), else the password itself (USER/PASS, IMAP
    /// LOGIN or AUTHENTICATE PLAIN under LOGINDISABLED) where the connection allows it, else
    /// POP3 APOP when the greeting offers it.
    #[default]
    Any,
    /// fetchmail's `password`: USER/PASS, or IMAP LOGIN (AUTHENTICATE PLAIN when the server
    /// says LOGINDISABLED).
    Password,
    /// POP3 APOP (RFC 1939 §7): the password is never sent, only an MD5 digest.
    Apop,
    /// Exactly this SASL mechanism (POP3 AUTH, RFC 5034; IMAP AUTHENTICATE, RFC 9051).
    Sasl(Mechanism),
    /// fetchmail's `ssh`/`implicit`: no login step (the connection arrives authenticated).
    Implicit,
}

impl FetchAuth {
    /// The `auth` value of a fetch account, case-insensitively: fetchmail's `any`, `password`,
    /// `cram-md5`, `external`, `ssh`/`implicit`, `oauthbearer`, `xoauth2`, plus `apop` and
    /// every SASL mechanism name postie implements. `None` for anything else, including what
    /// fetchmail knows and postie cannot do (Kerberos, GSSAPI, NTLM, OTP, MSN): those are
    /// configuration errors, never a silent fall back to the password.
    pub fn from_name(name: &str) -> Option<FetchAuth> {
        let lower = name.to_ascii_lowercase();
        Some(match lower.as_str() {
            "any" | "on" | "auto" => FetchAuth::Any,
            "password" => FetchAuth::Password,
            "apop" => FetchAuth::Apop,
            "ssh" | "implicit" => FetchAuth::Implicit,
            "cram" => FetchAuth::Sasl(Mechanism::CramMd5),
            other => FetchAuth::Sasl(Mechanism::from_name(other)?),
        })
    }
}

/// Why a secret may, or may not, be sent on a connection without TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleartext {
    /// The connection is encrypted: nothing to decide.
    Encrypted,
    /// The peer address is a loopback address: the bytes never leave this machine (local
    /// bridges such as DavMail or a mail bridge listen there without TLS).
    Loopback(IpAddr),
    /// The user allowed it explicitly (`--danger-plaintext-auth`, `danger_plaintext_auth`).
    Allowed,
    /// None of the above: the secret must not be sent.
    Refused,
}

impl Cleartext {
    /// The rule for a connection: decided on the socket's peer address, never on a host name
    /// (a name is whatever the resolver says; the address is where the bytes go).
    pub fn decide(encrypted: bool, peer: Option<IpAddr>, allowed: bool) -> Cleartext {
        if encrypted {
            return Cleartext::Encrypted;
        }
        match peer {
            Some(ip) if is_loopback(ip) => Cleartext::Loopback(ip),
            _ if allowed => Cleartext::Allowed,
            _ => Cleartext::Refused,
        }
    }

    /// The rule for an open connection.
    pub fn of(conn: &Connection, allowed: bool) -> Cleartext {
        let peer = conn.peer_addr().ok().map(|a| a.ip());
        Cleartext::decide(conn.is_tls(), peer, allowed)
    }

    pub fn permits(self) -> bool {
        self != Cleartext::Refused
    }

    /// Says at -v which rule let a secret go out unencrypted (`what`: "USER/PASS", "PLAIN",
    /// ...), or the error when none did.
    pub fn check(self, peer: &str, user: &str, what: &str) -> Result<()> {
        match self {
            Cleartext::Encrypted => Ok(()),
            Cleartext::Loopback(ip) => {
                log::info!(
                    "{peer}: sending the password for {user} with {what} without TLS: the peer \
                     address {ip} is a loopback address"
                );
                Ok(())
            }
            Cleartext::Allowed => {
                log::info!(
                    "{peer}: sending the password for {user} with {what} without TLS: plaintext \
                     passwords are allowed explicitly (danger_plaintext_auth)"
                );
                Ok(())
            }
            Cleartext::Refused => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "refusing to send the password for {user} with {what} over an unencrypted \
                     connection to {peer} (use TLS, or allow plaintext passwords explicitly)"
                ),
            )),
        }
    }
}

/// Loopback, including an IPv4 loopback address written as IPv6 (::ffff:127.0.0.1).
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Picks the mechanism for a POP3 or IMAP login and prepares its client. `offered`: what the
/// server announced; `wanted`: an explicit mechanism, or `None` for the strongest one that
/// hides the password (then `Ok(None)` means: none offered, use the password).
pub(crate) fn prepare_sasl(
    conn: &Connection,
    offered: impl Fn(Mechanism) -> bool,
    wanted: Option<Mechanism>,
    login: &Server,
) -> Result<Option<SaslClient>> {
    let rule = Cleartext::of(conn, login.allow_plaintext);
    let exporter = conn.tls_exporter();
    let cond = Conditions {
        // Automatic choice only looks at mechanisms that hide the password: the password
        // itself goes out by the protocol's own command.
        cleartext_ok: wanted.is_some() && rule.permits(),
        channel_binding: exporter.is_some(),
    };
    // fetchmail's `any` tries EXTERNAL first: here when a client certificate identifies us on
    // this TLS connection (without one EXTERNAL could only fail).
    let certified = conn.is_tls() && login.tls.client_cert.is_some();
    let wanted = match wanted {
        None if certified && offered(Mechanism::External) => Some(Mechanism::External),
        other => other,
    };
    let mechanism = match sasl::choose(offered, wanted, cond) {
        Ok(m) => m,
        Err(_) if wanted.is_none() => return Ok(None),
        Err(ChoiceError::NotOffered) => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{} does not offer SASL {}",
                    conn.peer(),
                    wanted.map_or("", Mechanism::name)
                ),
            ));
        }
        Err(ChoiceError::NoChannelBinding(m)) => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{m} needs TLS 1.3 (tls-exporter channel binding), and the connection to {} \
                     has no TLS 1.3",
                    conn.peer()
                ),
            ));
        }
        Err(ChoiceError::Cleartext(m)) => {
            return rule
                .check(conn.peer(), &login.user, m.name())
                .map(|()| None);
        }
    };
    if mechanism.is_plaintext_equivalent() {
        rule.check(conn.peer(), &login.user, mechanism.name())?;
    }
    let client = SaslClient::new(mechanism, &login.user, login.password.expose())
        .with_server(&login.endpoint.host, login.endpoint.port)
        .with_channel_binding(exporter);
    log::debug!("{}: authenticating with {mechanism}", conn.peer());
    Ok(Some(client))
}

/// One step of a SASL exchange as the protocol read it.
pub(crate) enum SaslStep<T> {
    /// A server challenge, base64-decoded.
    Challenge(Vec<u8>),
    /// The exchange ended with this reply.
    Done(T),
}

/// An initial response, when there is one.
pub(crate) type Initial = Option<Vec<u8>>;

/// What POP3 AUTH and IMAP AUTHENTICATE have to offer [`run_sasl`].
pub(crate) trait SaslWire {
    /// The protocol's final reply.
    type Outcome;
    /// Whether the command line can carry this initial response (IMAP: with SASL-IR; POP3:
    /// when the line stays within 255 octets). If not, it is sent after the first empty
    /// challenge.
    fn carries(&self, mechanism: Mechanism, initial: &[u8]) -> bool;
    /// Sends AUTH/AUTHENTICATE.
    fn send_auth(&mut self, mechanism: Mechanism, initial: Initial) -> Result<()>;
    fn read_step(&mut self) -> Result<SaslStep<Self::Outcome>>;
    /// Answers a challenge (`None` cancels with "*").
    fn send_response(&mut self, response: Option<&[u8]>) -> Result<()>;
    /// Reads the server's reply to a cancel, whatever it is.
    fn after_cancel(&mut self);
    /// Whether the final reply says the login succeeded.
    fn accepted(outcome: &Self::Outcome) -> bool;
    fn poison(&mut self, e: Error) -> Error;
}

/// Runs a SASL login with `client` over `wire` and hands the final reply to `accept` (the
/// protocol's reading of it); a refused OAuth2 token is named as such. Returns true: the login
/// happened (the callers' `Ok(false)` is "no mechanism to use").
pub(crate) fn sasl_login<W: SaslWire>(
    wire: &mut W,
    client: SaslClient,
    accept: impl FnOnce(&mut W, W::Outcome) -> Result<()>,
) -> Result<bool> {
    let mechanism = client.mechanism();
    run_sasl(wire, client)
        .and_then(|reply| accept(wire, reply))
        .map(|()| true)
        .map_err(|e| name_refused_token(e, Some(mechanism)))
}

/// Runs one SASL exchange to its final reply. A failing step (a malformed challenge, a SCRAM
/// nonce or signature that does not match) cancels the exchange and is the error; a success
/// before SCRAM verified the server's signature is an error too (the server may not know the
/// password: whoever it is, nothing more is said to it).
pub(crate) fn run_sasl<W: SaslWire>(wire: &mut W, mut client: SaslClient) -> Result<W::Outcome> {
    let mechanism = client.mechanism();
    let initial = client.start();
    if mechanism.needs_channel_binding() && initial.is_none() {
        return Err(sasl_error(SaslError::NoChannelBinding(mechanism)));
    }
    let mut held = None;
    let initial = match initial {
        Some(i) if !wire.carries(mechanism, &i) => {
            held = Some(i);
            None
        }
        other => other,
    };
    wire.send_auth(mechanism, initial)?;
    for _ in 0..32 {
        match wire.read_step()? {
            SaslStep::Challenge(challenge) => {
                let response = match held.take() {
                    Some(first) if challenge.is_empty() => Ok(first),
                    _ => client.step(&challenge),
                };
                match response {
                    Ok(r) => wire.send_response(Some(&r))?,
                    Err(e) => {
                        wire.send_response(None)?;
                        wire.after_cancel();
                        return Err(sasl_error(e));
                    }
                }
            }
            SaslStep::Done(outcome) => {
                if W::accepted(&outcome)
                    && let Err(e) = client.finish(None)
                {
                    return Err(wire.poison(sasl_error(e)));
                }
                return Ok(outcome);
            }
        }
    }
    Err(wire.poison(Error::new(
        ErrorKind::Protocol,
        "SASL exchange did not finish after 32 challenges",
    )))
}

/// A refused login by XOAUTH2 or OAUTHBEARER said as what it is: the server refused a bearer
/// token, which the user fixes at the token's source (the token command, the provider's
/// authorization), not by checking a password. Other errors and mechanisms pass unchanged.
pub(crate) fn name_refused_token(e: Error, mechanism: Option<Mechanism>) -> Error {
    match mechanism {
        Some(m @ (Mechanism::XOAuth2 | Mechanism::OAuthBearer)) if e.kind() == ErrorKind::Auth => e
            .context(format!(
                "the server refused the OAuth2 access token ({m}): it has expired or been \
                 revoked, or does not grant access to mail"
            ))
            .with_cause(crate::error::Cause::OAuthTokenRefused),
        _ => e,
    }
}

fn sasl_error(e: SaslError) -> Error {
    Error::with_source(ErrorKind::Protocol, "SASL authentication aborted", e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn cleartext_rule_is_decided_on_the_peer_address() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let cases = [
            // (encrypted, peer, allowed, expected)
            (true, ip("192.0.2.1"), false, Cleartext::Encrypted),
            (
                false,
                ip("127.0.0.1"),
                false,
                Cleartext::Loopback(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ),
            (
                false,
                ip("127.1.2.3"),
                true,
                Cleartext::Loopback(IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3))),
            ),
            (
                false,
                ip("::1"),
                false,
                Cleartext::Loopback(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ),
            (
                false,
                ip("::ffff:127.0.0.1"),
                false,
                Cleartext::Loopback(IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())),
            ),
            (false, ip("192.0.2.1"), false, Cleartext::Refused),
            (false, ip("10.0.0.1"), false, Cleartext::Refused),
            (false, ip("::ffff:192.0.2.1"), false, Cleartext::Refused),
            (false, ip("2001:db8::1"), false, Cleartext::Refused),
            (false, ip("0.0.0.0"), false, Cleartext::Refused),
            (false, ip("192.0.2.1"), true, Cleartext::Allowed),
            (false, None, false, Cleartext::Refused),
        ];
        for (encrypted, peer, allowed, expected) in cases {
            assert_eq!(
                Cleartext::decide(encrypted, peer, allowed),
                expected,
                "{peer:?}"
            );
        }
        let e = Cleartext::Refused
            .check("192.0.2.1:110", "u", "USER/PASS")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(Cleartext::Allowed.check("h", "u", "PLAIN").is_ok());
    }

    #[test]
    fn fetch_auth_names() {
        assert_eq!(FetchAuth::from_name("ANY"), Some(FetchAuth::Any));
        assert_eq!(FetchAuth::from_name("password"), Some(FetchAuth::Password));
        assert_eq!(FetchAuth::from_name("ssh"), Some(FetchAuth::Implicit));
        assert_eq!(
            FetchAuth::from_name("cram-md5"),
            Some(FetchAuth::Sasl(Mechanism::CramMd5))
        );
        assert_eq!(
            FetchAuth::from_name("scram-sha-1-plus"),
            Some(FetchAuth::Sasl(Mechanism::ScramSha1Plus))
        );
        assert_eq!(
            FetchAuth::from_name("External"),
            Some(FetchAuth::Sasl(Mechanism::External))
        );
        for unsupported in [
            "kerberos_v5",
            "kerberos",
            "kerberos_v4",
            "gssapi",
            "otp",
            "ntlm",
            "msn",
            "digest-md5",
        ] {
            assert_eq!(FetchAuth::from_name(unsupported), None, "{unsupported}");
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<redacted>");
        let ep = Endpoint {
            host: "h".into(),
            port: 1,
        };
        let shown = format!("{:?}", Server::new(ep, "bob", Secret::new("hunter2")));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
