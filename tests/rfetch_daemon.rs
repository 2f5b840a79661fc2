//! rfetch's daemon against the real stack: IMAP IDLE fetches new mail at once (far sooner
//! than the poll interval) and SIGTERM stops it cleanly; an account whose server hangs does
//! not hold up another; SIGUSR1 wakes a daemon between polls; `--quit` stops it, and with other
//! options takes over as the new instance. Against scripted servers: a BYE
//! during IDLE reconnects, and a server without IDLE is watched with NOOP. Every child rfetch
//! is killed and reaped whatever happens (a guard kills on drop).

mod common;
use common::rfetch::*;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

static SERIAL: Mutex<()> = Mutex::new(());

/// A running rfetch: killed and reaped on drop; stderr goes to a file we can read meanwhile.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(dir: &Path, args: &[&str]) -> Daemon {
        let log = dir.join("rfetch.log");
        let err = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_rfetch"))
            // -N: the test supervises this process (-d without -N detaches)
            .arg("-N")
            .args(args)
            .env("HOME", dir)
            .env_remove("FETCHMAILHOME")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start rfetch");
        Daemon { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` `times` times.
    fn wait_log(&mut self, needle: &str, times: usize, limit: Duration) {
        let start = Instant::now();
        while self.log().matches(needle).count() < times {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "rfetch exited ({st}) before logging {needle:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < limit,
                "no {needle:?} (x{times}) within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).expect("pid");
        kill_process(pid, sig).expect("signal rfetch");
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                start.elapsed() < limit,
                "rfetch did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn marker(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Sends a message to bob through the stack's Postfix (delivered to Dovecot by LMTP).
fn mail_bob(s: &common::Stack, subject: &str) {
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", s.port("SMTP_PORT")),
            "--from",
            "alice@localhost",
            "--to",
            "bob@localhost",
            "--header",
            &format!("Subject: {subject}"),
            "--body",
            "daemon test\n",
            "--silent",
            "2",
        ])
        .output()
        .expect("run swaks (tests/stack/stack.sh deps tests installs it)");
    assert!(
        out.status.success(),
        "swaks: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn has_message(md: &Path, needle: &str) -> bool {
    maildir_messages(md)
        .iter()
        .any(|m| String::from_utf8_lossy(m).contains(needle))
}

fn wait_message(d: &mut Daemon, md: &Path, needle: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    while !has_message(md, needle) {
        if let Ok(Some(st)) = d.child.try_wait() {
            panic!("rfetch exited ({st}):\n{}", d.log());
        }
        assert!(
            start.elapsed() < limit,
            "message {needle} not delivered within {limit:?}:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// The bob account over IMAPS into `md`, as a TOML table named `name`.
fn bob_account(s: &common::Stack, name: &str, md: &Path) -> String {
    format!(
        "[accounts.{name}]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npassword = \"bobpw\"\n\
         tls_trust_file = \"{}\"\ntls_host_override = \"localhost\"\n\
         [accounts.{name}.fetch]\nprotocol = \"imap\"\nport = {}\ntls_starttls = false\n\
         maildir = \"{}\"\n",
        s.ca().display(),
        s.port("IMAPS_PORT"),
        md.display()
    )
}

#[test]
fn idle_fetches_new_mail_at_once_and_sigterm_stops() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let dir = tempdir("idle");
    let md = dir.join("Maildir");
    let cfg = write_config(&dir, &bob_account(&s, "bob", &md));
    let early = marker("before-idle");
    put_bob(
        &s,
        &dir,
        "early",
        format!("From: a@x\nTo: bob@localhost\nSubject: {early}\n\nfirst\n").as_bytes(),
    );
    let mut d = Daemon::start(
        &dir,
        &["-C", cfg.to_str().unwrap(), "-d", "300", "--idle", "-v"],
    );
    // The first poll fetches what is there, then the account idles.
    wait_message(&mut d, &md, &early, Duration::from_secs(60));
    d.wait_log("waiting for new mail (IDLE)", 1, Duration::from_secs(60));
    assert!(
        dir.join(".fetchmail.pid").exists(),
        "lock file while running"
    );

    let fresh = marker("idle-wake");
    mail_bob(&s, &fresh);
    let took = wait_message(&mut d, &md, &fresh, Duration::from_secs(90));
    eprintln!("new mail fetched {took:?} after the SMTP submission (interval 300 s)");
    // Nothing on the server any more (nokeep): it was fetched by IDLE, not a timed poll.
    let start = Instant::now();
    while server_count(&s) != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server not emptied"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    d.signal(Signal::TERM);
    let st = d.wait_exit(Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "{}", d.log());
    assert!(
        !dir.join(".fetchmail.pid").exists(),
        "lock file left behind"
    );
    assert_eq!(maildir_messages(&md).len(), 2);
}

/// Connections a [`hanging_server`] accepted (and holds open), with their accept times.
type Held = Arc<Mutex<Vec<(Instant, TcpStream)>>>;

/// A TCP server that accepts and never says anything (the sockets stay open).
fn hanging_server() -> (u16, Held) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let held2 = Arc::clone(&held);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(c) => held2.lock().expect("lock").push((Instant::now(), c)),
                Err(_) => return,
            }
        }
    });
    (port, held)
}

#[test]
fn a_hanging_server_does_not_delay_another_account() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let dir = tempdir("hang");
    let md = dir.join("Maildir");
    let stuck_md = dir.join("Stuck");
    let (port, held) = hanging_server();
    let cfg = write_config(
        &dir,
        &format!(
            "[accounts.stuck]\nhost = \"127.0.0.1\"\nuser = \"nobody\"\npassword = \"x\"\ntimeout = 60\n\
             [accounts.stuck.fetch]\nprotocol = \"imap\"\nport = {port}\ntls_starttls = false\n\
             maildir = \"{}\"\n\n{}",
            stuck_md.display(),
            bob_account(&s, "bob", &md)
        ),
    );
    // bob polls every 5 s; the stuck account's first read hangs for 60 s.
    let mut d = Daemon::start(&dir, &["-C", cfg.to_str().unwrap(), "-d", "5", "-v"]);
    let start = Instant::now();
    while held.lock().expect("lock").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "stuck account never connected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let hang_began = held.lock().expect("lock")[0].0;
    d.wait_log("account bob: next poll in", 1, Duration::from_secs(30));
    let fresh = marker("during-hang");
    put_bob(
        &s,
        &dir,
        "fresh",
        format!("From: a@x\nTo: bob@localhost\nSubject: {fresh}\n\nhi\n").as_bytes(),
    );
    wait_message(&mut d, &md, &fresh, Duration::from_secs(45));
    assert!(
        hang_began.elapsed() < Duration::from_secs(60),
        "delivered only after the stuck account's 60 s timeout"
    );
    assert!(!has_message(&stuck_md, &fresh));
    // SIGTERM while an account hangs in a read: rfetch still exits, without that thread.
    d.signal(Signal::TERM);
    let st = d.wait_exit(Duration::from_secs(40));
    assert_eq!(st.code(), Some(0), "{}", d.log());
    assert!(!dir.join(".fetchmail.pid").exists());
}

/// A daemon on bob's mailbox (`-d 300`) that has finished its first poll, then a new message
/// in the mailbox: (dir, Maildir, config, daemon, the message's subject).
fn sleeping_daemon_then_mail(
    s: &common::Stack,
    tag: &str,
) -> (common::TempDir, PathBuf, PathBuf, Daemon, String) {
    let dir = tempdir(tag);
    let md = dir.join("Maildir");
    let cfg = write_config(&dir, &bob_account(s, "bob", &md));
    let mut d = Daemon::start(&dir, &["-C", cfg.to_str().unwrap(), "-d", "300", "-v"]);
    d.wait_log(
        "account bob: next poll in 300 s",
        1,
        Duration::from_secs(60),
    );
    let fresh = marker(tag);
    put_bob(
        s,
        &dir,
        "fresh",
        format!("From: a@x\nTo: bob@localhost\nSubject: {fresh}\n\n{tag}\n").as_bytes(),
    );
    (dir, md, cfg, d, fresh)
}

#[test]
fn sigusr1_wakes_a_sleeping_daemon() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let (dir, md, _, mut d, fresh) = sleeping_daemon_then_mail(&s, "usr1");
    // Not fetched by itself: the next poll is 300 s away.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!has_message(&md, &fresh));
    d.signal(Signal::USR1);
    wait_message(&mut d, &md, &fresh, Duration::from_secs(60));
    d.wait_log(
        "account bob: next poll in 300 s",
        2,
        Duration::from_secs(60),
    );
    // --quit stops it like SIGTERM.
    let q = rfetch(&dir, &["--quit"]);
    assert_eq!(code(&q), 0, "{}", String::from_utf8_lossy(&q.stderr));
    let st = d.wait_exit(Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "{}", d.log());
    assert!(!dir.join(".fetchmail.pid").exists());
}

/// fetchmail's rule for a second instance: `rfetch` (with no more than -v, -s and the files)
/// while a daemon runs wakes it with SIGUSR1 instead of failing, and the daemon polls at once.
/// Server names and options the daemon would not apply are refused (exit 8), as in fetchmail.
#[test]
fn a_second_rfetch_wakes_the_daemon() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let (dir, md, cfg, mut d, fresh) = sleeping_daemon_then_mail(&s, "wake");
    let cfg = cfg.to_str().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!has_message(&md, &fresh));
    for refused in [
        &["-C", cfg, "-k"][..],
        &["-C", cfg, "bob"],
        &["-C", cfg, "-d", "60"],
    ] {
        let o = rfetch(&dir, refused);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 8, "{refused:?}: {err}");
        assert!(
            err.contains(&format!("running at pid {}", d.child.id())),
            "{err}"
        );
    }
    assert!(!has_message(&md, &fresh));
    let start = Instant::now();
    let o = rfetch(&dir, &["-C", cfg, "-v"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        err.contains(&format!("background rfetch at {} awakened", d.child.id())),
        "{err}"
    );
    wait_message(&mut d, &md, &fresh, Duration::from_secs(30));
    let took = start.elapsed();
    eprintln!("woken poll delivered the message {took:?} after rfetch was started");
    assert!(took < Duration::from_secs(1), "{took:?}:\n{}", d.log());
    let q = rfetch(&dir, &["--quit"]);
    assert_eq!(code(&q), 0, "{}", String::from_utf8_lossy(&q.stderr));
    assert_eq!(d.wait_exit(Duration::from_secs(30)).code(), Some(0));
}

/// SIGHUP (a terminal or session going away) does not end the daemon: it wakes it, as fetchmail
/// does when it runs as root.
#[test]
fn sighup_wakes_the_daemon_and_does_not_kill_it() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let (dir, md, _, mut d, fresh) = sleeping_daemon_then_mail(&s, "hup");
    d.signal(Signal::HUP);
    wait_message(&mut d, &md, &fresh, Duration::from_secs(30));
    d.wait_log("awakened by SIGHUP", 1, Duration::from_secs(10));
    assert!(d.child.try_wait().unwrap().is_none(), "still running");
    let q = rfetch(&dir, &["--quit"]);
    assert_eq!(code(&q), 0, "{}", String::from_utf8_lossy(&q.stderr));
    assert_eq!(d.wait_exit(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn quit_with_options_stops_the_daemon_and_takes_over() {
    // `rfetch -q -C cfg` (what an init script's restart runs): the daemon is stopped, then this
    // process polls as the new instance.
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let (dir, md, cfg, mut d, fresh) = sleeping_daemon_then_mail(&s, "takeover");
    let q = rfetch(&dir, &["-q", "-C", cfg.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&q.stderr);
    assert_eq!(code(&q), 0, "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    let st = d.wait_exit(Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "{}", d.log());
    // The message came in through the new instance, which then released the lock.
    assert!(has_message(&md, &fresh), "{stderr}");
    assert!(!dir.join(".fetchmail.pid").exists());
}

#[test]
fn rc_interval_skips_cycles() {
    // fetchmailrc `interval 3` with `-d 2`: that poll runs every third cycle (6 s), the other
    // every cycle. Both keep their mail (these mailboxes belong to other tests too).
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("interval");
    let rc = dir.join("fetchmailrc");
    let server = |label: &str, user: &str, extra: &str| {
        format!(
            "poll {label} via 127.0.0.1 proto pop3 port {} {extra}\n  user {user} password {user}pw ssl sslcertfile \"{}\" sslcommonname localhost keep\n  mda \"cat >/dev/null\"\n",
            s.port("POP3S_PORT"),
            s.ca().display()
        )
    };
    std::fs::write(
        &rc,
        format!(
            "set idfile \"{}/ids\"\n{}{}",
            dir.display(),
            server("everythird", "bob", "interval 3"),
            server("everycycle", "alice", "")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut d = Daemon::start(&dir, &["-f", rc.to_str().unwrap(), "-d", "2", "-v"]);
    d.wait_log(
        "account everythird: next poll in 6 s",
        1,
        Duration::from_secs(60),
    );
    d.wait_log(
        "account everycycle: next poll in 2 s",
        2,
        Duration::from_secs(60),
    );
    assert!(
        !d.log().contains("account everythird: next poll in 2 s"),
        "{}",
        d.log()
    );
    d.signal(Signal::TERM);
    let st = d.wait_exit(Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "{}", d.log());
}

/// A scripted IMAP server (plain TCP, any number of connections) holding one folder. On the
/// first connection it drops IDLE with a BYE; later connections IDLE normally and announce a
/// message added after `add_after` with EXISTS. Without `idle` it lacks the IDLE capability
/// and reports the new message in a NOOP reply instead.
struct Scripted {
    port: u16,
    logins: Arc<Mutex<usize>>,
}

fn scripted_imap(idle: bool, add_after: Duration, subject: String) -> Scripted {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let logins = Arc::new(Mutex::new(0usize));
    let logins2 = Arc::clone(&logins);
    // The folder: (uid, body); the message appears `add_after` after the second login (IDLE)
    // or the first (no IDLE).
    let folder: Arc<Mutex<Vec<(u32, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let caps = if idle {
        "IMAP4rev1 IDLE UIDPLUS"
    } else {
        "IMAP4rev1 UIDPLUS"
    };
    std::thread::spawn(move || {
        for (conn_no, conn) in listener.incoming().enumerate() {
            let Ok(mut sock) = conn else { return };
            let folder = Arc::clone(&folder);
            let logins = Arc::clone(&logins2);
            let subject = subject.clone();
            std::thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(120)));
                let mut r = BufReader::new(sock.try_clone().expect("clone"));
                let mut out = |s: &str| sock.write_all(s.as_bytes()).is_ok();
                if !out(&format!("* OK [CAPABILITY {caps}] scripted\r\n")) {
                    return;
                }
                let mut announced = 0usize;
                let mut idle_tag = String::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if matches!(r.read_line(&mut line), Ok(0) | Err(_)) {
                        return;
                    }
                    let cmd = line.trim_end().to_string();
                    let (tag, rest) = cmd.split_once(' ').unwrap_or((cmd.as_str(), ""));
                    let upper = rest.to_ascii_uppercase();
                    let reply = if tag == "DONE" {
                        format!("{idle_tag} OK Idle completed\r\n")
                    } else if upper.starts_with("LOGIN") {
                        let n = {
                            let mut g = logins.lock().expect("lock");
                            *g += 1;
                            *g
                        };
                        if n == if idle { 2 } else { 1 } {
                            let folder = Arc::clone(&folder);
                            let subject = subject.clone();
                            std::thread::spawn(move || {
                                std::thread::sleep(add_after);
                                folder.lock().expect("lock").push((
                                    7,
                                    format!("From: a@x\r\nSubject: {subject}\r\n\r\nscripted\r\n"),
                                ));
                            });
                        }
                        format!("{tag} OK [CAPABILITY {caps}] in\r\n")
                    } else if upper.starts_with("CAPABILITY") {
                        format!("* CAPABILITY {caps}\r\n{tag} OK\r\n")
                    } else if upper.starts_with("SELECT") {
                        announced = folder.lock().expect("lock").len();
                        format!(
                            "* {announced} EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n{tag} OK [READ-WRITE] sel\r\n"
                        )
                    } else if upper.starts_with("UID SEARCH") {
                        let uids: Vec<String> = folder
                            .lock()
                            .expect("lock")
                            .iter()
                            .map(|(u, _)| u.to_string())
                            .collect();
                        format!("* SEARCH {}\r\n{tag} OK\r\n", uids.join(" "))
                    } else if upper.starts_with("UID FETCH") {
                        let mut s = String::new();
                        for (i, (uid, body)) in folder.lock().expect("lock").iter().enumerate() {
                            s.push_str(&format!(
                                "* {} FETCH (UID {uid} RFC822.SIZE {} FLAGS () BODY[] {{{}}}\r\n{body})\r\n",
                                i + 1,
                                body.len(),
                                body.len()
                            ));
                        }
                        format!("{s}{tag} OK\r\n")
                    } else if upper.starts_with("UID EXPUNGE") {
                        let mut f = folder.lock().expect("lock");
                        let n = f.len();
                        f.clear();
                        announced = 0;
                        let mut s = String::new();
                        for i in (1..=n).rev() {
                            s.push_str(&format!("* {i} EXPUNGE\r\n"));
                        }
                        format!("{s}{tag} OK\r\n")
                    } else if upper.starts_with("NOOP") {
                        let n = folder.lock().expect("lock").len();
                        let news = if n != announced {
                            announced = n;
                            format!("* {n} EXISTS\r\n")
                        } else {
                            String::new()
                        };
                        format!("{news}{tag} OK\r\n")
                    } else if upper.starts_with("IDLE") {
                        idle_tag = tag.to_string();
                        if !out("+ idling\r\n") {
                            return;
                        }
                        if conn_no == 0 {
                            std::thread::sleep(Duration::from_millis(300));
                            let _ = out("* BYE scripted server restarting\r\n");
                            return;
                        }
                        // Announce the message once it is there (or stay quiet).
                        let start = Instant::now();
                        while start.elapsed() < Duration::from_secs(60) {
                            let n = folder.lock().expect("lock").len();
                            if n != announced {
                                announced = n;
                                let _ = out(&format!("* {n} EXISTS\r\n"));
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        continue;
                    } else if upper.starts_with("LOGOUT") {
                        let _ = out(&format!("* BYE bye\r\n{tag} OK\r\n"));
                        return;
                    } else {
                        format!("{tag} OK\r\n")
                    };
                    if !out(&reply) {
                        return;
                    }
                }
            });
        }
    });
    Scripted { port, logins }
}

fn scripted_config(dir: &Path, port: u16, md: &Path) -> PathBuf {
    write_config(
        dir,
        &format!(
            "[accounts.scripted]\nhost = \"127.0.0.1\"\nuser = \"bob\"\npassword = \"x\"\ntls = false\ntimeout = 20\n\
             [accounts.scripted.fetch]\nprotocol = \"imap\"\nport = {port}\nmaildir = \"{}\"\n",
            md.display()
        ),
    )
}

#[test]
fn idle_reconnects_after_bye_and_fetches_on_exists() {
    let dir = tempdir("reconnect");
    let md = dir.join("Maildir");
    let subject = marker("after-bye");
    let srv = scripted_imap(true, Duration::from_millis(1500), subject.clone());
    let cfg = scripted_config(&dir, srv.port, &md);
    let mut d = Daemon::start(
        &dir,
        &[
            "-C",
            cfg.to_str().unwrap(),
            "-d",
            "300",
            "--idle",
            "--danger-plaintext-auth",
            "-v",
        ],
    );
    // BYE during IDLE -> reconnect (1 s backoff) -> poll -> IDLE -> EXISTS -> fetch.
    wait_message(&mut d, &md, &subject, Duration::from_secs(60));
    assert!(*srv.logins.lock().unwrap() >= 2);
    let log = d.log();
    assert_eq!(log.matches("connection lost").count(), 1, "{log}");
    assert!(log.contains("connection restored"), "{log}");
    d.signal(Signal::TERM);
    let st = d.wait_exit(Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "{}", d.log());
    assert!(!dir.join(".fetchmail.pid").exists());
}

#[test]
fn without_idle_capability_noop_every_28s_finds_new_mail_on_the_same_connection() {
    let dir = tempdir("noop");
    let md = dir.join("Maildir");
    let subject = marker("noop");
    let srv = scripted_imap(false, Duration::from_millis(1500), subject.clone());
    let cfg = scripted_config(&dir, srv.port, &md);
    let mut d = Daemon::start(
        &dir,
        &[
            "-C",
            cfg.to_str().unwrap(),
            "-d",
            "300",
            "--idle",
            "--danger-plaintext-auth",
            "-v",
        ],
    );
    d.wait_log("does not offer IDLE", 1, Duration::from_secs(30));
    // The first NOOP comes 28 s after the first poll; the interval is 300 s.
    wait_message(&mut d, &md, &subject, Duration::from_secs(120));
    assert_eq!(*srv.logins.lock().unwrap(), 1, "{}", d.log());
    d.signal(Signal::TERM);
    let st = d.wait_exit(Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "{}", d.log());
}
