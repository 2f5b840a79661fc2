//! Which configuration file rsend and rfetch read when a user has both the classic rc file and
//! the native TOML file: the classic rc wins for both binaries, the unread TOML draws a warning
//! when it configures that binary, and -V/--version, -v, --configdump, --pretend and the
//! "no configuration" error name the files. No network: only options that stop before any
//! connection.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RFETCH: &str = env!("CARGO_BIN_EXE_rfetch");
const RSEND: &str = env!("CARGO_BIN_EXE_rsend");

/// A private, empty HOME (removed when the test passes).
fn home(tag: &str) -> common::TempDir {
    common::temp_dir(&format!("discovery-{tag}"))
}

/// Writes `text` to HOME/REL with mode 600.
fn put(home: &Path, rel: &str, text: &str) -> PathBuf {
    let p = home.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn run(bin: &str, home: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o: Output = Command::new(bin)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("FETCHMAILHOME")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const FETCHMAILRC: &str =
    "poll pop.classic.example proto pop3 user u password p mda \"/usr/bin/procmail -d %T\"\n";
const TOML: &str = "[accounts.native]\nhost = \"native.example\"\nuser = \"u\"\npassword = \"p\"\n\
from = \"u@native.example\"\n[accounts.native.fetch]\nprotocol = \"imap\"\n";
const MSMTPRC: &str =
    "account default\nhost smtp.classic.example\nfrom u@classic.example\nauth off\ntls off\n";

#[test]
fn rfetch_reads_the_fetchmailrc_before_the_toml_and_says_so() {
    let h = home("rfetch-both");
    let rc = put(&h, ".fetchmailrc", FETCHMAILRC);
    let toml = put(&h, ".config/postie/config.toml", TOML);

    let (code, out, err) = run(RFETCH, &h, &["-V"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "Taking options from command line and {} (fetchmailrc)",
            rc.display()
        )),
        "{out}"
    );
    assert!(out.contains("pop.classic.example"), "{out}");
    assert!(!out.contains("native.example"), "{out}");
    assert!(
        err.contains(&format!(
            "{} exists but is not read: {} comes first",
            toml.display(),
            rc.display()
        )),
        "the unread TOML with a fetch account is a warning: {err}"
    );

    let (code, out, _) = run(RFETCH, &h, &["--configdump"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with(&format!("# rfetch configdump of {}", rc.display())),
        "{out}"
    );

    // -C names the TOML: it is read, the fetchmailrc is mentioned only with -v
    let (code, out, err) = run(RFETCH, &h, &["-V", "-C", toml.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("(postie TOML, given with -C)"), "{out}");
    assert!(out.contains("native.example"), "{out}");
    assert!(!err.contains("not read"), "{err}");
    let (_, _, err) = run(RFETCH, &h, &["-V", "-v", "-C", toml.to_str().unwrap()]);
    assert!(
        err.contains(&format!("{} exists but is not read", rc.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("reading configuration from {}", toml.display())),
        "{err}"
    );
}

#[test]
fn rfetch_uses_the_toml_alone_and_names_it_in_errors() {
    let h = home("rfetch-toml");
    let toml = put(&h, ".config/postie/config.toml", TOML);
    let (code, out, err) = run(RFETCH, &h, &["-V"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("{} (postie TOML)", toml.display())),
        "{out}"
    );
    assert!(!err.contains("not read"), "{err}");
    let (code, _, err) = run(RFETCH, &h, &["nosuch"]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains(&toml.display().to_string()), "{err}");

    let (code, _, err) = run(RFETCH, &home("rfetch-none"), &[]);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains(".fetchmailrc, ") && err.contains(".config/postie/config.toml"),
        "the error lists both files: {err}"
    );
}

#[test]
fn rsend_reads_the_msmtprc_before_the_toml_and_says_so() {
    let h = home("rsend-both");
    let rc = put(&h, ".msmtprc", MSMTPRC);
    let toml = put(&h, ".config/postie/config.toml", TOML);

    let (code, out, err) = run(RSEND, &h, &["--pretend"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains(&format!("loaded configuration files: {}", rc.display())),
        "{out}"
    );
    assert!(out.contains("smtp.classic.example"), "{out}");
    assert!(
        err.contains(&format!("{} exists but is not read", toml.display())),
        "the unread TOML with a sending account is a warning: {err}"
    );

    let (code, out, _) = run(RSEND, &h, &["--version"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&format!("User configuration file name: {}\n", rc.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("Present but not read: {}", toml.display())),
        "{out}"
    );
}

#[test]
fn rsend_does_not_warn_about_a_toml_holding_only_fetch_accounts() {
    let h = home("rsend-fetch-toml");
    put(&h, ".msmtprc", MSMTPRC);
    put(
        &h,
        ".config/postie/config.toml",
        "[accounts.in.fetch]\nprotocol = \"pop3\"\nhost = \"pop.example\"\nuser = \"u\"\n\
         password = \"p\"\n",
    );
    let (code, out, err) = run(RSEND, &h, &["--pretend"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(!err.contains("not read"), "{err}");
}

#[test]
fn rsend_configuration_errors_name_the_file() {
    let h = home("rsend-error");
    let rc = put(&h, ".msmtprc", "account default\nfrom u@classic.example\n");
    // no host: refused before any connection
    let (code, _, err) = run(RSEND, &h, &["x@y.example"]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(&format!("configuration {} (msmtprc): ", rc.display())),
        "{err}"
    );
}

#[test]
fn rsend_without_configuration_lists_the_files_a_newcomer_creates() {
    let h = home("rsend-none");
    let (code, _, err) = run(RSEND, &h, &["--pretend"]);
    assert_eq!(code, Some(78), "{err}");
    for f in [
        ".msmtprc",
        ".config/msmtp/config",
        ".config/postie/config.toml",
        "/etc/msmtprc",
    ] {
        assert!(err.contains(f), "{f} missing: {err}");
    }
}
