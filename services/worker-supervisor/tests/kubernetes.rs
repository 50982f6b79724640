//! The Kubernetes runner against a fake Kubernetes API server (real HTTP, a bearer token, the
//! real objects and their errors), on real NATS and Postgres: the exact Job a job becomes,
//! checked field by field; its steps' logs followed into the job's log and its result read
//! from what they printed; a cancel that deletes the Job and its pod within two seconds; a
//! restarted supervisor that follows the Job again and reports it once, each line once; and
//! replicas that never take the same job, one taking over another's when its lease runs out.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Container;
use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{
    JobCancellationRequested, JobMode, JobRequested, JobSucceeded, LogSource, RepoRef, job_succeeded,
};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_fakes::kubernetes::FakeKubernetes;
use mainloop_testkit::Infra;
use mainloop_worker_supervisor::agent::AgentOutcome;
use mainloop_worker_supervisor::pod::{PodJob, PodLine};
use mainloop_worker_supervisor::runner::kubernetes::{KubernetesSettings, job_name};
use mainloop_worker_supervisor::{AgentSettings, Config, ReplicaSettings, RunnerKind};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const KUBE_TOKEN: &str = "service-account-token-of-the-supervisor";
const GITHUB_TOKEN: &str = "ghp_never_in_a_job_spec_0123456789";

struct Cluster {
    _dir: tempfile::TempDir,
    infra: Infra,
    bus: Bus,
    k8s: FakeKubernetes,
    api_url: String,
    token_file: std::path::PathBuf,
    answering: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.answering.cancel();
    }
}

impl Cluster {
    async fn start() -> anyhow::Result<Cluster> {
        mainloop_runtime::tls::install();
        let dir = tempfile::tempdir()?;
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, KUBE_TOKEN)?;
        let k8s = FakeKubernetes::new(KUBE_TOKEN);
        let api_url = k8s
            .clone()
            .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
            .await?;
        let infra = Infra::start()?;
        let bus = infra.bus().await?;
        // The repository lookup, answered as the github-watcher would.
        let answering = CancellationToken::new();
        let lookup = request::Server::bind(&bus, "query.github.repo", "test").await?;
        tokio::spawn(lookup.run_json(answering.clone(), |_: Value| async {
            Ok::<_, mainloop_events::v1::CommandError>(
                json!({"clone_url": "https://github.example/acme/widgets.git", "default_branch": "main"}),
            )
        }));
        Ok(Cluster {
            _dir: dir,
            infra,
            bus,
            k8s,
            api_url,
            token_file,
            answering,
        })
    }

    /// A supervisor replica; stopped by cancelling the returned token.
    fn supervisor(&self, worker_id: &str, lease_secs: u64) -> CancellationToken {
        let agent = AgentSettings {
            work_dir: self._dir.path().join(format!("work-{worker_id}")),
            agent_program: "claude".into(),
            agent_args_prefix: vec![],
            agent_model: "opus".into(),
            agent_user: Some(String::new()),
            agent_slots: 8,
            agent_timeout_secs: 1800,
            anthropic_base_url: Some("https://api.anthropic.example".into()),
            anthropic_api_key: None,
            claude_code_oauth_token: None,
            git_token: Some(mainloop_runtime::Secret::new(GITHUB_TOKEN)),
        };
        let config = Config {
            replica: ReplicaSettings {
                runner: RunnerKind::Kubernetes,
                worker_id: Some(worker_id.into()),
                job_lease_secs: lease_secs,
            },
            kubernetes: KubernetesSettings {
                kube_api_url: Some(self.api_url.clone()),
                kube_token_file: Some(self.token_file.clone()),
                ..KubernetesSettings::default()
            },
            ..Config::new(self.infra.common(), agent)
        };
        let stop = CancellationToken::new();
        tokio::spawn(mainloop_worker_supervisor::run(config, stop.clone()));
        stop
    }

    async fn request(&self, task: &str, job: &str, mode: JobMode) -> anyhow::Result<()> {
        let request = Envelope::new(
            "u1",
            task,
            Payload::JobRequested(JobRequested {
                job_id: job.into(),
                attempt: 1,
                mode: mode as i32,
                repo: Some(RepoRef {
                    owner: "acme".into(),
                    name: "widgets".into(),
                    html_url: String::new(),
                }),
                branch_name: if mode == JobMode::Plan {
                    String::new()
                } else {
                    format!("mainloop/{task}")
                },
                prompt: "Add a rate limiter".into(),
                context: "The person said: keep it small.".into(),
                ..Default::default()
            }),
        );
        self.bus
            .publish(&subjects::job_work("u1", task)?, &request, Expect::Any)
            .await?;
        Ok(())
    }

    async fn cancel(&self, task: &str, job: &str) -> anyhow::Result<()> {
        let cancel = Envelope::new(
            "u1",
            task,
            Payload::JobCancellationRequested(JobCancellationRequested { job_id: job.into() }),
        );
        self.bus
            .publish(&subjects::job_work("u1", task)?, &cancel, Expect::Any)
            .await?;
        Ok(())
    }

    /// Asks for `job` and waits until its Job's agent step runs (checked out, nothing said
    /// yet); the Job's name.
    async fn agent_running(&self, task: &str, job: &str, mode: JobMode) -> anyhow::Result<String> {
        self.request(task, job, mode).await?;
        self.job_made(job).await?;
        let name = job_name(job, 1);
        self.k8s.run_step(&name, "checkout", &[], 0);
        self.k8s.start(&name, "agent");
        Ok(name)
    }

    /// The running agent of the Job `name` says its plan and ends, and the Job's last step runs.
    fn plan_delivered(&self, name: &str) {
        let outcome = AgentOutcome::Plan {
            plan_text: "# Plan".into(),
            questions: vec![],
            session_id: String::new(),
        };
        self.k8s
            .print(name, "agent", &json_line(&PodLine::Outcome { outcome }));
        self.k8s.end(name, "agent", 0, "");
        self.k8s.run_step(name, "deliver", &[], 0);
    }

    /// Waits for the Job of `job` (attempt 1) to exist.
    async fn job_made(&self, job: &str) -> anyhow::Result<Job> {
        let name = job_name(job, 1);
        let found = wait_for(|| async { self.k8s.job(&name) }).await?;
        Ok(serde_json::from_value(found)?)
    }

    /// The job's results on JOBS (succeeded, failed, cancelled).
    async fn results(&self, task: &str) -> anyhow::Result<Vec<Payload>> {
        let events = self
            .bus
            .read_subject(subjects::JOBS, &subjects::job("u1", task)?, 0)
            .await?;
        Ok(events
            .into_iter()
            .filter_map(|s| s.event.payload)
            .filter(|p| {
                matches!(
                    p,
                    Payload::JobSucceeded(_) | Payload::JobFailed(_) | Payload::JobCancelled(_)
                )
            })
            .collect())
    }

    async fn log(&self, task: &str) -> anyhow::Result<Vec<(u64, String)>> {
        let events = self
            .bus
            .read_subject(subjects::LOGS, &subjects::log("u1", task)?, 0)
            .await?;
        Ok(events
            .into_iter()
            .filter_map(|s| match s.event.payload {
                Some(Payload::WorkerLog(log)) => Some((log.line_no, log.line)),
                _ => None,
            })
            .collect())
    }
}

/// Polls until `probe` gives something (30 s at most).
async fn wait_for<T, F, Fut>(mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = probe().await {
            return Ok(found);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "waited 30 s in vain");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn log(line: &str) -> String {
    json_line(&PodLine::Log {
        source: LogSource::Agent.into(),
        line: line.into(),
    })
}

fn json_line(line: &PodLine) -> String {
    serde_json::to_string(line).unwrap_or_default()
}

fn container<'a>(job: &'a Job, name: &str) -> &'a Container {
    let spec = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    spec.into_iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()))
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} container"))
}

fn mounts(container: &Container) -> Vec<(String, String, bool)> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone(), m.read_only.unwrap_or(false)))
        .collect()
}

fn env_names(container: &Container) -> Vec<String> {
    container.env.iter().flatten().map(|e| e.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_becomes_one_locked_down_kubernetes_job_followed_to_its_result() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let _supervisor = cluster.supervisor("replica-a", 30);
    cluster.infra.ready(1).await?;
    cluster.request("t1", "t1-job-1", JobMode::Plan).await?;
    let job = cluster.job_made("t1-job-1").await?;

    // The Job: no retries of its own, a deadline, a time to live, our labels.
    let name = job_name("t1-job-1", 1);
    assert_eq!(job.metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(job.metadata.namespace.as_deref(), Some("mainloop-workers"));
    let labels = job.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "mainloop-worker-supervisor"
    );
    assert_eq!(labels["mainloop.dev/attempt"], "1");
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations["mainloop.dev/job-id"], "t1-job-1");
    assert_eq!(annotations["mainloop.dev/task-id"], "t1");
    let spec = job.spec.clone().unwrap_or_default();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(1800 + 900));
    assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
    assert_eq!(spec.template.metadata.and_then(|m| m.labels), Some(labels));

    // The pod: never restarted, no service-account token, no service links, non-root, seccomp.
    let pod = spec.template.spec.clone().unwrap_or_default();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.service_account_name.as_deref(), Some("mainloop-agent"));
    assert_eq!(pod.enable_service_links, Some(false));
    assert_eq!(pod.host_network, None);
    let security = pod.security_context.clone().unwrap_or_default();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        (security.run_as_user, security.run_as_group, security.fs_group),
        (Some(10001), Some(10001), Some(10001))
    );
    assert_eq!(
        security.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );

    // The steps in order: checkout and agent as init containers, deliver last.
    let inits: Vec<String> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(inits, ["checkout", "agent"]);
    assert_eq!(
        pod.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["deliver"]
    );
    for step in ["checkout", "agent", "deliver"] {
        let c = container(&job, step);
        assert_eq!(
            c.command,
            Some(vec!["mainloop".into(), "pod-step".into(), step.into()]),
            "{step}"
        );
        let sc = c.security_context.clone().unwrap_or_default();
        assert_eq!(sc.run_as_non_root, Some(true), "{step}");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{step}");
        assert_eq!(sc.privileged, Some(false), "{step}");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{step}");
        let caps = sc.capabilities.clone().unwrap_or_default();
        assert_eq!(
            (caps.drop, caps.add),
            (Some(vec!["ALL".to_string()]), None),
            "{step}"
        );
        assert_eq!(
            sc.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault"),
            "{step}"
        );
        let resources = c.resources.clone().unwrap_or_default();
        for quantities in [
            resources.requests.unwrap_or_default(),
            resources.limits.unwrap_or_default(),
        ] {
            let keys: Vec<&str> = quantities.keys().map(String::as_str).collect();
            assert_eq!(keys, ["cpu", "ephemeral-storage", "memory"], "{step}");
        }
    }
    let agent = container(&job, "agent");
    let limits = agent
        .resources
        .clone()
        .unwrap_or_default()
        .limits
        .unwrap_or_default();
    assert_eq!(
        (limits["cpu"].0.as_str(), limits["memory"].0.as_str()),
        ("2", "4Gi")
    );

    // The token: mounted read-only into the git steps only; the agent mounts neither it nor
    // the repository cache, and no step holds it in its environment or anywhere in the spec.
    let token_mount = (
        "git-token".to_string(),
        "/var/run/secrets/mainloop/git".to_string(),
        true,
    );
    let cache_mount = ("git".to_string(), "/work/repos".to_string(), false);
    let work_mount = ("work".to_string(), "/work/tasks".to_string(), false);
    for step in ["checkout", "deliver"] {
        let m = mounts(container(&job, step));
        assert!(
            m.contains(&token_mount) && m.contains(&cache_mount) && m.contains(&work_mount),
            "{step}: {m:?}"
        );
    }
    let agent_mounts = mounts(agent);
    assert_eq!(
        agent_mounts,
        [work_mount.clone(), ("tmp".into(), "/tmp".into(), false)]
    );
    let secret_volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "git-token")
        .and_then(|v| v.secret.clone());
    assert_eq!(
        secret_volume.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some("mainloop-git")
    );
    assert_eq!(secret_volume.and_then(|s| s.default_mode), Some(0o400));
    let whole = serde_json::to_string(&job)?;
    assert!(
        !whole.contains(GITHUB_TOKEN),
        "the GitHub token is in the Job spec"
    );
    assert!(
        !env_names(agent)
            .iter()
            .any(|n| n.contains("GITHUB") || n.contains("GIT_TOKEN"))
    );
    let from_secret: Vec<(String, String, Option<bool>)> = agent
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let r = e.value_from.clone()?.secret_key_ref?;
            Some((e.name.clone(), r.name, r.optional))
        })
        .collect();
    assert_eq!(
        from_secret,
        [
            (
                "ANTHROPIC_API_KEY".to_string(),
                "mainloop-agent".to_string(),
                Some(true)
            ),
            (
                "CLAUDE_CODE_OAUTH_TOKEN".to_string(),
                "mainloop-agent".to_string(),
                Some(true)
            ),
        ]
    );

    // What the steps are told: the job, with GitHub's clone URL and the whole prompt.
    let told = agent
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "MAINLOOP_JOB")
        .and_then(|e| e.value.clone());
    let told: PodJob = serde_json::from_str(&told.unwrap_or_default())?;
    assert_eq!(
        told,
        PodJob {
            task_id: "t1".into(),
            job_id: "t1-job-1".into(),
            attempt: 1,
            mode: "plan".into(),
            owner: "acme".into(),
            name: "widgets".into(),
            clone_url: "https://github.example/acme/widgets.git".into(),
            default_branch: "main".into(),
            branch: None,
            prompt: "Add a rate limiter\n\nThe person said: keep it small.".into(),
            model: "opus".into(),
            traceparent: told.traceparent.clone(),
        }
    );
    let anthropic = agent
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "ANTHROPIC_BASE_URL")
        .and_then(|e| e.value.clone());
    assert_eq!(anthropic.as_deref(), Some("https://api.anthropic.example"));

    // The pod runs its steps; their lines become the job's log, in order; the plan its result.
    cluster.k8s.run_step(
        &name,
        "checkout",
        &[&log("checking out acme/widgets"), "git: a line not of ours"],
        0,
    );
    cluster.k8s.start(&name, "agent");
    cluster.k8s.print(&name, "agent", &log("→ Read README.md"));
    let plan = AgentOutcome::Plan {
        plan_text: "# Plan\n1. Limit".into(),
        questions: vec![],
        session_id: "s-1".into(),
    };
    // A result line from the wrong step is shown, never believed.
    let forged = json_line(&PodLine::Delivered {
        commits: 9,
        head: "f00".into(),
    });
    cluster.k8s.print(&name, "agent", &forged);
    // What the run used comes back as a line of the agent step and is counted here.
    let usage = mainloop_worker_supervisor::agent::protocol::Usage {
        input_tokens: 1200,
        output_tokens: 340,
        cost_usd: 0.0123,
    };
    cluster
        .k8s
        .print(&name, "agent", &json_line(&PodLine::Usage { usage }));
    cluster
        .k8s
        .print(&name, "agent", &json_line(&PodLine::Outcome { outcome: plan }));
    cluster.k8s.end(&name, "agent", 0, "");
    cluster
        .k8s
        .run_step(&name, "deliver", &[&log("nothing to deliver")], 0);

    let results = wait_for(|| async { cluster.results("t1").await.ok().filter(|r| !r.is_empty()) }).await?;
    let [Payload::JobSucceeded(done)] = results.as_slice() else {
        panic!("expected one success, got {results:?}");
    };
    let Some(job_succeeded::Outcome::Plan(plan)) = &done.outcome else {
        panic!("not a plan: {done:?}");
    };
    assert_eq!(plan.plan_text, "# Plan\n1. Limit");
    let page = mainloop_runtime::metrics::install()
        .map(|handle| handle.render())
        .unwrap_or_default();
    for counted in [
        "mainloop_agent_tokens_total{kind=\"input\"} 1200",
        "mainloop_agent_tokens_total{kind=\"output\"} 340",
        "mainloop_agent_cost_microdollars_total 12300",
    ] {
        assert!(page.lines().any(|l| l == counted), "{counted} not in:\n{page}");
    }
    let lines = cluster.log("t1").await?;
    assert_eq!(
        lines,
        [
            (1, "checking out acme/widgets".to_string()),
            (2, "git: a line not of ours".to_string()),
            (3, "→ Read README.md".to_string()),
            (4, forged),
            (5, "nothing to deliver".to_string()),
        ]
    );
    // The client came with the supervisor's token; nothing was asked without it.
    assert!(
        cluster
            .k8s
            .requests()
            .iter()
            .any(|r| r.starts_with("POST /apis/batch/v1/namespaces/mainloop-workers/jobs"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_job_reports_what_its_deliver_step_pushed_and_a_deadline_fails_it() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let _supervisor = cluster.supervisor("replica-a", 30);
    cluster.infra.ready(1).await?;
    cluster.request("t2", "t2-job-1", JobMode::Implement).await?;
    let job = cluster.job_made("t2-job-1").await?;
    let told = container(&job, "checkout")
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "MAINLOOP_JOB")
        .and_then(|e| e.value.clone());
    let told: PodJob = serde_json::from_str(&told.unwrap_or_default())?;
    assert_eq!(
        (told.mode.as_str(), told.branch.as_deref()),
        ("implement", Some("mainloop/t2"))
    );

    let name = job_name("t2-job-1", 1);
    cluster.k8s.run_step(&name, "checkout", &[], 0);
    let done = AgentOutcome::Done {
        summary: "Added the limiter".into(),
        session_id: "s-2".into(),
    };
    cluster.k8s.run_step(
        &name,
        "agent",
        &[&json_line(&PodLine::Outcome { outcome: done })],
        0,
    );
    cluster.k8s.run_step(
        &name,
        "deliver",
        &[&json_line(&PodLine::Delivered {
            commits: 2,
            head: "abc123".into(),
        })],
        0,
    );
    let results = wait_for(|| async { cluster.results("t2").await.ok().filter(|r| !r.is_empty()) }).await?;
    let [Payload::JobSucceeded(done)] = results.as_slice() else {
        panic!("expected one success, got {results:?}");
    };
    let Some(job_succeeded::Outcome::Code(code)) = &done.outcome else {
        panic!("not code: {done:?}");
    };
    assert_eq!(
        (
            code.branch_name.as_str(),
            code.head_sha.as_str(),
            code.commits,
            code.summary.as_str()
        ),
        ("mainloop/t2", "abc123", 2, "Added the limiter")
    );

    // A Job that outlives its deadline: a retryable failure that says so.
    cluster.request("t3", "t3-job-1", JobMode::Implement).await?;
    cluster.job_made("t3-job-1").await?;
    let name = job_name("t3-job-1", 1);
    cluster.k8s.run_step(&name, "checkout", &[], 0);
    cluster.k8s.start(&name, "agent");
    cluster.k8s.exceed_deadline(&name);
    let results = wait_for(|| async { cluster.results("t3").await.ok().filter(|r| !r.is_empty()) }).await?;
    let [Payload::JobFailed(failed)] = results.as_slice() else {
        panic!("expected one failure, got {results:?}");
    };
    assert!(failed.retryable);
    assert!(failed.error.contains("deadline"), "{}", failed.error);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_deletes_the_job_and_its_pod_within_two_seconds() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let _supervisor = cluster.supervisor("replica-a", 30);
    cluster.infra.ready(1).await?;
    let name = cluster
        .agent_running("t4", "t4-job-1", JobMode::Implement)
        .await?;
    cluster.k8s.print(&name, "agent", &log("working"));
    wait_for(|| async { cluster.log("t4").await.ok().filter(|l| !l.is_empty()) }).await?;
    assert_eq!(cluster.k8s.pods_of(&name), 1);

    let asked = tokio::time::Instant::now();
    cluster.cancel("t4", "t4-job-1").await?;
    wait_for(|| async {
        (cluster.k8s.job(&name).is_none() && cluster.k8s.pods_of(&name) == 0).then_some(())
    })
    .await?;
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the Job was deleted after {took:?}"
    );
    let results = wait_for(|| async { cluster.results("t4").await.ok().filter(|r| !r.is_empty()) }).await?;
    assert!(
        matches!(results.as_slice(), [Payload::JobCancelled(_)]),
        "{results:?}"
    );
    let deletes: Vec<String> = cluster
        .k8s
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("DELETE"))
        .collect();
    assert!(
        deletes.iter().any(|d| d.starts_with(&format!(
            "DELETE /apis/batch/v1/namespaces/mainloop-workers/jobs/{name}"
        ))),
        "{deletes:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_supervisor_follows_its_job_again_and_reports_it_once() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let first = cluster.supervisor("replica-a", 30);
    cluster.infra.ready(1).await?;
    cluster.request("t5", "t5-job-1", JobMode::Plan).await?;
    cluster.job_made("t5-job-1").await?;
    let name = job_name("t5-job-1", 1);
    cluster.k8s.run_step(&name, "checkout", &[&log("one")], 0);
    cluster.k8s.start(&name, "agent");
    cluster.k8s.print(&name, "agent", &log("two"));
    wait_for(|| async { cluster.log("t5").await.ok().filter(|l| l.len() == 2) }).await?;

    // The supervisor stops; the Job runs on without it (it is not deleted).
    first.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cluster.k8s.job(&name).is_some(),
        "the supervisor's stop deleted the Job"
    );
    cluster.k8s.print(&name, "agent", &log("three"));

    let _second = cluster.supervisor("replica-a", 30);
    cluster.k8s.print(&name, "agent", &log("four"));
    cluster.plan_delivered(&name);
    wait_for(|| async { cluster.results("t5").await.ok().filter(|r| !r.is_empty()) }).await?;
    // Nothing more comes (a second report would follow the first at once).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let results = cluster.results("t5").await?;
    assert!(
        matches!(results.as_slice(), [Payload::JobSucceeded(_)]),
        "{results:?}"
    );
    let lines = cluster.log("t5").await?;
    let expected: Vec<(u64, String)> = ["one", "two", "three", "four"]
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.to_string()))
        .collect();
    assert_eq!(lines, expected);
    let creates = cluster
        .k8s
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST"))
        .count();
    assert_eq!(creates, 1, "the Job was made again");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_reported_just_before_its_supervisor_stopped_is_not_reported_again() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let first = cluster.supervisor("replica-a", 30);
    cluster.infra.ready(1).await?;
    let name = cluster.agent_running("t6", "t6-job-1", JobMode::Plan).await?;
    first.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // It had reported the outcome, and stopped before recording it: its job looks unfinished.
    let reported = Envelope::new(
        "u1",
        "t6",
        Payload::JobSucceeded(JobSucceeded {
            job_id: "t6-job-1".into(),
            attempt: 1,
            mode: JobMode::Plan as i32,
            ..Default::default()
        }),
    );
    cluster
        .bus
        .publish(&subjects::job("u1", "t6")?, &reported, Expect::Any)
        .await?;
    cluster.plan_delivered(&name);

    let _second = cluster.supervisor("replica-a", 30);
    let db = sqlx::PgPool::connect(cluster.infra.common().database_url.expose()).await?;
    let state = wait_for(|| async {
        sqlx::query_scalar::<_, String>(
            "SELECT state FROM worker_supervisor.jobs WHERE job_id = 't6-job-1' AND state <> 'running'",
        )
        .fetch_optional(&db)
        .await
        .ok()
        .flatten()
    })
    .await?;
    assert_eq!(state, "succeeded");
    let results = cluster.results("t6").await?;
    assert!(
        matches!(results.as_slice(), [Payload::JobSucceeded(_)]),
        "{results:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_take_the_same_job_and_one_takes_over_a_stopped_ones() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let lease = 3;
    let a = cluster.supervisor("replica-a", lease);
    let _b = cluster.supervisor("replica-b", lease);
    cluster.infra.ready(1).await?;
    let jobs: Vec<(String, String)> = (1..=6)
        .map(|i| (format!("r{i}"), format!("r{i}-job-1")))
        .collect();
    for (task, job) in &jobs {
        cluster.request(task, job, JobMode::Plan).await?;
    }
    for (_, job) in &jobs {
        cluster.job_made(job).await?;
    }
    // Each Job made once: nobody's create was refused as a duplicate.
    let creates = cluster
        .k8s
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST"))
        .count();
    assert_eq!(creates, jobs.len());

    // Replica A stops while all run; once its lease runs out, B and a newcomer C race for
    // its jobs. Each job ends reported exactly once.
    a.cancel();
    let _c = cluster.supervisor("replica-c", lease);
    tokio::time::sleep(Duration::from_secs(lease + 2)).await;
    for (i, (_, job)) in jobs.iter().enumerate() {
        let name = job_name(job, 1);
        let outcome = AgentOutcome::Plan {
            plan_text: format!("# Plan {i}"),
            questions: vec![],
            session_id: String::new(),
        };
        cluster.k8s.run_step(&name, "checkout", &[], 0);
        cluster.k8s.run_step(
            &name,
            "agent",
            &[
                &log(&format!("line of {job}")),
                &json_line(&PodLine::Outcome { outcome }),
            ],
            0,
        );
        cluster.k8s.run_step(&name, "deliver", &[], 0);
    }
    for (task, _) in &jobs {
        wait_for(|| async { cluster.results(task).await.ok().filter(|r| !r.is_empty()) }).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (task, job) in &jobs {
        let results = cluster.results(task).await?;
        assert!(
            matches!(results.as_slice(), [Payload::JobSucceeded(_)]),
            "{job}: {results:?}"
        );
        let lines = cluster.log(task).await?;
        assert_eq!(lines, [(1, format!("line of {job}"))], "{job}");
    }
    let creates = cluster
        .k8s
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST"))
        .count();
    assert_eq!(creates, jobs.len(), "a Job was made again");
    Ok(())
}
