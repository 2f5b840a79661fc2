//! rfetch over IMAPS while the disk is busy: every message seeded into bob's INBOX is delivered
//! into the Maildir exactly once, checked by Message-ID, and none is left on the server (no
//! `keep`). The disk is kept busy by writer threads doing fsync'd writes, bounded in time and
//! size and stopped at the end, either in the test's own temp dir (the client's file system) or
//! next to the stack's Maildirs (the server's). Each writer writes 16 MiB buffered, then
//! fdatasyncs it at once: on the test VM that made a 5 KB create+fsync+rename+dir-fsync take
//! 32 ms (2 writers) and 55 ms (4) instead of 12 ms, where writers syncing every 256 KiB made it
//! faster (their flushes carried it). A slow disk stretches every fsync rfetch and Dovecot make, so batches, expunges and the seen state's commits overlap differently than on
//! an idle machine; the first rule, nothing lost and nothing twice, must not depend on that.
//!
//! `POSTIE_IO_PRESSURE_ROUNDS` (default 1) sets how many seed-and-poll rounds each test runs,
//! `POSTIE_IO_PRESSURE_WRITERS` (default 2) how many writer threads keep the disk busy (0: none,
//! for a baseline).
//! A failing round keeps its temp dir with rfetch's `-vv` log (`rfetch.log`, the wire lines).
//!
//! Also: another client empties and refills the mailbox while rfetch polls it (what a second
//! benchmark on the same stack did: counts of 0 to 1400 of 1000 seeded). rfetch must then
//! deliver nothing twice, and the next poll everything that is left.

mod common;
use common::mailbox::lock_bob;
use common::rfetch::*;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages seeded per round.
const N: usize = 500;
/// Size of each seeded message (bytes).
const SIZE: usize = 3000;
/// Background writers by default; each rewrites its own few files, so the disk space it takes
/// is bounded.
const WRITERS: usize = 2;
/// Bytes per write(2).
const CHUNK: usize = 256 * 1024;
/// Bytes written buffered before one fdatasync flushes them all: the device queue then holds a
/// long flush that the journal commits behind any other fsync wait for.
const FILE_BYTES: usize = 16 * 1024 * 1024;
/// Files per writer (rewritten in turn): at most FILES * FILE_BYTES (32 MiB) on disk per writer.
const FILES: usize = 2;
/// A writer stops by itself after this long, should the test never stop it.
const WRITER_LIMIT: Duration = Duration::from_secs(300);

/// Writer threads keeping the disk under `dir` busy until dropped.
struct Pressure {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
    dir: PathBuf,
}

impl Pressure {
    fn start(dir: &Path) -> Pressure {
        std::fs::create_dir_all(dir).expect("pressure dir");
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let writers = env_number("POSTIE_IO_PRESSURE_WRITERS", WRITERS).min(16);
        let threads = (0..writers)
            .map(|w| {
                let (stop, written, dir) = (stop.clone(), written.clone(), dir.to_path_buf());
                std::thread::spawn(move || write_until_stopped(&dir, w, &stop, &written))
            })
            .collect();
        // Let the writers fill the page cache and the device queue before the poll starts.
        std::thread::sleep(Duration::from_millis(500));
        Pressure {
            stop,
            written,
            threads,
            dir: dir.to_path_buf(),
        }
    }

    /// Stops the writers and returns how many bytes they wrote and synced.
    fn finish(mut self) -> u64 {
        self.halt();
        self.written.load(Ordering::SeqCst)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Pressure {
    fn drop(&mut self) {
        self.halt();
    }
}

fn write_until_stopped(dir: &Path, writer: usize, stop: &AtomicBool, written: &AtomicU64) {
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 + writer) as u8).collect();
    let started = Instant::now();
    let mut file_no = 0usize;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < WRITER_LIMIT {
        let path = dir.join(format!("w{writer}-{}", file_no % FILES));
        file_no += 1;
        let Ok(mut f) = std::fs::File::create(&path) else {
            return;
        };
        let mut in_file = 0;
        while in_file < FILE_BYTES && !stop.load(Ordering::SeqCst) {
            if f.write_all(&chunk).is_err() {
                return;
            }
            in_file += CHUNK;
        }
        if f.sync_data().is_err() {
            return;
        }
        written.fetch_add(in_file as u64, Ordering::SeqCst);
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Message-ID header of a message file (the first one in its header), if any.
fn message_id(msg: &[u8]) -> Option<String> {
    for line in msg.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None; // end of the header
        }
        if line.len() > 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
            return Some(String::from_utf8_lossy(&line[11..]).trim().to_string());
        }
    }
    None
}

/// Message-ID -> number of files carrying it, over the cur/ and new/ of a Maildir.
fn ids_in_maildir(md: &Path) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for sub in ["cur", "new"] {
        let Ok(rd) = std::fs::read_dir(md.join(sub)) else {
            continue;
        };
        for e in rd {
            let p = e.expect("read_dir entry").path();
            let msg = std::fs::read(&p).expect("read message");
            let id =
                message_id(&msg).unwrap_or_else(|| format!("(no Message-ID: {})", p.display()));
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

/// Seeds N messages, polls them over IMAPS with the disk under `pressure_dir` busy, and checks
/// by Message-ID that each was delivered exactly once and that the server kept none.
fn poll_under_pressure(s: &common::Stack, tag: &str, pressure_dir: impl Fn(&Path) -> PathBuf) {
    let rounds = env_number("POSTIE_IO_PRESSURE_ROUNDS", 1);
    for round in 1..=rounds {
        let dir = tempdir(&format!("io-pressure-{tag}-{round}"));
        clear_bob(s);
        stack_sh(s, &["seed", "bob", &N.to_string(), &SIZE.to_string()]);
        let seeded = ids_in_maildir(Path::new(s.var("STACK_MAILDIR2")));
        assert_eq!(seeded.len(), N, "{tag}: {N} distinct Message-IDs seeded");
        assert!(
            seeded.values().all(|&c| c == 1),
            "{tag}: seeded Message-IDs are distinct"
        );

        let md = dir.join("Maildir");
        let cfg = toml_config(
            s,
            &dir,
            "imap",
            "implicit",
            &format!("maildir = \"{}\"\nkeep = false", md.display()),
            "",
        );
        let pressure = Pressure::start(&pressure_dir(&dir));
        let started = Instant::now();
        let o = rfetch(&dir, &["-vv", "-C", cfg.to_str().unwrap()]);
        let took = started.elapsed();
        let written = pressure.finish();
        std::fs::write(dir.join("rfetch.log"), &o.stderr).expect("write the rfetch log");
        let left = server_count(s);

        let got = ids_in_maildir(&md);
        let twice: Vec<_> = got.iter().filter(|(_, c)| **c > 1).collect();
        let missing: Vec<_> = seeded.keys().filter(|id| !got.contains_key(*id)).collect();
        let foreign: Vec<_> = got.keys().filter(|id| !seeded.contains_key(*id)).collect();
        let ok = code(&o) == 0
            && twice.is_empty()
            && missing.is_empty()
            && foreign.is_empty()
            && left == 0;
        eprintln!(
            "{tag} round {round}: rfetch exit {}, {:.2} s, {} files delivered, {} distinct, \
             {left} left on the server; the writers wrote {} MiB meanwhile",
            code(&o),
            took.as_secs_f64(),
            got.values().sum::<usize>(),
            got.len(),
            written >> 20,
        );
        if !ok {
            let kept = dir.keep();
            panic!(
                "{tag} round {round}: rfetch exit {}; delivered twice: {twice:?}; missing: \
                 {missing:?}; not seeded: {foreign:?}; left on the server: {left}. \
                 rfetch -vv log: {}",
                code(&o),
                kept.join("rfetch.log").display()
            );
        }
    }
}

#[test]
fn imaps_poll_delivers_each_message_once_while_the_clients_disk_is_busy() {
    let s = common::Stack::get();
    let _lock = lock_bob(&s);
    poll_under_pressure(&s, "client-disk", |dir| dir.join("pressure"));
}

#[test]
fn imaps_poll_delivers_each_message_once_while_the_servers_disk_is_busy() {
    let s = common::Stack::get();
    let _lock = lock_bob(&s);
    // Next to bob's Maildir: Dovecot's index, uidlist and expunges wait behind these writes.
    let near_server = s.dir.join(format!("io-pressure-{}", std::process::id()));
    poll_under_pressure(&s, "server-disk", move |_| near_server.clone());
}

/// From an rfetch `-vv` log of an IMAP poll: the UIDs whose bodies arrived (`* N FETCH (UID u
/// ... BODY[] {size}`; a message another session expunged comes as `BODY[] NIL`, Dovecot's
/// `[EXPUNGEISSUED]`, and has nothing to deliver) and the UIDs rfetch marked `\Deleted` or expunged (`UID STORE`/`UID EXPUNGE`).
fn fetched_and_deleted_uids(log: &str) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let (mut fetched, mut deleted) = (BTreeSet::new(), BTreeSet::new());
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("rfetch: IMAP< * ") {
            if let Some(i) = rest.find(" FETCH (UID ")
                && rest.contains("BODY[] {")
            {
                let uid = rest[i + 12..]
                    .split(' ')
                    .next()
                    .and_then(|u| u.parse::<u32>().ok());
                fetched.extend(uid);
            }
        } else if let Some(rest) = line.strip_prefix("rfetch: IMAP> ") {
            let mut words = rest.split(' ').skip(1);
            let set = match (words.next(), words.next(), words.next()) {
                (Some("UID"), Some("STORE"), Some(set)) if rest.contains("\\Deleted") => set,
                (Some("UID"), Some("EXPUNGE"), Some(set)) => set,
                _ => continue,
            };
            for range in set.split(',') {
                let (a, b) = range.split_once(':').unwrap_or((range, range));
                let (a, b): (u32, u32) = (a.parse().expect("uid"), b.parse().expect("uid"));
                deleted.extend(a.min(b)..=a.max(b));
            }
        }
    }
    (fetched, deleted)
}

/// Files in a Maildir's new/ and cur/.
fn delivered_files(md: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|d| std::fs::read_dir(md.join(d)).map_or(0, |r| r.count()))
        .sum()
}

#[test]
fn imaps_poll_delivers_nothing_twice_while_another_client_empties_and_refills_the_mailbox() {
    let s = common::Stack::get();
    let _lock = lock_bob(&s);
    let rounds = env_number("POSTIE_IO_PRESSURE_ROUNDS", 1);
    for round in 1..=rounds {
        let dir = tempdir(&format!("io-pressure-interfered-{round}"));
        clear_bob(&s);
        stack_sh(&s, &["seed", "bob", &N.to_string(), &SIZE.to_string()]);
        let first = ids_in_maildir(Path::new(s.var("STACK_MAILDIR2")));
        assert_eq!(first.len(), N);
        let md = dir.join("Maildir");
        let cfg = toml_config(
            &s,
            &dir,
            "imap",
            "implicit",
            &format!("maildir = \"{}\"\nkeep = false", md.display()),
            "",
        );
        // The server's disk busy too, as in the benchmark that showed the collision.
        let pressure = Pressure::start(&s.dir.join(format!("io-pressure-{}", std::process::id())));
        let log1 = std::fs::File::create(dir.join("rfetch-1.log")).expect("log file");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rfetch"))
            .args(["-vv", "-C", cfg.to_str().unwrap()])
            .env("HOME", &*dir)
            .env_remove("FETCHMAILHOME")
            .env_remove("XDG_CONFIG_HOME")
            .stdout(std::process::Stdio::null())
            .stderr(log1)
            .spawn()
            .expect("start rfetch");
        // Mid-poll, at a point that moves from round to round (the first message, the first
        // batch, into the third, near the end): empty the mailbox (what `stack.sh clear` does:
        // doveadm expunge, then the files removed) and seed other messages.
        let trigger = [100, 1, 250, 420][(round - 1) % 4];
        let deadline = Instant::now() + Duration::from_secs(60);
        while delivered_files(&md) < trigger && Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let interfered_at = delivered_files(&md);
        clear_bob(&s);
        stack_sh(&s, &["seed", "bob", "200", &SIZE.to_string()]);
        let second: BTreeMap<String, usize> = ids_in_maildir(Path::new(s.var("STACK_MAILDIR2")))
            .into_iter()
            .filter(|(id, _)| !first.contains_key(id))
            .collect();
        let st1 = child.wait().expect("rfetch exits");
        drop(pressure);
        let after_first = ids_in_maildir(&md);
        // rfetch deleted only messages it fetched, and delivered each message it fetched.
        let log1 = std::fs::read_to_string(dir.join("rfetch-1.log")).expect("read the log");
        let (fetched, deleted) = fetched_and_deleted_uids(&log1);
        let deleted_unfetched: Vec<_> = deleted.difference(&fetched).collect();
        // The next poll, undisturbed, takes what is left.
        let o = rfetch(&dir, &["-vv", "-C", cfg.to_str().unwrap()]);
        std::fs::write(dir.join("rfetch-2.log"), &o.stderr).expect("write the rfetch log");
        let left = server_count(&s);
        let got = ids_in_maildir(&md);
        let twice: Vec<_> = got.iter().filter(|(_, c)| **c > 1).collect();
        let foreign: Vec<_> = got
            .keys()
            .filter(|id| !first.contains_key(*id) && !second.contains_key(*id))
            .collect();
        let second_missing: Vec<_> = second.keys().filter(|id| !got.contains_key(*id)).collect();
        eprintln!(
            "interfered round {round}: the mailbox emptied and refilled with {} after {interfered_at} \
             deliveries; first poll {st1}, {} fetched, {} deleted, {} delivered; second poll exit {}, {} delivered in all \
             ({} of the first seeding, {} of the second), {left} left on the server",
            second.len(),
            fetched.len(),
            deleted.len(),
            after_first.values().sum::<usize>(),
            code(&o),
            got.values().sum::<usize>(),
            got.keys().filter(|id| first.contains_key(*id)).count(),
            got.keys().filter(|id| second.contains_key(*id)).count(),
        );
        let ok = st1.code().is_some()
            && deleted_unfetched.is_empty()
            && fetched.len() == after_first.values().sum::<usize>()
            && code(&o) == 0
            && twice.is_empty()
            && foreign.is_empty()
            && second_missing.is_empty()
            && left == 0;
        if !ok {
            let kept = dir.keep();
            panic!(
                "interfered round {round}: first poll {st1}, second exit {}; the first poll \
                 fetched {} and delivered {}, deleted without fetching: {deleted_unfetched:?}; \
                 delivered twice: {twice:?}; not seeded: {foreign:?}; seeded second, never delivered: \
                 {second_missing:?}; left on the server: {left}. rfetch -vv logs in {}",
                code(&o),
                fetched.len(),
                after_first.values().sum::<usize>(),
                kept.display()
            );
        }
    }
}

#[test]
fn the_log_parser_finds_fetched_and_deleted_uids() {
    let log = "rfetch: IMAP> A0004 UID FETCH 7:9 (UID RFC822.SIZE FLAGS BODY.PEEK[])\n\
               rfetch: IMAP< * 1 FETCH (UID 7 RFC822.SIZE 10 FLAGS (\\Recent) BODY[] {10}\n\
               rfetch: IMAP< * 2 FETCH (UID 9 RFC822.SIZE 10 FLAGS (\\Recent) BODY[] {10}\n\
               rfetch: IMAP< * 3 FETCH (UID 12 FLAGS (\\Seen))\n\
               rfetch: IMAP< * 4 FETCH (UID 13 RFC822.SIZE 0 FLAGS (\\Recent) BODY[] NIL)\n\
               rfetch: IMAP> A0006 UID STORE 7,9:10 +FLAGS.SILENT (\\Seen \\Deleted)\n\
               rfetch: IMAP> A0007 UID STORE 20 +FLAGS.SILENT (\\Seen)\n\
               rfetch: IMAP> A0008 UID EXPUNGE 11\n";
    let (fetched, deleted) = fetched_and_deleted_uids(log);
    assert_eq!(fetched.into_iter().collect::<Vec<_>>(), [7, 9]);
    assert_eq!(deleted.into_iter().collect::<Vec<_>>(), [7, 9, 10, 11]);
}

#[test]
fn message_ids_are_read_from_the_header_only() {
    assert_eq!(
        message_id(b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <body@b>\r\n"),
        Some("<a@b>".to_string())
    );
    assert_eq!(
        message_id(b"message-id:<c@d>\n\n"),
        Some("<c@d>".to_string())
    );
    assert_eq!(message_id(b"Subject: x\n\nMessage-ID: <body@b>\n"), None);
}
