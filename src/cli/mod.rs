//! Command lines of both binaries: argument parsing, dispatch, and the mapping of results to exit codes.

pub mod build_info;
pub mod completions;
pub mod daemonize;
pub mod manpage;
pub mod rfetch;
pub mod rfetch_args;
pub mod rsend;
pub mod rsend_args;
