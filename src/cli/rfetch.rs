//! The rfetch command line (fetchmail options) and its dispatch.

/// Runs rfetch with the process arguments; returns the exit code.
pub fn main() -> i32 {
    eprintln!("rfetch: not built yet");
    11
}
