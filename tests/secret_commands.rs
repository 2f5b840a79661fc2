//! `passwordeval` and msmtprc `eval` commands that misbehave: too much output, no end, a flood
//! on stderr. Each gets a clear error (or its password) in bounded time, never a hang.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postie::account::command::{self, CommandError, Limits};
use postie::account::secret::{SecretError, run_password_command, run_password_command_with};
use postie::config::msmtprc;

/// Runs `f` on a thread and fails the test if it takes longer than `limit` (the deadlock this
/// guards against would otherwise hang the test run).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}"))
}

#[test]
fn a_password_command_printing_a_megabyte_is_refused() {
    let e = within(Duration::from_secs(30), || {
        run_password_command("head -c 1000000 /dev/zero | tr '\\0' x")
    })
    .expect_err("1 MB is no password");
    assert!(
        matches!(e, SecretError::CommandTooLong { .. }),
        "{e:?}: {e}"
    );
    assert!(e.to_string().contains("65536"), "{e}");
    // Up to the bound is accepted.
    let pw = within(Duration::from_secs(30), || {
        run_password_command("head -c 65536 /dev/zero | tr '\\0' y")
    })
    .expect("64 KiB");
    assert_eq!(pw.len(), 65536);
}

#[test]
fn an_eval_line_printing_a_megabyte_is_refused() {
    let e = within(Duration::from_secs(30), || {
        msmtprc::run_eval("head -c 1000000 /dev/zero | tr '\\0' x")
    })
    .expect_err("1 MB");
    assert!(e.contains("more than"), "{e}");
}

#[test]
fn a_command_that_never_ends_is_killed_and_reaped() {
    let limits = Limits {
        max_output: 1024,
        timeout: Duration::from_millis(500),
    };
    let started = Instant::now();
    // `exec` makes sleep the shell's own process, the one killed.
    let e = within(Duration::from_secs(20), move || {
        command::run("printf partial; exec sleep 1000", limits)
    })
    .expect_err("never ends");
    assert!(matches!(e, CommandError::TimedOut { .. }), "{e:?}");
    assert!(e.to_string().contains("0.5 s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A command that closes its output and then goes on forever is no different.
    let e = within(Duration::from_secs(20), move || {
        command::run("exec >&- ; exec sleep 1000", limits)
    })
    .expect_err("never exits");
    assert!(matches!(e, CommandError::TimedOut { .. }), "{e:?}");
    // A background child holding the output open does not keep us waiting either.
    let e = within(Duration::from_secs(20), move || {
        command::run("sleep 20 & echo pw", limits)
    })
    .expect_err("output never closes");
    assert!(matches!(e, CommandError::TimedOut { .. }), "{e:?}");
}

/// Whether `pid` still runs: its /proc entry exists and it is not a zombie (a killed orphan
/// waits there for init to reap it).
fn runs(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    !matches!(state, Some(Some('Z' | 'X')))
}

#[test]
fn a_timed_out_password_command_leaves_no_descendant_running() {
    let dir = std::env::temp_dir().join(format!("postie-pwcmd-tree-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pids = dir.join("pids");
    let limits = Limits {
        max_output: 1024,
        timeout: Duration::from_millis(500),
    };
    // A grandchild (inner shell's background sleep) and a great-grandchild: neither is the
    // process `sh -c` started, so killing that one alone leaves both running.
    let cmd = format!(
        "sh -c 'sleep 100 & echo $! >> {p}; (sleep 100 & echo $! >> {p}; wait) & wait'; echo never",
        p = pids.display()
    );
    let e = within(Duration::from_secs(20), move || {
        run_password_command_with(&cmd, limits)
    })
    .expect_err("never ends");
    assert!(matches!(e, SecretError::CommandTimedOut { .. }), "{e:?}");
    let listed: Vec<u32> = std::fs::read_to_string(&pids)
        .expect("the command wrote its background pids")
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    // SIGKILL is delivered asynchronously: a moment for the kernel.
    let deadline = Instant::now() + Duration::from_secs(3);
    while listed.iter().any(|&p| runs(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let alive: Vec<u32> = listed.iter().copied().filter(|&p| runs(p)).collect();
    for &p in &alive {
        // Not to leave them behind after the failure either.
        let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        alive.is_empty(),
        "still running after the timeout: {alive:?}"
    );
}

/// Runs this test binary again with only the test `name`, `env` set, both pipes drained, and
/// a bound on the wait; returns its stdout and how many bytes it wrote on stderr. Used where the check must see only its own
/// children, or where a flood of output must not reach the test run's.
fn rerun_alone(name: &str, env: &str) -> (String, usize) {
    let exe = std::env::current_exe().expect("test binary");
    let child = Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn self");
    let out = within(Duration::from_secs(60), move || {
        child.wait_with_output().expect("wait")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(out.stderr.get(..4096).unwrap_or(&out.stderr))
    );
    (stdout, out.stderr.len())
}

#[test]
fn the_killed_command_leaves_no_zombie() {
    if std::env::var_os("POSTIE_ZOMBIE_CHILD").is_none() {
        rerun_alone("the_killed_command_leaves_no_zombie", "POSTIE_ZOMBIE_CHILD");
        return;
    }
    let limits = Limits {
        max_output: 4,
        timeout: Duration::from_millis(300),
    };
    for cmd in [
        "exec sleep 1000",
        "exec >&-; exec sleep 1000",
        "printf 0123456789; exec sleep 1000",
    ] {
        assert!(command::run(cmd, limits).is_err(), "{cmd}");
    }
    // Any child of this process not reaped shows as a zombie (state Z); one not killed still
    // runs sleep.
    let me = std::process::id().to_string();
    let ps = Command::new("ps")
        .args(["-o", "stat=,args=", "--ppid", &me])
        .output()
        .expect("ps");
    let listing = String::from_utf8_lossy(&ps.stdout);
    let others: Vec<&str> = listing.lines().filter(|l| !l.contains("ps -o")).collect();
    assert!(others.is_empty(), "children left: {others:?}");
    println!("CHILD-OK");
}

/// The test binary runs itself with stderr captured (so the flood does not fill the test
/// output) and this test name as filter; the child does the actual run.
#[test]
fn a_command_flooding_stderr_still_gives_its_password() {
    if std::env::var_os("POSTIE_STDERR_FLOOD_CHILD").is_some() {
        let pw = run_password_command("head -c 2000000 /dev/zero | tr '\\0' e >&2; echo pw")
            .expect("password");
        assert_eq!(pw, "pw");
        let line = msmtprc::run_eval("head -c 2000000 /dev/zero | tr '\\0' e >&2; echo port 25")
            .expect("eval");
        assert_eq!(line, "port 25");
        println!("CHILD-OK");
        return;
    }
    let (_, stderr_bytes) = rerun_alone(
        "a_command_flooding_stderr_still_gives_its_password",
        "POSTIE_STDERR_FLOOD_CHILD",
    );
    assert!(stderr_bytes >= 4_000_000, "the flood went to stderr");
}
