//! The `postie` administration command: the one-time OAuth2 authorization of an account
//! (device flow or browser with PKCE), printing a fresh access token for other programs, and
//! storing a password in the system keyring. Both directions share these, which is why they
//! live in a third binary instead of flags of rsend and rfetch.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::account::{Account, Env, ServerSettings, keyring};
use crate::cli::manpage::{Section, render};
use crate::config;
use crate::error::{Error, ErrorKind};
use crate::log::Verbosity;
use crate::oauth::{self, Grant, OAuthError, flow};

/// postie's administration commands: OAuth2 authorization and the system keyring.
#[derive(Debug, Parser)]
#[command(name = "postie", version, max_term_width = 100)]
pub struct PostieArgs {
    /// Show what happens (HTTP requests without their contents).
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Top,
}

#[derive(Debug, Subcommand)]
pub enum Top {
    /// OAuth2: authorize an account once, or print its current access token.
    #[command(subcommand)]
    Oauth(OauthCommand),
    /// The system keyring (Secret Service): store a password where rsend and rfetch find it.
    #[command(subcommand)]
    Keyring(KeyringCommand),
}

/// Which account's OAuth2 settings to use.
#[derive(Debug, Args)]
pub struct AccountChoice {
    /// The configuration file: a .toml file is postie's native format, anything else is read
    /// as an msmtprc. Default: ~/.config/postie/config.toml, else msmtp's user file.
    #[arg(short = 'C', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The account, by name.
    #[arg(
        short = 'a',
        long = "account",
        value_name = "NAME",
        conflicts_with = "user"
    )]
    pub account: Option<String>,
    /// The first account with oauth_provider whose login name is USER (what error messages
    /// of rsend and rfetch name).
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum OauthCommand {
    /// Authorize postie for an account and store the refresh token (once per account).
    Login {
        #[command(flatten)]
        choice: AccountChoice,
        /// Use the device flow (RFC 8628): a URL and a code to enter on any device with a
        /// browser. The default is the browser flow with a loopback redirect.
        #[arg(long)]
        device: bool,
        /// Browser flow: print the URL only, do not start a browser.
        #[arg(long = "no-browser")]
        no_browser: bool,
        /// How long to wait for the browser to come back, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        wait: u64,
    },
    /// Print a valid access token on stdout (refreshed when needed), e.g. for passwordeval
    /// of other programs.
    Token {
        #[command(flatten)]
        choice: AccountChoice,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyringCommand {
    /// Store a password (read from stdin, or asked on the terminal) under msmtp's attributes
    /// host, service and user, where msmtp, rsend and rfetch look it up.
    Store {
        /// The server's host name, as in the configuration's host setting.
        #[arg(long)]
        host: String,
        /// The login name.
        #[arg(long)]
        user: String,
        /// smtp (rsend, msmtp), pop3 or imap (rfetch).
        #[arg(long, default_value = "smtp", value_parser = ["smtp", "pop3", "imap"])]
        service: String,
    },
}

const SECTIONS: &[Section] = &[
    Section {
        title: "OAUTH2",
        body: "An account logs in with OAuth2 when it sets oauth_provider (google, microsoft or generic) and oauth_client_id. Run \\fBpostie oauth login\\fR once: it stores a refresh token in ~/.local/state/postie/oauth/ (mode 0600; oauth_token_file elsewhere). Before each session rsend and rfetch use the cached access token or refresh it; a rotated refresh token replaces the old one atomically, and many accounts or threads refresh each grant once. When the provider answers invalid_grant (revoked, expired, password changed) the error names the login command to run again.

\\fBpostie oauth login\\fR without \\fB--device\\fR prints the provider's URL (and starts xdg-open when a display exists), waits on a loopback address for the browser to come back with a code, and exchanges it with its PKCE verifier. With \\fB--device\\fR it prints a URL and a code to enter on any device, and polls until the login was approved.

oauth_provider\tgoogle (XOAUTH2, scope https://mail.google.com/), microsoft (XOAUTH2, Outlook IMAP, POP and SMTP scopes plus offline_access; oauth_tenant selects the directory, default common) or generic (OAUTHBEARER; oauth_token_url, oauth_device_url or oauth_authorize_url and oauth_scope from the configuration).

oauth_client_id, oauth_client_secret, oauth_client_secret_eval\tThe client you registered. postie ships no client id of its own.

oauth_scope, oauth_authorize_url, oauth_token_url, oauth_device_url, oauth_tenant, oauth_token_file\tOverride the provider profile. Endpoints must be https:// (http:// only to a loopback address).

oauth_token_store\tfile (the default) or keyring: keep the refresh and access tokens in the system keyring (attributes service oauth2, user, token_url, client_id) instead of the token file; the lock file stays in ~/.local/state/postie/oauth/.",
    },
    Section {
        title: "REGISTERING A CLIENT",
        body: "Google\tIn the Google Cloud console create a project, enable the Gmail API, configure the OAuth consent screen (add yourself as a test user), and create an OAuth client of type Desktop app. Put its client id and secret into oauth_client_id and oauth_client_secret. Google's device flow does not allow the mail scope: use the browser flow (on a machine without a browser, forward the loopback port with ssh -L).

Microsoft 365\tIn the Entra admin center (App registrations) register an application, add the redirect platform Mobile and desktop applications with http://localhost, allow public client flows (for --device), and add the delegated API permissions IMAP.AccessAsUser.All, POP.AccessAsUser.All and SMTP.Send of Office 365 Exchange Online plus offline_access. The application id is oauth_client_id; set oauth_tenant to your tenant for single-tenant applications. SMTP AUTH must be enabled for the mailbox.",
    },
    Section {
        title: "EXIT STATUS",
        body: "0\tDone.

64\tUsage error (several OAuth2 accounts and none chosen, no password given).

70\tAnything else.

75\tTemporary: the provider's endpoint did not answer, or answered with a server error.

77\tThe provider refused: the authorization was denied, revoked or has expired, or no authorization was stored yet.

78\tConfiguration error: no such account, no oauth_provider, a setting missing or invalid, no keyring available.",
    },
    Section {
        title: "KEYRING",
        body: "Without password or passwordeval, rsend and rfetch look up the system keyring (Secret Service, through secret-tool) under msmtp's attributes host, service (smtp for sending, pop3 or imap for fetching) and user, before ~/.netrc and the prompt: a password stored for msmtp with secret-tool store --label=msmtp host HOST service smtp user USER is found unchanged. passwordkeyring on (or NAME=VALUE attributes) makes the keyring the only source, and an unreachable keyring an error. \\fBpostie keyring store\\fR stores a password read from stdin or the terminal, never from the command line.",
    },
];

/// The man page.
pub fn postie_page() -> Vec<u8> {
    render(PostieArgs::command(), SECTIONS)
}

/// Runs postie with the process arguments; returns the exit code.
pub fn main() -> i32 {
    let args = match PostieArgs::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 64 } else { 0 };
        }
    };
    crate::log::init(
        "postie",
        if args.verbose > 0 {
            Verbosity::Debug
        } else {
            Verbosity::Normal
        },
        None,
    );
    let env = Env::from_process();
    match run(args, &env) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("postie: {}", e.chain());
            match e.kind() {
                ErrorKind::Usage => 64,
                ErrorKind::Config | ErrorKind::InsecureConfig => 78,
                ErrorKind::Auth => 77,
                k if k.is_transient() => 75,
                _ => 70,
            }
        }
    }
}

fn run(args: PostieArgs, env: &Env) -> Result<(), Error> {
    match args.command {
        Top::Oauth(OauthCommand::Login {
            choice,
            device,
            no_browser,
            wait,
        }) => {
            let grant = grant(&choice, env)?;
            if device {
                flow::device_login(&grant, &mut |p| {
                    let mut err = std::io::stderr();
                    let _ = writeln!(
                        err,
                        "To authorize postie for {}, open {} and enter the code {}",
                        grant.user, p.verification_uri, p.user_code
                    );
                    if let Some(full) = &p.verification_uri_complete {
                        let _ = writeln!(err, "(or open {full})");
                    }
                    let _ = err.flush();
                })
                .map_err(oauth_error)?;
            } else {
                let login = flow::browser_start(&grant).map_err(oauth_error)?;
                eprintln!(
                    "To authorize postie for {}, open this URL in a browser:\n{}",
                    grant.user, login.url
                );
                if !no_browser {
                    open_browser(&login.url);
                }
                login
                    .finish(&grant, Duration::from_secs(wait))
                    .map_err(oauth_error)?;
            }
            eprintln!(
                "Authorized: the refresh token for {} is stored in {}",
                grant.user,
                grant.token_file.path().display()
            );
            Ok(())
        }
        Top::Oauth(OauthCommand::Token { choice }) => {
            let grant = grant(&choice, env)?;
            let token = oauth::access_token(&grant).map_err(oauth_error)?;
            let mut out = std::io::stdout();
            writeln!(out, "{token}")
                .and_then(|()| out.flush())
                .map_err(|e| Error::with_source(ErrorKind::LocalIo, "cannot write the token", e))
        }
        Top::Keyring(KeyringCommand::Store {
            host,
            user,
            service,
        }) => {
            let secret = read_secret(&host, &user)?;
            let attrs = keyring::msmtp_attributes(&host, &service, &user);
            keyring::store(
                &format!("postie: {service} password for {user}@{host}"),
                &attrs,
                &secret,
            )
            .map_err(|e| Error::with_source(ErrorKind::Config, "cannot store the password", e))?;
            eprintln!(
                "Stored in the system keyring under host {host}, service {service}, user {user}."
            );
            Ok(())
        }
    }
}

fn oauth_error(e: OAuthError) -> Error {
    Error::with_source(e.kind(), "OAuth2", e)
}

/// The secret from stdin: a terminal is asked without echo, a pipe is read whole (one trailing
/// newline removed). Never from the command line, where `ps` shows it.
fn read_secret(host: &str, user: &str) -> Result<String, Error> {
    let stdin = std::io::stdin();
    let text = if stdin.is_terminal() {
        let env = Env::default();
        let lookup = crate::account::secret::Lookup {
            host,
            user: Some(user),
            service: "",
            env: &env,
        };
        crate::account::Secret::Prompt
            .resolve(&lookup)?
            .unwrap_or_default()
    } else {
        let mut buf = String::new();
        stdin
            .lock()
            .take(64 * 1024)
            .read_to_string(&mut buf)
            .map_err(|e| {
                Error::with_source(ErrorKind::LocalIo, "cannot read the password from stdin", e)
            })?;
        if buf.ends_with('\n') {
            buf.pop();
            if buf.ends_with('\r') {
                buf.pop();
            }
        }
        buf
    };
    if text.is_empty() {
        return Err(Error::new(ErrorKind::Usage, "no password given"));
    }
    Ok(text)
}

/// Starts the desktop's browser when there is a display; the URL has been printed anyway.
fn open_browser(url: &str) {
    let has_display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    if !has_display {
        return;
    }
    let _ = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Loads the configuration and picks the account.
fn load_accounts(file: Option<&Path>, env: &Env) -> Result<config::AccountSet, Error> {
    let is_toml = |p: &Path| p.extension().is_some_and(|e| e == "toml");
    let set = match file {
        Some(p) if is_toml(p) => config::load_toml(env, Some(p))?,
        Some(p) => config::load_msmtprc(env, Some(p))?,
        None => {
            let set = config::load_toml(env, None)?;
            if set.accounts.is_empty() {
                config::load_msmtprc(env, None)?
            } else {
                set
            }
        }
    };
    Ok(set)
}

fn servers(a: &Account) -> impl Iterator<Item = &ServerSettings> {
    a.submit
        .iter()
        .map(|s| &s.server)
        .chain(a.fetch.iter().map(|f| &f.server))
}

/// The OAuth2 grant of the chosen account.
fn grant(choice: &AccountChoice, env: &Env) -> Result<Grant, Error> {
    let set = load_accounts(choice.file.as_deref(), env)?;
    let with_oauth = |a: &'_ Account| servers(a).find(|s| s.oauth.provider.is_some()).cloned();
    let server = match (&choice.account, &choice.user) {
        (Some(name), _) => {
            let account = set
                .find(name)
                .ok_or_else(|| Error::new(ErrorKind::Config, format!("no account {name}")))?;
            with_oauth(account).ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("account {name} has no oauth_provider setting"),
                )
            })?
        }
        (None, Some(user)) => set
            .accounts
            .iter()
            .flat_map(servers)
            .find(|s| s.oauth.provider.is_some() && s.user() == Some(user.as_str()))
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("no account with oauth_provider logs in as {user}"),
                )
            })?,
        (None, None) => {
            // Accounts sharing one grant (same provider, client and user; e.g. msmtp's
            // `account default : work`) are one choice.
            let mut grants: Vec<Grant> = Vec::new();
            for server in set.accounts.iter().filter_map(with_oauth) {
                let Some(g) = server.oauth_grant(env)? else {
                    continue;
                };
                if !grants
                    .iter()
                    .any(|h| h.token_file.path() == g.token_file.path())
                {
                    grants.push(g);
                }
            }
            return match grants.len() {
                1 => Ok(grants.remove(0)),
                0 => Err(Error::new(
                    ErrorKind::Config,
                    "no account has an oauth_provider setting",
                )),
                _ => Err(Error::new(
                    ErrorKind::Usage,
                    "several accounts use OAuth2: choose one with -a NAME or --user USER",
                )),
            };
        }
    };
    server
        .oauth_grant(env)?
        .ok_or_else(|| Error::new(ErrorKind::Config, "no oauth_provider setting"))
}
