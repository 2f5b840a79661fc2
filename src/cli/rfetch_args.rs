//! rfetch's command line: fetchmail's options (same letters, same long names), plus `-C/--config`
//! for the native TOML account file. The clap definition is also the source of `--help` and the
//! man page.

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

pub use crate::config::fetchmailrc::Support;
use crate::config::fetchmailrc::Support::{Implemented as I, Refused as R, Warned as W};

/// Fetch mail over POP3/IMAP and deliver it locally (fetchmail compatible)
///
/// Polls the servers (or accounts) named on the command line, or every non-skipped one in the
/// configuration, and hands each message to its target: a Maildir, an mbox, an MDA, or a local
/// MTA over SMTP/LMTP. A message is deleted on the server only after its target confirmed it.
/// The configuration is the first of: -f FILE or -C FILE; ~/.fetchmailrc
/// ($FETCHMAILHOME/fetchmailrc); $XDG_CONFIG_HOME/postie/config.toml (see CONFIGURATION FILE
/// ORDER). -V and -v name the file read.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "rfetch",
    version,
    disable_version_flag = true,
    disable_help_flag = true,
    after_help = "Exit status (fetchmail's): 0 mail delivered; 1 no mail; 2 socket error; 3 authentication \
failed; 4 protocol error; 5 syntax error; 6 bad rc-file permissions; 7 server error or timeout; 8 another \
instance is running; 9 server lock busy; 10 SMTP/delivery failure; 11 DNS error; 13 fetchlimit reached; \
23 internal error."
)]
pub struct RfetchArgs {
    /// Print help.
    #[arg(short = '?', long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Print the version and a description of each poll, then exit without fetching.
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell), then exit.
    #[arg(long = "completions", value_name = "SHELL", hide = true)]
    pub completions: Option<clap_complete::Shell>,
    /// Only check whether mail is waiting (exit 0 yes, 1 no).
    #[arg(short = 'c', long = "check")]
    pub check: bool,
    /// Only errors.
    #[arg(short = 's', long = "silent")]
    pub silent: bool,
    /// More output; twice: the (redacted) protocol dialogue.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
    /// Print the configuration as understood, then exit.
    #[arg(long = "configdump")]
    pub configdump: bool,
    /// Run as a daemon polling every N seconds (0: once), detached from the terminal unless
    /// -N is given. Each account has its own thread and schedule; a transient failure is
    /// retried after 30 s, doubling up to N. SIGUSR1 polls at once, SIGTERM/SIGINT stop after
    /// the current batch.
    #[arg(short = 'd', long = "daemon", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(..=crate::config::MAX_SECONDS))]
    pub daemon: Option<u64>,
    /// Do not detach from the terminal in daemon mode (for systemd and other supervisors).
    #[arg(short = 'N', long = "nodetach")]
    pub nodetach: bool,
    /// Internal: the stage of detaching this re-executed rfetch is (see `cli::daemonize`).
    #[arg(long = "detached-stage", hide = true, value_enum)]
    pub detached_stage: Option<crate::cli::daemonize::Stage>,
    /// Stop the running instance. Alone, exit afterwards; with other options, go on as the
    /// new instance (as fetchmail does).
    #[arg(short = 'q', long = "quit")]
    pub quit: bool,
    /// `--quit` was the only argument: stop the running instance and exit.
    #[arg(skip)]
    pub quit_only: bool,
    /// Only options that may wake a running daemon were given (fetchmail's rule: none but
    /// -v, -s and the files naming the configuration and the lock).
    #[arg(skip)]
    pub wake_only: bool,
    /// Append log lines (timestamped, info and up) to FILE; created mode 600 if missing.
    /// Used instead of syslog.
    #[arg(short = 'L', long = "logfile", value_name = "FILE")]
    pub logfile: Option<String>,
    /// Log to syslog (LOG_MAIL, info and up).
    #[arg(long = "syslog", overrides_with = "nosyslog")]
    pub syslog: bool,
    /// Do not log to syslog (overrides `set syslog`).
    #[arg(long = "nosyslog")]
    pub nosyslog: bool,
    /// fetchmailrc to read ("-" for stdin).
    #[arg(short = 'f', long = "fetchmailrc", value_name = "FILE")]
    pub fetchmailrc: Option<String>,
    /// Native TOML account file to read (instead of ~/.fetchmailrc, which is read first when it
    /// exists and neither -f nor -C is given).
    #[arg(
        short = 'C',
        long = "config",
        value_name = "FILE",
        conflicts_with = "fetchmailrc"
    )]
    pub config: Option<String>,
    /// File for the seen-message state.
    #[arg(short = 'i', long = "idfile", value_name = "FILE")]
    pub idfile: Option<String>,
    /// PID/lock file.
    #[arg(long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<String>,
    /// Postmaster for undeliverable mail, and for the reports of refused mail with --nobounce.
    #[arg(long = "postmaster", value_name = "NAME")]
    pub postmaster: Option<String>,
    /// With --nosoftbounce, report refused mail to the postmaster instead of its sender.
    #[arg(long = "nobounce")]
    pub nobounce: bool,
    /// Keep messages the listener refused permanently (default).
    #[arg(long = "softbounce")]
    pub softbounce: bool,
    /// Mail the SMTP/LMTP listener refuses permanently (5xx) is reported to its sender (or the
    /// postmaster) and deleted once that report was accepted; it stays when the report fails.
    #[arg(long = "nosoftbounce")]
    pub nosoftbounce: bool,
    /// Do not add a Received header.
    #[arg(long = "invisible")]
    pub invisible: bool,
    /// Protocol: POP3 (or APOP), IMAP; AUTO is IMAP (rfetch does not probe).
    #[arg(short = 'p', long = "protocol", alias = "proto", value_name = "PROTO")]
    pub protocol: Option<String>,
    /// Track POP3 messages by UIDL (rfetch always does).
    #[arg(short = 'U', long = "uidl")]
    pub uidl: bool,
    /// IMAP IDLE: after the first poll keep the connection open and fetch new mail as soon as
    /// the server announces it (re-issued every 28 minutes or `idletimeout`; NOOP every 28 s
    /// when the server lacks IDLE; one connection per folder; reconnects with backoff). As in
    /// fetchmail this also holds without -d: rfetch then runs until SIGTERM. Not with -c.
    #[arg(long = "idle")]
    pub idle: bool,
    /// Port (or service name: pop3, pop3s, imap, imaps) to connect to.
    #[arg(short = 'P', long = "service", alias = "port", value_name = "PORT")]
    pub service: Option<String>,
    /// Authentication type: only any and password (rfetch chooses the method among those the
    /// server offers); other types are refused.
    #[arg(long = "auth", value_name = "TYPE")]
    pub auth: Option<String>,
    /// Network timeout in seconds.
    #[arg(short = 't', long = "timeout", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(..=crate::config::MAX_SECONDS))]
    pub timeout: Option<u64>,
    /// Envelope header of a multidrop poll (the recipients are read from it).
    #[arg(short = 'E', long = "envelope", value_name = "HEADER")]
    pub envelope: Option<String>,
    /// Prefix to strip from the envelope recipients of a multidrop poll.
    #[arg(short = 'Q', long = "qvirtual", value_name = "PREFIX")]
    pub qvirtual: Option<String>,
    /// Remote user name.
    #[arg(short = 'u', long = "user", alias = "username", value_name = "NAME")]
    pub user: Option<String>,
    /// IMAP folder(s), comma separated.
    #[arg(short = 'r', long = "folder", value_name = "FOLDER")]
    pub folder: Option<String>,
    /// Use implicit TLS.
    #[arg(long = "ssl")]
    pub ssl: bool,
    /// TLS version floor: auto, tls1+, tls1.1+, tls1.2+ and tls1.2 are met (rfetch speaks TLS 1.2
    /// and 1.3); others are refused.
    #[arg(long = "sslproto", value_name = "VERSION")]
    pub sslproto: Option<String>,
    /// Verify the server certificate (default).
    #[arg(long = "sslcertck")]
    pub sslcertck: bool,
    /// Do not verify the server certificate (dangerous).
    #[arg(long = "nosslcertck")]
    pub nosslcertck: bool,
    /// CA certificates to trust.
    #[arg(long = "sslcertfile", value_name = "FILE")]
    pub sslcertfile: Option<String>,
    /// A directory of CA certificates to trust (as c_rehash makes it).
    #[arg(long = "sslcertpath", value_name = "DIR")]
    pub sslcertpath: Option<String>,
    /// Expected certificate name.
    #[arg(long = "sslcommonname", value_name = "NAME")]
    pub sslcommonname: Option<String>,
    /// Expected fingerprint of the server certificate: SHA-256, or MD5/SHA-1 with a warning.
    #[arg(long = "sslfingerprint", value_name = "FP")]
    pub sslfingerprint: Option<String>,
    /// Client certificate (with --sslkey).
    #[arg(long = "sslcert", value_name = "FILE")]
    pub sslcert: Option<String>,
    /// Client key (with --sslcert).
    #[arg(long = "sslkey", value_name = "FILE")]
    pub sslkey: Option<String>,
    /// Fetch all messages, also those seen before.
    #[arg(short = 'a', long = "all", alias = "fetchall")]
    pub all: bool,
    /// Keep messages on the server.
    #[arg(short = 'k', long = "keep")]
    pub keep: bool,
    /// Delete messages from the server after delivery (default).
    #[arg(short = 'K', long = "nokeep")]
    pub nokeep: bool,
    /// Delete messages delivered by an earlier poll (still on the server) before fetching,
    /// even with --keep.
    #[arg(short = 'F', long = "flush")]
    pub flush: bool,
    /// Delete messages larger than --limit instead of leaving them on the server.
    #[arg(long = "limitflush")]
    pub limitflush: bool,
    /// SMTP host to forward to (host[/port]; the first of a comma-separated list is used).
    #[arg(short = 'S', long = "smtphost", value_name = "HOSTS")]
    pub smtphost: Option<String>,
    /// Ignored with a warning: only ETRN and ODMR use it.
    #[arg(long = "fetchdomains", value_name = "DOMAINS", hide = true)]
    pub fetchdomains: Option<String>,
    /// Domain appended to local recipients in RCPT TO.
    #[arg(short = 'D', long = "smtpaddress", value_name = "DOMAIN")]
    pub smtpaddress: Option<String>,
    /// Full address for RCPT TO.
    #[arg(long = "smtpname", value_name = "USER@DOMAIN")]
    pub smtpname: Option<String>,
    /// SMTP reply codes (comma-separated) that mean spam: such a message is deleted, not
    /// delivered (-1: none).
    #[arg(
        short = 'Z',
        long = "antispam",
        value_name = "CODES",
        allow_hyphen_values = true
    )]
    pub antispam: Option<String>,
    /// Deliver through this MDA command (run by /bin/sh; %T recipient, %F sender).
    #[arg(short = 'm', long = "mda", value_name = "COMMAND")]
    pub mda: Option<String>,
    /// Refused: rfetch cannot write BSMTP.
    #[arg(long = "bsmtp", value_name = "FILE", hide = true)]
    pub bsmtp: Option<String>,
    /// Speak LMTP to the SMTP host, which needs an explicit port (-S host/port).
    #[arg(long = "lmtp")]
    pub lmtp: bool,
    /// Do not rewrite addresses (rfetch never does).
    #[arg(short = 'n', long = "norewrite")]
    pub norewrite: bool,
    /// Skip (with --limitflush: delete) messages larger than N octets; 0: no limit.
    #[arg(short = 'l', long = "limit", value_name = "OCTETS")]
    pub limit: Option<u64>,
    /// Ignored with a warning: an oversized message is logged at every poll.
    #[arg(short = 'w', long = "warnings", value_name = "SECONDS", hide = true)]
    pub warnings: Option<u64>,
    /// Reconnect to the SMTP/LMTP listener after N messages; 0: never.
    #[arg(short = 'b', long = "batchlimit", value_name = "N")]
    pub batchlimit: Option<u64>,
    /// Fetch at most N messages per poll (exit 13 when messages are left); 0: no limit.
    #[arg(short = 'B', long = "fetchlimit", value_name = "N")]
    pub fetchlimit: Option<u64>,
    /// Ignored with a warning: rfetch reads all sizes with one command.
    #[arg(long = "fetchsizelimit", value_name = "N", hide = true)]
    pub fetchsizelimit: Option<u64>,
    /// Ignored with a warning: rfetch lists all UIDs with one command.
    #[arg(long = "fastuidl", value_name = "N", hide = true)]
    pub fastuidl: Option<u64>,
    /// IMAP: expunge after every N deletions (0: at the end). POP3: QUIT (committing the
    /// deletions) and reconnect after every N deletions.
    #[arg(short = 'e', long = "expunge", value_name = "N")]
    pub expunge: Option<u64>,
    /// Refused: rfetch cannot check an interface before polling.
    #[arg(short = 'I', long = "interface", value_name = "SPEC", hide = true)]
    pub interface: Option<String>,
    /// Ignored with a warning: rfetch polls whether or not the link saw traffic.
    #[arg(short = 'M', long = "monitor", value_name = "IFACE", hide = true)]
    pub monitor: Option<String>,
    /// Ignored with a warning: rfetch has no parser trace.
    #[arg(short = 'y', long = "yydebug", hide = true)]
    pub yydebug: bool,
    /// Ignored with a warning: the progress line is shown on a terminal only.
    #[arg(long = "showdots", hide = true)]
    pub showdots: bool,
    /// Talk to the server through COMMAND's stdin/stdout instead of connecting (%h: host,
    /// %p: port), e.g. "ssh %h /usr/sbin/imapd" or "socat - TCP:%h:%p".
    #[arg(long = "plugin", value_name = "COMMAND")]
    pub plugin: Option<String>,
    /// Talk to the SMTP/LMTP listener through COMMAND's stdin/stdout (%h: host, %p: port).
    #[arg(long = "plugout", value_name = "COMMAND")]
    pub plugout: Option<String>,
    /// Ignored with a warning: only Kerberos IV uses it.
    #[arg(long = "principal", value_name = "PRINCIPAL", hide = true)]
    pub principal: Option<String>,
    /// Ignored with a warning: rfetch's Received header has no polling clause.
    #[arg(long = "tracepolls", hide = true)]
    pub tracepolls: bool,
    /// Messages with a malformed header: accept (what rfetch does); reject is refused.
    #[arg(long = "bad-header", value_name = "accept")]
    pub bad_header: Option<String>,
    /// The refused and warned options given, in [`RFETCH_OPTIONS`] order (filled by [`parse`]).
    #[arg(skip)]
    pub unsupported: Vec<(&'static str, Support)>,
    /// Allow passwords over unencrypted connections (dangerous).
    #[arg(long = "danger-plaintext-auth")]
    pub danger_plaintext_auth: bool,
    /// Servers (fetchmailrc) or accounts (TOML) to poll; default: all that are not skipped.
    #[arg(value_name = "SERVER")]
    pub servers: Vec<String>,
}

/// Every fetchmail 6.4 command-line option (by its long name; `-?`-style only where it has
/// none) and what rfetch does with it. Implemented options are in `--help`; the others are
/// hidden from it, a refused one is an error naming it and why, a warned one a warning saying
/// what rfetch does instead. Values rfetch cannot honour of an implemented option (`--auth`,
/// `--sslproto`, `--antispam`, `--bad-header`) are refused by the overrides.
pub const RFETCH_OPTIONS: &[(&str, Support)] = &[
    ("--help", I),
    ("--version", I),
    ("--check", I),
    ("--silent", I),
    ("--verbose", I),
    ("--configdump", I),
    (
        "--yydebug",
        W("rfetch has no parser trace; --configdump shows the file as understood"),
    ),
    ("--daemon", I),
    ("--nodetach", I),
    ("--quit", I),
    ("--logfile", I),
    ("--syslog", I),
    ("--nosyslog", I),
    (
        "--showdots",
        W("rfetch shows its progress line only on a terminal"),
    ),
    ("--fetchmailrc", I),
    ("--idfile", I),
    ("--pidfile", I),
    ("--postmaster", I),
    ("--nobounce", I),
    ("--softbounce", I),
    ("--nosoftbounce", I),
    ("--invisible", I),
    ("--protocol", I),
    ("--uidl", I),
    ("--idle", I),
    ("--service", I),
    ("--port", I),
    ("--auth", I),
    ("--timeout", I),
    ("--envelope", I),
    ("--qvirtual", I),
    (
        "--principal",
        W("only Kerberos IV uses it, and rfetch does not do Kerberos"),
    ),
    (
        "--tracepolls",
        W("rfetch's Received header has no `polling` clause"),
    ),
    ("--user", I),
    ("--folder", I),
    (
        "--interface",
        R(
            "rfetch cannot check an interface address before polling; polling anyway could send the login over another network",
        ),
    ),
    (
        "--monitor",
        W("rfetch polls whether or not the link saw other traffic"),
    ),
    ("--plugin", I),
    ("--plugout", I),
    ("--bad-header", I),
    ("--ssl", I),
    ("--sslproto", I),
    ("--sslcertck", I),
    ("--nosslcertck", I),
    ("--sslcertfile", I),
    ("--sslcertpath", I),
    ("--sslcommonname", I),
    ("--sslfingerprint", I),
    ("--sslcert", I),
    ("--sslkey", I),
    ("--all", I),
    ("--keep", I),
    ("--nokeep", I),
    ("--flush", I),
    ("--limitflush", I),
    ("--smtphost", I),
    (
        "--fetchdomains",
        W("only ETRN and ODMR use it, and rfetch refuses those protocols"),
    ),
    ("--smtpaddress", I),
    ("--smtpname", I),
    ("--antispam", I),
    ("--mda", I),
    (
        "--bsmtp",
        R("rfetch cannot write BSMTP; ignoring it would deliver the mail elsewhere"),
    ),
    ("--lmtp", I),
    ("--norewrite", I),
    ("--limit", I),
    (
        "--warnings",
        W("rfetch logs an oversized message at every poll that leaves it on the server"),
    ),
    ("--batchlimit", I),
    ("--fetchlimit", I),
    (
        "--fetchsizelimit",
        W("rfetch reads all message sizes with one command"),
    ),
    ("--fastuidl", W("rfetch lists all UIDs with one command")),
    ("--expunge", I),
];

/// What rfetch does with the fetchmail option `long` (`--name`), if it is one.
pub fn option_support(long: &str) -> Option<Support> {
    RFETCH_OPTIONS
        .iter()
        .find(|(n, _)| *n == long)
        .map(|(_, s)| *s)
}

/// Parses rfetch's arguments.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<RfetchArgs, clap::Error> {
    let args: Vec<String> = args.into_iter().collect();
    let matches = RfetchArgs::command().try_get_matches_from(&args)?;
    let mut parsed = RfetchArgs::from_arg_matches(&matches)?;
    let cmd = RfetchArgs::command();
    for (long, support) in RFETCH_OPTIONS {
        if matches!(support, Support::Implemented) {
            continue;
        }
        let name = long.trim_start_matches('-');
        let given = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .is_some_and(|a| {
                matches.value_source(a.get_id().as_str())
                    == Some(clap::parser::ValueSource::CommandLine)
            });
        // -Z -1 asks for no spam codes, which is what rfetch does.
        if given && !(*long == "--antispam" && parsed.antispam.as_deref() == Some("-1")) {
            parsed.unsupported.push((long, *support));
        }
    }
    // fetchmail decides by the argument count too: `fetchmail -q` only stops, while
    // `fetchmail -q -d 300` (what init scripts run to restart) stops and takes over.
    parsed.quit_only = parsed.quit && args.len() == 2;
    // What may be given to an rfetch that only wakes the daemon: nothing that would change a
    // poll (the daemon would not apply it) and no server names.
    const WAKE_SAFE: &[&str] = &["verbose", "silent", "fetchmailrc", "config", "pidfile"];
    parsed.wake_only = cmd.get_arguments().all(|a| {
        WAKE_SAFE.contains(&a.get_id().as_str())
            || matches.value_source(a.get_id().as_str())
                != Some(clap::parser::ValueSource::CommandLine)
    });
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> RfetchArgs {
        parse(
            std::iter::once("rfetch".to_string()).chain(line.split_whitespace().map(String::from)),
        )
        .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn common_invocations() {
        let a = p("-d 300 -N -f /home/u/.fetchmailrc");
        assert_eq!(a.daemon, Some(300));
        assert!(a.nodetach);
        assert_eq!(a.fetchmailrc.as_deref(), Some("/home/u/.fetchmailrc"));
        let a = p("-akv -p IMAP --ssl -u bob mail.example.org");
        assert!(a.all && a.keep);
        assert_eq!(a.verbose, 1);
        assert_eq!(a.servers, ["mail.example.org"]);
        assert!(p("--quit").quit_only && p("-q").quit_only);
        let a = p("-q -d 300");
        assert!(a.quit && !a.quit_only);
        let a = p("-d0 -vv --nosyslog -L /tmp/log");
        assert_eq!(a.daemon, Some(0));
        assert_eq!(a.verbose, 2);
        let a = p("-C /tmp/postie.toml demo");
        assert_eq!(a.config.as_deref(), Some("/tmp/postie.toml"));
        assert_eq!(a.servers, ["demo"]);
        let a = p("-K -B 10 -l 100000 --mda /usr/bin/procmail");
        assert!(a.nokeep);
        assert_eq!(a.fetchlimit, Some(10));
        let a = p("-F --limitflush -e 5 -b 3 -L /var/log/rfetch.log --syslog");
        assert!(a.flush && a.limitflush && a.syslog);
        assert_eq!((a.expunge, a.batchlimit), (Some(5), Some(3)));
        assert_eq!(a.logfile.as_deref(), Some("/var/log/rfetch.log"));
        let a = p("--flush --expunge 0 --logfile x");
        assert!(a.flush);
        assert_eq!(a.expunge, Some(0));
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(parse(["rfetch", "-d", "soon"].map(String::from)).is_err());
        assert!(parse(["rfetch", "--bogus"].map(String::from)).is_err());
        assert!(parse(["rfetch", "-f", "a", "-C", "b"].map(String::from)).is_err());
    }
}
