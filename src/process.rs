//! Process ids that come from files (lock files, mbox dotlocks) turned into ones safe to signal.

use rustix::process::Pid;

/// `raw` as the id of one process, or None. 0 and negative numbers are refused here, before
/// rustix sees them: to kill(2) they name process groups (-1: every process the user may
/// signal), and `Pid::from_raw` asserts on a negative number in debug builds and accepts it in
/// release builds. A number read from a file someone else may have written must pass here.
pub fn single_process(raw: i32) -> Option<Pid> {
    if raw > 0 { Pid::from_raw(raw) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_numbers_name_a_process() {
        assert_eq!(
            single_process(4242).map(Pid::as_raw_nonzero),
            Pid::from_raw(4242).map(Pid::as_raw_nonzero)
        );
        for group in [0, -1, -4242, i32::MIN] {
            assert!(single_process(group).is_none(), "{group}");
        }
    }
}
