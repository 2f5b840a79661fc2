//! Replays every committed fuzz seed (`fuzz/seeds/<target>/*`) through the checks the fuzz
//! targets run (`fuzz/checks.rs`, compiled into both), so `cargo test` catches a regression on a
//! known-hostile input without running the fuzzer. A target without seeds fails the test.

#[path = "../fuzz/checks.rs"]
#[allow(dead_code)]
mod checks;

use std::path::{Path, PathBuf};

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

fn replay(target: &str) {
    let (_, check) = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no check for target {target}"));
    let dir = seeds_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed directory {} missing: {e}", dir.display()))
        .map(|entry| entry.expect("readable seed directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("readable seed");
        // Printed only when the check fails: names the input to reproduce with.
        println!("replaying {}", file.display());
        check(&data);
    }
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(#[test]
        fn $target() {
            replay(stringify!($target));
        })*

        /// Every fuzz target has a check and a replay test, and the other way round.
        #[test]
        fn every_fuzz_target_is_replayed() {
            let tested = [$(stringify!($target)),*];
            let mut checked: Vec<&str> = checks::TARGETS.iter().map(|(n, _)| *n).collect();
            checked.sort_unstable();
            let mut replayed = tested.to_vec();
            replayed.sort_unstable();
            assert_eq!(checked, replayed);
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
            let mut targets: Vec<String> = std::fs::read_dir(&dir)
                .expect("fuzz/fuzz_targets")
                .map(|e| e.expect("entry").path())
                .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
                .collect();
            targets.sort_unstable();
            assert_eq!(targets, replayed, "fuzz/fuzz_targets and the checks disagree");
        }
    };
}

replay_tests!(
    smtp_reply,
    smtp_client,
    pop3,
    imap,
    sasl,
    dotstuff,
    rsend_headers,
    msmtprc,
    fetchmailrc,
    config_toml,
    mda_expand,
    socks5,
    dns,
    smtp_server,
);
