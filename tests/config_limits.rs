//! Durations from configuration files and command lines: a number of seconds too large to add
//! to the clock is refused where it was written (file:line, or the option), instead of
//! panicking an account thread later (which made a daemon exit 0 as if it had been stopped).

mod common;

use common::temp_dir as tempdir;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use postie::account::Env;
use postie::config::fetchmailrc::parse_fetchmailrc;
use postie::config::{msmtprc, toml};

const HUGE: &str = "9223372036854775807"; // i64::MAX
const HUGER: &str = "18446744073709551615"; // u64::MAX

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).expect("write");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
    p
}

#[test]
fn fetchmailrc_durations_beyond_the_limit_are_refused_at_their_line() {
    let path = Path::new("/h/.fetchmailrc");
    for (text, line, word) in [
        (format!("set daemon {HUGE}\n"), 1, "set daemon"),
        (
            format!("poll a proto pop3\n  timeout {HUGE} user u password p\n"),
            2,
            "timeout",
        ),
        (
            format!("poll a proto imap user u password p\n  idletimeout {HUGE}\n"),
            2,
            "idletimeout",
        ),
        (
            format!("poll a proto pop3 interval {HUGE} user u password p\n"),
            1,
            "interval",
        ),
        (
            format!("poll a proto pop3 user u password p warnings {HUGE}\n"),
            1,
            "warnings",
        ),
    ] {
        let e = parse_fetchmailrc(&text, path).expect_err(&text);
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("/h/.fetchmailrc:{line}: ")) && shown.contains(word),
            "{text:?}: {shown}"
        );
    }
    // The largest accepted value still parses.
    let rc = parse_fetchmailrc("set daemon 2147483647\n", path).expect("at the limit");
    assert_eq!(rc.globals.daemon.map(|d| d.value), Some(2_147_483_647));
}

#[test]
fn toml_and_msmtprc_durations_beyond_the_limit_are_refused_at_their_line() {
    let env = Env::default();
    let path = Path::new("/h/config.toml");
    for (text, line) in [
        (format!("[accounts.a]\nhost = \"h\"\ntimeout = {HUGE}\n"), 3),
        (
            format!(
                "[accounts.a.fetch]\nprotocol = \"imap\"\nhost = \"h\"\nidle_timeout = {HUGE}\n"
            ),
            4,
        ),
    ] {
        let e = toml::parse(&text, path, &env).expect_err(&text);
        assert!(
            e.to_string()
                .starts_with(&format!("/h/config.toml:{line}:")),
            "{text:?}: {e}"
        );
    }
    let rc = Path::new("/h/.msmtprc");
    let text = format!("account a\nhost h\ntimeout {HUGER}\n");
    let e = msmtprc::parse(&text, rc, &env, &mut |_| Err("no eval".into())).expect_err("huge");
    assert!(e.to_string().starts_with("/h/.msmtprc:3: "), "{e}");
}

fn rfetch(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rfetch"))
        .args(args)
        .env("HOME", dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rfetch");
    // A daemon that survived its configuration is a failure too; never let it hang the test.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap");
            panic!("rfetch {args:?} still running: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn shown(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn rfetch_with_a_huge_daemon_interval_refuses_to_start() {
    let dir = tempdir("rc");
    // Nothing listens on port 1: the poll fails harmlessly, then the daemon would sleep.
    let rc = write(
        &dir,
        "rc",
        &format!("set daemon {HUGE}\npoll 127.0.0.1 proto pop3 port 1 user u password p\n"),
    );
    let o = rfetch(&dir, &["-f", rc.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(5), "{}", shown(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("{}:1:", rc.display())),
        "{}",
        shown(&o)
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn rfetch_with_a_huge_idle_timeout_refuses_to_start() {
    let dir = tempdir("toml");
    let cfg = write(
        &dir,
        "config.toml",
        &format!(
            "[accounts.a.fetch]\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = 1\nuser = \"u\"\n\
             password = \"p\"\nidle = true\nidle_timeout = {HUGE}\nmaildir = \"{}\"\n",
            dir.join("Maildir").display()
        ),
    );
    let o = rfetch(&dir, &["-d", "60", "-C", cfg.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(5), "{}", shown(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("{}:8:", cfg.display())),
        "{}",
        shown(&o)
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn command_line_durations_beyond_the_limit_are_refused() {
    let dir = tempdir("cli");
    let cfg = write(
        &dir,
        "config.toml",
        &format!(
            "[accounts.a.fetch]\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = 1\nuser = \"u\"\n\
             password = \"p\"\nmaildir = \"{}\"\n",
            dir.join("Maildir").display()
        ),
    );
    for flag in ["-d", "-t"] {
        let o = rfetch(&dir, &[flag, HUGE, "-C", cfg.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(5), "rfetch {flag}: {}", shown(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("2147483647"),
            "rfetch {flag} names the limit: {}",
            shown(&o)
        );
    }
    let o = Command::new(env!("CARGO_BIN_EXE_rsend"))
        .args([
            "--host=127.0.0.1",
            "--port=1",
            &format!("--timeout={HUGE}"),
            "x@y",
        ])
        .env("HOME", &dir)
        .stdin(Stdio::null())
        .output()
        .expect("rsend");
    assert_eq!(o.status.code(), Some(78), "{}", shown(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--timeout"),
        "{}",
        shown(&o)
    );
    let _ = fs::remove_dir_all(&dir);
}
