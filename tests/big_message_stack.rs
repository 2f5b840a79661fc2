//! Memory flat in message size, against the real stack: one message far larger than the bound
//! (100 MB under tests/run.sh) fetched by rfetch over POP3S and over IMAPS into every target
//! (Maildir, mbox, MDA, LMTP into Dovecot, SMTP through Postfix into Dovecot) and sent by rsend
//! to Postfix; every run's peak resident set stays under 20 MB and the message arrives intact
//! (size and SHA-256 of what follows the trace fields the hops put on top).
//!
//! The peak is the kernel's high-water mark of resident memory (what `VmHWM` in
//! /proc/PID/status shows) as `wait4(2)` reports it for the finished process, read through
//! `/usr/bin/time -f %M`. Run directly from this test, the figure would not be rfetch's: a child
//! that execs carries the high-water mark of the memory it was forked from (the test process,
//! which is large) into its own. GNU time forks rfetch from its own small process (about 2 MB),
//! so the figure is max(rfetch's peak, time's size), and the message size is measured, not
//! the test's.
//!
//! Size: POSTIE_BIG_MESSAGE_MB (tests/run.sh sets 100); without it 30 MB, still half again the
//! bound, so a path that held the whole message would fail here too.

#![allow(dead_code)] // the shared helpers are not all used by every binary

mod common;
include!("rfetch_support.rs.inc");

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ring::digest::{Context, SHA256};

/// The peak resident set rfetch and rsend must stay under, whatever the message size.
const PEAK_RSS_BOUND_KB: u64 = 20 * 1024;

fn message_size() -> u64 {
    let mb: u64 = std::env::var("POSTIE_BIG_MESSAGE_MB")
        .ok()
        .map(|v| {
            v.parse()
                .expect("POSTIE_BIG_MESSAGE_MB is a number of megabytes")
        })
        .unwrap_or(30);
    mb * 1024 * 1024
}

/// What a delivery must contain after the trace fields: its size and SHA-256.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Digest {
    size: u64,
    sha256: Vec<u8>,
}

struct Hasher {
    ctx: Context,
    size: u64,
}

impl Hasher {
    fn new() -> Hasher {
        Hasher {
            ctx: Context::new(&SHA256),
            size: 0,
        }
    }
    fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
        self.size += data.len() as u64;
    }
    fn finish(self) -> Digest {
        Digest {
            size: self.size,
            sha256: self.ctx.finish().as_ref().to_vec(),
        }
    }
}

/// The generated message, and what an mboxrd file holds of it.
struct BigMessage {
    path: PathBuf,
    tag: String,
    raw: Digest,
    /// The message with mboxrd's quoting (">" before every line matching /^>*From /) and the
    /// blank line that ends an mbox entry.
    mbox: Digest,
}

/// Writes a message of at least `size` bytes (LF line ends) to `path`, with lines that every
/// path has to treat specially: "From " (mbox quoting), ">From " (mboxrd quotes that again),
/// "." and ".." (dot-stuffing in POP3, SMTP and LMTP), 8-bit bytes, and a 990-byte line.
fn write_message(path: &Path, size: u64, tag: &str) -> BigMessage {
    let file = std::fs::File::create(path).expect("create the message file");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let (mut raw, mut mbox) = (Hasher::new(), Hasher::new());
    let mut put = |line: &[u8], out: &mut std::io::BufWriter<std::fs::File>| {
        out.write_all(line).expect("write the message");
        raw.update(line);
        let unquoted = &line[line.iter().take_while(|&&b| b == b'>').count()..];
        if unquoted.starts_with(b"From ") {
            mbox.update(b">");
        }
        mbox.update(line);
        line.len() as u64
    };
    let header = format!(
        "From: big@localhost\nTo: bob@localhost\nSubject: {tag} a big message\n\
         Message-ID: <{tag}@postie.test>\nDate: Sat, 05 Dec 2026 12:00:00 +0000\n\n"
    );
    let mut written = put(header.as_bytes(), &mut out);
    let long_line = format!("{}\n", "l".repeat(989));
    let mut i = 0u64;
    while written < size {
        if i.is_multiple_of(1000) {
            for special in [
                &b"From the body: mbox quotes this line\n"[..],
                b">From quoted already: mboxrd quotes it again\n",
                b".\n",
                b"..\n",
                b".leading dot\n",
                b"caf\xc3\xa9 \xe2\x82\xac eight-bit bytes\n",
                long_line.as_bytes(),
            ] {
                written += put(special, &mut out);
            }
        }
        let line = format!("line {i} of the big message, padded to look like text..............\n");
        written += put(line.as_bytes(), &mut out);
        i += 1;
    }
    out.flush().expect("flush the message");
    mbox.update(b"\n");
    BigMessage {
        path: path.to_path_buf(),
        tag: tag.to_string(),
        raw: raw.finish(),
        mbox: mbox.finish(),
    }
}

/// Reads a delivered copy: skips an mbox "From " line when `mbox`, then the trace fields on
/// top (Return-Path, Delivered-To, Received and their continuation lines), and hashes the
/// rest. Returns the trace text and the digest.
fn delivered(path: &Path, mbox: bool) -> (String, Digest) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    if mbox {
        r.read_until(b'\n', &mut line).expect("read");
        assert!(
            line.starts_with(b"From "),
            "{}: no mbox From line",
            path.display()
        );
    }
    let mut trace = String::new();
    let mut h = Hasher::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).expect("read") == 0 {
            break;
        }
        let is_trace = [&b"Return-Path:"[..], b"Delivered-To:", b"Received:"]
            .iter()
            .any(|p| line.starts_with(p))
            || (!trace.is_empty() && (line.starts_with(b" ") || line.starts_with(b"\t")));
        if !is_trace {
            h.update(&line);
            break;
        }
        trace.push_str(&String::from_utf8_lossy(&line));
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    (trace, h.finish())
}

/// Runs `cmd` under GNU time and returns its exit status, stderr and peak resident set in KB.
fn run_measured(program: &Path, args: &[&str], dir: &Path, stdin: Stdio) -> (i32, String, u64) {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "/usr/bin/time is missing (Debian package 'time'): tests/stack/stack.sh deps tests"
    );
    let rss_file = dir.join("peak-rss");
    let out = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(program)
        .args(args)
        .env("HOME", dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(stdin)
        .output()
        .expect("run /usr/bin/time");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(&rss_file).expect("time wrote the peak RSS");
    // time writes "Command exited with non-zero status N" before the figure when it failed.
    let kb = text
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no peak RSS in {text:?}"));
    (out.status.code().unwrap_or(-1), stderr, kb)
}

/// Alice's delivered file carrying `tag`, waited for (Postfix delivers in the background).
fn wait_for_alice(s: &common::Stack, tag: &str, timeout: Duration) -> PathBuf {
    let new = PathBuf::from(s.var("STACK_MAILDIR1")).join("new");
    let deadline = Instant::now() + timeout;
    loop {
        for entry in std::fs::read_dir(&new).into_iter().flatten().flatten() {
            let mut head = vec![0u8; 16 * 1024];
            let n = std::fs::File::open(entry.path())
                .and_then(|mut f| f.read(&mut head))
                .unwrap_or(0);
            if head[..n].windows(tag.len()).any(|w| w == tag.as_bytes()) {
                // Dovecot writes to tmp/ and renames: a file in new/ is complete.
                return entry.path();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{tag}: nothing arrived in alice's Maildir"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Postfix must accept the message: a stack started before its limit was raised gets it now
/// (the same value tests/stack/stack.sh writes).
fn postfix_accepts(s: &common::Stack, size: u64) {
    let conf = s.dir.join("postfix");
    let out = Command::new("postconf")
        .arg("-c")
        .arg(&conf)
        .args(["-h", "message_size_limit"])
        .output()
        .expect("run postconf");
    let limit: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    // Headers added on the way and CRLF on the wire count too: leave a tenth of headroom.
    if limit < size + size / 10 {
        let want = format!("message_size_limit={}", 200 * 1024 * 1024);
        let ok = Command::new("postconf")
            .arg("-c")
            .arg(&conf)
            .args(["-e", &want])
            .status();
        assert!(
            ok.map(|s| s.success()).unwrap_or(false),
            "postconf -e {want}"
        );
        let ok = Command::new("postfix")
            .arg("-c")
            .arg(&conf)
            .arg("reload")
            .status();
        assert!(ok.map(|s| s.success()).unwrap_or(false), "postfix reload");
    }
}

#[test]
fn rfetch_fetches_a_big_message_into_every_target_in_flat_memory() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    let size = message_size();
    postfix_accepts(&s, size);
    let dir = tempdir("bigmsg");
    let tag = format!("bigmsg-rfetch-{}", std::process::id());
    let msg = write_message(&dir.join("message.eml"), size, &tag);
    clear_bob(&s);
    stack_sh(&s, &["put", "bob", msg.path.to_str().unwrap()]);
    std::fs::remove_file(&msg.path).expect("remove the seeded copy");

    let lmtp = format!("lmtp = \"127.0.0.1:{}\"", s.port("LMTP_PORT"));
    let smtp = format!("smtp = \"127.0.0.1:{}\"", s.port("SMTP_PORT"));
    let mda_out = dir.join("mda.out");
    let targets: [(&str, String); 5] = [
        (
            "maildir",
            format!("maildir = \"{}\"", dir.join("Maildir").display()),
        ),
        (
            "mbox",
            format!("mbox = \"{}\"", dir.join("inbox.mbox").display()),
        ),
        (
            "mda",
            format!("mda = [\"sh\", \"-c\", \"cat > {}\"]", mda_out.display()),
        ),
        ("lmtp", format!("{lmtp}\nrecipient = \"alice@localhost\"")),
        ("smtp", format!("{smtp}\nrecipient = \"alice@localhost\"")),
    ];
    let mut report = Vec::new();
    for proto in ["pop3", "imap"] {
        for (target, line) in &targets {
            let what = format!("{proto}s -> {target}");
            // keep: the one seeded copy serves every run; -a fetches it again each time.
            let cfg = toml_config(&s, &dir, proto, "implicit", line, "keep = true");
            let started = Instant::now();
            let (code, stderr, peak_kb) = run_measured(
                Path::new(env!("CARGO_BIN_EXE_rfetch")),
                &["-a", "-C", cfg.to_str().unwrap()],
                &dir,
                Stdio::null(),
            );
            assert_eq!(code, 0, "{what}: {stderr}");
            let (file, mbox) = match *target {
                "maildir" => {
                    let new = dir.join("Maildir/new");
                    let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .collect();
                    assert_eq!(files.len(), 1, "{what}: one file in {}", new.display());
                    (files.remove(0), false)
                }
                "mbox" => (dir.join("inbox.mbox"), true),
                "mda" => (mda_out.clone(), false),
                _ => (wait_for_alice(&s, &tag, Duration::from_secs(300)), false),
            };
            let (trace, digest) = delivered(&file, mbox);
            std::fs::remove_file(&file).expect("remove the delivered copy");
            assert!(
                trace.contains("(rfetch-"),
                "{what}: rfetch's Received field: {trace}"
            );
            let want = if mbox { &msg.mbox } else { &msg.raw };
            assert_eq!(&digest, want, "{what}: the message arrived changed");
            report.push(format!(
                "{what}: peak RSS {peak_kb} KB, {:.1} s (loaded machine)",
                started.elapsed().as_secs_f64()
            ));
            assert!(
                peak_kb < PEAK_RSS_BOUND_KB,
                "{what}: rfetch's peak RSS {peak_kb} KB for a {size}-byte message (bound {PEAK_RSS_BOUND_KB} KB)"
            );
        }
    }
    clear_bob(&s);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{size}-byte message:\n  {}", report.join("\n  "));
}

#[test]
fn rsend_sends_a_big_message_to_postfix_in_flat_memory() {
    let s = common::Stack::get();
    let size = message_size();
    postfix_accepts(&s, size);
    let dir = tempdir("bigmsg-rsend");
    let tag = format!("bigmsg-rsend-{}", std::process::id());
    let msg = write_message(&dir.join("message.eml"), size, &tag);
    let rc = dir.join("msmtprc");
    std::fs::write(
        &rc,
        format!(
            "account default\nhost localhost\nport {}\ntls on\ntls_starttls off\n\
             tls_trust_file {}\nauth on\nuser alice\npassword alicepw\nfrom big@localhost\n",
            s.port("SMTPS_PORT"),
            s.ca().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let started = Instant::now();
    let stdin = std::fs::File::open(&msg.path).expect("open the message");
    let (code, stderr, peak_kb) = run_measured(
        Path::new(env!("CARGO_BIN_EXE_rsend")),
        &["-C", rc.to_str().unwrap(), "alice@localhost"],
        &dir,
        Stdio::from(stdin),
    );
    assert_eq!(code, 0, "rsend: {stderr}");
    let file = wait_for_alice(&s, &tag, Duration::from_secs(300));
    let (_, digest) = delivered(&file, false);
    std::fs::remove_file(&file).expect("remove the delivered copy");
    assert_eq!(digest, msg.raw, "rsend: the message arrived changed");
    eprintln!(
        "rsend, {size}-byte message: peak RSS {peak_kb} KB, {:.1} s (loaded machine)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        peak_kb < PEAK_RSS_BOUND_KB,
        "rsend's peak RSS {peak_kb} KB for a {size}-byte message (bound {PEAK_RSS_BOUND_KB} KB)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
