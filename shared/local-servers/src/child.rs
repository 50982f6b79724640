//! A server child process that cannot outlive us.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::error::log_tail;

/// Unix user and group a child runs as (Postgres refuses to run as root).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// `None` unless we are root, in which case the `postgres` system user from /etc/passwd.
    pub fn postgres_if_root() -> Result<Option<RunAs>, Error> {
        if !is_root() {
            return Ok(None);
        }
        let passwd = std::fs::read_to_string("/etc/passwd").map_err(Error::Io)?;
        passwd
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                match fields.as_slice() {
                    ["postgres", _, uid, gid, ..] => Some(RunAs {
                        uid: uid.parse().ok()?,
                        gid: gid.parse().ok()?,
                    }),
                    _ => None,
                }
            })
            .map(Some)
            .ok_or(Error::NoPostgresUser)
    }

    pub fn chown(&self, path: &Path) -> Result<(), Error> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).map_err(Error::Io)
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // The owner of a file we just created is our effective uid; this avoids an unsafe geteuid().
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

pub(crate) fn command(program: &Path, run_as: Option<RunAs>, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd).stdin(Stdio::null());
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

/// Runs a setup command (initdb, createdb) to completion, its output going to `log`.
pub(crate) fn run_to_end(mut cmd: Command, log: &Path) -> Result<(), Error> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = redirect(&mut cmd, log)?.status().map_err(|source| Error::Spawn {
        program: program.clone(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed {
            program,
            status: status.to_string(),
            log: log.to_path_buf(),
            tail: log_tail(log),
        })
    }
}

fn redirect<'a>(cmd: &'a mut Command, log: &Path) -> Result<&'a mut Command, Error> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::Io)?;
    let err = out.try_clone().map_err(Error::Io)?;
    Ok(cmd.stdout(out).stderr(err))
}

pub(crate) struct ServerProcess {
    child: Option<Child>,
    pub log: PathBuf,
    /// Sent first on stop and drop; the server's own clean-shutdown signal.
    stop_signal: i32,
}

impl ServerProcess {
    /// Starts a long-running server. It gets its own process group, so a Ctrl-C in the terminal
    /// reaches only us and we stop servers in order; and a parent-death signal, so it dies with
    /// the thread that started it even when we are killed with SIGKILL.
    pub fn spawn(mut cmd: Command, log: PathBuf, stop_signal: i32) -> Result<Self, Error> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.process_group(0);
        set_parent_death_signal(&mut cmd, stop_signal);
        let child = redirect(&mut cmd, &log)?
            .spawn()
            .map_err(|source| Error::Spawn { program, source })?;
        Ok(ServerProcess {
            child: Some(child),
            log,
            stop_signal,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `Some(status)` if the process has already exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Sends the clean-shutdown signal and waits; kills after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), self.stop_signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(pid = child.id(), "server did not stop in time; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Has the child sent `signal` when the thread that starts it ends (Linux's parent-death
/// signal: it follows the forking thread, not the process), so a child started by a thread that
/// lives as long as the caller does not outlive a caller killed with SIGKILL.
#[allow(unsafe_code)]
pub fn set_parent_death_signal(cmd: &mut Command, signal: i32) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours; it runs in the child
    // between fork and exec, after std has switched uid/gid (a credential change would clear it).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal` to every process in the process group led by `pid` (a child started with
/// `process_group(0)`), so a shell command the child started dies with it.
#[allow(unsafe_code)]
pub fn signal_group(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory effects; a negative pid names the child's own group.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// Sends `signal` to one process we may not have started ourselves (an agent's leftover): a pid
/// that was recycled in between gets it too, so callers find pids right before they signal.
#[allow(unsafe_code)]
pub fn signal_process(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid)
        && pid > 1
    {
        // SAFETY: kill(2) has no memory effects.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

#[allow(unsafe_code)]
fn signal(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child, so it cannot
        // have been recycled for another process.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// A server of ours that was orphaned (we were killed) may still be shutting down on the same
/// data when we start again: wait for the pid in `pid_file` to be gone (up to `limit`).
pub(crate) fn wait_for_previous(pid_file: &Path, limit: Duration) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
    else {
        return;
    };
    let deadline = Instant::now() + limit;
    let alive =
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "));
    if alive() {
        tracing::info!(pid, "a previous server is still stopping; waiting for it");
    }
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    use super::set_parent_death_signal;

    #[test]
    fn a_child_dies_with_the_thread_that_started_it() -> Result<(), Box<dyn std::error::Error>> {
        let started = std::thread::spawn(|| {
            let mut sleep = Command::new("sleep");
            sleep.arg("60");
            set_parent_death_signal(&mut sleep, libc::SIGKILL);
            sleep.spawn()
        })
        .join()
        .map_err(|_| "the starting thread panicked")??;
        let mut child = started;
        // The thread has ended: the child was killed, long before its 60 s.
        let status = child.wait()?;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        Ok(())
    }
}
