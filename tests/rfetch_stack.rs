//! rfetch end to end against the real stack (bob's mailbox): POP3S, POP3+STLS, IMAPS and
//! IMAP+STARTTLS into a Maildir byte for byte; keep/nokeep; mbox and MDA targets; MDA exit 75
//! leaves the messages for the next poll. The tests share bob's mailbox, so they run one at
//! a time under a lock.

#![allow(dead_code)] // the shared helpers are not all used by every binary

mod common;
include!("rfetch_support.rs.inc");

use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let mut big = b"From: big@x\nTo: bob@localhost\nSubject: big\nMessage-ID: <big@t>\n\n".to_vec();
    while big.len() < 5 * 1024 * 1024 {
        big.extend_from_slice(
            b"0123456789 the five megabyte message line, long enough to matter........\n",
        );
    }
    vec![
        ("plain", b"From: a@x\nTo: bob@localhost\nSubject: plain\nMessage-ID: <plain@t>\n\nhello\n".to_vec()),
        ("8bit", b"From: a@x\nTo: bob@localhost\nSubject: 8bit\nMessage-ID: <8bit@t>\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\ncaf\xc3\xa9 \xe2\x82\xac \xff\xfe\n".to_vec()),
        ("dots", b"From: a@x\nTo: bob@localhost\nSubject: dots\nMessage-ID: <dots@t>\n\n.\n..\n.x\n...\nend\n".to_vec()),
        ("nonl", b"From: a@x\nTo: bob@localhost\nSubject: nonl\nMessage-ID: <nonl@t>\n\nno newline at the end".to_vec()),
        ("big", big),
    ]
}

/// Delivered messages equal the seeded ones apart from the Received header (and a final
/// newline POP3 must add to a message that lacked one).
fn assert_same(got: &[Vec<u8>], want: &[(&str, Vec<u8>)], ctx: &str) {
    assert_eq!(got.len(), want.len(), "{ctx}: message count");
    let mut got: Vec<Vec<u8>> = got.iter().map(|m| strip_received(m)).collect();
    got.sort();
    for (name, w) in want {
        let ok = got
            .iter()
            .any(|g| g == w || (g.len() == w.len() + 1 && g.starts_with(w) && g.ends_with(b"\n")));
        assert!(ok, "{ctx}: message {name} not delivered byte-identical");
    }
}

#[test]
fn fetch_into_maildir_over_every_transport() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    for (proto, tls) in [
        ("pop3", "implicit"),
        ("pop3", "starttls"),
        ("imap", "implicit"),
        ("imap", "starttls"),
    ] {
        let dir = tempdir(&format!("{proto}-{tls}"));
        clear_bob(&s);
        let msgs = samples();
        for (name, m) in &msgs {
            put_bob(&s, &dir, name, m);
        }
        assert_eq!(server_count(&s), msgs.len());
        let md = dir.join("Maildir");
        let cfg = toml_config(
            &s,
            &dir,
            proto,
            tls,
            &format!("maildir = \"{}\"", md.display()),
            "",
        );
        let o = rfetch(&dir, &["-v", "-C", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 0, "{proto}/{tls}: {err}");
        assert!(err.contains("1 of 5 ("), "{proto}/{tls}: info lines: {err}");
        assert!(err.contains("delivered to"), "{err}");
        assert_same(&maildir_messages(&md), &msgs, &format!("{proto}/{tls}"));
        assert_eq!(
            server_count(&s),
            0,
            "{proto}/{tls}: server must be empty after nokeep"
        );
        // Nothing left: exit 1.
        let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
        assert_eq!(
            code(&o),
            1,
            "{proto}/{tls}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn keep_leaves_the_server_untouched_and_fetches_once() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    for proto in ["pop3", "imap"] {
        let dir = tempdir(&format!("keep-{proto}"));
        clear_bob(&s);
        let msgs = &samples()[..3];
        for (name, m) in msgs {
            put_bob(&s, &dir, name, m);
        }
        let md = dir.join("Maildir");
        let cfg = toml_config(
            &s,
            &dir,
            proto,
            "implicit",
            &format!("maildir = \"{}\"", md.display()),
            "keep = true",
        );
        let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(server_count(&s), 3, "{proto}: keep leaves the messages");
        assert_same(&maildir_messages(&md), msgs, proto);
        let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
        assert_eq!(
            code(&o),
            1,
            "{proto}: second run finds nothing new: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(maildir_messages(&md).len(), 3);
        // -a fetches them again.
        let o = rfetch(&dir, &["-a", "-C", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), 0);
        assert_eq!(maildir_messages(&md).len(), 6);
        // -c: nothing new waiting.
        let o = rfetch(&dir, &["-c", "-C", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), 1);
    }
    clear_bob(&s);
}

#[test]
fn mbox_and_mda_targets_and_tempfail() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = common::Stack::get();
    let msgs = &samples()[..3];

    // mbox
    let dir = tempdir("mbox");
    clear_bob(&s);
    for (name, m) in msgs {
        put_bob(&s, &dir, name, m);
    }
    let mbox = dir.join("inbox.mbox");
    let cfg = toml_config(
        &s,
        &dir,
        "imap",
        "implicit",
        &format!("mbox = \"{}\"", mbox.display()),
        "",
    );
    let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read(&mbox).unwrap();
    let froms = text
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"From "))
        .count();
    assert_eq!(froms, 3, "three mbox entries");
    for id in ["<plain@t>", "<8bit@t>", "<dots@t>"] {
        assert!(
            text.windows(id.len()).any(|w| w == id.as_bytes()),
            "{id} in mbox"
        );
    }
    assert_eq!(server_count(&s), 0);

    // MDA exit 75: everything stays, exit 10, then a working MDA gets them all.
    let dir = tempdir("mda");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    for (name, m) in msgs {
        put_bob(&s, &dir, name, m);
    }
    let cfg = toml_config(
        &s,
        &dir,
        "pop3",
        "implicit",
        "mda = [\"sh\", \"-c\", \"cat >/dev/null; exit 75\"]",
        "",
    );
    let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 10, "{err}");
    assert!(err.contains("retried at the next poll"), "{err}");
    assert_eq!(
        server_count(&s),
        3,
        "tempfail leaves the messages on the server"
    );
    let cfg = toml_config(
        &s,
        &dir,
        "pop3",
        "implicit",
        &format!("mda = [\"sh\", \"-c\", \"cat > {}/$$\"]", out.display()),
        "",
    );
    let o = rfetch(&dir, &["-C", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server_count(&s), 0);
    let got: Vec<Vec<u8>> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_same(&got, msgs, "mda");
}
