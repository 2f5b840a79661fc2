//! fetchmail's command line for real, on the stack (bob's mailbox): a poll given only on the
//! command line (no rc file; the password from ~/.netrc), and each override changing what the
//! poll does: -p, -u, -P, --ssl, --sslcertfile, --sslcommonname, --sslfingerprint, -r, -k/-K,
//! -a, -l, -B, -S with --lmtp and --smtpname (delivering to the stack's LMTP), -m.

mod common;
use common::rfetch::*;
use std::path::{Path, PathBuf};
use std::process::Output;

use std::os::unix::fs::PermissionsExt;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A HOME with a private ~/.netrc holding bob's password, and no rc file.
fn home(tag: &str) -> common::TempDir {
    let dir = tempdir(tag);
    let netrc = dir.join(".netrc");
    std::fs::write(&netrc, "machine 127.0.0.1 login bob password bobpw\n").unwrap();
    std::fs::set_permissions(&netrc, std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

fn message(tag: &str, i: usize) -> Vec<u8> {
    format!("From: a@x\nTo: bob@localhost\nSubject: {tag} {i}\nMessage-ID: <{tag}-{i}@t>\n\nbody {i} of {tag}\n")
        .into_bytes()
}

fn unique(tag: &str) -> String {
    format!(
        "{tag}{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

fn count_in(md: &Path, needle: &str) -> usize {
    maildir_messages(md)
        .iter()
        .filter(|m| String::from_utf8_lossy(m).contains(needle))
        .count()
}

#[test]
fn a_poll_given_only_on_the_command_line_delivers_over_lmtp() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let dir = home("cli-only");
    let tag = unique("clionly");
    put_bob(&s, &dir, "m0", &message(&tag, 0));
    let ca = s.ca();
    let imaps = s.port("IMAPS_PORT").to_string();
    let lmtp = format!("127.0.0.1/{}", s.port("LMTP_PORT"));
    let alice = PathBuf::from(s.var("STACK_MAILDIR1"));
    let base = [
        "-p",
        "IMAP",
        "-u",
        "bob",
        "--ssl",
        "--sslcertfile",
        ca.to_str().unwrap(),
        "--sslcommonname",
        "localhost",
        "-P",
        &imaps,
        "-S",
        &lmtp,
        "--lmtp",
        "--smtpname",
        "alice@localhost",
    ];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        args.push("127.0.0.1");
        rfetch(&dir, &args)
    };
    // -k: delivered to alice over LMTP, kept on the server.
    let o = run(&["-k"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(count_in(&alice, &tag), 1, "LMTP delivered to --smtpname");
    assert_eq!(server_count(&s), 1, "-k keeps it");
    // Seen: a second poll fetches nothing (exit 1); -a fetches it again.
    let o = run(&["-k"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let o = run(&["-k", "-a"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        count_in(&alice, &tag),
        2,
        "-a fetched the seen message again"
    );
    // -K: delivered and deleted.
    let o = run(&["-K", "-a"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(server_count(&s), 0, "-K deleted it");
    assert_eq!(count_in(&alice, &tag), 3);
}

#[test]
fn each_override_changes_the_poll() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let dir = home("cli-overrides");
    let tag = unique("clio");
    for i in 0..2 {
        put_bob(&s, &dir, &format!("m{i}"), &message(&tag, i));
    }
    let ca = s.ca();
    let ca = ca.to_str().unwrap();
    let out = dir.join("mda.out");
    let mda = format!("cat >> {}", out.display());
    let port = |name: &str| s.port(name).to_string();
    let (imap, imaps, pop3s) = (port("IMAP_PORT"), port("IMAPS_PORT"), port("POP3S_PORT"));
    let tls = ["--sslcertfile", ca, "--sslcommonname", "localhost"];
    let poll = |extra: &[&str]| {
        let mut args: Vec<&str> = vec!["-k", "-a", "-m", &mda];
        if !extra.contains(&"-u") {
            args.extend_from_slice(&["-u", "bob"]);
        }
        args.extend_from_slice(extra);
        args.push("127.0.0.1");
        let o = rfetch(&dir, &args);
        let delivered = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .matches(&format!("Message-ID: <{tag}"))
            .count();
        let _ = std::fs::remove_file(&out);
        (o, delivered)
    };

    // -m with the defaults (IMAP, STARTTLS on -P's port): both messages reach the MDA.
    let (o, n) = poll(&[&tls[..], &["-P", &imap]].concat());
    assert_eq!((code(&o), n), (0, 2), "{}", stderr(&o));
    // --ssl makes it implicit TLS: on the STARTTLS port that fails, on 993's it works.
    let (o, n) = poll(&[&tls[..], &["-P", &imap, "--ssl", "-t", "5"]].concat());
    assert_ne!(code(&o), 0, "implicit TLS on the STARTTLS port");
    assert_eq!(n, 0);
    let (o, n) = poll(&[&tls[..], &["-P", &imaps, "--ssl"]].concat());
    assert_eq!((code(&o), n), (0, 2), "{}", stderr(&o));
    // -p POP3 speaks POP3 (on the POP3S port).
    let (o, n) = poll(&[&tls[..], &["-p", "POP3", "-P", &pop3s, "--ssl"]].concat());
    assert_eq!((code(&o), n), (0, 2), "{}", stderr(&o));
    let (o, _) = poll(&[&tls[..], &["-p", "IMAP", "-P", &pop3s, "--ssl", "-t", "5"]].concat());
    assert_ne!(code(&o), 0, "IMAP against the POP3 server");
    // Without --sslcertfile the stack's CA is unknown; --sslfingerprint pins the certificate
    // instead, and a wrong pin fails.
    let (o, n) = poll(&["--sslcommonname", "localhost", "-P", &imaps, "--ssl"]);
    assert_ne!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(n, 0);
    let pin = s.var("STACK_SERVER_SHA256").to_owned();
    let (o, n) = poll(&["--sslfingerprint", &pin, "-P", &imaps, "--ssl"]);
    assert_eq!((code(&o), n), (0, 2), "{}", stderr(&o));
    let zero = ["00"; 32].join(":");
    let (o, n) = poll(&["--sslfingerprint", &zero, "-P", &imaps, "--ssl"]);
    assert_ne!(code(&o), 0);
    assert_eq!(n, 0);
    // -u: another login has no ~/.netrc entry and no terminal to ask on.
    let (o, n) = poll(&[&tls[..], &["-P", &imaps, "--ssl", "-u", "alice"]].concat());
    assert_ne!(code(&o), 0);
    assert_eq!(n, 0);
    assert!(stderr(&o).contains("alice"), "{}", stderr(&o));
    // -r: a folder that does not exist fails; INBOX is the default.
    let (o, n) = poll(&[&tls[..], &["-P", &imaps, "--ssl", "-r", "NoSuchFolder"]].concat());
    assert_ne!(code(&o), 0);
    assert_eq!(n, 0);
    // -l: both messages are larger than 10 octets and stay; -B 1 takes one and exits 13.
    let (o, n) = poll(&[&tls[..], &["-P", &imaps, "--ssl", "-l", "10"]].concat());
    assert_eq!((code(&o), n), (1, 0), "{}", stderr(&o));
    let (o, n) = poll(&[&tls[..], &["-P", &imaps, "--ssl", "-B", "1"]].concat());
    assert_eq!((code(&o), n), (13, 1), "{}", stderr(&o));
    assert_eq!(server_count(&s), 2, "-k kept everything");
}

#[test]
fn refused_and_warned_options_say_so() {
    let dir = home("cli-refused");
    let o = rfetch(&dir, &["--bsmtp", "/tmp/out", "127.0.0.1"]);
    assert_eq!(code(&o), 5);
    assert!(
        stderr(&o).contains("--bsmtp is refused: "),
        "{}",
        stderr(&o)
    );
    let o = rfetch(&dir, &["--auth", "gssapi", "127.0.0.1"]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--auth gssapi is refused"),
        "{}",
        stderr(&o)
    );
    // A warned option is reported and the run goes on: -V describes the poll.
    let o = rfetch(&dir, &["-V", "--fastuidl", "4", "-p", "POP3", "127.0.0.1"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stderr(&o).matches("--fastuidl is not supported").count(),
        1,
        "{}",
        stderr(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Taking options from command line\n") && out.contains("POP3"),
        "{out}"
    );
}

#[test]
fn a_refused_rc_keyword_stops_the_run_and_configdump_shows_why() {
    let dir = home("rc-refused");
    let rc = dir.join("rc");
    std::fs::write(
        &rc,
        "poll h proto imap interface eth0/10.0.0.1\n user u password p\n  rewrite\n",
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let rc = rc.to_str().unwrap();
    let o = rfetch(&dir, &["-f", rc]);
    assert_eq!(code(&o), 5);
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{rc}:1: `interface` is refused: ")),
        "{e}"
    );
    assert!(
        e.contains(&format!("{rc}:3: `rewrite` is refused: ")),
        "{e}"
    );
    let o = rfetch(&dir, &["--configdump", "-f", rc]);
    assert_eq!(code(&o), 5);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("interface \"eth0/10.0.0.1\"")
            && out.contains(&format!("# error: {rc}:3: `rewrite`")),
        "{out}"
    );
}
