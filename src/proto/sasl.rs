//! (being written) sasl
