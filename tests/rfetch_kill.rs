//! Crash safety: rfetch (nokeep) fetching from the real stack, over POP3S and over IMAPS, is
//! killed with SIGKILL at least 20 times, each time while it is really fetching, then runs to
//! completion. Nothing may be lost, nothing may stay on the server, a message may be delivered
//! twice only if it was in flight at a kill (at most one per kill), tmp/ leftovers never count as
//! delivered, and the UID state file stays well-formed. For every target: the built-in Maildir
//! (1000 messages), and with 250 messages each an mbox, an MDA (procmail into a Maildir), SMTP
//! forwarding through Postfix and LMTP into Dovecot (both into alice's Maildir, from which the
//! copies are removed again once counted). The targets
//! other than Maildir run only with `POSTIE_KILL_ALL_TARGETS=1` (tests/run.sh sets it).
//!
//! Kill moments come from a seeded PRNG (the seed is printed; `RFETCH_KILL_SEED` replays it)
//! within the measured duration of a run: a calibration run on a separate, smaller seeding gives
//! the start-up time and the time per message, and each kill lands at start-up + a random part of
//! the time the remaining messages take. For the mbox, whose every delivery shows at once in its
//! size, the random part is counted from the run's first new delivery instead: a run's start-up
//! grows with what the killed run before it left (messages to flush, a seen log to replay, a
//! dotlock to clear) and with the load, which a calibration cannot foresee. A kill counts only if
//! the run was still going and had written something (into the target, the state file or its
//! seen log); runs that finished first, or were killed before fetching, do not, and make the
//! estimates adapt (the load on the test machine varies). The mbox is checked at the end: valid
//! mboxrd, every message whole and byte for byte the server's body, no partial message.
//!
//! The copy of the message in flight at a kill can be written by another process after the kill
//! (procmail, Dovecot, Postfix): for those targets a duplicate is not attributed to a run, only
//! counted. procmail, orphaned by the kill, delivers what it had read of its message: such a
//! copy cut short counts as a duplicate.
//!
//! Run time, debug build, 2-core machine shared with other builds: the Maildir 50-180 s per
//! protocol under heavy load in earlier measurements (the time per message varied from 13 to
//! 36 ms between runs), 14-19 s in the full runs of 2026-12-05. Both protocols keep the full
//! 1000 messages: fewer would make the runs so short that most kills land before or after the
//! fetching. The other targets, 250 messages each (more are seeded when they run low). Three
//! passing full runs of 2026-12-05 (all ten tests, `POSTIE_KILL_ALL_TARGETS=1`, 204-247 s in
//! all, on a machine shared with other builds), as ranges over the runs; lost 0 everywhere:
//!
//! | target  | POP3S kills / dups / time | IMAPS kills / dups / time |
//! |---------|---------------------------|---------------------------|
//! | Maildir | 23-27 / 0 / 14-19 s       | 22-23 / 0 / 14-16 s       |
//! | mbox    | 20 / 0-2 / 8-10 s         | 20 / 0-2 / 3-6 s          |
//! | MDA     | 22-24 / 17-19 / 12-14 s   | 20-21 / 17-20 / 8-16 s    |
//! | SMTP    | 27-43 / 9-11 / 25-50 s    | 24-29 / 7-13 / 11-31 s    |
//! | LMTP    | 23-25 / 18-20 / 18-95 s   | 21-22 / 17-18 / 9-20 s    |
//!
//! The mbox tests were kept out of CI before two fixes: a kill between the dotlock's creation
//! and the write of its owner's pid left an empty lock that proved nothing, so every later
//! delivery waited its 30 s lock timeout until the lock went stale after 300 s (the IMAPS run
//! gave up with 2 of 20 kills landed); and over POP3 each killed run left all it had delivered
//! on the server for the next run to delete at its own QUIT, a backlog that grew to 405 of 450
//! messages and made the calibrated kills land before the first new delivery. rfetch now
//! commits such a backlog in a session of its own first, and the mbox kills are timed from the
//! first new delivery.
#![allow(dead_code)] // the shared helpers are not all used by every binary

mod common;
include!("rfetch_support.rs.inc");

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use postie::fetch::poll::BATCH;

/// Messages seeded for the test proper (Maildir; the other targets: [`Target::messages`]).
const MESSAGES: usize = 1000;
/// Messages of the calibration run (the time per message is what it measures).
const CAL_MESSAGES: usize = 100;
/// Approximate size of each seeded message.
const SIZE: usize = 2000;
/// Kills that must land while rfetch is fetching.
const KILLS: usize = 20;
/// Messages added when the mailbox runs low before enough kills have landed.
const TOP_UP: usize = 100;
/// Hard limits so a broken rfetch fails the test instead of hanging it.
const MAX_RUNS: usize = 300;
const MAX_TIME: Duration = Duration::from_secs(300);
/// Longest wait for a run's first new delivery before the kill is timed anyway.
const FIRST_DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// Where the killed runs deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Maildir,
    Mbox,
    /// procmail, delivering into a Maildir.
    Mda,
    /// Postfix, which delivers into alice's Maildir in the background.
    Smtp,
    /// Dovecot's LMTP into alice's Maildir.
    Lmtp,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Maildir => "maildir",
            Target::Mbox => "mbox",
            Target::Mda => "mda",
            Target::Smtp => "smtp",
            Target::Lmtp => "lmtp",
        }
    }

    /// Messages seeded for the test proper: the Maildir test keeps the full 1000 (its batches
    /// of 100 need that many for kills to land inside them); the per-message targets are slower
    /// per message, and 250 leave room for 20 kills inside batches.
    fn messages(self) -> usize {
        match self {
            Target::Maildir => MESSAGES,
            _ => 250,
        }
    }

    fn cal_messages(self) -> usize {
        match self {
            Target::Maildir => CAL_MESSAGES,
            _ => 50,
        }
    }

    /// Fewer left than this before enough kills landed: top up.
    fn low_water(self) -> usize {
        match self {
            Target::Maildir => 2 * BATCH,
            _ => 40,
        }
    }

    fn top_up(self) -> usize {
        match self {
            Target::Maildir => TOP_UP,
            _ => 50,
        }
    }

    /// Delivered copies show up later than rfetch's confirmation (Postfix queues them).
    fn is_async(self) -> bool {
        self == Target::Smtp
    }

    /// The copy of the message in flight at a kill is written by another process that goes on
    /// after the kill (procmail, Dovecot's LMTP, Postfix), so it can appear after the next run
    /// started: which run delivered a copy first is known only for rfetch's own writes.
    fn writes_in_process(self) -> bool {
        matches!(self, Target::Maildir | Target::Mbox)
    }

    /// What grows with each message this run delivers, for the targets whose kills are timed
    /// from a run's first new delivery rather than from the calibration (see [`kill_test`]).
    fn growth(self, dir: &Path) -> Option<u64> {
        match self {
            // Only ever appended to; the cut-off of a killed run's partial message shrinks it.
            Target::Mbox => Some(std::fs::metadata(dir.join("mbox")).map_or(0, |m| m.len())),
            _ => None,
        }
    }

    fn uses_alice(self) -> bool {
        matches!(self, Target::Smtp | Target::Lmtp)
    }

    /// The TOML target lines for a client directory `dir`.
    fn config(self, s: &common::Stack, dir: &Path) -> String {
        match self {
            Target::Maildir => format!("maildir = \"{}\"", dir.join("Maildir").display()),
            Target::Mbox => format!("mbox = \"{}\"", dir.join("mbox").display()),
            Target::Mda => {
                let rc = dir.join("procmailrc");
                std::fs::write(
                    &rc,
                    format!(
                        "DEFAULT={}/\nLOGFILE={}\n",
                        dir.join("mda-Maildir").display(),
                        dir.join("procmail.log").display()
                    ),
                )
                .expect("procmailrc");
                format!(
                    "mda = [\"/usr/bin/procmail\", \"-m\", \"{}\"]",
                    rc.display()
                )
            }
            Target::Smtp => format!(
                "smtp = \"127.0.0.1:{}\"\nrecipient = \"alice@localhost\"",
                s.port("SMTP_PORT")
            ),
            Target::Lmtp => format!(
                "lmtp = \"127.0.0.1:{}\"\nrecipient = \"alice@localhost\"",
                s.port("LMTP_PORT")
            ),
        }
    }

    /// The Message-IDs of every copy delivered so far for client directory `dir` (alice's
    /// Maildir: only those in `ours`, the mailbox is shared).
    fn delivered(
        self,
        s: &common::Stack,
        dir: &Path,
        ours: &HashSet<String>,
        cache: &mut HashMap<PathBuf, String>,
    ) -> Vec<String> {
        match self {
            Target::Maildir => ids_in(&dir.join("Maildir"), &["new", "cur"], cache),
            Target::Mda => ids_in(&dir.join("mda-Maildir"), &["new", "cur"], cache),
            Target::Mbox => mbox_ids(&dir.join("mbox")),
            Target::Smtp | Target::Lmtp => ids_in(
                &PathBuf::from(s.var("STACK_MAILDIR1")),
                &["new", "cur"],
                cache,
            )
            .into_iter()
            .filter(|id| ours.contains(id))
            .collect(),
        }
    }
}

/// The stand-in Message-ID of a message an MDA delivered cut short (see [`ids_in`]).
const TRUNCATED: &str = "(cut short by the kill)";

/// The Message-IDs in an mbox, one per message (header lines only: a body line of the seeded
/// messages never starts with "Message-ID:").
fn mbox_ids(path: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    let mut in_header = false;
    for line in bytes.split(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            in_header = true;
        } else if line.is_empty() {
            in_header = false;
        } else if in_header && line.len() > 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
            ids.push(String::from_utf8_lossy(&line[11..]).trim().to_owned());
        }
    }
    ids
}

/// The bodies of the messages in bob's server mailbox, by Message-ID.
fn server_bodies(s: &common::Stack) -> HashMap<String, Vec<u8>> {
    let server = PathBuf::from(s.var("STACK_MAILDIR2"));
    let mut bodies = HashMap::new();
    for d in ["cur", "new"] {
        for e in std::fs::read_dir(server.join(d)).expect("server Maildir") {
            let Ok(bytes) = std::fs::read(e.expect("server Maildir entry").path()) else {
                continue;
            };
            if let (Some(id), Some(at)) = (
                message_id(&bytes),
                bytes.windows(2).position(|w| w == b"\n\n"),
            ) {
                bodies.insert(id, bytes[at + 2..].to_vec());
            }
        }
    }
    bodies
}

/// Checks that the mbox at `path` is valid mboxrd holding only whole messages: it starts with
/// a `From ` separator, every message ends with the blank line that closes it, and every
/// message's body (unquoted) is byte for byte the body the server held for its Message-ID.
/// Returns the number of messages.
fn check_mbox(
    path: &Path,
    bodies: &HashMap<String, Vec<u8>>,
) -> std::result::Result<usize, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.is_empty() {
        return Ok(0);
    }
    if !bytes.starts_with(b"From ") {
        return Err("the mbox does not start with a From separator".into());
    }
    // Separator offsets: "From " at the start of a line (body lines like that are quoted).
    let mut starts = vec![0];
    for (i, w) in bytes.windows(6).enumerate() {
        if w == b"\nFrom " {
            starts.push(i + 1);
        }
    }
    starts.push(bytes.len());
    for (n, pair) in starts.windows(2).enumerate() {
        let msg = &bytes[pair[0]..pair[1]];
        let what = format!("message {} at offset {}", n + 1, pair[0]);
        let Some(rest) = msg.strip_suffix(b"\n\n") else {
            return Err(format!("{what} is not closed by a blank line (cut short?)"));
        };
        let rest = [rest, b"\n"].concat();
        let sep_end = rest.iter().position(|&b| b == b'\n').unwrap_or(0) + 1;
        let Some(hdr_end) = rest[sep_end..].windows(2).position(|w| w == b"\n\n") else {
            return Err(format!("{what} has no end of header"));
        };
        let id = message_id(&rest[sep_end..]).ok_or(format!("{what} has no Message-ID"))?;
        let body: Vec<u8> = rest[sep_end + hdr_end + 2..]
            .split_inclusive(|&b| b == b'\n')
            .flat_map(|line| {
                let quoted = line.starts_with(b">")
                    && line
                        .iter()
                        .skip_while(|&&b| b == b'>')
                        .take(5)
                        .eq(b"From ".iter());
                if quoted { &line[1..] } else { line }
            })
            .copied()
            .collect();
        let want = bodies
            .get(&id)
            .ok_or(format!("{what}: {id} was not seeded"))?;
        if &body != want {
            return Err(format!(
                "{what} ({id}): body of {} bytes differs from the {} bytes seeded",
                body.len(),
                want.len()
            ));
        }
    }
    Ok(starts.len() - 1)
}

/// An flock on a file in the stack directory: serialises the tests (of every test binary) that
/// use alice's mailbox.
fn lock_alice(s: &common::Stack) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(s.dir.join("postie-alice-mailbox.lock"))
        .expect("lock file");
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    f
}

/// A child process that is always killed and reaped, on every path (panics included).
struct Reaped(Option<Child>);

impl Reaped {
    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.0
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait on rfetch"))
    }

    /// SIGKILL and reap. True if it was still running when the signal was sent.
    fn kill(mut self) -> bool {
        let mut c = self.0.take().expect("child present");
        let running = c.try_wait().expect("try_wait on rfetch").is_none();
        let _ = c.kill(); // SIGKILL
        c.wait().expect("reap rfetch");
        running
    }

    fn wait(mut self) -> ExitStatus {
        let mut c = self.0.take().expect("child present");
        c.wait().expect("reap rfetch")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// xorshift64*: a small seeded PRNG (no rand crate).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The Message-ID of a message (header section only).
fn message_id(msg: &[u8]) -> Option<String> {
    for line in msg.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if line.len() > 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
            return Some(String::from_utf8_lossy(&line[11..]).trim().to_owned());
        }
    }
    None
}

/// Message-IDs of the files in `dirs` of a Maildir; `cache` remembers files already read
/// (nothing renames or rewrites them once they are in new/).
fn ids_in(md: &Path, dirs: &[&str], cache: &mut HashMap<PathBuf, String>) -> Vec<String> {
    let mut ids = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(md.join(d)) else {
            continue;
        };
        for e in entries {
            let path = e.expect("read Maildir entry").path();
            if let Some(id) = cache.get(&path) {
                ids.push(id.clone());
                continue;
            }
            // A tmp/ file can vanish (a later run cleaning up) between listing and reading.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let id = match message_id(&bytes) {
                Some(id) => id,
                // A killed run can leave a tmp/ file written only in part.
                None if *d == "tmp" => continue,
                // What procmail, orphaned by a kill, delivered of the message it was reading:
                // counted as a (damaged) copy of the message in flight.
                None if md.ends_with("mda-Maildir") => TRUNCATED.to_owned(),
                // Every message this test seeds has a Message-ID; alice's mailbox also holds
                // what other tests delivered (a test binary that ran earlier), which is not ours.
                None => continue,
            };
            if *d != "tmp" {
                cache.insert(path, id.clone());
            }
            ids.push(id);
        }
    }
    ids
}

fn file_count(md: &Path, dirs: &[&str]) -> usize {
    dirs.iter()
        .map(|d| std::fs::read_dir(md.join(d)).map_or(0, |r| r.count()))
        .sum()
}

/// Seeds `n` messages into bob's INBOX and returns their Message-IDs, read back from the
/// server's Maildir (every one unique).
fn seed(s: &common::Stack, n: usize, known: &HashSet<String>) -> Vec<String> {
    let server = PathBuf::from(s.var("STACK_MAILDIR2"));
    let before: HashSet<String> = ids_in(&server, &["cur", "new"], &mut HashMap::new())
        .into_iter()
        .collect();
    stack_sh(s, &["seed", "bob", &n.to_string(), &SIZE.to_string()]);
    let after = ids_in(&server, &["cur", "new"], &mut HashMap::new());
    let fresh: Vec<String> = after
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    let unique: HashSet<&String> = fresh.iter().collect();
    assert_eq!(fresh.len(), n, "seeding added {} messages", fresh.len());
    assert_eq!(unique.len(), n, "seeded Message-IDs are unique");
    assert!(
        fresh.iter().all(|id| !known.contains(id)),
        "seeded Message-IDs are new"
    );
    fresh
}

struct Runner {
    cfg: PathBuf,
    home: PathBuf,
    log: PathBuf,
}

impl Runner {
    fn new(s: &common::Stack, dir: &Path, proto: &str, target: Target) -> Runner {
        let cfg = toml_config(
            s,
            dir,
            proto,
            "implicit",
            &target.config(s, dir),
            "keep = false",
        );
        Runner {
            cfg,
            home: dir.to_owned(),
            log: dir.join("rfetch.log"),
        }
    }

    fn spawn(&self) -> Reaped {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("rfetch log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rfetch"))
            .args(["-v", "-C", self.cfg.to_str().expect("utf-8 path")])
            .env("HOME", &self.home)
            .env_remove("FETCHMAILHOME")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn rfetch");
        Reaped(Some(child))
    }

    /// Runs to completion; returns the exit code and the wall time.
    fn run(&self) -> (i32, Duration) {
        let t = Instant::now();
        let st = self.spawn().wait();
        (st.code().unwrap_or(-1), t.elapsed())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Whether the runs of the target other than Maildir are wanted (they add a few minutes).
fn all_targets() -> bool {
    std::env::var_os("POSTIE_KILL_ALL_TARGETS").is_some_and(|v| v == "1")
}

/// What a killed run left behind that shows it was delivering: the state file and its seen log
/// (the per-message record of every target but Maildir) and every file in the client directory's
/// Maildir (tmp/ included) or mbox.
fn progress_mark(dir: &Path) -> (Vec<u8>, u64, usize, u64) {
    let state = std::fs::read(dir.join(".fetchids")).unwrap_or_default();
    let log = std::fs::metadata(dir.join(".fetchids.seen-log")).map_or(0, |m| m.len());
    let files = file_count(&dir.join("Maildir"), &["new", "cur", "tmp"])
        + file_count(&dir.join("mda-Maildir"), &["new", "cur", "tmp"]);
    let mbox = std::fs::metadata(dir.join("mbox")).map_or(0, |m| m.len());
    (state, log, files, mbox)
}

/// Waits until Postfix delivered everything of `expected` into alice's Maildir and nothing more
/// arrived for a while (the copies of the same message a kill made go through the queue too).
fn settle_async(
    target: Target,
    s: &common::Stack,
    dir: &Path,
    ours: &HashSet<String>,
    cache: &mut HashMap<PathBuf, String>,
) {
    if target.writes_in_process() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = usize::MAX;
    let mut stable_since = Instant::now();
    loop {
        let ids = target.delivered(s, dir, ours, cache);
        let distinct: HashSet<&String> = ids.iter().collect();
        if ids.len() != last {
            last = ids.len();
            stable_since = Instant::now();
        }
        let complete = ours.iter().all(|id| distinct.contains(id));
        if (complete && stable_since.elapsed() > Duration::from_secs(3))
            || Instant::now() > deadline
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kill_test(proto: &str, target: Target) {
    let tag = format!("{proto}/{}", target.name());
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    let _alice = target.uses_alice().then(|| lock_alice(&s));
    if target.uses_alice() {
        // What a failed earlier run left (a passing one removes its own).
        let stale = remove_seeded_from_alice(&s);
        if stale > 0 {
            eprintln!("{tag}: removed {stale} copies an earlier run left in alice's mailbox");
        }
    }
    let started = Instant::now();
    let seed_value: u64 = std::env::var("RFETCH_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
    eprintln!("{tag}: RFETCH_KILL_SEED={seed_value}");
    let mut rng = Rng(seed_value | 1);

    // Calibration: one uninterrupted run over a separate seeding gives the time a full run
    // takes; runs on the then empty mailbox give the start-up cost.
    clear_bob(&s);
    let cal_dir = tempdir(&format!("kill-cal-{proto}-{}", target.name()));
    let cal = Runner::new(&s, &cal_dir, proto, target);
    let cal_n = target.cal_messages();
    let mut known: HashSet<String> = seed(&s, cal_n, &HashSet::new()).into_iter().collect();
    let (c, full) = cal.run();
    assert_eq!(c, 0, "calibration run: {}", cal.log_tail());
    assert_eq!(server_count(&s), 0, "calibration run emptied the mailbox");
    let mut idle: Vec<Duration> = (0..3)
        .map(|_| {
            let (c, t) = cal.run();
            assert_eq!(c, 1, "nothing to fetch: {}", cal.log_tail());
            t
        })
        .collect();
    idle.sort();
    let mut startup = idle[1];
    let mut per_message =
        full.saturating_sub(startup).max(Duration::from_millis(50)) / cal_n as u32;
    eprintln!("{tag}: full run {full:?}, start-up {startup:?}, {per_message:?} per message");

    // The test proper.
    let dir = tempdir(&format!("kill-{proto}-{}", target.name()));
    let r = Runner::new(&s, &dir, proto, target);
    let md = dir.join("Maildir");
    let mut expected: Vec<String> = seed(&s, target.messages(), &known);
    known.extend(expected.iter().cloned());
    // What the server held of each message, for the mbox's intactness check.
    let mut bodies: HashMap<String, Vec<u8>> = HashMap::new();
    if target == Target::Mbox {
        bodies.extend(server_bodies(&s));
    }
    let mut ours: HashSet<String> = expected.iter().cloned().collect();
    let mut cache = HashMap::new();
    // Copies delivered so far, and which run delivered the first copy of each message (known
    // only when rfetch writes them itself, see Target::writes_in_process).
    let mut copies: HashMap<String, usize> = HashMap::new();
    let mut first_run: HashMap<String, usize> = HashMap::new();
    let mut killed_runs: HashSet<usize> = HashSet::new();
    let mut real_kills = 0;
    let mut early_kills = 0;
    let mut finished_first = 0;
    let mut topped_up = 0;
    let mut run = 0;
    let mut account_run = |run: usize,
                           ours: &HashSet<String>,
                           copies: &mut HashMap<String, usize>,
                           first_run: &mut HashMap<String, usize>| {
        let mut now: HashMap<String, usize> = HashMap::new();
        for id in target.delivered(&s, &dir, ours, &mut cache) {
            *now.entry(id).or_insert(0) += 1;
        }
        for (id, &n) in &now {
            let had = copies.get(id).copied().unwrap_or(0);
            assert!(n >= had, "a delivered copy of {id} disappeared");
            if had == 0 {
                first_run.insert(id.clone(), run);
            }
        }
        *copies = now;
    };

    while real_kills < KILLS {
        run += 1;
        assert!(
            run <= MAX_RUNS && started.elapsed() < MAX_TIME,
            "{tag}: only {real_kills} kills landed while fetching after {run} runs and {:?} \
             ({early_kills} too early, {finished_first} runs finished first)",
            started.elapsed()
        );
        // Postfix's copies lag behind: what is left is judged by the server's count then.
        let mut remaining = if target.is_async() {
            server_count(&s)
        } else {
            let delivered = expected
                .iter()
                .filter(|id| copies.contains_key(*id))
                .count();
            expected.len() - delivered
        };
        if remaining < target.low_water() {
            // Not enough left for the kills still to come: more mail (rare; printed below).
            let more = seed(&s, target.top_up(), &known);
            known.extend(more.iter().cloned());
            if target == Target::Mbox {
                bodies.extend(server_bodies(&s));
            }
            ours.extend(more.iter().cloned());
            expected.extend(more);
            topped_up += target.top_up();
            // The runs fetch faster than estimated: aim shorter.
            per_message = per_message.mul_f64(0.7);
            remaining += target.top_up();
        }
        // Aim to consume on average at most half a batch, and at most 1/(kills left + 1) of
        // what remains, so the mailbox lasts for all the kills.
        let budget = (2 * remaining / (KILLS - real_kills + 1)).min(BATCH);
        let window = per_message * budget as u32;
        let part = rng.unit();
        let mark_before = progress_mark(&dir);
        let grown_from = target.growth(&dir);
        let mut child = r.spawn();
        let spawned = Instant::now();
        // The kill moment: from the calibration (start-up, then a part of the window), or, for
        // a target that shows each delivery at once, a part of the window after this run's
        // first new delivery. A run's start-up varies with what an earlier killed run left
        // (messages to flush, a seen log to replay) and with the machine's load, which the
        // calibration cannot foresee.
        let mut deadline = match grown_from {
            None => Some(spawned + startup + window.mul_f64(part)),
            Some(_) => None,
        };
        let mut exited = None;
        loop {
            if let Some(st) = child.try_wait() {
                exited = Some(st);
                break;
            }
            let now = Instant::now();
            match deadline {
                Some(d) if now >= d => break,
                Some(_) => {}
                None => {
                    if target.growth(&dir) > grown_from || now - spawned > FIRST_DELIVERY_WAIT {
                        deadline = Some(now + window.mul_f64(part));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(st) = exited {
            drop(child);
            finished_first += 1;
            per_message = per_message.mul_f64(0.7);
            startup = startup.mul_f64(0.9);
            let c = st.code().unwrap_or(-1);
            // 9: the server still held the mailbox lock of the session a kill cut (Dovecot
            // releases a POP3 lock only once it notices the dead connection).
            assert!(
                c == 0 || c == 1 || c == 9,
                "{tag}: run {run} exit {c}: {}",
                r.log_tail()
            );
            account_run(run, &ours, &mut copies, &mut first_run);
            continue;
        }
        let was_running = child.kill();
        killed_runs.insert(run);
        let wrote = progress_mark(&dir) != mark_before;
        account_run(run, &ours, &mut copies, &mut first_run);
        let left = server_count(&s) > 0;
        if was_running && wrote && left {
            real_kills += 1;
        } else if was_running && !wrote {
            early_kills += 1;
            // The load varies: start-up took longer than measured.
            startup = startup.mul_f64(1.3);
        } else {
            finished_first += 1;
            per_message = per_message.mul_f64(0.7);
        }
    }

    // One final run to completion (again after a moment while the server still holds the
    // mailbox lock of the last killed session: exit 9).
    let mut c = 9;
    for _ in 0..10 {
        run += 1;
        c = r.run().0;
        if c != 9 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        c == 0 || c == 1,
        "{tag}: final run exit {c}: {}",
        r.log_tail()
    );
    settle_async(target, &s, &dir, &ours, &mut HashMap::new());
    account_run(run, &ours, &mut copies, &mut first_run);
    let (c, _) = r.run();
    assert_eq!(c, 1, "{tag}: nothing left to fetch: {}", r.log_tail());

    // Every seeded message delivered, nothing foreign.
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !copies.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{tag}: {} of {} messages lost after {real_kills} kills, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
    // Copies an MDA delivered cut short by a kill: damaged duplicates of the message in flight.
    let truncated = copies.remove(TRUNCATED).unwrap_or(0);
    let expected_set: HashSet<&String> = expected.iter().collect();
    let foreign: Vec<&String> = copies
        .keys()
        .filter(|id| !expected_set.contains(id))
        .collect();
    assert!(foreign.is_empty(), "{tag}: unexpected messages {foreign:?}");

    // Duplicates: a message delivered twice must have been delivered first by a killed run,
    // and only the message in flight at a kill may be delivered again (the issue's allowance):
    // at most one per kill. The Maildir batch journal (src/fetch/journal.rs) and the seen log of
    // the other targets (src/fetch/state.rs) make that hold.
    let mut dups_per_kill: BTreeMap<usize, usize> = BTreeMap::new();
    let mut dups = truncated;
    for (id, &n) in &copies {
        if n > 1 {
            dups += n - 1;
            let r0 = first_run[id];
            if target.writes_in_process() {
                assert!(
                    killed_runs.contains(&r0),
                    "{tag}: {id} delivered {n} times, first by run {r0} which was not killed"
                );
            }
            *dups_per_kill.entry(r0).or_insert(0) += n - 1;
        }
    }
    let kills = killed_runs.len();
    // How often a run found a journaled batch or a seen log to finish (logged at start-up).
    let log = std::fs::read_to_string(dir.join("rfetch.log")).unwrap_or_default();
    let recovered = log.matches("recovered an interrupted batch").count();
    let torn = log.matches("was incomplete (cut while written").count();
    let replayed = log
        .matches("delivered by an interrupted run recorded")
        .count();
    eprintln!(
        "{tag}: observed {dups} duplicates ({truncated} of them cut short) after {kills} kills \
         {dups_per_kill:?}; \
         {recovered} journaled batches recovered, {torn} torn journals ignored, \
         {replayed} seen logs replayed"
    );
    if target.writes_in_process() {
        for (&r0, &n) in &dups_per_kill {
            assert!(
                n <= 1,
                "{tag}: {n} messages first delivered by killed run {r0} were delivered again \
                 (only the message in flight at a kill may be)"
            );
        }
    }
    assert!(
        dups <= kills,
        "{tag}: {dups} duplicates after {kills} kills (at most one per kill allowed)"
    );

    // tmp/ leftovers of killed runs are not deliveries: each one's message is in new/ or cur/.
    let leftovers = if target == Target::Maildir {
        ids_in(&md, &["tmp"], &mut HashMap::new())
    } else {
        Vec::new()
    };
    for id in &leftovers {
        assert!(
            copies.contains_key(id),
            "{tag}: {id} exists only as a tmp/ leftover"
        );
    }

    assert_eq!(server_count(&s), 0, "{tag}: the server mailbox is empty");

    // The mbox holds whole messages only, each one intact (the copies counted above included).
    if target == Target::Mbox {
        let n = check_mbox(&dir.join("mbox"), &bodies)
            .unwrap_or_else(|e| panic!("{tag}: the mbox is not valid: {e}"));
        let counted: usize = copies.values().sum();
        assert_eq!(n, counted, "{tag}: every message in the mbox was counted");
    }

    // The UID state file parses and has the postie header.
    let idfile = dir.join(".fetchids");
    let text = std::fs::read_to_string(&idfile)
        .unwrap_or_else(|e| panic!("{tag}: state file {}: {e}", idfile.display()));
    assert!(
        text.starts_with("postie-seen 1\n"),
        "{tag}: state file header: {:?}",
        &text[..text.len().min(80)]
    );
    postie::fetch::state::SeenStore::open(&idfile)
        .unwrap_or_else(|e| panic!("{tag}: state file is not well-formed: {e}"));

    eprintln!(
        "RESULT {tag}: {} messages ({topped_up} topped up), lost 0, {dups} duplicates \
         ({truncated} cut short), {kills} \
         kills ({real_kills} while fetching, +{early_kills} before fetching, {finished_first} \
         finished before the kill), {run} runs, {dups_per_kill:?}, {} tmp/ leftovers, {:?}",
        expected.len(),
        leftovers.len(),
        started.elapsed()
    );
    // RFETCH_KILL_KEEP=1 keeps the client directories (rfetch.log) for reading; otherwise
    // their guards remove them.
    if std::env::var_os("RFETCH_KILL_KEEP").is_some_and(|v| v == "1") {
        let (cal_dir, dir) = (cal_dir.keep(), dir.keep());
        eprintln!("{tag}: kept {} and {}", cal_dir.display(), dir.display());
    }
    // The copies forwarded into alice's mailbox (over 250 a run, duplicates included) are
    // counted: removed now, so that runs do not pile thousands of them up there.
    if target.uses_alice() {
        remove_seeded_from_alice(&s);
        // Postfix may still hold a duplicate in its queue: only LMTP's copies are all in
        // place here (the next run removes a late one).
        if target.is_async() {
            return;
        }
        let md = PathBuf::from(s.var("STACK_MAILDIR1"));
        let left = ids_in(&md, &["new", "cur"], &mut HashMap::new())
            .into_iter()
            .filter(|id| is_seeded(id))
            .count();
        assert_eq!(left, 0, "{tag}: seeded copies left in alice's mailbox");
    }
}

/// Whether a Message-ID is one `stack.sh seed` wrote (only bob's mailbox is ever seeded, so
/// in alice's mailbox such a message is a copy these tests forwarded).
fn is_seeded(id: &str) -> bool {
    id.starts_with("<seed.") && id.ends_with("@postie-stack.localhost>")
}

/// Removes the seeded messages' copies from alice's Maildir (new/ and cur/; what other tests
/// delivered there stays) and has Dovecot resync its index. Returns how many were removed.
/// Only under [`lock_alice`], so that no run of these tests is delivering meanwhile.
fn remove_seeded_from_alice(s: &common::Stack) -> usize {
    let md = PathBuf::from(s.var("STACK_MAILDIR1"));
    let mut removed = 0;
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(md.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let seeded = std::fs::read(&path)
                .ok()
                .and_then(|bytes| message_id(&bytes))
                .is_some_and(|id| is_seeded(&id));
            if seeded && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        let resync = Command::new("doveadm")
            .arg("-c")
            .arg(s.var("STACK_DOVECONF"))
            .args(["force-resync", "-u", "alice", "INBOX"])
            .status();
        assert!(
            resync.is_ok_and(|st| st.success()),
            "doveadm force-resync of alice's INBOX failed"
        );
    }
    removed
}

#[test]
fn pop3s_sigkill_while_fetching_loses_nothing() {
    kill_test("pop3", Target::Maildir);
}

#[test]
fn imaps_sigkill_while_fetching_loses_nothing() {
    kill_test("imap", Target::Maildir);
}

/// Runs the kill test for a target other than Maildir when `POSTIE_KILL_ALL_TARGETS=1`.
fn kill_test_gated(proto: &str, target: Target) {
    if !all_targets() {
        eprintln!(
            "{proto}/{}: skipped (set POSTIE_KILL_ALL_TARGETS=1; tests/run.sh does)",
            target.name()
        );
        return;
    }
    kill_test(proto, target);
}

#[test]
fn pop3s_sigkill_into_an_mbox() {
    kill_test_gated("pop3", Target::Mbox);
}

#[test]
fn imaps_sigkill_into_an_mbox() {
    kill_test_gated("imap", Target::Mbox);
}

#[test]
fn pop3s_sigkill_into_an_mda() {
    kill_test_gated("pop3", Target::Mda);
}

#[test]
fn imaps_sigkill_into_an_mda() {
    kill_test_gated("imap", Target::Mda);
}

#[test]
fn pop3s_sigkill_forwarding_over_smtp() {
    kill_test_gated("pop3", Target::Smtp);
}

#[test]
fn imaps_sigkill_forwarding_over_smtp() {
    kill_test_gated("imap", Target::Smtp);
}

#[test]
fn pop3s_sigkill_forwarding_over_lmtp() {
    kill_test_gated("pop3", Target::Lmtp);
}

#[test]
fn imaps_sigkill_forwarding_over_lmtp() {
    kill_test_gated("imap", Target::Lmtp);
}

/// A run that finds messages an earlier run delivered but could not delete (POP3 deletes only
/// at QUIT, which a killed run never sends; keep leaves them the same way here) commits their
/// deletion in a session of its own, DELE and QUIT, before it fetches anything new. Before,
/// it deleted them together with its own messages at its final QUIT, so every killed run
/// handed a larger backlog to the next (405 of 450 messages "seen before" by the end of the
/// mbox kill test) and a kill again lost all those deletions.
#[test]
fn pop3_commits_a_backlog_of_deletions_before_fetching() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    clear_bob(&s);
    let dir = tempdir("backlog-pop3");
    let target = Target::Mbox.config(&s, &dir);
    let first: HashSet<String> = seed(&s, 3, &HashSet::new()).into_iter().collect();
    let cfg = toml_config(&s, &dir, "pop3", "implicit", &target, "keep = true");
    let o = rfetch(&dir, &["-C", cfg.to_str().expect("utf-8 path")]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server_count(&s), 3, "keep left them on the server");
    let second = seed(&s, 2, &first);
    let cfg = toml_config(&s, &dir, "pop3", "implicit", &target, "keep = false");
    let o = rfetch(&dir, &["-v", "-v", "-C", cfg.to_str().expect("utf-8 path")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 0, "{err}");
    let cmds: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("rfetch: POP3> "))
        .collect();
    let first_quit = cmds.iter().position(|c| c.starts_with("QUIT"));
    let first_retr = cmds.iter().position(|c| c.starts_with("RETR"));
    let deles_before_quit = cmds[..first_quit.unwrap_or(0)]
        .iter()
        .filter(|c| c.starts_with("DELE"))
        .count();
    assert!(
        first_quit.is_some() && first_quit < first_retr,
        "the backlog is committed before the first RETR: {cmds:?}"
    );
    assert_eq!(deles_before_quit, 3, "{cmds:?}");
    assert_eq!(
        cmds.iter().filter(|c| c.starts_with("QUIT")).count(),
        2,
        "{cmds:?}"
    );
    assert_eq!(err.matches("delivered before, flushed").count(), 3, "{err}");
    assert_eq!(server_count(&s), 0, "everything deleted");
    let mut ids = mbox_ids(&dir.join("mbox"));
    ids.sort();
    let mut want: Vec<String> = first.into_iter().chain(second).collect();
    want.sort();
    assert_eq!(ids, want, "each message delivered once");
    let _ = std::fs::remove_dir_all(&dir);
}
