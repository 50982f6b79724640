//! The Kubernetes runner: one Job per job attempt in the worker namespace (its shape in
//! [`job_spec`]), its three steps' logs followed into the job's log as they run, and its result
//! read from what the steps printed. A cancel deletes the Job and its pod at once. After a
//! supervisor restart (or when another replica's lease runs out) the Job, found by its name, is
//! followed again from the line after the last one published, and its result reported once.
//! Finished Jobs are deleted by Kubernetes after their time to live.

mod follow;
pub mod job_spec;
pub mod settings;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use mainloop_events::Payload;
use mainloop_events::v1::JobCancelled;
use tokio_util::sync::CancellationToken;

pub use job_spec::{job_name, short_hash};
pub use settings::KubernetesSettings;

use super::{JobRun, Runner};
use crate::pod::PodJob;

pub struct KubernetesRunner {
    client: kube::Client,
    settings: KubernetesSettings,
    agent_timeout_secs: u64,
    anthropic_base_url: Option<String>,
    default_model: String,
}

/// Why the runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("KUBE_API_URL is not a URL: {0}")]
    Url(String),
    #[error("no Kubernetes configuration (in the cluster, KUBECONFIG or KUBE_API_URL): {0}")]
    Config(#[from] kube::config::InferConfigError),
    #[error("cannot make a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

impl KubernetesRunner {
    pub async fn connect(
        settings: KubernetesSettings,
        agent: &crate::AgentSettings,
    ) -> Result<Self, ConnectError> {
        let config = match &settings.kube_api_url {
            Some(url) => {
                let mut config = kube::Config::new(
                    url.parse()
                        .map_err(|e| ConnectError::Url(format!("{url}: {e}")))?,
                );
                config.default_namespace = settings.kube_namespace.clone();
                config.auth_info.token_file =
                    settings.kube_token_file.as_ref().map(|p| p.display().to_string());
                config
            }
            None => kube::Config::infer().await?,
        };
        Ok(KubernetesRunner {
            client: kube::Client::try_from(config)?,
            settings,
            agent_timeout_secs: agent.agent_timeout_secs,
            anthropic_base_url: agent.anthropic_base_url.clone(),
            default_model: agent.agent_model.clone(),
        })
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.settings.kube_namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.settings.kube_namespace)
    }

    fn pod_job(&self, run: &JobRun) -> PodJob {
        let repo = run.job.repo.clone().unwrap_or_default();
        PodJob {
            task_id: run.task_id.clone(),
            job_id: run.job.job_id.clone(),
            attempt: run.job.attempt,
            mode: format!("{:?}", run.job.mode()).to_lowercase(),
            owner: repo.owner,
            name: repo.name,
            clone_url: run.remote.clone_url.clone(),
            default_branch: run.remote.default_branch.clone(),
            branch: run.branch().map(String::from),
            prompt: run.prompt(),
            model: if run.job.model.is_empty() {
                self.default_model.clone()
            } else {
                run.job.model.clone()
            },
            traceparent: mainloop_bus::trace::traceparent().unwrap_or_default(),
        }
    }

    async fn start(&self, run: &JobRun, cancel: &CancellationToken) -> Payload {
        let job = job_spec::job(
            &self.settings,
            &job_spec::JobShape {
                job: &self.pod_job(run),
                agent_timeout_secs: self.agent_timeout_secs,
                anthropic_base_url: self.anthropic_base_url.as_deref(),
                log_offset: run.lines.sent(),
            },
        );
        let name = job_name(&run.job.job_id, run.job.attempt);
        match self.jobs().create(&PostParams::default(), &job).await {
            Ok(_) => {}
            // Made by an earlier try of this very attempt: it is followed, not made twice.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return run.failed(format!("Kubernetes refused the job: {err}"), !permanent(&err)),
        }
        self.follow_until_done(run, &name, 0, cancel).await
    }

    async fn reattach(&self, run: &JobRun, cancel: &CancellationToken) -> Payload {
        let name = job_name(&run.job.job_id, run.job.attempt);
        let job = match self.jobs().get_opt(&name).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                return run.failed(
                    "the worker stopped before the job's Kubernetes Job was made",
                    true,
                );
            }
            Err(err) => return run.failed(format!("cannot find the job's Kubernetes Job: {err}"), true),
        };
        let offset: u64 = job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(job_spec::ANNOTATION_LOG_OFFSET))
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        let published = run.lines.sent().saturating_sub(offset);
        self.follow_until_done(run, &name, published, cancel).await
    }

    async fn follow_until_done(
        &self,
        run: &JobRun,
        name: &str,
        skip: u64,
        cancel: &CancellationToken,
    ) -> Payload {
        let (pods, jobs) = (self.pods(), self.jobs());
        tokio::select! {
            () = cancel.cancelled() => {
                // The supervisor stopping is not the job's cancel: the Job runs on.
                if !run.stopping.is_cancelled() {
                    self.delete(name).await;
                }
                Payload::JobCancelled(JobCancelled {
                    job_id: run.job.job_id.clone(),
                    attempt: run.job.attempt,
                })
            }
            payload = follow::follow(&pods, &jobs, run, name, skip) => payload,
        }
    }

    /// The Job and its pod, gone now (not after a grace period: the agent's work is dropped).
    async fn delete(&self, name: &str) {
        let now = DeleteParams::background().grace_period(0);
        if let Err(err) = self.jobs().delete(name, &now).await
            && !matches!(&err, kube::Error::Api(status) if status.code == 404)
        {
            tracing::warn!(error = %err, job = name, "the cancelled Job was not deleted");
        }
        let pods = ListParams::default().labels(&format!("{}={name}", follow::JOB_NAME_LABEL));
        if let Err(err) = self.pods().delete_collection(&now, &pods).await {
            tracing::warn!(error = %err, job = name, "the cancelled Job's pods were not deleted");
        }
    }
}

/// Refusals another attempt cannot change (a Job spec the cluster rejects, no permission).
fn permanent(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if matches!(status.code, 400 | 401 | 403 | 422))
}

impl Runner for KubernetesRunner {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn run<'a>(&'a self, run: &'a JobRun, cancel: &'a CancellationToken) -> BoxFuture<'a, Payload> {
        self.start(run, cancel).boxed()
    }

    fn recover<'a>(&'a self, run: &'a JobRun, cancel: &'a CancellationToken) -> BoxFuture<'a, Payload> {
        self.reattach(run, cancel).boxed()
    }
}
