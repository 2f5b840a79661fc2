//! (being written) line
