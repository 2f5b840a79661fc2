//! The deployment that scales past one rfetch: accounts sharded across instances of the
//! template unit contrib/systemd/rfetch@.service, each with its own fetchmailrc, lock (PID
//! file) and seen-state file, all delivering into the stack's Dovecot (LMTP) and Postfix
//! (SMTP), which do the rest. Three instances run at the same time on disjoint accounts (IMAPS
//! folders of alice's and bob's, bob's POP3S INBOX): every message arrives in alice's mailbox
//! exactly once, a second start of one instance is refused by that instance's lock while the
//! others go on, SIGUSR1 (`systemctl kill -s USR1 rfetch@NAME`) makes each poll again, and
//! SIGTERM (`systemctl stop`) ends each with status 0 and its lock removed.
//!
//! systemd is not available here, so the test runs the command line the unit would run: the
//! unit's own `ExecStart=` with its specifiers and `Environment=` variables expanded the way
//! systemd expands them for a user unit (`%i` the instance, `%h` the home directory, `%t` the
//! runtime directory, `${VAR}` from `Environment=`, `@BINDIR@` the install step's binary
//! directory). A change to the unit changes what this test runs; a specifier it does not know
//! fails it.

#![allow(dead_code)] // the shared helpers are not all used by every binary

mod common;
include!("rfetch_support.rs.inc");

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

const UNIT: &str = include_str!("../contrib/systemd/rfetch@.service");
/// Messages per account and wave.
const PER_ACCOUNT: usize = 4;

/// The unit's `Environment=` assignments and its `ExecStart=` line.
fn unit_exec_start() -> (HashMap<String, String>, String) {
    let mut env = HashMap::new();
    let mut exec = None;
    for line in UNIT.lines().map(str::trim) {
        if let Some(assignments) = line.strip_prefix("Environment=") {
            for a in assignments.split_whitespace() {
                let (k, v) = a.split_once('=').expect("Environment=KEY=VALUE");
                env.insert(k.to_string(), v.to_string());
            }
        } else if let Some(cmd) = line.strip_prefix("ExecStart=") {
            assert!(exec.is_none(), "one ExecStart= in rfetch@.service");
            exec = Some(cmd.to_string());
        }
    }
    (env, exec.expect("rfetch@.service has an ExecStart="))
}

/// The argv systemd would run for instance `instance` of a user unit: specifiers, then
/// `${VAR}` (a whole word, as in the unit), then `@BINDIR@`.
fn instance_argv(instance: &str, home: &Path, runtime: &Path) -> Vec<String> {
    let (env, exec) = unit_exec_start();
    assert!(
        !exec.contains('"') && !exec.contains('\''),
        "no quoting in ExecStart: {exec}"
    );
    let bindir = Path::new(env!("CARGO_BIN_EXE_rfetch")).parent().unwrap();
    exec.split_whitespace()
        .map(|word| {
            let mut out = String::new();
            let mut chars = word.chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('i') => out.push_str(instance),
                    Some('h') => out.push_str(home.to_str().unwrap()),
                    Some('t') => out.push_str(runtime.to_str().unwrap()),
                    Some('%') => out.push('%'),
                    other => {
                        panic!("rfetch@.service uses %{other:?}, which this test does not expand")
                    }
                }
            }
            if let Some(var) = out.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
                out = env
                    .get(var)
                    .unwrap_or_else(|| panic!("${{{var}}} has no Environment= in the unit"))
                    .clone();
            }
            out.replace("@BINDIR@", bindir.to_str().unwrap())
        })
        .collect()
}

/// The state paths the unit gives an instance, read back from its argv.
fn option_value(argv: &[String], option: &str) -> PathBuf {
    let at = argv
        .iter()
        .position(|a| a == option)
        .unwrap_or_else(|| panic!("the unit passes no {option}: {argv:?}"));
    PathBuf::from(&argv[at + 1])
}

struct Instance {
    name: String,
    argv: Vec<String>,
    child: Child,
    log: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Instance {
    fn start(name: &str, home: &Path, runtime: &Path) -> Instance {
        let argv = instance_argv(name, home, runtime);
        let log = home.join(format!("{name}.log"));
        let child = spawn(&argv, home, &log);
        Instance {
            name: name.to_string(),
            argv,
            child,
            log,
        }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn signal(&self, sig: Signal) {
        kill_process(Pid::from_raw(self.child.id() as i32).unwrap(), sig).expect("signal");
    }
    fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("rfetch@{} exited ({st}):\n{}", self.name, self.log());
        }
    }
}

fn spawn(argv: &[String], home: &Path, log: &Path) -> Child {
    // A user unit's environment: HOME, nothing else of ours.
    Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("start {argv:?}: {e}"))
}

/// One account of a shard: where its mail comes from and how it leaves.
struct Account {
    label: String,
    user: &'static str,
    /// None: POP3S INBOX; Some: that IMAP folder over IMAPS.
    folder: Option<String>,
    lmtp: bool,
}

fn doveadm(s: &common::Stack, args: &[&str], stdin: Option<&[u8]>) {
    let mut c = Command::new("doveadm");
    c.arg("-c").arg(s.var("STACK_DOVECONF")).args(args);
    let ok = if let Some(data) = stdin {
        let mut child = c.stdin(Stdio::piped()).spawn().expect("doveadm");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), data).unwrap();
        child.wait().unwrap().success()
    } else {
        c.status().expect("doveadm").success()
    };
    assert!(ok, "doveadm {args:?}");
}

fn message_id(tag: &str, account: &str, wave: usize, i: usize) -> String {
    format!("<{tag}.{account}.w{wave}.{i}@shard.test>")
}

fn seed(s: &common::Stack, tag: &str, a: &Account, wave: usize) {
    let folder = a.folder.as_deref().unwrap_or("INBOX");
    for i in 0..PER_ACCOUNT {
        let id = message_id(tag, &a.label, wave, i);
        let msg = format!(
            "From: shard@localhost\nTo: {}@localhost\nSubject: {tag} {} wave {wave} #{i}\n\
             Message-ID: {id}\nDate: Sat, 05 Dec 2026 12:00:00 +0000\n\nsharded delivery\n",
            a.user, a.label
        );
        doveadm(
            s,
            &["save", "-u", a.user, "-m", folder],
            Some(msg.as_bytes()),
        );
    }
}

fn poll_lines(s: &common::Stack, accounts: &[&Account]) -> String {
    let mut rc = String::from("set no syslog\n");
    for a in accounts {
        let (proto, port) = match a.folder {
            Some(_) => ("imap", s.port("IMAPS_PORT")),
            None => ("pop3", s.port("POP3S_PORT")),
        };
        let folder = a
            .folder
            .as_ref()
            .map(|f| format!(" folder {f}"))
            .unwrap_or_default();
        let out = if a.lmtp {
            format!("lmtp smtphost 127.0.0.1/{}", s.port("LMTP_PORT"))
        } else {
            format!(
                "smtphost 127.0.0.1/{} smtpaddress localhost",
                s.port("SMTP_PORT")
            )
        };
        rc.push_str(&format!(
            "poll {label} via 127.0.0.1 proto {proto} port {port}\n  user {user} password {user}pw{folder} \
             ssl sslcertfile \"{ca}\" sslcommonname localhost\n  is alice here {out}\n",
            label = a.label,
            user = a.user,
            ca = s.ca().display(),
        ));
    }
    rc
}

/// How many copies of each Message-ID carrying `tag` are in alice's Maildir.
fn alice_copies(s: &common::Stack, tag: &str) -> HashMap<String, usize> {
    let md = PathBuf::from(s.var("STACK_MAILDIR1"));
    let mut copies = HashMap::new();
    for d in ["new", "cur"] {
        for e in std::fs::read_dir(md.join(d))
            .into_iter()
            .flatten()
            .flatten()
        {
            // The header is enough (alice's mailbox may hold big messages of other tests).
            let mut head = vec![0u8; 16 * 1024];
            let Ok(n) = std::fs::File::open(e.path())
                .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            else {
                continue;
            };
            let text = String::from_utf8_lossy(&head[..n]);
            for line in text.lines() {
                if let Some(id) = line.strip_prefix("Message-ID: ")
                    && id.contains(tag)
                {
                    *copies.entry(id.to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    copies
}

fn folder_count(s: &common::Stack, a: &Account) -> usize {
    let mut md = PathBuf::from(s.var(if a.user == "alice" {
        "STACK_MAILDIR1"
    } else {
        "STACK_MAILDIR2"
    }));
    if let Some(f) = &a.folder {
        md = md.join(format!(".{f}"));
    }
    ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(md.join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum()
}

/// Waits until every expected Message-ID has arrived, then checks none arrived twice and no
/// other message carrying the tag arrived.
fn wait_delivered_once(
    s: &common::Stack,
    tag: &str,
    expected: &[String],
    instances: &mut [Instance],
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let copies = alice_copies(s, tag);
        if expected.iter().all(|id| copies.contains_key(id)) {
            break;
        }
        for i in instances.iter_mut() {
            i.assert_running();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: missing {:?}\n{}",
            expected
                .iter()
                .filter(|id| !copies.contains_key(*id))
                .collect::<Vec<_>>(),
            instances
                .iter()
                .map(|i| format!("rfetch@{}:\n{}", i.name, i.log()))
                .collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Postfix may still be handing over a duplicate: give it a moment before counting.
    std::thread::sleep(Duration::from_secs(2));
    let copies = alice_copies(s, tag);
    for id in expected {
        assert_eq!(
            copies.get(id),
            Some(&1),
            "{what}: {id} arrived {:?} times",
            copies.get(id)
        );
    }
    assert_eq!(
        copies.len(),
        expected.len(),
        "{what}: unexpected messages: {copies:?}"
    );
}

#[test]
fn three_template_instances_deliver_their_shards_exactly_once() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let tag = format!(
        "shard{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let home = tempdir("sharded");
    let runtime = home.join("run");
    let confdir = home.join(".config/postie");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::create_dir_all(&confdir).unwrap();

    // Disjoint account sets: every mailbox belongs to exactly one instance.
    let acct = |label: &str, user, folder: Option<&str>, lmtp| Account {
        label: format!("{label}{}", std::process::id()),
        user,
        folder: folder.map(|f| format!("{f}{}", std::process::id())),
        lmtp,
    };
    let shards: Vec<(&str, Vec<Account>)> = vec![
        (
            "north",
            vec![
                acct("n1-", "bob", Some("shardN1-"), true),
                acct("n2-", "alice", Some("shardN2-"), true),
            ],
        ),
        (
            "south",
            vec![
                acct("s1-", "bob", Some("shardS1-"), false),
                acct("s2-", "alice", Some("shardS2-"), false),
            ],
        ),
        (
            "east",
            vec![
                acct("e1-", "bob", None, true),
                acct("e2-", "bob", Some("shardE2-"), false),
            ],
        ),
    ];
    let all: Vec<&Account> = shards.iter().flat_map(|(_, a)| a.iter()).collect();
    for a in &all {
        if let Some(f) = &a.folder {
            doveadm(&s, &["mailbox", "create", "-u", a.user, f], None);
        }
        seed(&s, &tag, a, 1);
    }
    let mut expected: Vec<String> = all
        .iter()
        .flat_map(|a| (0..PER_ACCOUNT).map(|i| message_id(&tag, &a.label, 1, i)))
        .collect();

    for (name, accounts) in &shards {
        let rc = confdir.join(format!("{name}.fetchmailrc"));
        std::fs::write(&rc, poll_lines(&s, &accounts.iter().collect::<Vec<_>>())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut instances: Vec<Instance> = shards
        .iter()
        .map(|(name, _)| Instance::start(name, &home, &runtime))
        .collect();
    // Each instance has its own lock and state paths.
    let pidfiles: Vec<PathBuf> = instances
        .iter()
        .map(|i| option_value(&i.argv, "--pidfile"))
        .collect();
    let idfiles: Vec<PathBuf> = instances
        .iter()
        .map(|i| option_value(&i.argv, "--idfile"))
        .collect();
    for paths in [&pidfiles, &idfiles] {
        let mut unique = paths.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 3, "per-instance paths: {paths:?}");
    }

    wait_delivered_once(&s, &tag, &expected, &mut instances, "first poll");
    for a in &all {
        assert_eq!(
            folder_count(&s, a),
            0,
            "{}: the server keeps nothing (nokeep)",
            a.label
        );
    }
    // All three run at once, each holding its own lock.
    for (i, pidfile) in instances.iter_mut().zip(&pidfiles) {
        i.assert_running();
        let text = std::fs::read_to_string(pidfile)
            .unwrap_or_else(|e| panic!("rfetch@{}: {}: {e}", i.name, pidfile.display()));
        assert!(
            text.starts_with(&i.child.id().to_string()),
            "rfetch@{} lock: {text:?}",
            i.name
        );
    }
    // A second start of one instance is refused by its lock (exit 8, the unit's
    // RestartPreventExitStatus), and the three go on.
    let again = home.join("south-again.log");
    let st = spawn(&instances[1].argv, &home, &again).wait().unwrap();
    assert_eq!(
        st.code(),
        Some(8),
        "{}",
        std::fs::read_to_string(&again).unwrap_or_default()
    );
    for i in instances.iter_mut() {
        i.assert_running();
    }
    // Each instance polled only its own accounts.
    for (i, (_, accounts)) in instances.iter().zip(&shards) {
        let log = i.log();
        for a in &all {
            let mine = accounts.iter().any(|m| m.label == a.label);
            let named = log.contains(&a.label)
                || a.folder.as_ref().is_some_and(|f| log.contains(f.as_str()));
            assert!(
                !named || mine,
                "rfetch@{} touched {}:\n{log}",
                i.name,
                a.label
            );
        }
    }

    // A second wave while they run; `systemctl kill -s USR1` wakes each for a poll.
    for a in &all {
        seed(&s, &tag, a, 2);
    }
    expected.extend(
        all.iter()
            .flat_map(|a| (0..PER_ACCOUNT).map(|i| message_id(&tag, &a.label, 2, i))),
    );
    for i in &instances {
        i.signal(Signal::USR1);
    }
    wait_delivered_once(&s, &tag, &expected, &mut instances, "after SIGUSR1");
    // Polls that find nothing new deliver nothing again.
    for i in &instances {
        i.signal(Signal::USR1);
    }
    std::thread::sleep(Duration::from_secs(3));
    wait_delivered_once(&s, &tag, &expected, &mut instances, "after an empty poll");

    // `systemctl stop`: SIGTERM, status 0, lock removed.
    for i in &instances {
        i.signal(Signal::TERM);
    }
    for (i, pidfile) in instances.iter_mut().zip(&pidfiles) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let st = loop {
            if let Some(st) = i.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "rfetch@{} did not stop:\n{}",
                i.name,
                i.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(st.code(), Some(0), "rfetch@{}:\n{}", i.name, i.log());
        assert!(!pidfile.exists(), "rfetch@{} left its lock", i.name);
    }
    for a in &all {
        if let Some(f) = &a.folder {
            doveadm(&s, &["mailbox", "delete", "-u", a.user, f], None);
        }
    }
    // Alice's mailbox is shared with other tests: take our messages out again.
    let md = PathBuf::from(s.var("STACK_MAILDIR1"));
    for d in ["new", "cur"] {
        for e in std::fs::read_dir(md.join(d))
            .into_iter()
            .flatten()
            .flatten()
        {
            let mut head = vec![0u8; 16 * 1024];
            let n = std::fs::File::open(e.path())
                .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
                .unwrap_or(0);
            if String::from_utf8_lossy(&head[..n]).contains(&tag) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&home);
}
