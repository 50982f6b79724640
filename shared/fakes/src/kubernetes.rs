//! A Kubernetes API server for the parts mainloop's Kubernetes runner uses, as strict as the real
//! one: a bearer token or 401; Jobs created (409 AlreadyExists for a name taken, 422 Invalid for
//! a name that is not a DNS label or a restart policy other than Never/OnFailure), read, listed
//! by label selector and deleted (their pods with them, unless orphaned); each Job gets a pod
//! named after it with the labels the Job controller sets; pods listed, read and deleted by
//! selector; a container's log served only once it has started (400 "waiting to start" before),
//! followed while it runs. Every answer is a real API object or a `Status`. No kubelet runs
//! here: a test plays the pod's steps (start a container, print lines, end it with an exit
//! code, exceed the Job's deadline) and reads back every request the client made.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// A container's state, as the kubelet would report it.
#[derive(Debug, Clone, PartialEq)]
enum Run {
    Waiting,
    Running,
    Terminated(i32, String),
}

#[derive(Debug, Clone)]
struct FakePod {
    namespace: String,
    job: String,
    object: Value,
    containers: BTreeMap<String, (Run, Vec<String>)>,
    /// Init containers first, in order, then the others.
    order: Vec<(String, bool)>,
}

#[derive(Default)]
struct Cluster {
    jobs: BTreeMap<(String, String), Value>,
    pods: BTreeMap<(String, String), FakePod>,
    requests: Vec<String>,
    resource_version: u64,
}

#[derive(Clone)]
pub struct FakeKubernetes {
    token: String,
    cluster: Arc<Mutex<Cluster>>,
    changed: Arc<Notify>,
}

/// RFC 3339 UTC with seconds, as the API server writes timestamps.
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or_default());
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (era * 400 + yoe + i64::from(m <= 2), m, d)
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn not_found(kind: &str, name: &str) -> Response {
    status(404, "NotFound", format!("{kind} \"{name}\" not found"))
}

/// A DNS-1123 label: what a Job's name must be for its pods' `job-name` label.
fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `a=b,c=d` equality selectors.
fn selects(selector: Option<&String>, labels: &Value) -> bool {
    selector.is_none_or(|selector| {
        selector.split(',').filter(|s| !s.is_empty()).all(|term| {
            let (key, value) = term.split_once('=').unwrap_or((term, ""));
            labels[key.trim()].as_str() == Some(value.trim_start_matches('='))
        })
    })
}

impl FakeKubernetes {
    /// A cluster that accepts `Authorization: Bearer <token>`.
    pub fn new(token: &str) -> Self {
        FakeKubernetes {
            token: token.to_string(),
            cluster: Arc::default(),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Serves on `listener`; returns the API server's URL.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<String> {
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs",
                get(list_jobs).post(create_job),
            )
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
                get(get_job).delete(delete_job),
            )
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods).delete(delete_pods))
            .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod))
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .layer(axum::middleware::from_fn_with_state(self.clone(), authenticate))
            .with_state(self);
        crate::serving::serve(listener, app);
        Ok(url)
    }

    /// Reads or changes the cluster; a change wakes the log streams that follow.
    fn with<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> Option<T> {
        self.cluster.lock().ok().map(|mut c| f(&mut c))
    }

    fn change<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> Option<T> {
        let out = self.with(f);
        self.changed.notify_waiters();
        out
    }

    /// Every request the client made (`METHOD /path?query`), in order.
    pub fn requests(&self) -> Vec<String> {
        self.with(|c| c.requests.clone()).unwrap_or_default()
    }

    /// The Jobs that exist now, as stored.
    pub fn jobs(&self) -> Vec<Value> {
        self.with(|c| c.jobs.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn job(&self, name: &str) -> Option<Value> {
        self.with(|c| {
            c.jobs
                .iter()
                .find(|((_, n), _)| n == name)
                .map(|(_, j)| j.clone())
        })
        .flatten()
    }

    /// The number of pods that exist for the Job.
    pub fn pods_of(&self, job: &str) -> usize {
        self.with(|c| c.pods.values().filter(|p| p.job == job).count())
            .unwrap_or_default()
    }

    /// The Job's container starts running.
    pub fn start(&self, job: &str, container: &str) {
        self.set(job, container, Run::Running, None);
    }

    /// The container prints a line (it must be running).
    pub fn print(&self, job: &str, container: &str, line: &str) {
        self.set(job, container, Run::Running, Some(line));
    }

    /// The container ends with `code`; a failed init container, or the last container, ends
    /// the pod and the Job (Complete, or Failed with BackoffLimitExceeded: no retries).
    pub fn end(&self, job: &str, container: &str, code: i32, reason: &str) {
        let reason = if reason.is_empty() {
            if code == 0 { "Completed" } else { "Error" }
        } else {
            reason
        };
        self.set(job, container, Run::Terminated(code, reason.into()), None);
    }

    /// A container's whole run: started, its lines, its end.
    pub fn run_step(&self, job: &str, container: &str, lines: &[&str], code: i32) {
        self.start(job, container);
        for line in lines {
            self.print(job, container, line);
        }
        self.end(job, container, code, "");
    }

    /// The Job ran past `activeDeadlineSeconds`: its pods are killed and it fails.
    pub fn exceed_deadline(&self, job: &str) {
        self.change(|c| {
            c.pods.retain(|_, p| p.job != job);
            if let Some(j) = c.jobs.values_mut().find(|j| j["metadata"]["name"] == job) {
                j["status"] = json!({"failed": 1, "conditions": [{
                    "type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                    "message": "Job was active longer than specified deadline",
                    "lastTransitionTime": now(), "lastProbeTime": now(),
                }]});
            }
        });
    }

    fn set(&self, job: &str, container: &str, run: Run, line: Option<&str>) {
        self.change(|c| {
            let Some(pod) = c.pods.values_mut().find(|p| p.job == job) else {
                return;
            };
            if let Some((state, lines)) = pod.containers.get_mut(container) {
                if let Some(line) = line {
                    lines.push(line.to_string());
                }
                if !(matches!(state, Run::Terminated(..)) && run == Run::Running) {
                    *state = run;
                }
            }
            let outcome = pod_outcome(pod);
            refresh_pod_status(pod, outcome.as_deref());
            if let Some(outcome) = outcome {
                let name = job.to_string();
                if let Some(j) = c
                    .jobs
                    .values_mut()
                    .find(|j| j["metadata"]["name"] == name.as_str())
                {
                    j["status"] = job_status(&outcome);
                }
            }
        });
    }
}

/// "Succeeded" / "Failed" once the pod is over.
fn pod_outcome(pod: &FakePod) -> Option<String> {
    for (name, init) in &pod.order {
        match &pod.containers.get(name)?.0 {
            Run::Terminated(code, _) if *code != 0 => return Some("Failed".into()),
            Run::Terminated(..) => {}
            _ if *init => return None,
            _ => return None,
        }
    }
    Some("Succeeded".into())
}

fn job_status(outcome: &str) -> Value {
    if outcome == "Succeeded" {
        json!({"succeeded": 1, "completionTime": now(), "conditions": [
            {"type": "Complete", "status": "True", "lastTransitionTime": now(), "lastProbeTime": now()}]})
    } else {
        json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit", "lastTransitionTime": now(), "lastProbeTime": now()}]})
    }
}

fn refresh_pod_status(pod: &mut FakePod, outcome: Option<&str>) {
    let state = |run: &Run| match run {
        Run::Waiting => json!({"waiting": {"reason": "PodInitializing"}}),
        Run::Running => json!({"running": {"startedAt": now()}}),
        Run::Terminated(code, reason) => {
            json!({"terminated": {"exitCode": code, "reason": reason, "finishedAt": now()}})
        }
    };
    let statuses = |init: bool| -> Vec<Value> {
        pod.order
            .iter()
            .filter(|(_, i)| *i == init)
            .filter_map(|(name, _)| {
                let (run, _) = pod.containers.get(name)?;
                Some(
                    json!({"name": name, "state": state(run), "ready": *run == Run::Running,
                    "restartCount": 0, "image": "worker", "imageID": ""}),
                )
            })
            .collect()
    };
    let running = pod.containers.values().any(|(r, _)| *r == Run::Running);
    let phase = outcome.unwrap_or(if running { "Running" } else { "Pending" });
    pod.object["status"] = json!({
        "phase": phase,
        "initContainerStatuses": statuses(true),
        "containerStatuses": statuses(false),
    });
}

async fn authenticate(
    State(k8s): State<FakeKubernetes>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let call = format!(
        "{} {}",
        request.method(),
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or_default()
    );
    k8s.with(|c| c.requests.push(call));
    let expected = format!("Bearer {}", k8s.token);
    let given = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if given != Some(expected.as_str()) {
        return status(401, "Unauthorized", "Unauthorized".into());
    }
    next.run(request).await
}

async fn create_job(State(k8s): State<FakeKubernetes>, Path(ns): Path<String>, body: Bytes) -> Response {
    let Ok(mut job) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "the body is not a Job".into());
    };
    let name = job["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if !dns_label(&name) {
        return status(
            422,
            "Invalid",
            format!(
                "Job.batch \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"
            ),
        );
    }
    let template = job["spec"]["template"].clone();
    let restart = template["spec"]["restartPolicy"].as_str().unwrap_or_default();
    if !["Never", "OnFailure"].contains(&restart) {
        return status(
            422,
            "Invalid",
            format!(
                "Job.batch \"{name}\" is invalid: spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
            ),
        );
    }
    let made = k8s.change(|c| {
        if c.jobs.contains_key(&(ns.clone(), name.clone())) {
            return Err(status(
                409,
                "AlreadyExists",
                format!("jobs.batch \"{name}\" already exists"),
            ));
        }
        c.resource_version += 1;
        let uid = uuid::Uuid::now_v7().to_string();
        job["metadata"]["namespace"] = json!(ns);
        job["metadata"]["uid"] = json!(uid);
        job["metadata"]["resourceVersion"] = json!(c.resource_version.to_string());
        job["metadata"]["creationTimestamp"] = json!(now());
        job["status"] = json!({"active": 1, "startTime": now()});
        c.jobs.insert((ns.clone(), name.clone()), job.clone());
        let pod = pod_for(&ns, &name, &uid, &template);
        let pod_name = pod.object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        c.pods.insert((ns.clone(), pod_name), pod);
        Ok(job)
    });
    match made {
        Some(Ok(job)) => (StatusCode::CREATED, axum::Json(job)).into_response(),
        Some(Err(refusal)) => refusal,
        None => status(500, "InternalError", "the fake's state is poisoned".into()),
    }
}

/// The pod the Job controller would make for the Job.
fn pod_for(ns: &str, job: &str, uid: &str, template: &Value) -> FakePod {
    let suffix: String = uuid::Uuid::now_v7()
        .simple()
        .to_string()
        .chars()
        .rev()
        .take(5)
        .collect();
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    for (key, value) in [
        ("batch.kubernetes.io/job-name", job),
        ("job-name", job),
        ("batch.kubernetes.io/controller-uid", uid),
        ("controller-uid", uid),
    ] {
        labels[key] = json!(value);
    }
    let spec = template["spec"].clone();
    let mut order = Vec::new();
    for (list, init) in [("initContainers", true), ("containers", false)] {
        for container in spec[list].as_array().into_iter().flatten() {
            order.push((container["name"].as_str().unwrap_or_default().to_string(), init));
        }
    }
    let containers = order
        .iter()
        .map(|(name, _)| (name.clone(), (Run::Waiting, Vec::new())))
        .collect();
    let mut pod = FakePod {
        namespace: ns.to_string(),
        job: job.to_string(),
        object: json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": format!("{job}-{suffix}"), "namespace": ns, "labels": labels,
                "uid": uuid::Uuid::now_v7().to_string(), "creationTimestamp": now(),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": uid,
                    "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": spec,
        }),
        containers,
        order,
    };
    refresh_pod_status(&mut pod, None);
    pod
}

async fn get_job(State(k8s): State<FakeKubernetes>, Path((ns, name)): Path<(String, String)>) -> Response {
    match k8s.with(|c| c.jobs.get(&(ns, name.clone())).cloned()).flatten() {
        Some(job) => axum::Json(job).into_response(),
        None => not_found("jobs.batch", &name),
    }
}

async fn list_jobs(
    State(k8s): State<FakeKubernetes>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let items: Vec<Value> = k8s
        .with(|c| {
            c.jobs
                .iter()
                .filter(|((n, _), j)| {
                    *n == ns && selects(query.get("labelSelector"), &j["metadata"]["labels"])
                })
                .map(|(_, j)| j.clone())
                .collect()
        })
        .unwrap_or_default();
    axum::Json(json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": "1"}, "items": items}))
        .into_response()
}

async fn delete_job(
    State(k8s): State<FakeKubernetes>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let options: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let orphan = options["propagationPolicy"] == "Orphan";
    let removed = k8s
        .change(|c| {
            let job = c.jobs.remove(&(ns.clone(), name.clone()))?;
            if !orphan {
                c.pods.retain(|_, p| !(p.namespace == ns && p.job == name));
            }
            Some(job)
        })
        .flatten();
    match removed {
        Some(_) => axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": "batch", "kind": "jobs"}}),
        )
        .into_response(),
        None => not_found("jobs.batch", &name),
    }
}

fn pod_list(items: Vec<Value>) -> Response {
    axum::Json(
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
    .into_response()
}

async fn list_pods(
    State(k8s): State<FakeKubernetes>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let items = k8s
        .with(|c| {
            c.pods
                .values()
                .filter(|p| {
                    p.namespace == ns && selects(query.get("labelSelector"), &p.object["metadata"]["labels"])
                })
                .map(|p| p.object.clone())
                .collect()
        })
        .unwrap_or_default();
    pod_list(items)
}

async fn delete_pods(
    State(k8s): State<FakeKubernetes>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let removed = k8s
        .change(|c| {
            let (gone, kept): (Vec<_>, Vec<_>) =
                std::mem::take(&mut c.pods).into_iter().partition(|(_, p)| {
                    p.namespace == ns && selects(query.get("labelSelector"), &p.object["metadata"]["labels"])
                });
            c.pods = kept.into_iter().collect();
            gone.into_iter().map(|(_, p)| p.object).collect()
        })
        .unwrap_or_default();
    pod_list(removed)
}

async fn get_pod(State(k8s): State<FakeKubernetes>, Path((ns, name)): Path<(String, String)>) -> Response {
    match k8s
        .with(|c| c.pods.get(&(ns, name.clone())).map(|p| p.object.clone()))
        .flatten()
    {
        Some(pod) => axum::Json(pod).into_response(),
        None => not_found("pods", &name),
    }
}

/// What a log request can see now: the lines after `from`, and whether more can come.
fn log_now(
    k8s: &FakeKubernetes,
    key: &(String, String),
    container: &str,
    from: usize,
) -> Option<(Vec<String>, bool)> {
    k8s.with(|c| {
        let (run, lines) = c.pods.get(key)?.containers.get(container)?.clone();
        Some((
            lines.get(from..).unwrap_or_default().to_vec(),
            run == Run::Running,
        ))
    })
    .flatten()
}

async fn pod_log(
    State(k8s): State<FakeKubernetes>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let key = (ns, name.clone());
    let Some(pod) = k8s.with(|c| c.pods.get(&key).cloned()).flatten() else {
        return not_found("pods", &name);
    };
    let container = match query.get("container") {
        Some(container) => container.clone(),
        None if pod.order.len() == 1 => pod.order[0].0.clone(),
        None => {
            return status(
                400,
                "BadRequest",
                format!(
                    "a container name must be specified for pod {name}, choose one of: {:?}",
                    pod.order.iter().map(|(n, _)| n).collect::<Vec<_>>()
                ),
            );
        }
    };
    match pod.containers.get(&container) {
        None => {
            return status(
                400,
                "BadRequest",
                format!("container {container} is not valid for pod {name}"),
            );
        }
        Some((Run::Waiting, _)) => {
            return status(
                400,
                "BadRequest",
                format!("container \"{container}\" in pod \"{name}\" is waiting to start: PodInitializing"),
            );
        }
        Some(_) => {}
    }
    let follow = query.get("follow").is_some_and(|f| f == "true");
    let stream = futures_util::stream::unfold((0usize, false), move |(from, done)| {
        let (k8s, key, container) = (k8s.clone(), key.clone(), container.clone());
        async move {
            if done {
                return None;
            }
            loop {
                let notified = k8s.changed.notified();
                let (lines, running) = log_now(&k8s, &key, &container, from)?;
                if !lines.is_empty() {
                    let chunk: String = lines.iter().map(|l| format!("{l}\n")).collect();
                    return Some((
                        Ok::<_, std::io::Error>(Bytes::from(chunk)),
                        (from + lines.len(), !follow),
                    ));
                }
                if !(follow && running) {
                    return None;
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
            }
        }
    });
    Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| status(500, "InternalError", "no body".into()))
}
