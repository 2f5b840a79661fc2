//! rfetch's progress line on a terminal counts what is safely delivered, not what was fetched:
//! under a pseudo-terminal (`script`), with an MDA that takes its time and marks each message
//! it received on the same terminal, no drawn count ever runs ahead of the MDA's marks, and the
//! per-message lines stay off the terminal at the default verbosity (fetchmail's dots: one
//! line per account) while `-v` still shows them. Before, the line counted messages as they
//! were fetched ("message 200 of 500" before the first delivery) and 500 lines scrolled past.

#![allow(dead_code)] // the shared helpers are not all used by every binary

mod common;
include!("rfetch_support.rs.inc");

/// What the MDA writes to the terminal once it has the whole message, just before it exits 0.
const MARK: &str = "<mda-received>";

fn script_bin() -> &'static str {
    ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("util-linux script (bsdutils) is needed for the terminal test")
}

/// A slow MDA: reads the message into `dir/mda-out`, sleeps, marks the terminal.
fn slow_mda(dir: &Path) -> String {
    let sh = dir.join("slow-mda.sh");
    std::fs::write(
        &sh,
        format!(
            "#!/bin/sh\ncat >> '{}'\nsleep 0.1\nprintf '{MARK}' > /dev/tty\n",
            dir.join("mda-out").display()
        ),
    )
    .expect("write the MDA script");
    format!("mda = [\"/bin/sh\", \"{}\"]", sh.display())
}

fn seed_bob(s: &common::Stack, dir: &Path, n: usize) {
    for i in 1..=n {
        put_bob(
            s,
            dir,
            &format!("seed-{i}"),
            format!("From: a@x\nSubject: progress {i}\nMessage-ID: <progress-{i}@t>\n\nbody {i}\n")
                .as_bytes(),
        );
    }
}

/// Runs rfetch with `args` under a pseudo-terminal; returns its exit code and everything the
/// terminal showed.
fn on_a_terminal(dir: &Path, cfg: &Path, args: &str) -> (i32, String) {
    let cmd = format!(
        "'{}' {args} -C '{}'",
        env!("CARGO_BIN_EXE_rfetch"),
        cfg.display()
    );
    let o = Command::new(script_bin())
        .args(["-qec", &cmd, "/dev/null"])
        .env("HOME", dir)
        .env_remove("FETCHMAILHOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run script");
    (code(&o), String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The progress draws (delivered, total, fetched) in order, each with the number of MDA marks
/// the terminal showed before it.
fn draws(out: &str) -> Vec<(usize, usize, usize, usize)> {
    let prefix = "rfetch: bob@127.0.0.1: ";
    let mut found = Vec::new();
    let mut marks = 0;
    let mut rest = out;
    loop {
        let next_mark = rest.find(MARK);
        let next_draw = rest.find(prefix);
        match (next_mark, next_draw) {
            (Some(m), d) if d.is_none_or(|d| m < d) => {
                marks += 1;
                rest = &rest[m + MARK.len()..];
            }
            (_, Some(d)) => {
                rest = &rest[d + prefix.len()..];
                // "D of T delivered (F fetched)"
                let line: String = rest.chars().take_while(|&c| c != ')').collect();
                let nums: Vec<usize> = line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|w| !w.is_empty())
                    .map(|w| w.parse().expect("a number"))
                    .collect();
                assert!(
                    line.contains(" delivered (") && nums.len() == 3,
                    "a progress draw: {line:?}"
                );
                found.push((nums[0], nums[1], nums[2], marks));
            }
            (None, None) => return found,
            (Some(_), None) => unreachable!(),
        }
    }
}

#[test]
fn the_progress_line_counts_deliveries_not_fetches() {
    let s = common::Stack::get();
    let _bob = common::mailbox::lock_bob(&s);
    const N: usize = 12;
    for proto in ["pop3", "imap"] {
        clear_bob(&s);
        let dir = tempdir(&format!("progress-{proto}"));
        seed_bob(&s, &dir, N);
        let cfg = toml_config(&s, &dir, proto, "implicit", &slow_mda(&dir), "keep = false");
        let (c, out) = on_a_terminal(&dir, &cfg, "");
        assert_eq!(c, 0, "{proto}: {out:?}");
        assert_eq!(
            out.matches(MARK).count(),
            N,
            "{proto}: the MDA got every message"
        );
        let draws = draws(&out);
        assert!(
            !draws.is_empty(),
            "{proto}: a progress line was drawn: {out:?}"
        );
        eprintln!("{proto}: (delivered, total, fetched, MDA marks) drawn: {draws:?}");
        for &(delivered, total, fetched, marks) in &draws {
            assert_eq!(total, N, "{proto}: {out:?}");
            assert!(
                delivered <= marks,
                "{proto}: the line claimed {delivered} delivered when the MDA had received \
                 {marks}: {out:?}"
            );
            assert!(delivered <= fetched, "{proto}: {out:?}");
        }
        assert_eq!(
            draws.last().map(|d| (d.0, d.2)),
            Some((N, N)),
            "{proto}: the last draw says all {N} delivered: {out:?}"
        );
        // Fetching runs ahead of the slow MDA, and the line shows it apart.
        assert!(
            draws
                .iter()
                .any(|&(delivered, _, fetched, _)| fetched > delivered),
            "{proto}: fetched shown ahead of delivered: {draws:?}"
        );
        // One line for the account (its summary), not one per message.
        assert!(
            !out.contains("delivered to"),
            "{proto}: no per-message lines at the default verbosity: {out:?}"
        );
        assert!(
            out.matches('\n').count() <= 2,
            "{proto}: one line per account: {out:?}"
        );
        assert_eq!(server_count(&s), 0, "{proto}: nokeep deleted them");

        // -v shows the per-message lines besides the progress line.
        clear_bob(&s);
        seed_bob(&s, &dir, 3);
        let (c, out) = on_a_terminal(&dir, &cfg, "-v");
        assert_eq!(c, 0, "{proto}: {out:?}");
        assert_eq!(
            out.matches("delivered to").count(),
            3,
            "{proto} -v: {out:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
