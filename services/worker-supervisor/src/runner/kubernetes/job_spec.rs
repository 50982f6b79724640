//! The Job one agent run becomes, as a pure function of the job and the settings, so it can be
//! read and tested field by field. Three steps in one pod, one after another: `checkout` (an
//! init container) clones with the GitHub token into a volume the agent never sees; `agent` (an
//! init container) runs the Claude Code CLI in the task's clone with no token, no service-account
//! token and no way back into the cluster; `deliver` takes the agent's commits into its own
//! clone, refuses any holding a secret, and pushes with the token. Every container: a non-root
//! user, a read-only root filesystem, no capabilities, no privilege escalation, seccomp
//! RuntimeDefault, requests and limits. The Job gets no retries (the scheduler decides those),
//! a deadline, and a time to live after it ends.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use super::settings::KubernetesSettings;
use crate::pod::{self, PodJob};

/// The user and group every step runs as (the worker image's own, not root).
pub const RUN_AS: i64 = 10001;
pub const MANAGED_BY: &str = "mainloop-worker-supervisor";
pub const LABEL_JOB: &str = "mainloop.dev/job";
pub const LABEL_TASK: &str = "mainloop.dev/task";
pub const LABEL_ATTEMPT: &str = "mainloop.dev/attempt";
/// How many of the job's log lines were published before the pod's first line (recovery
/// skips the pod's lines already published).
pub const ANNOTATION_LOG_OFFSET: &str = "mainloop.dev/log-offset";
/// The container names, in the order they run.
pub const STEPS: [&str; 3] = ["checkout", "agent", "deliver"];
/// Time the steps around the agent get beyond the agent's own timeout.
const STEP_ALLOWANCE_SECS: i64 = 900;

/// A short, stable, DNS-safe name for an id that may be longer or use other characters.
pub fn short_hash(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The Job's name: the same for the same attempt, so a second create is refused, not doubled.
pub fn job_name(job_id: &str, attempt: u32) -> String {
    format!("mainloop-{}-{attempt}", short_hash(job_id))
}

/// What the Job spec needs beyond the settings.
pub struct JobShape<'a> {
    pub job: &'a PodJob,
    pub agent_timeout_secs: u64,
    pub anthropic_base_url: Option<&'a str>,
    pub log_offset: u64,
}

pub fn labels(job: &PodJob) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "mainloop-agent".into()),
        ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
        (LABEL_TASK.into(), short_hash(&job.task_id)),
        (LABEL_JOB.into(), short_hash(&job.job_id)),
        (LABEL_ATTEMPT.into(), job.attempt.to_string()),
    ])
}

pub fn job(settings: &KubernetesSettings, shape: &JobShape) -> Job {
    let job = shape.job;
    let annotations = BTreeMap::from([
        ("mainloop.dev/job-id".into(), job.job_id.clone()),
        ("mainloop.dev/task-id".into(), job.task_id.clone()),
        (ANNOTATION_LOG_OFFSET.into(), shape.log_offset.to_string()),
    ]);
    let deadline = i64::try_from(shape.agent_timeout_secs).unwrap_or(i64::MAX / 2) + STEP_ALLOWANCE_SECS;
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&job.job_id, job.attempt)),
            namespace: Some(settings.kube_namespace.clone()),
            labels: Some(labels(job)),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(deadline),
            ttl_seconds_after_finished: Some(settings.kube_job_ttl_secs),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(job)),
                    ..Default::default()
                }),
                spec: Some(pod_spec(settings, shape)),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn pod_spec(settings: &KubernetesSettings, shape: &JobShape) -> PodSpec {
    PodSpec {
        restart_policy: Some("Never".into()),
        service_account_name: Some(settings.kube_service_account.clone()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(10),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        init_containers: Some(vec![checkout(settings, shape), agent(settings, shape)]),
        containers: vec![deliver(settings, shape)],
        volumes: Some(volumes(settings)),
        ..Default::default()
    }
}

fn volumes(settings: &KubernetesSettings) -> Vec<Volume> {
    let empty = |name: &str, limit: Option<&str>| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: limit.map(|l| Quantity(l.into())),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        empty("work", Some(&settings.agent_disk_limit)),
        empty("git", Some(&settings.agent_disk_limit)),
        empty("tmp", Some("1Gi")),
        Volume {
            name: "git-token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(settings.kube_git_secret.clone()),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// What every step mounts: the task's clone and home, and its own /tmp.
fn common_mounts() -> Vec<VolumeMount> {
    vec![mount("work", pod::TASKS_DIR, false), mount("tmp", "/tmp", false)]
}

/// The git steps also mount the repository cache and the token; the agent mounts neither.
fn git_mounts() -> Vec<VolumeMount> {
    let mut mounts = common_mounts();
    mounts.push(mount("git", pod::REPOS_DIR, false));
    mounts.push(mount("git-token", pod::TOKEN_DIR, true));
    mounts
}

fn locked_down() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn resources(cpu: (&str, &str), memory: (&str, &str), disk: &str) -> ResourceRequirements {
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
            ("ephemeral-storage".to_string(), Quantity(disk.into())),
        ])
    };
    ResourceRequirements {
        requests: Some(quantities(cpu.0, memory.0)),
        limits: Some(quantities(cpu.1, memory.1)),
        ..Default::default()
    }
}

fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// An optional key of a Secret as an environment variable.
fn from_secret(secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: key.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(true),
            }),
            ..Default::default()
        }),
    }
}

fn step_env(shape: &JobShape) -> Vec<EnvVar> {
    vec![
        plain(pod::JOB_ENV, serde_json::to_string(shape.job).unwrap_or_default()),
        plain("HOME", "/tmp"),
        plain("LANG", "C.UTF-8"),
        plain("TRACEPARENT", shape.job.traceparent.clone()),
    ]
}

fn step(settings: &KubernetesSettings, name: &str, env: Vec<EnvVar>, mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: name.into(),
        image: Some(settings.worker_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["mainloop".into(), "pod-step".into(), name.into()]),
        env: Some(env),
        volume_mounts: Some(mounts),
        security_context: Some(locked_down()),
        resources: Some(resources(("100m", "1"), ("256Mi", "1Gi"), "1Gi")),
        ..Default::default()
    }
}

fn checkout(settings: &KubernetesSettings, shape: &JobShape) -> Container {
    step(settings, "checkout", step_env(shape), git_mounts())
}

fn agent(settings: &KubernetesSettings, shape: &JobShape) -> Container {
    let mut env = step_env(shape);
    env.push(plain("AGENT_TIMEOUT_SECS", shape.agent_timeout_secs.to_string()));
    if let Some(url) = shape.anthropic_base_url {
        env.push(plain("ANTHROPIC_BASE_URL", url));
    }
    env.push(from_secret(&settings.kube_agent_secret, "ANTHROPIC_API_KEY"));
    env.push(from_secret(
        &settings.kube_agent_secret,
        "CLAUDE_CODE_OAUTH_TOKEN",
    ));
    Container {
        resources: Some(resources(
            (&settings.agent_cpu_request, &settings.agent_cpu_limit),
            (&settings.agent_memory_request, &settings.agent_memory_limit),
            &settings.agent_disk_limit,
        )),
        ..step(settings, "agent", env, common_mounts())
    }
}

/// The deliver step also gets the agent's credentials, only to refuse commits holding them.
fn deliver(settings: &KubernetesSettings, shape: &JobShape) -> Container {
    let mut env = step_env(shape);
    env.push(from_secret(&settings.kube_agent_secret, "ANTHROPIC_API_KEY"));
    env.push(from_secret(
        &settings.kube_agent_secret,
        "CLAUDE_CODE_OAUTH_TOKEN",
    ));
    step(settings, "deliver", env, git_mounts())
}
