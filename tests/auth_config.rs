//! How the binaries take the auth settings and the cleartext rule: rfetch and rsend send a
//! password without TLS to a local bridge reached by a host name that resolves to 127.0.0.1,
//! without the danger switch, and say at -v that the loopback peer address allowed it; an
//! `auth` rfetch cannot do (GSSAPI, Kerberos, NTLM, OTP, MSN) is a configuration error naming
//! the file and line, in a fetchmailrc and in the TOML config, before anything is contacted.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::rfetch::rfetch;
use common::transcript::Transcript;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn rfetch_sends_the_password_to_a_loopback_bridge_and_says_why() {
    let server = Transcript::load_with("bridge/pop3", &[("USER", "bob"), ("PASS", "pw")]).play();
    let port = server.port();
    let dir = common::temp_dir("rfetch");
    let md = common::new_maildir(&dir);
    let config = dir.join("config.toml");
    common::write_private(
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
    server.finish();
}

#[test]
fn rsend_sends_the_password_to_a_loopback_bridge_and_says_why() {
    let server = Transcript::load("bridge/smtp").play();
    let port = server.port();
    let dir = common::temp_dir("rsend");
    let rc = dir.join("msmtprc");
    common::write_private(
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
    server.finish();
}

/// Runs rfetch on a config file `name` holding `text`; asserts that it fails before
/// contacting anything and names `name:line` and `auth`.
fn refused_config(name: &str, text: &str, flag: &str, line: u32, auth: &str) {
    let dir = common::temp_dir("config");
    let path = dir.join(name);
    common::write_private(&path, text);
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
    let dir = common::temp_dir("cli");
    let config = dir.join("config.toml");
    let text = format!(
        "[accounts.a]\nhost = \"127.0.0.1\"\nuser = \"u\"\npassword = \"p\"\ntls = false\n\
         [accounts.a.fetch]\nprotocol = \"pop3\"\nport = 9\nmaildir = \"{}\"\n",
        dir.join("md").display()
    );
    common::write_private(&config, &text);
    let path = config.to_str().expect("utf-8");
    let out = rfetch(&dir, &["-C", path, "--auth", "gssapi"]);
    let shown = stderr(&out);
    assert!(shown.contains("--auth gssapi is refused"), "{shown}");
    assert_ne!(out.status.code(), Some(0), "{shown}");

    // A supported value reaches the login: `--auth password` against the loopback bridge.
    let server = Transcript::load_with("bridge/pop3", &[("USER", "u"), ("PASS", "p")]).play();
    let port = server.port();
    common::write_private(
        &config,
        &text.replace("port = 9", &format!("port = {port}")),
    );
    let out = rfetch(&dir, &["-C", path, "--auth", "password", "-v"]);
    let shown = stderr(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(shown.contains("with USER/PASS without TLS"), "{shown}");
    server.finish();
}
