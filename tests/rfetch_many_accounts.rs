//! Many accounts in one rfetch, measured without depending on the machine's load: IMAP
//! accounts in IDLE cause no periodic wake-ups (the context switches of every rfetch thread,
//! counted by the kernel, stay flat while nothing happens) and cost a bounded resident memory
//! each (the difference between a daemon with few and one with many accounts); polling
//! accounts of one server never hold more than `max_connections` sessions at once, and every
//! one of them is polled. The servers are scripted (plain TCP on loopback), so the tests need
//! no mail stack.

#![allow(dead_code)] // the shared helpers are not all used by every binary

mod common;
include!("rfetch_support.rs.inc");

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A quiet IMAP server: an empty INBOX, IDLE answered with "+ idling" and nothing after it
/// until DONE. Counts the sessions currently in IDLE.
fn quiet_imap() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let idling = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&idling);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut sock) = conn else { return };
            let idling = Arc::clone(&counter);
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let _ = sock.set_read_timeout(Some(Duration::from_secs(300)));
                    let mut r = BufReader::new(sock.try_clone().expect("clone"));
                    let caps = "IMAP4rev1 IDLE UIDPLUS";
                    let mut out = |s: &str| sock.write_all(s.as_bytes()).is_ok();
                    if !out(&format!("* OK [CAPABILITY {caps}] quiet\r\n")) {
                        return;
                    }
                    let mut idle_tag = None::<String>;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if matches!(r.read_line(&mut line), Ok(0) | Err(_)) {
                            if idle_tag.is_some() {
                                idling.fetch_sub(1, Ordering::SeqCst);
                            }
                            return;
                        }
                        let cmd = line.trim_end().to_string();
                        let (tag, rest) = cmd.split_once(' ').unwrap_or((cmd.as_str(), ""));
                        let upper = rest.to_ascii_uppercase();
                        let reply = if tag == "DONE" {
                            idling.fetch_sub(1, Ordering::SeqCst);
                            format!("{} OK idle done\r\n", idle_tag.take().unwrap_or_default())
                        } else if upper.starts_with("CAPABILITY") {
                            format!("* CAPABILITY {caps}\r\n{tag} OK\r\n")
                        } else if upper.starts_with("SELECT") || upper.starts_with("EXAMINE") {
                            format!("* 0 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n{tag} OK [READ-WRITE] sel\r\n")
                        } else if upper.starts_with("UID SEARCH") {
                            format!("* SEARCH\r\n{tag} OK\r\n")
                        } else if upper.starts_with("IDLE") {
                            idle_tag = Some(tag.to_string());
                            idling.fetch_add(1, Ordering::SeqCst);
                            "+ idling\r\n".to_string()
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
                })
                .expect("server thread");
        }
    });
    (port, idling)
}

/// A daemon with `n` IDLE accounts on the quiet server; killed and reaped on drop.
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
    fn start(dir: &Path, port: u16, n: usize) -> Daemon {
        let mut cfg = String::new();
        for k in 0..n {
            let md = dir.join(format!("md{k}"));
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(md.join(sub)).expect("maildir");
            }
            cfg.push_str(&format!(
                "[accounts.a{k}]\nhost = \"127.0.0.1\"\nuser = \"u{k}\"\npassword = \"x\"\ntls = false\n\
                 [accounts.a{k}.fetch]\nprotocol = \"imap\"\nport = {port}\nidle = true\nmaildir = \"{}\"\n\n",
                md.display()
            ));
        }
        let cfg = write_config(dir, &cfg);
        let log = dir.join("rfetch.log");
        let err = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_rfetch"))
            .args(["-N", "-d", "300", "-C"])
            .arg(&cfg)
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

    /// A field of /proc/PID/status (the number before "kB" for sizes).
    fn status(&self, field: &str) -> u64 {
        let text =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in status"))
    }

    /// Context switches (voluntary and involuntary) summed over every thread: each time a
    /// thread of rfetch went to sleep or was put off the CPU. A thread that sleeps on a timer
    /// adds one per expiry, whatever the load.
    fn switches(&self) -> u64 {
        let dir = format!("/proc/{}/task", self.child.id());
        let mut sum = 0;
        for t in std::fs::read_dir(dir).expect("tasks").flatten() {
            let Ok(text) = std::fs::read_to_string(t.path().join("status")) else {
                continue; // a thread that just ended
            };
            for l in text.lines() {
                if let Some(v) = l
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    sum += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
        sum
    }
}

fn wait_idling(d: &mut Daemon, idling: &AtomicUsize, n: usize) {
    let start = Instant::now();
    while idling.load(Ordering::SeqCst) < n {
        if let Ok(Some(st)) = d.child.try_wait() {
            panic!("rfetch exited ({st}):\n{}", d.log());
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {} of {n} accounts in IDLE:\n{}",
            idling.load(Ordering::SeqCst),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn idle_accounts_sleep_without_wakeups_and_cost_little_memory() {
    const FEW: usize = 5;
    const MANY: usize = 55;
    let (port, idling) = quiet_imap();
    let dir_few = tempdir("idle-few");
    let mut few = Daemon::start(&dir_few, port, FEW);
    wait_idling(&mut few, &idling, FEW);
    let dir_many = tempdir("idle-many");
    let mut many = Daemon::start(&dir_many, port, MANY);
    wait_idling(&mut many, &idling, FEW + MANY);
    // Let both settle (the last account's log line, the allocator), then watch a quiet while.
    std::thread::sleep(Duration::from_millis(500));
    let before = many.switches();
    std::thread::sleep(Duration::from_secs(3));
    let woke = many.switches() - before;
    let threads = many.status("Threads");
    // Before: every account thread woke every 500 ms to look at the stop flag (55 x 6 = 330 in
    // 3 s) and the main thread every 250 ms.
    assert!(
        woke <= 5,
        "{woke} context switches in 3 s of quiet across {threads} threads of rfetch with {MANY} IDLE accounts"
    );
    // Anonymous memory only: the binary's own pages (shared, counted in VmRSS) differ with
    // the code paths each daemon happened to run. The bound is for this test's debug build,
    // whose frames are far larger than a release build's (bench/idle_accounts.sh measures
    // those: about 20 KiB of stack per waiting account thread in release, 56 KiB here).
    let per_account =
        (many.status("RssAnon") as f64 - few.status("RssAnon") as f64) / (MANY - FEW) as f64;
    assert!(
        per_account < 128.0,
        "{per_account:.1} KiB resident per IDLE account (plain TCP, debug build)"
    );
    eprintln!(
        "{MANY} IDLE accounts: {woke} context switches in 3 s, {threads} threads, {per_account:.1} KiB per account"
    );
    // And the quiet daemon still stops at once on SIGTERM (the beacon ends every IDLE wait).
    let t = Instant::now();
    let pid = rustix::process::Pid::from_raw(many.child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("signal");
    let st = loop {
        if let Some(st) = many.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no exit:\n{}",
            many.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.code(), Some(0), "{}", many.log());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?}",
        t.elapsed()
    );
}

/// A POP3 server with an empty maildrop that holds each session for `hold` after the login and
/// records the most sessions open at once and who logged in.
struct SlowPop3 {
    port: u16,
    most: Arc<AtomicUsize>,
    users: Arc<std::sync::Mutex<Vec<String>>>,
}

fn slow_pop3(hold: Duration) -> SlowPop3 {
    slow_pop3_quitting(hold, Duration::ZERO)
}

/// [`slow_pop3`] that also takes `quit_hold` to answer QUIT, as a server deleting many messages
/// does; the session counts as open until the answer.
fn slow_pop3_quitting(hold: Duration, quit_hold: Duration) -> SlowPop3 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let users = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (most2, users2) = (Arc::clone(&most), Arc::clone(&users));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut sock) = conn else { return };
            let now = open.fetch_add(1, Ordering::SeqCst) + 1;
            most2.fetch_max(now, Ordering::SeqCst);
            let (open, users) = (Arc::clone(&open), Arc::clone(&users2));
            std::thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(30)));
                let mut r = BufReader::new(sock.try_clone().expect("clone"));
                let mut out = |s: &str| sock.write_all(s.as_bytes()).is_ok();
                let mut line = String::new();
                let mut counted = true;
                let mut ok = out("+OK slow\r\n");
                while ok {
                    line.clear();
                    if matches!(r.read_line(&mut line), Ok(0) | Err(_)) {
                        break;
                    }
                    let cmd = line.trim_end().to_string();
                    let upper = cmd.to_ascii_uppercase();
                    ok = if upper.starts_with("CAPA") {
                        out("+OK\r\nUSER\r\nUIDL\r\n.\r\n")
                    } else if upper.starts_with("USER ") {
                        users.lock().expect("lock").push(cmd[5..].to_string());
                        out("+OK\r\n")
                    } else if upper.starts_with("PASS") {
                        std::thread::sleep(hold);
                        out("+OK in\r\n")
                    } else if upper.starts_with("STAT") {
                        out("+OK 0 0\r\n")
                    } else if upper.starts_with("UIDL") || upper.starts_with("LIST") {
                        out("+OK\r\n.\r\n")
                    } else if upper.starts_with("QUIT") {
                        std::thread::sleep(quit_hold);
                        // Counted closed before the client can see the end of the session.
                        open.fetch_sub(1, Ordering::SeqCst);
                        counted = false;
                        let _ = out("+OK bye\r\n");
                        break;
                    } else {
                        out("-ERR unknown\r\n")
                    };
                }
                if counted {
                    open.fetch_sub(1, Ordering::SeqCst);
                }
                drop(r);
                let _ = sock.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    SlowPop3 { port, most, users }
}

/// `n` POP3 accounts u0..u(n-1) on one server, `extra` added to each fetch table; one run.
fn poll_pop3_accounts(tag: &str, port: u16, n: usize, extra: &str) -> Output {
    let dir = tempdir(tag);
    let mut cfg = String::new();
    for k in 0..n {
        let md = dir.join(format!("md{k}"));
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).expect("maildir");
        }
        cfg.push_str(&format!(
            "[accounts.p{k}]\nhost = \"127.0.0.1\"\nuser = \"u{k}\"\npassword = \"x\"\ntls = false\n\
             [accounts.p{k}.fetch]\nprotocol = \"pop3\"\nport = {port}\nmaildir = \"{}\"\n{extra}\n",
            md.display()
        ));
    }
    let cfg = write_config(&dir, &cfg);
    rfetch(&dir, &["-C", cfg.to_str().expect("path")])
}

fn sorted_users(users: &std::sync::Mutex<Vec<String>>) -> Vec<String> {
    let mut u = users.lock().expect("lock").clone();
    u.sort();
    u
}

#[test]
fn pop3_accounts_of_one_server_share_a_bounded_number_of_connections() {
    const N: usize = 12;
    let expected: Vec<String> = {
        let mut v: Vec<String> = (0..N).map(|k| format!("u{k}")).collect();
        v.sort();
        v
    };
    // The setting: at most 3 at once, and every account polled exactly once.
    let server = slow_pop3(Duration::from_millis(150));
    let out = poll_pop3_accounts("gate3", server.port, N, "max_connections = 3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 1, "no mail is exit 1:\n{err}");
    assert_eq!(sorted_users(&server.users), expected, "{err}");
    let most = server.most.load(Ordering::SeqCst);
    assert!(
        most <= 3,
        "{most} sessions at once with max_connections = 3"
    );
    assert!(
        most >= 2,
        "the accounts still poll side by side ({most} at most)"
    );
    // The default bound (8) with more accounts than that.
    let server = slow_pop3(Duration::from_millis(150));
    let out = poll_pop3_accounts("gate-default", server.port, N, "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert_eq!(sorted_users(&server.users), expected, "{err}");
    let most = server.most.load(Ordering::SeqCst);
    assert!(
        most <= 8,
        "{most} sessions at once with the default bound of 8"
    );
    // Zero is refused, not taken as "no bound".
    let server = slow_pop3(Duration::from_millis(1));
    let out = poll_pop3_accounts("gate0", server.port, 1, "max_connections = 0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(code(&out), 0, "{err}");
    assert!(err.contains("max_connections"), "{err}");
    assert!(server.users.lock().expect("lock").is_empty());
}

/// A one-shot run's account alone on its server exits without waiting for the answer to QUIT
/// (its deletions are the server's business once the seen state is recorded); accounts that
/// share a server wait for it, so the server never counts more sessions than max_connections.
#[test]
fn quit_goes_unanswered_only_for_an_account_alone_on_its_server() {
    let quit_hold = Duration::from_secs(3);
    let server = slow_pop3_quitting(Duration::from_millis(1), quit_hold);
    let started = std::time::Instant::now();
    let out = poll_pop3_accounts("quit-alone", server.port, 1, "");
    let alone = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 1, "no mail is exit 1:\n{err}");
    assert_eq!(sorted_users(&server.users), vec!["u0".to_string()], "{err}");
    assert!(
        alone < quit_hold,
        "a lone account waited {alone:?} for QUIT's answer"
    );

    let server = slow_pop3_quitting(Duration::from_millis(1), quit_hold);
    let started = std::time::Instant::now();
    let out = poll_pop3_accounts("quit-shared", server.port, 2, "max_connections = 1");
    let shared = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 1, "no mail is exit 1:\n{err}");
    assert_eq!(server.users.lock().expect("lock").len(), 2, "{err}");
    assert_eq!(
        server.most.load(Ordering::SeqCst),
        1,
        "one session at a time"
    );
    assert!(
        shared >= quit_hold * 2,
        "two accounts sharing the server did not both wait for QUIT's answer ({shared:?})"
    );
}
