//! The rsend entry point: argument parsing (also when called as sendmail, mailq or newaliases),
//! the logger, the modes (send, --pretend, --serverinfo), and the one place errors become exit
//! codes (through [`crate::exit::rsend_code`]).

use std::io::Write;

use crate::account::Env;
use crate::cli::rsend_args::{self, Mode, RsendArgs};
use crate::error::{Error, ErrorKind};
use crate::exit::{rsend_code, sysexits};
use crate::hint::Vocabulary;
use crate::log::Verbosity;
use crate::net::format_fingerprint;
use crate::session::smtp::SmtpClient;
use crate::submit::run;

/// What mailq (-bp) says: rsend keeps no queue.
const QUEUE_EMPTY: &str = "Mail queue is empty (rsend submits directly and keeps no queue)";

/// Runs rsend with the process arguments; returns the exit code.
pub fn main() -> i32 {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let program = argv
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .unwrap_or_default();
    // Called as mailq or newaliases through a symlink, as MTAs are.
    match program.as_str() {
        "mailq" => {
            println!("{QUEUE_EMPTY}");
            return sysexits::OK;
        }
        "newaliases" => return sysexits::OK,
        _ => {}
    }
    let args = match rsend_args::parse(argv) {
        Ok(a) => a,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    sysexits::OK
                }
                _ => sysexits::USAGE,
            };
            let _ = e.print();
            return code;
        }
    };
    let verbosity = match args.verbose {
        0 => Verbosity::Normal,
        _ => Verbosity::Debug,
    };
    crate::log::init("rsend", verbosity, None);
    for w in rsend_args::compat_warnings(&args) {
        log::warn!("{w}");
    }
    match run_args(&args, &mut std::io::stdin().lock()) {
        Ok(()) => sysexits::OK,
        Err(e) => {
            let e = name_config_files(&args, e);
            crate::hint::show("rsend", &e, Vocabulary::Submit);
            rsend_code(e.kind())
        }
    }
}

/// A configuration error names the files read (unless it already does, or --host means no
/// file was read).
fn name_config_files(args: &RsendArgs, e: Error) -> Error {
    use crate::config::discover::{self, Program};
    if args.host.is_some() || !matches!(e.kind(), ErrorKind::Config | ErrorKind::InsecureConfig) {
        return e;
    }
    let env = Env::from_process();
    let explicit = args
        .file
        .as_deref()
        .map(|f| discover::rsend_explicit(env.expand_tilde(f)));
    discover::discover(Program::Rsend, explicit, &env).name_in_error(e, &|p| p.exists())
}

/// Runs a parsed command line with `input` as the message source.
pub fn run_args(args: &RsendArgs, input: &mut dyn std::io::Read) -> Result<(), Error> {
    if args.version {
        println!(
            "rsend (postie) {}\nTLS: rustls (ring); authentication: PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256 XOAUTH2 OAUTHBEARER",
            env!("CARGO_PKG_VERSION")
        );
        print!("{}", configuration_lines(args, &Env::from_process()));
        return Ok(());
    }
    if let Some(address) = &args.configure {
        let env = Env::from_process();
        return crate::submit::configure::configure(address, &env, &mut std::io::stdout().lock());
    }
    if rsend_args::smtp_on_stdio(args) {
        let env = Env::from_process();
        return crate::submit::smtp_stdio::serve(args, &env, input, &mut std::io::stdout().lock());
    }
    let mode = rsend_args::mode(args).map_err(|m| Error::new(ErrorKind::Usage, m))?;
    match mode {
        Mode::Newaliases => return Ok(()),
        Mode::ListQueue => {
            println!("{QUEUE_EMPTY}");
            return Ok(());
        }
        Mode::Deliver => {}
    }
    let env = Env::from_process();
    if args.pretend {
        return pretend(args, &env);
    }
    if args.serverinfo {
        if !args.recipients.is_empty() {
            return Err(Error::new(
                ErrorKind::Usage,
                "too many arguments: --serverinfo takes no recipients",
            ));
        }
        return serverinfo(args, &env);
    }
    let sent = run::send(args, &env, input)?;
    log::info!(
        "message accepted for {}: {}",
        sent.recipients.join(", "),
        sent.final_reply
    );
    Ok(())
}

/// What --version says about configuration: the order files are looked for, and the files
/// this invocation reads (msmtp's two "configuration file name" lines).
fn configuration_lines(args: &RsendArgs, env: &Env) -> String {
    use crate::config::discover::{self, Program};
    let explicit = args
        .file
        .as_deref()
        .map(|f| discover::rsend_explicit(env.expand_tilde(f)));
    let found = discover::discover(Program::Rsend, explicit, env);
    let mut out = String::from(
        "Configuration files, in the order looked for (the first that exists is read):\n",
    );
    for c in &found.looked_for {
        out.push_str(&format!("    {c}\n"));
    }
    if let Some(s) = &found.system {
        out.push_str(&format!(
            "System configuration file name: {}\n",
            s.display()
        ));
    }
    out.push_str(&format!(
        "User configuration file name: {}\n",
        found.chosen.as_ref().map_or_else(
            || "(none found)".to_owned(),
            |c| c.path.display().to_string()
        )
    ));
    for u in &found.unused {
        out.push_str(&format!("Present but not read: {}\n", u.path.display()));
    }
    out
}

fn pretend(args: &RsendArgs, env: &Env) -> Result<(), Error> {
    let from = args.from.clone().or_else(|| args.from_r.clone());
    let resolved = run::resolve(args, env, from.as_deref())?;
    let mut out = std::io::stdout().lock();
    let files: Vec<String> = resolved
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let _ = writeln!(out, "loaded configuration files: {}", files.join(", "));
    let _ = writeln!(out, "using account: {}", resolved.account_name);
    for line in resolved.settings.pretend_lines(env) {
        let _ = writeln!(out, "{line}");
    }
    Ok(())
}

fn serverinfo(args: &RsendArgs, env: &Env) -> Result<(), Error> {
    let resolved = run::resolve(args, env, None)?;
    let mut settings = run::session_settings_without_auth(&resolved.settings, env)?;
    settings.auth = None;
    let client = SmtpClient::connect(&settings)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{} server at {} ({})",
        match settings.protocol {
            crate::proto::smtp::Protocol::Smtp => "SMTP",
            crate::proto::smtp::Protocol::Lmtp => "LMTP",
        },
        client.peer(),
        if client.is_tls() { "TLS" } else { "no TLS" }
    );
    if let Some(conn) = client.connection()
        && conn.is_tls()
    {
        let _ = writeln!(out, "TLS session:");
        if let Some(v) = conn.protocol_version() {
            let _ = writeln!(out, "    Protocol: {v}");
        }
        if let Some(c) = conn.cipher_suite() {
            let _ = writeln!(out, "    Cipher: {c}");
        }
        if let Some(fp) = conn.peer_fingerprint_sha256() {
            let _ = writeln!(
                out,
                "    Certificate SHA256 fingerprint: {}",
                format_fingerprint(&fp)
            );
        }
    }
    let _ = writeln!(out, "Greeting: {}", client.greeting().text());
    let caps = client.capabilities();
    let _ = writeln!(out, "Capabilities:");
    if caps.size_extension {
        match caps.size_limit {
            Some(n) => {
                let _ = writeln!(
                    out,
                    "    SIZE {n}: maximum message size is {} MiB",
                    n / (1024 * 1024)
                );
            }
            None => {
                let _ = writeln!(out, "    SIZE: no fixed maximum message size");
            }
        }
    }
    for (on, name, what) in [
        (
            caps.pipelining,
            "PIPELINING",
            "several commands per round trip",
        ),
        (caps.starttls, "STARTTLS", "upgrade to TLS"),
        (caps.eight_bit_mime, "8BITMIME", "8-bit message bodies"),
        (caps.smtputf8, "SMTPUTF8", "UTF-8 addresses"),
        (caps.dsn, "DSN", "delivery status notifications"),
        (caps.chunking, "CHUNKING", "BDAT"),
    ] {
        if on {
            let _ = writeln!(out, "    {name}: {what}");
        }
    }
    if !caps.auth.is_empty() {
        let _ = writeln!(out, "    AUTH: {}", caps.auth.join(" "));
    } else if !client.is_tls() && caps.starttls {
        let _ = writeln!(
            out,
            "    AUTH: none offered before STARTTLS (use --tls --tls-starttls to see them)"
        );
    }
    let _ = client.quit();
    Ok(())
}
