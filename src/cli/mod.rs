//! Command lines of both binaries: argument parsing, dispatch, and the mapping of results to exit codes.

pub mod build_info;
pub mod completions;
pub mod daemonize;
pub mod manpage;
pub mod postie;
pub mod rfetch;
pub mod rfetch_args;
pub mod rsend;
pub mod rsend_args;

/// Writes what an informational option (--version, -V, --completions) prints. A reader that
/// went away early (`rsend --version | head -1`) is not an error; println! would panic there.
pub(crate) fn write_stdout(bytes: &[u8]) -> crate::error::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(crate::error::Error::new(
            crate::error::ErrorKind::LocalIo,
            format!("writing to standard output: {e}"),
        )),
        _ => Ok(()),
    }
}
