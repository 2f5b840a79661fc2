//! Blocking drivers that run a [`crate::proto`] state machine over a [`crate::net::Connection`]:
//! every read has a timeout and every buffer a size bound. `link` opens connections and
//! carries the POP3 and IMAP machines; [`auth`] is the one login path (secret, cleartext rule,
//! SASL exchange) both fetch protocols use.

/// The POP3 and IMAP settings read and write their shared [`auth::Server`] part as their own
/// fields (`settings.tls_mode = ...`).
macro_rules! derefs_to_server {
    ($settings:ty) => {
        impl std::ops::Deref for $settings {
            type Target = Server;
            fn deref(&self) -> &Server {
                &self.server
            }
        }

        impl std::ops::DerefMut for $settings {
            fn deref_mut(&mut self) -> &mut Server {
                &mut self.server
            }
        }
    };
}

pub mod auth;
pub mod imap;
pub(crate) mod link;
pub mod pop3;
pub mod smtp;
