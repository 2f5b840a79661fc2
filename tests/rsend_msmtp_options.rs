//! msmtp's remaining connection and header options, seen on the wire by a scripted SMTP server
//! that records the envelope, the DATA bytes and the client's address: `socket`/`--socket` (a
//! Unix-domain socket instead of host and port), `--source-ip`, `--keepbcc`,
//! `--undisclosed-recipients`, `--add-missing-from-header`, `--add-missing-date-header`,
//! `--logfile-time-format`; and the `EMAIL`/`SMTPSERVER` fallback when no account applies.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::recorder::{Heard, tcp_server, unix_server, wait};
use common::rsend::{RSEND, TempDir, describe, run_command, show, write_rc};

fn write_account(dir: &Path, place: &str, extra: &str) -> PathBuf {
    write_rc(
        dir,
        &format!(
            "account default\n{place}\ntls off\nauth off\nfrom alice@localhost\ntimeout 5\n{extra}"
        ),
        0o600,
    )
}

fn run_rsend(rc: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut command = Command::new(RSEND);
    command
        .arg("-C")
        .arg(rc)
        .args(args)
        .env_remove("HOME")
        .env_remove("EMAIL");
    run_command(command, input)
}

/// Runs rsend against a fresh TCP recording server.
fn exchange(extra: &str, args: &[&str], input: &[u8]) -> (Output, Heard) {
    let (port, heard) = tcp_server();
    let dir = TempDir::new("msmtp-opts");
    let rc = write_account(dir.path(), &format!("host 127.0.0.1\nport {port}"), extra);
    let out = run_rsend(&rc, args, input);
    (out, wait(port, heard))
}

fn assert_ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", describe(out));
}

const MESSAGE: &[u8] =
    b"From: alice@localhost\nTo: to@x.test\nCc: cc@x.test\nBcc: hidden@x.test\nSubject: s\n\nbody\n";

#[test]
fn socket_submits_over_a_unix_socket() {
    let dir = TempDir::new("msmtp-socket");
    let path = dir.path().join("smtp.sock");
    let heard = unix_server(&path);
    // No host at all: the socket is where the server is.
    let rc = write_account(
        dir.path(),
        &format!("socket {}", path.display()),
        "logfile -\n",
    );
    let out = run_rsend(&rc, &["-t"], MESSAGE);
    assert_ok(&out);
    let heard = heard.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(heard.rcpts, ["to@x.test", "cc@x.test", "hidden@x.test"]);
    assert!(heard.header().contains("Subject: s\r\n"));
    let log = show(&out.stdout);
    assert!(
        log.contains(&format!("socket={} tls=off", path.display())),
        "{log}"
    );

    // --socket overrides the configured host and port (which refuse).
    let path2 = dir.path().join("smtp2.sock");
    let heard = unix_server(&path2);
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rc = write_account(dir.path(), &format!("host 127.0.0.1\nport {refused}"), "");
    let socket = format!("--socket={}", path2.display());
    let out = run_rsend(&rc, &[&socket, "bob@x.test"], b"Subject: t\n\nx\n");
    assert_ok(&out);
    assert_eq!(
        heard.recv_timeout(Duration::from_secs(20)).unwrap().rcpts,
        ["bob@x.test"]
    );

    // A socket nobody listens on: a connection error naming it, exit 75.
    let missing = dir.path().join("nobody.sock");
    let socket = format!("--socket={}", missing.display());
    let out = run_rsend(&rc, &[&socket, "bob@x.test"], b"Subject: t\n\nx\n");
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(
        show(&out.stderr).contains(&missing.display().to_string()),
        "{}",
        describe(&out)
    );
}

#[test]
fn source_ip_binds_the_client_address() {
    let (out, heard) = exchange(
        "",
        &["--source-ip=127.0.0.2", "a@x.test"],
        b"Subject: s\n\nb\n",
    );
    assert_ok(&out);
    assert_eq!(heard.client.as_deref(), Some("127.0.0.2"));
    let (out, heard) = exchange("source_ip 127.0.0.3\n", &["a@x.test"], b"Subject: s\n\nb\n");
    assert_ok(&out);
    assert_eq!(heard.client.as_deref(), Some("127.0.0.3"));
}

#[test]
fn keepbcc_keeps_the_bcc_header() {
    let (out, heard) = exchange("", &["-t"], MESSAGE);
    assert_ok(&out);
    assert!(!heard.has_field("Bcc"), "{}", heard.header());
    let (out, heard) = exchange("", &["-t", "--keepbcc"], MESSAGE);
    assert_ok(&out);
    assert!(
        heard.header().contains("Bcc: hidden@x.test\r\n"),
        "{}",
        heard.header()
    );
    // --keepbcc=off is remove_bcc_headers on, over a keepbcc in the file.
    let (out, heard) = exchange("keepbcc on\n", &["-t", "--keepbcc=off"], MESSAGE);
    assert_ok(&out);
    assert!(!heard.has_field("Bcc"), "{}", heard.header());
}

#[test]
fn undisclosed_recipients_replaces_to_and_cc() {
    let (out, heard) = exchange("", &["-t", "--undisclosed-recipients"], MESSAGE);
    assert_ok(&out);
    let header = heard.header();
    assert!(
        header.contains("To: undisclosed-recipients:;\r\n"),
        "{header}"
    );
    assert!(
        !heard.has_field("Cc") && !heard.has_field("Bcc"),
        "{header}"
    );
    assert_eq!(heard.rcpts, ["to@x.test", "cc@x.test", "hidden@x.test"]);
    assert_eq!(header.matches("To:").count(), 1, "exactly one To: {header}");
}

#[test]
fn add_missing_from_and_date_headers() {
    let bare = b"Subject: s\n\nbody\n";
    let (out, heard) = exchange("", &["a@x.test"], bare);
    assert_ok(&out);
    assert!(
        heard.has_field("From") && heard.has_field("Date"),
        "{}",
        heard.header()
    );
    let (out, heard) = exchange(
        "",
        &[
            "--add-missing-from-header=off",
            "--add-missing-date-header=off",
            "a@x.test",
        ],
        bare,
    );
    assert_ok(&out);
    assert!(
        !heard.has_field("From") && !heard.has_field("Date"),
        "{}",
        heard.header()
    );
    // On again from the command line over off in the file.
    let (out, heard) = exchange(
        "add_missing_from_header off\nadd_missing_date_header off\n",
        &[
            "--add-missing-from-header",
            "--add-missing-date-header",
            "a@x.test",
        ],
        bare,
    );
    assert_ok(&out);
    assert!(
        heard.has_field("From") && heard.has_field("Date"),
        "{}",
        heard.header()
    );
}

#[test]
fn logfile_time_format() {
    let (out, _) = exchange(
        "logfile -\n",
        &["--logfile-time-format=none", "a@x.test"],
        b"Subject: s\n\nb\n",
    );
    assert_ok(&out);
    let line = show(&out.stdout);
    assert!(line.starts_with("host=127.0.0.1 "), "{}", describe(&out));
    // msmtp's fields: the code, and the reply line with its code.
    assert!(
        line.contains(" smtpstatus=250 smtpmsg='250 2.0.0 queued as RECORDED' exitcode=EX_OK"),
        "{line}"
    );
    let (out, _) = exchange(
        "logfile -\n",
        &["--logfile-time-format=[%Y]", "a@x.test"],
        b"Subject: s\n\nb\n",
    );
    assert_ok(&out);
    let year = chrono_free_year();
    assert!(
        show(&out.stdout).starts_with(&format!("[{year}] host=")),
        "{}",
        describe(&out)
    );
    // Not a strftime format: a usage error before anything is sent, not a crash after.
    let (out, heard) = exchange(
        "logfile -\n",
        &["--logfile-time-format=%Q", "a@x.test"],
        b"Subject: s\n\nb\n",
    );
    assert_eq!(out.status.code(), Some(78), "{}", describe(&out));
    assert!(heard.data.is_none());
    assert!(
        show(&out.stderr).contains("logfile-time-format"),
        "{}",
        describe(&out)
    );
}

/// The current year from `date`, so the test does not need a clock library.
fn chrono_free_year() -> String {
    let out = Command::new("date").arg("+%Y").output().expect("date");
    show(&out.stdout).trim().to_string()
}

/// Runs rsend with a configuration that has no default account, `SMTPSERVER=127.0.0.1` and
/// `EMAIL` as given; the port comes from the command line, as msmtp allows.
fn environment_exchange(email: Option<&str>, args: &[&str]) -> (Output, Heard) {
    let (port, heard) = tcp_server();
    let dir = TempDir::new("msmtp-env");
    let rc = write_rc(
        dir.path(),
        "account other\nhost 192.0.2.1\nfrom other@x.test\n",
        0o600,
    );
    let port_arg = format!("--port={port}");
    let mut command = Command::new(RSEND);
    command
        .arg("-C")
        .arg(&rc)
        .args([port_arg.as_str(), "--tls=off", "--auth=off", "--timeout=5"])
        .args(args)
        .env_remove("HOME")
        .env("SMTPSERVER", "127.0.0.1");
    match email {
        Some(e) => command.env("EMAIL", e),
        None => command.env_remove("EMAIL"),
    };
    let out = run_command(command, b"Subject: env\n\nbody\n");
    (out, wait(port, heard))
}

#[test]
fn email_and_smtpserver_apply_when_no_account_does() {
    let (out, heard) = environment_exchange(Some("env@x.test"), &["to@x.test"]);
    assert_ok(&out);
    assert_eq!(heard.mail_from.as_deref(), Some("env@x.test"));
    assert_eq!(heard.rcpts, ["to@x.test"]);
    // -f replaces EMAIL, and is enough without it.
    let (out, heard) = environment_exchange(None, &["-f", "cli@x.test", "to@x.test"]);
    assert_ok(&out);
    assert_eq!(heard.mail_from.as_deref(), Some("cli@x.test"));
    // Neither EMAIL nor -f: no account (78), nothing sent.
    let (out, heard) = environment_exchange(None, &["to@x.test"]);
    assert_eq!(out.status.code(), Some(78), "{}", describe(&out));
    assert!(
        show(&out.stderr).contains("account default not found"),
        "{}",
        describe(&out)
    );
    assert!(heard.mail_from.is_none());
    // EMAIL is an injection point like any configured address.
    let (out, heard) =
        environment_exchange(Some("a@x.test\r\nRCPT TO:<evil@x.test>"), &["to@x.test"]);
    assert_eq!(out.status.code(), Some(78), "{}", describe(&out));
    assert!(
        show(&out.stderr).contains("environment variable EMAIL"),
        "{}",
        describe(&out)
    );
    assert!(heard.mail_from.is_none() && heard.rcpts.is_empty());
    // An account selected by name never falls back.
    let (out, heard) = environment_exchange(Some("env@x.test"), &["-a", "missing", "to@x.test"]);
    assert_eq!(out.status.code(), Some(78), "{}", describe(&out));
    assert!(heard.mail_from.is_none());
}
