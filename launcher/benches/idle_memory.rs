//! Resident memory of `mainloop up` when idle: the six services in one process, beside the
//! nats-server and Postgres it started. Goal: the services together under 60 MB.
//! `IDLE_SECONDS` (default 5) is how long it idles before the reading.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A `Name:   123 kB` line of a /proc file, in KiB.
fn proc_kib(pid: u32, file: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    proc_kib(pid, "status", "VmRSS:")
}

/// Proportional set size: shared pages split among the processes sharing them, so Postgres's
/// shared buffers are not counted once per backend.
fn pss_kib(pid: u32) -> u64 {
    proc_kib(pid, "smaps_rollup", "Pss:")
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// (pid, command name) of every process whose parent is `parent`, recursively.
fn descendants(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some(close) = stat.rfind(')') else { continue };
        let ppid = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            let name = std::fs::read_to_string(entry.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            found.push((pid, name));
            found.extend(descendants(pid));
        }
    }
    found
}

/// Stops `mainloop up` however the bench ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let idle: u64 = std::env::var("IDLE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::Builder::new().prefix("mainloop-idle-").tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let up = Command::new(env!("CARGO_BIN_EXE_mainloop"))
        .args(["up", "--http-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join(".mainloop"))
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let up = Running(up);
    let started = Instant::now();
    while !healthy(port) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "not healthy in 60s");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(idle));

    let services = rss_kib(up.0.id());
    let children = descendants(up.0.id());
    let sum = |name: &str| -> u64 {
        children
            .iter()
            .filter(|(_, n)| n == name)
            .map(|(pid, _)| pss_kib(*pid))
            .sum()
    };
    let (nats, postgres) = (sum("nats-server"), sum("postgres"));
    println!("idle memory after {idle}s:");
    println!(
        "  mainloop up, six services: {:>6.1} MB RSS (goal < 60 MB)",
        services as f64 / 1024.0
    );
    println!(
        "  nats-server:               {:>6.1} MB PSS",
        nats as f64 / 1024.0
    );
    println!(
        "  postgres, all processes:   {:>6.1} MB PSS",
        postgres as f64 / 1024.0
    );
    Ok(())
}
