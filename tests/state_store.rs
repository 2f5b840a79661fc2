//! The seen-message store: record and reopen, batching, UIDVALIDITY changes, fetchmail
//! `.fetchids` import, and the corrupt/oversized file policy.

mod common;

use common::temp_dir;
use std::fs;
use std::path::PathBuf;

use postie::fetch::state::{AccountKey, SeenStore, StateError, UidValidityCheck};

#[test]
fn missing_file_is_empty_and_records_survive_reopen() {
    let dir = temp_dir("reopen");
    let path = dir.join("seen");
    let pop = AccountKey::pop3("pop.example.org", "alice smith");
    let imap = AccountKey::imap("imap.example.org", "alice");
    let mut s = SeenStore::open(&path).unwrap();
    assert!(!s.pop3_is_seen(&pop, "uid1"));
    s.pop3_record(&pop, ["uid1", "uid 2", "100%"]).unwrap();
    assert_eq!(s.imap_select(&imap, "INBOX", 7), UidValidityCheck::New);
    s.imap_record(&imap, "INBOX", 7, [1, 2, 3, 10]);
    s.imap_record(&imap, "Lists/rust dev", 9, [5]);
    assert!(s.is_dirty());
    s.commit().unwrap(); // one fsync round for the whole batch
    assert!(!s.is_dirty());
    assert!(!dir.join("seen.tmp").exists());
    let names: Vec<_> = fs::read_dir(&dir).unwrap().collect();
    assert_eq!(names.len(), 1, "no temp file left behind");

    let s = SeenStore::open(&path).unwrap();
    for uid in ["uid1", "uid 2", "100%"] {
        assert!(s.pop3_is_seen(&pop, uid), "{uid}");
    }
    assert!(!s.pop3_is_seen(&pop, "uid3"));
    assert!(!s.pop3_is_seen(&AccountKey::pop3("pop.example.org", "bob"), "uid1"));
    for uid in [1, 2, 3, 10] {
        assert!(s.imap_is_seen(&imap, "INBOX", 7, uid));
    }
    assert!(!s.imap_is_seen(&imap, "INBOX", 7, 4));
    assert!(!s.imap_is_seen(&imap, "INBOX", 8, 1), "other uidvalidity");
    assert!(s.imap_is_seen(&imap, "Lists/rust dev", 9, 5));
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("postie-seen 1\n"), "{text}");
    assert!(
        text.contains("imap imap.example.org alice INBOX 7 1:3,10\n"),
        "{text}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn uidvalidity_change_forgets_old_uids() {
    let dir = temp_dir("uidvalidity");
    let path = dir.join("seen");
    let imap = AccountKey::imap("h", "u");
    let mut s = SeenStore::open(&path).unwrap();
    s.imap_record(&imap, "INBOX", 1, 1..=100);
    s.commit().unwrap();

    let mut s = SeenStore::open(&path).unwrap();
    assert_eq!(
        s.imap_select(&imap, "INBOX", 1),
        UidValidityCheck::Unchanged
    );
    assert_eq!(
        s.imap_select(&imap, "INBOX", 2),
        UidValidityCheck::Changed {
            old: 1,
            dropped: 100
        }
    );
    assert!(!s.imap_is_seen(&imap, "INBOX", 2, 5));
    assert!(!s.imap_is_seen(&imap, "INBOX", 1, 5));
    s.imap_record(&imap, "INBOX", 2, [5]);
    s.commit().unwrap();
    let s = SeenStore::open(&path).unwrap();
    assert!(s.imap_is_seen(&imap, "INBOX", 2, 5));
    assert!(!s.imap_is_seen(&imap, "INBOX", 2, 6));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn retain_drops_expunged_uids() {
    let dir = temp_dir("retain");
    let path = dir.join("seen");
    let pop = AccountKey::pop3("h", "u");
    let mut s = SeenStore::open(&path).unwrap();
    s.pop3_record(&pop, ["a", "b", "c"]).unwrap();
    s.commit().unwrap();
    s.pop3_retain(&pop, |u| u != "b");
    s.commit().unwrap();
    let s = SeenStore::open(&path).unwrap();
    assert_eq!(s.pop3_uids(&pop).collect::<Vec<_>>(), ["a", "c"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reads_fetchmail_fetchids() {
    let dir = temp_dir("fetchids");
    let path = dir.join(".fetchids");
    fs::write(
        &path,
        "u@127.0.0.1 uid1\nu@127.0.0.1 uid2\nme@x.org@pop.example.org abc\n",
    )
    .unwrap();
    let mut s = SeenStore::open(&path).unwrap();
    let k = AccountKey::pop3("127.0.0.1", "u");
    assert!(s.pop3_is_seen(&k, "uid1") && s.pop3_is_seen(&k, "uid2"));
    assert!(s.pop3_is_seen(&AccountKey::pop3("pop.example.org", "me@x.org"), "abc"));
    s.pop3_record(&k, ["uid3"]).unwrap();
    s.commit().unwrap();
    let s = SeenStore::open(&path).unwrap();
    assert!(s.pop3_is_seen(&k, "uid1") && s.pop3_is_seen(&k, "uid3"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_files_are_errors_with_line_numbers() {
    let dir = temp_dir("corrupt");
    let path = dir.join("seen");
    for (content, line) in [
        ("postie-seen 1\npop3 h u a\nbogus record\n", 3),
        ("postie-seen 1\nimap h u INBOX x 1\n", 2),
        ("postie-seen 1\nimap h u INBOX 1 1:99999999999\n", 2),
        ("postie-seen 1\nimap h u INBOX 1 1:4000000000\n", 2),
        ("postie-seen 1\nimap h u INBOX 1 1\nimap h u INBOX 2 3\n", 3),
        ("postie-seen 1\npop3 h u %zz\n", 2),
        ("u@h uid1\nno-at-sign uid\n", 2),
        ("u@h uid1 extra\n", 1),
    ] {
        fs::write(&path, content).unwrap();
        match SeenStore::open(&path) {
            Err(StateError::Corrupt { line: l, .. }) => assert_eq!(l, line, "{content:?}"),
            other => panic!("{content:?}: {other:?}"),
        }
    }
    // An absurd line length.
    fs::write(
        &path,
        format!("postie-seen 1\npop3 h u {}\n", "x".repeat(100_000)),
    )
    .unwrap();
    let err = SeenStore::open(&path).unwrap_err();
    assert!(err.to_string().contains(":2:"), "{err}");
    let e: postie::Error = err.into();
    assert_eq!(e.kind(), postie::ErrorKind::LocalIo);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn overlong_and_invalid_uids_are_refused() {
    let dir = temp_dir("uids");
    let mut s = SeenStore::open(dir.join("seen")).unwrap();
    let k = AccountKey::pop3("h", "u");
    let long = "x".repeat(600);
    assert!(matches!(
        s.pop3_record(&k, [long.as_str()]),
        Err(StateError::UidTooLong { len: 600 })
    ));
    assert!(s.pop3_record(&k, ["a\nb"]).is_err());
    assert!(s.pop3_record(&k, [""]).is_err());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unwritable_directory_is_a_write_error_and_state_stays_dirty() {
    let dir = temp_dir("unwritable");
    let mut s = SeenStore::open(dir.join("missing-dir/seen")).unwrap();
    s.pop3_record(&AccountKey::pop3("h", "u"), ["a"]).unwrap();
    assert!(matches!(s.commit(), Err(StateError::Write { .. })));
    assert!(s.is_dirty());
    fs::remove_dir_all(&dir).unwrap();
}

/// Child half of `sigkill_during_commits_never_tears_the_file`: commits forever. Ignored in a
/// normal run (alone it would pass without checking anything); the parent runs it with --ignored.
#[test]
#[ignore = "child process of sigkill_during_commits_never_tears_the_file"]
fn sigkill_child_commits_forever() {
    let Some(path) = std::env::var_os("POSTIE_STATE_CHILD") else {
        return; // only meaningful when spawned by the parent test
    };
    let mut s = SeenStore::open(PathBuf::from(path)).unwrap();
    let k = AccountKey::pop3("h", "u");
    let imap = AccountKey::imap("h", "u");
    for i in 1u32.. {
        s.pop3_record(&k, [format!("u{i}").as_str()]).unwrap();
        s.imap_record(&imap, "INBOX", 1, [i]);
        s.commit().unwrap();
    }
}

#[test]
fn sigkill_during_commits_never_tears_the_file() {
    let dir = temp_dir("sigkill");
    let path = dir.join("seen");
    let exe = std::env::current_exe().unwrap();
    for round in 0..5u64 {
        let _ = fs::remove_file(&path);
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "sigkill_child_commits_forever",
                "--ignored",
                "--test-threads=1",
            ])
            .env("POSTIE_STATE_CHILD", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let it commit a while (waiting for the first commit), then kill it mid-flight.
        let start = std::time::Instant::now();
        while !path.exists() && start.elapsed() < std::time::Duration::from_secs(20) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(path.exists(), "round {round}: the child never committed");
        std::thread::sleep(std::time::Duration::from_millis(20 + round * 17));
        child.kill().unwrap();
        child.wait().unwrap();

        let s = SeenStore::open(&path).expect("the state file must never be torn");
        let k = AccountKey::pop3("h", "u");
        let imap = AccountKey::imap("h", "u");
        let n = s.pop3_uids(&k).count() as u32;
        assert!(n >= 1, "round {round}: nothing committed");
        // Exactly the first n records, in both sections: one consistent snapshot.
        for i in 1..=n {
            assert!(s.pop3_is_seen(&k, &format!("u{i}")), "round {round}: u{i}");
            assert!(s.imap_is_seen(&imap, "INBOX", 1, i), "round {round}: {i}");
        }
        assert!(!s.imap_is_seen(&imap, "INBOX", 1, n + 1));
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn state_file_is_private_even_over_a_leftover_readable_temp_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("mode");
    let path = dir.join("seen");
    // Temp files a crash left behind under the names this process will use, readable by all
    // (or symlinks planted there): the mode given at creation must still be what we get. The
    // names are `seen.tmp.<pid>.<n>`, n counting this process's writes (other tests of this
    // binary write too), so every n a write here can take is planted.
    const NAMES: u64 = 4096;
    let tmp = |n: u64| dir.join(format!("seen.tmp.{}.{n}", std::process::id()));
    for n in 0..NAMES {
        fs::write(tmp(n), "stale").unwrap();
        fs::set_permissions(tmp(n), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let elsewhere = dir.join("elsewhere");
    let mut s = SeenStore::open(&path).unwrap();
    s.pop3_record(&AccountKey::pop3("h", "u"), ["uid1"])
        .unwrap();
    s.commit().unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "state file mode {mode:o}");
    // A symlink under a temp name is not written through.
    for n in 0..NAMES {
        let _ = fs::remove_file(tmp(n));
        std::os::unix::fs::symlink(&elsewhere, tmp(n)).unwrap();
    }
    s.pop3_record(&AccountKey::pop3("h", "u"), ["uid2"])
        .unwrap();
    s.commit().unwrap();
    assert!(!elsewhere.exists(), "wrote through a symlink");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "state file mode {mode:o}");
    assert!(
        SeenStore::open(&path)
            .unwrap()
            .pop3_is_seen(&AccountKey::pop3("h", "u"), "uid2")
    );
    let _ = fs::remove_dir_all(&dir);
}
