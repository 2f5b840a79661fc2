//! SASL client mechanisms, protocol-agnostic (raw bytes in and out; base64 framing is the
//! protocol's job), and the one rule that picks a mechanism for SMTP, POP3 and IMAP alike:
//! PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195), SCRAM-SHA-1 and
//! SCRAM-SHA-256 (RFC 5802, RFC 7677; the server signature is verified) with their -PLUS
//! variants bound to the TLS channel (tls-exporter, RFC 9266), EXTERNAL (RFC 4422 appendix A:
//! the TLS client certificate), XOAUTH2 (Google's format) and OAUTHBEARER (RFC 7628). Secrets
//! never appear in Debug output.

use std::fmt;
use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest as _, Md5};

/// A SASL mechanism this client implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Login,
    CramMd5,
    ScramSha1,
    ScramSha1Plus,
    ScramSha256,
    ScramSha256Plus,
    External,
    XOAuth2,
    OAuthBearer,
}

impl Mechanism {
    /// Every mechanism, strongest first (the order used for automatic choice, before the
    /// plaintext-equivalent filter): bound to the TLS channel, then proving the password
    /// without revealing it, then revealing it. EXTERNAL and the OAuth ones are never chosen
    /// automatically (they need a certificate or a token instead of a password).
    pub const ALL: [Mechanism; 10] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::External,
        Mechanism::OAuthBearer,
        Mechanism::XOAuth2,
    ];

    /// The IANA name, as sent on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::External => "EXTERNAL",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Parses a mechanism name, case-insensitively.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// Whether a passive eavesdropper learns the secret (or a bearer token) from the exchange:
    /// such mechanisms are refused on unencrypted connections unless explicitly allowed.
    pub fn is_plaintext_equivalent(self) -> bool {
        matches!(
            self,
            Mechanism::Plain | Mechanism::Login | Mechanism::XOAuth2 | Mechanism::OAuthBearer
        )
    }

    /// Whether the mechanism may be picked by "auth auto" (msmtp never picks OAuth ones, and
    /// EXTERNAL only makes sense with a client certificate the user configured for it).
    pub fn is_automatic(self) -> bool {
        !matches!(
            self,
            Mechanism::XOAuth2 | Mechanism::OAuthBearer | Mechanism::External
        )
    }

    /// Whether the exchange binds to the TLS channel (the -PLUS variants): it needs the
    /// connection's tls-exporter value.
    pub fn needs_channel_binding(self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }

    /// Whether the exchange needs no password (the TLS client certificate identifies us).
    pub fn needs_no_password(self) -> bool {
        self == Mechanism::External
    }

    fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(ScramHash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(ScramHash::Sha256),
            _ => None,
        }
    }
}

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    fn len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    fn pbkdf2(self) -> ring::pbkdf2::Algorithm {
        match self {
            ScramHash::Sha1 => ring::pbkdf2::PBKDF2_HMAC_SHA1,
            ScramHash::Sha256 => ring::pbkdf2::PBKDF2_HMAC_SHA256,
        }
    }

    fn hmac(self) -> ring::hmac::Algorithm {
        match self {
            // SCRAM-SHA-1 is defined on SHA-1; HMAC-SHA-1 is not broken by SHA-1 collisions.
            ScramHash::Sha1 => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => ring::hmac::HMAC_SHA256,
        }
    }

    fn digest(self) -> &'static ring::digest::Algorithm {
        match self {
            ScramHash::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => &ring::digest::SHA256,
        }
    }
}

/// What the connection allows when a mechanism is chosen automatically or checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conditions {
    /// Plaintext-equivalent mechanisms may be used (TLS, a loopback peer, or the user's
    /// explicit permission).
    pub cleartext_ok: bool,
    /// The connection's tls-exporter value is available (TLS 1.3): -PLUS may be used.
    pub channel_binding: bool,
}

/// Why no mechanism could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChoiceError {
    /// The server offers none of the acceptable mechanisms.
    NotOffered,
    /// The mechanism would reveal the secret on this connection.
    Cleartext(Mechanism),
    /// The -PLUS mechanism needs TLS 1.3 (tls-exporter channel binding).
    NoChannelBinding(Mechanism),
}

/// Picks the mechanism for one login, for every protocol alike: `wanted` is used as is when
/// offered and allowed; without it, the strongest offered one of [`Mechanism::ALL`] that
/// [`Mechanism::is_automatic`] and the connection allows (fetchmail's `any` and msmtp's
/// `auth on`: channel-bound SCRAM, SCRAM, CRAM-MD5, then PLAIN and LOGIN).
pub fn choose(
    offered: impl Fn(Mechanism) -> bool,
    wanted: Option<Mechanism>,
    cond: Conditions,
) -> Result<Mechanism, ChoiceError> {
    let check = |m: Mechanism| {
        if m.is_plaintext_equivalent() && !cond.cleartext_ok {
            Err(ChoiceError::Cleartext(m))
        } else if m.needs_channel_binding() && !cond.channel_binding {
            Err(ChoiceError::NoChannelBinding(m))
        } else {
            Ok(m)
        }
    };
    if let Some(m) = wanted {
        return if offered(m) {
            check(m)
        } else {
            Err(ChoiceError::NotOffered)
        };
    }
    let mut first_refusal = None;
    for m in Mechanism::ALL
        .into_iter()
        .filter(|&m| m.is_automatic() && offered(m))
    {
        match check(m) {
            Ok(m) => return Ok(m),
            // A -PLUS the connection cannot bind is simply skipped for its plain variant.
            Err(ChoiceError::NoChannelBinding(_)) => {}
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    Err(first_refusal.unwrap_or(ChoiceError::NotOffered))
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an exchange cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("the server sent more {0} challenges than the mechanism has")]
    UnexpectedChallenge(Mechanism),
    #[error("malformed SCRAM server message")]
    MalformedServerMessage,
    #[error("the SCRAM server nonce does not extend ours")]
    NonceMismatch,
    #[error("the SCRAM iteration count {0} is out of range")]
    BadIterationCount(u64),
    #[error("the server reported a SCRAM error: {0}")]
    ServerError(String),
    #[error("the server's SCRAM signature is wrong: it does not know the password")]
    ServerSignatureMismatch,
    #[error("the server claimed success without proving it knows the password")]
    ServerNotVerified,
    #[error("{0} needs the TLS channel binding, and this connection has none")]
    NoChannelBinding(Mechanism),
}

/// A string that prints as `<redacted>` in Debug output.
#[derive(Clone, PartialEq, Eq)]
struct Redacted<T = String>(T);

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Nothing sent yet.
    Initial,
    /// The initial response (or first answer) went out; value counts later steps.
    Sent(u32),
    /// SCRAM: client-first sent, waiting for server-first.
    ScramFirstSent { client_first_bare: String },
    /// SCRAM: client-final sent, waiting for server-final with this expected signature.
    ScramFinalSent { server_signature: Redacted<Vec<u8>> },
    /// SCRAM: the server proved it knows the password.
    ScramVerified,
}

/// One client-side authentication exchange.
#[derive(Debug, Clone)]
pub struct SaslClient {
    mechanism: Mechanism,
    user: String,
    secret: Redacted,
    /// OAUTHBEARER's optional host/port fields.
    server: Option<(String, u16)>,
    /// The connection's tls-exporter value, when it has one (TLS 1.3).
    channel_binding: Option<Redacted<Vec<u8>>>,
    nonce: Redacted,
    state: State,
}

impl SaslClient {
    /// An exchange for `user` with `secret` (a password, or the bearer token for the OAuth
    /// mechanisms).
    pub fn new(mechanism: Mechanism, user: &str, secret: &str) -> SaslClient {
        let mut raw = [0u8; 18];
        // SystemRandom only fails when the OS has no randomness at all; a predictable nonce is
        // then still better than no login, and SCRAM stays safe against passive listeners.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
        Self::with_nonce(mechanism, user, secret, &B64.encode(raw))
    }

    fn with_nonce(mechanism: Mechanism, user: &str, secret: &str, nonce: &str) -> SaslClient {
        SaslClient {
            mechanism,
            user: user.to_string(),
            secret: Redacted(secret.to_string()),
            server: None,
            channel_binding: None,
            nonce: Redacted(nonce.to_string()),
            state: State::Initial,
        }
    }

    /// Sets the host and port OAUTHBEARER reports to the server.
    pub fn with_server(mut self, host: &str, port: u16) -> SaslClient {
        self.server = Some((host.to_string(), port));
        self
    }

    /// Gives SCRAM the connection's tls-exporter value (RFC 9266): the -PLUS variants bind to
    /// it, and plain SCRAM then says "y" (we could bind, the server did not offer it), so a
    /// man in the middle who strips -PLUS from the server's list is noticed by the server.
    pub fn with_channel_binding(mut self, exporter: Option<Vec<u8>>) -> SaslClient {
        self.channel_binding = exporter.map(Redacted);
        self
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    pub fn is_plaintext_equivalent(&self) -> bool {
        self.mechanism.is_plaintext_equivalent()
    }

    /// The initial response for mechanisms where the client speaks first, `None` otherwise
    /// (the protocol then waits for the first challenge and calls [`SaslClient::step`]).
    pub fn start(&mut self) -> Option<Vec<u8>> {
        if self.state != State::Initial {
            return None;
        }
        match self.mechanism {
            Mechanism::Plain => {
                self.state = State::Sent(0);
                Some(self.plain_response())
            }
            Mechanism::OAuthBearer => {
                self.state = State::Sent(0);
                Some(self.oauthbearer_response())
            }
            // The empty authorization identity: act as whoever the certificate names.
            Mechanism::External => {
                self.state = State::Sent(0);
                Some(Vec::new())
            }
            Mechanism::ScramSha1
            | Mechanism::ScramSha1Plus
            | Mechanism::ScramSha256
            | Mechanism::ScramSha256Plus => {
                if self.mechanism.needs_channel_binding() && self.channel_binding.is_none() {
                    self.state = State::Sent(u32::MAX);
                    return None;
                }
                let bare = format!("n={},r={}", scram_escape(&self.user), self.nonce.0);
                let msg = format!("{}{bare}", self.gs2_header()).into_bytes();
                self.state = State::ScramFirstSent {
                    client_first_bare: bare,
                };
                Some(msg)
            }
            Mechanism::Login | Mechanism::CramMd5 | Mechanism::XOAuth2 => None,
        }
    }

    /// RFC 5802 §7 gs2-header: "p=tls-exporter" for -PLUS, "y" when we could bind but the
    /// mechanism is the plain one, "n" without TLS; no authorization identity.
    fn gs2_header(&self) -> &'static str {
        if self.mechanism.needs_channel_binding() {
            "p=tls-exporter,,"
        } else if self.channel_binding.is_some() {
            "y,,"
        } else {
            "n,,"
        }
    }

    /// The answer to a server challenge (raw bytes, already base64-decoded by the protocol).
    pub fn step(&mut self, challenge: &[u8]) -> Result<Vec<u8>, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Sent(u32::MAX));
        if self.mechanism.needs_channel_binding() && self.channel_binding.is_none() {
            return Err(SaslError::NoChannelBinding(self.mechanism));
        }
        let is_scram = self.mechanism.scram_hash().is_some();
        let (response, next) = match (self.mechanism, state) {
            // A server that wants the initial response after an empty challenge.
            (Mechanism::Plain, State::Initial) => (self.plain_response(), State::Sent(0)),
            (Mechanism::OAuthBearer, State::Initial) => {
                (self.oauthbearer_response(), State::Sent(0))
            }
            // The error challenge (JSON status); RFC 7628 §3.2.3 answers with a lone ^A.
            (Mechanism::OAuthBearer, State::Sent(0)) => (b"\x01".to_vec(), State::Sent(1)),
            (Mechanism::XOAuth2, State::Initial) => (self.xoauth2_response(), State::Sent(0)),
            // XOAUTH2 error details: an empty answer makes the server send its final failure.
            (Mechanism::XOAuth2, State::Sent(0)) => (Vec::new(), State::Sent(1)),
            (Mechanism::Login, State::Initial) => (self.user.clone().into_bytes(), State::Sent(0)),
            (Mechanism::Login, State::Sent(0)) => {
                (self.secret.0.clone().into_bytes(), State::Sent(1))
            }
            (Mechanism::CramMd5, State::Initial) => {
                let digest = hmac_md5(self.secret.0.as_bytes(), challenge);
                let mut answer = self.user.clone().into_bytes();
                answer.push(b' ');
                for b in digest {
                    answer.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                (answer, State::Sent(0))
            }
            // A server that asks for the initial response with an empty challenge.
            (Mechanism::External, State::Initial) => (Vec::new(), State::Sent(0)),
            (_, State::Initial) if is_scram => {
                // The protocol could not send an initial response: start over from here.
                self.state = State::Initial;
                return self
                    .start()
                    .ok_or(SaslError::UnexpectedChallenge(self.mechanism));
            }
            (_, State::ScramFirstSent { client_first_bare }) => {
                let (answer, server_signature) = self.scram_final(&client_first_bare, challenge)?;
                (
                    answer,
                    State::ScramFinalSent {
                        server_signature: Redacted(server_signature),
                    },
                )
            }
            (_, State::ScramFinalSent { server_signature }) => {
                scram_verify(&server_signature.0, challenge)?;
                (Vec::new(), State::ScramVerified)
            }
            (mechanism, _) => return Err(SaslError::UnexpectedChallenge(mechanism)),
        };
        self.state = next;
        Ok(response)
    }

    /// Called when the server reports success, with the success message's additional data if
    /// the protocol carries one. For SCRAM, success without a verified server signature is an
    /// error: the server might not know the password.
    pub fn finish(&mut self, additional_data: Option<&[u8]>) -> Result<(), SaslError> {
        if self.mechanism.scram_hash().is_none() {
            return Ok(());
        }
        match (&self.state, additional_data) {
            (State::ScramVerified, _) => Ok(()),
            (State::ScramFinalSent { server_signature }, Some(data)) => {
                scram_verify(&server_signature.0, data)?;
                self.state = State::ScramVerified;
                Ok(())
            }
            _ => Err(SaslError::ServerNotVerified),
        }
    }

    fn plain_response(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.user.len() + self.secret.0.len() + 2);
        out.push(0);
        out.extend_from_slice(self.user.as_bytes());
        out.push(0);
        out.extend_from_slice(self.secret.0.as_bytes());
        out
    }

    fn xoauth2_response(&self) -> Vec<u8> {
        format!(
            "user={}\x01auth=Bearer {}\x01\x01",
            self.user, self.secret.0
        )
        .into_bytes()
    }

    fn oauthbearer_response(&self) -> Vec<u8> {
        let mut out = format!("n,a={},", scram_escape(&self.user));
        if let Some((host, port)) = &self.server {
            out.push_str(&format!("\x01host={host}\x01port={port}"));
        }
        out.push_str(&format!("\x01auth=Bearer {}\x01\x01", self.secret.0));
        out.into_bytes()
    }

    /// Builds client-final from server-first; returns it and the expected server signature.
    fn scram_final(
        &self,
        client_first_bare: &str,
        server_first: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), SaslError> {
        let server_first =
            std::str::from_utf8(server_first).map_err(|_| SaslError::MalformedServerMessage)?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(("e", v)) => return Err(SaslError::ServerError(v.to_string())),
                Some(("m", _)) => return Err(SaslError::MalformedServerMessage),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(SaslError::MalformedServerMessage);
        };
        if !nonce.starts_with(&self.nonce.0) || nonce.len() == self.nonce.0.len() {
            return Err(SaslError::NonceMismatch);
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| SaslError::MalformedServerMessage)?;
        let iterations: u64 = iterations
            .parse()
            .map_err(|_| SaslError::MalformedServerMessage)?;
        // Bounded so a hostile server cannot make us spin for minutes.
        let iters = u32::try_from(iterations)
            .ok()
            .filter(|&i| i <= 10_000_000)
            .and_then(NonZeroU32::new)
            .ok_or(SaslError::BadIterationCount(iterations))?;

        let hash = self
            .mechanism
            .scram_hash()
            .ok_or(SaslError::UnexpectedChallenge(self.mechanism))?;
        let mut salted = vec![0u8; hash.len()];
        ring::pbkdf2::derive(
            hash.pbkdf2(),
            iters,
            &salt,
            self.secret.0.as_bytes(),
            &mut salted,
        );
        let salted_key = ring::hmac::Key::new(hash.hmac(), &salted);
        let client_key = ring::hmac::sign(&salted_key, b"Client Key");
        let stored_key = ring::digest::digest(hash.digest(), client_key.as_ref());
        let server_key_tag = ring::hmac::sign(&salted_key, b"Server Key");

        // c= is the gs2 header again, followed by the channel binding data for -PLUS.
        let mut binding = self.gs2_header().as_bytes().to_vec();
        if self.mechanism.needs_channel_binding()
            && let Some(cb) = &self.channel_binding
        {
            binding.extend_from_slice(&cb.0);
        }
        let without_proof = format!("c={},r={nonce}", B64.encode(&binding));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let stored = ring::hmac::Key::new(hash.hmac(), stored_key.as_ref());
        let client_signature = ring::hmac::sign(&stored, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = ring::hmac::Key::new(hash.hmac(), server_key_tag.as_ref());
        let server_signature = ring::hmac::sign(&server_key, auth_message.as_bytes());
        let answer = format!("{without_proof},p={}", B64.encode(proof)).into_bytes();
        Ok((answer, server_signature.as_ref().to_vec()))
    }
}

/// Checks server-final ("v=signature" or "e=error") against the expected signature.
fn scram_verify(expected: &[u8], server_final: &[u8]) -> Result<(), SaslError> {
    let text = std::str::from_utf8(server_final).map_err(|_| SaslError::MalformedServerMessage)?;
    let first = text.split(',').next().unwrap_or_default();
    if let Some(err) = first.strip_prefix("e=") {
        return Err(SaslError::ServerError(err.to_string()));
    }
    let sig = first
        .strip_prefix("v=")
        .and_then(|v| B64.decode(v).ok())
        .ok_or(SaslError::MalformedServerMessage)?;
    // Constant-time comparison: cheap, and no timing oracle on the expected value.
    if sig.len() == expected.len()
        && sig
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    {
        Ok(())
    } else {
        Err(SaslError::ServerSignatureMismatch)
    }
}

/// RFC 5802 §5.1 saslname escaping: "," and "=" must not appear raw.
fn scram_escape(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// HMAC-MD5 (RFC 2104) for CRAM-MD5; ring has no MD5.
fn hmac_md5(key: &[u8], message: &[u8]) -> [u8; 16] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        let hashed = Md5::digest(key);
        for (dst, src) in block.iter_mut().zip(hashed.iter()) {
            *dst = *src;
        }
    } else {
        for (dst, src) in block.iter_mut().zip(key) {
            *dst = *src;
        }
    }
    let mut inner = Md5::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Md5::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    let mut out = [0u8; 16];
    for (dst, src) in out.iter_mut().zip(outer.finalize().iter()) {
        *dst = *src;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_classes() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(&m.name().to_lowercase()), Some(m));
        }
        assert_eq!(Mechanism::from_name("GSSAPI"), None);
        assert!(Mechanism::Plain.is_plaintext_equivalent());
        assert!(Mechanism::Login.is_plaintext_equivalent());
        assert!(Mechanism::XOAuth2.is_plaintext_equivalent());
        assert!(Mechanism::OAuthBearer.is_plaintext_equivalent());
        assert!(!Mechanism::CramMd5.is_plaintext_equivalent());
        assert!(!Mechanism::ScramSha256.is_plaintext_equivalent());
    }

    #[test]
    fn plain() {
        let mut c = SaslClient::new(Mechanism::Plain, "alice", "alicepw");
        assert_eq!(c.start(), Some(b"\0alice\0alicepw".to_vec()));
        assert!(c.step(b"").is_err());
        assert_eq!(c.finish(None), Ok(()));
    }

    #[test]
    fn login() {
        let mut c = SaslClient::new(Mechanism::Login, "alice", "alicepw");
        assert_eq!(c.start(), None);
        assert_eq!(c.step(b"Username:"), Ok(b"alice".to_vec()));
        assert_eq!(c.step(b"Password:"), Ok(b"alicepw".to_vec()));
        assert!(c.step(b"more?").is_err());
    }

    #[test]
    fn cram_md5_rfc2195() {
        let mut c = SaslClient::new(Mechanism::CramMd5, "tim", "tanstaaftanstaaf");
        assert_eq!(c.start(), None);
        assert_eq!(
            c.step(b"<1896.697170952@postoffice.reston.mci.net>")
                .as_deref(),
            Ok(&b"tim b913a602c7eda7a495b4e6e7334d3890"[..])
        );
    }

    #[test]
    fn hmac_md5_rfc2104_vector() {
        // RFC 2104 appendix: key = 0x0b * 16, data = "Hi There".
        let mac = hmac_md5(&[0x0b; 16], b"Hi There");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "9294727a3638bb1c13f48ef8158bfc9d");
        // Keys longer than a block are hashed first (RFC 2202 test 6).
        let mac = hmac_md5(
            &[0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd");
    }

    const RFC7677_SERVER_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    fn rfc7677_client() -> SaslClient {
        SaslClient::with_nonce(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        )
    }

    #[test]
    fn scram_sha256_rfc7677() {
        let mut c = rfc7677_client();
        assert_eq!(
            c.start(),
            Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO".to_vec())
        );
        let client_final = c.step(RFC7677_SERVER_FIRST).map(String::from_utf8);
        assert_eq!(
            client_final,
            Ok(Ok(
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                   p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
                    .to_string()
            ))
        );
        assert_eq!(c.finish(None), Err(SaslError::ServerNotVerified));
        assert_eq!(
            c.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Ok(Vec::new())
        );
        assert_eq!(c.finish(None), Ok(()));
    }

    #[test]
    fn scram_server_final_as_success_data() {
        let mut c = rfc7677_client();
        c.start();
        c.step(RFC7677_SERVER_FIRST).ok();
        assert_eq!(
            c.finish(Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")),
            Ok(())
        );
    }

    #[test]
    fn scram_rejects_wrong_server_signature() {
        let mut c = rfc7677_client();
        c.start();
        c.step(RFC7677_SERVER_FIRST).ok();
        assert_eq!(
            c.step(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(SaslError::ServerSignatureMismatch)
        );
        assert_eq!(c.finish(None), Err(SaslError::ServerNotVerified));
    }

    #[test]
    fn scram_rejects_bad_server_first() {
        let cases: &[(&[u8], SaslError)] = &[
            (
                b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                SaslError::NonceMismatch,
            ),
            (
                b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                SaslError::NonceMismatch,
            ),
            (
                b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
                SaslError::BadIterationCount(0),
            ),
            (
                b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",
                SaslError::BadIterationCount(99_999_999_999),
            ),
            (
                b"r=rOprNGfwEbeRWgbNEkqOx,i=4096",
                SaslError::MalformedServerMessage,
            ),
            (b"\xff\xfe", SaslError::MalformedServerMessage),
            (
                b"e=unknown-user",
                SaslError::ServerError("unknown-user".into()),
            ),
        ];
        for (server_first, err) in cases {
            let mut c = rfc7677_client();
            c.start();
            assert_eq!(c.step(server_first).as_ref(), Err(err), "{server_first:?}");
        }
    }

    #[test]
    fn scram_escapes_user_names() {
        let mut c = SaslClient::with_nonce(Mechanism::ScramSha256, "a,b=c", "pw", "N");
        assert_eq!(c.start(), Some(b"n,,n=a=2Cb=3Dc,r=N".to_vec()));
    }

    #[test]
    fn oauth_mechanisms() {
        let mut x = SaslClient::new(Mechanism::XOAuth2, "me@example.org", "tok");
        assert_eq!(x.start(), None);
        assert_eq!(
            x.step(b""),
            Ok(b"user=me@example.org\x01auth=Bearer tok\x01\x01".to_vec())
        );
        assert_eq!(x.step(b"{\"status\":\"401\"}"), Ok(Vec::new()));

        let mut o = SaslClient::new(Mechanism::OAuthBearer, "me@example.org", "tok")
            .with_server("smtp.example.org", 587);
        assert_eq!(
            o.start(),
            Some(
                b"n,a=me@example.org,\x01host=smtp.example.org\x01port=587\x01auth=Bearer tok\x01\x01"
                    .to_vec()
            )
        );
        assert_eq!(
            o.step(b"{\"status\":\"invalid_token\"}"),
            Ok(b"\x01".to_vec())
        );
    }

    #[test]
    fn scram_sha1_rfc5802() {
        let mut c = SaslClient::with_nonce(
            Mechanism::ScramSha1,
            "user",
            "pencil",
            "fyko+d2lbbFgONRv9qkxdawL",
        );
        assert_eq!(
            c.start(),
            Some(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL".to_vec())
        );
        let client_final = c
            .step(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .map(String::from_utf8);
        assert_eq!(
            client_final,
            Ok(Ok(
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
                    .to_string()
            ))
        );
        assert_eq!(c.step(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="), Ok(Vec::new()));
        assert_eq!(c.finish(None), Ok(()));
        // A server-final for another password (the SHA-256 one) must abort.
        let mut c = SaslClient::with_nonce(Mechanism::ScramSha1, "user", "pencil", "fyko");
        c.start();
        c.step(b"r=fykoX,s=QSXCR+Q6sek8bf92,i=4096").ok();
        assert_eq!(
            c.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(SaslError::ServerSignatureMismatch)
        );
    }

    #[test]
    fn scram_channel_binding_headers() {
        let exporter = vec![7u8; 32];
        // -PLUS: p=tls-exporter in client-first, and c= carries the header plus the exporter.
        let mut c = SaslClient::with_nonce(Mechanism::ScramSha256Plus, "u", "pw", "N")
            .with_channel_binding(Some(exporter.clone()));
        assert_eq!(c.start(), Some(b"p=tls-exporter,,n=u,r=N".to_vec()));
        let fin = c
            .step(b"r=NS,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap_or_default();
        let mut cb = b"p=tls-exporter,,".to_vec();
        cb.extend_from_slice(&exporter);
        let expect = format!("c={},r=NS,p=", B64.encode(&cb));
        assert!(
            String::from_utf8_lossy(&fin).starts_with(&expect),
            "{}",
            String::from_utf8_lossy(&fin)
        );
        // Plain SCRAM on a connection that could bind says "y" (base64 "eSws").
        let mut c = SaslClient::with_nonce(Mechanism::ScramSha256, "u", "pw", "N")
            .with_channel_binding(Some(exporter));
        assert_eq!(c.start(), Some(b"y,,n=u,r=N".to_vec()));
        let fin = c
            .step(b"r=NS,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap_or_default();
        assert!(fin.starts_with(b"c=eSws,r=NS,p="));
        // -PLUS without a binding sends nothing and fails on any challenge.
        let mut c = SaslClient::with_nonce(Mechanism::ScramSha1Plus, "u", "pw", "N");
        assert_eq!(c.start(), None);
        assert_eq!(
            c.step(b""),
            Err(SaslError::NoChannelBinding(Mechanism::ScramSha1Plus))
        );
    }

    #[test]
    fn external_sends_empty_authzid() {
        let mut c = SaslClient::new(Mechanism::External, "alice", "");
        assert_eq!(c.start(), Some(Vec::new()));
        assert!(c.step(b"").is_err());
        let mut c = SaslClient::new(Mechanism::External, "alice", "");
        assert_eq!(c.step(b""), Ok(Vec::new()));
    }

    #[test]
    fn choice_order_and_conditions() {
        use Mechanism::*;
        let offers = |list: &'static [Mechanism]| move |m: Mechanism| list.contains(&m);
        let tls13 = Conditions {
            cleartext_ok: true,
            channel_binding: true,
        };
        let tls12 = Conditions {
            cleartext_ok: true,
            channel_binding: false,
        };
        let clear = Conditions::default();
        let all: &[Mechanism] = &[
            Plain,
            Login,
            CramMd5,
            ScramSha1,
            ScramSha256,
            ScramSha1Plus,
            ScramSha256Plus,
            External,
            XOAuth2,
        ];
        assert_eq!(choose(offers(all), None, tls13), Ok(ScramSha256Plus));
        assert_eq!(choose(offers(all), None, tls12), Ok(ScramSha256));
        assert_eq!(choose(offers(all), None, clear), Ok(ScramSha256));
        assert_eq!(
            choose(offers(&[ScramSha1Plus, ScramSha1, CramMd5]), None, tls13),
            Ok(ScramSha1Plus)
        );
        assert_eq!(choose(offers(&[CramMd5, Plain]), None, clear), Ok(CramMd5));
        assert_eq!(choose(offers(&[Login, Plain]), None, tls12), Ok(Plain));
        assert_eq!(
            choose(offers(&[Login, Plain]), None, clear),
            Err(ChoiceError::Cleartext(Plain))
        );
        assert_eq!(
            choose(offers(&[External, XOAuth2]), None, tls13),
            Err(ChoiceError::NotOffered)
        );
        assert_eq!(
            choose(offers(all), Some(XOAuth2), clear),
            Err(ChoiceError::Cleartext(XOAuth2))
        );
        assert_eq!(
            choose(offers(all), Some(ScramSha1Plus), tls12),
            Err(ChoiceError::NoChannelBinding(ScramSha1Plus))
        );
        assert_eq!(
            choose(offers(&[Plain]), Some(CramMd5), tls13),
            Err(ChoiceError::NotOffered)
        );
        assert_eq!(choose(offers(all), Some(External), clear), Ok(External));
    }

    #[test]
    fn debug_hides_secrets() {
        for m in Mechanism::ALL {
            let mut c = SaslClient::new(m, "alice", "s3cr3t-pw");
            c.start();
            let shown = format!("{c:?}");
            assert!(!shown.contains("s3cr3t-pw"), "{m}: {shown}");
            assert!(shown.contains("<redacted>"));
        }
    }
}
