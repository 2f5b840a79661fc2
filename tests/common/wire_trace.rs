//! Captures the protocol trace (the `postie::log::WIRE` target) in a test process, so tests can
//! check what `-v -v` would show.

use std::sync::Mutex;

/// The wire trace lines logged so far, by every test of the binary.
pub struct WireTrace(Mutex<Vec<String>>);

static TRACE: WireTrace = WireTrace(Mutex::new(Vec::new()));

impl log::Log for WireTrace {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target() == postie::log::WIRE
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata())
            && let Ok(mut lines) = self.0.lock()
        {
            lines.push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

impl WireTrace {
    /// Installs the capture as the process's logger (once; later calls find it there).
    pub fn install() -> &'static WireTrace {
        let _ = log::set_logger(&TRACE);
        log::set_max_level(log::LevelFilter::Trace);
        &TRACE
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("trace lock").clone()
    }

    pub fn clear(&self) {
        self.0.lock().expect("trace lock").clear();
    }
}
