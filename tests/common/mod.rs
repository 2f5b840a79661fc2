//! Test support shared by the integration tests: where the real loopback mail stack is, and
//! helpers to reach it. Real-server tests never skip: without the stack they fail and say how to
//! start it.
#![allow(dead_code)]

pub mod keyring;
pub mod mailbox;
pub mod pop3_mailbox;
pub mod recorder;
pub mod rfetch;
pub mod rsend;
pub mod tls;
pub mod transcript;
pub mod wire_trace;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A loopback port that refuses connections for as long as the test process runs: a socket
/// bound to it and never listened on. A port taken from a listener that was then closed is
/// free for the kernel to give to the next test's listener (tests run in parallel), and a client
/// meant to be refused then connects to that test's server and waits for a greeting.
pub fn closed_port() -> u16 {
    use std::sync::OnceLock;
    static CLOSED: OnceLock<(rustix::fd::OwnedFd, u16)> = OnceLock::new();
    CLOSED
        .get_or_init(|| {
            use rustix::net::{AddressFamily, SocketType, bind, getsockname, socket};
            let fd = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
            let any = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0);
            bind(&fd, &any).expect("bind");
            let addr = getsockname(&fd).expect("getsockname");
            let port = std::net::SocketAddr::try_from(addr)
                .expect("an inet address")
                .port();
            (fd, port)
        })
        .1
}

/// How long a refusal may take in the planted-file tests: it is immediate; a hang (an open or a
/// read of a FIFO that never returns) is what they test against.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Makes a FIFO (mode 0600) at `path`.
pub fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .expect("mkfifo");
}

/// Runs `work` on a thread and returns its result, failing the test if it takes longer than
/// [`PATIENCE`] (the blocked thread is left behind; the test process ends soon after).
pub fn within<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what}: still blocked after {PATIENCE:?}"))
}

/// Runs a binary with stdin from /dev/null and its output captured, killing it and failing the
/// test if it has not exited within [`PATIENCE`].
pub fn run_bounded(mut command: std::process::Command, what: &str) -> std::process::Output {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {PATIENCE:?} (blocked on a planted file)");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A fresh directory under the system temp dir, named for `tag`, this process and the time,
/// removed when the returned guard is dropped (see [`TempDir`]).
pub fn temp_dir(tag: &str) -> TempDir {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("postie-{tag}-{}-{nanos}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir {
        path: dir,
        kept: false,
    }
}

/// A test's temporary directory, removed with everything in it when dropped, unless the test
/// is failing (dropped while panicking: kept, and its path printed, for inspection) or
/// `POSTIE_KEEP_TMP` is set. Without it every run of the suite left gigabytes in /tmp.
/// Derefs to its path, so it goes wherever a `&Path` does.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    kept: bool,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        temp_dir(tag)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory in place (a test's own switch to keep its files for reading).
    pub fn keep(mut self) -> PathBuf {
        self.kept = true;
        self.path.clone()
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if std::thread::panicking() {
            eprintln!("test failed: its files are kept in {}", self.path.display());
            return;
        }
        if std::env::var_os("POSTIE_KEEP_TMP").is_some() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes `text` to `path` with mode 600 (the binaries refuse a readable file with a secret).
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write config");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// DIR/Maildir with its cur, new and tmp.
pub fn new_maildir(dir: &Path) -> PathBuf {
    let md = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).expect("maildir");
    }
    md
}

/// The running test mail stack, as described by `$STACK_DIR/stack.env` (written by
/// `tests/stack/stack.sh up`).
#[derive(Debug, Clone)]
pub struct Stack {
    pub dir: PathBuf,
    vars: HashMap<String, String>,
}

impl Stack {
    /// Finds the stack: `$POSTIE_STACK_DIR`, else `<repo>/.stack`. Panics with instructions if
    /// it is not running.
    pub fn get() -> Stack {
        let dir = std::env::var_os("POSTIE_STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".stack"));
        let env_file = dir.join("stack.env");
        let text = std::fs::read_to_string(&env_file).unwrap_or_else(|e| {
            panic!(
                "the test mail stack is not running ({}: {e}).\n\
                 Start it with: sudo tests/stack/stack.sh up  (or run the whole suite with tests/run.sh)",
                env_file.display()
            )
        });
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect();
        let stack = Stack { dir, vars };
        // A stale env file from a stopped stack must not pass for a running one.
        let port = stack.port("SMTPS_PORT");
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            panic!(
                "the test mail stack in {} is not answering on port {port}.\n\
                 Start it with: sudo tests/stack/stack.sh up",
                stack.dir.display()
            );
        }
        stack
    }

    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("stack.env has no {name}"))
    }

    pub fn port(&self, name: &str) -> u16 {
        self.var(name)
            .parse()
            .unwrap_or_else(|_| panic!("stack.env: {name} is not a port"))
    }

    /// The throw-away CA that signed the stack's server certificate.
    pub fn ca(&self) -> PathBuf {
        PathBuf::from(self.var("STACK_CA"))
    }

    /// The SHA-256 fingerprint of the server certificate, as 32 bytes.
    pub fn server_fingerprint(&self) -> [u8; 32] {
        let hex: String = self
            .var("STACK_SERVER_SHA256")
            .chars()
            .filter(|c| c.is_ascii_hexdigit())
            .collect();
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("fingerprint hex");
        }
        out
    }

    /// Path of the stack control script.
    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stack/stack.sh")
    }
}
