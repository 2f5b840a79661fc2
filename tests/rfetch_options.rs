//! rfetch's fetchmail options on the real stack (bob's mailbox): `-L`/`set logfile` (timestamped,
//! no secrets), flush, limit/limitflush, expunge N (IMAP EXPUNGE pacing, POP3 reconnects),
//! fetchlimit (exit 13), the TOML `recipient` for LMTP, the per-message info lines, and the
//! progress line (only on a terminal: checked under `script`, and absent from a pipe).

mod common;
use common::rfetch::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small message with a unique Message-ID; `tag` also in the Subject.
fn small(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "From: a@x\nTo: bob@localhost\nSubject: {tag} {i}\nMessage-ID: <{tag}-{i}@t>\n\nbody {i}\n"
    )
    .into_bytes()
}

fn big(tag: &str) -> Vec<u8> {
    let mut m =
        format!("From: a@x\nSubject: {tag} big\nMessage-ID: <{tag}-big@t>\n\n").into_bytes();
    while m.len() < 20_000 {
        m.extend_from_slice(b"a line to make this message larger than the limit.........\n");
    }
    m
}

fn seed(s: &common::Stack, dir: &Path, msgs: &[Vec<u8>]) {
    for (i, m) in msgs.iter().enumerate() {
        put_bob(s, dir, &format!("seed-{i}-{}", m.len()), m);
    }
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

fn contains(msgs: &[Vec<u8>], needle: &str) -> usize {
    msgs.iter()
        .filter(|m| String::from_utf8_lossy(m).contains(needle))
        .count()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn maildir_config(s: &common::Stack, dir: &Path, proto: &str, extra: &str) -> (PathBuf, PathBuf) {
    let md = dir.join("Maildir");
    let cfg = toml_config(
        s,
        dir,
        proto,
        "implicit",
        &format!("maildir = \"{}\"", md.display()),
        extra,
    );
    (cfg, md)
}

#[test]
fn logfile_from_the_command_line_and_the_rc() {
    let _g = lock();
    let s = common::Stack::get();

    // -L with a TOML config: info lines go to the file even with -s, which silences stderr.
    let dir = tempdir("logfile-cli");
    let tag = unique("logcli");
    clear_bob(&s);
    seed(&s, &dir, &[small(&tag, 1), small(&tag, 2)]);
    let (cfg, md) = maildir_config(&s, &dir, "imap", "");
    let log = dir.join("rfetch.log");
    std::fs::write(&log, "an earlier line\n").unwrap();
    let o = rfetch(
        &dir,
        &[
            "-s",
            "-L",
            log.to_str().unwrap(),
            "-C",
            cfg.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(maildir_messages(&md).len(), 2);
    assert_eq!(stderr(&o), "", "stderr with -s");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("an earlier line\n"), "appended: {text}");
    assert!(
        text.contains("2 messages (0 seen before) for bob at 127.0.0.1"),
        "{text}"
    );
    assert!(
        text.contains("message bob@127.0.0.1:1 of 2 (") && text.contains("delivered to"),
        "{text}"
    );
    assert!(!text.contains("bobpw"), "no password in the log: {text}");
    assert!(!text.contains('\r'));
    for line in text.lines().skip(1) {
        let stamp = line.split(" rfetch[").next().unwrap();
        assert!(
            chrono::DateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%z").is_ok(),
            "timestamped: {line:?}"
        );
    }

    // `set logfile` in a fetchmailrc (created when missing, mode 600), and `set syslog` does
    // not take over: the file wins.
    let dir = tempdir("logfile-rc");
    let tag = unique("logrc");
    clear_bob(&s);
    seed(&s, &dir, &[small(&tag, 1)]);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let log = dir.join("fm.log");
    let rc = dir.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set logfile \"{}\"\nset syslog\nset idfile \"{}/ids\"\n\
             poll 127.0.0.1 proto pop3 port {} user bob password bobpw ssl sslcertfile \"{}\" sslcommonname localhost\n  mda \"cat > {}/$$\"\n",
            log.display(),
            dir.display(),
            s.port("POP3S_PORT"),
            s.ca().display(),
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = rfetch(&dir, &["-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("message bob@127.0.0.1:1 of 1 ("), "{text}");
    assert!(text.contains("(flushed)"), "{text}");
    assert!(!text.contains("bobpw"));
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // --nosyslog is accepted with it.
    let o = rfetch(&dir, &["--nosyslog", "-f", rc.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "nothing new: {}", stderr(&o));
    assert!(
        stderr(&o).contains("No mail for bob at 127.0.0.1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn flush_deletes_what_an_earlier_poll_delivered() {
    let _g = lock();
    let s = common::Stack::get();
    for proto in ["pop3", "imap"] {
        let dir = tempdir(&format!("flush-{proto}"));
        let tag = unique("flush");
        clear_bob(&s);
        seed(&s, &dir, &[small(&tag, 1), small(&tag, 2)]);
        let (cfg, md) = maildir_config(&s, &dir, proto, "keep = true");
        let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{proto}: {}", stderr(&o));
        assert_eq!(server_count(&s), 2, "{proto}: keep");
        // A new message arrives; keep + flush: the two old ones go, the new one is fetched
        // and kept.
        seed(&s, &dir, &[small(&tag, 3)]);
        let o = rfetch(&dir, &["-v", "-F", "-C", cfg.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(code(&o), 0, "{proto}: {err}");
        assert_eq!(
            err.matches("delivered before, flushed").count(),
            2,
            "{proto}: {err}"
        );
        assert!(
            err.contains("(not flushed)"),
            "{proto}: keep says not flushed: {err}"
        );
        assert_eq!(server_count(&s), 1, "{proto}: only the new message stays");
        let got = maildir_messages(&md);
        assert_eq!(got.len(), 3, "{proto}: every message delivered once");
        assert_eq!(contains(&got, &format!("<{tag}-3@t>")), 1);
        // Without flush and with keep, old messages are left alone.
        let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), 1, "{proto}: {}", stderr(&o));
        assert_eq!(server_count(&s), 1);
    }
    clear_bob(&s);
}

#[test]
fn limit_skips_and_limitflush_deletes_oversized_messages() {
    let _g = lock();
    let s = common::Stack::get();
    for proto in ["pop3", "imap"] {
        let dir = tempdir(&format!("limit-{proto}"));
        let tag = unique("limit");
        clear_bob(&s);
        seed(&s, &dir, &[small(&tag, 1), big(&tag)]);
        let (cfg, md) = maildir_config(&s, &dir, proto, "");
        let o = rfetch(&dir, &["-v", "-l", "5000", "-C", cfg.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(code(&o), 0, "{proto}: {err}");
        assert!(
            err.contains("larger than the limit of 5000 octets"),
            "{proto}: {err}"
        );
        assert_eq!(server_count(&s), 1, "{proto}: the big one stays");
        assert_eq!(maildir_messages(&md).len(), 1);
        // Again with the limit: still skipped, nothing delivered (exit 1), still there.
        let o = rfetch(&dir, &["-l", "5000", "-C", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), 1, "{proto}: {}", stderr(&o));
        assert_eq!(server_count(&s), 1);
        // limitflush deletes it without delivering it.
        let o = rfetch(
            &dir,
            &[
                "-v",
                "-l",
                "5000",
                "--limitflush",
                "-C",
                cfg.to_str().unwrap(),
            ],
        );
        let err = stderr(&o);
        assert!(
            err.contains("larger than the limit, flushed"),
            "{proto}: {err}"
        );
        assert_eq!(server_count(&s), 0, "{proto}: limitflush deleted it");
        let got = maildir_messages(&md);
        assert_eq!(got.len(), 1, "{proto}: the big one was never delivered");
        assert_eq!(contains(&got, &format!("<{tag}-big@t>")), 0);
    }
}

/// Client command lines of the -v -v protocol trace ("rfetch: IMAP> TAG COMMAND ...").
fn sent_commands(err: &str) -> Vec<String> {
    err.lines()
        .filter_map(|l| {
            l.strip_prefix("rfetch: IMAP> ")
                .or_else(|| l.strip_prefix("rfetch: POP3> "))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn expunge_paces_imap_deletions() {
    let _g = lock();
    let s = common::Stack::get();
    for (opt, want) in [
        (None, 1usize),
        (Some("2"), 3),
        (Some("0"), 1),
        (Some("1"), 5),
    ] {
        let dir = tempdir("expunge-imap");
        let tag = unique("exi");
        clear_bob(&s);
        let msgs: Vec<Vec<u8>> = (1..=5).map(|i| small(&tag, i)).collect();
        seed(&s, &dir, &msgs);
        let (cfg, md) = maildir_config(&s, &dir, "imap", "");
        let mut args = vec!["-v", "-v"];
        if let Some(n) = opt {
            args.extend(["-e", n]);
        }
        args.extend(["-C", cfg.to_str().unwrap()]);
        let o = rfetch(&dir, &args);
        let err = stderr(&o);
        assert_eq!(code(&o), 0, "-e {opt:?}: {err}");
        let expunges = sent_commands(&err)
            .iter()
            .filter(|c| c.contains("EXPUNGE"))
            .count();
        assert_eq!(expunges, want, "-e {opt:?}: EXPUNGE commands");
        assert_eq!(server_count(&s), 0, "-e {opt:?}");
        assert_eq!(maildir_messages(&md).len(), 5);
        assert!(!err.contains("bobpw"), "the trace is redacted");
    }
}

#[test]
fn expunge_makes_pop3_reconnect() {
    let _g = lock();
    let s = common::Stack::get();
    let dir = tempdir("expunge-pop3");
    let tag = unique("exp");
    clear_bob(&s);
    let msgs: Vec<Vec<u8>> = (1..=5).map(|i| small(&tag, i)).collect();
    seed(&s, &dir, &msgs);
    let (cfg, md) = maildir_config(&s, &dir, "pop3", "");
    let o = rfetch(&dir, &["-v", "-v", "-e", "2", "-C", cfg.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(code(&o), 0, "{err}");
    let cmds = sent_commands(&err);
    let quits = cmds.iter().filter(|c| c.starts_with("QUIT")).count();
    let deles = cmds.iter().filter(|c| c.starts_with("DELE")).count();
    assert_eq!(quits, 3, "sessions of 2, 2 and 1 deletions: {cmds:?}");
    assert_eq!(deles, 5);
    assert_eq!(err.matches("reconnecting").count(), 2, "{err}");
    assert_eq!(server_count(&s), 0);
    let got = maildir_messages(&md);
    assert_eq!(got.len(), 5, "each message delivered exactly once");
    for i in 1..=5 {
        assert_eq!(contains(&got, &format!("<{tag}-{i}@t>")), 1, "message {i}");
    }
}

#[test]
fn fetchlimit_stops_with_exit_13() {
    let _g = lock();
    let s = common::Stack::get();
    for proto in ["pop3", "imap"] {
        let dir = tempdir(&format!("fetchlimit-{proto}"));
        let tag = unique("fl");
        clear_bob(&s);
        let msgs: Vec<Vec<u8>> = (1..=3).map(|i| small(&tag, i)).collect();
        seed(&s, &dir, &msgs);
        let (cfg, md) = maildir_config(&s, &dir, proto, "");
        let o = rfetch(&dir, &["-v", "-B", "2", "-C", cfg.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(code(&o), 13, "{proto}: {err}");
        assert!(
            err.contains("fetchlimit 2 reached; 1 messages left"),
            "{proto}: {err}"
        );
        assert_eq!(maildir_messages(&md).len(), 2);
        assert_eq!(server_count(&s), 1);
        let o = rfetch(&dir, &["-B", "2", "-C", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{proto}: the rest fits: {}", stderr(&o));
        assert_eq!(maildir_messages(&md).len(), 3);
        assert_eq!(server_count(&s), 0);
    }
}

#[test]
fn toml_recipient_chooses_the_lmtp_rcpt() {
    let _g = lock();
    let s = common::Stack::get();
    let dir = tempdir("recipient");
    let tag = unique("rcpt");
    clear_bob(&s);
    seed(&s, &dir, &[small(&tag, 1)]);
    let cfg = toml_config(
        &s,
        &dir,
        "imap",
        "implicit",
        &format!("lmtp = \"127.0.0.1:{}\"", s.port("LMTP_PORT")),
        "recipient = \"alice@localhost\"",
    );
    let o = rfetch(&dir, &["-v", "-C", cfg.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert_eq!(server_count(&s), 0);
    let alice = PathBuf::from(s.var("STACK_MAILDIR1"));
    let delivered: Vec<Vec<u8>> = ["new", "cur"]
        .iter()
        .flat_map(|d| std::fs::read_dir(alice.join(d)).into_iter().flatten())
        .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
        .collect();
    assert_eq!(
        contains(&delivered, &format!("<{tag}-1@t>")),
        1,
        "in alice's Maildir"
    );
    let got = delivered
        .iter()
        .find(|m| String::from_utf8_lossy(m).contains(&tag))
        .unwrap();
    assert!(
        String::from_utf8_lossy(got).contains("for <alice@localhost>"),
        "the Received header names the recipient"
    );
}

#[test]
fn no_progress_output_when_stderr_is_not_a_terminal() {
    let _g = lock();
    let s = common::Stack::get();
    for proto in ["pop3", "imap"] {
        let dir = tempdir(&format!("notty-{proto}"));
        let tag = unique("notty");
        clear_bob(&s);
        seed(&s, &dir, &[small(&tag, 1), small(&tag, 2), small(&tag, 3)]);
        let (cfg, _md) = maildir_config(&s, &dir, proto, "");
        let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(code(&o), 0, "{proto}: {err}");
        // Without -v: fetchmail's lines (a summary, one line per message), nothing else.
        assert!(
            err.contains("3 messages (0 seen before) for bob at 127.0.0.1"),
            "{proto}: {err}"
        );
        assert_eq!(err.lines().count(), 4, "{proto}: {err}");
        assert!(!err.contains('\r'), "{proto}: no carriage return: {err:?}");
        assert!(
            !err.contains('\x1b'),
            "{proto}: no escape sequence: {err:?}"
        );
        // One info line per delivered message instead of progress.
        for n in 1..=3 {
            assert!(
                err.contains(&format!("message bob@127.0.0.1:{n} of 3 (")),
                "{proto}: {err}"
            );
        }
        assert_eq!(err.matches("delivered to").count(), 3);
        assert_eq!(err.matches("(flushed)").count(), 3);
    }
}

#[test]
fn progress_line_on_a_terminal() {
    let _g = lock();
    let s = common::Stack::get();
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("util-linux script (bsdutils) is needed for the terminal test");
    for proto in ["pop3", "imap"] {
        let dir = tempdir(&format!("tty-{proto}"));
        let tag = unique("tty");
        clear_bob(&s);
        seed(&s, &dir, &[small(&tag, 1), small(&tag, 2), small(&tag, 3)]);
        let (cfg, md) = maildir_config(&s, &dir, proto, "");
        let on_a_terminal = |args: &str| {
            let cmd = format!(
                "'{}' {args} -C '{}'",
                env!("CARGO_BIN_EXE_rfetch"),
                cfg.display()
            );
            let o = Command::new(script)
                .args(["-qec", &cmd, "/dev/null"])
                .env("HOME", &dir)
                .env_remove("FETCHMAILHOME")
                .env_remove("XDG_CONFIG_HOME")
                .output()
                .expect("run script");
            (code(&o), String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let (c, out) = on_a_terminal("");
        assert_eq!(c, 0, "{proto}: {out}");
        assert_eq!(maildir_messages(&md).len(), 3);
        // Drawn in place (each draw first clears the line), counting deliveries (fetched
        // apart), and cleared after the last message.
        let done = "\r\x1b[Krfetch: bob@127.0.0.1: 3 of 3 delivered (3 fetched)";
        assert!(
            out.contains(done),
            "{proto}: all 3 delivered, drawn in place: {out:?}"
        );
        let last = out.rfind("3 of 3 delivered").unwrap();
        assert!(
            out[last..].contains("\r\x1b[K"),
            "{proto}: cleared at the end: {out:?}"
        );
        // The progress line stands for the per-message lines: they need -v on a terminal.
        assert!(
            !out.contains("rfetch: message bob@127.0.0.1:"),
            "{proto}: no per-message lines: {out:?}"
        );
        // With -v they are shown, and never land behind the progress text: the line is
        // cleared before each one.
        seed(&s, &dir, &[small(&tag, 4), small(&tag, 5), small(&tag, 6)]);
        let (c, out) = on_a_terminal("-v");
        assert_eq!(c, 0, "{proto}: {out}");
        for n in 1..=3 {
            assert!(
                out.contains(&format!("\r\x1b[Krfetch: message bob@127.0.0.1:{n} of 3 (")),
                "{proto}: info line {n} on a clean line: {out:?}"
            );
        }
    }
}
