//! Logger setup for the binaries (stderr, logfile, syslog) and redaction of secrets in traces.
