//! The deployment files, checked here where no cluster and no Docker engine run:
//! - both kustomize overlays render (`kubectl kustomize`, the version `make deps` pins) to exactly
//!   what is committed in `deploy/kubernetes/rendered` (`make manifests` writes it);
//! - every object validates against the Kubernetes schema with unknown fields refused
//!   (`kubernetes-validate --strict`), and deserialises into its `k8s-openapi` type;
//! - what the docs promise of them holds: each service a locked-down Deployment with probes,
//!   resources, a Service and a PodDisruptionBudget, replicas only where work is shared safely,
//!   secrets referenced and never included, a three-node NATS cluster flushing every write, a
//!   CloudNativePG cluster with a synchronous standby in production, the worker namespace's
//!   policies and the supervisor's narrow role there;
//! - `docker-compose.yml` validates against the Compose Specification (`dclint`) and runs each
//!   service from the one image with a health check, after NATS and Postgres are healthy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodSpec, ResourceQuota, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;

const SERVICES: [&str; 6] = [
    "gateway",
    "conversation",
    "scheduler",
    "worker-supervisor",
    "github-watcher",
    "inbox",
];
/// Services whose replicas share the work safely today; the rest run one, replaced not rolled.
const SHARED: [&str; 3] = ["gateway", "conversation", "worker-supervisor"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A tool `make deps` installs: from Python's scripts folder (PyPI) or the PATH (npm).
fn tool(name: &str) -> anyhow::Result<Command> {
    let scripts = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()?;
    let in_scripts = PathBuf::from(String::from_utf8_lossy(&scripts.stdout).trim()).join(name);
    let path = if in_scripts.is_file() {
        in_scripts
    } else {
        PathBuf::from(name)
    };
    let mut command = Command::new(path);
    command.current_dir(repo());
    Ok(command)
}

fn run(mut command: Command, what: &str) -> anyhow::Result<(bool, String)> {
    let out = command
        .output()
        .map_err(|e| anyhow::anyhow!("{what} could not run ({e}); `make deps` installs it"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), said))
}

/// The overlay as kustomize renders it, checked equal to the committed rendering.
fn rendered(overlay: &str) -> anyhow::Result<String> {
    let mut kubectl = tool("kubectl")?;
    kubectl.args(["version", "--client"]);
    let (_, version) = run(kubectl, "kubectl")?;
    anyhow::ensure!(
        version.contains("v1.37."),
        "kubectl 1.37 renders the committed files; this one says {version:?} (`make deps`)"
    );
    let mut kubectl = tool("kubectl")?;
    kubectl.args(["kustomize", &format!("deploy/kubernetes/overlays/{overlay}")]);
    let (ok, made) = run(kubectl, "kubectl")?;
    anyhow::ensure!(ok, "kustomize failed for {overlay}: {made}");
    let committed =
        std::fs::read_to_string(repo().join(format!("deploy/kubernetes/rendered/{overlay}.yaml")))?;
    assert!(
        made == committed,
        "deploy/kubernetes/rendered/{overlay}.yaml is not what the overlay makes: run `make manifests` and commit it"
    );
    Ok(made)
}

/// The rendered objects by "Kind/name".
fn objects(yaml: &str) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut all = BTreeMap::new();
    for document in serde_norway::Deserializer::from_str(yaml) {
        let object = Value::deserialize(document)?;
        let key = format!(
            "{}/{}",
            object["kind"].as_str().unwrap_or_default(),
            object["metadata"]["name"].as_str().unwrap_or_default()
        );
        anyhow::ensure!(all.insert(key.clone(), object).is_none(), "{key} twice");
    }
    Ok(all)
}

fn typed<T: serde::de::DeserializeOwned>(objects: &BTreeMap<String, Value>, key: &str) -> anyhow::Result<T> {
    let object = objects
        .get(key)
        .ok_or_else(|| anyhow::anyhow!("{key} is missing"))?;
    serde_json::from_value(object.clone()).map_err(|e| anyhow::anyhow!("{key} is not a valid {key}: {e}"))
}

fn validate_schema(overlay: &str) -> anyhow::Result<()> {
    let mut validate = tool("kubernetes-validate")?;
    validate.args([
        "--strict",
        "--quiet",
        &format!("deploy/kubernetes/rendered/{overlay}.yaml"),
    ]);
    let (ok, said) = run(validate, "kubernetes-validate")?;
    // The CloudNativePG Cluster is a custom resource the validator has no schema for; it is
    // checked field by field below. Anything else it says is a failure.
    let said: Vec<&str> = said
        .lines()
        .filter(|l| {
            !l.contains("Couldn't find schema for kind Cluster with api version postgresql.cnpg.io/v1")
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        ok && said.is_empty(),
        "{overlay} does not validate:\n{}",
        said.join("\n")
    );
    Ok(())
}

/// `what` must be there.
fn need<T>(value: Option<T>, what: &str) -> anyhow::Result<T> {
    value.ok_or_else(|| anyhow::anyhow!("{what} is missing"))
}

fn pod_spec(deployment: &Deployment) -> anyhow::Result<&PodSpec> {
    let template = deployment.spec.as_ref().map(|s| &s.template);
    need(template.and_then(|t| t.spec.as_ref()), "a pod template")
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

/// A service's Deployment: locked down, probed, sized, with its Service and budget beside it.
fn check_service(
    objects: &BTreeMap<String, Value>,
    name: &str,
    tag: &str,
    replicas: i32,
) -> anyhow::Result<()> {
    let deployment: Deployment = typed(objects, &format!("Deployment/{name}"))?;
    let spec = need(deployment.spec.as_ref(), "a spec")?;
    assert_eq!(spec.replicas, Some(replicas), "{name} replicas");
    let strategy = spec.strategy.as_ref().and_then(|s| s.type_.clone());
    let expected = if SHARED.contains(&name) {
        "RollingUpdate"
    } else {
        "Recreate"
    };
    assert_eq!(strategy.as_deref(), Some(expected), "{name} strategy");
    let labels = spec.selector.match_labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/name").map(String::as_str),
        Some(name)
    );

    let pod = pod_spec(&deployment)?;
    let security = need(pod.security_context.as_ref(), "a pod security context")?;
    assert_eq!(security.run_as_non_root, Some(true), "{name}");
    assert_eq!(security.run_as_user, Some(10001), "{name}");
    let seccomp = security.seccomp_profile.as_ref().map(|s| s.type_.as_str());
    assert_eq!(seccomp, Some("RuntimeDefault"), "{name}");
    let supervisor = name == "worker-supervisor";
    assert_eq!(
        pod.automount_service_account_token,
        Some(supervisor),
        "{name}: a token only where the API is used"
    );
    let account = if supervisor {
        "worker-supervisor"
    } else {
        "mainloop"
    };
    assert_eq!(pod.service_account_name.as_deref(), Some(account), "{name}");

    let [container] = pod.containers.as_slice() else {
        anyhow::bail!("{name} has one container");
    };
    assert_eq!(
        container.image.as_deref(),
        Some(format!("ghcr.io/mainloop-dev/mainloop:{tag}").as_str())
    );
    assert_eq!(container.args.clone().unwrap_or_default(), ["run", name]);
    let probe = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|h| (h.path.clone().unwrap_or_default(), format!("{:?}", h.port)))
    };
    let health = "String(\"health\")".to_string();
    assert_eq!(
        probe(&container.startup_probe),
        Some(("/healthz".into(), health.clone())),
        "{name}"
    );
    assert_eq!(
        probe(&container.liveness_probe),
        Some(("/healthz".into(), health.clone())),
        "{name}"
    );
    assert_eq!(
        probe(&container.readiness_probe),
        Some(("/readyz".into(), health)),
        "{name}"
    );
    let resources = need(container.resources.as_ref(), "resources")?;
    let requests = resources.requests.clone().unwrap_or_default();
    assert!(
        requests.contains_key("cpu") && requests.contains_key("memory"),
        "{name} requests"
    );
    assert!(
        resources
            .limits
            .clone()
            .unwrap_or_default()
            .contains_key("memory"),
        "{name} memory limit"
    );
    let locked = need(
        container.security_context.as_ref(),
        "a container security context",
    )?;
    assert_eq!(locked.allow_privilege_escalation, Some(false), "{name}");
    assert_eq!(locked.read_only_root_filesystem, Some(true), "{name}");
    let dropped = locked
        .capabilities
        .as_ref()
        .and_then(|c| c.drop.clone())
        .unwrap_or_default();
    assert_eq!(dropped, ["ALL"], "{name}");

    // Postgres from the Secret CloudNativePG makes for the cluster.
    let database = container.env.iter().flatten().find(|e| e.name == "DATABASE_URL");
    let secret = database
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .map(|s| (s.name.clone(), s.key.clone()));
    assert_eq!(secret, Some(("mainloop-db-app".into(), "uri".into())), "{name}");
    let from = container
        .env_from
        .iter()
        .flatten()
        .filter_map(|e| e.config_map_ref.as_ref());
    assert_eq!(
        from.map(|c| c.name.clone()).collect::<Vec<_>>(),
        ["mainloop"],
        "{name}"
    );

    let service: Service = typed(objects, &format!("Service/{name}"))?;
    let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
    assert_eq!(
        selector.get("app.kubernetes.io/name").map(String::as_str),
        Some(name)
    );
    let budget: PodDisruptionBudget = typed(objects, &format!("PodDisruptionBudget/{name}"))?;
    let budget = need(budget.spec, "a budget")?;
    let selects = budget.selector.and_then(|s| s.match_labels).unwrap_or_default();
    assert_eq!(
        selects.get("app.kubernetes.io/name").map(String::as_str),
        Some(name)
    );
    assert_eq!(format!("{:?}", budget.max_unavailable), "Some(Int(1))", "{name}");
    Ok(())
}

/// Every Secret is referenced by name, none is in the files.
fn check_secrets(objects: &BTreeMap<String, Value>) {
    assert!(
        !objects.keys().any(|k| k.starts_with("Secret/")),
        "a Secret is committed"
    );
    let text = serde_json::to_string(objects).unwrap_or_default();
    let mut named: Vec<&str> = text
        .match_indices("\"secretKeyRef\":{")
        .filter_map(|(at, _)| {
            let rest = &text[at..];
            let name = rest.find("\"name\":\"")? + 8;
            Some(&rest[name..name + rest[name..].find('"')?])
        })
        .collect();
    named.sort_unstable();
    named.dedup();
    assert_eq!(named, ["mainloop-db-app", "mainloop-secrets"]);
}

fn check_nats(objects: &BTreeMap<String, Value>, nodes: i32) -> anyhow::Result<()> {
    let nats: StatefulSet = typed(objects, "StatefulSet/nats")?;
    assert_eq!(nats.spec.as_ref().and_then(|s| s.replicas), Some(nodes));
    let config: ConfigMap = typed(objects, "ConfigMap/nats")?;
    let conf = config
        .data
        .unwrap_or_default()
        .remove("nats.conf")
        .unwrap_or_default();
    assert!(conf.contains("sync_interval: always"), "{conf}");
    let routes = conf
        .matches(".nats-cluster.mainloop.svc.cluster.local:6222")
        .count();
    assert_eq!(routes, if nodes == 1 { 0 } else { nodes as usize }, "{conf}");
    let settings: ConfigMap = typed(objects, "ConfigMap/mainloop")?;
    let replicas = settings.data.unwrap_or_default().remove("NATS_STREAM_REPLICAS");
    assert_eq!(
        replicas,
        Some(nodes.to_string()),
        "streams keep one copy per node"
    );
    typed::<Service>(objects, "Service/nats")?;
    typed::<Service>(objects, "Service/nats-cluster")?;
    typed::<PodDisruptionBudget>(objects, "PodDisruptionBudget/nats")?;
    Ok(())
}

fn check_postgres(objects: &BTreeMap<String, Value>, instances: u64, synchronous: bool) {
    let cluster = &objects["Cluster/mainloop-db"];
    assert_eq!(cluster["apiVersion"], "postgresql.cnpg.io/v1");
    assert_eq!(cluster["spec"]["instances"].as_u64(), Some(instances));
    assert_eq!(cluster["spec"]["bootstrap"]["initdb"]["database"], "mainloop");
    assert!(cluster["spec"]["storage"]["size"].is_string());
    let standbys = cluster["spec"]["postgresql"]["synchronous"]["number"].as_u64();
    assert_eq!(standbys.is_some_and(|n| n >= 1), synchronous, "{cluster}");
}

fn check_workers(objects: &BTreeMap<String, Value>) -> anyhow::Result<()> {
    let namespace: Namespace = typed(objects, "Namespace/mainloop-workers")?;
    let labels = namespace.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );
    let agents: ServiceAccount = typed(objects, "ServiceAccount/mainloop-agent")?;
    assert_eq!(agents.automount_service_account_token, Some(false));
    let role: Role = typed(objects, "Role/worker-supervisor")?;
    let mut allowed: Vec<String> = role
        .rules
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r.resources.unwrap_or_default())
        .collect();
    allowed.sort();
    assert_eq!(
        allowed,
        ["jobs", "pods", "pods/log"],
        "the supervisor's role reaches nothing else"
    );
    let binding: RoleBinding = typed(objects, "RoleBinding/worker-supervisor")?;
    let subjects = binding.subjects.unwrap_or_default();
    let subject: Vec<(String, Option<String>)> =
        subjects.into_iter().map(|s| (s.name, s.namespace)).collect();
    assert_eq!(
        subject,
        [("worker-supervisor".to_string(), Some("mainloop".to_string()))]
    );
    let supervisor: ServiceAccount = typed(objects, "ServiceAccount/worker-supervisor")?;
    assert_eq!(supervisor.metadata.namespace.as_deref(), Some("mainloop"));
    let egress: NetworkPolicy = typed(objects, "NetworkPolicy/agents-egress")?;
    let text = serde_json::to_string(&egress)?;
    for kept_out in ["10.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"] {
        assert!(text.contains(kept_out), "agents may reach {kept_out}");
    }
    typed::<NetworkPolicy>(objects, "NetworkPolicy/default-deny")?;
    typed::<ResourceQuota>(objects, "ResourceQuota/agents")?;
    Ok(())
}

fn check_overlay(
    overlay: &str,
    tag: &str,
    shared_replicas: i32,
    nats: i32,
    postgres: u64,
) -> anyhow::Result<()> {
    let objects = objects(&rendered(overlay)?)?;
    validate_schema(overlay)?;
    let mut kinds: Vec<&str> = objects
        .keys()
        .map(|k| k.split('/').next().unwrap_or_default())
        .collect();
    kinds.dedup();
    for kind in &kinds {
        assert!(
            [
                "Namespace",
                "ServiceAccount",
                "ConfigMap",
                "Service",
                "Deployment",
                "StatefulSet",
                "PodDisruptionBudget",
                "Cluster",
                "NetworkPolicy",
                "ResourceQuota",
                "Role",
                "RoleBinding"
            ]
            .contains(kind),
            "{overlay}: a {kind} this test does not check"
        );
    }
    for name in SERVICES {
        let replicas = if SHARED.contains(&name) {
            shared_replicas
        } else {
            1
        };
        check_service(&objects, name, tag, replicas)?;
    }
    check_secrets(&objects);
    check_nats(&objects, nats)?;
    check_postgres(&objects, postgres, postgres > 1);
    check_workers(&objects)?;
    for (key, object) in &objects {
        assert!(
            object["metadata"]["namespace"].is_string() || key.starts_with("Namespace/"),
            "{key} has no namespace"
        );
    }
    let supervisor: Deployment = typed(&objects, "Deployment/worker-supervisor")?;
    let container = &pod_spec(&supervisor)?.containers[0];
    assert_eq!(
        env_value(container, "AGENT_RUNNER").as_deref(),
        Some("kubernetes")
    );
    assert_eq!(
        env_value(container, "KUBE_NAMESPACE").as_deref(),
        Some("mainloop-workers")
    );
    let image = env_value(container, "WORKER_IMAGE").unwrap_or_default();
    assert_eq!(image, format!("ghcr.io/mainloop-dev/mainloop-worker:{tag}"));
    Ok(())
}

#[test]
fn the_dev_overlay_is_committed_valid_and_small() -> anyhow::Result<()> {
    check_overlay("dev", "dev", 1, 1, 1)?;
    // Token sign-in, no proxy settings left behind.
    let objects = objects(&rendered("dev")?)?;
    let gateway: Deployment = typed(&objects, "Deployment/gateway")?;
    let container = &pod_spec(&gateway)?.containers[0];
    assert_eq!(env_value(container, "AUTH_MODE").as_deref(), Some("token"));
    assert_eq!(env_value(container, "AUTH_TRUSTED_PROXIES"), None);
    Ok(())
}

#[test]
fn the_prod_overlay_is_committed_valid_and_replicated() -> anyhow::Result<()> {
    check_overlay("prod", "0.1.0", 2, 3, 3)?;
    let objects = objects(&rendered("prod")?)?;
    let gateway: Deployment = typed(&objects, "Deployment/gateway")?;
    let container = &pod_spec(&gateway)?.containers[0];
    assert_eq!(env_value(container, "AUTH_MODE").as_deref(), Some("proxy"));
    assert!(env_value(container, "AUTH_TRUSTED_PROXIES").is_some_and(|p| !p.is_empty()));
    Ok(())
}

#[test]
fn the_compose_file_is_valid_and_each_service_is_health_checked() -> anyhow::Result<()> {
    let mut dclint = tool("dclint")?;
    // Style rules aside: six services share one build by naming its image, a local tag.
    dclint.args([
        "docker-compose.yml",
        "--quiet",
        "--disable-rule",
        "no-build-and-image",
        "service-image-require-explicit-tag",
    ]);
    let (ok, said) = run(dclint, "dclint")?;
    assert!(ok, "docker-compose.yml is not valid:\n{said}");

    // As compose reads it: `<<` merges applied.
    let mut compose: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo().join("docker-compose.yml"))?)?;
    compose.apply_merge()?;
    let compose: Value = serde_json::to_value(compose)?;
    let services = &compose["services"];
    for name in SERVICES {
        let service = &services[name];
        let command: Vec<&str> = service["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(command.ends_with(&["run", name]), "{name}: {command:?}");
        let check: Vec<&str> = service["healthcheck"]["test"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(check, ["CMD", "mainloop", "health"], "{name}");
        for needed in ["nats", "postgres"] {
            assert_eq!(
                service["depends_on"][needed]["condition"], "service_healthy",
                "{name} waits for {needed}"
            );
        }
    }
    for server in ["nats", "postgres"] {
        assert!(
            services[server]["healthcheck"]["test"].is_array(),
            "{server} has a health check"
        );
    }
    assert_eq!(services["gateway"]["environment"]["AUTH_MODE"], "token");
    for observability in ["otel-collector", "jaeger"] {
        assert_eq!(
            services[observability]["profiles"][0], "observability",
            "{observability}"
        );
    }
    let nats_conf = std::fs::read_to_string(repo().join("deploy/nats/nats.conf"))?;
    assert!(nats_conf.contains("sync_interval: always"));
    Ok(())
}
