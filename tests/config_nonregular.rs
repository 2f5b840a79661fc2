//! A FIFO (or any file that is not a regular file) where a configuration or secret file is
//! expected is refused at once with an error that says what it is: opening a FIFO for reading
//! blocks until a writer comes, so reading one hung rsend and rfetch forever. The system files
//! read on the way (/etc/mailname, resolv.conf) are ignored in that case, and when oversized.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{run_bounded, within};

use postie::account::secret::Lookup;
use postie::account::{Env, Secret};

fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    common::mkfifo(&path);
    path
}

/// An error and its sources, as the binaries show them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut shown = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        shown.push_str(&format!(": {s}"));
        source = s.source();
    }
    shown
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_refused_as_fifo(o: &Output, what: &str) {
    let shown = stderr(o);
    assert!(!o.status.success(), "{what}: succeeded: {shown}");
    assert!(
        shown.contains("FIFO"),
        "{what}: the error does not say FIFO: {shown}"
    );
}

fn env_in(home: &Path) -> Env {
    Env {
        home: Some(home.to_owned()),
        xdg_config_home: Some(home.join(".config")),
        sysconfdir: home.join("etc"),
        ..Env::default()
    }
}

#[test]
fn config_files_that_are_fifos_are_refused_by_the_loaders() {
    let dir = common::temp_dir("nonregular-loaders");
    let rc = fifo(&dir, "msmtprc");
    let env = env_in(&dir);
    let e = within("load_msmtprc -C FIFO", move || {
        postie::config::load_msmtprc(&env, Some(&rc))
            .map(|_| ())
            .map_err(|e| chain(&e))
    })
    .expect_err("a FIFO msmtprc is refused");
    assert!(e.contains("FIFO"), "{e}");

    let toml = fifo(&dir, "config.toml");
    let env = env_in(&dir);
    let e = within("load_toml -C FIFO", move || {
        postie::config::load_toml(&env, Some(&toml))
            .map(|_| ())
            .map_err(|e| chain(&e))
    })
    .expect_err("a FIFO TOML file is refused");
    assert!(e.contains("FIFO"), "{e}");

    // The default TOML path, not named on the command line: refused too, not waited on.
    fifo(&dir, ".config/postie/config.toml");
    let env = env_in(&dir);
    let e = within("load_toml default FIFO", move || {
        postie::config::load_toml(&env, None)
            .map(|_| ())
            .map_err(|e| chain(&e))
    })
    .expect_err("a FIFO default TOML file is refused");
    assert!(e.contains("FIFO"), "{e}");

    let fetchmailrc = fifo(&dir, "fetchmailrc");
    let e = within("read_fetchmailrc FIFO", move || {
        postie::config::fetchmailrc::read_fetchmailrc(&fetchmailrc)
            .map(|_| ())
            .map_err(|e| chain(&e))
    })
    .expect_err("a FIFO fetchmailrc is refused");
    assert!(e.contains("FIFO"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn secret_files_that_are_fifos_are_refused() {
    let dir = common::temp_dir("nonregular-secrets");
    let passwordfile = fifo(&dir, "pw");
    let env = env_in(&dir);
    let e = within("passwordfile FIFO", move || {
        let lookup = Lookup {
            host: "h",
            user: Some("u"),
            service: "imap",
            env: &env,
        };
        Secret::File(passwordfile)
            .resolve(&lookup)
            .map(|_| ())
            .map_err(|e| chain(&e))
    })
    .expect_err("a FIFO passwordfile is refused");
    assert!(e.contains("FIFO"), "{e}");

    fifo(&dir, ".netrc");
    let env = env_in(&dir);
    let e = within("~/.netrc FIFO", move || {
        let lookup = Lookup {
            host: "h",
            user: Some("u"),
            service: "smtp",
            env: &env,
        };
        Secret::Netrc
            .resolve(&lookup)
            .map(|_| ())
            .map_err(|e| chain(&e))
    })
    .expect_err("a FIFO ~/.netrc is refused");
    assert!(e.contains("FIFO"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rsend_refuses_a_fifo_named_with_dash_c_or_found_as_msmtprc() {
    let dir = common::temp_dir("nonregular-rsend");
    let rc = fifo(&dir, "rc");
    let mut command = Command::new(common::rsend::RSEND);
    command
        .args(["-C", rc.to_str().expect("utf-8"), "--serverinfo"])
        .env("HOME", &dir)
        .env_remove("XDG_CONFIG_HOME");
    let o = run_bounded(command, "rsend -C FIFO");
    assert_refused_as_fifo(&o, "rsend -C FIFO");

    let home = dir.join("home");
    fifo(&home, ".msmtprc");
    let mut command = Command::new(common::rsend::RSEND);
    command
        .args(["--serverinfo"])
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME");
    let o = run_bounded(command, "rsend with ~/.msmtprc a FIFO");
    assert_refused_as_fifo(&o, "rsend with ~/.msmtprc a FIFO");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rsend_refuses_a_fifo_as_its_tls_trust_file() {
    let dir = common::temp_dir("nonregular-trust");
    let trust = fifo(&dir, "ca.pem");
    // A server that accepts and says nothing: the trust file is read around the connect.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let rc = dir.join("rc");
    common::write_private(
        &rc,
        &format!(
            "account default\nhost 127.0.0.1\nport {port}\nfrom a@example.org\n\
             tls on\ntls_starttls off\ntls_trust_file {}\ntimeout 30\n",
            trust.display()
        ),
    );
    let mut command = Command::new(common::rsend::RSEND);
    command
        .args(["-C", rc.to_str().expect("utf-8"), "b@example.org"])
        .env("HOME", &dir)
        .env_remove("XDG_CONFIG_HOME");
    let o = run_bounded(command, "rsend with tls_trust_file a FIFO");
    assert_refused_as_fifo(&o, "rsend with tls_trust_file a FIFO");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rfetch_refuses_a_fifo_named_with_dash_f_or_found_as_fetchmailrc() {
    let dir = common::temp_dir("nonregular-rfetch");
    let rc = fifo(&dir, "rc");
    let mut command = Command::new(env!("CARGO_BIN_EXE_rfetch"));
    command
        .args(["-f", rc.to_str().expect("utf-8")])
        .env("HOME", &dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME");
    let o = run_bounded(command, "rfetch -f FIFO");
    assert_refused_as_fifo(&o, "rfetch -f FIFO");

    let home = dir.join("home");
    fifo(&home, ".fetchmailrc");
    let mut command = Command::new(env!("CARGO_BIN_EXE_rfetch"));
    command
        .env("HOME", &home)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME");
    let o = run_bounded(command, "rfetch with ~/.fetchmailrc a FIFO");
    assert_refused_as_fifo(&o, "rfetch with ~/.fetchmailrc a FIFO");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dev_null_is_still_an_empty_config_file() {
    // `-C /dev/null` / `-f /dev/null` is the usual way to run without a config file.
    let o = run_bounded(
        {
            let mut c = Command::new(common::rsend::RSEND);
            c.args([
                "-C",
                "/dev/null",
                "--host=127.0.0.1",
                "--serverinfo",
                "--port=1",
            ])
            .env_remove("HOME");
            c
        },
        "rsend -C /dev/null",
    );
    assert!(!stderr(&o).contains("regular file"), "{}", stderr(&o));
    let dir = common::temp_dir("nonregular-devnull");
    let o = run_bounded(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_rfetch"));
            c.args(["-f", "/dev/null"])
                .env("HOME", &dir)
                .env_remove("FETCHMAILHOME");
            c
        },
        "rfetch -f /dev/null",
    );
    assert!(!stderr(&o).contains("regular file"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// /etc/mailname (rsend's %M) and resolv.conf (rsend --configure) are system files rsend reads
/// on its way: a FIFO at either hung it.
#[test]
fn a_fifo_as_mailname_is_ignored_not_waited_on() {
    let dir = common::temp_dir("nonregular-mailname");
    let mailname = fifo(&dir, "mailname");
    let got = within("mailname FIFO", move || {
        postie::account::read_mailname(&mailname)
    });
    assert_eq!(got, None);
    // A normal file still gives its first line.
    let mailname = dir.join("mailname.txt");
    std::fs::write(&mailname, "  mail.example.org \nsecond line\n").expect("write");
    assert_eq!(
        postie::account::read_mailname(&mailname).as_deref(),
        Some("mail.example.org")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_fifo_as_resolv_conf_is_ignored_not_waited_on() {
    let dir = common::temp_dir("nonregular-resolv");
    let resolv = fifo(&dir, "resolv.conf");
    let got = within("resolv.conf FIFO", move || {
        postie::net::nameservers(&resolv)
    });
    assert_eq!(got, Vec::new());
    // A normal file still gives its name servers.
    let resolv = dir.join("resolv.txt");
    std::fs::write(&resolv, "search x\nnameserver 127.0.0.1\n").expect("write");
    assert_eq!(
        postie::net::nameservers(&resolv),
        vec![
            "127.0.0.1:53"
                .parse::<std::net::SocketAddr>()
                .expect("addr")
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Far more than either system file ever holds (a host name; a few name server lines): a
/// valid first line is no reason to read the rest, or to trust it.
fn oversized(dir: &Path, name: &str, first_line: &str) -> PathBuf {
    let path = dir.join(name);
    let padding = "#".repeat(1 << 20);
    std::fs::write(&path, format!("{first_line}\n{padding}\n")).expect("write");
    path
}

#[test]
fn an_oversized_mailname_is_ignored() {
    let dir = common::temp_dir("oversized-mailname");
    let mailname = oversized(&dir, "mailname", "mail.example.org");
    assert_eq!(postie::account::read_mailname(&mailname), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_oversized_resolv_conf_is_ignored() {
    let dir = common::temp_dir("oversized-resolv");
    let resolv = oversized(&dir, "resolv.conf", "nameserver 127.0.0.1");
    assert_eq!(postie::net::nameservers(&resolv), Vec::new());
    let _ = std::fs::remove_dir_all(&dir);
}
