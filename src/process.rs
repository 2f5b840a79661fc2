//! Process ids that come from files (lock files, mbox dotlocks) turned into ones safe to
//! signal, and the processes a command started below itself (found in /proc) killed with it.

use rustix::process::{Pid, Signal};

/// `raw` as the id of one process, or None. 0 and negative numbers are refused here, before
/// rustix sees them: to kill(2) they name process groups (-1: every process the user may
/// signal), and `Pid::from_raw` asserts on a negative number in debug builds and accepts it in
/// release builds. A number read from a file someone else may have written must pass here.
pub fn single_process(raw: i32) -> Option<Pid> {
    if raw > 0 { Pid::from_raw(raw) } else { None }
}

/// Bound on the processes collected below a command.
const MAX_DESCENDANTS: usize = 64;

/// The processes below `pid` (children, their children, ...), from /proc's `children` lists;
/// at most `MAX_DESCENDANTS`, none when /proc cannot say.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                if found.len() >= MAX_DESCENDANTS || found.contains(&c) {
                    continue;
                }
                found.push(c);
                queue.push(c);
            }
        }
    }
    found
}

/// Sends `signal` to one pid found in /proc (always positive there; [`single_process`] is the
/// one rule for every pid postie signals).
pub fn signal_pid(pid: u32, signal: Signal) {
    if let Some(p) = i32::try_from(pid).ok().and_then(single_process) {
        let _ = rustix::process::kill_process(p, signal);
    }
}

/// Kills `child` and every process below it, then reaps `child`. For a command that was not
/// given its own process group (it may need the terminal), so the group cannot be killed: the
/// tree is frozen with SIGSTOP from the top (a stopped process forks nothing more), listed
/// again until no new process appears, then killed. Killing only the child would leave its
/// background processes running, re-parented and out of reach.
pub fn kill_tree_and_reap(child: &mut std::process::Child) {
    if let Ok(None) = child.try_wait() {
        // Ours and not yet reaped: the pid cannot have been reused.
        let top = child.id();
        signal_pid(top, Signal::STOP);
        let mut frozen: Vec<u32> = Vec::new();
        // A process listed but not yet stopped may fork once more: a few rounds catch those.
        for _ in 0..4 {
            let fresh: Vec<u32> = descendants(top)
                .into_iter()
                .filter(|p| !frozen.contains(p))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for &p in &fresh {
                signal_pid(p, Signal::STOP);
            }
            frozen.extend(fresh);
        }
        for &p in &frozen {
            signal_pid(p, Signal::KILL);
        }
        let _ = child.kill();
    }
    let _ = child.wait();
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
