//! SASL client mechanisms, protocol-agnostic (raw bytes in and out; base64 framing is the
//! protocol's job): PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195),
//! SCRAM-SHA-256 (RFC 5802, RFC 7677; the server signature is verified), XOAUTH2 (Google's
//! format) and OAUTHBEARER (RFC 7628). Secrets never appear in Debug output.

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
    ScramSha256,
    XOAuth2,
    OAuthBearer,
}

impl Mechanism {
    /// Every mechanism, strongest first (the order used for automatic choice, before the
    /// plaintext-equivalent filter; the OAuth ones are never chosen automatically).
    pub const ALL: [Mechanism; 6] = [
        Mechanism::ScramSha256,
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::OAuthBearer,
        Mechanism::XOAuth2,
    ];

    /// The IANA name, as sent on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
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

    /// Whether the mechanism may be picked by "auth auto" (msmtp never picks OAuth ones).
    pub fn is_automatic(self) -> bool {
        !matches!(self, Mechanism::XOAuth2 | Mechanism::OAuthBearer)
    }

    /// Whether the client speaks first (an initial response is available from `start`).
    pub fn client_first(self) -> bool {
        matches!(
            self,
            Mechanism::Plain | Mechanism::ScramSha256 | Mechanism::OAuthBearer
        )
    }
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
            nonce: Redacted(nonce.to_string()),
            state: State::Initial,
        }
    }

    /// Sets the host and port OAUTHBEARER reports to the server.
    pub fn with_server(mut self, host: &str, port: u16) -> SaslClient {
        self.server = Some((host.to_string(), port));
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
            Mechanism::ScramSha256 => {
                let bare = format!("n={},r={}", scram_escape(&self.user), self.nonce.0);
                let msg = format!("n,,{bare}").into_bytes();
                self.state = State::ScramFirstSent {
                    client_first_bare: bare,
                };
                Some(msg)
            }
            Mechanism::Login | Mechanism::CramMd5 | Mechanism::XOAuth2 => None,
        }
    }

    /// The answer to a server challenge (raw bytes, already base64-decoded by the protocol).
    pub fn step(&mut self, challenge: &[u8]) -> Result<Vec<u8>, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Sent(u32::MAX));
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
            (Mechanism::ScramSha256, State::Initial) => {
                // The protocol could not send an initial response: start over from here.
                self.state = State::Initial;
                return self
                    .start()
                    .ok_or(SaslError::UnexpectedChallenge(self.mechanism));
            }
            (Mechanism::ScramSha256, State::ScramFirstSent { client_first_bare }) => {
                let (answer, server_signature) = self.scram_final(&client_first_bare, challenge)?;
                (
                    answer,
                    State::ScramFinalSent {
                        server_signature: Redacted(server_signature),
                    },
                )
            }
            (Mechanism::ScramSha256, State::ScramFinalSent { server_signature }) => {
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
        if self.mechanism != Mechanism::ScramSha256 {
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

        let mut salted = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            iters,
            &salt,
            self.secret.0.as_bytes(),
            &mut salted,
        );
        let salted_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salted);
        let client_key = ring::hmac::sign(&salted_key, b"Client Key");
        let stored_key = ring::digest::digest(&ring::digest::SHA256, client_key.as_ref());
        let server_key_tag = ring::hmac::sign(&salted_key, b"Server Key");

        // "biws" is base64("n,,"): no channel binding, no authzid.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let stored = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, stored_key.as_ref());
        let client_signature = ring::hmac::sign(&stored, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, server_key_tag.as_ref());
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
