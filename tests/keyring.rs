//! The system keyring for real: a headless gnome-keyring (Secret Service) in a private D-Bus
//! session. A password stored with `secret-tool` under msmtp's attributes is used by rsend with an
//! msmtprc that has no password line (against the stack's Postfix submission); `postie keyring
//! store` stores one (from stdin, never argv) that `passwordkeyring` finds; without a session bus
//! the error says so and names the alternatives. Needs dbus-daemon, gnome-keyring and
//! libsecret-tools (tests/stack/stack.sh deps tests).

mod common;
use common::keyring::Keyring;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn msmtprc(dir: &Path, stack: &common::Stack, extra: &str) -> PathBuf {
    let rc = dir.join("msmtprc");
    std::fs::write(
        &rc,
        format!(
            "account default\nhost 127.0.0.1\nport {}\ntls on\ntls_starttls on\ntls_trust_file {}\n\
             auth plain\nuser alice\nfrom alice@localhost\n{extra}",
            stack.port("SUBMISSION_PORT"),
            stack.ca().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    rc
}

fn rsend(cmd: &mut Command, rc: &Path) -> std::process::Output {
    let mut child = cmd
        .arg("-C")
        .arg(rc)
        .arg("-v")
        .arg("bob@localhost")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: keyring\n\npassword from the keyring\n")
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn secret_tool_password_under_msmtp_attributes_is_used_by_rsend_unchanged() {
    let stack = common::Stack::get();
    let k = Keyring::start("msmtp");
    // Exactly what msmtp's documentation tells users to run.
    assert!(k.secret_tool(
        &[
            "store",
            "--label=msmtp password",
            "host",
            "127.0.0.1",
            "service",
            "smtp",
            "user",
            "alice"
        ],
        "alicepw"
    ));
    let rc = msmtprc(&k.dir, &stack, "");
    let out = rsend(&mut k.command(env!("CARGO_BIN_EXE_rsend")), &rc);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rsend: {err}");
    assert!(err.contains("AUTH PLAIN"), "{err}");
    assert!(!err.contains("alicepw"), "the password in -v output");

    // A wrong keyring password is what the server refuses: proof that the keyring was used.
    assert!(k.secret_tool(
        &[
            "store",
            "--label=msmtp password",
            "host",
            "127.0.0.1",
            "service",
            "smtp",
            "user",
            "alice"
        ],
        "wrong"
    ));
    let out = rsend(&mut k.command(env!("CARGO_BIN_EXE_rsend")), &rc);
    assert!(!out.status.success());
}

#[test]
fn postie_keyring_store_then_passwordkeyring() {
    let stack = common::Stack::get();
    let k = Keyring::start("store");
    let mut child = k
        .command(env!("CARGO_BIN_EXE_postie"))
        .args([
            "keyring",
            "store",
            "--host",
            "127.0.0.1",
            "--user",
            "alice",
            "--service",
            "imap",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"alicepw\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        k.lookup(&["host", "127.0.0.1", "service", "imap", "user", "alice"]),
        "alicepw",
        "stored under msmtp's attributes, newline removed"
    );
    // passwordkeyring with explicit attributes (the IMAP item) for the SMTP account.
    let rc = msmtprc(
        &k.dir,
        &stack,
        "passwordkeyring host=127.0.0.1 service=imap user=alice\n",
    );
    let out = rsend(&mut k.command(env!("CARGO_BIN_EXE_rsend")), &rc);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn passwordkeyring_without_a_keyring_names_the_alternatives() {
    let stack = common::Stack::get();
    let dir = std::env::temp_dir().join(format!("postie-keyring-none-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rc = msmtprc(&dir, &stack, "passwordkeyring on\n");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsend"));
    cmd.env("HOME", &dir)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_RUNTIME_DIR", dir.join("no-such-dir"));
    let out = rsend(&mut cmd, &rc);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no system keyring is available"), "{err}");
    assert!(
        err.contains("passwordeval") && err.contains("netrc"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rfetch_finds_the_imap_password_under_service_imap() {
    let stack = common::Stack::get();
    let k = Keyring::start("rfetch");
    // What `secret-tool store ... service imap` (or postie keyring store --service imap) makes.
    assert!(k.secret_tool(
        &[
            "store",
            "--label=imap",
            "host",
            "127.0.0.1",
            "service",
            "imap",
            "user",
            "bob"
        ],
        "bobpw"
    ));
    let rc = k.dir.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "poll 127.0.0.1 proto imap port {} user bob ssl sslcertfile \"{}\" sslcommonname localhost keep\n",
            stack.port("IMAPS_PORT"),
            stack.ca().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    // -c only counts the messages: it needs the login and changes nothing.
    let out = k
        .command(env!("CARGO_BIN_EXE_rfetch"))
        .args(["-c", "-f"])
        .arg(&rc)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // 0: messages waiting, 1: none; both mean the login worked (3 would be a refused login).
    assert!(matches!(out.status.code(), Some(0 | 1)), "rfetch -c: {err}");
}
