//! rfetch as a drop-in for Debian's fetchmail: the same fetchmailrc (POP3S, and an IMAPS
//! variant; `keep`, an `mda` writing each message to its own file) drives /usr/bin/fetchmail and
//! rfetch over the same edge-case mailbox on the real stack, and both deliver the same bytes once
//! the Received header each one added is removed (its position in the header must match too).
//! The exit codes agree for nothing to fetch (1), a wrong password (3) and an rc file with mode
//! 0644 (6).
//!
//! fetchmail refuses some things as root and insists on owning its rc file, so when the test runs
//! as root both programs run as `nobody` through setpriv (like bench/rfetch.sh), with everything
//! they touch under one work directory owned by nobody.

mod common;
use common::rfetch::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

const FETCHMAIL: &str = "/usr/bin/fetchmail";

/// The one known difference: fetchmail drops a CR that is not followed by LF; rfetch delivers
/// it (byte-exact, as for its Maildir target). For this message fetchmail's copy must equal
/// rfetch's with the bare CRs removed, and rfetch's must keep every one.
const BARE_CR: &str = "barecr";

/// `msg` without the CRs that are not followed by LF.
fn without_bare_cr(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    for (i, &b) in msg.iter().enumerate() {
        if b != b'\r' || msg.get(i + 1) == Some(&b'\n') {
            out.push(b);
        }
    }
    out
}

/// The edge cases, each with a unique Message-ID built from `tag`.
fn edge_messages(tag: &str) -> Vec<(&'static str, Vec<u8>)> {
    let hdr = |name: &str, extra: &str| {
        format!(
            "From: Sender <sender@example.org>\nTo: bob@localhost\nSubject: {name}\n\
             Message-ID: <{name}.{tag}@vsfm.test>\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n{extra}\n"
        )
        .into_bytes()
    };
    let with = |mut h: Vec<u8>, body: &[u8]| {
        h.extend_from_slice(body);
        h
    };
    let mut msgs = Vec::new();
    msgs.push(("plain", with(hdr("plain", ""), b"Hello bob.\n")));
    msgs.push((
        "utf8",
        with(
            hdr(
                "utf8",
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\
                 X-Greeting: Gr\u{fc}\u{df}e \u{65e5}\u{672c}\u{8a9e} \u{2603}\n",
            ),
            "caf\u{e9} na\u{ef}ve \u{20ac}100 \u{1f600}\n\u{3053}\u{3093}\u{306b}\u{3061}\u{306f}\n"
                .as_bytes(),
        ),
    ));
    msgs.push((
        "dots",
        with(
            hdr("dots", ""),
            b".\n..\n...\n.x\n..x\n...x\n x.\n.\n\n.\n..\nlast line before a final dot line\n.\n",
        ),
    ));
    // A MIME part with every byte but NUL, LF and CR (bare CRs: see BARE_CR).
    let mut binary = Vec::new();
    for round in 0..8u32 {
        let mut line = Vec::new();
        for b in 1..=255u8 {
            let b = b.rotate_left(round);
            if b == b'\n' || b == b'\r' || b == 0 {
                continue;
            }
            line.push(b);
            if line.len() == 72 {
                binary.extend_from_slice(&line);
                binary.push(b'\n');
                line.clear();
            }
        }
        binary.extend_from_slice(&line);
        binary.push(b'\n');
    }
    let mut mime = b"This is a multi-part message in MIME format.\n\n--b0undary\n\
        Content-Type: text/plain; charset=us-ascii\n\ntext part\n\n--b0undary\n\
        Content-Type: application/octet-stream; name=blob.bin\n\
        Content-Transfer-Encoding: binary\n\n"
        .to_vec();
    mime.extend_from_slice(&binary);
    mime.extend_from_slice(b"\n--b0undary--\n");
    msgs.push((
        "binary",
        with(
            hdr(
                "binary",
                "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b0undary\"\n",
            ),
            &mime,
        ),
    ));
    msgs.push((
        BARE_CR,
        with(
            hdr(BARE_CR, ""),
            b"a bare CR\rin the middle\nand\r\rtwo\nlast\n",
        ),
    ));
    msgs.push((
        "nonewline",
        with(hdr("nonewline", ""), b"first line\nno newline at the end"),
    ));
    // Already relayed: the new Received header goes before the first existing one.
    let mut relayed = b"Return-Path: <sender@example.org>\nDelivered-To: bob@localhost\n\
        Received: from relay.example.org (relay.example.org [192.0.2.1])\n\tby mx.example.org \
        with ESMTPS id 4711\n\tfor <bob@localhost>; Mon, 23 Nov 2026 10:00:01 +0000\n"
        .to_vec();
    relayed.extend_from_slice(&hdr(
        "relayed",
        "X-Folded: a header folded\n  over two lines\n",
    ));
    relayed.extend_from_slice(b"relayed body\n");
    msgs.push(("relayed", relayed));
    // About 1 MB, with dot lines and long lines scattered through it.
    let mut big = hdr("big", "");
    let mut i = 0u32;
    while big.len() < 1024 * 1024 {
        match i % 97 {
            0 => big.extend_from_slice(b".\n"),
            1 => big.extend_from_slice(b"..dots leading a line\n"),
            2 => big.extend_from_slice(&[b'x'; 900]),
            _ => big.extend_from_slice(
                format!("line {i} of the one megabyte message, plain text padding\n").as_bytes(),
            ),
        }
        if i % 97 == 2 {
            big.push(b'\n');
        }
        i += 1;
    }
    msgs.push(("big", big));
    msgs
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Hands the work tree to the user the clients run as.
fn give_to_runner(dir: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(dir)
            .status()
            .expect("run chown");
        assert!(st.success(), "chown -R nobody {}", dir.display());
    }
}

/// One client's private files: HOME and FETCHMAILHOME (idfile, pid file) and the MDA's output.
struct Client {
    program: PathBuf,
    home: PathBuf,
    out: PathBuf,
}

impl Client {
    fn new(work: &Path, name: &'static str, program: PathBuf, proto: &str) -> Client {
        let home = work.join(format!("home-{name}-{proto}"));
        let out = work.join(format!("out-{name}-{proto}"));
        std::fs::create_dir_all(&home).expect("home");
        std::fs::create_dir_all(&out).expect("out");
        chmod(&home, 0o700);
        Client { program, home, out }
    }

    fn run(&self, rc: &Path) -> Output {
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                .arg(&self.program);
            c
        } else {
            Command::new(&self.program)
        };
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LC_ALL", "C")
            .env("HOME", &self.home)
            .env("FETCHMAILHOME", &self.home)
            .env("MDA_OUT", &self.out);
        if is_root() {
            cmd.env("USER", "nobody").env("LOGNAME", "nobody");
        } else if let Some(u) = std::env::var_os("USER") {
            cmd.env("USER", u);
        }
        cmd.args(["--nosyslog", "-f"])
            .arg(rc)
            .current_dir(&self.home)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.program.display()))
    }

    /// The delivered messages, by Message-ID: (the MDA's arguments, the message).
    fn delivered(&self) -> BTreeMap<String, Vec<(String, Vec<u8>)>> {
        let mut by_id: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        for e in std::fs::read_dir(&self.out).expect("read MDA output") {
            let path = e.expect("entry").path();
            if path.extension().is_some_and(|x| x == "arg") {
                continue;
            }
            let msg = std::fs::read(&path).expect("read delivered message");
            let args = std::fs::read_to_string(path.with_extension("arg")).unwrap_or_default();
            let id = header_value(&msg, "message-id")
                .unwrap_or_else(|| format!("(no Message-ID in {})", path.display()));
            by_id.entry(id).or_default().push((args, msg));
        }
        by_id
    }
}

/// Header fields of a message as (start, end) byte ranges, each with its continuation lines,
/// and where the body starts.
fn header_fields(msg: &[u8]) -> (Vec<(usize, usize)>, usize) {
    let mut fields: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    while at < msg.len() {
        let end = msg[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(msg.len(), |p| at + p + 1);
        let line = &msg[at..end];
        if line == b"\n" || line == b"\r\n" {
            return (fields, at);
        }
        match fields.last_mut() {
            Some(f) if line[0] == b' ' || line[0] == b'\t' => f.1 = end,
            _ => fields.push((at, end)),
        }
        at = end;
    }
    (fields, msg.len())
}

fn header_value(msg: &[u8], name: &str) -> Option<String> {
    let (fields, _) = header_fields(msg);
    fields.iter().find_map(|&(s, e)| {
        let text = String::from_utf8_lossy(&msg[s..e]);
        let (n, v) = text.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// Removes the Received field the client added (the first Received field not in the seeded
/// message: ours all name relay.example.org). Returns its index among the header fields, the
/// field, and the rest of the message.
fn strip_added_received(msg: &[u8]) -> Option<(usize, String, Vec<u8>)> {
    let (fields, _) = header_fields(msg);
    let (i, &(s, e)) = fields.iter().enumerate().find(|&(_, &(s, e))| {
        let f = String::from_utf8_lossy(&msg[s..e]);
        f.len() > 9 && f[..9].eq_ignore_ascii_case("received:") && !f.contains("relay.example.org")
    })?;
    let mut rest = msg[..s].to_vec();
    rest.extend_from_slice(&msg[e..]);
    Some((i, String::from_utf8_lossy(&msg[s..e]).into_owned(), rest))
}

/// A Received field's first line and its `for <...>` address.
fn received_shape(field: &str) -> (String, Option<String>) {
    let first = field
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_owned();
    let rcpt = field
        .split_once("for <")
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(a, _)| a.to_owned());
    (first, rcpt)
}

/// `diff -u` of two byte strings, for a readable failure message.
fn diff(work: &Path, label: &str, a: &[u8], b: &[u8]) -> String {
    let da = work.join(format!("diff-{label}.fetchmail"));
    let db = work.join(format!("diff-{label}.rfetch"));
    std::fs::write(&da, a).expect("write diff input");
    std::fs::write(&db, b).expect("write diff input");
    let out = Command::new("diff")
        .args(["-u", "--text"])
        .arg(&da)
        .arg(&db)
        .output()
        .expect("run diff");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.len() > 4000 {
        let cut = (0..=4000)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push_str("\n[... diff truncated]");
    }
    text
}

fn doveadm(s: &common::Stack, args: &[&str]) {
    let st = Command::new("doveadm")
        .arg("-c")
        .arg(s.var("STACK_DOVECONF"))
        .args(args)
        .status()
        .expect("run doveadm");
    assert!(st.success(), "doveadm {args:?}");
}

fn rc_text(s: &common::Stack, work: &Path, proto: &str, password: &str) -> String {
    let port = match proto {
        "pop3" => s.port("POP3S_PORT"),
        _ => s.port("IMAPS_PORT"),
    };
    format!(
        "# the same rc drives fetchmail and rfetch\n\
         set no bouncemail\n\
         poll 127.0.0.1 protocol {proto} port {port}\n\
         \x20 user bob password {password}\n\
         \x20 ssl sslcertck sslcertfile \"{ca}\" sslcommonname localhost\n\
         \x20 keep\n\
         \x20 mda \"{mda} %T\"\n",
        ca = work.join("ca.crt").display(),
        mda = work.join("mda.sh").display(),
    )
}

fn show(o: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        code(o),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn compare(proto: &str) {
    assert!(
        Path::new(FETCHMAIL).exists(),
        "{FETCHMAIL} is missing: tests/stack/stack.sh deps tests installs it"
    );
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    let work = tempdir(&format!("vsfm-{proto}"));
    chmod(&work, 0o755);
    let tag = format!(
        "{}.{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );

    // Seed bob's mailbox.
    clear_bob(&s);
    let seeded = edge_messages(&tag);
    for (name, m) in &seeded {
        put_bob(&s, &work, &format!("seed-{name}"), m);
    }
    assert_eq!(server_count(&s), seeded.len());

    // The MDA, the CA, rfetch where nobody can run it, the rc files.
    let mda = work.join("mda.sh");
    std::fs::write(
        &mda,
        "#!/bin/sh\n# mda.sh RECIPIENT: stores the message on stdin in a new file in $MDA_OUT\n\
         set -e\nf=$(mktemp \"$MDA_OUT/msg.XXXXXXXX\")\nprintf '%s\\n' \"$*\" > \"$f.arg\"\n\
         cat > \"$f\"\n",
    )
    .expect("write mda");
    chmod(&mda, 0o755);
    std::fs::copy(s.ca(), work.join("ca.crt")).expect("copy CA");
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let rfetch_bin = bin.join("rfetch");
    std::fs::copy(env!("CARGO_BIN_EXE_rfetch"), &rfetch_bin).expect("copy rfetch");
    chmod(&rfetch_bin, 0o755);
    let rc = work.join(format!("{proto}.rc"));
    std::fs::write(&rc, rc_text(&s, &work, proto, "bobpw")).expect("write rc");
    chmod(&rc, 0o600);
    let rc_badpw = work.join(format!("{proto}-badpw.rc"));
    std::fs::write(&rc_badpw, rc_text(&s, &work, proto, "not-bobs-password")).expect("write rc");
    chmod(&rc_badpw, 0o600);
    let rc_open = work.join(format!("{proto}-0644.rc"));
    std::fs::write(&rc_open, rc_text(&s, &work, proto, "bobpw")).expect("write rc");
    chmod(&rc_open, 0o644);

    let fetchmail = Client::new(&work, "fetchmail", PathBuf::from(FETCHMAIL), proto);
    let rfetch = Client::new(&work, "rfetch", rfetch_bin, proto);
    give_to_runner(&work);

    // Both fetch the same mailbox with keep. fetchmail's IMAP driver only fetches messages
    // without \Seen and rfetch marks what it fetched \Seen, so the flags are reset in between.
    let mut codes: Vec<(&str, i32, i32, i32)> = Vec::new();
    let of = fetchmail.run(&rc);
    assert_eq!(code(&of), 0, "fetchmail, first run: {}", show(&of));
    assert_eq!(
        server_count(&s),
        seeded.len(),
        "keep: fetchmail left the mailbox"
    );
    doveadm(
        &s,
        &[
            "flags", "remove", "-u", "bob", "\\Seen", "mailbox", "INBOX", "all",
        ],
    );
    let or = rfetch.run(&rc);
    assert_eq!(code(&or), 0, "rfetch, first run: {}", show(&or));
    assert_eq!(
        server_count(&s),
        seeded.len(),
        "keep: rfetch left the mailbox"
    );

    // Same messages, same bytes (without the added Received field, at the same place).
    let got_f = fetchmail.delivered();
    let got_r = rfetch.delivered();
    let mut problems = Vec::new();
    for (who, got) in [("fetchmail", &got_f), ("rfetch", &got_r)] {
        let n: usize = got.values().map(Vec::len).sum();
        if n != seeded.len() || got.values().any(|v| v.len() != 1) {
            problems.push(format!(
                "{who} delivered {n} messages, want {} once each: {:?}",
                seeded.len(),
                got.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
            ));
        }
    }
    let mut received = Vec::new();
    for (name, _) in &seeded {
        let id = format!("<{name}.{tag}@vsfm.test>");
        let (Some(f), Some(r)) = (got_f.get(&id), got_r.get(&id)) else {
            problems.push(format!(
                "{name}: delivered by fetchmail: {}, by rfetch: {}",
                got_f.contains_key(&id),
                got_r.contains_key(&id)
            ));
            continue;
        };
        let ((args_f, msg_f), (args_r, msg_r)) = (&f[0], &r[0]);
        if args_f != args_r {
            problems.push(format!(
                "{name}: MDA arguments (%T): fetchmail {args_f:?}, rfetch {args_r:?}"
            ));
        }
        let Some((at_f, rcv_f, rest_f)) = strip_added_received(msg_f) else {
            problems.push(format!("{name}: fetchmail added no Received field"));
            continue;
        };
        let Some((at_r, rcv_r, rest_r)) = strip_added_received(msg_r) else {
            problems.push(format!("{name}: rfetch added no Received field"));
            continue;
        };
        if at_f != at_r {
            problems.push(format!(
                "{name}: Received field added as header field {at_f} by fetchmail, {at_r} by rfetch"
            ));
        }
        if *name == BARE_CR {
            let seeded_crs = seeded
                .iter()
                .find(|(n, _)| *n == BARE_CR)
                .map_or(0, |(_, m)| m.len() - without_bare_cr(m).len());
            let kept = rest_r.len() - without_bare_cr(&rest_r).len();
            if kept != seeded_crs {
                problems.push(format!(
                    "{name}: rfetch kept {kept} of the {seeded_crs} bare CRs"
                ));
            }
            let rest_r = without_bare_cr(&rest_r);
            if rest_f != rest_r {
                problems.push(format!(
                    "{name}: delivered bytes differ beyond the bare CRs (--- fetchmail, +++ rfetch):\n{}",
                    diff(&work, name, &rest_f, &rest_r)
                ));
            }
        } else if rest_f != rest_r {
            problems.push(format!(
                "{name}: delivered bytes differ (--- fetchmail, +++ rfetch):\n{}",
                diff(&work, name, &rest_f, &rest_r)
            ));
        }
        // The same `from` line ("from 127.0.0.1 [127.0.0.1]") and `for <...>` recipient; the
        // `by` line names the program and the date differs.
        if received_shape(&rcv_f) != received_shape(&rcv_r) {
            problems.push(format!(
                "{name}: Received fields differ:\nfetchmail: {rcv_f}rfetch:    {rcv_r}"
            ));
        }
        if received.is_empty() {
            received.push(format!("fetchmail: {rcv_f}rfetch:    {rcv_r}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{proto}: fetchmail and rfetch disagree:\n{}\n\nfetchmail: {}\nrfetch: {}",
        problems.join("\n"),
        show(&of),
        show(&or)
    );

    // Exit codes: nothing new (1); a wrong password (3); an rc file others can read (6).
    let (f, r) = (fetchmail.run(&rc), rfetch.run(&rc));
    codes.push(("nothing to fetch", 1, code(&f), code(&r)));
    let (f, r) = (fetchmail.run(&rc_badpw), rfetch.run(&rc_badpw));
    codes.push(("wrong password", 3, code(&f), code(&r)));
    let (f, r) = (fetchmail.run(&rc_open), rfetch.run(&rc_open));
    codes.push(("rc mode 0644", 6, code(&f), code(&r)));
    let bad: Vec<_> = codes
        .iter()
        .filter(|(_, want, f, r)| f != want || r != want)
        .collect();
    assert!(
        bad.is_empty(),
        "{proto}: exit codes (case, want, fetchmail, rfetch): {bad:?}"
    );
    assert_eq!(server_count(&s), seeded.len(), "keep: nothing deleted");
    eprintln!(
        "{proto}: {} messages identical; exit codes {codes:?}\n{}",
        seeded.len(),
        received.join("")
    );
    clear_bob(&s);
}

#[test]
fn pop3s_same_delivery_and_exit_codes_as_fetchmail() {
    compare("pop3");
}

#[test]
fn imaps_same_delivery_and_exit_codes_as_fetchmail() {
    compare("imap");
}
