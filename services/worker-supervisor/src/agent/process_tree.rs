//! Every process an agent started, found again when the agent must stop. The CLI's Bash tool
//! runs commands in sessions of their own, so killing the CLI's process group leaves a test
//! suite or dev server running in the task's clone. Each agent run is started with a marker in its
//! environment, which every process it starts inherits (a `setsid`, `nohup` or double fork does
//! not drop it); the stop sweeps `/proc` for the marker, and for descendants of the agent while
//! it is still our unreaped child, and kills what it finds. A pid is only signalled if it still
//! names the process that was found (same start time), so a recycled pid is never hit.

use std::collections::HashMap;

use mainloop_local_servers::{SIGKILL, signal_process};

/// The variable that marks an agent run's processes.
pub const MARKER: &str = "MAINLOOP_AGENT_RUN";

/// One process, named by its pid and its start time (pids are recycled; the pair is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Process {
    pub pid: u32,
    started: u64,
}

/// Processes carrying `MARKER=<run>` in their environment, and descendants of `root` (the
/// agent's pid, only while it is not yet reaped; 0 for none). Never this process, never init.
pub fn find(run: &str, root: u32) -> Vec<Process> {
    let wanted = format!("{MARKER}={run}");
    let own = std::process::id();
    let mut parents: HashMap<u32, u32> = HashMap::new();
    let mut found: HashMap<u32, u64> = HashMap::new();
    let mut starts: HashMap<u32, u64> = HashMap::new();
    for pid in all_pids().into_iter().filter(|pid| *pid > 1 && *pid != own) {
        let Some((parent, started)) = stat(pid) else {
            continue;
        };
        parents.insert(pid, parent);
        starts.insert(pid, started);
        let marked = std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()));
        if marked {
            found.insert(pid, started);
        }
    }
    // Pid 0 and 1 have every process below them.
    let mut frontier = if root > 1 { vec![root] } else { Vec::new() };
    while let Some(parent) = frontier.pop() {
        for (child, _) in parents.iter().filter(|(_, p)| **p == parent) {
            if let Some(started) = starts.get(child)
                && found.insert(*child, *started).is_none()
            {
                frontier.push(*child);
            }
        }
    }
    found.remove(&root);
    let mut processes: Vec<Process> = found
        .into_iter()
        .map(|(pid, started)| Process { pid, started })
        .collect();
    processes.sort_unstable();
    processes
}

/// SIGKILL to each process that is still the one that was found.
pub fn kill(processes: &[Process]) {
    for process in processes {
        if stat(process.pid).is_some_and(|(_, started)| started == process.started) {
            signal_process(process.pid, SIGKILL);
        }
    }
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Parent pid and start time (clock ticks since boot) from `/proc/<pid>/stat`; the fields
/// after the parenthesised name are state, ppid, … with starttime the 20th of them.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn no_marker_and_no_root_finds_nothing() {
        assert_eq!(super::find("no-such-run", 0), Vec::new());
        assert_eq!(
            super::find("no-such-run", 1),
            Vec::new(),
            "init's children are not ours"
        );
    }

    #[test]
    fn a_marked_process_in_its_own_session_is_found_and_killed() {
        let run = format!("test-{}", std::process::id());
        let mut child = Command::new("setsid")
            .args(["sleep", "300"])
            .env(super::MARKER, &run)
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !super::find(&run, 0).iter().any(|p| p.pid == pid) {
            assert!(Instant::now() < deadline, "the marked process was not found");
            std::thread::sleep(Duration::from_millis(20));
        }
        super::kill(&super::find(&run, 0));
        let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
        assert!(!status.success(), "killed, not finished");
        assert!(super::find(&run, 0).is_empty());
    }

    #[test]
    fn a_process_that_is_gone_is_not_signalled_again() {
        let mut child = Command::new("true").spawn().unwrap_or_else(|e| panic!("{e}"));
        let pid = child.id();
        let _ = child.wait();
        // A stale record (another start time) must not hit whatever has the pid now.
        super::kill(&[super::Process { pid, started: 0 }]);
        super::kill(&[super::Process {
            pid: std::process::id(),
            started: 1,
        }]);
    }
}
