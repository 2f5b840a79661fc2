//! (being written) smtp
