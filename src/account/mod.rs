//! The shared account model used by both directions: servers, TLS, credentials and secrets,
//! submission and fetch settings, each value remembering where it was set.
