//! Every process an agent started, found again when the agent must stop. The CLI's Bash tool
//! runs commands in sessions of their own, so killing the CLI's process group leaves a test
//! suite or dev server running in the worktree. Each agent run is started with a marker in its
//! environment, which every process it starts inherits (a `setsid`, `nohup` or double fork does
//! not drop it); the stop sweeps `/proc` for the marker, and for descendants by parent pid as a
//! second net, and kills what it finds.

use std::collections::{HashMap, HashSet};

use mainloop_local_servers::{SIGKILL, signal_process};

/// The variable that marks an agent run's processes.
pub const MARKER: &str = "MAINLOOP_AGENT_RUN";

/// Processes carrying `MARKER=<run>` in their environment, or descending from `root` (the
/// agent's pid; 0 for none). Never this process, never init.
pub fn find(run: &str, root: u32) -> Vec<u32> {
    let wanted = format!("{MARKER}={run}");
    let mut parents: HashMap<u32, u32> = HashMap::new();
    let mut found: HashSet<u32> = HashSet::new();
    let own = std::process::id();
    for pid in all_pids() {
        if pid == own || pid <= 1 {
            continue;
        }
        if let Some(parent) = parent_of(pid) {
            parents.insert(pid, parent);
        }
        let marked = std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()));
        if marked {
            found.insert(pid);
        }
    }
    // Descendants of the agent by parent pid (a process that cleared its environment). Pid 0
    // is the kernel's: every process descends from it.
    let mut frontier = if root > 1 { vec![root] } else { Vec::new() };
    while let Some(parent) = frontier.pop() {
        for (child, _) in parents.iter().filter(|(_, p)| **p == parent) {
            if found.insert(*child) {
                frontier.push(*child);
            }
        }
    }
    found.remove(&root);
    found.remove(&own);
    let mut pids: Vec<u32> = found.into_iter().collect();
    pids.sort_unstable();
    pids
}

/// SIGKILL to each of `pids`.
pub fn kill(pids: &[u32]) {
    for pid in pids {
        signal_process(*pid, SIGKILL);
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

/// The parent pid from `/proc/<pid>/stat` (the field after the parenthesised name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn no_marker_and_no_root_finds_nothing() {
        assert_eq!(super::find("no-such-run", 0), Vec::<u32>::new());
        assert_eq!(
            super::find("no-such-run", 1),
            Vec::<u32>::new(),
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
        while !super::find(&run, 0).contains(&pid) {
            assert!(Instant::now() < deadline, "the marked process was not found");
            std::thread::sleep(Duration::from_millis(20));
        }
        super::kill(&super::find(&run, 0));
        let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
        assert!(!status.success(), "killed, not finished");
        assert!(super::find(&run, 0).is_empty());
    }
}
