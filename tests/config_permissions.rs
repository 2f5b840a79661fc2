//! Config-file permissions are checked before any command from the file runs (`eval`,
//! `passwordeval`): a file that fails the rule is refused with nothing executed. Each command
//! here touches a marker file; the marker must not exist afterwards.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use postie::ErrorKind;
use postie::account::Env;
use postie::config::{self, ConfigErrorKind};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "postie-perms-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("home")).expect("home");
        fs::create_dir_all(dir.join("etc")).expect("etc");
        TempDir(dir)
    }

    fn env(&self) -> Env {
        Env {
            home: Some(self.0.join("home")),
            sysconfdir: self.0.join("etc"),
            ..Default::default()
        }
    }

    fn write(&self, rel: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.0.join(rel);
        fs::write(&p, text).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    fn marker(&self) -> PathBuf {
        self.0.join("marker")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn readable_msmtprc_with_a_password_runs_no_eval_line() {
    let t = TempDir::new("eval");
    let rc = t.write(
        "home/.msmtprc",
        &format!(
            "account a\nhost h\nuser u\npassword secret\neval touch {} && echo port 2525\n",
            t.marker().display()
        ),
        0o644,
    );
    let e = config::load_msmtprc(&t.env(), Some(&rc)).expect_err("0644 with a password");
    assert_eq!(e.kind, ConfigErrorKind::Insecure, "{e}");
    assert!(!t.marker().exists(), "the eval line ran before the check");
    // Mode 600: the same file loads and its eval line runs.
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).expect("chmod");
    config::load_msmtprc(&t.env(), Some(&rc)).expect("0600");
    assert!(t.marker().exists());
}

#[test]
fn writable_msmtprc_with_an_eval_line_is_refused_before_it_runs() {
    let t = TempDir::new("evalw");
    for mode in [0o664, 0o646, 0o666] {
        let rc = t.write(
            "home/.msmtprc",
            &format!(
                "account a\nhost h\neval touch {} && echo port 2525\n",
                t.marker().display()
            ),
            mode,
        );
        let e = config::load_msmtprc(&t.env(), Some(&rc)).expect_err("writable by others");
        assert_eq!(e.kind, ConfigErrorKind::Insecure, "{mode:o}: {e}");
        assert!(e.to_string().contains("chmod go-w"), "{e}");
        assert_eq!(postie::Error::from(e).kind(), ErrorKind::InsecureConfig);
        assert!(!t.marker().exists(), "{mode:o}: the eval line ran");
    }
    // Readable by all but writable only by its owner: msmtp accepts it, and so do we.
    let rc = t.write(
        "home/.msmtprc",
        "account a\nhost h\neval echo port 2525\n",
        0o644,
    );
    config::load_msmtprc(&t.env(), Some(&rc)).expect("0644 without a password");
}

#[test]
fn writable_toml_with_a_passwordeval_is_refused() {
    let t = TempDir::new("toml");
    let text = format!(
        "[accounts.a]\nhost = \"h\"\nuser = \"u\"\npasswordeval = \"touch {}; echo pw\"\n",
        t.marker().display()
    );
    let cfg = t.write("home/config.toml", &text, 0o666);
    let e = config::load_toml(&t.env(), Some(&cfg)).expect_err("world-writable");
    assert_eq!(e.kind, ConfigErrorKind::Insecure, "{e}");
    let cfg = t.write("home/config.toml", &text, 0o644);
    config::load_toml(&t.env(), Some(&cfg)).expect("readable, not writable: accepted");
    assert!(!t.marker().exists(), "loading never runs passwordeval");
}

fn run(bin: &str, t: &TempDir, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("HOME", t.0.join("home"))
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("run")
}

fn shown(o: &Output) -> String {
    format!(
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn rsend_runs_no_passwordeval_from_a_refused_file() {
    let t = TempDir::new("rsend");
    let eval = format!("touch {}; echo pw", t.marker().display());
    // A readable msmtprc with a password, and a writable one with only passwordeval.
    for (text, mode) in [
        (
            format!(
                "account default\nhost 127.0.0.1\nport 1\nauth on\nuser u\npassword pw\n\
                 passwordeval \"{eval}\"\nfrom a@b\n"
            ),
            0o644,
        ),
        (
            format!(
                "account default\nhost 127.0.0.1\nport 1\nauth on\nuser u\n\
                 passwordeval \"{eval}\"\nfrom a@b\n"
            ),
            0o666,
        ),
    ] {
        let rc = t.write("home/.msmtprc", &text, mode);
        let o = run(
            env!("CARGO_BIN_EXE_rsend"),
            &t,
            &["-C", rc.to_str().expect("utf-8"), "x@y"],
        );
        assert_eq!(o.status.code(), Some(78), "{mode:o}: {}", shown(&o));
        assert!(
            !t.marker().exists(),
            "{mode:o}: passwordeval ran: {}",
            shown(&o)
        );
    }
    // A readable TOML file with a password next to its passwordeval.
    let cfg = t.write(
        "home/config.toml",
        &format!(
            "[accounts.default]\nhost = \"127.0.0.1\"\nport = 1\nauth = \"on\"\nuser = \"u\"\n\
             password = \"pw\"\npasswordeval = \"{eval}\"\nfrom = \"a@b\"\n"
        ),
        0o644,
    );
    let o = run(
        env!("CARGO_BIN_EXE_rsend"),
        &t,
        &["-C", cfg.to_str().expect("utf-8"), "x@y"],
    );
    assert_eq!(o.status.code(), Some(78), "toml: {}", shown(&o));
    assert!(!t.marker().exists(), "toml: passwordeval ran");
}

#[test]
fn rfetch_runs_no_passwordeval_from_a_readable_fetchmailrc() {
    let t = TempDir::new("rfetch");
    let rc = t.write(
        "home/.fetchmailrc",
        &format!(
            "poll 127.0.0.1 proto pop3 port 1 user u passwordeval \"touch {}; echo pw\"\n",
            t.marker().display()
        ),
        0o644,
    );
    let o = run(
        env!("CARGO_BIN_EXE_rfetch"),
        &t,
        &["-f", rc.to_str().expect("utf-8")],
    );
    assert_eq!(o.status.code(), Some(6), "{}", shown(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("run: chmod 600 {}", rc.display())),
        "the fix-it command is shown: {stderr}"
    );
    assert!(!t.marker().exists(), "passwordeval ran");
}

#[test]
fn fetchmailrc_mode_error_carries_the_chmod_hint() {
    let p = Path::new("/home/u/.fetchmailrc");
    let e = config::fetchmailrc::check_rc_mode(p, true, 0o100644, 1000, 1000).expect_err("0644");
    assert_eq!(
        e.to_string(),
        "/home/u/.fetchmailrc: must have no more than -rwx------ (0700) permissions, has 0644; \
         run: chmod 600 /home/u/.fetchmailrc"
    );
    let e = config::fetchmailrc::check_rc_mode(p, true, 0o100600, 0, 1000).expect_err("owner");
    assert!(
        e.to_string()
            .ends_with("run: chown 1000 /home/u/.fetchmailrc && chmod 600 /home/u/.fetchmailrc"),
        "{e}"
    );
}

#[test]
fn rsend_creates_its_log_file_private() {
    let t = TempDir::new("log");
    let log = t.0.join("rsend.log");
    let o = Command::new(env!("CARGO_BIN_EXE_rsend"))
        .args(["--host=127.0.0.1", "--port=1", "--from=a@b"])
        .arg(format!("--logfile={}", log.display()))
        .arg("x@y")
        .env("HOME", t.0.join("home"))
        .stdin(Stdio::null())
        .output()
        .expect("rsend");
    assert_ne!(o.status.code(), Some(0), "{}", shown(&o));
    let meta = fs::metadata(&log).unwrap_or_else(|e| panic!("no log file ({e}): {}", shown(&o)));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}
