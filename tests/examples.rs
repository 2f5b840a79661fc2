//! The files in `examples/` stay valid: rfetch and rsend read each one (copied with mode 600,
//! as a user would install it) and understand what its comments promise. No network: only
//! `--configdump`, `-V` and `--pretend`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A private HOME holding a mode-600 copy of `examples/NAME`; returns (home, copy). The HOME
/// is removed when the test passes.
fn install(name: &str) -> (common::TempDir, PathBuf) {
    // one HOME per call (temp_dir's names are unique): tests run in parallel and two of them
    // install the same example
    let home = common::temp_dir(&format!("examples-{name}"));
    let copy = home.join(name);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name),
        &copy,
    )
    .unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    (home, copy)
}

fn run(bin: &str, home: &Path, args: &[&str]) -> (String, String) {
    let o: Output = Command::new(bin)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("FETCHMAILHOME")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{bin} {args:?}:\n{out}\n{err}");
    (out, err)
}

const RFETCH: &str = env!("CARGO_BIN_EXE_rfetch");
const RSEND: &str = env!("CARGO_BIN_EXE_rsend");

#[test]
fn fetchmailrc_example() {
    let (home, rc) = install("fetchmailrc");
    let rc = rc.to_str().unwrap();
    let (dump, err) = run(RFETCH, &home, &["-f", rc, "--configdump"]);
    assert_eq!(err, "", "every keyword of the example is supported");
    for poll in [
        "poll \"imap.example.com\"",
        "poll \"pop.example.net\"",
        "skip \"relay.example.org\"",
    ] {
        assert!(dump.contains(poll), "{poll}: {dump}");
    }
    assert!(dump.contains("interval 3") && dump.contains("limit 20000000"));
    assert!(
        !dump.contains("s3cret") && !dump.contains("0ther"),
        "{dump}"
    );

    let (v, _) = run(RFETCH, &home, &["-f", rc, "-V"]);
    for line in [
        "True name of server is imap.example.com:993.",
        "Protocol is IMAP, implicit TLS.",
        "Folders: INBOX, Lists.",
        "Received-message limit is 200.",
        "stays open in IMAP IDLE",
        "Messages will be delivered to SMTP localhost:25 for ann@localhost.",
        "Protocol is POP3, STARTTLS (required).",
        "In daemon mode polled every 3 cycles (interval 3).",
        "Messages will be delivered to MDA (sh -c) /usr/bin/procmail -d %T.",
        // -V describes skipped polls too, as fetchmail does
        "relay.example.org (skipped unless named):",
        "This host will not be queried when no host is specified.",
        "Multidrop: local names anna ben; recipients from the X-Original-To header",
    ] {
        assert!(v.contains(line), "{line}: {v}");
    }
}

#[test]
fn toml_example_fetch_side() {
    let (home, cfg) = install("config.toml");
    let (v, err) = run(RFETCH, &home, &["-C", cfg.to_str().unwrap(), "-V"]);
    assert_eq!(err, "");
    let md = home.join("Maildir");
    for line in [
        "True name of server is mail.example.com:993.",
        "Folders: INBOX, Lists.",
        &format!("Messages will be delivered to Maildir {}.", md.display()),
        "re-issued every 1680 s",
        "True name of server is mail.example.net:995.",
        "Message size limit is 20000000 octets.",
        "Received-message limit is 500.",
        "Deletions are committed every 100 messages (--expunge 100).",
        "Messages will be delivered to MDA /usr/bin/procmail -d %T.",
        "Messages will be delivered to LMTP 127.0.0.1:24 for bob@localhost.",
    ] {
        assert!(v.contains(line), "{line}: {v}");
    }
}

/// `name = value` lines of `rsend --pretend` (value without the provenance comment).
fn setting(pretend: &str, name: &str) -> String {
    pretend
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.split("  #").next().unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} in {pretend}"))
}

#[test]
fn toml_and_msmtprc_examples_submit_side() {
    for file in ["config.toml", "msmtprc"] {
        let (home, cfg) = install(file);
        let cfg = cfg.to_str().unwrap();
        let pretend = |args: &[&str]| {
            let mut all = vec!["-C", cfg, "--pretend"];
            all.extend_from_slice(args);
            let (out, err) = run(RSEND, &home, &all);
            format!("{out}{err}")
        };
        // No -a: the default account (work), submission with STARTTLS.
        let p = pretend(&[]);
        assert_eq!(setting(&p, "host"), "mail.example.com", "{file}");
        assert_eq!(setting(&p, "port"), "587");
        assert_eq!(setting(&p, "tls_starttls"), "on");
        assert_eq!(setting(&p, "passwordeval"), "pass show mail/work");
        // A From address at example.net picks the home account (implicit TLS on 465).
        let p = pretend(&["-f", "someone@example.net"]);
        assert!(p.contains("using account: home"), "{file}: {p}");
        assert_eq!(setting(&p, "port"), "465");
        assert_eq!(setting(&p, "tls_starttls"), "off");
    }
    // The native example enables rsend's queue for every account (the msmtprc example stays
    // readable by msmtp, which rejects the queue keywords).
    let (home, cfg) = install("config.toml");
    let (out, err) = run(
        RSEND,
        &home,
        &["-C", cfg.to_str().unwrap(), "-a", "home", "--pretend"],
    );
    let p = format!("{out}{err}");
    assert_eq!(setting(&p, "queue"), "transient", "{p}");
    assert_eq!(setting(&p, "queue_max_age"), "432000s", "{p}");
    // msmtprc inheritance: `account lists : home`.
    let (home, cfg) = install("msmtprc");
    let (out, err) = run(
        RSEND,
        &home,
        &["-C", cfg.to_str().unwrap(), "-a", "lists", "--pretend"],
    );
    let p = format!("{out}{err}");
    assert_eq!(setting(&p, "host"), "mail.example.net");
    assert_eq!(setting(&p, "from"), "ann-lists@example.net");
    assert!(setting(&p, "logfile").ends_with("/.cache/rsend.log"), "{p}");
    // The Tor account: home's server through the SOCKS5 proxy.
    let (out, err) = run(
        RSEND,
        &home,
        &["-C", cfg.to_str().unwrap(), "-a", "tor", "--pretend"],
    );
    let p = format!("{out}{err}");
    assert_eq!(setting(&p, "host"), "mail.example.net");
    assert_eq!(setting(&p, "proxy_host"), "127.0.0.1");
    assert_eq!(setting(&p, "proxy_port"), "9050");
}
