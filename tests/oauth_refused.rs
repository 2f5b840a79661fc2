//! A server that refuses the OAuth2 access token (XOAUTH2, OAUTHBEARER): rsend and rfetch say
//! that the token was refused (expired, revoked, without the mail scope) and where to get a new
//! one, never "check user and password", which would send the user after the wrong thing.

mod common;

use common::rsend::{RSEND, describe, run_program, write_rc};
use common::transcript::Transcript;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_names_the_token(shown: &str, what: &str) {
    assert!(
        shown.contains("refused the OAuth2 access token (XOAUTH2)"),
        "{what}: the error does not name the token: {shown}"
    );
    assert!(
        shown.contains("expired") && shown.contains("revoked"),
        "{what}: {shown}"
    );
    assert!(
        !shown.contains("check user and password"),
        "{what}: a password hint for a refused token: {shown}"
    );
}

#[test]
fn rsend_says_the_server_refused_the_token() {
    let server = Transcript::load("rsend/oauth_refused").play();
    let dir = common::temp_dir("oauth-refused-rsend");
    let rc = write_rc(
        &dir,
        &format!(
            "account default\nhost 127.0.0.1\nport {}\ntls off\nauth xoauth2\nuser bob\n\
             passwordeval echo ya29.expired-token\nfrom bob@example.org\ntimeout 5\n",
            server.port()
        ),
        0o600,
    );
    let out = run_program(
        std::path::Path::new(RSEND),
        &["-C", rc.to_str().expect("utf-8"), "alice@example.org"],
        b"Subject: t\n\nbody\n",
    );
    let shown = stderr(&out);
    assert_eq!(out.status.code(), Some(77), "{}", describe(&out));
    assert_names_the_token(&shown, "rsend");
    assert!(shown.contains("passwordeval"), "rsend: {shown}");
    assert!(shown.contains("postie oauth login"), "rsend: {shown}");
    server.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rfetch_says_the_server_refused_the_token_over_imap_and_pop3() {
    for (protocol, transcript) in [
        ("imap", "sasl/imap_xoauth2_refused"),
        ("pop3", "sasl/pop3_xoauth2_refused"),
    ] {
        let server = Transcript::load(transcript).play();
        let dir = common::temp_dir("oauth-refused-rfetch");
        let md = common::new_maildir(&dir);
        let rc = dir.join("config.toml");
        common::write_private(
            &rc,
            &format!(
                "[accounts.scripted]\nhost = \"127.0.0.1\"\nuser = \"bob\"\n\
                 password = \"ya29.expired-token\"\ntls = false\ntimeout = 5\n\
                 [accounts.scripted.fetch]\nprotocol = \"{protocol}\"\nport = {}\n\
                 auth = \"xoauth2\"\nmaildir = \"{}\"\n",
                server.port(),
                md.display()
            ),
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rfetch"))
            .args(["-C", rc.to_str().expect("utf-8")])
            .env("HOME", &dir)
            .env_remove("FETCHMAILHOME")
            .output()
            .expect("rfetch");
        let shown = stderr(&out);
        assert!(!out.status.success(), "{protocol}: {shown}");
        assert_names_the_token(&shown, protocol);
        assert!(shown.contains("passwordeval"), "{protocol}: {shown}");
        let _ = server.outcome();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
