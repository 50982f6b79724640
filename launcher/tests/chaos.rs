//! The chaos suite (`make chaos`, not in CI): every service as its own `mainloop run` process
//! (`CHAOS_REPLICAS` of each, 1 by default) on one NATS and one Postgres, against the fakes. A
//! driver runs journeys from chat to merged, `CHAOS_AT_ONCE` (3) at a time, each step retried as
//! a person would while something is down, while a killer SIGKILLs a random service at random
//! moments and starts it again, until `CHAOS_KILLS` (100) kills are done; with `CHAOS_NATS=1` or
//! `CHAOS_POSTGRES=1`, one kill in ten crashes nats-server or Postgres instead (every process
//! at once, as a container's death) and starts it again on its port and data. Then the journeys still running finish, and the invariants are checked on the
//! fake GitHub and the read models: every task finished, through every status once, in order; one
//! issue and one merged pull request per task, no comment twice; no inbox item twice.
//! `CHAOS_SEED` repeats a run's choices; the report names the kills. A journey's step that takes
//! longer than `CHAOS_STEP_SECONDS` (120) fails the run with a report of the stall: the services'
//! log tails, Postgres's sessions, JetStream's consumers and log, the unfinished tasks' events
//! and the journey's conversation.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Outside;
use common::fleet::{self, Fleet};
use mainloop_testkit::{Infra, TestNats, TestPostgres};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What was killed, how often.
type Kills = Arc<Mutex<BTreeMap<String, u32>>>;

fn poisoned<T>(_: T) -> anyhow::Error {
    anyhow::anyhow!("a lock was poisoned")
}

/// The servers under the services, which the killer may crash too.
struct Servers {
    nats: Option<Arc<Mutex<TestNats>>>,
    postgres: Option<Arc<Mutex<TestPostgres>>>,
}

impl Servers {
    /// Crashes one of them at random (every process at once, as a container's death) and starts
    /// it again on its port and data; its name, or `None` when none may be crashed.
    fn crash_one(&self, rng: &mut fastrand::Rng) -> anyhow::Result<Option<&'static str>> {
        match (&self.nats, &self.postgres) {
            (Some(nats), postgres) if postgres.is_none() || rng.bool() => {
                nats.lock().map_err(poisoned)?.crash_and_restart()?;
                Ok(Some("nats-server"))
            }
            (_, Some(postgres)) => {
                postgres.lock().map_err(poisoned)?.crash_and_restart()?;
                Ok(Some("postgres"))
            }
            _ => Ok(None),
        }
    }
}

/// Kills until `kills` are done: a random service instance (the keeper starts it again), or,
/// one time in ten, one of `servers` (started again at once).
async fn killer(
    fleet: Arc<Mutex<Fleet>>,
    servers: Servers,
    mut rng: fastrand::Rng,
    kills: u64,
    done: Kills,
) -> anyhow::Result<()> {
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.u64(200..1500))).await;
        let server = if rng.u8(0..10) == 0 {
            servers.crash_one(&mut rng)?
        } else {
            None
        };
        let target = if let Some(server) = server {
            server.to_string()
        } else {
            let mut fleet = fleet.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let at = rng.usize(0..fleet.instances.len());
            fleet.kill(at)?;
            let instance = &fleet.instances[at];
            format!("{}-{}", instance.service, instance.replica)
        };
        if let Ok(mut done) = done.lock() {
            *done.entry(target.clone()).or_default() += 1;
        }
        // Down for a moment; the keeper starts it again.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..800))).await;
    }
    Ok(())
}

/// Starts again what is not running, as Kubernetes would, until `stop`; what exited by itself.
async fn keeper(fleet: Arc<Mutex<Fleet>>, stop: Arc<AtomicBool>) -> anyhow::Result<Vec<String>> {
    let mut exited = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(rand_pause())).await;
        let revived = fleet.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.revive()?;
        exited.extend(revived);
    }
    Ok(exited)
}

/// Between 300 and 800 ms: Kubernetes restarts a crashed container within about a second.
fn rand_pause() -> u64 {
    fastrand::u64(300..800)
}

/// A Postgres session: application, state, wait, transaction age, query.
type Session = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// What every Postgres session is doing and waiting for, for a stall's report.
async fn activity(url: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(url).await?;
    let rows: Vec<Session> = sqlx::query_as(
        "SELECT application_name, state, wait_event_type || ':' || wait_event, \
                (now() - xact_start)::text, left(query, 160) \
         FROM pg_stat_activity WHERE datname IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_start",
    )
    .fetch_all(&mut db)
    .await?;
    Ok(rows
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The tasks a failed journey names (`task <id>` in its error) and the unfinished ones of the
/// latest page, each with its status and the events of its TASKS, JOBS and GITHUB subjects.
async fn unfinished(
    http: &reqwest::Client,
    gateway: &str,
    nats_url: &str,
    error: &str,
) -> anyhow::Result<String> {
    use mainloop_events::subjects;
    let get = |path: String| {
        let request = http.get(format!("{gateway}{path}")).header("x-user-id", "alice");
        async move { anyhow::Ok(request.send().await?.json::<serde_json::Value>().await?) }
    };
    let mut ids: Vec<String> = error
        .split("task ")
        .skip(1)
        .filter_map(|rest| rest.split([':', ' ']).next())
        .map(str::to_string)
        .collect();
    let latest = get("/tasks".into()).await?;
    ids.extend(
        latest
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["status"] != "completed")
            .filter_map(|t| t["id"].as_str().map(str::to_string)),
    );
    ids.dedup();
    let bus = mainloop_bus::Bus::connect(
        nats_url,
        "chaos-report",
        Duration::from_secs(5),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    let mut report = String::new();
    for id in ids {
        let task = get(format!("/tasks/{id}")).await?;
        report.push_str(&format!("task {id}: {}\n", task["status"]));
        for (stream, subject) in [
            (subjects::TASKS, subjects::task("alice", &id)?),
            (subjects::JOBS, subjects::job("alice", &id)?),
            (subjects::GITHUB, subjects::github("alice", &id)?),
        ] {
            let events = bus.read_subject(stream, &subject, 0).await?;
            let names: Vec<String> = events
                .iter()
                .map(|e| format!("{}@{}", e.event.r#type, e.stream_sequence))
                .collect();
            report.push_str(&format!("  {stream}: {}\n", names.join(" ")));
        }
    }
    Ok(report)
}

/// Copies the services' logs where they outlive the run; where they went.
fn keep_logs(logs: &[PathBuf], seed: u64) -> String {
    let kept = std::env::temp_dir().join(format!("mainloop-chaos-failed-{seed}"));
    if std::fs::create_dir_all(&kept).is_err() {
        return "(the logs could not be kept)".into();
    }
    for log in logs {
        if let Some(name) = log.file_name() {
            let _ = std::fs::copy(log, kept.join(name));
        }
    }
    kept.display().to_string()
}

/// The conversation a failed journey names (`conversation <id>` in its error), as stored.
async fn conversation(http: &reqwest::Client, gateway: &str, error: &str) -> String {
    let Some(id) = error
        .split("conversation ")
        .nth(1)
        .and_then(|rest| rest.split([':', ' ']).next())
    else {
        return "(none named)".into();
    };
    let answer = http
        .get(format!("{gateway}/conversations/{id}"))
        .header("x-user-id", "alice")
        .send()
        .await;
    match answer {
        Ok(answer) => answer.text().await.unwrap_or_else(|e| e.to_string()),
        Err(err) => err.to_string(),
    }
}

/// What JetStream holds at a stall: each stream's consumers with their pending and waiting
/// counts, the connections, and the tail of the server's log.
async fn jetstream(http: &reqwest::Client, monitor: &str, log: &std::path::Path) -> String {
    let mut report = String::new();
    for page in ["jsz?consumers=true", "connz?subs=false", "varz"] {
        let body = match http.get(format!("{monitor}/{page}")).send().await {
            Ok(response) => response.text().await.unwrap_or_else(|e| e.to_string()),
            Err(err) => err.to_string(),
        };
        report.push_str(&format!("/{page}: {body}\n"));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(60).collect();
    report.push_str("nats.log:\n");
    for line in tail.into_iter().rev() {
        report.push_str(line);
        report.push('\n');
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the chaos suite runs on its own: make chaos"]
async fn chaos_kills_lose_nothing_and_repeat_nothing() -> anyhow::Result<()> {
    let kills = env("CHAOS_KILLS", 100);
    let at_once = env("CHAOS_AT_ONCE", 3) as usize;
    let seed = env("CHAOS_SEED", fastrand::u64(..));
    let outside = Outside::start("mainloop-chaos-", Some("fail_then_pass")).await?;
    let infra = Infra::start()?;
    let fleet = Fleet::start(&outside, &infra, env("CHAOS_REPLICAS", 1) as usize)?;
    fleet.ready(&outside.http).await?;
    let gateways = fleet.gateways();
    let logs = fleet.logs();
    let database = infra.pg.url();
    let (monitor, nats_log, nats_url) = (infra.nats.monitor_url(), infra.nats.log_file(), infra.nats.url());
    let Infra { nats, pg, .. } = infra;
    // The test keeps its own handles: a server stops when the last one drops.
    let (nats, pg) = (Arc::new(Mutex::new(nats)), Arc::new(Mutex::new(pg)));
    let fleet = Arc::new(Mutex::new(fleet));
    let servers = Servers {
        nats: (env("CHAOS_NATS", 0) == 1).then(|| nats.clone()),
        postgres: (env("CHAOS_POSTGRES", 0) == 1).then(|| pg.clone()),
    };
    println!("chaos: seed {seed}, {kills} kills, {at_once} journeys at a time; logs in {logs:?}");

    let started = Instant::now();
    let killed: Kills = Arc::default();
    // The killer has a thread of its own, alive until the test ends: a server it starts again
    // gets a parent-death signal bound to the thread that started it, and the runtime's threads
    // come and go.
    let (killing_done, killing) = tokio::sync::oneshot::channel();
    let (_keep_killer_thread, killer_thread_ends) = std::sync::mpsc::channel::<()>();
    {
        let (fleet, killed) = (fleet.clone(), killed.clone());
        std::thread::spawn(move || {
            let killed = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    runtime.block_on(killer(
                        fleet,
                        servers,
                        fastrand::Rng::with_seed(seed),
                        kills,
                        killed,
                    ))
                });
            let _ = killing_done.send(killed);
            let _ = killer_thread_ends.recv();
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let kept = Arc::new(AtomicBool::new(false));
    let keeping = tokio::spawn(keeper(fleet.clone(), kept.clone()));
    // How long one step of a journey may take before the run counts as stalled.
    let step_limit = Duration::from_secs(env("CHAOS_STEP_SECONDS", 120));
    let mut drivers = tokio::task::JoinSet::new();
    for lane in 0..at_once {
        let (http, gateways, github, stop) = (
            outside.http.clone(),
            gateways.clone(),
            outside.github_url.clone(),
            stop.clone(),
        );
        drivers.spawn(async move {
            let mut finished = Vec::new();
            let mut n = lane;
            while !stop.load(Ordering::Relaxed) {
                let task = fleet::journey(&http, &gateways, &github, n, step_limit).await;
                finished.push(task.map_err(|e| anyhow::anyhow!("journey {n}: {e:#}"))?);
                n += at_once;
            }
            anyhow::Ok(finished)
        });
    }
    killing.await??;
    stop.store(true, Ordering::Relaxed);
    let mut task_ids = Vec::new();
    while let Some(finished) = drivers.join_next().await {
        match finished? {
            Ok(finished) => task_ids.extend(finished),
            Err(err) => {
                let tails = fleet.lock().map(|f| f.tails(40)).unwrap_or_default();
                let activity = activity(&database).await.unwrap_or_else(|e| e.to_string());
                let jetstream = jetstream(&outside.http, &monitor, &nats_log).await;
                let unfinished = unfinished(&outside.http, &gateways[0], &nats_url, &format!("{err:#}"))
                    .await
                    .unwrap_or_else(|e| e.to_string());
                let kept = keep_logs(&logs, seed);
                let chat = conversation(&outside.http, &gateways[0], &format!("{err:#}")).await;
                anyhow::bail!(
                    "{err:#}\n{tails}\n--- Postgres sessions\n{activity}\n--- JetStream\n{jetstream}\n\
                     --- Unfinished tasks\n{unfinished}\n--- The journey's conversation\n{chat}\n\
                     --- The services' whole logs: {kept}"
                );
            }
        }
    }
    let took = started.elapsed();
    kept.store(true, Ordering::Relaxed);
    let exited = keeping.await??;
    let fleet = Arc::try_unwrap(fleet)
        .map_err(|_| anyhow::anyhow!("the fleet is still shared"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    fleet.ready(&outside.http).await?;
    fleet::check(&outside.http, &gateways[0], &outside, &task_ids).await?;
    let killed = killed.lock().map(|k| k.clone()).unwrap_or_default();
    if !exited.is_empty() {
        println!("chaos: {} exits not caused by a kill: {exited:#?}", exited.len());
    }
    println!(
        "chaos: {} journeys finished in {:.0} s under {} kills ({killed:?}): 0 lost, 0 duplicated",
        task_ids.len(),
        took.as_secs_f64(),
        killed.values().sum::<u32>()
    );
    Ok(())
}
