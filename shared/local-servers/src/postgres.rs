use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::child::{RunAs, ServerProcess, command, run_to_end};
use crate::error::log_tail;
use crate::{Error, find_postgres_bin_dir, free_port};

/// The superuser `initdb` creates; local clusters trust loopback connections, so no password.
pub const SUPERUSER: &str = "mainloop";
/// The database mainloop uses inside a local cluster.
pub const DATABASE: &str = "mainloop";

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The cluster; created with initdb when empty, reused when it already holds one.
    pub data_dir: PathBuf,
    /// Unix socket and lock files.
    pub socket_dir: PathBuf,
    pub log_file: PathBuf,
    /// 0 picks a free port.
    pub port: u16,
    /// false trades safety against the machine's crash for speed (fsync off; the server's own
    /// crash still loses nothing committed): right for throw-away test clusters only.
    pub durable: bool,
}

/// A running Postgres on 127.0.0.1, run as the `postgres` user when we are root.
pub struct Postgres {
    process: ServerProcess,
    port: u16,
}

/// Creates a cluster in an empty `data_dir` (which is made if missing).
pub fn init_cluster(data_dir: &Path, log_file: &Path, durable: bool) -> Result<(), Error> {
    let bin = find_postgres_bin_dir()?;
    let run_as = RunAs::postgres_if_root()?;
    std::fs::create_dir_all(data_dir).map_err(Error::Io)?;
    if let Some(user) = run_as {
        user.chown(data_dir)?;
    }
    let cwd = data_dir.parent().unwrap_or(data_dir);
    let mut cmd = command(&bin.join("initdb"), run_as, cwd);
    cmd.arg("-D").arg(data_dir).args([
        "-U",
        SUPERUSER,
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-locale",
        "--no-instructions",
    ]);
    if !durable {
        cmd.arg("--no-sync");
    }
    run_to_end(cmd, log_file)
}

impl Postgres {
    pub fn start(options: &PostgresOptions) -> Result<Self, Error> {
        let bin = find_postgres_bin_dir()?;
        let run_as = RunAs::postgres_if_root()?;
        if !options.data_dir.join("PG_VERSION").is_file() {
            init_cluster(&options.data_dir, &options.log_file, options.durable)?;
        }
        crate::child::wait_for_previous(&options.data_dir.join("postmaster.pid"), Duration::from_secs(60));
        std::fs::create_dir_all(&options.socket_dir).map_err(Error::Io)?;
        if let Some(user) = run_as {
            user.chown(&options.socket_dir)?;
        }
        let port = if options.port == 0 {
            free_port()?
        } else {
            options.port
        };
        let mut cmd = command(&bin.join("postgres"), run_as, &options.data_dir);
        cmd.arg("-D")
            .arg(&options.data_dir)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&options.socket_dir);
        // Without fsync a machine's crash can lose data, a server's crash cannot: what was written
        // is in the kernel. Commits stay synchronous, so a killed server (the chaos suite kills
        // them) loses no transaction it said was committed, as a real one would not.
        if !options.durable {
            cmd.args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        }
        // SIGINT is Postgres's "fast" shutdown: it rolls back open transactions and stops cleanly.
        let process = ServerProcess::spawn(cmd, options.log_file.clone(), libc::SIGINT)?;
        let mut server = Postgres { process, port };
        server.wait_until_ready(&bin, Duration::from_secs(60))?;
        server.create_database(&bin, run_as, &options.log_file)?;
        tracing::info!(pid = server.pid(), port, "postgres started");
        Ok(server)
    }

    fn wait_until_ready(&mut self, bin: &Path, limit: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.process.exited() {
                return Err(Error::Failed {
                    program: "postgres".into(),
                    status,
                    log: self.process.log.clone(),
                    tail: log_tail(&self.process.log),
                });
            }
            let ready = Command::new(bin.join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    SUPERUSER,
                    "-d",
                    "postgres",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::NotReady {
            program: "postgres",
            seconds: limit.as_secs(),
            log: self.process.log.clone(),
            tail: log_tail(&self.process.log),
        })
    }

    /// Creates the `mainloop` database unless it exists (a restart, or a copied template).
    fn create_database(&self, bin: &Path, run_as: Option<RunAs>, log: &Path) -> Result<(), Error> {
        let exists = Command::new(bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-tAc",
            ])
            .arg(format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"))
            .output()
            .map_err(|source| Error::Spawn {
                program: "psql".into(),
                source,
            })?;
        if String::from_utf8_lossy(&exists.stdout).trim() == "1" {
            return Ok(());
        }
        // Run as `postgres`, which may not be allowed into the directory of our log.
        let mut cmd = command(&bin.join("createdb"), run_as, Path::new("/"));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            DATABASE,
        ]);
        run_to_end(cmd, log)
    }

    /// `postgres://mainloop@127.0.0.1:<port>/mainloop`
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `Some(status)` once the server has exited (died, or was killed).
    pub fn exited(&mut self) -> Option<String> {
        self.process.exited()
    }

    /// A fast shutdown: open transactions roll back, data is flushed.
    pub fn stop(mut self) {
        self.process.stop(Duration::from_secs(15));
    }
}
