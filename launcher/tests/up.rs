//! `mainloop up` as a person runs it: the real binary, real child servers, a real signal.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{alive, child_named, command_name, descendants};

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

struct Up {
    child: Child,
    port: u16,
    stdout: mpsc::Receiver<String>,
}

impl Up {
    fn start(data_dir: &Path) -> anyhow::Result<Up> {
        Self::start_with(data_dir, &[], &[])
    }

    fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Up> {
        let port = free_port()?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_mainloop"))
            .args(["up", "--http-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("NATS_URL")
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()?;
        let (lines, stdout) = mpsc::channel();
        let out = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        Ok(Up { child, port, stdout })
    }

    fn wait_healthy(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        while http_status(self.port, "/health") != Some(200) {
            anyhow::ensure!(self.child.try_wait()?.is_none(), "mainloop up exited early");
            anyhow::ensure!(started.elapsed() < limit, "/health not 200 within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(started.elapsed())
    }

    /// Waits up to five seconds for a printed line containing `needle`.
    fn wait_printed(&self, needle: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        anyhow::bail!("{needle:?} was not printed")
    }

    fn printed(&self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }

    fn interrupt_and_wait(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill failed");
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "mainloop up exited with {status}");
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "mainloop up did not stop after SIGINT");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn data_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("mainloop-up-").tempdir()?;
    // Postgres runs as its own user when we are root and must reach its data dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

#[test]
fn up_starts_both_servers_answers_health_and_leaves_no_process_behind() -> anyhow::Result<()> {
    let dir = data_dir()?;
    let mut up = Up::start(&dir.path().join(".mainloop"))?;
    let took = up.wait_healthy(Duration::from_secs(30))?;
    eprintln!("/health answered 200 after {took:?}");

    let started = descendants(up.child.id());
    let names: Vec<String> = started.iter().map(|pid| command_name(*pid)).collect();
    assert!(
        names.iter().any(|n| n == "nats-server"),
        "no nats-server among {names:?}"
    );
    assert!(
        names.iter().any(|n| n == "postgres"),
        "no postgres among {names:?}"
    );
    assert_eq!(http_status(up.port, "/healthz"), Some(200));
    // It says where the metrics are (before it says it runs), and they are there.
    up.wait_printed(&format!(
        "Metrics (Prometheus): http://127.0.0.1:{}/metrics",
        up.port
    ))?;
    up.wait_printed(&format!("open http://127.0.0.1:{}", up.port))?;
    assert_eq!(http_status(up.port, "/metrics"), Some(200));

    up.interrupt_and_wait()?;
    let left: Vec<(u32, String)> = started
        .iter()
        .filter(|pid| alive(**pid))
        .map(|pid| (*pid, command_name(*pid)))
        .collect();
    assert!(left.is_empty(), "still running after Ctrl-C: {left:?}");
    Ok(())
}

fn printed_value(lines: &[String], prefix: &str) -> anyhow::Result<String> {
    lines
        .iter()
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with(prefix))
                .map(str::to_string)
        })
        .ok_or_else(|| anyhow::anyhow!("nothing starting with {prefix} was printed: {lines:?}"))
}

fn postgres_url(lines: &[String]) -> anyhow::Result<String> {
    let line = lines
        .iter()
        .find(|l| l.starts_with("Postgres:"))
        .ok_or_else(|| anyhow::anyhow!("no Postgres line in {lines:?}"))?;
    let port = line
        .split("port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| anyhow::anyhow!("no port in {line}"))?;
    Ok(format!("postgres://mainloop@127.0.0.1:{port}/mainloop"))
}

fn tail_chat(nats_url: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let output = Command::new(env!("CARGO_BIN_EXE_mainloop"))
        .args([
            "events",
            "tail",
            "--once",
            "--subject",
            "chat.>",
            "--nats-url",
            nats_url,
        ])
        .env("RUST_LOG", "warn")
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

#[test]
fn up_keeps_events_and_rows_across_restarts() -> anyhow::Result<()> {
    use mainloop_events::{Envelope, Payload, subjects, v1::UserMessagePosted};
    let runtime = tokio::runtime::Runtime::new()?;
    let dir = data_dir()?;
    let data = dir.path().join(".mainloop");

    let mut first = Up::start(&data)?;
    first.wait_healthy(Duration::from_secs(30))?;
    let printed = first.printed();
    let nats_url = printed_value(&printed, "nats://")?;
    assert!(
        tail_chat(&nats_url)?.is_empty(),
        "a new store holds no task events"
    );
    // A chat message: stored, and nothing in the services reacts to it yet.
    let event = Envelope::new(
        "u1",
        "c1",
        Payload::UserMessagePosted(UserMessagePosted {
            message_id: "m1".into(),
            content: "hello".into(),
        }),
    );
    let pg_url = postgres_url(&printed)?;
    runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let bus = mainloop_bus::Bus::connect(&nats_url, "test", Duration::from_secs(5), &shutdown).await?;
        bus.publish(&subjects::chat("u1", "c1")?, &event, mainloop_bus::Expect::Any)
            .await?;
        let pool = sqlx::PgPool::connect(&pg_url).await?;
        sqlx::query("CREATE TABLE public.kept (note TEXT)")
            .execute(&pool)
            .await?;
        sqlx::query("INSERT INTO public.kept VALUES ('still here')")
            .execute(&pool)
            .await?;
        pool.close().await;
        anyhow::Ok(())
    })?;
    first.interrupt_and_wait()?;

    let mut second = Up::start(&data)?;
    second.wait_healthy(Duration::from_secs(30))?;
    let printed = second.printed();
    let events = tail_chat(&printed_value(&printed, "nats://")?)?;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"]["id"], event.id.as_str());
    assert_eq!(events[0]["event"]["type"], "UserMessagePosted");
    assert_eq!(events[0]["subject"], "chat.u1.c1");
    let note: String = runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&postgres_url(&printed)?).await?;
        anyhow::Ok(
            sqlx::query_scalar("SELECT note FROM public.kept")
                .fetch_one(&pool)
                .await?,
        )
    })?;
    assert_eq!(note, "still here");
    second.interrupt_and_wait()?;
    Ok(())
}

#[test]
fn up_says_what_to_install_when_nats_server_is_missing() -> anyhow::Result<()> {
    let dir = data_dir()?;
    let output = Command::new(env!("CARGO_BIN_EXE_mainloop"))
        .args(["up", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join(".mainloop"))
        .env("PATH", dir.path())
        .env_remove("NATS_SERVER_BIN")
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nats-server is not installed"), "{stderr}");
    assert!(
        stderr.contains("make deps") && stderr.contains("nats-server-bin"),
        "{stderr}"
    );
    assert!(
        descendants(std::process::id()).is_empty(),
        "nothing may be left running"
    );
    Ok(())
}

/// A port somebody else holds is said at once, before any server is started (`up` takes its
/// port first, so nothing it starts afterwards can take it either).
#[test]
fn up_says_at_once_when_its_port_is_taken() -> anyhow::Result<()> {
    let dir = data_dir()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_mainloop"))
        .args(["up", "--http-addr", &addr, "--data-dir"])
        .arg(dir.path().join(".mainloop"))
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
    assert!(stderr.contains("Address already in use"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("NATS:"), "no server was started: {stdout}");
    assert!(
        descendants(std::process::id()).is_empty(),
        "nothing may be left running"
    );
    Ok(())
}

/// A fresh VM's checkout lives under `/root` (mode 0700), which the `postgres` user cannot
/// enter: as root, the cluster goes to /var/lib/mainloop and a link at the usual place says so.
#[test]
fn up_runs_from_a_checkout_under_a_private_home() -> anyhow::Result<()> {
    let home = tempfile::Builder::new().prefix("mainloop-home-").tempdir()?;
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700))?;
    let data_dir = home.path().join("project").join(".mainloop");
    let _cleanup = OutsideData(data_dir.join("postgres"));
    let mut up = Up::start(&data_dir)?;
    up.wait_healthy(Duration::from_secs(60))?;
    let pg_data = data_dir.join("postgres");
    let outside = std::fs::read_link(&pg_data).ok();
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)?;
    if root {
        let outside = outside
            .ok_or_else(|| anyhow::anyhow!("as root the cluster must be moved out of the 0700 home"))?;
        assert!(outside.starts_with("/var/lib/mainloop"), "{outside:?}");
        assert!(
            outside.join("PG_VERSION").is_file(),
            "the cluster lives at {outside:?}"
        );
    } else {
        assert!(outside.is_none() && pg_data.join("PG_VERSION").is_file());
    }
    up.interrupt_and_wait()?;
    Ok(())
}

/// Removes what a run placed under /var/lib/mainloop for a data dir (found by the link at the
/// path it holds), whether the test passed or not.
struct OutsideData(std::path::PathBuf);

impl Drop for OutsideData {
    fn drop(&mut self) {
        if let Some(parent) = std::fs::read_link(&self.0)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            && parent.starts_with("/var/lib/mainloop")
        {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

/// `up` checks each credential for real before it starts: a GitHub token GitHub refuses is
/// named, a good model key and the agent CLI's version and login are reported.
#[test]
fn up_checks_each_credential_for_real() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let dir = data_dir()?;
    let github = mainloop_fakes::github::FakeGitHub::new(dir.path().join("github"), "the-right-token");
    let github_url = runtime.block_on(async {
        github
            .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
            .await
    })?;
    let up = Up::start_with(
        &dir.path().join(".mainloop"),
        &["--fake", "claude,llm", "--github-api-url", &github_url],
        &[("GITHUB_TOKEN", "a-wrong-token")],
    )?;
    let github_line = up.wait_printed("GitHub:")?;
    assert!(
        github_line.contains("REFUSED") && github_line.contains("401"),
        "{github_line}"
    );
    let chat_line = up.wait_printed("Chat LLM:")?;
    assert!(chat_line.contains("key accepted"), "{chat_line}");
    let agent_line = up.wait_printed("Agent:")?;
    assert!(
        agent_line.contains("2.1.197 (Claude Code)") && agent_line.contains("logs in with ANTHROPIC_API_KEY"),
        "{agent_line}"
    );
    up.interrupt_and_wait()?;
    drop(runtime);
    Ok(())
}

/// Kill nats-server, then Postgres, under `up`: `/health` turns 503, each is started again, and
/// requests that need both work again.
#[test]
fn up_starts_a_dead_server_again_and_health_says_so_meanwhile() -> anyhow::Result<()> {
    let dir = data_dir()?;
    let mut up = Up::start(&dir.path().join(".mainloop"))?;
    up.wait_healthy(Duration::from_secs(60))?;
    let port = up.port;
    for name in ["nats-server", "postgres"] {
        let old = child_named(up.child.id(), name).ok_or_else(|| anyhow::anyhow!("no {name} child"))?;
        // Watch /health closely while the server is down.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (watching, flag) = (
            stop.clone(),
            std::thread::spawn({
                let stop = stop.clone();
                move || {
                    let mut seen = std::collections::BTreeSet::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Some(code) = http_status(port, "/health") {
                            seen.insert(code);
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    seen
                }
            }),
        );
        let status = Command::new("kill").args(["-KILL", &old.to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill failed");
        up.wait_printed("started again")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let new = loop {
            if let Some(pid) = child_named(up.child.id(), name).filter(|pid| *pid != old) {
                break pid;
            }
            anyhow::ensure!(Instant::now() < deadline, "{name} was not started again");
            std::thread::sleep(Duration::from_millis(50));
        };
        up.wait_healthy(Duration::from_secs(60))?;
        watching.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = flag.join().map_err(|_| anyhow::anyhow!("watcher panicked"))?;
        assert!(
            seen.contains(&503),
            "/health never said 503 while {name} was down: {seen:?}"
        );
        assert!(alive(new) && !alive(old));
    }
    // The services reconnected: a request through the gateway, NATS, the inbox and Postgres.
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_status(port, "/tasks") != Some(200) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "/tasks did not answer after the restarts"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    up.interrupt_and_wait()?;
    Ok(())
}
