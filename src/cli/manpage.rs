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

/// The section rsend(1) and rfetch(1) share: where passwords and OAuth2 tokens come from.
const PASSWORDS_SECTION: Section = Section {
    title: "PASSWORDS, THE KEYRING AND OAUTH2",
    body: "The password comes from password, passwordeval or passwordkeyring; without any of them from the system keyring under msmtp's attributes (host, service smtp for sending, pop3 or imap for fetching, user), then ~/.netrc and /etc/netrc, then a prompt on the terminal. A password stored for msmtp with secret-tool is found unchanged. passwordkeyring on (or NAME=VALUE attributes; in TOML also password = { keyring = true } or { keyring = \"NAME=VALUE ...\" }, and password = { eval = \"command\" } for passwordeval) uses only the keyring; postie keyring store puts a password there.

With oauth_provider (google, microsoft or generic) and oauth_client_id the account logs in with OAuth2 (XOAUTH2 or OAUTHBEARER) using access tokens that postie refreshes by itself; authorize once with postie oauth login. See postie(1) for the settings, the authorization flows and how to register a client with Google or Microsoft.",
};

/// A page without generated sections (postie(1)).
pub(crate) fn render(cmd: clap::Command, sections: &[Section]) -> Vec<u8> {
    render_with(cmd, sections, &[])
}

/// A section 1 page: clap's sections, the hand-written ones, then the generated ones.
fn render_with(cmd: clap::Command, sections: &[Section], generated: &[(&str, String)]) -> Vec<u8> {
    let man = Man::new(cmd);
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);
    let _ = man.render_options_section(&mut out);
    render_sections(&mut out, sections);
    render_titled(&mut out, generated.iter().map(|(t, b)| (*t, b.as_str())));
    let _ = man.render_version_section(&mut out);
    out
}

fn render_sections(out: &mut Vec<u8>, sections: &[Section]) {
    render_titled(out, sections.iter().map(|s| (s.title, s.body)));
}

/// Renders (title, body) sections; the body written as [`Section`] describes.
fn render_titled<'a>(out: &mut Vec<u8>, sections: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (title, body) in sections {
        out.extend_from_slice(format!(".SH \"{title}\"\n").as_bytes());
        if title == "EXAMPLE" {
            // a file's text: lines as written, not filled into paragraphs
            out.extend_from_slice(format!(".nf\n{}\n.fi\n", escape(body.trim())).as_bytes());
            continue;
        }
        for para in body.split("\n\n") {
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
}

/// A section 5 page (a file format): title, NAME line, then the hand-written sections.
fn render_file_page(name: &str, summary: &str, sections: &[Section]) -> Vec<u8> {
    let mut out = file_page_head(name, summary);
    render_sections(&mut out, sections);
    out
}

fn file_page_head(name: &str, summary: &str) -> Vec<u8> {
    let version = env!("CARGO_PKG_VERSION");
    format!(
        ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH {name} 5 \"\" \"postie {version}\" \"File Formats\"\n.SH NAME\n{} \\- {}\n",
        escape(name),
        escape(summary)
    )
    .into_bytes()
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

0\tThe server accepted the message for every recipient, or the message is safely in the queue \
(see QUEUE). For -q: every message tried was sent or waits for its next attempt.

64\tUsage error: bad option, -b mode other than m/i/p, no recipients, a recipient that is not an \
address (on the command line, or with -t in To/Cc/Bcc), -f with --read-envelope-from, a control \
character in -F, -f/-r or --domain.

65\tThe server refused the message or a recipient permanently (5xx). For -q: a queued message is \
held (too old, or refused) or cannot be read.

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

queue, queue_dir, queue_max_age\tpostie extensions (msmtp rejects them), in an account or in \
defaults, in msmtprc and TOML alike: queue off|transient|always (see QUEUE), queue_dir DIR \
(default $XDG_STATE_HOME/postie/queue, else ~/.local/state/postie/queue), queue_max_age 5d (s, m, \
h or d).

A configuration file that contains a password must belong to the user and must not be readable by \
group or others (run chmod 600 FILE); rsend refuses it otherwise, also when run as root. A file \
with eval or passwordeval lines must belong to the user (or root) and must not be writable by \
group or others (run chmod go-w FILE). Both rules are checked before any eval line runs. A \
~/.netrc that holds a password must be mode 600 as well (/etc/netrc is exempt). eval and \
passwordeval commands get 120 s and 64 KiB of output.",
    },
    Section {
        title: "QUEUE",
        body: "rsend can keep a message it could not send in a durable queue instead of failing. \
--queue-on-failure (or queue transient in the configuration) queues it after a temporary failure \
(connection refused or reset, timeout, temporary DNS failure, a 4xx reply): rsend then exits 0 \
once the message is safely on disk and logs that it was queued. A permanent refusal (5xx) is never \
queued: the caller gets the error and exit code as without a queue. The sendmail delivery modes \
select the rest: -odi delivers now (the default; with queue transient or always configured, a \
temporary failure is still queued, so cron's mail is kept), -odq queues without trying, -odb \
queues and starts a flush in the background (as queue always does).

rsend -q sends every queued message that is not held, now; -q --due-only only those whose retry \
time has come (what the systemd timer runs); -q --flush-id ID one message, even a held one. \
rsend -bp (or rsend called as mailq) lists the queue: id, size, age, sender, recipients and the \
last error. rsend --queue-remove ID removes a message. These three use --queue-dir, else the \
queue_dir of the account -a names (or of the default account), else the default directory: set \
queue_dir in defaults when you set it at all. The queue directory must be yours and mode 0700. \
After every successful send rsend starts a \
background flush when messages are waiting.

Each message is one file: its envelope (sender, recipients, account, configuration file, the \
command-line settings), the message as it goes on the wire, and the message's SHA-256. It is \
written under tmp/, renamed into the queue directory, and the file and the directory are fsynced \
before rsend returns (after the rename, so that one journal commit carries both); a file that a \
crash left incomplete fails its length or checksum check and is never sent. The directory is mode \
0700 and the files 0600. A flush claims each message with flock(2), so two flushers never send the \
same message and the claim of a killed flusher disappears with it; a message is removed only after \
the relay accepted it, so a flush killed at any moment loses nothing and sends again at most the \
message that was in flight. A file in the queue that is not a queued message, or whose envelope or \
length is wrong, is reported by every flush and by -bp and never sent.

A failed attempt is retried after 1, 2, 4 ... minutes, at most an hour apart. A message older than \
queue_max_age (default 5d), or refused permanently during a flush, is held: kept in the queue, \
listed by -bp, reported by every flush (which then exits 65), and sent again only by \
-q --flush-id. It is not returned to the sender as a bounce: rsend has no local mailbox to deliver \
one to, a bounce sent through the relay that keeps failing would fail the same way, and deleting \
the message would lose it; removing it is your decision (--queue-remove).

rsend -q exits 0 when every message was sent or waits for its next attempt, 65 when a message is \
held or unreadable.

Systemd user units flush the queue by themselves: a timer (every 5 minutes, rsend -q \
--due-only) and a path unit that flushes when a message is queued. rsend --install-units writes \
them to $XDG_CONFIG_HOME/systemd/user for this rsend binary and its queue directory; then run \
systemctl --user daemon-reload; systemctl --user enable --now rsend-queue.timer rsend-queue.path. \
make install and the Debian package install the same units (from contrib/systemd) for the \
installed rsend and the default queue.",
    },
    PASSWORDS_SECTION,
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
sendmail options produce a warning instead of an error. -bi (newaliases) succeeds with nothing to \
do; -bp (mailq) lists rsend's queue (see QUEUE), which msmtp does not have; -bs speaks SMTP on \
standard input and output (as sendmail and dma do) and relays each message; other modes are \
usage errors. Messages without a header/body separator \
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
message on the server for the next poll. Each message is recorded as seen the moment its target \
confirmed it (Maildir: its batch, through a journal; the others: one line appended to \
STATEFILE.seen-log, replayed by the next run) and the state file itself is rewritten atomically \
and synced once per batch of 100, so an interrupted rfetch (SIGKILL, a crash) never loses mail \
and delivers again at most the message that was in flight; a power loss can in addition repeat \
the messages of the batch whose state was not yet synced.

Multidrop forwarding over SMTP or LMTP sends one copy with one RCPT TO per local user. When some \
recipients take it and others refuse it (at RCPT, or with LMTP after the data), the message is \
not counted delivered: it stays on the server and the recipients already served are recorded \
with it in the seen state; the next poll sends it to the remaining recipients only, and deletes \
it once they have it. A refusal for good is a failure of the poll, as for a message with one \
recipient: with softbounce the message stays, with no softbounce the refusal is reported to the \
sender for the refused recipients only and the message is then deleted. A recipient refused \
with an antispam code counts as served (that copy is discarded). fetchmail sends a message some \
recipients refused temporarily again to every recipient, and bounces a refusal for good of some \
recipients whatever softbounce says.

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
once per 1000 and at the end of the folder, each batch of 100 flagged \\Deleted as soon as it is \
delivered; with fetchall, which ignores the seen state, once per batch; fetchmail's default is 1); POP3 QUIT, which commits the deletions, and a new session after every N. \
Messages a run delivered but could not delete (it was killed or lost its connection before POP3's \
QUIT) are recorded as seen and deleted without being fetched again by the next run; over POP3 \
it commits those deletions with QUIT first and fetches new mail in a new session.

A POP3 server deletes messages only at QUIT, and answers QUIT once it has deleted them (with 1000 \
messages about as long as sending them took). rfetch sends QUIT at the end of a poll and closes \
without waiting for that answer: every DELE goes out only after the message's seen state is \
recorded, so a QUIT the server does not act on loses nothing and fetches nothing twice; the next \
run deletes those messages without fetching them. Unlike fetchmail, whose success means the \
server confirmed the deletions, exit status 0 therefore does not say that the server has deleted \
the messages (they may still be being deleted as rfetch exits). rfetch does this only in a \
one-shot run and for an account that is alone on its server in that run; it waits for the \
answer in the daemon (the next poll is minutes away, and a failed QUIT gets its log line), when \
several accounts of the run share the server (until the server has finished deleting it still \
counts the session against max_connections), when the poll continues in another session \
(expunge N, or a backlog committed first) and with fetchall, which ignores the seen state. A server that allows one POP3 session per mailbox at a \
time may refuse a run started the moment the previous one exits, until it has finished deleting. \
Over IMAP rfetch waits for the completion of its last EXPUNGE and of LOGOUT.",
    },
    Section {
        title: "OUTPUT AND LOGGING",
        body: "As with fetchmail, each account or folder gets a summary line (\"10 messages (2 seen \
before) for bob at mail.example (23456 octets)\", or \"No mail for bob at mail.example\") and each \
message one line, e.g. \"message bob@mail.example:3 of 10 (2345 octets) delivered to \
/home/bob/Maildir (flushed)\" (\"not flushed\" with keep), on standard error; -s (--silent) keeps \
only errors, -v adds connection and daemon progress, -v -v the protocol trace. When standard \
error is a terminal a progress line per account or folder (\"bob@mail.example: 37 of 500 \
delivered (45 fetched)\") is updated in place and cleared when the account is done: it counts a \
message delivered once the target confirmed it and rfetch recorded it, and shows apart how many \
were fetched, which runs ahead; the per-message lines are then shown only with -v (they still go \
to the log file and syslog). When standard error is not a terminal (cron, systemd, a pipe) there \
is no progress output at all and the per-message lines are shown.

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
when FETCHMAILHOME is set). As in fetchmail it must belong to you and have no group or other \
permissions, whatever it holds (exit 6; run chmod 600 FILE). The TOML file follows rsend's rules: \
not readable by others when it holds a password, not writable by others when it holds \
passwordeval or mda. A ~/.netrc that holds a password must be mode 600 too. All of this is \
checked before any command from the file runs; a passwordeval command gets 120 s and 64 KiB of \
output. Durations (set daemon, timeout, idletimeout, interval, -d, -t) are at most 2147483647 s.

$XDG_CONFIG_HOME/postie/config.toml\tThe native TOML account file shared with rsend, read \
when no fetchmailrc exists, or with -C FILE. \
An account fetches when it has a [accounts.NAME.fetch] table: protocol (pop3 or imap, required), \
host, port, user, password, passwordeval and the tls_* keys (defaulting to the account's), \
folders, keep, fetchall, idle, one target (maildir = PATH, mbox = PATH, mda = [ARGV...], \
smtp = \"host:port\", lmtp = \"host:port\"; default ~/Maildir) and recipient = \"user@domain\", the \
RCPT TO address for smtp and lmtp targets (default $USER@localhost). fetchmail's per-poll options \
have the same names: limit, fetchlimit, batchlimit and expunge (whole numbers; 0 for limit and \
fetchlimit means none), limitflush and flush (booleans), idle_timeout (seconds) and force_idle \
(boolean), and rfetch's own max_connections (simultaneous polls on one server, default 8). \
Unknown keys are errors.

~/.fetchmail.pid\tThe lock file: the PID on the first line and, in daemon mode, the interval on \
the second. rfetch holds a flock(2) on it while it runs, so a lock file left by a killed instance \
is taken over and a running instance's lock is never removed by another.",
    },
    PASSWORDS_SECTION,
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

SIGUSR1 wakes every account at once (kill -USR1 $(head -1 ~/.fetchmail.pid)). As in \
fetchmail, running rfetch while a daemon runs does the same: it sends the daemon SIGUSR1, prints \
\"background rfetch at PID awakened\" and exits 0, when it was given nothing but -v, -s, -f, -C \
and --pidfile; server names or other options, which the daemon would not apply, are refused with \
exit status 8 (rfetch --quit stops the daemon). SIGHUP wakes the daemon too (fetchmail does so \
when run as root, and otherwise dies of it). An account whose poll crashed (an internal error) is \
logged, and the daemon stops with exit status 23 so that a supervisor notices. SIGTERM \
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
        title: "SCALING OUT",
        body: "One rfetch polls all its accounts side by side. To spread accounts over several \
processes or machines, run one instance of the systemd template unit rfetch@.service per set of \
accounts: rfetch@NAME reads ~/.config/postie/NAME.fetchmailrc and has its own lock \
($XDG_RUNTIME_DIR/rfetch-NAME.pid) and seen state (~/.config/postie/NAME.fetchids), so \
instances never share state and never wait for each other; a second start of the same instance \
exits 8. Each mailbox (server, user, folder) must be in exactly one instance's file: two \
instances polling one mailbox would both deliver its messages. Let every instance deliver over \
LMTP or SMTP (lmtp smtphost HOST/PORT, smtphost HOST/PORT) into the MTA or Dovecot that owns \
the mailboxes; it confirms each message before rfetch deletes it on the server, whichever machine \
the instance runs on. To move an account, stop both instances and move its poll entry (with \
keep, also its lines in the .fetchids file). The repository's docs/scaling-out.md has the \
details.",
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
X-Fetchmail-Warning header. A refusal of some recipients keeps the message on the server (a \
refusal for good only with softbounce; without, it is reported), and the next poll sends it to \
those recipients only (see DELIVERY CONTRACT). \
A CR that is not followed by LF is delivered as it came (fetchmail drops it).",
    },
];

const POSTIE_TOML_SECTIONS: &[Section] = &[
    Section {
        title: "SYNOPSIS",
        body: "$XDG_CONFIG_HOME/postie/config.toml (default ~/.config/postie/config.toml), or the \
file named with rsend -C FILE.toml or rfetch -C FILE.",
    },
    Section {
        title: "DESCRIPTION",
        body: "postie's native account file, shared by rsend(1) and rfetch(1). It is read when \
the program's classic file (~/.msmtprc or msmtp/config for rsend, ~/.fetchmailrc for rfetch) does \
not exist, or when named with -C. The key names are msmtprc's, so a key means the same in both \
files: tls_starttls = false is tls_starttls off. Values are TOML strings, integers or booleans \
(true/false, or \"on\"/\"off\"). A key that is not listed here is an error naming the file, line \
and column, and the keys that are allowed there.

The file has three kinds of tables:

default_account\tThe account rsend uses without -a (a top-level string). Without it, the \
account named default.

[defaults]\tAny account key; applies to every account that does not set it.

[accounts.NAME]\tOne account: the sending keys below. rsend -a NAME selects it.

[accounts.NAME.fetch]\tMakes the account one rfetch polls (rfetch NAME polls it alone). It \
inherits host, user, password, passwordeval, source_ip, timeout, danger_plaintext_auth and the \
tls_* keys except tls_starttls from its account, but not port, auth or tls_starttls, which differ \
between SMTP and POP3/IMAP.

Unlike msmtprc, tls defaults to on in this file: a new format has no compatibility reason to \
start insecure.",
    },
    Section {
        title: "SERVER KEYS (ACCOUNTS AND FETCH TABLES)",
        body: "host\tThe server's name or address.

port\tThe port; by default 465 with implicit TLS or 25 for SMTP (never 587, as in msmtp), 995 \
or 110 for POP3, 993 or 143 for IMAP.

source_ip\tThe local address to connect from.

timeout\tNetwork timeout in seconds, or off.

auth\tOn (automatic choice), off, or a method: plain, login, cram-md5, scram-sha-256, xoauth2, \
oauthbearer. Automatic choice never picks a plaintext method without TLS.

user, password, passwordeval\tThe login. passwordeval is a command whose output is the \
password; a file with password must be mode 600 (see PERMISSIONS).

tls, tls_starttls\tTLS on or off; STARTTLS (true) or implicit TLS from the first byte (false).

tls_trust_file\tCA certificates to trust (PEM); \"system\" for the system store (the default).

tls_fingerprint\tTrust exactly the certificate with this SHA-256 fingerprint (hex, colons \
optional). A SHA-1 or MD5 fingerprint is checked too, with a warning giving the SHA-256 to pin \
instead.

tls_certcheck\tfalse disables certificate verification (dangerous).

tls_key_file, tls_cert_file\tA client certificate and its key.

tls_host_override\tThe name the certificate is checked against instead of host.

danger_plaintext_auth\tAllow a password over an unencrypted connection.

passwordkeyring\tTake the password from the system keyring (Secret Service, through \
secret-tool): on for msmtp's attributes (host, service, user), or attribute pairs \
(\"service=imap user=joe\"). password = { keyring = true } and password = { eval = \"COMMAND\" } \
are the same as passwordkeyring and passwordeval. Without any password setting the keyring is \
asked before ~/.netrc and the prompt, as msmtp does.

oauth_provider, oauth_client_id, oauth_client_secret, oauth_client_secret_eval, oauth_scope, \
oauth_authorize_url, oauth_token_url, oauth_device_url, oauth_tenant, oauth_token_file, \
oauth_token_store\tLog in with OAuth2 access tokens that postie obtains and refreshes itself: \
oauth_provider google, microsoft or generic (then the endpoints and scope are needed), your \
application's client id and secret, the Microsoft tenant, where the tokens are kept (a 0600 file, \
default under ~/.local/state/postie/oauth, or keyring). The mechanism is XOAUTH2 (Google, \
Microsoft) or OAUTHBEARER (generic) unless auth names one. Authorize once with postie oauth \
login; see postie(1).

proxy_host, proxy_port, proxy_user, proxy_password\tConnect through this SOCKS5 proxy (port \
1080 by default); the proxy resolves the server's name, so no DNS query leaves this machine for \
it. A proxy that cannot be reached is an error, never a direct connection. A fetch table inherits \
the proxy of its account.",
    },
    Section {
        title: "SENDING KEYS (ACCOUNTS, FOR RSEND)",
        body: "protocol\tsmtp (default) or lmtp.

socket\tA local socket to connect to instead of host and port.

domain\tThe argument of EHLO/LHLO.

from\tThe envelope-from address (%U, %H, %C, %M as in msmtp); with wildcards, the account rsend \
picks for -f.

from_full_name\tThe name of an added From header.

allow_from_override\tWhether -f and -F may replace from and from_full_name (default true).

dsn_notify, dsn_return\tDelivery status notifications, as with -N and -R.

set_from_header, set_date_header, set_msgid_header, set_to_header, remove_bcc_headers\tThe header \
changes rsend makes, as the options of the same names.

logfile, logfile_time_format, syslog\tmsmtp's log line per message: a file, its time format, or \
syslog (on, off or a facility).

aliases\tA file of local aliases (name: address, ...) for recipients without @.

queue, queue_dir, queue_max_age\trsend's queue: off (default), transient (queue after a \
temporary failure) or always; its directory (default $XDG_STATE_HOME/postie/queue); how long a \
message is retried before it is held (default 5d). See rsend(1), QUEUE.",
    },
    Section {
        title: "FETCHING KEYS ([accounts.NAME.fetch], FOR RFETCH)",
        body: "protocol\tpop3 or imap; required.

folders\tIMAP folders to poll, a list (default [\"INBOX\"]).

maildir, mbox, mda, smtp, lmtp\tThe one delivery target: maildir = \"~/Maildir\" (the default), \
mbox = \"PATH\", mda = [\"procmail\", \"-d\", \"%T\"] (an argument list, no shell), smtp = \
\"host:port\" or lmtp = \"host:port\" (a local MTA or LDA).

recipient\tThe RCPT TO address for smtp and lmtp targets (default $USER@localhost).

keep, fetchall\tLeave messages on the server; fetch messages seen before too (booleans).

idle, idle_timeout, force_idle\tIMAP IDLE after the poll; re-issue it after idle_timeout \
seconds (default 1680); use IDLE even when the server does not announce it.

limit, fetchlimit, batchlimit, expunge\tfetchmail's per-poll numbers (0 for limit and \
fetchlimit means none).

limitflush, flush\tDelete messages over limit; delete messages an earlier poll delivered.

max_connections\tAt most this many logins and polls at once on this account's server (its \
host), shared by every account of that server, the smallest value set winning (default 8; \
providers limit simultaneous connections). Accounts beyond it wait their turn, first come \
first served. An IDLE account holds a slot only while it logs in or fetches, not while it \
waits. fetchmailrc has no such keyword: a fetchmailrc's polls get the default.",
    },
    Section {
        title: "PERMISSIONS",
        body: "A file that contains a password must belong to the user and must not be readable \
by group or others (chmod 600 FILE); rsend and rfetch refuse it otherwise. passwordeval keeps the \
password out of the file.",
    },
    Section {
        title: "EXAMPLE",
        body: "default_account = \"work\"

[accounts.work]
host = \"mail.example.org\"
port = 587
user = \"alice\"
passwordeval = \"pass show mail/work\"
from = \"alice@example.org\"

[accounts.work.fetch]
protocol = \"imap\"
maildir = \"~/Maildir\"
idle = true",
    },
    Section {
        title: "SEE ALSO",
        body: "rsend(1), rfetch(1), postie-msmtprc(5), postie-fetchmailrc(5)",
    },
];

const POSTIE_MSMTPRC_SECTIONS: &[Section] = &[
    Section {
        title: "SYNOPSIS",
        body: "~/.msmtprc, else $XDG_CONFIG_HOME/msmtp/config (default ~/.config/msmtp/config), \
or the file named with rsend -C FILE; and /etc/msmtprc.",
    },
    Section {
        title: "DESCRIPTION",
        body: "rsend(1) reads msmtp's configuration files unchanged: msmtp's syntax (one \
\"directive argument\" per line, # comments, double quotes, ~ for the home directory), defaults, \
account NAME and account NAME : PARENT[,PARENT...] inheritance, account default : NAME, and eval \
COMMAND (the command's output is read as configuration lines). The system file /etc/msmtprc is \
read as well when readable; the user file's accounts come first. See rsend(1), CONFIGURATION FILE \
ORDER, for which file is read when several exist.

These msmtp directives are understood, with msmtp's meaning: host, port, source_ip, timeout (and \
connect_timeout), protocol, domain, auth, user, password, passwordeval, tls, tls_starttls, \
tls_nostarttls, tls_trust_file, tls_fingerprint, tls_certcheck, tls_nocertcheck, tls_key_file, \
tls_cert_file, tls_host_override, socket, proxy_host and proxy_port (a SOCKS5 proxy that \
resolves the server's name itself; a proxy that cannot be reached is an error, never a direct \
connection), from (with its wildcards and %U %H %C %M), \
from_full_name, allow_from_override, dsn_notify, dsn_return, set_from_header, set_date_header, \
set_msgid_header, set_to_header, remove_bcc_headers, logfile, logfile_time_format, syslog, \
aliases. These are postie's own: danger_plaintext_auth allows a password over an unencrypted \
connection, which rsend otherwise refuses; proxy_user and proxy_password authenticate to the SOCKS5 \
proxy (RFC 1929; proxy_password makes the file a secret file); queue, queue_dir and \
queue_max_age set up rsend's queue (see rsend(1), QUEUE). tls_fingerprint is best a SHA-256 \
fingerprint (32 hex pairs); msmtp's deprecated SHA-1 (20) and MD5 (16) forms are checked too, \
with a warning, because both digests can be forged: when the server's certificate matches, the \
warning gives its SHA-256 to put in their place.",
    },
    Section {
        title: "DIFFERENCES FROM MSMTP",
        body: "Lines longer than 500 characters are accepted (msmtp refuses them, which bites \
pasted OAuth tokens). A file that contains a password must belong to the user and must not be \
readable by group or others; rsend refuses it otherwise, also when run as root. Values rsend \
writes into a header or the envelope (from, from_full_name, domain) are refused when they hold a \
control character.",
    },
    Section {
        title: "SEE ALSO",
        body: "rsend(1), postie.toml(5), msmtp(1)",
    },
];

const POSTIE_FETCHMAILRC_SECTIONS: &[Section] = &[
    Section {
        title: "SYNOPSIS",
        body: "~/.fetchmailrc, or $FETCHMAILHOME/fetchmailrc when FETCHMAILHOME is set, or the \
file named with rfetch -f FILE (- for standard input).",
    },
    Section {
        title: "DESCRIPTION",
        body: "rfetch(1) reads fetchmail's run control file unchanged: fetchmail 6.4's grammar \
(set, defaults, poll and skip records, server options before the user part, user ... is ... here \
mappings, noise words such as and, with, has, wants, options) and the keywords fetchmail 6.5 and \
7.0 added. rfetch --configdump prints the file as understood; rfetch -V describes every poll. \
Relative paths in logfile, idfile, pidfile, bsmtp, sslkey, sslcert, sslcertfile, sslcertpath \
and passwordfile are taken relative to the file's directory, as fetchmail does.

A word that is not a fetchmailrc keyword is an error naming the file, line and word.",
    },
    Section {
        title: "WHAT RFETCH DOES WITH IT",
        body: "Protocols: pop3 and apop (POP3), imap; auto, or no protocol, means IMAP (rfetch \
does not probe). pop2, rpop, kpop, sdps, etrn and odmr are configuration errors.

TLS: ssl means implicit TLS; without it rfetch requires STARTTLS (IMAP) or STLS (POP3) and never \
falls back to plaintext, where fetchmail 6.4 tries it opportunistically. sslcertck, sslcertfile, \
sslcertpath (a directory as c_rehash makes it: the CA certificates of every file in it are \
trusted, and a directory holding none is an error; it cannot be combined with sslcertfile), \
sslcommonname, sslfingerprint, sslcert and sslkey (a client certificate) apply; sslfingerprint \
is best a SHA-256 fingerprint (32 hex pairs); fetchmail's MD5 (16) and SHA-1 (20) forms are \
checked too, with a warning, because both digests can be forged: when the server's certificate \
matches, the warning (once per server in a daemon) gives its SHA-256 to put in their place. fetchmail 7's sslmode wrapped is \
ssl; starttls=must and starttls=may both require STARTTLS. sslproto and sslprotocolversion values \
whose floor TLS 1.2 meets (auto, tls1+, tls1.1+, tls1.2+, tls1.2, the empty value) are accepted.

Authentication: the auth keyword is read (kerberos_v4, kerberos_v5, otp and msn with a warning), \
but rfetch chooses the method itself, as auth any does: the strongest the server offers of those \
rfetch -V lists. A password needs an encrypted connection unless --danger-plaintext-auth is \
given. password, passwordeval and passwordfile (the file's first line, read at each poll; \
the file must be the user's and not readable by group or others, else the poll is refused with \
the chmod 600 to run) are honoured.

Delivery: mda (run by /bin/sh, with fetchmail's %T and %F, each quoted), smtphost (host/port; \
with lmtp, LMTP; of a list, each host is tried in turn for every new session until one \
answers, as fetchmail does: a host that cannot be reached or refuses the session passes to the \
next), and otherwise SMTP to localhost port 25, as in fetchmail. A message is deleted \
on the server only after its target confirmed it.

antispam CODES (-Z): a listener's refusal with one of these reply codes at MAIL FROM, at RCPT TO \
(every recipient) or after the data (LMTP) means spam: the message is deleted on the server and \
not delivered, with a warning naming the reply, as fetchmail does (never bounced; rfetch has no \
default list, and antispam -1 means none). A temporary (4xx) refusal keeps the message unless \
its code is listed; any other refusal keeps it on the server.

Line ends and header fields: an mda gets LF line ends (stripcr, fetchmail's default for an mda); \
with no stripcr it gets them as the server sent them, and with no stripcr and forcecr every line \
ends in CRLF (stripcr wins over forcecr, as in fetchmail). SMTP and LMTP always carry CRLF line \
ends, as the protocols require, whatever stripcr says (what forcecr asks for). rfetch declares \
BODY=8BITMIME to a listener that offers 8BITMIME for every message (what pass8bits asks for); \
no pass8bits is accepted with a warning naming it: fetchmail would then declare BODY=7BIT for a \
message whose header says 7bit, which BODY=8BITMIME covers as well. \
dropstatus leaves the Status: and X-Mozilla-Status: fields out of the header, dropdelivered the \
Delivered-To: fields (with their continuation lines; the body is never changed), for every \
target.

Commands: plugin CMD (--plugin) talks to the server through the standard input and output of \
CMD, run by /bin/sh, instead of connecting; plugout CMD (--plugout) does the same for the SMTP \
or LMTP listener. %h is the host and %p the port, passed to the shell as values (quoted, \
whatever quoting surrounds them), so no host name is ever parsed as shell code; a command that \
would hand them to a second shell (sh -c '... %h', eval) is refused. rfetch cannot see whether \
the command encrypts, so its own rules apply through it: ssl runs TLS through the command (e.g. \
plugin \"socat - TCP:%h:%p\" with ssl, the certificate verified as usual), otherwise STARTTLS is \
required, and a password is never sent over a plugin without rfetch's own TLS (the far end is a \
process, not a loopback address) unless --danger-plaintext-auth is given. A command that does \
TLS itself (openssl s_client) therefore gives rfetch a cleartext stream: use socat and ssl \
instead. With auth ssh (the command is the login, e.g. plugin \"ssh %h /usr/sbin/imapd\" \
answering PREAUTH) no password is looked for or sent and STARTTLS is not required. The command, \
and what it started, is ended 2 seconds after the connection closed if it did not exit by \
itself. preconnect CMD runs before each poll connects; when it fails the poll is abandoned with \
an error (exit status 5, as fetchmail). postconnect CMD runs after each poll that got past \
preconnect, whatever its outcome; a failure is that poll's error. Both run through /bin/sh with \
at most 5 minutes each.

Multidrop: several local names or * for one server account, sorted by envelope, Resent-To/Cc/Bcc \
or To/Cc/Bcc against the poll name, via, aka and localdomains (qvirtual honoured) without DNS \
lookups; unmatched mail goes to set postmaster.

Refused mail: with set softbounce (the default, as in fetchmail 6.4, and --softbounce) a message \
the SMTP or LMTP listener refuses, for good (5xx) or not, stays on the server for the next poll. \
With set no softbounce (--nosoftbounce) a permanent refusal is reported: a delivery status \
notification (RFC 3464 multipart/report with the refused message's header, from the null sender) \
goes through the same listener (and plugout) to the message's sender, or with set no bouncemail \
(--nobounce) to set postmaster (--postmaster; qualified with smtpaddress when it is a bare name); \
a message without a usable sender, such as a bounce, is reported to the postmaster. The message is \
deleted only once that report was accepted; when the report is refused as well, or the \
postmaster is empty, it stays on the server (fetchmail deletes it anyway, sends its bounce to \
localhost port 25 whatever the smtphost, and never reports a 553). An MDA's failure is never \
reported, as in fetchmail: the message stays. set spambounce is accepted with a warning.

Global options honoured: set daemon, set logfile, set syslog, set idfile, set pidfile, set \
invisible, set postmaster, set softbounce and set bouncemail; set properties is read and \
shown by --configdump, as fetchmail does nothing else with it either.",
    },
    Section {
        title: "PERMISSIONS",
        body: "A fetchmailrc that holds a password must not be readable by others; rfetch exits 6 \
otherwise, as fetchmail does.",
    },
    Section {
        title: "SEE ALSO",
        body: "rfetch(1), postie.toml(5), fetchmail(1)",
    },
];

/// The postie.toml(5) page: the native account file.
pub fn postie_toml_page() -> Vec<u8> {
    render_file_page(
        "postie.toml",
        "the native account file of rsend and rfetch",
        POSTIE_TOML_SECTIONS,
    )
}

/// The postie-msmtprc(5) page: what rsend reads of msmtp's files.
/// The warned and refused directives are listed from the table the reader uses.
pub fn postie_msmtprc_page() -> Vec<u8> {
    use crate::config::msmtprc::{MSMTPRC_DIRECTIVES, Support};
    let mut out = file_page_head(
        "postie-msmtprc",
        "what rsend reads of msmtp's configuration files",
    );
    let mut warned = String::from(
        "These are read without error and reported as a warning naming the file, the line and \
what rsend does instead. tls_force_sslv3 is ignored silently, as msmtp does. Any other unknown \
word is an error naming the file and line.",
    );
    let mut refused = String::from(
        "A file using one of these is an error naming the file, the line and why: ignoring it \
would weaken the connection's protection or change the sender.",
    );
    for (name, support) in MSMTPRC_DIRECTIVES {
        match support {
            Support::Warned(instead) => warned.push_str(&format!("\n\n{name}\t{instead}.")),
            Support::Refused(why) => refused.push_str(&format!("\n\n{name}\t{why}.")),
            Support::Implemented => {}
        }
    }
    let (head, tail) = POSTIE_MSMTPRC_SECTIONS.split_at(2);
    render_sections(&mut out, head);
    render_titled(
        &mut out,
        [
            ("DIRECTIVES ACCEPTED BUT IGNORED", warned.as_str()),
            ("DIRECTIVES REFUSED", refused.as_str()),
        ],
    );
    render_sections(&mut out, tail);
    out
}

/// The postie-fetchmailrc(5) page: what rfetch reads of fetchmail's file. The warned and
/// refused keywords are listed from the table the parser uses, so the page cannot drift.
pub fn postie_fetchmailrc_page() -> Vec<u8> {
    let mut out = file_page_head(
        "postie-fetchmailrc",
        "what rfetch reads of fetchmail's run control file",
    );
    let (warned, refused) = rc_keyword_sections();
    let (head, tail) = POSTIE_FETCHMAILRC_SECTIONS.split_at(3);
    render_sections(&mut out, head);
    render_titled(
        &mut out,
        [
            ("KEYWORDS ACCEPTED BUT IGNORED", warned.as_str()),
            ("KEYWORDS REFUSED", refused.as_str()),
        ],
    );
    render_sections(&mut out, tail);
    out
}

/// The bodies of the warned and refused keyword sections, from `fetchmailrc::RC_KEYWORDS`.
fn rc_keyword_sections() -> (String, String) {
    use crate::config::fetchmailrc::{RC_KEYWORDS, Support};
    let mut warned = String::from(
        "Each of these is reported once per run as a warning naming the file, the line, the \
keyword and what rfetch does instead; the rest of the file is used.",
    );
    let mut refused = String::from(
        "A file using one of these is a configuration error naming the file, the line, the \
keyword and why (exit 5): ignoring it would be unsafe or would send the mail elsewhere. \
--configdump still prints such a file, with the errors at its end (and exits 5). Values rfetch cannot honour are \
refused the same way: sslproto and sslprotocolversion above TLS 1.2 or below it (rfetch speaks \
TLS 1.2 and 1.3), sslmode none and bad-header reject.",
    );
    for (kw, support) in RC_KEYWORDS {
        match support {
            Support::Warned(instead) => warned.push_str(&format!("\n\n{kw}\t{instead}.")),
            Support::Refused(why) => refused.push_str(&format!("\n\n{kw}\t{why}.")),
            Support::Implemented => {}
        }
    }
    (warned, refused)
}

/// The rsend(1) page.
pub fn rsend_page() -> Vec<u8> {
    use super::rsend_args::{MSMTP_OPTIONS, Support};
    let mut warned = String::from(
        "These msmtp options are accepted, reported as a warning saying what rsend does \
instead, and not listed under OPTIONS.",
    );
    let mut refused = String::from(
        "These msmtp options are not accepted (exit 64, naming the option), for the reason given.",
    );
    for (name, support) in MSMTP_OPTIONS {
        match support {
            Support::Warned(instead) => warned.push_str(&format!("\n\n{name}\t{instead}.")),
            Support::Refused(why) => refused.push_str(&format!("\n\n{name}\t{why}.")),
            Support::Implemented => {}
        }
    }
    render_with(
        super::rsend_args::RsendArgs::command().name("rsend"),
        RSEND_SECTIONS,
        &[
            ("MSMTP OPTIONS ACCEPTED BUT IGNORED", warned),
            ("MSMTP OPTIONS REFUSED", refused),
        ],
    )
}

/// The rfetch(1) page.
pub fn rfetch_page() -> Vec<u8> {
    use super::rfetch_args::{RFETCH_OPTIONS, Support};
    let mut warned = String::from(
        "These fetchmail options are accepted, and each given is reported once as a warning \
saying what rfetch does instead. They are not listed under OPTIONS.",
    );
    let mut refused = String::from(
        "These fetchmail options are refused with an error saying why (exit 5): ignoring them \
would be unsafe or would send the mail elsewhere. Values rfetch cannot honour are refused the \
same way: --auth other than any or password, --sslproto above or below what TLS 1.2 and 1.3 \
meet, -Z with any code (-Z -1 is accepted), --bad-header reject, -p other than POP3, APOP, \
IMAP or AUTO.",
    );
    for (long, support) in RFETCH_OPTIONS {
        match support {
            Support::Warned(instead) => warned.push_str(&format!("\n\n{long}\t{instead}.")),
            Support::Refused(why) => refused.push_str(&format!("\n\n{long}\t{why}.")),
            Support::Implemented => {}
        }
    }
    render_with(
        super::rfetch_args::RfetchArgs::command().name("rfetch"),
        RFETCH_SECTIONS,
        &[
            ("FETCHMAIL OPTIONS ACCEPTED BUT IGNORED", warned),
            ("FETCHMAIL OPTIONS REFUSED", refused),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Env;
    use crate::config::discover::{Program, table};

    /// Every key the TOML reader accepts (the list its unknown-key error gives, for the top
    /// level, an account and a fetch table) is described in postie.toml(5).
    #[test]
    fn postie_toml_page_names_every_key() {
        let page = POSTIE_TOML_SECTIONS
            .iter()
            .map(|s| s.body)
            .collect::<Vec<_>>()
            .join("\n");
        let words: std::collections::BTreeSet<&str> = page
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        let mut checked = 0;
        for text in [
            "not_a_key = 1\n",
            "[accounts.a]\nnot_a_key = 1\n",
            "[accounts.a]\nhost = \"h\"\n[accounts.a.fetch]\nprotocol = \"imap\"\nnot_a_key = 1\n",
        ] {
            let error = match crate::config::toml::parse(
                text,
                std::path::Path::new("t.toml"),
                &Env::default(),
            ) {
                Ok(_) => panic!("not_a_key accepted in {text}"),
                Err(e) => e.to_string(),
            };
            let expected = error
                .split_once("expected one of")
                .map(|(_, list)| list)
                .unwrap_or_else(|| panic!("no key list in: {error}"));
            for key in expected.split('`').skip(1).step_by(2) {
                assert!(
                    words.contains(key),
                    "postie.toml(5) does not describe {key}"
                );
                checked += 1;
            }
        }
        assert!(checked > 60, "only {checked} keys");
    }

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
