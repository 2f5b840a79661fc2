//! What one rsend run is asked to do, as `cli/rsend.rs` builds it from the command line: which
//! configuration and account, the msmtprc settings the command line overrides, the envelope and
//! how to deliver. The submit job reads this, never the argument structure.

/// Which account a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountChoice {
    /// `--host`: settings from the command line only, no configuration file.
    CommandLine,
    /// A configured account: `-a NAME`, or `None` for the default one (or the one whose `from`
    /// matches the envelope-from).
    Configured(Option<String>),
}

/// sendmail's `-od` delivery mode, the last one given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFlag {
    /// -odi: now, in the foreground.
    Interactive,
    /// -odq (and -odd): into the queue without trying.
    Queue,
    /// -odb: into the queue, then a flush in the background.
    Background,
}

/// One rsend run's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `-C FILE`: the configuration file instead of the ones looked for.
    pub config_file: Option<String>,
    pub account: AccountChoice,
    /// Command-line settings as `(msmtprc key, value)` pairs, applied over the account's (and
    /// kept with a queued message, so a later flush sends it the same way).
    pub overrides: Vec<(&'static str, String)>,
    /// `-f` / `-r`: the envelope-from.
    pub from: Option<String>,
    /// `--read-envelope-from`: the envelope-from is the message's From address.
    pub read_envelope_from: bool,
    /// Recipients given as arguments (each an address list, as msmtp reads them).
    pub recipients: Vec<String>,
    /// `-t`: recipients also from the To, Cc and Bcc headers (or the first Resent- block).
    pub read_recipients: bool,
    /// `-F`: the full name for an added From header.
    pub full_name: Option<String>,
    pub delivery: Option<DeliveryFlag>,
    /// `--queue-on-failure`: queue the message after a temporary failure.
    pub queue_on_failure: bool,
    /// A debug trace is wanted (`-v`, `-d`): the connection gets at least one second per read
    /// so the trace is readable.
    pub verbose: bool,
    /// Whether the run needs an envelope-from to choose the account's settings (`--serverinfo`
    /// does not: `SMTPSERVER` alone is enough for it).
    pub sender_needed: bool,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            config_file: None,
            account: AccountChoice::Configured(None),
            overrides: Vec::new(),
            from: None,
            read_envelope_from: false,
            recipients: Vec::new(),
            read_recipients: false,
            full_name: None,
            delivery: None,
            queue_on_failure: false,
            verbose: false,
            sender_needed: true,
        }
    }
}
