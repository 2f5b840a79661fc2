//! Command lines of both binaries: argument parsing, dispatch, and the mapping of results to exit codes.

pub mod daemonize;
pub mod manpage;
pub mod postie;
pub mod rfetch;
pub mod rfetch_args;
pub mod rsend;
pub mod rsend_args;
