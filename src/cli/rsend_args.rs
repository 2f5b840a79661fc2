//! rsend's command line: msmtp's options and the sendmail flags real callers pass (cron, mutt,
//! git send-email, PHP mail(), mailx), including grouped (`-ti`) and glued (`-FCronDaemon`,
//! `-oi`, `-B8BITMIME`) forms. The clap definition is also the source of `--help` and the man page.

use clap::{ArgAction, Parser};

pub use crate::config::fetchmailrc::Support;
use crate::config::fetchmailrc::Support::{Implemented as I, Refused as R, Warned as W};

/// Every msmtp 1.8 command-line option (long name, or the short letter of a sendmail flag) and
/// what rsend does with it. Refused ones are not parsed at all: clap's "unexpected argument"
/// error (exit 64) names them; the reason is here and in the man page. Warned ones are hidden
/// from --help and warned about when given. The sendmail flags msmtp ignores silently (-i, -G,
/// -h, -L, -m, -n, -A, -B) rsend ignores silently too; `-o`/`-O` are warned about unless
/// rsend knows the option.
pub const MSMTP_OPTIONS: &[(&str, Support)] = &[
    ("--file", I),
    ("--account", I),
    ("--host", I),
    ("--port", I),
    ("--source-ip", I),
    ("--proxy-host", I),
    ("--proxy-port", I),
    ("--socket", I),
    ("--timeout", I),
    ("--connect-timeout", I),
    ("--protocol", I),
    ("--domain", I),
    ("--auth", I),
    ("--user", I),
    ("--passwordeval", I),
    ("--tls", I),
    ("--tls-starttls", I),
    ("--tls-trust-file", I),
    (
        "--tls-crl-file",
        R(
            "rsend does not read certificate revocation lists; ignoring it would accept a revoked certificate",
        ),
    ),
    ("--tls-fingerprint", I),
    ("--tls-certcheck", I),
    ("--tls-key-file", I),
    ("--tls-cert-file", I),
    (
        "--tls-priorities",
        W("rsend uses rustls's choices: TLS 1.2 and 1.3 with forward-secret AEAD ciphers only"),
    ),
    ("--tls-host-override", I),
    (
        "--tls-min-dh-prime-bits",
        R("deprecated in msmtp, and rustls uses no finite-field Diffie-Hellman"),
    ),
    // msmtp itself ignores it silently.
    ("--tls-force-sslv3", I),
    ("--from", I),
    ("--read-envelope-from", I),
    ("-F", I),
    ("--read-recipients", I),
    ("--dsn-notify", I),
    ("--dsn-return", I),
    ("--logfile", I),
    ("--logfile-time-format", I),
    ("--syslog", I),
    ("--aliases", I),
    ("--set-from-header", I),
    ("--set-date-header", I),
    ("--set-msgid-header", I),
    ("--set-to-header", I),
    ("--remove-bcc-headers", I),
    ("--undisclosed-recipients", I),
    ("--add-missing-from-header", I),
    ("--add-missing-date-header", I),
    ("--keepbcc", I),
    (
        "--auto-from",
        R("obsolete in msmtp; ignoring it would send from another address (use --from)"),
    ),
    (
        "--maildomain",
        R("obsolete in msmtp: it only served --auto-from (use --from)"),
    ),
    ("--configure", I),
    ("--serverinfo", I),
    ("--rmqs", R("rsend does not send ETRN")),
    ("--pretend", I),
    ("--debug", I),
    ("--version", I),
    ("--help", I),
    ("-i", I),
    ("-o", I),
    (
        "-O",
        W("sendmail options other than -oi, -oe*, -od* and -om have no effect"),
    ),
    ("-B", I),
    ("-G", I),
    ("-h", I),
    ("-L", I),
    ("-A", I),
    ("-m", I),
    ("-n", I),
    ("-b", I),
];

/// Submit a message read on stdin to your mail provider (msmtp/sendmail compatible)
///
/// Reads a message on standard input and relays it over authenticated SMTP (implicit TLS or
/// STARTTLS) to the account's server. Recipients come from the command line and, with -t, from
/// the To/Cc/Bcc headers. Configuration: the first of -C FILE, ~/.msmtprc,
/// $XDG_CONFIG_HOME/msmtp/config, $XDG_CONFIG_HOME/postie/config.toml; plus /etc/msmtprc.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "rsend",
    version,
    disable_version_flag = true,
    disable_help_flag = true,
    // Written out because the generated one shows short-only options without their values
    // ("[-F ]").
    override_usage = "rsend [OPTIONS] [-t] [-f ADDRESS] [-F NAME] [--] [RECIPIENT]...\n       \
rsend [OPTIONS] --serverinfo\n       rsend [OPTIONS] --pretend\n       \
rsend [OPTIONS] -q [--due-only] [--flush-id ID]\n       rsend [OPTIONS] -bp\n       \
rsend [OPTIONS] --queue-remove ID",
    after_help = "Exit status: 0 accepted (or queued); 64 usage; 65 rejected (5xx); 66 unreadable file; 68 unknown host; \
69 service unavailable; 70 internal; 74 local I/O; 75 temporary failure, try again later (4xx, timeout, \
connection refused); 76 protocol error; 77 authentication failed; 78 configuration error. \
rsend -q: 0, or 65 when a queued message is held or unreadable."
)]
// msmtp-style `--opt[=value]` options are `Option<String>`: given without a value they mean "on"
// (or "unset" for file/name options), and an empty value means "unset" (use the config file).
pub struct RsendArgs {
    /// Use FILE instead of ~/.msmtprc (the system file /etc/msmtprc is still read).
    #[arg(short = 'C', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Use this account from the configuration.
    #[arg(
        short = 'a',
        long = "account",
        value_name = "NAME",
        conflicts_with = "host"
    )]
    pub account: Option<String>,
    /// Use this server and command-line settings only; no configuration file.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Server port.
    #[arg(long, value_name = "NUMBER")]
    pub port: Option<u16>,
    /// Network timeout in seconds, or "off".
    #[arg(long, alias = "connect-timeout", value_name = "SECONDS")]
    pub timeout: Option<String>,
    /// smtp or lmtp.
    #[arg(long, value_name = "smtp|lmtp")]
    pub protocol: Option<String>,
    /// Argument of EHLO/LHLO.
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
    /// Authentication: on, off, or a method (plain, login, cram-md5, scram-sha-256, xoauth2, oauthbearer).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "on|off|METHOD")]
    pub auth: Option<String>,
    /// User name for authentication.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "NAME")]
    pub user: Option<String>,
    /// Command whose output is the password (there is no --password: it would show in ps).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "COMMAND")]
    pub passwordeval: Option<String>,
    /// Use TLS.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "on|off")]
    pub tls: Option<String>,
    /// STARTTLS (on) or implicit TLS (off).
    #[arg(long = "tls-starttls", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "on|off")]
    pub tls_starttls: Option<String>,
    /// CA certificates to trust ("system" for the system store).
    #[arg(long = "tls-trust-file", num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "FILE")]
    pub tls_trust_file: Option<String>,
    /// Trust exactly the server certificate with this SHA-256 fingerprint.
    #[arg(long = "tls-fingerprint", num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "FP")]
    pub tls_fingerprint: Option<String>,
    /// Verify the server certificate (off is dangerous).
    #[arg(long = "tls-certcheck", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "on|off")]
    pub tls_certcheck: Option<String>,
    /// Client key file.
    #[arg(long = "tls-key-file", num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "FILE")]
    pub tls_key_file: Option<String>,
    /// Client certificate file.
    #[arg(long = "tls-cert-file", num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "FILE")]
    pub tls_cert_file: Option<String>,
    /// Name to verify the certificate against.
    #[arg(long = "tls-host-override", num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "HOST")]
    pub tls_host_override: Option<String>,
    /// Accepted for compatibility; ignored (rustls chooses protocol versions and ciphers).
    #[arg(long = "tls-priorities", num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "STRING", hide = true)]
    pub tls_priorities: Option<String>,
    /// Accepted for compatibility; ignored.
    #[arg(long = "tls-force-sslv3", hide = true)]
    pub tls_force_sslv3: bool,
    /// Envelope-from address ('<>' for the null sender); also picks the account whose from matches.
    #[arg(short = 'f', long = "from", value_name = "ADDRESS")]
    pub from: Option<String>,
    /// Same as -f (sendmail's older spelling; PHP and others pass it).
    #[arg(short = 'r', value_name = "ADDRESS", hide = true)]
    pub from_r: Option<String>,
    /// Take the envelope-from from the From header.
    #[arg(long = "read-envelope-from", conflicts_with_all = ["from", "from_r"])]
    pub read_envelope_from: bool,
    /// Full name for an added From header. A non-ASCII name is RFC 2047 encoded; a name with a
    /// control character (a line break, TAB, ESC) is refused.
    #[arg(short = 'F', value_name = "NAME")]
    pub full_name: Option<String>,
    /// Add the To, Cc and Bcc recipients of the message (or its first Resent- block).
    #[arg(short = 't', long = "read-recipients")]
    pub read_recipients: bool,
    /// DSN notify: off, never, or a list of failure,delay,success.
    #[arg(short = 'N', long = "dsn-notify", value_name = "LIST")]
    pub dsn_notify: Option<String>,
    /// DSN return: off, headers (hdrs) or full.
    #[arg(short = 'R', long = "dsn-return", value_name = "WHAT")]
    pub dsn_return: Option<String>,
    /// Log file ("-" for stdout).
    #[arg(short = 'X', long = "logfile", value_name = "FILE")]
    pub logfile: Option<String>,
    /// Syslog: on, off, or a facility (LOG_MAIL, LOG_USER, LOG_LOCAL0..7).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "on|off|FACILITY")]
    pub syslog: Option<String>,
    /// Aliases file for local recipients.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "FILE")]
    pub aliases: Option<String>,
    /// Add a From header: auto (when missing), on (always, replacing), off.
    #[arg(long = "set-from-header", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "auto|on|off")]
    pub set_from_header: Option<String>,
    /// Add a Date header when missing: auto or off.
    #[arg(long = "set-date-header", num_args = 0..=1, require_equals = true, default_missing_value = "auto", value_name = "auto|off")]
    pub set_date_header: Option<String>,
    /// Add a Message-ID header when missing: auto or off.
    #[arg(long = "set-msgid-header", num_args = 0..=1, require_equals = true, default_missing_value = "auto", value_name = "auto|off")]
    pub set_msgid_header: Option<String>,
    /// Replace To/Cc/Bcc: on, off, undisclosed_recipients.
    #[arg(long = "set-to-header", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "on|off|undisclosed_recipients")]
    pub set_to_header: Option<String>,
    /// Remove Bcc headers (default on).
    #[arg(long = "remove-bcc-headers", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "on|off")]
    pub remove_bcc_headers: Option<String>,
    // --- msmtp's connection and header options (socket, proxy, source address, the
    // compatibility spellings of the header settings) ---
    /// Bind the outgoing socket to this local address (empty: unset).
    #[arg(long = "source-ip", num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "IP")]
    pub source_ip: Option<String>,
    /// Connect through this SOCKS5 proxy; the proxy resolves the server's name (no local DNS
    /// lookup of it). A proxy that cannot be reached is an error, never a direct connection.
    #[arg(long = "proxy-host", num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "HOST")]
    pub proxy_host: Option<String>,
    /// Port of the SOCKS5 proxy (default 1080).
    #[arg(long = "proxy-port", num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "NUMBER")]
    pub proxy_port: Option<String>,
    /// Connect to this Unix-domain socket instead of host and port (and proxy).
    #[arg(long = "socket", num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "FILE")]
    pub socket: Option<String>,
    /// Time stamp format (strftime) of log file lines, or "none".
    #[arg(long = "logfile-time-format", num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "FORMAT")]
    pub logfile_time_format: Option<String>,
    /// Keep Bcc headers (same as --remove-bcc-headers=off).
    #[arg(long = "keepbcc", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "on|off")]
    pub keepbcc: Option<String>,
    /// Replace To/Cc/Bcc with "To: undisclosed-recipients:;" (same as
    /// --set-to-header=undisclosed_recipients).
    #[arg(long = "undisclosed-recipients", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "on|off")]
    pub undisclosed_recipients: Option<String>,
    /// Add a From header when missing (same as --set-from-header=auto; off: never).
    #[arg(long = "add-missing-from-header", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "on|off")]
    pub add_missing_from_header: Option<String>,
    /// Add a Date header when missing (same as --set-date-header=auto; off: never).
    #[arg(long = "add-missing-date-header", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "on|off")]
    pub add_missing_date_header: Option<String>,
    /// Print an account for ADDRESS: its submission server from the domain's SRV records
    /// (RFC 6186, RFC 8314), else from a built-in table of large providers; then exit.
    #[arg(long = "configure", value_name = "ADDRESS")]
    pub configure: Option<String>,
    // --- end of msmtp's connection and header options ---
    /// Print the server's greeting, capabilities and certificate, then exit.
    #[arg(short = 'S', long = "serverinfo")]
    pub serverinfo: bool,
    /// Print the configuration that would be used (secrets hidden), then exit.
    #[arg(short = 'P', long = "pretend")]
    pub pretend: bool,
    /// Print the configuration and the (redacted) SMTP dialogue.
    #[arg(short = 'v', short_alias = 'd', long = "debug", action = ArgAction::Count)]
    pub verbose: u8,
    /// Print this help (-h is sendmail's hop count, so help is only --help).
    #[arg(long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Print version information.
    #[arg(long = "version")]
    pub version: bool,
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell), then exit.
    #[arg(long = "completions", value_name = "SHELL", hide = true)]
    pub completions: Option<clap_complete::Shell>,
    /// Allow a password over an unencrypted connection (dangerous).
    #[arg(long = "danger-plaintext-auth")]
    pub danger_plaintext_auth: bool,
    /// Sendmail compatibility: ignored (rsend always reads stdin to the end; a "." line never ends the message).
    #[arg(short = 'i', hide = true)]
    pub ignore_dots: bool,
    /// Sendmail -o options (-oi, -oem, -odi, ...): accepted, -oi ignored, others warned about.
    #[arg(short = 'o', value_name = "OPTION", hide = true, action = ArgAction::Append)]
    pub sendmail_o: Vec<String>,
    /// Sendmail -O option=value: accepted with a warning.
    #[arg(short = 'O', value_name = "OPTION", hide = true, action = ArgAction::Append)]
    pub sendmail_big_o: Vec<String>,
    /// Sendmail -B body type (7BIT, 8BITMIME): accepted; rsend declares 8BITMIME itself when needed.
    #[arg(short = 'B', value_name = "TYPE", hide = true)]
    pub body_type: Option<String>,
    /// Sendmail -b mode: m (the default: deliver the message) and i/p are accepted.
    #[arg(short = 'b', value_name = "MODE", hide = true)]
    pub mode: Option<String>,
    /// Sendmail flags accepted and ignored.
    #[arg(short = 'G', hide = true)]
    pub ignore_g: bool,
    #[arg(short = 'm', hide = true)]
    pub ignore_m: bool,
    #[arg(short = 'n', hide = true)]
    pub ignore_n: bool,
    #[arg(short = 'h', value_name = "N", hide = true)]
    pub ignore_h: Option<String>,
    #[arg(short = 'L', value_name = "TAG", hide = true)]
    pub ignore_l: Option<String>,
    #[arg(short = 'A', value_name = "MODE", hide = true)]
    pub ignore_a: Option<String>,
    /// Queue the message if it cannot be sent for a temporary reason (network down, timeout,
    /// 4xx reply): rsend exits 0 once it is safely in the queue. A permanent refusal (5xx) is
    /// never queued. Same as queue transient in the configuration.
    #[arg(long = "queue-on-failure")]
    pub queue_on_failure: bool,
    /// Deliver the queued messages now (every message not held; with --due-only, those whose
    /// retry time has come). Also: -odq queues without trying, -odb queues and flushes in the
    /// background, -odi delivers now (the default).
    #[arg(short = 'q', long = "flush")]
    pub flush: bool,
    /// With -q: only the messages whose retry time has come (what the systemd timer runs).
    #[arg(long = "due-only", requires = "flush")]
    pub due_only: bool,
    /// With -q: only this message, now, even if it is held (too old, or refused).
    #[arg(long = "flush-id", value_name = "ID", requires = "flush")]
    pub flush_id: Option<String>,
    /// Remove this message from the queue (its id as rsend -bp shows it).
    #[arg(long = "queue-remove", value_name = "ID", conflicts_with = "flush")]
    pub queue_remove: Option<String>,
    /// Write systemd user units that flush the queue by themselves (a timer every 5 minutes, and
    /// a path unit that flushes when a message is queued) to $XDG_CONFIG_HOME/systemd/user, naming
    /// this rsend and its queue directory, then print the systemctl command that enables them.
    #[arg(long = "install-units", conflicts_with_all = ["flush", "queue_remove"])]
    pub install_units: bool,
    /// The queue directory (default: queue_dir in the configuration, else
    /// $XDG_STATE_HOME/postie/queue).
    #[arg(long = "queue-dir", value_name = "DIR")]
    pub queue_dir: Option<String>,
    /// Recipients.
    #[arg(value_name = "RECIPIENT", allow_hyphen_values = false)]
    pub recipients: Vec<String>,
}

/// Rewrites the few sendmail forms clap cannot express: msmtp's `-d` takes an optional glued
/// value (`-d0.1`, a sendmail convention) that must not swallow the next argument. Everything after `--` is left alone.
pub fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = false;
    for a in args {
        if rest {
            out.push(a);
            continue;
        }
        if a == "--" {
            rest = true;
            out.push(a);
        } else if a.starts_with("-d") && a.len() > 2 && !a.starts_with("--") {
            out.push("-d".to_string());
        } else {
            out.push(a);
        }
    }
    out
}

/// What the `-b` mode asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver the message on stdin (-bm, the default).
    Deliver,
    /// newaliases (-bi): nothing to do, rsend has no alias database.
    Newaliases,
    /// mailq (-bp): list the queue.
    ListQueue,
    /// -q: deliver what is queued.
    Flush,
    /// --queue-remove ID.
    Remove,
    /// --install-units.
    InstallUnits,
}

pub use crate::submit::request::DeliveryFlag;

/// The last -od flag given, if any.
pub fn delivery_flag(args: &RsendArgs) -> Option<DeliveryFlag> {
    args.sendmail_o.iter().rev().find_map(|o| match o.as_str() {
        "di" => Some(DeliveryFlag::Interactive),
        "dq" | "dd" => Some(DeliveryFlag::Queue),
        "db" => Some(DeliveryFlag::Background),
        _ => None,
    })
}

/// Interprets `-b`; sendmail modes rsend cannot do are usage errors with a clear reason.
pub fn mode(args: &RsendArgs) -> Result<Mode, String> {
    let queue_op = args.flush || args.queue_remove.is_some();
    if queue_op && (!args.recipients.is_empty() || args.read_recipients) {
        return Err("-q and --queue-remove take no recipients and read no message".into());
    }
    if queue_op && args.mode.as_deref().is_some_and(|m| m != "m") {
        return Err(format!(
            "-b{} cannot be combined with -q or --queue-remove",
            args.mode.as_deref().unwrap_or_default()
        ));
    }
    if args.install_units {
        if !args.recipients.is_empty() || args.read_recipients {
            return Err("--install-units takes no recipients and reads no message".into());
        }
        return Ok(Mode::InstallUnits);
    }
    if args.flush {
        return Ok(Mode::Flush);
    }
    if args.queue_remove.is_some() {
        return Ok(Mode::Remove);
    }
    match args.mode.as_deref() {
        None | Some("m") => Ok(Mode::Deliver),
        Some("i") => Ok(Mode::Newaliases),
        Some("p") => Ok(Mode::ListQueue),
        Some(other) => Err(format!(
            "unsupported operation mode -b{other}: rsend only submits a message read on stdin (-bm)"
        )),
    }
}

/// Warnings for sendmail options that are accepted but have no effect.
pub fn compat_warnings(args: &RsendArgs) -> Vec<String> {
    let mut w = Vec::new();
    for o in &args.sendmail_o {
        // -oi: dots never end input here; -oem/-oee/-oep/-oeq/-oew: errors go to stderr and the
        // exit code anyway; -odi/-odb/-odq/-odd: delivery modes (see delivery_flag); -om:
        // meaningless here.
        let known = o == "i"
            || o.starts_with('e')
            || matches!(o.as_str(), "di" | "db" | "dq" | "dd")
            || o == "m";
        if !known {
            w.push(format!("ignoring sendmail option -o{o}"));
        }
    }
    for o in &args.sendmail_big_o {
        w.push(format!("ignoring sendmail option -O{o}"));
    }
    if args
        .tls_priorities
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        w.push(
            "ignoring --tls-priorities: rsend uses rustls's choices: TLS 1.2 and 1.3 with \
             forward-secret AEAD ciphers only"
                .to_owned(),
        );
    }
    w
}

/// Argument parsing result for the binary.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<RsendArgs, clap::Error> {
    RsendArgs::try_parse_from(normalize(args)).map_err(hop_count_hint)
}

/// `rsend -h` is usually someone asking for help, but -h is sendmail's hop count (`-h N`), which
/// callers pass and rsend must accept; the error says so and where help is.
fn hop_count_hint(mut error: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    let about_h = matches!(
        error.get(ContextKind::InvalidArg),
        Some(ContextValue::String(arg)) if arg.starts_with("-h ")
    );
    if about_h {
        error.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![
                "-h is sendmail's hop count and takes a number; for help, use --help".into(),
            ]),
        );
    }
    error
}

/// `-bs` (sendmail's mode s): speak SMTP on stdin/stdout. Checked before [`mode`], which knows
/// only the modes that read one message.
pub fn smtp_on_stdio(args: &RsendArgs) -> bool {
    args.mode.as_deref() == Some("s")
}

#[cfg(test)]
mod tests {
    /// msmtp 1.8.23's options (msmtp --help, msmtp(1), msmtp.c) with a sample argument: each is
    /// in exactly one set, an implemented one parses into a field, a warned one is warned
    /// about, a refused one is an error naming it.
    #[test]
    fn every_msmtp_option_does_what_its_set_says() {
        const OPTIONS: &[(&str, &str)] = &[
            ("--file", "--file=/x"),
            ("--account", "--account=a"),
            ("--host", "--host=h"),
            ("--port", "--port=2525"),
            ("--source-ip", "--source-ip=127.0.0.1"),
            ("--proxy-host", "--proxy-host=127.0.0.1"),
            ("--proxy-port", "--proxy-port=9050"),
            ("--socket", "--socket=/s"),
            ("--timeout", "--timeout=30"),
            ("--connect-timeout", "--connect-timeout=30"),
            ("--protocol", "--protocol=lmtp"),
            ("--domain", "--domain=d"),
            ("--auth", "--auth=plain"),
            ("--user", "--user=u"),
            ("--passwordeval", "--passwordeval=echo x"),
            ("--tls", "--tls=on"),
            ("--tls-starttls", "--tls-starttls=off"),
            ("--tls-trust-file", "--tls-trust-file=/ca"),
            ("--tls-crl-file", "--tls-crl-file=/crl"),
            ("--tls-fingerprint", "--tls-fingerprint=00:11"),
            ("--tls-certcheck", "--tls-certcheck=off"),
            ("--tls-key-file", "--tls-key-file=/k"),
            ("--tls-cert-file", "--tls-cert-file=/c"),
            ("--tls-priorities", "--tls-priorities=NORMAL"),
            ("--tls-host-override", "--tls-host-override=h"),
            ("--tls-min-dh-prime-bits", "--tls-min-dh-prime-bits=2048"),
            ("--tls-force-sslv3", "--tls-force-sslv3"),
            ("--from", "--from=a@b"),
            ("--read-envelope-from", "--read-envelope-from"),
            ("-F", "-FName"),
            ("--read-recipients", "--read-recipients"),
            ("--dsn-notify", "--dsn-notify=failure"),
            ("--dsn-return", "--dsn-return=full"),
            ("--logfile", "--logfile=/l"),
            ("--logfile-time-format", "--logfile-time-format=%H"),
            ("--syslog", "--syslog=on"),
            ("--aliases", "--aliases=/a"),
            ("--set-from-header", "--set-from-header=on"),
            ("--set-date-header", "--set-date-header=off"),
            ("--set-msgid-header", "--set-msgid-header=off"),
            ("--set-to-header", "--set-to-header=on"),
            ("--remove-bcc-headers", "--remove-bcc-headers=off"),
            ("--undisclosed-recipients", "--undisclosed-recipients"),
            ("--add-missing-from-header", "--add-missing-from-header"),
            ("--add-missing-date-header", "--add-missing-date-header"),
            ("--keepbcc", "--keepbcc"),
            ("--auto-from", "--auto-from=on"),
            ("--maildomain", "--maildomain=example.org"),
            ("--configure", "--configure=a@example.org"),
            ("--serverinfo", "--serverinfo"),
            ("--rmqs", "--rmqs=host"),
            ("--pretend", "--pretend"),
            ("--debug", "--debug"),
            ("--version", "--version"),
            ("--help", "--help"),
            ("-i", "-i"),
            ("-o", "-oi"),
            ("-O", "-Ox=y"),
            ("-B", "-B8BITMIME"),
            ("-G", "-G"),
            ("-h", "-h5"),
            ("-L", "-Ltag"),
            ("-A", "-Am"),
            ("-m", "-m"),
            ("-n", "-n"),
            ("-b", "-bm"),
        ];
        let mut failures = Vec::new();
        for (name, _) in super::MSMTP_OPTIONS {
            if !OPTIONS.iter().any(|(o, _)| o == name) {
                failures.push(format!("{name} is in the table but not an msmtp option"));
            }
        }
        let default = format!("{:?}", super::parse(["rsend".to_owned()]).unwrap());
        for &(name, given) in OPTIONS {
            let Some(support) = super::MSMTP_OPTIONS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| *s)
            else {
                failures.push(format!("{name} is in none of the three sets"));
                continue;
            };
            let parsed = super::parse(["rsend".to_owned(), given.to_owned()]);
            match (support, parsed) {
                (super::Support::Refused(_), Ok(_)) => {
                    failures.push(format!("{name}: refused, but parsed"))
                }
                (super::Support::Refused(_), Err(e)) => {
                    if !e.to_string().contains(name) {
                        failures.push(format!("{name}: the error does not name it: {e}"));
                    }
                }
                (_, Err(e))
                    if name == "--help"
                        || name == "--version"
                            && e.kind() == clap::error::ErrorKind::DisplayHelp => {}
                (_, Err(e)) => failures.push(format!("{name}: does not parse: {e}")),
                (super::Support::Warned(_), Ok(a)) => {
                    if super::compat_warnings(&a).len() != 1 {
                        failures.push(format!("{name}: warned, but no warning"));
                    }
                }
                (super::Support::Implemented, Ok(a)) => {
                    if format!("{a:?}") == default {
                        failures.push(format!("{name}: implemented, but sets nothing"));
                    }
                    if !super::compat_warnings(&a).is_empty() {
                        failures.push(format!("{name}: implemented, but warned"));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    use super::*;

    fn p(line: &str) -> RsendArgs {
        parse(std::iter::once("rsend".to_string()).chain(line.split_whitespace().map(String::from)))
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn debian_cron() {
        let a = p("-FCronDaemon -i -B8BITMIME -oem root");
        assert_eq!(a.full_name.as_deref(), Some("CronDaemon"));
        assert_eq!(a.body_type.as_deref(), Some("8BITMIME"));
        assert_eq!(a.sendmail_o, ["em"]);
        assert_eq!(a.recipients, ["root"]);
        assert!(compat_warnings(&a).is_empty());
    }

    #[test]
    fn vixie_cron_and_cronie() {
        let a = p("-FCronDaemon -odi -oem -oi -t -f user");
        assert!(a.read_recipients);
        assert_eq!(a.from.as_deref(), Some("user"));
        assert_eq!(a.sendmail_o, ["di", "em", "i"]);
    }

    #[test]
    fn php_git_mutt_mailx() {
        let a = p("-t -i -r www@x.org");
        assert_eq!(a.from_r.as_deref(), Some("www@x.org"));
        let a = p("-ti -fme@x.org");
        assert!(a.read_recipients && a.ignore_dots);
        assert_eq!(a.from.as_deref(), Some("me@x.org"));
        let a = p("-i -f me@x.org a@b.c d@e.f");
        assert_eq!(a.recipients, ["a@b.c", "d@e.f"]);
        let a = p("-oi -f user@host -t");
        assert!(a.read_recipients);
        let a = p("-N failure,delay -R hdrs -- -odd@x.org");
        assert_eq!(a.dsn_notify.as_deref(), Some("failure,delay"));
        assert_eq!(a.recipients, ["-odd@x.org"]);
    }

    #[test]
    fn msmtp_long_options() {
        let a = p("-a work --tls=off --auth --tls-starttls=off -X - -d0.1 x@y");
        assert_eq!(a.account.as_deref(), Some("work"));
        assert_eq!(a.tls.as_deref(), Some("off"));
        assert_eq!(a.auth.as_deref(), Some("on"));
        assert_eq!(a.logfile.as_deref(), Some("-"));
        assert_eq!(a.verbose, 1);
        assert_eq!(a.recipients, ["x@y"]);
        let a = p("--host=localhost --port=465 --read-envelope-from -C /tmp/rc x@y");
        assert_eq!(a.host.as_deref(), Some("localhost"));
        assert!(a.read_envelope_from);
    }

    #[test]
    fn msmtp_connection_and_header_options() {
        let a = p(
            "--proxy-host=127.0.0.1 --proxy-port=9050 --socket=/run/s --source-ip=::1 \
             --logfile-time-format=none --keepbcc --undisclosed-recipients=off \
             --add-missing-from-header --add-missing-date-header=off x@y",
        );
        assert_eq!(a.proxy_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(a.proxy_port.as_deref(), Some("9050"));
        assert_eq!(a.socket.as_deref(), Some("/run/s"));
        assert_eq!(a.source_ip.as_deref(), Some("::1"));
        assert_eq!(a.logfile_time_format.as_deref(), Some("none"));
        assert_eq!(a.keepbcc.as_deref(), Some("on"));
        assert_eq!(a.undisclosed_recipients.as_deref(), Some("off"));
        assert_eq!(a.add_missing_from_header.as_deref(), Some("on"));
        assert_eq!(a.add_missing_date_header.as_deref(), Some("off"));
        assert_eq!(a.recipients, ["x@y"]);
        let a = p("--proxy-host --socket x@y");
        assert_eq!(a.proxy_host.as_deref(), Some(""));
        assert_eq!(a.socket.as_deref(), Some(""));
    }

    #[test]
    fn modes_and_warnings() {
        assert_eq!(mode(&p("-bm x@y")), Ok(Mode::Deliver));
        assert_eq!(mode(&p("-bp")), Ok(Mode::ListQueue));
        assert!(mode(&p("-bs")).is_err());
        assert_eq!(compat_warnings(&p("-oXfoo -Oa=b x@y")).len(), 2);
        assert_eq!(mode(&p("-q")), Ok(Mode::Flush));
        assert_eq!(mode(&p("-q --due-only")), Ok(Mode::Flush));
        assert_eq!(mode(&p("--queue-remove 1-2")), Ok(Mode::Remove));
        assert!(mode(&p("-q x@y")).is_err());
        assert!(mode(&p("-q -bp")).is_err());
    }

    #[test]
    fn delivery_modes() {
        assert_eq!(delivery_flag(&p("x@y")), None);
        assert_eq!(delivery_flag(&p("-odq x@y")), Some(DeliveryFlag::Queue));
        assert_eq!(
            delivery_flag(&p("-odq -oi -odb x@y")),
            Some(DeliveryFlag::Background)
        );
        assert_eq!(
            delivery_flag(&p("-FCronDaemon -odi -oem -oi -t")),
            Some(DeliveryFlag::Interactive)
        );
        assert!(compat_warnings(&p("-odq -odb -odi x@y")).is_empty());
        assert_eq!(compat_warnings(&p("-odx x@y")).len(), 1);
        assert!(p("--queue-on-failure x@y").queue_on_failure);
    }

    #[test]
    fn conflicts_are_usage_errors() {
        let bad = |line: &str| {
            parse(
                std::iter::once("rsend".to_string())
                    .chain(line.split_whitespace().map(String::from)),
            )
            .is_err()
        };
        assert!(bad("-a x --host=y"));
        assert!(bad("-f a@b --read-envelope-from"));
        assert!(bad("--bogus"));
    }
}
