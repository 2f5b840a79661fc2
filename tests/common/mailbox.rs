//! Bob's INBOX as a shared fixture for the POP3 and IMAP stack tests: an flock that serialises
//! the test processes using it, the test messages, and seeding them straight into the Maildir.

use std::path::PathBuf;

pub struct BobLock(#[allow(dead_code)] std::fs::File);

pub fn lock_bob(stack: &super::Stack) -> BobLock {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(stack.dir.join("postie-bob-mailbox.lock"))
        .expect("lock file");
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    BobLock(f)
}

/// The test messages as files (LF line ends), each with a distinct subject.
pub fn messages() -> Vec<Vec<u8>> {
    let mut big = b"From: big@localhost\nSubject: m5-big\n\n".to_vec();
    let mut i = 0u64;
    while big.len() < 5 * 1024 * 1024 {
        big.extend_from_slice(
            format!("line {i} of the big message, with some padding text\n").as_bytes(),
        );
        if i.is_multiple_of(1000) {
            big.extend_from_slice(b".\n..\n");
        }
        i += 1;
    }
    vec![
        b"From: a@localhost\nSubject: m1-plain\n\nHello bob.\n".to_vec(),
        b"From: a@localhost\nSubject: m2-dots\n\n.\n..\n.x\nx.\n...\n.\n".to_vec(),
        b"From: a@localhost\nSubject: m3-8bit\n\ncaf\xc3\xa9 \xff\xfe\x80 bytes\n".to_vec(),
        b"From: a@localhost\nSubject: m4-nonewline\n\nno newline at the end".to_vec(),
        big,
    ]
}

pub fn crlf(file: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(file.len() + file.len() / 20);
    for &b in file {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Replaces bob's INBOX with `msgs`.
pub fn seed(stack: &super::Stack, msgs: &[Vec<u8>]) {
    let conf = stack.var("STACK_DOVECONF").to_string();
    let doveadm = |args: &[&str]| {
        let st = std::process::Command::new("doveadm")
            .arg("-c")
            .arg(&conf)
            .args(args)
            .status()
            .expect("doveadm runs");
        assert!(st.success(), "doveadm {args:?}");
    };
    doveadm(&["expunge", "-u", "bob", "mailbox", "INBOX", "all"]);
    let new: PathBuf = stack.dir.join("mail/bob/Maildir/new");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for (i, m) in msgs.iter().enumerate() {
        let path = new.join(format!("{stamp}.P{}Q{i}.postie-test", std::process::id()));
        std::fs::write(&path, m).expect("write message");
        let st = std::process::Command::new("chown")
            .arg("mail:mail")
            .arg(&path)
            .status()
            .expect("chown");
        assert!(st.success());
    }
    doveadm(&["force-resync", "-u", "bob", "INBOX"]);
}
