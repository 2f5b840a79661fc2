//! How the binaries take the auth settings and the cleartext rule: rfetch and rsend send a
//! password without TLS to a local bridge reached by a host name that resolves to 127.0.0.1,
//! without the danger switch, and say at -v that the loopback peer address allowed it; an
//! `auth` rfetch cannot do (GSSAPI, Kerberos, NTLM, OTP, MSN) is a configuration error naming
//! the file and line, in a fetchmailrc and in the TOML config, before anything is contacted.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir =
        std::env::temp_dir().join(format!("postie-auth-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write config");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// One connection: greets, then answers each line with `reply(line)` (None ends it).
fn serve(greeting: &'static str, reply: fn(&str) -> Option<String>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let Ok((mut sock, _)) = listener.accept() else {
            return;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
        let mut r = BufReader::new(TcpStream::try_clone(&sock).expect("clone"));
        let _ = sock.write_all(greeting.as_bytes());
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            let Some(answer) = reply(line.trim_end()) else {
                return;
            };
            line.clear();
            if sock.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    });
    port
}

fn pop3(line: &str) -> Option<String> {
    let verb = line
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    Some(match verb.as_str() {
        "CAPA" => "+OK\r\nUSER\r\nUIDL\r\n.\r\n".into(),
        "UIDL" | "LIST" => "+OK\r\n.\r\n".into(),
        "STAT" => "+OK 0 0\r\n".into(),
        "QUIT" => "+OK bye\r\n".into(),
        _ => "+OK\r\n".into(),
    })
}

fn smtp(line: &str) -> Option<String> {
    let verb = line
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    Some(match verb.as_str() {
        "EHLO" => "250-bridge\r\n250 AUTH PLAIN LOGIN\r\n".into(),
        "AUTH" => "235 2.7.0 ok\r\n".into(),
        "DATA" => "354 go\r\n".into(),
        "." => "250 2.0.0 queued\r\n".into(),
        "QUIT" => "221 bye\r\n".into(),
        // message lines get no answer of their own
        _ if line.contains(':') && !line.starts_with("MAIL") && !line.starts_with("RCPT") => {
            String::new()
        }
        "" => String::new(),
        _ => "250 ok\r\n".into(),
    })
}

fn rfetch(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rfetch"))
        .args(args)
        .env("HOME", dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run rfetch")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn rfetch_sends_the_password_to_a_loopback_bridge_and_says_why() {
    let port = serve("+OK bridge ready\r\n", pop3);
    let dir = temp_dir("rfetch");
    let md = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).expect("maildir");
    }
    let config = dir.join("config.toml");
    write_private(
        &config,
        &format!(
            "[accounts.bridge]\nhost = \"localhost\"\nuser = \"bob\"\npassword = \"pw\"\n\
             tls = false\ntimeout = 5\n[accounts.bridge.fetch]\nprotocol = \"pop3\"\n\
             port = {port}\nauth = \"password\"\nmaildir = \"{}\"\n",
            md.display()
        ),
    );
    let out = rfetch(&dir, &["-C", config.to_str().expect("utf-8"), "-v"]);
    let text = stderr(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "no mail is exit 1: {text}");
    assert!(
        text.contains("with USER/PASS without TLS: the peer address")
            && text.contains("is a loopback address"),
        "{text}"
    );
}

#[test]
fn rsend_sends_the_password_to_a_loopback_bridge_and_says_why() {
    let port = serve("220 bridge ESMTP\r\n", smtp);
    let dir = temp_dir("rsend");
    let rc = dir.join("msmtprc");
    write_private(
        &rc,
        &format!(
            "account default\nhost localhost\nport {port}\ntls off\nauth plain\nuser alice\n\
             password pw\nfrom alice@localhost\ntimeout 5\n"
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsend"))
        .args(["-C", rc.to_str().expect("utf-8"), "-v", "bob@example.org"])
        .env_remove("HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rsend");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"Subject: bridge\n\nhello\n");
    }
    let out = child.wait_with_output().expect("wait");
    let text = stderr(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("with PLAIN without TLS: the peer address") && text.contains("loopback"),
        "{text}"
    );
}

/// Runs rfetch on a config file `name` holding `text`; asserts that it fails before
/// contacting anything and names `name:line` and `auth`.
fn refused_config(name: &str, text: &str, flag: &str, line: u32, auth: &str) {
    let dir = temp_dir("config");
    let path = dir.join(name);
    write_private(&path, text);
    let out = rfetch(&dir, &[flag, path.to_str().expect("utf-8")]);
    let shown = stderr(&out);
    let _ = std::fs::remove_dir_all(&dir);
    let at = format!("{}:{line}", path.display());
    assert!(
        shown.contains(&at) && shown.contains(auth),
        "{auth}: {shown}"
    );
    assert_ne!(out.status.code(), Some(0), "{auth}: {shown}");
}

#[test]
fn unsupported_auth_is_a_config_error_naming_the_line() {
    for auth in ["gssapi", "kerberos_v5", "kerberos", "ntlm", "otp", "msn"] {
        let rc = format!(
            "set no syslog\npoll mail.example.org proto imap\n  auth {auth}\n  user u pass p\n"
        );
        refused_config("fetchmailrc", &rc, "-f", 3, auth);
    }
    for auth in ["gssapi", "ntlm", "digest-md5"] {
        let toml = format!(
            "[accounts.a]\nhost = \"mail.example.org\"\nuser = \"u\"\npassword = \"p\"\n\
             [accounts.a.fetch]\nprotocol = \"imap\"\nauth = \"{auth}\"\nmaildir = \"/nonexistent\"\n"
        );
        refused_config("config.toml", &toml, "-C", 7, auth);
    }
}

#[test]
fn the_auth_option_is_used_and_checked() {
    let dir = temp_dir("cli");
    let config = dir.join("config.toml");
    let text = format!(
        "[accounts.a]\nhost = \"127.0.0.1\"\nuser = \"u\"\npassword = \"p\"\ntls = false\n\
         [accounts.a.fetch]\nprotocol = \"pop3\"\nport = 9\nmaildir = \"{}\"\n",
        dir.join("md").display()
    );
    write_private(&config, &text);
    let path = config.to_str().expect("utf-8");
    let out = rfetch(&dir, &["-C", path, "--auth", "gssapi"]);
    let shown = stderr(&out);
    assert!(shown.contains("--auth gssapi is refused"), "{shown}");
    assert_ne!(out.status.code(), Some(0), "{shown}");

    // A supported value reaches the login: `--auth password` against the loopback bridge.
    let port = serve("+OK bridge ready\r\n", pop3);
    write_private(
        &config,
        &text.replace("port = 9", &format!("port = {port}")),
    );
    let out = rfetch(&dir, &["-C", path, "--auth", "password", "-v"]);
    let shown = stderr(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(shown.contains("with USER/PASS without TLS"), "{shown}");
}
