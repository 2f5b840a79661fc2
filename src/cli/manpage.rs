//! Man pages generated from the same clap definitions as `--help` (clap_mangen), plus the
//! hand-written sections clap cannot know: exit status, configuration files and keys, and where
//! we differ from msmtp and fetchmail on purpose. `tests/manpages.rs` keeps `man/*.1` in sync.

use clap::CommandFactory;
use clap_mangen::Man;

/// A hand-written section: a title and paragraphs of roff-safe text (lines starting with a
/// key in `\fB...\fR` become tagged paragraphs when written as "KEY\tTEXT").
pub struct Section {
    pub title: &'static str,
    pub body: &'static str,
}

pub(crate) fn render(cmd: clap::Command, sections: &[Section]) -> Vec<u8> {
    let man = Man::new(cmd);
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);
    let _ = man.render_options_section(&mut out);
    for s in sections {
        out.extend_from_slice(format!(".SH \"{}\"\n", s.title).as_bytes());
        for para in s.body.split("\n\n") {
            let para = para.trim();
            if para.is_empty() {
                continue;
            }
            match para.split_once('\t') {
                Some((tag, text)) if !tag.contains('\n') => {
                    out.extend_from_slice(b".TP\n");
                    out.extend_from_slice(escape(tag).as_bytes());
                    out.push(b'\n');
                    out.extend_from_slice(escape(text.trim()).as_bytes());
                }
                _ => {
                    out.extend_from_slice(b".PP\n");
                    out.extend_from_slice(escape(para).as_bytes());
                }
            }
            out.push(b'\n');
        }
    }
    let _ = man.render_version_section(&mut out);
    out
}

/// Keeps text from being read as roff requests: a leading '.' or '\'' gets a zero-width escape,
/// backslashes are doubled.
fn escape(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const RSEND_SECTIONS: &[Section] = &[
    Section {
        title: "EXIT STATUS",
        body: "rsend uses sysexits.h codes as msmtp does, with one deliberate difference: every \
temporary condition exits 75 (EX_TEMPFAIL), so that cron wrappers and queues can tell \"try again \
later\" from \"give up\". msmtp exits 69 for 4xx replies and 74 for read timeouts.

0\tThe server accepted the message for every recipient.

64\tUsage error: bad option, -b mode other than m/i/p, no recipients, a recipient that is not an \
address (on the command line, or with -t in To/Cc/Bcc), -f with --read-envelope-from, a control \
character in -F, -f/-r or --domain.

65\tThe server refused the message or a recipient permanently (5xx).

66\tA file named in the configuration (trust file, client certificate) cannot be read.

68\tThe host name does not exist.

69\tThe server lacks something required (STARTTLS, AUTH, a mechanism, DSN), or its certificate \
failed verification.

70\tInternal error.

74\tLocal I/O error (temporary file).

75\tTemporary failure: a 4xx reply, a timeout, connection refused or reset, a temporary DNS failure. \
Nothing was delivered; try again later.

76\tProtocol error: malformed reply, or a TLS handshake failure (often implicit TLS against a \
STARTTLS port, or the reverse).

77\tAuthentication failed.

78\tConfiguration error: syntax, unknown account, missing envelope-from, insecure file permissions, \
a control character in from, from_full_name or domain (also when it comes from $USER or $HOSTNAME \
through %U or %H), an aliases entry that is not an address.",
    },
    Section {
        title: "CONFIGURATION FILE ORDER",
        body: "rsend and rfetch choose their configuration file by the same rule: the file named \
on the command line, else the program's classic rc file, else the native TOML file; the first \
that exists is read. For rsend:

1.\t-C FILE (--file): read as postie TOML when the name ends in .toml, else as an msmtprc.

2.\t~/.msmtprc, else $XDG_CONFIG_HOME/msmtp/config (default ~/.config/msmtp/config): msmtp's \
own files, found as msmtp finds them.

3.\t$XDG_CONFIG_HOME/postie/config.toml: the native file shared with rfetch.

The system file /etc/msmtprc is read in addition when readable, its accounts after the user's. \
msmtp's file comes before the TOML on purpose: rsend replaces msmtp, so a configuration that \
worked with msmtp keeps deciding where mail goes, and a TOML file written later (for rfetch, or \
by another tool) cannot silently take over. --version lists the files looked for and the one \
that would be read; -v and --pretend name the files read, and configuration errors name the \
file. When a file further down the list exists but is not read, rsend warns if no file was named \
with -C and the file is an msmtp file or a TOML file with sending accounts; otherwise it says so \
only with -v.",
    },
    Section {
        title: "FILES",
        body: "~/.msmtprc\tThe user configuration, read unchanged (if it exists; else \
$XDG_CONFIG_HOME/msmtp/config). Every msmtp directive is understood: defaults, account NAME : \
PARENTS, account default : NAME, eval, from wildcards, aliases, passwordeval.

/etc/msmtprc\tThe system configuration, read when readable; user accounts come first.

$XDG_CONFIG_HOME/postie/config.toml\tThe native TOML account file shared with rfetch; keys are \
msmtprc's names (host, port, tls, tls_starttls, tls_trust_file, tls_fingerprint, auth, user, \
password, passwordeval, from, ...). Read when neither msmtp user file exists, or with -C.

A configuration file that contains a password must belong to the user and must not be readable by \
group or others (run chmod 600 FILE); rsend refuses it otherwise, also when run as root.",
    },
    super::postie::PASSWORDS_SECTION,
    Section {
        title: "SECURITY",
        body: "TLS is verified against the system roots, or tls_trust_file, or a SHA-256 \
tls_fingerprint. With STARTTLS configured, a server that does not offer it is an error: there is \
no fallback to plaintext, and bytes the server sends between its STARTTLS go-ahead and the \
handshake are discarded. A password never crosses an unencrypted connection unless the user \
sets danger_plaintext_auth (or --danger-plaintext-auth); automatic authentication without TLS \
only uses SCRAM-SHA-256 and CRAM-MD5. Secrets are never written to logs or debug output: the \
protocol trace printed by -v/-d shows AUTH lines as <redacted>.

Values rsend writes into the message header or the SMTP envelope (the -F full name and \
from_full_name, the envelope-from address, the domain used for EHLO and Message-ID) are \
refused when they hold a control character (CR, LF, TAB, NUL, ESC, DEL): a line \
break there would add header lines of the caller's choosing. Non-ASCII full names are \
RFC 2047 encoded instead.

A line of the message ends at CRLF, at a bare LF or at a lone CR (a CR not followed by LF), for \
the header pass (-t, Bcc removal) and for what is sent alike; every line end goes out as CRLF. So \
\"Subject: x<CR>Bcc: y\" is two header lines, the Bcc is removed, and no server after rsend can \
read the message differently. msmtp sends lone CRs unchanged.",
    },
    Section {
        title: "DIFFERENCES FROM MSMTP",
        body: "-r is accepted as a synonym for -f (PHP and other callers pass it). Unknown -o and -O \
sendmail options produce a warning instead of an error. -bi (newaliases) and -bp (mailq) succeed \
with nothing to do; -bs and other modes are usage errors. Messages without a header/body separator \
(echo hello | rsend user@host) get one, so the text becomes the body. A leading mbox From_ line is \
dropped. Resent-Bcc is removed like Bcc. SIZE is declared and checked before sending, and \
BODY=8BITMIME / SMTPUTF8 are declared when the message needs them. Recipients given twice are sent \
once. Lines longer than 500 characters are allowed in msmtprc. A lone CR ends a line (see \
SECURITY). A recipient that is not an address (rsend 'not an address', or with -t a To: John Doe) \
is refused instead of being sent to notanaddress@localhost; local names without @ (root) are still \
qualified with the domain.",
    },
];

const RFETCH_SECTIONS: &[Section] = &[
    Section {
        title: "EXIT STATUS",
        body: "rfetch uses fetchmail's exit codes.

0\tOne or more messages were delivered (with -c: mail is waiting).

1\tNo mail.

2\tSocket or TLS error.

3\tAuthentication failed.

4\tProtocol error.

5\tSyntax error in the arguments or the configuration.

6\tThe rc file has insecure permissions.

7\tThe server reported an error, or timed out.

8\tAnother rfetch is running (lock file), or --quit found none.

9\tThe server reported the mailbox locked or busy.

10\tDelivery failed (SMTP/LMTP listener, MDA, Maildir or mbox).

11\tThe host name does not resolve.

13\tfetchlimit reached.

23\tInternal error.",
    },
    Section {
        title: "DELIVERY CONTRACT",
        body: "A message is deleted on the server (POP3 DELE, IMAP \\Deleted and EXPUNGE) only \
after its target confirmed it: the Maildir file was written, synced and renamed into new/ and the \
directory synced; the mbox was appended, synced and unlocked; the MDA exited 0; the SMTP or LMTP \
listener answered 250. A temporary failure (MDA exit 75, a 4xx reply, a full disk) leaves the \
message on the server for the next poll. The record of seen messages is written atomically, so an \
interrupted rfetch never loses mail and re-fetches at most the message that was in flight.

An mbox is locked with a dotlock (FILE.lock, holding the PID and host name), flock and fcntl, as \
mail readers and MDAs use any of them; a dotlock left by a process of this host that no longer \
exists is removed at once, and while a message is appended FILE.rfetch-append records the length \
before it, so that after a kill the next delivery cuts the partial message off. SIGTERM or SIGINT \
never cuts a delivery: an mbox append is rolled back, an MDA runs to its end (at most its 10-minute \
timeout), and that message is fetched again by the next run. In an mda command line, %F (sender) \
and %T (recipients) may stand in any quoting (%F, '%F', \"<%F>\", -f'%F'): the values reach the \
command as shell parameters, so nothing in them is ever run, whatever the quoting. A line that \
would hand them to a second parser (inside the string of sh -c or su -c, with eval, inside \
$((...))) is refused; pass them as arguments instead: sh -c 'procmail -f \"$1\"' sh %F.

Only two options delete messages that were not delivered in the same poll: flush (-F) deletes \
messages an earlier poll delivered (recorded as seen) and that are still on the server, also with \
keep; limitflush deletes messages larger than limit (-l) instead of leaving them. expunge N (-e N) \
paces the deletions: IMAP EXPUNGE after every N deletions (0: once per folder, at the end; default: \
once per batch of 100); POP3 QUIT, which commits the deletions, and a new session after every N.",
    },
    Section {
        title: "OUTPUT AND LOGGING",
        body: "As with fetchmail, each account or folder gets a summary line (\"10 messages (2 seen \
before) for bob at mail.example (23456 octets)\", or \"No mail for bob at mail.example\") and each \
message one line, e.g. \"message bob@mail.example:3 of 10 (2345 octets) delivered to \
/home/bob/Maildir (flushed)\" (\"not flushed\" with keep), on standard error; -s (--silent) keeps \
only errors, -v adds connection and daemon progress, -v -v the protocol trace. When standard error is a terminal a progress line per account (message n \
of N, octets) is updated in place and cleared when the account is done; when it is not a terminal \
(cron, systemd, a pipe) there is no progress output at all.

-L FILE (or set logfile FILE) appends every line from the info level up, also without -v, to \
FILE with a timestamp and the PID (\"2026-11-23 15:30:00+0000 rfetch[4242]: ...\"); the file is \
created with mode 600 if missing. --syslog (or set syslog) sends the same lines to syslog \
(LOG_MAIL) unless --nosyslog is given; a log file takes precedence over syslog, as in fetchmail. \
Passwords and the protocol trace never reach either.",
    },
    Section {
        title: "CONFIGURATION FILE ORDER",
        body: "rfetch and rsend choose their configuration file by the same rule: the file named \
on the command line, else the program's classic rc file, else the native TOML file; the first \
that exists is read. For rfetch:

1.\t-f FILE (--fetchmailrc), or -C FILE (--config) for a postie TOML file.

2.\t~/.fetchmailrc, or $FETCHMAILHOME/fetchmailrc when FETCHMAILHOME is set: fetchmail's own \
file.

3.\t$XDG_CONFIG_HOME/postie/config.toml (default ~/.config/postie/config.toml): the native file \
shared with rsend.

The fetchmailrc comes before the TOML on purpose: rfetch replaces fetchmail, so a configuration \
that worked with fetchmail (its mda, its smtphost) keeps deciding where mail is delivered, and a \
TOML file written later (for rsend, or by another tool) cannot silently send it to ~/Maildir \
instead. -v names the file read, -V prints it (\"Taking options from command line and FILE\"), \
--configdump starts with it, and configuration errors name it. When a file further down the list \
exists but is not read, rfetch warns if neither -f nor -C was given and the file is a fetchmailrc \
or a TOML file with fetching accounts; otherwise it says so only with -v.",
    },
    Section {
        title: "FILES",
        body: "~/.fetchmailrc\tThe fetchmail configuration, read unchanged ($FETCHMAILHOME/fetchmailrc \
when FETCHMAILHOME is set). It must not be readable by others when it holds a password (exit 6).

$XDG_CONFIG_HOME/postie/config.toml\tThe native TOML account file shared with rsend, read \
when no fetchmailrc exists, or with -C FILE. \
An account fetches when it has a [accounts.NAME.fetch] table: protocol (pop3 or imap, required), \
host, port, user, password, passwordeval and the tls_* keys (defaulting to the account's), \
folders, keep, fetchall, idle, one target (maildir = PATH, mbox = PATH, mda = [ARGV...], \
smtp = \"host:port\", lmtp = \"host:port\"; default ~/Maildir) and recipient = \"user@domain\", the \
RCPT TO address for smtp and lmtp targets (default $USER@localhost). fetchmail's per-poll options \
have the same names: limit, fetchlimit, batchlimit and expunge (whole numbers; 0 for limit and \
fetchlimit means none), limitflush and flush (booleans), idle_timeout (seconds) and force_idle \
(boolean). Unknown keys are errors.

~/.fetchmail.pid\tThe lock file: the PID on the first line and, in daemon mode, the interval on \
the second.",
    },
    super::postie::PASSWORDS_SECTION,
    Section {
        title: "DAEMON MODE AND IDLE",
        body: "With -d N (or set daemon N) every account runs on its own thread with its own \
schedule: it polls, then sleeps N seconds. A slow or hanging server never delays another account. \
After a temporary failure (connection refused or lost, timeout, a 4xx reply) the account retries \
after 30 seconds, doubling up to N; after a permanent one (login refused) it retries at the \
normal interval. A fetchmailrc poll with interval K is polled only every K-th cycle, i.e. \
every K times N seconds.

As in fetchmail, rfetch -d N detaches from the terminal: it starts a new session through a second \
process that is not the session leader, puts standard input and output on /dev/null, and the \
detached process takes the lock file (so the PID in it is the daemon's). The command returns only \
once the daemon runs, with exit status 0, or with the daemon's error and exit status (8 when \
another rfetch holds the lock). Log lines go to the log file (-L, set logfile) or syslog \
(--syslog, set syslog); without either the detached daemon logs nowhere, which rfetch warns \
about. -N (--nodetach) keeps it in the foreground, for systemd (Type=simple) and other \
supervisors. The working directory is kept, unlike fetchmail, so relative paths keep their \
meaning. A password rfetch would have to ask for cannot be asked for once detached: put it in \
the configuration (or use passwordeval), or use -N.

In daemon mode \"No mail for ...\" is logged only with -v, as in fetchmail (it would repeat \
every poll); the other summary and message lines are logged as in a single run.

SIGUSR1 wakes every account at once (kill -USR1 $(head -1 ~/.fetchmail.pid)). SIGTERM \
and SIGINT (and rfetch --quit) stop it: the batch in progress is finished or abandoned before \
anything unconfirmed is deleted, IDLE connections log out, and the lock file is removed. An \
account blocked in a network read is abandoned after 8 seconds.

With idle (fetchmailrc), --idle or idle = true (TOML), an IMAP account keeps its connection after \
a poll and waits in IDLE (RFC 2177); when the server announces new mail (EXISTS or RECENT) rfetch \
fetches it at once through the normal poll, then idles again. IDLE is re-issued every 28 minutes \
(idletimeout N). A server without the IDLE capability is checked with NOOP every 28 seconds, as \
fetchmail does, unless forceidle is set, which sends IDLE anyway. Each folder gets its own \
connection, and any number of accounts may idle. A lost connection is re-opened after 1 second, \
doubling up to 5 minutes; the loss and the recovery are logged once. As in fetchmail, an idling \
account keeps rfetch running even without -d, until a signal stops it. -c never idles.",
    },
    Section {
        title: "DIFFERENCES FROM FETCHMAIL",
        body: "rfetch pipelines POP3 and fetches IMAP messages with one UID FETCH, and is UID \
based throughout (IMAP UIDVALIDITY is honoured). The seen state is written per message, not at the \
end of a poll. MDA exit 75 is a temporary failure; other non-zero exits are permanent but the \
message is still kept. The exit code is 0 only when a message was delivered, not merely retrieved. \
Passwords never cross unencrypted connections unless --danger-plaintext-auth is given. In daemon \
mode all accounts are polled concurrently, each on its own schedule, and IDLE works for many \
accounts and folders at once. \
The log file is used in the foreground (-N, or without -d) too, is created when missing and \
has timestamps. For IMAP, flush deletes what rfetch delivered before, not every \\Seen message: a \
message another client marked read but rfetch never delivered is fetched, not flushed. With nokeep, \
a message rfetch delivered whose deletion did not reach the server (an interrupted run) is deleted \
at the next poll without flush. \
Multidrop (several local names, or *, for one server account) sorts each message by its envelope \
header (envelope; default Received's for clause), else Resent-To/Cc/Bcc or To/Cc/Bcc, matching \
domains against the poll name, via, aka and localdomains without DNS lookups (dns and checkalias \
are ignored; qvirtual is honoured), and forwards one copy over SMTP or LMTP with one RCPT TO per local user, or runs the mda once \
with %T expanded to every local name (each quoted); unmatched mail goes to the postmaster with an \
X-Fetchmail-Warning header. A temporary refusal of any recipient keeps the message on the server \
for the next poll; a permanent refusal of some is logged and the others keep their copy. \
A CR that is not followed by LF is delivered as it came (fetchmail drops it).",
    },
];

/// The rsend(1) page.
pub fn rsend_page() -> Vec<u8> {
    render(
        super::rsend_args::RsendArgs::command().name("rsend"),
        RSEND_SECTIONS,
    )
}

/// The rfetch(1) page.
pub fn rfetch_page() -> Vec<u8> {
    render(
        super::rfetch_args::RfetchArgs::command().name("rfetch"),
        RFETCH_SECTIONS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Env;
    use crate::config::discover::{Program, table};

    /// The man pages state the order `config::discover` applies: every file of the table
    /// appears in the CONFIGURATION FILE ORDER section, in the table's order.
    #[test]
    fn man_pages_state_the_discovery_order() {
        let env = Env {
            home: Some("~".into()),
            xdg_config_home: Some("$XDG_CONFIG_HOME".into()),
            ..Env::default()
        };
        for (program, sections) in [
            (Program::Rsend, RSEND_SECTIONS),
            (Program::Rfetch, RFETCH_SECTIONS),
        ] {
            let body = sections
                .iter()
                .find(|s| s.title == "CONFIGURATION FILE ORDER")
                .map(|s| s.body)
                .unwrap_or_default();
            let mut from = 0;
            for c in table(program, &env, None) {
                let name = c.path.display().to_string();
                let at = body[from..]
                    .find(&name)
                    .unwrap_or_else(|| panic!("{program:?}: {name} missing or out of order"));
                from += at + name.len();
            }
        }
    }
}
