//! Installing postie the way msmtp and fetchmail users expect: scripts/install.sh puts the
//! binaries, man pages (sections 1 and 5), completions and systemd user units under a PREFIX
//! and removes exactly them again; the units pass `systemd-analyze verify`; scripts/build-deb.sh
//! builds postie and postie-mta, both lintian-clean; postie is installed on this machine
//! (apt-get, so CI must run as root), sends a message into the test stack through
//! /usr/bin/rsend and is purged without leaving a file. postie-mta Conflicts with
//! mail-transport-agent, so installing it would remove the stack's Postfix: it is checked with
//! dpkg-deb and lintian and its /usr/sbin/sendmail is exercised in a throw-away root (the
//! extracted packages) and, where mount namespaces are allowed, bind-mounted over
//! /usr/sbin/sendmail in a private one. The packages hold the debug binaries the test build
//! made (scripts/build-deb.sh --bin-dir): no release build in the tests.
//! Run with POSTIE_STACK_DIR=<stack dir>; the tools come from `stack.sh deps tests`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::rsend::*;

const RFETCH: &str = env!("CARGO_BIN_EXE_rfetch");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the test build put rsend and rfetch (target/debug).
fn bin_dir() -> PathBuf {
    Path::new(RSEND)
        .parent()
        .expect("binary directory")
        .to_path_buf()
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn ok(command: &mut Command) -> String {
    let out = run(command);
    assert!(out.status.success(), "{command:?}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tool(name: &str) -> Command {
    let path = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed; run: tests/stack/stack.sh deps tests"));
    Command::new(path)
}

fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                todo.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.insert(rel.display().to_string());
            }
        }
    }
    out
}

/// `systemd-analyze --user verify` of the units `names` in `dir` (a template as instance
/// `test`), which must print nothing: it exits 0 on unknown keys and only warns.
fn verify_units(dir: &Path, names: &BTreeSet<String>) -> Vec<String> {
    let runtime = TempDir::new("xdg-runtime");
    std::fs::set_permissions(
        runtime.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod runtime dir");
    let mut units = Vec::new();
    for name in names {
        let unit = match name.strip_suffix("@.service") {
            Some(template) => format!("{template}@test.service"),
            None => name.to_owned(),
        };
        if !name.ends_with(".service") && !name.ends_with(".timer") && !name.ends_with(".path") {
            continue;
        }
        // a unit named on the command line is loaded from the current directory
        let out = run(tool("systemd-analyze")
            .args(["--user", "verify", "--man=no", &unit])
            .current_dir(dir)
            .env("XDG_RUNTIME_DIR", runtime.path()));
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "systemd-analyze verify {unit}: {}",
            describe(&out)
        );
        units.push(unit);
    }
    units
}

#[test]
fn install_script_installs_everything_and_uninstalls_it_again() {
    let dir = TempDir::new("prefix");
    let prefix = dir.path().join("usr");
    let prefix_arg = format!("PREFIX={}", prefix.display());
    let bin_source = format!("BIN_SOURCE={}", bin_dir().display());
    let script = repo().join("scripts/install.sh");
    ok(Command::new(&script).args(["install", &prefix_arg, &bin_source]));

    let installed = files_under(&prefix);
    let listed: BTreeSet<String> = ok(Command::new(&script).args(["list", &prefix_arg]))
        .lines()
        .map(|l| {
            Path::new(l)
                .strip_prefix(&prefix)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| panic!("{l} is outside PREFIX"))
        })
        .collect();
    assert_eq!(installed, listed, "install.sh list disagrees with install");
    for expected in [
        "bin/rsend",
        "bin/rfetch",
        "share/man/man1/rsend.1",
        "share/man/man1/rfetch.1",
        "share/man/man5/postie.toml.5",
        "share/man/man5/postie-msmtprc.5",
        "share/man/man5/postie-fetchmailrc.5",
        "share/bash-completion/completions/rsend",
        "share/bash-completion/completions/rfetch",
        "share/zsh/vendor-completions/_rsend",
        "share/zsh/vendor-completions/_rfetch",
        "share/fish/vendor_completions.d/rsend.fish",
        "share/fish/vendor_completions.d/rfetch.fish",
        "lib/systemd/user/rfetch.service",
        "lib/systemd/user/rfetch@.service",
    ] {
        assert!(
            installed.contains(expected),
            "{expected} not installed: {installed:#?}"
        );
    }
    // every unit of contrib/systemd is installed (the queue units join them there)
    for unit in files_under(&repo().join("contrib/systemd")) {
        assert!(
            installed.contains(&format!("lib/systemd/user/{unit}")),
            "{unit}"
        );
    }
    let version = ok(Command::new(prefix.join("bin/rsend")).arg("--version"));
    assert!(
        version.contains(VERSION) && version.contains("rustls"),
        "{version}"
    );
    let completion = std::fs::read(prefix.join("share/bash-completion/completions/rfetch"))
        .expect("bash completion");
    assert_eq!(
        completion,
        ok(Command::new(RFETCH).args(["--completions", "bash"])).into_bytes(),
        "the installed completion is what the binary generates"
    );

    // The units name the installed rfetch and keep it in the foreground; there is no
    // ExecReload because rfetch does not re-read its configuration on SIGHUP.
    let units = prefix.join("lib/systemd/user");
    for name in ["rfetch.service", "rfetch@.service"] {
        let text = std::fs::read_to_string(units.join(name)).expect("unit");
        let exec = text
            .lines()
            .find(|l| l.starts_with("ExecStart="))
            .unwrap_or_else(|| panic!("{name}: no ExecStart"));
        assert!(
            exec.starts_with(&format!("ExecStart={}/bin/rfetch ", prefix.display()))
                && exec.contains("--nodetach")
                && exec.contains("--daemon"),
            "{name}: {exec}"
        );
        assert!(!text.contains("ExecReload="), "{name} claims a reload");
        assert!(!text.contains("@BINDIR@"), "{name}");
    }
    let verified = verify_units(&units, &files_under(&units));
    assert!(
        verified.contains(&"rfetch@test.service".to_string()),
        "{verified:?}"
    );

    ok(Command::new(&script).args(["uninstall", &prefix_arg]));
    let left = files_under(&prefix);
    assert!(left.is_empty(), "left after uninstall: {left:#?}");
}

/// Purges the package at the end, also when the test failed half-way.
struct Installed(&'static str);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = apt_get(&["purge", "-y", self.0]);
    }
}

fn apt_get(args: &[&str]) -> Output {
    run(tool("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=300", "-q"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn is_installed(package: &str) -> bool {
    run(tool("dpkg-query").args(["-W", "-f", "${Status}", package]))
        .stdout
        .ends_with(b" installed")
}

fn send_through(sendmail: &Path, rc: &Path, stack: &common::Stack, tag: &str) {
    let marker = unique(tag);
    let message =
        format!("From: alice@localhost\nTo: bob@localhost\nSubject: {marker}\n\nvia {tag}\n");
    let rc = rc.to_str().expect("utf-8 path");
    let out = run_program(
        sendmail,
        &["-C", rc, "-i", "bob@localhost"],
        message.as_bytes(),
    );
    assert_exit(&out, 0);
    wait_for(&maildir(stack, "bob"), &marker);
}

#[test]
fn debian_packages_build_install_send_and_purge() {
    let stack = common::Stack::get();
    assert!(
        rustix::process::geteuid().is_root(),
        "installing the package needs root (CI runs the suite as root)"
    );
    let out_dir = TempDir::new("debs");
    let built = ok(Command::new(repo().join("scripts/build-deb.sh"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--out")
        .arg(out_dir.path())
        .env("POSTIE_DEB_COMPRESSION", "gzip"));
    let debs: Vec<PathBuf> = built.lines().map(PathBuf::from).collect();
    let main = debs
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("postie_"))
        })
        .unwrap_or_else(|| panic!("no postie package in {built}"))
        .clone();
    let mta = debs
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("postie-mta_"))
        })
        .unwrap_or_else(|| panic!("no postie-mta package in {built}"))
        .clone();

    // lintian: no errors and no warnings
    let lint = run(tool("lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .args([&main, &mta]));
    assert!(lint.status.success(), "lintian: {}", describe(&lint));

    // postie-mta is an MTA package the way msmtp-mta is
    let field = |deb: &Path, name: &str| {
        ok(tool("dpkg-deb").arg("-f").arg(deb).arg(name))
            .trim()
            .to_owned()
    };
    for name in ["Provides", "Conflicts", "Replaces"] {
        assert_eq!(
            field(&mta, name),
            "mail-transport-agent",
            "postie-mta {name}"
        );
    }
    assert_eq!(field(&mta, "Depends"), format!("postie (= {VERSION})"));
    assert!(field(&main, "Depends").contains("libc6"));
    let listing = ok(tool("dpkg-deb").arg("-c").arg(&mta));
    for link in [
        "./usr/sbin/sendmail -> ../bin/rsend",
        "./usr/lib/sendmail -> ../bin/rsend",
        "./usr/bin/mailq -> rsend",
        "./usr/bin/newaliases -> rsend",
    ] {
        assert!(
            listing.contains(link),
            "postie-mta lacks {link}:\n{listing}"
        );
    }

    // postie-mta's sendmail in a throw-away root: both packages extracted into one directory
    let (_rc_dir, rc) = good_rc(&stack);
    let root = TempDir::new("root");
    for deb in [&main, &mta] {
        ok(tool("dpkg-deb").arg("-x").arg(deb).arg(root.path()));
    }
    send_through(
        &root.path().join("usr/sbin/sendmail"),
        &rc,
        &stack,
        "deb-root-sendmail",
    );
    // mailq lists the user's queue (under $HOME/.local/state when nothing else names one)
    let mailq_home = TempDir::new("mailq-home");
    let mut mailq = Command::new(root.path().join("usr/bin/mailq"));
    mailq
        .env("HOME", mailq_home.path())
        .env_remove("XDG_STATE_HOME");
    let mailq = run_command(mailq, b"");
    assert_exit(&mailq, 0);
    assert!(
        String::from_utf8_lossy(&mailq.stdout).contains("queue"),
        "{}",
        describe(&mailq)
    );

    // ... and as /usr/sbin/sendmail itself, bind-mounted in a private mount namespace (the
    // machine's Postfix sendmail stays in place outside it)
    let probe = run(tool("unshare").args(["--mount", "--propagation", "private", "true"]));
    if probe.status.success() {
        let marker = unique("deb-namespace-sendmail");
        let script = format!(
            "mount --bind '{}' /usr/sbin/sendmail && exec /usr/sbin/sendmail -C '{}' -i bob@localhost",
            root.path().join("usr/sbin/sendmail").display(),
            rc.display()
        );
        let mut command = tool("unshare");
        command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        let out = run_command(
            command,
            format!("From: alice@localhost\nSubject: {marker}\n\nx\n").as_bytes(),
        );
        assert_exit(&out, 0);
        wait_for(&maildir(&stack, "bob"), &marker);
    } else {
        eprintln!(
            "no mount namespace here ({}); /usr/sbin/sendmail was exercised in the extracted root only",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
    }

    // The main package on this machine
    assert!(
        !is_installed("postie"),
        "postie is already installed here; remove it first (apt-get purge postie)"
    );
    let sendmail_owner_before = ok(tool("dpkg-query").args(["-S", "/usr/sbin/sendmail"]));
    let install = apt_get(&[
        "install",
        "-y",
        "--no-install-recommends",
        &main.display().to_string(),
    ]);
    let installed = Installed("postie");
    assert!(
        install.status.success(),
        "apt-get install: {}",
        describe(&install)
    );
    assert!(is_installed("postie"));
    let files: Vec<PathBuf> = ok(tool("dpkg").args(["-L", "postie"]))
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect();
    for expected in [
        "/usr/bin/rsend",
        "/usr/bin/rfetch",
        "/usr/share/man/man1/rsend.1.gz",
        "/usr/share/man/man5/postie.toml.5.gz",
        "/usr/share/bash-completion/completions/rsend",
        "/usr/share/zsh/vendor-completions/_rfetch",
        "/usr/share/fish/vendor_completions.d/rsend.fish",
        "/usr/lib/systemd/user/rfetch.service",
        "/usr/lib/systemd/user/rfetch@.service",
    ] {
        assert!(
            files.contains(&PathBuf::from(expected)),
            "{expected} not in the package"
        );
    }
    // -V describes the build before it looks for a configuration (there is none here: exit 5)
    let version = run(Command::new("/usr/bin/rfetch").arg("-V").env_remove("HOME"));
    let stdout = String::from_utf8_lossy(&version.stdout);
    assert!(
        stdout.contains(&format!("release {VERSION}")) && stdout.contains("TLS library: rustls"),
        "{}",
        describe(&version)
    );
    send_through(
        Path::new("/usr/bin/rsend"),
        &rc,
        &stack,
        "deb-installed-rsend",
    );
    let unit_dir = Path::new("/usr/lib/systemd/user");
    let ours: BTreeSet<String> = files
        .iter()
        .filter_map(|p| p.strip_prefix(unit_dir).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(verify_units(unit_dir, &ours).len(), ours.len());

    drop(installed);
    assert!(
        !is_installed("postie"),
        "postie still installed after purge"
    );
    let left: Vec<&PathBuf> = files.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    assert_eq!(
        ok(tool("dpkg-query").args(["-S", "/usr/sbin/sendmail"])),
        sendmail_owner_before,
        "the machine's sendmail changed hands"
    );
}

/// The command rfetch.service runs (its ExecStart, with the unit's RFETCH_INTERVAL) stays in
/// the foreground, as Type=simple needs, polls at once, logs the delivery on standard error
/// (which the journal records), and ends with status 0 on SIGTERM (systemctl stop), so the
/// unit is not marked failed. It polls alice's INBOX with keep, so the stack is unchanged.
#[test]
fn rfetch_service_command_stays_in_the_foreground_and_stops_cleanly() {
    let stack = common::Stack::get();
    let dir = TempDir::new("unit-run");
    let prefix = dir.path().join("usr");
    ok(Command::new(repo().join("scripts/install.sh")).args([
        "install",
        &format!("PREFIX={}", prefix.display()),
        &format!("BIN_SOURCE={}", bin_dir().display()),
    ]));
    let unit = std::fs::read_to_string(prefix.join("lib/systemd/user/rfetch.service"))
        .expect("installed unit");
    let interval = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=RFETCH_INTERVAL="))
        .expect("RFETCH_INTERVAL in the unit");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart")
        .replace("${RFETCH_INTERVAL}", interval);
    let argv: Vec<&str> = exec.split_whitespace().collect();

    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config/postie")).expect("home");
    let config = home.join(".config/postie/config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.a]\nhost = \"localhost\"\nuser = \"alice\"\npassword = \"alicepw\"\n\
             tls_trust_file = \"{}\"\n[accounts.a.fetch]\nprotocol = \"imap\"\nport = {}\n\
             keep = true\nmaildir = \"~/Maildir\"\n",
            stack.ca().display(),
            stack.port("IMAP_PORT")
        ),
    )
    .expect("config");
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(home.join("Maildir").join(sub)).expect("Maildir");
    }

    let marker = unique("unit-run");
    let (_rc_dir, rc) = good_rc(&stack);
    let rc = rc.to_str().expect("utf-8 path");
    let sent = rsend(
        &["-C", rc, "alice@localhost"],
        format!("From: alice@localhost\nSubject: {marker}\n\nfor the unit\n").as_bytes(),
    );
    assert_exit(&sent, 0);
    wait_for(&maildir(&stack, "alice"), &marker);

    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("HOME", &home)
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("start the unit's command");
    let delivered = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if !find_messages(&home.join("Maildir"), &marker).is_empty() {
                break true;
            }
            if std::time::Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let still_running = child.try_wait().expect("try_wait").is_none();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    // A command that detached left its daemon behind, named in the lock file: stop it too.
    if let Ok(lock) = std::fs::read_to_string(home.join(".fetchmail.pid"))
        && let Some(pid) = lock.lines().next().filter(|p| *p != child.id().to_string())
    {
        let _ = Command::new("kill").args(["-TERM", pid]).status();
    }
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(delivered, "{marker} not fetched; stderr:\n{log}");
    assert!(still_running, "{exec} left the foreground; stderr:\n{log}");
    assert_eq!(status.code(), Some(0), "after SIGTERM; stderr:\n{log}");
    assert!(
        log.contains("delivered to") && log.contains(&home.join("Maildir").display().to_string()),
        "no delivery line on stderr (the journal):\n{log}"
    );
}
