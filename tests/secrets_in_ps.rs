//! What `ps` shows while rsend and rfetch hold a password: the command line and environment of
//! the binary and of every process it starts (the `passwordeval` shell and its commands, the
//! MDA) are read from /proc every few milliseconds for the whole run, and none may contain the
//! password. The password comes from a file through `passwordeval` (in the config file and as
//! rsend's `--passwordeval`), and the scripted server checks it really arrived, so the watched
//! processes did hold it. A control run shows the watcher finds a password that is on a
//! command line.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::transcript::Transcript;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

const SECRET: &str = "ps-Visible-Secret-7q";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("postie-ps-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn write_private(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `passwordeval` command that takes long enough to be seen and prints the password from a
/// file, so the password itself is on no command line the test wrote.
fn slow_password_command(dir: &TempDir) -> String {
    let file = dir.write_private("pw", &format!("{SECRET}\n"));
    format!("sleep 0.3; cat {}", file.display())
}

/// What the watcher saw: every command line in the process tree, and the places the password
/// showed up.
#[derive(Default, Debug)]
struct Seen {
    cmdlines: BTreeSet<String>,
    leaks: Vec<String>,
}

/// The parent of every process, from /proc/PID/stat (the field after the command name, which
/// may itself hold spaces and parentheses).
fn parents() -> BTreeMap<u32, u32> {
    let mut map = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return map;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            map.insert(pid, ppid);
        }
    }
    map
}

/// Reads the command line and environment of `root` and all its descendants until `stop` is
/// set, every 2 ms.
fn watch(root: u32, stop: Arc<AtomicBool>) -> JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            let parents = parents();
            let mut tree = BTreeSet::from([root]);
            loop {
                let before = tree.len();
                for (pid, ppid) in &parents {
                    if tree.contains(ppid) {
                        tree.insert(*pid);
                    }
                }
                if tree.len() == before {
                    break;
                }
            }
            for pid in tree {
                for what in ["cmdline", "environ"] {
                    let Ok(bytes) = std::fs::read(format!("/proc/{pid}/{what}")) else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
                    if text.contains(SECRET) {
                        seen.leaks.push(format!("{what} of {pid}: {text}"));
                    }
                    if what == "cmdline" && !text.is_empty() {
                        seen.cmdlines.insert(text);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        seen
    })
}

/// Runs `child` to its end under the watcher.
fn run_watched(mut child: Child, stdin: &[u8]) -> (Output, Seen) {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(child.id(), stop.clone());
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().expect("wait");
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().expect("watcher");
    (out, seen)
}

const MESSAGE: &str = "From: a@example.org\r\nTo: bob@example.org\r\nSubject: ps\r\n\r\nbody\r\n";

/// What the client sent after `command` (the line's third word), base64-decoded.
fn decoded_argument(heard: &[String], command: &str) -> String {
    let argument = heard
        .iter()
        .find_map(|l| l.strip_prefix(command))
        .unwrap_or_default();
    String::from_utf8_lossy(&B64.decode(argument).unwrap_or_default()).into_owned()
}

/// rsend with the password from `passwordeval`, in the msmtprc or on the command line.
fn rsend_watched(eval_on_command_line: bool, eval: Option<String>) -> (Output, Seen, String) {
    let dir = TempDir::new("rsend");
    let eval = eval.unwrap_or_else(|| slow_password_command(&dir));
    let server = Transcript::load("ps/smtp").play();
    let port = server.port();
    let mut rc = format!(
        "account default\nhost 127.0.0.1\nport {port}\ntls off\nauth plain\nuser alice\n\
         from alice@localhost\ntimeout 5\n"
    );
    if !eval_on_command_line {
        rc.push_str(&format!("passwordeval \"{eval}\"\n"));
    }
    let rc = dir.write_private("msmtprc", &rc);
    let mut args = vec!["-C".to_owned(), rc.display().to_string()];
    if eval_on_command_line {
        args.push(format!("--passwordeval={eval}"));
    }
    args.extend(["--danger-plaintext-auth".into(), "bob@example.org".into()]);
    let child = Command::new(env!("CARGO_BIN_EXE_rsend"))
        .args(&args)
        .env("HOME", &dir.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rsend");
    let (out, seen) = run_watched(child, MESSAGE.as_bytes());
    let got = decoded_argument(&server.finish(), "AUTH PLAIN ");
    (out, seen, got)
}

fn assert_nothing_leaked(out: &Output, seen: &Seen, binary: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{binary}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        seen.cmdlines.iter().any(|c| c.contains(binary)),
        "the watcher saw {binary} itself: {:?}",
        seen.cmdlines
    );
    assert!(
        seen.cmdlines.iter().any(|c| c.contains("sleep 0.3")),
        "the watcher saw the commands {binary} started: {:?}",
        seen.cmdlines
    );
    assert!(
        seen.leaks.is_empty(),
        "the password is visible: {:?}",
        seen.leaks
    );
}

#[test]
fn rsend_with_passwordeval_in_the_config_shows_no_password_in_ps() {
    let (out, seen, credentials) = rsend_watched(false, None);
    assert!(
        credentials.contains(SECRET),
        "the server got {credentials:?}"
    );
    assert_nothing_leaked(&out, &seen, "rsend");
}

#[test]
fn rsend_with_passwordeval_on_the_command_line_shows_no_password_in_ps() {
    let (out, seen, credentials) = rsend_watched(true, None);
    assert!(
        credentials.contains(SECRET),
        "the server got {credentials:?}"
    );
    assert_nothing_leaked(&out, &seen, "rsend");
}

#[test]
fn the_watcher_finds_a_password_written_on_a_command_line() {
    // The user's own passwordeval prints a literal: that command line shows it, and the
    // watcher must say so (otherwise the tests above prove nothing).
    let (out, seen, credentials) = rsend_watched(false, Some(format!("sleep 0.3; echo {SECRET}")));
    assert_eq!(out.status.code(), Some(0));
    assert!(credentials.contains(SECRET));
    assert!(
        seen.leaks.iter().any(|l| l.starts_with("cmdline")),
        "the watcher missed it: {seen:?}"
    );
}

#[test]
fn rfetch_with_passwordeval_and_an_mda_shows_no_password_in_ps() {
    let dir = TempDir::new("rfetch");
    let eval = slow_password_command(&dir);
    let delivered = dir.0.join("delivered");
    let size = MESSAGE.len().to_string();
    let server = Transcript::load_with("ps/pop3", &[("MESSAGE", MESSAGE), ("SIZE", &size)]).play();
    let port = server.port();
    // A TOML account: a fetchmailrc account always uses TLS, and this server has none.
    let config = dir.write_private(
        "config.toml",
        &format!(
            "[accounts.scripted]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npasswordeval = \"{eval}\"\n\
             tls = false\ntimeout = 5\n\
             [accounts.scripted.fetch]\nprotocol = \"pop3\"\nport = {port}\n\
             mda = [\"sh\", \"-c\", \"sleep 0.3; cat > {}\"]\n",
            delivered.display()
        ),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_rfetch"))
        .args([
            "-C",
            &config.display().to_string(),
            "--danger-plaintext-auth",
        ])
        .env("HOME", &dir.0)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rfetch");
    let (out, seen) = run_watched(child, b"");
    let heard = server.finish();
    assert_eq!(
        heard
            .iter()
            .find_map(|l| l.strip_prefix("PASS "))
            .unwrap_or_default(),
        SECRET,
        "the server got it; rfetch said {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut mail = String::new();
    let _ = std::fs::File::open(&delivered).and_then(|mut f| f.read_to_string(&mut mail));
    assert!(
        mail.contains("Subject: ps"),
        "the MDA got the message: {mail:?}"
    );
    assert!(
        seen.cmdlines.iter().any(|c| c.contains("cat > ")),
        "the watcher saw the MDA: {:?}",
        seen.cmdlines
    );
    assert_nothing_leaked(&out, &seen, "rfetch");
}
