//! The rsend command line (msmtp options and sendmail flags) and its dispatch.

/// Runs rsend with the process arguments; returns the exit code.
pub fn main() -> i32 {
    eprintln!("rsend: not built yet");
    70
}
