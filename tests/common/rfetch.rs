//! Shared by the rfetch integration tests: seeding bob's mailbox on the real stack, writing
//! configs, running the binary, reading delivered messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn stack_sh(s: &super::Stack, args: &[&str]) -> String {
    let out = Command::new(super::Stack::script())
        .arg(args[0])
        .arg(&s.dir)
        .args(&args[1..])
        .output()
        .expect("run stack.sh");
    assert!(
        out.status.success(),
        "stack.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn clear_bob(s: &super::Stack) {
    stack_sh(s, &["clear", "bob"]);
}

pub fn put_bob(s: &super::Stack, dir: &Path, name: &str, content: &[u8]) {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    stack_sh(s, &["put", "bob", p.to_str().unwrap()]);
}

/// How many messages bob's INBOX holds, once no POP3 session of bob's is open: rfetch does not
/// wait for the answer to its last QUIT, so Dovecot may still be deleting when rfetch exits.
pub fn server_count(s: &super::Stack) -> usize {
    pop3_sessions_ended(s, "bob");
    let md = PathBuf::from(s.var("STACK_MAILDIR2"));
    ["cur", "new"]
        .iter()
        .map(|d| {
            std::fs::read_dir(md.join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum()
}

/// Waits (up to 10 s) until `doveadm who` lists no recent POP3 session of `user`: Dovecot commits
/// a session's deletions before the session ends. Sessions older than a minute are not waited
/// for: they belong to no run of the test calling this (a SIGKILLed client of an earlier test
/// can leave Dovecot's pop3 process waiting out its ten-minute autologout, and every later call
/// then waited its full 10 s: a CI run's rfetch_options took 225 s instead of 5).
pub fn pop3_sessions_ended(s: &super::Stack, user: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // A process's age: /proc/uptime minus its start time (field 22 of /proc/PID/stat, in the
    // kernel's fixed 100 ticks per second); a session whose age cannot be read is waited for.
    let recent = |pid: &str| {
        let age = || -> Option<f64> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = stat.rsplit_once(')')?.1;
            let start: f64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
            let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
            let now: f64 = uptime.split_whitespace().next()?.parse().ok()?;
            Some(now - start / 100.0)
        };
        age().is_none_or(|a| a < 60.0)
    };
    loop {
        let out = Command::new("doveadm")
            .args(["-c", s.var("STACK_DOVECONF"), "who", "-1"])
            .output()
            .expect("run doveadm who");
        let listing = String::from_utf8_lossy(&out.stdout);
        // Lines: username proto pid ip.
        let open = listing.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            matches!(f.as_slice(), [u, "pop3", pid, ..] if *u == user && recent(pid))
        });
        if !open || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn tempdir(tag: &str) -> super::TempDir {
    super::temp_dir(&format!("rfetch-{tag}"))
}

/// Writes `text` as DIR/config.toml, mode 600 (rfetch refuses a readable file with a secret).
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.toml");
    super::write_private(&p, text);
    p
}

/// A TOML config for bob; `proto` pop3/imap, `tls` "implicit" or "starttls", `target` the
/// TOML target line(s), `extra` more fetch keys.
pub fn toml_config(
    s: &super::Stack,
    dir: &Path,
    proto: &str,
    tls: &str,
    target: &str,
    extra: &str,
) -> PathBuf {
    let port = match (proto, tls) {
        ("pop3", "implicit") => s.port("POP3S_PORT"),
        ("pop3", _) => s.port("POP3_PORT"),
        ("imap", "implicit") => s.port("IMAPS_PORT"),
        _ => s.port("IMAP_PORT"),
    };
    let text = format!(
        "[accounts.bob]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npassword = \"bobpw\"\ntls_trust_file = \"{}\"\ntls_host_override = \"localhost\"\n\
         [accounts.bob.fetch]\nprotocol = \"{proto}\"\nport = {port}\ntls_starttls = {}\n{target}\n{extra}\n",
        s.ca().display(),
        tls != "implicit"
    );
    write_config(dir, &text)
}

pub fn rfetch(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rfetch"))
        .args(args)
        .env("HOME", dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run rfetch")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Removes rfetch's Received header (three lines starting "Received: from 127.0.0.1 [127.0.0.1]").
pub fn strip_received(msg: &[u8]) -> Vec<u8> {
    let text = msg;
    let needle = b"Received: from 127.0.0.1 [127.0.0.1]\n\tby ";
    if let Some(at) = text.windows(needle.len()).position(|w| w == needle) {
        let mut end = at;
        for _ in 0..3 {
            end += text[end..].iter().position(|&b| b == b'\n').unwrap() + 1;
        }
        let mut out = text[..at].to_vec();
        out.extend_from_slice(&text[end..]);
        out
    } else {
        panic!(
            "no rfetch Received header in {:?}",
            String::from_utf8_lossy(&msg[..msg.len().min(300)])
        );
    }
}

pub fn maildir_messages(md: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = ["new", "cur"]
        .iter()
        .flat_map(|d| std::fs::read_dir(md.join(d)).into_iter().flatten())
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    v
}

/// A TOML config for a plaintext POP3 account `scripted` (bob) on a loopback `port`, delivering
/// to `target` (a `maildir = ...`, `mbox = ...` or `mda = [...]` line).
pub fn scripted_pop3_config(dir: &Path, port: u16, timeout: u32, target: &str) -> PathBuf {
    scripted_config(dir, "pop3", port, timeout, target)
}

/// [`scripted_pop3_config`] for `proto` ("pop3" or "imap").
pub fn scripted_config(dir: &Path, proto: &str, port: u16, timeout: u32, target: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "[accounts.scripted]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npassword = \"x\"\ntls = false\ntimeout = {timeout}\n\
             [accounts.scripted.fetch]\nprotocol = \"{proto}\"\nport = {port}\n{target}\n"
        ),
    )
}
