//! The fetchmailrc AST lowered into the account model: the settings of one user description
//! that the native TOML account holds in the same types, so that a poll reads them from one
//! place whichever file described it.

use super::ast::UserOptions;
use crate::account::FetchTuning;

/// The limits and pacing of a user description, with fetchmail's meaning of zero (no limit for
/// `limit`, `fetchlimit` and `idletimeout`; never reconnect for `batchlimit`).
pub fn tuning(o: &UserOptions) -> FetchTuning {
    let count = |v: &Option<super::Located<u64>>| v.as_ref().map(|v| v.value);
    let flag = |v: &Option<super::Located<bool>>| v.as_ref().is_some_and(|v| v.value);
    FetchTuning {
        limit: count(&o.limit).filter(|&v| v > 0),
        fetchlimit: count(&o.fetchlimit).filter(|&v| v > 0),
        batchlimit: count(&o.batchlimit).unwrap_or(0),
        limitflush: flag(&o.limitflush),
        flush: flag(&o.flush),
        expunge: count(&o.expunge),
        idle_timeout: count(&o.idletimeout).filter(|&v| v > 0),
        force_idle: flag(&o.forceidle),
    }
}
