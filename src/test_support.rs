//! Helpers the unit tests share: a bound on work that might block, and planting a FIFO.

use std::path::Path;
use std::time::Duration;

/// Runs `work` on a thread and fails the test if it has not returned within 10 s: what the
/// planted-file tests guard against is an open or a read that never returns (the blocked
/// thread is left behind; the test process ends soon after).
pub fn within<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what}: still blocked after 10 s"))
}

/// Makes a FIFO (mode 0600) at `path`.
pub fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
}
