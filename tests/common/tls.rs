//! A throw-away self-signed server certificate for the scripted servers, made once per test
//! process: the rustls server configuration and the fingerprint a client pins it by.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate for "localhost" and "127.0.0.1" with its key.
pub struct TestCert {
    pub cert: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCert {
    /// The same certificate for every caller in this process (making one costs a key
    /// generation).
    pub fn get() -> &'static TestCert {
        static CERT: OnceLock<TestCert> = OnceLock::new();
        CERT.get_or_init(|| {
            let ck = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .expect("generate a test certificate");
            TestCert {
                cert: ck.cert.der().clone(),
                key_der: ck.signing_key.serialize_der(),
            }
        })
    }

    /// A server configuration presenting this certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(postie::net::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .expect("server config");
        Arc::new(config)
    }

    /// The SHA-256 fingerprint of the certificate, as 32 bytes.
    pub fn sha256(&self) -> [u8; 32] {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.cert.as_ref());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }

    /// The fingerprint as colon-separated upper-case hex, as configuration files write it.
    pub fn fingerprint_hex(&self) -> String {
        let hex: Vec<String> = self.sha256().iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }
}
