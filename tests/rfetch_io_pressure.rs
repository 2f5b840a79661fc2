//! rfetch over IMAPS while the disk is busy: every message seeded into bob's INBOX is delivered
//! into the Maildir exactly once, checked by Message-ID, and none is left on the server (no
//! `keep`). The disk is kept busy by writer threads doing fsync'd writes, bounded in time and
//! size and stopped at the end, either in the test's own temp dir (the client's file system) or
//! next to the stack's Maildirs (the server's). A slow disk stretches every fsync rfetch and
//! Dovecot make, so batches, expunges and the seen state's commits overlap differently than on
//! an idle machine; the first rule, nothing lost and nothing twice, must not depend on that.
//!
//! `POSTIE_IO_PRESSURE_ROUNDS` (default 2) sets how many seed-and-poll rounds each test runs.
//! A failing round keeps its temp dir with rfetch's `-vv` log (`rfetch.log`, the wire lines).

mod common;
use common::mailbox::lock_bob;
use common::rfetch::*;

use std::collections::BTreeMap;
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
/// Background writers; each rewrites its own few files, so the disk space it takes is bounded.
const WRITERS: usize = 2;
/// Bytes written between two fsyncs.
const CHUNK: usize = 256 * 1024;
/// Size of one writer file before the writer moves on to its next one.
const FILE_BYTES: usize = 4 * 1024 * 1024;
/// Files per writer (rewritten in turn): at most WRITERS * FILES * FILE_BYTES on disk (32 MiB).
const FILES: usize = 4;
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
        let threads = (0..WRITERS)
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
            if f.write_all(&chunk).is_err() || f.sync_data().is_err() {
                return;
            }
            in_file += CHUNK;
            written.fetch_add(CHUNK as u64, Ordering::SeqCst);
        }
    }
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
    let rounds: usize = std::env::var("POSTIE_IO_PRESSURE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
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
