//! Crash safety: rfetch (POP3S → Maildir, nokeep) killed with SIGKILL at random moments and
//! rerun until done never loses a message and leaves nothing on the server. Duplicates are
//! allowed only for the messages in flight at a kill.
// try_wait() polls and the kill path waits; clippy cannot see that every path reaps.
#![allow(clippy::zombie_processes)]
#![allow(dead_code)] // the shared helpers are not all used by every binary

mod common;
include!("rfetch_support.rs.inc");

use std::collections::HashMap;
use std::time::{Duration, Instant};

fn message_ids(md: &Path) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for m in maildir_messages(md) {
        let text = String::from_utf8_lossy(&m);
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .expect("a Message-ID")
            .to_owned();
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

/// A cheap pseudo-random sequence (no rand crate): xorshift seeded from the clock.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_at_random_times_loses_nothing() {
    let s = common::Stack::get();
    let n: usize = std::env::var("RFETCH_KILL_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let kills: usize = std::env::var("RFETCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let dir = tempdir("kill");
    clear_bob(&s);
    let seeded = stack_sh(&s, &["seed", "bob", &n.to_string(), "2000"]);
    let _ = seeded;
    assert_eq!(server_count(&s), n);
    let md = dir.join("Maildir");
    let cfg = toml_config(
        &s,
        &dir,
        "pop3",
        "implicit",
        &format!("maildir = \"{}\"", md.display()),
        "",
    );
    let mut rng = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1);
    let mut killed = 0;
    let mut runs = 0;
    let start = Instant::now();
    loop {
        runs += 1;
        assert!(start.elapsed() < Duration::from_secs(600), "too slow");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rfetch"))
            .args(["-C", cfg.to_str().unwrap()])
            .env("HOME", &dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut deadline = None;
        if killed < kills {
            deadline = Some(Instant::now() + Duration::from_millis(50 + rng.next() % 700));
        }
        let mut exited = None;
        while deadline.is_some_and(|d| Instant::now() < d) {
            if let Some(st) = child.try_wait().unwrap() {
                exited = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if deadline.is_some() && exited.is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            killed += 1;
            // The lock of a killed instance is stale: the next run must take it over.
            continue;
        }
        let st = child.wait().unwrap();
        let c = st.code().unwrap_or(-1);
        assert!(c == 0 || c == 1, "run exit {c}");
        if server_count(&s) == 0 {
            break;
        }
        assert!(runs < kills + 20, "not converging after {runs} runs");
    }
    let ids = message_ids(&md);
    assert_eq!(
        ids.len(),
        n,
        "every seeded message delivered at least once ({killed} kills, {runs} runs)"
    );
    let dups: usize = ids.values().map(|c| c - 1).sum();
    // At most one batch (plus the pipelined window) per kill may be re-fetched.
    assert!(
        dups <= killed * 64,
        "{dups} duplicates after {killed} kills"
    );
    assert_eq!(server_count(&s), 0, "server empty");
    eprintln!("{n} messages, {killed} kills, {runs} runs, {dups} duplicates");
}
