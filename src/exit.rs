//! The only error-to-exit-code tables: rsend uses sysexits.h (as msmtp, except that every
//! temporary condition is 75 EX_TEMPFAIL), rfetch uses fetchmail's codes.

use crate::error::ErrorKind;

/// sysexits.h codes used by rsend.
pub mod sysexits {
    pub const OK: i32 = 0;
    pub const USAGE: i32 = 64;
    pub const DATAERR: i32 = 65;
    pub const NOINPUT: i32 = 66;
    pub const NOHOST: i32 = 68;
    pub const UNAVAILABLE: i32 = 69;
    pub const SOFTWARE: i32 = 70;
    pub const IOERR: i32 = 74;
    pub const TEMPFAIL: i32 = 75;
    pub const PROTOCOL: i32 = 76;
    pub const NOPERM: i32 = 77;
    pub const CONFIG: i32 = 78;

    /// Each code with its sysexits.h name, as msmtp's log line writes it (`exitcode=EX_IOERR`).
    const NAMES: [(i32, &str); 12] = [
        (OK, "EX_OK"),
        (USAGE, "EX_USAGE"),
        (DATAERR, "EX_DATAERR"),
        (NOINPUT, "EX_NOINPUT"),
        (NOHOST, "EX_NOHOST"),
        (UNAVAILABLE, "EX_UNAVAILABLE"),
        (SOFTWARE, "EX_SOFTWARE"),
        (IOERR, "EX_IOERR"),
        (TEMPFAIL, "EX_TEMPFAIL"),
        (PROTOCOL, "EX_PROTOCOL"),
        (NOPERM, "EX_NOPERM"),
        (CONFIG, "EX_CONFIG"),
    ];

    /// The sysexits.h name of `code` (`EX_UNKNOWN` for a code rsend does not use).
    pub fn name(code: i32) -> &'static str {
        NAMES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("EX_UNKNOWN", |(_, n)| n)
    }
}

/// rsend's exit code for an error. msmtp gives 74 for read timeouts and 69 for 4xx replies; we
/// give 75 for both (and every other temporary condition) so that callers can tell "retry later"
/// from "give up". The man page documents the difference.
pub fn rsend_code(kind: ErrorKind) -> i32 {
    use sysexits::*;
    match kind {
        ErrorKind::Usage => USAGE,
        ErrorKind::Config | ErrorKind::InsecureConfig => CONFIG,
        ErrorKind::FileUnreadable => NOINPUT,
        ErrorKind::HostUnknown => NOHOST,
        ErrorKind::HostLookupTemporary
        | ErrorKind::Connect
        | ErrorKind::Timeout
        | ErrorKind::NetworkIo
        | ErrorKind::RejectedTemporary
        | ErrorKind::DeliveryTemporary
        | ErrorKind::Lock => TEMPFAIL,
        ErrorKind::Tls | ErrorKind::Protocol => PROTOCOL,
        ErrorKind::Certificate | ErrorKind::Unsupported | ErrorKind::DeliveryPermanent => {
            UNAVAILABLE
        }
        ErrorKind::Auth => NOPERM,
        ErrorKind::RejectedPermanent => DATAERR,
        ErrorKind::LocalIo => IOERR,
        ErrorKind::Internal => SOFTWARE,
    }
}

/// fetchmail's exit codes (fetchmail(1) "EXIT CODES").
pub mod fetchmail {
    pub const SUCCESS: i32 = 0;
    pub const NOMAIL: i32 = 1;
    pub const SOCKET: i32 = 2;
    pub const AUTHFAIL: i32 = 3;
    pub const PROTOCOL: i32 = 4;
    pub const SYNTAX: i32 = 5;
    pub const IOERR: i32 = 6;
    pub const ERROR: i32 = 7;
    pub const EXCLUDE: i32 = 8;
    pub const LOCKBUSY: i32 = 9;
    pub const SMTP: i32 = 10;
    pub const DNS: i32 = 11;
    pub const BSMTP: i32 = 12;
    pub const MAXFETCH: i32 = 13;
    pub const SERVBUSY: i32 = 14;
    pub const UNDEFINED: i32 = 23;
}

/// rfetch's exit code for an error that ended a poll.
pub fn rfetch_code(kind: ErrorKind) -> i32 {
    use fetchmail::*;
    match kind {
        ErrorKind::Usage | ErrorKind::Config => SYNTAX,
        ErrorKind::InsecureConfig => IOERR,
        ErrorKind::FileUnreadable => SYNTAX,
        ErrorKind::HostUnknown | ErrorKind::HostLookupTemporary => DNS,
        ErrorKind::Connect | ErrorKind::NetworkIo => SOCKET,
        ErrorKind::Timeout => ERROR,
        ErrorKind::Tls | ErrorKind::Certificate => SOCKET,
        ErrorKind::Protocol | ErrorKind::Unsupported => PROTOCOL,
        ErrorKind::Auth => AUTHFAIL,
        ErrorKind::RejectedTemporary => LOCKBUSY,
        ErrorKind::RejectedPermanent => ERROR,
        ErrorKind::DeliveryTemporary | ErrorKind::DeliveryPermanent => SMTP,
        ErrorKind::Lock => EXCLUDE,
        ErrorKind::LocalIo => IOERR,
        ErrorKind::Internal => UNDEFINED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transient_kind_is_tempfail_for_rsend() {
        let all = [
            ErrorKind::Usage,
            ErrorKind::Config,
            ErrorKind::InsecureConfig,
            ErrorKind::FileUnreadable,
            ErrorKind::HostUnknown,
            ErrorKind::HostLookupTemporary,
            ErrorKind::Connect,
            ErrorKind::Timeout,
            ErrorKind::NetworkIo,
            ErrorKind::Tls,
            ErrorKind::Certificate,
            ErrorKind::Protocol,
            ErrorKind::Unsupported,
            ErrorKind::Auth,
            ErrorKind::RejectedTemporary,
            ErrorKind::RejectedPermanent,
            ErrorKind::DeliveryTemporary,
            ErrorKind::DeliveryPermanent,
            ErrorKind::Lock,
            ErrorKind::LocalIo,
            ErrorKind::Internal,
        ];
        for k in all {
            assert_eq!(
                rsend_code(k) == sysexits::TEMPFAIL,
                k.is_transient(),
                "{k:?}"
            );
            assert_ne!(rfetch_code(k), fetchmail::SUCCESS, "{k:?}");
            assert_ne!(rfetch_code(k), fetchmail::NOMAIL, "{k:?}");
        }
    }

    #[test]
    fn msmtp_compatible_codes() {
        assert_eq!(rsend_code(ErrorKind::Auth), 77);
        assert_eq!(rsend_code(ErrorKind::Config), 78);
        assert_eq!(rsend_code(ErrorKind::RejectedPermanent), 65);
        assert_eq!(rsend_code(ErrorKind::Usage), 64);
        assert_eq!(rfetch_code(ErrorKind::Auth), 3);
        assert_eq!(rfetch_code(ErrorKind::InsecureConfig), 6);
        assert_eq!(rfetch_code(ErrorKind::Lock), 8);
        assert_eq!(sysexits::name(rsend_code(ErrorKind::Auth)), "EX_NOPERM");
        assert_eq!(sysexits::name(sysexits::OK), "EX_OK");
        assert_eq!(sysexits::name(3), "EX_UNKNOWN");
    }
}
