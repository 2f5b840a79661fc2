//! (being written) native TOML reader
