//! The only error-to-exit-code tables: rsend uses sysexits.h, rfetch uses fetchmail's codes.
