//! rsend's queue end to end: a scripted relay on 127.0.0.1 for the exact replies (4xx then 250,
//! 5xx, what a flush sends), and the real stack for delivery (relay down then up, kill -9 during
//! a flush of 200 messages, two concurrent flushers). Every figure the kill test measures is
//! printed (cargo test -- --nocapture).
//!
//! POSTIE_QUEUE_KILLS (default 20) and POSTIE_QUEUE_MESSAGES (default 200) make the kill test
//! longer.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::recorder::Relay;
use common::rsend::*;

/// A port that refuses connections (see `common::closed_port`).
fn closed_port() -> u16 {
    common::closed_port()
}

/// An msmtprc whose account `default` talks plaintext to 127.0.0.1:`port`, with the queue in
/// `dir/queue` and `extra` lines.
fn relay_rc(dir: &Path, port: u16, extra: &str) -> PathBuf {
    write_rc(
        dir,
        &format!(
            "account default\n\
             host 127.0.0.1\n\
             port {port}\n\
             tls off\n\
             auth off\n\
             from alice@localhost\n\
             timeout 5\n\
             queue_dir {}\n\
             {extra}",
            dir.join("queue").display()
        ),
        0o600,
    )
}

fn queued_files(queue: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(queue) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = read
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "msg"))
        .collect();
    out.sort();
    out
}

fn message(marker: &str) -> Vec<u8> {
    format!("From: alice@localhost\nTo: bob@localhost\nSubject: {marker}\nX-Queue-Test: {marker}\n\nbody of {marker}\n")
        .into_bytes()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_4xx_then_250_is_queued_with_exit_0_and_a_flush_delivers_it_once() {
    let relay = Relay::start(&["451 4.3.0 greylisted, try later"]);
    let dir = TempDir::new("q4xx");
    // The msmtprc extension keyword, not a command-line flag.
    let log = dir.path().join("rsend.log");
    let rc = relay_rc(
        dir.path(),
        relay.port,
        &format!("queue transient\nlogfile {}\n", log.display()),
    );
    let rc = rc.to_str().unwrap();
    let marker = unique("q4xx");
    let out = rsend(&["-C", rc, "bob@localhost"], &message(&marker));
    assert_exit(&out, 0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("queued=") && logged.contains("greylisted") && logged.contains("EX_OK"),
        "{logged}"
    );
    assert!(
        stderr(&out).contains("queued as") && stderr(&out).contains("451 4.3.0 greylisted"),
        "{}",
        describe(&out)
    );
    assert!(relay.accepted().is_empty());
    assert_eq!(queued_files(&dir.path().join("queue")).len(), 1);

    let list = rsend(&["-C", rc, "-bp"], b"");
    assert_exit(&list, 0);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("alice@localhost")
            && text.contains("bob@localhost")
            && text.contains("greylisted")
            && text.contains("1 attempt"),
        "{text}"
    );

    let flush = rsend(&["-C", rc, "-q"], b"");
    assert_exit(&flush, 0);
    let accepted = relay.accepted();
    assert_eq!(accepted.len(), 1, "{}", describe(&flush));
    assert!(contains(&accepted[0], marker.as_bytes()));
    assert!(queued_files(&dir.path().join("queue")).is_empty());
    // A second flush finds nothing to send.
    assert_exit(&rsend(&["-C", rc, "-q"], b""), 0);
    assert_eq!(relay.accepted().len(), 1);
    let list = rsend(&["-C", rc, "-bp"], b"");
    assert!(String::from_utf8_lossy(&list.stdout).contains("Mail queue is empty"));
}

#[test]
fn a_5xx_is_never_queued() {
    let relay = Relay::start(&["550 5.1.1 no such user"]);
    let dir = TempDir::new("q5xx");
    let rc = relay_rc(dir.path(), relay.port, "queue transient\n");
    let out = rsend(
        &[
            "-C",
            rc.to_str().unwrap(),
            "--queue-on-failure",
            "bob@localhost",
        ],
        &message(&unique("q5xx")),
    );
    assert_exit(&out, 65);
    assert!(stderr(&out).contains("550 5.1.1"), "{}", describe(&out));
    assert!(queued_files(&dir.path().join("queue")).is_empty());
    let tmp = std::fs::read_dir(dir.path().join("queue/tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp, 0, "the attempt's queue file was not removed");
}

#[test]
fn without_queueing_a_4xx_still_fails_with_75() {
    let relay = Relay::start(&["451 4.3.0 later"]);
    let dir = TempDir::new("qoff");
    let rc = relay_rc(dir.path(), relay.port, "");
    let out = rsend(
        &["-C", rc.to_str().unwrap(), "bob@localhost"],
        &message("x"),
    );
    assert_exit(&out, 75);
    assert!(!dir.path().join("queue").exists());
}

#[test]
fn odq_queues_without_connecting_and_remove_takes_it_out() {
    let relay = Relay::start(&[]);
    let dir = TempDir::new("qodq");
    let rc = relay_rc(dir.path(), relay.port, "");
    let rc = rc.to_str().unwrap();
    let out = rsend(&["-C", rc, "-odq", "bob@localhost"], &message("odq"));
    assert_exit(&out, 0);
    assert_eq!(relay.connections(), 0);
    let files = queued_files(&dir.path().join("queue"));
    assert_eq!(files.len(), 1);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&files[0]), 0o600);
    assert_eq!(mode(&dir.path().join("queue")), 0o700);
    let id = files[0].file_stem().unwrap().to_str().unwrap().to_string();
    let list = rsend(&["-C", rc, "-bp"], b"");
    assert!(String::from_utf8_lossy(&list.stdout).contains(&id));
    assert_exit(&rsend(&["-C", rc, "--queue-remove", &id], b""), 0);
    assert!(queued_files(&dir.path().join("queue")).is_empty());
    assert_exit(&rsend(&["-C", rc, "--queue-remove", &id], b""), 64);
    // An id is never a path: nothing outside the queue can be named.
    let out = rsend(&["-C", rc, "--queue-remove", "../msmtprc"], b"");
    assert_exit(&out, 64);
    assert!(
        stderr(&out).contains("not a queue id"),
        "{}",
        describe(&out)
    );
    assert!(Path::new(rc).exists());
    assert_exit(&rsend(&["-C", rc, "-q"], b""), 0);
    assert_eq!(relay.connections(), 0);
}

#[test]
fn queue_always_in_toml_queues_and_flushes_in_the_background() {
    let relay = Relay::start(&[]);
    let dir = TempDir::new("qtoml");
    let toml = dir.path().join("config.toml");
    std::fs::write(
        &toml,
        format!(
            "[defaults]\nqueue = \"always\"\nqueue_dir = \"{}\"\n\
             [accounts.default]\nhost = \"127.0.0.1\"\nport = {}\ntls = false\n\
             auth = false\nfrom = \"alice@localhost\"\n",
            dir.path().join("queue").display(),
            relay.port
        ),
    )
    .unwrap();
    let marker = unique("qtoml");
    let out = rsend(
        &["-C", toml.to_str().unwrap(), "bob@localhost"],
        &message(&marker),
    );
    assert_exit(&out, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.accepted().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let accepted = relay.accepted();
    assert_eq!(accepted.len(), 1, "the background flush did not send it");
    assert!(contains(&accepted[0], marker.as_bytes()));
    while !queued_files(&dir.path().join("queue")).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(queued_files(&dir.path().join("queue")).is_empty());
}

#[test]
fn a_successful_send_flushes_what_waits_in_the_background() {
    let relay = Relay::start(&[]);
    let dir = TempDir::new("qopp");
    let rc = relay_rc(dir.path(), relay.port, "");
    let rc = rc.to_str().unwrap();
    let waiting = unique("qopp-waiting");
    assert_exit(
        &rsend(&["-C", rc, "-odq", "bob@localhost"], &message(&waiting)),
        0,
    );
    assert_eq!(relay.connections(), 0);
    let direct = unique("qopp-direct");
    assert_exit(&rsend(&["-C", rc, "bob@localhost"], &message(&direct)), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.accepted().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let accepted = relay.accepted();
    assert_eq!(accepted.len(), 2, "the waiting message was not flushed");
    assert!(accepted.iter().any(|m| contains(m, waiting.as_bytes())));
    while !queued_files(&dir.path().join("queue")).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(queued_files(&dir.path().join("queue")).is_empty());
}

#[test]
fn mailq_lists_the_default_queue_of_a_host_only_run() {
    let relay = Relay::start(&[]);
    let home = TempDir::new("qhome");
    let mailq = home.path().join("mailq");
    std::os::unix::fs::symlink(RSEND, &mailq).unwrap();
    let run = |program: &Path, args: &[&str], input: &[u8]| {
        let mut c = Command::new(program);
        c.args(args)
            .env("HOME", home.path())
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CONFIG_HOME");
        run_command(c, input)
    };
    let empty = run(&mailq, &[], b"");
    assert_exit(&empty, 0);
    assert!(String::from_utf8_lossy(&empty.stdout).contains("Mail queue is empty"));
    let port = relay.port.to_string();
    let args = [
        "--host=127.0.0.1",
        "--port",
        &port,
        "--tls=off",
        "--auth=off",
        "-f",
        "carol@localhost",
        "-odq",
        "dave@localhost",
    ];
    assert_exit(&run(Path::new(RSEND), &args, &message("mailq")), 0);
    let queue = home.path().join(".local/state/postie/queue");
    assert_eq!(queued_files(&queue).len(), 1);
    let listed = run(&mailq, &[], b"");
    assert_exit(&listed, 0);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("carol@localhost") && text.contains("dave@localhost"),
        "{text}"
    );
    // The flush needs no configuration file: the message carries its command-line settings.
    assert_exit(&run(Path::new(RSEND), &["-q"], b""), 0);
    assert_eq!(relay.accepted().len(), 1);
    assert!(queued_files(&queue).is_empty());
}

#[test]
fn odb_queues_and_flushes_in_the_background() {
    let relay = Relay::start(&[]);
    let dir = TempDir::new("qodb");
    let rc = relay_rc(dir.path(), relay.port, "");
    let marker = unique("qodb");
    let out = rsend(
        &["-C", rc.to_str().unwrap(), "-odb", "bob@localhost"],
        &message(&marker),
    );
    assert_exit(&out, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while (relay.accepted().is_empty() || !queued_files(&dir.path().join("queue")).is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let accepted = relay.accepted();
    assert_eq!(accepted.len(), 1);
    assert!(contains(&accepted[0], marker.as_bytes()));
    assert!(queued_files(&dir.path().join("queue")).is_empty());
}

#[test]
fn three_concurrent_flushers_send_each_message_exactly_once() {
    let relay = Relay::start(&[]);
    let dir = TempDir::new("qthree");
    let rc = relay_rc(dir.path(), relay.port, "");
    let rc = rc.to_str().unwrap();
    let n = 90;
    let base = unique("qthree");
    for i in 0..n {
        let out = rsend(
            &["-C", rc, "-odq", "bob@localhost"],
            &message(&format!("{base}-{i}")),
        );
        assert_exit(&out, 0);
    }
    let flushers: Vec<_> = (0..3).map(|_| flusher(rc).spawn().unwrap()).collect();
    for f in flushers {
        let out = f.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in relay.accepted() {
        let text = String::from_utf8_lossy(&m).into_owned();
        let marker = text
            .lines()
            .find_map(|l| l.strip_prefix("X-Queue-Test: "))
            .unwrap()
            .to_string();
        *counts.entry(marker).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), n);
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
    assert!(queued_files(&dir.path().join("queue")).is_empty());
    // Not a vacuous pass: more than one flusher delivered.
    assert!(
        relay.delivering_connections().len() >= 2,
        "only one flusher sent anything"
    );
}

#[test]
fn corrupt_and_foreign_files_are_reported_and_skipped_never_sent() {
    let relay = Relay::start(&[]);
    let dir = TempDir::new("qbad");
    let rc = relay_rc(dir.path(), relay.port, "");
    let rc = rc.to_str().unwrap();
    let queue = dir.path().join("queue");
    for tag in ["good", "cut", "garbled"] {
        let out = rsend(
            &["-C", rc, "-odq", "bob@localhost"],
            &message(&format!("bad-{tag}")),
        );
        assert_exit(&out, 0);
        // Distinct ids need not sort in queueing order: find each file by content.
    }
    for file in queued_files(&queue) {
        let data = std::fs::read(&file).unwrap();
        if contains(&data, b"bad-cut") {
            // Truncated in the middle of the message: it must never go out half.
            std::fs::write(&file, &data[..data.len() - 10]).unwrap();
        } else if contains(&data, b"bad-garbled") {
            let mut d = data.clone();
            d[0] = b'X';
            std::fs::write(&file, d).unwrap();
        }
    }
    std::fs::write(queue.join("README"), "not a message").unwrap();
    std::fs::write(queue.join("0-1.msg"), "").unwrap();
    let flush = rsend(&["-C", rc, "-q"], b"");
    // Something needs a person: exit 65, after sending what could be sent.
    assert_exit(&flush, 65);
    let err = stderr(&flush);
    assert!(
        err.contains("truncated or altered") && err.contains("not a postie queue file"),
        "{err}"
    );
    assert!(err.contains("README"), "{err}");
    let accepted = relay.accepted();
    assert_eq!(accepted.len(), 1, "{err}");
    assert!(contains(&accepted[0], b"bad-good"));
    // The bad files are kept (for a person to look at), the foreign one untouched.
    assert_eq!(queued_files(&queue).len(), 3);
    assert!(queue.join("README").exists());
    let list = rsend(&["-C", rc, "-bp"], b"");
    assert_exit(&list, 0);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("cannot be read") && text.contains("README"),
        "{text}"
    );
}

#[test]
fn held_message_after_a_5xx_in_a_flush_is_kept_and_reported() {
    let relay = Relay::start(&["550 5.7.1 relaying denied"]);
    let dir = TempDir::new("qheld");
    let rc = relay_rc(dir.path(), relay.port, "");
    let rc = rc.to_str().unwrap();
    assert_exit(
        &rsend(&["-C", rc, "-odq", "bob@localhost"], &message("held")),
        0,
    );
    let flush = rsend(&["-C", rc, "-q"], b"");
    assert_exit(&flush, 65);
    assert!(stderr(&flush).contains("held"), "{}", describe(&flush));
    let files = queued_files(&dir.path().join("queue"));
    assert_eq!(files.len(), 1, "a refused message is kept, not dropped");
    let list = String::from_utf8_lossy(&rsend(&["-C", rc, "-bp"], b"").stdout).into_owned();
    assert!(
        list.contains("held") && list.contains("relaying denied"),
        "{list}"
    );
    // Not retried automatically...
    assert_exit(&rsend(&["-C", rc, "-q"], b""), 65);
    assert_eq!(relay.connections(), 1);
    // ...but by id, on request.
    let id = files[0].file_stem().unwrap().to_str().unwrap().to_string();
    assert_exit(&rsend(&["-C", rc, "-q", "--flush-id", &id], b""), 0);
    assert_eq!(relay.accepted().len(), 1);
    assert!(queued_files(&dir.path().join("queue")).is_empty());
}

#[test]
fn a_message_older_than_queue_max_age_is_held_not_dropped() {
    let dir = TempDir::new("qage");
    let rc = relay_rc(dir.path(), closed_port(), "queue_max_age 1s\n");
    let rc = rc.to_str().unwrap();
    let out = rsend(
        &["-C", rc, "--queue-on-failure", "bob@localhost"],
        &message("old"),
    );
    assert_exit(&out, 0);
    std::thread::sleep(Duration::from_millis(1100));
    let flush = rsend(&["-C", rc, "-q"], b"");
    assert_exit(&flush, 65);
    assert!(
        stderr(&flush).contains("queued longer than 1s and kept"),
        "{}",
        describe(&flush)
    );
    assert_eq!(queued_files(&dir.path().join("queue")).len(), 1);
    let list = String::from_utf8_lossy(&rsend(&["-C", rc, "-bp"], b"").stdout).into_owned();
    assert!(
        list.contains("held") && list.contains("2 attempt(s)"),
        "{list}"
    );
}

// ---- against the real stack ----

/// The stack's SMTPS account for alice with the queue in `dir/queue`, at `port`.
fn stack_rc(stack: &common::Stack, dir: &Path, port: u16) -> PathBuf {
    let text = msmtprc_text(stack, "alicepw", port)
        + &format!("queue_dir {}\n", dir.join("queue").display());
    write_rc(dir, &text, 0o600)
}

/// For each marker `BASE-N` in alice's Maildir, how many copies arrived.
fn copies(stack: &common::Stack, base: &str) -> HashMap<String, usize> {
    let needle = format!("X-Queue-Test: {base}-");
    let mut out = HashMap::new();
    for (_, data) in find_message_files(&maildir(stack, "alice"), &needle) {
        let text = String::from_utf8_lossy(&data);
        if let Some(pos) = text.find(&needle) {
            let rest = &text[pos + needle.len()..];
            let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            *out.entry(n).or_insert(0) += 1;
        }
    }
    out
}

/// Waits until all `n` markers arrived and the count stopped growing for 2 s.
fn settled_copies(stack: &common::Stack, base: &str, n: usize) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (0usize, Instant::now());
    loop {
        let found = copies(stack, base);
        let total: usize = found.values().sum();
        if total != last.0 {
            last = (total, Instant::now());
        }
        if found.len() >= n && last.1.elapsed() > Duration::from_secs(2) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} messages arrived after 120 s",
            found.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn queue_many(rc: &str, base: &str, n: usize) {
    for i in 0..n {
        let out = rsend(
            &["-C", rc, "-odq", "alice@localhost"],
            &message(&format!("{base}-{i}")),
        );
        assert_exit(&out, 0);
    }
}

fn flusher(rc: &str) -> Command {
    let mut c = Command::new(RSEND);
    c.args(["-C", rc, "-q"])
        .env_remove("HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn stack_relay_down_queued_then_up_flush_delivers_once() {
    let stack = common::Stack::get();
    let dir = TempDir::new("qdown");
    let rc = stack_rc(&stack, dir.path(), closed_port());
    let base = unique("qdown");
    let out = rsend(
        &[
            "-C",
            rc.to_str().unwrap(),
            "--queue-on-failure",
            "alice@localhost",
        ],
        &message(&format!("{base}-0")),
    );
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("queued as"), "{}", describe(&out));
    assert_eq!(queued_files(&dir.path().join("queue")).len(), 1);
    // The relay comes back: the same account now points at the stack's SMTPS port.
    stack_rc(&stack, dir.path(), stack.port("SMTPS_PORT"));
    let flush = rsend(&["-C", rc.to_str().unwrap(), "-q"], b"");
    assert_exit(&flush, 0);
    assert!(queued_files(&dir.path().join("queue")).is_empty());
    let found = settled_copies(&stack, &base, 1);
    assert_eq!(found.get("0"), Some(&1), "{found:?}");
}

#[test]
fn stack_two_concurrent_flushers_send_each_message_exactly_once() {
    let stack = common::Stack::get();
    let dir = TempDir::new("qpair");
    let rc = stack_rc(&stack, dir.path(), stack.port("SMTPS_PORT"));
    let rc = rc.to_str().unwrap();
    let base = unique("qpair");
    let n = 60;
    queue_many(rc, &base, n);
    let a = flusher(rc).spawn().unwrap();
    let b = flusher(rc).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert_eq!(b.status.code(), Some(0), "{}", stderr(&b));
    assert!(queued_files(&dir.path().join("queue")).is_empty());
    let found = settled_copies(&stack, &base, n);
    let twice: Vec<_> = found.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(found.len(), n);
}

/// A small deterministic generator for the kill delays (no dependency for one test).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn stack_kill_9_during_a_flush_loses_nothing_and_duplicates_at_most_one_per_kill() {
    let stack = common::Stack::get();
    let dir = TempDir::new("qkill");
    let rc = stack_rc(&stack, dir.path(), stack.port("SMTPS_PORT"));
    let rc = rc.to_str().unwrap();
    let queue = dir.path().join("queue");
    let base = unique("qkill");
    let n = env_number("POSTIE_QUEUE_MESSAGES", 200);
    let wanted_kills = env_number("POSTIE_QUEUE_KILLS", 20);
    let started = Instant::now();
    queue_many(rc, &base, n);
    let queued_in = started.elapsed();

    let mut rng = Lcg(0x5eed ^ u64::from(std::process::id()));
    let (mut kills, mut runs, mut killed_while_sending) = (0usize, 0usize, 0usize);
    // The kill delay adapts so that most killed flushes have sent a few messages and are in
    // the middle of the next one: a window that sends too much shrinks, one that sends
    // nothing grows (a flush of 200 messages over one connection takes well under a second).
    let target = (n / (2 * wanted_kills.max(1))).max(1);
    let mut window_ms = 80u64;
    while kills < wanted_kills && !queued_files(&queue).is_empty() {
        let before = queued_files(&queue).len();
        let mut child = flusher(rc).spawn().unwrap();
        runs += 1;
        std::thread::sleep(Duration::from_millis(
            window_ms / 2 + rng.below(window_ms / 2 + 1),
        ));
        let killed = child.try_wait().unwrap().is_none();
        if killed {
            child.kill().unwrap();
            kills += 1;
        }
        let _ = child.wait();
        let sent = before - queued_files(&queue).len();
        if killed && sent > 0 {
            killed_while_sending += 1;
        }
        if sent > target * 2 {
            window_ms = (window_ms * 7 / 10).max(4);
        } else if sent == 0 {
            window_ms = window_ms * 13 / 10 + 1;
        }
    }
    let left_after_kills = queued_files(&queue).len();
    let last = flusher(rc).output().unwrap();
    assert_eq!(last.status.code(), Some(0), "{}", stderr(&last));
    assert!(
        queued_files(&queue).is_empty(),
        "the final flush left messages"
    );
    let found = settled_copies(&stack, &base, n);
    let lost: Vec<usize> = (0..n)
        .filter(|i| !found.contains_key(&i.to_string()))
        .collect();
    let duplicates: usize = found.values().map(|c| c - 1).sum();
    println!(
        "kill test: {n} messages queued in {:.1} s; {runs} flushes, {kills} killed with SIGKILL \
         ({killed_while_sending} of them after sending some; {left_after_kills} still queued \
         after the kills); lost {}; duplicates {duplicates} \
         (allowed: {kills}); total {:.1} s",
        queued_in.as_secs_f64(),
        lost.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(kills >= wanted_kills.min(1), "no flush was ever killed");
    assert!(
        duplicates <= kills,
        "{duplicates} duplicates for {kills} kills"
    );
}

#[test]
fn install_units_names_this_binary_and_queue_and_refuses_a_line_break() {
    let home = TempDir::new("qunits");
    let config = home.path().join("config");
    let run = |args: &[&str]| {
        let mut c = Command::new(RSEND);
        c.args(args)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", &config);
        run_command(c, b"")
    };
    let queue = home.path().join("my queue");
    let arg = format!("--queue-dir={}", queue.display());
    let out = run(&["--install-units", &arg]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("systemctl --user enable --now"));
    let units = config.join("systemd/user");
    let service = std::fs::read_to_string(units.join("rsend-queue.service")).unwrap();
    assert!(
        service.contains(&format!(
            "ExecStart=\"{RSEND}\" -q --due-only \"--queue-dir={}\"",
            queue.display()
        )),
        "{service}"
    );
    let path = std::fs::read_to_string(units.join("rsend-queue.path")).unwrap();
    assert!(
        path.contains(&format!("PathChanged={}\n", queue.display())),
        "{path}"
    );
    assert!(units.join("rsend-queue.timer").exists());
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let files: Vec<PathBuf> = ["service", "timer", "path"]
            .iter()
            .map(|e| units.join(format!("rsend-queue.{e}")))
            .collect();
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .args(&files)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&verify.stderr);
        assert!(
            verify.status.success() && !err.contains("rsend-queue"),
            "{err}"
        );
    }
    // A queue directory with a line break would add a directive of the caller's choosing.
    let fresh = TempDir::new("qunits-evil");
    let mut c = Command::new(RSEND);
    c.args([
        "--install-units",
        "--queue-dir=/tmp/q\nExecStartPre=/bin/evil",
    ])
    .env("HOME", fresh.path())
    .env("XDG_CONFIG_HOME", fresh.path());
    let out = run_command(c, b"");
    assert_exit(&out, 64);
    assert!(
        stderr(&out).contains("cannot be written into a unit file"),
        "{}",
        describe(&out)
    );
    assert!(!fresh.path().join("systemd").exists());
}

#[test]
fn systemd_units_verify() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("skipped: systemd-analyze is not installed (apt-get install systemd)");
        return;
    };
    assert!(out.status.success());
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd");
    // The templates name @BINDIR@/rsend; verify against a directory where it exists.
    let dir = TempDir::new("units");
    let mut units = Vec::new();
    for name in [
        "rsend-queue.service",
        "rsend-queue.timer",
        "rsend-queue.path",
    ] {
        let text = std::fs::read_to_string(examples.join(name)).unwrap();
        let text = text.replace("@BINDIR@/rsend", RSEND);
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&units)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("rsend-queue")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{err}"
    );
}
