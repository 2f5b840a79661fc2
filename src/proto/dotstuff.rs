//! (being written) dotstuff
