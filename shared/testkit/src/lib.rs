//! Throw-away servers for tests: a real `nats-server -js` and a real Postgres cluster, each on a
//! random loopback port with its data in a temp dir, stopped and deleted when the handle drops
//! (also when the test panics), and killed by the kernel if the test process dies. Tests never
//! touch servers that happen to run on the machine.
//!
//! Postgres clusters are copied from a template made once per machine with `initdb`, which
//! turns a two-second `initdb` per test into a copy of a few milliseconds.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use mainloop_local_servers::{NatsOptions, NatsServer, Postgres, PostgresOptions, init_cluster};
use tempfile::TempDir;

pub mod bench;
mod infra;
pub mod sse;

pub use infra::Infra;

#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error(transparent)]
    Server(#[from] mainloop_local_servers::Error),
    #[error("test kit I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("copying the Postgres template failed: {0}")]
    Copy(String),
    #[error("services not ready: {0}")]
    NotReady(String),
    #[error(transparent)]
    Bus(#[from] mainloop_bus::BusError),
    #[error("the claude CLI is not installed: run `make deps`")]
    NoClaude,
    #[error("git {args}: {stderr}")]
    Git { args: String, stderr: String },
}

/// Runs git in `dir` as a test's author and returns what it printed, trimmed; a failure says
/// which command and git's own words.
pub fn git(dir: &std::path::Path, args: &[&str]) -> Result<String, TestkitError> {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=mainloop test",
            "-c",
            "user.email=test@mainloop.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .output()?;
    if !out.status.success() {
        return Err(TestkitError::Git {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The installed Claude Code CLI, for tests against the real thing: `CLAUDE_BIN`, or `claude`
/// on the PATH.
pub fn claude_cli() -> Result<PathBuf, TestkitError> {
    if let Some(bin) = std::env::var_os("CLAUDE_BIN") {
        return Ok(bin.into());
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("claude"))
                .find(|p| p.is_file())
        })
        .ok_or(TestkitError::NoClaude)
}

/// Test data lives in memory (/dev/shm) when the machine has it: throw-away servers need no
/// durability, and disk syncs right after a big build can stall for seconds.
fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A temp dir another user (postgres, when tests run as root) can traverse.
fn shared_temp_dir(prefix: &str) -> Result<TempDir, TestkitError> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch_root())?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

pub struct TestNats {
    // Field order matters: the server stops before its directory is deleted.
    server: Option<NatsServer>,
    port: u16,
    monitor_port: u16,
    dir: TempDir,
}

impl TestNats {
    pub fn start() -> Result<Self, TestkitError> {
        let dir = shared_temp_dir("mainloop-nats-")?;
        let server = NatsServer::start(&Self::options(dir.path(), 0, 0))?;
        Ok(TestNats {
            port: server.port(),
            monitor_port: server.monitor_port().unwrap_or(0),
            server: Some(server),
            dir,
        })
    }

    fn options(dir: &Path, port: u16, monitor_port: u16) -> NatsOptions {
        NatsOptions {
            data_dir: dir.join("jetstream"),
            log_file: dir.join("nats.log"),
            port,
            monitor_port: Some(monitor_port),
        }
    }

    /// The server's monitoring endpoints (`/jsz`, `/connz`, …), for a stalled test's report.
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// The server's own log.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.server.as_ref().map_or(0, NatsServer::pid)
    }

    /// Kills every process of the server at once, as a container's death would, and starts it
    /// again on the same port and store.
    pub fn crash_and_restart(&mut self) -> Result<(), TestkitError> {
        if let Some(server) = self.server.take() {
            mainloop_local_servers::signal_group(server.pid(), mainloop_local_servers::SIGKILL);
            server.stop();
        }
        self.start_again()
    }

    fn start_again(&mut self) -> Result<(), TestkitError> {
        self.server = Some(NatsServer::start(&Self::options(
            self.dir.path(),
            self.port,
            self.monitor_port,
        ))?);
        Ok(())
    }
}

pub struct TestPostgres {
    // Field order matters: the server stops before its directory is deleted.
    server: Option<Postgres>,
    options: PostgresOptions,
    /// The same across restarts: the same port.
    url: String,
    _dir: TempDir,
}

impl TestPostgres {
    pub fn start() -> Result<Self, TestkitError> {
        let dir = shared_temp_dir("mainloop-pg-")?;
        let data_dir = dir.path().join("data");
        copy_tree(&template()?, &data_dir)?;
        let mut options = PostgresOptions {
            data_dir,
            socket_dir: dir.path().join("run"),
            log_file: dir.path().join("postgres.log"),
            port: 0,
            durable: false,
        };
        let server = Postgres::start(&options)?;
        options.port = server.port();
        Ok(TestPostgres {
            url: server.url(),
            server: Some(server),
            options,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn pid(&self) -> u32 {
        self.server.as_ref().map_or(0, Postgres::pid)
    }

    /// Kills every process of the server at once, as a container's death would, and starts it
    /// again on the same port and data (crash recovery runs). The backends are the postmaster's
    /// children in sessions of their own (`setsid`), so they are killed one by one; the new
    /// server starts once they are gone, as their shared memory is.
    pub fn crash_and_restart(&mut self) -> Result<(), TestkitError> {
        if let Some(server) = self.server.take() {
            let backends = children_of(server.pid());
            mainloop_local_servers::signal_group(server.pid(), mainloop_local_servers::SIGKILL);
            for &backend in &backends {
                mainloop_local_servers::signal_process(backend, mainloop_local_servers::SIGKILL);
            }
            server.stop();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while backends.iter().any(|&pid| alive(pid)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        self.server = Some(Postgres::start(&self.options)?);
        Ok(())
    }
}

/// The processes whose parent is `pid` (from `/proc`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| stat_of(child).is_some_and(|(_, parent)| parent == pid))
        .collect()
}

/// Whether `pid` still runs (a zombie has let go of everything but its entry).
fn alive(pid: u32) -> bool {
    stat_of(pid).is_some_and(|(state, _)| state != 'Z')
}

/// A process's state and parent, from `/proc/<pid>/stat` (after the name in parentheses).
fn stat_of(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut after_name = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = after_name.next()?.chars().next()?;
    let parent = after_name.next()?.parse().ok()?;
    Some((state, parent))
}

/// The machine-wide template cluster, made on first use. Concurrent test processes may both
/// build one; each builds in its own directory and the first rename wins.
fn template() -> Result<PathBuf, TestkitError> {
    let root = std::env::temp_dir().join("mainloop-testkit");
    let template = root.join("pg15-template-v1");
    if template.join("PG_VERSION").is_file() {
        return Ok(template);
    }
    std::fs::create_dir_all(&root)?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
    let building = root.join(format!("building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    init_cluster(
        &building,
        &root.join(format!("initdb-{}.log", std::process::id())),
        false,
    )?;
    if std::fs::rename(&building, &template).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    Ok(template)
}

/// `cp -a` keeps owner and mode (Postgres insists its data dir is private to its user).
fn copy_tree(from: &Path, to: &Path) -> Result<(), TestkitError> {
    let output = Command::new("cp").arg("-a").arg(from).arg(to).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(TestkitError::Copy(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }
}
