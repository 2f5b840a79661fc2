//! (being written) per-message seen state
