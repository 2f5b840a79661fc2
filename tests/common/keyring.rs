//! A private D-Bus session bus with an unlocked headless gnome-keyring on it, for the tests of
//! the system keyring (tests/keyring.rs, tests/oauth_stack.rs).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private session bus with an unlocked gnome-keyring on it; both stopped by PID on drop.
pub struct Keyring {
    pub dir: PathBuf,
    bus: String,
    dbus_pid: i32,
    keyring: Child,
}

impl Keyring {
    pub fn start(name: &str) -> Keyring {
        for tool in ["dbus-daemon", "gnome-keyring-daemon", "secret-tool"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success(),
                "{tool} is missing: run tests/stack/stack.sh deps tests"
            );
        }
        let dir =
            std::env::temp_dir().join(format!("postie-keyring-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        // A session bus without service activation: otherwise the first secret-tool call would
        // start a second, locked gnome-keyring before ours owns the name.
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n                  \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n                 <busconfig><type>session</type><listen>unix:dir={}</listen><auth>EXTERNAL</auth>                 <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>                 <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
                dir.join("run").display()
            ),
        )
        .unwrap();
        let out = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args([
                "--fork",
                "--print-address=1",
                "--print-pid=1",
                "--nopidfile",
            ])
            .env("HOME", &dir)
            .stdin(Stdio::null())
            .output()
            .expect("dbus-daemon");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let bus = lines.next().expect("bus address").to_owned();
        let dbus_pid: i32 = lines
            .next()
            .and_then(|p| p.trim().parse().ok())
            .expect("dbus pid");
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon");
        // The unlock password of the throw-away login keyring.
        let mut stdin = keyring.stdin.take().unwrap();
        stdin.write_all(b"unlock").unwrap();
        drop(stdin);
        let k = Keyring {
            dir,
            bus,
            dbus_pid,
            keyring,
        };
        // Ready when an item can be stored.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !k.secret_tool(&["store", "--label=probe", "probe", "1"], "x") {
            assert!(Instant::now() < deadline, "gnome-keyring did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        k
    }

    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("HOME", &self.dir)
            .env("XDG_RUNTIME_DIR", self.dir.join("run"))
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env_remove("XDG_CONFIG_HOME");
        c
    }

    /// secret-tool with `input` on stdin; whether it succeeded.
    pub fn secret_tool(&self, args: &[&str], input: &str) -> bool {
        let mut child = self
            .command("secret-tool")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait().unwrap().success()
    }

    #[allow(dead_code)]
    pub fn lookup(&self, args: &[&str]) -> String {
        let out = self
            .command("secret-tool")
            .arg("lookup")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        let _ = self.keyring.kill();
        let _ = self.keyring.wait();
        let _ = Command::new("kill").arg(self.dbus_pid.to_string()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
