//! (being written) smtp session
