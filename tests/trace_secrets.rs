//! The real binaries at every verbosity against scripted servers, for every way a credential can
//! go on the wire: rsend with AUTH PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2 and
//! OAUTHBEARER; rfetch with POP3 USER/PASS and APOP, IMAP LOGIN as a quoted string, as a
//! synchronising literal and as a LITERAL+ literal, and AUTHENTICATE PLAIN with and without
//! SASL-IR. All output (stdout and stderr) is searched for the secret in every encoding it could
//! leak in: as text, as a Rust byte list, in base64 at every alignment, in hex, and for every
//! payload the server received in a secret position. At `-v -v` the output must show the
//! protocol as lines (`IMAP< * OK`, `POP3> USER bob`, `SMTP> MAIL FROM:<...>`), never Rust
//! debug structures, and never the message body.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::transcript::{Player, Transcript};

/// Non-ASCII: IMAP must send it as a literal.
const SECRET: &str = "Geh\u{e9}im-\u{df}\u{20ac}-pw!";
/// Printable ASCII: IMAP sends it as a quoted string.
const ASCII_SECRET: &str = "ascii-Secret-pw";
/// A line of the message body that must never show in a trace.
const BODY_MARK: &str = "body-line-that-must-not-be-traced";

/// Payloads the scripted servers received in a secret position (PASS argument, APOP digest,
/// AUTH responses, LOGIN password): none may appear in any output.
type Secrets = Arc<Mutex<Vec<String>>>;

/// Plays tests/transcripts/trace/NAME.txt with the test message as `${MESSAGE}` (`${SIZE}`
/// bytes) and `vars`.
fn play(name: &str, vars: &[(&str, &str)]) -> Player {
    let msg = message();
    let size = msg.len().to_string();
    let mut all = vec![("MESSAGE", msg.as_str()), ("SIZE", size.as_str())];
    all.extend_from_slice(vars);
    Transcript::load_with(&format!("trace/{name}"), &all)
        .compute("scram-server-first", scram_server_first)
        .play()
}

/// The SMTP SCRAM server-first message on the nonce of the client-first (the AUTH line's
/// initial response), as a 334 challenge.
fn scram_server_first(heard: &[String]) -> Vec<u8> {
    let first = heard
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("AUTH SCRAM-SHA-256 "))
        .unwrap_or_default();
    let first = B64.decode(first).unwrap_or_default();
    let first = String::from_utf8_lossy(&first).into_owned();
    let nonce = first.rsplit("r=").next().unwrap_or("x").to_string();
    let server_first = format!("r={nonce}srvnonce,s={},i=4096", B64.encode("saltsalt"));
    format!("334 {}\r\n", B64.encode(server_first)).into_bytes()
}

/// What the client sent in a secret position: PASS and APOP arguments, LOGIN passwords and
/// literals, AUTH and AUTHENTICATE initial responses and the lines answering their
/// challenges.
fn secrets_in(heard: &[String]) -> Secrets {
    let mut found = Vec::new();
    let mut answering = false;
    let mut literal_next = false;
    for line in heard {
        let untagged = match line.split_once(' ') {
            Some((tag, rest))
                if tag.starts_with('A') && tag[1..].chars().all(|c| c.is_ascii_digit()) =>
            {
                rest
            }
            _ => line.as_str(),
        };
        let words: Vec<&str> = untagged.split(' ').collect();
        let verb = words[0].to_ascii_uppercase();
        if literal_next {
            literal_next = false;
            found.push(line.clone());
            continue;
        }
        match verb.as_str() {
            "PASS" => found.push(words[1..].join(" ")),
            "APOP" => found.extend(words.last().map(|w| w.to_string())),
            "LOGIN" => {
                let password = words[2..].join(" ");
                if password.ends_with('}') {
                    literal_next = true;
                } else {
                    found.push(password);
                }
            }
            "AUTH" | "AUTHENTICATE" => {
                found.extend(words.get(2).map(|w| w.to_string()));
                answering = true;
            }
            // A challenge answer is one base64 word; a command (UIDL, QUIT) ends the exchange.
            _ if answering
                && !line.is_empty()
                && !line.contains(' ')
                && !line.chars().all(|c| c.is_ascii_uppercase()) =>
            {
                found.push(line.clone())
            }
            _ => answering = false,
        }
    }
    Arc::new(Mutex::new(found))
}

fn message() -> String {
    format!("From: a@example.org\r\nTo: bob@example.org\r\nSubject: trace\r\n\r\n{BODY_MARK}\r\n")
}

// ---- SMTP (rsend) ----

fn run_rsend(mech: &str, port: u16, verbosity: &[&str]) -> Output {
    let dir = common::temp_dir("rsend");
    let rc = dir.join("msmtprc");
    common::write_private(
        &rc,
        &format!(
            "account default\nhost 127.0.0.1\nport {port}\ntls off\nauth {}\nuser alice\n\
             password {SECRET}\nfrom alice@localhost\ntimeout 5\n",
            mech.to_ascii_lowercase()
        ),
    );
    let mut args: Vec<&str> = vec!["-C", rc.to_str().expect("utf-8")];
    args.extend_from_slice(verbosity);
    args.extend_from_slice(&["--danger-plaintext-auth", "bob@example.org"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsend"))
        .args(&args)
        .env_remove("HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rsend");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(message().as_bytes());
    }
    let out = child.wait_with_output().expect("wait");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

// ---- POP3 and IMAP (rfetch) ----

/// The POP3 greeting, with an APOP timestamp.
const POP3_GREETING: &str = "+OK scripted POP3 <1896.697170952@scripted>";

/// How the IMAP server announces itself.
#[derive(Clone, Copy, Debug)]
enum ImapFlavour {
    /// LOGIN allowed, no LITERAL+.
    Plain,
    /// LOGIN allowed, LITERAL+.
    LiteralPlus,
    /// LOGINDISABLED with SASL-IR: AUTHENTICATE PLAIN with an initial response.
    SaslIr,
    /// LOGINDISABLED without SASL-IR: AUTHENTICATE PLAIN after an empty challenge.
    SaslNoIr,
    /// XOAUTH2 and OAUTHBEARER with SASL-IR (the password is the bearer token).
    OAuth,
}

/// The IMAP transcript for `flavour` and a login with `secret` (`auth` names the OAuth
/// mechanism).
fn imap_server(flavour: ImapFlavour, secret: &str, auth: &str) -> Player {
    let (name, caps) = match flavour {
        ImapFlavour::Plain if secret.is_ascii() => ("imap_login_quoted", "IMAP4rev1 UIDPLUS"),
        ImapFlavour::Plain => ("imap_login_literal", "IMAP4rev1 UIDPLUS"),
        ImapFlavour::LiteralPlus => ("imap_login_literal_plus", "IMAP4rev1 UIDPLUS LITERAL+"),
        ImapFlavour::SaslIr => (
            "imap_plain_ir",
            "IMAP4rev1 UIDPLUS LOGINDISABLED AUTH=PLAIN SASL-IR",
        ),
        ImapFlavour::SaslNoIr => (
            "imap_plain_no_ir",
            "IMAP4rev1 UIDPLUS LOGINDISABLED AUTH=PLAIN",
        ),
        ImapFlavour::OAuth => (
            if auth.contains("xoauth2") {
                "imap_xoauth2"
            } else {
                "imap_oauthbearer"
            },
            "IMAP4rev1 UIDPLUS AUTH=XOAUTH2 AUTH=OAUTHBEARER SASL-IR",
        ),
    };
    let length = secret.len().to_string();
    play(
        name,
        &[("CAPS", caps), ("SECRET", secret), ("LENGTH", &length)],
    )
}

fn run_rfetch(
    proto: &str,
    port: u16,
    secret: &str,
    plaintext_allowed: bool,
    verbosity: &[&str],
    fetch_extra: &str,
) -> Output {
    let dir = common::temp_dir("rfetch");
    let md = common::new_maildir(&dir);
    let config = dir.join("config.toml");
    let password = secret.replace('\\', "\\\\").replace('"', "\\\"");
    common::write_private(
        &config,
        &format!(
            "[accounts.scripted]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npassword = \"{password}\"\n\
             tls = false\ntimeout = 5\n\
             [accounts.scripted.fetch]\nprotocol = \"{proto}\"\nport = {port}\nmaildir = \"{}\"\n\
             {fetch_extra}\n",
            md.display()
        ),
    );
    let mut args: Vec<&str> = vec!["-C", config.to_str().expect("utf-8")];
    args.extend_from_slice(verbosity);
    if plaintext_allowed {
        args.push("--danger-plaintext-auth");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_rfetch"))
        .args(&args)
        .env("HOME", &dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run rfetch");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

// ---- the search ----

/// Every form in which `secret` could leak.
fn needles(secret: &str) -> Vec<String> {
    let s = secret.as_bytes();
    let mut v = vec![
        secret.to_string(),
        // As a Rust byte list, with and without the brackets.
        format!("{s:?}").trim_matches(['[', ']']).to_string(),
        s.iter().map(|b| format!("{b:02x}")).collect(),
        String::from_utf8_lossy(s).into_owned(),
    ];
    // Base64 at each of the three alignments the secret can have inside a longer message
    // (SASL PLAIN, XOAUTH2, OAUTHBEARER): the characters that depend on the secret alone.
    for skip in 0..3 {
        let tail = &s[skip..];
        let whole = tail.len() / 3 * 3;
        v.push(B64.encode(&tail[..whole]));
    }
    v
}

fn check(
    what: &str,
    out: &Output,
    secret: &str,
    secrets: &Secrets,
    failures: &mut Vec<String>,
) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let mut all = needles(secret);
    for p in secrets.lock().expect("lock").iter() {
        // Quotes and padding vary with framing; the payload's core must not show.
        let core = p.trim_matches(['"', '=']);
        if core.len() >= 6 {
            all.push(core.to_string());
        }
    }
    for n in &all {
        if !n.is_empty() && text.contains(n.as_str()) {
            failures.push(format!(
                "{what}: output contains secret form {n:?}:\n{text}"
            ));
        }
    }
    text
}

fn expect_lines(what: &str, text: &str, wanted: &[&str], failures: &mut Vec<String>) {
    for w in wanted {
        if !text.lines().any(|l| l.contains(w)) {
            failures.push(format!("{what}: no line with {w:?}:\n{text}"));
        }
    }
    for bad in ["Greeting {", "Send(", "Capabilities(", "Event", BODY_MARK] {
        if text.contains(bad) {
            failures.push(format!("{what}: output shows {bad:?}:\n{text}"));
        }
    }
}

const RSEND_LEVELS: &[&[&str]] = &[&[], &["-v"], &["-d"], &["-v", "-v"], &["-v", "-v", "-v"]];
const RFETCH_LEVELS: &[&[&str]] = &[&[], &["-v"], &["-v", "-v"], &["-v", "-v", "-v"]];

#[test]
fn rsend_never_shows_the_secret_and_traces_protocol_lines() {
    let mut failures = Vec::new();
    for mech in [
        "PLAIN",
        "LOGIN",
        "CRAM-MD5",
        "SCRAM-SHA-256",
        "XOAUTH2",
        "OAUTHBEARER",
    ] {
        for level in RSEND_LEVELS {
            let server = play(
                &format!("smtp_{}", mech.to_ascii_lowercase().replace('-', "_")),
                &[],
            );
            let out = run_rsend(mech, server.port(), level);
            let secrets = secrets_in(&server.finish());
            let what = format!("rsend AUTH {mech} {level:?}");
            let text = check(&what, &out, SECRET, &secrets, &mut failures);
            if secrets.lock().expect("lock").is_empty() {
                failures.push(format!("{what}: the server saw no credentials:\n{text}"));
            }
            if !level.is_empty() {
                let mut wanted = vec!["SMTP< 220 scripted ESMTP", "SMTP> EHLO ", "SMTP> AUTH "];
                if mech != "SCRAM-SHA-256" {
                    wanted.extend([
                        "SMTP> MAIL FROM:<alice@localhost>",
                        "SMTP< 250 2.0.0 queued",
                    ]);
                }
                expect_lines(&what, &text, &wanted, &mut failures);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn rfetch_pop3_never_shows_the_secret_and_traces_protocol_lines() {
    let mut failures = Vec::new();
    // auth password: USER/PASS; the automatic choice without TLS: APOP.
    for (auth, login, transcript) in [
        ("auth = \"password\"", "POP3> PASS *", "pop3_password"),
        ("", "POP3> APOP bob *", "pop3_apop"),
        ("auth = \"plain\"", "POP3> AUTH PLAIN *", "pop3_plain"),
        ("auth = \"xoauth2\"", "POP3> AUTH XOAUTH2", "pop3_xoauth2"),
        (
            "auth = \"oauthbearer\"",
            "POP3> AUTH OAUTHBEARER *",
            "pop3_oauthbearer",
        ),
    ] {
        for level in RFETCH_LEVELS {
            let server = play(transcript, &[("GREETING", POP3_GREETING)]);
            let out = run_rfetch("pop3", server.port(), SECRET, false, level, auth);
            let secrets = secrets_in(&server.finish());
            let what = format!("rfetch POP3 ({login}) {level:?}");
            let text = check(&what, &out, SECRET, &secrets, &mut failures);
            if out.status.code() != Some(0) {
                failures.push(format!("{what}: exit {:?}:\n{text}", out.status.code()));
            }
            if level.len() >= 2 {
                expect_lines(
                    &what,
                    &text,
                    &[
                        "POP3< +OK scripted POP3",
                        "POP3> CAPA",
                        login,
                        "POP3> RETR 1",
                        "octets of message data",
                        "POP3> QUIT",
                    ],
                    &mut failures,
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn rfetch_imap_never_shows_the_secret_and_traces_protocol_lines() {
    let mut failures = Vec::new();
    for (flavour, secret, auth) in [
        (ImapFlavour::Plain, SECRET, ""),
        (ImapFlavour::Plain, ASCII_SECRET, ""),
        (ImapFlavour::LiteralPlus, SECRET, ""),
        (ImapFlavour::SaslIr, SECRET, ""),
        (ImapFlavour::SaslNoIr, SECRET, ""),
        (ImapFlavour::OAuth, SECRET, "auth = \"xoauth2\""),
        (ImapFlavour::OAuth, SECRET, "auth = \"oauthbearer\""),
    ] {
        for level in RFETCH_LEVELS {
            let server = imap_server(flavour, secret, auth);
            let out = run_rfetch("imap", server.port(), secret, true, level, auth);
            let secrets = secrets_in(&server.finish());
            let what = format!("rfetch IMAP {flavour:?} {secret:?} {level:?}");
            let text = check(&what, &out, secret, &secrets, &mut failures);
            if out.status.code() != Some(0) {
                failures.push(format!("{what}: exit {:?}:\n{text}", out.status.code()));
            }
            if secrets.lock().expect("lock").is_empty() {
                failures.push(format!("{what}: the server saw no credentials:\n{text}"));
            }
            if std::env::var_os("SHOW_TRACE").is_some() {
                eprintln!("==== {what}\n{text}");
            }
            if level.len() >= 2 {
                let login = match flavour {
                    _ if secret == ASCII_SECRET => "LOGIN \"bob\" *",
                    ImapFlavour::Plain | ImapFlavour::LiteralPlus => "LOGIN \"bob\" {",
                    ImapFlavour::SaslIr => "AUTHENTICATE PLAIN *",
                    ImapFlavour::SaslNoIr => "AUTHENTICATE PLAIN",
                    ImapFlavour::OAuth if auth.contains("xoauth2") => "AUTHENTICATE XOAUTH2",
                    ImapFlavour::OAuth => "AUTHENTICATE OAUTHBEARER *",
                };
                expect_lines(
                    &what,
                    &text,
                    &[
                        "IMAP< * OK [CAPABILITY ",
                        login,
                        "SELECT \"INBOX\"",
                        "octets of message data",
                        "OK [READ-WRITE] selected",
                    ],
                    &mut failures,
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn server_text_cannot_forge_trace_lines_or_restyle_the_terminal() {
    let server = play(
        "pop3_password",
        &[(
            "GREETING",
            "+OK hi\x1b[2J\x1b]0;title\x07\rrfetch: 99 messages forged\u{202e}",
        )],
    );
    let out = run_rfetch("pop3", server.port(), SECRET, true, &["-v", "-v"], "");
    server.finish();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "POP3< +OK hi\\u{1b}[2J\\u{1b}]0;title\\u{7}\\rrfetch: 99 messages forged\\u{202e}"
        ),
        "{err}"
    );
    for bad in ['\x1b', '\r', '\x07', '\u{202e}'] {
        assert!(!err.contains(bad), "raw {bad:?} in {err:?}");
    }
    assert!(err.lines().all(|l| l.starts_with("rfetch: ")), "{err}");
}

/// rfetch as a daemon (`-d 300 -v -v`): the same logger in the long-running mode. It is stopped
/// (by its PID, through the child handle) once the first poll delivered.
#[test]
fn rfetch_daemon_never_shows_the_secret() {
    let mut failures = Vec::new();
    let server = imap_server(ImapFlavour::Plain, SECRET, "");
    let port = server.port();
    let dir = common::temp_dir("rfetch-daemon");
    let md = common::new_maildir(&dir);
    let config = dir.join("config.toml");
    common::write_private(
        &config,
        &format!(
            "[accounts.scripted]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npassword = \"{SECRET}\"\n\
             tls = false\ntimeout = 5\n\
             [accounts.scripted.fetch]\nprotocol = \"imap\"\nport = {port}\nmaildir = \"{}\"\n",
            md.display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_rfetch"))
        .args([
            "-C",
            config.to_str().expect("utf-8"),
            "-d",
            "300",
            "-N",
            "-v",
            "-v",
        ])
        .arg("--danger-plaintext-auth")
        .env("HOME", &dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rfetch");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline
        && std::fs::read_dir(md.join("new")).map_or(0, |r| r.count()) == 0
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the poll finish its LOGOUT, then stop this daemon (our own child).
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait");
    let _ = std::fs::remove_dir_all(&dir);
    let what = "rfetch -d 300 -N -v -v";
    let secrets = secrets_in(&server.finish());
    let text = check(what, &out, SECRET, &secrets, &mut failures);
    expect_lines(
        what,
        &text,
        &[
            "IMAP< * OK [CAPABILITY ",
            "LOGIN \"bob\" {",
            "octets of message data",
        ],
        &mut failures,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

mod common;

/// The same search against the real Dovecot and Postfix: rfetch over IMAP and POP3 with
/// STARTTLS, rsend through submission with AUTH LOGIN, all at `-v -v`.
mod stack {
    use super::common;
    use super::{BODY_MARK, Secrets, check, expect_lines};
    use std::sync::Arc;

    use common::rfetch::*;

    #[test]
    fn real_stack_traces_hide_the_passwords() {
        let s = common::Stack::get();
        let mut failures = Vec::new();
        // Every fetch login Dovecot offers, by the TOML auth setting (the automatic choice is
        // SCRAM-SHA-256 there).
        for (proto, auth, login) in [
            ("imap", "password", "LOGIN \"bob\" *"),
            ("imap", "any", "IMAP> A0003 AUTHENTICATE SCRAM-SHA-256 *"),
            ("imap", "plain", "IMAP> A0003 AUTHENTICATE PLAIN *"),
            ("imap", "login", "IMAP> A0003 AUTHENTICATE LOGIN"),
            ("imap", "cram-md5", "IMAP> A0003 AUTHENTICATE CRAM-MD5"),
            (
                "imap",
                "scram-sha-1",
                "IMAP> A0003 AUTHENTICATE SCRAM-SHA-1 *",
            ),
            ("pop3", "password", "POP3> PASS *"),
            ("pop3", "any", "POP3> AUTH SCRAM-SHA-256 *"),
            ("pop3", "plain", "POP3> AUTH PLAIN *"),
            ("pop3", "login", "POP3> AUTH LOGIN"),
            ("pop3", "cram-md5", "POP3> AUTH CRAM-MD5"),
            ("pop3", "scram-sha-1", "POP3> AUTH SCRAM-SHA-1 *"),
        ] {
            let dir = tempdir("trace-stack");
            clear_bob(&s);
            let msg = format!("From: a@localhost\r\nSubject: stack trace\r\n\r\n{BODY_MARK}\r\n");
            put_bob(&s, &dir, "m1", msg.as_bytes());
            let md = dir.join("Maildir");
            let target = format!("maildir = \"{}\"", md.display());
            let extra = format!("auth = \"{auth}\"");
            let config = toml_config(&s, &dir, proto, "starttls", &target, &extra);
            let out = rfetch(&dir, &["-C", config.to_str().expect("utf-8"), "-v", "-v"]);
            let what = format!("rfetch {proto} auth {auth} against the stack");
            let text = check(&what, &out, "bobpw", &Secrets::default(), &mut failures);
            if code(&out) != 0 {
                failures.push(format!("{what}: exit {}:\n{text}", code(&out)));
            }
            let wanted: &[&str] = if proto == "imap" {
                &[
                    "IMAP< * OK",
                    "IMAP> A0001 STARTTLS",
                    login,
                    "octets of message data",
                ]
            } else {
                &["POP3< +OK", "POP3> STLS", login, "octets of message data"]
            };
            expect_lines(&what, &text, wanted, &mut failures);
            let _ = std::fs::remove_dir_all(&dir);
        }
        // rsend: submission, STARTTLS, AUTH LOGIN (username and password in 334 rounds).
        let dir = tempdir("trace-stack-rsend");
        let rc = dir.join("msmtprc");
        common::write_private(
            &rc,
            &format!(
                "account default\nhost localhost\nport {}\ntls on\ntls_starttls on\n\
                 tls_trust_file {}\nauth login\nuser alice\npassword alicepw\n\
                 from alice@localhost\n",
                s.port("SUBMISSION_PORT"),
                s.ca().display()
            ),
        );
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rsend"))
            .args([
                "-C",
                rc.to_str().expect("utf-8"),
                "-v",
                "-v",
                "alice@localhost",
            ])
            .env_remove("HOME")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run rsend");
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write as _;
            let _ = stdin.write_all(format!("Subject: trace\n\n{BODY_MARK}\n").as_bytes());
        }
        let out = child.wait_with_output().expect("wait");
        let what = "rsend against the stack";
        let text = check(what, &out, "alicepw", &Arc::default(), &mut failures);
        if out.status.code() != Some(0) {
            failures.push(format!("{what}: exit {:?}:\n{text}", out.status.code()));
        }
        expect_lines(
            what,
            &text,
            &[
                "SMTP< 220 ",
                "SMTP> STARTTLS",
                "SMTP> AUTH LOGIN",
                "SMTP< 334 <SASL challenge>",
                "SMTP> *",
                "SMTP> MAIL FROM:<alice@localhost>",
                "octets of message data",
            ],
            &mut failures,
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}
