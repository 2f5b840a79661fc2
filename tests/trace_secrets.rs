//! The real binaries at every verbosity against scripted servers, for every way a credential can
//! go on the wire: rsend with AUTH PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2 and
//! OAUTHBEARER; rfetch with POP3 USER/PASS and APOP, IMAP LOGIN as a quoted string, as a
//! synchronising literal and as a LITERAL+ literal, and AUTHENTICATE PLAIN with and without
//! SASL-IR. All output (stdout and stderr) is searched for the secret in every encoding it could
//! leak in: as text, as a Rust byte list, in base64 at every alignment, in hex, and for every
//! payload the server received in a secret position. At `-v -v` the output must show the
//! protocol as lines (`IMAP< * OK`, `POP3> USER bob`, `SMTP> MAIL FROM:<...>`), never Rust
//! debug structures, and never the message body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Non-ASCII: IMAP must send it as a literal.
const SECRET: &str = "Geh\u{e9}im-\u{df}\u{20ac}-pw!";
/// Printable ASCII: IMAP sends it as a quoted string.
const ASCII_SECRET: &str = "ascii-Secret-pw";
/// A line of the message body that must never show in a trace.
const BODY_MARK: &str = "body-line-that-must-not-be-traced";

/// Payloads the scripted servers received in a secret position (PASS argument, APOP digest,
/// AUTH responses, LOGIN password): none may appear in any output.
type Secrets = Arc<Mutex<Vec<String>>>;

/// One connection on a fresh port, handled by `script` (with a read timeout).
fn serve(script: impl FnOnce(TcpStream) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((sock, _)) = listener.accept() {
            let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
            script(sock);
        }
    });
    port
}

fn read_line(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut buf = Vec::new();
    match r.read_until(b'\n', &mut buf) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(String::from_utf8_lossy(&buf).trim_end().to_string()),
    }
}

fn message() -> String {
    format!("From: a@example.org\r\nTo: bob@example.org\r\nSubject: trace\r\n\r\n{BODY_MARK}\r\n")
}

// ---- SMTP (rsend) ----

fn smtp_server(mech: &'static str, secrets: Secrets) -> u16 {
    serve(move |mut sock| {
        let mut r = BufReader::new(sock.try_clone().expect("clone"));
        let mut say = |s: &str| {
            let _ = sock.write_all(s.as_bytes());
        };
        say("220 scripted ESMTP\r\n");
        while let Some(line) = read_line(&mut r) {
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                say(&format!(
                    "250-scripted\r\n250-AUTH {mech}\r\n250 8BITMIME\r\n"
                ));
            } else if upper.starts_with("AUTH") {
                let words: Vec<&str> = line.split(' ').collect();
                if let Some(ir) = words.get(2) {
                    secrets.lock().expect("lock").push(ir.to_string());
                }
                let mut answer = |challenge: &str| -> Option<String> {
                    say(&format!("334 {challenge}\r\n"));
                    let got = read_line(&mut r)?;
                    secrets.lock().expect("lock").push(got.clone());
                    Some(got)
                };
                match mech {
                    "LOGIN" => {
                        answer("VXNlcm5hbWU6");
                        answer("UGFzc3dvcmQ6");
                        say("235 2.7.0 ok\r\n");
                    }
                    "CRAM-MD5" => {
                        answer(&B64.encode("<1896.697170952@scripted>"));
                        say("235 2.7.0 ok\r\n");
                    }
                    "SCRAM-SHA-256" => {
                        let first = B64
                            .decode(words.get(2).copied().unwrap_or_default())
                            .unwrap_or_default();
                        let first = String::from_utf8_lossy(&first).into_owned();
                        let nonce = first.rsplit("r=").next().unwrap_or("x").to_string();
                        let server_first =
                            format!("r={nonce}srvnonce,s={},i=4096", B64.encode("saltsalt"));
                        answer(&B64.encode(server_first));
                        say("535 5.7.8 no\r\n");
                    }
                    _ => {
                        // Without an initial response the credentials follow an empty
                        // challenge.
                        if words.len() < 3 {
                            answer("");
                        }
                        say("235 2.7.0 ok\r\n");
                    }
                }
            } else if upper.starts_with("MAIL") || upper.starts_with("RCPT") {
                say("250 2.1.0 ok\r\n");
            } else if upper.starts_with("DATA") {
                say("354 go\r\n");
                while let Some(l) = read_line(&mut r) {
                    if l == "." {
                        break;
                    }
                }
                say("250 2.0.0 queued\r\n");
            } else if upper.starts_with("QUIT") {
                say("221 bye\r\n");
                return;
            } else {
                say("502 what\r\n");
            }
        }
    })
}

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

fn pop3_server(secrets: Secrets) -> u16 {
    pop3_server_greeting(secrets, "+OK scripted POP3 <1896.697170952@scripted>\r\n")
}

fn pop3_server_greeting(secrets: Secrets, greeting: &'static str) -> u16 {
    serve(move |mut sock| {
        let mut r = BufReader::new(sock.try_clone().expect("clone"));
        let msg = message();
        let mut say = |s: &str| {
            let _ = sock.write_all(s.as_bytes());
        };
        say(greeting);
        while let Some(line) = read_line(&mut r) {
            let mut words = line.splitn(2, ' ');
            let verb = words.next().unwrap_or_default().to_ascii_uppercase();
            let arg = words.next().unwrap_or_default().to_string();
            match verb.as_str() {
                "CAPA" => say("+OK\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n"),
                "PASS" => {
                    secrets.lock().expect("lock").push(arg);
                    say("+OK logged in\r\n");
                }
                "APOP" => {
                    let digest = arg.rsplit(' ').next().unwrap_or_default().to_string();
                    secrets.lock().expect("lock").push(digest);
                    say("+OK logged in\r\n");
                }
                "AUTH" => {
                    // AUTH MECH [initial]: without one, ask for it with an empty challenge.
                    let initial = arg.split(' ').nth(1).map(str::to_string);
                    let answer = initial.or_else(|| {
                        say("+ \r\n");
                        read_line(&mut r)
                    });
                    secrets
                        .lock()
                        .expect("lock")
                        .push(answer.unwrap_or_default());
                    say("+OK logged in\r\n");
                }
                "USER" | "DELE" | "NOOP" | "RSET" => say("+OK\r\n"),
                "STAT" => say(&format!("+OK 1 {}\r\n", msg.len())),
                "UIDL" => say("+OK\r\n1 uid-1\r\n.\r\n"),
                "LIST" => say(&format!("+OK\r\n1 {}\r\n.\r\n", msg.len())),
                "RETR" => say(&format!("+OK {} octets\r\n{msg}.\r\n", msg.len())),
                "QUIT" => {
                    say("+OK bye\r\n");
                    return;
                }
                _ => say("-ERR unknown\r\n"),
            }
        }
    })
}

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

fn imap_server(flavour: ImapFlavour, secrets: Secrets) -> u16 {
    serve(move |mut sock| {
        let mut r = BufReader::new(sock.try_clone().expect("clone"));
        let msg = message();
        let caps = match flavour {
            ImapFlavour::Plain => "IMAP4rev1 UIDPLUS",
            ImapFlavour::LiteralPlus => "IMAP4rev1 UIDPLUS LITERAL+",
            ImapFlavour::SaslIr => "IMAP4rev1 UIDPLUS LOGINDISABLED AUTH=PLAIN SASL-IR",
            ImapFlavour::SaslNoIr => "IMAP4rev1 UIDPLUS LOGINDISABLED AUTH=PLAIN",
            ImapFlavour::OAuth => "IMAP4rev1 UIDPLUS AUTH=XOAUTH2 AUTH=OAUTHBEARER SASL-IR",
        };
        let _ = sock.write_all(format!("* OK [CAPABILITY {caps}] scripted\r\n").as_bytes());
        while let Some(mut line) = read_line(&mut r) {
            // A command with a literal: read it (after a continuation unless LITERAL+).
            while line.ends_with('}') {
                let Some(open) = line.rfind('{') else { break };
                let spec = line[open + 1..line.len() - 1].to_string();
                let (digits, plus) = match spec.strip_suffix('+') {
                    Some(d) => (d.to_string(), true),
                    None => (spec.clone(), false),
                };
                let Ok(n) = digits.parse::<usize>() else {
                    break;
                };
                if !plus {
                    let _ = sock.write_all(b"+ go ahead\r\n");
                }
                let mut lit = vec![0u8; n];
                if r.read_exact(&mut lit).is_err() {
                    return;
                }
                secrets
                    .lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&lit).into_owned());
                let rest = read_line(&mut r).unwrap_or_default();
                line = format!("{}\"\"{rest}", &line[..open]);
            }
            let mut words = line.splitn(3, ' ');
            let tag = words.next().unwrap_or_default().to_string();
            let verb = words.next().unwrap_or_default().to_ascii_uppercase();
            let rest = words.next().unwrap_or_default().to_string();
            let reply = match verb.as_str() {
                "CAPABILITY" => format!("* CAPABILITY {caps}\r\n{tag} OK done\r\n"),
                "LOGIN" => {
                    if let Some(q) = rest.find(" \"") {
                        secrets
                            .lock()
                            .expect("lock")
                            .push(rest[q + 1..].to_string());
                    }
                    format!("{tag} OK [CAPABILITY {caps}] logged in\r\n")
                }
                "AUTHENTICATE" => {
                    match rest.split(' ').nth(1) {
                        Some(ir) => secrets.lock().expect("lock").push(ir.to_string()),
                        None => {
                            let _ = sock.write_all(b"+ \r\n");
                            let Some(resp) = read_line(&mut r) else {
                                return;
                            };
                            secrets.lock().expect("lock").push(resp);
                        }
                    }
                    format!("{tag} OK [CAPABILITY {caps}] logged in\r\n")
                }
                "SELECT" | "EXAMINE" => format!(
                    "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 6] ok\r\n{tag} OK [READ-WRITE] selected\r\n"
                ),
                "UID" => {
                    let sub = rest
                        .split(' ')
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    match sub.as_str() {
                        "SEARCH" => format!("* SEARCH 5\r\n{tag} OK searched\r\n"),
                        "FETCH" if rest.contains("BODY.PEEK[]") => format!(
                            "* 1 FETCH (UID 5 RFC822.SIZE {} FLAGS () BODY[] {{{}}}\r\n{msg})\r\n{tag} OK fetched\r\n",
                            msg.len(),
                            msg.len()
                        ),
                        "FETCH" => format!(
                            "* 1 FETCH (UID 5 RFC822.SIZE {} FLAGS ())\r\n{tag} OK fetched\r\n",
                            msg.len()
                        ),
                        _ => format!("{tag} OK done\r\n"),
                    }
                }
                "LOGOUT" => {
                    let _ = sock.write_all(format!("* BYE bye\r\n{tag} OK bye\r\n").as_bytes());
                    return;
                }
                _ => format!("{tag} OK done\r\n"),
            };
            if sock.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    })
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
            let secrets: Secrets = Arc::default();
            let port = smtp_server(mech, Arc::clone(&secrets));
            let out = run_rsend(mech, port, level);
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
    for (auth, login) in [
        ("auth = \"password\"", "POP3> PASS *"),
        ("", "POP3> APOP bob *"),
        ("auth = \"plain\"", "POP3> AUTH PLAIN *"),
        ("auth = \"xoauth2\"", "POP3> AUTH XOAUTH2"),
        ("auth = \"oauthbearer\"", "POP3> AUTH OAUTHBEARER *"),
    ] {
        for level in RFETCH_LEVELS {
            let secrets: Secrets = Arc::default();
            let port = pop3_server(Arc::clone(&secrets));
            let out = run_rfetch("pop3", port, SECRET, false, level, auth);
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
            let secrets: Secrets = Arc::default();
            let port = imap_server(flavour, Arc::clone(&secrets));
            let out = run_rfetch("imap", port, secret, true, level, auth);
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
    let secrets: Secrets = Arc::default();
    let port = pop3_server_greeting(
        Arc::clone(&secrets),
        "+OK hi\x1b[2J\x1b]0;title\x07\rrfetch: 99 messages forged\u{202e}\r\n",
    );
    let out = run_rfetch("pop3", port, SECRET, true, &["-v", "-v"], "");
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
    let secrets: Secrets = Arc::default();
    let port = imap_server(ImapFlavour::Plain, Arc::clone(&secrets));
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
